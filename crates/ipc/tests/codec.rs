//! Frame codec: round trips (proptest), caps, truncation, garbage.

use nymd_ipc::codec::{
    decode_body, encode_frame, read_frame, read_message, write_message, FrameDecoder, FrameError,
    DEFAULT_MAX_FRAME_LEN, HEADER_LEN,
};
use nymd_ipc::*;
use proptest::prelude::*;
use tokio::io::AsyncWriteExt;

fn s() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 ._:/@-]{0,24}"
}

fn counters() -> impl Strategy<Value = TrafficCounters> {
    prop::array::uniform13(any::<u64>()).prop_map(|a| TrafficCounters {
        real_packets_sent: a[0],
        real_bytes_sent: a[1],
        real_packets_received: a[2],
        real_bytes_received: a[3],
        cover_packets_sent: a[4],
        cover_bytes_sent: a[5],
        cover_packets_received: a[6],
        cover_bytes_received: a[7],
        acks_received: a[8],
        retransmissions: a[9],
        queue_depth: a[10],
        outbox_messages: a[11],
        inbox_messages: a[12],
        outside_warnings: a[10] ^ a[12],
        surb_requests_refused: a[11] ^ a[0],
        reply_keys_expired_on_load: a[1] ^ a[2],
        reply_surbs_rotated_on_load: a[3] ^ a[4],
    })
}

fn state() -> impl Strategy<Value = IdentityState> {
    prop_oneof![
        Just(IdentityState::Stopped),
        Just(IdentityState::Starting),
        Just(IdentityState::Running),
        Just(IdentityState::Reconnecting),
        s().prop_map(|reason| IdentityState::Failed { reason }),
    ]
}

fn gateway_status() -> impl Strategy<Value = GatewayStatus> {
    (
        prop_oneof![
            Just(GatewayConnection::Connected),
            Just(GatewayConnection::Reconnecting),
            Just(GatewayConnection::Down)
        ],
        any::<Option<u32>>(),
        prop::option::of(s()),
        any::<u64>(),
        any::<Option<i64>>(),
    )
        .prop_map(
            |(connection, rtt_ms, last_error, reconnects, bandwidth_remaining)| GatewayStatus {
                connection,
                rtt_ms,
                last_error,
                reconnects,
                bandwidth_remaining,
            },
        )
}

fn app() -> impl Strategy<Value = AppInfo> {
    (any::<u64>(), s(), any::<u64>()).prop_map(|(connection, peer, connected_secs)| AppInfo {
        connection,
        peer,
        connected_secs,
    })
}

fn access() -> impl Strategy<Value = AccessInfo> {
    (
        any::<(bool, bool, bool, u32)>(),
        prop::collection::vec(any::<u32>(), 0..3),
        prop::collection::vec(s(), 0..3),
        prop::collection::vec(s(), 0..3),
    )
        .prop_map(
            |((any_local_user, predates, allow_remote_apps, max_apps), uids, groups, origins)| {
                AccessInfo {
                    any_local_user,
                    predates_access_control: predates,
                    allowed_uids: uids,
                    allowed_groups: groups,
                    allowed_origins: origins,
                    allow_remote_apps,
                    max_apps,
                }
            },
        )
}

fn identity() -> impl Strategy<Value = IdentityInfo> {
    (
        (
            s(),
            state(),
            prop::option::of(s()),
            s(),
            any::<u16>(),
            prop::option::of(access()),
        ),
        (
            prop::option::of(s()),
            prop::option::of(s()),
            prop::option::of(gateway_status()),
            prop::collection::vec(app(), 0..3),
            any::<Option<u64>>(),
            counters(),
        ),
    )
        .prop_map(
            |(
                (id, state, address, websocket_host, websocket_port, access),
                (gateway_id, gateway_url, gateway_status, connected_apps, uptime_secs, counters),
            )| IdentityInfo {
                id,
                state,
                address,
                websocket_host,
                websocket_port,
                gateway_id,
                gateway_url,
                gateway_status,
                connected_apps,
                uptime_secs,
                counters,
                memory: access.as_ref().map(|a| MemoryInfo {
                    inbox_bytes: u64::from(a.max_apps),
                    daemon_budget: 1 << 30,
                    ..MemoryInfo::default()
                }),
                socks5: uptime_secs.map(|u| Socks5Info {
                    enabled: u % 2 == 0,
                    port: websocket_port.wrapping_add(1),
                    bytes_received: u,
                    ..Socks5Info::default()
                }),
                access,
            },
        )
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..64)
}

