//! nymd-mixnet: the tokio driver of one Nym client identity, around the
//! sans-IO core `nymd-proto`.
//!
//! - [`Shared`]: one per daemon; the HTTP client and the topology caches
//!   (one per source, refreshed every 5 minutes, shared by identities).
//! - [`register`]: pick a gateway, run the registration handshake, return
//!   the [`GatewayRegistration`] the daemon persists.
//! - [`start`]: authenticate with the stored shared key, claim bandwidth and
//!   run the identity's client task; returns a [`ClientHandle`] to send,
//!   subscribe to [`ClientEvent`]s, read [`ClientStats`] and shut down.
//!
//! Each identity is one task that owns all its state (lanes, unacked
//! fragments and their timers, reassembly, reply SURBs) and reacts to a
//! closed set of events; a second task per connection moves websocket
//! frames. Every queue is bounded: `send` waits when too many packets are
//! queued, and when received messages are not consumed the client stops
//! reading from its gateway instead of dropping them.
//!
//! No byte layout lives here: packets, frames, handshakes and messages come
//! from `nymd-proto`.

mod config;
mod driver;
mod error;
mod gateway;
mod outbox;
mod replies;
mod shared;
mod topology;
mod types;

use std::sync::Arc;
use std::time::{Duration, Instant};

use nymd_proto::keys::VerifyingKey;
use nymd_proto::Recipient;
use rand::seq::SliceRandom;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use config::{
    ClientConfig, CoreConfig, GatewayConfig, ReplySurbConfig, DEFAULT_MAX_RETRANSMISSIONS,
};
pub use error::ClientError;
pub use nymd_client::{Account, MemoryBudget, DEFAULT_MEMORY_BUDGET};
pub use outbox::OutboxError;
pub use shared::{Shared, SharedConfig};
pub use topology::{
    TopologyHandle, TopologySource, Url, MAINNET_NYM_API, MIN_FORCED_REFRESH, ROUTE_GATEWAYS,
    ROUTE_KEY_ROTATION, ROUTE_MIXNODES, ROUTE_REWARDED_SET,
};
pub use types::{
    ClientEvent, ClientKeys, ClientStats, ErrorKind, GatewayRegistration, GatewaySelection,
    GatewayState, Lane, MemoryUse, OutgoingMessage, ReceivedMessage,
};

use crate::driver::{Command, Driver, DriverParts};
use crate::gateway::{AuthClock, WarmConnection};
use crate::types::{bs58_str, HandleShared};

/// Candidates measured by latency-based selection.
const LATENCY_CANDIDATES: usize = 16;

/// Register `keys` with a gateway chosen from the default topology source.
/// See [`register_with`].
pub async fn register(
    shared: &Shared,
    keys: &ClientKeys,
    gateway: GatewaySelection,
) -> Result<GatewayRegistration, ClientError> {
    register_with(shared, None, keys, gateway, &GatewayConfig::default()).await
}

