//! Writes small valid inputs into `fuzz/corpus/<target>/seed-*` so that the
//! fuzzers start from well-formed messages. Run from `fuzz/`:
//! `cargo run --example make_seeds`. Inputs follow each target's layout (a
//! leading mode/pick byte where the target has one).

use std::path::Path;
use std::time::Duration;

use nymd_proto::ack::build_surb_ack;
use nymd_proto::appapi::{ApiError, ClientRequest, ServerResponse};
use nymd_proto::chunking::NymMessage;
use nymd_proto::gateway::messages::{ClientRequest as GwClientRequest, SensitiveResponse};
use nymd_proto::gateway::{
    AuthenticateV2, ClientAwaitingMaterial, ClientControlRequest, GatewayAwaitingMaterial,
    HandshakeMessage, ServerResponse as GwServerResponse, CURRENT_PROTOCOL_VERSION,
};
use nymd_proto::keys::{
    AckKey, EncryptionKeyPair, GatewaySharedKey, IdentityKeyPair, X25519Public, X25519Secret,
};
use nymd_proto::mixpacket::FrameVersion;
use nymd_proto::params::FragmentId;
use nymd_proto::payload::prepare_fragment;
use nymd_proto::replies::{RepliableMessage, ReplyMessage, ReplySurb};
use nymd_proto::sphinx::{self, sphinx_node, RouteHop};
use nymd_proto::topology::api::{
    KeyRotationInfoResponse, KeyRotationState, NodesResponseMetadata, SkimmedNodesResponse,
};
use nymd_proto::topology::{
    EntryDetails, NymTopology, RewardedSet, RoutingNode, SupportedRoles, Timestamp,
    TopologyMetadata,
};
use nymd_proto::{KeyRotation, NodeAddress, PacketSize, Recipient, SenderTag, SphinxVersion};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new("corpus").join(target);
    std::fs::create_dir_all(&dir).expect("corpus dir");
    std::fs::write(dir.join(format!("seed-{name}")), bytes).expect("write seed");
}

fn with(prefix: &[u8], rest: &[u8]) -> Vec<u8> {
    let mut v = prefix.to_vec();
    v.extend_from_slice(rest);
    v
}

/// The fixed nodes of the `sphinx_process` target.
fn node(i: u8) -> (X25519Secret, RouteHop) {
    let secret = X25519Secret::from([i.wrapping_add(1); 32]);
    let addr = if i % 2 == 0 {
        format!("10.0.0.{i}:1789")
    } else {
        format!("[fe80::{i}]:1789")
    };
    let hop = RouteHop::new(
        NodeAddress(addr.parse().expect("address")),
        X25519Public::from(&secret),
    );
    (secret, hop)
}

