//! The tower server layer around a trivial service, called in-process (no
//! network), side by side with the bare service:
//!
//! - `bare` vs `layer_no_headers` / `layer_headers_disabled`: the untraced
//!   path (target: at most 50 ns over the bare service);
//! - `bare_with_headers` vs `layer_traced`: a signed request, HMAC check and
//!   `wsgi` point included (issue 10's target: at most 2 µs over);
//! - `peer_tower_http_otel`: the peer, in the same binary and run: tower-http's
//!   `TraceLayer::new_for_http()` (its default span and request/response events)
//!   under `tracing-opentelemetry` and the OpenTelemetry SDK's batch span
//!   processor, whose exporter discards (issue 10's target: ours at most 0.25×
//!   its cost over the bare service). The response is dropped inside the timed
//!   part, as the peer's span ends with the body.
//!
//! Run with `cargo bench -p osprofiler-it --bench http`.

use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use divan::Bencher;
use http::{Request, Response};
use osprofiler::integrations::tower::HttpServerLayer;
use osprofiler::notifier::{self, Sink, SinkError};
use osprofiler::{Event, HmacKey, HmacKeys, TraceContext, switches};
use tower_layer::Layer;
use tower_service::Service;

fn main() {
    // Events go through the whole pipeline to a sink that keeps nothing.
    let _notifier = notifier::set_sink(NullSink);
    divan::main();
}

struct NullSink;

impl Sink for NullSink {
    fn write(&mut self, events: &[Event]) -> Result<(), SinkError> {
        divan::black_box(events.len());
        Ok(())
    }
}

type Ok200 = Ready<Result<Response<String>, Infallible>>;

fn bare()
-> impl Service<Request<()>, Response = Response<String>, Error = Infallible, Future = Ok200> + Clone
{
    tower::service_fn(|_req: Request<()>| ready(Ok(Response::new(String::new()))))
}

fn plain_request() -> Request<()> {
    Request::get("/v2.1/servers?limit=1").body(()).unwrap()
}

fn signed_request() -> Request<()> {
    let ctx = TraceContext::new(HmacKey::new("SECRET_KEY"), None, None);
    let h = ctx.headers().unwrap();
    Request::get("/v2.1/servers?limit=1")
        .header("host", "127.0.0.1:8774")
        .header("x-trace-info", h.info)
        .header("x-trace-hmac", h.hmac)
        .body(())
        .unwrap()
}

/// Calls and polls once: the trivial service is always ready.
#[inline(always)]
fn call_once<S, Q, B>(svc: &mut S, req: Request<Q>) -> Response<B>
where
    S: Service<Request<Q>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
{
    let mut fut = pin!(svc.call(req));
    match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(r) => r.unwrap(),
        Poll::Pending => unreachable!("the trivial service is always ready"),
    }
}

fn enabled() {
    switches::enable(HmacKeys::parse("SECRET_KEY"));
}

#[divan::bench]
fn bare_no_headers(b: Bencher) {
    let mut svc = bare();
    b.with_inputs(plain_request)
        .bench_local_values(|req| call_once(&mut svc, req));
}

#[divan::bench]
fn layer_no_headers(b: Bencher) {
    enabled();
    let mut svc = HttpServerLayer::new().layer(bare());
    b.with_inputs(plain_request)
        .bench_local_values(|req| call_once(&mut svc, req));
}

#[divan::bench]
fn bare_with_headers(b: Bencher) {
    let mut svc = bare();
    b.with_inputs(signed_request)
        .bench_local_values(|req| call_once(&mut svc, req));
}

#[divan::bench]
fn layer_headers_disabled(b: Bencher) {
    switches::disable();
    let mut svc = HttpServerLayer::new().layer(bare());
    b.with_inputs(signed_request)
        .bench_local_values(|req| call_once(&mut svc, req));
    enabled();
}

#[divan::bench]
fn layer_headers_wrong_key(b: Bencher) {
    switches::enable(HmacKeys::parse("OTHER_KEY"));
    let mut svc = HttpServerLayer::new().layer(bare());
    b.with_inputs(signed_request)
        .bench_local_values(|req| call_once(&mut svc, req));
    enabled();
}

#[divan::bench]
fn layer_traced(b: Bencher) {
    enabled();
    let mut svc = HttpServerLayer::new().layer(bare());
    b.with_inputs(signed_request)
        .bench_local_values(|req| call_once(&mut svc, req));
}

#[divan::bench]
fn layer_traced_until_body_end(b: Bencher) {
    enabled();
    let mut svc = HttpServerLayer::new().until_body_end().layer(bare());
    // The point stops when the body goes: drop it inside the timed part.
    b.with_inputs(signed_request)
        .bench_local_values(|req| drop(call_once(&mut svc, req)));
}

/// The signature check alone (what a traced request pays before its point).
#[divan::bench]
fn extract_headers(b: Bencher) {
    enabled();
    b.with_inputs(signed_request)
        .bench_local_refs(|req| osprofiler::integrations::http::extract(req.headers()));
}

/// An OpenTelemetry exporter that keeps nothing (the batch processor's thread still
/// runs for real).
#[derive(Debug)]
struct DiscardSpans;

impl opentelemetry_sdk::trace::SpanExporter for DiscardSpans {
    fn export(
        &self,
        batch: Vec<opentelemetry_sdk::trace::SpanData>,
    ) -> impl Future<Output = opentelemetry_sdk::error::OTelSdkResult> + Send {
        divan::black_box(batch.len());
        ready(Ok(()))
    }
}

/// The peer: `tower-http`'s `TraceLayer` into `tracing-opentelemetry` and the SDK's
/// batch span processor, a request of the same shape (headers included).
#[divan::bench]
fn peer_tower_http_otel(b: Bencher) {
    use opentelemetry::trace::TracerProvider as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_span_processor(
            opentelemetry_sdk::trace::BatchSpanProcessor::builder(DiscardSpans).build(),
        )
        .build();
    let otel = tracing_opentelemetry::layer().with_tracer(provider.tracer("bench"));
    let subscriber = tracing_subscriber::registry().with(otel);
    // This thread only, for this bench only.
    let _default = tracing::subscriber::set_default(subscriber);
    // TraceLayer wants a request body that is a `Body`: an empty one (a unit type, as
    // `()` is for the others).
    let bare = tower::service_fn(|_req: Request<http_body_util::Empty<bytes::Bytes>>| {
        ready(Ok::<_, Infallible>(Response::new(String::new())))
    });
    let mut svc = tower_http::trace::TraceLayer::new_for_http().layer(bare);
    b.with_inputs(|| signed_request().map(|()| http_body_util::Empty::new()))
        .bench_local_values(|req| drop(call_once(&mut svc, req)));
    drop(_default);
    let _ = provider.shutdown();
}
