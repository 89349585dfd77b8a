//! The report of a generated trace against the real Python osprofiler 4.4.0.
//!
//! The oracle is the virtualenv with `osprofiler==4.4.0` and `graphviz` that
//! `scripts/test-all` makes (`osprofiler_testkit::Oracle`). Without it the test is skipped
//! with a printed reason, and fails when `CI=true`.

mod common;

use std::collections::HashSet;

use common::{Lcg, stamp};
use osprofiler_report::{Report, render_dot};
use osprofiler_testkit::{Oracle, need};
use serde_json::{Value, json};

/// Feeds events to osprofiler's own report builder, as its Redis driver's `get_report`
/// does, and prints `trace show --json` text and, when graphviz is importable, `--dot`.
const ORACLE_SCRIPT: &str = r#"
import json, sys
from osprofiler.drivers import base

drv = base.Driver("oracle://")
for line in sys.stdin:
    if not line.strip():
        continue
    n = json.loads(line)
    drv._append_results(n["trace_id"], n["parent_id"], n["name"], n["project"],
                        n["service"], n["info"]["host"], n["timestamp"], n)
report = drv._parse_results()
out = {"json": json.dumps(report, separators=(",", ": "), indent=2), "dot": None}
try:
    import graphviz  # noqa: F401
except ImportError as e:
    out["no_dot"] = str(e)
else:
    from osprofiler.cmd.commands import TraceCommands
    out["dot"] = TraceCommands()._create_dot_graph(report).source
print(json.dumps(out))
"#;

#[test]
fn generated_trace_matches_python_oracle() {
    let Some(oracle) = need("python osprofiler oracle", Oracle::locate()) else {
        return;
    };
    for seed in [1_u64, 2, 3] {
        let events = generate_trace(seed);
        let lines: String = events.iter().map(|e| format!("{e}\n")).collect();
        let output = run_python(&oracle, &lines);
        let python_text = output["json"].as_str().expect("oracle prints json text");

        let report = Report::from_events(events.clone());
        assert_eq!(report.skipped(), 0);
        let python_value: Value = serde_json::from_str(python_text).expect("oracle JSON");
        assert_eq!(report.to_json(), python_value, "seed {seed}");
        // Events in time order, as Python saw them: the text is the same to the byte.
        assert_eq!(report.to_json_string(), python_text, "seed {seed}");

        // The same events as stored texts (Python's spacing, or compact as fed to Python),
        // newest first as Redis gives them: the same text.
        let spaced: Vec<String> = events.iter().rev().map(common::python_text).collect();
        let from_texts = Report::from_json_texts(spaced);
        assert_eq!(from_texts.to_json_string(), python_text, "seed {seed}");
        let compact = Report::from_json_texts(lines.lines());
        assert_eq!(compact.to_json_string(), python_text, "seed {seed}");

        // Another order of arrival, with every event twice, changes nothing on our side.
        let mut shuffled = events.clone();
        shuffled.extend(events);
        Lcg(seed).shuffle(&mut shuffled);
        assert_eq!(Report::from_events(shuffled).to_json_string(), python_text);

        let dot = output["dot"].as_str();
        let Some(dot) = need(
            "the graphviz Python package in the oracle",
            dot.ok_or_else(|| output["no_dot"].to_string()),
        ) else {
            continue;
        };
        assert_eq!(render_dot(&report), dot, "seed {seed}");
        assert_eq!(render_dot(&from_texts), dot, "seed {seed}");
    }
}

/// Floats in every range, in the payloads: the report's JSON text is Python's to the
/// byte (`1e+16`, `1e-07`, `100000.0`), from values and from stored texts.
#[test]
fn floats_print_as_python_does() {
    let Some(oracle) = need("python osprofiler oracle", Oracle::locate()) else {
        return;
    };
    let floats = [
        "1e16",
        "1E-7",
        "1.5",
        "100000.0",
        "1e3",
        "0.0001",
        "0.00001",
        "123456789012345678.0",
        "2.5e+300",
        "-3.25e-5",
        "9007199254740993.0",
        "0.1",
        "1e22",
    ];
    let list = floats.join(", ");
    let base = "bbbbbbbb-0000-4000-8000-000000000001";
    let lines = [
        format!(
            r#"{{"name": "db-start", "trace_id": "cccccccc-0000-4000-8000-000000000001", "parent_id": "{base}", "project": "p", "service": "s", "timestamp": "2026-11-25T12:00:00.000000", "info": {{"host": "h", "n": [{list}], "one": 1e16}}}}"#
        ),
        format!(
            r#"{{"name": "db-stop", "trace_id": "cccccccc-0000-4000-8000-000000000001", "parent_id": "{base}", "project": "p", "service": "s", "timestamp": "2026-11-25T12:00:00.250000", "info": {{"host": "h", "rows": 2.0}}}}"#
        ),
    ];
    let stdin: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let output = run_python(&oracle, &stdin);
    let python_text = output["json"].as_str().expect("oracle prints json text");
    assert!(python_text.contains("1e+16"), "{python_text}");
    let from_texts = Report::from_json_texts(lines.iter().map(String::as_str));
    assert_eq!(from_texts.to_json_string(), python_text);
    let values: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(Report::from_events(values).to_json_string(), python_text);
}

