//! Malformed input from clients and peer nodes is logged and dropped; the
//! node keeps serving everyone else.

use std::time::Duration;

use futures_util::SinkExt;
use nymd_localnet::{DelayPolicy, Limits, Localnet, LocalnetConfig};
use nymd_proto::gateway::frames::seal_client_frame;
use nymd_proto::gateway::{
    AuthenticateV2, ClientControlRequest, ClientFrameKind, ServerResponse, TypedGatewayError,
    CURRENT_PROTOCOL_VERSION,
};
use nymd_proto::keys::{GatewaySharedKey, X25519Public, X25519Secret};
use nymd_proto::mixpacket::{encode_frame, FrameVersion, MixPacket};
use nymd_proto::sphinx::{build_forward, RouteHop};
use nymd_proto::{KeyRotation, NodeAddress, PacketSize, SphinxVersion};
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use crate::support::{
    bounded, closed_within, connect, counters, init_tracing, next_response, payload, unix_now,
    wait_until, Client, ClientKeys, STEP,
};

fn config() -> LocalnetConfig {
    LocalnetConfig {
        delay: DelayPolicy::NoDelay,
        gateways: 1,
        limits: Limits {
            ws_handshake_timeout: Duration::from_millis(500),
            pre_auth_message_timeout: Duration::from_secs(2),
            ..Limits::default()
        },
        ..LocalnetConfig::default()
    }
}

