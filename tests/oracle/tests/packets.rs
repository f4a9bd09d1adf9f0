//! Sphinx packets end to end, both directions: fragments with SURB-ACKs and
//! payload encryption, node-side processing, gateway final-hop split, ack
//! recognition and loop cover; against `nym-sphinx` (`MessagePreparer`,
//! `SphinxMessageReceiver`), `nym-sphinx-framing` (node processing),
//! `nym-sphinx-acknowledgements`, `nym-sphinx-cover` and `nym-sphinx-chunking`.

mod common;

use std::time::{Duration, Instant};

use common::net::{from_nym, to_nym, Net, TestClient};
use nym_sphinx::message::NymMessage as NymNymMessage;
use nym_sphinx::preparer::MessagePreparer;
use nym_sphinx::receiver::{MessageReceiver, SphinxMessageReceiver};
use nym_sphinx_params::{PacketSize as NymPacketSize, PacketType};
use nymd_proto::ack::{self, FinalHopDelivery};
use nymd_proto::chunking::{InsertOutcome, NymMessage, Reassembler};
use nymd_proto::params::{FragmentId, KeyRotation, PacketSize, SphinxVersion};
use nymd_proto::payload;

const MEAN: Duration = Duration::from_millis(20);

/// Our sender prepares a multi-fragment plain message (our chunking, our
/// SURB-ACKs, our payload encryption, our sphinx); Nym's nodes route it, Nym's
/// gateway splits off the SURB-ACK, Nym's receiver decrypts and reassembles
/// it; the SURB-ACK Nym's gateway forwards goes back through Nym's nodes to
/// the sender's gateway and Nym recovers our fragment id from it.
#[test]
fn our_fragments_are_read_by_nym() {
    let net = Net::new();
    let sender = TestClient::new(100, &net.gateways[0]);
    let receiver = TestClient::new(200, &net.gateways[1]);
    let mut rng = common::our_rng(1);

    let data: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
    let message = NymMessage::Plain(data.clone());
    let capacity = message.fragment_capacity(PacketSize::Regular);
    let fragments = message
        .pad(capacity)
        .expect("pad")
        .split_into_fragments(&mut rng, capacity)
        .expect("split");
    assert_eq!(fragments.len(), 4);

    let mut nym_receiver = SphinxMessageReceiver::new();
    let mut reconstructed = None;
    for fragment in &fragments {
        let id = fragment.id();
        let surb_ack = ack::build_surb_ack(
            &mut rng,
            SphinxVersion::Seeds259,
            &sender.ack_key,
            id,
            &net.ours_route(&sender.gateway),
            sender.identity.public().as_bytes(),
            MEAN,
        )
        .expect("surb ack");
        let prepared = payload::prepare_fragment(
            &mut rng,
            SphinxVersion::Seeds259,
            &fragment.to_bytes(),
            &receiver.ours(),
            &net.ours_route(&receiver.gateway),
            &surb_ack,
            MEAN,
            KeyRotation::Odd,
        )
        .expect("prepare");

        // Nym's nodes route it to the receiver's gateway.
        let (gw, final_hop, versions) = net.nym_deliver(to_nym(&prepared.mix_packet));
        assert_eq!(gw.id, receiver.gateway.id);
        assert_eq!(versions, vec![259; 4]);
        assert_eq!(
            final_hop.destination.as_bytes(),
            receiver.identity.public_bytes(),
            "destination is the receiver's identity"
        );

        // Nym's receiver decrypts and reassembles.
        let mut msg = final_hop.message.clone();
        assert_eq!(msg.len(), 2048 - 405);
        let plain = nym_receiver
            .recover_plaintext_from_regular_packet(&receiver.nym_encryption_key(), &mut msg)
            .unwrap_or_else(|e| panic!("Nym decrypts our payload: {e}"));
        let nym_fragment = nym_receiver
            .recover_fragment(plain)
            .unwrap_or_else(|e| panic!("Nym parses our fragment: {e}"));
        assert_eq!(
            nym_fragment.fragment_identifier().to_bytes(),
            id.to_bytes(),
            "fragment id"
        );
        if let Some((msg, _)) = nym_receiver
            .insert_new_fragment(nym_fragment)
            .unwrap_or_else(|e| panic!("Nym reassembles: {e}"))
        {
            reconstructed = Some(msg);
        }

        // The SURB-ACK Nym's gateway forwards reaches the sender's gateway.
        let forward_ack = final_hop.forward_ack.expect("a SURB-ACK to forward");
        assert_eq!(forward_ack.next_hop_address(), net.mixes[0].addr);
        let (ack_gw, ack_final, _) = net.nym_deliver(forward_ack);
        assert_eq!(ack_gw.id, sender.gateway.id);
        assert!(ack_final.forward_ack.is_none(), "acks carry no SURB-ACK");
        assert_eq!(
            ack_final.destination.as_bytes(),
            sender.identity.public_bytes()
        );
        assert_eq!(ack_final.message.len(), 21);
        let recovered = nym_sphinx_acknowledgements::identifier::recover_identifier(
            &sender.nym_ack_key(),
            &ack_final.message,
        )
        .expect("Nym recovers the fragment id");
        assert_eq!(recovered, id.to_bytes());
        // And so do we.
        assert_eq!(
            ack::recognise_ack(&sender.ack_key, &ack_final.message),
            Ok(id)
        );
    }
    let reconstructed = reconstructed.expect("message complete");
    assert_eq!(reconstructed.into_inner_data(), data);
}

