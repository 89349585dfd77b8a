//! PostgreSQL through `tokio-postgres`, on a current-thread runtime owned by the client
//! and driven only while a call is under way (as the OTLP/gRPC exporter does). Every call
//! is bounded by the socket timeout.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use futures_core::Stream;
use tokio_postgres::config::SslMode;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client as PgClient, NoTls, Statement};

use super::summaries::{BatchTrace, MEMBER, SUMMARY};
use super::{COLUMNS, INDEXED, READ_COLUMNS, ROWS_PER_INSERT, ReadRow, Row, TABLE, one_line};
use crate::SqlTarget;
#[cfg(feature = "postgres-tls")]
use crate::SqlTls;

#[cfg(feature = "postgres-tls")]
type Tls = tokio_postgres_rustls::MakeRustlsConnect;
/// Without the `postgres-tls` feature there is no connector: only plain connections.
#[cfg(not(feature = "postgres-tls"))]
type Tls = std::convert::Infallible;

/// The TLS connector for `sslmode` (`None`: plain TCP).
fn tls_connector(t: &SqlTarget) -> Result<Option<Tls>, String> {
    #[cfg(feature = "postgres-tls")]
    {
        use crate::tls::Verify;
        let verify = match t.tls {
            SqlTls::Disable => return Ok(None),
            SqlTls::Prefer | SqlTls::Require => Verify::Nothing,
            SqlTls::VerifyCa => Verify::Chain,
            SqlTls::VerifyFull => Verify::Full,
        };
        // Both or neither: the parser saw to that.
        let identity = t.cert_file.as_deref().zip(t.key_file.as_deref());
        let config =
            crate::tls::client_config(t.ca_file.as_deref(), "sslrootcert", verify, identity)?;
        Ok(Some(tokio_postgres_rustls::MakeRustlsConnect::new(config)))
    }
    #[cfg(not(feature = "postgres-tls"))]
    {
        // `prefer` (libpq's default) falls back to plain TCP, as against a server without
        // TLS. `tls` alone is not enough: the adapter comes with `postgres-tls` only.
        if t.tls.required() {
            return Err(format!(
                "sslmode {:?}: TLS needs osprofiler-store's `postgres-tls` feature",
                t.tls
            ));
        }
        // Not dropped silently: the server may let no one in without it.
        if t.cert_file.is_some() {
            return Err("sslcert: TLS needs osprofiler-store's `postgres-tls` feature".into());
        }
        Ok(None)
    }
}

/// SQLAlchemy 1.4's DDL for Python's table on PostgreSQL (`Integer` primary key →
/// `SERIAL`, `String(n)` → `VARCHAR(n)`, `JSON` → `JSON`), and its indexes.
fn ddl() -> Vec<String> {
    let mut out = vec![format!(
        "CREATE TABLE IF NOT EXISTS {TABLE} (\
         id SERIAL NOT NULL, timestamp VARCHAR(26), base_id VARCHAR(255), \
         parent_id VARCHAR(255), trace_id VARCHAR(255), project VARCHAR(255), \
         host VARCHAR(255), service VARCHAR(255), name VARCHAR(255), data JSON, \
         PRIMARY KEY (id))"
    )];
    for c in INDEXED {
        out.push(format!(
            "CREATE INDEX IF NOT EXISTS ix_{TABLE}_{c} ON {TABLE} ({c})"
        ));
    }
    out.push(format!(
        "CREATE TABLE IF NOT EXISTS {SUMMARY} (\
         base_id VARCHAR(255) NOT NULL PRIMARY KEY, first_us BIGINT NOT NULL, \
         last_us BIGINT NOT NULL, points BIGINT NOT NULL, events BIGINT NOT NULL, \
         error BIGINT NOT NULL, root_rank BIGINT NOT NULL, root_service TEXT NOT NULL, \
         root_category TEXT NOT NULL, root_name TEXT NOT NULL)"
    ));
    out.push(format!(
        "CREATE INDEX IF NOT EXISTS ix_{SUMMARY}_first_us ON {SUMMARY} (first_us)"
    ));
    out.push(format!(
        "CREATE TABLE IF NOT EXISTS {MEMBER} (base_id VARCHAR(255) NOT NULL, \
         kind CHAR(1) NOT NULL, value VARCHAR(255) NOT NULL, PRIMARY KEY (base_id, kind, value))"
    ));
    out
}

