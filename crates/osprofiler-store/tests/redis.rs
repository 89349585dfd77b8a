//! The Redis backend against real servers: plain, with a password and a database, TLS,
//! Sentinel, down and back up; and both ways against the real Python osprofiler 4.4.0.
//!
//! These tests call the sink directly (no process-wide notifier), so they can run in
//! parallel in one process. The round trip through the notifier is in `redis_notifier.rs`.
//! Each test skips (or fails under `CI=true`) when redis-server, openssl or the Python
//! oracle is missing.

mod common;

use std::time::{Duration, Instant};

use common::text::{T0, event, uuid};
use common::{Sentinel, cs};
use osprofiler::Event;
use osprofiler_store::{ConnectionString, OpenError, Options, open, sink};
use osprofiler_testkit::{Oracle, RedisServer, TempDir, free_port, need};
use serde_json::{Value, json};

fn opts() -> Options {
    Options {
        socket_timeout: Duration::from_secs(2),
        ..Options::default()
    }
}

/// A two-point trace: a wsgi point with a db point inside, the db point failing.
fn small_trace(base: &str) -> Vec<Event> {
    let (w, d) = (
        format!("bbbbbbbb{}", &base[8..]),
        format!("cccccccc{}", &base[8..]),
    );
    vec![
        event(
            base,
            &w,
            base,
            "wsgi-start",
            0,
            json!({"request": {"path": "/"}}),
        ),
        event(base, &w, base, "wsgi-stop", 900, json!({})),
        event(
            base,
            &d,
            &w,
            "db-start",
            100,
            json!({"db": {"statement": "SELECT 1"}}),
        ),
        event(
            base,
            &d,
            &w,
            "db-stop",
            500,
            json!({"etype": "OperationalError", "message": "gone"}),
        ),
    ]
}

fn lrange(redis: &RedisServer, key: &str) -> Vec<String> {
    redis
        .cmd(&["LRANGE", key, "0", "-1"])
        .unwrap()
        .into_strings()
        .unwrap()
}

fn ids(list: &[osprofiler_store::TraceSummary]) -> Vec<&str> {
    list.iter().map(|s| s.base_id.as_str()).collect()
}

fn open_err(cs: &ConnectionString, o: &Options) -> String {
    match open(cs, o) {
        Ok(_) => panic!("{cs} opened"),
        Err(e @ OpenError::Unavailable { .. }) => {
            let m = e.to_string();
            assert!(!m.contains('\n'), "one line: {m}");
            m
        }
        Err(e) => panic!("{cs}: unexpected error {e}"),
    }
}

