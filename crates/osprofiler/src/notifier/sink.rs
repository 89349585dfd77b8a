//! The sink trait: what the exporter writes events to.

use crate::event::Event;

/// Where the exporter writes events: a backend driver, a file, memory.
///
/// Called from the exporter thread only, with batches of events in the order
/// they were handed over. Errors are counted in [`stats`](super::stats()) and the batch is
/// lost; the sink is called again with the next batch.
pub trait Sink: Send + 'static {
    /// Writes a batch of events.
    fn write(&mut self, events: &[Event]) -> Result<(), SinkError>;

    /// Makes everything written so far durable/visible (called by [`flush`](super::flush)).
    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

/// A sink's failure to write.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SinkError(pub Box<dyn std::error::Error + Send + Sync>);

impl SinkError {
    /// An error from a message.
    pub fn msg(m: impl Into<String>) -> SinkError {
        SinkError(m.into().into())
    }
}

impl From<std::io::Error> for SinkError {
    fn from(e: std::io::Error) -> SinkError {
        SinkError(Box::new(e))
    }
}
