//! Reply SURBs, repliable messages and replies end to end, both directions,
//! against `nym-sphinx-anonymous-replies` and `nym-sphinx`'s
//! `MessagePreparer` / `SphinxMessageReceiver`.

mod common;

use std::time::{Duration, Instant};

use common::net::{from_nym, to_nym, Net, TestClient};
use nym_sphinx::message::NymMessage as NymNymMessage;
use nym_sphinx::preparer::MessagePreparer;
use nym_sphinx::receiver::{MessageReceiver, SphinxMessageReceiver};
use nym_sphinx_anonymous_replies::requests::{
    AnonymousSenderTag, RepliableMessage as NymRepliable, RepliableMessageContent,
    ReplyMessage as NymReply, ReplyMessageContent,
};
use nym_sphinx_anonymous_replies::{ReplySurb as NymReplySurb, SurbEncryptionKey};
use nym_sphinx_params::{PacketSize as NymPacketSize, PacketType, SphinxKeyRotation};
use nymd_proto::ack::{self, FinalHopDelivery};
use nymd_proto::chunking::{InsertOutcome, NymMessage, Reassembler};
use nymd_proto::mixpacket::MixPacket;
use nymd_proto::params::{KeyRotation, PacketSize, SphinxVersion};
use nymd_proto::payload;
use nymd_proto::replies::{RepliableContent, RepliableMessage, ReplyMessage, ReplySurb};
use nymd_proto::sphinx::sphinx_node;
use nymd_proto::SenderTag;

const MEAN: Duration = Duration::from_millis(20);

/// Deliver a run of our mix packets to `client` through Nym's nodes, check
/// each arrives at `client`'s gateway, and return what `client`'s Nym
/// receiver reassembles. `reply_key` decrypts replies (else regular packets).
fn nym_receive(
    net: &Net,
    client: &TestClient,
    packets: &[MixPacket],
    reply_key: Option<&SurbEncryptionKey>,
) -> NymNymMessage {
    let mut receiver = SphinxMessageReceiver::new();
    for p in packets {
        let (gw, final_hop, _) = net.nym_deliver(to_nym(p));
        assert_eq!(gw.id, client.gateway.id);
        assert_eq!(
            final_hop.destination.as_bytes(),
            client.identity.public_bytes()
        );
        let mut msg = final_hop.message;
        let fragment_bytes = match reply_key {
            Some(key) => {
                assert_eq!(
                    &msg[..32],
                    key.compute_digest().as_slice(),
                    "reply starts with the SURB key digest"
                );
                receiver
                    .recover_plaintext_from_reply(&mut msg[32..], key.clone())
                    .expect("Nym decrypts reply");
                msg[32..].to_vec()
            }
            None => receiver
                .recover_plaintext_from_regular_packet(&client.nym_encryption_key(), &mut msg)
                .expect("Nym decrypts")
                .to_vec(),
        };
        let fragment = receiver
            .recover_fragment(&fragment_bytes)
            .expect("Nym parses our fragment");
        if let Some((message, _)) = receiver.insert_new_fragment(fragment).expect("reassembly") {
            return message;
        }
    }
    panic!("Nym did not reassemble the message")
}

/// Deliver Nym's mix packets to our `client` through our nodes and reassemble
/// with our code; `reply_keys` holds SURB keys we handed out.
fn ours_receive(
    net: &Net,
    client: &TestClient,
    packets: Vec<nym_sphinx_forwarding::packet::MixPacket>,
    reply_keys: &mut Vec<[u8; 16]>,
    expect_reply: bool,
) -> NymMessage {
    let mut reassembler = Reassembler::default();
    for p in packets {
        let ours = from_nym(p);
        let (gw, dest, plaintext, size) = net.ours_deliver(&ours);
        assert_eq!(gw.id, client.gateway.id);
        assert_eq!(dest, client.identity.public_bytes());
        let FinalHopDelivery::Message(split) =
            ack::split_final_hop(size, &plaintext).expect("split")
        else {
            panic!("data packet expected")
        };
        let mut store = |digest: &[u8; 32]| {
            let pos = reply_keys
                .iter()
                .position(|k| payload::reply_key_digest(k) == *digest)?;
            Some(reply_keys.remove(pos))
        };
        let decrypted = payload::decrypt_message(&client.encryption, split.message, &mut store)
            .expect("decrypt");
        assert_eq!(decrypted.reply, expect_reply);
        if let InsertOutcome::Complete(m) = reassembler
            .insert_bytes(&decrypted.fragment, Instant::now())
            .expect("we parse Nym's fragment")
            .outcome
        {
            return m.into_message().expect("unpad and parse");
        }
    }
    panic!("we did not reassemble the message")
}

