//! Messages through the three layers, SURB-ACKs, offline storage, and a
//! mixnode stopped and restarted.

use std::time::Duration;

use nymd_localnet::{DelayPolicy, Localnet, LocalnetConfig, NodeKind};

use crate::support::{bounded, counters, init_tracing, payload, wait_until, Client, STEP};

fn no_delay() -> LocalnetConfig {
    LocalnetConfig {
        delay: DelayPolicy::NoDelay,
        ..LocalnetConfig::default()
    }
}

/// Client A at gateway 1 sends a four-fragment message to client B at
/// gateway 2 through layers 1-3 (two mixnodes per layer, per-hop delays
/// honoured); B reassembles it and A gets one SURB-ACK per fragment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_fragment_message_through_three_layers_with_acks() {
    init_tracing();
    bounded(Duration::from_secs(40), async {
        let net = Localnet::start(LocalnetConfig {
            mixnodes_per_layer: 2,
            delay: DelayPolicy::Capped(Duration::from_millis(200)),
            ..LocalnetConfig::default()
        })
        .await
        .expect("start");
        let gws = net.gateways();
        assert_eq!(gws.len(), 2);
        let mut a = Client::register(&gws[0]).await;
        let mut b = Client::register(&gws[1]).await;

        let data = payload(5000, 7);
        let ids = a
            .send_message(
                net.topology(),
                &b.recipient(),
                &data,
                Duration::from_millis(5),
            )
            .await;
        assert_eq!(ids.len(), 4, "5000 bytes make four regular fragments");

        let got = b.receive_message(STEP).await.expect("message delivered");
        assert_eq!(got, data);
        assert!(a.wait_for_acks(ids.len(), STEP).await, "all acks back at A");
        let mut acked = a.acks.clone();
        acked.sort_by_key(|id| (id.set_id, id.position));
        let mut sent = ids.clone();
        sent.sort_by_key(|id| (id.set_id, id.position));
        assert_eq!(acked, sent);

        // Every data packet and every ack crossed each layer once.
        for layer in 1..=3u8 {
            let mixed: u64 = net
                .layer(layer)
                .iter()
                .map(|n| counters(&net, n.id).forwarded)
                .sum();
            assert_eq!(mixed, 8, "layer {layer} forwarded 4 packets and 4 acks");
        }
        let gw_a = counters(&net, gws[0].id);
        let gw_b = counters(&net, gws[1].id);
        assert_eq!(gw_a.delivered, 4, "four acks pushed to A");
        assert_eq!(gw_b.delivered, 4, "four fragments pushed to B");
        assert_eq!(gw_b.forwarded, 4, "B's gateway forwarded the four acks");
        for n in net.nodes() {
            let c = counters(&net, n.id);
            assert_eq!(
                (c.malformed, c.replayed, c.dropped),
                (0, 0, 0),
                "node {}",
                n.id
            );
        }
        assert!(matches!(
            net.node(1).expect("node").kind,
            NodeKind::Mixnode { layer: 1 }
        ));
        net.shutdown().await;
    })
    .await;
}

/// A message sent while B is offline is stored by B's gateway (the ack
/// still goes back to A) and pushed when B re-authenticates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_messages_are_delivered_on_reauthentication() {
    init_tracing();
    bounded(Duration::from_secs(40), async {
        let net = Localnet::start(no_delay()).await.expect("start");
        let gws = net.gateways();
        let mut a = Client::register(&gws[0]).await;
        let b = Client::register(&gws[1]).await;
        let b_addr = b.recipient();
        let b_keys = b.disconnect().await;

        let data = payload(3000, 1);
        let ids = a
            .send_message(net.topology(), &b_addr, &data, Duration::ZERO)
            .await;
        assert_eq!(ids.len(), 2);
        assert!(
            wait_until(STEP, || counters(&net, gws[1].id).stored == 2).await,
            "both fragments stored"
        );
        assert!(
            a.wait_for_acks(2, STEP).await,
            "acks forwarded while B is away"
        );
        assert_eq!(counters(&net, gws[1].id).stored_now, 2);

        let mut b = match Client::authenticate(b_keys).await {
            Ok(c) => c,
            Err((_, r)) => panic!("re-authentication refused: {r:?}"),
        };
        // Stored messages come before the authenticate response.
        assert_eq!(b.pushed.len(), 2);
        assert!(b.bandwidth > 0, "bandwidth kept across sessions");
        let got = b.receive_message(STEP).await.expect("stored message");
        assert_eq!(got, data);
        assert_eq!(counters(&net, gws[1].id).stored_now, 0);

        // Still a working session afterwards.
        let again = payload(100, 2);
        a.send_message(net.topology(), &b.recipient(), &again, Duration::ZERO)
            .await;
        assert_eq!(b.receive_message(STEP).await.expect("live message"), again);
        net.shutdown().await;
    })
    .await;
}

