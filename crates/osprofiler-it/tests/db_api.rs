//! The DB API and driver pattern: `#[trace(name = "db")]` on the DB API
//! functions, `#[trace_impl(name = "driver")]` on a driver, sqlx (SQLite)
//! underneath with SQL tracing on. A call gives the tree
//! `rpc → driver → db → db (statements)`, with the functions' names and
//! arguments, and errors where they happen. One DB API function hands its
//! statement's params over, the other does not.

mod tracing_support;

use osprofiler::{FutureExt, Info, TraceContext, switches};
use osprofiler_testkit::TempDir;
use sqlx::sqlite::SqlitePoolOptions;
use tracing_support::{
    P, assert_well_formed, children, install_layer, settled_points, statements_under,
};

/// The DB API: one traced function per query.
mod db {
    use osprofiler::integrations::tracing::SqlParamsExt as _;
    use osprofiler::{sql_params, trace};
    use sqlx::SqlitePool;
    use tracing::Instrument;

    pub const GET: &str = "SELECT host FROM instances WHERE uuid = ?";
    pub const SET_HOST: &str = "UPDATE instances SET host = ? WHERE uuid = ?";

    /// sqlx runs SQLite statements on its own thread and takes only the
    /// caller's `tracing` span there: a carrier span takes the trace along
    /// (PostgreSQL and MySQL need none).
    fn sql() -> tracing::Span {
        tracing::info_span!("sql", osprofiler.point = false)
    }

    /// With its params: their span takes the trace to the worker as well.
    #[trace(name = "db")]
    pub async fn instance_host(
        pool: &SqlitePool,
        uuid: &str,
    ) -> Result<Option<String>, sqlx::Error> {
        sqlx::query_scalar(GET)
            .bind(uuid)
            .fetch_optional(pool)
            .with_sql_params(sql_params![uuid])
            .await
    }

    #[trace(name = "db", hide_args)]
    pub async fn instance_set_host(
        pool: &SqlitePool,
        uuid: &str,
        host: &str,
    ) -> Result<u64, sqlx::Error> {
        let done = sqlx::query(SET_HOST)
            .bind(host)
            .bind(uuid)
            .execute(pool)
            .instrument(sql())
            .await?;
        Ok(done.rows_affected())
    }
}

/// A driver: its public methods are `driver` points.
mod driver {
    use osprofiler::trace_impl;
    use sqlx::SqlitePool;

    use super::db;

    #[derive(Debug)]
    pub enum SpawnError {
        NotFound(String),
        Db(sqlx::Error),
    }

    impl std::fmt::Display for SpawnError {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            match self {
                SpawnError::NotFound(uuid) => write!(f, "instance {uuid} not found"),
                SpawnError::Db(e) => e.fmt(f),
            }
        }
    }

    impl std::error::Error for SpawnError {}

    impl From<sqlx::Error> for SpawnError {
        fn from(e: sqlx::Error) -> SpawnError {
            SpawnError::Db(e)
        }
    }

    pub struct FakeVirtDriver {
        pub host: String,
    }

    #[trace_impl(name = "driver")]
    impl FakeVirtDriver {
        pub async fn spawn(&self, pool: &SqlitePool, uuid: &str) -> Result<(), SpawnError> {
            if db::instance_host(pool, uuid).await?.is_none() {
                return Err(SpawnError::NotFound(uuid.to_owned()));
            }
            db::instance_set_host(pool, uuid, &self.host).await?;
            self.plug_vifs(uuid);
            Ok(())
        }

        pub fn plug_vifs(&self, _uuid: &str) {}
    }
}

fn function_name(p: &P) -> &str {
    p.start.info["function"]["name"]
        .as_str()
        .unwrap_or_default()
}

