//! Golden wire fixtures: one hex file per message variant under
//! `tests/fixtures/`. A change to the wire format shows up as a diff here.
//!
//! Regenerate after an intended change with
//! `NYMD_BLESS=1 cargo test -p nymd-ipc --test fixtures`, and say in the
//! commit why the wire changed (and whether `PROTOCOL_VERSION` must move).

use std::collections::BTreeSet;
use std::path::PathBuf;

use nymd_ipc::codec::{decode_body, encode_frame, HEADER_LEN};
use nymd_ipc::*;

fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn counters() -> TrafficCounters {
    TrafficCounters {
        real_packets_sent: 120,
        real_bytes_sent: 120 * 2413,
        real_packets_received: 80,
        real_bytes_received: 80 * 2413,
        cover_packets_sent: 3000,
        cover_bytes_sent: 3000 * 2413,
        cover_packets_received: 2990,
        cover_bytes_received: 2990 * 2413,
        acks_received: 118,
        retransmissions: 2,
        queue_depth: 5,
        outbox_messages: 3,
        inbox_messages: 2,
        outside_warnings: 17,
        surb_requests_refused: 4,
        reply_keys_expired_on_load: 6,
        reply_surbs_rotated_on_load: 9,
    }
}

const ADDRESS: &str = "DguTcdkWWtDyUFLvQxRdcA8qZhardhE1ZXy1YCC7Zfmq.Dxreouj5RhQqMb3ZaAxgXFdGkmfbDKwk457FdeHGKmQQ@4kjgWmFU1tcGAZYRZR57yFuVAexjLbJ5M7jvo3X5Hkcf";

fn identity() -> IdentityInfo {
    IdentityInfo {
        id: "alice".into(),
        state: IdentityState::Running,
        address: Some(ADDRESS.into()),
        websocket_host: "127.0.0.1".into(),
        websocket_port: 1977,
        gateway_id: Some("4kjgWmFU1tcGAZYRZR57yFuVAexjLbJ5M7jvo3X5Hkcf".into()),
        gateway_url: Some("ws://192.0.2.10:9000/".into()),
        gateway_status: Some(GatewayStatus {
            connection: GatewayConnection::Connected,
            rtt_ms: Some(42),
            last_error: None,
            reconnects: 3,
            bandwidth_remaining: Some(1_000_000_000),
        }),
        connected_apps: vec![AppInfo {
            connection: 1,
            peer: "127.0.0.1:50312".into(),
            connected_secs: 60,
        }],
        uptime_secs: Some(3600),
        counters: counters(),
        access: Some(AccessInfo {
            any_local_user: false,
            predates_access_control: false,
            allowed_uids: vec![1000],
            allowed_groups: vec!["nymapps".into()],
            allowed_origins: vec!["http://localhost:8080".into()],
            allow_remote_apps: false,
            max_apps: 64,
        }),
        memory: Some(MemoryInfo {
            inbox_bytes: 4096,
            inbox_bound: 128 << 20,
            received_bytes: 0,
            received_bound: 64 << 20,
            reassembly_bytes: 3322,
            reassembly_bound: 128 << 20,
            surb_store_bytes: 55_600,
            surb_store_bound: 32 << 20,
            reply_key_bytes: 19_200,
            reply_key_bound: 32 << 20,
            socks_bytes: 70_000,
            socks_bound: 64 << 20,
            daemon_bytes: 200_000,
            daemon_budget: 1 << 30,
        }),
        socks5: Some(Socks5Info {
            enabled: true,
            host: "127.0.0.1".into(),
            port: 1080,
            provider: Some(ADDRESS.into()),
            anonymous: true,
            listening: true,
            max_connections: 256,
            connect_timeout_secs: 60,
            idle_timeout_secs: 300,
            open_connections: 3,
            connections_total: 41,
            connections_refused: 2,
            connections_failed: 1,
            bytes_sent: 52_000,
            bytes_received: 10_485_760,
        }),
    }
}

fn socks5_counters() -> Socks5Counters {
    Socks5Counters {
        open_connections: 3,
        connections_total: 41,
        connections_refused: 2,
        connections_failed: 1,
        bytes_sent: 52_000,
        bytes_received: 10_485_760,
    }
}

fn node(i: u8) -> NodeInfo {
    NodeInfo {
        identity: format!("Node{i}Key"),
        address: format!("192.0.2.{i}:1789"),
        performance: 90 + i,
    }
}

fn topology_brief() -> TopologyBrief {
    TopologyBrief {
        epoch: Some(12345),
        layers: 3,
        mixnodes: 240,
        gateways: 80,
    }
}

