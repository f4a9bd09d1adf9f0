//! Rate limits for log lines that others can cause.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Lets through at most `per_interval` lines per `interval`; counts the
/// rest, and reports that count with the next line let through.
#[derive(Debug)]
pub(crate) struct LogLimiter {
    interval: Duration,
    per_interval: u32,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    window_start: Option<Instant>,
    used: u32,
    suppressed: u64,
}

impl LogLimiter {
    pub fn new(per_interval: u32, interval: Duration) -> Self {
        Self {
            interval,
            per_interval,
            state: Mutex::new(State {
                window_start: None,
                used: 0,
                suppressed: 0,
            }),
        }
    }

    /// `Some(lines suppressed since the last one let through)` when this
    /// line may be logged.
    pub fn check(&self) -> Option<u64> {
        self.check_at(Instant::now())
    }

    fn check_at(&self, now: Instant) -> Option<u64> {
        let mut s = self.state.lock().ok()?;
        let fresh = s
            .window_start
            .is_none_or(|start| now.saturating_duration_since(start) >= self.interval);
        if fresh {
            s.window_start = Some(now);
            s.used = 0;
        }
        if s.used < self.per_interval {
            s.used += 1;
            Some(std::mem::take(&mut s.suppressed))
        } else {
            s.suppressed += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_per_interval_and_reports_the_rest() {
        let l = LogLimiter::new(2, Duration::from_secs(60));
        let t0 = Instant::now();
        assert_eq!(l.check_at(t0), Some(0));
        assert_eq!(l.check_at(t0), Some(0));
        assert_eq!(l.check_at(t0), None);
        assert_eq!(l.check_at(t0 + Duration::from_secs(59)), None);
        assert_eq!(l.check_at(t0 + Duration::from_secs(60)), Some(2));
        assert_eq!(l.check_at(t0 + Duration::from_secs(61)), Some(0));
        assert_eq!(l.check_at(t0 + Duration::from_secs(62)), None);
    }
}
