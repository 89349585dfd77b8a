//! Connection strings: which backend, and where.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// A parsed connection string.
///
/// | form | backend |
/// |---|---|
/// | `sqlite:///path/to/traces.db` | embedded SQLite file (`sqlite://relative.db` is relative; SQLAlchemy's `sqlite:////abs/traces.db` is the same file as `sqlite:///abs/traces.db`, but its `sqlite:///rel.db` is `/rel.db` here) |
/// | `redis://[[user]:password@]host[:port][/db]` | Redis (port 6379, db 0 by default) |
/// | `rediss://…[?ssl_ca_certs=/ca.pem&ssl_cert_reqs=required]` | Redis over TLS |
/// | `redissentinel://[:password@]host:port[,host:port…][/db]` | Redis through Sentinel (master name from `sentinel_service_name`) |
/// | `rediscluster://[[user]:password@]host:port[,host:port…]` | a Redis Cluster (the nodes are seeds: the others are found from them) |
/// | `rediscluster://…?ssl=true[&ssl_ca_certs=/ca.pem&ssl_cert_reqs=required]` | the same over TLS (feature `tls`) |
/// | `file:///path/to/events.jsonl` | osprofiler JSON, one event per line |
/// | `otlp://host[:4318][?service_name_prefix=P&timeout=S]` | OpenTelemetry collector, OTLP over HTTP/protobuf (write only) |
/// | `otlps://host[:4318][?ca_certs=/ca.pem]` | the same over HTTPS |
/// | `otlp+grpc://host[:4317]`, `otlps+grpc://…` | OTLP over gRPC (feature `otlp-grpc`) |
/// | `jaeger://host[:6831][?max_packet_size=N]` | Jaeger agent, UDP Thrift compact (write only) |
/// | `postgresql://[user[:password]@]host[:5432][/db]`, `postgresql+psycopg2://…`, `postgres://…` | PostgreSQL, osprofiler's SQLAlchemy table `data` (feature `postgres`; db defaults to the user) |
/// | `mysql://[user[:password]@]host[:3306]/db`, `mysql+pymysql://…`, `mysql+mysqldb://…`, `mariadb://…` | MySQL or MariaDB, the same table (feature `mysql`) |
/// | `postgresql://…?sslmode=verify-full&sslrootcert=/ca.pem`, `mysql://…?ssl_ca=/ca.pem`, `?ssl_mode=REQUIRED`, … | the same over TLS (feature `tls`; see [`SqlTls`]) |
/// | `postgresql://…?sslcert=/client.pem&sslkey=/client.key`, `mysql://…?ssl_cert=/client.pem&ssl_key=/client.key` | the same with a client certificate, PEM (both files; MySQL: TLS then, as in pymysql) |
/// | `messaging://` | OpenStack notifications on RabbitMQ (feature `messaging`); the broker is the `transport_url` option, [`TransportUrl`](crate::TransportUrl) |
///
/// Several backends are a [`Backends`] list.
///
/// ```
/// use osprofiler_store::ConnectionString;
/// let c: ConnectionString = "redis://:s3cret@10.0.0.5:6380/2".parse().unwrap();
/// assert_eq!(c.to_string(), "redis://:***@10.0.0.5:6380/2"); // passwords never printed
/// let c: ConnectionString = "rediscluster://:s3cret@10.0.0.5:7000,10.0.0.6:7000".parse().unwrap();
/// assert_eq!(c.to_string(), "rediscluster://:***@10.0.0.5:7000,10.0.0.6:7000");
/// let e = "redis://localhost:abc".parse::<ConnectionString>().unwrap_err();
/// assert_eq!(e.to_string(), "invalid port \"abc\" in connection string redis://localhost:abc");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub enum ConnectionString {
    /// An SQLite database file.
    Sqlite {
        /// The file.
        path: PathBuf,
    },
    /// A Redis server.
    Redis(RedisTarget),
    /// Redis masters found through Sentinel.
    RedisSentinel {
        /// The sentinels, tried in order.
        sentinels: Vec<(String, u16)>,
        /// Password of the master (and the sentinels).
        password: Option<String>,
        /// Database number.
        db: u32,
    },
    /// A Redis Cluster, reached through any of its nodes.
    RedisCluster {
        /// Seed nodes, tried in order to learn the slot map.
        nodes: Vec<(String, u16)>,
        /// ACL user name, if any.
        username: Option<String>,
        /// Password of every node.
        password: Option<String>,
        /// TLS to every node (`ssl=true`; feature `tls`).
        tls: bool,
        /// CA bundle to trust for TLS (`ssl_ca_certs`); the system's roots otherwise.
        ca_certs: Option<PathBuf>,
        /// Whether to verify the nodes' certificates (`ssl_cert_reqs`, default required).
        verify_tls: bool,
    },
    /// A file of osprofiler JSON events, one per line.
    File {
        /// The file.
        path: PathBuf,
    },
    /// An OpenTelemetry collector (OTLP); write only.
    Otlp(OtlpTarget),
    /// A Jaeger agent (UDP, Thrift compact); write only.
    Jaeger(JaegerTarget),
    /// A PostgreSQL or MySQL/MariaDB database in osprofiler's SQLAlchemy layout.
    Sql(SqlTarget),
    /// oslo.messaging notifications on the message bus (`messaging://`): the broker is
    /// given apart, as [`Options::transport_url`](crate::Options::transport_url).
    Messaging,
}

/// Which SQL server a [`SqlTarget`] names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlDialect {
    /// PostgreSQL (`postgresql://`, port 5432).
    Postgres,
    /// MySQL or MariaDB (`mysql://`, port 3306).
    MySql,
}

/// Where an SQL database is (`postgresql://`, `mysql://` and SQLAlchemy's spellings of them).
#[derive(Clone, PartialEq, Eq)]
pub struct SqlTarget {
    /// PostgreSQL or MySQL.
    pub dialect: SqlDialect,
    /// The scheme as written, lower case (`postgresql+psycopg2`), shown again in messages.
    pub scheme: String,
    /// Host name or address (IPv6 without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// User name, if any (PostgreSQL: `postgres` when none).
    pub user: Option<String>,
    /// Password, if any.
    pub password: Option<String>,
    /// The database; `None` (PostgreSQL only): named after the user, as libpq does.
    pub database: Option<String>,
    /// TLS (`sslmode=`; MySQL's `ssl_mode=`, pymysql's `ssl=`, `ssl_ca=`).
    pub tls: SqlTls,
    /// CA bundle to verify the server against (`sslrootcert=`, `ssl_ca=`); the system's
    /// roots otherwise (MySQL: the mysql crate's bundled Mozilla roots).
    pub ca_file: Option<PathBuf>,
    /// The client's certificate chain, PEM (`sslcert=`, `ssl_cert=`), for a server that
    /// verifies its clients; always with [`key_file`](Self::key_file).
    pub cert_file: Option<PathBuf>,
    /// The client's private key, PEM (`sslkey=`, `ssl_key=`).
    pub key_file: Option<PathBuf>,
}

/// How an SQL connection uses TLS: libpq's `sslmode` values, which MySQL's `ssl_mode`
/// (`DISABLED`, `PREFERRED`, `REQUIRED`, `VERIFY_CA`, `VERIFY_IDENTITY`) and pymysql's
/// `ssl=true` / `ssl_ca=` / `ssl_check_hostname=false` map to. A CA file given with
/// `Require` makes it `VerifyCa`, as libpq and MySQL's client do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlTls {
    /// Plain TCP (`disable`, `allow`).
    Disable,
    /// TLS when the server offers it, the certificate not verified, else plain (`prefer`,
    /// libpq's default; MySQL's `PREFERRED`).
    Prefer,
    /// TLS, the certificate not verified (`require`).
    Require,
    /// TLS, the certificate's chain verified, not its host name (`verify-ca`).
    VerifyCa,
    /// TLS, the chain and the host name verified (`verify-full`).
    VerifyFull,
}

impl SqlTls {
    /// Whether the connection must be TLS (every mode but `Disable` and `Prefer`).
    pub fn required(self) -> bool {
        matches!(
            self,
            SqlTls::Require | SqlTls::VerifyCa | SqlTls::VerifyFull
        )
    }
}

/// How OTLP is carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    /// HTTP/1.1, protobuf body, `POST /v1/traces` (port 4318 by default).
    HttpProtobuf,
    /// gRPC, `TraceService/Export` (port 4317 by default).
    Grpc,
}

/// Where an OTLP collector is and how to talk to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtlpTarget {
    /// Host name or address (IPv6 without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// HTTP or gRPC.
    pub protocol: OtlpProtocol,
    /// TLS (`otlps://`).
    pub tls: bool,
    /// CA bundle to trust for TLS (`ca_certs`); the system's roots otherwise.
    pub ca_certs: Option<PathBuf>,
    /// Prefix of the service name (`service_name_prefix`, as `[profiler_otlp]`'s).
    pub service_name_prefix: Option<String>,
    /// Timeout of one export (`timeout`, seconds); the socket timeout otherwise.
    pub timeout: Option<std::time::Duration>,
}

