//! Instructions per point, for `valgrind --tool=callgrind` (repeatable where times
//! are noisy). `scripts/bench` runs `instructions CASE N` under callgrind with
//! collection on inside `run_case` only (the recording thread's work, hand-over
//! included; not the exporter's), for N and 2N, and divides the difference by N.
//!
//! Run without arguments (as `cargo test` does with benches), it runs every case once.

use std::hint::black_box;

use fastrace::prelude::*;
use osprofiler::notifier::{self, Sink, SinkError};
use osprofiler::{Event, Field, Info, TraceContext};

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

const CASES: &[&str] = &[
    "point",
    "point_info2",
    "point_fields2",
    "tree100",
    "fastrace_tree100",
    "tracing_otel_tree100",
    "new_trace1",
    "fastrace_new_trace1",
    "untraced",
    "plain",
    "clock",
];

#[osprofiler::trace(name = "db")]
#[inline(never)]
fn traced(x: u64) -> u64 {
    black_box(x).wrapping_mul(3)
}

#[inline(never)]
fn plain(x: u64) -> u64 {
    black_box(x).wrapping_mul(3)
}

/// One case, `n` points (or traces, or calls). Callgrind collects in here only.
#[inline(never)]
fn run_case(case: &str, n: usize, ctx: &TraceContext) {
    let statement = String::from("SELECT id, name FROM instances WHERE project_id = ?");
    match case {
        "point" => {
            let _in = ctx.enter();
            for _ in 0..n {
                let _p = osprofiler::point("db");
            }
        }
        "point_info2" => {
            let _in = ctx.enter();
            for _ in 0..n {
                let _p = osprofiler::point_with(
                    "db",
                    Info::new()
                        .with("statement", black_box(statement.as_str()))
                        .with("rows", 1),
                );
            }
        }
        "point_fields2" => {
            let _in = ctx.enter();
            for _ in 0..n {
                let _p = osprofiler::point_with_fields(
                    "db",
                    &[
                        ("statement", Field::from(black_box(statement.as_str()))),
                        ("rows", 1.into()),
                    ],
                );
            }
        }
        "tree100" => {
            for _ in 0..n / 100 {
                let _in = ctx.enter();
                for _ in 0..100 {
                    let _p = osprofiler::point("db");
                }
            }
        }
        "fastrace_tree100" => {
            for _ in 0..n / 100 {
                let root = Span::root("root", SpanContext::random());
                let _g = root.set_local_parent();
                for _ in 0..100 {
                    let _p = LocalSpan::enter_with_local_parent("db");
                }
            }
        }
        "tracing_otel_tree100" => {
            for _ in 0..n / 100 {
                let _root = tracing::info_span!("root").entered();
                for _ in 0..100 {
                    let _p = tracing::info_span!("db").entered();
                }
            }
        }
        "new_trace1" => {
            for _ in 0..n {
                let ctx = TraceContext::new(None, None, None);
                let _in = ctx.enter();
                let _p = osprofiler::point("db");
            }
        }
        "fastrace_new_trace1" => {
            for _ in 0..n {
                let root = Span::root("root", SpanContext::random());
                let _g = root.set_local_parent();
                let _p = LocalSpan::enter_with_local_parent("db");
            }
        }
        "untraced" => {
            for i in 0..n {
                black_box(traced(i as u64));
            }
        }
        "plain" => {
            for i in 0..n {
                black_box(plain(i as u64));
            }
        }
        // Under valgrind fastant may find the TSC unusable and read the OS clock
        // instead: this case says what one read costs here, to subtract.
        "clock" => {
            for _ in 0..n {
                black_box(fastant::Instant::now());
            }
        }
        _ => {}
    }
}

fn main() {
    let _sink = notifier::set_sink(NullSink);
    fastrace::set_reporter(NullReporter, fastrace::collector::Config::default());
    {
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
    let ctx = TraceContext::new(None, None, None);
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (cases, n): (Vec<&str>, usize) = match args.as_slice() {
        [case, n] if CASES.contains(&case.as_str()) => {
            (vec![case.as_str()], n.parse().unwrap_or(1000))
        }
        _ => (CASES.to_vec(), 1000),
    };
    // Warm up outside the collected function: the first trace seeds the thread's
    // generators and allocates its buffers.
    for case in &cases {
        warm(case, &ctx);
        run_case(case, n, &ctx);
    }
    fastrace::flush();
    let _ = notifier::flush();
}

#[inline(never)]
fn warm(case: &str, ctx: &TraceContext) {
    let _in = ctx.enter();
    let _p = osprofiler::point("warm");
    let root = Span::root("warm", SpanContext::random());
    let _g = root.set_local_parent();
    let _t = tracing::info_span!("warm").entered();
    black_box(case);
}
