//! From stored events to the tree of points.

use std::collections::HashMap;

use serde_json::Value;

use crate::report::{Node, Report, Usage};
use crate::time::{parse_timestamp, python_msec};

/// Nesting deeper than this is not kept: such a point hangs from the root instead.
///
/// Real traces nest a few dozen levels; the cap keeps every recursive walk over the tree
/// (ours, and `serde_json`'s when it writes or drops the report JSON) well within a
/// thread's stack whatever the events say. Python's own report fails with RecursionError
/// on far shallower trees.
pub const MAX_DEPTH: usize = 512;

/// Why [`ReportBuilder::push`] refused an event. Refused events are counted by
/// [`Report::skipped`] and otherwise ignored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EventError {
    /// A line of [`Report::from_json_lines`] is not JSON.
    #[error("not valid JSON: {0}")]
    Json(String),
    /// The event is not a JSON object.
    #[error("an event must be a JSON object")]
    NotAnObject,
    /// A required field is missing or is not a string.
    #[error("missing or non-string field `{0}`")]
    Missing(&'static str),
    /// The name does not end in `-start` or `-stop`.
    #[error("event name {0:?} ends neither in \"-start\" nor in \"-stop\"")]
    BadName(String),
    /// The timestamp is not `%Y-%m-%dT%H:%M:%S.%f` or not a real date.
    #[error("timestamp {0:?} is not of the form %Y-%m-%dT%H:%M:%S.%f")]
    BadTimestamp(String),
}

/// Collects events one at a time, for readers that get them in batches.
///
/// [`Report::from_events`] is this builder fed from an iterator.
#[derive(Debug, Default, Clone)]
pub struct ReportBuilder {
    /// trace_id → [start, stop].
    points: HashMap<String, [Option<Half>; 2]>,
    skipped: usize,
    duplicates: usize,
}

/// One of the two events of a point.
#[derive(Debug, Clone)]
struct Half {
    /// Microseconds since the epoch.
    ts: i64,
    event: Value,
}

const START: usize = 0;
const STOP: usize = 1;

impl ReportBuilder {
    /// An empty builder.
    pub fn new() -> ReportBuilder {
        ReportBuilder::default()
    }

    /// Adds one event.
    ///
    /// An event seen again (same `trace_id`, same start or stop) is counted as a duplicate
    /// and kept once. Should two such events differ, the earliest start and the latest stop
    /// win (then the smaller JSON text), so that the order of arrival never matters.
    ///
    /// # Errors
    ///
    /// An event that is not an object, lacks a string `name`, `trace_id` or `timestamp`,
    /// or whose name or timestamp is malformed; it is then counted in
    /// [`Report::skipped`].
    pub fn push(&mut self, event: Value) -> Result<(), EventError> {
        let outcome = self.insert(event);
        if outcome.is_err() {
            self.skipped += 1;
        }
        outcome
    }

    /// Adds one event given as JSON text, as [`push`](Self::push) does.
    ///
    /// # Errors
    ///
    /// Text that is not JSON, and every error of [`push`](Self::push).
    pub fn push_json(&mut self, text: &str) -> Result<(), EventError> {
        match serde_json::from_str(text) {
            Ok(event) => self.push(event),
            Err(e) => {
                self.skipped += 1;
                Err(EventError::Json(e.to_string()))
            }
        }
    }

    fn insert(&mut self, event: Value) -> Result<(), EventError> {
        let Value::Object(fields) = &event else {
            return Err(EventError::NotAnObject);
        };
        let text = |key: &'static str| {
            fields
                .get(key)
                .and_then(Value::as_str)
                .ok_or(EventError::Missing(key))
        };
        let name = text("name")?;
        let phase = if name.ends_with("-start") {
            START
        } else if name.ends_with("-stop") {
            STOP
        } else {
            return Err(EventError::BadName(name.to_owned()));
        };
        let trace_id = text("trace_id")?.to_owned();
        let stamp = text("timestamp")?;
        let ts = parse_timestamp(stamp).ok_or_else(|| EventError::BadTimestamp(stamp.into()))?;

