//! Per-trace summaries in Redis ([`TraceOverview`]), beside the events, and the search
//! that answers from them.
//!
//! `osprofiler_summary:<base_id>` is a hash the sink updates once per trace per batch,
//! with [`SCRIPT`] through `EVALSHA` (`EVAL` after a `NOSCRIPT`), pipelined with the
//! events: the script takes the minimum start, the maximum stop and the better root point
//! and adds the counts atomically, so writers in several processes can write one trace.
//! It names one key, so it runs on a Redis Cluster too. Fields:
//!
//! - `first`, `last`: first and last event (µs since the epoch);
//! - `points` (start events), `events` (all events the sinks pushed), `error` (`1`);
//! - `root_level` (`0`: a first-level point, `1`: another), `root_us`, `root_service`,
//!   `root_category`, `root_name`: the root point, the lowest (level, start) seen;
//! - `s:<service>` and `c:<category>`: the sets, one field each (value empty).
//!
//! The prefix is not one Python osprofiler scans (`osprofiler:*`, `osprofiler_opt:*`,
//! `osprofiler_error:*`): its `trace list` and `trace show` never see these hashes.
//!
//! A summary is used only while `events` equals the length of the trace's list: a trace
//! that Python services wrote too (they push events with no summary), or one being
//! written while we read, is summarised from its events instead, as are traces that have
//! no summary at all (Python's).

use std::collections::BTreeSet;
use std::sync::OnceLock;

use osprofiler_report::Report;
use sha1::{Digest, Sha1};

use super::resp::Reply;
use super::{OPT_PREFIX, SUMMARY_PREFIX, key};
use crate::summary::one_line;
use crate::{ReadError, RootPoint, TraceOverview, TracePage, TraceQuery};

/// `KEYS[1]`: the summary. `ARGV`: first, last, points, events, root level (`""`: no start
/// event in the batch), root start, root service, category and name, TTL in ms (`0`:
/// none), then fields to set as they are (`error` `1`, `s:<service>` `""`,
/// `c:<category>` `""`). Times are integers below 2^53, exact in Lua's numbers. One HMGET
/// and one HSET: most of the cost is the script's call itself (about 7 µs a call on
/// redis-server 7.0 here, against 1.5 µs for a script that does nothing).
pub(crate) const SCRIPT: &str = r#"local k = KEYS[1]
local cur = redis.call('HMGET', k, 'first', 'last', 'root_level', 'root_us', 'points', 'events')
local f, l, lv = ARGV[1], ARGV[2], ARGV[5]
if cur[1] and tonumber(cur[1]) <= tonumber(f) then f = cur[1] end
if cur[2] and tonumber(cur[2]) >= tonumber(l) then l = cur[2] end
if lv ~= '' and cur[3] then
  local clv, nlv = tonumber(cur[3]), tonumber(lv)
  if clv < nlv or (clv == nlv and tonumber(cur[4]) <= tonumber(ARGV[6])) then lv = '' end
end
local p = string.format('%d', (tonumber(cur[5]) or 0) + ARGV[3])
local e = string.format('%d', (tonumber(cur[6]) or 0) + ARGV[4])
if lv ~= '' then
  redis.call('HSET', k, 'first', f, 'last', l, 'points', p, 'events', e, 'root_level', lv,
    'root_us', ARGV[6], 'root_service', ARGV[7], 'root_category', ARGV[8], 'root_name', ARGV[9],
    unpack(ARGV, 11))
else
  redis.call('HSET', k, 'first', f, 'last', l, 'points', p, 'events', e, unpack(ARGV, 11))
end
if ARGV[10] ~= '0' then redis.call('PEXPIRE', k, ARGV[10]) end
return 1
"#;

/// Arguments of [`SCRIPT`] before the fields. (Thousands of fields in one call would
/// pass what Lua's `unpack` takes: the script fails, and the trace is summarised from its
/// events, see the module's notes.)
pub(crate) const FIXED_ARGS: usize = 10;

/// The script's SHA-1 in hex, as `EVALSHA` wants it.
pub(crate) fn script_sha() -> &'static [u8; 40] {
    static SHA: OnceLock<[u8; 40]> = OnceLock::new();
    SHA.get_or_init(|| {
        let digest = Sha1::digest(SCRIPT.as_bytes());
        let mut hex = [0u8; 40];
        for (i, b) in digest.iter().enumerate() {
            hex[2 * i] = b"0123456789abcdef"[usize::from(b >> 4)];
            hex[2 * i + 1] = b"0123456789abcdef"[usize::from(b & 15)];
        }
        hex
    })
}

