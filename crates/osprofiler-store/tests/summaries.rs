//! Trace summaries and their search: SQLite's summary columns, kept by the writer batch by
//! batch, against the summaries built from the events (the default every store has, here
//! through the `file://` store); filters and paging; a version 1 file upgraded; a store of
//! 10,000 traces.

mod common;

use std::path::Path;

use common::typed::T0;
use osprofiler::{Event, Id, Timestamp};
use osprofiler_store::{
    ConnectionString, Options, RootPoint, TraceOverview, TraceQuery, TraceStore, open, sink,
};
use osprofiler_testkit::TempDir;

fn cs(s: String) -> ConnectionString {
    s.parse().unwrap()
}

fn sqlite(path: &Path) -> ConnectionString {
    cs(format!("sqlite://{}", path.display()))
}

/// Trace `base` in two batches, as two services' exporters would send it: `api` has the
/// `wsgi` root (`POST /v2.1/servers`, `dur` µs) with a `db` child; `compute` an `rpc`
/// point under the db one, which fails when `fail`.
fn trace_batches(base: u128, start: i64, dur: i64, fail: bool) -> [Vec<Event>; 2] {
    common::typed::trace_batches(base, start, dur, fail.then_some("<b>boom</b>"))
}

/// Writes the same batches to a SQLite and a file store; returns both, read side.
fn both(dir: &TempDir, batches: &[Vec<Event>]) -> (Box<dyn TraceStore>, Box<dyn TraceStore>) {
    let db = sqlite(&dir.join("traces.db"));
    let file = cs(format!("file://{}", dir.join("events.jsonl").display()));
    for c in [&db, &file] {
        let mut s = sink(c, &Options::default()).unwrap();
        for b in batches {
            s.write(b).unwrap();
        }
        s.flush().unwrap();
    }
    (
        open(&db, &Options::default()).unwrap(),
        open(&file, &Options::default()).unwrap(),
    )
}

fn ids(page: &[TraceOverview]) -> Vec<String> {
    page.iter().map(|t| t.base_id.clone()).collect()
}

fn id(base: u128) -> String {
    Id(base).to_string()
}

