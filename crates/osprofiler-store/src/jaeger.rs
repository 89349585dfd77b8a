//! `jaeger://host:port`: finished spans to a Jaeger agent over UDP, in the form
//! jaeger-client's UDP reporter (and so osprofiler 4.3.0's `jaeger://` driver) sends.
//!
//! # Wire format
//!
//! Each datagram is one Thrift **compact** protocol message: a `ONEWAY` call named
//! `emitBatch` (jaeger-idl `agent.thrift`) whose argument 1 is a `Batch`
//! (`jaeger.thrift`):
//!
//! - `Batch { 1: Process process, 2: list<Span> spans }`, one process per datagram, so
//!   spans of different origins (project, service, host) go in different datagrams;
//! - `Process { 1: serviceName, 2: list<Tag> tags }`: `[<prefix>-]<project>-<service>`,
//!   tags `hostname`, `ip` (the local address that reaches the agent),
//!   `osprofiler.version` and `[profiler_jaeger] process_tags`;
//! - `Span { 1: traceIdLow, 2: traceIdHigh, 3: spanId, 4: parentSpanId, 5: operationName,
//!   7: flags, 8: startTime, 9: duration, 10: tags, 11: logs }`, times in microseconds,
//!   flags 1 (sampled), no `references` (the parent is `parentSpanId`);
//! - `Tag { 1: key, 2: vType, 3: vStr | 4: vDouble | 5: vBool | 6: vLong }`,
//!   `Log { 1: timestamp, 2: fields }`.
//!
//! The field ids and types are those of the code Jaeger generates (jaeger-client's
//! `thrift_gen`), which the tests decode our datagrams with. A datagram holds at most
//! `max_packet_size` bytes (65,000 by default, the agent's limit), header included; a
//! batch is split over as many datagrams as it needs, and a span too large for one is cut
//! down (its longest strings first, then its largest attributes) and tagged
//! `osprofiler.truncated=true`.
//!
//! # What differs from osprofiler 4.3.0's driver
//!
//! - The trace id is the whole 128-bit base id (`traceIdHigh`/`traceIdLow`); Python sent
//!   only its low 64 bits, so the id users hold found nothing in Jaeger.
//! - A first-level point has no parent (`parentSpanId` 0); Python gave it a phantom
//!   parent, the low 64 bits of the base id, a span that never exists.
//! - A stop ends the span of its own point id; Python popped one stack per process, so
//!   concurrent requests ended each other's spans.
//! - The operation name is the point's name (`list_servers`, `WSGI_GET_/path`,
//!   `SQL_SELECT`); Python's `rstrip("-start")` cut characters (`list_serve`).
//! - Tags use the names of [`crate::spans`] (`db.query.text`, `http.request.method`,
//!   `url.path`…, plus `span.kind` for server and client spans) where Python used
//!   `db.statement`, `http.method`, `http.path`…; an error is one log with
//!   `event=error`, `error.kind` and `message` at the stop time (Python wrote two logs).
//! - The duration is the stop event's time minus the start's; Python used the time
//!   its driver happened to see the stop.
//!
//! The encoder is written here by hand: the `thrift` crate would bring a runtime,
//! generated code and its dependencies for three structs and one message.
//!
//! The socket is connected to the agent (one lookup at open, the local address for the
//! `ip` tag) and non-blocking: a datagram the kernel cannot take now is dropped and
//! counted, never waited for. A connected UDP socket reports a previous datagram's ICMP
//! "port unreachable" as `ECONNREFUSED` on the next send; that is an agent that is down,
//! counted ([`JaegerStats::datagrams_refused`]) and not an error of every batch.
//!
//! UDP gives no error for most losses, so a batch "succeeds" even when some of its spans
//! were not sent. Those spans (two events each) are reported to the pipeline afterwards
//! with [`report_late_failure`](osprofiler::notifier::report_late_failure), at the next
//! write, flush or close: then `notifier::stats().failed` counts them and the notifier's
//! once-per-interval loss line says so, as for any other sink. Later rather than at once
//! because the pipeline counts a batch as exported only once `write` returns.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use osprofiler::Event;
use osprofiler::notifier::{Sink, SinkError};

use crate::spans::{Assembler, Attr, AttrValue, DEFAULT_MAX_OPEN, Origin, Span, SpanKind};
use crate::{ConnectionString, JaegerTarget, OpenError, Options};

/// Thrift compact protocol, the parts a Jaeger batch needs.
mod compact {
    pub(super) const STOP: u8 = 0;
    const BOOL_TRUE: u8 = 1;
    const BOOL_FALSE: u8 = 2;
    const I32: u8 = 5;
    const I64: u8 = 6;
    const DOUBLE: u8 = 7;
    const BINARY: u8 = 8;
    const LIST: u8 = 9;
    pub(super) const STRUCT: u8 = 12;

