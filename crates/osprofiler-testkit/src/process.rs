//! Running a child process to completion with a deadline, and running a server that dies
//! with the test process.

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Runs `cmd` in its own process group, feeding `stdin`, collecting stdout and stderr.
///
/// After `timeout` the whole group is killed (a browser leaves helper processes behind that
/// would otherwise keep the pipes open) and an error is returned. The group is also killed
/// after a normal exit, for the same reason.
pub(crate) fn run(
    what: &str,
    mut cmd: Command,
    stdin: Option<&[u8]>,
    timeout: Duration,
) -> Result<Output, String> {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .process_group(0);
    let mut child = cmd.spawn().map_err(|e| spawn_error(what, &cmd, &e))?;
    let feeder = match (stdin, child.stdin.take()) {
        (Some(data), Some(mut pipe)) => {
            let data = data.to_vec();
            Some(std::thread::spawn(move || {
                let _ = pipe.write_all(&data);
            }))
        }
        _ => None,
    };
    let out = reader(child.stdout.take());
    let err = reader(child.stderr.take());

    let start = Instant::now();
    let mut nap = Duration::from_millis(1);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if start.elapsed() >= timeout => break None,
            Ok(None) => {
                std::thread::sleep(nap);
                nap = (nap * 2).min(Duration::from_millis(25));
            }
            Err(e) => {
                kill_group(&mut child);
                return Err(format!("{what}: waiting for the process failed: {e}"));
            }
        }
    };
    kill_group(&mut child);
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    if let Some(f) = feeder {
        let _ = f.join();
    }
    match status {
        Some(status) => Ok(Output {
            status,
            stdout,
            stderr,
        }),
        None => Err(format!(
            "{what}: timed out after {:.0?}, killed{}",
            timeout,
            tail("stderr", &stderr)
        )),
    }
}

/// Runs and requires exit status 0; returns stdout as text.
pub(crate) fn run_ok(
    what: &str,
    cmd: Command,
    stdin: Option<&[u8]>,
    timeout: Duration,
) -> Result<String, String> {
    let out = run(what, cmd, stdin, timeout)?;
    if !out.status.success() {
        return Err(failure(what, &out));
    }
    String::from_utf8(out.stdout).map_err(|e| format!("{what}: stdout is not UTF-8: {e}"))
}

/// "what: exited with …" plus the tails of stderr and stdout.
pub(crate) fn failure(what: &str, out: &Output) -> String {
    format!(
        "{what}: {}{}{}",
        out.status,
        tail("stderr", &out.stderr),
        tail("stdout", &out.stdout)
    )
}

/// Why a server did not come up on a port: the port was taken (try another one), or it
/// failed for good.
pub(crate) enum Launch {
    PortTaken(String),
    Failed(String),
}

/// Calls `launch` (which picks fresh free ports) until a start is not beaten to its port,
/// `attempts` times at most.
pub(crate) fn on_free_ports(
    what: &str,
    attempts: usize,
    mut launch: impl FnMut() -> Result<(), Launch>,
) -> Result<(), String> {
    let mut last = String::new();
    for _ in 0..attempts {
        match launch() {
            Ok(()) => return Ok(()),
            Err(Launch::PortTaken(e)) => last = e,
            Err(Launch::Failed(e)) => return Err(e),
        }
    }
    Err(format!(
        "{what}: no free port after {attempts} tries: {last}"
    ))
}

/// Calls `launch` (on the ports a stopped server had) until they are no longer taken, for
/// `timeout` at most: a port may stay busy a moment after its server died.
pub(crate) fn on_same_ports(
    timeout: Duration,
    mut launch: impl FnMut() -> Result<(), Launch>,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        match launch() {
            Ok(()) => return Ok(()),
            Err(Launch::PortTaken(e)) if Instant::now() >= deadline => return Err(e),
            Err(Launch::PortTaken(_)) => std::thread::sleep(Duration::from_millis(50)),
            Err(Launch::Failed(e)) => return Err(e),
        }
    }
}

/// When the server `child` has exited: its status and its log at `log_path` (the process
/// group killed first, for helpers it forked).
pub(crate) fn exited_with_log(
    child: &mut Child,
    log_path: &std::path::Path,
) -> Option<(std::process::ExitStatus, String)> {
    let status = child.try_wait().ok().flatten()?;
    kill_group(child);
    Some((
        status,
        std::fs::read_to_string(log_path).unwrap_or_default(),
    ))
}

/// A server that exited before it was ready: "`what` exited (status)" and the tail of its
/// log (`log_name`); its port was taken when the log says one of `taken`.
pub(crate) fn exited_early(
    what: &str,
    status: std::process::ExitStatus,
    log_name: &str,
    log: &str,
    taken: &[&str],
) -> Launch {
    let msg = format!("{what} exited ({status}){}", tail(log_name, log.as_bytes()));
    if taken.iter().any(|t| log.contains(t)) {
        Launch::PortTaken(msg)
    } else {
        Launch::Failed(msg)
    }
}

