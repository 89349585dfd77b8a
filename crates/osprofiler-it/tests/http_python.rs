//! HTTP both ways with the real Python osprofiler 4.4.0, on a real Redis that
//! both sides' notifiers write to:
//!
//! (a) a Python client signs its call with `web.get_trace_id_headers()` inside
//!     a `profiler.Trace` and calls our axum server: our `wsgi` point is the
//!     child of its point;
//! (b) our reqwest client calls a Python WSGI app wrapped in
//!     `osprofiler.web.WsgiMiddleware`: its `wsgi` point is the child of ours.
//!
//! Each time the trace is one tree, and our store's report and Python's
//! `osprofiler trace show --json` show the same.

mod http_support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::Duration;

use http_support::{KEY, app, runtime, serve};
use osprofiler::integrations::reqwest::HttpClientMiddleware;
use osprofiler::integrations::tower::HttpServerLayer;
use osprofiler::notifier;
use osprofiler::{HmacKey, HmacKeys, Identity, TraceContext, switches};
use osprofiler_store::{Options, open, sink};
use osprofiler_testkit::{Oracle, RedisServer, free_port, need};
use serde_json::Value;

/// A Python service calling ours: argv = redis url, our url.
const PYTHON_CLIENT: &str = r#"
import json, sys, urllib.request
from oslo_config import cfg
from osprofiler import opts, profiler, notifier, web
from osprofiler.drivers import base
opts.set_defaults(cfg.CONF); cfg.CONF([])
drv = base.get_driver(sys.argv[1], project="demo", service="pyclient", host="p1", conf=cfg.CONF)
notifier.set(drv.notify)
profiler.init("SECRET_KEY")
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
with profiler.Trace("compute_call", info={"function": {"name": "pyclient.list_servers"}}):
    point = profiler.get().get_id()
    req = urllib.request.Request(sys.argv[2], headers=web.get_trace_id_headers())
    body = opener.open(req).read().decode()
print(json.dumps({"base_id": profiler.get().get_base_id(), "point": point, "body": body}))
"#;

/// A Python WSGI service behind osprofiler's middleware: argv = redis url, port.
const PYTHON_SERVER: &str = r#"
import sys, time
from wsgiref.simple_server import make_server, WSGIRequestHandler
from oslo_config import cfg
from osprofiler import opts, profiler, notifier, web
from osprofiler.drivers import base
opts.set_defaults(cfg.CONF); cfg.CONF([])
drv = base.get_driver(sys.argv[1], project="demo", service="pyapi", host="p2", conf=cfg.CONF)
notifier.set(drv.notify)

@profiler.trace("db")
def flavor_get(name):
    time.sleep(0.002)
    return name

def app(environ, start_response):
    flavor_get("m1.small")
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"python says hi"]

class Quiet(WSGIRequestHandler):
    def log_message(self, *args):
        pass

srv = make_server("127.0.0.1", int(sys.argv[2]), web.WsgiMiddleware(app, hmac_keys="SECRET_KEY", enabled=True), handler_class=Quiet)
print("ready", flush=True)
srv.serve_forever()
"#;

/// Kills the Python server we started when the test ends, however it ends.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `(depth, service:name, trace_id, parent_id)` of each node, depth first.
fn tree(node: &Value, depth: usize, out: &mut Vec<(usize, String, String, String)>) {
    for c in node["children"].as_array().into_iter().flatten() {
        out.push((
            depth,
            format!(
                "{}:{}",
                c["info"]["service"].as_str().unwrap_or(""),
                c["info"]["name"].as_str().unwrap_or("")
            ),
            c["trace_id"].as_str().unwrap_or("").to_owned(),
            c["parent_id"].as_str().unwrap_or("").to_owned(),
        ));
        tree(c, depth + 1, out);
    }
}

/// The trace as our store's report and as Python's CLI show it; they must agree.
fn shown(py: &Oracle, url: &str, base: &str) -> Vec<(usize, String, String, String)> {
    let cs = url.parse().unwrap();
    let mut store = open(&cs, &Options::default()).unwrap();
    let ours = store.report(base).unwrap().expect("trace stored").to_json();
    let theirs: Value = py.show_json(base, url).unwrap();
    let (mut a, mut b) = (Vec::new(), Vec::new());
    tree(&ours, 0, &mut a);
    tree(&theirs, 0, &mut b);
    assert_eq!(a, b, "our report and Python's CLI show the same tree");
    assert_eq!(ours, theirs, "and the same report");
    a
}

#[test]
fn python_and_rust_services_share_one_trace_over_http() {
    let Some(redis) = need("redis-server", RedisServer::start()) else {
        return;
    };
    let Some(py) = need("python osprofiler oracle", Oracle::locate()) else {
        return;
    };
    let url = redis.url();
    let _notifier =
        notifier::set_boxed_sink(sink(&url.parse().unwrap(), &Options::default()).unwrap());
    switches::enable(HmacKeys::parse(KEY));
    switches::set_trace_requests(true);

    // (a) Python client → our server.
    let rt = runtime();
    let layer = HttpServerLayer::new().identity(Identity::new("demo", "rsapi", "r1"));
    let Some(addr) = need("axum server on loopback", serve(&rt, app().layer(layer))) else {
        return;
    };
    let out = py
        .python(
            PYTHON_CLIENT,
            &[&url, &format!("http://{addr}/v1/servers?limit=3")],
        )
        .unwrap();
    let out: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(out["body"], "4 servers");
    let base = out["base_id"].as_str().unwrap();
    notifier::flush().unwrap();
    let t = shown(&py, &url, base);
    let shape: Vec<(usize, &str)> = t.iter().map(|(d, n, _, _)| (*d, n.as_str())).collect();
    assert_eq!(
        shape,
        [
            (0, "pyclient:compute_call"),
            (1, "rsapi:wsgi"),
            (2, "rsapi:db")
        ]
    );
    assert_eq!(t[0].2, out["point"].as_str().unwrap());
    assert_eq!(
        t[1].3, t[0].2,
        "our wsgi point is the child of Python's point"
    );

    // (b) Our client → a Python WSGI service.
    let port = free_port();
    let mut cmd = py.python_command(PYTHON_SERVER, &[&url, &port.to_string()]);
    let mut child = Reaped(
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the Python WSGI service"),
    );
    let mut ready = String::new();
    BufReader::new(child.0.stdout.take().unwrap())
        .read_line(&mut ready)
        .unwrap();
    assert_eq!(ready.trim(), "ready", "the Python WSGI service started");

    let client = reqwest_middleware::ClientBuilder::new(
        reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap(),
    )
    .with(HttpClientMiddleware::new())
    .build();
    let ctx = TraceContext::new(HmacKey::new(KEY), None, None)
        .with_identity(&Identity::new("demo", "rsclient", "r2"));
    let target = format!("http://127.0.0.1:{port}/v2.1/flavors?is_public=true");
    let body = rt.block_on(ctx.clone().instrument(osprofiler::in_point("boot", async {
        client
            .get(&target)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    })));
    assert_eq!(body, "python says hi");
    notifier::flush().unwrap();
    let base = ctx.base_id().to_string();
    let t = shown(&py, &url, &base);
    let shape: Vec<(usize, &str)> = t.iter().map(|(d, n, _, _)| (*d, n.as_str())).collect();
    assert_eq!(
        shape,
        [
            (0, "rsclient:boot"),
            (1, "rsclient:http"),
            (2, "pyapi:wsgi"),
            (3, "pyapi:db")
        ]
    );
    assert_eq!(
        t[2].3, t[1].2,
        "Python's wsgi point is the child of our http point"
    );
    drop(child);
    drop(rt);
}