    const PROTOCOL_ID: u8 = 0x82;
    const VERSION: u8 = 1;
    pub(super) const ONEWAY: u8 = 4;

    /// Unsigned LEB128. Built on the stack and appended once: a push per byte (each
    /// with its capacity check) was the encoder's largest cost.
    #[inline]
    pub(super) fn varint(out: &mut Vec<u8>, mut v: u64) {
        if v < 0x80 {
            out.push(v as u8);
            return;
        }
        let mut buf = [0u8; 10];
        let mut n = 0;
        while v >= 0x80 {
            buf[n] = (v as u8 & 0x7f) | 0x80;
            v >>= 7;
            n += 1;
        }
        buf[n] = v as u8;
        out.extend_from_slice(&buf[..=n]);
    }

    pub(super) fn zigzag64(v: i64) -> u64 {
        ((v << 1) ^ (v >> 63)) as u64
    }

    pub(super) fn zigzag32(v: i32) -> u32 {
        ((v << 1) ^ (v >> 31)) as u32
    }

    pub(super) fn binary(out: &mut Vec<u8>, b: &[u8]) {
        varint(out, b.len() as u64);
        out.extend_from_slice(b);
    }

    pub(super) fn list_header(out: &mut Vec<u8>, elem: u8, n: usize) {
        if n <= 14 {
            out.push((n as u8) << 4 | elem);
        } else {
            out.push(0xf0 | elem);
            varint(out, n as u64);
        }
    }

    /// The message header: protocol id, version and type, sequence id, name.
    pub(super) fn message_begin(out: &mut Vec<u8>, name: &str, mtype: u8, seqid: i32) {
        out.push(PROTOCOL_ID);
        out.push(VERSION | mtype << 5);
        // Thrift writes the signed sequence id as an unsigned varint.
        varint(out, u64::from(seqid as u32));
        binary(out, name.as_bytes());
    }

    /// The fields of one struct, written in increasing id order (the header of a field
    /// is the delta from the previous id when it is 1 to 15).
    pub(super) struct Fields<'a> {
        out: &'a mut Vec<u8>,
        last: i16,
    }

    impl<'a> Fields<'a> {
        pub(super) fn new(out: &'a mut Vec<u8>) -> Fields<'a> {
            Fields { out, last: 0 }
        }

        fn header(&mut self, ty: u8, id: i16) {
            let delta = i32::from(id) - i32::from(self.last);
            if (1..=15).contains(&delta) {
                self.out.push((delta as u8) << 4 | ty);
            } else {
                self.out.push(ty);
                varint(self.out, u64::from(zigzag32(i32::from(id))));
            }
            self.last = id;
        }

        pub(super) fn i32(&mut self, id: i16, v: i32) {
            self.header(I32, id);
            varint(self.out, u64::from(zigzag32(v)));
        }

        pub(super) fn i64(&mut self, id: i16, v: i64) {
            self.header(I64, id);
            varint(self.out, zigzag64(v));
        }

        /// A bool field's value is its header's type.
        pub(super) fn bool(&mut self, id: i16, v: bool) {
            self.header(if v { BOOL_TRUE } else { BOOL_FALSE }, id);
        }

        pub(super) fn double(&mut self, id: i16, v: f64) {
            self.header(DOUBLE, id);
            self.out.extend_from_slice(&v.to_le_bytes());
        }

        pub(super) fn string(&mut self, id: i16, s: &str) {
            self.header(BINARY, id);
            binary(self.out, s.as_bytes());
        }

        /// A list field's header; its `n` elements follow through [`out`](Self::out)
        /// or [`element`](Self::element).
        pub(super) fn list(&mut self, id: i16, elem: u8, n: usize) {
            self.header(LIST, id);
            list_header(self.out, elem, n);
        }

        /// A struct field: its fields follow, then [`end`](Self::end).
        pub(super) fn struct_field(&mut self, id: i16) -> Fields<'_> {
            self.header(STRUCT, id);
            Fields::new(self.out)
        }

        /// A struct field already encoded (its fields and stop).
        pub(super) fn encoded_struct(&mut self, id: i16, bytes: &[u8]) {
            self.header(STRUCT, id);
            self.out.extend_from_slice(bytes);
        }

        /// A struct element of a list.
        pub(super) fn element(&mut self) -> Fields<'_> {
            Fields::new(self.out)
        }

        pub(super) fn out(&mut self) -> &mut Vec<u8> {
            self.out
        }

        pub(super) fn end(self) {
            self.out.push(STOP);
        }
    }
}

use compact::Fields;

/// `emitBatch`'s message header at its longest (a five-byte sequence id).
const MAX_MESSAGE_HEADER: usize = 2 + 5 + 1 + "emitBatch".len();

