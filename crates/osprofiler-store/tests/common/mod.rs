//! Shared by the store's tests: connection strings, synthetic events and traces, the
//! page a trace search must give (built from the events), and a Redis Sentinel process.
//! Each test file uses a part of it.

#![allow(dead_code)]

use std::borrow::Cow;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use osprofiler::{Event, EventInfo, EventKind, Id, Timestamp};
use osprofiler_report::Report;
use osprofiler_store::{ConnectionString, TraceOverview, TracePage, TraceQuery, TraceStore};
use osprofiler_testkit::{RedisConn, TempDir, free_port};
use serde_json::{Map, Value, json};

pub fn cs(s: &str) -> ConnectionString {
    s.parse().expect("valid connection string")
}

/// Events from their JSON text, as another writer (Python) sends them: ids as text,
/// times from [`T0`](text::T0).
pub mod text {
    use super::*;

    pub const T0: i64 = 1_764_072_000_000_000; // 2025-11-25T12:00:00

    /// A synthetic event of `api` on `host-a` at `T0 + at_us`.
    pub fn event(base: &str, id: &str, parent: &str, name: &str, at_us: i64, info: Value) -> Event {
        let mut info = info;
        info["host"] = json!("host-a");
        let v = json!({
            "name": name,
            "base_id": base,
            "trace_id": id,
            "parent_id": parent,
            "timestamp": Timestamp(T0 + at_us).to_string(),
            "info": info,
            "project": "nova",
            "service": "api",
        });
        Event::from_json(&v.to_string()).expect("valid event")
    }

    pub fn uuid(n: u32) -> String {
        format!("aaaaaaaa-0000-4000-8000-{n:012}")
    }

    /// Trace `base` at `T0 + at_us`: a `wsgi` point (`request` its start's info) with a
    /// `db` point inside (`db` its start's info, `db_stop` its stop's: an error or `{}`).
    pub fn wsgi_db(
        base: &str,
        at_us: i64,
        request: Value,
        db: Value,
        db_stop: Value,
    ) -> Vec<Event> {
        let (w, d) = (
            format!("bbbbbbbb{}", &base[8..]),
            format!("cccccccc{}", &base[8..]),
        );
        vec![
            event(base, &w, base, "wsgi-start", at_us, request),
            event(base, &d, &w, "db-start", at_us + 100, db),
            event(base, &d, &w, "db-stop", at_us + 500, db_stop),
            event(base, &w, base, "wsgi-stop", at_us + 900, json!({})),
        ]
    }
}

/// Events as the notifier hands them to a sink: ids as numbers, times from
/// [`T0`](typed::T0).
pub mod typed {
    use super::*;

    pub const T0: i64 = 1_790_000_000_000_000;

