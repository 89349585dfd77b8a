//! Events per second through each span exporter, side by side with the OpenTelemetry
//! SDK's own OTLP exporter (`opentelemetry-otlp`) sending the same spans in the same run:
//! `cargo bench -p osprofiler-store --all-features --bench exporters`.
//!
//! - `ours/otlp_http`, `ours/otlp_grpc`: our sink (`otlp://`, `otlp+grpc://`) into a real
//!   collector, `rotel-agent` (quiet: it decodes and discards), started here.
//! - `ours/jaeger_udp`: our `jaeger://` sink into a loopback UDP socket a thread drains.
//! - `sdk/otlp_http`, `sdk/otlp_grpc`: `opentelemetry_otlp::SpanExporter` (HTTP/protobuf
//!   through reqwest, gRPC through tonic) exporting the same spans, already assembled as
//!   the SDK's `SpanData` (the SDK does no pairing of start and stop: ours does, in the
//!   time measured).
//!
//! - `*/otlp_http_discard`: both exporters into a receiver (a thread here) that reads
//!   each request whole and answers 200 without decoding it: the exporter's own cost,
//!   with the collector's taken out.
//! - `collector/otlp_http_post`: the same batch already encoded (by the SDK's transform
//!   and prost), POSTed with a plain HTTP client: what the collector alone costs per
//!   batch, the floor under every exporter's time.
//!
//! One iteration is `ROUNDS` batches of `SPANS` spans each (the exporter thread's
//! largest batch is `2 × SPANS` events), then a flush: our OTLP sink sends from a
//! thread of its own while it encodes the next batch, and the flush waits until the
//! collector has answered every request, so the time is the whole delivery. Ours gets
//! fresh events each iteration (made outside the timing), as recorded by the real
//! pipeline, so nothing they cache is reused. The counter is events: a span is two
//! osprofiler events, for the SDK too.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use divan::{Bencher, counter::ItemsCount};
use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanExporter as _, SpanLinks};
use osprofiler::notifier::{self, MemorySink, Sink};
use osprofiler::{Event, HmacKey, Identity, Info, TraceContext};
use osprofiler_store::{ConnectionString, Options};
use osprofiler_testkit::Rotel;
use serde_json::json;

/// Spans per batch (the exporter's `max_batch` of 4096 events).
const SPANS: usize = 2048;
const EVENTS: usize = 2 * SPANS;
/// Batches per iteration.
const ROUNDS: usize = 8;

struct State {
    events: Vec<Event>,
    spans: Vec<SpanData>,
    http: Box<dyn Sink>,
    http_discard: Box<dyn Sink>,
    grpc: Box<dyn Sink>,
    jaeger: Box<dyn Sink>,
    sdk_http: opentelemetry_otlp::SpanExporter,
    sdk_http_discard: opentelemetry_otlp::SpanExporter,
    sdk_grpc: opentelemetry_otlp::SpanExporter,
    rt: tokio::runtime::Runtime,
    body: Vec<u8>,
    url: String,
    discard_url: String,
    agent: ureq::Agent,
}

static STATE: Mutex<Option<State>> = Mutex::new(None);

fn with_state<R>(f: impl FnOnce(&mut State) -> R) -> R {
    let mut guard = STATE.lock().unwrap_or_else(|e| e.into_inner());
    f(guard.as_mut().expect("state set up by main"))
}

