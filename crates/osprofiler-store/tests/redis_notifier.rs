//! The Redis sink behind the real, process-wide notifier: a nested trace across two
//! services with an error goes through the exporter into Redis in osprofiler's layout, is
//! read back by `open()` and by the Python osprofiler 4.4.0 CLI, and an outage costs the
//! traced code nothing and heals by itself.
//!
//! One test in phases: the notifier has one sink per process (`cargo test` runs the tests
//! of a file in one process).

use std::time::{Duration, Instant};

use osprofiler::notifier;
use osprofiler::{HmacKey, Identity, Info, TraceContext};
use osprofiler_store::{ConnectionString, Options, open, sink};
use osprofiler_testkit::{Oracle, RedisServer, need};
use serde_json::{Value, json};

#[derive(Debug, thiserror::Error)]
#[error("No valid host was found")]
struct NoValidHost;

// The pauses keep sibling points in distinct milliseconds (see `tests/redis.rs`).
fn pause() {
    std::thread::sleep(Duration::from_millis(2));
}

#[osprofiler::trace(name = "db")]
fn quota_get(project: &str) -> u32 {
    pause();
    project.len() as u32
}

#[osprofiler::trace(name = "driver")]
fn spawn(vm: &str) -> Result<(), NoValidHost> {
    pause();
    let _ = vm;
    Err(NoValidHost)
}

/// "api" on host-a takes a request, reads the database and calls "compute" on host-b
/// (another thread, as another service would be), whose driver fails.
fn record_trace() -> String {
    let key = HmacKey::new("SECRET_KEY");
    let api = Identity::new("nova", "api", "host-a");
    let compute = Identity::new("nova", "compute", "host-b");
    let ctx = TraceContext::new(key.clone(), None, None).with_identity(&api);
    ctx.in_scope(|| {
        let request =
            json!({"path": "/v2.1/servers", "query": "", "method": "POST", "scheme": "http"});
        let _wsgi = osprofiler::point_with("wsgi", Info::new().with("request", request));
        pause();
        quota_get("demo");
        pause();
        let here = osprofiler::get().expect("in a trace");
        let remote =
            TraceContext::new(key, Some(here.base_id()), Some(here.id())).with_identity(&compute);
        std::thread::spawn(move || {
            remote.in_scope(|| {
                let _rpc = osprofiler::point_with(
                    "rpc",
                    Info::new().with("function", json!({"name": "compute.build_and_run"})),
                );
                pause();
                let _ = spawn("vm-1");
                pause();
            })
        })
        .join()
        .expect("compute thread");
        pause();
    });
    ctx.base_id().to_string()
}

fn events_of(redis: &RedisServer, base: &str) -> Vec<String> {
    redis
        .cmd(&["LRANGE", &format!("osprofiler_opt:{base}"), "0", "-1"])
        .unwrap()
        .into_strings()
        .unwrap()
}

fn listed(list: Vec<osprofiler_store::TraceSummary>, base: &str) -> bool {
    list.iter().any(|s| s.base_id == base)
}

