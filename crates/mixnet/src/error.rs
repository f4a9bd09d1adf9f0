//! Errors of the client runtime.

use nymd_proto::gateway::{HandshakeError, MessageError, VersionError};

/// Why a client operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No topology could be obtained, or it cannot route packets.
    #[error("topology: {0}")]
    Topology(String),
    /// The topology lists no gateway to register with.
    #[error("no usable gateway in the topology")]
    NoGateway,
    /// The gateway (bs58 identity) is not in the topology.
    #[error("gateway {0} is not in the network topology")]
    GatewayNotInTopology(String),
    /// The gateway announces no plain websocket listener.
    #[error("gateway {0} announces no websocket listener")]
    NoListener(String),
    /// Websocket transport failure.
    #[error("websocket: {0}")]
    WebSocket(String),
    /// The gateway did not answer in time.
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    /// The gateway closed the connection.
    #[error("the gateway closed the connection")]
    ConnectionClosed,
    /// The gateway answered with an error.
    #[error("gateway error: {0}")]
    Gateway(String),
    /// The gateway sent something unexpected.
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// The registration handshake failed.
    #[error("registration handshake: {0}")]
    Handshake(#[from] HandshakeError),
    /// Protocol version rules refused the gateway.
    #[error(transparent)]
    Version(#[from] VersionError),
    /// A control message could not be read.
    #[error("gateway message: {0}")]
    Message(#[from] MessageError),
    /// HTTP failure talking to nym-api.
    #[error("http: {0}")]
    Http(String),
    /// A local file could not be read.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// The persisted outbox could not be opened.
    #[error(transparent)]
    Outbox(#[from] crate::outbox::OutboxError),
    /// The client has shut down.
    #[error("the client has shut down")]
    Shutdown,
}

impl From<tokio_tungstenite::tungstenite::Error> for ClientError {
    fn from(e: tokio_tungstenite::tungstenite::Error) -> Self {
        ClientError::WebSocket(e.to_string())
    }
}

impl From<reqwest::Error> for ClientError {
    fn from(e: reqwest::Error) -> Self {
        ClientError::Http(e.to_string())
    }
}
