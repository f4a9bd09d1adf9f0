//! Faults on the local mixnet, end to end through nymd's app API:
//!
//! - mixnodes stopped and restarted at random (deterministic schedule) while
//!   one identity sends 1,000 messages to another: each message reaches the
//!   app exactly once (lost packets are retransmitted, retransmissions after a
//!   lost ack are suppressed);
//! - a gateway stopped and started again: its identities reconnect,
//!   authenticate again, and receive what the gateway stored meanwhile;
//!   messages sent after the restart arrive, and a message delivered before
//!   the receiving identity restarted is not delivered again when its
//!   sender retransmits it (its ack was lost in the gateway restart; the
//!   receiver's completed set ids are saved across its restarts).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nymd::manager::RunState;
use nymd_localnet::{DelayPolicy, Localnet, LocalnetConfig, NodeKind};
use nymd_proto::appapi::{ClientRequest, ServerResponse};
use nymd_proto::Recipient;
use nymd_tests::{free_port, App, TestDaemon};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Seed of the churn schedule and the message contents.
const SEED: u64 = 0x6e79_6d64;
/// Messages sent through the churning network.
const MESSAGES: u32 = 1000;
/// Upper bound of the whole churn test (it takes well under a minute on an
/// idle machine).
const CHURN_DEADLINE: Duration = Duration::from_secs(240);

/// Message `i`: its index, then deterministic filler; every 50th is large
/// enough for several fragments.
fn message(i: u32) -> Vec<u8> {
    let mut rng = StdRng::seed_from_u64(SEED ^ u64::from(i));
    let len = if i.is_multiple_of(50) {
        4000
    } else {
        rng.gen_range(8..300)
    };
    let mut m = i.to_be_bytes().to_vec();
    m.extend((4..len).map(|_| rng.gen::<u8>()));
    m
}

fn index_of(m: &[u8]) -> Option<u32> {
    let b: [u8; 4] = m.get(..4)?.try_into().ok()?;
    Some(u32::from_be_bytes(b))
}

async fn send(app: &mut App, to: Recipient, data: Vec<u8>) {
    app.request_binary(&ClientRequest::Send {
        recipient: to,
        message: data,
        connection_id: None,
    })
    .await;
}

/// The next received message, or `None` after `quiet` without one.
async fn next_received(app: &mut App, quiet: Duration) -> Option<Vec<u8>> {
    loop {
        match tokio::time::timeout(quiet, app.next_response()).await {
            Err(_) => return None,
            Ok(ServerResponse::Received { message, .. }) => return Some(message),
            Ok(ServerResponse::Error(e)) => panic!("error from nymd: {e:?}"),
            Ok(_) => continue,
        }
    }
}

