//! From stored events to the tree of points.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use crate::event::{Event, START, STOP, point_name};
use crate::hash::{Names, StrHasher};
use crate::report::{Node, Report, Usage};
use crate::time::python_msec;

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
    /// The event's text is 2 GiB or more, or the trace has 4 billion points already.
    #[error("event or trace too large for a report")]
    TooLarge,
}

/// Collects events one at a time, for readers that get them in batches.
///
/// [`Report::from_events`] and [`Report::from_json_texts`] are this builder fed from an
/// iterator.
#[derive(Debug, Default, Clone)]
pub struct ReportBuilder {
    /// Events in order of arrival, duplicates included until the build (which takes them
    /// out one by one).
    events: Vec<Option<Event>>,
    /// What the build needs of each event (same index), taken while its text is at hand:
    /// the build then reads compact arrays in tight loops, and goes back to an event's
    /// text (scattered in memory: a cache miss each time) only to break ties.
    meta: Vec<Meta>,
    /// Each event's `trace_id` then `parent_id`, one after the other.
    ids: String,
    categories: Names,
    services: Names,
    hosts: Names,
    projects: Names,
    hasher: StrHasher,
    skipped: usize,
}

#[derive(Debug, Clone, Copy)]
struct Meta {
    trace_hash: u64,
    parent_hash: u64,
    /// Microseconds since the epoch.
    ts: i64,
    /// Where the `trace_id` is in `ids`, followed by the `parent_id`.
    ids_at: u32,
    trace_len: u32,
    /// `NO_ID`: no `parent_id` (or not a string).
    parent_len: u32,
    text_len: u32,
    /// Numbers of the point name, service, host and project (`NO_ID`: none).
    category: u32,
    service: u32,
    host: u32,
    project: u32,
    phase: u8,
}

/// Events per reading thread below which [`ReportBuilder::push_texts`] reads on this
/// thread alone: a thread's start (tens of µs) is then more than half of what it saves.
const PARALLEL_FROM: usize = 4096;

/// Most reading threads [`ReportBuilder::push_texts`] starts, whatever the machine.
const MAX_READERS: usize = 4;

/// `u32::MAX`: no such string (no host, no project), no such event.
pub(crate) const NO_ID: u32 = u32::MAX;

impl ReportBuilder {
    /// An empty builder.
    pub fn new() -> ReportBuilder {
        ReportBuilder::default()
    }

    /// An empty builder with room for about this many events (two per point).
    pub fn with_capacity(events: usize) -> ReportBuilder {
        ReportBuilder {
            events: Vec::with_capacity(events),
            meta: Vec::with_capacity(events),
            // Two UUIDs per event.
            ids: String::with_capacity(events.saturating_mul(72)),
            ..ReportBuilder::default()
        }
    }

    /// Adds one event.
    ///
    /// An event seen again (same `trace_id`, same start or stop) is counted as a duplicate
    /// and kept once. Should two such events differ, the earliest start and the latest stop
    /// win (then the smaller JSON text), so that the order of arrival never matters.
    ///
    /// The event is kept as its compact JSON text (and as the `Value` itself, for
    /// [`Node::start_payload`]); [`push_text`](Self::push_text) is faster when the event is
    /// text in the first place.
    ///
    /// # Errors
    ///
    /// An event that is not an object, lacks a string `name`, `trace_id` or `timestamp`,
    /// or whose name or timestamp is malformed; it is then counted in
    /// [`Report::skipped`].
    pub fn push(&mut self, event: Value) -> Result<(), EventError> {
        let parsed = Event::from_value(event);
        self.add(parsed)
    }

