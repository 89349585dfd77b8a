//! Our own Redis client against the `redis` crate (issue 11's one-client decision), side
//! by side in one run, into one real redis-server started here:
//! `cargo bench -p osprofiler-store --bench redis_client`.
//!
//! Both write the same batch of 4,096 osprofiler events (the exporter's `max_batch`) as
//! our sink writes them: per trace one `LPUSH osprofiler_opt:<id> e1 e2 …` (at most 256
//! values each) then `ZADD osprofiler_index LT <start> <id>`, all in one pipelined round
//! trip, every reply read. The event JSON is made by the same writer on both sides, so
//! only the clients differ: ours is the sink itself ([`osprofiler_store::sink`]), the
//! other is `redis::Pipeline` (reused from batch to batch) over a sync `redis::Connection`.
//!
//! A counting global allocator gives the allocations per event of one batch, printed
//! before the timings, with the client's own CPU time per event (this thread's time on
//! the CPU over 100 batches, from /proc/thread-self/schedstat: unlike the wall time, it
//! does not depend on what else the machine runs); the throughput column of the timings
//! is events/s.
//!
//! `cluster`: the same batch through our sink into a Redis Cluster of 3 masters + 3
//! replicas (`rediscluster://`, started here too), beside `ours` into the single server.
//!
//! Run as a test (nextest runs every benchmark once, each in its own process), nothing is
//! measured before the benchmarks and the cluster is started only for the `cluster` ones.

// The counting allocator must implement the (unsafe) GlobalAlloc trait.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use divan::{Bencher, counter::ItemsCount};
use osprofiler::{Event, EventInfo, EventKind, Id, Timestamp};
use osprofiler_store::{ConnectionString, Options, Sink};
use osprofiler_testkit::{RedisCluster, RedisServer};
use serde_json::{Map, Value};

/// Counts allocations (and reallocations), forwarding everything to the system allocator.
struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is forwarded unchanged to `System`, which upholds the contract.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: same layout as given.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(new_size as u64, Ordering::Relaxed);
        // SAFETY: `ptr` came from `System` with this layout.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const BATCH: usize = 4096;
const PUSH_CHUNK: usize = 256;

struct Clients {
    _server: RedisServer,
    ours: Box<dyn Sink>,
    theirs: Theirs,
    flush: redis::Connection,
    /// The cluster and our sink writing to it, when redis-cli is there.
    cluster: Option<(RedisCluster, Box<dyn Sink>)>,
}

static CLIENTS: Mutex<Option<Clients>> = Mutex::new(None);

/// The `redis` crate side: a sync connection, a pipeline and a JSON buffer reused.
struct Theirs {
    conn: redis::Connection,
    pipe: redis::Pipeline,
    json: Vec<u8>,
    groups: Vec<(Id, Vec<usize>)>,
}

impl Theirs {
    /// The sink's commands for `events`, through `redis::Pipeline`.
    fn write(&mut self, events: &[Event]) -> redis::RedisResult<()> {
        self.pipe.clear();
        // Group by trace in order of first appearance, time order within a trace.
        self.groups.clear();
        for (i, e) in events.iter().enumerate() {
            match self.groups.iter_mut().rev().find(|(b, _)| *b == e.base_id) {
                Some((_, v)) => v.push(i),
                None => self.groups.push((e.base_id, vec![i])),
            }
        }
        for (base, idx) in &mut self.groups {
            idx.sort_unstable_by_key(|&i| (events[i].timestamp.0, i));
            let id = base.to_string();
            let key = format!("osprofiler_opt:{id}");
            for chunk in idx.chunks(PUSH_CHUNK) {
                let cmd = self.pipe.cmd("LPUSH").arg(&key);
                for &i in chunk {
                    self.json.clear();
                    osprofiler_store::__redis_event_json(&mut self.json, &events[i]);
                    cmd.arg(&self.json[..]);
                }
            }
            let first = idx
                .iter()
                .map(|&i| events[i].timestamp.0)
                .min()
                .unwrap_or(0);
            let score = format!("{}.{:06}", first / 1_000_000, first % 1_000_000);
            self.pipe
                .cmd("ZADD")
                .arg("osprofiler_index")
                .arg("LT")
                .arg(score)
                .arg(&id);
        }
        self.pipe.query::<()>(&mut self.conn)
    }
}

