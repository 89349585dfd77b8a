//! Verifying a request's signature: the key's HMAC state is computed once per key, when
//! the key is made ([`HmacKey::new`]), and cloned per request; side by side with keying a
//! fresh HMAC-SHA1 per request, as a naive receiver (and Python's `hmac.new`) does.
//! `cargo bench -p osprofiler --bench hmac`.
//!
//! - `verify/precomputed`: `verify_trace_headers` with three configured keys, the third
//!   matching (each key tried in order, each compared in constant time).
//! - `verify/rekeyed_per_request`: the same three HMACs, each keyed from its text first,
//!   then the same decoding of the info.
//! - `reject/*`: a forged signature, every key tried.

use divan::{Bencher, black_box};
use hmac::Mac;
use osprofiler::propagation::verify_trace_headers;
use osprofiler::{HmacKey, HmacKeys, Id, TraceHeaders};

type HmacSha1 = hmac::Hmac<sha1::Sha1>;

fn main() {
    divan::main();
}

const KEYS: [&str; 3] = ["OLD_KEY", "ROTATED_KEY", "SECRET_KEY"];

fn signed() -> TraceHeaders {
    let base: Id = "11111111-1111-4111-8111-111111111111"
        .parse()
        .expect("uuid");
    TraceHeaders::sign(base, base, &HmacKey::new(KEYS[2]).expect("key"))
}

/// What a receiver keying per request does: key, hash, compare (constant time), then
/// decode the info as `verify_trace_headers` does, so that the two differ by the keying
/// alone.
fn rekeyed(info: &str, hmac: &str) -> bool {
    use base64::Engine;
    if !rekeyed_hmac(info, hmac) {
        return false;
    }
    let Ok(raw) = base64::engine::general_purpose::URL_SAFE.decode(info) else {
        return false;
    };
    let Ok(data) = serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&raw)
    else {
        return false;
    };
    data.values()
        .all(|v| v.as_str().is_some_and(|s| s.parse::<Id>().is_ok()))
}

fn rekeyed_hmac(info: &str, hmac: &str) -> bool {
    let Some(tag) = (0..20)
        .map(|i| u8::from_str_radix(hmac.get(2 * i..2 * i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()
    else {
        return false;
    };
    KEYS.iter().any(|k| {
        let Ok(mut mac) = HmacSha1::new_from_slice(k.as_bytes()) else {
            return false;
        };
        mac.update(info.as_bytes());
        mac.verify_slice(&tag).is_ok()
    })
}

#[divan::bench_group]
mod verify {
    use super::*;

    #[divan::bench]
    fn precomputed(b: Bencher) {
        let keys: HmacKeys = KEYS.iter().collect();
        let h = signed();
        b.bench(|| verify_trace_headers(black_box(&h.info), black_box(&h.hmac), &keys).is_some());
    }

    #[divan::bench]
    fn rekeyed_per_request(b: Bencher) {
        let h = signed();
        b.bench(|| rekeyed(black_box(&h.info), black_box(&h.hmac)));
    }
}

#[divan::bench_group]
mod reject {
    use super::*;

    #[divan::bench]
    fn precomputed(b: Bencher) {
        let keys: HmacKeys = KEYS.iter().collect();
        let h = signed();
        let forged = "0".repeat(40);
        b.bench(|| verify_trace_headers(black_box(&h.info), black_box(&forged), &keys).is_none());
    }

    #[divan::bench]
    fn rekeyed_per_request(b: Bencher) {
        let h = signed();
        let forged = "0".repeat(40);
        b.bench(|| !rekeyed(black_box(&h.info), black_box(&forged)));
    }
}
