//! Whole-message tests through the public API only, with seeded RNGs.
//!
//! 1. A 10 KB message from app bytes to the recipient's app bytes: message →
//!    padding → fragments → one SURB-ACK and sphinx packet per fragment →
//!    hop-by-hop processing by our node code (three mixes and the recipient's
//!    gateway) → the gateway's final-hop split → decryption by the recipient →
//!    reassembly (fragments delivered out of order) → the same bytes; every
//!    SURB-ACK travels back and is recognised as its fragment's id.
//! 2. A SURB conversation: A sends a repliable message carrying reply SURBs
//!    (DataV2 list); B extracts them and replies through them (reply payloads
//!    carry the SURB key digest); A recognises the digest, decrypts and gets
//!    the reply; B asks for more SURBs with a SurbRequest and A answers with
//!    an AdditionalSurbsV2 message that B can use.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use nymd_proto::ack::{build_surb_ack, recognise_ack, split_final_hop, FinalHopDelivery};
use nymd_proto::chunking::{Fragment, InsertOutcome, NymMessage, Reassembler};
use nymd_proto::keys::{AckKey, EncryptionKeyPair, IdentityKeyPair, X25519Public, X25519Secret};
use nymd_proto::mixpacket::MixPacket;
use nymd_proto::params::FragmentId;
use nymd_proto::payload::{decrypt_message, prepare_fragment, reply_plaintext, Decrypted};
use nymd_proto::replies::{RepliableContent, RepliableMessage, ReplyMessage, ReplySurb};
use nymd_proto::sphinx::{process, sphinx_node, Processed, RouteHop};
use nymd_proto::{KeyRotation, NodeAddress, PacketSize, Recipient, SenderTag, SphinxVersion};
use rand::seq::SliceRandom;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

const MEAN: Duration = Duration::from_millis(1);
const CAP: usize = PacketSize::Regular.fragment_capacity();

/// A mix network: three layers of two mixes and some gateways, all run by
/// our node code.
struct Net {
    nodes: HashMap<NodeAddress, X25519Secret>,
    hops: Vec<RouteHop>,
}

impl Net {
    fn new(rng: &mut ChaCha20Rng) -> Self {
        let mut nodes = HashMap::new();
        let mut hops = Vec::new();
        // 0..6: mixes (layer = index / 2); 6..: gateways.
        for i in 0..8u8 {
            let secret = X25519Secret::random_from_rng(&mut *rng);
            let addr = NodeAddress(format!("10.9.{}.{i}:1789", i / 2).parse().expect("addr"));
            hops.push(RouteHop::new(addr, X25519Public::from(&secret)));
            nodes.insert(addr, secret);
        }
        Net { nodes, hops }
    }

    /// A random mix route ending at gateway `gw` (6 or 7).
    fn route_to(&self, rng: &mut ChaCha20Rng, gw: usize) -> Vec<RouteHop> {
        let mut r: Vec<RouteHop> = (0..3)
            .map(|layer| self.hops[layer * 2 + (rng.next_u32() as usize % 2)])
            .collect();
        r.push(self.hops[gw]);
        r
    }

    /// Deliver `mp` hop by hop; returns the final hop's address, the
    /// destination and the plaintext it recovered.
    fn deliver(&self, mp: MixPacket) -> (NodeAddress, [u8; 32], Vec<u8>) {
        let mut current = mp;
        for _ in 0..5 {
            let secret = self.nodes.get(&current.next_hop).expect("known node");
            match process(&current.packet, secret).expect("process") {
                Processed::Forward {
                    next_hop, packet, ..
                } => {
                    current = MixPacket::new(next_hop, packet, current.key_rotation);
                }
                Processed::Final {
                    destination,
                    plaintext,
                } => return (current.next_hop, destination, plaintext),
            }
        }
        panic!("packet looped");
    }
}

/// A client: identity, encryption keys, ack key and its gateway (6 or 7).
struct Client {
    id: IdentityKeyPair,
    enc: EncryptionKeyPair,
    ack_key: AckKey,
    gw: usize,
    address: Recipient,
}

impl Client {
    fn new(rng: &mut ChaCha20Rng, gw: usize, gw_id: &IdentityKeyPair) -> Self {
        let id = IdentityKeyPair::generate(rng);
        let enc = EncryptionKeyPair::generate(rng);
        let ack_key = AckKey::generate(rng);
        let address = Recipient::new(id.public(), enc.public(), gw_id.public());
        Client {
            id,
            enc,
            ack_key,
            gw,
            address,
        }
    }
}

/// A packet's SURB-ACK (as the gateway forwards it) and the message the
/// recipient client gets.
type Delivered = (MixPacket, Vec<u8>);

