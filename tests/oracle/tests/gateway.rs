//! The client-gateway protocol against `nym-gateway-requests`: the
//! registration handshake run live between our state machines and Nym's
//! async implementation (both roles), `authenticateV2`, JSON control
//! messages, encrypted requests and binary frames, both directions.

mod common;

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use futures::channel::mpsc::{unbounded, UnboundedReceiver, UnboundedSender};
use futures::{Sink, SinkExt, Stream, StreamExt};
use nym_crypto::asymmetric::ed25519;
use nym_gateway_requests::registration::handshake::{client_handshake, gateway_handshake};
use nym_gateway_requests::{
    BinaryRequest, BinaryResponse, ClientControlRequest as NymControl,
    ClientRequest as NymClientRequest, SensitiveServerResponse, ServerResponse as NymResponse,
    SharedSymmetricKey,
};
use nym_task::ShutdownToken;
use nymd_proto::gateway::auth::{AuthenticateV2, StoredClient};
use nymd_proto::gateway::frames::{
    open_client_frame, open_gateway_frame, seal_client_frame, seal_pushed_message, ClientFrameKind,
    GatewayFrameKind,
};
use nymd_proto::gateway::handshake::{ClientAwaitingMaterial, GatewayAwaitingMaterial};
use nymd_proto::gateway::messages::{
    ClientControlRequest, ClientRequest, HandshakeMessage, SensitiveResponse, ServerResponse,
    SessionType, TypedGatewayError,
};
use nymd_proto::keys::{GatewaySharedKey, IdentityKeyPair};
use nymd_proto::mixpacket::MixPacket;
use nymd_proto::params::KeyRotation;
use nymd_proto::NodeAddress;
use tungstenite::{Error as WsError, Message as WsMessage};

/// One end of an in-memory websocket carrying tungstenite messages.
struct Duplex {
    rx: UnboundedReceiver<Result<WsMessage, WsError>>,
    tx: UnboundedSender<Result<WsMessage, WsError>>,
}

impl Stream for Duplex {
    type Item = Result<WsMessage, WsError>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_next_unpin(cx)
    }
}

impl Sink<WsMessage> for Duplex {
    type Error = futures::channel::mpsc::SendError;
    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.tx.poll_ready_unpin(cx)
    }
    fn start_send(mut self: Pin<&mut Self>, item: WsMessage) -> Result<(), Self::Error> {
        self.tx.start_send_unpin(Ok(item))
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.tx.poll_flush_unpin(cx)
    }
    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.tx.poll_close_unpin(cx)
    }
}

/// Two connected ends.
fn pipe() -> (Duplex, Duplex) {
    let (a_tx, a_rx) = unbounded();
    let (b_tx, b_rx) = unbounded();
    (Duplex { rx: a_rx, tx: b_tx }, Duplex { rx: b_rx, tx: a_tx })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime")
}

fn nym_keypair(seed: &[u8; 32]) -> ed25519::KeyPair {
    let sk = ed25519::PrivateKey::from_bytes(seed).expect("seed");
    let pk = sk.public_key();
    ed25519::KeyPair::from_bytes(&sk.to_bytes(), &pk.to_bytes()).expect("keypair")
}

async fn next_text(end: &mut Duplex) -> String {
    match end.next().await {
        Some(Ok(WsMessage::Text(t))) => t.to_string(),
        other => panic!("expected a text frame, got {other:?}"),
    }
}

async fn send_text(end: &mut Duplex, text: String) {
    end.send(WsMessage::Text(text.into())).await.expect("send");
}

