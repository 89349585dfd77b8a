//! The points: the thread-bound guard ([`LocalPoint`], from [`point`]), the
//! point that moves across threads and tasks ([`Point`]), the `async fn`'s
//! point, and osprofiler's `start`/`stop`.

use std::borrow::Cow;
use std::fmt;
use std::future::Future;

use crate::context::{TraceContext, in_scope_future};
use crate::id::Id;
use crate::info::{Field, Info, fields_info};
use crate::local::{
    LeanSlot, OpenPoint, Scope, close_point, finish_lean, is_active, panic_payload, with_local,
};
use crate::notifier::{Extra, Payload, field_records};

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

/// [`point`] with `fields` on its start event, as [`point_with`] with the same keys
/// and values in an [`Info`] would record them, but much cheaper: the values are
/// copied as they are into records of the thread's buffer right after the point's
/// own (48 bytes of text per record; no allocation) and made JSON on the exporter
/// thread. Fields that take more than 64 records (about 3 KiB of text) go through
/// [`Info`] instead. The way for a `db` point to carry its statement.
///
/// The keys are flat (`info.statement`): the sqlx integration's `db` points
/// keep Python's nested `info.db.statement` and so still go through [`Info`];
/// `#[trace]` records `info.function` without a JSON map already.
///
/// ```
/// use osprofiler::Field;
/// fn instance_get(statement: &str) -> usize {
///     let _p = osprofiler::point_with_fields(
///         "db",
///         &[("statement", Field::from(statement)), ("rows", 1.into())],
///     );
///     1
/// }
/// # instance_get("SELECT 1");
/// ```
#[inline]
pub fn point_with_fields(name: &'static str, fields: &[(&'static str, Field<'_>)]) -> LocalPoint {
    if !is_active() {
        return LocalPoint::none();
    }
    match field_records(fields) {
        Some(records) => LocalPoint::start_fields(name, fields, records),
        None => LocalPoint::start_extra(
            name,
            Some(Box::new(Extra {
                start: Some(Payload::Info(fields_info(fields))),
                ..Extra::default()
            })),
        ),
    }
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
    // Register-sized on purpose: the point's state is its start record in the
    // thread's buffer and this says where (see `local::LeanSlot`). Outside a
    // trace the compiler then sees `None` flow straight to the drop, and the
    // whole guard costs one branch.
    slot: Option<LeanSlot>,
    _not_send: std::marker::PhantomData<*const ()>,
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
        let extra = payload.map(|start| {
            Box::new(Extra {
                start: Some(start),
                ..Extra::default()
            })
        });
        LocalPoint::start_extra(name, extra)
    }

    #[inline]
    fn start_fields(
        name: &'static str,
        fields: &[(&'static str, Field<'_>)],
        records: usize,
    ) -> LocalPoint {
        let slot = with_local(|l| l.open_lean_fields(name, fields, records));
        LocalPoint {
            slot,
            _not_send: std::marker::PhantomData,
        }
    }

    #[inline]
    fn start_extra(name: &'static str, extra: Option<Box<Extra>>) -> LocalPoint {
        let slot = with_local(|l| l.open_lean(name, extra));
        LocalPoint {
            slot,
            _not_send: std::marker::PhantomData,
        }
    }

    /// Whether this guard records a point (a trace was active at its start).
    #[inline]
    pub fn is_recording(&self) -> bool {
        self.slot.is_some()
    }

    /// The point's id, when recording.
    pub fn id(&self) -> Option<Id> {
        let slot = self.slot?;
        with_local(|l| l.lean_id(slot)).map(Id)
    }

    /// Adds `info` to the stop event.
    pub fn set_stop_info(&mut self, info: impl Into<Info>) {
        if let Some(slot) = self.slot {
            let stop = info_payload(info.into());
            with_local(|l| {
                l.set_lean_stop(slot, stop);
                Some(())
            });
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
        if let Some(slot) = self.slot {
            let p = Box::new(p);
            with_local(|l| {
                l.set_lean_stop(slot, Some(p));
                Some(())
            });
        }
    }

    /// Stops the point now.
    pub fn stop(self) {}
}

impl Drop for LocalPoint {
    #[inline(always)]
    fn drop(&mut self) {
        if let Some(slot) = self.slot {
            finish_lean(slot);
        }
    }
}

