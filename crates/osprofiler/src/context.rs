//! The trace context: which trace the current thread or task works for, and
//! which point is current (the parent of the next point).
//!
//! A thread holds at most one trace at a time in a thread-local. Futures carry
//! theirs and install it only while they are polled, so a trace follows a
//! request across `.await` and never leaks into another task, or into the next
//! request served by the same thread.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::Future;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::id::{Id, next_from};
use crate::identity::{self, Identity};
use crate::info::Info;
use crate::keys::HmacKey;
use crate::notifier::{BATCH, Extra, Payload, Record, RecordKind, new_buffer, submit};
use crate::propagation::{IncomingTrace, TraceHeaders, TraceParent};

/// Trace-wide facts, shared by every thread and task working for the trace.
pub(crate) struct TraceShared {
    pub(crate) base: u128,
    pub(crate) key: Option<HmacKey>,
    pub(crate) identity: u32,
}

/// A point that has started and not yet stopped.
pub(crate) struct OpenPoint {
    name: Cow<'static, str>,
    base: u128,
    id: u128,
    parent: u128,
    identity: u32,
    // Where its start record sits: (buffer generation, index). While that
    // buffer has not been handed over, the stop completes the record in place.
    slot: (u64, usize),
}

/// What a thread or task holds while it works for a trace. Swapped in and out
/// of the thread-local as a whole.
#[derive(Default)]
pub(crate) struct Scope {
    trace: Option<Arc<TraceShared>>,
    current: u128,
    // Points opened by the osprofiler-style `start()` and closed by `stop()`.
    stack: Vec<OpenPoint>,
}

struct Local {
    scope: Scope,
    buf: Vec<Record>,
    // A buffer older than this is handed over at the next record, so a busy
    // thread's events reach the store within about MAX_AGE.
    deadline: Option<fastant::Instant>,
    // Changes whenever the buffer is handed over; unique across threads, so
    // a point stopped on another thread never patches this thread's records.
    generation: u64,
    // The points of live sync guards (`LocalPoint` holds its slot + 1).
    guards: Vec<Option<Running>>,
    // Point id generator state (see `id::next_from`).
    ids: (u64, u64),
    // Points whose start record was handed over while they were still open:
    // what their stop record needs (sync guards keep only the id).
    parked: Vec<OpenPoint>,
    // Capacity of the next buffer: a full batch after a full one (no regrowth
    // on busy threads), small after a small one (little memory held in the
    // queue by per-request hand-overs).
    next_cap: usize,
}

const SMALL_BATCH: usize = 16;
const MAX_PARKED: usize = 4096;

/// What a sync guard keeps of its point.
struct Lean {
    id: u128,
    parent: u128,
    generation: u64,
    index: usize,
}
const MAX_AGE: Duration = Duration::from_millis(100);

impl Local {
    #[inline]
    fn open(
        &mut self,
        name: Cow<'static, str>,
        start: Option<Payload>,
        make_current: bool,
    ) -> Option<OpenPoint> {
        let t = self.scope.trace.as_deref()?;
        let (base, identity) = (t.base, t.identity);
        let id = next_from(&mut self.ids);
        let parent = self.scope.current;
        if make_current {
            self.scope.current = id;
        }
        let at = fastant::Instant::now();
        let (static_name, extra) = Extra::for_start(name.clone(), start);
        let slot = self.push(Record {
            base,
            id,
            parent,
            at,
            end: at,
            name: static_name,
            extra,
            identity,
            kind: RecordKind::Start,
        });
        Some(OpenPoint {
            name,
            base,
            id,
            parent,
            identity,
            slot,
        })
    }

    /// Opens a point for a sync guard, which keeps only its id, parent and
    /// slot: the rest stays in the record (or is parked at hand-over).
    #[inline]
    fn open_lean(&mut self, name: &'static str, start: Option<Payload>) -> Option<Lean> {
        let t = self.scope.trace.as_deref()?;
        let (base, identity) = (t.base, t.identity);
        let id = next_from(&mut self.ids);
        let parent = self.scope.current;
        self.scope.current = id;
        let at = fastant::Instant::now();
        let extra = start.map(|start| {
            Box::new(Extra {
                name: None,
                start: Some(start),
                stop: None,
            })
        });
        let (generation, index) = self.push(Record {
            base,
            id,
            parent,
            at,
            end: at,
            name,
            extra,
            identity,
            kind: RecordKind::Start,
        });
        Some(Lean {
            id,
            parent,
            generation,
            index,
        })
    }

