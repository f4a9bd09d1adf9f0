//! nym-client's app API at its edges, through a real daemon (the library's
//! manager on a temporary state dir), real websockets and the embedded
//! local mixnet:
//!
//! - a send failure reaches only the app that sent the message;
//! - an app that stops reading while 3,000 messages arrive loses none: they
//!   wait in nymd (not in socket buffers) and arrive once each, all before a
//!   message that arrived after them;
//! - `selfAddress` is answered at once, and pings too, while the identity
//!   cannot reach its gateway; a send made meanwhile is carried out once it
//!   can;
//! - `closedConnection` from one app leaves another app's lane of the same
//!   connection id alone.

use std::time::{Duration, Instant};

use nymd::manager::RunState;
use nymd_localnet::{Localnet, NodeInfo};
use nymd_proto::appapi::{ClientRequest, ServerResponse};
use nymd_proto::{Recipient, SenderTag};
use nymd_tests::{free_port, App, TestDaemon, WAIT};

/// The gateway `who` is registered with.
fn gateway_of(net: &Localnet, who: &Recipient) -> NodeInfo {
    net.gateways()
        .into_iter()
        .find(|g| g.identity.as_bytes() == who.gateway().as_bytes())
        .expect("registered with a localnet gateway")
}

async fn start() -> (Localnet, tempfile::TempDir, TestDaemon) {
    let net = nymd_tests::fast_localnet().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let d = TestDaemon::start(tmp.path(), &net.api_url(), free_port());
    (net, tmp, d)
}

/// The next response that is not a received message, within `within`.
async fn next_non_message(app: &mut App, within: Duration) -> Option<ServerResponse> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match app.try_next_response(left).await? {
            ServerResponse::Received { .. } => continue,
            other => return Some(other),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_failure_reaches_only_the_app_that_sent() {
    let (net, _tmp, d) = start().await;
    let (ws, _alice) = d.init("alice").await;
    let (_, bob) = d.init("bob").await;
    let mut a = App::connect(ws).await;
    let mut b = App::connect(ws).await;
    // Both sessions are registered before anything fails.
    a.self_address().await;
    b.self_address().await;

    // A reply through SURBs alice never received: the mixnet client fails
    // it asynchronously, on the lane of the app that asked.
    a.request_binary(&ClientRequest::Reply {
        sender_tag: SenderTag([7; 16]),
        message: b"to nobody".to_vec(),
        connection_id: None,
    })
    .await;
    match next_non_message(&mut a, WAIT).await {
        Some(ServerResponse::Error(e)) => {
            assert!(!e.message.is_empty());
        }
        other => panic!("the sender gets the failure, got {other:?}"),
    }

    // A recipient whose "gateway" is a mixnode: refused at once, to the
    // sender only.
    let mixnode = net.layer(1)[0].identity_bs58();
    let bad: Recipient = format!(
        "{}@{mixnode}",
        bob.to_string().split_once('@').expect("address").0
    )
    .parse()
    .expect("still an address");
    a.request_binary(&ClientRequest::Send {
        recipient: bad,
        message: b"to a mixnode".to_vec(),
        connection_id: None,
    })
    .await;
    match next_non_message(&mut a, WAIT).await {
        Some(ServerResponse::Error(e)) => {
            assert!(e.message.contains("mixnode"), "{}", e.message);
        }
        other => panic!("the sender gets the refusal, got {other:?}"),
    }

    // The other app heard nothing of either.
    assert_eq!(next_non_message(&mut b, Duration::from_secs(3)).await, None);
    // Its session still works.
    b.self_address().await;
    a.close().await;
    b.close().await;
    d.stop().await;
    net.shutdown().await;
}

/// With `report_send_failures = false` an identity keeps nym-client's
/// silence about asynchronous send failures (a direct refusal is still an
/// answer to the request).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_send_failures_off_keeps_nym_clients_silence() {
    let (net, tmp, d) = start().await;
    let (ws, _) = d.init("alice").await;
    let path = tmp.path().join("identities/alice/config.toml");
    let text = std::fs::read_to_string(&path).expect("config.toml");
    assert!(text.contains("report_send_failures = true"), "{text}");
    std::fs::write(
        &path,
        text.replace(
            "report_send_failures = true",
            "report_send_failures = false",
        ),
    )
    .expect("write config.toml");
    let report = tokio::time::timeout(WAIT, d.manager.reload())
        .await
        .expect("reload in time")
        .expect("reload");
    assert_eq!(report.restarted, vec!["alice".to_string()], "{report:?}");
    d.wait_state("alice", RunState::Running).await;
    let mut a = App::connect(ws).await;
    a.self_address().await;
    a.request_binary(&ClientRequest::Reply {
        sender_tag: SenderTag([7; 16]),
        message: b"to nobody".to_vec(),
        connection_id: None,
    })
    .await;
    assert_eq!(
        next_non_message(&mut a, Duration::from_secs(3)).await,
        None,
        "no error pushed to the app"
    );
    a.self_address().await;
    a.close().await;
    d.stop().await;
    net.shutdown().await;
}