/// A realistic request's shape, repeated: a `wsgi` point with its request, `db` points
/// with statements, a traced function with arguments, a driver call, one failure.
fn record_events() -> Vec<Event> {
    let sink = MemorySink::new();
    let guard = notifier::set_sink(sink.clone());
    let id = Identity::new("nova", "api", "api-1");
    let mut recorded = 0;
    while recorded < SPANS {
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
    notifier::flush().expect("flush");
    drop(guard);
    let mut events = sink.take();
    events.truncate(EVENTS);
    events
}

/// The SDK's spans for the same shape and attributes as ours make of the events.
fn sdk_spans() -> Vec<SpanData> {
    let scope = InstrumentationScope::builder("osprofiler").build();
    let now = SystemTime::now();
    let attrs = |kvs: &[(&'static str, &'static str)]| -> Vec<KeyValue> {
        kvs.iter().map(|(k, v)| KeyValue::new(*k, *v)).collect()
    };
    let shapes: [(&str, SpanKind, Vec<KeyValue>, Status); 7] = [
        (
            "WSGI_GET_/v2.1/servers",
            SpanKind::Server,
            {
                let mut a = attrs(&[
                    ("osprofiler.point", "wsgi"),
                    ("http.request.method", "GET"),
                    ("url.path", "/v2.1/servers"),
                    ("url.query", "limit=10"),
                    ("url.scheme", "http"),
                ]);
                a.push(KeyValue::new("server.port", 8774));
                a
            },
            Status::Unset,
        ),
        db_span(0),
        db_span(1),
        db_span(2),
        db_span(3),
        (
            "nova.compute.api.API.get_all",
            SpanKind::Internal,
            attrs(&[
                ("osprofiler.point", "rpc"),
                ("code.function.name", "nova.compute.api.API.get_all"),
                ("args", "(<Context>, 'demo-vm')"),
                ("kwargs", "{}"),
            ]),
            Status::Unset,
        ),
        (
            "driver",
            SpanKind::Internal,
            attrs(&[
                ("osprofiler.point", "driver"),
                ("vm", "vm-1"),
                ("exception.type", "NoValidHost"),
                ("exception.message", "No valid host was found."),
            ]),
            Status::error("No valid host was found."),
        ),
    ];
    (0..SPANS)
        .map(|i| {
            let (name, kind, attributes, status) = shapes[i % shapes.len()].clone();
            SpanData {
                span_context: SpanContext::new(
                    TraceId::from((i / 7 + 1) as u128 * 0x9e37_79b9_7f4a_7c15),
                    SpanId::from(i as u64 + 1),
                    TraceFlags::SAMPLED,
                    false,
                    TraceState::default(),
                ),
                parent_span_id: SpanId::from(if i % 7 == 0 {
                    0
                } else {
                    (i / 7 * 7 + 1) as u64
                }),
                parent_span_is_remote: false,
                span_kind: kind,
                name: name.to_owned().into(),
                start_time: now,
                end_time: now + Duration::from_micros(150),
                attributes,
                dropped_attributes_count: 0,
                events: SpanEvents::default(),
                links: SpanLinks::default(),
                status,
                instrumentation_scope: scope.clone(),
            }
        })
        .collect()
}

fn db_span(i: i64) -> (&'static str, SpanKind, Vec<KeyValue>, Status) {
    (
        "SQL_SELECT",
        SpanKind::Client,
        vec![
            KeyValue::new("osprofiler.point", "db"),
            KeyValue::new(
                "db.query.text",
                "SELECT instances.id, instances.uuid FROM instances WHERE instances.project_id = ? LIMIT ?",
            ),
            KeyValue::new("db.params", format!("[\"6f1c2b1e\",{i}]")),
        ],
        Status::Unset,
    )
}

/// An HTTP/1.1 server that reads each request (headers, `content-length` bytes of
/// body) and answers 200 with an empty body, on every connection it is given.
fn discard_receiver() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind tcp");
    let port = listener.local_addr().expect("tcp addr").port();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || serve_discarding(conn));
        }
    });
    port
}

fn serve_discarding(conn: TcpStream) {
    let _ = conn.set_nodelay(true);
    let Ok(mut out) = conn.try_clone() else {
        return;
    };
    let mut input = BufReader::with_capacity(256 * 1024, conn);
    let mut body = vec![0u8; 256 * 1024];
    let mut line = String::new();
    loop {
        let mut length = 0usize;
        loop {
            line.clear();
            match input.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        while length > 0 {
            let n = length.min(body.len());
            if input.read_exact(&mut body[..n]).is_err() {
                return;
            }
            length -= n;
        }
        let answer =
            b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
        if out.write_all(answer).is_err() {
            return;
        }
    }
}

fn main() {
    let rotel = match Rotel::start_quiet() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("skipping the exporter benchmarks: rotel unavailable: {e}");
            return;
        }
    };
    // A Jaeger agent's socket, drained by a thread so that datagrams are taken.
    let udp = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
    let _ = udp.set_read_timeout(Some(Duration::from_millis(100)));
    let udp_port = udp.local_addr().expect("udp addr").port();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 65_536];
        loop {
            let _ = udp.recv(&mut buf);
        }
    });

    let opts = Options::default();
    let open = |s: String| {
        let cs: ConnectionString = s.parse().expect("connection string");
        osprofiler_store::sink(&cs, &opts).expect("sink")
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let resource = Resource::builder_empty()
        .with_attributes([
            KeyValue::new("service.name", "nova-api"),
            KeyValue::new("host.name", "api-1"),
        ])
        .build();
    let discard_port = discard_receiver();
    let (sdk_http, sdk_http_discard, sdk_grpc) = rt.block_on(async {
        let mut http = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(format!("http://127.0.0.1:{}/v1/traces", rotel.http_port()))
            .build()
            .expect("SDK HTTP exporter");
        let mut discard = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(format!("http://127.0.0.1:{discard_port}/v1/traces"))
            .build()
            .expect("SDK HTTP exporter");
        let mut grpc = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(format!("http://127.0.0.1:{}", rotel.grpc_port()))
            .build()
            .expect("SDK gRPC exporter");
        http.set_resource(&resource);
        discard.set_resource(&resource);
        grpc.set_resource(&resource);
        (http, discard, grpc)
    });
    let spans = sdk_spans();
    let body = {
        use prost::Message;
        let attrs =
            opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema::from(
                &resource,
            );
        let resource_spans =
            opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope(
                spans.clone(),
                &attrs,
            );
        opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest {
            resource_spans,
        }
        .encode_to_vec()
    };
    let state = State {
        events: record_events(),
        spans,
        body,
        url: format!("http://127.0.0.1:{}/v1/traces", rotel.http_port()),
        discard_url: format!("http://127.0.0.1:{discard_port}/v1/traces"),
        agent: ureq::Agent::new_with_defaults(),
        http: open(rotel.http_connection_string()),
        http_discard: open(format!("otlp://127.0.0.1:{discard_port}")),
        grpc: open(rotel.grpc_connection_string()),
        jaeger: open(format!("jaeger://127.0.0.1:{udp_port}")),
        sdk_http,
        sdk_http_discard,
        sdk_grpc,
        rt,
    };
    assert_eq!(state.events.len(), EVENTS, "recorded a whole batch");
    *STATE.lock().unwrap_or_else(|e| e.into_inner()) = Some(state);

    divan::main();

    // Everything was accepted: a failed export would make the figures meaningless.
    if let Some(s) = STATE.lock().unwrap_or_else(|e| e.into_inner()).take() {
        drop(s);
    }
    drop(rotel);
}

