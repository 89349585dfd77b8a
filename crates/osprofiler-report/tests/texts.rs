//! Events given as stored text ([`Report::from_json_texts`], [`ReportBuilder::push_text`]):
//! the same report as from parsed `Value`s, to the byte, and nothing panics on garbage.

mod common;

use common::{EVENTS, Lcg, REPORT_DOT, REPORT_JSON, python_text, synthetic_events, vector_events};
use osprofiler_report::{
    EventError, Report, ReportBuilder, render_dot, render_html, render_html_to,
};
use serde_json::{Value, json};

/// The page's data block, parsed.
fn html_data(report: &Report) -> Value {
    let html = render_html(report, "t");
    let open = r#"<script type="application/json" id="trace-data">"#;
    let start = html.find(open).expect("data block") + open.len();
    let len = html[start..].find("</script>").expect("end of data block");
    serde_json::from_str(&html[start..start + len]).expect("data block is JSON")
}

/// The page's data less its counts of refused and repeated events.
fn html_data_less_counts(report: &Report) -> Value {
    let mut data = html_data(report);
    if let Some(map) = data.as_object_mut() {
        map.shift_remove("skipped");
        map.shift_remove("duplicates");
    }
    data
}

/// The first place where two values differ, for a readable failure.
fn first_difference(a: &Value, b: &Value, path: &str) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (k, v) in x {
                match y.get(k) {
                    Some(w) => {
                        if let Some(d) = first_difference(v, w, &format!("{path}.{k}")) {
                            return Some(d);
                        }
                    }
                    None => return Some(format!("{path}.{k} missing on the right")),
                }
            }
            (x.len() != y.len()).then(|| {
                format!(
                    "{path}: keys {:?} / {:?}",
                    x.keys().collect::<Vec<_>>(),
                    y.keys().collect::<Vec<_>>()
                )
            })
        }
        (Value::Array(x), Value::Array(y)) => {
            for (i, (v, w)) in x.iter().zip(y).enumerate() {
                if let Some(d) = first_difference(v, w, &format!("{path}[{i}]")) {
                    return Some(d);
                }
            }
            (x.len() != y.len()).then(|| format!("{path}: lengths {} / {}", x.len(), y.len()))
        }
        _ => (a != b).then(|| format!("{path}: {a} / {b}")),
    }
}

fn assert_same_value(a: &Value, b: &Value) {
    if let Some(d) = first_difference(a, b, "") {
        panic!("values differ at {d}");
    }
}

