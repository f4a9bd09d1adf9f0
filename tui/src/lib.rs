//! nym-tui: the live dashboard of nymd, the nyx of Nym.
//!
//! It shows the daemon's identities, the selected identity's gateway, traffic
//! over time and the mixnet topology, fed only by the control socket: the
//! subscription (snapshot, then events) plus read requests for what events do
//! not carry (`Status` for gateway RTT, reconnects and bandwidth; `Topology`
//! for the node list). Start, stop and restart work in the operate tier.
//!
//! # Layout (tokio-console's)
//! - [`state`]: the model. Data changes only through
//!   [`state::State::apply`] with an [`state::Update`] from the connection;
//!   the operator's choices only through [`state::Ui::apply`].
//! - [`input`]: keys to [`input::Action`]s; reads `&State`, changes nothing.
//! - [`view`]: drawing from `&State`; changes nothing but the frame.
//! - [`conn`]: the connection task: connect, subscribe, poll, reconnect with
//!   backoff.
//! - [`term`]: raw mode and the alternate screen, restored by a drop guard
//!   and a panic hook.
//! - [`app`]: the main loop tying them together.

pub mod app;
pub mod conn;
pub mod input;
pub mod state;
pub mod term;
pub mod view;
