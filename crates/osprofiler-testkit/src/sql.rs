//! Real PostgreSQL and MariaDB servers (Debian packages `postgresql`, `mariadb-server`),
//! each on a free loopback port with a fresh data directory, dying with the test process.

use crate::TempDir;
use crate::process::{
    Launch, exited_early, exited_with_log, kill_group, on_free_ports, on_same_ports, run, run_ok,
    spawn_tethered, tethered,
};
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command};
use std::time::{Duration, Instant};

const READY_TIMEOUT: Duration = Duration::from_secs(20);
const CMD_TIMEOUT: Duration = Duration::from_secs(30);
const ATTEMPTS: usize = 5;

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// The newest `/usr/lib/postgresql/<version>/bin` (or `$OSPROFILER_PG_BIN`).
fn pg_bin() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os("OSPROFILER_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|e| {
            format!("PostgreSQL is not installed (/usr/lib/postgresql: {e}; Debian package postgresql, which scripts/test-all installs)")
        })?
        .filter_map(|d| d.ok())
        .filter_map(|d| {
            let v = d.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = d.path().join("bin");
            bin.join("postgres").is_file().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, b)| b).ok_or_else(|| {
        "no /usr/lib/postgresql/<version>/bin/postgres (Debian package postgresql)".into()
    })
}

/// `program` run as the `postgres` user when we are root (PostgreSQL refuses root):
/// `setpriv` rather than `su`, because it `exec`s the program, so the child's pid is the
/// server's and the watcher kills the server itself.
fn pg_command(program: &Path, tether: bool) -> Command {
    let root = running_as_root();
    let mut c = match (root, tether) {
        (true, true) => tethered("pg-wrapper", "setpriv"),
        (true, false) => Command::new("setpriv"),
        (false, true) => return tethered("pg-wrapper", program),
        (false, false) => return Command::new(program),
    };
    c.args(["--reuid=postgres", "--regid=postgres", "--init-groups"])
        .arg(program);
    c
}

/// A PostgreSQL server on 127.0.0.1 and a free port, run as a child process (`postgres`,
/// not `pg_ctl start`, so that it stays tethered to the test process) as the `postgres`
/// user, with a fresh cluster made by `initdb -A trust` and durability off (`fsync`,
/// `synchronous_commit`, `full_page_writes`) for a quick start. Stopped with
/// `pg_ctl stop -m immediate` and killed on drop, and killed when the test process dies
/// however it ends.
///
/// ```no_run
/// use osprofiler_testkit::{need, PostgresServer};
///
/// let Some(pg) = need("postgresql", PostgresServer::start()) else { return };
/// let url = pg.url(); // "postgresql://postgres@127.0.0.1:PORT/postgres"
/// assert_eq!(pg.psql("SELECT 1 + 1").unwrap(), "2");
/// ```
#[derive(Debug)]
pub struct PostgresServer {
    child: Option<(Child, ChildStdin)>,
    port: u16,
    bin: PathBuf,
    dir: TempDir,
    /// More `-c` settings (TLS).
    extra: Vec<String>,
}

impl PostgresServer {
    /// initdb, then start and wait until it answers.
    pub fn start() -> Result<PostgresServer, String> {
        PostgresServer::start_with(None, None)
    }

    /// The same with TLS on (`ssl=on`, the certificate and key of `certs`, copied into
    /// its directory and owned by `postgres`, as the server requires of a key): clients
    /// choose TLS or not (`pg_stat_ssl` says which).
    pub fn start_tls(certs: &crate::TestCerts) -> Result<PostgresServer, String> {
        PostgresServer::start_with(Some(certs), None)
    }

    /// [`start_tls`](Self::start_tls) that also verifies the client certificates it is
    /// given against `certs`' CA (`ssl_ca_file`), with the `pg_hba.conf` lines `hba`
    /// placed before initdb's (`trust` for everyone), so that they win: e.g.
    /// `hostssl all alice 127.0.0.1/32 cert` and `host all alice 127.0.0.1/32 reject`
    /// let `alice` in over TLS with a certificate whose CN is `alice` only.
    pub fn start_mutual_tls(
        certs: &crate::TestCerts,
        hba: &[&str],
    ) -> Result<PostgresServer, String> {
        PostgresServer::start_with(Some(certs), Some(hba))
    }

