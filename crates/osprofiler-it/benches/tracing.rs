//! The cost of the `tracing` bridge, each case against the same subscriber
//! without the layer in the same run. `cargo bench -p osprofiler-it --bench tracing`.
//!
//! Subscribers (see `Stack`): the registry alone, with a layer that does
//! nothing, with `TracingLayer`, with the layer behind its
//! `TracingFilter`; and the same three on a service-like stack with `fmt`
//! at `INFO`. Each is the thread's default while its case runs.
//!
//! - `no_trace/*`: no osprofiler trace is active (a service's normal state):
//!   a span created, entered, exited and closed (`span_lifecycle`); an
//!   existing span entered and exited (`enter_exit`); a `DEBUG` event.
//! - `in_trace/*`: inside an active trace, where each span becomes a point;
//!   `osprofiler_point` is the native point for comparison; `sql_event` is a
//!   sqlx statement event turned into a `db` point (SQL tracing on).
//! - `sql_params/*`: `.with_sql_params(sql_params![..])` on a future.
//!   `adapter` polls a trivial future to completion: bare, then through the
//!   adapter with SQL tracing off inside a trace, and on outside any trace
//!   (neither converts the values nor makes a span); `statement` is the
//!   `in_trace/sql_event` statement run through the adapter with SQL tracing
//!   on (params span, and the `db` point with its params).

use divan::{Bencher, black_box};
use osprofiler::integrations::tracing::{SqlParamsExt as _, TracingFilter, TracingLayer};
use osprofiler::notifier::{self, Sink, SinkError};
use osprofiler::{Event, TraceContext, sql_params, switches};
use tracing::Subscriber;
use tracing::level_filters::LevelFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt as _;

fn main() {
    std::mem::forget(notifier::set_sink(NullSink));
    divan::main();
}

struct NullSink;

impl Sink for NullSink {
    fn write(&mut self, events: &[Event]) -> Result<(), SinkError> {
        black_box(events);
        Ok(())
    }
}

#[derive(Clone, Copy, Debug)]
enum Stack {
    /// The registry alone.
    Registry,
    /// The registry and a layer that does nothing: what any layer costs.
    NoopLayer,
    Layer,
    Filtered,
    /// A service's stack: the registry and `fmt` at `INFO` (per-layer
    /// filter) writing to `io::sink`.
    Fmt,
    FmtLayer,
    FmtFiltered,
}

const STACKS: &[Stack] = &[
    Stack::Registry,
    Stack::NoopLayer,
    Stack::Layer,
    Stack::Filtered,
    Stack::Fmt,
    Stack::FmtLayer,
    Stack::FmtFiltered,
];

struct Noop;

impl<S: Subscriber> tracing_subscriber::Layer<S> for Noop {}

/// Runs `f` with `stack` as this thread's subscriber.
fn with_stack(stack: Stack, f: impl FnOnce()) {
    fn run(sub: impl Subscriber + Send + Sync + 'static, f: impl FnOnce()) {
        tracing::subscriber::with_default(sub, f)
    }
    let registry = tracing_subscriber::registry();
    let fmt = || {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::sink)
            .with_filter(LevelFilter::INFO)
    };
    let ours = TracingLayer::new;
    match stack {
        Stack::Registry => run(registry, f),
        Stack::NoopLayer => run(registry.with(Noop), f),
        Stack::Layer => run(registry.with(ours()), f),
        Stack::Filtered => run(registry.with(ours().with_filter(TracingFilter)), f),
        Stack::Fmt => run(registry.with(fmt()), f),
        Stack::FmtLayer => run(registry.with(fmt()).with(ours()), f),
        Stack::FmtFiltered => run(
            registry.with(fmt()).with(ours().with_filter(TracingFilter)),
            f,
        ),
    }
}

#[divan::bench_group]
mod no_trace {
    use super::*;

    #[divan::bench(args = STACKS)]
    fn span_lifecycle(b: Bencher, stack: Stack) {
        assert!(!osprofiler::is_active());
        with_stack(stack, || {
            b.bench_local(|| {
                tracing::info_span!("quota_get", project = "demo").in_scope(|| black_box(1))
            })
        });
    }

