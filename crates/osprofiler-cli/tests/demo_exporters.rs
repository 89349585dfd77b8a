//! `osprofiler demo` sending to several backends at once: a real Redis (read back), a
//! real OpenTelemetry collector (rotel) and a Jaeger agent's UDP port (decoded with
//! Jaeger's own Thrift code); the demo on write-only backends alone; a second Ctrl-C
//! while the clean shutdown waits on a collector that hangs.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::net::{TcpListener, UdpSocket};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use osprofiler_store::{ConnectionString, Options};
use osprofiler_testkit::{JaegerVenv, RedisServer, Rotel, TempDir, free_port, need};
use serde_json::Value;

const DECODER: &str = include_str!("../../osprofiler-store/tests/jaeger_decode.py");

fn demo(dir: &TempDir) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_osprofiler"));
    cmd.arg("demo")
        .current_dir(dir.path())
        .env("XDG_DATA_HOME", dir.join("data"))
        .env("TMPDIR", dir.path())
        .env_remove("OSPROFILER_CONNECTION_STRING");
    cmd
}

/// A Jaeger agent's port: keeps every datagram.
struct Agent {
    port: u16,
    got: Arc<Mutex<Vec<Vec<u8>>>>,
    stop: Arc<AtomicBool>,
}

impl Agent {
    fn start() -> Agent {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let port = sock.local_addr().unwrap().port();
        let got = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (g, s) = (got.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65_536];
            while !s.load(Ordering::Relaxed) {
                if let Ok(n) = sock.recv(&mut buf) {
                    g.lock().unwrap().push(buf[..n].to_vec());
                }
            }
        });
        Agent { port, got, stop }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Jaeger's own code decodes the datagrams: one JSON object per datagram.
