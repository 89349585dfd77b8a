//! `osprofiler ui`: a trace browser served from the binary, on the store the CLI reads.
//!
//! Pages: `/` the search page (plain JS and CSS embedded here, no CDN, a strict
//! Content-Security-Policy, every trace string set as text; it plots the listed traces and
//! asks for the list again every 5 s, `?refresh=SECONDS`, 0 for never); `/trace/{id}` the
//! report of `trace show --html` (its own CSP), with links to the list and the downloads
//! under its title; `/compare/{a}/{b}` two traces side by side (`/compare?a=…&b=…` leads
//! there).
//!
//! JSON endpoints, for the page and for scripts:
//!
//! - `GET /api/traces?service=&name=&text=&min_duration=&max_duration=&since=&until=&errors=1&offset=&limit=`:
//!   `{"traces": [summary…], "more": bool}`, newest first; each summary as `trace list
//!   --json` gives it. Durations as `trace list` takes them (`250ms`, `1.5s`), times as a
//!   UTC time or a time ago (`15m`); `limit` defaults to 50, at most 1000.
//! - `GET /api/traces/{id}/json`: osprofiler's report JSON; `/html`: the HTML report;
//!   `/dot`: the DOT graph; 404 when there is no such trace.
//! - `GET /api/compare/{a}/{b}`: trace `a`'s tree matched against `b`'s (see
//!   [`compare`]): `{"a": {base_id, started, duration_us, points}, "b": {…}, "matched",
//!   "only_a", "only_b", "rows": [{depth, service, category, name, a, b, diff_us, parts}],
//!   "biggest": [row index…]}`; `a`/`b` of a row are `{trace_id, started_us, duration_us,
//!   error}` or null for a point in the other trace only; `diff_us` is b's duration less
//!   a's; `biggest` lists matched rows and the points where the trees part, largest
//!   difference first.
//!
//! Errors are `{"error": "…"}` with 400 (bad parameter), 404 or 500.
//!
//! Access: on a loopback address anyone on the machine may read; elsewhere the command
//! refuses to start without `--token` or `--no-auth`. With a token every request must carry
//! it, as `Authorization: Bearer T`, or the cookie `osprofiler_ui` that opening any page
//! with `?token=T` sets (HttpOnly, SameSite=Strict); otherwise 401 and nothing else. The
//! comparison hashes both sides and compares the digests in constant time.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, RawQuery, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use clap::Args;
use http::{HeaderValue, StatusCode, header};
use osprofiler_report::{render_dot, render_html};
use osprofiler_store::{TraceQuery, TraceStore};
use sha1::{Digest, Sha1};

use crate::{Failure, StoreArgs, open_store, parse_duration_us, parse_time_us};

mod compare;

const INDEX_HTML: &str = include_str!("index.html");
// Each page's script is served with the shared helpers (dom.js) in front of it: one
// request, and the CSP's `script-src 'self'` stays as it is.
const UI_JS: &str = concat!(include_str!("dom.js"), include_str!("ui.js"));
const UI_CSS: &str = include_str!("ui.css");
const COMPARE_HTML: &str = include_str!("compare.html");
const COMPARE_JS: &str = concat!(include_str!("dom.js"), include_str!("compare.js"));

/// The search page's policy: its own script and style only, fetches to itself only.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
     img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

const COOKIE: &str = "osprofiler_ui";

#[derive(Args)]
pub(crate) struct UiArgs {
    /// Address to serve on; any other than loopback needs --token or --no-auth
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9876")]
    listen: SocketAddr,
    /// Require this token on every request (Authorization: Bearer, or open the page once
    /// with ?token=…) [default: $OSPROFILER_UI_TOKEN]
    #[arg(long, value_name = "T", conflicts_with = "no_auth")]
    token: Option<String>,
    /// Serve a non-loopback address without a token: anyone who reaches it reads every
    /// trace (SQL statements and parameters included)
    #[arg(long)]
    no_auth: bool,
    #[command(flatten)]
    store: StoreArgs,
}

struct Ui {
    store: Mutex<Option<Box<dyn TraceStore>>>,
    /// SHA-1 of the token, when one is required.
    token: Option<[u8; 20]>,
}

fn digest(s: &str) -> [u8; 20] {
    Sha1::digest(s.as_bytes()).into()
}