/// Bytes of a datagram besides its spans, for a process of `process_len` bytes:
/// message header, argument and batch field headers, the span list's header (at most
/// six bytes) and two struct stops.
fn overhead(process_len: usize) -> usize {
    MAX_MESSAGE_HEADER + 1 + 1 + process_len + 1 + 6 + 2
}

/// A tag's value.
#[derive(Clone, Copy)]
enum TagValue<'a> {
    Str(&'a str),
    Double(f64),
    Bool(bool),
    Long(i64),
}

impl<'a> From<&'a AttrValue<'_>> for TagValue<'a> {
    fn from(v: &'a AttrValue) -> TagValue<'a> {
        match v {
            AttrValue::Str(s) => TagValue::Str(s),
            AttrValue::Int(i) => TagValue::Long(*i),
            AttrValue::Double(d) => TagValue::Double(*d),
            AttrValue::Bool(b) => TagValue::Bool(*b),
        }
    }
}

/// A `Tag` struct (TagType: STRING=0, DOUBLE=1, BOOL=2, LONG=3).
fn tag(out: &mut Vec<u8>, key: &str, v: TagValue<'_>) {
    let mut f = Fields::new(out);
    f.string(1, key);
    match v {
        TagValue::Str(s) => {
            f.i32(2, 0);
            f.string(3, s);
        }
        TagValue::Double(d) => {
            f.i32(2, 1);
            f.double(4, d);
        }
        TagValue::Bool(b) => {
            f.i32(2, 2);
            f.bool(5, b);
        }
        TagValue::Long(i) => {
            f.i32(2, 3);
            f.i64(6, i);
        }
    }
    f.end();
}

/// A `Process` struct.
fn encode_process(out: &mut Vec<u8>, service_name: &str, tags: &[(&str, &str)]) {
    let mut f = Fields::new(out);
    f.string(1, service_name);
    f.list(2, compact::STRUCT, tags.len());
    for (k, v) in tags {
        tag(f.out(), k, TagValue::Str(v));
    }
    f.end();
}

/// Thrift's i64 ids are signed: the same 64 bits.
fn id64(v: u128) -> i64 {
    v as u64 as i64
}

/// A `Span` struct; `truncated` adds the tag saying it was cut down.
fn encode_span(out: &mut Vec<u8>, s: &Span, truncated: bool) {
    let start_us = s.start_ns / 1000;
    let end_us = s.end_ns / 1000;
    let mut f = Fields::new(out);
    f.i64(1, id64(s.base_id));
    f.i64(2, id64(s.base_id >> 64));
    f.i64(3, id64(s.id));
    f.i64(4, s.parent_span_id().unwrap_or(0) as i64);
    f.string(5, &s.name);
    f.i32(7, 1);
    f.i64(8, start_us);
    f.i64(9, end_us.saturating_sub(start_us));
    // OpenTracing's convention, which Jaeger maps to the span's kind.
    let kind = match s.kind {
        SpanKind::Server => Some("server"),
        SpanKind::Client => Some("client"),
        SpanKind::Internal => None,
    };
    let n = s.attributes.len()
        + usize::from(kind.is_some())
        + usize::from(s.error.is_some())
        + usize::from(truncated);
    f.list(10, compact::STRUCT, n);
    if let Some(k) = kind {
        tag(f.out(), "span.kind", TagValue::Str(k));
    }
    for (k, v) in &s.attributes {
        tag(f.out(), k, v.into());
    }
    if s.error.is_some() {
        tag(f.out(), "error", TagValue::Bool(true));
    }
    if truncated {
        tag(f.out(), "osprofiler.truncated", TagValue::Bool(true));
    }
    if let Some(e) = &s.error {
        f.list(11, compact::STRUCT, 1);
        let mut log = f.element();
        log.i64(1, end_us);
        log.list(2, compact::STRUCT, 3);
        tag(log.out(), "event", TagValue::Str("error"));
        tag(log.out(), "error.kind", TagValue::Str(&e.etype));
        tag(log.out(), "message", TagValue::Str(&e.message));
        log.end();
    }
    f.end();
}

/// A whole datagram: the `emitBatch` message of `n` encoded spans.
fn encode_datagram(out: &mut Vec<u8>, seqid: i32, process: &[u8], spans: &[u8], n: usize) {
    out.clear();
    compact::message_begin(out, "emitBatch", compact::ONEWAY, seqid);
    let mut args = Fields::new(out);
    let mut batch = args.struct_field(1);
    batch.encoded_struct(1, process);
    batch.list(2, compact::STRUCT, n);
    batch.out().extend_from_slice(spans);
    batch.end();
    args.end();
}

/// Strings are never cut below this (a span's name and error stay readable) until the
/// last resort.
const KEEP: usize = 256;
/// The last resort's length for the name and the error's strings.
const LAST_RESORT: usize = 32;

/// Cuts `s` to at most `max` bytes, on a character boundary.
fn cut(s: &mut String, max: usize) {
    if s.len() > max {
        let mut i = max;
        while !s.is_char_boundary(i) {
            i -= 1;
        }
        s.truncate(i);
    }
}

#[derive(Clone, Copy)]
enum Piece {
    Attr(usize),
    Name,
    Etype,
    Message,
}

fn piece<'s>(s: &'s mut Span<'_>, p: Piece) -> Option<&'s mut String> {
    match p {
        Piece::Attr(i) => match s.attributes.get_mut(i) {
            Some((_, AttrValue::Str(v))) => Some(v.to_mut()),
            _ => None,
        },
        Piece::Name => Some(s.name.to_mut()),
        Piece::Etype => s.error.as_mut().map(|e| e.etype.to_mut()),
        Piece::Message => s.error.as_mut().map(|e| e.message.to_mut()),
    }
}

/// The longest string of the span longer than `KEEP`.
fn longest_string(s: &Span) -> Option<Piece> {
    let attrs = s
        .attributes
        .iter()
        .enumerate()
        .filter_map(|(i, (_, v))| match v {
            AttrValue::Str(v) => Some((Piece::Attr(i), v.len())),
            _ => None,
        });
    let others = [
        Some((Piece::Name, s.name.len())),
        s.error.as_ref().map(|e| (Piece::Etype, e.etype.len())),
        s.error.as_ref().map(|e| (Piece::Message, e.message.len())),
    ];
    attrs
        .chain(others.into_iter().flatten())
        .filter(|&(_, len)| len > KEEP)
        .max_by_key(|&(_, len)| len)
        .map(|(p, _)| p)
}

fn attr_size(a: &Attr) -> usize {
    a.0.len()
        + match &a.1 {
            AttrValue::Str(s) => s.len(),
            _ => 10,
        }
}

/// Encodes into `out` a copy of `span` cut down to `budget` bytes and tagged
/// `osprofiler.truncated`: the longest strings are cut first (down to `KEEP` bytes), then
/// the largest attributes dropped, then the name and error cut short. False when even
/// that does not fit.
fn encode_truncated(out: &mut Vec<u8>, span: &Span, budget: usize) -> bool {
    let mut s = span.clone();
    let fits = |out: &mut Vec<u8>, s: &Span| {
        out.clear();
        encode_span(out, s, true);
        out.len() <= budget
    };
    // Each round either fits or leaves one more string at `KEEP` bytes.
    for _ in 0..s.attributes.len() + 4 {
        if fits(out, &s) {
            return true;
        }
        let excess = out.len() - budget;
        let Some(p) = longest_string(&s) else { break };
        if let Some(v) = piece(&mut s, p) {
            // Shorter by `excess` bytes is shorter by at least that much encoded.
            let keep = v.len().saturating_sub(excess).max(KEEP);
            cut(v, keep);
        }
    }
    while !fits(out, &s) {
        let largest = s
            .attributes
            .iter()
            .enumerate()
            .max_by_key(|(_, a)| attr_size(a))
            .map(|(i, _)| i);
        let Some(largest) = largest else {
            cut(s.name.to_mut(), LAST_RESORT);
            if let Some(e) = s.error.as_mut() {
                cut(e.etype.to_mut(), LAST_RESORT);
                cut(e.message.to_mut(), LAST_RESORT);
            }
            return fits(out, &s);
        };
        // `remove`, not `swap_remove`: the tags that stay keep their order.
        s.attributes.remove(largest);
    }
    true
}

/// Counters of one open `jaeger://` sink, from [`jaeger_stats`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JaegerStats {
    /// The agent (its connection string).
    pub agent: String,
    /// Spans sent (handed to the kernel in a datagram; UDP says no more).
    pub spans_sent: u64,
    /// Datagrams sent.
    pub datagrams_sent: u64,
    /// Spans not sent: their datagram could not be sent (refused, socket buffer full,
    /// network error), or they could not be cut down to fit one.
    pub spans_dropped: u64,
    /// Spans sent cut down to fit a datagram (tagged `osprofiler.truncated`).
    pub spans_truncated: u64,
    /// Datagrams refused: the agent's host said nothing listens on the port.
    pub datagrams_refused: u64,
    /// Points whose stop never came: dropped, never sent half open.
    pub orphans_dropped: u64,
    /// Stops whose start was never seen (no start time: not sent).
    pub unmatched_stops: u64,
    /// Points started and not stopped yet: the only state held between batches.
    pub open_points: u64,
}

