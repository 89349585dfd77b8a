//! Bound parameters for sqlx statement points.
//!
//! sqlx's statement events do not carry the values bound to a query, so the
//! caller hands them over: [`sql_params!`](crate::sql_params) turns them into
//! JSON (only while SQL tracing is on inside a trace) and
//! [`SqlParamsExt::with_sql_params`] runs the query's future inside a
//! *params span*, a carrier span (target `osprofiler::sql`, `INFO`, fields
//! `osprofiler.point = false` and `osprofiler.params` = the number of values)
//! to which the layer attaches the values. Every statement event that fires
//! inside that span, on the calling task (PostgreSQL, MySQL) or on the thread
//! sqlx hands the span to (SQLite's worker), gets them as `info.db.params`.
//!
//! The values reach the layer without passing through the span's fields, so
//! no other layer (`fmt`, …) ever sees them: they are put in a thread-local
//! slot just before the span is created and read from there by the layer's
//! `on_new_span`, which runs synchronously inside the creation.

use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::task::{Context, Poll};

use serde_json::{Number, Value};
use tracing_core::callsite::DefaultCallsite;
use tracing_core::dispatcher::{self, Dispatch};
use tracing_core::field::Value as FieldValue;
use tracing_core::metadata::Kind;
use tracing_core::span::{Attributes, Id};
use tracing_core::{Level, LevelFilter, Metadata};

use super::fields::{PARAMS_FIELD, POINT_FIELD};
use crate::{is_active, switches};

/// The target of params spans (for filters: `osprofiler::sql=info`).
const TARGET: &str = "osprofiler::sql";

/// What a hidden value is recorded as (as oslo.utils masks passwords).
pub const HIDDEN: &str = "***";

static FIELDS: &[&str] = &[POINT_FIELD, PARAMS_FIELD];
static CALLSITE: DefaultCallsite = DefaultCallsite::new(&META);
static META: Metadata<'static> = tracing_core::metadata! {
    name: "sql_params",
    target: TARGET,
    level: Level::INFO,
    fields: FIELDS,
    callsite: &CALLSITE,
    kind: Kind::SPAN,
};

/// Params spans holding values, over all layers: while there are none, a
/// statement event skips the search for them.
pub(super) static LIVE_PARAMS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// The values of the params span being created on this thread.
    static PENDING: RefCell<Option<Arc<[Value]>>> = const { RefCell::new(None) };
}

/// Whether `meta` is the params span's.
pub(super) fn is_params_span(meta: &'static Metadata<'static>) -> bool {
    std::ptr::eq(meta, &META)
}

/// The values of the params span being created on this thread (for the
/// layer's `on_new_span`).
pub(super) fn pending() -> Option<Arc<[Value]>> {
    PENDING
        .try_with(|p| p.try_borrow().ok().and_then(|p| p.clone()))
        .ok()
        .flatten()
}

fn set_pending(values: Option<Arc<[Value]>>) {
    let _ = PENDING.try_with(|p| {
        if let Ok(mut p) = p.try_borrow_mut() {
            *p = values;
        }
    });
}

/// Clears the slot when the span is created, and also if creating it panics.
struct ClearPending;

impl Drop for ClearPending {
    fn drop(&mut self) {
        set_pending(None);
    }
}

/// Whether params are worth converting here and now: SQL tracing is on and
/// a trace is active. The switch is read first: it is the cheaper check.
#[doc(hidden)]
#[inline]
pub fn wanted() -> bool {
    switches::sql_tracing() && is_active()
}

/// A value bound to an SQL statement, as it is recorded in `info.db.params`.
///
/// Implemented for numbers, `bool`, strings and `char` (as JSON), `Option`
/// (`None` is `null`), `serde_json::Value`, references and smart pointers to
/// these, and [`Hidden`]. [`sql_params!`](crate::sql_params) records any other
/// `Debug` type as its `Debug` text; implement this trait to record a type of
/// yours otherwise (a UUID as its hyphenated text, say).
pub trait SqlParam {
    /// The value as JSON.
    fn to_sql_param(&self) -> Value;
}

