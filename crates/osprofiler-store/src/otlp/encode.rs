//! `ExportTraceServiceRequest` bytes written straight from [`Span`]s.
//!
//! Building `opentelemetry_proto`'s message structs would cost a `String` or `Vec`
//! per id, name, key and value of every span, and prost then walks the tree twice
//! (lengths, then bytes). Here each span's length is computed once from the span
//! itself and the bytes are written into one reused buffer: no allocation per span.
//! The unit tests check that the bytes are exactly what prost writes for the same
//! `opentelemetry_proto` messages, field order included.

use std::sync::Arc;

use prost::encoding::{encode_varint, encoded_len_varint};

use crate::spans::{AttrValue, Span, SpanKind};

/// Protobuf wire types.
const VARINT: u32 = 0;
const I64: u32 = 1;
const LEN: u32 = 2;
const I32: u32 = 5;

/// OTLP's enum values.
const STATUS_CODE_ERROR: u64 = 2;
/// W3C trace flags: sampled.
const FLAG_SAMPLED: u32 = 1;

/// The instrumentation scope of every span.
pub(crate) const SCOPE_NAME: &str = "osprofiler";
pub(crate) const SCOPE_VERSION: &str = env!("CARGO_PKG_VERSION");

const EXCEPTION: &str = "exception";
const EXCEPTION_TYPE: &str = "exception.type";
const EXCEPTION_MESSAGE: &str = "exception.message";

fn kind_value(k: SpanKind) -> u64 {
    match k {
        SpanKind::Internal => 1,
        SpanKind::Server => 2,
        SpanKind::Client => 3,
    }
}

/// An attribute value, borrowed (the exception attributes are not in the span's list).
#[derive(Clone, Copy)]
enum Val<'a> {
    Str(&'a str),
    Int(i64),
    Double(f64),
    Bool(bool),
}

