//! Helpers shared by the integration tests.
#![allow(dead_code)] // each test file uses its own part

use serde_json::{Value, json};

pub const EVENTS: &str = include_str!("../../../../vectors/events.jsonl");
pub const REPORT_JSON: &str = include_str!("../../../../vectors/report.json");
pub const REPORT_DOT: &str = include_str!("../../../../vectors/report.dot");

pub fn vector_events() -> Vec<Value> {
    EVENTS
        .lines()
        .map(|l| serde_json::from_str(l).expect("vector line is JSON"))
        .collect()
}

/// A small deterministic generator (64-bit LCG), so the tests need no `rand`.
pub struct Lcg(pub u64);

impl Lcg {
    pub fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

/// Microseconds since the epoch → osprofiler's timestamp text.
pub fn stamp(us: i64) -> String {
    let secs = us.div_euclid(1_000_000);
    let micros = us.rem_euclid(1_000_000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Civil from days (Howard Hinnant).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}",
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    )
}

/// 2026-11-25T12:00:00 in microseconds since the epoch.
pub const T0: i64 = 1_795_608_000_000_000;

/// One osprofiler event. `name` is the full event name (`db-start`); `at_us` is relative
/// to [`T0`].
pub fn event(name: &str, trace_id: &str, parent_id: &str, at_us: i64, info: Value) -> Value {
    let mut info = info;
    if let Some(map) = info.as_object_mut() {
        map.entry("host").or_insert_with(|| json!("host-a"));
    }
    json!({
        "name": name,
        "base_id": "base",
        "trace_id": trace_id,
        "parent_id": parent_id,
        "timestamp": stamp(T0 + at_us),
        "info": info,
        "project": "nova",
        "service": "api",
    })
}

/// The start and stop events of a point.
pub fn point(name: &str, trace_id: &str, parent_id: &str, from_us: i64, to_us: i64) -> [Value; 2] {
    [
        event(
            &format!("{name}-start"),
            trace_id,
            parent_id,
            from_us,
            json!({}),
        ),
        event(
            &format!("{name}-stop"),
            trace_id,
            parent_id,
            to_us,
            json!({}),
        ),
    ]
}
