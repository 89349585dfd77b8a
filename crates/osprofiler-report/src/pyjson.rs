//! JSON text as Python's `json.dumps(…, indent=2, separators=(",", ": "))` writes it
//! (`ensure_ascii` on), for [`Report::to_json_string`](crate::Report::to_json_string).
//!
//! The report used to be built as a `serde_json::Value` and pretty-printed; these write
//! the same bytes directly. Stored events are re-indented from their text, token by token,
//! and strings and numbers come out as serde_json writes them from a `Value` (then escaped
//! to ASCII), so that nothing changes. What the token pass cannot be sure to write that
//! way (keys with escapes or repeated, whose `Value` would merge them) goes through a
//! `Value` after all.

use std::io;

use serde_json::Value;

/// `"\n"` and then two spaces per level; written in pieces of this.
const NEWLINE_AND_SPACES: &str = concat!(
    "\n",
    "                                                                ",
    "                                                                "
);

/// A line break and the indentation of `level`.
pub(crate) fn newline(out: &mut String, level: usize) {
    let mut spaces = level * 2;
    let chunk = NEWLINE_AND_SPACES.len() - 1;
    let first = spaces.min(chunk);
    out.push_str(NEWLINE_AND_SPACES.get(..=first).unwrap_or("\n"));
    spaces -= first;
    while spaces > 0 {
        let n = spaces.min(chunk);
        out.push_str(NEWLINE_AND_SPACES.get(1..=n).unwrap_or_default());
        spaces -= n;
    }
}

/// An integer, as `itoa` would.
pub(crate) fn int(out: &mut String, n: i64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = n.unsigned_abs();
    loop {
        at -= 1;
        if let Some(d) = digits.get_mut(at) {
            *d = b'0' + (rest % 10) as u8;
        }
        rest /= 10;
        if rest == 0 || at == 0 {
            break;
        }
    }
    if n < 0 {
        out.push('-');
    }
    for &d in digits.get(at..).unwrap_or_default() {
        out.push(char::from(d));
    }
}

/// `null` or the integer.
pub(crate) fn opt_int(out: &mut String, n: Option<i64>) {
    match n {
        Some(n) => int(out, n),
        None => out.push_str("null"),
    }
}

/// Bytes a string needs no escape for: printable ASCII but `"` and `\`.
fn plain(b: u8) -> bool {
    (0x20..0x7f).contains(&b) & (b != b'"') & (b != b'\\')
}

/// A quoted string: serde_json's escapes, then every character from DEL up as `\uXXXX`
/// (UTF-16 units, lowercase), as Python's `ensure_ascii`.
pub(crate) fn string(out: &mut String, s: &str) {
    out.push('"');
    string_body(out, s);
    out.push('"');
}

/// What goes between the quotes of [`string`].
pub(crate) fn string_body(out: &mut String, s: &str) {
    if s.bytes().all(plain) {
        out.push_str(s);
    } else {
        s.chars().for_each(|c| escaped_char(out, c));
    }
}

/// `null` or the string.
pub(crate) fn opt_string(out: &mut String, s: Option<&str>) {
    match s {
        Some(s) => string(out, s),
        None => out.push_str("null"),
    }
}

fn escaped_char(out: &mut String, c: char) {
    match c {
        '"' => out.push_str("\\\""),
        '\\' => out.push_str("\\\\"),
        '\u{8}' => out.push_str("\\b"),
        '\u{c}' => out.push_str("\\f"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        ' '..='~' => out.push(c),
        c => {
            let mut units = [0u16; 2];
            for &unit in c.encode_utf16(&mut units).iter() {
                unit_escape(out, unit);
            }
        }
    }
}

/// `\uXXXX` for one UTF-16 unit, lowercase hex as Python and serde_json write it.
pub(crate) fn unit_escape(out: &mut String, unit: u16) {
    let mut digits = [0u8; 4];
    osprofiler::private::write_hex(&mut digits, &unit.to_be_bytes());
    out.push_str("\\u");
    out.extend(digits.iter().map(|&d| char::from(d)));
}

/// Writes an event's JSON text re-indented, its first line continuing the current one
/// and its lines indented from `level`.
pub(crate) fn event(out: &mut String, text: &str, value: Option<&Value>, level: usize) {
    let mark = out.len();
    if Reindent::new(out, level).run(text).is_none() {
        out.truncate(mark);
        match value {
            Some(v) => pretty_value(out, v, level),
            None => pretty_value(out, &serde_json::from_str(text).unwrap_or_default(), level),
        }
    }
}

/// A `Value` as Python prints it: serde_json's pretty text made ASCII, indented from
/// `level` (its line breaks are only ever between tokens: strings escape theirs).
pub(crate) fn pretty_value(out: &mut String, value: &Value, level: usize) {
    use serde::Serialize as _;
    let mut buf = Vec::with_capacity(256);
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, PythonPretty::default());
    // Serialising a Value with string keys cannot fail.
    let _ = value.serialize(&mut ser);
    let text = String::from_utf8(buf).unwrap_or_default();
    for c in text.chars() {
        match c {
            '\n' => newline(out, level),
            ' '..='~' => out.push(c),
            c => escaped_char(out, c),
        }
    }
}

