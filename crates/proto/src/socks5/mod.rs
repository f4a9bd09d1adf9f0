//! SOCKS5 over the mixnet: the byte layer between a local SOCKS app, nymd
//! (acting as Nym's socks5 client) and a network requester (NR), wire-compatible
//! with Nym release 2026.9.
//!
//! Everything here is sans-IO: bytes in, bytes or values out, no clock. Time
//! (keepalives, teardown timers) and sockets belong to the driver.
//!
//! # Layout
//! - [`wire`]: the messages carried inside one mixnet message, both
//!   directions and both sides: the service-provider wrapper (interface
//!   version, control or provider data), [`wire::Socks5Request`] (Connect,
//!   Send, Query) and [`wire::Socks5Response`] (NetworkData, ConnectionError,
//!   Query), with their legacy (pre-versioning) forms.
//! - [`query`]: the bodies of Query requests and answers (Nym's bincode
//!   encoding: big-endian varints, trailing bytes rejected).
//! - [`ordered`]: per-connection sequence numbers: the sender's counter and
//!   the receiver's reordering buffer, bounded.
//! - [`discovery`]: network requesters from nym-api's described nodes.
//! - [`local`]: what a local app says on a SOCKS port (SOCKS4, SOCKS4a,
//!   SOCKS5 with no authentication, CONNECT only), our replies, and the
//!   remote-address text a Connect carries.

pub mod discovery;
pub mod local;
pub mod ordered;
pub mod query;
pub mod wire;

pub use wire::{
    ConnectRequest, ConnectionId, ControlRequest, ControlResponse, DecodeError, EncodeError,
    ProviderRequest, ProviderResponse, SocketData, Socks5Request, Socks5Response, Version,
    Versions,
};

#[cfg(test)]
mod tests;