/// Messages alice sends to bob: an index, then filler. 3,000 of them are
/// 9 MB, more than the socket buffers between nymd and the app can hold
/// (at most 4 MiB for nymd's send buffer with Linux's default tcp_wmem).
fn numbered(i: u32) -> Vec<u8> {
    let mut m = i.to_be_bytes().to_vec();
    m.extend(std::iter::repeat_n(b'x', 2996));
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_that_stops_reading_gets_every_message_once_and_the_backlog_first() {
    const N: u32 = 3000;
    let (net, tmp, d) = start().await;
    let (alice_ws, _) = d.init("alice").await;
    let (bob_ws, bob) = d.init("bob").await;
    // Delivering 3,000 messages may take longer than the default write
    // timeout (60 s) on a loaded machine, after which nymd would close the
    // reader that this test keeps from reading: bob's is raised.
    let path = tmp.path().join("identities/bob/config.toml");
    let text = std::fs::read_to_string(&path).expect("config.toml");
    assert!(text.contains("[websocket]\n"), "{text}");
    std::fs::write(
        &path,
        text.replace("[websocket]\n", "[websocket]\nwrite_timeout_secs = 900\n"),
    )
    .expect("write config.toml");
    let report = tokio::time::timeout(WAIT, d.manager.reload())
        .await
        .expect("reload in time")
        .expect("reload");
    assert_eq!(report.restarted, vec!["bob".to_string()], "{report:?}");
    d.wait_state("bob", RunState::Running).await;
    // Bob's app reads nothing until all of alice's messages were
    // acknowledged by bob's gateway; its 4 KiB receive buffer makes nymd
    // hold the backlog instead of the kernel.
    let mut reader = App::connect_with_receive_buffer(bob_ws, 4096).await;
    // Binary mode (the session answers in the mode of the app's last
    // request): received bytes arrive as they were sent.
    reader.request_binary(&ClientRequest::SelfAddress).await;
    assert!(matches!(
        reader.next_response().await,
        ServerResponse::SelfAddress(_)
    ));
    let mut sender = App::connect(alice_ws).await;
    for i in 0..N {
        sender
            .request_binary(&ClientRequest::Send {
                recipient: bob,
                message: numbered(i),
                connection_id: None,
            })
            .await;
    }
    // Wait until alice has nothing unacknowledged and bob's client has
    // received everything, watching how much bob's identity holds.
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut held_most = 0u64;
    loop {
        let bob_info = d.manager.info("bob").expect("bob");
        held_most = held_most.max(bob_info.inbox_messages);
        let received = bob_info
            .stats
            .as_ref()
            .map(|s| s.messages_received)
            .unwrap_or(0);
        if received >= u64::from(N) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "bob's client received {received} of {N}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let bob_info = d.manager.info("bob").expect("bob");
    held_most = held_most.max(bob_info.inbox_messages);
    // At most ~1,400 of the 3 KB messages fit in the socket buffers.
    assert!(
        held_most >= 1000,
        "the backlog waited in nymd's inbox (at most {held_most} held): the test must exercise backpressure"
    );
    // One more message after the backlog: it must come after all of it.
    sender
        .request_binary(&ClientRequest::Send {
            recipient: bob,
            message: b"newer".to_vec(),
            connection_id: None,
        })
        .await;
    // Now read: the backlog (every message once; the mixnet does not keep
    // the sending order, so the order is the one they arrived in), then the
    // newer one.
    let mut seen = vec![0u32; N as usize];
    for n in 0..N {
        match reader.next_response().await {
            ServerResponse::Received { message, .. } => {
                assert_ne!(
                    message, b"newer",
                    "the newer message came after {n} of the backlog"
                );
                let i = message
                    .get(..4)
                    .and_then(|b| b.try_into().ok())
                    .map(u32::from_be_bytes)
                    .expect("numbered");
                seen[i as usize] += 1;
            }
            other => panic!("expected a message, got {other:?}"),
        }
    }
    assert!(
        seen.iter().all(|c| *c == 1),
        "every message of the backlog exactly once"
    );
    match reader.next_response().await {
        ServerResponse::Received { message, .. } => assert_eq!(message, b"newer"),
        other => panic!("expected the newer message, got {other:?}"),
    }
    assert_eq!(
        reader.try_next_response(Duration::from_secs(2)).await,
        None,
        "nothing twice"
    );
    assert_eq!(
        d.manager.info("bob").expect("bob").inbox_messages,
        0,
        "written messages left the inbox"
    );
    reader.close().await;
    sender.close().await;
    d.stop().await;
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_address_and_pings_are_answered_while_the_gateway_is_unreachable() {
    let (net, _tmp, d) = start().await;
    let (alice_ws, alice) = d.init("alice").await;
    let (bob_ws, bob) = d.init("bob").await;
    let gw = gateway_of(&net, &alice);
    net.stop_node(gw.id).await.expect("stop gateway");
    d.manager.restart("alice").await.expect("restart");
    d.wait_state_where("alice", |s| !matches!(s, RunState::Running), "not running")
        .await;

    let mut app = App::connect(alice_ws).await;
    // A send now waits for the identity.
    app.request_binary(&ClientRequest::Send {
        recipient: bob,
        message: b"sent while connecting".to_vec(),
        connection_id: Some(5),
    })
    .await;
    let t0 = Instant::now();
    app.send_text(r#"{"type":"selfAddress"}"#).await;
    match app.try_next_response(Duration::from_secs(1)).await {
        Some(ServerResponse::SelfAddress(r)) => assert_eq!(r, alice),
        other => panic!("selfAddress within 1 s while connecting, got {other:?}"),
    }
    let (pong, frames) = app.ping(Duration::from_secs(1)).await;
    assert!(pong, "a ping is answered within 1 s while a send waits");
    assert!(frames.is_empty(), "nothing else yet: {frames:?}");
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "the gateway is still down"
    );

    // The gateway comes back: the waiting send is carried out.
    net.start_node(gw.id).await.expect("start gateway");
    let mut bob_app = App::connect(bob_ws).await;
    match app.next_response().await {
        ServerResponse::LaneQueueLength { lane, .. } => assert_eq!(lane, 5),
        other => panic!("the queued send is answered once the identity is up, got {other:?}"),
    }
    match bob_app.next_response().await {
        ServerResponse::Received { message, .. } => assert_eq!(message, b"sent while connecting"),
        other => panic!("bob receives it, got {other:?}"),
    }
    app.close().await;
    bob_app.close().await;
    d.stop().await;
    net.shutdown().await;
}

/// After a long outage the identity's retries are far apart (the backoff
/// doubles up to 60 s); a request that waits makes it try again within
/// about 2 s, so an app does not sit out the backoff once the gateway is
/// back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_request_cuts_the_retry_backoff_short() {
    let (net, _tmp, d) = start().await;
    let (alice_ws, alice) = d.init("alice").await;
    let (_, bob) = d.init("bob").await;
    let gw = gateway_of(&net, &alice);
    net.stop_node(gw.id).await.expect("stop gateway");
    d.manager.restart("alice").await.expect("restart");
    // Failed attempts at about 0, 0.5, 1.5, 3.5, 7.5 and 15.5 s: after
    // 17 s the next one is due at about 31.5 s.
    tokio::time::sleep(Duration::from_secs(17)).await;
    let mut app = App::connect(alice_ws).await;
    app.request_binary(&ClientRequest::Send {
        recipient: bob,
        message: b"after the outage".to_vec(),
        connection_id: Some(9),
    })
    .await;
    net.start_node(gw.id).await.expect("start gateway");
    let back = Instant::now();
    match app.next_response().await {
        ServerResponse::LaneQueueLength { lane, .. } => assert_eq!(lane, 9),
        other => panic!("the waiting send is carried out, got {other:?}"),
    }
    // Without the shortcut the answer comes with the attempt at ~31.5 s,
    // 14 s after the gateway is back.
    assert!(
        back.elapsed() < Duration::from_secs(10),
        "answered {:?} after the gateway came back",
        back.elapsed()
    );
    app.close().await;
    d.stop().await;
    net.shutdown().await;
}

async fn lane_length(app: &mut App, lane: u64) -> u64 {
    app.request_binary(&ClientRequest::GetLaneQueueLength(lane))
        .await;
    loop {
        match app.next_response().await {
            ServerResponse::LaneQueueLength {
                lane: l,
                queue_length,
            } if l == lane => return queue_length,
            ServerResponse::Error(e) => panic!("error: {e:?}"),
            _ => continue,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_connection_from_one_app_leaves_another_apps_lane_alone() {
    let (net, _tmp, d) = start().await;
    let (alice_ws, alice) = d.init("alice").await;
    let (bob_ws, bob) = d.init("bob").await;
    let mut a = App::connect(alice_ws).await;
    let mut b = App::connect(alice_ws).await;
    a.self_address().await;
    b.self_address().await;
    // Alice's gateway goes away: what the apps send stays queued on their
    // lanes.
    let gw = gateway_of(&net, &alice);
    net.stop_node(gw.id).await.expect("stop gateway");
    d.wait_state_where(
        "alice",
        |s| matches!(s, RunState::Reconnecting),
        "reconnecting",
    )
    .await;
    for (app, who) in [(&mut a, "A"), (&mut b, "B")] {
        for i in 0..3 {
            app.request_binary(&ClientRequest::Send {
                recipient: bob,
                message: format!("{who}-{i}").into_bytes(),
                connection_id: Some(7),
            })
            .await;
            match next_non_message(app, WAIT).await {
                Some(ServerResponse::LaneQueueLength { lane: 7, .. }) => {}
                other => panic!("{who}: lane 7's queue length, got {other:?}"),
            }
        }
    }
    assert_eq!(lane_length(&mut a, 7).await, 3);
    assert_eq!(lane_length(&mut b, 7).await, 3);
    // A closes its connection 7; B's lane 7 is a different lane.
    a.request_binary(&ClientRequest::ClosedConnection(7)).await;
    assert_eq!(lane_length(&mut a, 7).await, 0);
    assert_eq!(lane_length(&mut b, 7).await, 3);

    net.start_node(gw.id).await.expect("start gateway");
    let mut bob_app = App::connect(bob_ws).await;
    let seen = nymd_tests::collect_received(&mut bob_app, 3, Duration::from_secs(3)).await;
    let got: Vec<String> = seen
        .keys()
        .map(|m| String::from_utf8_lossy(m).into_owned())
        .collect();
    assert_eq!(
        got,
        vec!["B-0", "B-1", "B-2"],
        "only B's messages were sent"
    );
    a.close().await;
    b.close().await;
    bob_app.close().await;
    d.stop().await;
    net.shutdown().await;
}
