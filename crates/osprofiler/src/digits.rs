//! Hex and decimal digits written straight into byte buffers: ids, timestamps and
//! counts are written per event by the sinks, where `format!` would cost more than
//! the rest of the event. One copy for the workspace (the store and the CLI reach it
//! through [`crate::private`]).

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The value of a lowercase hex digit (what every writer here and Python's
/// `hexdigest()` write; an upper-case digit is not the same signature).
#[inline]
pub fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// `N` bytes from exactly `2 * N` lowercase hex digits (a digest, say).
pub fn decode_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    let b = s.as_bytes();
    if b.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (o, pair) in out.iter_mut().zip(b.chunks_exact(2)) {
        *o = (hex_value(pair[0])? << 4) | hex_value(pair[1])?;
    }
    Some(out)
}

/// Writes `bytes` as lowercase hex, two digits a byte, into the start of `out`
/// (fixed width: leading zeros kept). Stops at the end of the shorter of the two.
#[inline]
pub fn write_hex(out: &mut [u8], bytes: &[u8]) {
    for (pair, &b) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = HEX[usize::from(b >> 4)];
        pair[1] = HEX[usize::from(b & 0xf)];
    }
}

/// The 16 lowercase hex digits of `v`, leading zeros kept (`{v:016x}`).
#[inline]
pub fn hex_u64(v: u64) -> [u8; 16] {
    let mut out = [0u8; 16];
    write_hex(&mut out, &v.to_be_bytes());
    out
}

/// The 32 lowercase hex digits of `v`, leading zeros kept (`{v:032x}`).
#[inline]
pub fn hex_u128(v: u128) -> [u8; 32] {
    let mut out = [0u8; 32];
    write_hex(&mut out, &v.to_be_bytes());
    out
}

/// Lowercase hex of `bytes` as text (a digest, say).
pub fn hex_string(bytes: &[u8]) -> String {
    let mut out = vec![0u8; 2 * bytes.len()];
    write_hex(&mut out, bytes);
    // Only ASCII hex digits were written.
    String::from_utf8(out).unwrap_or_default()
}

/// The decimal digits of `n`, written at the end of `buf`.
#[inline]
pub fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    // u64::MAX has 20 digits: `i` stays in 1..=20 and reaches 0 only after the last one.
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

/// Appends the decimal digits of `n`.
#[inline]
pub fn push_decimal(out: &mut Vec<u8>, n: u64) {
    let mut buf = [0u8; 20];
    out.extend_from_slice(decimal(n, &mut buf));
}

/// Appends `n` in decimal, with a `-` when negative.
#[inline]
pub fn push_decimal_i64(out: &mut Vec<u8>, n: i64) {
    if n < 0 {
        out.push(b'-');
    }
    push_decimal(out, n.unsigned_abs());
}

/// Writes the last `out.len()` decimal digits of `v` into `out`, zero-padded (fixed
/// width: a timestamp's fields, a fraction's six digits). `u32`: its division by ten
/// is cheaper than `u64`'s, and fixed fields are short.
#[inline]
pub fn write_decimal_fixed(out: &mut [u8], mut v: u32) {
    for d in out.iter_mut().rev() {
        *d = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_matches_format() {
        for v in [0u64, 1, 0xf, 0x10, 0x9f0b_3d2a_1c0b_9e8f, u64::MAX] {
            assert_eq!(hex_u64(v), format!("{v:016x}").as_bytes());
            let w = u128::from(v) << 64 | 0xabc;
            assert_eq!(hex_u128(w), format!("{w:032x}").as_bytes());
        }
        assert_eq!(hex_string(&[0, 0x0f, 0xa0, 0xff]), "000fa0ff");
        assert_eq!(hex_string(&[]), "");
        // A short buffer takes what fits, a long one keeps its tail.
        let mut short = [b'.'; 3];
        write_hex(&mut short, &[0x12, 0x34]);
        assert_eq!(&short, b"12.");
    }

    #[test]
    fn decimal_matches_format() {
        for n in [0u64, 7, 10, 99, 100, 1_764_072_000, u64::MAX] {
            let mut buf = [0u8; 20];
            assert_eq!(decimal(n, &mut buf), n.to_string().as_bytes());
            let mut out = b"x".to_vec();
            push_decimal(&mut out, n);
            assert_eq!(out, format!("x{n}").as_bytes());
        }
        for n in [0i64, -1, 42, i64::MIN, i64::MAX] {
            let mut out = Vec::new();
            push_decimal_i64(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
        let mut six = [0u8; 6];
        write_decimal_fixed(&mut six, 1375);
        assert_eq!(&six, b"001375");
        write_decimal_fixed(&mut six, 12_345_678);
        assert_eq!(&six, b"345678");
    }
}
