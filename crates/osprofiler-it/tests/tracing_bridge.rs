//! The `tracing` bridge with a real `tracing-subscriber` registry: spans inside
//! a trace become points with the right nesting, on threads and tokio tasks,
//! and spans outside a trace record nothing.

mod tracing_support;

use std::time::Duration;

use osprofiler::{FutureExt, TraceContext, trace};
use tracing::Instrument;
use tracing_support::{assert_well_formed, children, install_layer, one, points_of};

#[trace(name = "driver")]
fn driver_call() {
    // A span inside a traced function: a child of the function's point.
    let _s = tracing::info_span!("driver_io").entered();
}

#[test]
fn sync_spans_nest_and_carry_their_fields() {
    install_layer();
    let ctx = TraceContext::new(None, None, None);
    ctx.in_scope(|| {
        let _wsgi = osprofiler::point("wsgi");
        let api = tracing::info_span!(
            "api",
            project = "demo",
            count = 3,
            ratio = 0.5,
            admin = false,
            ids = ?[1, 2],
            later = tracing::field::Empty,
        );
        let _in = api.enter();
        {
            let inner = tracing::debug_span!("inner", osprofiler.name = "db", user = %"alice");
            let _in = inner.enter();
            let _p = osprofiler::point("rpc"); // a child of inner's point
        }
        driver_call();
        api.record("later", "recorded");
    });
    let points = points_of(ctx.base_id());
    assert_well_formed(&points);
    let wsgi = one(&points, "wsgi");
    let api = one(&points, "api");
    assert_eq!(api.parent, wsgi.id);
    let info = &api.start.info;
    assert_eq!(info["project"], "demo");
    assert_eq!(info["count"], 3);
    assert_eq!(info["ratio"], 0.5);
    assert_eq!(info["admin"], false);
    assert_eq!(info["ids"], "[1, 2]");
    assert!(!info.contains_key("later"), "not recorded at creation");
    assert_eq!(api.stop_info("later"), "recorded");

    // `osprofiler.name` renames the point; `%` values are their Display text.
    let inner = one(&points, "db");
    assert_eq!(inner.parent, api.id);
    assert_eq!(inner.start.info["user"], "alice");
    assert!(!inner.start.info.contains_key("osprofiler.name"));
    assert_eq!(one(&points, "rpc").parent, inner.id);

    let driver = one(&points, "driver");
    assert_eq!(driver.parent, api.id);
    assert_eq!(one(&points, "driver_io").parent, driver.id);
    assert_eq!(points.len(), 6, "{points:#?}");
}

#[test]
fn spans_outside_a_trace_record_nothing() {
    install_layer();
    let sink = tracing_support::sink();
    {
        let s = tracing::info_span!("untraced_outer", x = 1);
        let _in = s.enter();
        let _t = tracing::info_span!("untraced_inner").entered();
        tracing::error!(error = "ignored", "no trace here");
        assert!(!osprofiler::is_active());
        assert!(osprofiler::get().is_none());
    }
    osprofiler::notifier::flush().unwrap();
    assert!(
        sink.events()
            .iter()
            .all(|e| !e.name.starts_with("untraced")),
        "a span outside a trace made a point"
    );
    // A span made outside a trace stays out of it even when entered inside one.
    let before = tracing::info_span!("untraced_before");
    let ctx = TraceContext::new(None, None, None);
    ctx.in_scope(|| {
        let _in = before.enter();
        let _p = osprofiler::point("inside");
    });
    let points = points_of(ctx.base_id());
    assert_eq!(points.len(), 1, "{points:#?}");
    assert_eq!(points[0].parent, ctx.base_id());
}

#[test]
fn errors_recorded_by_spans() {
    install_layer();

    #[tracing::instrument(err)]
    fn refuse(vm: &str) -> Result<(), std::io::Error> {
        Err(std::io::Error::other(format!("no host for {vm}")))
    }

    let ctx = TraceContext::new(None, None, None);
    ctx.in_scope(|| {
        let _ = refuse("vm-1");
        let s = tracing::info_span!(
            "schedule",
            error = tracing::field::Empty,
            node = tracing::field::Empty,
            host = tracing::field::Empty
        );
        s.record("node", "compute-1");
        s.record("host", "h1");
        s.record("error", "no valid host");
        let ok = tracing::info_span!("recovered", error = tracing::field::Empty);
        ok.record("error", "transient");
        ok.record("error", false);
    });
    let points = points_of(ctx.base_id());
    assert_well_formed(&points);
    let refuse = one(&points, "refuse");
    assert_eq!(refuse.start.info["vm"], "vm-1");
    assert_eq!(refuse.stop_info("etype"), "error");
    assert_eq!(refuse.stop_info("message"), "no host for vm-1");
    let schedule = one(&points, "schedule");
    assert_eq!(schedule.stop_info("etype"), "error");
    assert_eq!(schedule.stop_info("message"), "no valid host");
    assert_eq!(schedule.stop_info("node"), "compute-1");
    assert_eq!(schedule.stop_info("span.host"), "h1");
    assert!(one(&points, "recovered").stop_info("etype").is_null());
}

