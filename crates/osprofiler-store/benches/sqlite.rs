//! The SQLite store: write throughput of the sink and read time of a big trace.
//! `cargo bench -p osprofiler-store --bench sqlite`.
//!
//! - `write/*`: one iteration = one `Sink::write` of a 4096-event batch (the exporter's
//!   batch size) into a file database, one transaction. The batches are real events
//!   recorded through the notifier (`#[trace]` functions with their arguments), captured
//!   in memory first; the throughput column is events/s.
//!   - `one_trace`: the batch is 2048 points of one trace;
//!   - `many_traces`: 256 traces of 8 points (one trace row upserted per trace).
//! - `read_100k/*`: a trace of 100,000 points (200,000 events):
//!   - `fetch`: `TraceStore::events` (query + JSON parsing);
//!   - `build`: `Report::from_events` of the fetched events;
//!   - `fetch_and_build`: `TraceStore::report`, both.
//! - `search_10k/*`: `TraceStore::search_traces` on 10,000 traces of 3 points (the UI's
//!   search page; target ≤ 200 ms): the first page of 50, every trace, a filter that
//!   looks at every summary row, a free-text search that looks at every event.

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock};

use divan::counter::ItemsCount;
use divan::{Bencher, black_box};
use osprofiler::notifier::{self, MemorySink};
use osprofiler::{Event, EventInfo, EventKind, Id, Timestamp, TraceContext};
use osprofiler_store::{ConnectionString, Options, Report, open, sink};
use osprofiler_testkit::TempDir;
use serde_json::{Value, json};

const BATCH: usize = 4096;

static DIR: LazyLock<TempDir> = LazyLock::new(TempDir::new);

fn main() {
    divan::main();
    // Statics are never dropped: remove the databases here.
    if let Some(dir) = LazyLock::get(&DIR) {
        let _ = std::fs::remove_dir_all(dir.path());
    }
}

fn database(name: &str) -> ConnectionString {
    let path: PathBuf = DIR.join(name);
    format!("sqlite://{}", path.display()).parse().unwrap()
}

#[osprofiler::trace(name = "db")]
fn instance_get(project: &str, id: u64) -> u64 {
    black_box(project.len() as u64 + id)
}

/// Real recorded events: `traces` traces of `points` points each (a `wsgi` point and
/// `#[trace]` children), as the exporter hands them to a sink.
fn recorded(traces: usize, points: usize) -> Vec<Event> {
    let memory = MemorySink::new();
    let guard = notifier::set_sink(memory.clone());
    for _ in 0..traces {
        TraceContext::new(None, None, None).in_scope(|| {
            let _wsgi = osprofiler::point("wsgi");
            for i in 1..points {
                instance_get("demo", i as u64);
            }
        });
    }
    notifier::flush().unwrap();
    drop(guard);
    let events = memory.take();
    assert_eq!(events.len(), traces * points * 2);
    events
}

mod write {
    use super::*;

    fn run(bencher: Bencher, db: &str, batch: Vec<Event>) {
        let mut sink = sink(&database(db), &Options::default()).unwrap();
        bencher
            .counter(ItemsCount::new(batch.len()))
            .bench_local(|| sink.write(&batch).unwrap());
    }

    #[divan::bench]
    fn one_trace(bencher: Bencher) {
        run(bencher, "one_trace.db", recorded(1, BATCH / 2));
    }

    #[divan::bench]
    fn many_traces(bencher: Bencher) {
        run(bencher, "many_traces.db", recorded(BATCH / 16, 8));
    }
}

/// Whether divan measures (`cargo bench`) rather than runs each benchmark once as a test
/// (`cargo test`/nextest with `--all-targets`), which gets a small trace instead: the
/// 100,000-point one takes tens of seconds to make in a debug build.
fn measuring() -> bool {
    let args: Vec<String> = std::env::args().collect();
    args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--test")
}

mod read_100k {
    use super::*;

    static POINTS: LazyLock<u128> = LazyLock::new(|| if measuring() { 100_000 } else { 2_000 });
    const BASE: u128 = 0x6f1c_2b1e_8a5d_4c1e_9f0b_3d2a_1c0b_9e8f;

