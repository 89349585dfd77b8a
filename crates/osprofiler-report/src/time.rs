//! Event timestamps and osprofiler's millisecond arithmetic.

/// Parses an event's timestamp into microseconds since the Unix epoch (UTC).
///
/// osprofiler writes naive UTC `%Y-%m-%dT%H:%M:%S.%f`, and that is read as Python's
/// `strptime` reads it: a four-digit year, one or two digits for month, day, hour, minute and
/// second, one to six fraction digits padded on the right (`.77` is 770 000 µs). Other
/// writers' forms are decided one by one (Python's report builder raises on each, losing the
/// whole report; osprofiler once crashed on the first):
///
/// | form | example | here |
/// |---|---|---|
/// | no fraction | `2026-11-25T12:00:00` | taken, `.000000` |
/// | 1 to 6 digits | `…T12:00:00.5`, `….123` | taken, padded on the right |
/// | 7 to 9 digits (nanosecond clocks) | `…T12:00:00.123456789` | taken, cut to microseconds |
/// | 10 digits or more, or a `.` and none | `…:00.`, `…:00.1234567890` | skipped |
/// | a zone: `Z`, `±HH:MM`, `±HHMM`, `±HH` | `…:00.5Z`, `…:00+02:00` | taken, moved to UTC |
/// | a space for the `T` (`str(datetime)`) | `2026-11-25 12:00:00.5` | taken |
/// | anything else: no time, a two-digit year, 24:00, a leap second 60, Feb 30, numbers | | skipped |
///
/// A skipped event is counted ([`Report::skipped`](crate::Report::skipped)): never a panic,
/// never the end of the report. A taken event keeps its text as written wherever the report
/// shows it (raw payloads, the HTML page).
pub(crate) fn parse_timestamp(s: &str) -> Option<i64> {
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
    let days = days_from_civil(year, month, day);
    Some(((days * 24 + hour) * 60 + minute) * 60_000_000 + second * 1_000_000 + micros - offset_us)
}

/// osprofiler's `msec(timedelta)`: `int((micro + (sec + days * 86400) * 1e6) / 1000.0)`.
///
/// Done in floating point exactly as Python does it, so that the figures agree even where
/// the division rounds (spans of centuries); truncation is toward zero.
pub(crate) fn python_msec(delta_us: i64) -> i64 {
    // timedelta normalises to days/seconds that floor, and micro in [0, 1e6).
    let seconds = delta_us.div_euclid(1_000_000);
    let micro = delta_us.rem_euclid(1_000_000);
    let microsec = micro as f64 + seconds as f64 * 1e6;
    // `as` truncates toward zero like Python's int() and saturates instead of failing.
    (microsec / 1000.0) as i64
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

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_osprofiler_timestamps() {
        assert_eq!(parse_timestamp("1970-01-01T00:00:00.000000"), Some(0));
        assert_eq!(
            parse_timestamp("2026-11-25T12:00:00.001375"),
            Some(1_795_608_000_001_375)
        );
        // Python's %f pads on the right; fields may have one digit.
        assert_eq!(parse_timestamp("1970-01-01T00:00:01.77"), Some(1_770_000));
        assert_eq!(parse_timestamp("1970-1-2T3:04:05.5"), Some(97_445_500_000));
        assert_eq!(
            parse_timestamp("2000-02-29T00:00:00"),
            Some(951_782_400_000_000)
        );
        assert_eq!(parse_timestamp("1969-12-31T23:59:59.999999"), Some(-1));
    }

    #[test]
    fn other_writers_forms_as_documented() {
        let noon = parse_timestamp("2026-11-25T12:00:00.000000");
        let at = |micros: i64| noon.map(|n| n + micros);
        for (text, want) in [
            ("2026-11-25T12:00:00", at(0)),
            ("2026-11-25T12:00:00.123", at(123_000)),
            ("2026-11-25T12:00:00.1234567", at(123_456)),
            ("2026-11-25T12:00:00.123456789", at(123_456)),
            ("2026-11-25 12:00:00.5", at(500_000)),
            ("2026-11-25T12:00:00Z", at(0)),
            ("2026-11-25T12:00:00.000001z", at(1)),
            ("2026-11-25T12:00:00.5+00:00", at(500_000)),
            ("2026-11-25T14:30:00+02:30", at(0)),
            ("2026-11-25T14:30:00.000000+0230", at(0)),
            ("2026-11-25T10:00:00-02", at(0)),
            // Across midnight, the year and the epoch.
            ("2026-11-26T01:00:00+13:00", at(0)),
            ("1970-01-01T00:00:00+00:01", Some(-60_000_000)),
        ] {
            assert_eq!(parse_timestamp(text), want, "{text:?}");
        }
    }

    #[test]
    fn skips_what_is_no_timestamp() {
        for bad in [
            "",
            "2026-11-25",
            "2026-11-25T12:00",
            "2026-11-25T12:00:00.",
            "2026-11-25T12:00:00.1234567890",
            "2026-11-25T12:00:60.0",
            "2026-11-25T24:00:00.0",
            "2026-02-29T00:00:00.0",
            "0000-01-01T00:00:00.0",
            "2026-13-01T00:00:00.0",
            "26-11-25T12:00:00.000000",
            "2026-11-25t12:00:00",
            "2026-11-25T12:00:00 ",
            " 2026-11-25T12:00:00",
            "2026-11-25T12:00:00+",
            "2026-11-25T12:00:00+2",
            "2026-11-25T12:00:00+24:00",
            "2026-11-25T12:00:00+02:60",
            "2026-11-25T12:00:00+02:3",
            "2026-11-25T12:00:00+02:",
            "2026-11-25T12:00:00ZZ",
            "2026-11-25T12:00:00 UTC",
            "1795608000.5",
            "yesterday",
            "２０２６-11-25T12:00:00",
        ] {
            assert_eq!(parse_timestamp(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn msec_truncates_like_python() {
        assert_eq!(python_msec(0), 0);
        assert_eq!(python_msec(999), 0);
        assert_eq!(python_msec(1_375), 1);
        assert_eq!(python_msec(111_375), 111);
        assert_eq!(python_msec(-1), 0);
        assert_eq!(python_msec(-1_500), -1);
    }
}
