//! `messaging://` against a real RabbitMQ node, both ways with the real Python osprofiler
//! 4.4.0 and oslo.messaging: Python's `osprofiler trace show` reads what we publish, we read
//! what Python publishes, other traces' messages survive our reads, and a broker killed and
//! restarted under load costs counted losses only.
//!
//! Each test starts its own node ([`RabbitMqServer`], a few seconds) and skips (fails under
//! `CI=true`) when `rabbitmq-server` or the Python oracle (with oslo.messaging) is missing.

mod common;

use std::time::{Duration, Instant};

use common::text::{uuid, wsgi_db};
use osprofiler::Event;
use osprofiler_store::{ConnectionString, Options, Report, TransportUrl, open, sink};
use osprofiler_testkit::{Oracle, RabbitMqServer, need};
use serde_json::{Value, json};

fn opts(mq: &RabbitMqServer) -> Options {
    Options {
        transport_url: Some(mq.transport_url().parse::<TransportUrl>().unwrap()),
        ..Options::default()
    }
}

/// The oracle, with oslo.messaging importable.
fn oracle() -> Option<Oracle> {
    let py = need("python osprofiler oracle", Oracle::locate())?;
    need(
        "oslo.messaging in the oracle venv",
        py.python("import oslo_messaging", &[]).map(|_| ()),
    )?;
    Some(py)
}

/// A wsgi point with a failing db point inside.
fn small_trace(base: &str) -> Vec<Event> {
    wsgi_db(
        base,
        0,
        json!({"request": {"path": "/"}}),
        json!({"db": {"statement": "SELECT 1"}}),
        json!({"etype": "OperationalError", "message": "gone"}),
    )
}

/// The report of `events`, built here (what any store holding them gives).
fn report_of(events: &[Event]) -> Value {
    Report::from_json_texts(events.iter().map(Event::to_json)).to_json()
}

/// Python's `osprofiler trace show --connection-string messaging:// --transport-url … --json`.
fn python_show(py: &Oracle, mq: &RabbitMqServer, base: &str) -> Result<Value, String> {
    let url = mq.transport_url();
    let out = py.cli(&[
        "trace",
        "show",
        "--connection-string",
        "messaging://",
        "--transport-url",
        &url,
        "--json",
        base,
    ])?;
    serde_json::from_str(&out).map_err(|e| format!("no JSON from Python ({e}): {out}"))
}

/// Python services publish one trace through osprofiler's messaging driver (the trace of
/// `TWO_SERVICE_TRACE`: api on h1 → db, rpc to compute on h2 → a failing driver call).
fn python_publish(py: &Oracle, mq: &RabbitMqServer) -> String {
    let script = osprofiler_testkit::TWO_SERVICE_TRACE.replace(
        "conf=cfg.CONF)",
        "conf=cfg.CONF, context={}, transport_url=sys.argv[2])",
    );
    assert!(script.contains("transport_url=sys.argv[2]"));
    py.python(&script, &["messaging://", &mq.transport_url()])
        .unwrap()
        .trim()
        .to_owned()
}

#[test]
fn python_reads_what_we_publish() {
    let Some(mq) = need("rabbitmq-server", RabbitMqServer::start()) else {
        return;
    };
    let Some(py) = oracle() else { return };
    let o = opts(&mq);
    // Published before anyone reads: the sink declares the queue, so the messages wait.
    let mut w = sink(&ConnectionString::Messaging, &o).unwrap();
    let events = small_trace(&uuid(1));
    w.write(&events[..2]).unwrap();
    w.write(&events[2..]).unwrap();
    let shown = python_show(&py, &mq, &uuid(1)).unwrap();
    assert_eq!(shown, report_of(&events));
    assert_eq!(shown["children"][0]["info"]["name"], "wsgi");
    assert_eq!(shown["children"][0]["children"][0]["info"]["name"], "db");

    // The 2.0 envelope (oslo's messagingv2 driver) reads the same.
    let v2 = Options {
        messaging_v2: true,
        ..o.clone()
    };
    let mut w2 = sink(&ConnectionString::Messaging, &v2).unwrap();
    let events = small_trace(&uuid(2));
    w2.write(&events).unwrap();
    assert_eq!(python_show(&py, &mq, &uuid(2)).unwrap(), report_of(&events));
}

