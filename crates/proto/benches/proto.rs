//! Costs of the protocol core's hot operations, next to the raw curve
//! operations that bound them. Run with
//! `cargo bench -p nymd-proto -- --warm-up-time 1 --measurement-time 3`;
//! results are recorded in `docs/performance.md`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use nymd_proto::ack::{build_surb_ack, split_final_hop, FinalHopDelivery};
use nymd_proto::chunking::{InsertOutcome, NymMessage, Reassembler};
use nymd_proto::cover::{build_loop_cover, LoopCover};
use nymd_proto::gateway::{
    AuthenticateV2, ClientAwaitingMaterial, GatewayAwaitingMaterial, StoredClient,
    CURRENT_PROTOCOL_VERSION,
};
use nymd_proto::keys::{
    AckKey, EncryptionKeyPair, GatewaySharedKey, IdentityKeyPair, X25519Public, X25519Secret,
};
use nymd_proto::params::FragmentId;
use nymd_proto::payload::prepare_fragment;
use nymd_proto::sphinx::{process, Processed, RouteHop};
use nymd_proto::{KeyRotation, NodeAddress, PacketSize, Recipient, SphinxVersion};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

struct Node {
    secret: X25519Secret,
    hop: RouteHop,
}

fn nodes(rng: &mut ChaCha20Rng, net: u8) -> Vec<Node> {
    (0..4u8)
        .map(|i| {
            let secret = X25519Secret::random_from_rng(&mut *rng);
            let addr = format!("10.{net}.0.{i}:1789").parse().expect("address");
            Node {
                hop: RouteHop::new(NodeAddress(addr), X25519Public::from(&secret)),
                secret,
            }
        })
        .collect()
}

struct Setup {
    rng: ChaCha20Rng,
    alice: IdentityKeyPair,
    bob_enc: EncryptionKeyPair,
    bob: Recipient,
    own: Recipient,
    ack_key: AckKey,
    data: Vec<Node>,
    acks: Vec<Node>,
}

fn setup() -> Setup {
    let mut rng = ChaCha20Rng::seed_from_u64(0xbe7c);
    let alice = IdentityKeyPair::generate(&mut rng);
    let alice_enc = EncryptionKeyPair::generate(&mut rng);
    let bob_id = IdentityKeyPair::generate(&mut rng);
    let bob_enc = EncryptionKeyPair::generate(&mut rng);
    let gw = IdentityKeyPair::generate(&mut rng).public();
    let bob = Recipient::new(bob_id.public(), bob_enc.public(), gw);
    let own = Recipient::new(alice.public(), alice_enc.public(), gw);
    let ack_key = AckKey::generate(&mut rng);
    let data = nodes(&mut rng, 1);
    let acks = nodes(&mut rng, 2);
    Setup {
        rng,
        alice,
        bob_enc,
        bob,
        own,
        ack_key,
        data,
        acks,
    }
}

fn route(nodes: &[Node]) -> Vec<RouteHop> {
    nodes.iter().map(|n| n.hop).collect()
}

/// A regular (v259) data packet with its SURB-ACK, as a sender builds it.
fn regular_packet(s: &mut Setup, fragment: &[u8]) -> Vec<u8> {
    let id = FragmentId {
        set_id: 1234,
        position: 1,
    };
    let ack = build_surb_ack(
        &mut s.rng,
        SphinxVersion::Seeds259,
        &s.ack_key,
        id,
        &route(&s.acks),
        &s.alice.public_bytes(),
        Duration::from_millis(50),
    )
    .expect("surb ack");
    prepare_fragment(
        &mut s.rng,
        SphinxVersion::Seeds259,
        fragment,
        &s.bob,
        &route(&s.data),
        &ack,
        Duration::from_millis(50),
        KeyRotation::Even,
    )
    .expect("prepare")
    .mix_packet
    .packet
}

fn primitives(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let a = EncryptionKeyPair::generate(&mut rng);
    let b = EncryptionKeyPair::generate(&mut rng).public();
    c.bench_function("x25519_dh", |bench| {
        bench.iter(|| black_box(a.diffie_hellman(black_box(&b))))
    });
    let id = IdentityKeyPair::generate(&mut rng);
    let msg = [7u8; 64];
    c.bench_function("ed25519_sign_64B", |bench| {
        bench.iter(|| black_box(id.sign(black_box(&msg))))
    });
}

