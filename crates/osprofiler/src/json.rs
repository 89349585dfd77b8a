//! JSON text exactly as Python's `json.dumps` writes it with default settings:
//! `", "` and `": "` separators, every non-ASCII character (and DEL) escaped as
//! `\uXXXX`, floats as Python's `repr`. osprofiler stores events and signs trace
//! headers in this form, so byte-for-byte compatibility depends on it.

use std::io::{self, Write};

use serde::Serialize;
use serde_json::ser::{Formatter, Serializer};

/// A [`serde_json`] formatter producing Python `json.dumps` text.
#[derive(Debug, Clone, Copy, Default)]
pub struct PythonFormatter;

impl Formatter for PythonFormatter {
    fn begin_array_value<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        if first { Ok(()) } else { w.write_all(b", ") }
    }

    fn begin_object_key<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        if first { Ok(()) } else { w.write_all(b", ") }
    }

    fn begin_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(b": ")
    }

    fn write_string_fragment<W: ?Sized + Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let bytes = fragment.as_bytes();
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            if (c as u32) < 0x7f {
                continue;
            }
            w.write_all(&bytes[start..i])?;
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                write!(w, "\\u{:04x}", u)?;
            }
            start = i + c.len_utf8();
        }
        w.write_all(&bytes[start..])
    }

    fn write_f64<W: ?Sized + Write>(&mut self, w: &mut W, value: f64) -> io::Result<()> {
        w.write_all(python_float_repr(value).as_bytes())
    }

    fn write_f32<W: ?Sized + Write>(&mut self, w: &mut W, value: f32) -> io::Result<()> {
        self.write_f64(w, value as f64)
    }
}

/// Python's `repr(float)`, which `json.dumps` writes: shortest round-trip digits,
/// exponent form when the decimal exponent is below -4 or above 15, `.0` on
/// integral values. The one float writer of the workspace (the report uses it too).
///
/// ```
/// use osprofiler::json::python_float_repr;
/// assert_eq!(python_float_repr(1e16), "1e+16");
/// assert_eq!(python_float_repr(0.0001), "0.0001");
/// assert_eq!(python_float_repr(2.0), "2.0");
/// ```
pub fn python_float_repr(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        };
    }
    if v == 0.0 {
        return if v.is_sign_negative() {
            "-0.0".into()
        } else {
            "0.0".into()
        };
    }
    // `{:e}` gives the shortest round-trip digits, e.g. "1.5e-7".
    let sci = format!("{:e}", v.abs());
    let (mant, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mant.chars().filter(|c| *c != '.').collect();
    let sign = if v < 0.0 { "-" } else { "" };
    let decpt = exp + 1; // position of the decimal point after the first digit
    if !(-3..=16).contains(&decpt) {
        let (first, rest) = digits.split_at(1);
        let frac = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let esign = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{first}{frac}e{esign}{:02}", exp.abs());
    }
    let n = digits.len() as i32;
    if decpt <= 0 {
        format!("{sign}0.{}{digits}", "0".repeat((-decpt) as usize))
    } else if decpt >= n {
        format!("{sign}{digits}{}.0", "0".repeat((decpt - n) as usize))
    } else {
        let (a, b) = digits.split_at(decpt as usize);
        format!("{sign}{a}.{b}")
    }
}

/// Appends `value` as Python `json.dumps` text to `out`.
pub fn write_python_json<T: Serialize + ?Sized>(
    out: &mut Vec<u8>,
    value: &T,
) -> Result<(), serde_json::Error> {
    let mut ser = Serializer::with_formatter(out, PythonFormatter);
    value.serialize(&mut ser)
}

/// `value` as Python `json.dumps` text.
pub fn to_python_json<T: Serialize + ?Sized>(value: &T) -> Result<String, serde_json::Error> {
    let mut out = Vec::with_capacity(128);
    write_python_json(&mut out, value)?;
    // The formatter writes only ASCII and escaped sequences.
    Ok(String::from_utf8(out).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn matches_python_dumps() {
        let v = json!({"base_id": "a", "parent_id": "b", "n": [1, 2.5, true, null], "s": "kéy-☃ 😀\u{7f}\n\"/"});
        assert_eq!(
            to_python_json(&v).unwrap(),
            r#"{"base_id": "a", "parent_id": "b", "n": [1, 2.5, true, null], "s": "k\u00e9y-\u2603 \ud83d\ude00\u007f\n\"/"}"#
        );
        assert_eq!(to_python_json(&json!({})).unwrap(), "{}");
        assert_eq!(to_python_json(&json!([])).unwrap(), "[]");
    }

    #[test]
    fn floats_like_python_repr() {
        for (v, s) in [
            (1.0, "1.0"),
            (0.1, "0.1"),
            (1e16, "1e+16"),
            (1234567890123456.0, "1234567890123456.0"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (-2.5e300, "-2.5e+300"),
            (123.456, "123.456"),
            (-0.0, "-0.0"),
        ] {
            assert_eq!(python_float_repr(v), s, "{v}");
        }
    }
}
