//! The cost of trace points, side by side with the peers in the same binary and
//! the same run: fastrace (the fastest Rust tracer) and `tracing` exported through
//! `tracing-opentelemetry` and the OpenTelemetry SDK's batch span processor. The
//! clock benches normalise the figures (`cargo bench -p osprofiler --bench points`;
//! `scripts/bench` runs it and prints the table).
//!
//! - `clock/*`: one TSC read (fastant, what a point reads twice) and `Instant::now()`.
//! - `untraced/*`: a traced function called with no active trace, against the same
//!   function without the attribute.
//! - `point/*`: one point (start + stop, static name) in a trace entered once: the
//!   marginal cost of a point; `bare`, and a `db` point with its statement and a row
//!   count: `info2` through `Info` (`point_with`), `fields2` through `point_with_fields`.
//! - `tree/<lib>/N`: one iteration = enter a long-lived trace, record N points, leave
//!   it (the buffer goes to the exporter thread, which runs on the other core and
//!   feeds a sink that discards); per point = per iteration / N. fastrace: a new root
//!   span per iteration (that is how it hands spans over); `tracing`: a root span and
//!   N children.
//! - `new_trace/<lib>/N`: a new trace per iteration (new ids), N points, finished.
//! - `both_cores/<lib>`: `tree`'s N = 100 on two threads at once, the exporter competing.
//! - `exporter/*`: the exporter thread alone: a backlog of recorded points is let
//!   through to a sink that discards (or writes each event's JSON into a buffer);
//!   items = events made (and formatted) per second.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};

use divan::{Bencher, black_box, counter::ItemsCount};
use fastrace::prelude::*;
use osprofiler::notifier::{self, Sink, SinkError};
use osprofiler::{Event, Field, Info, TraceContext};

fn main() {
    setup();
    divan::main();
    let s = notifier::stats();
    eprintln!(
        "osprofiler pipeline: exported {} events, dropped {} (queue full), failed {}",
        s.exported, s.dropped, s.failed
    );
    // Only under `cargo bench` (which passes --bench), not when tests run the benches once.
    if std::env::args().any(|a| a == "--bench") && std::env::var_os("NO_PYTHON").is_none() {
        python_baseline();
    }
}

/// Python osprofiler 4.4.0 on the same cases, in the same run, when the oracle venv
/// made by scripts/test-all is there.
fn python_baseline() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let python = std::env::var("OSPROFILER_ORACLE")
        .map(|d| format!("{d}/bin/python"))
        .unwrap_or(format!("{root}/target/oracle/bin/python"));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/python_points.py");
    match std::process::Command::new(&python).arg(script).output() {
        Ok(o) if o.status.success() => eprintln!(
            "python osprofiler 4.4.0 (ns): {}",
            String::from_utf8_lossy(&o.stdout).trim()
        ),
        Ok(o) => eprintln!(
            "python baseline failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => eprintln!("python baseline skipped: {python}: {e}"),
    }
}

// The exporter benches hold the sink shut while a backlog builds up, then time
// how fast the exporter drains it. Open everywhere else.
static GATED: AtomicBool = AtomicBool::new(false);
static GATE: Mutex<bool> = Mutex::new(false);
static GATE_CV: Condvar = Condvar::new();
// Whether the sink formats each event's JSON (the work a file or Redis sink adds).
static FORMAT: AtomicBool = AtomicBool::new(false);

struct NullSink {
    json: Vec<u8>,
}

impl Sink for NullSink {
    fn write(&mut self, events: &[Event]) -> Result<(), SinkError> {
        if GATED.load(Ordering::Acquire)
            && let Ok(mut shut) = GATE.lock()
        {
            while *shut {
                shut = match GATE_CV.wait(shut) {
                    Ok(s) => s,
                    Err(_) => break,
                };
            }
        }
        if FORMAT.load(Ordering::Relaxed) {
            for e in events {
                self.json.clear();
                e.write_json(&mut self.json);
                black_box(&self.json);
            }
        }
        black_box(events);
        Ok(())
    }
}

struct NullReporter;

impl fastrace::collector::Reporter for NullReporter {
    fn report(&mut self, spans: Vec<SpanRecord>) {
        black_box(spans);
    }
}

/// An OpenTelemetry exporter that discards: what the SDK costs, not a backend.
#[derive(Debug)]
struct DiscardExporter;

impl opentelemetry_sdk::trace::SpanExporter for DiscardExporter {
    fn export(
        &self,
        batch: Vec<opentelemetry_sdk::trace::SpanData>,
    ) -> impl std::future::Future<Output = opentelemetry_sdk::error::OTelSdkResult> + Send {
        black_box(batch);
        std::future::ready(Ok(()))
    }
}

