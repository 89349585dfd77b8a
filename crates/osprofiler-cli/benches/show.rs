//! `osprofiler trace show --html` of a 100,000-point trace stored in a real Redis:
//! fetch + build + render, against Python osprofiler 4.4.0's CLI on the same trace in
//! the same run. `cargo bench -p osprofiler-cli --bench show` (needs redis-server; the
//! Python figure needs `target/oracle`, made by scripts/test-all).

use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use divan::Bencher;
use osprofiler::notifier::{self, Config};
use osprofiler::{Identity, Info, TraceContext, trace};
use osprofiler_report::{render_html, render_html_to};
use osprofiler_store::{ConnectionString, Options};
use osprofiler_testkit::RedisServer;

const POINTS: usize = 100_000;

struct Fixture {
    _redis: RedisServer,
    cs: ConnectionString,
    url: String,
    base_id: String,
}

static FIXTURE: OnceLock<Option<Fixture>> = OnceLock::new();

#[trace(name = "db")]
fn instance_get(uuid: &str) -> usize {
    let _db = osprofiler::point_with(
        "db",
        Info::new().with("db", serde_json::json!({"statement": "SELECT * FROM instances WHERE uuid = ?", "params": [uuid]})),
    );
    uuid.len()
}

#[trace(name = "driver", hide_args)]
fn plug_vif(port: usize) -> usize {
    port
}

/// One trace of `POINTS` points across two services, written through the real
/// notifier into a real Redis.
fn fixture() -> Option<&'static Fixture> {
    FIXTURE
        .get_or_init(|| {
            let redis = match RedisServer::start() {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("show bench skipped: redis-server: {e}");
                    return None;
                }
            };
            let url = redis.url();
            let cs: ConnectionString = url.parse().ok()?;
            // The whole trace is recorded in a burst: let the queue hold it.
            notifier::configure(Config { max_queued_events: 1 << 21, ..Config::default() });
            let guard = notifier::set_boxed_sink(osprofiler_store::sink(&cs, &Options::default()).ok()?);
            let api = TraceContext::new(osprofiler::HmacKey::new("SECRET_KEY"), None, None)
                .with_identity(&Identity::new("nova", "api", "host-a"));
            api.in_scope(|| {
                let _wsgi = osprofiler::point_with(
                    "wsgi",
                    serde_json::json!({"request": {"path": "/v2.1/servers", "query": "", "method": "POST", "scheme": "http"}}),
                );
                let compute = osprofiler::get()?.with_identity(&Identity::new("nova", "compute", "host-b"));
                let _in = compute.enter();
                // 1 + 999 × (1 rpc + 33 × (db fn + its statement + driver)) ≈ 100,000.
                let mut n = 1;
                while n + 100 <= POINTS {
                    let _rpc = osprofiler::point_with("rpc", Info::new().with("method", "build_and_run_instance"));
                    for i in 0..33 {
                        instance_get("6f1c2b1e-8a5d-4c1e-9f0b-3d2a1c0b9e8f");
                        plug_vif(i);
                    }
                    n += 100;
                }
                Some(())
            })?;
            notifier::flush_timeout(Duration::from_secs(60)).ok()?;
            drop(guard);
            let s = notifier::stats();
            eprintln!("show bench: trace {} written: {} events exported, {} dropped", api.base_id(), s.exported, s.dropped);
            Some(Fixture { _redis: redis, cs, url, base_id: api.base_id().to_string() })
        })
        .as_ref()
}

fn main() {
    divan::main();
    if std::env::args().any(|a| a == "--bench") {
        python_show();
    }
}

/// What `osprofiler trace show --html` does: fetch, build, render.
#[divan::bench(sample_count = 10, sample_size = 1)]
fn fetch_build_render_html(b: Bencher) {
    let Some(f) = fixture() else { return };
    b.bench(|| {
        let mut store = osprofiler_store::open(&f.cs, &Options::default()).expect("open");
        let report = store.report(&f.base_id).expect("fetch").expect("found");
        assert!(report.len() >= POINTS - 100);
        // As the command writes it: in pieces, never whole in memory.
        render_html_to(&report, "trace", std::io::sink()).expect("sink")
    });
}

#[divan::bench(sample_count = 10, sample_size = 1)]
fn fetch_only(b: Bencher) {
    let Some(f) = fixture() else { return };
    b.bench(|| {
        let mut store = osprofiler_store::open(&f.cs, &Options::default()).expect("open");
        store.event_texts(&f.base_id).expect("fetch").len()
    });
}

/// Python's CLI on the same trace, timed as a whole command (it loads the trace,
/// builds its report and renders its HTML page).
fn python_show() {
    let Some(f) = fixture() else { return };
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let cli = std::env::var("OSPROFILER_ORACLE")
        .map(|d| format!("{d}/bin/osprofiler"))
        .unwrap_or(format!("{root}/target/oracle/bin/osprofiler"));
    // Ours, the same way: the whole command, for a like-for-like figure.
    let ours = env!("CARGO_BIN_EXE_osprofiler");
    for (who, program) in [
        ("osprofiler-rs", ours),
        ("python osprofiler 4.4.0", cli.as_str()),
    ] {
        let t = Instant::now();
        let out = Command::new(program)
            .args([
                "trace",
                "show",
                "--html",
                &f.base_id,
                "--connection-string",
                &f.url,
                "--out",
                "/dev/null",
            ])
            .output();
        match out {
            Ok(o) if o.status.success() => eprintln!(
                "{who}: `trace show --html` of {POINTS} points from Redis: {:.2} s",
                t.elapsed().as_secs_f64()
            ),
            Ok(o) => eprintln!(
                "{who}: failed: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) => eprintln!("{who}: not run: {program}: {e}"),
        }
    }
}

#[divan::bench(sample_count = 5, sample_size = 1)]
fn build_only(b: Bencher) {
    let Some(f) = fixture() else { return };
    let mut store = osprofiler_store::open(&f.cs, &Options::default()).expect("open");
    let texts = store.event_texts(&f.base_id).expect("fetch");
    b.with_inputs(|| texts.clone())
        .bench_values(|t| osprofiler_report::Report::from_json_texts(t).len());
}

#[divan::bench(sample_count = 5, sample_size = 1)]
fn render_only(b: Bencher) {
    let Some(f) = fixture() else { return };
    let mut store = osprofiler_store::open(&f.cs, &Options::default()).expect("open");
    let report = store.report(&f.base_id).expect("fetch").expect("found");
    b.bench(|| render_html(&report, "trace").len());
}

#[divan::bench(sample_count = 5, sample_size = 1)]
fn fetch_and_build(b: Bencher) {
    let Some(f) = fixture() else { return };
    b.bench(|| {
        let mut store = osprofiler_store::open(&f.cs, &Options::default()).expect("open");
        store
            .report(&f.base_id)
            .expect("fetch")
            .expect("found")
            .len()
    });
}
