//! `sqlite://`: the embedded default store, one SQLite file, no server.
//!
//! Two tables (schema version 2, kept in `PRAGMA user_version`):
//!
//! - `events(base_id, trace_id, name, timestamp, json)`: one row per event, `json` being
//!   osprofiler's exact text (what Python's Redis driver would `LPUSH`), indexed by
//!   `base_id` to fetch one trace;
//! - `traces(base_id PRIMARY KEY, started, started_us, last_write_us, has_error)`: one row
//!   per trace, maintained by the writers, indexed by `started_us` (listing, newest first)
//!   and by `(has_error, started_us)` (listing traces with errors). Since version 2 the
//!   row is also the trace's summary ([`TraceOverview`]): `finished_us`, `points` (start
//!   events), `services` and `categories` (newline-separated sets, one newline each side),
//!   the root point (`root_rank`, `root_service`, `root_category`, `root_name`); the writer
//!   merges each batch into it under the batch's write lock, so
//!   [`TraceStore::search_traces`] reads one row per trace, never the events (but for a
//!   free-text search, which looks into the events of the rows the other filters keep).
//!
//! A writer upgrades a version 1 file when it opens it: the columns are added and every
//! trace summarised from its events, in one transaction. A reader of a version 1 file
//! (no writer of this version has opened it yet) summarises from the events. Writers of
//! version 1 refuse a version 2 file (newer schema) rather than leave summaries stale.
//!
//! Several processes may write the same file at once: the database is in WAL mode and a
//! writer waits up to [`BUSY_TIMEOUT`] for the write lock, taken at the start of each
//! batch's transaction. `has_error` is recorded for every trace whatever
//! `filter_error_trace` says (it costs one column), so [`TraceStore::list_error_traces`]
//! lists every trace with an error. With [`Options::ttl`], the writers delete traces whose
//! last write is older than the TTL.
//!
//! Faults (tests/sqlite_faults.rs): a failed batch is counted by the notifier and the
//! connection closed; the next batch opens the file again, and so does a batch that finds
//! the file at the path gone or replaced (directory removed): writing on would go to the
//! unlinked file, counted as exported and lost. Not survivable by any library: making
//! the `-shm` file immutable (`chattr +i`) while it is mapped, as SQLite's WAL index is,
//! turns the next write to the mapping into SIGBUS.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use osprofiler::notifier::SinkError;
use osprofiler::{Event, EventKind, Timestamp};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use crate::summary::{one_line as flat, root_name as point_label, root_rank};
use crate::{
    OpenError, Options, ReadError, RootPoint, Sink, TraceOverview, TracePage, TraceQuery,
    TraceStore, TraceSummary,
};

/// The schema this code writes and reads (`PRAGMA user_version`).
const SCHEMA_VERSION: i64 = 2;

