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
//! before the timings; the throughput column of the timings is events/s.

// The counting allocator must implement the (unsafe) GlobalAlloc trait.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use divan::{Bencher, counter::ItemsCount};
use osprofiler::{Event, EventInfo, EventKind, Id, Timestamp};
use osprofiler_store::{ConnectionString, Options, Sink};
use osprofiler_testkit::RedisServer;
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

fn main() {
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
    let mut c = Clients {
        _server: server,
        ours,
        theirs,
        flush,
    };

    // Allocations per event, one batch after a warm-up batch (buffers reused as in the
    // exporter), for each client and trace size.
    for points in [10, 1_000] {
        let events = batch(points);
        for (name, ours) in [("ours", true), ("redis crate", false)] {
            let write = |c: &mut Clients| {
                if ours {
                    c.ours.write(&events).expect("ours");
                } else {
                    c.theirs.write(&events).expect("redis crate");
                }
            };
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
            eprintln!(
                "{name:>11}, traces of {points:>5} points: {:.2} allocations/event, {:.0} bytes allocated/event",
                a as f64 / BATCH as f64,
                b as f64 / BATCH as f64
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

fn run(b: Bencher, points_per_trace: usize, ours: bool) {
    let events = batch(points_per_trace);
    let mut guard = CLIENTS.lock().unwrap_or_else(|e| e.into_inner());
    let Some(c) = guard.as_mut() else { return };
    let mut n = 0_u32;
    b.counter(ItemsCount::new(BATCH)).bench_local(|| {
        // Keep the server's memory small: empty it now and then (timed, the same for
        // both clients).
        n += 1;
        if n.is_multiple_of(64) {
            let _: redis::RedisResult<()> = redis::cmd("FLUSHALL").query(&mut c.flush);
        }
        if ours {
            c.ours.write(&events).expect("ours");
        } else {
            c.theirs.write(&events).expect("redis crate");
        }
    });
}

/// Our client: the Redis sink writing one batch.
#[divan::bench(args = [10, 1_000], sample_count = 50)]
fn ours(b: Bencher, points_per_trace: usize) {
    run(b, points_per_trace, true);
}

/// The `redis` crate: the same commands in one `redis::Pipeline`.
#[divan::bench(args = [10, 1_000], sample_count = 50)]
fn redis_crate(b: Bencher, points_per_trace: usize) {
    run(b, points_per_trace, false);
}
