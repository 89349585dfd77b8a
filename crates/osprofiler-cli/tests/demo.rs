//! `osprofiler demo`, the real binary: the trace it leaves in each kind of store, as our
//! store reads it and as Python osprofiler 4.4.0's CLI shows it; `--serve`; its errors.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use osprofiler_report::{Node, Report};
use osprofiler_store::{ConnectionString, Options};
use osprofiler_testkit::{Chromium, Oracle, RedisServer, TempDir, free_port, need, workspace_root};
use serde_json::Value;

const KEY: &str = "SECRET_KEY";

/// `osprofiler demo` with its data directory (the embedded store), working directory and
/// scratch directory (`TMPDIR`: the services' database and disks) in `dir`.
fn demo(dir: &TempDir) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_osprofiler"));
    cmd.arg("demo")
        .current_dir(dir.path())
        .env("XDG_DATA_HOME", dir.join("data"))
        .env("TMPDIR", dir.path())
        .env_remove("OSPROFILER_CONNECTION_STRING");
    cmd
}

/// The demo's scratch directories left in `dir` (it removes its own when it ends).
fn scratch_dirs(dir: &TempDir) -> usize {
    std::fs::read_dir(dir.path())
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .starts_with("osprofiler-demo-")
                })
                .count()
        })
        .unwrap_or(0)
}

/// Runs the demo to its end; returns its output and the trace id it printed.
fn run_demo(dir: &TempDir, args: &[&str]) -> (String, String) {
    let started = Instant::now();
    let o = demo(dir).args(args).output().expect("run osprofiler demo");
    let took = started.elapsed();
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "demo failed: {}\n{out}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(took < Duration::from_secs(20), "the demo took {took:?}");
    let base = out
        .lines()
        .find_map(|l| l.strip_prefix("Trace ID: "))
        .unwrap_or_else(|| panic!("no Trace ID in {out}"))
        .to_owned();
    (out, base)
}

fn open(cs: &str) -> Box<dyn osprofiler_store::TraceStore> {
    let cs: ConnectionString = cs.parse().unwrap();
    osprofiler_store::open(&cs, &Options::default()).unwrap()
}

/// What a point did, in a few words, with the trace's generated ids replaced.
fn what(n: &Node, server: &str) -> String {
    let info = &n.start_payload().expect("start event")["info"];
    if let Some(sql) = info["db"]["statement"].as_str() {
        return sql.split_whitespace().take(3).collect::<Vec<_>>().join(" ");
    }
    if let Some(f) = n.function_name() {
        let parts: Vec<&str> = f.rsplit("::").take(2).collect();
        return match parts.as_slice() {
            [method, ty] if ty.starts_with(char::is_uppercase) => format!("{ty}::{method}"),
            [name, ..] => (*name).to_owned(),
            [] => String::new(),
        };
    }
    let r = if info["request"].is_object() {
        &info["request"]
    } else {
        &info["requests"]
    };
    format!(
        "{} {}",
        r["method"].as_str().unwrap_or("?"),
        r["path"]
            .as_str()
            .unwrap_or("?")
            .replace(server, "<server>")
    )
}

/// The tree as `service:name what [error]` lines, indented by depth.
fn shape(report: &Report, server: &str) -> Vec<String> {
    report
        .iter()
        .map(|(depth, n)| {
            let error = n
                .exception()
                .map(|e| format!(" !{}", e.rsplit("::").next().unwrap_or(e)))
                .unwrap_or_default();
            format!(
                "{}{}:{} {}{error}",
                "  ".repeat(depth - 1),
                n.service().unwrap_or("?"),
                n.name(),
                what(n, server)
            )
        })
        .collect()
}

