//! Shared by the `tracing` bridge, SQL and DB API test binaries: one in-memory
//! sink and one global subscriber per test binary (both are process-wide),
//! helpers to read a trace back as a tree, and a throwaway PostgreSQL server.
#![allow(dead_code)]

pub mod postgres;

use std::sync::OnceLock;

use osprofiler::integrations::tracing::{TracingFilter, TracingLayer};
use osprofiler::notifier::{self, MemorySink};
use osprofiler::{Event, EventKind, Id};
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt as _;

/// The test binary's sink, set once and kept for its life.
pub fn sink() -> &'static MemorySink {
    static SINK: OnceLock<MemorySink> = OnceLock::new();
    SINK.get_or_init(|| {
        let sink = MemorySink::new();
        std::mem::forget(notifier::set_sink(sink.clone()));
        sink
    })
}

/// Sets the sink and installs the layer (with its filter) as the global
/// subscriber, once.
pub fn install_layer() {
    sink();
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let subscriber =
            tracing_subscriber::registry().with(TracingLayer::new().with_filter(TracingFilter));
        tracing::subscriber::set_global_default(subscriber).expect("first global subscriber");
    });
}

/// Flushes (this thread's buffer and the exporter) and returns one trace's points.
pub fn points_of(base: Id) -> Vec<P> {
    sink();
    notifier::flush().expect("flush");
    let events = sink().trace(base);
    points(&events)
}

/// [`points_of`] once the trace has `n` points, all stopped (or after 10 s):
/// a span's last handle may be dropped a moment after the traced call
/// returns, on another thread (sqlx's SQLite worker holds a copy of the
/// caller's span until it is done with the statement, and reports the
/// statement after sending its result).
pub fn settled_points(base: Id, n: usize) -> Vec<P> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let points = points_of(base);
        let settled = points.len() == n && points.iter().all(|p| p.stop.is_some());
        if settled || std::time::Instant::now() >= deadline {
            return points;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// A point rebuilt from its two events.
#[derive(Debug, Clone)]
pub struct P {
    pub name: String,
    pub id: Id,
    pub parent: Id,
    pub start: Event,
    pub stop: Option<Event>,
}

impl P {
    /// Duration in microseconds (0 without a stop).
    pub fn micros(&self) -> i64 {
        self.stop
            .as_ref()
            .map_or(0, |s| s.timestamp.0 - self.start.timestamp.0)
    }

    /// The stop event's info value at `key` (`Null` when absent).
    pub fn stop_info(&self, key: &str) -> serde_json::Value {
        self.stop
            .as_ref()
            .map_or(serde_json::Value::Null, |s| s.info[key].clone())
    }
}

/// Pairs start and stop events into points, in start order.
pub fn points(events: &[Event]) -> Vec<P> {
    let mut out: Vec<P> = events
        .iter()
        .filter(|e| e.kind == EventKind::Start)
        .map(|e| P {
            name: e.name.to_string(),
            id: e.trace_id,
            parent: e.parent_id,
            start: e.clone(),
            stop: events
                .iter()
                .find(|s| s.kind == EventKind::Stop && s.trace_id == e.trace_id)
                .cloned(),
        })
        .collect();
    out.sort_by_key(|p| p.start.timestamp);
    out
}

/// The one point named `name`; panics with the whole trace otherwise.
#[track_caller]
pub fn one<'a>(points: &'a [P], name: &str) -> &'a P {
    let found: Vec<&P> = points.iter().filter(|p| p.name == name).collect();
    assert_eq!(found.len(), 1, "one {name:?} point expected in {points:#?}");
    found[0]
}

/// The points whose parent is `parent`.
pub fn children(points: &[P], parent: Id) -> Vec<&P> {
    points.iter().filter(|p| p.parent == parent).collect()
}

/// The `db` points (SQL statements) under `parent`, as their statement texts.
pub fn statements_under(points: &[P], parent: Id) -> Vec<String> {
    points
        .iter()
        .filter(|p| p.name == "db" && p.parent == parent && !p.start.info["db"].is_null())
        .map(|p| {
            p.start.info["db"]["statement"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

/// `text` is in none of the trace's events (a hidden value).
#[track_caller]
pub fn assert_not_recorded(base: Id, text: &str) {
    sink();
    notifier::flush().expect("flush");
    for e in sink().trace(base) {
        let json = e.to_json();
        assert!(!json.contains(text), "{text:?} recorded: {json}");
    }
}

/// Every point stopped, with a start no later than its stop.
#[track_caller]
pub fn assert_well_formed(points: &[P]) {
    for p in points {
        let stop = p
            .stop
            .as_ref()
            .unwrap_or_else(|| panic!("{p:#?} never stopped"));
        assert!(stop.timestamp >= p.start.timestamp, "{p:#?}");
    }
}
