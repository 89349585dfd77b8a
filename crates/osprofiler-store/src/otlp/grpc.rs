//! OTLP/gRPC: `TraceService/Export` through tonic, on a current-thread tokio runtime
//! owned by the sink and driven only while an export is under way (the service
//! needs no runtime of its own).
//!
//! The request is sent as the bytes the encoder wrote (a codec of raw bytes), so
//! gRPC and HTTP share one encoder; the answer is decoded as
//! `ExportTraceServiceResponse`.

use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;
use prost::bytes::BufMut;
use tonic::client::Grpc;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Status};
// tonic's paths are the `http` crate's, which ureq re-exports (the same crate).
use ureq::http::uri::PathAndQuery;

use super::{ExportError, Exported};
use crate::OtlpTarget;

const EXPORT: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

pub(crate) struct GrpcExporter {
    client: Grpc<Channel>,
    // Declared after the client: dropped after it, as its connection task lives here.
    runtime: OwnRuntime,
    timeout: Duration,
}

/// The sink's runtime. Shut down without waiting: the sink may be dropped by a thread
/// that runs a runtime of its own (a sink that could not be handed to the exporter),
/// where a plain drop panics, and nothing of ours is left to wait for.
struct OwnRuntime(Option<tokio::runtime::Runtime>);

impl Drop for OwnRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

impl GrpcExporter {
    pub(crate) fn new(t: &OtlpTarget, timeout: Duration) -> Result<GrpcExporter, String> {
        let mut endpoint = Endpoint::from_shared(t.url())
            .map_err(|e| format!("invalid collector address: {e}"))?
            .connect_timeout(timeout)
            .timeout(timeout)
            .tcp_nodelay(true)
            .user_agent(format!("osprofiler-rs/{}", env!("CARGO_PKG_VERSION")))
            .map_err(|e| e.to_string())?;
        if t.tls {
            let roots = crate::tls::root_store(t.ca_certs.as_deref(), "ca_certs")?;
            endpoint = endpoint
                .tls_config(
                    ClientTlsConfig::new()
                        .trust_anchors(roots.roots)
                        .domain_name(t.host.clone()),
                )
                .map_err(|e| format!("TLS setup: {e}"))?;
        }
        // Last: nothing can fail once the runtime exists.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(|e| format!("cannot start the gRPC runtime: {e}"))?;
        // Lazy: a collector that is down when the service starts is no error; the
        // channel's tasks are spawned on our runtime.
        let channel = {
            let _in_runtime = runtime.enter();
            endpoint.connect_lazy()
        };
        Ok(GrpcExporter {
            client: Grpc::new(channel),
            runtime: OwnRuntime(Some(runtime)),
            timeout,
        })
    }

    /// Sends the request in `body` (taken: tonic owns it while the call runs).
    pub(crate) fn export(&mut self, body: &mut Vec<u8>) -> Result<Exported, ExportError> {
        let Some(runtime) = self.runtime.0.as_ref() else {
            return Err(ExportError {
                message: "the gRPC runtime is gone".into(),
                backoff: true,
            });
        };
        let request = tonic::Request::new(Raw(std::mem::take(body)));
        let client = &mut self.client;
        let timeout = self.timeout;
        let call = async move {
            client.ready().await.map_err(|e| ExportError {
                message: describe(&e),
                backoff: true,
            })?;
            client
                .unary(request, PathAndQuery::from_static(EXPORT), RawCodec)
                .await
                .map_err(|s| status_error(s, timeout))
        };
        // The endpoint's timeouts cover the call; this one also covers a connection
        // that never completes its HTTP/2 handshake.
        match runtime.block_on(async { tokio::time::timeout(timeout, call).await }) {
            Ok(Ok(response)) => Ok(response.into_inner()),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(ExportError {
                message: format!("no answer within {timeout:?}"),
                backoff: true,
            }),
        }
    }
}

/// An error and its causes, on one line.
fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = c.source();
    }
    text
}

fn status_error(s: Status, timeout: Duration) -> ExportError {
    // tonic's own deadline (the endpoint's timeout) says so in its message.
    if s.code() == Code::Cancelled && s.message().contains("Timeout expired") {
        return ExportError {
            message: format!("no answer within {timeout:?}"),
            backoff: true,
        };
    }
    let mut message = format!("gRPC {:?}", s.code());
    if !s.message().is_empty() {
        message.push_str(": ");
        message.push_str(s.message());
    }
    if let Some(source) = std::error::Error::source(&s) {
        message.push_str(": ");
        message.push_str(&describe(source));
    }
    ExportError {
        message,
        // This batch was refused; the next one may pass. Anything else is waited out.
        backoff: !matches!(s.code(), Code::InvalidArgument),
    }
}

/// An encoded `ExportTraceServiceRequest`.
struct Raw(Vec<u8>);

/// Sends [`Raw`] bytes as they are; decodes the answer with prost.
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Raw;
    type Decode = Exported;
    type Encoder = RawEncoder;
    type Decoder = ResponseDecoder;

    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }

    fn decoder(&mut self) -> ResponseDecoder {
        ResponseDecoder
    }
}

struct RawEncoder;

impl Encoder for RawEncoder {
    type Item = Raw;
    type Error = Status;

    fn encode(&mut self, item: Raw, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item.0);
        Ok(())
    }
}

struct ResponseDecoder;

impl Decoder for ResponseDecoder {
    type Item = Exported;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Exported>, Status> {
        let response = ExportTraceServiceResponse::decode(src)
            .map_err(|e| Status::internal(format!("bad ExportTraceServiceResponse: {e}")))?;
        Ok(Some(Exported::from(response)))
    }
}
