//! PostgreSQL (`postgresql://`, feature `postgres`) and MySQL/MariaDB (`mysql://`,
//! feature `mysql`) in osprofiler 4.4.0's SQLAlchemy layout, so that Python services
//! writing through `osprofiler.drivers.sqlalchemy_driver` and ours share one table.
//!
//! The table, created when missing with the indexes Python creates (`ix_data_<column>`):
//!
//! | column | type | holds |
//! |---|---|---|
//! | `id` | integer, primary key, auto-increment | insertion order |
//! | `timestamp` | `VARCHAR(26)` | the event's osprofiler timestamp |
//! | `base_id`, `parent_id`, `trace_id` | `VARCHAR(255)` | its ids |
//! | `project`, `host`, `service` | `VARCHAR(255)` | who wrote it (`host` from `info.host`) |
//! | `name` | `VARCHAR(255)` | `<point>-start` or `<point>-stop` |
//! | `data` | `JSON` | the rest of the event (`{"info": …}`), as SQLAlchemy writes it: a JSON string holding the JSON text |
//!
//! `data` is encoded twice because Python's driver passes `jsonutils.dumps(data)` to a
//! SQLAlchemy `JSON` column, which encodes it again; its reader decodes twice. We write the
//! same, and read either form (a JSON object too).
//!
//! Reads: a trace's events by `base_id` (index `ix_data_base_id`), each row made its
//! event's text as it arrives and handed to the report builder, borrowed from the driver's
//! row (no list of rows or texts, no string copied per column); the list
//! of traces groups by `base_id` with the earliest timestamp as the start, newest first (a
//! scan of the `ix_data_base_id` index and the table: Python's layout keeps no per-trace row;
//! the search of traces reads our summary tables instead, see `summaries`);
//! the list of traces with errors scans the stop events' `data` for `etype`.
//!
//! Writes: each batch as multi-row `INSERT`s (at most [`ROWS_PER_INSERT`] rows each) in
//! one transaction, on the exporter thread. After a failure the sink drops the connection,
//! waits (50 ms, doubling up to 5 s; batches fail at once meanwhile, counted by the
//! notifier) and connects again.
//!
//! TLS (options in [`SqlTls`](crate::SqlTls)): PostgreSQL with feature `postgres-tls`,
//! through tokio-postgres-rustls (the well-kept adapter; 0.13, whose hashing is ring's, as
//! the rest of the build) with our rustls configuration: the connection string's CA file or
//! the system's roots, `verify-ca` checking the chain and not the name, `require` and
//! `prefer` nothing. MySQL with feature `tls`, through the mysql crate's own rustls (ring):
//! the CA file or else the system's roots, besides the crate's bundled Mozilla roots, which
//! it always trusts; `PREFERRED` takes TLS when the server offers it (nothing verified) and
//! plain TCP otherwise. A certificate refused is an error at once (the sink does not retry
//! it). Without the feature, a string that needs TLS is refused.
//!
//! Why the embedded SQLite store keeps its own layout: see the crate docs.
//!
//! # Indexes and query plans
//!
//! Python's: the primary key on `id` (`data_pkey` / `PRIMARY`) and `ix_data_timestamp`,
//! `ix_data_base_id`, `ix_data_parent_id`, `ix_data_trace_id`, `ix_data_project`,
//! `ix_data_host`, `ix_data_service`, `ix_data_name`; we add none (a table shared with
//! Python stays as Python's `create_all` makes it, checked by `tests/sql.rs`). Plans of the
//! statements the store runs, printed by the ignored test `query_plans` of `tests/sql.rs`
//! (`cargo test -p osprofiler-store --features postgres,mysql --test sql -- --ignored
//! --nocapture query_plans`), on a table of 300,000 rows written by our sink: one trace of
//! 100,000 points (200,000 events) and 1,000 traces of 50 points (PostgreSQL 15.18,
//! `EXPLAIN ANALYZE`; MariaDB 10.11.19, `ANALYZE FORMAT=JSON`; 2026-12-07, trimmed; one
//! run on a busy 2-core machine: times vary by up to a third from run to run):
//!
//! ```text
//! -- a trace's events
//! --   PostgreSQL: SELECT … FROM data WHERE base_id = $1
//! --   MariaDB:    SELECT … FROM data FORCE INDEX (ix_data_base_id) WHERE base_id = ? ORDER BY id
//! PostgreSQL, a 50-point trace:
//!  Index Scan using ix_data_base_id on data  (actual time=0.049..0.090 rows=100)
//!    Index Cond: ((base_id)::text = 'aaaaaaaa-…'::text)
//!  Execution Time: 0.126 ms
//! PostgreSQL, the 100,000-point trace (2/3 of the table, still by the index):
//!  Index Scan using ix_data_base_id on data  (actual time=0.056..110.787 rows=200000)
//!    Index Cond: ((base_id)::text = '11111111-…'::text)
//!  Execution Time: 120.426 ms
//! MariaDB, a 50-point trace: access_type ref, key ix_data_base_id, r_rows 100, 0.21 ms
//! MariaDB, the 100,000-point trace: ref, ix_data_base_id, r_rows 200000, 225.6 ms
//!   (no filesort either way: the index holds the primary key, so rows come in id order)
//!
//! -- a search: are the summaries complete? First from the ids (complete when the
//! -- lowest is 1 and the highest equals the events counted: no room for another row)
//! --   SELECT (SELECT min(id) FROM data), (SELECT max(id) FROM data),
//! --          (SELECT coalesce(sum(events), 0) FROM osprofiler_trace_summary)
//! PostgreSQL: Index Only Scan using data_pkey (Limit, rows=1) for each end, and a Seq
//!   Scan of the summaries (rows=1001), 0.42 ms
//! MariaDB: both ends "Select tables optimized away" (read off the index), and ALL on
//!   osprofiler_trace_summary (r_rows 1001), 0.15 ms
//! -- only when the ids have gaps (or another writer's rows), by counting the rows
//! --   SELECT (SELECT count(*) FROM data WHERE base_id IS NOT NULL),
//! --          (SELECT coalesce(sum(events), 0) FROM osprofiler_trace_summary)
//! PostgreSQL: Parallel Seq Scan on data → Partial Aggregate (rows=100000 loops=3), 71.7 ms
//! MariaDB: range on ix_data_base_id, using_index (r_rows 300000), 39.5 ms
//!
//! -- then, when they are, the first page from the summaries (50 traces and one more)
//! --   SELECT base_id, first_us, … FROM osprofiler_trace_summary WHERE 1 = 1
//! --   ORDER BY first_us DESC, base_id DESC LIMIT 51 OFFSET 0
//! PostgreSQL: Limit → Incremental Sort (Presorted Key: first_us)
//!   → Index Scan Backward using ix_osprofiler_trace_summary_first_us (rows=52), 0.158 ms
//! MariaDB: ALL on osprofiler_trace_summary (r_rows 1001) → filesort, 0.64 ms
//!
//! -- else the GROUP BY fallback: every trace with its row count, newest first
//! --   SELECT base_id, count(*), min(timestamp) AS started FROM data WHERE base_id IS NOT NULL
//! --   AND timestamp IS NOT NULL GROUP BY base_id ORDER BY started DESC, base_id DESC
//! PostgreSQL: Parallel Seq Scan → Partial HashAggregate → Sort → Gather Merge
//!   → Finalize GroupAggregate → Sort (rows=1001), 100.9 ms
//! MariaDB: range on ix_data_base_id (r_rows 300000) → temporary table → filesort, 319.7 ms
//! ```
//!
//! Fetching and building the report of the 100,000-point trace (`osprofiler trace show
//! --json`, the whole command): see BENCHMARKS.md, "SQL". The fetch is an index lookup;
//! a search reads the summaries, and counts the rows of `data` only when its ids have gaps.

