//! The per-identity app server: nym-client's websocket API on the identity's
//! port.
//!
//! It owns only connections and framing. Each parsed request becomes an
//! [`AppCommand`] for the identity actor, which answers through a oneshot;
//! messages from the mixnet reach apps through the identity's [`AppHub`].
//!
//! Differences from stock nym-client, on purpose:
//! - several apps may be connected at once and each receives every message
//!   (`allow_multiple_apps = false` restores one app at a time: a second
//!   connection is closed before the websocket handshake, as nym-client does);
//! - a TCP client that never completes the websocket handshake, or sends
//!   garbage, is dropped after a deadline and never disturbs the identity;
//! - an app that stops reading is disconnected instead of stalling the
//!   identity or growing memory.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use nymd_proto::appapi::{ApiError, AppFrame, ClientRequest, ResponseMode, ServerResponse};
use nymd_proto::SenderTag;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Time a client has to complete the websocket handshake.
pub const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(10);
/// Messages queued per connected app before it is considered stuck.
pub const APP_QUEUE: usize = 1024;
/// Messages kept while no app is connected.
pub const DEFAULT_PENDING_LIMIT: usize = 10_000;
/// Time a stuck app gets before it is disconnected.
const STUCK_APP_GRACE: Duration = Duration::from_secs(5);

/// A message that arrived from the mixnet for the apps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Payload.
    pub data: Vec<u8>,
    /// Sender tag of an anonymous (repliable) message.
    pub sender_tag: Option<SenderTag>,
}

/// What the app server asks of the identity actor.
#[derive(Debug)]
pub struct AppCommand {
    /// The app session that asked.
    pub session: u64,
    /// The parsed request.
    pub request: ClientRequest,
    /// Where the direct response goes (`None` = no response, as for a plain
    /// `send` without a connection id).
    pub respond: oneshot::Sender<Option<ServerResponse>>,
}

/// Something to write to one app.
#[derive(Debug, Clone)]
enum Outbound {
    Delivery(Arc<Delivery>),
    Error(ApiError),
}

#[derive(Debug, Default)]
struct HubState {
    apps: HashMap<u64, mpsc::Sender<Outbound>>,
    /// Who is connected and since when, for status and events.
    peers: HashMap<u64, (SocketAddr, std::time::Instant)>,
    pending: VecDeque<Arc<Delivery>>,
}

/// An app connected or went away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppChange {
    /// A websocket session started.
    Connected {
        /// Session number.
        session: u64,
        /// The app's address.
        peer: SocketAddr,
    },
    /// It ended.
    Disconnected {
        /// Session number.
        session: u64,
    },
}

/// A connected app, for status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectedApp {
    /// Session number.
    pub session: u64,
    /// The app's address.
    pub peer: SocketAddr,
    /// Time since it connected.
    pub connected_for: Duration,
}

type Observer = Box<dyn Fn(AppChange) + Send + Sync>;

/// Fans mixnet messages out to the connected apps of one identity, and keeps
/// them (bounded) while none is connected.
pub struct AppHub {
    state: Mutex<HubState>,
    observer: Mutex<Option<Observer>>,
    pending_limit: usize,
    next_session: AtomicU64,
    dropped_pending: AtomicU64,
}

impl std::fmt::Debug for AppHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppHub")
            .field("pending_limit", &self.pending_limit)
            .finish_non_exhaustive()
    }
}

impl AppHub {
    /// Be told when apps connect and disconnect.
    pub fn set_observer(&self, f: impl Fn(AppChange) + Send + Sync + 'static) {
        if let Ok(mut o) = self.observer.lock() {
            *o = Some(Box::new(f));
        }
    }

    fn notify(&self, change: AppChange) {
        if let Ok(o) = self.observer.lock() {
            if let Some(f) = o.as_ref() {
                f(change);
            }
        }
    }

    /// The apps connected now.
    pub fn apps(&self) -> Vec<ConnectedApp> {
        let Ok(st) = self.state.lock() else {
            return Vec::new();
        };
        let mut v: Vec<ConnectedApp> = st
            .peers
            .iter()
            .map(|(session, (peer, since))| ConnectedApp {
                session: *session,
                peer: *peer,
                connected_for: since.elapsed(),
            })
            .collect();
        v.sort_by_key(|a| a.session);
        v
    }

