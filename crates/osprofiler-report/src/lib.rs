//! Trace reports for osprofiler: stored events in, a tree of points with stats out.
//!
//! This crate is pure (no I/O). A store reads a trace's events (the JSON objects that
//! osprofiler, Python or Rust, writes: two per point, `"<name>-start"` and
//! `"<name>-stop"`), hands them to [`Report::from_json_texts`] as the texts it holds (or
//! to [`Report::from_events`] as `serde_json::Value`s), and renders the report:
//!
//! - [`Report::to_json`]: exactly what Python's `osprofiler trace show --json` shows,
//!   so either side's tools read it; [`Report::to_json_extended`] adds microseconds.
//! - [`render_dot`]: the DOT graph of `osprofiler trace show --dot`.
//! - [`render_html`]: one self-contained HTML page to explore the trace (see below);
//!   [`render_html_to`] writes it to a file or socket without holding it whole.
//! - The typed tree ([`Report::roots`], [`Node`]) and queries over it for other
//!   renderers: [`Report::by_category`], [`Report::by_service`], [`Report::errors`],
//!   [`Report::critical_path`].
//!
//! ```
//! use osprofiler_report::{Report, render_dot};
//!
//! let events = r#"
//! {"name": "wsgi-start", "base_id": "b", "trace_id": "p1", "parent_id": "b", "timestamp": "2026-11-25T12:00:00.000000", "info": {"host": "h1", "request": {"path": "/v2.1/servers", "query": "", "method": "GET", "scheme": "http"}}, "project": "nova", "service": "api"}
//! {"name": "db-start", "base_id": "b", "trace_id": "p2", "parent_id": "p1", "timestamp": "2026-11-25T12:00:00.002000", "info": {"host": "h1", "db": {"statement": "SELECT 1", "params": {}}}, "project": "nova", "service": "api"}
//! {"name": "db-stop", "base_id": "b", "trace_id": "p2", "parent_id": "p1", "timestamp": "2026-11-25T12:00:00.007500", "info": {"host": "h1"}, "project": "nova", "service": "api"}
//! {"name": "wsgi-stop", "base_id": "b", "trace_id": "p1", "parent_id": "b", "timestamp": "2026-11-25T12:00:00.010000", "info": {"host": "h1"}, "project": "nova", "service": "api"}
//! not an event
//! "#;
//! let report = Report::from_json_lines(events);
//! assert_eq!(report.len(), 2);
//! assert_eq!(report.skipped(), 1);
//!
//! // The tree: wsgi → db, times in microseconds from the first event.
//! let wsgi = &report.roots()[0];
//! assert_eq!((wsgi.name(), wsgi.duration_us()), ("wsgi", 10_000));
//! assert_eq!(wsgi.children()[0].started_us(), 2_000);
//!
//! // osprofiler's JSON: integer milliseconds, truncated.
//! let json = report.to_json();
//! assert_eq!(json["info"]["finished"], 10);
//! assert_eq!(json["stats"]["db"]["duration"], 5);
//! assert_eq!(json["children"][0]["info"]["exception"], "None");
//!
//! // Queries.
//! let path: Vec<&str> = report.critical_path().iter().map(|n| n.name()).collect();
//! assert_eq!(path, ["wsgi", "db"]);
//! assert_eq!(report.by_category()[0].self_us, 4_500); // wsgi less its db call
//!
//! assert!(render_dot(&report).contains(r#"1 [label="api:wsgi - 10 ms\nGET /v2.1/servers.."]"#));
//! ```
//!
//! # How events become points
//!
//! Events are grouped by `trace_id`; the parent is `parent_id`, and nothing else: points
//! that overlap in time under one parent stay siblings. Children are sorted by start.
//! Where osprofiler 4.4.0 goes wrong, this crate keeps its output shape but not its bugs:
//!
//! - The result depends only on the set of events: an event fed twice counts once
//!   ([`Report::duplicates`]), and the order of arrival changes neither the values nor the
//!   key order (Python's follows arrival, e.g. Redis's newest-first lists). Stats are
//!   computed once, when the report is built (Python's driver crashes if asked twice).
//! - A point missing its start or its stop lasts zero time at the half it has, as Python
//!   does (Python's DOT output then crashes; ours does not).
//! - A point whose parent is not in the trace hangs from the root, as in Python; so does
//!   one whose `parent_id`s form a cycle, cut at its earliest point (Python loses such
//!   points), or that nests deeper than [`MAX_DEPTH`] ([`Report::detached`]).
//! - Invalid events are skipped and counted ([`Report::skipped`]), never a panic.
//! - Events given as text are read once, for the fields the report needs, and kept as
//!   they were stored ([`Node::start_raw`]): the HTML page embeds them as they are, the
//!   report JSON re-indents them, and no `serde_json::Value` is made unless asked for
//!   ([`Node::start_payload`], [`Report::to_json`]). A trace of 100 000 points is built
//!   in about 0.2 s and its HTML page written in about 0.1 s.
//! - The name of a point is its event name less `-start`/`-stop` (Python cuts at the
//!   first `-`: `http-client` becomes `http`).
//!
//! # The HTML report
//!
//! [`render_html`] writes one HTML file that needs nothing else: no network, no CDN, no
//! font (Python's page loads AngularJS and Bootstrap from CDNs and shows nothing offline).
//! Open it in any browser:
//!
//! ```no_run
//! # let report = osprofiler_report::Report::default();
//! let html = osprofiler_report::render_html(&report, "Trace 1f0e…");
//! std::fs::write("trace.html", html)?;
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! - **Header**: trace id (`base_id`), start time (UTC), total duration, number of points
//!   and services, and the error count (click it to go from one error to the next).
//! - **Waterfall**: one row per point, indented under its parent, with its service,
//!   category and a short label (request method and path, SQL statement, function name),
//!   and a bar placed by start and duration on the trace's time axis. Click the caret,
//!   or press Enter or Space, to collapse or expand; "Expand all" and "Collapse all" do the
//!   whole tree. Bars are coloured by service or by category (a toolbar switch), with a
//!   legend; the colours depend only on the names.
//! - **Errors** are red (bar, icon, service name); "Errors only" keeps them and their
//!   ancestors, "Next error" walks through them.
//! - **Critical path** ([`Report::critical_path`]): marked with a dark line under the bar
//!   and a dot; "Critical path only" shows nothing else.
//! - **Filter** (press `/`): case-insensitive text matched against name, service, host,
//!   project, ids, exception and every value in the events' `info` (function name and
//!   arguments, SQL statement and parameters, path, message…). Matching rows are shown with
//!   their ancestors, the count of matches beside the box; Enter goes to the next match.
//! - **Summary** tab: per service and per category, count, total duration, self time and
//!   self time as a share of the trace ([`Report::by_service`], [`Report::by_category`]).
//! - **Details** tab: the selected point's fields (name, service, project, host, ids, start,
//!   duration, self time, exception and message) and its raw start and stop events,
//!   pretty-printed.
//! - **Keyboard**: ↑/↓ (and Page Up/Down, Home/End) move the selection, → expands or goes
//!   to the first child, ← collapses or goes to the parent.
//!
//! Large traces stay responsive: the page embeds the trace once, as compact JSON with the
//! raw events as stored, and keeps only the rows in view in the document. A trace of
//! 100 000 points (72 MB of HTML with its events) opens in a few seconds, most of it the
//! browser reading the file; after that, filtering takes about 0.1 s and collapsing,
//! expanding or scrolling a few milliseconds.
//! Strings from the trace are only ever shown as text, so a service name such as
//! `<script>…</script>` is displayed, not run.

mod builder;
mod dot;
mod event;
mod hash;
mod html;
mod json;
mod pyjson;
mod report;
mod time;

pub use builder::{EventError, MAX_DEPTH, ReportBuilder};
pub use dot::render_dot;
pub use html::{render_html, render_html_to};
pub use report::{Node, Preorder, Report, Usage};

/// This crate's README (crates.io's page), its examples run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
