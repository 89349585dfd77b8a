//! oslo.messaging transport URLs (`rabbit://user:password@host:5672/vhost`), the broker
//! of `messaging://`.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::conn::ConnectionStringError;

/// AMQP's port when the URL gives none.
pub const AMQP_PORT: u16 = 5672;

/// AMQP over TLS's port when the URL gives none (`amqps://`, `?ssl=true`).
pub const AMQPS_PORT: u16 = 5671;

/// Where the message bus is: oslo.messaging's `transport_url`,
/// `rabbit://[user[:password]@]host[:port][,[user[:password]@]host[:port]…]/[vhost]`.
///
/// Several hosts are the nodes of one cluster, tried in order. A host without credentials
/// takes those of the host before it, else `guest`/`guest` (kombu's default). The virtual
/// host is the path, percent-decoded; an empty path (`…:5672/`) is RabbitMQ's default
/// virtual host `/`, as kombu takes it. Passwords never show: [`Display`](fmt::Display)
/// and [`Debug`] print `***`.
///
/// TLS (feature `tls`): `amqps://…` (kombu's spelling, port 5671 by default), or
/// `rabbit://…?ssl=true`; `ssl_ca_file=/ca.pem` (oslo.messaging's `[oslo_messaging_rabbit]`
/// option name) adds a CA to the system's roots; `ssl_cert_file=/client.pem` and
/// `ssl_key_file=/client.key` (PEM; the key may be in the certificate's file) are the
/// client's certificate, for a broker that asks for one. In a service's configuration the
/// same options of `[oslo_messaging_rabbit]` apply (see
/// [`Options::with_oslo_messaging`](crate::Options::with_oslo_messaging)). Other query
/// options (`?heartbeat=…`) are accepted and ignored.
///
/// ```
/// use osprofiler_store::TransportUrl;
/// let t: TransportUrl = "rabbit://nova:s3cret@10.0.0.1:5673,10.0.0.2/cloud".parse().unwrap();
/// assert_eq!(t.hosts.len(), 2);
/// assert_eq!(t.hosts[1].password, "s3cret"); // taken from the host before it
/// assert_eq!(t.virtual_host, "cloud");
/// assert_eq!(t.to_string(), "rabbit://nova:***@10.0.0.1:5673,nova:***@10.0.0.2:5672/cloud");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct TransportUrl {
    /// The broker's nodes, tried in order.
    pub hosts: Vec<BrokerHost>,
    /// The virtual host (`/` by default).
    pub virtual_host: String,
    /// TLS (`amqps://`, `ssl=true`).
    pub tls: bool,
    /// A CA to trust besides the system's roots (`ssl_ca_file`).
    pub ca_file: Option<PathBuf>,
    /// The client's certificate chain, PEM (`ssl_cert_file`).
    pub cert_file: Option<PathBuf>,
    /// The client's private key, PEM (`ssl_key_file`; `None`: in `cert_file`).
    pub key_file: Option<PathBuf>,
}

/// `[oslo_messaging_rabbit]`'s TLS options: what a transport URL's own query options
/// (`?ssl=…&ssl_ca_file=…`) leave unsaid, as oslo.messaging's `ConfigOptsProxy` lets the
/// URL's query override the group's options. The files count only with TLS on, as in
/// oslo.messaging.
#[derive(Debug, Clone, Default)]
pub(crate) struct RabbitTls {
    pub(crate) ssl: bool,
    pub(crate) ca_file: Option<PathBuf>,
    pub(crate) cert_file: Option<PathBuf>,
    pub(crate) key_file: Option<PathBuf>,
}

/// One node of a [`TransportUrl`].
#[derive(Clone, PartialEq, Eq)]
pub struct BrokerHost {
    /// Host name or address (IPv6 without brackets).
    pub host: String,
    /// TCP port (5672 by default).
    pub port: u16,
    /// User name (`guest` by default).
    pub username: String,
    /// Password (`guest` by default).
    pub password: String,
}

