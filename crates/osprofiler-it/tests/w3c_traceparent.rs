//! `[profiler] w3c_traceparent = true`: outgoing HTTP (reqwest middleware) and gRPC
//! (tonic interceptor) calls inside a trace also carry `traceparent:
//! 00-<base id hex>-<point id low 64 hex>-01`, so a service instrumented with
//! OpenTelemetry continues the same Jaeger trace. An incoming `traceparent` alone never
//! starts an osprofiler trace.
//!
//! One test, in phases: the switches and the notifier are process-wide.

mod http_support;

use axum::Router;
use axum::http::HeaderMap;
use axum::routing::get;
use http_support::{KEY, point, runtime, serve, wait_events};
use osprofiler::config::ProfilerConf;
use osprofiler::integrations::reqwest::HttpClientMiddleware;
use osprofiler::integrations::tower::HttpServerLayer;
use osprofiler::notifier::{self, MemorySink};
use osprofiler::{HmacKey, HmacKeys, TraceContext, TraceParent, switches};
use osprofiler_testkit::need;
use reqwest_middleware::ClientBuilder;

/// A downstream service without osprofiler: answers with the headers it was sent.
fn echo_app() -> Router {
    Router::new().route(
        "/headers",
        get(|h: HeaderMap| async move {
            let get = |n: &str| {
                h.get(n)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-")
                    .to_owned()
            };
            format!(
                "{}|{}|{}",
                get("traceparent"),
                get("x-trace-info"),
                get("x-trace-hmac")
            )
        }),
    )
}

#[test]
fn traceparent_goes_out_only_when_asked_and_never_starts_a_trace() {
    let sink = MemorySink::new();
    let _notifier = notifier::set_sink(sink.clone());
    let conf = ProfilerConf::from_ini_str(
        "[profiler]\nenabled = true\nhmac_keys = SECRET_KEY\ntrace_requests = true\nw3c_traceparent = true\n",
    )
    .unwrap();
    assert!(conf.w3c_traceparent);
    conf.apply();
    assert!(switches::w3c_traceparent());

    let rt = runtime();
    let Some(addr) = need("axum server on loopback", serve(&rt, echo_app())) else {
        return;
    };
    let client = ClientBuilder::new(reqwest::Client::builder().no_proxy().build().unwrap())
        .with(HttpClientMiddleware::new())
        .build();
    let url = format!("http://{addr}/headers");

    // 1. On: the call's `http` point is the parent span of the downstream service.
    let ctx = TraceContext::new(HmacKey::new(KEY), None, None);
    let body = rt.block_on(
        ctx.clone()
            .instrument(async { client.get(&url).send().await.unwrap().text().await.unwrap() }),
    );
    let parts: Vec<&str> = body.split('|').collect();
    let tp = TraceParent::decode(parts[0]).expect("a valid traceparent");
    let events = wait_events(&sink, ctx.base_id(), 2);
    let (http_start, _) = point(&events, "http");
    assert_eq!(tp.trace_id, ctx.base_id().0, "trace id = the base id");
    assert_eq!(
        tp.parent_id,
        http_start.trace_id.low64(),
        "parent = the http point"
    );
    assert!(tp.sampled);
    assert_eq!(
        parts[0],
        format!(
            "00-{}-{:016x}-01",
            ctx.base_id().simple(),
            http_start.trace_id.low64()
        )
    );
    assert_ne!(parts[1], "-", "the signed pair is still sent");
    assert_eq!(parts[2].len(), 40);

    // 2. gRPC: the interceptor's metadata carries it too.
    let ctx2 = TraceContext::new(HmacKey::new(KEY), None, None);
    let mut md = tonic::metadata::MetadataMap::new();
    assert!(ctx2.in_scope(|| osprofiler::integrations::tonic::inject_metadata(&mut md)));
    assert_eq!(
        md.get("traceparent").unwrap().to_str().unwrap(),
        ctx2.traceparent().encode()
    );

    // 3. Off (the default): nothing but osprofiler's pair.
    switches::set_w3c_traceparent(false);
    let ctx3 = TraceContext::new(HmacKey::new(KEY), None, None);
    let body = rt.block_on(
        ctx3.clone()
            .instrument(async { client.get(&url).send().await.unwrap().text().await.unwrap() }),
    );
    assert!(body.starts_with("-|"), "{body}");
    assert!(!body.starts_with("-|-"), "{body}");
    let mut md = tonic::metadata::MetadataMap::new();
    assert!(ctx3.in_scope(|| osprofiler::integrations::tonic::inject_metadata(&mut md)));
    assert!(md.get("traceparent").is_none());

    // 4. Incoming: a server behind the layer ignores a bare traceparent.
    switches::set_w3c_traceparent(true);
    switches::enable(HmacKeys::parse(KEY));
    let Some(traced) = need(
        "axum server on loopback",
        serve(&rt, echo_app().layer(HttpServerLayer::new())),
    ) else {
        return;
    };
    let plain = reqwest::Client::builder().no_proxy().build().unwrap();
    let tp = format!("00-{:032x}-{:016x}-01", 0x1234u128, 0x99u64);
    let status = rt.block_on(async {
        plain
            .get(format!("http://{traced}/headers"))
            .header("traceparent", &tp)
            .send()
            .await
            .unwrap()
            .status()
    });
    assert_eq!(status, 200);
    notifier::flush().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(50));
    notifier::flush().unwrap();
    let events = sink.events();
    assert!(
        events
            .iter()
            .all(|e| e.name != "wsgi" && e.base_id.0 != 0x1234),
        "a traceparent without a signed pair started a trace: {events:#?}"
    );
}
