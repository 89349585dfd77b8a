//! The report as one self-contained HTML page (`osprofiler trace show --html`).
//!
//! The page is a template, a stylesheet and a script (under `src/html/`), plus the trace
//! as one JSON block. Everything the page shows is drawn by the script from that block,
//! and every string from the trace goes into the page as text (`textContent`), never as
//! markup: see [`render_html`].

use crate::builder::NO_ID;
use crate::pyjson::{int, unit_escape};
use crate::report::{Node, Report, Usage};

const TEMPLATE: &str = include_str!("html/template.html");
const STYLE: &str = include_str!("html/report.css");
const SCRIPT: &str = include_str!("html/report.js");

/// Version of the embedded data's layout, for readers other than the page's own script.
const DATA_VERSION: u32 = 1;

/// What a point takes in the page's data besides its events, to size the output once.
const BYTES_PER_POINT: usize = 256;

/// The report as one HTML file that works offline: a waterfall of the calls (collapsible
/// tree, one bar per point on a shared time axis), colours per service and category with a
/// legend, time per service and per category, errors, the critical path, a text filter,
/// and the details of a clicked point with its raw start and stop events.
///
/// The file loads nothing: no script, style, font or image comes from anywhere else, and a
/// Content-Security-Policy forbids the page to fetch anything. `title` is the page title
/// (shown in the header as well). It stays usable with 100 000 points: the trace is
/// embedded once as compact JSON (times in microseconds from the trace's first event, raw
/// events as stored) and only the rows in view are in the document.
///
/// # Safety of the output
///
/// The trace comes from services, so any of its strings may be hostile. They reach the page
/// in exactly two ways:
///
/// - inside `<script type="application/json" id="trace-data">`, where `<`, `>`, `&`,
///   U+2028 and U+2029 are written as `\uXXXX` escapes: the block is still the same JSON,
///   but contains no `</script`, no `<!--` and no line terminator a script parser would
///   trip on, so no string can end the block early;
/// - through the page's script, which only ever sets `textContent`, attributes and style
///   properties computed from numbers, and never parses the trace's strings as HTML.
///
/// `title` goes into `<title>` HTML-escaped, and into the JSON block like the rest.
///
/// ```
/// use osprofiler_report::{Report, render_html};
///
/// let report = Report::from_json_lines(r#"
/// {"name": "wsgi-start", "base_id": "b", "trace_id": "p1", "parent_id": "b", "timestamp": "2026-11-25T12:00:00.000000", "info": {"host": "h1"}, "project": "nova", "service": "api"}
/// {"name": "wsgi-stop", "base_id": "b", "trace_id": "p1", "parent_id": "b", "timestamp": "2026-11-25T12:00:00.010000", "info": {"host": "</script><b>h1"}, "project": "nova", "service": "api"}
/// "#);
/// let html = render_html(&report, "Trace b");
/// assert!(html.starts_with("<!DOCTYPE html>"));
/// assert!(html.contains(r#"<script type="application/json" id="trace-data">"#));
/// // The hostile host is in the data, escaped: it cannot close the script element.
/// assert!(html.contains(r"\u003c/script\u003e\u003cb\u003eh1"));
/// assert_eq!(html.matches("</script>").count(), 2); // the data block's and the script's
/// ```
pub fn render_html(report: &Report, title: &str) -> String {
    // Sized once for the whole page: growing a buffer of tens of megabytes by doubling
    // would copy it several times. If even that is refused the buffer grows as it goes.
    let estimate = report
        .len()
        .saturating_mul(BYTES_PER_POINT)
        .saturating_add(report.text_bytes)
        .saturating_add(TEMPLATE.len() + STYLE.len() + SCRIPT.len() + 4 * title.len());
    let mut out = String::new();
    let _ = out.try_reserve(estimate);
    // Nothing is spilled, so nothing can fail.
    let _ = render(report, title, &mut out, None);
    out
}

