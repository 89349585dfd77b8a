//! `osprofiler ui` over real HTTP: the token on every request, the JSON API, the pages.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use osprofiler::{Event, EventInfo, EventKind, Id, Timestamp};
use osprofiler_testkit::TempDir;
use serde_json::{Value, json};

const TOKEN: &str = "s3cret-token-for-tests";

/// The server, killed when dropped.
struct Server(Child, String);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(cs: &str, extra: &[&str]) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_osprofiler"))
        .args(["ui", "--listen", "127.0.0.1:0", "--connection-string", cs])
        .args(extra)
        .env_remove("OSPROFILER_UI_TOKEN")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(!line.contains(TOKEN), "the token is printed: {line}");
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_owned();
    Server(child, addr)
}

/// `GET path` with extra header lines; (status, headers, body).
fn get(addr: &str, path: &str, headers: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{headers}\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head.to_ascii_lowercase(), body.to_owned())
}

fn store_with_two_traces(dir: &TempDir) -> String {
    let cs = format!("sqlite://{}", dir.join("t.db").display());
    let ev = |base: u128, kind, us: i64| {
        let Value::Object(mut m) =
            json!({"host": "h", "request": {"method": "GET", "path": "/v2.1/servers"}})
        else {
            unreachable!()
        };
        m.remove("request")
            .filter(|_| matches!(kind, EventKind::Start))
            .map(|r| m.insert("request".into(), r));
        Event {
            name: "wsgi".into(),
            kind,
            base_id: Id(base),
            trace_id: Id(base + 1),
            parent_id: Id(base),
            timestamp: Timestamp(us),
            info: EventInfo::from(m),
            project: Some(Arc::from("nova")),
            service: Some(Arc::from("api")),
        }
    };
    let t0 = 1_790_000_000_000_000;
    let events = vec![
        ev(1 << 64, EventKind::Start, t0),
        ev(1 << 64, EventKind::Stop, t0 + 1000),
        ev(2 << 64, EventKind::Start, t0 + 5000),
        ev(2 << 64, EventKind::Stop, t0 + 9000),
    ];
    let mut sink = osprofiler_store::sink(&cs.parse().unwrap(), &Default::default()).unwrap();
    sink.write(&events).unwrap();
    cs
}

#[test]
fn non_loopback_needs_a_token_or_no_auth() {
    let o = Command::new(env!("CARGO_BIN_EXE_osprofiler"))
        .args([
            "ui",
            "--listen",
            "0.0.0.0:0",
            "--connection-string",
            "file:///nonexistent.jsonl",
        ])
        .env_remove("OSPROFILER_UI_TOKEN")
        .output()
        .unwrap();
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("not a loopback address") && e.trim_end().lines().count() == 1,
        "{e}"
    );
}

