//! `ExportTraceServiceRequest`s written straight from the batch's [`Span`]s: a
//! protobuf writer of our own for the few messages of the request.
//!
//! Hand-written because this is the exporter thread's hot path: filling
//! `opentelemetry_proto`'s messages copied every string of every span into them,
//! and prost then measured the nested messages again at each level (a `KeyValue`,
//! its `AnyValue`) before writing them; here each span is measured once from the
//! borrowed strings and then written, and nothing is copied but into the request.
//! The official message types stay the reference: the tests build the same spans as
//! `opentelemetry_proto` messages and check that these bytes are exactly what prost
//! writes for them (its field order, defaults left out, minimal varints) and that
//! prost decodes them back to the same messages. They are still what gRPC's and
//! HTTP's answers are decoded with.

use crate::spans::{AttrValue, Span, SpanError, SpanKind};

/// The instrumentation scope of every span.
pub(crate) const SCOPE_NAME: &str = "osprofiler";
pub(crate) const SCOPE_VERSION: &str = env!("CARGO_PKG_VERSION");

const EXCEPTION: &str = "exception";
const EXCEPTION_TYPE: &str = "exception.type";
const EXCEPTION_MESSAGE: &str = "exception.message";

/// W3C trace flags: sampled (the low byte of `Span.flags`).
const FLAG_SAMPLED: u32 = 1;
/// `Status.code`: STATUS_CODE_ERROR.
const STATUS_ERROR: u64 = 2;

// The keys (field number << 3 | wire type) of the fields written, one byte each but
// `Span.flags` (field 16): two.
const LEN: u8 = 2;
const VARINT: u8 = 0;
const I64: u8 = 1;
const fn key(field: u8, wire: u8) -> u8 {
    field << 3 | wire
}
// Span
const SPAN_TRACE_ID: u8 = key(1, LEN);
const SPAN_SPAN_ID: u8 = key(2, LEN);
const SPAN_PARENT_SPAN_ID: u8 = key(4, LEN);
/// `flags = 16`, fixed32 (wire type 5): the key 133 as a varint. Written last: prost
/// writes fields by number (it is declared after `parent_span_id`).
const SPAN_FLAGS: [u8; 2] = [(16 << 3 | 5) & 0x7f | 0x80, (16 << 3 | 5) >> 7];
const SPAN_NAME: u8 = key(5, LEN);
const SPAN_KIND: u8 = key(6, VARINT);
const SPAN_START: u8 = key(7, I64);
const SPAN_END: u8 = key(8, I64);
const SPAN_ATTRIBUTES: u8 = key(9, LEN);
const SPAN_EVENTS: u8 = key(11, LEN);
const SPAN_STATUS: u8 = key(15, LEN);
// Span.Event
const EVENT_TIME: u8 = key(1, I64);
const EVENT_NAME: u8 = key(2, LEN);
const EVENT_ATTRIBUTES: u8 = key(3, LEN);
// Status
const STATUS_MESSAGE: u8 = key(2, LEN);
const STATUS_CODE: u8 = key(3, VARINT);
// KeyValue
const KV_KEY: u8 = key(1, LEN);
const KV_VALUE: u8 = key(2, LEN);
// AnyValue's oneof
const ANY_STRING: u8 = key(1, LEN);
const ANY_BOOL: u8 = key(2, VARINT);
const ANY_INT: u8 = key(3, VARINT);
const ANY_DOUBLE: u8 = key(4, I64);
// Resource, InstrumentationScope
const RESOURCE_ATTRIBUTES: u8 = key(1, LEN);
const SCOPE_NAME_KEY: u8 = key(1, LEN);
const SCOPE_VERSION_KEY: u8 = key(2, LEN);
// ExportTraceServiceRequest, ResourceSpans, ScopeSpans
const REQUEST_RESOURCE_SPANS: u8 = key(1, LEN);
const RESOURCE_SPANS_RESOURCE: u8 = key(1, LEN);
const RESOURCE_SPANS_SCOPE_SPANS: u8 = key(2, LEN);
const SCOPE_SPANS_SCOPE: u8 = key(1, LEN);
const SCOPE_SPANS_SPANS: u8 = key(2, LEN);

