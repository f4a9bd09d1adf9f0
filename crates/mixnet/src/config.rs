//! Per-identity settings of the driver: the core's settings
//! ([`nymd_client::Config`], nym-client's defaults) plus the gateway
//! connection, the topology source, the persisted files and channel sizes.

use std::time::Duration;

pub use nymd_client::{Config as CoreConfig, ReplySurbConfig, DEFAULT_MAX_RETRANSMISSIONS};

use crate::topology::TopologySource;

/// Gateway connection settings.
#[derive(Debug, Clone, PartialEq)]
pub struct GatewayConfig {
    /// Deadline for each step of connect, handshake and authentication.
    pub response_timeout: Duration,
    /// First reconnection delay; doubled on each failure.
    pub reconnect_initial_backoff: Duration,
    /// Largest reconnection delay.
    pub reconnect_max_backoff: Duration,
    /// Interval of websocket pings (RTT measurement and liveness).
    pub keepalive: Duration,
    /// The connection is declared dead after this long without any frame.
    pub dead_after: Duration,
    /// Outgoing frames buffered towards the gateway socket.
    pub send_buffer: usize,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            response_timeout: Duration::from_secs(10),
            reconnect_initial_backoff: Duration::from_millis(500),
            reconnect_max_backoff: Duration::from_secs(30),
            keepalive: Duration::from_secs(20),
            dead_after: Duration::from_secs(60),
            send_buffer: 128,
        }
    }
}

/// Settings of one client identity. Dereferences to the core's settings
/// ([`CoreConfig`]: delays, rates, bounds), so `config.disable_delays` reads
/// and writes `config.core.disable_delays`.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientConfig {
    /// What the client core does (delays, Poisson rates, retransmission,
    /// reply SURBs, bounds).
    pub core: CoreConfig,
    /// Requests buffered between the handle and the client task.
    pub request_buffer: usize,
    /// Events buffered in a subscription channel.
    pub event_buffer: usize,
    /// Gateway connection settings.
    pub gateway: GatewayConfig,
    /// Topology source for this identity; `None` uses the daemon default.
    pub topology: Option<TopologySource>,
    /// A private folder for the persisted outbox: messages (`send`,
    /// `sendAnonymous`, `reply`) not yet acknowledged are journalled there
    /// and sent again when the client next starts. `None`: they live in
    /// memory only.
    pub outbox: Option<std::path::PathBuf>,
    /// A file (in a private folder) for the persisted reply state: sender
    /// tags, keys of the reply SURBs handed out, and the SURBs received
    /// per sender tag (see the crate's `replies` module), rewritten at most
    /// once a second and read when the client next starts. `None`: they
    /// live in memory only.
    pub replies: Option<std::path::PathBuf>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            core: CoreConfig::default(),
            request_buffer: 64,
            event_buffer: 256,
            gateway: GatewayConfig::default(),
            topology: None,
            outbox: None,
            replies: None,
        }
    }
}

impl std::ops::Deref for ClientConfig {
    type Target = CoreConfig;
    fn deref(&self) -> &CoreConfig {
        &self.core
    }
}

impl std::ops::DerefMut for ClientConfig {
    fn deref_mut(&mut self) -> &mut CoreConfig {
        &mut self.core
    }
}

impl ClientConfig {
    /// The core's [`CoreConfig::for_tests`] (no cover, no Poisson rate
    /// limit, no per-hop delays) with the driver's defaults.
    pub fn for_tests() -> Self {
        Self::with_core(CoreConfig::for_tests())
    }

    /// These core settings with the driver's defaults.
    pub fn with_core(core: CoreConfig) -> Self {
        Self {
            core,
            ..Self::default()
        }
    }
}