/// Writes the page [`render_html`] makes to `w`, a piece at a time: the same bytes, but
/// the page is never whole in memory (that of a trace of 100,000 points is about 76 MB,
/// and touching that much fresh memory costs more than making the page). Buffered
/// here; `w` gets writes of about 256 KiB and a flush at the end.
///
/// ```
/// use osprofiler_report::{Report, render_html, render_html_to};
///
/// let report = Report::from_json_lines(r#"
/// {"name": "wsgi-start", "base_id": "b", "trace_id": "p1", "parent_id": "b", "timestamp": "2026-11-25T12:00:00.000000"}
/// {"name": "wsgi-stop", "base_id": "b", "trace_id": "p1", "parent_id": "b", "timestamp": "2026-11-25T12:00:00.010000"}
/// "#);
/// let mut page = Vec::new();
/// render_html_to(&report, "Trace b", &mut page)?;
/// assert_eq!(page, render_html(&report, "Trace b").into_bytes());
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// # Errors
///
/// The first error `w` returns; what was written before it stays written.
pub fn render_html_to<W: std::io::Write>(
    report: &Report,
    title: &str,
    mut w: W,
) -> std::io::Result<()> {
    let mut out = String::with_capacity(SPILL_AT + SPILL_AT / 4);
    let mut spill = |piece: &str| w.write_all(piece.as_bytes());
    render(report, title, &mut out, Some(&mut spill))?;
    spill(&out)?;
    w.flush()
}

/// How much of the page [`render_html_to`] gathers before each write.
const SPILL_AT: usize = 256 * 1024;

/// Where a page goes piece by piece: `out` is handed to it, then emptied, whenever it
/// holds [`SPILL_AT`] bytes or more; without one, the page stays whole in `out`.
type Spill<'a> = Option<&'a mut dyn FnMut(&str) -> std::io::Result<()>>;

/// The page into `out` (and through `spill`, when given; the end stays in `out`).
fn render(
    report: &Report,
    title: &str,
    out: &mut String,
    mut spill: Spill<'_>,
) -> std::io::Result<()> {
    for (i, part) in TEMPLATE.split("<!--@").enumerate() {
        // The template marks where each piece goes with `<!--@name-->`.
        let (name, rest) = match part.split_once("-->") {
            Some((name, rest)) if i > 0 => (name, rest),
            _ => ("", part),
        };
        match name {
            "title" => escape_html(out, title),
            "style" => out.push_str(STYLE),
            "script" => out.push_str(SCRIPT),
            "data" => write_data(report, title, out, &mut spill)?,
            _ => {}
        }
        out.push_str(rest);
    }
    Ok(())
}

/// Hands `out` to `spill` (and empties it) once it holds [`SPILL_AT`] bytes.
fn maybe_spill(out: &mut String, spill: &mut Spill<'_>) -> std::io::Result<()> {
    if let Some(spill) = spill
        && out.len() >= SPILL_AT
    {
        spill(out)?;
        out.clear();
    }
    Ok(())
}

