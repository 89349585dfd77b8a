//! The write side: each batch of events in one pipelined round trip (all commands
//! written, then all replies read).
//!
//! Per trace in the batch: `LPUSH osprofiler_opt:<id> e1 e2 …` (events in time order, so
//! the list reads newest first as Python's does; at most 256 values per command),
//! `ZADD osprofiler_index LT <start> <id>` (LT keeps the earliest start even when a later
//! batch brings an earlier event, e.g. a long root point's start; servers before 6.2 get
//! NX), `PEXPIRE` with a TTL, the trace's summary (one `ZADD GT` on the sorted set
//! `osprofiler_summary:<id>`, plus its `PEXPIRE`, see [`summaries`]),
//! and with `filter_error_trace` Python's `SET osprofiler_error:<id> {"base_id",
//! "timestamp"}` plus `ZADD osprofiler_error_index`.
//!
//! A summary the server refuses never fails the batch (the events are stored, and the
//! read side summarises a trace from its events when its summary is missing or
//! incomplete); a server without `ZADD GT` (before 6.2), or a user not allowed the
//! commands, gets no more summaries from this sink.
//!
//! The encoded commands go to the socket every 64 KiB while the rest of the batch is
//! serialized, so Redis works on a batch while we still encode it; buffers are reused
//! from batch to batch. After a failure the sink stops trying for a while (50 ms,
//! doubling up to 5 s) and fails batches at once meanwhile, so a down server costs the
//! exporter nothing but an error per batch.

use crate::backoff::Backoff;
use std::collections::HashMap;

use osprofiler::notifier::{Sink, SinkError};
use osprofiler::private::decimal;
use osprofiler::{Event, EventKind};
use serde_json::Value;

use super::client::{ClientError, Conn, Settings};
use super::cluster::{self, Cluster};
use super::resp::{self, Reply};
use super::summaries::{self, flat};
use super::{ERROR_INDEX, ERROR_PREFIX, INDEX, OPT_PREFIX, SUMMARY_PREFIX, push_score};
use crate::Options;
use crate::summary::root_name;

/// Most events per `LPUSH`.
const PUSH_CHUNK: usize = 256;
/// Bytes encoded before they are written to the socket (Redis works on them meanwhile).
const STREAM_CHUNK: usize = 64 * 1024;

/// What each command of a batch was, to judge its reply.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Cmd {
    Push,
    Index,
    Summary,
    Other,
}

/// One trace of the batch being written.
struct Trace {
    id: [u8; 36],
    /// Its events in the batch.
    count: u32,
    /// Where its events start in `order`.
    offset: u32,
    /// Earliest and latest event time (µs).
    first: i64,
    last: i64,
    /// Its start events in the batch.
    points: u32,
    /// Whether one of its events has `info.etype`.
    any_error: bool,
    /// The best root candidate: (level: 0 first-level, 1 other; start µs; index in the
    /// batch), the lowest (level, start).
    root: Option<(u8, i64, u32)>,
    /// Whether the root candidate's JSON may name it (else its info is not looked at).
    root_named: bool,
    /// The last event with `info.etype` (an index into the batch).
    error: Option<u32>,
    /// Its index shard (cluster).
    shard: u8,
}

pub(crate) struct RedisSink {
    settings: Settings,
    name: String,
    ttl_ms: Option<u64>,
    filter_error_trace: bool,
    conn: Option<Conn>,
    backoff: Backoff,
    /// `LT` until a server refuses it, then `NX`.
    index_flag: &'static [u8],
    /// Summaries are written (until a server refuses their commands for good).
    summaries: bool,
    /// This sink's name in the summaries' counts, and its batch number (see
    /// `summaries.rs`).
    writer: u64,
    batch: u64,
    /// The services and categories of the trace being encoded (indexes in the batch of
    /// their first event).
    services: Vec<u32>,
    categories: Vec<u32>,
    // Reused from batch to batch.
    buf: Vec<u8>,
    /// How much of `buf` went to the socket already.
    sent: usize,
    stream_error: Option<ClientError>,
    cmds: Vec<Cmd>,
    traces: Vec<Trace>,
    trace_of: HashMap<u128, u32>,
    group: Vec<u32>,
    order: Vec<u32>,
    json: Vec<u8>,
    /// `rediscluster://`: the cluster client, the index shards' names (events, errors),
    /// and each command's bytes and slot.
    cluster: Option<ClusterSide>,
    shard_names: Option<ShardNames>,
}

