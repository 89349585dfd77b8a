//! The cloud's database (SQLite through sqlx) and its DB API: one traced method per
//! query, so a trace shows a `db` point per call with its SQL statement (and the bound
//! values) under it.
//!
//! sqlx runs SQLite statements on a worker thread of its own and carries only the
//! caller's `tracing` span there: `.with_sql_params(..)` runs the query inside a span
//! that takes the trace along (and records the values), so the statement points land
//! under the DB API call.

use std::path::Path;

use osprofiler::integrations::tracing::SqlParamsExt as _;
use osprofiler::{sql_params, trace_impl};
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

const SCHEMA: [&str; 4] = [
    "CREATE TABLE compute_nodes (host TEXT PRIMARY KEY, vcpus INTEGER NOT NULL, \
     memory_mb INTEGER NOT NULL, disabled INTEGER NOT NULL)",
    "CREATE TABLE instances (uuid TEXT PRIMARY KEY, name TEXT NOT NULL, host TEXT, \
     vm_state TEXT NOT NULL, task_state TEXT, created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)",
    // The compute service that runs, and one down for maintenance (the scheduler skips it).
    "INSERT INTO compute_nodes VALUES ('cmp-1', 16, 65536, 0)",
    "INSERT INTO compute_nodes VALUES ('cmp-2', 16, 65536, 1)",
];

/// An instance as listed by the API.
#[derive(Debug, Clone)]
pub struct Instance {
    pub uuid: String,
    pub name: String,
    pub host: Option<String>,
    pub vm_state: String,
    pub task_state: Option<String>,
}

/// A hypervisor the scheduler may pick.
#[derive(Debug, Clone)]
pub struct ComputeNode {
    pub host: String,
    pub vcpus: i64,
    pub memory_mb: i64,
    pub disabled: bool,
}

/// What [`Db::instance_update`] sets.
#[derive(Debug, Clone)]
pub struct InstanceUpdate {
    /// Left as it is when `None`.
    pub host: Option<String>,
    pub vm_state: &'static str,
    pub task_state: Option<&'static str>,
}

/// The DB API; cheap to clone (a pool handle).
#[derive(Clone)]
pub struct Db {
    pool: SqlitePool,
}

impl Db {
    /// Creates the database file with its schema and a hypervisor or two.
    pub async fn create(path: &Path) -> Result<Db, sqlx::Error> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true);
        // One connection, opened now and kept: a connection opened later, inside a
        // traced request, would add its set-up statements to the trace.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await?;
        for statement in SCHEMA {
            sqlx::query(statement).execute(&pool).await?;
        }
        Ok(Db { pool })
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// A row of `instances` as selected by [`Db::instance_get_all`].
type InstanceRow = (String, String, Option<String>, String, Option<String>);

#[trace_impl(name = "db")]
impl Db {
    pub async fn instance_create(&self, uuid: &str, name: &str) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO instances (uuid, name, vm_state, task_state) \
             VALUES (?, ?, 'building', 'scheduling')",
        )
        .bind(uuid)
        .bind(name)
        .execute(&self.pool)
        .with_sql_params(sql_params![uuid, name])
        .await?;
        Ok(())
    }

    pub async fn instance_get_all(&self) -> Result<Vec<Instance>, sqlx::Error> {
        let rows: Vec<InstanceRow> = sqlx::query_as(
            "SELECT uuid, name, host, vm_state, task_state FROM instances ORDER BY rowid",
        )
        .fetch_all(&self.pool)
        .with_sql_params(sql_params![])
        .await?;
        Ok(rows
            .into_iter()
            .map(|(uuid, name, host, vm_state, task_state)| Instance {
                uuid,
                name,
                host,
                vm_state,
                task_state,
            })
            .collect())
    }

    pub async fn instance_update(
        &self,
        uuid: &str,
        update: &InstanceUpdate,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE instances SET host = COALESCE(?, host), vm_state = ?, task_state = ? \
             WHERE uuid = ?",
        )
        .bind(update.host.as_deref())
        .bind(update.vm_state)
        .bind(update.task_state)
        .bind(uuid)
        .execute(&self.pool)
        .with_sql_params(sql_params![
            update.host.as_deref(),
            update.vm_state,
            update.task_state,
            uuid
        ])
        .await?;
        Ok(())
    }

    pub async fn compute_node_get_all(&self) -> Result<Vec<ComputeNode>, sqlx::Error> {
        let rows: Vec<(String, i64, i64, bool)> = sqlx::query_as(
            "SELECT host, vcpus, memory_mb, disabled FROM compute_nodes ORDER BY host",
        )
        .fetch_all(&self.pool)
        .with_sql_params(sql_params![])
        .await?;
        Ok(rows
            .into_iter()
            .map(|(host, vcpus, memory_mb, disabled)| ComputeNode {
                host,
                vcpus,
                memory_mb,
                disabled,
            })
            .collect())
    }
}
