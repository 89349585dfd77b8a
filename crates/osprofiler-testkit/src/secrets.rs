//! Random secrets, and a search of outputs for any part of them (issue 9, "Secrets").
//!
//! [`Secrets::new`] makes a few random secrets per run, seeded from the clock (or from
//! `OSPROFILER_SECRET_SEED`, to replay a failure: the seed is in every failure message).
//! Each holds ASCII letters and digits, URL-reserved characters raw and percent-encoded,
//! a space and non-ASCII letters; one of them is plain letters and digits, so that code
//! paths that only a well-formed string reaches are searched too.
//!
//! [`assert_hidden`] runs a case (secret → labelled outputs) with the secret and with a
//! *twin* of it, then looks for the secret and every substring of at least four characters
//! of it (raw and percent-encoded) in each output. The twin has the same shape (every
//! letter, digit and non-ASCII character replaced by another of its kind, punctuation
//! kept), so the case takes the same path with it; a substring that also shows in the
//! twin's output is text that is there anyway (`redis`, `connection string`), not a leak.
//! Without that, a four-character piece of a random secret would match some fixed word
//! of some message now and then. For the same reason ids, timestamps and long base64 runs
//! are left out ([`without_ids`]) and digits compared as `0` (timings differ between runs).

use std::time::{SystemTime, UNIX_EPOCH};

/// The environment variable that fixes the seed, to replay a failure.
pub const SECRET_SEED_ENV: &str = "OSPROFILER_SECRET_SEED";

/// URL-reserved characters (RFC 3986 gen-delims and sub-delims) and `%`.
pub const RESERVED: &[char] = &[
    ':', '/', '?', '#', '[', ']', '@', '!', '$', '&', '\'', '(', ')', '*', '+', ',', ';', '=', '%',
];

/// Non-ASCII letters a secret may hold, grouped by UTF-8 length (a twin keeps the length).
const NON_ASCII_2: &[char] = &['é', 'ß', 'ñ', 'ø'];
const NON_ASCII_3: &[char] = &['漢', '字', '語'];

/// Random secrets for one test run.
#[derive(Debug, Clone)]
pub struct Secrets {
    /// The seed they were made from.
    pub seed: u64,
    /// The secrets.
    pub list: Vec<String>,
}

impl Secrets {
    /// `n` secrets (at least 2), the last one plain letters and digits.
    pub fn new(n: usize) -> Secrets {
        let seed = std::env::var(SECRET_SEED_ENV)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or_else(|| {
                let nanos = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(0);
                nanos ^ (u64::from(std::process::id()) << 32)
            });
        let mut rng = Rng(seed | 1);
        let n = n.max(2);
        let mut list: Vec<String> = (0..n - 1).map(|_| mixed(&mut rng)).collect();
        list.push(plain(&mut rng));
        Secrets { seed, list }
    }

    /// A secret different from all of these, of another shape (for "the other password").
    pub fn other(&self) -> String {
        let mut rng = Rng(self.seed.rotate_left(17) | 1);
        loop {
            let s = mixed(&mut rng);
            if !self.list.contains(&s) {
                return s;
            }
        }
    }
}

/// xorshift64*: enough for test data, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
const DIGITS: &[u8] = b"0123456789";

fn token(rng: &mut Rng, kind: usize) -> String {
    match kind {
        0 => char::from(rng.pick(LETTERS)).to_string(),
        1 => char::from(rng.pick(DIGITS)).to_string(),
        2 => rng.pick(RESERVED).to_string(),
        3 => percent_encode(&rng.pick(RESERVED).to_string()),
        4 => " ".to_string(),
        _ => {
            let all: Vec<char> = NON_ASCII_2.iter().chain(NON_ASCII_3).copied().collect();
            rng.pick(&all).to_string()
        }
    }
}

