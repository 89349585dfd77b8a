//! The `X-Trace-Info` / `X-Trace-HMAC` pair: `signed_unpack`, `verify_trace_headers`,
//! `accept` and the `http::HeaderMap` extractor.
//!
//! Input: text lines `info`, `hmac`, then zero or more keys (the fixed key when none);
//! the same bytes also drive a generator of pairs signed under known keys.
//!
//! Properties: nothing panics; whatever is accepted carries the right HMAC under the key
//! reported, re-encodes (`TraceHeaders::sign`, `signed_pack`) to a pair that verifies, and
//! to the very same text when the input was canonical; a pair signed with key A is never
//! accepted under a key B that is not A; tampered pairs are refused; the HTTP extractor
//! agrees with the decoder on values it is given whole.

use std::sync::Once;

use arbitrary::Unstructured;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE;
use http::{HeaderMap, HeaderValue};
use osprofiler::propagation::{self, TraceHeaders, signed_pack, signed_unpack};
use osprofiler::{HmacKey, HmacKeys, Id, IncomingTrace};
use serde_json::{Map, Value, json};

use crate::{FIXED_KEY, hmac_equivalent};

/// Enables tracing with the fixed key, once per process, for `accept` and `extract`.
pub(crate) fn enable_switches() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| osprofiler::switches::enable(HmacKeys::parse(FIXED_KEY)));
}

/// Runs the properties on one input.
pub fn check(data: &[u8]) {
    enable_switches();
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let info = lines.next().unwrap_or_default();
    let hmac = lines.next().unwrap_or_default();
    let keys: Vec<&str> = lines.collect();
    if keys.is_empty() {
        pair(info, hmac, &[FIXED_KEY]);
    } else {
        pair(info, hmac, &keys);
        pair(info, hmac, &[FIXED_KEY]);
    }
    accept_agrees(info, hmac);
    signed(&mut Unstructured::new(data));
}

/// `accept` is `verify_trace_headers` under the switches' keys (the fixed one).
fn accept_agrees(info: &str, hmac: &str) {
    let accepted = propagation::accept(Some(info), Some(hmac));
    let verified = propagation::verify_trace_headers(info, hmac, &HmacKeys::parse(FIXED_KEY));
    assert_eq!(ids(&accepted), ids(&verified), "accept and verify disagree");
    assert!(propagation::accept(None, Some(hmac)).is_none());
    assert!(propagation::accept(Some(info), None).is_none());
}

fn ids(t: &Option<IncomingTrace>) -> Option<(Id, Option<Id>)> {
    t.as_ref().map(|t| (t.base_id, t.parent_id))
}