/// Traces' summaries a statement upserts at most (10 parameters each; PostgreSQL takes
/// 65,535).
const UPSERT_ROWS: usize = 1000;

/// `n` traces' summaries merged with what a batch says of them (the row as it was on the
/// right of each `SET`), in one statement: a round trip per trace cost a third of the
/// writes of short traces. The batch's base ids are distinct, as one statement needs.
fn upsert_sql(n: usize) -> String {
    let better = "EXCLUDED.root_rank < s.root_rank";
    let values: Vec<String> = (0..n)
        .map(|r| {
            let k = r * 10;
            format!(
                "(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${})",
                k + 1,
                k + 2,
                k + 3,
                k + 4,
                k + 5,
                k + 6,
                k + 7,
                k + 8,
                k + 9,
                k + 10
            )
        })
        .collect();
    format!(
        "INSERT INTO {SUMMARY} AS s (base_id, first_us, last_us, points, events, error, \
         root_rank, root_service, root_category, root_name) \
         VALUES {} \
         ON CONFLICT (base_id) DO UPDATE SET \
         first_us = LEAST(s.first_us, EXCLUDED.first_us), \
         last_us = GREATEST(s.last_us, EXCLUDED.last_us), \
         points = s.points + EXCLUDED.points, events = s.events + EXCLUDED.events, \
         error = GREATEST(s.error, EXCLUDED.error), \
         root_rank = LEAST(s.root_rank, EXCLUDED.root_rank), \
         root_service = CASE WHEN {better} THEN EXCLUDED.root_service ELSE s.root_service END, \
         root_category = CASE WHEN {better} THEN EXCLUDED.root_category ELSE s.root_category END, \
         root_name = CASE WHEN {better} THEN EXCLUDED.root_name ELSE s.root_name END",
        values.join(", ")
    )
}

pub(crate) struct Postgres {
    client: PgClient,
    /// Prepared multi-row INSERTs by row count.
    inserts: HashMap<usize, Statement>,
    timeout: Duration,
    // Declared last: dropped after the client, whose connection task lives here.
    runtime: OwnRuntime,
}

/// Shut down without waiting: the client may be dropped inside another runtime.
struct OwnRuntime(Option<tokio::runtime::Runtime>);

impl Drop for OwnRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

fn pg_error(e: tokio_postgres::Error) -> String {
    // The server's message (`DbError`) carries the detail the outer Display leaves out.
    let text = match e.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => match std::error::Error::source(&e) {
            Some(src) => format!("{e}: {src}"),
            None => e.to_string(),
        },
    };
    one_line(&text)
}

fn run<T>(
    rt: &tokio::runtime::Runtime,
    timeout: Duration,
    f: impl Future<Output = Result<T, tokio_postgres::Error>>,
) -> Result<T, String> {
    rt.block_on(async {
        match tokio::time::timeout(timeout, f).await {
            Ok(r) => r.map_err(pg_error),
            Err(_) => Err(format!("no answer within {timeout:?}")),
        }
    })
}

impl Postgres {
    fn call<T>(
        &self,
        f: impl Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T, String> {
        let Some(rt) = self.runtime.0.as_ref() else {
            return Err("runtime gone".into());
        };
        run(rt, self.timeout, f)
    }

    fn insert_statement(&mut self, n: usize) -> Result<Statement, String> {
        if let Some(s) = self.inserts.get(&n) {
            return Ok(s.clone());
        }
        let mut sql = format!("INSERT INTO {TABLE} ({}) VALUES ", COLUMNS.join(", "));
        for r in 0..n {
            if r > 0 {
                sql.push_str(", ");
            }
            sql.push('(');
            for c in 0..COLUMNS.len() {
                let k = r * COLUMNS.len() + c + 1;
                if c > 0 {
                    sql.push_str(", ");
                }
                // Text parameters; `data` is cast (text to JSON has no implicit cast).
                if c == COLUMNS.len() - 1 {
                    sql.push_str(&format!("${k}::json"));
                } else {
                    sql.push_str(&format!("${k}"));
                }
            }
            sql.push(')');
        }
        let types = vec![Type::TEXT; n * COLUMNS.len()];
        let stmt = self.call(self.client.prepare_typed(&sql, &types))?;
        // A batch's size varies: keep the full chunk's statement and a few others.
        if self.inserts.len() >= 8 {
            self.inserts.retain(|k, _| *k == ROWS_PER_INSERT);
        }
        self.inserts.insert(n, stmt.clone());
        Ok(stmt)
    }
}

/// A trace's events, `$1` its base_id (shared with the `query_plans` test).
pub(crate) fn trace_rows_sql() -> String {
    format!(
        // No ORDER BY: events come in any order (the report orders them by time), and
        // sorting 200,000 rows, or reading them in `id` order, costs more than the read.
        "SELECT {} FROM {TABLE} WHERE base_id = $1",
        READ_COLUMNS.replace("data", "data::text")
    )
}

/// `(text, text)` rows.
fn pairs(rows: &[tokio_postgres::Row]) -> Result<Vec<(String, String)>, String> {
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get(0).map_err(pg_error)?,
                r.try_get(1).map_err(pg_error)?,
            ))
        })
        .collect()
}

