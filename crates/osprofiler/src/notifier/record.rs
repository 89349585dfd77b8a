//! What a traced thread records: [`Record`]s, 96 bytes each, handed to the
//! exporter in batches and made into events there.

use std::borrow::Cow;

use serde::Serialize;
use serde::ser::SerializeMap;
use serde_json::{Map, Value};

use crate::info::{Field, Info};

/// What a point records; written as `info` JSON by the sink, so neither the
/// traced thread nor the exporter builds JSON maps.
#[derive(Clone)]
pub(crate) enum Payload {
    /// Free-form info (`start(name, info)`, `stop(info)`).
    Info(Info),
    /// A traced function's start: `info.function = {name, args, kwargs}`.
    Function {
        info: Option<Info>,
        name: &'static str,
        args: Option<String>,
    },
    /// A traced function's shown result: `info.function.result`.
    Result(String),
    /// A failure at stop: `info.etype` and `info.message`.
    Error {
        etype: Cow<'static, str>,
        message: String,
    },
    /// A point whose future was dropped before it finished.
    Cancelled,
    /// An HTTP server point's start: `info.request` (and `info.function` for
    /// gRPC), kept as the request gave it; its JSON is made on the exporter thread.
    Request(Box<RequestInfo>),
    /// An HTTP server point's stop: `info.response` and, on failure, `info.etype`
    /// and `info.message`.
    Response(ResponseInfo),
}

/// What an HTTP server point records of its request: one allocation (the path
/// and query), against a dozen for the same JSON as `serde_json` maps.
#[derive(Clone, Debug)]
pub(crate) struct RequestInfo {
    /// The path, then the query.
    pub(crate) path_query: Box<str>,
    pub(crate) path_len: usize,
    pub(crate) method: Cow<'static, str>,
    pub(crate) scheme: Cow<'static, str>,
    pub(crate) port: u16,
    /// gRPC: `info.function.name` is the path as `pkg.Service.Method`.
    pub(crate) grpc: bool,
}

/// What an HTTP server point records at its stop.
#[derive(Clone, Debug, Default)]
pub(crate) struct ResponseInfo {
    pub(crate) status: Option<u16>,
    pub(crate) grpc_status: Option<i32>,
    pub(crate) error: Option<(Cow<'static, str>, String)>,
}

impl RequestInfo {
    pub(crate) fn path(&self) -> &str {
        self.path_query.get(..self.path_len).unwrap_or_default()
    }

    pub(crate) fn query(&self) -> &str {
        self.path_query.get(self.path_len..).unwrap_or_default()
    }

    /// Writes `request` (and `function`) as the layer's `Info` maps did.
    pub(crate) fn serialize_entries<M: SerializeMap>(&self, m: &mut M) -> Result<(), M::Error> {
        m.serialize_entry("request", &RequestJson(self))?;
        if self.grpc {
            m.serialize_entry("function", &GrpcFunction(self.path()))?;
        }
        Ok(())
    }
}

struct RequestJson<'a>(&'a RequestInfo);

impl Serialize for RequestJson<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.0;
        let mut m = s.serialize_map(Some(5))?;
        m.serialize_entry("path", r.path())?;
        m.serialize_entry("query", r.query())?;
        m.serialize_entry("method", &r.method)?;
        m.serialize_entry("scheme", &r.scheme)?;
        m.serialize_entry("port", &r.port)?;
        m.end()
    }
}

struct GrpcFunction<'a>(&'a str);

impl Serialize for GrpcFunction<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // `/pkg.Service/Method` → `pkg.Service.Method`: the report shows the
        // last component of an `rpc` point's function name.
        let name = self.0.trim_start_matches('/').replacen('/', ".", 1);
        let mut m = s.serialize_map(Some(1))?;
        m.serialize_entry("name", &name)?;
        m.end()
    }
}

impl ResponseInfo {
    pub(crate) fn is_empty(&self) -> bool {
        self.status.is_none() && self.grpc_status.is_none() && self.error.is_none()
    }