/// Version 1. `NOT NULL` everywhere so that readers never meet a hole.
const SCHEMA_V1: &str = "
CREATE TABLE IF NOT EXISTS events (
    base_id   TEXT NOT NULL,
    trace_id  TEXT NOT NULL,
    name      TEXT NOT NULL,
    timestamp TEXT NOT NULL,
    json      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_base_id ON events (base_id);
CREATE TABLE IF NOT EXISTS traces (
    base_id       TEXT PRIMARY KEY NOT NULL,
    started       TEXT NOT NULL,
    started_us    INTEGER NOT NULL,
    last_write_us INTEGER NOT NULL,
    has_error     INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS traces_started ON traces (started_us);
CREATE INDEX IF NOT EXISTS traces_errors ON traces (has_error, started_us);
PRAGMA user_version = 1;
";

/// Version 1 to 2: the summary columns (filled from the events by `migrate_v2`).
const SCHEMA_V2: &str = "
ALTER TABLE traces ADD COLUMN finished_us INTEGER NOT NULL DEFAULT 0;
ALTER TABLE traces ADD COLUMN points INTEGER NOT NULL DEFAULT 0;
ALTER TABLE traces ADD COLUMN services TEXT NOT NULL DEFAULT '';
ALTER TABLE traces ADD COLUMN categories TEXT NOT NULL DEFAULT '';
ALTER TABLE traces ADD COLUMN root_rank INTEGER NOT NULL DEFAULT 9223372036854775807;
ALTER TABLE traces ADD COLUMN root_service TEXT NOT NULL DEFAULT '';
ALTER TABLE traces ADD COLUMN root_category TEXT NOT NULL DEFAULT '';
ALTER TABLE traces ADD COLUMN root_name TEXT NOT NULL DEFAULT '';
PRAGMA user_version = 2;
";

/// A batch's new members of a trace's sets, merged in Rust (rarely: a trace's later
/// batches mostly repeat its services and categories).
const UPDATE_SETS: &str = "UPDATE traces SET services = ?2, categories = ?3 WHERE base_id = ?1";

const UPDATE_SUMMARY: &str = "UPDATE traces SET finished_us = ?2, points = ?3, services = ?4, \
     categories = ?5, root_rank = ?6, root_service = ?7, root_category = ?8, root_name = ?9 \
     WHERE base_id = ?1";

/// The columns `search` reads, in `overview_of_row`'s order.
const OVERVIEW_COLUMNS: &str = "base_id, started_us, finished_us, points, services, \
     categories, root_service, root_category, root_name, has_error";

const INSERT_EVENT: &str =
    "INSERT INTO events (base_id, trace_id, name, timestamp, json) VALUES (?1, ?2, ?3, ?4, ?5)";

// Assignments in DO UPDATE see the row as it was, so `started` and `started_us` move
// together to the earliest start whichever writer saw it first, and the root's columns
// with `root_rank`. The sets are the batch's on insert and kept on update: RETURNING gives
// them, and the writer adds the batch's members only when some are new (UPDATE_SETS).
const UPSERT_TRACE: &str = "
INSERT INTO traces (base_id, started, started_us, last_write_us, has_error, finished_us, points,
                    services, categories, root_rank, root_service, root_category, root_name)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
ON CONFLICT (base_id) DO UPDATE SET
    started = CASE WHEN excluded.started_us < traces.started_us
                   THEN excluded.started ELSE traces.started END,
    started_us = min(traces.started_us, excluded.started_us),
    last_write_us = max(traces.last_write_us, excluded.last_write_us),
    has_error = max(traces.has_error, excluded.has_error),
    finished_us = max(traces.finished_us, excluded.finished_us),
    points = traces.points + excluded.points,
    root_rank = min(traces.root_rank, excluded.root_rank),
    root_service = CASE WHEN excluded.root_rank < traces.root_rank
                        THEN excluded.root_service ELSE traces.root_service END,
    root_category = CASE WHEN excluded.root_rank < traces.root_rank
                         THEN excluded.root_category ELSE traces.root_category END,
    root_name = CASE WHEN excluded.root_rank < traces.root_rank
                     THEN excluded.root_name ELSE traces.root_name END
RETURNING services, categories";

// Newest first; ties (same microsecond) by rowid, newest row first, which the index on
// started_us holds already: any other tie-breaker makes SQLite sort (or scan) the table.
const LIST_TRACES: &str =
    "SELECT base_id, started FROM traces ORDER BY started_us DESC, rowid DESC LIMIT ?1";
const LIST_ERROR_TRACES: &str = "SELECT base_id, started FROM traces WHERE has_error = 1 \
     ORDER BY started_us DESC, rowid DESC LIMIT ?1";
// rowid order is insertion order and comes free with the base_id index.
const TRACE_EVENTS: &str = "SELECT json FROM events WHERE base_id = ?1 ORDER BY rowid";

/// How long a writer (or a reader) waits for a lock another process holds before failing
/// with "database is locked". A batch commits in milliseconds, so this only runs out when
/// something is stuck.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How often a writer looks for expired traces (with a TTL).
const EXPIRE_EVERY: Duration = Duration::from_secs(60);

/// Most traces one expiry pass deletes: the pass holds the write lock, so it stays short;
/// when there are more, the next batch's pass goes on.
const EXPIRE_MAX_TRACES: usize = 500;

/// The WAL file is truncated back to this after a checkpoint (it otherwise keeps the size
/// of its largest burst).
const JOURNAL_SIZE_LIMIT: i64 = 64 * 1024 * 1024;

/// Why an SQLite operation failed; every message is one line.
#[derive(Debug, thiserror::Error)]
enum Error {
    #[error("{}", one_line(&.0.to_string()))]
    Sql(#[from] rusqlite::Error),
    #[error("no such database file")]
    Missing,
    #[error("{}", one_line(.0))]
    Io(String),
    #[error(
        "database schema version {0} is newer than this osprofiler knows (version {SCHEMA_VERSION})"
    )]
    NewerSchema(i64),
    #[error("not an osprofiler trace database (it has other tables)")]
    Foreign,
}

/// `s` with every run of whitespace (newlines included) made one space.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn describe(path: &Path) -> String {
    // Hidden up to an `@`: see `conn::shown_path`.
    format!("sqlite://{}", crate::conn::shown_path(path))
}