    #[inline]
    fn close_lean(&mut self, p: &Lean, payload: Option<Box<Payload>>) {
        if self.scope.current == p.id {
            self.scope.current = p.parent;
        }
        if p.generation == self.generation
            && let Some(r) = self.buf.get_mut(p.index)
            && r.id == p.id
            && r.kind == RecordKind::Start
        {
            r.kind = RecordKind::Span;
            r.end = fastant::Instant::now();
            if let Some(pl) = payload {
                Extra::set_stop(&mut r.extra, pl);
            }
            return;
        }
        if let Some(pos) = self.parked.iter().rposition(|o| o.id == p.id) {
            let open = self.parked.swap_remove(pos);
            self.push(stop_record(open, payload));
        }
    }

    #[inline]
    fn close(&mut self, p: OpenPoint, payload: Option<Box<Payload>>, restore: bool) {
        if restore && self.scope.current == p.id {
            self.scope.current = p.parent;
        }
        let (generation, index) = p.slot;
        if generation == self.generation
            && let Some(r) = self.buf.get_mut(index)
            && r.id == p.id
            && r.kind == RecordKind::Start
        {
            r.kind = RecordKind::Span;
            r.end = fastant::Instant::now();
            if let Some(pl) = payload {
                Extra::set_stop(&mut r.extra, pl);
            }
            return;
        }
        self.push(stop_record(p, payload));
    }

    /// Appends a record; returns where it sits, for [`Local::close`].
    #[inline]
    fn push(&mut self, r: Record) -> (u64, usize) {
        let stale = match self.deadline {
            Some(d) => r.at > d,
            None => {
                self.start_buffer(r.at);
                false
            }
        };
        let slot = (self.generation, self.buf.len());
        self.buf.push(r);
        if stale || self.buf.len() >= BATCH {
            self.flush();
        }
        slot
    }

    #[cold]
    fn start_buffer(&mut self, at: fastant::Instant) {
        self.deadline = Some(at + MAX_AGE);
        if self.buf.capacity() == 0 {
            self.buf = new_buffer(self.next_cap.max(SMALL_BATCH));
        }
    }

    fn flush(&mut self) {
        self.deadline = None;
        self.generation = GENERATIONS.fetch_add(1, Ordering::Relaxed);
        for r in &self.buf {
            if r.kind == RecordKind::Start {
                if self.parked.len() >= MAX_PARKED {
                    // Guards leaked with mem::forget never stop: forget the oldest.
                    self.parked.remove(0);
                }
                let name = match r.extra.as_ref().and_then(|e| e.name.as_ref()) {
                    Some(n) => Cow::Owned(n.to_string()),
                    None => Cow::Borrowed(r.name),
                };
                self.parked.push(OpenPoint {
                    name,
                    base: r.base,
                    id: r.id,
                    parent: r.parent,
                    identity: r.identity,
                    slot: (u64::MAX, 0),
                });
            }
        }
        if !self.buf.is_empty() {
            let len = self.buf.len();
            self.next_cap = if len >= BATCH / 8 {
                BATCH
            } else {
                len.next_power_of_two().max(SMALL_BATCH)
            };
            submit(std::mem::take(&mut self.buf));
        }
    }

    /// Exchanges the thread's scope with `other`, keeps the fast flag in step,
    /// and hands the buffer over when the thread leaves its last trace.
    fn swap_scope(&mut self, other: &mut Scope) {
        std::mem::swap(&mut self.scope, other);
        let active = self.scope.trace.is_some();
        let _ = ACTIVE.try_with(|a| a.set(active));
        if !active {
            self.flush();
        }
    }
}

static GENERATIONS: AtomicU64 = AtomicU64::new(0);

