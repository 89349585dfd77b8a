//! Redis Cluster (`rediscluster://`): the slot map, commands routed by key slot, `MOVED`
//! and `ASK` followed, and a failover survived.
//!
//! The map comes from `CLUSTER SLOTS`, asked of any node known (the seeds of the
//! connection string first time). Each command goes to the master of its key's slot,
//! with one connection per master; the commands of a batch are written to every master
//! they go to before any reply is read, so the masters work at the same time. A reply
//! `MOVED <slot> <addr>` updates the map (refreshed as a whole before the next round) and
//! the command goes again to `<addr>`; `ASK <slot> <addr>` sends it once to `<addr>`
//! after `ASKING`, the map unchanged. A connection error, `CLUSTERDOWN`, `TRYAGAIN` (and
//! the other transient refusals) refresh the map and retry after a short backoff, at
//! most [`ROUNDS`] rounds and [`RETRY_BUDGET`] a call. A write whose reply was lost with its connection is
//! not sent again (it may have run: an event would be stored twice), unless the
//! connection was closed before it answered anything of the round (a dead node's
//! socket); reads are always retried.
//!
//! One trace's events are one list, `osprofiler_opt:<base_id>`, so one slot: the key
//! names are Python's as they are (no hash tag is needed). The listing index is split
//! into [`INDEX_SHARDS`] sorted sets, `osprofiler_index:<k>` (and
//! `osprofiler_error_index:<k>`), a trace in shard `k` = a hash of its base id mod
//! [`INDEX_SHARDS`]: their slots spread over the masters, so that no single node takes
//! every index write, and the read side merges them.

use std::ops::Range;
use std::time::{Duration, Instant};

use super::client::{ClientError, Conn, Settings, Target};
use super::resp::Reply;

/// Number of hash slots of a Redis Cluster.
pub(crate) const SLOTS: usize = 16384;
/// Index shards per index.
pub(crate) const INDEX_SHARDS: usize = 16;
/// Rounds of one [`Cluster::exec`] (the first try and its retries).
const ROUNDS: u32 = 6;
/// Backoff before the second round, doubled each round (20 + 40 + … + 320 ms).
const BACKOFF: Duration = Duration::from_millis(20);
/// No retry round starts this long after the first (slow connects to unreachable nodes
/// count): the exporter is held up by one batch for about this, plus one round.
const RETRY_BUDGET: Duration = Duration::from_secs(1);
const UNKNOWN: u16 = u16::MAX;

/// CRC16/XMODEM, Redis Cluster's key hash, over the concatenation of `parts`.
pub(crate) fn crc16(parts: &[&[u8]]) -> u16 {
    let mut crc: u16 = 0;
    for part in parts {
        for &b in *part {
            crc ^= u16::from(b) << 8;
            for _ in 0..8 {
                crc = if crc & 0x8000 != 0 {
                    (crc << 1) ^ 0x1021
                } else {
                    crc << 1
                };
            }
        }
    }
    crc
}

/// The slot of a key: its hash tag's (the first `{…}` with something inside) or the
/// whole key's.
pub(crate) fn slot(key: &[u8]) -> u16 {
    let tagged = key.iter().position(|&b| b == b'{').and_then(|open| {
        let rest = &key[open + 1..];
        match rest.iter().position(|&b| b == b'}') {
            Some(len) if len > 0 => Some(&rest[..len]),
            _ => None,
        }
    });
    crc16(&[tagged.unwrap_or(key)]) % SLOTS as u16
}

/// The slot of `prefix` + `id` (ids and our prefixes hold no `{`).
pub(crate) fn slot_of(prefix: &[u8], id: &[u8]) -> u16 {
    crc16(&[prefix, id]) % SLOTS as u16
}

/// The names of an index's shards: `<index>:0` … `<index>:15`.
pub(crate) fn shard_keys(index: &[u8]) -> Vec<Vec<u8>> {
    (0..INDEX_SHARDS)
        .map(|k| [index, b":", k.to_string().as_bytes()].concat())
        .collect()
}

