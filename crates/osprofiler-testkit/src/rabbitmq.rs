//! A real RabbitMQ node (Debian `rabbitmq-server`) of its own per test.

use crate::TempDir;
use crate::process::{kill_group, spawn_tethered, tethered, tethered_group};
use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command};
use std::time::{Duration, Instant};

/// Where Debian puts the broker's own start script (`/usr/sbin/rabbitmq-server` is a
/// wrapper that switches to the `rabbitmq` user and detaches the process group).
const SERVER_SCRIPT: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";
const CTL_SCRIPT: &str = "/usr/lib/rabbitmq/bin/rabbitmqctl";
const READY_TIMEOUT: Duration = Duration::from_secs(60);
const ATTEMPTS: usize = 3;

/// A private RabbitMQ node on 127.0.0.1: its own node name, AMQP port, distribution port,
/// epmd (on a port of its own, so no shared `epmd` daemon is started or left behind), and
/// data and log directories in a fresh temporary directory. Runs as the current user (root
/// in CI) with `HOME` in that directory (the Erlang cookie lives there). The node and its
/// epmd run under watchers: killed on drop, and when the test process dies without
/// unwinding. Login `guest`/`guest` (RabbitMQ allows it from loopback).
///
/// Starting takes a few seconds (the Erlang VM and the broker's boot).
///
/// ```no_run
/// use osprofiler_testkit::{need, RabbitMqServer};
///
/// let Some(mq) = need("rabbitmq-server", RabbitMqServer::start()) else { return };
/// let url = mq.transport_url(); // "rabbit://guest:guest@127.0.0.1:PORT/"
/// // ... publish and read ...
/// println!("{}", mq.ctl(&["list_queues", "name", "messages"]).unwrap());
/// ```
#[derive(Debug)]
pub struct RabbitMqServer {
    node: Option<(Child, ChildStdin)>,
    epmd: Option<(Child, ChildStdin)>,
    port: u16,
    dist_port: u16,
    epmd_port: u16,
    /// The certificates and port of the TLS listener, if any.
    tls: Option<(crate::TestCerts, u16)>,
    /// Whether the TLS listener asks for a client certificate and refuses a client without.
    mutual: bool,
    // Dropped last: the processes are killed first (see Drop).
    dir: TempDir,
}

impl RabbitMqServer {
    /// Starts a node and waits until its AMQP port answers the protocol header.
    pub fn start() -> Result<RabbitMqServer, String> {
        RabbitMqServer::start_with(None, false)
    }

    /// The same with a TLS listener too (`listeners.ssl.default` on another free port,
    /// `ssl_options` from `certs`, no client certificate asked for): [`tls_port`](Self::tls_port).
    pub fn start_tls(certs: &crate::TestCerts) -> Result<RabbitMqServer, String> {
        RabbitMqServer::start_with(Some(certs), false)
    }

    /// The same, the TLS listener verifying clients (mutual TLS): a client certificate
    /// from `certs`' CA is needed (`ssl_options.verify = verify_peer`,
    /// `fail_if_no_peer_cert = true`; the login is still `guest`'s password).
    pub fn start_mutual_tls(certs: &crate::TestCerts) -> Result<RabbitMqServer, String> {
        RabbitMqServer::start_with(Some(certs), true)
    }

    fn start_with(
        certs: Option<&crate::TestCerts>,
        mutual: bool,
    ) -> Result<RabbitMqServer, String> {
        if !Path::new(SERVER_SCRIPT).exists() {
            return Err(format!(
                "rabbitmq-server: {SERVER_SCRIPT} not found (Debian package rabbitmq-server; \
                 scripts/test-all installs it)"
            ));
        }
        let dir = TempDir::try_new()?;
        let mut server = RabbitMqServer {
            node: None,
            epmd: None,
            port: 0,
            dist_port: 0,
            epmd_port: 0,
            tls: certs.map(|c| (c.clone(), 0)),
            mutual,
            dir,
        };
        let mut last = String::new();
        for _ in 0..ATTEMPTS {
            server.port = crate::free_port();
            server.dist_port = crate::free_port();
            server.epmd_port = crate::free_port();
            if let Some((_, port)) = server.tls.as_mut() {
                *port = crate::free_port();
            }
            match server.launch() {
                Ok(()) => return Ok(server),
                Err(e) => {
                    server.stop();
                    last = e;
                }
            }
        }
        Err(last)
    }

    /// The AMQP port (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The TLS listener's port (a node from [`start_tls`](Self::start_tls)).
    pub fn tls_port(&self) -> Option<u16> {
        self.tls.as_ref().map(|t| t.1)
    }

    /// oslo.messaging's transport URL of this node: `rabbit://guest:guest@127.0.0.1:PORT/`.
    pub fn transport_url(&self) -> String {
        format!("rabbit://guest:guest@127.0.0.1:{}/", self.port)
    }

    /// The Erlang node name (`osp<PORT>@localhost`).
    pub fn node_name(&self) -> String {
        format!("osp{}@localhost", self.port)
    }

    /// Its temporary directory (data in `mnesia/`, logs in `log/`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// What the node has logged so far.
    pub fn log(&self) -> String {
        let mut out = String::new();
        for name in ["out.log", &format!("log/{}.log", self.node_name())] {
            out.push_str(&std::fs::read_to_string(self.dir.join(name)).unwrap_or_default());
        }
        out
    }

    /// Runs `rabbitmqctl -n NODE args…` (slow: a second or two, an Erlang VM of its own)
    /// and returns its output.
    pub fn ctl(&self, args: &[&str]) -> Result<String, String> {
        let mut cmd = Command::new(CTL_SCRIPT);
        cmd.arg("-n").arg(self.node_name()).args(args);
        self.env(&mut cmd);
        crate::process::run_ok("rabbitmqctl", cmd, None, Duration::from_secs(60))
    }

