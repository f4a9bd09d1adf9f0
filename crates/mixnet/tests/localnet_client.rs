//! Client behaviours over the embedded local mixnet (`nymd-localnet`): reply
//! SURB top-ups, the retransmission cap, backpressure towards a late or slow
//! subscriber, pushes before `start`, lanes, gateway selection, counters and
//! acks, and messages for a recipient that is away. The basic exchanges are
//! in `localnet.rs`.
//!
//! Every wait is bounded; nothing asserts on timing. Node counters and
//! client stats are compared only where the protocol fixes them.

#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::time::Duration;

use nymd_localnet::config::{DelayPolicy, LocalnetConfig};
use nymd_localnet::network::Localnet;
use nymd_mixnet::{
    register_with, start, ClientConfig, ClientEvent, ClientHandle, ClientKeys, ClientStats,
    CoreConfig, ErrorKind, GatewayConfig, GatewayRegistration, GatewaySelection, GatewayState,
    Lane, OutgoingMessage, ReceivedMessage, Shared, SharedConfig, TopologySource, Url,
};
use nymd_proto::chunking::NymMessage;
use nymd_proto::keys::{EncryptionKeyPair, IdentityKeyPair, VerifyingKey};
use nymd_proto::replies::ReplyMessage;
use nymd_proto::{PacketSize, Recipient, SenderTag};
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use tokio::sync::mpsc::Receiver;
use tokio_util::sync::CancellationToken;

/// Bound of every single wait.
const WAIT: Duration = Duration::from_secs(90);

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

