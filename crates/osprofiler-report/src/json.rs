//! The report as osprofiler's JSON (`osprofiler trace show --json`).

use std::fmt::Write as _;

use serde_json::{Map, Value};

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
        // Serialising a Value with string keys cannot fail.
        let pretty = serde_json::to_string_pretty(&self.to_json()).unwrap_or_default();
        ascii_only(&pretty)
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
    let mut info = Map::new();
    info.insert("name".into(), node.name.clone().into());
    info.insert("project".into(), opt(&node.project));
    info.insert("service".into(), opt(&node.service));
    info.insert("host".into(), opt(&node.host));
    // Python adds keys as events arrive and fills the missing time last.
    if let Some(start) = &node.start {
        info.insert(payload_key(start, &node.name, "start"), start.clone());
        info.insert("started".into(), node.started_ms.into());
    }
    if let Some(stop) = &node.stop {
        info.insert(payload_key(stop, &node.name, "stop"), stop.clone());
        info.insert("finished".into(), node.finished_ms.into());
        let exception = node.exception.as_deref().unwrap_or("None");
        info.insert("exception".into(), exception.into());
    }
    if node.start.is_none() {
        info.insert("started".into(), node.started_ms.into());
    }
    if node.stop.is_none() {
        info.insert("finished".into(), node.finished_ms.into());
    }
    if extended {
        info.insert("started_us".into(), node.started_us.into());
        info.insert("finished_us".into(), node.finished_us.into());
        info.insert("duration_us".into(), node.duration_us().into());
    }
    let mut out = Map::new();
    out.insert("info".into(), Value::Object(info));
    out.insert("trace_id".into(), node.trace_id.clone().into());
    out.insert("parent_id".into(), opt(&node.parent_id));
    out.insert("children".into(), Value::Array(children));
    Value::Object(out)
}

fn opt(text: &Option<String>) -> Value {
    text.as_deref().map_or(Value::Null, Value::from)
}

/// `meta.raw_payload.` + the event's own name, as Python keys it.
fn payload_key(event: &Value, point: &str, phase: &str) -> String {
    match event.get("name").and_then(Value::as_str) {
        Some(name) => format!("meta.raw_payload.{name}"),
        None => format!("meta.raw_payload.{point}-{phase}"),
    }
}

/// Escapes what Python's `ensure_ascii` escapes. Such characters only occur inside JSON
/// strings, so a plain pass over the text is enough.
fn ascii_only(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if (c as u32) < 0x7f {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                let _ = write!(out, "\\u{unit:04x}");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::ascii_only;

    #[test]
    fn escapes_like_python_ensure_ascii() {
        assert_eq!(
            ascii_only("\"a~\u{7f}é€😀\""),
            "\"a~\\u007f\\u00e9\\u20ac\\ud83d\\ude00\""
        );
    }
}
