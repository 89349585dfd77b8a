//! Carrying the signed trace context over any string map: a message's
//! headers on a bus (AMQP, NATS, Kafka), a job's metadata in a queue.
//!
//! The producer calls [`inject`] while a point is current; the consumer calls
//! [`extract`] and continues the trace with
//! [`TraceContext::from_incoming`](crate::TraceContext::from_incoming). The
//! values are the HTTP ones, `X-Trace-Info` and `X-Trace-HMAC`, signed the same
//! way and checked against the [current keys](crate::switches::hmac_keys)
//! only when tracing is [enabled](crate::switches::is_enabled). See
//! `examples/message_bus.rs`.
//!
//! ```
//! use std::collections::HashMap;
//! use osprofiler::{carrier, HmacKey, HmacKeys, TraceContext};
//!
//! let producer = TraceContext::new(HmacKey::new("SECRET_KEY"), None, None);
//! let mut headers = HashMap::new();
//! assert!(producer.in_scope(|| carrier::inject(&mut headers)));
//!
//! // A consumer uses `carrier::extract(&headers)`, which checks the switches.
//! let incoming = carrier::verify(&headers, &HmacKeys::parse("SECRET_KEY")).unwrap();
//! assert_eq!(incoming.base_id, producer.base_id());
//! ```
//!
//! ## Python's RPC form (opt-in)
//!
//! Python OpenStack services put `trace_info = {"hmac_key", "base_id",
//! "parent_id"}` into their oslo.messaging request context, the key in
//! clear. [`extract_python_trace_info`] reads it so that a Rust RPC server can
//! continue a trace started by a Python service, but only after
//! [`accept_python_trace_info(true)`](accept_python_trace_info), and only
//! when the key it carries is one of ours.

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::Value;

use crate::context::TraceContext;
use crate::id::Id;
use crate::keys::{HmacKey, HmacKeys};
use crate::propagation::{IncomingTrace, X_TRACE_HMAC, X_TRACE_INFO, verify_trace_headers};

/// A string map that can carry the trace context.
///
/// Implemented for `HashMap<String, String>`, `BTreeMap<String, String>` and
/// `Vec<(String, String)>` (a header list); implement it for your message
/// type's headers.
///
/// ```
/// use osprofiler::carrier::Carrier;
/// struct Headers(Vec<(String, Vec<u8>)>);
/// impl Carrier for Headers {
///     fn get(&self, key: &str) -> Option<&str> {
///         let v = self.0.iter().find(|(k, _)| k == key)?;
///         std::str::from_utf8(&v.1).ok()
///     }
///     fn set(&mut self, key: &str, value: String) {
///         self.0.retain(|(k, _)| k != key);
///         self.0.push((key.to_owned(), value.into_bytes()));
///     }
/// }
/// ```
pub trait Carrier {
    /// The value under `key` (`X-Trace-Info` or `X-Trace-HMAC`). Return `None`
    /// when the carrier holds it more than once: then no value is trusted.
    fn get(&self, key: &str) -> Option<&str>;

    /// Stores `value` under `key`, replacing any earlier value.
    fn set(&mut self, key: &str, value: String);
}

/// Finds `key`, ignoring ASCII case (HTTP-style names, and buses that
/// lowercase them); `None` when it appears more than once.
fn find_unique<'a>(
    mut entries: impl Iterator<Item = (&'a String, &'a String)>,
    key: &str,
) -> Option<&'a str> {
    let mut found = entries
        .by_ref()
        .filter(|(k, _)| k.eq_ignore_ascii_case(key));
    let (_, v) = found.next()?;
    if found.next().is_some() {
        return None;
    }
    Some(v.as_str())
}

impl<S: BuildHasher> Carrier for HashMap<String, String, S> {
    fn get(&self, key: &str) -> Option<&str> {
        find_unique(self.iter(), key)
    }

    fn set(&mut self, key: &str, value: String) {
        self.retain(|k, _| !k.eq_ignore_ascii_case(key));
        self.insert(key.to_owned(), value);
    }
}

impl Carrier for BTreeMap<String, String> {
    fn get(&self, key: &str) -> Option<&str> {
        find_unique(self.iter(), key)
    }

    fn set(&mut self, key: &str, value: String) {
        self.retain(|k, _| !k.eq_ignore_ascii_case(key));
        self.insert(key.to_owned(), value);
    }
}

impl Carrier for Vec<(String, String)> {
    fn get(&self, key: &str) -> Option<&str> {
        find_unique(self.iter().map(|(k, v)| (k, v)), key)
    }

