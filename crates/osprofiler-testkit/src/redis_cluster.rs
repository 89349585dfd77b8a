//! A real Redis Cluster: `redis-server --cluster-enabled yes` children on loopback,
//! joined by `redis-cli --cluster create`.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::RedisServer;

/// How long the cluster may take to form (or to fail over).
const FORM_TIMEOUT: Duration = Duration::from_secs(30);
/// `cluster-node-timeout`: a dead master is replaced about 2 s after it dies.
pub const CLUSTER_NODE_TIMEOUT_MS: u64 = 1000;

/// A Redis Cluster of `masters` masters with a replica each, every node a [`RedisServer`]
/// (its own free port, cluster bus port and temp directory; killed with the test process
/// however it ends). `cluster-node-timeout` is [`CLUSTER_NODE_TIMEOUT_MS`], so a failover
/// takes a couple of seconds.
///
/// ```no_run
/// use osprofiler_testkit::{need, RedisCluster};
///
/// let Some(cluster) = need("redis cluster", RedisCluster::start()) else { return };
/// let url = cluster.url(); // "rediscluster://127.0.0.1:P1,127.0.0.1:P2,…"
/// let owner = cluster.master_of(cluster.keyslot("osprofiler_opt:x").unwrap()).unwrap();
/// ```
#[derive(Debug)]
pub struct RedisCluster {
    /// `None` once stopped.
    nodes: Vec<Option<RedisServer>>,
    ports: Vec<u16>,
    /// Each node's TLS port, in the order of `ports` (empty without TLS).
    tls_ports: Vec<u16>,
}

/// One line of `CLUSTER NODES`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterNode {
    /// Node id.
    pub id: String,
    /// Client port.
    pub port: u16,
    /// A master (else a replica).
    pub master: bool,
    /// Flagged `fail` (or `fail?`).
    pub failed: bool,
    /// Slot ranges served (masters), as `CLUSTER NODES` prints them.
    pub slots: Vec<(u16, u16)>,
}

impl RedisCluster {
    /// Three masters and three replicas.
    pub fn start() -> Result<RedisCluster, String> {
        RedisCluster::start_with(3, 1)
    }

    /// `masters` masters with `replicas` replicas each.
    pub fn start_with(masters: usize, replicas: usize) -> Result<RedisCluster, String> {
        RedisCluster::start_nodes(masters, replicas, None)
    }

    /// The same with TLS (`--tls-port` on each node, `--tls-cluster yes`,
    /// `--tls-replication yes`, client certificates not asked for): the nodes keep their
    /// plain ports for the harness (readiness, `redis-cli --cluster create`, [`cmd_on`]);
    /// clients reach them over TLS at [`tls_url`](Self::tls_url). A node answers
    /// `CLUSTER SLOTS` over TLS with the TLS ports.
    ///
    /// [`cmd_on`]: Self::cmd_on
    pub fn start_tls(
        masters: usize,
        replicas: usize,
        certs: &crate::TestCerts,
    ) -> Result<RedisCluster, String> {
        RedisCluster::start_nodes(masters, replicas, Some(certs))
    }

    fn start_nodes(
        masters: usize,
        replicas: usize,
        certs: Option<&crate::TestCerts>,
    ) -> Result<RedisCluster, String> {
        let mut nodes = Vec::new();
        let mut tls_ports = Vec::new();
        for _ in 0..masters * (1 + replicas) {
            let bus = crate::free_port().to_string();
            let timeout = CLUSTER_NODE_TIMEOUT_MS.to_string();
            let mut tls: Vec<String> = Vec::new();
            if let Some(c) = certs {
                let port = crate::free_port();
                tls_ports.push(port);
                let path = |p: &std::path::Path| p.display().to_string();
                tls = vec![
                    "--tls-port".into(),
                    port.to_string(),
                    "--tls-cert-file".into(),
                    path(&c.cert),
                    "--tls-key-file".into(),
                    path(&c.key),
                    "--tls-ca-cert-file".into(),
                    path(&c.ca),
                    "--tls-auth-clients".into(),
                    "no".into(),
                    "--tls-cluster".into(),
                    "yes".into(),
                    "--tls-replication".into(),
                    "yes".into(),
                ];
            }
            let tls: Vec<&str> = tls.iter().map(String::as_str).collect();
            nodes.push(RedisServer::start_with(
                &[
                    &tls[..],
                    &[
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                        "--cluster-node-timeout",
                        &timeout,
                        "--cluster-port",
                        &bus,
                        // A replica takes over without waiting for its data to be fresh.
                        "--cluster-replica-validity-factor",
                        "0",
                    ],
                ]
                .concat(),
            )?);
        }
        let ports: Vec<u16> = nodes.iter().map(RedisServer::port).collect();
        let mut cmd = Command::new("redis-cli");
        cmd.arg("--cluster").arg("create");
        for p in &ports {
            cmd.arg(format!("127.0.0.1:{p}"));
        }
        cmd.args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let out = run_with_timeout(&mut cmd, FORM_TIMEOUT).map_err(|e| {
            if e.contains("No such file") || e.contains("not found") {
                format!("redis-cli: {e} (Debian package redis-tools; scripts/test-all installs it)")
            } else {
                format!("redis-cli --cluster create: {e}")
            }
        })?;
        let cluster = RedisCluster {
            nodes: nodes.into_iter().map(Some).collect(),
            ports,
            tls_ports,
        };
        if !out.contains("[OK] All 16384 slots covered") {
            return Err(format!("redis-cli --cluster create failed:\n{out}"));
        }
        cluster.wait(masters, replicas > 0)?;
        Ok(cluster)
    }

