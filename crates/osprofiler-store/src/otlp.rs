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
//! A collector that is down, refusing or hanging costs little and heals by itself:
//! every export has a deadline (`timeout`, else the socket timeout), and after a
//! failure batches are failed at once (counted by the notifier) for a while, 50 ms
//! doubling up to 5 s, before the collector is tried again. Batches are not kept
//! for a retry: memory stays bounded, and the traced code never waits anyway.

mod encode;
#[cfg(feature = "otlp-grpc")]
mod grpc;
mod http;

use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use osprofiler::Event;
use osprofiler::notifier::{Sink, SinkError};
use prost::Message;

use crate::spans::{Assembler, DEFAULT_MAX_OPEN, Span};
use crate::{ConnectionString, OpenError, Options, OtlpProtocol, OtlpTarget};

/// Largest request sent: a batch that encodes to more is split. Below the 4 MiB
/// collectors accept by default (gRPC's default message limit).
pub(crate) const MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024 - 64 * 1024;

const BACKOFF_FIRST: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

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
    let transport = match t.protocol {
        OtlpProtocol::HttpProtobuf => {
            Transport::Http(http::HttpExporter::new(t, timeout).map_err(unavailable)?)
        }
        #[cfg(feature = "otlp-grpc")]
        OtlpProtocol::Grpc => {
            Transport::Grpc(grpc::GrpcExporter::new(t, timeout).map_err(unavailable)?)
        }
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
    Ok(Box::new(OtlpSink {
        name,
        assembler: Assembler::new(DEFAULT_MAX_OPEN),
        spans: Vec::new(),
        encoder: encode::Encoder::new(prefix),
        buf: Vec::new(),
        transport,
        failures: 0,
        retry_at: None,
        last_error: String::new(),
    }))
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
    // Reused from batch to batch.
    spans: Vec<Span>,
    encoder: encode::Encoder,
    buf: Vec<u8>,
    transport: Transport,
    /// Consecutive failures, for the backoff.
    failures: u32,
    retry_at: Option<Instant>,
    last_error: String,
}

impl OtlpSink {
    fn failed(&mut self, message: &str) {
        self.failures = self.failures.saturating_add(1);
        let delay = BACKOFF_FIRST
            .saturating_mul(1 << (self.failures - 1).min(10))
            .min(BACKOFF_MAX);
        self.retry_at = Some(Instant::now() + delay);
        self.last_error = message.to_owned();
    }

    fn error(&self, e: impl std::fmt::Display) -> SinkError {
        SinkError::msg(format!("{}: {e}", self.name))
    }
}

impl Sink for OtlpSink {
    fn write(&mut self, events: &[Event]) -> Result<(), SinkError> {
        if events.is_empty() {
            return Ok(());
        }
        if let Some(at) = self.retry_at {
            let now = Instant::now();
            if now < at {
                // Not even paired: a stop whose start is skipped here is dropped
                // later as unmatched, which is all the pairing could do for it.
                return Err(self.error(format_args!(
                    "{} (next attempt in {} ms)",
                    self.last_error,
                    (at - now).as_millis()
                )));
            }
        }
        self.spans.clear();
        for e in events {
            self.assembler.push(e, &mut self.spans);
        }
        if self.spans.is_empty() {
            return Ok(());
        }
        let total = self.spans.len();
        let mut rejected = (0u64, String::new());
        let transport = &mut self.transport;
        let sent = self
            .encoder
            .encode(&self.spans, MAX_REQUEST_BYTES, &mut self.buf, |body, _| {
                let answer = transport.export(body)?;
                if answer.rejected > 0 {
                    rejected.0 += answer.rejected;
                    rejected.1 = answer.message;
                }
                Ok::<(), ExportError>(())
            });
        // The spans' strings are freed now, not at the next batch.
        self.spans.clear();
        match sent {
            Ok(()) => {
                self.failures = 0;
                self.retry_at = None;
                if rejected.0 > 0 {
                    return Err(self.error(format_args!(
                        "the collector rejected {} of {total} spans: {}",
                        rejected.0, rejected.1
                    )));
                }
                Ok(())
            }
            Err(e) => {
                if e.backoff {
                    self.failed(&e.message);
                }
                Err(self.error(&e.message))
            }
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
}