/// The index shard of a trace: its id's bits mixed (Fibonacci hashing), so that ids
/// that differ in a few digits only still spread.
pub(crate) fn shard_of(base_id: u128) -> usize {
    let folded = (base_id as u64) ^ ((base_id >> 64) as u64);
    (folded.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 60) as usize % INDEX_SHARDS
}

/// One command of a batch: its bytes in the batch's buffer, and its key's slot.
#[derive(Clone)]
pub(crate) struct Command {
    pub(crate) range: Range<usize>,
    pub(crate) slot: u16,
}

struct Node {
    host: String,
    port: u16,
    conn: Option<Conn>,
}

/// Where a command goes next.
#[derive(Clone, Copy)]
enum Route {
    /// The master of its slot.
    Slot,
    /// This node, after `ASKING`.
    Ask(usize),
}

/// A connection per master and the slot map.
pub(crate) struct Cluster {
    /// Username, password and timeout for every node (its target is replaced).
    template: Settings,
    seeds: Vec<(String, u16)>,
    nodes: Vec<Node>,
    /// Slot → index in `nodes` ([`UNKNOWN`] when no master serves it).
    slots: Vec<u16>,
    stale: bool,
    /// One node's share of a batch, reused from batch to batch.
    out_buf: Vec<u8>,
    /// Redirections followed and map refreshes, for the debug log.
    pub(crate) moved: u64,
    pub(crate) asked: u64,
    pub(crate) refreshes: u64,
}

impl Cluster {
    pub(crate) fn new(template: Settings, seeds: Vec<(String, u16)>) -> Cluster {
        Cluster {
            template,
            seeds,
            nodes: Vec::new(),
            slots: vec![UNKNOWN; SLOTS],
            stale: true,
            out_buf: Vec::new(),
            moved: 0,
            asked: 0,
            refreshes: 0,
        }
    }

    fn node(&mut self, host: &str, port: u16) -> usize {
        if let Some(i) = self
            .nodes
            .iter()
            .position(|n| n.port == port && n.host == host)
        {
            return i;
        }
        self.nodes.push(Node {
            host: host.to_owned(),
            port,
            conn: None,
        });
        self.nodes.len() - 1
    }

    fn connect(&self, host: &str, port: u16) -> Result<Conn, ClientError> {
        let mut s = self.template.clone();
        // The template's TLS configuration, for this node's name.
        let tls = match &self.template.target {
            #[cfg(not(feature = "tls"))]
            Target::Direct { tls: Some(t), .. } => match *t {},
            #[cfg(feature = "tls")]
            Target::Direct { tls: Some(t), .. } => Some(super::tls::TlsSetup {
                config: t.config.clone(),
                server_name: rustls::pki_types::ServerName::try_from(host.to_owned()).map_err(
                    |_| ClientError::Tls(format!("{host:?} is not a valid TLS server name")),
                )?,
            }),
            _ => None,
        };
        s.target = Target::Direct {
            host: host.to_owned(),
            port,
            tls,
        };
        s.db = 0;
        s.connect()
            .map_err(|e| prefixed(e, &format!("{host}:{port}")))
    }

