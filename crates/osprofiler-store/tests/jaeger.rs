//! The `jaeger://` exporter behind the real notifier, checked with Jaeger's own code: what
//! we send is received on a loopback UDP socket and decoded by jaeger-client's generated
//! Thrift code (`tests/jaeger_decode.py`, in the `target/jaeger` virtualenv), and compared
//! with what osprofiler 4.3.0's `jaeger://` driver sends for the very same events.
//!
//! The notifier has one sink per process and `cargo test` runs a file's tests in one
//! process: the tests take turns ([`serial`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use osprofiler::notifier;
use osprofiler::{HmacKey, Id, Identity, Info, TraceContext};
use osprofiler_store::{Backends, ConnectionString, JaegerStats, Options, jaeger_stats, sink_all};
use osprofiler_testkit::{JaegerVenv, TempDir, need};
use serde_json::{Value, json};

const DECODER: &str = include_str!("jaeger_decode.py");

fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A Jaeger agent's socket: a loopback UDP socket whose thread keeps every datagram.
/// Received in Rust, not Python: a burst of datagrams must not overflow the socket's
/// buffer while Python decodes.
struct Collector {
    port: u16,
    got: Arc<Mutex<Vec<Vec<u8>>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Collector {
    fn start() -> Collector {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let port = sock.local_addr().unwrap().port();
        let got = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (g, s) = (got.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = vec![0u8; 65_536];
            while !s.load(Ordering::Relaxed) {
                if let Ok(n) = sock.recv(&mut buf) {
                    g.lock().unwrap().push(buf[..n].to_vec());
                }
            }
        });
        Collector {
            port,
            got,
            stop,
            thread: Some(thread),
        }
    }

    fn count(&self) -> usize {
        self.got.lock().unwrap().len()
    }

