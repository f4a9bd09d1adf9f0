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
    /// Most bytes buffered across all incomplete messages, counting each
    /// fragment as its payload plus [`FRAGMENT_ACCOUNTING_OVERHEAD`].
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
    /// Accounted bytes freed.
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
        /// Accounted size (payload plus [`FRAGMENT_ACCOUNTING_OVERHEAD`]).
        bytes: usize,
        /// Configured bound.
        limit: usize,
    },
    /// The bytes are not a fragment.
    #[error(transparent)]
    Malformed(#[from] ChunkingError),
}

/// Bytes charged per buffered fragment on top of its payload, so that floods
/// of tiny fragments are bounded by [`ReassemblyConfig::max_buffered_bytes`]
/// too.
pub const FRAGMENT_ACCOUNTING_OVERHEAD: usize = 64;

fn accounted_size(fragment: &Fragment) -> usize {
    fragment.payload.len() + FRAGMENT_ACCOUNTING_OVERHEAD
}

#[derive(Debug)]
struct SetBuffer {
    total: u8,
    /// Received fragments by 1-based position (sparse: memory follows what
    /// actually arrived).
    fragments: BTreeMap<u8, Fragment>,
    bytes: usize,
    last_update: Instant,
    touch: u64,
}

impl SetBuffer {
    fn complete(&self) -> bool {
        self.fragments.len() == usize::from(self.total)
    }

    fn previous(&self) -> Option<i32> {
        self.fragments.get(&1).and_then(|f| f.header.previous_set)
    }

