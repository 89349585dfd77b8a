//! SQLite (to be written).
use std::path::Path;

use crate::{OpenError, Options, Sink, TraceStore};

pub(crate) fn open_store(path: &Path, _opts: &Options) -> Result<Box<dyn TraceStore>, OpenError> {
    Err(OpenError::Unavailable {
        store: format!("sqlite://{}", path.display()),
        reason: "not implemented yet".into(),
    })
}

pub(crate) fn open_sink(path: &Path, _opts: &Options) -> Result<Box<dyn Sink>, OpenError> {
    Err(OpenError::Unavailable {
        store: format!("sqlite://{}", path.display()),
        reason: "not implemented yet".into(),
    })
}
