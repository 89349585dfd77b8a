//! Two traces' trees matched node by node, for the compare page.
//!
//! A point of trace A matches a point of trace B when their parents match (the implicit
//! roots match) and they have the same service, category and name (what the point did:
//! `POST /v2.1/servers`, a function, an SQL statement). Siblings with the same key are
//! matched in start order: the second `db` call under a request matches the second one.
//! Everything else is present in one trace only, and so is all below it.

use std::collections::{HashMap, VecDeque};

use osprofiler_report::{Node, Report};
use serde_json::{Value, json};

/// How many rows the biggest-differences table gets.
const BIGGEST: usize = 50;

/// One point's figures in one of the traces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Side {
    pub trace_id: String,
    /// Microseconds from its trace's first event.
    pub started_us: i64,
    pub duration_us: i64,
    pub error: bool,
}

/// One line of the side-by-side trees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Row {
    /// 1 for top-level points.
    pub depth: usize,
    pub service: String,
    pub category: String,
    pub name: String,
    pub a: Option<Side>,
    pub b: Option<Side>,
    /// Present in one trace only while its parent is in both (or it is top level): the
    /// point where the trees part, the one the differences table lists.
    pub parts: bool,
}

impl Row {
    /// B's duration less A's; a point in one trace only counts as all its time.
    pub fn diff_us(&self) -> i64 {
        let d = |s: &Option<Side>| s.as_ref().map_or(0, |s| s.duration_us);
        d(&self.b) - d(&self.a)
    }

    pub fn matched(&self) -> bool {
        self.a.is_some() && self.b.is_some()
    }
}

/// The matched trees, in display order (depth first, B-only points beside where they
/// would be among A's).
#[derive(Debug, Clone, Default)]
pub(crate) struct Comparison {
    pub rows: Vec<Row>,
}

/// What the point did, as the trace list names root points (but whole, its spaces
/// collapsed): the HTTP request, the function, the SQL statement, the outgoing request;
/// `""` for none.
pub(crate) fn point_name(node: &Node) -> String {
    let Some(info) = node.start_payload().and_then(|e| e.get("info")) else {
        return String::new();
    };
    osprofiler_store::point_name(|k| info.get(k))
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// The name as matching sees it: ids and numbers (`/servers/<uuid>`, `LIMIT 5`,
/// `demo-vm-2`) stand for any id or number, so that two requests for different objects
/// still match.
fn match_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for word in name.split_inclusive(|c: char| !c.is_ascii_alphanumeric() && c != '-') {
        let (body, sep) = match word.char_indices().last() {
            Some((i, c)) if !c.is_ascii_alphanumeric() && c != '-' => word.split_at(i),
            _ => (word, ""),
        };
        let uuid = body.len() == 36
            && body.bytes().enumerate().all(|(i, b)| {
                if matches!(i, 8 | 13 | 18 | 23) {
                    b == b'-'
                } else {
                    b.is_ascii_hexdigit()
                }
            });
        if uuid {
            out.push_str("{id}");
        } else {
            // Each run of digits is one number.
            let mut in_digits = false;
            for c in body.chars() {
                if c.is_ascii_digit() {
                    if !in_digits {
                        out.push_str("{n}");
                    }
                    in_digits = true;
                } else {
                    in_digits = false;
                    out.push(c);
                }
            }
        }
        out.push_str(sep);
    }
    out
}

type Key = (String, String, String);

fn key(node: &Node) -> Key {
    (
        node.service().unwrap_or_default().to_owned(),
        node.name().to_owned(),
        match_name(&point_name(node)),
    )
}

fn side(node: &Node) -> Side {
    Side {
        trace_id: node.trace_id().to_owned(),
        started_us: node.started_us(),
        duration_us: node.duration_us(),
        error: node.is_error(),
    }
}

impl Comparison {
    /// Matches report `a` against report `b`.
    pub fn new(a: &Report, b: &Report) -> Comparison {
        let mut c = Comparison::default();
        c.siblings(a.roots(), b.roots(), 1, true);
        c
    }

