//! Reports of a large trace (100 000 points, 200 000 events): building them, and rendering
//! them as HTML, osprofiler's JSON and DOT. `cargo bench -p osprofiler-report --bench html`.
//!
//! The events are the texts a store hands over (Python's `json.dumps` spelling, one
//! `String` per event, in no particular order), or the same events as `serde_json::Value`s.
//!
//! - `build_and_render_html`: texts → [`Report::from_json_texts`] → `render_html`, what
//!   `osprofiler trace show --html` does after reading the backend.
//! - `build_from_texts`: `Report::from_json_texts` alone; `build_from_values`:
//!   `Report::from_events` of the parsed events.
//! - `render_html`, `render_dot`, `to_json` (the `serde_json::Value`) and `to_json_string`
//!   (the text as Python prints it) of an already built report.

#[path = "../tests/common/mod.rs"]
mod common;

use divan::{Bencher, black_box};
use osprofiler_report::{Report, render_dot, render_html};
use serde_json::Value;
use std::sync::LazyLock;

const POINTS: usize = 100_000;

static EVENTS: LazyLock<Vec<Value>> = LazyLock::new(|| common::synthetic_events(POINTS, 7));
static TEXTS: LazyLock<Vec<String>> =
    LazyLock::new(|| EVENTS.iter().map(common::python_text).collect());
static REPORT: LazyLock<Report> = LazyLock::new(|| from_texts(TEXTS.clone()));

fn from_texts(texts: Vec<String>) -> Report {
    Report::from_json_texts(texts)
}

fn main() {
    let html = render_html(&REPORT, "bench");
    eprintln!(
        "{} points, {} events ({:.1} MB of text); HTML {:.1} MB, report JSON {:.1} MB",
        REPORT.len(),
        TEXTS.len(),
        TEXTS.iter().map(String::len).sum::<usize>() as f64 / 1e6,
        html.len() as f64 / 1e6,
        REPORT.to_json_string().len() as f64 / 1e6
    );
    divan::main();
}

#[divan::bench(sample_count = 10, sample_size = 1)]
fn build_and_render_html(bencher: Bencher) {
    bencher
        .with_inputs(|| TEXTS.clone())
        .bench_values(|texts| render_html(&from_texts(texts), "bench"));
}

#[divan::bench(sample_count = 10, sample_size = 1)]
fn build_from_texts(bencher: Bencher) {
    bencher
        .with_inputs(|| TEXTS.clone())
        .bench_values(from_texts);
}

#[divan::bench(sample_count = 10, sample_size = 1)]
fn build_from_values(bencher: Bencher) {
    bencher
        .with_inputs(|| EVENTS.clone())
        .bench_values(Report::from_events);
}

#[divan::bench(sample_count = 10, sample_size = 1)]
fn render_html_only(bencher: Bencher) {
    let report = &*REPORT;
    bencher.bench(|| render_html(black_box(report), "bench"));
}

#[divan::bench(sample_count = 10, sample_size = 1)]
fn render_dot_only(bencher: Bencher) {
    let report = &*REPORT;
    bencher.bench(|| render_dot(black_box(report)));
}

#[divan::bench(sample_count = 10, sample_size = 1)]
fn to_json(bencher: Bencher) {
    let report = &*REPORT;
    bencher.bench(|| black_box(report).to_json());
}

#[divan::bench(sample_count = 10, sample_size = 1)]
fn to_json_string(bencher: Bencher) {
    let report = &*REPORT;
    bencher.bench(|| black_box(report).to_json_string());
}
