//! The notifier pipeline: recorded points go from per-thread buffers, in
//! batches, over a bounded queue to one background exporter thread, which
//! turns them into [`Event`]s and writes them to a [`Sink`].
//!
//! The traced code never waits: when the queue is full (the sink is slow or
//! down) whole batches are dropped and counted ([`stats`]). A sink error is
//! counted too and never reaches the traced code.
//!
//! # Memory bound
//!
//! With the default [`Config`] (and `max_batch` = 4,096), what the pipeline holds at most,
//! from the constants in this module and in `osprofiler-store`'s `fanout.rs`:
//!
//! | part | bound | default |
//! |---|---|---|
//! | the queue to the exporter | `max_queued_events` × 96 B (a record) | 65,536 × 96 = 6,291,456 B (6 MiB) |
//! | each recording thread's buffer | `BATCH` × 96 B = 512 × 96 | 49,152 B per thread |
//! | the pool of spare buffers | `POOL_MAX` × `BATCH` × 96 B = 64 × 512 × 96 | 3,145,728 B (3 MiB) |
//! | the exporter's batch in hand | 512 records + `max_batch` events of 336 B | 49,152 + 1,376,256 B |
//! | the channel's slots | 16,384 × 32 B | 524,288 B |
//! | each backend of a `Backends` list | 64 queued batches (`QUEUE_BATCHES`) of up to `max_batch` events, + 1 being written | 65 × 4,096 × 336 B = 89,456,640 B (85 MiB) |
//!
//! So a single sink: about 11.0 MiB + 48 KiB per recording thread (11,583,488 B with
//! 4 threads); a `Backends` list of *n* adds up to 85 MiB per backend (the batches are
//! shared between backends, so *n* healthy backends hold far less). What records point to
//! comes on top: points with a static name and no info point to nothing; an info payload,
//! a run-time name, function arguments or an error message is a heap allocation per point
//! (its size is the caller's), and an event's `info` is its JSON-ready form.
//!
//! The queue bound counts records, not the capacity of the buffers that carry them: a
//! buffer sent with few records (a thread's buffer flushed by age, `MAX_AGE` = 100 ms)
//! keeps its capacity (up to 512 records) while queued. The steady state under load is
//! full buffers; the pathological worst case (every one of the 16,384 channel slots a
//! full-size buffer holding one record) would be 16,384 × 512 × 96 B = 805 MB.
//! `tests/memory_bound.rs` shows the bound: 5 million points over 4 threads against a
//! sink that never returns grow the RSS by about 7 MB, under the 11.6 MB stated.
//!
//! ```
//! use osprofiler::notifier::{self, MemorySink};
//! let sink = MemorySink::new();
//! let _guard = notifier::set_sink(sink.clone());
//! let ctx = osprofiler::init(None, None, None);
//! {
//!     let _p = osprofiler::point("db");
//! }
//! osprofiler::clean();
//! notifier::flush().unwrap();
//! assert_eq!(sink.events().len(), 2);
//! # drop(ctx);
//! ```

use std::borrow::Cow;
use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use crate::event::{Event, EventInfo, EventKind};
use crate::id::Id;
use crate::identity::IdentityCache;
use crate::info::Info;
use crate::time::Timestamp;

/// Where the exporter writes events: a backend driver, a file, memory.
///
/// Called from the exporter thread only, with batches of events in the order
/// they were handed over. Errors are counted in [`stats`] and the batch is
/// lost; the sink is called again with the next batch.
pub trait Sink: Send + 'static {
    /// Writes a batch of events.
    fn write(&mut self, events: &[Event]) -> Result<(), SinkError>;

    /// Makes everything written so far durable/visible (called by [`flush`]).
    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

/// A sink's failure to write.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SinkError(pub Box<dyn std::error::Error + Send + Sync>);

impl SinkError {
    /// An error from a message.
    pub fn msg(m: impl Into<String>) -> SinkError {
        SinkError(m.into().into())
    }
}

impl From<std::io::Error> for SinkError {
    fn from(e: std::io::Error) -> SinkError {
        SinkError(Box::new(e))
    }
}

