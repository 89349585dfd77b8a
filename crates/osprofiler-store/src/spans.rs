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

/// An attribute's value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum AttrValue {
    Str(String),
    Int(i64),
    Double(f64),
    Bool(bool),
}

pub(crate) type Attr = (Cow<'static, str>, AttrValue);

/// Who wrote a span: becomes the OTLP resource or the Jaeger process.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub(crate) struct Origin {
    pub project: Option<Arc<str>>,
    pub service: Option<Arc<str>>,
    pub host: Option<Arc<str>>,
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
pub(crate) struct SpanError {
    pub etype: String,
    pub message: String,
}

/// A finished point, ready to be encoded.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Span {
    /// The trace (osprofiler's base id): the 128-bit trace id.
    pub base_id: u128,
    /// The point (osprofiler's `trace_id`): its low 64 bits are the span id.
    pub id: u128,
    /// The parent point, or the base id for a first-level point.
    pub parent_id: u128,
    /// The display name: `WSGI_GET_/path`, `SQL_SELECT`, … or the point's name.
    pub name: String,
    pub kind: SpanKind,
    /// Unix nanoseconds, from the events' own timestamps.
    pub start_ns: i64,
    pub end_ns: i64,
    pub origin: Origin,
    pub attributes: Vec<Attr>,
    pub error: Option<SpanError>,
}

impl Span {
    /// The parent's span id, `None` for a first-level point (its parent is the trace).
    pub fn parent_span_id(&self) -> Option<u64> {
        (self.parent_id != self.base_id).then_some(self.parent_id as u64)
    }
}

struct Open {
    name: String,
    kind: SpanKind,
    start_ns: i64,
    parent_id: u128,
    origin: Origin,
    attributes: Vec<Attr>,
    seq: u64,
}

/// Counters of an [`Assembler`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct AssemblerStats {
    /// Starts whose stop never came, dropped when the state was full (or at close).
    pub orphans_dropped: u64,
    /// Stops whose start was never seen (dropped: there is no start time).
    pub unmatched_stops: u64,
}

/// Pairs starts with stops by point id, across batches; holds at most `max_open`
/// open points, dropping (and counting) the oldest when more arrive.
pub(crate) struct Assembler {
    open: HashMap<(u128, u128), Open>,
    order: VecDeque<((u128, u128), u64)>,
    max_open: usize,
    seq: u64,
    stats: AssemblerStats,
}

/// Open points kept by default: a trace of this many unfinished points is far
/// beyond what a request makes, and it bounds memory to a few MiB.
pub(crate) const DEFAULT_MAX_OPEN: usize = 16_384;

impl Assembler {
    pub fn new(max_open: usize) -> Assembler {
        Assembler {
            open: HashMap::new(),
            order: VecDeque::new(),
            max_open: max_open.max(1),
            seq: 0,
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

    /// Takes one event; a stop that ends a known start appends the finished span.
    pub fn push(&mut self, e: &Event, out: &mut Vec<Span>) {
        let key = (e.base_id.0, e.trace_id.0);
        let at_ns = e.timestamp.as_micros().saturating_mul(1000);
        let info = e.info.as_map();
        match e.kind {
            EventKind::Start => {
                let (name, kind) = name_and_kind(&e.name, info);
                let mut attributes = Vec::with_capacity(8);
                attributes.push((
                    Cow::Borrowed("osprofiler.point"),
                    AttrValue::Str(e.name.to_string()),
                ));
                start_attributes(&e.name, info, &mut attributes);
                self.seq += 1;
                let open = Open {
                    name,
                    kind,
                    start_ns: at_ns,
                    parent_id: e.parent_id.0,
                    origin: Origin {
                        project: e.project.clone(),
                        service: e.service.clone(),
                        host: e.host().map(Arc::from),
                    },
                    attributes,
                    seq: self.seq,
                };
                self.open.insert(key, open);
                self.order.push_back((key, self.seq));
                self.evict();
            }
            EventKind::Stop => {
                let Some(mut open) = self.open.remove(&key) else {
                    self.stats.unmatched_stops += 1;
                    return;
                };
                let error = stop_attributes(info, &mut open.attributes);
                out.push(Span {
                    base_id: key.0,
                    id: key.1,
                    parent_id: open.parent_id,
                    name: open.name,
                    kind: open.kind,
                    start_ns: open.start_ns,
                    end_ns: at_ns.max(open.start_ns),
                    origin: open.origin,
                    attributes: open.attributes,
                    error,
                });
                // Keep the order queue from growing with entries already matched.
                if self.order.len() > 2 * self.open.len() + 1024 {
                    let open = &self.open;
                    self.order
                        .retain(|(k, seq)| open.get(k).is_some_and(|o| o.seq == *seq));
                }
            }
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
        self.open.clear();
        self.order.clear();
        n
    }
}

fn str_of<'a>(m: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    m.get(key).and_then(Value::as_str)
}

fn obj<'a>(info: &'a Map<String, Value>, key: &str) -> Option<&'a Map<String, Value>> {
    info.get(key)
        .and_then(Value::as_object)
        .filter(|m| !m.is_empty())
}