    /// Reads the slot map from the first node that gives one (known nodes, then seeds).
    pub(crate) fn refresh(&mut self) -> Result<(), ClientError> {
        self.refreshes += 1;
        // Nodes with a working connection first: a dead one would cost a connect.
        let mut known: Vec<&Node> = self.nodes.iter().collect();
        known.sort_by_key(|n| n.conn.is_none());
        let mut candidates: Vec<(String, u16)> =
            known.iter().map(|n| (n.host.clone(), n.port)).collect();
        for s in &self.seeds {
            if !candidates.contains(s) {
                candidates.push(s.clone());
            }
        }
        let mut why = Vec::new();
        for (host, port) in candidates {
            let i = self.node(&host, port);
            let reply = match self.nodes[i].conn.as_mut() {
                Some(c) => c.query(&[b"CLUSTER", b"SLOTS"]),
                None => self.connect(&host, port).and_then(|mut c| {
                    let r = c.query(&[b"CLUSTER", b"SLOTS"]);
                    self.nodes[i].conn = Some(c);
                    r
                }),
            };
            match reply {
                Ok(r) => match self.apply_slots(r, &host) {
                    Ok(()) => {
                        log::debug!(
                            "cluster slot map read from {host}:{port} (refresh {}, {} MOVED and {} ASK followed so far)",
                            self.refreshes,
                            self.moved,
                            self.asked
                        );
                        return Ok(());
                    }
                    Err(e) => why.push(format!("{host}:{port}: {e}")),
                },
                Err(e) => {
                    if e.breaks_connection() {
                        self.nodes[i].conn = None;
                    }
                    // A failed connect names its node already.
                    let (at, e) = (format!("{host}:{port}"), e.to_string());
                    why.push(if e.starts_with(&at) {
                        e
                    } else {
                        format!("{at}: {e}")
                    });
                }
            }
        }
        Err(ClientError::Io {
            message: format!("no cluster node gave the slot map: {}", why.join("; ")),
            closed: false,
        })
    }

    fn apply_slots(&mut self, reply: Reply, asked: &str) -> Result<(), String> {
        let mut slots = vec![UNKNOWN; SLOTS];
        let mut any = false;
        for range in reply.into_array() {
            let mut it = range.into_array().into_iter();
            let (Some(Reply::Int(from)), Some(Reply::Int(to)), Some(master)) =
                (it.next(), it.next(), it.next())
            else {
                return Err("unexpected CLUSTER SLOTS reply".into());
            };
            let mut m = master.into_array().into_iter();
            let host = m.next().and_then(|h| h.as_text().map(str::to_owned));
            let port = match m.next() {
                Some(Reply::Int(p)) => u16::try_from(p).ok(),
                _ => None,
            };
            let (Some(host), Some(port)) = (host, port) else {
                return Err("unexpected CLUSTER SLOTS reply".into());
            };
            // An empty or `?` endpoint: the node we asked.
            let host = if host.is_empty() || host == "?" {
                asked.to_owned()
            } else {
                host
            };
            let i = self.node(&host, port);
            let (from, to) = (
                from.clamp(0, SLOTS as i64 - 1),
                to.clamp(0, SLOTS as i64 - 1),
            );
            for s in from..=to {
                slots[s as usize] = i as u16;
                any = true;
            }
        }
        if !any {
            return Err("no slot is served".into());
        }
        self.slots = slots;
        self.stale = false;
        Ok(())
    }

