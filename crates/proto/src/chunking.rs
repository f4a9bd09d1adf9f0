//! Message framing, padding, fragmentation and reassembly.
//!
//! A [`NymMessage`] is serialised as `type tag || body`, then padded with a
//! single `0x01` and zeros so that it fills a whole number of *full*
//! fragments. The padded bytes are cut into fragments of exactly the
//! per-packet capacity (1611 bytes for a regular packet); up to 255 fragments
//! share one set, and longer messages use several sets chained by links in the
//! first/last fragment headers.
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

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use rand::Rng;

use crate::params::{FragmentId, PacketSize};
use crate::replies::{RepliableMessage, ReplyError, ReplyMessage};

/// Length of a fragment header that carries no link.
pub const UNLINKED_HEADER_LEN: usize = 7;
/// Length of a fragment header that carries a link to another set.
pub const LINKED_HEADER_LEN: usize = 10;
/// Most fragments one set may hold.
pub const MAX_FRAGMENTS_PER_SET: usize = u8::MAX as usize;
/// Smallest per-fragment capacity the splitting arithmetic accepts (a linked
/// header plus at least one payload byte).
pub const MIN_FRAGMENT_CAPACITY: usize = LINKED_HEADER_LEN + 1;
/// Bytes of padding every padded message carries at least (the `0x01`).
pub const MIN_PADDING_OVERHEAD: usize = 1;

const FLAG_BIT: u32 = 0x8000_0000;

/// Message type tag of a plain message.
pub const MESSAGE_TAG_PLAIN: u8 = 0;
/// Message type tag of a repliable message.
pub const MESSAGE_TAG_REPLIABLE: u8 = 1;
/// Message type tag of a reply.
pub const MESSAGE_TAG_REPLY: u8 = 2;

// ---------------------------------------------------------------------------
// Capacity arithmetic
// ---------------------------------------------------------------------------

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
/// `capacity` must be at least [`MIN_FRAGMENT_CAPACITY`]; smaller values give
/// meaningless (but non-panicking) results.
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
/// `capacity` must be at least [`MIN_FRAGMENT_CAPACITY`].
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

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

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

