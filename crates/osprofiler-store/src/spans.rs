//! From osprofiler's start and stop events to finished spans, for the exporters
//! that send spans (OTLP, Jaeger): pairing, naming, kinds and attributes.
//!
//! osprofiler 4.4.0's drivers keep one stack of open spans per process and pop it
//! at every stop, so two concurrent requests end each other's spans; they name a
//! span `name.rstrip("-start")`, which strips characters (`list_servers` becomes
//! `list_serve`). Here a stop is matched to its start by point id, and the name is
//! the point's own.

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use osprofiler::{Event, EventKind};
use serde_json::{Map, Value};

/// A span's kind, as OpenTelemetry names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SpanKind {
    Internal,
    Server,
    Client,
}

/// An attribute's value; strings borrowed from the events where they can be.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum AttrValue<'a> {
    Str(Cow<'a, str>),
    Int(i64),
    Double(f64),
    Bool(bool),
}

impl AttrValue<'_> {
    fn into_owned(self) -> AttrValue<'static> {
        match self {
            AttrValue::Str(s) => AttrValue::Str(Cow::Owned(s.into_owned())),
            AttrValue::Int(i) => AttrValue::Int(i),
            AttrValue::Double(d) => AttrValue::Double(d),
            AttrValue::Bool(b) => AttrValue::Bool(b),
        }
    }
}

pub(crate) type Attr<'a> = (Cow<'a, str>, AttrValue<'a>);

fn owned_attr((k, v): Attr<'_>) -> Attr<'static> {
    (Cow::Owned(k.into_owned()), v.into_owned())
}

/// Who wrote a span: becomes the OTLP resource or the Jaeger process.
#[derive(Debug, Clone, Eq, Default)]
pub(crate) struct Origin {
    pub project: Option<Arc<str>>,
    pub service: Option<Arc<str>>,
    pub host: Option<Arc<str>>,
}

/// By value, as derived, but the same `Arc` first: the spans of a batch share their
/// origin's strings, and `Arc<str>`'s own `==` compares the bytes every time (its
/// pointer shortcut is for sized types only). The exporters compare origins at
/// every span, to group them.
impl PartialEq for Origin {
    fn eq(&self, other: &Origin) -> bool {
        fn same(a: &Option<Arc<str>>, b: &Option<Arc<str>>) -> bool {
            match (a, b) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b) || a == b,
                (None, None) => true,
                _ => false,
            }
        }
        same(&self.project, &other.project)
            && same(&self.service, &other.service)
            && same(&self.host, &other.host)
    }
}

/// As derived: by value, as `==` compares.
impl std::hash::Hash for Origin {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.project.hash(state);
        self.service.hash(state);
        self.host.hash(state);
    }
}

impl Origin {
    /// `[<prefix>-]<project>-<service>`, as osprofiler's drivers name the service.
    pub fn service_name(&self, prefix: Option<&str>) -> String {
        let project = self.project.as_deref().unwrap_or("None");
        let service = self.service.as_deref().unwrap_or("None");
        match prefix {
            Some(p) => format!("{p}-{project}-{service}"),
            None => format!("{project}-{service}"),
        }
    }
}

/// Why a failed point failed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SpanError<'a> {
    pub etype: Cow<'a, str>,
    pub message: Cow<'a, str>,
}

/// A finished point, ready to be encoded; its strings borrow from the events of the
/// batch it was finished in (those of a start from an earlier batch are owned).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Span<'a> {
    /// The trace (osprofiler's base id): the 128-bit trace id.
    pub base_id: u128,
    /// The point (osprofiler's `trace_id`): its low 64 bits are the span id.
    pub id: u128,
    /// The parent point, or the base id for a first-level point.
    pub parent_id: u128,
    /// The display name: `WSGI_GET_/path`, `SQL_SELECT`, … or the point's name.
    pub name: Cow<'a, str>,
    pub kind: SpanKind,
    /// Unix nanoseconds, from the events' own timestamps.
    pub start_ns: i64,
    pub end_ns: i64,
    pub origin: Origin,
    pub attributes: Vec<Attr<'a>>,
    pub error: Option<SpanError<'a>>,
}

impl Span<'_> {
    /// The parent's span id, `None` for a first-level point (its parent is the trace).
    pub fn parent_span_id(&self) -> Option<u64> {
        (self.parent_id != self.base_id).then_some(self.parent_id as u64)
    }
}

/// A start whose stop has not come yet, kept (owned) across batches.
struct Open {
    name: Cow<'static, str>,
    kind: SpanKind,
    start_ns: i64,
    parent_id: u128,
    origin: Origin,
    attributes: Vec<Attr<'static>>,
    seq: u64,
}

/// A stop whose start has not come yet, kept (owned) until it does. Events of one
/// trace reach the exporter in the order their threads hand them over, not the order
/// they happened: a point started on one thread and stopped on another can have its
/// stop handed over first.
struct EarlyStop {
    end_ns: i64,
    attributes: Vec<Attr<'static>>,
    error: Option<SpanError<'static>>,
    seq: u64,
}

/// Counters of an [`Assembler`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct AssemblerStats {
    /// Starts whose stop never came, dropped when the state was full (or at close).
    pub orphans_dropped: u64,
    /// Stops whose start never came, dropped when the state was full (or at close):
    /// there is no start time.
    pub unmatched_stops: u64,
}

/// (base id, point id).
type Key = (u128, u128);

/// Hashes a [`Key`] by folding and mixing its halves. The default SipHash cost more
/// than the rest of the pairing; these keys are ids, hashed for a table we own, and a
/// point id's low bits are a counter, hence the multiply that spreads them.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn write_u128(&mut self, v: u128) {
        let folded = (v as u64) ^ ((v >> 64) as u64).rotate_left(29);
        self.0 = (self.0.rotate_left(5) ^ folded).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

type KeyMap<V> = HashMap<Key, V, BuildHasherDefault<KeyHasher>>;