/// What a stored summary says, and how many events it counted.
struct Stored {
    overview: TraceOverview,
    events: i64,
}

/// An `HGETALL` reply as a summary; `None` when empty or without its counters.
fn parse(id: &str, reply: Reply) -> Option<Stored> {
    let items = reply.into_array();
    if items.is_empty() {
        return None;
    }
    let mut t = TraceOverview {
        base_id: id.to_owned(),
        ..TraceOverview::default()
    };
    let (mut first, mut last, mut events) = (None, None, None);
    let (mut services, mut categories) = (BTreeSet::new(), BTreeSet::new());
    let mut root = RootPoint::default();
    let mut it = items.into_iter();
    while let (Some(f), Some(v)) = (it.next(), it.next()) {
        let (Some(f), Some(v)) = (f.into_bytes(), v.into_bytes()) else {
            continue;
        };
        let text = String::from_utf8_lossy(&v).into_owned();
        let int = || text.parse::<i64>().ok();
        match &f[..] {
            b"first" => first = int(),
            b"last" => last = int(),
            b"points" => t.points = int().unwrap_or(0).max(0) as u64,
            b"events" => events = int(),
            b"error" => t.error = text == "1",
            b"root_service" => root.service = text,
            b"root_category" => root.category = text,
            b"root_name" => root.name = text,
            _ => {
                if let Some(s) = f.strip_prefix(b"s:") {
                    services.insert(String::from_utf8_lossy(s).into_owned());
                } else if let Some(c) = f.strip_prefix(b"c:") {
                    categories.insert(String::from_utf8_lossy(c).into_owned());
                }
            }
        }
    }
    t.started_us = first?;
    t.finished_us = last?;
    t.services = services.into_iter().collect();
    t.categories = categories.into_iter().collect();
    t.root = (!root.category.is_empty()).then_some(root);
    Some(Stored {
        overview: t,
        events: events?,
    })
}

/// A trace the search may list.
pub(crate) struct Candidate {
    pub(crate) id: String,
    /// Its listed start (µs): the index's, else its oldest event's.
    pub(crate) start: i64,
    /// It has events in osprofiler's legacy layout (one key per event).
    pub(crate) legacy: bool,
}

/// What the search needs from a store: commands run by key, and a trace's events.
pub(crate) trait Source {
    /// Runs every command (`args[1]` is its key), pipelined; the replies in order.
    fn run_each(&mut self, cmds: &[Vec<Vec<u8>>]) -> Result<Vec<Reply>, ReadError>;
    /// All the events of a trace (legacy keys included).
    fn texts(&mut self, id: &str) -> Result<Vec<String>, ReadError>;
}

/// Sorts candidates newest first (ties by id), as `list_traces` does.
pub(crate) fn newest_first(c: &mut [Candidate]) {
    c.sort_by(|a, b| b.start.cmp(&a.start).then_with(|| a.id.cmp(&b.id)));
}

/// Most candidates looked at per round trip.
const MAX_CHUNK: usize = 2000;

