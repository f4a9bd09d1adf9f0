//! SURB-ACKs: the pre-built ack packet a sender places at the start of every
//! non-ack payload, and recognising acks when they come back.
//!
//! - Ack plaintext (21 bytes) = `IV(16 random) || AES-128-CTR(ack_key, IV,
//!   FragmentId(5))` with the 64-bit big-endian counter.
//! - The ack travels in a sphinx packet of size [`PacketSize::Ack`] over a route
//!   of mixes ending at the *sender's own* gateway, addressed to the sender's
//!   identity; its hop delays are drawn with the ack mean delay.
//! - SURB-ACK blob (405 bytes) = `first hop address zero-padded to 19 || ack
//!   packet (386)`.
//! - At the final hop the recipient's gateway splits the recovered plaintext
//!   into that blob and the rest ([`split_surb_ack`]), forwards the ack packet
//!   to the first hop and delivers the rest. Ack-size packets carry no SURB-ACK.

use std::time::Duration;

use rand::{CryptoRng, RngCore};

use crate::address::{NodeAddress, NodeAddressError};
use crate::crypto::aes128_ctr64;
use crate::keys::AckKey;
use crate::mixpacket::MixPacket;
use crate::params::{
    FragmentId, KeyRotation, PacketSize, SphinxVersion, ACK_PLAINTEXT_SIZE, FRAGMENT_ID_SIZE,
    SURB_ACK_ADDRESS_SIZE, SURB_ACK_SIZE,
};
use crate::sphinx::{self, RouteHop, SphinxError};

/// Length of the IV at the start of an ack plaintext.
pub const ACK_IV_SIZE: usize = 16;

/// Errors building, recognising or splitting acks.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum AckError {
    /// Building the ack's sphinx packet failed.
    #[error("ack packet: {0}")]
    Sphinx(#[from] SphinxError),
    /// The first-hop address could not be encoded or read.
    #[error("SURB-ACK first hop: {0}")]
    Address(#[from] NodeAddressError),
    /// Wrong number of bytes.
    #[error("expected {expected} bytes, got {got}")]
    Length {
        /// Bytes required.
        expected: usize,
        /// Bytes given.
        got: usize,
    },
    /// The decrypted id has a negative set id (Nym rejects these; a wrong ack
    /// key gives one about half the time).
    #[error("ack decrypted to an invalid fragment id (set id {0})")]
    InvalidId(i32),
}

/// A built SURB-ACK.
#[derive(Clone, PartialEq, Eq)]
pub struct SurbAck {
    /// The 405-byte blob to put at the start of a payload.
    pub bytes: Vec<u8>,
    /// The ack route's first hop (a layer-1 mix).
    pub first_hop: NodeAddress,
    /// Sum of the delays embedded in the ack packet (for the retransmission
    /// timeout).
    pub expected_delay: Duration,
}

impl std::fmt::Debug for SurbAck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SurbAck")
            .field("first_hop", &self.first_hop)
            .field("expected_delay", &self.expected_delay)
            .finish_non_exhaustive()
    }
}

/// The 21-byte ack plaintext for `id`: a random IV, then the id encrypted
/// under the ack key.
pub fn ack_plaintext<R: RngCore + ?Sized>(
    rng: &mut R,
    key: &AckKey,
    id: FragmentId,
) -> [u8; ACK_PLAINTEXT_SIZE] {
    let mut out = [0u8; ACK_PLAINTEXT_SIZE];
    let mut iv = [0u8; ACK_IV_SIZE];
    rng.fill_bytes(&mut iv);
    out[..ACK_IV_SIZE].copy_from_slice(&iv);
    out[ACK_IV_SIZE..].copy_from_slice(&id.to_bytes());
    aes128_ctr64(key.as_bytes(), &iv, &mut out[ACK_IV_SIZE..]);
    out
}

/// Build the SURB-ACK for fragment `id`. `route` is the ack's route (mixes,
/// then the sender's own gateway); `own_identity` is the sender's ed25519
/// identity; hop delays are sampled with mean `ack_mean`.
pub fn build_surb_ack<R: RngCore + CryptoRng>(
    rng: &mut R,
    version: SphinxVersion,
    ack_key: &AckKey,
    id: FragmentId,
    route: &[RouteHop],
    own_identity: &[u8; 32],
    ack_mean: Duration,
) -> Result<SurbAck, AckError> {
    let first = route
        .first()
        .ok_or(AckError::Sphinx(SphinxError::RouteLength(0)))?;
    let padded_first = first.address.to_padded::<SURB_ACK_ADDRESS_SIZE>()?;
    let delays = sphinx::sample_delays(rng, ack_mean, route.len());
    let plaintext = ack_plaintext(rng, ack_key, id);
    let packet = sphinx::build_forward(
        rng,
        version,
        PacketSize::Ack,
        &plaintext,
        route,
        own_identity,
        &delays,
    )?;
    let mut bytes = Vec::with_capacity(SURB_ACK_SIZE);
    bytes.extend_from_slice(&padded_first);
    bytes.extend_from_slice(&packet);
    Ok(SurbAck {
        bytes,
        first_hop: first.address,
        expected_delay: sphinx::embedded_delay(&delays),
    })
}

