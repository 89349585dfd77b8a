//! A password or a key never shows (issue 9, "Secrets"): random secrets (see
//! `osprofiler_testkit::secrets`), put in connection strings of every scheme and every
//! malformation, given to real Redis servers that refuse them or accept them, and used as
//! HMAC keys; every output (`Display`, `Debug`, `redact`, errors, stored texts, reports) is
//! searched for the secret and for every piece of it of four characters or more, raw and
//! percent-encoded.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Once;
use std::time::Duration;

use common::Sentinel;
use osprofiler::config::{Ini, ProfilerConf};
use osprofiler::notifier::{self, MemorySink};
use osprofiler::{HmacKey, HmacKeys, Info, TraceContext};
use osprofiler_report::{Report, render_dot, render_html};
use osprofiler_store::{ConnectionString, Options, TraceStore, redact};
use osprofiler_testkit::secrets::{Outputs, Secrets, assert_hidden, percent_encode};
use osprofiler_testkit::{RedisServer, free_port, need};

/// `sqlite://u:pw@/x.db` is the relative path `u:pw@/x.db`: the sinks made here create
/// files relative to the working directory, which is a scratch directory under `target/`.
fn scratch_cwd() -> PathBuf {
    static ONCE: Once = Once::new();
    // One per process: nextest runs each test in a process of its own, and a shared
    // directory was removed by one while another had just made it its working directory.
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("secrets-cwd-{}", std::process::id()));
    ONCE.call_once(|| {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch directory");
        std::env::set_current_dir(&dir).expect("chdir to the scratch directory");
    });
    dir
}

fn options() -> Options {
    Options {
        socket_timeout: Duration::from_millis(300),
        ..Options::default()
    }
}

/// The ways a secret is written as a password: raw (reserved characters unescaped, so the
/// string is often malformed) and percent-encoded (well-formed), with no user, with a user,
/// and alone before the `@` (redis-py reads a lone user info as the password).
///
/// A raw lone secret is left to [`lone_secrets`]: in `redis://ab:cd@h`, `ab` is a user
/// name by URL syntax (redis-py reads it so too), and user names are shown, as
/// SQLAlchemy's and redis-py's URLs show them: only the password is hidden.
fn userinfos(secret: &str) -> Vec<(String, String)> {
    let enc = percent_encode(secret);
    vec![
        ("raw :pw".into(), format!(":{secret}")),
        ("raw user:pw".into(), format!("admin:{secret}")),
        ("encoded :pw".into(), format!(":{enc}")),
        ("encoded user:pw".into(), format!("admin:{enc}")),
        ("encoded pw".into(), enc.clone()),
        // A bad %-escape after the password, and one that is not UTF-8.
        ("bad escape".into(), format!(":{enc}%zz")),
        ("not UTF-8".into(), format!(":{enc}%C3")),
    ]
}

