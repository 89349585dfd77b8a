//! `osprofiler demo`: a small OpenStack-like cloud in this process, traced end to end.
//!
//! Four services on loopback ports, each recording under its own identity, talk over
//! real protocols through the library's integrations:
//!
//! - `api` (HTTP, axum + `HttpServerLayer`): `POST /v2.1/servers` stores the instance
//!   (DB API) and asks the conductor to build it (gRPC, `GrpcClientInterceptor`);
//! - `conductor` (gRPC, tonic + `GrpcServerLayer::new()`): its scheduler picks a host
//!   with DB API calls and placement's HTTP API (reqwest + `HttpClientMiddleware`),
//!   retrying when an attempt finds no valid host; then calls the host's compute;
//! - `compute` (gRPC): its virt driver spawns the instance (writes and hashes a disk
//!   image), and the instance is recorded through sqlx with SQL statement tracing on;
//! - `placement` (HTTP, axum + `HttpServerLayer`).
//!
//! A client plays `openstack --os-profile KEY server create`: one signed request is one
//! trace across all of them; an unsigned and a forged request are served untraced.

mod api;
mod client;
mod compute;
mod conductor;
mod db;
mod grpc;
mod placement;
mod summary;

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use axum::serve::ListenerExt as _;
use clap::Args;
use osprofiler::integrations::tracing::{TracingFilter, TracingLayer};
use osprofiler::{HmacKey, HmacKeys, Id, Identity, TraceHeaders, notifier, switches};
use osprofiler_report::render_html;
use osprofiler_store::{Backends, ConnectionString, Options, ReadError, TraceStore, TraceSummary};
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt as _;

use crate::Failure;
use client::OpenStackClient;

#[derive(Args)]
pub struct DemoArgs {
    /// The HMAC key the services accept and the client signs with ([profiler] hmac_keys);
    /// printed only when it is the default
    #[arg(long, value_name = "KEY", default_value = DEFAULT_KEY)]
    hmac_key: String,
    /// Write the trace's HTML report to FILE
    #[arg(
        long,
        value_name = "FILE",
        default_value = "osprofiler-demo.html",
        conflicts_with = "serve"
    )]
    out: PathBuf,
    /// Keep the services up for your own requests (curl, say) until Ctrl-C
    #[arg(long)]
    serve: bool,
    /// With --serve: the API's address [default: a free port on 127.0.0.1]
    #[arg(long, value_name = "ADDR", requires = "serve")]
    listen: Option<String>,
    /// Where to send the traces: sqlite:///path, redis://[:password@]host[:port][/db],
    /// file:///path.jsonl, otlp://collector:4318, otlp+grpc://collector:4317,
    /// jaeger://agent:6831, or several of them separated by spaces
    /// [default: $OSPROFILER_CONNECTION_STRING, else the embedded store]
    #[arg(long, value_name = "URI")]
    connection_string: Option<String>,
}

/// The demo's key when none is given: osprofiler's documented default, no secret.
const DEFAULT_KEY: &str = "SECRET_KEY";

/// The key as the commands the demo suggests write it: the default as it is, so that they
/// can be pasted; a key of the user's own as `KEY`. Output is pasted into bug reports and
/// CI logs, and a key given with --hmac-key is as secret as any in a service's
/// configuration: it is never printed.
fn shown_key(key: &str) -> String {
    if key == DEFAULT_KEY {
        shell_word(key)
    } else {
        "KEY".to_owned()
    }
}

/// What follows a command holding [`shown_key`], when it is a placeholder.
fn key_note(key: &str) -> &'static str {
    if key == DEFAULT_KEY {
        ""
    } else {
        "  # KEY: the one given with --hmac-key (not printed)"
    }
}

/// Who records: project, service, host. Each service has its own host label, as if
/// each ran on its own machine.
fn api_identity() -> Identity {
    Identity::new("nova", "api", "api-1")
}
fn conductor_identity() -> Identity {
    Identity::new("nova", "conductor", "ctl-1")
}
fn compute_identity() -> Identity {
    Identity::new("nova", "compute", "cmp-1")
}
fn placement_identity() -> Identity {
    Identity::new("placement", "placement", "plc-1")
}