// Without either feature only the dispatch below is used (it says which feature is missing).
#![cfg_attr(not(all(feature = "postgres", feature = "mysql")), allow(dead_code))]

#[cfg(feature = "mysql")]
mod mysql;
#[cfg(feature = "postgres")]
mod postgres;
mod summaries;

use crate::backoff::Backoff;
use std::time::Duration;

use osprofiler::Event;
use osprofiler::json::write_python_json;

use osprofiler_report::{Report, ReportBuilder};

use crate::{OpenError, Options, Sink, SqlDialect, SqlTarget, TraceStore, TraceSummary};

/// The statements the store runs to fetch a trace (`?` or `$1`: its base_id) and to list
/// traces for `query` (the completeness check, the page from the summaries, the `GROUP BY`
/// fallback), as `(label, SQL)`, for the `query_plans` test of `tests/sql.rs` (it prints
/// their plans): not an API. Empty for a dialect whose feature is off.
#[doc(hidden)]
pub fn __plan_statements(
    dialect: SqlDialect,
    query: &crate::TraceQuery,
) -> Vec<(&'static str, String)> {
    let fetch = match dialect {
        #[cfg(feature = "postgres")]
        SqlDialect::Postgres => postgres::trace_rows_sql(),
        #[cfg(feature = "mysql")]
        SqlDialect::MySql => mysql::trace_rows_sql(),
        #[allow(unreachable_patterns)]
        _ => return Vec::new(),
    };
    let mut statements = Vec::new();
    // MySQL/MariaDB read a trace's ids first (then its rows by ranges of the primary key
    // when they are close, else this `fetch`).
    #[cfg(feature = "mysql")]
    if dialect == SqlDialect::MySql {
        statements.push(("fetch_ids", mysql::trace_ids_sql()));
    }
    statements.extend([
        ("fetch", fetch),
        ("ids", summaries::ids_sql(TABLE)),
        ("totals", summaries::totals_sql(TABLE)),
        ("page", summaries::page_sql(query)),
        ("fallback", summaries::counts_sql(TABLE)),
    ]);
    statements
}

