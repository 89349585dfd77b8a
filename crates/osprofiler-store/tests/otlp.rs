//! The OTLP exporter against the real collector `rotel-agent` (PyPI `rotel`): a trace
//! across two services with an error arrives over HTTP and gRPC with the right ids,
//! parents, names, kinds, attributes and status; Python osprofiler 4.4.0's OTLP driver
//! gives the same ids for the same trace; a collector that is down, refusing or hanging
//! costs the traced code nothing and is used again once it is back.
//!
//! The notifier has one sink per process, so the tests that go through it take turns
//! (`TURN`); the ones that call a sink directly run alongside. Each test skips (or fails
//! under `CI=true`) when the collector's virtualenv, the oracle or openssl is missing.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use osprofiler::notifier;
use osprofiler::{Event, HmacKey, Id, Identity, Info, TraceContext};
use osprofiler_store::{ConnectionString, Options, sink};
use osprofiler_testkit::{Oracle, Rotel, RotelSpan, TempDir, TestCerts, free_port, need};
use serde_json::json;

static TURN: Mutex<()> = Mutex::new(());

fn turn() -> MutexGuard<'static, ()> {
    TURN.lock().unwrap_or_else(|e| e.into_inner())
}

fn cs(s: &str) -> ConnectionString {
    s.parse().expect("valid connection string")
}

const WAIT: Duration = Duration::from_secs(15);
const SCOPE: &str = concat!("osprofiler ", env!("CARGO_PKG_VERSION"));

/// The ids of the points of [`record_trace`].
#[derive(Debug, Clone, Copy)]
struct Ids {
    base: Id,
    wsgi: Id,
    db: Id,
    list: Id,
    rpc: Id,
    driver: Id,
}

fn pause() {
    std::thread::sleep(Duration::from_millis(1));
}

/// "api" on host-a serves `GET /v2.1/servers`: a query, then `list_servers`, then a call
/// to "compute" on host-b (another thread, as another service would be), whose driver
/// fails. Points one after the other, so Python's one-stack driver copes too.
fn record_trace() -> Ids {
    let key = HmacKey::new("SECRET_KEY");
    let api = Identity::new("nova", "api", "host-a");
    let compute = Identity::new("nova", "compute", "host-b");
    let ctx = TraceContext::new(key.clone(), None, None).with_identity(&api);
    let base = ctx.base_id();
    let (wsgi, db, list, rpc, driver) = ctx.in_scope(|| {
        let request =
            json!({"path": "/v2.1/servers", "query": "", "method": "GET", "scheme": "http"});
        let wsgi = osprofiler::point_with("wsgi", Info::new().with("request", request));
        let wsgi_id = wsgi.id().expect("recording");
        let db = {
            let statement =
                json!({"statement": "SELECT * FROM instances WHERE project_id = ?", "params": ["demo"]});
            let p = osprofiler::point_with("db", Info::new().with("db", statement));
            pause();
            p.id().expect("recording")
        };
        let list = {
            let p = osprofiler::point("list_servers");
            pause();
            p.id().expect("recording")
        };
        let remote = TraceContext::new(key, Some(base), Some(wsgi_id)).with_identity(&compute);
        let (rpc, driver) = std::thread::spawn(move || {
            remote.in_scope(|| {
                let rpc = osprofiler::point_with(
                    "rpc",
                    Info::new().with("function", json!({"name": "compute.build_and_run"})),
                );
                let mut d = osprofiler::point("driver");
                pause();
                d.set_error("NoValidHost", "No valid host was found");
                let driver = d.id().expect("recording");
                drop(d);
                (rpc.id().expect("recording"), driver)
            })
        })
        .join()
        .expect("compute thread");
        drop(wsgi);
        (wsgi_id, db, list, rpc, driver)
    });
    Ids {
        base,
        wsgi,
        db,
        list,
        rpc,
        driver,
    }
}

fn trace_hex(id: Id) -> String {
    format!("{:032x}", id.0)
}

fn span_hex(id: Id) -> String {
    format!("{:016x}", id.low64())
}

