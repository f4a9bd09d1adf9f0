//! The dispatcher: one task that takes every message the exit's client
//! receives and acts on it (spec §6.2), one at a time.
//!
//! It owns the per-connection state that Sends touch: each connection's
//! reordering buffer ([`OrderedReceiver`]), the channel to its task and the
//! count of bytes waiting in it. Connections themselves run in their own
//! tasks ([`crate::connection`]), which tell the dispatcher when they end.
//!
//! Bounds on what clients can make it hold: at most
//! [`ExitConfig::max_connections`] connections, each with at most
//! [`ExitConfig::max_buffered_bytes`] out of order and as much again
//! waiting for its target; Sends for connections not yet opened (the
//! mixnet may deliver a Send before its Connect) for at most
//! [`EARLY_CONNECTIONS`] ids and [`EARLY_BYTES`] bytes, for
//! [`EARLY_MAX_AGE`]; and the ids of the last [`RECENTLY_CLOSED`] closed
//! connections, whose late Sends are dropped.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nymd_mixnet::{ClientEvent, ClientHandle, ErrorKind, Lane, OutgoingMessage, ReceivedMessage};
use nymd_proto::socks5::ordered::{OrderedReceiver, ReceiveLimits};
use nymd_proto::socks5::query::{QueryRequest, QueryResponse};
use nymd_proto::socks5::{
    ConnectRequest, ConnectionId, ControlRequest, ControlResponse, ProviderRequest,
    ProviderResponse, SocketData, Socks5Request, Socks5Response, Version, Versions,
};
use nymd_proto::SenderTag;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::ExitConfig;
use crate::connection::{self, ConnStart, ReturnPath};
use crate::limiter::LogLimiter;
use crate::stats::Counters;

/// Connections not yet opened whose Sends are kept.
pub const EARLY_CONNECTIONS: usize = 64;
/// Bytes of Sends kept for connections not yet opened, over all of them.
pub const EARLY_BYTES: usize = 4 << 20;
/// How long Sends wait for their Connect.
pub const EARLY_MAX_AGE: Duration = Duration::from_secs(60);
/// Closed connection ids remembered, so their late Sends are dropped
/// instead of waiting for a Connect.
pub const RECENTLY_CLOSED: usize = 4096;
/// How often old early Sends are dropped.
const PRUNE_EVERY: Duration = Duration::from_secs(10);
/// The binary name in a BinaryInfo answer.
const BINARY_NAME: &str = "nymd-exit";

/// What the dispatcher and the connection tasks share.
#[derive(Debug)]
pub(crate) struct Ctx {
    pub client: Arc<ClientHandle>,
    pub config: ExitConfig,
    pub counters: Arc<Counters>,
    /// The exit's token: fired at shutdown.
    pub cancel: CancellationToken,
    pub tracker: TaskTracker,
    /// Refused and failed connections (info).
    pub refusal_log: LogLimiter,
    /// Messages that cannot be used (warn).
    pub malformed_log: LogLimiter,
    /// Connections whose answers cannot reach their client (info).
    pub unanswerable_log: LogLimiter,
}

/// A connection the dispatcher knows (from its Connect to its task's end).
#[derive(Debug)]
struct Slot {
    /// The Connect's `host:port`, for logs.
    remote: String,
    receiver: OrderedReceiver,
    to_task: mpsc::UnboundedSender<nymd_proto::socks5::ordered::Delivery>,
    queued: Arc<AtomicUsize>,
    stop: CancellationToken,
    /// Cut off: further Sends are dropped.
    aborted: bool,
    /// The client's close has been passed on.
    closed: bool,
}

/// Sends that came before their Connect.
#[derive(Debug)]
struct Early {
    since: Instant,
    receiver: OrderedReceiver,
}

/// The dispatcher's state.
#[derive(Debug)]
pub(crate) struct Dispatcher {
    ctx: Arc<Ctx>,
    conns: HashMap<ConnectionId, Slot>,
    early: HashMap<ConnectionId, Early>,
    closed: HashSet<ConnectionId>,
    closed_order: VecDeque<ConnectionId>,
    ended_tx: mpsc::UnboundedSender<ConnectionId>,
    ended_rx: mpsc::UnboundedReceiver<ConnectionId>,
}