/// 8 to 24 characters: one of every kind, then random ones, shuffled.
fn mixed(rng: &mut Rng) -> String {
    let target = 8 + rng.below(17);
    let mut tokens: Vec<String> = (0..6).map(|k| token(rng, k)).collect();
    let len = |t: &[String]| t.iter().map(|s| s.chars().count()).sum::<usize>();
    while len(&tokens) < target {
        // Letters and digits most often, as in a real password.
        let kind = [0, 0, 0, 1, 1, 2, 2, 3, 4, 5][rng.below(10)];
        tokens.push(token(rng, kind));
    }
    while len(&tokens) > 24 {
        tokens.pop();
    }
    for i in (1..tokens.len()).rev() {
        let j = rng.below(i + 1);
        tokens.swap(i, j);
    }
    tokens.concat()
}

fn plain(rng: &mut Rng) -> String {
    let n = 8 + rng.below(17);
    (0..n)
        .map(|i| {
            // At least one digit, one letter.
            let set = if i == 0 {
                DIGITS
            } else if i == 1 {
                LETTERS
            } else if rng.below(3) == 0 {
                DIGITS
            } else {
                LETTERS
            };
            char::from(rng.pick(set))
        })
        .collect()
}

/// Every byte but ASCII letters, digits and `-._~` as `%XX` (uppercase hex), as a
/// connection string carries a password.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The twin of `secret`: each letter, digit and non-ASCII letter replaced by another of
/// its kind (hex letters by hex letters, so `%`-escapes stay valid or invalid), every
/// other character kept. A case given the twin takes the same path as with the secret.
pub fn twin(secret: &str) -> String {
    let rot = |c: char, first: char, n: u32| {
        char::from_u32((c as u32 - first as u32 + 1) % n + first as u32).unwrap_or(c)
    };
    let in_pool = |c: char, pool: &[char]| {
        pool.iter()
            .position(|&p| p == c)
            .map(|i| pool[(i + 1) % pool.len()])
    };
    secret
        .chars()
        .map(|c| match c {
            'a'..='f' => rot(c, 'a', 6),
            'g'..='z' => rot(c, 'g', 20),
            'A'..='F' => rot(c, 'A', 6),
            'G'..='Z' => rot(c, 'G', 20),
            '0'..='9' => rot(c, '0', 10),
            c => in_pool(c, NON_ASCII_2)
                .or_else(|| in_pool(c, NON_ASCII_3))
                // Any other non-ASCII character: one of the same UTF-8 length.
                .unwrap_or(match c.len_utf8() {
                    1 => c,
                    2 => 'ü',
                    3 => '字',
                    _ => '😀',
                }),
        })
        .collect()
}

/// What is searched for: the substrings of `secret` of at least four characters that hold
/// a letter, and the percent-encoded form of each. A piece of digits, spaces and
/// punctuation alone (`0, 4`, ` 88%`) is ordinary output text (timings, counts); the
/// pieces around it, and the whole secret, are still searched.
pub fn needles(secret: &str) -> Vec<String> {
    let chars: Vec<char> = secret.chars().collect();
    let mut out = Vec::new();
    for i in 0..chars.len() {
        for j in i + 4..=chars.len() {
            if !chars[i..j].iter().any(|c| c.is_alphabetic()) {
                continue;
            }
            let piece: String = chars[i..j].iter().collect();
            let encoded = percent_encode(&piece);
            if encoded != piece {
                out.push(encoded);
            }
            out.push(piece);
        }
    }
    out.sort();
    out.dedup();
    out
}

