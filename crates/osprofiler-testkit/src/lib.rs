//! Test harness for the osprofiler workspace (dev-dependency only, never published).
//!
//! Tests run against real parts (see `shared/DESIGN.md`, "Testing rules"):
//!
//! - [`RedisServer`]: a real `redis-server` child process on a free loopback port, with a
//!   tiny blocking RESP client to check what a driver wrote.
//! - [`Oracle`]: the real Python osprofiler 4.4.0 in a virtualenv (`target/oracle`, made by
//!   `scripts/test-all`).
//! - [`JaegerVenv`]: Jaeger's own Thrift code (`jaeger-client`) and osprofiler 4.3.0's
//!   `jaeger://` driver in a virtualenv (`target/jaeger`, made by `scripts/test-all`).
//! - [`Chromium`]: headless Debian Chromium to run the HTML report's scripts.
//! - [`Rotel`]: the real OpenTelemetry collector `rotel-agent` (PyPI `rotel`, virtualenv
//!   `target/otel`, made by `scripts/test-all`), printing the spans it receives.
//! - [`PostgresServer`], [`MariaDbServer`]: real PostgreSQL and MariaDB servers (Debian
//!   packages) on free loopback ports with fresh data directories.
//! - [`RabbitMqServer`]: a private RabbitMQ node (Debian `rabbitmq-server`) on free loopback
//!   ports, for `messaging://`.
//! - [`TestCerts`]: a throwaway CA and server certificate made with `openssl`, and client
//!   certificates from it ([`TestClientCert`]).
//! - [`secrets`]: random secrets, and a search of outputs for any part of them.
//!
//! A test that cannot get what it needs goes through [`need`]: it prints why and skips on a
//! developer machine, and panics (fails) when the environment variable `CI` is `true`.
//!
//! ```no_run
//! use osprofiler_testkit::{need, RedisServer};
//!
//! let Some(redis) = need("redis-server", RedisServer::start()) else { return };
//! redis.cmd(&["SET", "k", "v"]).unwrap();
//! assert_eq!(redis.cmd(&["GET", "k"]).unwrap().as_str(), Some("v"));
//! ```

mod certs;
mod chromium;
mod jaeger;
mod oracle;
mod process;
mod rabbitmq;
mod redis;
mod redis_cluster;
mod rotel;
pub mod secrets;
mod sql;
mod temp;
mod venv;

pub use certs::{TestCerts, TestClientCert};
pub use chromium::Chromium;
pub use jaeger::{JAEGER_OSPROFILER_VERSION, JAEGER_VENV_ENV, JaegerVenv};
pub use oracle::{ORACLE_VERSION, Oracle, TWO_SERVICE_TRACE};
pub use rabbitmq::RabbitMqServer;
pub use redis::{RedisConn, RedisServer, RespValue};
pub use redis_cluster::{CLUSTER_NODE_TIMEOUT_MS, ClusterNode, RedisCluster};
pub use rotel::{OTEL_VENV_ENV, Rotel, RotelEvent, RotelSpan, parse_spans};
pub use sql::{MariaDbServer, PostgresServer};
pub use temp::TempDir;
pub use venv::Venv;

use std::io::Write;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};

/// True when the environment variable `CI` is exactly `true` (as `.ci/run` sets it).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// A TCP port on 127.0.0.1 that was free a moment ago (bind port 0 and read it back).
///
/// Another process may take it before the caller binds it; [`RedisServer::start`] retries
/// with another port when that happens.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0 to find a free port")
}

/// Unwraps what a test needs, or decides what to do without it.
///
/// On `Err`: when `CI=true`, panics with ``"`WHAT` is required in CI: REASON"`` so the test
/// fails; otherwise prints `"skipping: WHAT unavailable: REASON"` and returns `None`, and
/// the test returns early (it then shows as passed).
///
/// The skip line is written straight to the process's stderr, past the test harness's
/// output capture, so `cargo test` shows it. nextest keeps a passing test's stderr to
/// itself, so the line is also appended to the file named by `OSPROFILER_TEST_SKIP_LOG`
/// when that is set (`scripts/test-all` sets it and prints the file at the end).
///
/// ```no_run
/// # use osprofiler_testkit::{need, Oracle};
/// let Some(oracle) = need("python osprofiler oracle", Oracle::locate()) else { return };
/// ```
#[track_caller]
pub fn need<T>(what: &str, r: Result<T, String>) -> Option<T> {
    let mut log = std::env::var_os(SKIP_LOG_ENV).and_then(|path| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .ok()
    });
    // Deliberately not eprintln!: libtest captures that and hides it for passing tests.
    need_in(in_ci(), &mut std::io::stderr(), log.as_mut(), what, r)
}

