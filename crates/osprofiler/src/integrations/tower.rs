//! The server side: a tower [`Layer`] that continues signed traces, as
//! osprofiler's WSGI middleware does, for axum, hyper and tonic servers.
//!
//! For each request, [`HttpServerLayer`] looks at `X-Trace-Info` and
//! `X-Trace-HMAC`. When tracing is [enabled](crate::switches::is_enabled) and
//! the pair is signed by one of the [current keys](crate::switches::hmac_keys),
//! it continues the caller's trace: a `wsgi` point (a child of the caller's
//! point) with `info.request = {path, query, method, scheme, port}` at start
//! and `info.response.status` at stop, and the inner service runs inside it,
//! so its points are the `wsgi` point's children. The trace is installed only
//! while the request's future (and body) is polled: nothing leaks into other
//! requests, whatever happens.
//!
//! Anything else (no headers, a bad signature, an unknown key, a value too
//! long, not ASCII, twice the same header, tracing disabled) and the request
//! is served exactly as without the layer, at the cost of one atomic load and
//! at most one header lookup, with no allocation.
//!
//! With axum: `Router::new().route("/", get(handler)).layer(HttpServerLayer::new())`;
//! for tonic, see [`GrpcServerLayer`](crate::integrations::tonic::GrpcServerLayer).
//!
//! ## When the point stops
//!
//! [`HttpServerLayer::new`] stops the point when the inner service returns the
//! response head, as osprofiler's WSGI middleware does (it stops when the
//! application returns, before the body iterator is consumed). The response
//! is passed on untouched: no body wrapper, so no cost and no change of type.
//!
//! [`until_body_end`](HttpServerLayer::until_body_end) instead wraps the body
//! in a [`TracedBody`] and stops the point when the body ends (or fails, or is
//! dropped), for streaming responses whose time is spent producing the body.
//! The gRPC server layer, [`GrpcServerLayer`](crate::integrations::tonic::GrpcServerLayer)
//! (feature `tonic`), is this layer working that way, because a gRPC status usually
//! travels in the trailers: it records an `rpc` point with the gRPC method as
//! `info.function.name` and `info.response.grpc_status` at stop.
//!
//! ## Errors
//!
//! A 5xx status is recorded as `info.etype = "HTTPServerError"` with the
//! status line as `info.message`; a gRPC status that means the server failed
//! (UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE,
//! DATA_LOSS) as `info.etype = "GrpcError"` with `CODE: message`; an error
//! returned by the inner service or the body as its type name and message.
//! A request whose future is dropped before it answers (the client went away)
//! stops with `info.cancelled = true`; one whose future or body panicked, with
//! `info.etype = "panic"`.

use std::any::type_name;
use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::{HeaderMap, Request, Response};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

#[cfg(feature = "tonic")]
use crate::integrations::tonic::{grpc_error, grpc_status};
use crate::notifier::{Payload, RequestInfo, ResponseInfo};
use crate::propagation::IncomingTrace;
use crate::{Identity, Point, TraceContext};

/// Marker: the point stops when the response head is ready (the default).
///
/// ```
/// use osprofiler::integrations::tower::{HttpServerLayer, StopOnHead};
/// let layer: HttpServerLayer<StopOnHead> = HttpServerLayer::new();
/// # drop(layer);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct StopOnHead;

/// Marker: the point stops when the response body ends.
///
/// ```
/// use osprofiler::integrations::tower::{HttpServerLayer, StopOnBodyEnd};
/// let layer: HttpServerLayer<StopOnBodyEnd> = HttpServerLayer::new().until_body_end();
/// # drop(layer);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct StopOnBodyEnd;

#[derive(Clone)]
struct Config {
    name: &'static str,
    identity: Option<Arc<Identity>>,
    grpc: bool,
}