fn request(body: RequestBody) -> ClientMessage {
    ClientMessage::Request(Request { id: 7, body })
}

fn response(body: ResponseBody) -> ServerMessage {
    ServerMessage::Response(Response {
        id: 7,
        result: Ok(body),
    })
}

fn event(event: Event) -> ServerMessage {
    ServerMessage::Event {
        subscription: 3,
        event,
    }
}

fn request_samples() -> Vec<RequestBody> {
    let id = || "alice".to_string();
    vec![
        RequestBody::Init(InitRequest {
            id: id(),
            gateway: Some("4kjgWmFU1tcGAZYRZR57yFuVAexjLbJ5M7jvo3X5Hkcf".into()),
            latency_based_selection: false,
            port: Some(1977),
            host: Some("127.0.0.1".into()),
            no_start: false,
            socks5: Some(InitSocks5 {
                port: Some(1080),
                provider: Some("auto".into()),
                plain: false,
            }),
        }),
        RequestBody::Start { id: id() },
        RequestBody::Stop { id: id() },
        RequestBody::Restart { id: id() },
        RequestBody::Remove { id: id() },
        RequestBody::List,
        RequestBody::Status { id: Some(id()) },
        RequestBody::Address { id: id() },
        RequestBody::Gateways { latency: true },
        RequestBody::Topology,
        RequestBody::Send(SendRequest {
            id: id(),
            to: ADDRESS.into(),
            message: b"hello mixnet".to_vec(),
        }),
        RequestBody::Subscribe {
            identity: Some(id()),
        },
        RequestBody::Import(ImportRequest {
            id: id(),
            source: "/home/alice/.nym/clients/alice".into(),
            private_identity: vec![1; 32].into(),
            public_identity: vec![2; 32],
            private_encryption: vec![3; 32].into(),
            public_encryption: vec![4; 32],
            ack_key: vec![5; 16].into(),
            gateway: Some(ImportedGateway {
                gateway_id: "4kjgWmFU1tcGAZYRZR57yFuVAexjLbJ5M7jvo3X5Hkcf".into(),
                listener: "ws://192.0.2.10:9000/".into(),
                shared_key: vec![6; 32].into(),
            }),
            port: Some(1977),
            host: Some("127.0.0.1".into()),
        }),
        RequestBody::DaemonInfo,
        RequestBody::Shutdown,
        RequestBody::Access(AccessRequest {
            id: id(),
            allow_origins: vec!["http://localhost:8080".into()],
            remove_origins: vec!["https://old.example".into()],
            allow_users: vec!["bob".into(), "1001".into()],
            remove_users: vec!["carol".into()],
            allow_groups: vec!["nymapps".into()],
            remove_groups: vec!["staff".into()],
            any_local_user: Some(false),
        }),
        RequestBody::Socks5(Socks5Request {
            id: id(),
            enable: Some(true),
            port: Some(1081),
            provider: Some(ADDRESS.into()),
            anonymous: Some(false),
        }),
    ]
}

/// Exhaustive on purpose: a new response variant does not compile until it
/// has a fixture name (and then the "every variant" check below wants a
/// sample).
fn response_name(body: &ResponseBody) -> &'static str {
    match body {
        ResponseBody::Done => "done",
        ResponseBody::Identity(_) => "identity",
        ResponseBody::Identities(_) => "identities",
        ResponseBody::Address { .. } => "address",
        ResponseBody::Gateways(_) => "gateways",
        ResponseBody::Topology(_) => "topology",
        ResponseBody::Subscribed => "subscribed",
        ResponseBody::DaemonInfo(_) => "daemon_info",
    }
}

