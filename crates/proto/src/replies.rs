//! Reply SURBs and the bodies of repliable (tag 1) and reply (tag 2) messages.
//!
//! A [`ReplySurb`] is `surb_encryption_key(16) || SURB`, where the SURB is
//! `sphinx header(348) || first hop(32) || key material`: 16-byte seeds per hop
//! for Sphinx version 259 (396 + 16·hops bytes in all, 460 for 4 hops) or
//! 192-byte payload keys per hop for version 258 (1164 bytes for 4 hops).
//!
//! Repliable body: `sender_tag(16) || content_tag(1) || content`, content tags
//! 0 DataV1, 1 AdditionalSurbsV1, 2 HeartbeatV1, 3 DataV2, 4
//! AdditionalSurbsV2, 5 HeartbeatV2. V1 SURB list: `count u32 BE || count ×
//! 1164 bytes`. V2 list: `count u16 BE || hops u8 || key_rotation u8 || count ×
//! (396 + 16·hops)`. Data variants append the message after the list.
//!
//! Reply body: `content_tag(1) || …`; 0 Data (the bytes), 1 SurbRequest
//! (`recipient(96) || amount u32 BE`).

use std::time::Duration;

use rand::{CryptoRng, RngCore};
use sphinx_packet::header::delays::Delay;
use sphinx_packet::route::{Destination, DestinationAddressBytes, Node};
use sphinx_packet::{SURBMaterial, SURB};
use zeroize::Zeroize;

use crate::address::{NodeAddress, NodeAddressError, Recipient, RecipientError, SenderTag};
use crate::keys::{VerifyingKey, X25519Secret};
use crate::params::{KeyRotation, KeyRotationError, PacketSize, SphinxVersion, HEADER_SIZE};

/// Length of a reply SURB's payload encryption key.
pub const SURB_KEY_SIZE: usize = 16;
/// Length of the BLAKE3 digest that names a reply key in a reply packet.
pub const SURB_KEY_DIGEST_SIZE: usize = 32;
/// Length of a SURB's first-hop address field.
pub const SURB_FIRST_HOP_SIZE: usize = 32;
/// Bytes of a reply SURB before its key material: key 16 + header 348 +
/// first hop 32.
pub const REPLY_SURB_BASE_LEN: usize = SURB_KEY_SIZE + HEADER_SIZE + SURB_FIRST_HOP_SIZE;
/// Per-hop payload key of a version-258 SURB.
pub const PAYLOAD_KEY_SIZE: usize = 192;
/// Per-hop payload key seed of a version-259 SURB.
pub const PAYLOAD_KEY_SEED_SIZE: usize = 16;
/// Hops of every SURB in a V1 list (fixed by its format).
pub const V1_SURB_HOPS: usize = 4;
/// Serialised length of a reply SURB in a V1 list: 1164.
pub const V1_REPLY_SURB_LEN: usize = REPLY_SURB_BASE_LEN + V1_SURB_HOPS * PAYLOAD_KEY_SIZE;
/// Hops of a default reply SURB: three mixes and the creator's gateway.
pub const DEFAULT_SURB_HOPS: u8 = 4;
/// Most hops a Sphinx route can have.
pub const MAX_SURB_HOPS: usize = 5;
/// Most SURBs accepted in (or written to) one list. The V2 count field is a
/// u16; the same cap applies to V1 lists so a hostile count cannot make us
/// reserve much.
pub const MAX_SURBS_PER_LIST: usize = u16::MAX as usize;
/// Length of a sender tag.
pub const SENDER_TAG_SIZE: usize = SenderTag::LEN;

/// Serialised length of a version-259 reply SURB with `hops` hops (460 for 4).
pub const fn v2_reply_surb_len(hops: u8) -> usize {
    REPLY_SURB_BASE_LEN + hops as usize * PAYLOAD_KEY_SEED_SIZE
}

// ---------------------------------------------------------------------------
// SURB encryption key
// ---------------------------------------------------------------------------

/// The 16-byte AES-128 key the replier encrypts its reply fragment with. The
/// SURB creator keeps it, indexed by [`SurbEncryptionKey::digest`].
#[derive(Clone, PartialEq, Eq)]
pub struct SurbEncryptionKey([u8; SURB_KEY_SIZE]);

impl std::fmt::Debug for SurbEncryptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SurbEncryptionKey(..)")
    }
}

impl Drop for SurbEncryptionKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl SurbEncryptionKey {
    /// A fresh random key.
    pub fn new<R: RngCore + CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut k = [0u8; SURB_KEY_SIZE];
        rng.fill_bytes(&mut k);
        Self(k)
    }

    /// From raw bytes.
    pub fn from_bytes(bytes: [u8; SURB_KEY_SIZE]) -> Self {
        Self(bytes)
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; SURB_KEY_SIZE] {
        &self.0
    }

    /// BLAKE3 of the key: what a reply packet carries so the creator can find
    /// the key.
    pub fn digest(&self) -> [u8; SURB_KEY_DIGEST_SIZE] {
        *blake3::hash(&self.0).as_bytes()
    }
}

// ---------------------------------------------------------------------------
// Reply SURB
// ---------------------------------------------------------------------------

/// Problems building, parsing or using a reply SURB.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ReplySurbError {
    /// Not even a key and one byte.
    #[error("reply SURB of {0} bytes is too short")]
    TooShort(usize),
    /// The SURB part was rejected by the sphinx crate.
    #[error("malformed SURB: {0}")]
    Sphinx(String),
    /// The first-hop field does not hold a node address.
    #[error("SURB first hop is not a node address: {0}")]
    FirstHop(#[from] NodeAddressError),
    /// A route of the wrong length.
    #[error("SURB route has {0} hops (1..=5 allowed)")]
    RouteLength(usize),
    /// Not one delay per hop.
    #[error("SURB route has {hops} hops but {delays} delays were given")]
    DelayCount {
        /// Route length.
        hops: usize,
        /// Delays given.
        delays: usize,
    },
    /// The plaintext is not exactly the packet's plaintext size.
    #[error("reply plaintext has {got} bytes, the packet needs exactly {expected}")]
    PlaintextLength {
        /// Bytes given.
        got: usize,
        /// Bytes needed.
        expected: usize,
    },
}