#[inline]
fn stop_record(p: OpenPoint, payload: Option<Box<Payload>>) -> Record {
    let at = fastant::Instant::now();
    let (name, mut extra) = Extra::for_start(p.name, None);
    if let Some(pl) = payload {
        Extra::set_stop(&mut extra, pl);
    }
    Record {
        base: p.base,
        id: p.id,
        parent: p.parent,
        at,
        end: at,
        name,
        extra,
        identity: p.identity,
        kind: RecordKind::Stop,
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        self.flush();
    }
}

thread_local! {
    // The one check made on every trace point: kept apart from LOCAL so it is
    // a single load with no lazy-init or destructor bookkeeping.
    static ACTIVE: Cell<bool> = const { Cell::new(false) };
    static LOCAL: RefCell<Local> = const {
        RefCell::new(Local {
            scope: Scope { trace: None, current: 0, stack: Vec::new() },
            buf: Vec::new(),
            deadline: None,
            generation: u64::MAX,
            guards: Vec::new(),
            ids: (0, 0),
            parked: Vec::new(),
            next_cap: SMALL_BATCH,
        })
    };
}

/// Runs `f` on this thread's state; `None` when the thread is being torn down
/// or (never in our code) the state is already borrowed.
#[inline]
fn with_local<R>(f: impl FnOnce(&mut Local) -> Option<R>) -> Option<R> {
    LOCAL
        .try_with(|cell| cell.try_borrow_mut().ok().and_then(|mut l| f(&mut l)))
        .ok()
        .flatten()
}

/// Whether this thread or task is working for a trace right now: the one
/// check a trace point makes, a thread-local load.
#[inline(always)]
pub fn is_active() -> bool {
    ACTIVE.try_with(Cell::get).unwrap_or(false)
}

/// A new point id from this thread's generator (for points recorded after the fact).
pub(crate) fn next_id() -> Option<u128> {
    with_local(|l| Some(next_from(&mut l.ids)))
}

pub(crate) fn flush_thread_buffer() {
    with_local(|l| {
        l.flush();
        Some(())
    });
}

/// A handle on a trace at one of its points: all a thread, task or another
/// service needs to continue the trace under that point.
///
/// Cheap to clone. `Debug` shows the ids, never the key.
#[derive(Clone)]
pub struct TraceContext {
    shared: Arc<TraceShared>,
    current: u128,
}

impl TraceContext {
    /// A trace context: `base_id` names the trace (a new uuid4 when `None`),
    /// `parent_id` is the caller's point (first-level points hang from the
    /// base id when `None`), `hmac_key` signs onward calls (none are signed
    /// without it). Records with the process [`process_identity`](crate::process_identity).
    pub fn new(
        hmac_key: Option<HmacKey>,
        base_id: Option<Id>,
        parent_id: Option<Id>,
    ) -> TraceContext {
        let base = base_id.unwrap_or_else(Id::new_v4).0;
        TraceContext {
            shared: Arc::new(TraceShared {
                base,
                key: hmac_key,
                identity: identity::default_index(),
            }),
            current: parent_id.map_or(base, |p| p.0),
        }
    }

    /// Continues a trace received from another service.
    pub fn from_incoming(incoming: IncomingTrace) -> TraceContext {
        TraceContext::new(
            Some(incoming.key),
            Some(incoming.base_id),
            incoming.parent_id,
        )
    }

    /// The same trace, recorded under another project/service/host: for
    /// several services in one process.
    pub fn with_identity(self, identity: &Identity) -> TraceContext {
        let shared = TraceShared {
            base: self.shared.base,
            key: self.shared.key.clone(),
            identity: identity::intern(identity),
        };
        TraceContext {
            shared: Arc::new(shared),
            current: self.current,
        }
    }

    /// The identity this trace records with (index into the identity table).
    pub(crate) fn identity_index(&self) -> u32 {
        self.shared.identity
    }

    /// The trace's id (osprofiler's `base_id`).
    pub fn base_id(&self) -> Id {
        Id(self.shared.base)
    }

    /// The current point's id: the parent of the next point, and the
    /// `parent_id` sent to other services.
    pub fn id(&self) -> Id {
        Id(self.current)
    }