/// Longest span name sent: names are for grouping and search (a statement's first word,
/// a path), not for data, which the attributes carry whole.
const MAX_NAME: usize = 256;

fn capped(mut name: String) -> String {
    if name.len() > MAX_NAME {
        let mut i = MAX_NAME;
        while !name.is_char_boundary(i) {
            i -= 1;
        }
        name.truncate(i);
    }
    name
}

/// The span's name (at most [`MAX_NAME`] bytes) and kind.
fn name_and_kind(point: &str, info: &Map<String, Value>) -> (String, SpanKind) {
    let (name, kind) = full_name_and_kind(point, info);
    (capped(name), kind)
}

/// The span's name and kind. Names as osprofiler's OTLP driver gives them
/// (`WSGI_<METHOD>_<path>`, `SQL_<FIRST WORD>`, `REQUESTS_<METHOD>_<hostname>`),
/// the point's own name otherwise; a gRPC server point is named by its method.
fn full_name_and_kind(point: &str, info: &Map<String, Value>) -> (String, SpanKind) {
    let kind = match point {
        "wsgi" => SpanKind::Server,
        "db" | "http" | "https" => SpanKind::Client,
        // The gRPC server layer's point carries the request it serves.
        "rpc" if obj(info, "request").is_some() => SpanKind::Server,
        _ => SpanKind::Internal,
    };
    if point == "rpc"
        && let Some(f) = obj(info, "function").and_then(|f| str_of(f, "name"))
    {
        return (f.to_owned(), kind);
    }
    if let Some(r) = obj(info, "request") {
        let method = str_of(r, "method").unwrap_or("");
        let path = str_of(r, "path").unwrap_or("");
        return (format!("WSGI_{method}_{path}"), kind);
    }
    if let Some(db) = obj(info, "db") {
        let first = str_of(db, "statement")
            .unwrap_or("")
            .split_whitespace()
            .next()
            .unwrap_or("");
        return (format!("SQL_{}", first.to_uppercase()), kind);
    }
    if let Some(r) = obj(info, "requests") {
        let method = str_of(r, "method").unwrap_or("");
        let host = str_of(r, "hostname").unwrap_or("");
        return (format!("REQUESTS_{method}_{host}"), kind);
    }
    (point.to_owned(), kind)
}

fn value_attr(v: &Value) -> Option<AttrValue> {
    Some(match v {
        Value::Null => return None,
        Value::Bool(b) => AttrValue::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => AttrValue::Int(i),
            None => AttrValue::Double(n.as_f64()?),
        },
        Value::String(s) => AttrValue::Str(s.clone()),
        other => AttrValue::Str(other.to_string()),
    })
}

fn put(out: &mut Vec<Attr>, key: &'static str, v: Option<&Value>) {
    if let Some(a) = v.and_then(value_attr) {
        out.push((Cow::Borrowed(key), a));
    }
}

