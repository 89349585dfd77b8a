//! The demo's one-screen summary of a trace: total time, own time per service and per
//! category, the slowest points, the errors.

use std::fmt::Write as _;

use osprofiler_report::{Node, Report, Usage};

/// Width kept for labels, so that a line fits a terminal.
const LABEL_CHARS: usize = 58;

pub fn render(report: &Report, base_id: &str) -> String {
    let mut out = String::new();
    let total = report.duration_us();
    let _ = writeln!(
        out,
        "Trace {base_id}: {} points, {} in all",
        report.len(),
        ms(total)
    );
    // Own time: a point's time less its children's, so each span of time counts once.
    let services = usage_rows("service", report.by_service(), total);
    let categories = usage_rows("category", report.by_category(), total);
    for i in 0..services.len().max(categories.len()) {
        let left = services.get(i).map_or("", String::as_str);
        let right = categories.get(i).map_or("", String::as_str);
        let _ = writeln!(out, "  {left:<38}  {right}");
    }

    // Leaves are where the work is done: a point with children mostly waits for them.
    let mut leaves: Vec<&Node> = report
        .iter()
        .map(|(_, n)| n)
        .filter(|n| n.children().is_empty())
        .collect();
    leaves.sort_by_key(|n| std::cmp::Reverse(n.duration_us()));
    let _ = writeln!(out, "Slowest points that call no other:");
    for n in leaves.iter().take(5) {
        let _ = writeln!(
            out,
            "  {:>8}  {:<9} {:<6} {}",
            ms(n.duration_us()),
            n.service().unwrap_or(""),
            n.name(),
            label(n)
        );
    }
    for n in report.errors() {
        let message = n
            .stop_payload()
            .and_then(|e| e["info"]["message"].as_str())
            .unwrap_or("");
        let _ = writeln!(
            out,
            "Error at {} ms: {} {} {} raised {}\n  {}",
            n.started_ms(),
            n.service().unwrap_or(""),
            n.name(),
            label(n),
            n.exception().unwrap_or(""),
            message
        );
    }
    out
}

/// A header and a row per name: points, own time, share of the trace; most time first.
fn usage_rows(what: &str, usage: &[Usage], total_us: i64) -> Vec<String> {
    let mut rows: Vec<&Usage> = usage.iter().collect();
    rows.sort_by_key(|u| std::cmp::Reverse(u.self_us));
    let mut lines = vec![format!("{what:<10} points  own time  share")];
    for u in rows {
        let share = if total_us > 0 {
            u.self_us as f64 * 100.0 / total_us as f64
        } else {
            0.0
        };
        lines.push(format!(
            "{:<10} {:>6}  {:>8}  {:>4.0}%",
            u.name,
            u.count,
            ms(u.self_us),
            share
        ));
    }
    lines
}

fn ms(us: i64) -> String {
    format!("{:.1} ms", us as f64 / 1000.0)
}

/// What a point did, in a few words: its SQL statement, function, or request.
pub fn label(node: &Node) -> String {
    let info = node.start_payload().map(|e| &e["info"]);
    let text = info
        .and_then(|i| i["db"]["statement"].as_str())
        .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
        .or_else(|| node.function_name().map(short_function))
        .or_else(|| {
            let info = info?;
            let r = if info["request"].is_object() {
                &info["request"]
            } else {
                &info["requests"]
            };
            Some(format!("{} {}", r["method"].as_str()?, r["path"].as_str()?))
        })
        .unwrap_or_default();
    if text.chars().count() <= LABEL_CHARS {
        return text;
    }
    let mut cut: String = text.chars().take(LABEL_CHARS - 1).collect();
    cut.push('…');
    cut
}

/// `crate::module::Type::method` → `Type::method`, `crate::module::function` →
/// `function`; other names (a gRPC method's `package.Service.Method`) as they are.
fn short_function(name: &str) -> String {
    let parts: Vec<&str> = name.split("::").collect();
    match parts.as_slice() {
        [.., ty, method] if ty.starts_with(char::is_uppercase) => format!("{ty}::{method}"),
        [.., last] => (*last).to_owned(),
        [] => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::short_function;

    #[test]
    fn function_names_are_shortened() {
        assert_eq!(
            short_function("a::b::Db::instance_create"),
            "Db::instance_create"
        );
        assert_eq!(short_function("a::b::helper"), "helper");
        assert_eq!(
            short_function("nova.compute.Compute.BuildAndRunInstance"),
            "nova.compute.Compute.BuildAndRunInstance"
        );
    }
}
