//! Shared by the HTTP, gRPC and carrier tests: a real axum server on a free
//! loopback port, a raw HTTP/1.1 client (exact bytes in, exact bytes out) and
//! waiting for events.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::StatusCode;
use axum::routing::{get, post};
use osprofiler::notifier::{self, MemorySink};
use osprofiler::{Event, EventKind, Id, trace};

pub const KEY: &str = "SECRET_KEY";

#[trace(name = "db")]
pub async fn quota_get(project: &str) -> u32 {
    tokio::time::sleep(Duration::from_millis(2)).await;
    project.len() as u32
}

async fn servers() -> (StatusCode, [(&'static str, &'static str); 1], String) {
    let n = quota_get("demo").await;
    (
        StatusCode::OK,
        [("x-served-by", "api")],
        format!("{n} servers"),
    )
}

async fn fail() -> (StatusCode, &'static str) {
    (StatusCode::INTERNAL_SERVER_ERROR, "boom")
}

async fn echo(body: String) -> String {
    body
}

/// The names (lowercase) of the `x-trace-*` headers the server received.
async fn trace_headers(headers: axum::http::HeaderMap) -> String {
    let mut names: Vec<&str> = headers
        .keys()
        .map(|k| k.as_str())
        .filter(|k| k.starts_with("x-trace-"))
        .collect();
    names.sort_unstable();
    names.join(",")
}

/// The application, without osprofiler.
pub fn app() -> Router {
    Router::new()
        .route("/v1/servers", get(servers))
        .route("/v1/fail", get(fail))
        .route("/v1/echo", post(echo))
        .route("/v1/trace-headers", get(trace_headers))
}

/// Serves `router` on a free loopback port, on `rt`, until `rt` is dropped.
pub fn serve(rt: &tokio::runtime::Runtime, router: Router) -> Result<SocketAddr, String> {
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("bind 127.0.0.1:0: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok(addr)
    })
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Sends `head` (request line and headers, without the final blank line),
/// then `Connection: close`, and returns the whole raw response.
pub fn raw_request(addr: SocketAddr, head: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = head.to_vec();
    req.extend_from_slice(b"\r\nConnection: close\r\n\r\n");
    s.write_all(&req).expect("send");
    let mut out = Vec::new();
    s.read_to_end(&mut out).expect("read response");
    out
}

/// A raw response less its `date` header: what must not change with the layer.
pub fn without_date(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let head: Vec<&str> = head
        .split("\r\n")
        .filter(|l| !l.to_ascii_lowercase().starts_with("date:"))
        .collect();
    format!("{}\r\n\r\n{body}", head.join("\r\n"))
}

/// Flushes until `base` has at least `n` events (the server side may hand its
/// records over just after the client got its answer); at most 5 s.
pub fn wait_events(sink: &MemorySink, base: Id, n: usize) -> Vec<Event> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        notifier::flush().expect("flush");
        let events = sink.trace(base);
        if events.len() >= n || Instant::now() > deadline {
            return events;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The start and stop event of the one point named `name`.
pub fn point<'a>(events: &'a [Event], name: &str) -> (&'a Event, &'a Event) {
    let find = |kind: EventKind| {
        let found: Vec<&Event> = events
            .iter()
            .filter(|e| e.name == name && e.kind == kind)
            .collect();
        assert_eq!(found.len(), 1, "one {name} {kind:?} in {events:#?}");
        found[0]
    };
    (find(EventKind::Start), find(EventKind::Stop))
}

/// `info` of an event as JSON, without `host`.
pub fn info(e: &Event) -> serde_json::Value {
    let mut m = e.info.as_map().clone();
    m.remove("host");
    serde_json::Value::Object(m)
}
