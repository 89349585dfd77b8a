//! Writes the seed inputs of every fuzz target into `fuzz/corpus/<target>/seed-*`: the
//! reference vectors of osprofiler 4.4.0 (`vectors/`) and a trace recorded with this
//! library. The committed corpus is these seeds grown by fuzzing and minimised with
//! `cargo fuzz cmin`; run this to re-seed it (`cargo run -p osprofiler-fuzz-checks
//! --example seed_corpus`), then `scripts/fuzz`.

use std::path::{Path, PathBuf};

use osprofiler::notifier::{self, MemorySink};
use osprofiler::{HmacKey, Identity, Info, TraceContext};
use serde_json::{Value, json};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn write(target: &str, name: &str, data: impl AsRef<[u8]>) {
    let dir = root().join("fuzz/corpus").join(target);
    std::fs::create_dir_all(&dir).expect("corpus folder");
    std::fs::write(dir.join(format!("seed-{name}")), data).expect("seed written");
}

/// A two-service trace recorded with the library: its events as stored, and the headers
/// its first call sent.
fn recorded() -> (Vec<String>, osprofiler::TraceHeaders) {
    let sink = MemorySink::new();
    let _guard = notifier::set_sink(sink.clone());
    osprofiler::set_process_identity(Identity::new("nova", "api", "host-a"));
    let ctx = TraceContext::new(HmacKey::new(osprofiler_fuzz_checks::FIXED_KEY), None, None);
    let headers = ctx.in_scope(|| {
        let request = json!({"path": "/v2.1/servers", "query": "", "method": "GET", "scheme": "http"});
        let _wsgi = osprofiler::point_with("wsgi", Info::new().with("request", request));
        {
            let db = json!({"statement": "SELECT * FROM instances WHERE id = %s", "params": ["<script>"]});
            let _db = osprofiler::point_with("db", Info::new().with("db", db));
        }
        let _rpc = osprofiler::point_with("rpc", Info::new().with("method", "build"));
        osprofiler::get().and_then(|c| c.headers()).expect("inside a trace")
    });
    notifier::flush().expect("flushed");
    let events = sink
        .trace(ctx.base_id())
        .iter()
        .map(|e| e.to_json())
        .collect();
    (events, headers)
}