#[test]
fn layout_index_ttl_and_legacy_keys() {
    let Some(redis) = need("redis-server", RedisServer::start()) else {
        return;
    };
    let cs = cs(&redis.url());
    let o = Options {
        filter_error_trace: true,
        ..opts()
    };
    let mut w = sink(&cs, &o).unwrap();
    let (a, b) = (uuid(1), uuid(2));
    // Two traces interleaved in one batch, events not in time order (as the notifier
    // hands over whole points in start order).
    let mut batch = small_trace(&a);
    batch.insert(2, event(&b, &uuid(3), &b, "rpc-start", 50, json!({})));
    batch.push(event(&b, &uuid(3), &b, "rpc-stop", 60, json!({})));
    w.write(&batch).unwrap();

    // One list per trace, newest first, each value the event's exact osprofiler JSON.
    let list_a = lrange(&redis, &format!("osprofiler_opt:{a}"));
    let names: Vec<String> = list_a
        .iter()
        .map(|s| {
            serde_json::from_str::<Value>(s).unwrap()["name"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(names, ["wsgi-stop", "db-stop", "db-start", "wsgi-start"]);
    let mut sorted = small_trace(&a);
    sorted.sort_by_key(|e| e.timestamp);
    let texts: Vec<String> = sorted.iter().rev().map(Event::to_json).collect();
    assert_eq!(list_a, texts);
    assert!(list_a[0].contains("\"name\": \"wsgi-stop\", \"base_id\": "));
    assert_eq!(lrange(&redis, &format!("osprofiler_opt:{b}")).len(), 2);

    // The index holds each trace's earliest time; Python's error marker its JSON.
    // Scores are Unix seconds (a double: compared in µs).
    let score = |key: &str, id: &str| {
        let s = redis.cmd(&["ZSCORE", key, id]).unwrap().into_string()?;
        Ok::<i64, String>((s.parse::<f64>().unwrap() * 1e6).round() as i64 - T0)
    };
    assert_eq!(score("osprofiler_index", &a), Ok(0));
    assert_eq!(score("osprofiler_index", &b), Ok(50));
    let marker = redis
        .cmd(&["GET", &format!("osprofiler_error:{a}")])
        .unwrap()
        .into_string()
        .unwrap();
    assert_eq!(
        marker,
        format!(r#"{{"base_id": "{a}", "timestamp": "2025-11-25T12:00:00.000500"}}"#)
    );
    assert!(
        redis
            .cmd(&["GET", &format!("osprofiler_error:{b}")])
            .unwrap()
            .is_nil()
    );
    assert!(score("osprofiler_error_index", &a).is_ok());

    // A later batch with an earlier event lowers the trace's start (ZADD LT).
    w.write(&[event(&b, &uuid(4), &b, "db-start", 10, json!({}))])
        .unwrap();
    assert_eq!(score("osprofiler_index", &b), Ok(10));

    let mut store = open(&cs, &o).unwrap();
    assert_eq!(store.describe(), cs.to_string());
    assert_eq!(store.events(&a).unwrap().len(), 4);
    let list = store.list_traces(None).unwrap();
    assert_eq!(ids(&list), [b.as_str(), a.as_str()]);
    assert_eq!(list[0].timestamp, "2025-11-25T12:00:00.000010");
    assert_eq!(list[1].timestamp, "2025-11-25T12:00:00.000000");
    assert_eq!(ids(&store.list_traces(Some(1)).unwrap()), [b.as_str()]);
    assert_eq!(ids(&store.list_error_traces(None).unwrap()), [a.as_str()]);
    let report = store.report(&a).unwrap().unwrap();
    assert_eq!(report.roots().len(), 1);
    assert_eq!(
        report.roots()[0].children()[0].exception(),
        Some("OperationalError")
    );
    assert!(store.report(&uuid(99)).unwrap().is_none());

    // osprofiler's legacy layout (one key per event) is read too, and a value that is
    // not an event is skipped.
    let c = uuid(5);
    for (i, e) in small_trace(&c).iter().enumerate() {
        redis
            .cmd(&["SET", &format!("osprofiler:{c}_{i}"), &e.to_json()])
            .unwrap();
    }
    redis
        .cmd(&["LPUSH", &format!("osprofiler_opt:{a}"), "not json {"])
        .unwrap();
    assert_eq!(store.events(&c).unwrap().len(), 4);
    assert_eq!(store.events(&a).unwrap().len(), 4);
    let list = store.list_traces(None).unwrap();
    assert_eq!(ids(&list), [b.as_str(), a.as_str(), c.as_str()]);

    // With a TTL every key of the trace expires; the index entries go when listing
    // finds the list gone.
    let o = Options {
        ttl: Some(Duration::from_millis(400)),
        filter_error_trace: true,
        ..opts()
    };
    let mut w = sink(&cs, &o).unwrap();
    let d = uuid(6);
    w.write(&small_trace(&d)).unwrap();
    for key in [
        format!("osprofiler_opt:{d}"),
        format!("osprofiler_error:{d}"),
    ] {
        let ttl = redis.cmd(&["PTTL", &key]).unwrap().as_int().unwrap();
        assert!(ttl > 0 && ttl <= 400, "{key}: {ttl}");
    }
    assert!(ids(&store.list_traces(None).unwrap()).contains(&d.as_str()));
    assert!(ids(&store.list_error_traces(None).unwrap()).contains(&d.as_str()));
    std::thread::sleep(Duration::from_millis(600));
    assert!(!ids(&store.list_traces(None).unwrap()).contains(&d.as_str()));
    assert!(!ids(&store.list_error_traces(None).unwrap()).contains(&d.as_str()));
    assert!(
        score("osprofiler_index", &d).is_err(),
        "stale index entry removed"
    );
    assert!(score("osprofiler_error_index", &d).is_err());
    assert!(score("osprofiler_index", &a).is_ok(), "live entries stay");
}

#[test]
fn large_batches_keep_order() {
    let Some(redis) = need("redis-server", RedisServer::start()) else {
        return;
    };
    let cs = cs(&redis.url());
    let mut w = sink(&cs, &opts()).unwrap();
    // 3,000 events of ~1 KB over two traces, interleaved: several LPUSH per trace and
    // several writes to the socket per batch.
    let (a, b) = (uuid(60), uuid(61));
    let pad = "x".repeat(800);
    let batch: Vec<Event> = (0..3000)
        .map(|i| {
            let base = if i % 3 == 0 { &b } else { &a };
            let name = if i % 2 == 0 { "db-start" } else { "db-stop" };
            event(
                base,
                &uuid(1000 + i / 2),
                base,
                name,
                i as i64,
                json!({"pad": pad, "i": i}),
            )
        })
        .collect();
    w.write(&batch).unwrap();
    for (base, n) in [(&a, 2000), (&b, 1000)] {
        let list = lrange(&redis, &format!("osprofiler_opt:{base}"));
        assert_eq!(list.len(), n);
        let order: Vec<i64> = list
            .iter()
            .map(|s| {
                serde_json::from_str::<Value>(s).unwrap()["info"]["i"]
                    .as_i64()
                    .unwrap()
            })
            .collect();
        assert!(order.windows(2).all(|w| w[0] > w[1]), "newest first");
    }
    let mut store = open(&cs, &opts()).unwrap();
    assert_eq!(store.events(&a).unwrap().len(), 2000);
    assert_eq!(
        ids(&store.list_traces(None).unwrap()),
        [a.as_str(), b.as_str()]
    );
}

#[test]
fn password_user_and_database() {
    let Some(redis) = need(
        "redis-server",
        RedisServer::start_with(&["--requirepass", "s3cret"]),
    ) else {
        return;
    };
    let port = redis.port();
    let base = uuid(10);
    for url in [
        format!("redis://:s3cret@127.0.0.1:{port}/3"),
        format!("redis://default:s3cret@127.0.0.1:{port}?db=3"),
    ] {
        let cs = cs(&url);
        sink(&cs, &opts())
            .unwrap()
            .write(&small_trace(&base))
            .unwrap();
        let mut store = open(&cs, &opts()).unwrap();
        assert!(!store.describe().contains("s3cret"));
        assert!(store.report(&base).unwrap().is_some());
    }
    // Both went to database 3, none to 0.
    let mut c = redis.connect().unwrap();
    assert_eq!(c.cmd(&["DBSIZE"]).unwrap().as_int(), Some(0));
    c.cmd(&["SELECT", "3"]).unwrap();
    let n = c
        .cmd(&["LLEN", &format!("osprofiler_opt:{base}")])
        .unwrap()
        .as_int();
    assert_eq!(n, Some(8));

    let wrong = cs(&format!("redis://:letmein-NOT@127.0.0.1:{port}"));
    let m = open_err(&wrong, &opts());
    assert!(
        m.contains("WRONGPASS invalid username-password pair"),
        "{m}"
    );
    assert!(!m.contains("letmein-NOT"), "{m}");
    // A wrong password cannot get better by retrying: the sink refuses it at once.
    let e = sink(&wrong, &opts())
        .err()
        .expect("sink refuses a wrong password");
    assert!(e.to_string().contains("WRONGPASS"), "{e}");
    let m = open_err(&cs(&format!("redis://127.0.0.1:{port}")), &opts());
    assert!(m.contains("NOAUTH"), "{m}");
    let m = open_err(
        &cs(&format!("redis://:s3cret@127.0.0.1:{port}/99")),
        &opts(),
    );
    assert!(m.contains("DB index is out of range"), "{m}");
}

#[test]
fn server_down_fails_fast_and_recovers() {
    let Some(mut redis) = need("redis-server", RedisServer::start()) else {
        return;
    };
    let cs = cs(&redis.url());
    let mut w = sink(&cs, &opts()).unwrap();
    w.write(&small_trace(&uuid(20))).unwrap();

    redis.stop();
    let m = open_err(&cs, &opts());
    assert_eq!(
        m,
        format!("cannot open {cs}: connection refused"),
        "short and to the point"
    );
    // The next batch fails (its connection is gone); then attempts are spaced out
    // (50 ms, doubling), and batches in between fail at once.
    let batch = small_trace(&uuid(22));
    let e = w.write(&batch).unwrap_err().to_string();
    assert!(e.contains("connection refused"), "{e}");
    let next_attempt_ms = |e: &str| -> Option<u64> {
        let rest = &e[e.find("next attempt in ")? + 16..];
        rest.split(' ').next()?.parse().ok()
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let e = w.write(&batch).unwrap_err().to_string();
        assert!(!e.contains('\n'), "{e}");
        if next_attempt_ms(&e).is_some_and(|ms| ms >= 300) {
            break;
        }
        assert!(Instant::now() < deadline, "the backoff does not grow: {e}");
        std::thread::sleep(Duration::from_millis(5));
    }
    // Something that accepts connections and never answers now holds the port: an
    // attempt would be seen here, and would wait for the timeout.
    let port = redis.port();
    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    listener.set_nonblocking(true).unwrap();
    let started = Instant::now();
    let mut fast = 0;
    while started.elapsed() < Duration::from_millis(100) {
        let e = w.write(&batch).unwrap_err().to_string();
        assert!(next_attempt_ms(&e).is_some(), "{e}");
        fast += 1;
    }
    assert!(fast >= 10, "only {fast} failed batches in 100 ms");
    let attempt = listener.accept();
    assert!(
        matches!(&attempt, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "a connection was attempted during the backoff: {attempt:?}"
    );
    drop(listener);

    // A sink made while the server is down is still made: it connects later.
    let mut late = sink(&cs, &opts()).expect("server down is not a configuration error");
    assert!(late.write(&small_trace(&uuid(23))).is_err());

    redis.restart().unwrap();
    // Within the longest backoff both get through again.
    let deadline = Instant::now() + Duration::from_secs(8);
    let (mut ok_w, mut ok_late) = (false, false);
    while !(ok_w && ok_late) && Instant::now() < deadline {
        ok_w = ok_w || w.write(&small_trace(&uuid(24))).is_ok();
        ok_late = ok_late || late.write(&small_trace(&uuid(25))).is_ok();
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(ok_w && ok_late, "sinks did not recover");
    let mut store = open(&cs, &opts()).unwrap();
    assert!(store.report(&uuid(24)).unwrap().is_some());
    assert!(store.report(&uuid(25)).unwrap().is_some());

    // A connection the server closed while idle (its `timeout`, a restart) costs no
    // batch: it is noticed and the batch is sent again on a new connection.
    redis
        .cmd(&["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"])
        .unwrap();
    w.write(&small_trace(&uuid(26))).unwrap();
    // So does the store's (its reads are safe to repeat).
    assert!(store.report(&uuid(26)).unwrap().is_some());
}

#[test]
fn tls() {
    let dir = TempDir::new();
    let Some(_certs) = need("openssl", osprofiler_testkit::TestCerts::make(dir.path())) else {
        return;
    };
    let tls_port = free_port().to_string();
    let file = |n: &str| dir.join(n).display().to_string();
    let (cert, key, ca) = (file("server.pem"), file("server.key"), file("ca.pem"));
    // The harness checks readiness on the plain port, so the server keeps one.
    let Some(redis) = need(
        "redis-server with TLS",
        RedisServer::start_with(&[
            "--tls-port",
            &tls_port,
            "--tls-cert-file",
            &cert,
            "--tls-key-file",
            &key,
            "--tls-ca-cert-file",
            &ca,
            "--tls-auth-clients",
            "no",
        ]),
    ) else {
        return;
    };
    let base = uuid(30);
    let trusted = cs(&format!("rediss://127.0.0.1:{tls_port}?ssl_ca_certs={ca}"));
    sink(&trusted, &opts())
        .unwrap()
        .write(&small_trace(&base))
        .unwrap();
    let mut store = open(&trusted, &opts()).unwrap();
    assert_eq!(store.events(&base).unwrap().len(), 4);
    assert_eq!(ids(&store.list_traces(None).unwrap()), [base.as_str()]);
    // It really went over TLS to that server.
    assert_eq!(lrange(&redis, &format!("osprofiler_opt:{base}")).len(), 4);

    // The system roots do not know our CA.
    let untrusted = cs(&format!("rediss://127.0.0.1:{tls_port}"));
    let m = open_err(&untrusted, &opts());
    assert!(m.contains("invalid peer certificate: UnknownIssuer"), "{m}");
    let e = sink(&untrusted, &opts())
        .err()
        .expect("an untrusted server is refused");
    assert!(e.to_string().contains("UnknownIssuer"), "{e}");
    // The certificate names 127.0.0.1 only.
    let m = open_err(
        &cs(&format!("rediss://localhost:{tls_port}?ssl_ca_certs={ca}")),
        &opts(),
    );
    assert!(m.contains("invalid peer certificate"), "{m}");
    // ssl_cert_reqs=none accepts it.
    let unchecked = cs(&format!("rediss://127.0.0.1:{tls_port}?ssl_cert_reqs=none"));
    let mut store = open(&unchecked, &opts()).unwrap();
    assert_eq!(store.events(&base).unwrap().len(), 4);
    // A CA file that is not there is an error at open, naming it.
    let m = open_err(
        &cs(&format!(
            "rediss://127.0.0.1:{tls_port}?ssl_ca_certs=/nonexistent/ca.pem"
        )),
        &opts(),
    );
    assert!(m.contains("/nonexistent/ca.pem"), "{m}");
    // Plain Redis on the TLS port fails cleanly too.
    let m = open_err(
        &cs(&format!("redis://127.0.0.1:{tls_port}")),
        &Options {
            socket_timeout: Duration::from_millis(500),
            ..opts()
        },
    );
    assert!(m.starts_with("cannot open redis://"), "{m}");
}

#[test]
fn sentinel() {
    let Some(master) = need(
        "redis-server",
        RedisServer::start_with(&["--requirepass", "pw"]),
    ) else {
        return;
    };
    let Some(other) = need("redis-server", RedisServer::start()) else {
        return;
    };
    let Some(sentinel) = need(
        "redis-server --sentinel",
        Sentinel::start(
            &format!(
                "sentinel monitor mymaster 127.0.0.1 {} 1\nsentinel monitor billing 127.0.0.1 {} 1\n",
                master.port(),
                other.port()
            ),
            None,
        ),
    ) else {
        return;
    };
    // A dead sentinel first: the next one is asked.
    let dead = free_port();
    let url = format!(
        "redissentinel://:pw@127.0.0.1:{dead},127.0.0.1:{}/2",
        sentinel.port
    );
    let base = uuid(40);
    let c = cs(&url);
    sink(&c, &opts())
        .unwrap()
        .write(&small_trace(&base))
        .unwrap();
    let mut store = open(&c, &opts()).unwrap();
    assert!(!store.describe().contains(":pw@"));
    assert_eq!(store.events(&base).unwrap().len(), 4);
    let mut direct = master.connect().unwrap();
    direct.cmd(&["SELECT", "2"]).unwrap();
    assert_eq!(
        direct
            .cmd(&["LLEN", &format!("osprofiler_opt:{base}")])
            .unwrap()
            .as_int(),
        Some(4)
    );

    // Another master, by the name in the options.
    let billing = Options {
        sentinel_service_name: "billing".into(),
        ..opts()
    };
    let c = cs(&format!("redissentinel://127.0.0.1:{}", sentinel.port));
    sink(&c, &billing)
        .unwrap()
        .write(&small_trace(&uuid(41)))
        .unwrap();
    assert_eq!(
        lrange(&other, &format!("osprofiler_opt:{}", uuid(41))).len(),
        4
    );
    assert_eq!(
        ids(&open(&c, &billing).unwrap().list_traces(None).unwrap()),
        [uuid(41)]
    );

    let unknown = Options {
        sentinel_service_name: "nope".into(),
        ..opts()
    };
    let m = open_err(&c, &unknown);
    assert!(m.contains("no master named \"nope\""), "{m}");
}

#[test]
fn reads_what_python_wrote() {
    let Some(redis) = need("redis-server", RedisServer::start()) else {
        return;
    };
    let Some(py) = need("python osprofiler oracle", Oracle::locate()) else {
        return;
    };
    let url = redis.url();
    let base = py.write_two_service_trace(&url).unwrap();
    assert!(
        redis.cmd(&["EXISTS", "osprofiler_index"]).unwrap().as_int() == Some(0),
        "Python writes no index"
    );

    let mut store = open(&cs(&url), &opts()).unwrap();
    let report = store.report(&base).unwrap().expect("trace found");
    let python: Value = py.show_json(&base, &url).unwrap();
    assert_eq!(report.to_json(), python);
    // The tree: wsgi (api) → db, rpc (compute) → driver (failed).
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

    // Listed though it has no index entry, at its first event's time.
    let first = store
        .events(&base)
        .unwrap()
        .iter()
        .filter_map(|e| e["timestamp"].as_str().map(str::to_owned))
        .min()
        .unwrap();
    let list = store.list_traces(None).unwrap();
    assert_eq!(ids(&list), [base.as_str()]);
    assert_eq!(list[0].timestamp, first);
    assert_eq!(
        ids(&store.list_error_traces(None).unwrap()),
        [base.as_str()]
    );
}

#[test]
fn python_reads_what_we_wrote() {
    let Some(redis) = need("redis-server", RedisServer::start()) else {
        return;
    };
    let Some(py) = need("python osprofiler oracle", Oracle::locate()) else {
        return;
    };
    let url = redis.url();
    let base = uuid(50);
    let o = Options {
        filter_error_trace: true,
        ..opts()
    };
    let mut w = sink(&cs(&url), &o).unwrap();
    // Two batches, as a trace crossing threads arrives.
    let events = small_trace(&base);
    w.write(&events[2..]).unwrap();
    w.write(&events[..2]).unwrap();

    let mut store = open(&cs(&url), &o).unwrap();
    let ours = store.report(&base).unwrap().unwrap().to_json();
    let python: Value = py.show_json(&base, &url).unwrap();
    assert_eq!(ours, python);
    let list = py
        .cli(&["trace", "list", "--connection-string", &url])
        .unwrap();
    assert!(list.contains(&base), "{list}");
    let errors = py
        .cli(&[
            "trace",
            "list",
            "--error-trace",
            "1",
            "--connection-string",
            &url,
        ])
        .unwrap();
    assert!(errors.contains(&base), "{errors}");
}
