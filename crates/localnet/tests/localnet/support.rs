//! A protocol-level Nym client built from nymd-proto pieces, speaking
//! tokio-tungstenite to a localnet gateway, plus small helpers.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::future::Future;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use nymd_localnet::{Localnet, NodeInfo};
use nymd_proto::ack::{build_surb_ack, recognise_ack};
use nymd_proto::chunking::{InsertOutcome, NymMessage, Reassembler};
use nymd_proto::gateway::frames::{open_gateway_frame, seal_client_frame};
use nymd_proto::gateway::{
    AuthenticateV2, ClientAwaitingMaterial, ClientControlRequest, ClientFrameKind,
    HandshakeMessage, ServerResponse, CURRENT_PROTOCOL_VERSION,
};
use nymd_proto::keys::{AckKey, EncryptionKeyPair, GatewaySharedKey, IdentityKeyPair};
use nymd_proto::mixpacket::MixPacket;
use nymd_proto::params::FragmentId;
use nymd_proto::payload::{classify_pushed, decrypt_message, prepare_fragment, PushedKind};
use nymd_proto::sphinx::RouteHop;
use nymd_proto::topology::{self, NymTopology};
use nymd_proto::{PacketSize, Recipient, SphinxVersion};
use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Bound for any single wait in these tests.
pub const STEP: Duration = Duration::from_secs(15);

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}

/// Run a test body under a deadline.
pub async fn bounded<F: Future<Output = ()>>(limit: Duration, body: F) {
    tokio::time::timeout(limit, body)
        .await
        .expect("test exceeded its time limit");
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// Poll `cond` every 20 ms until it holds or `limit` passes.
pub async fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cond()
}

pub async fn connect(gateway: &NodeInfo) -> Ws {
    let url = gateway.ws_url().expect("a gateway");
    let (ws, _) = tokio::time::timeout(STEP, tokio_tungstenite::connect_async(url))
        .await
        .expect("connect in time")
        .expect("websocket connect");
    ws
}

pub fn sphinx_route(route: &[topology::RouteHop]) -> Vec<RouteHop> {
    route
        .iter()
        .map(|h| RouteHop::new(h.address, h.sphinx_key))
        .collect()
}

/// Read the next websocket message (bounded).
pub async fn next_message(ws: &mut Ws, limit: Duration) -> Option<Message> {
    match tokio::time::timeout(limit, ws.next()).await {
        Ok(Some(Ok(m))) => Some(m),
        _ => None,
    }
}

/// Read until a text frame, ignoring anything else; `None` if the socket
/// closes or nothing comes in time.
pub async fn next_response(ws: &mut Ws, limit: Duration) -> Option<ServerResponse> {
    let end = tokio::time::Instant::now() + limit;
    loop {
        let m = tokio::time::timeout_at(end, ws.next()).await.ok()??.ok()?;
        match m {
            Message::Text(t) => return Some(ServerResponse::parse(&t).expect("response json")),
            Message::Close(_) => return None,
            _ => continue,
        }
    }
}

/// Whether the server closes the socket within `limit`.
pub async fn closed_within(ws: &mut Ws, limit: Duration) -> bool {
    let end = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(end, ws.next()).await {
            Err(_) => return false,
            Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => return true,
            Ok(Some(Ok(_))) => continue,
        }
    }
}

/// The keys a client keeps between connections.
pub struct ClientKeys {
    pub identity: IdentityKeyPair,
    pub encryption: EncryptionKeyPair,
    pub ack_key: AckKey,
    pub gateway: NodeInfo,
    pub shared_key: Option<GatewaySharedKey>,
}

impl ClientKeys {
    pub fn new(gateway: &NodeInfo) -> Self {
        let mut rng = StdRng::from_entropy();
        Self {
            identity: IdentityKeyPair::generate(&mut rng),
            encryption: EncryptionKeyPair::generate(&mut rng),
            ack_key: AckKey::generate(&mut rng),
            gateway: gateway.clone(),
            shared_key: None,
        }
    }

