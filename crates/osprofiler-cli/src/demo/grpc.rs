//! gRPC between the demo's services with tonic, written by hand: JSON messages through a
//! codec of our own, so neither protoc nor prost is needed to build the demo.
//!
//! Servers sit behind `GrpcServerLayer::new()` (an `rpc` point per traced call, child of
//! the caller's point); clients sign their calls with `GrpcClientInterceptor`.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BufMut};
use osprofiler::Identity;
use osprofiler::integrations::tonic::GrpcClientInterceptor;
use osprofiler::integrations::tonic::GrpcServerLayer;
use serde_json::Value;
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::server::UnaryService;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint, Server};

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Messages are JSON documents.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonCodec;

impl Codec for JsonCodec {
    type Encode = Value;
    type Decode = Value;
    type Encoder = JsonCodec;
    type Decoder = JsonCodec;
    fn encoder(&mut self) -> JsonCodec {
        JsonCodec
    }
    fn decoder(&mut self) -> JsonCodec {
        JsonCodec
    }
}

impl Encoder for JsonCodec {
    type Item = Value;
    type Error = Status;
    fn encode(&mut self, item: Value, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        serde_json::to_writer(dst.writer(), &item).map_err(|e| Status::internal(e.to_string()))
    }
}

impl Decoder for JsonCodec {
    type Item = Value;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Value>, Status> {
        // `src` holds exactly one message.
        serde_json::from_reader(src.reader())
            .map(Some)
            .map_err(|e| Status::invalid_argument(format!("not a JSON message: {e}")))
    }
}

/// A service's methods: a method name and its JSON request in, a JSON answer out.
pub trait Handler: Clone + Send + Sync + 'static {
    fn call(&self, method: &str, request: Value) -> BoxFuture<Result<Value, Status>>;
}

/// The whole gRPC server for one service `package.Service`: routes
/// `/package.Service/Method` to the handler, as generated code would.
#[derive(Clone)]
struct Router<H> {
    service: &'static str,
    handler: H,
}

impl<H: Handler> tower_service::Service<http::Request<tonic::body::Body>> for Router<H> {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        let method = req
            .uri()
            .path()
            .strip_prefix('/')
            .and_then(|p| p.strip_prefix(self.service))
            .and_then(|p| p.strip_prefix('/'))
            .map(str::to_owned);
        let handler = self.handler.clone();
        Box::pin(async move {
            let Some(method) = method else {
                return Ok(Status::unimplemented("no such service").into_http());
            };
            let mut grpc = tonic::server::Grpc::new(JsonCodec);
            Ok(grpc.unary(Unary { handler, method }, req).await)
        })
    }
}

struct Unary<H> {
    handler: H,
    method: String,
}

impl<H: Handler> UnaryService<Value> for Unary<H> {
    type Response = Value;
    type Future = BoxFuture<Result<tonic::Response<Value>, Status>>;
    fn call(&mut self, req: tonic::Request<Value>) -> Self::Future {
        let answer = self.handler.call(&self.method, req.into_inner());
        Box::pin(async move { answer.await.map(tonic::Response::new) })
    }
}

/// Serves `service` on `listener` until the runtime stops, recording `rpc` points for
/// traced calls as `identity`.
pub fn spawn_server<H: Handler>(
    listener: tokio::net::TcpListener,
    service: &'static str,
    identity: Identity,
    handler: H,
) {
    // TCP_NODELAY, as tonic's clients set it: else Nagle's algorithm and delayed ACKs can
    // hold a small answer back for 40 ms, a wait that would show in the trace.
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let router = Router { service, handler };
    tokio::spawn(
        Server::builder()
            .layer(GrpcServerLayer::new().identity(identity))
            .serve_with_incoming(router, incoming),
    );
}

/// A client of one gRPC service; cheap to clone.
#[derive(Clone)]
pub struct Client {
    grpc: tonic::client::Grpc<InterceptedService<Channel, GrpcClientInterceptor>>,
    service: &'static str,
}

impl Client {
    /// Connects on first use (no I/O now).
    pub fn new(addr: SocketAddr, service: &'static str) -> Result<Client, String> {
        let channel = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| e.to_string())?
            .connect_lazy();
        Ok(Client {
            grpc: tonic::client::Grpc::new(InterceptedService::new(channel, GrpcClientInterceptor)),
            service,
        })
    }

    /// Calls `method`; signed with the current point when inside a trace.
    pub async fn call(&self, method: &str, request: Value) -> Result<Value, Status> {
        let path: http::uri::PathAndQuery = format!("/{}/{method}", self.service)
            .parse()
            .map_err(|_| Status::internal(format!("bad method name {method:?}")))?;
        let mut grpc = self.grpc.clone();
        grpc.ready()
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let answer = grpc
            .unary(tonic::Request::new(request), path, JsonCodec)
            .await?;
        Ok(answer.into_inner())
    }
}
