//! The exit's settings, with Nym's network-requester timers as defaults.

use std::time::Duration;

use nymd_mixnet::{ClientConfig, CoreConfig};

use crate::policy::ExitPolicy;

/// Settings of a network requester.
#[derive(Debug, Clone, PartialEq)]
pub struct ExitConfig {
    /// Which destinations may be reached ([`ExitPolicy::loopback_only`]).
    pub policy: ExitPolicy,
    /// Deadline for resolving a Connect's `host:port`, and again for the
    /// TCP connect over all the resolved addresses (10 s; Nym's NR has
    /// none and waits for the OS).
    pub connect_timeout: Duration,
    /// An empty NetworkData goes to the client after this long without
    /// any (60 s, as Nym).
    pub keepalive_interval: Duration,
    /// A connection that moved no byte in either direction for this long
    /// is closed (5 min, Nym's `MIX_TTL`).
    pub idle_timeout: Duration,
    /// After one side of a connection ended (the target's EOF, or the
    /// client's close), the other direction keeps going this long (3 s, as
    /// Nym).
    pub half_close_grace: Duration,
    /// After a connection ended, how long its last messages may wait in its
    /// lane before what is left is dropped (4 min, as Nym).
    pub lane_drain_timeout: Duration,
    /// Connections open or being opened at once; a Connect beyond it gets
    /// the connect-failure answer (NetworkData seq 0, closed).
    pub max_connections: usize,
    /// Largest read from a target, so the largest NetworkData payload
    /// (16 KiB, Nym's floor).
    pub read_size: usize,
    /// Reading from a target pauses while the connection's lane holds more
    /// than this many packets (30, as Nym's senders), so a fast target
    /// cannot fill memory faster than the mixnet carries it.
    pub lane_high_water: usize,
    /// Bytes one connection may hold on their way to its target: received
    /// out of order, or in order but not yet written because the target
    /// reads slowly (4 MiB). A client that sends more is cut off.
    pub max_buffered_bytes: usize,
    /// The answer to a Description query.
    pub description: String,
}

impl Default for ExitConfig {
    fn default() -> Self {
        Self {
            policy: ExitPolicy::loopback_only(),
            connect_timeout: Duration::from_secs(10),
            keepalive_interval: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(5 * 60),
            half_close_grace: Duration::from_secs(3),
            lane_drain_timeout: Duration::from_secs(4 * 60),
            max_connections: 128,
            read_size: 16 * 1024,
            lane_high_water: 30,
            max_buffered_bytes: 4 << 20,
            description: "nymd local network requester".into(),
        }
    }
}

/// Client settings for an exit's own mixnet client, after Nym's network
/// requester: nym-client's defaults with the main Poisson stream off
/// (`disable_poisson_rate = true`), so answers leave as soon as they are
/// ready. Loop cover stays on, as in Nym's NR.
pub fn network_requester_client_config() -> ClientConfig {
    ClientConfig::with_core(CoreConfig {
        disable_main_poisson: true,
        ..CoreConfig::default()
    })
}