/// Problems framing or un-framing a [`NymMessage`].
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum MessageError {
    /// Nothing to parse.
    #[error("received an empty message")]
    Empty,
    /// Unknown type tag.
    #[error("{0} is not a valid message type tag")]
    UnknownType(u8),
    /// No `0x01` padding marker found.
    #[error("message padding is malformed (no 0x01 marker)")]
    InvalidPadding,
    /// The repliable or reply body is malformed, or cannot be encoded.
    #[error(transparent)]
    Reply(#[from] ReplyError),
    /// Padding or splitting failed.
    #[error(transparent)]
    Chunking(#[from] ChunkingError),
}

// ---------------------------------------------------------------------------
// NymMessage
// ---------------------------------------------------------------------------

/// An application message as carried end to end: plain, repliable (carries
/// reply SURBs and a sender tag), or a reply sent through a SURB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NymMessage {
    /// Tag 0: raw bytes.
    Plain(Vec<u8>),
    /// Tag 1: a message from an anonymous sender.
    Repliable(RepliableMessage),
    /// Tag 2: a reply sent back through a reply SURB.
    Reply(ReplyMessage),
}

impl NymMessage {
    /// The one-byte type tag.
    pub fn tag(&self) -> u8 {
        match self {
            NymMessage::Plain(_) => MESSAGE_TAG_PLAIN,
            NymMessage::Repliable(_) => MESSAGE_TAG_REPLIABLE,
            NymMessage::Reply(_) => MESSAGE_TAG_REPLY,
        }
    }

    /// Length of [`NymMessage::to_bytes`].
    pub fn serialized_len(&self) -> usize {
        1 + match self {
            NymMessage::Plain(b) => b.len(),
            NymMessage::Repliable(m) => m.serialized_len(),
            NymMessage::Reply(m) => m.serialized_len(),
        }
    }

    /// `type tag || body`. Fails only for repliable messages whose SURB list
    /// cannot be encoded (see [`RepliableMessage::to_bytes`]).
    pub fn to_bytes(&self) -> Result<Vec<u8>, MessageError> {
        let mut out = Vec::with_capacity(self.serialized_len());
        out.push(self.tag());
        match self {
            NymMessage::Plain(b) => out.extend_from_slice(b),
            NymMessage::Repliable(m) => m.write_to(&mut out)?,
            NymMessage::Reply(m) => m.write_to(&mut out),
        }
        Ok(out)
    }

    /// Parse `type tag || body` (padding already removed).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, MessageError> {
        let (&tag, body) = bytes.split_first().ok_or(MessageError::Empty)?;
        match tag {
            MESSAGE_TAG_PLAIN => Ok(NymMessage::Plain(body.to_vec())),
            MESSAGE_TAG_REPLIABLE => Ok(NymMessage::Repliable(RepliableMessage::from_bytes(body)?)),
            MESSAGE_TAG_REPLY => Ok(NymMessage::Reply(ReplyMessage::from_bytes(body)?)),
            other => Err(MessageError::UnknownType(other)),
        }
    }

    /// Fragment bytes available per packet of `size` for this message kind:
    /// the plaintext minus the SURB-ACK and the 32-byte ephemeral key (plain and
    /// repliable) or key digest (reply). Both are 32 bytes, so this is
    /// [`PacketSize::fragment_capacity`] for every kind.
    pub fn fragment_capacity(&self, size: PacketSize) -> usize {
        size.fragment_capacity()
    }

    /// Number of packets of `size` this message occupies once padded.
    pub fn required_packets(&self, size: PacketSize) -> usize {
        let len = self.serialized_len() + MIN_PADDING_OVERHEAD;
        number_of_required_fragments(len, self.fragment_capacity(size)).0
    }

    /// Serialise and pad: `bytes || 0x01 || 0x00…` so the result fills whole
    /// fragments of `capacity` (see [`number_of_required_fragments`]).
    pub fn pad(&self, capacity: usize) -> Result<PaddedMessage, MessageError> {
        if capacity < MIN_FRAGMENT_CAPACITY {
            return Err(ChunkingError::CapacityTooSmall(capacity).into());
        }
        let mut bytes = self.to_bytes()?;
        let (_, space_left) = number_of_required_fragments(bytes.len() + 1, capacity);
        bytes.reserve(1 + space_left);
        bytes.push(1);
        bytes.resize(bytes.len() + space_left, 0);
        Ok(PaddedMessage(bytes))
    }

    /// The application data carried, if any (empty for SURB-only messages and
    /// SURB requests).
    pub fn into_data(self) -> Vec<u8> {
        match self {
            NymMessage::Plain(b) => b,
            NymMessage::Repliable(m) => m.content.into_data(),
            NymMessage::Reply(ReplyMessage::Data(b)) => b,
            NymMessage::Reply(ReplyMessage::SurbRequest { .. }) => Vec::new(),
        }
    }
}

/// A serialised, padded message: either about to be split, or reassembled and
/// about to be un-padded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaddedMessage(Vec<u8>);

impl PaddedMessage {
    /// Wrap reassembled bytes.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The bytes, owned.
    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }

    /// Cut into fragments of exactly `capacity` serialised bytes each, set ids
    /// drawn from `rng`, sets in order and fragments in order within each set.
    pub fn split_into_fragments<R: Rng + ?Sized>(
        &self,
        rng: &mut R,
        capacity: usize,
    ) -> Result<Vec<Fragment>, ChunkingError> {
        Ok(split_into_sets(rng, &self.0, capacity)?
            .into_iter()
            .flatten()
            .collect())
    }

    /// Strip everything from the last `0x01` on and parse the message.
    pub fn unpad(&self) -> Result<NymMessage, MessageError> {
        let end = self
            .0
            .iter()
            .rposition(|&b| b == 1)
            .ok_or(MessageError::InvalidPadding)?;
        NymMessage::from_bytes(&self.0[..end])
    }
}

impl From<Vec<u8>> for PaddedMessage {
    fn from(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }
}

// ---------------------------------------------------------------------------
// Fragments
// ---------------------------------------------------------------------------

