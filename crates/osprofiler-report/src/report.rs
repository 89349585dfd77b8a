//! The report as typed Rust: the tree of points and queries over it.

use std::fmt;
use std::sync::Arc;

use serde_json::Value;

use crate::builder::ReportBuilder;
use crate::event::{Event, Pair};

/// A trace's report: its points as a tree under an implicit root ("total"), with stats.
///
/// Built from stored events by [`Report::from_json_texts`] (texts as stored: the fast
/// way), [`Report::from_events`] (`serde_json::Value`s) or a [`ReportBuilder`]. Times are
/// microseconds from the trace's first event (`*_us`), or osprofiler's integer
/// milliseconds (`*_ms`), which truncate each time separately, as Python does.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub(crate) roots: Vec<Node>,
    pub(crate) origin_us: Option<i64>,
    pub(crate) finished_us: i64,
    pub(crate) finished_ms: Option<i64>,
    pub(crate) last_started_us: Option<i64>,
    pub(crate) last_started_ms: Option<i64>,
    pub(crate) points: usize,
    pub(crate) categories: Vec<Usage>,
    pub(crate) services: Vec<Usage>,
    pub(crate) skipped: usize,
    pub(crate) duplicates: usize,
    pub(crate) detached: usize,
    /// Total length of the events' texts, to size outputs.
    pub(crate) text_bytes: usize,
}

/// One trace point (a start event and a stop event sharing a `trace_id`).
///
/// Its strings are read from the events' texts, which it keeps as they were stored.
#[derive(Clone)]
pub struct Node {
    /// The trace's events, shared by all its nodes (so that building the tree moves no
    /// event), and the indices of this point's start and stop there (`NO_ID`: missing).
    pub(crate) events: Arc<Vec<Option<Event>>>,
    pub(crate) start: u32,
    pub(crate) stop: u32,
    pub(crate) started_us: i64,
    pub(crate) finished_us: i64,
    pub(crate) started_ms: i64,
    pub(crate) finished_ms: i64,
    pub(crate) children: Vec<Node>,
    /// Index of the point's name in [`Report::by_category`].
    pub(crate) category_id: u32,
    /// Index of the point's service in [`Report::by_service`].
    pub(crate) service_id: u32,
    /// Numbers of the host and the project among the trace's, given as the events came
    /// (renderers number them their own way); `NO_ID` for none.
    pub(crate) host_id: u32,
    pub(crate) project_id: u32,
}

/// Equal when the events (as stored), the times and the children are: every other field
/// is read from the events.
impl PartialEq for Node {
    fn eq(&self, other: &Node) -> bool {
        self.start_raw() == other.start_raw()
            && self.stop_raw() == other.stop_raw()
            && self.started_us == other.started_us
            && self.finished_us == other.finished_us
            && self.children == other.children
    }
}

impl fmt::Debug for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Node")
            .field("name", &self.name())
            .field("trace_id", &self.trace_id())
            .field("parent_id", &self.parent_id())
            .field("project", &self.project())
            .field("service", &self.service())
            .field("host", &self.host())
            .field("started_us", &self.started_us)
            .field("finished_us", &self.finished_us)
            .field("exception", &self.exception())
            .field("start", &self.start_raw())
            .field("stop", &self.stop_raw())
            .field("children", &self.children)
            .finish()
    }
}

/// Time and count of the points sharing a category (point name) or a service.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Usage {
    /// The point name, or the service name (`""` for points without one).
    pub name: String,
    /// How many points.
    pub count: usize,
    /// Sum of the points' durations in osprofiler's milliseconds: the `duration` of the
    /// report's `stats`.
    pub duration_ms: i64,
    /// Sum of the points' durations in microseconds. Nested points of the same kind are
    /// counted at each level, as in osprofiler's stats.
    pub duration_us: i64,
    /// Sum of the points' own time: each point's duration less the part covered by its
    /// children (overlapping children counted once). Over all categories this adds up to
    /// the time the trace's points spent outside any child point.
    pub self_us: i64,
}

impl Usage {
    pub(crate) fn new(name: &str) -> Usage {
        Usage {
            name: name.to_owned(),
            count: 0,
            duration_ms: 0,
            duration_us: 0,
            self_us: 0,
        }
    }
}

impl Report {
    /// Builds the report of the given events (osprofiler event objects as stored).
    ///
    /// Events may come in any order and more than once. Invalid ones are skipped and
    /// counted in [`skipped`](Self::skipped).
    pub fn from_events<I: IntoIterator<Item = Value>>(events: I) -> Report {
        let mut builder = ReportBuilder::new();
        for event in events {
            // A refused event is counted by the builder; nothing else to do with it.
            let _ = builder.push(event);
        }
        builder.finish()
    }