impl OtlpTarget {
    /// The URL spans are sent to: `http[s]://host:port/v1/traces` for HTTP, the
    /// collector's root for gRPC.
    pub fn url(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let scheme = if self.tls { "https" } else { "http" };
        match self.protocol {
            OtlpProtocol::HttpProtobuf => format!("{scheme}://{host}:{}/v1/traces", self.port),
            OtlpProtocol::Grpc => format!("{scheme}://{host}:{}", self.port),
        }
    }
}

/// Where a Jaeger agent listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JaegerTarget {
    /// Host name or address (IPv6 without brackets).
    pub host: String,
    /// UDP port.
    pub port: u16,
    /// Largest datagram sent (`max_packet_size`, default 65,000 bytes).
    pub max_packet_size: usize,
    /// Prefix of the service name (`service_name_prefix`, as `[profiler_jaeger]`'s).
    pub service_name_prefix: Option<String>,
}

/// Default (and largest) datagram of the Jaeger exporter: what jaeger-client sends.
pub const JAEGER_MAX_PACKET_SIZE: usize = 65_000;

impl ConnectionString {
    /// Whether the backend can be read back (`trace show`, `trace list`): OTLP and
    /// Jaeger are write only, their traces are read in Jaeger, Tempo and the like.
    pub fn is_readable(&self) -> bool {
        !matches!(
            self,
            ConnectionString::Otlp(_) | ConnectionString::Jaeger(_)
        )
    }
}

/// Where a Redis server is and how to talk to it.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisTarget {
    /// Host name or address (IPv6 without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// ACL user name, if any.
    pub username: Option<String>,
    /// Password, if any.
    pub password: Option<String>,
    /// Database number (`SELECT`).
    pub db: u32,
    /// TLS (`rediss://`).
    pub tls: bool,
    /// CA bundle to trust for TLS (`ssl_ca_certs`); the system's roots otherwise.
    pub ca_certs: Option<PathBuf>,
    /// Whether to verify the server's certificate (`ssl_cert_reqs`, default required).
    pub verify_tls: bool,
}

/// Why a connection string was rejected. The message is one line and names
/// the string (with any password hidden).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectionStringError {
    /// No `scheme://`.
    #[error(
        "connection string {0:?} has no scheme: expected e.g. sqlite:///path/traces.db or redis://host:6379"
    )]
    NoScheme(String),
    /// A scheme no backend handles.
    #[error(
        "unsupported backend {scheme:?} in connection string {}: supported are sqlite, redis, rediss, redissentinel, rediscluster, file, otlp, otlps, otlp+grpc, jaeger, postgresql, mysql, messaging",
        on_one_line(.string)
    )]
    UnknownScheme {
        /// The scheme.
        scheme: String,
        /// The string, password hidden.
        string: String,
    },
    /// A part is malformed.
    #[error("{} in connection string {}", on_one_line(.what), on_one_line(.string))]
    Invalid {
        /// What is wrong.
        what: String,
        /// The string, password hidden.
        string: String,
    },
    /// A well-formed string whose backend (or its TLS) was compiled out of this build.
    #[error(
        "osprofiler-store was built without the `{feature}` feature: {}",
        on_one_line(.string)
    )]
    FeatureMissing {
        /// The cargo feature of osprofiler-store it needs.
        feature: &'static str,
        /// The string, password hidden.
        string: String,
    },
}

/// `s` with its control characters escaped (`\n`, `\r`): a string from a multi-line INI
/// value, say, must not break a message over lines (found by fuzzing).
fn on_one_line(s: &str) -> String {
    s.chars()
        .fold(String::with_capacity(s.len()), |mut out, c| {
            if c.is_control() {
                out.extend(c.escape_debug());
            } else {
                out.push(c);
            }
            out
        })
}

impl ConnectionStringError {
    /// The same error, naming `string` instead.
    fn naming(self, string: String) -> ConnectionStringError {
        match self {
            ConnectionStringError::NoScheme(_) => ConnectionStringError::NoScheme(string),
            ConnectionStringError::UnknownScheme { scheme, .. } => {
                ConnectionStringError::UnknownScheme { scheme, string }
            }
            ConnectionStringError::Invalid { what, .. } => {
                ConnectionStringError::Invalid { what, string }
            }
            ConnectionStringError::FeatureMissing { feature, .. } => {
                ConnectionStringError::FeatureMissing { feature, string }
            }
        }
    }
}

impl FromStr for ConnectionString {
    type Err = ConnectionStringError;

    /// Parses `s`, and refuses a backend this build lacks (after the syntax, so that a
    /// malformed string says what is wrong with it whatever the features).
    fn from_str(s: &str) -> Result<ConnectionString, ConnectionStringError> {
        let cs = ConnectionString::parse_syntax(s)?;
        match cs.missing_feature() {
            None => Ok(cs),
            Some(feature) => Err(ConnectionStringError::FeatureMissing {
                feature,
                string: redact(s.trim()),
            }),
        }
    }
}

impl ConnectionString {
    /// The cargo feature of osprofiler-store this backend's driver needs and this build
    /// lacks. `None` when it is built in.
    pub(crate) fn missing_feature(&self) -> Option<&'static str> {
        let off = |on: bool, feature: &'static str| (!on).then_some(feature);
        match self {
            ConnectionString::Sqlite { .. } => off(cfg!(feature = "sqlite"), "sqlite"),
            ConnectionString::Redis(_)
            | ConnectionString::RedisSentinel { .. }
            | ConnectionString::RedisCluster { .. } => off(cfg!(feature = "redis"), "redis"),
            ConnectionString::File { .. } => None,
            ConnectionString::Otlp(t) => match t.protocol {
                OtlpProtocol::HttpProtobuf => off(cfg!(feature = "otlp"), "otlp"),
                OtlpProtocol::Grpc => off(cfg!(feature = "otlp-grpc"), "otlp-grpc"),
            },
            ConnectionString::Jaeger(_) => off(cfg!(feature = "jaeger"), "jaeger"),
            ConnectionString::Sql(t) => match t.dialect {
                SqlDialect::Postgres => off(cfg!(feature = "postgres"), "postgres"),
                SqlDialect::MySql => off(cfg!(feature = "mysql"), "mysql"),
            },
            ConnectionString::Messaging => off(cfg!(feature = "messaging"), "messaging"),
        }
    }

    /// `Some("tls")` when the string asks for TLS (`rediss://`, `otlps://`) and this build
    /// has none: such a string parses, opening it is refused (as the SQL, cluster and
    /// `amqps://` TLS options are, by their drivers).
    pub(crate) fn missing_tls(&self) -> Option<&'static str> {
        let wanted = match self {
            ConnectionString::Redis(t) => t.tls,
            ConnectionString::Otlp(t) => t.tls,
            _ => false,
        };
        (wanted && !cfg!(feature = "tls")).then_some("tls")
    }
}

