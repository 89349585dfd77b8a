//! Timestamps as osprofiler writes them: naive UTC, `%Y-%m-%dT%H:%M:%S.%f`.

use std::fmt;
use std::str::FromStr;

use crate::digits::write_decimal_fixed;

/// A point in time, in microseconds since the Unix epoch (UTC).
///
/// Displays as osprofiler's naive UTC text with six fractional digits,
/// `2026-11-25T12:00:00.001375`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct Timestamp(pub i64);

/// The error of [`Timestamp::from_str`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a timestamp of the form YYYY-MM-DDTHH:MM:SS.ffffff: {0:?}")]
pub struct ParseTimestampError(pub String);

impl Timestamp {
    /// The current wall-clock time.
    pub fn now() -> Timestamp {
        match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => Timestamp(d.as_micros() as i64),
            Err(e) => Timestamp(-(e.duration().as_micros() as i64)),
        }
    }

    /// Microseconds since the Unix epoch.
    pub fn as_micros(self) -> i64 {
        self.0
    }

    /// Appends the osprofiler text form (26 bytes) to `out`.
    pub fn write_to(self, out: &mut Vec<u8>) {
        let secs = self.0.div_euclid(1_000_000);
        let micros = self.0.rem_euclid(1_000_000) as u32;
        let days = secs.div_euclid(86_400);
        let sod = secs.rem_euclid(86_400) as u32;
        let (y, m, d) = civil_from_days(days);
        let mut buf = [0u8; 26];
        write_decimal_fixed(&mut buf[..4], y.clamp(0, 9999) as u32);
        write_decimal_fixed(&mut buf[5..7], m);
        write_decimal_fixed(&mut buf[8..10], d);
        write_decimal_fixed(&mut buf[11..13], sod / 3600);
        write_decimal_fixed(&mut buf[14..16], sod / 60 % 60);
        write_decimal_fixed(&mut buf[17..19], sod % 60);
        write_decimal_fixed(&mut buf[20..], micros);
        buf[4] = b'-';
        buf[7] = b'-';
        buf[10] = b'T';
        buf[13] = b':';
        buf[16] = b':';
        buf[19] = b'.';
        out.extend_from_slice(&buf);
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut v = Vec::with_capacity(26);
        self.write_to(&mut v);
        f.write_str(std::str::from_utf8(&v).unwrap_or_default())
    }
}

impl FromStr for Timestamp {
    type Err = ParseTimestampError;

    /// Parses an event's timestamp, as Python's `strptime` reads osprofiler's naive UTC
    /// `%Y-%m-%dT%H:%M:%S.%f`: a four-digit year, one or two digits for month, day,
    /// hour, minute and second, one to six fraction digits padded on the right (`.77` is
    /// 770 000 µs). Other writers' forms are decided one by one:
    ///
    /// | form | example | here |
    /// |---|---|---|
    /// | no fraction | `2026-11-25T12:00:00` | taken, `.000000` |
    /// | 1 to 6 digits | `…T12:00:00.5`, `….123` | taken, padded on the right |
    /// | 7 to 9 digits (nanosecond clocks) | `…T12:00:00.123456789` | taken, cut to microseconds |
    /// | 10 digits or more, or a `.` and none | `…:00.`, `…:00.1234567890` | refused |
    /// | a zone: `Z`, `±HH:MM`, `±HHMM`, `±HH` | `…:00.5Z`, `…:00+02:00` | taken, moved to UTC |
    /// | a space for the `T` (`str(datetime)`) | `2026-11-25 12:00:00.5` | taken |
    /// | anything else: no time, a two-digit year, 24:00, a leap second 60, Feb 30, numbers | | refused |
    fn from_str(s: &str) -> Result<Timestamp, ParseTimestampError> {
        parse_micros(s)
            .map(Timestamp)
            .ok_or_else(|| ParseTimestampError(s.to_owned()))
    }
}

