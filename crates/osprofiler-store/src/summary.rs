//! Per-trace summaries ([`TraceOverview`]) and their search ([`TraceQuery`]).
//!
//! A summary is what a list of traces shows of each: first start, last stop, number of
//! points, services, root point and whether a point stopped with an error. Every store can
//! give them ([`TraceStore::search_traces`](crate::TraceStore::search_traces) builds them
//! from the events, so traces Python wrote are summarised too); SQLite keeps them up to date
//! on the write side, so that listing reads one row per trace.

use std::collections::BTreeSet;

use osprofiler::Timestamp;
use osprofiler_report::Report;
use serde_json::Value;

use crate::{ReadError, TraceStore};

/// Longest root point name kept (an SQL statement can be long); cut at a char boundary.
const MAX_NAME: usize = 120;

/// One trace as a list of traces shows it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TraceOverview {
    /// The trace's base id.
    pub base_id: String,
    /// Its first event, microseconds since the Unix epoch (UTC).
    pub started_us: i64,
    /// Its last event, microseconds since the Unix epoch (UTC).
    pub finished_us: i64,
    /// How many points it has (start events).
    pub points: u64,
    /// The services that recorded its points, sorted, without repeats.
    pub services: Vec<String>,
    /// The point names (categories: `wsgi`, `db`, …), sorted, without repeats.
    pub categories: Vec<String>,
    /// Its root point: the first-level point that started first (else the first point).
    pub root: Option<RootPoint>,
    /// Whether a point stopped with an error (`info.etype`).
    pub error: bool,
}

/// The point a trace starts with.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RootPoint {
    /// The service that recorded it (`""` when none did).
    pub service: String,
    /// Its category (point name): `wsgi`, `rpc`, …
    pub category: String,
    /// What it did: `POST /v2.1/servers`, a function's name, an SQL statement; may be empty.
    pub name: String,
}

impl RootPoint {
    /// `service · category · name`, the parts that are not empty.
    pub fn label(&self) -> String {
        [&self.service, &self.category, &self.name]
            .iter()
            .filter(|s| !s.is_empty())
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(" · ")
    }
}

impl TraceOverview {
    /// From the last event to the first, in microseconds.
    pub fn duration_us(&self) -> i64 {
        self.finished_us - self.started_us
    }

    /// When it started, as an osprofiler timestamp (naive UTC, six decimals).
    pub fn started(&self) -> String {
        Timestamp(self.started_us).to_string()
    }

    /// The summary of a report (`base_id` is the trace's).
    pub fn from_report(base_id: &str, report: &Report) -> TraceOverview {
        Self::from_report_ranked(base_id, report).0
    }

    /// The summary, and its root's [`root_rank`].
    pub(crate) fn from_report_ranked(base_id: &str, report: &Report) -> (TraceOverview, i64) {
        let started_us = report.origin_unix_us().unwrap_or_default();
        let mut services = BTreeSet::new();
        let mut categories = BTreeSet::new();
        let mut points = 0u64;
        let mut error = false;
        for (_depth, node) in report.iter() {
            points += 1;
            if let Some(s) = node.service() {
                services.insert(one_line(s));
            }
            categories.insert(one_line(node.name()));
            error |= node.is_error();
        }
        let roots = report.roots();
        let root_node = roots
            .iter()
            .find(|n| n.parent_id() == Some(base_id))
            .or_else(|| roots.first());
        let rank = root_node.map_or(i64::MAX, |n| {
            root_rank(n.parent_id() == Some(base_id), started_us + n.started_us())
        });
        let root = root_node.map(|n| RootPoint {
            service: n.service().map(one_line).unwrap_or_default(),
            category: one_line(n.name()),
            name: n
                .start_payload()
                .and_then(|e| e.get("info"))
                .map(|info| root_name(|k| info.get(k)))
                .unwrap_or_default(),
        });
        let overview = TraceOverview {
            base_id: base_id.to_owned(),
            started_us,
            finished_us: started_us + report.duration_us(),
            points,
            services: services.into_iter().collect(),
            categories: categories.into_iter().collect(),
            root,
            error,
        };
        (overview, rank)
    }