/// A tower [`Layer`] continuing signed osprofiler traces on a server.
///
/// ```
/// use std::convert::Infallible;
/// use std::future::{Ready, ready};
/// use std::task::{Context, Poll, Waker};
/// use http::{Request, Response};
/// use osprofiler::integrations::tower::HttpServerLayer;
/// use tower_layer::Layer;
/// use tower_service::Service;
///
/// #[derive(Clone)]
/// struct Hello;
/// impl Service<Request<String>> for Hello {
///     type Response = Response<String>;
///     type Error = Infallible;
///     type Future = Ready<Result<Response<String>, Infallible>>;
///     fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
///         Poll::Ready(Ok(()))
///     }
///     fn call(&mut self, _: Request<String>) -> Self::Future {
///         ready(Ok(Response::new("hello".to_owned())))
///     }
/// }
///
/// let mut svc = HttpServerLayer::new().layer(Hello);
/// let mut fut = std::pin::pin!(svc.call(Request::new(String::new())));
/// let Poll::Ready(Ok(resp)) = fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) else {
///     unreachable!()
/// };
/// assert_eq!(resp.body(), "hello"); // unsigned: served as without the layer
/// ```
pub struct HttpServerLayer<M = StopOnHead> {
    cfg: Config,
    _stop: PhantomData<fn() -> M>,
}

impl HttpServerLayer<StopOnHead> {
    /// An HTTP server layer: `wsgi` points, stopped at the response head.
    ///
    /// ```
    /// let layer = osprofiler::integrations::tower::HttpServerLayer::new();
    /// # drop(layer);
    /// ```
    pub fn new() -> Self {
        HttpServerLayer {
            cfg: Config {
                name: "wsgi",
                identity: None,
                grpc: false,
            },
            _stop: PhantomData,
        }
    }

    /// Stops the point when the response body ends instead of at the head
    /// (the body is then wrapped in a [`TracedBody`]).
    ///
    /// ```
    /// use osprofiler::integrations::tower::HttpServerLayer;
    /// let layer = HttpServerLayer::new().until_body_end();
    /// # drop(layer);
    /// ```
    pub fn until_body_end(self) -> HttpServerLayer<StopOnBodyEnd> {
        HttpServerLayer {
            cfg: self.cfg,
            _stop: PhantomData,
        }
    }
}

impl Default for HttpServerLayer<StopOnHead> {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpServerLayer<StopOnBodyEnd> {
    /// The layer of [`GrpcServerLayer`](crate::integrations::tonic::GrpcServerLayer):
    /// `rpc` points stopped at the end of the response, reading gRPC's status.
    #[cfg(feature = "tonic")]
    pub(crate) fn grpc() -> Self {
        HttpServerLayer {
            cfg: Config {
                name: "rpc",
                identity: None,
                grpc: true,
            },
            _stop: PhantomData,
        }
    }
}

impl<M> HttpServerLayer<M> {
    /// Names the point (`wsgi` for HTTP, `rpc` for gRPC by default); the name
    /// is also its category in the report's stats.
    ///
    /// ```
    /// let layer = osprofiler::integrations::tower::HttpServerLayer::new().name("api");
    /// # drop(layer);
    /// ```
    pub fn name(mut self, name: &'static str) -> Self {
        self.cfg.name = name;
        self
    }

    /// Records this service's points under `identity` instead of the process
    /// one: for several services served by one process.
    ///
    /// ```
    /// use osprofiler::{Identity, integrations::tower::HttpServerLayer};
    /// let layer = HttpServerLayer::new().identity(Identity::new("nova", "api", "h1"));
    /// # drop(layer);
    /// ```
    pub fn identity(mut self, identity: Identity) -> Self {
        self.cfg.identity = Some(Arc::new(identity));
        self
    }
}

impl<M> Clone for HttpServerLayer<M> {
    fn clone(&self) -> Self {
        HttpServerLayer {
            cfg: self.cfg.clone(),
            _stop: PhantomData,
        }
    }
}

impl<M> fmt::Debug for HttpServerLayer<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpServerLayer")
            .field("name", &self.cfg.name)
            .field("grpc", &self.cfg.grpc)
            .finish_non_exhaustive()
    }
}

impl<S, M> Layer<S> for HttpServerLayer<M> {
    type Service = HttpServerService<S, M>;

    fn layer(&self, inner: S) -> Self::Service {
        HttpServerService {
            inner,
            cfg: self.cfg.clone(),
            _stop: PhantomData,
        }
    }
}

