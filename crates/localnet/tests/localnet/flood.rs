//! Bounded memory under floods, asserted on counters (queue and store
//! sizes and their high-water marks), not on timing.

use std::time::Duration;

use nymd_localnet::{DelayPolicy, Limits, Localnet, LocalnetConfig};

use crate::support::{bounded, counters, init_tracing, payload, wait_until, Client, STEP};

/// A client pushes 150 packets as fast as it can, never reading the
/// gateway's answers, with hop delays far above what the test waits for.
/// The entry gateway's link queue and layer 1's delay queue stay within
/// their limits; every packet is accounted for (held, or counted dropped);
/// and shutdown cancels the held packets promptly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delay_and_link_queues_stay_bounded_under_a_flood() {
    init_tracing();
    bounded(Duration::from_secs(40), async {
        const MAX_DELAYED: usize = 16;
        const QUEUE: usize = 32;
        const N: u64 = 150;
        let net = Localnet::start(LocalnetConfig {
            delay: DelayPolicy::Capped(Duration::from_secs(10)),
            limits: Limits {
                max_delayed: MAX_DELAYED,
                queue_per_peer: QUEUE,
                ..Limits::default()
            },
            ..LocalnetConfig::default()
        })
        .await
        .expect("start");
        let gws = net.gateways();
        let l1 = net.layer(1)[0].id;
        let mut a = Client::register(&gws[0]).await;
        let b = Client::register(&gws[1]).await;

        // Mean hop delay 60 s: nearly every packet wants the 10 s cap.
        let big = payload(149 * 1604, 1);
        let packets = a.build_message(
            net.topology(),
            &b.recipient(),
            &big,
            Duration::from_secs(60),
        );
        assert_eq!(packets.len() as u64, N);
        for (_, p) in &packets {
            a.forward(p).await;
        }
        let gw = gws[0].id;
        assert!(
            wait_until(STEP, || counters(&net, gw).received == N).await,
            "the gateway took every request"
        );
        assert!(
            wait_until(STEP, || {
                counters(&net, l1).received + counters(&net, gw).dropped == N
            })
            .await,
            "every packet reached layer 1 or was dropped at the gateway"
        );
        let g = counters(&net, gw);
        let m = counters(&net, l1);
        assert!(
            g.queued_max <= QUEUE as u64,
            "gateway link queue {}",
            g.queued_max
        );
        assert!(m.delayed_now <= MAX_DELAYED as u64);
        assert_eq!(
            m.delayed_max, MAX_DELAYED as u64,
            "the delay bound was reached"
        );
        assert!(m.dropped > 0, "layer 1 dropped what it could not hold");
        assert!(m.received <= m.dropped + m.delayed_max + m.forwarded);

        let started = std::time::Instant::now();
        net.shutdown().await;
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "held packets cancelled"
        );
    })
    .await;
}

/// Offline clients flooded with messages: the gateway's store keeps at most
/// the per-client and total caps, evicting a client's oldest messages; the
/// push queue of a connected client that does not read stays bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_store_and_push_queues_stay_bounded() {
    init_tracing();
    bounded(Duration::from_secs(50), async {
        let net = Localnet::start(LocalnetConfig {
            delay: DelayPolicy::NoDelay,
            limits: Limits {
                stored_per_client: 10,
                stored_total: 15,
                push_queue_per_client: 8,
                ..Limits::default()
            },
            ..LocalnetConfig::default()
        })
        .await
        .expect("start");
        let gws = net.gateways();
        let gw_b = gws[1].id;
        let mut a = Client::register(&gws[0]).await;
        let b = Client::register(&gws[1]).await;
        let c = Client::register(&gws[1]).await;
        let (b_addr, c_addr) = (b.recipient(), c.recipient());
        let b_keys = b.disconnect().await;
        let _c_keys = c.disconnect().await;

        for i in 0..40u8 {
            a.send_message(net.topology(), &b_addr, &[i; 10], Duration::ZERO)
                .await;
        }
        for i in 0..40u8 {
            a.send_message(net.topology(), &c_addr, &[i; 10], Duration::ZERO)
                .await;
        }
        // Each message is stored or dropped; each eviction is one more drop.
        assert!(
            wait_until(STEP, || {
                let g = counters(&net, gw_b);
                g.received == 80 && g.stored + g.dropped >= 80 + 30
            })
            .await,
            "every message reached B's gateway: {:?}",
            counters(&net, gw_b)
        );
        let g = counters(&net, gw_b);
        assert_eq!(g.received, 80);
        assert_eq!(g.stored_now, 15, "total cap");
        assert_eq!(g.stored_max, 15);
        // B: 40 stored, 30 of them evicted; C: 5 stored, 35 refused.
        assert_eq!(g.stored, 45);
        assert_eq!(g.dropped, 65);

        // B gets its ten newest messages back.
        let mut b = match Client::authenticate(b_keys).await {
            Ok(b) => b,
            Err((_, r)) => panic!("re-authentication refused: {r:?}"),
        };
        let mut got = Vec::new();
        while let Some(m) = b.receive_message(Duration::from_millis(500)).await {
            got.push(m[0]);
        }
        got.sort_unstable();
        assert_eq!(got, (30..40).collect::<Vec<u8>>());
        assert_eq!(counters(&net, gw_b).stored_now, 5);

        // B stays connected but stops reading: its push queue is bounded.
        for i in 0..60u8 {
            a.send_message(net.topology(), &b.recipient(), &[i; 1500], Duration::ZERO)
                .await;
        }
        assert!(
            wait_until(STEP, || counters(&net, gw_b).received >= 140).await,
            "the flood reached B's gateway"
        );
        let g = counters(&net, gw_b);
        assert!(g.push_queued_max <= 8, "push queue {}", g.push_queued_max);
        assert!(g.stored_max <= 15);
        net.shutdown().await;
    })
    .await;
}
