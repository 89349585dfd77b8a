//! `messaging://` against a real RabbitMQ node started here:
//! `cargo bench -p osprofiler-store --features messaging --bench messaging`.
//!
//! - `publish_events`: `POINTS` points (two events each) recorded on one thread in traces
//!   of `points_per_trace` points, then a flush: the time is what the exporter needs to turn
//!   them into notifications and have the broker confirm every one. The throughput column
//!   is events/s. The queue is purged between iterations (not timed).
//! - `read_trace`: one trace of 10,000 points (20,000 messages) read back with
//!   `get_report`'s reader and built into a report, with an idle timeout of 100 ms (the
//!   wait after the last event is part of any read; Python's is 1 s).
//!
//! Python osprofiler 4.4.0's messaging driver (oslo.messaging) publishing 2,000 events, and
//! its `trace show` reading the same 10,000-point trace, are measured in the same run when
//! the oracle venv (with oslo.messaging) is there, and printed first.
//!
//! Run as a test (nextest runs every benchmark once, each in its own process), Python is
//! not timed and the traces are a tenth of the size: each case is a quick check.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use divan::{Bencher, counter::ItemsCount};
use osprofiler::{Event, Timestamp, TraceContext, notifier};
use osprofiler_store::{ConnectionString, Options, TransportUrl};
use osprofiler_testkit::{Oracle, RabbitMqServer};

const POINTS: usize = 20_000;
const READ_POINTS: usize = 10_000;

/// Whether divan measures (`cargo bench`) rather than runs each benchmark once as a test.
fn measuring() -> bool {
    let args: Vec<String> = std::env::args().collect();
    args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--test")
}

/// `n` points when measuring, a tenth in a test run.
fn scaled(n: usize) -> usize {
    if measuring() { n } else { n / 10 }
}

/// The broker `main` started (it stays owned by `main`, so that it is stopped at exit),
/// shared with the benchmarks by reference.
static MQ: Mutex<Option<(u16, String)>> = Mutex::new(None);

fn opts(url: &str) -> Options {
    Options {
        transport_url: Some(url.parse::<TransportUrl>().expect("transport url")),
        messaging_idle_timeout: Duration::from_millis(100),
        ..Options::default()
    }
}

fn purge(mq: &RabbitMqServer) {
    if let Err(e) = mq.ctl(&["purge_queue", "profiler.info"]) {
        eprintln!("purge_queue: {e}");
    }
}

fn main() {
    // Listing (nextest does, before running each case) needs no broker.
    if std::env::args().any(|a| a == "--list") {
        return divan::main();
    }
    let mq = match RabbitMqServer::start() {
        Ok(m) => m,
        Err(e) => {
            eprintln!("skipping the messaging benchmarks: rabbitmq-server unavailable: {e}");
            return;
        }
    };
    let url = mq.transport_url();
    *MQ.lock().unwrap_or_else(|e| e.into_inner()) = Some((mq.port(), url.clone()));
    if measuring() {
        python_rates(&mq, &url);
    }
    purge(&mq);

    notifier::configure(notifier::Config {
        max_queued_events: 4 * POINTS,
        ..notifier::Config::default()
    });
    let sink = osprofiler_store::sink(&ConnectionString::Messaging, &opts(&url)).expect("sink");
    let guard = notifier::set_boxed_sink(sink);
    PURGE.lock().unwrap_or_else(|e| e.into_inner()).replace(mq);

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
    drop(PURGE.lock().unwrap_or_else(|e| e.into_inner()).take());
}

/// The node, for purging between iterations; taken back and stopped at the end of `main`.
static PURGE: Mutex<Option<RabbitMqServer>> = Mutex::new(None);

fn synthetic_trace(points: usize) -> (String, Vec<Event>) {
    let base = osprofiler::Id::new_v4().to_string();
    let t0 = Timestamp::now().as_micros();
    let mut events = Vec::with_capacity(2 * points);
    for i in 0..points {
        let id = osprofiler::Id::new_v4().to_string();
        for (kind, at) in [("start", 10 * i as i64), ("stop", 10 * i as i64 + 5)] {
            let text = format!(
                r#"{{"name": "db-{kind}", "base_id": "{base}", "trace_id": "{id}", "parent_id": "{base}", "timestamp": "{}", "info": {{"host": "h1"}}, "project": "nova", "service": "api"}}"#,
                Timestamp(t0 + at)
            );
            events.push(Event::from_json(&text).expect("event"));
        }
    }
    (base, events)
}