    #[divan::bench(args = STACKS)]
    fn enter_exit(b: Bencher, stack: Stack) {
        with_stack(stack, || {
            let span = tracing::info_span!("quota_get", project = "demo");
            b.bench_local(|| span.in_scope(|| black_box(1)));
        });
    }

    #[divan::bench(args = STACKS)]
    fn debug_event(b: Bencher, stack: Stack) {
        with_stack(stack, || {
            b.bench_local(|| tracing::debug!(rows = black_box(3), "fetched"));
        });
    }
}

#[divan::bench_group]
mod in_trace {
    use super::*;

    #[divan::bench(args = [Stack::Layer, Stack::Filtered])]
    fn span_lifecycle(b: Bencher, stack: Stack) {
        let ctx = TraceContext::new(None, None, None);
        with_stack(stack, || {
            let _in = ctx.enter();
            b.bench_local(|| {
                tracing::info_span!("quota_get", project = "demo").in_scope(|| black_box(1))
            });
        });
    }

    #[divan::bench]
    fn osprofiler_point(b: Bencher) {
        let ctx = TraceContext::new(None, None, None);
        let _in = ctx.enter();
        b.bench_local(|| {
            let _p = osprofiler::point_with("quota_get", [("project", "demo")]);
            black_box(1)
        });
    }

    #[divan::bench(args = [false, true])]
    fn sql_event(b: Bencher, sql_on: bool) {
        let ctx = TraceContext::new(None, None, None);
        switches::set_sql_tracing(sql_on);
        with_stack(Stack::Filtered, || {
            let _in = ctx.enter();
            b.bench_local(statement_event);
        });
        switches::set_sql_tracing(false);
    }
}

/// The event sqlx emits at the end of a statement.
fn statement_event() {
    tracing::event!(
        target: "sqlx::query",
        tracing::Level::DEBUG,
        summary = "SELECT hard_limit FROM quotas …",
        db.statement = "\n\nSELECT hard_limit FROM quotas WHERE project = ?\n",
        rows_affected = 0u64,
        rows_returned = 1u64,
        elapsed_secs = 0.000_2,
    )
}

/// Polls `fut`, which must not wait, to completion.
fn poll_once<F: Future>(fut: F) -> F::Output {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match std::pin::pin!(fut).poll(&mut cx) {
        std::task::Poll::Ready(out) => out,
        std::task::Poll::Pending => unreachable!("a future that does not wait"),
    }
}

#[divan::bench_group]
mod sql_params {
    use super::*;

    #[derive(Clone, Copy, Debug)]
    enum Adapter {
        /// The future alone.
        Bare,
        /// `.with_sql_params(..)`, SQL tracing off, inside a trace.
        SqlOff,
        /// `.with_sql_params(..)`, SQL tracing on, no trace.
        NoTrace,
    }

    #[divan::bench(args = [Adapter::Bare, Adapter::SqlOff, Adapter::NoTrace])]
    fn adapter(b: Bencher, case: Adapter) {
        let ctx = TraceContext::new(None, None, None);
        switches::set_sql_tracing(matches!(case, Adapter::NoTrace));
        let (project, limit) = (String::from("demo"), 10_i64);
        with_stack(Stack::FmtFiltered, || {
            let _in = (!matches!(case, Adapter::NoTrace)).then(|| ctx.enter());
            b.bench_local(|| match case {
                Adapter::Bare => poll_once(async { black_box(1) }),
                _ => poll_once(async { black_box(1) }.with_sql_params(sql_params![project, limit])),
            });
        });
        switches::set_sql_tracing(false);
    }

    /// A statement with two params, SQL tracing on inside a trace (compare
    /// `in_trace/sql_event(true)`, the same statement without params).
    #[divan::bench]
    fn statement(b: Bencher) {
        let ctx = TraceContext::new(None, None, None);
        switches::set_sql_tracing(true);
        let (project, limit) = (String::from("demo"), 10_i64);
        with_stack(Stack::Filtered, || {
            let _in = ctx.enter();
            b.bench_local(|| {
                poll_once(async { statement_event() }.with_sql_params(sql_params![project, limit]))
            });
        });
        switches::set_sql_tracing(false);
    }
}
