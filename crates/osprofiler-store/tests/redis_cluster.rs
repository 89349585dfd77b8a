//! `rediscluster://` against a real Redis Cluster of 3 masters + 3 replicas
//! (`redis-server --cluster-enabled yes`, joined by `redis-cli --cluster create`), one
//! cluster per test: events in the right slots and spread over the masters, reports and
//! lists read back, `MOVED` after a slot migrated, `ASK` during a migration, a master
//! killed under load. Each test skips (or fails under `CI=true`) without redis-server or
//! redis-cli.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use common::cs;
use common::text::{T0, uuid, wsgi_db};
use osprofiler::{Event, Timestamp};
use osprofiler_store::{Options, open, sink};
use osprofiler_testkit::{RedisCluster, need};
use serde_json::{Value, json};

fn opts() -> Options {
    Options {
        socket_timeout: Duration::from_secs(2),
        filter_error_trace: true,
        ..Options::default()
    }
}

/// A two-point trace starting at `T0 + start`: wsgi with a db point inside, the db point
/// failing when `error`.
fn trace(base: &str, start: i64, error: bool) -> Vec<Event> {
    let stop = if error {
        json!({"etype": "OperationalError", "message": "gone"})
    } else {
        json!({})
    };
    wsgi_db(
        base,
        start,
        json!({"request": {"path": "/"}}),
        json!({"db": {"statement": "SELECT 1"}}),
        stop,
    )
}

fn list_key(base: &str) -> String {
    format!("osprofiler_opt:{base}")
}

/// LLEN of `key` asked of the node on `port` itself (no redirection followed).
fn llen_on(c: &RedisCluster, port: u16, key: &str) -> Result<i64, String> {
    c.cmd_on(port, &["LLEN", key])?
        .as_int()
        .ok_or_else(|| "LLEN: not an integer".to_owned())
}

