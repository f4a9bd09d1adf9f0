//! Fragmentation of padded messages, and their reassembly.
//!
//! A padded message (see [`crate::message`]) is cut into fragments of exactly
//! the per-packet capacity (1611 bytes for a regular packet); up to 255
//! fragments share one set, and longer messages use several sets chained by
//! links in the first/last fragment headers.
//!
//! Fragment header, unlinked (7 bytes):
//! `(set_id | 0x8000_0000) u32 BE || total u8 || current u8 (1-based) || 0x00`.
//! Linked (10 bytes): the first six bytes, then
//! `(linked_set_id | 0x8000_0000) u32 BE`. The link points to the previous set
//! when `current == 1`, or to the next set when `current == total == 255`.
//!
//! [`Reassembler`] collects fragments by set id and returns the padded message
//! bytes once every set of a chain is complete. It has a memory bound, a
//! timeout for stale buffers (driven by the caller's clock) and remembers a
//! bounded number of recently completed set ids to ignore duplicates.
//!
//! # Layout
//! - this file: the header lengths and [`ChunkingError`], which every part
//!   shares;
//! - `capacity.rs`: how many bytes, fragments and sets a message needs;
//! - `fragment.rs`: [`FragmentHeader`] and [`Fragment`], their byte layout;
//! - `split.rs`: cutting a padded message into (linked) sets;
//! - `reassembly.rs`: the [`Reassembler`];
//! - `tests.rs`: the tests of all of the above.
//!
//! The message itself (framing and padding: [`NymMessage`],
//! [`PaddedMessage`]) lives in [`crate::message`]; it is re-exported here so
//! that its old paths (`nymd_proto::chunking::NymMessage`, …) keep working.

mod capacity;
mod fragment;
mod reassembly;
mod split;

pub use capacity::{
    linked_payload_len, max_unlinked_set_len, number_of_required_fragments, one_way_linked_set_len,
    total_number_of_sets, two_way_linked_set_len, unlinked_payload_len,
};
pub use fragment::{Fragment, FragmentHeader};
pub use reassembly::{
    DropReason, DroppedSet, InsertOutcome, Inserted, ReassembledMessage, Reassembler,
    ReassemblyConfig, ReassemblyError, FRAGMENT_ACCOUNTING_OVERHEAD,
};
pub use split::{random_set_id, split_into_sets};

// Old paths of the message types, which moved to `crate::message`.
pub use crate::message::{
    MessageError, NymMessage, PaddedMessage, MESSAGE_TAG_PLAIN, MESSAGE_TAG_REPLIABLE,
    MESSAGE_TAG_REPLY, MIN_PADDING_OVERHEAD,
};

/// Length of a fragment header that carries no link.
pub const UNLINKED_HEADER_LEN: usize = 7;
/// Length of a fragment header that carries a link to another set.
pub const LINKED_HEADER_LEN: usize = 10;
/// Most fragments one set may hold.
pub const MAX_FRAGMENTS_PER_SET: usize = u8::MAX as usize;
/// Smallest per-fragment capacity the splitting arithmetic accepts (a linked
/// header plus at least one payload byte).
pub const MIN_FRAGMENT_CAPACITY: usize = LINKED_HEADER_LEN + 1;

/// Problems building, encoding or decoding fragments.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ChunkingError {
    /// Fewer bytes than the header needs.
    #[error("fragment header needs {expected} bytes, got {received}")]
    TooShortHeader {
        /// Bytes present.
        received: usize,
        /// Bytes needed.
        expected: usize,
    },
    /// The top bit of the set id field is clear.
    #[error("fragment set id field lacks its flag bit")]
    MissingSetIdFlag,
    /// The link byte is non-zero but the linked id field lacks its flag bit.
    #[error("fragment linked set id field lacks its flag bit")]
    MissingLinkFlag,
    /// A set id (own or linked) outside `1..=i32::MAX`.
    #[error("set id {0} is out of range (must be 1..=2^31-1)")]
    InvalidSetId(i64),
    /// Total or current position is zero, or current exceeds total.
    #[error("fragment position {current} of {total} is invalid")]
    InvalidPosition {
        /// Total fragments in the set.
        total: u8,
        /// 1-based position.
        current: u8,
    },
    /// A link appears on a fragment that may not carry one.
    #[error("fragment {current} of {total} may not carry a {kind} link")]
    MisplacedLink {
        /// Total fragments in the set.
        total: u8,
        /// 1-based position.
        current: u8,
        /// "previous" or "next".
        kind: &'static str,
    },
    /// A set linked to itself.
    #[error("set {0} is linked to itself")]
    SelfLink(i32),
    /// A header with both a previous and a next link (not encodable).
    #[error("a fragment header can carry only one link")]
    TwoLinks,
    /// A payload of the wrong length for its position.
    #[error("fragment payload has {received} bytes, expected exactly {expected}")]
    PayloadLength {
        /// Bytes given.
        received: usize,
        /// Bytes required.
        expected: usize,
    },
    /// A last-fragment payload longer than allowed.
    #[error("fragment payload has {received} bytes, expected at most {max}")]
    PayloadTooLong {
        /// Bytes given.
        received: usize,
        /// Bytes allowed.
        max: usize,
    },
    /// The per-fragment capacity is too small to carry any data.
    #[error("fragment capacity {0} is too small (minimum {MIN_FRAGMENT_CAPACITY})")]
    CapacityTooSmall(usize),
    /// Splitting was asked to cut a message that is not fully padded.
    #[error("message of {len} bytes does not fill whole fragments of capacity {capacity}")]
    NotPadded {
        /// Message length.
        len: usize,
        /// Fragment capacity.
        capacity: usize,
    },
    /// Empty input to the splitter.
    #[error("cannot split an empty message")]
    EmptyMessage,
}

#[cfg(test)]
pub(crate) mod tests;