fn check_set_id(id: i32) -> Result<(), ChunkingError> {
    if id <= 0 {
        Err(ChunkingError::InvalidSetId(i64::from(id)))
    } else {
        Ok(())
    }
}

/// The metadata at the front of every fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FragmentHeader {
    set_id: i32,
    total: u8,
    current: u8,
    previous_set: Option<i32>,
    next_set: Option<i32>,
}

impl FragmentHeader {
    /// A checked header. Set ids must be in `1..=i32::MAX`; `1 <= current <=
    /// total`; a previous link only on fragment 1; a next link only on the last
    /// fragment; no self-links; at most one link.
    pub fn new(
        set_id: i32,
        total: u8,
        current: u8,
        previous_set: Option<i32>,
        next_set: Option<i32>,
    ) -> Result<Self, ChunkingError> {
        check_set_id(set_id)?;
        if total == 0 || current == 0 || current > total {
            return Err(ChunkingError::InvalidPosition { total, current });
        }
        if previous_set.is_some() && next_set.is_some() {
            return Err(ChunkingError::TwoLinks);
        }
        if let Some(p) = previous_set {
            check_set_id(p)?;
            if current != 1 {
                return Err(ChunkingError::MisplacedLink {
                    total,
                    current,
                    kind: "previous",
                });
            }
            if p == set_id {
                return Err(ChunkingError::SelfLink(set_id));
            }
        }
        if let Some(n) = next_set {
            check_set_id(n)?;
            if current != total {
                return Err(ChunkingError::MisplacedLink {
                    total,
                    current,
                    kind: "next",
                });
            }
            if n == set_id {
                return Err(ChunkingError::SelfLink(set_id));
            }
        }
        Ok(Self {
            set_id,
            total,
            current,
            previous_set,
            next_set,
        })
    }

    /// Set id.
    pub fn set_id(&self) -> i32 {
        self.set_id
    }

    /// Fragments in the set.
    pub fn total(&self) -> u8 {
        self.total
    }

    /// 1-based position in the set.
    pub fn current(&self) -> u8 {
        self.current
    }

    /// Id of the previous set of the chain (only on fragment 1).
    pub fn previous_set(&self) -> Option<i32> {
        self.previous_set
    }

    /// Id of the next set of the chain (only on fragment 255 of 255).
    pub fn next_set(&self) -> Option<i32> {
        self.next_set
    }

    /// Whether the header carries a link (10 bytes) or not (7 bytes).
    pub fn is_linked(&self) -> bool {
        self.previous_set.is_some() || self.next_set.is_some()
    }

    /// Encoded length: 7 or 10.
    pub fn encoded_len(&self) -> usize {
        if self.is_linked() {
            LINKED_HEADER_LEN
        } else {
            UNLINKED_HEADER_LEN
        }
    }

    /// Append the encoding to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&(self.set_id as u32 | FLAG_BIT).to_be_bytes());
        out.push(self.total);
        out.push(self.current);
        match self.previous_set.or(self.next_set) {
            Some(link) => out.extend_from_slice(&(link as u32 | FLAG_BIT).to_be_bytes()),
            None => out.push(0),
        }
    }

    /// The 7- or 10-byte encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(LINKED_HEADER_LEN);
        self.write_to(&mut out);
        out
    }

    /// Parse a header from the start of `b`; returns it and its length.
    ///
    /// A non-zero seventh byte announces a link. The link is a previous-set
    /// link on fragment 1 (even when that fragment is also 255 of 255), a
    /// next-set link on fragment 255 of 255, and invalid anywhere else.
    pub fn parse(b: &[u8]) -> Result<(Self, usize), ChunkingError> {
        if b.len() < UNLINKED_HEADER_LEN {
            return Err(ChunkingError::TooShortHeader {
                received: b.len(),
                expected: UNLINKED_HEADER_LEN,
            });
        }
        let raw_id = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        if raw_id & FLAG_BIT == 0 {
            return Err(ChunkingError::MissingSetIdFlag);
        }
        let set_id = (raw_id & !FLAG_BIT) as i32;
        let total = b[4];
        let current = b[5];
        if total == 0 || current == 0 || current > total {
            return Err(ChunkingError::InvalidPosition { total, current });
        }
        if b[6] == 0 {
            let h = Self::new(set_id, total, current, None, None)?;
            return Ok((h, UNLINKED_HEADER_LEN));
        }
        if b.len() < LINKED_HEADER_LEN {
            return Err(ChunkingError::TooShortHeader {
                received: b.len(),
                expected: LINKED_HEADER_LEN,
            });
        }
        let raw_link = u32::from_be_bytes([b[6], b[7], b[8], b[9]]);
        if raw_link & FLAG_BIT == 0 {
            return Err(ChunkingError::MissingLinkFlag);
        }
        let link = (raw_link & !FLAG_BIT) as i32;
        let h = if current == 1 {
            Self::new(set_id, total, current, Some(link), None)?
        } else if current == total && usize::from(current) == MAX_FRAGMENTS_PER_SET {
            Self::new(set_id, total, current, None, Some(link))?
        } else {
            return Err(ChunkingError::MisplacedLink {
                total,
                current,
                kind: "set",
            });
        };
        Ok((h, LINKED_HEADER_LEN))
    }
}

