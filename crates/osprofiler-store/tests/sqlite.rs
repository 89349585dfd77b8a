//! The SQLite store on real database files: through the notifier pipeline, with several
//! processes writing one file at once, on bad input, with a TTL, and with a big trace.
//!
//! The notifier is process-wide: in this binary only `notifier_round_trip` uses it (the
//! other tests call the sink directly), and `writer_child` uses it in child processes that
//! run nothing else.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use osprofiler::notifier::{self, MemorySink, Sink, SinkError};
use osprofiler::{Event, EventInfo, EventKind, Id, Timestamp, TraceContext};
use osprofiler_store::{ConnectionString, OpenError, Options, open, sink};
use osprofiler_testkit::TempDir;
use serde_json::{Map, Value, json};

fn sqlite(path: &Path) -> ConnectionString {
    format!("sqlite://{}", path.display()).parse().unwrap()
}

/// An event as a recorded one looks, with the given info.
fn event(base: u128, point: u128, parent: u128, kind: EventKind, us: i64, info: Value) -> Event {
    let mut map = match info {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    map.insert("host".into(), json!("host-a"));
    Event {
        name: Cow::Borrowed("db"),
        kind,
        base_id: Id(base),
        trace_id: Id(point),
        parent_id: Id(parent),
        timestamp: Timestamp(us),
        info: EventInfo::from(map),
        project: Some(Arc::from("nova")),
        service: Some(Arc::from("api")),
    }
}

/// The two events of a first-level point of trace `base` starting at `us`.
fn point_events(base: u128, point: u128, us: i64) -> [Event; 2] {
    [
        event(base, point, base, EventKind::Start, us, json!({})),
        event(base, point, base, EventKind::Stop, us + 5, json!({})),
    ]
}

/// The stored JSON texts of a trace, in insertion order, read with SQLite directly.
fn stored_texts(db: &Path, base_id: &str) -> Vec<String> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn
        .prepare("SELECT json FROM events WHERE base_id = ?1 ORDER BY rowid")
        .unwrap();
    stmt.query_map([base_id], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

// ---------------------------------------------------------------------------------------
// 1. Through the real notifier pipeline.

/// Writes every batch to the SQLite sink and to memory, to compare what was stored with
/// what the notifier produced.
struct Tee(Box<dyn Sink>, MemorySink);

impl Sink for Tee {
    fn write(&mut self, events: &[Event]) -> Result<(), SinkError> {
        self.1.write(events)?;
        self.0.write(events)
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.0.flush()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("quota exceeded for \"demo\"\nsecond line")]
struct QuotaExceeded;

#[osprofiler::trace(name = "db")]
fn quota_reserve(project: &str, cores: u32) -> Result<u32, QuotaExceeded> {
    let _ = (project, cores);
    Err(QuotaExceeded)
}

#[test]
fn notifier_round_trip() {
    let dir = TempDir::new();
    // Parent directories are created by the sink.
    let db = dir.join("data/osprofiler/traces.db");
    let cs = sqlite(&db);
    let memory = MemorySink::new();
    let _guard = notifier::set_boxed_sink(Box::new(Tee(
        sink(&cs, &Options::default()).expect("sqlite sink"),
        memory.clone(),
    )));

    // A trace without error, then (later) one with an error.
    let clean = TraceContext::new(None, None, None);
    clean.in_scope(|| {
        let _wsgi = osprofiler::point("wsgi");
        drop(osprofiler::point("db"));
    });
    std::thread::sleep(Duration::from_millis(2));
    let failed = TraceContext::new(None, None, None);
    failed.in_scope(|| {
        let _wsgi = osprofiler::point("wsgi");
        {
            let _rpc = osprofiler::point("rpc");
            assert!(quota_reserve("demo", 4).is_err());
        }
        drop(osprofiler::point("driver"));
    });
    notifier::flush().unwrap();
    let stats = notifier::stats();
    assert_eq!(
        (stats.failed, stats.dropped),
        (0, 0),
        "{:?}",
        notifier::last_error()
    );

    let mut store = open(&cs, &Options::default()).expect("open");
    assert_eq!(store.describe(), format!("sqlite://{}", db.display()));
    let (clean_id, failed_id) = (clean.base_id().to_string(), failed.base_id().to_string());

    // The tree: names, nesting, the error.
    let report = store.report(&failed_id).unwrap().expect("stored");
    let tree: Vec<(usize, &str, Option<&str>)> = report
        .iter()
        .map(|(depth, n)| (depth, n.name(), n.exception()))
        .collect();
    assert_eq!(
        tree,
        [
            (1, "wsgi", None),
            (2, "rpc", None),
            (3, "db", Some("sqlite::QuotaExceeded")),
            (2, "driver", None),
        ]
    );
    let db_node = report.errors()[0];
    assert_eq!(
        db_node.stop_payload().unwrap()["info"]["message"],
        "quota exceeded for \"demo\"\nsecond line"
    );

    // Exactly the text the notifier produced, in the order it was written.
    let produced = memory.trace(failed.base_id());
    assert_eq!(produced.len(), 8);
    let texts: Vec<String> = produced.iter().map(Event::to_json).collect();
    assert_eq!(stored_texts(&db, &failed_id), texts);
    let values: Vec<Value> = texts
        .iter()
        .map(|t| serde_json::from_str(t).unwrap())
        .collect();
    assert_eq!(store.events(&failed_id).unwrap(), values);

    // Newest first, with the first event's timestamp text; only the failed one has errors
    // (filter_error_trace is off: SQLite records errors anyway).
    let first = |base: Id| {
        memory
            .trace(base)
            .iter()
            .map(|e| e.timestamp)
            .min()
            .unwrap()
            .to_string()
    };
    let listed: Vec<(String, String)> = store
        .list_traces(None)
        .unwrap()
        .into_iter()
        .map(|t| (t.base_id, t.timestamp))
        .collect();
    assert_eq!(
        listed,
        [
            (failed_id.clone(), first(failed.base_id())),
            (clean_id.clone(), first(clean.base_id())),
        ]
    );
    assert_eq!(store.list_traces(Some(1)).unwrap()[0].base_id, failed_id);
    let errors: Vec<String> = store
        .list_error_traces(None)
        .unwrap()
        .into_iter()
        .map(|t| t.base_id)
        .collect();
    assert_eq!(errors, [failed_id]);
    assert_eq!(store.report(&clean_id).unwrap().unwrap().len(), 2);
}

// ---------------------------------------------------------------------------------------
// 2. Several processes writing one file at once.

/// Set in child processes: the database to write to.
const WRITER_DB: &str = "OSPROFILER_SQLITE_TEST_WRITER_DB";
/// Set in child processes: where to write the base ids of the traces written.
const WRITER_IDS: &str = "OSPROFILER_SQLITE_TEST_WRITER_IDS";
const CHILDREN: usize = 4;
const THREADS_PER_CHILD: usize = 2;
const TRACES_PER_THREAD: usize = 60;
const POINTS_PER_TRACE: usize = 40;

/// The child side of `processes_write_at_once` (does nothing when run on its own): records
/// traces from several threads through the notifier into the shared file, then fails
/// (non-zero exit) if any event was not written.
#[test]
fn writer_child() {
    let (Some(db), Some(ids_file)) = (std::env::var_os(WRITER_DB), std::env::var_os(WRITER_IDS))
    else {
        return;
    };
    // Room for everything recorded: this test is about the writes, not the queue bound.
    notifier::configure(notifier::Config {
        max_queued_events: 1 << 20,
        ..Default::default()
    });
    let cs = sqlite(Path::new(&db));
    let _guard = notifier::set_boxed_sink(sink(&cs, &Options::default()).expect("sink"));
    let threads: Vec<_> = (0..THREADS_PER_CHILD)
        .map(|_| {
            std::thread::spawn(|| {
                let mut ids = Vec::new();
                for _ in 0..TRACES_PER_THREAD {
                    let ctx = TraceContext::new(None, None, None);
                    ctx.in_scope(|| {
                        let _wsgi = osprofiler::point("wsgi");
                        for _ in 1..POINTS_PER_TRACE {
                            drop(osprofiler::point("db"));
                        }
                    });
                    ids.push(ctx.base_id().to_string());
                }
                ids
            })
        })
        .collect();
    let ids: Vec<String> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    notifier::flush_timeout(Duration::from_secs(120)).expect("flush");
    let stats = notifier::stats();
    assert_eq!(
        (
            stats.failed,
            stats.dropped,
            stats.discarded,
            stats.sink_errors
        ),
        (0, 0, 0, 0),
        "last error: {:?}",
        notifier::last_error()
    );
    assert_eq!(
        stats.exported,
        (THREADS_PER_CHILD * TRACES_PER_THREAD * POINTS_PER_TRACE * 2) as u64
    );
    std::fs::write(ids_file, ids.join("\n")).unwrap();
}

#[test]
fn processes_write_at_once() {
    let dir = TempDir::new();
    let db = dir.join("traces.db");
    let exe = std::env::current_exe().unwrap();
    let ids_files: Vec<PathBuf> = (0..CHILDREN)
        .map(|i| dir.join(format!("ids-{i}")))
        .collect();
    // All started before any is waited for; each creates the database if it finds none.
    let children: Vec<_> = ids_files
        .iter()
        .map(|ids| {
            Command::new(&exe)
                .args(["writer_child", "--exact", "--nocapture", "--test-threads=1"])
                .env(WRITER_DB, &db)
                .env(WRITER_IDS, ids)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn writer")
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "writer failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let mut ids = Vec::new();
    for f in &ids_files {
        let text = std::fs::read_to_string(f).expect("the writer ran (its ids file)");
        ids.extend(text.lines().map(str::to_owned));
    }
    let traces = CHILDREN * THREADS_PER_CHILD * TRACES_PER_THREAD;
    assert_eq!(ids.len(), traces);

    let mut store = open(&sqlite(&db), &Options::default()).unwrap();
    for id in &ids {
        let events = store.events(id).unwrap();
        assert_eq!(events.len(), 2 * POINTS_PER_TRACE, "trace {id}");
        let report = store.report(id).unwrap().unwrap();
        assert_eq!(report.len(), POINTS_PER_TRACE);
        assert_eq!(report.roots().len(), 1);
        assert_eq!(report.roots()[0].children().len(), POINTS_PER_TRACE - 1);
    }
    let mut listed: Vec<String> = store
        .list_traces(None)
        .unwrap()
        .into_iter()
        .map(|t| t.base_id)
        .collect();
    listed.sort();
    ids.sort();
    assert_eq!(listed, ids);
}

// ---------------------------------------------------------------------------------------
// 3. Bad input, unknown traces, the trace row, TTL.

fn open_error(cs: &ConnectionString) -> String {
    match open(cs, &Options::default()) {
        Ok(s) => panic!("opened {}", s.describe()),
        Err(e @ OpenError::Unavailable { .. }) => {
            let msg = e.to_string();
            assert!(!msg.contains('\n'), "{msg:?}");
            msg
        }
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn unknown_missing_and_broken() {
    let dir = TempDir::new();

    // A missing file: an error, and no empty database left behind.
    let missing = dir.join("nope/traces.db");
    assert_eq!(
        open_error(&sqlite(&missing)),
        format!(
            "cannot open sqlite://{}: no such database file",
            missing.display()
        )
    );
    assert!(!missing.exists() && !dir.join("nope").exists());

    // A file that is not a database, for reading and for writing, and left as it was.
    let garbage = dir.join("garbage.db");
    let junk = "this is not an SQLite database\n".repeat(200);
    std::fs::write(&garbage, &junk).unwrap();
    assert_eq!(
        open_error(&sqlite(&garbage)),
        format!(
            "cannot open sqlite://{}: file is not a database",
            garbage.display()
        )
    );
    let e = sink(&sqlite(&garbage), &Options::default())
        .err()
        .expect("sink on garbage");
    assert_eq!(
        e.to_string(),
        format!(
            "cannot open sqlite://{}: file is not a database",
            garbage.display()
        )
    );
    assert_eq!(std::fs::read_to_string(&garbage).unwrap(), junk);

    // A directory.
    let msg = open_error(&sqlite(dir.path()));
    assert!(msg.ends_with(": is a directory"), "{msg}");

    // An empty file is an empty database: nothing in it, until a writer sets it up.
    let empty = dir.join("empty.db");
    std::fs::write(&empty, "").unwrap();
    let mut store = open(&sqlite(&empty), &Options::default()).unwrap();
    assert!(store.list_traces(None).unwrap().is_empty());
    assert!(store.report("whatever").unwrap().is_none());
    let mut writer = sink(&sqlite(&empty), &Options::default()).unwrap();
    writer.write(&point_events(7, 8, 1_000_000)).unwrap();
    assert_eq!(store.list_traces(None).unwrap().len(), 1);

    // Another application's database, and a newer schema: refused, one line.
    let foreign = dir.join("foreign.db");
    rusqlite::Connection::open(&foreign)
        .unwrap()
        .execute_batch("CREATE TABLE other (x)")
        .unwrap();
    assert!(
        open_error(&sqlite(&foreign))
            .ends_with(": not an osprofiler trace database (it has other tables)")
    );
    assert!(sink(&sqlite(&foreign), &Options::default()).is_err());
    let newer = dir.join("newer.db");
    rusqlite::Connection::open(&newer)
        .unwrap()
        .execute_batch("PRAGMA user_version = 99")
        .unwrap();
    assert!(
        open_error(&sqlite(&newer)).ends_with(
            ": database schema version 99 is newer than this osprofiler knows (version 2)"
        )
    );

    // A real store: unknown or odd ids are simply absent; a row that is not JSON is skipped.
    let db = dir.join("traces.db");
    let mut writer = sink(&sqlite(&db), &Options::default()).unwrap();
    writer.write(&point_events(1, 2, 1_000_000)).unwrap();
    let mut store = open(&sqlite(&db), &Options::default()).unwrap();
    for id in [
        "00000000-0000-4000-8000-000000000009",
        "",
        "' OR 1=1 --",
        "\0",
        "é",
    ] {
        assert!(store.report(id).unwrap().is_none(), "{id:?}");
        assert!(store.events(id).unwrap().is_empty());
    }
    let base = Id(1).to_string();
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute(
            "INSERT INTO events VALUES (?1, 'x', 'db-start', 'x', '{not json')",
            [&base],
        )
        .unwrap();
    assert_eq!(store.events(&base).unwrap().len(), 2);
    assert_eq!(store.list_traces(Some(0)).unwrap(), []);
}

#[test]
fn trace_row_keeps_earliest_start_and_any_error() {
    let dir = TempDir::new();
    let db = dir.join("traces.db");
    let mut writer = sink(&sqlite(&db), &Options::default()).unwrap();
    let (base, t0) = (0xabc, 1_795_608_000_001_375);
    // A stop with an error arrives first, its start (earlier) in a later batch, and a
    // second writer adds a later point.
    writer
        .write(&[event(
            base,
            2,
            base,
            EventKind::Stop,
            t0 + 50,
            json!({"etype": "ValueError", "message": "bad"}),
        )])
        .unwrap();
    writer
        .write(&[event(base, 2, base, EventKind::Start, t0, json!({}))])
        .unwrap();
    let mut other = sink(&sqlite(&db), &Options::default()).unwrap();
    other.write(&point_events(base, 3, t0 + 100)).unwrap();
    // etype null is not an error (osprofiler tests `is not None`), nor is "etype" text.
    writer
        .write(&[
            event(
                5,
                6,
                5,
                EventKind::Start,
                t0 + 200,
                json!({"x": "\"etype\""}),
            ),
            event(5, 6, 5, EventKind::Stop, t0 + 300, json!({"etype": null})),
        ])
        .unwrap();

    let mut store = open(&sqlite(&db), &Options::default()).unwrap();
    let list = store.list_traces(None).unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[1].base_id, Id(base).to_string());
    assert_eq!(list[1].timestamp, "2026-11-25T12:00:00.001375");
    assert_eq!(list[0].base_id, Id(5).to_string());
    let errors = store.list_error_traces(None).unwrap();
    assert_eq!(errors, [list[1].clone()]);
    let report = store.report(&Id(base).to_string()).unwrap().unwrap();
    assert_eq!(report.len(), 2);
    assert_eq!(report.errors()[0].exception(), Some("ValueError"));
}

#[test]
fn ttl_deletes_old_traces() {
    let dir = TempDir::new();
    let db = dir.join("traces.db");
    let ttl = Options {
        ttl: Some(Duration::from_millis(300)),
        ..Options::default()
    };
    let mut writer = sink(&sqlite(&db), &ttl).unwrap();
    writer.write(&point_events(1, 10, 1_000_000)).unwrap();
    // A later batch within the minute does not expire anything (nor would it here).
    writer.write(&point_events(2, 20, 2_000_000)).unwrap();
    drop(writer);
    std::thread::sleep(Duration::from_millis(600));

    // Without a TTL nothing goes.
    let mut keep = sink(&sqlite(&db), &Options::default()).unwrap();
    keep.write(&point_events(3, 30, 3_000_000)).unwrap();
    let mut store = open(&sqlite(&db), &Options::default()).unwrap();
    assert_eq!(store.list_traces(None).unwrap().len(), 3);

    // A writer with the TTL expires, at its first batch, the traces last written more
    // than 300 ms ago (1 and 2), events and all; 3 was written just now.
    let mut writer = sink(&sqlite(&db), &ttl).unwrap();
    writer.write(&point_events(4, 40, 4_000_000)).unwrap();
    let left: Vec<String> = store
        .list_traces(None)
        .unwrap()
        .into_iter()
        .map(|t| t.base_id)
        .collect();
    assert_eq!(left, [Id(4).to_string(), Id(3).to_string()]);
    for gone in [1, 2] {
        assert!(store.report(&Id(gone).to_string()).unwrap().is_none());
    }
    let conn = rusqlite::Connection::open(&db).unwrap();
    let rows: i64 = conn
        .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 4);
}

// ---------------------------------------------------------------------------------------
// 4. A big trace.

#[test]
fn hundred_thousand_points() {
    const POINTS: u128 = 100_000;
    let dir = TempDir::new();
    let db = dir.join("traces.db");
    let base: u128 = 0x6f1c_2b1e_8a5d_4c1e_9f0b_3d2a_1c0b_9e8f;
    let t0 = 1_795_608_000_000_000;
    // 1,000 top-level points with 99 children each.
    let events: Vec<Event> = (0..POINTS)
        .flat_map(|i| {
            let parent = if i.is_multiple_of(100) {
                base
            } else {
                i - i % 100 + 1
            };
            let us = t0 + 3 * i as i64;
            [
                event(base, i + 1, parent, EventKind::Start, us, json!({})),
                event(base, i + 1, parent, EventKind::Stop, us + 2, json!({})),
            ]
        })
        .collect();

    let started = Instant::now();
    let mut writer = sink(&sqlite(&db), &Options::default()).unwrap();
    for batch in events.chunks(4096) {
        writer.write(batch).unwrap();
    }
    let write = started.elapsed();

    let mut store = open(&sqlite(&db), &Options::default()).unwrap();
    let id = Id(base).to_string();
    let started = Instant::now();
    let fetched = store.events(&id).unwrap();
    let fetch = started.elapsed();
    assert_eq!(fetched.len(), 200_000);
    let started = Instant::now();
    let report = osprofiler_store::Report::from_events(fetched);
    let build = started.elapsed();
    assert_eq!(report.len(), 100_000);
    assert_eq!(report.roots().len(), 1_000);
    assert_eq!(report.skipped(), 0);
    eprintln!(
        "100,000 points (200,000 events): write {write:.2?} in batches of 4096, \
         fetch {fetch:.2?}, build {build:.2?}"
    );
}
