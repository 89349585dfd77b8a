//! The `osprofiler` binary, run for real: trace headers, show and list against a store,
//! errors as one line with a non-zero exit.

use std::path::Path;
use std::process::{Command, Output};

use osprofiler::notifier::{self, JsonLinesSink};
use osprofiler::{HmacKey, HmacKeys, TraceContext};
use osprofiler_report::{Report, render_dot};
use osprofiler_testkit::{Oracle, TempDir, need};

/// The notifier is process-wide: tests that set a sink take turns (nextest runs each
/// test in its own process anyway; `cargo test` does not).
static SINK_TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn osprofiler(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_osprofiler"))
        .args(args)
        .env_remove("OSPROFILER_CONNECTION_STRING")
        .output()
        .expect("run osprofiler")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Fails unless the command failed with exactly one line on stderr (no panic, no trace).
fn one_line_error(o: &Output) -> String {
    assert!(!o.status.success(), "expected failure, got {o:?}");
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let e = stderr(o);
    assert_eq!(e.trim_end().lines().count(), 1, "one line expected: {e:?}");
    assert!(
        !e.contains("panicked") && !e.contains("RUST_BACKTRACE"),
        "{e}"
    );
    e.trim_end().to_owned()
}

#[test]
fn headers_are_signed_and_verify() {
    let base = "11111111-1111-4111-8111-111111111111";
    let parent = "22222222-2222-4222-8222-222222222222";
    let o = osprofiler(&[
        "trace",
        "headers",
        "--hmac-key",
        "SECRET_KEY",
        "--base-id",
        base,
        "--parent-id",
        parent,
    ]);
    assert!(o.status.success(), "{o:?}");
    // The vector made by Python's signed_pack for these ids and this key.
    assert_eq!(
        stdout(&o),
        "X-Trace-Info: eyJiYXNlX2lkIjogIjExMTExMTExLTExMTEtNDExMS04MTExLTExMTExMTExMTExMSIsICJwYXJlbnRfaWQiOiAiMjIyMjIyMjItMjIyMi00MjIyLTgyMjItMjIyMjIyMjIyMjIyIn0=\n\
         X-Trace-HMAC: d5c8c499158d92608f09da737823d4272b920cd4\n"
    );
    assert!(stderr(&o).contains(&format!("osprofiler trace show {base}")));

    // Defaults: a new base id, parent = base; verifies with the key and only with it.
    let o = osprofiler(&["trace", "headers", "--hmac-key", "k2"]);
    let out = stdout(&o);
    let mut lines = out.lines();
    let info = lines
        .next()
        .unwrap()
        .strip_prefix("X-Trace-Info: ")
        .unwrap();
    let hmac = lines
        .next()
        .unwrap()
        .strip_prefix("X-Trace-HMAC: ")
        .unwrap();
    let t =
        osprofiler::propagation::verify_trace_headers(info, hmac, &HmacKeys::parse("other, k2"))
            .unwrap();
    assert_eq!(Some(t.base_id), t.parent_id);
    assert!(stderr(&o).contains(&t.base_id.to_string()));
    assert!(
        osprofiler::propagation::verify_trace_headers(info, hmac, &HmacKeys::parse("k3")).is_none()
    );
}

#[test]
fn headers_verify_in_python() {
    let Some(oracle) = need("python osprofiler oracle", Oracle::locate()) else {
        return;
    };
    let o = osprofiler(&["trace", "headers", "--hmac-key", "kéy-☃"]);
    let out = stdout(&o);
    let mut lines = out.lines();
    let info = lines
        .next()
        .unwrap()
        .strip_prefix("X-Trace-Info: ")
        .unwrap()
        .to_owned();
    let hmac = lines
        .next()
        .unwrap()
        .strip_prefix("X-Trace-HMAC: ")
        .unwrap()
        .to_owned();
    let got = oracle
        .python(
            "import sys, json\nfrom osprofiler import _utils\nr = _utils.signed_unpack(sys.argv[1], sys.argv[2], ['nope', 'kéy-☃'])\nprint(json.dumps(r))",
            &[&info, &hmac],
        )
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(got.trim()).unwrap();
    assert_eq!(v["hmac_key"], "kéy-☃");
    assert_eq!(v["base_id"], v["parent_id"]);
}

#[test]
fn header_errors_are_one_line() {
    let e = one_line_error(&osprofiler(&["trace", "headers", "--hmac-key", ""]));
    assert_eq!(e, "osprofiler: error: the HMAC key must not be empty");
    let e = one_line_error(&osprofiler(&[
        "trace",
        "headers",
        "--hmac-key",
        "k",
        "--base-id",
        "nope",
    ]));
    assert_eq!(
        e,
        "osprofiler: error: invalid --base-id \"nope\": expected a lowercase UUID"
    );
}

/// Records two traces (one with an error) into a JSON-lines store; returns their ids.
fn record_traces(file: &Path) -> (String, String) {
    let _turn = SINK_TURN.lock().unwrap_or_else(|p| p.into_inner());
    let guard = notifier::set_sink(JsonLinesSink::open(file).unwrap());
    let key = HmacKey::new("SECRET_KEY");
    let first = TraceContext::new(key.clone(), None, None);
    first.in_scope(|| {
        let _w = osprofiler::point_with("wsgi", serde_json::json!({"request": {"path": "/v2.1/servers", "query": "", "method": "GET", "scheme": "http"}}));
        let _d = osprofiler::point("db");
    });
    std::thread::sleep(std::time::Duration::from_millis(5));
    let second = TraceContext::new(key, None, None);
    second.in_scope(|| {
        let mut r = osprofiler::point("rpc");
        r.set_error("ValueError", "No valid host was found");
    });
    notifier::flush().unwrap();
    drop(guard);
    (first.base_id().to_string(), second.base_id().to_string())
}

#[test]
fn show_and_list_from_a_store() {
    let dir = TempDir::new();
    let file = dir.join("events.jsonl");
    let (first, second) = record_traces(&file);
    let cs = format!("file://{}", file.display());
    let expected = Report::from_json_lines(&std::fs::read_to_string(&file).unwrap());

    // Default output: osprofiler's JSON of that trace.
    let o = osprofiler(&["trace", "show", &first, "--connection-string", &cs]);
    assert!(o.status.success(), "{o:?}");
    let json: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(json["children"][0]["info"]["name"], "wsgi");
    assert_eq!(json["children"][0]["children"][0]["info"]["name"], "db");
    assert_eq!(json["stats"]["db"]["count"], 1);
    assert!(json["stats"].get("rpc").is_none(), "only that trace");

    // DOT, to a file.
    let dot_file = dir.join("t.dot");
    let o = osprofiler(&[
        "trace",
        "show",
        &second,
        "--dot",
        "--out",
        dot_file.to_str().unwrap(),
        "--connection-string",
        &cs,
    ]);
    assert!(o.status.success(), "{o:?}");
    let dot = std::fs::read_to_string(&dot_file).unwrap();
    assert!(
        dot.starts_with("digraph {") && dot.contains(":rpc - "),
        "{dot}"
    );
    let _ = expected;

    // HTML, self-contained.
    let html_file = dir.join("t.html");
    let o = osprofiler(&[
        "trace",
        "show",
        &first,
        "--html",
        "--out",
        html_file.to_str().unwrap(),
        "--connection-string",
        &cs,
    ]);
    assert!(o.status.success(), "{o:?}");
    let html = std::fs::read_to_string(&html_file).unwrap();
    assert!(
        html.starts_with("<!DOCTYPE html>") || html.starts_with("<!doctype html>"),
        "{}",
        &html[..40.min(html.len())]
    );
    assert!(html.contains(&first));

    // The env var names the store when the flag is absent.
    let o = Command::new(env!("CARGO_BIN_EXE_osprofiler"))
        .args(["trace", "list"])
        .env("OSPROFILER_CONNECTION_STRING", &cs)
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    let table = stdout(&o);
    let rows: Vec<&str> = table
        .lines()
        .filter(|l| l.starts_with("| ") && !l.contains("Trace ID"))
        .collect();
    assert_eq!(rows.len(), 2, "{table}");
    assert!(
        rows[0].contains(&second) && rows[1].contains(&first),
        "newest first:\n{table}"
    );

    let o = osprofiler(&["trace", "list", "--error-trace", "--connection-string", &cs]);
    let table = stdout(&o);
    assert!(
        table.contains(&second) && !table.contains(&first),
        "{table}"
    );
    let o = osprofiler(&["trace", "list", "--limit", "1", "--connection-string", &cs]);
    assert_eq!(
        stdout(&o)
            .lines()
            .filter(|l| l.starts_with("| ") && !l.contains("Trace ID"))
            .count(),
        1
    );

    // Unknown id: osprofiler's message, non-zero exit.
    let unknown = "99999999-9999-4999-8999-999999999999";
    let e = one_line_error(&osprofiler(&[
        "trace",
        "show",
        unknown,
        "--connection-string",
        &cs,
    ]));
    assert_eq!(
        e,
        format!(
            "osprofiler: error: Trace with UUID {unknown} not found. Please check the HMAC key used in the command."
        )
    );
}

#[test]
fn show_reads_a_saved_report_file_even_pythons() {
    let vectors = concat!(env!("CARGO_MANIFEST_DIR"), "/../../vectors");
    // Python's `trace show --json` output for the vector trace.
    let o = osprofiler(&["trace", "show", &format!("{vectors}/report.json")]);
    assert!(o.status.success(), "{o:?}");
    let ours: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let theirs: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{vectors}/report.json")).unwrap())
            .unwrap();
    assert_eq!(ours, theirs);
    // And the DOT of it is Python's DOT.
    let o = osprofiler(&["trace", "show", &format!("{vectors}/report.json"), "--dot"]);
    assert_eq!(
        stdout(&o).trim_end(),
        std::fs::read_to_string(format!("{vectors}/report.dot"))
            .unwrap()
            .trim_end()
    );
    // Events, one per line, are accepted too.
    let o = osprofiler(&["trace", "show", &format!("{vectors}/events.jsonl"), "--dot"]);
    let report = Report::from_json_lines(
        &std::fs::read_to_string(format!("{vectors}/events.jsonl")).unwrap(),
    );
    assert_eq!(stdout(&o).trim_end(), render_dot(&report).trim_end());
}

#[test]
fn render_dot_with_graphviz_or_say_it_is_missing() {
    let dir = TempDir::new();
    let vectors = concat!(env!("CARGO_MANIFEST_DIR"), "/../../vectors");
    let pdf = dir.join("trace.pdf");
    let args = [
        "trace",
        "show",
        &format!("{vectors}/report.json"),
        "--dot",
        "--render-dot",
        pdf.to_str().unwrap(),
    ];
    // Without `dot` on PATH: the DOT is still printed, then one clear line, exit 1.
    let o = Command::new(env!("CARGO_BIN_EXE_osprofiler"))
        .args(args)
        .env("PATH", dir.path())
        .output()
        .unwrap();
    assert!(stdout(&o).starts_with("digraph {"));
    let e = one_line_error(&o);
    assert!(e.contains("Graphviz `dot` is not installed"), "{e}");
    // With it: a PDF.
    let has_dot = Command::new("dot")
        .arg("-V")
        .output()
        .map(|o| o.status.success())
        .map_err(|e| e.to_string());
    let Some(true) = need("graphviz dot", has_dot) else {
        return;
    };
    let o = osprofiler(&args);
    assert!(o.status.success(), "{o:?}");
    assert!(std::fs::read(&pdf).unwrap().starts_with(b"%PDF"));
}

#[test]
fn bad_input_gives_one_line_and_non_zero_exit() {
    let dir = TempDir::new();
    let id = "11111111-1111-4111-8111-111111111111";
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "trace".into(),
                "show".into(),
                id.into(),
                "--connection-string".into(),
                "mongodb://u:pw@h".into(),
            ],
            "unsupported backend \"mongodb\"",
        ),
        (
            vec![
                "trace".into(),
                "show".into(),
                id.into(),
                "--connection-string".into(),
                "redis://h:abc".into(),
            ],
            "invalid port \"abc\"",
        ),
        (
            vec![
                "trace".into(),
                "list".into(),
                "--connection-string".into(),
                format!("file://{}/missing.jsonl", dir.path().display()),
            ],
            "cannot open file://",
        ),
        (
            vec!["trace".into(), "show".into(), "not-an-id".into()],
            "is neither a trace id (a UUID) nor a readable file",
        ),
        // Write-only backends, alone or together: said in one line.
        (
            vec![
                "trace".into(),
                "show".into(),
                id.into(),
                "--connection-string".into(),
                "otlp://127.0.0.1:4318".into(),
            ],
            "otlp://127.0.0.1:4318 is write only",
        ),
        (
            vec![
                "trace".into(),
                "list".into(),
                "--connection-string".into(),
                "otlp+grpc://c jaeger://a".into(),
            ],
            "otlp+grpc://c:4317 jaeger://a:6831 is write only",
        ),
        (
            vec![
                "trace".into(),
                "show".into(),
                id.into(),
                "--connection-string".into(),
                "otlp://".into(),
            ],
            "no host in connection string otlp://",
        ),
        (
            vec![
                "trace".into(),
                "list".into(),
                "--connection-string".into(),
                "otlp://h:65536".into(),
            ],
            "invalid port \"65536\"",
        ),
        (
            vec![
                "demo".into(),
                "--connection-string".into(),
                "otlp://h?gzip=1".into(),
            ],
            "unknown option \"gzip\"",
        ),
        (
            vec![
                "demo".into(),
                "--connection-string".into(),
                "redis://:pw@127.0.0.1:1 jaeger://a?max_packet_size=1".into(),
            ],
            "invalid max_packet_size \"1\"",
        ),
    ];
    for (args, needle) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let e = one_line_error(&osprofiler(&args));
        assert!(e.contains(needle), "{args:?}: {e}");
        assert!(!e.contains("pw@"), "password leaked: {e}");
    }
    // A garbage file given as the trace.
    let junk = dir.join("junk.txt");
    std::fs::write(&junk, "hello\n").unwrap();
    let e = one_line_error(&osprofiler(&["trace", "show", junk.to_str().unwrap()]));
    assert!(
        e.contains("holds neither an osprofiler report nor osprofiler events"),
        "{e}"
    );
    // Unreachable Redis: which store and why.
    let port = osprofiler_testkit::free_port();
    let e = one_line_error(&osprofiler(&[
        "trace",
        "list",
        "--connection-string",
        &format!("redis://127.0.0.1:{port}"),
    ]));
    assert!(e.contains(&format!("127.0.0.1:{port}")), "{e}");
}