/// The table's name, as Python's driver names it.
pub(crate) const TABLE: &str = "data";

/// The columns written, in this order, besides `id`.
pub(crate) const COLUMNS: [&str; 9] = [
    "timestamp",
    "base_id",
    "parent_id",
    "trace_id",
    "project",
    "host",
    "service",
    "name",
    "data",
];

/// The columns Python indexes (`index=True`), each as `ix_data_<column>`.
pub(crate) const INDEXED: [&str; 8] = [
    "timestamp",
    "base_id",
    "parent_id",
    "trace_id",
    "project",
    "host",
    "service",
    "name",
];

/// Most rows of one `INSERT` (9 parameters each; PostgreSQL and MySQL take at most 65,535).
pub(crate) const ROWS_PER_INSERT: usize = 1000;

/// One row of `data`, all text (`None` is NULL).
pub(crate) struct Row {
    pub(crate) values: [Option<String>; 9],
}

/// The row Python's driver would insert for `e`.
pub(crate) fn row(e: &Event, buf: &mut Vec<u8>) -> Row {
    // `data`: the event without the columns' keys, i.e. `{"info": …}` (Python's
    // `jsonutils.dumps`), then that text as a JSON string (SQLAlchemy's `JSON` type).
    buf.clear();
    buf.push(b'{');
    if !e.info.is_empty() {
        buf.extend_from_slice(b"\"info\": ");
        // Maps of strings and JSON values always serialize.
        let _ = write_python_json(buf, &e.info);
    }
    buf.push(b'}');
    let inner = String::from_utf8_lossy(buf).into_owned();
    buf.clear();
    let _ = write_python_json(buf, &inner);
    let data = String::from_utf8_lossy(buf).into_owned();
    Row {
        values: [
            Some(e.timestamp.to_string()),
            Some(e.base_id.to_string()),
            Some(e.parent_id.to_string()),
            Some(e.trace_id.to_string()),
            e.project.as_deref().map(str::to_owned),
            e.host().map(str::to_owned),
            e.service.as_deref().map(str::to_owned),
            Some(e.full_name()),
            Some(data),
        ],
    }
}

/// The columns of a row as read, borrowed from the driver's row (no copy per column):
/// `timestamp, base_id, parent_id, trace_id, project, service, name, data` (`host` is in
/// `data`'s `info`).
pub(crate) struct ReadRow<'a> {
    pub(crate) timestamp: Option<&'a str>,
    pub(crate) base_id: Option<&'a str>,
    pub(crate) parent_id: Option<&'a str>,
    pub(crate) trace_id: Option<&'a str>,
    pub(crate) project: Option<&'a str>,
    pub(crate) service: Option<&'a str>,
    pub(crate) name: Option<&'a str>,
    pub(crate) data: Option<&'a str>,
}

/// The columns [`ReadRow`] is read from, for `SELECT`.
pub(crate) const READ_COLUMNS: &str =
    "timestamp, base_id, parent_id, trace_id, project, service, name, data";

/// The event's osprofiler JSON, rebuilt from its row: the keys in the order our notifier
/// writes them (`name, base_id, trace_id, parent_id, timestamp, info…, project, service`),
/// `data`'s keys in place of `info`. `None` when `data` is not a JSON object (or a JSON
/// string holding one). `scratch` is reused from row to row (the decoded `data`).
pub(crate) fn event_text(r: &ReadRow<'_>, scratch: &mut String) -> Option<String> {
    let inner: &str = match r.data {
        Some(d) => decode_data(d, scratch)?,
        None => "",
    };
    let mut out = String::with_capacity(inner.len() + 256);
    out.push('{');
    let mut first = true;
    let mut field = |out: &mut String, key: &str, v: Option<&str>| {
        if let Some(v) = v {
            if !first {
                out.push_str(", ");
            }
            first = false;
            out.push('"');
            out.push_str(key);
            out.push_str("\": ");
            string(out, v);
        }
    };
    field(&mut out, "name", r.name);
    field(&mut out, "base_id", r.base_id);
    field(&mut out, "trace_id", r.trace_id);
    field(&mut out, "parent_id", r.parent_id);
    field(&mut out, "timestamp", r.timestamp);
    let body = inner.trim();
    let body = body
        .strip_prefix('{')
        .and_then(|b| b.strip_suffix('}'))
        .unwrap_or("")
        .trim();
    if !body.is_empty() {
        if out.len() > 1 {
            out.push_str(", ");
        }
        out.push_str(body);
    }
    let mut first = out.len() == 1;
    for (key, v) in [("project", r.project), ("service", r.service)] {
        if let Some(v) = v {
            if !first {
                out.push_str(", ");
            }
            first = false;
            out.push('"');
            out.push_str(key);
            out.push_str("\": ");
            string(&mut out, v);
        }
    }
    out.push('}');
    Some(out)
}

