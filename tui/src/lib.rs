//! nym-tui: the live dashboard of nymd.
//!
//! It will keep state, input handling and drawing apart, fed only by the
//! control socket subscription.
