//! The SQL backends against real servers (PostgreSQL and MariaDB from Debian packages, each
//! test starting its own): our writes read by our reader, the table compared with the one
//! Python's SQLAlchemy driver creates, and traces both ways with the real Python
//! osprofiler 4.4.0 (its `sqlalchemy` driver on SQLAlchemy 1.4: on 2.x it never commits and
//! its reads raise). Each test skips (or fails under `CI=true`) when a server or the Python
//! oracle is missing.

mod common;

use std::time::{Duration, Instant};

use common::cs;
use common::text::{T0, event, uuid, wsgi_db};
use osprofiler::{Event, Timestamp};
use osprofiler_store::{ConnectionString, OpenError, Options, TraceQuery, open, sink};
use osprofiler_testkit::{MariaDbServer, Oracle, PostgresServer, free_port, need};
use serde_json::{Value, json};

fn opts() -> Options {
    Options {
        socket_timeout: Duration::from_secs(5),
        ..Options::default()
    }
}

/// A wsgi point with a db point inside, the db point failing when `fail`.
fn small_trace(base: &str, at_us: i64, fail: bool) -> Vec<Event> {
    let stop = if fail {
        json!({"etype": "OperationalError", "message": "gone — ü \"q\""})
    } else {
        json!({})
    };
    wsgi_db(
        base,
        at_us,
        json!({"request": {"path": "/", "method": "GET"}}),
        json!({"db": {"statement": "SELECT 1", "params": {}}}),
        stop,
    )
}

/// A server of either kind, through one interface.
enum Server {
    Pg(PostgresServer),
    Maria(MariaDbServer),
}

impl Server {
    fn url(&self) -> String {
        match self {
            Server::Pg(s) => s.url(),
            Server::Maria(s) => s.url(),
        }
    }

    /// Python's spelling of the same database (SQLAlchemy's driver names).
    fn python_url(&self) -> String {
        match self {
            Server::Pg(s) => s.url().replace("postgresql://", "postgresql+psycopg2://"),
            Server::Maria(s) => s.url().replace("mysql://", "mysql+pymysql://"),
        }
    }