/// serde_json's pretty printer (Python's `indent=2` layout) with Python's floats.
#[derive(Default)]
struct PythonPretty(serde_json::ser::PrettyFormatter<'static>);

impl serde_json::ser::Formatter for PythonPretty {
    fn begin_array<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.begin_array(w)
    }
    fn end_array<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.end_array(w)
    }
    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.0.begin_array_value(w, first)
    }
    fn end_array_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.end_array_value(w)
    }
    fn begin_object<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.begin_object(w)
    }
    fn end_object<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.end_object(w)
    }
    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.0.begin_object_key(w, first)
    }
    fn begin_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.begin_object_value(w)
    }
    fn end_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.end_object_value(w)
    }
    fn write_f64<W: ?Sized + io::Write>(&mut self, w: &mut W, value: f64) -> io::Result<()> {
        w.write_all(osprofiler::json::python_float_repr(value).as_bytes())
    }
    fn write_f32<W: ?Sized + io::Write>(&mut self, w: &mut W, value: f32) -> io::Result<()> {
        self.write_f64(w, f64::from(value))
    }
}

/// Keys of one object above this many go through a `Value`: checking them for repeats
/// costs a comparison with every earlier one.
const MAX_KEYS: usize = 64;

/// The token pass over a valid JSON text.
struct Reindent<'o, 't> {
    out: &'o mut String,
    level: usize,
    /// For each open object or array: whether it is an object, and where its keys start
    /// in `keys`.
    open: Vec<(bool, usize)>,
    keys: Vec<&'t str>,
}

impl<'o, 't> Reindent<'o, 't> {
    fn new(out: &'o mut String, level: usize) -> Reindent<'o, 't> {
        Reindent {
            out,
            level,
            open: Vec::new(),
            keys: Vec::new(),
        }
    }

    /// `None`: the text needs a `Value` (or is not valid JSON); `out` is then partly written.
    fn run(mut self, text: &'t str) -> Option<()> {
        let bytes = text.as_bytes();
        let mut i = 0;
        let mut expect_key = false;
        loop {
            while bytes.get(i).is_some_and(|b| b" \t\n\r".contains(b)) {
                i += 1;
            }
            let Some(&b) = bytes.get(i) else {
                return self.open.is_empty().then_some(());
            };
            match b {
                b'{' | b'[' => {
                    let close = if b == b'{' { b'}' } else { b']' };
                    let mut j = i + 1;
                    while bytes.get(j).is_some_and(|b| b" \t\n\r".contains(b)) {
                        j += 1;
                    }
                    if bytes.get(j) == Some(&close) {
                        self.out.push(char::from(b));
                        self.out.push(char::from(close));
                        i = j + 1;
                        continue;
                    }
                    self.out.push(char::from(b));
                    self.open.push((b == b'{', self.keys.len()));
                    self.level += 1;
                    newline(self.out, self.level);
                    expect_key = b == b'{';
                    i += 1;
                }
                b'}' | b']' => {
                    let (_, keys) = self.open.pop()?;
                    self.keys.truncate(keys);
                    self.level = self.level.checked_sub(1)?;
                    newline(self.out, self.level);
                    self.out.push(char::from(b));
                    i += 1;
                }
                b',' => {
                    self.out.push(',');
                    newline(self.out, self.level);
                    expect_key = self.open.last()?.0;
                    i += 1;
                }
                b':' => {
                    self.out.push_str(": ");
                    i += 1;
                }
                b'"' => {
                    let end = string_end(bytes, i + 1)?;
                    let body = text.get(i + 1..end)?;
                    if expect_key {
                        self.key(body)?;
                        expect_key = false;
                    }
                    raw_string(self.out, body)?;
                    i = end + 1;
                }
                b't' | b'f' | b'n' => {
                    let word = ["true", "false", "null"]
                        .into_iter()
                        .find(|w| bytes.get(i..i + w.len()) == Some(w.as_bytes()))?;
                    self.out.push_str(word);
                    i += word.len();
                }
                b'-' | b'0'..=b'9' => {
                    let mut end = i + 1;
                    while bytes.get(end).is_some_and(|b| {
                        matches!(b, b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-')
                    }) {
                        end += 1;
                    }
                    number(self.out, text.get(i..end)?)?;
                    i = end;
                }
                _ => return None,
            }
        }
    }

    /// Notes a key of the innermost object; `None` when the text needs a `Value`.
    fn key(&mut self, key: &'t str) -> Option<()> {
        let &(_, first) = self.open.last()?;
        let earlier = self.keys.get(first..)?;
        if key.contains('\\') || earlier.len() >= MAX_KEYS || earlier.contains(&key) {
            return None;
        }
        self.keys.push(key);
        Some(())
    }
}

/// Where the string whose body starts at `from` ends (its closing quote).
fn string_end(bytes: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    loop {
        match bytes.get(i)? {
            b'"' => return Some(i),
            b'\\' => i += 2,
            _ => i += 1,
        }
    }
}

/// A string given as the body of a JSON string (between its quotes), written as serde
/// writes the string it stands for, then made ASCII.
fn raw_string(out: &mut String, body: &str) -> Option<()> {
    out.push('"');
    if body.bytes().all(plain) {
        out.push_str(body);
        out.push('"');
        return Some(());
    }
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            escaped_char(out, c);
            continue;
        }
        let c = match chars.next()? {
            '"' => '"',
            '\\' => '\\',
            '/' => '/',
            'b' => '\u{8}',
            'f' => '\u{c}',
            'n' => '\n',
            'r' => '\r',
            't' => '\t',
            'u' => {
                let unit = hex4(&mut chars)?;
                match unit {
                    0xD800..=0xDBFF => {
                        // Only a pair is valid JSON for serde_json.
                        if (chars.next()?, chars.next()?) != ('\\', 'u') {
                            return None;
                        }
                        let low = hex4(&mut chars)?;
                        if !(0xDC00..=0xDFFF).contains(&low) {
                            return None;
                        }
                        let code = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00);
                        char::from_u32(code)?
                    }
                    unit => char::from_u32(unit)?,
                }
            }
            _ => return None,
        };
        escaped_char(out, c);
    }
    out.push('"');
    Some(())
}

