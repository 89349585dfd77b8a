//! Per-trace summaries in SQL, beside Python's `data` table (which stays as it is):
//!
//! - `osprofiler_trace_summary`: one row per trace (`base_id` primary key): `first_us`,
//!   `last_us` (µs since the epoch), `points` (start events), `events` (rows our sinks
//!   inserted), `error` (0/1), and the root point: `root_rank` ([`root_rank`]: first-level
//!   before the others, then by start), `root_service`, `root_category`, `root_name`;
//! - `osprofiler_trace_member`: the sets, one row per `(base_id, kind, value)`, kind `s`
//!   (service) or `c` (category), inserted ignoring duplicates: no read-modify-write of a
//!   set, so writers in several processes merge them without a lock.
//!
//! The sink upserts each trace of a batch once, in the batch's transaction, taking the
//! minimum first, maximum last, lowest root rank and adding the counters, in base id order
//! (so that two writers lock the rows in one order and do not deadlock).
//!
//! A summary is used only when its `events` equals the trace's row count in `data`: a
//! trace Python wrote (no summary) or also wrote to (more rows) is summarised from its
//! events. The search first asks whether the summaries count every row of `data`:
//! from the lowest and highest `id` when it can ([`complete_by_ids`]: two index lookups),
//! else by counting the rows; only when they do not does it count per trace.

use std::collections::{BTreeSet, HashMap};

use osprofiler::{Event, EventKind};

use crate::summary::{one_line, overview_from_texts, root_name, root_rank};
use crate::{RootPoint, TraceOverview, TracePage, TraceQuery};

/// The summaries' table.
pub(crate) const SUMMARY: &str = "osprofiler_trace_summary";
/// The services and categories of each trace.
pub(crate) const MEMBER: &str = "osprofiler_trace_member";
/// Longest set member kept (the column is `VARCHAR(255)`).
const MAX_MEMBER: usize = 255;

/// What one batch says of one trace, to merge into its row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BatchTrace {
    pub(crate) base_id: String,
    pub(crate) first_us: i64,
    pub(crate) last_us: i64,
    pub(crate) points: i64,
    pub(crate) events: i64,
    pub(crate) error: i64,
    /// `i64::MAX` when the batch has no start event of the trace.
    pub(crate) root_rank: i64,
    pub(crate) root_service: String,
    pub(crate) root_category: String,
    pub(crate) root_name: String,
    /// `(kind, value)`: `s` services, `c` categories, without repeats.
    pub(crate) members: Vec<(&'static str, String)>,
}

fn cut(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut at = max;
        while !s.is_char_boundary(at) {
            at -= 1;
        }
        s.truncate(at);
    }
    s
}

