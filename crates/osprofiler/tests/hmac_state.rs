//! The key's HMAC state is made once per key, not per request: verifying a signed
//! pair under a 1 MiB key costs what it costs under a short one. Keying HMAC-SHA1
//! with a key longer than a block hashes the whole key, so a per-request keying
//! would cost about a thousand times more here; the test measures that cost too, in
//! the same run, so that it shows it could tell the two apart.

use std::hint::black_box;
use std::time::{Duration, Instant};

use osprofiler::propagation::verify_trace_headers;
use osprofiler::{HmacKey, HmacKeys, Id, TraceHeaders};

const ROUNDS: usize = 5;
const PER_ROUND: usize = 50;

/// The fastest of a few rounds of `PER_ROUND` calls: the least disturbed by a busy machine.
fn fastest(mut f: impl FnMut()) -> Duration {
    (0..ROUNDS)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..PER_ROUND {
                f();
            }
            t.elapsed()
        })
        .min()
        .unwrap_or_default()
}

fn verify_cost(secret: &str) -> Duration {
    let key = HmacKey::new(secret).expect("key");
    let keys = HmacKeys::parse(secret);
    assert_eq!(keys.len(), 1);
    let h = TraceHeaders::sign(Id::new_v4(), Id::new_v4(), &key);
    assert!(verify_trace_headers(&h.info, &h.hmac, &keys).is_some());
    fastest(|| {
        black_box(verify_trace_headers(
            black_box(&h.info),
            black_box(&h.hmac),
            &keys,
        ));
    })
}

#[test]
fn the_hmac_state_is_made_once_per_key() {
    let long = "k".repeat(1 << 20);
    let short_cost = verify_cost("SECRET_KEY");
    let long_cost = verify_cost(&long);
    // The control: what keying once per request would cost with the long key.
    let rekey_cost = fastest(|| {
        black_box(HmacKey::new(black_box(&long)));
    });
    println!(
        "{PER_ROUND} verifications: short key {short_cost:?}, 1 MiB key {long_cost:?}; \
         {PER_ROUND} keyings with the 1 MiB key {rekey_cost:?}"
    );
    assert!(
        rekey_cost > short_cost * 20,
        "the control cannot tell: keying {rekey_cost:?} vs verifying {short_cost:?}"
    );
    assert!(
        long_cost < short_cost * 4,
        "verifying under a 1 MiB key took {long_cost:?} per {PER_ROUND}, under a short one \
         {short_cost:?}: the key is processed per request (keying alone: {rekey_cost:?})"
    );
}
