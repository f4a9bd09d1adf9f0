//! End-to-end tests against the embedded local mixnet (`nymd-localnet`):
//! real mixnodes and gateways on loopback sockets, topology from its
//! nym-api directory over HTTP or from its topology file. Every wait is
//! bounded; nothing asserts on timing.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use nymd_localnet::config::{DelayPolicy, LocalnetConfig};
use nymd_localnet::network::Localnet;
use nymd_mixnet::{
    register_with, start, ClientConfig, ClientEvent, ClientHandle, ClientKeys, CoreConfig,
    ErrorKind, GatewayConfig, GatewaySelection, GatewayState, Lane, OutgoingMessage,
    ReceivedMessage, Shared, SharedConfig, TopologySource, Url,
};
use nymd_proto::keys::{EncryptionKeyPair, IdentityKeyPair};
use nymd_proto::Recipient;
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use tokio::sync::mpsc::Receiver;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(90);

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

async fn localnet(per_layer: usize) -> Localnet {
    init_tracing();
    Localnet::start(LocalnetConfig {
        mixnodes_per_layer: per_layer,
        gateways: 2,
        delay: DelayPolicy::NoDelay,
        ..LocalnetConfig::default()
    })
    .await
    .unwrap()
}

/// Shared resources reading the localnet's nym-api directory over HTTP.
fn shared_api(net: &Localnet) -> Shared {
    Shared::new(SharedConfig {
        default_source: TopologySource::NymApi(vec![Url::parse(&net.api_url()).unwrap()]),
        ..SharedConfig::default()
    })
    .unwrap()
}

fn gateway_id(net: &Localnet, g: usize) -> [u8; 32] {
    net.gateways()[g].identity.to_bytes()
}

struct Peer {
    handle: ClientHandle,
    events: Receiver<ClientEvent>,
}

async fn peer(shared: &Shared, gateway: [u8; 32], config: ClientConfig) -> Peer {
    let keys = ClientKeys::generate(&mut StdRng::from_entropy());
    let reg = register_with(
        shared,
        config.topology.as_ref(),
        &keys,
        GatewaySelection::Given(gateway),
        &config.gateway,
    )
    .await
    .unwrap();
    let handle = start(shared, keys, reg, config, CancellationToken::new())
        .await
        .unwrap();
    let events = handle.subscribe();
    Peer { handle, events }
}

async fn next_event(events: &mut Receiver<ClientEvent>, what: &str) -> ClientEvent {
    tokio::time::timeout(WAIT, events.recv())
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
        .expect("event stream ended")
}

async fn next_message(events: &mut Receiver<ClientEvent>) -> ReceivedMessage {
    loop {
        match next_event(events, "a message").await {
            ClientEvent::Received(m) => return m,
            ClientEvent::Error { kind, message, .. } => {
                panic!("unexpected error {kind:?}: {message}")
            }
            ClientEvent::GatewayStatus(_) => {}
        }
    }
}

