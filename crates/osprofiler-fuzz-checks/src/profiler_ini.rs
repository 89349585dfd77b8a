//! The `[profiler]` configuration: `config::Ini::parse` and `ProfilerConf::from_ini_str`.
//!
//! Input: INI text; the same bytes also build a file whose `hmac_keys` (and the password
//! of its `connection_string`) are secrets of marker letters and INI-significant
//! characters (`=`, `:`, `#`, `;`, quotes, commas, continuation lines).
//!
//! Properties: nothing panics; errors are one line; `from_ini_str` is `from_ini` of
//! `Ini::parse`; the keys are those of `hmac_keys`; `Debug` of a `ProfilerConf`, and the
//! errors, never show the keys or the password.

use arbitrary::Unstructured;
use osprofiler::HmacKeys;
use osprofiler::config::{Ini, ProfilerConf};

use crate::{find_marker, one_line, pick_or_any, public, secret};

/// Runs the properties on one input.
pub fn check(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    parsed(&text);
    generated(&mut Unstructured::new(data));
}

/// Parses `text`; returns what is shown of it (`Debug` of the configuration, or the error).
fn parsed(text: &str) -> Vec<String> {
    let ini = Ini::parse(text);
    let conf = ProfilerConf::from_ini_str(text);
    match (&ini, &conf) {
        (Ok(ini), Ok(conf)) => {
            assert_eq!(ProfilerConf::from_ini(ini).ok().as_ref(), Some(conf));
            let keys = ini.get("profiler", "hmac_keys").unwrap_or("SECRET_KEY");
            assert_eq!(conf.hmac_keys().len(), HmacKeys::parse(keys).len());
            vec![format!("{conf:?}")]
        }
        (Ok(ini), Err(e)) => {
            assert!(ProfilerConf::from_ini(ini).is_err());
            one_line("a configuration error", &e.to_string());
            vec![e.to_string(), format!("{e:?}")]
        }
        (Err(e), _) => {
            assert!(conf.is_err(), "from_ini_str took what Ini::parse refused");
            one_line("an INI error", &e.to_string());
            vec![e.to_string(), format!("{e:?}")]
        }
    }
}

/// Characters that mean something in an INI value, between a secret's marker letters. A
/// line break is always followed by indentation: the value goes on.
const FILLERS: &[&str] = &[
    ",", " ", "=", ":", "#", ";", "\"", "'", "%", "[", "]", "\t", "\\", "\n  ", "\n\t", "ü", "a",
];

fn generated(u: &mut Unstructured<'_>) {
    let keys = secret(u, 6, FILLERS);
    let password = secret(u, 6, &["!", "$", "*", "-", "%", "ü"]);
    let quote = u.choose(&["", "", "\"", "'"]).copied().unwrap_or("");
    let sep = u.choose(&["=", ":", " = ", ": "]).copied().unwrap_or("=");
    let mut lines: Vec<String> = Vec::new();
    let mut profiler_done = false;
    for _ in 0..u.int_in_range(1..=8).unwrap_or(1) {
        let line = match u.int_in_range(0..=9).unwrap_or(0) {
            0 | 1 if !profiler_done => {
                profiler_done = true;
                format!("[profiler]\nhmac_keys{sep}{quote}{keys}{quote}")
            }
            2 if profiler_done => format!("connection_string = redis://:{password}@127.0.0.1:6379"),
            3 => pick_or_any(
                u,
                &[
                    "[profiler_jaeger]",
                    "[profiler_otlp]",
                    "[DEFAULT]",
                    "[",
                    "[]",
                ],
            ),
            4 => public(&pick_or_any(
                u,
                &[
                    "enabled = true",
                    "enabled = maybe",
                    "trace_sqlalchemy: yes",
                    "trace_sql = 0",
                    "socket_timeout = -1",
                    "socket_timeout = nan",
                    "process_tags = a:b,c",
                    "service_name_prefix = p",
                    "  continued",
                    "# comment",
                    "; comment",
                    "=x",
                    "noequals",
                    "",
                ],
            )),
            _ => public(&u.arbitrary::<String>().unwrap_or_default()).replace('\n', " "),
        };
        lines.push(line);
    }
    let text = lines.join(u.choose(&["\n", "\r\n"]).copied().unwrap_or("\n"));
    for shown in parsed(&text) {
        assert!(
            find_marker(&shown).is_none(),
            "a key or password shows: {shown:?} (from {text:?})"
        );
    }
}
