//! The carrier over plain string maps, in process: a message's headers carry
//! the signed context from a producer to a consumer, under the runtime
//! switches (keys, on/off); anything odd is not traced.

use std::collections::{BTreeMap, HashMap};

use osprofiler::notifier::{self, MemorySink};
use osprofiler::propagation::MAX_TRACE_INFO_LEN;
use osprofiler::{HmacKey, HmacKeys, TraceContext, carrier, point, switches};

#[test]
fn messages_carry_the_trace_under_the_switches() {
    let sink = MemorySink::new();
    let _notifier = notifier::set_sink(sink.clone());
    switches::enable(HmacKeys::parse("SECRET_KEY"));

    let producer = TraceContext::new(HmacKey::new("SECRET_KEY"), None, None);
    let (publish_id, headers) = producer.in_scope(|| {
        let p = point("publish");
        let mut h: HashMap<String, String> = HashMap::new();
        assert!(carrier::inject(&mut h));
        (p.id().unwrap(), h)
    });
    assert_eq!(headers.len(), 2);

    // The consumer continues under the producer's point.
    let incoming = carrier::extract(&headers).expect("signed with our key");
    assert_eq!(incoming.base_id, producer.base_id());
    assert_eq!(incoming.parent_id, Some(publish_id));
    std::thread::spawn(move || {
        TraceContext::from_incoming(incoming).in_scope(|| drop(point("consume")));
    })
    .join()
    .unwrap();
    notifier::flush().unwrap();
    let events = sink.trace(producer.base_id());
    let consume = events
        .iter()
        .find(|e| e.name == "consume")
        .expect("recorded");
    assert_eq!(consume.parent_id, publish_id);

    // Other string maps, other spellings of the names.
    let lower: BTreeMap<String, String> = headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
        .collect();
    assert!(carrier::extract(&lower).is_some());
    let list: Vec<(String, String)> = headers.clone().into_iter().collect();
    assert!(carrier::extract(&list).is_some());

    // Not traced: forged, duplicated, oversized, missing, unknown key, disabled.
    let mut forged = headers.clone();
    forged.insert("X-Trace-HMAC".into(), "0".repeat(40));
    assert!(carrier::extract(&forged).is_none());
    let mut twice = list.clone();
    twice.push(("x-trace-info".into(), headers["X-Trace-Info"].clone()));
    assert!(carrier::extract(&twice).is_none());
    let mut long = headers.clone();
    long.insert("X-Trace-Info".into(), "e".repeat(MAX_TRACE_INFO_LEN + 1));
    assert!(carrier::extract(&long).is_none());
    let mut missing = headers.clone();
    missing.remove("X-Trace-HMAC");
    assert!(carrier::extract(&missing).is_none());
    switches::set_hmac_keys(HmacKeys::parse("ROTATED"));
    assert!(carrier::extract(&headers).is_none());
    switches::set_hmac_keys(HmacKeys::parse("ROTATED,SECRET_KEY"));
    assert!(carrier::extract(&headers).is_some());
    switches::disable();
    assert!(carrier::extract(&headers).is_none());

    // Outside a trace nothing is injected.
    let mut empty: HashMap<String, String> = HashMap::new();
    assert!(!carrier::inject(&mut empty));
    assert!(empty.is_empty());
}
