//! Jaeger's own wire code: a virtualenv with `osprofiler==4.3.0` (the last release with a
//! `jaeger://` driver) and `jaeger-client` (Jaeger's generated Thrift code and its UDP
//! reporter), made by `scripts/test-all`.

use crate::venv::{Venv, root_from_env};
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The osprofiler version of the Jaeger virtualenv: the last one with `jaeger://`.
pub const JAEGER_OSPROFILER_VERSION: &str = "4.3.0";

/// The environment variable naming the Jaeger virtualenv.
pub const JAEGER_VENV_ENV: &str = "OSPROFILER_JAEGER_VENV";

/// The Jaeger virtualenv: Python with `jaeger_client` (its `thrift_gen` decodes what an
/// agent receives) and osprofiler 4.3.0's Jaeger driver.
///
/// ```no_run
/// use osprofiler_testkit::{need, JaegerVenv};
///
/// let Some(py) = need("jaeger-client virtualenv", JaegerVenv::locate()) else { return };
/// let out = py.python("import jaeger_client; print('ok')", &[]).unwrap();
/// ```
///
/// Its Python is run through [`Venv`]'s methods (`python`, `python_command`, …).
#[derive(Debug, Clone)]
pub struct JaegerVenv(Venv);

impl Deref for JaegerVenv {
    type Target = Venv;
    fn deref(&self) -> &Venv {
        &self.0
    }
}

impl JaegerVenv {
    /// The virtualenv named by `OSPROFILER_JAEGER_VENV`, else `<workspace>/target/jaeger`,
    /// after checking that its Python imports `jaeger_client`, `thrift` and osprofiler
    /// 4.3.0. Computed once per test process.
    pub fn locate() -> Result<JaegerVenv, String> {
        static LOCATED: OnceLock<Result<JaegerVenv, String>> = OnceLock::new();
        LOCATED
            .get_or_init(|| JaegerVenv::at(root_from_env(JAEGER_VENV_ENV, "target/jaeger")?))
            .clone()
    }

    /// The virtualenv at `root`, checked like [`locate`](Self::locate) does.
    pub fn at(root: impl Into<PathBuf>) -> Result<JaegerVenv, String> {
        let missing = |root: &Path| {
            format!(
                "no virtualenv at {} (scripts/test-all makes it: python3 -m venv target/jaeger \
                 && target/jaeger/bin/pip install osprofiler=={JAEGER_OSPROFILER_VERSION} \
                 jaeger-client six)",
                root.display()
            )
        };
        Venv::checked(
            root.into(),
            "jaeger python",
            missing,
            "import jaeger_client, thrift.protocol.TCompactProtocol, osprofiler.drivers.jaeger\n\
             import importlib.metadata as m; print(m.version('osprofiler'))",
            JAEGER_OSPROFILER_VERSION,
        )
        .map(JaegerVenv)
    }
}
