//! The read side: a trace's events as Python's `get_report` reads them, and the lists of
//! traces from our indexes merged with what `SCAN` finds (traces written by Python).

use std::collections::{HashMap, HashSet};

use osprofiler::Timestamp;
use serde_json::Value;

use super::client::{ClientError, Conn, Pipeline, Settings};
use super::resp::Reply;
use super::summaries::{self, Candidate};
use super::{ERROR_INDEX, ERROR_PREFIX, INDEX, LEGACY_PREFIX, OPT_PREFIX, key, parse_score};
use crate::{ReadError, TracePage, TraceQuery, TraceStore, TraceSummary};

/// Commands per pipeline when reading many keys: bounds the memory of one round trip.
const CHUNK: usize = 1000;

pub(crate) struct RedisStore {
    settings: Settings,
    conn: Option<Conn>,
    name: String,
}

impl RedisStore {
    pub(crate) fn new(settings: Settings, conn: Conn, name: String) -> RedisStore {
        RedisStore {
            settings,
            conn: Some(conn),
            name,
        }
    }

    /// Runs `f` on the connection, reconnecting first if an earlier call broke it. Reads
    /// are safe to repeat, so when the server had closed a kept connection (its idle
    /// `timeout`, a restart) `f` runs once more on a new one.
    fn run<T>(
        &mut self,
        mut f: impl FnMut(&mut Conn) -> Result<T, ClientError>,
    ) -> Result<T, ReadError> {
        let err = |e: &ClientError, name: &str| ReadError {
            store: name.to_owned(),
            reason: e.to_string(),
        };
        let mut kept = true;
        loop {
            let conn = match &mut self.conn {
                Some(c) => c,
                None => {
                    kept = false;
                    let c = self.settings.connect().map_err(|e| err(&e, &self.name))?;
                    self.conn.insert(c)
                }
            };
            match f(conn) {
                Ok(v) => return Ok(v),
                Err(e) => {
                    if e.breaks_connection() {
                        self.conn = None;
                    }
                    if !(kept && matches!(e, ClientError::Io { closed: true, .. })) {
                        return Err(err(&e, &self.name));
                    }
                    kept = false;
                }
            }
        }
    }
}

/// All keys matching `pattern` (`SCAN`, which may repeat a key: deduplicated).
fn scan(conn: &mut Conn, pattern: &[u8]) -> Result<Vec<Vec<u8>>, ClientError> {
    let mut cursor = b"0".to_vec();
    let mut seen = HashSet::new();
    let mut keys = Vec::new();
    loop {
        let reply = conn.query(&[b"SCAN", &cursor, b"MATCH", pattern, b"COUNT", b"1000"])?;
        let mut parts = reply.into_array().into_iter();
        let next = parts.next().and_then(Reply::into_bytes);
        for k in parts
            .next()
            .map(Reply::into_array)
            .unwrap_or_default()
            .into_iter()
            .filter_map(Reply::into_bytes)
        {
            if seen.insert(k.clone()) {
                keys.push(k);
            }
        }
        match next {
            Some(c) if c != b"0" => cursor = c,
            Some(_) => return Ok(keys),
            None => return Err(ClientError::Server("SCAN: unexpected reply".into())),
        }
    }
}

/// One command per item, pipelined in chunks; the replies in order.
fn each(
    conn: &mut Conn,
    items: &[Vec<u8>],
    mut cmd: impl FnMut(&mut Pipeline, &[u8]),
) -> Result<Vec<Reply>, ClientError> {
    let mut out = Vec::with_capacity(items.len());
    let mut p = Pipeline::default();
    for chunk in items.chunks(CHUNK) {
        p.clear();
        for item in chunk {
            cmd(&mut p, item);
        }
        out.extend(conn.exec(&p)?);
    }
    Ok(out)
}

