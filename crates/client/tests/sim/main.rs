//! Deterministic simulation of `nymd-client` cores on a simulated Nym
//! network: many seeds, virtual time, faults; a failing seed replays
//! exactly.
//!
//! - [`net`]: the simulated network (gateways, three mix layers, faults).

mod net;
