//! One stored event: its JSON text as given, and the few fields the report reads from it.
//!
//! The text is parsed once, by serde visitors that keep only those fields (as positions in
//! the text) and check the rest without building anything: no `serde_json::Value`, no
//! allocation for strings without escapes. The text itself is kept whole: the HTML page
//! embeds it as it is, and the report JSON re-indents it ([`crate::pyjson`]). A `Value` of
//! it is only made if asked for ([`Event::value`]).

use std::borrow::Cow;
use std::fmt;
use std::sync::OnceLock;

use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{Deserialize, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use crate::builder::EventError;
use crate::time::parse_timestamp;

/// Where one of an event's strings is: a range of its text, or of its decoded strings
/// (those that had escapes, or that stand for a non-string JSON value).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    at: u32,
    len: u32,
}

/// Marks a span of [`Event::decoded`]; texts are below 2 GiB so offsets never have it.
const DECODED: u32 = 1 << 31;

impl Span {
    /// The field is absent (or not of the type the report takes).
    const NONE: Span = Span {
        at: u32::MAX,
        len: 0,
    };
}

/// The longest event text taken: offsets must stay clear of [`DECODED`].
pub(crate) const MAX_TEXT: usize = (DECODED - 1) as usize;

/// The first or the second half of a point.
pub(crate) const START: usize = 0;
pub(crate) const STOP: usize = 1;

/// An event as stored, and what the report reads from it.
#[derive(Clone)]
pub(crate) struct Event {
    /// The event's JSON text, without surrounding whitespace.
    text: Box<str>,
    /// Decoded strings, usually none (then it allocates nothing).
    decoded: Box<str>,
    /// Microseconds since the epoch.
    pub(crate) ts: i64,
    f: Fields,
    /// The text as a `Value`, made on first use (or given, by [`Event::from_value`]).
    value: OnceLock<Box<Value>>,
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.text())
    }
}

impl Event {
    /// Parses an event's text; `START` or `STOP` comes with it, from its name.
    ///
    /// Takes exactly the texts `serde_json::from_str::<Value>` takes (the same parser
    /// checks every value, even those it skips), so that [`Event::value`] cannot fail.
    pub(crate) fn parse<S: AsRef<str> + Into<String>>(
        text: S,
    ) -> Result<(Event, usize), EventError> {
        let whole = text.as_ref();
        let trimmed = whole.trim_matches([' ', '\t', '\n', '\r']);
        if trimmed.len() > MAX_TEXT {
            return Err(EventError::TooLarge);
        }
        let (f, ts, decoded, phase) = Fields::of(trimmed)?;
        let text: Box<str> = if trimmed.len() == whole.len() {
            // No copy for an owned `String` (a store's), one for a borrowed text.
            text.into().into_boxed_str()
        } else {
            trimmed.into()
        };
        let event = Event {
            text,
            decoded: decoded.into_boxed_str(),
            ts,
            f,
            value: OnceLock::new(),
        };
        Ok((event, phase))
    }

    /// An event given as a `Value`: written out once, and the `Value` kept.
    pub(crate) fn from_value(value: Value) -> Result<(Event, usize), EventError> {
        if !value.is_object() {
            return Err(EventError::NotAnObject);
        }
        let text = serde_json::to_string(&value).map_err(|e| EventError::Json(e.to_string()))?;
        let (event, phase) = Event::parse(text)?;
        // Dropped if set already, which cannot be: the event is new.
        let _ = event.value.set(Box::new(value));
        Ok((event, phase))
    }

    /// The JSON text, as stored (less surrounding whitespace).
    pub(crate) fn text(&self) -> &str {
        &self.text
    }

    /// The event as a `Value`, parsed on first use and kept.
    pub(crate) fn value(&self) -> &Value {
        self.value.get_or_init(|| Box::new(self.parse_value()))
    }