fn only<'a>(points: &[&'a P], function: &str) -> &'a P {
    let found: Vec<&&P> = points
        .iter()
        .filter(|p| function_name(p) == function)
        .collect();
    assert_eq!(found.len(), 1, "{function}: {points:#?}");
    found[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn db_api_and_driver_calls_with_their_statements() {
    install_layer();
    let dir = TempDir::new();
    let url = format!("sqlite://{}?mode=rwc", dir.join("nova.db").display());
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .min_connections(1)
        .connect(&url)
        .await
        .unwrap();
    sqlx::query("CREATE TABLE instances (uuid TEXT PRIMARY KEY, host TEXT)")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO instances (uuid, host) VALUES ('vm-1', NULL)")
        .execute(&pool)
        .await
        .unwrap();
    switches::set_sql_tracing(true);
    let driver = driver::FakeVirtDriver {
        host: "compute-1".into(),
    };

    let ctx = TraceContext::new(None, None, None);
    async {
        let rpc =
            osprofiler::Point::start("rpc", Info::new().with("method", "build_and_run_instance"));
        let rpc_ctx = rpc.context().unwrap();
        async {
            driver.spawn(&pool, "vm-1").await.unwrap();
            let e = driver.spawn(&pool, "vm-404").await.unwrap_err();
            assert_eq!(e.to_string(), "instance vm-404 not found");
        }
        .in_trace(rpc_ctx)
        .await;
        rpc.finish();
    }
    .in_trace(ctx.clone())
    .await;
    switches::set_sql_tracing(false);

    // rpc, 2 spawn, 1 plug_vifs, 3 DB API calls, 3 statements.
    let points = settled_points(ctx.base_id(), 10);
    assert_well_formed(&points);
    assert_eq!(points.len(), 10, "{points:#?}");
    let rpc = &points[0];
    assert_eq!(rpc.name, "rpc");
    let spawns = children(&points, rpc.id);
    assert_eq!(spawns.len(), 2, "{points:#?}");
    let (ok, failed) = (spawns[0], spawns[1]);
    for s in [ok, failed] {
        assert_eq!(s.name, "driver");
        assert_eq!(function_name(s), "db_api::driver::FakeVirtDriver::spawn");
    }
    let args = ok.start.info["function"]["args"]
        .as_str()
        .unwrap_or_default();
    assert!(
        args.starts_with("(Pool {") && args.ends_with(", \"vm-1\")"),
        "{args}"
    );
    assert!(ok.stop_info("etype").is_null());
    assert_eq!(failed.stop_info("etype"), "db_api::driver::SpawnError");
    assert_eq!(failed.stop_info("message"), "instance vm-404 not found");

    // The successful spawn: two DB API calls with their statements, then the
    // sync driver method.
    let under_ok = children(&points, ok.id);
    let get = only(&under_ok, "db_api::db::instance_host");
    assert_eq!(get.name, "db");
    let args = get.start.info["function"]["args"]
        .as_str()
        .unwrap_or_default();
    assert!(args.ends_with(", \"vm-1\")"), "{args}");
    assert_eq!(statements_under(&points, get.id), [db::GET]);
    assert_eq!(
        children(&points, get.id)[0].start.info["db"]["params"],
        serde_json::json!(["vm-1"])
    );
    let set = only(&under_ok, "db_api::db::instance_set_host");
    assert!(
        set.start.info["function"]["args"].is_null(),
        "hide_args: {set:#?}"
    );
    assert_eq!(statements_under(&points, set.id), [db::SET_HOST]);
    assert!(children(&points, set.id)[0].start.info["db"]["params"].is_null());
    let plug = only(&under_ok, "db_api::driver::FakeVirtDriver::plug_vifs");
    assert_eq!(plug.name, "driver");
    assert_eq!(under_ok.len(), 3);

    // The failed spawn: its lookup and statement, nothing else.
    let under_failed = children(&points, failed.id);
    assert_eq!(under_failed.len(), 1, "{points:#?}");
    assert_eq!(statements_under(&points, under_failed[0].id), [db::GET]);
    assert_eq!(
        children(&points, under_failed[0].id)[0].start.info["db"]["params"],
        serde_json::json!(["vm-404"])
    );

    let row: Option<String> = sqlx::query_scalar("SELECT host FROM instances WHERE uuid = 'vm-1'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(row.as_deref(), Some("compute-1"));
    pool.close().await;
}