fn ours(b: Bencher, which: fn(&mut State) -> &mut Box<dyn Sink>) {
    b.counter(ItemsCount::new(ROUNDS * EVENTS))
        .with_inputs(|| with_state(|s| vec![s.events.clone(); ROUNDS]))
        .bench_local_values(|batches| {
            with_state(|s| {
                let sink = which(s);
                for events in &batches {
                    sink.write(events)?;
                }
                sink.flush()
            })
            .expect("our export failed");
            // Dropped after the timing: the pipeline frees its events whichever sinks
            // it has, so that is no exporter's cost.
            batches
        });
}

fn sdk(b: Bencher, which: fn(&State) -> &opentelemetry_otlp::SpanExporter) {
    b.counter(ItemsCount::new(ROUNDS * EVENTS))
        .with_inputs(|| with_state(|s| vec![s.spans.clone(); ROUNDS]))
        .bench_local_values(|batches| {
            with_state(|s| {
                let exporter = which(s);
                for spans in batches {
                    s.rt.block_on(exporter.export(spans))?;
                }
                Ok::<(), opentelemetry_sdk::error::OTelSdkError>(())
            })
            .expect("the SDK's export failed");
        });
}

#[divan::bench_group(sample_count = 30, sample_size = 1)]
mod ours {
    use super::*;

    #[divan::bench]
    fn otlp_http(b: Bencher) {
        ours(b, |s| &mut s.http);
    }

    #[divan::bench]
    fn otlp_grpc(b: Bencher) {
        ours(b, |s| &mut s.grpc);
    }

    #[divan::bench]
    fn otlp_http_discard(b: Bencher) {
        ours(b, |s| &mut s.http_discard);
    }

    #[divan::bench]
    fn jaeger_udp(b: Bencher) {
        ours(b, |s| &mut s.jaeger);
    }
}

#[divan::bench_group(sample_count = 30, sample_size = 1)]
mod collector {
    use super::*;

    #[divan::bench]
    fn otlp_http_post(b: Bencher) {
        post(b, |s| &s.url);
    }

    /// The same into the discarding receiver: what the transfer alone costs.
    #[divan::bench]
    fn discard_post(b: Bencher) {
        post(b, |s| &s.discard_url);
    }

    fn post(b: Bencher, url: fn(&State) -> &String) {
        b.counter(ItemsCount::new(ROUNDS * EVENTS)).bench_local(|| {
            with_state(|s| {
                for _ in 0..ROUNDS {
                    s.agent
                        .post(url(s))
                        .header("content-type", "application/x-protobuf")
                        .send(&s.body[..])?;
                }
                Ok::<(), ureq::Error>(())
            })
            .expect("POST failed");
        });
    }
}

#[divan::bench_group(sample_count = 30, sample_size = 1)]
mod sdk {
    use super::*;

    #[divan::bench]
    fn otlp_http(b: Bencher) {
        sdk(b, |s| &s.sdk_http);
    }

    #[divan::bench]
    fn otlp_http_discard(b: Bencher) {
        sdk(b, |s| &s.sdk_http_discard);
    }

    #[divan::bench]
    fn otlp_grpc(b: Bencher) {
        sdk(b, |s| &s.sdk_grpc);
    }
}