/// Text for an HTML element or a double-quoted attribute.
fn escape_html(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

/// Writes the page's data: one JSON object, compact, safe inside a script element (see
/// [`script_safe`]).
///
/// ```text
/// {"v": 1, "title", "trace": base_id, "t0": unix µs of the first event, "dur": µs,
///  "n": points, "skipped", "duplicates", "detached",
///  "svc": [service…], "sst": [[count, total µs, self µs]…] (same order),
///  "cat": [category…], "cst": [[count, total µs, self µs]…],
///  "hosts": [host…], "proj": [project…],
///  "pt": [[depth, cat, svc, host, proj, start µs, duration µs, id, parent_id, exception,
///          start event, stop event]…],
///  "cp": [index in "pt" of each critical-path point]}
/// ```
///
/// `pt` lists the points depth first (a point's parent is the nearest earlier point one
/// level up); `cat`, `svc`, `host` and `proj` index the tables (`-1`: none). `parent_id` is
/// `0` when it is the id of the parent row, which saves a UUID per point. The events are
/// written as stored, for the details view.
fn write_data(
    report: &Report,
    title: &str,
    out: &mut String,
    spill: &mut Spill<'_>,
) -> std::io::Result<()> {
    // Hosts and projects are numbered in order of first appearance in `pt`; the nodes
    // carry the report's own numbers (by start), turned into these by `Renumber`.
    let mut hosts = Renumber::default();
    let mut projects = Renumber::default();
    for (_, node) in report {
        hosts.add(node.host_id, || node.host());
        projects.add(node.project_id, || node.project());
    }
    // The path runs from a top-level point down, so the preorder walk meets its points in
    // path order: each is compared, by address, with the next one expected only.
    let critical = report.critical_path();
    let mut next_critical = critical.iter().copied().peekable();

    out.push_str("{\"v\":");
    int(out, i64::from(DATA_VERSION));
    out.push_str(",\"title\":");
    json_string(out, title);
    out.push_str(",\"trace\":");
    opt_json_string(out, base_id(report));
    out.push_str(",\"t0\":");
    crate::pyjson::opt_int(out, report.origin_unix_us());
    for (key, n) in [
        (",\"dur\":", report.duration_us()),
        (",\"n\":", count(report.len())),
        (",\"skipped\":", count(report.skipped())),
        (",\"duplicates\":", count(report.duplicates())),
        (",\"detached\":", count(report.detached())),
    ] {
        out.push_str(key);
        int(out, n);
    }
    out.push_str(",\"svc\":");
    json_strings(out, report.by_service().iter().map(|u| u.name.as_str()));
    out.push_str(",\"sst\":");
    write_usage(out, report.by_service());
    out.push_str(",\"cat\":");
    json_strings(out, report.by_category().iter().map(|u| u.name.as_str()));
    out.push_str(",\"cst\":");
    write_usage(out, report.by_category());
    out.push_str(",\"hosts\":");
    json_strings(out, hosts.names.iter().copied());
    out.push_str(",\"proj\":");
    json_strings(out, projects.names.iter().copied());

    // Preorder, with the id of the point last seen at each depth to spot ordinary parents.
    // The points are taken in batches: first what each one's row needs from its events,
    // in a tight loop, then the rows. The events are scattered in memory, and the loads of
    // a tight loop overlap where those of the row writer, far apart, would each wait.
    let mut ids_by_depth: Vec<&str> = Vec::new();
    let mut cp_index = Vec::with_capacity(critical.len());
    let mut walk = report.iter().enumerate();
    let mut batch: Vec<Row<'_>> = Vec::with_capacity(BATCH);
    out.push_str(",\"pt\":[");
    loop {
        batch.clear();
        batch.extend(
            walk.by_ref()
                .take(BATCH)
                .map(|(index, (depth, node))| Row::of(index, depth, node)),
        );
        if batch.is_empty() {
            break;
        }
        for row in &batch {
            let node = row.node;
            if row.index > 0 {
                out.push(',');
            }
            if next_critical.next_if(|&c| std::ptr::eq(c, node)).is_some() {
                cp_index.push(row.index);
            }
            ids_by_depth.truncate(row.depth.saturating_sub(1));
            let parent_row = ids_by_depth.last().copied();
            ids_by_depth.push(row.trace_id);

            out.push('[');
            for n in [
                count(row.depth),
                i64::from(node.category_id),
                i64::from(node.service_id),
                hosts.index(node.host_id),
                projects.index(node.project_id),
                node.started_us(),
                node.duration_us(),
            ] {
                int(out, n);
                out.push(',');
            }
            json_string(out, row.trace_id);
            out.push(',');
            match row.parent_id {
                Some(p) if Some(p) == parent_row => out.push('0'),
                other => opt_json_string(out, other),
            }
            out.push(',');
            opt_json_string(out, row.exception);
            for event in [row.start, row.stop] {
                out.push(',');
                match event {
                    // Checked JSON when it came in, and left as it was stored.
                    Some(text) => script_safe(out, text),
                    None => out.push_str("null"),
                }
            }
            out.push(']');
        }
        maybe_spill(out, spill)?;
    }
    out.push_str("],\"cp\":[");
    for (i, &at) in cp_index.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        int(out, count(at));
    }
    out.push_str("]}");
    Ok(())
}

