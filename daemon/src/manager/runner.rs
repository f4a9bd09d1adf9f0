//! The actor of one running identity: binds its app port, starts (and
//! restarts with backoff) its mixnet client, and serves its apps' requests.
//! It sees the manager only through a [`RunnerContext`].

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nymd_fsutil::journal::Journal;
use nymd_mixnet::{
    ClientEvent, ClientHandle, GatewayRegistration, GatewayState, Lane, OutgoingMessage, Shared,
    TopologyHandle,
};
use nymd_proto::appapi::{ApiError, ClientRequest, ServerResponse};
use nymd_proto::Recipient;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{
    client_config, to_client_keys, RunState, StatusHandle, FIRST_BACKOFF, INBOX_DIR, MAX_BACKOFF,
    OUTBOX_DIR, RECEIVED_SAVE_TICKS, REPLIES_FILE,
};
use crate::appserver::access::ConnectionLimit;
use crate::appserver::{self, AppCommand, AppHub, AppServerConfig, Delivery};
use crate::health::{self, Ping};
use crate::socks::{self, SocksHub, SocksServerConfig};
use crate::store::{IdentityState as PersistedState, IdentityStore, StoredRegistration};

/// What a runner needs from the manager, and nothing more.
pub(super) struct RunnerContext {
    /// The identity store (the runner reads its own identity's files and
    /// writes its state, registration and received set ids).
    pub(super) store: IdentityStore,
    /// Shared mixnet resources (HTTP client, topology).
    pub(super) shared: Shared,
    /// Every task the runner spawns is tracked here.
    pub(super) tracker: TaskTracker,
    /// The daemon-wide limit of app connections.
    pub(super) app_limit: Arc<ConnectionLimit>,
    /// Its own row of the status table.
    pub(super) status: StatusHandle,
}

/// The actor of one running identity.
pub(super) struct Runner {
    pub(super) ctx: RunnerContext,
    pub(super) id: String,
    pub(super) stop: CancellationToken,
    /// App and control-plane requests, and watchdog pings.
    pub(super) inbound: Inbound,
    /// Given to the app server so app sessions and the control plane share
    /// one queue.
    pub(super) commands_tx: mpsc::Sender<Box<AppCommand>>,
    pub(super) hub: Arc<AppHub>,
    /// Lanes of the apps' sends (see [`AppLanes`]).
    pub(super) lanes: AppLanes,
    /// Send failures go to the app that sent (`report_send_failures`).
    pub(super) report_send_failures: bool,
    /// The SOCKS5 side: its connections get the network requester's
    /// answers before the apps see anything.
    pub(super) socks: Arc<SocksHub>,
}

/// The listeners a runner keeps across client restarts.
#[derive(Default)]
pub(super) struct Listeners {
    app: Option<CancellationToken>,
    socks: Option<CancellationToken>,
}

/// A request that waits while the identity is not connected is answered
/// with an error after this long.
pub(super) const NOT_READY_WAIT: Duration = Duration::from_secs(30);
/// Requests kept while the identity is not connected; more are answered
/// with an error at once.
const NOT_READY_QUEUE: usize = 256;
/// The longest pause between attempts to start the client while app
/// requests wait for it (the backoff grows to [`super::MAX_BACKOFF`]
/// otherwise).
const RETRY_WHILE_REQUESTS_WAIT: Duration = Duration::from_secs(2);
/// How often lanes of apps that left are forgotten.
const LANE_PRUNE_TICKS: u32 = 20;

/// What reaches a runner from outside: requests and watchdog pings, plus
/// the requests that wait for the identity to connect.
pub(super) struct Inbound {
    commands: mpsc::Receiver<Box<AppCommand>>,
    /// Answered from every wait of the loop (see [`crate::health`]).
    pings: mpsc::Receiver<Ping>,
    waiting: VecDeque<(Instant, Box<AppCommand>)>,
}