pub fn run(args: DemoArgs) -> Result<(), Failure> {
    let started = Instant::now();
    let key = HmacKey::new(&args.hmac_key)
        .ok_or_else(|| Failure("the HMAC key must not be empty".into()))?;

    // The store first: a wrong or unreachable one fails now, before anything runs. The
    // sink may still connect later (a service starts while its Redis is down); the read
    // side connects now, and the demo needs it to read its trace back.
    let backends = osprofiler_store::resolve(args.connection_string.as_deref(), None)?;
    let opts = Options {
        filter_error_trace: true,
        ..Options::default()
    };
    let mut sinks = Vec::with_capacity(backends.len() + 1);
    for cs in &backends {
        sinks.push((cs.to_string(), osprofiler_store::sink(cs, &opts)?));
    }
    // Write-only backends (OTLP, Jaeger) cannot be read back: the demo then keeps its own
    // copy of the events to report on.
    let memory = notifier::MemorySink::new();
    let mut store: Box<dyn TraceStore> = match backends.readable() {
        Some(cs) => osprofiler_store::open(cs, &opts)?,
        None => {
            sinks.push(("memory".into(), Box::new(memory.clone())));
            Box::new(MemoryStore(memory))
        }
    };
    let fanned = sinks.len() > 1;
    let sink = if fanned {
        osprofiler_store::fan_out(sinks)
    } else {
        sinks
            .pop()
            .map(|(_, s)| s)
            .ok_or_else(|| Failure("no backend".into()))?
    };
    let _notifier = notifier::set_boxed_sink(sink);

    // What a `[profiler]` section would say: enabled with this key, trace_sqlalchemy,
    // trace_requests, filter_error_trace.
    switches::enable(HmacKeys::from(vec![key.clone()]));
    switches::set_sql_tracing(true);
    switches::set_trace_requests(true);
    switches::set_filter_error_trace(true);
    // sqlx's statements reach osprofiler through `tracing`.
    let subscriber =
        tracing_subscriber::registry().with(TracingLayer::new().with_filter(TracingFilter));
    let _ = tracing::subscriber::set_global_default(subscriber);

    let state = StateDir::create()?;
    // Only the demo needs a runtime: the other commands stay synchronous.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failure(format!("cannot start the async runtime: {e}")))?;
    let show_flag = show_flag(args.connection_string.as_deref(), &backends);
    let outcome = rt.block_on(async {
        let cloud = Cloud::start(state.path(), args.listen.as_deref()).await?;
        let result = if args.serve {
            serve(&cloud, &args.hmac_key, &backends, show_flag.as_deref()).await
        } else {
            once(
                &cloud,
                (&key, &args.hmac_key),
                &backends,
                &args.out,
                show_flag.as_deref(),
            )
            .await
        };
        cloud.db.close().await;
        result
    });
    // Stopping the runtime ends the services; their threads hand over what they recorded.
    rt.shutdown_timeout(Duration::from_secs(2));
    let run = outcome?;
    let flushed = notifier::flush().map_err(|e| Failure(format!("writing the trace: {e}")));
    if fanned {
        // Each backend's own counters: one that failed is named, with its error.
        for b in osprofiler_store::backend_stats() {
            if b.failed > 0 || b.dropped > 0 || b.errors > 0 {
                return Err(Failure(format!(
                    "{} events could not be written to {}: {}",
                    b.failed + b.dropped,
                    b.backend,
                    b.last_error.unwrap_or_else(|| "its queue was full".into())
                )));
            }
        }
    }
    flushed?;
    let stats = notifier::stats();
    if stats.failed > 0 || stats.dropped > 0 {
        return Err(Failure(format!(
            "{} events could not be written to {}: {}",
            stats.failed + stats.dropped,
            store.describe(),
            notifier::last_error().unwrap_or_else(|| "the queue was full".into())
        )));
    }
    let Some(run) = run else {
        return Ok(()); // --serve: stopped
    };
    let exported = if fanned {
        // The events handed to the backends (each got all of them).
        osprofiler_store::backend_stats()
            .iter()
            .map(|b| b.exported)
            .max()
            .unwrap_or(0)
    } else {
        stats.exported
    };
    let base = run.base;
    report(run, &mut *store, &args.out, exported, started)?;
    if let Some(text) = where_it_went(&backends, base) {
        say(&text);
    }
    Ok(())
}

/// Where a write-only backend sent the trace, and how to find it there.
fn where_it_went(backends: &Backends, base: Id) -> Option<String> {
    let mut lines = Vec::new();
    for cs in backends {
        match cs {
            ConnectionString::Otlp(_) => lines.push(format!(
                "The trace went to the OTLP collector at {cs}: in Jaeger, open http://localhost:16686/trace/{} (its trace id is the base id without hyphens).",
                base.simple()
            )),
            ConnectionString::Jaeger(_) => lines.push(format!(
                "The trace went to the Jaeger agent at {cs}: in Jaeger's UI, search for trace id {} (service nova-api).",
                base.simple()
            )),
            _ => {}
        }
    }
    (!lines.is_empty()).then(|| lines.join("\n"))
}

