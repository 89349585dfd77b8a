//! The carrier against the real Python osprofiler 4.4.0 and a real Redis: a
//! Python service puts `trace_info` (key in clear) into an oslo.messaging-style
//! request context, as OpenStack's RPC serializers do; our consumer continues
//! that trace only after opting in and only because the key is one of ours,
//! and the trace is one tree for our store and for Python's CLI.

use osprofiler::notifier;
use osprofiler::{HmacKeys, Identity, Info, TraceContext, carrier, switches};
use osprofiler_store::{Options, open, sink};
use osprofiler_testkit::{Oracle, RedisServer, need};
use serde_json::Value;

/// The producer: a Python API service sending an RPC message; argv = redis url, key.
const PYTHON_PRODUCER: &str = r#"
import json, sys
from oslo_config import cfg
from osprofiler import opts, profiler, notifier
from osprofiler.drivers import base
opts.set_defaults(cfg.CONF); cfg.CONF([])
drv = base.get_driver(sys.argv[1], project="demo", service="pyapi", host="p1", conf=cfg.CONF)
notifier.set(drv.notify)
profiler.init(sys.argv[2])
with profiler.Trace("wsgi", info={"request": {"path": "/v2.1/servers", "query": "", "method": "POST", "scheme": "http"}}):
    p = profiler.get()
    # What nova's ProfilerRequestContextSerializer.serialize_context adds.
    context = {"user_id": "u1", "project_id": "p1",
               "trace_info": {"hmac_key": p.hmac_key, "base_id": p.get_base_id(), "parent_id": p.get_id()}}
    point = p.get_id()
print(json.dumps({"context": context, "point": point}))
"#;

fn names(node: &Value, depth: usize, out: &mut Vec<String>) {
    for c in node["children"].as_array().into_iter().flatten() {
        out.push(format!(
            "{depth}:{}:{}",
            c["info"]["service"].as_str().unwrap_or(""),
            c["info"]["name"].as_str().unwrap_or("")
        ));
        names(c, depth + 1, out);
    }
}

#[test]
fn a_python_rpc_context_is_continued_only_when_opted_in_with_our_key() {
    let Some(redis) = need("redis-server", RedisServer::start()) else {
        return;
    };
    let Some(py) = need("python osprofiler oracle", Oracle::locate()) else {
        return;
    };
    let url = redis.url();
    let _notifier =
        notifier::set_boxed_sink(sink(&url.parse().unwrap(), &Options::default()).unwrap());
    switches::enable(HmacKeys::parse("OTHER_KEY, SECRET_KEY"));

    let produce = |key: &str| -> (Value, String) {
        let out = py.python(PYTHON_PRODUCER, &[&url, key]).unwrap();
        let out: Value = serde_json::from_str(out.trim()).unwrap();
        (
            out["context"].clone(),
            out["point"].as_str().unwrap().to_owned(),
        )
    };
    let (context, python_point) = produce("SECRET_KEY");

    // Not opted in: the Python form is ignored.
    assert!(!carrier::python_trace_info_accepted());
    assert!(carrier::extract_python_trace_info(&context).is_none());

    carrier::accept_python_trace_info(true);
    // A key we do not hold: ignored even when opted in.
    let (foreign, _) = produce("THEIR_KEY");
    assert!(carrier::extract_python_trace_info(&foreign).is_none());
    // Tracing disabled: ignored.
    switches::disable();
    assert!(carrier::extract_python_trace_info(&context).is_none());
    switches::enable(HmacKeys::parse("OTHER_KEY, SECRET_KEY"));

    let incoming = carrier::extract_python_trace_info(&context).expect("our key, opted in");
    let base = context["trace_info"]["base_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(incoming.base_id.to_string(), base);
    assert_eq!(incoming.parent_id.unwrap().to_string(), python_point);
    let conductor = TraceContext::from_incoming(incoming).with_identity(&Identity::new(
        "demo",
        "conductor",
        "r1",
    ));
    // Onward calls are signed (not keyed in clear) with our copy of the key.
    let onward = conductor.in_scope(|| {
        let _rpc = osprofiler::point_with(
            "rpc",
            Info::new().with(
                "function",
                serde_json::json!({"name": "conductor.build_instances"}),
            ),
        );
        let _db = osprofiler::point("db");
        let mut headers = std::collections::HashMap::new();
        assert!(carrier::inject(&mut headers));
        headers
    });
    assert!(carrier::verify(&onward, &HmacKeys::parse("SECRET_KEY")).is_some());
    assert!(!onward.values().any(|v| v.contains("SECRET_KEY")));
    notifier::flush().unwrap();

    let cs = url.parse().unwrap();
    let ours = open(&cs, &Options::default())
        .unwrap()
        .report(&base)
        .unwrap()
        .expect("stored")
        .to_json();
    let theirs: Value = py.show_json(&base, &url).unwrap();
    assert_eq!(ours, theirs);
    let mut tree = Vec::new();
    names(&theirs, 0, &mut tree);
    assert_eq!(tree, ["0:pyapi:wsgi", "1:conductor:rpc", "2:conductor:db"]);
    carrier::accept_python_trace_info(false);
}
