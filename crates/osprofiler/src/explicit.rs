//! Points recorded after the fact, with their times given: for integrations
//! that learn of an operation only once it has ended (sqlx reports each
//! statement, with its elapsed time, when it is done).
//!
//! Crate-private on purpose: the public way to record a point is to start it
//! when the work starts. This is the one exception, kept to a single function.

// Only the `tracing` integration uses it so far.
#![cfg_attr(not(feature = "tracing"), allow(dead_code))]

use std::borrow::Cow;
use std::time::Duration;

use crate::id::Id;
use crate::info::Info;
use crate::notifier::{Extra, Payload, Record, RecordKind, submit};

/// Records a whole point as a child of the current point of this thread's
/// trace: started `elapsed` ago, stopped now, with `start` as the start
/// event's info and `stop` as the stop event's. Returns its id; records
/// nothing and returns `None` outside a trace.
///
/// The point goes to the exporter as a batch of its own: it is never patched
/// later, so it need not sit in the thread's buffer.
pub(crate) fn record_finished(
    name: impl Into<Cow<'static, str>>,
    start: Info,
    stop: Option<Payload>,
    elapsed: Duration,
) -> Option<Id> {
    let ctx = crate::get()?;
    let end = fastant::Instant::now();
    // The clock counts from process start: a statement reported in the first
    // moments may claim to have started before it.
    let at = end.checked_sub(elapsed).unwrap_or(fastant::Instant::ZERO);
    let id = crate::local::next_id()?;
    let start = (!start.is_empty()).then_some(Payload::Info(start));
    let (name, mut extra) = Extra::for_start(name.into(), start);
    if let Some(stop) = stop {
        Extra::set_stop(&mut extra, Box::new(stop));
    }
    submit(vec![Record {
        base: ctx.base_id().0,
        id,
        parent: ctx.id().0,
        at,
        end,
        name,
        extra,
        identity: ctx.identity_index(),
        kind: RecordKind::Span,
    }]);
    Some(Id(id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notifier::{self, MemorySink};

    #[test]
    fn a_past_point_under_the_current_one() {
        assert!(record_finished("db", Info::new(), None, Duration::ZERO).is_none());
        // Past the clock's origin (process start), so the start is not clipped.
        while fastant::Instant::now().duration_since(fastant::Instant::ZERO)
            < Duration::from_secs(1)
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _turn = crate::point::tests::SINK_TURN
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let sink = MemorySink::new();
        let _n = notifier::set_sink(sink.clone());
        let ctx = crate::TraceContext::new(None, None, None);
        let (parent, id) = ctx.in_scope(|| {
            let p = crate::point("api");
            let id = record_finished(
                "db",
                Info::new().with("statement", "SELECT 1"),
                Some(Payload::Error {
                    etype: "E".into(),
                    message: "m".into(),
                }),
                Duration::from_millis(250),
            );
            (p.id(), id)
        });
        notifier::flush().unwrap();
        let events = sink.trace(ctx.base_id());
        let db: Vec<_> = events.iter().filter(|e| e.name == "db").collect();
        assert_eq!(db.len(), 2);
        assert_eq!(Some(db[0].trace_id), id);
        assert_eq!(Some(db[0].parent_id), parent);
        assert_eq!(db[0].info["statement"], "SELECT 1");
        assert_eq!(db[1].info["etype"], "E");
        let took = db[1].timestamp.0 - db[0].timestamp.0;
        assert!((250_000..300_000).contains(&took), "{took}");
    }
}
