//! Per-packet payload encryption and the "preparer" step that turns one
//! fragment into a forward [`MixPacket`].
//!
//! A sphinx plaintext (exactly `PacketSize::plaintext_size()` bytes) is
//! - plain or repliable: `SURB-ACK(405) || eph_pub(32) || AES-128-CTR(k, 0, fragment)`
//!   with `k = HKDF-BLAKE3(salt none, X25519(eph, recipient_enc), info empty)[..16]`
//!   and a fresh ephemeral key per packet;
//! - reply (through a SURB): `SURB-ACK(405) || BLAKE3(surb_key)(32) ||
//!   AES-128-CTR(surb_key, 0, fragment)`.
//!
//! AES-128-CTR uses the 64-bit big-endian counter and a zero IV. The
//! recipient's gateway strips the SURB-ACK, so a client receives
//! `key_or_digest(32) || ciphertext`, or a bare 21-byte ack.

use std::time::Duration;

use rand::{CryptoRng, RngCore};

use crate::ack::SurbAck;
use crate::address::Recipient;
use crate::crypto::{aes128_ctr64, hkdf_blake3};
use crate::keys::{EncryptionKeyPair, X25519Public, X25519Secret};
use crate::mixpacket::MixPacket;
use crate::params::{
    KeyRotation, PacketSize, SphinxVersion, ACK_PLAINTEXT_SIZE, PAYLOAD_KEY_SIZE, SURB_ACK_SIZE,
};
use crate::sphinx::{self, RouteHop, SphinxError};

/// Length of a packet encryption key (AES-128).
pub const PACKET_KEY_SIZE: usize = 16;
/// Length of a reply SURB's encryption key.
pub const SURB_KEY_SIZE: usize = 16;

const ZERO_IV: [u8; 16] = [0u8; 16];

/// Errors assembling or opening payloads.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum PayloadError {
    /// The SURB-ACK blob is not 405 bytes.
    #[error("SURB-ACK must be {SURB_ACK_SIZE} bytes, got {0}")]
    SurbAckLength(usize),
    /// No packet size carries a fragment of this length.
    #[error("no packet size carries a fragment of {0} bytes")]
    FragmentLength(usize),
    /// A received message is too short to hold the 32-byte key or digest.
    #[error("received message of {0} bytes is too short")]
    TooShort(usize),
    /// Building the sphinx packet failed.
    #[error(transparent)]
    Sphinx(#[from] SphinxError),
    /// Key derivation failed (cannot happen for 16-byte keys).
    #[error("packet key derivation failed")]
    Kdf,
}

/// The packet size whose fragment capacity is exactly `len` bytes.
pub fn size_for_fragment(len: usize) -> Option<PacketSize> {
    PacketSize::ALL
        .into_iter()
        .filter(|s| *s != PacketSize::Ack)
        .find(|s| s.fragment_capacity() == len)
}

/// The per-packet AES key from an X25519 shared secret.
pub fn packet_key(dh: &[u8; 32]) -> Result<[u8; PACKET_KEY_SIZE], PayloadError> {
    let mut k = [0u8; PACKET_KEY_SIZE];
    hkdf_blake3(None, dh, &[], &mut k).map_err(|_| PayloadError::Kdf)?;
    Ok(k)
}

/// The digest by which a reply SURB's key is recognised: BLAKE3 of the key.
pub fn reply_key_digest(surb_key: &[u8; SURB_KEY_SIZE]) -> [u8; 32] {
    *blake3::hash(surb_key).as_bytes()
}

pub(crate) fn assemble(
    surb_ack: &[u8],
    key_field: &[u8; PAYLOAD_KEY_SIZE],
    key: &[u8; 16],
    fragment: &[u8],
) -> Result<Vec<u8>, PayloadError> {
    if surb_ack.len() != SURB_ACK_SIZE {
        return Err(PayloadError::SurbAckLength(surb_ack.len()));
    }
    size_for_fragment(fragment.len()).ok_or(PayloadError::FragmentLength(fragment.len()))?;
    let mut out = Vec::with_capacity(SURB_ACK_SIZE + PAYLOAD_KEY_SIZE + fragment.len());
    out.extend_from_slice(surb_ack);
    out.extend_from_slice(key_field);
    let start = out.len();
    out.extend_from_slice(fragment);
    aes128_ctr64(key, &ZERO_IV, &mut out[start..]);
    Ok(out)
}

