//! Events as osprofiler stores them: one `<name>-start` and one `<name>-stop`
//! per point.

use std::borrow::Cow;
use std::sync::Arc;

use serde::ser::SerializeMap;
use serde_json::{Map, Value};

use crate::id::Id;
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
    pub info: Map<String, Value>,
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
        self.info.get("host").and_then(Value::as_str)
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
            info: raw.info,
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