/// Connection strings for the user info `info`: every scheme, lists, and malformations.
fn connection_strings(info: &str, dir: &Path, port: u16) -> Vec<(&'static str, String)> {
    let d = dir.display();
    vec![
        ("redis", format!("redis://{info}@127.0.0.1:{port}/0")),
        (
            "rediss",
            format!("rediss://{info}@127.0.0.1:{port}/1?ssl_cert_reqs=none"),
        ),
        (
            "redissentinel",
            format!("redissentinel://{info}@127.0.0.1:{port},127.0.0.1:{port}/0"),
        ),
        (
            "rediscluster",
            format!("rediscluster://{info}@127.0.0.1:{port},127.0.0.1:{port}"),
        ),
        ("no cluster node", format!("rediscluster://{info}@")),
        ("bad cluster port", format!("rediscluster://{info}@h:1,h:x")),
        ("cluster database", format!("rediscluster://{info}@h:1/3")),
        ("sqlite absolute", format!("sqlite://{info}@{d}/t.db")),
        ("sqlite relative", format!("sqlite://{info}@/t.db")),
        ("file", format!("file://{info}@{d}/e.jsonl")),
        (
            "postgresql",
            format!("postgresql://{info}@127.0.0.1:{port}/db"),
        ),
        (
            "postgresql+psycopg2",
            format!("postgresql+psycopg2://{info}@127.0.0.1:{port}"),
        ),
        ("mysql", format!("mysql://{info}@127.0.0.1:{port}/db")),
        (
            "mysql+pymysql",
            format!("mysql+pymysql://{info}@127.0.0.1:{port}/db?charset=utf8mb4"),
        ),
        (
            "mysql, no database",
            format!("mysql://{info}@127.0.0.1:{port}"),
        ),
        (
            "postgresql, TLS asked",
            format!("postgresql://{info}@127.0.0.1:{port}/db?sslmode=require"),
        ),
        (
            "postgresql, bad port",
            format!("postgresql://{info}@h:x/db"),
        ),
        ("otlp (refused)", format!("otlp://{info}@127.0.0.1:{port}")),
        (
            "otlps+grpc (refused)",
            format!("otlps+grpc://{info}@127.0.0.1"),
        ),
        (
            "jaeger (refused)",
            format!("jaeger://{info}@127.0.0.1:{port}"),
        ),
        (
            "unknown scheme",
            format!("mongodb://{info}@127.0.0.1:{port}/db"),
        ),
        (
            "upper-case scheme",
            format!("REDIS://{info}@127.0.0.1:{port}"),
        ),
        ("no scheme", format!("{info}@127.0.0.1:{port}")),
        ("one slash", format!("redis:/{info}@127.0.0.1:{port}")),
        (
            "list, secret first",
            format!("redis://{info}@127.0.0.1:{port} otlp://127.0.0.1:{port}"),
        ),
        (
            "list, secret last",
            format!("sqlite://{d}/l.db, redis://{info}@127.0.0.1:{port}/2"),
        ),
        (
            "list of two secrets",
            format!("redis://{info}@127.0.0.1:{port} redissentinel://{info}@127.0.0.1:{port}"),
        ),
        ("bad port", format!("redis://{info}@127.0.0.1:abc")),
        ("port 0", format!("redis://{info}@127.0.0.1:0")),
        ("port too big", format!("rediss://{info}@127.0.0.1:99999")),
        ("bad db", format!("redis://{info}@127.0.0.1:{port}/x")),
        ("bad db option", format!("redis://{info}@127.0.0.1?db=x")),
        ("no host", format!("redis://{info}@")),
        ("no host, port", format!("redis://{info}@:6379/0")),
        ("no sentinel", format!("redissentinel://{info}@/0")),
        (
            "bad ssl_cert_reqs",
            format!("rediss://{info}@h?ssl_cert_reqs=maybe"),
        ),
        (
            "unknown option",
            format!("otlp://{info}@h?compression=gzip"),
        ),
        ("unclosed [", format!("redis://{info}@[::1:6379")),
        (
            "bad sentinel port",
            format!("redissentinel://{info}@h:1,h:x/0"),
        ),
        (
            "trailing junk",
            format!("redis://{info}@127.0.0.1:{port}/0#frag ment"),
        ),
    ]
}

