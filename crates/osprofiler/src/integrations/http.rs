//! The signed trace headers in an [`http::HeaderMap`]: for any HTTP client or
//! server built on the `http` crate (hyper, reqwest, axum, tonic's metadata).
//!
//! A client calls [`inject_headers`] on its outgoing request while a point is
//! current; a server calls [`extract`] on the incoming request and continues
//! the trace with [`TraceContext::from_incoming`](crate::TraceContext::from_incoming)
//! (the [`tower`](crate::integrations::tower) layer does that for you).
//!
//! ```
//! use http::HeaderMap;
//! use osprofiler::{HmacKey, HmacKeys, TraceContext};
//! use osprofiler::integrations::http::{inject_headers, verify};
//!
//! let caller = TraceContext::new(HmacKey::new("SECRET_KEY"), None, None);
//! let mut headers = HeaderMap::new();
//! assert!(caller.in_scope(|| inject_headers(&mut headers)));
//!
//! // A server uses `extract(&headers)`, which checks the runtime switches.
//! let keys = HmacKeys::parse("SECRET_KEY");
//! let incoming = verify(&headers, &keys).expect("signed with one of our keys");
//! assert_eq!(incoming.base_id, caller.base_id());
//! ```

use http::header::{HeaderMap, HeaderName, HeaderValue};

use crate::keys::HmacKeys;
use crate::propagation::{IncomingTrace, MAX_TRACE_INFO_LEN, TraceHeaders, verify_trace_headers};

// Statics, not consts: a `HeaderName` holds `Bytes`, which clippy rightly
// flags as interior mutability in a const. Lowercase, as HTTP/2 sends them.
static INFO_NAME: HeaderName = HeaderName::from_static("x-trace-info");
static HMAC_NAME: HeaderName = HeaderName::from_static("x-trace-hmac");
static TRACEPARENT_NAME: HeaderName = HeaderName::from_static("traceparent");

/// Longest `X-Trace-HMAC` value looked at: osprofiler's is 40 hex digits,
/// Python strips surrounding whitespace, so allow a little of it.
const MAX_TRACE_HMAC_LEN: usize = 64;

/// Puts the signed `X-Trace-Info`/`X-Trace-HMAC` pair of the current point
/// into `headers` (osprofiler's `web.get_trace_id_headers()`), replacing any
/// values already there. Returns `false`, leaving `headers` alone, outside a
/// trace or when the trace has no key.
///
/// ```
/// use http::HeaderMap;
/// let mut headers = HeaderMap::new();
/// assert!(!osprofiler::integrations::http::inject_headers(&mut headers));
/// assert!(headers.is_empty());
///
/// let ctx = osprofiler::TraceContext::new(osprofiler::HmacKey::new("SECRET_KEY"), None, None);
/// assert!(ctx.in_scope(|| osprofiler::integrations::http::inject_headers(&mut headers)));
/// assert_eq!(headers["x-trace-hmac"].len(), 40);
/// ```
pub fn inject_headers(headers: &mut HeaderMap) -> bool {
    match crate::context::get() {
        Some(ctx) => insert_context(headers, &ctx),
        None => false,
    }
}

/// The headers of a call made under `ctx`'s current point: the signed pair, and with
/// [`w3c_traceparent`](crate::switches::w3c_traceparent) on, a W3C `traceparent`
/// (for OpenTelemetry-instrumented services; it never starts an osprofiler trace).
pub(crate) fn insert_context(headers: &mut HeaderMap, ctx: &crate::TraceContext) -> bool {
    if crate::switches::w3c_traceparent()
        && let Ok(v) = HeaderValue::try_from(ctx.traceparent().encode())
    {
        headers.insert(TRACEPARENT_NAME.clone(), v);
    }
    match ctx.headers() {
        Some(h) => insert_owned(headers, h),
        None => false,
    }
}

/// Puts `trace` into `headers`, replacing any values already there (for a
/// call made on behalf of a context that is not current, e.g.
/// [`Point::context`](crate::Point::context)). Returns `false` if a value is
/// not a valid header value, which signed values always are.
///
/// ```
/// use http::HeaderMap;
/// use osprofiler::{HmacKey, TraceContext};
/// let ctx = TraceContext::new(HmacKey::new("SECRET_KEY"), None, None);
/// let mut headers = HeaderMap::new();
/// assert!(osprofiler::integrations::http::insert_trace_headers(&mut headers, &ctx.headers().unwrap()));
/// assert_eq!(headers.len(), 2);
/// ```
pub fn insert_trace_headers(headers: &mut HeaderMap, trace: &TraceHeaders) -> bool {
    insert_owned(headers, trace.clone())
}