/// What the recipient's gateway does with a packet that ended at it: split
/// off the SURB-ACK (returned as the ack's mix packet) and hand over the rest.
fn gateway_split(plaintext: &[u8]) -> Delivered {
    match split_final_hop(PacketSize::Regular, plaintext).expect("split") {
        FinalHopDelivery::Message(split) => (
            split.ack_mix_packet(KeyRotation::Unknown),
            split.message.to_vec(),
        ),
        FinalHopDelivery::Ack(_) => panic!("a regular packet is not an ack"),
    }
}

/// Send `message` from `from` to `to` as plain/repliable packets. Returns the
/// fragments' ids and each packet's ack mix packet and delivered message
/// bytes (in a shuffled order).
fn send(
    rng: &mut ChaCha20Rng,
    net: &Net,
    from: &Client,
    to: &Client,
    message: &NymMessage,
    version: SphinxVersion,
) -> (BTreeSet<FragmentId>, Vec<Delivered>) {
    let padded = message.pad(CAP).expect("pad");
    let fragments = padded.split_into_fragments(rng, CAP).expect("split");
    assert_eq!(
        fragments.len(),
        message.required_packets(PacketSize::Regular)
    );
    let mut ids = BTreeSet::new();
    let mut delivered = Vec::new();
    for f in &fragments {
        let bytes = f.to_bytes();
        assert_eq!(bytes.len(), CAP);
        let ack_route = net.route_to(rng, from.gw);
        let surb_ack = build_surb_ack(
            rng,
            version,
            &from.ack_key,
            f.id(),
            &ack_route,
            &from.id.public_bytes(),
            MEAN,
        )
        .expect("surb ack");
        let route = net.route_to(rng, to.gw);
        let prepared = prepare_fragment(
            rng,
            version,
            &bytes,
            &to.address,
            &route,
            &surb_ack,
            MEAN,
            KeyRotation::Odd,
        )
        .expect("prepare");
        // Client → its gateway as a ForwardSphinx v2 plaintext.
        let forwarded =
            MixPacket::from_v2_bytes(&prepared.mix_packet.to_v2_bytes()).expect("forward");
        let (at, dest, plaintext) = net.deliver(forwarded);
        assert_eq!(at, net.hops[to.gw].address);
        assert_eq!(dest, to.id.public_bytes());
        assert!(ids.insert(f.id()));
        delivered.push(gateway_split(&plaintext));
    }
    delivered.shuffle(rng);
    (ids, delivered)
}

/// The sender's side of acks: each ack reaches the sender's gateway as an
/// ack-size packet and decrypts to one of the outstanding ids.
fn acknowledge(net: &Net, sender: &Client, acks: Vec<MixPacket>, ids: &BTreeSet<FragmentId>) {
    let mut seen = BTreeSet::new();
    for ack in acks {
        assert_eq!(ack.packet_size(), Ok(PacketSize::Ack));
        let (at, dest, plaintext) = net.deliver(ack);
        assert_eq!(at, net.hops[sender.gw].address);
        assert_eq!(dest, sender.id.public_bytes());
        let FinalHopDelivery::Ack(bytes) =
            split_final_hop(PacketSize::Ack, &plaintext).expect("ack")
        else {
            panic!("an ack-size packet is an ack");
        };
        let id = recognise_ack(&sender.ack_key, bytes).expect("recognised");
        assert!(seen.insert(id), "ack recognised twice");
    }
    assert_eq!(&seen, ids);
}

/// The recipient: decrypt each message and reassemble.
fn receive(
    to: &Client,
    delivered: Vec<Vec<u8>>,
    reply_keys: &mut HashMap<[u8; 32], [u8; 16]>,
    expect_reply: bool,
) -> NymMessage {
    let mut r = Reassembler::default();
    let now = Instant::now();
    let mut out = None;
    let n = delivered.len();
    for (i, message) in delivered.into_iter().enumerate() {
        let mut store = |d: &[u8; 32]| reply_keys.remove(d);
        let Decrypted { fragment, reply } =
            decrypt_message(&to.enc, &message, &mut store).expect("decrypt");
        assert_eq!(reply, expect_reply);
        let fragment = Fragment::from_bytes(&fragment).expect("fragment");
        match r.insert(fragment, now).expect("insert").outcome {
            InsertOutcome::Complete(m) => {
                assert_eq!(i + 1, n, "complete only with the last fragment");
                out = Some(m.into_message().expect("unpad"));
            }
            InsertOutcome::Buffered => {}
            InsertOutcome::Duplicate => panic!("no duplicates were sent"),
        }
    }
    assert_eq!(r.buffered_sets(), 0);
    out.expect("message complete")
}