impl<T: SqlParam + ?Sized> SqlParam for &T {
    fn to_sql_param(&self) -> Value {
        (**self).to_sql_param()
    }
}

impl<T: SqlParam + ?Sized> SqlParam for &mut T {
    fn to_sql_param(&self) -> Value {
        (**self).to_sql_param()
    }
}

impl<T: SqlParam + ?Sized> SqlParam for Box<T> {
    fn to_sql_param(&self) -> Value {
        (**self).to_sql_param()
    }
}

impl<T: SqlParam + ?Sized> SqlParam for Arc<T> {
    fn to_sql_param(&self) -> Value {
        (**self).to_sql_param()
    }
}

impl<T: SqlParam + ?Sized> SqlParam for Rc<T> {
    fn to_sql_param(&self) -> Value {
        (**self).to_sql_param()
    }
}

impl<T: SqlParam> SqlParam for Option<T> {
    fn to_sql_param(&self) -> Value {
        self.as_ref().map_or(Value::Null, SqlParam::to_sql_param)
    }
}

impl SqlParam for str {
    fn to_sql_param(&self) -> Value {
        Value::String(self.to_owned())
    }
}

impl SqlParam for String {
    fn to_sql_param(&self) -> Value {
        Value::String(self.clone())
    }
}

impl SqlParam for Cow<'_, str> {
    fn to_sql_param(&self) -> Value {
        Value::String(self.as_ref().to_owned())
    }
}

impl SqlParam for char {
    fn to_sql_param(&self) -> Value {
        Value::String(self.to_string())
    }
}

impl SqlParam for bool {
    fn to_sql_param(&self) -> Value {
        Value::Bool(*self)
    }
}

impl SqlParam for Value {
    fn to_sql_param(&self) -> Value {
        self.clone()
    }
}

macro_rules! json_numbers {
    ($($t:ty),*) => {$(
        impl SqlParam for $t {
            fn to_sql_param(&self) -> Value {
                Value::from(*self)
            }
        }
    )*};
}

json_numbers!(i8, i16, i32, i64, isize, u8, u16, u32, u64, usize);

impl SqlParam for i128 {
    fn to_sql_param(&self) -> Value {
        // Beyond 64 bits: the decimal text, as for span fields.
        i64::try_from(*self).map_or_else(|_| Value::String(self.to_string()), Value::from)
    }
}

impl SqlParam for u128 {
    fn to_sql_param(&self) -> Value {
        u64::try_from(*self).map_or_else(|_| Value::String(self.to_string()), Value::from)
    }
}

impl SqlParam for f64 {
    fn to_sql_param(&self) -> Value {
        // NaN and infinities have no JSON number: their text.
        Number::from_f64(*self).map_or_else(|| Value::String(self.to_string()), Value::Number)
    }
}

impl SqlParam for f32 {
    fn to_sql_param(&self) -> Value {
        // Through the shortest decimal text, so 0.1f32 stays 0.1.
        match self.to_string().parse::<f64>() {
            Ok(v) if v.is_finite() => f64::to_sql_param(&v),
            _ => Value::String(self.to_string()),
        }
    }
}

/// A value that is never recorded: its place in `info.db.params` holds
/// [`HIDDEN`] (`"***"`), so the other values keep their positions. For
/// passwords, tokens and the like; its `Debug` prints `***` too.
///
/// ```
/// use osprofiler::integrations::tracing::Hidden;
/// # let (name, password) = ("admin", "s3cret");
/// let params = osprofiler::sql_params![name, Hidden(password)];
/// # drop(params);
/// assert_eq!(format!("{:?}", Hidden(password)), "***");
/// ```
#[derive(Clone, Copy, Default)]
pub struct Hidden<T>(pub T);

impl<T> SqlParam for Hidden<T> {
    fn to_sql_param(&self) -> Value {
        Value::String(HIDDEN.to_owned())
    }
}