#[test]
fn help_describes_every_command() {
    let o = osprofiler(&["trace", "show", "--help"]);
    let h = stdout(&o);
    for flag in [
        "--json",
        "--html",
        "--dot",
        "--out",
        "--connection-string",
        "--render-dot",
        "OSPROFILER_CONNECTION_STRING",
    ] {
        assert!(h.contains(flag), "{flag} missing from:\n{h}");
    }
    let h = stdout(&osprofiler(&["trace", "headers", "--help"]));
    assert!(h.contains("--hmac-key") && h.contains("curl"), "{h}");
    let o = osprofiler(&["trace", "show", "x", "--json", "--dot"]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "conflicting formats are a usage error"
    );
}

/// With no connection string anywhere, services and the CLI share the embedded store in
/// the user's data directory.
#[test]
fn the_embedded_default_store() {
    let data = TempDir::new();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_osprofiler"))
            .args(args)
            .env_remove("OSPROFILER_CONNECTION_STRING")
            .env("XDG_DATA_HOME", data.path())
            .output()
            .unwrap()
    };
    // Nothing recorded yet: an empty list, not an error.
    let o = run(&["trace", "list"]);
    assert!(o.status.success(), "{o:?}");
    assert!(
        stderr(&o).contains("nothing has been recorded there yet"),
        "{}",
        stderr(&o)
    );
    let id = "11111111-1111-4111-8111-111111111111";
    let e = one_line_error(&run(&["trace", "show", id]));
    assert!(e.contains("not found"), "{e}");

    // A service writes into the default store (the path the CLI resolves to).
    let db = data.path().join("osprofiler").join("traces.db");
    let cs: osprofiler_store::ConnectionString =
        format!("sqlite://{}", db.display()).parse().unwrap();
    let turn = SINK_TURN.lock().unwrap_or_else(|p| p.into_inner());
    let guard = notifier::set_boxed_sink(
        osprofiler_store::sink(&cs, &osprofiler_store::Options::default()).unwrap(),
    );
    let ctx = TraceContext::new(None, None, None);
    ctx.in_scope(|| drop(osprofiler::point("db")));
    notifier::flush().unwrap();
    drop(guard);
    drop(turn);
    let base = ctx.base_id().to_string();
    assert!(stdout(&run(&["trace", "list"])).contains(&base));
    let json: serde_json::Value =
        serde_json::from_str(&stdout(&run(&["trace", "show", &base]))).unwrap();
    assert_eq!(json["children"][0]["info"]["name"], "db");
}

