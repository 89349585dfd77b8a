#![warn(missing_docs)]
// On docs.rs, each feature-gated item says which feature it needs.
#![cfg_attr(docsrs, feature(doc_cfg))]
//! Where osprofiler traces are stored, and how they are read back.
//!
//! A connection string picks the backend ([`ConnectionString`]):
//!
//! - `sqlite:///path/traces.db` (feature `sqlite`, on by default): an embedded SQLite
//!   file, the default when nothing is configured ([`default_connection_string`]), so
//!   everything works without a server;
//! - `redis://`, `rediss://` (with `tls`), `redissentinel://` (feature `redis`): Redis, in
//!   osprofiler 4.4.0's layout, so Python services and tools share the traces;
//! - `rediscluster://host:port[,host:port…]` (feature `redis`): a Redis Cluster, the same
//!   key names (one trace in one slot) with the listing index sharded over the masters;
//! - `file:///path/events.jsonl`: osprofiler JSON, one event per line;
//! - `otlp://`, `otlps://`, `otlp+grpc://` (features `otlp`, `otlp-grpc`; TLS: `tls`): spans to an
//!   OpenTelemetry collector, hence Jaeger, Grafana Tempo and the like (write only);
//! - `jaeger://` (feature `jaeger`): spans to a Jaeger agent over UDP (write only);
//! - `messaging://` (feature `messaging`): OpenStack notifications on RabbitMQ, as Python's
//!   messaging driver sends them, the broker given as [`Options::transport_url`]. The bus
//!   only carries events: it keeps a trace until someone reads it and cannot list traces,
//!   see the [`messaging`] module for what it can and cannot keep.
//! - `postgresql://`, `postgresql+psycopg2://` (feature `postgres`; TLS: `postgres-tls`) and
//!   `mysql://`, `mysql+pymysql://`, `mariadb://` (feature `mysql`): PostgreSQL, MySQL or MariaDB in
//!   osprofiler's SQLAlchemy layout (table `data`), shared with Python services that use
//!   osprofiler's `sqlalchemy` driver, both ways.
//!
//! ## One SQL layout for every SQL backend? No: SQLite keeps its own
//!
//! The PostgreSQL and MySQL drivers use Python's table because Python services write and
//! read it. The embedded SQLite store keeps its own layout (an `events` table of exact
//! event texts and a `traces` table of one row per trace), because:
//!
//! - nothing Python reads it: osprofiler 4.4.0 maps only `mysql…` and `postgresql…` strings
//!   to its SQLAlchemy driver, never `sqlite://`, so the shared layout would buy no sharing;
//! - its `traces` rows make `trace list` and the error list index range scans (newest
//!   first, `has_error`) and the TTL a per-trace delete; Python's layout has no per-trace
//!   row, so the SQL drivers group every event by `base_id` for `trace list` and scan the
//!   stop events' `data` for errors (their search of traces reads summary tables of their
//!   own beside `data`, `osprofiler_trace_summary` and `osprofiler_trace_member`);
//! - Python's table costs more per event: eight single-column indexes (nine B-trees per
//!   row against SQLite's two) and `data` encoded as JSON twice, with the columns split out
//!   of the event and put back on reading, where SQLite stores osprofiler's exact text;
//! - files already written (schema version 1) would need a migration for no gain.
//!
//! Should one layout be wanted later, the way there is the other direction: Python's
//! table plus per-trace tables of our own (Python ignores unknown tables), as the SQL
//! drivers already keep for the search.
//!
//! Each backend is a cargo feature, so that a service compiles only what it uses; `tls`
//! (rustls) adds TLS to the enabled ones, PostgreSQL's being `postgres-tls`. A string naming a backend this build lacks is
//! refused when parsed, in one line that names the feature
//! ([`ConnectionStringError::FeatureMissing`]).
//!
//! Several backends at once are a [`Backends`] list (`"redis://… otlp://…"`): every event
//! goes to each ([`sink_all`]), each with its own queue, so a slow one holds up no other.
//!
//! Each backend has a write side, a [`Sink`] for the notifier pipeline ([`sink`]), and a
//! read side, a [`TraceStore`] ([`open`]): a trace's events and [`Report`], the list of
//! traces, the list of traces with errors.
//!
//! ```
//! use osprofiler_store::{open, sink, ConnectionString, Options};
//! # let dir = std::env::temp_dir().join(format!("osp-doc-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir).unwrap();
//! let cs: ConnectionString = format!("file://{}/events.jsonl", dir.display()).parse().unwrap();
//! let _notifier = osprofiler::notifier::set_boxed_sink(sink(&cs, &Options::default()).unwrap());
//! let ctx = osprofiler::TraceContext::new(None, None, None);
//! ctx.in_scope(|| drop(osprofiler::point("db")));
//! osprofiler::notifier::flush().unwrap();
//!
//! let mut store = open(&cs, &Options::default()).unwrap();
//! let report = store.report(&ctx.base_id().to_string()).unwrap().expect("stored");
//! assert_eq!(report.len(), 1);
//! # std::fs::remove_dir_all(&dir).unwrap();
//! ```