/// The demo's own copy of its events, read back when every backend is write only.
struct MemoryStore(notifier::MemorySink);

impl TraceStore for MemoryStore {
    fn event_texts(&mut self, base_id: &str) -> Result<Vec<String>, ReadError> {
        Ok(self
            .0
            .events()
            .iter()
            .filter(|e| e.base_id.to_string() == base_id)
            .map(|e| e.to_json())
            .collect())
    }

    fn list_traces(&mut self, _: Option<usize>) -> Result<Vec<TraceSummary>, ReadError> {
        Ok(Vec::new())
    }

    fn list_error_traces(&mut self, _: Option<usize>) -> Result<Vec<TraceSummary>, ReadError> {
        Ok(Vec::new())
    }

    fn describe(&self) -> String {
        "the demo's memory".into()
    }
}

/// A listening socket on `addr`, or a one-line reason why not (a busy port, say).
async fn bind(addr: &str) -> Result<tokio::net::TcpListener, Failure> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Failure(format!("cannot listen on {addr}: {e}")))
}

/// Serves an HTTP service until the runtime stops.
fn spawn_http(listener: tokio::net::TcpListener, app: axum::Router) {
    // TCP_NODELAY, as the clients set it: else Nagle's algorithm and delayed ACKs can
    // hold a small answer back for 40 ms, a wait that would show in the trace.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
}

/// The running services.
struct Cloud {
    api: SocketAddr,
    conductor: SocketAddr,
    compute: SocketAddr,
    placement: SocketAddr,
    db: db::Db,
}

impl Cloud {
    async fn start(state: &Path, listen: Option<&str>) -> Result<Cloud, Failure> {
        let api = bind(listen.unwrap_or("127.0.0.1:0")).await?;
        let conductor = bind("127.0.0.1:0").await?;
        let compute = bind("127.0.0.1:0").await?;
        let placement = bind("127.0.0.1:0").await?;
        let addr = |l: &tokio::net::TcpListener| {
            l.local_addr()
                .map_err(|e| Failure(format!("cannot read a listening address: {e}")))
        };
        let (api_addr, conductor_addr, compute_addr, placement_addr) = (
            addr(&api)?,
            addr(&conductor)?,
            addr(&compute)?,
            addr(&placement)?,
        );

        let db = db::Db::create(&state.join("nova.sqlite"))
            .await
            .map_err(|e| Failure(format!("cannot create the demo's database: {e}")))?;

        spawn_http(placement, placement::router(placement_identity()));

        grpc::spawn_server(
            compute,
            compute::SERVICE,
            compute_identity(),
            compute::Compute::new(db.clone(), state.join("instances")),
        );

        let compute_api = compute::ComputeApi::new(vec![(
            compute_identity().host.to_string(),
            grpc::Client::new(compute_addr, compute::SERVICE).map_err(Failure)?,
        )]);
        let placement_client = placement::Client::new(placement_addr).map_err(Failure)?;
        grpc::spawn_server(
            conductor,
            conductor::SERVICE,
            conductor_identity(),
            conductor::Conductor::new(db.clone(), placement_client, compute_api),
        );

        let conductor_api = conductor::ComputeTaskApi::new(
            grpc::Client::new(conductor_addr, conductor::SERVICE).map_err(Failure)?,
        );
        spawn_http(api, api::router(api_identity(), db.clone(), conductor_api));

        Ok(Cloud {
            api: api_addr,
            conductor: conductor_addr,
            compute: compute_addr,
            placement: placement_addr,
            db,
        })
    }

    /// The services, one line each, and the store.
    fn describe(&self, backends: &Backends) -> String {
        let rows = [
            (
                "api",
                self.api,
                api_identity(),
                "HTTP: axum + HttpServerLayer",
            ),
            (
                "conductor",
                self.conductor,
                conductor_identity(),
                "gRPC: tonic + GrpcServerLayer::new()",
            ),
            (
                "compute",
                self.compute,
                compute_identity(),
                "gRPC; SQLite through sqlx",
            ),
            (
                "placement",
                self.placement,
                placement_identity(),
                "HTTP, called through reqwest",
            ),
        ];
        let mut s = String::new();
        for (role, addr, id, how) in rows {
            let who = format!("{}@{}", id.service, id.host);
            s += &format!("  {role:<10} {:<16} {who:<16} {how}\n", addr.to_string());
        }
        for cs in backends {
            let what = if cs.is_readable() {
                "store"
            } else {
                "exporter"
            };
            s += &format!("  {what:<10} {cs}\n");
        }
        s
    }
}

