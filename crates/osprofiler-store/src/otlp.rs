//! `otlp://`: spans to an OpenTelemetry collector (to be written).

use osprofiler::notifier::Sink;

use crate::{OpenError, Options, OtlpTarget};

pub(crate) fn open_sink(t: &OtlpTarget, _opts: &Options) -> Result<Box<dyn Sink>, OpenError> {
    Err(OpenError::Unavailable {
        store: crate::ConnectionString::Otlp(t.clone()).to_string(),
        reason: "not written yet".into(),
    })
}