/// Everything shown of a connection string: its redaction, what it parses to, the
/// errors of parsing, opening and writing.
fn shown(cs: &str) -> Outputs {
    let mut out: Outputs = vec![("redact".into(), redact(cs))];
    let mut push = |what: &str, text: String| out.push((what.to_owned(), text));
    match cs.parse::<ConnectionString>() {
        Ok(c) => {
            push("ConnectionString Display", c.to_string());
            push("ConnectionString Debug", format!("{c:?}"));
            match &c {
                ConnectionString::Redis(t) => push("RedisTarget Debug", format!("{t:?}")),
                ConnectionString::Otlp(t) => push("OtlpTarget Debug", format!("{t:?}")),
                ConnectionString::Jaeger(t) => push("JaegerTarget Debug", format!("{t:?}")),
                ConnectionString::Sql(t) => push("SqlTarget Debug", format!("{t:?}")),
                _ => {}
            }
        }
        Err(e) => {
            push("ConnectionString error", e.to_string());
            push("ConnectionString error Debug", format!("{e:?}"));
        }
    }
    match osprofiler_store::resolve(Some(cs), None) {
        Ok(b) => {
            push("Backends Display", b.to_string());
            push("Backends Debug", format!("{b:?}"));
            match osprofiler_store::open_first_readable(&b, &options()) {
                Ok(mut store) => {
                    push("describe", store.describe());
                    match store.list_traces(Some(5)) {
                        Ok(list) => push("list", format!("{list:?}")),
                        Err(e) => {
                            push("ReadError", e.to_string());
                            push("ReadError Debug", format!("{e:?}"));
                        }
                    }
                }
                Err(e) => {
                    push("OpenError (read)", e.to_string());
                    push("OpenError (read) Debug", format!("{e:?}"));
                }
            }
            for (i, c) in b.iter().enumerate() {
                match osprofiler_store::sink(c, &options()) {
                    Ok(mut sink) => {
                        if let Err(e) = sink.write(&[]).and_then(|()| sink.flush()) {
                            push(&format!("SinkError {i}"), e.to_string());
                            push(&format!("SinkError {i} Debug"), format!("{e:?}"));
                        }
                    }
                    Err(e) => {
                        push(&format!("OpenError (write) {i}"), e.to_string());
                        push(&format!("OpenError (write) {i} Debug"), format!("{e:?}"));
                    }
                }
            }
        }
        Err(e) => {
            push("Backends error", e.to_string());
            push("Backends error Debug", format!("{e:?}"));
        }
    }
    // As a `[profiler] connection_string` (failing ones only: a success would install the
    // process-wide notifier).
    let mut conf = ProfilerConf::default();
    conf.connection_string = Some(cs.to_owned());
    push("ProfilerConf Debug", format!("{conf:?}"));
    if osprofiler_store::resolve(Some(cs), None).is_err() {
        match osprofiler_store::init_from_conf(&conf, "p", "s", "h") {
            Err(e) => {
                push("store InitError", e.to_string());
                push("store InitError Debug", format!("{e:?}"));
            }
            Ok(_) => panic!("{cs:?} did not parse, yet init_from_conf took it"),
        }
    }
    for (_, text) in &out {
        assert!(!text.contains('\n'), "not one line: {text:?}");
    }
    out
}

#[test]
fn connection_strings_of_every_scheme_and_malformation() {
    let dir = scratch_cwd();
    let secrets = Secrets::new(6);
    // Nothing listens there: connecting is refused at once.
    let port = free_port();
    assert_hidden(&secrets, "connection strings", |secret| {
        let mut out = Outputs::new();
        for (form, info) in userinfos(secret) {
            for (what, cs) in connection_strings(&info, &dir, port) {
                for (label, text) in shown(&cs) {
                    out.push((format!("{what}, {form}: {label}"), text));
                }
            }
        }
        out
    });
}

#[test]
fn lone_secrets_are_passwords() {
    let dir = scratch_cwd();
    let mut secrets = Secrets::new(6);
    // Without `:`, a lone user info is all password (see `userinfos`).
    for s in &mut secrets.list {
        *s = s.replace(':', "");
    }
    let port = free_port();
    assert_hidden(&secrets, "lone secrets", |secret| {
        let mut out = Outputs::new();
        for (what, cs) in connection_strings(secret, &dir, port) {
            for (label, text) in shown(&cs) {
                out.push((format!("{what}, lone: {label}"), text));
            }
        }
        out
    });
}

/// What a Redis store and sink say when the server takes or refuses `password`.
fn redis_outputs(cs: &str) -> Outputs {
    let mut out = Outputs::new();
    let c: ConnectionString = cs.parse().expect("well-formed");
    match osprofiler_store::open(&c, &options()) {
        Ok(mut store) => {
            out.push(("describe".into(), store.describe()));
            match store.list_traces(None) {
                Ok(l) => out.push(("list".into(), format!("{l:?}"))),
                Err(e) => out.push(("ReadError".into(), format!("{e} / {e:?}"))),
            }
        }
        Err(e) => out.push(("OpenError (read)".into(), format!("{e} / {e:?}"))),
    }
    match osprofiler_store::sink(&c, &options()) {
        Ok(mut s) => {
            if let Err(e) = s.write(&[]) {
                out.push(("SinkError".into(), format!("{e} / {e:?}")));
            }
        }
        Err(e) => out.push(("OpenError (write)".into(), format!("{e} / {e:?}"))),
    }
    out
}

