//! RESP2, the Redis protocol: commands are arrays of bulk strings; replies are read from a
//! buffered stream. Nothing here trusts the peer: lengths are bounded and a malformed reply
//! is an error, never a panic.

use std::io::{self, Read};

// No formatting machinery: this runs per event.
use osprofiler::private::push_decimal;

/// Largest bulk string accepted (Redis's own `proto-max-bulk-len` default).
const MAX_BULK: usize = 512 * 1024 * 1024;
/// Deepest nesting of arrays accepted (our commands get at most two levels back).
const MAX_DEPTH: usize = 8;
/// Longest status/error/length line accepted.
const MAX_LINE: usize = 64 * 1024;

/// One reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`
    Status(String),
    /// `-ERR …`
    Error(String),
    /// `:42`
    Int(i64),
    /// `$3\r\nabc`
    Bulk(Vec<u8>),
    /// `$-1` or `*-1`
    Nil,
    /// `*2\r\n…`
    Array(Vec<Reply>),
}

impl Reply {
    /// The bytes of a bulk or status reply.
    pub(crate) fn into_bytes(self) -> Option<Vec<u8>> {
        match self {
            Reply::Bulk(b) => Some(b),
            Reply::Status(s) => Some(s.into_bytes()),
            _ => None,
        }
    }

    /// The items of an array reply; nothing for any other reply.
    pub(crate) fn into_array(self) -> Vec<Reply> {
        match self {
            Reply::Array(a) => a,
            _ => Vec::new(),
        }
    }

    /// The text of a bulk or status reply.
    pub(crate) fn as_text(&self) -> Option<&str> {
        match self {
            Reply::Bulk(b) => std::str::from_utf8(b).ok(),
            Reply::Status(s) => Some(s),
            _ => None,
        }
    }
}

/// Why a reply could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RespError {
    /// The stream failed (or timed out).
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The peer closed the connection.
    #[error("connection closed by the server")]
    Closed,
    /// The peer sent something that is not RESP2.
    #[error("protocol error: {0}")]
    Protocol(String),
}

/// Appends `*<n>\r\n`.
pub(crate) fn array_header(out: &mut Vec<u8>, n: usize) {
    out.push(b'*');
    push_decimal(out, n as u64);
    out.extend_from_slice(b"\r\n");
}

/// Appends `$<len>\r\n` (the bulk's bytes and `\r\n` follow).
pub(crate) fn bulk_header(out: &mut Vec<u8>, len: usize) {
    out.push(b'$');
    push_decimal(out, len as u64);
    out.extend_from_slice(b"\r\n");
}

/// Appends one bulk string.
pub(crate) fn bulk(out: &mut Vec<u8>, data: &[u8]) {
    bulk_header(out, data.len());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// Appends a whole command.
pub(crate) fn command(out: &mut Vec<u8>, args: &[&[u8]]) {
    array_header(out, args.len());
    for a in args {
        bulk(out, a);
    }
}

/// Parses a RESP integer (`-?[0-9]+`), rejecting overflow.
fn parse_int(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, s),
    };
    if digits.is_empty() {
        return None;
    }
    let mut v: i64 = 0;
    for &c in digits {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_sub((c - b'0') as i64)?;
    }
    // Accumulated negatively so that i64::MIN parses.
    if neg { Some(v) } else { v.checked_neg() }
}

/// A buffered reader of replies over a stream (which it owns, so writes go through
/// [`RespReader::get_mut`]).
pub(crate) struct RespReader<R> {
    inner: R,
    buf: Vec<u8>,
    pos: usize,
    end: usize,
}

impl<R: Read> RespReader<R> {
    pub(crate) fn new(inner: R) -> RespReader<R> {
        RespReader {
            inner,
            buf: vec![0; 16 * 1024],
            pos: 0,
            end: 0,
        }
    }

