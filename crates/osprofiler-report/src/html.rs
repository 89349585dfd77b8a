//! The report as one self-contained HTML page (`osprofiler trace show --html`).
//!
//! The page is a template, a stylesheet and a script (under `src/html/`), plus the trace
//! as one JSON block. Everything the page shows is drawn by the script from that block,
//! and every string from the trace goes into the page as text (`textContent`), never as
//! markup: see [`render_html`].

use std::collections::HashMap;
use std::io::{self, Write};

use serde_json::Value;

use crate::report::{Report, Usage};

const TEMPLATE: &str = include_str!("html/template.html");
const STYLE: &str = include_str!("html/report.css");
const SCRIPT: &str = include_str!("html/report.js");

/// Version of the embedded data's layout, for readers other than the page's own script.
const DATA_VERSION: u32 = 1;

/// What a point usually takes in the page's data, to size the output once.
const BYTES_PER_POINT: usize = 1024;

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
    // Room for typical events (two of a few hundred bytes per point): growing a buffer of
    // tens of megabytes by doubling would copy it several times. Untouched capacity costs
    // address space only, and if even that is refused the buffer just grows as it goes.
    let estimate = report.len().saturating_mul(BYTES_PER_POINT);
    let mut out: Vec<u8> = Vec::new();
    let _ = out.try_reserve(estimate.saturating_add(TEMPLATE.len() + STYLE.len() + SCRIPT.len()));
    for (i, part) in TEMPLATE.split("<!--@").enumerate() {
        // The template marks where each piece goes with `<!--@name-->`.
        let (name, rest) = match part.split_once("-->") {
            Some((name, rest)) if i > 0 => (name, rest),
            _ => ("", part),
        };
        match name {
            "title" => out.extend_from_slice(escape_html(title).as_bytes()),
            "style" => out.extend_from_slice(STYLE.as_bytes()),
            "script" => out.extend_from_slice(SCRIPT.as_bytes()),
            "data" => {
                // serde_json writes in small pieces; the escaper is faster on large ones.
                let mut data = io::BufWriter::with_capacity(1 << 16, ScriptSafe::new(&mut out));
                // Writing into memory cannot fail.
                let _ = write_data(report, title, &mut data);
                if let Ok(safe) = data.into_inner() {
                    safe.finish();
                }
            }
            _ => {}
        }
        out.extend_from_slice(rest.as_bytes());
    }
    // Every piece is UTF-8 and the escaper only replaces whole characters.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Text for an HTML element or a double-quoted attribute.
fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
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
    out
}

/// Writes the page's data: one JSON object, compact.
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
fn write_data<W: Write>(report: &Report, title: &str, w: &mut W) -> io::Result<()> {
    let services = Table::of(report.by_service());
    let categories = Table::of(report.by_category());
    let mut hosts = Table::default();
    let mut projects = Table::default();
    for (_, node) in report {
        if let Some(host) = node.host() {
            hosts.add(host);
        }
        if let Some(project) = node.project() {
            projects.add(project);
        }
    }
    // The path runs from a top-level point down, so the preorder walk meets its points in
    // path order: each is compared, by address, with the next one expected only.
    let critical = report.critical_path();
    let mut next_critical = critical.iter().copied().peekable();

    w.write_all(b"{\"v\":")?;
    write!(w, "{DATA_VERSION}")?;
    w.write_all(b",\"title\":")?;
    serde_json::to_writer(&mut *w, title)?;
    w.write_all(b",\"trace\":")?;
    serde_json::to_writer(&mut *w, &base_id(report))?;
    w.write_all(b",\"t0\":")?;
    serde_json::to_writer(&mut *w, &report.origin_unix_us())?;
    write!(
        w,
        ",\"dur\":{},\"n\":{},\"skipped\":{},\"duplicates\":{},\"detached\":{}",
        report.duration_us(),
        report.len(),
        report.skipped(),
        report.duplicates(),
        report.detached()
    )?;
    w.write_all(b",\"svc\":")?;
    serde_json::to_writer(&mut *w, &services.names)?;
    w.write_all(b",\"sst\":")?;
    write_usage(w, report.by_service())?;
    w.write_all(b",\"cat\":")?;
    serde_json::to_writer(&mut *w, &categories.names)?;
    w.write_all(b",\"cst\":")?;
    write_usage(w, report.by_category())?;
    w.write_all(b",\"hosts\":")?;
    serde_json::to_writer(&mut *w, &hosts.names)?;
    w.write_all(b",\"proj\":")?;
    serde_json::to_writer(&mut *w, &projects.names)?;

    // Preorder, with the id of the point last seen at each depth to spot ordinary parents.
    let mut ids_by_depth: Vec<&str> = Vec::new();
    let mut cp_index = Vec::with_capacity(critical.len());
    w.write_all(b",\"pt\":[")?;
    for (index, (depth, node)) in report.iter().enumerate() {
        if index > 0 {
            w.write_all(b",")?;
        }
        if next_critical.next_if(|&c| std::ptr::eq(c, node)).is_some() {
            cp_index.push(index);
        }
        ids_by_depth.truncate(depth.saturating_sub(1));
        let parent_row = ids_by_depth.last().copied();
        ids_by_depth.push(node.trace_id());

        write!(
            w,
            "[{depth},{},{},{},{},{},{},",
            categories.index(node.name()),
            services.index(node.service().unwrap_or_default()),
            node.host().map_or(-1, |h| hosts.index(h)),
            node.project().map_or(-1, |p| projects.index(p)),
            node.started_us(),
            node.duration_us(),
        )?;
        serde_json::to_writer(&mut *w, node.trace_id())?;
        w.write_all(b",")?;
        match node.parent_id() {
            Some(p) if Some(p) == parent_row => w.write_all(b"0")?,
            other => serde_json::to_writer(&mut *w, &other)?,
        }
        w.write_all(b",")?;
        serde_json::to_writer(&mut *w, &node.exception())?;
        w.write_all(b",")?;
        write_value(w, node.start_payload())?;
        w.write_all(b",")?;
        write_value(w, node.stop_payload())?;
        w.write_all(b"]")?;
    }
    w.write_all(b"],\"cp\":")?;
    serde_json::to_writer(&mut *w, &cp_index)?;
    w.write_all(b"}")?;
    Ok(())
}