#[derive(Default)]
struct Counters {
    spans_sent: AtomicU64,
    datagrams_sent: AtomicU64,
    spans_dropped: AtomicU64,
    spans_truncated: AtomicU64,
    datagrams_refused: AtomicU64,
    orphans_dropped: AtomicU64,
    unmatched_stops: AtomicU64,
    open_points: AtomicU64,
}

impl Counters {
    fn add(c: &AtomicU64, n: usize) {
        c.fetch_add(n as u64, Ordering::Relaxed);
    }
}

struct Registered {
    agent: String,
    counters: Weak<Counters>,
}

static REGISTRY: Mutex<Vec<Registered>> = Mutex::new(Vec::new());

/// The counters of every `jaeger://` sink that is open.
pub fn jaeger_stats() -> Vec<JaegerStats> {
    let Ok(mut reg) = REGISTRY.lock() else {
        return Vec::new();
    };
    reg.retain(|r| r.counters.strong_count() > 0);
    reg.iter()
        .filter_map(|r| Some(r.counters.upgrade()?.snapshot(&r.agent)))
        .collect()
}

impl Counters {
    fn snapshot(&self, agent: &str) -> JaegerStats {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        JaegerStats {
            agent: agent.to_owned(),
            spans_sent: get(&self.spans_sent),
            datagrams_sent: get(&self.datagrams_sent),
            spans_dropped: get(&self.spans_dropped),
            spans_truncated: get(&self.spans_truncated),
            datagrams_refused: get(&self.datagrams_refused),
            orphans_dropped: get(&self.orphans_dropped),
            unmatched_stops: get(&self.unmatched_stops),
            open_points: get(&self.open_points),
        }
    }
}