/// One fragment: a header and a slice of the padded message. Serialised, a
/// fragment of a padded message is exactly the per-packet capacity long.
#[derive(Clone, PartialEq, Eq)]
pub struct Fragment {
    header: FragmentHeader,
    payload: Vec<u8>,
}

impl std::fmt::Debug for Fragment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fragment")
            .field("header", &self.header)
            .field("payload_len", &self.payload.len())
            .finish()
    }
}

impl Fragment {
    /// Build a fragment, checking the payload length against `capacity` the
    /// way the sender's splitter lays it out: a linked fragment that is not
    /// alone in its set, and every fragment that is not last, must be full; a
    /// last (or only) fragment may be shorter.
    pub fn new(
        header: FragmentHeader,
        payload: Vec<u8>,
        capacity: usize,
    ) -> Result<Self, ChunkingError> {
        let linked_max = linked_payload_len(capacity);
        let unlinked_max = unlinked_payload_len(capacity);
        let len = payload.len();
        let exact = |expected: usize| {
            if len == expected {
                Ok(())
            } else {
                Err(ChunkingError::PayloadLength {
                    received: len,
                    expected,
                })
            }
        };
        let at_most = |max: usize| {
            if len <= max {
                Ok(())
            } else {
                Err(ChunkingError::PayloadTooLong { received: len, max })
            }
        };
        if header.previous_set.is_some() {
            if header.total > 1 {
                exact(linked_max)?;
            } else {
                at_most(linked_max)?;
            }
        } else if header.next_set.is_some() {
            exact(linked_max)?;
        } else if header.total != header.current {
            exact(unlinked_max)?;
        } else {
            at_most(unlinked_max)?;
        }
        Ok(Self { header, payload })
    }

    /// Parse a received fragment: a header, then everything else is payload.
    pub fn from_bytes(b: &[u8]) -> Result<Self, ChunkingError> {
        let (header, n) = FragmentHeader::parse(b)?;
        Ok(Self {
            header,
            payload: b[n..].to_vec(),
        })
    }

    /// `header || payload`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.header.write_to(&mut out);
        out.extend_from_slice(&self.payload);
        out
    }

    /// Serialised length.
    pub fn encoded_len(&self) -> usize {
        self.header.encoded_len() + self.payload.len()
    }

    /// The header.
    pub fn header(&self) -> &FragmentHeader {
        &self.header
    }

    /// The payload (a slice of the padded message).
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// The payload, owned.
    pub fn into_payload(self) -> Vec<u8> {
        self.payload
    }

    /// Set id.
    pub fn set_id(&self) -> i32 {
        self.header.set_id
    }

    /// Fragments in the set.
    pub fn total(&self) -> u8 {
        self.header.total
    }

    /// 1-based position in the set.
    pub fn current(&self) -> u8 {
        self.header.current
    }

    /// The identifier acks carry for this fragment.
    pub fn id(&self) -> FragmentId {
        FragmentId {
            set_id: self.header.set_id,
            position: self.header.current,
        }
    }
}

