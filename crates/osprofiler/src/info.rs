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
