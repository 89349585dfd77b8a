//! Faults under load: an axum service behind `HttpServerLayer` (a `db` point inside the
//! handler) on a multi-threaded runtime, 32 concurrent signed clients, the notifier
//! writing to a real backend that the test kills and restarts in the middle of the load:
//! Redis, the OTLP collector (rotel), PostgreSQL and MariaDB (`kill -9`, restarted on the
//! same port and data directory), a Jaeger UDP port nobody reads, a TCP peer that
//! accepts and never answers (as `otlp://` and as `redis://`), and Redis + OTLP at once.
//! (RabbitMQ: `osprofiler-store/tests/messaging.rs`.)
//!
//! For each: every request is answered 200; the traced p99 latency with the fault stays
//! within `LATENCY_FACTOR` × the untraced p99 (measured in the same test) + `LATENCY_SLACK`;
//! RSS growth stays under `RSS_BOUND`; after a restart a new trace reaches the backend
//! (for SQL: complete, every start with its stop);
//! losses are counted (`notifier::stats`, `backend_stats`) and logged through `log` at
//! most once per `loss_report_interval`; the library prints nothing.
//!
//! Each test runs its scenario in a child process (this binary, re-run with `CHILD_ENV`)
//! whose stdout and stderr are checked to hold only libtest's own lines: "never
//! printed" is then shown, and the process-wide notifier is the scenario's alone. The
//! child writes its figures to a file, which the parent prints.

mod http_support;

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_support::{KEY, app, runtime, serve};
use osprofiler::integrations::reqwest::HttpClientMiddleware;
use osprofiler::integrations::tower::HttpServerLayer;
use osprofiler::notifier::{self, Config};
use osprofiler::{HmacKey, HmacKeys, Id, Identity, TraceContext, switches};
use osprofiler_store::{
    BackendStats, Backends, ConnectionString, JaegerStats, Options, TransportUrl, backend_stats,
};
use osprofiler_testkit::{
    MariaDbServer, PostgresServer, RabbitMqServer, RedisServer, RespValue, Rotel, free_port, need,
};
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware};

const CHILD_ENV: &str = "OSPROFILER_FAULTS_CHILD";
const REPORT_ENV: &str = "OSPROFILER_FAULTS_REPORT";

const CLIENTS: usize = 32;
// Bounded in count and time: a few thousand requests, a few seconds.
const MAX_REQUESTS: usize = 12_000;
const BASELINE_FOR: Duration = Duration::from_millis(1500);
const LOAD_FOR: Duration = Duration::from_millis(4000);
// The fault: the backend is killed this far into the load and restarted this later.
const KILL_AT: Duration = Duration::from_millis(500);
const RESTART_AFTER: Duration = Duration::from_millis(1000);

// Traced p99 with the fault ≤ 5 × untraced p99 + 25 ms. Tracing itself adds a few µs per
// request; the factor and the slack absorb the scheduling noise of a 2-core machine
// shared with other builds (32 clients, the server, the exporter, the backend and its
// restart all compete for two cores: a single descheduling costs ~10 ms). Waiting on a
// backend even once would cost ≥ the socket timeout (500 ms here) or the restart (1.5 s),
// far above the bound.
const LATENCY_FACTOR: u32 = 5;
const LATENCY_SLACK: Duration = Duration::from_millis(25);

// RSS growth during the load ≤ 48 MiB: the pipeline's bound with a single sink (the
// `notifier` module docs: ≈ 11.6 MB with 4 threads; a `Backends` list adds at most its
// per-backend queues, but this load of ≈ 6,000 requests × 3 points never fills them),
// the info payloads of the queued points (≈ 200 B per request), plus the HTTP working
// set of 32 client and 32 server connections (reqwest, hyper, tokio: a few MiB).
const RSS_BOUND: usize = 48 << 20;

const LOSS_INTERVAL: Duration = Duration::from_millis(500);
// How long a restarted backend may take to receive a new trace: the exporters back off
// up to 5 s after failures.
const RECONNECT_WITHIN: Duration = Duration::from_secs(15);