/// What the one-shot demo did, for the report.
struct Run {
    base: Id,
    forged: Id,
}

/// Plays the user: one profiled request, one unsigned, one forged, then a listing.
async fn once(
    cloud: &Cloud,
    (key, key_text): (&HmacKey, &str),
    cs: &Backends,
    out: &Path,
    show_flag: Option<&str>,
) -> Result<Option<Run>, Failure> {
    let client = OpenStackClient::new(cloud.api).map_err(Failure)?;
    say(&format!(
        "osprofiler demo: a small cloud in this process, traced end to end\n{}",
        cloud.describe(cs)
    ));

    // `openstack --os-profile KEY`: a new trace id, signed with the key.
    let base = Id::new_v4();
    let a = client
        .create_server("demo-vm", Some(&TraceHeaders::sign(base, base, key)))
        .await
        .map_err(Failure)?;
    if a.status.as_u16() != 202 {
        return Err(Failure(format!(
            "the API answered {} to the profiled request: {}",
            a.status, a.body
        )));
    }
    say(&format!(
        "$ openstack --os-profile {} server create demo-vm{}\n\
         {}: server {}\n\
         Trace ID: {base}\n\
         {}\n",
        shown_key(key_text),
        key_note(key_text),
        a.status,
        a.body["server"]["id"].as_str().unwrap_or("?"),
        show_hint(
            show_flag,
            &base.to_string(),
            &shell_word(&out.display().to_string())
        ),
    ));

    let a = client
        .create_server("unsigned-vm", None)
        .await
        .map_err(Failure)?;
    say(&format!(
        "$ openstack server create unsigned-vm                      # not profiled\n{}",
        a.status
    ));
    // Signed with a key the services do not hold: the signature does not verify.
    let forged = Id::new_v4();
    let forged_key = HmacKey::new(format!("{key_text}-forged"))
        .ok_or_else(|| Failure("cannot make the forged key".into()))?;
    let a = client
        .create_server(
            "forged-vm",
            Some(&TraceHeaders::sign(forged, forged, &forged_key)),
        )
        .await
        .map_err(Failure)?;
    say(&format!(
        "$ openstack --os-profile WRONG_KEY server create forged-vm  # a key the services lack\n{}",
        a.status
    ));
    let a = client.list_servers().await.map_err(Failure)?;
    let servers: Vec<String> = a.body["servers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            format!(
                "{} {}",
                s["name"].as_str().unwrap_or("?"),
                s["status"].as_str().unwrap_or("?")
            )
        })
        .collect();
    say(&format!(
        "$ openstack server list\n{}: {}",
        a.status,
        servers.join(", ")
    ));
    Ok(Some(Run { base, forged }))
}

/// Reads the trace back from the store, checks that nothing else was recorded, writes
/// the HTML report and prints the summary.
fn report(
    run: Run,
    store: &mut dyn TraceStore,
    out: &Path,
    exported: u64,
    started: Instant,
) -> Result<(), Failure> {
    let base = run.base.to_string();
    let report = store.report(&base)?.ok_or_else(|| {
        Failure(format!(
            "trace {base} is not in {}: nothing was recorded",
            store.describe()
        ))
    })?;
    let forged = store.event_texts(&run.forged.to_string())?.len();
    let events = 2 * report.len() as u64;
    if forged > 0 || exported > events {
        return Err(Failure(format!(
            "untraced requests were recorded: {exported} events written, {events} of them in \
             trace {base}, {forged} under the forged trace id"
        )));
    }
    say(&format!(
        "All three were served, only the profiled one traced: the store got {exported} events, \
         all in trace {base}.\n"
    ));
    let html = render_html(&report, "openstack server create demo-vm");
    std::fs::write(out, html.as_bytes())
        .map_err(|e| Failure(format!("cannot write {}: {e}", out.display())))?;
    say(&summary::render(&report, &base));
    say(&format!(
        "HTML report: {} (open it in a browser). Done in {:.2} s.",
        out.display(),
        started.elapsed().as_secs_f64()
    ));
    Ok(())
}

