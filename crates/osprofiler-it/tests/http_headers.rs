//! Hostile trace headers in real `http::HeaderMap`s, through `extract` (the runtime
//! switches' keys) and `verify` (a key list given): oversized, repeated, non-UTF-8 and
//! case-altered headers, ids that are not UUIDs. Anything odd is "not traced", never a
//! panic; header names are case-insensitive (HTTP says so, and Python reads
//! `HTTP_X_TRACE_INFO` whatever the case), values are not.
//!
//! One test: the switches are process-wide.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use osprofiler::integrations::http::{extract, verify};
use osprofiler::propagation::MAX_TRACE_INFO_LEN;
use osprofiler::{HmacKey, HmacKeys, Id, TraceHeaders, switches};

const KEY: &str = "SECRET_KEY";

fn key() -> HmacKey {
    HmacKey::new(KEY).expect("key")
}

/// A map of (name, raw value) pairs, appended in order (so names may repeat).
fn map(pairs: &[(&str, &[u8])]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (name, value) in pairs {
        let name = HeaderName::from_bytes(name.as_bytes()).expect("header name");
        let value = HeaderValue::from_bytes(value).expect("header value");
        h.append(name, value);
    }
    h
}

/// Info text signed with the key, whatever it holds.
fn signed_text(info: &str) -> HeaderMap {
    let hmac = key().sign_hex(info.as_bytes());
    map(&[
        ("x-trace-info", info.as_bytes()),
        ("x-trace-hmac", hmac.as_bytes()),
    ])
}