    /// Adds one event given as its JSON text, as a store holds it (`&str`, `String`,
    /// `Box<str>`, `Cow<str>`…), as [`push`](Self::push) does.
    ///
    /// The text is read once, for the few fields the report needs, and kept as it is: the
    /// HTML page and [`Node::start_raw`] give it back unchanged (less surrounding
    /// whitespace); an owned `String` is kept without a copy. A `serde_json::Value` of it
    /// is made only if asked for ([`Node::start_payload`], [`Report::to_json`]).
    ///
    /// # Errors
    ///
    /// Text that is not JSON (exactly what `serde_json::from_str::<Value>` refuses), and
    /// every error of [`push`](Self::push).
    pub fn push_text<S: AsRef<str> + Into<String>>(&mut self, text: S) -> Result<(), EventError> {
        let parsed = Event::parse(text);
        self.add(parsed)
    }

    /// Adds one event given as JSON text: [`push_text`](Self::push_text) of a `&str`.
    ///
    /// # Errors
    ///
    /// As [`push_text`](Self::push_text).
    pub fn push_json(&mut self, text: &str) -> Result<(), EventError> {
        self.push_text(text)
    }

    /// Adds many texts, reading them on several threads when there are enough of them
    /// to be worth it: reading (JSON parsing) is most of a big report's build and needs
    /// nothing shared, while adding must be in order and stays on this thread. The result
    /// is that of [`push_text`](Self::push_text) of each in turn.
    pub(crate) fn push_texts<I, S>(&mut self, texts: I)
    where
        I: Iterator<Item = S>,
        S: AsRef<str> + Into<String>,
    {
        let threads = std::thread::available_parallelism()
            .map_or(1, usize::from)
            .min(MAX_READERS)
            .min(texts.size_hint().0 / PARALLEL_FROM)
            .max(1);
        if threads == 1 {
            for text in texts {
                let _ = self.push_text(text);
            }
            return;
        }
        // Owned, so the readers can take the texts they read.
        let mut texts: Vec<String> = texts.map(Into::into).collect();
        // This thread also adds what it reads (and then everything else): it takes the
        // first part, a smaller share than the others.
        let others = (texts.len() * 3 / 5).div_ceil(threads - 1).max(1);
        let first = texts.len().saturating_sub(others * (threads - 1));
        let (mine, rest) = texts.split_at_mut(first);
        // Per other part: what its reader read; `None` when no thread could be started
        // (its texts are still in place) or the reader panicked (its texts were taken).
        let read: Vec<Option<Vec<_>>> = std::thread::scope(|scope| {
            let readers: Vec<_> = rest
                .chunks_mut(others)
                .map(|part| {
                    std::thread::Builder::new()
                        .name("osprofiler-report".into())
                        .spawn_scoped(scope, || {
                            let taken = part.iter_mut().map(std::mem::take);
                            taken.map(Event::parse).collect::<Vec<_>>()
                        })
                        .ok()
                })
                .collect();
            for text in mine.iter_mut() {
                let _ = self.push_text(std::mem::take(text));
            }
            readers
                .into_iter()
                .map(|r| r.and_then(|r| r.join().ok()))
                .collect()
        });
        for (parsed, part) in read.into_iter().zip(rest.chunks_mut(others)) {
            match parsed {
                Some(parsed) => {
                    for p in parsed {
                        let _ = self.add(p);
                    }
                }
                // Read here: a refused thread only loses the parallelism. Reading does
                // not panic; should it, that part's (empty) texts are counted skipped
                // rather than the panic carried into the caller.
                None => {
                    for text in part.iter_mut() {
                        let _ = self.push_text(std::mem::take(text));
                    }
                }
            }
        }
    }

    fn add(&mut self, parsed: Result<(Event, usize), EventError>) -> Result<(), EventError> {
        let outcome = parsed.and_then(|(event, phase)| self.insert(event, phase));
        if outcome.is_err() {
            self.skipped += 1;
        }
        outcome
    }