/// The one trace a boot gives: every service, every default category, the failed
/// scheduling attempt and its retry.
const EXPECTED: &str = "\
api:wsgi POST /v2.1/servers
  api:db Db::instance_create
    api:db INSERT INTO instances
  api:rpc ComputeTaskApi::build_instances
    conductor:rpc nova.conductor.ComputeTask.BuildInstances
      conductor:rpc SchedulerManager::select_destinations !NoValidHost
        conductor:db Db::compute_node_get_all
          conductor:db SELECT host, vcpus,
        conductor:http GET /allocation_candidates
          placement:wsgi GET /allocation_candidates
        conductor:http PUT /allocations/<server>
          placement:wsgi PUT /allocations/<server>
      conductor:rpc SchedulerManager::select_destinations
        conductor:db Db::compute_node_get_all
          conductor:db SELECT host, vcpus,
        conductor:http GET /allocation_candidates
          placement:wsgi GET /allocation_candidates
        conductor:http PUT /allocations/<server>
          placement:wsgi PUT /allocations/<server>
      conductor:db Db::instance_update
        conductor:db UPDATE instances SET
      conductor:rpc ComputeApi::build_and_run_instance
        compute:rpc nova.compute.Compute.BuildAndRunInstance
          compute:db Db::instance_update
            compute:db UPDATE instances SET
          compute:driver LocalDiskDriver::spawn
            compute:driver LocalDiskDriver::create_image
            compute:driver LocalDiskDriver::define_domain
          compute:db Db::instance_update
            compute:db UPDATE instances SET";

/// Checks the demo's trace of booting server `name` as stored: one base id, the services with their hosts, every
/// default category, each point under its caller across services, the error.
fn check_trace(report: &Report, base: &str, name: &str) {
    assert_eq!(report.skipped(), 0);
    assert_eq!(report.roots().len(), 1, "one tree: {report:#?}");
    let root = &report.roots()[0];
    assert_eq!(root.parent_id(), Some(base), "the trace starts at the API");
    // The server's id, from the arguments of the DB API call that stored it.
    let server = report
        .iter()
        .find(|(_, n)| {
            n.function_name()
                .is_some_and(|f| f.ends_with("Db::instance_create"))
        })
        .and_then(|(_, n)| {
            let args = n.start_payload()?["info"]["function"]["args"].as_str()?;
            Some(args.split('"').nth(1)?.to_owned())
        })
        .expect("Db::instance_create with its arguments");
    assert_eq!(shape(report, &server).join("\n"), EXPECTED);

    // SQL statement points carry the statement and the values bound to it.
    let insert = report
        .iter()
        .find_map(|(_, n)| {
            let db = &n.start_payload()?["info"]["db"];
            db["statement"]
                .as_str()?
                .starts_with("INSERT INTO instances")
                .then(|| db.clone())
        })
        .expect("the INSERT statement's point");
    assert_eq!(insert["params"], serde_json::json!([server, name]));

    // Every point of this trace, each under the point that called it.
    fn links(n: &Node, base: &str) {
        let start = n.start_payload().expect("start");
        assert_eq!(start["base_id"], base);
        assert!(n.stop_payload().is_some(), "stopped: {n:?}");
        for c in n.children() {
            assert_eq!(c.parent_id(), Some(n.trace_id()));
            links(c, base);
        }
    }
    links(root, base);

    let hosts: Vec<(String, String)> = report
        .iter()
        .map(|(_, n)| {
            (
                n.service().unwrap_or("").to_owned(),
                n.host().unwrap_or("").to_owned(),
            )
        })
        .collect();
    for (service, host) in [
        ("api", "api-1"),
        ("conductor", "ctl-1"),
        ("compute", "cmp-1"),
        ("placement", "plc-1"),
    ] {
        assert!(
            hosts.contains(&(service.to_owned(), host.to_owned())),
            "{service} on {host}: {hosts:?}"
        );
        assert!(
            hosts.iter().all(|(s, h)| s != service || h == host),
            "{hosts:?}"
        );
    }
    let mut categories: Vec<&str> = report
        .by_category()
        .iter()
        .map(|u| u.name.as_str())
        .collect();
    categories.sort_unstable();
    assert_eq!(categories, ["db", "driver", "http", "rpc", "wsgi"]);

    let errors = report.errors();
    assert_eq!(errors.len(), 1);
    let stop = errors[0].stop_payload().unwrap();
    assert!(
        stop["info"]["message"]
            .as_str()
            .unwrap()
            .starts_with("No valid host was found."),
        "{stop}"
    );
    let attempt = errors[0].start_payload().unwrap()["info"]["function"]["args"].clone();
    assert!(attempt.as_str().unwrap().ends_with(", 1)"), "{attempt}");
}