        let new = Half { ts, event };
        let slot = &mut self.points.entry(trace_id).or_default()[phase];
        match slot {
            None => *slot = Some(new),
            Some(old) => {
                self.duplicates += 1;
                if replaces(phase, &new, old) {
                    *old = new;
                }
            }
        }
        Ok(())
    }

    /// Builds the report.
    pub fn finish(self) -> Report {
        build(self)
    }
}

/// Whether `new` should replace `old` for the same point and phase.
fn replaces(phase: usize, new: &Half, old: &Half) -> bool {
    match new.ts.cmp(&old.ts) {
        std::cmp::Ordering::Less => phase == START,
        std::cmp::Ordering::Greater => phase == STOP,
        std::cmp::Ordering::Equal if new.event == old.event => false,
        std::cmp::Ordering::Equal => {
            // Any fixed rule will do; the texts depend only on the events themselves.
            let (new_text, old_text) = (new.event.to_string(), old.event.to_string());
            new_text < old_text
        }
    }
}

fn str_of<'a>(event: Option<&'a Value>, key: &str) -> Option<&'a str> {
    event?.get(key)?.as_str()
}

fn host_of(event: Option<&Value>) -> Option<&str> {
    event?.get("info")?.get("host")?.as_str()
}

/// osprofiler fills `exception` from the stop event's `info.etype` ("None" without one).
fn exception_of(stop: &Value) -> Option<String> {
    match stop.get("info")?.get("etype")? {
        Value::Null => None,
        Value::String(s) if s == "None" => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// The point's name: the event name less its `-start`/`-stop`.
///
/// Python keeps `name.split("-")[0]`, which cuts `http-client-start` to `http`; we keep
/// the whole name, which is what the writer meant (same result for names without `-`).
fn point_name(event: &Value) -> String {
    let name = str_of(Some(event), "name").unwrap_or_default();
    let base = name
        .strip_suffix("-start")
        .or_else(|| name.strip_suffix("-stop"))
        .unwrap_or(name);
    base.to_owned()
}

/// A point before it has its children.
fn make_node(trace_id: String, start: Option<Half>, stop: Option<Half>, origin: i64) -> Node {
    let (start_ts, start) = start.map(|h| (h.ts, h.event)).unzip();
    let (stop_ts, stop) = stop.map(|h| (h.ts, h.event)).unzip();
    // osprofiler: "we are not able to guarantee that the backend consumed all messages",
    // so a point missing one half lasts zero time at the half it has.
    let started_abs = start_ts.or(stop_ts).unwrap_or(origin);
    let finished_abs = stop_ts.or(start_ts).unwrap_or(origin);
    // Identity fields come from the start event, else from the stop event.
    let (first, second) = match (&start, &stop) {
        (Some(s), other) => (Some(s), other.as_ref()),
        (None, other) => (other.as_ref(), None),
    };
    let pick = |key: &str| {
        str_of(first, key)
            .or(str_of(second, key))
            .map(str::to_owned)
    };
    Node {
        name: first.map(point_name).unwrap_or_default(),
        parent_id: pick("parent_id"),
        project: pick("project"),
        service: pick("service"),
        host: host_of(first).or(host_of(second)).map(str::to_owned),
        trace_id,
        started_us: started_abs - origin,
        finished_us: finished_abs - origin,
        started_ms: python_msec(started_abs - origin),
        finished_ms: python_msec(finished_abs - origin),
        exception: stop.as_ref().and_then(exception_of),
        start,
        stop,
        children: Vec::new(),
    }
}

fn build(builder: ReportBuilder) -> Report {
    let ReportBuilder {
        points,
        skipped,
        duplicates,
    } = builder;

    let mut origin: Option<i64> = None;
    let mut end: Option<i64> = None;
    let mut last_start: Option<i64> = None;
    for halves in points.values() {
        for (phase, half) in halves.iter().enumerate() {
            let Some(half) = half else { continue };
            origin = Some(origin.map_or(half.ts, |o| o.min(half.ts)));
            end = Some(end.map_or(half.ts, |e| e.max(half.ts)));
            if phase == START {
                last_start = Some(last_start.map_or(half.ts, |l| l.max(half.ts)));
            }
        }
    }
    let base = origin.unwrap_or(0);

    // Global order by start (then id, so ties do not depend on arrival): children lists
    // filled in this order come out sorted, and stats list names as they first appear.
    let mut nodes: Vec<Node> = points
        .into_iter()
        .map(|(id, [start, stop])| make_node(id, start, stop, base))
        .collect();
    nodes.sort_by(|a, b| (a.started_us, &a.trace_id).cmp(&(b.started_us, &b.trace_id)));

    let placement = place(&nodes);
    let (categories, services) = usage(&nodes, &placement.kids);

    // Move children into parents, deepest first: reversed preorder has every child
    // before its parent.
    let mut slots: Vec<Option<Node>> = nodes.into_iter().map(Some).collect();
    for &n in placement.preorder.iter().rev() {
        let children: Vec<Node> = placement.kids[n]
            .iter()
            .filter_map(|&c| slots.get_mut(c).and_then(Option::take))
            .collect();
        if let Some(Some(node)) = slots.get_mut(n) {
            node.children = children;
        }
    }
    let roots = placement
        .roots
        .iter()
        .filter_map(|&r| slots.get_mut(r).and_then(Option::take))
        .collect();

    Report {
        roots,
        origin_us: origin,
        finished_us: end.map_or(0, |e| e - base),
        finished_ms: end.map(|e| python_msec(e - base)),
        last_started_us: last_start.map(|l| l - base),
        last_started_ms: last_start.map(|l| python_msec(l - base)),
        points: placement.preorder.len(),
        categories,
        services,
        skipped,
        duplicates,
        detached: placement.detached,
    }
}

/// Where each point goes, by index into the sorted nodes.
struct Placement {
    roots: Vec<usize>,
    kids: Vec<Vec<usize>>,
    preorder: Vec<usize>,
    /// Points hung from the root although their parent is known (cycle or too deep).
    detached: usize,
}

/// Hangs each point under its parent by `parent_id`, and nothing else: concurrent
/// siblings stay siblings whatever their times.
///
/// A point whose parent is not in the trace hangs from the root, as in osprofiler. Two
/// things Python gets wrong are handled: a cycle of `parent_id`s, a point that is its own
/// parent included (Python silently loses all those points), is cut at its earliest point,
/// which then hangs from the root; and a point nested deeper than [`MAX_DEPTH`] hangs from
/// the root with its subtree.
fn place(nodes: &[Node]) -> Placement {
    // Every index below comes from `0..nodes.len()`, so indexing cannot fail.
    let index: HashMap<&str, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.trace_id.as_str(), i))
        .collect();
    // A point that is its own parent is a cycle of one: cut at once.
    let mut own_parents = 0;
    let parent: Vec<Option<usize>> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let p = *index.get(n.parent_id.as_deref()?)?;
            own_parents += usize::from(p == i);
            (p != i).then_some(p)
        })
        .collect();
    let mut tree_kids = vec![Vec::new(); nodes.len()];
    let mut roots = Vec::new();
    for (i, p) in parent.iter().enumerate() {
        match p {
            Some(p) => tree_kids[*p].push(i),
            None => roots.push(i),
        }
    }

    let mut placement = Placement {
        roots: Vec::new(),
        kids: vec![Vec::new(); nodes.len()],
        preorder: Vec::with_capacity(nodes.len()),
        detached: own_parents,
    };
    let mut visited = vec![false; nodes.len()];
    let mut stack: Vec<(usize, usize)> = Vec::new();
    let mut walk = |top: usize, placement: &mut Placement, visited: &mut Vec<bool>| {
        placement.roots.push(top);
        visited[top] = true;
        stack.push((top, 1));
        while let Some((n, depth)) = stack.pop() {
            placement.preorder.push(n);
            // Pushed in reverse so that they pop, and enter the preorder, in order.
            for &c in tree_kids[n].iter().rev() {
                if visited[c] {
                    continue; // the edge that closes a cycle
                }
                visited[c] = true;
                if depth >= MAX_DEPTH {
                    placement.roots.push(c);
                    placement.detached += 1;
                    stack.push((c, 1));
                } else {
                    placement.kids[n].push(c);
                    stack.push((c, depth + 1));
                }
            }
            placement.kids[n].reverse();
        }
    };
    for &r in &roots {
        walk(r, &mut placement, &mut visited);
    }
    // What is left sits on parent cycles (each unvisited point's parent is unvisited too).
    // Follow parents from the earliest such point to reach its cycle, then cut the cycle at
    // its earliest member.
    let mut cursor = 0;
    while let Some(first) = (cursor..nodes.len()).find(|&i| !visited[i]) {
        cursor = first;
        let mut path: HashMap<usize, usize> = HashMap::from([(first, 0)]);
        let mut order = vec![first];
        let mut at = first;
        let cut = loop {
            let Some(p) = parent[at] else { break at };
            if let Some(&pos) = path.get(&p) {
                break order
                    .get(pos..)
                    .and_then(|c| c.iter().copied().min())
                    .unwrap_or(p);
            }
            path.insert(p, order.len());
            order.push(p);
            at = p;
        };
        placement.detached += 1;
        walk(cut, &mut placement, &mut visited);
    }
    placement.roots.sort_unstable();
    placement
}

