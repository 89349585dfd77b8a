//! Carrying a trace to another service: osprofiler's signed `X-Trace-Info` /
//! `X-Trace-HMAC` pair, and W3C `traceparent` for OpenTelemetry tools.
//!
//! `X-Trace-Info` is the URL-safe base64 (with `=` padding) of the Python
//! `json.dumps` text of `{"base_id": …, "parent_id": …}`; `X-Trace-HMAC` is the
//! lowercase hex HMAC-SHA1 of that base64 text. A receiver tries each of its
//! keys in order, in constant time; anything wrong means "not traced".

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::id::Id;
use crate::keys::{HmacKey, HmacKeys};

/// Header carrying the signed trace info.
pub const X_TRACE_INFO: &str = "X-Trace-Info";
/// Header carrying the HMAC of [`X_TRACE_INFO`].
pub const X_TRACE_HMAC: &str = "X-Trace-HMAC";
/// W3C trace context header.
pub const TRACEPARENT: &str = "traceparent";

/// Longest `X-Trace-Info` value decoded. osprofiler's is 124 bytes; anything
/// much longer is not ours and is ignored without decoding.
pub const MAX_TRACE_INFO_LEN: usize = 1024;

/// The output of [`signed_pack`]: the two header values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedPack {
    /// The `X-Trace-Info` value.
    pub info: String,
    /// The `X-Trace-HMAC` value; `None` without a key (osprofiler then sends
    /// no signature, and no receiver will trust the info).
    pub hmac: Option<String>,
}

/// osprofiler's `signed_pack(data, hmac_key)`, byte for byte: base64 of the
/// Python JSON text of `data` (keys in `data`'s order), HMAC-SHA1 hex of that.
///
/// ```
/// use osprofiler::propagation::signed_pack;
/// let data = serde_json::json!({"base_id": "11111111-1111-4111-8111-111111111111",
///                               "parent_id": "22222222-2222-4222-8222-222222222222"});
/// let key = osprofiler::HmacKey::new("SECRET_KEY");
/// let pack = signed_pack(&data, key.as_ref()).unwrap();
/// assert_eq!(pack.hmac.as_deref(), Some("d5c8c499158d92608f09da737823d4272b920cd4"));
/// ```
pub fn signed_pack<T: Serialize + ?Sized>(
    data: &T,
    key: Option<&HmacKey>,
) -> Result<SignedPack, serde_json::Error> {
    let json = crate::json::to_python_json(data)?;
    let info = URL_SAFE.encode(json.as_bytes());
    let hmac = key.map(|k| k.sign_hex(info.as_bytes()));
    Ok(SignedPack { info, hmac })
}

/// The result of [`signed_unpack`]: the decoded object and which key matched.
#[derive(Debug, Clone)]
pub struct Unpacked {
    /// The decoded JSON object (without osprofiler's added `hmac_key`).
    pub data: Map<String, Value>,
    /// Position of the matching key in the list given.
    pub key_index: usize,
    /// The matching key, to sign onward calls of this trace with.
    pub key: HmacKey,
}

/// osprofiler's `signed_unpack(data, hmac_data, hmac_keys)`: `None` unless
/// `hmac` is the HMAC of `info` under one of `keys` (tried in order, compared
/// in constant time) and `info` decodes to a JSON object.
pub fn signed_unpack(info: &str, hmac: &str, keys: &HmacKeys) -> Option<Unpacked> {
    if info.is_empty() || info.len() > MAX_TRACE_INFO_LEN || keys.is_empty() {
        return None;
    }
    // Python strips the HMAC and compares hex text: only lowercase hex of the
    // right length can match.
    let tag = decode_hex20(hmac.trim())?;
    let (key_index, key) = keys
        .iter()
        .enumerate()
        .find(|(_, k)| k.verify(info.as_bytes(), &tag))?;
    // Python's urlsafe_b64decode also takes the standard alphabet's + and /.
    let normalized: Vec<u8> = info
        .bytes()
        .map(|b| match b {
            b'+' => b'-',
            b'/' => b'_',
            other => other,
        })
        .collect();
    let raw = URL_SAFE.decode(normalized).ok()?;
    let data: Map<String, Value> = serde_json::from_slice(&raw).ok()?;
    Some(Unpacked {
        data,
        key_index,
        key: key.clone(),
    })
}

fn decode_hex20(s: &str) -> Option<[u8; 20]> {
    let b = s.as_bytes();
    if b.len() != 40 {
        return None;
    }
    let nib = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; 20];
    for (i, pair) in b.chunks_exact(2).enumerate() {
        out[i] = (nib(pair[0])? << 4) | nib(pair[1])?;
    }
    Some(out)
}

/// A verified incoming trace: where to continue it, and the key that signed it.
#[derive(Debug, Clone)]
pub struct IncomingTrace {
    /// The trace to continue.
    pub base_id: Id,
    /// The caller's current point, parent of the points we record (the base
    /// id when the caller sent none).
    pub parent_id: Option<Id>,
    /// The key that signed it; onward calls are signed with it too.
    pub key: HmacKey,
}

