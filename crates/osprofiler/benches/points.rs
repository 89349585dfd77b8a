//! The cost of trace points, side by side with fastrace (the fastest Rust
//! tracer) in the same run. `cargo bench -p osprofiler --bench points`.
//!
//! - `untraced_*`: a traced function called with no active trace, against the
//!   same function without the attribute.
//! - `points/<lib>/N`: one iteration = enter a trace, record N points (start +
//!   stop, static name, no info), leave it (the buffer is handed to the
//!   collector thread, which runs on the other core and feeds a sink that
//!   discards). Time per point = time per iteration / N.
//! - `point_with_*`: one point with info, or a `#[trace]` function with its
//!   arguments shown, inside a trace.

use divan::{Bencher, black_box, counter::ItemsCount};
use fastrace::prelude::*;
use osprofiler::notifier::{self, Sink, SinkError};
use osprofiler::{Event, Info, TraceContext};

fn main() {
    setup();
    divan::main();
    let s = notifier::stats();
    eprintln!(
        "osprofiler pipeline: exported {} events, dropped {} (queue full), failed {}",
        s.exported, s.dropped, s.failed
    );
    // Only under `cargo bench` (which passes --bench), not when tests run the benches once.
    if std::env::args().any(|a| a == "--bench") {
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

struct NullSink;

impl Sink for NullSink {
    fn write(&mut self, events: &[Event]) -> Result<(), SinkError> {
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

fn setup() {
    std::mem::forget(notifier::set_sink(NullSink));
    fastrace::set_reporter(NullReporter, fastrace::collector::Config::default());
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

#[divan::bench]
fn untraced_plain_call(b: Bencher) {
    b.bench_local(|| plain(black_box(7)));
}

#[divan::bench]
fn untraced_osprofiler_trace_call(b: Bencher) {
    assert!(!osprofiler::is_active());
    b.bench_local(|| traced(black_box(7)));
}

#[divan::bench]
fn untraced_fastrace_trace_call(b: Bencher) {
    b.bench_local(|| fastrace_traced(black_box(7)));
}

const NS: &[usize] = &[10, 100, 1000];

#[divan::bench_group]
mod points {
    use super::*;

    #[divan::bench(args = NS, sample_count = 100, sample_size = 500)]
    fn osprofiler(b: Bencher, n: usize) {
        let ctx = TraceContext::new(None, None, None);
        b.counter(ItemsCount::new(n)).bench_local(|| {
            let _in = ctx.enter();
            for _ in 0..n {
                let _p = osprofiler::point("db");
            }
        });
    }

    #[divan::bench(args = NS, sample_count = 100, sample_size = 500)]
    fn fastrace(b: Bencher, n: usize) {
        b.counter(ItemsCount::new(n)).bench_local(|| {
            let root = Span::root("root", SpanContext::random());
            let _g = root.set_local_parent();
            for _ in 0..n {
                let _p = LocalSpan::enter_with_local_parent("db");
            }
        });
    }
}

#[divan::bench]
fn point_with_info(b: Bencher) {
    let ctx = TraceContext::new(None, None, None);
    let _in = ctx.enter();
    b.bench_local(|| {
        let _p = osprofiler::point_with(
            "db",
            Info::new().with("statement", "SELECT 1").with("rows", 1),
        );
    });
}

#[derive(Debug)]
#[allow(dead_code)]
struct Flavor {
    name: &'static str,
    vcpus: u32,
}

#[osprofiler::trace(name = "db")]
#[inline(never)]
fn quota_get(project: &str, flavor: &Flavor, count: u32) -> u32 {
    black_box(project.len() as u32 + flavor.vcpus + count)
}

#[divan::bench]
fn point_with_args_shown(b: Bencher) {
    let ctx = TraceContext::new(None, None, None);
    let _in = ctx.enter();
    let flavor = Flavor {
        name: "m1.small",
        vcpus: 2,
    };
    b.bench_local(|| quota_get(black_box("demo"), &flavor, 3));
}

#[divan::bench]
fn clock_fastant_now() -> fastant::Instant {
    fastant::Instant::now()
}

#[divan::bench]
fn clock_std_instant_now() -> std::time::Instant {
    std::time::Instant::now()
}
