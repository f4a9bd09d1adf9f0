//! Per-node counters: monotonic event counts and gauges with their
//! high-water marks, read by tests to check behaviour and memory bounds
//! without timing.

use std::sync::atomic::{AtomicU64, Ordering};

/// Live counters of one node (shared by its tasks).
#[derive(Debug, Default)]
pub struct NodeCounters {
    /// Packets (node links) and forward requests (client websockets) taken in.
    pub received: AtomicU64,
    /// Packets handed to a next hop's link (after any delay).
    pub forwarded: AtomicU64,
    /// Messages and acks handed to a connected client.
    pub delivered: AtomicU64,
    /// Messages and acks stored for an offline client.
    pub stored: AtomicU64,
    /// Packets or messages dropped by a bound: full queues, unreachable
    /// next hops, evicted stored messages.
    pub dropped: AtomicU64,
    /// Packets whose replay tag was seen before.
    pub replayed: AtomicU64,
    /// Input that failed to parse, decrypt or verify (frames, packets,
    /// requests).
    pub malformed: AtomicU64,
    /// Packets whose next hop is not a node of this network.
    pub unroutable: AtomicU64,
    /// Packets held for their delay now.
    pub delayed_now: AtomicU64,
    /// Most packets held for their delay at once.
    pub delayed_max: AtomicU64,
    /// Most packets queued for one next hop at once.
    pub queued_max: AtomicU64,
    /// Messages stored for offline clients now.
    pub stored_now: AtomicU64,
    /// Most messages stored at once.
    pub stored_max: AtomicU64,
    /// Most messages queued for one connected client at once.
    pub push_queued_max: AtomicU64,
    /// Open inbound connections (node links and client websockets).
    pub connections_now: AtomicU64,
    /// Packets from other nodes dropped by the test fault switch
    /// ([`Localnet::set_drop_incoming`](crate::Localnet::set_drop_incoming)).
    pub fault_dropped: AtomicU64,
}

/// Raise a high-water mark.
pub(crate) fn raise(max: &AtomicU64, value: u64) {
    max.fetch_max(value, Ordering::Relaxed);
}

/// Add one.
pub(crate) fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// A copy of a node's counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CountersSnapshot {
    /// See [`NodeCounters::received`].
    pub received: u64,
    /// See [`NodeCounters::forwarded`].
    pub forwarded: u64,
    /// See [`NodeCounters::delivered`].
    pub delivered: u64,
    /// See [`NodeCounters::stored`].
    pub stored: u64,
    /// See [`NodeCounters::dropped`].
    pub dropped: u64,
    /// See [`NodeCounters::replayed`].
    pub replayed: u64,
    /// See [`NodeCounters::malformed`].
    pub malformed: u64,
    /// See [`NodeCounters::unroutable`].
    pub unroutable: u64,
    /// See [`NodeCounters::delayed_now`].
    pub delayed_now: u64,
    /// See [`NodeCounters::delayed_max`].
    pub delayed_max: u64,
    /// See [`NodeCounters::queued_max`].
    pub queued_max: u64,
    /// See [`NodeCounters::stored_now`].
    pub stored_now: u64,
    /// See [`NodeCounters::stored_max`].
    pub stored_max: u64,
    /// See [`NodeCounters::push_queued_max`].
    pub push_queued_max: u64,
    /// See [`NodeCounters::connections_now`].
    pub connections_now: u64,
    /// See [`NodeCounters::fault_dropped`].
    pub fault_dropped: u64,
}

impl NodeCounters {
    /// Read every counter.
    pub fn snapshot(&self) -> CountersSnapshot {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CountersSnapshot {
            received: r(&self.received),
            forwarded: r(&self.forwarded),
            delivered: r(&self.delivered),
            stored: r(&self.stored),
            dropped: r(&self.dropped),
            replayed: r(&self.replayed),
            malformed: r(&self.malformed),
            unroutable: r(&self.unroutable),
            delayed_now: r(&self.delayed_now),
            delayed_max: r(&self.delayed_max),
            queued_max: r(&self.queued_max),
            stored_now: r(&self.stored_now),
            stored_max: r(&self.stored_max),
            push_queued_max: r(&self.push_queued_max),
            connections_now: r(&self.connections_now),
            fault_dropped: r(&self.fault_dropped),
        }
    }
}