/// Register with a gateway: topology → pick a gateway → websocket →
/// `supportedProtocol` → handshake → `register` → free bandwidth. The
/// connection is kept open for a while so that [`start`] can take it over
/// (messages the gateway pushes right after registration are not lost).
pub async fn register_with(
    shared: &Shared,
    source: Option<&TopologySource>,
    keys: &ClientKeys,
    selection: GatewaySelection,
    config: &GatewayConfig,
) -> Result<GatewayRegistration, ClientError> {
    let topology = shared
        .topology(source)
        .await?
        .current()
        .ok_or_else(|| ClientError::Topology("no usable topology".into()))?;
    let (gateway, primary, fallback) = match selection {
        GatewaySelection::Given(id) => {
            let node = topology
                .gateway_by_identity(&id)
                .ok_or_else(|| ClientError::GatewayNotInTopology(bs58_str(&id)))?;
            let l = node
                .ws_listeners(false)
                .ok_or_else(|| ClientError::NoListener(bs58_str(&id)))?;
            (node.identity_key, l.primary, l.fallback)
        }
        GatewaySelection::UniformRandom => {
            let c = topology::gateway_candidates(&topology);
            c.choose(&mut rand::thread_rng())
                .cloned()
                .ok_or(ClientError::NoGateway)?
        }
        GatewaySelection::LatencyBased => {
            let mut c = topology::gateway_candidates(&topology);
            c.shuffle(&mut rand::thread_rng());
            c.truncate(LATENCY_CANDIDATES);
            let timeout = config.response_timeout;
            let measured = futures_util::future::join_all(
                c.iter()
                    .map(|(_, url, _)| gateway::measure_latency(url, timeout)),
            )
            .await;
            c.into_iter()
                .zip(measured)
                .filter_map(|(cand, rtt)| rtt.map(|r| (r, cand)))
                .min_by_key(|(r, _)| *r)
                .map(|(_, cand)| cand)
                .ok_or(ClientError::NoGateway)?
        }
    };
    let gateway_id = gateway.to_bytes();
    tracing::info!(gateway = %bs58_str(&gateway_id), listener = %primary, "registering with gateway");
    let (shared_key, session) = gateway::register(
        &primary,
        fallback.as_deref(),
        &keys.identity,
        gateway,
        config,
    )
    .await?;
    shared.put_warm(
        keys.identity.public_bytes(),
        WarmConnection {
            session,
            created: Instant::now(),
            gateway: gateway_id,
        },
    );
    Ok(GatewayRegistration {
        gateway_id,
        listener: primary,
        fallback_listener: fallback,
        shared_key,
        last_auth_timestamp: 0,
    })
}

/// Start the client of one identity: take over the connection left by
/// [`register`] or connect and `authenticateV2`, claim bandwidth if low, and
/// run the client task until `cancel` fires or [`ClientHandle::shutdown`].
pub async fn start(
    shared: &Shared,
    keys: ClientKeys,
    reg: GatewayRegistration,
    config: ClientConfig,
    cancel: CancellationToken,
) -> Result<ClientHandle, ClientError> {
    let topology = shared.topology(config.topology.as_ref()).await?;
    let gateway = VerifyingKey::from_bytes(&reg.gateway_id).map_err(|_| {
        ClientError::Protocol("the registered gateway identity is not a valid key".into())
    })?;
    if let Some(t) = topology.current() {
        if t.gateway_by_identity(&reg.gateway_id).is_none() {
            // It may be back by the next attempt: have the topology
            // fetched again rather than at its next interval.
            topology.refresh_soon();
            return Err(ClientError::GatewayNotInTopology(bs58_str(&reg.gateway_id)));
        }
    }
    let handle_shared = Arc::new(HandleShared {
        clock: AuthClock::new(reg.last_auth_timestamp),
        ..HandleShared::default()
    });
    // Messages not acknowledged when the previous run ended.
    let (outbox, restored) = match config.outbox.clone() {
        Some(dir) => {
            let counter = handle_shared.published.stats.outbox_messages.clone();
            let (o, r) = tokio::task::spawn_blocking(move || outbox::Outbox::open(&dir, counter))
                .await
                .map_err(|e| ClientError::Protocol(format!("outbox task: {e}")))??;
            (Some(o), r)
        }
        None => (None, Vec::new()),
    };
    // The reply state the previous run saved, less what expired or rotated.
    let saved_replies = match config.replies.clone() {
        Some(path) => {
            let max_key_age = config.reply_surbs.max_key_age;
            let rotation = topology.current().map(|t| t.key_rotation_id());
            let loaded = tokio::task::spawn_blocking(move || replies::load(&path))
                .await
                .map_err(|e| ClientError::Protocol(format!("reply state task: {e}")))?;
            loaded.map(|mut snap| {
                let now = nymd_client::snapshot::unix_ms(std::time::SystemTime::now());
                let dropped = snap.prune(now, max_key_age, rotation);
                let st = &handle_shared.published.stats;
                nymd_client::Stats::add(
                    &st.reply_keys_expired_on_load,
                    dropped.expired_keys as u64,
                );
                nymd_client::Stats::add(
                    &st.reply_surbs_rotated_on_load,
                    dropped.rotated_surbs as u64,
                );
                if dropped.rotated_surbs > 0 {
                    tracing::info!(
                        surbs = dropped.rotated_surbs,
                        "dropped saved reply SURBs of a key rotation that is gone"
                    );
                }
                snap
            })
        }
        None => None,
    };
    let own_id = keys.identity.public_bytes();
    let session = match shared.take_warm(&own_id) {
        Some(w) if w.gateway == reg.gateway_id => w.session,
        _ => {
            gateway::authenticate(
                &reg.listener,
                reg.fallback_listener.as_deref(),
                &keys.identity,
                &reg.shared_key,
                &handle_shared.clock,
                &config.gateway,
            )
            .await?
        }
    };
    let address = keys.address(gateway);
    // Requests travel boxed: an `OutgoingMessage` is 464 bytes (its
    // `Recipient` holds two decompressed ed25519 keys) and tokio allocates a
    // channel's first block of 32 slots when it makes the channel, so the
    // empty channel of every identity cost 15 KB; boxed, 256 bytes.
    let (req_tx, req_rx) = mpsc::channel(config.request_buffer.max(1));
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    let cancel = cancel.child_token();
    let mut outbox = outbox;
    let journalled_replies = outbox
        .as_mut()
        .map(outbox::Outbox::take_replies)
        .unwrap_or_default();
    let mut seed = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut seed);
    let now = Instant::now();
    let mut core = nymd_client::Client::new(nymd_client::ClientParams {
        keys: keys.clone(),
        own: address,
        config: config.core.clone(),
        budget: shared.memory_budget(),
        published: handle_shared.published.clone(),
        seed,
        journal: outbox.map(|o| Box::new(o) as Box<dyn nymd_client::Journal>),
        now,
    });
    core.set_topology(now, topology.current());
    core.restore(now, restored, saved_replies, journalled_replies);
    let mut driver = Driver::new(DriverParts {
        core,
        identity: keys.identity,
        listener: reg.listener.clone(),
        fallback: reg.fallback_listener.clone(),
        shared_key: reg.shared_key.clone(),
        gateway: config.gateway.clone(),
        topology,
        shared: handle_shared.clone(),
        requests: req_rx,
        commands: cmd_rx,
        cancel: cancel.clone(),
        replies: config.replies.clone(),
    });
    driver.install_session(session);
    // In the caller's span (nymd's `identity` span): the client's records
    // say which identity they are about.
    let task = tokio::spawn(tracing::Instrument::in_current_span(driver.run()));
    tracing::info!("client started");
    tracing::debug!(address = %address, "client address");
    Ok(ClientHandle {
        address,
        requests: req_tx,
        commands: cmd_tx,
        shared: handle_shared,
        cancel,
        task,
        event_buffer: config.event_buffer.max(1),
    })
}

