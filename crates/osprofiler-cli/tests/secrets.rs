//! The `osprofiler` binary never prints a password or a key (issue 9, "Secrets"): random
//! secrets (see `osprofiler_testkit::secrets`) as the password of connection strings of
//! every scheme and malformation, as the wrong or the right password of a real Redis, and as
//! the HMAC key of `trace headers` and `demo`; stdout and stderr of each run are searched for
//! the secret and every piece of it of four characters or more, raw and percent-encoded.
//! No run panics, and a failing one says why in one line.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::Once;
use std::time::Duration;

use osprofiler::notifier::MemorySink;
use osprofiler::{HmacKey, TraceContext};
use osprofiler_store::{ConnectionString, Options};
use osprofiler_testkit::secrets::{Outputs, Secrets, assert_hidden, percent_encode};
use osprofiler_testkit::{RedisServer, free_port, need};

const ID: &str = "11111111-1111-4111-8111-111111111111";

/// The working directory and data directory of every run: `sqlite://u:pw@/t.db` is the
/// relative path `u:pw@/t.db`, and the embedded default store lives in the data directory.
fn scratch() -> PathBuf {
    static ONCE: Once = Once::new();
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cli-secrets");
    ONCE.call_once(|| {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch directory");
    });
    dir
}

fn run(args: &[&str], env: Option<&str>) -> Output {
    let dir = scratch();
    let mut c = Command::new(env!("CARGO_BIN_EXE_osprofiler"));
    c.args(args)
        .current_dir(&dir)
        .env("XDG_DATA_HOME", &dir)
        .env("HOME", &dir)
        .env_remove("OSPROFILER_CONNECTION_STRING");
    if let Some(cs) = env {
        c.env("OSPROFILER_CONNECTION_STRING", cs);
    }
    c.output().expect("run osprofiler")
}

/// stdout and stderr of `args`, labelled; fails on a panic, and on a failure that does not
/// say why in one line.
fn outputs(label: &str, args: &[&str], env: Option<&str>) -> Outputs {
    let o = run(args, env);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        !err.contains("panicked") && !out.contains("panicked"),
        "{label}: {args:?} panicked: {err}"
    );
    if !o.status.success() {
        assert_eq!(o.status.code(), Some(1), "{label}: {args:?}: {o:?}");
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "{label}: {args:?}: one line expected: {err:?}"
        );
        assert!(err.starts_with("osprofiler: error: "), "{label}: {err}");
    }
    vec![
        (format!("{label}: stdout"), out),
        (format!("{label}: stderr"), err),
    ]
}

/// Connection strings holding `secret` as their password: every scheme, lists, and the
/// malformations (a password holding `/`, `?`, `#` or `@` raw makes many of them by itself).
fn connection_strings(secret: &str, port: u16) -> Vec<(String, String)> {
    let enc = percent_encode(secret);
    let mut out = Vec::new();
    for (form, info) in [
        ("raw", format!(":{secret}")),
        ("user, encoded", format!("admin:{enc}")),
    ] {
        for (what, cs) in [
            ("redis", format!("redis://{info}@127.0.0.1:{port}/0")),
            ("rediss", format!("rediss://{info}@127.0.0.1:{port}")),
            (
                "redissentinel",
                format!("redissentinel://{info}@127.0.0.1:{port}"),
            ),
            ("sqlite", format!("sqlite://{info}@/t.db")),
            ("file", format!("file://{info}@/e.jsonl")),
            ("otlp", format!("otlp://{info}@127.0.0.1:{port}")),
            ("jaeger", format!("jaeger://{info}@127.0.0.1:{port}")),
            ("unknown scheme", format!("mongodb://{info}@127.0.0.1")),
            (
                "list",
                format!("jaeger://127.0.0.1:{port} redis://{info}@127.0.0.1:{port}"),
            ),
            ("bad port", format!("redis://{info}@127.0.0.1:x")),
            ("bad db", format!("redis://{info}@127.0.0.1/x")),
            ("no host", format!("redis://{info}@")),
            ("unknown option", format!("otlp://{info}@h?gzip=1")),
            ("unclosed [", format!("redis://{info}@[::1")),
            ("bad escape", format!("redis://{info}%zz@127.0.0.1")),
        ] {
            out.push((format!("{what} ({form})"), cs));
        }
    }
    out
}

