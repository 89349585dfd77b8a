//! Support for the code `#[trace]` and `#[trace_impl]` expand to. Not a public
//! API: may change in any release (the macro crate is pinned to this one).

use std::borrow::Cow;
use std::fmt::{self, Debug, Display, Write as _};
use std::future::Future;

use crate::context::in_scope_future;
/// For the store's and the CLI's writers: one hex and one decimal writer in the workspace.
pub use crate::digits::{
    decimal, decode_hex, hex_string, hex_u64, hex_u128, hex_value, push_decimal, push_decimal_i64,
    write_decimal_fixed, write_hex,
};
pub use crate::info::Info;
pub use crate::local::is_active;
use crate::notifier::Payload;
/// For `osprofiler-store`'s connection strings: one decoder in the workspace.
pub use crate::percent::percent_decode;
use crate::point::{AsyncPoint, LocalPoint};

fn function_payload(
    func: &'static str,
    args: Option<String>,
    info: Option<Info>,
) -> Option<Payload> {
    Some(Payload::Function {
        info: info.filter(|i| !i.is_empty()),
        name: func,
        args,
    })
}

/// Starts a sync function's point (call only when [`is_active`]).
#[inline]
pub fn start_fn(
    name: &'static str,
    func: &'static str,
    args: Option<String>,
    info: Option<Info>,
) -> LocalPoint {
    LocalPoint::start(name, function_payload(func, args, info))
}

/// An `async fn`'s point.
pub struct AsyncFnPoint(AsyncPoint);

impl AsyncFnPoint {
    /// Records nothing.
    #[inline]
    pub const fn none() -> AsyncFnPoint {
        AsyncFnPoint(AsyncPoint::none())
    }

    /// Starts the point (call only when [`is_active`]).
    pub fn start(
        name: &'static str,
        func: &'static str,
        args: Option<String>,
        info: Option<Info>,
    ) -> AsyncFnPoint {
        AsyncFnPoint(AsyncPoint::start(
            Cow::Borrowed(name),
            function_payload(func, args, info),
        ))
    }

    /// Stops the point.
    pub fn finish(self) {
        self.0.finish()
    }
}

/// Polls the body with the point current, then gives the point back.
pub async fn run_async<F: Future>(mut point: AsyncFnPoint, fut: F) -> (AsyncFnPoint, F::Output) {
    let scope = point.0.take_scope();
    let out = in_scope_future(scope, fut).await;
    (point, out)
}

/// What a function's point records at stop.
pub trait Outcome {
    /// Whether a point is being recorded.
    fn recording(&self) -> bool;
    /// `info.function.result`.
    fn set_result(&mut self, result: String);
    /// `info.etype`, `info.message`.
    fn set_error(&mut self, etype: &'static str, message: String);
}

impl Outcome for LocalPoint {
    #[inline]
    fn recording(&self) -> bool {
        self.is_recording()
    }
    fn set_result(&mut self, result: String) {
        self.set_payload(Payload::Result(result));
    }
    fn set_error(&mut self, etype: &'static str, message: String) {
        self.set_payload(Payload::Error {
            etype: Cow::Borrowed(etype),
            message,
        });
    }
}

impl Outcome for AsyncFnPoint {
    #[inline]
    fn recording(&self) -> bool {
        self.0.is_recording()
    }
    fn set_result(&mut self, result: String) {
        self.0.set_payload(Payload::Result(result));
    }
    fn set_error(&mut self, etype: &'static str, message: String) {
        self.0.set_payload(Payload::Error {
            etype: Cow::Borrowed(etype),
            message,
        });
    }
}

/// The type name of a value (the error's `etype`).
pub fn type_name_of<T: ?Sized>(_: &T) -> &'static str {
    std::any::type_name::<T>()
}

/// Builds `args` as a Rust tuple's `Debug` (which reads like Python's
/// `str(args)`: `("demo",)`, `(1, 2)`).
pub struct ArgsWriter {
    s: String,
    n: usize,
}

impl ArgsWriter {
    /// `(`
    #[allow(clippy::new_without_default)]
    pub fn new() -> ArgsWriter {
        ArgsWriter {
            s: String::from("("),
            n: 0,
        }
    }

    fn next(&mut self) -> &mut String {
        if self.n > 0 {
            self.s.push_str(", ");
        }
        self.n += 1;
        &mut self.s
    }

    /// Closes the tuple.
    pub fn finish(mut self) -> String {
        if self.n == 1 {
            self.s.push(',');
        }
        self.s.push(')');
        self.s
    }
}

// Autoref specialization: the macro calls `(&&Arg(&x)).__osp_arg(w)`; method
// lookup tries the `Debug` impl first and falls back to the type name, so an
// argument without `Debug` never stops `#[trace]` from compiling.

/// An argument to show.
pub struct Arg<'a, T: ?Sized>(pub &'a T);

/// Shows an argument with `Debug`.
pub trait ArgDebug {
    /// Appends the argument.
    fn __osp_arg(&self, w: &mut ArgsWriter);
}

impl<T: Debug + ?Sized> ArgDebug for &Arg<'_, T> {
    fn __osp_arg(&self, w: &mut ArgsWriter) {
        let _ = write!(w.next(), "{:?}", self.0);
    }
}

/// Shows an argument without `Debug` as `<its type>`.
pub trait ArgOpaque {
    /// Appends the argument.
    fn __osp_arg(&self, w: &mut ArgsWriter);
}

impl<T: ?Sized> ArgOpaque for Arg<'_, T> {
    fn __osp_arg(&self, w: &mut ArgsWriter) {
        let _ = write!(w.next(), "<{}>", std::any::type_name::<T>());
    }
}

/// A returned value to show (`hide_result = false`).
pub struct Val<'a, T: ?Sized>(pub &'a T);

/// `Debug` of a value.
pub trait ValDebug {
    /// The text.
    fn __osp_val(&self) -> String;
}

impl<T: Debug + ?Sized> ValDebug for &Val<'_, T> {
    fn __osp_val(&self) -> String {
        format!("{:?}", self.0)
    }
}

/// A value without `Debug`: its type name.
pub trait ValOpaque {
    /// The text.
    fn __osp_val(&self) -> String;
}

impl<T: ?Sized> ValOpaque for Val<'_, T> {
    fn __osp_val(&self) -> String {
        format!("<{}>", std::any::type_name::<T>())
    }
}

/// An error to describe: `Display` if it has one, else `Debug`, else its type.
pub struct Msg<'a, T: ?Sized>(pub &'a T);

/// The error's `Display`.
pub trait MsgDisplay {
    /// The message.
    fn __osp_msg(&self) -> String;
}

impl<T: Display + ?Sized> MsgDisplay for &&Msg<'_, T> {
    fn __osp_msg(&self) -> String {
        self.0.to_string()
    }
}

/// The error's `Debug`.
pub trait MsgDebug {
    /// The message.
    fn __osp_msg(&self) -> String;
}

impl<T: Debug + ?Sized> MsgDebug for &Msg<'_, T> {
    fn __osp_msg(&self) -> String {
        format!("{:?}", self.0)
    }
}

/// The error's type name.
pub trait MsgOpaque {
    /// The message.
    fn __osp_msg(&self) -> String;
}

impl<T: ?Sized> MsgOpaque for Msg<'_, T> {
    fn __osp_msg(&self) -> String {
        std::any::type_name::<T>().to_owned()
    }
}

impl fmt::Debug for AsyncFnPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AsyncFnPoint")
    }
}