fn sphinx_err(e: sphinx_packet::Error) -> ReplySurbError {
    ReplySurbError::Sphinx(e.to_string())
}

/// Delays for a route of `hops` nodes, each drawn from an exponential
/// distribution with the given mean and rounded to whole nanoseconds. A zero
/// mean gives zero delays.
pub fn sample_delays<R: RngCore + ?Sized>(rng: &mut R, hops: usize, mean: Duration) -> Vec<Delay> {
    crate::sphinx::sample_delays(rng, mean, hops)
        .into_iter()
        .map(|d| Delay::new_from_nanos(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)))
        .collect()
}

/// A single-use reply block together with the key for the reply's payload.
///
/// Stored in serialised form (cheap to clone, compare and persist); the
/// sphinx SURB is parsed again when it is used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplySurb {
    key: SurbEncryptionKey,
    surb: Vec<u8>,
    first_hop: NodeAddress,
    uses_seeds: bool,
    hops: usize,
    key_rotation: KeyRotation,
}

impl ReplySurb {
    /// Build a SURB over `route` (three mixes then the creator's own gateway,
    /// as sphinx nodes with 32-byte zero-padded routing addresses), addressed
    /// to the creator's ed25519 `identity` (identifier all zero), with one
    /// delay per hop (the last is not embedded), in the given Sphinx version.
    pub fn build<R: RngCore + CryptoRng + ?Sized>(
        rng: &mut R,
        route: &[Node],
        identity: &VerifyingKey,
        delays: &[Delay],
        version: SphinxVersion,
    ) -> Result<Self, ReplySurbError> {
        if route.is_empty() || route.len() > MAX_SURB_HOPS {
            return Err(ReplySurbError::RouteLength(route.len()));
        }
        if delays.len() != route.len() {
            return Err(ReplySurbError::DelayCount {
                hops: route.len(),
                delays: delays.len(),
            });
        }
        let (first_hop, first_hop_bytes) = match route.first() {
            Some(n) => (NodeAddress::read(n.address.as_bytes())?.0, n.address),
            None => return Err(ReplySurbError::RouteLength(0)),
        };
        let destination = Destination::new(
            DestinationAddressBytes::from_bytes(identity.to_bytes()),
            [0u8; 16],
        );
        if crate::sphinx::sender_derivation() == crate::sphinx::SenderDerivation::Fast {
            // The same bytes as `SURB::new(..).to_bytes()`: header, first
            // hop's address, then the payload key material of the version.
            let hops: Vec<_> = route
                .iter()
                .map(|n| (n.address, n.pub_key.to_bytes()))
                .collect();
            let nanos: Vec<u64> = delays.iter().map(|d| d.to_nanos()).collect();
            let (header, derived) =
                crate::sphinx::fast_header(rng, version, &hops, &destination, &nanos)
                    .map_err(|e| ReplySurbError::Sphinx(e.to_string()))?;
            let mut surb = Vec::with_capacity(header.len() + 32 + 192 * route.len());
            surb.extend_from_slice(&header);
            surb.extend_from_slice(first_hop_bytes.as_bytes());
            let uses_seeds = version.number() >= crate::params::SPHINX_VERSION_259;
            for e in &derived.expanded {
                if uses_seeds {
                    surb.extend_from_slice(&e.payload_key_seed());
                } else {
                    surb.extend_from_slice(&e.legacy_payload_key());
                }
            }
            return Ok(Self {
                key: SurbEncryptionKey::new(rng),
                uses_seeds,
                hops: route.len(),
                surb,
                first_hop,
                key_rotation: KeyRotation::Unknown,
            });
        }
        let material = SURBMaterial::new(route.to_vec(), delays.to_vec(), destination)
            .with_version(version.to_sphinx());
        let mut secret_bytes = [0u8; 32];
        rng.fill_bytes(&mut secret_bytes);
        let secret = X25519Secret::from(secret_bytes);
        secret_bytes.zeroize();
        let surb = SURB::new(secret, material).map_err(sphinx_err)?;
        Ok(Self {
            key: SurbEncryptionKey::new(rng),
            uses_seeds: surb.uses_key_seeds(),
            hops: surb.materials_count(),
            surb: surb.to_bytes(),
            first_hop,
            key_rotation: KeyRotation::Unknown,
        })
    }

    /// As [`ReplySurb::build`], with delays sampled around `mean_delay`.
    pub fn build_with_mean_delay<R: RngCore + CryptoRng + ?Sized>(
        rng: &mut R,
        route: &[Node],
        identity: &VerifyingKey,
        mean_delay: Duration,
        version: SphinxVersion,
    ) -> Result<Self, ReplySurbError> {
        let delays = sample_delays(rng, route.len(), mean_delay);
        Self::build(rng, route, identity, &delays, version)
    }