impl ConnectionString {
    /// `s` parsed whatever the features: which backend, and where.
    fn parse_syntax(s: &str) -> Result<ConnectionString, ConnectionStringError> {
        let s = s.trim();
        let (scheme, rest) = s
            .split_once("://")
            .ok_or_else(|| ConnectionStringError::NoScheme(redact(s)))?;
        let invalid = |what: String| ConnectionStringError::Invalid {
            what,
            string: redact(s),
        };
        match scheme.to_ascii_lowercase().as_str() {
            lower @ ("postgresql"
            | "postgres"
            | "postgresql+psycopg2"
            | "postgresql+psycopg"
            | "postgresql+pg8000"
            | "mysql"
            | "mysql+pymysql"
            | "mysql+mysqldb"
            | "mysql+mysqlconnector"
            | "mariadb"
            | "mariadb+pymysql"
            | "mariadb+mysqldb") => {
                let dialect = if lower.starts_with("postgres") {
                    SqlDialect::Postgres
                } else {
                    SqlDialect::MySql
                };
                let (authority, path, query) = split_url(rest);
                userinfo_in_authority(rest, authority).map_err(invalid)?;
                let (user, password, hostport) = split_sql_userinfo(authority).map_err(invalid)?;
                let default_port = match dialect {
                    SqlDialect::Postgres => 5432,
                    SqlDialect::MySql => 3306,
                };
                let (host, port) = parse_hostport(hostport, default_port).map_err(invalid)?;
                let database = percent_decode(path.trim_matches('/')).map_err(invalid)?;
                let database = match dialect {
                    _ if !database.is_empty() => Some(database),
                    // libpq's rule: the database named after the user (not repeated in
                    // messages: a lone user info may be a password, see `Display`).
                    SqlDialect::Postgres => None,
                    SqlDialect::MySql => return Err(invalid("no database name".into())),
                };
                let SqlTlsOptions {
                    tls,
                    ca_file,
                    cert_file,
                    key_file,
                } = sql_tls(dialect, query_pairs(query).map_err(invalid)?).map_err(invalid)?;
                Ok(ConnectionString::Sql(SqlTarget {
                    dialect,
                    scheme: lower.to_owned(),
                    host,
                    port,
                    user,
                    password,
                    database,
                    tls,
                    ca_file,
                    cert_file,
                    key_file,
                }))
            }
            "sqlite" => {
                let path = rest.split(['?', '#']).next().unwrap_or("");
                if path.is_empty() {
                    return Err(invalid("no database file".into()));
                }
                // `sqlite://:pa#ss@/x.db`: the path would end at the `#` and show `:pa`,
                // the `@` that hides it being cut off with the rest.
                if rest[path.len()..].contains('@') {
                    return Err(invalid(
                        "'@' after the path: write ? and # in a path as %3F and %23".into(),
                    ));
                }
                Ok(ConnectionString::Sqlite {
                    path: PathBuf::from(percent_decode(path).map_err(invalid)?),
                })
            }
            "file" => {
                if rest.is_empty() {
                    return Err(invalid("no file".into()));
                }
                Ok(ConnectionString::File {
                    path: PathBuf::from(percent_decode(rest).map_err(invalid)?),
                })
            }
            "redis" | "rediss" => {
                let tls = scheme.eq_ignore_ascii_case("rediss");
                let (authority, path, query) = split_url(rest);
                userinfo_in_authority(rest, authority).map_err(invalid)?;
                let (user, password, hostport) = split_userinfo(authority).map_err(invalid)?;
                let (host, port) = parse_hostport(hostport, 6379).map_err(invalid)?;
                let db = parse_db(path).map_err(invalid)?;
                let mut target = RedisTarget {
                    host,
                    port,
                    username: user,
                    password,
                    db,
                    tls,
                    ca_certs: None,
                    verify_tls: true,
                };
                for (k, v) in query_pairs(query).map_err(invalid)? {
                    match k.as_str() {
                        "db" => {
                            target.db = v
                                .parse()
                                .map_err(|_| invalid(format!("invalid database number {v:?}")))?
                        }
                        "ssl_ca_certs" => target.ca_certs = Some(PathBuf::from(v)),
                        "ssl_cert_reqs" => target.verify_tls = cert_reqs(&v).map_err(invalid)?,
                        // Options of redis-py we have no use for are accepted and ignored.
                        _ => {}
                    }
                }
                Ok(ConnectionString::Redis(target))
            }
            "redissentinel" => {
                let (authority, path, _query) = split_url(rest);
                userinfo_in_authority(rest, authority).map_err(invalid)?;
                let (_user, password, hosts) = split_userinfo(authority).map_err(invalid)?;
                let mut sentinels = Vec::new();
                for h in hosts.split(',').filter(|h| !h.is_empty()) {
                    sentinels.push(parse_hostport(h, 26379).map_err(invalid)?);
                }
                if sentinels.is_empty() {
                    return Err(invalid("no sentinel host".into()));
                }
                Ok(ConnectionString::RedisSentinel {
                    sentinels,
                    password,
                    db: parse_db(path).map_err(invalid)?,
                })
            }
            "rediscluster" => {
                let (authority, path, query) = split_url(rest);
                userinfo_in_authority(rest, authority).map_err(invalid)?;
                let (username, password, hosts) = split_userinfo(authority).map_err(invalid)?;
                let mut nodes = Vec::new();
                for h in hosts.split(',').filter(|h| !h.is_empty()) {
                    nodes.push(parse_hostport(h, 6379).map_err(invalid)?);
                }
                if nodes.is_empty() {
                    return Err(invalid("no cluster node".into()));
                }
                // A cluster has database 0 only.
                if parse_db(path).map_err(invalid)? != 0 {
                    return Err(invalid("a Redis Cluster has database 0 only".into()));
                }
                let (mut tls, mut ca_certs, mut verify_tls) = (false, None, true);
                for (k, v) in query_pairs(query).map_err(invalid)? {
                    match k.as_str() {
                        // redis-py's `ssl` argument: a cluster URL has no `rediss` form.
                        "ssl" => {
                            tls = match v.to_ascii_lowercase().as_str() {
                                "1" | "true" | "yes" | "on" => true,
                                "0" | "false" | "no" | "off" => false,
                                _ => {
                                    return Err(invalid(format!(
                                        "invalid ssl {v:?} (true or false)"
                                    )));
                                }
                            }
                        }
                        "ssl_ca_certs" => ca_certs = Some(PathBuf::from(v)),
                        "ssl_cert_reqs" => verify_tls = cert_reqs(&v).map_err(invalid)?,
                        _ => {}
                    }
                }
                if ca_certs.is_some() && !tls {
                    return Err(invalid("ssl_ca_certs needs TLS (ssl=true)".into()));
                }
                Ok(ConnectionString::RedisCluster {
                    nodes,
                    username,
                    password,
                    tls,
                    ca_certs,
                    verify_tls,
                })
            }
            "otlp" | "otlps" | "otlp+http" | "otlps+http" | "otlp+https" | "otlp+grpc"
            | "otlps+grpc" | "otlp+grpcs" => {
                let lower = scheme.to_ascii_lowercase();
                let tls = lower.starts_with("otlps")
                    || matches!(lower.as_str(), "otlp+https" | "otlp+grpcs");
                let protocol = if lower.contains("grpc") {
                    OtlpProtocol::Grpc
                } else {
                    OtlpProtocol::HttpProtobuf
                };
                let (authority, path, query) = split_url(rest);
                userinfo_in_authority(rest, authority).map_err(invalid)?;
                no_userinfo(authority).map_err(invalid)?;
                let default_port = match protocol {
                    OtlpProtocol::HttpProtobuf => 4318,
                    OtlpProtocol::Grpc => 4317,
                };
                let (host, port) = parse_hostport(authority, default_port).map_err(invalid)?;
                let path = path.trim_matches('/');
                if !(path.is_empty()
                    || protocol == OtlpProtocol::HttpProtobuf && path == "v1/traces")
                {
                    return Err(invalid(format!(
                        "unexpected path /{path} (spans go to /v1/traces)"
                    )));
                }
                let mut target = OtlpTarget {
                    host,
                    port,
                    protocol,
                    tls,
                    ca_certs: None,
                    service_name_prefix: None,
                    timeout: None,
                };
                for (k, v) in query_pairs(query).map_err(invalid)? {
                    match k.as_str() {
                        "service_name_prefix" => {
                            target.service_name_prefix = Some(v).filter(|v| !v.is_empty())
                        }
                        "ca_certs" | "ssl_ca_certs" => target.ca_certs = Some(PathBuf::from(v)),
                        "timeout" => target.timeout = Some(parse_seconds(&v).map_err(invalid)?),
                        _ => {
                            return Err(invalid(format!(
                                "unknown option {k:?} (otlp takes service_name_prefix, ca_certs, timeout)"
                            )));
                        }
                    }
                }
                if target.ca_certs.is_some() && !target.tls {
                    return Err(invalid("ca_certs needs TLS (otlps://)".into()));
                }
                Ok(ConnectionString::Otlp(target))
            }
            "jaeger" => {
                let (authority, path, query) = split_url(rest);
                userinfo_in_authority(rest, authority).map_err(invalid)?;
                no_userinfo(authority).map_err(invalid)?;
                if !path.trim_matches('/').is_empty() {
                    return Err(invalid(format!("unexpected path /{path}")));
                }
                let (host, port) = parse_hostport(authority, 6831).map_err(invalid)?;
                let mut target = JaegerTarget {
                    host,
                    port,
                    max_packet_size: JAEGER_MAX_PACKET_SIZE,
                    service_name_prefix: None,
                };
                for (k, v) in query_pairs(query).map_err(invalid)? {
                    match k.as_str() {
                        "service_name_prefix" => {
                            target.service_name_prefix = Some(v).filter(|v| !v.is_empty())
                        }
                        "max_packet_size" => {
                            target.max_packet_size = v
                                .parse::<usize>()
                                .ok()
                                .filter(|n| (512..=JAEGER_MAX_PACKET_SIZE).contains(n))
                                .ok_or_else(|| {
                                    invalid(format!(
                                        "invalid max_packet_size {v:?} (512 to {JAEGER_MAX_PACKET_SIZE} bytes)"
                                    ))
                                })?
                        }
                        _ => {
                            return Err(invalid(format!(
                                "unknown option {k:?} (jaeger takes service_name_prefix, max_packet_size)"
                            )));
                        }
                    }
                }
                Ok(ConnectionString::Jaeger(target))
            }
            "messaging" => {
                // Python's `messaging://` names no broker either: oslo.messaging's
                // `transport_url` does.
                if !rest.trim_matches('/').is_empty() {
                    return Err(invalid(
                        "messaging:// takes nothing after it: give the broker as the transport URL (--transport-url rabbit://user:password@host:5672/)".into(),
                    ));
                }
                Ok(ConnectionString::Messaging)
            }
            other => Err(ConnectionStringError::UnknownScheme {
                scheme: other.to_owned(),
                string: redact(s),
            }),
        }
    }
}

/// redis-py's `ssl_cert_reqs`: whether the server's certificate is verified.
fn cert_reqs(v: &str) -> Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        "required" | "cert_required" => Ok(true),
        "none" | "cert_none" => Ok(false),
        _ => Err(format!("invalid ssl_cert_reqs {v:?} (required or none)")),
    }
}

/// What an SQL URL's options say of TLS.
struct SqlTlsOptions {
    tls: SqlTls,
    ca_file: Option<PathBuf>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
}