/// Our spans of trace `base`, once all five arrived.
fn ours(rotel: &Rotel, base: Id) -> Vec<RotelSpan> {
    let trace = trace_hex(base);
    let mine = |s: &RotelSpan| s.trace_id == trace && s.scope == SCOPE;
    let spans = rotel
        .wait_for(|spans| spans.iter().filter(|s| mine(s)).count() >= 5, WAIT)
        .unwrap();
    spans.into_iter().filter(mine).collect()
}

fn by_id(spans: &[RotelSpan], id: Id) -> &RotelSpan {
    let hex = span_hex(id);
    spans
        .iter()
        .find(|s| s.id == hex)
        .unwrap_or_else(|| panic!("no span {hex} in {spans:#?}"))
}

/// What the collector got for [`record_trace`]'s trace, services named `<prefix->nova-…`.
fn check_trace(spans: &[RotelSpan], ids: Ids, prefix: &str) {
    assert_eq!(spans.len(), 5, "{spans:#?}");
    let api = format!("{prefix}nova-api");
    let compute = format!("{prefix}nova-compute");
    let expect = [
        (
            ids.wsgi,
            "WSGI_GET_/v2.1/servers",
            "SPAN_KIND_SERVER",
            None,
            &api,
            "host-a",
        ),
        (
            ids.db,
            "SQL_SELECT",
            "SPAN_KIND_CLIENT",
            Some(ids.wsgi),
            &api,
            "host-a",
        ),
        (
            ids.list,
            "list_servers",
            "SPAN_KIND_INTERNAL",
            Some(ids.wsgi),
            &api,
            "host-a",
        ),
        (
            ids.rpc,
            "compute.build_and_run",
            "SPAN_KIND_INTERNAL",
            Some(ids.wsgi),
            &compute,
            "host-b",
        ),
        (
            ids.driver,
            "driver",
            "SPAN_KIND_INTERNAL",
            Some(ids.rpc),
            &compute,
            "host-b",
        ),
    ];
    for (id, name, kind, parent, service, host) in expect {
        let s = by_id(spans, id);
        assert_eq!(s.trace_id, trace_hex(ids.base));
        assert_eq!(
            (s.name.as_str(), s.kind.as_str()),
            (name, kind),
            "span {}",
            s.id
        );
        assert_eq!(
            s.parent_id,
            parent.map(span_hex).unwrap_or_default(),
            "{name}"
        );
        assert_eq!(&s.service_name, service, "{name}");
        assert_eq!(
            s.resource
                .iter()
                .find(|(k, _)| k == "host.name")
                .map(|(_, v)| v.as_str()),
            Some(format!("Str({host})").as_str()),
            "{name}"
        );
        assert!(s.start_time <= s.end_time, "{s:?}");
        if id != ids.driver {
            assert_eq!(s.status_code, None, "{name}");
            assert!(s.events.is_empty(), "{name}");
        }
    }
    let wsgi = by_id(spans, ids.wsgi);
    assert_eq!(wsgi.str_attr("osprofiler.point"), Some("wsgi"));
    assert_eq!(wsgi.str_attr("http.request.method"), Some("GET"));
    assert_eq!(wsgi.str_attr("url.path"), Some("/v2.1/servers"));
    assert_eq!(wsgi.str_attr("url.scheme"), Some("http"));
    let db = by_id(spans, ids.db);
    assert_eq!(
        db.str_attr("db.query.text"),
        Some("SELECT * FROM instances WHERE project_id = ?")
    );
    assert_eq!(db.str_attr("db.params"), Some(r#"["demo"]"#));
    let rpc = by_id(spans, ids.rpc);
    assert_eq!(
        rpc.str_attr("code.function.name"),
        Some("compute.build_and_run")
    );
    let driver = by_id(spans, ids.driver);
    assert_eq!(driver.status_code.as_deref(), Some("STATUS_CODE_ERROR"));
    assert_eq!(
        driver.status_message.as_deref(),
        Some("No valid host was found")
    );
    assert_eq!(driver.str_attr("exception.type"), Some("NoValidHost"));
    assert_eq!(
        driver.str_attr("exception.message"),
        Some("No valid host was found")
    );
    assert_eq!(driver.events.len(), 1, "{driver:?}");
    let ev = &driver.events[0];
    assert_eq!(ev.name, "exception");
    assert_eq!(ev.timestamp, driver.end_time);
    assert_eq!(ev.str_attr("exception.type"), Some("NoValidHost"));
    assert_eq!(
        ev.str_attr("exception.message"),
        Some("No valid host was found")
    );
}

fn collector() -> Option<Rotel> {
    need("rotel collector (target/otel)", Rotel::start())
}

#[test]
fn trace_over_http() {
    let Some(rotel) = collector() else { return };
    let _turn = turn();
    let _sink = notifier::set_boxed_sink(
        sink(&cs(&rotel.http_connection_string()), &Options::default()).unwrap(),
    );
    let ids = record_trace();
    notifier::flush().unwrap();
    check_trace(&ours(&rotel, ids.base), ids, "");
}

#[test]
fn trace_over_grpc() {
    let Some(rotel) = collector() else { return };
    let _turn = turn();
    // The connection string's prefix wins over `[profiler_otlp] service_name_prefix`.
    let opts = Options {
        otlp_service_name_prefix: Some("cloud".into()),
        ..Options::default()
    };
    let url = format!(
        "{}?service_name_prefix=edge",
        rotel.grpc_connection_string()
    );
    let _sink = notifier::set_boxed_sink(sink(&cs(&url), &opts).unwrap());
    let ids = record_trace();
    notifier::flush().unwrap();
    check_trace(&ours(&rotel, ids.base), ids, "edge-");

    let _sink =
        notifier::set_boxed_sink(sink(&cs(&rotel.grpc_connection_string()), &opts).unwrap());
    let ids = record_trace();
    notifier::flush().unwrap();
    check_trace(&ours(&rotel, ids.base), ids, "cloud-");
}

/// The Python side of [`record_trace`]: one service per process (the driver sets the
/// process-wide tracer provider once), the point ids given, in the same order.
const PYTHON_TRACE: &str = r#"
import sys
from oslo_config import cfg
from oslo_utils import uuidutils
from osprofiler import notifier, opts, profiler
from osprofiler.drivers import base

url, service, host, base_id, parent_id = sys.argv[1:6]
ids = iter(sys.argv[6:])
opts.set_defaults(cfg.CONF)
cfg.CONF([])
uuidutils.generate_uuid = lambda dashed=True: next(ids)
drv = base.get_driver(url, project="nova", service=service, host=host, conf=cfg.CONF)
notifier.set(drv.notify)
profiler.init("SECRET_KEY", base_id=base_id, parent_id=parent_id)

class NoValidHost(Exception):
    pass

if service == "api":
    request = {"path": "/v2.1/servers", "query": "", "method": "GET", "scheme": "http"}
    with profiler.Trace("wsgi", info={"request": request}):
        statement = {"statement": "SELECT * FROM instances WHERE project_id = ?", "params": ["demo"]}
        with profiler.Trace("db", info={"db": statement}):
            pass
        with profiler.Trace("list_servers"):
            pass
else:
    with profiler.Trace("rpc", info={"function": {"name": "compute.build_and_run"}}):
        try:
            with profiler.Trace("driver"):
                raise NoValidHost("No valid host was found")
        except NoValidHost:
            pass
provider = drv.trace_api.get_tracer_provider()
provider.force_flush()
provider.shutdown()
"#;

#[test]
fn same_ids_as_python_osprofiler() {
    let Some(py) = need("python osprofiler oracle", Oracle::locate()) else {
        return;
    };
    let Some(_) = need(
        "opentelemetry-sdk and opentelemetry-exporter-otlp-proto-http in the oracle",
        py.python(
            "import opentelemetry.sdk.trace, opentelemetry.exporter.otlp.proto.http.trace_exporter",
            &[],
        ),
    ) else {
        return;
    };
    let Some(rotel) = collector() else { return };
    let url = rotel.http_connection_string();
    let ids = {
        let _turn = turn();
        let _sink = notifier::set_boxed_sink(sink(&cs(&url), &Options::default()).unwrap());
        let ids = record_trace();
        notifier::flush().unwrap();
        ids
    };
    let s = |id: Id| id.to_string();
    py.python(
        PYTHON_TRACE,
        &[
            &url,
            "api",
            "host-a",
            &s(ids.base),
            &s(ids.base),
            &s(ids.wsgi),
            &s(ids.db),
            &s(ids.list),
        ],
    )
    .unwrap();
    py.python(
        PYTHON_TRACE,
        &[
            &url,
            "compute",
            "host-b",
            &s(ids.base),
            &s(ids.wsgi),
            &s(ids.rpc),
            &s(ids.driver),
        ],
    )
    .unwrap();

    let trace = trace_hex(ids.base);
    let python =
        |s: &RotelSpan| s.trace_id == trace && s.scope.starts_with("osprofiler.drivers.otlp");
    let spans = rotel
        .wait_for(
            |spans| spans.iter().filter(|s| python(s)).count() >= 5,
            WAIT,
        )
        .unwrap();
    let theirs: Vec<RotelSpan> = spans.iter().filter(|s| python(s)).cloned().collect();
    let ours = ours(&rotel, ids.base);
    check_trace(&ours, ids, "");
    assert_eq!(theirs.len(), 5, "{theirs:#?}");
    for id in [ids.wsgi, ids.db, ids.list, ids.rpc, ids.driver] {
        let (a, b) = (by_id(&ours, id), by_id(&theirs, id));
        assert_eq!(
            (&a.trace_id, &a.parent_id, &a.kind, &a.service_name),
            (&b.trace_id, &b.parent_id, &b.kind, &b.service_name),
            "span {}",
            a.id
        );
        // Python names a plain point `name.rstrip("-start")`, which strips characters
        // (`list_servers` becomes `list_serve`, `driver` becomes `drive`); it names an
        // RPC by its point, we by the function.
        let python_name = if a.name.starts_with("WSGI_") || a.name.starts_with("SQL_") {
            a.name.clone()
        } else {
            let point = a.str_attr("osprofiler.point").expect("point name");
            format!("{point}-start")
                .trim_end_matches(['-', 's', 't', 'a', 'r'])
                .to_string()
        };
        assert_eq!(b.name, python_name, "span {}", a.id);
    }
}

/// A synthetic finished point of trace `base` (start and stop events), for sinks
/// called directly.
fn point_events(base: Id, n: u128) -> Vec<Event> {
    let id = Id(0xaaaa_aaaa_aaaa_4aaa_8aaa_0000_0000_0000 | n);
    ["start", "stop"]
        .iter()
        .enumerate()
        .map(|(i, kind)| {
            Event::from_value(json!({
                "name": format!("p{n}-{kind}"),
                "base_id": base.to_string(),
                "trace_id": id.to_string(),
                "parent_id": base.to_string(),
                "timestamp": format!("2026-01-01T00:00:0{i}.000000"),
                "info": {"host": "host-a"},
                "project": "nova",
                "service": "api",
            }))
            .unwrap()
        })
        .collect()
}

/// A server that takes connections and never answers.
fn hanging_server() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming().flatten() {
            held.push(conn);
        }
    });
    port
}

