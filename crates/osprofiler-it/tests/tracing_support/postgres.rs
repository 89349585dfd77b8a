//! A throwaway PostgreSQL server: `initdb` into a temporary directory, then
//! `postgres` as a child process on 127.0.0.1 and a free port, stopped and
//! removed on drop.
//!
//! Debian's `postgresql` package puts the server programs in
//! `/usr/lib/postgresql/<version>/bin`, off `PATH`; they are looked up there
//! first, then on `PATH`. PostgreSQL refuses to run as root: as root the
//! server runs as the `postgres` user the package creates (else `nobody`),
//! through `setpriv`, which execs (the child is the server itself, so it can
//! be stopped by its pid), and owns the directory.

use std::net::{Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use osprofiler_testkit::{TempDir, free_port};

const READY_TIMEOUT: Duration = Duration::from_secs(30);
const ATTEMPTS: usize = 5;

#[derive(Debug)]
pub struct PgServer {
    child: Child,
    port: u16,
    // Removed after the server is stopped (fields drop after `Drop::drop`).
    dir: TempDir,
}

/// Who runs the server: `None` for the current user, else (uid, gid).
type RunAs = Option<(u32, u32)>;

impl PgServer {
    /// Creates a cluster and starts the server; says why when it cannot.
    pub fn start() -> Result<PgServer, String> {
        let bin = bin_dir()?;
        let run_as = run_as()?;
        let dir = TempDir::try_new()?;
        if let Some((uid, gid)) = run_as {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .map_err(|e| format!("chown {}: {e}", dir.path().display()))?;
        }
        let data = dir.join("data");
        let mut initdb = command(&bin.join("initdb"), run_as);
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8"])
            .current_dir(dir.path());
        let out = initdb
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run initdb: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "initdb failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let mut last = String::new();
        for _ in 0..ATTEMPTS {
            let port = free_port();
            match launch(&bin, run_as, dir.path(), &data, port) {
                Ok(child) => return Ok(PgServer { child, port, dir }),
                Err(e) => last = e,
            }
        }
        Err(format!(
            "postgres did not start after {ATTEMPTS} tries: {last}"
        ))
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        // SIGINT: PostgreSQL's fast shutdown (ends sessions, no checkpoint wait).
        let _ = Command::new("kill")
            .args(["-s", "INT", &self.child.id().to_string()])
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn launch(bin: &Path, run_as: RunAs, dir: &Path, data: &Path, port: u16) -> Result<Child, String> {
    let log_path = dir.join("postgres.log");
    let log = std::fs::File::create(&log_path).map_err(|e| format!("postgres.log: {e}"))?;
    if let Some((uid, gid)) = run_as {
        let _ = std::os::unix::fs::chown(&log_path, Some(uid), Some(gid));
    }
    let mut cmd = command(&bin.join("postgres"), run_as);
    cmd.arg("-D")
        .arg(data)
        .args(["-p", &port.to_string()])
        .arg("-k")
        .arg(dir)
        .args([
            "-c",
            "listen_addresses=127.0.0.1",
            // A throwaway database: durability is not wanted.
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
        ])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot run postgres: {e}"))?;
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            return Err(format!("postgres exited ({status}): {}", log.trim()));
        }
        // Accepting TCP connections is not enough (it answers "starting up"
        // for a moment): pg_isready asks for a real connection.
        if TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok() && is_ready(bin, port) {
            return Ok(child);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            return Err(format!(
                "postgres not ready after {READY_TIMEOUT:?}: {}",
                log.trim()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn is_ready(bin: &Path, port: u16) -> bool {
    let prog = bin.join("pg_isready");
    let prog = if prog.is_file() {
        prog
    } else {
        PathBuf::from("pg_isready")
    };
    Command::new(prog)
        .args([
            "-q",
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "postgres",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `prog`, run as `run_as` when set.
fn command(prog: &Path, run_as: RunAs) -> Command {
    match run_as {
        None => Command::new(prog),
        Some((uid, gid)) => {
            let mut c = Command::new("setpriv");
            c.arg(format!("--reuid={uid}"))
                .arg(format!("--regid={gid}"))
                .arg("--clear-groups")
                .arg("--")
                .arg(prog);
            c
        }
    }
}

/// The newest `/usr/lib/postgresql/<version>/bin` with `postgres` in it, else
/// the directory of `initdb` on `PATH`.
fn bin_dir() -> Result<PathBuf, String> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").is_file().then_some((version, bin))
        })
        .collect();
    found.sort();
    if let Some((_, bin)) = found.pop() {
        return Ok(bin);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .find(|d| d.join("initdb").is_file() && d.join("postgres").is_file())
        .ok_or_else(|| {
            "no PostgreSQL server programs in /usr/lib/postgresql/*/bin or on PATH \
             (Debian package `postgresql`)"
                .to_string()
        })
}

/// As root: the `postgres` user, else `nobody`. Otherwise the current user.
fn run_as() -> Result<RunAs, String> {
    let me = id(&["-u"], None)?;
    if me != 0 {
        return Ok(None);
    }
    for user in ["postgres", "nobody"] {
        if let (Ok(uid), Ok(gid)) = (id(&["-u"], Some(user)), id(&["-g"], Some(user))) {
            return Ok(Some((uid, gid)));
        }
    }
    Err("running as root and no `postgres` or `nobody` user to run the server as".into())
}

fn id(flag: &[&str], user: Option<&str>) -> Result<u32, String> {
    let out = Command::new("id")
        .args(flag)
        .args(user)
        .stderr(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run id: {e}"))?;
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .map_err(|_| format!("id {flag:?} {user:?}: no such user"))
}