/// Packets routed through a stopped mixnode are lost; after a restart (same
/// keys, same port) they flow again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_mixnode_loses_packets_and_flows_after_restart() {
    init_tracing();
    bounded(Duration::from_secs(40), async {
        let net = Localnet::start(no_delay()).await.expect("start");
        let gws = net.gateways();
        let mut a = Client::register(&gws[0]).await;
        let mut b = Client::register(&gws[1]).await;
        let l1 = net.layer(1)[0].id;
        let l2 = net.layer(2)[0].clone();

        net.stop_node(l2.id).await.expect("stop");
        assert!(!net.is_running(l2.id).await);
        assert!(tokio::net::TcpStream::connect(l2.mix_addr).await.is_err());
        let lost = payload(200, 3);
        a.send_message(net.topology(), &b.recipient(), &lost, Duration::ZERO)
            .await;
        assert!(
            wait_until(STEP, || counters(&net, l1).dropped == 1).await,
            "layer 1 could not reach layer 2"
        );
        assert!(b.next_pushed(Duration::from_millis(500)).await.is_none());
        assert_eq!(counters(&net, l2.id).received, 0);

        net.start_node(l2.id).await.expect("restart");
        assert!(net.is_running(l2.id).await);
        assert_eq!(net.node(l2.id).expect("node").mix_addr, l2.mix_addr);
        let found = payload(200, 4);
        a.send_message(net.topology(), &b.recipient(), &found, Duration::ZERO)
            .await;
        assert_eq!(b.receive_message(STEP).await.expect("delivered"), found);
        assert!(a.wait_for_acks(1, STEP).await);
        assert_eq!(counters(&net, l2.id).received, 2, "data packet and its ack");
        net.shutdown().await;
    })
    .await;
}

/// A second `authenticateV2` for a live, responsive session is refused; a
/// session that stops answering pings is replaced. ForwardSphinx v1 frames
/// and websocket pings work too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_sessions_v1_frames_and_pings() {
    use futures_util::{SinkExt, StreamExt};
    use nymd_proto::gateway::frames::seal_client_frame;
    use nymd_proto::gateway::{ClientFrameKind, ServerResponse};
    use tokio_tungstenite::tungstenite::Message;

    init_tracing();
    bounded(Duration::from_secs(40), async {
        let net = Localnet::start(no_delay()).await.expect("start");
        let gw = net.gateways()[0].clone();
        let mut a = Client::register(&gw).await;

        // Pings are answered.
        a.ws.send(Message::Ping(b"hello".to_vec().into()))
            .await
            .expect("ping");
        let pong = crate::support::next_message(&mut a.ws, STEP).await;
        assert!(matches!(pong, Some(Message::Pong(p)) if p.as_ref() == b"hello"));

        // A ForwardSphinx v1 frame (no rotation byte) to ourselves.
        let me = a.recipient();
        let packets = a.build_message(net.topology(), &me, b"v1", Duration::ZERO);
        let frame = seal_client_frame(
            &mut a.rng,
            a.keys.shared_key.as_ref().expect("key"),
            ClientFrameKind::ForwardSphinx,
            &packets[0].1.to_v1_bytes(),
        );
        a.ws.send(Message::binary(frame)).await.expect("send");
        assert!(matches!(a.response().await, ServerResponse::Send { .. }));
        assert_eq!(a.receive_message(STEP).await.expect("looped"), b"v1");

        // Timestamps have one-second resolution and must increase.
        let keys = crate::support::ClientKeys {
            identity: a.keys.identity.clone(),
            encryption: a.keys.encryption.clone(),
            ack_key: a.keys.ack_key.clone(),
            gateway: gw.clone(),
            shared_key: a.keys.shared_key.clone(),
        };
        let mut first = a.ws;
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let reader = tokio::spawn(async move {
            // A live client: keeps reading, so pings get their pongs.
            loop {
                tokio::select! {
                    _ = &mut stopped => return first,
                    m = first.next() => if !matches!(m, Some(Ok(_))) { return first },
                }
            }
        });
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let Err((keys, refused)) = Client::authenticate(keys).await else {
            panic!("duplicate session accepted");
        };
        assert!(
            matches!(refused, ServerResponse::Error { .. }),
            "{refused:?}"
        );

        // The old connection goes silent (nothing reads it, so no pongs):
        // the next attempt replaces it.
        let _ = stop.send(());
        let silent = reader.await.expect("reader");
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let mut again = match Client::authenticate(keys).await {
            Ok(c) => c,
            Err((_, r)) => panic!("replacement refused: {r:?}"),
        };
        again.claim_bandwidth().await;
        let me = again.recipient();
        again
            .send_message(net.topology(), &me, b"again", Duration::ZERO)
            .await;
        assert_eq!(again.receive_message(STEP).await.expect("looped"), b"again");
        drop(silent);
        net.shutdown().await;
    })
    .await;
}

/// The client-delay test switch holds back the websocket upgrade of new
/// client connections (also after a restart of the gateway), can be turned
/// off again, and applies to gateways only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_delay_holds_back_new_client_connections() {
    init_tracing();
    bounded(Duration::from_secs(60), async {
        let net = Localnet::start(no_delay()).await.expect("start");
        let gw = net.gateways()[0].clone();
        let mixnode = net.layer(1)[0].id;
        assert!(net
            .set_client_delay(mixnode, Duration::from_secs(1))
            .is_err());

        let delay = Duration::from_millis(1500);
        net.set_client_delay(gw.id, delay).expect("a gateway");
        let started = std::time::Instant::now();
        let ws = crate::support::connect(&gw).await;
        assert!(started.elapsed() >= delay, "{:?}", started.elapsed());
        drop(ws);

        net.stop_node(gw.id).await.expect("stop");
        net.start_node(gw.id).await.expect("start");
        let started = std::time::Instant::now();
        let ws = crate::support::connect(&gw).await;
        assert!(started.elapsed() >= delay, "{:?}", started.elapsed());
        drop(ws);

        // Off again: a client registers and loops a message as usual.
        net.set_client_delay(gw.id, Duration::ZERO)
            .expect("a gateway");
        let mut a = Client::register(&gw).await;
        let me = a.recipient();
        a.send_message(net.topology(), &me, b"near", Duration::ZERO)
            .await;
        assert_eq!(a.receive_message(STEP).await.expect("looped"), b"near");
        net.shutdown().await;
    })
    .await;
}
