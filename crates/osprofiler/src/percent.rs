//! Percent-decoding (`%XX`), for gRPC's `grpc-message` here and for the
//! connection strings of `osprofiler-store`.

/// `s` with its `%XX` escapes decoded. A `%` not followed by two hex digits is
/// an error (`None`) when `strict` (URLs), and kept as it is otherwise (gRPC
/// asks receivers to be lenient).
pub fn percent_decode(s: &[u8], strict: bool) -> Option<Vec<u8>> {
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            if let (Some(h), Some(l)) = (
                s.get(i + 1).copied().and_then(hex),
                s.get(i + 2).copied().and_then(hex),
            ) {
                out.push((h << 4) | l);
                i += 3;
                continue;
            }
            if strict {
                return None;
            }
        }
        out.push(s[i]);
        i += 1;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::percent_decode;

    #[test]
    fn decodes_escapes_strictly_or_leniently() {
        assert_eq!(
            percent_decode(b"caf%C3%A9", true).unwrap(),
            "café".as_bytes()
        );
        assert_eq!(percent_decode(b"a%20b%zz%4", false).unwrap(), b"a b%zz%4");
        assert_eq!(percent_decode(b"a%2", true), None);
        assert_eq!(percent_decode(b"%zz", true), None);
        // A sign is not a hex digit (`u8::from_str_radix` would take `+1`).
        assert_eq!(percent_decode(b"%+1", true), None);
        assert_eq!(percent_decode(b"%", false).unwrap(), b"%");
    }
}