/// What a point records; written as `info` JSON by the sink, so neither the
/// traced thread nor the exporter builds JSON maps.
#[derive(Clone)]
pub(crate) enum Payload {
    /// Free-form info (`start(name, info)`, `stop(info)`).
    Info(Info),
    /// A traced function's start: `info.function = {name, args, kwargs}`.
    Function {
        info: Option<Info>,
        name: &'static str,
        args: Option<String>,
    },
    /// A traced function's shown result: `info.function.result`.
    Result(String),
    /// A failure at stop: `info.etype` and `info.message`.
    Error {
        etype: Cow<'static, str>,
        message: String,
    },
    /// A point whose future was dropped before it finished.
    Cancelled,
}

/// What a record stands for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum RecordKind {
    /// A start whose stop comes in a later record.
    Start,
    /// A stop whose start went out in an earlier batch.
    Stop,
    /// A whole point: the start record, completed in place at stop because it
    /// was still in the thread's buffer (the common case: one record, not
    /// two, crosses to the exporter).
    Span,
}

/// One recorded point (or half of one), as cheap to make as possible: 96 bytes,
/// with everything optional out of line.
pub(crate) struct Record {
    pub(crate) base: u128,
    pub(crate) id: u128,
    pub(crate) parent: u128,
    /// Start time (`Start`, `Span`) or stop time (`Stop`).
    pub(crate) at: fastant::Instant,
    /// Stop time of a `Span`.
    pub(crate) end: fastant::Instant,
    /// The point's name; empty when it is not static (then in `extra`).
    pub(crate) name: &'static str,
    pub(crate) extra: Option<Box<Extra>>,
    pub(crate) identity: u32,
    pub(crate) kind: RecordKind,
}

/// What only some points have.
#[derive(Default)]
pub(crate) struct Extra {
    /// A name made at run time.
    pub(crate) name: Option<Box<str>>,
    /// Info of the start event (`Start`, `Span`).
    pub(crate) start: Option<Payload>,
    /// Info of the stop event (`Stop`, `Span`).
    pub(crate) stop: Option<Box<Payload>>,
}

impl Extra {
    /// The out-of-line part for a point's name and start info, if it needs one.
    #[inline]
    pub(crate) fn for_start(
        name: Cow<'static, str>,
        start: Option<Payload>,
    ) -> (&'static str, Option<Box<Extra>>) {
        match (name, start) {
            (Cow::Borrowed(n), None) => (n, None),
            (Cow::Borrowed(n), start) => (
                n,
                Some(Box::new(Extra {
                    name: None,
                    start,
                    stop: None,
                })),
            ),
            (Cow::Owned(n), start) => (
                "",
                Some(Box::new(Extra {
                    name: Some(n.into()),
                    start,
                    stop: None,
                })),
            ),
        }
    }

    /// Sets the stop info of a record's point.
    #[inline]
    pub(crate) fn set_stop(extra: &mut Option<Box<Extra>>, stop: Box<Payload>) {
        match extra {
            Some(e) => e.stop = Some(stop),
            None => {
                *extra = Some(Box::new(Extra {
                    name: None,
                    start: None,
                    stop: Some(stop),
                }))
            }
        }
    }
}

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
struct Counters {
    exported: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
    sink_errors: AtomicU64,
    discarded: AtomicU64,
    last_error: Mutex<Option<String>>,
}

static COUNTERS: Counters = Counters {
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
/// [`Sink::write`] accepted (and the pipeline counted as exported) were lost after
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

/// Tuning of the pipeline. The defaults suit a service; tests may lower them.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// Most records (a record is one event, or the two of a short point)
    /// waiting for the exporter before new ones are dropped: the memory bound.
    pub max_queued_events: usize,
    /// How often the exporter wakes to collect batches.
    pub interval: Duration,
    /// Most events the exporter hands to the sink in one `write`.
    pub max_batch: usize,
    /// How often losses (drops, sink errors) are reported through the `log` facade:
    /// one warning per interval in which something was lost, never one per event.
    pub loss_report_interval: Duration,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            max_queued_events: 65_536,
            interval: Duration::from_millis(10),
            max_batch: 4096,
            loss_report_interval: LOSS_REPORT_INTERVAL,
        }
    }
}