/// Nym's client A sends a repliable message with reply SURBs to our client B;
/// we read the sender tag, data and SURBs; B answers through one of Nym's
/// SURBs (our chunking, SURB-ACK, reply encryption, SURB application) and
/// Nym's A decrypts the reply with the SURB's key and reassembles it.
#[test]
fn nym_surbs_carry_our_reply() {
    let net = Net::new();
    let a = TestClient::new(700, &net.gateways[0]);
    let b = TestClient::new(800, &net.gateways[1]);
    let topology = net.nym_topology(5);
    let mut preparer =
        MessagePreparer::new(common::nym_rng(5), false, a.theirs(), MEAN, MEAN, false);

    let surbs = preparer
        .generate_reply_surbs(3, &topology)
        .expect("Nym builds SURBs");
    let surb_keys: Vec<SurbEncryptionKey> =
        surbs.iter().map(|s| s.encryption_key().clone()).collect();
    let tag = AnonymousSenderTag::from_bytes(common::bytes::<16>(6));
    let data = b"hello from a nym client".to_vec();
    let fragments = preparer.pad_and_split_message(
        NymNymMessage::new_repliable(NymRepliable::new_data(data.clone(), tag, surbs)),
        NymPacketSize::RegularPacket,
    );
    let packets: Vec<_> = fragments
        .into_iter()
        .map(|f| {
            preparer
                .prepare_chunk_for_sending(
                    f,
                    &topology,
                    &a.nym_ack_key(),
                    &b.theirs(),
                    PacketType::Mix,
                )
                .expect("prepare")
                .mix_packet
        })
        .collect();
    let received = ours_receive(&net, &b, packets, &mut Vec::new(), false);
    let NymMessage::Repliable(RepliableMessage {
        sender_tag,
        content,
    }) = received
    else {
        panic!("repliable message expected, got {received:?}")
    };
    assert_eq!(sender_tag, SenderTag(tag.to_bytes()));
    let RepliableContent::DataV2 { message, surbs } = content else {
        panic!("DataV2 expected (stock client with v259 SURBs)")
    };
    assert_eq!(message, data);
    assert_eq!(surbs.len(), 3);
    for (ours, key) in surbs.iter().zip(&surb_keys) {
        assert_eq!(ours.encryption_key().as_bytes().as_slice(), key.as_bytes());
        assert_eq!(ours.key_rotation(), KeyRotation::Odd, "rotation 5 is odd");
        assert!(ours.uses_key_seeds());
        assert_eq!(ours.hops(), 4);
        assert_eq!(ours.first_hop().0, net.mixes[0].addr);
    }

    // B replies through the first SURB.
    let mut rng = common::our_rng(7);
    let reply_data: Vec<u8> = (0..1000u32).map(|i| (i % 256) as u8).collect();
    let reply = NymMessage::Reply(ReplyMessage::Data(reply_data.clone()));
    let capacity = reply.fragment_capacity(PacketSize::Regular);
    let fragments = reply
        .pad(capacity)
        .expect("pad")
        .split_into_fragments(&mut rng, capacity)
        .expect("split");
    assert_eq!(fragments.len(), 1);
    let surb = surbs.into_iter().next().expect("a surb");
    let key = *surb.encryption_key().as_bytes();
    let surb_ack = ack::build_surb_ack(
        &mut rng,
        SphinxVersion::Seeds259,
        &b.ack_key,
        fragments[0].id(),
        &net.ours_route(&b.gateway),
        b.identity.public().as_bytes(),
        MEAN,
    )
    .expect("surb ack");
    let plaintext =
        payload::reply_plaintext(&key, &surb_ack.bytes, &fragments[0].to_bytes()).expect("pt");
    let rotation = surb.key_rotation();
    let (packet, first_hop) = surb.apply(&plaintext, PacketSize::Regular).expect("apply");
    let mix = MixPacket::new(first_hop, packet, rotation);
    let got = nym_receive(&net, &a, &[mix], Some(&surb_keys[0]));
    let NymNymMessage::Reply(NymReply {
        content: ReplyMessageContent::Data { message },
    }) = got
    else {
        panic!("reply data expected, got {got}")
    };
    assert_eq!(message, reply_data);
}