fn decode(py: &JaegerVenv, datagrams: &[Vec<u8>]) -> Vec<Value> {
    let mut framed = Vec::new();
    for d in datagrams {
        framed.extend_from_slice(&(d.len() as u32).to_be_bytes());
        framed.extend_from_slice(d);
    }
    py.python_with_stdin(DECODER, &[], &framed)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn demo_to_redis_otlp_and_jaeger_at_once() {
    let Some(redis) = need("redis-server", RedisServer::start()) else {
        return;
    };
    let Some(rotel) = need("rotel collector", Rotel::start()) else {
        return;
    };
    let Some(py) = need("jaeger-client venv", JaegerVenv::locate()) else {
        return;
    };
    let agent = Agent::start();
    let dir = TempDir::new();
    // Spaces and a comma between them, as a [profiler] connection_string may have.
    let list = format!(
        "{} {}, jaeger://127.0.0.1:{}",
        redis.url(),
        rotel.http_connection_string(),
        agent.port
    );
    let o = demo(&dir)
        .args(["--connection-string", &list])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let base = out
        .lines()
        .find_map(|l| l.strip_prefix("Trace ID: "))
        .unwrap()
        .to_owned();
    let hex = base.replace('-', "");
    // It says where the trace went, and how to show it from the readable backend.
    assert!(
        out.contains(&format!(
            "The trace went to the OTLP collector at {}: in Jaeger, open http://localhost:16686/trace/{hex}",
            rotel.http_connection_string()
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "The trace went to the Jaeger agent at jaeger://127.0.0.1:{}",
            agent.port
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!("--connection-string {}/0", redis.url())),
        "{out}"
    );

    // Redis: the whole trace, as `trace show` reads it.
    let cs: ConnectionString = redis.url().parse().unwrap();
    let mut store = osprofiler_store::open(&cs, &Options::default()).unwrap();
    let report = store.report(&base).unwrap().expect("in Redis");
    let points = report.len();
    assert_eq!(points, 30, "the demo's trace has 30 points");

    // The collector: the same points, every one in this trace (the unsigned and forged
    // requests sent nothing), one span each.
    let spans = rotel
        .wait_for(
            |s| s.iter().filter(|s| s.trace_id == hex).count() >= points,
            Duration::from_secs(10),
        )
        .expect("spans at the collector");
    assert!(
        spans.iter().all(|s| s.trace_id == hex),
        "another trace was sent"
    );
    assert_eq!(spans.len(), points);
    let ids: BTreeSet<&str> = spans.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids.len(), points, "one span per point");
    let services: BTreeSet<&str> = spans.iter().map(|s| s.service_name.as_str()).collect();
    assert_eq!(
        services,
        BTreeSet::from([
            "nova-api",
            "nova-compute",
            "nova-conductor",
            "placement-placement"
        ])
    );
    let root: Vec<_> = spans.iter().filter(|s| s.parent_id.is_empty()).collect();
    assert_eq!(root.len(), 1, "one first-level point");
    assert_eq!(root[0].name, "WSGI_POST_/v2.1/servers");
    assert_eq!(root[0].kind, "SPAN_KIND_SERVER");
    assert!(
        spans
            .iter()
            .any(|s| s.status_code.as_deref() == Some("STATUS_CODE_ERROR")),
        "the NoValidHost attempt failed"
    );

    // The Jaeger agent: the same points again, with the 128-bit trace id.
    let deadline = Instant::now() + Duration::from_secs(5);
    let decoded = loop {
        let datagrams = agent.got.lock().unwrap().clone();
        let decoded = decode(&py, &datagrams);
        let n: usize = decoded
            .iter()
            .map(|d| d["spans"].as_array().map_or(0, Vec::len))
            .sum();
        if n >= points || Instant::now() > deadline {
            break decoded;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let high = u64::from_str_radix(&hex[..16], 16).unwrap();
    let low = u64::from_str_radix(&hex[16..], 16).unwrap();
    let jaeger_spans: Vec<&Value> = decoded
        .iter()
        .flat_map(|d| d["spans"].as_array().into_iter().flatten())
        .collect();
    assert_eq!(jaeger_spans.len(), points);
    for s in &jaeger_spans {
        assert_eq!(s["traceIdHigh"].as_u64(), Some(high));
        assert_eq!(s["traceIdLow"].as_u64(), Some(low));
    }
    let jaeger_ids: BTreeSet<String> = jaeger_spans
        .iter()
        .map(|s| format!("{:016x}", s["spanId"].as_u64().unwrap()))
        .collect();
    let otlp_ids: BTreeSet<String> = ids.iter().map(|s| s.to_string()).collect();
    assert_eq!(jaeger_ids, otlp_ids, "the same span ids in Jaeger and OTLP");
}

#[test]
fn demo_on_write_only_backends_reports_from_its_own_copy() {
    let Some(rotel) = need("rotel collector", Rotel::start()) else {
        return;
    };
    let dir = TempDir::new();
    let o = demo(&dir)
        .args(["--connection-string", &rotel.grpc_connection_string()])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let base = out
        .lines()
        .find_map(|l| l.strip_prefix("Trace ID: "))
        .unwrap()
        .replace('-', "");
    assert!(
        out.contains("The backends are write only: look the trace up in Jaeger"),
        "{out}"
    );
    assert!(!out.contains("osprofiler trace show"), "{out}");
    assert!(out.contains("otlp+grpc://127.0.0.1"), "{out}");
    // The summary and the report came from the demo's own copy.
    assert!(dir.join("osprofiler-demo.html").is_file());
    let spans = rotel
        .wait_for(
            |s| s.iter().filter(|s| s.trace_id == base).count() >= 30,
            Duration::from_secs(10),
        )
        .expect("spans over gRPC");
    assert_eq!(spans.len(), 30);
}

#[test]
fn a_second_ctrl_c_exits_at_once() {
    // A collector that accepts and never answers: the clean shutdown waits on it.
    let hang = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = hang.local_addr().unwrap().port();
    let held = Arc::new(Mutex::new(Vec::new()));
    let h = held.clone();
    std::thread::spawn(move || {
        for s in hang.incoming().flatten() {
            h.lock().unwrap().push(s);
        }
    });
    let dir = TempDir::new();
    let events = dir.join("events.jsonl");
    let list = format!(
        "file://{} otlp://127.0.0.1:{port}?timeout=30",
        events.display()
    );
    let listen = format!("127.0.0.1:{}", free_port());
    let mut child = demo(&dir)
        .args(["--serve", "--listen", &listen, "--connection-string", &list])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let line = lines.next().expect("demo output").unwrap();
        if line.contains(&format!("api: http://{listen}")) {
            break;
        }
        assert!(Instant::now() < deadline, "the demo did not come up");
    }
    // A traced request, so that the collector has a batch to hang on.
    let o = Command::new(env!("CARGO_BIN_EXE_osprofiler"))
        .args(["trace", "headers", "--hmac-key", "SECRET_KEY"])
        .output()
        .unwrap();
    let headers = String::from_utf8(o.stdout).unwrap();
    let mut s = std::net::TcpStream::connect(&listen).unwrap();
    use std::io::{Read, Write};
    let body = r#"{"server":{"name":"vm"}}"#;
    write!(
        s,
        "POST /v2.1/servers HTTP/1.1\r\nHost: x\r\n{}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        headers.trim_end().replace('\n', "\r\n"),
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
    std::thread::sleep(Duration::from_millis(700));

    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    // The first Ctrl-C starts a clean shutdown, which waits on the hung collector ...
    std::thread::sleep(Duration::from_millis(300));
    assert!(child.try_wait().unwrap().is_none(), "still shutting down");
    // ... and a second one ends it at once.
    let t = Instant::now();
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "not gone 2 s after a second Ctrl-C"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(status.code(), Some(130), "{status:?}");
    let mut err = String::new();
    let _ = child.stderr.take().unwrap().read_to_string(&mut err);
    assert!(!err.contains("panicked"), "{err}");
}