/// Most processes kept encoded; a service has a handful (one per project, service and
/// host it writes as).
const MAX_PROCESSES: usize = 1024;

/// The `jaeger://` sink: pairs events into spans and sends each batch's finished spans
/// at once; only open points are held between batches.
pub(crate) struct JaegerSink {
    agent: String,
    peer: SocketAddr,
    socket: UdpSocket,
    max_packet: usize,
    prefix: Option<String>,
    ip: String,
    process_tags: Vec<(String, String)>,
    asm: Assembler,
    processes: HashMap<Origin, Arc<[u8]>>,
    seqid: i32,
    span_buf: Vec<u8>,
    body: Vec<u8>,
    datagram: Vec<u8>,
    counters: Arc<Counters>,
    /// `spans_dropped` and `datagrams_refused` as last reported to the pipeline.
    reported: (u64, u64),
}

pub(crate) fn open_sink(t: &JaegerTarget, opts: &Options) -> Result<Box<dyn Sink>, OpenError> {
    Ok(Box::new(JaegerSink::open(t, opts)?))
}

impl JaegerSink {
    pub(crate) fn open(t: &JaegerTarget, opts: &Options) -> Result<JaegerSink, OpenError> {
        let agent = ConnectionString::Jaeger(t.clone()).to_string();
        let unavailable = |reason: String| OpenError::Unavailable {
            store: agent.clone(),
            reason,
        };
        let peer = (t.host.as_str(), t.port)
            .to_socket_addrs()
            .map_err(|e| unavailable(format!("cannot resolve {}: {e}", t.host)))?
            .next()
            .ok_or_else(|| unavailable(format!("{} has no address", t.host)))?;
        let local: SocketAddr = match peer {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let socket = UdpSocket::bind(local)
            .and_then(|s| s.connect(peer).map(|()| s))
            .and_then(|s| s.set_nonblocking(true).map(|()| s))
            .map_err(|e| unavailable(format!("UDP socket to {peer}: {e}")))?;
        let ip = socket
            .local_addr()
            .map(|a| a.ip())
            .ok()
            .filter(|ip| !ip.is_unspecified())
            .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
            .to_string();
        let counters = Arc::new(Counters::default());
        if let Ok(mut reg) = REGISTRY.lock() {
            reg.push(Registered {
                agent: agent.clone(),
                counters: Arc::downgrade(&counters),
            });
        }
        Ok(JaegerSink {
            agent,
            peer,
            socket,
            max_packet: t.max_packet_size,
            prefix: t
                .service_name_prefix
                .clone()
                .or_else(|| opts.jaeger_service_name_prefix.clone()),
            ip,
            process_tags: opts.jaeger_process_tags.clone(),
            asm: Assembler::new(DEFAULT_MAX_OPEN),
            processes: HashMap::new(),
            seqid: 0,
            span_buf: Vec::new(),
            body: Vec::new(),
            datagram: Vec::new(),
            counters,
            reported: (0, 0),
        })
    }

    /// The counters, as [`jaeger_stats`] reports them.
    #[cfg(test)]
    pub(crate) fn stats(&self) -> JaegerStats {
        self.counters.snapshot(&self.agent)
    }

    /// The encoded process of `origin`.
    fn process(&mut self, origin: &Origin) -> Arc<[u8]> {
        if let Some(p) = self.processes.get(origin) {
            return p.clone();
        }
        let name = origin.service_name(self.prefix.as_deref());
        let version = env!("CARGO_PKG_VERSION");
        let mut tags: Vec<(&str, &str)> = Vec::with_capacity(3 + self.process_tags.len());
        if let Some(host) = origin.host.as_deref() {
            tags.push(("hostname", host));
        }
        tags.push(("ip", &self.ip));
        tags.push(("osprofiler.version", version));
        tags.extend(
            self.process_tags
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        );
        let mut out = Vec::with_capacity(64);
        encode_process(&mut out, &name, &tags);
        let p: Arc<[u8]> = out.into();
        if self.processes.len() >= MAX_PROCESSES {
            self.processes.clear();
        }
        self.processes.insert(origin.clone(), p.clone());
        p
    }

    /// Sends the spans of one origin, in as many datagrams as they need.
    fn send_group(&mut self, spans: &[Span], members: &[usize]) -> Option<io::Error> {
        let first = members.first().and_then(|&i| spans.get(i))?;
        let process = self.process(&first.origin);
        let budget = self.max_packet.saturating_sub(overhead(process.len()));
        let mut first_error = None;
        let mut n = 0;
        self.body.clear();
        for span in members.iter().filter_map(|&i| spans.get(i)) {
            self.span_buf.clear();
            encode_span(&mut self.span_buf, span, false);
            if self.span_buf.len() > budget {
                if encode_truncated(&mut self.span_buf, span, budget) {
                    Counters::add(&self.counters.spans_truncated, 1);
                } else {
                    Counters::add(&self.counters.spans_dropped, 1);
                    continue;
                }
            }
            if self.body.len() + self.span_buf.len() > budget {
                if let Err(e) = self.send(&process, n) {
                    first_error.get_or_insert(e);
                }
                self.body.clear();
                n = 0;
            }
            self.body.extend_from_slice(&self.span_buf);
            n += 1;
        }
        if n > 0
            && let Err(e) = self.send(&process, n)
        {
            first_error.get_or_insert(e);
        }
        first_error
    }

    /// Sends `self.body`'s `n` spans as one datagram. A full socket buffer or a refusal
    /// drops them (counted); other errors are returned.
    fn send(&mut self, process: &[u8], n: usize) -> io::Result<()> {
        self.seqid = self.seqid.checked_add(1).unwrap_or(1);
        encode_datagram(&mut self.datagram, self.seqid, process, &self.body, n);
        let c = &self.counters;
        match self.socket.send(&self.datagram) {
            Ok(_) => {
                Counters::add(&c.datagrams_sent, 1);
                Counters::add(&c.spans_sent, n);
                Ok(())
            }
            Err(e) => {
                Counters::add(&c.spans_dropped, n);
                match e.kind() {
                    io::ErrorKind::WouldBlock => Ok(()),
                    io::ErrorKind::ConnectionRefused => {
                        Counters::add(&c.datagrams_refused, 1);
                        Ok(())
                    }
                    _ => Err(e),
                }
            }
        }
    }

    /// Reports the spans dropped since the last report as failed events (see the module
    /// docs), with a message saying how many datagrams were refused.
    fn report_drops(&mut self) {
        let c = &self.counters;
        let (dropped, refused) = (
            c.spans_dropped.load(Ordering::Relaxed),
            c.datagrams_refused.load(Ordering::Relaxed),
        );
        let (new_dropped, new_refused) = (
            dropped.saturating_sub(self.reported.0),
            refused.saturating_sub(self.reported.1),
        );
        self.reported = (dropped, refused);
        if new_dropped == 0 {
            return;
        }
        let why = if new_refused > 0 {
            format!(
                "{new_refused} datagrams refused (nothing listens on {})",
                self.peer
            )
        } else {
            "the socket buffer was full or they did not fit a datagram".to_owned()
        };
        osprofiler::notifier::report_late_failure(
            2 * new_dropped,
            &SinkError::msg(format!(
                "{}: {new_dropped} spans not sent: {why}",
                self.agent
            )),
        );
    }

    fn publish_assembler_stats(&self) {
        let s = self.asm.stats();
        let c = &self.counters;
        c.orphans_dropped
            .store(s.orphans_dropped, Ordering::Relaxed);
        c.unmatched_stops
            .store(s.unmatched_stops, Ordering::Relaxed);
        c.open_points
            .store(self.asm.open_points() as u64, Ordering::Relaxed);
    }
}

impl Sink for JaegerSink {
    fn write(&mut self, events: &[Event]) -> Result<(), SinkError> {
        // The previous batches were counted as exported by now.
        self.report_drops();
        let mut spans = Vec::with_capacity(events.len() / 2 + 1);
        self.asm.push_batch(events, &mut spans);
        // One process per datagram: group the spans by origin, in order of appearance.
        // Consecutive spans mostly share theirs: the last group is tried first.
        let mut groups: Vec<(&Origin, Vec<usize>)> = Vec::new();
        let mut last = 0;
        for (i, s) in spans.iter().enumerate() {
            let g = if groups.get(last).is_some_and(|(o, _)| **o == s.origin) {
                last
            } else if let Some(g) = groups.iter().position(|(o, _)| **o == s.origin) {
                g
            } else {
                groups.push((&s.origin, Vec::new()));
                groups.len() - 1
            };
            groups[g].1.push(i);
            last = g;
        }
        let dropped_before = self.counters.spans_dropped.load(Ordering::Relaxed);
        let mut first_error = None;
        for (_, members) in &groups {
            if let Some(e) = self.send_group(&spans, members) {
                first_error.get_or_insert(e);
            }
        }
        let total = spans.len();
        drop(groups);
        drop(spans);
        self.publish_assembler_stats();
        match first_error {
            None => Ok(()),
            Some(e) => {
                let dropped = self
                    .counters
                    .spans_dropped
                    .load(Ordering::Relaxed)
                    .saturating_sub(dropped_before);
                // The pipeline counts this whole batch as failed: not reported again.
                self.reported = (
                    self.counters.spans_dropped.load(Ordering::Relaxed),
                    self.counters.datagrams_refused.load(Ordering::Relaxed),
                );
                Err(SinkError::msg(format!(
                    "{} (agent {}): {dropped} of {total} spans not sent: {e}",
                    self.agent, self.peer
                )))
            }
        }
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        // Nothing is buffered (each batch is sent at once): only the losses to report.
        self.report_drops();
        Ok(())
    }
}

impl Drop for JaegerSink {
    fn drop(&mut self) {
        self.report_drops();
        // Open points are never sent half open: they are counted as orphans.
        self.asm.close();
        self.publish_assembler_stats();
    }
}

#[cfg(test)]
mod tests {
    use super::compact::*;
    use super::*;

