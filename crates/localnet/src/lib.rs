//! nymd-localnet: an embedded Nym network on loopback.
//!
//! Mixnodes in three layers, gateways and a nym-api style directory that
//! speak the same protocol as stock nym-node, for development, demos and
//! every end-to-end test.
//!
//! # Layout
//! - [`directory`]: the HTTP directory (nym-api routes).
//! - [`forwarder`]: outbound node-to-node links with bounded queues.

pub mod directory;
pub mod forwarder;