    /// Waits until `n` datagrams arrived; false on timeout.
    fn wait_for(&self, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.count() < n {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        true
    }

    /// Waits until nothing more arrived for `quiet`.
    fn settle(&self, quiet: Duration) {
        let mut last = self.count();
        loop {
            std::thread::sleep(quiet);
            let now = self.count();
            if now == last {
                return;
            }
            last = now;
        }
    }

    fn take(&self) -> Vec<Vec<u8>> {
        std::mem::take(&mut *self.got.lock().unwrap())
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Each datagram as jaeger-client's Thrift code reads it (one JSON object each).
fn decode(py: &JaegerVenv, datagrams: &[Vec<u8>]) -> Vec<Value> {
    let mut framed = Vec::new();
    for d in datagrams {
        framed.extend_from_slice(&(d.len() as u32).to_be_bytes());
        framed.extend_from_slice(d);
    }
    let out = py.python_with_stdin(DECODER, &[], &framed).unwrap();
    let batches: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(batches.len(), datagrams.len());
    for b in &batches {
        assert!(b.get("error").is_none(), "Jaeger cannot read it: {b}");
        assert_eq!(b["trailing"], 0, "bytes after the message: {b}");
        assert_eq!(b["message"], "emitBatch");
        assert_eq!(b["oneway"], true);
    }
    batches
}

/// A decoded span with its batch's process.
#[derive(Debug, Clone)]
struct Got {
    service: String,
    process_tags: BTreeMap<String, Value>,
    span: Value,
}

impl Got {
    fn u64(&self, field: &str) -> u64 {
        self.span[field].as_u64().unwrap()
    }

    fn trace_id(&self) -> u128 {
        (u128::from(self.u64("traceIdHigh")) << 64) | u128::from(self.u64("traceIdLow"))
    }

    /// Tags by key: (vType, value); a key appears once.
    fn tags(&self) -> BTreeMap<String, (String, Value)> {
        tag_map(&self.span["tags"])
    }

    fn op(&self) -> &str {
        self.span["operationName"].as_str().unwrap()
    }
}

fn tag_map(tags: &Value) -> BTreeMap<String, (String, Value)> {
    let mut out = BTreeMap::new();
    for t in tags.as_array().unwrap() {
        let key = t[0].as_str().unwrap().to_owned();
        let prev = out.insert(
            key.clone(),
            (t[1].as_str().unwrap().to_owned(), t[2].clone()),
        );
        assert!(prev.is_none(), "tag {key} twice: {tags}");
    }
    out
}

fn spans_of(batches: &[Value]) -> Vec<Got> {
    let mut out = Vec::new();
    for b in batches {
        let process_tags = tag_map(&b["process_tags"])
            .into_iter()
            .map(|(k, (_, v))| (k, v))
            .collect::<BTreeMap<_, _>>();
        for s in b["spans"].as_array().unwrap() {
            out.push(Got {
                service: b["service"].as_str().unwrap().to_owned(),
                process_tags: process_tags.clone(),
                span: s.clone(),
            });
        }
    }
    out
}

fn by_span_id(spans: &[Got]) -> HashMap<u64, Got> {
    let mut out = HashMap::new();
    for s in spans {
        let prev = out.insert(s.u64("spanId"), s.clone());
        assert!(prev.is_none(), "span sent twice: {}", s.span);
    }
    out
}

/// A point as its events say (from the JSON lines file the same notifier wrote).
#[derive(Debug, Clone)]
struct Point {
    name: String,
    id: u128,
    parent: u128,
    start_us: i64,
    stop_us: i64,
    stop_info: Value,
}

fn id(v: &Value) -> u128 {
    v.as_str().unwrap().parse::<Id>().unwrap().0
}

fn micros(v: &Value) -> i64 {
    v.as_str()
        .unwrap()
        .parse::<osprofiler::Timestamp>()
        .unwrap()
        .0
}

fn points(events: &[Value]) -> HashMap<u64, Point> {
    let mut out: HashMap<u64, Point> = HashMap::new();
    for e in events {
        let name = e["name"].as_str().unwrap();
        let pid = id(&e["trace_id"]);
        if let Some(point) = name.strip_suffix("-start") {
            out.insert(
                pid as u64,
                Point {
                    name: point.to_owned(),
                    id: pid,
                    parent: id(&e["parent_id"]),
                    start_us: micros(&e["timestamp"]),
                    stop_us: 0,
                    stop_info: Value::Null,
                },
            );
        } else {
            let p = out.get_mut(&(pid as u64)).expect("stop after start");
            p.stop_us = micros(&e["timestamp"]);
            p.stop_info = e["info"].clone();
        }
    }
    out
}

fn read_events(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn stats_of(port: u16) -> JaegerStats {
    jaeger_stats()
        .into_iter()
        .find(|s| s.agent.contains(&format!("127.0.0.1:{port}")))
        .expect("the jaeger sink is open")
}

/// The notifier writes to Jaeger at `jaeger` and to a JSON lines file (whose events the
/// tests compare the spans with); keep the guard.
fn pipeline(jaeger: &str, events: &std::path::Path, opts: &Options) -> notifier::NotifierGuard {
    let list: Backends = format!("{jaeger} file://{}", events.display())
        .parse()
        .unwrap();
    notifier::set_boxed_sink(sink_all(&list, opts).unwrap())
}

#[derive(Debug, thiserror::Error)]
#[error("No valid host was found")]
struct NoValidHost;

fn pause() {
    std::thread::sleep(Duration::from_millis(2));
}

#[osprofiler::trace(name = "driver")]
fn spawn(vm: &str) -> Result<(), NoValidHost> {
    let _ = vm;
    pause();
    Err(NoValidHost)
}

#[osprofiler::trace(name = "rpc", hide_result = false)]
fn build_and_run(vm: &str) -> u32 {
    pause();
    let _ = spawn(vm);
    3
}

fn wsgi_info() -> Info {
    Info::new().with(
        "request",
        json!({"path": "/v2.1/servers", "query": "limit=10", "method": "POST", "scheme": "http"}),
    )
}

fn db_info() -> Info {
    Info::new().with(
        "db",
        json!({"statement": "SELECT * FROM instances WHERE id = %s", "params": [1]}),
    )
}

/// "api" on host-a takes a request, reads the database, lists servers, and calls
/// "compute" on host-b (another thread, as another service would be), whose driver
/// fails. Returns the base id.
fn record_two_services() -> Id {
    let key = HmacKey::new("SECRET_KEY");
    let api = Identity::new("nova", "api", "host-a");
    let compute = Identity::new("nova", "compute", "host-b");
    let ctx = TraceContext::new(key.clone(), None, None).with_identity(&api);
    ctx.in_scope(|| {
        let _wsgi = osprofiler::point_with("wsgi", wsgi_info());
        pause();
        drop(osprofiler::point_with("db", db_info()));
        drop(osprofiler::point_with(
            "list_servers",
            Info::new()
                .with("count", 3)
                .with("ratio", 0.5)
                .with("cached", true),
        ));
        let here = osprofiler::get().expect("in a trace");
        let remote =
            TraceContext::new(key, Some(here.base_id()), Some(here.id())).with_identity(&compute);
        std::thread::spawn(move || remote.in_scope(|| build_and_run("vm-1")))
            .join()
            .expect("compute thread");
        pause();
    });
    ctx.base_id()
}

#[test]
fn spans_as_jaeger_reads_them() {
    let _serial = serial();
    let Some(py) = need("jaeger-client virtualenv", JaegerVenv::locate()) else {
        return;
    };
    let agent = Collector::start();
    let dir = TempDir::new();
    let file = dir.join("events.jsonl");
    let opts = Options {
        jaeger_process_tags: vec![("region".into(), "r1".into())],
        ..Options::default()
    };
    let guard = pipeline(&format!("jaeger://127.0.0.1:{}", agent.port), &file, &opts);
    let base = record_two_services();
    notifier::flush().unwrap();
    let sent = stats_of(agent.port);
    assert_eq!(
        (sent.spans_sent, sent.spans_dropped, sent.spans_truncated),
        (5, 0, 0),
        "{sent:?}"
    );
    assert!(agent.wait_for(sent.datagrams_sent as usize, Duration::from_secs(5)));
    drop(guard);
    let batches = decode(&py, &agent.take());
    // One process per datagram: api's spans and compute's travel apart.
    assert_eq!(batches.len(), 2, "{batches:#?}");
    let spans = by_span_id(&spans_of(&batches));
    let points = points(&read_events(&file));
    assert_eq!(spans.len(), 5);
    assert_eq!(
        spans.keys().collect::<BTreeSet<_>>(),
        points.keys().collect::<BTreeSet<_>>()
    );

    for (sid, p) in &points {
        let s = &spans[sid];
        let ctx = format!("{p:?}\n{:#}", s.span);
        // The whole 128-bit base id (Python sent its low 64 bits only).
        assert_eq!(s.trace_id(), base.0, "{ctx}");
        assert_eq!(s.u64("spanId"), p.id as u64);
        // A first-level point has no parent (Python: a phantom, the base id's low bits).
        let parent = if p.parent == base.0 {
            0
        } else {
            p.parent as u64
        };
        assert_eq!(s.u64("parentSpanId"), parent, "{ctx}");
        assert_eq!(s.span["flags"], 1);
        assert_eq!(s.span["references"], json!([]));
        // Microseconds, from the events' own times.
        assert_eq!(s.span["startTime"].as_i64(), Some(p.start_us), "{ctx}");
        assert_eq!(
            s.span["duration"].as_i64(),
            Some(p.stop_us - p.start_us),
            "{ctx}"
        );
        let tags = s.tags();
        assert_eq!(tags["osprofiler.point"], ("STRING".into(), json!(p.name)));
        let (service, host) = match p.name.as_str() {
            "rpc" | "driver" => ("nova-compute", "host-b"),
            _ => ("nova-api", "host-a"),
        };
        assert_eq!(s.service, service, "{ctx}");
        assert_eq!(s.process_tags["hostname"], host);
        assert_eq!(s.process_tags["ip"], "127.0.0.1");
        assert_eq!(
            s.process_tags["osprofiler.version"],
            env!("CARGO_PKG_VERSION")
        );
        assert_eq!(s.process_tags["region"], "r1");
        if p.name != "driver" {
            assert!(!tags.contains_key("error"), "{ctx}");
            assert_eq!(s.span["logs"], json!([]));
        }
    }

    let named = |point: &str| {
        let p = points.values().find(|p| p.name == point).unwrap();
        spans[&(p.id as u64)].clone()
    };
    let s = |v: &str| ("STRING".to_owned(), json!(v));

    let wsgi = named("wsgi");
    assert_eq!(wsgi.op(), "WSGI_POST_/v2.1/servers");
    let t = wsgi.tags();
    assert_eq!(t["span.kind"], s("server"));
    assert_eq!(t["http.request.method"], s("POST"));
    assert_eq!(t["url.path"], s("/v2.1/servers"));
    assert_eq!(t["url.query"], s("limit=10"));
    assert_eq!(t["url.scheme"], s("http"));

    let db = named("db");
    assert_eq!(db.op(), "SQL_SELECT");
    let t = db.tags();
    assert_eq!(t["span.kind"], s("client"));
    assert_eq!(
        t["db.query.text"],
        s("SELECT * FROM instances WHERE id = %s")
    );
    assert_eq!(t["db.params"], s("[1]"));

    // Python's rstrip("-start") made this "list_serve".
    let list = named("list_servers");
    assert_eq!(list.op(), "list_servers");
    let t = list.tags();
    assert!(!t.contains_key("span.kind"));
    assert_eq!(t["count"], ("LONG".into(), json!(3)));
    assert_eq!(t["ratio"], ("DOUBLE".into(), json!(0.5)));
    assert_eq!(t["cached"], ("BOOL".into(), json!(true)));

    let rpc = named("rpc");
    assert_eq!(rpc.op(), "jaeger::build_and_run");
    let t = rpc.tags();
    assert_eq!(t["code.function.name"], s("jaeger::build_and_run"));
    assert_eq!(t["result"].0, "STRING");
    assert!(t["result"].1.as_str().unwrap().contains('3'), "{t:?}");

    let driver = named("driver");
    assert_eq!(driver.op(), "driver");
    let p = points.values().find(|p| p.name == "driver").unwrap();
    assert_eq!(driver.tags()["error"], ("BOOL".into(), json!(true)));
    let etype = p.stop_info["etype"].as_str().unwrap();
    assert!(etype.ends_with("NoValidHost"), "{etype}");
    assert_eq!(
        driver.span["logs"],
        json!([{"timestamp": p.stop_us, "fields": [
            ["event", "STRING", "error"],
            ["error.kind", "STRING", etype],
            ["message", "STRING", "No valid host was found"],
        ]}])
    );
}

/// Python's `name.rstrip("-start")`: strips any of those characters from the right.
fn python_rstrip(name: &str) -> &str {
    name.trim_end_matches(|c| "-start".contains(c))
}

/// The osprofiler 4.3.0 `jaeger://` driver, fed the events we recorded, one by one as the
/// notifier would; its tracer flushes on its own thread, so it is closed and given time.
const PYTHON_DRIVER: &str = r#"
import json, sys, time
from oslo_config import cfg
from osprofiler import opts
from osprofiler.drivers import base
opts.set_defaults(cfg.CONF); cfg.CONF([])
drv = base.get_driver(sys.argv[1], project="nova", service="api", host="h1", conf=cfg.CONF)
with open(sys.argv[2]) as f:
    for line in f:
        drv.notify(json.loads(line))
done = drv.tracer.close()
deadline = time.time() + 10
while hasattr(done, "done") and not done.done() and time.time() < deadline:
    time.sleep(0.05)
time.sleep(0.5)
"#;

#[test]
fn like_osprofiler_4_3_0_but_fixed() {
    let _serial = serial();
    let Some(py) = need("jaeger-client virtualenv", JaegerVenv::locate()) else {
        return;
    };
    let ours = Collector::start();
    let theirs = Collector::start();
    let dir = TempDir::new();
    let file = dir.join("events.jsonl");
    let guard = pipeline(
        &format!("jaeger://127.0.0.1:{}", ours.port),
        &file,
        &Options::default(),
    );
    // One service (Python's driver has one process): the shape of a nova-api request.
    let api = Identity::new("nova", "api", "h1");
    let ctx = TraceContext::new(HmacKey::new("SECRET_KEY"), None, None).with_identity(&api);
    ctx.in_scope(|| {
        let _wsgi = osprofiler::point_with("wsgi", wsgi_info());
        drop(osprofiler::point_with("db", db_info()));
        drop(osprofiler::point("list_servers"));
        build_and_run("vm-1");
    });
    let base = ctx.base_id();
    notifier::flush().unwrap();
    let sent = stats_of(ours.port).datagrams_sent as usize;
    assert!(ours.wait_for(sent, Duration::from_secs(5)));
    drop(guard);

    py.python(
        PYTHON_DRIVER,
        &[
            &format!("jaeger://127.0.0.1:{}", theirs.port),
            file.to_str().unwrap(),
        ],
    )
    .unwrap();
    theirs.settle(Duration::from_millis(200));
    let ours = by_span_id(&spans_of(&decode(&py, &ours.take())));
    let theirs = by_span_id(&spans_of(&decode(&py, &theirs.take())));
    let points = points(&read_events(&file));

    // The same spans, by id.
    assert_eq!(ours.len(), 5);
    assert_eq!(
        ours.keys().collect::<BTreeSet<_>>(),
        theirs.keys().collect::<BTreeSet<_>>()
    );
    // Every tag mapping below is exercised.
    let their_keys: BTreeSet<String> = theirs.values().flat_map(|t| t.tags().into_keys()).collect();
    let want: BTreeSet<String> = [
        "http.path",
        "http.query",
        "http.method",
        "http.scheme",
        "db.statement",
        "db.params",
        "name",
        "args",
        "kwargs",
        "result",
        "error",
    ]
    .map(String::from)
    .into();
    assert_eq!(their_keys, want);
    let low = base.0 as u64;
    for (sid, o) in &ours {
        let t = &theirs[sid];
        let p = &points[sid];
        let ctx = format!("ours {:#}\ntheirs {:#}", o.span, t.span);
        assert_eq!(
            (o.service.as_str(), t.service.as_str()),
            ("nova-api", "nova-api")
        );
        for key in ["hostname", "ip"] {
            assert!(o.process_tags.contains_key(key) && t.process_tags.contains_key(key));
        }
        // Trace id: theirs is the low 64 bits only (their bug), ours all 128.
        assert_eq!((t.u64("traceIdHigh"), t.u64("traceIdLow")), (0, low));
        assert_eq!(o.u64("traceIdLow"), low);
        assert_eq!(o.trace_id(), base.0);
        // Parents agree, except that theirs gives a first-level point a phantom parent.
        if p.parent == base.0 {
            assert_eq!(
                (o.u64("parentSpanId"), t.u64("parentSpanId")),
                (0, low),
                "{ctx}"
            );
        } else {
            assert_eq!(o.u64("parentSpanId"), t.u64("parentSpanId"), "{ctx}");
            assert_eq!(o.u64("parentSpanId"), p.parent as u64);
        }
        assert_eq!(
            (o.span["flags"].clone(), t.span["flags"].clone()),
            (json!(1), json!(1))
        );
        // Both start at the start event (theirs through a float: a microsecond either way);
        // their duration ends when their driver saw the stop, ours at the stop event.
        let (os, ts) = (
            o.span["startTime"].as_i64().unwrap(),
            t.span["startTime"].as_i64().unwrap(),
        );
        assert!((os - ts).abs() <= 1, "{ctx}");
        assert_eq!(os, p.start_us);
        assert_eq!(o.span["duration"].as_i64(), Some(p.stop_us - p.start_us));

        // Names: theirs is rstrip("-start") of the event name; ours the point's own
        // name, or the OTLP driver's names for requests and statements.
        assert_eq!(t.op(), python_rstrip(&format!("{}-start", p.name)), "{ctx}");
        let want = match p.name.as_str() {
            "wsgi" => "WSGI_POST_/v2.1/servers",
            "db" => "SQL_SELECT",
            "rpc" => "jaeger::build_and_run",
            other => other,
        };
        assert_eq!(o.op(), want);

        // Tags: theirs renamed to ours (OpenTelemetry's semantic names), or the same.
        const RENAMED: &[(&str, &str)] = &[
            ("http.path", "url.path"),
            ("http.query", "url.query"),
            ("http.method", "http.request.method"),
            ("http.scheme", "url.scheme"),
            ("db.statement", "db.query.text"),
            ("db.params", "db.params"),
            ("name", "code.function.name"),
            ("args", "args"),
            ("kwargs", "kwargs"),
            ("result", "result"),
            ("error", "error"),
        ];
        let (ot, tt) = (o.tags(), t.tags());
        for (k, (ty, v)) in &tt {
            let Some(&(_, mine)) = RENAMED.iter().find(|(theirs, _)| theirs == k) else {
                panic!("their tag {k} has no counterpart: {ctx}");
            };
            let (oty, ov) = ot.get(mine).unwrap_or_else(|| panic!("no {mine}: {ctx}"));
            assert_eq!(oty, ty, "{k}: {ctx}");
            if k == "name" {
                // Python's is its function's module path; ours the Rust path.
                continue;
            }
            if k == "db.params" {
                let parse = |v: &Value| serde_json::from_str::<Value>(v.as_str().unwrap()).unwrap();
                assert_eq!(parse(ov), parse(v));
            } else {
                assert_eq!(ov, v, "{k}: {ctx}");
            }
        }
        // Their error logs (one per field) are one log of ours, at the stop time.
        let their_fields: Vec<&Value> = t.span["logs"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|l| l["fields"].as_array().unwrap())
            .collect();
        let our_logs = o.span["logs"].as_array().unwrap();
        if their_fields.is_empty() {
            assert!(our_logs.is_empty(), "{ctx}");
        } else {
            assert_eq!(our_logs.len(), 1);
            assert_eq!(our_logs[0]["timestamp"], p.stop_us);
            let ours = our_logs[0]["fields"].as_array().unwrap();
            for f in their_fields {
                assert!(ours.contains(f), "{f} not in ours: {ctx}");
            }
        }
    }
}

#[test]
fn batches_split_to_fit_and_big_spans_are_cut() {
    let _serial = serial();
    let Some(py) = need("jaeger-client virtualenv", JaegerVenv::locate()) else {
        return;
    };
    let agent = Collector::start();
    let dir = TempDir::new();
    let file = dir.join("events.jsonl");
    // The connection string's prefix wins over the configuration's.
    let opts = Options {
        jaeger_service_name_prefix: Some("ignored".into()),
        ..Options::default()
    };
    let cs = format!(
        "jaeger://127.0.0.1:{}?max_packet_size=4096&service_name_prefix=cloud",
        agent.port
    );
    let guard = pipeline(&cs, &file, &opts);
    let api = Identity::new("nova", "api", "h1");
    let ctx = TraceContext::new(HmacKey::new("SECRET_KEY"), None, None).with_identity(&api);
    let big = format!("SELECT {}", "x".repeat(100_000));
    let mut ids = BTreeSet::new();
    let mut big_id = 0;
    ctx.in_scope(|| {
        let wsgi = osprofiler::point_with("wsgi", wsgi_info());
        ids.insert(wsgi.id().unwrap().0 as u64);
        // In rounds, each flushed and received before the next: the receiving socket's
        // buffer is the kernel's default, smaller than 2,000 spans.
        for round in 0..10 {
            for i in 0..200 {
                let n = round * 200 + i;
                let p = osprofiler::point_with(
                    "db",
                    Info::new().with(
                        "db",
                        json!({"statement": format!("SELECT * FROM t WHERE id = {n}"), "params": [n]}),
                    ),
                );
                ids.insert(p.id().unwrap().0 as u64);
            }
            notifier::flush().unwrap();
            let sent = stats_of(agent.port).datagrams_sent as usize;
            assert!(agent.wait_for(sent, Duration::from_secs(5)));
        }
        let p = osprofiler::point_with(
            "db",
            Info::new().with("db", json!({"statement": big, "params": ["small"]})),
        );
        big_id = p.id().unwrap().0 as u64;
        ids.insert(big_id);
    });
    notifier::flush().unwrap();
    let stats = stats_of(agent.port);
    assert!(agent.wait_for(stats.datagrams_sent as usize, Duration::from_secs(5)));
    drop(guard);
    assert_eq!(
        (stats.spans_sent, stats.spans_dropped, stats.spans_truncated),
        (2002, 0, 1),
        "{stats:?}"
    );
    let datagrams = agent.take();
    assert_eq!(datagrams.len() as u64, stats.datagrams_sent);
    assert!(datagrams.len() > 20, "{} datagrams", datagrams.len());
    assert!(datagrams.iter().all(|d| d.len() <= 4096));
    let batches = decode(&py, &datagrams);
    assert!(batches.iter().all(|b| b["service"] == "cloud-nova-api"));
    // Every span exactly once.
    let spans = by_span_id(&spans_of(&batches));
    assert_eq!(spans.keys().copied().collect::<BTreeSet<_>>(), ids);

    let cut = &spans[&big_id];
    let t = cut.tags();
    assert_eq!(t["osprofiler.truncated"], ("BOOL".into(), json!(true)));
    let text = t["db.query.text"].1.as_str().unwrap();
    assert!(text.len() > 3000 && text.len() < 4096, "{}", text.len());
    assert!(big.starts_with(text));
    assert_eq!(t["db.params"], ("STRING".into(), json!("[\"small\"]")));
    assert_eq!(cut.op(), "SQL_SELECT");
    let untouched = spans.values().filter(|s| s.u64("spanId") != big_id);
    assert!(
        untouched
            .into_iter()
            .all(|s| !s.tags().contains_key("osprofiler.truncated"))
    );
}

#[test]
fn an_agent_that_is_down_costs_nothing_and_is_counted() {
    let _serial = serial();
    // A port nothing listens on.
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cs: ConnectionString = format!("jaeger://127.0.0.1:{port}?max_packet_size=512")
        .parse()
        .unwrap();
    let guard = notifier::set_boxed_sink(osprofiler_store::sink(&cs, &Options::default()).unwrap());
    let before = notifier::stats();
    let ctx = TraceContext::new(HmacKey::new("SECRET_KEY"), None, None)
        .with_identity(&Identity::new("nova", "api", "h1"));
    let started = Instant::now();
    let total: u32 = ctx.in_scope(|| {
        (0..300)
            .map(|i| {
                let _p = osprofiler::point_with("db", db_info());
                i % 2
            })
            .sum()
    });
    let traced = started.elapsed();
    assert_eq!(total, 150);
    let started = Instant::now();
    notifier::flush().unwrap();
    let flushed = started.elapsed();
    let stats = stats_of(port);
    let after = notifier::stats();
    drop(guard);
    assert!(traced < Duration::from_secs(1), "{traced:?}");
    assert!(flushed < Duration::from_secs(2), "{flushed:?}");
    assert_eq!(stats.spans_sent + stats.spans_dropped, 300, "{stats:?}");
    // The kernel reports the agent's absence on the next datagram: counted, and the
    // spans not sent are the pipeline's failed events too (two per span, reported by the
    // flush at the latest), no batch failed as a whole.
    assert!(
        stats.datagrams_refused > 0 && stats.spans_dropped > 0,
        "{stats:?}"
    );
    assert_eq!(
        after.failed - before.failed,
        2 * stats.spans_dropped,
        "{after:?}"
    );
    assert_eq!(
        after.exported - before.exported,
        2 * stats.spans_sent,
        "{after:?}"
    );
    assert!(after.sink_errors > before.sink_errors, "{after:?}");
    assert!(
        notifier::last_error().is_some_and(|e| e.contains("datagrams refused")),
        "{:?}",
        notifier::last_error()
    );
}