    pub fn recipient(&self) -> Recipient {
        Recipient::new(
            self.identity.public(),
            self.encryption.public(),
            self.gateway.identity,
        )
    }
}

/// A connected, authenticated client.
pub struct Client {
    pub keys: ClientKeys,
    pub ws: Ws,
    pub rng: StdRng,
    /// Decrypted pushed plaintexts not consumed yet.
    pub pushed: VecDeque<Vec<u8>>,
    /// Fragment ids of acks received.
    pub acks: Vec<FragmentId>,
    pub reassembler: Reassembler,
    pub bandwidth: i64,
}

impl Client {
    /// A new client: register at `gateway` and claim free bandwidth.
    pub async fn register(gateway: &NodeInfo) -> Client {
        let mut c = Self::register_only(ClientKeys::new(gateway)).await;
        c.claim_bandwidth().await;
        c
    }

    /// Run the registration handshake (no bandwidth claim).
    pub async fn register_only(mut keys: ClientKeys) -> Client {
        let mut rng = StdRng::from_entropy();
        let mut ws = connect(&keys.gateway).await;
        ws.send(Message::text(
            ClientControlRequest::SupportedProtocol {}.to_json(),
        ))
        .await
        .expect("send");
        let Some(ServerResponse::SupportedProtocol { version }) =
            next_response(&mut ws, STEP).await
        else {
            panic!("expected supportedProtocol");
        };
        assert_eq!(version, CURRENT_PROTOCOL_VERSION);
        let (state, init) = ClientAwaitingMaterial::start(
            &mut rng,
            &keys.identity,
            keys.gateway.identity,
            CURRENT_PROTOCOL_VERSION,
        );
        ws.send(Message::text(init.to_json())).await.expect("send");
        let material = next_handshake(&mut ws).await;
        let (state, reply) = state.on_message(&mut rng, &material).expect("material");
        ws.send(Message::text(reply.to_json())).await.expect("send");
        let fin = next_handshake(&mut ws).await;
        let outcome = state.on_message(&fin).expect("finalisation");
        keys.shared_key = Some(outcome.shared_key);
        let mut c = Client {
            keys,
            ws,
            rng,
            pushed: VecDeque::new(),
            acks: Vec::new(),
            reassembler: Reassembler::default(),
            bandwidth: 0,
        };
        match c.response().await {
            ServerResponse::Register {
                protocol_version,
                status: true,
                ..
            } => assert_eq!(protocol_version, CURRENT_PROTOCOL_VERSION),
            other => panic!("expected register, got {other:?}"),
        }
        c
    }

    /// Reconnect with `authenticateV2`.
    pub async fn authenticate(keys: ClientKeys) -> Result<Client, (ClientKeys, ServerResponse)> {
        Self::authenticate_at(keys, unix_now()).await
    }

    /// Reconnect with `authenticateV2` at a chosen timestamp.
    pub async fn authenticate_at(
        keys: ClientKeys,
        timestamp: u64,
    ) -> Result<Client, (ClientKeys, ServerResponse)> {
        let mut rng = StdRng::from_entropy();
        let mut ws = connect(&keys.gateway).await;
        let key = keys.shared_key.clone().expect("registered before");
        let req = AuthenticateV2::new(
            &mut rng,
            &key,
            &keys.identity,
            CURRENT_PROTOCOL_VERSION,
            timestamp,
        );
        ws.send(Message::text(req.into_request().to_json()))
            .await
            .expect("send");
        let mut c = Client {
            keys,
            ws,
            rng,
            pushed: VecDeque::new(),
            acks: Vec::new(),
            reassembler: Reassembler::default(),
            bandwidth: 0,
        };
        match c.response().await {
            ServerResponse::Authenticate {
                status: true,
                bandwidth_remaining,
                ..
            } => {
                c.bandwidth = bandwidth_remaining;
                Ok(c)
            }
            other => Err((c.keys, other)),
        }
    }

