//! SQL statements through sqlx on a real SQLite database (a file in a
//! temporary directory): with SQL tracing on, each statement is a `db` point
//! under the calling point; off, none; a failing statement still gets its
//! point and the failure is recorded on the calling point.
//!
//! One test in phases: the SQL switch is process-wide.

mod tracing_support;

use osprofiler::{FutureExt, TraceContext, switches, trace};
use osprofiler_testkit::TempDir;
use sqlx::SqlitePool;
use sqlx::sqlite::SqlitePoolOptions;
use tracing::Instrument;
use tracing_support::{
    P, assert_well_formed, install_layer, one, settled_points, statements_under,
};

const INSERT: &str = "INSERT INTO quotas (project, hard_limit) VALUES (?, ?)";
const SELECT: &str = "SELECT hard_limit FROM quotas WHERE project = ?";

/// A DB API function as a `tracing` span: sqlx's SQLite worker thread enters
/// it, so the statements are its children.
#[tracing::instrument(name = "quota_set", skip_all, fields(project))]
async fn quota_set(pool: &SqlitePool, project: &str, limit: i64) -> i64 {
    sqlx::query(INSERT)
        .bind(project)
        .bind(limit)
        .execute(pool)
        .await
        .unwrap();
    sqlx::query_scalar(SELECT)
        .bind(project)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tracing::instrument(name = "broken_api", skip_all, err)]
async fn broken_span(pool: &SqlitePool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT hard_limit FROM no_such_table")
        .fetch_one(pool)
        .await
}

/// A `#[trace]` DB API function: its statements run inside a carrier span,
/// which takes the trace to sqlx's worker thread without a point of its own.
#[trace(name = "db")]
async fn broken_traced(pool: &SqlitePool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT missing_column FROM quotas")
        .fetch_one(pool)
        .instrument(tracing::info_span!("sql", osprofiler.point = false))
        .await
}

fn sql_point<'a>(points: &'a [P], statement: &str) -> &'a P {
    let found: Vec<&P> = points
        .iter()
        .filter(|p| p.name == "db" && p.start.info["db"]["statement"] == statement)
        .collect();
    assert_eq!(found.len(), 1, "{statement}: {points:#?}");
    found[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_statements_become_db_points() {
    install_layer();
    let dir = TempDir::new();
    let url = format!("sqlite://{}?mode=rwc", dir.join("nova.db").display());
    // One connection, opened now: its set-up statements stay out of the traces.
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .min_connections(1)
        .connect(&url)
        .await
        .unwrap();
    sqlx::query("CREATE TABLE quotas (project TEXT PRIMARY KEY, hard_limit INTEGER NOT NULL)")
        .execute(&pool)
        .await
        .unwrap();
    assert!(!switches::sql_tracing(), "off by default");

    // On: one `db` point per statement, under the calling point.
    switches::set_sql_tracing(true);
    let ctx = TraceContext::new(None, None, None);
    let limit = quota_set(&pool, "demo", 10).in_trace(ctx.clone()).await;
    assert_eq!(limit, 10);
    let points = settled_points(ctx.base_id(), 3);
    assert_well_formed(&points);
    let api = one(&points, "quota_set");
    assert_eq!(statements_under(&points, api.id), [INSERT, SELECT]);
    let insert = sql_point(&points, INSERT);
    assert_eq!(insert.start.info["db"]["params"], serde_json::Value::Null);
    assert_eq!(insert.stop_info("db")["rows_affected"], 1);
    let select = sql_point(&points, SELECT);
    assert_eq!(select.stop_info("db")["rows_returned"], 1);
    for p in [insert, select] {
        assert!(p.start.timestamp >= api.start.timestamp, "{points:#?}");
        let api_stop = api.stop.as_ref().unwrap().timestamp;
        assert!(
            p.stop.as_ref().unwrap().timestamp <= api_stop,
            "{points:#?}"
        );
        assert!(p.stop_info("etype").is_null());
    }
    assert_eq!(points.len(), 3, "{points:#?}");

    // Off: the same calls inside a trace give no statement point.
    switches::set_sql_tracing(false);
    let ctx = TraceContext::new(None, None, None);
    quota_set(&pool, "other", 5).in_trace(ctx.clone()).await;
    let points = settled_points(ctx.base_id(), 1);
    assert_eq!(points.len(), 1, "{points:#?}");
    assert_eq!(points[0].name, "quota_set");

    // Failing statements: each has its point; the error is on the caller.
    switches::set_sql_tracing(true);
    let ctx = TraceContext::new(None, None, None);
    async {
        let e = broken_span(&pool).await.unwrap_err();
        assert!(e.to_string().contains("no such table"), "{e}");
        let e = broken_traced(&pool).await.unwrap_err();
        assert!(e.to_string().contains("no such column"), "{e}");
    }
    .in_trace(ctx.clone())
    .await;
    let points = settled_points(ctx.base_id(), 4);
    switches::set_sql_tracing(false);
    assert_well_formed(&points);
    let span_api = one(&points, "broken_api");
    assert_eq!(
        statements_under(&points, span_api.id),
        ["SELECT hard_limit FROM no_such_table"]
    );
    assert_eq!(span_api.stop_info("etype"), "error");
    let message = span_api.stop_info("message");
    assert!(
        message.as_str().unwrap().contains("no such table"),
        "{message}"
    );

    let traced = points
        .iter()
        .find(|p| p.name == "db" && !p.start.info["function"].is_null())
        .unwrap_or_else(|| panic!("no #[trace] db point in {points:#?}"));
    assert_eq!(
        statements_under(&points, traced.id),
        ["SELECT missing_column FROM quotas"]
    );
    assert_eq!(traced.stop_info("etype"), "sqlx_core::error::Error");
    let message = traced.stop_info("message");
    assert!(
        message.as_str().unwrap().contains("no such column"),
        "{message}"
    );
    assert_eq!(points.len(), 4, "{points:#?}");
    pool.close().await;
}
