//! The HTML report of a large trace, beside the JSON one, on the same 100 000 points.
//! `cargo bench -p osprofiler-report --bench html`.
//!
//! - `build_and_render_html`: events (as `serde_json::Value`s) → `Report::from_events` →
//!   `render_html`, what `osprofiler trace show --html` does after reading the backend.
//! - `build`: `Report::from_events` alone.
//! - `render_html`: the page of an already built report.
//! - `to_json`: osprofiler's report JSON (`Report::to_json`) of the same report, and
//!   `to_json_string` its text as Python prints it.

#[path = "../tests/common/mod.rs"]
mod common;

use divan::{Bencher, black_box};
use osprofiler_report::{Report, render_html};
use serde_json::Value;
use std::sync::LazyLock;

const POINTS: usize = 100_000;

static EVENTS: LazyLock<Vec<Value>> = LazyLock::new(|| common::synthetic_events(POINTS, 7));
static REPORT: LazyLock<Report> = LazyLock::new(|| Report::from_events(EVENTS.clone()));

fn main() {
    let html = render_html(&REPORT, "bench");
    eprintln!(
        "{} points, {} events; HTML {:.1} MB, report JSON {:.1} MB",
        REPORT.len(),
        EVENTS.len(),
        html.len() as f64 / 1e6,
        REPORT.to_json_string().len() as f64 / 1e6
    );
    divan::main();
}

#[divan::bench(sample_count = 10, sample_size = 1)]
fn build_and_render_html(bencher: Bencher) {
    bencher
        .with_inputs(|| EVENTS.clone())
        .bench_values(|events| render_html(&Report::from_events(events), "bench"));
}

#[divan::bench(sample_count = 10, sample_size = 1)]
fn build(bencher: Bencher) {
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
fn to_json(bencher: Bencher) {
    let report = &*REPORT;
    bencher.bench(|| black_box(report).to_json());
}

#[divan::bench(sample_count = 10, sample_size = 1)]
fn to_json_string(bencher: Bencher) {
    let report = &*REPORT;
    bencher.bench(|| black_box(report).to_json_string());
}
