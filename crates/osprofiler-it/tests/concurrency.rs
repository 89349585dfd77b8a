//! Concurrency (issue 9): 10,000 signed requests from 64 concurrent client tasks on a
//! runtime of 8 worker threads, through an axum service (behind `HttpServerLayer`) that
//! spawns subtasks and calls a tonic service (behind `GrpcServerLayer::new()`, through
//! `GrpcClientInterceptor`). Every request is its own trace, and every trace must come out
//! exactly as the request made it: the same points, each start with its stop, each parent
//! in the same trace and where the code put it; no point in another trace, none lost.
//!
//! The shape of one trace (7 points, 14 events):
//!
//! ```text
//! http (client) → wsgi (axum) ┬ db      (tokio::spawn, in the current trace)
//!                             ├ driver  (tokio::spawn, in the current trace)
//!                             └ compute (in_point) → rpc (tonic) → vm (tokio::spawn)
//! ```

mod grpc_support;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use bytes::Bytes;
use grpc_support::{BoxFuture, Client, RawCodec, Routes};
use osprofiler::integrations::reqwest::HttpClientMiddleware;
use osprofiler::integrations::tonic::GrpcClientInterceptor;
use osprofiler::integrations::tonic::GrpcServerLayer;
use osprofiler::integrations::tower::HttpServerLayer;
use osprofiler::notifier::{self, MemorySink};
use osprofiler::{
    Event, EventKind, FutureExt as _, HmacKey, HmacKeys, Id, TraceContext, in_point, switches,
};
use osprofiler_testkit::need;
use reqwest_middleware::ClientBuilder;
use tonic::server::UnaryService;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Endpoint, Server};
use tonic::{Request, Response, Status};

const KEY: &str = "SECRET_KEY";
const REQUESTS: usize = 10_000;
const CLIENTS: usize = 64;
const WORKERS: usize = 8;
/// Points per trace, and the parent each point's name must have (by name).
const SHAPE: [(&str, &str); 7] = [
    ("http", "<base>"),
    ("wsgi", "http"),
    ("db", "wsgi"),
    ("driver", "wsgi"),
    ("compute", "wsgi"),
    ("rpc", "compute"),
    ("vm", "rpc"),
];

/// A spawned subtask with a point of its own, yielding so that tasks interleave on the
/// workers (and may resume on another thread).
fn subtask(name: &'static str) -> tokio::task::JoinHandle<()> {
    tokio::spawn(
        in_point(name, async {
            tokio::task::yield_now().await;
            tokio::task::yield_now().await;
        })
        .in_current_trace(),
    )
}

/// `Build`: a spawned `vm` subtask inside the server's `rpc` point.
struct Build;

impl UnaryService<Bytes> for Build {
    type Response = Bytes;
    type Future = BoxFuture<Result<Response<Bytes>, Status>>;
    fn call(&mut self, req: Request<Bytes>) -> Self::Future {
        // Polled inside the layer's `rpc` point: `subtask` hands that to the new task.
        Box::pin(async move {
            subtask("vm")
                .await
                .map_err(|e| Status::internal(e.to_string()))?;
            Ok(Response::new(req.into_inner()))
        })
    }
}

fn compute(req: http::Request<tonic::body::Body>) -> BoxFuture<http::Response<tonic::body::Body>> {
    Box::pin(async move {
        let mut grpc = tonic::server::Grpc::new(RawCodec);
        match req.uri().path() {
            "/compute.Compute/Build" => grpc.unary(Build, req).await,
            _ => Status::unimplemented("no such method").into_http(),
        }
    })
}

async fn build(mut client: Client) -> Result<Bytes, Status> {
    grpc_support::unary(&mut client, "/compute.Compute/Build", b"vm").await
}

/// `GET /v1/boot`: two spawned subtasks and a gRPC call, concurrently.
async fn boot(State(client): State<Client>) -> (StatusCode, String) {
    let db = subtask("db");
    let driver = subtask("driver");
    let rpc = in_point("compute", build(client)).await;
    let joined = db.await.and(driver.await);
    match (rpc, joined) {
        (Ok(b), Ok(())) => (StatusCode::OK, String::from_utf8_lossy(&b).into_owned()),
        (Err(e), _) => (StatusCode::BAD_GATEWAY, e.to_string()),
        (_, Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// Starts both servers on `rt`; returns the HTTP address.
fn start(rt: &tokio::runtime::Runtime) -> Result<std::net::SocketAddr, String> {
    rt.block_on(async {
        let grpc = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("bind: {e}"))?;
        let grpc_addr = grpc.local_addr().map_err(|e| e.to_string())?;
        tokio::spawn(
            Server::builder()
                .layer(GrpcServerLayer::new())
                .serve_with_incoming(
                    Routes(compute),
                    tonic::transport::server::TcpIncoming::from(grpc),
                ),
        );
        let channel = Endpoint::from_shared(format!("http://{grpc_addr}"))
            .map_err(|e| e.to_string())?
            .connect()
            .await
            .map_err(|e| format!("connect to the gRPC server: {e}"))?;
        let client: Client =
            tonic::client::Grpc::new(InterceptedService::new(channel, GrpcClientInterceptor));
        let app = Router::new()
            .route("/v1/boot", get(boot))
            .with_state(client)
            .layer(HttpServerLayer::new());
        let http = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("bind: {e}"))?;
        let addr = http.local_addr().map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            let _ = axum::serve(http, app).await;
        });
        Ok(addr)
    })
}