    fn next(&self) -> Option<i32> {
        if usize::from(self.total) != MAX_FRAGMENTS_PER_SET {
            return None;
        }
        self.fragments
            .get(&self.total)
            .and_then(|f| f.header.next_set)
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

    /// Bytes currently charged against the bound: payloads plus
    /// [`FRAGMENT_ACCOUNTING_OVERHEAD`] per fragment.
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

    /// Treat `set_id` as completed: its fragments are ignored as duplicates
    /// (e.g. ids of messages delivered before a restart, whose senders may
    /// still retransmit them). Bounded like every completed id.
    pub fn remember_completed(&mut self, set_id: i32) {
        self.remember(set_id);
    }

    /// Parse and insert a received fragment.
    pub fn insert_bytes(
        &mut self,
        bytes: &[u8],
        now: Instant,
    ) -> Result<Inserted, ReassemblyError> {
        self.insert(Fragment::from_bytes(bytes)?, now)
    }

    /// Insert a fragment; returns the completed message when it was the last
    /// missing piece.
    pub fn insert(
        &mut self,
        fragment: Fragment,
        now: Instant,
    ) -> Result<Inserted, ReassemblyError> {
        let set_id = fragment.set_id();
        let total = fragment.total();
        let size = accounted_size(&fragment);
        let position = fragment.current();

        let buffered = |outcome| Inserted {
            outcome,
            evicted: Vec::new(),
        };
        if self.recent.contains(&set_id) {
            return Ok(buffered(InsertOutcome::Duplicate));
        }
        if let Some(buf) = self.sets.get(&set_id) {
            if buf.total != total {
                return Err(ReassemblyError::InconsistentTotal {
                    set_id,
                    expected: buf.total,
                    got: total,
                });
            }
            if buf.fragments.contains_key(&position) {
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
            total,
            fragments: BTreeMap::new(),
            bytes: 0,
            last_update: now,
            touch,
        });
        self.order.remove(&buf.touch);
        buf.touch = touch;
        buf.last_update = now;
        buf.fragments.insert(position, fragment);
        buf.bytes += size;
        self.buffered_bytes += size;
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
            received: buf.fragments.len(),
            total: buf.total,
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
                for f in buf.fragments.into_values() {
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::seq::SliceRandom;
    use rand::{RngCore, SeedableRng};
    use rand_chacha::ChaCha20Rng;

    /// The capacity Nym's chunking tests use: regular plaintext minus an ack
    /// packet (2048 − 386).
    const NYM_TEST_CAPACITY: usize = 1662;
    const SET_LEN: usize = MAX_FRAGMENTS_PER_SET;

    fn rng() -> ChaCha20Rng {
        ChaCha20Rng::from_seed([7u8; 32])
    }

    fn random_bytes(rng: &mut ChaCha20Rng, n: usize) -> Vec<u8> {
        let mut v = vec![0u8; n];
        rng.fill_bytes(&mut v);
        v
    }

    // ---- arithmetic (ported inputs/expectations of Nym's chunking tests) ----

    #[test]
    fn number_of_required_fragments_matches_nym() {
        // 1643 = 2048 − 386 − 19, as in Nym's test.
        for cap in [17usize, 1643, 20, 42, 10000] {
            let u = unlinked_payload_len(cap);
            let l = linked_payload_len(cap);
            let edge = one_way_linked_set_len(cap);
            let middle = two_way_linked_set_len(cap);
            let cases: [(usize, usize, usize); 14] = [
                (u - 5, 1, 5),
                (u, 1, 0),
                (u + 1, 2, u - 1),
                (2 * u, 2, 0),
                (u * 42 - 5, 42, 5),
                (u * 42, 42, 0),
                (edge + l - 1, SET_LEN + 1, 1),
                (edge + l, SET_LEN + 1, 0),
                (edge + l + u * 41 - 5, SET_LEN + 42, 5),
                (edge + l + u * 41, SET_LEN + 42, 0),
                (edge + 8 * middle + l - 1, 9 * SET_LEN + 1, 1),
                (edge + 8 * middle + l, 9 * SET_LEN + 1, 0),
                (edge + 8 * middle + l + 41 * u - 5, 9 * SET_LEN + 42, 5),
                (edge + 8 * middle + l + 41 * u, 9 * SET_LEN + 42, 0),
            ];
            for (len, frags, left) in cases {
                assert_eq!(
                    number_of_required_fragments(len, cap),
                    (frags, left),
                    "capacity {cap}, length {len}"
                );
            }
        }
    }

    #[test]
    fn total_number_of_sets_matches_nym() {
        let c = NYM_TEST_CAPACITY;
        let unl = max_unlinked_set_len(c);
        let one = one_way_linked_set_len(c);
        let two = two_way_linked_set_len(c);
        let cases = [
            (unl - 1, 1),
            (unl, 1),
            (unl + 1, 2),
            (2 * one, 2),
            (2 * one + 1, 3),
            (2 * one + two - 1, 3),
            (2 * one + two, 3),
            (2 * one + two + 1, 4),
            (2 * one + 2 * two - 1, 4),
            (2 * one + 2 * two, 4),
            (2 * one + 2 * two + 1, 5),
        ];
        for (len, sets) in cases {
            assert_eq!(total_number_of_sets(len, c), sets, "length {len}");
        }
    }

    #[test]
    fn regular_packet_numbers() {
        let cap = PacketSize::Regular.fragment_capacity();
        assert_eq!(cap, 1611);
        assert_eq!(unlinked_payload_len(cap), 1604);
        assert_eq!(linked_payload_len(cap), 1601);
        assert_eq!(max_unlinked_set_len(cap), 255 * 1604);
        assert_eq!(one_way_linked_set_len(cap), 255 * 1604 - 3);
        assert_eq!(two_way_linked_set_len(cap), 255 * 1604 - 6);
    }

    // ---- fragment headers (ported from Nym's fragment tests) ----

    fn hdr(
        id: i32,
        t: u8,
        c: u8,
        p: Option<i32>,
        n: Option<i32>,
    ) -> Result<FragmentHeader, ChunkingError> {
        FragmentHeader::new(id, t, c, p, n)
    }

    #[test]
    fn header_layouts() {
        let h = hdr(12345, 10, 5, None, None).expect("valid");
        assert_eq!(h.to_bytes(), vec![0x80, 0x00, 0x30, 0x39, 10, 5, 0]);
        let h = hdr(12345, 10, 1, Some(1234), None).expect("valid");
        assert_eq!(
            h.to_bytes(),
            vec![0x80, 0x00, 0x30, 0x39, 10, 1, 0x80, 0x00, 0x04, 0xd2]
        );
        let h = hdr(i32::MAX, 255, 255, None, Some(1)).expect("valid");
        assert_eq!(
            h.to_bytes(),
            vec![0xff, 0xff, 0xff, 0xff, 255, 255, 0x80, 0, 0, 1]
        );
    }

    #[test]
    fn header_round_trips_exact_and_with_extra_bytes() {
        for (h, len) in [
            (hdr(12345, 10, 5, None, None), UNLINKED_HEADER_LEN),
            (hdr(12345, 10, 1, Some(1234), None), LINKED_HEADER_LEN),
            (hdr(12345, 1, 1, Some(1234), None), LINKED_HEADER_LEN),
            (hdr(12345, 255, 255, None, Some(1234)), LINKED_HEADER_LEN),
        ] {
            let h = h.expect("valid");
            let mut b = h.to_bytes();
            assert_eq!(FragmentHeader::parse(&b), Ok((h, len)));
            b.extend_from_slice(&[1, 2, 3, 4, 5]);
            assert_eq!(FragmentHeader::parse(&b), Ok((h, len)));
            let short = &h.to_bytes()[..len - 1];
            assert!(matches!(
                FragmentHeader::parse(short),
                Err(ChunkingError::TooShortHeader { .. })
            ));
        }
    }

    #[test]
    fn header_flags_are_checked() {
        let mut b = hdr(10, 10, 5, None, None).expect("valid").to_bytes();
        b[0] &= 0x7f;
        assert_eq!(
            FragmentHeader::parse(&b),
            Err(ChunkingError::MissingSetIdFlag)
        );
        b[0] |= 1 << 3;
        assert_eq!(
            FragmentHeader::parse(&b),
            Err(ChunkingError::MissingSetIdFlag)
        );

        // A link byte on fragment 5 of 10: a link where none may be.
        let mut b = hdr(12345, 10, 5, None, None).expect("valid").to_bytes();
        b[6] |= 0x80;
        b.extend_from_slice(&[0, 0, 1]);
        assert!(matches!(
            FragmentHeader::parse(&b),
            Err(ChunkingError::MisplacedLink { .. })
        ));
        // Non-zero link byte without the flag bit.
        let mut b = hdr(12345, 10, 1, None, None).expect("valid").to_bytes();
        b[6] = 0x01;
        b.extend_from_slice(&[0, 0, 1]);
        assert_eq!(
            FragmentHeader::parse(&b),
            Err(ChunkingError::MissingLinkFlag)
        );
    }

    #[test]
    fn header_construction_rules() {
        assert!(hdr(12345, 10, 11, None, None).is_err());
        assert!(hdr(12345, 10, 0, None, None).is_err());
        assert!(hdr(12345, 0, 0, None, None).is_err());
        assert!(hdr(-10, 10, 5, None, None).is_err());
        assert!(hdr(0, 10, 5, None, None).is_err());
        assert!(hdr(12345, 10, 5, Some(0), None).is_err());
        assert!(hdr(12345, 255, 255, None, Some(0)).is_err());
        assert!(hdr(12345, 10, 1, Some(12345), None).is_err());
        assert!(hdr(12345, 10, 10, None, Some(12345)).is_err());
        assert!(hdr(12345, 10, 1, Some(1234), None).is_ok());
        assert!(hdr(12345, 10, 2, Some(1234), None).is_err());
        assert!(hdr(12345, 10, 10, None, Some(1234)).is_ok());
        assert!(hdr(12345, 255, 255, None, Some(1234)).is_ok());
    }

    #[test]
    fn header_parse_rejects_bad_positions() {
        for (t, c) in [(10u8, 11u8), (0, 0), (5, 0), (0, 1)] {
            let b = [0x80, 0, 4, 0xd2, t, c, 0];
            assert!(matches!(
                FragmentHeader::parse(&b),
                Err(ChunkingError::InvalidPosition { .. })
            ));
        }
        // Fragment 1 of 1 with a link is a previous-set link.
        let b = [0x80, 0, 0, 9, 1, 1, 0x80, 0, 0, 8];
        let (h, _) = FragmentHeader::parse(&b).expect("valid");
        assert_eq!((h.previous_set(), h.next_set()), (Some(8), None));
        // Fragment 10 of 10 with a link is not allowed on the wire (only 255/255).
        let b = [0x80, 0, 0, 9, 10, 10, 0x80, 0, 0, 8];
        assert!(FragmentHeader::parse(&b).is_err());
    }

    fn frag(
        payload_len: usize,
        t: u8,
        c: u8,
        p: Option<i32>,
        n: Option<i32>,
    ) -> Result<Fragment, ChunkingError> {
        Fragment::new(
            hdr(12345, t, c, p, n)?,
            vec![1u8; payload_len],
            NYM_TEST_CAPACITY,
        )
    }

    #[test]
    fn unlinked_fragment_payload_rules() {
        let u = unlinked_payload_len(NYM_TEST_CAPACITY);
        for (len, t, c) in [
            (u, 10, 1),
            (u, 10, 5),
            (u, 10, 10),
            (u, 1, 1),
            (u - 1, 10, 10),
            (u - 1, 1, 1),
            (u - 60, 10, 10),
            (u - 60, 1, 1),
        ] {
            assert!(frag(len, t, c, None, None).is_ok(), "{len} {t} {c}");
        }
        for (len, t, c) in [
            (u - 1, 10, 1),
            (u - 1, 10, 5),
            (u + 1, 10, 1),
            (u + 1, 10, 5),
            (u + 1, 1, 1),
            (u - 20, 10, 1),
            (u - 20, 10, 5),
        ] {
            assert!(frag(len, t, c, None, None).is_err(), "{len} {t} {c}");
        }
    }

    #[test]
    fn linked_fragment_payload_rules() {
        let l = linked_payload_len(NYM_TEST_CAPACITY);
        let link = Some(1234);
        assert!(frag(l, 10, 1, link, None).is_ok());
        assert!(frag(l, 1, 1, link, None).is_ok());
        assert!(frag(l - 1, 1, 1, link, None).is_ok());
        assert!(frag(l - 20, 1, 1, link, None).is_ok());
        assert!(frag(l, 255, 255, None, link).is_ok());

        assert!(frag(l - 1, 10, 1, link, None).is_err());
        assert!(frag(l - 20, 10, 1, link, None).is_err());
        assert!(frag(l + 1, 10, 1, link, None).is_err());
        assert!(frag(l + 1, 1, 1, link, None).is_err());
        assert!(frag(l - 1, 255, 255, None, link).is_err());
        assert!(frag(l - 20, 255, 255, None, link).is_err());
        assert!(frag(l + 1, 255, 255, None, link).is_err());
    }

    #[test]
    fn fragments_round_trip_through_bytes() {
        let u = unlinked_payload_len(NYM_TEST_CAPACITY);
        let l = linked_payload_len(NYM_TEST_CAPACITY);
        for f in [
            frag(40, 1, 1, None, None),
            frag(0, 1, 1, None, None),
            frag(u, 10, 5, None, None),
            frag(u, 10, 10, None, None),
            frag(u - 20, 10, 10, None, None),
            frag(l, 10, 1, Some(1234), None),
            frag(l - 20, 1, 1, Some(1234), None),
            frag(l, 255, 255, None, Some(1234)),
        ] {
            let f = f.expect("valid");
            let b = f.to_bytes();
            assert_eq!(b.len(), f.encoded_len());
            assert_eq!(Fragment::from_bytes(&b), Ok(f.clone()));
            assert_eq!(
                f.id(),
                FragmentId {
                    set_id: 12345,
                    position: f.current()
                }
            );
        }
    }

    // ---- splitting (ported from Nym's set tests) ----

    /// Check a set's fragments carry `payload` laid out as the splitter must:
    /// linked first/last fragments when `prev`/`next`, full fragments except
    /// possibly the last, serialised lengths never above the capacity.
    fn verify_set(set: &[Fragment], payload: &[u8], prev: bool, next: bool, cap: usize) {
        let joined: Vec<u8> = set.iter().flat_map(|f| f.payload().to_vec()).collect();
        assert_eq!(joined, payload);
        let n = set.len();
        assert!((1..=SET_LEN).contains(&n));
        let id = set[0].set_id();
        for (i, f) in set.iter().enumerate() {
            assert_eq!(f.set_id(), id);
            assert_eq!(usize::from(f.total()), n);
            assert_eq!(usize::from(f.current()), i + 1);
            assert!(f.encoded_len() <= cap);
            let is_first_linked = i == 0 && prev;
            let is_last_linked = i + 1 == n && next;
            assert_eq!(f.header().previous_set().is_some(), is_first_linked);
            assert_eq!(f.header().next_set().is_some(), is_last_linked);
            if i + 1 < n || is_last_linked {
                assert_eq!(
                    f.encoded_len(),
                    cap,
                    "fragment {} of {n} must be full",
                    i + 1
                );
            }
        }
        if next {
            assert_eq!(n, SET_LEN);
        }
    }

    fn verify_link(a: &[Fragment], b: &[Fragment]) {
        let last = a.last().expect("non-empty");
        assert_eq!(last.header().next_set(), Some(b[0].set_id()));
        assert_eq!(b[0].header().previous_set(), Some(a[0].set_id()));
    }

    #[test]
    fn single_set_split() {
        let cap = NYM_TEST_CAPACITY;
        let mut r = rng();
        let msg = random_bytes(&mut r, max_unlinked_set_len(cap) - 2345);
        let sets = split_into_sets(&mut r, &msg, cap).expect("split");
        assert_eq!(sets.len(), 1);
        verify_set(&sets[0], &msg, false, false, cap);
    }

    #[test]
    fn two_sets_with_small_second_set() {
        let cap = NYM_TEST_CAPACITY;
        let one = one_way_linked_set_len(cap);
        let mut r = rng();
        for extra in [123usize, 2345, one] {
            let msg = random_bytes(&mut r, one + extra);
            let sets = split_into_sets(&mut r, &msg, cap).expect("split");
            assert_eq!(sets.len(), 2);
            verify_link(&sets[0], &sets[1]);
            verify_set(&sets[0], &msg[..one], false, true, cap);
            verify_set(&sets[1], &msg[one..], true, false, cap);
        }
        let msg = random_bytes(&mut r, 2 * one);
        let sets = split_into_sets(&mut r, &msg, cap).expect("split");
        assert_eq!((sets[0].len(), sets[1].len()), (SET_LEN, SET_LEN));
    }

    #[test]
    fn four_sets() {
        let cap = NYM_TEST_CAPACITY;
        let one = one_way_linked_set_len(cap);
        let two = two_way_linked_set_len(cap);
        let mut r = rng();
        for tail in [2345usize, one] {
            let msg = random_bytes(&mut r, 2 * two + one + tail);
            let sets = split_into_sets(&mut r, &msg, cap).expect("split");
            assert_eq!(sets.len(), 4);
            for w in sets.windows(2) {
                verify_link(&w[0], &w[1]);
            }
            verify_set(&sets[0], &msg[..one], false, true, cap);
            verify_set(&sets[1], &msg[one..one + two], true, true, cap);
            verify_set(&sets[2], &msg[one + two..one + 2 * two], true, true, cap);
            verify_set(&sets[3], &msg[one + 2 * two..], true, false, cap);
            if tail == one {
                assert_eq!(sets[3].len(), SET_LEN);
            }
        }
    }

    #[test]
    fn set_ids_are_positive_and_distinct() {
        let mut r = rng();
        for _ in 0..1000 {
            let id = random_set_id(&mut r);
            assert!(id >= 1);
        }
        let cap = 20;
        let msg = random_bytes(&mut r, 10 * max_unlinked_set_len(cap));
        let sets = split_into_sets(&mut r, &msg, cap).expect("split");
        let mut ids: Vec<i32> = sets.iter().map(|s| s[0].set_id()).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), sets.len());
    }

    #[test]
    fn split_rejects_bad_input() {
        let mut r = rng();
        assert_eq!(
            split_into_sets(&mut r, &[1, 2, 3], 10),
            Err(ChunkingError::CapacityTooSmall(10))
        );
        assert_eq!(
            split_into_sets(&mut r, &[], 100),
            Err(ChunkingError::EmptyMessage)
        );
    }

    // ---- NymMessage framing and padding ----

    #[test]
    fn message_framing() {
        let m = NymMessage::Plain(vec![1, 2, 3, 4, 5]);
        let b = m.to_bytes().expect("encode");
        assert_eq!(b, vec![0, 1, 2, 3, 4, 5]);
        assert_eq!(m.serialized_len(), b.len());
        assert_eq!(NymMessage::from_bytes(&b), Ok(m));
        let r = NymMessage::Reply(ReplyMessage::Data(vec![1, 2, 3, 4, 5]));
        let b = r.to_bytes().expect("encode");
        assert_eq!(b, vec![2, 0, 1, 2, 3, 4, 5]);
        assert_eq!(r.serialized_len(), b.len());
        assert_eq!(NymMessage::from_bytes(&b), Ok(r));
        let rep = NymMessage::Repliable(RepliableMessage::new_data(
            crate::SenderTag([42; 16]),
            vec![1, 2, 3, 4, 5],
            vec![],
        ));
        let b = rep.to_bytes().expect("encode");
        assert_eq!(rep.serialized_len(), b.len());
        let mut expected = vec![1u8];
        expected.extend_from_slice(&[42; 16]);
        expected.extend_from_slice(&[3, 0, 0, 0, 0, 1, 2, 3, 4, 5]);
        assert_eq!(b, expected);
        assert_eq!(NymMessage::from_bytes(&b), Ok(rep));
        assert_eq!(NymMessage::from_bytes(&[]), Err(MessageError::Empty));
        assert_eq!(
            NymMessage::from_bytes(&[3, 1]),
            Err(MessageError::UnknownType(3))
        );
    }

    #[test]
    fn padding_fills_whole_fragments() {
        let cap = PacketSize::Regular.fragment_capacity();
        let u = unlinked_payload_len(cap);
        // serialised lengths (tag included) around the boundaries
        for body in [0usize, 1, u - 2, u - 1, u, 2 * u - 2, 2 * u - 1, 10 * u] {
            let m = NymMessage::Plain(vec![0xaa; body]);
            let padded = m.pad(cap).expect("pad");
            let bytes = padded.as_bytes();
            assert_eq!(bytes[body + 1], 1);
            assert!(bytes[body + 2..].iter().all(|&b| b == 0));
            let frags = (body + 2).div_ceil(u);
            assert_eq!(bytes.len(), frags * u, "body {body}");
            assert_eq!(m.required_packets(PacketSize::Regular), frags);
            let fragments = padded.split_into_fragments(&mut rng(), cap).expect("split");
            assert_eq!(fragments.len(), frags);
            assert!(fragments.iter().all(|f| f.to_bytes().len() == cap));
            assert_eq!(padded.unpad(), Ok(m));
        }
        assert_eq!(
            PaddedMessage::new(vec![0, 0, 0]).unpad(),
            Err(MessageError::InvalidPadding)
        );
        // Bytes 0x01 inside the message survive: the last 0x01 is the marker.
        let m = NymMessage::Plain(vec![1, 1, 0, 1]);
        assert_eq!(m.pad(cap).expect("pad").unpad(), Ok(m));
    }

    #[test]
    fn padding_across_linked_sets_fills_every_fragment() {
        let cap = PacketSize::Regular.fragment_capacity();
        let one = one_way_linked_set_len(cap);
        let l = linked_payload_len(cap);
        let mut r = rng();
        // Serialised + marker lengths that land on the linked boundary.
        for total in [one - 1, one, one + 1, one + l, one + l + 1, 2 * one + 5] {
            let m = NymMessage::Plain(random_bytes(&mut r, total - 2));
            let padded = m.pad(cap).expect("pad");
            let fragments = padded.split_into_fragments(&mut r, cap).expect("split");
            assert_eq!(fragments.len(), number_of_required_fragments(total, cap).0);
            assert!(
                fragments.iter().all(|f| f.to_bytes().len() == cap),
                "total {total}"
            );
            let mut re = Reassembler::default();
            let now = Instant::now();
            let mut done = None;
            for f in fragments {
                if let InsertOutcome::Complete(msg) = re.insert(f, now).expect("insert").outcome {
                    done = Some(msg);
                }
            }
            let msg = done.expect("complete");
            assert_eq!(msg.into_message(), Ok(m));
        }
    }

    // ---- reassembly ----

    fn fragments_of(r: &mut ChaCha20Rng, len: usize, cap: usize) -> (NymMessage, Vec<Fragment>) {
        let m = NymMessage::Plain(random_bytes(r, len));
        let f = m
            .pad(cap)
            .expect("pad")
            .split_into_fragments(r, cap)
            .expect("split");
        (m, f)
    }

    fn feed(re: &mut Reassembler, frags: Vec<Fragment>, now: Instant) -> Vec<ReassembledMessage> {
        frags
            .into_iter()
            .filter_map(|f| match re.insert(f, now).expect("insert").outcome {
                InsertOutcome::Complete(m) => Some(m),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn reassembles_nym_reconstruction_cases() {
        let cap = 1024;
        let mut r = rng();
        let now = Instant::now();
        for len in [
            42,
            unlinked_payload_len(cap) * 3,
            one_way_linked_set_len(cap) + 123,
            one_way_linked_set_len(cap) + unlinked_payload_len(cap),
        ] {
            let (m, mut frags) = fragments_of(&mut r, len, cap);
            frags.reverse();
            let mut re = Reassembler::default();
            let out = feed(&mut re, frags, now);
            assert_eq!(out.len(), 1);
            assert_eq!(out[0].clone().into_message(), Ok(m));
            assert_eq!(re.buffered_bytes(), 0);
            assert_eq!(re.buffered_sets(), 0);
        }
    }

    #[test]
    fn duplicates_are_ignored_and_recent_sets_suppressed() {
        let cap = 100;
        let mut r = rng();
        let now = Instant::now();
        let (m, frags) = fragments_of(&mut r, 500, cap);
        let mut re = Reassembler::default();
        let first = re.insert(frags[0].clone(), now).expect("insert");
        assert_eq!(first.outcome, InsertOutcome::Buffered);
        let dup = re.insert(frags[0].clone(), now).expect("insert");
        assert_eq!(dup.outcome, InsertOutcome::Duplicate);
        let out = feed(&mut re, frags[1..].to_vec(), now);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].clone().into_message(), Ok(m));
        let set_id = frags[0].set_id();
        assert!(re.recently_completed(set_id));
        for f in frags {
            assert_eq!(
                re.insert(f, now).expect("insert").outcome,
                InsertOutcome::Duplicate
            );
        }
        assert_eq!(re.buffered_sets(), 0);
    }

    #[test]
    fn sets_completed_before_a_restart_are_duplicates_after_it() {
        let cap = 100;
        let mut r = rng();
        let now = Instant::now();
        let (_, frags) = fragments_of(&mut r, 500, cap);
        let mut before = Reassembler::default();
        let done = feed(&mut before, frags.clone(), now);
        assert_eq!(done.len(), 1);
        // A new reassembler told what the old one completed ignores the
        // sender's retransmission of the whole set.
        let mut after = Reassembler::default();
        for id in &done[0].set_ids {
            after.remember_completed(*id);
        }
        for f in frags {
            assert_eq!(
                after.insert(f, now).expect("insert").outcome,
                InsertOutcome::Duplicate
            );
        }
    }

    #[test]
    fn recent_set_memory_is_bounded() {
        let cap = 100;
        let mut r = rng();
        let now = Instant::now();
        let mut re = Reassembler::new(ReassemblyConfig {
            recently_completed: 3,
            ..ReassemblyConfig::default()
        });
        let mut ids = Vec::new();
        for _ in 0..5 {
            let (_, frags) = fragments_of(&mut r, 10, cap);
            ids.push(frags[0].set_id());
            assert_eq!(feed(&mut re, frags, now).len(), 1);
        }
        assert!(!re.recently_completed(ids[0]));
        assert!(!re.recently_completed(ids[1]));
        assert!(ids[2..].iter().all(|&id| re.recently_completed(id)));
    }

    #[test]
    fn inconsistent_total_is_rejected() {
        let now = Instant::now();
        let mut re = Reassembler::default();
        let a = Fragment::from_bytes(&[0x80, 0, 0, 9, 3, 1, 0, 7, 7]).expect("frag");
        let b = Fragment::from_bytes(&[0x80, 0, 0, 9, 4, 4, 0, 7]).expect("frag");
        assert_eq!(
            re.insert(a, now).expect("insert").outcome,
            InsertOutcome::Buffered
        );
        assert_eq!(
            re.insert(b, now),
            Err(ReassemblyError::InconsistentTotal {
                set_id: 9,
                expected: 3,
                got: 4
            })
        );
    }

    #[test]
    fn hostile_link_cycle_does_not_hang() {
        let now = Instant::now();
        let mut re = Reassembler::default();
        // Two one-fragment sets, each claiming the other as its previous set.
        let a = Fragment::from_bytes(&[0x80, 0, 0, 1, 1, 1, 0x80, 0, 0, 2, 5]).expect("frag");
        let b = Fragment::from_bytes(&[0x80, 0, 0, 2, 1, 1, 0x80, 0, 0, 1, 6]).expect("frag");
        assert_eq!(
            re.insert(a, now).expect("insert").outcome,
            InsertOutcome::Buffered
        );
        assert_eq!(
            re.insert(b, now).expect("insert").outcome,
            InsertOutcome::Buffered
        );
        // A 255-set ring linked forwards is also bounded.
        let mut re = Reassembler::default();
        let mut ring = Vec::new();
        for id in 1..=2i32 {
            let other = 3 - id;
            for pos in 1..=255u8 {
                let h = if pos == 1 {
                    hdr(id, 255, 1, Some(other), None)
                } else if pos == 255 {
                    hdr(id, 255, 255, None, Some(other))
                } else {
                    hdr(id, 255, pos, None, None)
                }
                .expect("header");
                let mut b = h.to_bytes();
                b.push(pos);
                ring.push(Fragment::from_bytes(&b).expect("frag"));
            }
        }
        assert!(feed(&mut re, ring, now).is_empty());
    }

    #[test]
    fn memory_bound_evicts_oldest() {
        let cap = 100;
        let per = unlinked_payload_len(cap);
        let charged = per + FRAGMENT_ACCOUNTING_OVERHEAD;
        let mut r = rng();
        let t0 = Instant::now();
        let mut re = Reassembler::new(ReassemblyConfig {
            max_buffered_bytes: 5 * charged,
            ..ReassemblyConfig::default()
        });
        // Three incomplete messages of 3 fragments; feed 2 of each.
        let msgs: Vec<_> = (0..3)
            .map(|_| fragments_of(&mut r, 2 * per + 10, cap))
            .collect();
        let mut evicted = Vec::new();
        for (i, (_, f)) in msgs.iter().enumerate() {
            for frag in &f[..2] {
                let t = t0 + Duration::from_secs(i as u64);
                evicted.extend(re.insert(frag.clone(), t).expect("insert").evicted);
            }
        }
        assert!(re.buffered_bytes() <= 5 * charged);
        assert_eq!(evicted.len(), 1);
        assert_eq!(evicted[0].set_id, msgs[0].1[0].set_id());
        assert_eq!(evicted[0].reason, DropReason::OverLimit);
        assert_eq!(evicted[0].received, 2);
        // The newer messages still complete.
        for (m, f) in &msgs[1..] {
            let out = feed(&mut re, f[2..].to_vec(), t0);
            assert_eq!(out.len(), 1);
            assert_eq!(out[0].clone().into_message().as_ref(), Ok(m));
        }
        assert_eq!(re.buffered_bytes(), 0);
        // A fragment bigger than the whole bound is refused.
        let mut tiny = Reassembler::new(ReassemblyConfig {
            max_buffered_bytes: 4,
            ..ReassemblyConfig::default()
        });
        assert!(matches!(
            tiny.insert(msgs[0].1[0].clone(), t0),
            Err(ReassemblyError::TooLarge { .. })
        ));
    }

    #[test]
    fn set_count_bound_evicts_oldest() {
        let cap = 100;
        let mut r = rng();
        let t0 = Instant::now();
        let mut re = Reassembler::new(ReassemblyConfig {
            max_sets: 2,
            ..ReassemblyConfig::default()
        });
        let msgs: Vec<_> = (0..3).map(|_| fragments_of(&mut r, 300, cap)).collect();
        let mut evicted = Vec::new();
        for (_, f) in &msgs {
            evicted.extend(re.insert(f[0].clone(), t0).expect("insert").evicted);
        }
        assert_eq!(re.buffered_sets(), 2);
        assert_eq!(evicted.len(), 1);
        assert_eq!(evicted[0].set_id, msgs[0].1[0].set_id());
    }

    #[test]
    fn purge_drops_stale_buffers() {
        let cap = 100;
        let mut r = rng();
        let t0 = Instant::now();
        let mut re = Reassembler::default();
        let (_, a) = fragments_of(&mut r, 300, cap);
        let (mb, b) = fragments_of(&mut r, 300, cap);
        re.insert(a[0].clone(), t0).expect("insert");
        re.insert(b[0].clone(), t0 + Duration::from_secs(600))
            .expect("insert");
        assert!(re.purge(t0 + Duration::from_secs(29 * 60)).is_empty());
        let dropped = re.purge(t0 + ReassemblyConfig::DEFAULT_TIMEOUT);
        assert_eq!(dropped.len(), 1);
        assert_eq!(dropped[0].set_id, a[0].set_id());
        assert_eq!(dropped[0].reason, DropReason::TimedOut);
        assert_eq!(re.buffered_sets(), 1);
        let out = feed(&mut re, b[1..].to_vec(), t0 + Duration::from_secs(1200));
        assert_eq!(out[0].clone().into_message(), Ok(mb));
        assert_eq!(re.buffered_bytes(), 0);
    }

    #[test]
    fn regular_message_spanning_linked_sets() {
        // > 255 regular fragments: two linked sets.
        let cap = PacketSize::Regular.fragment_capacity();
        let mut r = rng();
        let (m, mut frags) = fragments_of(&mut r, one_way_linked_set_len(cap) + 5000, cap);
        assert_eq!(frags.len(), 255 + 4);
        assert!(frags.iter().all(|f| f.to_bytes().len() == cap));
        frags.shuffle(&mut r);
        let mut re = Reassembler::default();
        let out = feed(&mut re, frags, Instant::now());
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].set_ids.len(), 2);
        assert_eq!(out[0].clone().into_message(), Ok(m));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn round_trip_with_shuffle_and_duplicates(
            len in 0usize..12_000,
            cap in prop_oneof![Just(20usize), Just(64), Just(300)],
            seed in any::<[u8; 32]>(),
        ) {
            let mut r = ChaCha20Rng::from_seed(seed);
            let (m, frags) = fragments_of(&mut r, len, cap);
            let padded_len = m.pad(cap).expect("pad").as_bytes().len();
            prop_assert_eq!(
                frags.len(),
                number_of_required_fragments(m.serialized_len() + 1, cap).0
            );
            prop_assert!(frags.iter().all(|f| f.to_bytes().len() == cap));
            // Duplicate a third of the fragments, shuffle, feed as bytes.
            let mut wire: Vec<Vec<u8>> = frags.iter().map(Fragment::to_bytes).collect();
            let dups: Vec<Vec<u8>> = wire.iter().step_by(3).cloned().collect();
            wire.extend(dups);
            wire.shuffle(&mut r);
            let mut re = Reassembler::default();
            let mut done = Vec::new();
            for w in &wire {
                if let InsertOutcome::Complete(msg) = re.insert_bytes(w, Instant::now()).expect("insert").outcome {
                    done.push(msg);
                }
            }
            prop_assert_eq!(done.len(), 1);
            prop_assert_eq!(done[0].data.len(), padded_len);
            prop_assert_eq!(done[0].set_ids.len(), total_number_of_sets(padded_len, cap));
            prop_assert_eq!(done[0].clone().into_message(), Ok(m));
            prop_assert_eq!(re.buffered_bytes(), 0);
        }

        #[test]
        fn message_kinds_round_trip(
            kind in 0u8..4,
            data in proptest::collection::vec(any::<u8>(), 0..3000),
            amount in any::<u32>(),
            seed in any::<[u8; 32]>(),
        ) {
            let m = match kind {
                0 => NymMessage::Plain(data),
                1 => NymMessage::Reply(ReplyMessage::Data(data)),
                2 => NymMessage::Repliable(RepliableMessage::new_data(
                    crate::SenderTag(seed[..16].try_into().expect("16 bytes")),
                    data,
                    vec![],
                )),
                _ => NymMessage::Reply(ReplyMessage::SurbRequest {
                    recipient: Box::new(crate::Recipient::new(
                        crate::keys::IdentityKeyPair::from_secret_bytes(&seed).public(),
                        crate::keys::X25519Public::from(seed),
                        crate::keys::IdentityKeyPair::from_secret_bytes(&[9; 32]).public(),
                    )),
                    amount,
                }),
            };
            let cap = PacketSize::Regular.fragment_capacity();
            let mut r = ChaCha20Rng::from_seed(seed);
            let frags = m.pad(cap).expect("pad").split_into_fragments(&mut r, cap).expect("split");
            prop_assert_eq!(frags.len(), m.required_packets(PacketSize::Regular));
            let mut re = Reassembler::default();
            let out = feed(&mut re, frags, Instant::now());
            prop_assert_eq!(out.len(), 1);
            prop_assert_eq!(out[0].clone().into_message(), Ok(m));
        }

        #[test]
        fn parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = Fragment::from_bytes(&bytes);
            let _ = NymMessage::from_bytes(&bytes);
            let _ = PaddedMessage::new(bytes.clone()).unpad();
            let mut re = Reassembler::default();
            let _ = re.insert_bytes(&bytes, Instant::now());
        }

        #[test]
        fn reassembler_survives_random_fragments(
            frags in proptest::collection::vec(
                (1i32..4, 1u8..4, 1u8..4, any::<Option<bool>>(), 1i32..4, 0usize..8),
                0..60,
            )
        ) {
            let mut re = Reassembler::new(ReassemblyConfig {
                max_buffered_bytes: 3 * FRAGMENT_ACCOUNTING_OVERHEAD,
                max_sets: 2,
                ..ReassemblyConfig::default()
            });
            let now = Instant::now();
            for (id, total, current, link, link_id, len) in frags {
                let mut b = Vec::new();
                b.extend_from_slice(&(id as u32 | 0x8000_0000).to_be_bytes());
                b.push(total);
                b.push(current);
                match link {
                    None => b.push(0),
                    Some(_) => b.extend_from_slice(&(link_id as u32 | 0x8000_0000).to_be_bytes()),
                }
                b.extend(std::iter::repeat_n(7u8, len));
                let _ = re.insert_bytes(&b, now);
                prop_assert!(re.buffered_bytes() <= 3 * FRAGMENT_ACCOUNTING_OVERHEAD);
                prop_assert!(re.buffered_sets() <= 2);
            }
        }
    }
}