/// Equal digests, in time that does not depend on where they differ.
fn same(a: &[u8; 20], b: &[u8; 20]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether `listen` needs a token (or an explicit `--no-auth`).
pub(crate) fn needs_auth(listen: &SocketAddr) -> bool {
    !listen.ip().is_loopback()
}

pub(crate) fn run(a: UiArgs) -> Result<(), Failure> {
    let token = a
        .token
        .clone()
        .or_else(|| std::env::var("OSPROFILER_UI_TOKEN").ok())
        .filter(|t| !t.is_empty());
    if token.is_none() && !a.no_auth && needs_auth(&a.listen) {
        return Err(Failure(format!(
            "{} is not a loopback address: give --token (or --no-auth to let anyone who reaches it read every trace)",
            a.listen
        )));
    }
    let store = open_store(&a.store)?;
    let ui = Arc::new(Ui {
        store: Mutex::new(store),
        token: token.as_deref().map(digest),
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(a.listen)
            .await
            .map_err(|e| Failure(format!("cannot listen on {}: {e}", a.listen)))?;
        let addr = listener.local_addr()?;
        // The token is never printed: the user has it.
        let hint = if ui.token.is_some() {
            " (open it with ?token=YOUR_TOKEN)"
        } else {
            ""
        };
        println!("osprofiler ui: http://{addr}/{hint}; Ctrl-C to stop");
        axum::serve(listener, router(ui))
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await?;
        Ok::<(), Failure>(())
    })
}

fn router(ui: Arc<Ui>) -> Router {
    Router::new()
        .route("/", get(index))
        .route(
            "/ui.js",
            get(|| async { asset(UI_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/ui.css",
            get(|| async { asset(UI_CSS, "text/css; charset=utf-8") }),
        )
        .route(
            "/compare.js",
            get(|| async { asset(COMPARE_JS, "text/javascript; charset=utf-8") }),
        )
        .route("/api/traces", get(list))
        .route("/api/traces/{id}/{format}", get(download))
        .route("/api/compare/{a}/{b}", get(compare_api))
        .route("/trace/{id}", get(page))
        .route("/compare", get(compare_form))
        .route(
            "/compare/{a}/{b}",
            get(|| async { asset(COMPARE_HTML, "text/html; charset=utf-8") }),
        )
        .layer(middleware::from_fn_with_state(ui.clone(), auth))
        .with_state(ui)
}

fn response(status: StatusCode, content_type: &str, body: impl Into<Body>) -> Response {
    let mut r = Response::new(body.into());
    *r.status_mut() = status;
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(content_type) {
        h.insert(header::CONTENT_TYPE, v);
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r
}

fn json_error(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({ "error": message }).to_string();
    response(status, "application/json", body)
}

fn asset(text: &'static str, content_type: &str) -> Response {
    let mut r = response(StatusCode::OK, content_type, text);
    r.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    r
}

/// The token check, before every route.
async fn auth(State(ui): State<Arc<Ui>>, req: Request, next: Next) -> Response {
    let Some(want) = &ui.token else {
        return next.run(req).await;
    };
    let headers = req.headers();
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().strip_prefix(COOKIE)?.strip_prefix('='))
        .next();
    let from_query = req
        .uri()
        .query()
        .into_iter()
        .flat_map(form_pairs)
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v);
    let ok = |t: Option<&str>| t.is_some_and(|t| same(&digest(t), want));
    // The cookie holds the token's digest in hex (see below).
    let cookie_ok = cookie
        .and_then(osprofiler::private::decode_hex::<20>)
        .is_some_and(|d| same(&d, want));
    if ok(bearer) || cookie_ok {
        return next.run(req).await;
    }
    if ok(from_query.as_deref()) {
        // Set the cookie and send the browser on without the token in its address bar.
        let mut r = response(StatusCode::SEE_OTHER, "text/plain", "");
        let path = req.uri().path().to_owned();
        if let Ok(v) = HeaderValue::from_str(&path) {
            r.headers_mut().insert(header::LOCATION, v);
        }
        // The digest, not the token: the browser never stores the token itself, and
        // hex is a valid cookie value whatever characters the token holds.
        let cookie = format!(
            "{COOKIE}={}; HttpOnly; SameSite=Strict; Path=/",
            osprofiler::private::hex_string(want)
        );
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            r.headers_mut().insert(header::SET_COOKIE, v);
        }
        return r;
    }
    let mut r = json_error(StatusCode::UNAUTHORIZED, "a token is required");
    r.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    r
}

async fn index() -> Response {
    asset(INDEX_HTML, "text/html; charset=utf-8")
}

/// `a=b&c=d`, percent-decoded, `+` as space.
fn form_pairs(q: &str) -> impl Iterator<Item = (String, String)> + '_ {
    q.split('&').filter(|p| !p.is_empty()).map(|p| {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        (decode(k), decode(v))
    })
}

fn decode(s: &str) -> String {
    // `+` first: an escaped one (`%2B`) stays a plus.
    let spaced = s.replace('+', " ");
    let bytes = osprofiler::__private::percent_decode(spaced.as_bytes(), false)
        .unwrap_or_else(|| spaced.into_bytes());
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The search of `/api/traces`'s parameters.
fn parse_query(raw: Option<&str>) -> Result<TraceQuery, String> {
    let mut q = TraceQuery {
        limit: Some(50),
        ..TraceQuery::default()
    };
    for (k, v) in raw.into_iter().flat_map(form_pairs) {
        if v.is_empty() {
            continue;
        }
        let bad = |e: String| format!("{k}: {e}");
        match k.as_str() {
            "service" => q.service = Some(v),
            "name" => q.name = Some(v),
            "text" => q.text = Some(v),
            "min_duration" => q.min_duration_us = Some(parse_duration_us(&v).map_err(bad)?),
            "max_duration" => q.max_duration_us = Some(parse_duration_us(&v).map_err(bad)?),
            "since" => q.since_us = Some(parse_time_us(&v).map_err(bad)?),
            "until" => q.until_us = Some(parse_time_us(&v).map_err(bad)?),
            "errors" => q.errors_only = v == "1" || v == "true",
            "offset" => q.offset = v.parse().map_err(|_| bad("not a number".into()))?,
            "limit" => {
                let l: usize = v.parse().map_err(|_| bad("not a number".into()))?;
                q.limit = Some(l.clamp(1, 1000));
            }
            _ => {}
        }
    }
    Ok(q)
}

/// Runs `f` on the store off the async workers (a store call blocks).
async fn with_store<T: Send + 'static>(
    ui: Arc<Ui>,
    f: impl FnOnce(&mut dyn TraceStore) -> Result<T, String> + Send + 'static,
) -> Result<Option<T>, String> {
    tokio::task::spawn_blocking(move || {
        let mut guard = ui
            .store
            .lock()
            .map_err(|_| "store unavailable".to_owned())?;
        match guard.as_mut() {
            Some(store) => f(store.as_mut()).map(Some),
            None => Ok(None),
        }
    })
    .await
    .map_err(|e| e.to_string())?
}

async fn list(State(ui): State<Arc<Ui>>, RawQuery(raw): RawQuery) -> Response {
    let q = match parse_query(raw.as_deref()) {
        Ok(q) => q,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, &e),
    };
    let page = with_store(ui, move |s| s.search_traces(&q).map_err(|e| e.to_string())).await;
    match page {
        Ok(page) => {
            let page = page.unwrap_or_default();
            let traces: Vec<_> = page.traces.iter().map(|t| t.to_json()).collect();
            let body = serde_json::json!({"traces": traces, "more": page.more}).to_string();
            response(StatusCode::OK, "application/json", body)
        }
        Err(e) => json_error(StatusCode::INTERNAL_SERVER_ERROR, &e),
    }
}