fn request_body() -> impl Strategy<Value = RequestBody> {
    prop_oneof![
        (
            s(),
            prop::option::of(s()),
            any::<bool>(),
            any::<Option<u16>>(),
            prop::option::of(s()),
            any::<bool>()
        )
            .prop_map(
                |(id, gateway, latency_based_selection, port, host, no_start)| {
                    RequestBody::Init(InitRequest {
                        id,
                        gateway,
                        latency_based_selection,
                        port,
                        host,
                        no_start,
                        socks5: port.map(|p| InitSocks5 {
                            port: Some(p),
                            provider: None,
                            plain: no_start,
                        }),
                    })
                }
            ),
        s().prop_map(|id| RequestBody::Start { id }),
        s().prop_map(|id| RequestBody::Stop { id }),
        s().prop_map(|id| RequestBody::Restart { id }),
        s().prop_map(|id| RequestBody::Remove { id }),
        Just(RequestBody::List),
        prop::option::of(s()).prop_map(|id| RequestBody::Status { id }),
        s().prop_map(|id| RequestBody::Address { id }),
        any::<bool>().prop_map(|latency| RequestBody::Gateways { latency }),
        Just(RequestBody::Topology),
        (s(), s(), bytes()).prop_map(|(id, to, message)| RequestBody::Send(SendRequest {
            id,
            to,
            message
        })),
        prop::option::of(s()).prop_map(|identity| RequestBody::Subscribe { identity }),
        (
            (s(), s(), bytes(), bytes(), bytes(), bytes(), bytes()),
            prop::option::of((s(), s(), bytes())),
            any::<Option<u16>>(),
            prop::option::of(s())
        )
            .prop_map(|((id, source, a, b, c, d, e), gw, port, host)| {
                RequestBody::Import(ImportRequest {
                    id,
                    source,
                    private_identity: a.into(),
                    public_identity: b,
                    private_encryption: c.into(),
                    public_encryption: d,
                    ack_key: e.into(),
                    gateway: gw.map(|(gateway_id, listener, shared_key)| ImportedGateway {
                        gateway_id,
                        listener,
                        shared_key: shared_key.into(),
                    }),
                    port,
                    host,
                })
            }),
        Just(RequestBody::DaemonInfo),
        Just(RequestBody::Shutdown),
        (
            s(),
            prop::collection::vec(s(), 0..2),
            prop::collection::vec(s(), 0..2),
            prop::collection::vec(s(), 0..2),
            any::<Option<bool>>()
        )
            .prop_map(|(id, origins, users, groups, any_local_user)| {
                RequestBody::Access(AccessRequest {
                    id,
                    allow_origins: origins.clone(),
                    remove_origins: origins,
                    allow_users: users.clone(),
                    remove_users: users,
                    allow_groups: groups.clone(),
                    remove_groups: groups,
                    any_local_user,
                })
            }),
        (
            s(),
            any::<Option<bool>>(),
            any::<Option<u16>>(),
            prop::option::of(s()),
            any::<Option<bool>>()
        )
            .prop_map(|(id, enable, port, provider, anonymous)| {
                RequestBody::Socks5(Socks5Request {
                    id,
                    enable,
                    port,
                    provider,
                    anonymous,
                })
            }),
    ]
}

fn client_message() -> impl Strategy<Value = ClientMessage> {
    prop_oneof![
        (any::<u32>(), s()).prop_map(|(protocol_version, client_name)| ClientMessage::Hello(
            Hello {
                protocol_version,
                client_name
            }
        )),
        (any::<u64>(), request_body())
            .prop_map(|(id, body)| ClientMessage::Request(Request { id, body })),
    ]
}