    pub fn shared_key(&self) -> &GatewaySharedKey {
        self.keys.shared_key.as_ref().expect("registered")
    }

    pub fn recipient(&self) -> Recipient {
        self.keys.recipient()
    }

    /// Close the connection and wait for the server's side to end.
    pub async fn disconnect(mut self) -> ClientKeys {
        let _ = self.ws.close(None).await;
        let _ = closed_within(&mut self.ws, STEP).await;
        self.keys
    }

    /// The next text response; binary frames on the way are decrypted and
    /// queued in `pushed`.
    pub async fn response(&mut self) -> ServerResponse {
        self.try_response(STEP).await.expect("a response in time")
    }

    pub async fn try_response(&mut self, limit: Duration) -> Option<ServerResponse> {
        let end = tokio::time::Instant::now() + limit;
        loop {
            let m = tokio::time::timeout_at(end, self.ws.next())
                .await
                .ok()??
                .ok()?;
            match m {
                Message::Text(t) => return Some(ServerResponse::parse(&t).expect("response json")),
                Message::Binary(b) => self.queue_pushed(&b),
                Message::Close(_) => return None,
                _ => {}
            }
        }
    }

    fn queue_pushed(&mut self, frame: &[u8]) {
        let (_, plain) = open_gateway_frame(self.shared_key(), frame).expect("pushed frame");
        self.pushed.push_back(plain);
    }

    /// The next pushed plaintext, if one comes within `limit`. Text
    /// responses on the way are dropped.
    pub async fn next_pushed(&mut self, limit: Duration) -> Option<Vec<u8>> {
        let end = tokio::time::Instant::now() + limit;
        loop {
            if let Some(p) = self.pushed.pop_front() {
                return Some(p);
            }
            let m = tokio::time::timeout_at(end, self.ws.next())
                .await
                .ok()??
                .ok()?;
            match m {
                Message::Binary(b) => self.queue_pushed(&b),
                Message::Close(_) => return None,
                _ => {}
            }
        }
    }

    pub async fn claim_bandwidth(&mut self) {
        self.ws
            .send(Message::text(
                ClientControlRequest::ClaimFreeTestnetBandwidth.to_json(),
            ))
            .await
            .expect("send");
        match self.response().await {
            ServerResponse::Bandwidth {
                available_total, ..
            } => {
                assert!(available_total >= nymd_proto::gateway::bandwidth::FREE_TESTNET_BANDWIDTH);
                self.bandwidth = available_total;
            }
            other => panic!("expected bandwidth, got {other:?}"),
        }
    }

    /// Build the packets of `data` for `to` (route through three layers),
    /// with hop delays of mean `mean`. Returns each packet with its
    /// fragment id.
    pub fn build_message(
        &mut self,
        topology: &NymTopology,
        to: &Recipient,
        data: &[u8],
        mean: Duration,
    ) -> Vec<(FragmentId, MixPacket)> {
        let capacity = PacketSize::Regular.fragment_capacity();
        let padded = NymMessage::Plain(data.to_vec()).pad(capacity).expect("pad");
        let fragments = padded
            .split_into_fragments(&mut self.rng, capacity)
            .expect("split");
        let own = self.keys.identity.public_bytes();
        let own_gateway = self.keys.gateway.identity.to_bytes();
        fragments
            .iter()
            .map(|f| {
                let id = f.id();
                let ack_route = topology
                    .random_route_to(&mut self.rng, &own_gateway)
                    .expect("ack route");
                let surb = build_surb_ack(
                    &mut self.rng,
                    SphinxVersion::Seeds259,
                    &self.keys.ack_key,
                    id,
                    &sphinx_route(&ack_route),
                    &own,
                    mean,
                )
                .expect("surb ack");
                let route = topology
                    .random_route_to(&mut self.rng, &to.gateway().to_bytes())
                    .expect("route");
                let prepared = prepare_fragment(
                    &mut self.rng,
                    SphinxVersion::Seeds259,
                    &f.to_bytes(),
                    to,
                    &sphinx_route(&route),
                    &surb,
                    mean,
                    topology.key_rotation(),
                )
                .expect("prepare");
                (id, prepared.mix_packet)
            })
            .collect()
    }

