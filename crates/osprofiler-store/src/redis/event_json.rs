//! An event's osprofiler JSON, byte for byte what [`Event::write_json`] writes, but with
//! the fixed fields written directly: ids, timestamp and plain ASCII names need no
//! serializer, and they were most of the exporter's time (serde's per-character escaping
//! and formatting, measured with `perf`). `info`, and any string that needs escaping, go
//! through osprofiler's own Python-JSON serializer.

use osprofiler::Event;
use osprofiler::json::write_python_json;

/// Appends the event's JSON to `out`.
pub fn write_event(out: &mut Vec<u8>, e: &Event) {
    out.extend_from_slice(b"{\"name\": ");
    let suffix = e.kind.suffix();
    if plain(&e.name) {
        out.push(b'"');
        out.extend_from_slice(e.name.as_bytes());
        out.push(b'-');
        out.extend_from_slice(suffix.as_bytes());
        out.push(b'"');
    } else {
        string(out, &format!("{}-{suffix}", e.name));
    }
    for (key, id) in [
        (&b", \"base_id\": \""[..], e.base_id),
        (b", \"trace_id\": \"", e.trace_id),
        (b", \"parent_id\": \"", e.parent_id),
    ] {
        out.extend_from_slice(key);
        let mut text = [0u8; 36];
        id.write_hyphenated(&mut text);
        out.extend_from_slice(&text);
        out.push(b'"');
    }
    out.extend_from_slice(b", \"timestamp\": \"");
    e.timestamp.write_to(out);
    out.push(b'"');
    if !e.info.is_empty() {
        out.extend_from_slice(b", \"info\": ");
        // Maps of strings and JSON values always serialize.
        let _ = write_python_json(out, &e.info);
    }
    if let Some(p) = &e.project {
        out.extend_from_slice(b", \"project\": ");
        string(out, p);
    }
    if let Some(s) = &e.service {
        out.extend_from_slice(b", \"service\": ");
        string(out, s);
    }
    out.push(b'}');
}

/// Printable ASCII without `"` and `\`: written as is by Python's `json.dumps`.
fn plain(s: &str) -> bool {
    s.bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
}

fn string(out: &mut Vec<u8>, s: &str) {
    if plain(s) {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        let _ = write_python_json(out, s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn same_bytes_as_osprofiler() {
        let infos = [
            json!({"host": "h"}),
            json!({}),
            json!({"function": {"name": "nova.spawn", "args": "('vm',)", "kwargs": "{}"},
                   "host": "host-ç"}),
            json!({"etype": "ValueError", "message": "No valid host — 😀\n\"x\"\\", "host": "h"}),
            json!({"db": {"statement": "SELECT 1", "params": {"a": 1.5, "b": null, "c": [1, true]}},
                   "host": "h"}),
        ];
        let names = [
            "db-start",
            "wsgi-stop",
            "naïve-start",
            "q\"uote-stop",
            "tab\t-start",
            "\u{7f}-stop",
        ];
        let mut n = 0;
        for info in &infos {
            for name in names {
                for (project, service) in [
                    (json!("nova"), json!("api")),
                    (json!("növa"), json!("a\"pi")),
                    (json!(null), json!(null)),
                ] {
                    let mut v = json!({
                        "name": name,
                        "base_id": "11111111-1111-4111-8111-111111111111",
                        "trace_id": "aaaaaaaa-aaaa-4aaa-8aaa-000000000002",
                        "parent_id": "11111111-1111-4111-8111-111111111111",
                        "timestamp": "2026-11-25T12:00:00.001375",
                        "info": info,
                    });
                    if !project.is_null() {
                        v["project"] = project;
                        v["service"] = service;
                    }
                    let e = Event::from_value(v).unwrap();
                    let mut want = Vec::new();
                    e.write_json(&mut want);
                    let mut got = Vec::new();
                    write_event(&mut got, &e);
                    assert_eq!(
                        String::from_utf8_lossy(&got),
                        String::from_utf8_lossy(&want)
                    );
                    n += 1;
                }
            }
        }
        assert_eq!(n, infos.len() * names.len() * 3);
    }
}
