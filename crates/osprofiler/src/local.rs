//! Each thread's recording state, in a thread-local: the buffer of records
//! handed over to the exporter in batches, the stacks of open points, and the
//! scope (trace and current point) swapped in and out as a whole. The public
//! context and point API (`context.rs`, `point.rs`) is built on this.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::num::NonZeroU64;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::id::next_from;
use crate::info::Field;
use crate::keys::HmacKey;
use crate::notifier::{
    BATCH, Extra, Mailbox, Payload, Record, RecordKind, mailbox, new_buffer, push_fields, submit,
};

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
    pub(crate) id: u128,
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
    pub(crate) trace: Option<Arc<TraceShared>>,
    pub(crate) current: u128,
    // Points opened by the osprofiler-style `start()` and closed by `stop()`.
    pub(crate) stack: Vec<OpenPoint>,
}

pub(crate) struct Local {
    pub(crate) scope: Scope,
    buf: Vec<Record>,
    // A buffer older than this is handed over at the next record, so a busy
    // thread's events reach the store within about MAX_AGE.
    deadline: Option<fastant::Instant>,
    // Changes whenever the buffer is handed over; unique across threads, so
    // a point stopped on another thread never patches this thread's records.
    generation: u64,
    // Point id generator state (see `id::next_from`).
    ids: (u64, u64),
    // Points whose start record was handed over while they were still open:
    // what their stop record needs (sync guards keep only their slot, which
    // `OpenPoint::slot` keeps here), and the stop info a sync guard's point had
    // been given by then.
    parked: Vec<OpenPoint>,
    parked_stops: Vec<((u64, usize), Box<Payload>)>,
    // Capacity of the next buffer: a full batch after a full one (no regrowth
    // on busy threads), small after a small one (little memory held in the
    // queue by per-request hand-overs).
    next_cap: usize,
    // Start records of sync guards in `buf`: while there are some, leaving the
    // trace hands the buffer over (their bookkeeping, `parked`, is made then).
    lean_open: u32,
    // Where the buffer waits while the thread works for no trace: finished
    // short traces gather there and go over together, when the buffer fills
    // or ages, or when the exporter collects it (every `Config::interval`), so
    // a request's end costs a lock nobody else holds, not a hand-over.
    mailbox: Option<Arc<Mailbox>>,
    // `buf` is in the mailbox (unless the exporter has taken it since), with
    // this deadline.
    in_mailbox: bool,
    mailbox_deadline: Option<fastant::Instant>,
}

const SMALL_BATCH: usize = 16;

const MAX_PARKED: usize = 4096;

/// What a sync guard keeps of its point: where its record sits, as the low
/// 32 bits of the buffer's generation and the index + 1. The rest is in the
/// record (or, once the record is handed over, in `parked`).
pub(crate) type LeanSlot = NonZeroU64;

#[inline]
fn lean_slot(generation: u64, index: usize) -> Option<LeanSlot> {
    NonZeroU64::new((generation << 32) | (index as u64 + 1))
}

#[inline]
fn lean_parts(slot: LeanSlot) -> (u32, usize) {
    (
        (slot.get() >> 32) as u32,
        (slot.get() as u32 as usize).wrapping_sub(1),
    )
}

#[inline]
fn same_slot(held: (u64, usize), (generation, index): (u32, usize)) -> bool {
    held.0 as u32 == generation && held.1 == index
}
const MAX_AGE: Duration = Duration::from_millis(100);