    /// Send one mix packet as ForwardSphinxV2 without waiting.
    pub async fn forward(&mut self, packet: &MixPacket) {
        let frame = seal_client_frame(
            &mut self.rng,
            self.keys.shared_key.as_ref().expect("registered"),
            ClientFrameKind::ForwardSphinxV2,
            &packet.to_v2_bytes(),
        );
        self.ws.send(Message::binary(frame)).await.expect("send");
    }

    /// Send a message and wait for one `send` per packet; returns the
    /// fragment ids.
    pub async fn send_message(
        &mut self,
        topology: &NymTopology,
        to: &Recipient,
        data: &[u8],
        mean: Duration,
    ) -> Vec<FragmentId> {
        let packets = self.build_message(topology, to, data, mean);
        for (_, p) in &packets {
            self.forward(p).await;
            match self.response().await {
                ServerResponse::Send {
                    remaining_bandwidth,
                    ..
                } => self.bandwidth = remaining_bandwidth,
                other => panic!("expected send, got {other:?}"),
            }
        }
        packets.into_iter().map(|(id, _)| id).collect()
    }

    /// Take pushed plaintexts until a whole message is reassembled; acks on
    /// the way are recorded in `acks`. `None` if nothing completes in time.
    pub async fn receive_message(&mut self, limit: Duration) -> Option<Vec<u8>> {
        let end = tokio::time::Instant::now() + limit;
        loop {
            let left = end.saturating_duration_since(tokio::time::Instant::now());
            let p = self.next_pushed(left).await?;
            if let Some(done) = self.absorb(&p) {
                return Some(done);
            }
        }
    }

    /// Wait until `n` acks were recorded.
    pub async fn wait_for_acks(&mut self, n: usize, limit: Duration) -> bool {
        let end = tokio::time::Instant::now() + limit;
        while self.acks.len() < n {
            let left = end.saturating_duration_since(tokio::time::Instant::now());
            let Some(p) = self.next_pushed(left).await else {
                return false;
            };
            self.absorb(&p);
        }
        true
    }

    /// Handle one pushed plaintext: record an ack or insert a fragment;
    /// returns a completed message.
    fn absorb(&mut self, pushed: &[u8]) -> Option<Vec<u8>> {
        match classify_pushed(pushed.len()) {
            Some(PushedKind::Ack) => {
                let id = recognise_ack(&self.keys.ack_key, pushed).expect("our ack");
                self.acks.push(id);
                None
            }
            Some(PushedKind::Message(_)) => {
                let d = decrypt_message(&self.keys.encryption, pushed, &mut |_: &[u8; 32]| None)
                    .expect("decrypt");
                let inserted = self
                    .reassembler
                    .insert_bytes(&d.fragment, Instant::now())
                    .expect("fragment");
                match inserted.outcome {
                    InsertOutcome::Complete(m) => {
                        Some(m.into_message().expect("message").into_data())
                    }
                    _ => None,
                }
            }
            None => panic!("pushed plaintext of unexpected length {}", pushed.len()),
        }
    }
}

async fn next_handshake(ws: &mut Ws) -> HandshakeMessage {
    loop {
        match next_message(ws, STEP).await.expect("handshake message") {
            Message::Text(t) => return HandshakeMessage::parse(&t).expect("handshake json"),
            _ => continue,
        }
    }
}

/// A message of `len` bytes with a recognisable pattern.
pub fn payload(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Counters of a node (panics on an unknown id).
pub fn counters(net: &Localnet, id: u32) -> nymd_localnet::CountersSnapshot {
    net.counters(id).expect("known node")
}