fn unavailable(path: &Path, e: Error) -> OpenError {
    OpenError::Unavailable {
        store: describe(path),
        reason: e.to_string(),
    }
}

/// A connection with the busy timeout; creates the file only when `create`.
fn connect(path: &Path, create: bool) -> Result<Connection, Error> {
    // No SQLITE_OPEN_URI: the path is a file name, even one starting with "file:".
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    if create {
        flags |= OpenFlags::SQLITE_OPEN_CREATE;
    }
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    Ok(conn)
}

fn user_version(conn: &Connection) -> Result<i64, Error> {
    Ok(conn.pragma_query_value(None, "user_version", |r| r.get(0))?)
}

/// What a database holds, as far as this code is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Schema {
    /// Our tables, at our version.
    Ready,
    /// Our tables at version 1: no summaries yet.
    V1,
    /// Nothing at all yet (a new or zero-length file).
    Empty,
}

/// Reads the schema state; this is also the first read of the file, so a file that is
/// not a database fails here ("file is not a database").
fn schema(conn: &Connection) -> Result<Schema, Error> {
    let version = user_version(conn)?;
    let (ours, others): (i64, i64) = conn.query_row(
        "SELECT count(*) FILTER (WHERE name IN ('events', 'traces')), \
                count(*) FILTER (WHERE name NOT IN ('events', 'traces')) \
         FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    match version {
        SCHEMA_VERSION if ours == 2 => Ok(Schema::Ready),
        1 if ours == 2 => Ok(Schema::V1),
        v if v > SCHEMA_VERSION => Err(Error::NewerSchema(v)),
        0 if ours == 0 && others == 0 => Ok(Schema::Empty),
        _ => Err(Error::Foreign),
    }
}

