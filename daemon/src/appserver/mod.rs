//! The per-identity app server: nym-client's websocket API on the identity's
//! port.
//!
//! - [`server`]: the listener and the websocket handshake;
//! - [`access`]: who may connect (local users, browser origins) and how
//!   many at once;
//! - [`session`]: one connected app (requests in, responses and messages out);
//! - [`hub`]: fans received messages out to the connected apps;
//! - [`inbox`]: the record format of the messages that wait for an app.
//!
//! It owns only connections and framing. Each parsed request becomes an
//! [`AppCommand`] for the identity actor, which answers through a oneshot;
//! messages from the mixnet reach apps through the identity's [`AppHub`].
//!
//! Differences from stock nym-client, on purpose:
//! - several apps may be connected at once and each receives every message
//!   (`allow_multiple_apps = false` restores one app at a time: a second
//!   connection is closed before the websocket handshake, as nym-client does);
//! - a TCP client that never completes the websocket handshake, or sends
//!   garbage, is dropped after a deadline and never disturbs the identity;
//! - an app that stops reading is disconnected instead of stalling the
//!   identity or growing memory.

use std::net::SocketAddr;
use std::time::Duration;

use nymd_proto::appapi::{ClientRequest, ServerResponse};
use nymd_proto::SenderTag;
use tokio::sync::oneshot;

pub mod access;
pub mod hub;
pub mod inbox;
pub mod server;
pub mod session;

pub use hub::AppHub;
pub use inbox::INBOX_HEADER;
pub use server::{serve, AppServerConfig};

/// Time a client has to complete the websocket handshake.
pub const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(10);
/// Messages queued per connected app before it is considered stuck.
pub const APP_QUEUE: usize = 1024;
/// Messages kept while no app is connected.
pub const DEFAULT_PENDING_LIMIT: usize = 10_000;

/// A message that arrived from the mixnet for the apps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Payload.
    pub data: Vec<u8>,
    /// Sender tag of an anonymous (repliable) message.
    pub sender_tag: Option<SenderTag>,
}

/// What the app server asks of the identity actor. It travels boxed
/// (`mpsc::Sender<Box<AppCommand>>`): a request is some 500 bytes, and a
/// tokio channel allocates its first block of 32 slots when it is made, so
/// an idle identity's queue costs 32 pointers instead of 15 KiB.
#[derive(Debug)]
pub struct AppCommand {
    /// The app session that asked.
    pub session: u64,
    /// The parsed request.
    pub request: ClientRequest,
    /// Where the direct response goes (`None` = no response, as for a plain
    /// `send` without a connection id).
    pub respond: oneshot::Sender<Option<ServerResponse>>,
}

/// An app connected or went away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppChange {
    /// A websocket session started.
    Connected {
        /// Session number.
        session: u64,
        /// The app's address.
        peer: SocketAddr,
    },
    /// It ended.
    Disconnected {
        /// Session number.
        session: u64,
    },
}

/// A connected app, for status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectedApp {
    /// Session number.
    pub session: u64,
    /// The app's address.
    pub peer: SocketAddr,
    /// Time since it connected.
    pub connected_for: Duration,
}
