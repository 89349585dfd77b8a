//! The exporter thread: the bounded queue threads hand their batches to, the
//! thread that makes them events and writes them to the sink, and its control
//! (set the sink, flush, shut down).

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use super::pool::recycle;
use super::record::{Extra, FieldsInfo, Payload, Record, RecordKind};
use super::sink::Sink;
use super::stats::{COUNTERS, LOSS_REPORT_INTERVAL, LossReport, note_error};
use crate::event::{Event, EventInfo, EventKind};
use crate::id::Id;
use crate::identity::IdentityCache;
use crate::info::Info;
use crate::time::Timestamp;

/// Tuning of the pipeline. The defaults suit a service; tests may lower them.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// Most records (a record is one event, or the two of a short point, 96 bytes)
    /// waiting for the exporter before new ones are dropped: the memory bound.
    /// Counted by the capacity of the buffers that carry them, so the queue's
    /// record memory is at most exactly `max_queued_events` × 96 bytes whatever
    /// the shape of the load (see the [module docs](super)).
    pub max_queued_events: usize,
    /// How often the exporter wakes to collect batches, including the buffers
    /// threads leave in their mailboxes between traces: about the longest a
    /// finished short trace waits before it is written.
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

/// Where a thread's buffer waits between its traces (see `local.rs`): the
/// exporter takes what it finds there at each wake-up, flush and sink change.
pub(crate) type Mailbox = Mutex<Vec<Record>>;

// Every thread's mailbox; the exporter drops those whose thread has gone.
static MAILBOXES: Mutex<Vec<Arc<Mailbox>>> = Mutex::new(Vec::new());

/// A new mailbox for this thread, registered with the exporter; `None` when
/// there is no sink to write to (records are then discarded at once, as
/// before) or the registry is busy (the thread hands over directly this time).
pub(crate) fn mailbox() -> Option<Arc<Mailbox>> {
    let ex = EXPORTER.get().and_then(Option::as_ref)?;
    if !ex.has_sink.load(Ordering::Relaxed) {
        return None;
    }
    let m = Arc::new(Mailbox::default());
    MAILBOXES.try_lock().ok()?.push(m.clone());
    Some(m)
}

/// Takes every waiting buffer (on the exporter thread). A thread holds its
/// mailbox's lock only to swap a vector in or out, so waiting for it is short;
/// the threads themselves never wait for the exporter's hold.
fn collect(mut each: impl FnMut(Vec<Record>)) {
    let mut all = match MAILBOXES.lock() {
        Ok(all) => all,
        Err(poisoned) => poisoned.into_inner(),
    };
    all.retain(|m| {
        let buf = match m.lock() {
            Ok(mut held) => std::mem::take(&mut *held),
            Err(_) => Vec::new(),
        };
        if !buf.is_empty() {
            each(buf);
        }
        // The thread's own reference is gone with the thread.
        Arc::strong_count(m) > 1
    });
}

/// The tuning in effect: what [`configure`] set last, else the defaults. Sinks that
/// report on their own (a list of backends, each on its own thread) follow its
/// `loss_report_interval`.
pub fn configured() -> Config {
    CONFIG.lock().ok().and_then(|c| *c).unwrap_or_default()
}

/// Hands a thread's batch to the exporter; never blocks.
pub(crate) fn submit(batch: Vec<Record>) {
    if batch.is_empty() {
        return;
    }
    // The memory the batch holds while queued: its capacity, not its length.
    let n = batch.capacity();
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
    // The bound counts record slots (memory); the counters count events.
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
        .map(|r| match r.kind {
            RecordKind::Span => 2,
            RecordKind::Start | RecordKind::OwnedStart | RecordKind::Stop => 1,
            RecordKind::Field | RecordKind::More => 0,
        })
        .sum()
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
/// have handed over or left waiting between their traces (a thread's buffer
/// waits in its mailbox for at most about one `Config::interval` after a trace ends),
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

fn run(rx: Receiver<Msg>, queued: Arc<AtomicUsize>, cfg: Config) {
    let mut losses = LossReport::new(cfg.loss_report_interval);
    let anchor = fastant::Anchor::new();
    let mut idents = IdentityCache::default();
    let mut sink: Option<Box<dyn Sink>> = None;
    let mut events: Vec<Event> = Vec::with_capacity(cfg.max_batch);
    loop {
        let mut convert =
            |mut batch: Vec<Record>, sink: &mut Option<Box<dyn Sink>>, events: &mut Vec<Event>| {
                let n = batch.len();
                // By index: a point's field records follow it (none are
                // orphans); looking ahead costs a load, not a record's move.
                let mut i = 0;
                while i < n {
                    let mut j = i + 1;
                    while batch.get(j).is_some_and(|f| f.kind.is_field()) {
                        j += 1;
                    }
                    let fields = batch.get(i + 1..j).filter(|f| !f.is_empty()).map(|f| {
                        let mut info = FieldsInfo::default();
                        f.iter().for_each(|r| info.add(r));
                        info.into_info()
                    });
                    if let Some(r) = batch.get_mut(i)
                        && !r.kind.is_field()
                    {
                        push_events(r, fields, &anchor, &mut idents, events);
                        if events.len() >= cfg.max_batch {
                            write(sink, events);
                        }
                    }
                    i = j;
                }
                batch.clear();
                recycle(batch);
            };
        loop {
            match rx.try_recv() {
                Ok(Msg::Batch(batch)) => {
                    let n = batch.capacity();
                    convert(batch, &mut sink, &mut events);
                    queued.fetch_sub(n, Ordering::Relaxed);
                }
                Ok(Msg::Flush(ack)) => {
                    // What waits in the threads' mailboxes was recorded before the flush.
                    collect(|b| convert(b, &mut sink, &mut events));
                    write(&mut sink, &mut events);
                    sink_flush(&mut sink);
                    let _ = ack.try_send(());
                }
                Ok(Msg::SetSink(new, ack)) => {
                    collect(|b| convert(b, &mut sink, &mut events));
                    write(&mut sink, &mut events);
                    sink_flush(&mut sink);
                    sink = new;
                    let _ = ack.try_send(());
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return,
            }
        }
        // Short traces gathered since the last wake-up: each one leaves within
        // about one `interval` of its end.
        collect(|b| convert(b, &mut sink, &mut events));
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

fn push_events(
    r: &mut Record,
    fields: Option<Info>,
    anchor: &fastant::Anchor,
    idents: &mut IdentityCache,
    out: &mut Vec<Event>,
) {
    let ident = idents.get(r.identity);
    let micros = |at: fastant::Instant| Timestamp((at.as_unix_nanos(anchor) / 1000) as i64);
    let (name, start, stop) = match r.extra.take() {
        None => (Cow::Borrowed(r.name), fields.map(Payload::Info), None),
        Some(e) => {
            let Extra { name, start, stop } = *e;
            let start = start.or_else(|| fields.map(Payload::Info));
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
        RecordKind::Start | RecordKind::OwnedStart => {
            out.push(event(name, EventKind::Start, r.at, start))
        }
        RecordKind::Stop => out.push(event(name, EventKind::Stop, r.at, stop)),
        RecordKind::Span => {
            out.push(event(name.clone(), EventKind::Start, r.at, start));
            out.push(event(name, EventKind::Stop, r.end, stop));
        }
        RecordKind::Field | RecordKind::More => {}
    }
}
