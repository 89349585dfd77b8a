//! `tracing` spans and sqlx statements as osprofiler points.
//!
//! [`TracingLayer`] is a [`tracing_subscriber::Layer`]: code and crates
//! instrumented with [`tracing`](https://docs.rs/tracing) show up in
//! osprofiler traces, and with SQL tracing switched on
//! ([`switches::set_sql_tracing`], the `trace_sqlalchemy` option), every
//! sqlx statement becomes a `db` point.
//!
//! ```
//! use osprofiler::integrations::tracing::TracingLayer;
//! use osprofiler::notifier::{self, MemorySink};
//! use tracing_subscriber::layer::SubscriberExt as _;
//!
//! let subscriber = tracing_subscriber::registry().with(TracingLayer::new());
//! tracing::subscriber::set_global_default(subscriber).unwrap();
//!
//! let sink = MemorySink::new();
//! let _notifier = notifier::set_sink(sink.clone());
//! let ctx = osprofiler::TraceContext::new(None, None, None);
//! ctx.in_scope(|| {
//!     let span = tracing::info_span!("quota_get", project = "demo", limit = 10);
//!     let _in = span.enter();
//!     let _p = osprofiler::point("driver"); // a child of the quota_get point
//! });
//! tracing::info_span!("outside").in_scope(|| {}); // no trace: no point
//! notifier::flush().unwrap();
//! let events = sink.trace(ctx.base_id());
//! assert_eq!(events.len(), 4);
//! assert_eq!(events[0].name, "quota_get");
//! assert_eq!(events[0].info["project"], "demo");
//! assert_eq!(events[0].info["limit"], 10);
//! ```
//!
//! # Spans
//!
//! A span created while a trace is active (on this thread or task, or under
//! an explicit `parent:` span that is a point) becomes a point:
//! - **created** (`on_new_span`): the point starts, a child of the current
//!   point. Its name is the span's name (see [`PointName`] for other
//!   choices; a field `osprofiler.name = "db"` overrides it per span), its
//!   start `info` the span's fields as JSON (strings, numbers, booleans;
//!   other values as their `Debug` text; a field `host` becomes `span.host`,
//!   as `info.host` is the host that recorded the point).
//! - **entered** (`on_enter`, on any thread): the point's trace is installed
//!   on that thread with the point current, so points and spans made there
//!   are its children; **exited** (`on_exit`): the thread's previous state
//!   comes back. A span entered across `.await` (`fut.instrument(span)`)
//!   thus carries the trace into every poll, and a span handed to another
//!   thread or task carries it there.
//! - **closed** (`on_close`, when its last handle is dropped, wherever): the
//!   point stops. Fields recorded after creation (`span.record(..)`) go into
//!   the stop event's `info`. An `error` field (`span.record("error", ..)`,
//!   or an `ERROR` event with an `error` field inside the span, as
//!   `#[instrument(err)]` emits) stops it as failed: `info.etype` `"error"`,
//!   `info.message` the error's text.
//!
//! A span with `osprofiler.point = false` (or for which [`PointName::With`]
//! returns `None`) is no point but a *carrier*: entered where no trace is
//! active, it installs the trace and point that were current at its
//! creation, so work it is handed to continues the trace without a point of
//! its own.
//!
//! Spans created outside a trace are left alone, even when entered inside
//! one. The layer never filters: other layers (`fmt`, …) see exactly what
//! they saw without it.
//!
//! # Cost and filtering
//!
//! Outside a trace the layer records nothing; its callbacks cost a
//! thread-local check and an atomic load. Measured by
//! `osprofiler-it/benches/tracing.rs` against the same subscriber without
//! the layer: on a registry with `fmt` at `INFO`, a span's whole life
//! (create, enter, exit, close; about 250 ns) costs about 5 ns more, an
//! enter and exit (about 45 ns) about 4 ns more.
//!
//! The layer wants every event, though, which enables the `DEBUG` and
//! `TRACE` events other layers drop: about 16 ns each instead of nothing.
//! When a process has many of those, give the layer [`TracingFilter`] as
//! a per-layer filter: it takes only spans, sqlx's statement events (only
//! while SQL tracing is on and a trace is active, so sqlx does not even
//! build them otherwise) and `ERROR` events with an `error` field.
//! Per-layer filtering has its own price in `tracing-subscriber`: a span's
//! life then costs about 65 ns more, an enter and exit about 45 ns.
//!
//! Either way, sqlx's statement events are `DEBUG`: a global filter (one
//! applying to every layer, such as `fmt().with_env_filter(..)`) must let
//! `sqlx::query=debug` through for statement points, and `osprofiler::sql=info`
//! for their [params](#params); filtering `fmt` per layer
//! (`fmt::layer().with_filter(..)`) keeps them out of the logs.
//!
//! # SQL statements
//!
//! sqlx ends every statement with a `tracing` event (target `sqlx::query`,
//! `DEBUG`) that holds the SQL text, the row counts and the elapsed time.
//! When [`switches::sql_tracing`] is on and a trace is active where the
//! event fires, the layer records it as a `db` point under the current
//! point: started `elapsed` before the event, stopped at it,
//! `info.db = {"statement": <SQL>, "params": <values or null>}` at start
//! and `info.db = {"rows_affected", "rows_returned"}` at stop (results are
//! never recorded). Off by default: with the switch off no statement point
//! is recorded, even inside a trace.
//!
//! Why this mechanism: it needs no wrapper around pools, connections or
//! executors, works for every sqlx driver (SQLite, PostgreSQL, MySQL) and
//! every way of running a query (`query`, `query_as`, the macros, raw SQL,
//! migrations), and costs a check per statement when off. What the event
//! does not carry has to come from elsewhere:
//! - **params**: sqlx does not report bound values; the caller hands them
//!   over (next section), else `params` is `null` and `statement` shows the
//!   placeholders (`$1`, `?`) alone;
//! - **errors**: sqlx reports a failed statement like any other and hands
//!   the error to the caller only; the failure is recorded where it
//!   surfaces, on the calling point: a `#[trace]` function returning the
//!   `sqlx::Error` (`info.etype`, `info.message`), or a span through its
//!   `error` field or `#[instrument(err)]`.
//!
//! sqlx's SQLite driver runs statements on a worker thread of its own and
//! carries only the caller's current `tracing` span there. For SQLite, run
//! the statements inside a span created in the trace: with their params
//! (below: the params span carries the trace too), the DB API function as a
//! span (`#[tracing::instrument(name = "db", skip_all)]`), or a carrier
//! around the call
//! (`.instrument(tracing::info_span!("sql", osprofiler.point = false))`).
//! PostgreSQL and MySQL run statements in the calling task and need none.
//!
//! ## Params
//!
//! As osprofiler's SQLAlchemy hook records `info.db.params`, a query run
//! [`.with_sql_params(..)`](SqlParamsExt::with_sql_params) records the values
//! [`sql_params!`](crate::sql_params) was given, in the order of the
//! placeholders:
//!
//! ```
//! use osprofiler::integrations::tracing::{Hidden, SqlParamsExt as _};
//! use osprofiler::sql_params;
//!
//! # async fn run() {
//! # let (uuid, host, token) = ("vm-1", Some("compute-1"), "s3cret");
//! # let statement = async { Ok::<u64, std::io::Error>(1) };
//! // sqlx::query("UPDATE instances SET host = $1, token = $2 WHERE uuid = $3")
//! //     .bind(host)
//! //     .bind(token)
//! //     .bind(uuid)
//! //     .execute(&pool)
//! statement
//!     .with_sql_params(sql_params![host, Hidden(token), uuid])
//!     .await
//!     .unwrap();
//! // info.db = {"statement": "UPDATE …", "params": ["compute-1", "***", "vm-1"]}
//! # }
//! ```
//!
//! - **Values**: a JSON array, one entry per value: numbers, `bool`s and
//!   strings as JSON, `None` as `null`, any other `Debug` type as its `Debug`
//!   text (implement [`SqlParam`] to record a type otherwise). Statements
//!   run without the adapter record `params: null`.
//! - **Hiding**: [`Hidden`]`(value)` records `"***"` in the value's place
//!   (the others keep their positions) and never formats the value. Hide the
//!   same value where it is also an argument of a traced DB API function
//!   (`#[trace(hide_args)]`, `#[instrument(skip(..))]`).
//! - **Opt-in**: the same as the statements'. Unless SQL tracing is on and a
//!   trace is active, `sql_params!` neither evaluates nor converts its
//!   arguments and the future runs as is: no span, no allocation, one
//!   `async` layer (about 7 ns per query, beside the 16 ns of the event sqlx
//!   emits anyway: `sql_params/adapter` in `osprofiler-it/benches/tracing.rs`).
//!   On, the params span costs about 0.8 µs per query (`sql_params/statement`).
//! - **Scope**: every statement the future runs gets the params, so wrap
//!   one query's future, or the call of a DB API function that runs one
//!   statement. Statements sqlx itself runs inside it (opening a pool
//!   connection, looking up a PostgreSQL custom type) get them too.
//!
//! How it works: the adapter runs the future, and drops it (a timeout
//! cancelling a query), inside a *params span*: `sql_params`, target
//! `osprofiler::sql`, `INFO`, a carrier (`osprofiler.point = false`) whose
//! field `osprofiler.params` is only the number of values. The values go to
//! this layer alone, beside the span rather than in its fields: `fmt` and
//! other layers never see them. A statement event takes the values of the
//! innermost params span around it. A filter that drops the params span
//! (see above) drops the params, and the trace it would carry to SQLite's
//! worker.
//!
//! Why this shape: sqlx keeps bound values encoded inside its arguments and
//! never reports them, so reading them would mean wrapping sqlx's query or
//! executor types. A future adapter sits where the query is awaited, next to
//! the `.bind(..)` calls it mirrors, and fits every driver, every query form
//! (`query`, `query_as`, `query!`) and every way to run one (`execute`,
//! `fetch_*`). It is span-based because a span is what sqlx takes to
//! wherever the statement event fires: the calling task (PostgreSQL, MySQL)
//! or SQLite's worker thread. A macro rather than a tuple of values: nothing
//! is evaluated when off, and any `Debug` type works without a trait impl.
//!
//! diesel users would do the same with diesel's `Instrumentation` hook
//! (`StartQuery`/`FinishQuery` events, the latter with the error): a `db`
//! point per statement, started at `StartQuery`.
//!
//! # DB API and driver calls
//!
//! These need nothing from this module: `#[trace(name = "db")]` on the DB
//! API functions and `#[trace_impl(name = "driver")]` on the driver types
//! give points named by category, with the SQL statement points under the
//! DB API points.
//!
//! ```
//! use osprofiler::{trace, trace_impl};
//! # type Pool = ();
//! # type Error = std::io::Error;
//!
//! // The DB API.
//! #[trace(name = "db")]
//! pub async fn instance_get(pool: &Pool, uuid: &str) -> Result<String, Error> {
//!     // sqlx::query_scalar("SELECT host FROM instances WHERE uuid = $1")
//!     //     .bind(uuid).fetch_one(pool).await
//!     # Ok(uuid.to_owned())
//! }
//!
//! pub struct LibvirtDriver;
//!
//! #[trace_impl(name = "driver")]
//! impl LibvirtDriver {
//!     pub async fn spawn(&self, pool: &Pool, uuid: &str) -> Result<(), Error> {
//!         instance_get(pool, uuid).await?; // a `db` point under the `driver` point
//!         Ok(())
//!     }
//! }
//! ```

