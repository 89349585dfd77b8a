//! osprofiler's `[profiler]` configuration: read from an INI file (the
//! oslo.config format OpenStack services use), applied to the runtime
//! runtime [`switches`], and re-read while the service runs.
//!
//! ```
//! use osprofiler::config::ProfilerConf;
//! let conf = ProfilerConf::from_ini_str("
//! [profiler]
//! enabled = true
//! hmac_keys = SECRET_KEY, ROTATED_KEY
//! connection_string = redis://127.0.0.1:6379
//! trace_sqlalchemy = false
//! ").unwrap();
//! assert!(conf.enabled);
//! assert_eq!(conf.hmac_keys().len(), 2);
//! assert_eq!(conf.connection_string.as_deref(), Some("redis://127.0.0.1:6379"));
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::identity::{Identity, set_process_identity};
use crate::keys::HmacKeys;
use crate::notifier::{self, NotifierGuard, Sink};
use crate::switches;

/// The `[profiler]` section, with osprofiler's option names and defaults.
///
/// Its `Debug` output shows no key and no password: not `hmac_keys`, not the credentials
/// of `connection_string`, nor those of any URL among the other options.
#[derive(Clone, PartialEq)]
pub struct ProfilerConf {
    /// `enabled` (deprecated name `profiler_enabled`): whether signed
    /// requests are traced. Default false.
    pub enabled: bool,
    /// `hmac_keys`: comma-separated keys; default `SECRET_KEY` as in
    /// osprofiler. Never printed by `Debug` (see [`ProfilerConf::hmac_keys`]).
    hmac_keys_text: Secret,
    /// `connection_string`: where events go; `None` when unset (the store
    /// crate then uses its embedded default).
    pub connection_string: Option<String>,
    /// `trace_sqlalchemy`, or its Rust-named alias `trace_sql`: SQL
    /// statements become `db` points. Default false.
    pub trace_sql: bool,
    /// `trace_requests`: outgoing HTTP requests become points. Default false.
    pub trace_requests: bool,
    /// `filter_error_trace`: stores index traces that contain an error.
    pub filter_error_trace: bool,
    /// `socket_timeout` for backends, in seconds. Default 0.1.
    pub socket_timeout: f64,
    /// `sentinel_service_name` for `redissentinel://`. Default `mymaster`.
    pub sentinel_service_name: String,
    /// `w3c_traceparent`: outgoing HTTP and gRPC calls inside a trace also carry a
    /// W3C `traceparent`, so OpenTelemetry-instrumented services join the trace in
    /// Jaeger. Default false. An incoming `traceparent` never starts a trace.
    pub w3c_traceparent: bool,
    /// `[profiler_otlp] service_name_prefix`.
    pub otlp_service_name_prefix: Option<String>,
    /// `[profiler_jaeger] service_name_prefix`.
    pub jaeger_service_name_prefix: Option<String>,
    /// `[profiler_jaeger] process_tags` (`key:value,key:value`).
    pub jaeger_process_tags: Vec<(String, String)>,
    /// Every other option of `[profiler]`, raw (e.g. `es_doc_type`).
    pub other: BTreeMap<String, String>,
}

#[derive(Clone, PartialEq)]
struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// `s` with whatever may be credentials hidden: from the first `scheme://` (or the start)
/// to the last `@`, whatever characters the password holds (`redis://***@host:6379`). A
/// list of strings is hidden as one: more is hidden than needed, never less.
fn hide_credentials(s: &str) -> String {
    let Some(at) = s.rfind('@') else {
        return s.to_owned();
    };
    let from = s[..at].find("://").map_or(0, |i| i + 3);
    format!("{}***{}", &s[..from], &s[at..])
}

/// Whether an option's name says its value is a secret (`password`, `secret`, `token`,
/// `key`): such values are not shown at all.
fn secret_option(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    ["password", "passwd", "secret", "token", "key"]
        .iter()
        .any(|w| name.contains(w))
}