/// Our client A sends a repliable message with our reply SURBs to Nym's
/// client B; Nym reads tag, data and SURBs; Nym's B answers through one of
/// our SURBs with its `MessagePreparer`, and our A recognises the reply by the
/// key digest, decrypts and reassembles it.
#[test]
fn our_surbs_carry_nym_reply() {
    let net = Net::new();
    let a = TestClient::new(900, &net.gateways[0]);
    let b = TestClient::new(1000, &net.gateways[1]);
    let mut rng = common::our_rng(8);

    let route: Vec<_> = net
        .ours_route(&a.gateway)
        .iter()
        .map(|h| sphinx_node(&h.address, &h.key).expect("node"))
        .collect();
    let surbs: Vec<ReplySurb> = (0..2)
        .map(|_| {
            ReplySurb::build_with_mean_delay(
                &mut rng,
                &route,
                &a.identity.public(),
                MEAN,
                SphinxVersion::Seeds259,
            )
            .expect("our SURB")
            .with_key_rotation(KeyRotation::Even)
        })
        .collect();
    let mut keys: Vec<[u8; 16]> = surbs
        .iter()
        .map(|s| *s.encryption_key().as_bytes())
        .collect();
    let surb_bytes: Vec<Vec<u8>> = surbs.iter().map(ReplySurb::to_bytes).collect();
    let tag = SenderTag(common::bytes::<16>(9));
    let data = b"hello from nymd".to_vec();
    let message = NymMessage::Repliable(RepliableMessage::new_data(tag, data.clone(), surbs));
    let capacity = message.fragment_capacity(PacketSize::Regular);
    let packets: Vec<MixPacket> = message
        .pad(capacity)
        .expect("pad")
        .split_into_fragments(&mut rng, capacity)
        .expect("split")
        .iter()
        .map(|f| {
            let surb_ack = ack::build_surb_ack(
                &mut rng,
                SphinxVersion::Seeds259,
                &a.ack_key,
                f.id(),
                &net.ours_route(&a.gateway),
                a.identity.public().as_bytes(),
                MEAN,
            )
            .expect("ack");
            payload::prepare_fragment(
                &mut rng,
                SphinxVersion::Seeds259,
                &f.to_bytes(),
                &b.ours(),
                &net.ours_route(&b.gateway),
                &surb_ack,
                MEAN,
                KeyRotation::Even,
            )
            .expect("prepare")
            .mix_packet
        })
        .collect();
    let got = nym_receive(&net, &b, &packets, None);
    let NymNymMessage::Repliable(NymRepliable {
        sender_tag,
        content: RepliableMessageContent::DataV2(content),
    }) = got
    else {
        panic!("Nym did not read a DataV2 repliable message: {got}")
    };
    assert_eq!(sender_tag.to_bytes(), tag.0);
    assert_eq!(content.message, data);
    assert_eq!(content.reply_surbs.len(), 2);
    for (theirs, ours) in content.reply_surbs.iter().zip(&surb_bytes) {
        assert_eq!(&theirs.inner_reply_surb().to_bytes(), ours);
        assert!(matches!(
            theirs.key_rotation(),
            SphinxKeyRotation::EvenRotation
        ));
    }
    // Nym parses our SURB bytes standalone, too.
    NymReplySurb::from_bytes(&surb_bytes[0]).expect("Nym parses our SURB");

    // Nym's B replies through our first SURB.
    let topology = net.nym_topology(6);
    let mut preparer =
        MessagePreparer::new(common::nym_rng(10), false, b.theirs(), MEAN, MEAN, false);
    let reply_data: Vec<u8> = (0..3000u32).map(|i| (i * 3 % 256) as u8).collect();
    let fragments = preparer.pad_and_split_message(
        NymNymMessage::new_reply(NymReply::new_data_message(reply_data.clone())),
        NymPacketSize::RegularPacket,
    );
    assert_eq!(fragments.len(), 2);
    let mut their_surbs = content.reply_surbs.into_iter();
    let packets: Vec<_> = fragments
        .into_iter()
        .map(|f| {
            let surb = their_surbs.next().expect("one SURB per fragment");
            preparer
                .prepare_reply_chunk_for_sending(
                    f,
                    &topology,
                    &b.nym_ack_key(),
                    surb,
                    PacketType::Mix,
                )
                .expect("Nym applies our SURB")
                .mix_packet
        })
        .collect();
    let got = ours_receive(&net, &a, packets, &mut keys, true);
    assert_eq!(got, NymMessage::Reply(ReplyMessage::Data(reply_data)));
    assert!(keys.is_empty(), "each SURB key used once");
}