impl Inbound {
    /// A placeholder while the real one is borrowed elsewhere.
    fn detached() -> Self {
        Self::new(mpsc::channel(1).1, health::channel().1)
    }

    pub(super) fn new(
        commands: mpsc::Receiver<Box<AppCommand>>,
        pings: mpsc::Receiver<Ping>,
    ) -> Self {
        Self {
            commands,
            pings,
            waiting: VecDeque::new(),
        }
    }

    /// Await `fut` while the identity is not connected: pings are answered,
    /// requests are kept (bounded, in order) for when it is, and those that
    /// waited [`NOT_READY_WAIT`] are answered with an error.
    async fn while_not_ready<F: Future>(&mut self, why: &str, fut: F) -> F::Output {
        tokio::pin!(fut);
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                out = &mut fut => return out,
                Some(p) = self.pings.recv() => { let _ = p.send(()); }
                Some(cmd) = self.commands.recv() => self.hold(why, cmd),
                _ = tick.tick() => self.expire(why),
            }
        }
    }

    /// Wait before the next attempt to start the client: until `backoff`
    /// after `failed_at`, but at most [`RETRY_WHILE_REQUESTS_WAIT`] while
    /// requests wait (an app that asked should not sit out a long backoff
    /// after the gateway came back). Serves like
    /// [`Inbound::while_not_ready`]. `true` when `stop` fired.
    async fn retry_pause(
        &mut self,
        why: &str,
        stop: &CancellationToken,
        failed_at: Instant,
        backoff: Duration,
    ) -> bool {
        let until = failed_at + backoff;
        let hurried = failed_at + backoff.min(RETRY_WHILE_REQUESTS_WAIT);
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            let wake = if self.waiting.is_empty() {
                until
            } else {
                hurried
            };
            tokio::select! {
                _ = stop.cancelled() => return true,
                _ = tokio::time::sleep_until(wake.into()) => return false,
                Some(p) = self.pings.recv() => { let _ = p.send(()); }
                Some(cmd) = self.commands.recv() => self.hold(why, cmd),
                _ = tick.tick() => self.expire(why),
            }
        }
    }

    /// Keep `cmd` for when the identity is connected (bounded).
    fn hold(&mut self, why: &str, cmd: Box<AppCommand>) {
        if self.waiting.len() >= NOT_READY_QUEUE {
            let _ = cmd.respond.send(Some(ServerResponse::Error(ApiError::other(format!(
                "the identity is {why} and {NOT_READY_QUEUE} requests already wait for it; try again later"
            )))));
        } else {
            self.waiting.push_back((Instant::now(), cmd));
        }
    }

    /// Answer the requests that waited too long with an error.
    fn expire(&mut self, why: &str) {
        while let Some((since, _)) = self.waiting.front() {
            if since.elapsed() < NOT_READY_WAIT {
                break;
            }
            if let Some((_, cmd)) = self.waiting.pop_front() {
                let _ = cmd
                    .respond
                    .send(Some(ServerResponse::Error(ApiError::other(format!(
                        "the identity is {why}: the request waited {} s and was not carried out",
                        NOT_READY_WAIT.as_secs()
                    )))));
            }
        }
    }
}

/// The lanes (connection ids) of the apps' sends. nym-client's lanes are
/// per app connection; here several apps share an identity, so each app
/// session's lanes, and its requests without a connection id, get lanes of
/// their own in the mixnet client: one app's `closedConnection` or queue
/// length never touches another's, and a send failure (reported on its
/// lane) goes back to the app that sent.
#[derive(Debug, Default)]
pub(super) struct AppLanes {
    next: u64,
    by_app: HashMap<(u64, Option<u64>), u64>,
    by_lane: HashMap<u64, (u64, Option<u64>)>,
}