fn parse_micros(s: &str) -> Option<i64> {
    let mut p = Parser {
        b: s.as_bytes(),
        i: 0,
    };
    let year = p.digits(4, 4)?;
    p.literal(b'-')?;
    let month = p.digits(1, 2)?;
    p.literal(b'-')?;
    let day = p.digits(1, 2)?;
    if p.literal(b'T').is_none() {
        p.literal(b' ')?;
    }
    let hour = p.digits(1, 2)?;
    p.literal(b':')?;
    let minute = p.digits(1, 2)?;
    p.literal(b':')?;
    let second = p.digits(1, 2)?;
    let mut micros = 0;
    if p.literal(b'.').is_some() {
        let start = p.i;
        let frac = p.digits(1, 9)?;
        let width = p.i - start;
        micros = if width <= 6 {
            frac * 10_i64.pow(6 - width as u32)
        } else {
            frac / 10_i64.pow(width as u32 - 6)
        };
    }
    let offset_us = p.zone()?;
    if p.i != p.b.len() {
        return None;
    }
    // Python's datetime refuses year 0, leap seconds and impossible dates; so do we.
    if !(1..=9999).contains(&year)
        || !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let days = days_from_civil(year, month as u32, day as u32);
    Some(((days * 24 + hour) * 60 + minute) * 60_000_000 + second * 1_000_000 + micros - offset_us)
}

struct Parser<'a> {
    b: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn literal(&mut self, c: u8) -> Option<()> {
        if self.b.get(self.i) == Some(&c) {
            self.i += 1;
            Some(())
        } else {
            None
        }
    }

    /// An optional zone at the end: `Z`, `±HH:MM`, `±HHMM` or `±HH`, as microseconds east
    /// of UTC (0 when there is none); `None` when malformed.
    fn zone(&mut self) -> Option<i64> {
        if self.literal(b'Z').is_some() || self.literal(b'z').is_some() {
            return Some(0);
        }
        let sign = if self.literal(b'+').is_some() {
            1
        } else if self.literal(b'-').is_some() {
            -1
        } else {
            return Some(0);
        };
        let hours = self.digits(2, 2)?;
        // `±HH:MM` and `±HHMM` have minutes; `±HH` ends there.
        let minutes = if self.literal(b':').is_some() || self.i < self.b.len() {
            self.digits(2, 2)?
        } else {
            0
        };
        if hours > 23 || minutes > 59 {
            return None;
        }
        Some(sign * (hours * 60 + minutes) * 60_000_000)
    }

    /// Reads `min..=max` ASCII digits, greedily like `strptime`.
    fn digits(&mut self, min: usize, max: usize) -> Option<i64> {
        let mut v = 0_i64;
        let mut n = 0;
        while n < max {
            match self.b.get(self.i) {
                Some(c) if c.is_ascii_digit() => {
                    v = v * 10 + i64::from(c - b'0');
                    self.i += 1;
                    n += 1;
                }
                _ => break,
            }
        }
        (n >= min).then_some(v)
    }
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

// Howard Hinnant's days_from_civil / civil_from_days (proleptic Gregorian).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy as i64;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses_like_python() {
        let s = "2026-11-25T12:00:00.001375";
        let t: Timestamp = s.parse().unwrap();
        assert_eq!(t.to_string(), s);
        // 2026-11-25T12:00:00Z is 1795608000 s after the epoch.
        assert_eq!(t.0, 1_795_608_000_001_375);
        assert_eq!(Timestamp(0).to_string(), "1970-01-01T00:00:00.000000");
        assert_eq!(
            "2024-02-29T23:59:59"
                .parse::<Timestamp>()
                .unwrap()
                .to_string(),
            "2024-02-29T23:59:59.000000"
        );
        assert_eq!(
            "2024-02-29T23:59:59.5".parse::<Timestamp>().unwrap().0 % 1_000_000,
            500_000
        );
        // Other writers' forms, as the table of `from_str` says.
        assert_eq!(
            "2026-11-25 12:00:00.5+01:00"
                .parse::<Timestamp>()
                .unwrap()
                .to_string(),
            "2026-11-25T11:00:00.500000"
        );
        assert_eq!(
            "2026-11-25T12:00:00.1234567Z"
                .parse::<Timestamp>()
                .unwrap()
                .to_string(),
            "2026-11-25T12:00:00.123456"
        );
        for bad in [
            "2023-02-29T00:00:00.0",
            "2026-11-25T12:00:00.",
            "2026-11-25T12:00:00.1234567890",
            "2026-11-25T24:00:00",
            "0000-01-01T00:00:00",
            "x",
        ] {
            assert!(bad.parse::<Timestamp>().is_err(), "{bad}");
        }
    }

    #[test]
    fn civil_round_trip_over_centuries() {
        for days in (-800_000..800_000).step_by(997) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }
}
