//! `ExportTraceServiceRequest`s made of `opentelemetry_proto`'s message types and
//! encoded by prost.
//!
//! The messages are kept from batch to batch: a span's ids, name, attribute keys and
//! string values are written into the vectors and strings the spans of the last batch
//! left behind (cleared, their capacity kept), so once the first batches have been
//! through, a batch costs no allocation per span or per attribute (the SDK's transform
//! builds the tree afresh for every export).

use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{Span as ProtoSpan, SpanFlags, Status, span, status};
use prost::Message;
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint};

use crate::spans::{AttrValue, Span, SpanError, SpanKind};

/// The instrumentation scope of every span.
pub(crate) const SCOPE_NAME: &str = "osprofiler";
pub(crate) const SCOPE_VERSION: &str = env!("CARGO_PKG_VERSION");

const EXCEPTION: &str = "exception";
const EXCEPTION_TYPE: &str = "exception.type";
const EXCEPTION_MESSAGE: &str = "exception.message";

/// W3C trace flags: sampled (the low byte of `Span.flags`).
const FLAG_SAMPLED: u32 = 1;
const _: () = assert!(FLAG_SAMPLED & SpanFlags::TraceFlagsMask as u32 == FLAG_SAMPLED);

fn kind_value(k: SpanKind) -> i32 {
    use opentelemetry_proto::tonic::trace::v1::span::SpanKind as K;
    match k {
        SpanKind::Internal => K::Internal as i32,
        SpanKind::Server => K::Server as i32,
        SpanKind::Client => K::Client as i32,
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

// ---- filling reused messages

fn set_str(to: &mut String, s: &str) {
    to.clear();
    to.push_str(s);
}

fn set_bytes(to: &mut Vec<u8>, b: &[u8]) {
    to.clear();
    to.extend_from_slice(b);
}

/// Sets `list[*n]` (added if the list is shorter) to `key = v` and counts it; the
/// caller truncates the list to `*n` at the end.
fn put_kv(list: &mut Vec<KeyValue>, n: &mut usize, key: &str, v: Val<'_>) {
    if *n == list.len() {
        list.push(KeyValue::default());
    }
    let kv = &mut list[*n];
    *n += 1;
    set_str(&mut kv.key, key);
    let slot = &mut kv.value.get_or_insert_with(AnyValue::default).value;
    use any_value::Value as V;
    match (v, slot) {
        (Val::Str(s), Some(V::StringValue(old))) => set_str(old, s),
        (Val::Str(s), slot) => *slot = Some(V::StringValue(s.to_owned())),
        (Val::Int(i), slot) => *slot = Some(V::IntValue(i)),
        (Val::Double(d), slot) => *slot = Some(V::DoubleValue(d)),
        (Val::Bool(b), slot) => *slot = Some(V::BoolValue(b)),
    }
}

fn nanos(t: i64) -> u64 {
    u64::try_from(t).unwrap_or(0)
}

/// Makes `p` (a message of an earlier batch, or a new one) the span `s`.
fn fill(p: &mut ProtoSpan, s: &Span) {
    set_bytes(&mut p.trace_id, &s.base_id.to_be_bytes());
    set_bytes(&mut p.span_id, &(s.id as u64).to_be_bytes());
    p.trace_state.clear();
    p.parent_span_id.clear();
    if let Some(parent) = s.parent_span_id() {
        p.parent_span_id.extend_from_slice(&parent.to_be_bytes());
    }
    p.flags = FLAG_SAMPLED;
    set_str(&mut p.name, &s.name);
    p.kind = kind_value(s.kind);
    p.start_time_unix_nano = nanos(s.start_ns);
    p.end_time_unix_nano = nanos(s.end_ns);
    let mut n = 0;
    for (k, v) in &s.attributes {
        put_kv(&mut p.attributes, &mut n, k, v.into());
    }
    p.dropped_attributes_count = 0;
    p.dropped_events_count = 0;
    p.links.clear();
    p.dropped_links_count = 0;
    match &s.error {
        Some(e) => {
            exception(&mut p.attributes, &mut n, e);
            p.events.truncate(1);
            if p.events.is_empty() {
                p.events.push(span::Event::default());
            }
            let ev = &mut p.events[0];
            ev.time_unix_nano = p.end_time_unix_nano;
            set_str(&mut ev.name, EXCEPTION);
            ev.dropped_attributes_count = 0;
            let mut m = 0;
            exception(&mut ev.attributes, &mut m, e);
            ev.attributes.truncate(m);
            let st = p.status.get_or_insert_with(Status::default);
            set_str(&mut st.message, &e.message);
            st.code = status::StatusCode::Error as i32;
        }
        None => {
            p.events.clear();
            p.status = None;
        }
    }
    p.attributes.truncate(n);
}

fn exception(list: &mut Vec<KeyValue>, n: &mut usize, e: &SpanError) {
    put_kv(list, n, EXCEPTION_TYPE, Val::Str(&e.etype));
    put_kv(list, n, EXCEPTION_MESSAGE, Val::Str(&e.message));
}

/// Most span messages kept for the next batch (a batch has at most 2,048 spans, plus
/// any whose start came in an earlier one).
const KEEP_SPANS: usize = 4096;
/// Most string bytes a kept span message may hold.
const KEEP_SPAN_BYTES: usize = 4096;

/// The string capacity a span message holds.
fn kept_bytes(p: &ProtoSpan) -> usize {
    fn list(l: &[KeyValue]) -> usize {
        l.iter()
            .map(|kv| {
                kv.key.capacity()
                    + match &kv.value {
                        Some(AnyValue {
                            value: Some(any_value::Value::StringValue(s)),
                        }) => s.capacity(),
                        _ => 0,
                    }
            })
            .sum()
    }
    p.name.capacity()
        + list(&p.attributes)
        + p.events.iter().map(|e| list(&e.attributes)).sum::<usize>()
        + p.status.as_ref().map_or(0, |s| s.message.capacity())
}

/// The key and length of length-delimited field `field` (below 16) of `n` bytes.
fn put_len(buf: &mut Vec<u8>, field: u32, n: usize) {
    encode_key(field, WireType::LengthDelimited, buf);
    encode_varint(n as u64, buf);
}

/// A length-delimited field of `n` bytes (tags here are below 16: one-byte keys).
fn field_len(n: usize) -> usize {
    1 + encoded_len_varint(n as u64) + n
}

/// The spans of one origin: one `ResourceSpans`.
struct Group {
    resource: Resource,
    /// `resource.encoded_len()`.
    resource_len: usize,
    /// A span of this origin (to compare origins with).
    first: usize,
    /// Its spans' positions in the request order, `start..start + count`.
    start: usize,
    count: usize,
}

/// Writes `ExportTraceServiceRequest`s; keeps its messages from batch to batch.
pub(crate) struct Encoder {
    prefix: Option<String>,
    scope: InstrumentationScope,
    scope_len: usize,
    /// The span messages, in request order, filled in place: the span at a position
    /// takes the strings and vectors that the span at that position of the last batch
    /// left (batches of one service repeat their shapes, so the capacities fit).
    pool: Vec<ProtoSpan>,
    /// The encoded length of each message of `pool` filled for this batch.
    lens: Vec<usize>,
    group_of: Vec<usize>,
    /// Position in the request → index in the batch's spans.
    order: Vec<usize>,
    groups: Vec<Group>,
}

impl Encoder {
    /// `prefix`: of every service name (`<prefix>-<project>-<service>`).
    pub(crate) fn new(prefix: Option<String>) -> Encoder {
        let scope = InstrumentationScope {
            name: SCOPE_NAME.into(),
            version: SCOPE_VERSION.into(),
            ..Default::default()
        };
        Encoder {
            prefix,
            scope_len: scope.encoded_len(),
            scope,
            pool: Vec::new(),
            lens: Vec::new(),
            group_of: Vec::new(),
            order: Vec::new(),
            groups: Vec::new(),
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
        let n = spans.len();
        if self.pool.len() < n {
            self.pool.resize_with(n, ProtoSpan::default);
        }
        self.lens.clear();
        for (p, &i) in self.pool.iter_mut().zip(&self.order) {
            fill(p, &spans[i]);
            self.lens.push(p.encoded_len());
        }
        // Cut into requests: `from..at` is the pending one, `total` about its size.
        let mut result = Ok(());
        let (mut from, mut total) = (0, 0);
        'groups: for g in 0..self.groups.len() {
            let Group { start, count, .. } = self.groups[g];
            // What a `ResourceSpans` adds around its spans (lengths bounded by 5-byte
            // varints), in each request that has spans of this origin.
            let overhead =
                2 * (1 + 5) + field_len(self.groups[g].resource_len) + field_len(self.scope_len);
            total += overhead;
            for at in start..start + count {
                let cost = field_len(self.lens[at]);
                if at > from && total + cost > max_bytes {
                    result = self.flush(from..at, buf, total, &mut send);
                    if result.is_err() {
                        break 'groups;
                    }
                    (from, total) = (at, overhead);
                }
                total += cost;
            }
        }
        if result.is_ok() && from < n {
            result = self.flush(from..n, buf, total, &mut send);
        }
        self.trim(n);
        result
    }

    /// Sorts the spans by origin (`order`, `groups`), keeping their order within each.
    fn group(&mut self, spans: &[Span]) {
        self.groups.clear();
        self.group_of.clear();
        let mut last = usize::MAX;
        for (i, s) in spans.iter().enumerate() {
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
                let mut attributes = Vec::new();
                let mut n = 0;
                let service_name = s.origin.service_name(self.prefix.as_deref());
                put_kv(
                    &mut attributes,
                    &mut n,
                    "service.name",
                    Val::Str(&service_name),
                );
                if let Some(h) = &s.origin.host {
                    put_kv(&mut attributes, &mut n, "host.name", Val::Str(h));
                }
                let resource = Resource {
                    attributes,
                    ..Default::default()
                };
                self.groups.push(Group {
                    resource_len: resource.encoded_len(),
                    resource,
                    first: i,
                    start: 0,
                    count: 0,
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

    /// Encodes the spans at `positions` as one request into `buf` and sends it.
    /// `bytes`: about the request's size, at least.
    fn flush<E>(
        &mut self,
        positions: std::ops::Range<usize>,
        buf: &mut Vec<u8>,
        bytes: usize,
        send: &mut impl FnMut(&mut Vec<u8>, usize) -> Result<(), E>,
    ) -> Result<(), E> {
        buf.clear();
        buf.reserve(bytes);
        // What prost writes for an `ExportTraceServiceRequest` of these spans, but
        // the three levels above the spans are framed here and each span's length
        // is the one measured when it was filled: prost would measure every span
        // again at each level, and once more to frame it (the unit tests compare
        // the bytes with prost's).
        for g in &self.groups {
            let from = g.start.max(positions.start);
            let to = (g.start + g.count).min(positions.end);
            if from >= to {
                continue;
            }
            let lens = &self.lens[from..to];
            let spans_len: usize = lens.iter().map(|&l| field_len(l)).sum();
            let scope_spans_len = field_len(self.scope_len) + spans_len;
            // ExportTraceServiceRequest.resource_spans = 1
            put_len(
                buf,
                1,
                field_len(g.resource_len) + field_len(scope_spans_len),
            );
            // ResourceSpans.resource = 1, ResourceSpans.scope_spans = 2
            put_len(buf, 1, g.resource_len);
            g.resource.encode_raw(buf);
            put_len(buf, 2, scope_spans_len);
            // ScopeSpans.scope = 1, ScopeSpans.spans = 2
            put_len(buf, 1, self.scope_len);
            self.scope.encode_raw(buf);
            for (span, &len) in self.pool[from..to].iter().zip(lens) {
                put_len(buf, 2, len);
                // prost's own encoding of the span's fields (`encode_raw` is what
                // `Message::encode` calls once it has checked the length).
                span.encode_raw(buf);
            }
        }
        send(buf, positions.len())
    }

    /// After a batch of `n` spans: keeps the messages for the next one, but not more
    /// than a batch needs, and not one whose strings grew large (a long statement
    /// would otherwise stay in memory for good).
    fn trim(&mut self, n: usize) {
        self.pool.truncate(KEEP_SPANS);
        for p in self.pool.iter_mut().take(n) {
            if kept_bytes(p) > KEEP_SPAN_BYTES {
                *p = ProtoSpan::default();
            }
        }
    }
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
    use std::sync::Arc;

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
                kind: kind_value(sp.kind),
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

    /// The request is the obvious one, also when the messages are refilled from a
    /// batch of other shapes (more attributes, errors, strings where ints are now).
    #[test]
    fn reused_messages_carry_nothing_over() {
        let mut first = sample();
        for sp in &mut first {
            sp.attributes
                .push((Cow::Borrowed("extra"), AttrValue::Str("x".into())));
            sp.error.get_or_insert(SpanError {
                etype: "E".into(),
                message: "m".into(),
            });
        }
        let mut second = sample();
        for sp in &mut second {
            sp.error = None;
            for (_, v) in &mut sp.attributes {
                *v = AttrValue::Int(7);
            }
        }
        second.truncate(3);
        let mut enc = Encoder::new(None);
        let mut buf = Vec::new();
        for batch in [&first, &second, &first] {
            let mut sent = Vec::new();
            enc.encode(batch, 4 << 20, &mut buf, |b, n| {
                sent.push((b.clone(), n));
                Ok::<(), ()>(())
            })
            .unwrap();
            assert_eq!(sent.len(), 1);
            assert_eq!(sent[0].0, reference(batch, None).encode_to_vec());
        }
        assert_eq!(enc.pool.len(), first.len(), "the messages are kept");
    }

    #[test]
    fn large_messages_are_not_kept() {
        let mut spans = sample();
        spans[0].attributes.push((
            Cow::Borrowed("db.query.text"),
            AttrValue::Str("x".repeat(KEEP_SPAN_BYTES).into()),
        ));
        let sent = {
            let mut enc = Encoder::new(None);
            let mut buf = Vec::new();
            enc.encode(&spans, 4 << 20, &mut buf, |_, _| Ok::<(), ()>(()))
                .unwrap();
            enc.pool
        };
        assert_eq!(sent.len(), spans.len());
        assert!(sent.iter().all(|p| kept_bytes(p) <= KEEP_SPAN_BYTES));
        assert_eq!(sent.iter().filter(|p| kept_bytes(p) == 0).count(), 1);
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