/// Through the notifier to a collector that cannot take the spans: the traced code
/// does not wait, `flush` returns within a bound, and every event is counted failed
/// or dropped; the sink's last error says why.
fn check_unusable(url: &str, why: &[&str]) {
    let _turn = turn();
    let _sink = notifier::set_boxed_sink(sink(&cs(url), &Options::default()).unwrap());
    let before = notifier::stats();
    let t = Instant::now();
    record_trace();
    let recording = t.elapsed();
    // The pauses take 3 ms; a traced call that waited on the collector would take 0.5 s.
    assert!(
        recording < Duration::from_millis(400),
        "{url}: {recording:?}"
    );
    let t = Instant::now();
    notifier::flush().unwrap();
    let flushing = t.elapsed();
    assert!(
        flushing < Duration::from_secs(3),
        "{url}: flush took {flushing:?}"
    );
    let after = notifier::stats();
    let lost = (after.failed - before.failed) + (after.dropped - before.dropped);
    assert_eq!(lost, 10, "{url}: {before:?} -> {after:?}");
    assert_eq!(after.exported, before.exported, "{url}");
    let error = notifier::last_error().unwrap_or_default();
    assert!(why.iter().any(|w| error.contains(w)), "{url}: {error}");
}

#[test]
fn collector_down_refusing_or_hanging() {
    // Nothing listens: refused at once.
    let dead = free_port();
    check_unusable(
        &format!("otlp://127.0.0.1:{dead}?timeout=0.5"),
        &["onnection refused"],
    );
    check_unusable(
        &format!("otlp+grpc://127.0.0.1:{dead}?timeout=0.5"),
        &["onnection refused"],
    );
    // A real collector that takes no traces.
    if let Some(refusing) = need(
        "rotel collector (target/otel)",
        Rotel::start_with(&["--otlp-receiver-traces-disabled"]),
    ) {
        check_unusable(
            &format!("{}?timeout=0.5", refusing.http_connection_string()),
            &["HTTP 404"],
        );
        check_unusable(
            &format!("{}?timeout=0.5", refusing.grpc_connection_string()),
            &["Unimplemented"],
        );
    }
    // Accepts connections, never answers: the deadline ends each export.
    let hang = hanging_server();
    check_unusable(
        &format!("otlp://127.0.0.1:{hang}?timeout=0.5"),
        &["no answer within 500ms"],
    );
    check_unusable(
        &format!("otlp+grpc://127.0.0.1:{hang}?timeout=0.5"),
        &["no answer within 500ms"],
    );
}