fn brief() -> impl Strategy<Value = TopologyBrief> {
    (
        any::<Option<u64>>(),
        any::<u8>(),
        any::<u32>(),
        any::<u32>(),
    )
        .prop_map(|(epoch, layers, mixnodes, gateways)| TopologyBrief {
            epoch,
            layers,
            mixnodes,
            gateways,
        })
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        (s(), state()).prop_map(|(identity, state)| Event::IdentityState { identity, state }),
        s().prop_map(|identity| Event::IdentityRemoved { identity }),
        (s(), s(), gateway_status()).prop_map(|(identity, gateway_id, status)| {
            Event::GatewayStatus {
                identity,
                gateway_id,
                status,
            }
        }),
        (
            s(),
            counters(),
            prop::option::of(prop::array::uniform6(any::<u64>()))
        )
            .prop_map(|(identity, counters, socks)| Event::Traffic {
                identity,
                counters,
                socks5: socks.map(|a| Socks5Counters {
                    open_connections: a[0],
                    connections_total: a[1],
                    connections_refused: a[2],
                    connections_failed: a[3],
                    bytes_sent: a[4],
                    bytes_received: a[5],
                }),
            }),
        brief().prop_map(Event::TopologyRefreshed),
        (s(), app()).prop_map(|(identity, app)| Event::AppConnected { identity, app }),
        (s(), any::<u64>()).prop_map(|(identity, connection)| Event::AppDisconnected {
            identity,
            connection
        }),
        (
            s(),
            prop_oneof![
                Just(InitStage::Keys),
                Just(InitStage::FetchingTopology),
                Just(InitStage::SelectingGateway),
                Just(InitStage::Registering),
                Just(InitStage::Storing),
                Just(InitStage::Starting),
                Just(InitStage::Done)
            ],
            s()
        )
            .prop_map(|(identity, stage, detail)| Event::InitProgress {
                identity,
                stage,
                detail
            }),
    ]
}

fn error_code() -> impl Strategy<Value = ErrorCode> {
    prop::sample::select(vec![
        ErrorCode::NotFound,
        ErrorCode::AlreadyExists,
        ErrorCode::PortInUse,
        ErrorCode::PermissionDenied,
        ErrorCode::InvalidArgument,
        ErrorCode::VersionMismatch,
        ErrorCode::Unavailable,
        ErrorCode::InvalidState,
        ErrorCode::ProtocolError,
        ErrorCode::Internal,
        ErrorCode::Unknown,
    ])
}

fn ipc_error() -> impl Strategy<Value = IpcError> {
    (error_code(), s(), prop::option::of(s())).prop_map(|(code, message, hint)| IpcError {
        code,
        message,
        hint,
    })
}

fn response_body() -> impl Strategy<Value = ResponseBody> {
    prop_oneof![
        Just(ResponseBody::Done),
        identity().prop_map(ResponseBody::Identity),
        prop::collection::vec(identity(), 0..3).prop_map(ResponseBody::Identities),
        (s(), s()).prop_map(|(id, address)| ResponseBody::Address { id, address }),
        prop::collection::vec(
            (s(), s(), s(), any::<u8>(), any::<Option<u32>>()).prop_map(
                |(identity, host, ws_url, performance, latency_ms)| GatewayInfo {
                    identity,
                    host,
                    ws_url,
                    performance,
                    latency_ms
                }
            ),
            0..3
        )
        .prop_map(ResponseBody::Gateways),
        (
            any::<Option<u64>>(),
            any::<u64>(),
            prop::collection::vec((s(), s(), any::<u8>()), 0..4)
        )
            .prop_map(|(epoch, fetched_at_unix, nodes)| {
                let nodes: Vec<NodeInfo> = nodes
                    .into_iter()
                    .map(|(identity, address, performance)| NodeInfo {
                        identity,
                        address,
                        performance,
                    })
                    .collect();
                ResponseBody::Topology(TopologySummary {
                    epoch,
                    fetched_at_unix,
                    layers: vec![TopologyLayer {
                        layer: 1,
                        nodes: nodes.clone(),
                    }],
                    gateways: nodes,
                })
            }),
        Just(ResponseBody::Subscribed),
        (
            s(),
            any::<u32>(),
            s(),
            any::<u32>(),
            any::<u64>(),
            s(),
            s(),
            any::<(u32, u32)>()
        )
            .prop_map(
                |(
                    version,
                    protocol_version,
                    instance_id,
                    pid,
                    uptime_secs,
                    socket,
                    state_dir,
                    (identities, running),
                )| {
                    ResponseBody::DaemonInfo(DaemonInfo {
                        version,
                        protocol_version,
                        instance_id,
                        pid,
                        uptime_secs,
                        socket,
                        state_dir,
                        identities,
                        running,
                    })
                }
            ),
    ]
}