/// Decrypt a received 21-byte ack to the fragment id it acknowledges. The all
/// zero id ([`FragmentId::COVER`]) is a cover packet's ack.
pub fn recognise_ack(key: &AckKey, ack: &[u8]) -> Result<FragmentId, AckError> {
    let ack: &[u8; ACK_PLAINTEXT_SIZE] = ack.try_into().map_err(|_| AckError::Length {
        expected: ACK_PLAINTEXT_SIZE,
        got: ack.len(),
    })?;
    let mut iv = [0u8; ACK_IV_SIZE];
    iv.copy_from_slice(&ack[..ACK_IV_SIZE]);
    let mut id = [0u8; FRAGMENT_ID_SIZE];
    id.copy_from_slice(&ack[ACK_IV_SIZE..]);
    aes128_ctr64(key.as_bytes(), &iv, &mut id);
    let id = FragmentId::from_bytes(id);
    if id.set_id < 0 {
        return Err(AckError::InvalidId(id.set_id));
    }
    Ok(id)
}

/// A final-hop plaintext split by the recipient's gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitFinalHop<'a> {
    /// Where to send the ack (the first hop of the ack route).
    pub ack_first_hop: NodeAddress,
    /// The 386-byte ack sphinx packet.
    pub ack_packet: &'a [u8],
    /// What the recipient client gets.
    pub message: &'a [u8],
}

impl SplitFinalHop<'_> {
    /// The ack as a mix packet to forward at once; `key_rotation` is the
    /// rotation byte of the frame the data packet arrived in (Unknown for
    /// version-7 frames).
    pub fn ack_mix_packet(&self, key_rotation: KeyRotation) -> MixPacket {
        MixPacket::new(self.ack_first_hop, self.ack_packet.to_vec(), key_rotation)
    }
}

/// Split the plaintext recovered at a final hop of a non-ack packet into its
/// SURB-ACK (first hop and ack packet) and the message for the client.
pub fn split_surb_ack(plaintext: &[u8]) -> Result<SplitFinalHop<'_>, AckError> {
    if plaintext.len() < SURB_ACK_SIZE {
        return Err(AckError::Length {
            expected: SURB_ACK_SIZE,
            got: plaintext.len(),
        });
    }
    let (ack_first_hop, _) = NodeAddress::read(&plaintext[..SURB_ACK_ADDRESS_SIZE])?;
    Ok(SplitFinalHop {
        ack_first_hop,
        ack_packet: &plaintext[SURB_ACK_ADDRESS_SIZE..SURB_ACK_SIZE],
        message: &plaintext[SURB_ACK_SIZE..],
    })
}