    /// Runs `cmds` (encoded in `buf`), each on the master of its slot; one result per
    /// command, in order (an error reply is a [`Reply::Error`]). `reads`: the commands
    /// are safe to repeat after a lost reply.
    pub(crate) fn exec(
        &mut self,
        buf: &[u8],
        cmds: &[Command],
        reads: bool,
    ) -> Vec<Result<Reply, ClientError>> {
        let mut out: Vec<Option<Result<Reply, ClientError>>> = Vec::with_capacity(cmds.len());
        out.resize_with(cmds.len(), || None);
        let mut pending: Vec<(usize, Route)> = (0..cmds.len()).map(|i| (i, Route::Slot)).collect();
        let mut out_buf = std::mem::take(&mut self.out_buf);
        let started = Instant::now();
        for round in 0..ROUNDS {
            if pending.is_empty() || (round > 0 && started.elapsed() >= RETRY_BUDGET) {
                break;
            }
            if round > 0 {
                std::thread::sleep(BACKOFF.saturating_mul(1 << (round - 1)));
            }
            if self.stale
                && let Err(e) = self.refresh()
            {
                for &(i, _) in &pending {
                    out[i] = Some(Err(e.clone()));
                }
                continue;
            }
            // Commands by node, in batch order within a node.
            let mut by_node: Vec<(usize, Vec<(usize, bool)>)> = Vec::new();
            for &(i, route) in &pending {
                let (node, asking) = match route {
                    Route::Ask(n) => (n, true),
                    Route::Slot => (usize::from(self.slots[cmds[i].slot as usize]), false),
                };
                if node == usize::from(UNKNOWN) {
                    self.stale = true;
                    out[i] = Some(Err(ClientError::Server(format!(
                        "CLUSTERDOWN slot {} is not served",
                        cmds[i].slot
                    ))));
                    continue;
                }
                match by_node.iter_mut().find(|(n, _)| *n == node) {
                    Some((_, v)) => v.push((i, asking)),
                    None => by_node.push((node, vec![(i, asking)])),
                }
            }
            let mut next = Vec::new();
            // Everything written first, then the replies read: the masters work at once.
            let mut sent = Vec::with_capacity(by_node.len());
            for (node, list) in by_node {
                let (kept, conn) = match self.nodes[node].conn.take() {
                    Some(c) => (true, Ok(c)),
                    None => {
                        let (h, p) = (self.nodes[node].host.clone(), self.nodes[node].port);
                        (false, self.connect(&h, p))
                    }
                };
                let mut conn = match conn {
                    Ok(c) => c,
                    Err(e) => {
                        // Nothing was sent: always safe to retry.
                        self.stale = true;
                        for &(i, asking) in &list {
                            out[i] = Some(Err(e.clone()));
                            next.push((
                                i,
                                if asking {
                                    pending_route(&pending, i)
                                } else {
                                    Route::Slot
                                },
                            ));
                        }
                        continue;
                    }
                };
                out_buf.clear();
                for &(i, asking) in &list {
                    if asking {
                        super::resp::command(&mut out_buf, &[b"ASKING"]);
                    }
                    out_buf.extend_from_slice(&buf[cmds[i].range.clone()]);
                }
                match conn.send(&out_buf) {
                    Ok(()) => sent.push((node, kept, conn, list)),
                    Err(e) => {
                        self.stale = true;
                        for &(i, _) in &list {
                            out[i] = Some(Err(e.clone()));
                            if reads {
                                next.push((i, Route::Slot));
                            }
                        }
                    }
                }
            }
            for (node, kept, mut conn, list) in sent {
                let mut broken = None;
                let mut answered = 0;
                for &(i, asking) in &list {
                    if let Some(e) = &broken {
                        out[i] = Some(Err(ClientError::clone(e)));
                        if reads || (kept && answered == 0 && closed(e)) {
                            next.push((i, Route::Slot));
                        }
                        continue;
                    }
                    if asking && let Err(e) = conn.read_reply() {
                        broken = Some(e.clone());
                        out[i] = Some(Err(e));
                        if reads {
                            next.push((i, Route::Slot));
                        }
                        continue;
                    }
                    match conn.read_reply() {
                        Ok(Reply::Error(e)) => {
                            answered += 1;
                            if let Some((slot, host, port)) = redirect(&e, "MOVED ") {
                                self.moved += 1;
                                let n = self.node(&host, port);
                                if let Some(s) = self.slots.get_mut(slot) {
                                    *s = n as u16;
                                }
                                self.stale = true;
                                next.push((i, Route::Slot));
                            } else if let Some((_, host, port)) = redirect(&e, "ASK ") {
                                self.asked += 1;
                                next.push((i, Route::Ask(self.node(&host, port))));
                            } else if retryable(&e) {
                                self.stale = true;
                                next.push((i, Route::Slot));
                            }
                            out[i] = Some(Ok(Reply::Error(e)));
                        }
                        Ok(r) => {
                            answered += 1;
                            out[i] = Some(Ok(r));
                        }
                        Err(e) => {
                            self.stale = true;
                            if reads || (kept && answered == 0 && closed(&e)) {
                                next.push((i, Route::Slot));
                            }
                            broken = Some(e.clone());
                            out[i] = Some(Err(e));
                        }
                    }
                }
                if broken.is_none() {
                    self.nodes[node].conn = Some(conn);
                }
            }
            pending = next;
        }
        self.out_buf = out_buf;
        out.into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    Err(ClientError::Io {
                        message: "not sent".into(),
                        closed: false,
                    })
                })
            })
            .collect()
    }

    /// One command on the master of `slot`.
    pub(crate) fn query(&mut self, slot: u16, args: &[&[u8]]) -> Result<Reply, ClientError> {
        let mut buf = Vec::new();
        super::resp::command(&mut buf, args);
        let cmd = Command {
            range: 0..buf.len(),
            slot,
        };
        match self.exec(&buf, &[cmd], true).pop() {
            Some(Ok(Reply::Error(e))) => Err(ClientError::Server(e)),
            Some(r) => r,
            None => Err(ClientError::Server("no reply".into())),
        }
    }
}

