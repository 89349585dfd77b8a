//! Timestamps as osprofiler writes them: naive UTC, `%Y-%m-%dT%H:%M:%S.%f`.

use std::fmt;
use std::str::FromStr;

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
        let mut put = |pos: usize, v: u32, width: usize| {
            let mut v = v;
            for i in (0..width).rev() {
                buf[pos + i] = b'0' + (v % 10) as u8;
                v /= 10;
            }
        };
        put(0, y.clamp(0, 9999) as u32, 4);
        put(5, m, 2);
        put(8, d, 2);
        put(11, sod / 3600, 2);
        put(14, sod / 60 % 60, 2);
        put(17, sod % 60, 2);
        put(20, micros, 6);
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

    /// Parses `YYYY-MM-DDTHH:MM:SS[.f{1,6}]` (Python's `%f` takes one to six digits).
    fn from_str(s: &str) -> Result<Timestamp, ParseTimestampError> {
        let err = || ParseTimestampError(s.to_owned());
        let b = s.as_bytes();
        if b.len() < 19 {
            return Err(err());
        }
        let num = |r: std::ops::Range<usize>| -> Result<i64, ParseTimestampError> {
            let mut v = 0i64;
            for &c in &b[r] {
                if !c.is_ascii_digit() {
                    return Err(err());
                }
                v = v * 10 + (c - b'0') as i64;
            }
            Ok(v)
        };
        if b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
            return Err(err());
        }
        let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
        let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
        if !(1..=12).contains(&mo)
            || d < 1
            || d > days_in_month(y, mo)
            || h > 23
            || mi > 59
            || sec > 59
        {
            return Err(err());
        }
        let mut micros = 0;
        if b.len() > 19 {
            let frac = &b[20..];
            if b[19] != b'.' || frac.is_empty() || frac.len() > 6 {
                return Err(err());
            }
            micros = num(20..b.len())? * 10i64.pow(6 - frac.len() as u32);
        }
        let days = days_from_civil(y, mo as u32, d as u32);
        Ok(Timestamp(
            ((days * 86_400) + h * 3600 + mi * 60 + sec) * 1_000_000 + micros,
        ))
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
        for bad in [
            "2023-02-29T00:00:00.0",
            "2026-11-25 12:00:00.0",
            "2026-11-25T12:00:00.",
            "2026-11-25T12:00:00.1234567",
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