/// The TLS mode, CA file and client certificate of an SQL URL's options, in libpq's
/// spelling (`sslmode`, `sslrootcert`, `sslcert`, `sslkey`) for PostgreSQL, MySQL's and
/// pymysql's (`ssl_mode`, `ssl`, `ssl_ca`, `ssl_check_hostname`, `ssl_cert`, `ssl_key`)
/// for MySQL. What we cannot do (`sslcrl`, `ssl_capath`) is refused, not ignored.
fn sql_tls(dialect: SqlDialect, pairs: Vec<(String, String)>) -> Result<SqlTlsOptions, String> {
    let truth = |k: &str, v: &str| match v.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(format!("invalid {k} {v:?} (true or false)")),
    };
    // Absent: libpq's default for PostgreSQL, pymysql's (no TLS) for MySQL.
    let mut mode = None;
    let mut ca_file = None;
    let mut cert_file = None;
    let mut key_file = None;
    let mut pymysql_ssl = false;
    let mut check_hostname = true;
    let mut system_roots = false;
    for (k, v) in pairs {
        match (dialect, k.as_str()) {
            (SqlDialect::Postgres, "sslmode") => {
                mode = Some(match v.as_str() {
                    "disable" | "allow" => SqlTls::Disable,
                    "prefer" => SqlTls::Prefer,
                    "require" => SqlTls::Require,
                    "verify-ca" => SqlTls::VerifyCa,
                    "verify-full" => SqlTls::VerifyFull,
                    _ => {
                        return Err(format!(
                            "invalid sslmode {v:?} (disable, allow, prefer, require, verify-ca or verify-full)"
                        ));
                    }
                })
            }
            // libpq 16's `system`: the system's roots, and the host name verified.
            (SqlDialect::Postgres, "sslrootcert") if v == "system" => system_roots = true,
            (SqlDialect::Postgres, "sslrootcert") => ca_file = Some(PathBuf::from(v)),
            (SqlDialect::MySql, "ssl_mode") => {
                mode = Some(match v.to_ascii_uppercase().as_str() {
                    "DISABLED" => SqlTls::Disable,
                    "PREFERRED" => SqlTls::Prefer,
                    "REQUIRED" => SqlTls::Require,
                    "VERIFY_CA" => SqlTls::VerifyCa,
                    "VERIFY_IDENTITY" => SqlTls::VerifyFull,
                    _ => {
                        return Err(format!(
                            "invalid ssl_mode {v:?} (DISABLED, PREFERRED, REQUIRED, VERIFY_CA or VERIFY_IDENTITY)"
                        ));
                    }
                })
            }
            (SqlDialect::MySql, "ssl") => pymysql_ssl = truth("ssl", &v)?,
            (SqlDialect::MySql, "ssl_ca") => ca_file = Some(PathBuf::from(v)),
            (SqlDialect::MySql, "ssl_check_hostname") => {
                check_hostname = truth("ssl_check_hostname", &v)?
            }
            (SqlDialect::Postgres, "sslcert") | (SqlDialect::MySql, "ssl_cert") => {
                cert_file = Some(PathBuf::from(v))
            }
            (SqlDialect::Postgres, "sslkey") | (SqlDialect::MySql, "ssl_key") => {
                key_file = Some(PathBuf::from(v))
            }
            // The other dialect's spelling: refused, so that no certificate is dropped.
            (SqlDialect::Postgres, "ssl_cert" | "ssl_key") => {
                return Err(format!(
                    "option {k:?}: PostgreSQL's is {:?}",
                    k.replace('_', "")
                ));
            }
            (SqlDialect::MySql, "sslcert" | "sslkey") => {
                return Err(format!(
                    "option {k:?}: MySQL's is {:?}",
                    k.replacen("ssl", "ssl_", 1)
                ));
            }
            (_, "ssl_capath" | "sslcrl") => {
                return Err(format!("option {k:?}: not supported"));
            }
            // The rest (charset, connect_timeout, application_name, …): SQLAlchemy's
            // driver options we have no use for.
            _ => {}
        }
    }
    // Both or neither: libpq would look for the other in ~/.postgresql, we do not.
    let (cert_name, key_name) = match dialect {
        SqlDialect::Postgres => ("sslcert", "sslkey"),
        SqlDialect::MySql => ("ssl_cert", "ssl_key"),
    };
    match (&cert_file, &key_file) {
        (Some(_), None) => return Err(format!("{cert_name} needs {key_name}")),
        (None, Some(_)) => return Err(format!("{key_name} needs {cert_name}")),
        _ => {}
    }
    let options = |tls, ca_file| SqlTlsOptions {
        tls,
        ca_file,
        cert_file: cert_file.clone(),
        key_file: key_file.clone(),
    };
    if system_roots {
        return match mode {
            None | Some(SqlTls::VerifyFull) => Ok(options(SqlTls::VerifyFull, None)),
            Some(_) => Err("sslrootcert=system needs sslmode=verify-full".into()),
        };
    }
    let mode = match (mode, dialect) {
        (Some(m), _) => m,
        // pymysql: `ssl_ca` verifies the certificate and, unless told not to, the host.
        (None, SqlDialect::MySql) if ca_file.is_some() && check_hostname => SqlTls::VerifyFull,
        (None, SqlDialect::MySql) if ca_file.is_some() => SqlTls::VerifyCa,
        // pymysql: a client certificate alone is TLS, the server's not verified.
        (None, SqlDialect::MySql) if pymysql_ssl || cert_file.is_some() => SqlTls::Require,
        (None, SqlDialect::MySql) => SqlTls::Disable,
        (None, SqlDialect::Postgres) => SqlTls::Prefer,
    };
    // A CA given: verified, as libpq's `require` with a root certificate does.
    let mode = match mode {
        SqlTls::Require if ca_file.is_some() => SqlTls::VerifyCa,
        m => m,
    };
    if ca_file.is_some() && !mode.required() {
        return Err("a CA file needs TLS (sslmode=verify-full, ssl_mode=VERIFY_IDENTITY)".into());
    }
    // `prefer` sends it when the connection is TLS, as libpq does; `disable` never would.
    if cert_file.is_some() && mode == SqlTls::Disable {
        return Err(format!(
            "{cert_name} needs TLS (sslmode=require, ssl_mode=REQUIRED)"
        ));
    }
    Ok(options(mode, ca_file))
}

/// (authority, path, query) of what follows `scheme://`.
fn split_url(rest: &str) -> (&str, &str, &str) {
    let (before_query, query) = rest.split_once('?').unwrap_or((rest, ""));
    let before_query = before_query.split('#').next().unwrap_or("");
    match before_query.find('/') {
        Some(i) => (&before_query[..i], &before_query[i + 1..], query),
        None => (before_query, "", query),
    }
}

/// Refuses an `@` past the authority. The user info then held a raw `/`, `?` or `#` that
/// ended the authority early, so a piece of the password would be read as the host, port,
/// path or query, and quoted in messages (found by fuzzing: `redis://u:pa/ss@h` said
/// `invalid port "pa"`). Nothing of it is quoted here; the string is named redacted.
fn userinfo_in_authority(rest: &str, authority: &str) -> Result<(), String> {
    match rest.get(authority.len()..) {
        Some(after) if after.contains('@') => Err(
            "`@` after the host: percent-encode `/`, `?` and `#` in a user name or password (%2F, %3F, %23)"
                .into(),
        ),
        _ => Ok(()),
    }
}

type UserInfo<'a> = (Option<String>, Option<String>, &'a str);

/// `user[:password]@host`: unlike redis-py, a lone user info is the user (libpq's and
/// SQLAlchemy's reading).
fn split_sql_userinfo(authority: &str) -> Result<UserInfo<'_>, String> {
    let Some(at) = authority.rfind('@') else {
        return Ok((None, None, authority));
    };
    let (info, hostport) = (&authority[..at], &authority[at + 1..]);
    let (user, password) = match info.split_once(':') {
        Some((u, p)) => (u, Some(percent_decode(p)?)),
        None => (info, None),
    };
    let user = Some(percent_decode(user)?).filter(|u| !u.is_empty());
    Ok((user, password, hostport))
}

fn split_userinfo(authority: &str) -> Result<UserInfo<'_>, String> {
    let Some(at) = authority.rfind('@') else {
        return Ok((None, None, authority));
    };
    let (info, hostport) = (&authority[..at], &authority[at + 1..]);
    let (user, password) = match info.split_once(':') {
        Some((u, p)) => (u, Some(p)),
        None => (info, None),
    };
    let user = Some(percent_decode(user)?).filter(|u| !u.is_empty());
    let password = match password {
        Some(p) => Some(percent_decode(p)?),
        // `redis://secret@host`: redis-py takes a lone user info as the password.
        None => user.clone(),
    };
    let user = if info.contains(':') { user } else { None };
    Ok((user, password, hostport))
}

pub(crate) fn parse_hostport(s: &str, default_port: u16) -> Result<(String, u16), String> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("unclosed [ in host {s:?}"))?;
        (h, after.strip_prefix(':'))
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    if host.is_empty() {
        return Err("no host".into());
    }
    let port = match port {
        None | Some("") => default_port,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("invalid port {p:?}"))?,
    };
    Ok((host.to_owned(), port))
}

/// OTLP and Jaeger take no credentials in the URL: refuse rather than send them in clear.
fn no_userinfo(authority: &str) -> Result<(), String> {
    if authority.contains('@') {
        return Err("credentials are not supported in this URL".into());
    }
    Ok(())
}

fn parse_seconds(v: &str) -> Result<std::time::Duration, String> {
    v.parse::<f64>()
        .ok()
        .filter(|t| t.is_finite() && *t > 0.0 && *t <= 3600.0)
        .map(std::time::Duration::from_secs_f64)
        .ok_or_else(|| format!("invalid timeout {v:?} (seconds, above 0)"))
}

