//! The spans entered on this thread whose trace the layer installed: a
//! per-thread stack of [`EnterGuard`]s.
//!
//! The guards live here rather than in the span because a span may be entered
//! on several threads at once (a shared span in a thread pool), and because an
//! `EnterGuard` restores *this thread's* previous trace state: it belongs to
//! the thread, not to the span.

use std::cell::RefCell;

use crate::{EnterGuard, TraceContext};

struct Entered {
    // Which layer and span entered it: spans are keyed by id, which a
    // subscriber may reuse once a span closes, but never while it is entered.
    layer: u64,
    span: u64,
    ctx: TraceContext,
    _guard: EnterGuard,
}

thread_local! {
    static STACK: RefCell<Vec<Entered>> = const { RefCell::new(Vec::new()) };
}

/// Makes `ctx` this thread's trace until [`exit`] with the same keys.
pub(super) fn enter(layer: u64, span: u64, ctx: TraceContext) {
    let guard = ctx.enter();
    let entry = Entered {
        layer,
        span,
        ctx,
        _guard: guard,
    };
    // At thread teardown the stack may be gone: the guard then drops here
    // and leaves the trace at once.
    let _ = STACK.try_with(|s| {
        if let Ok(mut s) = s.try_borrow_mut() {
            s.push(entry);
        }
    });
}

/// Leaves the trace installed by the matching [`enter`]; nothing when this
/// thread holds none for that span (a span that is not a point, or whose
/// trace was not installed).
pub(super) fn exit(layer: u64, span: u64) {
    let taken = STACK.try_with(|s| {
        let mut s = s.try_borrow_mut().ok()?;
        let pos = s.iter().rposition(|e| e.layer == layer && e.span == span)?;
        // Spans entered after this one and still entered: exits are normally
        // last-in first-out, but `Entered` guards can be dropped in any order.
        let above: Vec<Entered> = s.drain(pos + 1..).collect();
        let this = s.pop()?;
        Some((this, above))
    });
    let Ok(Some((this, mut above))) = taken else {
        return;
    };
    if above.is_empty() {
        // Dropped outside the borrow: it swaps the thread's trace state.
        drop(this);
        return;
    }
    // Unwind in reverse order so each guard restores what it saved, then put
    // back the spans still entered, in their order.
    let mut reenter = Vec::with_capacity(above.len());
    while let Some(e) = above.pop() {
        reenter.push((e.layer, e.span, e.ctx.clone()));
        drop(e);
    }
    drop(this);
    for (layer, span, ctx) in reenter.into_iter().rev() {
        enter(layer, span, ctx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_order_exits_keep_the_rest_entered() {
        let a = TraceContext::new(None, None, None);
        let b = TraceContext::new(None, None, None);
        enter(1, 10, a.clone());
        enter(1, 20, b.clone());
        assert_eq!(crate::get().map(|c| c.base_id()), Some(b.base_id()));
        exit(1, 10); // the older one first
        assert_eq!(crate::get().map(|c| c.base_id()), Some(b.base_id()));
        exit(1, 20);
        assert!(crate::get().is_none());
        assert!(STACK.with(|s| s.borrow().is_empty()));
        exit(1, 30); // never entered: nothing
        assert!(!crate::is_active());
    }
}
