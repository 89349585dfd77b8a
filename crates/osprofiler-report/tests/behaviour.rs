//! Where the report departs from Python's bugs, and how it takes bad input.

mod common;

use common::{Lcg, T0, event, point, stamp};
use osprofiler_report::{EventError, MAX_DEPTH, Report, ReportBuilder, render_dot};
use serde_json::{Value, json};

#[test]
fn point_with_only_start_or_only_stop() {
    let mut events = Vec::new();
    events.extend(point("wsgi", "root", "base", 0, 10_000));
    // Lost its stop: lasts nothing, at its start.
    events.push(event("db-start", "no-stop", "root", 2_500, json!({})));
    // Lost its start: lasts nothing, at its stop; it still has its error.
    events.push(event(
        "rpc-stop",
        "no-start",
        "root",
        7_250,
        json!({"etype": "Timeout"}),
    ));
    let report = Report::from_events(events);
    assert_eq!(report.skipped(), 0);
    let kids = report.roots()[0].children();
    let times: Vec<(&str, i64, i64)> = kids
        .iter()
        .map(|n| (n.trace_id(), n.started_us(), n.finished_us()))
        .collect();
    assert_eq!(
        times,
        [("no-stop", 2_500, 2_500), ("no-start", 7_250, 7_250)]
    );
    assert!(kids[0].stop_payload().is_none() && kids[1].start_payload().is_none());
    assert_eq!(kids[1].exception(), Some("Timeout"));
    // Only start events count for last_trace_started, as in Python.
    assert_eq!(report.last_started_us(), Some(2_500));

    // JSON as Python writes such points: no stop → no stop payload and no "exception";
    // no start → no start payload, "started" added last.
    let json = report.to_json();
    let no_stop = &json["children"][0]["children"][0]["info"];
    let keys: Vec<&str> = no_stop
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "name",
            "project",
            "service",
            "host",
            "meta.raw_payload.db-start",
            "started",
            "finished"
        ]
    );
    assert_eq!(
        (&no_stop["started"], &no_stop["finished"]),
        (&json!(2), &json!(2))
    );
    let no_start = &json["children"][0]["children"][1]["info"];
    let keys: Vec<&str> = no_start
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "name",
            "project",
            "service",
            "host",
            "meta.raw_payload.rpc-stop",
            "finished",
            "exception",
            "started"
        ]
    );
    assert_eq!(no_start["exception"], "Timeout");
    assert_eq!(json["stats"]["rpc"], json!({"count": 1, "duration": 0}));

    // Python's DOT crashes on an rpc point without its start payload; ours shows it.
    let dot = render_dot(&report);
    assert!(dot.contains("[label=\"api:rpc - 0 ms\"]"), "{dot}");
}

#[test]
fn overlapping_siblings_stay_siblings() {
    let mut events = Vec::new();
    events.extend(point("wsgi", "root", "base", 0, 100_000));
    // Two concurrent calls from the same parent; b starts inside a and ends after it.
    events.extend(point("rpc", "a", "root", 10_000, 60_000));
    events.extend(point("rpc", "b", "root", 20_000, 90_000));
    // And one nested inside both time spans, but whose parent is a.
    events.extend(point("db", "c", "a", 30_000, 40_000));
    let report = Report::from_events(events);
    let root = &report.roots()[0];
    let kids: Vec<&str> = root.children().iter().map(|n| n.trace_id()).collect();
    assert_eq!(kids, ["a", "b"]);
    assert_eq!(root.children()[0].children()[0].trace_id(), "c");
    assert!(root.children()[1].children().is_empty());
    // The parent waited for b, which ends last.
    let path: Vec<&str> = report
        .critical_path()
        .iter()
        .map(|n| n.trace_id())
        .collect();
    assert_eq!(path, ["root", "b"]);
    // wsgi's own time counts the overlap of a and b once: 100 - (90 - 10) ms.
    assert_eq!(report.by_category()[0].self_us, 20_000);
}

#[test]
fn unknown_parent_hangs_from_root() {
    let mut events = Vec::new();
    events.extend(point("wsgi", "w", "base", 0, 5_000));
    events.extend(point("db", "orphan", "lost-parent", 1_000, 2_000));
    let report = Report::from_events(events);
    let roots: Vec<&str> = report.roots().iter().map(|n| n.trace_id()).collect();
    assert_eq!(roots, ["w", "orphan"]);
    assert_eq!(report.detached(), 0);
    assert_eq!(report.to_json()["children"][1]["parent_id"], "lost-parent");
}