fn parse_db(path: &str) -> Result<u32, String> {
    let path = path.trim_matches('/');
    if path.is_empty() {
        return Ok(0);
    }
    path.parse()
        .map_err(|_| format!("invalid database number {path:?}"))
}

pub(crate) fn query_pairs(q: &str) -> Result<Vec<(String, String)>, String> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            Ok((percent_decode(k)?, percent_decode(v)?))
        })
        .collect()
}

/// A connection string's `%XX` escapes decoded (strictly), as UTF-8.
pub(crate) fn percent_decode(s: &str) -> Result<String, String> {
    let bytes =
        osprofiler::__private::percent_decode(s.as_bytes(), true).ok_or("invalid %-escape")?;
    String::from_utf8(bytes).map_err(|_| "%-escapes that are not UTF-8".into())
}

/// The string with any password replaced by `***`, for messages; each string of a
/// list of them.
pub fn redact(s: &str) -> String {
    // Only a real list is redacted string by string: a password may hold `,x://`.
    if let Some(parts) = syntax_list(s) {
        return parts
            .into_iter()
            .map(redact_one)
            .collect::<Vec<_>>()
            .join(" ");
    }
    redact_one(s)
}

/// The strings of `s` when it is a list of two or more that each parse, whatever
/// backends this build has (what [`redact`] shows string by string); the fuzz checks
/// hold `redact` to that reading.
#[doc(hidden)]
pub fn syntax_list(s: &str) -> Option<Vec<&str>> {
    let parts = split_list(s);
    (parts.len() > 1
        && parts
            .iter()
            .all(|p| ConnectionString::parse_syntax(p).is_ok()))
    .then_some(parts)
}

fn redact_one(s: &str) -> String {
    // Whatever stands before the last `@` may hold a password, whatever characters
    // it has (`/`, spaces, `#`): hide all of it but a user name.
    let (scheme, rest) = match s.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, s),
    };
    let Some(at) = rest.rfind('@') else {
        return s.to_owned();
    };
    let info = &rest[..at];
    let shown = match info.split_once(':') {
        Some((u, _)) if scheme.is_some() && !u.contains(['/', '?', '#', ' ']) => {
            format!("{u}:***")
        }
        _ => "***".to_owned(),
    };
    match scheme {
        Some(scheme) => format!("{scheme}://{shown}@{}", &rest[at + 1..]),
        None => format!("{shown}@{}", &rest[at + 1..]),
    }
}

/// A path for messages, hidden up to its last `@` as [`redact`] hides a connection
/// string's credentials: `sqlite://u:pw@/x.db` holds the (relative) path `u:pw@/x.db`, and
/// a password written there by mistake must not show either. A real path with an `@`
/// loses its beginning in messages, nothing else.
pub(crate) fn shown_path(path: &std::path::Path) -> String {
    let text = path.display().to_string();
    match text.rfind('@') {
        Some(at) => format!("***{}", &text[at..]),
        None => text,
    }
}

impl fmt::Display for ConnectionString {
    /// The connection string, passwords shown as `***`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = |h: &str| {
            if h.contains(':') {
                format!("[{h}]")
            } else {
                h.to_owned()
            }
        };
        let auth = |user: &Option<String>, pw: &Option<String>| match (user, pw) {
            (Some(u), Some(_)) => format!("{u}:***@"),
            (None, Some(_)) => ":***@".to_owned(),
            (Some(u), None) => format!("{u}@"),
            (None, None) => String::new(),
        };
        match self {
            ConnectionString::Sqlite { path } => write!(f, "sqlite://{}", shown_path(path)),
            ConnectionString::File { path } => write!(f, "file://{}", shown_path(path)),
            ConnectionString::Redis(t) => write!(
                f,
                "{}://{}{}:{}/{}",
                if t.tls { "rediss" } else { "redis" },
                auth(&t.username, &t.password),
                host(&t.host),
                t.port,
                t.db
            ),
            ConnectionString::Otlp(t) => {
                let scheme = match (t.tls, t.protocol) {
                    (false, OtlpProtocol::HttpProtobuf) => "otlp",
                    (true, OtlpProtocol::HttpProtobuf) => "otlps",
                    (false, OtlpProtocol::Grpc) => "otlp+grpc",
                    (true, OtlpProtocol::Grpc) => "otlps+grpc",
                };
                write!(f, "{scheme}://{}:{}", host(&t.host), t.port)
            }
            ConnectionString::Jaeger(t) => write!(f, "jaeger://{}:{}", host(&t.host), t.port),
            // A lone user name is hidden too, as `redact` hides a lone user info (redis-py
            // reads it as a password), so that the two always agree.
            ConnectionString::Sql(t) => write!(
                f,
                "{}://{}{}:{}{}",
                t.scheme,
                match (&t.user, &t.password) {
                    (Some(u), Some(_)) if !u.contains(['/', '?', '#', ' ']) => format!("{u}:***@"),
                    (None, None) => String::new(),
                    _ => "***@".to_owned(),
                },
                host(&t.host),
                t.port,
                t.database
                    .as_deref()
                    .map(|d| format!("/{d}"))
                    .unwrap_or_default()
            ),
            ConnectionString::Messaging => f.write_str("messaging://"),
            ConnectionString::RedisCluster {
                nodes,
                username,
                password,
                tls,
                ..
            } => {
                let hosts: Vec<String> = nodes
                    .iter()
                    .map(|(h, p)| format!("{}:{p}", host(h)))
                    .collect();
                write!(
                    f,
                    "rediscluster://{}{}{}",
                    auth(username, password),
                    hosts.join(","),
                    if *tls { "?ssl=true" } else { "" }
                )
            }
            ConnectionString::RedisSentinel {
                sentinels,
                password,
                db,
            } => {
                let hosts: Vec<String> = sentinels
                    .iter()
                    .map(|(h, p)| format!("{}:{p}", host(h)))
                    .collect();
                write!(
                    f,
                    "redissentinel://{}{}/{}",
                    auth(&None, password),
                    hosts.join(","),
                    db
                )
            }
        }
    }
}

/// One or more backends: every event goes to each.
///
/// Parsed from connection strings separated by spaces or commas (a comma inside a
/// `redissentinel://` host list stays part of it: a new string starts only where
/// `scheme://` follows).
///
/// ```
/// use osprofiler_store::Backends;
/// let b: Backends = "redis://127.0.0.1:6379, otlp://collector:4318 jaeger://agent".parse().unwrap();
/// assert_eq!(b.to_string(), "redis://127.0.0.1:6379/0 otlp://collector:4318 jaeger://agent:6831");
/// assert!(b.readable().is_some());
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Backends(Vec<ConnectionString>);

impl Backends {
    /// One backend.
    pub fn one(cs: ConnectionString) -> Backends {
        Backends(vec![cs])
    }

    /// The backends, in the order given.
    pub fn iter(&self) -> std::slice::Iter<'_, ConnectionString> {
        self.0.iter()
    }

    /// How many there are (at least one).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false: a list holds at least one backend.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The first backend that can be read back, for `trace show` and `trace list`.
    pub fn readable(&self) -> Option<&ConnectionString> {
        self.0.iter().find(|c| c.is_readable())
    }

    /// The backends.
    pub fn into_vec(self) -> Vec<ConnectionString> {
        self.0
    }
}

impl From<ConnectionString> for Backends {
    fn from(cs: ConnectionString) -> Backends {
        Backends::one(cs)
    }
}

impl<'a> IntoIterator for &'a Backends {
    type Item = &'a ConnectionString;
    type IntoIter = std::slice::Iter<'a, ConnectionString>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl FromStr for Backends {
    type Err = ConnectionStringError;

    fn from_str(s: &str) -> Result<Backends, ConnectionStringError> {
        let parts = split_list(s);
        // Each part's error, with where the part starts in `s`.
        let parsed: Result<Vec<ConnectionString>, (usize, ConnectionStringError)> = parts
            .iter()
            .map(|p| {
                p.parse()
                    .map_err(|e| ((p.as_ptr() as usize).wrapping_sub(s.as_ptr() as usize), e))
            })
            .collect();
        let list = match parsed {
            Ok(list) => list,
            // Each part well-formed, one compiled out: a list (as `redact` judges), refused.
            Err((_, e @ ConnectionStringError::FeatureMissing { .. }))
                if parts
                    .iter()
                    .all(|p| ConnectionString::parse_syntax(p).is_ok()) =>
            {
                return Err(e);
            }
            // What looked like a list may be one string whose password holds `,x://`:
            // then it is parsed (and its error shown, password hidden) as one.
            Err((at, e)) if parts.len() > 1 && s.contains('@') => match s.parse() {
                Ok(one) => vec![one],
                // A part starting before the last `@` may be a piece of that password, which
                // its own message could quote (found by fuzzing): then the whole string's
                // message is given. Named by the whole text, hidden up to its last `@`.
                Err(whole) => {
                    let after_secrets = s.rfind('@').is_some_and(|last| at > last);
                    let e = if after_secrets { e } else { whole };
                    return Err(e.naming(redact_one(s.trim())));
                }
            },
            Err((_, e)) => return Err(e),
        };
        if list.is_empty() {
            return Err(ConnectionStringError::NoScheme(redact(s.trim())));
        }
        Ok(Backends(list))
    }
}