/// Events of a chain of `n` points, each the parent of the next, one JSON object per line.
fn chain_events(n: usize) -> String {
    let mut lines = Vec::new();
    let mut parent = "base".to_owned();
    for i in 0..n {
        let id = format!("p{i}");
        for (kind, us) in [("start", i), ("stop", 2 * n - i)] {
            lines.push(
                serde_json::json!({
                    "name": format!("db-{kind}"), "base_id": "base", "trace_id": id,
                    "parent_id": parent, "timestamp": format!("2026-11-25T12:00:00.{us:06}"),
                    "info": {"host": "h"}, "project": "nova", "service": "api"
                })
                .to_string(),
            );
        }
        parent = id;
    }
    lines.join("\n") + "\n"
}

#[test]
fn hostile_report_files_give_one_line_and_non_zero_exit() {
    let dir = TempDir::new();
    let write = |name: &str, bytes: &[u8]| {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p.to_str().unwrap().to_owned()
    };
    let deep = 100_000;
    let report = common_report();
    let mut binary: Vec<u8> = (0..=255u8).cycle().take(64 * 1024).collect();
    binary.extend_from_slice(b"\xff\xfe{\"children\": []}");
    let cases: Vec<(String, &str)> = vec![
        // serde_json's recursion limit would say "recursion limit exceeded"; the depth is
        // measured first, without recursion, and said.
        (
            write(
                "arrays.json",
                format!("{}{}", "[".repeat(deep), "]".repeat(deep)).as_bytes(),
            ),
            "nested 100000 levels deep",
        ),
        (
            write(
                "objects.json",
                format!("{}1{}", "{\"a\":".repeat(deep), "}".repeat(deep)).as_bytes(),
            ),
            "nested 100000 levels deep",
        ),
        (
            write(
                "children.json",
                format!(
                    "{{\"children\": {}{}}}",
                    "[{\"children\": ".repeat(deep),
                    "}]".repeat(deep)
                )
                .as_bytes(),
            ),
            "levels deep",
        ),
        (
            write("truncated.json", &report.as_bytes()[..report.len() / 2]),
            "(as JSON: EOF while parsing",
        ),
        (
            write("binary.dat", &binary),
            "stream did not contain valid UTF-8",
        ),
        (
            write("nul.json", b"\0\0\0{\"children\": []}\0"),
            "holds neither an osprofiler report nor osprofiler events",
        ),
        (
            write("empty.json", b""),
            "holds neither an osprofiler report nor osprofiler events",
        ),
        (
            write("two.json", b"{\"children\": []} {\"children\": []}"),
            "(as JSON: more than one JSON value)",
        ),
    ];
    for (file, needle) in &cases {
        for format in ["--json", "--html", "--dot"] {
            let e = one_line_error(&osprofiler(&["trace", "show", file, format]));
            assert!(e.contains(needle), "{file} {format}: {e}");
        }
    }

    // What must still be read: a report saved by `trace show --json` of a trace deeper than
    // serde_json's 128 levels (two per point), up to the deepest the report keeps.
    for n in [100, osprofiler_report::MAX_DEPTH + 10] {
        let events = write(&format!("chain{n}.jsonl"), chain_events(n).as_bytes());
        let o = osprofiler(&["trace", "show", &events, "--json"]);
        assert!(o.status.success(), "{o:?}");
        let saved = write(&format!("chain{n}.json"), &o.stdout);
        let again = osprofiler(&["trace", "show", &saved, "--json"]);
        assert!(again.status.success(), "chain of {n}: {}", stderr(&again));
        assert_eq!(stdout(&again), stdout(&o), "chain of {n}");
    }
    // A torn last line (a file still being written): the whole lines are shown.
    let mut torn = chain_events(3);
    torn.push_str("{\"name\": \"db-start\", \"trace_i");
    let torn = write("torn.jsonl", torn.as_bytes());
    let o = osprofiler(&["trace", "show", &torn, "--dot"]);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(stdout(&o).matches("db - ").count(), 3, "{}", stdout(&o));
}

