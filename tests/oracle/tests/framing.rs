//! Node-to-node framing (packet versions 7 and 8) against
//! `nym-sphinx-framing`'s `NymCodec`, both directions, over streams cut into
//! arbitrary chunks.

mod common;

use std::time::Duration;

use bytes::BytesMut;
use common::net::{Net, TestClient};
use nym_sphinx_framing::codec::NymCodec;
use nym_sphinx_framing::packet::FramedNymPacket;
use nym_sphinx_params::{PacketType, SphinxKeyRotation};
use nym_sphinx_types::NymPacket;
use nymd_proto::ack;
use nymd_proto::mixpacket::{encode_frame, FrameDecoder, FrameVersion};
use nymd_proto::params::{KeyRotation, PacketSize, SphinxVersion};
use tokio_util::codec::{Decoder, Encoder};

fn nym_rotation(r: KeyRotation) -> SphinxKeyRotation {
    match r {
        KeyRotation::Unknown => SphinxKeyRotation::Unknown,
        KeyRotation::Odd => SphinxKeyRotation::OddRotation,
        KeyRotation::Even => SphinxKeyRotation::EvenRotation,
    }
}

/// Real sphinx packets of two sizes (a data packet and an ack packet).
fn packets() -> Vec<Vec<u8>> {
    let net = Net::new();
    let me = TestClient::new(1200, &net.gateways[0]);
    let mut rng = common::our_rng(1201);
    let mut out = Vec::new();
    for i in 0..3 {
        let surb_ack = ack::build_surb_ack(
            &mut rng,
            SphinxVersion::Seeds259,
            &me.ack_key,
            nymd_proto::params::FragmentId {
                set_id: 5,
                position: i,
            },
            &net.ours_route(&me.gateway),
            me.identity.public().as_bytes(),
            Duration::from_millis(10),
        )
        .expect("ack");
        out.push(surb_ack.bytes[19..].to_vec());
        let fragment = vec![i; PacketSize::Regular.fragment_capacity()];
        let prepared = nymd_proto::payload::prepare_fragment(
            &mut rng,
            SphinxVersion::Seeds259,
            &fragment,
            &me.ours(),
            &net.ours_route(&me.gateway),
            &surb_ack,
            Duration::from_millis(10),
            KeyRotation::Odd,
        )
        .expect("packet");
        out.push(prepared.mix_packet.packet);
    }
    out
}

const CASES: [(FrameVersion, KeyRotation); 4] = [
    (FrameVersion::V7, KeyRotation::Unknown),
    (FrameVersion::V8, KeyRotation::Unknown),
    (FrameVersion::V8, KeyRotation::Odd),
    (FrameVersion::V8, KeyRotation::Even),
];

/// Same bytes for the same frame; a stream of our frames decodes with Nym's
/// codec and a stream of Nym's frames decodes with ours, fed in odd chunks.
#[test]
fn frames_both_ways() {
    let packets = packets();
    let mut our_stream = Vec::new();
    let mut nym_stream = BytesMut::new();
    let mut expected = Vec::new();
    for (i, p) in packets.iter().enumerate() {
        let (version, rotation) = CASES[i % CASES.len()];
        let ours = encode_frame(version, rotation, p).expect("encode");
        let framed = FramedNymPacket::new(
            NymPacket::sphinx_from_bytes(p).expect("Nym parses our packet"),
            PacketType::Mix,
            nym_rotation(rotation),
            version == FrameVersion::V7,
        );
        let mut theirs = BytesMut::new();
        NymCodec.encode(framed, &mut theirs).expect("Nym encodes");
        assert_eq!(ours, theirs.to_vec(), "frame {version:?} {rotation:?}");
        our_stream.extend_from_slice(&ours);
        nym_stream.extend_from_slice(&theirs);
        expected.push((version, rotation, p.clone()));
    }

    // Ours encoded, Nym decodes (fed in 1000-byte chunks).
    let mut buf = BytesMut::new();
    let mut decoded = Vec::new();
    for chunk in our_stream.chunks(1000) {
        buf.extend_from_slice(chunk);
        while let Some(f) = NymCodec.decode(&mut buf).expect("Nym decodes our stream") {
            decoded.push(f);
        }
    }
    assert_eq!(decoded.len(), expected.len());
    for (f, (version, rotation, p)) in decoded.iter().zip(&expected) {
        assert_eq!(f.packet().to_bytes().expect("bytes"), *p);
        assert_eq!(f.key_rotation() as u8, rotation.to_byte());
        assert_eq!(
            f.header().packet_version.is_initial(),
            *version == FrameVersion::V7
        );
        assert_eq!(f.packet_size().size(), p.len());
    }

    // Nym encoded, ours decodes (fed in 777-byte chunks).
    let mut decoder = FrameDecoder::new();
    let mut frames = Vec::new();
    for chunk in nym_stream.chunks(777) {
        decoder.push(chunk).expect("we decode Nym's stream");
        while let Some(f) = decoder.pop() {
            frames.push(f);
        }
    }
    assert_eq!(frames.len(), expected.len());
    for (f, (version, rotation, p)) in frames.iter().zip(&expected) {
        assert_eq!(f.header.version, *version);
        assert_eq!(f.header.key_rotation, *rotation);
        assert_eq!(f.packet, *p);
    }
}
