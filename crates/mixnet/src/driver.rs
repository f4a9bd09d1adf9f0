//! The tokio driver of one identity's client core (`nymd_client::Client`):
//! one task, one select loop over a closed set of wake-ups, feeding the core
//! what arrives (app requests, handle commands, gateway frames, topology
//! changes, its timer) and sending what it polls (sealed frames to the
//! gateway, events to the subscriber). The gateway connection, its
//! reconnection, the outbox journal's writer and the reply-state file are
//! here; every protocol decision is the core's.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nymd_client::{Client, ClientEvent, GatewayState, OutgoingMessage, Stats, Transmit};
use nymd_proto::gateway::forward_kind_for;
use nymd_proto::gateway::frames::seal_client_frame;
use nymd_proto::keys::{GatewaySharedKey, IdentityKeyPair};
use nymd_proto::topology::NymTopology;
use rand::rngs::StdRng;
use tokio::sync::mpsc;
use tokio::sync::mpsc::OwnedPermit;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::config::GatewayConfig;
use crate::error::ClientError;
use crate::gateway::{authenticate, spawn_connection, Connection, GwEvent, GwItem, Session};
use crate::replies;
use crate::topology::TopologyHandle;
use crate::types::HandleShared;

/// Gateway events handled per loop turn before other work gets a chance.
const GATEWAY_BATCH: usize = 64;
/// Transmissions handed to the connection per loop turn.
const TRANSMIT_BATCH: usize = 32;
/// How often the reply state is written when it changed.
const REPLIES_SAVE: Duration = Duration::from_secs(1);

/// What a [`crate::ClientHandle`] asks of its task besides sending.
#[derive(Debug)]
pub(crate) enum Command {
    /// Deliver events here from now on (the previous subscription ends).
    Subscribe(mpsc::Sender<ClientEvent>),
    /// The app gave up a connection: drop its queued packets.
    CloseLane(u64),
}

/// Everything the task's select loop can wake up for. Its size does not
/// matter (it never lives across an await, so it takes no room in the
/// task's state): `Reconnected` is kept unboxed.
#[allow(clippy::large_enum_variant)]
enum Wake {
    Shutdown,
    Command(Option<Command>),
    Deliver(Result<OwnedPermit<ClientEvent>, mpsc::error::SendError<()>>),
    Request(Option<Box<OutgoingMessage>>),
    Gateway(Option<GwItem>),
    Reconnected(Result<Result<Session, ClientError>, tokio::task::JoinError>),
    SendRoom(Option<mpsc::OwnedPermit<Box<Message>>>),
    Topology(bool),
    Timer,
    SaveReplies,
}

/// The parts of a driver.
pub(crate) struct DriverParts {
    pub core: Client,
    pub identity: IdentityKeyPair,
    pub listener: String,
    pub fallback: Option<String>,
    pub shared_key: GatewaySharedKey,
    pub gateway: GatewayConfig,
    pub topology: TopologyHandle,
    pub shared: Arc<HandleShared>,
    pub requests: mpsc::Receiver<Box<OutgoingMessage>>,
    pub commands: mpsc::UnboundedReceiver<Command>,
    pub cancel: CancellationToken,
    /// The file of the persisted reply state.
    pub replies: Option<std::path::PathBuf>,
}

/// Where the reply state is written.
#[derive(Debug)]
struct RepliesFile {
    path: std::path::PathBuf,
    /// A write is under way (on a blocking thread).
    writing: Arc<AtomicBool>,
}

pub(crate) struct Driver {
    core: Client,
    identity: IdentityKeyPair,
    listener: String,
    fallback: Option<String>,
    shared_key: GatewaySharedKey,
    gateway: GatewayConfig,
    topology: TopologyHandle,
    shared: Arc<HandleShared>,
    requests: mpsc::Receiver<Box<OutgoingMessage>>,
    commands: mpsc::UnboundedReceiver<Command>,
    cancel: CancellationToken,
    /// Seals frames (nonces).
    rng: StdRng,

    gw_tx: mpsc::Sender<GwItem>,
    gw_rx: mpsc::Receiver<GwItem>,
    conn: Option<Connection>,
    generation: u64,
    reconnect: Option<JoinHandle<Result<Session, ClientError>>>,

    subscriber: Option<mpsc::Sender<ClientEvent>>,
    replies: Option<RepliesFile>,
}