    /// The key this trace was started or received with.
    pub fn hmac_key(&self) -> Option<&HmacKey> {
        self.shared.key.as_ref()
    }

    /// Signed `X-Trace-Info`/`X-Trace-HMAC` values continuing this trace under
    /// the current point; `None` without a key.
    pub fn headers(&self) -> Option<TraceHeaders> {
        let key = self.shared.key.as_ref()?;
        Some(TraceHeaders::sign(self.base_id(), self.id(), key))
    }

    /// The W3C `traceparent` of the current point: trace id = base id, span id
    /// = low 64 bits of the point id (what osprofiler's OpenTelemetry and Jaeger
    /// drivers use), sampled.
    pub fn traceparent(&self) -> TraceParent {
        TraceParent {
            trace_id: self.shared.base,
            parent_id: self.current as u64,
            sampled: true,
        }
    }

    /// Makes this the current trace of this thread until the guard is dropped;
    /// the thread's previous state is then restored.
    ///
    /// ```
    /// let ctx = osprofiler::TraceContext::new(None, None, None);
    /// std::thread::spawn(move || {
    ///     let _in = ctx.enter();
    ///     let _p = osprofiler::point("driver"); // a child of ctx's point
    /// }).join().unwrap();
    /// ```
    pub fn enter(&self) -> EnterGuard {
        let mut scope = Scope {
            trace: Some(self.shared.clone()),
            current: self.current,
            stack: Vec::new(),
        };
        let swapped = with_local(|l| {
            l.swap_scope(&mut scope);
            Some(())
        });
        EnterGuard {
            saved: swapped.map(|_| scope),
            _not_send: std::marker::PhantomData,
        }
    }

    /// Runs `f` with this as the current trace.
    pub fn in_scope<R>(&self, f: impl FnOnce() -> R) -> R {
        let _g = self.enter();
        f()
    }

    /// Runs `fut` with this trace installed each time it is polled (and only
    /// then), wherever it is polled: hand this to `tokio::spawn`.
    ///
    /// ```
    /// # async fn handler() {}
    /// let ctx = osprofiler::TraceContext::new(None, None, None);
    /// let fut = ctx.instrument(async {
    ///     let _p = osprofiler::point("rpc");
    ///     handler().await;
    /// });
    /// # drop(fut);
    /// ```
    pub fn instrument<F: Future>(self, fut: F) -> impl Future<Output = F::Output> {
        let scope = Scope {
            trace: Some(self.shared),
            current: self.current,
            stack: Vec::new(),
        };
        in_scope_future(Some(scope), fut)
    }
}

impl fmt::Debug for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TraceContext")
            .field("base_id", &self.base_id())
            .field("id", &self.id())
            .finish_non_exhaustive()
    }
}

/// Polls `fut` with `scope` swapped into the thread-local for each poll.
pub(crate) async fn in_scope_future<F: Future>(scope: Option<Scope>, fut: F) -> F::Output {
    let Some(mut scope) = scope else {
        return fut.await;
    };
    let mut fut = std::pin::pin!(fut);
    std::future::poll_fn(move |cx| {
        let _swap = PollSwap::new(&mut scope);
        fut.as_mut().poll(cx)
    })
    .await
}

/// Swaps a scope in for one poll, and back out on drop (also when the poll
/// panics, so a caught panic cannot leave our trace on the thread).
struct PollSwap<'a> {
    scope: &'a mut Scope,
    swapped: bool,
}

impl<'a> PollSwap<'a> {
    fn new(scope: &'a mut Scope) -> PollSwap<'a> {
        let swapped = with_local(|l| {
            l.swap_scope(scope);
            Some(())
        })
        .is_some();
        PollSwap { scope, swapped }
    }
}

impl Drop for PollSwap<'_> {
    fn drop(&mut self) {
        if self.swapped {
            let scope = &mut *self.scope;
            with_local(|l| {
                l.swap_scope(scope);
                Some(())
            });
        }
    }
}

