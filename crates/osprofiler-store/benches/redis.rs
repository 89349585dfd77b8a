//! Sustained write throughput of the Redis sink through the real notifier, to a real
//! redis-server started here: `cargo bench -p osprofiler-store --bench redis`.
//!
//! One iteration records `POINTS` points (two events each) on one thread, in traces of
//! `points_per_trace` points, then flushes: the time is what the exporter thread needs to
//! turn the records into events, serialize them and send them to Redis (recording takes a
//! few ms of it). The throughput column is events/s. The Python osprofiler 4.4.0 driver's
//! rate (one `LPUSH` round trip per event) is measured in the same run when its
//! virtualenv is there, and printed first.

use std::sync::Mutex;
use std::time::Duration;

use divan::{Bencher, counter::ItemsCount};
use osprofiler::{TraceContext, notifier};
use osprofiler_store::{ConnectionString, Options};
use osprofiler_testkit::{Oracle, RedisConn, RedisServer};

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
