//! A data or loop cover packet built together with its SURB-ACK.
//!
//! [`crate::ack::build_surb_ack`] followed by
//! [`crate::payload::prepare_fragment_keyed`] derives three things one after
//! the other: the SURB-ACK's route keys, the payload's key exchange with the
//! recipient, and the packet's route keys. They are independent, so with the
//! fast derivation [`prepare_acked`] draws all the randomness first, in
//! exactly the order those two functions draw it (the same RNG gives the
//! same packet, byte for byte), then derives the three together
//! ([`crate::fastsphinx::derive_batch`]: one field inversion per hop step
//! instead of one per point), then assembles. With the stock derivation it
//! is those two functions.

use std::time::Duration;

use rand::{CryptoRng, RngCore};

use crate::ack::{ack_plaintext, build_surb_ack, AckError, SurbAck};
use crate::address::Recipient;
use crate::fastsphinx::{derive_batch, Derivation, Derived, DerivedKeys, NodeKeyCache};
use crate::keys::{AckKey, X25519Secret};
use crate::mixpacket::MixPacket;
use crate::params::{FragmentId, KeyRotation, PacketSize, SphinxVersion, SURB_ACK_ADDRESS_SIZE};
use crate::payload::{
    self, packet_key, prepare_fragment_keyed, size_for_fragment, PayloadError, PreparedPacket,
};
use crate::sphinx::{self, DrawnHeader, RouteHop, SenderDerivation, SphinxError};

/// What a packet's SURB-ACK is built from.
#[derive(Debug, Clone, Copy)]
pub struct AckSpec<'a> {
    /// Sphinx version of the ack packet.
    pub version: SphinxVersion,
    /// Our ack key.
    pub key: &'a AckKey,
    /// The fragment the ack acknowledges ([`FragmentId::COVER`] for cover).
    pub id: FragmentId,
    /// The ack's route: mixes, then our own gateway.
    pub route: &'a [RouteHop],
    /// Our ed25519 identity (the ack's destination).
    pub own_identity: &'a [u8; 32],
    /// Mean per-hop delay of the ack.
    pub mean: Duration,
}

impl AckSpec<'_> {
    /// The SURB-ACK on its own ([`build_surb_ack`]), for packets built
    /// without [`prepare_acked`] (replies, the stock derivation).
    pub fn build<R: RngCore + CryptoRng>(&self, rng: &mut R) -> Result<SurbAck, AckError> {
        build_surb_ack(
            rng,
            self.version,
            self.key,
            self.id,
            self.route,
            self.own_identity,
            self.mean,
        )
    }
}

/// What the packet carrying a fragment is built from.
#[derive(Debug, Clone, Copy)]
pub struct PacketSpec<'a> {
    /// Sphinx version of the packet.
    pub version: SphinxVersion,
    /// The fragment (exactly one packet size's fragment capacity).
    pub fragment: &'a [u8],
    /// Whom it is for.
    pub recipient: &'a Recipient,
    /// Its route: mixes, then the recipient's gateway.
    pub route: &'a [RouteHop],
    /// Mean per-hop delay of the packet.
    pub mean: Duration,
    /// The topology's key-rotation parity.
    pub key_rotation: KeyRotation,
}