/// The names of the index shards and of the error index shards.
type ShardNames = (Vec<Vec<u8>>, Vec<Vec<u8>>);

struct ClusterSide {
    client: Cluster,
    commands: Vec<cluster::Command>,
    /// Where the command being encoded starts in `buf`.
    start: usize,
}

impl RedisSink {
    pub(crate) fn new(
        settings: Settings,
        opts: &Options,
        name: String,
        conn: Result<Conn, ClientError>,
    ) -> RedisSink {
        let mut sink = RedisSink {
            settings,
            name,
            ttl_ms: opts
                .ttl
                .map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX).max(1)),
            filter_error_trace: opts.filter_error_trace,
            conn: None,
            backoff: Backoff::default(),
            index_flag: b"LT",
            summaries: opts.trace_summaries,
            writer: summaries::writer_id(),
            batch: 0,
            services: Vec::new(),
            categories: Vec::new(),
            buf: Vec::with_capacity(1 << 20),
            sent: 0,
            stream_error: None,
            cmds: Vec::new(),
            traces: Vec::new(),
            trace_of: HashMap::new(),
            group: Vec::new(),
            order: Vec::new(),
            json: Vec::with_capacity(1024),
            cluster: None,
            shard_names: None,
        };
        match conn {
            Ok(c) => sink.conn = Some(c),
            Err(e) => sink.failed(&e),
        }
        sink
    }

    /// A sink writing to a Redis Cluster (no connection made yet: the slot map is read
    /// with the first batch).
    pub(crate) fn new_cluster(
        settings: Settings,
        opts: &Options,
        name: String,
        client: Cluster,
    ) -> RedisSink {
        let mut sink = RedisSink::new(
            settings,
            opts,
            name,
            Err(ClientError::Io {
                message: "not connected yet".into(),
                closed: false,
            }),
        );
        sink.backoff.succeeded();
        sink.cluster = Some(ClusterSide {
            client,
            commands: Vec::new(),
            start: 0,
        });
        sink.shard_names = Some((cluster::shard_keys(INDEX), cluster::shard_keys(ERROR_INDEX)));
        sink
    }

    /// A batch to a cluster: encoded whole, then every command on the master of its
    /// slot (see [`cluster`]); the commands that could not be written are counted in the
    /// error.
    fn write_cluster(&mut self, events: &[Event]) -> Result<(), SinkError> {
        if let Some(waiting) = self.backoff.waiting() {
            return Err(self.error(waiting));
        }
        self.encode(events, None);
        let Some(side) = self.cluster.as_mut() else {
            return Err(self.error("not a cluster"));
        };
        let results = side.client.exec(&self.buf, &side.commands, false);
        let (mut failed, mut first, mut broken) = (0_usize, None, false);
        let cmds = std::mem::take(&mut self.cmds);
        for (r, &cmd) in results.into_iter().zip(&cmds) {
            match r {
                Ok(Reply::Error(e)) => {
                    if self.tolerated(cmd, &e) {
                        continue;
                    }
                    failed += 1;
                    first.get_or_insert(ClientError::Server(e));
                }
                Ok(_) => {}
                Err(e) => {
                    failed += 1;
                    broken = true;
                    first.get_or_insert(e);
                }
            }
        }
        self.cmds = cmds;
        match first {
            None => {
                self.backoff.succeeded();
                Ok(())
            }
            Some(e) => {
                if broken {
                    self.failed(&e);
                }
                Err(self.error(format_args!(
                    "{failed} of {} commands not written: {e}",
                    self.cmds.len()
                )))
            }
        }
    }

    /// A refused command the sink works around instead of counting: Redis before 6.2
    /// has no `ZADD LT` (the events are stored; the index is only a shortcut, SCAN finds
    /// the trace, so it falls back to NX), and a refused summary (see `summary_refused`).
    fn tolerated(&mut self, cmd: Cmd, e: &str) -> bool {
        if cmd == Cmd::Index && self.index_flag == b"LT" && e.starts_with("ERR") {
            self.index_flag = b"NX";
            return true;
        }
        if cmd == Cmd::Summary {
            self.summary_refused(e);
            return true;
        }
        false
    }

    fn failed(&mut self, e: &ClientError) {
        self.backoff.failed(e.to_string());
    }

    fn error(&self, e: impl std::fmt::Display) -> SinkError {
        SinkError::msg(format!("{}: {e}", self.name))
    }

    /// Encodes the whole batch into `self.buf` (one command kind per entry of
    /// `self.cmds`), sending it on `conn` as it goes; returns the error that stopped the
    /// sending, if any.
    fn encode(&mut self, events: &[Event], mut conn: Option<&mut Conn>) -> Option<ClientError> {
        self.buf.clear();
        self.sent = 0;
        self.stream_error = None;
        self.cmds.clear();
        self.traces.clear();
        self.trace_of.clear();
        // A batch sent again after a reconnection keeps its number: its counts are then
        // the same members, not new ones.
        self.batch = self.batch.wrapping_add(1);
        self.group.clear();
        if let Some(c) = &mut self.cluster {
            c.commands.clear();
            c.start = 0;
        }

        // Group by trace, in order of first appearance (consecutive events mostly share
        // one: skip the hash lookup then).
        let mut last: Option<(u128, u32)> = None;
        for e in events {
            let base = e.base_id.0;
            let g = match last {
                Some((b, g)) if b == base => g,
                _ => {
                    let next = self.traces.len() as u32;
                    let g = *self.trace_of.entry(base).or_insert(next);
                    if g == next {
                        let mut id = [0u8; 36];
                        e.base_id.write_hyphenated(&mut id);
                        self.traces.push(Trace {
                            id,
                            count: 0,
                            offset: 0,
                            first: i64::MAX,
                            last: i64::MIN,
                            points: 0,
                            any_error: false,
                            root: None,
                            root_named: false,
                            error: None,
                            shard: cluster::shard_of(base) as u8,
                        });
                    }
                    last = Some((base, g));
                    g
                }
            };
            self.group.push(g);
            let i = (self.group.len() - 1) as u32;
            let t = &mut self.traces[g as usize];
            t.count += 1;
            let us = e.timestamp.0;
            t.first = t.first.min(us);
            t.last = t.last.max(us);
            if matches!(e.kind, EventKind::Start) {
                t.points += 1;
                let level = u8::from(e.parent_id != e.base_id);
                if t.root.is_none_or(|(l, s, _)| (level, us) < (l, s)) {
                    t.root = Some((level, us, i));
                }
            }
        }
        // Counting sort of the events by trace, keeping batch order within a trace.
        let mut offset = 0;
        for t in &mut self.traces {
            t.offset = offset;
            offset += t.count;
        }
        self.order.clear();
        self.order.resize(events.len(), 0);
        let mut fill: Vec<u32> = self.traces.iter().map(|t| t.offset).collect();
        for (i, &g) in self.group.iter().enumerate() {
            let slot = &mut fill[g as usize];
            self.order[*slot as usize] = i as u32;
            *slot += 1;
        }
        // Time order within a trace, as Python pushes each event when it happens: a batch
        // holds whole points (start and stop together) in start order.
        for t in &self.traces {
            let (from, to) = (t.offset as usize, (t.offset + t.count) as usize);
            if let Some(run) = self.order.get_mut(from..to) {
                run.sort_unstable_by_key(|&i| {
                    (events.get(i as usize).map_or(0, |e| e.timestamp.0), i)
                });
            }
        }

        for g in 0..self.traces.len() {
            let (id, count, offset, shard) = {
                let t = &self.traces[g];
                (t.id, t.count as usize, t.offset as usize, t.shard as usize)
            };
            let list_slot = || cluster::slot_of(OPT_PREFIX, &id);
            self.services.clear();
            self.categories.clear();
            // Several LPUSH of at most PUSH_CHUNK values (the list is the same as with
            // one): Redis runs each as soon as it has it, while we serialize the next.
            for chunk in (offset..offset + count).step_by(PUSH_CHUNK) {
                let end = (chunk + PUSH_CHUNK).min(offset + count);
                resp::array_header(&mut self.buf, 2 + end - chunk);
                resp::bulk(&mut self.buf, b"LPUSH");
                push_key(&mut self.buf, OPT_PREFIX, &id);
                for k in chunk..end {
                    let i = self.order[k];
                    // In range by construction (`order` is a permutation of the batch).
                    let e = &events[i as usize];
                    self.json.clear();
                    super::event_json::write_event(&mut self.json, e);
                    resp::bulk(&mut self.buf, &self.json);
                    if has_etype(&self.json, e) {
                        let t = &mut self.traces[g];
                        t.any_error = true;
                        if self.filter_error_trace {
                            t.error = Some(i);
                        }
                    }
                    if self.summaries {
                        let t = &mut self.traces[g];
                        if t.root.is_some_and(|r| r.2 == i) {
                            t.root_named =
                                ["\"request\"", "\"function\"", "\"db\"", "\"requests\""]
                                    .iter()
                                    .any(|k| contains(&self.json, k.as_bytes()));
                        }
                        // A handful of each per trace: a linear look beats hashing.
                        if let Some(s) = &e.service
                            && !self
                                .services
                                .iter()
                                .any(|&j| events[j as usize].service.as_deref() == Some(&**s))
                        {
                            self.services.push(i);
                        }
                        if !self
                            .categories
                            .iter()
                            .any(|&j| events[j as usize].name == e.name)
                        {
                            self.categories.push(i);
                        }
                    }
                }
                self.cmds.push(Cmd::Push);
                mark(&mut self.cluster, self.buf.len(), list_slot);
                self.stream(&mut conn);
            }

            if self.summaries {
                self.encode_summary(g, events);
            }

            // After the push: an index entry always has its list (the read side relies
            // on it to tell expired entries).
            // The cluster's shard of each index, else the one index.
            let (index, error_index) = match &self.shard_names {
                Some((i, e)) => (&i[shard][..], &e[shard][..]),
                None => (INDEX, ERROR_INDEX),
            };
            let t = &self.traces[g];
            resp::array_header(&mut self.buf, 5);
            resp::bulk(&mut self.buf, b"ZADD");
            resp::bulk(&mut self.buf, index);
            resp::bulk(&mut self.buf, self.index_flag);
            push_score_bulk(&mut self.buf, t.first);
            resp::bulk(&mut self.buf, &id);
            self.cmds.push(Cmd::Index);
            let error = t.error;
            let first = t.first;
            let index_slot = cluster::slot(index);
            mark(&mut self.cluster, self.buf.len(), || index_slot);
            if let Some(ttl) = self.ttl_ms {
                resp::array_header(&mut self.buf, 3);
                resp::bulk(&mut self.buf, b"PEXPIRE");
                push_key(&mut self.buf, OPT_PREFIX, &id);
                push_ttl_bulk(&mut self.buf, ttl);
                self.cmds.push(Cmd::Other);
                mark(&mut self.cluster, self.buf.len(), list_slot);
            }
            let Some(e) = error.and_then(|i| events.get(i as usize)) else {
                continue;
            };
            // Python's value: {"base_id": …, "timestamp": …} with json.dumps separators.
            let mut value = serde_json::Map::new();
            value.insert("base_id".into(), Value::String(e.base_id.to_string()));
            value.insert("timestamp".into(), Value::String(e.timestamp.to_string()));
            let value = osprofiler::json::to_python_json(&value).unwrap_or_default();
            resp::array_header(&mut self.buf, if self.ttl_ms.is_some() { 5 } else { 3 });
            resp::bulk(&mut self.buf, b"SET");
            push_key(&mut self.buf, ERROR_PREFIX, &id);
            resp::bulk(&mut self.buf, value.as_bytes());
            if let Some(ttl) = self.ttl_ms {
                resp::bulk(&mut self.buf, b"PX");
                push_ttl_bulk(&mut self.buf, ttl);
            }
            self.cmds.push(Cmd::Other);
            mark(&mut self.cluster, self.buf.len(), || {
                cluster::slot_of(ERROR_PREFIX, &id)
            });
            resp::array_header(&mut self.buf, 5);
            resp::bulk(&mut self.buf, b"ZADD");
            resp::bulk(&mut self.buf, error_index);
            resp::bulk(&mut self.buf, self.index_flag);
            push_score_bulk(&mut self.buf, first);
            resp::bulk(&mut self.buf, &id);
            self.cmds.push(Cmd::Index);
            let error_slot = cluster::slot(error_index);
            mark(&mut self.cluster, self.buf.len(), || error_slot);
        }
        match conn {
            Some(c) => c.send(&self.buf[self.sent..]).err(),
            None => self.stream_error.take(),
        }
    }

    /// The summary command of trace `g` (its services and categories in
    /// `self.services` and `self.categories`), in the layout `summaries.rs` describes:
    /// one `ZADD GT`, whose result does not depend on the order writers run theirs in.
    fn encode_summary(&mut self, g: usize, events: &[Event]) {
        let t = &self.traces[g];
        let (id, first, last, points, count, error, root, named) = (
            t.id,
            t.first,
            t.last,
            t.points,
            t.count,
            t.any_error,
            t.root,
            t.root_named,
        );
        let root = root.and_then(|(level, us, i)| Some((level, us, events.get(i as usize)?)));
        let slot = cluster::slot_of(SUMMARY_PREFIX, &id);
        // ZADD key GT: (score, member) pairs.
        let pairs = 3
            + 2 * usize::from(root.is_some())
            + usize::from(error)
            + self.services.len()
            + self.categories.len();
        resp::array_header(&mut self.buf, 3 + 2 * pairs);
        resp::bulk(&mut self.buf, b"ZADD");
        push_key(&mut self.buf, SUMMARY_PREFIX, &id);
        resp::bulk(&mut self.buf, b"GT");
        push_int_bulk(&mut self.buf, first.saturating_neg());
        resp::bulk(&mut self.buf, summaries::FIRST);
        push_int_bulk(&mut self.buf, last);
        resp::bulk(&mut self.buf, summaries::LAST);
        push_int_bulk(&mut self.buf, i64::from(count));
        self.json.clear();
        summaries::count_member(&mut self.json, self.writer, self.batch, points);
        resp::bulk(&mut self.buf, &self.json);
        if let Some((level, us, e)) = root {
            let rank = summaries::root_rank(level, us);
            push_int_bulk(&mut self.buf, rank.saturating_neg());
            resp::bulk(&mut self.buf, summaries::ROOT);
            let service = e.service.as_deref().map(flat).unwrap_or_default();
            let name = if named {
                root_name(|k| e.info.get(k))
            } else {
                String::new()
            };
            self.json.clear();
            summaries::root_member(&mut self.json, rank, &service, &flat(&e.name), &flat(&name));
            resp::bulk(&mut self.buf, b"0");
            resp::bulk(&mut self.buf, &self.json);
        }
        if error {
            resp::bulk(&mut self.buf, b"0");
            resp::bulk(&mut self.buf, summaries::ERROR);
        }
        for &i in &self.services {
            let s = events[i as usize].service.as_deref().unwrap_or_default();
            push_member(&mut self.buf, b"s:", &flat(s));
        }
        for &i in &self.categories {
            push_member(&mut self.buf, b"c:", &flat(&events[i as usize].name));
        }
        self.cmds.push(Cmd::Summary);
        mark(&mut self.cluster, self.buf.len(), || slot);
        if let Some(ttl) = self.ttl_ms {
            resp::array_header(&mut self.buf, 3);
            resp::bulk(&mut self.buf, b"PEXPIRE");
            push_key(&mut self.buf, SUMMARY_PREFIX, &id);
            push_ttl_bulk(&mut self.buf, ttl);
            self.cmds.push(Cmd::Summary);
            mark(&mut self.cluster, self.buf.len(), || slot);
        }
    }

    /// A summary command the server refused. A server without `ZADD GT` (before 6.2:
    /// a syntax error), without the commands, or a user not allowed them, stops the
    /// summaries of this sink; any other refusal (a key of another type) loses this
    /// batch's summary of the trace only. Either way the batch's events are stored.
    fn summary_refused(&mut self, e: &str) {
        if e.starts_with("NOPERM") || e.starts_with("ERR") {
            if self.summaries {
                log::warn!(
                    "{}: no trace summaries (searching reads the events instead): {e}",
                    self.name
                );
            }
            self.summaries = false;
        } else {
            log::debug!("{}: trace summary not written: {e}", self.name);
        }
    }

    /// Hands what is encoded so far to the socket once there is enough of it. On an
    /// error, streaming stops (`conn` becomes `None`) but encoding goes on, so that the
    /// whole batch can be sent again on a new connection.
    fn stream(&mut self, conn: &mut Option<&mut Conn>) {
        if self.buf.len() - self.sent < STREAM_CHUNK {
            return;
        }
        if let Some(c) = conn {
            match c.send(&self.buf[self.sent..]) {
                Ok(()) => self.sent = self.buf.len(),
                Err(e) => {
                    self.stream_error = Some(e);
                    *conn = None;
                }
            }
        }
    }

    /// Reads the reply of every command of the batch. `Ok`: the commands the server
    /// refused (the connection is still in step); `Err`: the connection failed, after
    /// that many replies.
    #[allow(clippy::type_complexity)]
    fn replies(
        conn: &mut Conn,
        cmds: &[Cmd],
    ) -> Result<Vec<(usize, Cmd, String)>, (ClientError, usize)> {
        let mut refused = Vec::new();
        for (n, &cmd) in cmds.iter().enumerate() {
            match conn.read_reply() {
                Ok(Reply::Error(e)) => refused.push((n, cmd, e)),
                Ok(_) => {}
                Err(e) => return Err((e, n)),
            }
        }
        Ok(refused)
    }
}