    /// The `Value` if it was made already.
    pub(crate) fn value_if_made(&self) -> Option<&Value> {
        self.value.get().map(|v| &**v)
    }

    /// A new `Value` of the text (not kept).
    pub(crate) fn parse_value(&self) -> Value {
        // The text was checked by the same parser when the event came in.
        serde_json::from_str(&self.text).unwrap_or_default()
    }

    fn get(&self, span: Span) -> Option<&str> {
        if span.at == u32::MAX {
            return None;
        }
        let (source, at) = if span.at & DECODED != 0 {
            (&*self.decoded, span.at & !DECODED)
        } else {
            (&*self.text, span.at)
        };
        let at = at as usize;
        source.get(at..at.checked_add(span.len as usize)?)
    }

    /// The event's name (`db-start`).
    pub(crate) fn name(&self) -> &str {
        self.get(self.f.name).unwrap_or_default()
    }

    pub(crate) fn trace_id(&self) -> &str {
        self.get(self.f.trace_id).unwrap_or_default()
    }

    pub(crate) fn parent_id(&self) -> Option<&str> {
        self.get(self.f.parent_id)
    }

    pub(crate) fn project(&self) -> Option<&str> {
        self.get(self.f.project)
    }

    pub(crate) fn service(&self) -> Option<&str> {
        self.get(self.f.service)
    }

    pub(crate) fn base_id(&self) -> Option<&str> {
        self.get(self.f.base_id)
    }

    /// `info.host`.
    pub(crate) fn host(&self) -> Option<&str> {
        self.get(self.f.host)
    }

    /// `info.etype` as osprofiler's `exception`: none for a missing or null one, or `"None"`;
    /// a value that is not a string as its JSON text.
    pub(crate) fn exception(&self) -> Option<&str> {
        self.get(self.f.exception)
    }

    /// `info.function.name`.
    pub(crate) fn function_name(&self) -> Option<&str> {
        self.get(self.f.function)
    }

    /// `(method, path)` of `info.request` when it is an object, each `""` when missing or
    /// null, and a non-string value as its JSON text.
    pub(crate) fn request(&self) -> Option<(&str, &str)> {
        self.f.request.then(|| {
            (
                self.get(self.f.method).unwrap_or_default(),
                self.get(self.f.path).unwrap_or_default(),
            )
        })
    }
}

/// An event name less its `-start`/`-stop`.
pub(crate) fn point_name(event_name: &str) -> &str {
    event_name
        .strip_suffix("-start")
        .or_else(|| event_name.strip_suffix("-stop"))
        .unwrap_or(event_name)
}

/// A point's two events, either of which may be missing.
#[derive(Clone, Copy)]
pub(crate) struct Pair<'a> {
    pub(crate) start: Option<&'a Event>,
    pub(crate) stop: Option<&'a Event>,
}

impl<'a> Pair<'a> {
    /// Identity fields come from the start event, else from the stop event.
    fn pick(&self, field: impl Fn(&'a Event) -> Option<&'a str>) -> Option<&'a str> {
        match (self.start, self.stop) {
            (Some(start), stop) => field(start).or_else(|| stop.and_then(&field)),
            (None, stop) => stop.and_then(field),
        }
    }

    /// The point's name: the first event's name less its `-start`/`-stop`.
    ///
    /// Python keeps `name.split("-")[0]`, which cuts `http-client-start` to `http`; we
    /// keep the whole name, which is what the writer meant (same result for names without
    /// `-`).
    pub(crate) fn name(&self) -> &'a str {
        point_name(self.start.or(self.stop).map_or("", Event::name))
    }

    pub(crate) fn trace_id(&self) -> &'a str {
        self.start.or(self.stop).map_or("", Event::trace_id)
    }

    pub(crate) fn parent_id(&self) -> Option<&'a str> {
        self.pick(Event::parent_id)
    }

    pub(crate) fn project(&self) -> Option<&'a str> {
        self.pick(Event::project)
    }

    pub(crate) fn service(&self) -> Option<&'a str> {
        self.pick(Event::service)
    }

    pub(crate) fn host(&self) -> Option<&'a str> {
        self.pick(Event::host)
    }

    pub(crate) fn base_id(&self) -> Option<&'a str> {
        self.pick(Event::base_id)
    }

    /// osprofiler fills `exception` from the stop event's `info.etype`.
    pub(crate) fn exception(&self) -> Option<&'a str> {
        self.stop.and_then(Event::exception)
    }
}

