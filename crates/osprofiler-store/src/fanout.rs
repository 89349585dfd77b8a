//! Several backends at once: every batch goes to each backend's own bounded queue and
//! thread, so a backend that is slow, down or hung holds up neither the traced code nor
//! the other backends. Each keeps its own counters ([`backend_stats`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use osprofiler::Event;
use osprofiler::notifier::{Sink, SinkError};

/// Batches waiting per backend before that backend's batches are dropped. With the
/// exporter's batches of up to 4,096 events this bounds each backend's backlog.
const QUEUE_BATCHES: usize = 64;

/// How long a flush (or close) waits for one backend.
const FLUSH_WAIT: Duration = Duration::from_secs(2);

/// Counters of one backend of a [`Backends`](crate::Backends) list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendStats {
    /// The backend (connection string, password hidden).
    pub backend: String,
    /// Events written.
    pub exported: u64,
    /// Events dropped because this backend's queue was full.
    pub dropped: u64,
    /// Events this backend failed to write.
    pub failed: u64,
    /// Write errors (each may cover a batch).
    pub errors: u64,
    /// The last error's message.
    pub last_error: Option<String>,
}

#[derive(Default)]
struct Counters {
    exported: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
    errors: AtomicU64,
    last_error: Mutex<Option<String>>,
}

struct Registered {
    backend: String,
    counters: Weak<Counters>,
}

static REGISTRY: Mutex<Vec<Registered>> = Mutex::new(Vec::new());

/// The counters of every backend of the multi-backend sinks that are open.
pub fn backend_stats() -> Vec<BackendStats> {
    let Ok(mut reg) = REGISTRY.lock() else {
        return Vec::new();
    };
    reg.retain(|r| r.counters.strong_count() > 0);
    reg.iter()
        .filter_map(|r| {
            let c = r.counters.upgrade()?;
            Some(BackendStats {
                backend: r.backend.clone(),
                exported: c.exported.load(Ordering::Relaxed),
                dropped: c.dropped.load(Ordering::Relaxed),
                failed: c.failed.load(Ordering::Relaxed),
                errors: c.errors.load(Ordering::Relaxed),
                last_error: c.last_error.lock().ok().and_then(|l| l.clone()),
            })
        })
        .collect()
}

enum Msg {
    Batch(Arc<[Event]>),
    Flush(SyncSender<Result<(), String>>),
}

struct Lane {
    backend: String,
    tx: Option<SyncSender<Msg>>,
    counters: Arc<Counters>,
    thread: Option<JoinHandle<()>>,
    // Losses reported through `log` so far, and when: once per interval at most, as the
    // notifier reports its own (a backend's failures are not the pipeline's).
    reported: (u64, std::time::Instant),
}

impl Lane {
    fn report_losses(&mut self) {
        if self.reported.1.elapsed() < osprofiler::notifier::configured().loss_report_interval {
            return;
        }
        let c = &self.counters;
        let lost = c.dropped.load(Ordering::Relaxed) + c.failed.load(Ordering::Relaxed);
        if lost > self.reported.0 {
            let last = c.last_error.lock().ok().and_then(|l| l.clone());
            log::warn!(
                target: "osprofiler",
                "osprofiler lost {} events to {} in the last {:.1} s{}{}",
                lost - self.reported.0,
                self.backend,
                self.reported.1.elapsed().as_secs_f64(),
                if last.is_some() { ": " } else { "" },
                last.unwrap_or_default()
            );
        }
        self.reported = (lost, std::time::Instant::now());
    }
}

/// The sink of a list of backends.
pub(crate) struct FanOut {
    lanes: Vec<Lane>,
}

impl FanOut {
    pub(crate) fn new(sinks: Vec<(String, Box<dyn Sink>)>) -> FanOut {
        let mut lanes = Vec::with_capacity(sinks.len());
        for (backend, sink) in sinks {
            let counters = Arc::new(Counters::default());
            let (tx, rx) = sync_channel(QUEUE_BATCHES);
            let c = counters.clone();
            let thread = std::thread::Builder::new()
                .name("osprofiler-backend".into())
                .spawn(move || run(sink, rx, c));
            let (tx, thread) = match thread {
                Ok(t) => (Some(tx), Some(t)),
                // No thread: this backend's events are counted as dropped.
                Err(_) => (None, None),
            };
            if let Ok(mut reg) = REGISTRY.lock() {
                reg.push(Registered {
                    backend: backend.clone(),
                    counters: Arc::downgrade(&counters),
                });
            }
            lanes.push(Lane {
                backend,
                tx,
                counters,
                thread,
                reported: (0, std::time::Instant::now()),
            });
        }
        FanOut { lanes }
    }
}