impl Local {
    #[inline]
    pub(crate) fn open(
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
            kind: RecordKind::OwnedStart,
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

    /// Opens a point for a sync guard, which keeps only its slot: the rest
    /// stays in the record (or is parked at hand-over).
    #[inline]
    pub(crate) fn open_lean(
        &mut self,
        name: &'static str,
        extra: Option<Box<Extra>>,
    ) -> Option<LeanSlot> {
        let t = self.scope.trace.as_deref()?;
        let (base, identity) = (t.base, t.identity);
        let id = next_from(&mut self.ids);
        let parent = self.scope.current;
        self.scope.current = id;
        let at = fastant::Instant::now();
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
        self.lean_open += 1;
        lean_slot(generation, index)
    }

    /// [`Local::open_lean`] for a point with fields, which take `records`
    /// records (`field_records`) right after its start record, in the same
    /// buffer: no allocation.
    #[inline]
    pub(crate) fn open_lean_fields(
        &mut self,
        name: &'static str,
        fields: &[(&'static str, Field<'_>)],
        records: usize,
    ) -> Option<LeanSlot> {
        let t = self.scope.trace.as_deref()?;
        let (base, identity) = (t.base, t.identity);
        let id = next_from(&mut self.ids);
        let parent = self.scope.current;
        self.scope.current = id;
        let at = fastant::Instant::now();
        let needed = records + 1;
        // The point and its fields go over in one batch: hand over first a
        // buffer that is stale or would pass a full batch; grow a young one
        // as pushing would (doubling, so its capacity keeps a pool).
        if let Some(d) = self.deadline {
            if at > d || self.buf.len() + needed > BATCH {
                self.flush();
            } else if self.buf.capacity() - self.buf.len() < needed {
                self.grow(needed);
            }
        }
        if self.deadline.is_none() {
            self.start_buffer_for(at, needed);
        }
        self.lean_open += 1;
        let slot = (self.generation, self.buf.len());
        self.buf.push(Record {
            base,
            id,
            parent,
            at,
            end: at,
            name,
            extra: None,
            identity,
            kind: RecordKind::Start,
        });
        push_fields(&mut self.buf, fields, at);
        if self.buf.len() >= BATCH {
            self.flush();
        }
        lean_slot(slot.0, slot.1)
    }

    /// The start record of a sync guard's point, while it is in the buffer.
    #[inline]
    fn lean_record(&mut self, slot: LeanSlot) -> Option<&mut Record> {
        let (generation, index) = lean_parts(slot);
        if generation != self.generation as u32 {
            return None;
        }
        self.buf
            .get_mut(index)
            .filter(|r| r.kind == RecordKind::Start)
    }

    #[inline]
    pub(crate) fn close_lean(&mut self, slot: LeanSlot, panicking: bool) {
        if let Some(r) = self.lean_record(slot) {
            r.kind = RecordKind::Span;
            r.end = fastant::Instant::now();
            let (id, parent) = (r.id, r.parent);
            if panicking && r.extra.as_ref().is_none_or(|e| e.stop.is_none()) {
                Extra::set_stop(&mut r.extra, panic_payload());
            }
            if self.scope.current == id {
                self.scope.current = parent;
            }
            self.lean_open = self.lean_open.saturating_sub(1);
            return;
        }
        self.close_parked(slot, panicking);
    }

    #[cold]
    fn close_parked(&mut self, slot: LeanSlot, panicking: bool) {
        let at = lean_parts(slot);
        let Some(pos) = self.parked.iter().rposition(|o| same_slot(o.slot, at)) else {
            return;
        };
        let open = self.parked.swap_remove(pos);
        if self.scope.current == open.id {
            self.scope.current = open.parent;
        }
        let mut stop = self
            .parked_stops
            .iter()
            .rposition(|(s, _)| same_slot(*s, at))
            .map(|i| self.parked_stops.swap_remove(i).1);
        if stop.is_none() && panicking {
            stop = Some(panic_payload());
        }
        self.push(stop_record(open, stop));
    }

    /// Sets (or, with `None`, clears) the stop info of a sync guard's point.
    pub(crate) fn set_lean_stop(&mut self, slot: LeanSlot, stop: Option<Box<Payload>>) {
        if let Some(r) = self.lean_record(slot) {
            match (&mut r.extra, stop) {
                (Some(e), stop) => e.stop = stop,
                (extra @ None, Some(stop)) => Extra::set_stop(extra, stop),
                (None, None) => {}
            }
            return;
        }
        let at = lean_parts(slot);
        let Some(held) = self
            .parked
            .iter()
            .rfind(|o| same_slot(o.slot, at))
            .map(|o| o.slot)
        else {
            return;
        };
        self.parked_stops.retain(|(s, _)| *s != held);
        if let Some(stop) = stop {
            self.parked_stops.push((held, stop));
        }
    }

    /// A sync guard's point id.
    pub(crate) fn lean_id(&mut self, slot: LeanSlot) -> Option<u128> {
        if let Some(r) = self.lean_record(slot) {
            return Some(r.id);
        }
        let at = lean_parts(slot);
        self.parked
            .iter()
            .rfind(|o| same_slot(o.slot, at))
            .map(|o| o.id)
    }

    #[inline]
    pub(crate) fn close(&mut self, p: OpenPoint, payload: Option<Box<Payload>>, restore: bool) {
        if restore && self.scope.current == p.id {
            self.scope.current = p.parent;
        }
        let (generation, index) = p.slot;
        if generation == self.generation {
            // Its start may wait in the mailbox: take the buffer back to
            // complete the record in place.
            self.reclaim();
        }
        if generation == self.generation
            && let Some(r) = self.buf.get_mut(index)
            && r.id == p.id
            && matches!(r.kind, RecordKind::Start | RecordKind::OwnedStart)
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
        self.start_buffer_for(at, 1);
    }

    /// Takes the buffer back from the mailbox, if the exporter has not taken
    /// it meanwhile (then the next records start a new buffer).
    #[inline]
    fn reclaim(&mut self) {
        if self.in_mailbox {
            self.reclaim_slow();
        }
    }

    #[cold]
    fn reclaim_slow(&mut self) {
        self.in_mailbox = false;
        let deadline = self.mailbox_deadline.take();
        // A lock held by someone else is the exporter taking the buffer.
        let back = self.mailbox.as_ref().and_then(|m| match m.try_lock() {
            Ok(mut held) if !held.is_empty() => Some(std::mem::take(&mut *held)),
            _ => None,
        });
        match back {
            Some(buf) => {
                // `self.buf` is the mailbox's empty vector: nothing lost.
                self.buf = buf;
                self.deadline = deadline;
            }
            None => {
                // Handed over by the exporter: slots into it are stale.
                self.generation = GENERATIONS.fetch_add(1, Ordering::Relaxed);
                self.deadline = None;
            }
        }
    }

    /// Leaves the buffer in the mailbox rather than handing it over, when
    /// nothing in it needs this thread's bookkeeping; `false` when it cannot.
    #[inline]
    fn park(&mut self) -> bool {
        if self.lean_open != 0 || self.buf.len() >= BATCH || self.in_mailbox {
            return false;
        }
        if self.mailbox.is_none() {
            self.mailbox = mailbox();
        }
        let Some(m) = &self.mailbox else {
            return false;
        };
        let Ok(mut held) = m.try_lock() else {
            return false;
        };
        if !held.is_empty() {
            return false;
        }
        std::mem::swap(&mut *held, &mut self.buf);
        drop(held);
        self.in_mailbox = true;
        self.mailbox_deadline = self.deadline.take();
        true
    }

    #[cold]
    fn grow(&mut self, needed: usize) {
        let len = self.buf.len();
        let cap = (len + needed)
            .next_power_of_two()
            .max(self.buf.capacity() * 2)
            .min(BATCH);
        self.buf.reserve_exact(cap - len);
    }

    /// Starts a buffer with room for at least `needed` records (at most
    /// `MAX_FIELD_RECORDS` + 1, so always a pooled capacity).
    #[cold]
    fn start_buffer_for(&mut self, at: fastant::Instant, needed: usize) {
        self.reclaim();
        if let Some(d) = self.deadline {
            // The buffer back from the mailbox: go on filling it, unless it
            // is stale or has no room.
            if at <= d && self.buf.len() + needed <= BATCH {
                if self.buf.capacity() - self.buf.len() < needed {
                    self.grow(needed);
                }
                return;
            }
            self.flush();
        }
        self.deadline = Some(at + MAX_AGE);
        if self.buf.capacity() < needed {
            let cap = self
                .next_cap
                .max(SMALL_BATCH)
                .max(needed.next_power_of_two());
            self.buf = new_buffer(cap);
        }
    }

    fn flush(&mut self) {
        self.reclaim();
        self.deadline = None;
        self.lean_open = 0;
        let handed = self.generation;
        self.generation = GENERATIONS.fetch_add(1, Ordering::Relaxed);
        for (index, r) in self.buf.iter_mut().enumerate() {
            if r.kind == RecordKind::Start {
                if self.parked.len() >= MAX_PARKED {
                    // Guards leaked with mem::forget never stop: forget the oldest.
                    self.parked.remove(0);
                }
                if let Some(stop) = r.extra.as_mut().and_then(|e| e.stop.take()) {
                    if self.parked_stops.len() >= MAX_PARKED {
                        self.parked_stops.remove(0);
                    }
                    self.parked_stops.push(((handed, index), stop));
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
                    // Where it was: how its sync guard finds it here.
                    slot: (handed, index),
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

    /// The thread leaves its last trace: the buffer waits in the mailbox, or
    /// is handed over when it cannot.
    #[inline]
    fn leave(&mut self) {
        if self.buf.is_empty() || self.park() {
            return;
        }
        self.flush();
    }

    /// Exchanges the thread's scope with `other`, keeps the fast flag in step,
    /// and parks (or hands over) the buffer when the thread leaves its last trace.
    #[inline]
    pub(crate) fn swap_scope(&mut self, other: &mut Scope) {
        std::mem::swap(&mut self.scope, other);
        let active = self.scope.trace.is_some();
        let _ = ACTIVE.try_with(|a| a.set(active));
        if !active {
            self.leave();
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
            ids: (0, 0),
            parked: Vec::new(),
            parked_stops: Vec::new(),
            next_cap: SMALL_BATCH,
            lean_open: 0,
            mailbox: None,
            in_mailbox: false,
            mailbox_deadline: None,
        })
    };
}

/// Runs `f` on this thread's state; `None` when the thread is being torn down
/// or (never in our code) the state is already borrowed.
#[inline]
pub(crate) fn with_local<R>(f: impl FnOnce(&mut Local) -> Option<R>) -> Option<R> {
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

#[inline(never)]
pub(crate) fn finish_lean(slot: LeanSlot) {
    let panicking = std::thread::panicking();
    let _ = LOCAL.try_with(|cell| {
        if let Ok(mut l) = cell.try_borrow_mut() {
            l.close_lean(slot, panicking);
        }
    });
    // The thread's state is gone (thread exit) or borrowed: the stop is lost;
    // the report shows the point with its start only.
}

#[inline]
pub(crate) fn panic_payload() -> Box<Payload> {
    Box::new(Payload::Error {
        etype: Cow::Borrowed("panic"),
        message: "panicked".to_owned(),
    })
}

#[inline]
pub(crate) fn close_point(p: OpenPoint, payload: Option<Box<Payload>>, restore: bool) {
    let mut slot = Some((p, payload));
    let _ = LOCAL.try_with(|cell| {
        if let Ok(mut l) = cell.try_borrow_mut()
            && let Some((p, payload)) = slot.take()
        {
            l.close(p, payload, restore);
            // Stopped on a thread that works for no trace (a point finished by
            // another thread): it goes where a trace's end would put it.
            if l.scope.trace.is_none() {
                l.leave();
            }
        }
    });
    // The thread is exiting (or, never in our code, its state is borrowed):
    // hand the stop over on its own.
    if let Some((p, payload)) = slot {
        submit(vec![stop_record(p, payload)]);
    }
}
