//! The client websocket endpoint of a gateway (§1 of the wire facts):
//! plain `ws://` on any path, `supportedProtocol`, the registration
//! handshake, `authenticateV2`, free bandwidth and metering, ForwardSphinx
//! v1/v2, and pushing messages to the client.
//!
//! Before authentication each message must come within the pre-auth timeout
//! and anything but a valid request gets an `error` and the socket closed.
//! After authentication errors are answered and the socket stays open.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use nymd_proto::gateway::frames::{open_client_frame, seal_pushed_message};
use nymd_proto::gateway::handshake::init_client_identity;
use nymd_proto::gateway::{
    bandwidth, AuthenticateV2, ClientControlRequest, ClientFrameKind, ClientRequest,
    GatewayAwaitingMaterial, HandshakeMessage, PreAuthRequest, ProtocolVersion, SensitiveResponse,
    ServerResponse, CURRENT_PROTOCOL_VERSION,
};
use nymd_proto::keys::GatewaySharedKey;
use nymd_proto::mixpacket::MixPacket;
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::{short, ClientAddress, Control, GatewayState, SessionHandle};
use crate::counters::bump;
use crate::node::{ConnGuard, NodeCore, Run};

/// How long a live session has to answer the ping of a duplicate check.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

type Ws = WebSocketStream<TcpStream>;

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Accept client websockets until the run is cancelled.
pub(crate) async fn serve_clients(
    listener: TcpListener,
    core: Arc<NodeCore>,
    gw: Arc<GatewayState>,
    run: Run,
) {
    let slots = Arc::new(Semaphore::new(core.limits.max_client_connections.max(1)));
    loop {
        let accepted = tokio::select! {
            _ = run.cancel.cancelled() => return,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, peer)) => {
                let Ok(permit) = slots.clone().try_acquire_owned() else {
                    bump(&core.counters.dropped);
                    tracing::warn!(node = core.id, %peer, "too many clients, refusing one");
                    continue;
                };
                let guard = ConnGuard::new(core.counters.clone(), permit);
                let conn = Connection {
                    core: core.clone(),
                    gw: gw.clone(),
                    run: run.clone(),
                    peer,
                    rng: StdRng::from_entropy(),
                };
                run.tracker.spawn(async move {
                    conn.serve(stream).await;
                    drop(guard);
                });
            }
            Err(e) => {
                tracing::warn!(node = core.id, "client accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// An authenticated client.
struct Session {
    client: ClientAddress,
    key: GatewaySharedKey,
    handle: SessionHandle,
    push_rx: mpsc::Receiver<Vec<u8>>,
    control_rx: mpsc::Receiver<Control>,
}

/// What woke the authenticated loop.
enum Event {
    Stop,
    Push(Vec<u8>),
    Control(Control),
    Client(Message),
    Closed,
}

struct Connection {
    core: Arc<NodeCore>,
    gw: Arc<GatewayState>,
    run: Run,
    peer: SocketAddr,
    rng: StdRng,
}

impl Connection {
    async fn serve(mut self, stream: TcpStream) {
        let _ = stream.set_nodelay(true);
        // A test switch makes this gateway look far away.
        let delay = self.gw.client_delay();
        if !delay.is_zero() {
            tokio::select! {
                _ = self.run.cancel.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
        }
        let limits = self.core.limits;
        let config = WebSocketConfig::default()
            .max_message_size(Some(limits.max_ws_message))
            .max_frame_size(Some(limits.max_ws_message));
        let upgrade = tokio::time::timeout(
            limits.ws_handshake_timeout,
            tokio_tungstenite::accept_async_with_config(stream, Some(config)),
        );
        let mut ws = tokio::select! {
            _ = self.run.cancel.cancelled() => return,
            r = upgrade => match r {
                Ok(Ok(ws)) => ws,
                Ok(Err(e)) => {
                    bump(&self.core.counters.malformed);
                    tracing::warn!(node = self.core.id, peer = %self.peer, "websocket upgrade failed: {e}");
                    return;
                }
                Err(_) => {
                    bump(&self.core.counters.malformed);
                    tracing::warn!(node = self.core.id, peer = %self.peer, "websocket upgrade not completed in time");
                    return;
                }
            },
        };
        let Some(session) = self.pre_auth(&mut ws).await else {
            let _ = ws.close(None).await;
            return;
        };
        let (client, id) = (session.client, session.handle.id);
        let mut session = session;
        self.authenticated(&mut ws, &mut session).await;
        self.gw.close_session(&client, id);
        // Messages queued for a connection that ended were never written:
        // hand them to the client's newer connection, or keep them for its
        // next one.
        while let Ok(msg) = session.push_rx.try_recv() {
            self.gw.deliver(client, msg);
        }
        let _ = ws.close(None).await;
    }

    async fn send(&mut self, ws: &mut Ws, response: &ServerResponse) -> bool {
        ws.send(Message::text(response.to_json())).await.is_ok()
    }

    /// Refuse before authentication: count, log, answer `error`.
    async fn refuse(&mut self, ws: &mut Ws, reason: &str) {
        bump(&self.core.counters.malformed);
        tracing::warn!(node = self.core.id, peer = %self.peer, "refusing client: {reason}");
        self.send(ws, &ServerResponse::error(reason)).await;
    }

    // ---------------------------------------------------------- pre-auth

    async fn pre_auth(&mut self, ws: &mut Ws) -> Option<Session> {
        let timeout = self.core.limits.pre_auth_message_timeout;
        loop {
            let next = tokio::select! {
                _ = self.run.cancel.cancelled() => return None,
                n = tokio::time::timeout(timeout, ws.next()) => n,
            };
            let msg = match next {
                Err(_) => {
                    tracing::debug!(node = self.core.id, peer = %self.peer, "client sent nothing in time");
                    return None;
                }
                Ok(None) => return None,
                Ok(Some(Err(e))) => {
                    bump(&self.core.counters.malformed);
                    tracing::warn!(node = self.core.id, peer = %self.peer, "websocket error: {e}");
                    return None;
                }
                Ok(Some(Ok(m))) => m,
            };
            let text = match msg {
                Message::Text(t) => t,
                Message::Close(_) => return None,
                _ => {
                    let reason = nymd_proto::gateway::PreAuthRejection::InvalidRequest.to_string();
                    self.refuse(ws, &reason).await;
                    return None;
                }
            };
            let request = match ClientControlRequest::parse(&text) {
                Ok(r) => r,
                Err(e) => {
                    self.refuse(ws, &format!("malformed request: {e}")).await;
                    return None;
                }
            };
            match request.pre_auth() {
                Ok(PreAuthRequest::SupportedProtocol) => {
                    let r = ServerResponse::SupportedProtocol {
                        version: CURRENT_PROTOCOL_VERSION,
                    };
                    if !self.send(ws, &r).await {
                        return None;
                    }
                }
                Ok(PreAuthRequest::Register {
                    protocol_version,
                    init,
                }) => return self.register(ws, protocol_version, &init).await,
                Ok(PreAuthRequest::Authenticate(req)) => return self.authenticate(ws, &req).await,
                Err(rejection) => {
                    self.refuse(ws, &rejection.to_string()).await;
                    return None;
                }
            }
        }
    }

    async fn handshake_error(&mut self, ws: &mut Ws, reason: String) {
        bump(&self.core.counters.malformed);
        tracing::warn!(node = self.core.id, peer = %self.peer, "registration failed: {reason}");
        let _ = ws
            .send(Message::text(HandshakeMessage::error(reason).to_json()))
            .await;
    }

    async fn register(
        &mut self,
        ws: &mut Ws,
        proposed: ProtocolVersion,
        init: &[u8],
    ) -> Option<Session> {
        let client = match init_client_identity(init) {
            Ok(k) => k.to_bytes(),
            Err(e) => {
                self.handshake_error(ws, e.to_string()).await;
                return None;
            }
        };
        if self.gw.session(&client).is_some() {
            self.handshake_error(ws, "this client is already connected".into())
                .await;
            return None;
        }
        let identity = self.gw.identity.clone();
        let (state, material) =
            match GatewayAwaitingMaterial::start(&mut self.rng, &identity, init, proposed) {
                Ok(x) => x,
                Err(e) => {
                    self.handshake_error(ws, e.to_string()).await;
                    return None;
                }
            };
        if ws.send(Message::text(material.to_json())).await.is_err() {
            return None;
        }
        let deadline = tokio::time::Instant::now() + self.core.limits.handshake_step_timeout;
        let reply = loop {
            let next = tokio::select! {
                _ = self.run.cancel.cancelled() => return None,
                n = tokio::time::timeout_at(deadline, ws.next()) => n,
            };
            match next {
                Err(_) => {
                    self.handshake_error(ws, "timed out waiting for the handshake".into())
                        .await;
                    return None;
                }
                Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => return None,
                // Nym ignores text that is not a handshake message.
                Ok(Some(Ok(Message::Text(t)))) => match HandshakeMessage::parse(&t) {
                    Ok(m) => break m,
                    Err(_) => continue,
                },
                Ok(Some(Ok(_))) => continue,
            }
        };
        let (outcome, finalization) = match state.on_message(&reply) {
            Ok(x) => x,
            Err(e) => {
                self.handshake_error(ws, e.to_string()).await;
                return None;
            }
        };
        if ws
            .send(Message::text(finalization.to_json()))
            .await
            .is_err()
        {
            return None;
        }
        self.gw.register_client(client, outcome.shared_key.clone());
        self.gw.persist_now().await;
        let session = self
            .start_session(ws, client, outcome.shared_key, unix_now())
            .await?;
        let response = ServerResponse::Register {
            protocol_version: outcome.negotiated_protocol,
            status: true,
            upgrade_mode: false,
        };
        self.send(ws, &response).await.then_some(session)
    }

    async fn authenticate(&mut self, ws: &mut Ws, req: &AuthenticateV2) -> Option<Session> {
        let verified = match req.verify(unix_now(), |c| self.gw.stored_client(c)) {
            Ok(v) => v,
            Err(e) => {
                self.refuse(ws, &e.to_string()).await;
                return None;
            }
        };
        let client = verified.client_address;
        if let Some(live) = self.gw.session(&client) {
            if verified.timestamp <= live.started {
                self.refuse(ws, "the request would overwrite a newer session")
                    .await;
                return None;
            }
            if probe(&live).await {
                self.refuse(ws, "this client is already connected").await;
                return None;
            }
            tracing::debug!(node = self.core.id, "replacing an unresponsive session");
        }
        self.gw.record_auth(&client, verified.timestamp);
        self.gw.persist_now().await;
        let session = self
            .start_session(ws, client, verified.shared_key, verified.timestamp)
            .await?;
        let response = ServerResponse::Authenticate {
            protocol_version: verified.protocol_version,
            status: true,
            bandwidth_remaining: self.gw.bandwidth(&client),
            upgrade_mode: false,
        };
        self.send(ws, &response).await.then_some(session)
    }

    /// Install the session and push what was stored for the client (before
    /// the register/authenticate response, as Nym does).
    async fn start_session(
        &mut self,
        ws: &mut Ws,
        client: ClientAddress,
        key: GatewaySharedKey,
        started: u64,
    ) -> Option<Session> {
        let (handle, push_rx, control_rx) = self.gw.open_session(client, started);
        let session = Session {
            client,
            key,
            handle,
            push_rx,
            control_rx,
        };
        let mut stored = self.gw.take_stored(&client).into_iter();
        while let Some(msg) = stored.next() {
            let frame = seal_pushed_message(&mut self.rng, &session.key, &msg);
            if ws.send(Message::binary(frame)).await.is_err() {
                self.gw.close_session(&client, session.handle.id);
                // Not written: keep this one and the rest.
                for m in std::iter::once(msg).chain(stored) {
                    self.gw.store(client, m);
                }
                return None;
            }
            tracing::debug!(client = %short(&client), session = session.handle.id, "stored message written");
            bump(&self.core.counters.delivered);
        }
        Some(session)
    }

    // ----------------------------------------------------- authenticated

    async fn authenticated(&mut self, ws: &mut Ws, s: &mut Session) {
        let mut probe: Option<([u8; 8], oneshot::Sender<()>)> = None;
        loop {
            let event = tokio::select! {
                _ = self.run.cancel.cancelled() => Event::Stop,
                m = s.push_rx.recv() => m.map_or(Event::Stop, Event::Push),
                c = s.control_rx.recv() => c.map_or(Event::Stop, Event::Control),
                m = ws.next() => match m {
                    Some(Ok(m)) => Event::Client(m),
                    Some(Err(e)) => {
                        tracing::debug!(node = self.core.id, peer = %self.peer, "client connection failed: {e}");
                        Event::Closed
                    }
                    None => Event::Closed,
                },
            };
            let ok = match event {
                Event::Stop | Event::Closed | Event::Control(Control::Kick) => {
                    tracing::debug!(client = %short(&s.client), session = s.handle.id, "session ends");
                    return;
                }
                Event::Push(msg) => {
                    // A client that died (SIGKILL, crash) leaves a socket
                    // that still accepts writes: the peer's FIN only stops
                    // reads. When its end-of-stream is already here (and
                    // the select picked the push first) the message would
                    // vanish into a dead socket; keep it instead.
                    if peer_has_closed(ws) {
                        tracing::debug!(client = %short(&s.client), session = s.handle.id, "client gone before a push; keeping the message");
                        self.gw.close_session(&s.client, s.handle.id);
                        self.gw.deliver(s.client, msg);
                        return;
                    }
                    let frame = seal_pushed_message(&mut self.rng, &s.key, &msg);
                    let sent = ws.send(Message::binary(frame)).await.is_ok();
                    tracing::debug!(client = %short(&s.client), session = s.handle.id, sent, len = msg.len(), "push written");
                    if !sent {
                        // The connection died: hand the message to the
                        // client's newer connection, or keep it for the next.
                        self.gw.close_session(&s.client, s.handle.id);
                        self.gw.deliver(s.client, msg);
                    }
                    sent
                }
                Event::Control(Control::Probe(reply)) => {
                    let mut tag = [0u8; 8];
                    self.rng.fill_bytes(&mut tag);
                    probe = Some((tag, reply));
                    ws.send(Message::Ping(tag.to_vec().into())).await.is_ok()
                }
                Event::Client(Message::Pong(data)) => {
                    if let Some((tag, reply)) = probe.take() {
                        if data.as_ref() == tag.as_slice() {
                            let _ = reply.send(());
                        } else {
                            probe = Some((tag, reply));
                        }
                    }
                    true
                }
                Event::Client(Message::Close(_)) => return,
                Event::Client(Message::Text(t)) => self.on_text(ws, s, &t).await,
                Event::Client(Message::Binary(b)) => self.on_forward(ws, s, &b).await,
                // Pings are answered by the websocket layer.
                Event::Client(_) => true,
            };
            if !ok {
                return;
            }
        }
    }

    /// Answer an error after authentication (the socket stays open).
    async fn error(&mut self, ws: &mut Ws, message: String) -> bool {
        bump(&self.core.counters.malformed);
        tracing::warn!(node = self.core.id, peer = %self.peer, "bad client request: {message}");
        self.send(ws, &ServerResponse::error(message)).await
    }

    async fn on_text(&mut self, ws: &mut Ws, s: &Session, text: &str) -> bool {
        let request = match ClientControlRequest::parse(text) {
            Ok(r) => r,
            Err(e) => return self.error(ws, format!("malformed request: {e}")).await,
        };
        match request {
            ClientControlRequest::ClaimFreeTestnetBandwidth => {
                let total = self.gw.claim_free_bandwidth(&s.client);
                let r = ServerResponse::Bandwidth {
                    available_total: total,
                    upgrade_mode: false,
                };
                self.send(ws, &r).await
            }
            ClientControlRequest::SupportedProtocol {} => {
                let r = ServerResponse::SupportedProtocol {
                    version: CURRENT_PROTOCOL_VERSION,
                };
                self.send(ws, &r).await
            }
            ClientControlRequest::EncryptedRequest { ciphertext, nonce } => {
                match ClientRequest::decrypt(&ciphertext, &nonce, &s.key) {
                    Ok(ClientRequest::ForgetMe { client, .. }) => {
                        if client {
                            self.gw.forget_client(&s.client);
                            self.gw.persist_now().await;
                        }
                        let r = SensitiveResponse::ForgetMeAck {}.encrypt(&mut self.rng, &s.key);
                        self.send(ws, &r).await
                    }
                    Ok(ClientRequest::RememberMe { .. }) => {
                        let r = SensitiveResponse::RememberMeAck {}.encrypt(&mut self.rng, &s.key);
                        self.send(ws, &r).await
                    }
                    Err(e) => {
                        self.error(ws, format!("invalid encrypted request: {e}"))
                            .await
                    }
                }
            }
            ClientControlRequest::HandshakePayload { .. }
            | ClientControlRequest::HandshakeError { .. }
            | ClientControlRequest::Authenticate { .. } => {
                self.error(
                    ws,
                    "the received request is not valid in the current context".into(),
                )
                .await
            }
            ClientControlRequest::AuthenticateV2(_) => {
                self.error(ws, "received request with an unknown type".into())
                    .await
            }
            ClientControlRequest::EcashCredential { .. }
            | ClientControlRequest::BandwidthCredential { .. }
            | ClientControlRequest::BandwidthCredentialV2 { .. }
            | ClientControlRequest::UpgradeModeJwt { .. } => {
                self.error(ws, "this gateway only grants free testnet bandwidth".into())
                    .await
            }
        }
    }

    async fn on_forward(&mut self, ws: &mut Ws, s: &Session, frame: &[u8]) -> bool {
        bump(&self.core.counters.received);
        let (kind, plaintext) = match open_client_frame(&s.key, frame) {
            Ok(x) => x,
            Err(e) => return self.error(ws, format!("invalid binary request: {e}")).await,
        };
        let parsed = match kind {
            ClientFrameKind::ForwardSphinx => MixPacket::from_v1_bytes(&plaintext),
            ClientFrameKind::ForwardSphinxV2 => MixPacket::from_v2_bytes(&plaintext),
        };
        let packet = match parsed {
            Ok(p) => p,
            Err(e) => return self.error(ws, format!("invalid mix packet: {e}")).await,
        };
        let cost = bandwidth::forward_cost(packet.packet.len());
        let remaining = match self.gw.use_bandwidth(&s.client, cost) {
            Ok(r) => r,
            Err(error) => {
                bump(&self.core.counters.dropped);
                return self.send(ws, &ServerResponse::TypedError { error }).await;
            }
        };
        if self.core.limits.drop_client_packets {
            bump(&self.core.counters.dropped);
        } else {
            // The entry gateway is not a sphinx hop: it passes the packet on.
            self.core
                .forward(packet.next_hop.0, &packet.packet, Duration::ZERO, &self.run);
        }
        let r = ServerResponse::Send {
            remaining_bandwidth: remaining,
            upgrade_mode: false,
        };
        self.send(ws, &r).await
    }
}

/// Whether the client's end of the connection is known to be closed: the
/// kernel holds its end-of-stream (or a reset) and no data before it.
fn peer_has_closed(ws: &Ws) -> bool {
    use futures_util::FutureExt;
    let mut byte = [0u8; 1];
    matches!(
        ws.get_ref().peek(&mut byte).now_or_never(),
        Some(Ok(0)) | Some(Err(_))
    )
}

/// Whether a live session answers a ping within [`PROBE_TIMEOUT`].
async fn probe(live: &SessionHandle) -> bool {
    let (tx, rx) = oneshot::channel();
    if live.control.try_send(Control::Probe(tx)).is_err() {
        return false;
    }
    matches!(tokio::time::timeout(PROBE_TIMEOUT, rx).await, Ok(Ok(())))
}