#[test]
fn through_the_notifier() {
    let Some(mut redis) = need("redis-server", RedisServer::start()) else {
        return;
    };
    let url = redis.url();
    let cs: ConnectionString = url.parse().unwrap();
    let with_errors = Options {
        filter_error_trace: true,
        ..Options::default()
    };

    // Phase 1: filter_error_trace on.
    let guard = notifier::set_boxed_sink(sink(&cs, &with_errors).unwrap());
    let base = record_trace();
    notifier::flush().unwrap();

    // The raw layout: osprofiler JSON strings, newest first within each service.
    let raw = events_of(&redis, &base);
    assert_eq!(raw.len(), 8, "{raw:#?}");
    let parsed: Vec<Value> = raw
        .iter()
        .map(|s| serde_json::from_str(s).unwrap())
        .collect();
    for (text, v) in raw.iter().zip(&parsed) {
        // Byte for byte what osprofiler writes: Python's separators and key order.
        assert_eq!(
            &osprofiler::Event::from_value(v.clone()).unwrap().to_json(),
            text
        );
        assert!(text.starts_with("{\"name\": \""), "{text}");
    }
    for service in ["api", "compute"] {
        let times: Vec<&str> = parsed
            .iter()
            .filter(|v| v["service"] == service)
            .map(|v| v["timestamp"].as_str().unwrap())
            .collect();
        assert!(
            times.windows(2).all(|w| w[0] >= w[1]),
            "{service}: {times:?}"
        );
    }
    assert_eq!(parsed[0]["name"], "wsgi-stop");
    let first = parsed
        .iter()
        .map(|v| v["timestamp"].as_str().unwrap())
        .min()
        .unwrap();
    let score = redis
        .cmd(&["ZSCORE", "osprofiler_index", &base])
        .unwrap()
        .into_string()
        .unwrap();
    let first_us = first.parse::<osprofiler::Timestamp>().unwrap().0;
    assert_eq!(
        (score.parse::<f64>().unwrap() * 1e6).round() as i64,
        first_us
    );
    let failed_stop = parsed.iter().find(|v| v["name"] == "driver-stop").unwrap();
    assert_eq!(failed_stop["info"]["etype"], "redis_notifier::NoValidHost");
    let marker = redis
        .cmd(&["GET", &format!("osprofiler_error:{base}")])
        .unwrap()
        .into_string()
        .unwrap();
    assert_eq!(
        marker,
        format!(
            r#"{{"base_id": "{base}", "timestamp": "{}"}}"#,
            failed_stop["timestamp"].as_str().unwrap()
        )
    );

    // Read back: the tree, and both lists.
    let mut store = open(&cs, &Options::default()).unwrap();
    let report = store.report(&base).unwrap().expect("stored");
    assert_eq!(report.len(), 4);
    let wsgi = &report.roots()[0];
    assert_eq!(
        (wsgi.name(), wsgi.service(), wsgi.host()),
        ("wsgi", Some("api"), Some("host-a"))
    );
    let kids: Vec<&str> = wsgi.children().iter().map(|n| n.name()).collect();
    assert_eq!(kids, ["db", "rpc"]);
    let rpc = &wsgi.children()[1];
    assert_eq!(
        (rpc.service(), rpc.host(), rpc.parent_id()),
        (Some("compute"), Some("host-b"), Some(wsgi.trace_id()))
    );
    let driver = &rpc.children()[0];
    assert_eq!(
        (driver.name(), driver.exception()),
        ("driver", Some("redis_notifier::NoValidHost"))
    );
    let list = store.list_traces(None).unwrap();
    assert_eq!(list[0].base_id, base);
    assert_eq!(list[0].timestamp, first);
    assert!(listed(store.list_error_traces(None).unwrap(), &base));

    // The Python tool shows the same tree and lists the trace.
    if let Some(py) = need("python osprofiler oracle", Oracle::locate()) {
        let shown = py
            .cli(&[
                "trace",
                "show",
                "--json",
                &base,
                "--connection-string",
                &url,
            ])
            .unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&shown).unwrap(),
            report.to_json()
        );
        let list = py
            .cli(&["trace", "list", "--connection-string", &url])
            .unwrap();
        assert!(list.contains(&base), "{list}");
    }

    // Phase 2: filter_error_trace off: the error is in the events, but the trace is not
    // marked.
    let guard2 = notifier::set_boxed_sink(sink(&cs, &Options::default()).unwrap());
    drop(guard); // a replaced sink's guard does not close the new one
    let quiet = record_trace();
    notifier::flush().unwrap();
    assert_eq!(events_of(&redis, &quiet).len(), 8);
    let marker = redis.cmd(&["GET", &format!("osprofiler_error:{quiet}")]);
    assert!(marker.unwrap().is_nil());
    assert!(listed(store.list_traces(None).unwrap(), &quiet));
    let errors = store.list_error_traces(None).unwrap();
    assert!(!listed(errors.clone(), &quiet) && listed(errors, &base));

    // Phase 3: the server goes away. Tracing goes on, batches fail fast and are counted,
    // and a flush never hangs.
    redis.stop();
    let before = notifier::stats();
    let started = Instant::now();
    for _ in 0..20 {
        record_trace();
        let t = Instant::now();
        notifier::flush().unwrap();
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "flush took {:?}",
            t.elapsed()
        );
    }
    let after = notifier::stats();
    assert!(
        after.failed >= before.failed + 20 * 8,
        "{before:?} → {after:?}"
    );
    assert!(after.sink_errors > before.sink_errors);
    assert_eq!(after.exported, before.exported);
    assert!(notifier::last_error().is_some_and(|e| e.starts_with(&cs.to_string())));
    // 20 traces with 12 ms of pauses each: the time is the pauses, not timeouts.
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    // And back: the sink reconnects by itself.
    redis.restart().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let back = loop {
        let base = record_trace();
        notifier::flush().unwrap();
        if events_of(&redis, &base).len() == 8 {
            break base;
        }
        assert!(Instant::now() < deadline, "the sink did not reconnect");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(notifier::stats().exported > after.exported);
    let mut store = open(&cs, &Options::default()).unwrap();
    assert_eq!(store.report(&back).unwrap().unwrap().len(), 4);
    drop(guard2);
}
