//! End-to-end tests of the client runtime over real websockets against the
//! in-test network of `support` (real gateways' protocol, real Sphinx).
//! Every wait is bounded; nothing asserts on timing.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use nymd_mixnet::{
    register_with, start, ClientConfig, ClientEvent, ClientHandle, ClientKeys, ErrorKind,
    GatewayConfig, GatewaySelection, GatewayState, Lane, OutgoingMessage, ReceivedMessage, Shared,
    SharedConfig, TopologySource,
};
use nymd_proto::keys::{EncryptionKeyPair, IdentityKeyPair};
use nymd_proto::Recipient;
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use support::MiniNet;
use tokio::sync::mpsc::Receiver;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(60);

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

fn shared_for(net: &MiniNet) -> Shared {
    init_tracing();
    Shared::new(SharedConfig {
        default_source: TopologySource::Fixed(net.topology.clone()),
        ..SharedConfig::default()
    })
    .unwrap()
}

struct Peer {
    handle: ClientHandle,
    events: Receiver<ClientEvent>,
}

async fn peer(net: &MiniNet, shared: &Shared, gateway: usize, config: ClientConfig) -> Peer {
    let keys = ClientKeys::generate(&mut StdRng::from_entropy());
    let reg = register_with(
        shared,
        None,
        &keys,
        GatewaySelection::Given(net.gateway_id(gateway)),
        &GatewayConfig::default(),
    )
    .await
    .unwrap();
    let handle = start(shared, keys, reg, config, CancellationToken::new())
        .await
        .unwrap();
    let events = handle.subscribe();
    Peer { handle, events }
}

async fn next_message(events: &mut Receiver<ClientEvent>) -> ReceivedMessage {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let ev = tokio::time::timeout_at(deadline, events.recv())
            .await
            .expect("timed out waiting for a message")
            .expect("event stream ended");
        match ev {
            ClientEvent::Received(m) => return m,
            ClientEvent::Error { kind, message, .. } => {
                panic!("unexpected error {kind:?}: {message}")
            }
            ClientEvent::GatewayStatus(_) => {}
        }
    }
}

async fn next_error(events: &mut Receiver<ClientEvent>) -> (ErrorKind, String) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let ev = tokio::time::timeout_at(deadline, events.recv())
            .await
            .expect("timed out waiting for an error")
            .expect("event stream ended");
        if let ClientEvent::Error { kind, message, .. } = ev {
            return (kind, message);
        }
    }
}

