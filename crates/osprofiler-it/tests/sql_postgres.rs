//! SQL statements through sqlx's PostgreSQL driver, on a real server started
//! for the test (Debian's `postgresql` package; skipped without it, failed
//! under `CI=true`). The driver runs statements in the calling task, so a
//! plain `#[trace(name = "db")]` function is their parent, no span needed.
//!
//! One test in phases: the SQL switch is process-wide.

mod tracing_support;

use osprofiler::{FutureExt, TraceContext, switches, trace};
use osprofiler_testkit::need;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tracing_support::postgres::PgServer;
use tracing_support::{P, assert_well_formed, install_layer, settled_points, statements_under};

const INSERT: &str = "INSERT INTO instances (uuid, host, vcpus) VALUES ($1, $2, $3)";
const SELECT: &str = "SELECT count(*) FROM instances WHERE host = $1";

#[trace(name = "db")]
async fn instance_create(pool: &PgPool, uuid: &str, host: &str) -> Result<i64, sqlx::Error> {
    sqlx::query(INSERT)
        .bind(uuid)
        .bind(host)
        .bind(2_i32)
        .execute(pool)
        .await?;
    sqlx::query_scalar(SELECT).bind(host).fetch_one(pool).await
}

#[trace(name = "db")]
async fn instance_duplicate(pool: &PgPool, uuid: &str) -> Result<u64, sqlx::Error> {
    let r = sqlx::query(INSERT)
        .bind(uuid)
        .bind("compute-9")
        .bind(1_i32)
        .execute(pool)
        .await?;
    Ok(r.rows_affected())
}

/// The `#[trace]` point (it has `info.function`) among the `db` points.
fn api_point(points: &[P]) -> &P {
    let apis: Vec<&P> = points
        .iter()
        .filter(|p| p.name == "db" && !p.start.info["function"].is_null())
        .collect();
    assert_eq!(apis.len(), 1, "{points:#?}");
    apis[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_statements_become_db_points() {
    install_layer();
    let Some(server) = need("PostgreSQL server", PgServer::start()) else {
        return;
    };
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .min_connections(1)
        .connect(&server.url())
        .await
        .unwrap_or_else(|e| panic!("connect {}: {e}", server.url()));
    sqlx::query(
        "CREATE TABLE instances (uuid TEXT PRIMARY KEY, host TEXT NOT NULL, vcpus INTEGER NOT NULL)",
    )
    .execute(&pool)
    .await
    .unwrap();

    // On: the statements are children of the DB API point.
    switches::set_sql_tracing(true);
    let ctx = TraceContext::new(None, None, None);
    let n = instance_create(&pool, "vm-1", "compute-1")
        .in_trace(ctx.clone())
        .await
        .unwrap();
    assert_eq!(n, 1);
    let points = settled_points(ctx.base_id(), 3);
    assert_well_formed(&points);
    let api = api_point(&points);
    assert_eq!(api.parent, ctx.base_id());
    assert_eq!(statements_under(&points, api.id), [INSERT, SELECT]);
    let sql: Vec<&P> = points.iter().filter(|p| p.parent == api.id).collect();
    assert_eq!(sql[0].start.info["db"]["params"], serde_json::Value::Null);
    assert_eq!(sql[0].stop_info("db")["rows_affected"], 1);
    assert_eq!(sql[1].stop_info("db")["rows_returned"], 1);
    for p in &sql {
        assert!(p.start.timestamp >= api.start.timestamp, "{points:#?}");
        assert!(p.stop.as_ref().unwrap().timestamp <= api.stop.as_ref().unwrap().timestamp);
    }

    // Off: no statement points.
    switches::set_sql_tracing(false);
    let ctx = TraceContext::new(None, None, None);
    instance_create(&pool, "vm-2", "compute-1")
        .in_trace(ctx.clone())
        .await
        .unwrap();
    let points = settled_points(ctx.base_id(), 1);
    assert_eq!(points.len(), 1, "{points:#?}");
    assert!(!points[0].start.info["function"].is_null());

    // A failing statement (duplicate key): its point, and the error on the caller.
    switches::set_sql_tracing(true);
    let ctx = TraceContext::new(None, None, None);
    let e = instance_duplicate(&pool, "vm-1")
        .in_trace(ctx.clone())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("duplicate key"), "{e}");
    let points = settled_points(ctx.base_id(), 2);
    switches::set_sql_tracing(false);
    assert_well_formed(&points);
    let api = api_point(&points);
    assert_eq!(statements_under(&points, api.id), [INSERT]);
    assert_eq!(api.stop_info("etype"), "sqlx_core::error::Error");
    let message = api.stop_info("message");
    assert!(
        message.as_str().unwrap().contains("duplicate key"),
        "{message}"
    );
    pool.close().await;
    drop(server);
}