#[test]
fn hostile_headers_are_not_traced() {
    let keys = HmacKeys::parse(KEY);
    switches::enable(keys.clone());
    let base = Id::new_v4();
    let good = TraceHeaders::sign(base, base, &key());
    let (info, hmac) = (good.info.as_bytes(), good.hmac.as_bytes());
    let traced = |h: &HeaderMap| -> Option<Id> {
        let a = extract(h).map(|t| t.base_id);
        let b = verify(h, &keys).map(|t| t.base_id);
        assert_eq!(a, b, "extract and verify disagree on {h:?}");
        a
    };

    // Names in any case are the same header: traced, as Python does.
    for (i, h) in [
        ("x-trace-info", "x-trace-hmac"),
        ("X-Trace-Info", "X-Trace-HMAC"),
        ("X-TRACE-INFO", "x-TrAcE-hMaC"),
    ]
    .iter()
    .enumerate()
    {
        assert_eq!(
            traced(&map(&[(h.0, info), (h.1, hmac)])),
            Some(base),
            "case {i}"
        );
    }
    // Surrounding whitespace in the HMAC is stripped, as Python does (a tab is a legal
    // header value byte).
    assert_eq!(
        traced(&map(&[
            ("x-trace-info", info),
            ("x-trace-hmac", format!("\t{}\t", good.hmac).as_bytes())
        ])),
        Some(base)
    );

    let ids =
        |b: &str, p: &str| URL_SAFE.encode(format!(r#"{{"base_id": "{b}", "parent_id": "{p}"}}"#));
    let huge_info = "A".repeat(64 * 1024);
    let mut obs_text = good.info.clone().into_bytes();
    obs_text[5] = 0xe9;
    let non_utf8 = [0xffu8, 0xfe, 0x80, 0x81];
    let cases: Vec<(&str, HeaderMap)> = vec![
        ("nothing", HeaderMap::new()),
        ("info only", map(&[("x-trace-info", info)])),
        ("hmac only", map(&[("x-trace-hmac", hmac)])),
        (
            "empty values",
            map(&[("x-trace-info", b""), ("x-trace-hmac", b"")]),
        ),
        (
            "info a byte over the limit, signed",
            signed_text(&"A".repeat(MAX_TRACE_INFO_LEN + 1)),
        ),
        ("64 KiB of info, signed", signed_text(&huge_info)),
        (
            "64 KiB of hmac",
            map(&[
                ("x-trace-info", info),
                ("x-trace-hmac", "0".repeat(64 * 1024).as_bytes()),
            ]),
        ),
        // Past the 64-byte cap on the value, read before anything is decoded (Python would
        // strip any amount of whitespace; no sender writes it).
        (
            "hmac padded with 64 spaces",
            map(&[
                ("x-trace-info", info),
                ("x-trace-hmac", format!("{:<1$}", good.hmac, 104).as_bytes()),
            ]),
        ),
        (
            "info twice",
            map(&[
                ("x-trace-info", info),
                ("x-trace-info", info),
                ("x-trace-hmac", hmac),
            ]),
        ),
        (
            "hmac twice",
            map(&[
                ("x-trace-info", info),
                ("x-trace-hmac", hmac),
                ("X-Trace-HMAC", hmac),
            ]),
        ),
        ("info 100 times", {
            let mut h = map(&[("x-trace-hmac", hmac)]);
            for _ in 0..100 {
                h.append("x-trace-info", HeaderValue::from_bytes(info).unwrap());
            }
            h
        }),
        (
            "a forged pair before the good one",
            map(&[
                ("x-trace-info", b"e30="),
                ("x-trace-hmac", "0".repeat(40).as_bytes()),
                ("x-trace-info", info),
                ("x-trace-hmac", hmac),
            ]),
        ),
        (
            "non-UTF-8 byte in the info",
            map(&[("x-trace-info", &obs_text), ("x-trace-hmac", hmac)]),
        ),
        (
            "non-UTF-8 hmac",
            map(&[("x-trace-info", info), ("x-trace-hmac", &non_utf8)]),
        ),
        (
            "non-UTF-8 info, signed as bytes",
            map(&[
                ("x-trace-info", &non_utf8),
                ("x-trace-hmac", key().sign_hex(&non_utf8).as_bytes()),
            ]),
        ),
        (
            "upper-case hmac",
            map(&[
                ("x-trace-info", info),
                ("x-trace-hmac", good.hmac.to_ascii_uppercase().as_bytes()),
            ]),
        ),
        (
            "upper-case info",
            map(&[
                ("x-trace-info", good.info.to_ascii_uppercase().as_bytes()),
                ("x-trace-hmac", hmac),
            ]),
        ),
        ("wrong key", {
            let h = TraceHeaders::sign(base, base, &HmacKey::new("OTHER").unwrap());
            map(&[
                ("x-trace-info", h.info.as_bytes()),
                ("x-trace-hmac", h.hmac.as_bytes()),
            ])
        }),
        // Signed, but not what a sender writes.
        ("ids not UUIDs, signed", signed_text(&ids("1", "2"))),
        (
            "upper-case UUIDs, signed",
            signed_text(&ids(
                &base.to_string().to_ascii_uppercase(),
                &base.to_string(),
            )),
        ),
        (
            "UUIDs without hyphens, signed",
            signed_text(&ids(&base.simple().to_string(), &base.simple().to_string())),
        ),
        (
            "braced UUIDs, signed",
            signed_text(&ids(&format!("{{{base}}}"), &base.to_string())),
        ),
        (
            "an empty base id, signed",
            signed_text(&ids("", &base.to_string())),
        ),
        (
            "ids as numbers, signed",
            signed_text(&URL_SAFE.encode(r#"{"base_id": 1, "parent_id": 2}"#)),
        ),
        ("a list, signed", signed_text(&URL_SAFE.encode("[1, 2]"))),
        (
            "JSON nested 400 deep, signed",
            signed_text(&URL_SAFE.encode(format!("{}{}", "[".repeat(400), "]".repeat(400)))),
        ),
        ("not base64, signed", signed_text("!!!!")),
        (
            "standard base64 of bad JSON, signed",
            signed_text("e30+/w=="),
        ),
    ];
    for (what, h) in &cases {
        assert_eq!(traced(h), None, "{what} was traced");
    }

    // The same good headers, with tracing off: not traced by `extract`, still verified by
    // `verify` (a service's own key list).
    let h = map(&[("x-trace-info", info), ("x-trace-hmac", hmac)]);
    switches::disable();
    assert!(extract(&h).is_none());
    assert_eq!(verify(&h, &keys).map(|t| t.base_id), Some(base));
    // No key configured: nothing is traced.
    switches::enable(HmacKeys::parse(""));
    assert!(extract(&h).is_none());
    switches::enable(keys);
    assert_eq!(extract(&h).map(|t| t.base_id), Some(base));
}
