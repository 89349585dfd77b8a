//! Per-trace summaries in Redis ([`TraceOverview`]), beside the events, and the search
//! that answers from them.
//!
//! `osprofiler_summary:<base_id>` is a sorted set the sink updates once per trace per
//! batch with one plain command, `ZADD … GT`, pipelined with the events (and `PEXPIRE`
//! with a TTL). `GT` keeps the greater score of a member and adds new members, so the
//! set ends the same whatever order writers in several processes run their commands in;
//! it is one key, so it lives in one slot of a Redis Cluster. (A Lua script did this
//! before: about 7 µs of server time a call, which cut the rate of 10-point traces by a
//! third; one command per counter still cost about 1.8 µs each.) Members and scores:
//!
//! - `first`: minus the first event's time (µs since the epoch), so `GT` keeps the
//!   earliest; `last`: the last event's time;
//! - `n:<writer>-<batch>:<points>`, scored with the batch's events of the trace: one
//!   per batch (writer: 16 hex digits, random per sink; batch: its number), so the
//!   counts are sums the reader takes (`events`: of the scores, `points`, the start
//!   events: of the names' last parts). A batch sent again names the same member, and
//!   counts once;
//! - `root`: minus the root point's rank ([`root_rank`]: level, then start), so `GT`
//!   keeps the lowest; `r:<rank>\n<service>\n<category>\n<name>` (score 0): the point of
//!   each rank offered, the one of `root`'s rank is the root;
//! - `s:<service>`, `c:<category>`, `error`: the sets and the error flag (score 0).
//!
//! So a trace's set grows by a member or two per batch that holds some of it, a few
//! dozen bytes beside the batch's events. Scores are integers below 2^53, exact in
//! Redis's doubles. The prefix is not one Python osprofiler scans (`osprofiler:*`,
//! `osprofiler_opt:*`, `osprofiler_error:*`): its `trace list` and `trace show` never
//! see these keys.
//!
//! A summary is used only while its events equal the length of the trace's list: a
//! trace that Python services wrote too (they push events with no summary), or one being
//! written while we read, is summarised from its events instead, as are traces that have
//! no summary at all (Python's) or one of another type (an older layout).

use std::collections::BTreeSet;

use super::resp::Reply;
use super::{OPT_PREFIX, SUMMARY_PREFIX, key};
use crate::summary::{one_line, overview_from_texts};
use crate::{ReadError, RootPoint, TraceOverview, TracePage, TraceQuery};

/// Members of a summary (see the module's notes).
pub(crate) const FIRST: &[u8] = b"first";
pub(crate) const LAST: &[u8] = b"last";
pub(crate) const ROOT: &[u8] = b"root";
pub(crate) const ERROR: &[u8] = b"error";

/// A random name for a sink in the counts (std's hasher keys are random per process and
/// differ per `RandomState`).
pub(crate) fn writer_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    h.finish()
}

/// The member counting a batch's part of a trace: `n:<writer>-<batch>:<points>`.
pub(crate) fn count_member(out: &mut Vec<u8>, writer: u64, batch: u64, points: u32) {
    use std::io::Write;
    // Writing to a Vec cannot fail.
    let _ = write!(out, "n:{writer:016x}-{batch}:{points}");
}

/// Added to the start of a point that is not first-level: any first-level point ranks
/// before it. 2^52 µs from the epoch is the year 2112, and the sum stays below 2^53.
const LEVEL_STEP: i64 = 1 << 52;

/// A root candidate's rank: first-level points (level 0) first, then the earliest.
pub(crate) fn root_rank(level: u8, start_us: i64) -> i64 {
    start_us.saturating_add(i64::from(level.min(1)) * LEVEL_STEP)
}

/// The member naming the root candidate of rank `rank` (the parts on one line each).
pub(crate) fn root_member(out: &mut Vec<u8>, rank: i64, service: &str, category: &str, name: &str) {
    out.extend_from_slice(b"r:");
    out.extend_from_slice(rank.to_string().as_bytes());
    for part in [service, category, name] {
        out.push(b'\n');
        out.extend_from_slice(part.as_bytes());
    }
}

/// What a stored summary says, and how many events it counted.
struct Stored {
    overview: TraceOverview,
    events: i64,
}

/// A score as Redis prints it (`%.17g`: integers below 2^53 as digits).
fn score(text: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(text).ok()?;
    match text.parse::<i64>() {
        Ok(n) => Some(n),
        Err(_) => text.parse::<f64>().ok().map(|f| f as i64),
    }
}