#[test]
fn demo_on_the_embedded_store() {
    let dir = TempDir::new();
    let (out, base) = run_demo(&dir, &["--out", "report.html"]);
    let db = dir.join("data/osprofiler/traces.db");
    assert!(out.contains(&format!("sqlite://{}", db.display())), "{out}");
    assert!(out.contains(&format!(
        "osprofiler trace show --html {base} --out report.html\n"
    )));
    for status in [
        "202 Accepted: server ",
        "unsigned-vm                      # not profiled\n202 Accepted\n",
        "forged-vm  # a key the services lack\n202 Accepted\n",
        "200 OK: demo-vm ACTIVE, unsigned-vm ACTIVE, forged-vm ACTIVE\n",
    ] {
        assert!(out.contains(status), "{status:?} in {out}");
    }
    for line in ["points  own time  share", "Slowest points", "Error at "] {
        assert!(out.contains(line), "{line:?} in {out}");
    }

    let mut store = open(&format!("sqlite://{}", db.display()));
    // A new store: the profiled request's trace is its only one.
    let traces = store.list_traces(None).unwrap();
    assert_eq!(traces.len(), 1, "{traces:?}");
    assert_eq!(traces[0].base_id, base);
    check_trace(&store.report(&base).unwrap().unwrap(), &base, "demo-vm");

    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>") && html.contains(&base));
    assert_eq!(scratch_dirs(&dir), 0, "the services' files are removed");
}

#[test]
fn demo_on_redis() {
    let Some(redis) = need("redis-server", RedisServer::start()) else {
        return;
    };
    let dir = TempDir::new();
    let url = redis.url();
    let (out, base) = run_demo(&dir, &["--connection-string", &url]);
    assert!(out.contains(&format!(
        "osprofiler trace show --html {base} --out osprofiler-demo.html --connection-string {url}\n"
    )));
    assert!(
        dir.join("osprofiler-demo.html").is_file(),
        "--out's default"
    );
    // The server held nothing before: one trace, with its error indexed.
    let keys = |pattern: &str| {
        redis
            .cmd(&["KEYS", pattern])
            .unwrap()
            .into_strings()
            .unwrap()
    };
    assert_eq!(keys("osprofiler_opt:*"), [format!("osprofiler_opt:{base}")]);
    assert_eq!(
        keys("osprofiler_error:*"),
        [format!("osprofiler_error:{base}")]
    );
    check_trace(
        &open(&url).report(&base).unwrap().unwrap(),
        &base,
        "demo-vm",
    );
}

#[test]
fn python_cli_shows_the_demo_trace() {
    let Some(redis) = need("redis-server", RedisServer::start()) else {
        return;
    };
    let Some(py) = need("python osprofiler oracle", Oracle::locate()) else {
        return;
    };
    let dir = TempDir::new();
    let url = redis.url();
    let (_, base) = run_demo(&dir, &["--connection-string", &url]);
    let theirs: Value = py.show_json(&base, &url).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_osprofiler"))
        .args([
            "trace",
            "show",
            &base,
            "--json",
            "--connection-string",
            &url,
        ])
        .output()
        .unwrap();
    assert!(o.status.success());
    let mut ours: Value = serde_json::from_slice(&o.stdout).unwrap();
    let mut theirs = theirs;
    by_exact_start(&mut ours);
    by_exact_start(&mut theirs);
    assert_eq!(ours, theirs, "the same tree, times, stats and exceptions");
    assert_eq!(theirs["stats"]["driver"]["count"], 3);
    assert_eq!(theirs["children"].as_array().unwrap().len(), 1);
}