/// `data` as the JSON text of an object: SQLAlchemy's form (a JSON string holding it,
/// decoded into `scratch`) or an object stored directly.
fn decode_data<'a>(text: &'a str, scratch: &'a mut String) -> Option<&'a str> {
    let t = text.trim();
    if t.starts_with('"') {
        if !unescape_json_string(t, scratch) {
            // What the fast path does not take (a `\u` escape outside ASCII, trailing
            // text): serde_json decides, as before.
            *scratch = serde_json::from_str::<String>(t).ok()?;
        }
        scratch
            .trim_start()
            .starts_with('{')
            .then_some(scratch.as_str())
    } else if t.starts_with('{') {
        Some(t)
    } else {
        None
    }
}

/// The JSON string literal `t` (quotes included, nothing after it) decoded into `out`;
/// `false` for what this fast path leaves to serde_json: any `\u` escape of a code point
/// that needs more than one byte, control characters, malformed text.
///
/// `data` is the text of Python's `json.dumps` (ASCII only, `\uXXXX` for the rest)
/// written as a JSON string again: nearly all of its escapes are `\"` and `\\`, and a
/// general decoder cost a tenth of a 100,000-point fetch (measured, BENCHMARKS.md).
fn unescape_json_string(t: &str, out: &mut String) -> bool {
    out.clear();
    let b = t.as_bytes();
    if b.len() < 2 || b[0] != b'"' || b[b.len() - 1] != b'"' {
        return false;
    }
    let body = &t[1..t.len() - 1];
    let bytes = body.as_bytes();
    let mut i = 0;
    let mut run = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => {
                out.push_str(&body[run..i]);
                let Some(&e) = bytes.get(i + 1) else {
                    return false;
                };
                let c = match e {
                    b'"' => '"',
                    b'\\' => '\\',
                    b'/' => '/',
                    b'b' => '\u{8}',
                    b'f' => '\u{c}',
                    b'n' => '\n',
                    b'r' => '\r',
                    b't' => '\t',
                    b'u' => {
                        let Some(hex) = body.get(i + 2..i + 6) else {
                            return false;
                        };
                        match u8::from_str_radix(hex, 16) {
                            Ok(v) if v.is_ascii() && hex.bytes().all(|h| h.is_ascii_hexdigit()) => {
                                out.push(char::from(v));
                                i += 6;
                                run = i;
                                continue;
                            }
                            _ => return false,
                        }
                    }
                    _ => return false,
                };
                out.push(c);
                i += 2;
                run = i;
            }
            // An unescaped quote ends the string early; control characters are invalid.
            b'"' | 0..=0x1f => return false,
            _ => i += 1,
        }
    }
    out.push_str(&body[run..]);
    true
}

fn string(out: &mut String, s: &str) {
    // Ids, timestamps and most names are printable ASCII without `"` or `\`, which
    // Python's `json.dumps` writes as they are: no serializer for them (the reader does
    // this for every column of every row).
    if s.bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
    {
        out.push('"');
        out.push_str(s);
        out.push('"');
        return;
    }
    let mut buf = Vec::with_capacity(s.len() + 2);
    let _ = write_python_json(&mut buf, s);
    out.push_str(&String::from_utf8_lossy(&buf));
}

/// Whether a stop event's `data` records an error (`info.etype`).
pub(crate) fn has_error(data: &str) -> bool {
    let mut scratch = String::new();
    decode_data(data, &mut scratch)
        .and_then(|t| serde_json::from_str::<serde_json::Value>(t).ok())
        .is_some_and(|v| v.get("info").and_then(|i| i.get("etype")).is_some())
}

/// Trace summaries from `(base_id, first timestamp)` rows, newest first, at most `limit`.
pub(crate) fn summaries(
    mut rows: Vec<(String, String)>,
    limit: Option<usize>,
) -> Vec<TraceSummary> {
    rows.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| b.0.cmp(&a.0)));
    rows.into_iter()
        .take(limit.unwrap_or(usize::MAX))
        .map(|(base_id, timestamp)| TraceSummary { base_id, timestamp })
        .collect()
}