#[test]
fn token_guards_every_request_and_api_answers() {
    let dir = TempDir::new();
    let cs = store_with_two_traces(&dir);
    let server = serve(&cs, &["--token", TOKEN]);
    let a = &server.1;
    let one = Id(1 << 64).to_string();
    let two = Id(2 << 64).to_string();
    let bearer = format!("Authorization: Bearer {TOKEN}\r\n");
    for path in [
        "/",
        "/ui.js",
        "/api/traces",
        &format!("/api/traces/{one}/json"),
        &format!("/trace/{one}"),
        &format!("/api/compare/{one}/{two}"),
        &format!("/compare/{one}/{two}"),
        "/compare.js",
    ] {
        for h in [
            "",
            "Authorization: Bearer wrong\r\n",
            "Cookie: osprofiler_ui=wrong\r\n",
        ] {
            let (status, _, body) = get(a, path, h);
            assert_eq!(status, 401, "{path} {h}");
            assert!(!body.contains(&one) && !body.contains("wsgi"), "{body}");
        }
        let (status, _, _) = get(a, &format!("{path}?token=wrong"), "");
        assert_eq!(status, 401, "{path}?token=wrong");
    }
    // The list, newest first, with summaries.
    let (status, head, body) = get(a, "/api/traces", &bearer);
    assert_eq!(status, 200, "{body}");
    assert!(head.contains("content-type: application/json"), "{head}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["traces"][0]["base_id"], json!(two));
    assert_eq!(v["traces"][1]["base_id"], json!(one));
    assert_eq!(v["traces"][0]["duration_ms"], json!(4.0));
    assert_eq!(
        v["traces"][0]["root"]["label"],
        json!("api · wsgi · GET /v2.1/servers")
    );
    assert_eq!(v["more"], json!(false));
    // Filters and paging.
    let (_, _, body) = get(a, "/api/traces?min_duration=2ms", &bearer);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["traces"].as_array().unwrap().len(), 1, "{v}");
    let (_, _, body) = get(a, "/api/traces?limit=1", &bearer);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (v["traces"].as_array().unwrap().len(), &v["more"]),
        (1, &json!(true))
    );
    let (status, _, body) = get(a, "/api/traces?min_duration=soon", &bearer);
    assert_eq!(status, 400, "{body}");
    // ?token= sets the cookie; the cookie is enough afterwards.
    let (status, head, _) = get(a, &format!("/?token={TOKEN}"), "");
    assert_eq!(status, 303);
    assert!(
        head.contains("set-cookie: osprofiler_ui=")
            && head.contains("httponly")
            && head.contains("samesite=strict"),
        "{head}"
    );
    // The cookie holds a digest of the token, not the token.
    let cookie = head
        .split("set-cookie: osprofiler_ui=")
        .nth(1)
        .and_then(|c| c.split(';').next())
        .unwrap_or_default()
        .to_owned();
    assert!(!cookie.is_empty() && !cookie.contains(TOKEN), "{head}");
    let (status, head, body) = get(a, "/", &format!("Cookie: osprofiler_ui={cookie}\r\n"));
    assert_eq!(status, 200);
    assert!(
        head.contains("content-security-policy: default-src 'none'; script-src 'self'"),
        "{head}"
    );
    assert!(body.contains("<script src=\"/ui.js\""), "{body}");
    // The report and its downloads.
    let (status, _, body) = get(a, &format!("/trace/{one}"), &bearer);
    assert_eq!(status, 200);
    assert!(body.contains(&one) && body.to_ascii_lowercase().starts_with("<!doctype html>"));
    // With links to its downloads, once each.
    for f in ["html", "json", "dot"] {
        let href = format!("<a href=\"/api/traces/{one}/{f}\" download>");
        assert_eq!(body.matches(&href).count(), 1, "{href} in {body}");
    }
    let (status, head, body) = get(a, &format!("/api/traces/{one}/json"), &bearer);
    assert_eq!(status, 200);
    assert!(
        head.contains(&format!("attachment; filename=\"{one}.json\"")),
        "{head}"
    );
    let report: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(report["info"]["name"], json!("total"));
    let (status, _, body) = get(a, &format!("/api/traces/{one}/dot"), &bearer);
    assert_eq!(status, 200);
    assert!(body.starts_with("digraph"), "{body}");
    let missing = Id(9 << 64).to_string();
    assert_eq!(get(a, &format!("/trace/{missing}"), &bearer).0, 404);
    assert_eq!(get(a, "/trace/not-an-id", &bearer).0, 400);
    // Compare: the two one-point traces match (same service, category and request).
    let (status, head, body) = get(a, &format!("/api/compare/{one}/{two}"), &bearer);
    assert_eq!(status, 200, "{body}");
    assert!(head.contains("content-type: application/json"), "{head}");
    let c: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (&c["matched"], &c["only_a"], &c["only_b"]),
        (&json!(1), &json!(0), &json!(0)),
        "{c:#}"
    );
    assert_eq!(c["rows"][0]["diff_us"], json!(3000), "{c:#}");
    assert_eq!(c["rows"][0]["name"], json!("GET /v2.1/servers"));
    assert_eq!(c["a"]["base_id"], json!(one));
    assert_eq!(c["biggest"], json!([0]));
    assert_eq!(
        get(a, &format!("/api/compare/{one}/{missing}"), &bearer).0,
        404
    );
    assert_eq!(get(a, &format!("/api/compare/{one}/nope"), &bearer).0, 400);
    // The page is static (it asks the API), under the search page's CSP.
    let (status, head, body) = get(a, &format!("/compare/{one}/{two}"), &bearer);
    assert_eq!(status, 200);
    assert!(
        head.contains("content-security-policy: default-src 'none'"),
        "{head}"
    );
    assert!(body.contains("<script src=\"/compare.js\""), "{body}");
    // The form's address leads to the page; anything but two ids is refused.
    let (status, head, _) = get(a, &format!("/compare?a={one}&b=+{two}+"), &bearer);
    assert_eq!(status, 303);
    assert!(
        head.contains(&format!("location: /compare/{one}/{two}")),
        "{head}"
    );
    assert_eq!(get(a, &format!("/compare?a={one}&b=x"), &bearer).0, 400);
    assert_eq!(get(a, &format!("/compare?a={one}"), &bearer).0, 400);
}