/// A `ZRANGE … WITHSCORES` reply as a summary; `None` when empty, of another type, or
/// without its counters.
fn parse(id: &str, reply: Reply) -> Option<Stored> {
    let items = reply.into_array();
    if items.is_empty() {
        return None;
    }
    let mut t = TraceOverview {
        base_id: id.to_owned(),
        ..TraceOverview::default()
    };
    let (mut first, mut last, mut rank) = (None, None, None);
    let (mut events, mut points) = (None::<i64>, 0_u64);
    let (mut services, mut categories) = (BTreeSet::new(), BTreeSet::new());
    let mut named = Vec::new();
    let mut it = items.into_iter();
    while let (Some(m), Some(v)) = (it.next(), it.next()) {
        let (Some(m), Some(v)) = (m.into_bytes(), v.into_bytes()) else {
            continue;
        };
        match &m[..] {
            FIRST => first = score(&v).map(i64::saturating_neg),
            LAST => last = score(&v),
            ROOT => rank = score(&v).map(i64::saturating_neg),
            ERROR => t.error = true,
            _ => {
                if let Some(s) = m.strip_prefix(b"s:") {
                    services.insert(String::from_utf8_lossy(s).into_owned());
                } else if let Some(c) = m.strip_prefix(b"c:") {
                    categories.insert(String::from_utf8_lossy(c).into_owned());
                } else if m.starts_with(b"r:") {
                    named.push(m);
                } else if let Some(n) = m.strip_prefix(b"n:") {
                    let p = n.rsplit(|&b| b == b':').next().and_then(score);
                    let (Some(e), Some(p)) = (score(&v), p) else {
                        continue;
                    };
                    events = Some(events.unwrap_or(0).saturating_add(e));
                    points = points.saturating_add(p.max(0) as u64);
                }
            }
        }
    }
    // The candidate of the lowest rank (ties: the first in member order, for every reader).
    let root = rank.and_then(|rank| {
        let prefix = format!("r:{rank}\n");
        let m = named.iter().find(|m| m.starts_with(prefix.as_bytes()))?;
        let text = String::from_utf8_lossy(&m[prefix.len()..]).into_owned();
        let mut parts = text.splitn(3, '\n');
        let (service, category, name) = (parts.next()?, parts.next()?, parts.next()?);
        Some(RootPoint {
            service: service.to_owned(),
            category: category.to_owned(),
            name: name.to_owned(),
        })
    });
    t.started_us = first?;
    t.finished_us = last?;
    t.points = points;
    t.services = services.into_iter().collect();
    t.categories = categories.into_iter().collect();
    t.root = root.filter(|r| !r.category.is_empty());
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
                b"ZRANGE".to_vec(),
                key(SUMMARY_PREFIX, c.id.as_bytes()),
                b"0".to_vec(),
                b"-1".to_vec(),
                b"WITHSCORES".to_vec(),
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
                (None, Some(texts)) => match overview_from_texts(&c.id, texts, q) {
                    Some(t) => t,
                    None => continue,
                },
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
    fn parses_a_stored_summary() {
        let mut later = Vec::new();
        root_member(&mut later, root_rank(0, 12), "api", "wsgi", "GET /late");
        let mut root = Vec::new();
        root_member(&mut root, root_rank(0, 10), "api", "wsgi", "GET /");
        let mut deeper = Vec::new();
        root_member(&mut deeper, root_rank(1, 5), "compute", "db", "SELECT 1");
        let (later, root, deeper) = (
            String::from_utf8(later).unwrap(),
            String::from_utf8(root).unwrap(),
            String::from_utf8(deeper).unwrap(),
        );
        // As ZRANGE … WITHSCORES lists them: by score, then member.
        let minus_rank = (-root_rank(0, 10)).to_string();
        let fields = [
            ("first", "-10"),
            (&minus_rank, ""),
            ("c:db", "0"),
            ("c:wsgi", "0"),
            ("error", "0"),
            (&deeper, "0"),
            (&later, "0"),
            (&root, "0"),
            ("s:api", "0"),
            ("s:compute", "0"),
            ("n:00000000000000aa-7:2", "4"),
            ("n:00000000000000ab-1:1", "2"),
            ("last", "25"),
        ];
        let mut items = Vec::new();
        for (m, v) in fields {
            // `root`'s score is the rank written above.
            if v.is_empty() {
                items.extend([bulk("root"), bulk(m)]);
            } else {
                items.extend([bulk(m), bulk(v)]);
            }
        }
        let s = parse("id", Reply::Array(items)).unwrap();
        assert_eq!(s.events, 6);
        let t = s.overview;
        assert_eq!((t.started_us, t.finished_us, t.points), (10, 25, 3));
        assert_eq!(t.services, ["api", "compute"]);
        assert_eq!(t.categories, ["db", "wsgi"]);
        assert!(t.error);
        assert_eq!(t.root.unwrap().label(), "api · wsgi · GET /");
        // A first-level point ranks before any deeper one, whatever their starts.
        assert!(root_rank(0, 10) < root_rank(1, 5));
        assert_eq!(
            score(b"1.7650000000000000e+15"),
            Some(1_765_000_000_000_000)
        );
        assert!(parse("id", Reply::Array(Vec::new())).is_none());
        // Without its counters (written by something else): not a summary.
        assert!(parse("id", Reply::Array(vec![bulk("first"), bulk("1")])).is_none());
        // A hash of an older layout answers WRONGTYPE: not a summary either.
        assert!(parse("id", Reply::Error("WRONGTYPE".into())).is_none());
    }
}
