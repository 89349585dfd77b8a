//! OTLP/gRPC: `TraceService/Export` through tonic, on a current-thread tokio runtime
//! owned by the sink and driven only while an export is under way (the service
//! needs no runtime of its own).
//!
//! The connection is ours ([`QuickAckConnector`]): a collector that leaves Nagle's
//! algorithm on would otherwise stall every request larger than HTTP/2's first window.
//!
//! The request is sent as the bytes the encoder wrote (a codec of raw bytes), so
//! gRPC and HTTP share one encoder; the answer is decoded as
//! `ExportTraceServiceResponse`.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;
use prost::bytes::BufMut;
use tonic::client::Grpc;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
#[cfg(feature = "tls")]
use tonic::transport::ClientTlsConfig;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};
// tonic's paths are the `http` crate's, which ureq re-exports (the same crate).
use ureq::http::Uri;
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
        #[cfg_attr(not(feature = "tls"), allow(unused_mut))]
        let mut endpoint = Endpoint::from_shared(t.url())
            .map_err(|e| format!("invalid collector address: {e}"))?
            .connect_timeout(timeout)
            .timeout(timeout)
            .user_agent(format!("osprofiler-rs/{}", env!("CARGO_PKG_VERSION")))
            .map_err(|e| e.to_string())?;
        // Without `tls`, `otlps+grpc://` is refused before it gets here.
        #[cfg(feature = "tls")]
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
            endpoint.connect_with_connector_lazy(QuickAckConnector)
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

/// Opens the channel's TCP connections (tonic puts TLS on top when it is asked for):
/// streams with Nagle's algorithm off that acknowledge at once what they read.
///
/// Why: a request larger than the collector's first HTTP/2 window (64 KiB) waits for
/// its `WINDOW_UPDATE` frames. A collector whose socket keeps Nagle's algorithm on
/// (rotel does) holds the second of those small frames back until the first is
/// acknowledged, and Linux delays that acknowledgement by up to 40 ms when the
/// reader has nothing to send: 40 ms per request, measured (BENCHMARKS.md,
/// "Exporters"). Setting `TCP_QUICKACK` after a read sends a pending acknowledgement
/// now; it costs one system call per read.
#[derive(Clone, Copy)]
struct QuickAckConnector;

impl tower_service::Service<Uri> for QuickAckConnector {
    type Response = TokioIo<QuickAckStream>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        Box::pin(async move {
            let host = uri
                .host()
                .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_owned())
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no host"))?;
            let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
                Some("https") => 443,
                _ => 80,
            });
            let stream = TcpStream::connect((host.as_str(), port)).await?;
            stream.set_nodelay(true)?;
            Ok(TokioIo::new(QuickAckStream(stream)))
        })
    }
}

/// A TCP stream that acknowledges what it has read at once (see [`QuickAckConnector`]).
struct QuickAckStream(TcpStream);

impl AsyncRead for QuickAckStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let read = Pin::new(&mut self.0).poll_read(cx, buf);
        if matches!(read, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            quick_ack(&self.0);
        }
        read
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn quick_ack(s: &TcpStream) {
    // Best effort: a failure only leaves the kernel's delayed acknowledgement.
    let _ = socket2::SockRef::from(s).set_tcp_quickack(true);
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn quick_ack(_: &TcpStream) {}

impl AsyncWrite for QuickAckStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
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