/// The environment variable naming a file that [`need`] appends its skip lines to.
pub const SKIP_LOG_ENV: &str = "OSPROFILER_TEST_SKIP_LOG";

#[track_caller]
fn need_in<T>(
    ci: bool,
    out: &mut dyn Write,
    log: Option<&mut std::fs::File>,
    what: &str,
    r: Result<T, String>,
) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(reason) if ci => panic!("`{what}` is required in CI: {reason}"),
        Err(reason) => {
            let line = format!(
                "skipping: {what} unavailable: {reason} (in {})\n",
                test_name()
            );
            let _ = out.write_all(line.as_bytes());
            if let Some(f) = log {
                // One write of an O_APPEND file: lines from parallel tests do not interleave.
                let _ = f.write_all(line.as_bytes());
            }
            None
        }
    }
}

/// The running test's name: libtest names the test's thread after it (nextest runs one test
/// per process, possibly on the main thread: then the binary's name).
fn test_name() -> String {
    match std::thread::current().name() {
        Some(name) if name != "main" => name.to_string(),
        _ => std::env::current_exe()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "?".into()),
    }
}

/// The workspace root: the nearest directory, from the running test's crate upwards, whose
/// `Cargo.toml` has a `[workspace]` table.
///
/// Starts from the runtime `CARGO_MANIFEST_DIR` (set by `cargo test` and nextest for the crate
/// under test), else from this crate's own manifest directory.
pub fn workspace_root() -> Result<PathBuf, String> {
    let starts = [
        std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from),
        Some(PathBuf::from(env!("CARGO_MANIFEST_DIR"))),
    ];
    for start in starts.into_iter().flatten() {
        if let Some(root) = find_workspace_root(&start) {
            return Ok(root);
        }
    }
    Err("no Cargo.toml with [workspace] above CARGO_MANIFEST_DIR".to_string())
}

fn find_workspace_root(start: &Path) -> Option<PathBuf> {
    start.ancestors().find_map(|dir| {
        let text = std::fs::read_to_string(dir.join("Cargo.toml")).ok()?;
        text.lines()
            .any(|l| l.trim() == "[workspace]")
            .then(|| dir.to_path_buf())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::panic::{AssertUnwindSafe, catch_unwind};

    #[test]
    fn free_port_is_bindable() {
        let port = free_port();
        assert_ne!(port, 0);
        TcpListener::bind((Ipv4Addr::LOCALHOST, port)).expect("port from free_port binds");
    }

    #[test]
    fn need_passes_ok_through() {
        assert_eq!(need("thing", Ok::<_, String>(7)), Some(7));
    }

    #[test]
    fn need_skips_outside_ci() {
        let dir = TempDir::new();
        let mut log = std::fs::File::create(dir.join("skips")).unwrap();
        let mut out = Vec::new();
        let r = need_in::<()>(
            false,
            &mut out,
            Some(&mut log),
            "imaginary-tool",
            Err("not installed".into()),
        );
        assert_eq!(r, None);
        let out = String::from_utf8(out).unwrap();
        assert_eq!(
            out,
            "skipping: imaginary-tool unavailable: not installed (in tests::need_skips_outside_ci)\n"
        );
        assert_eq!(std::fs::read_to_string(dir.join("skips")).unwrap(), out);
    }

    #[test]
    fn need_fails_in_ci() {
        let r = catch_unwind(AssertUnwindSafe(|| {
            need_in::<()>(
                true,
                &mut Vec::new(),
                None,
                "imaginary-tool",
                Err("not installed".into()),
            )
        }));
        let payload = r.expect_err("need() must panic under CI=true");
        let msg = payload
            .downcast_ref::<String>()
            .cloned()
            .unwrap_or_default();
        assert_eq!(msg, "`imaginary-tool` is required in CI: not installed");
    }

    #[test]
    fn workspace_root_has_crates() {
        let root = workspace_root().unwrap();
        assert!(root.join("crates/osprofiler-testkit/Cargo.toml").is_file());
    }
}
