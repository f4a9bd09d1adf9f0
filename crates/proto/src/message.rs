//! The end-to-end message: its framing and its padding.
//!
//! A [`NymMessage`] is serialised as `type tag || body`, then padded with a
//! single `0x01` and zeros so that it fills a whole number of *full*
//! fragments ([`PaddedMessage`]). [`crate::chunking`] cuts the padded bytes
//! into fragments and puts them back together; the bodies of repliable and
//! reply messages are in [`crate::replies`].

use rand::Rng;

use crate::chunking::{
    number_of_required_fragments, split_into_sets, ChunkingError, Fragment, ReassembledMessage,
    MIN_FRAGMENT_CAPACITY,
};
use crate::params::PacketSize;
use crate::replies::{RepliableMessage, ReplyError, ReplyMessage};

/// Bytes of padding every padded message carries at least (the `0x01`).
pub const MIN_PADDING_OVERHEAD: usize = 1;

/// Message type tag of a plain message.
pub const MESSAGE_TAG_PLAIN: u8 = 0;
/// Message type tag of a repliable message.
pub const MESSAGE_TAG_REPLIABLE: u8 = 1;
/// Message type tag of a reply.
pub const MESSAGE_TAG_REPLY: u8 = 2;

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

// Turning reassembled bytes back into a message belongs to the message, not
// to the fragments, so this method of a chunking type is defined here.
impl ReassembledMessage {
    /// Un-pad and parse.
    pub fn into_message(self) -> Result<NymMessage, MessageError> {
        PaddedMessage(self.data).unpad()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    use super::*;
    use crate::chunking::tests::{feed, random_bytes, rng};
    use crate::chunking::{
        linked_payload_len, one_way_linked_set_len, unlinked_payload_len, InsertOutcome,
        Reassembler,
    };
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

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

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
    }
}