#[test]
fn invalid_events_are_skipped_and_counted() {
    let good = point("wsgi", "w", "base", 0, 5_000);
    let mut no_trace_id = good[0].clone();
    no_trace_id.as_object_mut().unwrap().remove("trace_id");
    let mut numeric_name = good[0].clone();
    numeric_name["name"] = json!(5);
    let mut bad_name = good[0].clone();
    bad_name["name"] = json!("wsgi-begin");
    let mut bad_time = good[0].clone();
    bad_time["timestamp"] = json!("2026-02-30T00:00:00.000000");
    let mut no_time = good[0].clone();
    no_time.as_object_mut().unwrap().remove("timestamp");

    let mut builder = ReportBuilder::new();
    assert_eq!(builder.push(json!([1, 2])), Err(EventError::NotAnObject));
    assert_eq!(builder.push(json!(null)), Err(EventError::NotAnObject));
    assert_eq!(
        builder.push(no_trace_id),
        Err(EventError::Missing("trace_id"))
    );
    assert_eq!(builder.push(numeric_name), Err(EventError::Missing("name")));
    assert!(matches!(
        builder.push(bad_name),
        Err(EventError::BadName(_))
    ));
    assert!(matches!(
        builder.push(bad_time),
        Err(EventError::BadTimestamp(_))
    ));
    assert_eq!(builder.push(no_time), Err(EventError::Missing("timestamp")));
    assert!(matches!(
        builder.push_json("{oops"),
        Err(EventError::Json(_))
    ));
    for e in good {
        assert_eq!(builder.push(e), Ok(()));
    }
    let report = builder.finish();
    assert_eq!(report.skipped(), 8);
    assert_eq!(report.len(), 1);

    // Events missing what the report only shows are fine: no info, no project/service,
    // parent_id not a string, info not an object.
    let report = Report::from_events([
        json!({"name": "x-start", "trace_id": "t", "timestamp": stamp(T0)}),
        json!({"name": "x-stop", "trace_id": "t", "timestamp": stamp(T0 + 1_000),
               "parent_id": 7, "info": "weird"}),
        json!({"name": "wsgi-start", "trace_id": "w", "timestamp": stamp(T0), "info": {"request": 1}}),
        json!({"name": "rpc-start", "trace_id": "r", "timestamp": stamp(T0),
               "info": {"function": {"name": null}}}),
    ]);
    assert_eq!(report.skipped(), 0);
    assert_eq!(report.len(), 3);
    let json = report.to_json();
    // All three start together: by trace_id, r, t, w.
    let x = &json["children"][1];
    assert_eq!(x["trace_id"], "t");
    assert_eq!(x["parent_id"], Value::Null);
    assert_eq!(x["info"]["service"], Value::Null);
    assert_eq!(x["info"]["host"], Value::Null);
    assert_eq!(x["info"]["exception"], "None");
    let dot = render_dot(&report);
    assert!(dot.contains("\t1 [label=\"rpc - 0 ms\"]"), "{dot}");
    assert!(dot.contains("\t2 [label=\"x - 1 ms\"]"), "{dot}");
    assert!(dot.contains("\t3 [label=\"wsgi - 0 ms\"]"), "{dot}");

    let report = Report::from_json_lines("\n  \nnot json\n[]\n");
    assert_eq!((report.len(), report.skipped()), (0, 2));
}

#[test]
fn empty_report() {
    let report = Report::from_events(Vec::<Value>::new());
    assert!(report.is_empty());
    assert_eq!(report.duration_us(), 0);
    assert!(report.critical_path().is_empty());
    assert_eq!(
        report.to_json(),
        json!({"info": {"name": "total", "started": 0, "finished": null,
                        "last_trace_started": null},
               "children": [], "stats": {}})
    );
    assert_eq!(
        render_dot(&report),
        "digraph {\n\t0 [label=\"total - 0 ms\"]\n}\n"
    );
}