impl std::fmt::Debug for ProfilerConf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let other: BTreeMap<&str, String> = self
            .other
            .iter()
            .map(|(k, v)| {
                let shown = if secret_option(k) {
                    "<redacted>".to_owned()
                } else {
                    hide_credentials(v)
                };
                (k.as_str(), shown)
            })
            .collect();
        f.debug_struct("ProfilerConf")
            .field("enabled", &self.enabled)
            .field("hmac_keys", &self.hmac_keys_text)
            .field(
                "connection_string",
                &self.connection_string.as_deref().map(hide_credentials),
            )
            .field("trace_sql", &self.trace_sql)
            .field("trace_requests", &self.trace_requests)
            .field("filter_error_trace", &self.filter_error_trace)
            .field("socket_timeout", &self.socket_timeout)
            .field("sentinel_service_name", &self.sentinel_service_name)
            .field("w3c_traceparent", &self.w3c_traceparent)
            .field("otlp_service_name_prefix", &self.otlp_service_name_prefix)
            .field(
                "jaeger_service_name_prefix",
                &self.jaeger_service_name_prefix,
            )
            .field("jaeger_process_tags", &self.jaeger_process_tags)
            .field("other", &other)
            .finish()
    }
}

impl Default for ProfilerConf {
    fn default() -> ProfilerConf {
        ProfilerConf {
            enabled: false,
            hmac_keys_text: Secret("SECRET_KEY".into()),
            connection_string: None,
            trace_sql: false,
            trace_requests: false,
            filter_error_trace: false,
            socket_timeout: 0.1,
            sentinel_service_name: "mymaster".into(),
            w3c_traceparent: false,
            otlp_service_name_prefix: None,
            jaeger_service_name_prefix: None,
            jaeger_process_tags: Vec::new(),
            other: BTreeMap::new(),
        }
    }
}

/// Why a configuration could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The INI text is malformed.
    #[error("line {line}: {message}")]
    Syntax {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// An option has a value of the wrong type.
    #[error("[profiler] {option} = {value:?}: {expected}")]
    Value {
        /// The option.
        option: String,
        /// Its text.
        value: String,
        /// What was expected.
        expected: &'static str,
    },
}

/// A parsed INI file: sections of options (oslo.config's syntax: `key = value`
/// or `key: value`, `#`/`;` comment lines, indented continuation lines, quotes
/// around a value removed; the last of repeated options wins).
///
/// Its `Debug` output names the sections and options, never their values (`hmac_keys`
/// and passwords are among them).
#[derive(Clone, Default, PartialEq)]
pub struct Ini {
    sections: BTreeMap<String, BTreeMap<String, String>>,
}

impl std::fmt::Debug for Ini {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: BTreeMap<&str, Vec<&str>> = self
            .sections
            .iter()
            .map(|(s, opts)| (s.as_str(), opts.keys().map(String::as_str).collect()))
            .collect();
        f.debug_tuple("Ini").field(&names).finish()
    }
}

impl Ini {
    /// Parses INI text.
    pub fn parse(text: &str) -> Result<Ini, ConfigError> {
        let mut ini = Ini::default();
        let mut section: Option<String> = None;
        let mut last_key: Option<String> = None;
        for (i, raw) in text.lines().enumerate() {
            let line_no = i + 1;
            let line = raw.trim_end_matches('\r');
            let trimmed = line.trim();
            if trimmed.is_empty() {
                last_key = None;
                continue;
            }
            if trimmed.starts_with('#') || trimmed.starts_with(';') {
                continue;
            }
            let syntax = |m: &str| ConfigError::Syntax {
                line: line_no,
                message: m.to_owned(),
            };
            if line.starts_with([' ', '\t']) {
                // A continuation of the previous value.
                let (Some(s), Some(k)) = (&section, &last_key) else {
                    return Err(syntax("indented line does not continue an option"));
                };
                if let Some(v) = ini.sections.get_mut(s).and_then(|m| m.get_mut(k)) {
                    v.push('\n');
                    v.push_str(trimmed);
                }
                continue;
            }
            if let Some(rest) = trimmed.strip_prefix('[') {
                let name = rest
                    .strip_suffix(']')
                    .ok_or_else(|| syntax("section header without closing ]"))?
                    .trim();
                if name.is_empty() {
                    return Err(syntax("empty section name"));
                }
                section = Some(name.to_owned());
                ini.sections.entry(name.to_owned()).or_default();
                last_key = None;
                continue;
            }
            let Some(s) = &section else {
                return Err(syntax("option before any [section]"));
            };
            let sep = trimmed
                .find(['=', ':'])
                .ok_or_else(|| syntax("expected `name = value`"))?;
            let key = trimmed[..sep].trim();
            if key.is_empty() {
                return Err(syntax("option without a name"));
            }
            let mut value = trimmed[sep + 1..].trim();
            if value.len() >= 2
                && (value.starts_with('"') && value.ends_with('"')
                    || value.starts_with('\'') && value.ends_with('\''))
            {
                value = &value[1..value.len() - 1];
            }
            ini.sections
                .entry(s.clone())
                .or_default()
                .insert(key.to_owned(), value.to_owned());
            last_key = Some(key.to_owned());
        }
        Ok(ini)
    }