impl super::Client for Postgres {
    fn connect(t: &SqlTarget, timeout: Duration) -> Result<Self, String> {
        let mut config = tokio_postgres::Config::new();
        let user = t.user.as_deref().unwrap_or("postgres");
        config
            .host(&t.host)
            .port(t.port)
            .user(user)
            .dbname(t.database.as_deref().unwrap_or(user))
            .application_name("osprofiler-rs")
            .connect_timeout(timeout);
        if let Some(p) = &t.password {
            config.password(p);
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(|e| format!("cannot start the PostgreSQL runtime: {e}"))?;
        // The connection's I/O runs on our runtime while a call blocks on it.
        let closed = |e: tokio_postgres::Error| {
            log::debug!("osprofiler: PostgreSQL connection closed: {e}");
        };
        let client = match tls_connector(t)? {
            None => {
                config.ssl_mode(SslMode::Disable);
                let (client, connection) = run(&runtime, timeout, config.connect(NoTls))?;
                runtime.spawn(async move { connection.await.unwrap_or_else(closed) });
                client
            }
            #[cfg(feature = "postgres-tls")]
            Some(tls) => {
                config.ssl_mode(if t.tls.required() {
                    SslMode::Require
                } else {
                    SslMode::Prefer
                });
                let (client, connection) = run(&runtime, timeout, config.connect(tls))?;
                runtime.spawn(async move { connection.await.unwrap_or_else(closed) });
                client
            }
        };
        let pg = Postgres {
            client,
            inserts: HashMap::new(),
            timeout,
            runtime: OwnRuntime(Some(runtime)),
        };
        // Python's `create_all(checkfirst=True)`. Two processes creating the table at once
        // may collide on the catalog (unique_violation): the other one made it.
        for stmt in ddl() {
            match pg.call(pg.client.batch_execute(&stmt)) {
                Ok(()) => {}
                Err(e) if e.contains("duplicate key") || e.contains("already exists") => {}
                Err(e) => return Err(e),
            }
        }
        Ok(pg)
    }

    fn insert(&mut self, rows: &[Row], traces: &[BatchTrace]) -> Result<(), String> {
        self.call(self.client.batch_execute("BEGIN"))?;
        for chunk in rows.chunks(ROWS_PER_INSERT) {
            let stmt = self.insert_statement(chunk.len())?;
            let params: Vec<&(dyn ToSql + Sync)> = chunk
                .iter()
                .flat_map(|r| r.values.iter().map(|v| v as &(dyn ToSql + Sync)))
                .collect();
            self.call(self.client.execute(&stmt, &params))?;
        }
        for chunk in traces.chunks(UPSERT_ROWS) {
            let params: Vec<&(dyn ToSql + Sync)> = chunk
                .iter()
                .flat_map(|t| {
                    [
                        &t.base_id as &(dyn ToSql + Sync),
                        &t.first_us,
                        &t.last_us,
                        &t.points,
                        &t.events,
                        &t.error,
                        &t.root_rank,
                        &t.root_service,
                        &t.root_category,
                        &t.root_name,
                    ]
                })
                .collect();
            self.call(
                self.client
                    .execute(upsert_sql(chunk.len()).as_str(), &params),
            )?;
        }
        let members: Vec<&(dyn ToSql + Sync)> = traces
            .iter()
            .flat_map(|t| {
                t.members
                    .iter()
                    .flat_map(move |(kind, value)| [&t.base_id as &(dyn ToSql + Sync), kind, value])
            })
            .collect();
        // At most 3 × 20,000 parameters a statement (PostgreSQL takes 65,535).
        for chunk in members.chunks(3 * 20_000) {
            let mut sql = format!("INSERT INTO {MEMBER} (base_id, kind, value) VALUES ");
            for i in 0..chunk.len() / 3 {
                if i > 0 {
                    sql.push_str(", ");
                }
                sql.push_str(&format!("(${}, ${}, ${})", 3 * i + 1, 3 * i + 2, 3 * i + 3));
            }
            sql.push_str(" ON CONFLICT DO NOTHING");
            let types = vec![Type::TEXT; chunk.len()];
            let stmt = self.call(self.client.prepare_typed(&sql, &types))?;
            self.call(self.client.execute(&stmt, chunk))?;
        }
        self.call(self.client.batch_execute("COMMIT"))
    }

    fn text_rows(&mut self, sql: &str) -> Result<Vec<Vec<Option<String>>>, String> {
        let msgs = self.call(self.client.simple_query(sql))?;
        Ok(msgs
            .iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => {
                    Some((0..r.len()).map(|i| r.get(i).map(str::to_owned)).collect())
                }
                _ => None,
            })
            .collect())
    }

    fn members(&mut self, ids: &[String]) -> Result<Vec<(String, String, String)>, String> {
        let sql = format!("SELECT base_id, kind, value FROM {MEMBER} WHERE base_id = ANY($1)");
        let rows = self.call(self.client.query(&sql, &[&ids]))?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get(0).map_err(pg_error)?,
                    r.try_get(1).map_err(pg_error)?,
                    r.try_get(2).map_err(pg_error)?,
                ))
            })
            .collect()
    }

    fn trace_rows(
        &mut self,
        base_id: &str,
        each: &mut dyn FnMut(&ReadRow<'_>),
    ) -> Result<(), String> {
        let sql = trace_rows_sql();
        let client = &self.client;
        self.call(async move {
            let statement = client.prepare(&sql).await?;
            // Rows as they arrive, each borrowed as it is: not 200,000 of them collected
            // first, nor eight strings copied out of each.
            let rows = client.query_raw(&statement, [base_id]).await?;
            let mut rows = std::pin::pin!(rows);
            while let Some(row) = std::future::poll_fn(|cx| rows.as_mut().poll_next(cx)).await {
                let row = row?;
                each(&ReadRow {
                    timestamp: row.try_get(0)?,
                    base_id: row.try_get(1)?,
                    parent_id: row.try_get(2)?,
                    trace_id: row.try_get(3)?,
                    project: row.try_get(4)?,
                    service: row.try_get(5)?,
                    name: row.try_get(6)?,
                    data: row.try_get(7)?,
                });
            }
            Ok(())
        })
    }

    fn traces(&mut self, limit: Option<usize>) -> Result<Vec<(String, String)>, String> {
        let limit = limit.map_or(i64::MAX, |l| i64::try_from(l).unwrap_or(i64::MAX));
        let sql = format!(
            "SELECT base_id, min(timestamp) AS started FROM {TABLE} \
             WHERE base_id IS NOT NULL AND timestamp IS NOT NULL \
             GROUP BY base_id ORDER BY started DESC, base_id DESC LIMIT $1"
        );
        let rows = self.call(self.client.query(&sql, &[&limit]))?;
        pairs(&rows)
    }

    fn error_candidates(&mut self) -> Result<Vec<(String, String)>, String> {
        let sql = format!(
            "SELECT base_id, data::text FROM {TABLE} \
             WHERE name LIKE '%-stop' AND base_id IS NOT NULL AND strpos(data::text, 'etype') > 0"
        );
        let rows = self.call(self.client.query(&sql, &[]))?;
        pairs(&rows)
    }

    fn starts(&mut self, base_ids: &[String]) -> Result<Vec<(String, String)>, String> {
        let sql = format!(
            "SELECT base_id, min(timestamp) FROM {TABLE} \
             WHERE base_id = ANY($1) AND timestamp IS NOT NULL GROUP BY base_id"
        );
        let rows = self.call(self.client.query(&sql, &[&base_ids]))?;
        pairs(&rows)
    }

    fn is_transient(error: &str) -> bool {
        // Refused or timed out connecting; a server's answer (password, database) is not,
        // nor is a certificate we do not trust or TLS we cannot set up.
        !(error.starts_with("FATAL") || error.starts_with("ERROR") || super::tls_refused(error))
    }
}