    fn insert(&mut self, event: Event, phase: usize) -> Result<(), EventError> {
        if self.events.len() >= STOP_BIT as usize {
            return Err(EventError::TooLarge);
        }
        let hasher = &self.hasher;
        let number = |names: &mut Names, name: Option<&str>| match name {
            Some(name) => names.id(hasher, name).ok_or(EventError::TooLarge),
            None => Ok(NO_ID),
        };
        let category = number(&mut self.categories, Some(point_name(event.name())))?;
        let service = number(&mut self.services, event.service())?;
        let host = number(&mut self.hosts, event.host())?;
        let project = number(&mut self.projects, event.project())?;
        let (trace_id, parent_id) = (event.trace_id(), event.parent_id());
        let ids_at = u32::try_from(self.ids.len()).map_err(|_| EventError::TooLarge)?;
        let ids_len = trace_id.len().saturating_add(parent_id.map_or(0, str::len));
        if ids_len > (u32::MAX - ids_at) as usize {
            return Err(EventError::TooLarge);
        }
        self.ids.push_str(trace_id);
        self.ids.push_str(parent_id.unwrap_or_default());
        self.meta.push(Meta {
            trace_hash: self.hasher.hash(trace_id),
            parent_hash: parent_id.map_or(0, |p| self.hasher.hash(p)),
            ts: event.ts,
            ids_at,
            trace_len: trace_id.len() as u32,
            parent_len: parent_id.map_or(NO_ID, |p| p.len() as u32),
            text_len: event.text().len() as u32,
            category,
            service,
            host,
            project,
            phase: phase as u8,
        });
        self.events.push(Some(event));
        Ok(())
    }

    /// Builds the report.
    pub fn finish(self) -> Report {
        build(self)
    }
}

/// A point's times, relative to the trace's first event.
#[derive(Clone, Copy, Default)]
struct Times {
    started_us: i64,
    finished_us: i64,
}

/// Where a string is in the builder's `ids`.
#[derive(Clone, Copy, Default)]
struct IdAt {
    at: u32,
    len: u32,
}

/// What the build works with for each point.
#[derive(Clone, Copy, Default)]
struct Point {
    /// Indices of the start and stop events (`NO_ID`: missing).
    events: [u32; 2],
    trace_hash: u64,
    trace_id: IdAt,
    /// Absolute start (the sort key) and stop, in microseconds since the epoch.
    start: i64,
    stop: i64,
    times: Times,
    /// Report numbers, as in [`Node`].
    category: u32,
    service: u32,
    host: u32,
    project: u32,
}

/// Numbers given anew, in order of first use.
struct Renumber {
    /// Old number → new one (`NO_ID`: not used yet); the last slot stands for `NO_ID`.
    new: Vec<u32>,
    /// New number → old one.
    old: Vec<u32>,
}

impl Renumber {
    fn new(names: usize) -> Renumber {
        Renumber {
            new: vec![NO_ID; names + 1],
            old: Vec::new(),
        }
    }

    fn number(&mut self, old: u32) -> u32 {
        let at = if old == NO_ID {
            self.new.len() - 1
        } else {
            old as usize
        };
        match self.new.get_mut(at) {
            Some(slot) if *slot == NO_ID => {
                *slot = self.old.len() as u32;
                self.old.push(old);
                *slot
            }
            Some(slot) => *slot,
            None => NO_ID,
        }
    }
}

/// The builder's compact view of its events.
struct Events<'a> {
    events: &'a [Option<Event>],
    meta: &'a [Meta],
    ids: &'a str,
}

impl Events<'_> {
    fn meta(&self, event: u32) -> Option<&Meta> {
        self.meta.get(event as usize)
    }

    fn id(&self, at: IdAt) -> &str {
        let from = at.at as usize;
        self.ids
            .get(from..from + at.len as usize)
            .unwrap_or_default()
    }

    /// Whether event `new` should be kept rather than event `old`, for the same point and
    /// phase: the earliest start and the latest stop, then the smaller compact JSON text
    /// (as `serde_json` writes the event: the same whether it came as text, in any
    /// spacing, or as a `Value`), then the smaller text as stored. Any fixed rule will do:
    /// the result must not depend on the order of arrival.
    fn better(&self, phase: usize, new: u32, old: u32) -> bool {
        let (Some(n), Some(o)) = (self.meta(new), self.meta(old)) else {
            return false;
        };
        match n.ts.cmp(&o.ts) {
            std::cmp::Ordering::Less => phase == START,
            std::cmp::Ordering::Greater => phase == STOP,
            std::cmp::Ordering::Equal => {
                let event = |e: u32| self.events.get(e as usize).and_then(Option::as_ref);
                let (Some(n), Some(o)) = (event(new), event(old)) else {
                    return false;
                };
                if n.text() == o.text() {
                    return false;
                }
                // Rare (a conflicting duplicate): the `Value`s may be made.
                let compact = |e: &Event| match e.value_if_made() {
                    Some(v) => v.to_string(),
                    None => e.parse_value().to_string(),
                };
                (compact(n), n.text()) < (compact(o), o.text())
            }
        }
    }
}

