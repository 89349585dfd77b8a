//! A span's fields as JSON values for a point's `info`, and the few fields
//! the layer reads itself.

use std::fmt::{self, Write as _};

use serde_json::{Map, Number, Value};
use tracing_core::field::{Field, Visit};

/// Overrides the point's name: `info_span!("query", osprofiler.name = "db")`.
pub(super) const NAME_FIELD: &str = "osprofiler.name";
/// `false` makes the span a carrier of the trace instead of a point.
pub(super) const POINT_FIELD: &str = "osprofiler.point";
/// On a params span (see `params.rs`): how many values it carries.
pub(super) const PARAMS_FIELD: &str = "osprofiler.params";
/// Marks the point as failed (the convention of `#[instrument(err)]` too).
pub(super) const ERROR_FIELD: &str = "error";
/// Where a field named `host` goes (osprofiler's `info.host` is the host that
/// recorded the event).
pub(super) const HOST_FIELD: &str = "span.host";

/// What an `error` field said.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum ErrorField {
    /// `error = false`: no error (clears an earlier one).
    Cleared,
    /// An error, with its message (empty for `error = true`).
    Set(String),
}

/// Collects fields: into `info` (when `keep`), and the layer's own fields
/// aside.
pub(super) struct Fields {
    keep: bool,
    pub(super) info: Map<String, Value>,
    pub(super) name: Option<String>,
    pub(super) point: Option<bool>,
    pub(super) error: Option<ErrorField>,
}

impl Fields {
    pub(super) fn new(keep: bool) -> Fields {
        Fields {
            keep,
            info: Map::new(),
            name: None,
            point: None,
            error: None,
        }
    }

    fn put(&mut self, field: &Field, value: Value) {
        match field.name() {
            NAME_FIELD => {
                self.name = match value {
                    Value::String(s) => Some(s),
                    other => Some(other.to_string()),
                }
            }
            POINT_FIELD => self.point = Some(value != Value::Bool(false)),
            ERROR_FIELD => {
                self.error = Some(match value {
                    Value::Bool(false) | Value::Null => ErrorField::Cleared,
                    Value::Bool(true) => ErrorField::Set(String::new()),
                    Value::String(s) => ErrorField::Set(s),
                    other => ErrorField::Set(other.to_string()),
                })
            }
            // `info.host` is the recording host, filled in by the notifier.
            "host" if self.keep => {
                self.info.insert(HOST_FIELD.to_owned(), value);
            }
            name if self.keep => {
                self.info.insert(name.to_owned(), value);
            }
            _ => {}
        }
    }

    /// Whether `field` is worth a conversion (skips formatting `Debug` values
    /// that would be dropped).
    fn wants(&self, field: &Field) -> bool {
        self.keep || matches!(field.name(), NAME_FIELD | POINT_FIELD | ERROR_FIELD)
    }
}

impl Visit for Fields {
    fn record_f64(&mut self, field: &Field, value: f64) {
        // NaN and infinities have no JSON number: keep their text.
        let v =
            Number::from_f64(value).map_or_else(|| Value::String(value.to_string()), Value::Number);
        self.put(field, v);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::from(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::from(value));
    }

    fn record_i128(&mut self, field: &Field, value: i128) {
        let v = i64::try_from(value).map_or_else(|_| Value::String(value.to_string()), Value::from);
        self.put(field, v);
    }

    fn record_u128(&mut self, field: &Field, value: u128) {
        let v = u64::try_from(value).map_or_else(|_| Value::String(value.to_string()), Value::from);
        self.put(field, v);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::Bool(value));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if self.wants(field) {
            self.put(field, Value::String(value.to_owned()));
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        if self.wants(field) {
            self.put(field, Value::String(value.to_string()));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.wants(field) {
            let mut s = String::new();
            let _ = write!(s, "{value:?}");
            self.put(field, Value::String(s));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    struct Probe;
    static PROBE: Probe = Probe;
    static FIELDS: &[&str] = &[
        "s", "n", "u", "big", "f", "nan", "b", "d", "error", NAME_FIELD,
    ];
    static META: tracing_core::Metadata<'static> = tracing_core::metadata! {
        name: "probe",
        target: "probe",
        level: tracing_core::Level::INFO,
        fields: FIELDS,
        callsite: &PROBE,
        kind: tracing_core::metadata::Kind::SPAN,
    };
    impl tracing_core::Callsite for Probe {
        fn set_interest(&self, _: tracing_core::Interest) {}
        fn metadata(&self) -> &tracing_core::Metadata<'_> {
            &META
        }
    }

    #[test]
    fn values_become_json() {
        let f = |name: &str| META.fields().field(name).unwrap();
        let mut v = Fields::new(true);
        v.record_str(&f("s"), "text");
        v.record_i64(&f("n"), -3);
        v.record_u64(&f("u"), 7);
        v.record_u128(&f("big"), u128::MAX);
        v.record_f64(&f("f"), 1.5);
        v.record_f64(&f("nan"), f64::NAN);
        v.record_bool(&f("b"), true);
        v.record_debug(&f("d"), &vec![1, 2]);
        v.record_error(&f("error"), &std::fmt::Error);
        v.record_str(&f(NAME_FIELD), "db");
        assert_eq!(
            Value::Object(v.info),
            json!({"s": "text", "n": -3, "u": 7, "big": u128::MAX.to_string(), "f": 1.5,
                   "nan": "NaN", "b": true, "d": "[1, 2]"})
        );
        assert_eq!(v.name.as_deref(), Some("db"));
        assert_eq!(
            v.error,
            Some(ErrorField::Set(
                "an error occurred when formatting an argument".into()
            ))
        );
        let mut quiet = Fields::new(false);
        quiet.record_debug(&f("d"), &1);
        quiet.record_bool(&f("error"), false);
        assert!(quiet.info.is_empty());
        assert_eq!(quiet.error, Some(ErrorField::Cleared));
    }
}