async fn localnet(per_layer: usize, gateways: usize) -> Localnet {
    init_tracing();
    Localnet::start(LocalnetConfig {
        mixnodes_per_layer: per_layer,
        gateways,
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

/// Quick reconnection, for tests that stop a client's gateway.
fn fast_reconnect() -> ClientConfig {
    ClientConfig {
        gateway: GatewayConfig {
            reconnect_initial_backoff: Duration::from_millis(100),
            reconnect_max_backoff: Duration::from_millis(500),
            ..GatewayConfig::default()
        },
        ..ClientConfig::for_tests()
    }
}

struct Peer {
    handle: ClientHandle,
    events: Receiver<ClientEvent>,
}

async fn register(shared: &Shared, gateway: [u8; 32]) -> (ClientKeys, GatewayRegistration) {
    let keys = ClientKeys::generate(&mut StdRng::from_entropy());
    let reg = register_with(
        shared,
        None,
        &keys,
        GatewaySelection::Given(gateway),
        &GatewayConfig::default(),
    )
    .await
    .unwrap();
    (keys, reg)
}

async fn start_peer(
    shared: &Shared,
    keys: ClientKeys,
    reg: GatewayRegistration,
    config: ClientConfig,
) -> Peer {
    let handle = start(shared, keys, reg, config, CancellationToken::new())
        .await
        .unwrap();
    let events = handle.subscribe();
    Peer { handle, events }
}

async fn peer(shared: &Shared, gateway: [u8; 32], config: ClientConfig) -> Peer {
    let (keys, reg) = register(shared, gateway).await;
    start_peer(shared, keys, reg, config).await
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

/// The next error event: kind, text and lane.
async fn next_error(events: &mut Receiver<ClientEvent>) -> (ErrorKind, String, Option<Lane>) {
    loop {
        match next_event(events, "an error").await {
            ClientEvent::Error {
                kind,
                message,
                lane,
            } => return (kind, message, lane),
            ClientEvent::Received(m) => panic!("unexpected message {m:?}"),
            ClientEvent::GatewayStatus(_) => {}
        }
    }
}

async fn next_status(events: &mut Receiver<ClientEvent>, want: GatewayState) {
    loop {
        match next_event(events, "a gateway status").await {
            ClientEvent::GatewayStatus(s) if s == want => return,
            ClientEvent::Received(m) => panic!("unexpected message {m:?}"),
            _ => {}
        }
    }
}

/// Poll `cond` until it holds (bounded by [`WAIT`]).
async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn on_lane(to: Recipient, data: &[u8], lane: Lane) -> OutgoingMessage {
    OutgoingMessage::Plain {
        recipient: to,
        data: data.to_vec(),
        lane,
    }
}

fn plain(to: Recipient, data: &[u8]) -> OutgoingMessage {
    on_lane(to, data, Lane::General)
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    StdRng::from_entropy().fill_bytes(&mut v);
    v
}

/// Packets (fragments) `msg` takes at the default packet size.
fn fragments(msg: NymMessage) -> u64 {
    msg.required_packets(PacketSize::Regular) as u64
}

fn stranger() -> Recipient {
    let mut rng = StdRng::from_entropy();
    Recipient::new(
        IdentityKeyPair::generate(&mut rng).public(),
        EncryptionKeyPair::generate(&mut rng).public(),
        IdentityKeyPair::generate(&mut rng).public(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn surb_reply_conversation_with_surb_top_up() {
    let net = localnet(1, 2).await;
    let shared = shared_api(&net);
    let mut a = peer(&shared, gateway_id(&net, 0), ClientConfig::for_tests()).await;
    let mut b = peer(&shared, gateway_id(&net, 1), ClientConfig::for_tests()).await;

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

    // Once its message is acknowledged, A sends nothing unless asked.
    until("A's message is acknowledged", || {
        let s = a.handle.stats();
        s.acks_received >= 1 && s.unacked_fragments == 0
    })
    .await;
    let sent_before = a.handle.stats().real_packets_sent;

    // A reply needing more fragments than the two SURBs left: B asks A for
    // more and sends once they arrive.
    let long = random_bytes(20_000);
    assert!(fragments(NymMessage::Reply(ReplyMessage::Data(long.clone()))) > 2);
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
    assert_eq!(r.sender_tag, None);
    // A's only packets since then: its answer to B's request for SURBs.
    assert!(
        a.handle.stats().real_packets_sent > sent_before,
        "no SURB top-up was sent: {:?}",
        a.handle.stats()
    );
    // The reply lane reported the waiting fragments and is empty now.
    assert_eq!(b.handle.lane_queue_length(3), 0);

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
    assert_eq!(m.data, b"again");
    assert_eq!(m.sender_tag, Some(tag));
    a.handle.shutdown().await;
    b.handle.shutdown().await;
    net.shutdown().await;
}

/// Messages the client cannot send at all are reported at once, on their
/// lane, and nothing goes out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsendable_messages_give_an_error_event_on_their_lane() {
    let net = localnet(1, 1).await;
    let shared = shared_api(&net);
    let mut a = peer(&shared, gateway_id(&net, 0), ClientConfig::for_tests()).await;

    // A reply to a sender tag that never sent us SURBs.
    a.handle
        .send(OutgoingMessage::Reply {
            sender_tag: SenderTag([7; 16]),
            data: b"hi".to_vec(),
            lane: Lane::Connection(7),
        })
        .await
        .unwrap();
    let (kind, message, lane) = next_error(&mut a.events).await;
    assert_eq!(kind, ErrorKind::NoReplySurbs, "{message}");
    assert_eq!(lane, Some(Lane::Connection(7)));
    assert_eq!(a.handle.lane_queue_length(7), 0);

    // A recipient whose gateway is not in the topology, plain and
    // anonymous.
    a.handle
        .send(on_lane(stranger(), b"anyone?", Lane::Connection(9)))
        .await
        .unwrap();
    let (kind, message, lane) = next_error(&mut a.events).await;
    assert_eq!(kind, ErrorKind::RecipientGatewayUnknown, "{message}");
    assert_eq!(lane, Some(Lane::Connection(9)));
    assert_eq!(a.handle.lane_queue_length(9), 0);
    a.handle
        .send(OutgoingMessage::Anonymous {
            recipient: stranger(),
            data: b"anyone at all?".to_vec(),
            reply_surbs: 5,
            lane: Lane::General,
        })
        .await
        .unwrap();
    let (kind, message, lane) = next_error(&mut a.events).await;
    assert_eq!(kind, ErrorKind::RecipientGatewayUnknown, "{message}");
    assert_eq!(lane, Some(Lane::General));
    assert_eq!(a.handle.stats().real_packets_sent, 0);

    // The client still works.
    let me = a.handle.address();
    a.handle.send(plain(me, b"still here")).await.unwrap();
    assert_eq!(next_message(&mut a.events).await.data, b"still here");
    a.handle.shutdown().await;
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retransmission_cap_gives_an_error_event() {
    let net = localnet(1, 2).await;
    let shared = shared_api(&net);
    let config = ClientConfig::with_core(CoreConfig {
        max_retransmissions: Some(1),
        ack_wait_addition: Duration::from_millis(300),
        ..CoreConfig::for_tests()
    });
    let mut a = peer(&shared, gateway_id(&net, 0), config).await;
    let b = peer(&shared, gateway_id(&net, 1), ClientConfig::for_tests()).await;
    // The only layer-2 mixnode is down: every packet is lost, so no ack
    // ever comes back.
    net.stop_node(net.layer(2)[0].id).await.unwrap();
    let a_gateway = net.gateways()[0].id;
    let forwarded_before = net.counters(a_gateway).unwrap().received;

    a.handle
        .send(on_lane(b.handle.address(), b"lost", Lane::Connection(1)))
        .await
        .unwrap();
    let (kind, message, lane) = next_error(&mut a.events).await;
    assert_eq!(kind, ErrorKind::RetransmissionsExhausted, "{message}");
    assert_eq!(lane, Some(Lane::Connection(1)));
    let s = a.handle.stats();
    assert_eq!(s.retransmissions, 1, "{s:?}");
    assert_eq!(s.real_packets_sent, 2, "the packet and one retransmission");
    // Abandoned: nothing left to send or to wait for.
    assert_eq!((s.unacked_fragments, s.queued_packets), (0, 0), "{s:?}");
    assert_eq!(a.handle.lane_queue_length(1), 0);
    // A's gateway got exactly those two packets.
    let forwarded = || net.counters(a_gateway).unwrap().received - forwarded_before;
    until("A's gateway has both packets", || forwarded() >= 2).await;
    assert_eq!(forwarded(), 2);
    assert_eq!(b.handle.stats().messages_received, 0);
    a.handle.shutdown().await;
    b.handle.shutdown().await;
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_wait_for_a_late_or_slow_subscriber() {
    let net = localnet(1, 2).await;
    let shared = shared_api(&net);
    let a = peer(&shared, gateway_id(&net, 0), ClientConfig::for_tests()).await;
    // B buffers very little before it stops reading from its gateway, and
    // nobody subscribes yet.
    let (keys, reg) = register(&shared, gateway_id(&net, 1)).await;
    let config = ClientConfig {
        core: CoreConfig {
            received_buffer_bytes: 2_000,
            ..CoreConfig::for_tests()
        },
        event_buffer: 1,
        ..ClientConfig::for_tests()
    };
    let b = start(&shared, keys, reg, config, CancellationToken::new())
        .await
        .unwrap();
    // More single-packet messages than the client's internal queue from its
    // gateway connection holds (256), so its socket is not read for a while.
    let n = 300usize;
    let text = |i: usize| format!("message {i} {}", "x".repeat(500));
    assert_eq!(fragments(NymMessage::Plain(text(n).into_bytes())), 1);
    for i in 0..n {
        a.handle
            .send(plain(b.address(), text(i).as_bytes()))
            .await
            .unwrap();
    }
    // Every message reached B's gateway (it acknowledges only what it
    // pushes or stores) ...
    until("A has every ack", || {
        a.handle.stats().acks_received >= n as u64
    })
    .await;
    // ... and B took in only what fits its buffer.
    until("B holds a message", || b.stats().messages_received >= 1).await;
    let held = b.stats().messages_received;
    assert!(
        held < n as u64,
        "B read {held} messages without a subscriber"
    );

    // A late subscriber that reads slowly at first gets every message.
    let mut events = b.subscribe();
    let mut got = HashSet::new();
    while got.len() < n {
        let m = next_message(&mut events).await;
        got.insert(String::from_utf8(m.data).unwrap());
        if got.len() < 20 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    for i in 0..n {
        assert!(got.contains(&text(i)), "message {i} missing");
    }
    assert_eq!(b.stats().messages_received, n as u64);
    a.handle.shutdown().await;
    b.shutdown().await;
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_pushed_between_register_and_start_is_kept() {
    let net = localnet(1, 2).await;
    let shared = shared_api(&net);
    let a = peer(&shared, gateway_id(&net, 0), ClientConfig::for_tests()).await;
    let (keys, reg) = register(&shared, gateway_id(&net, 1)).await;
    let b_addr = keys.address(VerifyingKey::from_bytes(&reg.gateway_id).unwrap());
    let b_gateway = net.gateways()[1].id;
    a.handle.send(plain(b_addr, b"early bird")).await.unwrap();
    // Wait until A got its ack: the packet reached B's gateway, which
    // pushed it on B's registration connection (nothing was stored).
    until("A's ack", || a.handle.stats().acks_received >= 1).await;
    let c = net.counters(b_gateway).unwrap();
    assert_eq!((c.delivered, c.stored), (1, 0), "{c:?}");

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
    // `start` took the registration connection over: it never had to
    // authenticate.
    assert_eq!(b.last_auth_timestamp(), 0);
    assert_eq!(net.counters(b_gateway).unwrap().stored, 0);
    a.handle.shutdown().await;
    b.shutdown().await;
    net.shutdown().await;
}

/// Packets queue on their connection lane while the gateway is away; the
/// lane reports them and closing it drops them, other lanes unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lanes_report_and_close() {
    let net = localnet(1, 2).await;
    let shared = shared_api(&net);
    // No retransmission within the test: every packet A sends is counted
    // once.
    let mut config = fast_reconnect();
    config.ack_wait_addition = Duration::from_secs(600);
    let mut a = peer(&shared, gateway_id(&net, 0), config).await;
    let mut b = peer(&shared, gateway_id(&net, 1), ClientConfig::for_tests()).await;
    let a_gateway = net.gateways()[0].id;

    // Nothing can be sent while A's gateway is down.
    net.stop_node(a_gateway).await.unwrap();
    next_status(&mut a.events, GatewayState::Reconnecting).await;
    let data = random_bytes(50_000);
    let n = fragments(NymMessage::Plain(data.clone()));
    assert!(n > 20);
    a.handle
        .send(on_lane(b.handle.address(), &data, Lane::Connection(42)))
        .await
        .unwrap();
    until("the message is queued", || {
        a.handle.stats().queued_packets > 0
    })
    .await;
    assert_eq!(a.handle.lane_queue_length(42) as u64, n);
    assert_eq!(a.handle.stats().queued_packets, n);
    assert_eq!(a.handle.lane_queue_length(43), 0);

    a.handle.close_lane(42);
    until("lane 42 is empty", || {
        a.handle.lane_queue_length(42) == 0 && a.handle.stats().queued_packets == 0
    })
    .await;

    // Back online: another lane works, and nothing of lane 42 went out.
    net.start_node(a_gateway).await.unwrap();
    next_status(&mut a.events, GatewayState::Connected).await;
    a.handle
        .send(on_lane(
            b.handle.address(),
            b"other lane",
            Lane::Connection(43),
        ))
        .await
        .unwrap();
    assert_eq!(next_message(&mut b.events).await.data, b"other lane");
    until("A's ack", || a.handle.stats().acks_received >= 1).await;
    let s = a.handle.stats();
    assert_eq!(s.real_packets_sent, 1, "{s:?}");
    assert_eq!(a.handle.lane_queue_length(43), 0);
    assert_eq!(b.handle.stats().messages_received, 1);
    a.handle.shutdown().await;
    b.handle.shutdown().await;
    net.shutdown().await;
}

/// Register with `selection`, check the registration, start the client on
/// it and loop a message through the mixnet; returns the gateway chosen.
async fn register_and_use(net: &Localnet, shared: &Shared, selection: GatewaySelection) -> usize {
    let keys = ClientKeys::generate(&mut StdRng::from_entropy());
    let reg = register_with(shared, None, &keys, selection, &GatewayConfig::default())
        .await
        .unwrap();
    let g = net
        .gateways()
        .iter()
        .position(|n| n.identity.to_bytes() == reg.gateway_id)
        .expect("a gateway of the network");
    assert!(reg.listener.starts_with("ws://127.0.0.1:"));
    assert_eq!(Some(reg.listener.clone()), net.gateways()[g].ws_url());
    let mut c = start_peer(shared, keys, reg, ClientConfig::for_tests()).await;
    let me = c.handle.address();
    c.handle.send(plain(me, b"round trip")).await.unwrap();
    assert_eq!(next_message(&mut c.events).await.data, b"round trip");
    c.handle.shutdown().await;
    g
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uniform_and_latency_based_gateway_selection() {
    let net = localnet(1, 3).await;
    let shared = shared_api(&net);

    // Uniform: twelve picks of three gateways are not all the same (a
    // false failure has probability 3^-11).
    let mut chosen = HashSet::new();
    for _ in 0..12 {
        chosen.insert(register_and_use(&net, &shared, GatewaySelection::UniformRandom).await);
    }
    assert!(chosen.len() >= 2, "always gateway {chosen:?}");

    // Latency-based: the one gateway that answers without the (large)
    // test delay, whichever it is.
    let slow = Duration::from_secs(4);
    for fast in [2usize, 0] {
        for (g, node) in net.gateways().iter().enumerate() {
            let delay = if g == fast { Duration::ZERO } else { slow };
            net.set_client_delay(node.id, delay).unwrap();
        }
        let g = register_and_use(&net, &shared, GatewaySelection::LatencyBased).await;
        assert_eq!(g, fast);
    }
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_1mb_transfer_is_counted_and_fully_acknowledged() {
    let net = localnet(1, 2).await;
    let shared = shared_api(&net);
    let a = peer(&shared, gateway_id(&net, 0), ClientConfig::for_tests()).await;
    let mut b = peer(&shared, gateway_id(&net, 1), ClientConfig::for_tests()).await;
    assert_ne!(a.handle.address().gateway(), b.handle.address().gateway());

    let big = random_bytes(1024 * 1024);
    let n = fragments(NymMessage::Plain(big.clone()));
    a.handle
        .send(plain(b.handle.address(), &big))
        .await
        .unwrap();
    let got = next_message(&mut b.events).await;
    assert_eq!(got.data.len(), big.len());
    assert!(got.data == big, "1 MB message corrupted");

    // Acks come back asynchronously; all of them eventually, one per
    // fragment.
    until("every ack", || {
        let s = a.handle.stats();
        s.acks_received >= n && s.unacked_fragments == 0
    })
    .await;
    let sa: ClientStats = a.handle.stats();
    assert_eq!(sa.acks_received, n, "{sa:?}");
    assert!(sa.real_packets_sent > 600, "{sa:?}");
    assert!(
        sa.real_packets_sent >= n && sa.real_packets_sent <= n + sa.retransmissions,
        "{sa:?}"
    );
    assert_eq!(sa.gateway_state, GatewayState::Connected);
    assert!(sa.bandwidth_remaining > 0);
    let sb = b.handle.stats();
    assert_eq!(sb.messages_received, 1, "{sb:?}");
    assert!(sb.real_packets_received >= n, "{sb:?}");
    a.handle.shutdown().await;
    b.handle.shutdown().await;
    net.shutdown().await;
}

/// A message sent while the recipient's gateway is down arrives once it is
/// back (the sender retransmits); one sent while the recipient's client is
/// gone waits in the gateway's store and is pushed when it authenticates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_for_an_absent_recipient_arrive_when_it_is_back() {
    let net = localnet(1, 2).await;
    let shared = shared_api(&net);
    let mut a = peer(&shared, gateway_id(&net, 0), ClientConfig::for_tests()).await;
    let (b_keys, b_reg) = register(&shared, gateway_id(&net, 1)).await;
    let mut b = start_peer(&shared, b_keys.clone(), b_reg.clone(), fast_reconnect()).await;
    let b_addr = b.handle.address();
    let b_gateway = net.gateways()[1].id;

    // B's gateway is down: the message is lost on the way until it is back.
    net.stop_node(b_gateway).await.unwrap();
    next_status(&mut b.events, GatewayState::Reconnecting).await;
    a.handle
        .send(plain(b_addr, b"while you were away"))
        .await
        .unwrap();
    until("A retransmits", || a.handle.stats().retransmissions >= 1).await;
    net.start_node(b_gateway).await.unwrap();
    next_status(&mut b.events, GatewayState::Connected).await;
    assert_eq!(
        next_message(&mut b.events).await.data,
        b"while you were away"
    );
    assert!(b.handle.stats().reconnects >= 1);
    let auth = b.handle.last_auth_timestamp();
    assert!(auth > 0);

    // B's client is gone, its gateway up: the gateway stores the message.
    let counters = || net.counters(b_gateway).unwrap();
    let connections = counters().connections_now;
    let stored = counters().stored;
    b.handle.shutdown().await;
    until("B's gateway saw B leave", || {
        counters().connections_now < connections
    })
    .await;
    a.handle.send(plain(b_addr, b"kept for you")).await.unwrap();
    until("the message is stored", || counters().stored > stored).await;

    // B starts again from its saved registration: authenticates and gets
    // the stored message.
    let reg = GatewayRegistration {
        last_auth_timestamp: auth,
        ..b_reg
    };
    let mut b = start_peer(&shared, b_keys, reg, fast_reconnect()).await;
    assert_eq!(next_message(&mut b.events).await.data, b"kept for you");
    assert!(b.handle.last_auth_timestamp() > auth);
    assert_eq!(counters().stored_now, 0);

    // And the session works both ways.
    b.handle
        .send(plain(a.handle.address(), b"back"))
        .await
        .unwrap();
    assert_eq!(next_message(&mut a.events).await.data, b"back");
    a.handle.send(plain(b_addr, b"welcome")).await.unwrap();
    assert_eq!(next_message(&mut b.events).await.data, b"welcome");
    a.handle.shutdown().await;
    b.handle.shutdown().await;
    net.shutdown().await;
}
