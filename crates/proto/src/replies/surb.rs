//! Reply SURBs: `surb_encryption_key(16) || SURB`, building, parsing and
//! using them.

use std::time::Duration;

use rand::{CryptoRng, RngCore};
use sphinx_packet::header::delays::Delay;
use sphinx_packet::route::{Destination, DestinationAddressBytes, Node};
use sphinx_packet::{SURBMaterial, SURB};
use zeroize::Zeroize;

use crate::address::{NodeAddress, NodeAddressError};
use crate::keys::{VerifyingKey, X25519Secret};
use crate::params::{KeyRotation, PacketSize, SphinxVersion, HEADER_SIZE};

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

    pub(super) fn write_to(&self, out: &mut Vec<u8>) {
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
