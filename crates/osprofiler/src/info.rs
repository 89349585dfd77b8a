//! The `info` a point carries: free-form JSON, as osprofiler's `info` dicts.

use serde_json::{Map, Value};

/// Extra information recorded with a point (`info` in osprofiler's events):
/// a JSON object whose keys keep their insertion order.
///
/// Build one from a `serde_json::json!` object, from key/value pairs, or step
/// by step:
///
/// ```
/// use osprofiler::Info;
/// let a: Info = serde_json::json!({"request": {"path": "/v2.1/servers"}}).into();
/// let b: Info = [("vm", "vm-1"), ("flavor", "m1.small")].into();
/// let c = Info::new().with("attempt", 2).with("host", "compute-1");
/// assert_eq!(c.as_map()["attempt"], 2);
/// # let _ = (a, b);
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Info(pub Map<String, Value>);

impl Info {
    /// An empty info object.
    pub fn new() -> Info {
        Info(Map::new())
    }

    /// Adds (or replaces) one key.
    pub fn with(mut self, key: impl Into<String>, value: impl Into<Value>) -> Info {
        self.0.insert(key.into(), value.into());
        self
    }

    /// Adds (or replaces) one key in place.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<Value>) {
        self.0.insert(key.into(), value.into());
    }

    /// The underlying JSON object.
    pub fn as_map(&self) -> &Map<String, Value> {
        &self.0
    }

    /// Whether no key is set.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<Map<String, Value>> for Info {
    fn from(m: Map<String, Value>) -> Info {
        Info(m)
    }
}

impl From<Value> for Info {
    /// An object is taken as is; `null` gives an empty info; any other value
    /// is kept under the key `"value"` rather than lost.
    fn from(v: Value) -> Info {
        match v {
            Value::Object(m) => Info(m),
            Value::Null => Info::new(),
            other => Info::new().with("value", other),
        }
    }
}

impl<K: Into<String>, V: Into<Value>, const N: usize> From<[(K, V); N]> for Info {
    fn from(pairs: [(K, V); N]) -> Info {
        Info(
            pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }
}

impl<K: Into<String>, V: Into<Value>> From<Vec<(K, V)>> for Info {
    fn from(pairs: Vec<(K, V)>) -> Info {
        Info(
            pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }
}

impl From<Option<Info>> for Info {
    fn from(o: Option<Info>) -> Info {
        o.unwrap_or_default()
    }
}

/// One value of a point's fields ([`point_with_fields`](crate::point_with_fields)):
/// text, a number or a flag. Copied as is when the point starts; the JSON is made
/// on the exporter thread, so a point with a few fields costs little more than a
/// bare one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Field<'a> {
    /// A JSON string.
    Str(&'a str),
    /// A signed integer.
    I64(i64),
    /// An unsigned integer.
    U64(u64),
    /// A float (`null` when not finite, as `serde_json` writes it).
    F64(f64),
    /// `true` or `false`.
    Bool(bool),
}

impl<'a> From<&'a str> for Field<'a> {
    fn from(s: &'a str) -> Field<'a> {
        Field::Str(s)
    }
}

impl<'a> From<&'a String> for Field<'a> {
    fn from(s: &'a String) -> Field<'a> {
        Field::Str(s)
    }
}

macro_rules! field_from {
    ($($t:ty => $v:ident as $as:ty),*) => {$(
        impl From<$t> for Field<'_> {
            fn from(n: $t) -> Self {
                Field::$v(<$as>::from(n))
            }
        }
    )*};
}
field_from!(i64 => I64 as i64, i32 => I64 as i64, u64 => U64 as u64, u32 => U64 as u64,
    f64 => F64 as f64, bool => Bool as bool);

impl From<usize> for Field<'_> {
    fn from(n: usize) -> Self {
        Field::U64(n as u64)
    }
}

/// The fields as [`Info`] (when there are too many to keep inline).
pub(crate) fn fields_info(fields: &[(&'static str, Field<'_>)]) -> Info {
    let mut m = Map::new();
    for (k, v) in fields {
        let v = match *v {
            Field::Str(s) => Value::from(s),
            Field::I64(n) => Value::from(n),
            Field::U64(n) => Value::from(n),
            Field::F64(f) => Value::from(f),
            Field::Bool(b) => Value::Bool(b),
        };
        m.insert((*k).to_owned(), v);
    }
    Info(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_become_the_info_they_stand_for() {
        let stmt = String::from("SELECT 1");
        let f = [
            ("statement", Field::from(&stmt)),
            ("rows", 3u32.into()),
            ("ratio", 0.5.into()),
            ("cached", false.into()),
        ];
        let want =
            serde_json::json!({"statement": "SELECT 1", "rows": 3, "ratio": 0.5, "cached": false});
        assert_eq!(Value::Object(fields_info(&f).0), want);
        // Repeated keys: the last value, at the first key's place, as `Info::with` does.
        let twice = [
            ("a", Field::I64(-1)),
            ("b", "x".into()),
            ("a", Field::F64(f64::NAN)),
        ];
        assert_eq!(
            fields_info(&twice),
            Info::new().with("a", Value::Null).with("b", "x")
        );
    }
}
