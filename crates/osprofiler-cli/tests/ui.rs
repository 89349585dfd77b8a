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
        let Value::Object(m) = json!({"host": evil, "request": {"method": evil, "path": evil}})
        else {
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
    // A filter narrows the list.
    let dom = dump("?min_duration=2ms&service=api");
    assert_eq!(rows(&dom), 1, "{dom}");
    assert!(dom.contains(&two) && !dom.contains(&one), "{dom}");
}