/// `Span.kind`'s values (`SPAN_KIND_INTERNAL` = 1, …).
fn kind_value(k: SpanKind) -> u8 {
    match k {
        SpanKind::Internal => 1,
        SpanKind::Server => 2,
        SpanKind::Client => 3,
    }
}

// ---- the writer's pieces

/// The bytes of `v` as a varint.
#[inline]
fn varint_len(v: u64) -> usize {
    // 1 for 0..=127, one more per 7 bits (as prost's `encoded_len_varint`).
    ((64 - (v | 1).leading_zeros() as usize) * 9 + 64) / 64
}

#[inline]
fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    // Lengths and most values here are one byte.
    if v < 0x80 {
        buf.push(v as u8);
        return;
    }
    while v >= 0x80 {
        buf.push(v as u8 | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// A length-delimited field of `n` bytes, with its one-byte key.
#[inline]
fn field_len(n: usize) -> usize {
    1 + varint_len(n as u64) + n
}

/// A length-delimited field's key and length.
#[inline]
fn put_len(buf: &mut Vec<u8>, key: u8, n: usize) {
    buf.push(key);
    put_varint(buf, n as u64);
}

/// A string or bytes field, left out when empty (proto3 writes no default).
#[inline]
fn opt_bytes_len(b: &[u8]) -> usize {
    if b.is_empty() { 0 } else { field_len(b.len()) }
}

#[inline]
fn put_opt_bytes(buf: &mut Vec<u8>, key: u8, b: &[u8]) {
    if !b.is_empty() {
        put_len(buf, key, b.len());
        buf.extend_from_slice(b);
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
    #[inline]
    fn from(v: &'a AttrValue) -> Val<'a> {
        match v {
            AttrValue::Str(s) => Val::Str(s),
            AttrValue::Int(i) => Val::Int(*i),
            AttrValue::Double(d) => Val::Double(*d),
            AttrValue::Bool(b) => Val::Bool(*b),
        }
    }
}

/// An `AnyValue` holding `v` (its oneof is written even when it is a default).
#[inline]
fn any_len(v: Val<'_>) -> usize {
    match v {
        Val::Str(s) => field_len(s.len()),
        Val::Int(i) => 1 + varint_len(i as u64),
        Val::Double(_) => 9,
        Val::Bool(_) => 2,
    }
}

/// A `KeyValue` of `key` and `v`, and its `AnyValue`'s length.
#[inline]
fn kv_len(key: &str, v: Val<'_>) -> (usize, usize) {
    let any = any_len(v);
    (opt_bytes_len(key.as_bytes()) + field_len(any), any)
}

/// Appends the first `n` bytes of `b` with one copy of the whole array, cut to `n`
/// after: a copy of a size known here is a few moves, where `b[..n]` would be a call
/// to `memcpy`, and a `Vec::push` per byte reloads and stores the vector's length
/// around every byte.
#[inline]
fn put_head<const N: usize>(buf: &mut Vec<u8>, b: &[u8; N], n: usize) {
    let at = buf.len();
    buf.extend_from_slice(b);
    buf.truncate(at + n.min(N));
}

/// The `KeyValue` field `field` of `key` and `v`; `lens`: from [`kv_len`].
#[inline]
fn put_kv(buf: &mut Vec<u8>, field: u8, key: &str, v: Val<'_>, (len, any): (usize, usize)) {
    if len < 0x80 && !key.is_empty() {
        // Most attributes: every length inside is below the whole's, one byte each.
        buf.extend_from_slice(&[field, len as u8, KV_KEY, key.len() as u8]);
        buf.extend_from_slice(key.as_bytes());
        match v {
            Val::Str(s) => {
                buf.extend_from_slice(&[KV_VALUE, any as u8, ANY_STRING, s.len() as u8]);
                buf.extend_from_slice(s.as_bytes());
            }
            Val::Int(i) => {
                let mut h = [KV_VALUE, any as u8, ANY_INT, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
                let n = 3 + put_varint_at(&mut h[3..], i as u64);
                put_head(buf, &h, n);
            }
            Val::Double(d) => {
                let mut h = [KV_VALUE, any as u8, ANY_DOUBLE, 0, 0, 0, 0, 0, 0, 0, 0];
                h[3..].copy_from_slice(&d.to_le_bytes());
                buf.extend_from_slice(&h);
            }
            Val::Bool(b) => buf.extend_from_slice(&[KV_VALUE, any as u8, ANY_BOOL, u8::from(b)]),
        }
        return;
    }
    put_len(buf, field, len);
    put_opt_bytes(buf, KV_KEY, key.as_bytes());
    put_len(buf, KV_VALUE, any);
    match v {
        Val::Str(s) => {
            put_len(buf, ANY_STRING, s.len());
            buf.extend_from_slice(s.as_bytes());
        }
        Val::Int(i) => {
            buf.push(ANY_INT);
            // int64: a negative value is its two's complement, ten bytes.
            put_varint(buf, i as u64);
        }
        Val::Double(d) => {
            buf.push(ANY_DOUBLE);
            buf.extend_from_slice(&d.to_le_bytes());
        }
        Val::Bool(b) => buf.extend_from_slice(&[ANY_BOOL, u8::from(b)]),
    }
}

/// Writes `v` as a varint at the start of `to` (10 bytes hold any); returns its
/// length.
#[inline]
fn put_varint_at(to: &mut [u8], mut v: u64) -> usize {
    let mut n = 0;
    for b in to.iter_mut() {
        n += 1;
        if v < 0x80 {
            *b = v as u8;
            break;
        }
        *b = v as u8 | 0x80;
        v >>= 7;
    }
    n
}

fn nanos(t: i64) -> u64 {
    u64::try_from(t).unwrap_or(0)
}

/// A fixed64 field, left out when zero.
#[inline]
fn opt_fixed64_len(v: u64) -> usize {
    if v == 0 { 0 } else { 9 }
}

#[inline]
fn put_opt_fixed64(buf: &mut Vec<u8>, key: u8, v: u64) {
    if v != 0 {
        buf.push(key);
        buf.extend_from_slice(&v.to_le_bytes());
    }
}

/// The two exception attributes (of the span, and of its event).
fn exception_len(e: &SpanError) -> [(usize, usize); 2] {
    [
        kv_len(EXCEPTION_TYPE, Val::Str(&e.etype)),
        kv_len(EXCEPTION_MESSAGE, Val::Str(&e.message)),
    ]
}

fn put_exception(buf: &mut Vec<u8>, field: u8, e: &SpanError, lens: [(usize, usize); 2]) {
    put_kv(buf, field, EXCEPTION_TYPE, Val::Str(&e.etype), lens[0]);
    put_kv(buf, field, EXCEPTION_MESSAGE, Val::Str(&e.message), lens[1]);
}

/// The `exception` event's and the status's lengths.
fn error_lens(end: u64, e: &SpanError, ex: [(usize, usize); 2]) -> (usize, usize) {
    let event =
        opt_fixed64_len(end) + field_len(EXCEPTION.len()) + field_len(ex[0].0) + field_len(ex[1].0);
    let status = opt_bytes_len(e.message.as_bytes()) + 2;
    (event, status)
}

/// The encoded length of `s`'s `Span` message.
fn span_len(s: &Span) -> usize {
    // trace_id, span_id, flags, kind: always there.
    let mut n = (2 + 16) + (2 + 8) + (2 + 4) + 2;
    if s.parent_span_id().is_some() {
        n += 2 + 8;
    }
    n += opt_bytes_len(s.name.as_bytes());
    n += opt_fixed64_len(nanos(s.start_ns)) + opt_fixed64_len(nanos(s.end_ns));
    for (k, v) in &s.attributes {
        n += field_len(kv_len(k, v.into()).0);
    }
    if let Some(e) = &s.error {
        let ex = exception_len(e);
        let (event, status) = error_lens(nanos(s.end_ns), e, ex);
        n += field_len(ex[0].0) + field_len(ex[1].0) + field_len(event) + field_len(status);
    }
    n
}

/// Writes `s`'s `Span` message (its fields: the key and length before it are the
/// caller's), in prost's order: by field number.
fn put_span(buf: &mut Vec<u8>, s: &Span) {
    // The ids, fixed-size: one copy.
    let mut ids = [0; 38];
    ids[..2].copy_from_slice(&[SPAN_TRACE_ID, 16]);
    ids[2..18].copy_from_slice(&s.base_id.to_be_bytes());
    ids[18..20].copy_from_slice(&[SPAN_SPAN_ID, 8]);
    ids[20..28].copy_from_slice(&(s.id as u64).to_be_bytes());
    let n = match s.parent_span_id() {
        Some(parent) => {
            ids[28..30].copy_from_slice(&[SPAN_PARENT_SPAN_ID, 8]);
            ids[30..].copy_from_slice(&parent.to_be_bytes());
            38
        }
        None => 28,
    };
    put_head(buf, &ids, n);
    put_opt_bytes(buf, SPAN_NAME, s.name.as_bytes());
    // The kind and the two times (left out when zero).
    let end = nanos(s.end_ns);
    let mut times = [0; 20];
    times[..2].copy_from_slice(&[SPAN_KIND, kind_value(s.kind)]);
    let mut n = 2;
    for (key, t) in [(SPAN_START, nanos(s.start_ns)), (SPAN_END, end)] {
        if t != 0 {
            if let Some(to) = times.get_mut(n..n + 9) {
                to[0] = key;
                to[1..].copy_from_slice(&t.to_le_bytes());
            }
            n += 9;
        }
    }
    put_head(buf, &times, n);
    for (k, v) in &s.attributes {
        let v = v.into();
        put_kv(buf, SPAN_ATTRIBUTES, k, v, kv_len(k, v));
    }
    if let Some(e) = &s.error {
        let ex = exception_len(e);
        put_exception(buf, SPAN_ATTRIBUTES, e, ex);
        let (event, status) = error_lens(end, e, ex);
        put_len(buf, SPAN_EVENTS, event);
        put_opt_fixed64(buf, EVENT_TIME, end);
        put_len(buf, EVENT_NAME, EXCEPTION.len());
        buf.extend_from_slice(EXCEPTION.as_bytes());
        put_exception(buf, EVENT_ATTRIBUTES, e, ex);
        put_len(buf, SPAN_STATUS, status);
        put_opt_bytes(buf, STATUS_MESSAGE, e.message.as_bytes());
        buf.push(STATUS_CODE);
        put_varint(buf, STATUS_ERROR);
    }
    buf.extend_from_slice(&SPAN_FLAGS);
    buf.extend_from_slice(&FLAG_SAMPLED.to_le_bytes());
}

/// The spans of one origin: one `ResourceSpans`.
struct Group {
    /// Its `Resource` message, encoded.
    resource: Vec<u8>,
    /// A span of this origin (to compare origins with).
    first: usize,
    /// Its spans' positions in the request order, `start..start + count`.
    start: usize,
    count: usize,
}

/// Writes `ExportTraceServiceRequest`s; keeps its buffers from batch to batch.
pub(crate) struct Encoder {
    prefix: Option<String>,
    /// The `InstrumentationScope` message, encoded.
    scope: Vec<u8>,
    /// The encoded length of each span's message, in request order.
    lens: Vec<usize>,
    group_of: Vec<usize>,
    /// Position in the request → index in the batch's spans.
    order: Vec<usize>,
    groups: Vec<Group>,
}

impl Encoder {
    /// `prefix`: of every service name (`<prefix>-<project>-<service>`).
    pub(crate) fn new(prefix: Option<String>) -> Encoder {
        let mut scope = Vec::new();
        put_opt_bytes(&mut scope, SCOPE_NAME_KEY, SCOPE_NAME.as_bytes());
        put_opt_bytes(&mut scope, SCOPE_VERSION_KEY, SCOPE_VERSION.as_bytes());
        Encoder {
            prefix,
            scope,
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
        self.lens.clear();
        self.lens
            .extend(self.order.iter().map(|&i| span_len(&spans[i])));
        // Cut into requests: `from..at` is the pending one, `total` about its size.
        let mut result = Ok(());
        let (mut from, mut total) = (0, 0);
        'groups: for g in 0..self.groups.len() {
            let Group { start, count, .. } = self.groups[g];
            // What a `ResourceSpans` adds around its spans (lengths bounded by 5-byte
            // varints), in each request that has spans of this origin.
            let overhead = 2 * (1 + 5)
                + field_len(self.groups[g].resource.len())
                + field_len(self.scope.len());
            total += overhead;
            for at in start..start + count {
                let cost = field_len(self.lens[at]);
                if at > from && total + cost > max_bytes {
                    result = self.flush(spans, from..at, buf, total, &mut send);
                    if result.is_err() {
                        break 'groups;
                    }
                    (from, total) = (at, overhead);
                }
                total += cost;
            }
        }
        if result.is_ok() && from < n {
            result = self.flush(spans, from..n, buf, total, &mut send);
        }
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
                let service_name = s.origin.service_name(self.prefix.as_deref());
                let mut attributes = vec![("service.name", service_name.as_str())];
                if let Some(h) = &s.origin.host {
                    attributes.push(("host.name", h));
                }
                let mut resource = Vec::new();
                for (k, v) in attributes {
                    let v = Val::Str(v);
                    put_kv(&mut resource, RESOURCE_ATTRIBUTES, k, v, kv_len(k, v));
                }
                self.groups.push(Group {
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
        &self,
        spans: &[Span],
        positions: std::ops::Range<usize>,
        buf: &mut Vec<u8>,
        bytes: usize,
        send: &mut impl FnMut(&mut Vec<u8>, usize) -> Result<(), E>,
    ) -> Result<(), E> {
        buf.clear();
        buf.reserve(bytes);
        for g in &self.groups {
            let from = g.start.max(positions.start);
            let to = (g.start + g.count).min(positions.end);
            if from >= to {
                continue;
            }
            let lens = &self.lens[from..to];
            let spans_len: usize = lens.iter().map(|&l| field_len(l)).sum();
            let scope_spans_len = field_len(self.scope.len()) + spans_len;
            put_len(
                buf,
                REQUEST_RESOURCE_SPANS,
                field_len(g.resource.len()) + field_len(scope_spans_len),
            );
            put_len(buf, RESOURCE_SPANS_RESOURCE, g.resource.len());
            buf.extend_from_slice(&g.resource);
            put_len(buf, RESOURCE_SPANS_SCOPE_SPANS, scope_spans_len);
            put_len(buf, SCOPE_SPANS_SCOPE, self.scope.len());
            buf.extend_from_slice(&self.scope);
            for (&i, &len) in self.order[from..to].iter().zip(lens) {
                put_len(buf, SCOPE_SPANS_SPANS, len);
                let at = buf.len();
                put_span(buf, &spans[i]);
                debug_assert_eq!(buf.len() - at, len, "span length");
            }
        }
        send(buf, positions.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::otlp::MAX_REQUEST_BYTES;
    use crate::spans::{Origin, SpanError};
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{
        AnyValue, InstrumentationScope, KeyValue, any_value,
    };
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Status, span, status};
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
                    time_unix_nano: nanos(sp.end_ns),
                    name: "exception".into(),
                    attributes: ex,
                    dropped_attributes_count: 0,
                });
                status = Some(Status {
                    message: e.message.to_string(),
                    code: status::StatusCode::Error as i32,
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
                // The official enum, not ours.
                kind: match sp.kind {
                    SpanKind::Internal => span::SpanKind::Internal,
                    SpanKind::Server => span::SpanKind::Server,
                    SpanKind::Client => span::SpanKind::Client,
                } as i32,
                start_time_unix_nano: nanos(sp.start_ns),
                end_time_unix_nano: nanos(sp.end_ns),
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

    /// `ours == prost`, or where they part (requests are too long to print).
    fn same_bytes(ours: &[u8], prost: &[u8], what: &str) {
        if ours != prost {
            let at = ours.iter().zip(prost).take_while(|(a, b)| a == b).count();
            let near = |b: &[u8]| b[at.saturating_sub(8)..(at + 8).min(b.len())].to_vec();
            panic!(
                "{what}: {} bytes, prost {}; first difference at {at}: {:?} / {:?}",
                ours.len(),
                prost.len(),
                near(ours),
                near(prost)
            );
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

    /// The request is the obvious one, also from an encoder that wrote batches of
    /// other shapes before (more attributes, errors, strings where ints are now).
    #[test]
    fn a_reused_encoder_carries_nothing_over() {
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
            same_bytes(&sent[0].0, &reference(batch, None).encode_to_vec(), "");
        }
    }

    #[test]
    fn bytes_are_prosts() {
        let spans = sample();
        for prefix in [None, Some("cloud")] {
            let sent = encode_all(&spans, prefix, 4 << 20);
            assert_eq!(sent.len(), 1);
            assert_eq!(sent[0].1, spans.len());
            let want = reference(&spans, prefix);
            same_bytes(
                &sent[0].0,
                &want.encode_to_vec(),
                &format!("prefix {prefix:?}"),
            );
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

    /// xorshift64*: varied spans from a seed, the same on every run.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }

        /// Empty, short, unicode, and lengths around the varint steps (127/128,
        /// 16,383/16,384 bytes).
        fn text(&mut self) -> String {
            match self.below(10) {
                0 => String::new(),
                1 => "é".repeat(self.below(100) as usize),
                2 => "ü🦀\u{0}\u{ffff}".into(),
                3 => "x".repeat(127 + self.below(3) as usize),
                4 => "y".repeat(16_383 + self.below(3) as usize),
                5 => "z".repeat(self.below(70_000) as usize),
                _ => format!("v{}", self.below(1000)),
            }
        }

        fn value(&mut self) -> AttrValue<'static> {
            match self.below(12) {
                0..=3 => AttrValue::Str(self.text().into()),
                4 => AttrValue::Int(
                    [0, 1, -1, 127, 128, i64::MIN, i64::MAX, -300][self.below(8) as usize],
                ),
                5 | 6 => AttrValue::Int(self.next() as i64 >> self.below(64)),
                7 => AttrValue::Double(
                    [
                        0.0,
                        -0.0,
                        0.25,
                        -1e300,
                        f64::INFINITY,
                        f64::MIN_POSITIVE,
                        f64::NAN,
                    ][self.below(7) as usize],
                ),
                8 => AttrValue::Double(f64::from_bits(self.next())),
                _ => AttrValue::Bool(self.below(2) == 1),
            }
        }
    }

    fn varied(rng: &mut Rng, n: usize) -> Vec<Span<'static>> {
        let origins: Vec<Origin> = (0..1 + rng.below(12))
            .map(|i| Origin {
                project: (rng.below(4) != 0).then(|| Arc::from(rng.text())),
                service: (rng.below(4) != 0).then(|| Arc::from(format!("s{i}"))),
                host: (rng.below(3) != 0).then(|| Arc::from(rng.text())),
            })
            .collect();
        (0..n)
            .map(|_| {
                let base_id = if rng.below(4) == 0 {
                    0
                } else {
                    u128::from(rng.next()) << 64 | u128::from(rng.next())
                };
                let id = u128::from(rng.next()) << 64 | u128::from(rng.next());
                let times = [0, -5, 1, i64::MAX, 1_767_225_600_000_100_000];
                let start_ns = times[rng.below(5) as usize];
                Span {
                    base_id,
                    id,
                    // A first-level point's parent is the trace: no parent span.
                    parent_id: if rng.below(3) == 0 {
                        base_id
                    } else {
                        u128::from(rng.next())
                    },
                    name: rng.text().into(),
                    kind: [SpanKind::Internal, SpanKind::Server, SpanKind::Client]
                        [rng.below(3) as usize],
                    start_ns,
                    end_ns: start_ns.saturating_add(rng.below(2_000_000) as i64),
                    origin: origins[rng.below(origins.len() as u64) as usize].clone(),
                    attributes: (0..rng.below(9))
                        .map(|_| {
                            let key = if rng.below(10) == 0 {
                                String::new()
                            } else {
                                rng.text()
                            };
                            (Cow::Owned(key), rng.value())
                        })
                        .collect(),
                    error: (rng.below(4) == 0).then(|| SpanError {
                        etype: rng.text().into(),
                        message: rng.text().into(),
                    }),
                }
            })
            .collect()
    }

    /// The spans in the encoder's request order: by origin, first seen first, in
    /// their order within each.
    fn grouped<'a>(spans: &[Span<'a>]) -> Vec<Span<'a>> {
        let mut origins: Vec<&Origin> = Vec::new();
        for s in spans {
            if !origins.contains(&&s.origin) {
                origins.push(&s.origin);
            }
        }
        origins
            .iter()
            .flat_map(|o| spans.iter().filter(move |s| s.origin == **o).cloned())
            .collect()
    }

    /// Varied batches (empty strings and keys, long and unicode values, every kind
    /// of value, errors, first-level points, zero and negative times, many origins),
    /// whole and split across requests: each request is byte for byte what prost
    /// writes for the obvious messages of the spans it carries, and decodes back to
    /// them.
    #[test]
    fn varied_spans_are_prosts() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut enc = Encoder::new(None);
        let mut enc_prefixed = Encoder::new(Some("cloud".into()));
        let mut buf = Vec::new();
        let mut splits = 0;
        for round in 0..200 {
            let n = rng.below(40) as usize;
            let spans = varied(&mut rng, n);
            let order = grouped(&spans);
            let max = match round % 3 {
                0 => MAX_REQUEST_BYTES,
                1 => 1 + rng.below(200_000) as usize,
                _ => 1 + rng.below(2_000) as usize,
            };
            let (enc, prefix) = if round % 2 == 0 {
                (&mut enc, None)
            } else {
                (&mut enc_prefixed, Some("cloud"))
            };
            let mut sent = Vec::new();
            enc.encode(&spans, max, &mut buf, |b, n| {
                sent.push((b.clone(), n));
                Ok::<(), ()>(())
            })
            .unwrap();
            splits += sent.len().saturating_sub(1);
            let mut at = 0;
            for (bytes, n) in &sent {
                let carried = &order[at..at + n];
                let want = reference(carried, prefix);
                at += n;
                assert!(
                    bytes.len() <= max || *n == 1,
                    "round {round}: {} bytes > {max}",
                    bytes.len()
                );
                same_bytes(bytes, &want.encode_to_vec(), &format!("round {round}"));
                let back = ExportTraceServiceRequest::decode(&bytes[..]).unwrap();
                // (Re-encoded: a NaN attribute is not equal to itself.)
                same_bytes(
                    &back.encode_to_vec(),
                    bytes,
                    &format!("round {round}, decoded"),
                );
                if !has_nan(carried) {
                    assert_eq!(back, want, "round {round}");
                }
            }
            assert_eq!(at, spans.len(), "round {round}: every span sent once");
        }
        assert!(splits > 100, "{splits} splits");
    }

    fn has_nan(spans: &[Span]) -> bool {
        spans.iter().any(|s| {
            s.attributes
                .iter()
                .any(|(_, v)| matches!(v, AttrValue::Double(d) if d.is_nan()))
        })
    }
}
