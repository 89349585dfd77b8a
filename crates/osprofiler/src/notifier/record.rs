//! What a traced thread records: [`Record`]s, 96 bytes each, handed to the
//! exporter in batches and made into events there.

use std::borrow::Cow;

use crate::info::{Fields, Info};

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
    /// The start event's info as recorded by `point_with_fields` (made `Info`
    /// by the exporter), when `start` is `None`.
    pub(crate) fields: Option<Fields>,
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
                    ..Extra::default()
                })),
            ),
            (Cow::Owned(n), start) => (
                "",
                Some(Box::new(Extra {
                    name: Some(n.into()),
                    start,
                    ..Extra::default()
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
                    stop: Some(stop),
                    ..Extra::default()
                }))
            }
        }
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
