//! The message carrier: `carrier::{extract, verify, inject_context}` over string maps, and
//! Python's RPC `trace_info` (`extract_python_trace_info`).
//!
//! Input: any bytes; when they are JSON, the value goes to the Python reader (and, when an
//! object of strings, to the carriers); the same bytes also drive a generator of carriers
//! (header lists with valid, forged, duplicated and case-altered entries) and of
//! `trace_info` objects.
//!
//! Properties: nothing panics; a carrier is trusted exactly when it holds one `X-Trace-Info`
//! and one `X-Trace-HMAC` (any case) that `verify_trace_headers` accepts; the three carrier
//! types agree; `extract` follows the switches; `inject_context` always leaves a carrier
//! that verifies to its context, whatever it held; the Python form is taken exactly when it
//! holds our key, a UUID `base_id`, optionally a UUID `parent_id`, and nothing else, only
//! when opted in, and the key never shows in `Debug`.

use std::collections::{BTreeMap, HashMap, HashSet};

use arbitrary::Unstructured;
use osprofiler::carrier::{self, Carrier};
use osprofiler::propagation::{X_TRACE_HMAC, X_TRACE_INFO, verify_trace_headers};
use osprofiler::{HmacKey, HmacKeys, Id, IncomingTrace, TraceContext};
use serde_json::{Map, Value, json};

use crate::{FIXED_KEY, hmac_equivalent, pick_or_any};

/// Runs the properties on one input.
pub fn check(data: &[u8]) {
    crate::trace_headers::enable_switches();
    if let Ok(value) = serde_json::from_slice::<Value>(data) {
        python_form(&value);
        if let Some(obj) = value.as_object() {
            let entries: Option<Vec<(String, String)>> = obj
                .iter()
                .map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
                .collect();
            if let Some(entries) = entries {
                carriers(entries);
            }
        }
    }
    let mut u = Unstructured::new(data);
    carriers(entries(&mut u));
    python_form(&trace_info(&mut u));
}

fn ids(t: &Option<IncomingTrace>) -> Option<(Id, Option<Id>)> {
    t.as_ref().map(|t| (t.base_id, t.parent_id))
}

/// The properties of one carrier's entries.
fn carriers(entries: Vec<(String, String)>) {
    let keys = HmacKeys::parse(FIXED_KEY);
    let got = carrier::verify(&entries, &keys);

    // Trusted exactly when there is one of each, and the pair verifies.
    let named = |name: &str| -> Vec<&str> {
        entries
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    };
    let want = match (
        named(X_TRACE_INFO).as_slice(),
        named(X_TRACE_HMAC).as_slice(),
    ) {
        (&[info], &[hmac]) => verify_trace_headers(info, hmac, &keys),
        _ => None,
    };
    assert_eq!(
        ids(&got),
        ids(&want),
        "carrier::verify is not the pair's verdict"
    );
    // The switches are on with the same key.
    assert_eq!(
        ids(&carrier::extract(&entries)),
        ids(&got),
        "extract and verify disagree"
    );

    // The map types agree with the list when no key repeats exactly.
    let distinct: HashSet<&str> = entries.iter().map(|(k, _)| k.as_str()).collect();
    if distinct.len() == entries.len() {
        let hash: HashMap<String, String> = entries.iter().cloned().collect();
        let tree: BTreeMap<String, String> = entries.iter().cloned().collect();
        assert_eq!(
            ids(&carrier::verify(&hash, &keys)),
            ids(&got),
            "HashMap disagrees"
        );
        assert_eq!(
            ids(&carrier::verify(&tree, &keys)),
            ids(&got),
            "BTreeMap disagrees"
        );
    }

    // Injecting replaces whatever was there, in any case.
    let ctx = TraceContext::new(HmacKey::new(FIXED_KEY), None, None);
    let mut list = entries.clone();
    let mut hash: HashMap<String, String> = entries.iter().cloned().collect();
    let mut tree: BTreeMap<String, String> = entries.iter().cloned().collect();
    assert!(carrier::inject_context(&ctx, &mut list));
    assert!(carrier::inject_context(&ctx, &mut hash));
    assert!(carrier::inject_context(&ctx, &mut tree));
    for got in [
        carrier::verify(&list, &keys),
        carrier::verify(&hash, &keys),
        carrier::verify(&tree, &keys),
    ] {
        let got = got.expect("an injected carrier verifies");
        assert_eq!(
            got.base_id,
            ctx.base_id(),
            "injected carrier names another trace"
        );
    }
    assert_eq!(
        Carrier::get(&list, X_TRACE_INFO),
        Carrier::get(&hash, X_TRACE_INFO)
    );
    assert!(carrier::verify(&list, &HmacKeys::parse("another key")).is_none());
}

