//! SQL statements through sqlx on a real SQLite database (a file in a
//! temporary directory): with SQL tracing on, each statement is a `db` point
//! under the calling point; off, none; a failing statement still gets its
//! point and the failure is recorded on the calling point. Statements run
//! `.with_sql_params(..)` record their bound values (hidden ones masked),
//! others `params: null`.
//!
//! One test in phases: the SQL switch is process-wide.

mod tracing_support;

use osprofiler::integrations::tracing::{Hidden, SqlParamsExt as _};
use osprofiler::{FutureExt, TraceContext, sql_params, switches, trace};
use osprofiler_testkit::TempDir;
use sqlx::SqlitePool;
use sqlx::sqlite::SqlitePoolOptions;
use tracing::Instrument;
use tracing_support::{
    P, assert_not_recorded, assert_well_formed, install_layer, one, settled_points,
    statements_under,
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

const UPSERT: &str = "INSERT INTO quotas (project, hard_limit, ratio, strict, secret, tags) \
                      VALUES (?, ?, ?, ?, ?, ?) \
                      ON CONFLICT (project) DO UPDATE SET hard_limit = excluded.hard_limit";
const SELECT_ROW: &str = "SELECT hard_limit, ratio, strict FROM quotas WHERE project = ?";

/// A `#[trace]` DB API function whose statements carry their params: the
/// params span also takes the trace to sqlx's worker thread, so no other
/// span is needed. `hide_args`: the secret is an argument too.
#[trace(name = "db", hide_args)]
async fn quota_upsert(pool: &SqlitePool, project: &str, limit: i64, secret: &str) -> i64 {
    let ratio = 1.5_f64;
    let strict = true;
    // Bytes have no `SqlParam` conversion: their `Debug` text.
    let tags = vec![1_u8, 2, 3];
    sqlx::query(UPSERT)
        .bind(project)
        .bind(limit)
        .bind(ratio)
        .bind(strict)
        .bind(secret)
        .bind(&tags)
        .execute(pool)
        .with_sql_params(sql_params![
            project,
            limit,
            ratio,
            strict,
            Hidden(secret),
            tags
        ])
        .await
        .unwrap();
    let (limit, _, _): (i64, f64, bool) = sqlx::query_as(SELECT_ROW)
        .bind(project)
        .fetch_one(pool)
        .with_sql_params(sql_params![project])
        .await
        .unwrap();
    limit
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
    sqlx::query(
        "CREATE TABLE quotas (project TEXT PRIMARY KEY, hard_limit INTEGER NOT NULL, \
         ratio REAL, strict BOOLEAN, secret TEXT, tags BLOB)",
    )
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
    // Without `with_sql_params`: no params.
    let insert = sql_point(&points, INSERT);
    assert_eq!(insert.start.info["db"]["params"], serde_json::Value::Null);
    assert_eq!(insert.stop_info("db")["rows_affected"], 1);
    let select = sql_point(&points, SELECT);
    assert_eq!(select.start.info["db"]["params"], serde_json::Value::Null);
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

    // With params: each statement records its own, positionally; the
    // hidden one is masked and its value is nowhere in the trace.
    let ctx = TraceContext::new(None, None, None);
    let limit = quota_upsert(&pool, "demo", 20, "s3cret-token")
        .in_trace(ctx.clone())
        .await;
    assert_eq!(limit, 20);
    let points = settled_points(ctx.base_id(), 3);
    assert_well_formed(&points);
    let api = &points[0];
    assert_eq!((&*api.name, api.parent), ("db", ctx.base_id()));
    assert!(api.start.info["db"].is_null(), "{points:#?}");
    assert_eq!(statements_under(&points, api.id), [UPSERT, SELECT_ROW]);
    let upsert = sql_point(&points, UPSERT);
    assert_eq!(
        upsert.start.info["db"]["params"],
        serde_json::json!(["demo", 20, 1.5, true, "***", "[1, 2, 3]"])
    );
    assert_eq!(upsert.stop_info("db")["rows_affected"], 1);
    let select = sql_point(&points, SELECT_ROW);
    assert_eq!(
        select.start.info["db"]["params"],
        serde_json::json!(["demo"])
    );
    assert_eq!(select.stop_info("db")["rows_returned"], 1);
    assert_eq!(points.len(), 3, "{points:#?}");
    assert_not_recorded(ctx.base_id(), "s3cret-token");

    // Off: the same calls inside a trace give no statement point.
    switches::set_sql_tracing(false);
    let ctx = TraceContext::new(None, None, None);
    quota_set(&pool, "other", 5).in_trace(ctx.clone()).await;
    let points = settled_points(ctx.base_id(), 1);
    assert_eq!(points.len(), 1, "{points:#?}");
    assert_eq!(points[0].name, "quota_set");
    let ctx = TraceContext::new(None, None, None);
    let limit = quota_upsert(&pool, "other", 6, "other-secret")
        .in_trace(ctx.clone())
        .await;
    assert_eq!(limit, 6, "the statements ran");
    let points = settled_points(ctx.base_id(), 1);
    assert_eq!(points.len(), 1, "{points:#?}");
    assert!(points[0].start.info["db"].is_null(), "{points:#?}");

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