/// Control of a running identity.
#[derive(Debug)]
pub struct ClientHandle {
    address: Recipient,
    requests: mpsc::Sender<Box<OutgoingMessage>>,
    commands: mpsc::UnboundedSender<Command>,
    shared: Arc<HandleShared>,
    cancel: CancellationToken,
    task: JoinHandle<()>,
    event_buffer: usize,
}

/// Put `req` in the client task's request queue. Until the task takes it
/// (the driver then lowers the count), it counts as one packet of its lane,
/// so `lane_queue_length` never reads 0 while it waits there.
async fn send_request(
    requests: &mpsc::Sender<Box<OutgoingMessage>>,
    shared: &HandleShared,
    req: OutgoingMessage,
) -> Result<(), ClientError> {
    /// Takes the count back unless the message reached the queue (also
    /// when the send is cancelled while it waits for room).
    struct InTransit<'a> {
        shared: &'a HandleShared,
        lane: Lane,
        queued: bool,
    }
    impl Drop for InTransit<'_> {
        fn drop(&mut self) {
            if !self.queued {
                self.shared.published.lane_in_transit(self.lane, -1);
            }
        }
    }
    let lane = req.lane();
    shared.published.lane_in_transit(lane, 1);
    let mut guard = InTransit {
        shared,
        lane,
        queued: false,
    };
    requests
        .send(Box::new(req))
        .await
        .map_err(|_| ClientError::Shutdown)?;
    guard.queued = true;
    Ok(())
}