/// Creates the schema if the database has none. Safe against other processes doing the
/// same: the check is repeated under the write lock.
fn ensure_schema(conn: &mut Connection) -> Result<(), Error> {
    if schema(conn)? == Schema::Ready {
        return Ok(());
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    match schema(&tx)? {
        Schema::Empty => {
            tx.execute_batch(SCHEMA_V1)?;
            tx.execute_batch(SCHEMA_V2)?;
        }
        Schema::V1 => migrate_v2(&tx)?,
        Schema::Ready => {}
    }
    tx.commit()?;
    Ok(())
}

/// Version 1 to 2 in the caller's transaction: adds the summary columns and summarises
/// every trace from its events.
fn migrate_v2(tx: &rusqlite::Transaction<'_>) -> Result<(), Error> {
    tx.execute_batch(SCHEMA_V2)?;
    let ids: Vec<String> = tx
        .prepare("SELECT base_id FROM traces")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let mut texts_of = tx.prepare(TRACE_EVENTS)?;
    let mut update = tx.prepare(UPDATE_SUMMARY)?;
    for id in ids {
        let texts: Vec<String> = texts_of
            .query_map([&id], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        let report = osprofiler_report::Report::from_json_texts(texts);
        let (t, rank) = TraceOverview::from_report_ranked(&id, &report);
        let root = t.root.unwrap_or_default();
        update.execute((
            &id,
            t.finished_us,
            t.points as i64,
            set_text(t.services.iter().map(String::as_str)),
            set_text(t.categories.iter().map(String::as_str)),
            rank,
            root.service,
            root.category,
            root.name,
        ))?;
    }
    Ok(())
}

/// A set as stored: each member followed by a newline, one more before the first, so that
/// `instr(col, char(10) || x || char(10))` finds a member; `""` when empty.
fn set_text<'a>(members: impl IntoIterator<Item = &'a str>) -> String {
    let mut out = String::new();
    for m in members {
        if out.is_empty() {
            out.push('\n');
        }
        out.push_str(m);
        out.push('\n');
    }
    out
}

/// The members of a stored set.
fn set_members(text: &str) -> impl Iterator<Item = &str> {
    text.split('\n').filter(|m| !m.is_empty())
}

// ---------------------------------------------------------------------------------------
// Write side

pub(crate) fn open_sink(path: &Path, opts: &Options) -> Result<Box<dyn Sink>, OpenError> {
    Ok(Box::new(
        SqliteSink::open(path, opts).map_err(|e| unavailable(path, e))?,
    ))
}

struct SqliteSink {
    /// `None` after a failure: the next batch opens the database again (see `write_batch`).
    conn: Option<Connection>,
    /// The (device, inode) of the file `conn` has open, to see the file replaced or gone.
    file_id: Option<(u64, u64)>,
    path: PathBuf,
    ttl: Option<Duration>,
    /// When the next expiry pass may run (with a TTL).
    next_expiry: Instant,
    /// Reused buffers: one event's JSON, name and timestamp texts.
    json: Vec<u8>,
    name: String,
    stamp: Vec<u8>,
    /// The batch's traces by base id.
    traces: HashMap<u128, BatchTrace>,
}

/// What one batch says of one trace, to merge into its row.
struct BatchTrace {
    started: i64,
    finished: i64,
    error: bool,
    points: i64,
    services: Vec<Arc<str>>,
    categories: Vec<Cow<'static, str>>,
    /// The best root candidate: its rank (`summary::root_rank`), index in the batch, and
    /// whether its JSON may hold a name (else its info is not looked at).
    root: Option<(i64, usize, bool)>,
}

impl SqliteSink {
    fn open(path: &Path, opts: &Options) -> Result<SqliteSink, Error> {
        let conn = open_writer(path)?;
        Ok(SqliteSink {
            conn: Some(conn),
            file_id: file_id(path),
            path: path.to_path_buf(),
            ttl: opts.ttl,
            next_expiry: Instant::now(),
            json: Vec::with_capacity(1024),
            name: String::with_capacity(64),
            stamp: Vec::with_capacity(26),
            traces: HashMap::new(),
        })
    }

    /// The connection to write with, opened again when the last one failed or when the
    /// file at `path` is no longer the one it has open (removed with its directory,
    /// replaced): writing on would go to an unlinked file, "exported" and lost.
    fn ensure_writer(&mut self) -> Result<(), Error> {
        let now = file_id(&self.path);
        if self.conn.is_some() && (now.is_none() || now != self.file_id) {
            self.conn = None;
        }
        if self.conn.is_none() {
            // A failure here is this batch's error; the next batch tries again.
            let conn = open_writer(&self.path)?;
            self.file_id = file_id(&self.path);
            self.conn = Some(conn);
        }
        Ok(())
    }
}

/// The (device, inode) of the file at `path`, if there is one.
fn file_id(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// Opens (creating it and its directory if need be) the database for writing.
fn open_writer(path: &Path) -> Result<Connection, Error> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| {
            Error::Io(format!(
                "cannot create {}: {e}",
                crate::conn::shown_path(dir)
            ))
        })?;
    }
    let mut conn = connect(path, true)?;
    // WAL: readers and the writer do not block each other, and a commit appends to
    // the log instead of rewriting pages in place. The mode is stored in the file,
    // so readers get it too. (Where WAL is impossible SQLite keeps its rollback
    // journal, which is still safe for several processes, only slower.)
    let _mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
    // NORMAL in WAL mode: a commit does not fsync, a checkpoint does. A power loss
    // may lose the last batches, never corrupt the file; traces are not worth an
    // fsync per batch.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "journal_size_limit", JOURNAL_SIZE_LIMIT)?;
    ensure_schema(&mut conn)?;
    // A file SQLite could only open read-only (no write permission, immutable) would
    // fail every batch until the process restarts: fail now, and open again later.
    if conn.is_readonly(c"main")? {
        return Err(Error::Io("the database file is read-only".into()));
    }
    Ok(conn)
}

