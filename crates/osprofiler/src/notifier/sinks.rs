//! The sinks of this crate: in memory, and JSON lines in a file (the store
//! crate has the backends).

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::sink::{Sink, SinkError};
use crate::event::Event;
use crate::id::Id;

/// Keeps events in memory: for tests and for tools that render a trace
/// in-process. Clones share the same store.
#[derive(Clone, Default)]
pub struct MemorySink(Arc<Mutex<Vec<Event>>>);

impl MemorySink {
    /// An empty sink.
    pub fn new() -> MemorySink {
        MemorySink::default()
    }

    /// A copy of the events received so far.
    pub fn events(&self) -> Vec<Event> {
        self.0.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// Takes the events received so far, leaving the sink empty.
    pub fn take(&self) -> Vec<Event> {
        self.0
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default()
    }

    /// The events of one trace.
    pub fn trace(&self, base_id: Id) -> Vec<Event> {
        self.events()
            .into_iter()
            .filter(|e| e.base_id == base_id)
            .collect()
    }
}

impl Sink for MemorySink {
    fn write(&mut self, events: &[Event]) -> Result<(), SinkError> {
        self.0
            .lock()
            .map_err(|_| SinkError::msg("memory sink lock poisoned"))?
            .extend_from_slice(events);
        Ok(())
    }
}

impl std::fmt::Debug for MemorySink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemorySink").finish_non_exhaustive()
    }
}

/// Appends each event as one line of osprofiler's JSON to a file.
#[derive(Debug)]
pub struct JsonLinesSink {
    path: PathBuf,
    out: BufWriter<File>,
    line: Vec<u8>,
}

impl JsonLinesSink {
    /// Opens (creating if needed) `path` for appending.
    pub fn open(path: impl AsRef<Path>) -> std::io::Result<JsonLinesSink> {
        let path = path.as_ref().to_path_buf();
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        Ok(JsonLinesSink {
            path,
            out: BufWriter::with_capacity(64 * 1024, file),
            line: Vec::with_capacity(512),
        })
    }

    /// The file written to.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Sink for JsonLinesSink {
    fn write(&mut self, events: &[Event]) -> Result<(), SinkError> {
        for e in events {
            self.line.clear();
            e.write_json(&mut self.line);
            self.line.push(b'\n');
            self.out.write_all(&self.line)?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.out.flush()?;
        Ok(())
    }
}