/// What `to_json_string` wrote before it wrote directly: the `Value` of `to_json`
/// pretty-printed by serde_json, then every character from DEL up escaped.
fn via_value(report: &Report) -> String {
    let pretty = serde_json::to_string_pretty(&report.to_json()).unwrap();
    let mut out = String::new();
    for c in pretty.chars() {
        if (c as u32) < 0x7f {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

/// Everything a report shows, compared between two reports of the same events.
fn assert_same(texts: &Report, values: &Report) {
    assert_eq!(texts.to_json(), values.to_json());
    assert_eq!(texts.to_json_extended(), values.to_json_extended());
    assert_eq!(texts.to_json_string(), values.to_json_string());
    assert_eq!(render_dot(texts), render_dot(values));
    assert_same_value(&html_data(texts), &html_data(values));
    assert_eq!(
        (
            texts.len(),
            texts.skipped(),
            texts.duplicates(),
            texts.detached()
        ),
        (
            values.len(),
            values.skipped(),
            values.duplicates(),
            values.detached()
        )
    );
    assert_eq!(texts.by_category(), values.by_category());
    assert_eq!(texts.by_service(), values.by_service());
    let path = |r: &Report| -> Vec<String> {
        r.critical_path()
            .iter()
            .map(|n| n.trace_id().to_owned())
            .collect()
    };
    assert_eq!(path(texts), path(values));
    for ((dt, t), (dv, v)) in texts.iter().zip(values.iter()) {
        assert_eq!(dt, dv);
        assert_eq!(
            (t.name(), t.trace_id(), t.parent_id(), t.project()),
            (v.name(), v.trace_id(), v.parent_id(), v.project())
        );
        assert_eq!(
            (t.service(), t.host(), t.exception(), t.function_name()),
            (v.service(), v.host(), v.exception(), v.function_name())
        );
        assert_eq!(t.start_payload(), v.start_payload());
        assert_eq!(t.stop_payload(), v.stop_payload());
    }
}

#[test]
fn python_text_is_how_the_vector_is_stored() {
    for (line, value) in EVENTS.lines().zip(vector_events()) {
        assert_eq!(python_text(&value), line);
    }
}

#[test]
fn texts_give_the_python_report_byte_for_byte() {
    let lines: Vec<&str> = EVENTS.lines().collect();
    let report = Report::from_json_texts(lines.iter().copied());
    assert_eq!(report.skipped(), 0);
    assert_eq!(report.to_json_string(), REPORT_JSON);
    assert_eq!(render_dot(&report), REPORT_DOT);
    assert_same(&report, &Report::from_events(vector_events()));

    // Owned strings, newest first as Redis's LRANGE gives them, each twice: the same.
    let mut owned: Vec<String> = lines.iter().rev().map(|l| l.to_string()).collect();
    owned.extend(lines.iter().map(|l| l.to_string()));
    let twice = Report::from_json_texts(owned);
    assert_eq!(twice.duplicates(), 10);
    assert_eq!(twice.to_json_string(), REPORT_JSON);
    assert_eq!(render_dot(&twice), REPORT_DOT);

    // The raw payloads are the stored texts.
    let raw: Vec<&str> = report
        .iter()
        .flat_map(|(_, n)| [n.start_raw(), n.stop_raw()])
        .flatten()
        .collect();
    let mut sorted_raw = raw.clone();
    sorted_raw.sort_unstable();
    let mut sorted_lines = lines.clone();
    sorted_lines.sort_unstable();
    assert_eq!(sorted_raw, sorted_lines);
}

#[test]
fn owned_texts_are_kept_without_a_copy() {
    let text = EVENTS.lines().next().unwrap().to_string();
    let at = text.as_ptr();
    let report = Report::from_json_texts([text]);
    assert_eq!(report.roots()[0].start_raw().unwrap().as_ptr(), at);
    // Surrounding whitespace is dropped (then the text is copied).
    let padded = format!("  {}\n", EVENTS.lines().next().unwrap());
    let report = Report::from_json_texts([padded.as_str()]);
    assert_eq!(
        report.roots()[0].start_raw(),
        Some(EVENTS.lines().next().unwrap())
    );
}

#[test]
fn synthetic_trace_from_texts_and_from_values() {
    let mut rng = Lcg(5);
    let events = synthetic_events(3_000, 11);
    let mut texts: Vec<String> = events.iter().map(python_text).collect();
    // Some compact, some spaced: a store may hold either.
    for (text, event) in texts.iter_mut().zip(&events) {
        if rng.below(3) == 0 {
            *text = event.to_string();
        }
    }
    let from_texts = Report::from_json_texts(texts.clone());
    let from_values = Report::from_events(events.clone());
    assert_eq!(from_texts.len(), 3_000);
    assert_same(&from_texts, &from_values);
    assert_eq!(from_texts.to_json_string(), via_value(&from_texts));

    // Any order, with duplicates.
    texts.extend(texts[..500].to_vec());
    rng.shuffle(&mut texts);
    let shuffled = Report::from_json_texts(texts);
    assert_eq!(shuffled.duplicates(), 500);
    assert_eq!(shuffled.to_json_string(), from_values.to_json_string());
    assert_eq!(render_dot(&shuffled), render_dot(&from_values));
    assert_same_value(
        &html_data_less_counts(&shuffled),
        &html_data_less_counts(&from_values),
    );
}

/// Payloads whose text a token-by-token re-indentation could get wrong: escapes,
/// non-ASCII, numbers in every spelling, repeated keys, deep nesting, odd spacing.
#[test]
fn tricky_payloads_print_as_through_a_value() {
    let texts = [
        r#"{"name": "wsgi-start", "trace_id": "a", "parent_id": "b", "timestamp": "2026-11-25T12:00:00.000000", "info": {"host": "h\u00e9", "request": {"path": "/p\u2028\"<\/script>", "method": "GET"}, "n": [0, -1, 1.5, 1e3, 1E-7, -0, -0.0, 12345678901234567890123, 18446744073709551615, 9007199254740993, 2.5e+300], "t": true, "f": false, "z": null, "e": {}, "l": [], "nest": [[[[{"x": [{}]}]]]]}, "project": "p\ud83d\ude00", "service": "s\u0001\t\b\f"}"#,
        r#"  {"name":"wsgi-stop","trace_id":"a","parent_id":"b","timestamp":"2026-11-25T12:00:01","info":{"etype":"E\u00e9","host":"h","dup":1,"dup":{"again":2},"\u0061":3,"a":4,"del":"\u007f","raw":"é😀€"}}  "#,
        "{\"name\" : \"db-start\" ,\n \"trace_id\" : \"c\" , \"parent_id\" : \"a\" ,\t\"timestamp\" : \"2026-11-25T12:00:00.5\" , \"info\" : { \"etype\" : 5 , \"function\" : { \"name\" : \"m.f\" } } }",
        r#"{"name": "db-stop", "trace_id": "c", "parent_id": "a", "timestamp": "2026-11-25T12:00:00.6", "info": {"etype": [1, {"x": null}], "host": null}, "project": 7}"#,
    ];
    let report = Report::from_json_texts(texts);
    assert_eq!((report.len(), report.skipped()), (2, 0));
    // Floats as Python's json.dumps writes them (tests/oracle.rs checks against Python);
    // serde_json's own text writes the exponent without its sign and padding.
    let python_floats = via_value(&report)
        .replace("1e-7,", "1e-07,")
        .replace("e22,", "e+22,")
        .replace("2.5e300", "2.5e+300");
    assert_eq!(report.to_json_string(), python_floats);
    let values: Vec<Value> = texts
        .iter()
        .map(|t| serde_json::from_str(t).unwrap())
        .collect();
    let from_values = Report::from_events(values);
    assert_same(&report, &from_values);
    let db = &report.roots()[0].children()[0];
    assert_eq!(db.exception(), Some(r#"[1,{"x":null}]"#));
    assert_eq!(db.project(), None);
    assert_eq!(report.roots()[0].exception(), Some("Eé"));
    assert_eq!(report.roots()[0].project(), Some("p😀"));
}

#[test]
fn conflicting_duplicates_resolve_as_for_values() {
    let start = |host: &str| {
        json!({"name": "db-start", "trace_id": "d", "parent_id": "b",
               "timestamp": "2026-11-25T12:00:00.000000", "info": {"host": host}})
    };
    let stop = json!({"name": "db-stop", "trace_id": "d", "parent_id": "b",
                      "timestamp": "2026-11-25T12:00:00.001000", "info": {}});
    // Same time, different content. Compared as stored, any text in Python's spacing
    // (`{"name": "`) is smaller than any compact one (`{"name":"`): the spelling must not
    // decide which one is kept.
    let values = vec![start("a"), start("zz"), stop.clone(), stop];
    let want = Report::from_events(values.clone()).to_json_string();
    let mut rng = Lcg(4);
    for _ in 0..10 {
        let mut texts: Vec<String> = values
            .iter()
            .map(|v| {
                if rng.below(2) == 0 {
                    python_text(v)
                } else {
                    v.to_string()
                }
            })
            .collect();
        rng.shuffle(&mut texts);
        let report = Report::from_json_texts(texts);
        assert_eq!(report.duplicates(), 2);
        assert_eq!(report.to_json_string(), want);
    }
}

#[test]
fn invalid_texts_are_skipped_and_counted() {
    let good = EVENTS.lines().next().unwrap();
    let mut builder = ReportBuilder::new();
    assert!(matches!(
        builder.push_text("{oops"),
        Err(EventError::Json(_))
    ));
    assert!(matches!(builder.push_text(""), Err(EventError::Json(_))));
    assert!(matches!(
        builder.push_text(format!("{good} x")),
        Err(EventError::Json(_))
    ));
    assert_eq!(builder.push_text("[1, 2]"), Err(EventError::NotAnObject));
    assert_eq!(builder.push_text("null"), Err(EventError::NotAnObject));
    assert_eq!(
        builder.push_text(r#"{"name": "a-start", "timestamp": "2026-11-25T12:00:00"}"#),
        Err(EventError::Missing("trace_id"))
    );
    assert_eq!(
        builder.push_text(r#"{"name": 1, "trace_id": "t"}"#),
        Err(EventError::Missing("name"))
    );
    assert!(matches!(
        builder.push_text(r#"{"name": "a-begin", "trace_id": "t"}"#),
        Err(EventError::BadName(_))
    ));
    assert!(matches!(
        builder.push_text(
            r#"{"name": "a-stop", "trace_id": "t", "timestamp": "2026-02-30T00:00:00"}"#
        ),
        Err(EventError::BadTimestamp(_))
    ));
    // What serde_json refuses as a `Value`, even in fields the report does not read.
    for bad in [r#""\ud800""#, "1e400", "[}", r#""\q""#, "\"\u{1}\""] {
        let text = good.replacen("\"host-a\"", bad, 1);
        assert!(
            matches!(builder.push_text(text), Err(EventError::Json(_))),
            "{bad}"
        );
    }
    assert_eq!(builder.push_text(good), Ok(()));
    let report = builder.finish();
    assert_eq!((report.len(), report.skipped()), (1, 14));
}

/// Random bytes, truncated events and events with a byte changed: nothing panics, and an
/// event is taken as text exactly when it is taken as a `Value`.
#[test]
fn garbage_never_panics_and_texts_match_values() {
    let mut rng = Lcg(99);
    let mut texts: Vec<String> = Vec::new();
    let lines: Vec<String> = synthetic_events(40, 3)
        .iter()
        .map(python_text)
        .chain(EVENTS.lines().map(str::to_owned))
        .collect();
    for line in &lines {
        // Every prefix of a few of them.
        if rng.below(4) == 0 {
            for end in (0..line.len()).filter(|&e| line.is_char_boundary(e)) {
                texts.push(line[..end].to_owned());
            }
        }
        // One to three bytes changed to something JSON cares about.
        const BYTES: &[u8] = b"{}[]\":,\\0123456789eE.-+ntfu \x01\x7f";
        for _ in 0..30 {
            let mut bytes = line.clone().into_bytes();
            for _ in 0..1 + rng.below(3) {
                let at = rng.below(bytes.len() as u64) as usize;
                bytes[at] = BYTES[rng.below(BYTES.len() as u64) as usize];
            }
            texts.push(String::from_utf8_lossy(&bytes).into_owned());
        }
    }
    // Random bytes, and deep nesting.
    for _ in 0..300 {
        let bytes: Vec<u8> = (0..rng.below(200)).map(|_| rng.below(256) as u8).collect();
        texts.push(String::from_utf8_lossy(&bytes).into_owned());
    }
    for depth in [120, 126, 127, 128, 129, 500] {
        let info = format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
        texts.push(lines[0].replacen("\"host-0\"", &info, 1));
        texts.push(format!(r#"{{"a": {}}}"#, info));
    }

    let mut from_texts = ReportBuilder::new();
    let mut from_values = ReportBuilder::new();
    let mut accepted = 0;
    for text in &texts {
        let as_text = from_texts.push_text(text.as_str());
        let as_value = match serde_json::from_str::<Value>(text) {
            Ok(value) => from_values.push(value),
            Err(e) => Err(EventError::Json(e.to_string())),
        };
        assert_eq!(as_text.is_ok(), as_value.is_ok(), "{text:?}");
        if let (Err(t), Err(v)) = (&as_text, &as_value) {
            // Same kind of refusal (the JSON messages may differ).
            assert_eq!(
                std::mem::discriminant(t),
                std::mem::discriminant(v),
                "{text:?}"
            );
        }
        accepted += usize::from(as_text.is_ok());
    }
    assert!(accepted > 100, "{accepted} of {}", texts.len());
    let (from_texts, from_values) = (from_texts.finish(), from_values.finish());
    assert_eq!(from_texts.skipped(), texts.len() - accepted);
    assert_eq!(from_texts.to_json_string(), from_values.to_json_string());
    assert_eq!(from_texts.to_json_string(), via_value(&from_texts));
    assert_eq!(render_dot(&from_texts), render_dot(&from_values));
    assert_same_value(
        &html_data_less_counts(&from_texts),
        &html_data_less_counts(&from_values),
    );
    assert_eq!(from_texts.to_json(), from_values.to_json());
}

#[test]
fn empty_and_one_sided_inputs() {
    let report = Report::from_json_texts(Vec::<String>::new());
    assert!(report.is_empty());
    assert_eq!(report.to_json_string(), via_value(&report));
    let report = Report::from_json_texts([
        r#"{"name": "x-stop", "trace_id": "t", "timestamp": "2026-11-25T12:00:00", "info": {"etype": "E"}}"#,
    ]);
    let node = &report.roots()[0];
    assert_eq!((node.start_raw(), node.exception()), (None, Some("E")));
    assert_eq!(report.to_json_string(), via_value(&report));
    assert_eq!(
        report.to_json()["children"][0]["info"]["exception"],
        json!("E")
    );
}

#[test]
fn reports_and_nodes_cross_threads() {
    fn shared<T: Send + Sync + Clone + std::fmt::Debug>() {}
    shared::<Report>();
    shared::<osprofiler_report::Node>();
    shared::<ReportBuilder>();
    let report = Report::from_json_texts(EVENTS.lines());
    let copy = report.clone();
    let node = copy.roots()[0].clone();
    assert_eq!(node, report.roots()[0]);
    let payload = std::thread::spawn(move || node.start_payload().cloned())
        .join()
        .unwrap();
    assert_eq!(payload, report.roots()[0].start_payload().cloned());
}

/// A trace big enough to be read on several threads (more than 4,096 texts per thread)
/// gives the report the builder makes of the same texts one by one, refused and repeated
/// texts counted wherever they fall; its page is the same written whole or in pieces.
#[test]
fn big_trace_read_in_parallel_and_written_in_pieces() {
    let mut rng = Lcg(9);
    let events = synthetic_events(12_000, 3);
    let mut texts: Vec<String> = events.iter().map(python_text).collect();
    texts.extend(texts[..700].to_vec());
    for i in 0..300 {
        texts.push(if i % 2 == 0 {
            "{not json".into()
        } else {
            "[1, 2]".into()
        });
    }
    rng.shuffle(&mut texts);
    assert!(texts.len() > 3 * 4096);

    let parallel = Report::from_json_texts(texts.clone());
    let mut one_by_one = ReportBuilder::new();
    for t in &texts {
        let _ = one_by_one.push_text(t.as_str());
    }
    let one_by_one = one_by_one.finish();
    assert_eq!(parallel.len(), 12_000);
    assert_eq!((parallel.skipped(), parallel.duplicates()), (300, 700));
    assert_eq!((one_by_one.skipped(), one_by_one.duplicates()), (300, 700));
    assert_eq!(parallel.to_json_string(), one_by_one.to_json_string());
    assert_eq!(
        parallel.to_json_string(),
        Report::from_events(events).to_json_string()
    );

    let whole = render_html(&parallel, "big <trace>");
    assert!(
        whole.len() > 4 * 256 * 1024,
        "{} bytes: too small to spill",
        whole.len()
    );
    let mut pieces = Vec::new();
    render_html_to(&parallel, "big <trace>", &mut pieces).unwrap();
    assert!(
        pieces == whole.as_bytes(),
        "the page written in pieces differs"
    );

    // A writer that fails part way: its error comes back, what went before stays written.
    struct Full(Vec<u8>);
    impl std::io::Write for Full {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if self.0.len() >= 600_000 {
                return Err(std::io::Error::other("disk full"));
            }
            self.0.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut full = Full(Vec::new());
    let err = render_html_to(&parallel, "big <trace>", &mut full).unwrap_err();
    assert_eq!(err.to_string(), "disk full");
    assert!(full.0.len() >= 600_000 && whole.as_bytes().starts_with(&full.0));
}
