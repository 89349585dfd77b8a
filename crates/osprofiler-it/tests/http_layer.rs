//! The server layer's edges, in process with real tower services and bodies:
//! the trace is installed only while the request's work is polled (nothing
//! leaks into the thread or other tasks), and the point stops on every path:
//! answer, error, panic, cancellation, body end, body error, trailers.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::{Pin, pin};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use osprofiler::integrations::tonic::GrpcServerLayer;
use osprofiler::integrations::tower::HttpServerLayer;
use osprofiler::notifier::{self, MemorySink};
use osprofiler::{Event, EventKind, HmacKey, HmacKeys, Id, TraceHeaders, switches};
use serde_json::{Value, json};
use tower::ServiceExt;
use tower_layer::Layer;

/// A signed request for a new trace; its base id.
fn signed(path: &str) -> (Id, Request<()>) {
    let base = Id::new_v4();
    let h = TraceHeaders::sign(base, base, &HmacKey::new("SECRET_KEY").unwrap());
    let req = Request::get(path)
        .header("x-trace-info", h.info)
        .header("x-trace-hmac", h.hmac)
        .body(())
        .unwrap();
    (base, req)
}

/// The stop info of the one point of trace `base`, without `host`.
fn stop_info(sink: &MemorySink, base: Id) -> Value {
    notifier::flush().unwrap();
    let events: Vec<Event> = sink.trace(base);
    assert_eq!(events.len(), 2, "{events:#?}");
    let stop = events.iter().find(|e| e.kind == EventKind::Stop).unwrap();
    let mut m = stop.info.as_map().clone();
    m.remove("host");
    Value::Object(m)
}

/// A body made of given frames.
struct Frames(VecDeque<Result<Frame<Bytes>, std::io::Error>>);

impl Body for Frames {
    type Data = Bytes;
    type Error = std::io::Error;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        Poll::Ready(self.0.pop_front())
    }
}

fn grpc_answer() -> Frames {
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", "14".parse().unwrap());
    trailers.insert("grpc-message", "compute%20node%20down".parse().unwrap());
    Frames(VecDeque::from([
        Ok(Frame::data(Bytes::from_static(b"\0\0\0\0\x01a"))),
        Ok(Frame::trailers(trailers)),
    ]))
}

#[test]
fn the_point_stops_on_every_path_and_nothing_leaks() {
    let sink = MemorySink::new();
    let _notifier = notifier::set_sink(sink.clone());
    switches::enable(HmacKeys::parse("SECRET_KEY"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    // 1. A handler that yields: traced while polled, and only then; another
    //    task on the same thread, polled in between, sees no trace.
    let svc = HttpServerLayer::new().layer(tower::service_fn(|_req: Request<()>| async {
        assert!(osprofiler::is_active(), "the handler runs in the trace");
        tokio::task::yield_now().await;
        let here = osprofiler::get().expect("still in the trace after a yield");
        Ok::<_, Infallible>(Response::new(here.id().to_string()))
    }));
    let (base, req) = signed("/a");
    let (resp, other) = rt.block_on(async {
        let other = tokio::spawn(async {
            let mut seen = Vec::new();
            for _ in 0..3 {
                seen.push(osprofiler::is_active());
                tokio::task::yield_now().await;
            }
            seen
        });
        let resp = svc.oneshot(req).await.unwrap();
        (resp, other.await.unwrap())
    });
    assert_eq!(other, [false, false, false]);
    assert!(!osprofiler::is_active(), "nothing left on the thread");
    notifier::flush().unwrap();
    let events = sink.trace(base);
    let wsgi = events.iter().find(|e| e.kind == EventKind::Start).unwrap();
    assert_eq!(
        resp.body(),
        &wsgi.trace_id.to_string(),
        "the handler's current point"
    );
    assert_eq!(stop_info(&sink, base), json!({"response": {"status": 200}}));

    // 2. The service fails: its error's type and message.
    let svc = HttpServerLayer::new().layer(tower::service_fn(|_req: Request<()>| async {
        Err::<Response<()>, _>(std::io::Error::other("backend down"))
    }));
    let (base, req) = signed("/b");
    assert!(rt.block_on(svc.oneshot(req)).is_err());
    assert_eq!(
        stop_info(&sink, base),
        json!({"etype": "std::io::error::Error", "message": "backend down"})
    );

    // 3. The handler panics: the panic goes on to the caller, the point stops
    //    as a panic, the thread is left clean.
    let mut svc = HttpServerLayer::new().layer(tower::service_fn(|_req: Request<()>| async {
        if true {
            panic!("handler bug");
        }
        Ok::<_, Infallible>(Response::new(()))
    }));
    let (base, req) = signed("/c");
    let mut fut = Box::pin(tower_service::Service::call(&mut svc, req));
    let caught = catch_unwind(AssertUnwindSafe(|| {
        let _ = fut.as_mut().poll(&mut Context::from_waker(Waker::noop()));
    }));
    assert!(caught.is_err());
    assert!(!osprofiler::is_active());
    drop(fut);
    assert_eq!(
        stop_info(&sink, base),
        json!({"etype": "panic", "message": "panicked"})
    );

    // 4. The request is dropped before an answer (the client went away).
    let mut svc = HttpServerLayer::new().layer(tower::service_fn(|_req: Request<()>| {
        std::future::pending::<Result<Response<()>, Infallible>>()
    }));
    let (base, req) = signed("/d");
    {
        let mut fut = pin!(tower_service::Service::call(&mut svc, req));
        assert!(
            fut.as_mut()
                .poll(&mut Context::from_waker(Waker::noop()))
                .is_pending()
        );
        assert!(!osprofiler::is_active());
    }
    assert_eq!(stop_info(&sink, base), json!({"cancelled": true}));

    // 5. gRPC: the status comes in the trailers; the point stops after them.
    let svc = GrpcServerLayer::new().layer(tower::service_fn(|_req: Request<()>| async {
        Ok::<_, Infallible>(Response::new(grpc_answer()))
    }));
    let (base, req) = signed("/compute.Compute/Boot");
    let resp = rt.block_on(svc.oneshot(req)).unwrap();
    notifier::flush().unwrap();
    assert!(
        sink.trace(base).iter().all(|e| e.kind == EventKind::Start),
        "not stopped before the body is read"
    );
    let collected = rt.block_on(resp.into_body().collect()).unwrap();
    assert_eq!(collected.trailers().unwrap()["grpc-status"], "14");
    assert_eq!(
        stop_info(&sink, base),
        json!({"response": {"status": 200, "grpc_status": 14}, "etype": "GrpcError",
               "message": "UNAVAILABLE: compute node down"})
    );

    // 6. A body that fails half way; and one dropped unread.
    let svc = HttpServerLayer::new()
        .until_body_end()
        .layer(tower::service_fn(|_req: Request<()>| async {
            Ok::<_, Infallible>(Response::new(Frames(VecDeque::from([
                Ok(Frame::data(Bytes::from_static(b"part"))),
                Err(std::io::Error::other("disk gone")),
            ]))))
        }));
    let (base, req) = signed("/e");
    let resp = rt.block_on(svc.clone().oneshot(req)).unwrap();
    assert!(rt.block_on(resp.into_body().collect()).is_err());
    assert_eq!(
        stop_info(&sink, base),
        json!({"response": {"status": 200}, "etype": "std::io::error::Error",
               "message": "disk gone"})
    );
    let (base, req) = signed("/f");
    drop(rt.block_on(svc.oneshot(req)).unwrap());
    assert_eq!(stop_info(&sink, base), json!({"response": {"status": 200}}));
    assert!(!osprofiler::is_active());
}