/// The service made by [`HttpServerLayer`] around `S`.
///
/// ```
/// # use std::{convert::Infallible, future::{Ready, ready}, task::{Context, Poll}};
/// # use http::{Request, Response};
/// # #[derive(Clone)] struct Hello;
/// # impl tower_service::Service<Request<()>> for Hello {
/// #     type Response = Response<()>; type Error = Infallible;
/// #     type Future = Ready<Result<Response<()>, Infallible>>;
/// #     fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> { Poll::Ready(Ok(())) }
/// #     fn call(&mut self, _: Request<()>) -> Self::Future { ready(Ok(Response::new(()))) }
/// # }
/// use osprofiler::integrations::tower::{HttpServerLayer, HttpServerService};
/// use tower_layer::Layer;
/// let mut svc: HttpServerService<Hello> = HttpServerLayer::new().layer(Hello);
/// let _inner: &Hello = svc.get_ref();
/// # use tower_service::Service;
/// # drop(svc.call(Request::new(())));
/// ```
pub struct HttpServerService<S, M = StopOnHead> {
    inner: S,
    cfg: Config,
    _stop: PhantomData<fn() -> M>,
}

impl<S, M> HttpServerService<S, M> {
    /// The wrapped service (see the example above).
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    ///
    /// ```
    /// use osprofiler::integrations::tower::HttpServerLayer;
    /// use tower_layer::Layer;
    /// let mut svc = HttpServerLayer::new().layer(vec![1]);
    /// svc.get_mut().push(2);
    /// assert_eq!(svc.into_inner(), [1, 2]);
    /// ```
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The wrapped service, unwrapped (see [`get_mut`](Self::get_mut)).
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone, M> Clone for HttpServerService<S, M> {
    fn clone(&self) -> Self {
        HttpServerService {
            inner: self.inner.clone(),
            cfg: self.cfg.clone(),
            _stop: PhantomData,
        }
    }
}

impl<S: fmt::Debug, M> fmt::Debug for HttpServerService<S, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpServerService")
            .field("inner", &self.inner)
            .field("name", &self.cfg.name)
            .finish_non_exhaustive()
    }
}

/// Calls `inner` inside the trace `incoming` continues, with a new point.
// Kept out of line: the untraced path of `call` stays small.
#[cold]
#[inline(never)]
fn traced_call<S, B>(
    inner: &mut S,
    cfg: &Config,
    incoming: IncomingTrace,
    req: Request<B>,
) -> (S::Future, Option<Box<Tracking>>)
where
    S: Service<Request<B>>,
{
    let mut ctx = TraceContext::from_incoming(incoming);
    if let Some(identity) = &cfg.identity {
        ctx = ctx.with_identity(identity);
    }
    let info = request_info(&req, cfg.grpc);
    // One stay in the trace for the start and the inner `call`, which may
    // already do work (routing, a handler's synchronous part) that belongs to
    // the point too.
    let _in = ctx.enter();
    let point = Point::start_payload(cfg.name, info);
    let Some(here) = point.context() else {
        return (inner.call(req), None);
    };
    let _at_point = here.enter();
    let fut = inner.call(req);
    let tracking = Box::new(Tracking {
        point: Some(point),
        ctx: here,
        grpc: cfg.grpc,
        answered: false,
        polling: false,
        status: None,
        grpc_status: None,
        error: None,
    });
    (fut, Some(tracking))
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for HttpServerService<S, StopOnHead>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    S::Error: fmt::Display,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        if let Some(incoming) = super::http::extract(req.headers()) {
            let (inner, tracking) = traced_call(&mut self.inner, &self.cfg, incoming, req);
            return ResponseFuture { inner, tracking };
        }
        ResponseFuture {
            inner: self.inner.call(req),
            tracking: None,
        }
    }
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for HttpServerService<S, StopOnBodyEnd>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    S::Error: fmt::Display,
    ResB: Body,
    ResB::Error: fmt::Display,
{
    type Response = Response<TracedBody<ResB>>;
    type Error = S::Error;
    type Future = BodyResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        if let Some(incoming) = super::http::extract(req.headers()) {
            let (inner, tracking) = traced_call(&mut self.inner, &self.cfg, incoming, req);
            return BodyResponseFuture { inner, tracking };
        }
        BodyResponseFuture {
            inner: self.inner.call(req),
            tracking: None,
        }
    }
}

