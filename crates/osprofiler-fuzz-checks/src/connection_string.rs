//! Connection strings: `ConnectionString::from_str`, `Backends::from_str`, `redact`.
//!
//! Input: the string as text; the same bytes also build `scheme://[user]:<secret>@host…`
//! strings (alone or in a list) from generated pieces, the secret being marker letters
//! mixed with URL-reserved characters, separators, `%`-escapes and `,x://`.
//!
//! Properties: nothing panics; errors are one line; no part of the password (not one of
//! its marker letters, not its `%`-encoded form) shows in `Display` or `Debug` of what was
//! parsed, in `redact()` or in any error. (Unless the password holds a list separator
//! followed by `scheme://`: then the string is, as documented, a list of other strings.)

use arbitrary::Unstructured;
use osprofiler_store::{Backends, ConnectionString, redact};

use crate::{find_marker, one_line, pick_or_any, public, secret};

/// Runs the properties on one input.
pub fn check(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    password_of(&text);
    generated(&mut Unstructured::new(data));
}

/// The property on the input text itself: when its password (what stands between the
/// first `:` after `scheme://` and the last `@`, or all of the user info without a `:`)
/// holds a marker letter and the rest of the text none, no marker shows. (So that a
/// regression input can be written by hand: `redis://u:pa/ssλ@h`.)
fn password_of(input: &str) {
    let shown = outputs(input);
    let s = input.trim();
    let Some((scheme, rest)) = s.split_once("://") else {
        return;
    };
    let Some(at) = rest.rfind('@') else {
        return;
    };
    let info = &rest[..at];
    let (user, password) = info.split_once(':').unwrap_or(("", info));
    let public = format!("{scheme} {user} {}", &rest[at..]);
    if find_marker(password).is_none() || find_marker(&percent_decoded(&public)).is_some() {
        return;
    }
    // A list separator inside the password makes other strings of it (see `generated`).
    let from = s.len() - rest.len() + (info.len() - password.len());
    if (from + 1..from + password.len()).any(|j| starts_string(s, j)) && is_list(s) {
        return;
    }
    for (what, text) in shown {
        assert!(
            find_marker(&text).is_none(),
            "{what} shows part of the password {password:?} of {input:?}: {text:?}"
        );
    }
}

/// Everything shown of `input`: its redaction, what it parses to, the errors. Errors must
/// be one line.
fn outputs(input: &str) -> Vec<(&'static str, String)> {
    let mut out = vec![("redact", redact(input))];
    let shown = |out: &mut Vec<(&'static str, String)>, cs: &ConnectionString| {
        out.push(("Display", cs.to_string()));
        out.push(("Debug", format!("{cs:?}")));
        if let ConnectionString::Redis(t) = cs {
            out.push(("RedisTarget Debug", format!("{t:?}")));
        }
    };
    match input.parse::<ConnectionString>() {
        Ok(cs) => shown(&mut out, &cs),
        Err(e) => {
            one_line("a ConnectionString error", &e.to_string());
            out.push(("error", e.to_string()));
            out.push(("error Debug", format!("{e:?}")));
        }
    }
    match input.parse::<Backends>() {
        Ok(list) => {
            assert!(!list.is_empty());
            for cs in &list {
                shown(&mut out, cs);
            }
        }
        Err(e) => {
            one_line("a Backends error", &e.to_string());
            out.push(("Backends error", e.to_string()));
            out.push(("Backends error Debug", format!("{e:?}")));
        }
    }
    out
}

/// Pieces a secret is made of besides its marker letters.
const FILLERS: &[&str] = &[
    "/",
    "?",
    "#",
    "@",
    ":",
    " ",
    ",",
    "%",
    "%41",
    "%CE%BB",
    "&",
    "=",
    "[",
    "]",
    " otlp://",
    ",redis://",
    "\t",
    "\n",
    "ü",
    "+",
    "a",
    "1",
    "\\",
    "\"",
];