/// The report's fields of an event, as spans of its text (or of its decoded strings).
#[derive(Clone)]
struct Fields {
    name: Span,
    trace_id: Span,
    parent_id: Span,
    project: Span,
    service: Span,
    base_id: Span,
    host: Span,
    /// `info.etype`, as osprofiler shows it: none for `null` and `"None"`.
    exception: Span,
    function: Span,
    /// `info.request.method` and `.path` as Python's `str.format` shows them (none for
    /// `null`), when `info.request` is an object.
    method: Span,
    path: Span,
    request: bool,
}

impl Fields {
    /// The fields, the timestamp, the decoded strings the spans may point into, and the
    /// phase (start or stop).
    fn of(text: &str) -> Result<(Fields, i64, String, usize), EventError> {
        let json = |e: serde_json::Error| EventError::Json(e.to_string());
        let mut de = serde_json::Deserializer::from_str(text);
        let mut top = Top::default();
        let is_object = Object(&mut top).deserialize(&mut de).map_err(json)?;
        de.end().map_err(json)?;
        if !is_object {
            return Err(EventError::NotAnObject);
        }

        // Checked in this order, as for a `Value`.
        let Loose::Str(name) = &top.name else {
            return Err(EventError::Missing("name"));
        };
        let phase = if name.ends_with("-start") {
            START
        } else if name.ends_with("-stop") {
            STOP
        } else {
            return Err(EventError::BadName(name.to_string()));
        };
        let Loose::Str(trace_id) = &top.trace_id else {
            return Err(EventError::Missing("trace_id"));
        };
        let Loose::Str(stamp) = &top.timestamp else {
            return Err(EventError::Missing("timestamp"));
        };
        let ts =
            parse_timestamp(stamp).ok_or_else(|| EventError::BadTimestamp(stamp.to_string()))?;

        let mut spans = Spans {
            text,
            decoded: String::new(),
        };
        let info = &top.info;
        let fields = Fields {
            name: spans.of(name),
            trace_id: spans.of(trace_id),
            parent_id: spans.string(&top.parent_id),
            project: spans.string(&top.project),
            service: spans.string(&top.service),
            base_id: spans.string(&top.base_id),
            host: spans.string(&info.host),
            exception: match &info.etype {
                Loose::Str(s) if s == "None" => Span::NONE,
                other => spans.shown(other),
            },
            function: spans.string(&info.function.name),
            method: spans.shown(&info.request.method),
            path: spans.shown(&info.request.path),
            request: info.has_request,
        };
        Ok((fields, ts, spans.decoded, phase))
    }
}

/// Turns the parsed strings of a text into spans.
struct Spans<'t> {
    text: &'t str,
    decoded: String,
}

