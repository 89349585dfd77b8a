//! `[profiler] connection_string` naming several backends: `init_from_conf` sends every
//! event to each, and the exporter options of `[profiler_otlp]`/`[profiler_jaeger]` are
//! read.

use osprofiler::config::ProfilerConf;
use osprofiler::notifier;
use osprofiler_store::{Backends, Options, TraceStore};
use osprofiler_testkit::TempDir;

#[test]
fn a_list_in_profiler_conf_writes_to_each_backend() {
    let dir = TempDir::new();
    let a = dir.join("a.jsonl");
    let b = dir.join("b.db");
    let ini = format!(
        "[profiler]\nenabled = true\nhmac_keys = SECRET_KEY\nconnection_string = file://{}, sqlite://{}\n\
         [profiler_otlp]\nservice_name_prefix = cloud\n\
         [profiler_jaeger]\nservice_name_prefix = edge\nprocess_tags = region:r1, zone:z2\n",
        a.display(),
        b.display()
    );
    let conf = ProfilerConf::from_ini_str(&ini).unwrap();
    let opts = Options::from_conf(&conf);
    assert_eq!(opts.otlp_service_name_prefix.as_deref(), Some("cloud"));
    assert_eq!(opts.jaeger_service_name_prefix.as_deref(), Some("edge"));
    assert_eq!(
        opts.jaeger_process_tags,
        [
            ("region".to_owned(), "r1".to_owned()),
            ("zone".to_owned(), "z2".to_owned())
        ]
    );

    let guard = osprofiler_store::init_from_conf(&conf, "nova", "api", "h1").unwrap();
    let ctx = osprofiler::TraceContext::new(osprofiler::HmacKey::new("SECRET_KEY"), None, None);
    ctx.in_scope(|| {
        let _p = osprofiler::point("wsgi");
        drop(osprofiler::point("db"));
    });
    notifier::flush().unwrap();
    drop(guard);

    let base = ctx.base_id().to_string();
    let backends: Backends = conf.connection_string.as_deref().unwrap().parse().unwrap();
    assert_eq!(backends.len(), 2);
    for cs in &backends {
        let mut store: Box<dyn TraceStore> =
            osprofiler_store::open(cs, &Options::default()).unwrap();
        let report = store
            .report(&base)
            .unwrap()
            .expect("the trace in each backend");
        assert_eq!(report.len(), 2, "{cs}");
    }
    // Each backend's own counters.
    assert!(
        osprofiler_store::backend_stats().is_empty(),
        "closed with the guard"
    );
}