impl<'a> From<&'a AttrValue<'_>> for Val<'a> {
    fn from(v: &'a AttrValue) -> Val<'a> {
        match v {
            AttrValue::Str(s) => Val::Str(s),
            AttrValue::Int(i) => Val::Int(*i),
            AttrValue::Double(d) => Val::Double(*d),
            AttrValue::Bool(b) => Val::Bool(*b),
        }
    }
}

// ---- lengths

fn key_len(field: u32) -> usize {
    encoded_len_varint(u64::from(field << 3))
}

/// A length-delimited field whose body is `n` bytes.
fn len_field(field: u32, n: usize) -> usize {
    key_len(field) + encoded_len_varint(n as u64) + n
}

/// A proto3 string field: absent when empty.
fn str_field(field: u32, s: &str) -> usize {
    if s.is_empty() {
        0
    } else {
        len_field(field, s.len())
    }
}

/// `AnyValue`: the oneof is written even when its value is the default.
fn any_len(v: Val<'_>) -> usize {
    match v {
        Val::Str(s) => len_field(1, s.len()),
        Val::Bool(_) => 2,
        Val::Int(i) => 1 + encoded_len_varint(i as u64),
        Val::Double(_) => 9,
    }
}

/// `KeyValue`.
fn kv_len(key: &str, v: Val<'_>) -> usize {
    str_field(1, key) + len_field(2, any_len(v))
}

fn event_len(e: &crate::spans::SpanError, at: u64) -> usize {
    (if at != 0 { 9 } else { 0 })
        + str_field(2, EXCEPTION)
        + len_field(3, kv_len(EXCEPTION_TYPE, Val::Str(&e.etype)))
        + len_field(3, kv_len(EXCEPTION_MESSAGE, Val::Str(&e.message)))
}

fn status_len(e: &crate::spans::SpanError) -> usize {
    str_field(2, &e.message) + 2
}

fn nanos(t: i64) -> u64 {
    u64::try_from(t).unwrap_or(0)
}

/// The encoded length of a `Span` message (its body, without key and length).
fn span_len(s: &Span) -> usize {
    let mut n = len_field(1, 16) + len_field(2, 8);
    if s.parent_span_id().is_some() {
        n += len_field(4, 8);
    }
    n += str_field(5, &s.name) + 2;
    if nanos(s.start_ns) != 0 {
        n += 9;
    }
    let end = nanos(s.end_ns);
    if end != 0 {
        n += 9;
    }
    for (k, v) in &s.attributes {
        n += len_field(9, kv_len(k, v.into()));
    }
    if let Some(e) = &s.error {
        n += len_field(9, kv_len(EXCEPTION_TYPE, Val::Str(&e.etype)));
        n += len_field(9, kv_len(EXCEPTION_MESSAGE, Val::Str(&e.message)));
        n += len_field(11, event_len(e, end));
        n += len_field(15, status_len(e));
    }
    // flags: field 16 takes a two-byte key.
    n + key_len(16) + 4
}

// ---- bytes

fn put_key(out: &mut Vec<u8>, field: u32, wire: u32) {
    encode_varint(u64::from((field << 3) | wire), out);
}

fn put_len(out: &mut Vec<u8>, field: u32, n: usize) {
    put_key(out, field, LEN);
    encode_varint(n as u64, out);
}

fn put_bytes(out: &mut Vec<u8>, field: u32, b: &[u8]) {
    put_len(out, field, b.len());
    out.extend_from_slice(b);
}

fn put_str(out: &mut Vec<u8>, field: u32, s: &str) {
    if !s.is_empty() {
        put_bytes(out, field, s.as_bytes());
    }
}

fn put_fixed64(out: &mut Vec<u8>, field: u32, v: u64) {
    put_key(out, field, I64);
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_varint(out: &mut Vec<u8>, field: u32, v: u64) {
    put_key(out, field, VARINT);
    encode_varint(v, out);
}

/// A `KeyValue` as field `field` of the enclosing message.
fn put_kv(out: &mut Vec<u8>, field: u32, key: &str, v: Val<'_>) {
    put_len(out, field, kv_len(key, v));
    put_str(out, 1, key);
    put_len(out, 2, any_len(v));
    match v {
        Val::Str(s) => put_bytes(out, 1, s.as_bytes()),
        Val::Bool(b) => put_varint(out, 2, u64::from(b)),
        Val::Int(i) => put_varint(out, 3, i as u64),
        Val::Double(d) => put_fixed64(out, 4, d.to_bits()),
    }
}

/// A `Span` body of `span_len(s)` bytes, fields in tag order as prost writes them.
fn put_span(out: &mut Vec<u8>, s: &Span) {
    put_bytes(out, 1, &s.base_id.to_be_bytes());
    put_bytes(out, 2, &(s.id as u64).to_be_bytes());
    if let Some(parent) = s.parent_span_id() {
        put_bytes(out, 4, &parent.to_be_bytes());
    }
    put_str(out, 5, &s.name);
    put_varint(out, 6, kind_value(s.kind));
    let (start, end) = (nanos(s.start_ns), nanos(s.end_ns));
    if start != 0 {
        put_fixed64(out, 7, start);
    }
    if end != 0 {
        put_fixed64(out, 8, end);
    }
    for (k, v) in &s.attributes {
        put_kv(out, 9, k, v.into());
    }
    if let Some(e) = &s.error {
        put_kv(out, 9, EXCEPTION_TYPE, Val::Str(&e.etype));
        put_kv(out, 9, EXCEPTION_MESSAGE, Val::Str(&e.message));
        put_len(out, 11, event_len(e, end));
        if end != 0 {
            put_fixed64(out, 1, end);
        }
        put_str(out, 2, EXCEPTION);
        put_kv(out, 3, EXCEPTION_TYPE, Val::Str(&e.etype));
        put_kv(out, 3, EXCEPTION_MESSAGE, Val::Str(&e.message));
        put_len(out, 15, status_len(e));
        put_str(out, 2, &e.message);
        put_varint(out, 3, STATUS_CODE_ERROR);
    }
    put_key(out, 16, I32);
    out.extend_from_slice(&FLAG_SAMPLED.to_le_bytes());
}

/// The spans of one origin: one `ResourceSpans`.
struct Group {
    service_name: String,
    host: Option<Arc<str>>,
    /// A span of this origin (to compare origins with).
    first: usize,
    /// Its spans, `order[start..start + count]`.
    start: usize,
    count: usize,
    /// Length of the `Resource` message.
    resource_len: usize,
}

/// Where a request's spans come from: `order[from..to]`, all of group `group`.
#[derive(Clone, Copy)]
struct Segment {
    group: usize,
    from: usize,
    to: usize,
}

/// Writes `ExportTraceServiceRequest`s; keeps its scratch space from batch to batch.
pub(crate) struct Encoder {
    prefix: Option<String>,
    lens: Vec<usize>,
    group_of: Vec<usize>,
    order: Vec<usize>,
    groups: Vec<Group>,
    segments: Vec<Segment>,
}

impl Encoder {
    /// `prefix`: of every service name (`<prefix>-<project>-<service>`).
    pub(crate) fn new(prefix: Option<String>) -> Encoder {
        Encoder {
            prefix,
            lens: Vec::new(),
            group_of: Vec::new(),
            order: Vec::new(),
            groups: Vec::new(),
            segments: Vec::new(),
        }
    }

    /// Encodes `spans` into requests of at most about `max_bytes` each (a span larger
    /// than that goes alone), one `ResourceSpans` per origin in each, and calls `send`
    /// with each request (in `buf`, which `send` may take) and its number of spans.
    /// Stops at the first error of `send`.
    pub(crate) fn encode<E>(
        &mut self,
        spans: &[Span],
        max_bytes: usize,
        buf: &mut Vec<u8>,
        mut send: impl FnMut(&mut Vec<u8>, usize) -> Result<(), E>,
    ) -> Result<(), E> {
        self.group(spans);
        self.segments.clear();
        // Cut into requests: what a span adds is its field; what a new segment adds
        // is the resource and scope around it (lengths bounded by 5-byte varints).
        let scope = self.scope_len();
        let mut total = 0usize;
        let mut in_request = 0usize;
        for g in 0..self.groups.len() {
            let (start, count) = (self.groups[g].start, self.groups[g].count);
            let overhead =
                2 * (1 + 5) + len_field(1, self.groups[g].resource_len) + len_field(1, scope);
            let mut from = start;
            total += overhead;
            for at in start..start + count {
                let cost = len_field(2, self.lens[self.order[at]]);
                if in_request > 0 && total + cost > max_bytes {
                    if at > from {
                        self.segments.push(Segment {
                            group: g,
                            from,
                            to: at,
                        });
                    }
                    self.flush(spans, buf, in_request, &mut send)?;
                    from = at;
                    total = overhead;
                    in_request = 0;
                }
                total += cost;
                in_request += 1;
            }
            if start + count > from {
                self.segments.push(Segment {
                    group: g,
                    from,
                    to: start + count,
                });
            }
        }
        if in_request > 0 {
            self.flush(spans, buf, in_request, &mut send)?;
        }
        Ok(())
    }

    /// Sorts the spans by origin (`order`, `groups`) and measures each (`lens`).
    fn group(&mut self, spans: &[Span]) {
        self.groups.clear();
        self.group_of.clear();
        self.lens.clear();
        let mut last = usize::MAX;
        for (i, s) in spans.iter().enumerate() {
            self.lens.push(span_len(s));
            // Consecutive spans mostly share their origin: try the last one first.
            let g = if last < self.groups.len() && spans[self.groups[last].first].origin == s.origin
            {
                last
            } else if let Some(g) = self
                .groups
                .iter()
                .position(|g| spans[g.first].origin == s.origin)
            {
                g
            } else {
                let service_name = s.origin.service_name(self.prefix.as_deref());
                let host = s.origin.host.clone();
                let resource_len = resource_len(&service_name, host.as_deref());
                self.groups.push(Group {
                    service_name,
                    host,
                    first: i,
                    start: 0,
                    count: 0,
                    resource_len,
                });
                self.groups.len() - 1
            };
            self.groups[g].count += 1;
            self.group_of.push(g);
            last = g;
        }
        let mut next = 0;
        for g in &mut self.groups {
            g.start = next;
            next += g.count;
            g.count = 0;
        }
        self.order.clear();
        self.order.resize(spans.len(), 0);
        for (i, &g) in self.group_of.iter().enumerate() {
            let group = &mut self.groups[g];
            self.order[group.start + group.count] = i;
            group.count += 1;
        }
    }

    fn scope_len(&self) -> usize {
        str_field(1, SCOPE_NAME) + str_field(2, SCOPE_VERSION)
    }

    /// Writes the request of the pending segments into `buf` and sends it.
    fn flush<E>(
        &mut self,
        spans: &[Span],
        buf: &mut Vec<u8>,
        count: usize,
        send: &mut impl FnMut(&mut Vec<u8>, usize) -> Result<(), E>,
    ) -> Result<(), E> {
        let scope = self.scope_len();
        let mut total = 0;
        for seg in &self.segments {
            total += len_field(1, self.resource_spans_len(*seg, scope));
        }
        buf.clear();
        buf.reserve(total);
        for seg in &self.segments {
            let group = &self.groups[seg.group];
            put_len(buf, 1, self.resource_spans_len(*seg, scope));
            // ResourceSpans.resource
            put_len(buf, 1, group.resource_len);
            put_kv(buf, 1, "service.name", Val::Str(&group.service_name));
            if let Some(h) = &group.host {
                put_kv(buf, 1, "host.name", Val::Str(h));
            }
            // ResourceSpans.scope_spans
            put_len(buf, 2, self.scope_spans_len(*seg, scope));
            put_len(buf, 1, scope);
            put_str(buf, 1, SCOPE_NAME);
            put_str(buf, 2, SCOPE_VERSION);
            for &i in &self.order[seg.from..seg.to] {
                put_len(buf, 2, self.lens[i]);
                let before = buf.len();
                put_span(buf, &spans[i]);
                debug_assert_eq!(buf.len() - before, self.lens[i]);
            }
        }
        debug_assert_eq!(buf.len(), total);
        self.segments.clear();
        send(buf, count)
    }

    fn scope_spans_len(&self, seg: Segment, scope: usize) -> usize {
        len_field(1, scope)
            + self.order[seg.from..seg.to]
                .iter()
                .map(|&i| len_field(2, self.lens[i]))
                .sum::<usize>()
    }

    fn resource_spans_len(&self, seg: Segment, scope: usize) -> usize {
        len_field(1, self.groups[seg.group].resource_len)
            + len_field(2, self.scope_spans_len(seg, scope))
    }
}

/// Length of the `Resource` message: `service.name` and `host.name`.
fn resource_len(service_name: &str, host: Option<&str>) -> usize {
    len_field(1, kv_len("service.name", Val::Str(service_name)))
        + host.map_or(0, |h| len_field(1, kv_len("host.name", Val::Str(h))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spans::{Origin, SpanError};
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{
        AnyValue, InstrumentationScope, KeyValue, any_value,
    };
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Status, span};
    use prost::Message;
    use std::borrow::Cow;

    const BASE: u128 = 0x1111_1111_2222_3333_4444_5555_5555_5555;

    fn origin(service: &str, host: Option<&str>) -> Origin {
        Origin {
            project: Some(Arc::from("nova")),
            service: Some(Arc::from(service)),
            host: host.map(Arc::from),
        }
    }

    fn span(id: u128, parent: u128, name: &str, origin: Origin) -> Span<'_> {
        Span {
            base_id: BASE,
            id,
            parent_id: parent,
            name: name.into(),
            kind: SpanKind::Internal,
            start_ns: 1_767_225_600_000_100_000,
            end_ns: 1_767_225_600_000_900_000,
            origin,
            attributes: vec![(
                Cow::Borrowed("osprofiler.point"),
                AttrValue::Str(name.into()),
            )],
            error: None,
        }
    }

    fn sample() -> Vec<Span<'static>> {
        let api = origin("api", Some("host-a"));
        let compute = origin("compute", Some("host-b"));
        let wsgi_id = 0xaaaa_aaaa_aaaa_4aaa_8aaa_0000_0000_0001;
        let mut wsgi = span(wsgi_id, BASE, "WSGI_GET_/v2.1/servers", api.clone());
        wsgi.kind = SpanKind::Server;
        wsgi.attributes.extend([
            (
                Cow::Borrowed("http.request.method"),
                AttrValue::Str("GET".into()),
            ),
            (Cow::Owned("server.port".into()), AttrValue::Int(8774)),
            (Cow::Borrowed("neg"), AttrValue::Int(-3)),
            (Cow::Borrowed("zero"), AttrValue::Int(0)),
            (Cow::Borrowed("ratio"), AttrValue::Double(0.25)),
            (Cow::Borrowed("cached"), AttrValue::Bool(false)),
            (Cow::Borrowed("empty"), AttrValue::Str(String::new().into())),
        ]);
        let mut db = span(0xbbbb_0000_0000_0002, wsgi_id, "SQL_SELECT", api);
        db.kind = SpanKind::Client;
        let mut driver = span(0xcccc_0000_0000_0003, wsgi_id, "driver", compute.clone());
        driver.error = Some(SpanError {
            etype: "NoValidHost".into(),
            message: "No valid host was found".into(),
        });
        let mut quiet = span(0xdddd_0000_0000_0004, wsgi_id, "", origin("x", None));
        quiet.error = Some(SpanError {
            etype: "E".into(),
            message: String::new().into(),
        });
        quiet.start_ns = 0;
        quiet.end_ns = 0;
        // Out of origin order: the encoder groups them.
        vec![wsgi, driver, db, quiet, span(5, BASE, "late", compute)]
    }

    fn kv(key: &str, v: any_value::Value) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(v) }),
            ..Default::default()
        }
    }

    fn s(v: &str) -> any_value::Value {
        any_value::Value::StringValue(v.into())
    }

    /// The same spans as prost messages, built the obvious way.
    fn reference(spans: &[Span], prefix: Option<&str>) -> ExportTraceServiceRequest {
        let mut out: Vec<(Origin, Vec<opentelemetry_proto::tonic::trace::v1::Span>)> = Vec::new();
        for sp in spans {
            let mut attributes: Vec<KeyValue> = sp
                .attributes
                .iter()
                .map(|(k, v)| {
                    kv(
                        k,
                        match v {
                            AttrValue::Str(x) => s(x),
                            AttrValue::Int(i) => any_value::Value::IntValue(*i),
                            AttrValue::Double(d) => any_value::Value::DoubleValue(*d),
                            AttrValue::Bool(b) => any_value::Value::BoolValue(*b),
                        },
                    )
                })
                .collect();
            let mut events = Vec::new();
            let mut status = None;
            if let Some(e) = &sp.error {
                let ex = vec![
                    kv("exception.type", s(&e.etype)),
                    kv("exception.message", s(&e.message)),
                ];
                attributes.extend(ex.clone());
                events.push(span::Event {
                    time_unix_nano: sp.end_ns as u64,
                    name: "exception".into(),
                    attributes: ex,
                    dropped_attributes_count: 0,
                });
                status = Some(Status {
                    message: e.message.to_string(),
                    code: 2,
                });
            }
            let msg = opentelemetry_proto::tonic::trace::v1::Span {
                trace_id: sp.base_id.to_be_bytes().to_vec(),
                span_id: (sp.id as u64).to_be_bytes().to_vec(),
                parent_span_id: sp
                    .parent_span_id()
                    .map(|p| p.to_be_bytes().to_vec())
                    .unwrap_or_default(),
                flags: 1,
                name: sp.name.to_string(),
                kind: kind_value(sp.kind) as i32,
                start_time_unix_nano: sp.start_ns as u64,
                end_time_unix_nano: sp.end_ns as u64,
                attributes,
                events,
                status,
                ..Default::default()
            };
            match out.iter_mut().find(|(o, _)| *o == sp.origin) {
                Some((_, v)) => v.push(msg),
                None => out.push((sp.origin.clone(), vec![msg])),
            }
        }
        ExportTraceServiceRequest {
            resource_spans: out
                .into_iter()
                .map(|(o, spans)| {
                    let mut attributes = vec![kv("service.name", s(&o.service_name(prefix)))];
                    if let Some(h) = &o.host {
                        attributes.push(kv("host.name", s(h)));
                    }
                    ResourceSpans {
                        resource: Some(Resource {
                            attributes,
                            ..Default::default()
                        }),
                        scope_spans: vec![ScopeSpans {
                            scope: Some(InstrumentationScope {
                                name: SCOPE_NAME.into(),
                                version: SCOPE_VERSION.into(),
                                ..Default::default()
                            }),
                            spans,
                            schema_url: String::new(),
                        }],
                        schema_url: String::new(),
                    }
                })
                .collect(),
        }
    }

    fn encode_all(spans: &[Span], prefix: Option<&str>, max: usize) -> Vec<(Vec<u8>, usize)> {
        let mut enc = Encoder::new(prefix.map(str::to_owned));
        let mut buf = Vec::new();
        let mut sent = Vec::new();
        enc.encode(spans, max, &mut buf, |b, n| {
            sent.push((b.clone(), n));
            Ok::<(), ()>(())
        })
        .unwrap();
        sent
    }

    #[test]
    fn bytes_are_prosts() {
        let spans = sample();
        for prefix in [None, Some("cloud")] {
            let sent = encode_all(&spans, prefix, 4 << 20);
            assert_eq!(sent.len(), 1);
            assert_eq!(sent[0].1, spans.len());
            let want = reference(&spans, prefix);
            assert_eq!(sent[0].0, want.encode_to_vec(), "prefix {prefix:?}");
            let back = ExportTraceServiceRequest::decode(&sent[0].0[..]).unwrap();
            assert_eq!(back, want);
        }
    }

    #[test]
    fn ids_and_resources() {
        let sent = encode_all(&sample(), Some("cloud"), 4 << 20);
        let req = ExportTraceServiceRequest::decode(&sent[0].0[..]).unwrap();
        let names: Vec<String> = req
            .resource_spans
            .iter()
            .map(
                |r| match &r.resource.as_ref().unwrap().attributes[0].value {
                    Some(AnyValue {
                        value: Some(any_value::Value::StringValue(v)),
                    }) => v.clone(),
                    _ => panic!("no service.name"),
                },
            )
            .collect();
        assert_eq!(
            names,
            ["cloud-nova-api", "cloud-nova-compute", "cloud-nova-x"]
        );
        let wsgi = &req.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(hex(&wsgi.trace_id), "11111111222233334444555555555555");
        assert_eq!(hex(&wsgi.span_id), "8aaa000000000001");
        assert!(wsgi.parent_span_id.is_empty());
        let db = &req.resource_spans[0].scope_spans[0].spans[1];
        assert_eq!(hex(&db.parent_span_id), "8aaa000000000001");
        let driver = &req.resource_spans[1].scope_spans[0].spans[0];
        assert_eq!(driver.status.as_ref().unwrap().code, 2);
        assert_eq!(driver.events[0].name, "exception");
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn splits_big_batches() {
        let o = origin("api", Some("h"));
        let spans: Vec<Span> = (1..=1000u128)
            .map(|i| {
                let mut sp = span(
                    i,
                    BASE,
                    "p",
                    if i % 3 == 0 {
                        origin("b", None)
                    } else {
                        o.clone()
                    },
                );
                sp.attributes.push((
                    Cow::Borrowed("blob"),
                    AttrValue::Str("x".repeat(1000).into()),
                ));
                sp
            })
            .collect();
        let max = 64 * 1024;
        let sent = encode_all(&spans, None, max);
        assert!(sent.len() > 10, "{}", sent.len());
        let mut ids = Vec::new();
        for (bytes, n) in &sent {
            assert!(bytes.len() <= max, "{}", bytes.len());
            let req = ExportTraceServiceRequest::decode(&bytes[..]).unwrap();
            let spans_in: Vec<_> = req
                .resource_spans
                .iter()
                .flat_map(|r| r.scope_spans[0].spans.iter())
                .collect();
            assert_eq!(spans_in.len(), *n);
            ids.extend(
                spans_in
                    .iter()
                    .map(|s| u64::from_be_bytes(s.span_id[..].try_into().unwrap())),
            );
        }
        ids.sort_unstable();
        assert_eq!(ids, (1..=1000u64).collect::<Vec<_>>());
        // A span bigger than the limit still goes, alone.
        let sent = encode_all(&spans[..3], None, 100);
        assert_eq!(sent.iter().map(|s| s.1).collect::<Vec<_>>(), [1, 1, 1]);
    }

    #[test]
    fn nothing_to_send() {
        assert!(encode_all(&[], None, 1024).is_empty());
    }
}
