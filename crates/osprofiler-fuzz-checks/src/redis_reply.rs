//! The RESP2 reply parser of the Redis driver (`osprofiler_store::__fuzz`).
//!
//! Input: the bytes a server sends; the same bytes also make a reply to write and read back.
//!
//! Properties: nothing panics; the replies and the error do not depend on how the stream
//! hands out its bytes or on the size of the reader's buffer; what was read writes back
//! (RESP2) to bytes that read as the same replies; a generated reply reads back as itself;
//! a huge declared length (`$999999999`, `*999999999`) allocates nothing near it (the fuzz
//! runs cap single allocations, the stable replay caps the heap).

use arbitrary::Unstructured;
use osprofiler_store::__fuzz::{Reply, read_all};

/// Runs the properties on one input.
pub fn check(data: &[u8]) {
    let whole = read_all(data, 0, 0);
    for (buf, chunk) in [(4, 1), (7, 3), (1, 0), (64, 5)] {
        let other = read_all(data, buf, chunk);
        assert!(
            other == whole,
            "the result depends on the reads (buffer {buf}, chunk {chunk}): {} replies and {:?}, against {} and {:?}",
            other.0.len(),
            other.1,
            whole.0.len(),
            whole.1
        );
    }
    let (replies, _) = &whole;
    // A status line may grow when written back (invalid UTF-8 read as U+FFFD), beyond the
    // parser's longest line: those are not expected to read back.
    if replies.iter().all(short_lines) {
        let mut bytes = Vec::new();
        for r in replies {
            write(&mut bytes, r);
        }
        let (again, error) = read_all(&bytes, 0, 0);
        assert_eq!(error, None, "written replies do not read back");
        assert!(&again == replies, "written replies read back differently");
    }

    let mut u = Unstructured::new(data);
    let reply = generate(&mut u, 0);
    let mut bytes = Vec::new();
    write(&mut bytes, &reply);
    assert_eq!(read_all(&bytes, 0, 0), (vec![reply.clone()], None));
    assert_eq!(read_all(&bytes, 4, 1), (vec![reply], None));

    // A length declared far beyond the data: the data runs out, no memory is taken for it.
    for header in [
        &b"$999999999\r\n"[..],
        b"*999999999\r\n",
        b"*2147483647\r\n*999999999\r\n",
    ] {
        let mut d = header.to_vec();
        d.extend_from_slice(&data[..data.len().min(64)]);
        let _ = read_all(&d, 0, 0);
    }
}

/// Whether every status and error line of `r` is well within the parser's 64 KiB.
fn short_lines(r: &Reply) -> bool {
    match r {
        Reply::Status(s) | Reply::Error(s) => s.len() < 60_000,
        Reply::Array(items) => items.iter().all(short_lines),
        _ => true,
    }
}

/// RESP2 text of a reply.
fn write(out: &mut Vec<u8>, r: &Reply) {
    match r {
        Reply::Status(s) => line(out, b'+', s.as_bytes()),
        Reply::Error(s) => line(out, b'-', s.as_bytes()),
        Reply::Int(i) => line(out, b':', i.to_string().as_bytes()),
        Reply::Bulk(b) => {
            line(out, b'$', b.len().to_string().as_bytes());
            out.extend_from_slice(b);
            out.extend_from_slice(b"\r\n");
        }
        Reply::Nil => out.extend_from_slice(b"$-1\r\n"),
        Reply::Array(items) => {
            line(out, b'*', items.len().to_string().as_bytes());
            for i in items {
                write(out, i);
            }
        }
    }
}

fn line(out: &mut Vec<u8>, kind: u8, text: &[u8]) {
    out.push(kind);
    out.extend_from_slice(text);
    out.extend_from_slice(b"\r\n");
}

/// A reply the parser takes: arrays at most 8 deep, status lines without a line feed.
fn generate(u: &mut Unstructured<'_>, depth: usize) -> Reply {
    let text = |u: &mut Unstructured<'_>| {
        let s: String = u.arbitrary().unwrap_or_default();
        // Well within the parser's longest line.
        s.chars()
            .filter(|&c| c != '\n')
            .take(1000)
            .collect::<String>()
    };
    match u.int_in_range(0..=5).unwrap_or(4) {
        0 => Reply::Status(text(u)),
        1 => Reply::Error(text(u)),
        2 => Reply::Int(u.arbitrary().unwrap_or(0)),
        3 => Reply::Bulk(u.arbitrary().unwrap_or_default()),
        5 if depth < 7 => {
            let n = u.int_in_range(0..=6).unwrap_or(0);
            Reply::Array((0..n).map(|_| generate(u, depth + 1)).collect())
        }
        _ => Reply::Nil,
    }
}