/// What other tasks need of a running client to send on their own lanes:
/// queue messages, read and close lanes. Cheap to clone; once the client
/// has stopped, [`ClientSender::send`] fails with [`ClientError::Shutdown`].
#[derive(Debug, Clone)]
pub struct ClientSender {
    address: Recipient,
    requests: mpsc::Sender<Box<OutgoingMessage>>,
    commands: mpsc::UnboundedSender<Command>,
    shared: Arc<HandleShared>,
}

impl ClientSender {
    /// The identity's address.
    pub fn address(&self) -> Recipient {
        self.address
    }

    /// Queue a message. Waits while the client's queues are full.
    pub async fn send(&self, req: OutgoingMessage) -> Result<(), ClientError> {
        send_request(&self.requests, &self.shared, req).await
    }

    /// Packets queued on a connection lane.
    pub fn lane_queue_length(&self, conn: u64) -> usize {
        self.shared.published.lane_queue_length(conn)
    }

    /// Drop the packets still queued on a connection lane.
    pub fn close_lane(&self, conn: u64) {
        let _ = self.commands.send(Command::CloseLane(conn));
    }

    /// Whether the client has stopped taking messages.
    pub fn is_closed(&self) -> bool {
        self.requests.is_closed()
    }

    /// Messages handed to [`ClientSender::send`] (by any sender of this
    /// client) that the client has not taken yet: they are not counted in
    /// any lane until it does.
    pub fn queued_requests(&self) -> usize {
        self.requests
            .max_capacity()
            .saturating_sub(self.requests.capacity())
    }
}

impl ClientHandle {
    /// This identity's address.
    pub fn address(&self) -> Recipient {
        self.address
    }

    /// A handle for other tasks to send on their own lanes while this
    /// client runs.
    pub fn sender(&self) -> ClientSender {
        ClientSender {
            address: self.address,
            requests: self.requests.clone(),
            commands: self.commands.clone(),
            shared: self.shared.clone(),
        }
    }

    /// Queue a message. Waits while the client's queues are full.
    pub async fn send(&self, req: OutgoingMessage) -> Result<(), ClientError> {
        send_request(&self.requests, &self.shared, req).await
    }

    /// Packets queued on a connection lane, including replies waiting for
    /// reply SURBs.
    pub fn lane_queue_length(&self, conn: u64) -> usize {
        self.shared.published.lane_queue_length(conn)
    }

    /// Drop the packets still queued on a connection lane.
    pub fn close_lane(&self, conn: u64) {
        // Unbounded: one small command per closed app connection, taken at
        // the task's next turn; a send fails only once the task is gone.
        let _ = self.commands.send(Command::CloseLane(conn));
    }

    /// Receive this identity's events. There is one subscription at a
    /// time: a new call replaces the previous one (whose stream then ends).
    /// Events produced while nobody is subscribed, or while the subscriber
    /// is slow, are held (bounded; the client then stops reading from its
    /// gateway rather than dropping messages).
    pub fn subscribe(&self) -> mpsc::Receiver<ClientEvent> {
        let (tx, rx) = mpsc::channel(self.event_buffer);
        let _ = self.commands.send(Command::Subscribe(tx));
        rx
    }

    /// Counters.
    pub fn stats(&self) -> ClientStats {
        self.shared.published.stats.snapshot()
    }

    /// Set ids of the messages this identity received, oldest first
    /// (bounded): save them and pass them as
    /// [`ClientConfig::completed_sets`] to the next run, so that a
    /// retransmission of a message delivered before the restart is not
    /// delivered again.
    pub fn completed_sets(&self) -> Vec<i32> {
        self.shared.published.completed_sets()
    }

    /// Messages completed since the client started (changes when
    /// [`ClientHandle::completed_sets`] does).
    pub fn completions(&self) -> u64 {
        self.shared.published.completions()
    }

    /// The last `authenticateV2` timestamp used; persist it with the
    /// registration.
    pub fn last_auth_timestamp(&self) -> u64 {
        self.shared.clock.last()
    }

    /// Whether the client task has ended.
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Close the gateway connection and wait (at most 5 s) for the tasks.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        let mut task = self.task;
        if tokio::time::timeout(Duration::from_secs(5), &mut task)
            .await
            .is_err()
        {
            task.abort();
        }
    }
}