/// `text` less what differs from run to run whatever the secret: UUIDs, runs of 16 hex
/// digits or more (HMACs, span ids), of 6 digits or more (microseconds), timestamps, and
/// base64 runs of 40 characters or more (`X-Trace-Info`). The twin's run has other ids and
/// times, so without this a four-character piece of a secret would now and then match a
/// random id in one output and not in the other. (A whole secret is searched for in the
/// text as it is.)
pub fn without_ids(text: &str) -> String {
    let is_b64 = |c: char| c.is_ascii_alphanumeric() || "-_+/=".contains(c);
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        if let Some(n) = timestamp_at(&chars[i..]) {
            out.push_str("<ts>");
            i += n;
            continue;
        }
        if !is_b64(chars[i]) {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let end = (i..chars.len())
            .find(|&j| !is_b64(chars[j]))
            .unwrap_or(chars.len());
        let run = &chars[i..end];
        if run.len() >= 40 {
            out.push_str("<b64>");
        } else {
            out.push_str(&without_hex_and_digits(run));
        }
        i = end;
    }
    out
}

/// `YYYY-MM-DDTHH:MM:SS[.f…]` (or a space for the `T`) at the start of `c`: its length.
fn timestamp_at(c: &[char]) -> Option<usize> {
    let shape = "DDDD-DD-DDTDD:DD:DD";
    if c.len() < shape.len() {
        return None;
    }
    for (k, want) in shape.chars().enumerate() {
        let ok = match want {
            'D' => c[k].is_ascii_digit(),
            'T' => c[k] == 'T' || c[k] == ' ',
            w => c[k] == w,
        };
        if !ok {
            return None;
        }
    }
    let mut n = shape.len();
    if c.get(n) == Some(&'.') {
        n += 1;
        while c.get(n).is_some_and(|d| d.is_ascii_digit()) {
            n += 1;
        }
    }
    Some(n)
}

fn without_hex_and_digits(run: &[char]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < run.len() {
        let hex_end = (i..run.len())
            .find(|&j| !(run[j].is_ascii_hexdigit() || run[j] == '-'))
            .unwrap_or(run.len());
        let hex = &run[i..hex_end];
        let digits = hex.iter().filter(|c| c.is_ascii_hexdigit()).count();
        if digits >= 16 {
            out.push_str("<hex>");
            i = hex_end;
        } else if hex.len() >= 6 && hex.iter().all(|c| c.is_ascii_digit()) {
            out.push_str("<n>");
            i = hex_end;
        } else {
            out.push(run[i]);
            i += 1;
        }
    }
    out
}

/// Labelled outputs of a case: `(what, text)`.
pub type Outputs = Vec<(String, String)>;

/// Where a part of a secret showed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leak {
    /// The output's label.
    pub what: String,
    /// The piece of the secret found.
    pub piece: String,
    /// The output.
    pub text: String,
}

/// Digits as `0`: texts and pieces are compared so, since timings and ports (`  1%`,
/// `94.8 ms`) differ between the secret's run and its twin's. Only a piece made of digits
/// and punctuation alone is then found in the twin's output too (and so not counted): any
/// letter of the secret still tells its pieces from the output's text.
fn digits_as_zero(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_digit() { '0' } else { c })
        .collect()
}

/// The leaks of `secret` in `outputs`, `baseline` being the same case's outputs for
/// [`twin`]`(secret)`: a piece counts when it shows in an output and not in the
/// baseline's output of the same label (missing labels: an empty baseline). The whole
/// secret counts wherever it shows.
pub fn leaks(secret: &str, outputs: &Outputs, baseline: &Outputs) -> Vec<Leak> {
    let pieces: Vec<(String, String)> = needles(secret)
        .into_iter()
        .map(|p| (digits_as_zero(&p), p))
        .collect();
    let mut found = Vec::new();
    for (what, text) in outputs {
        let base = digits_as_zero(&without_ids(
            baseline
                .iter()
                .find(|(w, _)| w == what)
                .map_or("", |(_, t)| t.as_str()),
        ));
        let hit = if text.contains(secret) {
            Some(secret.to_owned())
        } else {
            let text = digits_as_zero(&without_ids(text));
            pieces
                .iter()
                .filter(|(p, _)| text.contains(p.as_str()) && !base.contains(p.as_str()))
                .max_by_key(|(p, _)| p.len())
                .map(|(_, original)| original.clone())
        };
        if let Some(piece) = hit {
            found.push(Leak {
                what: what.clone(),
                piece,
                text: text.clone(),
            });
        }
    }
    found
}