/// The properties of one (info, hmac) pair under the keys `key_texts` (empty ones are no
/// keys, as in `HmacKeys`).
fn pair(info: &str, hmac: &str, key_texts: &[&str]) {
    let keyed: Vec<(&str, HmacKey)> = key_texts
        .iter()
        .filter_map(|t| HmacKey::new(t).map(|k| (*t, k)))
        .collect();
    let keys = HmacKeys::from(keyed.iter().map(|(_, k)| k.clone()).collect::<Vec<_>>());
    let unpacked = signed_unpack(info, hmac, &keys);
    let verified = propagation::verify_trace_headers(info, hmac, &keys);
    http_agrees(info, hmac, &keys, &verified);
    let Some(u) = unpacked else {
        assert!(verified.is_none(), "verified what signed_unpack refused");
        return;
    };

    // The HMAC is right under the key reported, and no earlier key gave it.
    let (key_text, key) = &keyed[u.key_index];
    assert!(
        u.key.same_as(key),
        "the key reported is not the one at key_index"
    );
    assert_eq!(
        key.sign_hex(info.as_bytes()),
        hmac.trim(),
        "accepted a wrong HMAC"
    );
    for (_, earlier) in &keyed[..u.key_index] {
        assert_ne!(
            earlier.sign_hex(info.as_bytes()),
            hmac.trim(),
            "an earlier key matched"
        );
    }
    // The decoded text, and whether the info was written as osprofiler writes it.
    let normalized: String = info.replace('+', "-").replace('/', "_");
    let raw = URL_SAFE
        .decode(normalized.as_bytes())
        .expect("accepted info is base64");
    let raw = String::from_utf8_lossy(&raw);
    let urlsafe = !info.contains(['+', '/']);

    // signed_pack of the decoded object: a pair that verifies to the same object, the same
    // text when the input was Python's JSON of it.
    let p = signed_pack(&u.data, Some(&u.key)).expect("a decoded object packs");
    let p_hmac = p.hmac.clone().expect("signed with a key");
    if p.info.len() <= propagation::MAX_TRACE_INFO_LEN {
        let again = signed_unpack(&p.info, &p_hmac, &keys).expect("a re-signed pair verifies");
        assert_eq!(
            json_text(&again.data),
            json_text(&u.data),
            "round trip changed the data"
        );
    }
    let python = osprofiler::json::to_python_json(&u.data).expect("JSON");
    if urlsafe && raw == python {
        assert_eq!(p.info, info, "canonical info re-encodes differently");
        assert_eq!(p_hmac, hmac.trim());
    }

    // Under another key, never.
    for other in [
        format!("{key_text}x"),
        format!("x{key_text}"),
        FIXED_KEY.into(),
    ] {
        if !hmac_equivalent(other.as_bytes(), key_text.as_bytes()) {
            assert!(
                signed_unpack(info, hmac, &one_key(&other)).is_none(),
                "a pair signed with one key is accepted under another"
            );
        }
    }

    let Some(t) = verified else {
        // Refused by verify: not exactly {base_id[, parent_id]} of UUIDs.
        let only_ids = u.data.len() <= 2
            && u.data.contains_key("base_id")
            && u.data.iter().all(|(k, v)| {
                matches!(k.as_str(), "base_id" | "parent_id")
                    && v.as_str().is_some_and(|s| s.parse::<Id>().is_ok())
            });
        assert!(!only_ids, "verify refused a pair holding just the ids");
        return;
    };
    assert!(t.key.same_as(&u.key));
    assert_eq!(
        u.data.get("base_id").and_then(Value::as_str),
        Some(t.base_id.to_string().as_str())
    );
    assert_eq!(
        u.data.get("parent_id").and_then(Value::as_str),
        t.parent_id.map(|p| p.to_string()).as_deref()
    );
    assert!(u.data.keys().all(|k| k == "base_id" || k == "parent_id"));
    // TraceHeaders::sign re-encodes it; byte for byte when the input was its own form.
    if let Some(parent) = t.parent_id {
        let h = TraceHeaders::sign(t.base_id, parent, &t.key);
        let back = propagation::verify_trace_headers(&h.info, &h.hmac, &keys)
            .expect("TraceHeaders::sign output verifies");
        assert_eq!((back.base_id, back.parent_id), (t.base_id, t.parent_id));
        let own = format!(r#"{{"base_id": "{}", "parent_id": "{parent}"}}"#, t.base_id);
        if urlsafe && raw == own {
            assert_eq!(h.info, info, "canonical info re-encodes differently");
            assert_eq!(h.hmac, hmac.trim());
        }
    }
}

/// The `http::HeaderMap` extractor: never accepts what the decoder refuses, and takes what
/// it accepts whenever the values are visible ASCII of sane length.
fn http_agrees(info: &str, hmac: &str, keys: &HmacKeys, verified: &Option<IncomingTrace>) {
    let (Ok(i), Ok(h)) = (HeaderValue::from_str(info), HeaderValue::from_str(hmac)) else {
        return;
    };
    let mut headers = HeaderMap::new();
    headers.insert("x-trace-info", i);
    headers.insert("x-trace-hmac", h);
    let via_http = osprofiler::integrations::http::verify(&headers, keys);
    if via_http.is_some() {
        assert_eq!(
            ids(&via_http),
            ids(verified),
            "the HTTP extractor disagrees"
        );
    }
    let visible = |s: &str| s.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b));
    if info.len() <= propagation::MAX_TRACE_INFO_LEN
        && hmac.len() <= 64
        && visible(info)
        && visible(hmac)
    {
        assert_eq!(
            ids(&via_http),
            ids(verified),
            "the HTTP extractor disagrees"
        );
    }
}

fn json_text(m: &Map<String, Value>) -> String {
    serde_json::to_string(m).unwrap_or_default()
}

/// A key from the input: the fixed one, a variant of it, or any text.
fn key(u: &mut Unstructured<'_>) -> String {
    match u.int_in_range(0..=4).unwrap_or(0) {
        0 => FIXED_KEY.into(),
        1 => format!("{FIXED_KEY}\0"),
        2 => "k".repeat(u.int_in_range(60..=70).unwrap_or(64)),
        _ => u.arbitrary::<String>().unwrap_or_default(),
    }
}