impl Dispatcher {
    pub fn new(ctx: Arc<Ctx>) -> Self {
        let (ended_tx, ended_rx) = mpsc::unbounded_channel();
        Self {
            ctx,
            conns: HashMap::new(),
            early: HashMap::new(),
            closed: HashSet::new(),
            closed_order: VecDeque::new(),
            ended_tx,
            ended_rx,
        }
    }

    fn limits(&self) -> ReceiveLimits {
        ReceiveLimits {
            max_bytes: self.ctx.config.max_buffered_bytes,
            ..ReceiveLimits::default()
        }
    }

    /// Take the client's events until the exit stops or the client ends.
    pub async fn run(mut self) {
        let mut events = self.ctx.client.subscribe();
        let mut prune = tokio::time::interval(PRUNE_EVERY);
        prune.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let cancel = self.ctx.cancel.clone();
        loop {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                Some(id) = self.ended_rx.recv() => self.on_ended(id),
                event = events.recv() => match event {
                    Some(e) => self.on_event(e).await,
                    None => {
                        if !cancel.is_cancelled() {
                            tracing::warn!("the exit's mixnet client stopped; the network requester stops");
                        }
                        break;
                    }
                },
                _ = prune.tick() => self.prune_early(),
            }
        }
        // Connection tasks see the exit's token (their tokens are its
        // children) and end.
        for slot in self.conns.values() {
            slot.stop.cancel();
        }
    }

    async fn on_event(&mut self, event: ClientEvent) {
        match event {
            ClientEvent::Received(m) => self.on_message(m).await,
            ClientEvent::Error {
                kind,
                message,
                lane: Some(Lane::Connection(conn_id)),
            } => {
                let lost = matches!(
                    kind,
                    ErrorKind::NoReplySurbs
                        | ErrorKind::RetransmissionsExhausted
                        | ErrorKind::RecipientGatewayUnknown
                );
                match self.conns.get(&conn_id) {
                    Some(slot) if lost && !slot.aborted => {
                        // The client cannot be told (that is the
                        // failure): it notices the silence. Say here why.
                        Counters::add(&self.ctx.counters.unanswerable, 1);
                        if let Some(skipped) = self.ctx.unanswerable_log.check() {
                            tracing::info!(
                                conn_id,
                                remote = ?slot.remote,
                                ?kind,
                                skipped,
                                "closing a connection whose answers cannot reach its client: {message}"
                            );
                        }
                        self.abort(conn_id, "its answers cannot reach the client");
                    }
                    _ => {
                        tracing::debug!(conn_id, ?kind, "send failed on a connection: {message}");
                    }
                }
            }
            ClientEvent::Error { kind, message, .. } => {
                tracing::debug!(?kind, "send failed: {message}");
            }
            ClientEvent::GatewayStatus(state) => {
                tracing::debug!(?state, "gateway connection");
            }
        }
    }

    fn malformed(&self, what: std::fmt::Arguments<'_>) {
        Counters::add(&self.ctx.counters.malformed, 1);
        if let Some(skipped) = self.ctx.malformed_log.check() {
            tracing::warn!(skipped, "ignoring a message: {what}");
        }
    }

    async fn on_message(&mut self, m: ReceivedMessage) {
        let request = match ProviderRequest::decode(&m.data) {
            Ok(r) => r,
            Err(e) => {
                self.malformed(format_args!("{e} ({} bytes)", m.data.len()));
                return;
            }
        };
        match request {
            ProviderRequest::Control { interface, request } => {
                self.on_control(interface, request, m.sender_tag).await;
            }
            ProviderRequest::Socks5 { versions, request } => match request {
                Socks5Request::Connect(c) => self.on_connect(versions, c, m.sender_tag).await,
                Socks5Request::Send(d) => self.on_send(d),
                Socks5Request::Query(q) => self.on_query(versions, q, m.sender_tag).await,
            },
        }
    }

    // ------------------------------------------------------------ connect

    async fn on_connect(
        &mut self,
        versions: Versions,
        c: ConnectRequest,
        sender_tag: Option<SenderTag>,
    ) {
        let conn_id = c.conn_id;
        // An explicit return address takes precedence over a sender tag.
        let path = match (c.return_address, sender_tag) {
            (Some(r), _) => ReturnPath::Address(r),
            (None, Some(t)) => ReturnPath::Tag(t),
            (None, None) => {
                self.malformed(format_args!(
                    "Connect {conn_id} to {:?} cannot be answered: it has neither a return address nor reply SURBs",
                    c.remote
                ));
                return;
            }
        };
        if self.conns.contains_key(&conn_id) {
            tracing::debug!(conn_id, "a second Connect for an open connection; ignored");
            return;
        }
        if self.conns.len() >= self.ctx.config.max_connections {
            Counters::add(&self.ctx.counters.failed, 1);
            if let Some(skipped) = self.ctx.refusal_log.check() {
                tracing::info!(
                    conn_id,
                    remote = ?c.remote,
                    limit = self.ctx.config.max_connections,
                    skipped,
                    "connection failed: too many connections"
                );
            }
            self.early.remove(&conn_id);
            self.remember_closed(conn_id);
            let close = nymd_proto::socks5::ordered::OrderedSender::new(conn_id).close();
            self.answer(
                path,
                versions,
                Lane::Connection(conn_id),
                Socks5Response::NetworkData(close),
            )
            .await;
            return;
        }
        if self.closed.remove(&conn_id) {
            self.closed_order.retain(|id| *id != conn_id);
        }
        let receiver = match self.early.remove(&conn_id) {
            Some(e) => e.receiver,
            None => OrderedReceiver::new(self.limits()),
        };
        let (to_task, from_client) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let stop = self.ctx.cancel.child_token();
        self.conns.insert(
            conn_id,
            Slot {
                remote: c.remote.clone(),
                receiver,
                to_task,
                queued: queued.clone(),
                stop: stop.clone(),
                aborted: false,
                closed: false,
            },
        );
        let start = ConnStart {
            conn_id,
            remote: c.remote,
            versions,
            path,
            stop,
            from_client,
            queued,
            ended: self.ended_tx.clone(),
        };
        self.ctx
            .tracker
            .spawn(connection::run(self.ctx.clone(), start));
        // Sends that came first.
        self.flush(conn_id);
    }

    fn on_ended(&mut self, conn_id: ConnectionId) {
        self.conns.remove(&conn_id);
        self.remember_closed(conn_id);
    }

    fn remember_closed(&mut self, conn_id: ConnectionId) {
        if self.closed.insert(conn_id) {
            self.closed_order.push_back(conn_id);
            while self.closed_order.len() > RECENTLY_CLOSED {
                if let Some(old) = self.closed_order.pop_front() {
                    self.closed.remove(&old);
                }
            }
        }
    }

    /// Cut a connection off: its task sends the client a close and ends.
    fn abort(&mut self, conn_id: ConnectionId, why: &str) {
        if let Some(slot) = self.conns.get_mut(&conn_id) {
            if !slot.aborted {
                tracing::debug!(conn_id, "closing the connection: {why}");
                slot.aborted = true;
                slot.stop.cancel();
            }
        }
    }

    // --------------------------------------------------------------- send

    fn on_send(&mut self, d: SocketData) {
        let conn_id = d.conn_id;
        if let Some(slot) = self.conns.get_mut(&conn_id) {
            if slot.aborted || slot.closed {
                return;
            }
            if let Err(e) = slot.receiver.push_data(d) {
                self.malformed(format_args!("connection {conn_id}: {e}"));
                self.abort(conn_id, "the client broke the sequence bounds");
                return;
            }
            self.flush(conn_id);
            return;
        }
        if self.closed.contains(&conn_id) {
            tracing::trace!(conn_id, "Send for a closed connection; dropped");
            return;
        }
        self.keep_early(d);
    }

    /// Pass a connection's contiguous bytes to its task.
    fn flush(&mut self, conn_id: ConnectionId) {
        let limit = self.ctx.config.max_buffered_bytes;
        let Some(slot) = self.conns.get_mut(&conn_id) else {
            return;
        };
        let mut over = false;
        while let Some(delivery) = slot.receiver.read() {
            let n = delivery.data.len();
            let waiting = slot.queued.fetch_add(n, Ordering::Relaxed) + n;
            let closed = delivery.closed;
            // The task may have ended (refused, failed): nothing to do.
            let _ = slot.to_task.send(delivery);
            if closed {
                slot.closed = true;
                break;
            }
            if waiting > limit {
                over = true;
                break;
            }
        }
        if over {
            self.malformed(format_args!(
                "connection {conn_id}: more than {limit} bytes wait for the target"
            ));
            self.abort(conn_id, "the client sends faster than the target reads");
        }
    }

    fn keep_early(&mut self, d: SocketData) {
        let conn_id = d.conn_id;
        let held: usize = self
            .early
            .values()
            .map(|e| e.receiver.waiting_bytes())
            .sum();
        if held + d.data.len() > EARLY_BYTES
            || (!self.early.contains_key(&conn_id) && self.early.len() >= EARLY_CONNECTIONS)
        {
            self.malformed(format_args!(
                "Send for unknown connection {conn_id}: too many Sends wait for their Connect"
            ));
            return;
        }
        let limits = self.limits();
        let early = self.early.entry(conn_id).or_insert_with(|| Early {
            since: Instant::now(),
            receiver: OrderedReceiver::new(limits),
        });
        if let Err(e) = early.receiver.push_data(d) {
            self.malformed(format_args!("Send for unknown connection {conn_id}: {e}"));
        }
    }

    fn prune_early(&mut self) {
        let now = Instant::now();
        let before = self.early.len();
        self.early
            .retain(|_, e| now.saturating_duration_since(e.since) < EARLY_MAX_AGE);
        let dropped = before - self.early.len();
        if dropped > 0 {
            tracing::debug!(dropped, "Sends that never got their Connect dropped");
        }
    }

    // ----------------------------------------------------- control, query

    async fn on_control(
        &mut self,
        interface: Version,
        request: ControlRequest,
        sender_tag: Option<SenderTag>,
    ) {
        let Some(tag) = sender_tag else {
            self.malformed(format_args!(
                "control request {request:?} without reply SURBs"
            ));
            return;
        };
        let response = match request {
            ControlRequest::Health => ControlResponse::Health,
            ControlRequest::SupportedRequestVersions => {
                ControlResponse::supported_versions(Versions::CURRENT)
            }
            ControlRequest::BinaryInfo => ControlResponse::BinaryInfo {
                binary_name: BINARY_NAME.into(),
                build_information: [(
                    "build_version".to_owned(),
                    env!("CARGO_PKG_VERSION").to_owned(),
                )]
                .into_iter()
                .collect(),
            },
        };
        let encoded = ProviderResponse::Control {
            interface,
            response,
        }
        .encode();
        match encoded {
            Ok(bytes) => {
                Counters::add(&self.ctx.counters.control_answered, 1);
                self.send(OutgoingMessage::Reply {
                    sender_tag: tag,
                    data: bytes,
                    lane: Lane::General,
                })
                .await;
            }
            Err(e) => tracing::debug!("cannot encode a control answer: {e}"),
        }
    }

    async fn on_query(
        &mut self,
        versions: Versions,
        query: QueryRequest,
        sender_tag: Option<SenderTag>,
    ) {
        let Some(tag) = sender_tag else {
            self.malformed(format_args!("query {query:?} without reply SURBs"));
            return;
        };
        let config = &self.ctx.config;
        let answer = match query {
            QueryRequest::OpenProxy => QueryResponse::OpenProxy(false),
            QueryRequest::Description => QueryResponse::Description(config.description.clone()),
            QueryRequest::ExitPolicy => QueryResponse::ExitPolicy {
                enabled: true,
                upstream: String::new(),
                policy: Some(config.policy.to_query_rules()),
            },
        };
        Counters::add(&self.ctx.counters.control_answered, 1);
        self.answer(
            ReturnPath::Tag(tag),
            versions,
            Lane::General,
            Socks5Response::Query(answer),
        )
        .await;
    }

    /// Encode a socks5 answer in `versions` and send it.
    async fn answer(
        &self,
        path: ReturnPath,
        versions: Versions,
        lane: Lane,
        response: Socks5Response,
    ) {
        match (ProviderResponse::Socks5 { versions, response }).encode() {
            Ok(bytes) => self.send(path.message(bytes, lane)).await,
            Err(e) => tracing::debug!("cannot encode an answer in the request's versions: {e}"),
        }
    }

    async fn send(&self, message: OutgoingMessage) {
        let sent = tokio::select! {
            _ = self.ctx.cancel.cancelled() => return,
            r = self.ctx.client.send(message) => r,
        };
        if let Err(e) = sent {
            tracing::debug!("cannot send an answer: {e}");
        }
    }
}
