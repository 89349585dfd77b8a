//! `#[trace]` and `#[trace_impl]`: what they record, and that they record
//! (and format) nothing outside a trace.

mod common;

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};

use osprofiler::{Event, EventKind, TraceContext, trace, trace_impl};

fn only(events: &[Event], name: &str, kind: EventKind) -> Event {
    let v: Vec<_> = events
        .iter()
        .filter(|e| e.name == name && e.kind == kind)
        .collect();
    assert_eq!(v.len(), 1, "{name} {kind:?} in {events:#?}");
    v[0].clone()
}

#[derive(Debug)]
struct Flavor {
    vcpus: u32,
}

#[trace(name = "db")]
fn quota_get(project: &str, resource: &str, flavor: &Flavor) -> u32 {
    flavor.vcpus + project.len() as u32 + resource.len() as u32
}

#[trace(name = "db", hide_result = false)]
fn shown(x: u32) -> Vec<u32> {
    vec![x, x]
}

#[test]
fn records_function_name_and_args_hides_result_by_default() {
    common::sink();
    let ctx = TraceContext::new(None, None, None);
    let r = ctx.in_scope(|| quota_get("demo", "cores", &Flavor { vcpus: 2 }));
    assert_eq!(r, 11);
    let ev = common::events_of(ctx.base_id());
    let start = only(&ev, "db", EventKind::Start);
    let f = &start.info["function"];
    assert_eq!(f["name"], "macros::quota_get");
    assert_eq!(f["args"], r#"("demo", "cores", Flavor { vcpus: 2 })"#);
    assert_eq!(f["kwargs"], "{}");
    let stop = only(&ev, "db", EventKind::Stop);
    assert!(
        !stop.info.contains_key("function"),
        "result hidden by default: {stop:?}"
    );
    assert_eq!(stop.info.keys().collect::<Vec<_>>(), ["host"]);
}

#[test]
fn shows_result_when_asked_and_one_arg_reads_like_a_python_tuple() {
    common::sink();
    let ctx = TraceContext::new(None, None, None);
    ctx.in_scope(|| shown(7));
    let ev = common::events_of(ctx.base_id());
    assert_eq!(
        only(&ev, "db", EventKind::Start).info["function"]["args"],
        "(7,)"
    );
    assert_eq!(
        only(&ev, "db", EventKind::Stop).info["function"]["result"],
        "[7, 7]"
    );
}

#[derive(Debug, thiserror::Error)]
#[error("No valid host was found")]
pub struct NoValidHost;

#[trace(name = "driver", hide_args)]
fn spawn(_vm: &str, password: &str) -> Result<u32, NoValidHost> {
    let _ = password;
    Err(NoValidHost)
}

#[trace(name = "driver", hide_result = false)]
fn spawn_ok(n: u32) -> Result<u32, NoValidHost> {
    Ok(n * 2)
}

#[trace(name = "rpc")]
fn calls_with_question_mark(n: &str) -> Result<u32, std::num::ParseIntError> {
    let v: u32 = n.parse()?;
    Ok(v)
}

#[test]
fn err_records_etype_and_message_and_hide_args_hides_args() {
    common::sink();
    let ctx = TraceContext::new(None, None, None);
    ctx.in_scope(|| {
        assert!(spawn("vm-1", "hunter2").is_err());
        assert_eq!(spawn_ok(4).unwrap(), 8);
        assert!(calls_with_question_mark("x").is_err());
        assert_eq!(calls_with_question_mark("5").unwrap(), 5);
    });
    let ev = common::events_of(ctx.base_id());
    let starts: Vec<_> = ev
        .iter()
        .filter(|e| e.name == "driver" && e.kind == EventKind::Start)
        .collect();
    assert_eq!(
        starts[0].info["function"],
        serde_json::json!({"name": "macros::spawn"})
    );
    assert!(!serde_json::to_string(&ev).unwrap().contains("hunter2"));
    let stops: Vec<_> = ev
        .iter()
        .filter(|e| e.name == "driver" && e.kind == EventKind::Stop)
        .collect();
    assert_eq!(stops[0].info["etype"], "macros::NoValidHost");
    assert_eq!(stops[0].info["message"], "No valid host was found");
    assert_eq!(stops[1].info["function"]["result"], "8");
    assert!(!stops[1].info.contains_key("etype"));
    let rpc: Vec<_> = ev
        .iter()
        .filter(|e| e.name == "rpc" && e.kind == EventKind::Stop)
        .collect();
    assert_eq!(rpc[0].info["etype"], "core::num::error::ParseIntError");
    assert_eq!(rpc[0].info["message"], "invalid digit found in string");
    assert!(!rpc[1].info.contains_key("etype"));
}

/// Counts how often it is formatted.
struct Counted;
static FORMATTED: AtomicUsize = AtomicUsize::new(0);
impl fmt::Debug for Counted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        FORMATTED.fetch_add(1, Ordering::SeqCst);
        f.write_str("Counted")
    }
}

static INFO_BUILT: AtomicUsize = AtomicUsize::new(0);
fn expensive_info() -> osprofiler::Info {
    INFO_BUILT.fetch_add(1, Ordering::SeqCst);
    osprofiler::Info::new().with("k", "v")
}

#[trace(name = "db", info = expensive_info(), hide_result = false)]
fn lazy(c: &Counted) -> Result<u32, NoValidHost> {
    let _ = c;
    Ok(1)
}

