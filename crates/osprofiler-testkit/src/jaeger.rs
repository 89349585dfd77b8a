//! Jaeger's own wire code: a virtualenv with `osprofiler==4.3.0` (the last release with a
//! `jaeger://` driver) and `jaeger-client` (Jaeger's generated Thrift code and its UDP
//! reporter), made by `scripts/test-all`.

use crate::process;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

/// The osprofiler version of the Jaeger virtualenv: the last one with `jaeger://`.
pub const JAEGER_OSPROFILER_VERSION: &str = "4.3.0";

/// The environment variable naming the Jaeger virtualenv.
pub const JAEGER_VENV_ENV: &str = "OSPROFILER_JAEGER_VENV";

const TIMEOUT: Duration = Duration::from_secs(120);

/// The Jaeger virtualenv: Python with `jaeger_client` (its `thrift_gen` decodes what an
/// agent receives) and osprofiler 4.3.0's Jaeger driver.
///
/// ```no_run
/// use osprofiler_testkit::{need, JaegerVenv};
///
/// let Some(py) = need("jaeger-client virtualenv", JaegerVenv::locate()) else { return };
/// let out = py.python("import jaeger_client; print('ok')", &[]).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct JaegerVenv {
    root: PathBuf,
}

impl JaegerVenv {
    /// The virtualenv named by `OSPROFILER_JAEGER_VENV`, else `<workspace>/target/jaeger`,
    /// after checking that its Python imports `jaeger_client`, `thrift` and osprofiler
    /// 4.3.0. Computed once per test process.
    pub fn locate() -> Result<JaegerVenv, String> {
        static LOCATED: OnceLock<Result<JaegerVenv, String>> = OnceLock::new();
        LOCATED
            .get_or_init(|| {
                let root = match std::env::var_os(JAEGER_VENV_ENV) {
                    Some(dir) if !dir.is_empty() => PathBuf::from(dir),
                    _ => crate::workspace_root()?.join("target/jaeger"),
                };
                JaegerVenv::at(root)
            })
            .clone()
    }

    /// The virtualenv at `root`, checked like [`locate`](Self::locate) does.
    pub fn at(root: impl Into<PathBuf>) -> Result<JaegerVenv, String> {
        let venv = JaegerVenv { root: root.into() };
        let python = venv.bin("python");
        if !python.exists() {
            return Err(format!(
                "no virtualenv at {} (scripts/test-all makes it: python3 -m venv target/jaeger \
                 && target/jaeger/bin/pip install osprofiler=={JAEGER_OSPROFILER_VERSION} \
                 jaeger-client six)",
                venv.root.display()
            ));
        }
        let version = venv
            .python(
                "import jaeger_client, thrift.protocol.TCompactProtocol, osprofiler.drivers.jaeger\n\
                 import importlib.metadata as m; print(m.version('osprofiler'))",
                &[],
            )
            .map_err(|e| {
                format!(
                    "{} cannot import jaeger_client and osprofiler: {e}",
                    python.display()
                )
            })?;
        let version = version.trim();
        if version != JAEGER_OSPROFILER_VERSION {
            return Err(format!(
                "{} has osprofiler {version}, not {JAEGER_OSPROFILER_VERSION}",
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

    /// Runs `python -c script args…` and returns its stdout; a non-zero exit is an error
    /// that includes stderr. Killed after 120 s.
    pub fn python(&self, script: &str, args: &[&str]) -> Result<String, String> {
        let cmd = self.python_command(script, args);
        process::run_ok("jaeger python", cmd, None, TIMEOUT)
    }

    /// Like [`python`](Self::python), writing `stdin` to the script's standard input.
    pub fn python_with_stdin(
        &self,
        script: &str,
        args: &[&str],
        stdin: &[u8],
    ) -> Result<String, String> {
        let cmd = self.python_command(script, args);
        process::run_ok("jaeger python", cmd, Some(stdin), TIMEOUT)
    }

    /// The `Command` for `python -c script args…`, to spawn a long-running Python process
    /// (a UDP receiver, say) and manage it yourself. Output is unbuffered.
    pub fn python_command(&self, script: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(self.bin("python"));
        cmd.env_remove("PYTHONPATH")
            .env_remove("PYTHONHOME")
            .env("PYTHONUNBUFFERED", "1")
            .env("PYTHONIOENCODING", "utf-8")
            .arg("-c")
            .arg(script)
            .args(args);
        cmd
    }
}