    fn set(&mut self, key: &str, value: String) {
        self.retain(|(k, _)| !k.eq_ignore_ascii_case(key));
        self.push((key.to_owned(), value));
    }
}

/// Puts the signed context of the current point into `carrier`; `false`
/// (and `carrier` untouched) outside a trace or when the trace has no key.
///
/// ```
/// let mut headers = std::collections::HashMap::new();
/// assert!(!osprofiler::carrier::inject(&mut headers));
/// assert!(headers.is_empty());
/// ```
pub fn inject(carrier: &mut impl Carrier) -> bool {
    match crate::context::get() {
        Some(ctx) => inject_context(&ctx, carrier),
        None => false,
    }
}

/// Puts the signed context of `ctx` into `carrier` (for a message sent on
/// behalf of a context that is not current); `false` when it has no key.
///
/// ```
/// use osprofiler::{carrier, HmacKey, TraceContext};
/// let ctx = TraceContext::new(HmacKey::new("SECRET_KEY"), None, None);
/// let mut headers: Vec<(String, String)> = Vec::new();
/// assert!(carrier::inject_context(&ctx, &mut headers));
/// assert_eq!(headers[0].0, "X-Trace-Info");
/// ```
pub fn inject_context(ctx: &TraceContext, carrier: &mut impl Carrier) -> bool {
    let Some(h) = ctx.headers() else {
        return false;
    };
    carrier.set(X_TRACE_INFO, h.info);
    carrier.set(X_TRACE_HMAC, h.hmac);
    true
}

/// The trace a message asks to continue: `Some` only when tracing is
/// [enabled](crate::switches::is_enabled) and the carrier holds one
/// `X-Trace-Info` and one `X-Trace-HMAC` signed by one of the
/// [current keys](crate::switches::hmac_keys). Oversized values are ignored
/// without decoding.
///
/// ```
/// let headers = std::collections::HashMap::<String, String>::new();
/// assert!(osprofiler::carrier::extract(&headers).is_none());
/// ```
pub fn extract(carrier: &impl Carrier) -> Option<IncomingTrace> {
    if !crate::switches::is_enabled() {
        return None;
    }
    verify(carrier, &crate::switches::hmac_keys())
}

/// [`extract`] against `keys` instead of the runtime switches.
///
/// ```
/// use osprofiler::{carrier, HmacKey, HmacKeys, TraceContext};
/// let ctx = TraceContext::new(HmacKey::new("K"), None, None);
/// let mut headers = std::collections::BTreeMap::new();
/// carrier::inject_context(&ctx, &mut headers);
/// assert!(carrier::verify(&headers, &HmacKeys::parse("K")).is_some());
/// assert!(carrier::verify(&headers, &HmacKeys::parse("L")).is_none());
/// ```
pub fn verify(carrier: &impl Carrier, keys: &HmacKeys) -> Option<IncomingTrace> {
    let info = carrier.get(X_TRACE_INFO)?;
    let hmac = carrier.get(X_TRACE_HMAC)?;
    // `verify_trace_headers` refuses an oversized info before decoding it.
    verify_trace_headers(info, hmac, keys)
}

static ACCEPT_PYTHON: AtomicBool = AtomicBool::new(false);

/// Opts in (or out) of reading Python's `trace_info` form with
/// [`extract_python_trace_info`]. Off by default: that form puts the key on
/// the wire in clear, so anyone who can read one message can start traces.
///
/// ```
/// osprofiler::carrier::accept_python_trace_info(false);
/// assert!(!osprofiler::carrier::python_trace_info_accepted());
/// ```
pub fn accept_python_trace_info(on: bool) {
    ACCEPT_PYTHON.store(on, Ordering::Release);
}

/// Whether [`extract_python_trace_info`] is enabled.
///
/// ```
/// let _on = osprofiler::carrier::python_trace_info_accepted();
/// ```
pub fn python_trace_info_accepted() -> bool {
    ACCEPT_PYTHON.load(Ordering::Acquire)
}

/// Reads the trace a Python service put into an oslo.messaging request
/// context: `value` is the context (holding `"trace_info"`) or the
/// `trace_info` object itself, `{"hmac_key", "base_id", "parent_id"}`.
///
/// `Some` only when [opted in](accept_python_trace_info), tracing is
/// [enabled](crate::switches::is_enabled), the object holds a string
/// `hmac_key` and a UUID `base_id`, optionally a UUID `parent_id`, nothing
/// else, and the key is one of the [current keys](crate::switches::hmac_keys)
/// (compared in constant time). Onward calls are signed with our copy of the key.
///
/// ```
/// use osprofiler::{carrier, switches, HmacKeys};
/// let ctx = serde_json::json!({"user": "demo", "trace_info": {
///     "hmac_key": "SECRET_KEY",
///     "base_id": "6c5e3ea9-3a34-4e5a-9c11-4b0e1c3fd5b1",
///     "parent_id": "2d3f1c8e-0e38-4f7b-8a43-9a1c7a0d3f22"}});
/// // Nothing without the opt-in.
/// assert!(carrier::extract_python_trace_info(&ctx).is_none());
/// ```
pub fn extract_python_trace_info(value: &Value) -> Option<IncomingTrace> {
    if !python_trace_info_accepted() || !crate::switches::is_enabled() {
        return None;
    }
    python_trace_info(value, &crate::switches::hmac_keys())
}

