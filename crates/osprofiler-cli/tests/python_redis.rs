//! Our `osprofiler` command and Python osprofiler 4.4.0's, on traces in a real Redis:
//! each shows the other's traces with the same tree, stats and exceptions.

use std::process::Command;
use std::time::Duration;

use osprofiler::notifier;
use osprofiler::{HmacKey, Identity, TraceContext, trace};
use osprofiler_store::{Options, sink};
use osprofiler_testkit::{Oracle, RedisServer, need};
use serde_json::Value;

fn ours(args: &[&str]) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_osprofiler"))
        .args(args)
        .output()
        .expect("run osprofiler");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

/// Two Python services (api on h1, compute on h2) write one trace: nested points, a
/// failing driver call, filter_error_trace on.
const PYTHON_WRITER: &str = r#"
import socket, sys, threading, time
from oslo_config import cfg
from osprofiler import opts, profiler, notifier
from osprofiler.drivers import base
opts.set_defaults(cfg.CONF); cfg.CONF([])
cfg.CONF.set_override("filter_error_trace", True, group="profiler")
cs = sys.argv[1]
api = base.get_driver(cs, project="nova", service="api", host="h1", conf=cfg.CONF)
compute = base.get_driver(cs, project="nova", service="compute", host="h2", conf=cfg.CONF)

@profiler.trace("db")
def quota_get(project):
    time.sleep(0.003)
    return 3

@profiler.trace("driver")
def spawn(vm):
    time.sleep(0.003)
    raise ValueError("No valid host was found")

socket.gethostname = lambda: "h1"
notifier.set(api.notify)
profiler.init("SECRET_KEY")
with profiler.Trace("wsgi", info={"request": {"path": "/v2.1/servers", "query": "", "method": "POST", "scheme": "http"}}):
    time.sleep(0.003)
    quota_get("demo")
    time.sleep(0.003)
    p = profiler.get()
    ids = (p.get_base_id(), p.get_id())
    def remote():
        notifier.set(compute.notify)
        socket.gethostname = lambda: "h2"
        profiler.init("SECRET_KEY", base_id=ids[0], parent_id=ids[1])
        with profiler.Trace("rpc", info={"function": {"name": "compute.build_and_run"}}):
            time.sleep(0.003)
            try:
                spawn("vm-1")
            except ValueError:
                pass
        profiler.clean()
        # The notifier is process-wide: give the api service its own back.
        notifier.set(api.notify)
        socket.gethostname = lambda: "h1"
    t = threading.Thread(target=remote)
    t.start()
    t.join()
    time.sleep(0.003)
print(ids[0])
"#;

fn names(node: &Value, out: &mut Vec<String>) {
    for c in node["children"].as_array().into_iter().flatten() {
        out.push(format!(
            "{}:{}:{}",
            c["info"]["service"].as_str().unwrap_or(""),
            c["info"]["name"].as_str().unwrap_or(""),
            c["info"]["exception"]
        ));
        names(c, out);
    }
}

#[test]
fn our_cli_shows_what_python_wrote() {
    let Some(redis) = need("redis-server", RedisServer::start()) else {
        return;
    };
    let Some(py) = need("python osprofiler oracle", Oracle::locate()) else {
        return;
    };
    let url = redis.url();
    let base = py.python(PYTHON_WRITER, &[&url]).unwrap().trim().to_owned();

    let theirs: Value = serde_json::from_str(
        &py.cli(&[
            "trace",
            "show",
            "--json",
            &base,
            "--connection-string",
            &url,
        ])
        .unwrap(),
    )
    .unwrap();
    let mine: Value = serde_json::from_str(&ours(&[
        "trace",
        "show",
        &base,
        "--json",
        "--connection-string",
        &url,
    ]))
    .unwrap();
    assert_eq!(mine, theirs, "same tree, times, stats and exceptions");
    let mut tree = Vec::new();
    names(&mine, &mut tree);
    assert_eq!(
        tree,
        [
            "api:wsgi:\"None\"",
            "api:db:\"None\"",
            "compute:rpc:\"None\"",
            "compute:driver:\"ValueError\""
        ]
    );
    assert_eq!(mine["stats"]["driver"]["count"], 1);

    // Listed (Python writes no index entry: found by scanning), also as an error trace.
    assert!(ours(&["trace", "list", "--connection-string", &url]).contains(&base));
    assert!(
        ours(&[
            "trace",
            "list",
            "--error-trace",
            "1",
            "--connection-string",
            &url
        ])
        .contains(&base)
    );
    // And the HTML and DOT views render it.
    assert!(
        ours(&[
            "trace",
            "show",
            &base,
            "--html",
            "--connection-string",
            &url
        ])
        .contains(&base)
    );
    assert!(
        ours(&["trace", "show", &base, "--dot", "--connection-string", &url])
            .contains("compute:driver")
    );
}