#[cfg(any(
    feature = "redis",
    feature = "otlp",
    feature = "postgres",
    feature = "mysql",
    feature = "messaging"
))]
mod backoff;
mod conn;
mod fanout;
mod file;
#[cfg(feature = "jaeger")]
mod jaeger;
#[cfg(feature = "messaging")]
#[cfg_attr(docsrs, doc(cfg(feature = "messaging")))]
pub mod messaging;
#[cfg(feature = "otlp")]
mod otlp;
#[cfg(feature = "redis")]
mod redis;
#[cfg(any(feature = "otlp", feature = "jaeger"))]
mod spans;
#[cfg(any(feature = "postgres", feature = "mysql"))]
mod sql;
#[cfg(feature = "sqlite")]
mod sqlite;
mod summary;
#[cfg(feature = "tls")]
// Used by the TLS clients of the backends that are built: `tls` alone has none.
#[cfg_attr(not(any(feature = "redis", feature = "otlp")), allow(dead_code))]
mod tls;
mod transport_url;

use std::path::PathBuf;
use std::time::Duration;

/// How [`redact`] splits a list, for the fuzz checks: not an API.
#[doc(hidden)]
pub use conn::syntax_list as __syntax_list;
/// The private parsers the fuzz targets (`fuzz/`) reach: not an API, may change at any time.
#[cfg(feature = "redis")]
#[doc(hidden)]
pub use redis::resp_fuzz as __fuzz;
/// The Redis sink's event JSON writer, for benches/redis_client.rs (the `redis` crate side
/// serializes with it too, so that only the clients differ): not an API.
#[cfg(feature = "redis")]
#[doc(hidden)]
pub use redis::write_event_json as __redis_event_json;

/// The SQL statements whose plans `tests/sql.rs` prints: not an API.
#[cfg(any(feature = "postgres", feature = "mysql"))]
#[doc(hidden)]
pub use sql::__plan_statements;

pub use conn::{
    Backends, ConnectionString, ConnectionStringError, JAEGER_MAX_PACKET_SIZE, JaegerTarget,
    OtlpProtocol, OtlpTarget, RedisTarget, SqlDialect, SqlTarget, SqlTls, redact,
};
pub use fanout::{BackendStats, backend_stats};
#[cfg(feature = "jaeger")]
#[cfg_attr(docsrs, doc(cfg(feature = "jaeger")))]
pub use jaeger::{JaegerStats, jaeger_stats};
use osprofiler::config::ProfilerConf;
use osprofiler::notifier::NotifierGuard;
pub use osprofiler::notifier::Sink;
pub use osprofiler_report::Report;
use serde_json::Value;
pub use summary::{RootPoint, TraceOverview, TracePage, TraceQuery, point_name};
pub use transport_url::{AMQP_PORT, BrokerHost, TransportUrl};

/// Environment variable naming the connection string when none is given.
pub const CONNECTION_STRING_ENV: &str = "OSPROFILER_CONNECTION_STRING";