/// The search page in headless Chromium: it lists the traces with their summaries, a
/// filter narrows the list, and a trace with markup in every field runs no script.
#[test]
fn search_page_in_chromium() {
    let Some(chromium) =
        osprofiler_testkit::need("chromium", osprofiler_testkit::Chromium::locate())
    else {
        return;
    };
    let dir = TempDir::new();
    let cs = store_with_two_traces(&dir);
    // A third trace, markup in every field it has.
    let evil =
        "<img src=x onerror=\"document.title='pwned'\"><script>document.title='pwned'</script>";
    let ev = |kind, us: i64| {
        // The stop says the point failed, with markup in its error too.
        let info = match kind {
            EventKind::Start => json!({"host": evil, "request": {"method": evil, "path": evil}}),
            EventKind::Stop => json!({"host": evil, "etype": evil, "message": evil}),
        };
        let Value::Object(m) = info else {
            unreachable!()
        };
        Event {
            name: "x<b>y</b>".into(),
            kind,
            base_id: Id(3 << 64),
            trace_id: Id((3 << 64) + 1),
            parent_id: Id(3 << 64),
            timestamp: Timestamp(us),
            info: EventInfo::from(m),
            project: Some(Arc::from(evil)),
            service: Some(Arc::from(evil)),
        }
    };
    let t0 = 1_790_000_000_000_000;
    let mut sink = osprofiler_store::sink(&cs.parse().unwrap(), &Default::default()).unwrap();
    sink.write(&[
        ev(EventKind::Start, t0 + 20_000),
        ev(EventKind::Stop, t0 + 30_000),
    ])
    .unwrap();
    drop(sink);
    let server = serve(&cs, &[]);
    let dump = |query: &str| {
        chromium
            .run(&[
                "--virtual-time-budget=10000".to_string(),
                "--dump-dom".to_string(),
                format!("http://{}/{query}", server.1),
            ])
            .expect("chromium dumps the page")
    };
    let rows = |dom: &str| {
        dom.matches("<tr data-base-id=").count()
            + dom.matches("<tr class=\"error\" data-base-id=").count()
    };
    let dom = dump("");
    assert_eq!(rows(&dom), 3, "{dom}");
    let one = Id(1 << 64).to_string();
    let two = Id(2 << 64).to_string();
    assert!(
        dom.contains(&format!("data-base-id=\"{one}\"")) && dom.contains(&two),
        "{dom}"
    );
    assert!(dom.contains("api · wsgi · GET /v2.1/servers"), "{dom}");
    assert!(
        dom.contains("4.000 ms") && dom.contains("1.000 ms"),
        "{dom}"
    );
    assert!(dom.contains("Traces 1–3"), "{dom}");
    // The markup is text, and ran nothing.
    assert!(dom.contains("&lt;img src=x"), "{dom}");
    assert!(
        !dom.contains("<img")
            && !dom.contains("pwned</title>")
            && dom.contains("<title>osprofiler traces</title>"),
        "{dom}"
    );
    // A filter narrows the list, and the plot with it.
    let dom = dump("?min_duration=2ms&service=api");
    assert_eq!(rows(&dom), 1, "{dom}");
    assert!(dom.contains(&two) && !dom.contains(&one), "{dom}");
    assert_eq!(dom.matches("<circle ").count(), 1, "{dom}");
    // Each filter alone narrows the list to the traces it selects, in the page as in
    // the plot: 1 (1 ms) and 2 (4 ms) are `api` GETs, 3 (10 ms, failed) is marked up.
    let three = Id(3 << 64).to_string();
    let at = |us: i64| Timestamp(t0 + us).to_string();
    let cases: [(String, &[&String]); 9] = [
        ("service=api".into(), &[&one, &two]),
        ("name=wsgi".into(), &[&one, &two]),
        ("name=x%3Cb%3Ey%3C%2Fb%3E".into(), &[&three]),
        ("text=servers".into(), &[&one, &two]),
        ("min_duration=2ms".into(), &[&two, &three]),
        ("max_duration=2ms".into(), &[&one]),
        (format!("since={}", at(3_000)), &[&two, &three]),
        (format!("until={}", at(10_000)), &[&one, &two]),
        ("errors=1".into(), &[&three]),
    ];
    for (query, want) in cases {
        let dom = dump(&format!("?{query}"));
        assert_eq!(rows(&dom), want.len(), "{query}: {dom}");
        assert_eq!(
            dom.matches("<circle ").count(),
            want.len(),
            "{query}: {dom}"
        );
        for id in [&one, &two, &three] {
            assert_eq!(
                dom.contains(&format!("data-base-id=\"{id}\"")),
                want.contains(&id),
                "{query}: trace {id} in the list? {dom}"
            );
        }
    }
    // Compared with another trace, the marked-up one is text there too.
    let dom = dump(&format!("compare/{three}/{one}"));
    assert!(
        dom.contains("&lt;img src=x") && dom.contains("x&lt;b&gt;y&lt;/b&gt;"),
        "{dom}"
    );
    assert!(
        !dom.contains("<img")
            && !dom.contains("<b>")
            && dom.contains("<title>osprofiler: compare traces</title>"),
        "{dom}"
    );
    assert_eq!(dom.matches("data-match=\"only-a\"").count(), 2, "{dom}");
    assert_eq!(dom.matches("data-match=\"only-b\"").count(), 2, "{dom}");
}

