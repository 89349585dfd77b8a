//! The client side: a [`reqwest_middleware::Middleware`] that carries the
//! trace to the services a traced request calls.
//!
//! Inside a trace, [`HttpClientMiddleware`] always signs the outgoing request
//! (`X-Trace-Info`/`X-Trace-HMAC`): that is what joins the called service to
//! the trace. Whether the call also becomes a point follows osprofiler's
//! `trace_requests` option ([`switches::trace_requests`](crate::switches::trace_requests),
//! off by default) unless [`record_points`](HttpClientMiddleware::record_points)
//! says otherwise:
//!
//! - on: an `http` or `https` point (the URL's scheme) with
//!   `info.requests = {method, query, path, hostname, port, scheme}` at start
//!   and `info.requests.status_code` at stop, and the headers sent are those
//!   of this point, so the called service's points are its children. The
//!   point stops when the response head arrives, or when the request fails,
//!   with `info.etype`/`info.message` (Python's `requests` hook leaves it open).
//! - off: no point; the headers sent are those of the caller's current point.
//!   This is what an OpenStack Python client does without `trace_requests`:
//!   keystoneauth always adds `web.get_trace_id_headers()`, while the point
//!   comes only from the `requests` hook that `trace_requests` installs.
//!
//! Outside a trace the request passes through untouched.
//!
//! ```
//! use osprofiler::integrations::reqwest::HttpClientMiddleware;
//! let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
//!     .with(HttpClientMiddleware::new())
//!     .build();
//! # drop(client);
//! ```

use std::future::Future;
use std::pin::Pin;

use http::Extensions;
use reqwest::{Request, Response};
use reqwest_middleware::{Middleware, Next};
use serde_json::{Map, Value};

use crate::{Info, Point};

/// The reqwest middleware: signs outgoing requests made inside a trace and,
/// with `trace_requests`, records them as `http`/`https` points.
///
/// ```
/// use osprofiler::integrations::reqwest::HttpClientMiddleware;
/// // Points for every call, whatever the `trace_requests` switch says:
/// let mw = HttpClientMiddleware::new().record_points(true);
/// # drop(mw);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct HttpClientMiddleware {
    points: Option<bool>,
}

impl HttpClientMiddleware {
    /// Records points when [`switches::trace_requests`](crate::switches::trace_requests)
    /// is on (checked on each request).
    ///
    /// ```
    /// let mw = osprofiler::integrations::reqwest::HttpClientMiddleware::new();
    /// # drop(mw);
    /// ```
    pub fn new() -> Self {
        HttpClientMiddleware { points: None }
    }

    /// Records points (`true`) or never (`false`), ignoring the switch.
    /// Headers are sent either way.
    ///
    /// ```
    /// let mw = osprofiler::integrations::reqwest::HttpClientMiddleware::new().record_points(false);
    /// # drop(mw);
    /// ```
    pub fn record_points(self, on: bool) -> Self {
        HttpClientMiddleware { points: Some(on) }
    }

    fn records_points(&self) -> bool {
        self.points.unwrap_or_else(crate::switches::trace_requests)
    }
}

type BoxFuture<'a> =
    Pin<Box<dyn Future<Output = reqwest_middleware::Result<Response>> + Send + 'a>>;

// The signature `#[async_trait]` gives the trait's method, written out so the
// untraced path can hand on `next`'s future without boxing another one.
impl Middleware for HttpClientMiddleware {
    fn handle<'life0, 'life1, 'life2, 'async_trait>(
        &'life0 self,
        req: Request,
        extensions: &'life1 mut Extensions,
        next: Next<'life2>,
    ) -> BoxFuture<'async_trait>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        'life2: 'async_trait,
        Self: 'async_trait,
    {
        if !crate::is_active() {
            return next.run(req, extensions);
        }
        if !self.records_points() {
            let mut req = req;
            super::http::inject_headers(req.headers_mut());
            return next.run(req, extensions);
        }
        Box::pin(traced(req, extensions, next))
    }
}

async fn traced(
    mut req: Request,
    extensions: &mut Extensions,
    next: Next<'_>,
) -> reqwest_middleware::Result<Response> {
    let name = if req.url().scheme() == "https" {
        "https"
    } else {
        "http"
    };
    let mut point = Point::start(name, requests_info(&req));
    let Some(here) = point.context() else {
        return next.run(req, extensions).await;
    };
    // Signed for this point: the called service's points hang from it.
    super::http::insert_context(req.headers_mut(), &here);
    let out = here.instrument(next.run(req, extensions)).await;
    match &out {
        Ok(resp) => {
            let mut requests = Map::new();
            requests.insert("status_code".into(), resp.status().as_u16().into());
            point.set_stop_info(Info::new().with("requests", Value::Object(requests)));
        }
        Err(e) => {
            let etype = match e {
                reqwest_middleware::Error::Reqwest(_) => "reqwest::Error",
                reqwest_middleware::Error::Middleware(_) => "reqwest_middleware::Error",
            };
            point.set_error(etype, e.to_string());
        }
    }
    point.finish();
    out
}

/// osprofiler's `info.requests` for a request, in its key order.
fn requests_info(req: &Request) -> Info {
    let url = req.url();
    let mut requests = Map::new();
    requests.insert("method".into(), req.method().as_str().into());
    requests.insert("query".into(), url.query().unwrap_or("").into());
    requests.insert("path".into(), url.path().into());
    // Python's `urlparse(..).hostname`: no brackets around an IPv6 address.
    let hostname = url
        .host_str()
        .map(|h| h.trim_start_matches('[').trim_end_matches(']'));
    requests.insert("hostname".into(), hostname.into());
    // Python guesses 80/443 for http/https and gives "" otherwise.
    let port = match url.port_or_known_default() {
        Some(p) => Value::from(p),
        None => Value::from(""),
    };
    requests.insert("port".into(), port);
    requests.insert("scheme".into(), url.scheme().into());
    Info::new().with("requests", Value::Object(requests))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_like_python() {
        let req = Request::new(
            http::Method::GET,
            "http://[::1]:8774/v2.1/servers?limit=1".parse().unwrap(),
        );
        assert_eq!(
            Value::Object(requests_info(&req).0),
            serde_json::json!({"requests": {"method": "GET", "query": "limit=1",
                "path": "/v2.1/servers", "hostname": "::1", "port": 8774, "scheme": "http"}})
        );
        let req = Request::new(http::Method::POST, "https://Example.org".parse().unwrap());
        let info = requests_info(&req);
        assert_eq!(info.0["requests"]["hostname"], "example.org");
        assert_eq!(info.0["requests"]["port"], 443);
        assert_eq!(info.0["requests"]["path"], "/");
    }
}
