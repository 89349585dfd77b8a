//! Sustained write throughput of the Redis sink through the real notifier, to a real
//! redis-server started here: `cargo bench -p osprofiler-store --bench redis`.
//!
//! One iteration records `POINTS` points (two events each) on one thread, in traces of
//! `points_per_trace` points, then flushes: the time is what the exporter thread needs to
//! turn the records into events, serialize them and send them to Redis (recording takes a
//! few ms of it). The throughput column is events/s. The Python osprofiler 4.4.0 driver's
//! rate (one `LPUSH` round trip per event) is measured in the same run when its
//! virtualenv is there, and printed first.
//!
//! `search_10k/*`: `TraceStore::search_traces` on a second redis-server holding 10,000
//! traces of 3 points (the UI's search page; target ≤ 200 ms), read from the per-trace
//! summaries: the first page of 50, every trace, a filter that looks at every summary, a
//! free-text search that reads every event. Python osprofiler's `trace list` on the same
//! server is timed in the same run (a subprocess, its interpreter's start included, which
//! is timed too) and printed before the table.

use std::borrow::Cow;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use divan::{Bencher, counter::ItemsCount};
use osprofiler::{Event, EventInfo, EventKind, Id, Timestamp, TraceContext, notifier};
use osprofiler_store::{ConnectionString, Options, TraceQuery};
use osprofiler_testkit::{Oracle, RedisConn, RedisServer};
use serde_json::json;

const POINTS: usize = 100_000;

/// A connection to the server `main` started (the server itself stays in `main`, so that
/// it is stopped at exit: statics are never dropped).
static SERVER: Mutex<Option<RedisConn>> = Mutex::new(None);

fn main() {
    let redis = match RedisServer::start() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("skipping the Redis benchmarks: redis-server unavailable: {e}");
            return;
        }
    };
    let url = redis.url();
    match redis.connect() {
        Ok(c) => *SERVER.lock().unwrap_or_else(|e| e.into_inner()) = Some(c),
        Err(e) => {
            eprintln!("skipping the Redis benchmarks: {e}");
            return;
        }
    }
    python_rate(&url);
    // Kept here, stopped at exit.
    let _search_server = search_setup();

    // Room for a whole iteration: the point is the exporter's rate, not the drop policy.
    notifier::configure(notifier::Config {
        max_queued_events: 4 * POINTS,
        ..notifier::Config::default()
    });
    let cs: ConnectionString = url.parse().expect("redis url");
    let sink = osprofiler_store::sink(&cs, &Options::default()).expect("redis sink");
    let guard = notifier::set_boxed_sink(sink);

    divan::main();

    let s = notifier::stats();
    eprintln!(
        "osprofiler pipeline: exported {} events, dropped {} (queue full), failed {}, last error {:?}",
        s.exported,
        s.dropped,
        s.failed,
        notifier::last_error()
    );
    drop(guard);
    drop(redis);
}

/// Python osprofiler's Redis driver writing 2,000 events, one `notify` each.
fn python_rate(url: &str) {
    const SCRIPT: &str = r#"
import sys, time, uuid
from oslo_config import cfg
from osprofiler import opts
from osprofiler.drivers import base
opts.set_defaults(cfg.CONF); cfg.CONF([])
drv = base.get_driver(sys.argv[1], project="nova", service="api", host="h1", conf=cfg.CONF)
b = str(uuid.uuid4())
n = 2000
t = time.perf_counter()
for i in range(n):
    drv.notify({"name": "db-start" if i % 2 == 0 else "db-stop", "base_id": b,
                "trace_id": str(uuid.uuid4()), "parent_id": b,
                "timestamp": "2026-11-25T12:00:00.000000", "info": {"host": "h1"}})
print(f"{n / (time.perf_counter() - t):.0f}")
"#;
    let py = match Oracle::locate() {
        Ok(py) => py,
        Err(e) => {
            eprintln!("Python osprofiler rate not measured: {e}");
            return;
        }
    };
    match py.python(SCRIPT, &[url]) {
        Ok(rate) => eprintln!(
            "Python osprofiler 4.4.0 Redis driver: {} events/s (2,000 events, one LPUSH round trip each)",
            rate.trim()
        ),
        Err(e) => eprintln!("Python osprofiler rate not measured: {e}"),
    }
}