/// One page of `q` over `candidates` (newest first): each candidate's summary when it is
/// complete, else its events. Reads summaries in chunks, growing while filters reject, and
/// stops once the page and one more match are found.
pub(crate) fn search<S: Source + ?Sized>(
    src: &mut S,
    q: &TraceQuery,
    candidates: Vec<Candidate>,
) -> Result<TracePage, ReadError> {
    // The listed start is the summary's: skip by time before reading anything.
    let candidates: Vec<Candidate> = candidates
        .into_iter()
        .filter(|c| {
            !(q.since_us.is_some_and(|s| c.start < s) || q.until_us.is_some_and(|u| c.start >= u))
        })
        .collect();
    let want = q.limit.map(|l| q.offset.saturating_add(l));
    let mut chunk = want.map_or(MAX_CHUNK, |w| w.saturating_add(1).clamp(32, MAX_CHUNK));
    let mut matched = Vec::new();
    let mut more = false;
    let mut pos = 0;
    'chunks: while pos < candidates.len() {
        let part = &candidates[pos..(pos + chunk).min(candidates.len())];
        pos += part.len();
        chunk = (chunk * 2).min(MAX_CHUNK);

        let mut cmds = Vec::with_capacity(2 * part.len());
        for c in part {
            cmds.push(vec![
                b"HGETALL".to_vec(),
                key(SUMMARY_PREFIX, c.id.as_bytes()),
            ]);
            cmds.push(vec![b"LLEN".to_vec(), key(OPT_PREFIX, c.id.as_bytes())]);
        }
        let mut replies = src.run_each(&cmds)?.into_iter();
        // Per candidate: its summary if complete and passing the filters; whether its
        // events are needed (no usable summary, or the text filter).
        let mut found: Vec<(Option<TraceOverview>, bool)> = Vec::with_capacity(part.len());
        for c in part {
            let (Some(h), Some(n)) = (replies.next(), replies.next()) else {
                break;
            };
            let len = match n {
                Reply::Int(n) => n,
                _ => 0,
            };
            match parse(&c.id, h) {
                Some(s) if s.events == len && !c.legacy => {
                    let pass = q.matches(&s.overview);
                    let need_texts = pass && q.text.is_some();
                    found.push((pass.then_some(s.overview), need_texts));
                }
                // The list is gone (expired): so is the trace.
                Some(_) if len == 0 && !c.legacy => found.push((None, false)),
                _ => found.push((None, len > 0 || c.legacy)),
            }
        }
        // The events wanted, one pipelined LRANGE for those in the list layout only.
        let lists: Vec<Vec<Vec<u8>>> = part
            .iter()
            .zip(&found)
            .filter(|(c, f)| f.1 && !c.legacy)
            .map(|(c, _)| {
                vec![
                    b"LRANGE".to_vec(),
                    key(OPT_PREFIX, c.id.as_bytes()),
                    b"0".to_vec(),
                    b"-1".to_vec(),
                ]
            })
            .collect();
        let mut lists = src.run_each(&lists)?.into_iter();
        for (c, (overview, need_texts)) in part.iter().zip(found) {
            let texts = if !need_texts {
                None
            } else if c.legacy {
                Some(src.texts(&c.id)?)
            } else {
                Some(
                    lists
                        .next()
                        .map(Reply::into_array)
                        .unwrap_or_default()
                        .into_iter()
                        .filter_map(|r| String::from_utf8(r.into_bytes()?).ok())
                        .collect::<Vec<_>>(),
                )
            };
            let t = match (overview, texts) {
                (Some(t), None) => t,
                (Some(t), Some(texts)) => {
                    if !q.text_matches(&texts) {
                        continue;
                    }
                    t
                }
                (None, None) => continue,
                (None, Some(texts)) => {
                    if texts.is_empty() || !q.text_matches(&texts) {
                        continue;
                    }
                    let report = Report::from_json_texts(texts);
                    if report.is_empty() {
                        continue;
                    }
                    let t = TraceOverview::from_report(&c.id, &report);
                    if !q.matches(&t) {
                        continue;
                    }
                    t
                }
            };
            if want.is_some_and(|w| matched.len() >= w) {
                more = true;
                break 'chunks;
            }
            matched.push(t);
        }
    }
    let traces = matched.into_iter().skip(q.offset).collect();
    Ok(TracePage { traces, more })
}

/// `s` on one line, as a summary's fields hold it.
pub(crate) fn flat(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains(['\n', '\r']) {
        one_line(s).into()
    } else {
        s.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Reply {
        Reply::Bulk(s.as_bytes().to_vec())
    }

    #[test]
    fn sha_is_hex_of_the_script() {
        let sha = script_sha();
        assert!(sha.iter().all(u8::is_ascii_hexdigit));
        assert_eq!(script_sha(), sha);
    }

    #[test]
    fn parses_a_stored_summary() {
        let fields = [
            ("first", "10"),
            ("last", "25"),
            ("points", "3"),
            ("events", "6"),
            ("error", "1"),
            ("root_level", "0"),
            ("root_us", "10"),
            ("root_service", "api"),
            ("root_category", "wsgi"),
            ("root_name", "GET /"),
            ("s:compute", ""),
            ("s:api", ""),
            ("c:wsgi", ""),
            ("c:db", ""),
        ];
        let reply = Reply::Array(
            fields
                .iter()
                .flat_map(|(f, v)| [bulk(f), bulk(v)])
                .collect(),
        );
        let s = parse("id", reply).unwrap();
        assert_eq!(s.events, 6);
        let t = s.overview;
        assert_eq!((t.started_us, t.finished_us, t.points), (10, 25, 3));
        assert_eq!(t.services, ["api", "compute"]);
        assert_eq!(t.categories, ["db", "wsgi"]);
        assert!(t.error);
        assert_eq!(t.root.unwrap().label(), "api · wsgi · GET /");
        assert!(parse("id", Reply::Array(Vec::new())).is_none());
        // Without its counters (written by something else): not a summary.
        assert!(parse("id", Reply::Array(vec![bulk("first"), bulk("1")])).is_none());
    }
}