impl<T> fmt::Debug for Hidden<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(HIDDEN)
    }
}

/// The bound values of a statement, positionally, for
/// [`SqlParamsExt::with_sql_params`]. Made by
/// [`sql_params!`](crate::sql_params) or [`SqlParams::new`], which convert
/// the values only while SQL tracing is on inside a trace, and hold nothing
/// otherwise.
#[derive(Debug, Clone, Default)]
pub struct SqlParams {
    values: Option<Arc<[Value]>>,
}

impl SqlParams {
    /// No params: the statements record `params: null`.
    pub fn none() -> SqlParams {
        SqlParams { values: None }
    }

    /// The values of `values`, converted only while SQL tracing is on and a
    /// trace is active (for lists built at run time; the macro is shorter
    /// for a fixed list, and takes any `Debug` type).
    ///
    /// ```
    /// use osprofiler::integrations::tracing::SqlParams;
    /// let ids = vec![3_i64, 5, 8];
    /// let params = SqlParams::new(&ids);
    /// # drop(params);
    /// ```
    pub fn new<I>(values: I) -> SqlParams
    where
        I: IntoIterator,
        I::Item: SqlParam,
    {
        if !wanted() {
            return SqlParams::none();
        }
        SqlParams {
            values: Some(values.into_iter().map(|v| v.to_sql_param()).collect()),
        }
    }

    /// What the macro makes once it has checked [`wanted`].
    #[doc(hidden)]
    pub fn __from_values(values: Vec<Value>) -> SqlParams {
        SqlParams {
            values: Some(values.into()),
        }
    }
}

/// The bound values of an SQL statement, as
/// [`SqlParams`](crate::integrations::tracing::SqlParams) for
/// [`with_sql_params`](crate::integrations::tracing::SqlParamsExt::with_sql_params):
/// `sql_params![uuid, name]`.
///
/// Each argument is taken by reference. Numbers, `bool`, strings, `Option`s
/// of these (any [`SqlParam`](crate::integrations::tracing::SqlParam)) are
/// recorded as JSON, any other `Debug` type as its `Debug` text, and
/// [`Hidden`](crate::integrations::tracing::Hidden)`(value)` as `"***"`.
///
/// Nothing is evaluated or converted unless SQL tracing is on
/// ([`switches::sql_tracing`](crate::switches::sql_tracing)) and a trace is
/// active: otherwise this is one or two checks and an empty value.
///
/// ```
/// use osprofiler::integrations::tracing::{Hidden, SqlParamsExt as _};
///
/// # async fn run() {
/// # let (uuid, host, password) = ("vm-1", Some("compute-1"), "s3cret");
/// # let query = async { 1_u64 };
/// // sqlx::query("UPDATE instances SET host = $1, admin_pass = $2 WHERE uuid = $3")
/// //     .bind(host).bind(password).bind(uuid)
/// //     .execute(&pool)
/// query
///     .with_sql_params(osprofiler::sql_params![host, Hidden(password), uuid])
///     .await;
/// # }
/// ```
#[macro_export]
macro_rules! sql_params {
    ($($value:expr),* $(,)?) => {
        if $crate::integrations::tracing::__sql_params::wanted() {
            #[allow(unused_imports)]
            use $crate::integrations::tracing::__sql_params::{ViaDebug as _, ViaSqlParam as _};
            $crate::integrations::tracing::SqlParams::__from_values(::std::vec![$(
                (&$crate::integrations::tracing::__sql_params::Wrap(&$value)).__osprofiler_param()
            ),*])
        } else {
            $crate::integrations::tracing::SqlParams::none()
        }
    };
}

/// What [`sql_params!`](crate::sql_params) expands to. A value's conversion is
/// picked by method resolution at the call site: a `&Wrap<T>` receiver takes
/// `ViaSqlParam` (implemented on `Wrap<T>` for `T: SqlParam`) before
/// trying `ViaDebug` (implemented on `&Wrap<T>`, one autoref further, for
/// `T: Debug`).
#[doc(hidden)]
pub mod __sql_params {
    use std::fmt::Debug;