/// Backend settings besides the connection string (osprofiler's `[profiler]` options).
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// `sentinel_service_name`: the master's name for `redissentinel://`.
    pub sentinel_service_name: String,
    /// Connect and I/O timeout for network backends.
    pub socket_timeout: Duration,
    /// `filter_error_trace`: also index traces that contain an error.
    pub filter_error_trace: bool,
    /// Expire trace data this long after its last write (Redis), or drop it when
    /// older (SQLite). `None`: keep forever, as osprofiler does.
    pub ttl: Option<Duration>,
    /// `[profiler_otlp] service_name_prefix`: spans' service name is
    /// `<prefix>-<project>-<service>` (a connection string's own option wins).
    pub otlp_service_name_prefix: Option<String>,
    /// `[profiler_jaeger] service_name_prefix`.
    pub jaeger_service_name_prefix: Option<String>,
    /// `[profiler_jaeger] process_tags`: extra tags of the Jaeger process.
    pub jaeger_process_tags: Vec<(String, String)>,
    /// oslo.messaging's `transport_url`, the broker of `messaging://` (the CLI's
    /// `--transport-url`; in a service's configuration `[oslo_messaging_notifications]`
    /// or `[DEFAULT]` `transport_url`, see [`Options::with_oslo_messaging`]).
    pub transport_url: Option<TransportUrl>,
    /// oslo.messaging's `control_exchange`: the topic exchange notifications go to
    /// (`openstack` by default).
    pub control_exchange: String,
    /// `messaging://`'s reader stops once this long has passed without a new event of the
    /// trace (Python's `idle_timeout`, 1 s).
    pub messaging_idle_timeout: Duration,
    /// `messaging://` publishes oslo.messaging's 2.0 envelope (`oslo.version`,
    /// `oslo.message`), as oslo's `messagingv2` notification driver does. Off by default:
    /// Python osprofiler's notifier uses the `messaging` driver, whose messages are the
    /// notification itself. Readers (ours, Python's) take both.
    pub messaging_v2: bool,
    /// Keep a summary of each trace beside its events (Redis, PostgreSQL, MariaDB), updated
    /// per batch, so that [`TraceStore::search_traces`] (`osprofiler ui`, `trace list`'s
    /// filters) reads no event of the traces it lists. On by default; off saves its write
    /// cost (BENCHMARKS.md) and the search then summarises each trace from its events.
    /// SQLite keeps its per-trace rows whatever this says.
    pub trace_summaries: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            sentinel_service_name: "mymaster".into(),
            socket_timeout: Duration::from_secs(2),
            filter_error_trace: false,
            ttl: None,
            otlp_service_name_prefix: None,
            jaeger_service_name_prefix: None,
            jaeger_process_tags: Vec::new(),
            transport_url: None,
            control_exchange: "openstack".into(),
            messaging_idle_timeout: Duration::from_secs(1),
            messaging_v2: false,
            trace_summaries: true,
        }
    }
}

impl Options {
    /// The options of a `[profiler]` section. osprofiler's `socket_timeout` (0.1 s by
    /// default) is kept when set above its default; reads get at least 2 s.
    pub fn from_conf(conf: &ProfilerConf) -> Options {
        let ttl = conf
            .other
            .get("trace_ttl")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        Options {
            sentinel_service_name: conf.sentinel_service_name.clone(),
            socket_timeout: Duration::from_secs_f64(conf.socket_timeout.max(2.0)),
            filter_error_trace: conf.filter_error_trace,
            ttl,
            otlp_service_name_prefix: conf.otlp_service_name_prefix.clone(),
            jaeger_service_name_prefix: conf.jaeger_service_name_prefix.clone(),
            jaeger_process_tags: conf.jaeger_process_tags.clone(),
            ..Options::default()
        }
    }