fn key(e: &Event) -> Key {
    (e.base_id.0, e.trace_id.0)
}

/// Pairs starts with stops by point id, within a batch and across batches, in
/// whichever order they come; holds at most `max_open` open points (and as many
/// stops waiting for their start) between batches, dropping (and counting) the
/// oldest when more arrive.
pub(crate) struct Assembler {
    open: KeyMap<Open>,
    order: VecDeque<(Key, u64)>,
    early: KeyMap<EarlyStop>,
    early_order: VecDeque<(Key, u64)>,
    // Starts of the batch being read whose stop has not come yet: their index.
    pending: KeyMap<usize>,
    max_open: usize,
    seq: u64,
    // The last host seen: spans of one host share one `Arc`, not one allocation each.
    host: Option<Arc<str>>,
    // Emptied attribute vectors of spans already sent ([`Assembler::recycle`]).
    spare_attributes: Vec<Vec<Attr<'static>>>,
    // And their names' and values' strings.
    spare_strings: Spare,
    stats: AssemblerStats,
}

/// Open points kept by default: a trace of this many unfinished points is far
/// beyond what a request makes, and it bounds memory to a few MiB.
pub(crate) const DEFAULT_MAX_OPEN: usize = 16_384;

impl Assembler {
    pub fn new(max_open: usize) -> Assembler {
        Assembler {
            open: KeyMap::default(),
            order: VecDeque::new(),
            early: KeyMap::default(),
            early_order: VecDeque::new(),
            pending: KeyMap::default(),
            max_open: max_open.max(1),
            seq: 0,
            host: None,
            spare_attributes: Vec::new(),
            spare_strings: Spare::default(),
            stats: AssemblerStats::default(),
        }
    }

    // Read by the Jaeger sink's counters (`jaeger_stats`) only.
    #[cfg_attr(not(feature = "jaeger"), allow(dead_code))]
    pub fn stats(&self) -> AssemblerStats {
        self.stats
    }

    /// Points started and not yet stopped.
    // Read by the Jaeger sink's counters (`jaeger_stats`) only.
    #[cfg_attr(not(feature = "jaeger"), allow(dead_code))]
    pub fn open_points(&self) -> usize {
        self.open.len()
    }