enum Msg {
    Batch(Vec<Record>),
    SetSink(Option<Box<dyn Sink>>, SyncSender<()>),
    Flush(SyncSender<()>),
}

struct Exporter {
    tx: SyncSender<Msg>,
    thread: std::thread::Thread,
    queued: Arc<AtomicUsize>,
    max_queued: AtomicUsize,
    has_sink: AtomicBool,
}

static EXPORTER: OnceLock<Option<Exporter>> = OnceLock::new();
static CONFIG: Mutex<Option<Config>> = Mutex::new(None);

// Channel slots are batches; the record budget (`max_queued_events`) is what
// actually bounds memory.
const CHANNEL_BATCHES: usize = 16_384;

fn exporter() -> Option<&'static Exporter> {
    EXPORTER
        .get_or_init(|| {
            let cfg = CONFIG.lock().ok().and_then(|c| *c).unwrap_or_default();
            let (tx, rx) = sync_channel(CHANNEL_BATCHES);
            let queued = Arc::new(AtomicUsize::new(0));
            let q = queued.clone();
            let handle = std::thread::Builder::new()
                .name("osprofiler-exporter".into())
                .spawn(move || run(rx, q, cfg))
                .ok()?;
            Some(Exporter {
                tx,
                thread: handle.thread().clone(),
                queued,
                max_queued: AtomicUsize::new(cfg.max_queued_events),
                has_sink: AtomicBool::new(false),
            })
        })
        .as_ref()
}

/// Sets the pipeline's tuning. Takes full effect when called before the first
/// sink is set; `max_queued_events` can be changed at any time.
pub fn configure(cfg: Config) {
    if let Ok(mut c) = CONFIG.lock() {
        *c = Some(cfg);
    }
    if let Some(Some(ex)) = EXPORTER.get() {
        ex.max_queued
            .store(cfg.max_queued_events, Ordering::Relaxed);
    }
}

/// Hands a thread's batch to the exporter; never blocks.
pub(crate) fn submit(batch: Vec<Record>) {
    let n = batch.len();
    if n == 0 {
        return;
    }
    let Some(ex) = EXPORTER.get().and_then(Option::as_ref) else {
        COUNTERS
            .discarded
            .fetch_add(events_in(&batch), Ordering::Relaxed);
        return;
    };
    if !ex.has_sink.load(Ordering::Relaxed) {
        COUNTERS
            .discarded
            .fetch_add(events_in(&batch), Ordering::Relaxed);
        recycle(batch);
        return;
    }
    // The bound counts records (memory); the counters count events.
    let before = ex.queued.fetch_add(n, Ordering::Relaxed);
    if before + n > ex.max_queued.load(Ordering::Relaxed) {
        ex.queued.fetch_sub(n, Ordering::Relaxed);
        COUNTERS
            .dropped
            .fetch_add(events_in(&batch), Ordering::Relaxed);
        recycle(batch);
        return;
    }
    match ex.tx.try_send(Msg::Batch(batch)) {
        Ok(()) => {}
        Err(TrySendError::Full(m) | TrySendError::Disconnected(m)) => {
            ex.queued.fetch_sub(n, Ordering::Relaxed);
            if let Msg::Batch(b) = m {
                COUNTERS.dropped.fetch_add(events_in(&b), Ordering::Relaxed);
                recycle(b);
            }
        }
    }
}

fn events_in(batch: &[Record]) -> u64 {
    batch
        .iter()
        .map(|r| if r.kind == RecordKind::Span { 2 } else { 1 })
        .sum()
}

// Full-size buffers go back to a small pool instead of the allocator: a busy
// thread then reuses warm memory instead of allocating (and the exporter
// freeing) 48 KiB per batch, which made the allocator return and re-fault
// pages under load.
static POOL: Mutex<VecDeque<Vec<Record>>> = Mutex::new(VecDeque::new());
const POOL_MAX: usize = 64;

/// Records per full batch (the capacity of pooled buffers).
pub(crate) const BATCH: usize = 512;

