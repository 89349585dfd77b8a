//! gRPC with tonic.
//!
//! - Client: [`GrpcClientInterceptor`] puts the signed context of the current
//!   point into the call's metadata (`x-trace-info`, `x-trace-hmac`), exactly
//!   as HTTP headers. Only the signature travels: the key never does (Python
//!   services put `hmac_key` in clear into their RPC context; see
//!   [`carrier::extract_python_trace_info`](crate::carrier::extract_python_trace_info)
//!   to read that form).
//! - Server: [`GrpcServerLayer`] on `tonic::transport::Server::builder().layer(..)`:
//!   an `rpc` point, child of the caller's point, with the method and the gRPC
//!   status (the tower layer of [`integrations::tower`](crate::integrations::tower),
//!   stopping at the end of the response, where gRPC's status travels).
//!
//! The client's point is whatever point is current when the call is made
//! (a `#[trace]` function, [`in_point`](crate::in_point)); the interceptor
//! records none itself, since it does not see the response.
//!
//! ```
//! use osprofiler::integrations::tonic::GrpcClientInterceptor;
//! use tonic::service::Interceptor;
//!
//! let ctx = osprofiler::TraceContext::new(osprofiler::HmacKey::new("SECRET_KEY"), None, None);
//! let req = ctx
//!     .in_scope(|| GrpcClientInterceptor.call(tonic::Request::new(())))
//!     .unwrap();
//! assert_eq!(req.metadata().get("x-trace-hmac").unwrap().len(), 40);
//! ```

use std::borrow::Cow;

use http::HeaderMap;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::service::Interceptor;
use tonic::{Request, Status};

use crate::Identity;
use crate::integrations::tower::{HttpServerLayer, HttpServerService, StopOnBodyEnd};
use crate::percent::percent_decode;
use crate::propagation::TraceHeaders;

/// The gRPC server layer: for each call signed by a configured key, an `rpc`
/// point (child of the caller's point) with the method as
/// `info.function.name`, stopped when the response ends, with
/// `info.response.grpc_status`; a status meaning the server failed is
/// recorded as `info.etype = "GrpcError"`.
///
/// ```
/// use osprofiler::integrations::tonic::GrpcServerLayer;
/// let layer = GrpcServerLayer::new().identity(osprofiler::Identity::new("nova", "conductor", "h1"));
/// // tonic::transport::Server::builder().layer(layer).add_service(..)
/// # drop(layer);
/// ```
#[derive(Debug, Clone)]
pub struct GrpcServerLayer(HttpServerLayer<StopOnBodyEnd>);

impl GrpcServerLayer {
    /// `rpc` points, under the process identity.
    pub fn new() -> GrpcServerLayer {
        GrpcServerLayer(HttpServerLayer::grpc())
    }

    /// Names the point (`rpc` by default); the name is also its category in
    /// the report's stats.
    pub fn name(self, name: &'static str) -> GrpcServerLayer {
        GrpcServerLayer(self.0.name(name))
    }

    /// Records this service's points under `identity` instead of the process
    /// one: for several services served by one process.
    pub fn identity(self, identity: Identity) -> GrpcServerLayer {
        GrpcServerLayer(self.0.identity(identity))
    }
}

impl Default for GrpcServerLayer {
    fn default() -> GrpcServerLayer {
        GrpcServerLayer::new()
    }
}

impl<S> tower_layer::Layer<S> for GrpcServerLayer {
    type Service = HttpServerService<S, StopOnBodyEnd>;

    fn layer(&self, inner: S) -> Self::Service {
        self.0.layer(inner)
    }
}

/// A tonic client [`Interceptor`] signing each call made inside a trace; a
/// call made outside one passes untouched. Use it with a generated client's
/// `with_interceptor`, or `tonic::service::interceptor(GrpcClientInterceptor)`
/// as a tower layer.
///
/// ```
/// use osprofiler::integrations::tonic::GrpcClientInterceptor;
/// use tonic::service::Interceptor;
/// let req = GrpcClientInterceptor.call(tonic::Request::new(())).unwrap();
/// assert!(req.metadata().is_empty()); // no trace here
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct GrpcClientInterceptor;