#[test]
fn redis_servers_that_refuse_the_password() {
    let secrets = Secrets::new(5);
    let other = secrets.other();
    // Wants another password: WRONGPASS.
    let Some(wants_other) = need(
        "redis-server",
        RedisServer::start_with(&["--requirepass", &other]),
    ) else {
        return;
    };
    // AUTH renamed away: redis-server answers "unknown command 'AUTH', with args beginning
    // with: '<password>'", quoting it.
    let Some(no_auth) = need(
        "redis-server",
        RedisServer::start_with(&["--rename-command", "AUTH", ""]),
    ) else {
        return;
    };
    // Both, set up on the harness's connection (AUTH could not open one): unknown commands
    // are refused before the password is asked for, so AUTH is still quoted back.
    let Some(both) = need(
        "redis-server",
        RedisServer::start_with(&["--rename-command", "AUTH", ""]),
    ) else {
        return;
    };
    both.cmd(&["CONFIG", "SET", "requirepass", &other])
        .expect("CONFIG SET requirepass");
    // Real sentinels: one that wants the other password itself (NOAUTH, then our AUTH is
    // refused), one that names a master wanting the other password.
    let Some(guarded) = need(
        "redis-server --sentinel",
        Sentinel::start(&monitoring(&wants_other), Some(&other)),
    ) else {
        return;
    };
    let Some(open_sentinel) = need(
        "redis-server --sentinel",
        Sentinel::start(&monitoring(&wants_other), None),
    ) else {
        return;
    };
    let mut errors = Vec::new();
    assert_hidden(&secrets, "refusing redis servers", |secret| {
        let pw = percent_encode(secret);
        let mut out = Outputs::new();
        for (port, name) in [
            (guarded.port, "sentinel wants a password"),
            (open_sentinel.port, "sentinel"),
        ] {
            let cs = format!("redissentinel://:{pw}@127.0.0.1:{port}/0");
            for (label, text) in redis_outputs(&cs) {
                errors.push(text.clone());
                out.push((format!("{name}: {label}"), text));
            }
        }
        for (server, name) in [
            (&wants_other, "requirepass"),
            (&no_auth, "no AUTH"),
            (&both, "both"),
        ] {
            let p = server.port();
            for cs in [
                format!("redis://:{pw}@127.0.0.1:{p}"),
                format!("redis://default:{pw}@127.0.0.1:{p}/3"),
                format!("redis://{pw}@127.0.0.1:{p}"),
                format!("redissentinel://:{pw}@127.0.0.1:{p}/0"),
                format!("rediscluster://:{pw}@127.0.0.1:{p}"),
                format!("rediscluster://default:{pw}@127.0.0.1:{p},127.0.0.1:{p}"),
            ] {
                for (label, text) in redis_outputs(&cs) {
                    errors.push(text.clone());
                    out.push((format!("{name}, {}: {label}", redact(&cs)), text));
                }
            }
        }
        out
    });
    // They did refuse, and said why.
    let all = errors.join("\n");
    assert!(all.contains("WRONGPASS"), "{all}");
    assert!(all.contains("ERR unknown command"), "{all}");
    assert!(all.contains("ERR unknown command (the rest"), "{all}");
    assert!(all.contains("(from sentinel 127.0.0.1:"), "{all}");
    assert!(all.contains("no sentinel gave the master"), "{all}");
}

/// The config of a sentinel monitoring `master` as `mymaster`, with its password.
fn monitoring(master: &RedisServer) -> String {
    let mut text = format!("sentinel monitor mymaster 127.0.0.1 {} 1\n", master.port());
    if let Some(auth) = master.password() {
        text.push_str(&format!("sentinel auth-pass mymaster \"{auth}\"\n"));
    }
    text
}

