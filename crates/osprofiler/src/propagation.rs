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
    let (key_index, key) = signed_by(info, hmac, keys)?;
    let mut buf = [0u8; DECODED_MAX];
    let data: Map<String, Value> = serde_json::from_slice(decode_info(info, &mut buf)?).ok()?;
    Some(Unpacked {
        data,
        key_index,
        key: key.clone(),
    })
}

/// Most bytes an `X-Trace-Info` of [`MAX_TRACE_INFO_LEN`] decodes to.
const DECODED_MAX: usize = MAX_TRACE_INFO_LEN / 4 * 3;

/// Which of `keys` signed `info` with `hmac`, if any.
fn signed_by<'k>(info: &str, hmac: &str, keys: &'k HmacKeys) -> Option<(usize, &'k HmacKey)> {
    if info.is_empty() || info.len() > MAX_TRACE_INFO_LEN || keys.is_empty() {
        return None;
    }
    // Python strips the HMAC and compares hex text: only lowercase hex of the
    // right length can match.
    let tag = crate::digits::decode_hex::<20>(hmac.trim())?;
    keys.iter()
        .enumerate()
        .find(|(_, k)| k.verify(info.as_bytes(), &tag))
}

/// The bytes `info` stands for, decoded into `buf` (no allocation: this runs
/// once per traced request).
fn decode_info<'b>(info: &str, buf: &'b mut [u8; DECODED_MAX]) -> Option<&'b [u8]> {
    // Python's urlsafe_b64decode also takes the standard alphabet's + and /.
    let mut normalized = [0u8; MAX_TRACE_INFO_LEN];
    let text = info.as_bytes();
    let text = if text.iter().any(|&b| b == b'+' || b == b'/') {
        let n = normalized.get_mut(..text.len())?;
        for (d, &b) in n.iter_mut().zip(text) {
            *d = match b {
                b'+' => b'-',
                b'/' => b'_',
                other => other,
            };
        }
        &n[..]
    } else {
        text
    };
    let len = URL_SAFE.decode_slice(text, &mut buf[..]).ok()?;
    buf.get(..len)
}

/// The two ids of the JSON text every osprofiler sender writes,
/// `{"base_id": "<id>", "parent_id": "<id>"}`, read without a JSON parser;
/// `None` for any other text (which then goes through one).
fn canonical_ids(raw: &[u8]) -> Option<(Id, Id)> {
    const HEAD: &[u8] = br#"{"base_id": ""#;
    const MID: &[u8] = br#"", "parent_id": ""#;
    const TAIL: &[u8] = br#""}"#;
    let rest = raw.strip_prefix(HEAD)?;
    let (base, rest) = rest.split_at_checked(36)?;
    let rest = rest.strip_prefix(MID)?;
    let (parent, rest) = rest.split_at_checked(36)?;
    if rest != TAIL {
        return None;
    }
    Some((canonical_id(base)?, canonical_id(parent)?))
}

/// A lowercase hyphenated UUID, as `Id::from_str` reads it, by table: the
/// per-character `match` and `u128` shifts there cost about 700 instructions
/// per id, twice per traced request.
#[inline]
fn canonical_id(b: &[u8]) -> Option<Id> {
    let b: &[u8; 36] = b.try_into().ok()?;
    if b[8] != b'-' || b[13] != b'-' || b[18] != b'-' || b[23] != b'-' {
        return None;
    }
    // Validity is gathered in one OR: any invalid digit sets the high bit.
    let mut bad = 0u8;
    let mut half = |positions: &[usize; 16]| {
        positions.iter().fold(0u64, |v, &p| {
            let d = HEX_DIGIT[b[p] as usize];
            bad |= d;
            (v << 4) | u64::from(d)
        })
    };
    let hi = half(&[0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 14, 15, 16, 17]);
    let lo = half(&[
        19, 20, 21, 22, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35,
    ]);
    (bad & 0x80 == 0).then(|| Id((u128::from(hi) << 64) | u128::from(lo)))
}