/// What a driver does; the sink and the store around it are shared.
pub(crate) trait Client: Send + Sized + 'static {
    /// Connects and creates the table and indexes when missing.
    fn connect(t: &SqlTarget, timeout: Duration) -> Result<Self, String>;
    /// Inserts the rows and upserts the traces' summaries, in one transaction.
    fn insert(&mut self, rows: &[Row], traces: &[summaries::BatchTrace]) -> Result<(), String>;
    /// Runs `sql` (no parameters), every column as text.
    fn text_rows(&mut self, sql: &str) -> Result<Vec<Vec<Option<String>>>, String>;
    /// `(base_id, kind, value)` of the given traces' summary members.
    fn members(&mut self, ids: &[String]) -> Result<Vec<(String, String, String)>, String>;
    /// Calls `each` with every row of trace `base_id`, in any order, as the rows arrive
    /// (none is kept).
    fn trace_rows(
        &mut self,
        base_id: &str,
        each: &mut dyn FnMut(&ReadRow<'_>),
    ) -> Result<(), String>;
    /// `(base_id, earliest timestamp)` of the newest `limit` traces (`None`: all).
    fn traces(&mut self, limit: Option<usize>) -> Result<Vec<(String, String)>, String>;
    /// `(base_id, data)` of stop events whose `data` mentions `etype`.
    fn error_candidates(&mut self) -> Result<Vec<(String, String)>, String>;
    /// `(base_id, earliest timestamp)` of the given traces.
    fn starts(&mut self, base_ids: &[String]) -> Result<Vec<(String, String)>, String>;
    /// Whether the error says the server could not be reached (the sink then starts
    /// anyway and connects later), as opposed to being refused (bad password, no database).
    fn is_transient(error: &str) -> bool;
}

fn feature_missing(t: &SqlTarget) -> OpenError {
    OpenError::FeatureMissing {
        store: crate::ConnectionString::Sql(t.clone()).to_string(),
        feature: match t.dialect {
            SqlDialect::Postgres => "postgres",
            SqlDialect::MySql => "mysql",
        },
    }
}

/// The read side for the target's dialect.
pub(crate) fn open_store_for(
    t: &SqlTarget,
    opts: &Options,
) -> Result<Box<dyn TraceStore>, OpenError> {
    match t.dialect {
        #[cfg(feature = "postgres")]
        SqlDialect::Postgres => open_store::<postgres::Postgres>(t, opts),
        #[cfg(feature = "mysql")]
        SqlDialect::MySql => open_store::<mysql::MySql>(t, opts),
        #[allow(unreachable_patterns)]
        _ => {
            let _ = opts;
            Err(feature_missing(t))
        }
    }
}

/// The write side for the target's dialect.
pub(crate) fn open_sink_for(t: &SqlTarget, opts: &Options) -> Result<Box<dyn Sink>, OpenError> {
    match t.dialect {
        #[cfg(feature = "postgres")]
        SqlDialect::Postgres => open_sink::<postgres::Postgres>(t, opts),
        #[cfg(feature = "mysql")]
        SqlDialect::MySql => open_sink::<mysql::MySql>(t, opts),
        #[allow(unreachable_patterns)]
        _ => {
            let _ = opts;
            Err(feature_missing(t))
        }
    }
}

pub(crate) fn open_store<C: Client>(
    t: &SqlTarget,
    opts: &Options,
) -> Result<Box<dyn TraceStore>, OpenError> {
    let name = crate::ConnectionString::Sql(t.clone()).to_string();
    let client = C::connect(t, opts.socket_timeout).map_err(|reason| OpenError::Unavailable {
        store: name.clone(),
        reason,
    })?;
    Ok(Box::new(SqlStore { client, name }))
}

pub(crate) fn open_sink<C: Client>(
    t: &SqlTarget,
    opts: &Options,
) -> Result<Box<dyn Sink>, OpenError> {
    let name = crate::ConnectionString::Sql(t.clone()).to_string();
    let mut sink = SqlSink::<C> {
        target: t.clone(),
        timeout: opts.socket_timeout,
        name: name.clone(),
        client: None,
        backoff: Backoff::default(),
        rows: Vec::new(),
        buf: Vec::with_capacity(1024),
        summaries: opts.trace_summaries,
    };
    match C::connect(t, opts.socket_timeout) {
        Ok(c) => sink.client = Some(c),
        // A service must start while its database is down: the sink connects later.
        Err(e) if C::is_transient(&e) => sink.failed(e),
        Err(reason) => {
            return Err(OpenError::Unavailable {
                store: name,
                reason,
            });
        }
    }
    Ok(Box::new(sink))
}

