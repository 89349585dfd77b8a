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