/// `BATCH` events: points of `points_per_trace` (start and stop each) in traces.
fn batch(points_per_trace: usize) -> Vec<Event> {
    let mut info = Map::new();
    info.insert("host".into(), Value::String("compute-1".into()));
    info.insert(
        "db".into(),
        serde_json::json!({"statement": "SELECT * FROM instances WHERE id = %s", "params": [42]}),
    );
    let info = EventInfo::from(info);
    let project = Some("nova".into());
    let service = Some("api".into());
    let mut out = Vec::with_capacity(BATCH);
    let mut t = 1_764_072_000_000_000_i64;
    let mut base = Id::new_v4();
    for p in 0..BATCH / 2 {
        if p % points_per_trace == 0 {
            base = Id::new_v4();
        }
        let point = Id::new_v4();
        for kind in [EventKind::Start, EventKind::Stop] {
            t += 7;
            out.push(Event {
                name: "db".into(),
                kind,
                base_id: base,
                trace_id: point,
                parent_id: base,
                timestamp: Timestamp(t),
                info: info.clone(),
                project: project.clone(),
                service: service.clone(),
            });
        }
    }
    out
}

/// Whether divan measures (`cargo bench`) rather than runs each benchmark once as a test.
fn measuring() -> bool {
    let args: Vec<String> = std::env::args().collect();
    args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--test")
}

/// Whether the `cluster` benchmarks may run: the filters name them, or no client.
fn cluster_wanted() -> bool {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let named = |s: &str| filters.iter().any(|f| f.contains(s));
    named("cluster") || !(named("ours") || named("redis_crate"))
}

fn main() {
    // Listing (nextest does, before running each case) needs no servers.
    if std::env::args().any(|a| a == "--list") {
        return divan::main();
    }
    let server = match RedisServer::start() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("skipping the Redis client benchmarks: redis-server unavailable: {e}");
            return;
        }
    };
    let url = server.url();
    let cs: ConnectionString = url.parse().expect("redis url");
    let ours = osprofiler_store::sink(&cs, &Options::default()).expect("our sink");
    let client = redis::Client::open(url.as_str()).expect("redis crate client");
    let theirs = Theirs {
        conn: client.get_connection().expect("redis crate connection"),
        pipe: redis::pipe(),
        json: Vec::with_capacity(1024),
        groups: Vec::new(),
    };
    let flush = client.get_connection().expect("redis crate connection");
    let cluster = match cluster_wanted()
        .then(RedisCluster::start)
        .unwrap_or_else(|| Err("not asked for".into()))
    {
        Ok(cl) => {
            let cs: ConnectionString = cl.url().parse().expect("cluster url");
            let sink = osprofiler_store::sink(&cs, &Options::default()).expect("cluster sink");
            Some((cl, sink))
        }
        Err(e) => {
            eprintln!("no cluster benchmark: {e}");
            None
        }
    };
    let mut c = Clients {
        _server: server,
        ours,
        theirs,
        flush,
        cluster,
    };

    // Allocations per event, one batch after a warm-up batch (buffers reused as in the
    // exporter), for each client and trace size.
    // Measured figures, not checks: only under `cargo bench`.
    let sizes: &[usize] = if measuring() { &[10, 1_000] } else { &[] };
    for &points in sizes {
        let events = batch(points);
        for (name, to) in [
            ("ours", To::Ours),
            ("redis crate", To::Theirs),
            ("cluster", To::Cluster),
        ] {
            if to == To::Cluster && c.cluster.is_none() {
                continue;
            }
            let write = |c: &mut Clients| write(c, to, &events);
            write(&mut c);
            let (a0, b0) = (
                ALLOCS.load(Ordering::Relaxed),
                BYTES.load(Ordering::Relaxed),
            );
            write(&mut c);
            let (a, b) = (
                ALLOCS.load(Ordering::Relaxed) - a0,
                BYTES.load(Ordering::Relaxed) - b0,
            );
            const ROUNDS: usize = 100;
            let cpu = thread_cpu_ns().map(|t0| {
                for _ in 0..ROUNDS {
                    write(&mut c);
                }
                thread_cpu_ns().unwrap_or(t0) - t0
            });
            let _: redis::RedisResult<()> = redis::cmd("FLUSHALL").query(&mut c.flush);
            eprintln!(
                "{name:>11}, traces of {points:>5} points: {:.2} allocations/event, {:.0} bytes allocated/event, {} ns of client CPU/event",
                a as f64 / BATCH as f64,
                b as f64 / BATCH as f64,
                cpu.map_or("?".into(), |ns| format!(
                    "{:.0}",
                    ns as f64 / (ROUNDS * BATCH) as f64
                ))
            );
        }
    }
    let _: () = redis::cmd("FLUSHALL")
        .query(&mut c.flush)
        .expect("flushall");
    *CLIENTS.lock().unwrap_or_else(|e| e.into_inner()) = Some(c);

    divan::main();

    // Stop the server (statics are never dropped).
    drop(CLIENTS.lock().unwrap_or_else(|e| e.into_inner()).take());
}