/// Our client registers with Nym's gateway: both derive the same key.
#[test]
fn handshake_our_client_nym_gateway() {
    for (i, version) in [4u8, 5, 6].into_iter().enumerate() {
        let client_seed = common::bytes::<32>(40 + i as u64);
        let gw_seed = common::bytes::<32>(50 + i as u64);
        let client = IdentityKeyPair::from_secret_bytes(&client_seed);
        let gw = IdentityKeyPair::from_secret_bytes(&gw_seed);
        let nym_gw = nym_keypair(&gw_seed);

        let mut rng = common::our_rng(60 + i as u64);
        let (state, init) = ClientAwaitingMaterial::start(&mut rng, &client, gw.public(), version);
        // Nym's gateway receives the init as a control request first.
        let parsed: NymControl =
            serde_json::from_str(&init.to_json()).expect("Nym parses our init frame");
        let NymControl::RegisterHandshakeInitRequest {
            protocol_version,
            data,
        } = parsed
        else {
            panic!("init is a handshake payload")
        };
        assert_eq!(protocol_version, version);

        let (mut gw_end, mut client_end) = pipe();
        let mut nym_rng = common::nym_rng(70 + i as u64);
        let rt = runtime();
        let (theirs, ours) = rt.block_on(async {
            let gateway = gateway_handshake(
                &mut nym_rng,
                &mut gw_end,
                &nym_gw,
                data,
                protocol_version,
                ShutdownToken::new(),
            );
            let client = async {
                let material = HandshakeMessage::parse(&next_text(&mut client_end).await)
                    .expect("we parse Nym's material frame");
                let (state, reply) = state.on_message(&mut rng, &material).expect("material");
                send_text(&mut client_end, reply.to_json()).await;
                let fin = HandshakeMessage::parse(&next_text(&mut client_end).await)
                    .expect("finalization frame");
                state.on_message(&fin).expect("finalization")
            };
            futures::join!(gateway, client)
        });
        let theirs = theirs.expect("Nym's gateway completes the handshake");
        assert_eq!(
            theirs.derived_key.to_bytes(),
            ours.shared_key.as_bytes().to_vec(),
            "version {version}"
        );
        assert_eq!(theirs.negotiated_protocol, ours.negotiated_protocol);
    }
}

