//! The HTML report, loaded in headless Chromium: what the page draws, that hostile strings
//! stay text, that it works offline, and that 100 000 points stay light.

mod common;

use std::path::{Path, PathBuf};
use std::time::Instant;

use common::{EVENTS, synthetic_events, vector_events};
use osprofiler_report::{Report, render_html};
use osprofiler_testkit::{Chromium, TempDir, need, workspace_root};
use serde_json::{Value, json};

const EVIL_SCRIPT: &str = "<script>document.title='PWNED';document.body.dataset.pwned=1</script>";
const EVIL_IMG: &str =
    "<img src=x onerror=\"document.title='PWNED';document.body.dataset.pwned=1\">";
const EVIL_TITLE: &str = "</title><script>document.title='PWNED'</script>";

fn chromium() -> Option<Chromium> {
    need("chromium", Chromium::locate())
}

fn vector_report() -> Report {
    let report = Report::from_json_lines(EVENTS);
    assert_eq!(report.len(), 5);
    report
}

/// The page with a script of the test's appended: it runs after the page's own script.
fn with_script(html: &str, script: &str) -> String {
    let at = html.rfind("</body>").expect("page has </body>");
    format!("{}<script>{script}</script>{}", &html[..at], &html[at..])
}

fn write(dir: &TempDir, name: &str, html: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, html).unwrap();
    path
}

fn dump(chromium: &Chromium, page: &Path) -> String {
    chromium.dump_dom(page).expect("chromium dumps the DOM")
}

/// The DOM without the data block (whose JSON holds the trace's strings, escaped).
fn without_data(dom: &str) -> String {
    let open = r#"<script type="application/json" id="trace-data">"#;
    let start = dom.find(open).expect("data block");
    let len = dom[start..].find("</script>").expect("end of data block") + "</script>".len();
    format!("{}{}", &dom[..start], &dom[start + len..])
}

/// The start tag of the element holding `needle` in its attributes.
fn tag_with<'a>(dom: &'a str, needle: &str) -> &'a str {
    let at = dom
        .find(needle)
        .unwrap_or_else(|| panic!("{needle} not in the DOM"));
    let start = dom[..at].rfind('<').unwrap();
    let end = at + dom[at..].find('>').unwrap();
    &dom[start..=end]
}

/// The markup of the element whose start tag holds `needle`, up to the next `until`.
fn section<'a>(dom: &'a str, needle: &str, until: &str) -> &'a str {
    let start = dom
        .find(needle)
        .unwrap_or_else(|| panic!("{needle} not in the DOM"));
    let len = dom[start..].find(until).unwrap_or(dom.len() - start);
    &dom[start..start + len]
}

/// Text between each `open` and the next `close` in `html`.
fn texts<'a>(html: &'a str, open: &str, close: &str) -> Vec<&'a str> {
    html.split(open)
        .skip(1)
        .map(|s| &s[..s.find(close).unwrap_or(s.len())])
        .collect()
}

fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let key = format!(" {name}=\"");
    let at = tag.find(&key)? + key.len();
    Some(&tag[at..at + tag[at..].find('"')?])
}

/// `(name, count)` of each row of a stats table.
fn table_counts(dom: &str, id: &str) -> Vec<(String, u64)> {
    let table = section(dom, &format!("<table id=\"{id}\""), "</table>");
    table
        .split("<tr ")
        .skip(1)
        .map(|row| {
            let name = texts(row, "<span class=\"stat-label\">", "</span>")[0].to_string();
            let count = attr(&format!(" {row}"), "data-count")
                .unwrap()
                .parse()
                .unwrap();
            (name, count)
        })
        .collect()
}

fn row_tags(dom: &str) -> Vec<&str> {
    dom.match_indices(" data-row=\"\"")
        .map(|(at, _)| {
            let start = dom[..at].rfind('<').unwrap();
            &dom[start..at + dom[at..].find('>').unwrap() + 1]
        })
        .collect()
}