fn generated(u: &mut Unstructured<'_>) {
    let clean = |s: String| public(&s).replace('@', "");
    let scheme = clean(pick_or_any(
        u,
        &[
            "redis",
            "rediss",
            "redissentinel",
            "otlp",
            "otlps",
            "otlp+grpc",
            "jaeger",
            "sqlite",
            "file",
            "mongodb",
            "REDIS",
            "Rediss",
        ],
    ));
    let secret = secret(u, 6, FILLERS);
    // Public pieces: no marker, no `@` (so the secret stands before the last one).
    let user = clean(pick_or_any(u, &["", "user", "default", "a b", "u/x", "u?"])).replace(':', "");
    let host = clean(pick_or_any(
        u,
        &[
            "h",
            "127.0.0.1",
            "[::1]",
            "s1:26379,s2:26380",
            "host:6380",
            "",
            "h:0",
            "[::1",
        ],
    ));
    let tail = clean(pick_or_any(
        u,
        &[
            "",
            "/0",
            "/2",
            "?db=3",
            "?ssl_cert_reqs=maybe",
            "/v1/traces",
            "?timeout=x",
            "/x y",
            " otlp://c:4318",
            ",jaeger://a",
            "?max_packet_size=1",
        ],
    ));
    let (info, secret) = match u.int_in_range(0..=2).unwrap_or(0) {
        0 => (format!("{user}:{secret}"), secret),
        1 => (format!(":{secret}"), secret),
        // A lone user info is the password (redis-py's reading).
        _ => {
            let lone = secret.replace(':', "");
            (lone.clone(), lone)
        }
    };
    let one = format!("{scheme}://{info}@{host}{tail}");
    let input = match u.int_in_range(0..=4).unwrap_or(0) {
        0 => format!("sqlite:///tmp/t.db {one}"),
        1 => format!("{one} otlp://c:4318"),
        2 => format!("redis://a,{one}"),
        3 => format!("  {one}\n"),
        _ => one,
    };
    // A space or comma then `scheme://` starts a new string, as documented: a password
    // holding one, when every string of the list parses, is read as a list of other
    // strings (whose paths, hosts… are shown). Not a leak of a password, since none is
    // read there; such inputs are left out.
    if let Some(at) = input.find(&secret)
        && (at + 1..at + secret.len()).any(|j| starts_string(&input, j))
        && is_list(&input)
    {
        return;
    }
    let secret_tail: String = secret.chars().skip(1).collect();
    // The escape of a marker counts when the public pieces do not make it themselves, and
    // public pieces that decode to a marker (`%CE%BB` as a host) leave the input out.
    let public_text = input.replace(&secret, "");
    if find_marker(&percent_decoded(&public_text)).is_some() {
        return;
    }
    for (what, text) in outputs(&input) {
        assert!(
            find_marker(&text).is_none()
                && (public_text.contains("%CE%BB") || !text.contains("%CE%BB"))
                && !text.contains(&secret_tail),
            "{what} shows part of the password {secret:?} of {input:?}: {text:?}"
        );
    }
}

/// Whether `s` is read as a list of several strings.
fn is_list(s: &str) -> bool {
    // As `redact` reads it: by syntax, whichever backends this build compiled in (a list
    // naming a compiled-out backend does not parse as `Backends`, but is shown as one).
    osprofiler_store::__syntax_list(s).is_some()
}

/// Whether a new string of a list starts at byte `j` of `s`: after a space or comma, a
/// scheme (a letter, then letters, digits, `+`, `-`, `.`) and `://`.
fn starts_string(s: &str, j: usize) -> bool {
    let (Some(before), Some(after)) = (s.get(..j), s.get(j..)) else {
        return false;
    };
    let sep = before.ends_with(|c: char| c.is_ascii_whitespace() || c == ',');
    let scheme = after.split("://").next().unwrap_or_default();
    sep && after.contains("://")
        && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
}

/// `s` with its `%XX` escapes decoded, invalid UTF-8 replaced.
fn percent_decoded(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b[i], hex) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