    /// These options with oslo.messaging's, from a service's configuration file:
    /// `transport_url` of `[oslo_messaging_notifications]`, else of `[DEFAULT]` (where
    /// OpenStack services put it), and `[DEFAULT] control_exchange`. The URL takes the TLS
    /// options of `[oslo_messaging_rabbit]`, `ssl`, `ssl_ca_file`, `ssl_cert_file` and
    /// `ssl_key_file`, where its own query gives none (oslo.messaging's precedence: the
    /// URL's query wins); the files count only with `ssl` on, as in oslo.messaging. A
    /// malformed `transport_url` or `ssl` is an error (password hidden).
    ///
    /// ```
    /// use osprofiler::config::Ini;
    /// use osprofiler_store::Options;
    /// let ini = Ini::parse("[DEFAULT]\ntransport_url = rabbit://nova:pw@mq:5672/\ncontrol_exchange = nova\n").unwrap();
    /// let o = Options::default().with_oslo_messaging(&ini).unwrap();
    /// assert_eq!(o.transport_url.unwrap().to_string(), "rabbit://nova:***@mq:5672/");
    /// assert_eq!(o.control_exchange, "nova");
    ///
    /// // TLS with a client certificate, as nova.conf says it to oslo.messaging.
    /// let ini = Ini::parse(
    ///     "[DEFAULT]\ntransport_url = rabbit://nova:pw@mq:5671/\n\
    ///      [oslo_messaging_rabbit]\nssl = true\nssl_ca_file = /etc/nova/ca.pem\n\
    ///      ssl_cert_file = /etc/nova/client.pem\nssl_key_file = /etc/nova/client.key\n",
    /// )
    /// .unwrap();
    /// let url = Options::default().with_oslo_messaging(&ini).unwrap().transport_url.unwrap();
    /// assert!(url.tls);
    /// assert_eq!(url.ca_file.unwrap().to_str(), Some("/etc/nova/ca.pem"));
    /// assert_eq!(url.cert_file.unwrap().to_str(), Some("/etc/nova/client.pem"));
    /// assert_eq!(url.key_file.unwrap().to_str(), Some("/etc/nova/client.key"));
    /// ```
    pub fn with_oslo_messaging(
        mut self,
        ini: &osprofiler::config::Ini,
    ) -> Result<Options, ConnectionStringError> {
        let url = ini
            .get("oslo_messaging_notifications", "transport_url")
            .or_else(|| ini.get("DEFAULT", "transport_url"))
            .filter(|u| !u.trim().is_empty());
        if let Some(url) = url {
            let rabbit = |k: &str| {
                ini.get("oslo_messaging_rabbit", k)
                    .map(str::trim)
                    .filter(|v| !v.is_empty())
            };
            // oslo.config's booleans.
            let ssl = match rabbit("ssl").map(str::to_ascii_lowercase).as_deref() {
                None | Some("false" | "0" | "no" | "off") => false,
                Some("true" | "1" | "yes" | "on") => true,
                Some(v) => {
                    return Err(ConnectionStringError::Invalid {
                        what: format!("invalid [oslo_messaging_rabbit] ssl {v:?} (true or false)"),
                        string: redact(url),
                    });
                }
            };
            let conf = transport_url::RabbitTls {
                ssl,
                ca_file: rabbit("ssl_ca_file").map(Into::into),
                cert_file: rabbit("ssl_cert_file").map(Into::into),
                key_file: rabbit("ssl_key_file").map(Into::into),
            };
            self.transport_url = Some(TransportUrl::parse_with(url, &conf)?);
        }
        if let Some(x) = ini
            .get("DEFAULT", "control_exchange")
            .filter(|x| !x.trim().is_empty())
        {
            self.control_exchange = x.trim().to_owned();
        }
        Ok(self)
    }
}

/// One stored trace, as `trace list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceSummary {
    /// The trace's base id.
    pub base_id: String,
    /// When it started (its first event's osprofiler timestamp, naive UTC).
    pub timestamp: String,
}

/// Why a store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The connection string is malformed or names no backend.
    #[error(transparent)]
    ConnectionString(#[from] ConnectionStringError),
    /// The backend only receives traces (OTLP, Jaeger): read them in Jaeger or Tempo.
    #[error(
        "{store} is write only: traces sent there are read in Jaeger, Tempo or the collector's backend; give a sqlite://, redis:// or file:// store to read them here"
    )]
    WriteOnly {
        /// Which store.
        store: String,
    },
    /// This build has no driver for the backend (or no TLS for it): a string naming it
    /// does not parse either ([`ConnectionStringError::FeatureMissing`]), but a
    /// [`ConnectionString`] can be built by hand.
    #[error("osprofiler-store was built without the `{feature}` feature: {store}")]
    FeatureMissing {
        /// Which store.
        store: String,
        /// The feature.
        feature: &'static str,
    },
    /// The backend could not be reached or opened.
    #[error("cannot open {store}: {reason}")]
    Unavailable {
        /// Which store (connection string, password hidden).
        store: String,
        /// Why.
        reason: String,
    },
}

/// Why a read failed.
#[derive(Debug, thiserror::Error)]
#[error("{store}: {reason}")]
pub struct ReadError {
    /// Which store (connection string, password hidden).
    pub store: String,
    /// Why.
    pub reason: String,
}

/// The read side of a backend.
pub trait TraceStore: Send {
    /// The stored events of trace `base_id` as stored (osprofiler's JSON text, one
    /// event per string), in any order; empty when there is no such trace.
    fn event_texts(&mut self, base_id: &str) -> Result<Vec<String>, ReadError>;

    /// The stored events of trace `base_id`, parsed; texts that are not JSON objects
    /// are skipped.
    fn events(&mut self, base_id: &str) -> Result<Vec<Value>, ReadError> {
        Ok(self
            .event_texts(base_id)?
            .iter()
            .filter_map(|t| {
                serde_json::from_str::<Value>(t)
                    .ok()
                    .filter(Value::is_object)
            })
            .collect())
    }

