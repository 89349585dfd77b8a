//! The report of the reference trace against what Python's osprofiler 4.4.0 made of it.

mod common;

use common::{Lcg, REPORT_DOT, REPORT_JSON, vector_events};
use osprofiler_report::{Report, render_dot};
use serde_json::{Value, json};

fn python_report() -> Value {
    serde_json::from_str(REPORT_JSON).expect("report.json is JSON")
}

#[test]
fn value_equality_ignores_key_order() {
    // serde_json's `preserve_order` keeps maps in an IndexMap, whose `==` compares entries
    // by key, not position. The comparisons below rely on that; check it holds.
    let a: Value = serde_json::from_str(r#"{"a": 1, "b": {"c": 2, "d": 3}}"#).unwrap();
    let b: Value = serde_json::from_str(r#"{"b": {"d": 3, "c": 2}, "a": 1}"#).unwrap();
    assert_eq!(a, b);
    assert_ne!(a.to_string(), b.to_string());
}

#[test]
fn json_equals_python_report() {
    let report = Report::from_events(vector_events());
    assert_eq!(report.skipped(), 0);
    assert_eq!(report.to_json(), python_report());
}

#[test]
fn json_text_equals_python_output_byte_for_byte() {
    // Same keys in the same order, same indentation: the file is Python's own output.
    let report = Report::from_events(vector_events());
    assert_eq!(report.to_json_string(), REPORT_JSON);
}

#[test]
fn dot_equals_python_dot() {
    let report = Report::from_events(vector_events());
    assert_eq!(render_dot(&report), REPORT_DOT);
}

#[test]
fn same_events_twice_give_same_report() {
    let mut events = vector_events();
    events.extend(vector_events());
    let report = Report::from_events(events);
    assert_eq!(report.duplicates(), 10);
    assert_eq!(report.len(), 5);
    assert_eq!(report.to_json(), python_report());
    assert_eq!(report.to_json_string(), REPORT_JSON);
    assert_eq!(render_dot(&report), REPORT_DOT);
}

#[test]
fn shuffled_events_give_same_report() {
    let mut rng = Lcg(7);
    let mut reversed = vector_events();
    reversed.reverse(); // the order Redis's LRANGE returns them in
    let mut orders = vec![reversed];
    for _ in 0..20 {
        let mut events = vector_events();
        events.extend(vector_events());
        rng.shuffle(&mut events);
        orders.push(events);
    }
    for events in orders {
        let report = Report::from_events(events);
        // The text too: key order does not depend on the order of arrival.
        assert_eq!(report.to_json_string(), REPORT_JSON);
        assert_eq!(render_dot(&report), REPORT_DOT);
    }
}

#[test]
fn json_lines_reader_reads_the_vector() {
    let report = Report::from_json_lines(common::EVENTS);
    assert_eq!(report.skipped(), 0);
    assert_eq!(report.to_json(), python_report());
}

#[test]
fn typed_tree_of_the_vector() {
    let report = Report::from_events(vector_events());
    assert_eq!(report.len(), 5);
    assert_eq!(report.duration_us(), 111_375);
    assert_eq!(report.finished_ms(), Some(111));
    // last_trace_started is the latest *start* event: db at 49.5 ms.
    assert_eq!(report.last_started_us(), Some(49_500));
    assert_eq!(report.last_started_ms(), Some(49));

    let shape: Vec<(usize, &str, Option<&str>, i64, i64)> = report
        .iter()
        .map(|(depth, n)| {
            (
                depth,
                n.name(),
                n.service(),
                n.started_us(),
                n.finished_us(),
            )
        })
        .collect();
    assert_eq!(
        shape,
        [
            (1, "wsgi", Some("api"), 0, 111_375),
            (2, "db", Some("api"), 1_375, 5_500),
            (2, "rpc", Some("api"), 12_375, 88_000),
            (3, "driver", Some("conductor"), 22_000, 34_375),
            (3, "db", Some("conductor"), 49_500, 67_375),
        ]
    );

    let rpc = &report.roots()[0].children()[1];
    assert_eq!(rpc.trace_id(), "aaaaaaaa-aaaa-4aaa-8aaa-000000000003");
    assert_eq!(
        rpc.parent_id(),
        Some("aaaaaaaa-aaaa-4aaa-8aaa-000000000001")
    );
    assert_eq!(rpc.project(), Some("nova"));
    assert_eq!(rpc.host(), Some("host-a"));
    assert_eq!(
        rpc.function_name(),
        Some("nova.conductor.api.schedule_and_build_instances")
    );
    assert_eq!(
        (rpc.started_ms(), rpc.finished_ms(), rpc.duration_ms()),
        (12, 88, 76)
    );
    assert_eq!(rpc.exception(), None);
    assert_eq!(
        rpc.start_payload().map(|p| &p["name"]),
        Some(&json!("rpc-start"))
    );

    let errors: Vec<(&str, Option<&str>)> = report
        .errors()
        .iter()
        .map(|n| (n.name(), n.exception()))
        .collect();
    assert_eq!(errors, [("driver", Some("ValueError"))]);

    // wsgi ends last at the top; under it rpc ends last (88 ms > 5.5 ms); under rpc the
    // db call ends last (67.4 ms > 34.4 ms).
    let path: Vec<&str> = report
        .critical_path()
        .iter()
        .map(|n| n.trace_id())
        .collect();
    assert_eq!(
        path,
        [
            "aaaaaaaa-aaaa-4aaa-8aaa-000000000001",
            "aaaaaaaa-aaaa-4aaa-8aaa-000000000003",
            "aaaaaaaa-aaaa-4aaa-8aaa-000000000005",
        ]
    );

    let categories: Vec<(&str, usize, i64, i64, i64)> = report
        .by_category()
        .iter()
        .map(|u| {
            (
                u.name.as_str(),
                u.count,
                u.duration_ms,
                u.duration_us,
                u.self_us,
            )
        })
        .collect();
    assert_eq!(
        categories,
        [
            // wsgi: 111 375 less db (4 125) and rpc (75 625).
            ("wsgi", 1, 111, 111_375, 31_625),
            ("db", 2, 4 + 18, 4_125 + 17_875, 22_000),
            // rpc: 75 625 less driver (12 375) and db (17 875).
            ("rpc", 1, 76, 75_625, 45_375),
            ("driver", 1, 12, 12_375, 12_375),
        ]
    );
    let services: Vec<(&str, usize, i64)> = report
        .by_service()
        .iter()
        .map(|u| (u.name.as_str(), u.count, u.self_us))
        .collect();
    assert_eq!(
        services,
        [
            ("api", 3, 31_625 + 4_125 + 45_375),
            ("conductor", 2, 12_375 + 17_875)
        ]
    );
    // Own times add up to the whole trace when one point spans it.
    let own: i64 = report.by_category().iter().map(|u| u.self_us).sum();
    assert_eq!(own, report.duration_us());
}

#[test]
fn extended_json_only_adds_keys() {
    let report = Report::from_events(vector_events());
    let mut extended = report.to_json_extended();
    assert_eq!(extended["info"]["finished_us"], 111_375);
    assert_eq!(extended["info"]["last_trace_started_us"], 49_500);
    assert_eq!(extended["stats"]["db"]["duration_us"], 22_000);
    let wsgi = &extended["children"][0]["info"];
    assert_eq!(
        (
            &wsgi["started_us"],
            &wsgi["finished_us"],
            &wsgi["duration_us"]
        ),
        (&json!(0), &json!(111_375), &json!(111_375))
    );
    strip_extensions(&mut extended);
    assert_eq!(extended, python_report());
}

/// Removes every key that [`Report::to_json_extended`] adds.
fn strip_extensions(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for key in [
                "started_us",
                "finished_us",
                "duration_us",
                "last_trace_started_us",
                "self_us",
            ] {
                map.shift_remove(key);
            }
            map.values_mut().for_each(strip_extensions);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_extensions),
        _ => {}
    }
}