/// `ZREVRANGE key 0 -1 WITHSCORES`: (member, µs), newest first.
fn index(conn: &mut Conn, key: &[u8]) -> Result<Vec<(Vec<u8>, i64)>, ClientError> {
    let items = conn
        .query(&[b"ZREVRANGE", key, b"0", b"-1", b"WITHSCORES"])?
        .into_array();
    let mut out = Vec::with_capacity(items.len() / 2);
    let mut it = items.into_iter();
    while let (Some(member), Some(score)) = (it.next(), it.next()) {
        let score = score.as_text().and_then(parse_score);
        if let (Some(m), Some(s)) = (member.into_bytes(), score) {
            out.push((m, s));
        }
    }
    Ok(out)
}

/// A stored JSON object, or `None` (missing, not JSON, not an object).
fn object(reply: Reply) -> Option<serde_json::Map<String, Value>> {
    match serde_json::from_slice(&reply.into_bytes()?).ok()? {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

/// The `timestamp` of a stored event or error marker, in µs.
fn timestamp_of(m: &serde_json::Map<String, Value>) -> Option<i64> {
    m.get("timestamp")?
        .as_str()?
        .parse::<Timestamp>()
        .ok()
        .map(|t| t.0)
}

/// `*`, `?`, `[`, `]` and `\` escaped for a `MATCH` pattern.
fn glob_escape(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    for &b in s {
        if matches!(b, b'*' | b'?' | b'[' | b']' | b'\\') {
            out.push(b'\\');
        }
        out.push(b);
    }
    out
}

fn text(id: &[u8]) -> Option<String> {
    String::from_utf8(id.to_vec()).ok()
}

/// Sorted newest first (ties by id), at most `limit`.
pub(crate) fn summaries(found: HashMap<Vec<u8>, i64>, limit: Option<usize>) -> Vec<TraceSummary> {
    let mut list: Vec<(i64, String)> = found
        .into_iter()
        .filter_map(|(id, ts)| Some((ts, text(&id)?)))
        .collect();
    list.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    list.truncate(limit.unwrap_or(usize::MAX));
    list.into_iter()
        .map(|(ts, base_id)| TraceSummary {
            base_id,
            timestamp: Timestamp(ts).to_string(),
        })
        .collect()
}

pub(crate) fn keep_min(found: &mut HashMap<Vec<u8>, i64>, id: Vec<u8>, ts: i64) {
    found
        .entry(id)
        .and_modify(|t| *t = (*t).min(ts))
        .or_insert(ts);
}

fn list_traces(conn: &mut Conn) -> Result<HashMap<Vec<u8>, i64>, ClientError> {
    list_all(conn).map(|(found, _)| found)
}

/// Every trace (id → start), and the ids that have legacy per-event keys.
type Listing = (HashMap<Vec<u8>, i64>, HashSet<Vec<u8>>);

/// Every trace, found as `list_traces` finds them.
fn list_all(conn: &mut Conn) -> Result<Listing, ClientError> {
    // The index is read before the SCAN: an entry whose list the SCAN then misses is one
    // whose list expired (checked below), not one written in between.
    let indexed = index(conn, INDEX)?;
    let mut lists = HashSet::new();
    let mut legacy = Vec::new();
    // One pass over the keyspace for both layouts; not the summaries
    // (`osprofiler_summary:`), which would double what comes back. After the `:` or `_`
    // a legacy key has a base id (hex), a list `opt:`.
    for k in scan(conn, b"osprofiler[:_][^s]*")? {
        if let Some(id) = k.strip_prefix(OPT_PREFIX) {
            lists.insert(id.to_vec());
        } else if k.starts_with(LEGACY_PREFIX) {
            legacy.push(k);
        }
    }

    let mut found = HashMap::new();
    let mut maybe_gone = Vec::new();
    for (id, ts) in indexed {
        if lists.remove(&id) {
            found.insert(id, ts);
        } else {
            maybe_gone.push((id, ts));
        }
    }
    // Index entries of expired traces are removed here, lazily.
    if !maybe_gone.is_empty() {
        let ids: Vec<Vec<u8>> = maybe_gone.iter().map(|(id, _)| id.clone()).collect();
        let exists = each(conn, &ids, |p, id| {
            p.cmd(&[b"EXISTS", &key(OPT_PREFIX, id)]);
        })?;
        let mut gone = Vec::new();
        for ((id, ts), e) in maybe_gone.into_iter().zip(exists) {
            if e == Reply::Int(0) {
                gone.push(id);
            } else {
                found.insert(id, ts);
            }
        }
        for chunk in gone.chunks(CHUNK) {
            let mut args: Vec<&[u8]> = vec![b"ZREM", INDEX];
            args.extend(chunk.iter().map(Vec::as_slice));
            conn.query(&args)?;
        }
    }

    // Lists without an index entry (Python's): their oldest event is the start.
    let unindexed: Vec<Vec<u8>> = lists.into_iter().collect();
    let oldest = each(conn, &unindexed, |p, id| {
        p.cmd(&[b"LINDEX", &key(OPT_PREFIX, id), b"-1"]);
    })?;
    for (id, r) in unindexed.into_iter().zip(oldest) {
        if let Some(ts) = object(r).as_ref().and_then(timestamp_of) {
            keep_min(&mut found, id, ts);
        }
    }

    // Legacy per-event keys: the earliest event of each trace.
    let events = each(conn, &legacy, |p, k| {
        p.cmd(&[b"GET", k]);
    })?;
    let mut legacy_ids = HashSet::new();
    for r in events {
        let Some(m) = object(r) else { continue };
        if let (Some(id), Some(ts)) = (m.get("base_id").and_then(Value::as_str), timestamp_of(&m)) {
            legacy_ids.insert(id.as_bytes().to_vec());
            keep_min(&mut found, id.as_bytes().to_vec(), ts);
        }
    }
    Ok((found, legacy_ids))
}

fn list_error_traces(conn: &mut Conn) -> Result<HashMap<Vec<u8>, i64>, ClientError> {
    let indexed = index(conn, ERROR_INDEX)?;
    let markers: Vec<Vec<u8>> = scan(conn, &[ERROR_PREFIX, b"*"].concat())?;
    // id → (time of its error marker or index entry, known to exist)
    let mut candidates: HashMap<Vec<u8>, (Option<i64>, bool)> = HashMap::new();
    let values = each(conn, &markers, |p, k| {
        p.cmd(&[b"GET", k]);
    })?;
    for (k, r) in markers.iter().zip(values) {
        let Some(id) = k.strip_prefix(ERROR_PREFIX) else {
            continue;
        };
        let ts = object(r).as_ref().and_then(timestamp_of);
        candidates.insert(id.to_vec(), (ts, true));
    }
    for (id, ts) in indexed {
        candidates
            .entry(id)
            .and_modify(|c| c.0 = Some(c.0.map_or(ts, |t| t.min(ts))))
            .or_insert((Some(ts), false));
    }

    // A listed trace shows when it started: its index entry, else its oldest event.
    let ids: Vec<Vec<u8>> = candidates.keys().cloned().collect();
    let replies = each(conn, &ids, |p, id| {
        p.cmd(&[b"ZSCORE", INDEX, id]);
        p.cmd(&[b"LINDEX", &key(OPT_PREFIX, id), b"-1"]);
    })?;
    let mut found = HashMap::new();
    let mut gone = Vec::new();
    let mut replies = replies.into_iter();
    for id in ids {
        let (Some(score), Some(oldest)) = (replies.next(), replies.next()) else {
            break;
        };
        let start = score.as_text().and_then(parse_score);
        let oldest = object(oldest).as_ref().and_then(timestamp_of);
        let Some((marked, marker_exists)) = candidates.get(&id).copied() else {
            continue;
        };
        if !marker_exists && oldest.is_none() {
            // Only in our error index, and its data expired.
            gone.push(id);
            continue;
        }
        let ts = match (start, oldest) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b).or(marked),
        };
        if let Some(ts) = ts {
            found.insert(id, ts);
        }
    }
    for chunk in gone.chunks(CHUNK) {
        let mut args: Vec<&[u8]> = vec![b"ZREM", ERROR_INDEX];
        args.extend(chunk.iter().map(Vec::as_slice));
        conn.query(&args)?;
    }
    Ok(found)
}