// --- log capture -------------------------------------------------------------------

static RECORDS: Mutex<Vec<(Instant, log::Level, String)>> = Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, r: &log::Record<'_>) {
        if r.target().starts_with("osprofiler") {
            RECORDS
                .lock()
                .unwrap()
                .push((Instant::now(), r.level(), r.args().to_string()));
        }
    }
    fn flush(&self) {}
}

// --- figures written by the child --------------------------------------------------

static REPORT: Mutex<String> = Mutex::new(String::new());

fn note(line: String) {
    let mut r = REPORT.lock().unwrap();
    r.push_str(&line);
    r.push('\n');
    if let Some(path) = std::env::var_os(REPORT_ENV) {
        let _ = std::fs::write(path, r.as_bytes());
    }
}

// --- the service and its clients ---------------------------------------------------

fn client() -> ClientWithMiddleware {
    let plain = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(CLIENTS)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("reqwest client");
    ClientBuilder::new(plain)
        .with(HttpClientMiddleware::new())
        .build()
}

fn caller() -> TraceContext {
    TraceContext::new(HmacKey::new(KEY), None, None)
        .with_identity(&Identity::new("demo", "client", "c1"))
}

#[derive(Default)]
struct Load {
    latencies: Vec<Duration>,
    failures: Vec<String>,
}

impl Load {
    fn p(&self, q: f64) -> Duration {
        let mut l = self.latencies.clone();
        l.sort_unstable();
        if l.is_empty() {
            return Duration::ZERO;
        }
        let i = ((l.len() as f64 * q).ceil() as usize).clamp(1, l.len()) - 1;
        l[i]
    }
}

/// `CLIENTS` tasks sending GETs for `span` (or `MAX_REQUESTS` in all), each traced by a
/// new signed trace when `traced`.
async fn load(client: ClientWithMiddleware, url: String, traced: bool, span: Duration) -> Load {
    let deadline = Instant::now() + span;
    let count = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (client, url, count) = (client.clone(), url.clone(), count.clone());
            tokio::spawn(async move {
                let mut out = Load::default();
                while Instant::now() < deadline
                    && count.fetch_add(1, Ordering::Relaxed) < MAX_REQUESTS
                {
                    let t = Instant::now();
                    let send = client.get(&url).send();
                    let r = if traced {
                        caller().instrument(send).await
                    } else {
                        send.await
                    };
                    let r = match r {
                        Ok(resp) if resp.status() == 200 || resp.status() == 202 => {
                            resp.bytes().await.map(drop).map_err(|e| e.to_string())
                        }
                        Ok(resp) => Err(format!("status {}", resp.status())),
                        Err(e) => Err(e.to_string()),
                    };
                    out.latencies.push(t.elapsed());
                    if let Err(e) = r {
                        out.failures.push(e);
                    }
                }
                out
            })
        })
        .collect();
    let mut all = Load::default();
    for t in tasks {
        let l = t.await.expect("client task");
        all.latencies.extend(l.latencies);
        all.failures.extend(l.failures);
    }
    all
}

fn rss() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap()
        * 1024
}

/// A peer that accepts connections and never answers (nor closes them).
fn hanging_peer() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in l.incoming().flatten() {
            held.push(s);
        }
    });
    addr
}

// --- the scenario ------------------------------------------------------------------