    /// Takes one event (a batch of one).
    #[cfg(test)]
    pub fn push<'a>(&mut self, e: &'a Event, out: &mut Vec<Span<'a>>) {
        self.push_batch(std::slice::from_ref(e), out);
    }

    /// Takes a batch of events, in order; appends the spans they finish. A span whose
    /// start and stop are both in `events` borrows its strings from them: the common
    /// case, a short point's two events side by side, builds no map entry at all.
    pub fn push_batch<'a>(&mut self, events: &'a [Event], out: &mut Vec<Span<'a>>) {
        self.pending.clear();
        let mut i = 0;
        while i < events.len() {
            let e = &events[i];
            match e.kind {
                EventKind::Start => {
                    if let Some(next) = events.get(i + 1)
                        && next.kind == EventKind::Stop
                        && key(next) == key(e)
                    {
                        let span = self.span(e, next);
                        out.push(span);
                        i += 2;
                        continue;
                    }
                    if !self.early.is_empty()
                        && let Some(stop) = self.early.remove(&key(e))
                    {
                        let span = self.span_early(e, stop);
                        out.push(span);
                        i += 1;
                        continue;
                    }
                    if self.pending.insert(key(e), i).is_some() {
                        // The same point started twice: the first start is lost.
                        self.stats.orphans_dropped += 1;
                    }
                }
                EventKind::Stop => {
                    if let Some(si) = self.pending.remove(&key(e)) {
                        let span = self.span(&events[si], e);
                        out.push(span);
                    } else if let Some(open) = self.open.remove(&key(e)) {
                        out.push(self.finish(open, e));
                    } else {
                        self.keep_early(e);
                    }
                }
            }
            i += 1;
        }
        // Starts still waiting for their stop: kept, owned, in the order they came.
        let mut left: Vec<usize> = self.pending.drain().map(|(_, i)| i).collect();
        left.sort_unstable();
        for si in left {
            let e = &events[si];
            let open = self.open_owned(e);
            self.open.insert(key(e), open);
            self.order.push_back((key(e), self.seq));
        }
        self.evict();
        // Keep the order queues from growing with entries already matched.
        if self.order.len() > 2 * self.open.len() + 1024 {
            let open = &self.open;
            self.order
                .retain(|(k, seq)| open.get(k).is_some_and(|o| o.seq == *seq));
        }
        if self.early_order.len() > 2 * self.early.len() + 1024 {
            let early = &self.early;
            self.early_order
                .retain(|(k, seq)| early.get(k).is_some_and(|o| o.seq == *seq));
        }
    }

    /// Keeps a stop that came before its start.
    #[cold]
    fn keep_early(&mut self, e: &Event) {
        let mut attributes = Vec::new();
        let error = stop_info(e, &mut attributes).map(|err| SpanError {
            etype: Cow::Owned(err.etype.into_owned()),
            message: Cow::Owned(err.message.into_owned()),
        });
        self.seq += 1;
        let stop = EarlyStop {
            end_ns: ns(e),
            attributes: attributes.into_iter().map(owned_attr).collect(),
            error,
            seq: self.seq,
        };
        if self.early.insert(key(e), stop).is_some() {
            // The same point stopped twice before its start: the first stop is lost.
            self.stats.unmatched_stops += 1;
        }
        self.early_order.push_back((key(e), self.seq));
        while self.early.len() > self.max_open {
            let Some((k, seq)) = self.early_order.pop_front() else {
                break;
            };
            if self.early.get(&k).is_some_and(|o| o.seq == seq) {
                self.early.remove(&k);
                self.stats.unmatched_stops += 1;
            }
        }
    }

    /// The span of a start and the stop that came before it.
    #[cold]
    fn span_early<'a>(&mut self, start: &'a Event, stop: EarlyStop) -> Span<'a> {
        self.span_with(start, |attributes| {
            attributes.extend(stop.attributes);
            (stop.end_ns, stop.error)
        })
    }

    fn origin(&mut self, e: &Event) -> Origin {
        let host = match (e.host(), &self.host) {
            (None, _) => None,
            (Some(h), Some(last)) if **last == *h => Some(last.clone()),
            (Some(h), _) => {
                let h: Arc<str> = Arc::from(h);
                self.host = Some(h.clone());
                Some(h)
            }
        };
        Origin {
            project: e.project.clone(),
            service: e.service.clone(),
            host,
        }
    }

    /// The span of a start and a stop of the same batch.
    fn span<'a>(&mut self, start: &'a Event, stop: &'a Event) -> Span<'a> {
        self.span_with(start, |attributes| (ns(stop), stop_info(stop, attributes)))
    }

    /// The span of `start`, its stop's attributes added by `stop`, which returns the
    /// stop time and the error.
    #[inline]
    fn span_with<'a>(
        &mut self,
        start: &'a Event,
        stop: impl FnOnce(&mut Vec<Attr<'a>>) -> (i64, Option<SpanError<'a>>),
    ) -> Span<'a> {
        let origin = self.origin(start);
        // (A kept vector's `'static` is any `'a`: no relabelling this way.)
        let mut attributes: Vec<Attr<'a>> = match self.spare_attributes.pop() {
            Some(v) => v,
            None => Vec::with_capacity(8),
        };
        let (name, kind) = start_info(start, &mut attributes, &mut self.spare_strings);
        let (end_ns, error) = stop(&mut attributes);
        let start_ns = ns(start);
        Span {
            base_id: start.base_id.0,
            id: start.trace_id.0,
            parent_id: start.parent_id.0,
            name,
            kind,
            start_ns,
            end_ns: end_ns.max(start_ns),
            origin,
            attributes,
            error,
        }
    }

    /// A start kept for a later batch: its strings owned.
    fn open_owned(&mut self, e: &Event) -> Open {
        let origin = self.origin(e);
        let mut attributes = Vec::with_capacity(8);
        let (name, kind) = start_info(e, &mut attributes, &mut self.spare_strings);
        self.seq += 1;
        Open {
            name: Cow::Owned(name.into_owned()),
            kind,
            start_ns: ns(e),
            parent_id: e.parent_id.0,
            origin,
            attributes: attributes.into_iter().map(owned_attr).collect(),
            seq: self.seq,
        }
    }

    /// The span of a start from an earlier batch and its stop.
    fn finish<'a>(&mut self, open: Open, stop: &'a Event) -> Span<'a> {
        let mut attributes: Vec<Attr<'a>> = open.attributes;
        let error = stop_info(stop, &mut attributes);
        Span {
            base_id: stop.base_id.0,
            id: stop.trace_id.0,
            parent_id: open.parent_id,
            name: open.name,
            kind: open.kind,
            start_ns: open.start_ns,
            end_ns: ns(stop).max(open.start_ns),
            origin: open.origin,
            attributes,
            error,
        }
    }

    /// Takes back the attribute vector and the owned strings (a built name, JSON
    /// text) of a span that was sent, for the spans of a later batch: allocations
    /// less per span.
    // Called by the OTLP sink only.
    #[cfg_attr(not(feature = "otlp"), allow(dead_code))]
    pub fn recycle(&mut self, span: Span<'_>) {
        let Span {
            name,
            mut attributes,
            ..
        } = span;
        if let Cow::Owned(n) = name {
            self.spare_strings.put(n);
        }
        for (k, v) in attributes.drain(..) {
            if let Cow::Owned(k) = k {
                self.spare_strings.put(k);
            }
            if let AttrValue::Str(Cow::Owned(v)) = v {
                self.spare_strings.put(v);
            }
        }
        if self.spare_attributes.len() < SPARE_ATTRIBUTES && attributes.capacity() <= 64 {
            self.spare_attributes.push(relabel(attributes));
        }
    }

    fn evict(&mut self) {
        while self.open.len() > self.max_open {
            let Some((k, seq)) = self.order.pop_front() else {
                break;
            };
            if self.open.get(&k).is_some_and(|o| o.seq == seq) {
                self.open.remove(&k);
                self.stats.orphans_dropped += 1;
            }
        }
    }

    /// Drops every open point (the process is closing: a half-open span is not
    /// sent); returns how many.
    // Read by the Jaeger sink's counters (`jaeger_stats`) only.
    #[cfg_attr(not(feature = "jaeger"), allow(dead_code))]
    pub fn close(&mut self) -> usize {
        let n = self.open.len();
        self.stats.orphans_dropped += n as u64;
        self.stats.unmatched_stops += self.early.len() as u64;
        self.open.clear();
        self.order.clear();
        self.early.clear();
        self.early_order.clear();
        n
    }
}

/// Most attribute vectors kept by [`Assembler::recycle`]: a batch's spans.
const SPARE_ATTRIBUTES: usize = 4096;

/// Emptied strings kept for the names and JSON texts of later spans.
#[derive(Default)]
struct Spare(Vec<String>);

/// Most strings kept (a batch's spans have a few built strings each), and the
/// largest: a long one would otherwise stay in memory for good.
const SPARE_STRINGS: usize = 8192;
const SPARE_STRING_BYTES: usize = 256;

impl Spare {
    /// An empty string, with the capacity of one kept if there is one.
    fn take(&mut self) -> String {
        self.0.pop().unwrap_or_default()
    }

    fn put(&mut self, mut s: String) {
        if s.capacity() > 0 && s.capacity() <= SPARE_STRING_BYTES && self.0.len() < SPARE_STRINGS {
            s.clear();
            self.0.push(s);
        }
    }
}

