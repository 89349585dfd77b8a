//! A server started by the harness dies with the process that started it, even when that
//! process never drops it: `std::process::exit` and SIGKILL.
//!
//! The test re-runs this test binary as a child (`CHILD_ENV` set) that starts a
//! redis-server and a rotel-agent, leaks them (`mem::forget`, as a static would), prints
//! their working directories and then exits or waits to be killed. The parent counts the
//! processes whose command line names those directories (each server gets a fresh one,
//! so other tests' servers are not counted): some while the child lives, none after.

use osprofiler_testkit::{MariaDbServer, PostgresServer, RedisServer, Rotel, need};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CHILD_ENV: &str = "OSPROFILER_TETHER_CHILD";
// How long the killed servers may take to go: the watcher notices at once, 5 s is margin
// for a loaded machine.
const GONE_WITHIN: Duration = Duration::from_secs(5);

/// Live server processes (argv[0] names `redis-server` or `rotel-agent`; a zombie has an
/// empty cmdline and is not counted) that belong to `dir`: it is on their command line
/// (rotel's `--pid-file`) or is their working directory (redis-server chdirs to `--dir` and
/// rewrites its command line to `redis-server 127.0.0.1:PORT`).
fn servers_in(dir: &str) -> usize {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return 0;
    };
    procs
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter(|e| {
            let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
                return false;
            };
            let cmd = String::from_utf8_lossy(&cmd);
            let argv0 = cmd.split(['\0', ' ']).next().unwrap_or("");
            // PostgreSQL's children rename themselves `postgres: checkpointer` and so on,
            // and work in the data directory, under `dir`.
            let is_server = argv0.ends_with("redis-server")
                || argv0.ends_with("rotel-agent")
                || argv0.ends_with("postgres")
                || argv0.starts_with("postgres:")
                || argv0.ends_with("mariadbd");
            let cwd = std::fs::read_link(e.path().join("cwd")).ok();
            is_server
                && (cmd.contains(dir)
                    || cwd.is_some_and(|c| c.starts_with(std::path::Path::new(dir))))
        })
        .count()
}

/// The child's part: start, leak, report, then end as `how` says.
fn child_main(how: &str) {
    let redis = RedisServer::start().expect("redis-server");
    let mut dirs = vec![redis.dir().display().to_string()];
    std::mem::forget(redis);
    match Rotel::start() {
        Ok(rotel) => {
            // rotel's pid file lives in its temp dir, which is on its command line.
            dirs.push(format!("rotel:{}", rotel_dir(&rotel)));
            std::mem::forget(rotel);
        }
        // Not a failure here: the rotel tests `need()` it; this one still checks redis.
        Err(e) => println!("NOTE no rotel-agent: {}", e.lines().next().unwrap_or("")),
    }
    // Likewise: the SQL tests `need()` these.
    match PostgresServer::start() {
        Ok(pg) => {
            dirs.push(pg.dir().display().to_string());
            std::mem::forget(pg);
        }
        Err(e) => println!("NOTE no PostgreSQL: {}", e.lines().next().unwrap_or("")),
    }
    match MariaDbServer::start() {
        Ok(db) => {
            dirs.push(db.dir().display().to_string());
            std::mem::forget(db);
        }
        Err(e) => println!("NOTE no MariaDB: {}", e.lines().next().unwrap_or("")),
    }
    // Directories with a live server (PostgreSQL runs several processes).
    let mut alive = 0;
    for d in &dirs {
        println!("DIR {d}");
        alive += usize::from(servers_in(d.trim_start_matches("rotel:")) > 0);
    }
    println!("ALIVE {alive}");
    println!("READY");
    match how {
        "exit" => std::process::exit(0),
        _ => std::thread::sleep(Duration::from_secs(120)),
    }
}

/// rotel's temp dir, read from its Debug output (the field is private).
fn rotel_dir(rotel: &Rotel) -> String {
    let dbg = format!("{rotel:?}");
    // `dir: TempDir { path: "/tmp/osprofiler-test-…" }`
    dbg.split("dir: TempDir")
        .nth(1)
        .and_then(|rest| rest.split('"').nth(1))
        .unwrap_or_default()
        .to_string()
}

fn run_child(how: &str) {
    if need("redis-server", RedisServer::start().map(drop)).is_none() {
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, how)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut dirs = Vec::new();
    let mut alive = 0;
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        eprintln!("child: {line}");
        // libtest's "test child_entry ... " may precede the first line.
        let line = line.find("DIR ").map_or(line.as_str(), |at| &line[at..]);
        if let Some(d) = line.strip_prefix("DIR ") {
            dirs.push(d.trim_start_matches("rotel:").to_string());
        }
        if let Some(note) = line.strip_prefix("NOTE ") {
            eprintln!("{note}");
        }
        if let Some(n) = line.strip_prefix("ALIVE ") {
            alive = n.trim().parse().unwrap();
        }
        if line.contains("READY") {
            break;
        }
    }
    assert!(
        !dirs.is_empty() && dirs.iter().all(|d| !d.is_empty()),
        "{dirs:?}"
    );
    // Counted by the child before it ends: one server per directory.
    assert!(
        alive == dirs.len(),
        "servers of {dirs:?} while the child lives: {alive}"
    );
    if how == "kill" {
        assert_eq!(
            dirs.iter().filter(|d| servers_in(d) > 0).count(),
            dirs.len()
        );
        child.kill().unwrap(); // SIGKILL
    }
    let status = child.wait().unwrap();
    eprintln!(
        "child ({how}) ended: {status}; {} server(s), {alive} process(es) before",
        dirs.len()
    );
    let deadline = Instant::now() + GONE_WITHIN;
    loop {
        let left: usize = dirs.iter().map(|d| servers_in(d)).sum();
        if left == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{left} server process(es) of {dirs:?} left {GONE_WITHIN:?} after the child ended"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn child_entry() {
    if let Ok(how) = std::env::var(CHILD_ENV) {
        child_main(&how);
    }
}

#[test]
fn servers_die_when_the_process_exits_without_dropping_them() {
    run_child("exit");
}

#[test]
fn servers_die_when_the_process_is_killed() {
    run_child("kill");
}
