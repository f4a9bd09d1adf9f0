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
use crate::address::NodeAddress;
use crate::address::Recipient;
use crate::fastsphinx::{derive_batch, Derivation, Derived, DerivedKeys, NodeKeyCache};
use crate::keys::{AckKey, EncryptionKeyPair, X25519Secret};
use crate::mixpacket::MixPacket;
use crate::params::{
    FragmentId, KeyRotation, PacketSize, SphinxVersion, ACK_PLAINTEXT_SIZE, SURB_ACK_ADDRESS_SIZE,
};
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
    /// Our own encryption key pair, when the packet may be for ourselves
    /// (loop cover): if its public half is the recipient's key, the
    /// payload's key exchange runs on the fixed base
    /// ([`Derivation::OwnExchange`]: same bytes, no table per identity).
    /// Ignored for any other recipient.
    pub own_keys: Option<&'a EncryptionKeyPair>,
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
    prepare_acked_many(rng, &[(*ack, *packet)])
        .pop()
        .unwrap_or_else(|| Err(batch_mismatch().into()))
}

/// [`prepare_acked`] for several packets at once: their randomness is drawn
/// packet after packet, in the order [`prepare_acked`] draws it (so the
/// same RNG gives the same packets as calling it for each in turn), and all
/// their key derivations run as one batch (one field inversion per hop step
/// for all of them). One result per packet, in order.
pub fn prepare_acked_many<R: RngCore + CryptoRng>(
    rng: &mut R,
    specs: &[(AckSpec<'_>, PacketSpec<'_>)],
) -> Vec<Result<(PreparedPacket, [u8; 32]), AckedError>> {
    if sphinx::sender_derivation() == SenderDerivation::Stock {
        return specs
            .iter()
            .map(|(ack, packet)| {
                let surb_ack = ack.build(rng)?;
                Ok(prepare_fragment_keyed(
                    rng,
                    packet.version,
                    packet.fragment,
                    packet.recipient,
                    packet.route,
                    &surb_ack,
                    packet.mean,
                    packet.key_rotation,
                )?)
            })
            .collect();
    }
    let drawn: Vec<Result<Drawn<'_>, AckedError>> = specs
        .iter()
        .map(|(ack, packet)| Drawn::draw(rng, ack, packet))
        .collect();
    let ok: Vec<&Drawn<'_>> = drawn.iter().filter_map(|d| d.as_ref().ok()).collect();
    let jobs: Vec<Derivation<'_>> = ok.iter().flat_map(|d| d.derivations()).collect();
    let mut derived = derive_batch(NodeKeyCache::global(), &jobs).into_iter();
    drawn
        .into_iter()
        .map(|d| {
            let d = d?;
            let mut next = || derived.next().ok_or_else(batch_mismatch);
            let (ack_keys, exchange, keys) = (next()?, next()?, next()?);
            d.finish(ack_keys, exchange, keys)
        })
        .collect()
}

/// One packet's randomness, drawn; its keys not yet derived.
struct Drawn<'a> {
    packet: PacketSpec<'a>,
    ack_first: NodeAddress,
    ack_first_padded: [u8; SURB_ACK_ADDRESS_SIZE],
    ack_delays: Vec<Duration>,
    ack_plain: [u8; ACK_PLAINTEXT_SIZE],
    ack_header: DrawnHeader,
    size: PacketSize,
    first_hop: NodeAddress,
    eph: zeroize::Zeroizing<[u8; 32]>,
    delays: Vec<Duration>,
    header: DrawnHeader,
}

impl<'a> Drawn<'a> {
    fn draw<R: RngCore + CryptoRng>(
        rng: &mut R,
        ack: &AckSpec<'_>,
        packet: &PacketSpec<'a>,
    ) -> Result<Self, AckedError> {
        // The SURB-ACK's randomness, as build_surb_ack draws it.
        let ack_first = ack
            .route
            .first()
            .ok_or(AckError::Sphinx(SphinxError::RouteLength(0)))?
            .address;
        let ack_first_padded = ack_first
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
        let eph = zeroize::Zeroizing::new(eph.to_bytes());
        let delays = sphinx::sample_delays(rng, packet.mean, packet.route.len());
        let header = DrawnHeader::draw_forward(
            rng,
            packet.version,
            packet.route,
            packet.recipient.identity().as_bytes(),
            &delays,
        )
        .map_err(PayloadError::Sphinx)?;
        Ok(Self {
            packet: *packet,
            ack_first,
            ack_first_padded,
            ack_delays,
            ack_plain,
            ack_header,
            size,
            first_hop,
            eph,
            delays,
            header,
        })
    }

    /// The three derivations, in the order `finish` takes their results.
    fn derivations(&self) -> [Derivation<'_>; 3] {
        let public = self.packet.recipient.encryption_key().as_bytes();
        let exchange = match self
            .packet
            .own_keys
            .filter(|own| own.public().as_bytes() == public)
        {
            Some(own) => Derivation::OwnExchange {
                secret: &self.eph,
                own_secret: own.secret().as_bytes(),
                own_public: public,
            },
            None => Derivation::Exchange {
                secret: &self.eph,
                public,
            },
        };
        [
            self.ack_header.derivation(),
            exchange,
            self.header.derivation(),
        ]
    }

    fn finish(
        self,
        ack_keys: Derived,
        exchange: Derived,
        keys: Derived,
    ) -> Result<(PreparedPacket, [u8; 32]), AckedError> {
        let (Derived::Route(ack_keys), Derived::Exchange { public, shared }, Derived::Route(keys)) =
            (ack_keys, exchange, keys)
        else {
            return Err(batch_mismatch().into());
        };
        let ack_packet = build(
            &self.ack_header,
            &ack_keys,
            PacketSize::Ack,
            &self.ack_plain,
        )
        .map_err(AckError::Sphinx)?;
        let mut surb_ack_bytes = Vec::with_capacity(self.ack_first_padded.len() + ack_packet.len());
        surb_ack_bytes.extend_from_slice(&self.ack_first_padded);
        surb_ack_bytes.extend_from_slice(&ack_packet);
        let surb_ack = SurbAck {
            bytes: surb_ack_bytes,
            first_hop: self.ack_first,
            expected_delay: sphinx::embedded_delay(&self.ack_delays),
        };

        let key = packet_key(&shared)?;
        let plaintext = payload::assemble(&surb_ack.bytes, &public, &key, self.packet.fragment)?;
        let bytes =
            build(&self.header, &keys, self.size, &plaintext).map_err(PayloadError::Sphinx)?;
        Ok((
            PreparedPacket {
                mix_packet: MixPacket::new(self.first_hop, bytes, self.packet.key_rotation),
                data_delay: sphinx::embedded_delay(&self.delays),
                ack_delay: surb_ack.expected_delay,
            },
            public,
        ))
    }
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