/// The reference report (Python's `trace show --json` of the vector trace).
fn common_report() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../vectors/report.json"
    ))
    .unwrap()
}

#[test]
fn completions_complete_in_a_real_bash() {
    let o = osprofiler(&["completions", "bash"]);
    assert!(o.status.success(), "{o:?}");
    let dir = TempDir::new();
    let script = dir.path().join("osprofiler.bash");
    std::fs::write(&script, &o.stdout).unwrap();
    // bash itself loads the script and completes `osprofiler trace s` and an option
    // (a completion function gets the command, the word and the one before it).
    let probe = format!(
        "source {}; COMP_WORDS=(osprofiler trace s); COMP_CWORD=2; _osprofiler osprofiler s trace; echo \"${{COMPREPLY[@]}}\"; \
         COMP_WORDS=(osprofiler trace list --conn); COMP_CWORD=3; _osprofiler osprofiler --conn list; echo \"${{COMPREPLY[@]}}\"",
        script.display()
    );
    let Some(out) = need(
        "bash",
        Command::new("bash")
            .args(["--norc", "-c", &probe])
            .output()
            .map_err(|e| e.to_string()),
    ) else {
        return;
    };
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.first().copied(), Some("show"), "{text}");
    assert_eq!(lines.get(1).copied(), Some("--connection-string"), "{text}");
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let o = osprofiler(&["completions", shell]);
        assert!(o.status.success(), "{shell}: {o:?}");
        assert!(stdout(&o).contains("connection-string"), "{shell}");
    }
    // A usage error, as clap reports them (status 2, the possible values listed).
    let o = osprofiler(&["completions", "tcsh"]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert!(stderr(&o).contains("invalid value 'tcsh'"), "{o:?}");
}

