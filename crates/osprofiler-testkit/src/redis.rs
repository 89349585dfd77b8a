//! A real redis-server child process and a tiny blocking RESP2 client.

use crate::TempDir;
use crate::process::{
    Launch, exited_early, exited_with_log, kill_group, on_free_ports, on_same_ports,
    spawn_tethered, tethered,
};
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::{Child, ChildStdin};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const READY_TIMEOUT: Duration = Duration::from_secs(5);
const IO_TIMEOUT: Duration = Duration::from_secs(10);
const PROBE_TIMEOUT: Duration = Duration::from_millis(250);
const ATTEMPTS: usize = 5;

/// A `redis-server` on 127.0.0.1 and a free port, run as a child process (not daemonized),
/// with no persistence and a fresh working directory. Killed, reaped and cleaned up on drop,
/// and also killed when the test process dies without unwinding (a static never dropped,
/// `process::exit`, SIGKILL): it runs under a watcher that holds a pipe from this process.
///
/// ```no_run
/// use osprofiler_testkit::{need, RedisServer};
///
/// let Some(redis) = need("redis-server", RedisServer::start()) else { return };
/// let url = redis.url(); // "redis://127.0.0.1:PORT", for the driver under test
/// // ... the driver writes a trace ...
/// let events = redis.cmd(&["LRANGE", "osprofiler_opt:BASE_ID", "0", "-1"]).unwrap();
/// let keys = redis.cmd(&["KEYS", "osprofiler_opt:*"]).unwrap().into_strings().unwrap();
/// ```
#[derive(Debug)]
pub struct RedisServer {
    // The server and the write end of its watcher's pipe (see `process::tethered`).
    child: Option<(Child, ChildStdin)>,
    port: u16,
    password: Option<String>,
    args: Vec<String>,
    conn: Mutex<Option<RedisConn>>,
    // Dropped last: the server is killed first (see Drop).
    dir: TempDir,
}

impl RedisServer {
    /// Starts `redis-server` from `PATH` and waits until it answers `PING`.
    pub fn start() -> Result<RedisServer, String> {
        RedisServer::start_with(&[])
    }

