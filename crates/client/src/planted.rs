//! Bugs planted on purpose, to show that the deterministic simulation
//! catches them (built only with the `planted-bugs` feature, which only
//! this crate's own tests enable; off unless a test thread switches one
//! on).

use std::cell::Cell;

thread_local! {
    static SKIP_RETRANSMISSION: Cell<bool> = const { Cell::new(false) };
}

/// On this thread, make every core forget a fragment at its first
/// retransmission instead of sending it again (no failure reported).
pub fn skip_first_retransmission(on: bool) {
    SKIP_RETRANSMISSION.with(|c| c.set(on));
}

pub(crate) fn skips_retransmission(attempt: u32) -> bool {
    attempt == 1 && SKIP_RETRANSMISSION.with(Cell::get)
}
