//! The trace context: init/get/clean, guards on every exit path, async
//! propagation, explicit hand-off, and no leaks between requests.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use osprofiler::{EventKind, FutureExt, HmacKey, Id, TraceContext};

fn start_of(events: &[osprofiler::Event], name: &str) -> osprofiler::Event {
    events
        .iter()
        .find(|e| e.name == name && e.kind == EventKind::Start)
        .cloned()
        .unwrap_or_else(|| panic!("no {name}-start in {events:#?}"))
}

fn stop_of(events: &[osprofiler::Event], name: &str) -> osprofiler::Event {
    events
        .iter()
        .find(|e| e.name == name && e.kind == EventKind::Stop)
        .cloned()
        .unwrap_or_else(|| panic!("no {name}-stop in {events:#?}"))
}

#[test]
fn init_get_clean_and_python_style_start_stop() {
    common::sink();
    assert!(osprofiler::get().is_none());
    let parent: Id = "22222222-2222-4222-8222-222222222222".parse().unwrap();
    let ctx = osprofiler::init(HmacKey::new("k"), None, Some(parent));
    let got = osprofiler::get().unwrap();
    assert_eq!(got.base_id(), ctx.base_id());
    assert_eq!(got.id(), parent);
    osprofiler::start("wsgi", osprofiler::Info::new().with("path", "/"));
    let inner = osprofiler::get().unwrap().id();
    assert_ne!(inner, parent);
    osprofiler::start("db", None);
    osprofiler::stop(osprofiler::Info::new().with("rows", 3));
    osprofiler::stop(None);
    osprofiler::stop(None); // unmatched: ignored, as in Python
    assert_eq!(osprofiler::get().unwrap().id(), parent);
    osprofiler::clean();
    assert!(osprofiler::get().is_none());
    assert!(!osprofiler::is_active());

    let ev = common::events_of(ctx.base_id());
    assert_eq!(ev.len(), 4, "{ev:#?}");
    let wsgi = start_of(&ev, "wsgi");
    assert_eq!(wsgi.parent_id, parent);
    assert_eq!(wsgi.trace_id, inner);
    assert_eq!(wsgi.info["path"], "/");
    let db = start_of(&ev, "db");
    assert_eq!(db.parent_id, inner);
    assert_eq!(stop_of(&ev, "db").info["rows"], 3);
    assert!(ev.iter().all(|e| e.info.contains_key("host")));
}

#[test]
fn base_id_defaults_to_new_uuid4_and_first_level_parent_is_base() {
    common::sink();
    let a = TraceContext::new(None, None, None);
    let b = TraceContext::new(None, None, None);
    assert_ne!(a.base_id(), b.base_id());
    assert_eq!(&a.base_id().to_string()[14..15], "4");
    a.in_scope(|| {
        let _p = osprofiler::point("wsgi");
    });
    let ev = common::events_of(a.base_id());
    assert_eq!(start_of(&ev, "wsgi").parent_id, a.base_id());
}

#[test]
fn guard_stops_on_early_return_question_mark_and_panic() {
    common::sink();
    fn early(flag: bool) -> u32 {
        let _p = osprofiler::point("early");
        if flag {
            return 1;
        }
        2
    }
    fn question() -> Result<(), std::num::ParseIntError> {
        let _p = osprofiler::point("question");
        "x".parse::<u32>()?;
        Ok(())
    }
    let ctx = TraceContext::new(None, None, None);
    ctx.in_scope(|| {
        early(true);
        let _ = question();
        let r = std::panic::catch_unwind(|| {
            let _p = osprofiler::point("boom");
            panic!("boom");
        });
        assert!(r.is_err());
        // The panic did not leave "boom" current.
        let _after = osprofiler::point("after");
    });
    let ev = common::events_of(ctx.base_id());
    for name in ["early", "question", "boom", "after"] {
        start_of(&ev, name);
        stop_of(&ev, name);
    }
    assert_eq!(stop_of(&ev, "boom").info["etype"], "panic");
    assert_eq!(start_of(&ev, "after").parent_id, ctx.base_id());
}

