//! One trace across two services that talk over a message queue.
//!
//! An "api" service publishes messages whose headers carry the signed trace
//! context (`carrier::inject`); a "conductor" service, on another thread,
//! consumes them, checks the signature against its keys (`carrier::extract`)
//! and continues the trace under the producer's point. Any bus with string
//! headers (AMQP, NATS, Kafka) works the same way.
//!
//! ```sh
//! cargo run -p osprofiler --example message_bus
//! ```

use std::collections::HashMap;
use std::sync::mpsc;
use std::thread;

use osprofiler::notifier::{self, MemorySink};
use osprofiler::{HmacKey, HmacKeys, Identity, Info, TraceContext, carrier, switches};

/// A message on the bus: a body and string headers.
struct Message {
    headers: HashMap<String, String>,
    body: String,
}

fn main() {
    let sink = MemorySink::new();
    let _notifier = notifier::set_sink(sink.clone());
    // Both services accept traces signed with this key.
    switches::enable(HmacKeys::parse("SECRET_KEY"));

    let (bus, queue) = mpsc::channel::<Message>();

    // The consumer service: continues each traced message's trace.
    let conductor = thread::spawn(move || {
        let me = Identity::new("demo", "conductor", "node-2");
        for msg in queue {
            match carrier::extract(&msg.headers) {
                Some(incoming) => {
                    let ctx = TraceContext::from_incoming(incoming).with_identity(&me);
                    ctx.in_scope(|| {
                        let _rpc = osprofiler::point_with(
                            "rpc",
                            Info::new().with("method", msg.body.clone()),
                        );
                        let _db = osprofiler::point("db");
                    });
                }
                // Unsigned or forged: handled the same, untraced.
                None => println!("untraced message: {}", msg.body),
            }
        }
    });

    // The producer service: one traced request that publishes a message.
    let api = TraceContext::new(HmacKey::new("SECRET_KEY"), None, None)
        .with_identity(&Identity::new("demo", "api", "node-1"));
    api.in_scope(|| {
        let _wsgi = osprofiler::point("wsgi");
        let mut headers = HashMap::new();
        carrier::inject(&mut headers);
        let _ = bus.send(Message {
            headers,
            body: "build_instance".into(),
        });
    });
    // And one sent outside any trace.
    let _ = bus.send(Message {
        headers: HashMap::new(),
        body: "heartbeat".into(),
    });
    drop(bus);
    let _ = conductor.join();

    if let Err(e) = notifier::flush() {
        eprintln!("flush: {e}");
    }
    println!("trace {}:", api.base_id());
    let mut events = sink.trace(api.base_id());
    events.sort_by_key(|e| e.timestamp);
    for e in events
        .iter()
        .filter(|e| e.kind == osprofiler::EventKind::Start)
    {
        println!(
            "  {}:{} (point {}, parent {})",
            e.service.as_deref().unwrap_or("?"),
            e.name,
            e.trace_id,
            e.parent_id
        );
    }
}
