//! Our `osprofiler` command on the message bus (`messaging://`, a real RabbitMQ node):
//! it shows a trace Python osprofiler 4.4.0 published through oslo.messaging with the tree
//! Python's own command shows for another such trace, says the bus cannot list, and never
//! shows the broker's password.

use std::process::{Command, Output};

use osprofiler_testkit::{Oracle, RabbitMqServer, TWO_SERVICE_TRACE, need};
use serde_json::Value;

fn ours(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_osprofiler"))
        .args(args)
        .env_remove("OSPROFILER_CONNECTION_STRING")
        .env_remove("OSPROFILER_TRANSPORT_URL")
        .output()
        .expect("run osprofiler")
}

fn names(node: &Value, out: &mut Vec<String>) {
    for c in node["children"].as_array().into_iter().flatten() {
        out.push(format!(
            "{}:{}:{}:{}",
            c["info"]["service"].as_str().unwrap_or(""),
            c["info"]["host"].as_str().unwrap_or(""),
            c["info"]["name"].as_str().unwrap_or(""),
            c["info"]["exception"]
        ));
        names(c, out);
    }
}

fn tree(v: &Value) -> Vec<String> {
    let mut out = Vec::new();
    names(v, &mut out);
    out
}

#[test]
fn our_cli_shows_what_python_published() {
    let Some(mq) = need("rabbitmq-server", RabbitMqServer::start()) else {
        return;
    };
    let Some(py) = need("python osprofiler oracle", Oracle::locate()) else {
        return;
    };
    let Some(()) = need(
        "oslo.messaging in the oracle venv",
        py.python("import oslo_messaging", &[]).map(|_| ()),
    ) else {
        return;
    };
    let url = mq.transport_url();
    let script = TWO_SERVICE_TRACE.replace(
        "conf=cfg.CONF)",
        "conf=cfg.CONF, context={}, transport_url=sys.argv[2])",
    );
    let publish = || {
        py.python(&script, &["messaging://", &url])
            .unwrap()
            .trim()
            .to_owned()
    };
    let (first, second) = (publish(), publish());

    let o = ours(&[
        "trace",
        "show",
        &first,
        "--json",
        "--connection-string",
        "messaging://",
        "--transport-url",
        &url,
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mine: Value = serde_json::from_slice(&o.stdout).unwrap();
    // The second trace was left on the bus for Python's reader.
    let theirs: Value = serde_json::from_str(
        &py.cli(&[
            "trace",
            "show",
            "--connection-string",
            "messaging://",
            "--transport-url",
            &url,
            "--json",
            &second,
        ])
        .unwrap(),
    )
    .unwrap();
    assert_eq!(tree(&mine), tree(&theirs));
    assert_eq!(tree(&mine).len(), 4);
    assert!(
        tree(&mine)[3].contains("compute:h2:driver"),
        "{:?}",
        tree(&mine)
    );
    // The same points counted (durations are each trace's own).
    let counts = |v: &Value| -> Vec<(String, Value)> {
        v["stats"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, s)| (k.clone(), s["count"].clone()))
            .collect()
    };
    assert_eq!(counts(&mine), counts(&theirs));

    let o = ours(&[
        "trace",
        "list",
        "--connection-string",
        "messaging://",
        "--transport-url",
        &url,
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("cannot list traces"),
        "{err}"
    );

    // A refused login names the broker, never the password.
    let secret = "Zq8-not-the-password";
    let bad = format!("rabbit://guest:{secret}@127.0.0.1:{}/", mq.port());
    let o = ours(&[
        "trace",
        "show",
        &first,
        "--connection-string",
        "messaging://",
        "--transport-url",
        &bad,
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(!err.contains(secret) && !err.contains("not-the"), "{err}");
    assert!(err.contains("guest:***@127.0.0.1"), "{err}");
    // No transport URL: said so.
    let o = ours(&[
        "trace",
        "show",
        &first,
        "--connection-string",
        "messaging://",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("--transport-url"), "{err}");
}