    /// Parse `key(16) || SURB`. The key material's total length decides its
    /// kind, as in sphinx-packet: below 192 bytes it must be whole 16-byte
    /// seeds, otherwise whole 192-byte keys. The first hop must be a node
    /// address.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ReplySurbError> {
        if bytes.len() <= SURB_KEY_SIZE {
            return Err(ReplySurbError::TooShort(bytes.len()));
        }
        let (key, rest) = bytes.split_at(SURB_KEY_SIZE);
        let mut k = [0u8; SURB_KEY_SIZE];
        k.copy_from_slice(key);
        let surb = SURB::from_bytes(rest).map_err(sphinx_err)?;
        let first_hop = NodeAddress::read(surb.first_hop().as_bytes())?.0;
        Ok(Self {
            key: SurbEncryptionKey(k),
            surb: rest.to_vec(),
            first_hop,
            uses_seeds: surb.uses_key_seeds(),
            hops: surb.materials_count(),
            key_rotation: KeyRotation::Unknown,
        })
    }

    /// `key(16) || SURB`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.serialized_len());
        self.write_to(&mut out);
        out
    }

    fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.key.as_bytes());
        out.extend_from_slice(&self.surb);
    }

    /// Serialised length.
    pub fn serialized_len(&self) -> usize {
        SURB_KEY_SIZE + self.surb.len()
    }

    /// The reply payload key.
    pub fn encryption_key(&self) -> &SurbEncryptionKey {
        &self.key
    }

    /// BLAKE3 digest of the reply payload key.
    pub fn key_digest(&self) -> [u8; SURB_KEY_DIGEST_SIZE] {
        self.key.digest()
    }

    /// The node the reply packet must be sent to first.
    pub fn first_hop(&self) -> NodeAddress {
        self.first_hop
    }

    /// Whether the SURB carries 16-byte seeds (version 259) rather than
    /// 192-byte keys (version 258).
    pub fn uses_key_seeds(&self) -> bool {
        self.uses_seeds
    }

    /// Number of hops (key seeds or keys) in the SURB.
    pub fn hops(&self) -> usize {
        self.hops
    }

    /// Key-rotation parity remembered with the SURB (from its V2 list; Unknown
    /// for V1 lists and fresh SURBs).
    pub fn key_rotation(&self) -> KeyRotation {
        self.key_rotation
    }

    /// Set the key-rotation parity (the topology's, when the SURB is built).
    pub fn with_key_rotation(mut self, key_rotation: KeyRotation) -> Self {
        self.key_rotation = key_rotation;
        self
    }

    /// Use the SURB on a reply plaintext of exactly `size.plaintext_size()`
    /// bytes (`SURB-ACK || key digest || encrypted fragment`). Returns the
    /// sphinx packet bytes and the first hop to send them to.
    pub fn apply(
        self,
        plaintext: &[u8],
        size: PacketSize,
    ) -> Result<(Vec<u8>, NodeAddress), ReplySurbError> {
        if plaintext.len() != size.plaintext_size() {
            return Err(ReplySurbError::PlaintextLength {
                got: plaintext.len(),
                expected: size.plaintext_size(),
            });
        }
        let surb = SURB::from_bytes(&self.surb).map_err(sphinx_err)?;
        let (packet, first_hop) = surb
            .use_surb(plaintext, size.payload_size())
            .map_err(sphinx_err)?;
        let first_hop = NodeAddress::read(first_hop.as_bytes())?.0;
        Ok((packet.to_bytes(), first_hop))
    }
}

// ---------------------------------------------------------------------------
// Message bodies
// ---------------------------------------------------------------------------