#[test]
fn summaries_match_the_events_and_filters_narrow() {
    let dir = TempDir::new();
    // Trace i starts i ms after T0, lasts 1 ms * (i + 1); odd ones fail.
    let mut batches = Vec::new();
    for i in 0..6u128 {
        let base = (i + 1) << 64;
        let [a, b] = trace_batches(
            base,
            T0 + i as i64 * 1000,
            1000 * (i as i64 + 1),
            i % 2 == 1,
        );
        batches.push(a);
        batches.push(b);
    }
    // One batch holding pieces of two traces.
    let mut mixed = trace_batches(7 << 64, T0 + 10_000, 500, false);
    let mut first = std::mem::take(&mut mixed[0]);
    first.extend(trace_batches(8 << 64, T0 + 11_000, 700, true)[0].clone());
    batches.push(first);
    batches.push(std::mem::take(&mut mixed[1]));
    batches.push(trace_batches(8 << 64, T0 + 11_000, 700, true)[1].clone());
    let (mut db, mut file) = both(&dir, &batches);

    let all = db.search_traces(&TraceQuery::default()).unwrap();
    assert_eq!(all, file.search_traces(&TraceQuery::default()).unwrap());
    assert_eq!(all.traces.len(), 8);
    assert!(!all.more);
    // Newest first.
    assert_eq!(all.traces[0].base_id, id(8 << 64));
    assert_eq!(all.traces[7].base_id, id(1 << 64));
    let t = &all.traces[7];
    assert_eq!(t.started_us, T0);
    assert_eq!(t.duration_us(), 1000);
    assert_eq!(t.points, 3);
    assert_eq!(t.services, ["api", "compute"]);
    assert_eq!(t.categories, ["db", "rpc", "wsgi"]);
    assert!(!t.error);
    assert_eq!(
        t.root,
        Some(RootPoint {
            service: "api".into(),
            category: "wsgi".into(),
            name: "POST /v2.1/servers".into()
        })
    );
    assert_eq!(
        t.root.as_ref().unwrap().label(),
        "api · wsgi · POST /v2.1/servers"
    );
    assert!(all.traces[6].error);
    assert_eq!(t.started(), "2026-09-21T14:13:20.000000");

    let check = |db: &mut Box<dyn TraceStore>,
                 file: &mut Box<dyn TraceStore>,
                 q: TraceQuery,
                 want: &[u128]| {
        let got = db.search_traces(&q).unwrap();
        assert_eq!(
            ids(&got.traces),
            want.iter().map(|&b| id(b << 64)).collect::<Vec<_>>(),
            "{q:?}"
        );
        assert_eq!(got, file.search_traces(&q).unwrap(), "{q:?}");
    };
    let q = TraceQuery::default;
    check(
        &mut db,
        &mut file,
        TraceQuery {
            errors_only: true,
            ..q()
        },
        &[8, 6, 4, 2],
    );
    check(
        &mut db,
        &mut file,
        TraceQuery {
            min_duration_us: Some(3000),
            ..q()
        },
        &[6, 5, 4, 3],
    );
    check(
        &mut db,
        &mut file,
        TraceQuery {
            min_duration_us: Some(2000),
            max_duration_us: Some(4000),
            ..q()
        },
        &[4, 3, 2],
    );
    check(
        &mut db,
        &mut file,
        TraceQuery {
            since_us: Some(T0 + 2000),
            until_us: Some(T0 + 10_000),
            ..q()
        },
        &[6, 5, 4, 3],
    );
    check(
        &mut db,
        &mut file,
        TraceQuery {
            service: Some("compute".into()),
            ..q()
        },
        &[8, 7, 6, 5, 4, 3, 2, 1],
    );
    check(
        &mut db,
        &mut file,
        TraceQuery {
            service: Some("comp".into()),
            ..q()
        },
        &[],
    );
    check(
        &mut db,
        &mut file,
        TraceQuery {
            name: Some("rpc".into()),
            ..q()
        },
        &[8, 7, 6, 5, 4, 3, 2, 1],
    );
    check(
        &mut db,
        &mut file,
        TraceQuery {
            name: Some("V2.1/SERV".into()),
            ..q()
        },
        &[8, 7, 6, 5, 4, 3, 2, 1],
    );
    check(
        &mut db,
        &mut file,
        TraceQuery {
            name: Some("nothing".into()),
            ..q()
        },
        &[],
    );
    check(
        &mut db,
        &mut file,
        TraceQuery {
            text: Some("<B>BOOM".into()),
            ..q()
        },
        &[8, 6, 4, 2],
    );
    check(
        &mut db,
        &mut file,
        TraceQuery {
            text: Some("select * from".into()),
            ..q()
        },
        &[8, 7, 6, 5, 4, 3, 2, 1],
    );
    check(
        &mut db,
        &mut file,
        TraceQuery {
            text: Some("boom".into()),
            min_duration_us: Some(4000),
            ..q()
        },
        &[6, 4],
    );
    // Paging.
    let page = db
        .search_traces(&TraceQuery {
            offset: 2,
            limit: Some(3),
            ..q()
        })
        .unwrap();
    assert_eq!(ids(&page.traces), [id(6 << 64), id(5 << 64), id(4 << 64)]);
    assert!(page.more);
    assert_eq!(
        page,
        file.search_traces(&TraceQuery {
            offset: 2,
            limit: Some(3),
            ..q()
        })
        .unwrap()
    );
    let last = db
        .search_traces(&TraceQuery {
            offset: 5,
            limit: Some(3),
            ..q()
        })
        .unwrap();
    assert_eq!(last.traces.len(), 3);
    assert!(!last.more);
    assert_eq!(
        last,
        file.search_traces(&TraceQuery {
            offset: 5,
            limit: Some(3),
            ..q()
        })
        .unwrap()
    );
}