    fn varint_of(v: u64) -> Vec<u8> {
        let mut out = Vec::new();
        varint(&mut out, v);
        out
    }

    #[test]
    fn varints_and_zigzag() {
        assert_eq!(varint_of(0), [0]);
        assert_eq!(varint_of(1), [1]);
        assert_eq!(varint_of(127), [0x7f]);
        assert_eq!(varint_of(128), [0x80, 0x01]);
        assert_eq!(varint_of(300), [0xac, 0x02]);
        assert_eq!(varint_of(u64::MAX).len(), 10);
        assert_eq!(zigzag64(0), 0);
        assert_eq!(zigzag64(-1), 1);
        assert_eq!(zigzag64(1), 2);
        assert_eq!(zigzag64(-2), 3);
        assert_eq!(zigzag64(i64::MAX), u64::MAX - 1);
        assert_eq!(zigzag64(i64::MIN), u64::MAX);
        assert_eq!(zigzag32(-1), 1);
        assert_eq!(zigzag32(i32::MIN), u32::MAX);
    }

    #[test]
    fn a_tiny_struct_and_long_field_gaps() {
        let mut out = Vec::new();
        let mut f = Fields::new(&mut out);
        f.i32(1, 3); // delta 1, type I32 (5), zigzag(3) = 6
        f.bool(2, true); // delta 1, type TRUE (1)
        f.string(3, "ab"); // delta 1, type BINARY (8), length 2
        f.i64(20, -1); // delta 17 > 15: type byte, zigzag i16 id (40), zigzag(-1) = 1
        f.double(21, 1.0);
        f.end();
        let mut want = vec![
            0x15, 0x06, 0x11, 0x18, 0x02, b'a', b'b', 0x06, 40, 0x01, 0x17,
        ];
        want.extend_from_slice(&1.0f64.to_le_bytes());
        want.push(0);
        assert_eq!(out, want);
    }