/// Header lists: signed values, forged and foreign ones, names in any case, repeats.
fn entries(u: &mut Unstructured<'_>) -> Vec<(String, String)> {
    let ours = TraceContext::new(HmacKey::new(FIXED_KEY), None, None)
        .headers()
        .expect("signed");
    let theirs = TraceContext::new(HmacKey::new("another key"), None, None)
        .headers()
        .expect("signed");
    let names = [
        "X-Trace-Info",
        "x-trace-info",
        "X-TRACE-INFO",
        "X-Trace-HMAC",
        "x-trace-hmac",
        "X-Trace-Hmac",
        "traceparent",
        "content-type",
    ];
    let mut out = Vec::new();
    for _ in 0..u.int_in_range(0..=6).unwrap_or(0) {
        let name = pick_or_any(u, &names);
        let value = match u.int_in_range(0..=5).unwrap_or(0) {
            0 => ours.info.clone(),
            1 => ours.hmac.clone(),
            2 => theirs.info.clone(),
            3 => theirs.hmac.clone(),
            4 => format!(" {} ", ours.hmac),
            _ => u.arbitrary().unwrap_or_default(),
        };
        out.push((name, value));
    }
    out
}

/// A Python `trace_info` object, bare or inside a request context.
fn trace_info(u: &mut Unstructured<'_>) -> Value {
    let mut info = Map::new();
    let id = |u: &mut Unstructured<'_>| match u.int_in_range(0..=3).unwrap_or(0) {
        0 | 1 => json!(Id(u.arbitrary().unwrap_or(7)).to_string()),
        2 => json!(Id(u.arbitrary().unwrap_or(7)).to_string().to_uppercase()),
        _ => json!(u.arbitrary::<String>().unwrap_or_default()),
    };
    for _ in 0..u.int_in_range(0..=4).unwrap_or(0) {
        let k = pick_or_any(u, &["hmac_key", "base_id", "parent_id", "user"]);
        let v = match k.as_str() {
            "hmac_key" => match u.int_in_range(0..=3).unwrap_or(0) {
                0 | 1 => json!(FIXED_KEY),
                2 => json!(format!("{FIXED_KEY}\0")),
                _ => json!(u.arbitrary::<String>().unwrap_or_default()),
            },
            "base_id" | "parent_id" => id(u),
            _ => match u.int_in_range(0..=2).unwrap_or(0) {
                0 => Value::Null,
                1 => json!(u.arbitrary::<i32>().unwrap_or(0)),
                _ => json!(u.arbitrary::<String>().unwrap_or_default()),
            },
        };
        info.insert(k, v);
    }
    if u.arbitrary().unwrap_or(false) {
        json!({"user": "demo", "trace_info": info})
    } else {
        Value::Object(info)
    }
}

/// What `extract_python_trace_info` must make of `value` (opted in, switches on): the
/// rule of its documentation, written out.
fn python_want(value: &Value) -> Option<(Id, Option<Id>)> {
    let obj = value.as_object()?;
    let info = match obj.get("trace_info") {
        Some(inner) => inner.as_object()?,
        None => obj,
    };
    let text = |k: &str| info.get(k).map(|v| v.as_str());
    if info.values().any(|v| !v.is_string())
        || info
            .keys()
            .any(|k| !matches!(k.as_str(), "hmac_key" | "base_id" | "parent_id"))
    {
        return None;
    }
    let key = text("hmac_key")??;
    if key.is_empty() || !hmac_equivalent(key.as_bytes(), FIXED_KEY.as_bytes()) {
        return None;
    }
    let base: Id = text("base_id")??.parse().ok()?;
    let parent = match text("parent_id") {
        Some(p) => Some(p?.parse::<Id>().ok()?),
        None => None,
    };
    Some((base, parent))
}

fn python_form(value: &Value) {
    carrier::accept_python_trace_info(false);
    assert!(
        carrier::extract_python_trace_info(value).is_none(),
        "Python's form taken without the opt-in"
    );
    carrier::accept_python_trace_info(true);
    let got = carrier::extract_python_trace_info(value);
    carrier::accept_python_trace_info(false);
    assert_eq!(ids(&got), python_want(value), "Python's trace_info misread");
    if let Some(t) = got {
        let shown = format!("{t:?}");
        assert!(
            !shown.contains(FIXED_KEY),
            "the key shows in Debug: {shown}"
        );
    }
}