/// SURB and reply body encodings compared directly: a SURB request and
/// Nym's SURB bytes parsed by us.
#[test]
fn reply_bodies_and_surb_bytes_both_ways() {
    let net = Net::new();
    let a = TestClient::new(1100, &net.gateways[0]);
    let topology = net.nym_topology(3);
    let mut rng = common::nym_rng(11);
    let surb =
        NymReplySurb::construct(&mut rng, &a.theirs(), MEAN, &topology, false).expect("Nym SURB");
    let bytes = surb.to_bytes();
    let ours = ReplySurb::from_bytes(&bytes).expect("we parse Nym's SURB");
    assert_eq!(ours.to_bytes(), bytes);
    assert_eq!(
        ours.key_digest().as_slice(),
        surb.encryption_key().compute_digest().as_slice()
    );
    assert_eq!(ours.hops(), 4);

    // Reply SURB request, both ways.
    let theirs = NymReply::new_surb_request_message(a.theirs(), 42).into_bytes();
    let mine = ReplyMessage::SurbRequest {
        recipient: Box::new(a.ours()),
        amount: 42,
    };
    assert_eq!(mine.to_bytes(), theirs);
    assert_eq!(ReplyMessage::from_bytes(&theirs).expect("parse"), mine);
    let back = NymReply::try_from_bytes(&mine.to_bytes()).expect("Nym parses");
    assert!(matches!(
        back.content,
        ReplyMessageContent::SurbRequest { amount: 42, .. }
    ));

    // Additional SURBs (V2), ours to theirs.
    let tag = SenderTag(common::bytes::<16>(12));
    let our_surb = ReplySurb::from_bytes(&bytes)
        .expect("parse")
        .with_key_rotation(KeyRotation::Odd);
    let mine = RepliableMessage::new_additional_surbs(tag, vec![our_surb]);
    let encoded = mine.to_bytes().expect("encode");
    let theirs = NymRepliable::try_from_bytes(&encoded).expect("Nym parses additional SURBs");
    let RepliableMessageContent::AdditionalSurbsV2(content) = theirs.content else {
        panic!("AdditionalSurbsV2 expected")
    };
    assert_eq!(content.reply_surbs.len(), 1);
    assert_eq!(content.reply_surbs[0].inner_reply_surb().to_bytes(), bytes);
    assert!(matches!(
        content.reply_surbs[0].key_rotation(),
        SphinxKeyRotation::OddRotation
    ));
    // And theirs to ours.
    let theirs = NymRepliable::new_additional_surbs(
        AnonymousSenderTag::from_bytes(tag.0),
        vec![surb.with_key_rotation(SphinxKeyRotation::OddRotation)],
    )
    .into_bytes();
    assert_eq!(theirs, encoded, "identical encodings");
    assert_eq!(RepliableMessage::from_bytes(&theirs).expect("parse"), mine);
}
