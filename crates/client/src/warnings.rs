//! Warnings that other parties cause (malformed or unexpected messages,
//! refused requests, incomplete messages dropped) are rate-limited: at most
//! a few lines per interval, then one summary line for the interval counts
//! the rest. Every one is counted ([`crate::ClientStats::outside_warnings`]).

use std::time::{Duration, Instant};

/// The limiter of one identity.
#[derive(Debug)]
pub(crate) struct OutsideWarnings {
    interval: Duration,
    per_interval: u32,
    window: Instant,
    logged: u32,
    suppressed: u64,
    total: u64,
}

impl OutsideWarnings {
    pub(crate) fn new(interval: Duration, per_interval: u32, now: Instant) -> Self {
        Self {
            interval: interval.max(Duration::from_millis(1)),
            per_interval,
            window: now,
            logged: 0,
            suppressed: 0,
            total: 0,
        }
    }

    /// Count one warning; true when it may be logged.
    pub(crate) fn allow(&mut self, now: Instant) -> bool {
        self.roll(now);
        self.total += 1;
        if self.logged < self.per_interval {
            self.logged += 1;
            true
        } else {
            self.suppressed += 1;
            false
        }
    }

    /// End the interval if it is over: one summary line if warnings were
    /// held back in it.
    pub(crate) fn roll(&mut self, now: Instant) {
        if now.saturating_duration_since(self.window) < self.interval {
            return;
        }
        if self.suppressed > 0 {
            tracing::warn!(
                suppressed = self.suppressed,
                total = self.total,
                "{} more warnings about input from the network in the last {} s were not logged (nymctl status counts them)",
                self.suppressed,
                self.interval.as_secs_f64().round()
            );
        }
        self.window = now;
        self.logged = 0;
        self.suppressed = 0;
    }

    /// Warnings counted since the client started.
    pub(crate) fn total(&self) -> u64 {
        self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_gives_a_few_lines_then_one_summary_per_interval() {
        let t0 = Instant::now();
        let mut w = OutsideWarnings::new(Duration::from_secs(10), 3, t0);
        let allowed = (0..1000).filter(|_| w.allow(t0)).count();
        assert_eq!(allowed, 3);
        assert_eq!(w.suppressed, 997);
        w.roll(t0 + Duration::from_secs(10));
        assert_eq!(w.suppressed, 0);
        assert!(w.allow(t0 + Duration::from_secs(11)));
        assert_eq!(w.total(), 1001);
    }
}