/// Problems with repliable and reply message bodies.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ReplyError {
    /// Not enough bytes for the named part.
    #[error("message too short to read its {0}")]
    TooShort(&'static str),
    /// Unknown repliable content tag.
    #[error("{0} is not a valid content tag for a repliable message")]
    UnknownRepliableTag(u8),
    /// Unknown reply content tag.
    #[error("{0} is not a valid content tag for a reply message")]
    UnknownReplyTag(u8),
    /// Bad key-rotation byte in a V2 list.
    #[error(transparent)]
    KeyRotation(#[from] KeyRotationError),
    /// Bad recipient in a SURB request.
    #[error("malformed recipient in SURB request: {0}")]
    Recipient(#[from] RecipientError),
    /// A SURB request body that is not exactly 100 bytes.
    #[error("SURB request body has {0} bytes, expected 100")]
    SurbRequestLength(usize),
    /// A SURB inside a list is malformed.
    #[error("malformed reply SURB {index} in list: {source}")]
    Surb {
        /// Position in the list.
        index: usize,
        /// What was wrong.
        source: ReplySurbError,
    },
    /// A list count above [`MAX_SURBS_PER_LIST`].
    #[error("{count} reply SURBs in one list (at most {max})")]
    TooManySurbs {
        /// Count given.
        count: usize,
        /// Cap.
        max: usize,
    },
    /// A SURB that does not fit the list format it is being written into
    /// (V1 needs 4-hop version-258 SURBs; V2 needs version-259 SURBs that all
    /// have the same number of hops).
    #[error("reply SURB {index} does not fit a {format} list")]
    SurbFormat {
        /// Position in the list.
        index: usize,
        /// "V1" or "V2".
        format: &'static str,
    },
}

/// Content tag of [`RepliableContent::DataV1`].
pub const CONTENT_DATA_V1: u8 = 0;
/// Content tag of [`RepliableContent::AdditionalSurbsV1`].
pub const CONTENT_ADDITIONAL_SURBS_V1: u8 = 1;
/// Content tag of [`RepliableContent::HeartbeatV1`].
pub const CONTENT_HEARTBEAT_V1: u8 = 2;
/// Content tag of [`RepliableContent::DataV2`].
pub const CONTENT_DATA_V2: u8 = 3;
/// Content tag of [`RepliableContent::AdditionalSurbsV2`].
pub const CONTENT_ADDITIONAL_SURBS_V2: u8 = 4;
/// Content tag of [`RepliableContent::HeartbeatV2`].
pub const CONTENT_HEARTBEAT_V2: u8 = 5;
/// Reply content tag of [`ReplyMessage::Data`].
pub const REPLY_DATA: u8 = 0;
/// Reply content tag of [`ReplyMessage::SurbRequest`].
pub const REPLY_SURB_REQUEST: u8 = 1;

/// The two SURB list encodings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SurbListFormat {
    /// `count u32 BE || count × 1164`: 4-hop version-258 SURBs.
    V1,
    /// `count u16 BE || hops || key_rotation || count × (396 + 16·hops)`:
    /// version-259 SURBs.
    V2,
}

impl SurbListFormat {
    /// The list format that goes with SURBs of a Sphinx version.
    pub fn for_version(version: SphinxVersion) -> Self {
        match version {
            SphinxVersion::Legacy258 => SurbListFormat::V1,
            SphinxVersion::Seeds259 => SurbListFormat::V2,
        }
    }

    /// The format matching a list of SURBs: V1 when they carry full keys, V2
    /// when they carry seeds or the list is empty.
    pub fn for_surbs(surbs: &[ReplySurb]) -> Self {
        match surbs.first() {
            Some(s) if !s.uses_key_seeds() => SurbListFormat::V1,
            _ => SurbListFormat::V2,
        }
    }
}

fn list_len(surbs: &[ReplySurb]) -> usize {
    4 + surbs.iter().map(ReplySurb::serialized_len).sum::<usize>()
}

fn write_list(
    format: SurbListFormat,
    surbs: &[ReplySurb],
    out: &mut Vec<u8>,
) -> Result<(), ReplyError> {
    if surbs.len() > MAX_SURBS_PER_LIST {
        return Err(ReplyError::TooManySurbs {
            count: surbs.len(),
            max: MAX_SURBS_PER_LIST,
        });
    }
    match format {
        SurbListFormat::V1 => {
            if let Some(index) = surbs
                .iter()
                .position(|s| s.serialized_len() != V1_REPLY_SURB_LEN || s.uses_key_seeds())
            {
                return Err(ReplyError::SurbFormat {
                    index,
                    format: "V1",
                });
            }
            out.extend_from_slice(&(surbs.len() as u32).to_be_bytes());
        }
        SurbListFormat::V2 => {
            let hops = surbs.first().map_or(0, ReplySurb::hops);
            let rotation = surbs
                .first()
                .map_or(KeyRotation::Unknown, |s| s.key_rotation);
            let hops_u8 = u8::try_from(hops).ok();
            if let Some(index) = surbs.iter().position(|s| {
                !s.uses_key_seeds()
                    || s.hops() != hops
                    || hops_u8.is_none_or(|h| s.serialized_len() != v2_reply_surb_len(h))
            }) {
                return Err(ReplyError::SurbFormat {
                    index,
                    format: "V2",
                });
            }
            out.extend_from_slice(&(surbs.len() as u16).to_be_bytes());
            out.push(hops_u8.unwrap_or(0));
            out.push(rotation.to_byte());
        }
    }
    for s in surbs {
        s.write_to(out);
    }
    Ok(())
}

/// Parse a SURB list at the start of `b`; returns the SURBs and the bytes
/// used.
fn parse_list(format: SurbListFormat, b: &[u8]) -> Result<(Vec<ReplySurb>, usize), ReplyError> {
    if b.len() < 4 {
        return Err(ReplyError::TooShort("reply SURB list header"));
    }
    let (count, surb_len, rotation) = match format {
        SurbListFormat::V1 => (
            u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize,
            V1_REPLY_SURB_LEN,
            KeyRotation::Unknown,
        ),
        SurbListFormat::V2 => (
            usize::from(u16::from_be_bytes([b[0], b[1]])),
            v2_reply_surb_len(b[2]),
            KeyRotation::from_byte(b[3])?,
        ),
    };
    if count > MAX_SURBS_PER_LIST {
        return Err(ReplyError::TooManySurbs {
            count,
            max: MAX_SURBS_PER_LIST,
        });
    }
    let body = &b[4..];
    let need = count
        .checked_mul(surb_len)
        .ok_or(ReplyError::TooShort("reply SURBs"))?;
    if body.len() < need {
        return Err(ReplyError::TooShort("reply SURBs"));
    }
    let surbs = body[..need]
        .chunks_exact(surb_len.max(1))
        .take(count)
        .enumerate()
        .map(|(index, chunk)| {
            ReplySurb::from_bytes(chunk)
                .map(|s| s.with_key_rotation(rotation))
                .map_err(|source| ReplyError::Surb { index, source })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((surbs, 4 + need))
}

/// What a repliable message carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepliableContent {
    /// Tag 0: V1 SURB list, then the message.
    DataV1 {
        /// Application data.
        message: Vec<u8>,
        /// Reply SURBs for the recipient.
        surbs: Vec<ReplySurb>,
    },
    /// Tag 1: V1 SURB list sent in answer to a SURB request.
    AdditionalSurbsV1 {
        /// Reply SURBs.
        surbs: Vec<ReplySurb>,
    },
    /// Tag 2: V1 SURB list sent unprompted.
    HeartbeatV1 {
        /// Reply SURBs.
        surbs: Vec<ReplySurb>,
    },
    /// Tag 3: V2 SURB list, then the message.
    DataV2 {
        /// Application data.
        message: Vec<u8>,
        /// Reply SURBs for the recipient.
        surbs: Vec<ReplySurb>,
    },
    /// Tag 4: V2 SURB list sent in answer to a SURB request.
    AdditionalSurbsV2 {
        /// Reply SURBs.
        surbs: Vec<ReplySurb>,
    },
    /// Tag 5: V2 SURB list sent unprompted.
    HeartbeatV2 {
        /// Reply SURBs.
        surbs: Vec<ReplySurb>,
    },
}

impl RepliableContent {
    /// The content tag byte.
    pub fn tag(&self) -> u8 {
        match self {
            RepliableContent::DataV1 { .. } => CONTENT_DATA_V1,
            RepliableContent::AdditionalSurbsV1 { .. } => CONTENT_ADDITIONAL_SURBS_V1,
            RepliableContent::HeartbeatV1 { .. } => CONTENT_HEARTBEAT_V1,
            RepliableContent::DataV2 { .. } => CONTENT_DATA_V2,
            RepliableContent::AdditionalSurbsV2 { .. } => CONTENT_ADDITIONAL_SURBS_V2,
            RepliableContent::HeartbeatV2 { .. } => CONTENT_HEARTBEAT_V2,
        }
    }

    /// The list format of this variant.
    pub fn list_format(&self) -> SurbListFormat {
        match self {
            RepliableContent::DataV1 { .. }
            | RepliableContent::AdditionalSurbsV1 { .. }
            | RepliableContent::HeartbeatV1 { .. } => SurbListFormat::V1,
            _ => SurbListFormat::V2,
        }
    }

    /// The attached SURBs.
    pub fn surbs(&self) -> &[ReplySurb] {
        match self {
            RepliableContent::DataV1 { surbs, .. }
            | RepliableContent::AdditionalSurbsV1 { surbs }
            | RepliableContent::HeartbeatV1 { surbs }
            | RepliableContent::DataV2 { surbs, .. }
            | RepliableContent::AdditionalSurbsV2 { surbs }
            | RepliableContent::HeartbeatV2 { surbs } => surbs,
        }
    }

    /// The application data (empty for SURB-only variants).
    pub fn data(&self) -> &[u8] {
        match self {
            RepliableContent::DataV1 { message, .. } | RepliableContent::DataV2 { message, .. } => {
                message
            }
            _ => &[],
        }
    }

    /// Take the application data (empty for SURB-only variants).
    pub fn into_data(self) -> Vec<u8> {
        match self {
            RepliableContent::DataV1 { message, .. } | RepliableContent::DataV2 { message, .. } => {
                message
            }
            _ => Vec::new(),
        }
    }

    /// Take the SURBs and the data.
    pub fn into_parts(self) -> (Vec<ReplySurb>, Vec<u8>) {
        match self {
            RepliableContent::DataV1 { message, surbs }
            | RepliableContent::DataV2 { message, surbs } => (surbs, message),
            RepliableContent::AdditionalSurbsV1 { surbs }
            | RepliableContent::HeartbeatV1 { surbs }
            | RepliableContent::AdditionalSurbsV2 { surbs }
            | RepliableContent::HeartbeatV2 { surbs } => (surbs, Vec::new()),
        }
    }

    fn serialized_len(&self) -> usize {
        list_len(self.surbs()) + self.data().len()
    }

    fn write_to(&self, out: &mut Vec<u8>) -> Result<(), ReplyError> {
        write_list(self.list_format(), self.surbs(), out)?;
        out.extend_from_slice(self.data());
        Ok(())
    }

    fn parse(tag: u8, b: &[u8]) -> Result<Self, ReplyError> {
        let format = match tag {
            CONTENT_DATA_V1 | CONTENT_ADDITIONAL_SURBS_V1 | CONTENT_HEARTBEAT_V1 => {
                SurbListFormat::V1
            }
            CONTENT_DATA_V2 | CONTENT_ADDITIONAL_SURBS_V2 | CONTENT_HEARTBEAT_V2 => {
                SurbListFormat::V2
            }
            other => return Err(ReplyError::UnknownRepliableTag(other)),
        };
        let (surbs, used) = parse_list(format, b)?;
        // Trailing bytes after a SURB-only list are tolerated, as Nym does.
        let rest = || b.get(used..).unwrap_or_default().to_vec();
        Ok(match tag {
            CONTENT_DATA_V1 => RepliableContent::DataV1 {
                message: rest(),
                surbs,
            },
            CONTENT_ADDITIONAL_SURBS_V1 => RepliableContent::AdditionalSurbsV1 { surbs },
            CONTENT_HEARTBEAT_V1 => RepliableContent::HeartbeatV1 { surbs },
            CONTENT_DATA_V2 => RepliableContent::DataV2 {
                message: rest(),
                surbs,
            },
            CONTENT_ADDITIONAL_SURBS_V2 => RepliableContent::AdditionalSurbsV2 { surbs },
            _ => RepliableContent::HeartbeatV2 { surbs },
        })
    }
}

/// Body of a repliable message (type tag 1): from an anonymous sender, with
/// reply SURBs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepliableMessage {
    /// Names the anonymous sender to the recipient.
    pub sender_tag: SenderTag,
    /// What it carries.
    pub content: RepliableContent,
}

impl RepliableMessage {
    /// Data with SURBs; the list format follows the SURBs (V1 for
    /// version-258 SURBs, otherwise V2, which a stock 2026.9 client sends).
    pub fn new_data(sender_tag: SenderTag, message: Vec<u8>, surbs: Vec<ReplySurb>) -> Self {
        let content = match SurbListFormat::for_surbs(&surbs) {
            SurbListFormat::V1 => RepliableContent::DataV1 { message, surbs },
            SurbListFormat::V2 => RepliableContent::DataV2 { message, surbs },
        };
        Self {
            sender_tag,
            content,
        }
    }

    /// SURBs sent in answer to a request; format chosen as in
    /// [`RepliableMessage::new_data`].
    pub fn new_additional_surbs(sender_tag: SenderTag, surbs: Vec<ReplySurb>) -> Self {
        let content = match SurbListFormat::for_surbs(&surbs) {
            SurbListFormat::V1 => RepliableContent::AdditionalSurbsV1 { surbs },
            SurbListFormat::V2 => RepliableContent::AdditionalSurbsV2 { surbs },
        };
        Self {
            sender_tag,
            content,
        }
    }

    /// Length of the body.
    pub fn serialized_len(&self) -> usize {
        SENDER_TAG_SIZE + 1 + self.content.serialized_len()
    }

    /// `sender_tag || content_tag || content`. Fails if the SURBs do not fit
    /// the variant's list format or are too many.
    pub fn to_bytes(&self) -> Result<Vec<u8>, ReplyError> {
        let mut out = Vec::with_capacity(self.serialized_len());
        self.write_to(&mut out)?;
        Ok(out)
    }

    pub(crate) fn write_to(&self, out: &mut Vec<u8>) -> Result<(), ReplyError> {
        out.extend_from_slice(&self.sender_tag.0);
        out.push(self.content.tag());
        self.content.write_to(out)
    }

    /// Parse a body.
    pub fn from_bytes(b: &[u8]) -> Result<Self, ReplyError> {
        if b.len() < SENDER_TAG_SIZE + 1 {
            return Err(ReplyError::TooShort("sender tag and content tag"));
        }
        let mut tag = [0u8; SENDER_TAG_SIZE];
        tag.copy_from_slice(&b[..SENDER_TAG_SIZE]);
        let content = RepliableContent::parse(b[SENDER_TAG_SIZE], &b[SENDER_TAG_SIZE + 1..])?;
        Ok(Self {
            sender_tag: SenderTag(tag),
            content,
        })
    }
}

/// Body of a reply (type tag 2), sent through a reply SURB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyMessage {
    /// Content tag 0: application data.
    Data(Vec<u8>),
    /// Content tag 1: the replier asks the original sender for more SURBs.
    SurbRequest {
        /// The replier's own address (so the request can be answered).
        recipient: Box<Recipient>,
        /// How many SURBs it wants.
        amount: u32,
    },
}