    /// Builds the report of events given as JSON texts, one per event, as a store holds
    /// them (`String`s are kept without a copy): the fast way in.
    ///
    /// Each text is read once, for the fields the report needs, and kept as it is, for the
    /// HTML page and [`Node::start_raw`]; no `serde_json::Value` is made unless asked for.
    /// The report is the same as [`from_events`](Self::from_events) of the parsed texts.
    /// Events may come in any order (Redis's newest first included) and more than once.
    /// Texts that are not JSON, or not valid events, are skipped and counted in
    /// [`skipped`](Self::skipped).
    ///
    /// Tens of thousands of texts are read on several threads (scoped: all have ended
    /// when this returns), as many as the machine has cores, at most four.
    pub fn from_json_texts<I, S>(texts: I) -> Report
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str> + Into<String>,
    {
        let texts = texts.into_iter();
        let mut builder = ReportBuilder::with_capacity(texts.size_hint().0);
        // Refused events are counted by the builder; nothing else to do with them.
        builder.push_texts(texts);
        builder.finish()
    }

    /// Builds the report of events given one JSON object per line; blank lines are ignored,
    /// lines that are not JSON are counted in [`skipped`](Self::skipped).
    pub fn from_json_lines(text: &str) -> Report {
        let mut builder = ReportBuilder::new();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let _ = builder.push_text(line);
        }
        builder.finish()
    }

    /// The top-level points (children of the root), by start time.
    pub fn roots(&self) -> &[Node] {
        &self.roots
    }

    /// Every point, depth first in report order, with its depth (1 for top-level points).
    pub fn iter(&self) -> Preorder<'_> {
        Preorder {
            stack: self.roots.iter().rev().map(|n| (1, n)).collect(),
        }
    }

    /// Number of points.
    pub fn len(&self) -> usize {
        self.points
    }

    /// Whether the report has no point at all.
    pub fn is_empty(&self) -> bool {
        self.points == 0
    }

    /// The first event's time, in microseconds since the Unix epoch (naive UTC, as
    /// osprofiler stores it); `None` for an empty report. Every other time is relative to it.
    pub fn origin_unix_us(&self) -> Option<i64> {
        self.origin_us
    }

    /// Total time: from the first event to the last one, in microseconds.
    pub fn duration_us(&self) -> i64 {
        self.finished_us
    }

    /// osprofiler's `finished` of the root, in milliseconds; `None` for an empty report.
    pub fn finished_ms(&self) -> Option<i64> {
        self.finished_ms
    }

    /// When the last point started, in microseconds; `None` when no start event was seen.
    pub fn last_started_us(&self) -> Option<i64> {
        self.last_started_us
    }

    /// osprofiler's `last_trace_started`: the latest *start* event, in milliseconds.
    pub fn last_started_ms(&self) -> Option<i64> {
        self.last_started_ms
    }

    /// Count and time per category (point name: `wsgi`, `db`, `rpc`, …), in order of
    /// first appearance. The same figures as osprofiler's `stats`, plus microseconds.
    pub fn by_category(&self) -> &[Usage] {
        &self.categories
    }

    /// Count and time per service, in order of first appearance.
    pub fn by_service(&self) -> &[Usage] {
        &self.services
    }

    /// The points that stopped with an error (`info.etype` in their stop event), depth
    /// first in report order.
    pub fn errors(&self) -> Vec<&Node> {
        self.iter()
            .map(|(_, n)| n)
            .filter(|n| n.is_error())
            .collect()
    }

    /// The critical path: the chain of points, from a top-level point down to a leaf, that
    /// bounds the total time.
    ///
    /// At each level it takes the child that finishes last (on a tie, the one that started
    /// first), then goes on among that child's children. The parent waits for that child
    /// whether its children ran one after another or concurrently, so this is the chain
    /// that decides when each level ends; the time between the steps is the parent's own.
    /// Empty for an empty report.
    pub fn critical_path(&self) -> Vec<&Node> {
        let mut path = Vec::new();
        let mut level = self.roots.as_slice();
        while let Some(next) = last_to_finish(level) {
            path.push(next);
            level = &next.children;
        }
        path
    }

    /// Invalid events that were ignored.
    pub fn skipped(&self) -> usize {
        self.skipped
    }

    /// Events seen more than once (same `trace_id`, same start or stop), kept once.
    pub fn duplicates(&self) -> usize {
        self.duplicates
    }

    /// Points hung from the root although their parent is in the trace: to cut a cycle of
    /// `parent_id`s, or because they nest deeper than [`MAX_DEPTH`](crate::MAX_DEPTH).
    pub fn detached(&self) -> usize {
        self.detached
    }
}

fn last_to_finish(nodes: &[Node]) -> Option<&Node> {
    // Children are sorted by start, so keeping the first maximum breaks ties by start.
    nodes
        .iter()
        .fold(None, |best: Option<&Node>, n| match best {
            Some(b) if b.finished_us >= n.finished_us => Some(b),
            _ => Some(n),
        })
}