impl Spans<'_> {
    fn of(&mut self, s: &str) -> Span {
        // A string without escapes is borrowed, a slice of the text: its offset is where it
        // starts. A decoded one lives elsewhere, outside the text's memory.
        let at = (s.as_ptr() as usize).wrapping_sub(self.text.as_ptr() as usize);
        if at
            .checked_add(s.len())
            .is_some_and(|end| end <= self.text.len())
        {
            return Span {
                at: at as u32,
                len: s.len() as u32,
            };
        }
        self.decode(s)
    }

    fn decode(&mut self, s: &str) -> Span {
        let at = self.decoded.len();
        if at.saturating_add(s.len()) > MAX_TEXT {
            return Span::NONE;
        }
        self.decoded.push_str(s);
        Span {
            at: at as u32 | DECODED,
            len: s.len() as u32,
        }
    }

    /// A field the report takes only as a string.
    fn string(&mut self, value: &Loose<'_>) -> Span {
        match value {
            Loose::Str(s) => self.of(s),
            _ => Span::NONE,
        }
    }

    /// A field shown as text whatever its type: `null` as nothing, others as JSON.
    fn shown(&mut self, value: &Loose<'_>) -> Span {
        match value {
            Loose::Str(s) => self.of(s),
            Loose::Absent | Loose::Null => Span::NONE,
            Loose::Other(json) => self.decode(json),
        }
    }
}

