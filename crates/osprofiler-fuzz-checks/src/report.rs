//! Events to report: `ReportBuilder`, `Report::{from_json_texts, from_json_lines,
//! from_events}`, and the JSON, DOT and HTML renderers.
//!
//! Input: JSON lines when the bytes start like JSON (`{`, `[`, `"` or whitespace), else
//! the bytes drive a generator of events: points missing their start or stop, cycles and
//! chains deeper than `MAX_DEPTH` in `parent_id`s, duplicated and conflicting events, huge
//! and hostile strings (`</script>`), odd timestamps, values nested past the JSON parser's
//! limit.
//!
//! Properties: nothing panics; every event is either taken or counted as skipped (and a
//! well-formed one is taken); every distinct `trace_id` taken is exactly one point of the
//! report, with the halves it was given; a point hangs under the point its `parent_id`
//! names or from the root, never deeper than `MAX_DEPTH`, and `detached` counts the roots
//! whose parent is in the trace; duplicates are counted; the JSON text parses and is the
//! `to_json` value; the DOT text is balanced; the HTML page has only its own script
//! elements, and its data block is JSON holding every point; the order of the events, and
//! text or `Value`, change nothing.

use std::collections::BTreeSet;

use arbitrary::Unstructured;
use osprofiler_report::{MAX_DEPTH, Node, Report, ReportBuilder, render_dot, render_html};
use serde_json::{Map, Value, json};

/// Runs the properties on one input.
pub fn check(data: &[u8]) {
    if data
        .first()
        .is_some_and(|b| matches!(b, b'{' | b'[' | b'"' | b' ' | b'\t' | b'\r' | b'\n'))
    {
        let text = String::from_utf8_lossy(data);
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        let report = properties(&lines, &[], "trace");
        let from_lines = Report::from_json_lines(&text);
        assert_eq!(
            from_lines.to_json_string(),
            report.to_json_string(),
            "from_json_lines differs from from_json_texts"
        );
    } else {
        let mut u = Unstructured::new(data);
        let title = crate::pick_or_any(&mut u, &["Trace", "</title><script>alert(1)</script>"]);
        let (texts, valid) = generate(&mut u);
        let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
        properties(&texts, &valid, &title);
    }
}

const START: usize = 0;
const STOP: usize = 1;

/// Checks the report of `texts`; `valid` are indices of events that must be taken.
fn properties(texts: &[&str], valid: &[usize], title: &str) -> Report {
    let mut builder = ReportBuilder::new();
    // (trace_id, phase) of each event taken.
    let mut taken: Vec<(String, usize)> = Vec::new();
    for (i, text) in texts.iter().enumerate() {
        match builder.push_text(*text) {
            Ok(()) => {
                let v: Value = serde_json::from_str(text).expect("a taken event is JSON");
                let id = v["trace_id"]
                    .as_str()
                    .expect("a taken event has a trace_id");
                let name = v["name"].as_str().expect("a taken event has a name");
                let phase = if name.ends_with("-start") {
                    START
                } else {
                    STOP
                };
                taken.push((id.to_owned(), phase));
            }
            Err(e) => {
                assert!(
                    !valid.contains(&i),
                    "a valid event was refused ({e}): {text}"
                );
                let _ = e.to_string();
            }
        }
    }
    let report = builder.finish();

    // Every point given is there once, with the halves it was given.
    let ids: BTreeSet<&str> = taken.iter().map(|(id, _)| id.as_str()).collect();
    let halves: BTreeSet<(&str, usize)> = taken.iter().map(|(id, p)| (id.as_str(), *p)).collect();
    assert_eq!(report.len(), ids.len(), "points lost or made up");
    assert_eq!(report.skipped(), texts.len() - taken.len());
    assert_eq!(report.duplicates(), taken.len() - halves.len());
    let mut seen: Vec<&str> = Vec::new();
    let mut detached = 0;
    for (depth, node) in &report {
        seen.push(node.trace_id());
        assert!(depth <= MAX_DEPTH, "a point nests deeper than MAX_DEPTH");
        let id = node.trace_id();
        assert_eq!(node.start_raw().is_some(), halves.contains(&(id, START)));
        assert_eq!(node.stop_raw().is_some(), halves.contains(&(id, STOP)));
        for child in node.children() {
            assert_eq!(
                child.parent_id(),
                Some(id),
                "a point hangs under another parent"
            );
        }
        assert!(
            node.children()
                .windows(2)
                .all(|w| w[0].started_us() <= w[1].started_us()),
            "children not sorted by start"
        );
        if depth == 1 && node.parent_id().is_some_and(|p| ids.contains(p)) {
            detached += 1;
        }
    }
    seen.sort_unstable();
    assert_eq!(
        seen,
        ids.iter().copied().collect::<Vec<_>>(),
        "points lost or doubled"
    );
    assert_eq!(report.detached(), detached, "detached miscounted");
    let _ = (report.by_category(), report.by_service(), report.errors());
    let path = report.critical_path();
    for w in path.windows(2) {
        assert_eq!(
            w[1].parent_id(),
            Some(w[0].trace_id()),
            "critical path is not a chain"
        );
    }

    // JSON: the text parses, and is the value.
    let value = report.to_json();
    assert_eq!(count_nodes(&value["children"]), report.len());
    let text = report.to_json_string();
    let parsed = parse_deep(&text).expect("to_json_string is JSON");
    assert!(same_json(&parsed, &value), "to_json_string is not to_json");
    let extended = serde_json::to_string(&report.to_json_extended()).expect("serializes");
    parse_deep(&extended).expect("to_json_extended is JSON");

    // DOT: balanced, one node per point and the root.
    let dot = render_dot(&report);
    dot_balanced(&dot);
    assert_eq!(
        dot.lines().filter(|l| l.contains(" [label=\"")).count(),
        report.len() + 1
    );

    // HTML: nothing from the trace opens or closes an element of its own.
    let html = render_html(&report, title);
    html_safe(&html, &report);

    // The set of events decides: reversed, or as `Value`s, the same report.
    let reversed = Report::from_json_texts(texts.iter().rev().copied());
    assert_eq!(
        reversed.to_json_string(),
        text,
        "the order of events changes the report"
    );
    assert_eq!(
        render_dot(&reversed),
        dot,
        "the order of events changes the DOT"
    );
    let values = texts
        .iter()
        .filter_map(|t| serde_json::from_str::<Value>(t).ok());
    let from_values = Report::from_events(values);
    assert_eq!(
        shape(&from_values),
        shape(&report),
        "Values give another report"
    );
    report
}