    /// One option's raw value.
    pub fn get(&self, section: &str, key: &str) -> Option<&str> {
        self.sections.get(section)?.get(key).map(String::as_str)
    }

    /// All options of a section.
    pub fn section(&self, section: &str) -> Option<&BTreeMap<String, String>> {
        self.sections.get(section)
    }
}

fn parse_bool(option: &str, value: &str) -> Result<bool, ConfigError> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" | "on" | "yes" => Ok(true),
        "false" | "0" | "off" | "no" => Ok(false),
        _ => Err(ConfigError::Value {
            option: option.to_owned(),
            value: value.to_owned(),
            expected: "expected true/false, yes/no, on/off or 1/0",
        }),
    }
}

impl ProfilerConf {
    /// Reads the `[profiler]` section of INI text (defaults when absent).
    pub fn from_ini_str(text: &str) -> Result<ProfilerConf, ConfigError> {
        ProfilerConf::from_ini(&Ini::parse(text)?)
    }

    /// Reads the `[profiler]` section of an INI file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<ProfilerConf, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_owned(),
            source,
        })?;
        ProfilerConf::from_ini_str(&text)
    }

    /// Reads the `[profiler]` section of a parsed file.
    pub fn from_ini(ini: &Ini) -> Result<ProfilerConf, ConfigError> {
        let mut c = ProfilerConf::default();
        let prefix = |group: &str| {
            ini.get(group, "service_name_prefix")
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
        };
        c.otlp_service_name_prefix = prefix("profiler_otlp");
        c.jaeger_service_name_prefix = prefix("profiler_jaeger");
        if let Some(tags) = ini.get("profiler_jaeger", "process_tags") {
            c.jaeger_process_tags = tags
                .split(',')
                .filter(|t| !t.trim().is_empty())
                .map(|t| {
                    let (k, v) = t.split_once(':').ok_or_else(|| ConfigError::Value {
                        option: "profiler_jaeger.process_tags".into(),
                        value: tags.to_owned(),
                        expected: "expected key:value pairs separated by commas",
                    })?;
                    Ok((k.trim().to_owned(), v.trim().to_owned()))
                })
                .collect::<Result<_, ConfigError>>()?;
        }
        let Some(section) = ini.section("profiler") else {
            return Ok(c);
        };
        for (k, v) in section {
            match k.as_str() {
                "enabled" | "profiler_enabled" => c.enabled = parse_bool(k, v)?,
                "hmac_keys" => c.hmac_keys_text = Secret(v.clone()),
                "connection_string" => {
                    c.connection_string = Some(v.clone()).filter(|s| !s.trim().is_empty())
                }
                "trace_sqlalchemy" | "trace_sql" => c.trace_sql = parse_bool(k, v)?,
                "trace_requests" => c.trace_requests = parse_bool(k, v)?,
                "filter_error_trace" => c.filter_error_trace = parse_bool(k, v)?,
                "socket_timeout" => {
                    c.socket_timeout = v
                        .parse()
                        .ok()
                        .filter(|t: &f64| t.is_finite() && *t >= 0.0)
                        .ok_or_else(|| ConfigError::Value {
                            option: k.clone(),
                            value: v.clone(),
                            expected: "expected a number of seconds",
                        })?
                }
                "sentinel_service_name" => c.sentinel_service_name = v.clone(),
                "w3c_traceparent" => c.w3c_traceparent = parse_bool(k, v)?,
                _ => {
                    c.other.insert(k.clone(), v.clone());
                }
            }
        }
        // The Rust alias wins when both are given, whatever their order.
        if let Some(v) = section.get("trace_sql") {
            c.trace_sql = parse_bool("trace_sql", v)?;
        }
        Ok(c)
    }

    /// The accepted keys (`hmac_keys` split on commas).
    pub fn hmac_keys(&self) -> HmacKeys {
        HmacKeys::parse(&self.hmac_keys_text.0)
    }

    /// Sets `hmac_keys` (comma-separated).
    pub fn set_hmac_keys(&mut self, comma_separated: impl Into<String>) {
        self.hmac_keys_text = Secret(comma_separated.into());
    }

    /// Applies the runtime options to the [`switches`]: on or
    /// off, keys, SQL and HTTP client tracing, the error-trace index. Takes
    /// effect on the next request.
    pub fn apply(&self) {
        switches::set_hmac_keys(self.hmac_keys());
        if self.enabled {
            switches::enable(self.hmac_keys());
        } else {
            switches::disable();
        }
        switches::set_sql_tracing(self.trace_sql);
        switches::set_trace_requests(self.trace_requests);
        switches::set_filter_error_trace(self.filter_error_trace);
        switches::set_w3c_traceparent(self.w3c_traceparent);
    }
}