impl AppLanes {
    /// The client lane of `session`'s connection id (`None`: its requests
    /// without one), made on first use.
    fn lane(&mut self, session: u64, conn: Option<u64>) -> u64 {
        if let Some(l) = self.by_app.get(&(session, conn)) {
            return *l;
        }
        self.next += 1;
        let l = self.next;
        // SOCKS connections number their lanes from 2^63.
        debug_assert!(!SocksHub::is_socks_lane(l));
        self.by_app.insert((session, conn), l);
        self.by_lane.insert(l, (session, conn));
        l
    }

    fn existing(&self, session: u64, conn: u64) -> Option<u64> {
        self.by_app.get(&(session, Some(conn))).copied()
    }

    fn owner(&self, lane: u64) -> Option<(u64, Option<u64>)> {
        self.by_lane.get(&lane).copied()
    }

    fn forget(&mut self, lane: u64) {
        if let Some(k) = self.by_lane.remove(&lane) {
            self.by_app.remove(&k);
        }
    }

    /// Forget the lanes `drop` says are done with.
    fn prune(&mut self, mut drop: impl FnMut(u64, u64) -> bool) {
        let gone: Vec<u64> = self
            .by_lane
            .iter()
            .filter(|(lane, (session, _))| drop(*session, **lane))
            .map(|(lane, _)| *lane)
            .collect();
        for l in gone {
            self.forget(l);
        }
    }

    fn len(&self) -> usize {
        self.by_lane.len()
    }
}

enum Outcome {
    Stopped,
    Failed(String),
}

impl Runner {
    /// The task of the identity. Not an `async fn`: that would keep a
    /// second copy of `self` (its argument) in the future, next to the one
    /// the body uses.
    #[allow(clippy::manual_async_fn)]
    pub(super) fn run(mut self) -> impl Future<Output = ()> {
        async move {
            self.open_inbox().await;
            self.run_loop().await;
            // A gateway session left open by this identity's registration is
            // for the run that follows it; this one ends without having used it
            // (stopped or restarted before it started its client), so the next
            // start connects anew instead of taking a session whose gateway may
            // be gone.
            if let Ok(stored) = self.ctx.store.load(&self.id) {
                self.ctx
                    .shared
                    .discard_warm(&stored.keys.identity.public_bytes());
            }
            // What waits for an app is on disk before the identity counts as
            // stopped (a restart in this process reopens the same journal).
            if let Some(mut j) = self.hub.close_inbox() {
                let _ = tokio::task::spawn_blocking(move || j.close()).await;
            }
        }
    }

    /// Messages received while no app is connected are journalled in the
    /// identity's `inbox/` (unless `persist_inbox = false`); those kept
    /// from before a restart wait for the next app.
    async fn open_inbox(&self) {
        let persist = self
            .ctx
            .store
            .load(&self.id)
            .map(|s| s.config.traffic.persist_inbox.unwrap_or(true))
            .unwrap_or(true);
        if !persist {
            return;
        }
        let dir = self.ctx.store.dir(&self.id).join(INBOX_DIR);
        let counter = self.hub.inbox_counter();
        let opened = tokio::task::spawn_blocking(move || {
            Journal::open(&dir, appserver::INBOX_HEADER, counter)
        })
        .await;
        match opened {
            Ok(Ok((journal, restored))) => self.hub.attach_inbox(journal, restored),
            Ok(Err(e)) => tracing::warn!(
                identity = %self.id,
                "messages waiting for an app are kept in memory only: {e}"
            ),
            Err(e) => tracing::warn!(identity = %self.id, "inbox task failed: {e}"),
        }
    }