/// Marks a start event in [`group`]'s sort keys.
const STOP_BIT: u32 = 1 << 31;

/// Groups the events into points by `trace_id`: sorted by its hash, so that a point's
/// events come together; a run of one hash is split by the ids themselves. Points come
/// out in hash order. Also returns the duplicates that lost.
fn group(events: &Events<'_>) -> (Vec<Point>, Vec<u32>) {
    // Everything grouping reads is in the keys (event numbers stay below `STOP_BIT`), so
    // that it only goes to the events' metadata for duplicates.
    let mut by_hash: Vec<(u64, u32, IdAt)> = events
        .meta
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let phase = if usize::from(m.phase) == STOP {
                STOP_BIT
            } else {
                0
            };
            let id = IdAt {
                at: m.ids_at,
                len: m.trace_len,
            };
            (m.trace_hash, i as u32 | phase, id)
        })
        .collect();
    by_hash.sort_unstable_by_key(|k| (k.0, k.1));
    let mut points = Vec::with_capacity(by_hash.len() / 2 + 1);
    let mut losers = Vec::new();
    let mut rest: Vec<(u32, IdAt)> = Vec::new();
    for run in by_hash.chunk_by(|a, b| a.0 == b.0) {
        let hash = run.first().map_or(0, |r| r.0);
        rest.clear();
        rest.extend(run.iter().map(|r| (r.1, r.2)));
        // Nearly always one id per run: one pass.
        while let Some(&(_, id_at)) = rest.first() {
            let id = events.id(id_at);
            let mut halves = [NO_ID; 2];
            rest.retain(|&(key, at)| {
                if events.id(at) != id {
                    return true;
                }
                let (e, phase) = (key & !STOP_BIT, usize::from(key & STOP_BIT != 0));
                if let Some(kept) = halves.get_mut(phase) {
                    if *kept == NO_ID {
                        *kept = e;
                    } else if events.better(phase, e, *kept) {
                        losers.push(std::mem::replace(kept, e));
                    } else {
                        losers.push(e);
                    }
                }
                false
            });
            points.push(Point {
                events: halves,
                trace_hash: hash,
                trace_id: id_at,
                ..Point::default()
            });
        }
    }
    (points, losers)
}