    #[test]
    fn list_headers_and_message_header() {
        let mut out = Vec::new();
        list_header(&mut out, STRUCT, 3);
        assert_eq!(out, [0x3c]);
        out.clear();
        list_header(&mut out, STRUCT, 15);
        assert_eq!(out, [0xfc, 15]);
        out.clear();
        message_begin(&mut out, "emitBatch", ONEWAY, 1);
        assert_eq!(&out[..4], [0x82, 0x81, 0x01, 9]);
        assert_eq!(&out[4..], b"emitBatch");
        assert!(out.len() <= MAX_MESSAGE_HEADER);
        out.clear();
        message_begin(&mut out, "emitBatch", ONEWAY, i32::MAX);
        assert_eq!(out.len(), MAX_MESSAGE_HEADER);
    }

    #[test]
    fn tags_by_type() {
        let mut out = Vec::new();
        tag(&mut out, "k", TagValue::Bool(true));
        // key "k", vType 2 (zigzag 4), vBool true as the header of field 5 (delta 3).
        assert_eq!(out, [0x18, 1, b'k', 0x15, 4, 0x31, 0]);
        out.clear();
        tag(&mut out, "n", TagValue::Long(-3));
        assert_eq!(out, [0x18, 1, b'n', 0x15, 6, 0x46, 5, 0]);
    }

