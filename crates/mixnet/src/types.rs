//! Registrations, gateway selection, and what a handle shares with its task.

use std::sync::Arc;

use nymd_client::Published;
use nymd_proto::keys::GatewaySharedKey;

use crate::gateway::AuthClock;

pub use nymd_client::{
    ClientEvent, ClientKeys, ClientStats, ErrorKind, GatewayState, Lane, MemoryUse,
    OutgoingMessage, ReceivedMessage,
};

/// What registering with a gateway produced; the daemon persists it.
#[derive(Clone)]
pub struct GatewayRegistration {
    /// The gateway's ed25519 identity.
    pub gateway_id: [u8; 32],
    /// Websocket URL to dial (`ws://host:port`).
    pub listener: String,
    /// Second URL to try when the first fails.
    pub fallback_listener: Option<String>,
    /// The key agreed in the handshake.
    pub shared_key: GatewaySharedKey,
    /// Last `authenticateV2` timestamp used (seconds); later requests use
    /// strictly larger ones. 0 when unknown.
    pub last_auth_timestamp: u64,
}

impl std::fmt::Debug for GatewayRegistration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayRegistration")
            .field("gateway_id", &bs58_str(&self.gateway_id))
            .field("listener", &self.listener)
            .field("fallback_listener", &self.fallback_listener)
            .field("last_auth_timestamp", &self.last_auth_timestamp)
            .finish_non_exhaustive()
    }
}

pub(crate) fn bs58_str(b: &[u8]) -> String {
    bs58::encode(b).into_string()
}

/// How `register` picks a gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatewaySelection {
    /// This gateway (ed25519 identity).
    Given([u8; 32]),
    /// Uniformly at random among the entry gateways.
    UniformRandom,
    /// The one answering a websocket connection fastest (of up to 16
    /// random candidates).
    LatencyBased,
}

/// State shared between a [`crate::ClientHandle`] and its task: what the
/// core publishes, and the gateway's authentication clock.
#[derive(Debug, Default)]
pub(crate) struct HandleShared {
    pub published: Arc<Published>,
    pub clock: AuthClock,
}