    /// Like [`start`](Self::start) with extra command-line arguments, e.g.
    /// `&["--requirepass", "s3cret"]` (then [`cmd`](Self::cmd) and [`connect`](Self::connect)
    /// authenticate by themselves).
    pub fn start_with(args: &[&str]) -> Result<RedisServer, String> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let password = args
            .iter()
            .position(|a| a == "--requirepass")
            .and_then(|i| args.get(i + 1))
            .cloned();
        let dir = TempDir::try_new()?;
        let mut server = RedisServer {
            child: None,
            port: 0,
            password,
            args,
            conn: Mutex::new(None),
            dir,
        };
        on_free_ports("redis-server", ATTEMPTS, || {
            server.launch(crate::free_port())
        })?;
        Ok(server)
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT` (no password in it even with `--requirepass`).
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The `--requirepass` value it was started with, if any.
    pub fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }

    /// Its working directory (a [`TempDir`]); the server's log is `redis.log` in it.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// What the server has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default()
    }

    /// Runs one command on a connection kept by this server handle and returns the reply.
    /// After an I/O error the next call opens a new connection.
    ///
    /// An error reply (`-ERR …`, `-NOAUTH …`) comes back as `Err("redis error: …")`; errors
    /// nested in arrays stay [`RespValue::Error`].
    pub fn cmd(&self, args: &[&str]) -> Result<RespValue, String> {
        self.cmd_bytes(args)
    }

    /// Like [`cmd`](Self::cmd) with binary-safe arguments.
    pub fn cmd_bytes<A: AsRef<[u8]>>(&self, args: &[A]) -> Result<RespValue, String> {
        let mut guard = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        if guard.is_none() {
            *guard = Some(self.connect()?);
        }
        let conn = guard.as_mut().expect("connected above");
        let r = conn.cmd_bytes(args);
        if let Err(RespError::Io(_)) = r {
            // Not retried (the command may have run); the next call reconnects.
            *guard = None;
        }
        r.map_err(String::from)
    }

    /// A new connection of its own (authenticated when the server has a password), e.g. for
    /// `SUBSCRIBE`/`MONITOR` or to use from another thread.
    pub fn connect(&self) -> Result<RedisConn, String> {
        RedisConn::connect(self.port, self.password.as_deref())
    }

    /// Kills the server (the port stops answering), to test a backend that goes down.
    pub fn stop(&mut self) {
        *self.conn.lock().unwrap_or_else(|e| e.into_inner()) = None;
        if let Some((mut child, stdin)) = self.child.take() {
            kill_group(&mut child);
            drop(stdin);
        }
    }

    /// Starts the server again on the same port with the same arguments (after
    /// [`stop`](Self::stop), or kills the running one first). The data is gone.
    pub fn restart(&mut self) -> Result<(), String> {
        self.stop();
        let port = self.port;
        on_same_ports(READY_TIMEOUT, || self.launch(port))
    }

    fn launch(&mut self, port: u16) -> Result<(), Launch> {
        let log_path = self.dir.join("redis.log");
        let log = File::create(&log_path)
            .and_then(|f| Ok((f.try_clone()?, f)))
            .map_err(|e| Launch::Failed(format!("redis-server: cannot create log: {e}")))?;
        let mut cmd = tethered("redis-wrapper", "redis-server");
        cmd.args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(&self.args)
            .stdout(log.0)
            .stderr(log.1);
        let (mut child, stdin) = spawn_tethered(&mut cmd).map_err(|e| {
            let mut msg = crate::process::spawn_error("redis-server", &cmd, &e);
            if e.kind() == std::io::ErrorKind::NotFound {
                msg.push_str(
                    " on PATH (Debian package redis-server; scripts/test-all installs it)",
                );
            }
            Launch::Failed(msg)
        })?;
        let pid = child.id();
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut last = String::from("no answer yet");
        loop {
            if let Some((status, log)) = exited_with_log(&mut child, &log_path) {
                // The wrapper's `exec` failed: the shell's "not found".
                if status.code() == Some(127) {
                    return Err(Launch::Failed(
                        "redis-server: `redis-server` not found on PATH (Debian package \
                         redis-server; scripts/test-all installs it)"
                            .into(),
                    ));
                }
                return Err(exited_early(
                    &format!("redis-server on port {port}"),
                    status,
                    "log",
                    &log,
                    &["Address already in use"],
                ));
            }
            if Instant::now() >= deadline {
                kill_group(&mut child);
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                return Err(Launch::Failed(format!(
                    "redis-server on port {port} did not answer PING within {READY_TIMEOUT:?} \
                     (last: {last}){}",
                    crate::process::tail("log", log.as_bytes())
                )));
            }
            // A short timeout: something else may hold the port and never answer.
            let probe = RedisConn::open(port, self.password.as_deref(), PROBE_TIMEOUT);
            match probe.and_then(|mut c| {
                c.cmd(&["PING"])?;
                c.cmd(&["INFO", "server"])?.into_string()
            }) {
                // Make sure it is our child that answers, not a server that got the port first.
                Ok(info)
                    if info
                        .lines()
                        .any(|l| l.trim_end() == format!("process_id:{pid}")) =>
                {
                    self.child = Some((child, stdin));
                    self.port = port;
                    return Ok(());
                }
                Ok(_) => {
                    kill_group(&mut child);
                    return Err(Launch::PortTaken(format!(
                        "another redis-server answered on port {port}"
                    )));
                }
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A reply in the RESP2 protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RespValue {
    /// `+OK`
    Simple(String),
    /// `-ERR …` (only seen nested in arrays: a top-level error reply is an `Err`).
    Error(String),
    /// `:42`
    Integer(i64),
    /// `$3\r\nabc`
    Bulk(Vec<u8>),
    /// `*2\r\n…`
    Array(Vec<RespValue>),
    /// `$-1` or `*-1`
    Nil,
}

impl RespValue {
    /// The text of a simple string or a UTF-8 bulk string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            RespValue::Simple(s) => Some(s),
            RespValue::Bulk(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    /// The bytes of a bulk or simple string.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            RespValue::Simple(s) => Some(s.as_bytes()),
            RespValue::Bulk(b) => Some(b),
            _ => None,
        }
    }

    /// An integer reply.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            RespValue::Integer(i) => Some(*i),
            _ => None,
        }
    }

    /// The items of an array reply.
    pub fn as_array(&self) -> Option<&[RespValue]> {
        match self {
            RespValue::Array(a) => Some(a),
            _ => None,
        }
    }

    /// Nil (missing key, empty pop).
    pub fn is_nil(&self) -> bool {
        *self == RespValue::Nil
    }

    /// A string reply as an owned `String`, or an error naming what came instead.
    pub fn into_string(self) -> Result<String, String> {
        match self {
            RespValue::Simple(s) => Ok(s),
            RespValue::Bulk(b) => String::from_utf8(b).map_err(|e| format!("not UTF-8: {e}")),
            other => Err(format!("expected a string reply, got {other:?}")),
        }
    }

    /// An array of strings (`LRANGE`, `KEYS`, `ZRANGE`, …) as `Vec<String>`; nil is empty.
    pub fn into_strings(self) -> Result<Vec<String>, String> {
        match self {
            RespValue::Array(items) => items.into_iter().map(RespValue::into_string).collect(),
            RespValue::Nil => Ok(Vec::new()),
            other => Err(format!("expected an array reply, got {other:?}")),
        }
    }
}

/// One blocking connection to a Redis server on 127.0.0.1 (10 s I/O timeouts).
#[derive(Debug)]
pub struct RedisConn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

#[derive(Debug)]
enum RespError {
    /// The connection is unusable.
    Io(String),
    /// The server answered with an error reply.
    Server(String),
}

impl From<RespError> for String {
    fn from(e: RespError) -> String {
        match e {
            RespError::Io(e) => e,
            RespError::Server(e) => format!("redis error: {e}"),
        }
    }
}

impl RedisConn {
    /// Connects to 127.0.0.1:`port`, sending `AUTH password` first when given one.
    pub fn connect(port: u16, password: Option<&str>) -> Result<RedisConn, String> {
        RedisConn::open(port, password, IO_TIMEOUT)
    }

    fn open(port: u16, password: Option<&str>, timeout: Duration) -> Result<RedisConn, String> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let stream = TcpStream::connect_timeout(&addr, timeout)
            .map_err(|e| format!("connect to redis at {addr}: {e}"))?;
        let io = |e: std::io::Error| format!("redis at {addr}: {e}");
        stream.set_read_timeout(Some(timeout)).map_err(io)?;
        stream.set_write_timeout(Some(timeout)).map_err(io)?;
        stream.set_nodelay(true).map_err(io)?;
        let writer = stream.try_clone().map_err(io)?;
        let mut conn = RedisConn {
            reader: BufReader::new(stream),
            writer,
        };
        if let Some(pw) = password {
            conn.cmd(&["AUTH", pw])?;
        }
        Ok(conn)
    }

    /// Sends one command and reads its reply; an error reply is `Err("redis error: …")`.
    pub fn cmd(&mut self, args: &[&str]) -> Result<RespValue, String> {
        self.cmd_bytes(args).map_err(String::from)
    }

    fn cmd_bytes<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Result<RespValue, RespError> {
        let mut buf = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            let a = a.as_ref();
            buf.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            buf.extend_from_slice(a);
            buf.extend_from_slice(b"\r\n");
        }
        self.writer
            .write_all(&buf)
            .map_err(|e| RespError::Io(format!("redis write: {e}")))?;
        match read_value(&mut self.reader).map_err(RespError::Io)? {
            RespValue::Error(e) => Err(RespError::Server(e)),
            v => Ok(v),
        }
    }
}

/// Reads one RESP2 value.
fn read_value(r: &mut impl BufRead) -> Result<RespValue, String> {
    let mut line = Vec::new();
    r.read_until(b'\n', &mut line)
        .map_err(|e| format!("redis read: {e}"))?;
    if line.is_empty() {
        return Err("redis read: connection closed".into());
    }
    if !line.ends_with(b"\r\n") {
        return Err(format!(
            "redis read: bad line {:?}",
            String::from_utf8_lossy(&line)
        ));
    }
    line.truncate(line.len() - 2);
    let (kind, rest) = (line[0], String::from_utf8_lossy(&line[1..]).into_owned());
    let int = |s: &str| {
        s.parse::<i64>()
            .map_err(|_| format!("redis read: bad length/integer {s:?}"))
    };
    Ok(match kind {
        b'+' => RespValue::Simple(rest),
        b'-' => RespValue::Error(rest),
        b':' => RespValue::Integer(int(&rest)?),
        b'$' => match int(&rest)? {
            -1 => RespValue::Nil,
            n if n < 0 => return Err(format!("redis read: bad bulk length {n}")),
            n => {
                let mut data = vec![0; n as usize + 2];
                r.read_exact(&mut data)
                    .map_err(|e| format!("redis read: {e}"))?;
                if !data.ends_with(b"\r\n") {
                    return Err("redis read: bulk string without CRLF".into());
                }
                data.truncate(n as usize);
                RespValue::Bulk(data)
            }
        },
        b'*' => match int(&rest)? {
            -1 => RespValue::Nil,
            n if n < 0 => return Err(format!("redis read: bad array length {n}")),
            n => RespValue::Array((0..n).map(|_| read_value(r)).collect::<Result<_, _>>()?),
        },
        other => {
            return Err(format!(
                "redis read: unknown reply type {:?}",
                other as char
            ));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::need;

    fn parse(bytes: &[u8]) -> Result<RespValue, String> {
        read_value(&mut &bytes[..])
    }

    #[test]
    fn parses_resp2() {
        use RespValue::*;
        assert_eq!(parse(b"+OK\r\n").unwrap(), Simple("OK".into()));
        assert_eq!(parse(b"-ERR bad\r\n").unwrap(), Error("ERR bad".into()));
        assert_eq!(parse(b":-12\r\n").unwrap(), Integer(-12));
        assert_eq!(parse(b"$-1\r\n").unwrap(), Nil);
        assert_eq!(parse(b"*-1\r\n").unwrap(), Nil);
        assert_eq!(parse(b"$0\r\n\r\n").unwrap(), Bulk(vec![]));
        assert_eq!(
            parse(b"$4\r\na\r\nb\r\n").unwrap(),
            Bulk(b"a\r\nb".to_vec())
        );
        assert_eq!(
            parse(b"*3\r\n$1\r\nx\r\n*1\r\n:1\r\n$-1\r\n").unwrap(),
            Array(vec![Bulk(b"x".to_vec()), Array(vec![Integer(1)]), Nil])
        );
        assert!(parse(b"").is_err());
        assert!(parse(b"$5\r\nab\r\n").is_err());
        assert!(parse(b"?x\r\n").is_err());
        assert_eq!(
            parse(b"*2\r\n$1\r\na\r\n+b\r\n")
                .unwrap()
                .into_strings()
                .unwrap(),
            ["a", "b"]
        );
    }

    #[test]
    fn set_get_list_scan() {
        let Some(redis) = need("redis-server", RedisServer::start()) else {
            return;
        };
        assert!(redis.url().ends_with(&format!(":{}", redis.port())));
        assert_eq!(redis.cmd(&["SET", "k", "v"]).unwrap().as_str(), Some("OK"));
        assert_eq!(redis.cmd(&["GET", "k"]).unwrap().as_str(), Some("v"));
        assert!(redis.cmd(&["GET", "missing"]).unwrap().is_nil());
        for e in ["a", "b", "c"] {
            redis.cmd(&["LPUSH", "osprofiler_opt:t1", e]).unwrap();
        }
        let list = redis.cmd(&["LRANGE", "osprofiler_opt:t1", "0", "-1"]);
        assert_eq!(list.unwrap().into_strings().unwrap(), ["c", "b", "a"]);
        redis
            .cmd_bytes(&[&b"SET"[..], b"bin", b"\x00\xff"])
            .unwrap();
        assert_eq!(
            redis.cmd(&["GET", "bin"]).unwrap().as_bytes(),
            Some(&b"\x00\xff"[..])
        );
        redis.cmd(&["ZADD", "idx", "2", "y", "1", "x"]).unwrap();
        let z = redis.cmd(&["ZRANGE", "idx", "0", "-1"]).unwrap();
        assert_eq!(z.into_strings().unwrap(), ["x", "y"]);
        let keys = redis.cmd(&["KEYS", "osprofiler_opt:*"]).unwrap();
        assert_eq!(keys.into_strings().unwrap(), ["osprofiler_opt:t1"]);
        let scan = redis
            .cmd(&["SCAN", "0", "MATCH", "osprofiler_opt:*", "COUNT", "100"])
            .unwrap();
        let scan = scan.as_array().unwrap();
        assert_eq!(scan.len(), 2);
        assert_eq!(
            scan[1].clone().into_strings().unwrap(),
            ["osprofiler_opt:t1"]
        );
        let err = redis.cmd(&["LPUSH", "k", "x"]).unwrap_err();
        assert!(err.starts_with("redis error: WRONGTYPE"), "{err}");
        assert_eq!(redis.cmd(&["FLUSHALL"]).unwrap().as_str(), Some("OK"));
        assert_eq!(redis.cmd(&["DBSIZE"]).unwrap().as_int(), Some(0));
        // No persistence, and its own working directory.
        let dir = redis.cmd(&["CONFIG", "GET", "dir"]).unwrap().into_strings();
        assert_eq!(
            std::path::Path::new(&dir.unwrap()[1])
                .canonicalize()
                .unwrap(),
            redis.dir().canonicalize().unwrap()
        );
        let save = redis
            .cmd(&["CONFIG", "GET", "save"])
            .unwrap()
            .into_strings();
        assert_eq!(save.unwrap(), ["save", ""]);
    }

    #[test]
    fn password_stop_restart_and_drop() {
        let Some(mut redis) = need(
            "redis-server",
            RedisServer::start_with(&["--requirepass", "s3cret"]),
        ) else {
            return;
        };
        assert_eq!(redis.password(), Some("s3cret"));
        let port = redis.port();
        // cmd() authenticates by itself; a bare connection is refused.
        assert_eq!(redis.cmd(&["PING"]).unwrap().as_str(), Some("PONG"));
        let mut bare = RedisConn::connect(port, None).unwrap();
        let err = bare.cmd(&["GET", "k"]).unwrap_err();
        assert!(err.contains("NOAUTH"), "{err}");
        assert!(RedisConn::connect(port, Some("wrong")).is_err());

        redis.stop();
        assert!(
            redis.cmd(&["PING"]).is_err(),
            "stopped server still answers"
        );
        redis.restart().unwrap();
        assert_eq!(redis.port(), port);
        assert_eq!(redis.cmd(&["PING"]).unwrap().as_str(), Some("PONG"));
        assert!(redis.log().contains("Ready to accept connections"));

        let dir = redis.dir().to_path_buf();
        drop(redis);
        assert!(TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err());
        assert!(!dir.exists());
    }

    #[test]
    fn taken_port_is_detected() {
        let Some(a) = need("redis-server", RedisServer::start()) else {
            return;
        };
        let holder = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let held = holder.local_addr().unwrap().port();
        let mut b = RedisServer {
            child: None,
            port: 0,
            password: None,
            args: Vec::new(),
            conn: Mutex::new(None),
            dir: TempDir::new(),
        };
        for port in [a.port(), held] {
            match b.launch(port) {
                Err(Launch::PortTaken(_)) => {}
                Err(Launch::Failed(e)) => panic!("port {port}: not seen as taken: {e}"),
                Ok(()) => panic!("port {port}: launched on a taken port"),
            }
        }
        assert!(b.child.is_none());
    }

    #[test]
    fn parallel_servers_get_distinct_ports() {
        let servers: Vec<_> = (0..4)
            .map(|_| std::thread::spawn(RedisServer::start))
            .map(|h| h.join().unwrap())
            .collect();
        let mut ports = Vec::new();
        for s in servers {
            let Some(s) = need("redis-server", s) else {
                return;
            };
            s.cmd(&["SET", "port", &s.port().to_string()]).unwrap();
            ports.push(s);
        }
        for s in &ports {
            let v = s.cmd(&["GET", "port"]).unwrap().into_string().unwrap();
            assert_eq!(v, s.port().to_string());
        }
    }
}
