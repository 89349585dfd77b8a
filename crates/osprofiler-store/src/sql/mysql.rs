//! MySQL and MariaDB through the `mysql` crate's blocking client (the exporter thread
//! may block; every socket operation is bounded by the socket timeout).

use std::time::Duration;

use mysql::prelude::Queryable;
use mysql::{Conn, OptsBuilder, Params, Value};

use super::{COLUMNS, INDEXED, READ_COLUMNS, ROWS_PER_INSERT, ReadRow, Row, TABLE, one_line};
use crate::SqlTarget;

/// SQLAlchemy 1.4's DDL for Python's table on MySQL (`Integer` primary key →
/// `INTEGER AUTO_INCREMENT`, `String(n)` → `VARCHAR(n)`, `JSON` → `JSON`, which MariaDB
/// keeps as `LONGTEXT` with a `json_valid` check); its indexes are made apart (MySQL has no
/// `CREATE INDEX IF NOT EXISTS`).
fn create_table() -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {TABLE} (\
         id INTEGER NOT NULL AUTO_INCREMENT, `timestamp` VARCHAR(26), base_id VARCHAR(255), \
         parent_id VARCHAR(255), trace_id VARCHAR(255), project VARCHAR(255), \
         host VARCHAR(255), service VARCHAR(255), name VARCHAR(255), data JSON, \
         PRIMARY KEY (id))"
    )
}

pub(crate) struct MySql {
    conn: Conn,
}

fn my_error(e: mysql::Error) -> String {
    one_line(&match e {
        // The server's answer: refused, not unreachable (see `is_transient`).
        mysql::Error::MySqlError(e) => format!("ERROR {} ({}): {}", e.code, e.state, e.message),
        other => other.to_string(),
    })
}

fn text(v: &Option<String>) -> Value {
    match v {
        Some(s) => Value::Bytes(s.as_bytes().to_vec()),
        None => Value::NULL,
    }
}

fn rows<T: mysql::prelude::FromRow>(rows: Vec<mysql::Row>) -> Result<Vec<T>, String> {
    rows.into_iter()
        .map(|r| mysql::from_row_opt::<T>(r).map_err(|e| format!("unexpected row: {e}")))
        .collect()
}

impl super::Client for MySql {
    fn connect(t: &SqlTarget, timeout: Duration) -> Result<Self, String> {
        let opts = OptsBuilder::new()
            .ip_or_hostname(Some(t.host.clone()))
            .tcp_port(t.port)
            .user(t.user.clone())
            .pass(t.password.clone())
            .db_name(t.database.clone())
            // Not the server's Unix socket behind our back: the address given is used.
            .prefer_socket(false)
            .tcp_connect_timeout(Some(timeout))
            .read_timeout(Some(timeout))
            .write_timeout(Some(timeout));
        let mut conn = Conn::new(opts).map_err(my_error)?;
        conn.query_drop(create_table()).map_err(my_error)?;
        let have: Vec<String> = conn
            .exec(
                "SELECT DISTINCT index_name FROM information_schema.statistics \
                 WHERE table_schema = DATABASE() AND table_name = ?",
                (TABLE,),
            )
            .map_err(my_error)?;
        for c in INDEXED {
            let name = format!("ix_{TABLE}_{c}");
            if have.iter().any(|h| h.eq_ignore_ascii_case(&name)) {
                continue;
            }
            match conn.query_drop(format!("CREATE INDEX {name} ON {TABLE} (`{c}`)")) {
                Ok(()) => {}
                // Another process made it meanwhile (ER_DUP_KEYNAME).
                Err(mysql::Error::MySqlError(e)) if e.code == 1061 => {}
                Err(e) => return Err(my_error(e)),
            }
        }
        Ok(MySql { conn })
    }

    fn insert(&mut self, rows: &[Row]) -> Result<(), String> {
        let mut tx = self
            .conn
            .start_transaction(mysql::TxOpts::default())
            .map_err(my_error)?;
        let cols = COLUMNS.map(|c| format!("`{c}`")).join(", ");
        let one = format!("({})", vec!["?"; COLUMNS.len()].join(", "));
        for chunk in rows.chunks(ROWS_PER_INSERT) {
            let sql = format!(
                "INSERT INTO {TABLE} ({cols}) VALUES {}",
                vec![one.as_str(); chunk.len()].join(", ")
            );
            let params: Vec<Value> = chunk
                .iter()
                .flat_map(|r| r.values.iter().map(text))
                .collect();
            tx.exec_drop(sql, Params::Positional(params))
                .map_err(my_error)?;
        }
        tx.commit().map_err(my_error)
    }

    fn trace_rows(&mut self, base_id: &str) -> Result<Vec<ReadRow>, String> {
        let sql = format!(
            // The base_id index holds the primary key, so it gives a trace's rows in `id`
            // order; MariaDB's planner would rather scan the whole table once a trace is a
            // few percent of it (measured: 343 ms instead of 50 for a 10,000-point trace).
            "SELECT {} FROM {TABLE} FORCE INDEX (ix_{TABLE}_base_id) WHERE base_id = ? ORDER BY id",
            READ_COLUMNS.replace("timestamp", "`timestamp`")
        );
        let got: Vec<mysql::Row> = self.conn.exec(sql, (base_id,)).map_err(my_error)?;
        type Cols = (
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
        );
        Ok(rows::<Cols>(got)?
            .into_iter()
            .map(|r| ReadRow {
                timestamp: r.0,
                base_id: r.1,
                parent_id: r.2,
                trace_id: r.3,
                project: r.4,
                service: r.5,
                name: r.6,
                data: r.7,
            })
            .collect())
    }

    fn traces(&mut self, limit: Option<usize>) -> Result<Vec<(String, String)>, String> {
        let limit = limit.map_or(u64::MAX, |l| l as u64);
        let sql = format!(
            "SELECT base_id, MIN(`timestamp`) AS started FROM {TABLE} \
             WHERE base_id IS NOT NULL AND `timestamp` IS NOT NULL \
             GROUP BY base_id ORDER BY started DESC, base_id DESC LIMIT ?"
        );
        let got: Vec<mysql::Row> = self.conn.exec(sql, (limit,)).map_err(my_error)?;
        rows(got)
    }

    fn error_candidates(&mut self) -> Result<Vec<(String, String)>, String> {
        let sql = format!(
            "SELECT base_id, data FROM {TABLE} \
             WHERE name LIKE '%-stop' AND base_id IS NOT NULL AND LOCATE('etype', data) > 0"
        );
        let got: Vec<mysql::Row> = self.conn.query(sql).map_err(my_error)?;
        rows(got)
    }

    fn starts(&mut self, base_ids: &[String]) -> Result<Vec<(String, String)>, String> {
        let mut out = Vec::new();
        for chunk in base_ids.chunks(1000) {
            let sql = format!(
                "SELECT base_id, MIN(`timestamp`) FROM {TABLE} \
                 WHERE base_id IN ({}) AND `timestamp` IS NOT NULL GROUP BY base_id",
                vec!["?"; chunk.len()].join(", ")
            );
            let params: Vec<Value> = chunk.iter().map(|s| Value::from(s.as_str())).collect();
            let got: Vec<mysql::Row> = self
                .conn
                .exec(sql, Params::Positional(params))
                .map_err(my_error)?;
            out.extend(rows::<(String, String)>(got)?);
        }
        Ok(out)
    }

    fn is_transient(error: &str) -> bool {
        !error.starts_with("ERROR ")
    }
}