#[test]
fn connection_strings_in_show_list_and_demo() {
    let secrets = Secrets::new(3);
    let port = free_port();
    assert_hidden(&secrets, "CLI with connection strings", |secret| {
        let mut out = Outputs::new();
        for (what, cs) in connection_strings(secret, port) {
            let cs = cs.as_str();
            out.extend(outputs(
                &format!("show, {what}"),
                &["trace", "show", ID, "--connection-string", cs],
                None,
            ));
            out.extend(outputs(
                &format!("list, {what}"),
                &["trace", "list", "--connection-string", cs],
                None,
            ));
            out.extend(outputs(
                &format!("list from the environment, {what}"),
                &["trace", "list", "--error-trace"],
                Some(cs),
            ));
            // The demo runs whole (half a second) only where the store is fine: files.
            if !what.starts_with("sqlite") && !what.starts_with("file") {
                out.extend(outputs(
                    &format!("demo, {what}"),
                    &["demo", "--connection-string", cs],
                    None,
                ));
            }
        }
        out
    });
}

#[test]
fn redis_that_refuses_or_takes_the_password() {
    let secrets = Secrets::new(3);
    let other = secrets.other();
    let Some(wants_other) = need(
        "redis-server",
        RedisServer::start_with(&["--requirepass", &other]),
    ) else {
        return;
    };
    // Answers AUTH with "unknown command 'AUTH', with args beginning with: '<password>'".
    let Some(no_auth) = need(
        "redis-server",
        RedisServer::start_with(&["--rename-command", "AUTH", ""]),
    ) else {
        return;
    };
    let mut refusals = Vec::new();
    assert_hidden(&secrets, "CLI and a refusing redis", |secret| {
        let pw = percent_encode(secret);
        let mut out = Outputs::new();
        for (server, name) in [(&wants_other, "requirepass"), (&no_auth, "no AUTH")] {
            let cs = format!("redis://:{pw}@127.0.0.1:{}", server.port());
            for args in [
                vec!["trace", "list", "--connection-string", &cs],
                vec!["trace", "show", ID, "--connection-string", &cs],
            ] {
                let o = outputs(&format!("{name}: {}", args[1]), &args, None);
                refusals.push(o[1].1.clone());
                out.extend(o);
            }
        }
        out
    });
    let all = refusals.join("");
    assert!(all.contains("WRONGPASS"), "{all}");
    assert!(all.contains("ERR unknown command"), "{all}");

    // The right password: a trace written there, listed and shown in every format, and
    // the demo writing its own there with the secret as its HMAC key too.
    let mut n = 0;
    assert_hidden(&secrets, "CLI and a redis taking the password", |secret| {
        n += 1;
        let Some(redis) = need(
            "redis-server",
            RedisServer::start_with(&["--requirepass", secret]),
        ) else {
            return vec![("skipped".into(), String::new())];
        };
        let cs = format!(
            "redis://:{}@127.0.0.1:{}/0",
            percent_encode(secret),
            redis.port()
        );
        let base = write_trace(&cs, secret);
        let mut out = Outputs::new();
        out.extend(outputs(
            "list",
            &["trace", "list", "--connection-string", &cs],
            None,
        ));
        let html = scratch().join(format!("t{n}.html"));
        for format in ["--json", "--html", "--dot"] {
            out.extend(outputs(
                &format!("show {format}"),
                &["trace", "show", &base, format, "--connection-string", &cs],
                None,
            ));
        }
        out.extend(outputs(
            "show --html --out",
            &[
                "trace",
                "show",
                &base,
                "--html",
                "--out",
                html.to_str().unwrap_or_default(),
                "--connection-string",
                &cs,
            ],
            None,
        ));
        out.push((
            "HTML file".into(),
            std::fs::read_to_string(&html).unwrap_or_default(),
        ));
        let listed = &out[0].1;
        assert!(listed.contains(&base), "{listed}");
        let demo_html = scratch().join(format!("demo{n}.html"));
        let demo = outputs(
            "demo",
            &[
                "demo",
                "--hmac-key",
                secret,
                "--connection-string",
                &cs,
                "--out",
                demo_html.to_str().unwrap_or_default(),
            ],
            None,
        );
        assert!(
            demo[0].1.contains("only the profiled one traced"),
            "{demo:?}"
        );
        // The demo's trace, shown from the store.
        let demo_base = trace_id(&demo[0].1);
        out.extend(demo);
        out.push((
            "demo HTML file".into(),
            std::fs::read_to_string(&demo_html).unwrap_or_default(),
        ));
        out.extend(outputs(
            "show the demo's trace",
            &["trace", "show", &demo_base, "--connection-string", &cs],
            None,
        ));
        // And what the server holds.
        let text = |args: &[&str]| {
            redis
                .cmd(args)
                .and_then(|v| v.into_strings())
                .map(|v| v.join("\n"))
                .unwrap_or_default()
        };
        out.push(("redis KEYS".into(), text(&["KEYS", "*"])));
        let stored = text(&["LRANGE", &format!("osprofiler_opt:{demo_base}"), "0", "-1"]);
        assert!(stored.contains("wsgi-start"), "{stored}");
        out.push(("redis events".into(), stored));
        out
    });
}

