//! A small synchronous Redis client: one TCP (or TLS) connection, `AUTH`/`SELECT` at
//! connect, pipelining (many commands written, then all replies read), and masters found
//! through Sentinel.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

#[cfg(feature = "tls")]
use rustls::{ClientConnection, StreamOwned};

use super::resp::{self, Reply, RespError, RespReader};
use super::tls::TlsSetup;

/// Why talking to Redis failed.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum ClientError {
    /// The connection failed or broke; it must be dropped.
    #[error("{message}")]
    Io {
        message: String,
        /// The peer closed or reset it (as opposed to a timeout or a refused connect).
        closed: bool,
    },
    /// The TLS handshake failed (certificate, protocol).
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    #[error("{0}")]
    Tls(String),
    /// The server answered with an error reply (`WRONGPASS …`, `ERR …`).
    #[error("{0}")]
    Server(String),
    /// No sentinel named a usable master.
    #[error("{0}")]
    Sentinel(String),
}

impl ClientError {
    /// Whether the connection is unusable after this error.
    pub(crate) fn breaks_connection(&self) -> bool {
        match self {
            ClientError::Io { .. } | ClientError::Tls(_) | ClientError::Sentinel(_) => true,
            // A replica after a failover, or a server still loading: reconnect (through
            // the sentinels) rather than keep writing there.
            ClientError::Server(m) => transient_server_error(m),
        }
    }

    /// Whether retrying later can help (a network problem), as opposed to a
    /// configuration mistake (wrong password, untrusted certificate, bad database).
    pub(crate) fn is_transient(&self) -> bool {
        match self {
            ClientError::Io { .. } | ClientError::Sentinel(_) => true,
            ClientError::Tls(_) => false,
            ClientError::Server(m) => transient_server_error(m),
        }
    }

    fn context(self, what: &str) -> ClientError {
        match self {
            ClientError::Io { message, closed } => ClientError::Io {
                message: format!("{what}: {message}"),
                closed,
            },
            ClientError::Tls(m) => ClientError::Tls(format!("{what}: {m}")),
            ClientError::Server(m) => ClientError::Server(format!("{what}: {m}")),
            ClientError::Sentinel(m) => ClientError::Sentinel(format!("{what}: {m}")),
        }
    }
}

fn transient_server_error(m: &str) -> bool {
    ["READONLY", "LOADING", "MASTERDOWN", "BUSY", "TRYAGAIN"]
        .iter()
        .any(|p| m.starts_with(p))
}

/// One line for an I/O error: "connection refused", "timed out", or the TLS error
/// ("invalid peer certificate: UnknownIssuer").
fn io_error(e: &io::Error) -> ClientError {
    use io::ErrorKind::*;
    #[cfg(feature = "tls")]
    if let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        return ClientError::Tls(format!("TLS: {tls}"));
    }
    let (message, closed) = match e.kind() {
        ConnectionRefused => ("connection refused".to_owned(), false),
        TimedOut | WouldBlock => ("timed out".to_owned(), false),
        ConnectionReset | ConnectionAborted => ("connection reset".to_owned(), true),
        BrokenPipe => ("connection closed by the server".to_owned(), true),
        UnexpectedEof => ("connection closed by the server".to_owned(), true),
        _ => (e.to_string(), false),
    };
    ClientError::Io { message, closed }
}

impl From<RespError> for ClientError {
    fn from(e: RespError) -> ClientError {
        match e {
            RespError::Io(e) => io_error(&e),
            RespError::Closed => ClientError::Io {
                message: "connection closed by the server".into(),
                closed: true,
            },
            RespError::Protocol(m) => ClientError::Io {
                message: format!("protocol error: {m}"),
                closed: false,
            },
        }
    }
}

pub(crate) enum Stream {
    Tcp(TcpStream),
    #[cfg(feature = "tls")]
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            #[cfg(feature = "tls")]
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            #[cfg(feature = "tls")]
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.flush(),
            #[cfg(feature = "tls")]
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// Commands to send in one write.
#[derive(Default)]
pub(crate) struct Pipeline {
    pub(crate) buf: Vec<u8>,
    pub(crate) len: usize,
}

impl Pipeline {
    pub(crate) fn cmd(&mut self, args: &[&[u8]]) -> &mut Pipeline {
        resp::command(&mut self.buf, args);
        self.len += 1;
        self
    }

