//! Faults on the local mixnet, end to end through nymd's app API:
//!
//! - mixnodes stopped and restarted at random (deterministic schedule) while
//!   one identity sends 1,000 messages to another: each message reaches the
//!   app exactly once (lost packets are retransmitted, retransmissions after a
//!   lost ack are suppressed);
//! - a gateway stopped and started again: its identities reconnect,
//!   authenticate again, and receive what the gateway stored meanwhile
//!   (also across a second gateway restart while the receiver is stopped);
//!   messages sent after the restart arrive;
//! - an ack lost for good (the sender's gateway drops everything the mixnet
//!   brings it): the receiver delivers the message to its app, its periodic
//!   save writes the set id to `received_sets`, the receiving identity is
//!   stopped and started again, and the sender's retransmissions of the same
//!   fragment (same set id) reach the new run, which counts them as
//!   duplicates and does not deliver the message again: the app sees it
//!   once. The control: with `received_sets` deleted before the start, the
//!   same retransmission is delivered a second time.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nymd::manager::{InitRequest, RunState};
use nymd_localnet::{DelayPolicy, Localnet, LocalnetConfig, NodeInfo, NodeKind};
use nymd_proto::appapi::{ClientRequest, ServerResponse};
use nymd_proto::Recipient;
use nymd_tests::{free_port, App, TestDaemon, WAIT};
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
    d.wait_state("bob", RunState::Reconnecting).await;
    net.start_node(gateway).await.expect("start gateway");
    d.wait_state("alice", RunState::Running).await;
    d.wait_state("bob", RunState::Running).await;
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
    d.wait_state("bob", RunState::Running).await;
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

/// Create and start identity `id` registered with `gateway`.
async fn init_on(d: &TestDaemon, id: &str, gateway: &NodeInfo) -> (SocketAddr, Recipient) {
    let info = tokio::time::timeout(
        WAIT,
        d.manager.init(InitRequest {
            id: id.into(),
            gateway: Some(gateway.identity_bs58()),
            ..InitRequest::default()
        }),
    )
    .await
    .expect("init in time")
    .expect("init");
    (info.websocket, info.address.parse().expect("address"))
}

/// Poll `id`'s counters (refreshed every half second) until `done` holds.
async fn wait_stats(
    d: &TestDaemon,
    id: &str,
    what: &str,
    done: impl Fn(&nymd_mixnet::ClientStats) -> bool,
) -> nymd_mixnet::ClientStats {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let stats = d.manager.info(id).expect("identity").stats;
        if let Some(s) = stats.as_ref().filter(|s| done(s)) {
            return s.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{id}: {what}; counters: {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The one message of the lost-ack tests (a single fragment).
const ONCE: &[u8] = b"delivered before the receiver restarted";

/// What the receiver's new run did with the retransmissions.
struct AfterRestart {
    /// Copies of [`ONCE`] its app got.
    copies: usize,
    /// Its counters (they start at zero with each run).
    stats: nymd_mixnet::ClientStats,
}

/// Alice (gateway A) sends [`ONCE`] to bob (gateway B) while gateway A
/// drops everything the mixnet brings it, so the ack never arrives and
/// alice retransmits the same fragment until it does. Bob delivers the
/// message, saves its set id, is stopped and started again (with
/// `received_sets` deleted in between unless `keep_saved_sets`), and
/// retransmissions reach his new run. Then the acks are let through again.
async fn lost_ack_across_a_receiver_restart(keep_saved_sets: bool) -> AfterRestart {
    let net = Localnet::start(LocalnetConfig {
        gateways: 2,
        delay: DelayPolicy::NoDelay,
        ..LocalnetConfig::default()
    })
    .await
    .expect("localnet");
    let gateways = net.gateways();
    let (gateway_a, gateway_b) = (&gateways[0], &gateways[1]);
    let state = tempfile::tempdir().expect("tmp");
    let d = TestDaemon::start(state.path(), &net.api_url(), free_port());
    let (alice_ws, _) = init_on(&d, "alice", gateway_a).await;
    let (bob_ws, bob_addr) = init_on(&d, "bob", gateway_b).await;
    let mut alice = App::connect(alice_ws).await;
    let mut bob = App::connect(bob_ws).await;
    bob.request_binary(&ClientRequest::SelfAddress).await;
    assert!(matches!(
        bob.next_response().await,
        ServerResponse::SelfAddress(_)
    ));

    net.set_drop_incoming(gateway_a.id, true)
        .expect("fault switch");
    send(&mut alice, bob_addr, ONCE.to_vec()).await;
    assert_eq!(
        next_received(&mut bob, Duration::from_secs(60))
            .await
            .as_deref(),
        Some(ONCE),
        "bob's app gets the message"
    );
    // The set id is saved by the running identity (every second), not only
    // when it stops.
    let saved = state.path().join("identities/bob/received_sets");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while std::fs::metadata(&saved).map_or(0, |m| m.len()) < 4 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "bob's received_sets was not saved while he ran"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The ack was lost: alice still waits for it and retransmits.
    wait_stats(&d, "alice", "the ack should be lost", |s| {
        s.retransmissions >= 1 && s.unacked_fragments >= 1 && s.acks_received == 0
    })
    .await;

    d.manager.stop("bob").await.expect("stop bob");
    bob.close().await;
    if !keep_saved_sets {
        std::fs::remove_file(&saved).expect("delete received_sets");
    }
    d.manager.start("bob").expect("start bob");
    d.wait_state("bob", RunState::Running).await;
    let mut bob = App::connect(bob_ws).await;
    // A retransmission reached the new run and was counted as a duplicate
    // (without the saved set ids, only after an earlier one completed the
    // message again).
    wait_stats(
        &d,
        "bob",
        "a retransmission should reach the new run",
        |s| s.duplicate_fragments >= 1,
    )
    .await;

    // The acks go through again; alice stops retransmitting.
    net.set_drop_incoming(gateway_a.id, false)
        .expect("fault switch");
    wait_all_acked(&d, "alice").await;
    let fault = net.counters(gateway_a.id).expect("counters");
    assert!(
        fault.fault_dropped >= 1,
        "gateway A dropped the acks: {fault:?}"
    );

    let mut copies = 0;
    let quiet = if keep_saved_sets {
        Duration::from_secs(3)
    } else {
        Duration::from_secs(60)
    };
    while let Some(m) = next_received(&mut bob, quiet).await {
        assert_eq!(m, ONCE, "nothing else was sent");
        copies += 1;
        if !keep_saved_sets {
            break;
        }
    }
    let stats = d.manager.info("bob").expect("bob").stats.expect("stats");

    alice.close().await;
    bob.close().await;
    d.stop().await;
    net.shutdown().await;
    AfterRestart { copies, stats }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retransmission_after_the_receiver_restarted_is_not_delivered_again() {
    let after = lost_ack_across_a_receiver_restart(true).await;
    assert_eq!(
        after.stats.messages_received, 0,
        "the new run delivered nothing: {:?}",
        after.stats
    );
    assert_eq!(
        after.copies, 0,
        "the app got the message once, before the restart"
    );
}

/// The control of the test above: the saved set ids are what suppresses
/// the duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_saved_set_ids_the_retransmission_is_delivered_again() {
    let after = lost_ack_across_a_receiver_restart(false).await;
    assert!(
        after.stats.messages_received >= 1,
        "the new run delivered the message again: {:?}",
        after.stats
    );
    assert_eq!(after.copies, 1, "the app got the message a second time");
}
