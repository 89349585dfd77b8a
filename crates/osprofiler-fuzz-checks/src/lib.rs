//! The properties behind the fuzz targets of `fuzz/`.
//!
//! Each module has one `check(data)`, which panics when a property fails. The libFuzzer
//! targets (`fuzz/fuzz_targets/<name>.rs`, built with `cargo +nightly fuzz`) only call it,
//! and `tests/corpus.rs` calls it on stable for every committed input under
//! `fuzz/corpus/<name>/` and `fuzz/regressions/<name>/`, so that a regression on a known
//! input fails the ordinary test run.
//!
//! Inputs are read as text where the parser reads text (so that the corpus stays readable
//! and seeds are real values), and the same bytes also drive a generator
//! ([`arbitrary::Unstructured`]) for the properties that need structured values: signed
//! pairs under known keys, events with known ids, connection strings with a known password.

pub mod carrier;
pub mod connection_string;
pub mod profiler_ini;
pub mod redis_reply;
pub mod report;
pub mod trace_headers;
pub mod traceparent;

use arbitrary::Unstructured;

/// A target's property check: panics when a property fails.
pub type Check = fn(&[u8]);

/// Every target: its name (that of its fuzz target and corpus folder) and its check.
pub const TARGETS: &[(&str, Check)] = &[
    ("trace_headers", trace_headers::check),
    ("carrier", carrier::check),
    ("traceparent", traceparent::check),
    ("report", report::check),
    ("redis_reply", redis_reply::check),
    ("connection_string", connection_string::check),
    ("profiler_ini", profiler_ini::check),
];

/// The key the targets sign with when the input does not pick one.
pub const FIXED_KEY: &str = "SECRET_KEY";

/// Letters a generated secret is made of and nothing else ever holds (the other pieces of
/// a generated input have them removed, and no message of the library uses them): any of
/// them in an output is a piece of the secret.
const MARKERS: &[char] = &[
    'α', 'β', 'γ', 'δ', 'ε', 'ζ', 'η', 'θ', 'λ', 'μ', 'ξ', 'π', 'σ', 'φ', 'ψ', 'ω', 'Δ', 'Σ', 'Ω',
];

/// Whether `c` is a marker letter (the Greek block: generated public pieces lose them all).
fn is_marker(c: char) -> bool {
    ('\u{370}'..='\u{3ff}').contains(&c)
}

/// `s` without marker letters, for a public piece of a generated input.
fn public(s: &str) -> String {
    s.chars().filter(|&c| !is_marker(c)).collect()
}

/// The first marker letter in `s`, if any.
fn find_marker(s: &str) -> Option<char> {
    s.chars().find(|&c| is_marker(c))
}

/// A secret of at least `min` marker letters, with URL-reserved characters, separators
/// and non-ASCII between them: whatever part of it shows, a marker shows.
fn secret(u: &mut Unstructured<'_>, min: usize, fillers: &[&str]) -> String {
    let mut s = String::new();
    let mut letters = 0;
    let len = u.int_in_range(min..=min + 24).unwrap_or(min);
    for i in 0..len {
        // Fillers anywhere, as long as the slots left can still take the letters owed.
        let owed = min.saturating_sub(letters);
        if owed < len - i && u.ratio(1, 3).unwrap_or(false) {
            s.push_str(u.choose(fillers).copied().unwrap_or(""));
        } else {
            s.push(u.choose(MARKERS).copied().unwrap_or('λ'));
            letters += 1;
        }
    }
    s
}

/// A string from the input: arbitrary text, or (often) one of `pool`.
fn pick_or_any(u: &mut Unstructured<'_>, pool: &[&str]) -> String {
    if u.ratio(2, 3).unwrap_or(true) {
        u.choose(pool).copied().unwrap_or_default().to_owned()
    } else {
        u.arbitrary::<String>().unwrap_or_default()
    }
}

/// Whether two HMAC keys give the same MACs: HMAC pads a key shorter than the block with
/// zeros and hashes a longer one, so `K` and `K\0` are one key. (Nothing to do with this
/// library: the properties must not call those "different keys".)
pub fn hmac_equivalent(a: &[u8], b: &[u8]) -> bool {
    fn normal(k: &[u8]) -> Vec<u8> {
        use sha1::Digest;
        let k = if k.len() > 64 {
            sha1::Sha1::digest(k).to_vec()
        } else {
            k.to_vec()
        };
        let end = k.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        k[..end].to_vec()
    }
    normal(a) == normal(b)
}

/// Panics unless `text` is one line.
fn one_line(what: &str, text: &str) {
    assert!(
        !text.contains(['\n', '\r']),
        "{what} is not one line: {text:?}"
    );
}