/// The search benchmarks' server.
static SEARCH: OnceLock<ConnectionString> = OnceLock::new();

/// Whether divan measures (`cargo bench`) rather than runs each benchmark once as a test,
/// which gets fewer traces.
fn measuring() -> bool {
    let args: Vec<String> = std::env::args().collect();
    args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--test")
}

/// Starts the search benchmarks' server and fills it with 10,000 traces (a `wsgi` point,
/// `POST /v2.1/servers`, with two `db` children, in two services; one in ten failing),
/// written by our sink in batches of 4,096 events; then times Python's `trace list` there.
fn search_setup() -> Option<RedisServer> {
    let redis = match RedisServer::start() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("skipping the search benchmarks: redis-server unavailable: {e}");
            return None;
        }
    };
    let traces: u128 = if measuring() { 10_000 } else { 300 };
    let cs: ConnectionString = redis.url().parse().expect("redis url");
    let mut w = osprofiler_store::sink(&cs, &Options::default()).expect("redis sink");
    let t0 = Timestamp::now().as_micros() - 3_600_000_000;
    let ev = |base: u128,
              point: u128,
              parent: u128,
              name: &'static str,
              service: &str,
              kind,
              us,
              info| {
        let mut info = match info {
            serde_json::Value::Object(m) => m,
            _ => serde_json::Map::new(),
        };
        info.insert("host".into(), json!("h1"));
        Event {
            name: Cow::Borrowed(name),
            kind,
            base_id: Id(base),
            trace_id: Id(point),
            parent_id: Id(parent),
            timestamp: Timestamp(us),
            info: EventInfo::from(info),
            project: Some(Arc::from("nova")),
            service: Some(Arc::from(service)),
        }
    };
    let mut batch = Vec::with_capacity(4096);
    let started = Instant::now();
    for i in 0..traces {
        let base = (i + 1) << 64 | 0x4000_8000_0000_0000;
        let at = t0 + i as i64 * 300_000;
        let dur = 1_000 + (i as i64 * 7919) % 50_000;
        use EventKind::{Start, Stop};
        let req = json!({"request": {"method": "POST", "path": "/v2.1/servers", "query": "", "scheme": "http"}});
        let stmt = json!({"db": {"statement": "SELECT * FROM instances WHERE project_id = ?", "params": {}}});
        let fail = if i % 10 == 3 {
            json!({"etype": "OperationalError", "message": "locked"})
        } else {
            json!({})
        };
        batch.extend([
            ev(base, base + 1, base, "wsgi", "api", Start, at, req),
            ev(
                base,
                base + 2,
                base + 1,
                "db",
                "api",
                Start,
                at + 100,
                stmt.clone(),
            ),
            ev(
                base,
                base + 2,
                base + 1,
                "db",
                "api",
                Stop,
                at + 400,
                json!({}),
            ),
            ev(
                base,
                base + 3,
                base + 1,
                "db",
                "conductor",
                Start,
                at + 500,
                stmt,
            ),
            ev(
                base,
                base + 3,
                base + 1,
                "db",
                "conductor",
                Stop,
                at + 900,
                fail,
            ),
            ev(
                base,
                base + 1,
                base,
                "wsgi",
                "api",
                Stop,
                at + dur,
                json!({}),
            ),
        ]);
        if batch.len() >= 4096 {
            w.write(&batch).expect("written");
            batch.clear();
        }
    }
    w.write(&batch).expect("written");
    eprintln!(
        "search store: {traces} traces ({} events) written in {:.0} ms",
        traces * 6,
        started.elapsed().as_secs_f64() * 1e3
    );
    // What the benchmarks time is a real page of summaries.
    let page = osprofiler_store::open(&cs, &Options::default())
        .map(|mut s| {
            s.search_traces(&TraceQuery {
                limit: Some(50),
                ..TraceQuery::default()
            })
        })
        .expect("opened")
        .expect("searched");
    assert_eq!(page.traces.len(), 50);
    assert!(page.more);
    let newest = &page.traces[0];
    assert_eq!(newest.services, ["api", "conductor"]);
    assert_eq!((newest.points, newest.categories.len()), (3, 2));
    let _ = SEARCH.set(cs.clone());
    // Run as a test (once per benchmark, each in its own process): no timing.
    if measuring() {
        python_list(&redis.url(), traces);
    }
    Some(redis)
}