async fn next_status(events: &mut Receiver<ClientEvent>, want: GatewayState) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let ev = tokio::time::timeout_at(deadline, events.recv())
            .await
            .expect("timed out waiting for a gateway status")
            .expect("event stream ended");
        if ev == ClientEvent::GatewayStatus(want) {
            return;
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
async fn two_identities_exchange_text_binary_empty_and_1mb() {
    let net = MiniNet::start(1, 2).await;
    let shared = shared_for(&net);
    let mut a = peer(&net, &shared, 0, ClientConfig::for_tests()).await;
    let mut b = peer(&net, &shared, 1, ClientConfig::for_tests()).await;
    assert_ne!(a.handle.address().gateway(), b.handle.address().gateway());

    a.handle
        .send(plain(b.handle.address(), b"hello bob".to_vec()))
        .await
        .unwrap();
    let m = next_message(&mut b.events).await;
    assert_eq!(m.data, b"hello bob");
    assert_eq!(m.sender_tag, None);

    let binary: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
    b.handle
        .send(plain(a.handle.address(), binary.clone()))
        .await
        .unwrap();
    assert_eq!(next_message(&mut a.events).await.data, binary);

    a.handle
        .send(plain(b.handle.address(), Vec::new()))
        .await
        .unwrap();
    assert_eq!(next_message(&mut b.events).await.data, Vec::<u8>::new());

    let big = random_bytes(1024 * 1024);
    a.handle
        .send(plain(b.handle.address(), big.clone()))
        .await
        .unwrap();
    let got = next_message(&mut b.events).await;
    assert_eq!(got.data.len(), big.len());
    assert!(got.data == big, "1 MB message corrupted");

    let sa = a.handle.stats();
    assert!(sa.real_packets_sent > 600, "{sa:?}");
    assert_eq!(sa.gateway_state, GatewayState::Connected);
    assert!(sa.bandwidth_remaining > 0);
    let sb = b.handle.stats();
    assert!(sb.messages_received >= 3, "{sb:?}");
    // Acks come back asynchronously; all of them eventually.
    let deadline = tokio::time::Instant::now() + WAIT;
    while a.handle.stats().unacked_fragments > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "acks missing: {:?}",
            a.handle.stats()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(a.handle.stats().acks_received >= sa.real_packets_sent.min(600));
    a.handle.shutdown().await;
    b.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn surb_reply_conversation_with_surb_top_up() {
    let net = MiniNet::start(1, 2).await;
    let shared = shared_for(&net);
    let mut a = peer(&net, &shared, 0, ClientConfig::for_tests()).await;
    let mut b = peer(&net, &shared, 1, ClientConfig::for_tests()).await;

    a.handle
        .send(OutgoingMessage::Anonymous {
            recipient: b.handle.address(),
            data: b"who am I?".to_vec(),
            reply_surbs: 3,
            lane: Lane::General,
        })
        .await
        .unwrap();
    let m = next_message(&mut b.events).await;
    assert_eq!(m.data, b"who am I?");
    let tag = m.sender_tag.expect("anonymous messages carry a sender tag");

    // One SURB per fragment: a short reply uses one.
    b.handle
        .send(OutgoingMessage::Reply {
            sender_tag: tag,
            data: b"a secret".to_vec(),
            lane: Lane::General,
        })
        .await
        .unwrap();
    let r = next_message(&mut a.events).await;
    assert_eq!(r.data, b"a secret");
    assert_eq!(r.sender_tag, None, "replies carry no sender tag");

    // A reply needing more fragments than the two SURBs left: B asks A for
    // more and sends once they arrive.
    let long = random_bytes(20_000);
    b.handle
        .send(OutgoingMessage::Reply {
            sender_tag: tag,
            data: long.clone(),
            lane: Lane::Connection(3),
        })
        .await
        .unwrap();
    let r = next_message(&mut a.events).await;
    assert!(r.data == long, "long reply corrupted");

    // The same tag is reused for the same recipient.
    a.handle
        .send(OutgoingMessage::Anonymous {
            recipient: b.handle.address(),
            data: b"again".to_vec(),
            reply_surbs: 0,
            lane: Lane::General,
        })
        .await
        .unwrap();
    let m = next_message(&mut b.events).await;
    assert_eq!(m.sender_tag, Some(tag));
    a.handle.shutdown().await;
    b.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reply_to_unknown_sender_tag_is_an_error() {
    let net = MiniNet::start(1, 1).await;
    let shared = shared_for(&net);
    let mut a = peer(&net, &shared, 0, ClientConfig::for_tests()).await;
    a.handle
        .send(OutgoingMessage::Reply {
            sender_tag: nymd_proto::SenderTag([7; 16]),
            data: b"hi".to_vec(),
            lane: Lane::General,
        })
        .await
        .unwrap();
    let (kind, _) = next_error(&mut a.events).await;
    assert_eq!(kind, ErrorKind::NoReplySurbs);
    a.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_recipient_gateway_gives_an_error_event() {
    let net = MiniNet::start(1, 1).await;
    let shared = shared_for(&net);
    let mut a = peer(&net, &shared, 0, ClientConfig::for_tests()).await;
    let mut rng = StdRng::from_entropy();
    let stranger = Recipient::new(
        IdentityKeyPair::generate(&mut rng).public(),
        EncryptionKeyPair::generate(&mut rng).public(),
        IdentityKeyPair::generate(&mut rng).public(),
    );
    a.handle
        .send(OutgoingMessage::Plain {
            recipient: stranger,
            data: b"anyone?".to_vec(),
            lane: Lane::Connection(9),
        })
        .await
        .unwrap();
    let (kind, message) = next_error(&mut a.events).await;
    assert_eq!(kind, ErrorKind::RecipientGatewayUnknown, "{message}");
    assert_eq!(a.handle.lane_queue_length(9), 0);
    a.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_arrives_although_a_mixnode_stops_mid_transfer() {
    let net = MiniNet::start(2, 2).await;
    let shared = shared_for(&net);
    let a = peer(&net, &shared, 0, ClientConfig::for_tests()).await;
    let mut b = peer(&net, &shared, 1, ClientConfig::for_tests()).await;
    let data = random_bytes(300_000);
    a.handle
        .send(plain(b.handle.address(), data.clone()))
        .await
        .unwrap();
    // Node 1 is in layer 1, node 4 in layer 2: roughly half of all routes
    // (data and acks) now die.
    net.stop_mixnode(1);
    net.stop_mixnode(4);
    let got = next_message(&mut b.events).await;
    assert!(got.data == data, "message corrupted");
    assert!(
        a.handle.stats().retransmissions > 0,
        "{:?}",
        a.handle.stats()
    );
    a.handle.shutdown().await;
    b.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retransmission_cap_gives_an_error_event() {
    let net = MiniNet::start(1, 2).await;
    let shared = shared_for(&net);
    let config = ClientConfig {
        max_retransmissions: Some(1),
        ack_wait_addition: Duration::from_millis(300),
        ..ClientConfig::for_tests()
    };
    let mut a = peer(&net, &shared, 0, config).await;
    let b = peer(&net, &shared, 1, ClientConfig::for_tests()).await;
    net.stop_mixnode(2);
    a.handle
        .send(OutgoingMessage::Plain {
            recipient: b.handle.address(),
            data: b"lost".to_vec(),
            lane: Lane::Connection(1),
        })
        .await
        .unwrap();
    let (kind, _) = next_error(&mut a.events).await;
    assert_eq!(kind, ErrorKind::RetransmissionsExhausted);
    assert_eq!(a.handle.stats().retransmissions, 1);
    a.handle.shutdown().await;
    b.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_after_gateway_restart_and_gets_stored_messages() {
    let net = MiniNet::start(1, 2).await;
    let shared = shared_for(&net);
    let config = ClientConfig {
        gateway: GatewayConfig {
            reconnect_initial_backoff: Duration::from_millis(100),
            reconnect_max_backoff: Duration::from_millis(500),
            ..GatewayConfig::default()
        },
        ..ClientConfig::for_tests()
    };
    let mut a = peer(&net, &shared, 0, ClientConfig::for_tests()).await;
    let mut b = peer(&net, &shared, 1, config).await;

    net.stop_gateway(1);
    next_status(&mut b.events, GatewayState::Reconnecting).await;
    // Sent while B's gateway is down: it lands in the gateway's store and
    // is pushed right after B re-authenticates.
    a.handle
        .send(plain(b.handle.address(), b"while you were away".to_vec()))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    net.start_gateway(1).await;
    next_status(&mut b.events, GatewayState::Connected).await;
    assert_eq!(
        next_message(&mut b.events).await.data,
        b"while you were away"
    );
    assert!(b.handle.stats().reconnects >= 1);
    assert!(b.handle.last_auth_timestamp() > 0);

    // And the session works both ways.
    b.handle
        .send(plain(a.handle.address(), b"back".to_vec()))
        .await
        .unwrap();
    assert_eq!(next_message(&mut a.events).await.data, b"back");
    a.handle
        .send(plain(b.handle.address(), b"welcome".to_vec()))
        .await
        .unwrap();
    assert_eq!(next_message(&mut b.events).await.data, b"welcome");
    a.handle.shutdown().await;
    b.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_wait_for_a_late_or_slow_subscriber() {
    let net = MiniNet::start(1, 2).await;
    let shared = shared_for(&net);
    let a = peer(&net, &shared, 0, ClientConfig::for_tests()).await;
    // B buffers very little before it stops reading from its gateway.
    let keys = ClientKeys::generate(&mut StdRng::from_entropy());
    let reg = register_with(
        &shared,
        None,
        &keys,
        GatewaySelection::Given(net.gateway_id(1)),
        &GatewayConfig::default(),
    )
    .await
    .unwrap();
    let config = ClientConfig {
        received_buffer_bytes: 2_000,
        event_buffer: 1,
        ..ClientConfig::for_tests()
    };
    let b = start(&shared, keys, reg, config, CancellationToken::new())
        .await
        .unwrap();
    let n = 40usize;
    for i in 0..n {
        a.handle
            .send(plain(
                b.address(),
                format!("message {i} {}", "x".repeat(500)).into_bytes(),
            ))
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut events = b.subscribe();
    let mut got = std::collections::HashSet::new();
    while got.len() < n {
        let m = next_message(&mut events).await;
        got.insert(String::from_utf8(m.data).unwrap());
    }
    for i in 0..n {
        assert!(got.contains(&format!("message {i} {}", "x".repeat(500))));
    }
    a.handle.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_pushed_between_register_and_start_is_kept() {
    let net = MiniNet::start(1, 2).await;
    let shared = shared_for(&net);
    let mut a = peer(&net, &shared, 0, ClientConfig::for_tests()).await;
    let keys = ClientKeys::generate(&mut StdRng::from_entropy());
    let reg = register_with(
        &shared,
        None,
        &keys,
        GatewaySelection::Given(net.gateway_id(1)),
        &GatewayConfig::default(),
    )
    .await
    .unwrap();
    let b_addr = keys.address(nymd_proto::keys::VerifyingKey::from_bytes(&reg.gateway_id).unwrap());
    a.handle
        .send(plain(b_addr, b"early bird".to_vec()))
        .await
        .unwrap();
    // Wait until A got its ack: the packet reached B's gateway (and was
    // pushed on B's registration connection).
    let deadline = tokio::time::Instant::now() + WAIT;
    while a.handle.stats().acks_received == 0 {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let b = start(
        &shared,
        keys,
        reg,
        ClientConfig::for_tests(),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    let mut events = b.subscribe();
    assert_eq!(next_message(&mut events).await.data, b"early bird");
    let _ = a.events.try_recv();
    a.handle.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cover_traffic_and_poisson_stream_with_nym_defaults() {
    let net = MiniNet::start(1, 2).await;
    let shared = shared_for(&net);
    let mut a = peer(&net, &shared, 0, ClientConfig::default()).await;
    let mut b = peer(&net, &shared, 1, ClientConfig::default()).await;
    a.handle
        .send(plain(b.handle.address(), b"through the stream".to_vec()))
        .await
        .unwrap();
    assert_eq!(
        next_message(&mut b.events).await.data,
        b"through the stream"
    );
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let s = a.handle.stats();
        if s.cover_packets_sent > 5 && s.cover_packets_received > 0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{s:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = a.events.try_recv();
    a.handle.shutdown().await;
    b.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lanes_report_and_close() {
    let net = MiniNet::start(1, 2).await;
    let shared = shared_for(&net);
    // A slow main stream so packets stay queued.
    let config = ClientConfig {
        disable_main_poisson: false,
        message_sending_average_delay: Duration::from_millis(500),
        ..ClientConfig::for_tests()
    };
    let a = peer(&net, &shared, 0, config).await;
    let b = peer(&net, &shared, 1, ClientConfig::for_tests()).await;
    a.handle
        .send(OutgoingMessage::Plain {
            recipient: b.handle.address(),
            data: random_bytes(50_000),
            lane: Lane::Connection(42),
        })
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while a.handle.lane_queue_length(42) == 0 {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(a.handle.lane_queue_length(42) > 20);
    assert_eq!(a.handle.lane_queue_length(43), 0);
    a.handle.close_lane(42);
    while a.handle.lane_queue_length(42) != 0 {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    a.handle.shutdown().await;
    b.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uniform_and_latency_based_gateway_selection() {
    let net = MiniNet::start(1, 3).await;
    let shared = shared_for(&net);
    let ids: Vec<[u8; 32]> = (0..3).map(|g| net.gateway_id(g)).collect();
    for sel in [
        GatewaySelection::UniformRandom,
        GatewaySelection::LatencyBased,
    ] {
        let keys = ClientKeys::generate(&mut StdRng::from_entropy());
        let reg = register_with(&shared, None, &keys, sel, &GatewayConfig::default())
            .await
            .unwrap();
        assert!(ids.contains(&reg.gateway_id));
        assert!(reg.listener.starts_with("ws://127.0.0.1:"));
        // The registration authenticates on a fresh connection too.
        let c = start(
            &shared,
            keys,
            reg,
            ClientConfig::for_tests(),
            CancellationToken::new(),
        )
        .await
        .unwrap();
        c.shutdown().await;
    }
}