fn plain(to: Recipient, data: Vec<u8>) -> OutgoingMessage {
    OutgoingMessage::Plain {
        recipient: to,
        data,
        lane: Lane::General,
    }
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    StdRng::from_entropy().fill_bytes(&mut v);
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchange_over_the_localnet_with_api_topology() {
    let net = localnet(1).await;
    let shared = shared_api(&net);
    let mut a = peer(&shared, gateway_id(&net, 0), ClientConfig::for_tests()).await;
    let mut b = peer(&shared, gateway_id(&net, 1), ClientConfig::for_tests()).await;

    a.handle
        .send(plain(b.handle.address(), "héllo bob".as_bytes().to_vec()))
        .await
        .unwrap();
    let m = next_message(&mut b.events).await;
    assert_eq!(m.data, "héllo bob".as_bytes());
    assert_eq!(m.sender_tag, None);

    let binary: Vec<u8> = (0..=255u8).rev().cycle().take(3000).collect();
    b.handle
        .send(plain(a.handle.address(), binary.clone()))
        .await
        .unwrap();
    assert_eq!(next_message(&mut a.events).await.data, binary);

    a.handle
        .send(plain(b.handle.address(), Vec::new()))
        .await
        .unwrap();
    assert!(next_message(&mut b.events).await.data.is_empty());

    let big = random_bytes(1024 * 1024);
    a.handle
        .send(plain(b.handle.address(), big.clone()))
        .await
        .unwrap();
    let got = next_message(&mut b.events).await;
    assert_eq!(got.data.len(), big.len());
    assert!(got.data == big, "1 MB message corrupted");
    assert_eq!(a.handle.stats().gateway_state, GatewayState::Connected);
    a.handle.shutdown().await;
    b.handle.shutdown().await;
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn surb_reply_conversation_over_the_localnet_with_topology_file() {
    let net = localnet(1).await;
    let source = TopologySource::File(net.topology_path().to_path_buf());
    let shared = Shared::new(SharedConfig {
        default_source: source.clone(),
        ..SharedConfig::default()
    })
    .unwrap();
    let mut a = peer(&shared, gateway_id(&net, 0), ClientConfig::for_tests()).await;
    let mut b = peer(&shared, gateway_id(&net, 1), ClientConfig::for_tests()).await;

    a.handle
        .send(OutgoingMessage::Anonymous {
            recipient: b.handle.address(),
            data: b"knock knock".to_vec(),
            reply_surbs: 2,
            lane: Lane::General,
        })
        .await
        .unwrap();
    let m = next_message(&mut b.events).await;
    assert_eq!(m.data, b"knock knock");
    let tag = m.sender_tag.expect("sender tag");

    b.handle
        .send(OutgoingMessage::Reply {
            sender_tag: tag,
            data: b"who's there?".to_vec(),
            lane: Lane::Connection(5),
        })
        .await
        .unwrap();
    let r = next_message(&mut a.events).await;
    assert_eq!(r.data, b"who's there?");
    assert_eq!(r.sender_tag, None);

    a.handle
        .send(OutgoingMessage::Anonymous {
            recipient: b.handle.address(),
            data: b"mixnet".to_vec(),
            reply_surbs: 0,
            lane: Lane::General,
        })
        .await
        .unwrap();
    assert_eq!(next_message(&mut b.events).await.sender_tag, Some(tag));

    // More fragments than SURBs left: B asks for more, then replies.
    let long = random_bytes(30_000);
    b.handle
        .send(OutgoingMessage::Reply {
            sender_tag: tag,
            data: long.clone(),
            lane: Lane::General,
        })
        .await
        .unwrap();
    assert!(next_message(&mut a.events).await.data == long);
    a.handle.shutdown().await;
    b.handle.shutdown().await;
    net.shutdown().await;
}

/// A layer-2 mixnode (of two) stops while a message's fragments are being
/// sent: the fragments and acks routed through it are lost, retransmitted,
/// and the whole message arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retransmission_when_a_mixnode_stops_mid_transfer() {
    let net = localnet(2).await;
    let shared = shared_api(&net);
    // Paced sending (a packet every 20 ms on average instead of all at
    // once): the message's ~250 fragments take seconds to leave, so the
    // node stops while most of them are still to be sent, and about half of
    // those (and of their acks) are routed through it (the client's
    // topology, fetched before the stop, still lists it).
    // With half of layer 2 gone and the topology still listing it, about
    // three attempts in four fail (the packet or its ack goes through the
    // dead node): nym-client's policy (a constant wait, no cap) is what
    // this test is about. nymd's default (30 retransmissions, waits that
    // double after the 20th) would slow the last fragments down and give
    // up on some at that loss rate (0.75^31 a fragment).
    let paced = ClientConfig::with_core(CoreConfig {
        disable_main_poisson: false,
        message_sending_average_delay: Duration::from_millis(20),
        max_retransmissions: None,
        ack_wait_max: Duration::ZERO,
        ..CoreConfig::for_tests()
    });
    let mut a = peer(&shared, gateway_id(&net, 0), paced).await;
    let mut b = peer(&shared, gateway_id(&net, 1), ClientConfig::for_tests()).await;
    let data = random_bytes(400_000);
    a.handle
        .send(plain(b.handle.address(), data.clone()))
        .await
        .unwrap();
    // Mid-transfer: the first fragments have gone through.
    let started = std::time::Instant::now();
    while a.handle.stats().acks_received == 0 {
        assert!(started.elapsed() < WAIT, "no fragment acknowledged");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let victim = net.layer(2)[0].id;
    net.stop_node(victim).await.unwrap();
    let at_stop = a.handle.stats();
    let got = next_message(&mut b.events).await;
    assert!(got.data == data, "message corrupted");
    let stats = a.handle.stats();
    eprintln!(
        "mixnode stopped with {} packets queued and {} unacknowledged; {} retransmissions",
        at_stop.queued_packets, at_stop.unacked_fragments, stats.retransmissions
    );
    assert!(
        stats.retransmissions > 0,
        "no retransmission; when the node stopped: {at_stop:?}; now: {stats:?}"
    );
    // The client keeps working after the node comes back.
    net.start_node(victim).await.unwrap();
    b.handle
        .send(plain(a.handle.address(), b"got it".to_vec()))
        .await
        .unwrap();
    assert_eq!(next_message(&mut a.events).await.data, b"got it");
    a.handle.shutdown().await;
    b.handle.shutdown().await;
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_after_a_gateway_restart() {
    let net = localnet(1).await;
    let shared = shared_api(&net);
    let fast_reconnect = ClientConfig {
        core: CoreConfig {
            ..CoreConfig::for_tests()
        },
        gateway: GatewayConfig {
            reconnect_initial_backoff: Duration::from_millis(100),
            reconnect_max_backoff: Duration::from_millis(500),
            ..GatewayConfig::default()
        },
        ..ClientConfig::for_tests()
    };
    let mut a = peer(&shared, gateway_id(&net, 0), ClientConfig::for_tests()).await;
    let mut b = peer(&shared, gateway_id(&net, 1), fast_reconnect).await;
    let b_gateway = net.gateways()[1].id;

    net.stop_node(b_gateway).await.unwrap();
    loop {
        if next_event(&mut b.events, "reconnecting").await
            == ClientEvent::GatewayStatus(GatewayState::Reconnecting)
        {
            break;
        }
    }
    net.start_node(b_gateway).await.unwrap();
    loop {
        if next_event(&mut b.events, "connected").await
            == ClientEvent::GatewayStatus(GatewayState::Connected)
        {
            break;
        }
    }
    assert!(b.handle.stats().reconnects >= 1);
    a.handle
        .send(plain(b.handle.address(), b"still there?".to_vec()))
        .await
        .unwrap();
    assert_eq!(next_message(&mut b.events).await.data, b"still there?");
    b.handle
        .send(plain(a.handle.address(), b"yes".to_vec()))
        .await
        .unwrap();
    assert_eq!(next_message(&mut a.events).await.data, b"yes");
    a.handle.shutdown().await;
    b.handle.shutdown().await;
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recipient_with_unknown_gateway_gives_an_error_event() {
    let net = localnet(1).await;
    let shared = shared_api(&net);
    let mut a = peer(&shared, gateway_id(&net, 0), ClientConfig::for_tests()).await;
    let mut rng = StdRng::from_entropy();
    let stranger = Recipient::new(
        IdentityKeyPair::generate(&mut rng).public(),
        EncryptionKeyPair::generate(&mut rng).public(),
        IdentityKeyPair::generate(&mut rng).public(),
    );
    a.handle
        .send(plain(stranger, b"hello?".to_vec()))
        .await
        .unwrap();
    loop {
        if let ClientEvent::Error { kind, .. } = next_event(&mut a.events, "an error").await {
            assert_eq!(kind, ErrorKind::RecipientGatewayUnknown);
            break;
        }
    }
    a.handle.shutdown().await;
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_cover_traffic_over_the_localnet() {
    init_tracing();
    let net = Localnet::start(LocalnetConfig::default()).await.unwrap();
    let shared = shared_api(&net);
    let mut a = peer(&shared, gateway_id(&net, 0), ClientConfig::default()).await;
    let mut b = peer(&shared, gateway_id(&net, 1), ClientConfig::default()).await;
    a.handle
        .send(plain(b.handle.address(), b"poisson".to_vec()))
        .await
        .unwrap();
    assert_eq!(next_message(&mut b.events).await.data, b"poisson");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let s = a.handle.stats();
        if s.cover_packets_sent > 5 && s.cover_packets_received > 0 && s.acks_received > 0 {
            // Received loop cover is counted in bytes too (a pushed
            // plaintext of a regular packet each).
            assert!(
                s.cover_bytes_received >= s.cover_packets_received * 1000,
                "{s:?}"
            );
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{s:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = a.events.try_recv();
    a.handle.shutdown().await;
    b.handle.shutdown().await;
    net.shutdown().await;
}