/// OpenTelemetry's semantic names where one exists, osprofiler's keys otherwise.
fn start_attributes(point: &str, info: &Map<String, Value>, out: &mut Vec<Attr>) {
    for (k, v) in info {
        match (k.as_str(), v) {
            // The resource (process) carries the host.
            ("host", _) => {}
            ("request", Value::Object(r)) => {
                put(out, "http.request.method", r.get("method"));
                put(out, "url.path", r.get("path"));
                if r.get("query")
                    .and_then(Value::as_str)
                    .is_some_and(|q| !q.is_empty())
                {
                    put(out, "url.query", r.get("query"));
                }
                put(out, "url.scheme", r.get("scheme"));
                put(out, "server.port", r.get("port"));
                for (rk, rv) in r {
                    if !matches!(rk.as_str(), "method" | "path" | "query" | "scheme" | "port") {
                        flatten(&format!("request.{rk}"), rv, out, 0);
                    }
                }
            }
            ("requests", Value::Object(r)) => {
                put(out, "http.request.method", r.get("method"));
                put(out, "url.path", r.get("path"));
                if r.get("query")
                    .and_then(Value::as_str)
                    .is_some_and(|q| !q.is_empty())
                {
                    put(out, "url.query", r.get("query"));
                }
                put(out, "url.scheme", r.get("scheme"));
                put(out, "server.address", r.get("hostname"));
                put(out, "server.port", r.get("port"));
                for (rk, rv) in r {
                    if !matches!(
                        rk.as_str(),
                        "method" | "path" | "query" | "scheme" | "hostname" | "port"
                    ) {
                        flatten(&format!("requests.{rk}"), rv, out, 0);
                    }
                }
            }
            ("db", Value::Object(d)) => {
                put(out, "db.query.text", d.get("statement"));
                if let Some(p) = d.get("params").filter(|p| !p.is_null()) {
                    // As osprofiler's drivers: the parameters as one JSON text.
                    out.push((Cow::Borrowed("db.params"), AttrValue::Str(p.to_string())));
                }
                for (dk, dv) in d {
                    if !matches!(dk.as_str(), "statement" | "params") {
                        flatten(&format!("db.{dk}"), dv, out, 0);
                    }
                }
            }
            ("function", Value::Object(f)) => {
                if point == "rpc" && obj(info, "request").is_some() {
                    out.push((Cow::Borrowed("rpc.system"), AttrValue::Str("grpc".into())));
                    if let Some((service, method)) =
                        str_of(f, "name").and_then(|n| n.rsplit_once('.'))
                    {
                        out.push((Cow::Borrowed("rpc.service"), AttrValue::Str(service.into())));
                        out.push((Cow::Borrowed("rpc.method"), AttrValue::Str(method.into())));
                    }
                }
                put(out, "code.function.name", f.get("name"));
                put(out, "args", f.get("args"));
                put(out, "kwargs", f.get("kwargs"));
                for (fk, fv) in f {
                    if !matches!(fk.as_str(), "name" | "args" | "kwargs") {
                        flatten(&format!("function.{fk}"), fv, out, 0);
                    }
                }
            }
            (k, v) => flatten(k, v, out, 0),
        }
    }
}

