//! Redis (to be written).
use crate::{ConnectionString, OpenError, Options, Sink, TraceStore};

pub(crate) fn open_store(
    cs: &ConnectionString,
    _opts: &Options,
) -> Result<Box<dyn TraceStore>, OpenError> {
    Err(OpenError::Unavailable {
        store: cs.to_string(),
        reason: "not implemented yet".into(),
    })
}

pub(crate) fn open_sink(
    cs: &ConnectionString,
    _opts: &Options,
) -> Result<Box<dyn Sink>, OpenError> {
    Err(OpenError::Unavailable {
        store: cs.to_string(),
        reason: "not implemented yet".into(),
    })
}