// ---------------------------------------------------------------------------
// Splitting
// ---------------------------------------------------------------------------

/// A random set id in `1..=i32::MAX`: the absolute value of a random `i32`,
/// redrawing 0 and `i32::MIN`.
pub fn random_set_id<R: Rng + ?Sized>(rng: &mut R) -> i32 {
    loop {
        let v: i32 = rng.gen();
        if v != 0 && v != i32::MIN {
            return v.abs();
        }
    }
}

fn unlinked_set(message: &[u8], id: i32, capacity: usize) -> Result<Vec<Fragment>, ChunkingError> {
    let step = unlinked_payload_len(capacity);
    let count = message.len().div_ceil(step);
    let total = u8::try_from(count).map_err(|_| ChunkingError::PayloadTooLong {
        received: message.len(),
        max: max_unlinked_set_len(capacity),
    })?;
    message
        .chunks(step)
        .zip(1..=total)
        .map(|(chunk, i)| {
            Fragment::new(
                FragmentHeader::new(id, total, i, None, None)?,
                chunk.to_vec(),
                capacity,
            )
        })
        .collect()
}

fn linked_set(
    message: &[u8],
    id: i32,
    previous: Option<i32>,
    next: Option<i32>,
    capacity: usize,
) -> Result<Vec<Fragment>, ChunkingError> {
    let linked = linked_payload_len(capacity);
    let unlinked = unlinked_payload_len(capacity);
    let count = if next.is_some() {
        MAX_FRAGMENTS_PER_SET
    } else {
        1 + message.len().saturating_sub(linked).div_ceil(unlinked)
    };
    let total = u8::try_from(count).map_err(|_| ChunkingError::PayloadTooLong {
        received: message.len(),
        max: one_way_linked_set_len(capacity),
    })?;

    let mut fragments = Vec::with_capacity(count);
    let mut start = 0usize;
    let mut end = if previous.is_some() {
        message.len().min(linked)
    } else {
        unlinked
    };
    for i in 1..=total {
        let chunk = message
            .get(start..end)
            .ok_or(ChunkingError::PayloadLength {
                received: message.len(),
                expected: end,
            })?;
        let header = FragmentHeader::new(
            id,
            total,
            i,
            if i == 1 { previous } else { None },
            if i == total { next } else { None },
        )?;
        fragments.push(Fragment::new(header, chunk.to_vec(), capacity)?);
        start = end;
        end = message.len().min(end + unlinked);
    }
    Ok(fragments)
}