/// `osprofiler demo` with a scratch directory of its own, on store `cs`.
fn demo(dir: &TempDir, cs: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_osprofiler"));
    cmd.arg("demo")
        .args(["--connection-string", cs])
        .current_dir(dir.path())
        .env("XDG_DATA_HOME", dir.join("data"))
        .env("TMPDIR", dir.path())
        .env_remove("OSPROFILER_CONNECTION_STRING");
    cmd
}

/// One HTTP/1.1 request with extra header lines; the whole response.
fn request(addr: &str, head: &str, headers: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    write!(
        s,
        "{head}\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n{headers}\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// `demo --serve` on `cs`: serves one signed `GET /v2.1/servers` (a trace of another
/// request than the demo's), then stops. Returns the `osprofiler ui` command it printed.
fn serve_one_listing(dir: &TempDir, cs: &str) -> String {
    let listen = format!("127.0.0.1:{}", osprofiler_testkit::free_port());
    let child = demo(dir, cs)
        .args(["--serve", "--listen", &listen])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = Server(child, listen.clone());
    let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines();
    let mut printed = Vec::new();
    let ui = loop {
        let line = lines
            .next()
            .unwrap_or_else(|| panic!("no ui command in {printed:#?}"))
            .unwrap();
        if line.trim_start().starts_with("osprofiler ui") {
            break line.trim().to_owned();
        }
        printed.push(line);
    };
    let o = Command::new(env!("CARGO_BIN_EXE_osprofiler"))
        .args(["trace", "headers", "--hmac-key", "SECRET_KEY"])
        .output()
        .unwrap();
    let headers = String::from_utf8(o.stdout).unwrap();
    let answer = request(
        &listen,
        "GET /v2.1/servers HTTP/1.1",
        &format!("{}\r\n", headers.trim_end().replace('\n', "\r\n")),
    );
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    // Ctrl-C: the demo flushes what it recorded and exits.
    let pid = child.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while child.0.try_wait().unwrap().is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "demo --serve still running"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    ui
}

/// What the page's rows and dots say: (row kinds of the compare table, dots of the plot).
fn count(dom: &str, needle: &str) -> usize {
    dom.matches(needle).count()
}

/// In headless Chromium, on a Redis shared with Python osprofiler: two demo traces, a
/// trace of another request (`demo --serve`, whose printed `ui` command is the one run),
/// and one Python wrote. The list shows all four with a dot each, the Python trace opens,
/// two demo traces match point for point, the other request's points are in one trace
/// only, and a trace written while the page is open appears without a reload.
#[test]
fn demo_and_python_traces_in_chromium() {
    let Some(chromium) =
        osprofiler_testkit::need("chromium", osprofiler_testkit::Chromium::locate())
    else {
        return;
    };
    let Some(redis) =
        osprofiler_testkit::need("redis-server", osprofiler_testkit::RedisServer::start())
    else {
        return;
    };
    let Some(py) = osprofiler_testkit::need(
        "python osprofiler oracle",
        osprofiler_testkit::Oracle::locate(),
    ) else {
        return;
    };
    let dir = TempDir::new();
    let cs = redis.url();
    let python = py.write_two_service_trace(&cs).unwrap();
    for _ in 0..2 {
        let o = demo(&dir, &cs)
            .args(["--out", "demo.html"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let ui = serve_one_listing(&dir, &cs);
    assert_eq!(ui, format!("osprofiler ui --connection-string {cs}"));
    // The printed command, on a free port.
    let args: Vec<&str> = ui.split_whitespace().skip(2).collect();
    let server = serve(args[1], &[]);
    let a = &server.1;

    let (status, _, body) = get(a, "/api/traces", "");
    assert_eq!(status, 200, "{body}");
    let list: Value = serde_json::from_str(&body).unwrap();
    let traces = list["traces"].as_array().unwrap();
    assert_eq!(traces.len(), 4, "{list:#}");
    let with_root = |label: &str| -> Vec<String> {
        traces
            .iter()
            .filter(|t| t["root"]["label"] == json!(label) && t["base_id"] != json!(python))
            .map(|t| t["base_id"].as_str().unwrap().to_owned())
            .collect()
    };
    let booted = with_root("api · wsgi · POST /v2.1/servers");
    let listed = with_root("api · wsgi · GET /v2.1/servers");
    assert_eq!((booted.len(), listed.len()), (2, 1), "{list:#}");
    assert!(traces.iter().any(|t| t["base_id"] == json!(python)));

    let dump = |path: &str| {
        chromium
            .run(&[
                "--virtual-time-budget=10000".to_string(),
                "--dump-dom".to_string(),
                format!("http://{a}{path}"),
            ])
            .expect("chromium dumps the page")
    };
    // The list: four rows, four dots, each a link to its trace.
    let dom = dump("/?refresh=0");
    for t in traces {
        let id = t["base_id"].as_str().unwrap();
        assert_eq!(
            count(&dom, &format!("data-base-id=\"{id}\"")),
            2,
            "{id}: {dom}"
        );
        assert!(
            dom.contains(&format!("<a href=\"/trace/{id}\" class=\"dot\"")),
            "{dom}"
        );
    }
    assert_eq!(count(&dom, "<circle "), 4, "{dom}");
    // Python's trace failed in its driver, the demo's in scheduling: every dot is red but
    // the listing's.
    assert_eq!(
        count(&dom, "class=\"error\"></circle>") + count(&dom, "class=\"error\"><title>"),
        3,
        "{dom}"
    );

    // The Python trace's page: the report, with its services.
    let dom = dump(&format!("/trace/{python}"));
    assert!(
        dom.contains(&python) && dom.contains("compute") && dom.contains("ValueError"),
        "{dom}"
    );
    assert!(
        dom.contains(&format!(
            "<a href=\"/api/traces/{python}/json\" download=\"\">JSON</a>"
        )),
        "{dom}"
    );

    // Two demo boots: every point matched, each with its difference.
    let dom = dump(&format!("/compare/{}/{}", booted[0], booted[1]));
    let points = traces
        .iter()
        .find(|t| t["base_id"] == json!(booted[0]))
        .and_then(|t| t["points"].as_u64())
        .unwrap() as usize;
    assert_eq!(points, 30);
    assert_eq!(
        count(&dom, "data-match=\"both\""),
        points + points.min(15),
        "{dom}"
    );
    assert_eq!(count(&dom, "data-match=\"only-"), 0, "{dom}");
    assert!(
        dom.contains(&format!(
            "{points} points matched, 0 only in A, 0 only in B"
        )),
        "{dom}"
    );
    assert!(dom.contains("api · wsgi · POST /v2.1/servers"), "{dom}");
    // A boot against a listing: nothing in common (their requests differ), each side's
    // points marked as its own.
    let dom = dump(&format!("/compare/{}/{}", booted[0], listed[0]));
    let listing: Value =
        serde_json::from_str(&get(a, &format!("/api/compare/{}/{}", booted[0], listed[0]), "").2)
            .unwrap();
    let only_b = listing["only_b"].as_u64().unwrap() as usize;
    assert!(only_b >= 1 && listing["matched"] == json!(0), "{listing:#}");
    assert!(
        count(&dom, "<tr class=\"only-a\" data-match=\"only-a\"") >= points,
        "{dom}"
    );
    assert!(
        count(&dom, "<tr class=\"only-b\" data-match=\"only-b\"") >= only_b,
        "{dom}"
    );
    assert!(dom.contains("api · wsgi · GET /v2.1/servers"), "{dom}");

    // Live: traces written while the page is open (polled every second of its virtual
    // time, which runs on whenever the page waits for nothing but timers) appear in it.
    let writing = std::sync::atomic::AtomicBool::new(true);
    let t0 = 1_790_000_000_000_000;
    let dom = std::thread::scope(|s| {
        s.spawn(|| {
            let mut sink =
                osprofiler_store::sink(&cs.parse().unwrap(), &Default::default()).unwrap();
            // Writing starts once the page has searched: after its first request to the
            // UI, which asks Redis (nothing else does meanwhile; INFO counts itself).
            let mut conn = redis.connect().unwrap();
            let mut commands = || -> u64 {
                let info = conn.cmd(&["INFO", "stats"]).unwrap().into_string().unwrap();
                info.lines()
                    .find_map(|l| l.strip_prefix("total_commands_processed:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap()
            };
            let mut last = commands();
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            loop {
                let now = commands();
                if now > last + 1 {
                    break;
                }
                last = now;
                assert!(
                    std::time::Instant::now() < deadline,
                    "the page never searched"
                );
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            let mut n: u128 = 100;
            while writing.load(std::sync::atomic::Ordering::Relaxed) {
                let ev = |kind, us| Event {
                    name: "wsgi".into(),
                    kind,
                    base_id: Id(n << 64),
                    trace_id: Id((n << 64) + 1),
                    parent_id: Id(n << 64),
                    timestamp: Timestamp(us),
                    info: EventInfo::default(),
                    project: Some(Arc::from("nova")),
                    service: Some(Arc::from("live")),
                };
                let at = t0 + n as i64 * 1000;
                sink.write(&[ev(EventKind::Start, at), ev(EventKind::Stop, at + 500)])
                    .unwrap();
                n += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        });
        let dom = chromium
            .run(&[
                "--virtual-time-budget=60000".to_string(),
                "--dump-dom".to_string(),
                format!("http://{a}/?refresh=1&service=live"),
            ])
            .expect("chromium dumps the page");
        writing.store(false, std::sync::atomic::Ordering::Relaxed);
        dom
    });
    // Each was written after the page's first search.
    let rows = count(&dom, "<tr data-base-id=");
    assert!(
        rows >= 1,
        "no trace written while the page was open is listed: {dom}"
    );
    // What the store holds now is more still; the page shows no trace it lacks.
    let (_, _, body) = get(a, "/api/traces?service=live&limit=1000", "");
    let now: Value = serde_json::from_str(&body).unwrap();
    assert!(now["traces"].as_array().unwrap().len() >= rows);
    eprintln!("live: {rows} rows listed");
}

/// A page in headless Chromium driven over the DevTools protocol (a WebSocket, spoken here
/// in a few lines: text frames only): for what `--dump-dom` cannot do, clicking.
struct DevTools {
    chromium: Child,
    ws: TcpStream,
    next_id: u64,
    _profile: TempDir,
}

impl Drop for DevTools {
    fn drop(&mut self) {
        let _ = self.chromium.kill();
        let _ = self.chromium.wait();
    }
}

impl DevTools {
    fn open(chromium: &osprofiler_testkit::Chromium, url: &str) -> DevTools {
        let profile = TempDir::new();
        let mut child = Command::new(chromium.exe())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(url)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let browser = loop {
            let line = lines
                .next()
                .expect("chromium says where DevTools listen")
                .unwrap();
            if let Some(ws) = line.strip_prefix("DevTools listening on ws://") {
                break ws.split('/').next().unwrap().to_owned();
            }
        };
        // The rest of its chatter, read so that it never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        // DevTools keeps the connection open: read by Content-Length.
        let mut s = TcpStream::connect(&browser).unwrap();
        write!(s, "GET /json/list HTTP/1.1\r\nHost: {browser}\r\n\r\n").unwrap();
        let mut r = BufReader::new(s);
        let mut len = 0;
        loop {
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            if line.trim().is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                len = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0u8; len];
        r.read_exact(&mut body).unwrap();
        let targets: Value = serde_json::from_slice(&body).unwrap();
        let page = targets
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["type"] == json!("page"))
            .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            .unwrap_or_else(|| panic!("no page in {targets:#}"))
            .to_owned();
        let path = &page[page.find("/devtools").unwrap()..];
        let mut ws = TcpStream::connect(&browser).unwrap();
        ws.set_read_timeout(Some(std::time::Duration::from_secs(30)))
            .unwrap();
        write!(
            ws,
            "GET {path} HTTP/1.1\r\nHost: {browser}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut b = [0u8];
            ws.read_exact(&mut b).unwrap();
            head.push(b[0]);
        }
        assert!(
            head.starts_with(b"HTTP/1.1 101"),
            "{}",
            String::from_utf8_lossy(&head)
        );
        DevTools {
            chromium: child,
            ws,
            next_id: 0,
            _profile: profile,
        }
    }

    fn send(&mut self, text: &str) {
        let mask = [0x5a, 0x17, 0xc3, 0x81];
        let len = text.len();
        let mut frame = vec![0x81u8];
        if len < 126 {
            frame.push(0x80 | len as u8);
        } else if len < 65536 {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(len as u64).to_be_bytes());
        }
        frame.extend_from_slice(&mask);
        frame.extend(text.bytes().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.ws.write_all(&frame).unwrap();
    }

    fn recv(&mut self) -> Value {
        let mut message = Vec::new();
        loop {
            let mut h = [0u8; 2];
            self.ws.read_exact(&mut h).unwrap();
            let len = match h[1] & 0x7f {
                126 => {
                    let mut l = [0u8; 2];
                    self.ws.read_exact(&mut l).unwrap();
                    u16::from_be_bytes(l) as usize
                }
                127 => {
                    let mut l = [0u8; 8];
                    self.ws.read_exact(&mut l).unwrap();
                    u64::from_be_bytes(l) as usize
                }
                l => l as usize,
            };
            let mut payload = vec![0u8; len];
            self.ws.read_exact(&mut payload).unwrap();
            message.extend(payload);
            if h[0] & 0x80 != 0 {
                return serde_json::from_slice(&message).unwrap();
            }
        }
    }

    /// Evaluates `js` in the page (awaiting a promise); its value, or `Err` with the
    /// exception (e.g. while the page navigates).
    fn eval(&mut self, js: &str) -> Result<Value, String> {
        self.next_id += 1;
        let id = self.next_id;
        let call = json!({"id": id, "method": "Runtime.evaluate", "params": {
            "expression": js, "awaitPromise": true, "returnByValue": true}});
        self.send(&call.to_string());
        loop {
            let m = self.recv();
            if m["id"] != json!(id) {
                continue; // an event
            }
            if let Some(e) = m.get("error").or(m["result"].get("exceptionDetails")) {
                return Err(e.to_string());
            }
            return Ok(m["result"]["result"]["value"].clone());
        }
    }

    /// Evaluates `js` until it gives `want`, for up to 20 s; the last value.
    fn wait_for(&mut self, js: &str, want: &Value) -> Value {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let got = self.eval(js).unwrap_or_else(|e| json!({ "error": e }));
            if &got == want || std::time::Instant::now() > deadline {
                return got;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

/// Ticks and rows survive the live refresh: two ticked traces stay ticked, and their rows
/// stay the same elements, when a new trace comes in; the compare button then opens them.
#[test]
fn ticks_survive_refreshes_and_open_the_compare_page() {
    let Some(chromium) =
        osprofiler_testkit::need("chromium", osprofiler_testkit::Chromium::locate())
    else {
        return;
    };
    let dir = TempDir::new();
    let cs = store_with_two_traces(&dir);
    let server = serve(&cs, &[]);
    let mut page = DevTools::open(&chromium, &format!("http://{}/?refresh=1", server.1));
    let rows = "document.querySelectorAll('#traces tbody tr').length";
    assert_eq!(page.wait_for(rows, &json!(2)), json!(2));
    // Tick both (newest first: two, then one), and mark their rows.
    let button = page
        .eval(
            "(() => { for (const r of document.querySelectorAll('#traces tbody tr')) { \
               r.kept = true; r.querySelector('input[type=checkbox]').click(); } \
             const b = document.getElementById('compare-selected'); \
             return [b.disabled, b.textContent]; })()",
        )
        .unwrap();
    assert_eq!(button, json!([false, "Compare the two ticked (2 ticked)"]));
    // A new trace, newest of all.
    let mut sink = osprofiler_store::sink(&cs.parse().unwrap(), &Default::default()).unwrap();
    let ev = |kind, us| Event {
        name: "wsgi".into(),
        kind,
        base_id: Id(7 << 64),
        trace_id: Id((7 << 64) + 1),
        parent_id: Id(7 << 64),
        timestamp: Timestamp(us),
        info: EventInfo::default(),
        project: Some(Arc::from("nova")),
        service: Some(Arc::from("api")),
    };
    let t0 = 1_790_000_000_000_000;
    sink.write(&[
        ev(EventKind::Start, t0 + 50_000),
        ev(EventKind::Stop, t0 + 51_000),
    ])
    .unwrap();
    drop(sink);
    assert_eq!(page.wait_for(rows, &json!(3)), json!(3));
    let state = page
        .eval(
            "[...document.querySelectorAll('#traces tbody tr')].map(r => \
               [r.dataset.baseId, r.kept === true, r.querySelector('input').checked])",
        )
        .unwrap();
    let (one, two, seven) = (
        Id(1 << 64).to_string(),
        Id(2 << 64).to_string(),
        Id(7 << 64).to_string(),
    );
    assert_eq!(
        state,
        json!([[seven, false, false], [two, true, true], [one, true, true]])
    );
    // The plot has the new one too.
    assert_eq!(
        page.eval("document.querySelectorAll('#scatter circle').length")
            .unwrap(),
        json!(3)
    );
    page.eval("document.getElementById('compare-selected').click()")
        .unwrap();
    let opened = page.wait_for(
        "location.pathname + ' ' + document.querySelectorAll('#tree tbody tr').length",
        &json!(format!("/compare/{two}/{one} 1")),
    );
    assert_eq!(opened, json!(format!("/compare/{two}/{one} 1")));
    let matched = page
        .eval("document.querySelector('#tree tbody tr').dataset.match")
        .unwrap();
    assert_eq!(matched, json!("both"));
}