fn main() {
    let mut rng = ChaCha20Rng::seed_from_u64(42);
    let alice = IdentityKeyPair::generate(&mut rng);
    let enc = EncryptionKeyPair::generate(&mut rng);
    let gw = IdentityKeyPair::generate(&mut rng);
    let recipient = Recipient::new(alice.public(), enc.public(), gw.public());
    let route: Vec<RouteHop> = (0..4).map(|i| node(i).1).collect();

    // ---- app API
    let requests = [
        ClientRequest::Send {
            recipient,
            message: b"hello".to_vec(),
            connection_id: Some(3),
        },
        ClientRequest::SendAnonymous {
            recipient,
            message: b"anon".to_vec(),
            reply_surbs: 10,
            connection_id: None,
        },
        ClientRequest::Reply {
            sender_tag: SenderTag([9; 16]),
            message: b"re".to_vec(),
            connection_id: None,
        },
        ClientRequest::SelfAddress,
        ClientRequest::ClosedConnection(7),
        ClientRequest::GetLaneQueueLength(8),
    ];
    for (i, r) in requests.iter().enumerate() {
        write("appapi_request", &format!("bin{i}"), &r.to_binary());
        if let Ok(t) = r.to_text() {
            write("appapi_request", &format!("text{i}"), t.as_bytes());
        }
    }
    write(
        "appapi_request",
        "legacy",
        format!(r#"{{"type":"send","recipient_address":"{recipient}","message":{{"a":1}}}}"#)
            .as_bytes(),
    );
    let responses = [
        ServerResponse::Received {
            message: b"hi".to_vec(),
            sender_tag: Some(SenderTag([1; 16])),
        },
        ServerResponse::Received {
            message: b"hi".to_vec(),
            sender_tag: None,
        },
        ServerResponse::SelfAddress(recipient),
        ServerResponse::LaneQueueLength {
            lane: 1,
            queue_length: 2,
        },
        ServerResponse::Error(ApiError::malformed_request("bad")),
    ];
    for (i, r) in responses.iter().enumerate() {
        write("appapi_response", &format!("bin{i}"), &r.to_binary());
        write(
            "appapi_response",
            &format!("text{i}"),
            r.to_text().as_bytes(),
        );
    }

    // ---- gateway JSON, handshake, auth
    let key = GatewaySharedKey::from_bytes([7u8; 32]);
    let auth = AuthenticateV2::new(&mut rng, &key, &alice, 6, 1_750_000_000);
    let controls = [
        ClientControlRequest::SupportedProtocol {},
        ClientControlRequest::handshake_payload(6, vec![1, 2, 3]),
        ClientControlRequest::HandshakeError {
            message: "x".into(),
        },
        auth.clone().into_request(),
        ClientControlRequest::ClaimFreeTestnetBandwidth,
        GwClientRequest::ForgetMe {
            client: true,
            stats: false,
        }
        .encrypt(&mut rng, &key),
    ];
    for (i, c) in controls.iter().enumerate() {
        write("gateway_json", &format!("c{i}"), c.to_json().as_bytes());
    }
    let server = [
        GwServerResponse::Authenticate {
            protocol_version: 6,
            status: true,
            bandwidth_remaining: 100,
            upgrade_mode: false,
        },
        GwServerResponse::Register {
            protocol_version: 6,
            status: true,
            upgrade_mode: true,
        },
        GwServerResponse::Send {
            remaining_bandwidth: 5,
            upgrade_mode: false,
        },
        GwServerResponse::SupportedProtocol { version: 6 },
        GwServerResponse::error("nope"),
        SensitiveResponse::ForgetMeAck {}.encrypt(&mut rng, &key),
    ];
    for (i, s) in server.iter().enumerate() {
        write("gateway_json", &format!("s{i}"), s.to_json().as_bytes());
    }
    write(
        "gateway_json",
        "plain",
        br#"{"RememberMe":{"session_type":"Vpn"}}"#,
    );

    // handshake: step byte, version byte, payload (see the target).
    let client_id = IdentityKeyPair::from_secret_bytes(&[1u8; 32]);
    let gateway_id = IdentityKeyPair::from_secret_bytes(&[2u8; 32]);
    for step in [0u8, 1, 2, 3, 4] {
        let mut r = ChaCha20Rng::seed_from_u64(u64::from(step));
        let (client, init) =
            ClientAwaitingMaterial::start(&mut r, &client_id, gateway_id.public(), 6);
        let init_bytes = init.data().unwrap_or_default().to_vec();
        let (gw_state, material) =
            GatewayAwaitingMaterial::start(&mut r, &gateway_id, &init_bytes, 6)
                .expect("honest init");
        let payload = match step {
            0 => init_bytes.clone(),
            1 => material.data().unwrap_or_default().to_vec(),
            2 => {
                let (_c, m) = client.on_message(&mut r, &material).expect("material");
                let _ = gw_state;
                m.data().unwrap_or_default().to_vec()
            }
            3 => vec![1],
            _ => material.to_json().into_bytes(),
        };
        write(
            "handshake",
            &format!("step{step}"),
            &with(&[step, 6], &payload),
        );
    }
    let hs = HandshakeMessage::error("bye");
    write("handshake", "err", &with(&[4, 6], hs.to_json().as_bytes()));

    let auth_key = GatewaySharedKey::from_bytes([9u8; 32]);
    let id3 = IdentityKeyPair::from_secret_bytes(&[3u8; 32]);
    let good = AuthenticateV2::with_nonce(
        &auth_key,
        &id3,
        CURRENT_PROTOCOL_VERSION,
        [1; 12],
        1_750_000_000,
    );
    write(
        "auth_v2",
        "json",
        &with(&[0], serde_json::to_string(&good).expect("json").as_bytes()),
    );
    write(
        "auth_v2",
        "req",
        &with(&[0], good.into_request().to_json().as_bytes()),
    );
    write(
        "auth_v2",
        "structured",
        &[1, 6, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 0xf0, 0],
    );

    // ---- packets
    let ack_key = AckKey::from_bytes([4u8; 16]);
    let surb_ack = build_surb_ack(
        &mut rng,
        SphinxVersion::Seeds259,
        &ack_key,
        FragmentId {
            set_id: 5,
            position: 1,
        },
        &route,
        &alice.public_bytes(),
        Duration::from_millis(1),
    )
    .expect("surb ack");
    let fragment = vec![0x33u8; PacketSize::Regular.fragment_capacity()];
    let prepared = prepare_fragment(
        &mut rng,
        SphinxVersion::Seeds259,
        &fragment,
        &recipient,
        &route,
        &surb_ack,
        Duration::from_millis(1),
        KeyRotation::Even,
    )
    .expect("prepare");
    let mp = prepared.mix_packet.clone();
    write("mixpacket", "v1", &mp.to_v1_bytes());
    write("mixpacket", "v2", &mp.to_v2_bytes());
    let mut stream = mp.to_frame(FrameVersion::V8).expect("frame");
    stream.extend(mp.to_frame(FrameVersion::V7).expect("frame"));
    write("node_frames", "two", &with(&[3], &stream));
    // gateway_frames: kind byte then plaintext.
    write("gateway_frames", "fs2", &with(&[1], &mp.to_v2_bytes()));
    write("gateway_frames", "fs1", &with(&[0], &mp.to_v1_bytes()));
    // sphinx_process mode 0 (regular size = index 0): a packet for node 0.
    write("sphinx_process", "regular", &with(&[0], &mp.packet));
    write("sphinx_process", "built", &[1, 3, 1, 2, 3]);
    write("sphinx_process", "built258", &[3, 0x83, 9, 9]);
    // ack: final-hop plaintext after one packet went all the way.
    let mut current = mp.packet.clone();
    for i in 0..4u8 {
        match sphinx::process(&current, &node(i).0).expect("process") {
            sphinx::Processed::Forward { packet, .. } => current = packet,
            sphinx::Processed::Final { plaintext, .. } => {
                write("ack", "final", &with(&[0], &plaintext));
                break;
            }
        }
    }
    write(
        "ack",
        "ack",
        &nymd_proto::ack::ack_plaintext(
            &mut rng,
            &ack_key,
            FragmentId {
                set_id: 5,
                position: 1,
            },
        ),
    );

    // ---- fragments, messages, SURBs
    let msg = NymMessage::Plain(vec![0x55; 4000]);
    let padded = msg
        .pad(PacketSize::Regular.fragment_capacity())
        .expect("pad");
    let frags = padded
        .split_into_fragments(&mut rng, PacketSize::Regular.fragment_capacity())
        .expect("split");
    write("fragments", "f0", &frags[0].to_bytes());
    let mut seq = Vec::new();
    // The reassembler target reads at most 254 bytes per item: use a
    // message split into small fragments there.
    let small = NymMessage::Plain(vec![0x66; 300]).pad(60).expect("pad");
    for f in small.split_into_fragments(&mut rng, 60).expect("split") {
        let b = f.to_bytes();
        seq.push(b.len() as u8);
        seq.extend(b);
    }
    write("reassembler", "small", &with(&[0xff], &seq));
    write("nym_message", "padded", padded.as_bytes());
    write("nym_message", "plain", &msg.to_bytes().expect("bytes"));

    let nodes: Vec<_> = route
        .iter()
        .map(|h| sphinx_node(&h.address, &h.key).expect("node"))
        .collect();
    let mut surbs = Vec::new();
    for v in [SphinxVersion::Seeds259, SphinxVersion::Legacy258] {
        let s = ReplySurb::build_with_mean_delay(
            &mut rng,
            &nodes,
            &alice.public(),
            Duration::from_millis(1),
            v,
        )
        .expect("surb");
        write(
            "reply_surb",
            &format!("{}", v.number()),
            &with(&[0], &s.to_bytes()),
        );
        surbs.push(s);
    }
    let repliable =
        RepliableMessage::new_data(SenderTag([2; 16]), b"data".to_vec(), vec![surbs[0].clone()]);
    write("reply_bodies", "v2", &repliable.to_bytes().expect("bytes"));
    let repliable1 =
        RepliableMessage::new_data(SenderTag([2; 16]), b"data".to_vec(), vec![surbs[1].clone()]);
    write("reply_bodies", "v1", &repliable1.to_bytes().expect("bytes"));
    let req = ReplyMessage::SurbRequest {
        recipient: Box::new(recipient),
        amount: 20,
    };
    write("reply_bodies", "req", &req.to_bytes());
    write(
        "nym_message",
        "repliable",
        &NymMessage::Repliable(repliable).to_bytes().expect("bytes"),
    );
    write(
        "nym_message",
        "reply",
        &NymMessage::Reply(req).to_bytes().expect("bytes"),
    );

    // ---- topology
    let mk = |id: u32, i: u8, entry: bool| RoutingNode {
        node_id: id,
        mix_host: format!("10.1.0.{i}:1789").parse().expect("addr"),
        entry: entry.then(|| EntryDetails {
            ip_addresses: vec![format!("10.1.0.{i}").parse().expect("ip")],
            clients_ws_port: 9000,
            hostname: Some("gw.example".into()),
            clients_wss_port: Some(9001),
        }),
        identity_key: IdentityKeyPair::from_secret_bytes(&[i; 32]).public(),
        sphinx_key: X25519Public::from(&X25519Secret::from([i; 32])),
        supported_roles: SupportedRoles {
            mixnode: !entry,
            mixnet_entry: entry,
            mixnet_exit: entry,
        },
        performance: None,
    };
    let mut rs = RewardedSet::default();
    rs.layer1.insert(1);
    rs.layer2.insert(2);
    rs.layer3.insert(3);
    rs.entry_gateways.insert(4);
    let topo = NymTopology::new(
        TopologyMetadata {
            key_rotation_id: 3,
            absolute_epoch_id: 10,
            refreshed_at: Timestamp::UNIX_EPOCH,
        },
        rs,
        [
            mk(1, 1, false),
            mk(2, 2, false),
            mk(3, 3, false),
            mk(4, 4, true),
        ],
    );
    write(
        "topology",
        "file",
        &with(&[3], topo.to_file_json().expect("json").as_bytes()),
    );
    let meta = NodesResponseMetadata {
        status: None,
        absolute_epoch_id: 10,
        rotation_id: 3,
        refreshed_at: Timestamp::UNIX_EPOCH,
    };
    let page = SkimmedNodesResponse::full(meta, topo.skimmed_nodes(|_| true));
    write(
        "topology",
        "skimmed",
        &with(&[0], serde_json::to_string(&page).expect("json").as_bytes()),
    );
    write(
        "topology",
        "rewarded",
        &with(
            &[1],
            serde_json::to_string(&topo.rewarded_set_response())
                .expect("json")
                .as_bytes(),
        ),
    );
    let kr = KeyRotationInfoResponse::new(
        KeyRotationState {
            validity_epochs: 24,
            initial_epoch_id: 1,
        },
        100,
        Timestamp::UNIX_EPOCH,
        Duration::from_secs(3600),
    )
    .expect("kr");
    write(
        "topology",
        "keyrot",
        &with(&[2], serde_json::to_string(&kr).expect("json").as_bytes()),
    );
    write("topology", "time", b"\x042025-06-01T12:34:56.789Z");
    write(
        "topology",
        "time2",
        b"\x042025-06-01 12:34:56.789 +00:00:00",
    );
}