impl summaries::Source for RedisStore {
    fn run_each(&mut self, cmds: &[Vec<Vec<u8>>]) -> Result<Vec<Reply>, ReadError> {
        self.run(|conn| {
            let mut out = Vec::with_capacity(cmds.len());
            let mut p = Pipeline::default();
            for chunk in cmds.chunks(CHUNK) {
                p.clear();
                for c in chunk {
                    let args: Vec<&[u8]> = c.iter().map(Vec::as_slice).collect();
                    p.cmd(&args);
                }
                out.extend(conn.exec(&p)?);
            }
            Ok(out)
        })
    }

    fn texts(&mut self, id: &str) -> Result<Vec<String>, ReadError> {
        self.event_texts(id)
    }
}

impl TraceStore for RedisStore {
    /// From the summaries the sink keeps, newest first; traces without a complete one
    /// (Python's) from their events.
    fn search_traces(&mut self, query: &TraceQuery) -> Result<TracePage, ReadError> {
        let (found, legacy) = self.run(list_all)?;
        let mut candidates: Vec<Candidate> = found
            .into_iter()
            .filter_map(|(id, start)| {
                Some(Candidate {
                    legacy: legacy.contains(&id),
                    id: text(&id)?,
                    start,
                })
            })
            .collect();
        summaries::newest_first(&mut candidates);
        summaries::search(self, query, candidates)
    }

