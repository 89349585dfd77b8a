//! Trace and point identifiers: UUIDs held as `u128`, printed as osprofiler does.

use std::fmt;
use std::str::FromStr;

use crate::digits::{hex_u128, write_hex};

/// A trace or point identifier: a UUID, printed lowercase and hyphenated
/// (`6f1c2b1e-8a5d-4c1e-9f0b-3d2a1c0b9e8f`) as osprofiler's `uuid4` ids are.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Id(pub u128);

/// The error of [`Id::from_str`]: the text is not a hyphenated UUID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a hyphenated UUID: {0:?}")]
pub struct ParseIdError(pub String);

impl Id {
    /// A fresh random version-4 id, as osprofiler makes for a new trace.
    ///
    /// From a per-thread generator seeded once from the OS (a system call per
    /// trace cost more than the rest of a short trace).
    ///
    /// After `fork()` (without `exec`), the child's copy of the forking thread
    /// carries on from the same generator state as the parent's thread, so both
    /// make the same next ids (trace ids here, point ids in `local.rs`). No cheap
    /// safe guard exists: noticing the fork means a `getpid` system call per trace,
    /// or an `unsafe` `pthread_atfork` hook, which the workspace forbids. A forked
    /// child should trace from threads it starts itself (each seeds its own
    /// generators from the OS), or `exec`.
    pub fn new_v4() -> Id {
        let (hi, lo) = RNG
            .try_with(|c| {
                let (a, b) = match c.get() {
                    Some((a, b)) => (a.wrapping_add(WY0), b.wrapping_add(WY0)),
                    None => (random_u64(), random_u64()),
                };
                c.set(Some((a, b)));
                (wymix(a), wymix(b))
            })
            // The thread is exiting: straight from the OS.
            .unwrap_or_else(|_| (random_u64(), random_u64()));
        Id(with_v4_bits(hi, lo))
    }

    /// The low 64 bits: the span id OpenTracing, Jaeger, OTLP and W3C
    /// `traceparent` use for this point (osprofiler's `shorten_id`).
    pub fn low64(self) -> u64 {
        self.0 as u64
    }

    /// Writes the 36-byte hyphenated form into `out`.
    pub fn write_hyphenated(self, out: &mut [u8; 36]) {
        let b = self.0.to_be_bytes();
        write_hex(&mut out[..8], &b[..4]);
        write_hex(&mut out[9..13], &b[4..6]);
        write_hex(&mut out[14..18], &b[6..8]);
        write_hex(&mut out[19..23], &b[8..10]);
        write_hex(&mut out[24..], &b[10..]);
        for at in [8, 13, 18, 23] {
            out[at] = b'-';
        }
    }

    /// The 32 lowercase hex digits without hyphens (a W3C trace id).
    pub fn simple(self) -> String {
        // Only ASCII hex digits.
        String::from_utf8(hex_u128(self.0).to_vec()).unwrap_or_default()
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; 36];
        self.write_hyphenated(&mut buf);
        // Only ASCII hex digits and hyphens were written.
        f.write_str(std::str::from_utf8(&buf).unwrap_or_default())
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Id({self})")
    }
}

impl FromStr for Id {
    type Err = ParseIdError;

    /// Accepts only the canonical lowercase hyphenated form, which is what
    /// osprofiler writes: another spelling of the same UUID would name a
    /// different trace in a store keyed by the text.
    fn from_str(s: &str) -> Result<Id, ParseIdError> {
        let b = s.as_bytes();
        if b.len() != 36 {
            return Err(ParseIdError(s.to_owned()));
        }
        let mut v: u128 = 0;
        for (i, &c) in b.iter().enumerate() {
            if matches!(i, 8 | 13 | 18 | 23) {
                if c != b'-' {
                    return Err(ParseIdError(s.to_owned()));
                }
                continue;
            }
            let Some(d) = crate::digits::hex_value(c) else {
                return Err(ParseIdError(s.to_owned()));
            };
            v = (v << 4) | d as u128;
        }
        Ok(Id(v))
    }
}

impl serde::Serialize for Id {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut buf = [0u8; 36];
        self.write_hyphenated(&mut buf);
        s.serialize_str(std::str::from_utf8(&buf).unwrap_or_default())
    }
}