/// Writes a two-point trace signed with `key` to `cs`; its base id.
fn write_trace(cs: &str, key: &str) -> String {
    let memory = MemorySink::new();
    let ctx = TraceContext::new(HmacKey::new(key), None, None);
    let events = {
        let _guard = osprofiler::notifier::set_sink(memory.clone());
        ctx.in_scope(|| {
            let _wsgi = osprofiler::point("wsgi");
            let _db = osprofiler::point("db");
        });
        osprofiler::notifier::flush().expect("flush");
        memory.take()
    };
    assert_eq!(events.len(), 4);
    let c: ConnectionString = cs.parse().expect("well-formed");
    let opts = Options {
        socket_timeout: Duration::from_secs(2),
        ..Options::default()
    };
    let mut sink = osprofiler_store::sink(&c, &opts).expect("sink");
    sink.write(&events).expect("write");
    ctx.base_id().to_string()
}

/// The `Trace ID: …` the demo printed.
fn trace_id(stdout: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("Trace ID: "))
        .unwrap_or_default()
        .trim()
        .to_owned()
}

#[test]
fn hmac_keys_in_headers_and_demo() {
    let secrets = Secrets::new(3);
    let mut n = 0;
    assert_hidden(&secrets, "CLI with an HMAC key", |secret| {
        n += 1;
        let mut out = outputs("headers", &["trace", "headers", "--hmac-key", secret], None);
        out.extend(outputs(
            "headers with ids",
            &[
                "trace",
                "headers",
                "--hmac-key",
                secret,
                "--base-id",
                ID,
                "--parent-id",
                "not-a-uuid",
            ],
            None,
        ));
        // The embedded store (in the scratch data directory), then a file store.
        let html = scratch().join(format!("k{n}.html"));
        let demo = outputs(
            "demo",
            &[
                "demo",
                "--hmac-key",
                secret,
                "--out",
                html.to_str().unwrap_or_default(),
            ],
            None,
        );
        assert!(
            demo[0].1.contains("only the profiled one traced"),
            "{demo:?}"
        );
        let base = trace_id(&demo[0].1);
        out.extend(demo);
        out.push((
            "demo HTML file".into(),
            std::fs::read_to_string(&html).unwrap_or_default(),
        ));
        for format in ["--json", "--html", "--dot"] {
            out.extend(outputs(
                &format!("show {format}"),
                &["trace", "show", &base, format],
                None,
            ));
        }
        out.extend(outputs("list", &["trace", "list"], None));
        let file = scratch().join(format!("k{n}.jsonl"));
        let file_cs = format!("file://{}", file.display());
        out.extend(outputs(
            "demo to a file",
            &[
                "demo",
                "--hmac-key",
                secret,
                "--connection-string",
                &file_cs,
            ],
            None,
        ));
        out.push((
            "stored events".into(),
            std::fs::read_to_string(&file).unwrap_or_default(),
        ));
        out
    });
}