    use serde_json::Value;

    use super::SqlParam;

    pub use super::wanted;

    pub struct Wrap<'a, T: ?Sized>(pub &'a T);

    pub trait ViaSqlParam {
        fn __osprofiler_param(&self) -> Value;
    }

    impl<T: SqlParam + ?Sized> ViaSqlParam for Wrap<'_, T> {
        fn __osprofiler_param(&self) -> Value {
            self.0.to_sql_param()
        }
    }

    pub trait ViaDebug {
        fn __osprofiler_param(&self) -> Value;
    }

    impl<T: Debug + ?Sized> ViaDebug for &Wrap<'_, T> {
        fn __osprofiler_param(&self) -> Value {
            Value::String(format!("{:?}", self.0))
        }
    }
}

/// Runs futures with the bound values of the statements they run: see
/// [`with_sql_params`](SqlParamsExt::with_sql_params).
pub trait SqlParamsExt: IntoFuture + Sized {
    /// Records `params` as `info.db.params` of every sqlx statement this
    /// future runs (each becomes a `db` point while SQL tracing is on).
    ///
    /// ```
    /// use osprofiler::integrations::tracing::SqlParamsExt as _;
    /// # async fn run() {
    /// # let uuid = "vm-1";
    /// # let query = async { Some("compute-1") };
    /// // sqlx::query_scalar("SELECT host FROM instances WHERE uuid = $1")
    /// //     .bind(uuid)
    /// //     .fetch_optional(&pool)
    /// let host = query.with_sql_params(osprofiler::sql_params![uuid]).await;
    /// # drop(host);
    /// # }
    /// ```
    ///
    /// Made here and now, the params span is a child of the current span
    /// and carries the current trace, like `.instrument(span)`; the future
    /// runs inside it, and is dropped inside it. With empty `params` (SQL
    /// tracing off, no trace) the future runs as is.
    #[inline]
    fn with_sql_params(self, params: SqlParams) -> impl Future<Output = Self::Output> {
        let span = match params.values {
            None => None,
            Some(values) => ParamsSpan::new(values),
        };
        in_span(span, self.into_future())
    }
}

impl<F: IntoFuture> SqlParamsExt for F {}

async fn in_span<F: Future>(span: Option<ParamsSpan>, fut: F) -> F::Output {
    match span {
        None => fut.await,
        Some(span) => {
            InSpan {
                span,
                fut: Some(Box::pin(fut)),
            }
            .await
        }
    }
}

/// A params span: created like `tracing::Span`, with `tracing-core` alone.
struct ParamsSpan {
    dispatch: Dispatch,
    id: Id,
}

impl ParamsSpan {
    /// The span, a child of the current one, or `None` when no subscriber
    /// wants it (filtered out: then the values go nowhere).
    #[inline(never)]
    fn new(values: Arc<[Value]>) -> Option<ParamsSpan> {
        // The checks `tracing::span!` makes: the level, then the callsite's
        // cached interest, then the subscriber when it said "sometimes".
        if Level::INFO > LevelFilter::current() {
            return None;
        }
        let interest = CALLSITE.interest();
        if interest.is_never() {
            return None;
        }
        let mut values = Some(values);
        dispatcher::get_default(|dispatch| {
            if !interest.is_always() && !dispatch.enabled(&META) {
                return None;
            }
            let fields = META.fields();
            let mut names = fields.iter();
            let (point, params) = (names.next()?, names.next()?);
            let values = values.take()?;
            let count = values.len() as u64;
            let entries = [
                (&point, Some(&false as &dyn FieldValue)),
                (&params, Some(&count as &dyn FieldValue)),
            ];
            let values_set = fields.value_set(&entries);
            let attrs = Attributes::new(&META, &values_set);
            set_pending(Some(values));
            let _clear = ClearPending;
            let id = dispatch.new_span(&attrs);
            Some(ParamsSpan {
                dispatch: dispatch.clone(),
                id,
            })
        })
    }