/// Returned by [`TraceContext::enter`]: restores the thread's previous trace
/// state when dropped. Not `Send`: it belongs to the thread it was made on.
#[must_use = "the trace is left as soon as the guard is dropped"]
pub struct EnterGuard {
    saved: Option<Scope>,
    _not_send: std::marker::PhantomData<*const ()>,
}

impl Drop for EnterGuard {
    fn drop(&mut self) {
        if let Some(mut saved) = self.saved.take() {
            with_local(|l| {
                l.swap_scope(&mut saved);
                Some(())
            });
            // `saved` now holds the scope we leave; points still open in it
            // (started, never stopped) are dropped with it, unrecorded.
        }
    }
}

impl fmt::Debug for EnterGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EnterGuard")
    }
}

/// Starts (or, with `base_id`, continues) a trace on this thread, replacing
/// whatever trace the thread had: osprofiler's `profiler.init`. It lasts
/// until [`clean`]; in async code prefer [`TraceContext::instrument`], which
/// cannot outlive the task.
///
/// ```
/// let key = osprofiler::HmacKey::new("SECRET_KEY");
/// let ctx = osprofiler::init(key, None, None);
/// assert_eq!(osprofiler::get().unwrap().base_id(), ctx.base_id());
/// osprofiler::clean();
/// assert!(osprofiler::get().is_none());
/// ```
pub fn init(hmac_key: Option<HmacKey>, base_id: Option<Id>, parent_id: Option<Id>) -> TraceContext {
    let ctx = TraceContext::new(hmac_key, base_id, parent_id);
    let mut scope = Scope {
        trace: Some(ctx.shared.clone()),
        current: ctx.current,
        stack: Vec::new(),
    };
    with_local(|l| {
        l.swap_scope(&mut scope);
        Some(())
    });
    ctx
}

/// The trace this thread or task works for, at its current point.
pub fn get() -> Option<TraceContext> {
    if !is_active() {
        return None;
    }
    with_local(|l| {
        let shared = l.scope.trace.clone()?;
        Some(TraceContext {
            shared,
            current: l.scope.current,
        })
    })
}

/// The signed `X-Trace-Info`/`X-Trace-HMAC` values for a call made from the current
/// point (osprofiler's `web.get_trace_id_headers()`): `None` outside a trace or when
/// the trace has no key.
///
/// ```
/// let ctx = osprofiler::TraceContext::new(osprofiler::HmacKey::new("SECRET_KEY"), None, None);
/// let h = ctx.in_scope(osprofiler::current_headers).unwrap();
/// assert_eq!(h.pairs()[0].0, "X-Trace-Info");
/// assert!(osprofiler::current_headers().is_none());
/// ```
pub fn current_headers() -> Option<TraceHeaders> {
    get()?.headers()
}

/// Ends this thread's trace (osprofiler's `profiler.clean`) and hands its
/// recorded events to the exporter.
pub fn clean() {
    let mut empty = Scope::default();
    with_local(|l| {
        l.swap_scope(&mut empty);
        Some(())
    });
}

/// Starts a point, osprofiler style: it stays current until the matching
/// [`stop`] on this thread or task. Does nothing outside a trace.
/// [`point`] is usually better: its guard stops the point on every path.
pub fn start(name: impl Into<Cow<'static, str>>, info: impl Into<Info>) {
    if !is_active() {
        return;
    }
    let start_info = info_start(info.into());
    with_local(|l| {
        let p = l.open(name.into(), start_info, true)?;
        l.scope.stack.push(p);
        Some(())
    });
}

/// Stops the point most recently started with [`start`], adding `info` to
/// its stop event. Does nothing when there is none.
pub fn stop(info: impl Into<Info>) {
    if !is_active() {
        return;
    }
    let payload = info_payload(info.into());
    with_local(|l| {
        let p = l.scope.stack.pop()?;
        l.close(p, payload, true);
        Some(())
    });
}

fn info_start(info: Info) -> Option<Payload> {
    if info.is_empty() {
        None
    } else {
        Some(Payload::Info(info))
    }
}

fn info_payload(info: Info) -> Option<Box<Payload>> {
    if info.is_empty() {
        None
    } else {
        Some(Box::new(Payload::Info(info)))
    }
}