/// Whether the event has `info.etype` (not null), as Python's check. The JSON text is
/// searched first so that events without it (nearly all) cost no map building.
fn has_etype(json: &[u8], e: &Event) -> bool {
    contains(json, b"\"etype\"") && !matches!(e.info.get("etype"), None | Some(Value::Null))
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// The command just encoded (since the last call) goes to `slot` (cluster only).
fn mark(side: &mut Option<ClusterSide>, end: usize, slot: impl FnOnce() -> u16) {
    if let Some(c) = side {
        c.commands.push(cluster::Command {
            range: c.start..end,
            slot: slot(),
        });
        c.start = end;
    }
}

fn push_key(out: &mut Vec<u8>, prefix: &[u8], id: &[u8; 36]) {
    resp::bulk_header(out, prefix.len() + id.len());
    out.extend_from_slice(prefix);
    out.extend_from_slice(id);
    out.extend_from_slice(b"\r\n");
}

fn push_score_bulk(out: &mut Vec<u8>, micros: i64) {
    let mut s = Vec::with_capacity(24);
    push_score(&mut s, micros);
    resp::bulk(out, &s);
}

/// A set's element in the summary: score 0, member `prefix` + `name`.
fn push_member(out: &mut Vec<u8>, prefix: &[u8], name: &str) {
    resp::bulk(out, b"0");
    resp::bulk_header(out, prefix.len() + name.len());
    out.extend_from_slice(prefix);
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// `n` in decimal as one bulk string, its digits on the stack (this runs per trace).
fn push_int_bulk(out: &mut Vec<u8>, n: i64) {
    let mut buf = [0u8; 20];
    let digits = decimal(n.unsigned_abs(), &mut buf);
    resp::bulk_header(out, usize::from(n < 0) + digits.len());
    if n < 0 {
        out.push(b'-');
    }
    out.extend_from_slice(digits);
    out.extend_from_slice(b"\r\n");
}

fn push_ttl_bulk(out: &mut Vec<u8>, ms: u64) {
    let mut buf = [0u8; 20];
    resp::bulk(out, decimal(ms, &mut buf));
}

impl Sink for RedisSink {
    fn write(&mut self, events: &[Event]) -> Result<(), SinkError> {
        if events.is_empty() {
            return Ok(());
        }
        if self.cluster.is_some() {
            return self.write_cluster(events);
        }
        let mut fresh = false;
        if self.conn.is_none() {
            if let Some(waiting) = self.backoff.waiting() {
                return Err(self.error(waiting));
            }
            match self.settings.connect() {
                Ok(c) => {
                    self.conn = Some(c);
                    fresh = true;
                }
                Err(e) => {
                    self.failed(&e);
                    return Err(self.error(&e));
                }
            }
        }
        let Some(mut conn) = self.conn.take() else {
            return Err(self.error("not connected"));
        };
        let mut result = match self.encode(events, Some(&mut conn)) {
            None => Self::replies(&mut conn, &self.cmds),
            Some(e) => Err((e, 0)),
        };
        self.conn = Some(conn);
        if let Err((ClientError::Io { closed: true, .. }, 0)) = &result
            && !fresh
        {
            // A connection that sat idle may have been closed by the server (its
            // `timeout`, a restart): nothing of the batch was answered, so it is sent
            // once more on a new connection rather than lost.
            self.conn = None;
            result = match self.settings.connect() {
                Ok(mut c) => {
                    let r = match c.send(&self.buf) {
                        Ok(()) => Self::replies(&mut c, &self.cmds),
                        Err(e) => Err((e, 0)),
                    };
                    self.conn = Some(c);
                    r
                }
                Err(e) => Err((e, 0)),
            };
        }
        match result {
            Ok(refused) => {
                self.backoff.succeeded();
                let mut first = None;
                for (_, cmd, e) in refused {
                    if self.tolerated(cmd, &e) {
                        continue;
                    }
                    first.get_or_insert(e);
                }
                match first {
                    None => Ok(()),
                    Some(e) => {
                        let e = ClientError::Server(e);
                        if e.breaks_connection() {
                            self.conn = None;
                        }
                        Err(self.error(&e))
                    }
                }
            }
            Err((e, _)) => {
                self.conn = None;
                self.failed(&e);
                Err(self.error(&e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_are_bulk_strings() {
        let mut out = Vec::new();
        push_int_bulk(&mut out, -42);
        push_int_bulk(&mut out, 0);
        push_int_bulk(&mut out, i64::MIN);
        push_ttl_bulk(&mut out, 86_400_000);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "$3\r\n-42\r\n$1\r\n0\r\n$20\r\n-9223372036854775808\r\n$8\r\n86400000\r\n"
        );
    }
}