/// An empty vector's allocation under another lifetime: collecting an empty vector
/// into one of a type of the same layout reuses its buffer (no element is moved).
// `filter_map`, not `filter`: the item type changes (its lifetime).
#[allow(clippy::unnecessary_filter_map)]
fn relabel<'b>(v: Vec<Attr<'_>>) -> Vec<Attr<'b>> {
    v.into_iter().filter_map(|_| None).collect()
}

fn ns(e: &Event) -> i64 {
    e.timestamp.as_micros().saturating_mul(1000)
}

/// A start event's name, kind and attributes (`osprofiler.point` first). Borrowed from
/// the event's info when it can be; built info (a function's, an error's) is small and
/// copied.
fn start_info<'a>(
    e: &'a Event,
    out: &mut Vec<Attr<'a>>,
    spare: &mut Spare,
) -> (Cow<'a, str>, SpanKind) {
    out.push((
        Cow::Borrowed("osprofiler.point"),
        AttrValue::Str(Cow::Borrowed(&*e.name)),
    ));
    match e.info.fields() {
        Cow::Borrowed(info) => {
            start_attributes(&e.name, info, out, spare);
            name_and_kind(&e.name, info, spare)
        }
        Cow::Owned(info) => {
            let mut tmp = Vec::new();
            start_attributes(&e.name, &info, &mut tmp, spare);
            out.extend(tmp.into_iter().map(|a| -> Attr<'a> { owned_attr(a) }));
            let (name, kind) = name_and_kind(&e.name, &info, spare);
            (Cow::Owned(name.into_owned()), kind)
        }
    }
}

/// A stop event's attributes; the error of a failed point.
fn stop_info<'a>(e: &'a Event, out: &mut Vec<Attr<'a>>) -> Option<SpanError<'a>> {
    // A recorded failure, read as is: `fields` would build its map (`etype`,
    // `message`, `host`) to be read here as just these two.
    if let Some((etype, message)) = e.info.recorded_error() {
        return Some(SpanError {
            etype: Cow::Borrowed(etype),
            message: Cow::Borrowed(message),
        });
    }
    match e.info.fields() {
        Cow::Borrowed(info) => stop_attributes(info, out),
        Cow::Owned(info) => {
            let mut tmp = Vec::new();
            let error = stop_attributes(&info, &mut tmp);
            out.extend(tmp.into_iter().map(|a| -> Attr<'a> { owned_attr(a) }));
            error.map(|e| SpanError {
                etype: Cow::Owned(e.etype.into_owned()),
                message: Cow::Owned(e.message.into_owned()),
            })
        }
    }
}

fn obj<'a>(info: &'a Map<String, Value>, key: &str) -> Option<&'a Map<String, Value>> {
    info.get(key)
        .and_then(Value::as_object)
        .filter(|m| !m.is_empty())
}

/// Longest span name sent: names are for grouping and search (a statement's first word,
/// a path), not for data, which the attributes carry whole.
const MAX_NAME: usize = 256;

fn capped(name: Cow<'_, str>) -> Cow<'_, str> {
    if name.len() <= MAX_NAME {
        return name;
    }
    let mut i = MAX_NAME;
    while !name.is_char_boundary(i) {
        i -= 1;
    }
    match name {
        Cow::Borrowed(n) => Cow::Borrowed(&n[..i]),
        Cow::Owned(mut n) => {
            n.truncate(i);
            Cow::Owned(n)
        }
    }
}

/// The span's name (at most [`MAX_NAME`] bytes) and kind.
fn name_and_kind<'a>(
    point: &'a str,
    info: &'a Map<String, Value>,
    spare: &mut Spare,
) -> (Cow<'a, str>, SpanKind) {
    let (name, kind) = full_name_and_kind(point, info, spare);
    (capped(name), kind)
}

/// The span's name and kind. Names as osprofiler's OTLP driver gives them
/// (`WSGI_<METHOD>_<path>`, `SQL_<FIRST WORD>`, `REQUESTS_<METHOD>_<hostname>`),
/// the point's own name otherwise; a gRPC server point is named by its method.
fn full_name_and_kind<'a>(
    point: &'a str,
    info: &'a Map<String, Value>,
    spare: &mut Spare,
) -> (Cow<'a, str>, SpanKind) {
    // One pass over the keys (see `start_attributes`).
    let (mut request, mut db, mut requests, mut function) = (None, None, None, None);
    for (k, v) in info {
        let Some(m) = v.as_object().filter(|m| !m.is_empty()) else {
            continue;
        };
        match k.as_str() {
            "request" => request = Some(m),
            "db" => db = Some(m),
            "requests" => requests = Some(m),
            "function" => function = Some(m),
            _ => {}
        }
    }
    let kind = match point {
        "wsgi" => SpanKind::Server,
        "db" | "http" | "https" => SpanKind::Client,
        // The gRPC server layer's point carries the request it serves.
        "rpc" if request.is_some() => SpanKind::Server,
        _ => SpanKind::Internal,
    };
    let field = |m: &'a Map<String, Value>, key: &str| -> &'a str {
        m.iter()
            .find(|(k, _)| *k == key)
            .and_then(|(_, v)| v.as_str())
            .unwrap_or("")
    };
    if point == "rpc"
        && let Some(f) = function.map(|f| field(f, "name")).filter(|n| !n.is_empty())
    {
        return (Cow::Borrowed(f), kind);
    }
    if let Some(r) = request {
        let (method, path) = (field(r, "method"), field(r, "path"));
        return (
            Cow::Owned(joined(&["WSGI_", method, "_", path], spare)),
            kind,
        );
    }
    if let Some(db) = db {
        let first = field(db, "statement")
            .split_whitespace()
            .next()
            .unwrap_or("");
        let mut name = joined(&["SQL_", first], spare);
        if first.is_ascii() {
            name.make_ascii_uppercase();
        } else {
            name = format!("SQL_{}", first.to_uppercase());
        }
        return (Cow::Owned(name), kind);
    }
    if let Some(r) = requests {
        let (method, host) = (field(r, "method"), field(r, "hostname"));
        return (
            Cow::Owned(joined(&["REQUESTS_", method, "_", host], spare)),
            kind,
        );
    }
    (Cow::Borrowed(point), kind)
}

/// The pieces in one string of the right size (`format!` guesses the size and grows),
/// a kept one when there is one.
fn joined(pieces: &[&str], spare: &mut Spare) -> String {
    let mut s = spare.take();
    s.reserve(pieces.iter().map(|p| p.len()).sum());
    for p in pieces {
        s.push_str(p);
    }
    s
}

/// `v` as compact JSON text, what its `Display` writes: serde_json's writer straight
/// into one buffer (`Display` goes through a formatter piece by piece, and the
/// string grows as it goes: it cost more than the rest of a `db` span's mapping).
fn json_text(v: &Value) -> String {
    json_text_in(v, String::new())
}

/// [`json_text`], written into `s` (emptied first).
fn json_text_in(v: &Value, s: String) -> String {
    let mut b = s.into_bytes();
    b.clear();
    // A `Value` always serializes (its keys are strings), and into valid UTF-8.
    if serde_json::to_writer(&mut b, v).is_err() {
        b.clear();
    }
    String::from_utf8(b).unwrap_or_default()
}

fn value_attr(v: &Value) -> Option<AttrValue<'_>> {
    Some(match v {
        Value::Null => return None,
        Value::Bool(b) => AttrValue::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => AttrValue::Int(i),
            None => AttrValue::Double(n.as_f64()?),
        },
        Value::String(s) => AttrValue::Str(Cow::Borrowed(s)),
        other => AttrValue::Str(Cow::Owned(json_text(other))),
    })
}

