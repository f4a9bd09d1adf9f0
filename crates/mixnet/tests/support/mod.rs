//! A minimal in-test Nym network built only from nymd-proto's node and
//! gateway-side pieces: gateways with real websocket listeners (register,
//! authenticateV2, bandwidth, forwarding, pushes, offline store) and mixnodes
//! processed in-process (no node-to-node sockets). Nodes can be stopped and
//! started; a stopped mixnode drops what it gets, a stopped gateway closes
//! its listener and client connections but keeps its registrations.
//!
//! Used until the embedded localnet lands; the client under test only sees
//! real websockets and real Sphinx packets.

#![allow(dead_code, clippy::unwrap_used)]

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use nymd_proto::ack::{split_final_hop, FinalHopDelivery};
use nymd_proto::gateway::frames::{open_client_frame, seal_pushed_message};
use nymd_proto::gateway::{
    bandwidth, ClientControlRequest, ClientFrameKind, GatewayAwaitingMaterial, HandshakeMessage,
    PreAuthRequest, ServerResponse, StoredClient, CURRENT_PROTOCOL_VERSION,
};
use nymd_proto::keys::{GatewaySharedKey, IdentityKeyPair, X25519Public, X25519Secret};
use nymd_proto::mixpacket::MixPacket;
use nymd_proto::sphinx::{process, Processed};
use nymd_proto::topology::{
    EntryDetails, NymTopology, RewardedSet, RoutingNode, SupportedRoles, TopologyMetadata,
};
use nymd_proto::{KeyRotation, PacketSize};
use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

struct Node {
    secret: X25519Secret,
    gateway: Option<usize>,
    stopped: AtomicBool,
}

/// A connected session: its id and where to push messages.
type Session = (u64, mpsc::UnboundedSender<Vec<u8>>);

struct Gateway {
    identity: IdentityKeyPair,
    ws_addr: SocketAddr,
    registered: Mutex<HashMap<[u8; 32], StoredClient>>,
    bandwidth: Mutex<HashMap<[u8; 32], i64>>,
    /// Connected sessions: client address → (session id, push channel).
    clients: Mutex<HashMap<[u8; 32], Session>>,
    stored: Mutex<HashMap<[u8; 32], Vec<Vec<u8>>>>,
    running: Mutex<Option<CancellationToken>>,
    sessions: std::sync::atomic::AtomicU64,
}

struct Inner {
    nodes: HashMap<SocketAddr, Node>,
    gateways: Vec<Gateway>,
    /// Mix hosts of mixnodes by node id.
    mix_hosts: HashMap<u32, SocketAddr>,
}

/// The network.
pub struct MiniNet {
    inner: Arc<Inner>,
    pub topology: NymTopology,
    cancel: CancellationToken,
}

impl Drop for MiniNet {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

fn fake_mix_host(n: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 20000 + n)
}