fn setup() {
    std::mem::forget(notifier::set_sink(NullSink {
        json: Vec::with_capacity(1024),
    }));
    fastrace::set_reporter(NullReporter, fastrace::collector::Config::default());
    use opentelemetry::trace::TracerProvider as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(DiscardExporter)
        .build();
    let tracer = provider.tracer("bench");
    std::mem::forget(provider);
    let subscriber =
        tracing_subscriber::registry().with(tracing_opentelemetry::layer().with_tracer(tracer));
    let _ = tracing::subscriber::set_global_default(subscriber);
}

mod clock {
    #[divan::bench]
    fn tsc_fastant() -> fastant::Instant {
        fastant::Instant::now()
    }

    #[divan::bench]
    fn std_instant() -> std::time::Instant {
        std::time::Instant::now()
    }
}

#[inline(never)]
fn plain(x: u64) -> u64 {
    black_box(x).wrapping_mul(3)
}

#[osprofiler::trace(name = "db")]
#[inline(never)]
fn traced(x: u64) -> u64 {
    black_box(x).wrapping_mul(3)
}

#[fastrace::trace]
#[inline(never)]
fn fastrace_traced(x: u64) -> u64 {
    black_box(x).wrapping_mul(3)
}

#[tracing::instrument(skip_all)]
#[inline(never)]
fn tracing_traced(x: u64) -> u64 {
    black_box(x).wrapping_mul(3)
}

mod untraced {
    use super::*;

    #[divan::bench]
    fn plain_call(b: Bencher) {
        b.bench_local(|| plain(black_box(7)));
    }

    #[divan::bench]
    fn osprofiler(b: Bencher) {
        assert!(!osprofiler::is_active());
        b.bench_local(|| traced(black_box(7)));
    }

    #[divan::bench]
    fn fastrace(b: Bencher) {
        b.bench_local(|| fastrace_traced(black_box(7)));
    }

    #[divan::bench]
    fn tracing(b: Bencher) {
        b.bench_local(|| tracing_traced(black_box(7)));
    }
}

mod point {
    use super::*;

    #[divan::bench(sample_count = 200, sample_size = 2000)]
    fn bare(b: Bencher) {
        let ctx = TraceContext::new(None, None, None);
        let _in = ctx.enter();
        b.bench_local(|| {
            let _p = osprofiler::point("db");
        });
    }

    #[divan::bench(sample_count = 200, sample_size = 2000)]
    fn info2(b: Bencher) {
        let ctx = TraceContext::new(None, None, None);
        let _in = ctx.enter();
        let statement = String::from("SELECT id, name FROM instances WHERE project_id = ?");
        b.bench_local(|| {
            let _p = osprofiler::point_with(
                "db",
                Info::new()
                    .with("statement", black_box(statement.as_str()))
                    .with("rows", 1),
            );
        });
    }

    /// The same two fields through `point_with_fields`: copied raw, JSON made
    /// on the exporter thread.
    #[divan::bench(sample_count = 200, sample_size = 2000)]
    fn fields2(b: Bencher) {
        let ctx = TraceContext::new(None, None, None);
        let _in = ctx.enter();
        let statement = String::from("SELECT id, name FROM instances WHERE project_id = ?");
        b.bench_local(|| {
            let _p = osprofiler::point_with_fields(
                "db",
                &[
                    ("statement", Field::from(black_box(statement.as_str()))),
                    ("rows", 1.into()),
                ],
            );
        });
    }

    #[derive(Debug)]
    #[allow(dead_code)]
    pub(super) struct Flavor {
        name: &'static str,
        vcpus: u32,
    }

    #[osprofiler::trace(name = "db")]
    #[inline(never)]
    fn quota_get(project: &str, flavor: &Flavor, count: u32) -> u32 {
        black_box(project.len() as u32 + flavor.vcpus + count)
    }

    /// A `#[trace]` function with its three arguments shown (`Debug`).
    #[divan::bench]
    fn args_shown(b: Bencher) {
        let ctx = TraceContext::new(None, None, None);
        let _in = ctx.enter();
        let flavor = Flavor {
            name: "m1.small",
            vcpus: 2,
        };
        b.bench_local(|| quota_get(black_box("demo"), &flavor, 3));
    }
}

const NS: &[usize] = &[1, 10, 100, 1000];

