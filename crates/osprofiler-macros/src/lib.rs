#![warn(missing_docs)]
//! `#[trace]` and `#[trace_impl]` for the `osprofiler` crate. Use them from
//! there (`osprofiler::trace`): the expansion refers to `::osprofiler`.

use proc_macro::TokenStream;
use proc_macro2::{TokenStream as TokenStream2, TokenTree};
use quote::{ToTokens, quote};
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{
    Expr, FnArg, ImplItem, ItemFn, ItemImpl, LitBool, LitStr, Pat, ReturnType, Token, Type,
    Visibility,
};

/// Options shared by `#[trace]` and `#[trace_impl]`.
#[derive(Default, Clone)]
struct Opts {
    name: Option<LitStr>,
    info: Option<Expr>,
    hide_args: bool,
    hide_result: Option<bool>,
    trace_private: bool,
    skip: bool,
}

impl Parse for Opts {
    fn parse(input: ParseStream) -> syn::Result<Opts> {
        let mut o = Opts::default();
        let items = Punctuated::<OptItem, Token![,]>::parse_terminated(input)?;
        for item in items {
            let key = item.key.to_string();
            match (key.as_str(), item.value) {
                ("name", Some(OptValue::Str(s))) => o.name = Some(s),
                ("info", Some(OptValue::Expr(e))) => o.info = Some(e),
                ("info", Some(OptValue::Str(s))) => o.info = Some(syn::parse_quote!(#s)),
                ("hide_args", None) => o.hide_args = true,
                ("hide_args", Some(OptValue::Bool(b))) => o.hide_args = b,
                ("hide_result", None) => o.hide_result = Some(true),
                ("hide_result", Some(OptValue::Bool(b))) => o.hide_result = Some(b),
                ("trace_private", None) => o.trace_private = true,
                ("trace_private", Some(OptValue::Bool(b))) => o.trace_private = b,
                ("skip", None) => o.skip = true,
                ("name", _) => {
                    return Err(syn::Error::new(
                        item.key.span(),
                        "expected `name = \"category\"`",
                    ));
                }
                ("hide_args" | "hide_result" | "trace_private", _) => {
                    return Err(syn::Error::new(
                        item.key.span(),
                        format!("expected `{key}` or `{key} = true|false`"),
                    ));
                }
                _ => {
                    return Err(syn::Error::new(
                        item.key.span(),
                        "unknown option; expected one of: name, info, hide_args, hide_result, trace_private, skip",
                    ));
                }
            }
        }
        Ok(o)
    }
}

struct OptItem {
    key: syn::Ident,
    value: Option<OptValue>,
}

enum OptValue {
    Str(LitStr),
    Bool(bool),
    Expr(Expr),
}

impl Parse for OptItem {
    fn parse(input: ParseStream) -> syn::Result<OptItem> {
        let key: syn::Ident = input.parse()?;
        if !input.peek(Token![=]) {
            return Ok(OptItem { key, value: None });
        }
        input.parse::<Token![=]>()?;
        let value = if key == "info" {
            OptValue::Expr(input.parse()?)
        } else if input.peek(LitStr) {
            OptValue::Str(input.parse()?)
        } else if input.peek(LitBool) {
            OptValue::Bool(input.parse::<LitBool>()?.value)
        } else {
            OptValue::Expr(input.parse()?)
        };
        Ok(OptItem {
            key,
            value: Some(value),
        })
    }
}

/// Traces a function or method: each call becomes a point of the current
/// trace (nothing at all happens when no trace is active).
///
/// Options: `name = "db"` (the point's name and category; default: the
/// function's name), `info = <expr>` (extra info, anything `Into<Info>`,
/// evaluated only when traced), `hide_args` (do not record the arguments),
/// `hide_result = false` (record the returned value; hidden by default).
#[proc_macro_attribute]
pub fn trace(args: TokenStream, item: TokenStream) -> TokenStream {
    let opts = match syn::parse::<Opts>(args) {
        Ok(o) => o,
        Err(e) => return e.to_compile_error().into(),
    };
    let func = match syn::parse::<ItemFn>(item) {
        Ok(f) => f,
        Err(e) => return e.to_compile_error().into(),
    };
    if opts.skip {
        return func.into_token_stream().into();
    }
    let mut func = func;
    func.block = Box::new(traced_block(&opts, &func.sig, &func.block, None));
    func.into_token_stream().into()
}

/// Traces the methods of an `impl` block, like osprofiler's `trace_cls`:
/// all methods of a trait impl, the `pub` ones of an inherent impl (all with
/// `trace_private`). Takes the options of `#[trace]`; a method can opt out
/// with `#[trace(skip)]` or use its own `#[trace(...)]`.
#[proc_macro_attribute]
pub fn trace_impl(args: TokenStream, item: TokenStream) -> TokenStream {
    let opts = match syn::parse::<Opts>(args) {
        Ok(o) => o,
        Err(e) => return e.to_compile_error().into(),
    };
    let mut imp = match syn::parse::<ItemImpl>(item) {
        Ok(i) => i,
        Err(e) => return e.to_compile_error().into(),
    };
    let type_name = type_label(&imp.self_ty);
    let is_trait_impl = imp.trait_.is_some();
    for it in &mut imp.items {
        let ImplItem::Fn(m) = it else { continue };
        if m.sig.constness.is_some() {
            continue;
        }
        if m.attrs.iter().any(is_trace_attr) {
            // `#[trace(skip)]` expands to the method unchanged; any other
            // `#[trace(...)]` traces it with its own options.
            continue;
        }
        let public = !matches!(m.vis, Visibility::Inherited);
        if !(is_trait_impl || public || opts.trace_private) {
            continue;
        }
        m.block = traced_block(&opts, &m.sig, &m.block, Some(&type_name));
    }
    imp.into_token_stream().into()
}

fn is_trace_attr(a: &syn::Attribute) -> bool {
    a.path().segments.last().is_some_and(|s| s.ident == "trace")
}

fn type_label(ty: &Type) -> String {
    match ty {
        Type::Path(p) => p
            .path
            .segments
            .last()
            .map(|s| s.ident.to_string())
            .unwrap_or_default(),
        other => other.to_token_stream().to_string().replace(' ', ""),
    }
}

fn contains_impl_trait(ts: TokenStream2) -> bool {
    ts.into_iter().any(|tt| match tt {
        TokenTree::Ident(i) => i == "impl",
        TokenTree::Group(g) => contains_impl_trait(g.stream()),
        _ => false,
    })
}

fn returns_result(ret: &ReturnType) -> bool {
    match ret {
        ReturnType::Type(_, ty) => match &**ty {
            Type::Path(p) => p.path.segments.last().is_some_and(|s| s.ident == "Result"),
            _ => false,
        },
        ReturnType::Default => false,
    }
}

/// The body of a traced function: the original `block` wrapped in a point.
fn traced_block(
    opts: &Opts,
    sig: &syn::Signature,
    block: &syn::Block,
    type_name: Option<&str>,
) -> syn::Block {
    let fn_ident = sig.ident.to_string();
    let point_name = opts
        .name
        .as_ref()
        .map(LitStr::value)
        .unwrap_or_else(|| fn_ident.clone());
    let qualified = match type_name {
        Some(t) => format!("::{t}::{fn_ident}"),
        None => format!("::{fn_ident}"),
    };
    let func_name = quote! { ::core::concat!(::core::module_path!(), #qualified) };
    let span = sig.span();

    let args = if opts.hide_args {
        quote! { ::core::option::Option::None }
    } else {
        let mut pushes = Vec::new();
        for input in &sig.inputs {
            match input {
                FnArg::Receiver(_) => {}
                FnArg::Typed(pt) => match &*pt.pat {
                    Pat::Ident(pi) if pi.subpat.is_none() => {
                        let id = &pi.ident;
                        pushes.push(quote! { (&&::osprofiler::__private::Arg(&#id)).__osp_arg(&mut __osp_w); });
                    }
                    _ => pushes.push(
                        quote! { (&&::osprofiler::__private::Arg(&"_")).__osp_arg(&mut __osp_w); },
                    ),
                },
            }
        }
        quote! {{
            #[allow(unused_imports)]
            use ::osprofiler::__private::{ArgDebug as _, ArgOpaque as _};
            let mut __osp_w = ::osprofiler::__private::ArgsWriter::new();
            #(#pushes)*
            ::core::option::Option::Some(__osp_w.finish())
        }}
    };
    let info = match &opts.info {
        Some(e) => quote! { ::core::option::Option::Some(::osprofiler::Info::from(#e)) },
        None => quote! { ::core::option::Option::None },
    };

    let show_result = opts.hide_result == Some(false);
    let is_result = returns_result(&sig.output);
    let ret_ty = match &sig.output {
        ReturnType::Type(_, ty) if !contains_impl_trait(ty.to_token_stream()) => {
            Some(quote! { : #ty })
        }
        ReturnType::Default => Some(quote! { : () }),
        _ => None,
    };

    let outcome = if is_result {
        let ok_arm = if show_result {
            quote! {
                #[allow(unused_imports)]
                use ::osprofiler::__private::{ValDebug as _, ValOpaque as _};
                ::osprofiler::__private::Outcome::set_result(&mut __osp_point, (&&::osprofiler::__private::Val(__osp_v)).__osp_val());
            }
        } else {
            quote! { let _ = __osp_v; }
        };
        quote! {
            match &__osp_ret {
                ::core::result::Result::Err(__osp_e) => {
                    #[allow(unused_imports)]
                    use ::osprofiler::__private::{MsgDisplay as _, MsgDebug as _, MsgOpaque as _};
                    ::osprofiler::__private::Outcome::set_error(
                        &mut __osp_point,
                        ::osprofiler::__private::type_name_of(__osp_e),
                        (&&&::osprofiler::__private::Msg(__osp_e)).__osp_msg(),
                    );
                }
                ::core::result::Result::Ok(__osp_v) => { #ok_arm }
            }
        }
    } else if show_result {
        quote! {
            #[allow(unused_imports)]
            use ::osprofiler::__private::{ValDebug as _, ValOpaque as _};
            ::osprofiler::__private::Outcome::set_result(&mut __osp_point, (&&::osprofiler::__private::Val(&__osp_ret)).__osp_val());
        }
    } else {
        quote! {}
    };

    let body = if sig.asyncness.is_some() {
        quote::quote_spanned! {span=>
            let __osp_point = if ::osprofiler::__private::is_active() {
                ::osprofiler::__private::AsyncFnPoint::start(#point_name, #func_name, #args, #info)
            } else {
                ::osprofiler::__private::AsyncFnPoint::none()
            };
            let (mut __osp_point, __osp_ret) = ::osprofiler::__private::run_async(__osp_point, async move #block).await;
            let __osp_ret #ret_ty = __osp_ret;
            if ::osprofiler::__private::Outcome::recording(&__osp_point) {
                #outcome
            }
            __osp_point.finish();
            __osp_ret
        }
    } else if is_result || show_result {
        quote::quote_spanned! {span=>
            #[allow(unused_mut)]
            let mut __osp_point = if ::osprofiler::__private::is_active() {
                ::osprofiler::__private::start_fn(#point_name, #func_name, #args, #info)
            } else {
                ::osprofiler::LocalPoint::none()
            };
            #[allow(clippy::redundant_closure_call)]
            let __osp_ret #ret_ty = (move || #block)();
            if ::osprofiler::__private::Outcome::recording(&__osp_point) {
                #outcome
            }
            __osp_ret
        }
    } else {
        quote::quote_spanned! {span=>
            let __osp_point = if ::osprofiler::__private::is_active() {
                ::osprofiler::__private::start_fn(#point_name, #func_name, #args, #info)
            } else {
                ::osprofiler::LocalPoint::none()
            };
            #block
        }
    };
    syn::parse_quote_spanned! {span=> { #body } }
}
