//! The actor of one running identity: binds its app port, starts (and
//! restarts with backoff) its mixnet client, and serves its apps' requests.
//! It sees the manager only through a [`RunnerContext`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use nymd_fsutil::journal::Journal;
use nymd_mixnet::{
    ClientEvent, ClientHandle, GatewayRegistration, GatewayState, Lane, OutgoingMessage, Shared,
    TopologyHandle,
};
use nymd_proto::appapi::{ApiError, ClientRequest, ServerResponse};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{
    client_config, to_client_keys, RunState, StatusHandle, FIRST_BACKOFF, INBOX_DIR, MAX_BACKOFF,
    OUTBOX_DIR, RECEIVED_SAVE_TICKS,
};
use crate::appserver::{self, AppCommand, AppHub, AppServerConfig, Delivery};
use crate::health::{self, Ping};
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
    /// Its own row of the status table.
    pub(super) status: StatusHandle,
}

/// The actor of one running identity.
pub(super) struct Runner {
    pub(super) ctx: RunnerContext,
    pub(super) id: String,
    pub(super) stop: CancellationToken,
    pub(super) commands: mpsc::Receiver<AppCommand>,
    /// Answered from every wait of the loop (see [`crate::health`]).
    pub(super) pings: mpsc::Receiver<Ping>,
    /// Given to the app server so app sessions and the control plane share
    /// one queue.
    pub(super) commands_tx: mpsc::Sender<AppCommand>,
    pub(super) hub: Arc<AppHub>,
}

enum Outcome {
    Stopped,
    Failed(String),
}