fn recycle(mut buf: Vec<Record>) {
    if buf.capacity() != BATCH {
        return;
    }
    buf.clear();
    if let Ok(mut pool) = POOL.lock()
        && pool.len() < POOL_MAX
    {
        pool.push_back(buf);
    }
}

/// A buffer of capacity `cap`: from the pool when a full-size one is asked for.
pub(crate) fn new_buffer(cap: usize) -> Vec<Record> {
    if cap == BATCH
        && let Some(b) = POOL.lock().ok().and_then(|mut p| p.pop_front())
    {
        return b;
    }
    Vec::with_capacity(cap)
}

/// Sends a control message and waits (bounded) for the exporter's answer.
fn control(make: impl FnOnce(SyncSender<()>) -> Msg, timeout: Duration) -> Result<(), FlushError> {
    let ex = exporter().ok_or(FlushError::NoExporter)?;
    let (ack_tx, ack_rx) = sync_channel(1);
    let deadline = std::time::Instant::now() + timeout;
    let mut msg = make(ack_tx);
    // The queue only fills when the sink is slow; retry until the deadline
    // rather than fail a flush at once.
    loop {
        match ex.tx.try_send(msg) {
            Ok(()) => break,
            Err(TrySendError::Full(m)) => {
                if std::time::Instant::now() >= deadline {
                    return Err(FlushError::Timeout);
                }
                ex.thread.unpark();
                std::thread::sleep(Duration::from_millis(1));
                msg = m;
            }
            Err(TrySendError::Disconnected(_)) => return Err(FlushError::NoExporter),
        }
    }
    ex.thread.unpark();
    let left = deadline.saturating_duration_since(std::time::Instant::now());
    ack_rx.recv_timeout(left).map_err(|_| FlushError::Timeout)
}

/// Why [`flush`] did not complete.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlushError {
    /// The exporter did not finish in time (the sink is slow or hung).
    #[error("the exporter did not flush in time")]
    Timeout,
    /// The exporter thread could not be started.
    #[error("the exporter thread is not running")]
    NoExporter,
}

/// Sets the sink events are written to, replacing (and flushing) any earlier
/// one. Returns a guard that flushes and closes the sink when dropped; keep
/// it alive for as long as the service runs (e.g. in `main`).
pub fn set_sink(sink: impl Sink) -> NotifierGuard {
    set_boxed_sink(Box::new(sink))
}

/// [`set_sink`] for an already boxed sink.
pub fn set_boxed_sink(sink: Box<dyn Sink>) -> NotifierGuard {
    let generation = SINK_GENERATION.fetch_add(1, Ordering::AcqRel) + 1;
    if let Some(ex) = exporter() {
        let _ = control(|ack| Msg::SetSink(Some(sink), ack), Duration::from_secs(5));
        ex.has_sink.store(true, Ordering::Release);
    }
    NotifierGuard { generation }
}

// Lets a guard tell whether its sink is still the current one.
static SINK_GENERATION: AtomicU64 = AtomicU64::new(0);

/// Writes out everything this thread recorded and everything other threads
/// have handed over (threads hand over their buffer when they leave a trace),
/// and flushes the sink. Waits up to 5 seconds.
pub fn flush() -> Result<(), FlushError> {
    flush_timeout(Duration::from_secs(5))
}

/// [`flush`] with a chosen timeout.
pub fn flush_timeout(timeout: Duration) -> Result<(), FlushError> {
    crate::local::flush_thread_buffer();
    if !EXPORTER
        .get()
        .and_then(Option::as_ref)
        .is_some_and(|e| e.has_sink.load(Ordering::Relaxed))
    {
        return Ok(());
    }
    control(Msg::Flush, timeout)
}

/// How long dropping a [`NotifierGuard`] (or [`shutdown`]) may take in all, even
/// when the backend is down or hung: a service's exit is never held up longer.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(2);

/// Flushes, then closes the sink (dropping it: files are closed, connections
/// shut), within [`SHUTDOWN_TIMEOUT`]. Later events are discarded until a sink is
/// set again.
pub fn shutdown() -> Result<(), FlushError> {
    shutdown_timeout(SHUTDOWN_TIMEOUT)
}

