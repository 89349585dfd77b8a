//! MySQL and MariaDB through the `mysql` crate's blocking client (the exporter thread
//! may block; every socket operation is bounded by the socket timeout).

use std::time::Duration;

use mysql::prelude::Queryable;
use mysql::{Conn, OptsBuilder, Params, Value};

use super::summaries::{BatchTrace, MEMBER, SUMMARY};
use super::{COLUMNS, INDEXED, READ_COLUMNS, ROWS_PER_INSERT, ReadRow, Row, TABLE, one_line};
use crate::{SqlTarget, SqlTls};

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

/// The summary tables (see `summaries`).
fn create_summary_tables() -> [String; 2] {
    [
        format!(
            "CREATE TABLE IF NOT EXISTS {SUMMARY} (\
             base_id VARCHAR(255) NOT NULL PRIMARY KEY, first_us BIGINT NOT NULL, \
             last_us BIGINT NOT NULL, points BIGINT NOT NULL, events BIGINT NOT NULL, \
             error BIGINT NOT NULL, root_rank BIGINT NOT NULL, root_service TEXT NOT NULL, \
             root_category TEXT NOT NULL, root_name TEXT NOT NULL, KEY ix_{SUMMARY}_first_us (first_us))"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {MEMBER} (base_id VARCHAR(255) NOT NULL, \
             kind CHAR(1) NOT NULL, value VARCHAR(255) NOT NULL, PRIMARY KEY (base_id, kind, value))"
        ),
    ]
}

/// Traces' summaries a statement upserts at most.
const UPSERT_ROWS: usize = 1000;

/// `n` traces' summaries merged with what a batch says of them, in one statement (a
/// round trip per trace was most of the summaries' cost). MySQL assigns left to right,
/// later assignments seeing the new values: the root's text before its rank.
fn upsert_sql(n: usize) -> String {
    let better = "VALUES(root_rank) < root_rank";
    format!(
        "INSERT INTO {SUMMARY} (base_id, first_us, last_us, points, events, error, \
         root_rank, root_service, root_category, root_name) \
         VALUES {} ON DUPLICATE KEY UPDATE \
         first_us = LEAST(first_us, VALUES(first_us)), \
         last_us = GREATEST(last_us, VALUES(last_us)), \
         points = points + VALUES(points), events = events + VALUES(events), \
         error = GREATEST(error, VALUES(error)), \
         root_service = IF({better}, VALUES(root_service), root_service), \
         root_category = IF({better}, VALUES(root_category), root_category), \
         root_name = IF({better}, VALUES(root_name), root_name), \
         root_rank = LEAST(root_rank, VALUES(root_rank))",
        vec!["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"; n].join(", ")
    )
}