mod entered;
mod fields;
mod params;
mod sql;

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use serde_json::{Map, Value};
use tracing_core::span::{Attributes, Id as SpanId, Record};
use tracing_core::{Event, Interest, Level, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Filter, Layer};
use tracing_subscriber::registry::LookupSpan;

use self::fields::{ERROR_FIELD, ErrorField, Fields};
#[doc(hidden)]
pub use self::params::__sql_params;
use self::params::LIVE_PARAMS;
pub use self::params::{HIDDEN, Hidden, SqlParam, SqlParams, SqlParamsExt};
use crate::{Info, Point, TraceContext, is_active, switches};

/// How a span's point is named (its category in the report's `stats`).
///
/// A field `osprofiler.name` on the span overrides it.
#[derive(Debug, Clone, Copy, Default)]
pub enum PointName {
    /// The span's name (`#[instrument]` names spans after their function).
    #[default]
    SpanName,
    /// The span's target (by default the module path that created it).
    Target,
    /// The first segment of the target: the crate that created the span.
    Crate,
    /// The same name for every span.
    Fixed(&'static str),
    /// Chosen from the span's metadata; `None` makes the span a carrier
    /// (no point, see the [module docs](self)).
    With(fn(&Metadata<'_>) -> Option<&'static str>),
}

impl PointName {
    fn pick(self, meta: &'static Metadata<'static>) -> Option<&'static str> {
        match self {
            PointName::SpanName => Some(meta.name()),
            PointName::Target => Some(meta.target()),
            PointName::Crate => meta.target().split("::").next(),
            PointName::Fixed(name) => Some(name),
            PointName::With(f) => f(meta),
        }
    }
}

/// A `tracing_subscriber` layer turning spans inside an osprofiler trace into
/// points, and sqlx statements into `db` points when SQL tracing is on. See
/// the [module docs](self).
#[derive(Debug)]
pub struct TracingLayer {
    // Tells this layer's entries in the per-thread stack from another's.
    id: u64,
    names: PointName,
    fields: bool,
}

// Spans holding a point or carrying a trace, over all layers: while there are
// none, entering, exiting and closing spans skip the span lookup.
static LIVE: AtomicUsize = AtomicUsize::new(0);
static LAYER_IDS: AtomicU64 = AtomicU64::new(1);

/// What the layer keeps in a span's extensions.
struct SpanPoint {
    /// `None` for a carrier.
    point: Option<Point>,
    /// The trace entered with the span: at its point, or for a carrier where
    /// it was created.
    ctx: TraceContext,
    /// Fields recorded after creation: the stop event's info.
    recorded: Map<String, Value>,
    error: Option<String>,
    /// A params span's values: the statements inside it record them.
    sql_params: Option<Arc<[Value]>>,
}

impl SpanPoint {
    fn note(&mut self, fields: Fields) {
        self.recorded.extend(fields.info);
        match fields.error {
            Some(ErrorField::Set(message)) => self.error = Some(message),
            Some(ErrorField::Cleared) => self.error = None,
            None => {}
        }
    }