    fn row(&mut self, node: &Node, depth: usize, a: Option<&Node>, b: Option<&Node>, parts: bool) {
        self.rows.push(Row {
            depth,
            service: node.service().unwrap_or_default().to_owned(),
            category: node.name().to_owned(),
            name: point_name(node),
            a: a.map(side),
            b: b.map(side),
            parts,
        });
    }

    /// Matches two lists of siblings and everything below them. `in_both`: their parent
    /// is in both traces.
    fn siblings(&mut self, a: &[Node], b: &[Node], depth: usize, in_both: bool) {
        let mut free: HashMap<Key, VecDeque<usize>> = HashMap::new();
        for (j, n) in b.iter().enumerate() {
            free.entry(key(n)).or_default().push_back(j);
        }
        let mut partner = vec![None; a.len()];
        // Below a point of one trace only, nothing has a partner: no key to make.
        if !b.is_empty() {
            for (i, n) in a.iter().enumerate() {
                partner[i] = free.get_mut(&key(n)).and_then(VecDeque::pop_front);
            }
        }
        // B's unmatched points go after the A point whose partner comes before them in B
        // (before all of A's when none does).
        let mut a_of_b = vec![None; b.len()];
        for (i, j) in partner.iter().enumerate() {
            if let Some(j) = j {
                a_of_b[*j] = Some(i);
            }
        }
        let mut after: Vec<Vec<usize>> = vec![Vec::new(); a.len() + 1];
        let mut anchor = 0;
        for (j, partner_of_j) in a_of_b.iter().enumerate() {
            match *partner_of_j {
                Some(i) => anchor = anchor.max(i + 1),
                None => after[anchor].push(j),
            }
        }
        let only_b = |c: &mut Comparison, slot: &[usize]| {
            for &j in slot {
                c.row(&b[j], depth, None, Some(&b[j]), in_both);
                c.siblings(&[], b[j].children(), depth + 1, false);
            }
        };
        only_b(self, &after[0]);
        for (i, n) in a.iter().enumerate() {
            match partner[i] {
                Some(j) => {
                    self.row(n, depth, Some(n), Some(&b[j]), false);
                    self.siblings(n.children(), b[j].children(), depth + 1, true);
                }
                None => {
                    self.row(n, depth, Some(n), None, in_both);
                    self.siblings(n.children(), &[], depth + 1, false);
                }
            }
            only_b(self, &after[i + 1]);
        }
    }

    /// Indices of the matched rows and of the points where the trees part, biggest
    /// difference first (ties in display order), at most `n`.
    pub fn biggest(&self, n: usize) -> Vec<usize> {
        let mut idx: Vec<usize> = (0..self.rows.len())
            .filter(|&i| self.rows[i].matched() || self.rows[i].parts)
            .collect();
        idx.sort_by_key(|&i| (std::cmp::Reverse(self.rows[i].diff_us().unsigned_abs()), i));
        idx.truncate(n);
        idx
    }