fn python_trace_info(value: &Value, keys: &HmacKeys) -> Option<IncomingTrace> {
    let obj = value.as_object()?;
    let info = match obj.get("trace_info") {
        Some(inner) => inner.as_object()?,
        None => obj,
    };
    let mut key = None;
    let mut base_id = None;
    let mut parent_id = None;
    for (k, v) in info {
        let v = v.as_str()?;
        match k.as_str() {
            "hmac_key" => key = Some(v),
            "base_id" => base_id = Some(v.parse::<Id>().ok()?),
            "parent_id" => parent_id = Some(v.parse::<Id>().ok()?),
            // `profiler.init(**trace_info)` fails on anything else.
            _ => return None,
        }
    }
    let ours = matching_key(key?, keys)?;
    Some(IncomingTrace {
        base_id: base_id?,
        parent_id,
        key: ours,
    })
}

/// Which of `keys` is `candidate`, compared in constant time: each key
/// checks `candidate`'s MAC of a fixed message. (HMAC treats a key and the
/// same key followed by zero bytes alike; telling those apart needs the key.)
fn matching_key(candidate: &str, keys: &HmacKeys) -> Option<HmacKey> {
    const PROBE: &[u8] = b"osprofiler: is this one of our hmac keys?";
    let tag = HmacKey::new(candidate)?.sign(PROBE);
    // No early exit: every key is checked, whichever matches.
    let mut found = None;
    for k in keys.iter() {
        if k.verify(PROBE, &tag) && found.is_none() {
            found = Some(k.clone());
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn python_form() {
        let keys = HmacKeys::parse("OTHER,SECRET_KEY");
        let base = "6c5e3ea9-3a34-4e5a-9c11-4b0e1c3fd5b1";
        let parent = "2d3f1c8e-0e38-4f7b-8a43-9a1c7a0d3f22";
        let ti = json!({"hmac_key": "SECRET_KEY", "base_id": base, "parent_id": parent});
        let got = python_trace_info(&json!({"trace_info": ti.clone(), "user": "u"}), &keys)
            .expect("our key");
        assert_eq!(got.base_id.to_string(), base);
        assert_eq!(got.parent_id.unwrap().to_string(), parent);
        assert!(got.key.same_as(keys.get(1).unwrap()));
        assert!(python_trace_info(&ti, &keys).is_some());
        assert!(python_trace_info(&json!({"hmac_key": "NOPE", "base_id": base}), &keys).is_none());
        assert!(python_trace_info(&json!({"hmac_key": "SECRET_KEY"}), &keys).is_none());
        assert!(
            python_trace_info(
                &json!({"hmac_key": "SECRET_KEY", "base_id": base, "x": "1"}),
                &keys
            )
            .is_none()
        );
        assert!(
            python_trace_info(&json!({"hmac_key": "SECRET_KEY", "base_id": "nope"}), &keys)
                .is_none()
        );
        assert!(python_trace_info(&json!({"trace_info": null}), &keys).is_none());
    }

    #[test]
    fn carriers_refuse_duplicates() {
        let ctx = TraceContext::new(HmacKey::new("K"), None, None);
        let keys = HmacKeys::parse("K");
        let mut m: HashMap<String, String> = HashMap::new();
        assert!(inject_context(&ctx, &mut m));
        assert!(verify(&m, &keys).is_some());
        let info = m["X-Trace-Info"].clone();
        m.insert("x-trace-info".into(), info);
        assert!(verify(&m, &keys).is_none());

        let mut v: Vec<(String, String)> = Vec::new();
        inject_context(&ctx, &mut v);
        let lower: Vec<(String, String)> = v
            .iter()
            .map(|(k, x)| (k.to_ascii_lowercase(), x.clone()))
            .collect();
        assert!(verify(&lower, &keys).is_some());
        let mut twice = v.clone();
        twice.push(v[1].clone());
        assert!(verify(&twice, &keys).is_none());
    }
}
