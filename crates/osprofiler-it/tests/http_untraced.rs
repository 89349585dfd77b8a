//! What the server layer does with requests it must not trace, on a real axum
//! server: unsigned, forged, wrongly keyed, oversized and malformed trace
//! headers give the same bytes as the same request to the same application
//! without the layer, and no events; key rotation and disabling take effect
//! on the next request, with no restart.
//!
//! One test, in phases: the notifier and the switches are process-wide.

mod http_support;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE;
use http_support::*;
use osprofiler::integrations::tower::HttpServerLayer;
use osprofiler::notifier::{self, MemorySink};
use osprofiler::propagation::MAX_TRACE_INFO_LEN;
use osprofiler::{HmacKey, HmacKeys, Id, TraceHeaders, switches};
use osprofiler_testkit::need;

/// Header lines: (name, raw value bytes).
type Headers = Vec<(&'static str, Vec<u8>)>;

fn sign(key: &str, info: &str) -> String {
    HmacKey::new(key).unwrap().sign_hex(info.as_bytes())
}

fn head_with(path: &str, headers: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut head = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1").into_bytes();
    for (name, value) in headers {
        head.extend_from_slice(b"\r\n");
        head.extend_from_slice(name.as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value);
    }
    head
}

fn pair(h: &TraceHeaders) -> Headers {
    vec![
        ("X-Trace-Info", h.info.clone().into_bytes()),
        ("X-Trace-HMAC", h.hmac.clone().into_bytes()),
    ]
}

/// A signed pair for a new trace, and its base id.
fn signed(key: &str) -> (Id, Headers) {
    let base = Id::new_v4();
    let h = TraceHeaders::sign(base, base, &HmacKey::new(key).unwrap());
    (base, pair(&h))
}

/// Info text signed with the right key, whatever it holds.
fn signed_text(info: &str) -> Headers {
    vec![
        ("X-Trace-Info", info.as_bytes().to_vec()),
        ("X-Trace-HMAC", sign(KEY, info).into_bytes()),
    ]
}

#[test]
fn untraced_requests_are_served_as_without_the_layer() {
    let sink = MemorySink::new();
    let _notifier = notifier::set_sink(sink.clone());
    switches::enable(HmacKeys::parse(KEY));

    let rt = runtime();
    let Some(bare) = need("axum server on loopback", serve(&rt, app())) else {
        return;
    };
    let Some(layered) = need(
        "axum server on loopback",
        serve(&rt, app().layer(HttpServerLayer::new())),
    ) else {
        return;
    };

    let base = Id::new_v4();
    let good = TraceHeaders::sign(base, base, &HmacKey::new(KEY).unwrap());
    let json = |s: &str| URL_SAFE.encode(s.as_bytes());
    let ids = format!(r#""base_id": "{base}", "parent_id": "{base}""#);
    let mut tampered = good.info.clone().into_bytes();
    tampered[10] ^= 1;

    let cases: Vec<(&str, Headers)> = vec![
        ("no headers", vec![]),
        (
            "info only",
            vec![("X-Trace-Info", good.info.clone().into_bytes())],
        ),
        (
            "hmac only",
            vec![("X-Trace-HMAC", good.hmac.clone().into_bytes())],
        ),
        ("wrong key", signed("OTHER_KEY").1),
        (
            "forged (info changed after signing)",
            vec![
                ("X-Trace-Info", tampered),
                ("X-Trace-HMAC", good.hmac.clone().into_bytes()),
            ],
        ),
        (
            "uppercase hmac",
            vec![
                ("X-Trace-Info", good.info.clone().into_bytes()),
                ("X-Trace-HMAC", good.hmac.to_ascii_uppercase().into_bytes()),
            ],
        ),
        (
            "oversized, signed",
            signed_text(&"A".repeat(MAX_TRACE_INFO_LEN + 4)),
        ),
        ("not base64, signed", signed_text("not base64 at all!")),
        ("not JSON, signed", signed_text(&json("{base_id"))),
        ("a JSON list, signed", signed_text(&json(r#"["a", "b"]"#))),
        (
            "an extra key, signed",
            signed_text(&json(&format!(r#"{{{ids}, "hmac_key": "{KEY}"}}"#))),
        ),
        (
            "no base_id, signed",
            signed_text(&json(&format!(r#"{{"parent_id": "{base}"}}"#))),
        ),
        (
            "ids not UUIDs, signed",
            signed_text(&json(r#"{"base_id": "1", "parent_id": "2"}"#)),
        ),
        (
            "non-ASCII hmac",
            vec![
                ("X-Trace-Info", good.info.clone().into_bytes()),
                ("X-Trace-HMAC", b"\xe9\xe9".to_vec()),
            ],
        ),
        ("duplicate info", {
            let mut p = pair(&good);
            p.push(("X-Trace-Info", good.info.clone().into_bytes()));
            p
        }),
        ("duplicate hmac", {
            let mut p = pair(&good);
            p.push(("x-trace-hmac", good.hmac.clone().into_bytes()));
            p
        }),
        // Hostile and malformed (issue 9): each served as without the layer.
        (
            "info a byte over the limit, signed",
            signed_text(&"A".repeat(MAX_TRACE_INFO_LEN + 1)),
        ),
        (
            "64 KiB of info, signed",
            signed_text(&"A".repeat(64 * 1024)),
        ),
        ("info 100 times", {
            let mut p = vec![("X-Trace-HMAC", good.hmac.clone().into_bytes())];
            for _ in 0..100 {
                p.push(("X-Trace-Info", good.info.clone().into_bytes()));
            }
            p
        }),
        (
            "non-UTF-8 byte in the info",
            vec![
                ("X-Trace-Info", {
                    let mut v = good.info.clone().into_bytes();
                    v[7] = 0xe9;
                    v
                }),
                ("X-Trace-HMAC", good.hmac.clone().into_bytes()),
            ],
        ),
        (
            "a NUL byte in the hmac",
            vec![
                ("X-Trace-Info", good.info.clone().into_bytes()),
                ("X-Trace-HMAC", b"\0".to_vec()),
            ],
        ),
        (
            "info without its padding",
            vec![
                (
                    "X-Trace-Info",
                    good.info.trim_end_matches('=').as_bytes().to_vec(),
                ),
                ("X-Trace-HMAC", good.hmac.clone().into_bytes()),
            ],
        ),
        (
            "info with more padding",
            vec![
                ("X-Trace-Info", format!("{}=", good.info).into_bytes()),
                ("X-Trace-HMAC", good.hmac.clone().into_bytes()),
            ],
        ),
        (
            "truncated hmac",
            vec![
                ("X-Trace-Info", good.info.clone().into_bytes()),
                ("X-Trace-HMAC", good.hmac.as_bytes()[..39].to_vec()),
            ],
        ),
        ("replayed with another parent", {
            let other = TraceHeaders::sign(base, Id::new_v4(), &HmacKey::new(KEY).unwrap());
            vec![
                ("X-Trace-Info", other.info.into_bytes()),
                ("X-Trace-HMAC", good.hmac.clone().into_bytes()),
            ]
        }),
        (
            "lower-case names, upper-case values",
            vec![
                ("x-trace-info", good.info.to_ascii_uppercase().into_bytes()),
                ("x-trace-hmac", good.hmac.to_ascii_uppercase().into_bytes()),
            ],
        ),
    ];
    for path in ["/v1/servers?limit=1", "/v1/fail", "/nowhere"] {
        for (what, headers) in &cases {
            let head = head_with(path, headers);
            let expected = without_date(&raw_request(bare, &head));
            let got = without_date(&raw_request(layered, &head));
            assert_eq!(got, expected, "{what}, {path}");
            assert!(expected.starts_with("HTTP/1.1 "), "{expected}");
        }
    }
    notifier::flush().unwrap();
    assert!(sink.events().is_empty(), "{:#?}", sink.events());

    // The well-formed pair is traced, under the right parent.
    let traced = |key: &str| -> bool {
        let (base, headers) = signed(key);
        let raw = raw_request(layered, &head_with("/v1/servers", &headers));
        assert!(String::from_utf8_lossy(&raw).ends_with("4 servers"));
        // The layer stops the point before the response is sent: one flush
        // shows all there is.
        notifier::flush().unwrap();
        let events = sink.trace(base);
        if events.is_empty() {
            return false;
        }
        let (wsgi, _) = point(&events, "wsgi");
        assert_eq!(wsgi.parent_id, base);
        assert_eq!(point(&events, "db").0.parent_id, wsgi.trace_id);
        true
    };
    assert!(traced(KEY));
    // Header names in any case are the same headers (values are not: see the cases above).
    for (info_name, hmac_name) in [
        ("X-TRACE-INFO", "x-trace-hmac"),
        ("x-TrAcE-iNfO", "X-TRACE-HMAC"),
    ] {
        let base = Id::new_v4();
        let h = TraceHeaders::sign(base, base, &HmacKey::new(KEY).unwrap());
        let raw = raw_request(
            layered,
            &head_with(
                "/v1/servers",
                &[
                    (info_name, h.info.into_bytes()),
                    (hmac_name, h.hmac.into_bytes()),
                ],
            ),
        );
        assert!(String::from_utf8_lossy(&raw).ends_with("4 servers"));
        notifier::flush().unwrap();
        assert!(
            !sink.trace(base).is_empty(),
            "{info_name}/{hmac_name}: not traced"
        );
    }

    // Key rotation at run time: the next request is checked against the new keys.
    switches::set_hmac_keys(HmacKeys::parse("NEW_KEY"));
    assert!(!traced(KEY));
    assert!(traced("NEW_KEY"));
    switches::set_hmac_keys(HmacKeys::parse("NEW_KEY, SECRET_KEY"));
    assert!(traced(KEY));
    assert!(traced("NEW_KEY"));

    // Disabled: signed requests are served untraced; enabled again, traced.
    switches::disable();
    assert!(!traced("NEW_KEY"));
    let (_, headers) = signed("NEW_KEY");
    let head = head_with("/v1/servers", &headers);
    assert_eq!(
        without_date(&raw_request(layered, &head)),
        without_date(&raw_request(bare, &head))
    );
    switches::enable(HmacKeys::parse("NEW_KEY"));
    assert!(traced("NEW_KEY"));
    assert!(!traced(KEY));
    drop(rt);
}