    pub(crate) fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    /// Reads more bytes after the buffered ones, making room first.
    fn fill(&mut self) -> Result<(), RespError> {
        if self.pos == self.end {
            self.pos = 0;
            self.end = 0;
        } else if self.end == self.buf.len() {
            if self.pos > 0 {
                self.buf.copy_within(self.pos..self.end, 0);
                self.end -= self.pos;
                self.pos = 0;
            } else {
                let len = self.buf.len() * 2;
                self.buf.resize(len, 0);
            }
        }
        let n = loop {
            match self.inner.read(&mut self.buf[self.end..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(RespError::Io(e)),
            }
        };
        if n == 0 {
            return Err(RespError::Closed);
        }
        self.end += n;
        Ok(())
    }

    /// The next line without its `\r\n`, as a range of `buf`; consumed.
    fn line(&mut self) -> Result<(usize, usize), RespError> {
        let mut searched = self.pos;
        loop {
            if let Some(i) = self.buf[searched..self.end]
                .iter()
                .position(|&b| b == b'\n')
            {
                let nl = searched + i;
                let start = self.pos;
                // The same limit as below, whether the line came in one read or in many
                // (found by fuzzing: a 70 kB line passed only when read at once).
                if nl - start > MAX_LINE + 1 {
                    return Err(RespError::Protocol("reply line too long".into()));
                }
                if nl == start || self.buf[nl - 1] != b'\r' {
                    return Err(RespError::Protocol("line without CRLF".into()));
                }
                self.pos = nl + 1;
                return Ok((start, nl - 1));
            }
            // More than a line and its `\r` without a `\n`: too long, however it ends.
            if self.end - self.pos > MAX_LINE + 1 {
                return Err(RespError::Protocol("reply line too long".into()));
            }
            searched = self.end;
            let before = self.pos;
            self.fill()?;
            // `fill` may have moved the buffered bytes to the front.
            searched = searched - before + self.pos;
        }
    }

    /// Exactly `n` bytes followed by `\r\n`.
    fn bulk_body(&mut self, n: usize) -> Result<Vec<u8>, RespError> {
        let mut data = Vec::with_capacity(n.min(1 << 20));
        let buffered = (self.end - self.pos).min(n);
        data.extend_from_slice(&self.buf[self.pos..self.pos + buffered]);
        self.pos += buffered;
        if data.len() < n {
            // Large values bypass the buffer.
            let mut rest = (&mut self.inner).take((n - data.len()) as u64);
            rest.read_to_end(&mut data)?;
            if data.len() < n {
                return Err(RespError::Closed);
            }
        }
        while self.end - self.pos < 2 {
            self.fill()?;
        }
        if &self.buf[self.pos..self.pos + 2] != b"\r\n" {
            return Err(RespError::Protocol("bulk string without CRLF".into()));
        }
        self.pos += 2;
        Ok(data)
    }

    /// Reads one whole reply.
    pub(crate) fn read(&mut self) -> Result<Reply, RespError> {
        self.read_depth(0)
    }

    fn read_depth(&mut self, depth: usize) -> Result<Reply, RespError> {
        let (start, end) = self.line()?;
        let line = &self.buf[start..end];
        let Some((&kind, rest)) = line.split_first() else {
            return Err(RespError::Protocol("empty reply line".into()));
        };
        let text = || String::from_utf8_lossy(rest).into_owned();
        let int = |what: &str| {
            parse_int(rest).ok_or_else(|| {
                RespError::Protocol(format!("bad {what} {:?}", String::from_utf8_lossy(rest)))
            })
        };
        match kind {
            b'+' => Ok(Reply::Status(text())),
            b'-' => Ok(Reply::Error(text())),
            b':' => Ok(Reply::Int(int("integer")?)),
            b'$' => match int("bulk length")? {
                -1 => Ok(Reply::Nil),
                n if n < 0 || n as u64 > MAX_BULK as u64 => {
                    Err(RespError::Protocol(format!("bad bulk length {n}")))
                }
                n => Ok(Reply::Bulk(self.bulk_body(n as usize)?)),
            },
            b'*' => match int("array length")? {
                -1 => Ok(Reply::Nil),
                n if n < 0 => Err(RespError::Protocol(format!("bad array length {n}"))),
                _ if depth >= MAX_DEPTH => {
                    Err(RespError::Protocol("arrays nested too deep".into()))
                }
                n => {
                    let mut items = Vec::with_capacity((n as usize).min(4096));
                    for _ in 0..n {
                        items.push(self.read_depth(depth + 1)?);
                    }
                    Ok(Reply::Array(items))
                }
            },
            other => Err(RespError::Protocol(format!(
                "unknown reply type {:?}",
                other as char
            ))),
        }
    }
}

/// The parser as the fuzz targets reach it (`osprofiler_store::__fuzz`): not an API.
#[doc(hidden)]
pub mod fuzz {
    use std::io::{self, Read};

    /// A reply, as the parser reads it.
    pub use super::Reply;

    /// A stream handing out at most `chunk` bytes per read.
    struct Chunked<'a> {
        data: &'a [u8],
        chunk: usize,
    }

