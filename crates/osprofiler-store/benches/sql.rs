//! The SQL sinks and readers against a real PostgreSQL and a real MariaDB, each started
//! here: `cargo bench -p osprofiler-store --features postgres,mysql --bench sql`.
//!
//! `write_*`: batches of 4096 events (one transaction of multi-row INSERTs each) through
//! the sink, as the exporter thread hands them over; the throughput column is events/s.
//! `fetch_*`: a 10,000-point and a 100,000-point trace (20,000 and 200,000 events)
//! fetched by base id and built into a report. Python osprofiler 4.4.0's sqlalchemy driver (SQLAlchemy 1.4, one INSERT and
//! commit per event) is measured in the same run when its virtualenv is there, and printed
//! first.
//!
//! Run as a test (nextest runs every benchmark once, each in its own process, and each
//! process redoes this setup), the fills are small and Python is not timed: each case is
//! a quick check that the benchmark still works.

use std::sync::{Mutex, OnceLock};

use divan::{Bencher, counter::ItemsCount};
use osprofiler::{Event, Timestamp};
use osprofiler_store::{ConnectionString, Options, Sink, TraceStore};
use osprofiler_testkit::{MariaDbServer, Oracle, PostgresServer};

const BATCH: usize = 4096;
const BATCHES: usize = 8;
/// The traces fetched: (points when measuring, base id).
const FETCHED: [(usize, &str); 2] = [
    (10_000, "ffffffff-0000-4000-8000-000000000001"),
    (100_000, "ffffffff-0000-4000-8000-000000000002"),
];

static PG: OnceLock<String> = OnceLock::new();
static MARIA: OnceLock<String> = OnceLock::new();
/// A second database on each server holding only the searched traces, all written by
/// our sink (so every trace has its summary), beside the first one where Python wrote too.
static PG_SEARCH: OnceLock<String> = OnceLock::new();
static MARIA_SEARCH: OnceLock<String> = OnceLock::new();

/// Whether divan measures (`cargo bench`) rather than runs each benchmark once as a test.
fn measuring() -> bool {
    let args: Vec<String> = std::env::args().collect();
    args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--test")
}

/// A fill of `n` when measuring; a hundredth of it in a test run.
fn scaled(n: usize) -> usize {
    if measuring() { n } else { n / 100 }
}

/// Whether the benchmarks asked for need `server` (`postgres`, `mariadb`): all do,
/// unless the filters name only the other (as a test run's single case does).
fn wanted(server: &str) -> bool {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let named = |s: &str| filters.iter().any(|f| f.contains(s));
    named(server) || !(named("postgres") || named("mariadb"))
}

fn main() {
    // Listing (nextest does, before running each case) needs no servers.
    if std::env::args().any(|a| a == "--list") {
        return divan::main();
    }
    let pg = wanted("postgres")
        .then(|| {
            PostgresServer::start()
                .map_err(|e| eprintln!("PostgreSQL benchmarks skipped: {e}"))
                .ok()
        })
        .flatten();
    let maria = wanted("mariadb")
        .then(|| {
            MariaDbServer::start()
                .map_err(|e| eprintln!("MariaDB benchmarks skipped: {e}"))
                .ok()
        })
        .flatten();
    let pg_search = pg.as_ref().and_then(|s| {
        s.psql("CREATE DATABASE search")
            .map_err(|e| eprintln!("search database: {e}"))
            .ok()?;
        Some(format!("{}/search", s.url().trim_end_matches("/postgres")))
    });
    let maria_search = maria.as_ref().and_then(|s| {
        s.sql("CREATE DATABASE search")
            .map_err(|e| eprintln!("search database: {e}"))
            .ok()?;
        Some(format!(
            "{}/search",
            s.url().trim_end_matches("/osprofiler")
        ))
    });
    for (name, url, cell, search_url, search_cell) in [
        (
            "PostgreSQL",
            pg.as_ref().map(|s| s.url()),
            &PG,
            pg_search,
            &PG_SEARCH,
        ),
        (
            "MariaDB",
            maria.as_ref().map(|s| s.url()),
            &MARIA,
            maria_search,
            &MARIA_SEARCH,
        ),
    ] {
        let Some(url) = url else { continue };
        if measuring() {
            python_rate(name, &url);
        }
        fill_fetch_trace(&url);
        if measuring() {
            python_fetch(name, &url);
        }
        fill_search_traces(&url);
        let _ = cell.set(url);
        if let Some(search_url) = search_url {
            fill_search_traces(&search_url);
            let _ = search_cell.set(search_url);
        }
    }
    divan::main();
    drop(pg);
    drop(maria);
}