/// Python's driver publishing 2,000 events, and Python's `trace show` reading a
/// 10,000-point trace we published.
fn python_rates(mq: &RabbitMqServer, url: &str) {
    const SCRIPT: &str = r#"
import sys, time, uuid
from oslo_config import cfg
from osprofiler import opts
from osprofiler.drivers import base
opts.set_defaults(cfg.CONF); cfg.CONF([])
drv = base.get_driver("messaging://", project="nova", service="api", host="h1", conf=cfg.CONF,
                      context={}, transport_url=sys.argv[1])
b = str(uuid.uuid4())
n = 2000
t = time.perf_counter()
for i in range(n):
    drv.notify({"name": "db-start" if i % 2 == 0 else "db-stop", "base_id": b,
                "trace_id": str(uuid.uuid4()), "parent_id": b,
                "timestamp": "2026-11-25T12:00:00.000000", "info": {"host": "h1"}})
print(f"{n / (time.perf_counter() - t):.0f}")
"#;
    let py = match Oracle::locate().and_then(|py| {
        py.python("import oslo_messaging", &[])?;
        Ok(py)
    }) {
        Ok(py) => py,
        Err(e) => {
            eprintln!("Python osprofiler not measured: {e}");
            return;
        }
    };
    match py.python(SCRIPT, &[url]) {
        Ok(rate) => eprintln!(
            "Python osprofiler 4.4.0 messaging driver: {} events/s (2,000 events, one notify each)",
            rate.trim()
        ),
        Err(e) => eprintln!("Python publish rate not measured: {e}"),
    }
    purge(mq);
    let (base, events) = synthetic_trace(READ_POINTS);
    let mut sink = osprofiler_store::sink(&ConnectionString::Messaging, &opts(url)).expect("sink");
    for chunk in events.chunks(4096) {
        sink.write(chunk).expect("published");
    }
    let started = Instant::now();
    match py.cli(&[
        "trace",
        "show",
        "--connection-string",
        "messaging://",
        "--transport-url",
        url,
        "--idle-timeout",
        "1",
        "--json",
        &base,
    ]) {
        Ok(out) => eprintln!(
            "Python osprofiler 4.4.0 `trace show` of a {READ_POINTS}-point trace: {:.2} s in all, its 1 s idle timeout included ({} bytes of JSON)",
            started.elapsed().as_secs_f64(),
            out.len()
        ),
        Err(e) => eprintln!("Python read not measured: {e}"),
    }
}

/// `POINTS` points in traces of `points_per_trace`, then a flush.
#[divan::bench(args = [10, 1_000], sample_count = 5, sample_size = 1)]
fn publish_events(b: Bencher, points_per_trace: usize) {
    let points = scaled(POINTS);
    b.counter(ItemsCount::new(2 * points))
        .with_inputs(|| {
            if let Some(mq) = PURGE.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
                purge(mq);
            }
        })
        .bench_local_values(|()| {
            for _ in 0..points / points_per_trace {
                let ctx = TraceContext::new(None, None, None);
                let _in = ctx.enter();
                for _ in 0..points_per_trace {
                    let _p = osprofiler::point("db");
                }
            }
            notifier::flush_timeout(Duration::from_secs(120)).expect("flushed");
        });
}

/// A 10,000-point trace read off the bus and built into a report.
#[divan::bench(sample_count = 3, sample_size = 1)]
fn read_trace(b: Bencher) {
    let url = match MQ.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
        Some((_, url)) => url.clone(),
        None => return,
    };
    let o = opts(&url);
    let points = scaled(READ_POINTS);
    b.counter(ItemsCount::new(2 * points))
        .with_inputs(|| {
            if let Some(mq) = PURGE.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
                purge(mq);
            }
            let (base, events) = synthetic_trace(points);
            let mut sink = osprofiler_store::sink(&ConnectionString::Messaging, &o).expect("sink");
            for chunk in events.chunks(4096) {
                sink.write(chunk).expect("published");
            }
            base
        })
        .bench_local_values(|base| {
            let mut store =
                osprofiler_store::open(&ConnectionString::Messaging, &o).expect("store");
            let report = store.report(&base).expect("read").expect("found");
            assert_eq!(report.len(), points);
        });
}
