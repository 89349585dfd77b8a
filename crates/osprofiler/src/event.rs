//! Events as osprofiler stores them: one `<name>-start` and one `<name>-stop`
//! per point.

use std::borrow::Cow;
use std::fmt;
use std::sync::{Arc, OnceLock};

use serde::ser::SerializeMap;
use serde_json::{Map, Value};

use crate::id::Id;
use crate::notifier::Payload;
use crate::time::Timestamp;

/// Whether an event opens or closes its point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// `<name>-start`
    Start,
    /// `<name>-stop`
    Stop,
}

impl EventKind {
    /// The suffix osprofiler appends to the point name.
    pub fn suffix(self) -> &'static str {
        match self {
            EventKind::Start => "start",
            EventKind::Stop => "stop",
        }
    }
}

/// One osprofiler event.
///
/// Serializes to exactly the JSON osprofiler 4.4.0 writes (key order, and with
/// [`Event::to_json`] Python's separators and escaping):
///
/// ```
/// let line = r#"{"name": "db-start", "base_id": "11111111-1111-4111-8111-111111111111", "trace_id": "aaaaaaaa-aaaa-4aaa-8aaa-000000000002", "parent_id": "11111111-1111-4111-8111-111111111111", "timestamp": "2026-11-25T12:00:00.001375", "info": {"host": "host-a"}, "project": "nova", "service": "api"}"#;
/// let event = osprofiler::Event::from_json(line).unwrap();
/// assert_eq!(event.name, "db");
/// assert_eq!(event.to_json(), line);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The point name (its category: `wsgi`, `rpc`, `db`, ...), without suffix.
    pub name: Cow<'static, str>,
    /// Start or stop.
    pub kind: EventKind,
    /// The trace this event belongs to.
    pub base_id: Id,
    /// The point this event opens or closes (osprofiler calls it `trace_id`).
    pub trace_id: Id,
    /// The point's parent (the base id for a first-level point).
    pub parent_id: Id,
    /// When it happened (UTC).
    pub timestamp: Timestamp,
    /// The event's `info`, `host` included. Omitted from the JSON when empty.
    pub info: EventInfo,
    /// The project that wrote it (`nova`), added by the notifier.
    pub project: Option<Arc<str>>,
    /// The service that wrote it (`api`), added by the notifier.
    pub service: Option<Arc<str>>,
}

/// The error of [`Event::from_json`].
#[derive(Debug, thiserror::Error)]
pub enum ParseEventError {
    /// Not JSON, or a field has the wrong type or form.
    #[error("not an osprofiler event: {0}")]
    Json(#[from] serde_json::Error),
    /// The name does not end in `-start` or `-stop`.
    #[error("event name {0:?} does not end in -start or -stop")]
    Name(String),
}

impl Event {
    /// The full event name, `<name>-start` or `<name>-stop`.
    pub fn full_name(&self) -> String {
        format!("{}-{}", self.name, self.kind.suffix())
    }

    /// The `host` in `info`, if any.
    pub fn host(&self) -> Option<&str> {
        self.info.host()
    }

    /// Python `json.dumps` text of this event, as osprofiler stores it.
    pub fn to_json(&self) -> String {
        // Serializing maps of strings and JSON values cannot fail.
        crate::json::to_python_json(self).unwrap_or_default()
    }

    /// Appends the Python `json.dumps` text of this event to `out`.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        let _ = crate::json::write_python_json(out, self);
    }

    /// Parses one stored event.
    pub fn from_json(text: &str) -> Result<Event, ParseEventError> {
        let raw: RawEvent = serde_json::from_str(text)?;
        Event::try_from(raw)
    }

    /// Converts a parsed JSON value.
    pub fn from_value(value: Value) -> Result<Event, ParseEventError> {
        let raw: RawEvent = serde_json::from_value(value)?;
        Event::try_from(raw)
    }
}

#[derive(serde::Deserialize)]
struct RawEvent {
    name: String,
    base_id: Id,
    trace_id: Id,
    parent_id: Id,
    timestamp: TimestampText,
    #[serde(default)]
    info: Map<String, Value>,
    #[serde(default)]
    project: Option<String>,
    #[serde(default)]
    service: Option<String>,
}

struct TimestampText(Timestamp);

impl<'de> serde::Deserialize<'de> for TimestampText {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <Cow<'de, str>>::deserialize(d)?;
        s.parse()
            .map(TimestampText)
            .map_err(serde::de::Error::custom)
    }
}