fn build(builder: ReportBuilder) -> Report {
    let ReportBuilder {
        mut events,
        meta,
        ids,
        categories,
        services,
        hosts: _,
        projects: _,
        hasher,
        skipped,
    } = builder;
    let view = Events {
        events: &events,
        meta: &meta,
        ids: &ids,
    };
    let (mut data, losers) = group(&view);

    // Each point's times and strings, and what it says of its parent, in one pass: a point
    // missing one half lasts zero time at the half it has (osprofiler: "we are not able to
    // guarantee that the backend consumed all messages"); identity fields come from the
    // start event, else from the stop event.
    let mut origin: Option<i64> = None;
    let mut end: Option<i64> = None;
    let mut last_start: Option<i64> = None;
    let mut text_bytes = 0;
    // (hash of the parent_id, point, where the parent_id is)
    let mut wanted: Vec<(u64, u32, IdAt)> = Vec::with_capacity(data.len());
    for (i, point) in data.iter_mut().enumerate() {
        let [start, stop] = point.events;
        let (start, stop) = (view.meta(start), view.meta(stop));
        for m in [start, stop].into_iter().flatten() {
            origin = Some(origin.map_or(m.ts, |o| o.min(m.ts)));
            end = Some(end.map_or(m.ts, |e| e.max(m.ts)));
            text_bytes += m.text_len as usize;
        }
        if let Some(m) = start {
            last_start = Some(last_start.map_or(m.ts, |l| l.max(m.ts)));
        }
        let first = start.or(stop);
        let second = start.and(stop);
        point.start = first.map_or(0, |m| m.ts);
        point.stop = stop.or(start).map_or(0, |m| m.ts);
        let pick = |field: fn(&Meta) -> u32| {
            [first, second]
                .into_iter()
                .flatten()
                .map(field)
                .find(|&id| id != NO_ID)
                .unwrap_or(NO_ID)
        };
        point.category = first.map_or(NO_ID, |m| m.category);
        point.service = pick(|m| m.service);
        point.host = pick(|m| m.host);
        point.project = pick(|m| m.project);
        let with_parent = [first, second]
            .into_iter()
            .flatten()
            .find(|m| m.parent_len != NO_ID);
        if let Some(m) = with_parent {
            let at = IdAt {
                at: m.ids_at + m.trace_len,
                len: m.parent_len,
            };
            wanted.push((m.parent_hash, i as u32, at));
        }
    }
    let base = origin.unwrap_or(0);
    for point in &mut data {
        point.times = Times {
            started_us: point.start - base,
            finished_us: point.stop - base,
        };
    }

    // Each point's parent by `parent_id`: the parent ids sorted by hash, walked along the
    // points (in hash order already).
    wanted.sort_unstable_by_key(|w| (w.0, w.1));
    let mut parent_point: Vec<Option<u32>> = vec![None; data.len()];
    let mut at = 0;
    for &(hash, child, parent_id) in &wanted {
        while data.get(at).is_some_and(|p| p.trace_hash < hash) {
            at += 1;
        }
        let parent_id = view.id(parent_id);
        let found = data
            .get(at..)
            .unwrap_or_default()
            .iter()
            .take_while(|p| p.trace_hash == hash)
            .position(|p| view.id(p.trace_id) == parent_id);
        if let (Some(slot), Some(found)) = (parent_point.get_mut(child as usize), found) {
            *slot = Some((at + found) as u32);
        }
    }

    // Global order by start (then id, so ties do not depend on arrival): children lists
    // filled in this order come out sorted, and stats list names as they first appear.
    // Points are sorted as (start, index) pairs; ids are only compared on ties.
    let mut order: Vec<(i64, u32)> = data
        .iter()
        .enumerate()
        .map(|(i, p)| (p.start, i as u32))
        .collect();
    let id_of = |i: u32| data.get(i as usize).map_or("", |p| view.id(p.trace_id));
    order.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| id_of(a.1).cmp(id_of(b.1))));
    let mut rank = vec![0_usize; data.len()];
    for (position, &(_, i)) in order.iter().enumerate() {
        if let Some(r) = rank.get_mut(i as usize) {
            *r = position;
        }
    }
    let mut sorted: Vec<Point> = order
        .iter()
        .filter_map(|&(_, i)| data.get(i as usize).copied())
        .collect();

    // Categories and services numbered by first appearance in that order; a point without
    // a service counts under "", as one whose service is "".
    let mut category_numbers = Renumber::new(categories.len());
    let mut service_numbers = Renumber::new(services.len());
    let empty_service = services.find(&hasher, "").unwrap_or(NO_ID);
    let mut parent: Vec<Option<usize>> = Vec::with_capacity(order.len());
    let mut own_parents = 0;
    for (position, (point, &(_, i))) in sorted.iter_mut().zip(&order).enumerate() {
        let found = parent_point
            .get(i as usize)
            .copied()
            .flatten()
            .and_then(|p| rank.get(p as usize).copied());
        // A point that is its own parent is a cycle of one: cut at once.
        own_parents += usize::from(found == Some(position));
        parent.push(found.filter(|&p| p != position));
        point.category = category_numbers.number(point.category);
        let service = match point.service {
            NO_ID => empty_service,
            s => s,
        };
        point.service = service_numbers.number(service);
    }
    let usage_of = |names: &Names, numbers: &Renumber| -> Vec<Usage> {
        numbers
            .old
            .iter()
            .map(|&old| Usage::new(if old == NO_ID { "" } else { names.get(old) }))
            .collect()
    };
    let category_names = usage_of(&categories, &category_numbers);
    let service_names = usage_of(&services, &service_numbers);
    drop((data, order, rank, parent_point, wanted, meta, ids));

    let placement = place(&parent, own_parents);
    let kids = Children::from_parents(placement.parent.iter().copied());
    let (categories, services) = usage(&sorted, &kids, category_names, service_names);

    // The events stay where they are (moving them into the tree's order would make
    // walking it faster, but costs the build more); the duplicates that lost are dropped.
    let duplicates = losers.len();
    for loser in losers {
        if let Some(event) = events.get_mut(loser as usize) {
            *event = None;
        }
    }

    // The nodes, each made once where it stays: deepest first (reversed preorder has every
    // child before its parent), each point's children made into a list that its own node
    // takes when it is made in turn. The events are shared.
    let events = Arc::new(events);
    let mut made: Vec<Vec<Node>> = Vec::new();
    made.resize_with(sorted.len(), Vec::new);
    let node = |position: usize, made: &mut Vec<Vec<Node>>| {
        let point = sorted.get(position)?;
        let [start, stop] = point.events;
        Some(Node {
            events: Arc::clone(&events),
            start,
            stop,
            started_us: point.times.started_us,
            finished_us: point.times.finished_us,
            started_ms: python_msec(point.times.started_us),
            finished_ms: python_msec(point.times.finished_us),
            children: made
                .get_mut(position)
                .map(std::mem::take)
                .unwrap_or_default(),
            category_id: point.category,
            service_id: point.service,
            host_id: point.host,
            project_id: point.project,
        })
    };
    for &n in placement.preorder.iter().rev() {
        let children: Vec<Node> = kids
            .of(n)
            .iter()
            .filter_map(|&c| node(c, &mut made))
            .collect();
        if let Some(list) = made.get_mut(n) {
            *list = children;
        }
    }
    let roots = placement
        .roots
        .iter()
        .filter_map(|&r| node(r, &mut made))
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
        text_bytes,
    }
}