/// [`shutdown`] within `timeout`. What the sink has not written by then is lost
/// (and the sink is closed by the exporter once it is free again), rather than the
/// caller kept waiting on a backend that does not answer.
pub fn shutdown_timeout(timeout: Duration) -> Result<(), FlushError> {
    let deadline = std::time::Instant::now() + timeout;
    let flushed = flush_timeout(timeout);
    if let Some(Some(ex)) = EXPORTER.get() {
        ex.has_sink.store(false, Ordering::Release);
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            // The exporter is stuck in the sink: leave the close to it, queued.
            let (ack, _) = sync_channel(1);
            let _ = ex.tx.try_send(Msg::SetSink(None, ack));
            ex.thread.unpark();
            return flushed.and(Err(FlushError::Timeout));
        }
        control(|ack| Msg::SetSink(None, ack), left)?;
    }
    flushed
}

/// Returned by [`set_sink`]: flushes and closes the sink when dropped.
#[must_use = "the sink is closed when this guard is dropped"]
#[derive(Debug)]
pub struct NotifierGuard {
    generation: u64,
}

impl Drop for NotifierGuard {
    fn drop(&mut self) {
        // A sink set later replaced ours: closing now would close that one.
        if SINK_GENERATION.load(Ordering::Acquire) == self.generation {
            let _ = shutdown();
        }
    }
}

/// How often losses are reported through the `log` facade by default (at most once per
/// interval, and only when something was lost in it).
pub const LOSS_REPORT_INTERVAL: Duration = Duration::from_secs(10);

/// Reports what was lost since the last report, once per interval: a backend that is
/// down must not flood the service's log with a line per event or batch.
struct LossReport {
    every: Duration,
    at: std::time::Instant,
    seen: (u64, u64, u64),
}

impl LossReport {
    fn new(every: Duration) -> LossReport {
        let s = stats();
        LossReport {
            every,
            at: std::time::Instant::now(),
            seen: (s.dropped, s.failed, s.sink_errors),
        }
    }