/// Nym's `MessagePreparer` prepares a multi-fragment plain message; our nodes
/// route it, our gateway split hands the ack on, our client decrypts and
/// reassembles it; the ack comes back through our nodes and we recognise the
/// fragment id it names.
#[test]
fn nym_fragments_are_read_by_us() {
    let net = Net::new();
    let sender = TestClient::new(300, &net.gateways[0]);
    let receiver = TestClient::new(400, &net.gateways[1]);
    let topology = net.nym_topology(7);

    let mut preparer = MessagePreparer::new(
        common::nym_rng(2),
        false,
        sender.theirs(),
        MEAN,
        MEAN,
        false,
    );
    let data: Vec<u8> = (0..5000u32).map(|i| (i * 13 % 253) as u8).collect();
    let fragments = preparer.pad_and_split_message(
        NymNymMessage::new_plain(data.clone()),
        NymPacketSize::RegularPacket,
    );
    assert_eq!(fragments.len(), 4);

    let mut reassembler = Reassembler::default();
    let mut complete = None;
    for fragment in fragments {
        let id = fragment.fragment_identifier().to_bytes();
        let prepared = preparer
            .prepare_chunk_for_sending(
                fragment,
                &topology,
                &sender.nym_ack_key(),
                &receiver.theirs(),
                PacketType::Mix,
            )
            .unwrap_or_else(|e| panic!("Nym prepares: {e}"));
        let ours = from_nym(prepared.mix_packet);
        assert_eq!(ours.key_rotation, KeyRotation::Odd, "rotation id 7 is odd");
        assert_eq!(ours.next_hop.0, net.mixes[0].addr);

        let (gw, destination, plaintext, size) = net.ours_deliver(&ours);
        assert_eq!(gw.id, receiver.gateway.id);
        assert_eq!(destination, receiver.identity.public_bytes());
        let split = match ack::split_final_hop(size, &plaintext).expect("split") {
            FinalHopDelivery::Message(m) => m,
            FinalHopDelivery::Ack(_) => panic!("a data packet"),
        };
        assert_eq!(
            payload::classify_pushed(split.message.len()),
            Some(payload::PushedKind::Message(PacketSize::Regular))
        );
        let decrypted =
            payload::decrypt_message(&receiver.encryption, split.message, &mut |_: &[u8; 32]| {
                None
            })
            .expect("decrypt");
        assert!(!decrypted.reply);
        match reassembler
            .insert_bytes(&decrypted.fragment, Instant::now())
            .expect("we parse Nym's fragment")
            .outcome
        {
            InsertOutcome::Complete(m) => complete = Some(m),
            InsertOutcome::Buffered => {}
            InsertOutcome::Duplicate => panic!("duplicate"),
        }

        // The ack goes back to the sender's gateway through our nodes.
        let ack_packet = split.ack_mix_packet(KeyRotation::Unknown);
        assert_eq!(ack_packet.next_hop.0, net.mixes[0].addr);
        let (ack_gw, ack_dest, ack_plain, ack_size) = net.ours_deliver(&ack_packet);
        assert_eq!(ack_gw.id, sender.gateway.id);
        assert_eq!(ack_dest, sender.identity.public_bytes());
        assert_eq!(ack_size, PacketSize::Ack);
        assert!(matches!(
            ack::split_final_hop(ack_size, &ack_plain),
            Ok(FinalHopDelivery::Ack(_))
        ));
        assert_eq!(
            ack::recognise_ack(&sender.ack_key, &ack_plain).map(FragmentId::to_bytes),
            Ok(id)
        );
    }
    let message = complete
        .expect("message complete")
        .into_message()
        .expect("unpad");
    assert_eq!(message, NymMessage::Plain(data));
}