    /// The comparison as `/api/compare/{a}/{b}` gives it.
    pub fn to_json(&self, a: (&str, &Report), b: (&str, &Report)) -> Value {
        let side_json = |s: &Option<Side>| {
            s.as_ref().map(|s| {
                json!({"trace_id": s.trace_id, "started_us": s.started_us,
                       "duration_us": s.duration_us, "error": s.error})
            })
        };
        let rows: Vec<Value> = self
            .rows
            .iter()
            .map(|r| {
                json!({
                    "depth": r.depth, "service": r.service, "category": r.category,
                    "name": r.name, "a": side_json(&r.a), "b": side_json(&r.b),
                    "diff_us": r.diff_us(), "parts": r.parts,
                })
            })
            .collect();
        let trace = |(id, r): (&str, &Report)| {
            json!({
                "base_id": id,
                "started": r.origin_unix_us().map(|us| osprofiler::Timestamp(us).to_string()),
                "duration_us": r.duration_us(),
                "points": r.len(),
            })
        };
        let count = |f: &dyn Fn(&Row) -> bool| self.rows.iter().filter(|r| f(r)).count();
        json!({
            "a": trace(a),
            "b": trace(b),
            "matched": count(&|r| r.matched()),
            "only_a": count(&|r| r.b.is_none()),
            "only_b": count(&|r| r.a.is_none()),
            "rows": rows,
            "biggest": self.biggest(BIGGEST),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVENTS: &str = include_str!("../../../../vectors/events.jsonl");

    /// The Python-written vector trace, with each event passed through `edit`.
    fn edited(edit: impl Fn(&mut Value)) -> Report {
        Report::from_events(EVENTS.lines().map(|l| {
            let mut v: Value = serde_json::from_str(l).unwrap();
            edit(&mut v);
            v
        }))
    }

    fn names(c: &Comparison) -> Vec<String> {
        c.rows
            .iter()
            .map(|r| {
                let mark = match (&r.a, &r.b) {
                    (Some(_), Some(_)) => "=",
                    (Some(_), None) => "A",
                    _ => "B",
                };
                format!(
                    "{}{mark} {}:{}",
                    " ".repeat(r.depth - 1),
                    r.service,
                    r.category
                )
            })
            .collect()
    }

    #[test]
    fn a_trace_matches_itself_entirely() {
        let r = Report::from_json_lines(EVENTS);
        let c = Comparison::new(&r, &r);
        assert_eq!(c.rows.len(), r.len());
        assert!(c.rows.iter().all(|row| row.matched() && row.diff_us() == 0));
        assert_eq!(
            names(&c),
            [
                "= api:wsgi",
                " = api:db",
                " = api:rpc",
                "  = conductor:driver",
                "  = conductor:db"
            ]
        );
        assert_eq!(c.rows[0].name, "POST /v2.1/servers");
        assert_eq!(c.rows[1].name, "__main__.quota_get");
    }

    #[test]
    fn differences_and_points_in_one_trace_only() {
        let a = Report::from_json_lines(EVENTS);
        // B: the quota call took 3 ms longer (its stop later; the rpc after it too, by
        // shifting nothing else) and the failing driver point is gone.
        let b = edited(|v| {
            let quota = v["trace_id"] == "aaaaaaaa-aaaa-4aaa-8aaa-000000000002";
            if quota && v["name"] == "db-stop" {
                v["timestamp"] = "2026-11-25T12:00:00.008500".into();
            }
            if v["name"].as_str().unwrap().starts_with("driver") {
                v["trace_id"] = "ffffffff-aaaa-4aaa-8aaa-000000000004".into();
                v["service"] = "compute".into();
            }
        });
        let c = Comparison::new(&a, &b);
        assert_eq!(
            names(&c),
            [
                "= api:wsgi",
                " = api:db",
                " = api:rpc",
                "  B compute:driver",
                "  A conductor:driver",
                "  = conductor:db"
            ]
        );
        let quota = &c.rows[1];
        assert_eq!(quota.diff_us(), 3_000);
        assert!(c.rows[3].parts && c.rows[4].parts && !quota.parts);
        // The biggest difference first: the driver in one trace each, then the quota call.
        let big = c.biggest(10);
        let driver_us = c.rows[4].a.as_ref().unwrap().duration_us;
        assert!(driver_us > 3_000);
        assert_eq!(&big[..2], &[3, 4]);
        assert_eq!(big[2], 1);
        let j = c.to_json(("a", &a), ("b", &b));
        assert_eq!(
            (
                j["matched"].as_u64(),
                j["only_a"].as_u64(),
                j["only_b"].as_u64()
            ),
            (Some(4), Some(1), Some(1))
        );
        assert_eq!(j["rows"][1]["diff_us"], 3_000);
        assert_eq!(j["rows"][3]["a"], Value::Null);
    }

    #[test]
    fn repeated_siblings_match_in_order_and_extras_stay_unmatched() {
        // B runs the SQL statement under the rpc twice: the first matches A's, the second
        // is B's only.
        let mut lines: Vec<Value> = EVENTS
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let extra: Vec<Value> = lines
            .iter()
            .filter(|v| v["trace_id"] == "aaaaaaaa-aaaa-4aaa-8aaa-000000000005")
            .map(|v| {
                let mut v = v.clone();
                v["trace_id"] = "aaaaaaaa-aaaa-4aaa-8aaa-0000000000ff".into();
                v
            })
            .collect();
        assert_eq!(extra.len(), 2, "the vector's SQL point");
        lines.extend(extra);
        let a = Report::from_json_lines(EVENTS);
        let b = Report::from_events(lines);
        let c = Comparison::new(&a, &b);
        let only_b: Vec<_> = c.rows.iter().filter(|r| r.a.is_none()).collect();
        assert_eq!(only_b.len(), 1);
        assert_eq!(only_b[0].category, "db");
        // Both copies start at the same time; in order means A's matches B's first.
        let sql = c
            .rows
            .iter()
            .find(|r| r.matched() && r.depth == 3 && r.category == "db")
            .unwrap();
        assert_ne!(
            sql.b.as_ref().unwrap().trace_id,
            "aaaaaaaa-aaaa-4aaa-8aaa-0000000000ff"
        );
        // Swapped: the extra one is A's only.
        let c = Comparison::new(&b, &a);
        assert_eq!(c.rows.iter().filter(|r| r.b.is_none()).count(), 1);
        assert_eq!(c.rows.iter().filter(|r| r.a.is_none()).count(), 0);
    }

    /// A chain of `depth` points, each the child of the one before, `extra_us` longer.
    fn chain(depth: usize, extra_us: i64) -> Report {
        let id = |i: usize| format!("aaaaaaaa-aaaa-4aaa-8aaa-{i:012}");
        let base = "11111111-1111-4111-8111-111111111111";
        let ts = |us: i64| osprofiler::Timestamp(1_790_000_000_000_000 + us).to_string();
        Report::from_events((0..depth).flat_map(|i| {
            let parent = if i == 0 { base.to_owned() } else { id(i - 1) };
            let ev = |kind: &str, us: i64| {
                json!({"name": format!("db-{kind}"), "base_id": base, "trace_id": id(i),
                       "parent_id": parent, "timestamp": ts(us), "service": "api",
                       "info": {"host": "h", "db": {"statement": format!("SELECT {i}")}}})
            };
            let i = i as i64;
            [ev("start", i), ev("stop", 10_000_000 - i + extra_us)]
        }))
    }

    #[test]
    fn the_deepest_trees_fit_a_worker_thread() {
        let a = chain(osprofiler_report::MAX_DEPTH, 0);
        let b = chain(osprofiler_report::MAX_DEPTH, 7);
        assert_eq!(a.len(), osprofiler_report::MAX_DEPTH);
        // tokio's threads have 2 MiB of stack.
        let rows = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || {
                let c = Comparison::new(&a, &b);
                let _ = c.to_json(("a", &a), ("b", &b)).to_string();
                c.rows
            })
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(rows.len(), osprofiler_report::MAX_DEPTH);
        assert!(rows.iter().all(|r| r.matched() && r.diff_us() == 7));
        assert_eq!(rows.last().unwrap().depth, osprofiler_report::MAX_DEPTH);
    }

    #[test]
    fn names_match_across_ids_and_numbers() {
        assert_eq!(
            match_name("GET /v2.1/servers/4f1c2a9e-0c1d-4b7e-9a55-27c5d7d0a111"),
            "GET /v{n}.{n}/servers/{id}"
        );
        assert_eq!(
            match_name("SELECT * FROM t LIMIT 5"),
            match_name("SELECT * FROM t LIMIT 10")
        );
        assert_ne!(match_name("SELECT a FROM t"), match_name("SELECT b FROM t"));
        assert_eq!(match_name("demo-vm-2"), "demo-vm-{n}");
    }
}