fn write_value<W: Write>(w: &mut W, value: Option<&Value>) -> io::Result<()> {
    match value {
        Some(v) => serde_json::to_writer(&mut *w, v)?,
        None => w.write_all(b"null")?,
    }
    Ok(())
}

fn write_usage<W: Write>(w: &mut W, usage: &[Usage]) -> io::Result<()> {
    w.write_all(b"[")?;
    for (i, u) in usage.iter().enumerate() {
        let comma = if i > 0 { "," } else { "" };
        write!(w, "{comma}[{},{},{}]", u.count, u.duration_us, u.self_us)?;
    }
    w.write_all(b"]")
}

/// The trace's `base_id`: that of the first point whose event carries one.
fn base_id(report: &Report) -> Option<&str> {
    report.iter().find_map(|(_, n)| {
        [n.start_payload(), n.stop_payload()]
            .into_iter()
            .flatten()
            .find_map(|e| e.get("base_id")?.as_str())
    })
}

/// Distinct strings, numbered in order of first appearance.
#[derive(Default)]
struct Table<'a> {
    names: Vec<&'a str>,
    index: HashMap<&'a str, usize>,
}

impl<'a> Table<'a> {
    fn of(usage: &'a [Usage]) -> Table<'a> {
        let mut table = Table::default();
        for u in usage {
            table.add(&u.name);
        }
        table
    }

    fn add(&mut self, name: &'a str) {
        if !self.index.contains_key(name) {
            self.index.insert(name, self.names.len());
            self.names.push(name);
        }
    }

    /// `-1` for a name not in the table (cannot happen for names taken from the report).
    fn index(&self, name: &str) -> i64 {
        self.index
            .get(name)
            .and_then(|&i| i64::try_from(i).ok())
            .unwrap_or(-1)
    }
}

/// Passes JSON text through, writing `<`, `>`, `&`, U+2028 and U+2029 as `\uXXXX`.
///
/// These characters only ever occur inside JSON strings, where the escape means the same
/// character, so the text stays the same JSON. What it buys: no `</script` or `<!--` can
/// appear inside the HTML script element, and the block is also a valid JavaScript literal
/// (U+2028/U+2029 used to be line terminators there).
///
/// U+2028 and U+2029 are the UTF-8 bytes `E2 80 A8` and `E2 80 A9`; a write may split them,
/// so up to two bytes are held back between writes.
struct ScriptSafe<'a> {
    out: &'a mut Vec<u8>,
    held: usize,
}