/// Points read ahead of the rows written (see [`write_data`]).
const BATCH: usize = 64;

/// What a point's row takes from its events.
struct Row<'a> {
    index: usize,
    depth: usize,
    node: &'a Node,
    trace_id: &'a str,
    parent_id: Option<&'a str>,
    exception: Option<&'a str>,
    start: Option<&'a str>,
    stop: Option<&'a str>,
}

impl<'a> Row<'a> {
    fn of(index: usize, depth: usize, node: &'a Node) -> Row<'a> {
        Row {
            index,
            depth,
            node,
            trace_id: node.trace_id(),
            parent_id: node.parent_id(),
            exception: node.exception(),
            start: node.start_raw(),
            stop: node.stop_raw(),
        }
    }
}

fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn write_usage(out: &mut String, usage: &[Usage]) {
    out.push('[');
    for (i, u) in usage.iter().enumerate() {
        out.push_str(if i > 0 { ",[" } else { "[" });
        int(out, count(u.count));
        out.push(',');
        int(out, u.duration_us);
        out.push(',');
        int(out, u.self_us);
        out.push(']');
    }
    out.push(']');
}

/// The trace's `base_id`: that of the first point whose event carries one.
fn base_id(report: &Report) -> Option<&str> {
    report.iter().find_map(|(_, n)| n.base_id())
}

/// The report's numbers of a kind of string (hosts, projects) turned into numbers in order
/// of first appearance in the page's preorder, with the strings in that order.
#[derive(Default)]
struct Renumber<'a> {
    names: Vec<&'a str>,
    /// Report number → page number.
    page: Vec<Option<usize>>,
}

impl<'a> Renumber<'a> {
    /// Notes a point's string by its report number; the string is only read (from the
    /// point's event) the first time.
    fn add(&mut self, id: u32, name: impl FnOnce() -> Option<&'a str>) {
        let Some(id) = usize::try_from(id).ok().filter(|_| id != NO_ID) else {
            return;
        };
        if self.page.len() <= id {
            self.page.resize(id + 1, None);
        }
        if let Some(slot @ None) = self.page.get_mut(id)
            && let Some(name) = name()
        {
            *slot = Some(self.names.len());
            self.names.push(name);
        }
    }

    /// `-1` for none.
    fn index(&self, id: u32) -> i64 {
        usize::try_from(id)
            .ok()
            .and_then(|id| self.page.get(id).copied().flatten())
            .map_or(-1, count)
    }
}

/// A JSON string (escaped as serde_json does), made safe for a script element as
/// [`script_safe`] does.
fn json_string(out: &mut String, s: &str) {
    out.push('"');
    let mut plain = 0; // start of the run of bytes copied as they are
    for (at, c) in s.char_indices() {
        let escape = match c {
            '"' => "\\\"",
            '\\' => "\\\\",
            '\n' => "\\n",
            '\r' => "\\r",
            '\t' => "\\t",
            '\u{8}' => "\\b",
            '\u{c}' => "\\f",
            '<' => "\\u003c",
            '>' => "\\u003e",
            '&' => "\\u0026",
            '\u{2028}' => "\\u2028",
            '\u{2029}' => "\\u2029",
            // Other control characters: \u00XX, written by the Python JSON writer.
            c if c < ' ' => "",
            _ => continue,
        };
        out.push_str(s.get(plain..at).unwrap_or_default());
        if escape.is_empty() {
            unit_escape(out, c as u16);
        } else {
            out.push_str(escape);
        }
        plain = at + c.len_utf8();
    }
    out.push_str(s.get(plain..).unwrap_or_default());
    out.push('"');
}

