//! SQL statements through sqlx's PostgreSQL driver, on a real server started
//! for the test (Debian's `postgresql` package; skipped without it, failed
//! under `CI=true`). The driver runs statements in the calling task, so a
//! plain `#[trace(name = "db")]` function is their parent, no span needed.
//! Statements run `.with_sql_params(..)` record their bound values (hidden
//! ones masked), others `params: null`.
//!
//! One test in phases: the SQL switch is process-wide.

mod tracing_support;

use osprofiler::integrations::tracing::{Hidden, SqlParamsExt as _};
use osprofiler::{FutureExt, TraceContext, sql_params, switches, trace};
use osprofiler_testkit::need;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tracing_support::postgres::PgServer;
use tracing_support::{
    P, assert_not_recorded, assert_well_formed, install_layer, settled_points, statements_under,
};

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

const SET_PASS: &str = "UPDATE instances SET admin_pass = $1, vcpus = $2, locked = $3 \
                        WHERE uuid = $4 AND host IS NOT DISTINCT FROM $5";
const BY_HOSTS: &str = "SELECT uuid FROM instances WHERE host = ANY($1) ORDER BY uuid";

/// Statements with their params: JSON values, `None` as `null`, a list as its
/// `Debug` text, a hidden password.
#[trace(name = "db", hide_args)]
async fn instance_set_password(
    pool: &PgPool,
    uuid: &str,
    host: Option<&str>,
    password: &str,
) -> Result<Vec<String>, sqlx::Error> {
    let vcpus = 4_i32;
    sqlx::query(SET_PASS)
        .bind(password)
        .bind(vcpus)
        .bind(false)
        .bind(uuid)
        .bind(host)
        .execute(pool)
        .with_sql_params(sql_params![Hidden(password), vcpus, false, uuid, host])
        .await?;
    let hosts = vec!["compute-1".to_owned(), "compute-2".to_owned()];
    sqlx::query_scalar(BY_HOSTS)
        .bind(&hosts)
        .fetch_all(pool)
        .with_sql_params(sql_params![hosts])
        .await
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
        "CREATE TABLE instances (uuid TEXT PRIMARY KEY, host TEXT NOT NULL, vcpus INTEGER NOT NULL, \
         admin_pass TEXT, locked BOOLEAN)",
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
    // Without `with_sql_params`: no params.
    assert_eq!(sql[0].start.info["db"]["params"], serde_json::Value::Null);
    assert_eq!(sql[1].start.info["db"]["params"], serde_json::Value::Null);
    assert_eq!(sql[0].stop_info("db")["rows_affected"], 1);
    assert_eq!(sql[1].stop_info("db")["rows_returned"], 1);
    for p in &sql {
        assert!(p.start.timestamp >= api.start.timestamp, "{points:#?}");
        assert!(p.stop.as_ref().unwrap().timestamp <= api.stop.as_ref().unwrap().timestamp);
    }

    // With params, in the calling task: each statement records its own,
    // positionally; the hidden one is masked and nowhere in the trace.
    let ctx = TraceContext::new(None, None, None);
    let uuids = instance_set_password(&pool, "vm-1", Some("compute-1"), "s3cret-pass")
        .in_trace(ctx.clone())
        .await
        .unwrap();
    assert_eq!(uuids, ["vm-1"]);
    let points = settled_points(ctx.base_id(), 3);
    assert_well_formed(&points);
    let api = &points[0];
    assert_eq!((&*api.name, api.parent), ("db", ctx.base_id()));
    assert_eq!(statements_under(&points, api.id), [SET_PASS, BY_HOSTS]);
    let sql: Vec<&P> = points.iter().filter(|p| p.parent == api.id).collect();
    assert_eq!(
        sql[0].start.info["db"]["params"],
        serde_json::json!(["***", 4, false, "vm-1", "compute-1"])
    );
    assert_eq!(sql[0].stop_info("db")["rows_affected"], 1);
    assert_eq!(
        sql[1].start.info["db"]["params"],
        serde_json::json!([r#"["compute-1", "compute-2"]"#])
    );
    assert_eq!(sql[1].stop_info("db")["rows_returned"], 1);
    assert_eq!(points.len(), 3, "{points:#?}");
    assert_not_recorded(ctx.base_id(), "s3cret-pass");
    // `None` is `null`; no row matched.
    let ctx = TraceContext::new(None, None, None);
    instance_set_password(&pool, "vm-1", None, "other-pass")
        .in_trace(ctx.clone())
        .await
        .unwrap();
    let points = settled_points(ctx.base_id(), 3);
    let set = points
        .iter()
        .find(|p| p.name == "db" && p.parent != ctx.base_id());
    let set = set.unwrap_or_else(|| panic!("{points:#?}"));
    assert_eq!(
        set.start.info["db"]["params"],
        serde_json::json!(["***", 4, false, "vm-1", null])
    );
    assert_eq!(set.stop_info("db")["rows_affected"], 0);

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
    let ctx = TraceContext::new(None, None, None);
    instance_set_password(&pool, "vm-2", Some("compute-1"), "third-pass")
        .in_trace(ctx.clone())
        .await
        .unwrap();
    let points = settled_points(ctx.base_id(), 1);
    assert_eq!(points.len(), 1, "{points:#?}");
    assert!(points[0].start.info["db"].is_null(), "{points:#?}");

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

    // Cancelled (a timeout drops the query's future): sqlx reports the
    // statement cut short as it is dropped, inside the params span.
    switches::set_sql_tracing(true);
    let ctx = TraceContext::new(None, None, None);
    let timed_out = async {
        let slow = sqlx::query("SELECT pg_sleep($1)")
            .bind(0.5_f64)
            .execute(&pool)
            .with_sql_params(sql_params![0.5_f64]);
        tokio::time::timeout(std::time::Duration::from_millis(50), slow).await
    }
    .in_trace(ctx.clone())
    .await;
    switches::set_sql_tracing(false);
    assert!(timed_out.is_err());
    let points = settled_points(ctx.base_id(), 1);
    assert_eq!(points.len(), 1, "{points:#?}");
    assert_eq!(
        points[0].start.info["db"],
        serde_json::json!({"statement": "SELECT pg_sleep($1)", "params": [0.5]})
    );
    pool.close().await;
    drop(server);
}