    fn finish(self) {
        let Some(mut point) = self.point else {
            return;
        };
        match self.error {
            Some(message) if self.recorded.is_empty() => point.set_error("error", message),
            Some(message) => {
                // As osprofiler's error stop info, with the recorded fields after.
                let mut info = Info::new().with("etype", "error").with("message", message);
                for (k, v) in self.recorded {
                    if k != "etype" && k != "message" {
                        info.insert(k, v);
                    }
                }
                point.set_stop_info(info);
            }
            None => point.set_stop_info(Info(self.recorded)),
        }
        point.finish();
    }
}

impl TracingLayer {
    /// A layer naming points after their spans and recording span fields.
    pub fn new() -> TracingLayer {
        TracingLayer {
            id: LAYER_IDS.fetch_add(1, Ordering::Relaxed),
            names: PointName::SpanName,
            fields: true,
        }
    }

    /// How points are named (default: the span's name).
    pub fn point_name(mut self, names: PointName) -> TracingLayer {
        self.names = names;
        self
    }

    /// Whether span fields go into the points' `info` (default: yes).
    pub fn record_fields(mut self, on: bool) -> TracingLayer {
        self.fields = on;
        self
    }

    /// Starts the span's point (or carrier) under the current point, or under
    /// `parent`'s trace when this thread has none.
    fn start(&self, attrs: &Attributes<'_>, parent: Option<TraceContext>) -> Option<SpanPoint> {
        let mut fields = Fields::new(self.fields);
        attrs.record(&mut fields);
        let name: Option<Cow<'static, str>> = match fields.name.take() {
            Some(n) => Some(Cow::Owned(n)),
            None => self.names.pick(attrs.metadata()).map(Cow::Borrowed),
        };
        let _in = parent.as_ref().map(TraceContext::enter);
        let mut data = match name.filter(|_| fields.point != Some(false)) {
            Some(name) => {
                let point = Point::start(name, Info(std::mem::take(&mut fields.info)));
                SpanPoint {
                    ctx: point.context()?,
                    point: Some(point),
                    recorded: Map::new(),
                    error: None,
                    sql_params: None,
                }
            }
            None => SpanPoint {
                ctx: crate::get()?,
                point: None,
                recorded: Map::new(),
                error: None,
                sql_params: None,
            },
        };
        fields.info.clear();
        data.note(fields);
        if params::is_params_span(attrs.metadata()) {
            data.sql_params = params::pending();
        }
        Some(data)
    }
}

