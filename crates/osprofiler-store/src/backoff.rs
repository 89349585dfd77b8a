//! The reconnection backoff of the network sinks: after a failure, writes fail at
//! once with the last error until a delay has passed, so that a dead backend costs
//! the exporter thread nothing per batch; the delay doubles with each failure in a
//! row, from 50 ms up to 5 s.

use std::time::{Duration, Instant};

const FIRST: Duration = Duration::from_millis(50);
const MAX: Duration = Duration::from_secs(5);

#[derive(Debug, Default)]
pub(crate) struct Backoff {
    /// Failures in a row.
    failures: u32,
    retry_at: Option<Instant>,
    last_error: String,
}

impl Backoff {
    /// A failure: the next attempt waits for the doubled delay.
    pub(crate) fn failed(&mut self, error: impl Into<String>) {
        self.failures = self.failures.saturating_add(1);
        let delay = FIRST
            .saturating_mul(1 << (self.failures - 1).min(10))
            .min(MAX);
        self.retry_at = Some(Instant::now() + delay);
        self.last_error = error.into();
    }

    /// A success ends the backoff.
    pub(crate) fn succeeded(&mut self) {
        self.failures = 0;
        self.retry_at = None;
    }

    /// The last failure's message.
    #[cfg_attr(not(any(feature = "postgres", feature = "mysql")), allow(dead_code))]
    pub(crate) fn last_error(&self) -> &str {
        &self.last_error
    }

    /// While the delay runs: the last error and how long is left, as a sink reports it
    /// for a batch it did not try to write.
    pub(crate) fn waiting(&self) -> Option<String> {
        let left = self.retry_at?.checked_duration_since(Instant::now())?;
        if left.is_zero() {
            return None;
        }
        Some(format!(
            "{} (next attempt in {} ms)",
            self.last_error,
            left.as_millis()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_and_ends_on_success() {
        let mut b = Backoff::default();
        assert!(b.waiting().is_none());
        b.failed("refused");
        let w = b.waiting().expect("waiting");
        assert!(w.starts_with("refused (next attempt in "), "{w}");
        for _ in 0..20 {
            b.failed("refused again");
        }
        let left = b.retry_at.unwrap() - Instant::now();
        assert!(
            left <= MAX && left > MAX - Duration::from_millis(100),
            "{left:?}"
        );
        assert_eq!(b.last_error(), "refused again");
        b.succeeded();
        assert!(b.waiting().is_none());
        assert_eq!(b.failures, 0);
    }
}