    fn event_texts(&mut self, base_id: &str) -> Result<Vec<String>, ReadError> {
        let raw = self.run(|conn| {
            // Python reads the legacy keys first, then the list; the order does not
            // matter to the report.
            let pattern = [LEGACY_PREFIX, &glob_escape(base_id.as_bytes()), b"*"].concat();
            let legacy = scan(conn, &pattern)?;
            let mut raw = each(conn, &legacy, |p, k| {
                p.cmd(&[b"GET", k]);
            })?;
            let list =
                conn.query(&[b"LRANGE", &key(OPT_PREFIX, base_id.as_bytes()), b"0", b"-1"])?;
            raw.extend(list.into_array());
            Ok(raw)
        })?;
        // Texts as stored; the report skips (and counts) any that is not an event.
        Ok(raw
            .into_iter()
            .filter_map(|r| String::from_utf8(r.into_bytes()?).ok())
            .collect())
    }

    fn list_traces(&mut self, limit: Option<usize>) -> Result<Vec<TraceSummary>, ReadError> {
        let found = self.run(list_traces)?;
        Ok(summaries(found, limit))
    }

    fn list_error_traces(&mut self, limit: Option<usize>) -> Result<Vec<TraceSummary>, ReadError> {
        let found = self.run(list_error_traces)?;
        Ok(summaries(found, limit))
    }

    fn describe(&self) -> String {
        self.name.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_glob_patterns() {
        assert_eq!(glob_escape(b"a*b?[c]\\"), b"a\\*b\\?\\[c\\]\\\\");
        assert_eq!(glob_escape(b"1c0d-42"), b"1c0d-42");
    }

    #[test]
    fn summaries_sort_newest_first() {
        let mut found = HashMap::new();
        found.insert(b"b".to_vec(), 2_000_000);
        found.insert(b"a".to_vec(), 2_000_000);
        found.insert(b"c".to_vec(), 3_000_001);
        found.insert(vec![0xff], 9_000_000); // not UTF-8: skipped
        let list = summaries(found, Some(2));
        let ids: Vec<&str> = list.iter().map(|s| s.base_id.as_str()).collect();
        assert_eq!(ids, ["c", "a"]);
        assert_eq!(list[0].timestamp, "1970-01-01T00:00:03.000001");
    }
}