pin_project! {
    /// The response future of [`HttpServerService`] (stopping at the head):
    /// the inner future, polled inside the trace when the request is traced.
    ///
    /// ```
    /// use osprofiler::integrations::tower::{HttpServerService, ResponseFuture};
    /// fn named<S: tower_service::Service<http::Request<()>, Response = http::Response<()>>>(
    ///     svc: &mut HttpServerService<S>,
    /// ) -> ResponseFuture<S::Future>
    /// where S::Error: std::fmt::Display {
    ///     tower_service::Service::call(svc, http::Request::new(()))
    /// }
    /// ```
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        tracking: Option<Box<Tracking>>,
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: fmt::Display,
{
    type Output = F::Output;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        match this.tracking {
            None => this.inner.poll(cx),
            Some(_) => poll_traced(this.inner, this.tracking, cx, true).map(|(out, _)| out),
        }
    }
}

/// The traced half of both response futures' `poll`, out of line so the
/// untraced half inlines into the caller: polls `inner` inside the trace and,
/// once it is ready, records the outcome. With `stop`, the point stops there,
/// still inside the trace (the thread leaves it once, with the point's record
/// complete); otherwise the tracking is handed back, for the body.
#[cold]
#[inline(never)]
fn poll_traced<F, B, E>(
    inner: Pin<&mut F>,
    tracking: &mut Option<Box<Tracking>>,
    cx: &mut Context<'_>,
    stop: bool,
) -> Poll<(F::Output, Option<Box<Tracking>>)>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: fmt::Display,
{
    let Some(t) = tracking.as_mut() else {
        return inner.poll(cx).map(|out| (out, None));
    };
    let in_trace = t.ctx.enter();
    t.polling = true;
    let polled = inner.poll(cx);
    t.polling = false;
    let Poll::Ready(out) = polled else {
        return Poll::Pending;
    };
    t.outcome(&out);
    let tracking = tracking.take();
    let handed = if stop {
        drop(tracking);
        None
    } else {
        tracking
    };
    drop(in_trace);
    Poll::Ready((out, handed))
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("traced", &self.tracking.is_some())
            .finish_non_exhaustive()
    }
}

pin_project! {
    /// The response future of [`HttpServerService`] stopping at the body's
    /// end: hands the running point over to the response's [`TracedBody`].
    ///
    /// ```
    /// use osprofiler::integrations::tower::{BodyResponseFuture, HttpServerService, StopOnBodyEnd};
    /// fn named<S: tower_service::Service<http::Request<()>, Response = http::Response<String>>>(
    ///     svc: &mut HttpServerService<S, StopOnBodyEnd>,
    /// ) -> BodyResponseFuture<S::Future>
    /// where S::Error: std::fmt::Display {
    ///     tower_service::Service::call(svc, http::Request::new(()))
    /// }
    /// ```
    pub struct BodyResponseFuture<F> {
        #[pin]
        inner: F,
        tracking: Option<Box<Tracking>>,
    }
}

impl<F, B, E> Future for BodyResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: fmt::Display,
{
    type Output = Result<Response<TracedBody<B>>, E>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if this.tracking.is_none() {
            let out = ready!(this.inner.poll(cx));
            return Poll::Ready(out.map(|r| r.map(TracedBody::untraced)));
        }
        // On to the body, which stops the point when it ends.
        let (out, tracking) = ready!(poll_traced(this.inner, this.tracking, cx, false));
        Poll::Ready(out.map(|r| r.map(|inner| TracedBody { inner, tracking })))
    }
}

impl<F> fmt::Debug for BodyResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BodyResponseFuture")
            .field("traced", &self.tracking.is_some())
            .finish_non_exhaustive()
    }
}

pin_project! {
    /// A response body carrying the request's running point, stopped when
    /// the body ends, fails or is dropped; untraced, it only forwards.
    ///
    /// ```
    /// use http_body::Body;
    /// use osprofiler::integrations::tower::TracedBody;
    /// let body = TracedBody::untraced(String::from("hello"));
    /// assert_eq!(body.size_hint().exact(), Some(5));
    /// ```
    pub struct TracedBody<B> {
        #[pin]
        inner: B,
        tracking: Option<Box<Tracking>>,
    }
}

impl<B> TracedBody<B> {
    /// A body that records nothing (see the example above).
    pub fn untraced(inner: B) -> TracedBody<B> {
        TracedBody {
            inner,
            tracking: None,
        }
    }