fn cs(url: &str) -> ConnectionString {
    url.parse().expect("connection string")
}

fn point_events(base: &str, n: usize, t0: i64) -> [Event; 2] {
    let id = format!("eeeeeeee-0000-4000-8000-{n:012}");
    let make = |name: &str, us: i64| {
        let text = format!(
            r#"{{"name": "{name}", "base_id": "{base}", "trace_id": "{id}", "parent_id": "{base}", "timestamp": "{}", "info": {{"db": {{"statement": "SELECT * FROM instances WHERE id = %s", "params": {{"id": {n}}}}}, "host": "h1"}}, "project": "nova", "service": "api"}}"#,
            Timestamp(us)
        );
        Event::from_json(&text).expect("event")
    };
    [
        make("db-start", t0 + n as i64 * 10),
        make("db-stop", t0 + n as i64 * 10 + 5),
    ]
}

fn fill_fetch_trace(url: &str) {
    let mut sink = osprofiler_store::sink(&cs(url), &Options::default()).expect("sink");
    for (points, base) in FETCHED {
        let mut batch = Vec::with_capacity(BATCH);
        for p in 0..scaled(points) {
            batch.extend(point_events(base, p, 1_764_072_000_000_000));
            if batch.len() >= BATCH {
                sink.write(&batch).expect("write");
                batch.clear();
            }
        }
        sink.write(&batch).expect("write");
    }
}

/// Traces listed by `search_*` (a hundredth in a test run: still two pages): one point
/// each, a second apart.
const SEARCHED: usize = 10_000;

fn fill_search_traces(url: &str) {
    let mut sink = osprofiler_store::sink(&cs(url), &Options::default()).expect("sink");
    let mut batch = Vec::with_capacity(BATCH);
    for t in 0..scaled(SEARCHED) {
        let base = format!("dddddddd-0000-4000-8000-{t:012}");
        batch.extend(point_events(
            &base,
            t,
            1_764_000_000_000_000 + t as i64 * 1_000_000,
        ));
        if batch.len() >= BATCH {
            sink.write(&batch).expect("write");
            batch.clear();
        }
    }
    sink.write(&batch).expect("write");
}

/// The first page (50 traces) of `search_traces` over the store's traces: `all`, no
/// filter; `errors`, errors only (none has one, so every trace is looked at); `service`,
/// one service (every trace has it, so the sets are read); `slow`, at least a second
/// long (none is: every trace is looked at). Target: at most 200 ms for
/// 10,000 traces.
fn search(b: Bencher, url: Option<&String>, query: &str) {
    let Some(url) = url else { return };
    let mut store: Box<dyn TraceStore> =
        osprofiler_store::open(&cs(url), &Options::default()).expect("store");
    let mut q = osprofiler_store::TraceQuery {
        limit: Some(50),
        ..Default::default()
    };
    match query {
        "errors" => q.errors_only = true,
        "service" => q.service = Some("api".to_owned()),
        "slow" => q.min_duration_us = Some(1_000_000),
        _ => {}
    }
    b.bench_local(|| {
        let page = store.search_traces(&q).expect("search");
        assert_eq!(
            page.traces.len(),
            if matches!(query, "errors" | "slow") {
                0
            } else {
                50
            }
        );
        page
    });
}

/// `all`, `errors`, `service`: a database our sink alone wrote (every trace has its
/// summary); `python_too`: the database Python's driver also wrote to (one trace without
/// a summary, and the fetched traces), so each trace's row count is checked.
const SEARCHES: [&str; 5] = ["all", "errors", "service", "slow", "python_too"];

#[divan::bench(args = SEARCHES, sample_count = 10, sample_size = 1)]
fn search_postgres(b: Bencher, query: &str) {
    match query {
        "python_too" => search(b, PG.get(), "all"),
        _ => search(b, PG_SEARCH.get(), query),
    }
}

#[divan::bench(args = SEARCHES, sample_count = 10, sample_size = 1)]
fn search_mariadb(b: Bencher, query: &str) {
    match query {
        "python_too" => search(b, MARIA.get(), "all"),
        _ => search(b, MARIA_SEARCH.get(), query),
    }
}