/// Keeps the services up until Ctrl-C.
async fn serve(
    cloud: &Cloud,
    key: &str,
    cs: &Backends,
    show_flag: Option<&str>,
) -> Result<Option<Run>, Failure> {
    let note = key_note(key);
    let key = shown_key(key);
    // The key line says which key, without printing one of the user's own.
    let key_line = if note.is_empty() {
        key.clone()
    } else {
        "the one given with --hmac-key (not printed)".to_owned()
    };
    // The trace browser on the same store, when it can be read back.
    let ui = show_flag.map_or(String::new(), |flag| {
        format!("\nBrowse, open and compare the traces in a browser:\n  osprofiler ui{flag}")
    });
    say(&format!(
        "osprofiler demo --serve: the services are up (Ctrl-C stops them)\n\n{}  {:<10} {key_line}\n\n\
         api: http://{api}\n\n\
         Boot a server in a trace of your own (`trace headers` prints its Trace ID):\n  \
         curl -H @<(osprofiler trace headers --hmac-key {key}) -X POST http://{api}/v2.1/servers -d '{{\"server\":{{\"name\":\"vm\"}}}}'{note}\n  \
         {}\n\
         List the servers:\n  \
         curl http://{api}/v2.1/servers{ui}",
        cloud.describe(cs),
        "hmac key",
        show_hint(show_flag, "<trace-id>", "trace.html").replace('\n', "\n  "),
        api = cloud.api,
    ));
    // Flushed now and then, as a long-running service would: some sinks (file://) buffer
    // their writes until a flush.
    let mut ctrl_c = std::pin::pin!(tokio::signal::ctrl_c());
    exit_on_second_ctrl_c();
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            stop = &mut ctrl_c => {
                stop.map_err(|e| Failure(format!("cannot wait for Ctrl-C: {e}")))?;
                break;
            }
            _ = tick.tick() => {
                let _ = tokio::task::spawn_blocking(notifier::flush).await;
            }
        }
    }
    say("\nstopped");
    Ok(None)
}

/// A second Ctrl-C ends the process at once (exit status 130), whatever the clean
/// shutdown the first one started is still waiting for (a backend that does not
/// answer, say). Listening from the start, on a thread and runtime of its own (the
/// services' runtime is shut down by the first), so that no Ctrl-C falls in between.
fn exit_on_second_ctrl_c() {
    let _ = std::thread::Builder::new()
        .name("second-ctrl-c".into())
        .spawn(|| {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                let Ok(mut interrupts) =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
                else {
                    return;
                };
                interrupts.recv().await;
                interrupts.recv().await;
                let _ = writeln!(std::io::stderr(), "interrupted");
                std::process::exit(130);
            });
        });
}

/// Prints a block of lines; a closed pipe is not an error worth reporting.
fn say(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
}

/// The flag `trace show` needs to find the demo's traces: none when they are where it
/// looks by default (the environment, the embedded store), the readable backend of a
/// list otherwise. A password is not printed. `None` when every backend is write only.
fn show_flag(connection_string: Option<&str>, backends: &Backends) -> Option<String> {
    let readable = backends.readable()?;
    Some(match connection_string {
        // As the user wrote it, when it names one backend.
        Some(cs) if backends.len() == 1 => format!(
            " --connection-string {}",
            shell_word(&osprofiler_store::redact(cs.trim()))
        ),
        Some(_) => format!(" --connection-string {}", shell_word(&readable.to_string())),
        None => String::new(),
    })
}

/// How to look at trace `id`: `trace show` when a backend can be read back, else Jaeger.
fn show_hint(flag: Option<&str>, id: &str, out: &str) -> String {
    match flag {
        Some(flag) => format!(
            "Display trace data with command:\nosprofiler trace show --html {id} --out {out}{flag}"
        ),
        None => {
            "The backends are write only: look the trace up in Jaeger by its id without hyphens."
                .into()
        }
    }
}

/// `s` as one shell word.
fn shell_word(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.,:/@=+%".contains(c));
    if plain {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// The services' scratch directory (database, instance disks), removed when dropped.
struct StateDir(PathBuf);

impl StateDir {
    fn create() -> Result<StateDir, Failure> {
        let dir = std::env::temp_dir().join(format!(
            "osprofiler-demo-{}-{}",
            std::process::id(),
            Id::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir)
            .map_err(|e| Failure(format!("cannot create {}: {e}", dir.display())))?;
        Ok(StateDir(dir))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for StateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A JSON answer of the demo's HTTP services (nova's API, placement).
fn json_response(
    status: axum::http::StatusCode,
    body: &serde_json::Value,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::{shell_word, shown_key};

    #[test]
    fn only_the_default_key_is_printed() {
        assert_eq!(shown_key("SECRET_KEY"), "SECRET_KEY");
        assert_eq!(shown_key("my own key"), "KEY");
    }

    #[test]
    fn shell_words() {
        assert_eq!(shell_word("SECRET_KEY"), "SECRET_KEY");
        assert_eq!(shell_word("redis://h:6379/0"), "redis://h:6379/0");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
        assert_eq!(shell_word("a b"), "'a b'");
        assert_eq!(shell_word(""), "''");
    }
}