async fn join_opt<T>(h: &mut Option<JoinHandle<T>>) -> Result<T, tokio::task::JoinError> {
    match h {
        Some(h) => h.await,
        None => std::future::pending().await,
    }
}

async fn reserve_opt<T>(
    s: Option<mpsc::Sender<T>>,
) -> Result<OwnedPermit<T>, mpsc::error::SendError<()>> {
    match s {
        Some(s) => s.reserve_owned().await,
        None => std::future::pending().await,
    }
}

fn same_topology(a: Option<&Arc<NymTopology>>, b: Option<&Arc<NymTopology>>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        (None, None) => true,
        _ => false,
    }
}

impl Driver {
    pub(crate) fn new(p: DriverParts) -> Self {
        let (gw_tx, gw_rx) = mpsc::channel(256);
        Self {
            core: p.core,
            identity: p.identity,
            listener: p.listener,
            fallback: p.fallback,
            shared_key: p.shared_key,
            gateway: p.gateway,
            topology: p.topology,
            shared: p.shared,
            requests: p.requests,
            commands: p.commands,
            cancel: p.cancel,
            rng: rand::SeedableRng::from_entropy(),
            gw_tx,
            gw_rx,
            conn: None,
            generation: 0,
            reconnect: None,
            subscriber: None,
            replies: p.replies.map(|path| RepliesFile {
                path,
                writing: Arc::default(),
            }),
        }
    }

    fn stats(&self) -> &Stats {
        &self.shared.published.stats
    }

    /// Hand the core's transmissions to the connection while its queue has
    /// room (at most [`TRANSMIT_BATCH`] per turn).
    fn flush(&mut self) {
        let Some((tx, protocol)) = self.conn.as_ref().map(|c| (c.tx.clone(), c.protocol)) else {
            return;
        };
        for _ in 0..TRANSMIT_BATCH {
            let Ok(permit) = tx.try_reserve() else {
                return;
            };
            let Some(t) = self.core.poll_transmit(Instant::now()) else {
                return;
            };
            permit.send(Box::new(self.frame(t, protocol)));
        }
    }

    /// The websocket message of a transmission (a forward request is sealed
    /// under the shared key).
    fn frame(&mut self, t: Transmit, protocol: nymd_proto::gateway::ProtocolVersion) -> Message {
        match t {
            Transmit::Packet { bytes, .. } => Message::binary(seal_client_frame(
                &mut self.rng,
                &self.shared_key,
                forward_kind_for(protocol),
                &bytes,
            )),
            Transmit::Control(text) => Message::text(text),
        }
    }

    // ------------------------------------------------------------ main loop