    /// The wrapped body, unwrapped (the point, if any, stops now).
    ///
    /// ```
    /// let body = osprofiler::integrations::tower::TracedBody::untraced("hi");
    /// assert_eq!(body.into_inner(), "hi");
    /// ```
    pub fn into_inner(self) -> B {
        self.inner
    }
}

impl<B> Body for TracedBody<B>
where
    B: Body,
    B::Error: fmt::Display,
{
    type Data = B::Data;
    type Error = B::Error;

    #[inline]
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let mut this = self.project();
        let Some(t) = this.tracking.as_mut() else {
            return this.inner.poll_frame(cx);
        };
        let in_trace = t.ctx.enter();
        t.polling = true;
        let polled = this.inner.as_mut().poll_frame(cx);
        t.polling = false;
        let Poll::Ready(frame) = polled else {
            return Poll::Pending;
        };
        let done = match &frame {
            Some(Ok(f)) => match f.trailers_ref() {
                Some(trailers) => {
                    t.trailers(trailers);
                    true
                }
                // The last data frame: nobody has to poll again.
                None => this.inner.is_end_stream(),
            },
            Some(Err(e)) => {
                t.error = Some((Cow::Borrowed(type_name::<B::Error>()), e.to_string()));
                true
            }
            None => true,
        };
        if done {
            *this.tracking = None;
        }
        drop(in_trace);
        Poll::Ready(frame)
    }

    #[inline]
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    #[inline]
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> fmt::Debug for TracedBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TracedBody")
            .field("traced", &self.tracking.is_some())
            .finish_non_exhaustive()
    }
}

/// A traced request's running point and what its stop will say.
struct Tracking {
    point: Option<Point>,
    /// The trace at the point: entered while the request's work is polled.
    ctx: TraceContext,
    grpc: bool,
    answered: bool,
    /// Set while the inner future or body is polled: still set at drop, that
    /// poll panicked.
    polling: bool,
    status: Option<u16>,
    grpc_status: Option<(i32, Option<String>)>,
    error: Option<(Cow<'static, str>, String)>,
}

impl Tracking {
    fn outcome<B, E: fmt::Display>(&mut self, out: &Result<Response<B>, E>) {
        self.answered = true;
        match out {
            Ok(resp) => {
                self.status = Some(resp.status().as_u16());
                if self.grpc {
                    // A "trailers-only" answer (an error before any message)
                    // has its status in the head.
                    self.grpc_status = grpc_status(resp.headers());
                }
            }
            Err(e) => self.error = Some((Cow::Borrowed(type_name::<E>()), e.to_string())),
        }
    }

    fn trailers(&mut self, trailers: &HeaderMap) {
        if self.grpc
            && let Some(s) = grpc_status(trailers)
        {
            self.grpc_status = Some(s);
        }
    }

