//! nymd-tests: end-to-end tests that drive real processes and sockets.
//!
//! The tests live in `tests/tests/*.rs`; this library holds shared helpers.