    /// `rediscluster://127.0.0.1:P1,…` with every node as a seed.
    pub fn url(&self) -> String {
        let nodes: Vec<String> = self
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        format!("rediscluster://{}", nodes.join(","))
    }

    /// `rediscluster://127.0.0.1:T1,…?ssl=true` with every node's TLS port as a seed (a
    /// cluster from [`start_tls`](Self::start_tls); add `&ssl_ca_certs=…` to trust it).
    pub fn tls_url(&self) -> String {
        let nodes: Vec<String> = self
            .tls_ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        format!("rediscluster://{}?ssl=true", nodes.join(","))
    }

    /// Every node's TLS port (empty without TLS).
    pub fn tls_ports(&self) -> &[u16] {
        &self.tls_ports
    }

    /// Every node's port (stopped ones too).
    pub fn ports(&self) -> &[u16] {
        &self.ports
    }

    /// The node on `port`, unless stopped.
    pub fn node(&self, port: u16) -> Option<&RedisServer> {
        let i = self.ports.iter().position(|&p| p == port)?;
        self.nodes[i].as_ref()
    }

    /// Runs a command on the node on `port`.
    pub fn cmd_on(&self, port: u16, args: &[&str]) -> Result<crate::RespValue, String> {
        self.node(port)
            .ok_or_else(|| format!("no running node on port {port}"))?
            .cmd(args)
    }

    /// Any running node.
    fn any(&self) -> Result<&RedisServer, String> {
        self.nodes
            .iter()
            .flatten()
            .next()
            .ok_or_else(|| "every node is stopped".to_owned())
    }

    /// `CLUSTER NODES` as a running node sees it.
    pub fn cluster_nodes(&self) -> Result<Vec<ClusterNode>, String> {
        let text = self.any()?.cmd(&["CLUSTER", "NODES"])?.into_string()?;
        Ok(parse_nodes(&text))
    }

    /// The masters' ports (not failed), by a running node's view.
    pub fn master_ports(&self) -> Result<Vec<u16>, String> {
        Ok(self
            .cluster_nodes()?
            .into_iter()
            .filter(|n| n.master && !n.failed)
            .map(|n| n.port)
            .collect())
    }

    /// `CLUSTER KEYSLOT key`.
    pub fn keyslot(&self, key: &str) -> Result<u16, String> {
        let r = self.any()?.cmd(&["CLUSTER", "KEYSLOT", key])?;
        r.as_int()
            .and_then(|s| u16::try_from(s).ok())
            .ok_or_else(|| format!("CLUSTER KEYSLOT: {r:?}"))
    }

    /// The port of the (live) master serving `slot`.
    pub fn master_of(&self, slot: u16) -> Result<u16, String> {
        self.cluster_nodes()?
            .into_iter()
            .find(|n| {
                n.master && !n.failed && n.slots.iter().any(|&(a, b)| (a..=b).contains(&slot))
            })
            .map(|n| n.port)
            .ok_or_else(|| format!("no master serves slot {slot}"))
    }

    /// The node id of the node on `port`.
    pub fn node_id(&self, port: u16) -> Result<String, String> {
        self.cmd_on(port, &["CLUSTER", "MYID"])?.into_string()
    }