/// Split `message` into sets of fragments with serialised length at most
/// `capacity` (exactly `capacity` when the message was padded by
/// [`NymMessage::pad`]). Messages longer than one set become a chain of linked
/// sets; set ids are drawn from `rng` and are distinct within the message.
pub fn split_into_sets<R: Rng + ?Sized>(
    rng: &mut R,
    message: &[u8],
    capacity: usize,
) -> Result<Vec<Vec<Fragment>>, ChunkingError> {
    if capacity < MIN_FRAGMENT_CAPACITY {
        return Err(ChunkingError::CapacityTooSmall(capacity));
    }
    if message.is_empty() {
        return Err(ChunkingError::EmptyMessage);
    }
    let sets = total_number_of_sets(message.len(), capacity);
    if sets == 1 {
        return Ok(vec![unlinked_set(message, random_set_id(rng), capacity)?]);
    }

    let mut ids: Vec<i32> = Vec::with_capacity(sets);
    while ids.len() < sets {
        let id = random_set_id(rng);
        // Distinct ids: a repeat would make a set link to itself.
        if !ids.contains(&id) {
            ids.push(id);
        }
    }

    let one_way = one_way_linked_set_len(capacity);
    let two_way = two_way_linked_set_len(capacity);
    let mut out = Vec::with_capacity(sets);
    let mut start = 0usize;
    let mut end = one_way;
    for i in 0..sets {
        let previous = if i == 0 { None } else { Some(ids[i - 1]) };
        let next = ids.get(i + 1).copied();
        let part = message
            .get(start..end)
            .ok_or(ChunkingError::PayloadLength {
                received: message.len(),
                expected: end,
            })?;
        out.push(linked_set(part, ids[i], previous, next, capacity)?);
        start = end;
        let step = if i + 2 == sets { one_way } else { two_way };
        end = message.len().min(end + step);
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// Reassembly
// ---------------------------------------------------------------------------

/// Limits of a [`Reassembler`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReassemblyConfig {
    /// Most payload bytes buffered across all incomplete messages.
    pub max_buffered_bytes: usize,
    /// Most sets buffered at once.
    pub max_sets: usize,
    /// Sets with no new fragment for this long are dropped by
    /// [`Reassembler::purge`].
    pub incomplete_timeout: Duration,
    /// How many recently completed set ids are remembered to ignore late
    /// duplicates.
    pub recently_completed: usize,
}

impl ReassemblyConfig {
    /// Nym's timeout for incomplete messages: 30 minutes.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);
}

impl Default for ReassemblyConfig {
    fn default() -> Self {
        Self {
            max_buffered_bytes: 128 * 1024 * 1024,
            max_sets: 16 * 1024,
            incomplete_timeout: Self::DEFAULT_TIMEOUT,
            recently_completed: 16 * 1024,
        }
    }
}

/// A message whose every fragment arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReassembledMessage {
    /// The padded message bytes (see [`PaddedMessage::unpad`]).
    pub data: Vec<u8>,
    /// Set ids of the chain, in order.
    pub set_ids: Vec<i32>,
}

impl ReassembledMessage {
    /// Un-pad and parse.
    pub fn into_message(self) -> Result<NymMessage, MessageError> {
        PaddedMessage(self.data).unpad()
    }
}

/// Why a buffered set was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Evicted to respect the memory or set-count bound.
    OverLimit,
    /// No fragment arrived within the timeout.
    TimedOut,
}

/// A buffered set that was dropped before its message completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DroppedSet {
    /// Its id.
    pub set_id: i32,
    /// Fragments it had received.
    pub received: usize,
    /// Fragments it expected.
    pub total: u8,
    /// Payload bytes freed.
    pub bytes: usize,
    /// Why.
    pub reason: DropReason,
}

/// What happened to an inserted fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InsertOutcome {
    /// Stored; its message is not complete yet.
    Buffered,
    /// Ignored: its position was already filled, or its set was recently
    /// completed (a retransmission after a lost ack).
    Duplicate,
    /// It completed a message.
    Complete(ReassembledMessage),
}

/// Result of [`Reassembler::insert`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inserted {
    /// What happened to the fragment.
    pub outcome: InsertOutcome,
    /// Sets evicted to make room for it (oldest activity first).
    pub evicted: Vec<DroppedSet>,
}

/// Fragments that cannot be buffered.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ReassemblyError {
    /// A fragment of a known set disagrees with it about the set size.
    #[error("fragment of set {set_id} says {got} fragments, the set has {expected}")]
    InconsistentTotal {
        /// Set id.
        set_id: i32,
        /// Total announced by the first fragment.
        expected: u8,
        /// Total in this fragment.
        got: u8,
    },
    /// A single fragment larger than the whole memory bound.
    #[error("fragment of {bytes} bytes exceeds the reassembly bound of {limit} bytes")]
    TooLarge {
        /// Payload length.
        bytes: usize,
        /// Configured bound.
        limit: usize,
    },
    /// The bytes are not a fragment.
    #[error(transparent)]
    Malformed(#[from] ChunkingError),
}

#[derive(Debug)]
struct SetBuffer {
    fragments: Vec<Option<Fragment>>,
    received: usize,
    bytes: usize,
    last_update: Instant,
    touch: u64,
}

impl SetBuffer {
    fn complete(&self) -> bool {
        self.received == self.fragments.len()
    }

    fn previous(&self) -> Option<i32> {
        self.fragments
            .first()
            .and_then(|f| f.as_ref())
            .and_then(|f| f.header.previous_set)
    }