/// A version 1 file (as the previous release wrote it): readers summarise from the events,
/// and the first writer upgrades it with every trace summarised.
#[test]
fn version_1_files_are_summarised_then_upgraded() {
    let dir = TempDir::new();
    let path = dir.join("old.db");
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "CREATE TABLE events (base_id TEXT NOT NULL, trace_id TEXT NOT NULL, name TEXT NOT NULL,
                              timestamp TEXT NOT NULL, json TEXT NOT NULL);
         CREATE INDEX events_base_id ON events (base_id);
         CREATE TABLE traces (base_id TEXT PRIMARY KEY NOT NULL, started TEXT NOT NULL,
                              started_us INTEGER NOT NULL, last_write_us INTEGER NOT NULL,
                              has_error INTEGER NOT NULL DEFAULT 0);
         CREATE INDEX traces_started ON traces (started_us);
         CREATE INDEX traces_errors ON traces (has_error, started_us);
         PRAGMA user_version = 1;",
    )
    .unwrap();
    for (n, start) in [(1u128, T0), (2, T0 + 5000)] {
        let base = n << 64;
        for e in trace_batches(base, start, 2000, n == 2).concat() {
            let mut json = Vec::new();
            e.write_json(&mut json);
            conn.execute(
                "INSERT INTO events VALUES (?1, ?2, ?3, ?4, ?5)",
                (
                    id(base),
                    e.trace_id.to_string(),
                    format!("{}-x", e.name),
                    e.timestamp.to_string(),
                    String::from_utf8(json).unwrap(),
                ),
            )
            .unwrap();
        }
        conn.execute(
            "INSERT INTO traces VALUES (?1, ?2, ?3, 0, ?4)",
            (id(base), Timestamp(start).to_string(), start, n == 2),
        )
        .unwrap();
    }
    drop(conn);
    let db = sqlite(&path);
    let before = open(&db, &Options::default())
        .unwrap()
        .search_traces(&TraceQuery::default())
        .unwrap();
    assert_eq!(ids(&before.traces), [id(2 << 64), id(1 << 64)]);
    assert_eq!(before.traces[0].points, 3);
    assert!(before.traces[0].error);
    // The writer upgrades the file when it opens it.
    let mut s = sink(&db, &Options::default()).unwrap();
    s.write(&trace_batches(3 << 64, T0 + 9000, 100, false).concat())
        .unwrap();
    drop(s);
    let version: i64 = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 2);
    let after = open(&db, &Options::default())
        .unwrap()
        .search_traces(&TraceQuery::default())
        .unwrap();
    assert_eq!(after.traces.len(), 3);
    assert_eq!(after.traces[1..], before.traces[..]);
    let errors = open(&db, &Options::default())
        .unwrap()
        .search_traces(&TraceQuery {
            errors_only: true,
            ..TraceQuery::default()
        })
        .unwrap();
    assert_eq!(ids(&errors.traces), [id(2 << 64)]);
}

/// 10,000 traces: every one listed with its summary, pages and filters from the summary
/// rows (how fast is benches/sqlite.rs' `search`).
#[test]
fn ten_thousand_traces() {
    let dir = TempDir::new();
    let db = sqlite(&dir.join("big.db"));
    let mut s = sink(&db, &Options::default()).unwrap();
    let mut batch = Vec::new();
    for i in 0..10_000u128 {
        let base = (i + 1) << 64;
        for b in trace_batches(
            base,
            T0 + i as i64 * 100,
            50 + (i as i64 % 100),
            i % 10 == 0,
        ) {
            batch.extend(b);
        }
        if batch.len() >= 2400 {
            s.write(&batch).unwrap();
            batch.clear();
        }
    }
    s.write(&batch).unwrap();
    drop(s);
    let mut store = open(&db, &Options::default()).unwrap();
    let all = store.search_traces(&TraceQuery::default()).unwrap();
    assert_eq!(all.traces.len(), 10_000);
    assert!(
        all.traces
            .iter()
            .all(|t| t.points == 3 && t.services == ["api", "compute"])
    );
    assert_eq!(all.traces[0].base_id, id(10_000 << 64));
    let page = store
        .search_traces(&TraceQuery {
            limit: Some(50),
            offset: 100,
            ..TraceQuery::default()
        })
        .unwrap();
    assert_eq!(page.traces.len(), 50);
    assert!(page.more);
    assert_eq!(page.traces[0].base_id, id(9_900 << 64));
    let errors = store
        .search_traces(&TraceQuery {
            errors_only: true,
            ..TraceQuery::default()
        })
        .unwrap();
    assert_eq!(errors.traces.len(), 1000);
    let long = store
        .search_traces(&TraceQuery {
            min_duration_us: Some(149),
            ..TraceQuery::default()
        })
        .unwrap();
    assert_eq!(long.traces.len(), 100);
    assert!(long.traces.iter().all(|t| t.duration_us() == 149));
}