impl SqliteSink {
    /// Inserts the batch in one transaction: one lock, one commit, whatever its size.
    fn write_batch(&mut self, events: &[Event]) -> Result<(), Error> {
        if events.is_empty() {
            return Ok(());
        }
        self.traces.clear();
        let result = self.insert_batch(events);
        // After any failure (read-only, I/O error, disk full, lock timeout) the
        // connection is closed and the next batch opens the file again: a connection
        // SQLite fell back to read-only, or whose file vanished, never recovers by itself.
        if result.is_err() {
            self.conn = None;
        }
        result
    }

    fn insert_batch(&mut self, events: &[Event]) -> Result<(), Error> {
        self.ensure_writer()?;
        let conn = self.conn.as_mut().ok_or(Error::Missing)?;
        // IMMEDIATE takes the write lock up front, waiting (busy timeout) for other
        // writers; a deferred transaction could instead fail at its first write.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut insert = tx.prepare_cached(INSERT_EVENT)?;
            let mut base = [0u8; 36];
            let mut point = [0u8; 36];
            for (i, e) in events.iter().enumerate() {
                self.json.clear();
                e.write_json(&mut self.json);
                // Python-style JSON of strings is UTF-8; lossy only guards the impossible.
                let json = String::from_utf8_lossy(&self.json);
                self.name.clear();
                let _ = write!(self.name, "{}-{}", e.name, e.kind.suffix());
                self.stamp.clear();
                e.timestamp.write_to(&mut self.stamp);
                e.base_id.write_hyphenated(&mut base);
                e.trace_id.write_hyphenated(&mut point);
                insert.execute((
                    ascii(&base),
                    ascii(&point),
                    self.name.as_str(),
                    ascii(&self.stamp),
                    json.as_ref(),
                ))?;
                // The text test is cheap and exact for "no etype key anywhere"; only
                // then is the info looked at (which may build its map).
                let error =
                    json.contains("\"etype\"") && e.info.get("etype").is_some_and(|v| !v.is_null());
                let us = e.timestamp.as_micros();
                let t = self
                    .traces
                    .entry(e.base_id.0)
                    .or_insert_with(|| BatchTrace {
                        started: us,
                        finished: us,
                        error: false,
                        points: 0,
                        services: Vec::new(),
                        categories: Vec::new(),
                        root: None,
                    });
                t.started = t.started.min(us);
                t.finished = t.finished.max(us);
                t.error |= error;
                // A handful of each per trace: a linear look beats hashing.
                if let Some(s) = &e.service
                    && !t.services.iter().any(|x| Arc::ptr_eq(x, s) || **x == **s)
                {
                    t.services.push(s.clone());
                }
                if !t.categories.contains(&e.name) {
                    t.categories.push(e.name.clone());
                }
                if matches!(e.kind, EventKind::Start) {
                    t.points += 1;
                    let rank = root_rank(e.parent_id == e.base_id, us);
                    if t.root.is_none_or(|(r, _, _)| rank < r) {
                        let named = ["\"request\"", "\"function\"", "\"db\"", "\"requests\""]
                            .iter()
                            .any(|k| json.contains(k));
                        t.root = Some((rank, i, named));
                    }
                }
            }
            let mut upsert = tx.prepare_cached(UPSERT_TRACE)?;
            let now = Timestamp::now().as_micros();
            let mut update = tx.prepare_cached(UPDATE_SETS)?;
            for (&base_id, t) in &self.traces {
                osprofiler::Id(base_id).write_hyphenated(&mut base);
                let id = ascii(&base);
                let services = batch_set(t.services.iter().map(|s| &**s));
                let categories = batch_set(t.categories.iter().map(|c| &**c));
                let (rank, root_service, root_category, root_name) = match t.root {
                    Some((rank, i, named)) => {
                        let e = &events[i];
                        let service = e.service.as_deref().map(flat).unwrap_or_default();
                        let name = if named {
                            point_label(|k| e.info.get(k))
                        } else {
                            String::new()
                        };
                        (rank, service, flat(&e.name), name)
                    }
                    None => (i64::MAX, String::new(), String::new(), String::new()),
                };
                let (stored_services, stored_categories): (String, String) = upsert.query_row(
                    rusqlite::params![
                        id,
                        Timestamp(t.started).to_string(),
                        t.started,
                        now,
                        t.error,
                        t.finished,
                        t.points,
                        services,
                        categories,
                        rank,
                        root_service,
                        root_category,
                        root_name,
                    ],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?;
                // Under the batch's write lock: no other writer changes the row meanwhile.
                if !has_all(&stored_services, &services)
                    || !has_all(&stored_categories, &categories)
                {
                    let all_services = merged_set(&stored_services, set_members(&services));
                    let all_categories = merged_set(&stored_categories, set_members(&categories));
                    update.execute((id, all_services, all_categories))?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Deletes traces last written more than the TTL ago, at most every
    /// [`EXPIRE_EVERY`], in a transaction of its own.
    fn expire(&mut self) -> Result<(), Error> {
        let Some(ttl) = self.ttl else {
            return Ok(());
        };
        let now = Instant::now();
        if now < self.next_expiry {
            return Ok(());
        }
        self.next_expiry = now + EXPIRE_EVERY;
        let ttl_us = i64::try_from(ttl.as_micros()).unwrap_or(i64::MAX);
        let cutoff = Timestamp::now().as_micros().saturating_sub(ttl_us);
        let Some(conn) = self.conn.as_mut() else {
            return Ok(());
        };
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let expired: Vec<String> = tx
            .prepare_cached("SELECT base_id FROM traces WHERE last_write_us < ?1 LIMIT ?2")?
            .query_map((cutoff, EXPIRE_MAX_TRACES as i64), |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        {
            let mut events = tx.prepare_cached("DELETE FROM events WHERE base_id = ?1")?;
            let mut traces = tx.prepare_cached("DELETE FROM traces WHERE base_id = ?1")?;
            for base_id in &expired {
                events.execute([base_id])?;
                traces.execute([base_id])?;
            }
        }
        tx.commit()?;
        if expired.len() == EXPIRE_MAX_TRACES {
            // More are waiting: go on with the next batch instead of in a minute.
            self.next_expiry = Instant::now();
        }
        Ok(())
    }
}

/// A batch's few members as a stored set (sorted, on one line each, no repeats).
fn batch_set<'a>(members: impl Iterator<Item = &'a str>) -> String {
    let mut v: Vec<Cow<'a, str>> = members
        .filter(|m| !m.is_empty())
        .map(|m| {
            if m.contains(['\n', '\r']) {
                Cow::Owned(flat(m))
            } else {
                Cow::Borrowed(m)
            }
        })
        .collect();
    v.sort_unstable();
    v.dedup();
    set_text(v.iter().map(|m| &**m))
}

/// Whether stored set `stored` has every member of stored set `set`.
fn has_all(stored: &str, set: &str) -> bool {
    set_members(set).all(|m| {
        stored
            .match_indices(m)
            .any(|(i, _)| stored[..i].ends_with('\n') && stored[i + m.len()..].starts_with('\n'))
    })
}

/// The stored set `stored` with `more`, as stored (sorted, on one line each).
fn merged_set<'a>(stored: &str, more: impl Iterator<Item = &'a str>) -> String {
    let mut all: std::collections::BTreeSet<String> =
        set_members(stored).map(str::to_owned).collect();
    for m in more {
        if !m.is_empty() && !all.contains(m) {
            all.insert(flat(m));
        }
    }
    set_text(all.iter().map(String::as_str))
}

/// The text of bytes known to be ASCII (ids, timestamps).
fn ascii(b: &[u8]) -> &str {
    std::str::from_utf8(b).unwrap_or_default()
}

impl Sink for SqliteSink {
    fn write(&mut self, events: &[Event]) -> Result<(), SinkError> {
        self.write_batch(events)
            .map_err(|e| SinkError::msg(format!("{}: {e}", describe(&self.path))))?;
        // The batch is stored whatever happens here. A failed pass is retried at the next
        // interval; a lasting cause (disk full, a stuck lock) fails the writes themselves,
        // which is where the notifier counts and reports it.
        let _ = self.expire();
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Read side

pub(crate) fn open_store(path: &Path, _opts: &Options) -> Result<Box<dyn TraceStore>, OpenError> {
    Ok(Box::new(
        SqliteStore::open(path).map_err(|e| unavailable(path, e))?,
    ))
}

struct SqliteStore {
    conn: Connection,
    path: PathBuf,
    /// Whether the schema exists (a reader may open a file no writer has set up yet).
    ready: bool,
}

impl SqliteStore {
    fn open(path: &Path) -> Result<SqliteStore, Error> {
        // Checked first, and the file is opened without CREATE: reading never leaves an
        // empty database behind a mistyped path.
        match std::fs::metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Error::Missing),
            Err(e) => return Err(Error::Io(e.to_string())),
            Ok(m) if m.is_dir() => return Err(Error::Io("is a directory".into())),
            Ok(_) => {}
        }
        let conn = connect(path, false)?;
        // Belt and braces: nothing on this connection may change the file.
        conn.pragma_update(None, "query_only", true)?;
        let ready = schema(&conn)? != Schema::Empty;
        Ok(SqliteStore {
            conn,
            path: path.to_path_buf(),
            ready,
        })
    }

    /// Whether there is anything to read; rechecked until a writer has made the schema.
    fn ready(&mut self) -> Result<bool, Error> {
        if !self.ready {
            self.ready = schema(&self.conn)? != Schema::Empty;
        }
        Ok(self.ready)
    }

    fn read_err(&self, e: Error) -> ReadError {
        ReadError {
            store: describe(&self.path),
            reason: e.to_string(),
        }
    }

    fn events_of(&mut self, base_id: &str) -> Result<Vec<String>, Error> {
        if !self.ready()? {
            return Ok(Vec::new());
        }
        let mut stmt = self.conn.prepare_cached(TRACE_EVENTS)?;
        let mut rows = stmt.query([base_id])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            // Texts as stored; the report skips (and counts) any that is not an event.
            let text = match row.get_ref(0)? {
                ValueRef::Text(b) | ValueRef::Blob(b) => b,
                _ => continue,
            };
            if let Ok(t) = std::str::from_utf8(text) {
                out.push(t.to_owned());
            }
        }
        Ok(out)
    }

    fn summaries(&mut self, sql: &str, limit: Option<usize>) -> Result<Vec<TraceSummary>, Error> {
        if !self.ready()? {
            return Ok(Vec::new());
        }
        // A negative LIMIT is no limit in SQLite.
        let limit = limit.map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX));
        let mut stmt = self.conn.prepare_cached(sql)?;
        let list = stmt
            .query_map([limit], |r| {
                Ok(TraceSummary {
                    base_id: r.get(0)?,
                    timestamp: r.get(1)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        Ok(list)
    }
}

impl SqliteStore {
    /// One page of the search, from the summary columns; `None` for a version 1 file
    /// (no summaries), which the caller searches through the events.
    fn search(&mut self, q: &TraceQuery) -> Result<Option<TracePage>, Error> {
        if !self.ready()? {
            return Ok(Some(TracePage::default()));
        }
        if schema(&self.conn)? == Schema::V1 {
            return Ok(None);
        }
        let mut sql = format!("SELECT {OVERVIEW_COLUMNS} FROM traces WHERE 1");
        let mut params: Vec<rusqlite::types::Value> = Vec::new();
        let mut param = |sql: &mut String, clause: &str, v: rusqlite::types::Value| {
            params.push(v);
            // Each clause names its parameter `?N` once, N its position.
            sql.push_str(" AND ");
            sql.push_str(&clause.replace("?N", &format!("?{}", params.len())));
        };
        use rusqlite::types::Value as V;
        if q.errors_only {
            sql.push_str(" AND has_error = 1");
        }
        if let Some(s) = q.since_us {
            param(&mut sql, "started_us >= ?N", V::Integer(s));
        }
        if let Some(u) = q.until_us {
            param(&mut sql, "started_us < ?N", V::Integer(u));
        }
        if let Some(d) = q.min_duration_us {
            param(&mut sql, "finished_us - started_us >= ?N", V::Integer(d));
        }
        if let Some(d) = q.max_duration_us {
            param(&mut sql, "finished_us - started_us <= ?N", V::Integer(d));
        }
        if let Some(s) = &q.service {
            param(
                &mut sql,
                "instr(services, char(10) || ?N || char(10)) > 0",
                V::Text(s.clone()),
            );
        }
        if let Some(n) = &q.name {
            param(
                &mut sql,
                "(instr(categories, char(10) || ?N || char(10)) > 0 \
                 OR instr(lower(root_name), lower(?N)) > 0)",
                V::Text(n.clone()),
            );
        }
        if let Some(t) = &q.text {
            // SQLite's lower() folds ASCII only, as `TraceQuery::text_matches` does.
            param(
                &mut sql,
                "EXISTS (SELECT 1 FROM events WHERE events.base_id = traces.base_id \
                 AND instr(lower(json), ?N) > 0)",
                V::Text(t.to_ascii_lowercase()),
            );
        }
        // One more than the page, to tell whether there are more.
        let limit = q.limit.map_or(-1, |l| {
            i64::try_from(l.saturating_add(1)).unwrap_or(i64::MAX)
        });
        let offset = i64::try_from(q.offset).unwrap_or(i64::MAX);
        sql.push_str(&format!(
            " ORDER BY started_us DESC, rowid DESC LIMIT {limit} OFFSET {offset}"
        ));
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let mut traces = stmt
            .query_map(rusqlite::params_from_iter(params), overview_of_row)?
            .collect::<Result<Vec<_>, _>>()?;
        let more = q.limit.is_some_and(|l| traces.len() > l);
        if let Some(l) = q.limit {
            traces.truncate(l);
        }
        Ok(Some(TracePage { traces, more }))
    }
}

/// A row of [`OVERVIEW_COLUMNS`] as a summary.
fn overview_of_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TraceOverview> {
    let members = |i: usize| -> rusqlite::Result<Vec<String>> {
        let text: String = r.get(i)?;
        Ok(set_members(&text).map(str::to_owned).collect())
    };
    let root_category: String = r.get(7)?;
    Ok(TraceOverview {
        base_id: r.get(0)?,
        started_us: r.get(1)?,
        finished_us: r.get(2)?,
        points: r.get::<_, i64>(3)?.max(0) as u64,
        services: members(4)?,
        categories: members(5)?,
        root: if root_category.is_empty() {
            None
        } else {
            Some(RootPoint {
                service: r.get(6)?,
                category: root_category,
                name: r.get(8)?,
            })
        },
        error: r.get(9)?,
    })
}

impl TraceStore for SqliteStore {
    fn search_traces(&mut self, query: &TraceQuery) -> Result<TracePage, ReadError> {
        match self.search(query) {
            Ok(Some(page)) => Ok(page),
            Ok(None) => crate::summary::search_by_events(self, query),
            Err(e) => Err(self.read_err(e)),
        }
    }

    fn event_texts(&mut self, base_id: &str) -> Result<Vec<String>, ReadError> {
        self.events_of(base_id).map_err(|e| self.read_err(e))
    }

    fn list_traces(&mut self, limit: Option<usize>) -> Result<Vec<TraceSummary>, ReadError> {
        self.summaries(LIST_TRACES, limit)
            .map_err(|e| self.read_err(e))
    }

    /// Every trace with an error: SQLite records errors whatever `filter_error_trace`
    /// says (the switch exists for the Redis layout, where the index costs a key).
    fn list_error_traces(&mut self, limit: Option<usize>) -> Result<Vec<TraceSummary>, ReadError> {
        self.summaries(LIST_ERROR_TRACES, limit)
            .map_err(|e| self.read_err(e))
    }

    fn describe(&self) -> String {
        describe(&self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_one_line() {
        assert_eq!(
            one_line("near \"x\":\n  syntax error"),
            "near \"x\": syntax error"
        );
        assert_eq!(
            Error::NewerSchema(7).to_string(),
            "database schema version 7 is newer than this osprofiler knows (version 2)"
        );
    }

    #[test]
    fn queries_use_the_indexes() {
        let mut conn = Connection::open_in_memory().unwrap();
        ensure_schema(&mut conn).unwrap();
        let plan = |sql: &str| {
            let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            let rows = stmt
                .query_map([1], |r| r.get::<_, String>(3))
                .unwrap()
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            rows.join("; ")
        };
        let events = plan(TRACE_EVENTS);
        assert!(events.contains("USING INDEX events_base_id"), "{events}");
        assert!(!events.contains("TEMP B-TREE"), "{events}");
        let list = plan(LIST_TRACES);
        assert_eq!(list, "SCAN traces USING INDEX traces_started");
        let errors = plan(LIST_ERROR_TRACES);
        assert_eq!(
            errors,
            "SEARCH traces USING INDEX traces_errors (has_error=?)"
        );
    }
}
