//! `otlp://`, `otlps://`, `otlp+grpc://`: spans to an OpenTelemetry collector (write only).
//!
//! Each batch of events from the exporter thread is paired into spans
//! ([`Assembler`]: by point id, across batches) and sent as one
//! `ExportTraceServiceRequest` (split above [`MAX_REQUEST_BYTES`]): OTLP/HTTP
//! `POST /v1/traces` with a protobuf body on a kept-alive connection, or OTLP/gRPC
//! `TraceService/Export` through tonic.
//!
//! What is sent is what osprofiler 4.4.0's OTLP driver sends, its bugs fixed:
//!
//! - one `ResourceSpans` per origin, `service.name` = `[<prefix>-]<project>-<service>`
//!   (the connection string's `service_name_prefix`, else `[profiler_otlp]`'s),
//!   `host.name` = the host, scope `osprofiler` with this crate's version;
//! - trace id = the 128-bit base id, span id = the low 64 bits of the point id, a
//!   parent only below the first level; name, kind and attributes from
//!   [`crate::spans`] (the point's own name, where Python strips characters);
//!   flags = sampled;
//! - a failed point: status ERROR with the message, attributes `exception.type` and
//!   `exception.message`, and an `exception` event at its end.
//!
//! Requests go out from threads of the sink's own (OTLP/HTTP: two connections, a
//! request in flight on each; gRPC: one), and one waits: the next batch is paired and encoded while the collector reads the last, so the
//! exporter's rate is the slower of the two, not their sum. A request that fails
//! after its `write` returned is reported to the pipeline's counters then
//! ([`osprofiler::notifier::report_late_failure`]); [`Sink::flush`] waits for every
//! request in flight.
//!
//! A collector that is down, refusing or hanging costs little and heals by itself:
//! every export has a deadline (`timeout`, else the socket timeout), and after a
//! failure batches are failed at once (counted by the notifier) for a while, 50 ms
//! doubling up to 5 s, before the collector is tried again. Batches are not kept
//! for a retry: memory stays bounded, and the traced code never waits anyway.

mod encode;
#[cfg(feature = "otlp-grpc")]
mod grpc;
mod http;

use crate::backoff::Backoff;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
// (`channel` for outcomes: see `Sender::start`.)
use std::thread::JoinHandle;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use osprofiler::Event;
use osprofiler::notifier::{Sink, SinkError};
use prost::Message;

use crate::spans::{Assembler, DEFAULT_MAX_OPEN};
use crate::{ConnectionString, OpenError, Options, OtlpProtocol, OtlpTarget};

/// Largest request sent: a batch that encodes to more is split. Below the 4 MiB
/// collectors accept by default (gRPC's default message limit).
pub(crate) const MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024 - 64 * 1024;

/// OTLP/HTTP connections, each with a thread and a request in flight.
const HTTP_CONNECTIONS: usize = 2;

pub(crate) fn open_sink(t: &OtlpTarget, opts: &Options) -> Result<Box<dyn Sink>, OpenError> {
    let name = ConnectionString::Otlp(t.clone()).to_string();
    // A zero timeout would mean "none" to some clients: at least a millisecond.
    let timeout = t
        .timeout
        .unwrap_or(opts.socket_timeout)
        .max(Duration::from_millis(1));
    let unavailable = |reason: String| OpenError::Unavailable {
        store: name.clone(),
        reason,
    };
    // OTLP/HTTP: two connections, a request in flight on each (a collector decodes
    // connections in parallel); gRPC: one channel.
    let transports = match t.protocol {
        OtlpProtocol::HttpProtobuf => {
            let mut v = Vec::new();
            for _ in 0..HTTP_CONNECTIONS {
                v.push(Transport::Http(
                    http::HttpExporter::new(t, timeout).map_err(unavailable)?,
                ));
            }
            v
        }
        #[cfg(feature = "otlp-grpc")]
        OtlpProtocol::Grpc => vec![Transport::Grpc(
            grpc::GrpcExporter::new(t, timeout).map_err(unavailable)?,
        )],
        #[cfg(not(feature = "otlp-grpc"))]
        OtlpProtocol::Grpc => {
            return Err(OpenError::FeatureMissing {
                store: name,
                feature: "otlp-grpc",
            });
        }
    };
    let prefix = t
        .service_name_prefix
        .clone()
        .or_else(|| opts.otlp_service_name_prefix.clone())
        .filter(|p| !p.is_empty());
    let sender = Sender::start(transports, timeout).map_err(|e| OpenError::Unavailable {
        store: name.clone(),
        reason: format!("cannot start the sending thread: {e}"),
    })?;
    Ok(Box::new(OtlpSink {
        name,
        assembler: Assembler::new(DEFAULT_MAX_OPEN),
        encoder: encode::Encoder::new(prefix),
        spare_bodies: Vec::new(),
        sender,
        backoff: Backoff::default(),
    }))
}