fn run(mut sink: Box<dyn Sink>, rx: Receiver<Msg>, c: Arc<Counters>) {
    let note = |e: &SinkError| {
        c.errors.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut l) = c.last_error.lock() {
            *l = Some(e.to_string());
        }
    };
    while let Ok(msg) = rx.recv() {
        match msg {
            Msg::Batch(events) => match sink.write(&events) {
                Ok(()) => {
                    c.exported.fetch_add(events.len() as u64, Ordering::Relaxed);
                }
                Err(e) => {
                    c.failed.fetch_add(events.len() as u64, Ordering::Relaxed);
                    note(&e);
                }
            },
            Msg::Flush(ack) => {
                let r = sink.flush();
                if let Err(e) = &r {
                    note(e);
                }
                let _ = ack.try_send(r.map_err(|e| e.to_string()));
            }
        }
    }
    // The sender is gone: the sink is dropped here, on its own thread, so a backend
    // that takes long to close delays no one.
}

impl Sink for FanOut {
    fn write(&mut self, events: &[Event]) -> Result<(), SinkError> {
        // One copy shared by every backend.
        let shared: Arc<[Event]> = events.into();
        for lane in &self.lanes {
            let n = shared.len() as u64;
            let Some(tx) = &lane.tx else {
                lane.counters.dropped.fetch_add(n, Ordering::Relaxed);
                continue;
            };
            match tx.try_send(Msg::Batch(shared.clone())) {
                Ok(()) => {}
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                    lane.counters.dropped.fetch_add(n, Ordering::Relaxed);
                }
            }
        }
        for lane in &mut self.lanes {
            lane.report_losses();
        }
        // Each backend's failures are its own: the pipeline sees success.
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        // One deadline for the whole flush: a stuck backend costs it at most FLUSH_WAIT.
        let deadline = std::time::Instant::now() + FLUSH_WAIT;
        let mut waits = Vec::new();
        let mut failed = Vec::new();
        for lane in &self.lanes {
            let Some(tx) = &lane.tx else { continue };
            let (ack_tx, ack_rx) = sync_channel(1);
            // A full queue: this backend is behind; wait for it as for the others.
            let mut msg = Msg::Flush(ack_tx);
            loop {
                match tx.try_send(msg) {
                    Ok(()) => {
                        waits.push((lane, ack_rx));
                        break;
                    }
                    Err(TrySendError::Full(m)) if std::time::Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(1));
                        msg = m;
                    }
                    Err(_) => {
                        failed.push(format!("{}: too far behind to flush", lane.backend));
                        break;
                    }
                }
            }
        }
        for (lane, rx) in waits {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(Ok(())) => {}
                Ok(Err(e)) => failed.push(format!("{}: {e}", lane.backend)),
                Err(_) => failed.push(format!("{}: did not flush in time", lane.backend)),
            }
        }
        if failed.is_empty() {
            Ok(())
        } else {
            Err(SinkError::msg(failed.join("; ")))
        }
    }
}

impl Drop for FanOut {
    fn drop(&mut self) {
        let deadline = std::time::Instant::now() + FLUSH_WAIT;
        let _ = self.flush();
        for lane in &mut self.lanes {
            lane.tx = None;
        }
        // Join each backend's thread within the same bound; one that hangs is left to
        // finish (or not) on its own.
        for lane in &mut self.lanes {
            if let Some(t) = lane.thread.take() {
                while !t.is_finished() && std::time::Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(1));
                }
                if t.is_finished() {
                    let _ = t.join();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use osprofiler::notifier::MemorySink;

    struct Stuck(Arc<Mutex<()>>);

    impl Sink for Stuck {
        fn write(&mut self, _: &[Event]) -> Result<(), SinkError> {
            let _held = self.0.lock();
            Ok(())
        }
    }

    fn event() -> Event {
        Event::from_json(r#"{"name": "db-start", "base_id": "11111111-1111-4111-8111-111111111111", "trace_id": "aaaaaaaa-aaaa-4aaa-8aaa-000000000002", "parent_id": "11111111-1111-4111-8111-111111111111", "timestamp": "2026-11-25T12:00:00.001375", "info": {"host": "h"}}"#).unwrap()
    }

    #[test]
    fn a_stuck_backend_holds_up_no_other() {
        let mem = MemorySink::new();
        let gate = Arc::new(Mutex::new(()));
        let held = gate.lock().unwrap();
        let mut fan = FanOut::new(vec![
            (
                "stuck://".into(),
                Box::new(Stuck(gate.clone())) as Box<dyn Sink>,
            ),
            ("memory://".into(), Box::new(mem.clone())),
        ]);
        let batch = vec![event(); 10];
        for i in 1..=(QUEUE_BATCHES + 10) {
            fan.write(&batch).unwrap();
            // Let the healthy backend keep up (its queue has room for 64 batches only):
            // what this test is about is the stuck one.
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while mem.events().len() < 10 * i && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
        // The memory backend got everything; the stuck one dropped what did not fit.
        assert!(fan.flush().is_err(), "the stuck backend cannot flush");
        assert_eq!(mem.events().len(), 10 * (QUEUE_BATCHES + 10));
        let stats = backend_stats();
        let stuck = stats.iter().find(|s| s.backend == "stuck://").unwrap();
        assert!(stuck.dropped >= 10 * 9, "{stuck:?}");
        let memory = stats.iter().find(|s| s.backend == "memory://").unwrap();
        assert_eq!(memory.exported, 10 * (QUEUE_BATCHES + 10) as u64);
        assert_eq!(memory.dropped, 0);
        drop(held);
        drop(fan);
    }
}