#[test]
fn man_pages_for_every_command() {
    let o = osprofiler(&["man"]);
    assert!(o.status.success(), "{o:?}");
    let page = stdout(&o);
    assert!(page.contains(".TH osprofiler 1"), "{page}");
    assert!(
        page.contains("osprofiler\\-trace(1)") || page.contains("trace"),
        "{page}"
    );
    let dir = TempDir::new();
    let o = osprofiler(&["man", "--dir", dir.path().to_str().unwrap()]);
    assert!(o.status.success(), "{o:?}");
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "osprofiler-completions.1",
            "osprofiler-demo.1",
            "osprofiler-man.1",
            "osprofiler-trace-headers.1",
            "osprofiler-trace-list.1",
            "osprofiler-trace-show.1",
            "osprofiler-trace.1",
            "osprofiler-ui.1",
            "osprofiler.1",
        ]
    );
    let show = std::fs::read_to_string(dir.path().join("osprofiler-trace-show.1")).unwrap();
    assert!(
        show.contains(concat!(
            ".TH osprofiler-trace-show 1  \"osprofiler-trace-show ",
            env!("CARGO_PKG_VERSION")
        )),
        "{show}"
    );
    assert!(show.contains("connection\\-string"), "{show}");
}

/// `trace list`'s summary columns, filters and `--json`, on an SQLite store written by
/// the store's sink (a `wsgi` root in `api`, a `db` child in `compute`).
#[test]
fn list_shows_summaries_and_filters() {
    use osprofiler::{Event, EventInfo, EventKind, Id, Timestamp};
    use serde_json::{Value, json};
    use std::sync::Arc;
    let dir = TempDir::new();
    let db = dir.join("traces.db");
    let cs = format!("sqlite://{}", db.display());
    let t0: i64 = 1_790_000_000_000_000;
    let ev = |base: u128,
              point: u128,
              parent: u128,
              name: &'static str,
              service: &str,
              kind,
              us: i64,
              info: Value| {
        let Value::Object(mut m) = info else {
            unreachable!()
        };
        m.insert("host".into(), json!("h"));
        Event {
            name: name.into(),
            kind,
            base_id: Id(base),
            trace_id: Id(point),
            parent_id: Id(parent),
            timestamp: Timestamp(us),
            info: EventInfo::from(m),
            project: Some(Arc::from("nova")),
            service: Some(Arc::from(service)),
        }
    };
    let mut events = Vec::new();
    // Trace n (1..=3) starts n s after t0 and lasts n * 10 ms; trace 2 fails.
    for n in 1..=3u128 {
        let (base, start, dur) = (n << 64, t0 + n as i64 * 1_000_000, n as i64 * 10_000);
        let path = if n == 3 {
            "/v2.1/flavors"
        } else {
            "/v2.1/servers"
        };
        let stop = if n == 2 {
            json!({"etype": "ValueError"})
        } else {
            json!({})
        };
        let svc = if n == 1 { "api" } else { "compute" };
        events.extend([
            ev(
                base,
                base + 1,
                base,
                "wsgi",
                "api",
                EventKind::Start,
                start,
                json!({"request": {"method": "GET", "path": path}}),
            ),
            ev(
                base,
                base + 2,
                base + 1,
                "db",
                svc,
                EventKind::Start,
                start + 5,
                json!({}),
            ),
            ev(
                base,
                base + 2,
                base + 1,
                "db",
                svc,
                EventKind::Stop,
                start + 8,
                stop,
            ),
            ev(
                base,
                base + 1,
                base,
                "wsgi",
                "api",
                EventKind::Stop,
                start + dur,
                json!({}),
            ),
        ]);
    }
    let mut sink = osprofiler_store::sink(&cs.parse().unwrap(), &Default::default()).unwrap();
    sink.write(&events).unwrap();
    drop(sink);
    let id = |n: u128| Id(n << 64).to_string();
    let rows = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["trace", "list", "--connection-string", &cs];
        all.extend_from_slice(args);
        let o = osprofiler(&all);
        assert!(o.status.success(), "{o:?}");
        stdout(&o)
            .lines()
            .filter(|l| l.starts_with("| ") && !l.contains("Trace ID"))
            .map(str::to_owned)
            .collect()
    };
    let all = rows(&[]);
    assert_eq!(all.len(), 3, "{all:?}");
    assert!(
        all[0].contains(&id(3)) && all[2].contains(&id(1)),
        "{all:?}"
    );
    let row1 = &all[2];
    for cell in [
        "2026-09-21T14:13:21.000000",
        "10.000 ms",
        "| 2 ",
        "api",
        "api · wsgi · GET /v2.1/servers",
    ] {
        assert!(row1.contains(cell), "{cell:?} not in {row1}");
    }
    assert!(all[1].contains("| yes"), "{}", all[1]);
    assert!(!row1.contains("yes"), "{row1}");
    let has = |rows: Vec<String>, want: &[u128]| {
        assert_eq!(rows.len(), want.len(), "{rows:?}");
        for (r, n) in rows.iter().zip(want) {
            assert!(r.contains(&id(*n)), "{r} is not trace {n}");
        }
    };
    has(rows(&["--service", "compute"]), &[3, 2]);
    has(rows(&["--name", "/v2.1/servers"]), &[2, 1]);
    has(rows(&["--min-duration", "20ms"]), &[3, 2]);
    has(rows(&["--min-duration", "0.025s"]), &[3]);
    has(rows(&["--error-trace"]), &[2]);
    has(rows(&["--since", "2026-09-21T14:13:22"]), &[3, 2]);
    has(rows(&["--since", "1h"]), &[]);
    has(rows(&["--text", "FLAVORS"]), &[3]);
    has(rows(&["--limit", "1", "--offset", "1"]), &[2]);
    // --json: the summaries.
    let o = osprofiler(&[
        "trace",
        "list",
        "--json",
        "--service",
        "compute",
        "--connection-string",
        &cs,
    ]);
    assert!(o.status.success(), "{o:?}");
    let list: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["base_id"], json!(id(3)));
    assert_eq!(list[1]["error"], json!(true));
    assert_eq!(list[1]["points"], json!(2));
    assert_eq!(list[1]["duration_ms"], json!(20.0));
    assert_eq!(list[1]["services"], json!(["api", "compute"]));
    assert_eq!(
        list[1]["root"]["label"],
        json!("api · wsgi · GET /v2.1/servers")
    );
    // A bad duration is a one-line usage error.
    let o = osprofiler(&[
        "trace",
        "list",
        "--min-duration",
        "5 parsecs",
        "--connection-string",
        &cs,
    ]);
    assert!(
        !o.status.success() && stderr(&o).contains("unknown unit"),
        "{o:?}"
    );
}