    /// Kills the node and its epmd at once (no clean shutdown), to test a broker that
    /// goes away. What was queued is lost (the queues are not durable).
    pub fn stop(&mut self) {
        for p in [self.node.take(), self.epmd.take()].into_iter().flatten() {
            let (mut child, stdin) = p;
            kill_group(&mut child);
            drop(stdin);
        }
    }

    /// Starts the node again on the same ports and data directory (after
    /// [`stop`](Self::stop); a running node is killed first).
    pub fn restart(&mut self) -> Result<(), String> {
        self.stop();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.launch() {
                Ok(()) => return Ok(()),
                // The old node's ports may take a moment to be free again.
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(_) => {
                    self.stop();
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }
    }

    fn env(&self, cmd: &mut Command) {
        let d = self.dir.path();
        cmd.env("HOME", d)
            .env("ERL_EPMD_PORT", self.epmd_port.to_string())
            .env("RABBITMQ_NODENAME", self.node_name())
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("RABBITMQ_MNESIA_BASE", d.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", d.join("log"))
            .env("RABBITMQ_PID_FILE", d.join("pid"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", d.join("enabled_plugins"))
            .env("RABBITMQ_CONFIG_FILE", d.join("rabbitmq"))
            .env("RABBITMQ_ADVANCED_CONFIG_FILE", d.join("advanced.config"))
            .env("RABBITMQ_CONF_ENV_FILE", d.join("rabbitmq-env.conf"))
            // Ours runs on ERL_EPMD_PORT; the node must not start a shared daemon.
            .env("RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS", "-start_epmd false")
            .env("RABBITMQ_CTL_ERL_ARGS", "-start_epmd false");
    }

    fn launch(&mut self) -> Result<(), String> {
        // The TLS listener beside the plain one (RABBITMQ_NODE_PORT), in rabbitmq.conf.
        if let Some((c, port)) = &self.tls {
            let (verify, fail) = if self.mutual {
                ("verify_peer", true)
            } else {
                ("verify_none", false)
            };
            let conf = format!(
                "listeners.ssl.default = 127.0.0.1:{port}\n\
                 ssl_options.cacertfile = {}\n\
                 ssl_options.certfile = {}\n\
                 ssl_options.keyfile = {}\n\
                 ssl_options.verify = {verify}\n\
                 ssl_options.fail_if_no_peer_cert = {fail}\n",
                c.ca.display(),
                c.cert.display(),
                c.key.display()
            );
            std::fs::write(self.dir.join("rabbitmq.conf"), conf)
                .map_err(|e| format!("rabbitmq-server: cannot write rabbitmq.conf: {e}"))?;
        }
        let log = |name: &str| -> Result<(File, File), String> {
            let f = File::create(self.dir.join(name))
                .map_err(|e| format!("rabbitmq-server: cannot create {name}: {e}"))?;
            Ok((f.try_clone().map_err(|e| e.to_string())?, f))
        };
        let epmd_log = log("epmd.log")?;
        let mut cmd = tethered("epmd-wrapper", "epmd");
        cmd.args(["-port", &self.epmd_port.to_string()])
            .env("ERL_EPMD_ADDRESS", "127.0.0.1")
            .stdout(epmd_log.0)
            .stderr(epmd_log.1);
        let epmd =
            spawn_tethered(&mut cmd).map_err(|e| crate::process::spawn_error("epmd", &cmd, &e))?;
        self.epmd = Some(epmd);
        wait_port(self.epmd_port, Duration::from_secs(5))
            .map_err(|e| format!("epmd on port {}: {e}", self.epmd_port))?;

        let out = log("out.log")?;
        let mut cmd = tethered_group("rabbitmq-wrapper", SERVER_SCRIPT);
        self.env(&mut cmd);
        cmd.stdout(out.0).stderr(out.1);
        let node = spawn_tethered(&mut cmd)
            .map_err(|e| crate::process::spawn_error("rabbitmq-server", &cmd, &e))?;
        self.node = Some(node);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some((child, _)) = self.node.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(format!(
                    "rabbitmq-server on port {} exited ({status}){}",
                    self.port,
                    crate::process::tail("log", self.log().as_bytes())
                ));
            }
            // The TLS listener starts with the plain one; it accepts connections then.
            if amqp_answers(self.port)
                && self
                    .tls
                    .as_ref()
                    .is_none_or(|t| wait_port(t.1, Duration::from_secs(5)).is_ok())
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "rabbitmq-server on port {} did not answer within {READY_TIMEOUT:?}{}",
                    self.port,
                    crate::process::tail("log", self.log().as_bytes())
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The data directory of the node, e.g. to check nothing is left (test use).
    pub fn mnesia_dir(&self) -> PathBuf {
        self.dir.join("mnesia")
    }
}

impl Drop for RabbitMqServer {
    fn drop(&mut self) {
        self.stop();
        // The VM may still be writing its files for a moment after the kill: removing
        // the directory is retried until it goes (the TempDir's own removal then has
        // nothing left to do).
        for _ in 0..100 {
            if std::fs::remove_dir_all(self.dir.path()).is_ok() || !self.dir.path().exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn wait_port(port: u16, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    loop {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() >= deadline => return Err(e.to_string()),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Whether an AMQP 0-9-1 broker answers on `port`: the protocol header gets a
/// `Connection.Start` method frame (type 1, channel 0).
fn amqp_answers(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(250)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"AMQP\x00\x00\x09\x01").is_err() {
        return false;
    }
    let mut head = [0u8; 7];
    s.read_exact(&mut head).is_ok() && head[0] == 1 && head[1..3] == [0, 0]
}