/// Per-category (point name) and per-service figures, in order of first appearance.
fn usage(nodes: &[Node], kids: &[Vec<usize>]) -> (Vec<Usage>, Vec<Usage>) {
    let mut categories = Tally::default();
    let mut services = Tally::default();
    for (i, node) in nodes.iter().enumerate() {
        let children = kids.get(i).map_or(&[][..], Vec::as_slice);
        let self_us = self_time(node, children.iter().filter_map(|&c| nodes.get(c)));
        categories.add(&node.name, node, self_us);
        services.add(node.service.as_deref().unwrap_or_default(), node, self_us);
    }
    (categories.list, services.list)
}

#[derive(Default)]
struct Tally {
    list: Vec<Usage>,
    index: HashMap<String, usize>,
}

impl Tally {
    fn add(&mut self, key: &str, node: &Node, self_us: i64) {
        let at = match self.index.get(key) {
            Some(&at) => at,
            None => {
                self.index.insert(key.to_owned(), self.list.len());
                self.list.push(Usage::new(key));
                self.list.len() - 1
            }
        };
        if let Some(entry) = self.list.get_mut(at) {
            entry.count += 1;
            entry.duration_ms += node.duration_ms();
            entry.duration_us += node.duration_us();
            entry.self_us += self_us;
        }
    }
}

/// A point's time not covered by any of its children (overlapping children counted once).
fn self_time<'a>(node: &Node, children: impl Iterator<Item = &'a Node>) -> i64 {
    let (lo, hi) = (node.started_us, node.finished_us);
    if hi <= lo {
        return 0;
    }
    let mut spans: Vec<(i64, i64)> = children
        .map(|c| (c.started_us.clamp(lo, hi), c.finished_us.clamp(lo, hi)))
        .filter(|(s, f)| f > s)
        .collect();
    spans.sort_unstable();
    let mut covered = 0;
    let mut reach = lo;
    for (s, f) in spans {
        let s = s.max(reach);
        if f > s {
            covered += f - s;
            reach = f;
        }
    }
    hi - lo - covered
}