    fn start_with(
        certs: Option<&crate::TestCerts>,
        hba: Option<&[&str]>,
    ) -> Result<PostgresServer, String> {
        let bin = pg_bin()?;
        let dir = TempDir::try_new()?;
        if running_as_root() {
            let out = run(
                "chown",
                {
                    let mut c = Command::new("chown");
                    c.arg("postgres").arg(dir.path());
                    c
                },
                None,
                CMD_TIMEOUT,
            )?;
            if !out.status.success() {
                return Err(crate::process::failure("chown postgres", &out));
            }
        }
        let mut initdb = pg_command(&bin.join("initdb"), false);
        initdb
            .arg("-D")
            .arg(dir.join("data"))
            .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"])
            .args(["--no-instructions", "--locale=C"]);
        run_ok("initdb", initdb, None, CMD_TIMEOUT)?;
        let mut extra = Vec::new();
        if let Some(c) = certs {
            let (cert, key) = (dir.join("server.pem"), dir.join("server.key"));
            std::fs::copy(&c.cert, &cert).map_err(|e| format!("postgres cert: {e}"))?;
            std::fs::copy(&c.key, &key).map_err(|e| format!("postgres key: {e}"))?;
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))
                    .map_err(|e| format!("postgres key: {e}"))?;
            }
            if running_as_root() {
                let mut c = Command::new("chown");
                c.arg("postgres").arg(&cert).arg(&key);
                run_ok("chown postgres", c, None, CMD_TIMEOUT)?;
            }
            extra = vec![
                "-c".to_owned(),
                "ssl=on".to_owned(),
                "-c".to_owned(),
                format!("ssl_cert_file={}", cert.display()),
                "-c".to_owned(),
                format!("ssl_key_file={}", key.display()),
            ];
            if let Some(hba) = hba {
                let ca = dir.join("client-ca.pem");
                std::fs::copy(&c.ca, &ca).map_err(|e| format!("postgres CA: {e}"))?;
                if running_as_root() {
                    let mut c = Command::new("chown");
                    c.arg("postgres").arg(&ca);
                    run_ok("chown postgres", c, None, CMD_TIMEOUT)?;
                }
                extra.extend(["-c".to_owned(), format!("ssl_ca_file={}", ca.display())]);
                // pg_hba.conf: the first line that matches decides.
                let conf = dir.join("data").join("pg_hba.conf");
                let old = std::fs::read_to_string(&conf).map_err(|e| format!("pg_hba: {e}"))?;
                let mut new = hba.join("\n");
                new.push('\n');
                new.push_str(&old);
                std::fs::write(&conf, new).map_err(|e| format!("pg_hba: {e}"))?;
            }
        }
        let mut server = PostgresServer {
            child: None,
            port: 0,
            bin,
            dir,
            extra,
        };
        on_free_ports("postgres", ATTEMPTS, || server.launch(crate::free_port()))?;
        Ok(server)
    }

    fn launch(&mut self, port: u16) -> Result<(), Launch> {
        let log_path = self.dir.join("postgres.log");
        let log = File::create(&log_path)
            .and_then(|f| Ok((f.try_clone()?, f)))
            .map_err(|e| Launch::Failed(format!("postgres: cannot create log: {e}")))?;
        let postgres = self.bin.join("postgres");
        let mut cmd = pg_command(&postgres, true);
        cmd.arg("-D")
            .arg(self.dir.join("data"))
            .args(["-p", &port.to_string(), "-k"])
            .arg(self.dir.path())
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
            .args(["-c", "synchronous_commit=off", "-c", "full_page_writes=off"])
            .args(["-c", "max_connections=40", "-c", "shared_buffers=32MB"])
            .args(&self.extra)
            .stdout(log.0)
            .stderr(log.1);
        let (mut child, stdin) = spawn_tethered(&mut cmd)
            .map_err(|e| Launch::Failed(crate::process::spawn_error("postgres", &cmd, &e)))?;
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some((status, log)) = exited_with_log(&mut child, &log_path) {
                return Err(exited_early(
                    &format!("postgres on port {port}"),
                    status,
                    "log",
                    &log,
                    &["could not bind", "in use"],
                ));
            }
            if Instant::now() >= deadline {
                kill_group(&mut child);
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                return Err(Launch::Failed(format!(
                    "postgres on port {port} not ready within {READY_TIMEOUT:?}{}",
                    crate::process::tail("log", log.as_bytes())
                )));
            }
            self.port = port;
            // Ours answers: its data directory is ours.
            if let Ok(d) = self.psql("SHOW data_directory") {
                if Path::new(d.trim()) == self.dir.join("data") {
                    self.child = Some((child, stdin));
                    return Ok(());
                }
                kill_group(&mut child);
                return Err(Launch::PortTaken(format!(
                    "another PostgreSQL answered on port {port}"
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgresql://postgres@127.0.0.1:PORT/postgres` (trust authentication).
    pub fn url(&self) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Its directory: the cluster in `data/`, the log `postgres.log`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Runs SQL with `psql` as `postgres` and returns its unaligned, tuples-only output
    /// (`|` between columns, one line per row), trimmed.
    pub fn psql(&self, sql: &str) -> Result<String, String> {
        self.psql_in("postgres", sql)
    }

    /// [`psql`](Self::psql) in database `db`.
    pub fn psql_in(&self, db: &str, sql: &str) -> Result<String, String> {
        let mut c = Command::new(self.bin.join("psql"));
        c.args([
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
        ])
        .args(["-p", &self.port.to_string(), "-U", "postgres", "-d", db])
        .args(["-c", sql]);
        run_ok("psql", c, None, CMD_TIMEOUT).map(|s| s.trim().to_owned())
    }

    /// Stops the server (`pg_ctl stop -m immediate`, then kills what is left).
    pub fn stop(&mut self) {
        if let Some((mut child, stdin)) = self.child.take() {
            let mut c = pg_command(&self.bin.join("pg_ctl"), false);
            c.arg("-D").arg(self.dir.join("data")).args([
                "-m",
                "immediate",
                "-w",
                "-t",
                "10",
                "stop",
            ]);
            let _ = run("pg_ctl stop", c, None, Duration::from_secs(15));
            kill_group(&mut child);
            drop(stdin);
        }
    }

    /// Kills the server and its backends with SIGKILL, as a crash would: no shutdown, the
    /// connections reset, the port stops answering.
    pub fn kill(&mut self) {
        if let Some((mut child, stdin)) = self.child.take() {
            kill_group(&mut child);
            drop(stdin);
        }
    }

    /// Starts the server again on the same port and data directory (after
    /// [`kill`](Self::kill) or [`stop`](Self::stop); kills a running one first). The data
    /// stays: after a kill PostgreSQL recovers it from its WAL (but for the commits of the
    /// last 200 ms or so: `synchronous_commit` is off).
    pub fn restart(&mut self) -> Result<(), String> {
        self.kill();
        let port = self.port;
        on_same_ports(READY_TIMEOUT, || self.launch(port))
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A MariaDB server (`mariadbd`) on 127.0.0.1 and a free port, with a fresh data
/// directory made by `mariadb-install-db`, durability off for a quick start, and a
/// database `osprofiler`. `root` has no password from 127.0.0.1; [`sql`](Self::sql) runs
/// statements through the server's socket. Killed on drop and when the test process dies.
///
/// ```no_run
/// use osprofiler_testkit::{need, MariaDbServer};
///
/// let Some(db) = need("mariadb", MariaDbServer::start()) else { return };
/// let url = db.url(); // "mysql://root@127.0.0.1:PORT/osprofiler"
/// assert_eq!(db.sql("SELECT 1 + 1").unwrap(), "2");
/// ```
#[derive(Debug)]
pub struct MariaDbServer {
    child: Option<(Child, ChildStdin)>,
    port: u16,
    /// Whether database `osprofiler` exists yet.
    database: bool,
    dir: TempDir,
    /// More server options (TLS).
    extra: Vec<String>,
}

impl MariaDbServer {
    /// mariadb-install-db, then start and wait until it answers.
    pub fn start() -> Result<MariaDbServer, String> {
        MariaDbServer::start_with(None)
    }

    /// The same with TLS (`--ssl-cert`, `--ssl-key`, `--ssl-ca` of `certs`): clients
    /// choose TLS or not (`SHOW STATUS LIKE 'Ssl_cipher'` says which).
    pub fn start_tls(certs: &crate::TestCerts) -> Result<MariaDbServer, String> {
        MariaDbServer::start_with(Some(certs))
    }

    fn start_with(certs: Option<&crate::TestCerts>) -> Result<MariaDbServer, String> {
        let dir = TempDir::try_new()?;
        // A temporary directory of its own: servers of parallel tests sharing /tmp
        // have failed the install ("Could not remove temporary table '/tmp/#sql-…'").
        std::fs::create_dir(dir.join("tmp")).map_err(|e| format!("mariadb tmpdir: {e}"))?;
        let mut install = Command::new("mariadb-install-db");
        install
            .arg("--no-defaults")
            .arg(format!("--datadir={}", dir.join("data").display()))
            .arg(format!("--tmpdir={}", dir.join("tmp").display()))
            .args(["--auth-root-authentication-method=normal", "--skip-test-db"])
            .args(["--skip-name-resolve"]);
        if running_as_root() {
            install.arg("--user=root");
        }
        run_ok("mariadb-install-db", install, None, CMD_TIMEOUT).map_err(|e| {
            if e.contains("not found") {
                format!("{e} (Debian package mariadb-server; scripts/test-all installs it)")
            } else {
                e
            }
        })?;
        let extra = certs
            .map(|c| {
                vec![
                    format!("--ssl-cert={}", c.cert.display()),
                    format!("--ssl-key={}", c.key.display()),
                    format!("--ssl-ca={}", c.ca.display()),
                ]
            })
            .unwrap_or_default();
        let mut server = MariaDbServer {
            child: None,
            port: 0,
            database: false,
            dir,
            extra,
        };
        on_free_ports("mariadbd", ATTEMPTS, || server.launch(crate::free_port()))?;
        server.sql("CREATE DATABASE osprofiler")?;
        server.database = true;
        Ok(server)
    }

    fn launch(&mut self, port: u16) -> Result<(), Launch> {
        let log_path = self.dir.join("mariadb.log");
        let _ = std::fs::remove_file(&log_path);
        // What it writes before it opens its log (warnings about limits, say) goes here,
        // not to the test's output.
        let early = File::create(self.dir.join("mariadb.stderr"))
            .and_then(|f| Ok((f.try_clone()?, f)))
            .map_err(|e| Launch::Failed(format!("mariadbd: cannot create its stderr file: {e}")))?;
        let mut cmd = tethered("mariadb-wrapper", "mariadbd");
        cmd.arg("--no-defaults")
            .arg(format!("--datadir={}", self.dir.join("data").display()))
            .arg(format!("--tmpdir={}", self.dir.join("tmp").display()))
            .arg(format!("--port={port}"))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--socket={}", self.socket().display()))
            .arg(format!(
                "--pid-file={}",
                self.dir.join("mariadb.pid").display()
            ))
            .arg(format!("--log-error={}", log_path.display()))
            .args([
                "--skip-log-bin",
                "--skip-name-resolve",
                "--innodb-buffer-pool-size=256M",
            ])
            .args([
                "--innodb-flush-log-at-trx-commit=0",
                "--skip-innodb-doublewrite",
            ])
            .args(["--innodb-log-file-size=16M", "--max-connections=60"])
            .args(&self.extra)
            .stdout(early.0)
            .stderr(early.1);
        if running_as_root() {
            cmd.arg("--user=root");
        }
        let (mut child, stdin) = spawn_tethered(&mut cmd)
            .map_err(|e| Launch::Failed(crate::process::spawn_error("mariadbd", &cmd, &e)))?;
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some((status, log)) = exited_with_log(&mut child, &log_path) {
                if status.code() == Some(127) {
                    return Err(Launch::Failed(
                        "`mariadbd` not found on PATH (Debian package mariadb-server)".into(),
                    ));
                }
                return Err(exited_early(
                    &format!("mariadbd on port {port}"),
                    status,
                    "log",
                    &log,
                    &["Bind on TCP/IP port", "in use"],
                ));
            }
            if Instant::now() >= deadline {
                kill_group(&mut child);
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                return Err(Launch::Failed(format!(
                    "mariadbd on port {port} not ready within {READY_TIMEOUT:?}{}",
                    crate::process::tail("log", log.as_bytes())
                )));
            }
            // The socket is in our directory, so whoever answers there is ours; it also
            // listens on the port once it answers (networking starts first).
            if let Ok(p) = self.sql("SELECT @@port")
                && p.trim() == port.to_string()
            {
                self.port = port;
                self.child = Some((child, stdin));
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("mariadb.sock")
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its directory: the data in `data/`, the log `mariadb.log`, the socket.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `mysql://root@127.0.0.1:PORT/osprofiler`.
    pub fn url(&self) -> String {
        format!("mysql://root@127.0.0.1:{}/osprofiler", self.port)
    }

    /// Runs SQL as root through the socket, in database `osprofiler` once it exists;
    /// returns the rows tab-separated, one per line, trimmed.
    pub fn sql(&self, sql: &str) -> Result<String, String> {
        let mut c = Command::new("mariadb");
        c.arg("--no-defaults")
            .arg(format!("--socket={}", self.socket().display()))
            .args(["-u", "root", "--batch", "--skip-column-names"])
            .args(["-e", sql]);
        if self.database {
            c.arg("osprofiler");
        }
        run_ok("mariadb", c, None, CMD_TIMEOUT).map(|s| s.trim().to_owned())
    }

    /// Kills the server with SIGKILL, as a crash would.
    pub fn stop(&mut self) {
        if let Some((mut child, stdin)) = self.child.take() {
            kill_group(&mut child);
            drop(stdin);
        }
    }

    /// Starts the server again on the same port and data directory (after
    /// [`stop`](Self::stop); kills a running one first). The data stays, InnoDB recovers
    /// it after a kill, but for the last second's commits: the server writes its log once
    /// a second (`--innodb-flush-log-at-trx-commit=0`, for speed).
    pub fn restart(&mut self) -> Result<(), String> {
        self.stop();
        let port = self.port;
        on_same_ports(READY_TIMEOUT, || self.launch(port))
    }
}

impl Drop for MariaDbServer {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_killed_restarts_on_its_port_with_its_data() {
        let Some(mut pg) = crate::need("postgresql", PostgresServer::start()) else {
            return;
        };
        pg.psql("CREATE TABLE t (v int); INSERT INTO t VALUES (7)")
            .unwrap();
        // The WAL writer's delay (see restart).
        std::thread::sleep(Duration::from_millis(500));
        let port = pg.port();
        pg.kill();
        assert!(pg.psql("SELECT 1").is_err(), "still answers after kill");
        pg.restart().unwrap();
        assert_eq!(pg.port(), port);
        assert_eq!(pg.psql("SELECT v FROM t").unwrap(), "7");
    }

    #[test]
    fn mariadb_killed_restarts_on_its_port_with_its_data() {
        let Some(mut db) = crate::need("mariadb", MariaDbServer::start()) else {
            return;
        };
        db.sql("CREATE TABLE t (v int); INSERT INTO t VALUES (7)")
            .unwrap();
        // The log is written once a second (see restart).
        std::thread::sleep(Duration::from_millis(1500));
        let port = db.port();
        db.stop();
        assert!(db.sql("SELECT 1").is_err(), "still answers after kill");
        db.restart().unwrap();
        assert_eq!(db.port(), port);
        assert_eq!(db.sql("SELECT v FROM t").unwrap(), "7");
        assert_eq!(db.sql("SELECT @@port").unwrap(), port.to_string());
    }
}
