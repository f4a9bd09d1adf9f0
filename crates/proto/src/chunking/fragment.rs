//! Fragments: the header layout and the fragment (header and payload).

use super::capacity::{linked_payload_len, unlinked_payload_len};
use super::{ChunkingError, LINKED_HEADER_LEN, MAX_FRAGMENTS_PER_SET, UNLINKED_HEADER_LEN};
use crate::params::FragmentId;

const FLAG_BIT: u32 = 0x8000_0000;

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