/// Wires a service from its `[profiler]` section and a backend it made: sets the
/// identity events are stamped with (`project`, `service`, `host`), applies the
/// runtime switches, and sends events to `sink`. Keep the returned guard alive;
/// dropping it flushes and closes the backend.
///
/// A service usually calls `osprofiler_store::init_from_conf`, which makes the
/// backend from the section's `connection_string` and then calls this; call it
/// directly with a [`Sink`] of your own.
///
/// ```
/// use osprofiler::config::{ProfilerConf, init_with_sink};
/// use osprofiler::notifier::MemorySink;
/// let conf = ProfilerConf::from_ini_str("[profiler]\nenabled = true\nhmac_keys = K\n").unwrap();
/// let sink = MemorySink::new();
/// let _guard = init_with_sink(&conf, "nova", "api", "h1", Box::new(sink.clone()));
/// assert_eq!(&*osprofiler::process_identity().service, "api");
/// ```
pub fn init_with_sink(
    conf: &ProfilerConf,
    project: &str,
    service: &str,
    host: &str,
    sink: Box<dyn Sink>,
) -> NotifierGuard {
    set_process_identity(Identity::new(project, service, host));
    conf.apply();
    notifier::set_boxed_sink(sink)
}

/// Re-reads `path` and applies its runtime options: call it on SIGHUP, or
/// let [`watch`] do it when the file changes.
pub fn reload(path: impl AsRef<Path>) -> Result<ProfilerConf, ConfigError> {
    let conf = ProfilerConf::from_file(path)?;
    conf.apply();
    Ok(conf)
}

/// Re-applies a configuration file whenever it changes. Stops when dropped.
pub struct Watcher {
    stop: Arc<AtomicBool>,
    last_error: Arc<Mutex<Option<String>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Checks `path` every `interval` and [`reload`]s it when it changed. A
/// file that fails to parse is ignored (the running settings stay) and the
/// error is kept for [`Watcher::last_error`].
pub fn watch(path: impl Into<PathBuf>, interval: Duration) -> std::io::Result<Watcher> {
    let path = path.into();
    let stop = Arc::new(AtomicBool::new(false));
    let last_error = Arc::new(Mutex::new(None));
    let (s, e) = (stop.clone(), last_error.clone());
    let stamp = |p: &Path| {
        std::fs::metadata(p)
            .ok()
            .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()))
    };
    let mut seen = stamp(&path);
    let thread = std::thread::Builder::new()
        .name("osprofiler-config".into())
        .spawn(move || {
            while !s.load(Ordering::Acquire) {
                std::thread::park_timeout(interval);
                let now = stamp(&path);
                if now != seen {
                    seen = now;
                    let result = reload(&path).err().map(|err| err.to_string());
                    if let Ok(mut l) = e.lock() {
                        *l = result;
                    }
                }
            }
        })?;
    Ok(Watcher {
        stop,
        last_error,
        thread: Some(thread),
    })
}

impl Watcher {
    /// The error of the last reload, if it failed.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok()?.clone()
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher").finish_non_exhaustive()
    }
}