fn put<'a>(out: &mut Vec<Attr<'a>>, key: &'static str, v: Option<&'a Value>) {
    if let Some(a) = v.and_then(value_attr) {
        out.push((Cow::Borrowed(key), a));
    }
}

/// OpenTelemetry's semantic names where one exists, osprofiler's keys otherwise.
fn start_attributes<'a>(
    point: &str,
    info: &'a Map<String, Value>,
    out: &mut Vec<Attr<'a>>,
    spare: &mut Spare,
) {
    // One pass over each map, matching keys: a lookup per key would hash each one
    // (serde_json's ordered map), which cost more than the rest of the mapping.
    let grpc_server = point == "rpc" && obj(info, "request").is_some();
    for (k, v) in info {
        match (k.as_str(), v) {
            // The resource (process) carries the host.
            ("host", _) => {}
            ("request", Value::Object(r)) => http_attributes("request", r, out),
            ("requests", Value::Object(r)) => http_attributes("requests", r, out),
            ("db", Value::Object(d)) => {
                for (dk, dv) in d {
                    match dk.as_str() {
                        "statement" => put(out, "db.query.text", Some(dv)),
                        "params" if !dv.is_null() => {
                            // As osprofiler's drivers: the parameters as one JSON text.
                            out.push((
                                Cow::Borrowed("db.params"),
                                AttrValue::Str(Cow::Owned(json_text_in(dv, spare.take()))),
                            ));
                        }
                        "params" => {}
                        _ => flatten(Cow::Owned(format!("db.{dk}")), dv, out, 0),
                    }
                }
            }
            ("function", Value::Object(f)) => {
                for (fk, fv) in f {
                    match fk.as_str() {
                        "name" => {
                            if grpc_server {
                                rpc_attributes(fv.as_str(), out);
                            }
                            put(out, "code.function.name", Some(fv));
                        }
                        "args" => put(out, "args", Some(fv)),
                        "kwargs" => put(out, "kwargs", Some(fv)),
                        _ => flatten(Cow::Owned(format!("function.{fk}")), fv, out, 0),
                    }
                }
            }
            (k, v) => flatten(Cow::Borrowed(k), v, out, 0),
        }
    }
}

/// `info.request` (a server's) or `info.requests` (a client's): OpenTelemetry's HTTP
/// names, the other keys under `<what>.`.
fn http_attributes<'a>(what: &str, r: &'a Map<String, Value>, out: &mut Vec<Attr<'a>>) {
    let client = what == "requests";
    for (rk, rv) in r {
        match rk.as_str() {
            "method" => put(out, "http.request.method", Some(rv)),
            "path" => put(out, "url.path", Some(rv)),
            "query" if rv.as_str().is_some_and(str::is_empty) => {}
            "query" => put(out, "url.query", Some(rv)),
            "scheme" => put(out, "url.scheme", Some(rv)),
            "port" => put(out, "server.port", Some(rv)),
            "hostname" if client => put(out, "server.address", Some(rv)),
            _ => flatten(Cow::Owned(format!("{what}.{rk}")), rv, out, 0),
        }
    }
}

/// A gRPC server point's method, `pkg.Service.Method`, as OpenTelemetry's RPC names.
fn rpc_attributes<'a>(name: Option<&'a str>, out: &mut Vec<Attr<'a>>) {
    out.push((
        Cow::Borrowed("rpc.system"),
        AttrValue::Str(Cow::Borrowed("grpc")),
    ));
    if let Some((service, method)) = name.and_then(|n| n.rsplit_once('.')) {
        out.push((
            Cow::Borrowed("rpc.service"),
            AttrValue::Str(Cow::Borrowed(service)),
        ));
        out.push((
            Cow::Borrowed("rpc.method"),
            AttrValue::Str(Cow::Borrowed(method)),
        ));
    }
}