#[test]
fn hmac_keys_and_passwords_in_traces_stores_and_reports() {
    let dir = scratch_cwd();
    let secrets = Secrets::new(5);
    let memory = MemorySink::new();
    let _notifier = notifier::set_sink(memory.clone());
    let redis_with = |pw: &str| {
        need(
            "redis-server",
            RedisServer::start_with(&["--requirepass", pw]),
        )
    };
    let mut run = 0;
    assert_hidden(&secrets, "keys and passwords in use", |secret| {
        run += 1;
        let mut out = Outputs::new();
        let key = HmacKey::new(secret).expect("not empty");
        out.push(("HmacKey Debug".into(), format!("{key:?}")));
        let keys = HmacKeys::parse(&format!("{secret},{secret}"));
        out.push(("HmacKeys Debug".into(), format!("{keys:?}")));
        let ini = format!(
            "[profiler]\nenabled = true\nhmac_keys = {secret}, other\n\
             connection_string = redis://:{}@127.0.0.1:6379\n\
             transport_url = rabbit://guest:{}@127.0.0.1:5672/\nes_password = {secret}\n",
            percent_encode(secret),
            percent_encode(secret)
        );
        match Ini::parse(&ini) {
            Ok(i) => out.push(("Ini Debug".into(), format!("{i:?}"))),
            Err(e) => out.push(("Ini error".into(), format!("{e} / {e:?}"))),
        }
        match ProfilerConf::from_ini_str(&ini) {
            Ok(c) => out.push(("ProfilerConf Debug".into(), format!("{c:?}"))),
            Err(e) => out.push(("ProfilerConf error".into(), format!("{e} / {e:?}"))),
        }

        // A trace signed with the key: headers, events, stored texts, reports.
        memory.take();
        let ctx = TraceContext::new(Some(key.clone()), None, None);
        let h = ctx.headers().expect("signed");
        out.push(("X-Trace-Info".into(), h.info.clone()));
        out.push(("X-Trace-HMAC".into(), h.hmac.clone()));
        out.push(("TraceContext Debug".into(), format!("{ctx:?}")));
        ctx.in_scope(|| {
            let _wsgi = osprofiler::point_with(
                "wsgi",
                Info::new().with(
                    "request",
                    serde_json::json!({"path": "/v2.1/servers", "query": "", "method": "GET", "scheme": "http"}),
                ),
            );
            let mut db = osprofiler::point("db");
            db.set_error("ValueError", "boom");
        });
        notifier::flush().expect("flush");
        let events = memory.take();
        assert_eq!(events.len(), 4);
        for (i, e) in events.iter().enumerate() {
            out.push((format!("event {i} JSON"), e.to_json()));
            out.push((format!("event {i} Debug"), format!("{e:?}")));
        }
        let base = ctx.base_id().to_string();
        // Each store, one with the secret as its password.
        let Some(redis) = redis_with(secret) else {
            return out;
        };
        let stores = [
            format!("sqlite://{}/k{run}.db", dir.display()),
            format!("file://{}/k{run}.jsonl", dir.display()),
            format!(
                "redis://:{}@127.0.0.1:{}/0",
                percent_encode(secret),
                redis.port()
            ),
        ];
        for (name, cs) in ["sqlite", "file", "redis"].into_iter().zip(&stores) {
            // Labels are the same in the twin's run (not the file or the port): its outputs
            // are looked up by them.
            let c: ConnectionString = cs.parse().expect("well-formed");
            out.push((format!("{name}: Display"), c.to_string()));
            let mut sink = osprofiler_store::sink(&c, &options()).expect("sink");
            sink.write(&events).expect("write");
            sink.flush().expect("flush");
            drop(sink);
            let mut store: Box<dyn TraceStore> =
                osprofiler_store::open(&c, &options()).expect("open");
            out.push((format!("{name}: describe"), store.describe()));
            let texts = store.event_texts(&base).expect("texts");
            assert_eq!(texts.len(), 4, "{name}");
            out.push((format!("{name}: stored texts"), texts.join("\n")));
            out.push((
                format!("{name}: list"),
                format!("{:?}", store.list_traces(None).expect("list")),
            ));
            let report: Report = store.report(&base).expect("read").expect("stored");
            out.push((format!("{name}: report JSON"), report.to_json_string()));
            out.push((format!("{name}: report HTML"), render_html(&report, &base)));
            out.push((format!("{name}: report DOT"), render_dot(&report)));
        }
        // Everything the server holds.
        let keys = redis.cmd(&["KEYS", "*"]).expect("KEYS");
        out.push(("redis KEYS".into(), format!("{keys:?}")));
        out
    });
}