impl Runner {
    pub(super) async fn run(mut self) {
        self.open_inbox().await;
        self.run_loop().await;
        // What waits for an app is on disk before the identity counts as
        // stopped (a restart in this process reopens the same journal).
        if let Some(mut j) = self.hub.close_inbox() {
            let _ = tokio::task::spawn_blocking(move || j.close()).await;
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
        let mut listener_task: Option<CancellationToken> = None;
        loop {
            let outcome = self.run_once(&mut listener_task).await;
            match outcome {
                Outcome::Stopped => break,
                Outcome::Failed(reason) => {
                    tracing::warn!(identity = %self.id, "identity failed, retrying in {backoff:?}: {reason}");
                    self.ctx.status.set_state(RunState::Failed { reason });
                    let wait = tokio::time::sleep(backoff);
                    tokio::pin!(wait);
                    // Keep answering apps while we wait.
                    loop {
                        tokio::select! {
                            _ = self.stop.cancelled() => {
                                if let Some(t) = listener_task.take() { t.cancel(); }
                                return;
                            }
                            _ = &mut wait => break,
                            Some(p) = self.pings.recv() => { let _ = p.send(()); }
                            Some(cmd) = self.commands.recv() => {
                                let _ = cmd.respond.send(Some(ServerResponse::Error(ApiError::other(
                                    "the identity is not connected to the mixnet right now; retrying",
                                ))));
                            }
                        }
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
        if let Some(t) = listener_task.take() {
            t.cancel();
        }
    }

    async fn run_once(&mut self, listener_task: &mut Option<CancellationToken>) -> Outcome {
        let stored = match self.ctx.store.load(&self.id) {
            Ok(s) => s,
            Err(e) => return Outcome::Failed(e.to_string()),
        };
        let address = match super::address_of(&stored) {
            Ok(a) => a,
            Err(e) => return Outcome::Failed(e.to_string()),
        };
        // Bind the app port first: a port conflict is reported early and
        // connected apps survive client restarts.
        if listener_task.is_none() {
            let addr = SocketAddr::new(stored.config.websocket.host, stored.config.websocket.port);
            let listener = match TcpListener::bind(addr).await {
                Ok(l) => l,
                Err(e) => return Outcome::Failed(format!("cannot listen on {addr}: {e}")),
            };
            let token = self.stop.child_token();
            self.ctx.tracker.spawn(appserver::serve(
                listener,
                AppServerConfig {
                    websocket: stored.config.websocket.clone(),
                    address,
                },
                self.hub.clone(),
                self.commands_tx.clone(),
                token.clone(),
                self.ctx.tracker.clone(),
            ));
            *listener_task = Some(token);
            tracing::info!(identity = %self.id, %addr, "websocket listening");
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
        // The topology handle is held until the client has its own, so the
        // topology is fetched once.
        // The topology may take long to fetch (nym-api unreachable): keep
        // answering pings meanwhile, from a receiver moved out of `self`.
        let mut pings = std::mem::replace(&mut self.pings, health::channel().1);
        let followed = health::answering(&mut pings, async {
            tokio::select! {
                _ = self.stop.cancelled() => None,
                r = self.follow_gateway_listener(stored.registration) => Some(r),
            }
        })
        .await;
        self.pings = pings;
        let Some((registration, _topology)) = followed else {
            return Outcome::Stopped;
        };
        let reg = GatewayRegistration {
            gateway_id: registration.gateway_id,
            listener: registration.listener,
            fallback_listener: registration.fallback_listener,
            shared_key: registration.shared_key,
            last_auth_timestamp: stored.state.last_auth_timestamp,
        };
        let start = nymd_mixnet::start(
            &self.ctx.shared,
            to_client_keys(&stored.keys),
            reg,
            config,
            self.stop.child_token(),
        );
        let stop = self.stop.clone();
        let start = health::answering(&mut self.pings, async {
            tokio::select! {
                _ = stop.cancelled() => None,
                h = start => Some(h),
            }
        });
        let handle = match start.await {
            None => return Outcome::Stopped,
            Some(h) => match h {
                Ok(h) => h,
                Err(e) => return Outcome::Failed(format!("cannot start the mixnet client: {e}")),
            },
        };
        self.ctx.status.set_state(RunState::Running);
        let outcome = self.serve(&handle, stored.state.last_auth_timestamp).await;
        self.persist_auth(&handle, stored.state.last_auth_timestamp);
        self.persist_received(&handle, &mut 0);
        health::answering(&mut self.pings, handle.shutdown()).await;
        outcome
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

    async fn serve(&mut self, handle: &ClientHandle, mut persisted: u64) -> Outcome {
        let mut events = handle.subscribe();
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut saved_received = 0u64;
        let mut ticks = 0u32;
        loop {
            tokio::select! {
                _ = self.stop.cancelled() => return Outcome::Stopped,
                ev = events.recv() => match ev {
                    Some(ev) => self.on_client_event(ev),
                    None => return Outcome::Failed("the mixnet client stopped".into()),
                },
                Some(p) = self.pings.recv() => { let _ = p.send(()); }
                Some(cmd) = self.commands.recv() => Self::on_command(handle, &mut self.pings, cmd).await,
                _ = tick.tick() => {
                    if handle.is_finished() {
                        return Outcome::Failed("the mixnet client stopped".into());
                    }
                    persisted = self.persist_auth(handle, persisted);
                    ticks = ticks.wrapping_add(1);
                    if ticks.is_multiple_of(RECEIVED_SAVE_TICKS) {
                        self.persist_received(handle, &mut saved_received);
                    }
                    let stats = handle.stats();
                    self.ctx.status.set_stats(stats);
                }
            }
        }
    }

    fn on_client_event(&self, ev: ClientEvent) {
        match ev {
            ClientEvent::Received(m) => self.hub.deliver(Delivery {
                data: m.data,
                sender_tag: m.sender_tag,
            }),
            ClientEvent::Error { kind, message, .. } => {
                // The message may name a recipient: addresses only at debug.
                tracing::warn!(identity = %self.id, ?kind, "a message could not be sent; its apps were told why");
                tracing::debug!(identity = %self.id, ?kind, "{message}");
                self.hub.broadcast_error(ApiError::other(message));
            }
            ClientEvent::GatewayStatus(state) => {
                let s = match state {
                    GatewayState::Connected => RunState::Running,
                    GatewayState::Reconnecting => RunState::Reconnecting,
                    GatewayState::Closed => RunState::Reconnecting,
                };
                self.ctx.status.set_state(s);
            }
        }
    }

    /// One app or control-plane request to a connected identity. A send may
    /// wait for room in the client's queue; pings are answered meanwhile.
    async fn on_command(handle: &ClientHandle, pings: &mut mpsc::Receiver<Ping>, cmd: AppCommand) {
        let lane_of = |c: Option<u64>| c.map(Lane::Connection).unwrap_or(Lane::General);
        let queue_reply = |c: Option<u64>| {
            c.map(|lane| ServerResponse::LaneQueueLength {
                lane,
                queue_length: handle.lane_queue_length(lane) as u64,
            })
        };
        let (msg, conn) = match cmd.request {
            ClientRequest::SelfAddress => {
                let _ = cmd
                    .respond
                    .send(Some(ServerResponse::SelfAddress(handle.address())));
                return;
            }
            ClientRequest::ClosedConnection(lane) => {
                handle.close_lane(lane);
                let _ = cmd.respond.send(None);
                return;
            }
            ClientRequest::GetLaneQueueLength(lane) => {
                let _ = cmd.respond.send(queue_reply(Some(lane)));
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
                    lane: lane_of(connection_id),
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
                    lane: lane_of(connection_id),
                },
                connection_id,
            ),
            ClientRequest::Reply {
                sender_tag,
                message,
                connection_id,
            } => (
                OutgoingMessage::Reply {
                    sender_tag,
                    data: message,
                    lane: lane_of(connection_id),
                },
                connection_id,
            ),
        };
        let resp = match health::answering(pings, handle.send(msg)).await {
            Ok(()) => queue_reply(conn),
            Err(e) => Some(ServerResponse::Error(ApiError::other(format!(
                "could not queue the message: {e}"
            )))),
        };
        let _ = cmd.respond.send(resp);
    }
}
