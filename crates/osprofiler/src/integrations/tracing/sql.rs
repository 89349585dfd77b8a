//! sqlx's statement events as `db` points.
//!
//! sqlx 0.9 (`QueryLogger` in sqlx-core, used by every driver) ends each
//! statement with one `tracing` event of target `sqlx::query` (at `DEBUG`
//! unless the connection's log settings say otherwise) carrying:
//! - `summary`: the first four words of the SQL, with ` …` when cut;
//! - `db.statement`: the whole SQL between newlines when `summary` was cut,
//!   else empty;
//! - `rows_affected`, `rows_returned`, `elapsed` (`Debug`) and `elapsed_secs`
//!   (seconds, `f64`), and for slow statements a message and
//!   `slow_threshold`.
//!
//! Not in it: the bound parameters, and whether the statement failed (the
//! error goes to the caller only).

use std::fmt;
use std::time::Duration;

use serde_json::{Value, json};
use tracing_core::Event;
use tracing_core::field::{Field, Visit};

use crate::info::Info;
use crate::notifier::Payload;

/// The target of sqlx's statement events.
pub(super) const TARGET: &str = "sqlx::query";

/// The name of statement points, as osprofiler's SQLAlchemy hook names them.
const POINT: &str = "db";

#[derive(Default)]
struct Statement {
    summary: Option<String>,
    full: Option<String>,
    rows_affected: Option<u64>,
    rows_returned: Option<u64>,
    elapsed_secs: Option<f64>,
}

impl Statement {
    /// The SQL text: the whole statement when sqlx gave it, else the summary
    /// (which then is the whole statement).
    fn text(&mut self) -> Option<String> {
        if let Some(full) = self.full.take().filter(|s| !s.is_empty()) {
            // sqlx writes "\n\n{sql}\n" for display; the SQL is what is inside.
            let inner = full.strip_prefix("\n\n").unwrap_or(&full);
            let inner = inner.strip_suffix('\n').unwrap_or(inner);
            return Some(inner.to_owned());
        }
        self.summary.take()
    }
}

impl Visit for Statement {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "summary" => self.summary = Some(value.to_owned()),
            "db.statement" => self.full = Some(value.to_owned()),
            _ => {}
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        match field.name() {
            "rows_affected" => self.rows_affected = Some(value),
            "rows_returned" => self.rows_returned = Some(value),
            _ => {}
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        if let Ok(v) = u64::try_from(value) {
            self.record_u64(field, v);
        }
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        if field.name() == "elapsed_secs" {
            self.elapsed_secs = Some(value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        // The text fields arrive as `&str` today; take them from `Debug` too
        // (quoted) should a release pass them another way.
        if matches!(field.name(), "summary" | "db.statement") {
            let text = format!("{value:?}");
            let text = match serde_json::from_str::<String>(&text) {
                Ok(unquoted) => unquoted,
                Err(_) => text,
            };
            self.record_str(field, &text);
        }
    }
}

/// Records the statement `event` reports as a `db` point under the current
/// point: `info.db = {statement, params}` at start (`params` as the caller
/// gave them, else `null`: sqlx does not report them), the row counts at
/// stop; started `elapsed` before now.
pub(super) fn record(event: &Event<'_>, params: Option<&[Value]>) {
    let mut s = Statement::default();
    event.record(&mut s);
    let Some(statement) = s.text() else {
        return;
    };
    let elapsed = s
        .elapsed_secs
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
        .unwrap_or(Duration::ZERO);
    let params = params.map_or(Value::Null, |p| Value::Array(p.to_vec()));
    let start = Info::new().with("db", json!({"statement": statement, "params": params}));
    let mut counts = serde_json::Map::new();
    if let Some(n) = s.rows_affected {
        counts.insert("rows_affected".into(), n.into());
    }
    if let Some(n) = s.rows_returned {
        counts.insert("rows_returned".into(), n.into());
    }
    let stop = (!counts.is_empty()).then(|| Payload::Info(Info::new().with("db", counts)));
    crate::explicit::record_finished(POINT, start, stop, elapsed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statement_text_from_sqlx_fields() {
        let mut short = Statement {
            summary: Some("SELECT 1".into()),
            full: Some(String::new()),
            ..Statement::default()
        };
        assert_eq!(short.text().as_deref(), Some("SELECT 1"));
        let mut long = Statement {
            summary: Some("SELECT a, b FROM …".into()),
            full: Some("\n\nSELECT a, b FROM t\nWHERE x = ?\n".into()),
            ..Statement::default()
        };
        assert_eq!(
            long.text().as_deref(),
            Some("SELECT a, b FROM t\nWHERE x = ?")
        );
        assert_eq!(Statement::default().text(), None);
    }
}