    /// A database holding one trace of 100,000 points (1,000 top-level points of 99
    /// children each; fewer when not measuring), with info as `#[trace]` records it; made
    /// once.
    static TRACE: LazyLock<ConnectionString> = LazyLock::new(|| {
        let cs = database("big.db");
        let t0 = 1_795_608_000_000_000;
        let host: Arc<str> = Arc::from("compute-1");
        let event = |i: u128, kind, us: i64| {
            let parent = if i.is_multiple_of(100) {
                BASE
            } else {
                i - i % 100 + 1
            };
            let info = match kind {
                EventKind::Start => json!({
                    "function": {"name": "nova.db.api.instance_get", "args": format!("(\"demo\", {i})"), "kwargs": "{}"},
                    "host": &*host,
                }),
                EventKind::Stop => json!({"host": &*host}),
            };
            let Value::Object(info) = info else {
                unreachable!()
            };
            Event {
                name: Cow::Borrowed("db"),
                kind,
                base_id: Id(BASE),
                trace_id: Id(i + 1),
                parent_id: Id(parent),
                timestamp: Timestamp(us),
                info: EventInfo::from(info),
                project: Some(Arc::from("nova")),
                service: Some(Arc::from("api")),
            }
        };
        let mut sink = sink(&cs, &Options::default()).unwrap();
        let mut batch = Vec::with_capacity(BATCH);
        for i in 0..*POINTS {
            let us = t0 + 3 * i as i64;
            batch.push(event(i, EventKind::Start, us));
            batch.push(event(i, EventKind::Stop, us + 2));
            if batch.len() == BATCH {
                sink.write(&batch).unwrap();
                batch.clear();
            }
        }
        sink.write(&batch).unwrap();
        cs
    });

    fn id() -> String {
        Id(BASE).to_string()
    }

    #[divan::bench(sample_count = 10, sample_size = 1)]
    fn fetch(bencher: Bencher) {
        let mut store = open(&TRACE, &Options::default()).unwrap();
        let id = id();
        bencher.bench_local(|| {
            let events = store.events(&id).unwrap();
            assert_eq!(events.len() as u128, 2 * *POINTS);
            events
        });
    }

    #[divan::bench(sample_count = 10, sample_size = 1)]
    fn build(bencher: Bencher) {
        let events = open(&TRACE, &Options::default())
            .unwrap()
            .events(&id())
            .unwrap();
        bencher
            .with_inputs(|| events.clone())
            .bench_local_values(Report::from_events);
    }

    #[divan::bench(sample_count = 10, sample_size = 1)]
    fn fetch_and_build(bencher: Bencher) {
        let mut store = open(&TRACE, &Options::default()).unwrap();
        let id = id();
        bencher.bench_local(|| {
            let report = store.report(&id).unwrap().unwrap();
            assert_eq!(report.len() as u128, *POINTS);
            report
        });
    }
}

mod search_10k {
    use super::*;
    use osprofiler_store::TraceQuery;

    static TRACES: LazyLock<usize> = LazyLock::new(|| if measuring() { 10_000 } else { 500 });

    /// A database of 10,000 recorded traces (a `wsgi` point and two `db` children each;
    /// fewer when not measuring), written in the exporter's batches; made once.
    static STORE: LazyLock<ConnectionString> = LazyLock::new(|| {
        let cs = database("search.db");
        let mut sink = sink(&cs, &Options::default()).unwrap();
        for chunk in recorded(*TRACES, 3).chunks(BATCH) {
            sink.write(chunk).unwrap();
        }
        cs
    });

    fn run(bencher: Bencher, query: TraceQuery) {
        let mut store = open(&STORE, &Options::default()).unwrap();
        bencher.bench_local(|| store.search_traces(&query).unwrap());
    }

    #[divan::bench]
    fn first_page(bencher: Bencher) {
        run(
            bencher,
            TraceQuery {
                limit: Some(50),
                ..TraceQuery::default()
            },
        );
    }

    #[divan::bench]
    fn every_trace(bencher: Bencher) {
        run(bencher, TraceQuery::default());
    }

    /// A filter no trace passes: every summary row is looked at.
    #[divan::bench]
    fn filter_scans_all(bencher: Bencher) {
        let query = TraceQuery {
            name: Some("no such point".into()),
            min_duration_us: Some(0),
            limit: Some(50),
            ..TraceQuery::default()
        };
        run(bencher, query);
    }

    /// Free text no event holds: every event's text is looked at.
    #[divan::bench(sample_count = 10, sample_size = 1)]
    fn text_scans_all(bencher: Bencher) {
        let query = TraceQuery {
            text: Some("no such text".into()),
            limit: Some(50),
            ..TraceQuery::default()
        };
        run(bencher, query);
    }
}