    async fn run_loop(&mut self) {
        let mut backoff = FIRST_BACKOFF;
        let mut listeners = Listeners::default();
        loop {
            let outcome = self.run_once(&mut listeners).await;
            match outcome {
                Outcome::Stopped => break,
                Outcome::Failed(reason) => {
                    tracing::warn!(identity = %self.id, "identity failed, retrying in {backoff:?} (within {RETRY_WHILE_REQUESTS_WAIT:?} while app requests wait): {reason}");
                    self.ctx.status.set_state(RunState::Failed { reason });
                    // Requests wait (bounded) for the next attempt. Boxed
                    // like the phases of a run (see `run_once`).
                    let stopped = Box::pin(self.inbound.retry_pause(
                        "not connected to the mixnet (retrying)",
                        &self.stop,
                        Instant::now(),
                        backoff,
                    ))
                    .await;
                    if stopped {
                        break;
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
        for t in [listeners.app.take(), listeners.socks.take()]
            .into_iter()
            .flatten()
        {
            t.cancel();
        }
    }

    /// One run of the client: connect, serve until it fails or `stop`
    /// fires, shut it down.
    ///
    /// Each phase is boxed: the future of a runner is allocated whole when
    /// its task is spawned and is as large as its largest state, and
    /// connecting (the topology, the gateway handshake) takes tens of KiB
    /// of future state that an identity serving its apps does not need.
    /// Boxed, the runner's task stays small and an idle identity holds only
    /// the serve loop's state.
    async fn run_once(&mut self, listeners: &mut Listeners) -> Outcome {
        let (handle, topology, last_auth) = match Box::pin(self.connect(listeners)).await {
            Ok(c) => c,
            Err(outcome) => return outcome,
        };
        self.ctx.status.set_state(RunState::Running);
        self.socks.set_client(Some(handle.sender()));
        let outcome = Box::pin(self.serve(&handle, topology, last_auth)).await;
        // Open SOCKS connections end with the client.
        self.socks.set_client(None);
        self.persist_auth(&handle, last_auth);
        self.persist_received(&handle, &mut 0);
        Box::pin(health::answering(
            &mut self.inbound.pings,
            handle.shutdown(),
        ))
        .await;
        outcome
    }

    /// Bind the listeners (once) and start the mixnet client: its handle,
    /// the topology, and the persisted auth timestamp; the outcome of the
    /// run if it ends before the client is up.
    async fn connect(
        &mut self,
        listeners: &mut Listeners,
    ) -> Result<(ClientHandle, Option<TopologyHandle>, u64), Outcome> {
        let stored = match self.ctx.store.load(&self.id) {
            Ok(s) => s,
            Err(e) => return Err(Outcome::Failed(e.to_string())),
        };
        // The file may have been edited since the manager checked it.
        if let Some(why) = super::remote_apps_refusal(&stored.config, &self.ctx.store) {
            return Err(Outcome::Failed(why));
        }
        if let Some(why) = super::socks5_refusal(&stored.config, &self.ctx.store) {
            return Err(Outcome::Failed(why));
        }
        self.report_send_failures = stored.config.websocket.report_send_failures;
        let address = match super::address_of(&stored) {
            Ok(a) => a,
            Err(e) => return Err(Outcome::Failed(e.to_string())),
        };
        // Bind the app port first: a port conflict is reported early and
        // connected apps survive client restarts.
        if listeners.app.is_none() {
            let addr = SocketAddr::new(stored.config.websocket.host, stored.config.websocket.port);
            let listener = match TcpListener::bind(addr).await {
                Ok(l) => l,
                Err(e) => return Err(Outcome::Failed(format!("cannot listen on {addr}: {e}"))),
            };
            let token = self.stop.child_token();
            self.ctx.tracker.spawn(appserver::serve(
                listener,
                AppServerConfig {
                    websocket: stored.config.websocket.clone(),
                    address,
                    identity: self.id.clone(),
                },
                self.ctx.app_limit.clone(),
                self.hub.clone(),
                self.commands_tx.clone(),
                token.clone(),
                self.ctx.tracker.clone(),
            ));
            listeners.app = Some(token);
            tracing::info!(identity = %self.id, %addr, "websocket listening");
        }
        if let Some(s5) = stored.config.socks5.as_ref().filter(|s| s.serves()) {
            if listeners.socks.is_none() {
                let addr = SocketAddr::new(s5.host, s5.port);
                let listener = match TcpListener::bind(addr).await {
                    Ok(l) => l,
                    Err(e) => {
                        return Err(Outcome::Failed(format!(
                            "cannot listen on {addr} for SOCKS5: {e} (change port in [socks5])"
                        )))
                    }
                };
                let token = self.stop.child_token();
                let config = SocksServerConfig {
                    socks5: s5.clone(),
                    websocket: stored.config.websocket.clone(),
                    identity: self.id.clone(),
                };
                let hub = self.socks.clone();
                let tracker = self.ctx.tracker.clone();
                let t = token.clone();
                let id = self.id.clone();
                self.ctx.tracker.spawn(async move {
                    if let Err(e) = socks::serve(listener, config, hub, t, tracker).await {
                        tracing::error!(identity = %id, "{e}");
                    }
                });
                listeners.socks = Some(token);
                let mode = if s5.anonymous { "anonymous" } else { "plain" };
                tracing::info!(identity = %self.id, %addr, mode, "SOCKS5 listening");
            }
        } else if let Some(s5) = stored.config.socks5.as_ref().filter(|s| s.enabled) {
            tracing::warn!(identity = %self.id, port = s5.port, "SOCKS5 is enabled but has no provider, so its port is not served; set one with `nymctl socks5 {} provider ADDRESS` (or `auto`)", self.id);
        }
        self.ctx.status.set_state(RunState::Starting);
        let mut config = client_config(&stored.config.traffic);
        // Messages received before: their retransmissions are not delivered
        // again.
        config.completed_sets = self.ctx.store.load_received_sets(&self.id);
        // Messages not acknowledged when the last run ended are sent again.
        if stored.config.traffic.persist_outbox.unwrap_or(true) {
            config.outbox = Some(self.ctx.store.dir(&self.id).join(OUTBOX_DIR));
        }
        // Sender tags, reply keys and received reply SURBs: a restart keeps
        // anonymous conversations going.
        config.replies = Some(self.ctx.store.dir(&self.id).join(REPLIES_FILE));
        // The topology handle is held until the client has its own, so the
        // topology is fetched once. The fetch may take long (nym-api
        // unreachable): pings are answered and requests kept meanwhile.
        // The futures of the fetch and of the client's start are boxed: the
        // wrappers that serve requests meanwhile would hold them twice.
        let mut inbound = std::mem::replace(&mut self.inbound, Inbound::detached());
        let followed = inbound
            .while_not_ready("connecting to the mixnet", async {
                tokio::select! {
                    _ = self.stop.cancelled() => None,
                    r = Box::pin(self.follow_gateway_listener(stored.registration)) => Some(r),
                }
            })
            .await;
        self.inbound = inbound;
        let Some((registration, topology)) = followed else {
            return Err(Outcome::Stopped);
        };
        let reg = GatewayRegistration {
            gateway_id: registration.gateway_id,
            listener: registration.listener,
            fallback_listener: registration.fallback_listener,
            shared_key: registration.shared_key,
            last_auth_timestamp: stored.state.last_auth_timestamp,
        };
        let start = Box::pin(nymd_mixnet::start(
            &self.ctx.shared,
            to_client_keys(&stored.keys),
            reg,
            config,
            self.stop.child_token(),
        ));
        let stop = self.stop.clone();
        let started = self
            .inbound
            .while_not_ready("connecting to the mixnet", async {
                tokio::select! {
                    _ = stop.cancelled() => None,
                    h = start => Some(h),
                }
            })
            .await;
        match started {
            None => Err(Outcome::Stopped),
            Some(Ok(h)) => Ok((h, topology, stored.state.last_auth_timestamp)),
            Some(Err(e)) => Err(Outcome::Failed(format!(
                "cannot start the mixnet client: {e}"
            ))),
        }
    }

    /// If the registered gateway is in the current topology with another
    /// primary listener than stored (it moved, or a local mixnet came back
    /// on new ports), use and save the topology's listeners (the status
    /// shows the new one).
    async fn follow_gateway_listener(
        &self,
        mut reg: StoredRegistration,
    ) -> (StoredRegistration, Option<TopologyHandle>) {
        let Ok(handle) = self.ctx.shared.topology(None).await else {
            return (reg, None);
        };
        let Some(listeners) = handle.current().and_then(|t| {
            t.gateway_by_identity(&reg.gateway_id)
                .and_then(|g| g.ws_listeners(false))
        }) else {
            return (reg, Some(handle));
        };
        if listeners.primary == reg.listener {
            return (reg, Some(handle));
        }
        tracing::info!(identity = %self.id, old = %reg.listener, new = %listeners.primary, "the gateway's listener changed; using the topology's");
        reg.listener = listeners.primary;
        reg.fallback_listener = listeners.fallback;
        if let Err(e) = self.ctx.store.save_registration(&self.id, &reg) {
            tracing::warn!(identity = %self.id, "cannot save the gateway's new listener: {e}");
        }
        self.ctx.status.set_registration(&reg);
        (reg, Some(handle))
    }

    fn persist_auth(&self, handle: &ClientHandle, persisted: u64) -> u64 {
        let last = handle.last_auth_timestamp();
        if last > persisted {
            let state = PersistedState {
                last_auth_timestamp: last,
            };
            if let Err(e) = self.ctx.store.save_state(&self.id, &state) {
                tracing::warn!(identity = %self.id, "cannot save state: {e}");
                return persisted;
            }
            return last;
        }
        persisted
    }

    /// Save the set ids of received messages if more arrived since the
    /// `saved` count of completions.
    fn persist_received(&self, handle: &ClientHandle, saved: &mut u64) {
        let now = handle.completions();
        if now == *saved {
            return;
        }
        match self
            .ctx
            .store
            .save_received_sets(&self.id, &handle.completed_sets())
        {
            Ok(()) => *saved = now,
            Err(e) => tracing::warn!(identity = %self.id, "cannot save state: {e}"),
        }
    }

    async fn serve(
        &mut self,
        handle: &ClientHandle,
        topology: Option<TopologyHandle>,
        mut persisted: u64,
    ) -> Outcome {
        let mut events = handle.subscribe();
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut saved_received = 0u64;
        let mut ticks = 0u32;
        // What waited while the identity connected, in order (unless its
        // app gave up on it).
        while let Some((_, cmd)) = self.inbound.waiting.pop_front() {
            if !cmd.respond.is_closed() {
                self.on_command(handle, topology.as_ref(), cmd).await;
            }
        }
        // Since when the SOCKS connections' buffers have kept the runner
        // from taking messages.
        let mut socks_full_since: Option<tokio::time::Instant> = None;
        let mut intake = true;
        self.socks.set_intake(true);
        loop {
            // Messages are taken from the client only while the hub and
            // the SOCKS connections' buffers have room: otherwise they stay
            // with the client, which stops reading its gateway (the gateway
            // keeps them).
            let room = self.hub.has_room();
            let socks_room = self.socks.has_room();
            // SOCKS connections do not hold the requester's silence
            // against it while nothing is taken.
            if (room && socks_room) != intake {
                intake = room && socks_room;
                self.socks.set_intake(intake);
            }
            if socks_room {
                socks_full_since = None;
            } else {
                socks_full_since.get_or_insert_with(tokio::time::Instant::now);
            }
            tokio::select! {
                _ = self.stop.cancelled() => return Outcome::Stopped,
                ev = events.recv(), if room && socks_room => match ev {
                    Some(ev) => self.on_client_event(ev),
                    None => return Outcome::Failed("the mixnet client stopped".into()),
                },
                _ = self.hub.room(), if !room => {}
                _ = self.socks.room(), if !socks_room => {}
                _ = socks::sleep_until_some(socks_full_since.map(|t| t + socks::FULL_GRACE)) => {
                    // A program that does not read holds the identity up:
                    // its connection goes (once per grace period).
                    self.socks.relieve();
                    socks_full_since = Some(tokio::time::Instant::now());
                }
                Some(p) = self.inbound.pings.recv() => { let _ = p.send(()); }
                Some(cmd) = self.inbound.commands.recv() => {
                    self.on_command(handle, topology.as_ref(), cmd).await;
                }
                _ = tick.tick() => {
                    if handle.is_finished() {
                        return Outcome::Failed("the mixnet client stopped".into());
                    }
                    persisted = self.persist_auth(handle, persisted);
                    ticks = ticks.wrapping_add(1);
                    if ticks.is_multiple_of(RECEIVED_SAVE_TICKS) {
                        self.persist_received(handle, &mut saved_received);
                    }
                    if ticks.is_multiple_of(LANE_PRUNE_TICKS) {
                        // Lanes of apps that left, once their queue is empty.
                        let hub = &self.hub;
                        self.lanes.prune(|session, lane| {
                            !hub.is_connected(session) && handle.lane_queue_length(lane) == 0
                        });
                    }
                    self.ctx.status.set_stats(handle.stats());
                }
            }
        }
    }

    fn on_client_event(&mut self, ev: ClientEvent) {
        match ev {
            ClientEvent::Received(m) => {
                // The network requester's answers to this identity's SOCKS
                // connections go to them; everything else to the apps.
                if let Some(data) = self.socks.route(m.data) {
                    self.hub.deliver(Delivery {
                        data,
                        sender_tag: m.sender_tag,
                    });
                }
            }
            ClientEvent::Error {
                message,
                lane: Some(Lane::Connection(l)),
                ..
            } if SocksHub::is_socks_lane(l) => {
                if !self.socks.lane_error(l, message) {
                    tracing::debug!(identity = %self.id, "a message of a closed SOCKS connection could not be sent");
                }
            }
            ClientEvent::Error {
                kind,
                message,
                lane,
            } => {
                let owner = match lane {
                    Some(Lane::Connection(l)) => self.lanes.owner(l),
                    _ => None,
                };
                // The message may name a recipient: addresses only at debug.
                tracing::debug!(identity = %self.id, ?kind, "{message}");
                match owner {
                    Some((session, _)) if self.report_send_failures && session != 0 => {
                        if self.hub.error_to(session, ApiError::other(message)) {
                            tracing::info!(identity = %self.id, ?kind, session, "a message could not be sent; the app that sent it was told why");
                        } else {
                            tracing::info!(identity = %self.id, ?kind, session, "a message could not be sent; the app that sent it is gone");
                        }
                    }
                    _ => {
                        tracing::warn!(identity = %self.id, ?kind, "a message could not be sent");
                    }
                }
            }
            ClientEvent::GatewayStatus(state) => {
                let s = match state {
                    GatewayState::Connected => RunState::Running,
                    GatewayState::Reconnecting => RunState::Reconnecting,
                    GatewayState::Closed => RunState::Reconnecting,
                };
                self.socks
                    .set_gateway_up(matches!(state, GatewayState::Connected));
                self.ctx.status.set_state(s);
            }
        }
    }

    /// One app or control-plane request to a connected identity. A send may
    /// wait for room in the client's queue; pings are answered meanwhile.
    async fn on_command(
        &mut self,
        handle: &ClientHandle,
        topology: Option<&TopologyHandle>,
        cmd: Box<AppCommand>,
    ) {
        let session = cmd.session;
        let queue_reply = |lanes: &AppLanes, c: Option<u64>| {
            c.map(|conn| ServerResponse::LaneQueueLength {
                lane: conn,
                queue_length: lanes
                    .existing(session, conn)
                    .map(|l| handle.lane_queue_length(l) as u64)
                    .unwrap_or(0),
            })
        };
        // A recipient whose gateway cannot receive is refused before it
        // takes a lane or a place in the queue.
        if let ClientRequest::Send { recipient, .. }
        | ClientRequest::SendAnonymous { recipient, .. } = &cmd.request
        {
            if let Err(e) = check_recipient(topology, recipient) {
                let _ = cmd.respond.send(Some(ServerResponse::Error(e)));
                return;
            }
        }
        let lane_of =
            |lanes: &mut AppLanes, conn: Option<u64>| Lane::Connection(lanes.lane(session, conn));
        let (msg, conn) = match cmd.request {
            ClientRequest::SelfAddress => {
                let _ = cmd
                    .respond
                    .send(Some(ServerResponse::SelfAddress(handle.address())));
                return;
            }
            ClientRequest::ClosedConnection(conn) => {
                if let Some(l) = self.lanes.existing(session, conn) {
                    handle.close_lane(l);
                    self.lanes.forget(l);
                }
                let _ = cmd.respond.send(None);
                return;
            }
            ClientRequest::GetLaneQueueLength(conn) => {
                let _ = cmd.respond.send(queue_reply(&self.lanes, Some(conn)));
                return;
            }
            ClientRequest::Send {
                recipient,
                message,
                connection_id,
            } => (
                OutgoingMessage::Plain {
                    recipient,
                    data: message,
                    lane: lane_of(&mut self.lanes, connection_id),
                },
                connection_id,
            ),
            ClientRequest::SendAnonymous {
                recipient,
                message,
                reply_surbs,
                connection_id,
            } => (
                OutgoingMessage::Anonymous {
                    recipient,
                    data: message,
                    reply_surbs,
                    lane: lane_of(&mut self.lanes, connection_id),
                },
                connection_id,
            ),
            ClientRequest::Reply {
                sender_tag,
                message,
                connection_id,
            } => {
                let lane = lane_of(&mut self.lanes, connection_id);
                (
                    OutgoingMessage::Reply {
                        sender_tag,
                        data: message,
                        lane,
                    },
                    connection_id,
                )
            }
        };
        // Boxed: waiting for room in the client's queue takes some KiB of
        // future state, which the serve loop would otherwise hold (inline)
        // for as long as the identity runs.
        let sent = Box::pin(health::answering(&mut self.inbound.pings, handle.send(msg)));
        let resp = match sent.await {
            Ok(()) => queue_reply(&self.lanes, conn),
            Err(e) => Some(ServerResponse::Error(ApiError::other(format!(
                "could not queue the message: {e}"
            )))),
        };
        let _ = cmd.respond.send(resp);
        if self.lanes.len() > MAX_LANES {
            // Many connection ids in use: forget the empty ones of apps that
            // left (a later error on them is only logged).
            let hub = &self.hub;
            self.lanes
                .prune(|s, lane| !hub.is_connected(s) && handle.lane_queue_length(lane) == 0);
        }
    }
}

/// Lanes remembered before the ones of apps that left are pruned early.
const MAX_LANES: usize = 4096;

/// Whether `recipient`'s gateway can receive: present in the topology and a
/// gateway, not a mixnode. Without a topology the client decides later.
pub(crate) fn check_recipient(
    topology: Option<&TopologyHandle>,
    recipient: &Recipient,
) -> Result<(), ApiError> {
    let Some(t) = topology.and_then(TopologyHandle::current) else {
        return Ok(());
    };
    match t.egress_by_identity(recipient.gateway().as_bytes(), false) {
        Ok(_) => Ok(()),
        Err(e) => Err(ApiError::other(format!(
            "the recipient's gateway {} cannot receive messages: {e}; the message was not sent",
            bs58::encode(recipient.gateway().as_bytes()).into_string()
        ))),
    }
}