fn opt_json_string(out: &mut String, s: Option<&str>) {
    match s {
        Some(s) => json_string(out, s),
        None => out.push_str("null"),
    }
}

fn json_strings<'a>(out: &mut String, strings: impl Iterator<Item = &'a str>) {
    out.push('[');
    for (i, s) in strings.enumerate() {
        if i > 0 {
            out.push(',');
        }
        json_string(out, s);
    }
    out.push(']');
}

/// Appends JSON text, writing `<`, `>`, `&`, U+2028 and U+2029 as `\uXXXX`.
///
/// These characters only ever occur inside JSON strings, where the escape means the same
/// character, so the text stays the same JSON. What it buys: no `</script` or `<!--` can
/// appear inside the HTML script element, and the block is also a valid JavaScript literal
/// (U+2028/U+2029 used to be line terminators there).
fn script_safe(out: &mut String, text: &str) {
    let bytes = text.as_bytes();
    let mut plain = 0; // start of the run of bytes copied as they are
    let mut from = 0;
    while let Some(at) = next_special(bytes, from) {
        from = at + 1;
        let escape = match bytes.get(at..at + 3) {
            Some([0xE2, 0x80, 0xA8]) => "\\u2028",
            Some([0xE2, 0x80, 0xA9]) => "\\u2029",
            _ => match bytes.get(at) {
                Some(b'<') => "\\u003c",
                Some(b'>') => "\\u003e",
                Some(b'&') => "\\u0026",
                _ => continue, // another character starting with E2
            },
        };
        out.push_str(text.get(plain..at).unwrap_or_default());
        out.push_str(escape);
        plain = if escape.starts_with("\\u20") {
            at + 3
        } else {
            at + 1
        };
        from = plain;
    }
    out.push_str(text.get(plain..).unwrap_or_default());
}

/// The bytes [`script_safe`] looks at: `<`, `>`, `&`, and the lead byte of U+2028/U+2029.
fn is_special(b: u8) -> bool {
    // `|`, not `||` nor `matches!`: branch-free, so that block checks vectorize.
    (b == b'<') | (b == b'>') | (b == b'&') | (b == 0xE2)
}