impl<'a> IntoIterator for &'a Report {
    type Item = (usize, &'a Node);
    type IntoIter = Preorder<'a>;

    fn into_iter(self) -> Preorder<'a> {
        self.iter()
    }
}

/// Depth-first walk over a report's points; see [`Report::iter`].
#[derive(Debug, Clone)]
pub struct Preorder<'a> {
    stack: Vec<(usize, &'a Node)>,
}

impl<'a> Iterator for Preorder<'a> {
    type Item = (usize, &'a Node);

    fn next(&mut self) -> Option<(usize, &'a Node)> {
        let (depth, node) = self.stack.pop()?;
        self.stack
            .extend(node.children.iter().rev().map(|c| (depth + 1, c)));
        Some((depth, node))
    }
}

impl Node {
    fn pair(&self) -> Pair<'_> {
        Pair {
            start: self.start_event(),
            stop: self.stop_event(),
        }
    }

    pub(crate) fn start_event(&self) -> Option<&Event> {
        self.events.get(self.start as usize)?.as_ref()
    }

    pub(crate) fn stop_event(&self) -> Option<&Event> {
        self.events.get(self.stop as usize)?.as_ref()
    }

    /// The point name (category): `wsgi`, `db`, `rpc`, …
    ///
    /// The first event's name less its `-start`/`-stop` (Python cuts at the first `-`).
    pub fn name(&self) -> &str {
        self.pair().name()
    }

    /// This point's id.
    pub fn trace_id(&self) -> &str {
        self.pair().trace_id()
    }

    /// The parent point's id (the trace's `base_id` for a first-level point).
    pub fn parent_id(&self) -> Option<&str> {
        self.pair().parent_id()
    }

    /// The project the service belongs to, as the notifier recorded it.
    pub fn project(&self) -> Option<&str> {
        self.pair().project()
    }

    /// The service that recorded the point.
    pub fn service(&self) -> Option<&str> {
        self.pair().service()
    }

    /// The host that recorded the point (`info.host`).
    pub fn host(&self) -> Option<&str> {
        self.pair().host()
    }

    /// Start, in microseconds from the trace's first event. A point whose start event is
    /// missing starts when it stops.
    pub fn started_us(&self) -> i64 {
        self.started_us
    }

    /// Stop, in microseconds from the trace's first event. A point whose stop event is
    /// missing stops when it starts.
    pub fn finished_us(&self) -> i64 {
        self.finished_us
    }

    /// Duration in microseconds.
    pub fn duration_us(&self) -> i64 {
        self.finished_us - self.started_us
    }

    /// osprofiler's `started`: integer milliseconds, truncated.
    pub fn started_ms(&self) -> i64 {
        self.started_ms
    }

    /// osprofiler's `finished`: integer milliseconds, truncated.
    pub fn finished_ms(&self) -> i64 {
        self.finished_ms
    }

    /// osprofiler's duration, `finished - started` in (truncated) milliseconds; it may
    /// differ by one from the microseconds rounded down.
    pub fn duration_ms(&self) -> i64 {
        self.finished_ms - self.started_ms
    }

    /// The error type the point stopped with (`info.etype` of the stop event; one that
    /// is not a string as its JSON text).
    pub fn exception(&self) -> Option<&str> {
        self.pair().exception()
    }

    /// Whether the point stopped with an error.
    pub fn is_error(&self) -> bool {
        self.exception().is_some()
    }

    /// The start event as stored, if it was found.
    ///
    /// Parsed from [`start_raw`](Self::start_raw) on first use, and kept (events given
    /// as `Value`s are kept as they are).
    pub fn start_payload(&self) -> Option<&Value> {
        self.start_event().map(Event::value)
    }

    /// The stop event as stored, if it was found; see [`start_payload`](Self::start_payload).
    pub fn stop_payload(&self) -> Option<&Value> {
        self.stop_event().map(Event::value)
    }

    /// The start event's JSON text as stored (less surrounding whitespace), if it was
    /// found; for an event given as a `Value`, its compact JSON.
    pub fn start_raw(&self) -> Option<&str> {
        self.start_event().map(Event::text)
    }

    /// The stop event's JSON text; see [`start_raw`](Self::start_raw).
    pub fn stop_raw(&self) -> Option<&str> {
        self.stop_event().map(Event::text)
    }

    /// The traced function's name (`info.function.name` of the start event), if any.
    pub fn function_name(&self) -> Option<&str> {
        self.start_event()?.function_name()
    }

    /// `info.request` of the start event, when it is an object: its `method` and `path`
    /// as text (`""` when missing or null, JSON for other values).
    pub(crate) fn request(&self) -> Option<(&str, &str)> {
        self.start_event()?.request()
    }

    /// The trace's `base_id` as this point's events give it.
    pub(crate) fn base_id(&self) -> Option<&str> {
        self.pair().base_id()
    }

    /// The points this one called, by start time.
    pub fn children(&self) -> &[Node] {
        &self.children
    }
}
