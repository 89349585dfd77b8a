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

/// A synthetic trace of `points` points, deep and wide, with osprofiler's usual info
/// (requests, SQL, functions, HTTP calls, some errors), as events in no particular order.
///
/// Shape: one chain 400 levels deep, one RPC point with 5 000 children, and the rest
/// hung under recently made points (so depths of a few dozen), over several top-level
/// requests. Children run one after another inside their parent.
pub fn synthetic_events(points: usize, seed: u64) -> Vec<Value> {
    const CATEGORIES: [&str; 5] = ["wsgi", "rpc", "db", "driver", "http"];
    const SERVICES: [&str; 6] = [
        "api",
        "conductor",
        "compute",
        "scheduler",
        "placement",
        "neutron",
    ];
    let mut rng = Lcg(seed);
    let points = points.max(1);
    // Tree shape: parent of each point (usize::MAX for a top-level point).
    let mut parent = vec![usize::MAX; points];
    let chain = 400.min(points - 1);
    for (i, p) in parent.iter_mut().enumerate().take(chain + 1).skip(1) {
        *p = i - 1;
    }
    let wide_at = chain + 1;
    let wide_end = (wide_at + 1 + 5_000).min(points);
    for p in parent.iter_mut().take(wide_end).skip(wide_at + 1) {
        *p = wide_at;
    }
    if wide_at < points {
        parent[wide_at] = 0;
    }
    // Elsewhere nesting stays below 40 levels: past that, a point hangs from the latest
    // top-level one.
    let mut depth = vec![0_usize; points];
    for i in 1..wide_end.min(points) {
        depth[i] = depth[parent[i]] + 1;
    }
    let mut last_top = 0;
    for i in wide_end..points {
        let pick = match rng.below(100) {
            0 => usize::MAX, // a new top-level request
            1..=9 => rng.below(i as u64) as usize,
            _ => i - 1 - rng.below(40.min(i as u64)) as usize,
        };
        parent[i] = match pick {
            usize::MAX => {
                last_top = i;
                usize::MAX
            }
            p if depth[p] >= 40 => last_top,
            p => p,
        };
        depth[i] = match parent[i] {
            usize::MAX => 0,
            p => depth[p] + 1,
        };
    }
    let mut children = vec![Vec::new(); points];
    let mut roots = Vec::new();
    for (i, &p) in parent.iter().enumerate() {
        match children.get_mut(p) {
            Some(kids) => kids.push(i),
            None => roots.push(i),
        }
    }
    // Times: depth first, each point opens, runs its children one after another, closes.
    let mut times = vec![(0_i64, 0_i64); points];
    let mut cursor = 0_i64;
    let mut stack: Vec<(usize, bool)> = roots.iter().rev().map(|&r| (r, false)).collect();
    while let Some((node, done)) = stack.pop() {
        if done {
            cursor += 2 + rng.below(30) as i64;
            times[node].1 = cursor;
        } else {
            cursor += 1 + rng.below(20) as i64;
            times[node].0 = cursor;
            stack.push((node, true));
            stack.extend(children[node].iter().rev().map(|&c| (c, false)));
        }
    }
    let id = |i: usize| format!("{:08x}-0000-4000-8000-{:012x}", seed as u32, i);
    let base = format!("{:08x}-ffff-4fff-8fff-ffffffffffff", seed as u32);
    let mut events = Vec::with_capacity(points * 2);
    for i in 0..points {
        let category = if parent[i] == usize::MAX {
            "wsgi"
        } else {
            CATEGORIES[1 + i % 4]
        };
        let service = SERVICES[(i / 7) % SERVICES.len()];
        let host = format!("host-{}", i % 8);
        let (start_info, mut stop_info) = match category {
            "wsgi" => (
                json!({"request": {"path": format!("/v2.1/servers/{i}"), "query": "", "method": "POST", "scheme": "http"}}),
                json!({"response": {"status": 202}}),
            ),
            "db" => (
                json!({"db": {"statement": "SELECT * FROM instances WHERE uuid = %(uuid)s", "params": {"uuid": format!("vm-{i}")}}}),
                json!({}),
            ),
            "http" => (
                json!({"requests": {"method": "GET", "query": "", "path": "/resource_providers", "hostname": "placement", "port": 8778, "scheme": "http"}}),
                json!({"requests": {"status_code": 200}}),
            ),
            _ => (
                json!({"function": {"name": format!("nova.{service}.manager.step_{}", i % 13), "args": "()", "kwargs": "{}"}}),
                json!({}),
            ),
        };
        if category == "driver" && i % 997 == 0 {
            stop_info = json!({"etype": "ValueError", "message": format!("step {i} failed")});
        }
        let parent_id = match parent[i] {
            usize::MAX => base.clone(),
            p => id(p),
        };
        for (phase, at, mut info) in [
            ("start", times[i].0, start_info),
            ("stop", times[i].1, stop_info),
        ] {
            info["host"] = json!(host);
            events.push(json!({
                "name": format!("{category}-{phase}"),
                "base_id": base,
                "trace_id": id(i),
                "parent_id": parent_id,
                "timestamp": stamp(T0 + at),
                "info": info,
                "project": "nova",
                "service": service,
            }));
        }
    }
    rng.shuffle(&mut events);
    events
}

/// An event's text as Python's `json.dumps` stores it: `", "` and `": "` separators, every
/// character outside printable ASCII escaped. The report must take such texts as they are.
pub fn python_text(value: &Value) -> String {
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, PythonFormatter);
    serde::Serialize::serialize(value, &mut ser).expect("a Value serializes");
    String::from_utf8(out).expect("JSON text is UTF-8")
}

struct PythonFormatter;

impl serde_json::ser::Formatter for PythonFormatter {
    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first { Ok(()) } else { w.write_all(b", ") }
    }

    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first { Ok(()) } else { w.write_all(b", ") }
    }

    fn begin_object_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        w.write_all(b": ")
    }

    fn write_string_fragment<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> std::io::Result<()> {
        for c in fragment.chars() {
            if (c as u32) < 0x7f {
                w.write_all(&[c as u8])?;
            } else {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    write!(w, "\\u{unit:04x}")?;
                }
            }
        }
        Ok(())
    }
}
