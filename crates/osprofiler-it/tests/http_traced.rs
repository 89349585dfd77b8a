//! A real axum server behind `HttpServerLayer` and the reqwest client with
//! `HttpClientMiddleware`, on loopback: a signed request is one trace, client
//! `http` point → server `wsgi` point → the handler's `#[trace]` function.
//!
//! One test, in phases: the notifier and the switches are process-wide.

mod http_support;

use http_support::*;
use osprofiler::integrations::reqwest::HttpClientMiddleware;
use osprofiler::integrations::tower::HttpServerLayer;
use osprofiler::notifier::{self, MemorySink};
use osprofiler::{EventKind, HmacKey, HmacKeys, Identity, TraceContext, in_point, switches};
use osprofiler_testkit::{free_port, need};
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware};
use serde_json::json;

fn client() -> Result<ClientWithMiddleware, String> {
    let plain = reqwest::Client::builder()
        .no_proxy()
        .build()
        .map_err(|e| e.to_string())?;
    Ok(ClientBuilder::new(plain)
        .with(HttpClientMiddleware::new())
        .build())
}

fn caller() -> TraceContext {
    TraceContext::new(HmacKey::new(KEY), None, None)
        .with_identity(&Identity::new("demo", "client", "c1"))
}

#[test]
fn signed_requests_are_traced_end_to_end() {
    let Some(client) = need("reqwest client", client()) else {
        return;
    };
    let sink = MemorySink::new();
    let _notifier = notifier::set_sink(sink.clone());
    switches::enable(HmacKeys::parse(KEY));
    switches::set_trace_requests(true);

    let rt = runtime();
    let api = Identity::new("demo", "api", "s1");
    let Some(addr) = need(
        "axum server on loopback",
        serve(&rt, app().layer(HttpServerLayer::new().identity(api))),
    ) else {
        return;
    };
    let Some(body_end) = need(
        "axum server on loopback",
        serve(
            &rt,
            app().layer(HttpServerLayer::new().until_body_end().name("api")),
        ),
    ) else {
        return;
    };

    // 1. client http → server wsgi → db, with osprofiler's info.
    let ctx = caller();
    let url = format!("http://{addr}/v1/servers?limit=2");
    let resp = rt
        .block_on(ctx.clone().instrument(client.get(&url).send()))
        .expect("GET /v1/servers");
    assert_eq!(resp.status(), 200);
    assert_eq!(rt.block_on(resp.text()).unwrap(), "4 servers");
    let events = wait_events(&sink, ctx.base_id(), 6);
    assert_eq!(events.len(), 6, "{events:#?}");
    let (http_start, http_stop) = point(&events, "http");
    let (wsgi_start, wsgi_stop) = point(&events, "wsgi");
    let (db_start, _) = point(&events, "db");
    let base = ctx.base_id();
    assert_eq!(http_start.parent_id, base, "a first-level point");
    assert_eq!(
        wsgi_start.parent_id, http_start.trace_id,
        "server under client"
    );
    assert_eq!(
        db_start.parent_id, wsgi_start.trace_id,
        "handler under wsgi"
    );
    assert_eq!(wsgi_stop.trace_id, wsgi_start.trace_id);
    assert_eq!(http_start.service.as_deref(), Some("client"));
    assert_eq!(wsgi_start.service.as_deref(), Some("api"));
    assert_eq!(db_start.service.as_deref(), Some("api"));
    assert_eq!(wsgi_start.info.host(), Some("s1"));
    assert_eq!(
        info(http_start),
        json!({"requests": {"method": "GET", "query": "limit=2", "path": "/v1/servers",
            "hostname": "127.0.0.1", "port": addr.port(), "scheme": "http"}})
    );
    assert_eq!(info(http_stop), json!({"requests": {"status_code": 200}}));
    assert_eq!(
        info(wsgi_start),
        json!({"request": {"path": "/v1/servers", "query": "limit=2", "method": "GET",
            "scheme": "http", "port": addr.port()}})
    );
    assert_eq!(info(wsgi_stop), json!({"response": {"status": 200}}));
    // Ordered in time: the server's point lies within the client's.
    assert!(http_start.timestamp <= wsgi_start.timestamp);
    assert!(wsgi_stop.timestamp <= http_stop.timestamp);

    // 2. A 5xx answer is an error of the server's point, not of the client's.
    let ctx = caller();
    let url = format!("http://{addr}/v1/fail");
    let resp = rt
        .block_on(ctx.clone().instrument(client.get(&url).send()))
        .unwrap();
    assert_eq!(resp.status(), 500);
    let events = wait_events(&sink, ctx.base_id(), 4);
    let (_, wsgi_stop) = point(&events, "wsgi");
    assert_eq!(
        info(wsgi_stop),
        json!({"response": {"status": 500}, "etype": "HTTPServerError",
               "message": "500 Internal Server Error"})
    );
    assert_eq!(
        info(point(&events, "http").1),
        json!({"requests": {"status_code": 500}})
    );

    // 3. trace_requests off: no client point, the headers are the caller's
    //    current point's, so the server's point hangs from it.
    switches::set_trace_requests(false);
    let ctx = caller();
    let url = format!("http://{addr}/v1/echo");
    let resp = rt
        .block_on(ctx.clone().instrument(in_point(
            "compute_call",
            client.post(&url).body("ping").send(),
        )))
        .unwrap();
    assert_eq!(rt.block_on(resp.text()).unwrap(), "ping");
    let events = wait_events(&sink, ctx.base_id(), 4);
    assert!(events.iter().all(|e| e.name != "http"), "{events:#?}");
    let (call, _) = point(&events, "compute_call");
    let (wsgi_start, _) = point(&events, "wsgi");
    assert_eq!(wsgi_start.parent_id, call.trace_id);
    switches::set_trace_requests(true);

    // 4. A failed request stops its point with the error.
    let ctx = caller();
    let closed = format!("http://127.0.0.1:{}/v1/servers", free_port());
    let err = rt
        .block_on(ctx.clone().instrument(client.get(&closed).send()))
        .expect_err("nothing listens there");
    let events = wait_events(&sink, ctx.base_id(), 2);
    let (_, http_stop) = point(&events, "http");
    let stop = info(http_stop);
    assert_eq!(stop["etype"], "reqwest::Error");
    assert_eq!(stop["message"], err.to_string());

    // 5. No active trace: the request goes out untouched, nothing recorded.
    let before = sink.events().len();
    let url = format!("http://{addr}/v1/trace-headers");
    let seen = rt
        .block_on(async {
            client
                .get(&url)
                .send()
                .await?
                .text()
                .await
                .map_err(Into::into)
        })
        .map_err(|e: reqwest_middleware::Error| e.to_string())
        .unwrap();
    assert_eq!(seen, "");
    notifier::flush().unwrap();
    assert_eq!(sink.events().len(), before);
    // ...and with a trace, exactly the two headers arrive.
    let ctx = caller();
    let seen = rt.block_on(
        ctx.clone()
            .instrument(async { client.get(&url).send().await.unwrap().text().await.unwrap() }),
    );
    assert_eq!(seen, "x-trace-hmac,x-trace-info");

    // 6. Stopping at the body's end: the point covers the body too, named as asked.
    let ctx = caller();
    let url = format!("http://{body_end}/v1/servers");
    let text = rt.block_on(
        ctx.clone()
            .instrument(async { client.get(&url).send().await.unwrap().text().await.unwrap() }),
    );
    assert_eq!(text, "4 servers");
    let events = wait_events(&sink, ctx.base_id(), 6);
    let (api_start, api_stop) = point(&events, "api");
    assert_eq!(api_start.parent_id, point(&events, "http").0.trace_id);
    assert_eq!(info(api_stop), json!({"response": {"status": 200}}));
    assert_eq!(point(&events, "db").0.parent_id, api_start.trace_id);

    // Every point of every phase was stopped.
    notifier::flush().unwrap();
    let all = sink.events();
    let starts = all.iter().filter(|e| e.kind == EventKind::Start).count();
    let stops = all.iter().filter(|e| e.kind == EventKind::Stop).count();
    assert_eq!(starts, stops);
    drop(rt);
}