    /// A hub that keeps at most `pending_limit` messages while no app is
    /// connected.
    pub fn new(pending_limit: usize) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(HubState::default()),
            observer: Mutex::new(None),
            pending_limit: pending_limit.max(1),
            next_session: AtomicU64::new(1),
            dropped_pending: AtomicU64::new(0),
        })
    }

    /// Number of connected apps.
    pub fn connected_apps(&self) -> usize {
        self.state.lock().map(|s| s.apps.len()).unwrap_or(0)
    }

    /// Messages waiting for an app.
    pub fn pending(&self) -> usize {
        self.state.lock().map(|s| s.pending.len()).unwrap_or(0)
    }

    /// Messages discarded because the pending buffer was full.
    pub fn dropped_pending(&self) -> u64 {
        self.dropped_pending.load(Ordering::Relaxed)
    }

    /// Hand a message to every connected app, or keep it until one connects.
    /// Never blocks: an app whose queue is full is disconnected (it can
    /// reconnect) rather than stall the identity.
    pub fn deliver(&self, delivery: Delivery) {
        let d = Arc::new(delivery);
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        if st.apps.is_empty() {
            if st.pending.len() >= self.pending_limit {
                st.pending.pop_front();
                self.dropped_pending.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    "no app connected and {} messages waiting: dropped the oldest",
                    self.pending_limit
                );
            }
            st.pending.push_back(d);
            return;
        }
        st.apps.retain(
            |session, tx| match tx.try_send(Outbound::Delivery(d.clone())) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    tracing::warn!(session, "app is not reading its messages: disconnecting it");
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            },
        );
    }

    /// Send an `error` response to every connected app (for failures that are
    /// not a direct answer to a request, e.g. retransmissions exhausted).
    pub fn broadcast_error(&self, err: ApiError) {
        if let Ok(st) = self.state.lock() {
            for tx in st.apps.values() {
                let _ = tx.try_send(Outbound::Error(err.clone()));
            }
        }
    }

    fn register(
        &self,
        allow_multiple: bool,
        peer: SocketAddr,
    ) -> Option<(u64, mpsc::Receiver<Outbound>)> {
        let registered = self.register_inner(allow_multiple, peer);
        if let Some((session, _)) = &registered {
            self.notify(AppChange::Connected {
                session: *session,
                peer,
            });
        }
        registered
    }

    fn register_inner(
        &self,
        allow_multiple: bool,
        peer: SocketAddr,
    ) -> Option<(u64, mpsc::Receiver<Outbound>)> {
        let mut st = self.state.lock().ok()?;
        if !allow_multiple && !st.apps.is_empty() {
            return None;
        }
        let session = self.next_session.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(APP_QUEUE);
        // Flush what arrived while nobody was connected, in order. Messages
        // beyond the app queue stay pending for the next app.
        while let Some(d) = st.pending.front() {
            if tx.try_send(Outbound::Delivery(d.clone())).is_err() {
                break;
            }
            st.pending.pop_front();
        }
        st.apps.insert(session, tx);
        st.peers.insert(session, (peer, std::time::Instant::now()));
        Some((session, rx))
    }

    fn unregister(&self, session: u64) {
        if let Ok(mut st) = self.state.lock() {
            st.apps.remove(&session);
            st.peers.remove(&session);
        }
        self.notify(AppChange::Disconnected { session });
    }

    /// Reserve a slot for a TCP connection before its handshake (one-app
    /// mode): `false` if an app is already connected.
    fn slot_free(&self, allow_multiple: bool) -> bool {
        allow_multiple || self.connected_apps() == 0
    }
}

/// Settings of one identity's app server.
#[derive(Debug, Clone)]
pub struct AppServerConfig {
    /// Several apps at once (default) or nym-client's one at a time.
    pub allow_multiple_apps: bool,
}