/// A trace of nested and concurrent points across three services, with errors, non-ASCII
/// text, a point lacking its stop and one lacking its start, crossing midnight of a new
/// year. Returned in time order with distinct timestamps, as a real trace is emitted.
fn generate_trace(seed: u64) -> Vec<Value> {
    let mut g = Gen {
        rng: Lcg(seed),
        events: Vec::new(),
        used: HashSet::new(),
        next_id: 0,
    };
    // 2026-12-31T23:59:59.950000: the trace runs into 2027.
    let t0 = 1_798_761_599_950_000;
    let base = "bbbbbbbb-0000-4000-8000-000000000000".to_string();
    g.point(&base, "wsgi", t0, t0 + 400_000, 0);
    // A db call whose stop never reached the backend, one whose start did not.
    let lost_stop = g.id();
    g.emit(
        "db-start",
        &lost_stop,
        &base,
        t0 + 123_457,
        json!({"db": {"statement": "SELECT 1", "params": {}}}),
    );
    let lost_start = g.id();
    g.emit("db-stop", &lost_start, &base, t0 + 234_568, json!({}));
    g.events.sort_by_key(|(ts, _)| *ts);
    g.events.into_iter().map(|(_, e)| e).collect()
}

struct Gen {
    rng: Lcg,
    events: Vec<(i64, Value)>,
    used: HashSet<i64>,
    next_id: u32,
}

const SERVICES: [(&str, &str); 3] = [
    ("api", "host-a"),
    ("conductor", "host-b"),
    ("compute", "host-ç"),
];

impl Gen {
    fn id(&mut self) -> String {
        self.next_id += 1;
        format!("aaaaaaaa-0000-4000-8000-{:012}", self.next_id)
    }

    /// A distinct timestamp at or after `at`.
    fn time(&mut self, at: i64) -> i64 {
        let mut t = at;
        while !self.used.insert(t) {
            t += 1;
        }
        t
    }

    fn emit(&mut self, name: &str, trace_id: &str, parent_id: &str, at: i64, info: Value) {
        let t = self.time(at);
        let (service, host) = SERVICES[self.rng.below(SERVICES.len() as u64) as usize];
        let mut info = info;
        info["host"] = json!(host);
        self.events.push((
            t,
            json!({
                "name": name,
                "base_id": "bbbbbbbb-0000-4000-8000-000000000000",
                "trace_id": trace_id,
                "parent_id": parent_id,
                "timestamp": stamp(t),
                "info": info,
                "project": "nova",
                "service": service,
            }),
        ));
    }

    /// A point over [from, to] and, below a few levels, children sequential or concurrent.
    fn point(&mut self, parent: &str, name: &str, from: i64, to: i64, depth: u32) {
        let id = self.id();
        // Python takes the last `.` component only: no `::` names here (see the DOT tests).
        const PATHS: [&str; 3] = [
            "/v2.1/servers",
            "/v2.1/servers/détail-ünïcode-path-longer-than-thirty",
            "/images?q=\"x\"",
        ];
        const FUNCTIONS: [&str; 3] = [
            "nova.conductor.api.build_instances",
            "nova.virt.spawn",
            "spawn",
        ];
        let path = PATHS[self.rng.below(3) as usize];
        let method = ["GET", "POST"][self.rng.below(2) as usize];
        let function = FUNCTIONS[self.rng.below(3) as usize];
        let start_info = match name {
            "wsgi" => {
                json!({"request": {"path": path, "query": "", "method": method, "scheme": "http"}})
            }
            "rpc" | "driver" => {
                json!({"function": {"name": function, "args": "()", "kwargs": "{}"}})
            }
            "db" => json!({"db": {"statement": "SELECT * FROM instances WHERE uuid = %(uuid)s",
                                  "params": {"uuid": "vm-✓"}}}),
            _ => json!({"requests": {"method": "GET", "path": "/", "hostname": "h", "port": 80}}),
        };
        // One in three ends with an error.
        let stop_info = if self.rng.below(3) == 0 {
            json!({"etype": "ValueError", "message": "No valid host — 😀"})
        } else {
            json!({"function": {"result": "'ok'"}})
        };
        self.emit(&format!("{name}-start"), &id, parent, from, start_info);
        if depth < 3 && to - from > 2_000 {
            let n = self.rng.below(4);
            let span = (to - from) / (n as i64 + 1);
            for i in 0..n as i64 {
                let child = ["rpc", "db", "driver", "http"][self.rng.below(4) as usize];
                let lo = from + 1 + i * span + self.rng.below(span as u64 / 4 + 1) as i64;
                // Half of them run concurrently: they overlap the next sibling.
                let len = if self.rng.below(2) == 0 {
                    span / 2
                } else {
                    span * 3 / 2
                };
                let hi = (lo + len).min(to - 1);
                self.point(&id, child, lo, hi, depth + 1);
            }
        }
        self.emit(&format!("{name}-stop"), &id, parent, to, stop_info);
    }
}

fn run_python(oracle: &Oracle, stdin: &str) -> Value {
    let out = oracle
        .python_with_stdin(ORACLE_SCRIPT, &[], stdin.as_bytes())
        .unwrap_or_else(|e| panic!("oracle failed: {e}"));
    serde_json::from_str(&out).expect("oracle prints JSON")
}
