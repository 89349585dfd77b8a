//! Redis (`redis://`, `rediss://`, `redissentinel://`, `rediscluster://`) in osprofiler 4.4.0's layout, so
//! Python services and tools read what we write and we read what they write:
//!
//! - `osprofiler_opt:<base_id>`: a list of the trace's events (osprofiler JSON), newest
//!   first (`LPUSH`);
//! - `osprofiler_error:<base_id>`: `{"base_id": …, "timestamp": …}` of a trace with an
//!   error, with `filter_error_trace`;
//! - `osprofiler:<base_id>…`: one key per event, osprofiler's legacy layout (read only).
//!
//! We add two sorted sets, ignored by Python: `osprofiler_index` (base id → start time, in
//! Unix seconds) and `osprofiler_error_index` (the same for traces with errors), so a trace's
//! start is known without reading its events. Traces that have no index entry (written by
//! Python) are still listed, found by `SCAN`.
//!
//! And a sorted set per trace, `osprofiler_summary:<base_id>` (first start, last stop, points,
//! services, categories, root point, error), which the sink updates with each batch and
//! [`TraceStore::search_traces`] reads instead of the events; a prefix Python never scans.
//! Traces without one (Python's), or whose events outnumber what it counted (a trace
//! Python services wrote too), are summarised from their events. See `summaries.rs`.
//!
//! The write side sends each batch of events in one pipelined round trip; see [`sink`].
//!
//! `rediscluster://` keeps these key names: a trace's events are one list, hence in one
//! slot, with no hash tag needed. Only the two indexes differ: each is 16 sorted sets,
//! `osprofiler_index:<k>` and `osprofiler_error_index:<k>`, so that the index writes
//! spread over the masters; see `cluster.rs`. Python osprofiler has no cluster driver.
//!
//! One Redis client: this crate's own (RESP2, pipelines, TLS through rustls, Sentinel,
//! Cluster), not the `redis` crate. `benches/redis_client.rs` writes the same batch with
//! the same commands through both into one redis-server in one run: our fastest batch
//! beat theirs in every run (medians up to 1.8 times on a quiet machine, within the noise
//! when the server is starved of CPU), ours used 15–32% less client CPU per event and
//! allocated nearly nothing (0.05 allocations and 1 byte per event against 1.4 and
//! 1.8 KB for `redis::Pipeline`), with no dependency beyond rustls, which `rediss://` and
//! `otlps://` need anyway (figures in BENCHMARKS.md).

mod client;
mod cluster;
mod cluster_store;
mod event_json;
#[doc(hidden)]
pub use event_json::write_event as write_event_json;
mod resp;
#[doc(hidden)]
pub use resp::fuzz as resp_fuzz;
mod sink;
mod store;
mod summaries;
#[cfg(feature = "tls")]
pub(crate) mod tls;
/// Without the `tls` feature a `rediss://` string is refused before it gets here
/// (`ConnectionString::missing_feature`): no value of this type can exist.
#[cfg(not(feature = "tls"))]
pub(crate) mod tls {
    #[derive(Clone)]
    pub(crate) enum TlsSetup {}

    pub(crate) fn setup(
        _host: &str,
        _ca_certs: Option<&std::path::Path>,
        _verify: bool,
    ) -> Result<TlsSetup, String> {
        Err("osprofiler-store was built without the `tls` feature".into())
    }
}

use std::time::Duration;

use crate::{ConnectionString, OpenError, Options, Sink, TraceStore};
use client::{ClientError, Settings, Target};

/// Prefix of a trace's event list.
const OPT_PREFIX: &[u8] = b"osprofiler_opt:";
/// Prefix of osprofiler's legacy per-event keys.
const LEGACY_PREFIX: &[u8] = b"osprofiler:";
/// Prefix of a trace's error marker.
const ERROR_PREFIX: &[u8] = b"osprofiler_error:";
/// Prefix of a trace's summary (a sorted set, see `summaries.rs`).
const SUMMARY_PREFIX: &[u8] = b"osprofiler_summary:";
/// Sorted set: base id → start (Unix seconds).
const INDEX: &[u8] = b"osprofiler_index";
/// Sorted set: base id → start (Unix seconds), traces with an error only.
const ERROR_INDEX: &[u8] = b"osprofiler_error_index";

pub(crate) fn open_store(
    cs: &ConnectionString,
    opts: &Options,
) -> Result<Box<dyn TraceStore>, OpenError> {
    let settings = settings(cs, opts)?;
    if let ConnectionString::RedisCluster { nodes, .. } = cs {
        let mut c = cluster::Cluster::new(settings, nodes.clone());
        c.refresh().map_err(|e| unavailable(cs, &e))?;
        return Ok(Box::new(cluster_store::ClusterStore::new(
            c,
            cs.to_string(),
        )));
    }
    let conn = settings.connect().map_err(|e| unavailable(cs, &e))?;
    Ok(Box::new(store::RedisStore::new(
        settings,
        conn,
        cs.to_string(),
    )))
}

