//! The report as a Graphviz DOT graph (`osprofiler trace show --dot`).

use std::fmt::Write as _;

use serde_json::Value;

use crate::report::{Node, Report};

/// The DOT source osprofiler writes for a report: a `digraph` with one node per point,
/// numbered depth first from `0` for the root, and an edge from each point to each child.
///
/// Labels are osprofiler's: `total - N ms` for the root, `service:name - N ms` for a point,
/// then on a second line the method and the first 30 characters of the path for `wsgi`
/// (`POST /v2.1/servers..`), or the last component of the function name for `rpc` and
/// `driver` (after the last `.` or `::`, so Rust paths work too). Unlike Python, a point
/// lacking the request, the function or its start event just gets the first line, and
/// `"`, `\` and line breaks in the data are escaped so the graph stays valid.
///
/// The text ends with `}` and one newline, as the graphviz library's `source`; Python's
/// `print` adds a second one.
pub fn render_dot(report: &Report) -> String {
    let mut dot = Dot {
        out: String::from("digraph {\n"),
        next_id: 0,
    };
    let finished = report.finished_ms().unwrap_or(0);
    let root = dot.node(&format!("total - {finished} ms"));
    for child in report.roots() {
        let id = dot.subgraph(child);
        dot.edge(root, id);
    }
    dot.out.push_str("}\n");
    dot.out
}

struct Dot {
    out: String,
    next_id: usize,
}

impl Dot {
    /// Writes a point, then its children and the edges to them, as Python does. Recursion
    /// is bounded by [`MAX_DEPTH`](crate::MAX_DEPTH).
    fn subgraph(&mut self, node: &Node) -> usize {
        let id = self.node(&label(node));
        for child in node.children() {
            let child_id = self.subgraph(child);
            self.edge(id, child_id);
        }
        id
    }

    /// `label` is already escaped.
    fn node(&mut self, label: &str) -> usize {
        let id = self.next_id;
        self.next_id += 1;
        let _ = writeln!(self.out, "\t{id} [label=\"{label}\"]");
        id
    }

    fn edge(&mut self, from: usize, to: usize) {
        let _ = writeln!(self.out, "\t{from} -> {to}");
    }
}

fn label(node: &Node) -> String {
    let mut label = String::new();
    if let Some(service) = node.service() {
        escape_into(&mut label, service);
        label.push(':');
    }
    escape_into(&mut label, node.name());
    let _ = write!(label, " - {} ms", node.duration_ms());
    match node.name() {
        "wsgi" => {
            let request = node
                .start_payload()
                .and_then(|p| p.get("info"))
                .and_then(|i| i.get("request"))
                .filter(|r| r.is_object());
            if let Some(request) = request {
                label.push_str("\\n");
                escape_into(&mut label, &text(request.get("method")));
                label.push(' ');
                let path: String = text(request.get("path")).chars().take(30).collect();
                escape_into(&mut label, &path);
                label.push_str("..");
            }
        }
        "rpc" | "driver" => {
            if let Some(function) = node.function_name() {
                label.push_str("\\n");
                escape_into(&mut label, last_component(function));
            }
        }
        _ => {}
    }
    label
}

/// What Python's `str.format` shows for a JSON value, near enough: strings as they are.
fn text(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// `a.b.c` → `c`, `a::b::c` → `c`.
fn last_component(function: &str) -> &str {
    let dot = function.rfind('.').map(|i| i + 1);
    let colons = function.rfind("::").map(|i| i + 2);
    let start = dot.max(colons).unwrap_or(0);
    function.get(start..).unwrap_or(function)
}

/// Escapes text for a double-quoted DOT string. The `\n` that osprofiler puts between
/// label lines is written by the callers, unescaped.
fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => {}
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_component_takes_python_and_rust_paths() {
        assert_eq!(last_component("nova.conductor.api.build"), "build");
        assert_eq!(last_component("demo::compute::spawn"), "spawn");
        assert_eq!(last_component("demo::Api.spawn"), "spawn");
        assert_eq!(last_component("a.b::c"), "c");
        assert_eq!(last_component("spawn"), "spawn");
        assert_eq!(last_component("a."), "");
    }

    #[test]
    fn escapes_quotes_and_backslashes() {
        let mut out = String::new();
        escape_into(&mut out, "a\"b\\c\nd");
        assert_eq!(out, "a\\\"b\\\\c\\nd");
    }
}