async fn report_of(ui: Arc<Ui>, id: String) -> Result<osprofiler_report::Report, Response> {
    if id.parse::<osprofiler::Id>().is_err() {
        return Err(json_error(StatusCode::BAD_REQUEST, "not a trace id"));
    }
    match with_store(ui, move |s| s.report(&id).map_err(|e| e.to_string())).await {
        Ok(Some(Some(r))) => Ok(r),
        Ok(_) => Err(json_error(StatusCode::NOT_FOUND, "no such trace")),
        Err(e) => Err(json_error(StatusCode::INTERNAL_SERVER_ERROR, &e)),
    }
}

async fn page(State(ui): State<Arc<Ui>>, Path(id): Path<String>) -> Response {
    match report_of(ui, id.clone()).await {
        // The report's own page, with its own CSP.
        Ok(r) => response(
            StatusCode::OK,
            "text/html; charset=utf-8",
            with_links(render_html(&r, &format!("osprofiler trace {id}")), &id),
        ),
        Err(e) => e,
    }
}

/// The report's subtitle line, which the trace page replaces with links.
const SUBTITLE: &str = r#"<div class="subtitle">osprofiler trace</div>"#;

/// The report with links back to the list and to its downloads under its title. `id` was
/// checked to be a UUID, so it needs no escaping; the subtitle is the page template's
/// (the trace's own strings are embedded as JSON with `<` escaped, further on).
fn with_links(html: String, id: &str) -> String {
    let links = format!(
        r#"<div class="subtitle"><a href="/">All traces</a> · download <a href="/api/traces/{id}/html" download>HTML</a> <a href="/api/traces/{id}/json" download>JSON</a> <a href="/api/traces/{id}/dot" download>DOT</a></div>"#
    );
    html.replacen(SUBTITLE, &links, 1)
}