    /// An event of `service` on `host-a`.
    #[allow(clippy::too_many_arguments)]
    pub fn event(
        base: u128,
        point: u128,
        parent: u128,
        name: &'static str,
        service: &str,
        kind: EventKind,
        us: i64,
        info: Value,
    ) -> Event {
        let mut map = match info {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        map.insert("host".into(), json!("host-a"));
        Event {
            name: Cow::Borrowed(name),
            kind,
            base_id: Id(base),
            trace_id: Id(point),
            parent_id: Id(parent),
            timestamp: Timestamp(us),
            info: EventInfo::from(map),
            project: Some(Arc::from("nova")),
            service: Some(Arc::from(service)),
        }
    }

    /// Trace `base` in two batches, as two services' exporters send it: `compute`'s first
    /// (an `rpc` point under the db one, failing with `ValueError: error` when `error` is
    /// given), then `api`'s (the `wsgi` root, `POST /v2.1/servers`, lasting `dur` µs, with
    /// a `db` child).
    pub fn trace_batches(base: u128, start: i64, dur: i64, error: Option<&str>) -> [Vec<Event>; 2] {
        let (root, db, rpc) = (base + 1, base + 2, base + 3);
        let req = json!({"request": {"method": "POST", "path": "/v2.1/servers", "query": "", "scheme": "http"}});
        let stop_info = match error {
            Some(message) => json!({"etype": "ValueError", "message": message}),
            None => json!({}),
        };
        use EventKind::{Start, Stop};
        [
            vec![
                event(
                    base,
                    rpc,
                    db,
                    "rpc",
                    "compute",
                    Start,
                    start + 20,
                    json!({"function": {"name": "build_instance"}}),
                ),
                event(base, rpc, db, "rpc", "compute", Stop, start + 30, stop_info),
            ],
            vec![
                event(base, root, base, "wsgi", "api", Start, start, req),
                event(
                    base,
                    db,
                    root,
                    "db",
                    "api",
                    Start,
                    start + 10,
                    json!({"db": {"statement": "SELECT * FROM instances", "params": {}}}),
                ),
                event(base, db, root, "db", "api", Stop, start + 40, json!({})),
                event(
                    base,
                    root,
                    base,
                    "wsgi",
                    "api",
                    Stop,
                    start + dur,
                    json!({}),
                ),
            ],
        ]
    }
}

/// The page `q` selects, built from every listed trace's events (as the default
/// `search_by_events` does): what a store's summaries must give.
pub fn expected(store: &mut dyn TraceStore, q: &TraceQuery) -> TracePage {
    let mut all = Vec::new();
    for t in store.list_traces(None).unwrap() {
        let texts = store.event_texts(&t.base_id).unwrap();
        if !q.text_matches(&texts) {
            continue;
        }
        let o = TraceOverview::from_report(&t.base_id, &Report::from_json_texts(texts));
        if q.matches(&o) {
            all.push(o);
        }
    }
    let end = q.limit.map_or(all.len(), |l| (q.offset + l).min(all.len()));
    TracePage {
        more: end < all.len(),
        traces: all
            .get(q.offset.min(end)..end)
            .map(<[_]>::to_vec)
            .unwrap_or_default(),
    }
}

/// A `redis-server --sentinel` child process (the harness cannot pass a config file
/// first), killed on drop.
pub struct Sentinel {
    child: Child,
    pub port: u16,
    _dir: TempDir,
}

impl Sentinel {
    /// Starts a sentinel from the text of its config file (`sentinel monitor …` lines),
    /// wanting `password` from its clients if given; waits until it answers.
    pub fn start(config: &str, password: Option<&str>) -> Result<Sentinel, String> {
        let dir = TempDir::try_new()?;
        let conf = dir.join("sentinel.conf");
        let mut text = config.to_owned();
        if let Some(pw) = password {
            text.push_str(&format!("requirepass \"{pw}\"\n"));
        }
        std::fs::write(&conf, text).map_err(|e| e.to_string())?;
        let port = free_port();
        let child = Command::new("redis-server")
            .arg(&conf)
            .args([
                "--sentinel",
                "--bind",
                "127.0.0.1",
                "--port",
                &port.to_string(),
            ])
            .arg("--dir")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("redis-server --sentinel: {e}"))?;
        let mut s = Sentinel {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let ok = RedisConn::connect(port, password)
                .and_then(|mut c| c.cmd(&["SENTINEL", "masters"]))
                .is_ok();
            if ok {
                return Ok(s);
            }
            if Instant::now() > deadline || s.child.try_wait().ok().flatten().is_some() {
                return Err(format!("sentinel on port {port} did not start"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The queries a summary test checks against [`expected`]: paging, errors and a service
/// first, then `own` (each store's names and texts), then no match, durations and a
/// window of start times from `t0`.
pub fn queries(t0: i64, own: Vec<TraceQuery>) -> Vec<TraceQuery> {
    let q = TraceQuery::default;
    let mut all = vec![
        q(),
        TraceQuery {
            limit: Some(5),
            ..q()
        },
        TraceQuery {
            limit: Some(5),
            offset: 5,
            ..q()
        },
        TraceQuery {
            limit: Some(7),
            offset: 14,
            ..q()
        },
        TraceQuery {
            errors_only: true,
            ..q()
        },
        TraceQuery {
            errors_only: true,
            limit: Some(2),
            offset: 1,
            ..q()
        },
        TraceQuery {
            service: Some("compute".into()),
            ..q()
        },
    ];
    all.extend(own);
    all.extend([
        TraceQuery {
            text: Some("no such text".into()),
            ..q()
        },
        TraceQuery {
            min_duration_us: Some(8_000),
            ..q()
        },
        TraceQuery {
            max_duration_us: Some(5_000),
            min_duration_us: Some(2_000),
            ..q()
        },
        TraceQuery {
            since_us: Some(t0 + 3_000_000),
            until_us: Some(t0 + 9_000_000),
            ..q()
        },
    ]);
    all
}

/// Checks that `store` gives the [`expected`] page for each of `queries`; returns how
/// many pages had traces (so that a test can tell the queries were not all empty).
pub fn check_queries(store: &mut dyn TraceStore, queries: Vec<TraceQuery>) -> usize {
    let mut nonempty = 0;
    for q in queries {
        let got = store.search_traces(&q).unwrap();
        let want = expected(store, &q);
        assert_eq!(got, want, "{q:?}");
        nonempty += usize::from(!got.traces.is_empty());
    }
    nonempty
}