    /// The summary as JSON (what `trace list --json` and the UI's `/api/traces` give).
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "base_id": self.base_id,
            "started": self.started(),
            "started_us": self.started_us,
            "finished_us": self.finished_us,
            "duration_ms": self.duration_us() as f64 / 1000.0,
            "points": self.points,
            "services": self.services,
            "categories": self.categories,
            "root": self.root.as_ref().map(|r| serde_json::json!({
                "service": r.service, "category": r.category, "name": r.name, "label": r.label(),
            })),
            "error": self.error,
        })
    }
}

/// Orders root candidates (lowest first): first-level points (parent = the base id)
/// before the others, then by start (microseconds since the epoch).
pub(crate) fn root_rank(first_level: bool, started_us: i64) -> i64 {
    const OTHER_LEVEL: i64 = 1 << 60;
    if first_level {
        started_us
    } else {
        started_us.saturating_add(OTHER_LEVEL)
    }
}

/// `s` on one line (list columns, and SQLite's newline-separated sets).
pub(crate) fn one_line(s: &str) -> String {
    if s.contains(['\n', '\r']) {
        s.replace(['\n', '\r'], " ")
    } else {
        s.to_owned()
    }
}

/// What a point did, from its start event's info (`get` looks up one key), on one line:
/// `info.request` (HTTP server: `METHOD path`), `info.function.name`, `info.db.statement`,
/// `info.requests` (HTTP client: `METHOD hostname path`); `""` for none. The root point's
/// name in [`TraceOverview`] (cut at 120 bytes there), and `osprofiler ui`'s compare
/// matches points by it.
///
/// ```
/// use serde_json::json;
/// let info = json!({"request": {"method": "GET", "path": "/v2.1/servers"}});
/// assert_eq!(osprofiler_store::point_name(|k| info.get(k)), "GET /v2.1/servers");
/// ```
pub fn point_name<'a>(get: impl Fn(&str) -> Option<&'a Value>) -> String {
    let text = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or_default().to_owned();
    let joined = |parts: &[String]| {
        parts
            .iter()
            .filter(|p| !p.is_empty())
            .cloned()
            .collect::<Vec<_>>()
            .join(" ")
    };
    let name = if let Some(r) = get("request").filter(|v| v.is_object()) {
        joined(&[text(r.get("method")), text(r.get("path"))])
    } else if let Some(f) = get("function").and_then(|f| f.get("name")) {
        text(Some(f))
    } else if let Some(s) = get("db").and_then(|d| d.get("statement")) {
        text(Some(s))
    } else if let Some(r) = get("requests").filter(|v| v.is_object()) {
        joined(&[
            text(r.get("method")),
            text(r.get("hostname")),
            text(r.get("path")),
        ])
    } else {
        String::new()
    };
    one_line(name.trim())
}

/// [`point_name`] as summaries keep it: at most [`MAX_NAME`] bytes, `…` where cut.
pub(crate) fn root_name<'a>(get: impl Fn(&str) -> Option<&'a Value>) -> String {
    let mut name = point_name(get);
    if name.len() > MAX_NAME {
        let mut cut = MAX_NAME;
        while !name.is_char_boundary(cut) {
            cut -= 1;
        }
        name.truncate(cut);
        name.push('…');
    }
    name
}

/// Which traces to list; every filter is optional and they all apply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceQuery {
    /// A point was recorded by this service (exact).
    pub service: Option<String>,
    /// A point has this name (category, exact: `db`), or the root point's name contains it
    /// (ASCII case ignored: `servers`).
    pub name: Option<String>,
    /// Some event's stored JSON text contains this (ASCII case ignored): a path, an SQL
    /// statement, a function's name. Non-ASCII text is searched as stored, which for
    /// Python's events is `\uXXXX` escapes.
    pub text: Option<String>,
    /// Lasted at least this long (microseconds).
    pub min_duration_us: Option<i64>,
    /// Lasted at most this long (microseconds).
    pub max_duration_us: Option<i64>,
    /// Only traces with an error.
    pub errors_only: bool,
    /// Started at or after (microseconds since the Unix epoch).
    pub since_us: Option<i64>,
    /// Started before (microseconds since the Unix epoch).
    pub until_us: Option<i64>,
    /// Traces to skip (newest first) before the page.
    pub offset: usize,
    /// Most traces in the page; `None`: all.
    pub limit: Option<usize>,
}

/// One page of a search.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TracePage {
    /// The traces, newest first.
    pub traces: Vec<TraceOverview>,
    /// Whether more traces match after this page.
    pub more: bool,
}