    /// Writes `response` (when there is a status) and the error, as the
    /// layer's `Info` maps did.
    pub(crate) fn serialize_entries<M: SerializeMap>(&self, m: &mut M) -> Result<(), M::Error> {
        if self.status.is_some() || self.grpc_status.is_some() {
            m.serialize_entry("response", &ResponseJson(self))?;
        }
        if let Some((etype, message)) = &self.error {
            m.serialize_entry("etype", etype)?;
            m.serialize_entry("message", message)?;
        }
        Ok(())
    }
}

struct ResponseJson<'a>(&'a ResponseInfo);

impl Serialize for ResponseJson<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        if let Some(status) = self.0.status {
            m.serialize_entry("status", &status)?;
        }
        if let Some(code) = self.0.grpc_status {
            m.serialize_entry("grpc_status", &code)?;
        }
        m.end()
    }
}

/// What a record stands for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum RecordKind {
    /// A start whose stop comes in a later record (a sync guard's: what the
    /// stop needs is in this record, or in the thread's `parked` once handed over).
    Start,
    /// A start whose guard keeps all its stop needs (`OpenPoint`): the thread
    /// keeps no bookkeeping for it when the record is handed over.
    OwnedStart,
    /// A stop whose start went out in an earlier batch.
    Stop,
    /// A whole point: the start record, completed in place at stop because it
    /// was still in the thread's buffer (the common case: one record, not
    /// two, crosses to the exporter).
    Span,
    /// One of the fields of the `Start`/`Span` record before it
    /// (`point_with_fields`): key in `name`, type and text length in `identity`,
    /// the value (or the text's first 48 bytes) in `base`, `id`, `parent`.
    Field,
    /// 48 more bytes of the text of the `Field` record before it.
    More,
}

impl RecordKind {
    /// A field record, which belongs to the point record before it.
    #[inline]
    pub(crate) fn is_field(self) -> bool {
        matches!(self, RecordKind::Field | RecordKind::More)
    }
}

/// One recorded point (or half of one), as cheap to make as possible: 96 bytes,
/// with everything optional out of line.
pub(crate) struct Record {
    pub(crate) base: u128,
    pub(crate) id: u128,
    pub(crate) parent: u128,
    /// Start time (`Start`, `Span`) or stop time (`Stop`).
    pub(crate) at: fastant::Instant,
    /// Stop time of a `Span`.
    pub(crate) end: fastant::Instant,
    /// The point's name; empty when it is not static (then in `extra`).
    pub(crate) name: &'static str,
    pub(crate) extra: Option<Box<Extra>>,
    pub(crate) identity: u32,
    pub(crate) kind: RecordKind,
}

/// What only some points have.
#[derive(Default)]
pub(crate) struct Extra {
    /// A name made at run time.
    pub(crate) name: Option<Box<str>>,
    /// Info of the start event (`Start`, `Span`).
    pub(crate) start: Option<Payload>,
    /// Info of the stop event (`Stop`, `Span`).
    pub(crate) stop: Option<Box<Payload>>,
}

impl Extra {
    /// The out-of-line part for a point's name and start info, if it needs one.
    #[inline]
    pub(crate) fn for_start(
        name: Cow<'static, str>,
        start: Option<Payload>,
    ) -> (&'static str, Option<Box<Extra>>) {
        match (name, start) {
            (Cow::Borrowed(n), None) => (n, None),
            (Cow::Borrowed(n), start) => (
                n,
                Some(Box::new(Extra {
                    name: None,
                    start,
                    ..Extra::default()
                })),
            ),
            (Cow::Owned(n), start) => (
                "",
                Some(Box::new(Extra {
                    name: Some(n.into()),
                    start,
                    ..Extra::default()
                })),
            ),
        }
    }