/// The event texts of trace `base_id`.
fn texts<C: Client>(client: &mut C, base_id: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut scratch = String::new();
    client.trace_rows(base_id, &mut |r| out.extend(event_text(r, &mut scratch)))?;
    Ok(out)
}

/// Events read before the report is built on a thread of its own ([`build_report`]).
const BESIDE_FROM: usize = 4096;
/// Texts handed to that thread at a time.
const HANDOVER: usize = 1024;

/// What the reading thread hands the building one: the builder first, then texts.
enum Handover {
    Builder(Box<ReportBuilder>),
    Texts(Vec<String>),
}

/// Trace `base_id`'s report, its rows read and made into event texts on this thread.
/// Past [`BESIDE_FROM`] events the texts are parsed and added on another thread (the
/// builder goes there with what it has), in the same order, so that reading the rows
/// (with the server sending them) and building the report use both cores: each was
/// about half of a 100,000-point fetch. Should the thread not start, all is built here.
/// `None` when the trace has no rows.
fn build_report<'s, C: Client>(
    scope: &'s std::thread::Scope<'s, '_>,
    client: &mut C,
    base_id: &str,
) -> Result<Option<Report>, String> {
    use std::sync::mpsc;
    let mut inline = Some(ReportBuilder::new());
    let mut beside: Option<(mpsc::SyncSender<Handover>, _)> = None;
    let mut pending: Vec<String> = Vec::new();
    let mut scratch = String::new();
    let mut texts = 0_usize;
    let read = client.trace_rows(base_id, &mut |r| {
        let Some(text) = event_text(r, &mut scratch) else {
            return;
        };
        texts += 1;
        if let Some((to, _)) = &beside {
            pending.push(text);
            if pending.len() == HANDOVER {
                let full = std::mem::replace(&mut pending, Vec::with_capacity(HANDOVER));
                // The builder's thread ends only when the sender is dropped.
                let _ = to.send(Handover::Texts(full));
            }
            return;
        }
        let Some(builder) = inline.as_mut() else {
            return;
        };
        // A refused event is counted by the builder.
        let _ = builder.push_text(text);
        if texts == BESIDE_FROM {
            let (to, from) = mpsc::sync_channel::<Handover>(4);
            let spawned = std::thread::Builder::new()
                .name("osprofiler-report".into())
                .spawn_scoped(scope, move || {
                    let mut builder = None;
                    for h in from {
                        match h {
                            Handover::Builder(b) => builder = Some(*b),
                            Handover::Texts(texts) => {
                                if let Some(b) = builder.as_mut() {
                                    for t in texts {
                                        let _ = b.push_text(t);
                                    }
                                }
                            }
                        }
                    }
                    builder.map(ReportBuilder::finish)
                });
            if let (Ok(handle), Some(b)) = (spawned, inline.take()) {
                let _ = to.send(Handover::Builder(Box::new(b)));
                pending.reserve(HANDOVER);
                beside = Some((to, handle));
            }
        }
    });
    let report = match beside {
        Some((to, handle)) => {
            if !pending.is_empty() {
                let _ = to.send(Handover::Texts(pending));
            }
            drop(to);
            handle
                .join()
                .map_err(|_| "building the report failed".to_owned())?
        }
        None => inline.map(ReportBuilder::finish),
    };
    read?;
    Ok(if texts == 0 { None } else { report })
}

struct SqlStore<C> {
    client: C,
    name: String,
}

impl<C: Client> SqlStore<C> {
    fn err(&self, reason: String) -> crate::ReadError {
        crate::ReadError {
            store: self.name.clone(),
            reason,
        }
    }
}

impl<C: Client> summaries::Source for SqlStore<C> {
    fn rows(&mut self, sql: &str) -> Result<Vec<Vec<Option<String>>>, String> {
        self.client.text_rows(sql)
    }

    fn members(&mut self, ids: &[String]) -> Result<Vec<(String, String, String)>, String> {
        self.client.members(ids)
    }

    fn texts(&mut self, id: &str) -> Result<Vec<String>, String> {
        texts(&mut self.client, id)
    }
}

impl<C: Client> TraceStore for SqlStore<C> {
    fn search_traces(
        &mut self,
        query: &crate::TraceQuery,
    ) -> Result<crate::TracePage, crate::ReadError> {
        summaries::search(self, query, TABLE).map_err(|e| self.err(e))
    }

    fn event_texts(&mut self, base_id: &str) -> Result<Vec<String>, crate::ReadError> {
        texts(&mut self.client, base_id).map_err(|e| self.err(e))
    }