/// Parses JSON without serde_json's nesting limit (128): a report nests two levels per
/// point, up to `MAX_DEPTH` points deep. (Readers with that limit, or Python's 1000, cannot
/// read the deepest reports back.)
fn parse_deep(text: &str) -> serde_json::Result<Value> {
    use serde::Deserialize;
    let mut de = serde_json::Deserializer::from_str(text);
    de.disable_recursion_limit();
    let v = Value::deserialize(&mut de)?;
    de.end()?;
    Ok(v)
}

/// Nodes in a report JSON `children` list, recursively.
fn count_nodes(children: &Value) -> usize {
    children.as_array().map_or(0, |c| {
        c.iter()
            .map(|n| 1 + count_nodes(&n["children"]))
            .sum::<usize>()
    })
}

/// The tree and times of a report, for comparing reports built two ways.
fn shape(report: &Report) -> Value {
    fn node(n: &Node) -> Value {
        json!([
            n.trace_id(),
            n.started_us(),
            n.finished_us(),
            n.children().iter().map(node).collect::<Vec<_>>()
        ])
    }
    json!([
        report.roots().iter().map(node).collect::<Vec<_>>(),
        report.duplicates()
    ])
}

/// JSON values equal, keys in the same order, floats within rounding (serde_json's parser
/// is not correctly rounded without its `float_roundtrip` feature).
fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len()
                && a.iter()
                    .zip(b.iter())
                    .all(|((ka, va), (kb, vb))| ka == kb && same_json(va, vb))
        }
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(a, b)| same_json(a, b))
        }
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
            x == y || (x - y).abs() <= 4.0 * f64::EPSILON * x.abs().max(y.abs())
        }
        _ => a == b,
    }
}

/// Braces balance outside the quoted strings, and every string is closed.
fn dot_balanced(dot: &str) {
    assert!(
        dot.starts_with("digraph {\n") && dot.ends_with("}\n"),
        "{dot}"
    );
    let (mut depth, mut quoted, mut escaped) = (0_i64, false, false);
    for c in dot.chars() {
        if quoted {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => quoted = false,
                (false, '\n' | '\r') => panic!("a line break inside a DOT string"),
                _ => {}
            }
            continue;
        }
        match c {
            '"' => quoted = true,
            '{' => depth += 1,
            '}' => depth -= 1,
            _ => {}
        }
        assert!(depth >= 0, "unbalanced DOT");
    }
    assert!(!quoted && depth == 0, "unbalanced DOT");
}