/// Sphinx plaintext of a plain or repliable packet for a recipient's x25519
/// key: `SURB-ACK || eph_pub || AES-128-CTR(k, 0, fragment)`. The fragment must
/// be exactly one packet size's fragment capacity (1611 for Regular).
pub fn regular_plaintext<R: RngCore + CryptoRng>(
    rng: &mut R,
    recipient_encryption: &X25519Public,
    surb_ack: &[u8],
    fragment: &[u8],
) -> Result<Vec<u8>, PayloadError> {
    regular_plaintext_keyed(rng, recipient_encryption, surb_ack, fragment).map(|(p, _)| p)
}

/// As [`regular_plaintext`], also returning the ephemeral public key: the
/// first 32 bytes the recipient will be pushed.
pub fn regular_plaintext_keyed<R: RngCore + CryptoRng>(
    rng: &mut R,
    recipient_encryption: &X25519Public,
    surb_ack: &[u8],
    fragment: &[u8],
) -> Result<(Vec<u8>, [u8; 32]), PayloadError> {
    let eph = X25519Secret::random_from_rng(&mut *rng);
    let eph_pub = X25519Public::from(&eph);
    let dh = match crate::sphinx::sender_derivation() {
        // The recipient's key is as fixed as a node's (for loop cover it is
        // our own): the same cache and tables apply; byte-identical X25519.
        crate::sphinx::SenderDerivation::Fast => {
            zeroize::Zeroizing::new(crate::fastsphinx::x25519(
                crate::fastsphinx::NodeKeyCache::global(),
                &eph.to_bytes(),
                recipient_encryption.as_bytes(),
            ))
        }
        crate::sphinx::SenderDerivation::Stock => {
            zeroize::Zeroizing::new(eph.diffie_hellman(recipient_encryption).to_bytes())
        }
    };
    let key = packet_key(&dh)?;
    let plaintext = assemble(surb_ack, eph_pub.as_bytes(), &key, fragment)?;
    Ok((plaintext, eph_pub.to_bytes()))
}

/// Sphinx plaintext of a reply sent through a SURB:
/// `SURB-ACK || BLAKE3(surb_key) || AES-128-CTR(surb_key, 0, fragment)`.
pub fn reply_plaintext(
    surb_key: &[u8; SURB_KEY_SIZE],
    surb_ack: &[u8],
    fragment: &[u8],
) -> Result<Vec<u8>, PayloadError> {
    assemble(surb_ack, &reply_key_digest(surb_key), surb_key, fragment)
}

/// What a client got pushed by its gateway, judged by length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PushedKind {
    /// A 21-byte ack.
    Ack,
    /// A message of this packet size (`plaintext_size - 405` bytes).
    Message(PacketSize),
}

/// Classify a pushed plaintext by its length.
pub fn classify_pushed(len: usize) -> Option<PushedKind> {
    if len == ACK_PLAINTEXT_SIZE {
        return Some(PushedKind::Ack);
    }
    PacketSize::ALL
        .into_iter()
        .filter(|s| *s != PacketSize::Ack)
        .find(|s| s.plaintext_size() - SURB_ACK_SIZE == len)
        .map(PushedKind::Message)
}

/// Where the client keeps the keys of the reply SURBs it handed out, looked up
/// by digest. A key is single use: `take` removes it.
pub trait ReplyKeyStore {
    /// Remove and return the key whose BLAKE3 digest is `digest`, if any.
    fn take(&mut self, digest: &[u8; 32]) -> Option<[u8; SURB_KEY_SIZE]>;
}

impl<F> ReplyKeyStore for F
where
    F: FnMut(&[u8; 32]) -> Option<[u8; SURB_KEY_SIZE]>,
{
    fn take(&mut self, digest: &[u8; 32]) -> Option<[u8; SURB_KEY_SIZE]> {
        self(digest)
    }
}

/// A decrypted received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decrypted {
    /// The fragment bytes (still to be checked for cover and reassembled).
    pub fragment: Vec<u8>,
    /// Whether it came through one of our reply SURBs.
    pub reply: bool,
}