/// The sink connects at once, to report a wrong password or an untrusted certificate
/// now; when the server is merely unreachable the sink is returned anyway and connects
/// later from the exporter thread (a service must start while its Redis is down).
pub(crate) fn open_sink(cs: &ConnectionString, opts: &Options) -> Result<Box<dyn Sink>, OpenError> {
    let settings = settings(cs, opts)?;
    if let ConnectionString::RedisCluster { nodes, .. } = cs {
        let mut c = cluster::Cluster::new(settings.clone(), nodes.clone());
        // As for one server: a wrong password is an error now, an unreachable cluster
        // is tried again from the exporter thread.
        if let Err(e) = c.refresh()
            && !e.is_transient()
        {
            return Err(unavailable(cs, &e));
        }
        return Ok(Box::new(sink::RedisSink::new_cluster(
            settings,
            opts,
            cs.to_string(),
            c,
        )));
    }
    let conn = match settings.connect() {
        Ok(c) => Ok(c),
        Err(e) if e.is_transient() => Err(e),
        Err(e) => return Err(unavailable(cs, &e)),
    };
    Ok(Box::new(sink::RedisSink::new(
        settings,
        opts,
        cs.to_string(),
        conn,
    )))
}

fn unavailable(cs: &ConnectionString, e: &ClientError) -> OpenError {
    OpenError::Unavailable {
        store: cs.to_string(),
        reason: e.to_string(),
    }
}

fn settings(cs: &ConnectionString, opts: &Options) -> Result<Settings, OpenError> {
    let timeout = opts.socket_timeout.max(Duration::from_millis(1));
    match cs {
        ConnectionString::Redis(t) => {
            let tls = if t.tls {
                Some(
                    tls::setup(&t.host, t.ca_certs.as_deref(), t.verify_tls).map_err(|reason| {
                        OpenError::Unavailable {
                            store: cs.to_string(),
                            reason,
                        }
                    })?,
                )
            } else {
                None
            };
            Ok(Settings {
                target: Target::Direct {
                    host: t.host.clone(),
                    port: t.port,
                    tls,
                },
                username: t.username.clone(),
                password: t.password.clone(),
                db: t.db,
                timeout,
            })
        }
        ConnectionString::RedisSentinel {
            sentinels,
            password,
            db,
        } => Ok(Settings {
            target: Target::Sentinel {
                sentinels: sentinels.clone(),
                service: opts.sentinel_service_name.clone(),
            },
            username: None,
            password: password.clone(),
            db: *db,
            timeout,
        }),
        ConnectionString::RedisCluster {
            nodes,
            username,
            password,
            tls,
            ca_certs,
            verify_tls,
        } => Ok(Settings {
            // Replaced by each node's address (the TLS configuration kept, its server
            // name replaced).
            target: Target::Direct {
                host: nodes.first().map(|n| n.0.clone()).unwrap_or_default(),
                port: nodes.first().map_or(6379, |n| n.1),
                tls: cluster_tls(
                    *tls,
                    nodes.first().map_or("", |n| n.0.as_str()),
                    ca_certs.as_deref(),
                    *verify_tls,
                )
                .map_err(|reason| OpenError::Unavailable {
                    store: cs.to_string(),
                    reason,
                })?,
            },
            username: username.clone(),
            password: password.clone(),
            db: 0,
            timeout,
        }),
        other => Err(OpenError::Unavailable {
            store: other.to_string(),
            reason: "not a Redis connection string".into(),
        }),
    }
}

/// TLS for a Redis Cluster's nodes (`rediscluster://…?ssl=true`), with the `tls` feature.
fn cluster_tls(
    tls: bool,
    host: &str,
    ca_certs: Option<&std::path::Path>,
    verify: bool,
) -> Result<Option<tls::TlsSetup>, String> {
    if !tls {
        return Ok(None);
    }
    #[cfg(feature = "tls")]
    return tls::setup(host, ca_certs, verify).map(Some);
    #[cfg(not(feature = "tls"))]
    {
        let _ = (host, ca_certs, verify);
        Err("ssl=true: TLS to a Redis Cluster needs osprofiler-store's `tls` feature".into())
    }
}

/// `prefix` + the text of `id`.
fn key(prefix: &[u8], id: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + id.len());
    k.extend_from_slice(prefix);
    k.extend_from_slice(id);
    k
}

/// Appends Unix seconds with six decimals (exact in the text; Redis keeps a double, which
/// holds microseconds of present-day times).
fn push_score(out: &mut Vec<u8>, micros: i64) {
    if micros < 0 {
        out.push(b'-');
    }
    let abs = micros.unsigned_abs();
    osprofiler::private::push_decimal(out, abs / 1_000_000);
    out.push(b'.');
    let mut frac = [0u8; 6];
    osprofiler::private::write_decimal_fixed(&mut frac, (abs % 1_000_000) as u32);
    out.extend_from_slice(&frac);
}

/// A score as Redis returns it, back to microseconds.
fn parse_score(text: &str) -> Option<i64> {
    let secs: f64 = text.trim().parse().ok()?;
    let micros = (secs * 1e6).round();
    micros.is_finite().then_some(micros as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_round_trip() {
        for micros in [
            0_i64,
            1,
            -1,
            1_764_072_000_001_375,
            1_764_072_000_999_999,
            4_102_444_799_999_999,
            -86_400_000_001,
        ] {
            let mut s = Vec::new();
            push_score(&mut s, micros);
            let text = String::from_utf8(s).unwrap();
            assert_eq!(parse_score(&text), Some(micros), "{text}");
            // As Redis prints a double (%.17g).
            let f: f64 = text.parse().unwrap();
            assert_eq!(parse_score(&format!("{f:.17e}")), Some(micros), "{text}");
        }
        let mut s = Vec::new();
        push_score(&mut s, 1_764_072_000_001_375);
        assert_eq!(s, b"1764072000.001375");
        assert_eq!(parse_score("nan"), None);
        assert_eq!(parse_score("x"), None);
    }
}
