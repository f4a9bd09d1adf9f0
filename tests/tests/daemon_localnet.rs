//! nymd on the embedded local mixnet, driven the way apps drive nym-client:
//! real websocket connections to each identity's port.

use nymd_localnet::Localnet;
use nymd_proto::appapi::{ClientRequest, ErrorKind, ServerResponse};
use nymd_proto::keys::{EncryptionKeyPair, IdentityKeyPair};
use nymd_proto::{Recipient, SenderTag};
use nymd_tests::{free_port, App, TestDaemon};
use rand::RngCore;

async fn localnet() -> Localnet {
    nymd_tests::fast_localnet().await
}

async fn expect_received(app: &mut App) -> (Vec<u8>, Option<SenderTag>) {
    loop {
        match app.next_response().await {
            ServerResponse::Received {
                message,
                sender_tag,
            } => return (message, sender_tag),
            ServerResponse::LaneQueueLength { .. } => continue,
            other => panic!("expected a received message, got {other:?}"),
        }
    }
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    rand::thread_rng().fill_bytes(&mut v);
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_identities_exchange_everything_an_app_sends() {
    let net = localnet().await;
    let state = tempfile::tempdir().expect("tmp");
    let d = TestDaemon::start(state.path(), &net.api_url(), free_port());
    let (alice_ws, alice_addr) = d.init("alice").await;
    let (bob_ws, bob_addr) = d.init("bob").await;
    assert_ne!(alice_ws.port(), bob_ws.port());

    let mut alice = App::connect(alice_ws).await;
    let mut bob = App::connect(bob_ws).await;
    assert_eq!(alice.self_address().await, alice_addr);
    // Bob is now in text mode (his last request was text).
    assert_eq!(bob.self_address().await, bob_addr);

    // Text.
    alice
        .send_text(&format!(
            r#"{{"type":"send","message":"hello bob","recipient":"{bob_addr}"}}"#
        ))
        .await;
    let (msg, tag) = expect_received(&mut bob).await;
    assert_eq!(msg, b"hello bob");
    assert_eq!(tag, None);

    // Binary (bob switches to binary mode with a binary request).
    bob.request_binary(&ClientRequest::SelfAddress).await;
    assert!(matches!(
        bob.next_response().await,
        ServerResponse::SelfAddress(_)
    ));
    for size in [3000usize, 0, 1 << 20] {
        let data = random_bytes(size);
        alice
            .request_binary(&ClientRequest::Send {
                recipient: bob_addr,
                message: data.clone(),
                connection_id: None,
            })
            .await;
        let (got, _) = expect_received(&mut bob).await;
        assert_eq!(got.len(), data.len(), "size {size}");
        assert_eq!(got, data, "size {size}");
    }

    // SURB conversation: anonymous to bob, bob replies by tag.
    alice
        .request_binary(&ClientRequest::SendAnonymous {
            recipient: bob_addr,
            message: b"who am i?".to_vec(),
            reply_surbs: 10,
            connection_id: None,
        })
        .await;
    let (msg, tag) = expect_received(&mut bob).await;
    assert_eq!(msg, b"who am i?");
    let tag = tag.expect("anonymous messages carry a sender tag");
    bob.request_binary(&ClientRequest::Reply {
        sender_tag: tag,
        message: b"a secret".to_vec(),
        connection_id: None,
    })
    .await;
    let (msg, tag) = expect_received(&mut alice).await;
    assert_eq!(msg, b"a secret");
    assert_eq!(tag, None, "replies arrive without a tag");

    // Bad input gets an error in the mode of the request.
    alice
        .send_text(r#"{"type":"send","message":"x","recipient":"nope"}"#)
        .await;
    match alice.next_response().await {
        ServerResponse::Error(e) => {
            assert_eq!(e.kind, ErrorKind::MalformedRequest);
            assert!(e.message.contains("recipient is malformed"), "{e:?}");
        }
        other => panic!("expected error, got {other:?}"),
    }
    alice.send_text("{ not json").await;
    assert!(matches!(
        alice.next_response().await,
        ServerResponse::Error(_)
    ));
    alice.send_binary(vec![0x00, 0x01]).await;
    match alice.next_response().await {
        ServerResponse::Error(e) => assert_eq!(e.kind, ErrorKind::TooShortRequest),
        other => panic!("expected error, got {other:?}"),
    }

    // A recipient whose gateway is not in the topology: stock nym-client
    // drops it silently; nymd tells the app.
    let mut rng = rand::thread_rng();
    let stranger = Recipient::new(
        IdentityKeyPair::generate(&mut rng).public(),
        EncryptionKeyPair::generate(&mut rng).public(),
        IdentityKeyPair::generate(&mut rng).public(),
    );
    alice
        .request_binary(&ClientRequest::Send {
            recipient: stranger,
            message: b"lost?".to_vec(),
            connection_id: None,
        })
        .await;
    match alice.next_response().await {
        ServerResponse::Error(e) => assert!(
            e.message.to_lowercase().contains("gateway"),
            "error should name the unknown gateway: {e:?}"
        ),
        other => panic!("expected an error for an unknown gateway, got {other:?}"),
    }

    alice.close().await;
    bob.close().await;
    d.stop().await;
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_apps_on_one_identity_both_receive() {
    let net = localnet().await;
    let state = tempfile::tempdir().expect("tmp");
    let d = TestDaemon::start(state.path(), &net.api_url(), free_port());
    let (alice_ws, _) = d.init("alice").await;
    let (bob_ws, bob_addr) = d.init("bob").await;
    let mut events = d.manager.subscribe();
    let mut sender = App::connect(alice_ws).await;
    let mut first = App::connect(bob_ws).await;
    let mut second = App::connect(bob_ws).await;
    // The manager reports both apps, with their addresses.
    let mut connected = 0;
    while connected < 2 {
        let ev = tokio::time::timeout(nymd_tests::WAIT, events.recv())
            .await
            .expect("event in time")
            .expect("event");
        if let nymd::manager::ManagerEvent::App {
            id,
            change: nymd::appserver::AppChange::Connected { .. },
        } = ev
        {
            if id == "bob" {
                connected += 1;
            }
        }
    }
    let info = d.manager.info("bob").expect("bob");
    assert_eq!(info.connected_apps, 2);
    assert_eq!(info.apps.len(), 2);
    assert!(info.apps.iter().all(|a| a.peer.ip().is_loopback()));
    sender
        .request_binary(&ClientRequest::Send {
            recipient: bob_addr,
            message: b"to both".to_vec(),
            connection_id: None,
        })
        .await;
    assert_eq!(expect_received(&mut first).await.0, b"to both");
    assert_eq!(expect_received(&mut second).await.0, b"to both");
    first.close().await;
    sender
        .request_binary(&ClientRequest::Send {
            recipient: bob_addr,
            message: b"still here".to_vec(),
            connection_id: None,
        })
        .await;
    assert_eq!(expect_received(&mut second).await.0, b"still here");
    d.stop().await;
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identities_come_back_after_a_daemon_restart() {
    let net = localnet().await;
    let state = tempfile::tempdir().expect("tmp");
    let port = free_port();
    let d = TestDaemon::start(state.path(), &net.api_url(), port);
    let (ws, addr) = d.init("alice").await;
    d.stop().await;

    let d = TestDaemon::start(state.path(), &net.api_url(), port);
    let mut app = App::connect(ws).await;
    assert_eq!(app.self_address().await, addr, "same address after restart");
    // Re-authenticated: a message to ourselves goes round the mixnet.
    app.request_binary(&ClientRequest::Send {
        recipient: addr,
        message: b"round trip".to_vec(),
        connection_id: None,
    })
    .await;
    assert_eq!(expect_received(&mut app).await.0, b"round trip");
    d.stop().await;
    net.shutdown().await;
}

/// A layer-2 mixnode is down while alice's message is sent (stopped just
/// before, started again once alice has had to retransmit): the fragments
/// and acks routed through it are lost (alice's topology, fetched before
/// the stop, still lists it; about half of ~125 fragments take it), alice's
/// client retransmits them, and bob gets the whole message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_survives_a_mixnode_down_during_the_transfer() {
    let net = localnet().await;
    let state = tempfile::tempdir().expect("tmp");
    let d = TestDaemon::start(state.path(), &net.api_url(), free_port());
    let (alice_ws, _) = d.init("alice").await;
    let (bob_ws, bob_addr) = d.init("bob").await;
    let mut alice = App::connect(alice_ws).await;
    let mut bob = App::connect(bob_ws).await;
    let layer2 = net.layer(2);
    let victim = layer2.first().expect("a layer-2 mixnode").id;
    net.stop_node(victim).await.expect("stop");
    let data = random_bytes(200_000);
    alice
        .request_binary(&ClientRequest::Send {
            recipient: bob_addr,
            message: data.clone(),
            connection_id: None,
        })
        .await;
    // The node stays down until alice's client has retransmitted (bounded:
    // a client that never retransmits fails here).
    let retransmissions = || {
        d.manager
            .info("alice")
            .ok()
            .and_then(|i| i.stats)
            .map_or(0, |s| s.retransmissions)
    };
    let started = std::time::Instant::now();
    while retransmissions() == 0 {
        assert!(
            started.elapsed() < nymd_tests::WAIT,
            "alice's client did not retransmit: {:?}",
            d.manager.info("alice").ok().and_then(|i| i.stats)
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    net.start_node(victim).await.expect("start");
    let (got, _) = expect_received(&mut bob).await;
    assert_eq!(got, data, "retransmission delivered the whole message");
    d.stop().await;
    net.shutdown().await;
}