/// Decrypt a pushed message (`key_or_digest(32) || ciphertext`): if the first
/// 32 bytes are the digest of a stored reply key, decrypt with that key (and
/// the store forgets it); otherwise treat them as the sender's ephemeral key
/// and use our x25519 key pair. A wrong guess yields garbage, not an error.
pub fn decrypt_message<S: ReplyKeyStore + ?Sized>(
    own: &EncryptionKeyPair,
    message: &[u8],
    reply_keys: &mut S,
) -> Result<Decrypted, PayloadError> {
    if message.len() < PAYLOAD_KEY_SIZE {
        return Err(PayloadError::TooShort(message.len()));
    }
    let mut head = [0u8; PAYLOAD_KEY_SIZE];
    head.copy_from_slice(&message[..PAYLOAD_KEY_SIZE]);
    let mut fragment = message[PAYLOAD_KEY_SIZE..].to_vec();
    if let Some(key) = reply_keys.take(&head) {
        aes128_ctr64(&key, &ZERO_IV, &mut fragment);
        return Ok(Decrypted {
            fragment,
            reply: true,
        });
    }
    let key = packet_key(&own.diffie_hellman(&X25519Public::from(head)))?;
    aes128_ctr64(&key, &ZERO_IV, &mut fragment);
    Ok(Decrypted {
        fragment,
        reply: false,
    })
}

/// A fragment ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedPacket {
    /// Hand this to the gateway (ForwardSphinx).
    pub mix_packet: MixPacket,
    /// Sum of the delays embedded in the data packet.
    pub data_delay: Duration,
    /// Sum of the delays embedded in its SURB-ACK.
    pub ack_delay: Duration,
}

impl PreparedPacket {
    /// Data plus ack delay: the base of the retransmission timeout.
    pub fn total_delay(&self) -> Duration {
        self.data_delay.saturating_add(self.ack_delay)
    }
}

/// The preparer step for one plain or repliable fragment: encrypt it for
/// `recipient`, prefix the SURB-ACK, wrap it in a sphinx packet of the size the
/// fragment length implies over `route` (layer-1, 2, 3 mixes then the
/// recipient's gateway), with hop delays sampled with mean `packet_mean`, and
/// address the result to the route's first hop.
#[allow(clippy::too_many_arguments)]
pub fn prepare_fragment<R: RngCore + CryptoRng>(
    rng: &mut R,
    version: SphinxVersion,
    fragment: &[u8],
    recipient: &Recipient,
    route: &[RouteHop],
    surb_ack: &SurbAck,
    packet_mean: Duration,
    key_rotation: KeyRotation,
) -> Result<PreparedPacket, PayloadError> {
    prepare_fragment_keyed(
        rng,
        version,
        fragment,
        recipient,
        route,
        surb_ack,
        packet_mean,
        key_rotation,
    )
    .map(|(p, _)| p)
}

/// As [`prepare_fragment`], also returning the packet's ephemeral public key
/// (what the recipient is pushed first).
#[allow(clippy::too_many_arguments)]
pub fn prepare_fragment_keyed<R: RngCore + CryptoRng>(
    rng: &mut R,
    version: SphinxVersion,
    fragment: &[u8],
    recipient: &Recipient,
    route: &[RouteHop],
    surb_ack: &SurbAck,
    packet_mean: Duration,
    key_rotation: KeyRotation,
) -> Result<(PreparedPacket, [u8; 32]), PayloadError> {
    let size =
        size_for_fragment(fragment.len()).ok_or(PayloadError::FragmentLength(fragment.len()))?;
    let first_hop = route
        .first()
        .ok_or(PayloadError::Sphinx(SphinxError::RouteLength(0)))?
        .address;
    let (plaintext, eph) =
        regular_plaintext_keyed(rng, recipient.encryption_key(), &surb_ack.bytes, fragment)?;
    let delays = sphinx::sample_delays(rng, packet_mean, route.len());
    let packet = sphinx::build_forward(
        rng,
        version,
        size,
        &plaintext,
        route,
        recipient.identity().as_bytes(),
        &delays,
    )?;
    Ok((
        PreparedPacket {
            mix_packet: MixPacket::new(first_hop, packet, key_rotation),
            data_delay: sphinx::embedded_delay(&delays),
            ack_delay: surb_ack.expected_delay,
        },
        eph,
    ))
}