impl<'a> ScriptSafe<'a> {
    fn new(out: &'a mut Vec<u8>) -> ScriptSafe<'a> {
        ScriptSafe { out, held: 0 }
    }

    /// Writes out bytes still held back (an incomplete sequence at the very end).
    fn finish(mut self) {
        self.release();
    }

    fn release(&mut self) {
        const PREFIX: [u8; 2] = [0xE2, 0x80];
        self.out
            .extend_from_slice(PREFIX.get(..self.held).unwrap_or_default());
        self.held = 0;
    }
}

/// The bytes [`ScriptSafe`] looks at: `<`, `>`, `&`, and the lead byte of U+2028/U+2029.
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

impl Write for ScriptSafe<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut plain = 0; // start of the run of bytes copied as they are
        let mut i = 0;
        while i < buf.len() {
            if self.held == 0 {
                match next_special(buf, i) {
                    Some(next) => i = next,
                    None => break,
                }
            }
            let Some(&b) = buf.get(i) else { break };
            let at = i;
            i += 1;
            // Continue or abandon a held-back E2 / E2 80.
            if self.held > 0 {
                match (self.held, b) {
                    (1, 0x80) => {
                        self.held = 2;
                        plain = i;
                        continue;
                    }
                    (2, 0xA8 | 0xA9) => {
                        let escape = if b == 0xA8 { b"\\u2028" } else { b"\\u2029" };
                        self.out.extend_from_slice(escape);
                        self.held = 0;
                        plain = i;
                        continue;
                    }
                    _ => {
                        self.release();
                        plain = at;
                    }
                }
            }
            let escape: &[u8] = match b {
                b'<' => b"\\u003c",
                b'>' => b"\\u003e",
                b'&' => b"\\u0026",
                0xE2 => b"",
                _ => continue,
            };
            self.out
                .extend_from_slice(buf.get(plain..at).unwrap_or_default());
            self.out.extend_from_slice(escape);
            if b == 0xE2 {
                self.held = 1;
            }
            plain = i;
        }
        if self.held == 0 {
            self.out
                .extend_from_slice(buf.get(plain..).unwrap_or_default());
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn safe(text: &str) -> String {
        let mut out = Vec::new();
        let mut w = ScriptSafe::new(&mut out);
        w.write_all(text.as_bytes()).unwrap();
        w.finish();
        String::from_utf8(out).unwrap()
    }

    /// Feeds `text` one byte per write, so that every sequence is split.
    fn safe_bytewise(text: &str) -> String {
        let mut out = Vec::new();
        let mut w = ScriptSafe::new(&mut out);
        for b in text.as_bytes() {
            w.write_all(std::slice::from_ref(b)).unwrap();
        }
        w.finish();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn escapes_what_could_end_a_script_element() {
        let text = "a</script><!--b&c\u{2028}d\u{2029}e€…\u{2027}\u{202a}\u{20ac}";
        let want =
            "a\\u003c/script\\u003e\\u003c!--b\\u0026c\\u2028d\\u2029e€…\u{2027}\u{202a}\u{20ac}";
        assert_eq!(safe(text), want);
        assert_eq!(safe_bytewise(text), want);
        // A lone, truncated lead byte at the end is passed through, not lost.
        let mut out = Vec::new();
        let mut w = ScriptSafe::new(&mut out);
        w.write_all(&[b'x', 0xE2, 0x80]).unwrap();
        w.finish();
        assert_eq!(out, [b'x', 0xE2, 0x80]);
    }

    /// Against a plain per-character replacement, on texts made of the tricky pieces, cut
    /// into writes at arbitrary places (and longer than the escaper's blocks).
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
        ];
        let mut seed = 0x9E37_79B9_7F4A_7C15_u64;
        let mut next = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        for _ in 0..500 {
            let text: String = (0..next(120)).map(|_| pieces[next(pieces.len())]).collect();
            let want: String = text
                .chars()
                .map(|c| match c {
                    '<' => "\\u003c".to_string(),
                    '>' => "\\u003e".to_string(),
                    '&' => "\\u0026".to_string(),
                    '\u{2028}' => "\\u2028".to_string(),
                    '\u{2029}' => "\\u2029".to_string(),
                    c => c.to_string(),
                })
                .collect();
            let mut out = Vec::new();
            let mut w = ScriptSafe::new(&mut out);
            let bytes = text.as_bytes();
            let mut at = 0;
            while at < bytes.len() {
                let len = 1 + next(70);
                let end = (at + len).min(bytes.len());
                w.write_all(&bytes[at..end]).unwrap();
                at = end;
            }
            w.finish();
            assert_eq!(String::from_utf8(out).unwrap(), want, "{text:?}");
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
        for escaped in [safe(&text), safe_bytewise(&text)] {
            assert!(!escaped.contains('<') && !escaped.contains('>') && !escaped.contains('&'));
            assert!(!escaped.contains('\u{2028}') && !escaped.contains('\u{2029}'));
            let back: Value = serde_json::from_str(&escaped).unwrap();
            assert_eq!(back, value);
        }
    }

    #[test]
    fn html_text_escaping() {
        assert_eq!(
            escape_html(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
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
        let mut plain = Vec::new();
        write_data(&report, title, &mut plain).unwrap();
        let want: Value = serde_json::from_slice(&plain).unwrap();
        let got: Value = serde_json::from_str(block).unwrap();
        assert_eq!(got, want);

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
        let mut plain = Vec::new();
        write_data(&report, "t", &mut plain).unwrap();
        let got: Value = serde_json::from_slice(&plain).unwrap();
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