/// Wait until `id`'s client has nothing queued and nothing unacknowledged.
async fn wait_all_acked(d: &TestDaemon, id: &str) -> nymd_mixnet::ClientStats {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let info = d.manager.info(id).expect("identity");
        if let Some(s) = &info.stats {
            if s.unacked_fragments == 0 && s.queued_packets == 0 {
                return s.clone();
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{id} still has unacknowledged fragments: {:?}",
            info.stats
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn wait_state(d: &TestDaemon, id: &str, want: RunState) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let info = d.manager.info(id).expect("identity");
        if info.state == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{id} is {:?}, expected {want:?}",
            info.state
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_arrives_exactly_once_while_mixnodes_churn() {
    let net = Arc::new(
        Localnet::start(LocalnetConfig {
            mixnodes_per_layer: 2,
            gateways: 2,
            delay: DelayPolicy::NoDelay,
            ..LocalnetConfig::default()
        })
        .await
        .expect("localnet"),
    );
    let state = tempfile::tempdir().expect("tmp");
    let d = TestDaemon::start(state.path(), &net.api_url(), free_port());
    let (alice_ws, _) = d.init("alice").await;
    let (bob_ws, bob_addr) = d.init("bob").await;
    let mut alice = App::connect(alice_ws).await;
    let mut bob = App::connect(bob_ws).await;
    bob.request_binary(&ClientRequest::SelfAddress).await;
    assert!(matches!(
        bob.next_response().await,
        ServerResponse::SelfAddress(_)
    ));

    // The churn: every 50-400 ms one mixnode changes state; at most one
    // node per layer is down at a time, so a route always exists.
    let stop = Arc::new(AtomicBool::new(false));
    let churn = {
        let net = net.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(SEED);
            let mixnodes: Vec<_> = net
                .nodes()
                .into_iter()
                .filter(|n| matches!(n.kind, NodeKind::Mixnode { .. }))
                .collect();
            let mut down: BTreeMap<u8, u32> = BTreeMap::new();
            let mut changes = 0u32;
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(rng.gen_range(50..400))).await;
                let layer = rng.gen_range(1..=3u8);
                if let Some(id) = down.remove(&layer) {
                    net.start_node(id).await.expect("start node");
                } else {
                    let candidates: Vec<_> = mixnodes
                        .iter()
                        .filter(|n| n.kind == NodeKind::Mixnode { layer })
                        .collect();
                    let n = candidates[rng.gen_range(0..candidates.len())];
                    net.stop_node(n.id).await.expect("stop node");
                    down.insert(layer, n.id);
                }
                changes += 1;
            }
            for id in down.into_values() {
                net.start_node(id).await.expect("start node");
            }
            changes
        })
    };

    // Alice sends, paced so that the churn overlaps the whole stream.
    let sender = tokio::spawn(async move {
        for i in 0..MESSAGES {
            send(&mut alice, bob_addr, message(i)).await;
            if i % 10 == 9 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        alice
    });

    let run = async {
        let mut counts = vec![0u32; MESSAGES as usize];
        let mut distinct = 0;
        while distinct < MESSAGES {
            let m = next_received(&mut bob, Duration::from_secs(120))
                .await
                .unwrap_or_else(|| panic!("only {distinct} of {MESSAGES} messages arrived"));
            let i = index_of(&m).expect("an index") as usize;
            assert_eq!(m, message(i as u32), "message {i} arrived intact");
            counts[i] += 1;
            if counts[i] == 1 {
                distinct += 1;
            }
        }
        counts
    };
    let mut counts = tokio::time::timeout(CHURN_DEADLINE, run)
        .await
        .expect("every message arrives in time");
    stop.store(true, Ordering::Relaxed);
    let changes = churn.await.expect("churn task");
    let alice = sender.await.expect("sender");

    // With every node up again, the last retransmissions are acked; any
    // duplicate they caused would have reached bob by now.
    let stats = wait_all_acked(&d, "alice").await;
    while let Some(m) = next_received(&mut bob, Duration::from_secs(3)).await {
        let i = index_of(&m).expect("an index") as usize;
        counts[i] += 1;
    }
    let bob_stats = d.manager.info("bob").expect("bob").stats;
    eprintln!(
        "churn: {changes} node state changes; alice: {} packets sent, {} retransmissions, {} acks; bob: {:?}",
        stats.real_packets_sent,
        stats.retransmissions,
        stats.acks_received,
        bob_stats.map(|s| (s.real_packets_received, s.messages_received)),
    );
    let dups: Vec<_> = counts
        .iter()
        .enumerate()
        .filter(|(_, c)| **c != 1)
        .collect();
    assert!(dups.is_empty(), "messages not delivered once: {dups:?}");
    assert!(
        stats.retransmissions > 0,
        "the churn should have forced retransmissions"
    );

    alice.close().await;
    bob.close().await;
    d.stop().await;
    if let Ok(net) = Arc::try_unwrap(net) {
        net.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identities_reconnect_after_their_gateway_restarts() {
    // One gateway: every identity is on it.
    let net = Localnet::start(LocalnetConfig {
        gateways: 1,
        delay: DelayPolicy::NoDelay,
        ..LocalnetConfig::default()
    })
    .await
    .expect("localnet");
    let gateway = net.gateways()[0].id;
    let state = tempfile::tempdir().expect("tmp");
    let d = TestDaemon::start(state.path(), &net.api_url(), free_port());
    let (alice_ws, _) = d.init("alice").await;
    let (bob_ws, bob_addr) = d.init("bob").await;
    let mut alice = App::connect(alice_ws).await;
    let mut bob = App::connect(bob_ws).await;
    bob.request_binary(&ClientRequest::SelfAddress).await;
    let _ = bob.next_response().await;

    send(&mut alice, bob_addr, b"before".to_vec()).await;
    assert_eq!(
        next_received(&mut bob, Duration::from_secs(60)).await,
        Some(b"before".to_vec())
    );
    let before = d.manager.info("bob").expect("bob").stats.expect("stats");

    // The gateway goes away and comes back (same keys, same port, same
    // clients and stored messages).
    net.stop_node(gateway).await.expect("stop gateway");
    wait_state(&d, "bob", RunState::Reconnecting).await;
    net.start_node(gateway).await.expect("start gateway");
    wait_state(&d, "alice", RunState::Running).await;
    wait_state(&d, "bob", RunState::Running).await;
    for i in 0..20u8 {
        send(&mut alice, bob_addr, vec![b'a', i]).await;
    }
    let mut got = Vec::new();
    while got.len() < 20 {
        let m = next_received(&mut bob, Duration::from_secs(60))
            .await
            .unwrap_or_else(|| panic!("only {} of 20 arrived after the restart", got.len()));
        got.push(m);
    }
    got.sort();
    assert_eq!(got, (0..20u8).map(|i| vec![b'a', i]).collect::<Vec<_>>());
    // The counters are refreshed every half second.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let after = d.manager.info("bob").expect("bob").stats.expect("stats");
        if after.reconnects > before.reconnects {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "bob re-authenticated: {after:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Stored messages: bob's client is stopped (his gateway keeps what
    // arrives for him), alice sends, bob starts again and gets it all.
    d.manager.stop("bob").await.expect("stop bob");
    bob.close().await;
    for i in 0..10u8 {
        send(&mut alice, bob_addr, vec![b's', i]).await;
    }
    // The gateway stored them (its counters say so) before bob is back...
    wait_all_acked(&d, "alice").await;
    // ...and keeps them across its own restart.
    net.stop_node(gateway).await.expect("stop gateway");
    net.start_node(gateway).await.expect("start gateway");
    d.manager.start("bob").expect("start bob");
    wait_state(&d, "bob", RunState::Running).await;
    let mut bob = App::connect(bob_ws).await;
    bob.request_binary(&ClientRequest::SelfAddress).await;
    let mut got = Vec::new();
    while got.len() < 10 {
        let m = next_received(&mut bob, Duration::from_secs(60))
            .await
            .unwrap_or_else(|| panic!("only {} of 10 stored messages arrived", got.len()));
        got.push(m);
    }
    got.sort();
    assert_eq!(got, (0..10u8).map(|i| vec![b's', i]).collect::<Vec<_>>());
    let extra = next_received(&mut bob, Duration::from_secs(2)).await;
    assert!(extra.is_none(), "unexpected extra message {extra:?}");

    alice.close().await;
    bob.close().await;
    d.stop().await;
    net.shutdown().await;
}