#[test]
fn parent_cycles_and_self_parents_lose_no_point() {
    let mut events = Vec::new();
    events.extend(point("wsgi", "w", "base", 0, 50_000));
    // Its own parent: Python hangs it under itself, out of the tree.
    events.extend(point("db", "self", "self", 1_000, 2_000));
    // A cycle y → z → y, with a child q hanging off z: Python drops all three.
    events.extend(point("rpc", "q", "z", 3_000, 4_000));
    events.extend(point("rpc", "z", "y", 5_000, 9_000));
    events.extend(point("rpc", "y", "z", 6_000, 8_000));
    let report = Report::from_events(events.clone());
    assert_eq!(report.len(), 5);
    assert_eq!(report.detached(), 2);
    let roots: Vec<&str> = report.roots().iter().map(|n| n.trace_id()).collect();
    // The cycle is cut at its earliest point, z, which keeps y and q below it.
    assert_eq!(roots, ["w", "self", "z"]);
    let z = &report.roots()[2];
    let kids: Vec<&str> = z.children().iter().map(|n| n.trace_id()).collect();
    assert_eq!(kids, ["q", "y"]);

    let mut rng = Lcg(3);
    for _ in 0..10 {
        let mut shuffled = events.clone();
        rng.shuffle(&mut shuffled);
        assert_eq!(
            Report::from_events(shuffled).to_json_string(),
            report.to_json_string()
        );
    }
}

#[test]
fn very_deep_nesting_does_not_overflow() {
    // 1 100 points, each the parent of the next, on the default 2 MiB stack of a spawned
    // thread (the depth cap is what keeps serde_json's recursion within it).
    let worker = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(|| {
            let depth = 1_100;
            let mut events = Vec::new();
            for i in 0..depth {
                let parent = if i == 0 {
                    "base".to_string()
                } else {
                    format!("p{}", i - 1)
                };
                events.extend(point("f", &format!("p{i}"), &parent, i, 2 * depth - i));
            }
            let report = Report::from_events(events);
            assert_eq!(report.len(), depth as usize);
            assert_eq!(report.detached(), depth as usize / MAX_DEPTH);
            assert!(report.iter().all(|(d, _)| d <= MAX_DEPTH));
            let text = report.to_json_string();
            assert!(text.len() > 1_000_000);
            let dot = render_dot(&report);
            assert_eq!(dot.matches(" -> ").count(), depth as usize);
            assert_eq!(report.critical_path().len(), MAX_DEPTH);
            drop(report);
        })
        .unwrap();
    worker.join().expect("no stack overflow");
}

#[test]
fn conflicting_duplicates_resolve_the_same_in_any_order() {
    let [start, stop] = point("db", "d", "base", 1_000, 9_000);
    let [early_start, late_stop] = point("db", "d", "base", 500, 9_500);
    let mut other_info = stop.clone();
    other_info["info"]["etype"] = json!("IOError");
    let all = vec![start, stop, early_start, late_stop, other_info];
    let mut rng = Lcg(11);
    let mut seen = None;
    for _ in 0..20 {
        let mut events = all.clone();
        rng.shuffle(&mut events);
        let report = Report::from_events(events);
        assert_eq!(report.duplicates(), 3);
        let node = &report.roots()[0];
        // The earliest start and the latest stop win.
        assert_eq!((node.started_us(), node.finished_us()), (0, 9_000));
        let text = report.to_json_string();
        assert_eq!(seen.get_or_insert_with(|| text.clone()), &text);
    }
}

#[test]
fn dot_labels_are_escaped_and_lenient() {
    let mut events = Vec::new();
    let mut wsgi = event(
        "wsgi-start",
        "w",
        "base",
        0,
        json!({"request": {"method": "GET", "path": "/a\"b\\c/0123456789012345678901234567890123456789"}}),
    );
    wsgi["service"] = json!("my \"api\"");
    events.push(wsgi);
    events.push(event("wsgi-stop", "w", "base", 20_000, json!({})));
    events.push(event(
        "rpc-start",
        "r",
        "w",
        1_000,
        json!({"function": {"name": "demo::compute::spawn"}}),
    ));
    events.push(event("rpc-stop", "r", "w", 3_000, json!({})));
    events.push(event("driver-start", "d", "w", 4_000, json!({})));
    events.push(event("driver-stop", "d", "w", 5_000, json!({})));
    let dot = render_dot(&Report::from_events(events));
    assert_eq!(
        dot,
        "digraph {\n\
         \t0 [label=\"total - 20 ms\"]\n\
         \t1 [label=\"my \\\"api\\\":wsgi - 20 ms\\nGET /a\\\"b\\\\c/01234567890123456789012..\"]\n\
         \t2 [label=\"api:rpc - 2 ms\\nspawn\"]\n\
         \t1 -> 2\n\
         \t3 [label=\"api:driver - 1 ms\"]\n\
         \t1 -> 3\n\
         \t0 -> 1\n\
         }\n"
    );
}