    /// Kills the node on `port` (SIGKILL, as a crash).
    pub fn kill(&mut self, port: u16) {
        if let Some(i) = self.ports.iter().position(|&p| p == port)
            && let Some(mut n) = self.nodes[i].take()
        {
            n.stop();
        }
    }

    /// Waits until every running node says `cluster_state:ok` and sees `masters` live
    /// masters serving slots (e.g. after a failover).
    pub fn wait_ok(&self, masters: usize) -> Result<(), String> {
        self.wait(masters, false)
    }

    /// After [`kill`](Self::kill)ing the master on `port`: waits until every running node
    /// flags it failed, `masters` other masters serve every slot (its replica promoted)
    /// and the cluster is ok again. Returns how long that took.
    pub fn wait_replaced(&self, port: u16, masters: usize) -> Result<Duration, String> {
        let start = Instant::now();
        let deadline = start + FORM_TIMEOUT;
        loop {
            let replaced = self.nodes.iter().flatten().all(|n| {
                n.cmd(&["CLUSTER", "NODES"])
                    .and_then(|r| r.into_string())
                    .map(|t| {
                        let nodes = parse_nodes(&t);
                        let gone = nodes.iter().any(|c| c.port == port && c.failed);
                        let covered: usize = nodes
                            .iter()
                            .filter(|c| c.master && !c.failed && c.port != port)
                            .flat_map(|c| c.slots.iter())
                            .map(|&(a, b)| usize::from(b - a) + 1)
                            .sum();
                        gone && covered == 16384
                    })
                    .unwrap_or(false)
            });
            if replaced && self.check(masters, false).is_ok() {
                return Ok(start.elapsed());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "the master on port {port} was not replaced within {FORM_TIMEOUT:?}"
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// [`wait_ok`](Self::wait_ok), and with `replicas`, until every master has a replica
    /// online.
    fn wait(&self, masters: usize, replicas: bool) -> Result<(), String> {
        let deadline = Instant::now() + FORM_TIMEOUT;
        loop {
            let last = match self.check(masters, replicas) {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            if Instant::now() >= deadline {
                return Err(format!(
                    "the cluster was not ready within {FORM_TIMEOUT:?}: {last}"
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn check(&self, masters: usize, replicas: bool) -> Result<(), String> {
        for n in self.nodes.iter().flatten() {
            let info = n.cmd(&["CLUSTER", "INFO"])?.into_string()?;
            if !info.lines().any(|l| l.trim() == "cluster_state:ok") {
                return Err(format!("node {} is not ok yet", n.port()));
            }
            let nodes = parse_nodes(&n.cmd(&["CLUSTER", "NODES"])?.into_string()?);
            let live: Vec<&ClusterNode> = nodes
                .iter()
                .filter(|c| c.master && !c.failed && !c.slots.is_empty())
                .collect();
            if live.len() != masters {
                return Err(format!(
                    "node {} sees {} masters with slots",
                    n.port(),
                    live.len()
                ));
            }
        }
        if replicas {
            for n in self.nodes.iter().flatten() {
                let info = n.cmd(&["INFO", "replication"])?.into_string()?;
                if info.lines().any(|l| l.trim() == "role:master")
                    && !info.lines().any(|l| l.contains("state=online"))
                {
                    return Err(format!("master {} has no replica online yet", n.port()));
                }
            }
        }
        Ok(())
    }
}

fn parse_nodes(text: &str) -> Vec<ClusterNode> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let addr = f.get(1)?;
            let port = addr.split('@').next()?.rsplit_once(':')?.1.parse().ok()?;
            let flags = f.get(2)?;
            let slots = f
                .iter()
                .skip(8)
                .filter(|s| !s.starts_with('['))
                .filter_map(|s| match s.split_once('-') {
                    Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                    None => s.parse().ok().map(|x| (x, x)),
                })
                .collect();
            Some(ClusterNode {
                id: f.first()?.to_string(),
                port,
                master: flags.contains("master"),
                failed: flags.contains("fail"),
                slots,
            })
        })
        .collect()
}

/// Runs a short command to its end (killed after `timeout`): its stdout and stderr.
fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> Result<String, String> {
    let mut child = cmd.spawn().map_err(|e| e.to_string())?;
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("did not finish within {timeout:?}"));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(e.to_string()),
        }
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    Ok(format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}
