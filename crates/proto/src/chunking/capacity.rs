//! Capacity arithmetic: how many payload bytes a fragment carries, and how
//! many fragments and sets a message of a given length needs.

use super::{LINKED_HEADER_LEN, MAX_FRAGMENTS_PER_SET, UNLINKED_HEADER_LEN};

/// Payload bytes of a fragment with an unlinked header.
pub const fn unlinked_payload_len(capacity: usize) -> usize {
    capacity.saturating_sub(UNLINKED_HEADER_LEN)
}

/// Payload bytes of a fragment with a linked header.
pub const fn linked_payload_len(capacity: usize) -> usize {
    capacity.saturating_sub(LINKED_HEADER_LEN)
}

/// Most message bytes a single, unlinked set can carry.
pub const fn max_unlinked_set_len(capacity: usize) -> usize {
    MAX_FRAGMENTS_PER_SET * unlinked_payload_len(capacity)
}

/// Bytes carried by a set linked on one side only: exactly this for the first
/// set of a chain, at most this for the last one.
pub const fn one_way_linked_set_len(capacity: usize) -> usize {
    max_unlinked_set_len(capacity).saturating_sub(LINKED_HEADER_LEN - UNLINKED_HEADER_LEN)
}

/// Bytes carried by a set linked on both sides (every middle set of a chain).
pub const fn two_way_linked_set_len(capacity: usize) -> usize {
    max_unlinked_set_len(capacity).saturating_sub(2 * (LINKED_HEADER_LEN - UNLINKED_HEADER_LEN))
}

/// Number of sets a message of `message_len` bytes is split into.
///
/// `capacity` must be at least
/// [`MIN_FRAGMENT_CAPACITY`](super::MIN_FRAGMENT_CAPACITY); smaller values
/// give meaningless (but non-panicking) results.
pub fn total_number_of_sets(message_len: usize, capacity: usize) -> usize {
    let one_way = one_way_linked_set_len(capacity);
    if message_len <= max_unlinked_set_len(capacity) {
        1
    } else if message_len <= one_way.saturating_mul(2) {
        2
    } else {
        let middle = message_len - 2 * one_way;
        middle.div_ceil(two_way_linked_set_len(capacity).max(1)) + 2
    }
}

/// Number of fragments a message of `message_len` bytes needs, and the free
/// space left in its last fragment (the padding a full last fragment needs).
///
/// `capacity` must be at least
/// [`MIN_FRAGMENT_CAPACITY`](super::MIN_FRAGMENT_CAPACITY).
pub fn number_of_required_fragments(message_len: usize, capacity: usize) -> (usize, usize) {
    let unlinked = unlinked_payload_len(capacity).max(1);
    let linked = linked_payload_len(capacity).max(1);

    let sets = total_number_of_sets(message_len, capacity);
    if sets == 1 {
        if message_len < unlinked {
            return (1, unlinked - message_len);
        }
        let whole = message_len / unlinked;
        let rest = message_len % unlinked;
        return if rest == 0 {
            (whole, 0)
        } else {
            (whole + 1, unlinked - rest)
        };
    }

    // Every set but the last is full (255 fragments). Across the chain there are
    // 2·sets − 2 linked fragments, one of them in the last set.
    let before_last = (sets - 1) * MAX_FRAGMENTS_PER_SET;
    let linked_before_last = 2 * sets - 3;
    let unlinked_before_last = before_last - linked_before_last;
    let last_set_len = message_len
        .saturating_sub(linked_before_last * linked)
        .saturating_sub(unlinked_before_last * unlinked);

    if last_set_len < linked {
        (before_last + 1, linked - last_set_len)
    } else if last_set_len == linked {
        (before_last + 1, 0)
    } else {
        let tail = last_set_len - linked;
        let whole = tail / unlinked;
        let rest = tail % unlinked;
        if rest == 0 {
            (before_last + whole + 1, 0)
        } else {
            (before_last + whole + 2, unlinked - rest)
        }
    }
}