/// The keys the report reads, in any of the objects it looks into.
enum Key {
    Name,
    TraceId,
    ParentId,
    Timestamp,
    Project,
    Service,
    BaseId,
    Info,
    Host,
    Etype,
    Function,
    Request,
    Method,
    Path,
    Other,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Key, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<Key, E> {
                Ok(match key {
                    "name" => Key::Name,
                    "trace_id" => Key::TraceId,
                    "parent_id" => Key::ParentId,
                    "timestamp" => Key::Timestamp,
                    "project" => Key::Project,
                    "service" => Key::Service,
                    "base_id" => Key::BaseId,
                    "info" => Key::Info,
                    "host" => Key::Host,
                    "etype" => Key::Etype,
                    "function" => Key::Function,
                    "request" => Key::Request,
                    "method" => Key::Method,
                    "path" => Key::Path,
                    _ => Key::Other,
                })
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

/// A value the report reads: a string (borrowed from the text when it has no escapes),
/// `null`, anything else (as its compact JSON, to show it), or nothing.
///
/// Kept small: the parsed fields are moved about by value on every event.
#[derive(Default)]
enum Loose<'a> {
    #[default]
    Absent,
    Null,
    Str(Cow<'a, str>),
    Other(Box<str>),
}

impl Loose<'_> {
    fn other(value: Value) -> Self {
        Loose::Other(value.to_string().into_boxed_str())
    }
}

impl<'de> Deserialize<'de> for Loose<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Loose<'de>, D::Error> {
        struct LooseVisitor;
        impl<'de> Visitor<'de> for LooseVisitor {
            type Value = Loose<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E: serde::de::Error>(
                self,
                s: &'de str,
            ) -> Result<Self::Value, E> {
                Ok(Loose::Str(Cow::Borrowed(s)))
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Self::Value, E> {
                Ok(Loose::Str(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E: serde::de::Error>(self, s: String) -> Result<Self::Value, E> {
                Ok(Loose::Str(Cow::Owned(s)))
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
                Ok(Loose::Null)
            }
            fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
                Ok(Loose::Null)
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(Loose::other(v.into()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Loose::other(v.into()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Loose::other(v.into()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(Loose::other(v.into()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                Value::deserialize(SeqAccessDeserializer::new(seq)).map(Loose::other)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                Value::deserialize(MapAccessDeserializer::new(map)).map(Loose::other)
            }
        }
        d.deserialize_any(LooseVisitor)
    }
}

/// A visitor's methods for every JSON scalar (bool, numbers, string, null), each giving
/// `$value`: written once for the visitors that take any value.
macro_rules! accept_scalars {
    ($value:expr) => {
        fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok($value)
        }
    };
}

/// Any JSON value, checked as a `Value` would be, and dropped.
struct Skip;

impl<'de> Deserialize<'de> for Skip {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Skip, D::Error> {
        d.deserialize_any(SkipVisitor)
    }
}

struct SkipVisitor;

impl<'de> Visitor<'de> for SkipVisitor {
    type Value = Skip;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    accept_scalars!(Skip);
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Skip, A::Error> {
        while seq.next_element::<Skip>()?.is_some() {}
        Ok(Skip)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Skip, A::Error> {
        while map.next_key::<Skip>()?.is_some() {
            map.next_value::<Skip>()?;
        }
        Ok(Skip)
    }
}

/// Reads an object's keys into `T`, in place: the parsed fields are large and would
/// otherwise be moved through every layer of serde's calls. Any other JSON value leaves
/// `T` empty. Gives whether it was an object.
struct Object<'t, T>(&'t mut T);

/// What to do with each key of an object (a later key replaces an earlier one, as in a
/// `Value`).
trait Keys<'de>: Default {
    fn read<A: MapAccess<'de>>(&mut self, key: Key, map: &mut A) -> Result<(), A::Error>;
}

impl<'de, T: Keys<'de>> DeserializeSeed<'de> for Object<'_, T> {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        // A repeated key replaces the whole earlier value.
        *self.0 = T::default();
        d.deserialize_any(self)
    }
}

impl<'de, T: Keys<'de>> Visitor<'de> for Object<'_, T> {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        while let Some(key) = map.next_key::<Key>()? {
            self.0.read(key, &mut map)?;
        }
        Ok(true)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<bool, A::Error> {
        SkipVisitor.visit_seq(seq)?;
        Ok(false)
    }
    accept_scalars!(false);
}

/// The event object.
#[derive(Default)]
struct Top<'a> {
    name: Loose<'a>,
    trace_id: Loose<'a>,
    parent_id: Loose<'a>,
    timestamp: Loose<'a>,
    project: Loose<'a>,
    service: Loose<'a>,
    base_id: Loose<'a>,
    info: Info<'a>,
}

impl<'de> Keys<'de> for Top<'de> {
    fn read<A: MapAccess<'de>>(&mut self, key: Key, map: &mut A) -> Result<(), A::Error> {
        let slot = match key {
            Key::Name => &mut self.name,
            Key::TraceId => &mut self.trace_id,
            Key::ParentId => &mut self.parent_id,
            Key::Timestamp => &mut self.timestamp,
            Key::Project => &mut self.project,
            Key::Service => &mut self.service,
            Key::BaseId => &mut self.base_id,
            Key::Info => return map.next_value_seed(Object(&mut self.info)).map(drop),
            _ => return map.next_value::<Skip>().map(drop),
        };
        *slot = map.next_value()?;
        Ok(())
    }
}

/// The event's `info`.
#[derive(Default)]
struct Info<'a> {
    host: Loose<'a>,
    etype: Loose<'a>,
    function: Function<'a>,
    request: Request<'a>,
    /// Whether `request` is an object (the DOT label shows it then, even empty).
    has_request: bool,
}

impl<'de> Keys<'de> for Info<'de> {
    fn read<A: MapAccess<'de>>(&mut self, key: Key, map: &mut A) -> Result<(), A::Error> {
        match key {
            Key::Host => self.host = map.next_value()?,
            Key::Etype => self.etype = map.next_value()?,
            Key::Function => {
                map.next_value_seed(Object(&mut self.function))?;
            }
            Key::Request => self.has_request = map.next_value_seed(Object(&mut self.request))?,
            _ => map.next_value::<Skip>().map(drop)?,
        }
        Ok(())
    }
}

/// `info.function`.
#[derive(Default)]
struct Function<'a> {
    name: Loose<'a>,
}

impl<'de> Keys<'de> for Function<'de> {
    fn read<A: MapAccess<'de>>(&mut self, key: Key, map: &mut A) -> Result<(), A::Error> {
        match key {
            Key::Name => self.name = map.next_value()?,
            _ => map.next_value::<Skip>().map(drop)?,
        }
        Ok(())
    }
}

/// `info.request`.
#[derive(Default)]
struct Request<'a> {
    method: Loose<'a>,
    path: Loose<'a>,
}