/// The value of a lowercase hex digit; 0xff for any other byte.
static HEX_DIGIT: [u8; 256] = {
    let mut t = [0xffu8; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
};

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
    let (_, key) = signed_by(info, hmac, keys)?;
    let mut buf = [0u8; DECODED_MAX];
    let raw = decode_info(info, &mut buf)?;
    if let Some((base_id, parent_id)) = canonical_ids(raw) {
        return Some(IncomingTrace {
            base_id,
            parent_id: Some(parent_id),
            key: key.clone(),
        });
    }
    let data: Map<String, Value> = serde_json::from_slice(raw).ok()?;
    let mut base_id = None;
    let mut parent_id = None;
    for (k, v) in &data {
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
        key: key.clone(),
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

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "11111111-1111-4111-8111-111111111111";
    const PARENT: &str = "22222222-2222-4222-8222-222222222222";

    fn check(json: &str, want: Option<(&str, Option<&str>)>) {
        let key = HmacKey::new("K").unwrap();
        let keys: HmacKeys = ["OTHER", "K"].iter().collect();
        let info = URL_SAFE.encode(json);
        let got = verify_trace_headers(&info, &key.sign_hex(info.as_bytes()), &keys);
        let got = got.map(|t| (t.base_id.to_string(), t.parent_id.map(|p| p.to_string())));
        let want = want.map(|(b, p)| (b.to_owned(), p.map(str::to_owned)));
        assert_eq!(got, want, "{json}");
        // The general path agrees wherever the text is an object.
        if let Some(u) = signed_unpack(&info, &key.sign_hex(info.as_bytes()), &keys) {
            assert_eq!(u.key_index, 1);
        }
    }

    #[test]
    fn the_canonical_text_and_any_other_spelling_read_alike() {
        let canonical = format!(r#"{{"base_id": "{BASE}", "parent_id": "{PARENT}"}}"#);
        assert!(canonical_ids(canonical.as_bytes()).is_some());
        check(&canonical, Some((BASE, Some(PARENT))));
        // Through the JSON parser: other orders, separators, escapes, no parent.
        check(
            &format!(r#"{{"parent_id":"{PARENT}","base_id":"{BASE}"}}"#),
            Some((BASE, Some(PARENT))),
        );
        check(&format!(r#"{{"base_id": "{BASE}"}}"#), Some((BASE, None)));
        let escaped = format!(
            r#"{{"base_id": "\u0031{}", "parent_id": "{PARENT}"}}"#,
            &BASE[1..]
        );
        assert!(canonical_ids(escaped.as_bytes()).is_none());
        check(&escaped, Some((BASE, Some(PARENT))));
        // Refused either way.
        // Another spelling of an id (uppercase hex) names another trace: refused.
        let upper = "AAAAAAAA-1111-4111-8111-111111111111";
        check(
            &format!(r#"{{"base_id": "{upper}", "parent_id": "{PARENT}"}}"#),
            None,
        );
        check(
            &format!(r#"{{"base_id": "{BASE}", "parent_id": "{PARENT}"}} "#),
            Some((BASE, Some(PARENT))),
        );
        check(
            &format!(r#"{{"base_id": "{BASE}", "parent_id": "{PARENT}", "x": "{BASE}"}}"#),
            None,
        );
        check(&format!(r#"{{"parent_id": "{PARENT}"}}"#), None);
        check(
            &format!(r#"{{"base_id": "{BASE}", "parent_id": "{PARENT}"}}x"#),
            None,
        );
        check("[]", None);
    }

    #[test]
    fn the_standard_alphabet_decodes_too() {
        // `?>` encodes to `Pz4=` in both alphabets' shared letters; `>>>` gives `Pj4+`
        // in the standard one and `Pj4-` in the URL-safe one.
        let mut buf = [0u8; DECODED_MAX];
        assert_eq!(decode_info("Pj4+", &mut buf), Some(&b">>>"[..]));
        assert_eq!(decode_info("Pj4-", &mut buf), Some(&b">>>"[..]));
        assert_eq!(decode_info("Pz8/", &mut buf), Some(&b"???"[..]));
        assert_eq!(decode_info("Pz8_", &mut buf), Some(&b"???"[..]));
        assert_eq!(decode_info("!!!!", &mut buf), None);
        let long = "A".repeat(MAX_TRACE_INFO_LEN);
        assert_eq!(
            decode_info(&long, &mut buf).map(<[u8]>::len),
            Some(DECODED_MAX)
        );
    }

    #[test]
    fn the_table_reads_ids_as_from_str_does() {
        let good = "0123abcd-ef45-6789-aaff-00112233cdef";
        assert_eq!(canonical_id(good.as_bytes()), good.parse().ok());
        let id = Id(0xfedc_ba98_7654_3210_0f1e_2d3c_4b5a_6978);
        assert_eq!(canonical_id(id.to_string().as_bytes()), Some(id));
        for bad in [
            "0123ABCD-ef45-6789-aaff-00112233cdef",
            "0123abcd-ef45-6789-aaff-00112233cdeg",
            "0123abcd_ef45-6789-aaff-00112233cdef",
            "0123abcd-ef45-6789-aaff-00112233cde",
            "{123abcd-ef45-6789-aaff-00112233cdef",
            "0123abcd-ef45-6789-aaff-00112233cd\u{e9}",
        ] {
            assert_eq!(canonical_id(bad.as_bytes()), None, "{bad}");
            assert!(bad.parse::<Id>().is_err());
        }
    }
}
