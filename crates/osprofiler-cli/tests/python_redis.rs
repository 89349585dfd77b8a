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
    let base = py.write_two_service_trace(&url).unwrap();

    let theirs: Value = py.show_json(&base, &url).unwrap();
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

    let theirs: Value = py.show_json(&base, &url).unwrap();
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
