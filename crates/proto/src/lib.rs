//! nymd-proto: the sans-IO core of Nym's wire protocol (release 2026.9).
//!
//! No tokio, no sockets, no clock: callers pass time in and move bytes. Every
//! parser returns an error on bad input and never panics.
//!
//! # Layout
//! - [`crypto`]: HKDF-BLAKE3, AES-128-CTR (64-bit counter), AES-256-GCM-SIV.
//! - [`pem`]: Nym's PEM key files.
//! - [`keys`]: identity, encryption, ack and gateway shared keys.
//! - [`address`]: `Recipient`, node routing addresses, sender tags.

pub mod address;
pub mod crypto;
pub mod keys;
pub mod pem;

pub use address::{NodeAddress, Recipient, SenderTag};
