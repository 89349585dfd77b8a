//! The cluster sink behind the real, process-wide notifier: traced code records traces
//! while a master of a 3-master + 3-replica Redis Cluster is killed; its replica takes
//! over, the exporter's writes resume by themselves, every event is accounted for
//! (exported, failed or dropped: the losses are counted), the traced code never waits,
//! and the traces recorded after the failover are read back whole.

use std::time::{Duration, Instant};

use osprofiler::{TraceContext, notifier};
use osprofiler_store::{ConnectionString, Options, open, sink};
use osprofiler_testkit::{RedisCluster, need};

/// A trace of `points` nested points; its base id.
fn record(points: usize) -> String {
    let ctx = TraceContext::new(None, None, None);
    ctx.in_scope(|| {
        let _root = osprofiler::point("wsgi");
        for _ in 1..points {
            let _p = osprofiler::point("db");
        }
    });
    ctx.base_id().to_string()
}

#[test]
fn a_failover_under_a_traced_load() {
    let Some(mut cluster) = need("redis cluster", RedisCluster::start()) else {
        return;
    };
    let cs: ConnectionString = cluster.url().parse().unwrap();
    let opts = Options {
        socket_timeout: Duration::from_secs(1),
        ..Options::default()
    };
    let _guard = notifier::set_boxed_sink(sink(&cs, &opts).unwrap());

    // A steady load: a 5-point trace every millisecond or so.
    let mut recorded = 0_u64;
    let mut slowest = Duration::ZERO;
    let mut load = |until: Instant, out: &mut Vec<String>| {
        while Instant::now() < until {
            let t = Instant::now();
            out.push(record(5));
            slowest = slowest.max(t.elapsed());
            recorded += 10;
            std::thread::sleep(Duration::from_millis(1));
        }
    };
    let mut before = Vec::new();
    load(Instant::now() + Duration::from_millis(500), &mut before);
    notifier::flush_timeout(Duration::from_secs(10)).unwrap();
    let victim = cluster.master_ports().unwrap()[0];
    cluster.cmd_on(victim, &["WAIT", "1", "2000"]).unwrap();
    let ok_before = notifier::stats();
    assert_eq!(ok_before.failed, 0, "{ok_before:?}");

    cluster.kill(victim);
    let killed = Instant::now();
    let mut during = Vec::new();
    // Traced code goes on while the cluster notices and promotes the replica.
    let waiter = std::thread::scope(|scope| {
        let w = scope.spawn(|| cluster.wait_replaced(victim, 3));
        while !w.is_finished() {
            load(Instant::now() + Duration::from_millis(50), &mut during);
        }
        w.join().expect("waiter")
    });
    let promoted = waiter.expect("a replica took over");
    assert!(killed.elapsed() >= promoted);
    // The sink's backoff (at most 5 s) lets it try again; then new traces go through.
    load(Instant::now() + Duration::from_secs(6), &mut during);
    let mut after = Vec::new();
    load(Instant::now() + Duration::from_millis(500), &mut after);
    notifier::flush_timeout(Duration::from_secs(20)).unwrap();

    let s = notifier::stats();
    // Every event is accounted for; some were lost, and counted.
    assert_eq!(
        s.exported + s.failed + s.dropped + s.discarded,
        recorded,
        "{s:?}"
    );
    assert!(s.failed > 0 && s.sink_errors > 0, "losses counted: {s:?}");
    assert!(
        slowest < Duration::from_millis(50),
        "traced code waited {slowest:?}"
    );

    let mut r = open(&cs, &opts).unwrap();
    for base in before.iter().chain(&after) {
        assert_eq!(r.events(base).unwrap().len(), 10, "{base}");
    }
    let listed = r.list_traces(Some(1)).unwrap();
    assert_eq!(listed.len(), 1);
    eprintln!(
        "failover under load: replica promoted {promoted:?} after the kill; {recorded} events recorded, {} exported, {} failed in {} sink errors, {} dropped; slowest traced call {slowest:?}",
        s.exported, s.failed, s.sink_errors, s.dropped
    );
}