impl TryFrom<RawEvent> for Event {
    type Error = ParseEventError;

    fn try_from(raw: RawEvent) -> Result<Event, ParseEventError> {
        let (name, kind) = if let Some(n) = raw.name.strip_suffix("-start") {
            (n.to_owned(), EventKind::Start)
        } else if let Some(n) = raw.name.strip_suffix("-stop") {
            (n.to_owned(), EventKind::Stop)
        } else {
            return Err(ParseEventError::Name(raw.name));
        };
        Ok(Event {
            name: Cow::Owned(name),
            kind,
            base_id: raw.base_id,
            trace_id: raw.trace_id,
            parent_id: raw.parent_id,
            timestamp: raw.timestamp.0,
            info: EventInfo::from(raw.info),
            project: raw.project.map(Arc::from),
            service: raw.service.map(Arc::from),
        })
    }
}

impl serde::Serialize for Event {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("name", &NameWithSuffix(self))?;
        m.serialize_entry("base_id", &self.base_id)?;
        m.serialize_entry("trace_id", &self.trace_id)?;
        m.serialize_entry("parent_id", &self.parent_id)?;
        m.serialize_entry("timestamp", &TimestampStr(self.timestamp))?;
        if !self.info.is_empty() {
            m.serialize_entry("info", &self.info)?;
        }
        if let Some(p) = &self.project {
            m.serialize_entry("project", &**p)?;
        }
        if let Some(sv) = &self.service {
            m.serialize_entry("service", &**sv)?;
        }
        m.end()
    }
}

struct NameWithSuffix<'a>(&'a Event);

impl serde::Serialize for NameWithSuffix<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{}-{}", self.0.name, self.0.kind.suffix()))
    }
}

struct TimestampStr(Timestamp);

impl serde::Serialize for TimestampStr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut buf = Vec::with_capacity(26);
        self.0.write_to(&mut buf);
        s.serialize_str(std::str::from_utf8(&buf).unwrap_or_default())
    }
}

/// An event's `info` object.
///
/// Events recorded here keep what the point recorded and write it straight
/// to JSON: the exporter builds no map per event. Reading it as a map
/// ([`EventInfo::as_map`], indexing) builds the map once, on first use.
pub struct EventInfo {
    repr: Repr,
    map: OnceLock<Map<String, Value>>,
}

enum Repr {
    Map,
    Recorded {
        payload: Option<Payload>,
        host: Arc<str>,
    },
}

impl EventInfo {
    pub(crate) fn recorded(payload: Option<Payload>, host: Arc<str>) -> EventInfo {
        EventInfo {
            repr: Repr::Recorded { payload, host },
            map: OnceLock::new(),
        }
    }

    /// The info as a JSON object.
    pub fn as_map(&self) -> &Map<String, Value> {
        self.map.get_or_init(|| match &self.repr {
            Repr::Map => Map::new(),
            Repr::Recorded { .. } => match serde_json::to_value(self) {
                Ok(Value::Object(m)) => m,
                _ => Map::new(),
            },
        })
    }

    /// The info's keys and values, borrowed where they can be: what a point recorded
    /// as free-form info is handed out as is, with no map built or cached (exporters
    /// that read every event once use this rather than [`as_map`](Self::as_map)). Such
    /// info has no `host` key (see [`host`](Self::host)); parsed info has it.
    pub fn fields(&self) -> Cow<'_, Map<String, Value>> {
        match &self.repr {
            Repr::Map => Cow::Borrowed(self.as_map()),
            Repr::Recorded { payload: None, .. } => Cow::Owned(Map::new()),
            Repr::Recorded {
                payload: Some(Payload::Info(i)),
                ..
            } => Cow::Borrowed(i.as_map()),
            // Small payloads (a function's name and arguments, an error): built.
            Repr::Recorded { .. } => match self.map.get() {
                Some(m) => Cow::Borrowed(m),
                None => match serde_json::to_value(self) {
                    Ok(Value::Object(m)) => Cow::Owned(m),
                    _ => Cow::Owned(Map::new()),
                },
            },
        }
    }

    /// A recorded failure's `etype` and `message`, borrowed, when that is all the
    /// info holds (a point stopped with an error): what [`fields`](Self::fields)
    /// would build a map for. `None` for any other info.
    pub fn recorded_error(&self) -> Option<(&str, &str)> {
        match &self.repr {
            Repr::Recorded {
                payload: Some(Payload::Error { etype, message }),
                ..
            } => Some((etype, message)),
            _ => None,
        }
    }

    /// One key's value.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.as_map().get(key)
    }

    /// Whether `key` is present.
    pub fn contains_key(&self, key: &str) -> bool {
        self.as_map().contains_key(key)
    }

    /// The keys, in order.
    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.as_map().keys()
    }

    /// Whether there is no key.
    pub fn is_empty(&self) -> bool {
        match &self.repr {
            // A recorded event always has its host.
            Repr::Recorded { .. } => false,
            Repr::Map => self.as_map().is_empty(),
        }
    }

    /// `info.host`.
    pub fn host(&self) -> Option<&str> {
        match &self.repr {
            Repr::Recorded { host, .. } => Some(host),
            Repr::Map => self.as_map().get("host").and_then(Value::as_str),
        }
    }
}