/// [`insert_trace_headers`] taking the values: `TryFrom<String>` reuses
/// their buffers.
pub(crate) fn insert_owned(headers: &mut HeaderMap, trace: TraceHeaders) -> bool {
    let (Ok(info), Ok(hmac)) = (
        HeaderValue::try_from(trace.info),
        HeaderValue::try_from(trace.hmac),
    ) else {
        return false;
    };
    headers.insert(INFO_NAME.clone(), info);
    headers.insert(HMAC_NAME.clone(), hmac);
    true
}

/// The trace an incoming request asks to continue: `Some` only when tracing
/// is [enabled](crate::switches::is_enabled) and `headers` hold exactly one
/// `X-Trace-Info` and one `X-Trace-HMAC`, printable ASCII, of sane length,
/// signed by one of the [current keys](crate::switches::hmac_keys) (so key
/// rotation and on/off apply to the next request). Anything odd: `None`, the
/// request is not traced.
///
/// ```
/// use http::HeaderMap;
/// let mut headers = HeaderMap::new();
/// headers.insert("x-trace-info", "e30=".parse().unwrap());
/// headers.insert("x-trace-hmac", "0000000000000000000000000000000000000000".parse().unwrap());
/// assert!(osprofiler::integrations::http::extract(&headers).is_none()); // forged
/// ```
#[inline]
pub fn extract(headers: &HeaderMap) -> Option<IncomingTrace> {
    // The untraced fast path: one atomic load, or one header lookup.
    if !crate::switches::is_enabled() {
        return None;
    }
    if !headers.contains_key(&INFO_NAME) {
        return None;
    }
    verify_current(headers)
}

#[inline(never)]
fn verify_current(headers: &HeaderMap) -> Option<IncomingTrace> {
    let (info, hmac) = trace_values(headers)?;
    verify_trace_headers(info, hmac, &crate::switches::hmac_keys())
}

/// [`extract`] against `keys` instead of the runtime switches (tracing need
/// not be enabled): for a service that keeps its own key list.
///
/// ```
/// use http::HeaderMap;
/// use osprofiler::{HmacKey, HmacKeys, TraceContext};
/// let ctx = TraceContext::new(HmacKey::new("SECRET_KEY"), None, None);
/// let mut headers = HeaderMap::new();
/// osprofiler::integrations::http::insert_trace_headers(&mut headers, &ctx.headers().unwrap());
/// let keys = HmacKeys::parse("OTHER, SECRET_KEY");
/// assert!(osprofiler::integrations::http::verify(&headers, &keys).is_some());
/// assert!(osprofiler::integrations::http::verify(&headers, &HmacKeys::parse("OTHER")).is_none());
/// ```
pub fn verify(headers: &HeaderMap, keys: &HmacKeys) -> Option<IncomingTrace> {
    let (info, hmac) = trace_values(headers)?;
    verify_trace_headers(info, hmac, keys)
}

/// The two values as text, when each header is present exactly once, within
/// its size limit (checked before anything is decoded) and visible ASCII.
fn trace_values(headers: &HeaderMap) -> Option<(&str, &str)> {
    let info = single(headers, &INFO_NAME, MAX_TRACE_INFO_LEN)?;
    let hmac = single(headers, &HMAC_NAME, MAX_TRACE_HMAC_LEN)?;
    Some((info, hmac))
}

fn single<'a>(headers: &'a HeaderMap, name: &HeaderName, max_len: usize) -> Option<&'a str> {
    let mut all = headers.get_all(name).iter();
    let value = all.next()?;
    // Two values: which one the sender meant is unclear, so neither counts.
    if all.next().is_some() || value.len() > max_len {
        return None;
    }
    // `to_str` refuses anything but visible ASCII (and tab).
    value.to_str().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{HmacKey, TraceContext};

    fn signed() -> (TraceContext, HeaderMap) {
        let ctx = TraceContext::new(HmacKey::new("K1"), None, None);
        let mut h = HeaderMap::new();
        assert!(insert_trace_headers(&mut h, &ctx.headers().unwrap()));
        (ctx, h)
    }

    #[test]
    fn verifies_and_rejects_oddities() {
        let keys = HmacKeys::parse("K1");
        let (ctx, h) = signed();
        assert_eq!(verify(&h, &keys).unwrap().base_id, ctx.base_id());

        let mut dup = h.clone();
        dup.append("x-trace-info", h["x-trace-info"].clone());
        assert!(verify(&dup, &keys).is_none());

        let mut long = h.clone();
        long.insert(
            "x-trace-info",
            HeaderValue::try_from("A".repeat(MAX_TRACE_INFO_LEN + 1)).unwrap(),
        );
        assert!(verify(&long, &keys).is_none());

        let mut non_ascii = h.clone();
        non_ascii.insert(
            "x-trace-hmac",
            HeaderValue::from_bytes(b"\xe9t\xe9").unwrap(),
        );
        assert!(verify(&non_ascii, &keys).is_none());

        let mut missing = h.clone();
        missing.remove("x-trace-hmac");
        assert!(verify(&missing, &keys).is_none());
        assert!(verify(&h, &HmacKeys::parse("K2")).is_none());
    }
}