/// `messaging://`'s transport URL (`--transport-url`, `transport_url`): every form of a
/// secret as its password, well-formed or not, one host or several; parsed, shown, in
/// `Options`' `Debug`, and in the errors of a store and a sink whose broker is not there.
#[cfg(feature = "messaging")]
#[test]
fn transport_urls_of_every_form() {
    use osprofiler_store::TransportUrl;
    let secrets = Secrets::new(4);
    let port = free_port();
    assert_hidden(&secrets, "transport URLs", |secret| {
        let mut out = Outputs::new();
        for (form, info) in userinfos(secret) {
            for (what, url) in [
                ("one host", format!("rabbit://{info}@127.0.0.1:{port}/")),
                ("vhost", format!("rabbit://{info}@127.0.0.1:{port}/cloud")),
                (
                    "two hosts",
                    format!("rabbit://{info}@127.0.0.1:{port},{info}@localhost:{port}/"),
                ),
                ("bad port", format!("rabbit://{info}@h:99999/")),
                ("amqp", format!("amqp://{info}@h/")),
                ("no scheme", format!("{info}@h:5672")),
            ] {
                let mut push = |label: &str, text: String| {
                    out.push((format!("{what}, {form}: {label}"), text))
                };
                match url.parse::<TransportUrl>() {
                    Ok(t) => {
                        push("Display", t.to_string());
                        push("Debug", format!("{t:?}"));
                        let o = Options {
                            transport_url: Some(t),
                            ..options()
                        };
                        push("Options Debug", format!("{o:?}"));
                        match osprofiler_store::open(&ConnectionString::Messaging, &o) {
                            Ok(s) => push("describe", s.describe()),
                            Err(e) => {
                                push("OpenError", e.to_string());
                                push("OpenError Debug", format!("{e:?}"));
                            }
                        }
                        match osprofiler_store::sink(&ConnectionString::Messaging, &o) {
                            Ok(mut s) => {
                                let e = s
                                    .write(&[sample_event()])
                                    .expect_err("nothing listens there");
                                push("SinkError", e.to_string());
                                push("SinkError Debug", format!("{e:?}"));
                            }
                            Err(e) => push("OpenError (write)", e.to_string()),
                        }
                    }
                    Err(e) => {
                        push("error", e.to_string());
                        push("error Debug", format!("{e:?}"));
                    }
                }
            }
        }
        for (_, text) in &out {
            assert!(!text.contains('\n'), "not one line: {text:?}");
        }
        out
    });
}

#[cfg(feature = "messaging")]
fn sample_event() -> osprofiler::Event {
    osprofiler::Event::from_json(
        r#"{"name": "db-start", "base_id": "11111111-1111-4111-8111-111111111111", "trace_id": "aaaaaaaa-aaaa-4aaa-8aaa-000000000002", "parent_id": "11111111-1111-4111-8111-111111111111", "timestamp": "2026-11-25T12:00:00.001375", "info": {"host": "h"}, "project": "nova", "service": "api"}"#,
    )
    .unwrap()
}

/// A real RabbitMQ node refusing the password: the store's and the sink's errors name the
/// broker, never the password.
#[cfg(feature = "messaging")]
#[test]
fn a_broker_that_refuses_the_password() {
    use osprofiler_store::TransportUrl;
    use osprofiler_testkit::RabbitMqServer;
    let Some(mq) = need("rabbitmq-server", RabbitMqServer::start()) else {
        return;
    };
    let secrets = Secrets::new(3);
    assert_hidden(&secrets, "refused by RabbitMQ", |secret| {
        let mut out = Outputs::new();
        let url = format!(
            "rabbit://guest:{}@127.0.0.1:{}/",
            percent_encode(secret),
            mq.port()
        );
        let o = Options {
            transport_url: Some(url.parse::<TransportUrl>().unwrap()),
            ..Options::default()
        };
        match osprofiler_store::open(&ConnectionString::Messaging, &o) {
            Ok(_) => panic!("the broker took a wrong password"),
            Err(e) => {
                assert!(e.to_string().contains("ACCESS_REFUSED"), "{e}");
                out.push(("OpenError".into(), e.to_string()));
                out.push(("OpenError Debug".into(), format!("{e:?}")));
            }
        }
        match osprofiler_store::sink(&ConnectionString::Messaging, &o) {
            Ok(_) => panic!("a refused login is a configuration error"),
            Err(e) => out.push(("OpenError (write)".into(), e.to_string())),
        }
        out
    });
}