    /// The stop's payload: typed, made JSON on the exporter thread.
    fn stop_payload(&mut self) -> Option<Payload> {
        if self.polling || std::thread::panicking() {
            return Some(Payload::Error {
                etype: Cow::Borrowed("panic"),
                message: "panicked".to_owned(),
            });
        }
        if !self.answered {
            return Some(Payload::Cancelled);
        }
        let grpc_code = self.grpc_status.as_ref().map(|(code, _)| *code);
        let grpc_error = grpc_error(self.grpc_status.take());
        let error = if let Some(e) = self.error.take() {
            Some(e)
        } else if grpc_error.is_some() {
            grpc_error
        } else if let Some(status) = self.status
            && status >= 500
        {
            let reason = http::StatusCode::from_u16(status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("");
            Some((
                Cow::Borrowed("HTTPServerError"),
                format!("{status} {reason}").trim_end().to_owned(),
            ))
        } else {
            None
        };
        let response = ResponseInfo {
            status: self.status,
            grpc_status: grpc_code,
            error,
        };
        (!response.is_empty()).then_some(Payload::Response(response))
    }
}

impl Drop for Tracking {
    fn drop(&mut self) {
        let Some(mut point) = self.point.take() else {
            return;
        };
        if let Some(p) = self.stop_payload() {
            point.set_payload(p);
        }
        // Stop inside the trace: leaving it hands the stop record to the
        // exporter at once (stopped outside any trace, it would wait in this
        // thread's buffer until the thread next leaves a trace).
        let _in = self.ctx.enter();
        drop(point);
    }
}

/// `info.request` (plus `info.function` for gRPC) of a request.
fn request_info<B>(req: &Request<B>, grpc: bool) -> Payload {
    let uri = req.uri();
    // HTTP/1 requests carry an origin-form URI: the scheme is not known here.
    let scheme = uri.scheme_str().unwrap_or("http");
    let port = uri
        .port_u16()
        .or_else(|| host_port(req.headers()))
        .unwrap_or(if scheme == "https" { 443 } else { 80 });
    let (path, query) = (uri.path(), uri.query().unwrap_or(""));
    let mut path_query = String::with_capacity(path.len() + query.len());
    path_query.push_str(path);
    path_query.push_str(query);
    Payload::Request(Box::new(RequestInfo {
        path_query: path_query.into_boxed_str(),
        path_len: path.len(),
        method: static_or_owned(req.method().as_str(), METHODS),
        scheme: static_or_owned(scheme, &["http", "https"]),
        port,
        grpc,
    }))
}

const METHODS: &[&str] = &[
    "GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "CONNECT", "TRACE",
];

/// `s` as one of the `known` static strings (no allocation), else owned.
fn static_or_owned(s: &str, known: &[&'static str]) -> Cow<'static, str> {
    match known.iter().find(|k| **k == s) {
        Some(k) => Cow::Borrowed(k),
        None => Cow::Owned(s.to_owned()),
    }
}

/// The port of the `Host` header (`host:port`, `[v6]:port`).
fn host_port(headers: &HeaderMap) -> Option<u16> {
    let host = headers.get(http::header::HOST)?.to_str().ok()?;
    let (name, port) = host.rsplit_once(':')?;
    if name.starts_with('[') && !name.ends_with(']') {
        return None; // a bare IPv6 address
    }
    port.parse().ok()
}

/// Without the `tonic` feature no layer reads gRPC statuses (only
/// [`HttpServerLayer::grpc`] sets `Config::grpc`).
#[cfg(not(feature = "tonic"))]
fn grpc_status(_: &HeaderMap) -> Option<(i32, Option<String>)> {
    None
}

#[cfg(not(feature = "tonic"))]
fn grpc_error(_: Option<(i32, Option<String>)>) -> Option<(Cow<'static, str>, String)> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers() {
        let mut h = HeaderMap::new();
        h.insert(http::header::HOST, "example.org:8774".parse().unwrap());
        assert_eq!(host_port(&h), Some(8774));
        h.insert(http::header::HOST, "[::1]".parse().unwrap());
        assert_eq!(host_port(&h), None);
        h.insert(http::header::HOST, "[::1]:9".parse().unwrap());
        assert_eq!(host_port(&h), Some(9));
        let req = Request::post("/helloworld.Greeter/SayHello?x=1")
            .body(())
            .unwrap();
        let info = crate::event::EventInfo::recorded(Some(request_info(&req, true)), "h".into());
        let mut want = serde_json::json!({
                "request": {"path": "/helloworld.Greeter/SayHello", "query": "x=1",
                            "method": "POST", "scheme": "http", "port": 80},
                "function": {"name": "helloworld.Greeter.SayHello"},
                "host": "h"
        });
        assert_eq!(serde_json::to_value(&info).unwrap(), want);
        let req = Request::builder()
            .method("PURGE")
            .uri("https://x:8443/a/b")
            .body(())
            .unwrap();
        let info = crate::event::EventInfo::recorded(Some(request_info(&req, false)), "h".into());
        want = serde_json::json!({
            "request": {"path": "/a/b", "query": "", "method": "PURGE", "scheme": "https", "port": 8443},
            "host": "h"
        });
        assert_eq!(serde_json::to_value(&info).unwrap(), want);
        // The stop, as the text the `Info` maps made (key order included).
        let stop = ResponseInfo {
            status: Some(503),
            grpc_status: None,
            error: Some((
                Cow::Borrowed("HTTPServerError"),
                "503 Service Unavailable".into(),
            )),
        };
        let info = crate::event::EventInfo::recorded(Some(Payload::Response(stop)), "h".into());
        assert_eq!(
            serde_json::to_string(&info).unwrap(),
            r#"{"response":{"status":503},"etype":"HTTPServerError","message":"503 Service Unavailable","host":"h"}"#
        );
    }
}