/// Our loop cover packet: Nym's nodes route it back to our own gateway, Nym's
/// receiver decrypts it and Nym's `is_cover` recognises it; its ack carries
/// Nym's cover fragment id. Packets are version 258 at every hop.
#[test]
fn our_loop_cover_is_cover_to_nym() {
    use nymd_proto::cover::{build_loop_cover, LoopCover};
    let net = Net::new();
    let me = TestClient::new(500, &net.gateways[0]);
    let route = net.ours_route(&me.gateway);
    let own = me.ours();
    let mut rng = common::our_rng(3);
    let packet = build_loop_cover(
        &mut rng,
        &LoopCover {
            own: &own,
            ack_key: &me.ack_key,
            ack_route: &route,
            route: &route,
            ack_mean: MEAN,
            packet_mean: MEAN,
            size: PacketSize::Regular,
            key_rotation: KeyRotation::Even,
            own_keys: Some(&me.encryption),
        },
    )
    .expect("cover");
    let (gw, final_hop, versions) = net.nym_deliver(to_nym(&packet));
    assert_eq!(gw.id, me.gateway.id);
    assert_eq!(versions, vec![258; 4]);
    let mut msg = final_hop.message.clone();
    let receiver = SphinxMessageReceiver::new();
    let plain = receiver
        .recover_plaintext_from_regular_packet(&me.nym_encryption_key(), &mut msg)
        .expect("decrypt");
    assert!(nym_sphinx_cover::is_cover(plain), "Nym sees cover");
    let (_, ack_final, ack_versions) = net.nym_deliver(final_hop.forward_ack.expect("surb-ack"));
    assert_eq!(ack_versions, vec![258; 4]);
    let id = nym_sphinx_acknowledgements::identifier::recover_identifier(
        &me.nym_ack_key(),
        &ack_final.message,
    )
    .expect("id");
    assert_eq!(id, nym_sphinx_chunking::fragment::COVER_FRAG_ID.to_bytes());
}

/// Nym's loop cover packet: our nodes route it, our client decrypts it and our
/// `is_cover` recognises it; its ack decrypts to our cover id.
#[test]
fn nym_loop_cover_is_cover_to_us() {
    let net = Net::new();
    let me = TestClient::new(600, &net.gateways[0]);
    let topology = net.nym_topology(8);
    let packet = nym_sphinx_cover::generate_loop_cover_packet(
        &mut common::nym_rng(4),
        &topology,
        &me.nym_ack_key(),
        &me.theirs(),
        MEAN,
        MEAN,
        NymPacketSize::RegularPacket,
        PacketType::Mix,
    )
    .expect("Nym cover");
    let ours = from_nym(packet);
    assert_eq!(ours.key_rotation, KeyRotation::Even);
    let (gw, dest, plaintext, size) = net.ours_deliver(&ours);
    assert_eq!(gw.id, me.gateway.id);
    assert_eq!(dest, me.identity.public_bytes());
    let FinalHopDelivery::Message(split) = ack::split_final_hop(size, &plaintext).expect("split")
    else {
        panic!("data packet expected")
    };
    let decrypted =
        payload::decrypt_message(&me.encryption, split.message, &mut |_: &[u8; 32]| None)
            .expect("decrypt");
    assert!(nymd_proto::cover::is_cover(&decrypted.fragment));
    assert_eq!(
        decrypted.fragment,
        nymd_proto::cover::cover_content(PacketSize::Regular).expect("content")
    );
    let (_, _, ack_plain, _) = net.ours_deliver(&split.ack_mix_packet(KeyRotation::Unknown));
    assert_eq!(
        ack::recognise_ack(&me.ack_key, &ack_plain),
        Ok(FragmentId::COVER)
    );
}