fn hex4(chars: &mut std::str::Chars<'_>) -> Option<u32> {
    let mut v = 0;
    for _ in 0..4 {
        v = v * 16 + chars.next()?.to_digit(16)?;
    }
    Some(v)
}

/// A number as Python's `json.dumps` writes it back: integers as they are, floats as
/// `repr(float)` (`1e+16`, where serde_json writes `1e16`).
fn number(out: &mut String, token: &str) -> Option<()> {
    let digits = token.strip_prefix('-').unwrap_or(token);
    let canonical_integer = !digits.is_empty()
        && digits.len() <= 18
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (!digits.starts_with('0') || (digits == "0" && digits.len() == token.len()));
    if canonical_integer {
        out.push_str(token);
    } else {
        let n: serde_json::Number = serde_json::from_str(token).ok()?;
        match n.as_f64().filter(|_| n.is_f64()) {
            Some(f) => out.push_str(&osprofiler::json::python_float_repr(f)),
            None => out.push_str(&n.to_string()),
        }
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the report wrote before: the `Value`'s pretty text, made ASCII.
    fn via_value(text: &str, level: usize) -> String {
        let value: Value = serde_json::from_str(text).unwrap();
        let mut out = String::new();
        pretty_value(&mut out, &value, level);
        out
    }

    fn reindented(text: &str, level: usize) -> String {
        let mut out = String::new();
        event(&mut out, text, None, level);
        out
    }

    #[test]
    fn same_text_as_through_a_value() {
        for text in [
            r#"{"name": "a-start", "info": {"host": "h", "n": [1, -2, 3.5, 1e3, 1E-2, -0, 0, -0.0, 12345678901234567890123, 123456789012345678, 9007199254740993], "e": {}, "l": [], "x": [[], {}, [1]]}}"#,
            r#"{"s": "\u00e9\ud83d\ude00 \" \\ \/ \b\f\n\r\t \u0001 \u007f é€😀 \u2028", "k": true, "f": false, "z": null}"#,
            r#"  {  "a" : [ 1 , { "b" : "c" } ] , "dup" : 1 , "dup" : 2 }  "#,
            r#"{"\u0061": 1, "a": 2}"#,
            r#"{"é": {"é": 1}, "x\u00e9": 2}"#,
            r#"[]"#,
            r#"{}"#,
            r#""x""#,
            r#"-12"#,
        ] {
            for level in [0, 3, 70] {
                assert_eq!(reindented(text, level), via_value(text, level), "{text}");
            }
        }
        let many: String = format!(
            "{{{}}}",
            (0..100)
                .map(|i| format!("\"k{}\": {i}", i % 90))
                .collect::<Vec<_>>()
                .join(", ")
        );
        assert_eq!(reindented(&many, 2), via_value(&many, 2));
    }

    #[test]
    fn numbers_and_newlines() {
        let mut out = String::new();
        for n in [0, 7, -7, i64::MAX, i64::MIN] {
            out.clear();
            int(&mut out, n);
            assert_eq!(out, n.to_string());
        }
        out.clear();
        newline(&mut out, 100);
        assert_eq!(out, format!("\n{}", " ".repeat(200)));
    }
}