impl TraceQuery {
    /// Whether `t` passes the filters on its summary (all but [`TraceQuery::text`] and
    /// paging).
    pub fn matches(&self, t: &TraceOverview) -> bool {
        if self.errors_only && !t.error {
            return false;
        }
        if self.since_us.is_some_and(|s| t.started_us < s)
            || self.until_us.is_some_and(|u| t.started_us >= u)
        {
            return false;
        }
        let d = t.duration_us();
        if self.min_duration_us.is_some_and(|m| d < m)
            || self.max_duration_us.is_some_and(|m| d > m)
        {
            return false;
        }
        if let Some(s) = &self.service
            && !t.services.iter().any(|x| x == s)
        {
            return false;
        }
        if let Some(n) = &self.name {
            let in_root = t.root.as_ref().is_some_and(|r| {
                r.name
                    .to_ascii_lowercase()
                    .contains(&n.to_ascii_lowercase())
            });
            if !in_root && !t.categories.iter().any(|c| c == n) {
                return false;
            }
        }
        true
    }

    /// Whether one of `texts` contains [`TraceQuery::text`] (true without one).
    pub fn text_matches<S: AsRef<str>>(&self, texts: &[S]) -> bool {
        match &self.text {
            None => true,
            Some(q) => {
                let q = q.to_ascii_lowercase();
                texts
                    .iter()
                    .any(|t| t.as_ref().to_ascii_lowercase().contains(&q))
            }
        }
    }
}

/// The summary of trace `id` from its event texts, if it has events and passes `query`:
/// how every store summarises a trace that has no summary of its own.
pub(crate) fn overview_from_texts(
    id: &str,
    texts: Vec<String>,
    query: &TraceQuery,
) -> Option<TraceOverview> {
    if texts.is_empty() || !query.text_matches(&texts) {
        return None;
    }
    let report = Report::from_json_texts(texts);
    if report.is_empty() {
        return None;
    }
    let t = TraceOverview::from_report(id, &report);
    query.matches(&t).then_some(t)
}

/// [`TraceStore::search_traces`]'s default: lists the traces, reads each one's events.
pub(crate) fn search_by_events<S: TraceStore + ?Sized>(
    store: &mut S,
    query: &TraceQuery,
) -> Result<TracePage, ReadError> {
    let candidates = if query.errors_only {
        store.list_error_traces(None)?
    } else {
        store.list_traces(None)?
    };
    let want = query.limit.map(|l| query.offset.saturating_add(l));
    let mut matched = Vec::new();
    let mut more = false;
    for c in candidates {
        // The listed start is the first event's, as the summary's: skip by time
        // before reading any event.
        if let Ok(ts) = c.timestamp.parse::<osprofiler::Timestamp>() {
            let us = ts.as_micros();
            if query.since_us.is_some_and(|s| us < s) || query.until_us.is_some_and(|u| us >= u) {
                continue;
            }
        }
        let texts = store.event_texts(&c.base_id)?;
        let Some(t) = overview_from_texts(&c.base_id, texts, query) else {
            continue;
        };
        if want.is_some_and(|w| matched.len() >= w) {
            more = true;
            break;
        }
        matched.push(t);
    }
    let traces = matched.into_iter().skip(query.offset).collect();
    Ok(TracePage { traces, more })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn point_names() {
        let info = json!({"request": {"method": "POST", "path": "/v2.1/servers"}});
        assert_eq!(point_name(|k| info.get(k)), "POST /v2.1/servers");
        let info = json!({"function": {"name": "nova.compute.build"}});
        assert_eq!(point_name(|k| info.get(k)), "nova.compute.build");
        let info = json!({"db": {"statement": "SELECT 1\nFROM x"}});
        assert_eq!(point_name(|k| info.get(k)), "SELECT 1 FROM x");
        let long = "é".repeat(100);
        let info = json!({"function": {"name": long}});
        let n = root_name(|k| info.get(k));
        assert!(
            n.ends_with('…') && n.len() <= MAX_NAME + '…'.len_utf8(),
            "{n}"
        );
        assert_eq!(point_name(|_| None), "");
    }

    #[test]
    fn labels_skip_empty_parts() {
        let r = RootPoint {
            service: "api".into(),
            category: "wsgi".into(),
            name: String::new(),
        };
        assert_eq!(r.label(), "api · wsgi");
    }
}