/// Starts a point that stops when the returned guard is dropped: at the end
/// of the scope, on early return, `?`, or panic (recorded as an error).
/// Outside a trace it costs one thread-local check.
///
/// ```
/// fn quota_get() -> u32 {
///     let _p = osprofiler::point("db");
///     3
/// }
/// ```
#[inline]
pub fn point(name: &'static str) -> LocalPoint {
    if !is_active() {
        return LocalPoint::none();
    }
    LocalPoint::start(name, None)
}

/// [`point`] with `info` on its start event.
#[inline]
pub fn point_with(name: &'static str, info: impl Into<Info>) -> LocalPoint {
    if !is_active() {
        return LocalPoint::none();
    }
    LocalPoint::start(name, info_start(info.into()))
}

/// Runs `fut` as a point named `name`: started at its first poll, current
/// while it is polled, stopped when it completes (or recorded as cancelled
/// if dropped first). The async counterpart of [`point`].
pub async fn in_point<F: Future>(name: impl Into<Cow<'static, str>>, fut: F) -> F::Output {
    if !is_active() {
        return fut.await;
    }
    let mut point = AsyncPoint::start(name.into(), None);
    let scope = point.take_scope();
    let out = in_scope_future(scope, fut).await;
    point.finish();
    out
}

/// A running point bound to the thread that started it ([`point`], [`point_with`],
/// a sync `#[trace]` function); stops it when dropped. Empty (and free) outside a
/// trace.
///
/// Not `Send`, like fastrace's `LocalSpan`: its state lives in the thread's buffer,
/// which is what makes it cheap. A point that moves between threads or tasks is a
/// [`Point`]; in async code, `#[trace]` on an `async fn` or [`in_point`] follow
/// the task.
#[must_use = "the point stops as soon as the guard is dropped"]
pub struct LocalPoint {
    // Register-sized on purpose: the point's state sits in the thread's `guards`
    // stack and this is its slot (+1). Outside a trace the compiler then sees
    // `None` flow straight to the drop, and the whole guard costs one branch.
    slot: Option<NonZeroU32>,
    _not_send: std::marker::PhantomData<*const ()>,
}

/// A sync guard's point, in the thread's `guards` stack.
struct Running {
    point: Lean,
    stop: Option<Box<Payload>>,
}

impl LocalPoint {
    /// A guard that records nothing.
    #[inline]
    pub const fn none() -> LocalPoint {
        LocalPoint {
            slot: None,
            _not_send: std::marker::PhantomData,
        }
    }

    #[inline]
    pub(crate) fn start(name: &'static str, payload: Option<Payload>) -> LocalPoint {
        let slot = with_local(|l| {
            let point = l.open_lean(name, payload)?;
            l.guards.push(Some(Running { point, stop: None }));
            NonZeroU32::new(u32::try_from(l.guards.len()).ok()?)
        });
        LocalPoint {
            slot,
            _not_send: std::marker::PhantomData,
        }
    }

    /// Runs `f` on this guard's point, if it records one.
    fn with_running<R>(&self, f: impl FnOnce(&mut Running) -> R) -> Option<R> {
        let slot = self.slot?.get() as usize - 1;
        with_local(|l| l.guards.get_mut(slot)?.as_mut().map(f))
    }

    /// Whether this guard records a point (a trace was active at its start).
    #[inline]
    pub fn is_recording(&self) -> bool {
        self.slot.is_some()
    }

    /// The point's id, when recording.
    pub fn id(&self) -> Option<Id> {
        self.with_running(|r| Id(r.point.id))
    }

    /// Adds `info` to the stop event.
    pub fn set_stop_info(&mut self, info: impl Into<Info>) {
        if self.slot.is_some() {
            let stop = info_payload(info.into());
            self.with_running(|r| r.stop = stop);
        }
    }

    /// Marks the point as failed: `info.etype` and `info.message` at stop.
    pub fn set_error(&mut self, etype: impl Into<Cow<'static, str>>, message: impl Into<String>) {
        if self.slot.is_some() {
            self.set_payload(Payload::Error {
                etype: etype.into(),
                message: message.into(),
            });
        }
    }

