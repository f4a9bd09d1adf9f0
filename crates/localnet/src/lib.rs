//! nymd-localnet: an embedded Nym network on loopback.
//!
//! Mixnodes in three layers, gateways (each both entry and exit) and a
//! nym-api style directory that speak the same protocol as stock nym-node,
//! for development, demos and every end-to-end test. Everything binds
//! ephemeral loopback ports; [`Localnet::start`] returns a handle with the
//! directory URL, a `--custom-mixnet` topology file, the node list, per-node
//! counters, stop/start of single nodes, and a clean [`Localnet::shutdown`].
//! With [`LocalnetConfig::state_dir`] the network keeps its keys, ports and
//! gateway registrations across restarts.
//!
//! # Layout
//! - [`config`]: network shape, delay policy and node limits.
//! - [`network`]: the [`Localnet`] handle: keys, topology, node lifecycles.
//! - `node`: the mix listener, sphinx processing, replay filter, delays.
//! - `gateway`: client state, the offline store, final-hop delivery and the
//!   client websocket endpoint.
//! - [`forwarder`]: outbound node-to-node links with bounded queues.
//! - [`directory`]: the HTTP directory (nym-api routes).
//! - [`described`]: the `nym-nodes/described` listing (network requesters).
//! - [`counters`]: per-node counters read by tests.
//! - [`replay`]: bounded replay-tag memory.
//! - [`persist`]: the saved state of a persistent network
//!   ([`LocalnetConfig::state_dir`]).

pub mod config;
pub mod counters;
pub mod described;
pub mod directory;
pub mod forwarder;
mod gateway;
pub mod network;
mod node;
pub mod persist;
pub mod replay;

pub use config::{DelayPolicy, Limits, LocalnetConfig};
pub use counters::CountersSnapshot;
pub use network::{Localnet, LocalnetError, NodeInfo, NodeKind};