fn server_message() -> impl Strategy<Value = ServerMessage> {
    prop_oneof![
        (
            s(),
            any::<u32>(),
            s(),
            prop::collection::vec(s(), 0..3),
            any::<bool>()
        )
            .prop_map(
                |(daemon_version, protocol_version, instance_id, features, op)| {
                    ServerMessage::Welcome(Welcome {
                        daemon_version,
                        protocol_version,
                        instance_id,
                        features,
                        tier: if op { Tier::Operate } else { Tier::Observe },
                    })
                }
            ),
        (
            any::<u64>(),
            prop::result::maybe_ok(response_body(), ipc_error())
        )
            .prop_map(|(id, result)| ServerMessage::Response(Response { id, result })),
        (
            any::<u64>(),
            prop::collection::vec(identity(), 0..3),
            prop::option::of(brief())
        )
            .prop_map(
                |(subscription, identities, topology)| ServerMessage::Snapshot {
                    subscription,
                    snapshot: Snapshot {
                        identities,
                        topology
                    }
                }
            ),
        (any::<u64>(), event()).prop_map(|(subscription, event)| ServerMessage::Event {
            subscription,
            event
        }),
        (any::<u64>(), any::<u64>()).prop_map(|(subscription, missed)| ServerMessage::Lagged {
            subscription,
            missed
        }),
        ipc_error().prop_map(ServerMessage::Error),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn client_messages_round_trip(msg in client_message()) {
        let frame = encode_frame(&msg, DEFAULT_MAX_FRAME_LEN).expect("encodes");
        let back: ClientMessage = decode_body(&frame[HEADER_LEN..]).expect("decodes");
        prop_assert_eq!(back, msg);
    }

    #[test]
    fn server_messages_round_trip(msg in server_message()) {
        let frame = encode_frame(&msg, DEFAULT_MAX_FRAME_LEN).expect("encodes");
        let back: ServerMessage = decode_body(&frame[HEADER_LEN..]).expect("decodes");
        prop_assert_eq!(back, msg);
    }

    /// However the bytes of a stream of frames are split, the decoder gives
    /// the same messages, and the stream ends cleanly.
    #[test]
    fn decoder_is_independent_of_chunking(
        msgs in prop::collection::vec(server_message(), 1..5),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let mut stream = Vec::new();
        for m in &msgs {
            stream.extend(encode_frame(m, DEFAULT_MAX_FRAME_LEN).expect("encodes"));
        }
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
        points.push(0);
        points.push(stream.len());
        points.sort_unstable();
        let mut dec = FrameDecoder::new(DEFAULT_MAX_FRAME_LEN);
        let mut out = Vec::new();
        for w in points.windows(2) {
            dec.handle_bytes(&stream[w[0]..w[1]]).expect("valid stream");
            while let Some(m) = dec.poll_message::<ServerMessage>().expect("valid frame") {
                out.push(m);
            }
        }
        prop_assert_eq!(out, msgs);
        prop_assert!(dec.is_idle());
        prop_assert!(dec.finish().is_ok());
    }

    /// Random bytes never panic the decoder: they give messages, nothing, or
    /// an error.
    #[test]
    fn garbage_never_panics(data in prop::collection::vec(any::<u8>(), 0..512)) {
        let mut dec = FrameDecoder::new(1024);
        if dec.handle_bytes(&data).is_ok() {
            for _ in 0..8 {
                match dec.poll_message::<ClientMessage>() {
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => break,
                }
            }
        }
        let _ = dec.finish();
        let _ = decode_body::<ServerMessage>(&data);
    }

    /// A frame cut anywhere is a truncation error at the end of the stream.
    #[test]
    fn a_cut_frame_is_truncated(msg in client_message(), cut in any::<prop::sample::Index>()) {
        let frame = encode_frame(&msg, DEFAULT_MAX_FRAME_LEN).expect("encodes");
        let at = 1 + cut.index(frame.len() - 1); // 1..len
        let mut dec = FrameDecoder::new(DEFAULT_MAX_FRAME_LEN);
        dec.handle_bytes(&frame[..at]).expect("no error yet");
        prop_assert_eq!(dec.poll_frame().expect("no error").is_none(), at < frame.len());
        if at < frame.len() {
            let truncated = matches!(dec.finish(), Err(FrameError::Truncated { .. }));
            prop_assert!(truncated);
        }
    }
}

#[test]
fn oversized_header_fails_before_the_body_arrives() {
    let mut dec = FrameDecoder::new(1024);
    let err = dec
        .handle_bytes(&1025u32.to_be_bytes())
        .expect_err("over the cap");
    assert!(
        matches!(
            err,
            FrameError::TooLarge {
                len: 1025,
                max: 1024
            }
        ),
        "{err}"
    );
    assert!(err.is_protocol_violation());
    // The decoder stays failed.
    assert!(dec.handle_bytes(&[0]).is_err());
    assert!(dec.poll_frame().is_err());
    // Exactly at the cap is fine.
    let mut dec = FrameDecoder::new(1024);
    dec.handle_bytes(&1024u32.to_be_bytes())
        .expect("at the cap");
    assert!(dec.poll_frame().expect("no error").is_none());
}

#[test]
fn header_split_over_calls_is_still_checked() {
    let mut dec = FrameDecoder::new(10);
    let header = u32::MAX.to_be_bytes();
    dec.handle_bytes(&header[..2]).expect("incomplete header");
    assert!(matches!(
        dec.handle_bytes(&header[2..]),
        Err(FrameError::TooLarge { .. })
    ));
}

#[test]
fn encoder_refuses_messages_over_the_cap() {
    let msg = ClientMessage::Request(Request {
        id: 1,
        body: RequestBody::Send(SendRequest {
            id: "a".into(),
            to: "b".into(),
            message: vec![0; 2048],
        }),
    });
    assert!(matches!(
        encode_frame(&msg, 1024),
        Err(FrameError::TooLarge { .. })
    ));
}

#[test]
fn garbage_body_is_a_decode_error() {
    let mut frame = 3u32.to_be_bytes().to_vec();
    frame.extend([0xc1, 0xc1, 0xc1]); // 0xc1 is never used in MessagePack
    let mut dec = FrameDecoder::new(DEFAULT_MAX_FRAME_LEN);
    dec.handle_bytes(&frame).expect("header ok");
    let err = dec.poll_message::<ClientMessage>().expect_err("garbage");
    assert!(err.is_protocol_violation(), "{err}");
}

#[test]
fn trailing_bytes_in_a_body_are_an_error() {
    let mut body = rmp_serde::to_vec_named(&ClientMessage::Request(Request {
        id: 1,
        body: RequestBody::List,
    }))
    .expect("encode");
    body.push(0xc0);
    assert!(matches!(
        decode_body::<ClientMessage>(&body),
        Err(FrameError::TrailingBytes(1))
    ));
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    // {"Request": {"id": 1, "body": [[[[...]]]]}} nested far deeper than any
    // message, both where a known type is expected and in an ignored field.
    for prefix in [
        &b"\x81\xa7Request\x82\xa2id\x01\xa4body"[..],
        &b"\x81\xa5Hello\x83\xb0protocol_version\x01\xabclient_name\xa1x\xa1z"[..],
    ] {
        let mut body = prefix.to_vec();
        body.extend(std::iter::repeat_n(0x91u8, 200_000));
        body.push(0xc0);
        assert!(decode_body::<ClientMessage>(&body).is_err());
    }
}

#[tokio::test]
async fn async_reader_tells_clean_end_from_torn_frame() {
    let msg = ClientMessage::Request(Request {
        id: 9,
        body: RequestBody::Topology,
    });
    let frame = encode_frame(&msg, DEFAULT_MAX_FRAME_LEN).expect("encodes");

    // Whole frame, then a clean end.
    let (mut a, mut b) = tokio::io::duplex(64);
    write_message(&mut a, &msg, DEFAULT_MAX_FRAME_LEN)
        .await
        .expect("write");
    drop(a);
    let got: Option<ClientMessage> = read_message(&mut b, DEFAULT_MAX_FRAME_LEN)
        .await
        .expect("read");
    assert_eq!(got, Some(msg));
    let end: Option<ClientMessage> = read_message(&mut b, DEFAULT_MAX_FRAME_LEN)
        .await
        .expect("clean end");
    assert_eq!(end, None);

    // Ends inside the header, then inside the body.
    for cut in [2, frame.len() - 1] {
        let (mut a, mut b) = tokio::io::duplex(1024);
        a.write_all(&frame[..cut]).await.expect("write");
        drop(a);
        let err = read_frame(&mut b, DEFAULT_MAX_FRAME_LEN)
            .await
            .expect_err("torn");
        assert!(matches!(err, FrameError::Truncated { .. }), "{err}");
    }

    // Oversized header: refused without waiting for the body.
    let (mut a, mut b) = tokio::io::duplex(64);
    a.write_all(&u32::MAX.to_be_bytes()).await.expect("write");
    let err = read_frame(&mut b, DEFAULT_MAX_FRAME_LEN)
        .await
        .expect_err("too large");
    assert!(matches!(err, FrameError::TooLarge { .. }));
}

/// A `GatewayStatus` from a daemon before `reconnects` and
/// `bandwidth_remaining` existed still decodes, with their defaults.
#[test]
fn gateway_status_without_the_newer_fields_decodes() {
    #[derive(serde::Serialize)]
    struct OldGatewayStatus {
        connection: GatewayConnection,
        rtt_ms: Option<u32>,
        last_error: Option<String>,
    }
    let old = OldGatewayStatus {
        connection: GatewayConnection::Connected,
        rtt_ms: Some(7),
        last_error: None,
    };
    let body = rmp_serde::to_vec_named(&old).expect("encodes");
    let new: GatewayStatus = decode_body(&body).expect("decodes");
    assert_eq!(
        new,
        GatewayStatus {
            connection: GatewayConnection::Connected,
            rtt_ms: Some(7),
            last_error: None,
            reconnects: 0,
            bandwidth_remaining: None,
        }
    );
}

/// `TrafficCounters` from a daemon before the persisted outbox existed still
/// decode, with `outbox_messages` 0.
#[test]
fn traffic_counters_without_the_outbox_count_decode() {
    #[derive(serde::Serialize)]
    struct OldCounters {
        real_packets_sent: u64,
        real_bytes_sent: u64,
        real_packets_received: u64,
        real_bytes_received: u64,
        cover_packets_sent: u64,
        cover_bytes_sent: u64,
        cover_packets_received: u64,
        cover_bytes_received: u64,
        acks_received: u64,
        retransmissions: u64,
        queue_depth: u64,
    }
    let old = OldCounters {
        real_packets_sent: 1,
        real_bytes_sent: 2,
        real_packets_received: 3,
        real_bytes_received: 4,
        cover_packets_sent: 5,
        cover_bytes_sent: 6,
        cover_packets_received: 7,
        cover_bytes_received: 8,
        acks_received: 9,
        retransmissions: 10,
        queue_depth: 11,
    };
    let body = rmp_serde::to_vec_named(&old).expect("encodes");
    let new: TrafficCounters = decode_body(&body).expect("decodes");
    assert_eq!(new.queue_depth, 11);
    assert_eq!(new.outbox_messages, 0);
    assert_eq!(new.inbox_messages, 0);
}

/// Secret key bytes are encoded exactly as plain bytes were, and never
/// shown by `Debug`.
#[test]
fn secret_bytes_are_plain_bytes_on_the_wire_and_redacted_in_debug() {
    let secret = nymd_ipc::SecretBytes::from(vec![0xAB; 32]);
    let plain = serde_bytes::ByteBuf::from(vec![0xAB; 32]);
    assert_eq!(
        rmp_serde::to_vec(&secret).expect("encode"),
        rmp_serde::to_vec(&plain).expect("encode")
    );
    let back: nymd_ipc::SecretBytes =
        rmp_serde::from_slice(&rmp_serde::to_vec(&plain).expect("encode")).expect("decode");
    assert_eq!(back.as_bytes(), &[0xAB; 32][..]);
    let shown = format!("{secret:?}");
    assert!(
        !shown.contains("171") && !shown.to_lowercase().contains("ab, ab"),
        "{shown}"
    );
    assert!(shown.contains("32 bytes"), "{shown}");
}