/// A trace being gathered: its summary, the index of its root candidate, its set members.
type Gathering = (BatchTrace, Option<usize>, BTreeSet<(&'static str, String)>);

/// The batch's traces, in base id order.
pub(crate) fn batch_traces(events: &[Event]) -> Vec<BatchTrace> {
    let mut by_id: HashMap<u128, Gathering> = HashMap::new();
    for (i, e) in events.iter().enumerate() {
        let us = e.timestamp.as_micros();
        let (t, root, members) = by_id.entry(e.base_id.0).or_insert_with(|| {
            let mut b = [0u8; 36];
            e.base_id.write_hyphenated(&mut b);
            (
                BatchTrace {
                    base_id: String::from_utf8_lossy(&b).into_owned(),
                    first_us: us,
                    last_us: us,
                    points: 0,
                    events: 0,
                    error: 0,
                    root_rank: i64::MAX,
                    root_service: String::new(),
                    root_category: String::new(),
                    root_name: String::new(),
                    members: Vec::new(),
                },
                None,
                BTreeSet::new(),
            )
        });
        t.first_us = t.first_us.min(us);
        t.last_us = t.last_us.max(us);
        t.events += 1;
        if e.info.get("etype").is_some_and(|v| !v.is_null()) {
            t.error = 1;
        }
        if let Some(s) = &e.service
            && !s.is_empty()
        {
            members.insert(("s", cut(one_line(s), MAX_MEMBER)));
        }
        if !e.name.is_empty() {
            members.insert(("c", cut(one_line(&e.name), MAX_MEMBER)));
        }
        if matches!(e.kind, EventKind::Start) {
            t.points += 1;
            let rank = root_rank(e.parent_id == e.base_id, us);
            if rank < t.root_rank {
                t.root_rank = rank;
                *root = Some(i);
            }
        }
    }
    let mut out: Vec<BatchTrace> = by_id
        .into_values()
        .map(|(mut t, root, members)| {
            if let Some(i) = root {
                let e = &events[i];
                t.root_service = e.service.as_deref().map(one_line).unwrap_or_default();
                t.root_category = one_line(&e.name);
                t.root_name = root_name(|k| e.info.get(k));
            }
            t.members = members.into_iter().collect();
            t
        })
        .collect();
    out.sort_by(|a, b| a.base_id.cmp(&b.base_id));
    out
}

/// A stored summary row, as text columns: base_id, first_us, last_us, points, events,
/// error, root_service, root_category, root_name.
pub(crate) const SUMMARY_COLUMNS: &str = "base_id, first_us, last_us, points, events, error, \
     root_service, root_category, root_name";

/// A summary row and its event count.
pub(crate) struct Stored {
    pub(crate) overview: TraceOverview,
    pub(crate) events: i64,
}

/// A [`SUMMARY_COLUMNS`] row (columns as text); `None` when malformed.
pub(crate) fn parse_row(r: &[Option<String>]) -> Option<Stored> {
    let int = |i: usize| r.get(i)?.as_deref()?.parse::<i64>().ok();
    let text = |i: usize| r.get(i).cloned().flatten().unwrap_or_default();
    let root = RootPoint {
        service: text(6),
        category: text(7),
        name: text(8),
    };
    Some(Stored {
        overview: TraceOverview {
            base_id: r.first()?.clone()?,
            started_us: int(1)?,
            finished_us: int(2)?,
            points: int(3)?.max(0) as u64,
            services: Vec::new(),
            categories: Vec::new(),
            root: (!root.category.is_empty()).then_some(root),
            error: int(5)? != 0,
        },
        events: int(4)?,
    })
}

/// What the search needs from a driver.
pub(crate) trait Source {
    /// Runs `sql` (no parameters), every column as text.
    fn rows(&mut self, sql: &str) -> Result<Vec<Vec<Option<String>>>, String>;
    /// `(base_id, kind, value)` of the given traces' members.
    fn members(&mut self, ids: &[String]) -> Result<Vec<(String, String, String)>, String>;
    /// The event texts of a trace.
    fn texts(&mut self, id: &str) -> Result<Vec<String>, String>;
}

/// The numeric filters of `q` as SQL conditions (integers only: nothing to escape).
fn conditions(q: &TraceQuery) -> String {
    let mut c = vec!["1 = 1".to_owned()];
    if let Some(s) = q.since_us {
        c.push(format!("first_us >= {s}"));
    }
    if let Some(u) = q.until_us {
        c.push(format!("first_us < {u}"));
    }
    if let Some(m) = q.min_duration_us {
        c.push(format!("last_us - first_us >= {m}"));
    }
    if let Some(m) = q.max_duration_us {
        c.push(format!("last_us - first_us <= {m}"));
    }
    if q.errors_only {
        c.push("error <> 0".to_owned());
    }
    c.join(" AND ")
}

fn opt_int_at(r: &[Option<String>], i: usize) -> Option<i64> {
    r.get(i)
        .and_then(|v| v.as_deref())
        .and_then(|v| v.parse().ok())
}

fn int_at(r: &[Option<String>], i: usize) -> i64 {
    opt_int_at(r, i).unwrap_or(0)
}

/// Fills the sets of `traces` from the member table.
fn fill_members<S: Source + ?Sized>(src: &mut S, traces: &mut [Stored]) -> Result<(), String> {
    if traces.is_empty() {
        return Ok(());
    }
    let ids: Vec<String> = traces.iter().map(|t| t.overview.base_id.clone()).collect();
    let mut sets: HashMap<String, (BTreeSet<String>, BTreeSet<String>)> = HashMap::new();
    for (id, kind, value) in src.members(&ids)? {
        let e = sets.entry(id).or_default();
        if kind == "s" {
            e.0.insert(value);
        } else {
            e.1.insert(value);
        }
    }
    for t in traces {
        if let Some((s, c)) = sets.remove(&t.overview.base_id) {
            t.overview.services = s.into_iter().collect();
            t.overview.categories = c.into_iter().collect();
        }
    }
    Ok(())
}

/// The summary of a trace from its events, if it passes `q`.
fn from_events<S: Source + ?Sized>(
    src: &mut S,
    q: &TraceQuery,
    id: &str,
) -> Result<Option<TraceOverview>, String> {
    Ok(overview_from_texts(id, src.texts(id)?, q))
}

/// The lowest and highest `id` of `table` and the events the summaries count, in one
/// statement (one snapshot of both tables): see [`complete_by_ids`].
pub(crate) fn ids_sql(table: &str) -> String {
    format!(
        "SELECT (SELECT min(id) FROM {table}), (SELECT max(id) FROM {table}), \
         (SELECT coalesce(sum(events), 0) FROM {SUMMARY})"
    )
}

/// Whether the summaries count every row of `data`, known from its ids alone.
///
/// The ids are distinct integers, so with the lowest at least 1 there are at most `max`
/// rows. Our sinks insert a batch's rows and add them to the summaries in one
/// transaction, and nothing deletes from `data` (neither driver does), so at least
/// `events` rows are there. `max == events` leaves room for no other row. When ids have
/// gaps (a rolled-back batch, a sequence that skipped after a crash, another writer's
/// rows) this says no, and the search counts the rows instead ([`totals_sql`]).
pub(crate) fn complete_by_ids(min: Option<i64>, max: Option<i64>, events: i64) -> bool {
    match (min, max) {
        (None, None) => events == 0,
        (Some(lo), Some(hi)) => lo >= 1 && hi == events,
        _ => false,
    }
}

/// The rows of `table` with a base_id, and the events the summaries count: equal when
/// the summaries are complete.
pub(crate) fn totals_sql(table: &str) -> String {
    format!(
        "SELECT (SELECT count(*) FROM {table} WHERE base_id IS NOT NULL), \
         (SELECT coalesce(sum(events), 0) FROM {SUMMARY})"
    )
}

/// Whether every filter of `q` is numeric, so that SQL can page.
fn paged(q: &TraceQuery) -> bool {
    q.service.is_none() && q.name.is_none() && q.text.is_none()
}

/// The summaries `q`'s numeric filters pass, newest first; one page (and a row more, to
/// tell if there are more) when [`paged`].
pub(crate) fn page_sql(q: &TraceQuery) -> String {
    let mut sql = format!(
        "SELECT {SUMMARY_COLUMNS} FROM {SUMMARY} WHERE {} \
         ORDER BY first_us DESC, base_id DESC",
        conditions(q)
    );
    if paged(q)
        && let Some(l) = q.limit
    {
        sql.push_str(&format!(
            " LIMIT {} OFFSET {}",
            l.saturating_add(1),
            q.offset
        ));
    }
    sql
}

/// Every trace of `table` with its row count, newest first: the fallback when the
/// summaries are not complete.
pub(crate) fn counts_sql(table: &str) -> String {
    format!(
        "SELECT base_id, count(*), min(timestamp) AS started FROM {table} \
         WHERE base_id IS NOT NULL AND timestamp IS NOT NULL \
         GROUP BY base_id ORDER BY started DESC, base_id DESC"
    )
}

/// One page of `q`: from the summaries when they count every row of `data`, else per trace
/// from its summary when complete and from its events otherwise.
pub(crate) fn search<S: Source + ?Sized>(
    src: &mut S,
    q: &TraceQuery,
    table: &str,
) -> Result<TracePage, String> {
    let ids = src.rows(&ids_sql(table))?;
    let all_complete = ids
        .first()
        .is_some_and(|r| complete_by_ids(opt_int_at(r, 0), opt_int_at(r, 1), int_at(r, 2)))
        || {
            let totals = src.rows(&totals_sql(table))?;
            totals.first().is_some_and(|r| int_at(r, 0) == int_at(r, 1))
        };
    let want = q.limit.map(|l| q.offset.saturating_add(l));
    let mut matched: Vec<TraceOverview> = Vec::new();
    let mut more = false;
    let mut push = |t: TraceOverview, matched: &mut Vec<TraceOverview>| {
        if want.is_some_and(|w| matched.len() >= w) {
            more = true;
            false
        } else {
            matched.push(t);
            true
        }
    };
    if all_complete {
        // Paging in SQL when every filter is numeric; else the filters that need the
        // sets or the events run here, on the rows the numeric ones pass.
        let paged = paged(q);
        let sql = page_sql(q);
        let mut rows: Vec<Stored> = src
            .rows(&sql)?
            .iter()
            .filter_map(|r| parse_row(r))
            .collect();
        if paged {
            let more = q.limit.is_some_and(|l| rows.len() > l);
            rows.truncate(q.limit.unwrap_or(usize::MAX));
            fill_members(src, &mut rows)?;
            let traces = rows.into_iter().map(|s| s.overview).collect();
            return Ok(TracePage { traces, more });
        }
        fill_members(src, &mut rows)?;
        for s in rows {
            if !q.matches(&s.overview) {
                continue;
            }
            if q.text.is_some() && !q.text_matches(&src.texts(&s.overview.base_id)?) {
                continue;
            }
            if !push(s.overview, &mut matched) {
                break;
            }
        }
    } else {
        // Every trace with its row count, newest first, as `list_traces` orders them.
        let counts = src.rows(&counts_sql(table))?;
        let mut stored: Vec<Stored> = src
            .rows(&format!("SELECT {SUMMARY_COLUMNS} FROM {SUMMARY}"))?
            .iter()
            .filter_map(|r| parse_row(r))
            .collect();
        let count_of: HashMap<&str, i64> = counts
            .iter()
            .filter_map(|r| Some((r.first()?.as_deref()?, int_at(r, 1))))
            .collect();
        stored.retain(|s| count_of.get(s.overview.base_id.as_str()) == Some(&s.events));
        fill_members(src, &mut stored)?;
        let mut complete: HashMap<String, TraceOverview> = stored
            .into_iter()
            .map(|s| (s.overview.base_id.clone(), s.overview))
            .collect();
        for r in &counts {
            let Some(id) = r.first().cloned().flatten() else {
                continue;
            };
            let t = match complete.remove(&id) {
                Some(t) => {
                    if !q.matches(&t) || (q.text.is_some() && !q.text_matches(&src.texts(&id)?)) {
                        continue;
                    }
                    t
                }
                None => match from_events(src, q, &id)? {
                    Some(t) => t,
                    None => continue,
                },
            };
            if !push(t, &mut matched) {
                break;
            }
        }
    }
    let traces = matched.into_iter().skip(q.offset).collect();
    Ok(TracePage { traces, more })
}

#[cfg(test)]
mod tests {
    use super::complete_by_ids;

    #[test]
    fn complete_only_when_the_ids_leave_no_room() {
        // An empty table, with or without summaries (summaries without rows: a row deleted).
        assert!(complete_by_ids(None, None, 0));
        assert!(!complete_by_ids(None, None, 3));
        // Ids 1..=80, 80 events counted.
        assert!(complete_by_ids(Some(1), Some(80), 80));
        // A gap (a rolled-back batch) or another writer's rows: count instead.
        assert!(!complete_by_ids(Some(1), Some(81), 80));
        assert!(!complete_by_ids(Some(5), Some(90), 80));
        // An id below 1 makes room for more rows than `max`.
        assert!(!complete_by_ids(Some(0), Some(80), 80));
        assert!(!complete_by_ids(Some(-4), Some(80), 80));
        // Fewer ids than counted events cannot be our rows all there.
        assert!(!complete_by_ids(Some(1), Some(79), 80));
        assert!(!complete_by_ids(Some(1), None, 0));
    }
}