    fn tick(&mut self) {
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

fn run(rx: Receiver<Msg>, queued: Arc<AtomicUsize>, cfg: Config) {
    let mut losses = LossReport::new(cfg.loss_report_interval);
    let anchor = fastant::Anchor::new();
    let mut idents = IdentityCache::default();
    let mut sink: Option<Box<dyn Sink>> = None;
    let mut events: Vec<Event> = Vec::with_capacity(cfg.max_batch);
    loop {
        loop {
            match rx.try_recv() {
                Ok(Msg::Batch(mut batch)) => {
                    let n = batch.len();
                    for r in batch.drain(..) {
                        push_events(r, &anchor, &mut idents, &mut events);
                        if events.len() >= cfg.max_batch {
                            write(&mut sink, &mut events);
                        }
                    }
                    recycle(batch);
                    queued.fetch_sub(n, Ordering::Relaxed);
                }
                Ok(Msg::Flush(ack)) => {
                    write(&mut sink, &mut events);
                    sink_flush(&mut sink);
                    let _ = ack.try_send(());
                }
                Ok(Msg::SetSink(new, ack)) => {
                    write(&mut sink, &mut events);
                    sink_flush(&mut sink);
                    sink = new;
                    let _ = ack.try_send(());
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return,
            }
        }
        write(&mut sink, &mut events);
        losses.tick();
        // Parked, not blocked on the channel: a sending thread then never pays
        // for waking us. Control messages unpark us explicitly.
        std::thread::park_timeout(cfg.interval);
    }
}

fn write(sink: &mut Option<Box<dyn Sink>>, events: &mut Vec<Event>) {
    if events.is_empty() {
        return;
    }
    let n = events.len() as u64;
    match sink {
        None => {
            COUNTERS.discarded.fetch_add(n, Ordering::Relaxed);
        }
        Some(s) => match s.write(events) {
            Ok(()) => {
                COUNTERS.exported.fetch_add(n, Ordering::Relaxed);
            }
            Err(e) => {
                COUNTERS.failed.fetch_add(n, Ordering::Relaxed);
                note_error(&e);
            }
        },
    }
    events.clear();
}

fn sink_flush(sink: &mut Option<Box<dyn Sink>>) {
    if let Some(s) = sink
        && let Err(e) = s.flush()
    {
        note_error(&e);
    }
}

fn note_error(e: &SinkError) {
    COUNTERS.sink_errors.fetch_add(1, Ordering::Relaxed);
    if let Ok(mut l) = COUNTERS.last_error.lock() {
        *l = Some(e.to_string());
    }
}

fn push_events(
    r: Record,
    anchor: &fastant::Anchor,
    idents: &mut IdentityCache,
    out: &mut Vec<Event>,
) {
    let ident = idents.get(r.identity);
    let micros = |at: fastant::Instant| Timestamp((at.as_unix_nanos(anchor) / 1000) as i64);
    let (name, start, stop) = match r.extra {
        None => (Cow::Borrowed(r.name), None, None),
        Some(e) => {
            let Extra { name, start, stop } = *e;
            let name = match name {
                Some(n) => Cow::Owned(n.into_string()),
                None => Cow::Borrowed(r.name),
            };
            (name, start, stop.map(|b| *b))
        }
    };
    let event = |name: Cow<'static, str>, kind, at, payload: Option<Payload>| Event {
        name,
        kind,
        base_id: Id(r.base),
        trace_id: Id(r.id),
        parent_id: Id(r.parent),
        timestamp: micros(at),
        info: EventInfo::recorded(payload, ident.host.clone()),
        project: Some(ident.project.clone()),
        service: Some(ident.service.clone()),
    };
    match r.kind {
        RecordKind::Start => out.push(event(name, EventKind::Start, r.at, start)),
        RecordKind::Stop => out.push(event(name, EventKind::Stop, r.at, stop)),
        RecordKind::Span => {
            out.push(event(name.clone(), EventKind::Start, r.at, start));
            out.push(event(name, EventKind::Stop, r.end, stop));
        }
    }
}

/// Keeps events in memory: for tests and for tools that render a trace
/// in-process. Clones share the same store.
#[derive(Clone, Default)]
pub struct MemorySink(Arc<Mutex<Vec<Event>>>);

impl MemorySink {
    /// An empty sink.
    pub fn new() -> MemorySink {
        MemorySink::default()
    }

    /// A copy of the events received so far.
    pub fn events(&self) -> Vec<Event> {
        self.0.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// Takes the events received so far, leaving the sink empty.
    pub fn take(&self) -> Vec<Event> {
        self.0
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default()
    }

    /// The events of one trace.
    pub fn trace(&self, base_id: Id) -> Vec<Event> {
        self.events()
            .into_iter()
            .filter(|e| e.base_id == base_id)
            .collect()
    }
}

impl Sink for MemorySink {
    fn write(&mut self, events: &[Event]) -> Result<(), SinkError> {
        self.0
            .lock()
            .map_err(|_| SinkError::msg("memory sink lock poisoned"))?
            .extend_from_slice(events);
        Ok(())
    }
}

impl std::fmt::Debug for MemorySink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemorySink").finish_non_exhaustive()
    }
}

/// Appends each event as one line of osprofiler's JSON to a file.
#[derive(Debug)]
pub struct JsonLinesSink {
    path: PathBuf,
    out: BufWriter<File>,
    line: Vec<u8>,
}

impl JsonLinesSink {
    /// Opens (creating if needed) `path` for appending.
    pub fn open(path: impl AsRef<Path>) -> std::io::Result<JsonLinesSink> {
        let path = path.as_ref().to_path_buf();
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        Ok(JsonLinesSink {
            path,
            out: BufWriter::with_capacity(64 * 1024, file),
            line: Vec::with_capacity(512),
        })
    }

    /// The file written to.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Sink for JsonLinesSink {
    fn write(&mut self, events: &[Event]) -> Result<(), SinkError> {
        for e in events {
            self.line.clear();
            e.write_json(&mut self.line);
            self.line.push(b'\n');
            self.out.write_all(&self.line)?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.out.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_record_is_96_bytes() {
        // The size decides how much memory crosses to the exporter per point.
        assert_eq!(std::mem::size_of::<super::Record>(), 96);
    }
}