impl MiniNet {
    /// `per_layer` mixnodes in each of three layers, and `gateways`
    /// gateways with real websocket listeners on ephemeral ports.
    pub async fn start(per_layer: u32, gateways: usize) -> Self {
        let mut rng = StdRng::from_entropy();
        let mut nodes = HashMap::new();
        let mut routing = Vec::new();
        let mut rewarded = RewardedSet::default();
        let mut mix_hosts = HashMap::new();
        let mut id = 0u32;
        for layer in 1..=3u8 {
            for _ in 0..per_layer {
                id += 1;
                let secret = X25519Secret::random_from_rng(&mut rng);
                let host = fake_mix_host(id as u16);
                routing.push(RoutingNode {
                    node_id: id,
                    mix_host: host,
                    entry: None,
                    identity_key: IdentityKeyPair::generate(&mut rng).public(),
                    sphinx_key: X25519Public::from(&secret),
                    supported_roles: SupportedRoles {
                        mixnode: true,
                        mixnet_entry: false,
                        mixnet_exit: false,
                    },
                    performance: None,
                });
                let set: &mut BTreeSet<u32> = match layer {
                    1 => &mut rewarded.layer1,
                    2 => &mut rewarded.layer2,
                    _ => &mut rewarded.layer3,
                };
                set.insert(id);
                mix_hosts.insert(id, host);
                nodes.insert(
                    host,
                    Node {
                        secret,
                        gateway: None,
                        stopped: AtomicBool::new(false),
                    },
                );
            }
        }
        let mut gws = Vec::new();
        let mut listeners = Vec::new();
        for g in 0..gateways {
            id += 1;
            let identity = IdentityKeyPair::generate(&mut rng);
            let secret = X25519Secret::random_from_rng(&mut rng);
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let ws_addr = listener.local_addr().unwrap();
            let host = fake_mix_host(1000 + g as u16);
            routing.push(RoutingNode {
                node_id: id,
                mix_host: host,
                entry: Some(EntryDetails {
                    ip_addresses: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
                    clients_ws_port: ws_addr.port(),
                    hostname: None,
                    clients_wss_port: None,
                }),
                identity_key: identity.public(),
                sphinx_key: X25519Public::from(&secret),
                supported_roles: SupportedRoles {
                    mixnode: false,
                    mixnet_entry: true,
                    mixnet_exit: true,
                },
                performance: None,
            });
            rewarded.entry_gateways.insert(id);
            rewarded.exit_gateways.insert(id);
            nodes.insert(
                host,
                Node {
                    secret,
                    gateway: Some(g),
                    stopped: AtomicBool::new(false),
                },
            );
            gws.push(Gateway {
                identity,
                ws_addr,
                registered: Mutex::new(HashMap::new()),
                bandwidth: Mutex::new(HashMap::new()),
                clients: Mutex::new(HashMap::new()),
                stored: Mutex::new(HashMap::new()),
                running: Mutex::new(None),
                sessions: std::sync::atomic::AtomicU64::new(0),
            });
            listeners.push(listener);
        }
        let topology = NymTopology::new(
            TopologyMetadata {
                key_rotation_id: 4,
                ..TopologyMetadata::default()
            },
            rewarded,
            routing,
        );
        let net = MiniNet {
            inner: Arc::new(Inner {
                nodes,
                gateways: gws,
                mix_hosts,
            }),
            topology,
            cancel: CancellationToken::new(),
        };
        for (g, l) in listeners.into_iter().enumerate() {
            net.run_gateway(g, l);
        }
        net
    }

    /// The ed25519 identity of gateway `g`.
    pub fn gateway_id(&self, g: usize) -> [u8; 32] {
        self.inner.gateways[g].identity.public_bytes()
    }

    /// Stop mixnode `id` (1-based node id): it drops every packet.
    pub fn stop_mixnode(&self, id: u32) {
        let host = self.inner.mix_hosts[&id];
        self.inner.nodes[&host]
            .stopped
            .store(true, Ordering::SeqCst);
    }

    /// Start mixnode `id` again.
    pub fn start_mixnode(&self, id: u32) {
        let host = self.inner.mix_hosts[&id];
        self.inner.nodes[&host]
            .stopped
            .store(false, Ordering::SeqCst);
    }

    /// Stop gateway `g`: close its listener and every client connection.
    /// Packets reaching it meanwhile go to its offline store.
    pub fn stop_gateway(&self, g: usize) {
        if let Some(c) = self.inner.gateways[g].running.lock().unwrap().take() {
            c.cancel();
        }
        self.inner.gateways[g].clients.lock().unwrap().clear();
    }

    /// Start gateway `g` again on the same port.
    pub async fn start_gateway(&self, g: usize) {
        let addr = self.inner.gateways[g].ws_addr;
        let mut tries = 0;
        let listener = loop {
            match TcpListener::bind(addr).await {
                Ok(l) => break l,
                Err(e) if tries < 50 => {
                    tries += 1;
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("rebinding gateway: {e}"),
            }
        };
        self.run_gateway(g, listener);
    }

    fn run_gateway(&self, g: usize, listener: TcpListener) {
        let token = self.cancel.child_token();
        *self.inner.gateways[g].running.lock().unwrap() = Some(token.clone());
        let inner = self.inner.clone();
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = token.cancelled() => return,
                    a = listener.accept() => a,
                };
                let Ok((stream, _)) = accepted else { continue };
                let inner = inner.clone();
                let token = token.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        _ = token.cancelled() => {}
                        _ = serve_client(inner, g, stream) => {}
                    }
                });
            }
        });
    }
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

type Ws = tokio_tungstenite::WebSocketStream<TcpStream>;

async fn send_text(ws: &mut Ws, text: String) -> bool {
    ws.send(Message::text(text)).await.is_ok()
}

