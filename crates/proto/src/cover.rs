//! Loop cover packets: packets a client sends to itself so that real traffic
//! cannot be told apart from idle time.
//!
//! A loop cover packet is built exactly like a real plain packet addressed to
//! oneself (route: three mixes then one's own gateway; destination: one's own
//! identity; payload encrypted to one's own x25519 key), carrying a SURB-ACK
//! for [`FragmentId::COVER`] and, in place of a fragment, the content
//! `"The cake is a lie!" || 0x01 || zeros` filling the fragment capacity (1611
//! bytes for Regular). A stock 2026.9 client builds cover packets and their
//! SURB-ACKs with sphinx version 258.

use std::time::Duration;

use rand::{CryptoRng, RngCore};

use crate::ack::AckError;
use crate::acked::{prepare_acked_many, AckSpec, AckedError, PacketSpec};
use crate::address::Recipient;
use crate::keys::{AckKey, EncryptionKeyPair};
use crate::mixpacket::MixPacket;
use crate::params::{FragmentId, KeyRotation, PacketSize, SphinxVersion};
use crate::payload::PayloadError;
use crate::sphinx::RouteHop;

/// The plaintext prefix that marks a loop cover packet.
pub const COVER_PAYLOAD: &[u8] = b"The cake is a lie!";

/// Sphinx version of loop cover packets and their SURB-ACKs.
pub const COVER_SPHINX_VERSION: SphinxVersion = SphinxVersion::Legacy258;

/// Errors building a cover packet.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum CoverError {
    /// The SURB-ACK could not be built.
    #[error("cover SURB-ACK: {0}")]
    Ack(#[from] AckError),
    /// The packet could not be built.
    #[error("cover packet: {0}")]
    Payload(#[from] PayloadError),
    /// Ack-size packets cannot carry cover content.
    #[error("cover packets cannot be of size {0:?}")]
    Size(PacketSize),
}

/// The cover content for a packet size: the marker, a 0x01, then zeros up to
/// the fragment capacity.
pub fn cover_content(size: PacketSize) -> Result<Vec<u8>, CoverError> {
    if size == PacketSize::Ack {
        return Err(CoverError::Size(size));
    }
    let mut content = vec![0u8; size.fragment_capacity()];
    content[..COVER_PAYLOAD.len()].copy_from_slice(COVER_PAYLOAD);
    content[COVER_PAYLOAD.len()] = 1;
    Ok(content)
}

/// Inputs of a loop cover packet.
#[derive(Debug, Clone, Copy)]
pub struct LoopCover<'a> {
    /// Our own address (identity, encryption key, gateway).
    pub own: &'a Recipient,
    /// Our ack key.
    pub ack_key: &'a AckKey,
    /// Route of the SURB-ACK: three mixes, then our gateway.
    pub ack_route: &'a [RouteHop],
    /// Route of the cover packet itself: three mixes, then our gateway.
    pub route: &'a [RouteHop],
    /// Mean per-hop delay of the ack.
    pub ack_mean: Duration,
    /// Mean per-hop delay of the packet.
    pub packet_mean: Duration,
    /// Packet size (Regular by default).
    pub size: PacketSize,
    /// Current topology's key-rotation parity.
    pub key_rotation: KeyRotation,
    /// Our encryption key pair (the half of `own` we keep secret): with it
    /// the payload's key exchange to ourselves runs on the fixed base
    /// instead of a table of our own public key (same bytes; see
    /// [`crate::acked::PacketSpec::own_keys`]). `None` builds it the
    /// general way.
    pub own_keys: Option<&'a EncryptionKeyPair>,
}

/// Build a loop cover packet (version 258, its SURB-ACK too).
pub fn build_loop_cover<R: RngCore + CryptoRng>(
    rng: &mut R,
    params: &LoopCover<'_>,
) -> Result<MixPacket, CoverError> {
    build_loop_cover_marked(rng, params).map(|(p, _)| p)
}

/// As [`build_loop_cover`], also returning the packet's marker: the
/// ephemeral public key that will be the first 32 bytes of the message our
/// gateway pushes back. A client that remembers the markers of its cover in
/// flight recognises its own loops without a Diffie-Hellman (nothing on the
/// wire changes; a message whose first 32 bytes are not a marker is opened
/// as usual).
pub fn build_loop_cover_marked<R: RngCore + CryptoRng>(
    rng: &mut R,
    params: &LoopCover<'_>,
) -> Result<(MixPacket, [u8; 32]), CoverError> {
    build_loop_covers_marked(rng, std::slice::from_ref(params))
        .pop()
        .unwrap_or_else(|| Err(too_few_built()))
}

