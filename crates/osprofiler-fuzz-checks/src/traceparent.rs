//! W3C `traceparent`: `TraceParent::decode` and `encode`.
//!
//! Input: the header value as text; the same bytes also make a `TraceParent` to encode.
//!
//! Properties: nothing panics; what decodes has non-zero ids, lowercase hex, and encodes
//! back to the (trimmed) input for version 00, less the flags we do not keep (only
//! `sampled` is); for later versions, to the same ids and flag; every encoding decodes to
//! itself; upper case, other separators and version `ff` are refused.

use arbitrary::Unstructured;
use osprofiler::TraceParent;
use osprofiler::propagation::TraceParentError;

/// Runs the properties on one input.
pub fn check(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    decoded(&text);
    generated(&mut Unstructured::new(data));
}

fn decoded(text: &str) {
    let Ok(tp) = TraceParent::decode(text) else {
        return;
    };
    assert!(
        tp.trace_id != 0 && tp.parent_id != 0,
        "an all-zero id decoded"
    );
    let input = text.trim();
    let out = tp.encode();
    assert_eq!(out.len(), 55);
    assert_eq!(
        TraceParent::decode(&out),
        Ok(tp),
        "encode does not decode to itself"
    );
    // Everything up to the flags is the input's, version aside.
    assert_eq!(out[3..53], input[3..53], "ids re-encode differently");
    assert!(
        !input[..55].bytes().any(|b| b.is_ascii_uppercase()),
        "upper case accepted: {input:?}"
    );
    let flags = u8::from_str_radix(&input[53..55], 16).expect("decoded flags are hex");
    assert_eq!(tp.sampled, flags & 1 == 1);
    if input.starts_with("00-") {
        assert_eq!(input.len(), 55, "version 00 with extra data accepted");
        if flags <= 1 {
            assert_eq!(out, input, "version 00 does not round-trip");
        }
    } else {
        assert_ne!(&input[..2], "ff", "version ff accepted");
        assert!(input.len() == 55 || input.as_bytes()[55] == b'-');
    }
}

fn generated(u: &mut Unstructured<'_>) {
    let tp = TraceParent {
        trace_id: u.arbitrary::<u128>().unwrap_or(1).max(1),
        parent_id: u.arbitrary::<u64>().unwrap_or(1).max(1),
        sampled: u.arbitrary().unwrap_or(false),
    };
    let s = tp.encode();
    assert_eq!(TraceParent::decode(&s), Ok(tp));
    assert_eq!(TraceParent::decode(&format!(" {s}\t")), Ok(tp));
    // A later version may carry more fields; 00 may not.
    assert_eq!(TraceParent::decode(&format!("01{}-x", &s[2..])), Ok(tp));
    assert_eq!(
        TraceParent::decode(&format!("{s}-x")),
        Err(TraceParentError::Version)
    );
    assert_eq!(
        TraceParent::decode(&format!("ff{}", &s[2..])),
        Err(TraceParentError::Version)
    );
    let upper = s.to_ascii_uppercase();
    if upper != s {
        assert_eq!(
            TraceParent::decode(&upper),
            Err(TraceParentError::Malformed)
        );
    }
    let at = u.int_in_range(0..=54).unwrap_or(2);
    let mut b = s.clone().into_bytes();
    b[at] = if b[at] == b'-' { b'0' } else { b'_' };
    assert!(TraceParent::decode(&String::from_utf8_lossy(&b)).is_err());
    let zero_trace = format!("00-{:032x}-{:016x}-01", 0, tp.parent_id);
    assert_eq!(
        TraceParent::decode(&zero_trace),
        Err(TraceParentError::ZeroId)
    );
}