fn body_attr<'a>(dom: &'a str, name: &str) -> &'a str {
    attr(tag_with(dom, "<body"), name).unwrap_or_else(|| panic!("no {name} on <body>"))
}

/// A small trace whose every string tries to get out of its place.
fn hostile_events() -> Vec<Value> {
    let point = |id: &str, parent: &str, name: &str, from: &str, to: &str, stop_info: Value| {
        let start_info = json!({
            "host": EVIL_IMG,
            "function": {"name": EVIL_SCRIPT, "args": format!("('{EVIL_IMG}',)"), "kwargs": "{}"},
            "db": {"statement": "SELECT '</script><script>document.title=`PWNED`</script>' -- \u{2028}", "params": {}},
            "request": {"path": "/x?<!--", "method": "GET", "url": "https://evil.example/x.js"},
        });
        let event = |phase: &str, ts: &str, info: &Value| {
            json!({
                "name": format!("{name}-{phase}"), "base_id": "evil-base", "trace_id": id,
                "parent_id": parent, "timestamp": ts, "info": info,
                "project": EVIL_SCRIPT, "service": EVIL_IMG,
            })
        };
        [
            event("start", from, &start_info),
            event("stop", to, &stop_info),
        ]
    };
    let mut events = Vec::new();
    events.extend(point(
        "p1\"onmouseover=\"document.title='PWNED'",
        "evil-base",
        EVIL_SCRIPT,
        "2026-11-25T12:00:00.000000",
        "2026-11-25T12:00:00.300000",
        json!({"host": EVIL_IMG}),
    ));
    events.extend(point(
        "p2",
        "p1\"onmouseover=\"document.title='PWNED'",
        "db",
        "2026-11-25T12:00:00.100000",
        "2026-11-25T12:00:00.200000",
        json!({"host": EVIL_IMG, "etype": EVIL_SCRIPT, "message": EVIL_IMG}),
    ));
    events
}

#[test]
fn works_offline_and_refers_to_nothing() {
    for (report, title) in [
        (vector_report(), "Trace 11111111"),
        (Report::from_events(hostile_events()), EVIL_TITLE),
        (Report::default(), ""),
    ] {
        let html = render_html(&report, title);
        let page = without_data(&html).to_ascii_lowercase();
        for bad in [
            "http://", "https://", "//cdn", "@import", "url(", "<link", "<iframe",
        ] {
            assert!(!page.contains(bad), "{bad:?} outside the data block");
        }
        // Every src= / href= (markup or script) points into the page itself.
        for key in ["src", "href", "action"] {
            for (at, _) in page.match_indices(key) {
                let after = page[at + key.len()..].trim_start();
                let Some(value) = after.strip_prefix('=') else {
                    continue;
                };
                if value.starts_with('=') {
                    continue; // a comparison in the script
                }
                let value = value.trim_start().trim_start_matches(['"', '\'']);
                assert!(
                    value.starts_with('#') || value.starts_with("data:"),
                    "{key}= to {:?}",
                    &value[..value.len().min(40)]
                );
            }
        }
    }
    // The data block does hold the trace's URL, escaped as JSON.
    let html = render_html(&Report::from_events(hostile_events()), "t");
    assert!(html.contains("https://evil.example/x.js"));
}