    /// Traces, newest first, at most `limit`.
    fn list_traces(&mut self, limit: Option<usize>) -> Result<Vec<TraceSummary>, ReadError>;

    /// Traces that contain an error, newest first, at most `limit` (Redis: those recorded
    /// while `filter_error_trace` was on, as in osprofiler; SQLite: every one).
    fn list_error_traces(&mut self, limit: Option<usize>) -> Result<Vec<TraceSummary>, ReadError>;

    /// Traces with their summaries, newest first, those `query` selects, one page.
    ///
    /// This default reads every listed trace's events (so it summarises traces any writer
    /// made, Python's included); a store that keeps summaries (SQLite, Redis, PostgreSQL, MariaDB) answers from
    /// them, and from the events for the traces whose summary is missing or incomplete.
    fn search_traces(&mut self, query: &TraceQuery) -> Result<TracePage, ReadError> {
        summary::search_by_events(self, query)
    }

    /// The report of trace `base_id`; `None` when there is no such trace. Built from
    /// the stored texts directly, with no JSON values in between.
    fn report(&mut self, base_id: &str) -> Result<Option<Report>, ReadError> {
        let texts = self.event_texts(base_id)?;
        if texts.is_empty() {
            return Ok(None);
        }
        let report = Report::from_json_texts(texts);
        Ok(if report.is_empty() {
            None
        } else {
            Some(report)
        })
    }

    /// The store, for messages (connection string, password hidden).
    fn describe(&self) -> String;
}

/// Opens the read side of a backend.
pub fn open(cs: &ConnectionString, opts: &Options) -> Result<Box<dyn TraceStore>, OpenError> {
    if let ConnectionString::Otlp(_) | ConnectionString::Jaeger(_) = cs {
        return Err(OpenError::WriteOnly {
            store: cs.to_string(),
        });
    }
    if let Some(e) = compiled_out(cs) {
        return Err(e);
    }
    match cs {
        #[cfg(feature = "sqlite")]
        ConnectionString::Sqlite { path } => sqlite::open_store(path, opts),
        #[cfg(feature = "redis")]
        ConnectionString::Redis(_)
        | ConnectionString::RedisSentinel { .. }
        | ConnectionString::RedisCluster { .. } => redis::open_store(cs, opts),
        ConnectionString::File { path } => file::open_store(path),
        #[cfg(any(feature = "postgres", feature = "mysql"))]
        ConnectionString::Sql(t) => sql::open_store_for(t, opts),
        #[cfg(feature = "messaging")]
        ConnectionString::Messaging => messaging::open_store(opts),
        // Refused above: `compiled_out` names the feature.
        #[allow(unreachable_patterns)]
        _ => {
            let _ = opts;
            Err(OpenError::FeatureMissing {
                store: cs.to_string(),
                feature: "?",
            })
        }
    }
}

/// The error for a backend (or its TLS) this build lacks, if it does.
fn compiled_out(cs: &ConnectionString) -> Option<OpenError> {
    cs.missing_feature()
        .or_else(|| cs.missing_tls())
        .map(|feature| OpenError::FeatureMissing {
            store: cs.to_string(),
            feature,
        })
}

/// Opens the read side of the first backend of `backends` that has one.
pub fn open_first_readable(
    backends: &Backends,
    opts: &Options,
) -> Result<Box<dyn TraceStore>, OpenError> {
    match backends.readable() {
        Some(cs) => open(cs, opts),
        None => Err(OpenError::WriteOnly {
            store: backends.to_string(),
        }),
    }
}

/// Opens the write side of every backend of `backends`: one sink when there is one,
/// else a sink that hands every batch to each backend's own queue and thread.
pub fn sink_all(backends: &Backends, opts: &Options) -> Result<Box<dyn Sink>, OpenError> {
    let mut sinks = Vec::with_capacity(backends.len());
    for cs in backends {
        sinks.push((cs.to_string(), sink(cs, opts)?));
    }
    if sinks.len() == 1
        && let Some((_, s)) = sinks.pop()
    {
        return Ok(s);
    }
    Ok(fan_out(sinks))
}

