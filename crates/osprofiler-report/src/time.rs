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
    // One parser for every crate: the core's, which accepts the forms above.
    s.parse::<osprofiler::Timestamp>().ok().map(|t| t.0)
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