fn response_samples() -> Vec<ResponseBody> {
    let mut stopped = identity();
    stopped.id = "bob".into();
    stopped.state = IdentityState::Failed {
        reason: "gateway refused registration".into(),
    };
    stopped.gateway_status = None;
    stopped.connected_apps = vec![];
    stopped.uptime_secs = None;
    stopped.counters = TrafficCounters::default();
    // An identity created before access control, as an older daemon (no
    // access field) or this one reports it.
    stopped.access = Some(AccessInfo {
        any_local_user: true,
        predates_access_control: true,
        max_apps: 64,
        ..AccessInfo::default()
    });
    stopped.socks5 = None;
    vec![
        ResponseBody::Done,
        ResponseBody::Identity(identity()),
        ResponseBody::Identities(vec![identity(), stopped]),
        ResponseBody::Address {
            id: "alice".into(),
            address: ADDRESS.into(),
        },
        ResponseBody::Gateways(vec![GatewayInfo {
            identity: "4kjgWmFU1tcGAZYRZR57yFuVAexjLbJ5M7jvo3X5Hkcf".into(),
            host: "192.0.2.10".into(),
            ws_url: "ws://192.0.2.10:9000/".into(),
            performance: 98,
            latency_ms: Some(31),
        }]),
        ResponseBody::Topology(TopologySummary {
            epoch: Some(12345),
            fetched_at_unix: 1_760_000_000,
            layers: vec![
                TopologyLayer {
                    layer: 1,
                    nodes: vec![node(1)],
                },
                TopologyLayer {
                    layer: 2,
                    nodes: vec![node(2)],
                },
                TopologyLayer {
                    layer: 3,
                    nodes: vec![node(3)],
                },
            ],
            gateways: vec![node(4)],
        }),
        ResponseBody::Subscribed,
        ResponseBody::DaemonInfo(DaemonInfo {
            version: "0.1.0".into(),
            protocol_version: 1,
            instance_id: "5f0c8a1e2b3d4c6f".into(),
            pid: 4242,
            uptime_secs: 86_400,
            socket: "/run/nymd/nymd.sock".into(),
            state_dir: "/var/lib/nymd".into(),
            identities: 2,
            running: 1,
        }),
    ]
}

fn event_samples() -> Vec<Event> {
    vec![
        Event::IdentityState {
            identity: "alice".into(),
            state: IdentityState::Reconnecting,
        },
        Event::IdentityRemoved {
            identity: "alice".into(),
        },
        Event::GatewayStatus {
            identity: "alice".into(),
            gateway_id: "4kjgWmFU1tcGAZYRZR57yFuVAexjLbJ5M7jvo3X5Hkcf".into(),
            status: GatewayStatus {
                connection: GatewayConnection::Reconnecting,
                rtt_ms: None,
                last_error: Some("connection reset by peer".into()),
                reconnects: 4,
                bandwidth_remaining: None,
            },
        },
        Event::Traffic {
            identity: "alice".into(),
            counters: counters(),
            socks5: Some(socks5_counters()),
        },
        Event::TopologyRefreshed(topology_brief()),
        Event::AppConnected {
            identity: "alice".into(),
            app: AppInfo {
                connection: 2,
                peer: "127.0.0.1:50400".into(),
                connected_secs: 0,
            },
        },
        Event::AppDisconnected {
            identity: "alice".into(),
            connection: 2,
        },
        Event::InitProgress {
            identity: "alice".into(),
            stage: InitStage::Registering,
            detail: "gateway 4kjgWmFU1tcGAZYRZR57yFuVAexjLbJ5M7jvo3X5Hkcf".into(),
        },
    ]
}

#[allow(
    clippy::large_enum_variant,
    reason = "a list of test samples; the sizes follow the messages'"
)]
enum Sample {
    Client(ClientMessage),
    Server(ServerMessage),
}

fn samples() -> Vec<(String, Sample)> {
    let mut out = vec![(
        "client_hello".to_string(),
        Sample::Client(ClientMessage::Hello(Hello {
            protocol_version: 1,
            client_name: "nymctl 0.1.0".into(),
        })),
    )];
    for body in request_samples() {
        out.push((
            format!("request_{}", body.name()),
            Sample::Client(request(body)),
        ));
    }
    out.push((
        "server_welcome".into(),
        Sample::Server(ServerMessage::Welcome(Welcome {
            daemon_version: "0.1.0".into(),
            protocol_version: 1,
            instance_id: "5f0c8a1e2b3d4c6f".into(),
            features: vec!["events".into()],
            tier: Tier::Operate,
        })),
    ));
    for body in response_samples() {
        out.push((
            format!("response_ok_{}", response_name(&body)),
            Sample::Server(response(body)),
        ));
    }
    out.push((
        "response_err".into(),
        Sample::Server(ServerMessage::Response(Response {
            id: 7,
            result: Err(IpcError::unknown_identity("carol")),
        })),
    ));
    out.push((
        "server_snapshot".into(),
        Sample::Server(ServerMessage::Snapshot {
            subscription: 3,
            snapshot: Snapshot {
                identities: vec![identity()],
                topology: Some(topology_brief()),
            },
        }),
    ));
    for ev in event_samples() {
        out.push((format!("event_{}", ev.name()), Sample::Server(event(ev))));
    }
    out.push((
        "server_lagged".into(),
        Sample::Server(ServerMessage::Lagged {
            subscription: 3,
            missed: 17,
        }),
    ));
    out.push((
        "server_error".into(),
        Sample::Server(ServerMessage::Error(version_mismatch(
            "nymctl 0.2.0",
            2,
            "0.1.0",
        ))),
    ));
    out
}