    fn enter(&self) -> Entered<'_> {
        self.dispatch.enter(&self.id);
        Entered(self)
    }
}

impl Drop for ParamsSpan {
    fn drop(&mut self) {
        self.dispatch.try_close(self.id.clone());
    }
}

struct Entered<'a>(&'a ParamsSpan);

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        self.0.dispatch.exit(&self.0.id);
    }
}

/// A future polled, and dropped, inside its params span.
struct InSpan<F> {
    span: ParamsSpan,
    // Boxed so that this stays `Unpin` without pin projection; only ever
    // allocated while SQL tracing is on inside a trace.
    fut: Option<Pin<Box<F>>>,
}

impl<F: Future> Future for InSpan<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = &mut *self;
        let _in = this.span.enter();
        let Some(fut) = this.fut.as_mut() else {
            panic!("`with_sql_params` future polled after completion");
        };
        let out = fut.as_mut().poll(cx);
        if out.is_ready() {
            // Dropped while still inside the span.
            this.fut = None;
        }
        out
    }
}

impl<F> Drop for InSpan<F> {
    fn drop(&mut self) {
        // Cancelled: sqlx reports a statement cut short when its future is
        // dropped, which then happens inside the span.
        if let Some(fut) = self.fut.take() {
            let _in = self.span.enter();
            drop(fut);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Debug)]
    struct Flavor {
        vcpus: u32,
    }

    fn values(params: &SqlParams) -> Value {
        params
            .values
            .as_ref()
            .map_or(Value::Null, |v| Value::Array(v.to_vec()))
    }

    #[test]
    fn values_as_json_or_debug_text() {
        let ctx = crate::TraceContext::new(None, None, None);
        let name = String::from("demo");
        let nothing: Option<i32> = None;
        let flavor = Flavor { vcpus: 2 };
        let password = "s3cret";
        let before = switches::sql_tracing();

        switches::set_sql_tracing(true);
        let inside = ctx.in_scope(|| {
            crate::sql_params![
                1_i32,
                -2_i64,
                u128::MAX,
                1.5_f64,
                0.1_f32,
                f64::NAN,
                true,
                "text",
                name,
                &name,
                Some(3_u8),
                nothing,
                'x',
                flavor,
                Hidden(password),
                Hidden(&flavor),
                vec![1_u8, 2],
            ]
        });
        let empty = ctx.in_scope(|| crate::sql_params![]);
        let outside = crate::sql_params![name];
        switches::set_sql_tracing(false);
        let off = ctx.in_scope(|| crate::sql_params![name]);
        switches::set_sql_tracing(before);

        assert_eq!(
            values(&inside),
            json!([
                1,
                -2,
                u128::MAX.to_string(),
                1.5,
                0.1,
                "NaN",
                true,
                "text",
                "demo",
                "demo",
                3,
                null,
                "x",
                "Flavor { vcpus: 2 }",
                "***",
                "***",
                "[1, 2]"
            ])
        );
        assert!(!values(&inside).to_string().contains("s3cret"));
        assert_eq!(values(&empty), json!([]));
        assert!(outside.values.is_none(), "no trace: nothing converted");
        assert!(off.values.is_none(), "SQL tracing off: nothing converted");
        assert_eq!(flavor.vcpus, 2, "taken by reference");
    }

    #[test]
    fn arguments_are_not_evaluated_when_off() {
        let mut calls = 0;
        let mut count = || {
            calls += 1;
            calls
        };
        let params = crate::sql_params![count()];
        assert!(params.values.is_none());
        assert_eq!(calls, 0);
    }

    #[test]
    fn the_adapter_keeps_futures_send() {
        fn send<T: Send>(_: &T) {}
        let fut = async { 1 }.with_sql_params(SqlParams::none());
        send(&fut);
    }
}
