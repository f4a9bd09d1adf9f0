//! nymctl: the command-line client of the nymd control socket.
//!
//! The `nymctl` binary lands with the control-plane work; this library will
//! hold its command definitions and output formatting.