/// Why a packet with its SURB-ACK could not be built.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum AckedError {
    /// The SURB-ACK could not be built.
    #[error("SURB-ACK: {0}")]
    Ack(#[from] AckError),
    /// The packet could not be built.
    #[error("packet: {0}")]
    Payload(#[from] PayloadError),
}

/// Build the SURB-ACK described by `ack` and the packet carrying `packet`'s
/// fragment with it; also returns the packet's ephemeral public key (the
/// first 32 bytes its recipient is pushed). Same bytes as
/// `build_surb_ack` then `prepare_fragment_keyed` with the same RNG.
pub fn prepare_acked<R: RngCore + CryptoRng>(
    rng: &mut R,
    ack: &AckSpec<'_>,
    packet: &PacketSpec<'_>,
) -> Result<(PreparedPacket, [u8; 32]), AckedError> {
    if sphinx::sender_derivation() == SenderDerivation::Stock {
        let surb_ack = ack.build(rng)?;
        return Ok(prepare_fragment_keyed(
            rng,
            packet.version,
            packet.fragment,
            packet.recipient,
            packet.route,
            &surb_ack,
            packet.mean,
            packet.key_rotation,
        )?);
    }

    // The SURB-ACK's randomness, as build_surb_ack draws it.
    let ack_first = ack
        .route
        .first()
        .ok_or(AckError::Sphinx(SphinxError::RouteLength(0)))?;
    let ack_first_padded = ack_first
        .address
        .to_padded::<SURB_ACK_ADDRESS_SIZE>()
        .map_err(AckError::Address)?;
    let ack_delays = sphinx::sample_delays(rng, ack.mean, ack.route.len());
    let ack_plain = ack_plaintext(rng, ack.key, ack.id);
    let ack_header =
        DrawnHeader::draw_forward(rng, ack.version, ack.route, ack.own_identity, &ack_delays)
            .map_err(AckError::Sphinx)?;

    // The packet's, as prepare_fragment_keyed draws it.
    let size = size_for_fragment(packet.fragment.len())
        .ok_or(PayloadError::FragmentLength(packet.fragment.len()))?;
    let first_hop = packet
        .route
        .first()
        .ok_or(PayloadError::Sphinx(SphinxError::RouteLength(0)))?
        .address;
    let eph = X25519Secret::random_from_rng(&mut *rng);
    let eph_bytes = zeroize::Zeroizing::new(eph.to_bytes());
    let delays = sphinx::sample_delays(rng, packet.mean, packet.route.len());
    let header = DrawnHeader::draw_forward(
        rng,
        packet.version,
        packet.route,
        packet.recipient.identity().as_bytes(),
        &delays,
    )
    .map_err(PayloadError::Sphinx)?;

    let derived = derive_batch(
        NodeKeyCache::global(),
        &[
            ack_header.derivation(),
            Derivation::Exchange {
                secret: &eph_bytes,
                public: packet.recipient.encryption_key().as_bytes(),
            },
            header.derivation(),
        ],
    );
    let [Derived::Route(ack_keys), Derived::Exchange { public, shared }, Derived::Route(keys)] =
        <[Derived; 3]>::try_from(derived).map_err(|_| batch_mismatch())?
    else {
        return Err(batch_mismatch().into());
    };

    let ack_packet =
        build(&ack_header, &ack_keys, PacketSize::Ack, &ack_plain).map_err(AckError::Sphinx)?;
    let mut surb_ack_bytes = Vec::with_capacity(ack_first_padded.len() + ack_packet.len());
    surb_ack_bytes.extend_from_slice(&ack_first_padded);
    surb_ack_bytes.extend_from_slice(&ack_packet);
    let surb_ack = SurbAck {
        bytes: surb_ack_bytes,
        first_hop: ack_first.address,
        expected_delay: sphinx::embedded_delay(&ack_delays),
    };

    let key = packet_key(&shared)?;
    let plaintext = payload::assemble(&surb_ack.bytes, &public, &key, packet.fragment)?;
    let bytes = build(&header, &keys, size, &plaintext).map_err(PayloadError::Sphinx)?;
    Ok((
        PreparedPacket {
            mix_packet: MixPacket::new(first_hop, bytes, packet.key_rotation),
            data_delay: sphinx::embedded_delay(&delays),
            ack_delay: surb_ack.expected_delay,
        },
        public,
    ))
}

fn build(
    header: &DrawnHeader,
    keys: &DerivedKeys,
    size: PacketSize,
    plaintext: &[u8],
) -> Result<Vec<u8>, SphinxError> {
    sphinx::check_plaintext(size, plaintext)?;
    header.packet(keys, size.payload_size(), plaintext)
}

/// `derive_batch` returns one result per job, of the job's kind; this is the
/// error should that ever not hold.
fn batch_mismatch() -> PayloadError {
    PayloadError::Sphinx(SphinxError::Build(
        "batched key derivation returned unexpected results".into(),
    ))
}
