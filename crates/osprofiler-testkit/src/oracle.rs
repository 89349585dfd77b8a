//! The real Python osprofiler 4.4.0, in a virtualenv made by `scripts/test-all`.

use crate::venv::{Venv, root_from_env};
use std::ffi::OsStr;
use std::ops::Deref;
use std::path::PathBuf;
use std::sync::OnceLock;

/// The osprofiler version the oracle must be.
pub const ORACLE_VERSION: &str = "4.4.0";

/// The Python osprofiler oracle: a virtualenv with `osprofiler==4.4.0` and `redis`.
///
/// ```no_run
/// use osprofiler_testkit::{need, Oracle};
///
/// let Some(py) = need("python osprofiler oracle", Oracle::locate()) else { return };
/// let out = py
///     .python(
///         "import sys; from osprofiler import _utils\n\
///          data, hmac = _utils.signed_pack({'base_id': sys.argv[1]}, 'SECRET')\n\
///          print(data.decode(), hmac)",
///         &["1c0d6b52-..."],
///     )
///     .unwrap();
/// let json = py.cli(&["trace", "show", "--json", "BASE_ID", "--connection-string", "redis://…"]);
/// ```
///
/// Its Python is run through [`Venv`]'s methods (`python`, `python_command`, …).
#[derive(Debug, Clone)]
pub struct Oracle(Venv);

impl Deref for Oracle {
    type Target = Venv;
    fn deref(&self) -> &Venv {
        &self.0
    }
}

impl Oracle {
    /// The virtualenv named by the environment variable `OSPROFILER_ORACLE`, else
    /// `<workspace>/target/oracle`, after checking that its Python imports osprofiler 4.4.0.
    /// The result is computed once per test process.
    pub fn locate() -> Result<Oracle, String> {
        static LOCATED: OnceLock<Result<Oracle, String>> = OnceLock::new();
        LOCATED
            .get_or_init(|| Oracle::at(root_from_env("OSPROFILER_ORACLE", "target/oracle")?))
            .clone()
    }

    /// The virtualenv at `root`, checked like [`locate`](Self::locate) does.
    pub fn at(root: impl Into<PathBuf>) -> Result<Oracle, String> {
        let missing = |root: &std::path::Path| {
            format!(
                "no virtualenv at {} (scripts/test-all makes it: python3 -m venv target/oracle \
                 && target/oracle/bin/pip install osprofiler=={ORACLE_VERSION} redis)",
                root.display()
            )
        };
        Venv::checked(
            root.into(),
            "python oracle",
            missing,
            "import osprofiler, importlib.metadata as m; print(m.version('osprofiler'))",
            ORACLE_VERSION,
        )
        .map(Oracle)
    }

    /// Runs the Python `osprofiler` command-line tool and returns its stdout; a non-zero
    /// exit is an error that includes stderr.
    pub fn cli<S: AsRef<OsStr>>(&self, args: &[S]) -> Result<String, String> {
        self.0.run("python osprofiler CLI", "osprofiler", args)
    }

    /// Python's `osprofiler trace show --json <base_id> --connection-string <cs>`,
    /// parsed.
    pub fn show_json(
        &self,
        base_id: &str,
        connection_string: &str,
    ) -> Result<serde_json::Value, String> {
        let text = self.cli(&[
            "trace",
            "show",
            "--json",
            base_id,
            "--connection-string",
            connection_string,
        ])?;
        serde_json::from_str(&text).map_err(|e| format!("python osprofiler printed no JSON: {e}"))
    }

    /// Runs [`TWO_SERVICE_TRACE`] against a Redis URL: two Python services write one
    /// trace there. Returns its base id.
    pub fn write_two_service_trace(&self, redis_url: &str) -> Result<String, String> {
        Ok(self
            .python(TWO_SERVICE_TRACE, &[redis_url])?
            .trim()
            .to_owned())
    }

    /// Python's driver for `url` (any connection string it takes) fetching and building
    /// trace `base` with `get_report`, as its `trace show` does: the fastest of three,
    /// as `"<ms> ms, <points> points"`. For benchmarks that time ours beside it.
    pub fn time_get_report(&self, url: &str, base: &str) -> Result<String, String> {
        Ok(self
            .python(GET_REPORT_TIMED, &[url, base])?
            .trim()
            .to_owned())
    }
}

/// `get_report` of `argv[2]` through the driver for `argv[1]`, timed three times.
const GET_REPORT_TIMED: &str = r#"
import sys, time
from oslo_config import cfg
from osprofiler import opts
from osprofiler.drivers import base
opts.set_defaults(cfg.CONF); cfg.CONF([])
drv = base.get_driver(sys.argv[1], conf=cfg.CONF)
best = None
for _ in range(3):
    t = time.perf_counter()
    r = drv.get_report(sys.argv[2])
    e = time.perf_counter() - t
    best = e if best is None else min(best, e)