    /// Sets the stop info of a record's point.
    #[inline]
    pub(crate) fn set_stop(extra: &mut Option<Box<Extra>>, stop: Box<Payload>) {
        match extra {
            Some(e) => e.stop = Some(stop),
            None => {
                *extra = Some(Box::new(Extra {
                    name: None,
                    stop: Some(stop),
                    ..Extra::default()
                }))
            }
        }
    }
}

// A point's fields go in records of their own right after its start record,
// in the same buffer: no allocation on the traced thread (the buffer is
// there anyway), and the exporter makes them the start event's `info`.

/// Bytes of text one field record carries.
const FIELD_TEXT: usize = 48;
/// Most records a point's fields take in the buffer (about 3 KiB of text);
/// more go through [`Info`].
pub(crate) const MAX_FIELD_RECORDS: usize = 64;

const TAG_STR: u32 = 0;
const TAG_I64: u32 = 1;
const TAG_U64: u32 = 2;
const TAG_F64: u32 = 3;
const TAG_BOOL: u32 = 4;

/// How many records `fields` take; `None` when more than [`MAX_FIELD_RECORDS`].
#[inline]
pub(crate) fn field_records(fields: &[(&'static str, Field<'_>)]) -> Option<usize> {
    let mut n = 0;
    for (_, v) in fields {
        n += match v {
            Field::Str(s) => s.len().div_ceil(FIELD_TEXT).max(1),
            _ => 1,
        };
    }
    (n <= MAX_FIELD_RECORDS).then_some(n)
}

#[inline]
fn text_record(
    kind: RecordKind,
    key: &'static str,
    identity: u32,
    text: &[u8],
    at: fastant::Instant,
) -> Record {
    // A whole chunk is read in place; only the last one is padded first.
    let mut padded = [0u8; FIELD_TEXT];
    let chunk: &[u8; FIELD_TEXT] = match text.first_chunk() {
        Some(c) => c,
        None => {
            padded[..text.len()].copy_from_slice(text);
            &padded
        }
    };
    let (a, rest) = chunk.split_first_chunk::<16>().unwrap_or((&[0; 16], &[]));
    let (b, c) = rest.split_first_chunk::<16>().unwrap_or((&[0; 16], &[]));
    let c = c.first_chunk::<16>().unwrap_or(&[0; 16]);
    Record {
        base: u128::from_le_bytes(*a),
        id: u128::from_le_bytes(*b),
        parent: u128::from_le_bytes(*c),
        at,
        end: at,
        name: key,
        extra: None,
        identity,
        kind,
    }
}

/// Appends the records of `fields` (as counted by [`field_records`], which
/// bounds the text length well below 2^24).
#[inline]
pub(crate) fn push_fields(
    buf: &mut Vec<Record>,
    fields: &[(&'static str, Field<'_>)],
    at: fastant::Instant,
) {
    for &(key, v) in fields {
        let (tag, value) = match v {
            Field::Str(s) => {
                let b = s.as_bytes();
                let ident = TAG_STR | ((b.len() as u32) << 8);
                if b.len() <= FIELD_TEXT {
                    buf.push(text_record(RecordKind::Field, key, ident, b, at));
                    continue;
                }
                // Whole 48-byte blocks, the last one ending where the text
                // ends (overlapping the one before): nothing to pad.
                let last = b.len() - FIELD_TEXT;
                let mut start = 0;
                let (mut kind, mut k) = (RecordKind::Field, key);
                loop {
                    let at_start = start.min(last);
                    let block = b.get(at_start..).unwrap_or_default();
                    buf.push(text_record(kind, k, ident, block, at));
                    if at_start == last {
                        break;
                    }
                    start += FIELD_TEXT;
                    (kind, k) = (RecordKind::More, "");
                }
                continue;
            }
            Field::I64(n) => (TAG_I64, n as u64),
            Field::U64(n) => (TAG_U64, n),
            Field::F64(f) => (TAG_F64, f.to_bits()),
            Field::Bool(b) => (TAG_BOOL, u64::from(b)),
        };
        buf.push(Record {
            base: u128::from(value),
            id: 0,
            parent: 0,
            at,
            end: at,
            name: key,
            extra: None,
            identity: tag,
            kind: RecordKind::Field,
        });
    }
}