impl<'de> serde::Deserialize<'de> for Id {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Id, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

thread_local! {
    // Two wyrand states stepped together, each seeded from the OS on the
    // thread's first id: two threads repeat an id only if both halves of their
    // states meet at the same step (about N / 2^64 for N ids each).
    static RNG: std::cell::Cell<Option<(u64, u64)>> = const { std::cell::Cell::new(None) };
}

const WY0: u64 = 0xa076_1d64_78bd_642f;
const WY1: u64 = 0xe703_7ed1_a0b4_28db;

/// wyrand's output function: 64 well-mixed bits of a state.
#[inline]
fn wymix(s: u64) -> u64 {
    let t = u128::from(s).wrapping_mul(u128::from(s ^ WY1));
    ((t >> 64) as u64) ^ (t as u64)
}

/// Sets the version (4) and variant (RFC 4122) bits so the id is a valid uuid4.
fn with_v4_bits(hi: u64, lo: u64) -> u128 {
    let hi = (hi & !0xf000) | 0x4000;
    let lo = (lo & 0x3fff_ffff_ffff_ffff) | 0x8000_0000_0000_0000;
    ((hi as u128) << 64) | lo as u128
}

/// 64 random bits from the OS; if the OS source fails, from std's randomly
/// keyed hasher (still unpredictable, never a panic).
pub(crate) fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    match getrandom::getrandom(&mut bytes) {
        Ok(()) => u64::from_ne_bytes(bytes),
        Err(_) => {
            use std::hash::{BuildHasher, Hasher};
            use std::sync::atomic::{AtomicU64, Ordering};
            static N: AtomicU64 = AtomicU64::new(0);
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(N.fetch_add(1, Ordering::Relaxed));
            if let Ok(d) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
                h.write_u128(d.as_nanos());
            }
            h.finish()
        }
    }
}

/// Point ids need no RNG per point: a random per-thread high half and a
/// per-thread counter started at a random value in the low half. The low half
/// alone (the OpenTracing/W3C span id) is then unique within a trace unless
/// two threads' counters were started within a trace's length of each other.
/// The next id from a per-thread `(high half, next low half)` state, seeding
/// it on first use (a seeded high half is never 0).
#[inline]
pub(crate) fn next_from(state: &mut (u64, u64)) -> u128 {
    if state.0 == 0 {
        *state = ((random_u64() & !0xf000) | 0x4000, random_u64());
    }
    let (hi, lo) = *state;
    state.1 = lo.wrapping_add(1);
    with_v4_bits(hi, lo)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_canonical_form() {
        let s = "6f1c2b1e-8a5d-4c1e-9f0b-3d2a1c0b9e8f";
        let id: Id = s.parse().unwrap();
        assert_eq!(id.to_string(), s);
        assert_eq!(id.simple(), "6f1c2b1e8a5d4c1e9f0b3d2a1c0b9e8f");
        assert_eq!(id.low64(), 0x9f0b_3d2a_1c0b_9e8f);
        for bad in [
            "6F1C2B1E-8A5D-4C1E-9F0B-3D2A1C0B9E8F",
            "6f1c2b1e8a5d4c1e9f0b3d2a1c0b9e8f",
            "6f1c2b1e-8a5d-4c1e-9f0b-3d2a1c0b9e8",
            "6f1c2b1e-8a5d-4c1e-9f0b_3d2a1c0b9e8f",
            "",
        ] {
            assert!(bad.parse::<Id>().is_err(), "{bad}");
        }
    }

    #[test]
    fn generated_ids_are_uuid4_and_distinct() {
        let mut seen = std::collections::HashSet::new();
        let mut state = (0, 0);
        for _ in 0..10_000 {
            let a = Id(next_from(&mut state));
            let s = a.to_string();
            assert_eq!(&s[14..15], "4", "{s}");
            assert!(matches!(&s[19..20], "8" | "9" | "a" | "b"), "{s}");
            assert!(seen.insert(a.low64()));
        }
        let b = Id::new_v4().to_string();
        assert_eq!(&b[14..15], "4");
        let mut other = (0, 0);
        assert_ne!(next_from(&mut other) >> 64, next_from(&mut state) >> 64);
    }

    #[test]
    fn trace_ids_are_uuid4_distinct_and_differ_between_threads() {
        let here: Vec<Id> = (0..10_000).map(|_| Id::new_v4()).collect();
        let there: Vec<Id> = std::thread::spawn(|| (0..10_000).map(|_| Id::new_v4()).collect())
            .join()
            .unwrap();
        let mut seen = std::collections::HashSet::new();
        for id in here.iter().chain(&there) {
            let s = id.to_string();
            assert_eq!(&s[14..15], "4", "{s}");
            assert!(matches!(&s[19..20], "8" | "9" | "a" | "b"), "{s}");
            assert!(seen.insert(*id), "repeated {s}");
        }
        assert!(here.windows(2).all(|w| w[0].0 >> 64 != w[1].0 >> 64));
        // Bits look uniform: each of the 122 random bits is set in about half the ids.
        for bit in (0..128).filter(|b| !(76..80).contains(b) && !(62..64).contains(b)) {
            let ones = here.iter().filter(|id| id.0 >> bit & 1 == 1).count();
            assert!((4_500..5_500).contains(&ones), "bit {bit}: {ones} of 10000");
        }
    }
}