/// Stop info: results, status codes, errors. Returns the error of a failed point.
fn stop_attributes<'a>(
    info: &'a Map<String, Value>,
    out: &mut Vec<Attr<'a>>,
) -> Option<SpanError<'a>> {
    let mut etype = None;
    let mut message = None;
    for (k, v) in info {
        match (k.as_str(), v) {
            ("host", _) => {}
            ("etype", v) => etype = Some(text(v)),
            ("message", v) => message = Some(text(v)),
            ("function", Value::Object(f)) => {
                for (fk, fv) in f {
                    match fk.as_str() {
                        "result" => put(out, "result", Some(fv)),
                        _ => flatten(Cow::Owned(format!("function.{fk}")), fv, out, 0),
                    }
                }
            }
            ("db", Value::Object(d)) => {
                if let Some((_, r)) = d.iter().find(|(k, _)| *k == "result") {
                    put(out, "result", Some(r));
                }
            }
            ("requests", Value::Object(r)) => {
                for (rk, rv) in r {
                    match rk.as_str() {
                        "status_code" => put(out, "http.response.status_code", Some(rv)),
                        _ => flatten(Cow::Owned(format!("requests.{rk}")), rv, out, 0),
                    }
                }
            }
            ("response", Value::Object(r)) => {
                for (rk, rv) in r {
                    match rk.as_str() {
                        "status" | "status_code" => put(out, "http.response.status_code", Some(rv)),
                        "grpc_status" => put(out, "rpc.grpc.status_code", Some(rv)),
                        _ => flatten(Cow::Owned(format!("response.{rk}")), rv, out, 0),
                    }
                }
            }
            (k, v) => flatten(Cow::Borrowed(k), v, out, 0),
        }
    }
    etype.map(|etype| SpanError {
        etype,
        message: message.unwrap_or(Cow::Borrowed("")),
    })
}

fn text(v: &Value) -> Cow<'_, str> {
    match v {
        Value::String(s) => Cow::Borrowed(s),
        other => Cow::Owned(json_text(other)),
    }
}