/// Rebuilds a point's fields from its field records (on the exporter thread).
#[derive(Default)]
pub(crate) struct FieldsInfo {
    map: Map<String, Value>,
    // The text field being read: its key, its bytes so far, how many are left.
    key: Option<&'static str>,
    text: Vec<u8>,
    left: usize,
}

impl FieldsInfo {
    pub(crate) fn add(&mut self, r: &Record) {
        match r.kind {
            RecordKind::Field => {
                self.end_text();
                let v = r.base as u64;
                let value = match r.identity & 0xff {
                    TAG_STR => {
                        self.key = Some(r.name);
                        self.left = (r.identity >> 8) as usize;
                        self.take(r);
                        return;
                    }
                    TAG_I64 => Value::from(v as i64),
                    TAG_U64 => Value::from(v),
                    TAG_F64 => Value::from(f64::from_bits(v)),
                    _ => Value::Bool(v != 0),
                };
                self.map.insert(r.name.to_owned(), value);
            }
            RecordKind::More => self.take(r),
            _ => {}
        }
    }

    fn take(&mut self, r: &Record) {
        let n = self.left.min(FIELD_TEXT);
        let mut b = [0u8; FIELD_TEXT];
        b[..16].copy_from_slice(&r.base.to_le_bytes());
        b[16..32].copy_from_slice(&r.id.to_le_bytes());
        b[32..].copy_from_slice(&r.parent.to_le_bytes());
        // A text longer than a block ends with a block that ends with it.
        let part = if self.text.is_empty() || n == FIELD_TEXT {
            &b[..n]
        } else {
            &b[FIELD_TEXT - n..]
        };
        self.text.extend_from_slice(part);
        self.left -= n;
        if self.left == 0 {
            self.end_text();
        }
    }

    fn end_text(&mut self) {
        if let Some(key) = self.key.take() {
            // Valid UTF-8 as recorded (split only at 48-byte boundaries, joined here).
            let text = String::from_utf8_lossy(&self.text).into_owned();
            self.map.insert(key.to_owned(), Value::String(text));
            self.text.clear();
            self.left = 0;
        }
    }

    pub(crate) fn into_info(mut self) -> Info {
        self.end_text();
        Info(self.map)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_record_is_96_bytes() {
        // The size decides how much memory crosses to the exporter per point.
        assert_eq!(std::mem::size_of::<super::Record>(), 96);
    }

    #[test]
    fn field_records_give_back_the_fields() {
        use super::*;
        let long = "é".repeat(40) + "SELECT id FROM instances WHERE project_id = ?";
        for fields in [
            vec![
                ("statement", Field::from(long.as_str())),
                ("rows", 3u32.into()),
                ("delta", Field::I64(-7)),
                ("ratio", 0.5.into()),
                ("cached", false.into()),
                ("empty", "".into()),
                ("short", "SELECT 1".into()),
            ],
            vec![
                ("a", Field::I64(-1)),
                ("b", "x".into()),
                ("a", Field::F64(f64::NAN)),
            ],
            vec![("exact", Field::from("x".repeat(96).as_str()))],
            vec![
                ("one_over", Field::from(("y".repeat(48) + "z").as_str())),
                ("block", Field::from("w".repeat(48).as_str())),
                ("n", 1u32.into()),
            ],
        ] {
            let at = fastant::Instant::now();
            let mut buf = Vec::new();
            push_fields(&mut buf, &fields, at);
            assert_eq!(buf.len(), field_records(&fields).unwrap());
            let mut f = FieldsInfo::default();
            buf.iter().for_each(|r| f.add(r));
            assert_eq!(f.into_info(), crate::info::fields_info(&fields));
        }
        let big = "x".repeat(FIELD_TEXT * MAX_FIELD_RECORDS + 1);
        assert!(field_records(&[("s", Field::from(big.as_str()))]).is_none());
    }
}