/// Python osprofiler's sqlalchemy driver writing 2,000 events, one `notify` each.
fn python_rate(name: &str, url: &str) {
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
    let py_url = url
        .replace("postgresql://", "postgresql+psycopg2://")
        .replace("mysql://", "mysql+pymysql://");
    match py.python(SCRIPT, &[&py_url]) {
        Ok(rate) => eprintln!(
            "Python osprofiler 4.4.0 sqlalchemy driver, {name}: {} events/s (2,000 events, one INSERT and commit each)",
            rate.trim()
        ),
        Err(e) => eprintln!("Python osprofiler rate not measured: {e}"),
    }
}

/// Python's driver fetching and building the 10,000-point trace our sink wrote (its
/// `get_report`, as `osprofiler trace show` calls it), best of three, printed beside
/// `fetch_*`.
fn python_fetch(name: &str, url: &str) {
    let Ok(py) = Oracle::locate() else { return };
    let Some((points, base)) = FETCHED.first() else {
        return;
    };
    let py_url = url
        .replace("postgresql://", "postgresql+psycopg2://")
        .replace("mysql://", "mysql+pymysql://");
    match py.time_get_report(&py_url, base) {
        Ok(out) => eprintln!(
            "Python osprofiler 4.4.0 sqlalchemy driver, {name}: get_report of the {points}-point trace: {} (best of 3)",
            out.trim()
        ),
        Err(e) => eprintln!("Python osprofiler fetch not measured: {e}"),
    }
}

fn write(b: Bencher, url: Option<&String>, points_per_trace: usize, summaries: bool) {
    let Some(url) = url else { return };
    let opts = Options {
        trace_summaries: summaries,
        ..Options::default()
    };
    let sink: Mutex<Box<dyn Sink>> =
        Mutex::new(osprofiler_store::sink(&cs(url), &opts).expect("sink"));
    let mut n = 0usize;
    // One batch in a test run.
    let batches = if measuring() { BATCHES } else { 1 };
    b.counter(ItemsCount::new(BATCH * batches))
        .with_inputs(|| {
            n += 1;
            (0..batches)
                .map(|k| {
                    (0..BATCH / 2)
                        .flat_map(|p| {
                            let point = k * BATCH / 2 + p;
                            let trace = point / points_per_trace;
                            let s = u8::from(summaries);
                            let base = format!("aaaaaaa{s}-{n:04}-4000-8000-{trace:012}");
                            point_events(&base, point, 1_764_072_000_000_000)
                        })
                        .collect::<Vec<_>>()
                })
                .collect::<Vec<_>>()
        })
        .bench_local_values(|batches| {
            let mut s = sink.lock().unwrap_or_else(|e| e.into_inner());
            for batch in &batches {
                s.write(batch).expect("write");
            }
        });
}

fn fetch(b: Bencher, url: Option<&String>, points: usize) {
    let Some(url) = url else { return };
    let Some((_, base)) = FETCHED.iter().find(|(p, _)| *p == points) else {
        return;
    };
    let mut store: Box<dyn TraceStore> =
        osprofiler_store::open(&cs(url), &Options::default()).expect("store");
    b.bench_local(|| {
        let report = store.report(base).expect("read").expect("trace");
        assert_eq!(report.len(), scaled(points));
        report
    });
}

/// `args`: points per trace (10: a short request, each batch touching ~200 traces).
#[divan::bench(args = [10, 16_384], sample_count = 10, sample_size = 1)]
fn write_postgres(b: Bencher, points_per_trace: usize) {
    write(b, PG.get(), points_per_trace, true);
}

#[divan::bench(args = [10, 16_384], sample_count = 10, sample_size = 1)]
fn write_mariadb(b: Bencher, points_per_trace: usize) {
    write(b, MARIA.get(), points_per_trace, true);
}

/// As `write_*`, without the per-trace summaries (`Options::trace_summaries` off): their
/// cost is the difference.
#[divan::bench(args = [10, 16_384], sample_count = 10, sample_size = 1)]
fn write_postgres_no_summaries(b: Bencher, points_per_trace: usize) {
    write(b, PG.get(), points_per_trace, false);
}

#[divan::bench(args = [10, 16_384], sample_count = 10, sample_size = 1)]
fn write_mariadb_no_summaries(b: Bencher, points_per_trace: usize) {
    write(b, MARIA.get(), points_per_trace, false);
}

#[divan::bench(args = [10_000, 100_000], sample_count = 10, sample_size = 1)]
fn fetch_postgres(b: Bencher, points: usize) {
    fetch(b, PG.get(), points);
}

#[divan::bench(args = [10_000, 100_000], sample_count = 10, sample_size = 1)]
fn fetch_mariadb(b: Bencher, points: usize) {
    fetch(b, MARIA.get(), points);
}
