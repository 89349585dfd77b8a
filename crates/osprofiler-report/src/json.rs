//! The report as osprofiler's JSON (`osprofiler trace show --json`).

use serde_json::{Map, Value};

use crate::event::Event;
use crate::pyjson;
use crate::report::{Node, Report};

impl Report {
    /// The report in exactly the shape of Python's `osprofiler trace show --json`:
    ///
    /// ```text
    /// {"info": {"name": "total", "started": 0, "finished": ms, "last_trace_started": ms},
    ///  "children": [node…], "stats": {name: {"count": n, "duration": ms}}}
    /// node = {"info": {"name", "project", "service", "host",
    ///                  "meta.raw_payload.<name>-start": event, "started": ms,
    ///                  "meta.raw_payload.<name>-stop": event, "finished": ms,
    ///                  "exception": etype or "None"},
    ///         "trace_id", "parent_id", "children": [node…]}
    /// ```
    ///
    /// Keys come in the order Python writes them for events read in time order. As in
    /// Python, a point without its start event has no `meta.raw_payload.<name>-start` and a
    /// point without its stop event has neither `meta.raw_payload.<name>-stop` nor
    /// `exception`; `finished` and `last_trace_started` are `null` for an empty report.
    pub fn to_json(&self) -> Value {
        self.json(false)
    }

    /// [`to_json`](Self::to_json) plus microsecond figures, as extra keys only, so that
    /// Python's reader still takes it: `started_us`, `finished_us` and `duration_us` in
    /// every node's `info`; `started_us`, `finished_us` and `last_trace_started_us` in the
    /// root's `info`; `duration_us` and `self_us` in each `stats` entry.
    pub fn to_json_extended(&self) -> Value {
        self.json(true)
    }

    /// [`to_json`](Self::to_json) as the text Python prints: `json.dumps(…, indent=2,
    /// separators=(",", ": "))`, every non-ASCII character (and DEL) escaped as `\uXXXX`,
    /// no trailing newline (Python's `print` adds one).
    ///
    /// Byte-for-byte equal to Python's output for the same events read in time order,
    /// except for floats inside payloads, which Python and Rust spell differently in
    /// exponent form (`1e+16` against `1e16`).
    pub fn to_json_string(&self) -> String {
        // Written directly, the events re-indented from their texts: the same bytes as the
        // `Value` of `to_json` pretty-printed, without making it.
        let mut out = String::with_capacity(self.text_bytes.saturating_mul(2));
        out.push_str("{\n  \"info\": {\n    \"name\": \"total\",\n    \"started\": 0,");
        out.push_str("\n    \"finished\": ");
        pyjson::opt_int(&mut out, self.finished_ms);
        out.push_str(",\n    \"last_trace_started\": ");
        pyjson::opt_int(&mut out, self.last_started_ms);
        out.push_str("\n  },\n  \"children\": ");
        write_tree(&mut out, &self.roots);
        out.push_str(",\n  \"stats\": ");
        if self.categories.is_empty() {
            out.push_str("{}");
        } else {
            out.push('{');
            for (i, usage) in self.categories.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                pyjson::newline(&mut out, 2);
                pyjson::string(&mut out, &usage.name);
                out.push_str(": {\n      \"count\": ");
                pyjson::int(&mut out, i64::try_from(usage.count).unwrap_or(i64::MAX));
                out.push_str(",\n      \"duration\": ");
                pyjson::int(&mut out, usage.duration_ms);
                out.push_str("\n    }");
            }
            out.push_str("\n  }");
        }
        out.push_str("\n}");
        out
    }

    fn json(&self, extended: bool) -> Value {
        let mut info = Map::new();
        info.insert("name".into(), "total".into());
        info.insert("started".into(), 0.into());
        info.insert("finished".into(), self.finished_ms.into());
        info.insert("last_trace_started".into(), self.last_started_ms.into());
        if extended {
            info.insert("started_us".into(), 0.into());
            info.insert("finished_us".into(), self.finished_us.into());
            info.insert("last_trace_started_us".into(), self.last_started_us.into());
        }
        let mut stats = Map::new();
        for usage in &self.categories {
            let mut entry = Map::new();
            entry.insert("count".into(), usage.count.into());
            entry.insert("duration".into(), usage.duration_ms.into());
            if extended {
                entry.insert("duration_us".into(), usage.duration_us.into());
                entry.insert("self_us".into(), usage.self_us.into());
            }
            stats.insert(usage.name.clone(), Value::Object(entry));
        }
        // Not `json!`: it would copy the finished tree value by value through serde.
        let mut out = Map::new();
        out.insert("info".into(), Value::Object(info));
        out.insert(
            "children".into(),
            Value::Array(nodes_json(&self.roots, extended)),
        );
        out.insert("stats".into(), Value::Object(stats));
        Value::Object(out)
    }
}