    /// Marks the point as failed with `error`: its type name and message.
    pub fn record_error<E: fmt::Display + ?Sized>(&mut self, error: &E) {
        if self.slot.is_some() {
            self.set_error(std::any::type_name::<E>(), error.to_string());
        }
    }

    pub(crate) fn set_payload(&mut self, p: Payload) {
        let p = Box::new(p);
        self.with_running(|r| r.stop = Some(p));
    }

    /// Stops the point now.
    pub fn stop(self) {}
}

impl Drop for LocalPoint {
    #[inline(always)]
    fn drop(&mut self) {
        if let Some(slot) = self.slot {
            finish_running(slot);
        }
    }
}

#[inline(never)]
fn finish_running(slot: NonZeroU32) {
    let panicking = std::thread::panicking();
    let _ = LOCAL.try_with(|cell| {
        let Ok(mut l) = cell.try_borrow_mut() else {
            return;
        };
        let i = slot.get() as usize - 1;
        let Some(r) = l.guards.get_mut(i).and_then(Option::take) else {
            return;
        };
        // Guards are dropped in reverse order of creation, except when moved
        // around: then the slot stays as a hole until the ones above are gone.
        while l.guards.last().is_some_and(Option::is_none) {
            l.guards.pop();
        }
        let payload = match r.stop {
            Some(s) => Some(s),
            None if panicking => Some(panic_payload()),
            None => None,
        };
        l.close_lean(&r.point, payload);
    });
    // The thread's state is gone (thread exit) or borrowed: the stop is lost;
    // the report shows the point with its start only.
}

impl fmt::Debug for LocalPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalPoint")
            .field("id", &self.id())
            .finish()
    }
}

fn panic_payload() -> Box<Payload> {
    Box::new(Payload::Error {
        etype: Cow::Borrowed("panic"),
        message: "panicked".to_owned(),
    })
}

#[inline]
fn close_point(p: OpenPoint, payload: Option<Box<Payload>>, restore: bool) {
    let mut slot = Some((p, payload));
    let _ = LOCAL.try_with(|cell| {
        if let Ok(mut l) = cell.try_borrow_mut()
            && let Some((p, payload)) = slot.take()
        {
            l.close(p, payload, restore);
            // Stopped on a thread that works for no trace (a point finished by
            // another thread): nothing would hand this buffer over soon.
            if l.scope.trace.is_none() {
                l.flush();
            }
        }
    });
    // The thread is exiting (or, never in our code, its state is borrowed):
    // hand the stop over on its own.
    if let Some((p, payload)) = slot {
        submit(vec![stop_record(p, payload)]);
    }
}

/// An `async fn`'s point: started at the first poll, current only while the
/// body is polled (see [`in_scope_future`]), stopped when finished, or when
/// dropped unfinished (recorded as cancelled).
pub(crate) struct AsyncPoint {
    open: Option<OpenPoint>,
    scope: Option<Scope>,
    stop: Option<Box<Payload>>,
}

impl AsyncPoint {
    pub(crate) const fn none() -> AsyncPoint {
        AsyncPoint {
            open: None,
            scope: None,
            stop: None,
        }
    }

    pub(crate) fn start(name: Cow<'static, str>, payload: Option<Payload>) -> AsyncPoint {
        with_local(|l| {
            let trace = l.scope.trace.clone()?;
            let open = l.open(name, payload, false)?;
            let scope = Scope {
                trace: Some(trace),
                current: open.id,
                stack: Vec::new(),
            };
            Some(AsyncPoint {
                open: Some(open),
                scope: Some(scope),
                stop: None,
            })
        })
        .unwrap_or(AsyncPoint::none())
    }

    pub(crate) fn is_recording(&self) -> bool {
        self.open.is_some()
    }

    pub(crate) fn take_scope(&mut self) -> Option<Scope> {
        self.scope.take()
    }

    pub(crate) fn set_payload(&mut self, p: Payload) {
        if self.open.is_some() {
            self.stop = Some(Box::new(p));
        }
    }

    pub(crate) fn finish(mut self) {
        if let Some(p) = self.open.take() {
            close_point(p, self.stop.take(), false);
        }
    }
}