#[test]
fn backoff_makes_a_dead_collector_cheap() {
    let hang = hanging_server();
    for url in [
        format!("otlp://127.0.0.1:{hang}?timeout=0.3"),
        format!("otlp+grpc://127.0.0.1:{hang}?timeout=0.3"),
    ] {
        let mut s = sink(&cs(&url), &Options::default()).unwrap();
        let base = Id::new_v4();
        // The request goes out from the sink's thread: the exporter does not wait.
        let t = Instant::now();
        assert!(s.write(&point_events(base, 1)).is_ok());
        assert!(
            t.elapsed() < Duration::from_millis(100),
            "{url}: {:?}",
            t.elapsed()
        );
        // A flush waits for it: about the timeout, and says why it failed.
        let t = Instant::now();
        let e = s.flush().unwrap_err().to_string();
        let first = t.elapsed();
        assert!(
            first >= Duration::from_millis(250) && first < Duration::from_secs(2),
            "{url}: {first:?}"
        );
        assert!(e.contains(&format!("127.0.0.1:{hang}")), "{e}");
        // Within the backoff: failed at once, no request made.
        let t = Instant::now();
        let e = s.write(&point_events(base, 2)).unwrap_err().to_string();
        assert!(
            t.elapsed() < Duration::from_millis(30),
            "{url}: {:?}",
            t.elapsed()
        );
        assert!(e.contains("next attempt in"), "{e}");
        assert!(s.flush().is_ok());
    }
    // The default timeout is the socket timeout.
    let opts = Options {
        socket_timeout: Duration::from_millis(200),
        ..Options::default()
    };
    let mut s = sink(&cs(&format!("otlp://127.0.0.1:{hang}")), &opts).unwrap();
    assert!(s.write(&point_events(Id::new_v4(), 1)).is_ok());
    let t = Instant::now();
    assert!(s.flush().is_err());
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
}