    impl Read for Chunked<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let n = self.chunk.min(out.len()).min(self.data.len());
            let (now, rest) = self.data.split_at(n);
            out[..n].copy_from_slice(now);
            self.data = rest;
            Ok(n)
        }
    }

    /// The replies in `data`, read through a buffer of `buf_len` bytes (0: the default)
    /// from a stream handing out at most `chunk` bytes per read (0: no limit), and the
    /// error that stopped the reading (`None`: the data ran out, mid-reply or not).
    pub fn read_all(data: &[u8], buf_len: usize, chunk: usize) -> (Vec<Reply>, Option<String>) {
        let chunk = if chunk == 0 { usize::MAX } else { chunk };
        let mut r = super::RespReader::new(Chunked { data, chunk });
        if buf_len > 0 {
            r.buf = vec![0; buf_len];
        }
        let mut out = Vec::new();
        loop {
            match r.read() {
                Ok(v) => out.push(v),
                Err(super::RespError::Closed) => return (out, None),
                Err(e) => return (out, Some(e.to_string())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that hands out one byte per read, to exercise every refill path.
    struct Trickle<'a>(&'a [u8]);

    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            match (self.0.split_first(), out.first_mut()) {
                (Some((b, rest)), Some(o)) => {
                    *o = *b;
                    self.0 = rest;
                    Ok(1)
                }
                _ => Ok(0),
            }
        }
    }

    fn parse_all(bytes: &[u8]) -> Vec<Result<Reply, String>> {
        let mut out = Vec::new();
        for trickle in [false, true] {
            let mut r: RespReader<Box<dyn Read>> = RespReader::new(if trickle {
                Box::new(Trickle(bytes))
            } else {
                Box::new(bytes)
            });
            r.buf = vec![0; 4]; // tiny, so lines and bulks straddle refills
            let mut got = Vec::new();
            loop {
                match r.read() {
                    Ok(v) => got.push(Ok(v)),
                    Err(RespError::Closed) => break,
                    Err(e) => {
                        got.push(Err(e.to_string()));
                        break;
                    }
                }
            }
            out.push(got);
        }
        assert_eq!(out[0], out[1], "same result whatever the read sizes");
        out.swap_remove(0)
    }

    #[test]
    fn parses_replies() {
        use Reply::*;
        let got = parse_all(
            b"+OK\r\n-ERR bad\r\n:-12\r\n$-1\r\n*-1\r\n$0\r\n\r\n$4\r\na\r\nb\r\n\
              *3\r\n$1\r\nx\r\n*1\r\n:1\r\n$-1\r\n:9223372036854775807\r\n:-9223372036854775808\r\n",
        );
        let want = vec![
            Status("OK".into()),
            Error("ERR bad".into()),
            Int(-12),
            Nil,
            Nil,
            Bulk(vec![]),
            Bulk(b"a\r\nb".to_vec()),
            Array(vec![Bulk(b"x".to_vec()), Array(vec![Int(1)]), Nil]),
            Int(i64::MAX),
            Int(i64::MIN),
        ];
        assert_eq!(got, want.into_iter().map(Ok).collect::<Vec<_>>());
    }

    #[test]
    fn rejects_garbage_without_panicking() {
        let cases: [&[u8]; 10] = [
            b"$5\r\nab\r\n",
            b"?x\r\n",
            b":12a\r\n",
            b":99999999999999999999\r\n",
            b"$-2\r\n",
            b"$999999999999\r\n",
            b"*-5\r\n",
            b"+no-cr\n",
            b"\r\n",
            b"$3\r\nabcXY",
        ];
        for case in cases {
            let got = parse_all(case);
            assert!(
                got.last().is_some_and(|r| r.is_err()) || got.is_empty(),
                "{:?}: {got:?}",
                String::from_utf8_lossy(case)
            );
        }
        // Deep nesting is refused, not recursed into.
        let deep = b"*1\r\n".repeat(100);
        assert!(parse_all(&deep).last().is_some_and(|r| r.is_err()));
        // A truncated reply is "closed", not a reply.
        assert!(parse_all(b"*2\r\n:1\r\n").is_empty());
    }

    #[test]
    fn encodes_commands() {
        let mut out = Vec::new();
        command(&mut out, &[b"LPUSH", b"k", b""]);
        assert_eq!(out, b"*3\r\n$5\r\nLPUSH\r\n$1\r\nk\r\n$0\r\n\r\n");
        for n in [0u64, 7, 10, 4096, u64::MAX] {
            let mut s = Vec::new();
            push_decimal(&mut s, n);
            assert_eq!(s, n.to_string().as_bytes());
        }
        assert_eq!(parse_int(b"-0"), Some(0));
        assert_eq!(parse_int(b"-"), None);
        assert_eq!(parse_int(b""), None);
    }
}