/// Stop info: results, status codes, errors. Returns the error of a failed point.
fn stop_attributes(info: &Map<String, Value>, out: &mut Vec<Attr>) -> Option<SpanError> {
    let mut etype = None;
    let mut message = None;
    for (k, v) in info {
        match (k.as_str(), v) {
            ("host", _) => {}
            ("etype", v) => etype = Some(text(v)),
            ("message", v) => message = Some(text(v)),
            ("function", Value::Object(f)) => {
                put(out, "result", f.get("result"));
                for (fk, fv) in f {
                    if fk != "result" {
                        flatten(&format!("function.{fk}"), fv, out, 0);
                    }
                }
            }
            ("db", Value::Object(d)) => {
                put(out, "result", d.get("result"));
            }
            ("requests", Value::Object(r)) => {
                put(out, "http.response.status_code", r.get("status_code"));
                for (rk, rv) in r {
                    if rk != "status_code" {
                        flatten(&format!("requests.{rk}"), rv, out, 0);
                    }
                }
            }
            ("response", Value::Object(r)) => {
                for (rk, rv) in r {
                    match rk.as_str() {
                        "status" | "status_code" => put(out, "http.response.status_code", Some(rv)),
                        "grpc_status" => put(out, "rpc.grpc.status_code", Some(rv)),
                        _ => flatten(&format!("response.{rk}"), rv, out, 0),
                    }
                }
            }
            (k, v) => flatten(k, v, out, 0),
        }
    }
    etype.map(|etype| SpanError {
        etype,
        message: message.unwrap_or_default(),
    })
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A nested object becomes dotted keys (`a.b.c`), up to a small depth; deeper
/// values and arrays are kept as JSON text.
fn flatten(key: &str, v: &Value, out: &mut Vec<Attr>, depth: usize) {
    match v {
        Value::Object(m) if depth < 4 && !m.is_empty() => {
            for (k, v) in m {
                flatten(&format!("{key}.{k}"), v, out, depth + 1);
            }
        }
        Value::Null => {}
        v => {
            if let Some(a) = value_attr(v) {
                out.push((Cow::Owned(key.to_owned()), a));
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

    const A: &str = "aaaaaaaa-aaaa-4aaa-8aaa-000000000001";
    const B: &str = "aaaaaaaa-aaaa-4aaa-8aaa-000000000002";

    #[test]
    fn pairs_by_point_id_not_by_stack() {
        let mut asm = Assembler::new(16);
        let mut out = Vec::new();
        // Two concurrent first-level points whose stops come in start order:
        // a per-process stack (Python's) would end each with the other's stop.
        let wsgi = r#"{"request": {"path": "/v2.1/servers", "query": "", "method": "GET", "scheme": "http"}, "host": "h1"}"#;
        asm.push(
            &event("wsgi-start", A, BASE, "2026-01-01T00:00:00.000100", wsgi),
            &mut out,
        );
        asm.push(
            &event(
                "list_servers-start",
                B,
                BASE,
                "2026-01-01T00:00:00.000200",
                r#"{"host": "h1"}"#,
            ),
            &mut out,
        );
        asm.push(
            &event(
                "wsgi-stop",
                A,
                BASE,
                "2026-01-01T00:00:00.000900",
                r#"{"host": "h1"}"#,
            ),
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
            &event(
                "list_servers-stop",
                B,
                BASE,
                "2026-01-01T00:00:00.000300",
                r#"{"host": "h1"}"#,
            ),
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
            &event("db-start", B, A, "2026-01-01T00:00:00.000100", db),
            &mut out,
        );
        asm.push(
            &event(
                "db-stop",
                B,
                A,
                "2026-01-01T00:00:00.000200",
                r#"{"etype": "OperationalError", "message": "locked", "host": "h1"}"#,
            ),
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
            &event("db-start", B, A, "2026-01-01T00:00:00.000100", &db),
            &mut out,
        );
        asm.push(
            &event("db-stop", B, A, "2026-01-01T00:00:00.000200", "{}"),
            &mut out,
        );
        assert!(out[0].name.len() <= MAX_NAME, "{}", out[0].name.len());
        assert!(out[0].name.starts_with("SQL_É"));
        // The attribute keeps the whole statement.
        assert!(
            out[0]
                .attributes
                .iter()
                .any(|(k, v)| k == "db.query.text" && *v == AttrValue::Str(format!("{long} x")))
        );
    }

    #[test]
    fn bounded_state_drops_oldest_orphans() {
        let mut asm = Assembler::new(2);
        let mut out = Vec::new();
        for i in 1..=3u32 {
            let id = format!("aaaaaaaa-aaaa-4aaa-8aaa-00000000000{i}");
            asm.push(
                &event("x-start", &id, BASE, "2026-01-01T00:00:00.000100", "{}"),
                &mut out,
            );
        }
        assert_eq!(asm.open_points(), 2);
        assert_eq!(asm.stats().orphans_dropped, 1);
        // The first was dropped: its stop is unmatched; the third still pairs.
        asm.push(
            &event(
                "x-stop",
                "aaaaaaaa-aaaa-4aaa-8aaa-000000000001",
                BASE,
                "2026-01-01T00:00:00.000200",
                "{}",
            ),
            &mut out,
        );
        asm.push(
            &event(
                "x-stop",
                "aaaaaaaa-aaaa-4aaa-8aaa-000000000003",
                BASE,
                "2026-01-01T00:00:00.000200",
                "{}",
            ),
            &mut out,
        );
        assert_eq!(out.len(), 1);
        assert_eq!(asm.stats().unmatched_stops, 1);
        assert_eq!(asm.close(), 1);
        assert_eq!(asm.stats().orphans_dropped, 2);
    }
}
