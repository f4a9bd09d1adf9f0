//! Tests of reply SURBs (built, serialised, used and unwrapped hop by hop)
//! and of the repliable and reply bodies that carry them.

use std::time::Duration;

use proptest::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use sphinx_packet::header::delays::Delay;
use sphinx_packet::route::{Node, NodeAddressBytes};
use sphinx_packet::{ProcessedPacketData, SphinxPacket};

use super::*;
use crate::address::{NodeAddress, NodeAddressError, Recipient, SenderTag};
use crate::keys::{IdentityKeyPair, VerifyingKey, X25519Public, X25519Secret};
use crate::params::{KeyRotation, KeyRotationError, PacketSize, SphinxVersion, HEADER_SIZE};

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

fn build(rng: &mut ChaCha20Rng, f: &Fixture, version: SphinxVersion) -> (ReplySurb, Vec<Delay>) {
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
    let mixed = RepliableMessage::new_additional_surbs(SenderTag([1; 16]), vec![v1.clone(), v1]);
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
        let _ = crate::message::NymMessage::from_bytes(&bytes);
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