/// `calls` of `cmdstat_<cmd>` in INFO commandstats of the node on `port`.
fn calls(c: &RedisCluster, port: u16, cmd: &str) -> u64 {
    let info = c
        .cmd_on(port, &["INFO", "commandstats"])
        .unwrap()
        .into_string()
        .unwrap();
    let prefix = format!("cmdstat_{cmd}:calls=");
    info.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|r| r.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn dbsize(c: &RedisCluster, port: u16) -> i64 {
    c.cmd_on(port, &["DBSIZE"]).unwrap().as_int().unwrap()
}

#[test]
fn traces_land_in_their_slots_spread_over_the_masters_and_read_back() {
    let Some(cluster) = need("redis cluster", RedisCluster::start()) else {
        return;
    };
    let cs = cs(&cluster.url());
    let mut w = sink(&cs, &opts()).unwrap();
    const N: u32 = 300;
    // Batches of 30 traces, their events interleaved as the notifier hands them over.
    let mut events = Vec::new();
    for n in 0..N {
        events.extend(trace(&uuid(n), i64::from(n) * 1000, n % 10 == 0));
    }
    for batch in events.chunks(120) {
        w.write(batch).unwrap();
    }

    // Each trace's list is on the master of its slot, whole.
    let masters = cluster.master_ports().unwrap();
    assert_eq!(masters.len(), 3);
    let mut per_master: HashMap<u16, usize> = HashMap::new();
    for n in 0..N {
        let key = list_key(&uuid(n));
        let owner = cluster.master_of(cluster.keyslot(&key).unwrap()).unwrap();
        assert_eq!(
            llen_on(&cluster, owner, &key).unwrap(),
            4,
            "{key} on {owner}"
        );
        *per_master.entry(owner).or_default() += 1;
    }
    // Spread: every master holds traces, none most of them.
    let zadds: Vec<u64> = masters
        .iter()
        .map(|m| calls(&cluster, *m, "zadd"))
        .collect();
    // Per trace (each whole in one batch): its index entry and its summary; one more
    // per trace with an error.
    assert_eq!(zadds.iter().sum::<u64>(), u64::from(2 * N + N / 10));
    for (m, zadd) in masters.iter().zip(&zadds) {
        let n = per_master.get(m).copied().unwrap_or(0);
        assert!(n > N as usize / 6 && n < N as usize / 2, "{per_master:?}");
        // Lists, error markers and index shards: keys on every master.
        assert!(
            dbsize(&cluster, *m) > n as i64,
            "{m}: {}",
            dbsize(&cluster, *m)
        );
        // Index writes spread too: every master took ZADDs, none most of them.
        assert!(
            *zadd > 0 && *zadd < u64::from(2 * N + N / 10) / 2,
            "ZADD per master: {zadds:?}"
        );
    }
    // The index is sharded over 16 keys (never one sorted set taking every write).
    let shards: usize = masters
        .iter()
        .map(|m| {
            cluster
                .cmd_on(*m, &["KEYS", "osprofiler_index:*"])
                .unwrap()
                .into_strings()
                .unwrap()
                .len()
        })
        .sum();
    assert_eq!(shards, 16);

    // The read side: a report as written, the lists merged from every shard.
    let mut r = open(&cs, &opts()).unwrap();
    let base = uuid(7);
    let report = r.report(&base).unwrap().expect("stored");
    assert_eq!(report.len(), 2, "two points");
    let json = report.to_json();
    assert_eq!(json["children"][0]["info"]["name"], "wsgi");
    assert_eq!(json["children"][0]["children"][0]["info"]["name"], "db");
    assert!(r.report(&uuid(999_999)).unwrap().is_none());
    let list = r.list_traces(None).unwrap();
    assert_eq!(list.len(), N as usize);
    let expect: Vec<String> = (0..N).rev().map(uuid).collect();
    let got: Vec<String> = list.iter().map(|s| s.base_id.clone()).collect();
    assert_eq!(got, expect, "newest first");
    assert_eq!(
        list[0].timestamp,
        Timestamp(T0 + i64::from(N - 1) * 1000).to_string()
    );
    assert_eq!(r.list_traces(Some(5)).unwrap().len(), 5);
    let errors: Vec<String> = r
        .list_error_traces(None)
        .unwrap()
        .into_iter()
        .map(|s| s.base_id)
        .collect();
    let expect: Vec<String> = (0..N).rev().filter(|n| n % 10 == 0).map(uuid).collect();
    assert_eq!(errors, expect);
    // Python's error marker, in its own slot.
    let marker = format!("osprofiler_error:{}", uuid(10));
    let owner = cluster
        .master_of(cluster.keyslot(&marker).unwrap())
        .unwrap();
    let v: Value = serde_json::from_str(
        &cluster
            .cmd_on(owner, &["GET", &marker])
            .unwrap()
            .into_string()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(v["base_id"], uuid(10));

    // Expired traces leave the lists (their index entries are removed).
    let gone = list_key(&uuid(N - 1));
    let owner = cluster.master_of(cluster.keyslot(&gone).unwrap()).unwrap();
    cluster.cmd_on(owner, &["DEL", &gone]).unwrap();
    let list = r.list_traces(Some(1)).unwrap();
    assert_eq!(list[0].base_id, uuid(N - 2));
}

/// Moves `slot` from the master on `from` to the one on `to`, keys and all; when
/// `finish` is false, stops after the keys moved (the slot is still MIGRATING on `from`
/// and IMPORTING on `to`: clients get `ASK`).
fn migrate(c: &RedisCluster, slot: u16, from: u16, to: u16, finish: bool) {
    let (from_id, to_id) = (c.node_id(from).unwrap(), c.node_id(to).unwrap());
    let s = slot.to_string();
    c.cmd_on(to, &["CLUSTER", "SETSLOT", &s, "IMPORTING", &from_id])
        .unwrap();
    c.cmd_on(from, &["CLUSTER", "SETSLOT", &s, "MIGRATING", &to_id])
        .unwrap();
    loop {
        let keys = c
            .cmd_on(from, &["CLUSTER", "GETKEYSINSLOT", &s, "100"])
            .unwrap()
            .into_strings()
            .unwrap();
        if keys.is_empty() {
            break;
        }
        let port = to.to_string();
        let mut args = vec!["MIGRATE", "127.0.0.1", &port, "", "0", "5000", "KEYS"];
        args.extend(keys.iter().map(String::as_str));
        c.cmd_on(from, &args).unwrap();
    }
    if finish {
        for m in c.master_ports().unwrap() {
            c.cmd_on(m, &["CLUSTER", "SETSLOT", &s, "NODE", &to_id])
                .unwrap();
        }
    }
}

fn finish_migration(c: &RedisCluster, slot: u16, to: u16) {
    let to_id = c.node_id(to).unwrap();
    for m in c.master_ports().unwrap() {
        c.cmd_on(
            m,
            &["CLUSTER", "SETSLOT", &slot.to_string(), "NODE", &to_id],
        )
        .unwrap();
    }
}

/// The key of trace `base`'s events, its slot, the master holding it and another master.
fn slot_and_masters(c: &RedisCluster, base: &str) -> (String, u16, u16, u16) {
    let key = list_key(base);
    let slot = c.keyslot(&key).unwrap();
    let from = c.master_of(slot).unwrap();
    let to = *c
        .master_ports()
        .unwrap()
        .iter()
        .find(|&&m| m != from)
        .unwrap();
    (key, slot, from, to)
}

#[test]
fn moved_is_followed_after_a_slot_migrated() {
    let Some(cluster) = need("redis cluster", RedisCluster::start()) else {
        return;
    };
    let cs = cs(&cluster.url());
    let mut w = sink(&cs, &opts()).unwrap();
    let mut r = open(&cs, &opts()).unwrap();
    let base = uuid(1);
    let events = trace(&base, 0, false);
    w.write(&events[..2]).unwrap();
    assert_eq!(r.events(&base).unwrap().len(), 2);

    let (key, slot, from, to) = slot_and_masters(&cluster, &base);
    migrate(&cluster, slot, from, to, true);
    assert_eq!(llen_on(&cluster, to, &key).unwrap(), 2);
    // The old owner now redirects.
    let moved = cluster.cmd_on(from, &["LLEN", &key]).unwrap_err();
    assert!(moved.contains("MOVED"), "{moved}");

    // Both sides still route by their old map: MOVED, map refreshed, command resent.
    let (from_before, to_before) = (calls(&cluster, from, "lpush"), calls(&cluster, to, "lpush"));
    w.write(&events[2..]).unwrap();
    assert_eq!(llen_on(&cluster, to, &key).unwrap(), 4);
    // Refused (MOVED) by the old owner, run by the new one.
    assert_eq!(calls(&cluster, from, "lpush"), from_before);
    assert_eq!(calls(&cluster, to, "lpush"), to_before + 1);
    let report = r.report(&base).unwrap().expect("read through MOVED");
    assert_eq!(report.len(), 2);
    assert_eq!(r.list_traces(None).unwrap()[0].base_id, base);
}

#[test]
fn ask_is_followed_during_a_migration() {
    let Some(cluster) = need("redis cluster", RedisCluster::start()) else {
        return;
    };
    let cs = cs(&cluster.url());
    let mut w = sink(&cs, &opts()).unwrap();
    let mut r = open(&cs, &opts()).unwrap();
    let base = uuid(2);
    let events = trace(&base, 0, true);
    w.write(&events[..2]).unwrap();
    assert_eq!(r.events(&base).unwrap().len(), 2);

    let (key, slot, from, to) = slot_and_masters(&cluster, &base);
    // The key moved, the slot still migrating: the old owner answers ASK.
    migrate(&cluster, slot, from, to, false);
    let ask = cluster.cmd_on(from, &["LLEN", &key]).unwrap_err();
    assert!(ask.contains("ASK"), "{ask}");
    let asking_before = calls(&cluster, to, "asking");
    w.write(&events[2..]).unwrap();
    // The importing node serves the slot only after ASKING (on the same connection).
    cluster.cmd_on(to, &["ASKING"]).unwrap();
    assert_eq!(llen_on(&cluster, to, &key).unwrap(), 4);
    assert!(
        calls(&cluster, to, "asking") > asking_before + 1,
        "ASKING sent"
    );
    // The slot map is unchanged by ASK: the owner is still `from`.
    assert_eq!(cluster.master_of(slot).unwrap(), from);
    let report = r.report(&base).unwrap().expect("read through ASK");
    assert_eq!(report.len(), 2);

    finish_migration(&cluster, slot, to);
    assert_eq!(r.events(&base).unwrap().len(), 4);
    assert_eq!(r.list_error_traces(None).unwrap()[0].base_id, base);
}

#[test]
fn a_master_killed_under_load_is_replaced_and_writes_resume() {
    let Some(mut cluster) = need("redis cluster", RedisCluster::start()) else {
        return;
    };
    let cs = cs(&cluster.url());
    let mut w = sink(&cs, &opts()).unwrap();
    // One batch = 10 traces; written every 20 ms.
    let mut ok: Vec<u32> = Vec::new();
    let mut lost: Vec<u32> = Vec::new();
    let mut n = 0_u32;
    let mut write =
        |w: &mut Box<dyn osprofiler_store::Sink>, ok: &mut Vec<u32>, lost: &mut Vec<u32>| {
            let first = n;
            let mut events = Vec::new();
            for _ in 0..10 {
                events.extend(trace(&uuid(n), i64::from(n) * 1000, false));
                n += 1;
            }
            let r = w.write(&events);
            let ids = first..n;
            match r {
                Ok(()) => ok.extend(ids),
                Err(_) => lost.extend(ids),
            }
            r.is_ok()
        };
    for _ in 0..20 {
        assert!(write(&mut w, &mut ok, &mut lost));
    }
    // A reader opened before the failover, its map naming the master about to die.
    let mut r = open(&cs, &opts()).unwrap();
    assert_eq!(r.list_traces(None).unwrap().len(), 200);
    let victim = cluster.master_ports().unwrap()[0];
    // Replication is asynchronous: what the victim acknowledged is on its replica first
    // (else Redis Cluster itself may lose it, whatever the client).
    cluster.cmd_on(victim, &["WAIT", "1", "2000"]).unwrap();
    cluster.kill(victim);
    let killed = Instant::now();
    // Writes fail while the master is down, then resume once its replica took over.
    let mut failed_batches = 0;
    let mut resumed = None;
    while killed.elapsed() < Duration::from_secs(30) {
        if write(&mut w, &mut ok, &mut lost) {
            if failed_batches > 0 && resumed.is_none() {
                // Resumed only counts when a batch touching every master went through.
                resumed = Some(killed.elapsed());
            }
            if resumed.is_some() && ok.len() > 20 * 10 + 200 {
                break;
            }
        } else {
            failed_batches += 1;
            resumed = None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let resumed = resumed.expect("writes resumed after the failover");
    assert!(
        failed_batches > 0,
        "losses are reported while the master is down"
    );
    assert!(
        resumed < Duration::from_secs(20),
        "resumed after {resumed:?}"
    );
    cluster.wait_ok(3).unwrap();
    assert!(!cluster.master_ports().unwrap().contains(&victim));

    // The reader: every trace of a batch that succeeded is whole, the lost ones are
    // counted (each failed batch is an error of the sink), and the listing works.
    for &id in &ok {
        assert_eq!(r.events(&uuid(id)).unwrap().len(), 4, "trace {id}");
    }
    let listed: HashSet<String> = r
        .list_traces(None)
        .unwrap()
        .into_iter()
        .map(|s| s.base_id)
        .collect();
    for &id in &ok {
        assert!(listed.contains(&uuid(id)), "{id} listed");
    }
    assert!(!lost.is_empty());
    eprintln!(
        "failover: {} traces written, {} in {failed_batches} failed batches, writes resumed {resumed:?} after the kill",
        ok.len(),
        lost.len()
    );
}
