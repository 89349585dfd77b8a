//! Shared by the gRPC tests: a tonic codec whose messages are their bytes (no protoc, no
//! prost), a server routing calls by path, and a signed client's unary call.

#![allow(dead_code)]

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BufMut, Bytes};
use osprofiler::integrations::tonic::GrpcClientInterceptor;
use tonic::Status;
use tonic::body::Body;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Messages are their bytes.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }
    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// A client whose calls `GrpcClientInterceptor` signs.
pub type Client = tonic::client::Grpc<InterceptedService<Channel, GrpcClientInterceptor>>;

/// One unary call of `path` with `body`; the reply's bytes.
pub async fn unary(
    client: &mut Client,
    path: &'static str,
    body: &'static [u8],
) -> Result<Bytes, Status> {
    client
        .ready()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    let path = http::uri::PathAndQuery::from_static(path);
    let resp = client
        .unary(
            tonic::Request::new(Bytes::from_static(body)),
            path,
            RawCodec,
        )
        .await?;
    Ok(resp.into_inner())
}

/// A gRPC server, written by hand as generated code would be: the function answers each
/// call, by its path.
#[derive(Clone, Copy)]
pub struct Routes(pub fn(http::Request<Body>) -> BoxFuture<http::Response<Body>>);

impl tower_service::Service<http::Request<Body>> for Routes {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let answer = (self.0)(req);
        Box::pin(async move { Ok(answer.await) })
    }
}