impl Interceptor for GrpcClientInterceptor {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        inject_metadata(request.metadata_mut());
        Ok(request)
    }
}

/// Puts the signed context of the current point into `metadata`, replacing
/// values already there; `false` (and `metadata` untouched) outside a trace
/// or when the trace has no key.
///
/// ```
/// let mut md = tonic::metadata::MetadataMap::new();
/// assert!(!osprofiler::integrations::tonic::inject_metadata(&mut md));
/// ```
pub fn inject_metadata(metadata: &mut MetadataMap) -> bool {
    let Some(ctx) = crate::context::get() else {
        return false;
    };
    // With `w3c_traceparent`, OpenTelemetry-instrumented servers join the trace too.
    if crate::switches::w3c_traceparent()
        && let Ok(v) = MetadataValue::try_from(ctx.traceparent().encode())
    {
        metadata.insert("traceparent", v);
    }
    match ctx.headers() {
        Some(h) => insert_metadata(metadata, &h),
        None => false,
    }
}

fn insert_metadata(metadata: &mut MetadataMap, trace: &TraceHeaders) -> bool {
    let (Ok(info), Ok(hmac)) = (
        MetadataValue::try_from(trace.info.as_str()),
        MetadataValue::try_from(trace.hmac.as_str()),
    ) else {
        return false;
    };
    metadata.insert("x-trace-info", info);
    metadata.insert("x-trace-hmac", hmac);
    true
}

/// The trace a call's metadata asks to continue, under the same rules as
/// [`http::extract`](crate::integrations::http::extract): tracing enabled,
/// one of each value, signed by a current key. Servers behind the tower
/// layer need not call it.
///
/// ```
/// let md = tonic::metadata::MetadataMap::new();
/// assert!(osprofiler::integrations::tonic::extract_metadata(&md).is_none());
/// ```
pub fn extract_metadata(metadata: &MetadataMap) -> Option<crate::IncomingTrace> {
    super::http::extract(metadata.as_ref())
}

/// The `grpc-status` code and `grpc-message` of a response head or trailers.
pub(crate) fn grpc_status(headers: &HeaderMap) -> Option<(i32, Option<String>)> {
    let code = headers
        .get("grpc-status")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let message = headers
        .get("grpc-message")
        // Percent-encoded UTF-8, decoded leniently as gRPC asks.
        .map(|m| {
            let bytes = percent_decode(m.as_bytes(), false).unwrap_or_default();
            String::from_utf8_lossy(&bytes).into_owned()
        });
    Some((code, message))
}

/// What a point records of a gRPC status that says the server failed:
/// `GrpcError` and `CODE: message`.
pub(crate) fn grpc_error(
    status: Option<(i32, Option<String>)>,
) -> Option<(Cow<'static, str>, String)> {
    let (code, message) = status?;
    if !grpc_server_error(code) {
        return None;
    }
    let name = grpc_code_name(code);
    let message = match message {
        Some(m) if !m.is_empty() => format!("{name}: {m}"),
        _ => name.to_owned(),
    };
    Some((Cow::Borrowed("GrpcError"), message))
}

/// The codes that say the server failed, rather than the caller.
fn grpc_server_error(code: i32) -> bool {
    matches!(code, 2 | 4 | 12 | 13 | 14 | 15)
}

fn grpc_code_name(code: i32) -> &'static str {
    match code {
        0 => "OK",
        1 => "CANCELLED",
        2 => "UNKNOWN",
        3 => "INVALID_ARGUMENT",
        4 => "DEADLINE_EXCEEDED",
        5 => "NOT_FOUND",
        6 => "ALREADY_EXISTS",
        7 => "PERMISSION_DENIED",
        8 => "RESOURCE_EXHAUSTED",
        9 => "FAILED_PRECONDITION",
        10 => "ABORTED",
        11 => "OUT_OF_RANGE",
        12 => "UNIMPLEMENTED",
        13 => "INTERNAL",
        14 => "UNAVAILABLE",
        15 => "DATA_LOSS",
        16 => "UNAUTHENTICATED",
        _ => "UNKNOWN_CODE",
    }
}