/// What the test does to the backend and how it reads a trace back.
enum Fault<'a> {
    KillRedis(&'a mut RedisServer),
    KillRotel(&'a mut Rotel),
    /// Kill `redis` only; `rotel` must keep receiving through it all.
    KillRedisBesideRotel(&'a mut RedisServer, &'a Rotel),
    /// `kill -9` of the SQL server, restarted on its port and data directory.
    KillSql(&'a mut Sql, String),
    /// RabbitMQ's node killed (with what it held: its queues are not durable) and started
    /// again on its ports and data directory.
    KillBroker(&'a mut RabbitMqServer),
    /// Nothing to restart (a dead UDP port, a hanging peer).
    None,
}

fn in_redis(redis: &RedisServer, base: Id) -> bool {
    matches!(
        redis.cmd(&["EXISTS", &format!("osprofiler_opt:{base}")]),
        Ok(RespValue::Integer(1))
    )
}

/// A SQL server the test kills.
enum Sql {
    Postgres(PostgresServer),
    MariaDb(MariaDbServer),
}

impl Sql {
    fn kill(&mut self) {
        match self {
            Sql::Postgres(s) => s.kill(),
            Sql::MariaDb(s) => s.stop(),
        }
    }
    fn restart(&mut self) -> Result<(), String> {
        match self {
            Sql::Postgres(s) => s.restart(),
            Sql::MariaDb(s) => s.restart(),
        }
    }
    fn url(&self) -> String {
        match self {
            Sql::Postgres(s) => s.url(),
            Sql::MariaDb(s) => s.url(),
        }
    }
}

/// Whether trace `base`'s events wait on the bus (read back without consuming other
/// traces' events).
fn on_the_bus(transport_url: &str, base: Id) -> bool {
    let Ok(tu) = transport_url.parse::<TransportUrl>() else {
        return false;
    };
    let opts = Options {
        transport_url: Some(tu),
        ..Options::default()
    };
    let Ok(cs) = "messaging://".parse::<ConnectionString>() else {
        return false;
    };
    let Ok(mut store) = osprofiler_store::open(&cs, &opts) else {
        return false;
    };
    store
        .events(&base.to_string())
        .is_ok_and(|events| !events.is_empty())
}

/// Whether trace `base` is in the database complete: at least the client's, the server's
/// and the handler's points, each start with its stop.
fn complete_in_sql(cs: &str, base: Id) -> bool {
    let Ok(cs) = cs.parse::<ConnectionString>() else {
        return false;
    };
    let Ok(mut store) = osprofiler_store::open(&cs, &Options::default()) else {
        return false;
    };
    let Ok(events) = store.events(&base.to_string()) else {
        return false;
    };
    let mut open = std::collections::HashMap::new();
    for e in &events {
        let (Some(name), Some(point)) = (e["name"].as_str(), e["trace_id"].as_str()) else {
            return false;
        };
        let side = if let Some(n) = name.strip_suffix("-start") {
            (n, 1)
        } else if let Some(n) = name.strip_suffix("-stop") {
            (n, -1)
        } else {
            return false;
        };
        *open.entry((side.0, point)).or_insert(0) += side.1;
    }
    let names: std::collections::HashSet<&str> = open.keys().map(|(n, _)| *n).collect();
    open.len() >= 3
        && open.values().all(|v| *v == 0)
        && ["wsgi", "db"].iter().all(|n| names.contains(n))
}

fn in_rotel(rotel: &Rotel, base: Id) -> bool {
    let hex = base.simple();
    rotel.spans().iter().any(|s| s.trace_id == hex)
}

/// Sends new signed traces, one every 100 ms, until `found` sees one of them.
fn wait_new_trace(
    rt: &tokio::runtime::Runtime,
    client: &ClientWithMiddleware,
    url: &str,
    what: &str,
    found: impl Fn(Id) -> bool,
) -> Duration {
    let start = Instant::now();
    let mut sent = Vec::new();
    loop {
        let ctx = caller();
        sent.push(ctx.base_id());
        let resp = rt
            .block_on(ctx.instrument(client.get(url).send()))
            .expect("GET");
        assert_eq!(resp.status(), 200);
        let _ = notifier::flush_timeout(Duration::from_secs(3));
        if sent.iter().any(|b| found(*b)) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < RECONNECT_WITHIN,
            "no new trace reached {what} within {RECONNECT_WITHIN:?} ({} sent); stats {:?}, \
             backends {:?}",
            sent.len(),
            notifier::stats(),
            backend_stats()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// What the sinks counted, read before they are closed (their counters go with them).
struct Outcome {
    backends: Vec<BackendStats>,
    jaeger: Vec<JaegerStats>,
    lost: u64,
    /// The log records' texts.
    logs: Vec<String>,
}

fn scenario(name: &str, backends: &str, mut fault: Fault<'_>) -> Outcome {
    let _ = log::set_logger(&Capture);
    log::set_max_level(log::LevelFilter::Trace);
    notifier::configure(Config {
        loss_report_interval: LOSS_INTERVAL,
        ..Config::default()
    });
    let list: Backends = backends.parse().expect("connection strings");
    let opts = Options {
        socket_timeout: Duration::from_millis(500),
        transport_url: match &fault {
            Fault::KillBroker(mq) => Some(mq.transport_url().parse().expect("transport url")),
            _ => None,
        },
        ..Options::default()
    };
    let sink = osprofiler_store::sink_all(&list, &opts).expect("sink");
    let _guard = notifier::set_boxed_sink(sink);
    switches::enable(HmacKeys::parse(KEY));
    switches::set_trace_requests(true);

    let rt = runtime();
    let api = Identity::new("demo", "api", "s1");
    let addr = serve(&rt, app().layer(HttpServerLayer::new().identity(api))).expect("serve");
    let url = format!("http://{addr}/v1/servers");
    let client = client();

    // Warm up (connections, the exporter), then the untraced baseline.
    let _ = rt.block_on(load(
        client.clone(),
        url.clone(),
        false,
        Duration::from_millis(300),
    ));
    let base = rt.block_on(load(client.clone(), url.clone(), false, BASELINE_FOR));
    assert!(
        base.failures.is_empty(),
        "untraced: {:?}",
        &base.failures[..1]
    );

    let before_stats = notifier::stats();
    let rss_before = rss();
    let peak = Arc::new(AtomicU64::new(rss_before as u64));
    let load_start = Instant::now();
    let handle = rt.spawn(load(client.clone(), url.clone(), true, LOAD_FOR));
    let sampler = {
        let peak = peak.clone();
        std::thread::spawn(move || {
            while load_start.elapsed() < LOAD_FOR + Duration::from_millis(200) {
                peak.fetch_max(rss() as u64, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };

    // The fault, in the middle of the load.
    std::thread::sleep(KILL_AT);
    let mut restarted = None;
    match &mut fault {
        Fault::KillRedis(redis) | Fault::KillRedisBesideRotel(redis, _) => {
            redis.stop();
            std::thread::sleep(RESTART_AFTER);
            redis.restart().expect("redis restart");
            restarted = Some(load_start.elapsed());
        }
        Fault::KillRotel(rotel) => {
            rotel.stop();
            std::thread::sleep(RESTART_AFTER);
            rotel.restart().expect("rotel restart");
            restarted = Some(load_start.elapsed());
        }
        Fault::KillSql(sql, _) => {
            sql.kill();
            std::thread::sleep(RESTART_AFTER);
            sql.restart().expect("sql restart");
            restarted = Some(load_start.elapsed());
        }
        Fault::KillBroker(mq) => {
            mq.stop();
            std::thread::sleep(RESTART_AFTER);
            mq.restart().expect("rabbitmq restart");
            restarted = Some(load_start.elapsed());
        }
        Fault::None => {}
    }
    let traced = rt.block_on(handle).expect("load");
    let load_time = load_start.elapsed();
    sampler.join().unwrap();

    // 1. Every request answered.
    assert!(
        traced.failures.is_empty(),
        "{} of {} requests failed, e.g. {}",
        traced.failures.len(),
        traced.latencies.len(),
        traced.failures[0]
    );
    // 2. Latency within the stated factor of the untraced latency.
    let bound = base.p(0.99) * LATENCY_FACTOR + LATENCY_SLACK;
    note(format!(
        "{name}: {} untraced requests p50 {:.2?} p99 {:.2?}; {} traced with the fault p50 \
         {:.2?} p99 {:.2?} max {:.2?} (bound {bound:.2?}); backend restarted at {restarted:?} \
         of {load_time:.2?}",
        base.latencies.len(),
        base.p(0.5),
        base.p(0.99),
        traced.latencies.len(),
        traced.p(0.5),
        traced.p(0.99),
        traced.p(1.0),
    ));
    assert!(
        traced.p(0.99) <= bound,
        "traced p99 {:?} over {bound:?} (untraced p99 {:?})",
        traced.p(0.99),
        base.p(0.99)
    );
    // 3. Memory.
    let growth = (peak.load(Ordering::Relaxed) as usize).saturating_sub(rss_before);
    note(format!(
        "{name}: RSS {rss_before} B before, peak growth {growth} B (bound {RSS_BOUND} B)"
    ));
    assert!(growth < RSS_BOUND, "RSS grew by {growth} B");

    // 4. Reconnects by itself: a new trace reaches the restarted backend (and, with two
    // backends, the one not killed kept receiving).
    match &fault {
        Fault::KillRedis(redis) => {
            let t = wait_new_trace(&rt, &client, &url, "redis", |b| in_redis(redis, b));
            note(format!(
                "{name}: a new trace reached the restarted redis in {t:.2?}"
            ));
        }
        Fault::KillRotel(rotel) => {
            let t = wait_new_trace(&rt, &client, &url, "rotel", |b| in_rotel(rotel, b));
            note(format!(
                "{name}: a new trace reached the restarted rotel in {t:.2?}"
            ));
        }
        Fault::KillRedisBesideRotel(redis, rotel) => {
            let t = wait_new_trace(&rt, &client, &url, "redis", |b| in_redis(redis, b));
            note(format!(
                "{name}: a new trace reached the restarted redis in {t:.2?}"
            ));
            let t = wait_new_trace(&rt, &client, &url, "rotel", |b| in_rotel(rotel, b));
            note(format!("{name}: and rotel in {t:.2?}"));
        }
        Fault::KillSql(_, cs) => {
            let t = wait_new_trace(&rt, &client, &url, "the SQL server", |b| {
                complete_in_sql(cs, b)
            });
            note(format!(
                "{name}: a new trace reached the restarted server, complete, in {t:.2?}"
            ));
        }
        Fault::KillBroker(mq) => {
            let t = wait_new_trace(&rt, &client, &url, "rabbitmq", |b| {
                on_the_bus(&mq.transport_url(), b)
            });
            note(format!(
                "{name}: a new trace reached the restarted broker in {t:.2?}"
            ));
        }
        Fault::None => {}
    }
    let _ = notifier::flush_timeout(Duration::from_secs(5));

    // 5. Losses counted and logged once per interval, never per event.
    let s = notifier::stats();
    let lost = (s.dropped - before_stats.dropped) + (s.failed - before_stats.failed);
    // The lines a service shows at its usual level; debug records (a driver saying its
    // connection closed) are bounded apart below.
    let (logs, debug): (Vec<_>, Vec<_>) = RECORDS
        .lock()
        .unwrap()
        .clone()
        .into_iter()
        .partition(|(_, level, _)| *level <= log::Level::Info);
    let backends = backend_stats();
    note(format!(
        "{name}: during the fault: exported {}, dropped {}, failed {} events ({} sink \
         errors); {} log records (+ {} debug); backends {backends:?}",
        s.exported - before_stats.exported,
        s.dropped - before_stats.dropped,
        s.failed - before_stats.failed,
        s.sink_errors - before_stats.sink_errors,
        logs.len(),
        debug.len(),
    ));
    let per_backend_lost: u64 = backends.iter().map(|b| b.dropped + b.failed).sum();
    let jaeger_refused: u64 = osprofiler_store::jaeger_stats()
        .iter()
        .map(|j| j.datagrams_refused + j.spans_dropped)
        .sum();
    note(format!(
        "{name}: jaeger datagrams refused + spans dropped: {jaeger_refused}"
    ));
    if !matches!(fault, Fault::None) {
        assert!(
            lost + per_backend_lost > 0,
            "a fault but nothing counted: {s:?} {backends:?}"
        );
    }
    if lost > 0 {
        assert!(!logs.is_empty(), "{lost} events lost, none logged");
    }
    // At most one line per interval, from the first loss to now (+2 for the edges).
    let span = logs.first().map_or(Duration::ZERO, |(t, _, _)| t.elapsed());
    let most = (span.as_millis() / LOSS_INTERVAL.as_millis()) as usize + 2;
    assert!(
        logs.len() <= most,
        "{} log records in {span:?}, at most {most}: {logs:#?}",
        logs.len()
    );
    for (_, level, text) in &logs {
        assert!(*level <= log::Level::Warn, "{level}: {text}");
    }
    // Debug records: a few per fault, never one per event or batch.
    assert!(
        debug.len() <= 10,
        "{} debug records: {debug:#?}",
        debug.len()
    );
    if let Some((_, _, text)) = logs.first() {
        note(format!("{name}: first log record: {text}"));
    }
    Outcome {
        backends,
        jaeger: osprofiler_store::jaeger_stats(),
        lost,
        logs: logs.into_iter().map(|(_, _, t)| t).collect(),
    }
}

// --- the child process -------------------------------------------------------------

/// Whether this process is the child running `test`.
fn is_child(test: &str) -> bool {
    std::env::var(CHILD_ENV).as_deref() == Ok(test)
}

/// In the parent: runs `test` (this test's own name) in a child process and checks that
/// the child passed and printed nothing but libtest's lines. In the child: `true`.
fn in_child(test: &str) -> bool {
    if is_child(test) {
        return true;
    }
    let report = std::env::temp_dir().join(format!(
        "osprofiler-faults-{}-{test}.txt",
        std::process::id()
    ));
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, test)
        .env(REPORT_ENV, &report)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let figures = std::fs::read_to_string(&report).unwrap_or_default();
    let _ = std::fs::remove_file(&report);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprint!("{figures}");
    assert!(
        out.status.success(),
        "{test} failed ({})\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
        out.status
    );
    let libtest = |l: &&str| {
        let l = l.trim();
        !(l.is_empty()
            || l.starts_with("running 1 test")
            || l.starts_with("test result:")
            || l == format!("test {test} ... ok"))
    };
    let printed: Vec<&str> = stdout
        .lines()
        .chain(stderr.lines())
        .filter(libtest)
        .collect();
    assert!(printed.is_empty(), "printed by the library: {printed:#?}");
    false
}

#[test]
fn redis_killed_and_restarted() {
    let Some(mut redis) = need("redis-server", RedisServer::start()) else {
        return;
    };
    if !in_child("redis_killed_and_restarted") {
        return;
    }
    let cs = redis.url();
    scenario("redis", &cs, Fault::KillRedis(&mut redis));
}

#[test]
fn otlp_collector_killed_and_restarted() {
    let Some(mut rotel) = need("rotel collector", Rotel::start()) else {
        return;
    };
    if !in_child("otlp_collector_killed_and_restarted") {
        return;
    }
    let cs = rotel.http_connection_string();
    scenario("otlp", &cs, Fault::KillRotel(&mut rotel));
}

#[test]
fn redis_killed_beside_a_live_otlp_collector() {
    let Some(mut redis) = need("redis-server", RedisServer::start()) else {
        return;
    };
    let Some(rotel) = need("rotel collector", Rotel::start()) else {
        return;
    };
    if !in_child("redis_killed_beside_a_live_otlp_collector") {
        return;
    }
    let cs = format!("{},{}", redis.url(), rotel.http_connection_string());
    let out = scenario(
        "redis+otlp",
        &cs,
        Fault::KillRedisBesideRotel(&mut redis, &rotel),
    );
    // The collector was never down: its backend lost nothing to the redis fault.
    let stats = out.backends;
    let otlp = stats
        .iter()
        .find(|b| b.backend.starts_with("otlp"))
        .expect("otlp backend stats");
    assert!(otlp.exported > 0, "{otlp:?}");
    assert_eq!(otlp.failed + otlp.dropped, 0, "{otlp:?}");
    let red = stats
        .iter()
        .find(|b| b.backend.starts_with("redis"))
        .unwrap();
    assert!(red.failed + red.dropped > 0, "{red:?}");
    // Each backend of a list logs its own losses at the configured interval.
    assert!(
        out.logs
            .iter()
            .any(|l| l.contains(&red.backend) && l.contains("lost")),
        "no log line for {}: {:#?}",
        red.backend,
        out.logs
    );
}

#[test]
fn jaeger_port_nobody_reads() {
    if !in_child("jaeger_port_nobody_reads") {
        return;
    }
    // Nothing listens there: datagrams are refused (ICMP) or vanish.
    let cs = format!("jaeger://127.0.0.1:{}", free_port());
    let out = scenario("jaeger", &cs, Fault::None);
    // UDP "succeeds"; the sink counts the refusals and reports the spans not sent to the
    // pipeline as failed events (two per span), which its interval line logs.
    let refused: u64 = out.jaeger.iter().map(|j| j.datagrams_refused).sum();
    let dropped: u64 = out.jaeger.iter().map(|j| j.spans_dropped).sum();
    assert!(refused > 0 && dropped > 0, "{:?}", out.jaeger);
    assert!(
        out.lost >= 2 * dropped,
        "{} events lost for the pipeline, {dropped} spans dropped",
        out.lost
    );
    assert!(
        out.logs
            .iter()
            .any(|l| l.contains("jaeger://") && l.contains("datagrams refused")),
        "{:#?}",
        out.logs
    );
}

#[test]
fn postgres_killed_and_restarted() {
    let Some(pg) = need("postgresql", PostgresServer::start()) else {
        return;
    };
    if !is_child("postgres_killed_and_restarted") {
        // Started to skip with the reason; the child starts its own.
        drop(pg);
        in_child("postgres_killed_and_restarted");
        return;
    }
    let mut sql = Sql::Postgres(pg);
    let cs = sql.url();
    scenario("postgres", &cs, Fault::KillSql(&mut sql, cs.clone()));
}

#[test]
fn rabbitmq_killed_and_restarted() {
    let Some(mq) = need("rabbitmq-server", RabbitMqServer::start()) else {
        return;
    };
    if !is_child("rabbitmq_killed_and_restarted") {
        drop(mq);
        in_child("rabbitmq_killed_and_restarted");
        return;
    }
    let mut mq = mq;
    scenario("rabbitmq", "messaging://", Fault::KillBroker(&mut mq));
}

#[test]
fn mariadb_killed_and_restarted() {
    let Some(db) = need("mariadb", MariaDbServer::start()) else {
        return;
    };
    if !is_child("mariadb_killed_and_restarted") {
        drop(db);
        in_child("mariadb_killed_and_restarted");
        return;
    }
    let mut sql = Sql::MariaDb(db);
    let cs = sql.url();
    scenario("mariadb", &cs, Fault::KillSql(&mut sql, cs.clone()));
}

#[test]
fn otlp_peer_that_never_answers() {
    if !in_child("otlp_peer_that_never_answers") {
        return;
    }
    let cs = format!("otlp://{}", hanging_peer());
    let out = scenario("otlp hanging", &cs, Fault::None);
    assert!(out.lost > 0, "the exporter timed out and counted");
}

#[test]
fn redis_peer_that_never_answers() {
    if !in_child("redis_peer_that_never_answers") {
        return;
    }
    let cs = format!("redis://{}", hanging_peer());
    let out = scenario("redis hanging", &cs, Fault::None);
    assert!(out.lost > 0, "the exporter timed out and counted");
}