/// Nym's client registers with our gateway: both derive the same key.
#[test]
fn handshake_nym_client_our_gateway() {
    for (i, version) in [4u8, 5, 6].into_iter().enumerate() {
        let client_seed = common::bytes::<32>(80 + i as u64);
        let gw_seed = common::bytes::<32>(90 + i as u64);
        let gw = IdentityKeyPair::from_secret_bytes(&gw_seed);
        let nym_client = nym_keypair(&client_seed);
        let nym_gw_pub = ed25519::PublicKey::from_bytes(&gw.public_bytes()).expect("pub");

        let (mut client_end, mut gw_end) = pipe();
        let mut nym_rng = common::nym_rng(100 + i as u64);
        let mut rng = common::our_rng(110 + i as u64);
        let rt = runtime();
        let (theirs, ours) = rt.block_on(async {
            let client = client_handshake(
                &mut nym_rng,
                &mut client_end,
                &nym_client,
                nym_gw_pub,
                version,
                ShutdownToken::new(),
            );
            let gateway = async {
                let init = ClientControlRequest::parse(&next_text(&mut gw_end).await)
                    .expect("we parse Nym's init frame");
                let ClientControlRequest::HandshakePayload {
                    protocol_version,
                    data,
                } = init
                else {
                    panic!("init expected, got {init:?}")
                };
                let (state, material) =
                    GatewayAwaitingMaterial::start(&mut rng, &gw, &data, protocol_version)
                        .expect("init");
                assert_eq!(
                    state.client_identity().to_bytes(),
                    nym_client.public_key().to_bytes()
                );
                send_text(&mut gw_end, material.to_json()).await;
                let client_material = HandshakeMessage::parse(&next_text(&mut gw_end).await)
                    .expect("client material frame");
                let (outcome, fin) = state.on_message(&client_material).expect("material");
                send_text(&mut gw_end, fin.to_json()).await;
                outcome
            };
            futures::join!(client, gateway)
        });
        let theirs = theirs.expect("Nym's client completes the handshake");
        assert_eq!(
            theirs.derived_key.to_bytes(),
            ours.shared_key.as_bytes().to_vec(),
            "version {version}"
        );
        assert_eq!(theirs.negotiated_protocol, ours.negotiated_protocol);
    }
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

fn shared_pair(seed: u64) -> (GatewaySharedKey, SharedSymmetricKey) {
    let bytes = common::bytes::<32>(seed);
    (
        GatewaySharedKey::from_bytes(bytes),
        SharedSymmetricKey::try_from_bytes(&bytes).expect("32 bytes"),
    )
}

/// `authenticateV2`: ours verified by Nym's checks, Nym's verified by ours.
#[test]
fn authenticate_v2_both_ways() {
    let seed = common::bytes::<32>(120);
    let client = IdentityKeyPair::from_secret_bytes(&seed);
    let (ours_key, their_key) = shared_pair(121);
    let now = now_unix();

    let req = AuthenticateV2::new(&mut common::our_rng(122), &ours_key, &client, 6, now);
    let json = req.clone().into_request().to_json();
    let NymControl::AuthenticateV2(theirs) =
        serde_json::from_str::<NymControl>(&json).expect("Nym parses our authenticateV2")
    else {
        panic!("authenticateV2 expected")
    };
    theirs
        .verify_timestamp(std::time::Duration::from_secs(120))
        .expect("timestamp");
    theirs
        .verify_signature()
        .expect("Nym verifies our signature");
    theirs
        .verify_ciphertext(&their_key)
        .expect("Nym verifies our address ciphertext");
    assert_eq!(theirs.content.request_unix_timestamp, now);
    // The JSON is the same document both ways.
    let a: serde_json::Value = serde_json::from_str(&json).expect("json");
    let b = serde_json::to_value(NymControl::AuthenticateV2(theirs)).expect("json");
    assert_eq!(a, b);

    let nym_req = NymControl::new_authenticate_v2(&their_key, &nym_keypair(&seed), 6)
        .expect("Nym builds authenticateV2");
    let text = serde_json::to_string(&nym_req).expect("json");
    let ClientControlRequest::AuthenticateV2(ours) =
        ClientControlRequest::parse(&text).expect("we parse Nym's authenticateV2")
    else {
        panic!("authenticateV2 expected")
    };
    let verified = ours
        .verify(now_unix(), |addr| {
            assert_eq!(addr, &client.public_bytes());
            Some(StoredClient {
                shared_key: ours_key.clone(),
                last_used_timestamp: None,
            })
        })
        .expect("we verify Nym's authenticateV2");
    assert_eq!(verified.protocol_version, 6);
    // A wrong key fails the ciphertext check on both sides.
    let (other, other_theirs) = shared_pair(123);
    assert!(ours
        .verify(now_unix(), |_| Some(StoredClient {
            shared_key: other,
            last_used_timestamp: None,
        }))
        .is_err());
    let NymControl::AuthenticateV2(theirs) = serde_json::from_str::<NymControl>(&json).expect("p")
    else {
        panic!()
    };
    assert!(theirs.verify_ciphertext(&other_theirs).is_err());
}

fn json_value(s: &str) -> serde_json::Value {
    serde_json::from_str(s).expect("valid JSON")
}

/// Control requests and server responses: our JSON is read by Nym's serde
/// types into the same document, and Nym's JSON is read by ours.
#[test]
fn control_messages_json_both_ways() {
    let requests = vec![
        ClientControlRequest::SupportedProtocol {},
        ClientControlRequest::handshake_payload(6, vec![1, 2, 3]),
        ClientControlRequest::ClaimFreeTestnetBandwidth,
        ClientControlRequest::EcashCredential {
            enc_credential: vec![9; 20],
            nonce: vec![1; 12],
        },
        ClientControlRequest::UpgradeModeJwt {
            token: "a.b.c".to_string(),
        },
        ClientControlRequest::EncryptedRequest {
            ciphertext: vec![5; 30],
            nonce: vec![6; 12],
        },
        ClientControlRequest::Authenticate {
            protocol_version: Some(3),
            address: "addr".to_string(),
            enc_address: "enc".to_string(),
            iv: "iv".to_string(),
        },
        ClientControlRequest::BandwidthCredential {
            enc_credential: vec![1],
            iv: vec![2],
        },
        ClientControlRequest::BandwidthCredentialV2 {
            enc_credential: vec![3],
            iv: vec![4],
        },
    ];
    for ours in requests {
        let json = ours.to_json();
        let theirs: NymControl =
            serde_json::from_str(&json).unwrap_or_else(|e| panic!("Nym parses our {json}: {e}"));
        let back = serde_json::to_string(&theirs).expect("json");
        let mut expected = json_value(&json);
        if matches!(ours, ClientControlRequest::HandshakePayload { .. }) {
            // Nym's `ClientControlRequest` writes the init under its old name
            // (its handshake itself sends `handshakePayload`, as we do); both
            // sides read both names.
            expected["type"] = "registerHandshakeInitRequest".into();
        }
        assert_eq!(json_value(&back), expected, "{json}");
        assert_eq!(ClientControlRequest::parse(&back).expect("parse"), ours);
    }

    let responses = vec![
        ServerResponse::Authenticate {
            protocol_version: 6,
            status: true,
            bandwidth_remaining: 1 << 40,
            upgrade_mode: false,
        },
        ServerResponse::Register {
            protocol_version: 5,
            status: true,
            upgrade_mode: true,
        },
        ServerResponse::EncryptedResponse {
            ciphertext: vec![1, 2],
            nonce: vec![3; 12],
        },
        ServerResponse::Bandwidth {
            available_total: -5,
            upgrade_mode: false,
        },
        ServerResponse::Send {
            remaining_bandwidth: 1000,
            upgrade_mode: true,
        },
        ServerResponse::SupportedProtocol { version: 6 },
        ServerResponse::error("nope"),
        ServerResponse::TypedError {
            error: TypedGatewayError::OutOfBandwidth {
                required: 100,
                available: 5,
            },
        },
        ServerResponse::TypedError {
            error: TypedGatewayError::TicketReplay,
        },
    ];
    for ours in responses {
        let json = ours.to_json();
        let theirs: NymResponse =
            serde_json::from_str(&json).unwrap_or_else(|e| panic!("Nym parses our {json}: {e}"));
        let back = serde_json::to_string(&theirs).expect("json");
        assert_eq!(json_value(&back), json_value(&json), "{json}");
        assert_eq!(ServerResponse::parse(&back).expect("parse"), ours);
    }
}

/// Encrypted requests and responses (forget me / remember me), both ways.
#[test]
fn encrypted_requests_both_ways() {
    let (ours_key, their_key) = shared_pair(130);
    let mut rng = common::our_rng(131);
    let reqs = [
        ClientRequest::ForgetMe {
            client: true,
            stats: false,
        },
        ClientRequest::RememberMe {
            session_type: SessionType::Native,
        },
        ClientRequest::RememberMe {
            session_type: SessionType::Unknown,
        },
    ];
    for ours in reqs {
        let ClientControlRequest::EncryptedRequest { ciphertext, nonce } =
            ours.encrypt(&mut rng, &ours_key)
        else {
            panic!("encrypted request")
        };
        let theirs =
            NymClientRequest::decrypt(&ciphertext, &nonce, &their_key).expect("Nym decrypts");
        let NymControl::EncryptedRequest { ciphertext, nonce } =
            theirs.encrypt(&their_key).expect("Nym encrypts")
        else {
            panic!("encrypted request")
        };
        assert_eq!(
            ClientRequest::decrypt(&ciphertext, &nonce, &ours_key).expect("we decrypt"),
            ours
        );
    }
    for ours in [
        SensitiveResponse::ForgetMeAck {},
        SensitiveResponse::RememberMeAck {},
    ] {
        let ServerResponse::EncryptedResponse { ciphertext, nonce } =
            ours.encrypt(&mut rng, &ours_key)
        else {
            panic!("encrypted response")
        };
        let theirs = SensitiveServerResponse::decrypt(&ciphertext, &nonce, &their_key)
            .expect("Nym decrypts");
        let NymResponse::EncryptedResponse { ciphertext, nonce } =
            theirs.encrypt(&their_key).expect("Nym encrypts")
        else {
            panic!("encrypted response")
        };
        assert_eq!(
            SensitiveResponse::decrypt(&ciphertext, &nonce, &ours_key).expect("we decrypt"),
            ours
        );
    }
}

/// Binary frames: ForwardSphinx (v1) and ForwardSphinxV2 requests and pushed
/// messages, sealed by one side and opened by the other.
#[test]
fn binary_frames_both_ways() {
    let (ours_key, their_key) = shared_pair(140);
    let mut rng = common::our_rng(141);
    let packet = {
        let mut p = vec![0u8; 2413];
        common::our_rng(142).fill_bytes_compat(&mut p);
        p
    };
    for (addr, rotation) in [
        ("10.1.2.3:1789", KeyRotation::Odd),
        ("[2001:db8::1]:1790", KeyRotation::Even),
    ] {
        let mix = MixPacket::new(
            NodeAddress(addr.parse().expect("addr")),
            packet.clone(),
            rotation,
        );
        // Ours sealed, Nym opens: v1 and v2.
        for (kind, plain) in [
            (ClientFrameKind::ForwardSphinx, mix.to_v1_bytes()),
            (ClientFrameKind::ForwardSphinxV2, mix.to_v2_bytes()),
        ] {
            let frame = seal_client_frame(&mut rng, &ours_key, kind, &plain);
            let theirs = BinaryRequest::try_from_encrypted_tagged_bytes(frame, &their_key)
                .expect("Nym opens our frame");
            let (their_packet, expect_rotation) = match theirs {
                BinaryRequest::ForwardSphinx { packet } => (packet, KeyRotation::Unknown),
                BinaryRequest::ForwardSphinxV2 { packet } => (packet, rotation),
                _ => panic!("unexpected request"),
            };
            assert_eq!(their_packet.next_hop_address(), mix.next_hop.0);
            assert_eq!(their_packet.key_rotation() as u8, expect_rotation.to_byte());
            assert_eq!(
                their_packet.packet().to_bytes().expect("bytes"),
                packet,
                "{kind:?}"
            );
            // Nym seals the same request back; we open it.
            let request = match kind {
                ClientFrameKind::ForwardSphinx => BinaryRequest::ForwardSphinx {
                    packet: their_packet,
                },
                ClientFrameKind::ForwardSphinxV2 => BinaryRequest::ForwardSphinxV2 {
                    packet: their_packet,
                },
            };
            let frame = request
                .into_encrypted_tagged_bytes(&their_key)
                .expect("Nym seals");
            let (got_kind, plain_back) = open_client_frame(&ours_key, &frame).expect("we open");
            assert_eq!(got_kind, kind);
            assert_eq!(plain_back, plain);
        }
    }
    // Pushed messages.
    for len in [21usize, 1643, 0] {
        let message: Vec<u8> = (0..len).map(|i| i as u8).collect();
        let frame = seal_pushed_message(&mut rng, &ours_key, &message);
        let BinaryResponse::PushedMixMessage { message: got } =
            BinaryResponse::try_from_encrypted_tagged_bytes(frame, &their_key)
                .expect("Nym opens our pushed message")
        else {
            panic!("pushed message")
        };
        assert_eq!(got, message);
        let frame = BinaryResponse::PushedMixMessage {
            message: message.clone(),
        }
        .into_encrypted_tagged_bytes(&their_key)
        .expect("Nym seals");
        assert_eq!(
            open_gateway_frame(&ours_key, &frame).expect("we open"),
            (GatewayFrameKind::PushedMixMessage, message)
        );
    }
}

trait FillCompat {
    fn fill_bytes_compat(&mut self, out: &mut [u8]);
}
impl FillCompat for rand_chacha::ChaCha20Rng {
    fn fill_bytes_compat(&mut self, out: &mut [u8]) {
        rand::RngCore::fill_bytes(self, out)
    }
}
