//! `jaeger://`: spans to a Jaeger agent (to be written).

use osprofiler::notifier::Sink;

use crate::{JaegerTarget, OpenError, Options};

pub(crate) fn open_sink(t: &JaegerTarget, _opts: &Options) -> Result<Box<dyn Sink>, OpenError> {
    Err(OpenError::Unavailable {
        store: crate::ConnectionString::Jaeger(t.clone()).to_string(),
        reason: "not written yet".into(),
    })
}