async fn next_text(ws: &mut Ws) -> Option<String> {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => return Some(t.as_str().to_owned()),
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            _ => return None,
        }
    }
}

async fn serve_client(inner: Arc<Inner>, g: usize, stream: TcpStream) {
    let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    let gw = &inner.gateways[g];
    let mut rng = StdRng::from_entropy();
    // Pre-auth.
    let (client, key, protocol) = loop {
        let Some(text) = next_text(&mut ws).await else {
            return;
        };
        let Ok(req) = ClientControlRequest::parse(&text) else {
            return;
        };
        match req.pre_auth() {
            Ok(PreAuthRequest::SupportedProtocol) => {
                let r = ServerResponse::SupportedProtocol {
                    version: CURRENT_PROTOCOL_VERSION,
                };
                if !send_text(&mut ws, r.to_json()).await {
                    return;
                }
            }
            Ok(PreAuthRequest::Register {
                protocol_version,
                init,
            }) => {
                let Ok((state, material)) =
                    GatewayAwaitingMaterial::start(&mut rng, &gw.identity, &init, protocol_version)
                else {
                    return;
                };
                let client = state.client_identity().to_bytes();
                if !send_text(&mut ws, material.to_json()).await {
                    return;
                }
                let Some(text) = next_text(&mut ws).await else {
                    return;
                };
                let Ok(msg) = HandshakeMessage::parse(&text) else {
                    return;
                };
                let Ok((outcome, fin)) = state.on_message(&msg) else {
                    return;
                };
                if !send_text(&mut ws, fin.to_json()).await {
                    return;
                }
                gw.registered.lock().unwrap().insert(
                    client,
                    StoredClient {
                        shared_key: outcome.shared_key.clone(),
                        last_used_timestamp: None,
                    },
                );
                gw.bandwidth.lock().unwrap().entry(client).or_insert(0);
                push_stored(gw, &client, &outcome.shared_key, &mut ws, &mut rng).await;
                let r = ServerResponse::Register {
                    protocol_version: outcome.negotiated_protocol,
                    status: true,
                    upgrade_mode: false,
                };
                if !send_text(&mut ws, r.to_json()).await {
                    return;
                }
                break (client, outcome.shared_key, outcome.negotiated_protocol);
            }
            Ok(PreAuthRequest::Authenticate(req)) => {
                let verified = req.verify(now_unix(), |addr| {
                    gw.registered.lock().unwrap().get(addr).cloned()
                });
                let v = match verified {
                    Ok(v) => v,
                    Err(e) => {
                        let _ = send_text(&mut ws, ServerResponse::error(e.to_string()).to_json())
                            .await;
                        return;
                    }
                };
                if let Some(s) = gw.registered.lock().unwrap().get_mut(&v.client_address) {
                    s.last_used_timestamp = Some(v.timestamp);
                }
                push_stored(gw, &v.client_address, &v.shared_key, &mut ws, &mut rng).await;
                let bw = *gw
                    .bandwidth
                    .lock()
                    .unwrap()
                    .entry(v.client_address)
                    .or_insert(0);
                let r = ServerResponse::Authenticate {
                    protocol_version: v.protocol_version,
                    status: true,
                    bandwidth_remaining: bw,
                    upgrade_mode: false,
                };
                if !send_text(&mut ws, r.to_json()).await {
                    return;
                }
                break (v.client_address, v.shared_key, v.protocol_version);
            }
            Err(e) => {
                let _ = send_text(&mut ws, ServerResponse::error(e.to_string()).to_json()).await;
                return;
            }
        }
    };
    let _ = protocol;
    // Authenticated.
    let session = gw.sessions.fetch_add(1, Ordering::SeqCst);
    let (push_tx, mut push_rx) = mpsc::unbounded_channel();
    gw.clients
        .lock()
        .unwrap()
        .insert(client, (session, push_tx));
    loop {
        tokio::select! {
            p = push_rx.recv() => {
                let Some(plain) = p else { break };
                let frame = seal_pushed_message(&mut rng, &key, &plain);
                if ws.send(Message::binary(frame)).await.is_err() {
                    break;
                }
            }
            m = ws.next() => {
                match m {
                    Some(Ok(Message::Text(t))) => {
                        let resp = match ClientControlRequest::parse(t.as_str()) {
                            Ok(ClientControlRequest::ClaimFreeTestnetBandwidth) => {
                                let mut bw = gw.bandwidth.lock().unwrap();
                                let e = bw.entry(client).or_insert(0);
                                *e = bandwidth::gateway_after_free_claim(*e);
                                ServerResponse::Bandwidth { available_total: *e, upgrade_mode: false }
                            }
                            _ => ServerResponse::error("unsupported request"),
                        };
                        if !send_text(&mut ws, resp.to_json()).await {
                            break;
                        }
                    }
                    Some(Ok(Message::Binary(b))) => {
                        let Ok((kind, plain)) = open_client_frame(&key, &b) else { continue };
                        let mp = match kind {
                            ClientFrameKind::ForwardSphinxV2 => MixPacket::from_v2_bytes(&plain),
                            ClientFrameKind::ForwardSphinx => MixPacket::from_v1_bytes(&plain),
                        };
                        let Ok(mp) = mp else { continue };
                        let cost = bandwidth::forward_cost(mp.packet.len());
                        let charged = {
                            let mut bw = gw.bandwidth.lock().unwrap();
                            let e = bw.entry(client).or_insert(0);
                            bandwidth::gateway_try_use(*e, cost).inspect(|left| *e = *left)
                        };
                        let resp = match charged {
                            Ok(left) => {
                                let inner = inner.clone();
                                tokio::spawn(async move { route(inner, mp).await });
                                ServerResponse::Send { remaining_bandwidth: left, upgrade_mode: false }
                            }
                            Err(e) => ServerResponse::TypedError { error: e },
                        };
                        if !send_text(&mut ws, resp.to_json()).await {
                            break;
                        }
                    }
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => {}
                }
            }
        }
    }
    let mut clients = gw.clients.lock().unwrap();
    if clients.get(&client).is_some_and(|(s, _)| *s == session) {
        clients.remove(&client);
    }
}

