//! Shared by the test binaries: one in-memory sink per test binary (the
//! notifier is process-wide), tests tell their events apart by base id.
#![allow(dead_code)]

use std::sync::OnceLock;

use osprofiler::notifier::{self, MemorySink};
use osprofiler::{Event, Id};

pub fn sink() -> &'static MemorySink {
    static SINK: OnceLock<MemorySink> = OnceLock::new();
    SINK.get_or_init(|| {
        let sink = MemorySink::new();
        // Kept for the life of the test binary.
        std::mem::forget(notifier::set_sink(sink.clone()));
        sink
    })
}

/// Flushes and returns the events of one trace, in recording order.
pub fn events_of(base: Id) -> Vec<Event> {
    let sink = sink();
    notifier::flush().expect("flush");
    sink.trace(base)
}

pub fn vector(name: &str) -> String {
    let path = format!("{}/../../vectors/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}