/// The first special byte at or after `from`.
fn next_special(buf: &[u8], from: usize) -> Option<usize> {
    const BLOCK: usize = 32;
    let rest = buf.get(from..)?;
    let mut skipped = 0;
    // Whole blocks without a special byte are skipped; the test has no early exit, so the
    // compiler checks a block in a few vector instructions.
    for block in rest.chunks_exact(BLOCK) {
        if block
            .iter()
            .fold(0_u8, |any, &b| any | u8::from(is_special(b)))
            != 0
        {
            break;
        }
        skipped += BLOCK;
    }
    let found = rest.get(skipped..)?.iter().position(|&b| is_special(b))?;
    Some(from + skipped + found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn safe(text: &str) -> String {
        let mut out = String::new();
        script_safe(&mut out, text);
        out
    }

    #[test]
    fn escapes_what_could_end_a_script_element() {
        let text = "a</script><!--b&c\u{2028}d\u{2029}e€…\u{2027}\u{202a}\u{20ac}";
        let want =
            "a\\u003c/script\\u003e\\u003c!--b\\u0026c\\u2028d\\u2029e€…\u{2027}\u{202a}\u{20ac}";
        assert_eq!(safe(text), want);
        assert_eq!(safe("\u{2028}"), "\\u2028");
        assert_eq!(safe("x\u{2029}"), "x\\u2029");
        assert_eq!(safe("€"), "€");
    }

    /// Against a plain per-character replacement, on texts made of the tricky pieces (and
    /// longer than the escaper's blocks).
    #[test]
    fn escaper_matches_a_simple_replacement() {
        let pieces = [
            "<",
            ">",
            "&",
            "\u{2028}",
            "\u{2029}",
            "\u{2027}",
            "€",
            "…",
            "a",
            "plain text ",
            "é",
            "\u{e2}",
            "</script>",
            "\"",
            "\\",
            "\n",
            "\u{1}",
            "\u{1f}",
            "\u{8}",
        ];
        let mut seed = 0x9E37_79B9_7F4A_7C15_u64;
        let mut next = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        let script = |c: char| match c {
            '<' => "\\u003c".to_string(),
            '>' => "\\u003e".to_string(),
            '&' => "\\u0026".to_string(),
            '\u{2028}' => "\\u2028".to_string(),
            '\u{2029}' => "\\u2029".to_string(),
            c => c.to_string(),
        };
        for _ in 0..500 {
            let text: String = (0..next(120)).map(|_| pieces[next(pieces.len())]).collect();
            let want: String = text.chars().map(script).collect();
            assert_eq!(safe(&text), want, "{text:?}");
            // A string: serde_json's text, then made safe.
            let mut got = String::new();
            json_string(&mut got, &text);
            let serde = serde_json::to_string(&text).unwrap();
            assert_eq!(got, serde.chars().map(script).collect::<String>());
        }
    }

    #[test]
    fn escaped_json_is_the_same_json() {
        let value = json!({
            "name": "</script><script>alert(1)</script>",
            "c": "<!-- -->",
            "amp": "&amp; \u{2028}\u{2029}",
            "<key>": ["x>y", 1, null],
        });
        let text = serde_json::to_string(&value).unwrap();
        let escaped = safe(&text);
        assert!(!escaped.contains('<') && !escaped.contains('>') && !escaped.contains('&'));
        assert!(!escaped.contains('\u{2028}') && !escaped.contains('\u{2029}'));
        let back: Value = serde_json::from_str(&escaped).unwrap();
        assert_eq!(back, value);
    }

    #[test]
    fn html_text_escaping() {
        let mut out = String::new();
        escape_html(&mut out, r#"<a href="x">&'"#);
        assert_eq!(out, "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
    }

    /// The text of the data block of a rendered page.
    fn data_block(html: &str) -> &str {
        let open = r#"<script type="application/json" id="trace-data">"#;
        let start = html.find(open).unwrap() + open.len();
        let len = html[start..].find("</script>").unwrap();
        &html[start..start + len]
    }

    fn hostile_report() -> Report {
        let evil = "</script><script>document.title='PWNED'</script><!-- \u{2028}&amp;";
        let event = |name: &str, ts: &str, info: Value| {
            json!({
                "name": name, "base_id": "b", "trace_id": "p1", "parent_id": "b",
                "timestamp": ts, "info": info, "project": evil, "service": evil,
            })
        };
        Report::from_events([
            event(
                "wsgi-start",
                "2026-11-25T12:00:00.000000",
                json!({"host": evil, "request": {"path": evil}}),
            ),
            event(
                "wsgi-stop",
                "2026-11-25T12:00:00.250000",
                json!({"host": evil, "etype": evil, "message": evil}),
            ),
        ])
    }

    #[test]
    fn data_block_parses_back_to_the_data() {
        let report = hostile_report();
        let title = "<title> & </script>";
        let html = render_html(&report, title);
        let block = data_block(&html);
        for bad in ["</script", "<!--", "<", ">", "&", "\u{2028}", "\u{2029}"] {
            assert!(!block.contains(bad), "{bad:?} in the data block");
        }
        let mut data = String::new();
        let _ = write_data(&report, title, &mut data, &mut None);
        assert_eq!(block, data);
        let got: Value = serde_json::from_str(block).unwrap();

        // And the data is what the report says.
        assert_eq!(got["v"], 1);
        assert_eq!(got["title"], title);
        assert_eq!(got["trace"], "b");
        assert_eq!(got["n"], 1);
        assert_eq!(got["dur"], 250_000);
        assert_eq!(got["cp"], json!([0]));
        let point = &got["pt"][0];
        assert_eq!(point[0], 1); // depth
        assert_eq!(point[5], 0);
        assert_eq!(point[6], 250_000);
        assert_eq!(point[7], "p1");
        assert_eq!(point[8], "b"); // not the parent row's id: written out
        assert_eq!(
            got["svc"][point[2].as_u64().unwrap() as usize],
            got["proj"][0]
        );
        assert_eq!(point[10], *report.roots()[0].start_payload().unwrap());
        assert_eq!(point[11], *report.roots()[0].stop_payload().unwrap());
        // The title element is escaped HTML.
        assert!(html.contains("<title>&lt;title&gt; &amp; &lt;/script&gt;</title>"));
    }

    #[test]
    fn tree_and_tables_in_the_data() {
        let ev = |name: &str, id: &str, parent: &str, ms: u32, service: Option<&str>| {
            let mut e = json!({
                "name": name, "base_id": "b", "trace_id": id, "parent_id": parent,
                "timestamp": format!("2026-11-25T12:00:00.{:06}", ms * 1000), "info": {},
            });
            if let Some(s) = service {
                e["service"] = s.into();
            }
            e
        };
        let report = Report::from_events([
            ev("wsgi-start", "a", "b", 0, Some("api")),
            ev("wsgi-stop", "a", "b", 100, Some("api")),
            ev("db-start", "c", "a", 10, None),
            ev("db-stop", "c", "a", 20, None),
            ev("rpc-start", "d", "a", 30, Some("api")),
            ev("rpc-stop", "d", "a", 90, Some("api")),
        ]);
        let mut data = String::new();
        let _ = write_data(&report, "t", &mut data, &mut None);
        let got: Value = serde_json::from_str(&data).unwrap();
        assert_eq!(got["svc"], json!(["api", ""]));
        assert_eq!(got["cat"], json!(["wsgi", "db", "rpc"]));
        assert_eq!(
            got["cst"],
            json!([
                [1, 100_000, 30_000],
                [1, 10_000, 10_000],
                [1, 60_000, 60_000]
            ])
        );
        assert_eq!(got["hosts"], json!([]));
        let rows: Vec<(i64, i64, i64, i64, &Value)> = got["pt"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                let i = |k: usize| p[k].as_i64().unwrap();
                (i(0), i(1), i(2), i(3), &p[8])
            })
            .collect();
        assert_eq!(
            rows,
            [
                (1, 0, 0, -1, &json!("b")),
                (2, 1, 1, -1, &json!(0)),
                (2, 2, 0, -1, &json!(0)),
            ]
        );
        assert_eq!(got["cp"], json!([0, 2]));
    }

    #[test]
    fn empty_report_renders() {
        let html = render_html(&Report::default(), "");
        let got: Value = serde_json::from_str(data_block(&html)).unwrap();
        assert_eq!(got["n"], 0);
        assert_eq!(got["t0"], Value::Null);
        assert_eq!(got["trace"], Value::Null);
        assert_eq!(got["pt"], json!([]));
    }

    /// The page's own script and style must not contain what would end their element, and
    /// must never parse strings as HTML.
    #[test]
    fn page_sources_are_inert() {
        for (name, text) in [("css", STYLE), ("js", SCRIPT)] {
            for bad in ["</script", "</style", "<!--", "http://", "https://", "url("] {
                assert!(!text.contains(bad), "{bad:?} in report.{name}");
            }
        }
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "Function(",
            "createContextualFragment",
            "DOMParser",
            "setAttribute('on",
        ] {
            assert!(!SCRIPT.contains(sink), "{sink:?} in report.js");
        }
        // Each marker appears once.
        for marker in ["title", "style", "data", "script"] {
            assert_eq!(TEMPLATE.matches(&format!("<!--@{marker}-->")).count(), 1);
        }
    }
}