fn as_text(v: Value) -> Option<String> {
    match v {
        Value::NULL => None,
        Value::Bytes(b) => Some(String::from_utf8_lossy(&b).into_owned()),
        Value::Int(i) => Some(i.to_string()),
        Value::UInt(u) => Some(u.to_string()),
        Value::Float(f) => Some(f.to_string()),
        Value::Double(d) => Some(d.to_string()),
        other => Some(other.as_sql(true)),
    }
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

impl MySql {
    /// `query(placeholders)` run for each chunk of at most 1,000 of `ids` (one `?` each:
    /// a statement's parameter list kept well under the server's limits), rows gathered.
    fn in_chunks<T: mysql::prelude::FromRow>(
        &mut self,
        ids: &[String],
        query: impl Fn(&str) -> String,
    ) -> Result<Vec<T>, String> {
        let mut out = Vec::new();
        for chunk in ids.chunks(1000) {
            let sql = query(&vec!["?"; chunk.len()].join(", "));
            let params: Vec<Value> = chunk.iter().map(|s| Value::from(s.as_str())).collect();
            let got: Vec<mysql::Row> = self
                .conn
                .exec(sql, Params::Positional(params))
                .map_err(my_error)?;
            out.extend(rows::<T>(got)?);
        }
        Ok(out)
    }
}

/// A trace's events, `?` its base_id (shared with the `query_plans` test).
pub(crate) fn trace_rows_sql() -> String {
    format!(
        // The base_id index holds the primary key, so it gives a trace's rows in `id`
        // order; MariaDB's planner would rather scan the whole table once a trace is a
        // few percent of it (measured: 343 ms instead of 50 for a 10,000-point trace).
        "SELECT {} FROM {TABLE} FORCE INDEX (ix_{TABLE}_base_id) WHERE base_id = ? ORDER BY id",
        READ_COLUMNS.replace("timestamp", "`timestamp`")
    )
}

/// A trace's row ids, `?` its base_id: read off the base_id index alone (shared with the
/// `query_plans` test).
pub(crate) fn trace_ids_sql() -> String {
    format!("SELECT id FROM {TABLE} FORCE INDEX (ix_{TABLE}_base_id) WHERE base_id = ? ORDER BY id")
}

/// Ids closer than this are fetched as one range of the primary key: at most this many
/// rows of other traces read in between.
const RANGE_GAP: i64 = 8;
/// Most ranges in one statement.
const MAX_RANGES: usize = 2_000;

/// The ranges of the primary key that hold `ids` (ascending), when reading them is
/// cheaper than looking each row up from the base_id index: at most twice as many rows
/// as the trace has, in at most [`MAX_RANGES`] ranges. `None`: look the rows up.
///
/// Why: the base_id index holds the primary key, so each row it finds is one more
/// descent of the clustered index; 200,000 of them cost MariaDB 0.3–0.5 s of CPU, where
/// reading the same rows as a range of the primary key takes 0.11–0.16 s. Our sink writes
/// a trace's events in batches, so a big trace's rows lie in few ranges.
pub(crate) fn id_ranges(ids: &[i64]) -> Option<Vec<(i64, i64)>> {
    let mut ranges: Vec<(i64, i64)> = Vec::new();
    let mut span: u64 = 0;
    for &id in ids {
        match ranges.last_mut() {
            Some(r) if id >= r.1 && id - r.1 <= RANGE_GAP => {
                span += (id - r.1) as u64;
                r.1 = id;
            }
            _ => {
                if ranges.len() == MAX_RANGES {
                    return None;
                }
                span += 1;
                ranges.push((id, id));
            }
        }
    }
    (!ranges.is_empty() && span <= 2 * ids.len() as u64).then_some(ranges)
}

/// A trace's events from ranges of the primary key (integers only: nothing to escape),
/// `?` its base_id.
fn ranged_rows_sql(ranges: &[(i64, i64)]) -> String {
    let mut sql = format!(
        "SELECT {} FROM {TABLE} FORCE INDEX (PRIMARY) WHERE base_id = ? AND (",
        READ_COLUMNS.replace("timestamp", "`timestamp`")
    );
    for (i, (lo, hi)) in ranges.iter().enumerate() {
        if i > 0 {
            sql.push_str(" OR ");
        }
        sql.push_str(&format!("id BETWEEN {lo} AND {hi}"));
    }
    sql.push(')');
    sql
}

fn rows<T: mysql::prelude::FromRow>(rows: Vec<mysql::Row>) -> Result<Vec<T>, String> {
    rows.into_iter()
        .map(|r| mysql::from_row_opt::<T>(r).map_err(|e| format!("unexpected row: {e}")))
        .collect()
}

/// The mysql crate's TLS options for the target (`None`: plain TCP), and the file of
/// roots they name, kept until the connection is made. `PREFERRED` asks for TLS too: the
/// caller falls back to plain TCP when the server has none.
fn ssl_opts(t: &SqlTarget) -> Result<(Option<mysql::SslOpts>, Option<RootsFile>), String> {
    #[cfg(feature = "tls")]
    {
        if t.tls == SqlTls::Disable {
            return Ok((None, None));
        }
        // PREFERRED and REQUIRED verify nothing (MySQL's meaning), so need no roots.
        let verify = matches!(t.tls, SqlTls::VerifyCa | SqlTls::VerifyFull);
        let (path, file) = match &t.ca_file {
            Some(ca) => {
                // Read here, so a bad file is reported as such and not as a failed handshake.
                crate::tls::root_certs(Some(ca), "ssl_ca")?;
                (Some(ca.clone()), None)
            }
            None if verify => {
                let file = RootsFile::system()?;
                (Some(file.0.clone()), Some(file))
            }
            None => (None, None),
        };
        // The crate reads the files itself while it connects (paths only): read here
        // too, so that a bad file is reported as such, by our rules, and not as a failed
        // handshake.
        let identity = match (&t.cert_file, &t.key_file) {
            (Some(cert), Some(key)) => {
                crate::tls::client_pem(cert, Some(key))?;
                Some(mysql::ClientIdentity::new(cert.clone(), key.clone()))
            }
            _ => None,
        };
        // The crate trusts its bundled Mozilla roots besides the file's: CA file or the
        // system's roots (as our other TLS clients), and those.
        let opts = mysql::SslOpts::default()
            .with_client_identity(identity)
            .with_root_cert_path(path)
            .with_danger_accept_invalid_certs(!verify)
            .with_danger_skip_domain_validation(t.tls == SqlTls::VerifyCa);
        Ok((Some(opts), file))
    }
    #[cfg(not(feature = "tls"))]
    {
        // PREFERRED is plain TCP here, as against a server without TLS; not with a
        // client certificate, which is not dropped silently.
        if !t.tls.required() && t.cert_file.is_none() {
            return Ok((None, None));
        }
        Err(format!(
            "ssl_mode {:?}: TLS needs osprofiler-store's `tls` feature",
            t.tls
        ))
    }
}

/// The system's roots (rustls-native-certs) as a PEM file of our own, removed on drop.
/// The mysql crate (28) takes roots only as a file path, read while it connects: no
/// certificates from memory, no rustls configuration of ours. Created anew (never an
/// existing file: another user could have put other roots there), readable by us only.
#[cfg(feature = "tls")]
struct RootsFile(std::path::PathBuf);

#[cfg(not(feature = "tls"))]
enum RootsFile {}

#[cfg(feature = "tls")]
impl RootsFile {
    fn system() -> Result<RootsFile, String> {
        use base64::Engine;
        use std::io::Write;
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNT: AtomicU64 = AtomicU64::new(0);

        let mut pem = String::new();
        for cert in crate::tls::root_certs(None, "ssl_ca")? {
            let b64 = base64::engine::general_purpose::STANDARD.encode(cert.as_ref());
            pem.push_str("-----BEGIN CERTIFICATE-----\n");
            // Only ASCII: chunks of 64 bytes are 64 characters.
            for line in b64.as_bytes().chunks(64) {
                pem.push_str(&String::from_utf8_lossy(line));
                pem.push('\n');
            }
            pem.push_str("-----END CERTIFICATE-----\n");
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let dir = std::env::temp_dir();
        let mut last = None;
        for _ in 0..8 {
            let n = COUNT.fetch_add(1, Ordering::Relaxed);
            let path = dir.join(format!(
                "osprofiler-mysql-roots-{}-{n}-{nanos}.pem",
                std::process::id()
            ));
            match options.open(&path) {
                Ok(mut f) => {
                    let file = RootsFile(path);
                    f.write_all(pem.as_bytes()).map_err(|e| {
                        format!("TLS setup: cannot write {}: {e}", file.0.display())
                    })?;
                    return Ok(file);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
                Err(e) => {
                    return Err(format!("TLS setup: cannot create {}: {e}", path.display()));
                }
            }
        }
        Err(format!(
            "TLS setup: cannot create a file of CA certificates in {}: {}",
            dir.display(),
            last.map_or_else(String::new, |e| e.to_string())
        ))
    }
}

#[cfg(feature = "tls")]
impl Drop for RootsFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
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
        // The file of roots (if any) lives until this returns: the crate reads it in `new`.
        let (ssl, _roots) = ssl_opts(t)?;
        let preferred = ssl.is_some() && t.tls == SqlTls::Prefer;
        let conn = match Conn::new(opts.clone().ssl_opts(ssl)) {
            // PREFERRED (MySQL's, pymysql's meaning): plain TCP when the server has no TLS.
            Err(mysql::Error::DriverError(mysql::DriverError::TlsNotSupported)) if preferred => {
                log::debug!(
                    "osprofiler: {} has no TLS: plain TCP (ssl_mode=PREFERRED)",
                    t.host
                );
                Conn::new(opts)
            }
            other => other,
        };
        let mut conn = conn.map_err(my_error)?;
        conn.query_drop(create_table()).map_err(my_error)?;
        for t in create_summary_tables() {
            conn.query_drop(t).map_err(my_error)?;
        }
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

    fn insert(&mut self, rows: &[Row], traces: &[BatchTrace]) -> Result<(), String> {
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
        for chunk in traces.chunks(UPSERT_ROWS) {
            let params: Vec<Value> = chunk
                .iter()
                .flat_map(|t| {
                    [
                        Value::from(t.base_id.as_str()),
                        Value::from(t.first_us),
                        Value::from(t.last_us),
                        Value::from(t.points),
                        Value::from(t.events),
                        Value::from(t.error),
                        Value::from(t.root_rank),
                        Value::from(t.root_service.as_str()),
                        Value::from(t.root_category.as_str()),
                        Value::from(t.root_name.as_str()),
                    ]
                })
                .collect();
            tx.exec_drop(upsert_sql(chunk.len()), Params::Positional(params))
                .map_err(my_error)?;
        }
        let members: Vec<Value> = traces
            .iter()
            .flat_map(|t| {
                t.members.iter().flat_map(|(kind, value)| {
                    [
                        Value::from(t.base_id.as_str()),
                        Value::from(*kind),
                        Value::from(value.as_str()),
                    ]
                })
            })
            .collect();
        for chunk in members.chunks(3 * 10_000) {
            let sql = format!(
                "INSERT IGNORE INTO {MEMBER} (base_id, kind, value) VALUES {}",
                vec!["(?, ?, ?)"; chunk.len() / 3].join(", ")
            );
            tx.exec_drop(sql, Params::Positional(chunk.to_vec()))
                .map_err(my_error)?;
        }
        tx.commit().map_err(my_error)
    }

    fn text_rows(&mut self, sql: &str) -> Result<Vec<Vec<Option<String>>>, String> {
        let got: Vec<mysql::Row> = self.conn.query(sql).map_err(my_error)?;
        Ok(got
            .into_iter()
            .map(|r| r.unwrap().into_iter().map(as_text).collect())
            .collect())
    }

    fn members(&mut self, ids: &[String]) -> Result<Vec<(String, String, String)>, String> {
        self.in_chunks(ids, |marks| {
            format!("SELECT base_id, kind, value FROM {MEMBER} WHERE base_id IN ({marks})")
        })
    }

    fn trace_rows(
        &mut self,
        base_id: &str,
        each: &mut dyn FnMut(&ReadRow<'_>),
    ) -> Result<(), String> {
        // The ids first (the index alone), then the rows by ranges of the primary key
        // when the ids are close together ([`id_ranges`]), else through the index.
        let ids: Vec<i64> = self
            .conn
            .exec(trace_ids_sql(), (base_id,))
            .map_err(my_error)?;
        if ids.is_empty() {
            return Ok(());
        }
        let sql = match id_ranges(&ids) {
            Some(ranges) => ranged_rows_sql(&ranges),
            None => trace_rows_sql(),
        };
        drop(ids);
        // Rows as they arrive, each column borrowed from the row: not every row collected
        // first, nor eight strings converted out of each.
        let result = self.conn.exec_iter(sql, (base_id,)).map_err(my_error)?;
        for row in result {
            let row = row.map_err(my_error)?;
            let col = |i: usize| -> Result<Option<&str>, String> {
                match row.as_ref(i) {
                    None | Some(Value::NULL) => Ok(None),
                    Some(Value::Bytes(b)) => std::str::from_utf8(b)
                        .map(Some)
                        .map_err(|_| format!("unexpected row: column {i} is not UTF-8")),
                    Some(other) => Err(format!("unexpected row: column {i} is {other:?}")),
                }
            };
            each(&ReadRow {
                timestamp: col(0)?,
                base_id: col(1)?,
                parent_id: col(2)?,
                trace_id: col(3)?,
                project: col(4)?,
                service: col(5)?,
                name: col(6)?,
                data: col(7)?,
            });
        }
        Ok(())
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
        self.in_chunks(base_ids, |marks| {
            format!(
                "SELECT base_id, MIN(`timestamp`) FROM {TABLE} \
                 WHERE base_id IN ({marks}) AND `timestamp` IS NOT NULL GROUP BY base_id"
            )
        })
    }

    fn is_transient(error: &str) -> bool {
        !(error.starts_with("ERROR ") || super::tls_refused(error))
    }
}

#[cfg(all(test, feature = "tls"))]
mod tests {
    use super::*;

    /// The file holds the system's roots, as PEM the mysql crate reads, is ours only,
    /// and goes with its guard.
    #[test]
    fn roots_file_holds_the_system_roots() {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let Ok(want) = crate::tls::root_certs(None, "ssl_ca") else {
            eprintln!("no system roots here: nothing to check");
            return;
        };
        let file = RootsFile::system().unwrap();
        let path = file.0.clone();
        let got = CertificateDer::pem_file_iter(&path)
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        assert_eq!(got, want);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let other = RootsFile::system().unwrap();
        assert_ne!(other.0, path, "a file of its own each time");
        drop(file);
        assert!(!path.exists());
    }
}

#[cfg(test)]
mod range_tests {
    use super::{MAX_RANGES, RANGE_GAP, id_ranges, ranged_rows_sql};

    #[test]
    fn close_ids_make_ranges_and_scattered_ones_do_not() {
        // One batch of a trace: one range.
        let ids: Vec<i64> = (1..=200_000).collect();
        assert_eq!(id_ranges(&ids), Some(vec![(1, 200_000)]));
        // Every other row another trace's: still one range, twice the rows read.
        let ids: Vec<i64> = (1..=1000).map(|i| 2 * i).collect();
        assert_eq!(id_ranges(&ids), Some(vec![(2, 2000)]));
        // Two batches far apart: two ranges.
        let ids: Vec<i64> = (1..=100).chain(10_001..=10_100).collect();
        assert_eq!(id_ranges(&ids), Some(vec![(1, 100), (10_001, 10_100)]));
        // One row in three ours: more than twice as many rows to read; look them up.
        let ids: Vec<i64> = (1..=1000).map(|i| 3 * i).collect();
        assert_eq!(id_ranges(&ids), None);
        // Gaps wider than RANGE_GAP: a range each, too many of them.
        let ids: Vec<i64> = (0..=MAX_RANGES as i64)
            .map(|i| i * (RANGE_GAP + 1))
            .collect();
        assert_eq!(id_ranges(&ids), None);
        // Not ascending (never from the ids statement): ranges still cover every id.
        assert_eq!(id_ranges(&[5, 3, 4]), Some(vec![(5, 5), (3, 4)]));
        assert_eq!(id_ranges(&[]), None);
        let sql = ranged_rows_sql(&[(1, 100), (10_001, 10_100)]);
        assert!(
            sql.ends_with(
                "FORCE INDEX (PRIMARY) WHERE base_id = ? AND (id BETWEEN 1 AND 100 OR id BETWEEN 10001 AND 10100)"
            ),
            "{sql}"
        );
    }
}
