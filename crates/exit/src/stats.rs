//! Counters of a running exit, readable from any thread.

use std::sync::atomic::{AtomicU64, Ordering};

/// What an exit counts ([`ExitStats`] is a snapshot).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub open: AtomicU64,
    pub total: AtomicU64,
    pub refused: AtomicU64,
    pub failed: AtomicU64,
    pub to_targets: AtomicU64,
    pub from_targets: AtomicU64,
    pub malformed: AtomicU64,
    pub control_answered: AtomicU64,
    pub unanswerable: AtomicU64,
}

impl Counters {
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    pub fn sub(c: &AtomicU64, n: u64) {
        c.fetch_sub(n, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> ExitStats {
        let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ExitStats {
            connections_open: l(&self.open),
            connections_total: l(&self.total),
            connections_refused: l(&self.refused),
            connections_failed: l(&self.failed),
            bytes_to_targets: l(&self.to_targets),
            bytes_from_targets: l(&self.from_targets),
            malformed_messages: l(&self.malformed),
            control_answered: l(&self.control_answered),
            connections_unanswerable: l(&self.unanswerable),
        }
    }
}

/// A snapshot of an exit's counters (since it started).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExitStats {
    /// Target connections open now.
    pub connections_open: u64,
    /// Target connections opened.
    pub connections_total: u64,
    /// Connects refused: the exit policy, or a name that did not resolve
    /// (answered with ConnectionError).
    pub connections_refused: u64,
    /// Connects that failed: TCP connect error or timeout, or the
    /// connection limit (answered with NetworkData seq 0, closed).
    pub connections_failed: u64,
    /// Bytes written to targets.
    pub bytes_to_targets: u64,
    /// Bytes read from targets.
    pub bytes_from_targets: u64,
    /// Received messages that could not be decoded, or that the exit does
    /// not answer (no way back, unknown or misplaced content).
    pub malformed_messages: u64,
    /// Control requests and queries answered.
    pub control_answered: u64,
    /// Open connections closed because their answers could not reach the
    /// client (no reply SURBs left or none usable, the client's gateway
    /// unknown, retransmissions exhausted).
    pub connections_unanswerable: u64,
}