impl From<Map<String, Value>> for EventInfo {
    fn from(m: Map<String, Value>) -> EventInfo {
        EventInfo {
            repr: Repr::Map,
            map: OnceLock::from(m),
        }
    }
}

impl Default for EventInfo {
    fn default() -> EventInfo {
        EventInfo::from(Map::new())
    }
}

impl Clone for EventInfo {
    fn clone(&self) -> EventInfo {
        match &self.repr {
            Repr::Map => EventInfo::from(self.as_map().clone()),
            Repr::Recorded { payload, host } => EventInfo {
                repr: Repr::Recorded {
                    payload: payload.clone(),
                    host: host.clone(),
                },
                map: self.map.clone(),
            },
        }
    }
}

impl PartialEq for EventInfo {
    fn eq(&self, other: &EventInfo) -> bool {
        self.as_map() == other.as_map()
    }
}

impl fmt::Debug for EventInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.as_map().fmt(f)
    }
}

impl std::ops::Index<&str> for EventInfo {
    type Output = Value;

    /// `Value::Null` for a missing key, as `serde_json::Map` does.
    fn index(&self, key: &str) -> &Value {
        static NULL: Value = Value::Null;
        self.as_map().get(key).unwrap_or(&NULL)
    }
}

impl serde::Serialize for EventInfo {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (payload, host) = match &self.repr {
            Repr::Map => return self.as_map().serialize(s),
            Repr::Recorded { payload, host } => (payload.as_ref(), host),
        };
        let mut m = s.serialize_map(None)?;
        // Key order as osprofiler writes it: the point's info, then `host`.
        match payload {
            None => {}
            Some(Payload::Info(i)) => {
                for (k, v) in i.as_map() {
                    if k != "host" {
                        m.serialize_entry(k, v)?;
                    }
                }
            }
            Some(Payload::Function { info, name, args }) => {
                if let Some(i) = info {
                    for (k, v) in i.as_map() {
                        if k != "function" && k != "host" {
                            m.serialize_entry(k, v)?;
                        }
                    }
                }
                m.serialize_entry(
                    "function",
                    &FunctionStart {
                        name,
                        args: args.as_deref(),
                    },
                )?;
            }
            Some(Payload::Result(r)) => m.serialize_entry("function", &FunctionResult(r))?,
            Some(Payload::Error { etype, message }) => {
                m.serialize_entry("etype", etype)?;
                m.serialize_entry("message", message)?;
            }
            Some(Payload::Cancelled) => m.serialize_entry("cancelled", &true)?,
            Some(Payload::Request(r)) => r.serialize_entries(&mut m)?,
            Some(Payload::Response(r)) => r.serialize_entries(&mut m)?,
        }
        m.serialize_entry("host", &**host)?;
        m.end()
    }
}

struct FunctionStart<'a> {
    name: &'a str,
    args: Option<&'a str>,
}

impl serde::Serialize for FunctionStart<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("name", self.name)?;
        if let Some(a) = self.args {
            m.serialize_entry("args", a)?;
            // Rust has no keyword arguments; the key keeps osprofiler's shape.
            m.serialize_entry("kwargs", "{}")?;
        }
        m.end()
    }
}

struct FunctionResult<'a>(&'a str);

impl serde::Serialize for FunctionResult<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(1))?;
        m.serialize_entry("result", self.0)?;
        m.end()
    }
}
