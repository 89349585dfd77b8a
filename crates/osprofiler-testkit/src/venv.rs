//! A Python virtualenv made by `scripts/test-all`: where it is, the check that it holds the
//! right osprofiler, and how to run its programs. [`Oracle`](crate::Oracle) and
//! [`JaegerVenv`](crate::JaegerVenv) are each one of these (they deref to it).

use crate::process;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(120);

/// A virtualenv and what to call it in errors ("python oracle", "jaeger python").
#[derive(Debug, Clone)]
pub struct Venv {
    root: PathBuf,
    what: &'static str,
}

/// The directory named by the environment variable `env`, else `<workspace>/<default>`.
pub(crate) fn root_from_env(env: &str, default: &str) -> Result<PathBuf, String> {
    match std::env::var_os(env) {
        Some(dir) if !dir.is_empty() => Ok(PathBuf::from(dir)),
        _ => Ok(crate::workspace_root()?.join(default)),
    }
}

impl Venv {
    /// The virtualenv at `root`, after checking that `bin/python` exists (else `missing`,
    /// which says how to make it) and that `version_script` prints `version`.
    pub(crate) fn checked(
        root: PathBuf,
        what: &'static str,
        missing: impl FnOnce(&Path) -> String,
        version_script: &str,
        version: &str,
    ) -> Result<Venv, String> {
        let venv = Venv { root, what };
        let python = venv.bin("python");
        if !python.exists() {
            return Err(missing(&venv.root));
        }
        let found = venv
            .python(version_script, &[])
            .map_err(|e| format!("{} cannot import what it needs: {e}", python.display()))?;
        let found = found.trim();
        if found != version {
            return Err(format!(
                "{} has osprofiler {found}, not {version}",
                venv.root.display()
            ));
        }
        Ok(venv)
    }

    /// The virtualenv's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A program in the virtualenv's `bin/`.
    pub fn bin(&self, name: &str) -> PathBuf {
        self.root.join("bin").join(name)
    }

    /// Runs `python -c script args…` (`sys.argv[1:]` is `args`) and returns its stdout.
    /// A non-zero exit is an error that includes stderr. Killed after 120 s.
    pub fn python(&self, script: &str, args: &[&str]) -> Result<String, String> {
        let cmd = self.python_command(script, args);
        process::run_ok(self.what, cmd, None, TIMEOUT)
    }

    /// Like [`python`](Self::python), writing `stdin` to the script's standard input.
    pub fn python_with_stdin(
        &self,
        script: &str,
        args: &[&str],
        stdin: &[u8],
    ) -> Result<String, String> {
        let cmd = self.python_command(script, args);
        process::run_ok(self.what, cmd, Some(stdin), TIMEOUT)
    }

    /// The `Command` for `python -c script args…`, to spawn a long-running Python process
    /// (a WSGI service, a UDP receiver) and manage it yourself. Output is unbuffered.
    pub fn python_command(&self, script: &str, args: &[&str]) -> Command {
        let mut cmd = self.command("python");
        cmd.arg("-c").arg(script).args(args);
        cmd
    }

    /// Runs the virtualenv's program `program` with `args` and returns its stdout; a
    /// non-zero exit is an error that includes stderr. Killed after 120 s.
    pub(crate) fn run<S: AsRef<OsStr>>(
        &self,
        what: &str,
        program: &str,
        args: &[S],
    ) -> Result<String, String> {
        let mut cmd = self.command(program);
        cmd.args(args);
        process::run_ok(what, cmd, None, TIMEOUT)
    }

    // Python from the venv only: no outer PYTHONPATH/HOME, unbuffered UTF-8 output.
    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bin(program));
        cmd.env_remove("PYTHONPATH")
            .env_remove("PYTHONHOME")
            .env("PYTHONUNBUFFERED", "1")
            .env("PYTHONIOENCODING", "utf-8");
        cmd
    }
}
