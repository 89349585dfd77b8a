//! Records one trace across two services in this process and prints its
//! events as osprofiler stores them (one JSON object per line).
//!
//!     cargo run -p osprofiler --example quickstart
//!
//! The `api` service starts a trace (as `openstack --os-profile KEY` would),
//! calls `conductor` with the signed trace headers, and `conductor` continues
//! the trace only because the headers verify under its configured keys.

use osprofiler::notifier::{self, MemorySink};
use osprofiler::propagation::{self, TraceHeaders};
use osprofiler::{HmacKey, HmacKeys, Identity, Info, TraceContext, switches, trace};

#[derive(Debug, thiserror::Error)]
#[error("No valid host was found")]
struct NoValidHost;

#[trace(name = "db")]
fn quota_get(project: &str, resource: &str) -> u32 {
    let _ = (project, resource);
    3
}

#[trace(name = "driver", hide_args)]
fn spawn(vm: &str, admin_password: &str) -> Result<(), NoValidHost> {
    let _ = (vm, admin_password);
    Err(NoValidHost)
}

/// The conductor's RPC endpoint: continues the trace when the headers verify.
fn conductor_build(headers: &TraceHeaders) {
    let Some(incoming) = propagation::accept(Some(&headers.info), Some(&headers.hmac)) else {
        println!("# conductor: request not traced");
        return;
    };
    let ctx = TraceContext::from_incoming(incoming).with_identity(&Identity::new(
        "nova",
        "conductor",
        "host-b",
    ));
    ctx.in_scope(|| {
        let _rpc = osprofiler::point_with("rpc", Info::new().with("method", "build_instances"));
        let _ = spawn("vm-1", "s3cret");
        let _db = osprofiler::point_with(
            "db",
            serde_json::json!({"db": {"statement": "UPDATE instances SET host = ? WHERE uuid = ?", "params": ["host-b", "vm-1"]}}),
        );
    });
}

fn main() {
    // The service side: tracing on, accepting this key (osprofiler's [profiler] section).
    switches::enable(HmacKeys::parse("SECRET_KEY"));
    let sink = MemorySink::new();
    let notifier = notifier::set_sink(sink.clone());

    // The client side: start a trace signed with the key.
    let api = TraceContext::new(HmacKey::new("SECRET_KEY"), None, None)
        .with_identity(&Identity::new("nova", "api", "host-a"));
    api.in_scope(|| {
        let mut wsgi = osprofiler::point_with(
            "wsgi",
            serde_json::json!({"request": {"path": "/v2.1/servers", "query": "", "method": "POST", "scheme": "http"}}),
        );
        quota_get("demo", "cores");
        let headers = osprofiler::get().and_then(|ctx| ctx.headers()).expect("a trace with a key signs its headers");
        conductor_build(&headers);
        wsgi.set_stop_info(Info::new().with("response", serde_json::json!({"status": 202})));
    });

    notifier::flush().expect("flush");
    let mut events = sink.trace(api.base_id());
    events.sort_by_key(|e| e.timestamp);
    for e in &events {
        println!("{}", e.to_json());
    }
    println!("# Trace ID: {} ({} events)", api.base_id(), events.len());
    drop(notifier);
}
