//! The report as a Graphviz DOT graph (`osprofiler trace show --dot`).

use crate::pyjson::int;
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
        out: String::with_capacity(report.len().saturating_mul(80).saturating_add(64)),
        next_id: 0,
    };
    dot.out.push_str("digraph {\n");
    let root = dot.open_node();
    dot.out.push_str("total - ");
    int(&mut dot.out, report.finished_ms().unwrap_or(0));
    dot.out.push_str(" ms\"]\n");
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
        let id = self.open_node();
        label(&mut self.out, node);
        self.out.push_str("\"]\n");
        for child in node.children() {
            let child_id = self.subgraph(child);
            self.edge(id, child_id);
        }
        id
    }

    /// Starts a node's line, up to its label; the caller writes the label and `"]`.
    fn open_node(&mut self) -> usize {
        let id = self.next_id;
        self.next_id += 1;
        self.out.push('\t');
        int(&mut self.out, id as i64);
        self.out.push_str(" [label=\"");
        id
    }

    fn edge(&mut self, from: usize, to: usize) {
        self.out.push('\t');
        int(&mut self.out, from as i64);
        self.out.push_str(" -> ");
        int(&mut self.out, to as i64);
        self.out.push('\n');
    }
}

/// A point's label, escaped.
fn label(out: &mut String, node: &Node) {
    if let Some(service) = node.service() {
        escape_into(out, service);
        out.push(':');
    }
    escape_into(out, node.name());
    out.push_str(" - ");
    int(out, node.duration_ms());
    out.push_str(" ms");
    match node.name() {
        "wsgi" => {
            if let Some((method, path)) = node.request() {
                out.push_str("\\n");
                escape_into(out, method);
                out.push(' ');
                let end = path.char_indices().nth(30).map_or(path.len(), |(i, _)| i);
                escape_into(out, path.get(..end).unwrap_or(path));
                out.push_str("..");
            }
        }
        "rpc" | "driver" => {
            if let Some(function) = node.function_name() {
                out.push_str("\\n");
                escape_into(out, last_component(function));
            }
        }
        _ => {}
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
    if !text.contains(['"', '\\', '\n', '\r']) {
        out.push_str(text);
        return;
    }
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
