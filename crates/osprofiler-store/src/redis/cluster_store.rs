//! The read side of a Redis Cluster: a trace is one list, read from the master of its
//! slot; the lists of traces merge every index shard (see [`super::cluster`]).
//!
//! Only our index lists traces here: Python osprofiler has no cluster driver, so there
//! are no index-less lists (Python's) or legacy per-event keys to find by `SCAN`.

use std::collections::HashMap;

use super::client::ClientError;
use super::cluster::{self, Cluster, Command};
use super::resp::{self, Reply};
use super::store::{keep_min, summaries};
use super::summaries::{self as summary, Candidate};
use super::{ERROR_INDEX, INDEX, OPT_PREFIX, key, parse_score};
use crate::{ReadError, TracePage, TraceQuery, TraceStore, TraceSummary};

/// Commands per round trip when checking many traces.
const CHUNK: usize = 1000;

pub(crate) struct ClusterStore {
    client: Cluster,
    name: String,
    index: Vec<Vec<u8>>,
    error_index: Vec<Vec<u8>>,
}

impl ClusterStore {
    pub(crate) fn new(client: Cluster, name: String) -> ClusterStore {
        ClusterStore {
            client,
            name,
            index: cluster::shard_keys(INDEX),
            error_index: cluster::shard_keys(ERROR_INDEX),
        }
    }

    fn error(&self, e: &ClientError) -> ReadError {
        ReadError {
            store: self.name.clone(),
            reason: e.to_string(),
        }
    }

    /// Runs one routed command per `(slot, args)`, replies in order; the first failure
    /// fails the whole.
    fn each(&mut self, cmds: &[(u16, Vec<&[u8]>)]) -> Result<Vec<Reply>, ClientError> {
        let mut out = Vec::with_capacity(cmds.len());
        for chunk in cmds.chunks(CHUNK) {
            let mut buf = Vec::new();
            let mut list = Vec::with_capacity(chunk.len());
            for (slot, args) in chunk {
                let start = buf.len();
                resp::command(&mut buf, args);
                list.push(Command {
                    range: start..buf.len(),
                    slot: *slot,
                });
            }
            for r in self.client.exec(&buf, &list, true) {
                match r? {
                    Reply::Error(e) => return Err(ClientError::Server(e)),
                    r => out.push(r),
                }
            }
        }
        Ok(out)
    }

    /// Every entry of the shards of an index whose list still exists: (id, µs); entries
    /// of expired traces are removed.
    fn indexed(&mut self, shards: &[Vec<u8>]) -> Result<HashMap<Vec<u8>, i64>, ClientError> {
        let cmds: Vec<(u16, Vec<&[u8]>)> = shards
            .iter()
            .map(|k| {
                (
                    cluster::slot(k),
                    vec![&b"ZREVRANGE"[..], k, b"0", b"-1", b"WITHSCORES"],
                )
            })
            .collect();
        let replies = self.each(&cmds)?;
        // (shard, id, µs)
        let mut entries = Vec::new();
        for (shard, r) in replies.into_iter().enumerate() {
            let mut it = r.into_array().into_iter();
            while let (Some(member), Some(score)) = (it.next(), it.next()) {
                let score = score.as_text().and_then(parse_score);
                if let (Some(m), Some(s)) = (member.into_bytes(), score) {
                    entries.push((shard, m, s));
                }
            }
        }
        let keys: Vec<Vec<u8>> = entries
            .iter()
            .map(|(_, id, _)| key(OPT_PREFIX, id))
            .collect();
        let cmds: Vec<(u16, Vec<&[u8]>)> = keys
            .iter()
            .map(|k| (cluster::slot(k), vec![&b"EXISTS"[..], k]))
            .collect();
        let exists = self.each(&cmds)?;
        let mut found = HashMap::new();
        let mut gone: Vec<Vec<Vec<u8>>> = vec![Vec::new(); shards.len()];
        for ((shard, id, ts), e) in entries.into_iter().zip(exists) {
            if e == Reply::Int(0) {
                gone[shard].push(id);
            } else {
                keep_min(&mut found, id, ts);
            }
        }
        let mut cmds: Vec<(u16, Vec<&[u8]>)> = Vec::new();
        for (shard, ids) in gone.iter().enumerate() {
            for chunk in ids.chunks(CHUNK) {
                let mut args: Vec<&[u8]> = vec![b"ZREM", &shards[shard]];
                args.extend(chunk.iter().map(Vec::as_slice));
                cmds.push((cluster::slot(&shards[shard]), args));
            }
        }
        // Tidying only: a failure here does not fail the listing.
        if let Err(e) = self.each(&cmds) {
            log::debug!("{}: removing expired index entries: {e}", self.name);
        }
        Ok(found)
    }
}

impl summary::Source for ClusterStore {
    /// Error replies are returned as such (a summary of the wrong type is only unusable).
    fn run_each(&mut self, cmds: &[Vec<Vec<u8>>]) -> Result<Vec<Reply>, ReadError> {
        let mut out = Vec::with_capacity(cmds.len());
        for chunk in cmds.chunks(CHUNK) {
            let mut buf = Vec::new();
            let mut list = Vec::with_capacity(chunk.len());
            for c in chunk {
                let start = buf.len();
                let args: Vec<&[u8]> = c.iter().map(Vec::as_slice).collect();
                resp::command(&mut buf, &args);
                list.push(Command {
                    range: start..buf.len(),
                    slot: cluster::slot(c.get(1).map_or(&[][..], Vec::as_slice)),
                });
            }
            for r in self.client.exec(&buf, &list, true) {
                out.push(r.map_err(|e| self.error(&e))?);
            }
        }
        Ok(out)
    }

    fn texts(&mut self, id: &str) -> Result<Vec<String>, ReadError> {
        self.event_texts(id)
    }
}

impl TraceStore for ClusterStore {
    /// From the summaries the sink keeps (see the single-server store).
    fn search_traces(&mut self, query: &TraceQuery) -> Result<TracePage, ReadError> {
        let shards = self.index.clone();
        let found = self.indexed(&shards).map_err(|e| self.error(&e))?;
        let mut candidates: Vec<Candidate> = found
            .into_iter()
            .filter_map(|(id, start)| {
                Some(Candidate {
                    id: String::from_utf8(id).ok()?,
                    start,
                    legacy: false,
                })
            })
            .collect();
        summary::newest_first(&mut candidates);
        summary::search(self, query, candidates)
    }

    fn event_texts(&mut self, base_id: &str) -> Result<Vec<String>, ReadError> {
        let k = key(OPT_PREFIX, base_id.as_bytes());
        let list = self
            .client
            .query(cluster::slot(&k), &[b"LRANGE", &k, b"0", b"-1"])
            .map_err(|e| self.error(&e))?;
        Ok(list
            .into_array()
            .into_iter()
            .filter_map(|r| String::from_utf8(r.into_bytes()?).ok())
            .collect())
    }

    fn list_traces(&mut self, limit: Option<usize>) -> Result<Vec<TraceSummary>, ReadError> {
        let shards = self.index.clone();
        let found = self.indexed(&shards).map_err(|e| self.error(&e))?;
        Ok(summaries(found, limit))
    }

    fn list_error_traces(&mut self, limit: Option<usize>) -> Result<Vec<TraceSummary>, ReadError> {
        let shards = self.error_index.clone();
        let found = self.indexed(&shards).map_err(|e| self.error(&e))?;
        Ok(summaries(found, limit))
    }

    fn describe(&self) -> String {
        self.name.clone()
    }
}