impl FromStr for TransportUrl {
    type Err = ConnectionStringError;

    fn from_str(s: &str) -> Result<TransportUrl, ConnectionStringError> {
        TransportUrl::parse_with(s, &RabbitTls::default())
    }
}

impl TransportUrl {
    /// `s` parsed, with `conf`'s TLS options where its query gives none.
    pub(crate) fn parse_with(
        s: &str,
        conf: &RabbitTls,
    ) -> Result<TransportUrl, ConnectionStringError> {
        let s = s.trim();
        let invalid = |what: String| ConnectionStringError::Invalid {
            what,
            string: crate::redact(s),
        };
        let (scheme, rest) = s
            .split_once("://")
            .ok_or_else(|| invalid("transport URL has no scheme (rabbit://…)".into()))?;
        // oslo.messaging's RabbitMQ driver ("kombu" is its old name); "amqp" is its
        // AMQP 1.0 driver, which this one does not speak.
        let amqps = match scheme.to_ascii_lowercase().as_str() {
            "rabbit" | "kombu" => false,
            "amqps" => true,
            _ => {
                return Err(invalid(format!(
                    "unsupported transport {scheme:?} (rabbit:// and amqps:// are supported)"
                )));
            }
        };
        let full = rest;
        let rest = rest.split(['?', '#']).next().unwrap_or("");
        // A raw `?` or `#` in a password ended the hosts early: refuse, quoting nothing.
        if full[rest.len()..].contains('@') {
            return Err(invalid(
                "`@` after the hosts: percent-encode `?`, `#`, `/` and `,` in a user name or password".into(),
            ));
        }
        let (mut ssl, mut ca_file, mut cert_file, mut key_file) = (None, None, None, None);
        if let Some((_, query)) = full.split_once('?') {
            let query = query.split('#').next().unwrap_or("");
            for (k, v) in crate::conn::query_pairs(query).map_err(invalid)? {
                match k.as_str() {
                    "ssl" => {
                        ssl = Some(match v.to_ascii_lowercase().as_str() {
                            "1" | "true" | "yes" | "on" => true,
                            "0" | "false" | "no" | "off" => false,
                            _ => return Err(invalid(format!("invalid ssl {v:?} (true or false)"))),
                        })
                    }
                    "ssl_ca_file" => ca_file = Some(PathBuf::from(v)),
                    "ssl_cert_file" => cert_file = Some(PathBuf::from(v)),
                    "ssl_key_file" => key_file = Some(PathBuf::from(v)),
                    _ => {}
                }
            }
        }
        let tls = amqps || ssl.unwrap_or(conf.ssl);
        for (name, given) in [
            ("ssl_ca_file", &ca_file),
            ("ssl_cert_file", &cert_file),
            ("ssl_key_file", &key_file),
        ] {
            if given.is_some() && !tls {
                return Err(invalid(format!("{name} needs TLS (amqps:// or ssl=true)")));
            }
        }
        if tls {
            ca_file = ca_file.or_else(|| conf.ca_file.clone());
            cert_file = cert_file.or_else(|| conf.cert_file.clone());
            key_file = key_file.or_else(|| conf.key_file.clone());
        }
        if key_file.is_some() && cert_file.is_none() {
            return Err(invalid("ssl_key_file needs ssl_cert_file".into()));
        }
        let default_port = if tls { AMQPS_PORT } else { AMQP_PORT };
        // The hosts end at the first `/` after the last `@` (a password holds no raw `/`:
        // oslo.messaging's own parser would cut it there too).
        let after_at = rest.rfind('@').map_or(0, |i| i + 1);
        let (netloc, vhost) = match rest[after_at..].find('/') {
            Some(i) => (&rest[..after_at + i], &rest[after_at + i + 1..]),
            None => (rest, ""),
        };
        let mut hosts: Vec<BrokerHost> = Vec::new();
        for part in netloc.split(',').filter(|p| !p.trim().is_empty()) {
            let (creds, hostport) = match part.rsplit_once('@') {
                Some((c, h)) => (Some(c), h),
                None => (None, part),
            };
            let (username, password) = match creds {
                Some(c) => {
                    let (u, p) = c.split_once(':').unwrap_or((c, ""));
                    (
                        crate::conn::percent_decode(u).map_err(invalid)?,
                        crate::conn::percent_decode(p).map_err(invalid)?,
                    )
                }
                None => hosts
                    .last()
                    .map(|h| (h.username.clone(), h.password.clone()))
                    .unwrap_or_else(|| ("guest".into(), "guest".into())),
            };
            // Not quoted: with a raw `,` in a password, a piece of it would be read as a
            // host or port.
            let (host, port) =
                crate::conn::parse_hostport(hostport, default_port).map_err(|_| {
                    invalid(
                    "invalid host or port in the transport URL (percent-encode `,` in a password)"
                        .into(),
                )
                })?;
            hosts.push(BrokerHost {
                host,
                port,
                username,
                password,
            });
        }
        if hosts.is_empty() {
            return Err(invalid("no broker host in the transport URL".into()));
        }
        let vhost = crate::conn::percent_decode(vhost).map_err(invalid)?;
        Ok(TransportUrl {
            hosts,
            virtual_host: if vhost.is_empty() { "/".into() } else { vhost },
            tls,
            ca_file,
            cert_file,
            key_file,
        })
    }
}