#[test]
fn nested_points_link_parent_to_child() {
    common::sink();
    let ctx = TraceContext::new(None, None, None);
    let (outer_id, inner_id) = ctx.in_scope(|| {
        let outer = osprofiler::point("rpc");
        let inner = osprofiler::point("db");
        (outer.id().unwrap(), inner.id().unwrap())
    });
    let ev = common::events_of(ctx.base_id());
    assert_eq!(start_of(&ev, "db").parent_id, outer_id);
    assert_eq!(start_of(&ev, "db").trace_id, inner_id);
    assert_eq!(stop_of(&ev, "db").parent_id, outer_id);
    assert_eq!(start_of(&ev, "rpc").parent_id, ctx.base_id());
}

#[test]
fn no_trace_no_events_and_guards_are_empty() {
    common::sink();
    let before = common::sink().events().len();
    assert!(!osprofiler::is_active());
    let g = osprofiler::point("nothing");
    assert!(!g.is_recording());
    drop(g);
    osprofiler::start("nothing", None);
    osprofiler::stop(None);
    assert!(osprofiler::get().is_none());
    osprofiler::notifier::flush().unwrap();
    assert!(
        common::sink().events()[before..]
            .iter()
            .all(|e| e.name != "nothing")
    );
}

#[test]
fn context_handed_to_a_thread_explicitly() {
    common::sink();
    let ctx = TraceContext::new(None, None, None);
    let parent = ctx.in_scope(|| {
        let p = osprofiler::point("api");
        let here = osprofiler::get().unwrap();
        std::thread::spawn(move || {
            assert!(!osprofiler::is_active(), "a new thread starts untraced");
            let _in = here.enter();
            let _p = osprofiler::point("worker");
        })
        .join()
        .unwrap();
        p.id().unwrap()
    });
    let ev = common::events_of(ctx.base_id());
    assert_eq!(start_of(&ev, "worker").parent_id, parent);
}

#[test]
fn enter_restores_previous_state() {
    common::sink();
    let a = TraceContext::new(None, None, None);
    let b = TraceContext::new(None, None, None);
    let _ga = a.enter();
    {
        let _gb = b.enter();
        assert_eq!(osprofiler::get().unwrap().base_id(), b.base_id());
    }
    assert_eq!(osprofiler::get().unwrap().base_id(), a.base_id());
    drop(_ga);
    assert!(osprofiler::get().is_none());
}

/// osprofiler's Keystone bug: a thread reused for the next request still
/// carried the previous request's profiler. Requests served through
/// `instrument` leave nothing behind on the worker thread.
#[test]
fn no_leak_into_next_request_on_a_reused_thread() {
    common::sink();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let traced = TraceContext::new(None, None, None);
        let base = traced.base_id();
        let first = async {
            let _p = osprofiler::point("req1");
            tokio::task::yield_now().await;
            osprofiler::get().map(|c| c.base_id())
        };
        assert_eq!(traced.instrument(first).await, Some(base));
        // Same thread, next request, not traced.
        assert!(osprofiler::get().is_none());
        assert!(!osprofiler::is_active());
        let second = tokio::spawn(async { osprofiler::get().map(|c| c.base_id()) })
            .await
            .unwrap();
        assert_eq!(second, None);
    });
}