fn pending_route(pending: &[(usize, Route)], i: usize) -> Route {
    pending
        .iter()
        .find(|(j, _)| *j == i)
        .map_or(Route::Slot, |(_, r)| *r)
}

fn closed(e: &ClientError) -> bool {
    matches!(e, ClientError::Io { closed: true, .. })
}

/// Refusals after which the same command may succeed once the cluster settles.
fn retryable(e: &str) -> bool {
    [
        "CLUSTERDOWN",
        "TRYAGAIN",
        "LOADING",
        "MASTERDOWN",
        "READONLY",
    ]
    .iter()
    .any(|p| e.starts_with(p))
}

/// `MOVED 3999 127.0.0.1:6381` → (3999, "127.0.0.1", 6381).
fn redirect(e: &str, kind: &str) -> Option<(usize, String, u16)> {
    let rest = e.strip_prefix(kind)?;
    let mut parts = rest.split_whitespace();
    let slot: usize = parts.next()?.parse().ok()?;
    let addr = parts.next()?;
    let (host, port) = addr.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Some((slot, host.to_owned(), port.parse().ok()?))
}

fn prefixed(e: ClientError, what: &str) -> ClientError {
    match e {
        ClientError::Io { message, closed } => ClientError::Io {
            message: format!("{what}: {message}"),
            closed,
        },
        ClientError::Server(m) => ClientError::Server(format!("{what}: {m}")),
        ClientError::Tls(m) => ClientError::Tls(format!("{what}: {m}")),
        ClientError::Sentinel(m) => ClientError::Sentinel(format!("{what}: {m}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_slots_as_redis_computes_them() {
        // The reference value of CRC16/XMODEM, and slots given by CLUSTER KEYSLOT.
        assert_eq!(crc16(&[b"123456789"]), 0x31c3);
        assert_eq!(slot(b"foo"), 12182);
        assert_eq!(slot(b"{user1000}.following"), slot(b"user1000"));
        assert_eq!(slot(b"foo{}{bar}"), slot(b"foo{}{bar}"));
        assert_eq!(slot(b"foo{}{bar}"), crc16(&[b"foo{}{bar}"]) % 16384);
        assert_eq!(slot(b"foo{{bar}}zap"), slot(b"{bar"));
        assert_eq!(slot_of(b"osprofiler_opt:", b"x"), slot(b"osprofiler_opt:x"));
    }

    #[test]
    fn index_shards_spread_over_three_masters() {
        // redis-cli --cluster create's ranges for three masters.
        let keys = shard_keys(b"osprofiler_index");
        let mut per = [0; 3];
        for k in &keys {
            let s = slot(k);
            per[usize::from(s > 5460) + usize::from(s > 10922)] += 1;
        }
        assert!(per.iter().all(|&n| n >= 4), "{per:?}");
        assert_eq!(keys[3], b"osprofiler_index:3");
    }

    #[test]
    fn redirections_parse() {
        assert_eq!(
            redirect("MOVED 3999 127.0.0.1:6381", "MOVED "),
            Some((3999, "127.0.0.1".into(), 6381))
        );
        assert_eq!(
            redirect("ASK 1 [::1]:7000", "ASK "),
            Some((1, "::1".into(), 7000))
        );
        assert_eq!(redirect("ERR x", "MOVED "), None);
    }
}
