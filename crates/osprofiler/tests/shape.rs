//! The call shape of `vectors/events.jsonl` (made by Python osprofiler
//! 4.4.0), recorded with this library across two services, compared with the
//! vectors field by field: ids, times, and language-specific renderings of
//! function names and arguments aside.

mod common;

use std::collections::HashMap;

use osprofiler::propagation::verify_trace_headers;
use osprofiler::{Event, HmacKey, HmacKeys, Id, Identity, Info, TraceContext, trace};
use serde_json::{Value, json};

#[trace(name = "db", hide_result = false)]
fn quota_get(project: &str) -> std::collections::BTreeMap<&'static str, u32> {
    let _ = project;
    [("in_use", 3)].into()
}

#[derive(Debug, thiserror::Error)]
#[error("No valid host was found")]
pub struct ValueError;

#[trace(name = "driver", hide_args)]
fn spawn() -> Result<(), ValueError> {
    Err(ValueError)
}

#[trace(name = "rpc")]
fn schedule_and_build_instances(key: &HmacKey) {
    // The RPC boundary: the conductor verifies the signed context it got.
    let headers = osprofiler::get().unwrap().headers().unwrap();
    let incoming = verify_trace_headers(
        &headers.info,
        &headers.hmac,
        &HmacKeys::from(vec![key.clone()]),
    )
    .unwrap();
    let conductor = TraceContext::from_incoming(incoming).with_identity(&Identity::new(
        "nova",
        "conductor",
        "host-b",
    ));
    std::thread::spawn(move || {
        let _in = conductor.enter();
        let _ = spawn();
        let _db = osprofiler::point_with(
            "db",
            json!({"db": {"statement": "SELECT * FROM instances WHERE uuid = %(uuid)s", "params": {"uuid": "vm-1"}}}),
        );
    })
    .join()
    .unwrap();
}

fn record() -> Vec<Event> {
    common::sink();
    let key = HmacKey::new("SECRET_KEY").unwrap();
    let api = TraceContext::new(Some(key.clone()), None, None)
        .with_identity(&Identity::new("nova", "api", "host-a"));
    api.in_scope(|| {
        let mut wsgi = osprofiler::point_with(
            "wsgi",
            json!({"request": {"path": "/v2.1/servers", "query": "", "method": "POST", "scheme": "http"}}),
        );
        quota_get("demo");
        schedule_and_build_instances(&key);
        wsgi.set_stop_info(Info::new().with("response", json!({"status": 202})));
    });
    let mut ev = common::events_of(api.base_id());
    ev.sort_by_key(|e| e.timestamp);
    ev
}

/// Replaces what legitimately differs between Python and Rust by markers.
fn normalize(v: &mut Value) {
    if let Some(f) = v.pointer_mut("/info/function") {
        for k in ["name", "args", "kwargs", "result"] {
            if let Some(x) = f.get_mut(k) {
                *x = json!(format!("<{k}>"));
            }
        }
    }
    if let Some(e) = v.pointer_mut("/info/etype") {
        let short = e
            .as_str()
            .unwrap()
            .rsplit(['.', ':'])
            .next()
            .unwrap()
            .to_owned();
        *e = json!(short);
    }
    let obj = v.as_object_mut().unwrap();
    for k in ["base_id", "trace_id", "parent_id", "timestamp"] {
        obj.insert(k.into(), json!("<id or time>"));
    }
}

#[test]
fn rust_events_have_the_shape_of_python_events() {
    let ours = record();
    let theirs: Vec<Event> = common::vector("events.jsonl")
        .lines()
        .map(|l| Event::from_json(l).unwrap())
        .collect();
    assert_eq!(ours.len(), theirs.len(), "{ours:#?}");

    // Same tree: map their ids to ours by position and compare links.
    let mut map: HashMap<Id, Id> = HashMap::new();
    map.insert(theirs[0].base_id, ours[0].base_id);
    for (o, t) in ours.iter().zip(&theirs) {
        map.entry(t.trace_id).or_insert(o.trace_id);
        assert_eq!(
            o.trace_id,
            map[&t.trace_id],
            "{} vs {}",
            o.to_json(),
            t.to_json()
        );
        assert_eq!(
            o.parent_id,
            map[&t.parent_id],
            "{} vs {}",
            o.to_json(),
            t.to_json()
        );
        assert_eq!(o.base_id, map[&t.base_id]);
    }

    for (o, t) in ours.iter().zip(&theirs) {
        let mut a: Value = serde_json::from_str(&o.to_json()).unwrap();
        let mut b: Value = serde_json::from_str(&t.to_json()).unwrap();
        // Top-level keys in the same order.
        let ka: Vec<_> = a.as_object().unwrap().keys().cloned().collect();
        let kb: Vec<_> = b.as_object().unwrap().keys().cloned().collect();
        assert_eq!(ka, kb);
        // info keys in the same order.
        let ia: Vec<_> = a["info"].as_object().unwrap().keys().cloned().collect();
        let ib: Vec<_> = b["info"].as_object().unwrap().keys().cloned().collect();
        assert_eq!(ia, ib, "{} vs {}", o.to_json(), t.to_json());
        normalize(&mut a);
        normalize(&mut b);
        assert_eq!(a, b);
    }
    // And the renderings that differ by language are what we expect.
    let db = &ours[1].info["function"];
    assert_eq!(db["name"], "shape::quota_get");
    assert_eq!(db["args"], r#"("demo",)"#);
    assert_eq!(ours[2].info["function"]["result"], r#"{"in_use": 3}"#);
    assert_eq!(ours[5].info["etype"], "shape::ValueError");
}