/// The nodes' JSON, built without recursion: the tree may be [`MAX_DEPTH`](crate::MAX_DEPTH)
/// deep, and a recursive builder's frames are large in debug builds.
fn nodes_json(roots: &[Node], extended: bool) -> Vec<Value> {
    // Preorder with each node's parent slot; then, deepest first (reversed preorder), each
    // node takes its finished children and hands itself to its parent.
    let mut order: Vec<(&Node, Option<usize>)> = Vec::new();
    let mut stack: Vec<(&Node, Option<usize>)> = roots.iter().rev().map(|n| (n, None)).collect();
    while let Some((node, parent)) = stack.pop() {
        let at = order.len();
        order.push((node, parent));
        stack.extend(node.children.iter().rev().map(|c| (c, Some(at))));
    }
    let mut built: Vec<Vec<Value>> = vec![Vec::new(); order.len()];
    let mut top = Vec::with_capacity(roots.len());
    for (at, (node, parent)) in order.iter().enumerate().rev() {
        let mut children = built.get_mut(at).map(std::mem::take).unwrap_or_default();
        children.reverse();
        let value = node_json(node, children, extended);
        match parent.and_then(|p| built.get_mut(p)) {
            Some(siblings) => siblings.push(value),
            None => top.push(value),
        }
    }
    top.reverse();
    top
}

fn node_json(node: &Node, children: Vec<Value>, extended: bool) -> Value {
    // Sized once: growing a map rehashes it.
    let mut info = Map::with_capacity(if extended { 12 } else { 9 });
    info.insert("name".into(), node.name().into());
    info.insert("project".into(), opt(node.project()));
    info.insert("service".into(), opt(node.service()));
    info.insert("host".into(), opt(node.host()));
    // Python adds keys as events arrive and fills the missing time last.
    if let Some(start) = node.start_event() {
        info.insert(payload_key(start), payload(start));
        info.insert("started".into(), node.started_ms.into());
    }
    if let Some(stop) = node.stop_event() {
        info.insert(payload_key(stop), payload(stop));
        info.insert("finished".into(), node.finished_ms.into());
        let exception = node.exception().unwrap_or("None");
        info.insert("exception".into(), exception.into());
    }
    if node.start_event().is_none() {
        info.insert("started".into(), node.started_ms.into());
    }
    if node.stop_event().is_none() {
        info.insert("finished".into(), node.finished_ms.into());
    }
    if extended {
        info.insert("started_us".into(), node.started_us.into());
        info.insert("finished_us".into(), node.finished_us.into());
        info.insert("duration_us".into(), node.duration_us().into());
    }
    let mut out = Map::with_capacity(4);
    out.insert("info".into(), Value::Object(info));
    out.insert("trace_id".into(), node.trace_id().into());
    out.insert("parent_id".into(), opt(node.parent_id()));
    out.insert("children".into(), Value::Array(children));
    Value::Object(out)
}

fn opt(text: Option<&str>) -> Value {
    text.map_or(Value::Null, Value::from)
}

/// The event as a `Value`: a copy of the one made already, else parsed from its text
/// (not kept: the report would double in memory).
fn payload(event: &Event) -> Value {
    match event.value_if_made() {
        Some(value) => value.clone(),
        None => event.parse_value(),
    }
}

/// `meta.raw_payload.` + the event's own name, as Python keys it.
fn payload_key(event: &Event) -> String {
    format!("meta.raw_payload.{}", event.name())
}