/// The page's own markup, that of an empty report.
fn template_counts() -> &'static [usize] {
    static COUNTS: std::sync::OnceLock<Vec<usize>> = std::sync::OnceLock::new();
    COUNTS.get_or_init(|| markup_counts(&render_html(&Report::default(), "")))
}

fn markup_counts(html: &str) -> Vec<usize> {
    let lower = html.to_ascii_lowercase();
    [
        "<script", "</script", "<!--", "<title", "</title", "<style", "</style",
    ]
    .iter()
    .map(|m| lower.matches(m).count())
    .collect()
}

fn html_safe(html: &str, report: &Report) {
    assert_eq!(
        markup_counts(html),
        template_counts(),
        "trace text made markup"
    );
    const OPEN: &str = r#"<script type="application/json" id="trace-data">"#;
    let at = html.find(OPEN).expect("the page has its data block") + OPEN.len();
    let end = at
        + html[at..]
            .find("</script>")
            .expect("the data block is closed");
    let block = &html[at..end];
    assert!(
        !block.contains(['<', '>', '\u{2028}', '\u{2029}']),
        "raw markup in the data"
    );
    let data = parse_deep(block).expect("the data block is JSON");
    assert_eq!(data["n"].as_u64(), Some(report.len() as u64));
    assert_eq!(data["pt"].as_array().map(Vec::len), Some(report.len()));
}

/// Strings a generated event may carry.
const STRINGS: &[&str] = &[
    "",
    "api",
    "nova",
    "host-a",
    "<script>alert(1)</script>",
    "</script><!--",
    "</SCRIPT >",
    "\u{2028}\u{2029}",
    "\"\\\n\t{}",
    "ünïcødé ☃ 𝄞",
    "a-start",
    "None",
];

/// Timestamps: valid ones from a base and an offset, and odd ones.
fn timestamp(u: &mut Unstructured<'_>) -> (Value, bool) {
    let odd = [
        "2026-11-25T12:00:00",
        "2026-11-25T12:00:00.5",
        "2026-11-25 12:00:00.000000",
        "2026-11-25T12:00:00.000000Z",
        "2026-02-29T00:00:00.000000",
        "2024-02-29T23:59:59.999999",
        "0001-01-01T00:00:00.000000",
        "9999-12-31T23:59:59.999999",
        "1970-1-2T3:04:05.5",
        "2026-11-25T24:00:00.000000",
        "",
    ];
    match u.int_in_range(0..=9).unwrap_or(0) {
        0 => (json!(crate::pick_or_any(u, &odd)), false),
        1 => (json!(u.arbitrary::<i64>().unwrap_or(0)), false),
        2 => (Value::Null, false),
        _ => {
            // Within a few seconds of a base, sometimes years away.
            let base = 1_795_608_000_000_000_i64;
            let off = if u.ratio(1, 8).unwrap_or(false) {
                u.int_in_range(-60_000_000_000_000..=200_000_000_000_000)
                    .unwrap_or(0)
            } else {
                i64::from(u.arbitrary::<i32>().unwrap_or(0))
            };
            (json!(stamp(base + off)), true)
        }
    }
}

/// Microseconds since the epoch → osprofiler's timestamp text.
fn stamp(us: i64) -> String {
    let secs = us.div_euclid(1_000_000);
    let micros = us.rem_euclid(1_000_000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}",
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    )
}

/// A value nested `depth` deep.
fn nested(depth: usize) -> Value {
    let mut v = json!("leaf");
    for i in 0..depth {
        v = if i % 2 == 0 {
            json!([v])
        } else {
            json!({"k": v})
        };
    }
    v
}