/// Replay tags: our node-side tag equals Nym's `PartiallyUnwrappedPacket`
/// tag at every hop, for our packets and for Nym's; a packet for another
/// node's key fails the MAC check on both sides.
#[test]
fn replay_tags_match_nym() {
    use nym_sphinx_framing::packet::FramedNymPacket;
    use nym_sphinx_framing::processing::PartiallyUnwrappedPacket;
    use nymd_proto::keys::X25519Secret;
    use nymd_proto::sphinx::{begin_unwrap, replay_tag, Processed};

    let net = Net::new();
    let sender = TestClient::new(1300, &net.gateways[0]);
    let receiver = TestClient::new(1400, &net.gateways[1]);
    let mut rng = common::our_rng(1301);
    let surb_ack = ack::build_surb_ack(
        &mut rng,
        SphinxVersion::Seeds259,
        &sender.ack_key,
        FragmentId {
            set_id: 1,
            position: 1,
        },
        &net.ours_route(&sender.gateway),
        sender.identity.public().as_bytes(),
        MEAN,
    )
    .expect("ack");
    let ours = payload::prepare_fragment(
        &mut rng,
        SphinxVersion::Seeds259,
        &vec![7u8; PacketSize::Regular.fragment_capacity()],
        &receiver.ours(),
        &net.ours_route(&receiver.gateway),
        &surb_ack,
        MEAN,
        KeyRotation::Odd,
    )
    .expect("prepare")
    .mix_packet;
    let topology = net.nym_topology(3);
    let theirs = nym_sphinx_cover::generate_loop_cover_packet(
        &mut common::nym_rng(1302),
        &topology,
        &receiver.nym_ack_key(),
        &receiver.theirs(),
        MEAN,
        MEAN,
        NymPacketSize::RegularPacket,
        PacketType::Mix,
    )
    .expect("cover");

    for start in [ours, from_nym(theirs)] {
        let mut next = start.next_hop;
        let mut bytes = start.packet;
        for _hop in 0..4 {
            let node = net
                .mixes
                .iter()
                .chain(&net.gateways)
                .find(|n| n.addr == next.0)
                .expect("node")
                .clone();
            let secret = X25519Secret::from(node.sphinx_secret);
            let nym_key = nym_sphinx_types::PrivateKey::from(node.sphinx_secret);
            let framed = FramedNymPacket::new(
                nym_sphinx_types::NymPacket::sphinx_from_bytes(&bytes).expect("parse"),
                PacketType::Mix,
                nym_sphinx_params::SphinxKeyRotation::Unknown,
                false,
            );
            let partial = PartiallyUnwrappedPacket::new(framed, &nym_key)
                .unwrap_or_else(|(_, e)| panic!("Nym MAC check: {e}"));
            let nym_tag = *partial.replay_tag().expect("sphinx tag");
            assert_eq!(replay_tag(&bytes, &secret).expect("tag"), nym_tag);
            let unwrap = begin_unwrap(&bytes, &secret).expect("MAC ok");
            assert_eq!(*unwrap.replay_tag(), nym_tag);

            // Another node's key: both refuse.
            let other = net.mixes[(node.id as usize) % 3].sphinx_secret;
            if other != node.sphinx_secret {
                assert!(begin_unwrap(&bytes, &X25519Secret::from(other)).is_err());
                let framed = FramedNymPacket::new(
                    nym_sphinx_types::NymPacket::sphinx_from_bytes(&bytes).expect("parse"),
                    PacketType::Mix,
                    nym_sphinx_params::SphinxKeyRotation::Unknown,
                    false,
                );
                assert!(PartiallyUnwrappedPacket::new(
                    framed,
                    &nym_sphinx_types::PrivateKey::from(other)
                )
                .is_err());
            }
            match unwrap.finish().expect("process") {
                Processed::Forward {
                    next_hop, packet, ..
                } => {
                    next = next_hop;
                    bytes = packet;
                }
                Processed::Final { .. } => break,
            }
        }
    }
}
