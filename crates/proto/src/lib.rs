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
//! - [`params`]: packet sizes, Sphinx versions, key-rotation parity.
//! - [`sphinx`]: building and processing Sphinx packets (sphinx-packet 0.6).
//! - [`fastsphinx`]: the sender side of [`sphinx`] with a fast, byte-identical
//!   key derivation (blinding accumulator, per-node tables shared process-wide).
//! - [`mixpacket`]: `MixPacket`, ForwardSphinx plaintexts, node-to-node framing.
//! - [`ack`]: SURB-ACKs and ack recognition.
//! - [`cover`]: loop cover packets.
//! - [`payload`]: per-packet payload encryption (plain, repliable, reply).
//! - [`message`]: `NymMessage`, its framing and padding.
//! - [`chunking`]: fragmentation and reassembly.
//! - [`replies`]: reply SURBs, repliable and reply message bodies.
//! - [`gateway`]: the client-gateway protocol, both sides.
//! - [`appapi`]: nym-client's websocket app API codec.
//! - [`topology`]: nym-api JSON, topology files, route selection.

pub mod ack;
pub mod acked;
pub mod address;
pub mod appapi;
pub mod chunking;
pub mod cover;
pub mod crypto;
pub mod fastsphinx;
pub mod gateway;
pub mod keys;
pub mod message;
pub mod mixpacket;
pub mod params;
pub mod payload;
pub mod pem;
pub mod replies;
pub mod socks5;
pub mod sphinx;
pub mod topology;

pub use address::{NodeAddress, Recipient, SenderTag};
pub use params::{KeyRotation, PacketSize, SphinxVersion};
