//! One data packet and its ack along the whole path, through the public API
//! only: client → gateway (ForwardSphinx v2) → node frames (v7 and v8, fed in
//! small chunks) → three mixes → recipient's gateway (SURB-ACK split) →
//! recipient client; then the ack back to the sender.

use std::time::Duration;

use nymd_proto::ack::{build_surb_ack, recognise_ack, split_final_hop, FinalHopDelivery};
use nymd_proto::keys::{AckKey, EncryptionKeyPair, IdentityKeyPair, X25519Public, X25519Secret};
use nymd_proto::mixpacket::{FrameDecoder, FrameVersion, MixPacket};
use nymd_proto::params::FragmentId;
use nymd_proto::payload::{classify_pushed, decrypt_message, prepare_fragment, PushedKind};
use nymd_proto::sphinx::{begin_unwrap, Processed, RouteHop};
use nymd_proto::{KeyRotation, NodeAddress, PacketSize, Recipient, SphinxVersion};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

struct Node {
    secret: X25519Secret,
    hop: RouteHop,
}

fn nodes(rng: &mut ChaCha20Rng, base: u8) -> Vec<Node> {
    (0..4)
        .map(|i| {
            let secret = X25519Secret::random_from_rng(&mut *rng);
            let addr: std::net::SocketAddr = format!("10.{base}.0.{i}:1789").parse().expect("addr");
            Node {
                hop: RouteHop::new(NodeAddress(addr), X25519Public::from(&secret)),
                secret,
            }
        })
        .collect()
}

/// Send `mp` node to node, framing each hop; returns what the last node got.
fn travel(
    nodes: &[Node],
    mp: MixPacket,
    version: FrameVersion,
    rng: &mut ChaCha20Rng,
) -> (PacketSize, [u8; 32], Vec<u8>) {
    let mut current = mp;
    let mut seen = Vec::new();
    loop {
        let idx = nodes
            .iter()
            .position(|n| n.hop.address == current.next_hop)
            .expect("known next hop");
        seen.push(idx);
        // Over the wire, in random small chunks.
        let wire = current.to_frame(version).expect("frame");
        let mut dec = FrameDecoder::new();
        let mut rest = &wire[..];
        let mut frames = Vec::new();
        while !rest.is_empty() {
            let n = (rng.next_u32() as usize % 700 + 1).min(rest.len());
            dec.push(&rest[..n]).expect("push");
            rest = &rest[n..];
            frames.extend(std::iter::from_fn(|| dec.pop()));
        }
        assert_eq!(frames.len(), 1);
        let frame = frames.remove(0);
        let partial = begin_unwrap(&frame.packet, &nodes[idx].secret).expect("mac");
        assert_eq!(partial.packet_size(), frame.header.size);
        match partial.finish().expect("unwrap") {
            Processed::Forward {
                next_hop, packet, ..
            } => {
                current = MixPacket::new(next_hop, packet, frame.header.key_rotation);
            }
            Processed::Final {
                destination,
                plaintext,
            } => {
                assert_eq!(seen, vec![0, 1, 2, 3]);
                return (frame.header.size, destination, plaintext);
            }
        }
    }
}

#[test]
fn data_packet_and_ack_along_the_whole_path() {
    let mut rng = ChaCha20Rng::seed_from_u64(2026);
    let alice_id = IdentityKeyPair::generate(&mut rng);
    let bob_id = IdentityKeyPair::generate(&mut rng);
    let bob_enc = EncryptionKeyPair::generate(&mut rng);
    let gw = IdentityKeyPair::generate(&mut rng).public();
    let bob = Recipient::new(bob_id.public(), bob_enc.public(), gw);
    let ack_key = AckKey::generate(&mut rng);
    let data_nodes = nodes(&mut rng, 1);
    let ack_nodes = nodes(&mut rng, 2);
    let data_route: Vec<RouteHop> = data_nodes.iter().map(|n| n.hop).collect();
    let ack_route: Vec<RouteHop> = ack_nodes.iter().map(|n| n.hop).collect();

    for (version, frames) in [
        (SphinxVersion::Seeds259, FrameVersion::V7),
        (SphinxVersion::Legacy258, FrameVersion::V8),
    ] {
        let id = FragmentId {
            set_id: 77,
            position: 1,
        };
        let surb = build_surb_ack(
            &mut rng,
            version,
            &ack_key,
            id,
            &ack_route,
            &alice_id.public_bytes(),
            Duration::from_millis(1),
        )
        .expect("surb ack");
        let mut fragment = vec![0u8; PacketSize::Regular.fragment_capacity()];
        rng.fill_bytes(&mut fragment);
        let prepared = prepare_fragment(
            &mut rng,
            version,
            &fragment,
            &bob,
            &data_route,
            &surb,
            Duration::from_millis(1),
            KeyRotation::Even,
        )
        .expect("prepare");

        // Client → entry gateway: ForwardSphinx v2 plaintext.
        let forward = prepared.mix_packet.to_v2_bytes();
        let at_gateway = MixPacket::from_v2_bytes(&forward).expect("parse v2");
        assert_eq!(at_gateway, prepared.mix_packet);

        let (size, dest, plaintext) = travel(&data_nodes, at_gateway, frames, &mut rng);
        assert_eq!(dest, bob_id.public_bytes());
        let FinalHopDelivery::Message(split) = split_final_hop(size, &plaintext).expect("split")
        else {
            panic!("expected a message");
        };
        assert_eq!(
            classify_pushed(split.message.len()),
            Some(PushedKind::Message(PacketSize::Regular))
        );
        let got =
            decrypt_message(&bob_enc, split.message, &mut |_: &[u8; 32]| None).expect("decrypt");
        assert_eq!(got.fragment, fragment);

        // The recipient's gateway forwards the ack with the frame's rotation.
        let ack_mp = split.ack_mix_packet(KeyRotation::Unknown);
        let (size, dest, ack) = travel(&ack_nodes, ack_mp, frames, &mut rng);
        assert_eq!(size, PacketSize::Ack);
        assert_eq!(dest, alice_id.public_bytes());
        let FinalHopDelivery::Ack(ack) = split_final_hop(size, &ack).expect("ack") else {
            panic!("expected an ack");
        };
        assert_eq!(classify_pushed(ack.len()), Some(PushedKind::Ack));
        assert_eq!(recognise_ack(&ack_key, ack), Ok(id));
    }
}