/// A sink that hands every batch to each of `sinks`, each on its own bounded queue and
/// thread, with its own counters ([`backend_stats`], under the name given with it).
pub fn fan_out(sinks: Vec<(String, Box<dyn Sink>)>) -> Box<dyn Sink> {
    Box::new(fanout::FanOut::new(sinks))
}

/// Opens the write side of a backend, for [`osprofiler::notifier::set_boxed_sink`].
pub fn sink(cs: &ConnectionString, opts: &Options) -> Result<Box<dyn Sink>, OpenError> {
    if let Some(e) = compiled_out(cs) {
        return Err(e);
    }
    match cs {
        #[cfg(feature = "sqlite")]
        ConnectionString::Sqlite { path } => sqlite::open_sink(path, opts),
        #[cfg(feature = "redis")]
        ConnectionString::Redis(_)
        | ConnectionString::RedisSentinel { .. }
        | ConnectionString::RedisCluster { .. } => redis::open_sink(cs, opts),
        ConnectionString::File { path } => file::open_sink(path),
        #[cfg(any(feature = "postgres", feature = "mysql"))]
        ConnectionString::Sql(t) => sql::open_sink_for(t, opts),
        #[cfg(feature = "otlp")]
        ConnectionString::Otlp(t) => otlp::open_sink(t, opts),
        #[cfg(feature = "jaeger")]
        ConnectionString::Jaeger(t) => jaeger::open_sink(t, opts),
        #[cfg(feature = "messaging")]
        ConnectionString::Messaging => messaging::open_sink(opts),
        // Refused above: `compiled_out` names the feature.
        #[allow(unreachable_patterns)]
        _ => {
            let _ = opts;
            Err(OpenError::FeatureMissing {
                store: cs.to_string(),
                feature: "?",
            })
        }
    }
}

/// The embedded default: `sqlite://<data dir>/osprofiler/traces.db`, the data dir being
/// `$XDG_DATA_HOME`, else `~/.local/share`, else the current directory.
pub fn default_connection_string() -> ConnectionString {
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."));
    ConnectionString::Sqlite {
        path: base.join("osprofiler").join("traces.db"),
    }
}

/// The backends to use: `flag` if given, else `$OSPROFILER_CONNECTION_STRING`, else the
/// configuration's `connection_string`, else the embedded default. Each may list
/// several backends. Without the `sqlite` feature there is no default: nothing given is
/// [`ConnectionStringError::FeatureMissing`].
pub fn resolve(
    flag: Option<&str>,
    conf: Option<&ProfilerConf>,
) -> Result<Backends, ConnectionStringError> {
    if let Some(s) = flag.filter(|s| !s.trim().is_empty()) {
        return s.parse();
    }
    if let Ok(s) = std::env::var(CONNECTION_STRING_ENV)
        && !s.trim().is_empty()
    {
        return s.parse();
    }
    if let Some(s) = conf.and_then(|c| c.connection_string.as_deref()) {
        return s.parse();
    }
    let default = default_connection_string();
    // Not a store that cannot be opened later (the CLI would call it empty).
    if let Some(feature) = default.missing_feature() {
        return Err(ConnectionStringError::FeatureMissing {
            feature,
            string: default.to_string(),
        });
    }
    Ok(Backends::one(default))
}

/// Why [`init_from_conf`] failed.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// The `connection_string` does not parse.
    #[error(transparent)]
    ConnectionString(#[from] ConnectionStringError),
    /// A backend could not be made.
    #[error("cannot open backend {connection_string}: {source}")]
    Backend {
        /// The backend's connection string, passwords hidden.
        connection_string: String,
        /// Why.
        #[source]
        source: OpenError,
    },
}

/// The one call that wires a service from its `[profiler]` section: osprofiler's
/// `init_from_conf` with every backend of this crate. Stamps events with
/// `project`/`service`/`host`, applies the runtime switches, and sends events to the
/// configured backends (the embedded default when none is). Keep the guard alive:
/// dropping it flushes and closes the backends.
pub fn init_from_conf(
    conf: &ProfilerConf,
    project: &str,
    service: &str,
    host: &str,
) -> Result<NotifierGuard, InitError> {
    let opts = Options::from_conf(conf);
    let cs = resolve(None, Some(conf))?;
    let sink = sink_all(&cs, &opts).map_err(|source| InitError::Backend {
        connection_string: cs.to_string(),
        source,
    })?;
    Ok(osprofiler::config::init_with_sink(
        conf, project, service, host, sink,
    ))
}

/// This crate's README (crates.io's page), its examples run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
