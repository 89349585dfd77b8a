//! The reference values made by the real Python osprofiler 4.4.0
//! (`vectors/`): events and signed headers, both directions.

mod common;

use osprofiler::propagation::{signed_pack, signed_unpack, verify_trace_headers};
use osprofiler::{Event, HmacKey, HmacKeys};
use serde_json::Value;

#[test]
fn events_round_trip_byte_for_byte() {
    let text = common::vector("events.jsonl");
    let mut n = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let event = Event::from_json(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert_eq!(event.to_json(), line);
        n += 1;
    }
    assert_eq!(n, 10);
}

#[test]
fn bad_events_are_errors_not_panics() {
    for bad in [
        "",
        "{}",
        "[1]",
        r#"{"name": "db", "base_id": "11111111-1111-4111-8111-111111111111", "trace_id": "11111111-1111-4111-8111-111111111111", "parent_id": "11111111-1111-4111-8111-111111111111", "timestamp": "2026-11-25T12:00:00.000000"}"#,
        r#"{"name": "db-start", "base_id": "x", "trace_id": "11111111-1111-4111-8111-111111111111", "parent_id": "11111111-1111-4111-8111-111111111111", "timestamp": "2026-11-25T12:00:00.000000"}"#,
        r#"{"name": "db-start", "base_id": "11111111-1111-4111-8111-111111111111", "trace_id": "11111111-1111-4111-8111-111111111111", "parent_id": "11111111-1111-4111-8111-111111111111", "timestamp": "yesterday"}"#,
    ] {
        assert!(Event::from_json(bad).is_err(), "{bad}");
    }
}

fn headers() -> Value {
    serde_json::from_str(&common::vector("headers.json")).unwrap()
}

#[test]
fn signed_pack_matches_python() {
    let v = headers();
    let cases = v["sign"].as_array().unwrap();
    assert_eq!(cases.len(), 4);
    for case in cases {
        let key = HmacKey::new(case["hmac_key"].as_str().unwrap());
        let pack = signed_pack(&case["data"], key.as_ref()).unwrap();
        assert_eq!(pack.info, case["X-Trace-Info"].as_str().unwrap(), "{case}");
        assert_eq!(
            pack.hmac.as_deref(),
            case["X-Trace-HMAC"].as_str(),
            "{case}"
        );
    }
}

#[test]
fn typed_headers_match_python() {
    // The typed path used by the context (no JSON value in between).
    let v = headers();
    for case in v["sign"].as_array().unwrap() {
        let Some(key) = HmacKey::new(case["hmac_key"].as_str().unwrap()) else {
            continue;
        };
        let base = case["data"]["base_id"].as_str().unwrap().parse().unwrap();
        let parent = case["data"]["parent_id"].as_str().unwrap().parse().unwrap();
        let h = osprofiler::TraceHeaders::sign(base, parent, &key);
        assert_eq!(h.info, case["X-Trace-Info"].as_str().unwrap());
        assert_eq!(Some(h.hmac.as_str()), case["X-Trace-HMAC"].as_str());
    }
}