async fn push_stored(
    gw: &Gateway,
    client: &[u8; 32],
    key: &GatewaySharedKey,
    ws: &mut Ws,
    rng: &mut StdRng,
) {
    let stored = gw.stored.lock().unwrap().remove(client).unwrap_or_default();
    for plain in stored {
        let frame = seal_pushed_message(rng, key, &plain);
        if ws.send(Message::binary(frame)).await.is_err() {
            return;
        }
    }
}

fn deliver(gw: &Gateway, client: [u8; 32], plain: Vec<u8>) {
    let sent = {
        let clients = gw.clients.lock().unwrap();
        clients
            .get(&client)
            .map(|(_, tx)| tx.send(plain.clone()).is_ok())
            .unwrap_or(false)
    };
    if !sent {
        gw.stored
            .lock()
            .unwrap()
            .entry(client)
            .or_default()
            .push(plain);
    }
}

/// Carry a packet hop by hop, honouring its delays, to its final gateway;
/// then send its SURB-ACK on.
async fn route(inner: Arc<Inner>, mut mp: MixPacket) {
    loop {
        let Some(node) = inner.nodes.get(&mp.next_hop.0) else {
            return;
        };
        if node.stopped.load(Ordering::SeqCst) {
            return;
        }
        let Ok(size) = PacketSize::from_len(mp.packet.len()) else {
            return;
        };
        match process(&mp.packet, &node.secret) {
            Ok(Processed::Forward {
                next_hop,
                delay,
                packet,
            }) => {
                if !delay.is_zero() {
                    tokio::time::sleep(delay.min(Duration::from_secs(10))).await;
                }
                mp = MixPacket::new(next_hop, packet, KeyRotation::Unknown);
            }
            Ok(Processed::Final {
                destination,
                plaintext,
            }) => {
                let Some(g) = node.gateway else { return };
                let gw = &inner.gateways[g];
                match split_final_hop(size, &plaintext) {
                    Ok(FinalHopDelivery::Ack(a)) => {
                        deliver(gw, destination, a.to_vec());
                        return;
                    }
                    Ok(FinalHopDelivery::Message(split)) => {
                        deliver(gw, destination, split.message.to_vec());
                        mp = split.ack_mix_packet(KeyRotation::Unknown);
                    }
                    Err(_) => return,
                }
            }
            Err(_) => return,
        }
    }
}