impl Default for TracingLayer {
    fn default() -> TracingLayer {
        TracingLayer::new()
    }
}

fn live() -> bool {
    LIVE.load(Ordering::Relaxed) != 0
}

impl<S> Layer<S> for TracingLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &SpanId, ctx: Context<'_, S>) {
        let parent = if is_active() {
            None
        } else {
            // No trace here: only an explicit parent that is a point or a
            // carrier brings one (a contextual parent would have installed it).
            if !live() {
                return;
            }
            let Some(trace) = attrs.parent().and_then(|p| {
                let span = ctx.span(p)?;
                let ext = span.extensions();
                Some(ext.get::<SpanPoint>()?.ctx.clone())
            }) else {
                return;
            };
            Some(trace)
        };
        let Some(data) = self.start(attrs, parent) else {
            return;
        };
        if let Some(span) = ctx.span(id) {
            LIVE.fetch_add(1, Ordering::Relaxed);
            if data.sql_params.is_some() {
                LIVE_PARAMS.fetch_add(1, Ordering::Relaxed);
            }
            span.extensions_mut().insert(data);
        }
    }

    fn on_record(&self, id: &SpanId, values: &Record<'_>, ctx: Context<'_, S>) {
        if !live() {
            return;
        }
        let Some(span) = ctx.span(id) else {
            return;
        };
        let is_point = span
            .extensions()
            .get::<SpanPoint>()
            .is_some_and(|d| d.point.is_some());
        if !is_point {
            return;
        }
        // Formatted before taking the lock: a value's `Debug` may itself log.
        let mut fields = Fields::new(self.fields);
        values.record(&mut fields);
        if let Some(data) = span.extensions_mut().get_mut::<SpanPoint>() {
            data.note(fields);
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let meta = event.metadata();
        if is_active() && switches::sql_tracing() && meta.target() == sql::TARGET {
            let params = sql_params_of(event, &ctx);
            sql::record(event, params.as_deref());
        } else if *meta.level() == Level::ERROR
            && live()
            && meta.fields().field(ERROR_FIELD).is_some()
        {
            // `#[instrument(err)]` and the like: the span in which the error
            // was reported failed.
            let Some(span) = ctx.event_span(event) else {
                return;
            };
            let mut fields = Fields::new(false);
            event.record(&mut fields);
            let mut ext = span.extensions_mut();
            if let Some(data) = ext.get_mut::<SpanPoint>()
                && data.point.is_some()
            {
                data.note(fields);
            }
        }
    }

    fn on_enter(&self, id: &SpanId, ctx: Context<'_, S>) {
        if !live() {
            return;
        }
        let Some(span) = ctx.span(id) else {
            return;
        };
        let trace = {
            let ext = span.extensions();
            let Some(data) = ext.get::<SpanPoint>() else {
                return;
            };
            // A carrier brings its trace only where there is none.
            if data.point.is_none() && is_active() {
                return;
            }
            data.ctx.clone()
        };
        entered::enter(self.id, id.into_u64(), trace);
    }

    fn on_exit(&self, id: &SpanId, _ctx: Context<'_, S>) {
        entered::exit(self.id, id.into_u64());
    }

    fn on_close(&self, id: SpanId, ctx: Context<'_, S>) {
        if !live() {
            return;
        }
        let Some(span) = ctx.span(&id) else {
            return;
        };
        let data = span.extensions_mut().remove::<SpanPoint>();
        if let Some(data) = data {
            LIVE.fetch_sub(1, Ordering::Relaxed);
            if data.sql_params.is_some() {
                LIVE_PARAMS.fetch_sub(1, Ordering::Relaxed);
            }
            let traced_here = is_active();
            data.finish();
            // The last handle may go on a thread outside any trace (sqlx's
            // SQLite worker drops its copy of the caller's span): hand the
            // stop over now, as leaving a trace would.
            if !traced_here {
                crate::local::flush_thread_buffer();
            }
        }
    }
}