impl fmt::Display for TransportUrl {
    /// The URL with every password shown as `***`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.tls { "amqps://" } else { "rabbit://" })?;
        for (i, h) in self.hosts.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{h}")?;
        }
        let vhost = if self.virtual_host == "/" {
            ""
        } else {
            &self.virtual_host
        };
        write!(f, "/{vhost}")
    }
}

impl fmt::Display for BrokerHost {
    /// `user:***@host:port` (`***@host:port` without a password).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        // A lone user info (`rabbit://x@h`) is a user name to oslo.messaging, a password
        // to redis-py: hidden, as a password would be.
        if self.password.is_empty() {
            write!(f, "***@{host}:{}", self.port)
        } else {
            write!(f, "{}:***@{host}:{}", self.username, self.port)
        }
    }
}

impl fmt::Debug for TransportUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TransportUrl({self})")
    }
}

impl fmt::Debug for BrokerHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BrokerHost({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        let t: TransportUrl = "rabbit://guest:guest@127.0.0.1:5999/".parse().unwrap();
        assert_eq!(t.virtual_host, "/");
        assert_eq!(
            (t.hosts[0].host.as_str(), t.hosts[0].port),
            ("127.0.0.1", 5999)
        );
        let t: TransportUrl = "rabbit://h".parse().unwrap();
        assert_eq!(
            (
                t.hosts[0].username.as_str(),
                t.hosts[0].password.as_str(),
                t.hosts[0].port
            ),
            ("guest", "guest", 5672)
        );
        let t: TransportUrl = "rabbit://u:p%2Fw@[::1]:5673,v:q@h2/%2F?heartbeat=10"
            .parse()
            .unwrap();
        assert_eq!(t.hosts[0].password, "p/w");
        assert_eq!(t.hosts[0].host, "::1");
        assert_eq!(t.hosts[1].username, "v");
        assert_eq!(t.virtual_host, "/");
        assert_eq!(t.to_string(), "rabbit://u:***@[::1]:5673,v:***@h2:5672/");
        assert!(!t.tls);
        let t: TransportUrl = "amqps://u:p@h1,h2:5999/?ssl_ca_file=%2Fetc%2Fca.pem"
            .parse()
            .unwrap();
        assert!(t.tls);
        assert_eq!((t.hosts[0].port, t.hosts[1].port), (5671, 5999));
        assert_eq!(
            t.ca_file.as_deref(),
            Some(std::path::Path::new("/etc/ca.pem"))
        );
        assert_eq!(t.to_string(), "amqps://u:***@h1:5671,u:***@h2:5999/");
        let t: TransportUrl = "rabbit://u:p@h/?ssl=1".parse().unwrap();
        assert_eq!((t.tls, t.hosts[0].port), (true, 5671));
        assert_eq!((t.cert_file, t.key_file), (None, None));
        let t: TransportUrl = "amqps://u:p@h/?ssl_cert_file=/c.pem&ssl_key_file=/c.key"
            .parse()
            .unwrap();
        assert_eq!(t.cert_file.as_deref(), Some(std::path::Path::new("/c.pem")));
        assert_eq!(t.key_file.as_deref(), Some(std::path::Path::new("/c.key")));
    }

    /// The configuration's options where the URL's query gives none.
    #[test]
    fn the_query_wins_over_the_configuration() {
        let conf = RabbitTls {
            ssl: true,
            ca_file: Some("/conf-ca.pem".into()),
            cert_file: Some("/conf.pem".into()),
            key_file: Some("/conf.key".into()),
        };
        let t = TransportUrl::parse_with("rabbit://u:p@h/", &conf).unwrap();
        assert!(t.tls);
        assert_eq!(t.hosts[0].port, AMQPS_PORT);
        assert_eq!(t.ca_file, conf.ca_file);
        assert_eq!(
            (&t.cert_file, &t.key_file),
            (&conf.cert_file, &conf.key_file)
        );
        let t = TransportUrl::parse_with(
            "rabbit://u:p@h/?ssl_ca_file=/url-ca.pem&ssl_cert_file=/url.pem",
            &conf,
        )
        .unwrap();
        assert_eq!(t.ca_file, Some("/url-ca.pem".into()));
        assert_eq!(t.cert_file, Some("/url.pem".into()));
        assert_eq!(t.key_file, conf.key_file);
        // `ssl=false` in the URL: plain, the configuration's files unused (as oslo does).
        let t = TransportUrl::parse_with("rabbit://u:p@h/?ssl=false", &conf).unwrap();
        assert!(!t.tls);
        assert_eq!((t.ca_file, t.cert_file, t.key_file), (None, None, None));
        // TLS off in the configuration: its files are unused.
        let off = RabbitTls {
            ssl: false,
            ..conf.clone()
        };
        let t = TransportUrl::parse_with("rabbit://u:p@h/", &off).unwrap();
        assert_eq!((t.tls, t.ca_file), (false, None));
        // A key needs its certificate, from wherever the key came.
        let key_only = RabbitTls {
            cert_file: None,
            ..conf
        };
        let e = TransportUrl::parse_with("rabbit://u:pw@h/", &key_only)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("ssl_key_file needs ssl_cert_file") && !e.contains("pw"),
            "{e}"
        );
    }

    #[test]
    fn errors_hide_passwords() {
        for (s, what) in [
            ("amqp://u:pw@h", "unsupported transport \"amqp\""),
            ("rabbit://u:pw@h/?ssl=maybe", "invalid ssl \"maybe\""),
            (
                "rabbit://u:pw@h/?ssl_ca_file=/ca.pem",
                "ssl_ca_file needs TLS",
            ),
            (
                "rabbit://u:pw@h/?ssl_cert_file=/c.pem",
                "ssl_cert_file needs TLS",
            ),
            (
                "amqps://u:pw@h/?ssl_key_file=/c.key",
                "ssl_key_file needs ssl_cert_file",
            ),
            ("rabbit://u:pw@h:99999/", "invalid host or port"),
            ("rabbit://u:pw@/", "invalid host or port"),
            ("rabbit://u:p?w@h/", "`@` after the hosts"),
            ("rabbit://", "no broker host"),
            ("h:5672", "no scheme"),
        ] {
            let e = s.parse::<TransportUrl>().unwrap_err().to_string();
            assert!(e.contains(what), "{s}: {e}");
            assert!(!e.contains("pw"), "{s}: {e}");
        }
    }
}