/// A request for the sending thread: the encoded body and the events it carries.
struct Job {
    body: Vec<u8>,
    events: u64,
}

/// What became of a [`Job`]; its buffer comes back for the next request.
struct Outcome {
    result: Result<Exported, ExportError>,
    events: u64,
    body: Vec<u8>,
}

/// The thread that talks to the collector, one request at a time.
struct Sender {
    jobs: Option<SyncSender<Job>>,
    outcomes: Receiver<Outcome>,
    in_flight: usize,
    // The longest one request may take: the deadline of a flush.
    timeout: Duration,
    threads: Vec<JoinHandle<()>>,
}

impl Sender {
    fn start(transports: Vec<Transport>, timeout: Duration) -> std::io::Result<Sender> {
        // One request waits while one is in flight on each connection: a collector
        // slower than the encoder holds the exporter thread back (which then drops
        // and counts), and memory stays at a few requests.
        let (jobs, rx) = sync_channel::<Job>(1);
        let rx = Arc::new(Mutex::new(rx));
        // Unbounded: never blocks a sending thread while the exporter waits to queue
        // a job; there are never more outcomes than jobs handed over.
        let (tx, outcomes) = std::sync::mpsc::channel::<Outcome>();
        let mut threads = Vec::new();
        for mut transport in transports {
            let (rx, tx) = (rx.clone(), tx.clone());
            threads.push(
                std::thread::Builder::new()
                    .name("osprofiler-otlp".into())
                    .spawn(move || {
                        loop {
                            // The lock is held only while waiting for a job: the
                            // other thread takes the next one while this one sends.
                            let job = match rx.lock() {
                                Ok(rx) => rx.recv(),
                                Err(_) => break,
                            };
                            let Ok(mut job) = job else { break };
                            let result = transport.export(&mut job.body);
                            let outcome = Outcome {
                                result,
                                events: job.events,
                                body: job.body,
                            };
                            if tx.send(outcome).is_err() {
                                break;
                            }
                        }
                    })?,
            );
        }
        Ok(Sender {
            jobs: Some(jobs),
            outcomes,
            in_flight: 0,
            timeout,
            threads,
        })
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        self.jobs = None;
        // A request still in flight ends within its timeout; it is not waited for here
        // (the notifier flushes before it drops a sink).
        for t in self.threads.drain(..) {
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}

enum Transport {
    Http(http::HttpExporter),
    #[cfg(feature = "otlp-grpc")]
    Grpc(grpc::GrpcExporter),
}

impl Transport {
    // gRPC takes the buffer (tonic owns it while the call runs); without gRPC only
    // HTTP's borrow is left.
    #[cfg_attr(not(feature = "otlp-grpc"), allow(clippy::ptr_arg))]
    fn export(&mut self, body: &mut Vec<u8>) -> Result<Exported, ExportError> {
        match self {
            Transport::Http(h) => h.export(body),
            #[cfg(feature = "otlp-grpc")]
            Transport::Grpc(g) => g.export(body),
        }
    }
}

/// A collector's answer to an accepted request: spans it still refused, if any.
#[derive(Debug, Default)]
pub(crate) struct Exported {
    rejected: u64,
    message: String,
}

impl Exported {
    /// An `ExportTraceServiceResponse`; an unreadable one counts as a plain success
    /// (the collector took the request).
    fn decode(bytes: &[u8]) -> Exported {
        ExportTraceServiceResponse::decode(bytes)
            .map(Exported::from)
            .unwrap_or_default()
    }
}

impl From<ExportTraceServiceResponse> for Exported {
    fn from(r: ExportTraceServiceResponse) -> Exported {
        r.partial_success
            .map(|p| Exported {
                rejected: u64::try_from(p.rejected_spans).unwrap_or(0),
                message: p.error_message,
            })
            .unwrap_or_default()
    }
}

/// Why an export failed, and whether the collector deserves a rest.
#[derive(Debug)]
pub(crate) struct ExportError {
    message: String,
    backoff: bool,
}

/// `google.rpc.Status.message` (field 2) of an OTLP/HTTP error body.
fn status_message(mut b: &[u8]) -> Option<String> {
    use prost::encoding::decode_varint;
    while !b.is_empty() {
        let key = decode_varint(&mut b).ok()?;
        let (field, wire) = (key >> 3, key & 7);
        match wire {
            0 => {
                decode_varint(&mut b).ok()?;
            }
            1 => b = b.get(8..)?,
            5 => b = b.get(4..)?,
            2 => {
                let n = usize::try_from(decode_varint(&mut b).ok()?).ok()?;
                let (value, rest) = (b.get(..n)?, b.get(n..)?);
                if field == 2 {
                    return Some(String::from_utf8_lossy(value).into_owned());
                }
                b = rest;
            }
            _ => return None,
        }
    }
    None
}

struct OtlpSink {
    /// The collector, for messages.
    name: String,
    assembler: Assembler,
    encoder: encode::Encoder,
    /// Request buffers back from the sending thread, written into again: a fresh one
    /// of a megabyte or more costs its page faults each time.
    spare_bodies: Vec<Vec<u8>>,
    sender: Sender,
    backoff: Backoff,
}

impl OtlpSink {
    fn failed(&mut self, message: &str) {
        self.backoff.failed(message);
    }

    fn keep_body(&mut self, body: Vec<u8>) {
        // At most as many as can be out at once: one sent on each connection, one
        // waiting, one written.
        if body.capacity() > 0 && self.spare_bodies.len() < HTTP_CONNECTIONS + 2 {
            self.spare_bodies.push(body);
        }
    }

    fn error(&self, e: impl std::fmt::Display) -> SinkError {
        SinkError::msg(format!("{}: {e}", self.name))
    }

    /// Takes in what the sending thread finished: successes end the backoff; failures
    /// start it and are reported to the pipeline's counters, as are rejected spans.
    /// With `wait`, until nothing is in flight (at most about the timeout each).
    /// Returns the last failure's message.
    fn collect(&mut self, wait: bool) -> Option<String> {
        let mut last = None;
        while self.sender.in_flight > 0 {
            let outcome = if wait {
                match self.sender.outcomes.recv_timeout(self.sender.timeout * 2) {
                    Ok(o) => o,
                    Err(RecvTimeoutError::Timeout) => {
                        last = Some("the collector did not answer in time".to_owned());
                        break;
                    }
                    Err(RecvTimeoutError::Disconnected) => {
                        self.sender.in_flight = 0;
                        break;
                    }
                }
            } else {
                match self.sender.outcomes.try_recv() {
                    Ok(o) => o,
                    Err(_) => break,
                }
            };
            self.sender.in_flight -= 1;
            self.keep_body(outcome.body);
            match outcome.result {
                Ok(answer) => {
                    self.backoff.succeeded();
                    if answer.rejected > 0 {
                        let message = format!(
                            "the collector rejected {} spans: {}",
                            answer.rejected, answer.message
                        );
                        osprofiler::notifier::report_late_failure(
                            2 * answer.rejected,
                            &self.error(&message),
                        );
                        last = Some(message);
                    }
                }
                Err(e) => {
                    if e.backoff {
                        self.failed(&e.message);
                    }
                    osprofiler::notifier::report_late_failure(
                        outcome.events,
                        &self.error(&e.message),
                    );
                    last = Some(e.message);
                }
            }
        }
        last
    }
}

impl Sink for OtlpSink {
    fn write(&mut self, events: &[Event]) -> Result<(), SinkError> {
        if events.is_empty() {
            return Ok(());
        }
        self.collect(false);
        if let Some(waiting) = self.backoff.waiting() {
            // Not even paired: a stop whose start is skipped here is dropped
            // later as unmatched, which is all the pairing could do for it.
            return Err(self.error(waiting));
        }
        // Borrowing from `events`: one vector per batch, not one string per attribute.
        let mut spans = Vec::with_capacity(events.len() / 2 + 1);
        self.assembler.push_batch(events, &mut spans);
        if spans.is_empty() {
            return Ok(());
        }
        let Some(jobs) = self.sender.jobs.clone() else {
            return Err(self.error("the sending thread is gone"));
        };
        let mut handed = 0usize;
        let mut buf = self.spare_bodies.pop().unwrap_or_default();
        let spare_bodies = &mut self.spare_bodies;
        let sent = self
            .encoder
            .encode(&spans, MAX_REQUEST_BYTES, &mut buf, |body, n| {
                // Waits while a request is in flight and another queued: the
                // collector sets the pace.
                let next = spare_bodies.pop().unwrap_or_default();
                jobs.send(Job {
                    body: std::mem::replace(body, next),
                    events: 2 * n as u64,
                })
                .map_err(|_| "the sending thread is gone")?;
                handed += 1;
                Ok::<(), &str>(())
            });
        self.sender.in_flight += handed;
        self.keep_body(buf);
        for s in spans {
            self.assembler.recycle(s);
        }
        sent.map_err(|e| self.error(e))
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        match self.collect(true) {
            None => Ok(()),
            Some(message) => Err(self.error(message)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_rpc_status_messages() {
        // code = 3, message = "bad span", one detail.
        let mut b = vec![0x08, 0x03, 0x12, 0x08];
        b.extend_from_slice(b"bad span");
        b.extend_from_slice(&[0x1a, 0x00]);
        assert_eq!(status_message(&b).as_deref(), Some("bad span"));
        assert_eq!(status_message(&[0x08, 0x03]), None);
        assert_eq!(status_message(&[0x12, 0x09, b'x']), None);
    }

    #[test]
    fn partial_success() {
        let r = ExportTraceServiceResponse {
            partial_success: Some(
                opentelemetry_proto::tonic::collector::trace::v1::ExportTracePartialSuccess {
                    rejected_spans: 2,
                    error_message: "too old".into(),
                },
            ),
        };
        let e = Exported::decode(&r.encode_to_vec());
        assert_eq!((e.rejected, e.message.as_str()), (2, "too old"));
        assert_eq!(Exported::decode(&[]).rejected, 0);
    }

    /// The benchmark's batch shape (benches/exporters.rs): 2,048 spans of a request
    /// with `wsgi`, four `db`, an `rpc` function and a failed driver call.
    fn recorded_batch() -> Vec<Event> {
        use osprofiler::{HmacKey, Identity, Info, TraceContext};
        use serde_json::json;
        let sink = osprofiler::notifier::MemorySink::new();
        let guard = osprofiler::notifier::set_sink(sink.clone());
        let id = Identity::new("nova", "api", "api-1");
        let mut recorded = 0;
        while recorded < 2048 {
            let ctx = TraceContext::new(HmacKey::new("SECRET_KEY"), None, None).with_identity(&id);
            ctx.in_scope(|| {
                let _wsgi = osprofiler::point_with(
                    "wsgi",
                    Info::from(json!({"request": {"path": "/v2.1/servers", "query": "limit=10",
                        "method": "GET", "scheme": "http", "port": 8774}})),
                );
                for i in 0..4 {
                    let _db = osprofiler::point_with(
                        "db",
                        Info::from(json!({"db": {
                            "statement": "SELECT instances.id, instances.uuid FROM instances WHERE instances.project_id = ? LIMIT ?",
                            "params": ["6f1c2b1e", i]}})),
                    );
                }
                let _f = osprofiler::point_with(
                    "rpc",
                    Info::from(json!({"function": {"name": "nova.compute.api.API.get_all",
                        "args": "(<Context>, 'demo-vm')", "kwargs": "{}"}})),
                );
                let mut d = osprofiler::Point::start("driver", Info::new().with("vm", "vm-1"));
                d.set_error("NoValidHost", "No valid host was found.");
            });
            recorded += 7;
        }
        osprofiler::notifier::flush().expect("flush");
        drop(guard);
        let mut events = sink.take();
        events.truncate(4096);
        events
    }

    /// One batch's pairing, mapping and encoding, as `OtlpSink::write` does them,
    /// without the sending: what callgrind counts (`--toggle-collect='*one_batch*'`).
    #[inline(never)]
    fn one_batch(
        assembler: &mut Assembler,
        encoder: &mut encode::Encoder,
        events: &[Event],
        buf: &mut Vec<u8>,
    ) -> usize {
        let mut spans = Vec::with_capacity(events.len() / 2 + 1);
        assembler.push_batch(events, &mut spans);
        let mut bytes = 0;
        encoder
            .encode(&spans, MAX_REQUEST_BYTES, buf, |b, _| {
                bytes += b.len();
                Ok::<(), ()>(())
            })
            .expect("encoded");
        for s in spans {
            assembler.recycle(s);
        }
        bytes
    }

    /// The exporter's own CPU per batch, for callgrind (ignored: a measurement, not a
    /// check): `OTLP_BATCHES` batches (8 unless set) of the benchmark's shape.
    /// `valgrind --tool=callgrind --toggle-collect='*one_batch*' <test binary>
    /// --ignored --exact otlp::tests::callgrind_batches`; two runs with different
    /// counts give the cost of a warm batch (their difference over the extra batches).
    #[test]
    #[ignore]
    fn callgrind_batches() {
        let n: usize = std::env::var("OTLP_BATCHES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(8);
        let events = recorded_batch();
        assert_eq!(events.len(), 4096);
        let mut assembler = Assembler::new(DEFAULT_MAX_OPEN);
        let mut encoder = encode::Encoder::new(None);
        let mut buf = Vec::new();
        for _ in 0..n {
            // Fresh events each batch, as the pipeline hands them over.
            let batch = events.clone();
            let bytes = one_batch(&mut assembler, &mut encoder, &batch, &mut buf);
            assert!(bytes > 2048 * 100, "{bytes}");
        }
    }
}