    /// The task: the select loop until shutdown.
    ///
    /// Not an `async fn`: one keeps its arguments twice in its state (as
    /// the argument and as the local it is moved into, rust-lang/rust#62958),
    /// and `self` is 3.3 KB; the `async move` block keeps it once (the
    /// task's future is 4.2 KB instead of 7.5 KB).
    #[allow(clippy::manual_async_fn)]
    pub(crate) fn run(mut self) -> impl std::future::Future<Output = ()> + Send {
        async move {
            let mut topo = self.topology.watch();
            let mut topo_live = true;
            self.core
                .set_topology(Instant::now(), self.topology.current());
            let mut save = tokio::time::interval(REPLIES_SAVE);
            save.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

            loop {
                self.flush();
                let deliver = self.core.has_events() && self.subscriber.is_some();
                let subscriber = if deliver {
                    self.subscriber.clone()
                } else {
                    None
                };
                let room = match &self.conn {
                    Some(c) if self.core.wants_to_transmit() => Some(c.tx.clone()),
                    _ => None,
                };
                let want_room = room.is_some();
                let read_gateway = self.core.accepts_gateway_input();
                let accept_requests = self.core.accepts_requests();
                let deadline = self.core.poll_timeout().map(tokio::time::Instant::from_std);
                let timer = async {
                    match deadline {
                        Some(d) => tokio::time::sleep_until(d).await,
                        None => std::future::pending().await,
                    }
                };

                let wake = tokio::select! {
                    biased;
                    _ = self.cancel.cancelled() => Wake::Shutdown,
                    c = self.commands.recv() => Wake::Command(c),
                    p = reserve_opt(subscriber), if deliver => Wake::Deliver(p),
                    r = join_opt(&mut self.reconnect), if self.reconnect.is_some() => Wake::Reconnected(r),
                    e = self.gw_rx.recv(), if read_gateway => Wake::Gateway(e),
                    changed = topo.changed(), if topo_live => Wake::Topology(changed.is_ok()),
                    _ = timer => Wake::Timer,
                    p = reserve_opt(room), if want_room => Wake::SendRoom(p.ok()),
                    r = self.requests.recv(), if accept_requests => Wake::Request(r),
                    _ = save.tick() => Wake::SaveReplies,
                };

                let now = Instant::now();
                match wake {
                    Wake::Shutdown => break,
                    Wake::Command(Some(Command::Subscribe(tx))) => self.subscriber = Some(tx),
                    Wake::Command(Some(Command::CloseLane(conn))) => {
                        self.core.close_lane(now, conn)
                    }
                    // The handle is gone; its request channel ends too.
                    Wake::Command(None) => {}
                    Wake::Deliver(Ok(permit)) => {
                        if let Some(ev) = self.core.poll_event() {
                            permit.send(ev);
                        }
                    }
                    Wake::Deliver(Err(_)) => self.subscriber = None,
                    Wake::Reconnected(r) => {
                        self.reconnect = None;
                        match r {
                            Ok(Ok(session)) => {
                                Stats::add(&self.stats().reconnects, 1);
                                self.install_session(session);
                            }
                            Ok(Err(e)) => {
                                tracing::debug!(error = %e, "reconnection ended");
                            }
                            // Cancelled: the runtime is shutting down.
                            Err(e) if e.is_cancelled() => {}
                            Err(e) => {
                                tracing::warn!(error = %e, "reconnection task failed; retrying");
                                self.start_reconnect();
                            }
                        }
                    }
                    Wake::Gateway(Some(item)) => {
                        let (generation, ev) = *item;
                        self.on_gateway(generation, ev);
                        // Drain what is already there, bounded.
                        for _ in 0..GATEWAY_BATCH {
                            if !self.core.accepts_gateway_input() {
                                break;
                            }
                            match self.gw_rx.try_recv() {
                                Ok(item) => {
                                    let (g, ev) = *item;
                                    self.on_gateway(g, ev);
                                }
                                Err(_) => break,
                            }
                        }
                    }
                    Wake::Gateway(None) => {}
                    Wake::Topology(true) => self.core.set_topology(now, self.topology.current()),
                    // A fixed topology: its sender is gone, nothing will change.
                    Wake::Topology(false) => topo_live = false,
                    Wake::Timer => self.core.handle_timeout(now),
                    Wake::SendRoom(Some(permit)) => {
                        let protocol = self.conn.as_ref().map(|c| c.protocol);
                        if let (Some(protocol), Some(t)) = (protocol, self.core.poll_transmit(now))
                        {
                            permit.send(Box::new(self.frame(t, protocol)));
                        }
                    }
                    Wake::SendRoom(None) => {}
                    Wake::Request(Some(req)) => {
                        // Counted in its lane while it waited (see `send_request`).
                        self.shared.published.lane_in_transit(req.lane(), -1);
                        self.core.handle_app(now, *req);
                    }
                    Wake::Request(None) => {
                        // Every handle is gone: nothing more will be asked.
                        tracing::debug!("all client handles dropped");
                        break;
                    }
                    Wake::SaveReplies => self.save_replies(),
                }
                if !same_topology(self.core.topology(), self.topology.current().as_ref()) {
                    self.core.set_topology(now, self.topology.current());
                }
            }
            self.shutdown().await;
        }
    }