/// `/compare?a=…&b=…` (the search page's form): on to `/compare/{a}/{b}`.
async fn compare_form(RawQuery(raw): RawQuery) -> Response {
    let mut a = None;
    let mut b = None;
    for (k, v) in raw.as_deref().into_iter().flat_map(form_pairs) {
        let id = v.trim().parse::<osprofiler::Id>().ok();
        match k.as_str() {
            "a" => a = id,
            "b" => b = id,
            _ => {}
        }
    }
    let (Some(a), Some(b)) = (a, b) else {
        return json_error(StatusCode::BAD_REQUEST, "give two trace ids, a and b");
    };
    let mut r = response(StatusCode::SEE_OTHER, "text/plain", "");
    // Ids parsed as UUIDs: safe in the header.
    if let Ok(v) = HeaderValue::from_str(&format!("/compare/{a}/{b}")) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

async fn compare_api(State(ui): State<Arc<Ui>>, Path((a, b)): Path<(String, String)>) -> Response {
    let ra = match report_of(ui.clone(), a.clone()).await {
        Ok(r) => r,
        Err(e) => return e,
    };
    let rb = match report_of(ui, b.clone()).await {
        Ok(r) => r,
        Err(e) => return e,
    };
    // Off the async workers: a large trace takes a while.
    let body = tokio::task::spawn_blocking(move || {
        let c = compare::Comparison::new(&ra, &rb);
        c.to_json((&a, &ra), (&b, &rb)).to_string()
    })
    .await;
    match body {
        Ok(body) => response(StatusCode::OK, "application/json", body),
        Err(e) => json_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

async fn download(
    State(ui): State<Arc<Ui>>,
    Path((id, format)): Path<(String, String)>,
) -> Response {
    let (kind, ext) = match format.as_str() {
        "json" => ("application/json", "json"),
        "html" => ("text/html; charset=utf-8", "html"),
        "dot" => ("text/vnd.graphviz; charset=utf-8", "dot"),
        _ => return json_error(StatusCode::NOT_FOUND, "formats: json, html, dot"),
    };
    let report = match report_of(ui, id.clone()).await {
        Ok(r) => r,
        Err(e) => return e,
    };
    let body = match ext {
        "json" => report.to_json_string(),
        "html" => render_html(&report, &format!("osprofiler trace {id}")),
        _ => render_dot(&report),
    };
    let mut r = response(StatusCode::OK, kind, body);
    // The id was checked to be a UUID: safe in the header.
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{id}.{ext}\"")) {
        r.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_parse() {
        let q = parse_query(Some(
            "service=api&name=%2Fv2.1%2Fservers&min_duration=20ms&errors=1&limit=5000&x=y",
        ))
        .unwrap();
        assert_eq!(q.service.as_deref(), Some("api"));
        assert_eq!(q.name.as_deref(), Some("/v2.1/servers"));
        assert_eq!(q.min_duration_us, Some(20_000));
        assert!(q.errors_only);
        assert_eq!(q.limit, Some(1000));
        assert!(parse_query(Some("min_duration=abc")).is_err());
        assert_eq!(decode("a+b%20c%2"), "a b c%2");
    }

    #[test]
    fn tokens_compare() {
        assert!(same(&digest("s3cret"), &digest("s3cret")));
        assert!(!same(&digest("s3cret"), &digest("s3creT")));
        assert!(needs_auth(&"0.0.0.0:1".parse().unwrap()));
        assert!(!needs_auth(&"127.0.0.1:1".parse().unwrap()));
        assert!(!needs_auth(&"[::1]:1".parse().unwrap()));
    }
}
