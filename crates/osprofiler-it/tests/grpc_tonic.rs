//! A real tonic gRPC server (behind `GrpcServerLayer::new()`) and client
//! (with `GrpcClientInterceptor`) over loopback HTTP/2: the server's `rpc`
//! point is the child of the client's point, and the metadata carries the
//! signature, never the key.
//!
//! The service is written by hand over a raw-bytes codec: no protoc, no prost.

mod grpc_support;
mod http_support;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE;
use bytes::Bytes;
use grpc_support::{BoxFuture, Client, RawCodec, Routes};
use http_support::{KEY, info, point, runtime, wait_events};
use osprofiler::integrations::tonic::GrpcClientInterceptor;
use osprofiler::integrations::tonic::GrpcServerLayer;
use osprofiler::notifier::{self, MemorySink};
use osprofiler::{HmacKey, HmacKeys, Identity, TraceContext, in_point, switches, trace};
use osprofiler_testkit::need;
use serde_json::json;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Endpoint, Server};
use tonic::{Status, server::UnaryService};

#[trace(name = "driver")]
async fn spawn_vm(name: &str) -> usize {
    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    name.len()
}

/// `Say`: answers with the metadata it received (name=value lines), after a
/// traced driver call.
struct Say;

impl UnaryService<Bytes> for Say {
    type Response = Bytes;
    type Future = BoxFuture<Result<tonic::Response<Bytes>, Status>>;
    fn call(&mut self, req: tonic::Request<Bytes>) -> Self::Future {
        let mut seen: Vec<String> = req
            .metadata()
            .as_ref()
            .iter()
            .map(|(k, v)| format!("{k}={}", String::from_utf8_lossy(v.as_bytes())))
            .collect();
        seen.sort();
        Box::pin(async move {
            spawn_vm("vm-1").await;
            Ok(tonic::Response::new(Bytes::from(seen.join("\n"))))
        })
    }
}

struct Fail;

impl UnaryService<Bytes> for Fail {
    type Response = Bytes;
    type Future = BoxFuture<Result<tonic::Response<Bytes>, Status>>;
    fn call(&mut self, _req: tonic::Request<Bytes>) -> Self::Future {
        Box::pin(async { Err(Status::internal("no valid host: boom")) })
    }
}

/// The whole server: routes by path, as generated code would.
fn compute(req: http::Request<tonic::body::Body>) -> BoxFuture<http::Response<tonic::body::Body>> {
    Box::pin(async move {
        let mut grpc = tonic::server::Grpc::new(RawCodec);
        match req.uri().path() {
            "/compute.Compute/Say" => grpc.unary(Say, req).await,
            "/compute.Compute/Fail" => grpc.unary(Fail, req).await,
            _ => Status::unimplemented("no such method").into_http(),
        }
    })
}

async fn call(client: &mut Client, path: &'static str) -> Result<Bytes, Status> {
    grpc_support::unary(client, path, b"hi").await
}

#[test]
fn grpc_calls_continue_the_trace() {
    let sink = MemorySink::new();
    let _notifier = notifier::set_sink(sink.clone());
    switches::enable(HmacKeys::parse(KEY));

    let rt = runtime();
    let bound = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("bind 127.0.0.1:0: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let incoming = tonic::transport::server::TcpIncoming::from(listener);
        let layer = GrpcServerLayer::new().identity(Identity::new("demo", "compute", "n1"));
        tokio::spawn(
            Server::builder()
                .layer(layer)
                .serve_with_incoming(Routes(compute), incoming),
        );
        let channel = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| e.to_string())?
            .connect()
            .await
            .map_err(|e| format!("connect to the gRPC server: {e}"))?;
        let client: Client =
            tonic::client::Grpc::new(InterceptedService::new(channel, GrpcClientInterceptor));
        Ok::<_, String>((addr, client))
    });
    let Some((addr, mut client)) = need("tonic server and client on loopback", bound) else {
        return;
    };

    // 1. A call from inside the client's point: the server's rpc point is its
    //    child, the handler's driver point the rpc point's.
    let ctx = TraceContext::new(HmacKey::new(KEY), None, None).with_identity(&Identity::new(
        "demo",
        "conductor",
        "c1",
    ));
    let seen = rt
        .block_on(
            ctx.clone()
                .instrument(in_point("build", call(&mut client, "/compute.Compute/Say"))),
        )
        .expect("Say");
    let events = wait_events(&sink, ctx.base_id(), 6);
    assert_eq!(events.len(), 6, "{events:#?}");
    let (build, _) = point(&events, "build");
    let (rpc_start, rpc_stop) = point(&events, "rpc");
    let (driver, _) = point(&events, "driver");
    assert_eq!(rpc_start.parent_id, build.trace_id);
    assert_eq!(driver.parent_id, rpc_start.trace_id);
    assert_eq!(rpc_start.service.as_deref(), Some("compute"));
    assert_eq!(build.service.as_deref(), Some("conductor"));
    assert_eq!(
        info(rpc_start),
        json!({"request": {"path": "/compute.Compute/Say", "query": "", "method": "POST",
                           "scheme": "http", "port": addr.port()},
               "function": {"name": "compute.Compute.Say"}})
    );
    assert_eq!(
        info(rpc_stop),
        json!({"response": {"status": 200, "grpc_status": 0}})
    );

    // The metadata held the signed pair, and no key: the info decodes to the
    // two ids, the caller's point as parent.
    let seen = String::from_utf8(seen.to_vec()).unwrap();
    assert!(!seen.contains(KEY), "{seen}");
    let value = |name: &str| {
        seen.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("{name} in {seen}"))
            .to_owned()
    };
    let decoded = String::from_utf8(URL_SAFE.decode(value("x-trace-info")).unwrap()).unwrap();
    assert_eq!(
        decoded,
        format!(
            r#"{{"base_id": "{}", "parent_id": "{}"}}"#,
            ctx.base_id(),
            build.trace_id
        )
    );
    assert_eq!(value("x-trace-hmac").len(), 40);
    assert!(!seen.to_ascii_lowercase().contains("hmac_key"));

    // 2. A failing call: the rpc point records the gRPC status as an error.
    let ctx = TraceContext::new(HmacKey::new(KEY), None, None);
    let status = rt
        .block_on(
            ctx.clone()
                .instrument(call(&mut client, "/compute.Compute/Fail")),
        )
        .expect_err("Fail fails");
    assert_eq!(status.code(), tonic::Code::Internal);
    let events = wait_events(&sink, ctx.base_id(), 2);
    let (rpc_start, rpc_stop) = point(&events, "rpc");
    assert_eq!(rpc_start.parent_id, ctx.base_id());
    assert_eq!(
        info(rpc_stop),
        json!({"response": {"status": 200, "grpc_status": 13}, "etype": "GrpcError",
               "message": "INTERNAL: no valid host: boom"})
    );

    // 3. Outside a trace: no metadata added, nothing recorded.
    let before = sink.events().len();
    let seen = rt
        .block_on(call(&mut client, "/compute.Compute/Say"))
        .unwrap();
    let seen = String::from_utf8(seen.to_vec()).unwrap();
    assert!(!seen.contains("x-trace"), "{seen}");
    notifier::flush().unwrap();
    assert_eq!(sink.events().len(), before);
    drop(rt);
}