#[test]
fn nothing_is_formatted_or_recorded_without_a_trace() {
    let sink = common::sink();
    let before = sink.events().len();
    for _ in 0..10 {
        lazy(&Counted).unwrap();
    }
    assert_eq!(FORMATTED.load(Ordering::SeqCst), 0);
    assert_eq!(INFO_BUILT.load(Ordering::SeqCst), 0);
    let ctx = TraceContext::new(None, None, None);
    ctx.in_scope(|| lazy(&Counted)).unwrap();
    assert_eq!(FORMATTED.load(Ordering::SeqCst), 1);
    assert_eq!(INFO_BUILT.load(Ordering::SeqCst), 1);
    let ev = common::events_of(ctx.base_id());
    let start = only(&ev, "db", EventKind::Start);
    assert_eq!(
        start.info.keys().collect::<Vec<_>>(),
        ["k", "function", "host"],
        "user info first, as Python"
    );
    osprofiler::notifier::flush().unwrap();
    let untraced = sink.events()[before..]
        .iter()
        .filter(|e| e.base_id != ctx.base_id() && e.name == "db" && e.info.contains_key("k"))
        .count();
    assert_eq!(untraced, 0);
}

struct NotDebug;

#[trace(name = "db")]
fn opaque_arg(x: NotDebug, (a, b): (u8, u8)) -> u8 {
    let _ = x;
    a + b
}

#[test]
fn arguments_without_debug_or_with_patterns_still_compile() {
    common::sink();
    let ctx = TraceContext::new(None, None, None);
    assert_eq!(ctx.in_scope(|| opaque_arg(NotDebug, (1, 2))), 3);
    let ev = common::events_of(ctx.base_id());
    assert_eq!(
        only(&ev, "db", EventKind::Start).info["function"]["args"],
        r#"(<macros::NotDebug>, "_")"#
    );
}

pub struct Conductor {
    hosts: Vec<String>,
}

#[trace_impl(name = "rpc")]
impl Conductor {
    pub fn schedule(&self, vm: &str) -> Result<String, NoValidHost> {
        let _ = vm;
        self.pick().ok_or(NoValidHost)
    }

    pub async fn build(&mut self, vm: String) -> usize {
        tokio::task::yield_now().await;
        self.hosts.push(vm);
        self.hosts.len()
    }

    fn pick(&self) -> Option<String> {
        self.hosts.first().cloned()
    }

    #[trace(skip)]
    pub fn untraced(&self) -> usize {
        self.hosts.len()
    }

    #[trace(name = "db", hide_args)]
    pub fn own_options(&self, secret: &str) -> usize {
        secret.len()
    }

    pub const fn constant() -> u32 {
        3
    }
}

pub struct Driver;

#[trace_impl(name = "driver", trace_private)]
impl Driver {
    fn private_spawn(&self) -> u32 {
        1
    }
}

#[test]
fn trace_impl_traces_public_methods_like_trace_cls() {
    common::sink();
    let ctx = TraceContext::new(None, None, None);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut c = Conductor {
        hosts: vec!["compute-1".into()],
    };
    rt.block_on(ctx.clone().instrument(async {
        assert_eq!(c.schedule("vm-1").unwrap(), "compute-1");
        assert_eq!(c.build("vm-2".into()).await, 2);
        assert_eq!(c.untraced(), 2);
        assert_eq!(c.own_options("pw"), 2);
        assert_eq!(Conductor::constant(), 3);
        assert_eq!(Driver.private_spawn(), 1);
    }));
    let ev = common::events_of(ctx.base_id());
    let names: Vec<String> = ev
        .iter()
        .filter(|e| e.kind == EventKind::Start)
        .map(|e| {
            format!(
                "{}:{}",
                e.name,
                e.info["function"]["name"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        names,
        [
            "rpc:macros::Conductor::schedule",
            "rpc:macros::Conductor::build",
            "db:macros::own_options",
            "driver:macros::Driver::private_spawn"
        ]
    );
    // `pick` is private: not traced, so `schedule` has no children.
    assert!(!ev.iter().any(|e| {
        e.info
            .get("function")
            .is_some_and(|f| f["name"] == "macros::Conductor::pick")
    }));
    let build = ev
        .iter()
        .find(|e| {
            e.kind == EventKind::Start && e.info["function"]["name"] == "macros::Conductor::build"
        })
        .unwrap();
    assert_eq!(build.info["function"]["args"], r#"("vm-2",)"#);
}

#[trace(name = "db")]
async fn async_question(n: &str) -> Result<u32, std::num::ParseIntError> {
    tokio::task::yield_now().await;
    let v: u32 = n.parse()?;
    Ok(v)
}

#[trace]
fn default_name_is_the_function() -> impl Iterator<Item = u32> {
    0..3
}

#[test]
fn async_result_and_impl_trait_returns() {
    common::sink();
    let ctx = TraceContext::new(None, None, None);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(ctx.clone().instrument(async {
        assert!(async_question("x").await.is_err());
        assert_eq!(async_question("9").await.unwrap(), 9);
        assert_eq!(default_name_is_the_function().sum::<u32>(), 3);
    }));
    let ev = common::events_of(ctx.base_id());
    let stops: Vec<_> = ev
        .iter()
        .filter(|e| e.name == "db" && e.kind == EventKind::Stop)
        .collect();
    assert_eq!(stops.len(), 2);
    assert_eq!(stops[0].info["etype"], "core::num::error::ParseIntError");
    assert!(!stops[1].info.contains_key("etype"));
    only(&ev, "default_name_is_the_function", EventKind::Start);
}
