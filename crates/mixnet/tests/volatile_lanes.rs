//! Messages on volatile lanes (`CoreConfig::volatile_lanes_from`: nymd's
//! SOCKS connections) are sent and retransmitted like any other, but never
//! written to the outbox journal, so a restart does not send them again;
//! messages on other lanes still are.

#![allow(clippy::unwrap_used)]

mod hostile;

use std::time::Duration;

use hostile::*;
use nymd_mixnet::{start, ClientConfig, CoreConfig, Lane, OutgoingMessage};
use tokio_util::sync::CancellationToken;

const VOLATILE: u64 = 1 << 63;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volatile_lanes_skip_the_outbox() {
    let net = localnet().await;
    let shared = shared_api(&net);
    let outbox = tempfile::tempdir().unwrap();
    let config = ClientConfig {
        core: CoreConfig {
            volatile_lanes_from: Some(VOLATILE),
            ..CoreConfig::for_tests()
        },
        outbox: Some(outbox.path().join("outbox")),
        ..ClientConfig::for_tests()
    };
    let v = peer(&shared, &net, 0, config.clone()).await;
    let b = peer(&shared, &net, 1, ClientConfig::for_tests()).await;
    // Nothing reaching B's gateway is acknowledged: messages stay unacked.
    let b_gateway = net.gateways()[1].id;
    net.set_drop_incoming(b_gateway, true).unwrap();

    let send = |data: &'static [u8], lane| OutgoingMessage::Plain {
        recipient: b.handle.address(),
        data: data.to_vec(),
        lane,
    };
    v.handle
        .send(send(b"volatile", Lane::Connection(VOLATILE + 5)))
        .await
        .unwrap();
    until("the volatile message is sent", || {
        v.handle.stats().unacked_fragments >= 1
    })
    .await;
    assert_eq!(v.handle.stats().outbox_messages, 0, "not journalled");
    v.handle
        .send(send(b"kept", Lane::Connection(VOLATILE - 1)))
        .await
        .unwrap();
    until("the other message is journalled", || {
        v.handle.stats().outbox_messages == 1
    })
    .await;

    // After a restart only the journalled message is sent again.
    v.handle.shutdown().await;
    net.set_drop_incoming(b_gateway, false).unwrap();
    let mut b = b;
    let again = start(
        &shared,
        v.keys.clone(),
        v.reg.clone(),
        config,
        CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!(next_message(&mut b.events).await.data, b"kept");
    tokio::time::sleep(Duration::from_millis(500)).await;
    while let Ok(ev) = b.events.try_recv() {
        if let nymd_mixnet::ClientEvent::Received(m) = ev {
            assert_ne!(m.data, b"volatile", "a volatile message came back");
        }
    }
    again.shutdown().await;
    b.handle.shutdown().await;
    net.shutdown().await;
}