#[test]
fn context_follows_a_future_across_await_and_not_into_other_tasks() {
    common::sink();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let ctx = TraceContext::new(None, None, None);
    let base = ctx.base_id();
    let seen_by_other = Arc::new(AtomicUsize::new(0));
    rt.block_on(async {
        // Busy untraced tasks interleaving on the same workers.
        let mut others = Vec::new();
        for _ in 0..8 {
            let seen = seen_by_other.clone();
            others.push(tokio::spawn(async move {
                for _ in 0..200 {
                    if osprofiler::get().is_some() {
                        seen.fetch_add(1, Ordering::Relaxed);
                    }
                    tokio::task::yield_now().await;
                }
            }));
        }
        let traced = tokio::spawn(ctx.clone().instrument(osprofiler::in_point(
            "wsgi",
            async move {
                let root_id = osprofiler::get().unwrap().id();
                assert_ne!(root_id, base);
                for _ in 0..50 {
                    tokio::task::yield_now().await;
                    assert_eq!(osprofiler::get().unwrap().id(), root_id);
                }
                // Explicit hand-off to a spawned task.
                tokio::spawn(
                    osprofiler::in_point("spawned", async {
                        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                    })
                    .in_current_trace(),
                )
                .await
                .unwrap();
                // And a spawned task without it is untraced.
                let untraced = tokio::spawn(async { osprofiler::is_active() })
                    .await
                    .unwrap();
                assert!(!untraced);
                root_id
            },
        )));
        let root_id = traced.await.unwrap();
        for o in others {
            o.await.unwrap();
        }
        let ev = common::events_of(base);
        assert_eq!(start_of(&ev, "spawned").parent_id, root_id);
        assert_eq!(start_of(&ev, "wsgi").trace_id, root_id);
        assert_eq!(start_of(&ev, "wsgi").parent_id, base);
    });
    assert_eq!(
        seen_by_other.load(Ordering::Relaxed),
        0,
        "untraced tasks saw a trace"
    );
}