    fn sql(&self, sql: &str) -> String {
        match self {
            Server::Pg(s) => s.psql(sql),
            Server::Maria(s) => s.sql(sql),
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Another database on the same server, and its URL.
    fn other_database(&self, name: &str) -> String {
        self.sql(&format!("CREATE DATABASE {name}"));
        let url = self.url();
        let cut = url.rfind('/').unwrap();
        format!("{}/{name}", &url[..cut])
    }
}

fn postgres() -> Option<Server> {
    need("postgresql", PostgresServer::start()).map(Server::Pg)
}

fn mariadb() -> Option<Server> {
    need("mariadb", MariaDbServer::start()).map(Server::Maria)
}

fn ids(list: &[osprofiler_store::TraceSummary]) -> Vec<&str> {
    list.iter().map(|s| s.base_id.as_str()).collect()
}

/// Our sink writes three traces in two batches; our reader gives back every event's exact
/// text, the reports, the list newest first and the trace with an error.
fn round_trip(server: &Server) {
    let cs = cs(&server.url());
    let mut w = sink(&cs, &opts()).unwrap();
    let (a, b, c) = (uuid(1), uuid(2), uuid(3));
    let mut first = small_trace(&a, 0, false);
    first.extend(small_trace(&b, 2_000_000, true));
    w.write(&first).unwrap();
    let second = small_trace(&c, 1_000_000, false);
    w.write(&second).unwrap();
    w.flush().unwrap();
    assert_eq!(server.sql("SELECT count(*) FROM data"), "12");

    let mut store = open(&cs, &opts()).unwrap();
    for (base, events) in [(&a, &first[..4]), (&b, &first[4..]), (&c, &second[..])] {
        let mut got = store.event_texts(base).unwrap();
        let mut want: Vec<String> = events.iter().map(Event::to_json).collect();
        got.sort();
        want.sort();
        assert_eq!(got, want, "trace {base}");
        let report = store.report(base).unwrap().expect("a report");
        assert_eq!(report.len(), 2);
    }
    assert!(store.event_texts(&uuid(99)).unwrap().is_empty());
    assert!(store.report(&uuid(99)).unwrap().is_none());
    // Newest first by start: b (2 s), c (1 s), a (0 s).
    let list = store.list_traces(None).unwrap();
    assert_eq!(ids(&list), [b.as_str(), c.as_str(), a.as_str()]);
    assert_eq!(list[0].timestamp, Timestamp(T0 + 2_000_000).to_string());
    assert_eq!(
        ids(&store.list_traces(Some(2)).unwrap()),
        [b.as_str(), c.as_str()]
    );
    assert_eq!(ids(&store.list_error_traces(None).unwrap()), [b.as_str()]);
    assert!(store.describe().contains("127.0.0.1"));
}

#[test]
fn postgres_round_trip() {
    let Some(server) = postgres() else { return };
    round_trip(&server);
}

#[test]
fn mariadb_round_trip() {
    let Some(server) = mariadb() else { return };
    round_trip(&server);
}

/// Python's driver creates its table (SQLAlchemy 1.4's `create_all`) in one database, ours
/// in another: the same columns (names, types, lengths, nullability, order) and indexes.
fn same_schema_as_python(server: &Server) {
    let Some(py) = need("python osprofiler oracle", Oracle::locate()) else {
        return;
    };
    let theirs = server.other_database("py_schema");
    let py_url = match server {
        Server::Pg(_) => theirs.replace("postgresql://", "postgresql+psycopg2://"),
        Server::Maria(_) => theirs.replace("mysql://", "mysql+pymysql://"),
    };
    py.python(PY_CREATE, &[&py_url]).unwrap();
    let ours = server.other_database("rs_schema");
    drop(sink(&cs(&ours), &opts()).unwrap());

    let (columns, indexes) = match server {
        Server::Pg(_) => (
            "SELECT string_agg(concat_ws(':', column_name, data_type, character_maximum_length, \
             is_nullable, column_default), ',' ORDER BY ordinal_position) \
             FROM information_schema.columns WHERE table_name = 'data'",
            "SELECT string_agg(indexdef, ',' ORDER BY indexname) FROM pg_indexes \
             WHERE tablename = 'data'",
        ),
        Server::Maria(_) => (
            "SELECT group_concat(concat_ws(':', column_name, column_type, is_nullable, \
             column_default, extra, collation_name) ORDER BY ordinal_position) \
             FROM information_schema.columns WHERE table_schema = database() AND table_name = 'data'",
            "SELECT group_concat(concat_ws(':', index_name, column_name, non_unique, seq_in_index) \
             ORDER BY index_name) FROM information_schema.statistics \
             WHERE table_schema = database() AND table_name = 'data'",
        ),
    };
    let query = |db: &str, sql: &str| match server {
        Server::Pg(s) => s.psql_in(db, sql).unwrap(),
        Server::Maria(s) => s.sql(&format!("USE {db}; {sql}")).unwrap(),
    };
    let (pc, oc) = (query("py_schema", columns), query("rs_schema", columns));
    let (pi, oi) = (query("py_schema", indexes), query("rs_schema", indexes));
    assert!(pc.contains("timestamp") && pc.contains("data"), "{pc}");
    assert_eq!(oc, pc, "columns");
    assert_eq!(oi, pi, "indexes");
    // Every column Python indexes.
    for c in [
        "timestamp",
        "base_id",
        "parent_id",
        "trace_id",
        "project",
        "host",
        "service",
        "name",
    ] {
        assert!(oi.contains(&format!("ix_data_{c}")), "{c}: {oi}");
    }
}

/// Python's driver, constructed: SQLAlchemy's `create_all` makes the table.
const PY_CREATE: &str = r#"
import sys
from oslo_config import cfg
from osprofiler import opts
from osprofiler.drivers import base
opts.set_defaults(cfg.CONF); cfg.CONF([])
drv = base.get_driver(sys.argv[1], project="nova", service="api", host="h1", conf=cfg.CONF)
assert type(drv).__name__ == "SQLAlchemyDriver", type(drv)
drv._conn.close()
"#;

#[test]
fn postgres_schema_matches_python() {
    let Some(server) = postgres() else { return };
    same_schema_as_python(&server);
}

#[test]
fn mariadb_schema_matches_python() {
    let Some(server) = mariadb() else { return };
    same_schema_as_python(&server);
}

/// Python services write a trace through osprofiler's sqlalchemy driver; we read it (the
/// same tree and timings as Python's own report); then we write a trace and Python's
/// `osprofiler trace show` reads it.
const PY_WRITE: &str = r#"
import sys, time
from oslo_config import cfg
from osprofiler import opts, profiler, notifier
from osprofiler.drivers import base
opts.set_defaults(cfg.CONF); cfg.CONF([])
drv = base.get_driver(sys.argv[1], project="nova", service="api", host="h1", conf=cfg.CONF)
notifier.set(drv.notify)
profiler.init("SECRET_KEY")
with profiler.Trace("wsgi", info={"request": {"path": "/v2.1/servers", "query": "", "method": "GET", "scheme": "http"}}):
    time.sleep(0.002)
    with profiler.Trace("db", info={"db": {"statement": "SELECT * FROM instances — ü", "params": {}}}):
        time.sleep(0.002)
    try:
        with profiler.Trace("rpc", info={}):
            raise ValueError("no valid host")
    except ValueError:
        pass
print(profiler.get().get_base_id())
"#;

fn python_both_ways(server: &Server) {
    let Some(py) = need("python osprofiler oracle", Oracle::locate()) else {
        return;
    };
    let base = py.python(PY_WRITE, &[&server.python_url()]).unwrap();
    let base = base.trim();
    assert_eq!(
        server.sql("SELECT count(*) FROM data"),
        "6",
        "Python's rows committed"
    );

    let mut store = open(&cs(&server.url()), &opts()).unwrap();
    let report = store.report(base).unwrap().expect("Python's trace read");
    assert_eq!(report.len(), 3);
    let ours = report.to_json();
    let theirs = py.show_json(base, &server.python_url()).unwrap();
    let names = |v: &Value| -> Vec<String> {
        v["children"][0]["children"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["info"]["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(names(&ours), ["db", "rpc"]);
    assert_eq!(names(&theirs), names(&ours));
    assert_eq!(ours["info"]["finished"], theirs["info"]["finished"]);
    assert_eq!(ours["stats"], theirs["stats"]);
    let rpc = &ours["children"][0]["children"][1]["info"];
    assert_eq!(rpc["exception"], "ValueError", "{rpc}");
    assert_eq!(ids(&store.list_error_traces(None).unwrap()), [base]);

    // Ours, read by Python.
    let mine = uuid(7);
    let mut w = sink(&cs(&server.url()), &opts()).unwrap();
    w.write(&small_trace(&mine, 5_000_000, true)).unwrap();
    let theirs = py.show_json(&mine, &server.python_url()).unwrap();
    let wsgi = &theirs["children"][0];
    assert_eq!(wsgi["info"]["name"], "wsgi");
    assert_eq!(wsgi["children"][0]["info"]["name"], "db");
    let ours = store.report(&mine).unwrap().unwrap().to_json();
    assert_eq!(theirs["info"]["finished"], ours["info"]["finished"]);
    assert_eq!(theirs["stats"], ours["stats"]);
    let raw = &wsgi["children"][0]["info"]["meta.raw_payload.db-stop"];
    assert_eq!(raw["info"]["message"], "gone — ü \"q\"", "{raw}");
    // Both listed, newest first: Python's (now), then ours (at T0, in 2025).
    let list = store.list_traces(None).unwrap();
    assert_eq!(ids(&list), [base, mine.as_str()]);
}

#[test]
fn postgres_python_both_ways() {
    let Some(server) = postgres() else { return };
    python_both_ways(&server);
}

#[test]
fn mariadb_python_both_ways() {
    let Some(server) = mariadb() else { return };
    python_both_ways(&server);
}

/// A sink made while nothing listens starts anyway, fails its batches fast (counted by
/// the notifier), and the reader says why; a database that does not exist is an error at
/// once, one line.
fn unreachable_and_refused(server: &Server, scheme: &str) {
    let nowhere = cs(&format!("{scheme}://u:pw@127.0.0.1:{}/x", free_port()));
    let mut w = sink(&nowhere, &opts()).expect("a sink while the server is down");
    let t = Instant::now();
    for _ in 0..50 {
        assert!(w.write(&small_trace(&uuid(1), 0, false)).is_err());
    }
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    match open(&nowhere, &opts()) {
        Err(e @ OpenError::Unavailable { .. }) => {
            let m = e.to_string();
            assert!(!m.contains("pw") && !m.contains('\n'), "{m}");
        }
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("opened"),
    }
    let url = server.url();
    let missing = cs(&format!("{}/no_such_db", &url[..url.rfind('/').unwrap()]));
    match sink(&missing, &opts()) {
        Err(OpenError::Unavailable { reason, .. }) => {
            assert!(reason.contains("no_such_db"), "{reason}")
        }
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("a sink for a missing database"),
    }
}

#[test]
fn postgres_unreachable_and_refused() {
    let Some(server) = postgres() else { return };
    unreachable_and_refused(&server, "postgresql");
}

#[test]
fn mariadb_unreachable_and_refused() {
    let Some(server) = mariadb() else { return };
    unreachable_and_refused(&server, "mysql");
}

/// The server's connections are killed under a sink: the batch then fails, the next
/// ones reconnect by themselves and nothing written afterwards is lost.
fn reconnects(server: &Server) {
    let cs = cs(&server.url());
    let mut w = sink(&cs, &opts()).unwrap();
    w.write(&small_trace(&uuid(1), 0, false)).unwrap();
    match server {
        Server::Pg(_) => server.sql(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE application_name = 'osprofiler-rs'",
        ),
        Server::Maria(_) => {
            let ids = server.sql(
                "SELECT group_concat(id) FROM information_schema.processlist \
                 WHERE id <> connection_id() AND command <> 'Daemon'",
            );
            for id in ids.split(',').filter(|s| !s.is_empty()) {
                server.sql(&format!("KILL {id}"));
            }
            String::new()
        }
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut n = 2;
    loop {
        if w.write(&small_trace(&uuid(n), 0, false)).is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "no reconnection");
        n += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut store = open(&cs, &opts()).unwrap();
    assert_eq!(store.event_texts(&uuid(n)).unwrap().len(), 4);
    assert_eq!(store.event_texts(&uuid(1)).unwrap().len(), 4);
}

#[test]
fn postgres_reconnects() {
    let Some(server) = postgres() else { return };
    reconnects(&server);
}

#[test]
fn mariadb_reconnects() {
    let Some(server) = mariadb() else { return };
    reconnects(&server);
}

/// A password is used (MariaDB user with one) and never shown, the wrong one refused.
#[test]
fn mariadb_password() {
    let Some(server) = mariadb() else { return };
    let Server::Maria(db) = &server else {
        unreachable!()
    };
    db.sql("CREATE USER 'osp'@'127.0.0.1' IDENTIFIED BY 'S3cr%t:p@ss'; GRANT ALL ON osprofiler.* TO 'osp'@'127.0.0.1'")
        .unwrap();
    let good = cs(&format!(
        "mysql+pymysql://osp:S3cr%25t%3Ap%40ss@127.0.0.1:{}/osprofiler",
        db.port()
    ));
    assert!(!good.to_string().contains("S3cr"), "{good}");
    let mut w = sink(&good, &opts()).unwrap();
    w.write(&small_trace(&uuid(1), 0, false)).unwrap();
    let bad = cs(&format!(
        "mysql://osp:wrongpass@127.0.0.1:{}/osprofiler",
        db.port()
    ));
    match open(&bad, &opts()) {
        Err(e) => {
            let m = e.to_string();
            assert!(
                m.contains("Access denied") && !m.contains("wrongpass"),
                "{m}"
            );
        }
        Ok(_) => panic!("wrong password accepted"),
    }
    assert_eq!(
        open(&good, &opts())
            .unwrap()
            .event_texts(&uuid(1))
            .unwrap()
            .len(),
        4
    );
}

/// A trace of 20,000 points (40,000 events) written in batches and read back whole.
fn big_trace(server: &Server) {
    let cs = cs(&server.url());
    let mut w = sink(&cs, &opts()).unwrap();
    let base = uuid(42);
    let mut batch = Vec::new();
    for p in 0..20_000u32 {
        let id = format!("dddddddd-0000-4000-8000-{p:012}");
        batch.push(event(
            &base,
            &id,
            &base,
            "db-start",
            i64::from(p) * 10,
            json!({}),
        ));
        batch.push(event(
            &base,
            &id,
            &base,
            "db-stop",
            i64::from(p) * 10 + 5,
            json!({}),
        ));
        if batch.len() == 4096 {
            w.write(&batch).unwrap();
            batch.clear();
        }
    }
    w.write(&batch).unwrap();
    let mut store = open(&cs, &opts()).unwrap();
    let report = store.report(&base).unwrap().unwrap();
    assert_eq!(report.len(), 20_000);

    // Three traces written interleaved, a point (two rows) at a time: `p` has every other
    // point, `q` and `r` one in four. MySQL reads `p`'s rows by ranges of the primary key
    // (half the rows read are others'), `q`'s and `r`'s through the index (too sparse).
    let (p, q, r) = (uuid(43), uuid(44), uuid(45));
    let mut batch = Vec::new();
    for k in 0..4_000u32 {
        let owner = match k % 4 {
            0 | 2 => &p,
            1 => &q,
            _ => &r,
        };
        let id = format!("cccccccc-0000-4000-8000-{k:012}");
        for (name, at) in [("db-start", 0), ("db-stop", 5)] {
            let t = i64::from(k) * 10 + at;
            batch.push(event(owner, &id, owner, name, t, json!({})));
        }
    }
    w.write(&batch).unwrap();
    for (base, points) in [(&p, 2_000), (&q, 1_000), (&r, 1_000)] {
        let report = store.report(base).unwrap().unwrap();
        assert_eq!(report.len(), points, "{base}");
        let texts = store.event_texts(base).unwrap();
        assert_eq!(texts.len(), 2 * points);
        assert!(texts.iter().all(|t| t.contains(base.as_str())));
    }
    assert!(store.report(&uuid(46)).unwrap().is_none());
}

#[test]
fn postgres_big_trace() {
    let Some(server) = postgres() else { return };
    big_trace(&server);
}

#[test]
fn mariadb_big_trace() {
    let Some(server) = mariadb() else { return };
    big_trace(&server);
}

// ---------------------------------------------------------------------------------------
// Per-trace summaries and `search_traces`.

fn queries() -> Vec<TraceQuery> {
    let q = TraceQuery::default;
    common::queries(
        T0,
        vec![
            TraceQuery {
                service: Some("compute".into()),
                limit: Some(3),
                offset: 2,
                ..q()
            },
            TraceQuery {
                name: Some("db".into()),
                ..q()
            },
            TraceQuery {
                name: Some("servers".into()),
                ..q()
            },
            TraceQuery {
                text: Some("select 1".into()),
                limit: Some(4),
                ..q()
            },
        ],
    )
}

fn check_queries(store: &mut dyn osprofiler_store::TraceStore) -> usize {
    common::check_queries(store, queries())
}

/// Trace `i` of the summary tests: services, errors and durations that vary with `i`.
fn varied(i: u32) -> Vec<Event> {
    let base = uuid(100 + i);
    let at = i64::from(i) * 1_000_000;
    let mut events = small_trace(&base, at, i.is_multiple_of(3));
    if i.is_multiple_of(2) {
        for e in &mut events[1..3] {
            e.service = Some("compute".into());
        }
    }
    events[3].timestamp = Timestamp(T0 + at + 900 + i64::from(i) * 500);
    events
}

/// What the search's first completeness check reads: lowest id, highest id, events the
/// summaries count.
fn ids_check(server: &Server) -> String {
    let dialect = match server {
        Server::Pg(_) => osprofiler_store::SqlDialect::Postgres,
        Server::Maria(_) => osprofiler_store::SqlDialect::MySql,
    };
    let statements = osprofiler_store::__plan_statements(dialect, &TraceQuery::default());
    let (_, ids) = statements.iter().find(|(l, _)| *l == "ids").unwrap();
    server.sql(ids).replace(['|', '\t'], " ")
}

/// Two sinks write 20 traces, each trace's first half through one and its second half
/// through the other (several batches each); the summaries answer every query as the
/// events do, and paging is exact.
fn two_sinks_summaries(server: &Server) {
    let cs = cs(&server.url());
    let mut a = sink(&cs, &opts()).unwrap();
    let mut b = sink(&cs, &opts()).unwrap();
    let traces: Vec<Vec<Event>> = (0..20).map(varied).collect();
    for chunk in traces.chunks(5) {
        // The second halves first for some: the root arrives after other points.
        let firsts: Vec<Event> = chunk.iter().flat_map(|t| t[..2].to_vec()).collect();
        let seconds: Vec<Event> = chunk.iter().flat_map(|t| t[2..].to_vec()).collect();
        b.write(&seconds).unwrap();
        a.write(&firsts).unwrap();
    }
    a.flush().unwrap();
    b.flush().unwrap();
    assert_eq!(
        server.sql("SELECT count(*) FROM osprofiler_trace_summary"),
        "20"
    );
    assert_eq!(
        server.sql("SELECT sum(events) FROM osprofiler_trace_summary"),
        "80"
    );
    let mut store = open(&cs, &opts()).unwrap();
    let all = store.search_traces(&TraceQuery::default()).unwrap();
    assert_eq!(all.traces.len(), 20);
    let t = &all.traces[0];
    assert_eq!(t.base_id, uuid(119));
    assert_eq!(t.root.as_ref().unwrap().label(), "api · wsgi · GET /");
    assert_eq!(t.points, 2);
    assert_eq!(t.duration_us(), 900 + 19 * 500);
    let t = &all.traces[1];
    assert_eq!(
        (t.services.clone(), t.error),
        (vec!["api".to_owned(), "compute".to_owned()], true)
    );
    assert!(check_queries(&mut *store) >= 12);
    // Ids 1 to 80 and 80 events counted: complete from the ids alone.
    assert_eq!(ids_check(server), "1 80 80");
    // A row written and deleted before the next batch leaves a gap, as a rolled-back
    // batch does: the ids no longer tell, the rows are counted, and the pages are right.
    server.sql(&format!(
        "INSERT INTO data (base_id, name, data) VALUES ('{}', 'x-start', '{{}}')",
        uuid(999)
    ));
    server.sql("DELETE FROM data WHERE name = 'x-start'");
    a.write(&varied(20)).unwrap();
    a.flush().unwrap();
    assert_eq!(ids_check(server), "1 85 84");
    let now = store.search_traces(&TraceQuery::default()).unwrap();
    assert_eq!(now.traces.len(), 21);
    assert_eq!(now.traces[0].base_id, uuid(120));
    assert_eq!(now.traces[1..], all.traces[..]);
    assert!(check_queries(&mut *store) >= 12);

    // Summaries off: none is written, and the search gives the same pages from the events.
    let plain: ConnectionString = server.other_database("plain").parse().unwrap();
    let off = Options {
        trace_summaries: false,
        ..opts()
    };
    let mut w = sink(&plain, &off).unwrap();
    for t in &traces {
        w.write(t).unwrap();
    }
    w.flush().unwrap();
    let mut store = open(&plain, &off).unwrap();
    assert_eq!(store.search_traces(&TraceQuery::default()).unwrap(), all);
    assert!(check_queries(&mut *store) >= 12);
    match server {
        Server::Pg(s) => s.psql_in("plain", "SELECT count(*) FROM osprofiler_trace_summary"),
        Server::Maria(s) => s.sql("SELECT count(*) FROM plain.osprofiler_trace_summary"),
    }
    .map(|n| assert_eq!(n, "0"))
    .unwrap();
}

#[test]
fn postgres_two_sinks_summaries() {
    let Some(server) = postgres() else { return };
    two_sinks_summaries(&server);
}

#[test]
fn mariadb_two_sinks_summaries() {
    let Some(server) = mariadb() else { return };
    two_sinks_summaries(&server);
}

/// A trace Python wrote has no summary, and one Python wrote to after us has an
/// incomplete one: both are summarised from their events, in the same pages.
fn python_trace_summarised(server: &Server) {
    let Some(py) = need("python osprofiler oracle", Oracle::locate()) else {
        return;
    };
    let cs = cs(&server.url());
    let mut w = sink(&cs, &opts()).unwrap();
    for i in 0..20 {
        w.write(&varied(i)).unwrap();
    }
    w.flush().unwrap();
    // Python writes into the table we made, beside our summary tables.
    let base = py.python(PY_WRITE, &[&server.python_url()]).unwrap();
    let base = base.trim().to_owned();
    assert_eq!(server.sql("SELECT count(*) FROM data"), "86");
    // Another writer (no summary) adds a point to one of ours: its summary no longer
    // counts every row.
    let (ours, point) = (uuid(105), uuid(900));
    for (name, at) in [("rpc-start", 5_000_100), ("rpc-stop", 5_000_200)] {
        server.sql(&format!(
            "INSERT INTO data (timestamp, base_id, parent_id, trace_id, project, service, name, data) \
             VALUES ('{}', '{ours}', '{ours}', '{point}', 'nova', 'scheduler', '{name}', '{{}}')",
            Timestamp(T0 + at)
        ));
    }
    let mut store = open(&cs, &opts()).unwrap();
    let page = store.search_traces(&TraceQuery::default()).unwrap();
    assert_eq!(
        page.traces.len(),
        21,
        "{:?}",
        page.traces
            .iter()
            .map(|t| (&t.base_id, t.started_us))
            .collect::<Vec<_>>()
    );
    // Python's is the newest (written now, ours in 2025).
    let t = &page.traces[0];
    assert_eq!(t.base_id, base);
    assert_eq!(
        t.root.as_ref().unwrap().label(),
        "api · wsgi · GET /v2.1/servers"
    );
    assert_eq!((t.points, t.error), (3, true));
    let t = page.traces.iter().find(|t| t.base_id == ours).unwrap();
    assert_eq!((t.points, t.services.len()), (3, 2), "{t:?}");
    assert!(t.services.contains(&"scheduler".to_owned()));
    assert!(check_queries(&mut *store) >= 12);
}

#[test]
fn postgres_python_trace_summarised() {
    let Some(server) = postgres() else { return };
    python_trace_summarised(&server);
}

#[test]
fn mariadb_python_trace_summarised() {
    let Some(server) = mariadb() else { return };
    python_trace_summarised(&server);
}

/// The trace of 100,000 points in `query_plans`.
const BIG: &str = "11111111-1111-4111-8111-111111111111";

/// `points` db points of trace `base` (start and stop each), 10 µs apart from `at_us`.
fn db_points(base: &str, points: usize, at_us: i64) -> impl Iterator<Item = Event> + '_ {
    (0..points).flat_map(move |p| {
        let id = format!("eeeeeeee-0000-4000-8000-{p:012}");
        let at = at_us + p as i64 * 10;
        let info = json!({"db": {"statement": "SELECT * FROM instances WHERE id = %s", "params": {"id": p}}});
        [
            event(base, &id, base, "db-start", at, info),
            event(base, &id, base, "db-stop", at + 5, json!({})),
        ]
    })
}

/// Prints the plans of the statements the store runs (`__plan_statements`, not copies) on
/// a table of 300,000 events written by our sink: one trace of 100,000 points and 1,000 of
/// 50. The plans in `src/sql.rs`'s docs come from here; run with
/// `--ignored --nocapture`.
fn query_plans(server: &Server) {
    let mut w = sink(&cs(&server.url()), &opts()).unwrap();
    let mut batch = Vec::with_capacity(5_000);
    let traces = std::iter::once((BIG.to_owned(), 100_000))
        .chain((0..1_000).map(|t| (uuid(t), 50)))
        .enumerate();
    for (i, (base, points)) in traces {
        for e in db_points(&base, points, i as i64 * 1_000_000) {
            batch.push(e);
            if batch.len() == batch.capacity() {
                w.write(&batch).unwrap();
                batch.clear();
            }
        }
    }
    w.write(&batch).unwrap();
    w.flush().unwrap();
    drop(w);
    assert_eq!(server.sql("SELECT count(*) FROM data"), "300000");
    // Fresh statistics, as autovacuum or InnoDB's own sampling would have them.
    let (dialect, explain) = match server {
        Server::Pg(_) => {
            server.sql("ANALYZE");
            (osprofiler_store::SqlDialect::Postgres, "EXPLAIN ANALYZE")
        }
        Server::Maria(_) => {
            server.sql("ANALYZE TABLE data, osprofiler_trace_summary, osprofiler_trace_member");
            (osprofiler_store::SqlDialect::MySql, "ANALYZE FORMAT=JSON")
        }
    };
    let page = TraceQuery {
        limit: Some(50),
        ..TraceQuery::default()
    };
    let statements = osprofiler_store::__plan_statements(dialect, &page);
    assert!(statements.len() >= 5, "{statements:?}");
    // The summaries are complete (the page, not the fallback, is what a search reads),
    // and the ids say so without counting the rows.
    let (_, ids) = statements.iter().find(|(l, _)| *l == "ids").unwrap();
    assert_eq!(server.sql(ids).replace(['|', '\t'], " "), "1 300000 300000");
    let (_, totals) = statements.iter().find(|(l, _)| *l == "totals").unwrap();
    assert_eq!(
        server.sql(totals).replace(['|', '\t'], " "),
        "300000 300000"
    );
    for (label, sql) in statements {
        let runs: Vec<(String, String)> = if label.starts_with("fetch") {
            [
                ("a 50-point trace", uuid(7)),
                ("the 100,000-point trace", BIG.to_owned()),
            ]
            .into_iter()
            .map(|(what, id)| {
                let literal = format!("'{id}'");
                (
                    format!("{label}, {what}"),
                    sql.replace("$1", &literal).replace('?', &literal),
                )
            })
            .collect()
        } else {
            vec![(label.to_owned(), sql)]
        };
        for (what, sql) in runs {
            let plan = server.sql(&format!("{explain} {sql}"));
            // The mariadb client's batch mode escapes the JSON's newlines.
            let plan = plan.replace("\\n", "\n");
            println!("== {what}\n-- {sql}\n{plan}\n");
            // What the docs' plans say: both servers fetch a trace, big or small, by its index.
            if label.starts_with("fetch") {
                assert!(plan.contains("ix_data_base_id"), "{what}: {plan}");
            } else {
                assert!(plan.contains("osprofiler_trace_summary") || plan.contains("data"));
            }
        }
    }
}

#[test]
#[ignore = "fills 300,000 rows and prints plans: run with --ignored --nocapture"]
fn postgres_query_plans() {
    let Some(server) = postgres() else { return };
    query_plans(&server);
}

#[test]
#[ignore = "fills 300,000 rows and prints plans: run with --ignored --nocapture"]
fn mariadb_query_plans() {
    let Some(server) = mariadb() else { return };
    query_plans(&server);
}