/// Events from the input, and the indices of those that are well formed.
fn generate(u: &mut Unstructured<'_>) -> (Vec<String>, Vec<usize>) {
    let n_ids = u.int_in_range(1..=10).unwrap_or(1);
    let mut ids: Vec<String> = Vec::with_capacity(n_ids);
    for i in 0..n_ids {
        ids.push(match u.int_in_range(0..=5).unwrap_or(0) {
            0 => u.arbitrary().unwrap_or_default(),
            1 => "x".repeat(u.int_in_range(0..=5000).unwrap_or(1)),
            2 => format!("p{i}"),
            _ => format!("aaaaaaaa-aaaa-4aaa-8aaa-{i:012}"),
        });
    }
    let names = ["wsgi", "db", "rpc", "driver", "http-client", "x-start", ""];
    let mut events: Vec<(Value, bool)> = Vec::new();
    let mut event = |u: &mut Unstructured<'_>, id: &str, parent: Option<&str>| {
        let mut name = crate::pick_or_any(u, &names);
        let mut ok = true;
        match u.int_in_range(0..=9).unwrap_or(0) {
            0 => ok = false, // no suffix, unless the name has one
            1..=4 => name.push_str("-start"),
            _ => name.push_str("-stop"),
        }
        let (ts, ts_ok) = timestamp(u);
        let mut info = Map::new();
        for key in ["host", "etype", "message"] {
            if u.ratio(1, 2).unwrap_or(false) {
                info.insert(key.into(), json!(crate::pick_or_any(u, STRINGS)));
            }
        }
        match u.int_in_range(0..=7).unwrap_or(0) {
            0 => {
                info.insert(
                    "request".into(),
                    json!({"path": crate::pick_or_any(u, STRINGS), "method": "GET", "query": "", "scheme": "http"}),
                );
            }
            1 => {
                info.insert(
                    "function".into(),
                    json!({"name": crate::pick_or_any(u, STRINGS), "args": "()"}),
                );
            }
            2 => {
                info.insert(
                    "db".into(),
                    json!({"statement": "SELECT 1", "params": {"x": 1.5e300}}),
                );
            }
            3 => {
                // Past serde_json's nesting limit (128) the event is not JSON any more.
                let depth = u.int_in_range(1..=140).unwrap_or(1);
                ok &= depth < 100;
                info.insert("deep".into(), nested(depth));
            }
            4 => {
                info.insert(
                    "huge".into(),
                    json!("<".repeat(u.int_in_range(0..=20_000).unwrap_or(0))),
                );
            }
            _ => {}
        }
        let mut e = Map::new();
        e.insert("name".into(), json!(name));
        e.insert("base_id".into(), json!("base"));
        e.insert("trace_id".into(), json!(id));
        if let Some(p) = parent {
            e.insert("parent_id".into(), json!(p));
        }
        e.insert("timestamp".into(), ts);
        e.insert("info".into(), Value::Object(info));
        for key in ["project", "service"] {
            if u.ratio(2, 3).unwrap_or(true) {
                e.insert(key.into(), json!(crate::pick_or_any(u, STRINGS)));
            }
        }
        let well_formed = ok && ts_ok && (name.ends_with("-start") || name.ends_with("-stop"));
        events.push((Value::Object(e), well_formed));
    };
    for _ in 0..u.int_in_range(0..=40).unwrap_or(0) {
        let id = u.choose(&ids).cloned().unwrap_or_default();
        let parent = match u.int_in_range(0..=5).unwrap_or(0) {
            0 => None,
            1 => Some("base".to_owned()),
            _ => u.choose(&ids).ok().cloned(),
        };
        event(u, &id, parent.as_deref());
    }
    // A chain, deeper than MAX_DEPTH at times, maybe closed into a cycle.
    if u.ratio(1, 4).unwrap_or(false) {
        let len = u.int_in_range(2..=MAX_DEPTH + 40).unwrap_or(2);
        let cycle = u.arbitrary().unwrap_or(false);
        for i in 0..len {
            let parent = if i == 0 {
                if cycle {
                    format!("c{}", len - 1)
                } else {
                    "base".into()
                }
            } else {
                format!("c{}", i - 1)
            };
            event(u, &format!("c{i}"), Some(&parent));
        }
    }
    let mut texts = Vec::new();
    let mut valid = Vec::new();
    for (value, well_formed) in events {
        let text = match u.int_in_range(0..=9).unwrap_or(0) {
            0 => serde_json::to_string_pretty(&value).unwrap_or_default(),
            1 => osprofiler::json::to_python_json(&value).unwrap_or_default(),
            2 => format!(" {value}\t"),
            _ => value.to_string(),
        };
        if well_formed {
            valid.push(texts.len());
        }
        texts.push(text);
        // The same event again, or text that is no event.
        match u.int_in_range(0..=9).unwrap_or(0) {
            0 => {
                if well_formed {
                    valid.push(texts.len());
                }
                texts.push(value.to_string());
            }
            1 => texts.push(crate::pick_or_any(
                u,
                &["", "[]", "null", "{", "{\"name\": 1}", "not json"],
            )),
            _ => {}
        }
    }
    (texts, valid)
}