    fn next(&self) -> Option<i32> {
        if self.fragments.len() != MAX_FRAGMENTS_PER_SET {
            return None;
        }
        self.fragments
            .last()
            .and_then(|f| f.as_ref())
            .and_then(|f| f.header.next_set)
    }

    fn total(&self) -> u8 {
        // Buffers are created from a parsed header, so 1..=255 entries.
        u8::try_from(self.fragments.len()).unwrap_or(u8::MAX)
    }
}

/// Collects fragments into messages. Sans-IO: the caller passes the time.
#[derive(Debug)]
pub struct Reassembler {
    config: ReassemblyConfig,
    sets: HashMap<i32, SetBuffer>,
    /// Activity order: touch counter → set id (oldest first).
    order: BTreeMap<u64, i32>,
    next_touch: u64,
    buffered_bytes: usize,
    recent: HashSet<i32>,
    recent_order: VecDeque<i32>,
}

impl Default for Reassembler {
    fn default() -> Self {
        Self::new(ReassemblyConfig::default())
    }
}

impl Reassembler {
    /// An empty reassembler.
    pub fn new(config: ReassemblyConfig) -> Self {
        Self {
            config,
            sets: HashMap::new(),
            order: BTreeMap::new(),
            next_touch: 0,
            buffered_bytes: 0,
            recent: HashSet::new(),
            recent_order: VecDeque::new(),
        }
    }

    /// The limits in force.
    pub fn config(&self) -> &ReassemblyConfig {
        &self.config
    }

    /// Payload bytes currently buffered.
    pub fn buffered_bytes(&self) -> usize {
        self.buffered_bytes
    }

    /// Sets currently buffered (complete or not).
    pub fn buffered_sets(&self) -> usize {
        self.sets.len()
    }

    /// Whether `set_id` belongs to a recently completed message.
    pub fn recently_completed(&self, set_id: i32) -> bool {
        self.recent.contains(&set_id)
    }

    /// Parse and insert a received fragment.
    pub fn insert_bytes(&mut self, bytes: &[u8], now: Instant) -> Result<Inserted, ReassemblyError> {
        self.insert(Fragment::from_bytes(bytes)?, now)
    }

    /// Insert a fragment; returns the completed message when it was the last
    /// missing piece.
    pub fn insert(&mut self, fragment: Fragment, now: Instant) -> Result<Inserted, ReassemblyError> {
        let set_id = fragment.set_id();
        let total = fragment.total();
        let size = fragment.payload.len();
        let idx = usize::from(fragment.current()).saturating_sub(1);

        let buffered = |outcome| Inserted {
            outcome,
            evicted: Vec::new(),
        };
        if self.recent.contains(&set_id) {
            return Ok(buffered(InsertOutcome::Duplicate));
        }
        if let Some(buf) = self.sets.get(&set_id) {
            if buf.total() != total {
                return Err(ReassemblyError::InconsistentTotal {
                    set_id,
                    expected: buf.total(),
                    got: total,
                });
            }
            if buf.fragments.get(idx).is_none_or(|f| f.is_some()) {
                return Ok(buffered(InsertOutcome::Duplicate));
            }
        }
        if size > self.config.max_buffered_bytes {
            return Err(ReassemblyError::TooLarge {
                bytes: size,
                limit: self.config.max_buffered_bytes,
            });
        }

        let evicted = self.make_room(set_id, size);

        let touch = self.next_touch;
        self.next_touch += 1;
        let buf = self.sets.entry(set_id).or_insert_with(|| SetBuffer {
            fragments: vec![None; usize::from(total)],
            received: 0,
            bytes: 0,
            last_update: now,
            touch,
        });
        self.order.remove(&buf.touch);
        buf.touch = touch;
        buf.last_update = now;
        if let Some(slot) = buf.fragments.get_mut(idx) {
            *slot = Some(fragment);
            buf.received += 1;
            buf.bytes += size;
            self.buffered_bytes += size;
        }
        let complete = buf.complete();
        self.order.insert(touch, set_id);

        let outcome = if complete {
            match self.try_complete(set_id) {
                Some(msg) => InsertOutcome::Complete(msg),
                None => InsertOutcome::Buffered,
            }
        } else {
            InsertOutcome::Buffered
        };
        Ok(Inserted { outcome, evicted })
    }

