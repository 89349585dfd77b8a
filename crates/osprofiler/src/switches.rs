//! Runtime switches: turn tracing on or off and replace the keys while the
//! service runs, no restart. [`crate::config`] applies a `[profiler]` section
//! to these; they can also be set directly.
//!
//! ```
//! use osprofiler::{switches, HmacKeys};
//! switches::enable(HmacKeys::parse("SECRET_KEY"));
//! assert!(switches::is_enabled());
//! switches::set_hmac_keys(HmacKeys::parse("NEW_KEY,SECRET_KEY")); // rotation
//! switches::disable();
//! assert!(!switches::is_enabled());
//! ```

use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::keys::HmacKeys;

static ENABLED: AtomicBool = AtomicBool::new(false);
static KEYS: RwLock<Option<HmacKeys>> = RwLock::new(None);
static TRACE_SQL: AtomicBool = AtomicBool::new(false);
static TRACE_REQUESTS: AtomicBool = AtomicBool::new(false);
static FILTER_ERROR_TRACE: AtomicBool = AtomicBool::new(false);
static W3C_TRACEPARENT: AtomicBool = AtomicBool::new(false);

/// Turns tracing of incoming requests on, accepting traces signed with any of
/// `keys` (osprofiler's `web.enable(hmac_keys)`).
pub fn enable(keys: HmacKeys) {
    set_hmac_keys(keys);
    ENABLED.store(true, Ordering::Release);
}

/// Turns tracing of incoming requests off: signed requests are then served
/// untraced. Traces already running finish normally.
pub fn disable() {
    ENABLED.store(false, Ordering::Release);
}

/// Whether incoming signed requests start traces (`[profiler] enabled`).
#[inline]
pub fn is_enabled() -> bool {
    ENABLED.load(Ordering::Acquire)
}

/// Replaces the accepted keys; the next request is checked against these.
pub fn set_hmac_keys(keys: HmacKeys) {
    match KEYS.write() {
        Ok(mut k) => *k = Some(keys),
        Err(poisoned) => *poisoned.into_inner() = Some(keys),
    }
}

/// The keys currently accepted (a cheap shared copy).
pub fn hmac_keys() -> HmacKeys {
    let guard = match KEYS.read() {
        Ok(k) => k,
        Err(poisoned) => poisoned.into_inner(),
    };
    guard.clone().unwrap_or_default()
}

/// Whether SQL statements become `db` points (`trace_sqlalchemy`, alias
/// `trace_sql`). Off by default.
#[inline]
pub fn sql_tracing() -> bool {
    TRACE_SQL.load(Ordering::Relaxed)
}

/// Turns SQL statement tracing on or off.
pub fn set_sql_tracing(on: bool) {
    TRACE_SQL.store(on, Ordering::Relaxed);
}

/// Whether outgoing HTTP requests become points (`trace_requests`).
#[inline]
pub fn trace_requests() -> bool {
    TRACE_REQUESTS.load(Ordering::Relaxed)
}

/// Turns tracing of outgoing HTTP requests on or off.
pub fn set_trace_requests(on: bool) {
    TRACE_REQUESTS.store(on, Ordering::Relaxed);
}

/// Whether stores also index traces that contain an error
/// (`filter_error_trace`), for `trace list --error-trace`.
#[inline]
pub fn filter_error_trace() -> bool {
    FILTER_ERROR_TRACE.load(Ordering::Relaxed)
}

/// Turns the error-trace index on or off.
pub fn set_filter_error_trace(on: bool) {
    FILTER_ERROR_TRACE.store(on, Ordering::Relaxed);
}

/// Whether outgoing HTTP and gRPC calls also carry a W3C `traceparent`
/// (`[profiler] w3c_traceparent`). Off by default.
#[inline]
pub fn w3c_traceparent() -> bool {
    W3C_TRACEPARENT.load(Ordering::Relaxed)
}

/// Turns the outgoing W3C `traceparent` on or off.
pub fn set_w3c_traceparent(on: bool) {
    W3C_TRACEPARENT.store(on, Ordering::Relaxed);
}