    /// Each row made an event text and handed to the report as it arrives: no list of
    /// rows nor of texts in between (a 100,000-point trace is 200,000 rows).
    fn report(&mut self, base_id: &str) -> Result<Option<Report>, crate::ReadError> {
        let client = &mut self.client;
        let built = std::thread::scope(|scope| build_report(scope, client, base_id));
        match built {
            Ok(Some(report)) if !report.is_empty() => Ok(Some(report)),
            Ok(_) => Ok(None),
            Err(e) => Err(self.err(e)),
        }
    }

    fn list_traces(&mut self, limit: Option<usize>) -> Result<Vec<TraceSummary>, crate::ReadError> {
        let rows = self.client.traces(limit).map_err(|e| self.err(e))?;
        Ok(summaries(rows, limit))
    }

    fn list_error_traces(
        &mut self,
        limit: Option<usize>,
    ) -> Result<Vec<TraceSummary>, crate::ReadError> {
        let candidates = self.client.error_candidates().map_err(|e| self.err(e))?;
        let mut ids: Vec<String> = candidates
            .into_iter()
            .filter(|(_, data)| has_error(data))
            .map(|(id, _)| id)
            .collect();
        ids.sort_unstable();
        ids.dedup();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows = self.client.starts(&ids).map_err(|e| self.err(e))?;
        Ok(summaries(rows, limit))
    }

    fn describe(&self) -> String {
        self.name.clone()
    }
}

struct SqlSink<C> {
    target: SqlTarget,
    timeout: Duration,
    name: String,
    client: Option<C>,
    backoff: Backoff,
    // Reused from batch to batch.
    rows: Vec<Row>,
    buf: Vec<u8>,
    /// [`Options::trace_summaries`].
    summaries: bool,
}

impl<C: Client> SqlSink<C> {
    fn failed(&mut self, e: String) {
        self.backoff.failed(e);
    }

    fn error(&self) -> osprofiler::notifier::SinkError {
        osprofiler::notifier::SinkError::msg(format!(
            "{}: {}",
            self.name,
            self.backoff.last_error()
        ))
    }
}

impl<C: Client> Sink for SqlSink<C> {
    fn write(&mut self, events: &[Event]) -> Result<(), osprofiler::notifier::SinkError> {
        if events.is_empty() {
            return Ok(());
        }
        if self.client.is_none() {
            if let Some(waiting) = self.backoff.waiting() {
                return Err(osprofiler::notifier::SinkError::msg(format!(
                    "{}: {waiting}",
                    self.name
                )));
            }
            match C::connect(&self.target, self.timeout) {
                Ok(c) => self.client = Some(c),
                Err(e) => {
                    self.failed(e);
                    return Err(self.error());
                }
            }
        }
        self.rows.clear();
        for e in events {
            let r = row(e, &mut self.buf);
            self.rows.push(r);
        }
        let Some(client) = self.client.as_mut() else {
            return Err(self.error());
        };
        let traces = if self.summaries {
            summaries::batch_traces(events)
        } else {
            Vec::new()
        };
        match client.insert(&self.rows, &traces) {
            Ok(()) => {
                self.backoff.succeeded();
                Ok(())
            }
            Err(e) => {
                // The connection may be broken or mid-transaction: start afresh.
                self.client = None;
                self.failed(e);
                Err(self.error())
            }
        }
    }
}

/// Whether a connect error is about TLS that trying again will not fix: a certificate
/// not trusted, a CA file that cannot be read, TLS not built in.
#[cfg_attr(not(any(feature = "postgres", feature = "mysql")), allow(dead_code))]
pub(crate) fn tls_refused(error: &str) -> bool {
    [
        "invalid peer certificate",
        "CA certificate",
        "TLS setup",
        // `tls`, or `postgres-tls`.
        "tls` feature",
    ]
    .iter()
    .any(|w| error.contains(w))
}