impl fmt::Debug for LocalPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalPoint")
            .field("id", &self.id())
            .finish()
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

    /// [`Point::start`] with a payload already made (the layers' typed ones).
    pub(crate) fn start_payload(name: &'static str, payload: Payload) -> Point {
        if !is_active() {
            return Point {
                inner: AsyncPoint::none(),
            };
        }
        Point {
            inner: AsyncPoint::start(Cow::Borrowed(name), Some(payload)),
        }
    }

    /// Sets the stop payload (replacing any earlier stop info).
    pub(crate) fn set_payload(&mut self, p: Payload) {
        self.inner.set_payload(p);
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

#[cfg(test)]
pub(crate) mod tests {
    use crate::notifier::{self, MemorySink};
    use crate::{Info, TraceContext, point};

    /// The sink is process-wide: unit tests that set one take turns.
    pub(crate) static SINK_TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn turn() -> std::sync::MutexGuard<'static, ()> {
        SINK_TURN.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A guard whose start record was handed over while it was open (more
    /// points than a buffer holds) still gets its stop info, its id, and gives
    /// the current point back to its parent.
    #[test]
    fn a_guard_outlives_the_hand_over_of_its_start() {
        let _turn = turn();
        let sink = MemorySink::new();
        let _n = notifier::set_sink(sink.clone());
        let ctx = TraceContext::new(None, None, None);
        let (outer_id, child_parent, after) = ctx.in_scope(|| {
            let mut outer = point("outer");
            outer.set_stop_info(Info::new().with("early", 1));
            let outer_id = outer.id();
            for _ in 0..2 * crate::notifier::BATCH {
                let _p = point("inner");
            }
            assert_eq!(outer.id(), outer_id);
            outer.set_stop_info(Info::new().with("rows", 3));
            let child_parent = crate::get().map(|c| c.id());
            drop(outer);
            (outer_id, child_parent, crate::get().map(|c| c.id()))
        });
        notifier::flush().unwrap();
        assert_eq!(child_parent, outer_id);
        assert_eq!(after, Some(ctx.base_id()));
        let events = sink.trace(ctx.base_id());
        let outer: Vec<_> = events.iter().filter(|e| e.name == "outer").collect();
        assert_eq!(outer.len(), 2, "{outer:?}");
        assert_eq!(Some(outer[1].trace_id), outer_id);
        assert_eq!(outer[1].info["rows"], 3);
        assert!(outer[1].info.get("early").is_none());
        let inner = events.iter().filter(|e| e.name == "inner").count();
        assert_eq!(inner, 4 * crate::notifier::BATCH);
    }

    /// Stop info set while the start is still in the buffer, and a panic.
    #[test]
    fn stop_info_and_panics_in_the_buffer() {
        let _turn = turn();
        let sink = MemorySink::new();
        let _n = notifier::set_sink(sink.clone());
        let ctx = TraceContext::new(None, None, None);
        ctx.in_scope(|| {
            let mut p = point("db");
            p.set_error("E", "m");
            p.set_stop_info(Info::new().with("rows", 1));
            drop(p);
            let caught = std::panic::catch_unwind(|| {
                let _p = point("boom");
                panic!("test panic");
            });
            assert!(caught.is_err());
            let mut q = point("cleared");
            q.set_stop_info(Info::new().with("x", 1));
            q.set_stop_info(Info::new());
        });
        notifier::flush().unwrap();
        let events = sink.trace(ctx.base_id());
        let stop = |name: &str| {
            events
                .iter()
                .filter(|e| e.name == name)
                .nth(1)
                .map(|e| e.info.clone())
                .unwrap()
        };
        assert_eq!(stop("db")["rows"], 1);
        assert!(stop("db").get("etype").is_none());
        assert_eq!(stop("boom")["etype"], "panic");
        assert!(stop("cleared").get("x").is_none());
    }

    /// A short trace's buffer waits in its thread's mailbox: another thread's
    /// flush gets it while that thread is idle, and without any flush it still
    /// reaches the sink within a few exporter intervals.
    #[test]
    fn short_traces_left_in_a_mailbox_still_arrive() {
        let _turn = turn();
        let sink = MemorySink::new();
        let _n = notifier::set_sink(sink.clone());
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let (exit_tx, exit_rx) = std::sync::mpsc::channel::<()>();
        let idle = std::thread::spawn(move || {
            let a = TraceContext::new(None, None, None);
            a.in_scope(|| drop(point("db")));
            done_tx.send(a.base_id()).unwrap();
            // Idle, not exiting: exit would hand the buffer over by itself.
            let _ = exit_rx.recv();
        });
        let a = done_rx.recv().unwrap();
        notifier::flush().unwrap();
        assert_eq!(
            sink.trace(a).len(),
            2,
            "the flush collects the idle thread's trace"
        );

        let b = TraceContext::new(None, None, None);
        b.in_scope(|| drop(point("db")));
        let start = std::time::Instant::now();
        while sink.trace(b.base_id()).len() < 2 {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(2),
                "a lone trace waited over 2 s"
            );
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        drop(exit_tx);
        idle.join().unwrap();
    }
}