#[test]
fn signed_unpack_matches_python() {
    let v = headers();
    let cases = v["verify"].as_array().unwrap();
    assert_eq!(cases.len(), 7);
    for case in cases {
        let names: Vec<&str> = case["hmac_keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k.as_str().unwrap())
            .collect();
        let keys: HmacKeys = names.iter().collect();
        let got = signed_unpack(
            case["X-Trace-Info"].as_str().unwrap(),
            case["X-Trace-HMAC"].as_str().unwrap(),
            &keys,
        );
        let want = &case["result"];
        match (got, want) {
            (None, Value::Null) => {}
            (Some(u), Value::Object(w)) => {
                let mut expected = w.clone();
                let key_name = expected.remove("hmac_key").unwrap();
                assert_eq!(Value::Object(u.data), Value::Object(expected), "{case}");
                assert_eq!(names[u.key_index], key_name.as_str().unwrap(), "{case}");
                assert!(u.key.same_as(keys.get(u.key_index).unwrap()));
            }
            (got, want) => panic!("case {case}: got {got:?}, want {want}"),
        }
    }
}

#[test]
fn verify_trace_headers_takes_only_base_and_parent() {
    let key = HmacKey::new("SECRET_KEY").unwrap();
    let keys = HmacKeys::from(vec![key.clone()]);
    let sign = |v: Value| signed_pack(&v, Some(&key)).unwrap();
    let base = "11111111-1111-4111-8111-111111111111";
    let ok = sign(serde_json::json!({"base_id": base}));
    let t = verify_trace_headers(&ok.info, ok.hmac.as_deref().unwrap(), &keys).unwrap();
    assert_eq!(t.base_id.to_string(), base);
    assert!(t.parent_id.is_none());
    for bad in [
        serde_json::json!({"parent_id": base}),
        serde_json::json!({"base_id": base, "hmac_key": "SECRET_KEY"}),
        serde_json::json!({"base_id": base, "extra": 1}),
        serde_json::json!({"base_id": 5}),
        serde_json::json!({"base_id": "not-a-uuid"}),
        serde_json::json!([base]),
    ] {
        let p = sign(bad.clone());
        assert!(
            verify_trace_headers(&p.info, p.hmac.as_deref().unwrap(), &keys).is_none(),
            "{bad}"
        );
    }
    // Oversized info is not even checked.
    let huge = "A".repeat(osprofiler::propagation::MAX_TRACE_INFO_LEN + 4);
    let h = key.sign_hex(huge.as_bytes());
    assert!(signed_unpack(&huge, &h, &keys).is_none());
    // Surrounding whitespace in the HMAC is stripped, as Python does.
    assert!(
        verify_trace_headers(
            &ok.info,
            &format!("  {}\n", ok.hmac.as_deref().unwrap()),
            &keys
        )
        .is_some()
    );
}

/// Only a holder of a configured key turns tracing on: every alteration of a pair Python
/// signed is refused, each for its reason, and the pair itself verifies.
#[test]
fn only_key_holders_enable_tracing() {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE;

    let v = headers();
    let case = &v["sign"][0];
    let info = case["X-Trace-Info"].as_str().unwrap().to_owned();
    let hmac = case["X-Trace-HMAC"].as_str().unwrap().to_owned();
    let keys = HmacKeys::parse("OTHER_KEY, SECRET_KEY");
    assert!(verify_trace_headers(&info, &hmac, &keys).is_some());

    let secret = HmacKey::new("SECRET_KEY").unwrap();
    let other = HmacKey::new("NOT_OUR_KEY").unwrap();
    let json = String::from_utf8(URL_SAFE.decode(&info).unwrap()).unwrap();
    let encode = |j: &str| URL_SAFE.encode(j.as_bytes());
    // The same ids, another parent: a captured pair replayed to hang points elsewhere.
    let replayed = encode(&json.replace(
        "22222222-2222-4222-8222-222222222222",
        "33333333-3333-4333-8333-333333333333",
    ));
    assert_ne!(replayed, info);
    let mut flipped = info.clone().into_bytes();
    flipped[20] ^= 0x01;
    let flipped = String::from_utf8(flipped).unwrap();
    // HMAC-SHA1 with an empty key, as a sender with no key configured would compute it.
    let empty_key_tag = {
        use hmac::Mac;
        let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(b"").unwrap();
        mac.update(info.as_bytes());
        mac.finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };

    let cases: Vec<(&str, String, String)> = vec![
        ("forged: 40 zeros", info.clone(), "0".repeat(40)),
        ("forged: one bit of the info changed", flipped, hmac.clone()),
        (
            "forged: one digit of the hmac changed",
            info.clone(),
            format!(
                "{}{}",
                &hmac[..39],
                if hmac.ends_with('0') { '1' } else { '0' }
            ),
        ),
        ("truncated hmac", info.clone(), hmac[..39].to_owned()),
        ("half an hmac", info.clone(), hmac[..20].to_owned()),
        ("empty hmac", info.clone(), String::new()),
        ("hmac with a byte more", info.clone(), format!("{hmac}0")),
        (
            "truncated info",
            info[..info.len() - 4].to_owned(),
            hmac.clone(),
        ),
        (
            "info without its padding",
            info.trim_end_matches('=').to_owned(),
            hmac.clone(),
        ),
        ("info with more padding", format!("{info}="), hmac.clone()),
        ("hmac padded with =", info.clone(), format!("{hmac}=")),
        (
            "hmac as base64 padding",
            info.clone(),
            format!("{}==", &hmac[..38]),
        ),
        // Re-signed by someone without our keys, or with no key at all.
        (
            "re-signed with another key",
            info.clone(),
            other.sign_hex(info.as_bytes()),
        ),
        ("signed with an empty key", info.clone(), empty_key_tag),
        (
            "replayed with another parent (original hmac)",
            replayed.clone(),
            hmac.clone(),
        ),
        (
            "replayed with another parent, re-signed with another key",
            replayed.clone(),
            other.sign_hex(replayed.as_bytes()),
        ),
        // Python compares hex text: another case is another signature.
        ("upper-case hmac", info.clone(), hmac.to_ascii_uppercase()),
        (
            "one upper-case digit",
            info.clone(),
            format!("{}{}", hmac[..1].to_ascii_uppercase(), &hmac[1..]),
        ),
        ("upper-case info", info.to_ascii_uppercase(), hmac.clone()),
        (
            "whitespace inside the hmac",
            info.clone(),
            format!("{} {}", &hmac[..20], &hmac[20..]),
        ),
        (
            "hmac of the JSON, not of the base64",
            info.clone(),
            secret.sign_hex(json.as_bytes()),
        ),
        ("hmac with 0x", info.clone(), format!("0x{}", &hmac[..38])),
        ("swapped", hmac.clone(), info.clone()),
    ];
    for (what, i, h) in &cases {
        assert!(
            verify_trace_headers(i, h, &keys).is_none(),
            "{what}: {i:?} / {h:?} was accepted"
        );
        assert!(signed_unpack(i, h, &keys).is_none(), "{what}");
    }
    // No key configured, or only empty ones: nothing verifies, not even the real pair.
    for none in [
        HmacKeys::parse(""),
        HmacKeys::parse(" , ,"),
        HmacKeys::default(),
    ] {
        assert!(none.is_empty());
        assert!(verify_trace_headers(&info, &hmac, &none).is_none());
    }
    assert!(HmacKey::new("").is_none());
    // The key holder may sign the new parent: then it is taken, with that parent.
    let resigned = secret.sign_hex(replayed.as_bytes());
    let t = verify_trace_headers(&replayed, &resigned, &keys).unwrap();
    assert_eq!(
        t.parent_id.unwrap().to_string(),
        "33333333-3333-4333-8333-333333333333"
    );
    // Stricter than Python, for the key holder only: Python's base64 decoder takes extra
    // `=` (and skips characters outside the alphabet), ours wants the text a sender writes.
    let padded = format!("{info}=");
    assert!(verify_trace_headers(&padded, &secret.sign_hex(padded.as_bytes()), &keys).is_none());
}

/// Timestamps in other forms than osprofiler's: an error or an event, never a panic (the
/// report crate reads them, see osprofiler-report's `parse_timestamp`).
#[test]
fn events_with_odd_timestamps_do_not_panic() {
    let line = common::vector("events.jsonl");
    let first = line.lines().next().unwrap();
    let v: Value = serde_json::from_str(first).unwrap();
    let stamp = v["timestamp"].as_str().unwrap().to_owned();
    for odd in [
        "2026-11-25T12:00:00",
        "2026-11-25T12:00:00.123",
        "2026-11-25T12:00:00.123456789",
        "2026-11-25T12:00:00.123456Z",
        "2026-11-25T12:00:00+02:00",
        "2026-11-25 12:00:00.123456",
        "2026-11-25T12:00:00.",
        "9999-12-31T23:59:59.999999",
        "0000-00-00T00:00:00.000000",
        "２０２６-11-25T12:00:00.000000",
        "",
    ] {
        let text = first.replace(&stamp, odd);
        let _ = Event::from_json(&text);
    }
}