    pub(crate) fn clear(&mut self) {
        self.buf.clear();
        self.len = 0;
    }
}

/// One connection.
pub(crate) struct Conn {
    io: RespReader<Stream>,
}

impl Conn {
    /// Connects to `host:port` (each of its addresses in turn), with `timeout` for the
    /// connect and for every read and write, and does the TLS handshake when asked.
    pub(crate) fn open(
        host: &str,
        port: u16,
        tls: Option<&TlsSetup>,
        timeout: Duration,
    ) -> Result<Conn, ClientError> {
        // A zero timeout means "block forever" nowhere in std: it is an error there.
        let timeout = timeout.max(Duration::from_millis(1));
        let addrs = (host, port)
            .to_socket_addrs()
            .map_err(|e| ClientError::Io {
                message: format!("cannot resolve {host}: {e}"),
                closed: false,
            })?;
        let mut last = None;
        let mut tcp = None;
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, timeout) {
                Ok(s) => {
                    tcp = Some(s);
                    break;
                }
                Err(e) => last = Some(io_error(&e)),
            }
        }
        #[cfg_attr(not(feature = "tls"), allow(unused_mut))]
        let Some(mut tcp) = tcp else {
            return Err(last.unwrap_or(ClientError::Io {
                message: format!("{host} has no address"),
                closed: false,
            }));
        };
        let setup = |s: &TcpStream| {
            s.set_read_timeout(Some(timeout))?;
            s.set_write_timeout(Some(timeout))?;
            // Each batch is one write followed by a wait for the replies: no Nagle delay.
            s.set_nodelay(true)
        };
        setup(&tcp).map_err(|e| io_error(&e))?;
        let stream = match tls {
            None => Stream::Tcp(tcp),
            #[cfg(not(feature = "tls"))]
            Some(t) => match *t {},
            #[cfg(feature = "tls")]
            Some(t) => {
                let mut conn = ClientConnection::new(t.config.clone(), t.server_name.clone())
                    .map_err(|e| ClientError::Tls(format!("TLS: {e}")))?;
                // Handshake now, so a certificate problem is reported at connect.
                while conn.is_handshaking() {
                    conn.complete_io(&mut tcp).map_err(|e| match io_error(&e) {
                        ClientError::Io { message, closed } => ClientError::Io {
                            message: format!("TLS handshake: {message}"),
                            closed,
                        },
                        other => other,
                    })?;
                }
                Stream::Tls(Box::new(StreamOwned::new(conn, tcp)))
            }
        };
        Ok(Conn {
            io: RespReader::new(stream),
        })
    }

    /// Writes raw, already encoded commands.
    pub(crate) fn send(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        let s = self.io.get_mut();
        s.write_all(bytes)
            .and_then(|()| s.flush())
            .map_err(|e| io_error(&e))
    }

    /// Reads the next reply (an error reply is a [`Reply::Error`]).
    pub(crate) fn read_reply(&mut self) -> Result<Reply, ClientError> {
        Ok(self.io.read()?)
    }

    /// Sends a pipeline and reads all its replies, in order.
    pub(crate) fn exec(&mut self, p: &Pipeline) -> Result<Vec<Reply>, ClientError> {
        self.send(&p.buf)?;
        (0..p.len).map(|_| self.read_reply()).collect()
    }

    /// One command, one reply; an error reply is an `Err`.
    pub(crate) fn query(&mut self, args: &[&[u8]]) -> Result<Reply, ClientError> {
        let mut p = Pipeline::default();
        p.cmd(args);
        self.send(&p.buf)?;
        match self.read_reply()? {
            Reply::Error(e) => Err(ClientError::Server(e)),
            r => Ok(r),
        }
    }

    /// `AUTH`, `SELECT` and a `PING`, in one round trip; the first error reply fails it.
    fn handshake(
        &mut self,
        username: Option<&str>,
        password: Option<&str>,
        db: u32,
    ) -> Result<(), ClientError> {
        let mut p = Pipeline::default();
        match (username, password) {
            (Some(u), Some(pw)) => p.cmd(&[b"AUTH", u.as_bytes(), pw.as_bytes()]),
            (None, Some(pw)) => p.cmd(&[b"AUTH", pw.as_bytes()]),
            _ => &mut p,
        };
        if db != 0 {
            p.cmd(&[b"SELECT", db.to_string().as_bytes()]);
        }
        p.cmd(&[b"PING"]);
        let sent_auth = password.is_some();
        for (i, r) in self.exec(&p)?.into_iter().enumerate() {
            if let Reply::Error(e) = r {
                return Err(ClientError::Server(if i == 0 && sent_auth {
                    auth_refused(&e, password)
                } else {
                    e
                }));
            }
        }
        Ok(())
    }
}

/// The server's refusal of `AUTH`, safe to show. Redis's own answers say nothing of the
/// password (`WRONGPASS invalid username-password pair…`), but a server where `AUTH` is
/// renamed or unknown (`rename-command AUTH ""`, a proxy, another product) answers
/// `ERR unknown command 'AUTH', with args beginning with: '<password>'`. Whatever follows
/// the first quote is cut, and an answer still holding four characters of the password in
/// a row is reduced to its error code.
fn auth_refused(reply: &str, password: Option<&str>) -> String {
    const CUT: &str =
        " (the rest of the server's answer to AUTH is not shown: it may quote the password)";
    let (shown, cut) = match reply.find(['\'', '"']) {
        Some(q) => (reply[..q].trim_end(), true),
        None => (reply, false),
    };
    let chars: Vec<char> = password.unwrap_or_default().chars().collect();
    let quotes_password = chars.len() >= 4
        && chars
            .windows(4)
            .any(|w| shown.contains(w.iter().collect::<String>().as_str()));
    if quotes_password || (password.is_some_and(|p| !p.is_empty() && shown.contains(p))) {
        let code = shown.split_whitespace().next().unwrap_or("ERR");
        return format!("{code}{CUT}");
    }
    if cut {
        format!("{shown}{CUT}")
    } else {
        shown.to_owned()
    }
}

