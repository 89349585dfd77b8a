//! Losses (a sink that fails every write) are reported through the `log` facade, once
//! per interval and not once per event or batch; nothing is printed.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use osprofiler::notifier::{self, Config, Sink, SinkError};
use osprofiler::{Event, TraceContext};

static RECORDS: Mutex<Vec<(log::Level, String)>> = Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, r: &log::Record<'_>) {
        if r.target() == "osprofiler" {
            RECORDS
                .lock()
                .unwrap()
                .push((r.level(), r.args().to_string()));
        }
    }
    fn flush(&self) {}
}

struct Down;

impl Sink for Down {
    fn write(&mut self, _: &[Event]) -> Result<(), SinkError> {
        Err(SinkError::msg("connection refused"))
    }
}

#[test]
fn losses_are_logged_once_per_interval() {
    log::set_logger(&Capture).unwrap();
    log::set_max_level(log::LevelFilter::Trace);
    notifier::configure(Config {
        interval: Duration::from_millis(5),
        loss_report_interval: Duration::from_millis(300),
        ..Config::default()
    });
    let _guard = notifier::set_sink(Down);
    let start = Instant::now();
    let mut batches = 0;
    // 1.5 s of steady traced load against a dead backend: hundreds of failed batches.
    while start.elapsed() < Duration::from_millis(1500) {
        let ctx = TraceContext::new(None, None, None);
        ctx.in_scope(|| {
            for _ in 0..100 {
                drop(osprofiler::point("db"));
            }
        });
        batches += 1;
        std::thread::sleep(Duration::from_millis(2));
    }
    notifier::flush().unwrap();
    std::thread::sleep(Duration::from_millis(400));
    let _ = notifier::flush();
    let records = RECORDS.lock().unwrap().clone();
    let stats = notifier::stats();
    assert!(stats.sink_errors > 20, "{stats:?}");
    assert!(batches > 100);
    // One line per 300 ms interval at most: about 6 in 1.9 s, never one per error.
    assert!(
        (3..=8).contains(&records.len()),
        "{} records for {} sink errors: {records:#?}",
        records.len(),
        stats.sink_errors
    );
    for (level, text) in &records {
        assert_eq!(*level, log::Level::Warn);
        assert!(text.contains("not written"), "{text}");
        assert!(text.contains("connection refused"), "{text}");
    }
    // The counts add up to what the pipeline counted.
    let logged: u64 = records
        .iter()
        .map(|(_, t)| {
            t.split_whitespace()
                .nth(2)
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap()
        })
        .sum();
    assert!(
        logged <= stats.failed + stats.dropped && logged > stats.failed / 2,
        "{logged} vs {stats:?}"
    );
}