/// Build the packet of a reply fragment sent through `surb`: its plaintext
/// (`SURB-ACK || key digest || encrypted fragment`, padded to `size`) in the
/// SURB's own header and route. The SURB fixes the delays of its route;
/// they are not known to the sender, so the data delay is taken as three
/// mix hops at `packet_mean` (what Nym's client assumes for its ack
/// timeout), and the SURB-ACK's as built.
pub fn prepare_reply(
    surb: crate::replies::ReplySurb,
    fragment: &[u8],
    surb_ack: &SurbAck,
    size: PacketSize,
    packet_mean: Duration,
) -> Result<PreparedPacket, ReplyPacketError> {
    let rotation = surb.key_rotation();
    let plaintext = reply_plaintext(surb.encryption_key().as_bytes(), &surb_ack.bytes, fragment)?;
    let (packet, first_hop) = surb.apply(&plaintext, size)?;
    Ok(PreparedPacket {
        mix_packet: MixPacket::new(first_hop, packet, rotation),
        data_delay: packet_mean.saturating_mul(REPLY_MIX_HOPS),
        ack_delay: surb_ack.expected_delay,
    })
}

/// Mix hops of a reply SURB's route counted for its data delay.
const REPLY_MIX_HOPS: u32 = 3;

/// Why a reply packet could not be built.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ReplyPacketError {
    /// The reply plaintext could not be assembled.
    #[error("reply payload: {0}")]
    Payload(#[from] PayloadError),
    /// The SURB could not be used.
    #[error("reply SURB: {0}")]
    Surb(#[from] crate::replies::ReplySurbError),
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::ack::{build_surb_ack, recognise_ack, split_surb_ack};
    use crate::keys::IdentityKeyPair;
    use crate::params::FragmentId;
    use crate::sphinx::tests::{four_nodes, TestNode};
    use crate::sphinx::{process, Processed};
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;
    use std::collections::HashMap;

    pub(crate) struct Client {
        pub identity: IdentityKeyPair,
        pub encryption: EncryptionKeyPair,
        pub recipient: Recipient,
    }

    pub(crate) fn client(rng: &mut ChaCha20Rng) -> Client {
        let identity = IdentityKeyPair::generate(rng);
        let encryption = EncryptionKeyPair::generate(rng);
        let gw = IdentityKeyPair::generate(rng).public();
        let recipient = Recipient::new(identity.public(), encryption.public(), gw);
        Client {
            identity,
            encryption,
            recipient,
        }
    }

    /// Route a packet through all nodes; return the final destination and
    /// plaintext.
    pub(crate) fn deliver(nodes: &[TestNode], mut packet: Vec<u8>) -> ([u8; 32], Vec<u8>) {
        for node in nodes {
            match process(&packet, &node.secret).expect("process") {
                Processed::Forward { packet: p, .. } => packet = p,
                Processed::Final {
                    destination,
                    plaintext,
                } => return (destination, plaintext),
            }
        }
        panic!("no final hop")
    }

    fn no_replies(_: &[u8; 32]) -> Option<[u8; 16]> {
        None
    }

    #[test]
    fn sizes() {
        assert_eq!(size_for_fragment(1611), Some(PacketSize::Regular));
        assert_eq!(
            size_for_fragment(PacketSize::Extended32.plaintext_size() - 437),
            Some(PacketSize::Extended32)
        );
        assert_eq!(size_for_fragment(1610), None);
        assert_eq!(classify_pushed(21), Some(PushedKind::Ack));
        assert_eq!(
            classify_pushed(1643),
            Some(PushedKind::Message(PacketSize::Regular))
        );
        assert_eq!(
            classify_pushed(8192 - 405),
            Some(PushedKind::Message(PacketSize::Extended8))
        );
        assert_eq!(
            classify_pushed(16384 - 405),
            Some(PushedKind::Message(PacketSize::Extended16))
        );
        assert_eq!(
            classify_pushed(32768 - 405),
            Some(PushedKind::Message(PacketSize::Extended32))
        );
        assert_eq!(classify_pushed(1642), None);
        assert_eq!(classify_pushed(0), None);
    }

    #[test]
    fn packet_key_is_hkdf_blake3_of_the_dh() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let bob = EncryptionKeyPair::generate(&mut rng);
        let surb_ack = vec![0x5au8; SURB_ACK_SIZE];
        let fragment = vec![0u8; 1611];
        let pt = regular_plaintext(&mut rng, &bob.public(), &surb_ack, &fragment).expect("pt");
        assert_eq!(pt.len(), 2048);
        assert_eq!(pt[..405], surb_ack[..]);
        let eph: [u8; 32] = pt[405..437].try_into().expect("32");
        let dh = bob.diffie_hellman(&X25519Public::from(eph));
        let mut k = [0u8; 16];
        hkdf_blake3(None, &dh, &[], &mut k).expect("kdf");
        // Fragment of zeros => ciphertext is the raw keystream.
        let mut ks = vec![0u8; 1611];
        aes128_ctr64(&k, &[0; 16], &mut ks);
        assert_eq!(pt[437..], ks[..]);
    }

    #[test]
    fn plain_and_reply_round_trips() {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let bob = EncryptionKeyPair::generate(&mut rng);
        let surb_ack = vec![1u8; SURB_ACK_SIZE];
        let mut fragment = vec![0u8; 1611];
        rng.fill_bytes(&mut fragment);

        let pt = regular_plaintext(&mut rng, &bob.public(), &surb_ack, &fragment).expect("pt");
        let pushed = &pt[SURB_ACK_SIZE..];
        assert_eq!(
            classify_pushed(pushed.len()),
            Some(PushedKind::Message(PacketSize::Regular))
        );
        let d = decrypt_message(&bob, pushed, &mut no_replies).expect("decrypt");
        assert_eq!(
            d,
            Decrypted {
                fragment: fragment.clone(),
                reply: false
            }
        );

        let surb_key = [9u8; 16];
        let mut store: HashMap<[u8; 32], [u8; 16]> = HashMap::new();
        store.insert(reply_key_digest(&surb_key), surb_key);
        let rpt = reply_plaintext(&surb_key, &surb_ack, &fragment).expect("reply");
        assert_eq!(rpt.len(), 2048);
        assert_eq!(rpt[405..437], *blake3::hash(&surb_key).as_bytes());
        let mut take = |d: &[u8; 32]| store.remove(d);
        let d = decrypt_message(&bob, &rpt[SURB_ACK_SIZE..], &mut take).expect("reply");
        assert!(d.reply);
        assert_eq!(d.fragment, fragment);
        // Single use: a second copy is not recognised as a reply any more.
        let d = decrypt_message(&bob, &rpt[SURB_ACK_SIZE..], &mut take).expect("again");
        assert!(!d.reply);
        assert_ne!(d.fragment, fragment);

        assert_eq!(
            regular_plaintext(&mut rng, &bob.public(), &surb_ack[1..], &fragment),
            Err(PayloadError::SurbAckLength(404))
        );
        assert_eq!(
            reply_plaintext(&surb_key, &surb_ack, &fragment[1..]),
            Err(PayloadError::FragmentLength(1610))
        );
        assert_eq!(
            decrypt_message(&bob, &[0; 31], &mut no_replies),
            Err(PayloadError::TooShort(31))
        );
    }

    /// The preparer output end to end: sender → 3 mixes → recipient's gateway
    /// (split) → recipient decrypts; the ack goes back to the sender.
    #[test]
    fn prepared_fragment_end_to_end_with_ack() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let alice = client(&mut rng);
        let bob = client(&mut rng);
        let ack_key = crate::keys::AckKey::generate(&mut rng);
        let data_nodes = four_nodes(&mut rng);
        let ack_nodes = four_nodes(&mut rng);
        let data_route: Vec<RouteHop> = data_nodes.iter().map(|n| n.hop).collect();
        let ack_route: Vec<RouteHop> = ack_nodes.iter().map(|n| n.hop).collect();
        let id = FragmentId {
            set_id: 4242,
            position: 2,
        };
        let mut fragment = vec![0u8; 1611];
        rng.fill_bytes(&mut fragment);

        for version in [SphinxVersion::Seeds259, SphinxVersion::Legacy258] {
            let surb = build_surb_ack(
                &mut rng,
                version,
                &ack_key,
                id,
                &ack_route,
                &alice.identity.public_bytes(),
                Duration::from_millis(15),
            )
            .expect("surb");
            let prepared = prepare_fragment(
                &mut rng,
                version,
                &fragment,
                &bob.recipient,
                &data_route,
                &surb,
                Duration::from_millis(15),
                KeyRotation::Odd,
            )
            .expect("prepare");
            let mp = &prepared.mix_packet;
            assert_eq!(mp.next_hop, data_route[0].address);
            assert_eq!(mp.key_rotation, KeyRotation::Odd);
            assert_eq!(mp.packet.len(), 2413);
            assert_eq!(prepared.ack_delay, surb.expected_delay);
            assert_eq!(
                prepared.total_delay(),
                prepared.data_delay + surb.expected_delay
            );

            // Sphinx payload layout at the final hop, through the crate: the
            // 0x01 marker lands at payload byte 16 + 2048 = 2064.
            let mut bytes = mp.packet.clone();
            for (i, node) in data_nodes.iter().enumerate() {
                let p = sphinx_packet::SphinxPacket::from_bytes(&bytes)
                    .expect("parse")
                    .process(&node.secret)
                    .expect("process");
                match p.data {
                    sphinx_packet::ProcessedPacketData::ForwardHop {
                        next_hop_packet, ..
                    } => bytes = next_hop_packet.to_bytes(),
                    sphinx_packet::ProcessedPacketData::FinalHop { payload, .. } => {
                        assert_eq!(i, 3);
                        let raw = payload.as_bytes();
                        assert_eq!(raw.len(), 2065);
                        assert_eq!(raw[..16], [0u8; 16]);
                        assert_eq!(raw[2064], 1);
                    }
                }
            }

            let (dest, plaintext) = deliver(&data_nodes, mp.packet.clone());
            assert_eq!(dest, bob.identity.public_bytes());
            assert_eq!(plaintext.len(), 2048);
            let split = split_surb_ack(&plaintext).expect("split");
            assert_eq!(split.ack_first_hop, ack_route[0].address);
            let d =
                decrypt_message(&bob.encryption, split.message, &mut no_replies).expect("decrypt");
            assert_eq!(d.fragment, fragment);
            assert!(!d.reply);

            let (ack_dest, ack_pt) = deliver(&ack_nodes, split.ack_packet.to_vec());
            assert_eq!(ack_dest, alice.identity.public_bytes());
            assert_eq!(classify_pushed(ack_pt.len()), Some(PushedKind::Ack));
            assert_eq!(recognise_ack(&ack_key, &ack_pt), Ok(id));
        }
    }

    #[test]
    fn prepare_rejects_bad_sizes() {
        let mut rng = ChaCha20Rng::seed_from_u64(4);
        let bob = client(&mut rng);
        let nodes = four_nodes(&mut rng);
        let route: Vec<RouteHop> = nodes.iter().map(|n| n.hop).collect();
        let surb = SurbAck {
            bytes: vec![0; SURB_ACK_SIZE],
            first_hop: route[0].address,
            expected_delay: Duration::ZERO,
        };
        let v = SphinxVersion::Seeds259;
        let r = KeyRotation::Unknown;
        assert_eq!(
            prepare_fragment(
                &mut rng,
                v,
                &[0; 100],
                &bob.recipient,
                &route,
                &surb,
                Duration::ZERO,
                r
            ),
            Err(PayloadError::FragmentLength(100))
        );
        assert_eq!(
            prepare_fragment(
                &mut rng,
                v,
                &[0; 1611],
                &bob.recipient,
                &[],
                &surb,
                Duration::ZERO,
                r
            ),
            Err(PayloadError::Sphinx(SphinxError::RouteLength(0)))
        );
    }

    proptest::proptest! {
        #[test]
        fn receiver_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2000)) {
            let own = EncryptionKeyPair::from_secret_bytes([5; 32]);
            let _ = classify_pushed(bytes.len());
            let _ = decrypt_message(&own, &bytes, &mut no_replies);
        }
    }
}