/// `text` on one line, for messages (server errors may span lines).
pub(crate) fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(not(all(feature = "postgres", feature = "mysql")))]
    fn without_the_feature_the_dialect_says_which_feature() {
        for (dialect, want) in [
            (SqlDialect::Postgres, "postgres"),
            (SqlDialect::MySql, "mysql"),
        ] {
            let enabled = match dialect {
                SqlDialect::Postgres => cfg!(feature = "postgres"),
                SqlDialect::MySql => cfg!(feature = "mysql"),
            };
            if enabled {
                continue;
            }
            // Built by hand: such a string does not parse in this build.
            let t = SqlTarget {
                dialect,
                scheme: want.into(),
                host: "h".into(),
                port: 1,
                user: None,
                password: None,
                database: Some("db".into()),
                tls: crate::SqlTls::Disable,
                ca_file: None,
                cert_file: None,
                key_file: None,
            };
            match open_sink_for(&t, &Options::default()) {
                Err(OpenError::FeatureMissing { feature, .. }) => assert_eq!(feature, want),
                Err(e) => panic!("{e}"),
                Ok(_) => panic!("{want}: a sink"),
            }
            assert!(matches!(
                open_store_for(&t, &Options::default()),
                Err(OpenError::FeatureMissing { .. })
            ));
        }
    }

    fn read_row(data: Option<&str>) -> ReadRow<'_> {
        ReadRow {
            timestamp: Some("2026-11-25T12:00:00.001375"),
            base_id: Some("11111111-1111-4111-8111-111111111111"),
            parent_id: Some("11111111-1111-4111-8111-111111111111"),
            trace_id: Some("aaaaaaaa-aaaa-4aaa-8aaa-000000000002"),
            project: Some("nova"),
            service: Some("api"),
            name: Some("db-start"),
            data,
        }
    }

    fn rebuilt(r: &ReadRow<'_>) -> Option<String> {
        event_text(r, &mut String::new())
    }

    #[test]
    fn rows_rebuild_the_events_notifier_bytes() {
        let text = r#"{"name": "db-start", "base_id": "11111111-1111-4111-8111-111111111111", "trace_id": "aaaaaaaa-aaaa-4aaa-8aaa-000000000002", "parent_id": "11111111-1111-4111-8111-111111111111", "timestamp": "2026-11-25T12:00:00.001375", "info": {"db": {"statement": "SELECT \"x\" — ü", "params": {}}, "host": "h1"}, "project": "nova", "service": "api"}"#;
        let e = Event::from_json(text).unwrap();
        let mut buf = Vec::new();
        let r = row(&e, &mut buf);
        assert_eq!(r.values[5].as_deref(), Some("h1"));
        assert_eq!(r.values[7].as_deref(), Some("db-start"));
        let data = r.values[8].clone().unwrap();
        // Python: json.dumps(jsonutils.dumps({"info": …})).
        assert!(data.starts_with(r#""{\"info\": {\"db\": "#), "{data}");
        assert!(data.contains(r#"\\\"x\\\" \\u2014 \\u00fc"#), "{data}");
        let back = rebuilt(&read_row(Some(&data))).unwrap();
        assert_eq!(back, e.to_json());
        assert!(!has_error(&data));
    }

    /// The fast decoder of `data` gives what serde_json gives, or leaves the text to it.
    #[test]
    fn data_strings_decode_as_serde_json_decodes_them() {
        let cases = [
            r#""{\"info\": {\"db\": {\"statement\": \"SELECT \\\"x\\\" \\u2014\"}}}""#,
            r#""{\"a\": \"\/\b\f\n\r\t\u0041\u007f\"}""#,
            r#""ü — raw non-ASCII""#,
            r#""\u00e9""#,
            r#""\ud83d\ude00""#,
            r#""\u12""#,
            r#""\x""#,
            r#""a"b""#,
            r#""trailing\""#,
            "\"tab\tinside\"",
            r#""""#,
            r#"""#,
        ];
        for t in cases {
            let mut out = String::from("stale");
            let fast = unescape_json_string(t, &mut out);
            match serde_json::from_str::<String>(t) {
                Ok(want) if fast => assert_eq!(out, want, "{t}"),
                // Left to serde_json: a code point past ASCII.
                Ok(_) => assert!(t.contains("\\u"), "{t}"),
                Err(_) => assert!(!fast, "{t}: decoded as {out:?}"),
            }
        }
        let mut scratch = String::new();
        assert_eq!(
            decode_data(r#""{\"x\": \"\u00e9\"}""#, &mut scratch),
            Some("{\"x\": \"é\"}")
        );
        assert_eq!(decode_data(r#""[1]""#, &mut scratch), None);
    }

    #[test]
    fn data_as_an_object_or_empty() {
        let t = rebuilt(&read_row(Some(r#"{"info": {"etype": "E"}}"#))).unwrap();
        assert!(t.contains(r#""timestamp": "2026-11-25T12:00:00.001375", "info": {"etype""#));
        assert!(has_error(r#"{"info": {"etype": "E"}}"#));
        assert!(has_error(r#""{\"info\": {\"etype\": \"E\"}}""#));
        let t = rebuilt(&read_row(Some(r#""{}""#))).unwrap();
        assert!(
            t.ends_with(r#"001375", "project": "nova", "service": "api"}"#),
            "{t}"
        );
        assert_eq!(rebuilt(&read_row(Some("[1]"))), None);
        assert!(rebuilt(&read_row(None)).is_some());
    }
}