fn setup(seed: u64) -> (ChaCha20Rng, Net, Client, Client) {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let net = Net::new(&mut rng);
    let gw6 = IdentityKeyPair::generate(&mut rng);
    let gw7 = IdentityKeyPair::generate(&mut rng);
    let a = Client::new(&mut rng, 6, &gw6);
    let b = Client::new(&mut rng, 7, &gw7);
    (rng, net, a, b)
}

#[test]
fn ten_kilobyte_message_end_to_end_with_acks() {
    for (seed, version) in [
        (10, SphinxVersion::Seeds259),
        (11, SphinxVersion::Legacy258),
    ] {
        let (mut rng, net, alice, bob) = setup(seed);
        let mut app_bytes = vec![0u8; 10 * 1024];
        rng.fill_bytes(&mut app_bytes);
        let message = NymMessage::Plain(app_bytes.clone());
        let (ids, delivered) = send(&mut rng, &net, &alice, &bob, &message, version);
        assert_eq!(ids.len(), 7, "10 KB over 1611-byte fragments");
        let (acks, messages): (Vec<_>, Vec<_>) = delivered.into_iter().unzip();
        let got = receive(&bob, messages, &mut HashMap::new(), false);
        assert_eq!(got, NymMessage::Plain(app_bytes));
        acknowledge(&net, &alice, acks, &ids);
    }
}

/// A's reply SURBs: built over routes to A's own gateway, keys remembered by
/// digest.
fn make_surbs(
    rng: &mut ChaCha20Rng,
    net: &Net,
    owner: &Client,
    n: usize,
    keys: &mut HashMap<[u8; 32], [u8; 16]>,
) -> Vec<ReplySurb> {
    (0..n)
        .map(|_| {
            let route: Vec<_> = net
                .route_to(rng, owner.gw)
                .iter()
                .map(|h| sphinx_node(&h.address, &h.key).expect("node"))
                .collect();
            let surb = ReplySurb::build_with_mean_delay(
                rng,
                &route,
                &owner.id.public(),
                MEAN,
                SphinxVersion::Seeds259,
            )
            .expect("surb")
            .with_key_rotation(KeyRotation::Odd);
            keys.insert(surb.key_digest(), *surb.encryption_key().as_bytes());
            surb
        })
        .collect()
}

/// B answers through A's SURBs, one per fragment; B's SURB-ACKs return over
/// B's own routes. Returns the SURBs left and what reached A's gateway.
fn reply_through_surbs(
    rng: &mut ChaCha20Rng,
    net: &Net,
    replier: &Client,
    mut surbs: Vec<ReplySurb>,
    reply: &NymMessage,
    surb_owner: &Client,
    ids: &mut BTreeSet<FragmentId>,
) -> (Vec<ReplySurb>, Vec<Delivered>, NodeAddress) {
    let padded = reply.pad(CAP).expect("pad");
    let fragments = padded.split_into_fragments(rng, CAP).expect("split");
    assert!(fragments.len() <= surbs.len(), "enough SURBs for the reply");
    let mut delivered = Vec::new();
    let mut final_at = None;
    for f in fragments {
        let surb = surbs.pop().expect("a SURB");
        let ack_route = net.route_to(rng, replier.gw);
        let surb_ack = build_surb_ack(
            rng,
            SphinxVersion::Seeds259,
            &replier.ack_key,
            f.id(),
            &ack_route,
            &replier.id.public_bytes(),
            MEAN,
        )
        .expect("surb ack");
        let plaintext = reply_plaintext(
            surb.encryption_key().as_bytes(),
            &surb_ack.bytes,
            &f.to_bytes(),
        )
        .expect("reply plaintext");
        let rotation = surb.key_rotation();
        let (packet, first_hop) = surb.apply(&plaintext, PacketSize::Regular).expect("apply");
        let (at, dest, plaintext) = net.deliver(MixPacket::new(first_hop, packet, rotation));
        assert_eq!(dest, surb_owner.id.public_bytes());
        final_at = Some(at);
        assert!(ids.insert(f.id()));
        delivered.push(gateway_split(&plaintext));
    }
    delivered.shuffle(rng);
    (surbs, delivered, final_at.expect("at least one fragment"))
}