/// A nested object becomes dotted keys (`a.b.c`), up to a small depth; deeper
/// values and arrays are kept as JSON text.
fn flatten<'a>(key: Cow<'a, str>, v: &'a Value, out: &mut Vec<Attr<'a>>, depth: usize) {
    match v {
        Value::Object(m) if depth < 4 && !m.is_empty() => {
            for (k, v) in m {
                flatten(Cow::Owned(format!("{key}.{k}")), v, out, depth + 1);
            }
        }
        Value::Null => {}
        v => {
            if let Some(a) = value_attr(v) {
                out.push((key, a));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(line: &str) -> Event {
        Event::from_json(line).unwrap()
    }

    const BASE: &str = "11111111-2222-3333-4444-555555555555";

    fn event(name: &str, id: &str, parent: &str, ts: &str, info: &str) -> Event {
        ev(&format!(
            r#"{{"name": "{name}", "base_id": "{BASE}", "trace_id": "{id}", "parent_id": "{parent}", "timestamp": "{ts}", "info": {info}, "project": "nova", "service": "api"}}"#
        ))
    }

    /// Events borrowed by spans must outlive them: in tests, for ever.
    fn leak(e: Event) -> &'static Event {
        Box::leak(Box::new(e))
    }

    const A: &str = "aaaaaaaa-aaaa-4aaa-8aaa-000000000001";
    const B: &str = "aaaaaaaa-aaaa-4aaa-8aaa-000000000002";

    /// A failure recorded here (not parsed) is read as is, and gives what reading
    /// its built map gives.
    #[test]
    fn a_recorded_failure_is_read_without_its_map() {
        use osprofiler::{HmacKey, Identity, Info, TraceContext};
        let sink = osprofiler::notifier::MemorySink::new();
        let guard = osprofiler::notifier::set_sink(sink.clone());
        let ctx = TraceContext::new(HmacKey::new("SECRET_KEY"), None, None)
            .with_identity(&Identity::new("nova", "api", "h1"));
        ctx.in_scope(|| {
            let mut d = osprofiler::Point::start("driver", Info::new().with("vm", "vm-1"));
            d.set_error("NoValidHost", "No valid host é");
        });
        osprofiler::notifier::flush().expect("flush");
        drop(guard);
        let events = sink.take();
        assert_eq!(events.len(), 2);
        let stop = &events[1];
        assert_eq!(
            stop.info.recorded_error(),
            Some(("NoValidHost", "No valid host é"))
        );
        let mut from_map = Vec::new();
        let map = stop.info.fields();
        let map_error = stop_attributes(&map, &mut from_map);
        let mut asm = Assembler::new(16);
        let mut out = Vec::new();
        asm.push_batch(&events, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].error, map_error);
        assert!(from_map.is_empty());
        assert_eq!(
            out[0].attributes,
            [
                (
                    Cow::Borrowed("osprofiler.point"),
                    AttrValue::Str("driver".into())
                ),
                (Cow::Borrowed("vm"), AttrValue::Str("vm-1".into())),
            ]
        );
    }

    #[test]
    fn origins_compare_by_value() {
        let o = |p: &str, h: Option<&str>| Origin {
            project: Some(Arc::from(p)),
            service: None,
            host: h.map(Arc::from),
        };
        let a = o("nova", Some("h1"));
        assert_eq!(a, a.clone());
        assert_eq!(a, o("nova", Some("h1")), "other Arcs, same strings");
        assert_ne!(a, o("nova", Some("h2")));
        assert_ne!(a, o("nova", None));
        assert_ne!(a, o("nov", Some("h1")));
        let s = std::hash::RandomState::new();
        assert_eq!(
            std::hash::BuildHasher::hash_one(&s, &a),
            std::hash::BuildHasher::hash_one(&s, o("nova", Some("h1")))
        );
    }

    #[test]
    fn json_text_is_what_display_writes() {
        let v: Value = serde_json::from_str(
            r#"[1, -2.5, 1e300, "é\n\"🦀\u0001", null, true, {"b": {"c": []}, "a": 1}, []]"#,
        )
        .unwrap();
        assert_eq!(json_text(&v), v.to_string());
        for v in v.as_array().unwrap() {
            assert_eq!(json_text(v), v.to_string());
        }
    }

    #[test]
    fn recycled_spans_keep_their_buffers() {
        let mut v: Vec<Attr<'_>> = Vec::with_capacity(8);
        v.push((Cow::Borrowed("k"), AttrValue::Str("v".to_owned().into())));
        v.push((Cow::Owned("function.x".into()), AttrValue::Int(1)));
        let at = v.as_ptr() as usize;
        let name = String::from("WSGI_GET_/v2.1/servers");
        let name_at = name.as_ptr() as usize;
        let mut asm = Assembler::new(4);
        asm.recycle(Span {
            base_id: 1,
            id: 2,
            parent_id: 1,
            name: Cow::Owned(name),
            kind: SpanKind::Server,
            start_ns: 0,
            end_ns: 0,
            origin: Origin::default(),
            attributes: v,
            error: None,
        });
        let back = asm.spare_attributes.pop().expect("kept");
        assert_eq!(
            (back.as_ptr() as usize, back.capacity(), back.len()),
            (at, 8, 0)
        );
        assert_eq!(asm.spare_strings.0.len(), 3, "the name, a key, a value");
        // The last kept string is taken first, emptied, for the next built name.
        asm.spare_strings.0.swap(0, 2);
        let events: &'static [Event] = Box::leak(Box::new([
            event(
                "wsgi-start",
                A,
                BASE,
                "2026-01-01T00:00:00.000100",
                r#"{"request": {"method": "GET", "path": "/x"}}"#,
            ),
            event("wsgi-stop", A, BASE, "2026-01-01T00:00:00.000200", "{}"),
        ]));
        let mut out = Vec::new();
        asm.push_batch(events, &mut out);
        assert_eq!(out[0].name, "WSGI_GET_/x");
        assert_eq!(out[0].name.as_ptr() as usize, name_at);
    }

    #[test]
    fn pairs_by_point_id_not_by_stack() {
        let mut asm = Assembler::new(16);
        let mut out = Vec::new();
        // Two concurrent first-level points whose stops come in start order:
        // a per-process stack (Python's) would end each with the other's stop.
        let wsgi = r#"{"request": {"path": "/v2.1/servers", "query": "", "method": "GET", "scheme": "http"}, "host": "h1"}"#;
        asm.push(
            leak(event(
                "wsgi-start",
                A,
                BASE,
                "2026-01-01T00:00:00.000100",
                wsgi,
            )),
            &mut out,
        );
        asm.push(
            leak(event(
                "list_servers-start",
                B,
                BASE,
                "2026-01-01T00:00:00.000200",
                r#"{"host": "h1"}"#,
            )),
            &mut out,
        );
        asm.push(
            leak(event(
                "wsgi-stop",
                A,
                BASE,
                "2026-01-01T00:00:00.000900",
                r#"{"host": "h1"}"#,
            )),
            &mut out,
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].name, "WSGI_GET_/v2.1/servers");
        assert_eq!(out[0].kind, SpanKind::Server);
        assert_eq!(
            (out[0].start_ns, out[0].end_ns),
            (1767225600000100000, 1767225600000900000)
        );
        asm.push(
            leak(event(
                "list_servers-stop",
                B,
                BASE,
                "2026-01-01T00:00:00.000300",
                r#"{"host": "h1"}"#,
            )),
            &mut out,
        );
        assert_eq!(out[1].name, "list_servers");
        assert_eq!(out[1].parent_span_id(), None);
        assert_eq!(asm.open_points(), 0);
    }

    #[test]
    fn names_kinds_and_attributes() {
        let mut asm = Assembler::new(16);
        let mut out = Vec::new();
        let db = r#"{"db": {"statement": "select * from instances where id = ?", "params": [1]}, "host": "h1"}"#;
        asm.push(
            leak(event("db-start", B, A, "2026-01-01T00:00:00.000100", db)),
            &mut out,
        );
        asm.push(
            leak(event(
                "db-stop",
                B,
                A,
                "2026-01-01T00:00:00.000200",
                r#"{"etype": "OperationalError", "message": "locked", "host": "h1"}"#,
            )),
            &mut out,
        );
        let s = &out[0];
        assert_eq!(s.name, "SQL_SELECT");
        assert_eq!(s.kind, SpanKind::Client);
        assert_eq!(s.parent_span_id(), Some(0x8aaa_0000_0000_0001));
        assert!(s.attributes.contains(&(
            Cow::Borrowed("db.query.text"),
            AttrValue::Str("select * from instances where id = ?".into())
        )));
        assert!(
            s.attributes
                .contains(&(Cow::Borrowed("db.params"), AttrValue::Str("[1]".into())))
        );
        assert_eq!(
            s.error,
            Some(SpanError {
                etype: "OperationalError".into(),
                message: "locked".into()
            })
        );
        assert_eq!(s.origin.service_name(None), "nova-api");
        assert_eq!(s.origin.service_name(Some("cloud")), "cloud-nova-api");
        assert_eq!(s.origin.host.as_deref(), Some("h1"));
    }

    #[test]
    fn names_are_capped_on_a_character_boundary() {
        let mut asm = Assembler::new(16);
        let mut out = Vec::new();
        let long = "é".repeat(1000);
        let db = format!(r#"{{"db": {{"statement": "{long} x", "params": []}}}}"#);
        asm.push(
            leak(event("db-start", B, A, "2026-01-01T00:00:00.000100", &db)),
            &mut out,
        );
        asm.push(
            leak(event("db-stop", B, A, "2026-01-01T00:00:00.000200", "{}")),
            &mut out,
        );
        assert!(out[0].name.len() <= MAX_NAME, "{}", out[0].name.len());
        assert!(out[0].name.starts_with("SQL_É"));
        // The attribute keeps the whole statement.
        assert!(
            out[0]
                .attributes
                .iter()
                .any(|(k, v)| k == "db.query.text"
                    && *v == AttrValue::Str(format!("{long} x").into()))
        );
    }

    #[test]
    fn bounded_state_drops_oldest_orphans() {
        let mut asm = Assembler::new(2);
        let mut out = Vec::new();
        for i in 1..=3u32 {
            let id = format!("aaaaaaaa-aaaa-4aaa-8aaa-00000000000{i}");
            asm.push(
                leak(event(
                    "x-start",
                    &id,
                    BASE,
                    "2026-01-01T00:00:00.000100",
                    "{}",
                )),
                &mut out,
            );
        }
        assert_eq!(asm.open_points(), 2);
        assert_eq!(asm.stats().orphans_dropped, 1);
        // The first was dropped: its stop is unmatched; the third still pairs.
        asm.push(
            leak(event(
                "x-stop",
                "aaaaaaaa-aaaa-4aaa-8aaa-000000000001",
                BASE,
                "2026-01-01T00:00:00.000200",
                "{}",
            )),
            &mut out,
        );
        asm.push(
            leak(event(
                "x-stop",
                "aaaaaaaa-aaaa-4aaa-8aaa-000000000003",
                BASE,
                "2026-01-01T00:00:00.000200",
                "{}",
            )),
            &mut out,
        );
        assert_eq!(out.len(), 1);
        // The first's stop waits for a start that will not come, until close.
        assert_eq!(asm.stats().unmatched_stops, 0);
        assert_eq!(asm.close(), 1);
        assert_eq!(asm.stats().orphans_dropped, 2);
        assert_eq!(asm.stats().unmatched_stops, 1);
    }

    #[test]
    fn a_stop_before_its_start_still_pairs() {
        // A point started on one thread and stopped on another: the stop's buffer can
        // reach the exporter first, in an earlier batch or earlier in the same one.
        let mut asm = Assembler::new(2);
        let mut out = Vec::new();
        let failed = r#"{"etype": "ValueError", "message": "boom", "host": "h1"}"#;
        asm.push_batch(
            std::slice::from_ref(leak(event(
                "db-stop",
                A,
                BASE,
                "2026-01-01T00:00:00.000900",
                failed,
            ))),
            &mut out,
        );
        assert!(out.is_empty());
        let later: &'static [Event] = Box::leak(Box::new([
            event("x-stop", B, BASE, "2026-01-01T00:00:00.000800", "{}"),
            event(
                "db-start",
                A,
                BASE,
                "2026-01-01T00:00:00.000100",
                r#"{"db": {"statement": "SELECT 1", "params": {}}, "host": "h1"}"#,
            ),
            event("x-start", B, BASE, "2026-01-01T00:00:00.000200", "{}"),
        ]));
        asm.push_batch(later, &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].name, "SQL_SELECT");
        assert_eq!(
            (out[0].start_ns, out[0].end_ns),
            (1767225600000100000, 1767225600000900000)
        );
        let err = out[0].error.as_ref().unwrap();
        assert_eq!((&*err.etype, &*err.message), ("ValueError", "boom"));
        assert_eq!(out[1].name, "x");
        assert_eq!(out[1].end_ns - out[1].start_ns, 600_000);
        assert_eq!(asm.stats(), AssemblerStats::default());
        // Bounded: of three stops whose start never comes, the oldest is dropped.
        for (i, id) in [A, B, "aaaaaaaa-aaaa-4aaa-8aaa-000000000003"]
            .iter()
            .enumerate()
        {
            let ts = format!("2026-01-01T00:00:01.00000{i}");
            asm.push(leak(event("y-stop", id, BASE, &ts, "{}")), &mut out);
        }
        assert_eq!(asm.stats().unmatched_stops, 1);
        asm.close();
        assert_eq!(asm.stats().unmatched_stops, 3);
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn a_batch_pairs_side_by_side_apart_and_across_batches() {
        let ev = |name: &str, id: &str, ts: &str, info: &str| event(name, id, BASE, ts, info);
        let c = "aaaaaaaa-aaaa-4aaa-8aaa-000000000003";
        let first = vec![
            // Side by side (the common case).
            ev(
                "db-start",
                A,
                "2026-01-01T00:00:00.000100",
                r#"{"db": {"statement": "SELECT 1"}}"#,
            ),
            ev("db-stop", A, "2026-01-01T00:00:00.000200", "{}"),
            // Apart: a child in between.
            ev(
                "wsgi-start",
                B,
                "2026-01-01T00:00:00.000300",
                r#"{"request": {"method": "GET", "path": "/x"}}"#,
            ),
            ev(
                "driver-start",
                c,
                "2026-01-01T00:00:00.000400",
                r#"{"vm": "vm-1"}"#,
            ),
            ev(
                "driver-stop",
                c,
                "2026-01-01T00:00:00.000500",
                r#"{"etype": "E", "message": "m"}"#,
            ),
        ];
        let second = vec![ev("wsgi-stop", B, "2026-01-01T00:00:00.000900", "{}")];
        let mut asm = Assembler::new(16);
        let mut out = Vec::new();
        asm.push_batch(&first, &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(asm.open_points(), 1, "the wsgi point waits for its stop");
        assert_eq!(out[0].name, "SQL_SELECT");
        assert!(matches!(out[0].name, Cow::Owned(_)));
        assert_eq!(out[1].name, "driver");
        // Borrowed from the batch's events, not copied.
        assert!(matches!(out[1].name, Cow::Borrowed(_)));
        assert!(
            out[1]
                .attributes
                .iter()
                .any(|(k, v)| k == "vm" && matches!(v, AttrValue::Str(Cow::Borrowed("vm-1"))))
        );
        assert_eq!(out[1].error.as_ref().map(|e| &*e.etype), Some("E"));
        drop(out);
        let mut out = Vec::new();
        asm.push_batch(&second, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].name, "WSGI_GET_/x");
        assert_eq!(
            (out[0].start_ns, out[0].end_ns),
            (1767225600000300000, 1767225600000900000)
        );
        assert_eq!(asm.open_points(), 0);
        assert_eq!(asm.stats(), AssemblerStats::default());
    }
}