/// Times Python osprofiler's `trace list` on the search store (three runs, the fastest),
/// and its interpreter's start alone (`osprofiler --version`).
fn python_list(url: &str, traces: u128) {
    let py = match Oracle::locate() {
        Ok(py) => py,
        Err(e) => {
            eprintln!("Python osprofiler trace list not timed: {e}");
            return;
        }
    };
    let best = |args: &[&str]| -> Result<(f64, String), String> {
        let mut best = f64::MAX;
        let mut out = String::new();
        for _ in 0..3 {
            let t = Instant::now();
            out = py.cli(args)?;
            best = best.min(t.elapsed().as_secs_f64() * 1e3);
        }
        Ok((best, out))
    };
    let list = best(&["trace", "list", "--connection-string", url]);
    let start = best(&["--version"]);
    match (list, start) {
        (Ok((ms, out)), Ok((start_ms, _))) => {
            let listed = out
                .lines()
                .filter(|l| l.contains("-4000-800000000000"))
                .count();
            eprintln!(
                "Python osprofiler 4.4.0 `trace list` on the same Redis: {ms:.0} ms for {listed} of {traces} traces (its interpreter's start alone: {start_ms:.0} ms; no summaries, no filters, no paging)"
            );
        }
        (Err(e), _) | (_, Err(e)) => eprintln!("Python osprofiler trace list failed: {e}"),
    }
}

mod search_10k {
    use super::*;
    use osprofiler_store::{TraceStore, open};

    fn run(bencher: Bencher, query: TraceQuery) {
        let Some(cs) = SEARCH.get() else {
            return;
        };
        let mut store: Box<dyn TraceStore> = open(cs, &Options::default()).expect("opened");
        bencher.bench_local(|| store.search_traces(&query).expect("searched"));
    }

    /// The UI's search page: the newest 50.
    #[divan::bench(sample_count = 20)]
    fn first_page(bencher: Bencher) {
        run(
            bencher,
            TraceQuery {
                limit: Some(50),
                ..TraceQuery::default()
            },
        );
    }

    #[divan::bench(sample_count = 10)]
    fn every_trace(bencher: Bencher) {
        run(bencher, TraceQuery::default());
    }

    /// A filter no trace passes: every summary is read.
    #[divan::bench(sample_count = 10)]
    fn filter_scans_all(bencher: Bencher) {
        run(
            bencher,
            TraceQuery {
                name: Some("no such point".into()),
                limit: Some(50),
                ..TraceQuery::default()
            },
        );
    }

    /// Free text no event holds: every event is read.
    #[divan::bench(sample_count = 5, sample_size = 1)]
    fn text_scans_all(bencher: Bencher) {
        run(
            bencher,
            TraceQuery {
                text: Some("no such text".into()),
                limit: Some(50),
                ..TraceQuery::default()
            },
        );
    }
}

/// `POINTS` points in traces of `points_per_trace`, then a flush.
#[divan::bench(args = [10, 1_000], sample_count = 10, sample_size = 1)]
fn write_events(b: Bencher, points_per_trace: usize) {
    b.counter(ItemsCount::new(2 * POINTS))
        .with_inputs(|| {
            // Each iteration writes ~80 MB; start from an empty server.
            if let Some(c) = SERVER.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
                let _ = c.cmd(&["FLUSHALL"]);
            }
            std::thread::sleep(Duration::from_millis(20));
        })
        .bench_local_values(|()| {
            for _ in 0..POINTS / points_per_trace {
                let ctx = TraceContext::new(None, None, None);
                let _in = ctx.enter();
                for _ in 0..points_per_trace {
                    let _p = osprofiler::point("db");
                }
            }
            notifier::flush_timeout(Duration::from_secs(60)).expect("flushed");
        });
}