/// Runs `case` with each secret and its twin, and panics with every leak found, the
/// seed and the secret (to replay: `OSPROFILER_SECRET_SEED=<seed>`).
#[track_caller]
pub fn assert_hidden(secrets: &Secrets, name: &str, mut case: impl FnMut(&str) -> Outputs) {
    let mut report = String::new();
    for secret in &secrets.list {
        let outputs = case(secret);
        let baseline = case(&twin(secret));
        assert!(!outputs.is_empty(), "{name}: no output to search");
        for l in leaks(secret, &outputs, &baseline) {
            report.push_str(&format!(
                "\n  {name}: {}: shows {:?} of secret {secret:?}: {:?}",
                l.what, l.piece, l.text
            ));
        }
    }
    assert!(
        report.is_empty(),
        "secrets shown (seed {}; replay with {SECRET_SEED_ENV}={}):{report}",
        secrets.seed,
        secrets.seed
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_have_every_kind_of_character() {
        let s = Secrets::new(5);
        assert_eq!(s.list.len(), 5);
        for secret in &s.list[..4] {
            let n = secret.chars().count();
            assert!((8..=24).contains(&n), "{secret:?}");
            assert!(secret.chars().any(|c| RESERVED.contains(&c)), "{secret:?}");
            assert!(secret.contains(' ') && secret.contains('%'), "{secret:?}");
            assert!(!secret.is_ascii(), "{secret:?}");
        }
        assert!(s.list[4].chars().all(|c| c.is_ascii_alphanumeric()));
        assert!(!s.list.contains(&s.other()));
    }

    #[test]
    fn twins_keep_the_shape_and_change_every_letter() {
        let s = "aZ9%3A é/漢 xf";
        let t = twin(s);
        assert_eq!(t.chars().count(), s.chars().count());
        assert_eq!(t.len(), s.len());
        for (a, b) in s.chars().zip(t.chars()) {
            assert_eq!(a.is_ascii_alphanumeric(), b.is_ascii_alphanumeric());
            assert_eq!(a.is_ascii_hexdigit(), b.is_ascii_hexdigit());
            if a.is_alphanumeric() {
                assert_ne!(a, b);
            } else {
                assert_eq!(a, b);
            }
        }
    }

    #[test]
    fn ids_and_times_are_left_out_of_the_search() {
        let text = "id 6f1c2b1e-8a5d-4c1e-9f0b-3d2a1c0b9e8f at 2026-11-25T12:00:00.001375, \
                    hmac d5c8c499158d92608f09da737823d4272b920cd4, t=1764072000001375 µs, \
                    info eyJiYXNlX2lkIjogIjExMTExMTExLTExMTEtNDExMS04MTExLTExMTExMTExMTExMSJ9 port 6379";
        assert_eq!(
            without_ids(text),
            "id <hex> at <ts>, hmac <b64>, t=<hex> µs, info <b64> port 6379"
        );
        assert_eq!(without_ids("pw abc:DEF-12 é"), "pw abc:DEF-12 é");
        assert_eq!(without_ids("at 1234567 or 12345"), "at <n> or 12345");
    }

    #[test]
    fn leaks_are_found_and_fixed_text_is_not_one() {
        let secret = "ab:cd/redis";
        let out = |s: &str| -> Outputs {
            vec![
                ("fixed".into(), "redis://h:6379".into()),
                ("leak".into(), format!("bad {}", &s[3..])),
                ("encoded".into(), percent_encode(&s[..5])),
            ]
        };
        let found = leaks(secret, &out(secret), &out(&twin(secret)));
        let what: Vec<&str> = found.iter().map(|l| l.what.as_str()).collect();
        assert_eq!(what, ["leak", "encoded"]);
        assert_eq!(found[0].piece, "cd/redis");
    }
}