#[test]
fn concurrent_async_points_in_one_task_keep_their_parents() {
    common::sink();
    #[osprofiler::trace(name = "branch", hide_args)]
    async fn branch(n: u64) -> u64 {
        for _ in 0..3 {
            tokio::task::yield_now().await;
            leaf().await;
        }
        n
    }
    #[osprofiler::trace(name = "leaf")]
    async fn leaf() {
        tokio::task::yield_now().await;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let ctx = TraceContext::new(None, None, None);
    rt.block_on(ctx.clone().instrument(async {
        let (a, b) = tokio::join!(branch(1), branch(2));
        assert_eq!(a + b, 3);
    }));
    let ev = common::events_of(ctx.base_id());
    let branches: Vec<Id> = ev
        .iter()
        .filter(|e| e.name == "branch" && e.kind == EventKind::Start)
        .map(|e| e.trace_id)
        .collect();
    assert_eq!(branches.len(), 2);
    let leaves: Vec<_> = ev
        .iter()
        .filter(|e| e.name == "leaf" && e.kind == EventKind::Start)
        .collect();
    assert_eq!(leaves.len(), 6);
    for b in &branches {
        assert_eq!(
            leaves.iter().filter(|l| l.parent_id == *b).count(),
            3,
            "each branch has its own three leaves"
        );
    }
}

#[test]
fn dropped_future_records_cancelled_stop() {
    common::sink();
    #[osprofiler::trace(name = "slow")]
    async fn slow() {
        tokio::time::sleep(std::time::Duration::from_secs(60)).await;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let ctx = TraceContext::new(None, None, None);
    rt.block_on(ctx.clone().instrument(async {
        let r = tokio::time::timeout(std::time::Duration::from_millis(5), slow()).await;
        assert!(r.is_err());
    }));
    let ev = common::events_of(ctx.base_id());
    assert_eq!(stop_of(&ev, "slow").info["cancelled"], true);
}

#[test]
fn headers_and_traceparent_for_the_current_point() {
    common::sink();
    let key = HmacKey::new("SECRET_KEY").unwrap();
    let ctx = TraceContext::new(Some(key.clone()), None, None);
    ctx.in_scope(|| {
        let p = osprofiler::point("wsgi");
        let now = osprofiler::get().unwrap();
        let h = now.headers().unwrap();
        let keys = osprofiler::HmacKeys::from(vec![key.clone()]);
        let incoming =
            osprofiler::propagation::verify_trace_headers(&h.info, &h.hmac, &keys).unwrap();
        assert_eq!(incoming.base_id, ctx.base_id());
        assert_eq!(incoming.parent_id, p.id());
        assert!(incoming.key.same_as(&key));
        // The key itself is not in the headers.
        assert!(!h.info.contains("SECRET") && !h.hmac.contains("SECRET"));
        let decoded = String::from_utf8(base64_decode(&h.info)).unwrap();
        assert!(!decoded.contains("SECRET"), "{decoded}");

        let tp = now.traceparent();
        let text = tp.encode();
        assert_eq!(text.len(), 55);
        assert_eq!(&text[3..35], ctx.base_id().simple());
        assert_eq!(
            u64::from_str_radix(&text[36..52], 16).unwrap(),
            p.id().unwrap().low64()
        );
        assert_eq!(osprofiler::TraceParent::decode(&text).unwrap(), tp);
    });
    // No key, no headers.
    assert!(TraceContext::new(None, None, None).headers().is_none());
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE.decode(s).unwrap()
}

#[test]
fn traceparent_decoding_follows_the_w3c_rules() {
    use osprofiler::propagation::TraceParentError as E;
    let ok = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let tp = osprofiler::TraceParent::decode(ok).unwrap();
    assert_eq!(tp.trace_id, 0x4bf92f3577b34da6a3ce929d0e0e4736);
    assert_eq!(tp.parent_id, 0x00f067aa0ba902b7);
    assert!(tp.sampled);
    assert_eq!(tp.encode(), ok);
    for (bad, why) in [
        (
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
            E::Malformed,
        ),
        (
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            E::Malformed,
        ),
        (
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            E::Version,
        ),
        (
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            E::Version,
        ),
        (
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            E::ZeroId,
        ),
        (
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            E::ZeroId,
        ),
    ] {
        assert_eq!(osprofiler::TraceParent::decode(bad), Err(why), "{bad}");
    }
    // A future version may append fields.
    assert!(
        osprofiler::TraceParent::decode(
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-ab"
        )
        .is_ok()
    );
}

#[test]
fn debug_output_never_shows_keys() {
    let key = HmacKey::new("TOP-SECRET").unwrap();
    let ctx = TraceContext::new(Some(key.clone()), None, None);
    let keys = osprofiler::HmacKeys::parse("TOP-SECRET,OTHER");
    for s in [format!("{key:?}"), format!("{ctx:?}"), format!("{keys:?}")] {
        assert!(!s.contains("TOP-SECRET") && !s.contains("OTHER"), "{s}");
    }
}

#[test]
fn names_made_at_run_time() {
    common::sink();
    let ctx = TraceContext::new(None, None, None);
    ctx.in_scope(|| {
        osprofiler::start(
            format!("http-{}", "client"),
            osprofiler::Info::new().with("k", 1),
        );
        osprofiler::stop(osprofiler::Info::new().with("status_code", 200));
        osprofiler::start(String::from("parked"), None);
        osprofiler::notifier::flush().unwrap(); // hands the open start over
        osprofiler::stop(osprofiler::Info::new().with("late", true));
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(
        ctx.clone()
            .instrument(osprofiler::in_point(format!("task-{}", 7), async {})),
    );
    let ev = common::events_of(ctx.base_id());
    assert_eq!(start_of(&ev, "http-client").info["k"], 1);
    assert_eq!(stop_of(&ev, "http-client").info["status_code"], 200);
    assert_eq!(stop_of(&ev, "parked").info["late"], true);
    assert_eq!(
        start_of(&ev, "parked").trace_id,
        stop_of(&ev, "parked").trace_id
    );
    start_of(&ev, "task-7");
    stop_of(&ev, "task-7");
}

#[test]
fn guards_dropped_out_of_order_or_forgotten() {
    common::sink();
    let ctx = TraceContext::new(None, None, None);
    let (a_id, b_id) = ctx.in_scope(|| {
        let mut a = osprofiler::point("a");
        let b = osprofiler::point("b");
        let ids = (a.id().unwrap(), b.id().unwrap());
        a.set_error("E", "a failed");
        drop(a); // before b
        assert_eq!(b.id(), Some(ids.1));
        drop(b);
        std::mem::forget(osprofiler::point("leaked"));
        let _c = osprofiler::point("c");
        ids
    });
    let ev = common::events_of(ctx.base_id());
    assert_eq!(start_of(&ev, "b").parent_id, a_id);
    assert_eq!(stop_of(&ev, "a").info["etype"], "E");
    assert_eq!(stop_of(&ev, "b").trace_id, b_id);
    start_of(&ev, "leaked");
    assert!(
        ev.iter()
            .all(|e| !(e.name == "leaked" && e.kind == EventKind::Stop))
    );
    stop_of(&ev, "c");
}

#[test]
fn a_point_started_here_and_finished_elsewhere() {
    common::sink();
    let ctx = TraceContext::new(None, None, None);
    let mut rpc = ctx.in_scope(|| {
        let p = osprofiler::Point::start("rpc", osprofiler::Info::new().with("method", "build"));
        // Starting it did not make it current here.
        assert_eq!(osprofiler::get().unwrap().id(), ctx.base_id());
        p
    });
    let rpc_id = rpc.id().unwrap();
    std::thread::spawn(move || {
        let here = rpc.context().unwrap();
        here.in_scope(|| drop(osprofiler::point("db")));
        rpc.set_error("Timeout", "no answer");
        rpc.finish();
    })
    .join()
    .unwrap();
    assert!(!osprofiler::Point::start("x", None).is_recording());
    let ev = common::events_of(ctx.base_id());
    assert_eq!(start_of(&ev, "rpc").info["method"], "build");
    assert_eq!(start_of(&ev, "db").parent_id, rpc_id);
    assert_eq!(stop_of(&ev, "rpc").info["etype"], "Timeout");
}

#[test]
fn point_with_fields_records_its_fields_whatever_the_buffer_holds() {
    use osprofiler::Field;
    common::sink();
    let long = "é".repeat(30) + &"SELECT id FROM instances WHERE project_id = ? ".repeat(20);
    let ctx = osprofiler::init(None, None, None);
    // Enough points that some fields points land at a buffer's end (handed
    // over first, never split from their point) and some start a new one.
    for i in 0..700u32 {
        let _p = osprofiler::point_with_fields(
            "db",
            &[
                (
                    "statement",
                    Field::from(if i.is_multiple_of(3) {
                        long.as_str()
                    } else {
                        "SELECT 1"
                    }),
                ),
                ("rows", i.into()),
                ("neg", Field::I64(-i64::from(i))),
                ("ok", (i.is_multiple_of(2)).into()),
            ],
        );
        let _q = osprofiler::point("inner");
    }
    // Too much text for the buffer: through `Info`, same result.
    let huge = "x".repeat(10_000);
    {
        let _p = osprofiler::point_with_fields("big", &[("statement", Field::from(&huge))]);
    }
    osprofiler::clean();
    let ev = common::events_of(ctx.base_id());
    assert_eq!(ev.len(), 2 * (700 * 2 + 1));
    let db: Vec<_> = ev
        .iter()
        .filter(|e| e.name == "db" && e.kind == EventKind::Start)
        .collect();
    assert_eq!(db.len(), 700);
    let mut seen = vec![false; 700];
    for e in db {
        let i = e.info["rows"].as_u64().unwrap() as usize;
        seen[i] = true;
        let want = if i.is_multiple_of(3) {
            long.as_str()
        } else {
            "SELECT 1"
        };
        assert_eq!(e.info["statement"], want, "point {i}");
        assert_eq!(e.info["neg"], -(i as i64));
        assert_eq!(e.info["ok"], i.is_multiple_of(2));
    }
    assert!(seen.iter().all(|s| *s));
    assert!(
        ev.iter()
            .filter(|e| e.name == "db" && e.kind == EventKind::Stop)
            .all(|e| !e.info.contains_key("statement"))
    );
    assert_eq!(start_of(&ev, "big").info["statement"], huge.as_str());
}