pub(crate) fn spawn_error(what: &str, cmd: &Command, e: &std::io::Error) -> String {
    let prog = cmd.get_program().to_string_lossy();
    if e.kind() == std::io::ErrorKind::NotFound {
        format!("{what}: `{prog}` not found")
    } else {
        format!("{what}: cannot start `{prog}`: {e}")
    }
}

/// The last few KiB of a stream, labelled, for error messages; empty when the stream is.
pub(crate) fn tail(label: &str, bytes: &[u8]) -> String {
    const MAX: usize = 4000;
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim_end();
    if text.is_empty() {
        return String::new();
    }
    let cut = text.len().saturating_sub(MAX);
    let cut = (cut..text.len())
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0);
    let dots = if cut > 0 { "…" } else { "" };
    format!("\n--- {label} ---\n{dots}{}", &text[cut..])
}

fn reader<R: Read + Send + 'static>(pipe: Option<R>) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_end(&mut buf);
        }
        buf
    })
}

// Runs a server so that it dies with the test process, however that ends (statics never
// dropped, `process::exit`, SIGKILL): the watcher reads the pipe whose write end only the
// test process holds, and kills the server (`$$`, which `exec` made the server) at end of
// file. The server itself gets neither end. The server, the watcher and its `read` share
// one process group, which `kill_group` kills.
const WRAPPER: &str = r#"exec 3<&0
(read -r _ <&3; kill -KILL $$ 2>/dev/null) &
exec "$@" </dev/null 3<&-"#;

/// A `Command` that runs `program` (then add its arguments, stdout, stderr and environment)
/// under the watcher: spawn it with [`spawn_tethered`]. Because the wrapper `exec`s the
/// program, the child's pid is the server's.
pub(crate) fn tethered(label: &str, program: impl AsRef<OsStr>) -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(WRAPPER).arg(label).arg(program);
    cmd
}

// The same, for a server made of several processes (a start script, the VM it runs, the
// VM's helpers): the watcher kills the whole process group, which the server leads.
const GROUP_WRAPPER: &str = r#"exec 3<&0
(read -r _ <&3; kill -KILL -- -$$ 2>/dev/null) &
exec "$@" </dev/null 3<&-"#;

/// Like [`tethered`], but the watcher kills the server's whole process group when the test
/// process dies (the server's children too, e.g. RabbitMQ's Erlang VM under its script).
pub(crate) fn tethered_group(label: &str, program: impl AsRef<OsStr>) -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(GROUP_WRAPPER).arg(label).arg(program);
    cmd
}

/// Spawns a command made by [`tethered`] in its own process group. Keep the returned
/// `ChildStdin` as long as the server should live; kill it with [`kill_group`].
pub(crate) fn spawn_tethered(cmd: &mut Command) -> std::io::Result<(Child, ChildStdin)> {
    cmd.stdin(Stdio::piped()).process_group(0);
    let mut child = cmd.spawn()?;
    match child.stdin.take() {
        Some(stdin) => Ok((child, stdin)),
        None => {
            kill_group(&mut child);
            Err(std::io::Error::other("no stdin pipe to the watcher"))
        }
    }
}

/// Kills the child's process group (it leads it: `process_group(0)`) and reaps the child.
///
/// std has no killpg and the workspace forbids `unsafe`, so this runs `kill(1)`.
pub(crate) fn kill_group(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-s", "KILL", "--", &format!("-{}", child.id())])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let _ = child.kill();
    let _ = child.wait();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collects_output_and_stdin() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "cat; echo err >&2; exit 3"]);
        let out = run("sh", cmd, Some(b"hello"), Duration::from_secs(10)).unwrap();
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(out.stdout, b"hello");
        assert_eq!(out.stderr, b"err\n");
        assert!(failure("sh", &out).contains("err"));
    }

    #[test]
    fn kills_on_timeout_with_grandchildren() {
        let mut cmd = Command::new("sh");
        // The backgrounded sleep holds stdout open: only a group kill frees the reader.
        cmd.args(["-c", "sleep 30 & sleep 30"]);
        let start = Instant::now();
        let err = run("sleeper", cmd, None, Duration::from_millis(300)).unwrap_err();
        assert!(err.contains("timed out"), "{err}");
        assert!(start.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn missing_program() {
        let err = run(
            "nothing",
            Command::new("osprofiler-no-such-program"),
            None,
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert!(err.contains("not found"), "{err}");
    }

    #[test]
    fn tail_keeps_the_end() {
        let long = "x".repeat(5000) + "END";
        let t = tail("stderr", long.as_bytes());
        assert!(t.ends_with("END") && t.len() < 4100);
        assert_eq!(tail("stdout", b"  \n"), "");
    }
}