/// Accept app connections on `listener` until `cancel` fires.
pub async fn serve(
    listener: TcpListener,
    config: AppServerConfig,
    hub: Arc<AppHub>,
    commands: mpsc::Sender<AppCommand>,
    cancel: CancellationToken,
    tracker: TaskTracker,
) {
    loop {
        let accepted = tokio::select! {
            _ = cancel.cancelled() => return,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors and the like: back off, keep serving.
                tracing::warn!("app listener accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if !hub.slot_free(config.allow_multiple_apps) {
            tracing::warn!(%peer, "an app is already connected and this identity allows one at a time: closing the new connection");
            drop(stream);
            continue;
        }
        let hub = hub.clone();
        let commands = commands.clone();
        let cancel = cancel.child_token();
        let allow = config.allow_multiple_apps;
        tracker.spawn(async move {
            if let Err(e) = session(stream, peer, allow, hub, commands, cancel).await {
                tracing::debug!(%peer, "app session ended: {e}");
            }
        });
    }
}

/// Read buffer of an app websocket (see `session`).
const APP_READ_BUFFER: usize = 16 * 1024;

async fn session(
    stream: TcpStream,
    peer: SocketAddr,
    allow_multiple: bool,
    hub: Arc<AppHub>,
    commands: mpsc::Sender<AppCommand>,
    cancel: CancellationToken,
) -> Result<(), String> {
    let _ = stream.set_nodelay(true);
    // tungstenite preallocates a 128 KiB read buffer per connection by
    // default: 125 MiB for 1,000 idle apps. 16 KiB reads cost nothing
    // measurable for app traffic and keep an idle app at a few KiB.
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(APP_READ_BUFFER);
    let handshake = tokio::time::timeout(
        HANDSHAKE_DEADLINE,
        tokio_tungstenite::accept_async_with_config(stream, Some(config)),
    );
    let handshake = tokio::select! {
        _ = cancel.cancelled() => return Ok(()),
        h = handshake => h,
    };
    let ws = match handshake {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => return Err(format!("websocket handshake failed: {e}")),
        Err(_) => return Err("websocket handshake not completed in time".into()),
    };
    let Some((id, mut outbound)) = hub.register(allow_multiple, peer) else {
        return Err("another app connected first".into());
    };
    tracing::info!(%peer, session = id, "app connected");
    let (mut sink, mut source) = ws.split();
    let mut mode = ResponseMode::default();
    let result = loop {
        tokio::select! {
            _ = cancel.cancelled() => {
                let _ = sink.send(Message::Close(Some(CloseFrame {
                    code: CloseCode::Away,
                    reason: "nymd is shutting down".into(),
                }))).await;
                break Ok(());
            }
            out = outbound.recv() => {
                let frame = match out {
                    Some(Outbound::Delivery(d)) => mode.encode(&ServerResponse::Received {
                        message: d.data.clone(),
                        sender_tag: d.sender_tag,
                    }),
                    Some(Outbound::Error(e)) => mode.encode(&ServerResponse::Error(e)),
                    None => {
                        // The hub dropped us: we were too slow.
                        let _ = sink.send(Message::Close(Some(CloseFrame {
                            code: CloseCode::Again,
                            reason: "app did not read its messages".into(),
                        }))).await;
                        break Err("disconnected as too slow".into());
                    }
                };
                match tokio::time::timeout(STUCK_APP_GRACE, sink.send(to_message(frame))).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => break Err(format!("write failed: {e}")),
                    Err(_) => break Err("app stopped reading".into()),
                }
            }
            incoming = source.next() => {
                let frame = match incoming {
                    None => break Ok(()),
                    Some(Err(e)) => break Err(format!("read failed: {e}")),
                    Some(Ok(Message::Text(t))) => AppFrame::Text(t.as_str().to_owned()),
                    Some(Ok(Message::Binary(b))) => AppFrame::Binary(b.to_vec()),
                    Some(Ok(Message::Close(_))) => break Ok(()),
                    // Ping/pong are answered by tungstenite; raw frames ignored.
                    Some(Ok(_)) => continue,
                };
                mode.observe(&frame);
                let response = match frame.parse_request() {
                    Err(e) => Some(ServerResponse::Error(e)),
                    Ok(request) => {
                        let (tx, rx) = oneshot::channel();
                        let cmd = AppCommand { session: id, request, respond: tx };
                        // Backpressure: while the identity's queue is full we
                        // stop reading this app's socket.
                        if commands.send(cmd).await.is_err() {
                            break Err("identity stopped".into());
                        }
                        match rx.await {
                            Ok(r) => r,
                            Err(_) => Some(ServerResponse::Error(ApiError::other(
                                "the identity stopped before answering",
                            ))),
                        }
                    }
                };
                if let Some(resp) = response {
                    let frame = mode.encode(&resp);
                    if let Err(e) = sink.send(to_message(frame)).await {
                        break Err(format!("write failed: {e}"));
                    }
                }
            }
        }
    };
    hub.unregister(id);
    tracing::info!(%peer, session = id, "app disconnected");
    result
}

fn to_message(frame: AppFrame) -> Message {
    match frame {
        AppFrame::Text(t) => Message::Text(t.into()),
        AppFrame::Binary(b) => Message::Binary(b.into()),
    }
}
