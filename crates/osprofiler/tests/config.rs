//! `[profiler]` configuration: parsing as oslo.config does, applying to the
//! runtime switches, re-reading while running, and init_with_sink.

use std::time::{Duration, Instant};

use osprofiler::config::{self, ConfigError, Ini, ProfilerConf};
use osprofiler::propagation::{TraceHeaders, accept};
use osprofiler::{HmacKey, Id, switches};

#[test]
fn parses_osprofiler_options_with_defaults() {
    let d = ProfilerConf::from_ini_str("").unwrap();
    assert!(!d.enabled);
    assert_eq!(d.hmac_keys().len(), 1); // SECRET_KEY, osprofiler's default
    assert_eq!(d.connection_string, None);
    assert!(!d.trace_sql && !d.trace_requests && !d.filter_error_trace);
    assert_eq!(d.socket_timeout, 0.1);
    assert_eq!(d.sentinel_service_name, "mymaster");

    let c = ProfilerConf::from_ini_str(
        "# nova.conf\n[DEFAULT]\ndebug = true\n\n[profiler]\nenabled: Yes\nhmac_keys = \"k1, k2 ,\"\n\
         connection_string = redis://:pw@127.0.0.1:6379/0\ntrace_sqlalchemy = on\ntrace_requests=1\n\
         filter_error_trace = TRUE\nsocket_timeout = 2.5\nsentinel_service_name = master2\nes_doc_type = notification\n\
         ; comment\n[profiler_otlp]\nservice_name_prefix = x\n",
    )
    .unwrap();
    assert!(c.enabled && c.trace_sql && c.trace_requests && c.filter_error_trace);
    assert_eq!(c.hmac_keys().len(), 2);
    assert_eq!(
        c.connection_string.as_deref(),
        Some("redis://:pw@127.0.0.1:6379/0")
    );
    assert_eq!(c.socket_timeout, 2.5);
    assert_eq!(c.sentinel_service_name, "master2");
    assert_eq!(c.other["es_doc_type"], "notification");
    // The keys are not in Debug output.
    assert!(!format!("{c:?}").contains("k1"));

    // The Rust alias, and the deprecated name of `enabled`.
    let a = ProfilerConf::from_ini_str(
        "[profiler]\ntrace_sql = true\ntrace_sqlalchemy = false\nprofiler_enabled = true\n",
    )
    .unwrap();
    assert!(a.trace_sql && a.enabled);

    // Continuation lines join with a newline, as oslo.config does.
    let ini = Ini::parse("[s]\nk = a\n  b\n").unwrap();
    assert_eq!(ini.get("s", "k"), Some("a\nb"));
}

#[test]
fn bad_configuration_gives_a_clear_error() {
    let e = ProfilerConf::from_ini_str("[profiler]\nenabled = maybe\n").unwrap_err();
    assert!(matches!(e, ConfigError::Value { .. }));
    assert_eq!(
        e.to_string(),
        "[profiler] enabled = \"maybe\": expected true/false, yes/no, on/off or 1/0"
    );
    let e = ProfilerConf::from_ini_str("enabled = true\n").unwrap_err();
    assert_eq!(e.to_string(), "line 1: option before any [section]");
    let e = ProfilerConf::from_ini_str("[profiler\n").unwrap_err();
    assert!(matches!(e, ConfigError::Syntax { line: 1, .. }));
    let e = ProfilerConf::from_ini_str("[profiler]\njust words\n").unwrap_err();
    assert_eq!(e.to_string(), "line 2: expected `name = value`");
    let e = ProfilerConf::from_file("/nonexistent/osprofiler.conf").unwrap_err();
    assert!(
        e.to_string()
            .starts_with("cannot read /nonexistent/osprofiler.conf: "),
        "{e}"
    );
}

fn signed(key: &str) -> TraceHeaders {
    let base: Id = "11111111-1111-4111-8111-111111111111".parse().unwrap();
    TraceHeaders::sign(base, base, &HmacKey::new(key).unwrap())
}

fn accepted(h: &TraceHeaders) -> bool {
    accept(Some(&h.info), Some(&h.hmac)).is_some()
}

/// One test for everything that touches the process-wide switches.
#[test]
fn runtime_switches_reload_watch_and_init_with_sink() {
    // Switched directly.
    let old = signed("OLD_KEY");
    let new = signed("NEW_KEY");
    switches::enable(osprofiler::HmacKeys::parse("OLD_KEY"));
    assert!(accepted(&old) && !accepted(&new));
    switches::set_hmac_keys(osprofiler::HmacKeys::parse("NEW_KEY,OLD_KEY"));
    assert!(accepted(&old) && accepted(&new));
    switches::disable();
    assert!(!accepted(&old) && !accepted(&new));
    assert!(accept(None, Some(&old.hmac)).is_none());

    // From a file, re-read while running.
    let dir = std::env::temp_dir().join(format!("osprofiler-conf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("service.conf");
    std::fs::write(&path, "[profiler]\nenabled = true\nhmac_keys = OLD_KEY\n").unwrap();
    config::reload(&path).unwrap();
    assert!(accepted(&old) && !accepted(&new));

    let watcher = config::watch(&path, Duration::from_millis(10)).unwrap();
    std::fs::write(
        &path,
        "[profiler]\nenabled = true\nhmac_keys = NEW_KEY\ntrace_sql = true\n",
    )
    .unwrap();
    wait_for(|| accepted(&new) && !accepted(&old));
    assert!(switches::sql_tracing());
    // Written whole (a new file renamed over the old): a watcher that read a half-written
    // file would see other settings than the broken ones this step means.
    let next = dir.join("service.conf.new");
    std::fs::write(&next, "[profiler]\nenabled = nope\n").unwrap();
    std::fs::rename(&next, &path).unwrap();
    wait_for(|| watcher.last_error().is_some());
    assert!(
        accepted(&new),
        "a broken file leaves the running settings alone"
    );
    std::fs::write(&path, "[profiler]\nenabled = false\nhmac_keys = NEW_KEY\n").unwrap();
    wait_for(|| !accepted(&new));
    assert_eq!(watcher.last_error(), None);
    drop(watcher);

    // init_with_sink wires identity, switches and the backend.
    let out = dir.join("events.jsonl");
    let _ = std::fs::remove_file(&out);
    let conf = ProfilerConf::from_ini_str(&format!(
        "[profiler]\nenabled = true\nhmac_keys = SECRET_KEY\nconnection_string = file://{}\n",
        out.display()
    ))
    .unwrap();
    let sink = osprofiler::notifier::JsonLinesSink::open(&out).unwrap();
    let guard = config::init_with_sink(&conf, "nova", "compute", "host-c", Box::new(sink));
    assert!(switches::is_enabled());
    let ctx = osprofiler::TraceContext::new(HmacKey::new("SECRET_KEY"), None, None);
    ctx.in_scope(|| drop(osprofiler::point("driver")));
    osprofiler::notifier::flush().unwrap();
    drop(guard);
    let text = std::fs::read_to_string(&out).unwrap();
    let first = osprofiler::Event::from_json(text.lines().next().unwrap()).unwrap();
    assert_eq!(first.project.as_deref(), Some("nova"));
    assert_eq!(first.service.as_deref(), Some("compute"));
    assert_eq!(first.host(), Some("host-c"));

    let _ = std::fs::remove_dir_all(&dir);
}

fn wait_for(cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "condition not reached within 10 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}