/// Checks that every children list is sorted by `started` (osprofiler's integer
/// milliseconds), then orders siblings that start in the same millisecond by their exact
/// start. Python leaves those in the order their events arrived; osprofiler-report orders
/// them by exact start, so that the order of arrival never matters (its documented
/// difference). The demo's points often start less than a millisecond apart.
fn by_exact_start(node: &mut Value) {
    let Some(children) = node["children"].as_array_mut() else {
        return;
    };
    let started = |c: &Value| c["info"]["started"].as_i64().unwrap_or(-1);
    assert!(
        children
            .windows(2)
            .all(|w| started(&w[0]) <= started(&w[1])),
        "children sorted by start"
    );
    let exact = |c: &Value| {
        let name = c["info"]["name"].as_str().unwrap_or("");
        c["info"][format!("meta.raw_payload.{name}-start")]["timestamp"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    };
    children.sort_by_key(|c| (started(c), exact(c)));
    for c in children {
        by_exact_start(c);
    }
}

/// Kills the `--serve` process when the test ends, however it ends.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Sends one HTTP/1.1 request and returns the whole response.
fn http(addr: &str, head: &str, body: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("connect to the api");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "{head}\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read the answer");
    out
}

#[test]
fn demo_serve_traces_signed_requests() {
    let dir = TempDir::new();
    let events = dir.join("events.jsonl");
    let cs = format!("file://{}", events.display());
    let listen = format!("127.0.0.1:{}", free_port());
    let child = demo(&dir)
        .args(["--serve", "--listen", &listen, "--connection-string", &cs])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start osprofiler demo --serve");
    let mut child = Reaped(child);
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // The address line, then the command to paste.
    let curl = format!(
        "curl -H @<(osprofiler trace headers --hmac-key {KEY}) -X POST http://{listen}/v2.1/servers"
    );
    let mut printed = Vec::new();
    while !printed.iter().any(|l: &String| l.contains(&curl)) {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("no {curl:?} in {printed:#?}"));
        printed.push(line);
    }
    assert!(
        printed.contains(&format!("api: http://{listen}")),
        "{printed:#?}"
    );
    let addr = listen;
    // What the printed curl command does.
    let o = Command::new(env!("CARGO_BIN_EXE_osprofiler"))
        .args(["trace", "headers", "--hmac-key", KEY])
        .output()
        .unwrap();
    assert!(o.status.success());
    let headers = String::from_utf8(o.stdout).unwrap();
    let base = String::from_utf8(o.stderr)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Trace ID: ").map(str::to_owned))
        .expect("trace id on stderr");
    let answer = http(
        &addr,
        &format!(
            "POST /v2.1/servers HTTP/1.1\r\n{}",
            headers.trim_end().replace('\n', "\r\n")
        ),
        r#"{"server":{"name":"vm"}}"#,
    );
    assert!(answer.starts_with("HTTP/1.1 202 "), "{answer}");
    let answer = http(&addr, "GET /v2.1/servers HTTP/1.1", "");
    assert!(
        answer.contains(r#""name":"vm","status":"ACTIVE""#),
        "{answer}"
    );

    // The trace reaches the store while the services run.
    let deadline = Instant::now() + Duration::from_secs(20);
    let report = loop {
        let report = open(&cs).report(&base).unwrap();
        if let Some(r) =
            report.filter(|r| r.len() == 30 && r.iter().all(|(_, n)| n.stop_payload().is_some()))
        {
            break r;
        }
        assert!(Instant::now() < deadline, "trace {base} not stored in time");
        std::thread::sleep(Duration::from_millis(100));
    };
    check_trace(&report, &base, "vm");
    // The unsigned listing added nothing.
    assert_eq!(open(&cs).list_traces(None).unwrap().len(), 1);

    // Ctrl-C: the services stop, the demo cleans up and exits 0.
    assert_eq!(scratch_dirs(&dir), 1);
    let pid = child.0.id().to_string();
    let sent = Command::new("kill").args(["-INT", &pid]).status();
    assert!(
        sent.as_ref().is_ok_and(|s| s.success()),
        "kill -INT {pid}: {sent:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "still running after Ctrl-C");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
    // The reader thread ends at the end of the output: the process has exited.
    let rest: Vec<String> = rx.iter().collect();
    assert_eq!(rest.last().map(String::as_str), Some("stopped"), "{rest:?}");
    assert_eq!(scratch_dirs(&dir), 0, "the services' files are removed");
}

/// Fails unless the demo failed with exactly one line on stderr, and no panic.
fn one_line_error(o: &Output) -> String {
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let e = String::from_utf8_lossy(&o.stderr).trim_end().to_owned();
    assert_eq!(e.lines().count(), 1, "one line expected: {e:?}");
    assert!(!e.contains("panicked"), "{e}");
    assert!(e.starts_with("osprofiler: error: "), "{e}");
    e
}

#[test]
fn demo_errors_are_one_line() {
    let dir = TempDir::new();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = busy.local_addr().unwrap().to_string();
    let e = one_line_error(
        &demo(&dir)
            .args(["--serve", "--listen", &busy])
            .output()
            .unwrap(),
    );
    assert!(e.contains(&format!("cannot listen on {busy}")), "{e}");

    let e = one_line_error(
        &demo(&dir)
            .args(["--connection-string", "nope://x"])
            .output()
            .unwrap(),
    );
    assert!(e.contains("unsupported backend \"nope\""), "{e}");

    let closed = format!("redis://127.0.0.1:{}", free_port());
    let e = one_line_error(
        &demo(&dir)
            .args(["--connection-string", &closed])
            .output()
            .unwrap(),
    );
    assert!(e.contains("cannot open redis://127.0.0.1:"), "{e}");

    let e = one_line_error(&demo(&dir).args(["--hmac-key", ""]).output().unwrap());
    assert_eq!(e, "osprofiler: error: the HMAC key must not be empty");
    // Nothing was left behind by the failed runs.
    assert!(!dir.join("osprofiler-demo.html").exists());
}

/// A picture of the demo's HTML report, every row shown and the failed scheduling
/// attempt selected: `docs/demo.png` (the README's) when `OSPROFILER_WRITE_SCREENSHOT=1`,
/// else a temporary file.
#[test]
fn demo_screenshot() {
    let Some(chromium) = need("chromium", Chromium::locate()) else {
        return;
    };
    let dir = TempDir::new();
    let (_, base) = run_demo(&dir, &["--out", "report.html"]);
    let report = open(&format!(
        "sqlite://{}",
        dir.join("data/osprofiler/traces.db").display()
    ))
    .report(&base)
    .unwrap()
    .unwrap();
    let error = report.errors()[0].trace_id().to_owned();
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    let at = html.rfind("</body>").unwrap();
    let page = dir.join("shot.html");
    std::fs::write(
        &page,
        format!(
            "{}<script>window.osprofilerReport.expandAll();\
             window.osprofilerReport.select('{error}');</script>{}",
            &html[..at],
            &html[at..]
        ),
    )
    .unwrap();
    let out = if std::env::var("OSPROFILER_WRITE_SCREENSHOT").is_ok_and(|v| v == "1") {
        workspace_root().unwrap().join("docs/demo.png")
    } else {
        dir.join("demo.png")
    };
    if let Some(docs) = out.parent() {
        std::fs::create_dir_all(docs).unwrap();
    }
    chromium.screenshot(&page, &out, 1400, 960).unwrap();
    let png = std::fs::read(&out).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
    assert!(Path::new(&out).is_file());
}