fn osprofiler_tree(ctx: &TraceContext, n: usize) {
    let _in = ctx.enter();
    for _ in 0..n {
        let _p = osprofiler::point("db");
    }
}

fn fastrace_tree(n: usize) {
    let root = Span::root("root", SpanContext::random());
    let _g = root.set_local_parent();
    for _ in 0..n {
        let _p = LocalSpan::enter_with_local_parent("db");
    }
}

fn tracing_tree(n: usize) {
    let _root = tracing::info_span!("root").entered();
    for _ in 0..n {
        let _p = tracing::info_span!("db").entered();
    }
}

mod tree {
    use super::*;

    #[divan::bench(args = NS, sample_count = 100, sample_size = 200)]
    fn osprofiler(b: Bencher, n: usize) {
        let ctx = TraceContext::new(None, None, None);
        b.counter(ItemsCount::new(n))
            .bench_local(|| osprofiler_tree(&ctx, n));
    }

    #[divan::bench(args = NS, sample_count = 100, sample_size = 200)]
    fn fastrace(b: Bencher, n: usize) {
        b.counter(ItemsCount::new(n))
            .bench_local(|| fastrace_tree(n));
    }

    #[divan::bench(args = NS, sample_count = 30, sample_size = 20)]
    fn tracing_otel(b: Bencher, n: usize) {
        b.counter(ItemsCount::new(n))
            .bench_local(|| tracing_tree(n));
    }
}

mod new_trace {
    use super::*;

    #[divan::bench(args = [1, 10], sample_count = 100, sample_size = 200)]
    fn osprofiler(b: Bencher, n: usize) {
        b.counter(ItemsCount::new(n)).bench_local(|| {
            let ctx = TraceContext::new(None, None, None);
            osprofiler_tree(&ctx, n);
        });
    }

    #[divan::bench(args = [1, 10], sample_count = 100, sample_size = 200)]
    fn fastrace(b: Bencher, n: usize) {
        b.counter(ItemsCount::new(n))
            .bench_local(|| fastrace_tree(n));
    }

    #[divan::bench(args = [1, 10], sample_count = 30, sample_size = 20)]
    fn tracing_otel(b: Bencher, n: usize) {
        b.counter(ItemsCount::new(n))
            .bench_local(|| tracing_tree(n));
    }
}

mod both_cores {
    use super::*;

    #[divan::bench(threads = [2], sample_count = 100, sample_size = 100)]
    fn osprofiler(b: Bencher) {
        let ctx = TraceContext::new(None, None, None);
        b.counter(ItemsCount::new(100usize))
            .bench(|| osprofiler_tree(&ctx, 100));
    }

    #[divan::bench(threads = [2], sample_count = 100, sample_size = 100)]
    fn fastrace(b: Bencher) {
        b.counter(ItemsCount::new(100usize))
            .bench(|| fastrace_tree(100));
    }
}

mod exporter {
    use super::*;

    // Points per backlog: 2 events each, all of them queued (the bound is raised).
    const BACKLOG: usize = 250_000;

    fn drain(b: Bencher, format: bool) {
        notifier::configure(notifier::Config {
            max_queued_events: 4 * BACKLOG,
            ..notifier::Config::default()
        });
        let ctx = TraceContext::new(None, None, None);
        let before = notifier::stats().exported;
        b.counter(ItemsCount::new(2 * BACKLOG))
            .with_inputs(|| {
                let _ = notifier::flush();
                FORMAT.store(format, Ordering::Relaxed);
                if let Ok(mut shut) = GATE.lock() {
                    *shut = true;
                }
                GATED.store(true, Ordering::Release);
                osprofiler_tree(&ctx, BACKLOG);
            })
            .bench_local_values(|()| {
                if let Ok(mut shut) = GATE.lock() {
                    *shut = false;
                }
                GATE_CV.notify_all();
                let _ = notifier::flush();
            });
        GATED.store(false, Ordering::Release);
        FORMAT.store(false, Ordering::Relaxed);
        notifier::configure(notifier::Config::default());
        let s = notifier::stats();
        eprintln!(
            "exporter/{}: exported {} events, dropped so far {}",
            if format { "json" } else { "discard" },
            s.exported - before,
            s.dropped
        );
    }

    /// Events made per second by the exporter thread into a sink that discards.
    #[divan::bench(sample_count = 8, sample_size = 1)]
    fn discard(b: Bencher) {
        drain(b, false);
    }

    /// The same, the sink writing each event's JSON (osprofiler's text) into a buffer.
    #[divan::bench(sample_count = 8, sample_size = 1)]
    fn json(b: Bencher) {
        drain(b, true);
    }
}