/// Verifies an `X-Trace-Info` / `X-Trace-HMAC` pair as osprofiler's WSGI
/// middleware does: signed by one of `keys`, holding `base_id`, optionally
/// `parent_id`, and nothing else. Ids must be UUIDs. Anything else: `None`.
pub fn verify_trace_headers(info: &str, hmac: &str, keys: &HmacKeys) -> Option<IncomingTrace> {
    let u = signed_unpack(info, hmac, keys)?;
    let mut base_id = None;
    let mut parent_id = None;
    for (k, v) in &u.data {
        let id: Id = v.as_str()?.parse().ok()?;
        match k.as_str() {
            "base_id" => base_id = Some(id),
            "parent_id" => parent_id = Some(id),
            // osprofiler rejects any other key (hmac_key included: it is added
            // by the receiver, never sent).
            _ => return None,
        }
    }
    Some(IncomingTrace {
        base_id: base_id?,
        parent_id,
        key: u.key,
    })
}

/// The two header values that continue a trace in another service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceHeaders {
    /// Value of `X-Trace-Info`.
    pub info: String,
    /// Value of `X-Trace-HMAC`.
    pub hmac: String,
}

impl TraceHeaders {
    /// Signs `{"base_id", "parent_id"}` with `key`.
    pub fn sign(base_id: Id, parent_id: Id, key: &HmacKey) -> TraceHeaders {
        let json = format!(r#"{{"base_id": "{base_id}", "parent_id": "{parent_id}"}}"#);
        let info = URL_SAFE.encode(json.as_bytes());
        let hmac = key.sign_hex(info.as_bytes());
        TraceHeaders { info, hmac }
    }

    /// The pairs (header name, value), in the order osprofiler sends them.
    pub fn pairs(&self) -> [(&'static str, &str); 2] {
        [(X_TRACE_INFO, &self.info), (X_TRACE_HMAC, &self.hmac)]
    }
}

/// A decoded W3C `traceparent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    /// The 128-bit trace id (our base id).
    pub trace_id: u128,
    /// The 64-bit parent span id (the low half of our point id).
    pub parent_id: u64,
    /// The `sampled` flag.
    pub sampled: bool,
}

/// Why a `traceparent` was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TraceParentError {
    /// Wrong length, separators or non-lowercase-hex digits.
    #[error("malformed traceparent")]
    Malformed,
    /// Version `ff`, or extra data on version 00.
    #[error("unsupported traceparent version")]
    Version,
    /// An all-zero trace id or parent id.
    #[error("traceparent has an all-zero id")]
    ZeroId,
}

impl TraceParent {
    /// `00-<trace id>-<parent id>-<flags>`.
    pub fn encode(&self) -> String {
        format!(
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id, self.parent_id, self.sampled as u8
        )
    }

    /// Parses a `traceparent` value per the W3C Trace Context spec. This is
    /// for interoperation only: a `traceparent` never turns tracing on.
    pub fn decode(s: &str) -> Result<TraceParent, TraceParentError> {
        let s = s.trim();
        let b = s.as_bytes();
        if b.len() < 55 {
            return Err(TraceParentError::Malformed);
        }
        let hex = |r: std::ops::Range<usize>| -> Result<u128, TraceParentError> {
            let mut v = 0u128;
            for &c in &b[r] {
                let d = match c {
                    b'0'..=b'9' => c - b'0',
                    b'a'..=b'f' => c - b'a' + 10,
                    _ => return Err(TraceParentError::Malformed),
                };
                v = (v << 4) | d as u128;
            }
            Ok(v)
        };
        if b[2] != b'-' || b[35] != b'-' || b[52] != b'-' {
            return Err(TraceParentError::Malformed);
        }
        let version = hex(0..2)?;
        if version == 0xff {
            return Err(TraceParentError::Version);
        }
        if version == 0 && b.len() != 55 {
            return Err(TraceParentError::Version);
        }
        if b.len() > 55 && b[55] != b'-' {
            return Err(TraceParentError::Malformed);
        }
        let trace_id = hex(3..35)?;
        let parent_id = hex(36..52)? as u64;
        let flags = hex(53..55)?;
        if trace_id == 0 || parent_id == 0 {
            return Err(TraceParentError::ZeroId);
        }
        Ok(TraceParent {
            trace_id,
            parent_id,
            sampled: flags & 1 == 1,
        })
    }
}

/// What a server does with an incoming request's two header values: `Some`
/// when tracing is [enabled](crate::switches::is_enabled) and the pair is
/// signed by one of the [current keys](crate::switches::hmac_keys), so key
/// rotation and on/off take effect on the next request.
pub fn accept(info: Option<&str>, hmac: Option<&str>) -> Option<IncomingTrace> {
    if !crate::switches::is_enabled() {
        return None;
    }
    verify_trace_headers(info?, hmac?, &crate::switches::hmac_keys())
}
