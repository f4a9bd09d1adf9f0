//! nymd-client: the client state machine of one Nym identity, sans IO, in
//! the shape of quinn-proto. It owns the lanes and the Poisson schedule,
//! fragmenting and packet assembly, acks and retransmission, reassembly and
//! the loop-cover markers, the reply-SURB stores, reply keys, sender tags
//! and SURB requests; it does no I/O, reads no clock, spawns nothing and
//! links no runtime. Time is the `now` every call passes, randomness comes
//! from the seed it is made with, the topology is given.
//!
//! A driver (nymd-mixnet) feeds it:
//! - app requests: [`Client::handle_app`] (when [`Client::accepts_requests`]);
//! - the gateway: [`Client::handle_connected`],
//!   [`Client::handle_disconnected`], [`Client::handle_gateway_push`] (when
//!   [`Client::accepts_gateway_input`]), [`Client::handle_gateway_response`];
//! - [`Client::set_topology`], [`Client::close_lane`];
//! - time: [`Client::handle_timeout`] at [`Client::poll_timeout`];
//!
//! and takes from it [`Client::poll_transmit`] (sealed and sent on the
//! gateway link), [`Client::poll_event`] (to the apps), and the persisted
//! state ([`Journal`] calls, [`Client::replies_snapshot`]).
//!
//! Modules by concern: `lanes` (queues, Poisson schedule), `sending`
//! (fragment, enqueue, build, retransmit), `receiving` (markers,
//! reassembly), `replies` (SURB stores, SURB requests) with `surbs` (sender
//! tags, reply keys) and [`snapshot`] (the persisted reply state), `timers`,
//! [`journal`], `memory` (byte budgets), `warnings` (rate-limited logs of
//! what others cause).

mod client;
mod config;
pub mod journal;
mod lanes;
mod memory;
#[cfg(feature = "planted-bugs")]
pub mod planted;
mod receiving;
mod replies;
mod sending;
pub mod snapshot;
mod surbs;
mod timers;
mod types;
mod warnings;

pub use client::{Client, ClientParams, Occupancy, Transmit, HOUSEKEEPING, MAX_TRANSMITS};
pub use config::{
    Config, ReplySurbConfig, DEFAULT_ACK_BACKOFF_AFTER, DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_MAX_RETRANSMISSIONS,
};
pub use journal::{Journal, Journalled, JournalledReply, REPLY_BIT};
pub use memory::{Account, MemoryBudget, DEFAULT_MEMORY_BUDGET};
pub use types::{
    ClientEvent, ClientKeys, ClientStats, ErrorKind, GatewayState, Lane, MemoryUse,
    OutgoingMessage, Published, ReceivedMessage, Stats,
};