/// Pairs signed under generated keys, then tampered with.
fn signed(u: &mut Unstructured<'_>) {
    let (a_text, b_text) = (key(u), key(u));
    let (Some(a), Some(b)) = (HmacKey::new(&a_text), HmacKey::new(&b_text)) else {
        return;
    };
    let same = hmac_equivalent(a_text.as_bytes(), b_text.as_bytes());
    let base = Id(u.arbitrary().unwrap_or(1));
    let parent = Id(u.arbitrary().unwrap_or(2));
    let h = TraceHeaders::sign(base, parent, &a);
    let only_a = HmacKeys::from(vec![a.clone()]);
    let t = propagation::verify_trace_headers(&h.info, &h.hmac, &only_a)
        .expect("a signed pair verifies under its key");
    assert_eq!((t.base_id, t.parent_id), (base, Some(parent)));
    let b_then_a = HmacKeys::from(vec![b.clone(), a.clone()]);
    let t = propagation::verify_trace_headers(&h.info, &h.hmac, &b_then_a)
        .expect("a signed pair verifies under a list holding its key");
    assert!(t.key.same_as(if same { &b } else { &a }));
    if !same {
        let only_b = HmacKeys::from(vec![b.clone()]);
        assert!(
            propagation::verify_trace_headers(&h.info, &h.hmac, &only_b).is_none(),
            "a pair signed with one key is accepted under another"
        );
    }
    // signed_pack writes the same pair.
    let data = json!({"base_id": base.to_string(), "parent_id": parent.to_string()});
    let p = signed_pack(&data, Some(&a)).expect("packs");
    assert_eq!(
        (p.info.as_str(), p.hmac.as_deref()),
        (h.info.as_str(), Some(h.hmac.as_str()))
    );

    // Tampered pairs: refused; surrounding whitespace on the HMAC is stripped, as in Python.
    let key_texts = [a_text.as_str()];
    pair(&h.info, &format!(" {}\t", h.hmac), &key_texts);
    assert!(
        propagation::verify_trace_headers(&h.info, &format!(" {} ", h.hmac), &only_a).is_some()
    );
    let mut tampered: Vec<(String, String)> = vec![
        (h.info.clone(), h.hmac.to_ascii_uppercase()),
        (h.info.clone(), h.hmac[..39].to_owned()),
        (h.info.clone(), format!("{}0", h.hmac)),
        (format!("{}=", h.info), h.hmac.clone()),
        (h.info[1..].to_owned(), h.hmac.clone()),
        (h.info.replace('-', "+").replace('_', "/"), h.hmac.clone()),
        // Replayed with another parent.
        (
            TraceHeaders::sign(base, Id(parent.0 ^ 1), &a).info,
            h.hmac.clone(),
        ),
    ];
    let at = u.int_in_range(0..=h.info.len() - 1).unwrap_or(0);
    let c = u.arbitrary::<char>().unwrap_or('A');
    let mut info = h.info.clone();
    info.replace_range(at..at + 1, c.encode_utf8(&mut [0; 4]));
    tampered.push((info, h.hmac.clone()));
    let nib = u.int_in_range(0..=39).unwrap_or(0);
    let mut hmac = h.hmac.clone().into_bytes();
    hmac[nib] = if hmac[nib] == b'0' { b'1' } else { b'0' };
    tampered.push((h.info.clone(), String::from_utf8(hmac).unwrap_or_default()));
    for (info, hmac) in &tampered {
        pair(info, hmac, &key_texts);
        if (info.as_str(), hmac.as_str()) != (h.info.as_str(), h.hmac.as_str()) {
            assert!(
                signed_unpack(info, hmac, &only_a).is_none(),
                "a tampered pair is accepted: {info:?} {hmac:?}"
            );
        }
    }

    // Any object: signed_pack and signed_unpack round-trip it; verify takes it only when it
    // holds just the ids.
    let mut map = Map::new();
    for _ in 0..u.int_in_range(0..=3).unwrap_or(0) {
        let k = crate::pick_or_any(u, &["base_id", "parent_id", "hmac_key", ""]);
        let v = match u.int_in_range(0..=3).unwrap_or(0) {
            0 => Value::String(Id(u.arbitrary().unwrap_or(3)).to_string()),
            1 => Value::String(u.arbitrary().unwrap_or_default()),
            2 => json!(u.arbitrary::<i64>().unwrap_or(0)),
            _ => Value::Null,
        };
        map.insert(k, v);
    }
    let p = signed_pack(&map, Some(&a)).expect("packs");
    let p_hmac = p.hmac.clone().unwrap_or_default();
    pair(&p.info, &p_hmac, &key_texts);
    let got = signed_unpack(&p.info, &p_hmac, &only_a);
    if p.info.len() <= propagation::MAX_TRACE_INFO_LEN {
        let got = got.expect("a packed object unpacks");
        assert_eq!(
            json_text(&got.data),
            json_text(&map),
            "round trip changed the object"
        );
    } else {
        assert!(got.is_none(), "an oversized info is decoded");
    }
}

/// The key `text` as it is (not split on commas, not trimmed), as a list.
fn one_key(text: &str) -> HmacKeys {
    HmacKeys::from(HmacKey::new(text).into_iter().collect::<Vec<_>>())
}