    /// Drop sets that received nothing for the configured timeout; returns
    /// what was dropped.
    pub fn purge(&mut self, now: Instant) -> Vec<DroppedSet> {
        let timeout = self.config.incomplete_timeout;
        let stale: Vec<i32> = self
            .sets
            .iter()
            .filter(|(_, b)| now.saturating_duration_since(b.last_update) >= timeout)
            .map(|(&id, _)| id)
            .collect();
        stale
            .into_iter()
            .filter_map(|id| self.remove_set(id, DropReason::TimedOut))
            .collect()
    }

    fn remove_set(&mut self, set_id: i32, reason: DropReason) -> Option<DroppedSet> {
        let buf = self.sets.remove(&set_id)?;
        self.order.remove(&buf.touch);
        self.buffered_bytes = self.buffered_bytes.saturating_sub(buf.bytes);
        Some(DroppedSet {
            set_id,
            received: buf.received,
            total: buf.total(),
            bytes: buf.bytes,
            reason,
        })
    }

    /// Evict least recently active sets until `extra` bytes (and, for a new
    /// set, one more set) fit. The target set goes last, only if nothing else
    /// is left.
    fn make_room(&mut self, target: i32, extra: usize) -> Vec<DroppedSet> {
        let mut evicted = Vec::new();
        loop {
            let new_set = !self.sets.contains_key(&target);
            let bytes_ok = self.buffered_bytes + extra <= self.config.max_buffered_bytes;
            let sets_ok = !new_set || self.sets.len() < self.config.max_sets.max(1);
            if bytes_ok && sets_ok {
                break;
            }
            let victim = self
                .order
                .values()
                .copied()
                .find(|&id| id != target)
                .or_else(|| self.sets.contains_key(&target).then_some(target));
            match victim.and_then(|id| self.remove_set(id, DropReason::OverLimit)) {
                Some(d) => evicted.push(d),
                None => break,
            }
        }
        evicted
    }

    /// If the chain containing the (complete) set `set_id` is complete, remove
    /// it and return the message.
    fn try_complete(&mut self, set_id: i32) -> Option<ReassembledMessage> {
        let limit = self.sets.len();
        // Walk back to the head of the chain, bounded against link cycles.
        let mut head = set_id;
        let mut steps = 0usize;
        while let Some(prev) = self.sets.get(&head).and_then(SetBuffer::previous) {
            let prev_buf = self.sets.get(&prev)?;
            if !prev_buf.complete() || prev_buf.next() != Some(head) {
                return None;
            }
            head = prev;
            steps += 1;
            if steps > limit {
                return None;
            }
        }
        // Walk forward to the tail, checking links agree both ways.
        let mut chain = vec![head];
        let mut cur = head;
        while let Some(next) = self.sets.get(&cur).and_then(SetBuffer::next) {
            let next_buf = self.sets.get(&next)?;
            if !next_buf.complete() || next_buf.previous() != Some(cur) {
                return None;
            }
            chain.push(next);
            cur = next;
            if chain.len() > limit {
                return None;
            }
        }
        if !chain.contains(&set_id) {
            return None;
        }

        let mut data = Vec::new();
        for &id in &chain {
            if let Some(buf) = self.sets.remove(&id) {
                self.order.remove(&buf.touch);
                self.buffered_bytes = self.buffered_bytes.saturating_sub(buf.bytes);
                for f in buf.fragments.into_iter().flatten() {
                    data.extend_from_slice(&f.payload);
                }
            }
            self.remember(id);
        }
        Some(ReassembledMessage {
            data,
            set_ids: chain,
        })
    }

    fn remember(&mut self, set_id: i32) {
        if self.config.recently_completed == 0 {
            return;
        }
        if self.recent.insert(set_id) {
            self.recent_order.push_back(set_id);
        }
        while self.recent_order.len() > self.config.recently_completed {
            if let Some(old) = self.recent_order.pop_front() {
                self.recent.remove(&old);
            }
        }
    }
}