    async fn shutdown(&mut self) {
        self.stats().set_state(GatewayState::Closed);
        // What is journalled is written before the next run can open it.
        if let Some(mut j) = self.core.take_journal() {
            let _ = tokio::task::spawn_blocking(move || j.close()).await;
        }
        // The reply state as it is now, after any write under way.
        if self.replies.is_some() {
            let bytes = replies::encode_now(&mut self.core);
            if let Some(r) = self.replies.take() {
                let _ = tokio::task::spawn_blocking(move || {
                    let deadline = Instant::now() + Duration::from_secs(5);
                    while r.writing.load(Ordering::Acquire) && Instant::now() < deadline {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    replies::save(&r.path, &bytes);
                })
                .await;
            }
        }
        if let Some(r) = self.reconnect.take() {
            r.abort();
        }
        if let Some(conn) = self.conn.take() {
            drop(conn.tx);
            let _ = tokio::time::timeout(Duration::from_secs(2), conn.task).await;
        }
        // Hand what is left to the subscriber if it has room.
        if let Some(sub) = self.subscriber.take() {
            while let Some(ev) = self.core.poll_event() {
                if sub.try_send(ev).is_err() {
                    break;
                }
            }
            let _ = sub.try_send(ClientEvent::GatewayStatus(GatewayState::Closed));
        }
    }

    /// Write the reply state if it changed and no write is under way, on
    /// a blocking thread (the task does not wait for the disk).
    fn save_replies(&mut self) {
        let Some(r) = &self.replies else {
            return;
        };
        if !self.core.replies_changed() || r.writing.load(Ordering::Acquire) {
            return;
        }
        let bytes = replies::encode_now(&mut self.core);
        r.writing.store(true, Ordering::Release);
        let (path, writing) = (r.path.clone(), r.writing.clone());
        tokio::task::spawn_blocking(move || {
            replies::save(&path, &bytes);
            writing.store(false, Ordering::Release);
        });
    }

    // ------------------------------------------------------------- gateway

    pub(crate) fn install_session(&mut self, session: Session) {
        self.generation = self.generation.wrapping_add(1);
        let Session {
            ws,
            protocol,
            bandwidth,
            early,
            rtt,
            ..
        } = session;
        let conn = spawn_connection(
            ws,
            self.shared_key.clone(),
            protocol,
            self.generation,
            self.gw_tx.clone(),
            &self.gateway,
            self.cancel.child_token(),
        );
        if let Some(old) = self.conn.replace(conn) {
            old.task.abort();
        }
        self.stats().gateway_rtt_us.store(
            u64::try_from(rtt.as_micros()).unwrap_or(u64::MAX).max(1),
            Ordering::Relaxed,
        );
        let now = Instant::now();
        self.core.handle_connected(now, protocol, bandwidth);
        for plain in early {
            self.core.handle_gateway_push(now, plain);
        }
    }

    fn start_reconnect(&mut self) {
        if self.reconnect.is_some() || self.cancel.is_cancelled() {
            return;
        }
        let listener = self.listener.clone();
        let fallback = self.fallback.clone();
        let identity = self.identity.clone();
        let key = self.shared_key.clone();
        let shared = self.shared.clone();
        let gw = self.gateway.clone();
        let cancel = self.cancel.clone();
        self.reconnect = Some(tokio::spawn(async move {
            let mut backoff = gw.reconnect_initial_backoff;
            let mut attempt = 0u32;
            loop {
                attempt = attempt.saturating_add(1);
                tracing::info!(attempt, "attempting gateway reconnection");
                let r = tokio::select! {
                    _ = cancel.cancelled() => return Err(ClientError::Shutdown),
                    r = authenticate(&listener, fallback.as_deref(), &identity, &key, &shared.clock, &gw) => r,
                };
                match r {
                    Ok(s) => {
                        tracing::info!(attempt, "managed to reconnect");
                        return Ok(s);
                    }
                    Err(e) => tracing::warn!(attempt, error = %e, "reconnection attempt failed"),
                }
                tokio::select! {
                    _ = cancel.cancelled() => return Err(ClientError::Shutdown),
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = backoff.saturating_mul(2).min(gw.reconnect_max_backoff);
            }
        }.in_current_span()));
    }

    fn on_gateway(&mut self, generation: u64, ev: GwEvent) {
        if generation != self.generation {
            return;
        }
        let now = Instant::now();
        match ev {
            GwEvent::Pushed(plain) => self.core.handle_gateway_push(now, plain),
            GwEvent::Response(r) => self.core.handle_gateway_response(now, r),
            GwEvent::Rtt(rtt) => self.stats().gateway_rtt_us.store(
                u64::try_from(rtt.as_micros()).unwrap_or(u64::MAX).max(1),
                Ordering::Relaxed,
            ),
            GwEvent::Closed(reason) => {
                tracing::warn!(%reason, "gateway connection lost");
                if let Some(c) = self.conn.take() {
                    c.task.abort();
                }
                self.core.handle_disconnected(now);
                self.start_reconnect();
            }
        }
    }
}