#[test]
fn collector_killed_and_restarted() {
    let Some(mut rotel) = collector() else { return };
    let _turn = turn();
    for url in [
        format!("{}?timeout=0.5", rotel.http_connection_string()),
        format!("{}?timeout=0.5", rotel.grpc_connection_string()),
    ] {
        let _sink = notifier::set_boxed_sink(sink(&cs(&url), &Options::default()).unwrap());
        let ids = record_trace();
        notifier::flush().unwrap();
        assert_eq!(ours(&rotel, ids.base).len(), 5, "{url}");

        rotel.stop();
        let before = notifier::stats();
        record_trace();
        notifier::flush().unwrap();
        let after = notifier::stats();
        assert_eq!(
            after.failed - before.failed,
            10,
            "{url}: {before:?} -> {after:?}"
        );

        rotel.restart().unwrap();
        // The sink waits out its backoff (at most 5 s), then sends again by itself.
        let deadline = Instant::now() + WAIT;
        let arrived = loop {
            let ids = record_trace();
            notifier::flush().unwrap();
            let trace = trace_hex(ids.base);
            std::thread::sleep(Duration::from_millis(100));
            if rotel.spans().iter().any(|s| s.trace_id == trace) {
                break Some(ids);
            }
            if Instant::now() >= deadline {
                break None;
            }
        };
        let ids = arrived.unwrap_or_else(|| panic!("{url}: nothing arrived after the restart"));
        check_trace(&ours(&rotel, ids.base), ids, "");
    }
}

