//! Redis trace summaries (`osprofiler_summary:<id>`) against a real redis-server: kept
//! right by two sinks writing the same traces at once, used by `search_traces` with its
//! filters and paging, and bypassed for traces Python wrote (alone or with us), which are
//! summarised from their events. The expected page is always the one built from each
//! trace's events (`TraceOverview::from_report`), so a summary that drifts fails here.

mod common;

use std::time::Duration;

use common::typed::{T0, event};
use common::{cs, expected};
use osprofiler::{Event, EventKind, Id, Timestamp};
use osprofiler_store::{Options, TraceOverview, TraceQuery, TraceStore, open, sink};
use osprofiler_testkit::{Oracle, RedisCluster, RedisServer, need};
use serde_json::{Value, json};

fn opts() -> Options {
    Options {
        socket_timeout: Duration::from_secs(5),
        ..Options::default()
    }
}

/// Trace `base` as two services' exporters send it: `compute`'s batch (an `rpc` point
/// under the db one, failing when `fail`), then `api`'s (the `wsgi` root,
/// `POST /v2.1/servers`, lasting `dur` µs, with a `db` child).
fn trace_batches(base: u128, start: i64, dur: i64, fail: bool) -> [Vec<Event>; 2] {
    common::typed::trace_batches(base, start, dur, fail.then_some("boom"))
}

fn id(base: u128) -> String {
    Id(base).to_string()
}

/// The queries every test checks, against `expected`.
fn queries() -> Vec<TraceQuery> {
    let q = TraceQuery::default;
    common::queries(
        T0,
        vec![
            TraceQuery {
                service: Some("nobody".into()),
                ..q()
            },
            TraceQuery {
                name: Some("rpc".into()),
                ..q()
            },
            TraceQuery {
                name: Some("SERVERS".into()),
                limit: Some(3),
                ..q()
            },
            TraceQuery {
                text: Some("build_INSTANCE".into()),
                limit: Some(4),
                ..q()
            },
        ],
    )
}

fn check_queries(store: &mut dyn TraceStore) {
    common::check_queries(store, queries());
}

/// `ZRANGE osprofiler_summary:<id> 0 -1 WITHSCORES` as (member, score) pairs.
fn summary_hash(redis: &RedisServer, base: &str) -> Vec<(String, String)> {
    let v = redis
        .cmd(&[
            "ZRANGE",
            &format!("osprofiler_summary:{base}"),
            "0",
            "-1",
            "WITHSCORES",
        ])
        .unwrap()
        .into_strings()
        .unwrap();
    v.chunks(2).map(|p| (p[0].clone(), p[1].clone())).collect()
}

/// A summary's (events, points): the sums over its `n:<writer>-<batch>:<points>` members.
fn counts(summary: &[(String, String)]) -> (i64, i64) {
    summary
        .iter()
        .filter(|(m, _)| m.starts_with("n:"))
        .map(|(m, v)| {
            let points = m.rsplit(':').next().unwrap().parse::<i64>().unwrap();
            (v.parse::<i64>().unwrap(), points)
        })
        .fold((0, 0), |(e, p), (de, dp)| (e + de, p + dp))
}

