#![warn(missing_docs)]
// On docs.rs, each feature-gated item says which feature it needs.
#![cfg_attr(docsrs, feature(doc_cfg))]
//! # osprofiler for Rust
//!
//! Distributed tracing for systems made of many services, wire-compatible with
//! OpenStack's [osprofiler](https://pypi.org/project/osprofiler/) 4.4.0: a
//! request carrying a trace context signed with one of the configured HMAC
//! keys is traced across every service it touches (Rust or Python), its
//! points are stored in a backend and read back as one tree of calls.
//!
//! Tracing is off unless a request asks for it with a valid signature, and
//! free when off: a trace point outside a trace is a thread-local check.
//!
//! ## Points
//!
//! A trace is a tree of *points*. A point has a name that is also its
//! category (`wsgi`, `rpc`, `db`, `driver`, `http`, ...), a start and a stop.
//!
//! ```
//! use osprofiler::{trace, Info};
//!
//! #[trace(name = "db")]
//! fn quota_get(project: &str) -> u32 {
//!     3
//! }
//!
//! #[trace(name = "driver", hide_args)]
//! async fn spawn(vm: &str, password: &str) -> Result<(), std::io::Error> {
//!     Ok(())
//! }
//!
//! fn handler() {
//!     let _p = osprofiler::point_with("rpc", Info::new().with("method", "build"));
//!     quota_get("demo"); // a child of the rpc point
//! }
//! ```
//!
//! `#[trace]` records `info.function` (`name`, and `args` unless `hide_args`),
//! the result when `hide_result = false`, and for a function returning `Err`,
//! `info.etype` (the error's type) and `info.message` (its `Display`).
//! `#[trace_impl(name = "rpc")]` on an `impl` block traces its public methods.
//!
//! Which way to make a point, and osprofiler's own form of it:
//!
//! | you have | use | guard | osprofiler (Python) |
//! |---|---|---|---|
//! | a function or method | [`#[trace]`](trace) (sync or `async fn`) | none to hold | `@profiler.trace` |
//! | every public method of an `impl` | [`#[trace_impl]`](trace_impl) | none to hold | `@profiler.trace_cls`, `TracedMeta` |
//! | a block of sync code | [`point`](fn@point) / [`point_with`] | [`LocalPoint`]: this thread only, stops when dropped | `with profiler.Trace(..)` |
//! | a block of async code | [`in_point`] | none to hold: the point follows the task | `with profiler.Trace(..)` |
//! | a start and a stop in separate callbacks (a request's head and its response, a span's life) | [`Point::start`] | [`Point`]: `Send`, stops when dropped or [`finish`](Point::finish)ed | `profiler.start`/`stop` |
//! | code written for osprofiler's style | [`start`] / [`stop`] | the thread's stack | `profiler.start`/`stop` |
//!
//! ## Traces
//!
//! A service continues the traces it receives: [`propagation::verify_trace_headers`]
//! checks the `X-Trace-Info`/`X-Trace-HMAC` pair against the keys in
//! [`switches`], and [`TraceContext::from_incoming`] continues it. A client
//! starts one with [`init`] or [`TraceContext::new`] and sends
//! [`TraceContext::headers`] with its calls.
//!
//! ```
//! use osprofiler::{notifier::{self, MemorySink}, HmacKey, TraceContext};
//!
//! let sink = MemorySink::new();
//! let _notifier = notifier::set_sink(sink.clone());
//!
//! let ctx = TraceContext::new(HmacKey::new("SECRET_KEY"), None, None);
//! let headers = ctx.in_scope(|| {
//!     let _p = osprofiler::point("wsgi");
//!     osprofiler::get().unwrap().headers().unwrap() // for an outgoing call
//! });
//! notifier::flush().unwrap();
//! assert_eq!(sink.trace(ctx.base_id()).len(), 2);
//! assert_eq!(headers.hmac.len(), 40);
//! ```
//!
//! In async code the context travels with the future:
//! [`TraceContext::instrument`] (or [`FutureExt::in_current_trace`] for a
//! spawned task) installs it only while the future is polled, so it follows
//! the request across `.await` and never leaks into other tasks.
//!
//! Trace and point ids come from per-thread generators seeded once from the OS.
//! A process that `fork()`s and keeps running without `exec` should start its
//! traces from threads the child starts: the forking thread's generators are
//! copied into the child and repeat the parent's ids ([`Id::new_v4`]).
//!
//! ## Where events go
//!
//! Points are recorded into a per-thread buffer and handed in batches to one
//! background exporter thread that writes them to a [`notifier::Sink`]. The
//! traced code never waits for it: when the sink cannot keep up, events are
//! dropped and counted ([`notifier::stats`]). A service wires everything from
//! its osprofiler `[profiler]` section with one call, `osprofiler_store::init_from_conf`
//! (every backend); [`config::init_with_sink`] does the same with a [`notifier::Sink`]
//! of its own.
//!
//! ## HTTP, gRPC and messages
//!
//! Each behind a cargo feature, under `integrations`:
//!
//! - `http`: `integrations::http::{inject_headers, extract}` for any `http::HeaderMap`;
//! - `tower`: `integrations::tower::HttpServerLayer`, a server layer (axum, hyper,
//!   tonic) continuing signed traces with a `wsgi` (or `rpc`) point;
//! - `reqwest`: `integrations::reqwest::HttpClientMiddleware` signs outgoing calls and,
//!   with `trace_requests`, records them as `http`/`https` points;
//! - `tonic`: `integrations::tonic::GrpcClientInterceptor` signs gRPC calls' metadata.
//!
//! Always available: [`carrier`] carries the signed context over any string map
//! (a message's headers), and reads Python's RPC `trace_info` when opted in.
//!
//! ## `tracing`, SQL, DB API and drivers
//!
//! With the `tracing` feature, `integrations::tracing::TracingLayer` (a
//! `tracing-subscriber` layer) makes `tracing` spans created inside a trace
//! into points, and sqlx's statements into `db` points with
//! `info.db.statement` while [`switches::set_sql_tracing`] is on (off by
//! default, as osprofiler's `trace_sqlalchemy`), and with `info.db.params`
//! when the query is run `.with_sql_params(osprofiler::sql_params![..])`
//! (`Hidden(value)` for a password). DB API functions and driver
//! calls need only the attributes: `#[trace(name = "db")]` on the DB API,
//! `#[trace_impl(name = "driver")]` on a driver, for the `db` and `driver`
//! categories of the reports.

pub mod carrier;
pub mod config;
mod context;
mod digits;
pub mod event;
mod explicit;
pub mod id;
pub mod identity;
pub mod info;
pub mod integrations;
pub mod json;
mod keys;
mod local;
pub mod notifier;
mod percent;
mod point;
#[doc(hidden)]
pub mod private;
pub mod propagation;
pub mod switches;
pub mod time;

pub use context::{EnterGuard, FutureExt, TraceContext, clean, current_headers, get, init};
pub use event::{Event, EventInfo, EventKind};
pub use id::Id;
pub use identity::{Identity, process_identity, set_process_identity};
pub use info::{Field, Info};
pub use keys::{HmacKey, HmacKeys};
pub use local::is_active;
pub use osprofiler_macros::{trace, trace_impl};
pub use point::{LocalPoint, Point, in_point, point, point_with, point_with_fields, start, stop};
pub use propagation::{IncomingTrace, TraceHeaders, TraceParent};
pub use time::Timestamp;

#[doc(hidden)]
pub use private as __private;

/// This crate's README (crates.io's page), its examples run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