    fn span(name: &str, attrs: Vec<(&'static str, AttrValue<'static>)>) -> Span<'static> {
        Span {
            base_id: 0x1111_1111_2222_3333_4444_5555_5555_5555,
            id: 0xaaaa_aaaa_aaaa_4aaa_8aaa_0000_0000_0002,
            parent_id: 0x1111_1111_2222_3333_4444_5555_5555_5555,
            name: name.to_owned().into(),
            kind: SpanKind::Client,
            start_ns: 1_767_225_600_000_100_000,
            end_ns: 1_767_225_600_000_900_000,
            origin: Origin::default(),
            attributes: attrs
                .into_iter()
                .map(|(k, v)| (std::borrow::Cow::Borrowed(k), v))
                .collect(),
            error: None,
        }
    }

    #[test]
    fn datagram_overhead_is_an_upper_bound() {
        let mut process = Vec::new();
        encode_process(
            &mut process,
            "nova-api",
            &[("hostname", "h1"), ("ip", "127.0.0.1")],
        );
        let mut spans = Vec::new();
        for _ in 0..300 {
            encode_span(&mut spans, &span("db", vec![]), false);
        }
        let mut d = Vec::new();
        encode_datagram(&mut d, i32::MAX, &process, &spans, 300);
        assert!(d.len() <= overhead(process.len()) + spans.len());
        assert!(d.len() + 4 >= overhead(process.len()) + spans.len());
    }

    #[test]
    fn truncation_cuts_longest_strings_then_drops_attributes() {
        let big = "é".repeat(50_000); // 100 kB, two bytes a character
        let s = span(
            "SQL_SELECT",
            vec![
                ("db.query.text", AttrValue::Str(big.clone().into())),
                ("small", AttrValue::Str("x".into())),
                ("n", AttrValue::Int(7)),
            ],
        );
        let mut out = Vec::new();
        assert!(encode_truncated(&mut out, &s, 4000));
        assert!(out.len() <= 4000 && out.len() > 3900, "{}", out.len());
        // Many mid-sized attributes, none above KEEP: dropped, largest first.
        let many = (0..100)
            .map(|_| ("k", AttrValue::Str("v".repeat(200).into())))
            .collect();
        assert!(encode_truncated(&mut out, &span("x", many), 1000));
        assert!(out.len() <= 1000);
        // Nothing to drop and a budget below the bare span: refused.
        assert!(!encode_truncated(&mut out, &span("x", vec![]), 20));
        let mut s = "aé".to_string();
        cut(&mut s, 2);
        assert_eq!(s, "a");
    }

    fn events(n: usize) -> Vec<Event> {
        let base = "11111111-2222-3333-4444-555555555555";
        let mut out = Vec::new();
        for i in 0..n {
            let id = format!("aaaaaaaa-aaaa-4aaa-8aaa-{i:012x}");
            for (suffix, ts) in [("start", "00.000100"), ("stop", "00.000900")] {
                let line = format!(
                    r#"{{"name": "x-{suffix}", "base_id": "{base}", "trace_id": "{id}", "parent_id": "{base}", "timestamp": "2026-01-01T00:00:{ts}", "info": {{"host": "h1"}}, "project": "nova", "service": "api"}}"#
                );
                out.push(Event::from_json(&line).unwrap());
            }
        }
        out
    }

    #[test]
    fn a_port_nobody_reads_costs_counted_drops_not_errors() {
        let port = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let t: ConnectionString = format!("jaeger://127.0.0.1:{port}?max_packet_size=512")
            .parse()
            .unwrap();
        let ConnectionString::Jaeger(t) = t else {
            unreachable!()
        };
        let mut sink = JaegerSink::open(&t, &Options::default()).unwrap();
        let evs = events(200);
        let started = std::time::Instant::now();
        for chunk in evs.chunks(20) {
            sink.write(chunk).unwrap();
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        let st = sink.stats();
        assert_eq!(st.spans_sent + st.spans_dropped, 200, "{st:?}");
        assert!(st.datagrams_refused > 0 && st.spans_dropped > 0, "{st:?}");
        assert_eq!(st.open_points, 0);
        // A start without its stop is held, and dropped (counted) at close.
        sink.write(&evs[..1]).unwrap();
        assert_eq!(sink.stats().open_points, 1);
        let counters = sink.counters.clone();
        drop(sink);
        assert_eq!(counters.snapshot("").orphans_dropped, 1);
    }
}