/// The 7 points of one trace, checked against [`SHAPE`].
fn check_trace(base: Id, events: &[&Event]) -> Result<(), String> {
    if events.len() != 2 * SHAPE.len() {
        return Err(format!("{} events, not {}", events.len(), 2 * SHAPE.len()));
    }
    // point id → (name, parent, starts, stops)
    let mut points: HashMap<Id, (&str, Id, usize, usize)> = HashMap::new();
    for e in events {
        if e.base_id != base {
            return Err(format!("event of {} in {base}", e.base_id));
        }
        let p = points
            .entry(e.trace_id)
            .or_insert((e.name.as_ref(), e.parent_id, 0, 0));
        if p.0 != e.name || p.1 != e.parent_id {
            return Err(format!("start and stop of {} differ", e.trace_id));
        }
        match e.kind {
            EventKind::Start => p.2 += 1,
            EventKind::Stop => p.3 += 1,
        }
    }
    let by_name: HashMap<&str, Id> = points.iter().map(|(id, p)| (p.0, *id)).collect();
    if points.len() != SHAPE.len() || by_name.len() != SHAPE.len() {
        return Err(format!("points {:?}", by_name.keys()));
    }
    for (name, parent) in SHAPE {
        let Some(p) = by_name.get(name).and_then(|id| points.get(id)) else {
            return Err(format!("no {name} point"));
        };
        if (p.2, p.3) != (1, 1) {
            return Err(format!("{name}: {} starts, {} stops", p.2, p.3));
        }
        let want = if parent == "<base>" {
            base
        } else {
            by_name[parent]
        };
        if p.1 != want {
            return Err(format!("{name} is not under {parent}"));
        }
    }
    Ok(())
}

#[test]
fn ten_thousand_concurrent_traces_each_exactly_its_tree() {
    let started = Instant::now();
    // Room for every event: nothing may be dropped, so any loss below is a bug.
    notifier::configure(notifier::Config {
        max_queued_events: 4 * REQUESTS * 2 * SHAPE.len(),
        ..notifier::Config::default()
    });
    let sink = MemorySink::new();
    let _notifier = notifier::set_sink(sink.clone());
    switches::enable(HmacKeys::parse(KEY));
    switches::set_trace_requests(true);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKERS)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let Some(addr) = need("axum and tonic servers on loopback", start(&rt)) else {
        return;
    };
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("reqwest client");
    let client = ClientBuilder::new(http)
        .with(HttpClientMiddleware::new())
        .build();
    let url = Arc::new(format!("http://{addr}/v1/boot"));

    // 64 tasks share the 10,000 requests; each request is a new trace (its own base id).
    let load = Instant::now();
    let bases: Vec<Id> = rt.block_on(async {
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let tasks: Vec<_> = (0..CLIENTS)
            .map(|_| {
                let (client, url, next) = (client.clone(), url.clone(), next.clone());
                tokio::spawn(async move {
                    let mut bases = Vec::new();
                    while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < REQUESTS {
                        let ctx = TraceContext::new(HmacKey::new(KEY), None, None);
                        let resp = ctx
                            .clone()
                            .instrument(client.get(url.as_str()).send())
                            .await
                            .expect("GET /v1/boot");
                        let status = resp.status();
                        let body = resp.text().await.unwrap_or_default();
                        assert_eq!((status.as_u16(), body.as_str()), (200, "vm"));
                        bases.push(ctx.base_id());
                    }
                    bases
                })
            })
            .collect();
        let mut all = Vec::with_capacity(REQUESTS);
        for t in tasks {
            all.extend(t.await.expect("client task"));
        }
        all
    });
    let load = load.elapsed();
    assert_eq!(bases.len(), REQUESTS);
    let unique: HashSet<Id> = bases.iter().copied().collect();
    assert_eq!(unique.len(), REQUESTS, "each request its own base id");

    // Server tasks hand their records over as they leave the trace: wait for all.
    let expected = REQUESTS * 2 * SHAPE.len();
    let deadline = Instant::now() + Duration::from_secs(20);
    let events = loop {
        notifier::flush().expect("flush");
        let events = sink.events();
        if events.len() >= expected || Instant::now() > deadline {
            break events;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stats = notifier::stats();
    assert_eq!(stats.dropped, 0, "{stats:?}");
    assert_eq!((stats.failed, stats.discarded), (0, 0), "{stats:?}");
    assert_eq!(events.len(), expected, "every event, no more: {stats:?}");

    // Every event belongs to one of the requests' traces; each trace is its tree.
    let mut traces: HashMap<Id, Vec<&Event>> = HashMap::with_capacity(REQUESTS);
    for e in &events {
        assert!(unique.contains(&e.base_id), "an event of no request: {e:?}");
        traces.entry(e.base_id).or_default().push(e);
    }
    assert_eq!(traces.len(), REQUESTS);
    let bad: Vec<String> = traces
        .iter()
        .filter_map(|(base, evs)| {
            check_trace(*base, evs)
                .err()
                .map(|e| format!("{base}: {e}"))
        })
        .take(5)
        .collect();
    assert!(bad.is_empty(), "{bad:#?}");
    // No point id appears in two traces (each trace has its 7 distinct ones).
    let ids: HashSet<Id> = events.iter().map(|e| e.trace_id).collect();
    assert_eq!(ids.len(), REQUESTS * SHAPE.len());

    eprintln!(
        "{REQUESTS} requests from {CLIENTS} tasks on {WORKERS} workers: load {load:.2?} \
         ({:.0} req/s), whole test {:.2?}, {} events, {stats:?}",
        REQUESTS as f64 / load.as_secs_f64(),
        started.elapsed(),
        events.len()
    );
    drop(rt);
}