impl ReplyMessage {
    /// The content tag byte.
    pub fn tag(&self) -> u8 {
        match self {
            ReplyMessage::Data(_) => REPLY_DATA,
            ReplyMessage::SurbRequest { .. } => REPLY_SURB_REQUEST,
        }
    }

    /// Length of the body.
    pub fn serialized_len(&self) -> usize {
        1 + match self {
            ReplyMessage::Data(d) => d.len(),
            ReplyMessage::SurbRequest { .. } => Recipient::LEN + 4,
        }
    }

    /// `content_tag || content`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.serialized_len());
        self.write_to(&mut out);
        out
    }

    pub(crate) fn write_to(&self, out: &mut Vec<u8>) {
        out.push(self.tag());
        match self {
            ReplyMessage::Data(d) => out.extend_from_slice(d),
            ReplyMessage::SurbRequest { recipient, amount } => {
                out.extend_from_slice(&recipient.to_bytes());
                out.extend_from_slice(&amount.to_be_bytes());
            }
        }
    }

    /// Parse a body. Empty data after tag 0 is accepted (Nym's parser rejects
    /// it, so do not send empty replies to Nym clients).
    pub fn from_bytes(b: &[u8]) -> Result<Self, ReplyError> {
        let (&tag, body) = b
            .split_first()
            .ok_or(ReplyError::TooShort("reply content tag"))?;
        match tag {
            REPLY_DATA => Ok(ReplyMessage::Data(body.to_vec())),
            REPLY_SURB_REQUEST => {
                if body.len() != Recipient::LEN + 4 {
                    return Err(ReplyError::SurbRequestLength(body.len()));
                }
                let recipient = Recipient::from_bytes(&body[..Recipient::LEN])?;
                let a = &body[Recipient::LEN..];
                Ok(ReplyMessage::SurbRequest {
                    recipient: Box::new(recipient),
                    amount: u32::from_be_bytes([a[0], a[1], a[2], a[3]]),
                })
            }
            other => Err(ReplyError::UnknownReplyTag(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{IdentityKeyPair, X25519Public};
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;
    use sphinx_packet::route::NodeAddressBytes;
    use sphinx_packet::{ProcessedPacketData, SphinxPacket};

    fn rng() -> ChaCha20Rng {
        ChaCha20Rng::from_seed([42u8; 32])
    }

    struct Fixture {
        route: Vec<Node>,
        secrets: Vec<X25519Secret>,
        identity: VerifyingKey,
    }

    fn fixture(rng: &mut ChaCha20Rng) -> Fixture {
        let addrs = [
            "10.0.0.1:1789",
            "10.0.0.2:1789",
            "[2001:db8::3]:1789",
            "192.168.1.4:9000",
        ];
        let mut route = Vec::new();
        let mut secrets = Vec::new();
        for a in addrs {
            let sk = X25519Secret::random_from_rng(&mut *rng);
            let addr = NodeAddress(a.parse().expect("addr"))
                .to_padded::<32>()
                .expect("fits");
            route.push(Node::new(
                NodeAddressBytes::from_bytes(addr),
                X25519Public::from(&sk),
            ));
            secrets.push(sk);
        }
        let identity = IdentityKeyPair::generate(rng).public();
        Fixture {
            route,
            secrets,
            identity,
        }
    }

    fn build(
        rng: &mut ChaCha20Rng,
        f: &Fixture,
        version: SphinxVersion,
    ) -> (ReplySurb, Vec<Delay>) {
        let delays = sample_delays(rng, f.route.len(), Duration::from_millis(50));
        let surb = ReplySurb::build(rng, &f.route, &f.identity, &delays, version).expect("build");
        (surb, delays)
    }

    /// Send a reply through the SURB and unwrap it hop by hop with the nodes'
    /// secrets, checking addresses, delays, destination and plaintext.
    fn use_and_process(f: &Fixture, surb: ReplySurb, delays: &[Delay], version: u16) {
        let size = PacketSize::Regular;
        let plaintext: Vec<u8> = (0..size.plaintext_size())
            .map(|i| (i % 251) as u8)
            .collect();
        let (mut packet, first_hop) = surb.apply(&plaintext, size).expect("apply");
        assert_eq!(packet.len(), size.size());
        assert_eq!(
            first_hop.to_padded::<32>().expect("fits"),
            *f.route[0].address.as_bytes()
        );
        for (i, sk) in f.secrets.iter().enumerate() {
            let processed = SphinxPacket::from_bytes(&packet)
                .expect("packet")
                .process(sk)
                .expect("process");
            assert_eq!(processed.version.value(), version);
            match processed.data {
                ProcessedPacketData::ForwardHop {
                    next_hop_packet,
                    next_hop_address,
                    delay,
                } => {
                    assert!(i + 1 < f.secrets.len());
                    assert_eq!(next_hop_address, f.route[i + 1].address);
                    assert_eq!(delay.to_nanos(), delays[i].to_nanos());
                    packet = next_hop_packet.to_bytes();
                }
                ProcessedPacketData::FinalHop {
                    destination,
                    identifier,
                    payload,
                } => {
                    assert_eq!(i, f.secrets.len() - 1);
                    assert_eq!(destination.as_bytes(), f.identity.to_bytes());
                    assert_eq!(identifier, [0u8; 16]);
                    assert_eq!(payload.recover_plaintext().expect("plaintext"), plaintext);
                    return;
                }
            }
        }
        panic!("packet never reached its final hop");
    }

    #[test]
    fn v259_surb_build_serialise_use() {
        let mut r = rng();
        let f = fixture(&mut r);
        let (surb, delays) = build(&mut r, &f, SphinxVersion::Seeds259);
        assert!(surb.uses_key_seeds());
        assert_eq!(surb.hops(), 4);
        let bytes = surb.to_bytes();
        assert_eq!(bytes.len(), 460);
        assert_eq!(bytes.len(), v2_reply_surb_len(DEFAULT_SURB_HOPS));
        assert_eq!(&bytes[..16], surb.encryption_key().as_bytes());
        let back = ReplySurb::from_bytes(&bytes).expect("parse");
        assert_eq!(back, surb);
        assert_eq!(
            back.first_hop(),
            NodeAddress("10.0.0.1:1789".parse().expect("addr"))
        );
        use_and_process(&f, back, &delays, 259);
    }

    #[test]
    fn v258_surb_build_serialise_use() {
        let mut r = rng();
        let f = fixture(&mut r);
        let (surb, delays) = build(&mut r, &f, SphinxVersion::Legacy258);
        assert!(!surb.uses_key_seeds());
        let bytes = surb.to_bytes();
        assert_eq!(bytes.len(), 1164);
        assert_eq!(bytes.len(), V1_REPLY_SURB_LEN);
        let back = ReplySurb::from_bytes(&bytes).expect("parse");
        assert_eq!(back, surb);
        use_and_process(&f, back, &delays, 258);
    }

    #[test]
    fn surb_with_mean_delay_and_short_routes() {
        let mut r = rng();
        let f = fixture(&mut r);
        // Route of just the gateway (disable_mix_hops): 396 + 16.
        let one = ReplySurb::build_with_mean_delay(
            &mut r,
            &f.route[3..],
            &f.identity,
            Duration::ZERO,
            SphinxVersion::Seeds259,
        )
        .expect("build");
        assert_eq!(one.serialized_len(), v2_reply_surb_len(1));
        assert!(ReplySurb::build(&mut r, &[], &f.identity, &[], SphinxVersion::Seeds259).is_err());
        let mut six = f.route.clone();
        six.extend_from_slice(&f.route[..2]);
        assert_eq!(
            ReplySurb::build_with_mean_delay(
                &mut r,
                &six,
                &f.identity,
                Duration::ZERO,
                SphinxVersion::Seeds259
            ),
            Err(ReplySurbError::RouteLength(6))
        );
        assert!(matches!(
            ReplySurb::build(&mut r, &f.route, &f.identity, &[], SphinxVersion::Seeds259),
            Err(ReplySurbError::DelayCount { .. })
        ));
        assert!(sample_delays(&mut r, 3, Duration::ZERO)
            .iter()
            .all(|d| d.to_nanos() == 0));
    }

    #[test]
    fn surb_apply_checks_plaintext_length() {
        let mut r = rng();
        let f = fixture(&mut r);
        let (surb, _) = build(&mut r, &f, SphinxVersion::Seeds259);
        assert_eq!(
            surb.apply(&[0u8; 100], PacketSize::Regular),
            Err(ReplySurbError::PlaintextLength {
                got: 100,
                expected: 2048
            })
        );
    }

    #[test]
    fn key_digest_is_blake3() {
        let k = SurbEncryptionKey::from_bytes([7u8; 16]);
        assert_eq!(k.digest(), *blake3::hash(&[7u8; 16]).as_bytes());
        // BLAKE3 of the empty input, as a sanity anchor for the hash itself.
        assert_eq!(
            hex::encode(blake3::hash(b"").as_bytes()),
            "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
        );
    }

    #[test]
    fn surb_parse_errors() {
        assert_eq!(
            ReplySurb::from_bytes(&[0u8; 16]),
            Err(ReplySurbError::TooShort(16))
        );
        assert!(matches!(
            ReplySurb::from_bytes(&[0u8; 100]),
            Err(ReplySurbError::Sphinx(_))
        ));
        // Valid layout, but the first hop's type byte is 9.
        let mut r = rng();
        let f = fixture(&mut r);
        let (surb, _) = build(&mut r, &f, SphinxVersion::Seeds259);
        let mut b = surb.to_bytes();
        b[16 + HEADER_SIZE] = 9;
        assert_eq!(
            ReplySurb::from_bytes(&b),
            Err(ReplySurbError::FirstHop(NodeAddressError::UnknownType(9)))
        );
        // Seed material that is not a whole number of seeds.
        let b = surb.to_bytes();
        assert!(ReplySurb::from_bytes(&b[..b.len() - 1]).is_err());
    }

    fn recipient() -> Recipient {
        Recipient::new(
            IdentityKeyPair::from_secret_bytes(&[1; 32]).public(),
            X25519Public::from([2; 32]),
            IdentityKeyPair::from_secret_bytes(&[3; 32]).public(),
        )
    }

    #[test]
    fn reply_bodies() {
        let d = ReplyMessage::Data(vec![9, 8, 7]);
        assert_eq!(d.to_bytes(), vec![0, 9, 8, 7]);
        assert_eq!(d.serialized_len(), 4);
        assert_eq!(ReplyMessage::from_bytes(&d.to_bytes()), Ok(d));
        for amount in [12u32, 1000] {
            let req = ReplyMessage::SurbRequest {
                recipient: Box::new(recipient()),
                amount,
            };
            let b = req.to_bytes();
            assert_eq!(b.len(), 101);
            assert_eq!(req.serialized_len(), 101);
            assert_eq!(b[0], 1);
            assert_eq!(&b[1..97], &recipient().to_bytes());
            assert_eq!(&b[97..], &amount.to_be_bytes());
            assert_eq!(ReplyMessage::from_bytes(&b), Ok(req));
            assert_eq!(
                ReplyMessage::from_bytes(&b[..100]),
                Err(ReplyError::SurbRequestLength(99))
            );
        }
        assert_eq!(
            ReplyMessage::from_bytes(&[7]),
            Err(ReplyError::UnknownReplyTag(7))
        );
        assert!(ReplyMessage::from_bytes(&[]).is_err());
        assert_eq!(
            ReplyMessage::from_bytes(&[0]),
            Ok(ReplyMessage::Data(vec![]))
        );
    }

    /// Port of the shape of Nym's request fixtures: data lengths and SURB
    /// counts, serialised length equal to the encoding, and a parse back.
    #[test]
    fn repliable_lists_v1_v2_round_trip() {
        let mut r = rng();
        let f = fixture(&mut r);
        let (v1, _) = build(&mut r, &f, SphinxVersion::Legacy258);
        let (v2, _) = build(&mut r, &f, SphinxVersion::Seeds259);
        let v2 = v2.with_key_rotation(KeyRotation::Even);
        let one_hop = ReplySurb::build_with_mean_delay(
            &mut r,
            &f.route[3..],
            &f.identity,
            Duration::ZERO,
            SphinxVersion::Seeds259,
        )
        .expect("build");
        let tag = SenderTag([0x2a; 16]);

        let mut cases: Vec<RepliableMessage> = Vec::new();
        for (len, n) in [(10_000usize, 0usize), (10, 100), (100_000, 1000)] {
            cases.push(RepliableMessage {
                sender_tag: tag,
                content: RepliableContent::DataV1 {
                    message: vec![5; len],
                    surbs: vec![v1.clone(); n],
                },
            });
            cases.push(RepliableMessage::new_data(
                tag,
                vec![6; len],
                vec![v2.clone(); n],
            ));
        }
        cases.push(RepliableMessage::new_data(
            tag,
            vec![6; 100],
            vec![one_hop.clone(); 1000],
        ));
        for n in [1usize, 1000] {
            cases.push(RepliableMessage::new_additional_surbs(
                tag,
                vec![v1.clone(); n],
            ));
            cases.push(RepliableMessage {
                sender_tag: tag,
                content: RepliableContent::HeartbeatV1 {
                    surbs: vec![v1.clone(); n],
                },
            });
            cases.push(RepliableMessage::new_additional_surbs(
                tag,
                vec![v2.clone(); n],
            ));
            cases.push(RepliableMessage {
                sender_tag: tag,
                content: RepliableContent::HeartbeatV2 {
                    surbs: vec![one_hop.clone(); n],
                },
            });
        }
        for m in cases {
            let b = m.to_bytes().expect("encode");
            assert_eq!(b.len(), m.serialized_len());
            assert_eq!(&b[..16], &[0x2a; 16]);
            assert_eq!(b[16], m.content.tag());
            let back = RepliableMessage::from_bytes(&b).expect("parse");
            assert_eq!(back, m);
        }
    }

    #[test]
    fn list_layouts() {
        let mut r = rng();
        let f = fixture(&mut r);
        let (v2, _) = build(&mut r, &f, SphinxVersion::Seeds259);
        let v2 = v2.with_key_rotation(KeyRotation::Odd);
        let m = RepliableMessage::new_data(SenderTag([1; 16]), vec![0xee; 3], vec![v2.clone(); 2]);
        assert_eq!(m.content.tag(), CONTENT_DATA_V2);
        let b = m.to_bytes().expect("encode");
        assert_eq!(&b[17..21], &[0, 2, 4, 1]);
        assert_eq!(&b[21..21 + 460], &v2.to_bytes()[..]);
        assert_eq!(&b[21 + 920..], &[0xee; 3]);

        let (v1, _) = build(&mut r, &f, SphinxVersion::Legacy258);
        let m = RepliableMessage::new_additional_surbs(SenderTag([1; 16]), vec![v1.clone()]);
        assert_eq!(m.content.tag(), CONTENT_ADDITIONAL_SURBS_V1);
        let b = m.to_bytes().expect("encode");
        assert_eq!(&b[17..21], &[0, 0, 0, 1]);
        assert_eq!(b.len(), 21 + 1164);
        // V1 SURBs come back with Unknown rotation.
        let back = RepliableMessage::from_bytes(&b).expect("parse");
        assert_eq!(back.content.surbs()[0].key_rotation(), KeyRotation::Unknown);
        // Trailing bytes after a SURB-only list are tolerated.
        let mut t = b.clone();
        t.extend_from_slice(&[1, 2, 3]);
        assert_eq!(RepliableMessage::from_bytes(&t), Ok(back));

        // Empty V2 list: hops 0, rotation Unknown.
        let m = RepliableMessage::new_data(SenderTag([1; 16]), vec![1], vec![]);
        assert_eq!(&m.to_bytes().expect("encode")[16..], &[3, 0, 0, 0, 0, 1]);

        // Mismatched formats are refused when encoding.
        let bad = RepliableMessage {
            sender_tag: SenderTag([1; 16]),
            content: RepliableContent::DataV1 {
                message: vec![],
                surbs: vec![v2.clone()],
            },
        };
        assert!(matches!(
            bad.to_bytes(),
            Err(ReplyError::SurbFormat { index: 0, .. })
        ));
        let one_hop = ReplySurb::build_with_mean_delay(
            &mut r,
            &f.route[3..],
            &f.identity,
            Duration::ZERO,
            SphinxVersion::Seeds259,
        )
        .expect("build");
        let mixed = RepliableMessage::new_additional_surbs(SenderTag([1; 16]), vec![v2, one_hop]);
        assert!(matches!(
            mixed.to_bytes(),
            Err(ReplyError::SurbFormat { index: 1, .. })
        ));
        let mixed =
            RepliableMessage::new_additional_surbs(SenderTag([1; 16]), vec![v1.clone(), v1]);
        assert!(mixed.to_bytes().is_ok());
    }

    #[test]
    fn hostile_lists() {
        let tag = [0u8; 16];
        let body = |content_tag: u8, rest: &[u8]| {
            let mut b = tag.to_vec();
            b.push(content_tag);
            b.extend_from_slice(rest);
            b
        };
        assert_eq!(
            RepliableMessage::from_bytes(&body(0, &[0xff, 0xff, 0xff, 0xff])),
            Err(ReplyError::TooManySurbs {
                count: u32::MAX as usize,
                max: MAX_SURBS_PER_LIST
            })
        );
        assert_eq!(
            RepliableMessage::from_bytes(&body(1, &[0, 0, 0, 3, 1, 2])),
            Err(ReplyError::TooShort("reply SURBs"))
        );
        assert_eq!(
            RepliableMessage::from_bytes(&body(4, &[0xff, 0xff, 4, 0])),
            Err(ReplyError::TooShort("reply SURBs"))
        );
        assert_eq!(
            RepliableMessage::from_bytes(&body(3, &[0, 0, 4, 3])),
            Err(ReplyError::KeyRotation(KeyRotationError(3)))
        );
        assert_eq!(
            RepliableMessage::from_bytes(&body(6, &[0, 0, 0, 0])),
            Err(ReplyError::UnknownRepliableTag(6))
        );
        assert!(RepliableMessage::from_bytes(&body(3, &[])).is_err());
        assert!(RepliableMessage::from_bytes(&tag).is_err());
        // A V2 list whose single SURB is garbage.
        let mut garbage = vec![0, 1, 4, 0];
        garbage.extend(std::iter::repeat_n(0u8, 460));
        assert!(matches!(
            RepliableMessage::from_bytes(&body(4, &garbage)),
            Err(ReplyError::Surb { index: 0, .. })
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1300)) {
            let _ = RepliableMessage::from_bytes(&bytes);
            let _ = ReplyMessage::from_bytes(&bytes);
            let _ = ReplySurb::from_bytes(&bytes);
            let _ = crate::chunking::NymMessage::from_bytes(&bytes);
        }

        #[test]
        fn random_surbs_parse_and_apply_without_panic(
            mut bytes in proptest::collection::vec(any::<u8>(), 460..=460),
            v4 in any::<bool>(),
        ) {
            // Make the first hop parse so the SURB is accepted, then use it.
            bytes[16 + HEADER_SIZE] = if v4 { 4 } else { 6 };
            if let Ok(s) = ReplySurb::from_bytes(&bytes) {
                prop_assert_eq!(s.to_bytes(), bytes);
                let _ = s.apply(&[0u8; 2048], PacketSize::Regular);
            }
        }
    }
}