impl<'de> Keys<'de> for Request<'de> {
    fn read<A: MapAccess<'de>>(&mut self, key: Key, map: &mut A) -> Result<(), A::Error> {
        match key {
            Key::Method => self.method = map.next_value()?,
            Key::Path => self.path = map.next_value()?,
            _ => map.next_value::<Skip>().map(drop)?,
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_fields_without_copying_plain_strings() {
        let text = r#" {"name": "wsgi-start", "trace_id": "t\u00e9", "timestamp": "2026-11-25T12:00:00.5",
            "parent_id": 7, "service": "api", "info": {"host": "h", "etype": {"a": [1]},
            "request": {"method": null, "path": 12}, "function": {"name": "f"}}} "#;
        let (event, phase) = Event::parse(text).unwrap();
        assert_eq!(phase, START);
        assert_eq!(event.text(), text.trim());
        assert_eq!(event.name(), "wsgi-start");
        assert_eq!(event.trace_id(), "té");
        assert_eq!(event.parent_id(), None);
        assert_eq!(event.service(), Some("api"));
        assert_eq!(event.project(), None);
        assert_eq!(event.host(), Some("h"));
        assert_eq!(event.exception(), Some(r#"{"a":[1]}"#));
        assert_eq!(event.request(), Some(("", "12")));
        assert_eq!(event.function_name(), Some("f"));
        assert_eq!(&*event.decoded, "té{\"a\":[1]}12");
        assert_eq!(event.value()["info"]["host"], "h");
    }

    #[test]
    fn later_keys_replace_earlier_ones_as_in_a_value() {
        let text = r#"{"name": "a-stop", "trace_id": "t", "timestamp": "2026-11-25T12:00:00",
            "info": {"etype": "E"}, "info": {"host": "h", "host": 1, "request": {},
            "request": 5}, "service": "s", "service": null}"#;
        let (event, phase) = Event::parse(text).unwrap();
        assert_eq!(phase, STOP);
        assert_eq!(event.exception(), None);
        assert_eq!(event.host(), None);
        assert_eq!(event.request(), None);
        assert_eq!(event.service(), None);
        let (event, _) = Event::parse(
            r#"{"name": "a-stop", "trace_id": "t", "timestamp": "2026-11-25T12:00:00",
                "info": {"etype": "None", "request": {}}}"#,
        )
        .unwrap();
        assert_eq!(event.exception(), None);
        assert_eq!(event.request(), Some(("", "")));
    }

    #[test]
    fn takes_what_a_value_takes() {
        for text in [
            r#"{"name": "a-start", "trace_id": "t", "timestamp": "2026-11-25T12:00:00", "x": "\ud800"}"#,
            r#"{"name": "a-start", "trace_id": "t", "timestamp": "2026-11-25T12:00:00", "x": 1e400}"#,
            r#"{"name": "a-start", "trace_id": "t", "timestamp": "2026-11-25T12:00:00", "x": [}"#,
            r#"{"name": "a-start", "trace_id": "t", "timestamp": "2026-11-25T12:00:00"} x"#,
            r#"{"name": "a-start", "trace_id": "t", "timestamp": "2026-11-25T12:00:00", "x": "\q"}"#,
        ] {
            assert!(serde_json::from_str::<Value>(text).is_err());
            assert!(
                matches!(Event::parse(text), Err(EventError::Json(_))),
                "{text}"
            );
        }
        let deep = format!(
            r#"{{"name": "a-start", "trace_id": "t", "timestamp": "2026-11-25T12:00:00", "x": {}1{}}}"#,
            "[".repeat(200),
            "]".repeat(200)
        );
        assert!(serde_json::from_str::<Value>(&deep).is_err());
        assert!(matches!(Event::parse(deep), Err(EventError::Json(_))));
        assert!(matches!(
            Event::parse("[1, 2]"),
            Err(EventError::NotAnObject)
        ));
        assert!(matches!(
            Event::parse("\"x\""),
            Err(EventError::NotAnObject)
        ));
    }
}
