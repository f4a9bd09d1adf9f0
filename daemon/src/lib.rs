//! nymd: the daemon that runs many Nym client identities.
//!
//! # Layout
//! - [`appserver`]: nym-client's websocket API on each identity's port.
//! - [`socks`]: the optional SOCKS5 proxy of each identity.
//! - [`backend`]: the manager seen through the control socket's types.
//! - [`control`]: the control socket server (`nymctl`, `nym-tui`).
//! - [`config`]: the daemon config file, environment and defaults.
//! - [`store`]: the identity store (keys, settings, gateway registration).
//! - [`fsutil`]: atomic, durable file writes with private modes.
//! - [`manager`]: identity lifecycle, one runner actor per identity.
//! - [`run`]: settings resolution, the embedded localnet, signals.
//! - [`cli`]: the command line of the `nymd` binary.
//! - [`logging`]: journald records, text (coloured on a terminal) or JSON.
//! - [`metrics`]: the opt-in OpenMetrics endpoint.
//! - [`notify`]: systemd's notification protocol (`READY=1`, `WATCHDOG=1`, ...).
//! - [`service`]: readiness, status line, watchdog and reload under systemd.
//! - [`health`]: liveness pings through the daemon's loops, for the watchdog.

pub mod appserver;
pub mod backend;
pub mod cli;
pub mod config;
pub mod control;
pub use nymd_fsutil as fsutil;
pub mod health;
pub mod logging;
pub mod manager;
pub mod metrics;
pub mod notify;
pub mod run;
pub mod service;
pub mod socks;
pub mod store;
