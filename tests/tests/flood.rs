//! An app sending as fast as it can: nymd's identity queue stays bounded
//! (the app server stops reading the app's socket while it is full), every
//! accepted message arrives once, another pair of identities keeps
//! exchanging messages meanwhile, and an app that connects to the receiving
//! identity and never reads holds nothing up: bob's reading app gets
//! everything, and the stuck app is disconnected once a write to it has
//! waited the session's write deadline.

use std::sync::Arc;
use std::time::Duration;

use nymd_proto::appapi::{ClientRequest, ServerResponse};
use nymd_tests::{free_port, App, TestDaemon};

/// Flood: this many messages of `FLOOD_SIZE` bytes, about 21,000 packets
/// (about 650 each), thousands more than an identity queues (16,384
/// packets): a queue without its bound would hold nearly all of them at
/// once (the app hands messages over far faster than they are sent: with
/// the bound, the queue's peak is the bound plus one message).
const FLOOD_MESSAGES: u32 = 32;
const FLOOD_SIZE: usize = 1 << 20;
/// Bound on the test process's memory growth during the flood (see the
/// assertion).
const RSS_GROWTH_KIB: u64 = 192 * 1024;

/// `field` (`VmRSS:` or `VmHWM:`) of this process, in KiB.
fn rss_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn flood_message(i: u32) -> Vec<u8> {
    let mut m = vec![(i % 251) as u8; FLOOD_SIZE];
    m[..4].copy_from_slice(&i.to_be_bytes());
    m
}

/// The next received message, waiting at most `within` (the default
/// [`nymd_tests::WAIT`] is too short for carol and dave on a loaded 2-core
/// machine while a debug build carries the flood: their packets queue
/// behind alice's in the same mixnodes).
async fn next_received_within(app: &mut App, within: Duration) -> Vec<u8> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        assert!(!left.is_zero(), "no message within {within:?}");
        // In steps shorter than the helper's own WAIT (which would panic);
        // reading a websocket is cancel-safe.
        match app
            .try_next_response(left.min(Duration::from_secs(30)))
            .await
        {
            Some(ServerResponse::Received { message, .. }) => return message,
            Some(ServerResponse::Error(e)) => panic!("error from nymd: {e:?}"),
            Some(_) | None => continue,
        }
    }
}

async fn next_received(app: &mut App) -> Vec<u8> {
    loop {
        match app.next_response().await {
            ServerResponse::Received { message, .. } => return message,
            ServerResponse::Error(e) => panic!("error from nymd: {e:?}"),
            _ => continue,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_app_gets_backpressure_and_loses_nothing() {
    let net = nymd_tests::fast_localnet().await;
    let state = tempfile::tempdir().expect("tmp");
    let d = Arc::new(TestDaemon::start(state.path(), &net.api_url(), free_port()));
    let (alice_ws, _) = d.init("alice").await;
    let (bob_ws, bob_addr) = d.init("bob").await;
    let (carol_ws, _) = d.init("carol").await;
    let (dave_ws, dave_addr) = d.init("dave").await;
    let mut alice = App::connect(alice_ws).await;
    let mut bob = App::connect(bob_ws).await;
    bob.request_binary(&ClientRequest::SelfAddress).await;
    let _ = bob.next_response().await;
    // A second app on bob's port that never reads.
    let stuck = App::connect(bob_ws).await;

    // The peak (VmHWM) from now on (Linux: `5` to `clear_refs`; best
    // effort: without it the peak seen is only larger).
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let rss_before = rss_kib("VmRSS:");
    let flood = tokio::spawn(async move {
        for i in 0..FLOOD_MESSAGES {
            alice
                .request_binary(&ClientRequest::Send {
                    recipient: bob_addr,
                    message: flood_message(i),
                    connection_id: None,
                })
                .await;
        }
        alice
    });

    // Meanwhile carol and dave talk.
    let mut carol = App::connect(carol_ws).await;
    let mut dave = App::connect(dave_ws).await;
    dave.request_binary(&ClientRequest::SelfAddress).await;
    let _ = dave.next_response().await;
    for i in 0..10u8 {
        carol
            .request_binary(&ClientRequest::Send {
                recipient: dave_addr,
                message: vec![b'c', i],
                connection_id: None,
            })
            .await;
        assert_eq!(
            next_received_within(&mut dave, Duration::from_secs(240)).await,
            vec![b'c', i]
        );
    }

    // Bob gets every flood message once.
    let mut seen = vec![0u32; FLOOD_MESSAGES as usize];
    for _ in 0..FLOOD_MESSAGES {
        let m = tokio::time::timeout(Duration::from_secs(240), next_received(&mut bob))
            .await
            .expect("the flood arrives in time");
        assert_eq!(m.len(), FLOOD_SIZE);
        let i = u32::from_be_bytes(m[..4].try_into().expect("index"));
        assert_eq!(m, flood_message(i));
        seen[i as usize] += 1;
    }
    assert!(seen.iter().all(|c| *c == 1), "{seen:?}");
    let alice = flood.await.expect("flood task");
    // The queue's own high-water mark: kept at every push, so no peak is
    // missed between two looks.
    let alice_stats = d
        .manager
        .info("alice")
        .expect("alice")
        .stats
        .expect("alice's stats");
    let peak = alice_stats.peak_queued_packets;
    let bob_info = d.manager.info("bob").expect("bob");
    let peak_rss = rss_kib("VmHWM:");
    eprintln!(
        "flood: {FLOOD_MESSAGES} x {FLOOD_SIZE} bytes; alice's peak queue {peak} packets \
         ({} retransmissions); bob's apps connected after the flood: {}; RSS of the test \
         process (localnet, daemon and apps) {rss_before} KiB before the flood, peak \
         {peak_rss} KiB",
        alice_stats.retransmissions, bob_info.connected_apps,
    );
    // The identity's queue is bounded (16,384 packets plus one message
    // being split).
    assert!(peak <= 16_384 + 1024, "alice queued {peak} packets");
    // Memory stays bounded too. Everything (localnet, daemon, apps) is in
    // this process: the flood took it from about 21 MB to 105-125 MB
    // (queued fragments kept for retransmission, the gateway's and the
    // apps' buffers, reassembly). The bound is about twice that growth: a
    // coarse check that catches gross growth (the flood held several more
    // times over, e.g. copied per fragment or kept after delivery), not
    // allocator noise. The queue's own bound is the exact check above.
    assert!(rss_before > 0 && peak_rss > 0, "memory not readable");
    let growth = peak_rss.saturating_sub(rss_before);
    assert!(
        growth < RSS_GROWTH_KIB,
        "the test process grew by {growth} KiB during the flood (bound {RSS_GROWTH_KIB} KiB)"
    );
    // Bob's reading app kept everything (above); the stuck app goes once a
    // write to it waited the write deadline (from its first blocked write,
    // early in the flood).
    let deadline = std::time::Instant::now()
        + nymd::appserver::session::WRITE_DEADLINE
        + Duration::from_secs(60);
    loop {
        let apps = d.manager.info("bob").expect("bob").connected_apps;
        if apps == 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the stuck app is still connected ({apps} apps) after its write deadline"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    drop(stuck);
    alice.close().await;
    bob.close().await;
    carol.close().await;
    dave.close().await;
    if let Ok(d) = Arc::try_unwrap(d) {
        d.stop().await;
    }
    net.shutdown().await;
}