/// The root's `"children"` list, from the current line on, as `nodes_json` makes it, and
/// without recursion either.
fn write_tree(out: &mut String, roots: &[Node]) {
    if roots.is_empty() {
        out.push_str("[]");
        return;
    }
    out.push('[');
    // Open lists: the nodes, the next to write, and the indentation level of the line
    // that opened the list (the list's items are one level in).
    let mut open: Vec<(&[Node], usize, usize)> = vec![(roots, 0, 1)];
    while let Some((nodes, next, level)) = open.last_mut() {
        let level = *level;
        let Some(node) = nodes.get(*next) else {
            open.pop();
            pyjson::newline(out, level);
            out.push(']');
            if !open.is_empty() {
                // The list was a node's "children", its last key.
                pyjson::newline(out, level.saturating_sub(1));
                out.push('}');
            }
            continue;
        };
        if *next > 0 {
            out.push(',');
        }
        *next += 1;
        let at = level + 1;
        pyjson::newline(out, at);
        write_node_head(out, node, at);
        if node.children.is_empty() {
            out.push_str("[]");
            pyjson::newline(out, at);
            out.push('}');
        } else {
            out.push('[');
            open.push((&node.children, 0, at + 1));
        }
    }
}

/// A node object opened at `level`, up to its `"children": `.
fn write_node_head(out: &mut String, node: &Node, level: usize) {
    out.push('{');
    pyjson::newline(out, level + 1);
    out.push_str("\"info\": {");
    let field = |out: &mut String, key: &str| {
        pyjson::newline(out, level + 2);
        out.push_str(key);
    };
    field(out, "\"name\": ");
    pyjson::string(out, node.name());
    out.push(',');
    field(out, "\"project\": ");
    pyjson::opt_string(out, node.project());
    out.push(',');
    field(out, "\"service\": ");
    pyjson::opt_string(out, node.service());
    out.push(',');
    field(out, "\"host\": ");
    pyjson::opt_string(out, node.host());
    // The same keys in the same order as `node_json`.
    if let Some(start) = node.start_event() {
        write_payload(out, start, level + 2);
        field(out, "\"started\": ");
        pyjson::int(out, node.started_ms);
    }
    if let Some(stop) = node.stop_event() {
        write_payload(out, stop, level + 2);
        field(out, "\"finished\": ");
        pyjson::int(out, node.finished_ms);
        out.push(',');
        field(out, "\"exception\": ");
        pyjson::string(out, node.exception().unwrap_or("None"));
    }
    if node.start_event().is_none() {
        out.push(',');
        field(out, "\"started\": ");
        pyjson::int(out, node.started_ms);
    }
    if node.stop_event().is_none() {
        out.push(',');
        field(out, "\"finished\": ");
        pyjson::int(out, node.finished_ms);
    }
    pyjson::newline(out, level + 1);
    out.push_str("},");
    pyjson::newline(out, level + 1);
    out.push_str("\"trace_id\": ");
    pyjson::string(out, node.trace_id());
    out.push(',');
    pyjson::newline(out, level + 1);
    out.push_str("\"parent_id\": ");
    pyjson::opt_string(out, node.parent_id());
    out.push(',');
    pyjson::newline(out, level + 1);
    out.push_str("\"children\": ");
}

/// `,` then `"meta.raw_payload.<name>": <event>` on a line at `level`, and a `,` after.
fn write_payload(out: &mut String, event: &Event, level: usize) {
    out.push(',');
    pyjson::newline(out, level);
    out.push_str("\"meta.raw_payload.");
    pyjson::string_body(out, event.name());
    out.push_str("\": ");
    pyjson::event(out, event.text(), event.value_if_made(), level);
    out.push(',');
}

#[cfg(test)]
mod tests {
    use crate::pyjson;

    #[test]
    fn escapes_like_python_ensure_ascii() {
        let mut out = String::new();
        pyjson::string(&mut out, "a~\u{7f}é€😀\"");
        assert_eq!(out, "\"a~\\u007f\\u00e9\\u20ac\\ud83d\\ude00\\\"\"");
    }
}