#[test]
fn a_span_carries_its_point_to_other_threads() {
    install_layer();
    let ctx = TraceContext::new(None, None, None);
    let (span, child) = ctx.in_scope(|| {
        let span = tracing::info_span!("handoff");
        // An explicit parent brings the trace to a thread that has none.
        let child = std::thread::scope(|s| {
            s.spawn(|| {
                assert!(!osprofiler::is_active());
                tracing::info_span!(parent: &span, "explicit_child")
            })
            .join()
            .unwrap()
        });
        (span, child)
    });
    // Entered on other threads (no trace of their own): its point is current
    // there, and both threads can hold it entered at once.
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                span.in_scope(|| {
                    let _p = osprofiler::point("worker");
                    std::thread::sleep(Duration::from_millis(5));
                });
                assert!(!osprofiler::is_active(), "left on exit");
            });
        }
    });
    child.in_scope(|| drop(osprofiler::point("under_explicit")));
    drop((span, child));
    let points = points_of(ctx.base_id());
    assert_well_formed(&points);
    let handoff = one(&points, "handoff");
    assert_eq!(handoff.parent, ctx.base_id());
    let workers = children(&points, handoff.id);
    assert_eq!(
        workers.iter().filter(|p| p.name == "worker").count(),
        2,
        "{points:#?}"
    );
    let explicit = one(&points, "explicit_child");
    assert_eq!(explicit.parent, handoff.id);
    assert_eq!(one(&points, "under_explicit").parent, explicit.id);
}

#[test]
fn carrier_spans_continue_the_trace_without_a_point() {
    install_layer();
    let ctx = TraceContext::new(None, None, None);
    let carrier = ctx.in_scope(|| {
        let _api = osprofiler::point("api");
        tracing::info_span!("carry", osprofiler.point = false)
    });
    std::thread::spawn(move || {
        carrier.in_scope(|| drop(osprofiler::point("carried")));
    })
    .join()
    .unwrap();
    let points = points_of(ctx.base_id());
    assert_eq!(points.len(), 2, "{points:#?}");
    assert_eq!(one(&points, "carried").parent, one(&points, "api").id);
}

#[test]
fn async_spans_across_await_and_spawned_tasks() {
    install_layer();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    let ctx = TraceContext::new(None, None, None);
    rt.block_on(
        async {
            let span = tracing::info_span!("request", method = "GET");
            async {
                tokio::time::sleep(Duration::from_millis(2)).await;
                // After the await (maybe on another worker): still under request.
                let _p = osprofiler::point("after_await");
                drop(_p);
                // A task spawned with the current trace: its spans hang under
                // the spawner's current point (the request span's point).
                tokio::spawn(
                    async {
                        let s = tracing::info_span!("task_span");
                        async {
                            tokio::time::sleep(Duration::from_millis(1)).await;
                            let _q = osprofiler::point("in_task");
                        }
                        .instrument(s)
                        .await;
                    }
                    .in_current_trace(),
                )
                .await
                .unwrap();
                // And a task spawned with just the span: the span carries it.
                let span = tracing::Span::current();
                tokio::spawn(
                    async {
                        tokio::task::yield_now().await;
                        let _q = osprofiler::point("span_only_task");
                    }
                    .instrument(span),
                )
                .await
                .unwrap();
            }
            .instrument(span)
            .await;
            assert!(osprofiler::is_active());
        }
        .in_trace(ctx.clone()),
    );
    assert!(!osprofiler::is_active());
    drop(rt);
    let points = points_of(ctx.base_id());
    assert_well_formed(&points);
    let request = one(&points, "request");
    assert_eq!(request.parent, ctx.base_id());
    assert_eq!(request.start.info["method"], "GET");
    assert_eq!(one(&points, "after_await").parent, request.id);
    let task_span = one(&points, "task_span");
    assert_eq!(task_span.parent, request.id);
    assert_eq!(one(&points, "in_task").parent, task_span.id);
    assert_eq!(one(&points, "span_only_task").parent, request.id);
    assert_eq!(points.len(), 5, "{points:#?}");
    // The request span lasted across its awaits.
    assert!(request.micros() >= 2_000, "{request:#?}");
}

#[test]
fn point_names_and_fields_are_configurable() {
    use osprofiler::integrations::tracing::{PointName, TracingLayer};
    use tracing_subscriber::layer::SubscriberExt as _;

    tracing_support::sink();
    fn by_name(meta: &tracing::Metadata<'_>) -> Option<&'static str> {
        match meta.name() {
            "hidden" => None, // a carrier
            n if n.starts_with("select") => Some("db"),
            _ => Some("other"),
        }
    }
    let run = |layer: TracingLayer| {
        let ctx = TraceContext::new(None, None, None);
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            ctx.in_scope(|| {
                let _a = tracing::info_span!("select_quota", n = 1).entered();
                let _b = tracing::info_span!("hidden").entered();
                let _c = tracing::info_span!("misc").entered();
            })
        });
        points_of(ctx.base_id())
    };

    let points = run(TracingLayer::new().point_name(PointName::With(by_name)));
    let names: Vec<&str> = points.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["db", "other"], "{points:#?}");
    assert_eq!(points[1].parent, points[0].id, "the carrier adds no level");
    assert_eq!(points[0].start.info["n"], 1);

    let points = run(TracingLayer::new()
        .point_name(PointName::Crate)
        .record_fields(false));
    assert_eq!(points.len(), 3);
    assert!(
        points.iter().all(|p| p.name == "tracing_bridge"),
        "{points:#?}"
    );
    assert!(!points[0].start.info.contains_key("n"));

    let points = run(TracingLayer::new().point_name(PointName::Fixed("tracing")));
    assert!(points.iter().all(|p| p.name == "tracing"), "{points:#?}");
    let points = run(TracingLayer::new().point_name(PointName::Target));
    assert!(
        points.iter().all(|p| p.name == "tracing_bridge"),
        "{points:#?}"
    );
}