/// [`build_loop_cover_marked`] for several packets at once, their key
/// derivations batched ([`crate::acked::prepare_acked_many`]); the same RNG
/// gives the same packets as building them one after the other. One result
/// per packet, in order.
pub fn build_loop_covers_marked<R: RngCore + CryptoRng>(
    rng: &mut R,
    params: &[LoopCover<'_>],
) -> Vec<Result<(MixPacket, [u8; 32]), CoverError>> {
    let contents: Vec<Result<Vec<u8>, CoverError>> =
        params.iter().map(|p| cover_content(p.size)).collect();
    let mut specs = Vec::with_capacity(params.len());
    for (p, content) in params.iter().zip(&contents) {
        let Ok(content) = content else {
            continue;
        };
        let ack = AckSpec {
            version: COVER_SPHINX_VERSION,
            key: p.ack_key,
            id: FragmentId::COVER,
            route: p.ack_route,
            own_identity: p.own.identity().as_bytes(),
            mean: p.ack_mean,
        };
        let packet = PacketSpec {
            version: COVER_SPHINX_VERSION,
            fragment: content,
            recipient: p.own,
            route: p.route,
            mean: p.packet_mean,
            key_rotation: p.key_rotation,
            own_keys: p.own_keys,
        };
        specs.push((ack, packet));
    }
    let mut built = prepare_acked_many(rng, &specs).into_iter();
    contents
        .iter()
        .map(|content| {
            if let Err(e) = content {
                return Err(e.clone());
            }
            match built.next() {
                Some(Ok((prepared, marker))) => Ok((prepared.mix_packet, marker)),
                Some(Err(AckedError::Ack(e))) => Err(CoverError::Ack(e)),
                Some(Err(AckedError::Payload(e))) => Err(CoverError::Payload(e)),
                None => Err(too_few_built()),
            }
        })
        .collect()
}

/// `prepare_acked_many` answers every spec; this is the error should it not.
fn too_few_built() -> CoverError {
    CoverError::Payload(PayloadError::Sphinx(crate::sphinx::SphinxError::Build(
        "batched cover build returned too few packets".into(),
    )))
}

/// Whether decrypted fragment bytes are loop cover content.
pub fn is_cover(fragment: &[u8]) -> bool {
    fragment.starts_with(COVER_PAYLOAD)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ack::{recognise_ack, split_surb_ack};
    use crate::payload::tests::{client, deliver};
    use crate::payload::{classify_pushed, decrypt_message, PushedKind};
    use crate::sphinx::begin_unwrap;
    use crate::sphinx::tests::four_nodes;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    #[test]
    fn content_layout() {
        let c = cover_content(PacketSize::Regular).expect("content");
        assert_eq!(c.len(), 1611);
        assert_eq!(&c[..18], b"The cake is a lie!");
        assert_eq!(c[18], 1);
        assert!(c[19..].iter().all(|b| *b == 0));
        assert!(is_cover(&c));
        assert!(!is_cover(b"The cake is a lie"));
        assert!(!is_cover(b"The cake is a pie!"));
        assert!(!is_cover(&[]));
        assert_eq!(
            cover_content(PacketSize::Extended8).expect("ext").len(),
            8192 - 437
        );
        assert_eq!(
            cover_content(PacketSize::Ack),
            Err(CoverError::Size(PacketSize::Ack))
        );
    }

    #[test]
    fn loop_cover_goes_round_and_is_recognised() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let me = client(&mut rng);
        let ack_key = AckKey::generate(&mut rng);
        let nodes = four_nodes(&mut rng);
        let ack_nodes = four_nodes(&mut rng);
        let route: Vec<RouteHop> = nodes.iter().map(|n| n.hop).collect();
        let ack_route: Vec<RouteHop> = ack_nodes.iter().map(|n| n.hop).collect();
        let (mp, marker) = build_loop_cover_marked(
            &mut rng,
            &LoopCover {
                own: &me.recipient,
                ack_key: &ack_key,
                ack_route: &ack_route,
                route: &route,
                ack_mean: Duration::from_millis(15),
                packet_mean: Duration::from_millis(15),
                size: PacketSize::Regular,
                key_rotation: KeyRotation::Even,
                own_keys: Some(&me.encryption),
            },
        )
        .expect("cover");
        assert_eq!(mp.next_hop, route[0].address);
        assert_eq!(mp.key_rotation, KeyRotation::Even);
        assert_eq!(mp.packet.len(), 2413);

        // Version 258 in the packet (read by the crate at the first hop).
        let version = sphinx_packet::SphinxPacket::from_bytes(&mp.packet)
            .expect("parse")
            .process(&nodes[0].secret)
            .expect("process")
            .version;
        assert_eq!(version.value(), 258);
        assert!(begin_unwrap(&mp.packet, &nodes[0].secret).is_ok());

        let (dest, plaintext) = deliver(&nodes, mp.packet);
        assert_eq!(dest, me.identity.public_bytes());
        let split = split_surb_ack(&plaintext).expect("split");
        assert_eq!(
            classify_pushed(split.message.len()),
            Some(PushedKind::Message(PacketSize::Regular))
        );
        // The marker is what the gateway pushes first.
        assert_eq!(split.message[..32], marker);
        let d = decrypt_message(&me.encryption, split.message, &mut |_: &[u8; 32]| None)
            .expect("decrypt");
        assert!(is_cover(&d.fragment));
        assert_eq!(d.fragment, cover_content(PacketSize::Regular).expect("c"));

        // Its ack is version 258 too and decrypts to the cover id.
        let ack_version = sphinx_packet::SphinxPacket::from_bytes(split.ack_packet)
            .expect("parse")
            .process(&ack_nodes[0].secret)
            .expect("process")
            .version;
        assert_eq!(ack_version.value(), 258);
        let (ack_dest, ack) = deliver(&ack_nodes, split.ack_packet.to_vec());
        assert_eq!(ack_dest, me.identity.public_bytes());
        assert!(recognise_ack(&ack_key, &ack).expect("ack").is_cover());

        // A foreign key does not see cover content.
        let other = crate::keys::EncryptionKeyPair::generate(&mut rng);
        let d = decrypt_message(&other, split.message, &mut |_: &[u8; 32]| None).expect("decrypt");
        assert!(!is_cover(&d.fragment));
    }
}