#[test]
fn two_sinks_writing_the_same_traces_at_once_keep_right_summaries() {
    let Some(redis) = need("redis-server", RedisServer::start()) else {
        return;
    };
    let url = redis.url();
    const N: u128 = 20;
    // Trace i starts i s after T0 and lasts (i + 1) ms; every third fails. Each sink
    // (its own connection, as another process's) writes one service's batches, both at once.
    let traces: Vec<[Vec<Event>; 2]> = (0..N)
        .map(|i| {
            trace_batches(
                (i + 1) << 64,
                T0 + i as i64 * 1_000_000,
                1000 * (i as i64 + 1),
                i % 3 == 0,
            )
        })
        .collect();
    std::thread::scope(|s| {
        for side in 0..2 {
            let (url, traces) = (&url, &traces);
            s.spawn(move || {
                let mut w = sink(&cs(url), &opts()).unwrap();
                for pair in traces.chunks(2) {
                    // Two traces per batch, each half a batch of its own.
                    let batch: Vec<Event> = pair.iter().flat_map(|t| t[side].clone()).collect();
                    let (a, b) = batch.split_at(batch.len() / 2);
                    w.write(a).unwrap();
                    w.write(b).unwrap();
                }
            });
        }
    });

    let mut store = open(&cs(&url), &opts()).unwrap();
    let all = store.search_traces(&TraceQuery::default()).unwrap();
    assert_eq!(all.traces.len(), N as usize);
    assert_eq!(all.traces[0].base_id, id(N << 64), "newest first");
    let t = all.traces.last().unwrap();
    assert_eq!(t.base_id, id(1 << 64));
    assert_eq!((t.started_us, t.duration_us(), t.points), (T0, 1000, 3));
    assert_eq!(t.services, ["api", "compute"]);
    assert_eq!(t.categories, ["db", "rpc", "wsgi"]);
    assert_eq!(
        t.root.as_ref().unwrap().label(),
        "api · wsgi · POST /v2.1/servers"
    );
    assert!(t.error);
    assert!(!all.traces[N as usize - 2].error);
    // The page really came from the summaries: one sorted set per trace, counting every
    // event, whichever sink's commands ran first.
    let h = summary_hash(&redis, &id(1 << 64));
    let field = |f: &str| h.iter().find(|(k, _)| k == f).map(|(_, v)| v.as_str());
    assert_eq!(counts(&h), (6, 3));
    assert_eq!(field("first"), Some(&*(-T0).to_string()));
    assert_eq!(field("s:compute"), Some("0"));
    let rank = field("root").unwrap().trim_start_matches('-').to_owned();
    assert_eq!(
        rank,
        T0.to_string(),
        "the root is the first-level point at T0"
    );
    assert!(
        h.iter()
            .any(|(m, _)| *m == format!("r:{rank}\napi\nwsgi\nPOST /v2.1/servers")),
        "{h:?}"
    );
    check_queries(&mut *store);

    // Python's CLI lists the same traces and ignores the hashes.
    if let Some(py) = need("python osprofiler oracle", Oracle::locate()) {
        let list = py
            .cli(&["trace", "list", "--connection-string", &url])
            .unwrap();
        for i in 1..=N {
            assert!(list.contains(&id(i << 64)), "{list}");
        }
        assert!(!list.contains("osprofiler_summary"), "{list}");
    }
}

#[test]
fn python_traces_alone_or_mixed_with_ours_are_summarised_from_their_events() {
    let Some(redis) = need("redis-server", RedisServer::start()) else {
        return;
    };
    let Some(py) = need("python osprofiler oracle", Oracle::locate()) else {
        return;
    };
    let url = redis.url();
    let python = py.write_two_service_trace(&url).unwrap();
    // A trace both sides write: ours has a summary, but Python's events are not in it.
    let mixed = py.write_two_service_trace(&url).unwrap();
    let mixed_id: osprofiler::Id = mixed.parse().unwrap();
    let mut w = sink(&cs(&url), &opts()).unwrap();
    let now = Timestamp::now().as_micros();
    use EventKind::{Start, Stop};
    w.write(&[
        event(
            mixed_id.0,
            7,
            mixed_id.0,
            "rpc",
            "scheduler",
            Start,
            now,
            json!({}),
        ),
        event(
            mixed_id.0,
            7,
            mixed_id.0,
            "rpc",
            "scheduler",
            Stop,
            now + 5,
            json!({}),
        ),
    ])
    .unwrap();
    // And traces of ours only.
    for i in 0..5u128 {
        for b in trace_batches((i + 1) << 64, T0 + i as i64 * 1_000_000, 3000, i == 2) {
            w.write(&b).unwrap();
        }
    }
    assert!(!summary_hash(&redis, &mixed).is_empty());
    assert!(summary_hash(&redis, &python).is_empty());

    let mut store = open(&cs(&url), &opts()).unwrap();
    let page = store.search_traces(&TraceQuery::default()).unwrap();
    assert_eq!(page.traces.len(), 7);
    for t in &page.traces {
        let report = store.report(&t.base_id).unwrap().unwrap();
        assert_eq!(*t, TraceOverview::from_report(&t.base_id, &report));
    }
    let p = page.traces.iter().find(|t| t.base_id == python).unwrap();
    assert_eq!(p.services, ["api", "compute"]);
    assert!(p.error);
    assert_eq!(
        p.root.as_ref().unwrap().label(),
        "api · wsgi · POST /v2.1/servers"
    );
    let m = page.traces.iter().find(|t| t.base_id == mixed).unwrap();
    assert_eq!(m.services, ["api", "compute", "scheduler"]);
    assert_eq!(m.points, p.points + 1);
    check_queries(&mut *store);

    // Python still reads every trace, ours included.
    let list = py
        .cli(&["trace", "list", "--connection-string", &url])
        .unwrap();
    assert!(
        list.contains(&python) && list.contains(&mixed) && list.contains(&id(1 << 64)),
        "{list}"
    );
    let shown: Value = py.show_json(&id(3 << 64), &url).unwrap();
    assert_eq!(
        shown,
        store.report(&id(3 << 64)).unwrap().unwrap().to_json()
    );
}