fn to_hex_lines(bytes: &[u8]) -> String {
    bytes
        .chunks(32)
        .map(|c| format!("{}\n", hex::encode(c)))
        .collect()
}

fn parse_hex(text: &str) -> Vec<u8> {
    let digits: String = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .flat_map(|l| l.chars().filter(|c| !c.is_whitespace()))
        .collect();
    hex::decode(digits).expect("fixture is hex")
}

#[test]
fn every_variant_has_a_matching_fixture() {
    let bless = std::env::var_os("NYMD_BLESS").is_some_and(|v| v == "1");
    let dir = fixtures_dir();
    let samples = samples();
    let mut failures = Vec::new();
    let mut names = BTreeSet::new();
    for (name, sample) in &samples {
        assert!(names.insert(name.clone()), "duplicate fixture name {name}");
        let frame = match sample {
            Sample::Client(m) => encode_frame(m, u32::MAX),
            Sample::Server(m) => encode_frame(m, u32::MAX),
        }
        .expect("encodes");
        let path = dir.join(format!("{name}.hex"));
        if bless {
            std::fs::create_dir_all(&dir).expect("mkdir fixtures");
            let text = format!(
                "# {name}: u32 BE length + MessagePack (named fields)\n{}",
                to_hex_lines(&frame)
            );
            std::fs::write(&path, text).expect("write fixture");
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&path) else {
            failures.push(format!("{name}: missing {}", path.display()));
            continue;
        };
        let golden = parse_hex(&text);
        if golden != frame {
            failures.push(format!(
                "{name}: encoding changed\n  golden: {}\n  now:    {}",
                hex::encode(&golden),
                hex::encode(&frame)
            ));
        }
        // The fixture must also decode to the sample: old frames stay readable.
        let body = &golden[HEADER_LEN..];
        let decoded_ok = match sample {
            Sample::Client(m) => decode_body::<ClientMessage>(body).map(|d| &d == m),
            Sample::Server(m) => decode_body::<ServerMessage>(body).map(|d| &d == m),
        };
        match decoded_ok {
            Ok(true) => {}
            Ok(false) => failures.push(format!("{name}: fixture decodes to a different message")),
            Err(e) => failures.push(format!("{name}: fixture does not decode: {e}")),
        }
    }
    if !bless {
        for entry in std::fs::read_dir(&dir).expect("fixtures dir") {
            let entry = entry.expect("dir entry");
            let file = entry.file_name().to_string_lossy().into_owned();
            if let Some(stem) = file.strip_suffix(".hex") {
                if !names.contains(stem) {
                    failures.push(format!("{file}: stale fixture (no sample produces it)"));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{}\n\nIf the change is intended: NYMD_BLESS=1 cargo test -p nymd-ipc --test fixtures",
        failures.join("\n")
    );
}

#[test]
fn every_request_and_event_variant_is_sampled() {
    // `name()` is an exhaustive match, so a new variant needs a name; this
    // check makes it need a sample too.
    let requests: BTreeSet<_> = request_samples().iter().map(|r| r.name()).collect();
    assert_eq!(requests.len(), 17, "a request variant has no sample");
    let responses: BTreeSet<_> = response_samples().iter().map(response_name).collect();
    assert_eq!(responses.len(), 8, "a response variant has no sample");
    let events: BTreeSet<_> = event_samples().iter().map(|e| e.name()).collect();
    assert_eq!(events.len(), 8, "an event variant has no sample");
}

#[test]
fn unknown_error_codes_from_a_newer_daemon_decode_as_unknown() {
    #[derive(serde::Serialize)]
    struct FutureError {
        code: &'static str,
        message: &'static str,
        hint: Option<String>,
    }
    let bytes = rmp_serde::to_vec_named(&FutureError {
        code: "QuotaExceeded",
        message: "too many identities",
        hint: None,
    })
    .expect("encode");
    let e: IpcError = decode_body(&bytes).expect("decodes");
    assert_eq!(e.code, ErrorCode::Unknown);
}

#[test]
fn fields_added_later_are_ignored_by_older_readers() {
    #[derive(serde::Serialize)]
    struct HelloV1Plus {
        protocol_version: u32,
        client_name: &'static str,
        some_future_field: Vec<u32>,
    }
    #[derive(serde::Serialize)]
    enum Msg {
        Hello(HelloV1Plus),
    }
    let bytes = rmp_serde::to_vec_named(&Msg::Hello(HelloV1Plus {
        protocol_version: 1,
        client_name: "future",
        some_future_field: vec![1, 2, 3],
    }))
    .expect("encode");
    let m: ClientMessage = decode_body(&bytes).expect("decodes");
    assert_eq!(
        m,
        ClientMessage::Hello(Hello {
            protocol_version: 1,
            client_name: "future".into()
        })
    );
}

/// The identity frame in `compat/<name>.hex`, written by an older daemon,
/// decodes as today's sample without the fields that came later (their
/// serde defaults); `older` clears what the old daemon did not send.
fn old_identity_frame_decodes(name: &str, older: impl FnOnce(&mut IdentityInfo)) {
    let path = fixtures_dir().join(format!("compat/{name}.hex"));
    let text = std::fs::read_to_string(&path).expect("compat fixture");
    let frame = parse_hex(&text);
    let decoded: ServerMessage = decode_body(&frame[HEADER_LEN..]).expect("decodes");
    let mut want = identity();
    want.socks5 = None;
    want.memory = None;
    want.counters.outside_warnings = 0;
    want.counters.surb_requests_refused = 0;
    want.counters.reply_keys_expired_on_load = 0;
    want.counters.reply_surbs_rotated_on_load = 0;
    older(&mut want);
    assert_eq!(decoded, response(ResponseBody::Identity(want)));
}

#[test]
fn an_identity_from_a_daemon_without_access_control_still_decodes() {
    // Encoded before `IdentityInfo::access` existed.
    old_identity_frame_decodes("response_ok_identity_before_access", |w| w.access = None);
}

#[test]
fn an_identity_from_a_daemon_without_memory_budgets_still_decodes() {
    // Encoded before `IdentityInfo::memory` and the counters of outside
    // warnings and refused SURB requests existed.
    old_identity_frame_decodes("response_ok_identity_before_memory", |_| {});
}

#[test]
fn an_identity_from_a_daemon_without_socks5_still_decodes() {
    // Encoded before `IdentityInfo::socks5` existed; the fields added
    // before it are there.
    let path = fixtures_dir().join("compat/response_ok_identity_before_socks5.hex");
    let frame = parse_hex(&std::fs::read_to_string(&path).expect("compat fixture"));
    let decoded: ServerMessage = decode_body(&frame[HEADER_LEN..]).expect("decodes");
    let mut want = identity();
    want.socks5 = None;
    without_socks_memory(&mut want);
    assert_eq!(decoded, response(ResponseBody::Identity(want)));
}

/// `MemoryInfo` as a daemon before the SOCKS5 buffers were counted sent it.
fn without_socks_memory(i: &mut IdentityInfo) {
    if let Some(m) = i.memory.as_mut() {
        m.socks_bytes = 0;
        m.socks_bound = 0;
    }
}

#[test]
fn an_identity_from_a_daemon_without_socks_buffers_in_memory_still_decodes() {
    // Encoded before `MemoryInfo::socks_bytes` and `socks_bound` existed.
    let path = fixtures_dir().join("compat/response_ok_identity_before_socks_memory.hex");
    let frame = parse_hex(&std::fs::read_to_string(&path).expect("compat fixture"));
    let decoded: ServerMessage = decode_body(&frame[HEADER_LEN..]).expect("decodes");
    let mut want = identity();
    without_socks_memory(&mut want);
    assert_eq!(decoded, response(ResponseBody::Identity(want)));
}

#[test]
fn an_init_request_from_a_nymctl_without_socks5_still_decodes() {
    let path = fixtures_dir().join("compat/request_init_before_socks5.hex");
    let frame = parse_hex(&std::fs::read_to_string(&path).expect("compat fixture"));
    let decoded: ClientMessage = decode_body(&frame[HEADER_LEN..]).expect("decodes");
    let ClientMessage::Request(Request {
        body: RequestBody::Init(init),
        ..
    }) = decoded
    else {
        panic!("not an init request: {decoded:?}");
    };
    assert_eq!(init.socks5, None);
    assert_eq!(init.port, Some(1977));
}

#[test]
fn a_traffic_event_from_a_daemon_without_socks5_counters_still_decodes() {
    // Encoded before `Event::Traffic` had `socks5`.
    let path = fixtures_dir().join("compat/event_traffic_before_socks5.hex");
    let frame = parse_hex(&std::fs::read_to_string(&path).expect("compat fixture"));
    let decoded: ServerMessage = decode_body(&frame[HEADER_LEN..]).expect("decodes");
    assert_eq!(
        decoded,
        event(Event::Traffic {
            identity: "alice".into(),
            counters: counters(),
            socks5: None,
        })
    );
}

#[test]
fn the_traffic_event_s_socks5_counters_are_those_of_the_identity_s_socks5_info() {
    let info = identity().socks5.expect("alice has a proxy");
    assert_eq!(info.counters(), socks5_counters());
}
