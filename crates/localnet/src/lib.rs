//! nymd-localnet: an embedded Nym network on loopback.
//!
//! It will own mixnodes, gateways and a nym-api style directory that speak the
//! same protocol as stock nym-node, for development and end-to-end tests.
