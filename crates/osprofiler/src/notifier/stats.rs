//! The pipeline's counters, and the once-per-interval report of what was lost.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::sink::SinkError;

/// Counters of the pipeline since the process started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Events written to a sink successfully.
    pub exported: u64,
    /// Events dropped because the queue was full (the sink could not keep up).
    pub dropped: u64,
    /// Events a sink failed to write.
    pub failed: u64,
    /// Sink errors (each may cover a batch of events).
    pub sink_errors: u64,
    /// Events recorded while no sink was set (nowhere to send them).
    pub discarded: u64,
}

#[derive(Default)]
pub(super) struct Counters {
    pub(super) exported: AtomicU64,
    pub(super) dropped: AtomicU64,
    pub(super) failed: AtomicU64,
    pub(super) sink_errors: AtomicU64,
    pub(super) discarded: AtomicU64,
    last_error: Mutex<Option<String>>,
}

pub(super) static COUNTERS: Counters = Counters {
    exported: AtomicU64::new(0),
    dropped: AtomicU64::new(0),
    failed: AtomicU64::new(0),
    sink_errors: AtomicU64::new(0),
    discarded: AtomicU64::new(0),
    last_error: Mutex::new(None),
};

/// The pipeline's counters.
pub fn stats() -> Stats {
    let c = &COUNTERS;
    Stats {
        exported: c.exported.load(Ordering::Relaxed),
        dropped: c.dropped.load(Ordering::Relaxed),
        failed: c.failed.load(Ordering::Relaxed),
        sink_errors: c.sink_errors.load(Ordering::Relaxed),
        discarded: c.discarded.load(Ordering::Relaxed),
    }
}

/// Events dropped so far because the sink could not keep up.
pub fn dropped_events() -> u64 {
    COUNTERS.dropped.load(Ordering::Relaxed)
}

/// For sinks that send in the background: `events` that an earlier
/// [`Sink::write`](super::Sink::write) accepted (and the pipeline counted as exported) were lost after
/// all, for `error`. Moves them from `exported` to `failed` in [`stats`].
pub fn report_late_failure(events: u64, error: &SinkError) {
    let c = &COUNTERS;
    let _ = c
        .exported
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |e| {
            Some(e.saturating_sub(events))
        });
    c.failed.fetch_add(events, Ordering::Relaxed);
    note_error(error);
}

/// The last sink error's message, if any.
pub fn last_error() -> Option<String> {
    COUNTERS.last_error.lock().ok()?.clone()
}

/// How often losses are reported through the `log` facade by default (at most once per
/// interval, and only when something was lost in it).
pub const LOSS_REPORT_INTERVAL: Duration = Duration::from_secs(10);

/// Reports what was lost since the last report, once per interval: a backend that is
/// down must not flood the service's log with a line per event or batch.
pub(super) struct LossReport {
    every: Duration,
    at: std::time::Instant,
    seen: (u64, u64, u64),
}

impl LossReport {
    pub(super) fn new(every: Duration) -> LossReport {
        let s = stats();
        LossReport {
            every,
            at: std::time::Instant::now(),
            seen: (s.dropped, s.failed, s.sink_errors),
        }
    }

    pub(super) fn tick(&mut self) {
        if self.at.elapsed() < self.every {
            return;
        }
        let s = stats();
        let (dropped, failed, errors) = (
            s.dropped - self.seen.0,
            s.failed - self.seen.1,
            s.sink_errors - self.seen.2,
        );
        if dropped > 0 || failed > 0 {
            // One decimal: an interval under a second is not "the last 0 s".
            let secs = format!("{:.1}", self.at.elapsed().as_secs_f64());
            let last = last_error().unwrap_or_default();
            log::warn!(
                target: "osprofiler",
                "osprofiler lost {} events in the last {secs} s: {dropped} dropped (queue full), {failed} not written ({errors} sink errors{}{last})",
                dropped + failed,
                if last.is_empty() { "" } else { "; last: " },
            );
        }
        self.seen = (s.dropped, s.failed, s.sink_errors);
        self.at = std::time::Instant::now();
    }
}

pub(super) fn note_error(e: &SinkError) {
    COUNTERS.sink_errors.fetch_add(1, Ordering::Relaxed);
    if let Ok(mut l) = COUNTERS.last_error.lock() {
        *l = Some(e.to_string());
    }
}