def count(n):
    return 1 + sum(count(c) for c in n["children"])
print(f"{best * 1000:.0f} ms, {count(r) - 1} points")
"#;

/// Python services write a trace into Redis: "api" on h1 handles a request, reads the
/// database, and calls "compute" on h2, whose driver fails. The pauses keep sibling points
/// in distinct milliseconds: Python orders siblings that start in the same millisecond by
/// where their events sit in Redis, we by their start in microseconds.
pub const TWO_SERVICE_TRACE: &str = r#"
import socket, sys, threading, time
from oslo_config import cfg
from osprofiler import opts, profiler, notifier
from osprofiler.drivers import base
opts.set_defaults(cfg.CONF); cfg.CONF([])
cfg.CONF.set_override("filter_error_trace", True, group="profiler")
cs = sys.argv[1]
api = base.get_driver(cs, project="nova", service="api", host="h1", conf=cfg.CONF)
compute = base.get_driver(cs, project="nova", service="compute", host="h2", conf=cfg.CONF)

@profiler.trace("db")
def quota_get(project):
    time.sleep(0.002)
    return 3

@profiler.trace("driver")
def spawn(vm):
    time.sleep(0.002)
    raise ValueError("No valid host was found")

# osprofiler stamps events with socket.gethostname() at init: two hosts in one process.
socket.gethostname = lambda: "h1"
notifier.set(api.notify)
profiler.init("SECRET_KEY")
with profiler.Trace("wsgi", info={"request": {"path": "/v2.1/servers", "query": "",
                                             "method": "POST", "scheme": "http"}}):
    time.sleep(0.002)
    quota_get("demo")
    time.sleep(0.002)
    p = profiler.get()
    ids = (p.get_base_id(), p.get_id())

    def remote():
        notifier.set(compute.notify)
        socket.gethostname = lambda: "h2"
        profiler.init("SECRET_KEY", base_id=ids[0], parent_id=ids[1])
        with profiler.Trace("rpc", info={"function": {"name": "compute.build_and_run"}}):
            time.sleep(0.002)
            try:
                spawn("vm-1")
            except ValueError:
                pass
            time.sleep(0.002)
        profiler.clean()
        notifier.set(api.notify)

    t = threading.Thread(target=remote)
    t.start()
    t.join()
    time.sleep(0.002)
print(ids[0])
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::need;

    #[test]
    fn signs_like_osprofiler() {
        let Some(py) = need("python osprofiler oracle", Oracle::locate()) else {
            return;
        };
        let base = "4d8c1c6e-5a0e-4a49-9a0f-0c0ed3b7a1f2";
        let out = py
            .python(
                "import sys\n\
                 from osprofiler import _utils\n\
                 data, hmac = _utils.signed_pack({'base_id': sys.argv[1], 'parent_id': sys.argv[1]}, sys.argv[2])\n\
                 print(data.decode())\n\
                 print(hmac)\n",
                &[base, "SECRET_KEY"],
            )
            .unwrap();
        let mut lines = out.lines();
        let (data, hmac) = (lines.next().unwrap(), lines.next().unwrap());
        assert!(
            hmac.len() == 40
                && hmac
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
            "{hmac}"
        );
        assert!(data.ends_with('='), "urlsafe base64 with padding: {data}");

        // And it verifies its own signature, from stdin, with the right key only.
        let verify = "import sys, json\n\
                      from osprofiler import _utils\n\
                      data, hmac = sys.stdin.read().split()\n\
                      print(json.dumps(_utils.signed_unpack(data, hmac, sys.argv[1:])))\n";
        let back = py
            .python_with_stdin(verify, &["OTHER", "SECRET_KEY"], out.as_bytes())
            .unwrap();
        assert!(back.contains(&format!("\"base_id\": \"{base}\"")), "{back}");
        let refused = py
            .python_with_stdin(verify, &["OTHER"], out.as_bytes())
            .unwrap();
        assert_eq!(refused.trim(), "null");
    }

    #[test]
    fn errors_carry_stderr_and_cli_runs() {
        let Some(py) = need("python osprofiler oracle", Oracle::locate()) else {
            return;
        };
        let err = py
            .python("raise SystemExit('boom from python')", &[])
            .unwrap_err();
        assert!(err.contains("boom from python"), "{err}");
        let help = py.cli(&["trace", "--help"]).unwrap();
        assert!(help.contains("show"), "{help}");
    }
}