#[test]
fn vector_trace_in_chromium() {
    let Some(chromium) = chromium() else { return };
    let report = vector_report();
    let dir = TempDir::new();
    let page = write(&dir, "report.html", &render_html(&report, "Trace 11111111"));
    let dom = dump(&chromium, &page);

    // One row per point, in report order, all expanded (5 points: none virtualized away).
    let rows = row_tags(&dom);
    let ids: Vec<&str> = rows.iter().map(|t| attr(t, "data-id").unwrap()).collect();
    let want: Vec<&str> = report.iter().map(|(_, n)| n.trace_id()).collect();
    assert_eq!(ids, want);
    assert_eq!(body_attr(&dom, "data-points"), "5");
    assert_eq!(body_attr(&dom, "data-visible"), "5");

    // Header.
    assert!(
        dom.contains(r#"<dd id="f-trace" class="mono">11111111-1111-4111-8111-111111111111</dd>"#)
    );
    assert!(dom.contains(r#"<dd id="f-duration">111 ms</dd>"#), "{dom}");
    assert!(dom.contains(
        r#"<dd id="f-start" title="2026-11-25 12:00:00.000000 UTC">2026-11-25 12:00:00.000</dd>"#
    ));
    assert!(dom.contains(r#"<dd id="f-points">5</dd>"#));
    assert!(dom.contains(r#"<dd id="f-services">2</dd>"#));
    assert!(dom.contains(">1 error</button>"));
    assert!(dom.contains("<title>Trace 11111111</title>"));

    // Legend: each service, each category.
    let legend = section(&dom, "id=\"legend-services\"", "id=\"legend-categories\"");
    assert_eq!(
        texts(legend, "<span class=\"chip-name\">", "<"),
        ["api", "conductor"]
    );
    let legend = section(&dom, "id=\"legend-categories\"", "</div>");
    let mut categories = texts(legend, "<span class=\"chip-name\">", "<");
    categories.truncate(4);
    assert_eq!(categories, ["wsgi", "db", "rpc", "driver"]);

    // Stats: the vector's categories and services with their counts.
    let mut by_category = table_counts(&dom, "by-category");
    by_category.sort();
    let expected = [("db", 2), ("driver", 1), ("rpc", 1), ("wsgi", 1)];
    assert_eq!(by_category, expected.map(|(n, c)| (n.to_string(), c)));
    let mut by_service = table_counts(&dom, "by-service");
    by_service.sort();
    assert_eq!(
        by_service,
        [("api".to_string(), 3), ("conductor".to_string(), 2)]
    );

    // The error point (driver, ValueError) is marked, and only it.
    let errors: Vec<&str> = rows
        .iter()
        .filter(|t| attr(t, "class").unwrap().split(' ').any(|c| c == "error"))
        .map(|t| attr(t, "data-id").unwrap())
        .collect();
    assert_eq!(errors, ["aaaaaaaa-aaaa-4aaa-8aaa-000000000004"]);
    assert!(dom.contains(r#"<span class="err-icon" title="Error: ValueError">!</span>"#));

    // The critical path: wsgi → rpc → the conductor's db call.
    let critical: Vec<&str> = rows
        .iter()
        .filter(|t| {
            attr(t, "class")
                .unwrap()
                .split(' ')
                .any(|c| c == "critical")
        })
        .map(|t| attr(t, "data-id").unwrap())
        .collect();
    let want: Vec<&str> = report
        .critical_path()
        .iter()
        .map(|n| n.trace_id())
        .collect();
    assert_eq!(critical, want);
    assert_eq!(critical.len(), 3);

    // Row labels from the events: request, function, SQL.
    for label in [
        "POST /v2.1/servers",
        "__main__.quota_get",
        "nova.conductor.api.schedule_and_build_instances",
        "__main__.spawn",
        "SELECT * FROM instances WHERE uuid = %(uuid)s",
    ] {
        assert!(
            dom.contains(&format!("<span class=\"lbl\">{label}</span>")),
            "{label}"
        );
    }
    // Axis ticks.
    assert!(dom.contains("<span>0 ms</span>") && dom.contains("<span>100 ms</span>"));
}

#[test]
fn empty_trace_in_chromium() {
    let Some(chromium) = chromium() else { return };
    let dir = TempDir::new();
    let page = write(&dir, "empty.html", &render_html(&Report::default(), ""));
    let dom = dump(&chromium, &page);
    assert_eq!(body_attr(&dom, "data-points"), "0");
    assert!(row_tags(&dom).is_empty());
    assert!(dom.contains(">This trace has no points.</div>"));
    assert!(dom.contains(r#"<dd id="f-start">—</dd>"#), "{dom}");
    assert!(dom.contains("<title>Trace</title>"));
}

/// Drives the page through its controls and records what it shows after each step.
#[test]
fn interactions_in_chromium() {
    let Some(chromium) = chromium() else { return };
    let html = render_html(&vector_report(), "Trace");
    let script = r#"
      const r = window.osprofilerReport, out = {};
      const id = (n) => 'aaaaaaaa-aaaa-4aaa-8aaa-00000000000' + n;
      const key = (k, target) => (target || document.getElementById('scroller'))
        .dispatchEvent(new KeyboardEvent('keydown', {key: k, bubbles: true, cancelable: true}));
      const note = (name) => { const s = r.state(); out[name] = [s.visible, s.matches, s.rows]; };
      note('initial');
      r.collapseAll(); note('collapsed');
      r.expandAll(); note('expanded');
      r.toggle(id(3)); note('rpc_collapsed');
      r.filter('QUOTA'); note('filter_function');
      r.filter('select * from instances'); note('filter_sql');
      r.filter('host-b'); note('filter_host');
      r.filter('/v2.1/servers'); note('filter_path');
      r.filter('no such thing'); note('filter_none');
      r.filter(''); note('filter_cleared');
      r.errorsOnly(true); note('errors_only');
      r.errorsOnly(false); r.criticalOnly(true); note('critical_only');
      r.criticalOnly(false);
      r.select(id(1)); key('ArrowDown'); out.after_down = r.state().selected;
      key('ArrowDown'); key('ArrowRight'); out.after_right = r.state().selected;
      key('ArrowLeft'); out.after_left = r.state().selected;
      key('ArrowLeft'); note('after_collapse_key');
      key('Enter'); note('after_enter');
      key('/', document.body); out.focus = document.activeElement.id;
      document.getElementById('errors-only').click(); note('errors_button');
      document.getElementById('errors-only').click();
      document.getElementById('next-error').click(); out.next_error = r.state().selected;
      out.details_tab = document.getElementById('panel-details').hidden ? 'hidden' : 'shown';
      const pre = document.createElement('pre');
      pre.id = 'test-out';
      pre.textContent = JSON.stringify(out);
      document.body.appendChild(pre);
    "#;
    let dir = TempDir::new();
    let page = write(&dir, "report.html", &with_script(&html, script));
    let dom = dump(&chromium, &page);
    let out = texts(&dom, "<pre id=\"test-out\">", "</pre>")[0].replace("&amp;", "&");
    let out: Value = serde_json::from_str(&out).unwrap();
    let id = |n: u32| format!("aaaaaaaa-aaaa-4aaa-8aaa-00000000000{n}");
    // [visible rows, matches, row elements in the DOM]
    let want = json!({
        "initial": [5, 0, 5],
        "collapsed": [1, 0, 1],
        "expanded": [5, 0, 5],
        "rpc_collapsed": [3, 0, 3],
        // A filter reveals its matches (and expands their ancestors).
        "filter_function": [2, 1, 2],
        "filter_sql": [3, 1, 3],
        "filter_host": [4, 2, 4],
        "filter_path": [1, 1, 1],
        "filter_none": [0, 0, 0],
        "filter_cleared": [5, 0, 5],
        "errors_only": [3, 1, 3],
        "critical_only": [3, 3, 3],
        "after_down": id(2),
        "after_right": id(4),
        "after_left": id(3),
        "after_collapse_key": [3, 0, 3],
        "after_enter": [5, 0, 5],
        "focus": "filter",
        "errors_button": [3, 1, 3],
        "next_error": id(4),
        "details_tab": "shown",
    });
    assert_eq!(out, want);
    // The details panel shows the error point's fields and its raw events.
    let details = section(&dom, "id=\"panel-details\"", "</aside>");
    assert!(details.contains("<b>ValueError</b>: No valid host was found"));
    assert!(details.contains("<dd>host-b</dd>"));
    assert!(details.contains("\"etype\": \"ValueError\""));
    assert!(details.contains("\"name\": \"driver-stop\""));
}

#[test]
fn hostile_strings_stay_text() {
    let Some(chromium) = chromium() else { return };
    let report = Report::from_events(hostile_events());
    assert_eq!(report.len(), 2);
    let html = render_html(&report, EVIL_TITLE);
    // Select the error point so its details (host, payloads, message) are drawn too. The
    // control proves the check works: HTML put in the page the wrong way does run here.
    let script = r#"
      window.osprofilerReport.select('p2');
      const probe = document.createElement('div');
      probe.id = 'control';
      document.body.appendChild(probe);
      probe.insertAdjacentHTML('beforeend', '<' + 'img src=x onerror="document.body.dataset.control=1">');
    "#;
    let dir = TempDir::new();
    let page = write(&dir, "evil.html", &with_script(&html, script));
    let dom = dump(&chromium, &page);
    let body = tag_with(&dom, "<body");

    assert_eq!(
        attr(body, "data-control"),
        Some("1"),
        "the control did not run"
    );
    assert_eq!(attr(body, "data-pwned"), None, "a trace string ran");
    assert!(!dom.contains("<title>PWNED</title>"));
    let title = texts(&dom, "<title>", "</title>")[0];
    assert_eq!(
        title,
        "&lt;/title&gt;&lt;script&gt;document.title='PWNED'&lt;/script&gt;"
    );

    // Outside the data block: the page's two scripts and the test's, and the control's
    // image; nothing else.
    let page_dom = without_data(&dom);
    assert_eq!(page_dom.matches("<script").count(), 2, "{page_dom}");
    assert_eq!(page_dom.matches("<img").count(), 1, "{page_dom}");
    assert!(page_dom.contains(r#"<div id="control"><img src="x""#));

    // The strings are on the page as text: name, service, project, host, function,
    // exception and message, and inside the pretty-printed events.
    let script_text =
        "&lt;script&gt;document.title='PWNED';document.body.dataset.pwned=1&lt;/script&gt;";
    let img_text =
        "&lt;img src=x onerror=\"document.title='PWNED';document.body.dataset.pwned=1\"&gt;";
    assert!(page_dom.matches(script_text).count() >= 4, "{page_dom}");
    assert!(page_dom.matches(img_text).count() >= 4, "{page_dom}");
    assert!(page_dom.contains(&format!("<dd>{img_text}</dd>"))); // host
    assert!(page_dom.contains(&format!("<b>{script_text}</b>: {img_text}"))); // exception

    // Both rows, with the quote-laden id kept whole in its attribute.
    let rows = row_tags(&dom);
    assert_eq!(rows.len(), 2);
    assert_eq!(
        attr(rows[0], "data-id"),
        Some("p1&quot;onmouseover=&quot;document.title='PWNED'")
    );
}

#[test]
fn hundred_thousand_points() {
    let events = synthetic_events(100_000, 7);
    let report = Report::from_events(events);
    assert_eq!(report.len(), 100_000);
    assert_eq!(report.detached(), 0);
    let max_depth = report.iter().map(|(d, _)| d).max().unwrap();
    assert!(max_depth > 400, "{max_depth}");
    assert!(report.roots().len() > 100);

    let started = Instant::now();
    let html = render_html(&report, "100k points");
    let elapsed = started.elapsed();
    eprintln!(
        "render_html, 100 000 points: {elapsed:?} ({} build), {:.1} MB of HTML",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        html.len() as f64 / 1e6
    );

    let Some(chromium) = chromium() else { return };
    // Timed operations, then a jump to the middle: only the rows there are drawn.
    let script = r#"
      const r = window.osprofilerReport, b = document.body.dataset;
      const time = (f) => { const t = performance.now(); f(); return (performance.now() - t).toFixed(1); };
      b.firstRows = String(r.state().rows);
      b.filterMs = time(() => r.filter('step_7'));
      b.filterMatches = String(r.state().matches);
      b.refilterMs = time(() => r.filter('step_12'));
      b.clearMs = time(() => r.filter(''));
      b.collapseMs = time(() => r.collapseAll());
      b.collapsedVisible = String(r.state().visible);
      b.expandMs = time(() => r.expandAll());
      b.scrollMs = time(() => r.scrollToRow(50000));
    "#;
    let dir = TempDir::new();
    let page = write(&dir, "big.html", &with_script(&html, script));
    let started = Instant::now();
    let dom = dump(&chromium, &page);
    let wall = started.elapsed();

    assert_eq!(body_attr(&dom, "data-points"), "100000");
    assert_eq!(body_attr(&dom, "data-visible"), "100000");
    let rows = row_tags(&dom);
    assert!(!rows.is_empty() && rows.len() < 500, "{} rows", rows.len());
    assert_eq!(body_attr(&dom, "data-rows"), rows.len().to_string());
    let first_rows: usize = body_attr(&dom, "data-first-rows").parse().unwrap();
    assert!(first_rows > 0 && first_rows < 500, "{first_rows}");
    // All expanded, the visible list is the preorder: row 50 000 is point 50 000.
    let indices: Vec<usize> = rows
        .iter()
        .map(|t| attr(t, "data-index").unwrap().parse().unwrap())
        .collect();
    assert!(indices.contains(&50_000), "{indices:?}");
    assert!(indices.iter().all(|i| (49_900..50_100).contains(i)));
    assert_eq!(
        body_attr(&dom, "data-collapsed-visible"),
        report.roots().len().to_string()
    );
    assert!(
        body_attr(&dom, "data-filter-matches")
            .parse::<usize>()
            .unwrap()
            > 1000
    );
    eprintln!(
        "chromium, 100 000 points: {wall:?} to load and dump; in the page: HTML read in {} ms, \
         then JSON.parse {} ms, first draw {} ms (from script start), {} rows in the DOM; \
         filter {} ms, refilter {} ms, clear {} ms, collapse all {} ms, expand all {} ms, \
         jump to row 50 000 {} ms",
        body_attr(&dom, "data-script-start-ms"),
        body_attr(&dom, "data-parse-ms"),
        body_attr(&dom, "data-load-ms"),
        first_rows,
        body_attr(&dom, "data-filter-ms"),
        body_attr(&dom, "data-refilter-ms"),
        body_attr(&dom, "data-clear-ms"),
        body_attr(&dom, "data-collapse-ms"),
        body_attr(&dom, "data-expand-ms"),
        body_attr(&dom, "data-scroll-ms"),
    );
}

/// A picture of the vector trace with the error point selected: `docs/report.png` at the
/// workspace root when `OSPROFILER_WRITE_SCREENSHOT=1` (for the README), else a temp file.
#[test]
fn screenshot() {
    let Some(chromium) = chromium() else { return };
    let report = Report::from_events(vector_events());
    let html = render_html(&report, "POST /v2.1/servers");
    let html = with_script(
        &html,
        "window.osprofilerReport.select('aaaaaaaa-aaaa-4aaa-8aaa-000000000004');",
    );
    let dir = TempDir::new();
    let page = write(&dir, "report.html", &html);
    let out = if std::env::var("OSPROFILER_WRITE_SCREENSHOT").is_ok_and(|v| v == "1") {
        let docs = workspace_root().unwrap().join("docs");
        std::fs::create_dir_all(&docs).unwrap();
        docs.join("report.png")
    } else {
        dir.join("report.png")
    };
    chromium.screenshot(&page, &out, 1400, 900).unwrap();
    let png = std::fs::read(&out).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
    // IHDR: width and height, big-endian.
    assert_eq!(&png[16..24], &[0, 0, 5, 120, 0, 0, 3, 132]);
    eprintln!("screenshot: {}", out.display());
}