/// Whether the peer closes a raw TCP connection within `limit`.
async fn tcp_closed_within(s: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 256];
    let end = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(end, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

fn is_error(r: &Option<ServerResponse>) -> bool {
    matches!(r, Some(ServerResponse::Error { .. }))
}

/// Garbage JSON, binary frames, idle sockets and half-done websocket
/// upgrades before authentication; then, on an authenticated session,
/// garbage text, bad binary frames, wrong packet sizes, a bad next hop and
/// a replayed authentication. The gateway answers errors and keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_drops_bad_client_input_and_keeps_serving() {
    init_tracing();
    bounded(Duration::from_secs(40), async {
        let net = Localnet::start(config()).await.expect("start");
        let gw = net.gateways()[0].clone();
        let gw_id = gw.id;
        let mut good = Client::register(&gw).await;

        // A TCP client that never completes the websocket upgrade is cut off.
        let ws_addr = gw.ws_addr.expect("ws");
        let mut silent = TcpStream::connect(ws_addr).await.expect("tcp");
        let mut half = TcpStream::connect(ws_addr).await.expect("tcp");
        half.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
            .await
            .expect("write");
        let mut junk = TcpStream::connect(ws_addr).await.expect("tcp");
        junk.write_all(b"\x16\x03\x01 definitely not http\r\n\r\n")
            .await
            .expect("write");
        assert!(tcp_closed_within(&mut silent, STEP).await);
        assert!(tcp_closed_within(&mut half, STEP).await);
        assert!(tcp_closed_within(&mut junk, STEP).await);

        // Before authentication: error, then the socket is closed.
        let mut ws = connect(&gw).await;
        ws.send(Message::text("{not json")).await.expect("send");
        assert!(is_error(&next_response(&mut ws, STEP).await));
        assert!(closed_within(&mut ws, STEP).await);

        let mut ws = connect(&gw).await;
        ws.send(Message::text(r#"{"type":"claimFreeTestnetBandwidth"}"#))
            .await
            .expect("send");
        assert!(is_error(&next_response(&mut ws, STEP).await));
        assert!(closed_within(&mut ws, STEP).await);

        let mut ws = connect(&gw).await;
        ws.send(Message::binary(vec![1u8, 1, 2, 3]))
            .await
            .expect("send");
        assert!(is_error(&next_response(&mut ws, STEP).await));
        assert!(closed_within(&mut ws, STEP).await);

        // A registration Init of the wrong size gets a handshake error.
        let mut ws = connect(&gw).await;
        ws.send(Message::text(
            ClientControlRequest::handshake_payload(6, vec![7u8; 12]).to_json(),
        ))
        .await
        .expect("send");
        assert!(closed_within(&mut ws, STEP).await);

        // The first message may use the old Init name.
        let mut ws = connect(&gw).await;
        ws.send(Message::text(
            r#"{"type":"registerHandshakeInitRequest","protocol_version":6,"data":[1,2,3]}"#,
        ))
        .await
        .expect("send");
        let reply = crate::support::next_message(&mut ws, STEP).await;
        assert!(
            matches!(&reply, Some(Message::Text(t)) if t.contains("handshakeError")),
            "Init parsed as a handshake: {reply:?}"
        );

        // An idle socket is dropped after the pre-auth timeout.
        let mut idle = connect(&gw).await;
        assert!(closed_within(&mut idle, STEP).await);

        // Authentication with an unknown key is refused.
        let stranger = ClientKeys::new(&gw);
        let mut fake = stranger;
        fake.shared_key = Some(GatewaySharedKey::from_bytes([9; 32]));
        let Err((_, refused)) = Client::authenticate(fake).await else {
            panic!("unknown client authenticated");
        };
        assert!(matches!(refused, ServerResponse::Error { .. }));

        // After authentication: errors, but the session stays open.
        let mut c = Client::register(&gw).await;
        let key = c.shared_key().clone();
        let malformed_before = counters(&net, gw_id).malformed;
        c.ws.send(Message::text("]]]")).await.expect("send");
        assert!(matches!(c.response().await, ServerResponse::Error { .. }));
        c.ws.send(Message::binary(vec![1u8])).await.expect("send");
        assert!(matches!(c.response().await, ServerResponse::Error { .. }));
        // Sealed under the wrong key.
        let mut rng = StdRng::from_entropy();
        let wrong = GatewaySharedKey::from_bytes([3; 32]);
        let f = seal_client_frame(&mut rng, &wrong, ClientFrameKind::ForwardSphinxV2, &[0; 40]);
        c.ws.send(Message::binary(f)).await.expect("send");
        assert!(matches!(c.response().await, ServerResponse::Error { .. }));
        // Right key, but a sphinx packet of no valid size.
        let l1 = net.layer(1)[0].mix_addr;
        let bad = MixPacket::new(NodeAddress(l1), vec![0u8; 1000], KeyRotation::Unknown);
        let f = seal_client_frame(
            &mut rng,
            &key,
            ClientFrameKind::ForwardSphinxV2,
            &bad.to_v2_bytes(),
        );
        c.ws.send(Message::binary(f)).await.expect("send");
        assert!(matches!(c.response().await, ServerResponse::Error { .. }));
        // Unknown kind byte.
        let mut f = seal_client_frame(&mut rng, &key, ClientFrameKind::ForwardSphinx, &[0; 8]);
        f[0] = 9;
        c.ws.send(Message::binary(f)).await.expect("send");
        assert!(matches!(c.response().await, ServerResponse::Error { .. }));
        // Handshake messages and a second authentication are out of place.
        c.ws.send(Message::text(
            ClientControlRequest::handshake_payload(6, vec![1]).to_json(),
        ))
        .await
        .expect("send");
        assert!(matches!(c.response().await, ServerResponse::Error { .. }));
        assert!(counters(&net, gw_id).malformed >= malformed_before + 6);

        // A well-formed packet for a next hop outside the network is
        // accepted (and metered) but not forwarded.
        let unroutable_before = counters(&net, gw_id).unroutable;
        let mut packets = c.build_message(net.topology(), &good.recipient(), b"x", Duration::ZERO);
        let (_, mut p) = packets.remove(0);
        p.next_hop = NodeAddress("127.0.0.1:9".parse().expect("addr"));
        c.forward(&p).await;
        assert!(matches!(c.response().await, ServerResponse::Send { .. }));
        assert!(
            wait_until(STEP, || counters(&net, gw_id).unroutable
                == unroutable_before + 1)
            .await
        );

        // Still serving: the same session sends a real message.
        let data = payload(50, 9);
        c.send_message(net.topology(), &good.recipient(), &data, Duration::ZERO)
            .await;
        assert_eq!(good.receive_message(STEP).await.expect("delivered"), data);

        // A captured authenticateV2 cannot be replayed.
        let keys = c.disconnect().await;
        let req = AuthenticateV2::new(
            &mut rng,
            keys.shared_key.as_ref().expect("key"),
            &keys.identity,
            CURRENT_PROTOCOL_VERSION,
            unix_now(),
        )
        .into_request()
        .to_json();
        let mut first = connect(&gw).await;
        first.send(Message::text(req.clone())).await.expect("send");
        assert!(matches!(
            next_response(&mut first, STEP).await,
            Some(ServerResponse::Authenticate { status: true, .. })
        ));
        drop(first);
        let mut replay = connect(&gw).await;
        replay.send(Message::text(req)).await.expect("send");
        assert!(is_error(&next_response(&mut replay, STEP).await));

        // Without bandwidth nothing is forwarded.
        let mut poor = Client::register_only(ClientKeys::new(&gw)).await;
        let packets = poor.build_message(net.topology(), &good.recipient(), b"y", Duration::ZERO);
        poor.forward(&packets[0].1).await;
        match poor.response().await {
            ServerResponse::TypedError {
                error:
                    TypedGatewayError::OutOfBandwidth {
                        required,
                        available,
                    },
            } => {
                assert_eq!(required, PacketSize::Regular.size() as i64);
                assert_eq!(available, 0);
            }
            other => panic!("expected out_of_bandwidth, got {other:?}"),
        }
        assert!(good.next_pushed(Duration::from_millis(300)).await.is_none());
        net.shutdown().await;
    })
    .await;
}

/// A mixnode drops bad frames (closing the link), wrong-size and garbage
/// packets, replays, packets for unknown next hops and packets that end at
/// a mixnode, and still mixes a real message afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixnode_drops_bad_peer_input_and_keeps_serving() {
    init_tracing();
    bounded(Duration::from_secs(40), async {
        let net = Localnet::start(LocalnetConfig {
            gateways: 2,
            ..config()
        })
        .await
        .expect("start");
        let l1 = net.layer(1)[0].clone();
        let l2 = net.layer(2)[0].clone();
        let hop =
            |n: &nymd_localnet::NodeInfo| RouteHop::new(NodeAddress(n.mix_addr), n.sphinx_key);
        let mut rng = StdRng::from_entropy();
        let c1 = || counters(&net, l1.id);

        // Bad version byte: the link is closed.
        let mut s = TcpStream::connect(l1.mix_addr).await.expect("tcp");
        s.write_all(&[9, 1, 0, 0, 0, 0]).await.expect("write");
        assert!(tcp_closed_within(&mut s, STEP).await);
        // Unknown size tag: closed too.
        let mut s = TcpStream::connect(l1.mix_addr).await.expect("tcp");
        s.write_all(&[7, 42, 0]).await.expect("write");
        assert!(tcp_closed_within(&mut s, STEP).await);
        assert_eq!(c1().malformed, 2);

        let mut link = TcpStream::connect(l1.mix_addr).await.expect("tcp");
        // Right size, garbage content: dropped, link kept.
        let mut garbage = vec![0u8; PacketSize::Regular.size()];
        rng.fill_bytes(&mut garbage);
        let frame = encode_frame(FrameVersion::V7, KeyRotation::Unknown, &garbage).expect("frame");
        link.write_all(&frame).await.expect("write");
        assert!(wait_until(STEP, || c1().malformed == 3).await);

        // A valid packet twice: the second is a replay.
        let fake_secret = X25519Secret::random_from_rng(&mut rng);
        let fake = RouteHop::new(
            NodeAddress("127.0.0.1:9".parse().expect("addr")),
            X25519Public::from(&fake_secret),
        );
        let route = [hop(&l1), hop(&l2), fake];
        let packet = build_forward(
            &mut rng,
            SphinxVersion::Seeds259,
            PacketSize::Ack,
            &[0u8; 21],
            &route,
            &[1u8; 32],
            &[Duration::ZERO; 3],
        )
        .expect("packet");
        let frame = encode_frame(FrameVersion::V8, KeyRotation::Even, &packet).expect("frame");
        link.write_all(&frame).await.expect("write");
        link.write_all(&frame).await.expect("write");
        assert!(wait_until(STEP, || c1().replayed == 1).await);
        // The first copy went on to layer 2, which cannot route it further.
        assert!(wait_until(STEP, || counters(&net, l2.id).unroutable == 1).await);

        // A packet ending at a mixnode.
        let packet = build_forward(
            &mut rng,
            SphinxVersion::Legacy258,
            PacketSize::Ack,
            &[0u8; 21],
            &[hop(&l1)],
            &[1u8; 32],
            &[Duration::ZERO],
        )
        .expect("packet");
        let frame = encode_frame(FrameVersion::V7, KeyRotation::Unknown, &packet).expect("frame");
        link.write_all(&frame).await.expect("write");
        assert!(wait_until(STEP, || c1().malformed == 4).await);
        assert!(!tcp_closed_within(&mut link, Duration::from_millis(200)).await);

        // Still mixing for everyone else.
        let gws = net.gateways();
        let mut a = Client::register(&gws[0]).await;
        let mut b = Client::register(&gws[1]).await;
        let data = payload(2000, 5);
        let ids = a
            .send_message(net.topology(), &b.recipient(), &data, Duration::ZERO)
            .await;
        assert_eq!(b.receive_message(STEP).await.expect("delivered"), data);
        assert!(a.wait_for_acks(ids.len(), STEP).await);
        net.shutdown().await;
    })
    .await;
}