fn packets(c: &mut Criterion) {
    let mut s = setup();
    let fragment = vec![0xabu8; PacketSize::Regular.fragment_capacity()];

    c.bench_function("build_regular_packet_with_surb_ack_v259", |bench| {
        bench.iter(|| black_box(regular_packet(&mut s, black_box(&fragment))))
    });
    // The same through sphinx-packet's own builder (quadratic blinding
    // chain): the "before" of the fast sender derivation.
    nymd_proto::sphinx::set_sender_derivation(nymd_proto::sphinx::SenderDerivation::Stock);
    c.bench_function("build_regular_packet_with_surb_ack_v259_stock", |bench| {
        bench.iter(|| black_box(regular_packet(&mut s, black_box(&fragment))))
    });
    nymd_proto::sphinx::set_sender_derivation(nymd_proto::sphinx::SenderDerivation::Fast);

    let data_route = route(&s.data);
    let ack_route = route(&s.acks);
    c.bench_function("build_loop_cover_v258", |bench| {
        let params = LoopCover {
            own: &s.own,
            ack_key: &s.ack_key,
            ack_route: &ack_route,
            route: &data_route,
            ack_mean: Duration::from_millis(50),
            packet_mean: Duration::from_millis(50),
            size: PacketSize::Regular,
            key_rotation: KeyRotation::Even,
            own_keys: None,
        };
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        bench.iter(|| black_box(build_loop_cover(&mut rng, &params).expect("cover")))
    });

    // One mix hop: the first node of the route.
    let packet = regular_packet(&mut s, &fragment);
    c.bench_function("process_one_mix_hop_regular", |bench| {
        bench.iter(|| black_box(process(black_box(&packet), &s.data[0].secret).expect("hop")))
    });

    // The last hop: what arrives at the recipient's gateway.
    let mut last = packet.clone();
    for n in &s.data[..3] {
        match process(&last, &n.secret).expect("hop") {
            Processed::Forward { packet, .. } => last = packet,
            Processed::Final { .. } => panic!("early final hop"),
        }
    }
    let gw_secret = &s.data[3].secret;
    c.bench_function("gateway_final_hop_and_split", |bench| {
        bench.iter(
            || match process(black_box(&last), gw_secret).expect("final") {
                Processed::Final { plaintext, .. } => {
                    match split_final_hop(PacketSize::Regular, &plaintext).expect("split") {
                        FinalHopDelivery::Message(split) => {
                            black_box(split.ack_mix_packet(KeyRotation::Even));
                            black_box(split.message.len())
                        }
                        FinalHopDelivery::Ack(a) => a.len(),
                    }
                }
                Processed::Forward { .. } => panic!("not final"),
            },
        )
    });
    // Keep `bob_enc` alive for symmetry with the end-to-end tests.
    black_box(&s.bob_enc);
}

fn gateway(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let client = IdentityKeyPair::generate(&mut rng);
    let gw = IdentityKeyPair::generate(&mut rng);
    c.bench_function("registration_handshake_client_and_gateway", |bench| {
        bench.iter(|| {
            let (c0, init) = ClientAwaitingMaterial::start(
                &mut rng,
                &client,
                gw.public(),
                CURRENT_PROTOCOL_VERSION,
            );
            let (g0, material) = GatewayAwaitingMaterial::start(
                &mut rng,
                &gw,
                init.data().expect("init"),
                CURRENT_PROTOCOL_VERSION,
            )
            .expect("gateway start");
            let (c1, client_material) = c0.on_message(&mut rng, &material).expect("client");
            let (outcome, fin) = g0.on_message(&client_material).expect("gateway");
            let done = c1.on_message(&fin).expect("finalise");
            assert_eq!(done.shared_key, outcome.shared_key);
            black_box(done)
        })
    });

    let key = GatewaySharedKey::from_bytes([4u8; 32]);
    let mut now = 1_750_000_000u64;
    c.bench_function("authenticate_v2_build_and_verify", |bench| {
        bench.iter(|| {
            now += 1;
            let req = AuthenticateV2::new(&mut rng, &key, &client, CURRENT_PROTOCOL_VERSION, now);
            let ok = req
                .verify(now, |_| {
                    Some(StoredClient {
                        shared_key: GatewaySharedKey::from_bytes([4u8; 32]),
                        last_used_timestamp: Some(now - 1),
                    })
                })
                .expect("verify");
            black_box(ok.timestamp)
        })
    });
}

fn chunking(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(4);
    let cap = PacketSize::Regular.fragment_capacity();
    let message = NymMessage::Plain(vec![0x5a; 1024 * 1024]);
    c.bench_function("fragment_1MB_message", |bench| {
        bench.iter(|| {
            let padded = message.pad(cap).expect("pad");
            black_box(padded.split_into_fragments(&mut rng, cap).expect("split"))
        })
    });

    let fragments = message
        .pad(cap)
        .expect("pad")
        .split_into_fragments(&mut rng, cap)
        .expect("split");
    assert_eq!(fragments.len(), 654, "1 MiB is three linked sets");
    c.bench_function("reassemble_1MB_message", |bench| {
        bench.iter_batched(
            || fragments.clone(),
            |frags| {
                let mut r = Reassembler::default();
                let now = Instant::now();
                let mut done = None;
                for f in frags {
                    if let InsertOutcome::Complete(m) = r.insert(f, now).expect("insert").outcome {
                        done = Some(m);
                    }
                }
                let msg = done.expect("complete").into_message().expect("unpad");
                black_box(msg)
            },
            BatchSize::LargeInput,
        )
    });
}

criterion_group!(benches, primitives, packets, gateway, chunking);
criterion_main!(benches);