#[test]
fn surb_reply_conversation() {
    let (mut rng, net, alice, bob) = setup(20);
    let mut alice_keys = HashMap::new();
    let tag = SenderTag::random(&mut rng);

    // A → B: repliable data with 6 reply SURBs (a DataV2 list).
    let surbs = make_surbs(&mut rng, &net, &alice, 6, &mut alice_keys);
    let question = b"what is the answer?".to_vec();
    let msg = NymMessage::Repliable(RepliableMessage::new_data(tag, question.clone(), surbs));
    let (ids, delivered) = send(&mut rng, &net, &alice, &bob, &msg, SphinxVersion::Seeds259);
    let (acks, messages): (Vec<_>, Vec<_>) = delivered.into_iter().unzip();
    let NymMessage::Repliable(got) = receive(&bob, messages, &mut HashMap::new(), false) else {
        panic!("expected a repliable message");
    };
    acknowledge(&net, &alice, acks, &ids);
    assert_eq!(got.sender_tag, tag);
    let RepliableContent::DataV2 { message, surbs } = got.content else {
        panic!("expected DataV2");
    };
    assert_eq!(message, question);
    assert_eq!(surbs.len(), 6);
    assert!(surbs.iter().all(|s| s.uses_key_seeds() && s.hops() == 4));
    assert!(surbs.iter().all(|s| s.key_rotation() == KeyRotation::Odd));

    // B → A through the SURBs: a 3-fragment reply.
    let mut answer = vec![0u8; 4000];
    rng.fill_bytes(&mut answer);
    let reply = NymMessage::Reply(ReplyMessage::Data(answer.clone()));
    let mut reply_ids = BTreeSet::new();
    let (surbs, delivered, at) =
        reply_through_surbs(&mut rng, &net, &bob, surbs, &reply, &alice, &mut reply_ids);
    assert_eq!(at, net.hops[alice.gw].address);
    assert_eq!(reply_ids.len(), 3);
    let (acks, messages): (Vec<_>, Vec<_>) = delivered.into_iter().unzip();
    let keys_before = alice_keys.len();
    let got = receive(&alice, messages, &mut alice_keys, true);
    assert_eq!(got, NymMessage::Reply(ReplyMessage::Data(answer)));
    assert_eq!(alice_keys.len(), keys_before - 3, "each SURB key used once");
    acknowledge(&net, &bob, acks, &reply_ids);

    // B runs low and asks for more through one of the remaining SURBs.
    assert_eq!(surbs.len(), 3);
    let request = NymMessage::Reply(ReplyMessage::SurbRequest {
        recipient: Box::new(bob.address),
        amount: 5,
    });
    let mut req_ids = BTreeSet::new();
    let (surbs_left, delivered, _) =
        reply_through_surbs(&mut rng, &net, &bob, surbs, &request, &alice, &mut req_ids);
    assert_eq!(surbs_left.len(), 2);
    let (acks, messages): (Vec<_>, Vec<_>) = delivered.into_iter().unzip();
    let got = receive(&alice, messages, &mut alice_keys, true);
    let NymMessage::Reply(ReplyMessage::SurbRequest { recipient, amount }) = got else {
        panic!("expected a SURB request");
    };
    assert_eq!(*recipient, bob.address);
    assert_eq!(amount, 5);
    acknowledge(&net, &bob, acks, &req_ids);

    // A answers with 5 more SURBs (AdditionalSurbsV2) to the requesting
    // address; B gets them with the same sender tag and can use them.
    let more = make_surbs(&mut rng, &net, &alice, 5, &mut alice_keys);
    let msg = NymMessage::Repliable(RepliableMessage::new_additional_surbs(tag, more));
    let (ids, delivered) = send(&mut rng, &net, &alice, &bob, &msg, SphinxVersion::Seeds259);
    let (acks, messages): (Vec<_>, Vec<_>) = delivered.into_iter().unzip();
    let NymMessage::Repliable(got) = receive(&bob, messages, &mut HashMap::new(), false) else {
        panic!("expected a repliable message");
    };
    acknowledge(&net, &alice, acks, &ids);
    assert_eq!(got.sender_tag, tag);
    let RepliableContent::AdditionalSurbsV2 { surbs: more } = got.content else {
        panic!("expected AdditionalSurbsV2");
    };
    assert_eq!(more.len(), 5);

    let last = NymMessage::Reply(ReplyMessage::Data(b"thanks".to_vec()));
    let mut last_ids = BTreeSet::new();
    let (_, delivered, _) =
        reply_through_surbs(&mut rng, &net, &bob, more, &last, &alice, &mut last_ids);
    let (acks, messages): (Vec<_>, Vec<_>) = delivered.into_iter().unzip();
    let got = receive(&alice, messages, &mut alice_keys, true);
    assert_eq!(got.into_data(), b"thanks");
    acknowledge(&net, &bob, acks, &last_ids);
}