/// Each point's children, as ranges of one list (in point order, so sorted by start).
struct Children {
    /// `list[start[i]..start[i + 1]]` are point `i`'s children.
    start: Vec<usize>,
    list: Vec<usize>,
}

impl Children {
    fn from_parents(parents: impl ExactSizeIterator<Item = Option<usize>> + Clone) -> Children {
        let n = parents.len();
        let mut start = vec![0_usize; n + 1];
        for p in parents.clone().flatten() {
            if let Some(count) = start.get_mut(p + 1) {
                *count += 1;
            }
        }
        for i in 0..n {
            let before = start.get(i).copied().unwrap_or(0);
            if let Some(s) = start.get_mut(i + 1) {
                *s += before;
            }
        }
        let mut next = start.clone();
        let mut list = vec![0_usize; start.last().copied().unwrap_or(0)];
        for (child, p) in parents.enumerate() {
            let Some(at) = p.and_then(|p| next.get_mut(p)) else {
                continue;
            };
            if let Some(slot) = list.get_mut(*at) {
                *slot = child;
            }
            *at += 1;
        }
        Children { start, list }
    }

    fn of(&self, i: usize) -> &[usize] {
        let (Some(&from), Some(&to)) = (self.start.get(i), self.start.get(i + 1)) else {
            return &[];
        };
        self.list.get(from..to).unwrap_or_default()
    }
}