/// This thread's time on the CPU so far (ns), if the kernel tells it.
fn thread_cpu_ns() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum To {
    Ours,
    Theirs,
    Cluster,
}

fn write(c: &mut Clients, to: To, events: &[Event]) {
    match to {
        To::Ours => c.ours.write(events).expect("ours"),
        To::Theirs => c.theirs.write(events).expect("redis crate"),
        To::Cluster => {
            if let Some((_, s)) = c.cluster.as_mut() {
                s.write(events).expect("cluster");
            }
        }
    }
}

fn run(b: Bencher, points_per_trace: usize, to: To) {
    let events = batch(points_per_trace);
    let mut guard = CLIENTS.lock().unwrap_or_else(|e| e.into_inner());
    let Some(c) = guard.as_mut() else { return };
    if to == To::Cluster && c.cluster.is_none() {
        return;
    }
    let mut n = 0_u32;
    b.counter(ItemsCount::new(BATCH)).bench_local(|| {
        // Keep the server's memory small: empty it now and then (timed, the same for
        // both clients).
        n += 1;
        if n.is_multiple_of(64) {
            let _: redis::RedisResult<()> = redis::cmd("FLUSHALL").query(&mut c.flush);
            if let Some((cl, _)) = &c.cluster {
                for m in cl.master_ports().unwrap_or_default() {
                    let _ = cl.cmd_on(m, &["FLUSHALL"]);
                }
            }
        }
        write(c, to, &events);
    });
}

/// Our client: the Redis sink writing one batch.
#[divan::bench(args = [10, 1_000], sample_count = 50)]
fn ours(b: Bencher, points_per_trace: usize) {
    run(b, points_per_trace, To::Ours);
}

/// The `redis` crate: the same commands in one `redis::Pipeline`.
#[divan::bench(args = [10, 1_000], sample_count = 50)]
fn redis_crate(b: Bencher, points_per_trace: usize) {
    run(b, points_per_trace, To::Theirs);
}

/// Our sink into the 3-master cluster (`rediscluster://`).
#[divan::bench(args = [10, 1_000], sample_count = 50)]
fn cluster(b: Bencher, points_per_trace: usize) {
    run(b, points_per_trace, To::Cluster);
}

/// Points of the trace `fetch_10k` reads (a hundredth when run as a test).
fn fetched_points() -> usize {
    if measuring() { 10_000 } else { 100 }
}

/// `fetch_10k`: a trace of 10,000 points (20,000 events) written by our sink, then
/// fetched and built into a report as `osprofiler trace show` does
/// (`TraceStore::report`), from the single server and from the cluster (where the
/// trace's events live in one slot). Python osprofiler 4.4.0's Redis driver reads the
/// same trace from the single server in the same run (`get_report`, best of three; it
/// has no cluster driver), printed before the timing.
#[divan::bench(args = ["single", "cluster"], sample_count = 10, sample_size = 1)]
fn fetch_10k(b: Bencher, target: &str) {
    let mut guard = CLIENTS.lock().unwrap_or_else(|e| e.into_inner());
    let Some(c) = guard.as_mut() else { return };
    let (to, url) = match (target, &c.cluster) {
        ("cluster", Some((cl, _))) => (To::Cluster, cl.url()),
        ("cluster", None) => return,
        _ => (To::Ours, c._server.url()),
    };
    let points = fetched_points();
    let base = Id::new_v4();
    let template = batch(1).swap_remove(0);
    let mut all = Vec::with_capacity(2 * points);
    let mut t = 1_764_072_000_000_000_i64;
    for _ in 0..points {
        let point = Id::new_v4();
        for kind in [EventKind::Start, EventKind::Stop] {
            t += 7;
            all.push(Event {
                kind,
                base_id: base,
                trace_id: point,
                parent_id: base,
                timestamp: Timestamp(t),
                ..template.clone()
            });
        }
    }
    for chunk in all.chunks(BATCH) {
        write(c, to, chunk);
    }
    let id = base.to_string();
    if to == To::Ours && measuring() {
        python_fetch(&url, &id, points);
    }
    let cs: ConnectionString = url.parse().expect("url");
    let mut store = osprofiler_store::open(&cs, &Options::default()).expect("store");
    b.bench_local(|| {
        let report = store.report(&id).expect("read").expect("the trace");
        assert_eq!(report.len(), points);
        report
    });
}

fn python_fetch(url: &str, base: &str, points: usize) {
    match osprofiler_testkit::Oracle::locate().and_then(|py| py.time_get_report(url, base)) {
        Ok(out) => eprintln!(
            "Python osprofiler 4.4.0 Redis driver: get_report of the {points}-point trace: {} (best of 3)",
            out.trim()
        ),
        Err(e) => eprintln!("Python osprofiler fetch not measured: {e}"),
    }
}
