//! `osprofiler trace show/list --connection-string rediscluster://…` on traces written
//! through the cluster sink into a real 3-master Redis Cluster.

use std::process::{Command, Output};

use osprofiler::{Event, Timestamp};
use osprofiler_store::{Options, sink};
use osprofiler_testkit::{RedisCluster, need};
use serde_json::{Value, json};

fn osprofiler(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_osprofiler"))
        .args(args)
        .output()
        .expect("run osprofiler")
}

fn event(base: &str, id: &str, parent: &str, name: &str, at_us: i64, info: Value) -> Event {
    let v = json!({
        "name": name, "base_id": base, "trace_id": id, "parent_id": parent,
        "timestamp": Timestamp(1_764_072_000_000_000 + at_us).to_string(),
        "info": info, "project": "nova", "service": "api",
    });
    Event::from_json(&v.to_string()).expect("valid event")
}

#[test]
fn show_and_list_from_a_redis_cluster() {
    let Some(cluster) = need("redis cluster", RedisCluster::start()) else {
        return;
    };
    let url = cluster.url();
    let opts = Options {
        filter_error_trace: true,
        ..Options::default()
    };
    let mut w = sink(&url.parse().unwrap(), &opts).unwrap();
    let mut bases = Vec::new();
    for n in 0..20_i64 {
        let base = format!("aaaaaaaa-0000-4000-8000-{n:012}");
        let (p, d) = (
            format!("bbbbbbbb{}", &base[8..]),
            format!("cccccccc{}", &base[8..]),
        );
        let t = n * 10_000;
        let stop = if n == 3 {
            json!({"host": "h", "etype": "OperationalError", "message": "gone"})
        } else {
            json!({"host": "h"})
        };
        w.write(&[
            event(&base, &p, &base, "wsgi-start", t, json!({"host": "h"})),
            event(&base, &d, &p, "db-start", t + 10, json!({"host": "h"})),
            event(&base, &d, &p, "db-stop", t + 20, stop),
            event(&base, &p, &base, "wsgi-stop", t + 30, json!({"host": "h"})),
        ])
        .unwrap();
        bases.push(base);
    }

    let o = osprofiler(&["trace", "show", &bases[3], "--connection-string", &url]);
    assert!(o.status.success(), "{o:?}");
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["children"][0]["info"]["name"], "wsgi");
    let db = &report["children"][0]["children"][0]["info"];
    assert_eq!(db["name"], "db");
    assert_eq!(db["exception"], "OperationalError");

    let o = osprofiler(&["trace", "list", "--connection-string", &url]);
    assert!(o.status.success(), "{o:?}");
    let table = String::from_utf8(o.stdout).unwrap();
    let rows: Vec<&str> = table
        .lines()
        .filter(|l| l.starts_with("| ") && !l.contains("Trace ID"))
        .collect();
    assert_eq!(rows.len(), 20, "{table}");
    assert!(rows[0].contains(&bases[19]), "newest first: {table}");
    assert!(rows[19].contains(&bases[0]), "{table}");

    let o = osprofiler(&[
        "trace",
        "list",
        "--error-trace",
        "--connection-string",
        &url,
    ]);
    assert!(o.status.success(), "{o:?}");
    let table = String::from_utf8(o.stdout).unwrap();
    assert!(
        table.contains(&bases[3]) && !table.contains(&bases[4]),
        "{table}"
    );

    // A wrong password is one line naming the cluster, password hidden.
    let wrong = url.replace("rediscluster://", "rediscluster://:n0t-the-pw@");
    let o = osprofiler(&["trace", "list", "--connection-string", &wrong]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!err.contains("n0t-the-pw"), "{err}");
}