impl Drop for AsyncPoint {
    fn drop(&mut self) {
        if let Some(p) = self.open.take() {
            let payload = if std::thread::panicking() {
                panic_payload()
            } else {
                Box::new(Payload::Cancelled)
            };
            close_point(p, Some(payload), false);
        }
    }
}

/// A point not tied to a scope: started now (a child of the current point), made
/// current wherever its [`context`](Point::context) is entered or instrumented, and
/// stopped by [`finish`](Point::finish) or when dropped. `Send`: it may stop on
/// another thread. For integrations whose start and stop are separate callbacks
/// (a `tracing` span's life, a request's headers and its response).
///
/// ```
/// let ctx = osprofiler::TraceContext::new(None, None, None);
/// let mut rpc = ctx.in_scope(|| osprofiler::Point::start("rpc", osprofiler::Info::new()));
/// let child = std::thread::spawn(move || {
///     let _in = rpc.context().unwrap().enter();
///     let _db = osprofiler::point("db"); // a child of rpc
///     rpc.set_stop_info(osprofiler::Info::new().with("status", "ok"));
///     rpc.finish();
/// });
/// child.join().unwrap();
/// ```
pub struct Point {
    inner: AsyncPoint,
}

impl Point {
    /// Starts a point under the current one; records nothing outside a trace.
    pub fn start(name: impl Into<Cow<'static, str>>, info: impl Into<Info>) -> Point {
        if !is_active() {
            return Point {
                inner: AsyncPoint::none(),
            };
        }
        Point {
            inner: AsyncPoint::start(name.into(), info_start(info.into())),
        }
    }

    /// Whether a point is recorded (a trace was active at its start).
    pub fn is_recording(&self) -> bool {
        self.inner.is_recording()
    }

    /// The point's id.
    pub fn id(&self) -> Option<Id> {
        self.inner.open.as_ref().map(|p| Id(p.id))
    }

    /// The trace at this point: enter it or instrument a future with it to make
    /// this point the parent of what runs there.
    pub fn context(&self) -> Option<TraceContext> {
        let p = self.inner.open.as_ref()?;
        let shared = self.inner.scope.as_ref()?.trace.clone()?;
        Some(TraceContext {
            shared,
            current: p.id,
        })
    }

    /// Adds `info` to the stop event.
    pub fn set_stop_info(&mut self, info: impl Into<Info>) {
        let info = info.into();
        if !info.is_empty() {
            self.inner.set_payload(Payload::Info(info));
        }
    }

    /// Marks the point as failed: `info.etype` and `info.message` at stop.
    pub fn set_error(&mut self, etype: impl Into<Cow<'static, str>>, message: impl Into<String>) {
        self.inner.set_payload(Payload::Error {
            etype: etype.into(),
            message: message.into(),
        });
    }

    /// Stops the point now.
    pub fn finish(self) {}
}

impl Drop for Point {
    fn drop(&mut self) {
        // Dropped unfinished: a normal stop (unlike an abandoned future's point).
        if let Some(p) = self.inner.open.take() {
            let payload = match self.inner.stop.take() {
                Some(s) => Some(s),
                None if std::thread::panicking() => Some(panic_payload()),
                None => None,
            };
            close_point(p, payload, false);
        }
    }
}

impl fmt::Debug for Point {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Point").field("id", &self.id()).finish()
    }
}

/// Extension for futures: run them inside a trace.
pub trait FutureExt: Future + Sized {
    /// Polls `self` inside `ctx` (see [`TraceContext::instrument`]).
    fn in_trace(self, ctx: TraceContext) -> impl Future<Output = Self::Output> {
        ctx.instrument(self)
    }

    /// Polls `self` inside the trace current here and now, if any: for
    /// `tokio::spawn(work.in_current_trace())`.
    fn in_current_trace(self) -> impl Future<Output = Self::Output> {
        let scope = get().map(|ctx| Scope {
            trace: Some(ctx.shared),
            current: ctx.current,
            stack: Vec::new(),
        });
        in_scope_future(scope, self)
    }
}

impl<F: Future> FutureExt for F {}