/// What a gateway delivers for a packet that ended at it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinalHopDelivery<'a> {
    /// An ack-size packet: the whole (21-byte) plaintext goes to the client;
    /// there is no SURB-ACK to forward.
    Ack(&'a [u8]),
    /// Any other size: forward the SURB-ACK, deliver the rest.
    Message(SplitFinalHop<'a>),
}

/// Split a final-hop plaintext according to the size of the packet it came in.
pub fn split_final_hop(
    size: PacketSize,
    plaintext: &[u8],
) -> Result<FinalHopDelivery<'_>, AckError> {
    if size == PacketSize::Ack {
        Ok(FinalHopDelivery::Ack(plaintext))
    } else {
        split_surb_ack(plaintext).map(FinalHopDelivery::Message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sphinx::tests::four_nodes;
    use crate::sphinx::{process, Processed};
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    #[test]
    fn ack_plaintext_round_trip() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let key = AckKey::generate(&mut rng);
        let id = FragmentId {
            set_id: 123_456_789,
            position: 7,
        };
        let pt = ack_plaintext(&mut rng, &key, id);
        assert_eq!(recognise_ack(&key, &pt), Ok(id));
        // Independent check of the layout: AES-128-CTR under the IV.
        let mut manual = id.to_bytes();
        aes128_ctr64(
            key.as_bytes(),
            pt[..16].try_into().expect("16"),
            &mut manual,
        );
        assert_eq!(pt[16..], manual);
        // Fresh IV each time.
        assert_ne!(ack_plaintext(&mut rng, &key, id), pt);
        assert_eq!(
            recognise_ack(&key, &pt[..20]),
            Err(AckError::Length {
                expected: 21,
                got: 20
            })
        );
        let cover = ack_plaintext(&mut rng, &key, FragmentId::COVER);
        assert!(recognise_ack(&key, &cover).expect("cover").is_cover());
    }

    #[test]
    fn wrong_key_gives_wrong_or_rejected_id() {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let key = AckKey::generate(&mut rng);
        let other = AckKey::generate(&mut rng);
        let id = FragmentId {
            set_id: 99,
            position: 1,
        };
        let mut rejected = 0;
        for _ in 0..64 {
            let pt = ack_plaintext(&mut rng, &key, id);
            match recognise_ack(&other, &pt) {
                Ok(got) => assert_ne!(got, id),
                Err(AckError::InvalidId(_)) => rejected += 1,
                Err(e) => panic!("unexpected {e}"),
            }
        }
        assert!(rejected > 0);
    }

    #[test]
    fn surb_ack_through_the_mixnet_and_gateway_split() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let nodes = four_nodes(&mut rng);
        let route: Vec<RouteHop> = nodes.iter().map(|n| n.hop).collect();
        let key = AckKey::generate(&mut rng);
        let me = [0x11u8; 32];
        let id = FragmentId {
            set_id: 0x1234_5678,
            position: 3,
        };
        for version in [SphinxVersion::Seeds259, SphinxVersion::Legacy258] {
            let surb = build_surb_ack(
                &mut rng,
                version,
                &key,
                id,
                &route,
                &me,
                Duration::from_millis(15),
            )
            .expect("surb ack");
            assert_eq!(surb.bytes.len(), SURB_ACK_SIZE);
            assert_eq!(surb.first_hop, route[0].address);
            assert_eq!(
                surb.bytes[..19],
                route[0].address.to_padded::<19>().expect("pad")
            );

            // Embed it in a payload as a sender would; the gateway splits it.
            let mut payload = surb.bytes.clone();
            payload.extend_from_slice(b"rest of the payload");
            let split = split_surb_ack(&payload).expect("split");
            assert_eq!(split.ack_first_hop, route[0].address);
            assert_eq!(split.ack_packet.len(), PacketSize::Ack.size());
            assert_eq!(split.message, b"rest of the payload");
            let mp = split.ack_mix_packet(KeyRotation::Unknown);
            assert_eq!(mp.packet_size(), Ok(PacketSize::Ack));

            // The ack travels the route; total of delays seen = expected_delay.
            let mut packet = mp.packet;
            let mut seen = Duration::ZERO;
            let mut hop = 0;
            let delivered = loop {
                match process(&packet, &nodes[hop].secret).expect("process") {
                    Processed::Forward {
                        next_hop,
                        delay,
                        packet: next,
                    } => {
                        assert_eq!(next_hop, route[hop + 1].address);
                        seen += delay;
                        packet = next;
                        hop += 1;
                    }
                    Processed::Final {
                        destination,
                        plaintext,
                    } => {
                        assert_eq!(destination, me);
                        break plaintext;
                    }
                }
            };
            assert_eq!(hop, 3);
            assert_eq!(seen, surb.expected_delay);
            assert_eq!(delivered.len(), ACK_PLAINTEXT_SIZE);
            assert_eq!(recognise_ack(&key, &delivered), Ok(id));
        }
    }

    #[test]
    fn split_errors() {
        assert!(matches!(
            split_surb_ack(&[4u8; 404]),
            Err(AckError::Length { .. })
        ));
        let mut bad = vec![0u8; 405];
        bad[0] = 9;
        assert!(matches!(split_surb_ack(&bad), Err(AckError::Address(_))));
        // IPv6 first hop fills all 19 bytes.
        let a = NodeAddress("[2001:db8::7]:1789".parse().expect("addr"));
        let mut v6 = a.to_padded::<19>().expect("pad").to_vec();
        v6.resize(405, 0);
        let s = split_surb_ack(&v6).expect("split");
        assert_eq!(s.ack_first_hop, a);
        assert!(s.message.is_empty());
        assert_eq!(
            split_final_hop(PacketSize::Regular, &v6),
            Ok(FinalHopDelivery::Message(s))
        );
        assert_eq!(
            split_final_hop(PacketSize::Ack, &v6[..21]),
            Ok(FinalHopDelivery::Ack(&v6[..21]))
        );
        assert!(split_final_hop(PacketSize::Regular, &v6[..21]).is_err());
    }

    proptest::proptest! {
        #[test]
        fn ack_parsers_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..900)) {
            let key = AckKey::from_bytes([1; 16]);
            let _ = recognise_ack(&key, &bytes);
            let _ = split_surb_ack(&bytes);
        }
    }
}