/// Where each point goes, by index into the sorted points.
struct Placement {
    roots: Vec<usize>,
    /// Each point's parent in the report (`None`: it hangs from the root).
    parent: Vec<Option<usize>>,
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
///
/// `parent` is each point's parent by `parent_id` (its own parent left out, and counted
/// in `own_parents`).
fn place(parent: &[Option<usize>], own_parents: usize) -> Placement {
    let n = parent.len();
    let tree = Children::from_parents(parent.iter().copied());

    let mut placement = Placement {
        roots: Vec::new(),
        parent: vec![None; n],
        preorder: Vec::with_capacity(n),
        detached: own_parents,
    };
    let mut visited = vec![false; n];
    let mut stack: Vec<(usize, usize)> = Vec::new();
    let mut walk = |top: usize, placement: &mut Placement, visited: &mut Vec<bool>| {
        placement.roots.push(top);
        if let Some(v) = visited.get_mut(top) {
            *v = true;
        }
        stack.push((top, 1));
        while let Some((n, depth)) = stack.pop() {
            placement.preorder.push(n);
            // Pushed in reverse so that they pop, and enter the preorder, in order.
            for &c in tree.of(n).iter().rev() {
                match visited.get_mut(c) {
                    Some(v) if !*v => *v = true,
                    _ => continue, // the edge that closes a cycle
                }
                if depth >= MAX_DEPTH {
                    placement.roots.push(c);
                    placement.detached += 1;
                    stack.push((c, 1));
                } else {
                    if let Some(p) = placement.parent.get_mut(c) {
                        *p = Some(n);
                    }
                    stack.push((c, depth + 1));
                }
            }
        }
    };
    for (i, p) in parent.iter().enumerate() {
        if p.is_none() {
            walk(i, &mut placement, &mut visited);
        }
    }
    // What is left sits on parent cycles (each unvisited point's parent is unvisited too).
    // Follow parents from the earliest such point to reach its cycle, then cut the cycle at
    // its earliest member. Rare: a plain map will do.
    let mut cursor = 0;
    while let Some(first) = (cursor..n).find(|&i| visited.get(i) == Some(&false)) {
        cursor = first;
        let mut path: HashMap<usize, usize> = HashMap::from([(first, 0)]);
        let mut order = vec![first];
        let mut at = first;
        let cut = loop {
            let Some(p) = parent.get(at).copied().flatten() else {
                break at;
            };
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
fn usage(
    points: &[Point],
    kids: &Children,
    mut categories: Vec<Usage>,
    mut services: Vec<Usage>,
) -> (Vec<Usage>, Vec<Usage>) {
    for (i, point) in points.iter().enumerate() {
        let t = &point.times;
        let children = kids.of(i).iter().filter_map(|&c| points.get(c));
        let self_us = self_time(t, children.map(|c| &c.times));
        let duration_ms = python_msec(t.finished_us) - python_msec(t.started_us);
        let duration_us = t.finished_us - t.started_us;
        for entry in [
            categories.get_mut(point.category as usize),
            services.get_mut(point.service as usize),
        ]
        .into_iter()
        .flatten()
        {
            entry.count += 1;
            entry.duration_ms += duration_ms;
            entry.duration_us += duration_us;
            entry.self_us += self_us;
        }
    }
    (categories, services)
}

/// A point's time not covered by any of its children (overlapping children counted once).
///
/// Children come sorted by start, so their clamped spans are too.
fn self_time<'a>(point: &Times, children: impl Iterator<Item = &'a Times>) -> i64 {
    let (lo, hi) = (point.started_us, point.finished_us);
    if hi <= lo {
        return 0;
    }
    let mut covered = 0;
    let mut reach = lo;
    for c in children {
        let (s, f) = (c.started_us.clamp(lo, hi), c.finished_us.clamp(lo, hi));
        let s = s.max(reach);
        if f > s {
            covered += f - s;
            reach = f;
        }
    }
    hi - lo - covered
}