#[derive(Debug)]
pub struct NoValidHost;

impl std::fmt::Display for NoValidHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("No valid host was found")
    }
}

#[trace(name = "db")]
fn quota_get(project: &str) -> u32 {
    std::thread::sleep(Duration::from_millis(3));
    project.len() as u32
}

#[trace(name = "driver", hide_args)]
fn spawn(vm: &str) -> Result<(), NoValidHost> {
    std::thread::sleep(Duration::from_millis(3));
    let _ = vm;
    Err(NoValidHost)
}

#[test]
fn python_cli_shows_what_we_wrote() {
    let Some(redis) = need("redis-server", RedisServer::start()) else {
        return;
    };
    let Some(py) = need("python osprofiler oracle", Oracle::locate()) else {
        return;
    };
    let url = redis.url();
    let opts = Options {
        filter_error_trace: true,
        ..Options::default()
    };
    let guard = notifier::set_boxed_sink(sink(&url.parse().unwrap(), &opts).unwrap());
    let key = HmacKey::new("SECRET_KEY");
    let api = TraceContext::new(key, None, None).with_identity(&Identity::new("nova", "api", "h1"));
    api.in_scope(|| {
        let _w = osprofiler::point_with("wsgi", serde_json::json!({"request": {"path": "/v2.1/servers", "query": "", "method": "POST", "scheme": "http"}}));
        std::thread::sleep(Duration::from_millis(3));
        quota_get("demo");
        std::thread::sleep(Duration::from_millis(3));
        let here = osprofiler::get().unwrap().with_identity(&Identity::new("nova", "compute", "h2"));
        std::thread::spawn(move || {
            let _in = here.enter();
            let _r = osprofiler::point_with("rpc", serde_json::json!({"function": {"name": "compute.build_and_run"}}));
            std::thread::sleep(Duration::from_millis(3));
            let _ = spawn("vm-1");
        })
        .join()
        .unwrap();
        std::thread::sleep(Duration::from_millis(3));
    });
    notifier::flush().unwrap();
    drop(guard);
    let base = api.base_id().to_string();

    let theirs: Value = serde_json::from_str(
        &py.cli(&[
            "trace",
            "show",
            "--json",
            &base,
            "--connection-string",
            &url,
        ])
        .unwrap(),
    )
    .unwrap();
    let mine: Value = serde_json::from_str(&ours(&[
        "trace",
        "show",
        &base,
        "--connection-string",
        &url,
    ]))
    .unwrap();
    assert_eq!(theirs, mine, "Python shows our trace as we do");
    let mut tree = Vec::new();
    names(&theirs, &mut tree);
    assert_eq!(
        tree,
        [
            "api:wsgi:\"None\"",
            "api:db:\"None\"",
            "compute:rpc:\"None\"",
            "compute:driver:\"python_redis::NoValidHost\""
        ]
    );
    assert!(
        py.cli(&["trace", "list", "--connection-string", &url])
            .unwrap()
            .contains(&base)
    );
    assert!(
        py.cli(&[
            "trace",
            "list",
            "--error-trace",
            "1",
            "--connection-string",
            &url
        ])
        .unwrap()
        .contains(&base)
    );
}