fn main() {
    let vectors = root().join("vectors");
    let read = |name: &str| std::fs::read_to_string(vectors.join(name)).expect("vector file");
    let (events, headers) = recorded();

    // trace_headers: info, hmac, then the keys, one per line.
    let h: Value = serde_json::from_str(&read("headers.json")).expect("headers.json");
    for (i, v) in h["sign"].as_array().into_iter().flatten().enumerate() {
        let (info, hmac, key) = (&v["X-Trace-Info"], &v["X-Trace-HMAC"], &v["hmac_key"]);
        let text = format!(
            "{}\n{}\n{}",
            info.as_str().unwrap_or_default(),
            hmac.as_str().unwrap_or_default(),
            key.as_str().unwrap_or_default()
        );
        write("trace_headers", &format!("sign-{i}"), text);
    }
    for (i, v) in h["verify"].as_array().into_iter().flatten().enumerate() {
        let keys: Vec<&str> = v["hmac_keys"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let text = format!(
            "{}\n{}\n{}",
            v["X-Trace-Info"].as_str().unwrap_or_default(),
            v["X-Trace-HMAC"].as_str().unwrap_or_default(),
            keys.join("\n")
        );
        write("trace_headers", &format!("verify-{i}"), text);
    }
    write(
        "trace_headers",
        "recorded",
        format!("{}\n{}", headers.info, headers.hmac),
    );

    // carrier: header maps and Python's trace_info.
    write(
        "carrier",
        "headers",
        json!({"X-Trace-Info": headers.info, "X-Trace-HMAC": headers.hmac}).to_string(),
    );
    write(
        "carrier",
        "lowercase",
        json!({"x-trace-info": headers.info, "x-trace-hmac": headers.hmac, "content-type": "application/json"}).to_string(),
    );
    let base = "11111111-1111-4111-8111-111111111111";
    let parent = "22222222-2222-4222-8222-222222222222";
    write(
        "carrier",
        "python-context",
        json!({"user": "demo", "trace_info": {"hmac_key": "SECRET_KEY", "base_id": base, "parent_id": parent}}).to_string(),
    );
    write(
        "carrier",
        "python-bare",
        json!({"hmac_key": "SECRET_KEY", "base_id": base}).to_string(),
    );
    write("carrier", "report", read("report.json"));

    // traceparent
    for (i, s) in [
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        " 00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01 ",
    ]
    .iter()
    .enumerate()
    {
        write("traceparent", &format!("w3c-{i}"), s);
    }

    // report: the vectors' trace, a recorded one, and a few of their lines.
    let vector_events = read("events.jsonl");
    write("report", "vector", &vector_events);
    write("report", "recorded", events.join("\n"));
    let lines: Vec<&str> = vector_events.lines().collect();
    write(
        "report",
        "starts-only",
        lines
            .iter()
            .step_by(2)
            .copied()
            .collect::<Vec<_>>()
            .join("\n"),
    );
    write(
        "report",
        "reversed",
        lines.iter().rev().copied().collect::<Vec<_>>().join("\n"),
    );
    write("report", "report-json", read("report.json"));

    // redis_reply: what our commands get back.
    let mut lrange = format!("*{}\r\n", events.len());
    for e in &events {
        lrange.push_str(&format!("${}\r\n{e}\r\n", e.len()));
    }
    let scan =
        "*2\r\n$1\r\n0\r\n*1\r\n$51\r\nosprofiler_opt:11111111-1111-4111-8111-111111111111\r\n";
    for (name, reply) in [
        ("lrange", lrange.as_str()),
        ("scan", scan),
        (
            "status",
            "+OK\r\n:1\r\n-ERR wrong number of arguments\r\n$-1\r\n*-1\r\n",
        ),
        ("huge-bulk", "$999999999\r\nabc"),
        ("huge-array", "*999999999\r\n*999999999\r\n:1\r\n"),
    ] {
        write("redis_reply", name, reply);
    }

    // connection_string
    for (i, s) in [
        "sqlite:///var/lib/osprofiler/traces.db",
        "redis://:s3cret@10.0.0.5:6380/2",
        "rediss://user:p%40ss@[::1]:7000/0?ssl_ca_certs=/tmp/ca.pem&ssl_cert_reqs=none",
        "redissentinel://:pw@s1:26379,s2:26380/1",
        "file:///tmp/events.jsonl",
        "otlps://[::1]:4443/v1/traces?ca_certs=/etc/ca.pem&service_name_prefix=cloud&timeout=0.5",
        "otlp+grpc://10.0.0.1",
        "jaeger://localhost?max_packet_size=1400&service_name_prefix=p",
        "redis://127.0.0.1:6379, otlp://collector:4318 jaeger://agent",
        "redis://:pa ss@h:6379",
        "mongodb://u:pw@h",
    ]
    .iter()
    .enumerate()
    {
        write("connection_string", &format!("cs-{i}"), s);
    }

    // profiler_ini
    write(
        "profiler_ini",
        "profiler",
        "[profiler]\nenabled = true\nhmac_keys = SECRET_KEY, ROTATED_KEY\nconnection_string = redis://:pw@127.0.0.1:6379\ntrace_sqlalchemy = false\nsocket_timeout = 0.5\n",
    );
    write(
        "profiler_ini",
        "exporters",
        "[DEFAULT]\ndebug = true\n\n[profiler]\nprofiler_enabled: yes\nhmac_keys = \"K1,\n  K2\"\nw3c_traceparent = on\n\n[profiler_otlp]\nservice_name_prefix = cloud\n\n[profiler_jaeger]\nprocess_tags = region:one,zone:b\n",
    );
}