#[test]
fn summaries_expire_with_the_events() {
    let Some(redis) = need("redis-server", RedisServer::start()) else {
        return;
    };
    let url = redis.url();
    let o = Options {
        ttl: Some(Duration::from_millis(500)),
        ..opts()
    };
    let mut w = sink(&cs(&url), &o).unwrap();
    let [a, b] = trace_batches(1 << 64, T0, 2000, true);
    w.write(&a).unwrap();
    w.write(&b).unwrap();
    let base = id(1 << 64);
    let h = summary_hash(&redis, &base);
    assert_eq!(counts(&h), (6, 3), "{h:?}");
    assert!(h.contains(&("error".into(), "0".into())), "{h:?}");
    let ttl = redis
        .cmd(&["PTTL", &format!("osprofiler_summary:{base}")])
        .unwrap()
        .as_int()
        .unwrap();
    assert!(ttl > 0 && ttl <= 500, "{ttl}");
    let mut store = open(&cs(&url), &o).unwrap();
    let page = store.search_traces(&TraceQuery::default()).unwrap();
    assert_eq!(page.traces.len(), 1);
    assert_eq!(page, expected(&mut *store, &TraceQuery::default()));
    assert_eq!(page.traces[0].points, 3);
    std::thread::sleep(Duration::from_millis(700));
    assert!(
        summary_hash(&redis, &base).is_empty(),
        "expired with the events"
    );
    assert!(
        store
            .search_traces(&TraceQuery::default())
            .unwrap()
            .traces
            .is_empty()
    );
}

#[test]
fn a_summary_key_of_another_type_leaves_the_trace_summarised_from_its_events() {
    let Some(redis) = need("redis-server", RedisServer::start()) else {
        return;
    };
    let url = redis.url();
    // A hash where the summary goes (the layout of an older sink): its commands are
    // refused with WRONGTYPE, the events are stored all the same, and the search reads
    // them; the next trace still gets its summary.
    let old = id(1 << 64);
    redis
        .cmd(&["HSET", &format!("osprofiler_summary:{old}"), "events", "6"])
        .unwrap();
    let mut w = sink(&cs(&url), &opts()).unwrap();
    for i in 0..2u128 {
        for b in trace_batches((i + 1) << 64, T0 + i as i64 * 1_000_000, 3000, i == 0) {
            w.write(&b).unwrap();
        }
    }
    assert!(!summary_hash(&redis, &id(2 << 64)).is_empty());
    let mut store = open(&cs(&url), &opts()).unwrap();
    let page = store.search_traces(&TraceQuery::default()).unwrap();
    assert_eq!(page.traces.len(), 2);
    assert_eq!(page, expected(&mut *store, &TraceQuery::default()));
    let t = page.traces.iter().find(|t| t.base_id == old).unwrap();
    assert_eq!((t.points, t.error), (3, true));
}

#[test]
fn cluster_summaries() {
    let Some(cluster) = need("redis cluster", RedisCluster::start()) else {
        return;
    };
    let c = cs(&cluster.url());
    std::thread::scope(|s| {
        for side in 0..2 {
            let c = &c;
            s.spawn(move || {
                let mut w = sink(c, &opts()).unwrap();
                for i in 0..24u128 {
                    let b = trace_batches(
                        (i + 1) << 64,
                        T0 + i as i64 * 1_000_000,
                        500 * (i as i64 + 1),
                        i % 4 == 1,
                    );
                    w.write(&b[side]).unwrap();
                }
            });
        }
    });
    let mut store = open(&c, &opts()).unwrap();
    let all = store.search_traces(&TraceQuery::default()).unwrap();
    assert_eq!(all.traces.len(), 24);
    assert!(
        all.traces
            .iter()
            .all(|t| t.points == 3 && t.services == ["api", "compute"])
    );
    check_queries(&mut *store);
}

#[test]
fn summaries_off_writes_none_and_the_search_reads_the_events() {
    let Some(redis) = need("redis-server", RedisServer::start()) else {
        return;
    };
    let url = redis.url();
    let off = Options {
        trace_summaries: false,
        ..opts()
    };
    let mut w = sink(&cs(&url), &off).unwrap();
    for i in 0..12u128 {
        for batch in trace_batches((i + 1) << 64, T0 + i as i64 * 1_000_000, 1000, i % 4 == 0) {
            w.write(&batch).unwrap();
        }
    }
    let keys = redis
        .cmd(&["KEYS", "osprofiler_summary:*"])
        .unwrap()
        .into_strings()
        .unwrap();
    assert!(keys.is_empty(), "{keys:?}");
    let mut store = open(&cs(&url), &off).unwrap();
    let all = store.search_traces(&TraceQuery::default()).unwrap();
    assert_eq!(all.traces.len(), 12);
    assert_eq!(all.traces.iter().filter(|t| t.error).count(), 3);
    check_queries(&mut *store);
}