/// Splits a list of connection strings where whitespace or a comma is followed by
/// `scheme://`: anything else (a space in a password, the commas of a sentinel list)
/// stays inside its string.
fn split_list(s: &str) -> Vec<&str> {
    let b = s.as_bytes();
    let starts_url = |i: usize| {
        let t = &s[i..];
        t.find("://").is_some_and(|j| {
            j > 0
                && t.as_bytes()[0].is_ascii_alphabetic()
                && t[..j]
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
        })
    };
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_whitespace() || b[i] == b',' {
            let mut j = i;
            while j < b.len() && (b[j].is_ascii_whitespace() || b[j] == b',') {
                j += 1;
            }
            if j < b.len() && starts_url(j) {
                out.push(&s[start..i]);
                start = j;
            }
            i = j;
        } else {
            i += 1;
        }
    }
    out.push(&s[start..]);
    out.into_iter()
        .map(|p| p.trim_matches(|c: char| c.is_whitespace() || c == ','))
        .filter(|p| !p.is_empty())
        .collect()
}

impl fmt::Display for Backends {
    /// The strings separated by spaces, passwords shown as `***`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, c) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{c}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Backends {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Backends({self})")
    }
}

impl fmt::Debug for ConnectionString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConnectionString({self})")
    }
}

impl fmt::Debug for SqlTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlTarget")
            .field("dialect", &self.dialect)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("database", &self.database)
            .field("tls", &self.tls)
            .field("cert_file", &self.cert_file)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisTarget")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("db", &self.db)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A string parsed whatever the features (the checks of the syntax below run in any
    /// build; `compiled_out_backends_are_refused_in_one_line` checks the features).
    fn cs(s: &str) -> Result<ConnectionString, ConnectionStringError> {
        ConnectionString::parse_syntax(s)
    }

    fn redis(s: &str) -> RedisTarget {
        match cs(s).unwrap() {
            ConnectionString::Redis(t) => t,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn redis_forms() {
        let t = redis("redis://127.0.0.1");
        assert_eq!(
            (t.host.as_str(), t.port, t.db, t.tls),
            ("127.0.0.1", 6379, 0, false)
        );
        assert_eq!(t.password, None);
        let t = redis("redis://:p%40ss@h:6380/3");
        assert_eq!(
            (t.password.as_deref(), t.port, t.db),
            (Some("p@ss"), 6380, 3)
        );
        let t = redis("redis://user:pw@h/1");
        assert_eq!(
            (t.username.as_deref(), t.password.as_deref()),
            (Some("user"), Some("pw"))
        );
        let t = redis("redis://secret@h");
        assert_eq!((t.username, t.password.as_deref()), (None, Some("secret")));
        let t = redis("rediss://[::1]:7000/0?ssl_ca_certs=/tmp/ca.pem&ssl_cert_reqs=none");
        assert_eq!(
            (t.host.as_str(), t.port, t.tls, t.verify_tls),
            ("::1", 7000, true, false)
        );
        assert_eq!(t.ca_certs, Some(PathBuf::from("/tmp/ca.pem")));
        assert_eq!(redis("redis://h?db=4").db, 4);
    }

    #[test]
    fn other_forms() {
        assert_eq!(
            cs("sqlite:///var/lib/osprofiler/traces.db").unwrap(),
            ConnectionString::Sqlite {
                path: "/var/lib/osprofiler/traces.db".into()
            }
        );
        assert_eq!(
            cs("sqlite://traces.db").unwrap(),
            ConnectionString::Sqlite {
                path: "traces.db".into()
            }
        );
        assert_eq!(
            cs("file:///tmp/e.jsonl").unwrap(),
            ConnectionString::File {
                path: "/tmp/e.jsonl".into()
            }
        );
        let s: ConnectionString = cs("redissentinel://:pw@s1:26379,s2:26380/1").unwrap();
        assert_eq!(
            s,
            ConnectionString::RedisSentinel {
                sentinels: vec![("s1".into(), 26379), ("s2".into(), 26380)],
                password: Some("pw".into()),
                db: 1
            }
        );
        assert_eq!(s.to_string(), "redissentinel://:***@s1:26379,s2:26380/1");
    }

    #[test]
    fn sql_forms() {
        let sql = |s: &str| match cs(s).unwrap() {
            ConnectionString::Sql(t) => t,
            other => panic!("{other:?}"),
        };
        let t = sql("postgresql://nova:p%40ss@db.example:6543/osprofiler");
        assert_eq!(t.dialect, SqlDialect::Postgres);
        assert_eq!(
            (t.host.as_str(), t.port, t.database.as_deref()),
            ("db.example", 6543, Some("osprofiler"))
        );
        assert_eq!(
            (t.user.as_deref(), t.password.as_deref()),
            (Some("nova"), Some("p@ss"))
        );
        let t = sql("postgresql+psycopg2://nova@[::1]");
        assert_eq!((t.host.as_str(), t.port), ("::1", 5432));
        // libpq's default database: the user's name; a lone user info is the user.
        assert_eq!((t.user.as_deref(), t.password), (Some("nova"), None));
        assert_eq!(t.database, None);
        assert_eq!(sql("postgres://h/x").database.as_deref(), Some("x"));
        let t = sql("mysql+pymysql://root:pw@127.0.0.1/osprofiler?charset=utf8mb4");
        assert_eq!(
            (t.dialect, t.port, t.database.as_deref()),
            (SqlDialect::MySql, 3306, Some("osprofiler"))
        );
        assert_eq!(sql("MariaDB://u@h:3307/x").scheme, "mariadb");
        // Shown as given, password hidden; a lone user hidden as `redact` hides it.
        assert_eq!(
            cs("postgresql+psycopg2://nova:secret@h/db")
                .unwrap()
                .to_string(),
            "postgresql+psycopg2://nova:***@h:5432/db"
        );
        assert_eq!(
            cs("mysql://nova@h/db").unwrap().to_string(),
            "mysql://***@h:3306/db"
        );
        assert!(!format!("{:?}", sql("mysql://u:secret@h/db")).contains("secret"));
        assert!(cs("postgresql://h").unwrap().is_readable());
        // SQLAlchemy's absolute SQLite path, `sqlite:////abs/x.db`, is the same file.
        match cs("sqlite:////var/lib/x.db").unwrap() {
            ConnectionString::Sqlite { path } => {
                assert_eq!(path, PathBuf::from("/var/lib/x.db"))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn sql_tls_options() {
        let sql = |s: &str| match cs(s).unwrap() {
            ConnectionString::Sql(t) => (t.tls, t.ca_file.map(|p| p.display().to_string())),
            other => panic!("{other:?}"),
        };
        let ca = Some("/ca.pem".to_owned());
        for (s, want) in [
            // libpq's default, and its values.
            ("postgresql://h/db", (SqlTls::Prefer, None)),
            ("postgresql://h/db?sslmode=disable", (SqlTls::Disable, None)),
            ("postgresql://h/db?sslmode=allow", (SqlTls::Disable, None)),
            ("postgresql://h/db?sslmode=require", (SqlTls::Require, None)),
            // require with a root certificate verifies the chain, as libpq does.
            (
                "postgresql://h/db?sslmode=require&sslrootcert=/ca.pem",
                (SqlTls::VerifyCa, ca.clone()),
            ),
            (
                "postgresql://h/db?sslmode=verify-ca&sslrootcert=/ca.pem",
                (SqlTls::VerifyCa, ca.clone()),
            ),
            (
                "postgresql+psycopg2://h/db?sslmode=verify-full",
                (SqlTls::VerifyFull, None),
            ),
            (
                "postgresql://h/db?sslrootcert=system",
                (SqlTls::VerifyFull, None),
            ),
            // pymysql: nothing by default; ssl_ca verifies the host too unless told not to.
            ("mysql://h/db", (SqlTls::Disable, None)),
            ("mysql+pymysql://h/db?ssl=true", (SqlTls::Require, None)),
            (
                "mysql+pymysql://h/db?ssl_ca=/ca.pem",
                (SqlTls::VerifyFull, ca.clone()),
            ),
            (
                "mysql+pymysql://h/db?ssl_ca=/ca.pem&ssl_check_hostname=false",
                (SqlTls::VerifyCa, ca.clone()),
            ),
            // MySQL's ssl_mode, any case.
            ("mysql://h/db?ssl_mode=PREFERRED", (SqlTls::Prefer, None)),
            ("mysql://h/db?ssl_mode=required", (SqlTls::Require, None)),
            (
                "mysql://h/db?ssl_mode=VERIFY_CA&ssl_ca=/ca.pem",
                (SqlTls::VerifyCa, ca.clone()),
            ),
            (
                "mariadb://h/db?ssl_mode=VERIFY_IDENTITY",
                (SqlTls::VerifyFull, None),
            ),
        ] {
            assert_eq!(sql(s), want, "{s}");
        }
        assert!(cs("postgresql://h/db?sslmode=require&sslrootcert=system").is_err());
    }

    #[test]
    fn sql_client_certificates() {
        let sql = |s: &str| match cs(s).unwrap() {
            ConnectionString::Sql(t) => (t.tls, t.cert_file, t.key_file),
            other => panic!("{other:?}"),
        };
        let (c, k) = (Some(PathBuf::from("/c.pem")), Some(PathBuf::from("/c.key")));
        for (s, tls) in [
            // libpq's names; prefer (the default) sends it when the connection is TLS.
            (
                "postgresql://h/db?sslcert=/c.pem&sslkey=/c.key",
                SqlTls::Prefer,
            ),
            (
                "postgresql://h/db?sslmode=verify-full&sslcert=/c.pem&sslkey=/c.key",
                SqlTls::VerifyFull,
            ),
            // MySQL's and pymysql's: a certificate alone is TLS, as in pymysql.
            (
                "mysql+pymysql://h/db?ssl_cert=/c.pem&ssl_key=/c.key",
                SqlTls::Require,
            ),
            (
                "mysql://h/db?ssl_key=/c.key&ssl_mode=VERIFY_CA&ssl_ca=/ca.pem&ssl_cert=/c.pem",
                SqlTls::VerifyCa,
            ),
        ] {
            assert_eq!(sql(s), (tls, c.clone(), k.clone()), "{s}");
        }
        // The other dialect's names are refused, naming this one's.
        for (s, want) in [
            (
                "postgresql://h/db?ssl_cert=/c.pem",
                "option \"ssl_cert\": PostgreSQL's is \"sslcert\"",
            ),
            (
                "postgresql://h/db?ssl_key=/c.key",
                "option \"ssl_key\": PostgreSQL's is \"sslkey\"",
            ),
            (
                "mysql://h/db?sslcert=/c.pem",
                "option \"sslcert\": MySQL's is \"ssl_cert\"",
            ),
            (
                "mysql://h/db?sslkey=/c.key",
                "option \"sslkey\": MySQL's is \"ssl_key\"",
            ),
        ] {
            let e = cs(s).unwrap_err().to_string();
            assert!(e.starts_with(want), "{s}: {e}");
        }
        // Paths may show in Debug; the password never does, in Display or Debug.
        let t = cs("mysql://u:pw@h/db?ssl_cert=/c.pem&ssl_key=/c.key").unwrap();
        assert_eq!(t.to_string(), "mysql://u:***@h:3306/db");
        let ConnectionString::Sql(target) = &t else {
            panic!("{t:?}")
        };
        let d = format!("{target:?}");
        assert!(d.contains("/c.pem") && !d.contains("pw"), "{d}");
    }

    #[test]
    fn rediscluster_tls_options() {
        let c: ConnectionString = cs(
            "rediscluster://:pw@n1:7000,n2:7001?ssl=true&ssl_ca_certs=/ca.pem&ssl_cert_reqs=none",
        )
        .unwrap();
        let ConnectionString::RedisCluster {
            tls,
            ca_certs,
            verify_tls,
            ..
        } = &c
        else {
            panic!("{c:?}")
        };
        assert_eq!(
            (*tls, ca_certs.as_deref(), *verify_tls),
            (true, Some(std::path::Path::new("/ca.pem")), false)
        );
        assert_eq!(
            c.to_string(),
            "rediscluster://:***@n1:7000,n2:7001?ssl=true"
        );
    }

    #[test]
    #[cfg_attr(
        not(all(
            feature = "redis",
            feature = "otlp",
            feature = "jaeger",
            feature = "messaging"
        )),
        ignore = "a list of backends parses only with each one's feature"
    )]
    fn rediscluster_forms() {
        let c: ConnectionString = cs("rediscluster://:p%40w@n1:7000,[::1]:7001,n3").unwrap();
        assert_eq!(
            c,
            ConnectionString::RedisCluster {
                nodes: vec![
                    ("n1".into(), 7000),
                    ("::1".into(), 7001),
                    ("n3".into(), 6379)
                ],
                username: None,
                password: Some("p@w".into()),
                tls: false,
                ca_certs: None,
                verify_tls: true,
            }
        );
        assert_eq!(
            c.to_string(),
            "rediscluster://:***@n1:7000,[::1]:7001,n3:6379"
        );
        let c: ConnectionString = cs("rediscluster://u:pw@n1:7000/0").unwrap();
        assert_eq!(c.to_string(), "rediscluster://u:***@n1:7000");
        for (bad, why) in [
            ("rediscluster://", "no cluster node"),
            ("rediscluster://n1:7000/2", "database 0 only"),
            ("rediscluster://:pw@n1:0", "invalid port"),
        ] {
            let e = cs(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
            assert!(!e.contains("pw@"), "{e}");
        }
        // A list: the commas of the node list stay inside it.
        let b: Backends = "rediscluster://:pw@n1:7000,n2:7001 otlp://c"
            .parse()
            .unwrap();
        assert_eq!(
            b.to_string(),
            "rediscluster://:***@n1:7000,n2:7001 otlp://c:4318"
        );
    }

    #[test]
    fn otlp_and_jaeger_forms() {
        let otlp = |s: &str| match cs(s).unwrap() {
            ConnectionString::Otlp(t) => t,
            other => panic!("{other:?}"),
        };
        let t = otlp("otlp://localhost");
        assert_eq!(
            (t.port, t.protocol, t.tls),
            (4318, OtlpProtocol::HttpProtobuf, false)
        );
        assert_eq!(t.url(), "http://localhost:4318/v1/traces");
        let t = otlp("otlp+grpc://10.0.0.1");
        assert_eq!(
            (t.port, t.protocol, t.tls),
            (4317, OtlpProtocol::Grpc, false)
        );
        assert_eq!(t.url(), "http://10.0.0.1:4317");
        let t = otlp(
            "otlps://[::1]:4443/v1/traces?ca_certs=/etc/ca.pem&service_name_prefix=cloud&timeout=0.5",
        );
        assert_eq!((t.host.as_str(), t.port, t.tls), ("::1", 4443, true));
        assert_eq!(t.url(), "https://[::1]:4443/v1/traces");
        assert_eq!(t.ca_certs, Some(PathBuf::from("/etc/ca.pem")));
        assert_eq!(t.service_name_prefix.as_deref(), Some("cloud"));
        assert_eq!(t.timeout, Some(std::time::Duration::from_millis(500)));
        assert_eq!(
            cs("otlps+grpc://h").unwrap().to_string(),
            "otlps+grpc://h:4317"
        );
        assert!(otlp("otlp+https://h").tls);
        match cs("jaeger://localhost?max_packet_size=1400&service_name_prefix=p").unwrap() {
            ConnectionString::Jaeger(t) => {
                assert_eq!((t.port, t.max_packet_size), (6831, 1400));
                assert_eq!(t.service_name_prefix.as_deref(), Some("p"));
            }
            other => panic!("{other:?}"),
        }
        assert!(!cs("jaeger://h").unwrap().is_readable());
        assert!(cs("redis://h").unwrap().is_readable());
    }

    #[test]
    #[cfg_attr(
        not(all(
            feature = "redis",
            feature = "otlp",
            feature = "jaeger",
            feature = "messaging"
        )),
        ignore = "a list of backends parses only with each one's feature"
    )]
    fn messaging() {
        let m: ConnectionString = cs("messaging://").unwrap();
        assert_eq!(m, ConnectionString::Messaging);
        assert_eq!(m.to_string(), "messaging://");
        assert!(m.is_readable());
        let e = cs("messaging://u:pw@broker").unwrap_err();
        assert!(e.to_string().contains("--transport-url"), "{e}");
        assert!(!e.to_string().contains("pw"), "{e}");
        let b: Backends = "redis://h messaging://".parse().unwrap();
        assert_eq!(b.to_string(), "redis://h:6379/0 messaging://");
    }

    /// Every backend's string, with a password: parsed when its backend is built in, else
    /// refused in one line that names the feature and not the password; `open` and `sink`
    /// of a hand-built value refuse it the same way, and a TLS string without `tls`.
    #[test]
    fn compiled_out_backends_are_refused_in_one_line() {
        let cases: [(&str, &[&str]); 13] = [
            ("sqlite:///tmp/x.db", &["sqlite"]),
            ("redis://:s3cret@h:6379/0", &["redis"]),
            ("rediss://:s3cret@h:6379/0", &["redis", "tls"]),
            ("redissentinel://:s3cret@s1:26379", &["redis"]),
            ("rediscluster://:s3cret@n1:7000", &["redis"]),
            ("file:///tmp/e.jsonl", &[]),
            ("otlp://c:4318", &["otlp"]),
            ("otlps://c:4318", &["otlp", "tls"]),
            ("otlp+grpc://c:4317", &["otlp-grpc"]),
            ("otlps+grpc://c:4317", &["otlp-grpc", "tls"]),
            ("jaeger://a:6831", &["jaeger"]),
            ("postgresql://nova:s3cret@db/osprofiler", &["postgres"]),
            ("mysql+pymysql://nova:s3cret@db/osprofiler", &["mysql"]),
        ];
        let built: [(&str, bool); 9] = [
            ("sqlite", cfg!(feature = "sqlite")),
            ("redis", cfg!(feature = "redis")),
            ("tls", cfg!(feature = "tls")),
            ("otlp", cfg!(feature = "otlp")),
            ("otlp-grpc", cfg!(feature = "otlp-grpc")),
            ("jaeger", cfg!(feature = "jaeger")),
            ("postgres", cfg!(feature = "postgres")),
            ("mysql", cfg!(feature = "mysql")),
            ("messaging", cfg!(feature = "messaging")),
        ];
        for (s, needs) in cases
            .iter()
            .chain([("messaging://", &["messaging"][..])].iter())
        {
            let off = |f: &&&str| !built.iter().any(|(name, on)| name == *f && *on);
            // The backend's own feature refuses the string; `tls` refuses opening it.
            let missing = needs.iter().filter(|f| **f != "tls").find(off);
            let no_tls = needs.iter().find(|f| **f == "tls").filter(off);
            let syntax = ConnectionString::parse_syntax(s).unwrap();
            assert_eq!(syntax.missing_feature(), missing.copied(), "{s}");
            assert_eq!(syntax.missing_tls(), no_tls.copied(), "{s}");
            let refused = |what: &str, f: &str| {
                let opts = crate::Options::default();
                for r in [
                    crate::open(&syntax, &opts).map(|_| ()),
                    crate::sink(&syntax, &opts).map(|_| ()),
                ] {
                    match r {
                        Err(crate::OpenError::FeatureMissing { feature, store }) => {
                            assert_eq!(feature, f, "{what}");
                            assert!(!store.contains("s3cret"));
                        }
                        // OTLP and Jaeger have no read side whatever the features.
                        Err(crate::OpenError::WriteOnly { .. }) => {
                            assert!(!syntax.is_readable())
                        }
                        other => panic!("{what}: {:?}", other.map_err(|e| e.to_string())),
                    }
                }
            };
            match (s.parse::<ConnectionString>(), missing) {
                (Ok(cs), None) => {
                    assert_eq!(cs, syntax);
                    if let Some(f) = no_tls {
                        refused(s, f);
                    }
                }
                (Err(e), Some(f)) => {
                    let text = e.to_string();
                    assert_eq!(
                        text,
                        format!(
                            "osprofiler-store was built without the `{f}` feature: {}",
                            redact(s)
                        ),
                    );
                    assert!(!text.contains("s3cret") && !format!("{e:?}").contains("s3cret"));
                    assert!(matches!(e, ConnectionStringError::FeatureMissing { .. }));
                    // A list holding it is refused the same way.
                    let list = format!("file:///tmp/e.jsonl {s}");
                    assert_eq!(list.parse::<Backends>().unwrap_err().to_string(), text);
                    refused(s, f);
                }
                (r, m) => panic!("{s}: {:?}, missing {m:?}", r.map_err(|e| e.to_string())),
            }
        }
    }

    #[test]
    #[cfg_attr(
        not(all(
            feature = "redis",
            feature = "otlp",
            feature = "jaeger",
            feature = "messaging"
        )),
        ignore = "a list of backends parses only with each one's feature"
    )]
    fn lists_of_backends() {
        let b: Backends = "redissentinel://:pw@s1:26379,s2:26380/1,otlp://c:4318  jaeger://a"
            .parse()
            .unwrap();
        assert_eq!(b.len(), 3);
        assert_eq!(
            b.to_string(),
            "redissentinel://:***@s1:26379,s2:26380/1 otlp://c:4318 jaeger://a:6831"
        );
        assert!(matches!(
            b.readable(),
            Some(ConnectionString::RedisSentinel { .. })
        ));
        let only: Backends = "otlp://c jaeger://a".parse().unwrap();
        assert_eq!(only.readable(), None);
        // A space inside a password does not split the string, nor leak it.
        let one: Backends = "redis://:pa ss@h:6379".parse().unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one.to_string(), "redis://:***@h:6379/0");
        let e = "redis://h otlp://:4318".parse::<Backends>().unwrap_err();
        assert_eq!(e.to_string(), "no host in connection string otlp://:4318");
    }

    #[test]
    fn redaction_hides_every_character_of_a_password() {
        for pw in [
            "p@ss",
            "a/b#c?d",
            "sp ace",
            "ünï",
            "%41%42",
            "x:y",
            "a,otlp://b",
        ] {
            for scheme in ["redis", "rediss", "redissentinel", "mongodb"] {
                let s = format!("{scheme}://user:{pw}@host:1/0");
                let shown = redact(&s);
                assert!(!shown.contains(pw), "{s} shown as {shown}");
                let tail: String = pw.chars().skip(1).collect();
                assert!(!shown.contains(&tail), "{s} shown as {shown}");
                if let Err(e) = s.parse::<Backends>() {
                    assert!(!e.to_string().contains(&tail), "{s}: {e}");
                }
                let lone = format!("{scheme}://{pw}@host:1");
                assert!(
                    !redact(&lone).contains(pw),
                    "{lone} shown as {}",
                    redact(&lone)
                );
            }
        }
    }

    #[test]
    fn errors_are_one_line_and_hide_passwords() {
        let cases = [
            (
                "localhost:6379",
                "connection string \"localhost:6379\" has no scheme: expected e.g. sqlite:///path/traces.db or redis://host:6379",
            ),
            (
                "mongodb://u:pw@h",
                "unsupported backend \"mongodb\" in connection string mongodb://u:***@h: supported are sqlite, redis, rediss, redissentinel, rediscluster, file, otlp, otlps, otlp+grpc, jaeger, postgresql, mysql, messaging",
            ),
            (
                "redis://:pw@h:0",
                "invalid port \"0\" in connection string redis://:***@h:0",
            ),
            (
                "redis://:pw@h:99999",
                "invalid port \"99999\" in connection string redis://:***@h:99999",
            ),
            (
                "redis://h/x",
                "invalid database number \"x\" in connection string redis://h/x",
            ),
            ("redis://", "no host in connection string redis://"),
            (
                "redis://h?ssl_cert_reqs=maybe",
                "invalid ssl_cert_reqs \"maybe\" (required or none) in connection string redis://h?ssl_cert_reqs=maybe",
            ),
            (
                "sqlite://",
                "no database file in connection string sqlite://",
            ),
            (
                "redissentinel:///0",
                "no sentinel host in connection string redissentinel:///0",
            ),
            ("otlp://", "no host in connection string otlp://"),
            (
                "otlp://h:70000",
                "invalid port \"70000\" in connection string otlp://h:70000",
            ),
            (
                "otlp://h?compression=gzip",
                "unknown option \"compression\" (otlp takes service_name_prefix, ca_certs, timeout) in connection string otlp://h?compression=gzip",
            ),
            (
                "otlp://u:secret@h",
                "credentials are not supported in this URL in connection string otlp://u:***@h",
            ),
            (
                "otlp://h?ca_certs=/ca.pem",
                "ca_certs needs TLS (otlps://) in connection string otlp://h?ca_certs=/ca.pem",
            ),
            (
                "otlp://h/v2/spans",
                "unexpected path /v2/spans (spans go to /v1/traces) in connection string otlp://h/v2/spans",
            ),
            (
                "jaeger://h?max_packet_size=70000",
                "invalid max_packet_size \"70000\" (512 to 65000 bytes) in connection string jaeger://h?max_packet_size=70000",
            ),
            (
                "jaeger://h?sampler=const",
                "unknown option \"sampler\" (jaeger takes service_name_prefix, max_packet_size) in connection string jaeger://h?sampler=const",
            ),
            (
                "mysql://u:pw@h",
                "no database name in connection string mysql://u:***@h",
            ),
            (
                "postgresql://u:pw@h/db?sslmode=sometimes",
                "invalid sslmode \"sometimes\" (disable, allow, prefer, require, verify-ca or verify-full) in connection string postgresql://u:***@h/db?sslmode=sometimes",
            ),
            (
                "postgresql://u:pw@h/db?sslmode=prefer&sslrootcert=/ca.pem",
                "a CA file needs TLS (sslmode=verify-full, ssl_mode=VERIFY_IDENTITY) in connection string postgresql://u:***@h/db?sslmode=prefer&sslrootcert=/ca.pem",
            ),
            (
                "mysql://u:pw@h/db?ssl_cert=/c.pem",
                "ssl_cert needs ssl_key in connection string mysql://u:***@h/db?ssl_cert=/c.pem",
            ),
            (
                "postgresql://u:pw@h/db?sslkey=/c.key",
                "sslkey needs sslcert in connection string postgresql://u:***@h/db?sslkey=/c.key",
            ),
            (
                "postgresql://u:pw@h/db?sslmode=disable&sslcert=/c.pem&sslkey=/c.key",
                "sslcert needs TLS (sslmode=require, ssl_mode=REQUIRED) in connection string postgresql://u:***@h/db?sslmode=disable&sslcert=/c.pem&sslkey=/c.key",
            ),
            (
                "mysql://u:pw@h/db?ssl_capath=/etc/ssl",
                "option \"ssl_capath\": not supported in connection string mysql://u:***@h/db?ssl_capath=/etc/ssl",
            ),
            (
                "rediscluster://:pw@h:1?ssl_ca_certs=/ca.pem",
                "ssl_ca_certs needs TLS (ssl=true) in connection string rediscluster://:***@h:1?ssl_ca_certs=/ca.pem",
            ),
            (
                "postgresql://u:pw@h:x/db",
                "invalid port \"x\" in connection string postgresql://u:***@h:x/db",
            ),
            (
                "redis://[::1:6379",
                "unclosed [ in host \"[::1:6379\" in connection string redis://[::1:6379",
            ),
        ];
        for (input, message) in cases {
            let e = cs(input).unwrap_err();
            assert_eq!(e.to_string(), message);
            assert!(!e.to_string().contains('\n'));
        }
    }
}
