//! The notifier never blocks or fails the traced code: a stalled sink makes
//! the pipeline drop and count events within its memory bound; a failing
//! sink is counted; flush and shutdown work. One test: the pipeline is
//! process-wide and these phases must not interleave.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use osprofiler::notifier::{self, Config, JsonLinesSink, MemorySink, Sink, SinkError};
use osprofiler::{Event, TraceContext};

/// A sink that blocks until released, as a hung backend would.
#[derive(Clone, Default)]
struct Stalled {
    released: Arc<(Mutex<bool>, Condvar)>,
    got: Arc<AtomicU64>,
}

impl Sink for Stalled {
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

struct Failing(Arc<AtomicBool>);

impl Sink for Failing {
    fn write(&mut self, _events: &[Event]) -> Result<(), SinkError> {
        self.0.store(true, Ordering::SeqCst);
        Err(SinkError::msg("backend unreachable: connection refused"))
    }
}

fn record(points: usize) -> TraceContext {
    let ctx = TraceContext::new(None, None, None);
    ctx.in_scope(|| {
        for _ in 0..points {
            let _p = osprofiler::point("db");
        }
    });
    ctx
}

#[test]
fn pipeline_under_a_stalled_failing_and_healthy_sink() {
    notifier::configure(Config {
        max_queued_events: 10_000,
        interval: Duration::from_millis(5),
        max_batch: 1000,
        ..Config::default()
    });

    // 1. Stalled sink: recording 200,000 events finishes while the sink is
    //    stuck; everything beyond the queue bound is dropped and counted.
    let stalled = Stalled::default();
    let guard = notifier::set_sink(stalled.clone());
    let before = notifier::stats();
    let started = Instant::now();
    record(100_000);
    let recording = started.elapsed();
    let s = notifier::stats();
    let dropped = s.dropped - before.dropped;
    // The bound is 10,000 records; a record holds one event or a short
    // point's two.
    assert!(
        dropped >= 200_000 - 2 * 10_000 - 2000,
        "dropped {dropped} of 200000 events with a 10000-record bound"
    );
    assert_eq!(notifier::dropped_events(), s.dropped);
    // Not a speed claim (benches do that): the traced code finished at all,
    // with the sink still stuck.
    assert!(recording < Duration::from_secs(30));
    assert_eq!(stalled.got.load(Ordering::SeqCst), 0);
    {
        let (m, cv) = &*stalled.released;
        *m.lock().unwrap() = true;
        cv.notify_all();
    }
    notifier::flush().unwrap();
    let delivered = stalled.got.load(Ordering::SeqCst);
    // What the queue held, plus what the exporter held when it stalled.
    assert!(
        delivered > 0 && delivered <= 2 * 10_000 + 2000,
        "delivered {delivered}"
    );
    assert_eq!(
        delivered + dropped,
        200_000,
        "every event is delivered or counted as dropped"
    );
    drop(guard);

    // 2. Failing sink: errors are counted, never reach the traced code.
    let tried = Arc::new(AtomicBool::new(false));
    let guard = notifier::set_sink(Failing(tried.clone()));
    let before = notifier::stats();
    record(10);
    notifier::flush().unwrap();
    let s = notifier::stats();
    assert!(tried.load(Ordering::SeqCst));
    assert_eq!(s.failed - before.failed, 20);
    assert!(s.sink_errors > before.sink_errors);
    assert_eq!(
        notifier::last_error().as_deref(),
        Some("backend unreachable: connection refused")
    );
    drop(guard);

    // 3. After shutdown, events are discarded (nowhere to go) and counted.
    let before = notifier::stats();
    record(5);
    notifier::flush().unwrap();
    assert_eq!(notifier::stats().discarded - before.discarded, 10);

    // 4. A JSON-lines file sink gets osprofiler's JSON, one event per line,
    //    and a sink replaced by another is flushed first.
    let path = std::env::temp_dir().join(format!("osprofiler-test-{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let guard = notifier::set_sink(JsonLinesSink::open(&path).unwrap());
    let ctx = record(3);
    let memory = MemorySink::new();
    let guard2 = notifier::set_sink(memory.clone());
    drop(guard); // an old guard does not close the newer sink
    let ctx2 = record(1);
    notifier::flush().unwrap();
    assert_eq!(memory.trace(ctx2.base_id()).len(), 2);
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 6);
    for line in lines {
        let e = Event::from_json(line).unwrap();
        assert_eq!(e.base_id, ctx.base_id());
        assert_eq!(e.to_json(), line);
        assert!(line.starts_with(r#"{"name": "db-st"#), "{line}");
    }
    drop(guard2);
    let _ = std::fs::remove_file(&path);
}
