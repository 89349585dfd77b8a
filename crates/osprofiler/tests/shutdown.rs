//! Dropping the notifier guard returns within `SHUTDOWN_TIMEOUT` even when the sink
//! hangs (a backend that accepted the connection and never answers), and the
//! traced code never waits for the sink at all.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use osprofiler::notifier::{self, SHUTDOWN_TIMEOUT, Sink, SinkError};
use osprofiler::{Event, TraceContext};

/// Blocks every write until the gate is released.
struct Hung(Arc<Mutex<()>>);

impl Sink for Hung {
    fn write(&mut self, _: &[Event]) -> Result<(), SinkError> {
        let _wait = self.0.lock();
        Ok(())
    }
}

#[test]
fn a_hung_sink_delays_neither_the_traced_code_nor_the_shutdown() {
    assert!(SHUTDOWN_TIMEOUT <= Duration::from_secs(2));
    let gate = Arc::new(Mutex::new(()));
    let held = gate.lock().unwrap();
    let guard = notifier::set_sink(Hung(gate.clone()));

    // Traced code: 20,000 points while the sink hangs on the first batch.
    let t = Instant::now();
    for _ in 0..20 {
        let ctx = TraceContext::new(None, None, None);
        ctx.in_scope(|| {
            for _ in 0..1000 {
                drop(osprofiler::point("db"));
            }
        });
    }
    let traced = t.elapsed();
    assert!(
        traced < Duration::from_secs(1),
        "traced code waited: {traced:?}"
    );
    // Give the exporter time to take the first batch and hang in the sink.
    std::thread::sleep(Duration::from_millis(100));

    let t = Instant::now();
    drop(guard);
    let took = t.elapsed();
    assert!(
        took < SHUTDOWN_TIMEOUT + Duration::from_millis(500),
        "dropping the guard took {took:?}"
    );
    assert!(
        took >= SHUTDOWN_TIMEOUT - Duration::from_millis(100),
        "{took:?}: did it wait at all?"
    );
    // Released, the exporter closes the sink it was left with and goes on.
    drop(held);
    let t = Instant::now();
    notifier::flush().unwrap();
    assert!(t.elapsed() < Duration::from_secs(1));
}
