//! The trace context: which trace the current thread or task works for, and
//! which point is current (the parent of the next point).
//!
//! A thread holds at most one trace at a time in a thread-local. Futures carry
//! theirs and install it only while they are polled, so a trace follows a
//! request across `.await` and never leaks into another task, or into the next
//! request served by the same thread.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use crate::id::Id;
use crate::identity::{self, Identity};
use crate::keys::HmacKey;
use crate::local::{Scope, TraceShared, is_active, with_local};
use crate::propagation::{IncomingTrace, TraceHeaders, TraceParent};

/// A handle on a trace at one of its points: all a thread, task or another
/// service needs to continue the trace under that point.
///
/// Cheap to clone. `Debug` shows the ids, never the key.
#[derive(Clone)]
pub struct TraceContext {
    pub(crate) shared: Arc<TraceShared>,
    pub(crate) current: u128,
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