/// A TLS front for a collector: rotel serves no TLS itself, so this rustls server
/// takes the TLS connection (ALPN h2 or http/1.1) and passes the bytes through.
fn tls_front(certs: &TestCerts, backend: u16) -> u16 {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_file_iter(&certs.cert)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(&certs.key).unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let config = Arc::new(config);
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let config = config.clone();
            std::thread::spawn(move || {
                let _ = pass_through(conn, config, backend);
            });
        }
    });
    port
}

fn pass_through(
    conn: TcpStream,
    config: Arc<rustls::ServerConfig>,
    backend: u16,
) -> std::io::Result<()> {
    let server = rustls::ServerConnection::new(config).map_err(std::io::Error::other)?;
    let mut tls = rustls::StreamOwned::new(server, conn);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock)?;
    }
    let mut up = TcpStream::connect((Ipv4Addr::LOCALHOST, backend))?;
    // One thread, both directions: short read timeouts take turns.
    let tick = Some(Duration::from_millis(5));
    tls.sock.set_read_timeout(tick)?;
    up.set_read_timeout(tick)?;
    let mut buf = vec![0u8; 64 * 1024];
    let idle = |e: &std::io::Error| {
        matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        )
    };
    loop {
        match tls.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => up.write_all(&buf[..n])?,
            Err(e) if idle(&e) => {}
            Err(e) => return Err(e),
        }
        match up.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => {
                tls.write_all(&buf[..n])?;
                tls.flush()?;
            }
            Err(e) if idle(&e) => {}
            Err(e) => return Err(e),
        }
    }
}

#[test]
fn otlps_with_a_ca_file() {
    let dir = TempDir::new();
    let Some(certs) = need("openssl", TestCerts::make(dir.path())) else {
        return;
    };
    let Some(rotel) = collector() else { return };
    let https = tls_front(&certs, rotel.http_port());
    let grpcs = tls_front(&certs, rotel.grpc_port());
    let ca = certs.ca.display();
    for url in [
        format!("otlps://127.0.0.1:{https}?ca_certs={ca}"),
        format!("otlps+grpc://127.0.0.1:{grpcs}?ca_certs={ca}"),
    ] {
        let _turn = turn();
        let _sink = notifier::set_boxed_sink(sink(&cs(&url), &Options::default()).unwrap());
        let ids = record_trace();
        notifier::flush().unwrap();
        check_trace(&ours(&rotel, ids.base), ids, "");
    }
    // Without the CA (the system's roots), the certificate is not trusted.
    match sink(
        &cs(&format!("otlps://127.0.0.1:{https}?timeout=2")),
        &Options::default(),
    ) {
        Ok(mut s) => {
            // Sent from the sink's thread; the flush says what became of it.
            assert!(s.write(&point_events(Id::new_v4(), 1)).is_ok());
            let e = s.flush().unwrap_err().to_string();
            assert!(e.to_lowercase().contains("certificate"), "{e}");
        }
        Err(e) => assert!(e.to_string().contains("no system CA"), "{e}"),
    }
    // A CA file that is not one fails when the sink is opened.
    let bogus = dir.join("bogus.pem");
    std::fs::write(&bogus, "not a certificate\n").unwrap();
    let e = sink(
        &cs(&format!(
            "otlps://127.0.0.1:{https}?ca_certs={}",
            bogus.display()
        )),
        &Options::default(),
    )
    .err()
    .expect("bad CA file")
    .to_string();
    assert!(e.contains("no PEM certificate"), "{e}");
}

#[test]
fn opened_and_dropped_inside_a_runtime() {
    // A service may set up tracing inside its own async main; the sink's runtime must
    // neither clash with that one nor panic when dropped there.
    let outer = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    outer.block_on(async {
        let port = free_port();
        let s = sink(
            &cs(&format!("otlp+grpc://127.0.0.1:{port}")),
            &Options::default(),
        )
        .unwrap();
        drop(s);
        let s = sink(
            &cs(&format!("otlp://127.0.0.1:{port}")),
            &Options::default(),
        )
        .unwrap();
        drop(s);
    });
}