/// The values of the innermost params span around `event` (see
/// [`SqlParamsExt::with_sql_params`]), if any.
fn sql_params_of<S>(event: &Event<'_>, ctx: &Context<'_, S>) -> Option<Arc<[Value]>>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    if LIVE_PARAMS.load(Ordering::Relaxed) == 0 {
        return None;
    }
    let span = ctx.event_span(event)?;
    span.scope().find_map(|s| {
        let ext = s.extensions();
        ext.get::<SpanPoint>()?.sql_params.clone()
    })
}

/// A per-layer filter for [`TracingLayer`]: every span, sqlx's statement
/// events while SQL tracing is on and a trace is active, and `ERROR` events
/// with an `error` field. Other events are dropped once per call site, and
/// cost the layer nothing (see the [module docs](self) for when it pays).
///
/// ```
/// use osprofiler::integrations::tracing::{TracingFilter, TracingLayer};
/// use tracing_subscriber::{Layer as _, layer::SubscriberExt};
///
/// let subscriber = tracing_subscriber::registry()
///     .with(TracingLayer::new().with_filter(TracingFilter));
/// # drop(subscriber);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct TracingFilter;

impl TracingFilter {
    fn always(meta: &Metadata<'_>) -> bool {
        meta.is_span()
            || (*meta.level() == Level::ERROR && meta.fields().field(ERROR_FIELD).is_some())
    }
}

impl<S> Filter<S> for TracingFilter {
    fn enabled(&self, meta: &Metadata<'_>, _cx: &Context<'_, S>) -> bool {
        if meta.target() == sql::TARGET {
            // Asked per statement (sqlx checks before it builds the event).
            return is_active() && switches::sql_tracing();
        }
        TracingFilter::always(meta)
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> Interest {
        if meta.target() == sql::TARGET {
            Interest::sometimes()
        } else if TracingFilter::always(meta) {
            Interest::always()
        } else {
            Interest::never()
        }
    }
}
