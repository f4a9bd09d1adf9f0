//! nymd: the daemon that runs many Nym client identities.
//!
//! # Layout
//! - [`appserver`]: nym-client's websocket API on each identity's port.
//! - [`control`]: the control socket server (`nymctl`, `nym-tui`).
//! - [`config`]: the daemon config file, environment and defaults.
//! - [`store`]: the identity store (keys, settings, gateway registration).
//! - [`fsutil`]: atomic, durable file writes with private modes.
//!
//! Still to come: the identity manager (one actor per identity), the
//! per-identity websocket servers speaking nym-client's app API, the control
//! socket server, configuration and signals.

pub mod appserver;
pub mod config;
pub mod control;
pub mod fsutil;
pub mod store;