/// Where the server is.
#[derive(Clone)]
pub(crate) enum Target {
    Direct {
        host: String,
        port: u16,
        tls: Option<TlsSetup>,
    },
    Sentinel {
        sentinels: Vec<(String, u16)>,
        service: String,
    },
}

/// Everything needed to (re)connect.
#[derive(Clone)]
pub(crate) struct Settings {
    pub(crate) target: Target,
    pub(crate) username: Option<String>,
    pub(crate) password: Option<String>,
    pub(crate) db: u32,
    pub(crate) timeout: Duration,
}

impl Settings {
    /// A ready connection: connected, authenticated, database selected.
    pub(crate) fn connect(&self) -> Result<Conn, ClientError> {
        match &self.target {
            Target::Direct { host, port, tls } => {
                let mut c = Conn::open(host, *port, tls.as_ref(), self.timeout)?;
                c.handshake(self.username.as_deref(), self.password.as_deref(), self.db)?;
                Ok(c)
            }
            Target::Sentinel { sentinels, service } => {
                let (host, port, via) = self.master(sentinels, service)?;
                let what = format!("master {host}:{port} (from sentinel {via})");
                let mut c =
                    Conn::open(&host, port, None, self.timeout).map_err(|e| e.context(&what))?;
                c.handshake(self.username.as_deref(), self.password.as_deref(), self.db)
                    .map_err(|e| e.context(&what))?;
                // A sentinel's answer may be stale during a failover.
                let role = c.query(&[b"ROLE"]).map_err(|e| e.context(&what))?;
                let role = role.into_array().into_iter().next();
                match role.as_ref().and_then(Reply::as_text) {
                    Some("master") => Ok(c),
                    other => Err(ClientError::Sentinel(format!(
                        "{what}: is not a master (role {})",
                        other.unwrap_or("unknown")
                    ))),
                }
            }
        }
    }

    /// Asks each sentinel in turn for the master's address.
    fn master(
        &self,
        sentinels: &[(String, u16)],
        service: &str,
    ) -> Result<(String, u16, String), ClientError> {
        let mut why = Vec::new();
        for (host, port) in sentinels {
            let at = format!("{host}:{port}");
            match self.ask_sentinel(host, *port, service) {
                Ok(Some((h, p))) => return Ok((h, p, at)),
                Ok(None) => why.push(format!("{at}: no master named {service:?}")),
                Err(e) => why.push(format!("{at}: {e}")),
            }
        }
        Err(ClientError::Sentinel(format!(
            "no sentinel gave the master {service:?}: {}",
            why.join("; ")
        )))
    }

    fn ask_sentinel(
        &self,
        host: &str,
        port: u16,
        service: &str,
    ) -> Result<Option<(String, u16)>, ClientError> {
        let mut c = Conn::open(host, port, None, self.timeout)?;
        let ask: [&[u8]; 3] = [b"SENTINEL", b"get-master-addr-by-name", service.as_bytes()];
        // redis-py sends the password to the master only; a sentinel that wants one too
        // says NOAUTH, and then gets it.
        let reply = match c.query(&ask) {
            Err(ClientError::Server(e)) if e.starts_with("NOAUTH") => {
                let Some(pw) = self.password.as_deref() else {
                    return Err(ClientError::Server(e));
                };
                c.query(&[b"AUTH", pw.as_bytes()]).map_err(|e| match e {
                    ClientError::Server(m) => ClientError::Server(auth_refused(&m, Some(pw))),
                    other => other,
                })?;
                c.query(&ask)?
            }
            other => other?,
        };
        if reply == Reply::Nil {
            return Ok(None);
        }
        let mut items = reply.into_array().into_iter();
        let host = items.next().and_then(|r| r.as_text().map(str::to_owned));
        let port = items
            .next()
            .and_then(|r| r.as_text().and_then(|p| p.parse::<u16>().ok()));
        match (host, port) {
            (Some(h), Some(p)) => Ok(Some((h, p))),
            _ => Err(ClientError::Sentinel("unexpected answer".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::auth_refused;

    #[test]
    fn auth_refusals_never_quote_the_password() {
        let wrong = "WRONGPASS invalid username-password pair or user is disabled.";
        assert_eq!(auth_refused(wrong, Some("s3cret")), wrong);
        // redis-server with `rename-command AUTH ""`, as it answers.
        let echo = "ERR unknown command 'AUTH', with args beginning with: 'my s3cret' ";
        assert_eq!(
            auth_refused(echo, Some("my s3cret")),
            "ERR unknown command (the rest of the server's answer to AUTH is not shown: it may quote the password)"
        );
        // Unquoted echoes, whole or in part: only the error code is left.
        for reply in ["ERR bad password my s3cret", "ERR bad password s3cr..."] {
            let shown = auth_refused(reply, Some("my s3cret"));
            assert!(shown.starts_with("ERR (the rest"), "{shown}");
        }
        assert_eq!(auth_refused("", Some("pw")), "");
    }
}
