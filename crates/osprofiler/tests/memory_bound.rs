//! The pipeline's memory bound (see the `notifier` module docs), shown: with a backend
//! that hangs forever (a sink that never returns from `write`, as a TCP peer that accepts
//! and never answers would), 5 million traced points over 4 threads grow the process's
//! RSS by less than the stated bound, and once the sink is released every event is
//! accounted for: exported + dropped + failed = recorded. Two shapes, each in a process
//! of its own (RSS is per process): long traces, which hand over full buffers, and
//! buffers handed over with two records each (a guard open when its thread leaves the
//! trace), which the queue's budget counts by their capacity.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use osprofiler::notifier::{self, Config, Sink, SinkError};
use osprofiler::{Event, TraceContext};

const THREADS: usize = 4;
const POINTS: usize = 5_000_000;
const PER_TRACE: usize = 1_000;

// From notifier.rs (private there; `a_record_is_96_bytes` pins the size).
const RECORD: usize = 96;
const BATCH: usize = 512;
const POOL_MAX: usize = 64;
const CHANNEL_BATCHES: usize = 16_384;
// What the process may add besides the pipeline while threads run: their stacks' touched
// pages, malloc's per-thread arenas (each starts by touching a few pages), the sampler.
// Measured growth without tracing is well under 1 MiB; 8 MiB is margin.
const SLACK: usize = 8 << 20;

#[derive(Clone, Default)]
struct Hung {
    released: Arc<(Mutex<bool>, Condvar)>,
    got: Arc<AtomicU64>,
}

impl Sink for Hung {
    fn write(&mut self, events: &[Event]) -> Result<(), SinkError> {
        let (m, cv) = &*self.released;
        let mut r = m.lock().unwrap();
        while !*r {
            r = cv.wait(r).unwrap();
        }
        self.got.fetch_add(events.len() as u64, Ordering::SeqCst);
        Ok(())
    }
}

fn rss() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: usize = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    kb * 1024
}

#[test]
fn rss_stays_under_the_bound_with_a_hung_backend() {
    let Ok(shape) = std::env::var("MEMORY_BOUND_SHAPE") else {
        for shape in ["long", "small"] {
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "rss_stays_under_the_bound_with_a_hung_backend",
                    "--nocapture",
                ])
                .env("MEMORY_BOUND_SHAPE", shape)
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stderr);
            eprintln!("{shape}: {text}");
            assert!(out.status.success(), "{shape} failed: {text}");
            assert!(text.contains("growth"), "{shape} did not run: {text}");
        }
        return;
    };
    let small = shape == "small";
    let cfg = Config::default();
    notifier::configure(cfg);
    let sink = Hung::default();
    let guard = notifier::set_sink(sink.clone());

    // The stated bound (module docs of `notifier`), for points without info payloads.
    let queue = cfg.max_queued_events * RECORD;
    let thread_buffers = THREADS * BATCH * RECORD;
    let pool = POOL_MAX * BATCH * RECORD;
    // The exporter's batch in hand: records being converted and the events at the sink.
    let in_hand = BATCH * RECORD + cfg.max_batch * std::mem::size_of::<Event>();
    // The channel's slots (a `Vec` and a tag each), allocated as it fills.
    let slots = CHANNEL_BATCHES * 32;
    let bound = queue + thread_buffers + pool + in_hand + slots;

    // Warm up (the exporter thread, the first batch stuck in the sink), then measure.
    let warm = TraceContext::new(None, None, None);
    warm.in_scope(|| drop(osprofiler::point("db")));
    drop(warm);
    std::thread::sleep(Duration::from_millis(100));
    let before = rss();

    let done = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(before as u64));
    let sampler = {
        let (done, peak) = (done.clone(), peak.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(rss() as u64, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let start = Instant::now();
    let workers: Vec<_> = (0..THREADS)
        .map(|_| {
            std::thread::spawn(move || {
                if small {
                    // A guard still open when the thread leaves the trace: its
                    // buffer is handed over then, with two records (the last
                    // point's stop, this one's start) in 16 slots.
                    let ctx = TraceContext::new(None, None, None);
                    for _ in 0..POINTS / THREADS {
                        let entered = ctx.enter();
                        let p = osprofiler::point("db");
                        drop(entered);
                        drop(p);
                    }
                    return;
                }
                for _ in 0..POINTS / THREADS / PER_TRACE {
                    let ctx = TraceContext::new(None, None, None);
                    ctx.in_scope(|| {
                        for _ in 0..PER_TRACE {
                            drop(osprofiler::point("db"));
                        }
                    });
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let load = start.elapsed();
    std::thread::sleep(Duration::from_millis(200));
    done.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    let growth = (peak.load(Ordering::Relaxed) as usize).saturating_sub(before);
    let mid = notifier::stats();
    eprintln!(
        "{POINTS} points in {load:.2?} against a hung sink: RSS {before} B before, growth \
         {growth} B, bound {bound} B + slack {SLACK} B; dropped {} events so far",
        mid.dropped
    );
    assert!(
        growth < bound + SLACK,
        "RSS grew by {growth} B, over the bound {bound} B + {SLACK} B"
    );
    assert!(mid.dropped > 0, "{mid:?}");

    // Release the backend: what was queued is written, and the counts add up.
    {
        let (m, cv) = &*sink.released;
        *m.lock().unwrap() = true;
        cv.notify_all();
    }
    notifier::flush_timeout(Duration::from_secs(30)).unwrap();
    let s = notifier::stats();
    let recorded = 2 * (POINTS as u64 + 1); // two events per point, warm-up included
    eprintln!("{s:?}; recorded {recorded}");
    assert_eq!(s.exported + s.dropped + s.failed, recorded, "{s:?}");
    assert_eq!(s.exported, sink.got.load(Ordering::SeqCst));
    drop(guard);
}
