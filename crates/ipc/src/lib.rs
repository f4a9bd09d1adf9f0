//! nymd-ipc: control-plane types and their codec.
//!
//! It will own the messages exchanged between `nymd` and its clients
//! (`nymctl`, `nym-tui`) over the Unix control socket: length-prefixed
//! MessagePack frames. These are the only serde types that cross that socket.
