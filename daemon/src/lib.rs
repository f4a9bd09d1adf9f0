//! nymd: the daemon that runs many Nym client identities.
//!
//! It will own the identity store, the identity manager (one actor per
//! identity), the per-identity websocket servers that speak nym-client's app
//! API, and the control socket server. The binary will be a thin wrapper.
