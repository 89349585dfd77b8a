//! The layer does not change what other layers see: a `fmt` layer writes the
//! same text with and without it (before or after it in the stack, filtered
//! or not), while the layer does record the trace. SQL params reach the
//! layer only: `fmt` sees their params span and how many values it holds.

mod tracing_support;

use std::io::Write;
use std::sync::{Arc, Mutex};

use osprofiler::integrations::tracing::{Hidden, SqlParamsExt, TracingFilter, TracingLayer};
use osprofiler::{Id, TraceContext, sql_params, switches};
use tracing::Subscriber;
use tracing::level_filters::LevelFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;

#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl Buf {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

impl Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Buf {
    type Writer = Buf;
    fn make_writer(&'a self) -> Buf {
        self.clone()
    }
}

/// A value only osprofiler may record.
const PARAM: &str = "param-for-osprofiler-only";

/// Runs `fut`, which must not wait.
fn poll_once<F: Future>(fut: F) -> F::Output {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match std::pin::pin!(fut).poll(&mut cx) {
        std::task::Poll::Ready(out) => out,
        std::task::Poll::Pending => panic!("pending"),
    }
}

/// Spans and events outside and inside a trace: fields recorded late, a
/// renamed point, a carrier, an error event and a sqlx statement event with
/// params.
fn workload() -> Id {
    tracing::info!(n = 1, "before any trace");
    let outside = tracing::info_span!("outside", a = 1);
    outside.in_scope(|| tracing::debug!("in a span outside the trace"));
    let ctx = TraceContext::new(None, None, None);
    ctx.in_scope(|| {
        let s = tracing::info_span!("traced", user = "alice", later = tracing::field::Empty);
        let _in = s.enter();
        tracing::info!("in traced");
        s.record("later", 5);
        {
            let _db = tracing::debug_span!("query", osprofiler.name = "dbapi").entered();
            let statement = async {
                tracing::event!(
                    target: "sqlx::query",
                    tracing::Level::DEBUG,
                    summary = "SELECT 1",
                    db.statement = "",
                    rows_affected = 0u64,
                    rows_returned = 1u64,
                    elapsed_secs = 0.001,
                );
            };
            poll_once(statement.with_sql_params(sql_params![Hidden("pw"), PARAM]));
            tracing::error!(error = "boom", "failed");
        }
        let carrier = tracing::info_span!("carrier", osprofiler.point = false);
        carrier.in_scope(|| tracing::warn!("carried"));
        outside.in_scope(|| tracing::trace!("outside span entered inside"));
    });
    ctx.base_id()
}

fn fmt_layer<S>(buf: &Buf) -> impl tracing_subscriber::Layer<S>
where
    S: Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    tracing_subscriber::fmt::layer()
        .with_writer(buf.clone())
        .without_time()
        .with_target(true)
}

fn run(sub: impl Subscriber + Send + Sync + 'static) -> Id {
    tracing::subscriber::with_default(sub, workload)
}

#[test]
fn fmt_output_is_the_same_with_and_without_the_layer() {
    tracing_support::sink();
    switches::set_sql_tracing(true);

    let plain = Buf::default();
    run(tracing_subscriber::registry().with(fmt_layer(&plain)));
    let expected = plain.text();
    assert!(expected.contains("in traced"), "{expected}");
    assert!(
        expected.contains("traced{user=\"alice\" later=5}"),
        "{expected}"
    );
    assert!(expected.contains("SELECT 1"), "{expected}");
    assert!(
        expected.contains("sql_params{osprofiler.point=false osprofiler.params=2}"),
        "{expected}"
    );
    assert!(!expected.contains(PARAM), "{expected}");

    let after = Buf::default();
    let base_after = run(tracing_subscriber::registry()
        .with(fmt_layer(&after))
        .with(TracingLayer::new()));
    assert_eq!(after.text(), expected, "layer after fmt");

    let before = Buf::default();
    let base_before = run(tracing_subscriber::registry()
        .with(TracingLayer::new())
        .with(fmt_layer(&before)));
    assert_eq!(before.text(), expected, "layer before fmt");

    // Per-layer filters on both: fmt at INFO, the layer with its own.
    let info_only = Buf::default();
    run(tracing_subscriber::registry().with(fmt_layer(&info_only).with_filter(LevelFilter::INFO)));
    let expected_info = info_only.text();
    assert!(!expected_info.contains("SELECT 1"), "{expected_info}");
    let filtered = Buf::default();
    let base_filtered = run(tracing_subscriber::registry()
        .with(TracingLayer::new().with_filter(TracingFilter))
        .with(fmt_layer(&filtered).with_filter(LevelFilter::INFO)));
    assert_eq!(filtered.text(), expected_info, "both filtered per layer");

    // Meanwhile the layer recorded each trace, the statement included.
    for base in [base_after, base_before, base_filtered] {
        let points = tracing_support::points_of(base);
        assert_eq!(points.len(), 3, "{points:#?}");
        let traced = tracing_support::one(&points, "traced");
        let dbapi = tracing_support::one(&points, "dbapi");
        assert_eq!(dbapi.parent, traced.id);
        assert_eq!(dbapi.stop_info("message"), "boom");
        let statement = tracing_support::one(&points, "db");
        assert_eq!(statement.parent, dbapi.id);
        assert_eq!(
            statement.start.info["db"]["params"],
            serde_json::json!(["***", PARAM])
        );
    }
    switches::set_sql_tracing(false);
}