#[test]
fn hyphenated_point_names_are_kept_whole() {
    let events = point("http-client", "h", "base", 0, 1_000);
    let report = Report::from_events(events);
    assert_eq!(report.roots()[0].name(), "http-client");
    let json = report.to_json();
    let info = &json["children"][0]["info"];
    assert_eq!(info["name"], "http-client");
    assert!(info.get("meta.raw_payload.http-client-start").is_some());
    assert!(json["stats"].get("http-client").is_some());
}

#[test]
fn milliseconds_truncate_each_time_separately() {
    // 0.9 ms → 1.1 ms lasts 0.2 ms but shows 1 - 0 = 1 ms, as in Python.
    let mut events = Vec::new();
    events.extend(point("a", "a", "base", 0, 10));
    events.extend(point("b", "b", "base", 900, 1_100));
    let report = Report::from_events(events);
    let b = &report.roots()[1];
    assert_eq!(
        (b.started_ms(), b.finished_ms(), b.duration_ms()),
        (0, 1, 1)
    );
    assert_eq!(b.duration_us(), 200);
    assert_eq!(report.to_json()["stats"]["b"]["duration"], 1);
}

#[test]
fn timestamps_of_other_writers_and_ids_that_are_not_uuids() {
    // One point per form, each lasting 1.5 ms from 12:00:00 (UTC), written as other
    // writers do (see `time::parse_timestamp`); ids are whatever text the writer used.
    let forms: [(&str, &str, &str); 7] = [
        ("none", "2026-11-25T12:00:00", "2026-11-25T12:00:00.0015"),
        ("3", "2026-11-25T12:00:00.000", "2026-11-25T12:00:00.001"),
        (
            "9",
            "2026-11-25T12:00:00.000000000",
            "2026-11-25T12:00:00.001500999",
        ),
        ("Z", "2026-11-25T12:00:00Z", "2026-11-25T12:00:00.0015Z"),
        (
            "+02:00",
            "2026-11-25T14:00:00+02:00",
            "2026-11-25T14:00:00.0015+02:00",
        ),
        ("space", "2026-11-25 12:00:00", "2026-11-25 12:00:00.0015"),
        (
            "osprofiler",
            "2026-11-25T12:00:00.000000",
            "2026-11-25T12:00:00.001500",
        ),
    ];
    let mut events = Vec::new();
    for (id, start, stop) in forms {
        let mut pair = point("db", id, "not-a-uuid: base", 0, 0);
        pair[0]["timestamp"] = json!(start);
        pair[1]["timestamp"] = json!(stop);
        events.extend(pair);
    }
    // And what is skipped: counted, the rest kept.
    for bad in [
        "1795608000.5",
        "2026-11-25T12:00:00.1234567890",
        "2026-11-25",
        "",
    ] {
        let mut e = point("db", "skipped", "base", 0, 0)[0].clone();
        e["timestamp"] = json!(bad);
        events.push(e);
    }
    let mut e = point("db", "number", "base", 0, 0)[0].clone();
    e["timestamp"] = json!(1_795_608_000);
    events.push(e);
    let report = Report::from_events(events);
    assert_eq!(report.skipped(), 5);
    let mut got: Vec<(&str, i64, i64)> = report
        .roots()
        .iter()
        .map(|n| (n.trace_id(), n.started_us(), n.finished_us()))
        .collect();
    got.sort();
    // "3" stops at 1 ms (three digits), the others at 1.5 ms; all start together.
    assert_eq!(
        got,
        [
            ("+02:00", 0, 1_500),
            ("3", 0, 1_000),
            ("9", 0, 1_500),
            ("Z", 0, 1_500),
            ("none", 0, 1_500),
            ("osprofiler", 0, 1_500),
            ("space", 0, 1_500),
        ]
    );
    // The raw texts are kept as written, and every renderer takes them.
    let json = report.to_json_string();
    assert!(json.contains("2026-11-25T14:00:00.0015+02:00"), "{json}");
    serde_json::from_str::<Value>(&json).expect("JSON output parses");
    assert!(render_dot(&report).contains("db - 1 ms"));
    assert!(osprofiler_report::render_html(&report, "t").contains("not-a-uuid: base"));
}