/// What we publish has the properties, exchange, routing key and body of what Python
/// osprofiler publishes: one message of each, taken off the queue with py-amqp.
#[test]
fn messages_are_those_of_python() {
    let Some(mq) = need("rabbitmq-server", RabbitMqServer::start()) else {
        return;
    };
    let Some(py) = oracle() else { return };
    let python_base = python_publish(&py, &mq);
    let get_all = r#"
import json, sys, amqp
c = amqp.Connection("127.0.0.1:" + sys.argv[1]); c.connect(); ch = c.channel()
out = []
while True:
    m = ch.basic_get("profiler.info", no_ack=True)
    if m is None:
        break
    out.append({"properties": m.properties, "exchange": m.delivery_info["exchange"],
                "routing_key": m.delivery_info["routing_key"], "body_type": type(m.body).__name__,
                "body": m.body.decode() if isinstance(m.body, bytes) else m.body})
print(json.dumps(out))
"#;
    let port = mq.port().to_string();
    let theirs: Vec<Value> = serde_json::from_str(&py.python(get_all, &[&port]).unwrap()).unwrap();
    assert_eq!(theirs.len(), 8, "four points of Python's trace: {theirs:?}");

    let mut w = sink(&ConnectionString::Messaging, &opts(&mq)).unwrap();
    let ours_events = small_trace(&uuid(3));
    w.write(&ours_events).unwrap();
    let ours: Vec<Value> = serde_json::from_str(&py.python(get_all, &[&port]).unwrap()).unwrap();
    assert_eq!(ours.len(), 4);

    let keys =
        |body: &Value| -> Vec<String> { body.as_object().unwrap().keys().cloned().collect() };
    for (t, o) in theirs.iter().zip(&ours) {
        assert_eq!(t["properties"], o["properties"]);
        assert_eq!(t["body_type"], o["body_type"]);
        assert_eq!(t["exchange"], "openstack");
        assert_eq!(
            (&o["exchange"], &o["routing_key"]),
            (&t["exchange"], &t["routing_key"])
        );
        let tb: Value = serde_json::from_str(t["body"].as_str().unwrap()).unwrap();
        let ob: Value = serde_json::from_str(o["body"].as_str().unwrap()).unwrap();
        assert_eq!(keys(&tb), keys(&ob));
        assert_eq!(keys(&tb["payload"]), keys(&ob["payload"]), "{tb} / {ob}");
        assert_eq!(tb["priority"], "INFO");
        assert_eq!(ob["priority"], "INFO");
        // `str(datetime.utcnow())`, with a space.
        let ts = ob["timestamp"].as_str().unwrap();
        assert_eq!((ts.len(), &ts[10..11]), (26, " "), "{ts}");
        assert_eq!(ob["_unique_id"].as_str().unwrap().len(), 32);
        assert_eq!(ob["message_id"].as_str().unwrap().len(), 36);
    }
    let first: Value = serde_json::from_str(ours[0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(first["publisher_id"], "host-a");
    assert_eq!(first["event_type"], "profiler.api");
    assert_eq!(first["payload"]["base_id"], uuid(3));
    // Python's own body, checked the same way: its publisher is the driver's host.
    let theirs0: Value = serde_json::from_str(theirs[0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(theirs0["payload"]["base_id"], python_base.as_str());
    assert_eq!(theirs0["event_type"], "profiler.api");
    // The text itself is json.dumps's: ", " and ": " separators, no spaces elsewhere.
    let body = ours[0]["body"].as_str().unwrap();
    assert!(body.starts_with("{\"message_id\": \""), "{body}");
    assert!(
        body.contains(
            "\"priority\": \"INFO\", \"payload\": {\"name\": \"wsgi-start\", \"base_id\": "
        )
    );
}

#[test]
fn we_read_what_python_published_and_keep_other_traces() {
    let Some(mq) = need("rabbitmq-server", RabbitMqServer::start()) else {
        return;
    };
    let Some(py) = oracle() else { return };
    let o = opts(&mq);
    let first = python_publish(&py, &mq);
    // Ours, between Python's two traces.
    let mut w = sink(&ConnectionString::Messaging, &o).unwrap();
    let ours = small_trace(&uuid(4));
    w.write(&ours).unwrap();
    let second = python_publish(&py, &mq);

    // The first node of the URL is not there: the second is used.
    let two_hosts = Options {
        transport_url: Some(
            format!(
                "rabbit://guest:guest@127.0.0.1:{},127.0.0.1:{}/",
                osprofiler_testkit::free_port(),
                mq.port()
            )
            .parse::<TransportUrl>()
            .unwrap(),
        ),
        ..o.clone()
    };
    let mut store = open(&ConnectionString::Messaging, &two_hosts).unwrap();
    let started = Instant::now();
    let report = store.report(&first).unwrap().expect("Python's trace read");
    // The reader stops 1 s after the trace's last event, as Python's does.
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let wsgi = &report.roots()[0];
    assert_eq!(
        (wsgi.name(), wsgi.service(), wsgi.host()),
        ("wsgi", Some("api"), Some("h1"))
    );
    let kids: Vec<&str> = wsgi.children().iter().map(|n| n.name()).collect();
    assert_eq!(kids, ["db", "rpc"]);
    let rpc = &wsgi.children()[1];
    assert_eq!((rpc.service(), rpc.host()), (Some("compute"), Some("h2")));
    assert!(rpc.children()[0].is_error());
    assert_eq!(report.len(), 4);

    // A trace is read once: its events are gone now.
    assert!(store.report(&first).unwrap().is_none());
    // The others are still there, whole: ours, read by us ...
    assert_eq!(
        store.report(&uuid(4)).unwrap().unwrap().to_json(),
        report_of(&ours)
    );
    // ... and Python's second, read by Python, same tree as the first.
    let shown = python_show(&py, &mq, &second).unwrap();
    let names = |v: &Value| -> Vec<String> {
        let mut out = Vec::new();
        fn walk(v: &Value, out: &mut Vec<String>) {
            for c in v["children"].as_array().into_iter().flatten() {
                out.push(c["info"]["name"].as_str().unwrap_or("").to_owned());
                walk(c, out);
            }
        }
        walk(v, &mut out);
        out
    };
    assert_eq!(names(&shown), names(&report.to_json()));
    assert_eq!(names(&shown), ["wsgi", "db", "rpc", "driver"]);

    // The bus lists nothing.
    let e = store.list_traces(None).unwrap_err().to_string();
    assert!(e.contains("cannot list"), "{e}");
}

/// The broker killed under a traced load and started again: traced code never waits on
/// it, the losses are counted, and the exporter publishes again by itself once the broker
/// is back. The only test here with the process-wide notifier.
#[test]
fn broker_killed_and_restarted_under_load() {
    use osprofiler::notifier;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    let Some(mut mq) = need("rabbitmq-server", RabbitMqServer::start()) else {
        return;
    };
    let o = opts(&mq);
    let _guard = notifier::set_boxed_sink(sink(&ConnectionString::Messaging, &o).unwrap());

    // One trace of two points every millisecond or so; the slowest traced call is kept.
    let stop = Arc::new(AtomicBool::new(false));
    let slowest = Arc::new(Mutex::new(Duration::ZERO));
    let last_base = Arc::new(Mutex::new(String::new()));
    let load = {
        let (stop, slowest, last_base) = (stop.clone(), slowest.clone(), last_base.clone());
        std::thread::spawn(move || {
            let mut traces = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let ctx = osprofiler::TraceContext::new(None, None, None);
                ctx.in_scope(|| {
                    let _w = osprofiler::point("wsgi");
                    drop(osprofiler::point("db"));
                });
                let took = started.elapsed();
                let mut s = slowest.lock().unwrap();
                *s = (*s).max(took);
                drop(s);
                *last_base.lock().unwrap() = ctx.base_id().to_string();
                traces += 1;
                std::thread::sleep(Duration::from_millis(1));
            }
            traces
        })
    };
    let wait_exported = |beyond: u64, within: Duration| -> u64 {
        let deadline = Instant::now() + within;
        loop {
            let n = notifier::stats().exported;
            if n > beyond || Instant::now() >= deadline {
                return n;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let before = wait_exported(100, Duration::from_secs(10));
    assert!(before > 100, "nothing exported while the broker was up");

    mq.stop();
    std::thread::sleep(Duration::from_secs(1));
    let down = notifier::stats();
    mq.restart().expect("the broker starts again");
    let restarted = notifier::stats().exported;
    // Published again by itself, within the longest backoff (5 s) and a batch.
    let after = wait_exported(restarted + 100, Duration::from_secs(15));
    stop.store(true, Ordering::Relaxed);
    let traces = load.join().unwrap();
    notifier::flush().ok();
    let end = notifier::stats();

    assert!(
        after > restarted + 100,
        "not publishing after the restart: {restarted} then {after} ({end:?})"
    );
    assert!(
        down.failed + down.dropped > 0,
        "losses while the broker was down are counted: {down:?}"
    );
    assert!(end.exported + end.failed + end.dropped <= traces * 4);
    let slowest = *slowest.lock().unwrap();
    eprintln!(
        "{traces} traces; broker down 1 s: {down:?}; at the end: {end:?}; slowest traced call {slowest:?}"
    );
    assert!(
        slowest < Duration::from_millis(100),
        "a traced call waited {slowest:?} on the broker"
    );
    // What was published after the restart reads back.
    let base = last_base.lock().unwrap().clone();
    let mut store = open(&ConnectionString::Messaging, &o).unwrap();
    let report = store
        .report(&base)
        .unwrap()
        .expect("the last trace is on the bus");
    assert_eq!(report.len(), 2);
}
