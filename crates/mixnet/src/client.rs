//! The client task of one identity: a single actor that owns all sending
//! and receiving state and reacts to a closed set of events (requests, gateway
//! frames, timers, control).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use nymd_proto::ack::{build_surb_ack, recognise_ack};
use nymd_proto::chunking::{
    Fragment, InsertOutcome, NymMessage, Reassembler, ReassemblyError, LINKED_HEADER_LEN,
};
use nymd_proto::cover::{build_loop_cover_marked, is_cover, LoopCover};
use nymd_proto::gateway::frames::seal_client_frame;
use nymd_proto::gateway::{
    bandwidth, forward_kind_for, uses_forward_sphinx_v2, ClientControlRequest, ServerResponse,
    TypedGatewayError,
};
use nymd_proto::keys::GatewaySharedKey;
use nymd_proto::mixpacket::MixPacket;
use nymd_proto::params::FragmentId;
use tracing::Instrument as _;

use crate::outbox::{Outbox, OutboxEntry, REPLY_BIT};
use crate::replies::{self, Snapshot};
use nymd_proto::payload::{
    classify_pushed, decrypt_message, prepare_fragment, reply_plaintext, PushedKind,
};
use nymd_proto::replies::{
    v2_reply_surb_len, RepliableContent, RepliableMessage, ReplyMessage, ReplySurb,
    DEFAULT_SURB_HOPS, MAX_SURBS_PER_LIST, V1_REPLY_SURB_LEN,
};
use nymd_proto::topology::route::to_sphinx_hops as hops;
use nymd_proto::topology::route::to_sphinx_route;
use nymd_proto::topology::{NymTopology, RouteError};
use nymd_proto::{Recipient, SenderTag, SphinxVersion};
use rand::rngs::StdRng;
use rand::Rng;
use rand_distr::{Distribution, Exp};
use tokio::sync::mpsc;
use tokio::sync::mpsc::OwnedPermit;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;
use tokio_util::time::{delay_queue, DelayQueue};

use crate::config::ClientConfig;
use crate::error::ClientError;
use crate::gateway::{authenticate, spawn_connection, Connection, GwEvent, Session};
use crate::memory::{Account, MemoryBudget};
use crate::surbs::{ReplyKeys, SenderTags};
use crate::topology::TopologyHandle;
use crate::types::{
    bs58_str, ClientEvent, ClientKeys, ErrorKind, GatewayState, HandleShared, Lane, MemoryUse,
    OutgoingMessage, ReceivedMessage, StatsCounters,
};
use crate::warnings::OutsideWarnings;

/// How often bookkeeping runs (reassembly timeouts, SURB requests, keys).
const HOUSEKEEPING: Duration = Duration::from_secs(1);
/// Packets sent per loop turn when the main Poisson stream is off.
const IMMEDIATE_BATCH: usize = 8;
/// Gateway events handled per loop turn before other work gets a chance.
const GATEWAY_BATCH: usize = 64;
/// Bytes accounted per stored reply SURB on top of its serialised length
/// (the struct, its vector and its place in the queue).
const SURB_OVERHEAD: usize = 96;
/// SURBs evicted at once from the fullest store (amortises finding it).
const SURB_EVICT_BATCH: usize = 16;
/// Bytes of an additional-SURBs answer besides its SURBs: message tag,
/// sender tag, content tag, list header, padding marker.
const ANSWER_OVERHEAD: usize = 1 + 16 + 1 + 4 + 1;

/// Bytes accounted for a stored reply SURB.
fn surb_cost(s: &ReplySurb) -> usize {
    s.serialized_len() + SURB_OVERHEAD
}

/// How a received message came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    /// Whole, in one fragment, through one of the reply SURBs we made for
    /// this tag's recipient.
    OurSurb(SenderTag),
    /// Any other way (forward path, or several fragments).
    Other,
}

/// Where a fragment goes.
#[derive(Debug)]
enum Dest {
    /// A regular packet to this recipient.
    Recipient(Box<Recipient>),
    /// A reply through a SURB from `tag`; the SURB is attached when one is
    /// reserved for this fragment.
    Reply {
        tag: SenderTag,
        surb: Option<ReplySurb>,
    },
}

/// A fragment that is queued or awaiting its ack.
#[derive(Debug)]
struct Pending {
    fragment: Vec<u8>,
    dest: Dest,
    lane: Lane,
    message: u64,
    /// Created by the client itself (SURB requests and answers): failures
    /// are logged, not reported to the app.
    internal: bool,
    retransmissions: u32,
    /// Its last transmission reached our gateway connection (only those
    /// count against `max_retransmissions`).
    reached_gateway: bool,
    timer: Option<delay_queue::Key>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum QueueLane {
    Retransmit,
    General,
    Conn(u64),
}

/// Sending queues: retransmissions, the general lane, and one lane per
/// connection id. The main stream picks a non-empty lane at random.
#[derive(Debug, Default)]
struct Lanes {
    retransmit: VecDeque<FragmentId>,
    general: VecDeque<FragmentId>,
    conns: HashMap<u64, VecDeque<FragmentId>>,
    total: usize,
    /// Reply fragments parked until a SURB is reserved for them (they are
    /// kept in the per-sender stores; counted here).
    waiting: usize,
    /// The most packets ever queued at once ([`Lanes::queued`]), kept at
    /// every push so that no peak between two looks is missed.
    peak: usize,
}

impl Lanes {
    /// Packets queued for sending: all lanes plus the waiting replies.
    fn queued(&self) -> usize {
        self.total + self.waiting
    }

    fn note_peak(&mut self) {
        self.peak = self.peak.max(self.queued());
    }

    /// One more reply fragment waits for a SURB.
    fn add_waiting(&mut self) {
        self.waiting += 1;
        self.note_peak();
    }

    /// `n` waiting reply fragments left the wait (sent on or dropped).
    fn remove_waiting(&mut self, n: usize) {
        self.waiting = self.waiting.saturating_sub(n);
    }

    fn push(&mut self, lane: QueueLane, id: FragmentId, front: bool) {
        let q = match lane {
            QueueLane::Retransmit => &mut self.retransmit,
            QueueLane::General => &mut self.general,
            QueueLane::Conn(c) => self.conns.entry(c).or_default(),
        };
        if front {
            q.push_front(id);
        } else {
            q.push_back(id);
        }
        self.total += 1;
        self.note_peak();
    }

    fn pop<R: Rng>(&mut self, rng: &mut R) -> Option<(QueueLane, FragmentId)> {
        let mut candidates: Vec<QueueLane> = Vec::with_capacity(2 + self.conns.len());
        if !self.retransmit.is_empty() {
            candidates.push(QueueLane::Retransmit);
        }
        if !self.general.is_empty() {
            candidates.push(QueueLane::General);
        }
        candidates.extend(
            self.conns
                .iter()
                .filter(|(_, q)| !q.is_empty())
                .map(|(c, _)| QueueLane::Conn(*c)),
        );
        if candidates.is_empty() {
            return None;
        }
        let lane = candidates[rng.gen_range(0..candidates.len())];
        let id = match lane {
            QueueLane::Retransmit => self.retransmit.pop_front(),
            QueueLane::General => self.general.pop_front(),
            QueueLane::Conn(c) => {
                let q = self.conns.get_mut(&c)?;
                let id = q.pop_front();
                if q.is_empty() {
                    self.conns.remove(&c);
                }
                id
            }
        }?;
        self.total = self.total.saturating_sub(1);
        Some((lane, id))
    }

    fn close(&mut self, conn: u64) -> Vec<FragmentId> {
        let ids: Vec<FragmentId> = self.conns.remove(&conn).map(Vec::from).unwrap_or_default();
        self.total = self.total.saturating_sub(ids.len());
        ids
    }
}

/// Reply SURBs received from one anonymous sender, and replies waiting for
/// SURBs.
#[derive(Debug)]
struct SurbStore {
    surbs: VecDeque<ReplySurb>,
    /// Fragment, its lane, and whether it counts on that lane.
    waiting: VecDeque<(FragmentId, Lane, bool)>,
    request_sent: Option<Instant>,
    request_attempts: u32,
    touched: Instant,
}

impl SurbStore {
    fn new(now: Instant) -> Self {
        Self {
            surbs: VecDeque::new(),
            waiting: VecDeque::new(),
            request_sent: None,
            request_attempts: 0,
            touched: now,
        }
    }
}

/// Everything the task's select loop can wake up for.
enum Wake {
    Shutdown,
    Control,
    Deliver(Result<OwnedPermit<ClientEvent>, mpsc::error::SendError<()>>),
    Request(Option<OutgoingMessage>),
    Gateway(Option<(u64, GwEvent)>),
    Reconnected(Result<Result<Session, ClientError>, tokio::task::JoinError>),
    AckTimeout(Option<FragmentId>),
    MainTick,
    CoverTick,
    Immediate,
    Housekeeping,
}

/// Parameters of the client task.
pub(crate) struct ActorParts {
    pub keys: ClientKeys,
    pub own: Recipient,
    pub listener: String,
    pub fallback: Option<String>,
    pub shared_key: GatewaySharedKey,
    pub config: ClientConfig,
    pub topology: TopologyHandle,
    pub shared: Arc<HandleShared>,
    pub requests: mpsc::Receiver<OutgoingMessage>,
    pub cancel: CancellationToken,
    pub outbox: Option<Outbox>,
    /// The file of the persisted reply state (see [`crate::replies`]).
    pub replies: Option<std::path::PathBuf>,
    /// The daemon's memory budget, shared by every identity.
    pub budget: Arc<MemoryBudget>,
}

/// Loop cover markers kept (about 55 cover packets a second leave at
/// Nym's defaults and come back within a second; older ones are opened the
/// usual way).
const COVER_MARKERS: usize = 256;

/// The ephemeral keys of our own loop cover packets still in flight. A
/// pushed message starting with one of them is our loop coming back: it is
/// counted and dropped without the Diffie-Hellman and decryption (a stock
/// client decrypts it only to find the cover content). Nothing on the wire
/// changes; anything else is opened as usual.
#[derive(Debug, Default)]
struct CoverMarkers {
    order: VecDeque<[u8; 32]>,
    set: HashSet<[u8; 32]>,
}

impl CoverMarkers {
    fn insert(&mut self, marker: [u8; 32]) {
        if self.order.len() >= COVER_MARKERS {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        if self.set.insert(marker) {
            self.order.push_back(marker);
        }
    }

    /// Whether `message` is one of our loops (forgetting its marker).
    fn take(&mut self, message: &[u8]) -> bool {
        let Some(head) = message.get(..32) else {
            return false;
        };
        let mut key = [0u8; 32];
        key.copy_from_slice(head);
        // Its entry in `order` stays until it ages out (removing it would
        // cost a scan; an absent key is harmless there).
        self.set.remove(&key)
    }
}

pub(crate) struct Actor {
    keys: ClientKeys,
    own: Recipient,
    own_gateway: [u8; 32],
    listener: String,
    fallback: Option<String>,
    shared_key: GatewaySharedKey,
    config: ClientConfig,
    topology: TopologyHandle,
    shared: Arc<HandleShared>,
    rng: StdRng,
    requests: mpsc::Receiver<OutgoingMessage>,
    cancel: CancellationToken,

    gw_tx: mpsc::Sender<(u64, GwEvent)>,
    gw_rx: mpsc::Receiver<(u64, GwEvent)>,
    conn: Option<Connection>,
    generation: u64,
    reconnect: Option<JoinHandle<Result<Session, ClientError>>>,
    claim_outstanding: bool,

    lanes: Lanes,
    pending: HashMap<FragmentId, Pending>,
    timers: DelayQueue<FragmentId>,
    next_message: u64,

    reassembler: Reassembler,
    /// Bytes the reassembler holds, against its bound and the budget.
    reassembly_bytes: Account,
    reply_keys: ReplyKeys,
    sender_tags: SenderTags,
    stores: HashMap<SenderTag, SurbStore>,
    /// Bytes of the SURBs in `stores`.
    surb_bytes: Account,

    events: VecDeque<ClientEvent>,
    /// Bytes of `events` (weights), against `received_buffer_bytes` and
    /// the budget.
    event_bytes: Account,
    /// Rate limit of warnings caused by what others send.
    warnings: OutsideWarnings,
    subscriber: Option<mpsc::Sender<ClientEvent>>,
    /// Markers of our loop cover in flight (see [`CoverMarkers`]).
    cover_markers: CoverMarkers,
    /// The persisted outbox, and for each message journalled there the
    /// number of its fragments not acknowledged yet.
    outbox: Option<Outbox>,
    journalled: HashMap<u64, usize>,
    /// The persisted reply state: rewritten on the housekeeping tick (at
    /// most once a second) when it changed.
    replies: Option<RepliesFile>,
}

/// Where the reply state is written, and whether it changed since.
#[derive(Debug)]
struct RepliesFile {
    path: std::path::PathBuf,
    dirty: bool,
    /// A write is under way (on a blocking thread).
    writing: Arc<std::sync::atomic::AtomicBool>,
}

fn exp_sample<R: Rng>(rng: &mut R, mean: Duration) -> Duration {
    let ns = mean.as_nanos() as f64;
    if ns <= 0.0 {
        return Duration::ZERO;
    }
    match Exp::new(1.0 / ns) {
        Ok(d) => Duration::from_nanos(d.sample(rng).round() as u64),
        Err(_) => mean,
    }
}

/// How far a Poisson stream may fall behind its schedule before it gives up
/// catching up (after a suspend or a long stall) and restarts from now.
const MAX_SCHEDULE_LAG: Duration = Duration::from_secs(1);

/// The next send time of a Poisson stream: `gap` after the previous
/// *scheduled* time, as nym-client does, so that timer granularity and the
/// time spent building packets do not lower the rate. A stream more than
/// [`MAX_SCHEDULE_LAG`] behind restarts from now instead of bursting.
fn next_deadline(previous: tokio::time::Instant, gap: Duration) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    let next = previous + gap;
    if next + MAX_SCHEDULE_LAG < now {
        now + gap
    } else {
        next
    }
}

async fn join_opt<T>(h: &mut Option<JoinHandle<T>>) -> Result<T, tokio::task::JoinError> {
    match h {
        Some(h) => h.await,
        None => std::future::pending().await,
    }
}

async fn reserve_opt(
    s: Option<mpsc::Sender<ClientEvent>>,
) -> Result<OwnedPermit<ClientEvent>, mpsc::error::SendError<()>> {
    match s {
        Some(s) => s.reserve_owned().await,
        None => std::future::pending().await,
    }
}

impl Actor {
    pub(crate) fn new(parts: ActorParts) -> Self {
        let (gw_tx, gw_rx) = mpsc::channel(256);
        let own_gateway = parts.own.gateway().to_bytes();
        let mut reassembler = Reassembler::new(parts.config.reassembly);
        let keep = parts.config.reassembly.recently_completed;
        let seeded = &parts.config.completed_sets;
        let seeded = &seeded[seeded.len().saturating_sub(keep)..];
        for &id in seeded {
            reassembler.remember_completed(id);
        }
        if let Ok(mut c) = parts.shared.completed.lock() {
            c.extend(seeded.iter().copied());
        }
        let budget = parts.budget;
        let account = |bound: usize| Account::new(budget.clone(), bound);
        let reassembly_bytes = account(parts.config.reassembly.max_buffered_bytes);
        let reply_keys = ReplyKeys::new(account(parts.config.reply_key_bytes));
        let surb_bytes = account(parts.config.surb_store_bytes);
        let event_bytes = account(parts.config.received_buffer_bytes);
        let warnings = OutsideWarnings::new(
            parts.config.warning_interval,
            parts.config.warnings_per_interval,
            Instant::now(),
        );
        let sender_tags = SenderTags::new(parts.config.reply_surbs.max_sender_tags);
        Self {
            keys: parts.keys,
            own: parts.own,
            own_gateway,
            listener: parts.listener,
            fallback: parts.fallback,
            shared_key: parts.shared_key,
            config: parts.config,
            topology: parts.topology,
            shared: parts.shared,
            rng: rand::SeedableRng::from_entropy(),
            requests: parts.requests,
            cancel: parts.cancel,
            gw_tx,
            gw_rx,
            conn: None,
            generation: 0,
            reconnect: None,
            claim_outstanding: false,
            lanes: Lanes::default(),
            pending: HashMap::new(),
            timers: DelayQueue::new(),
            next_message: 0,
            reassembler,
            reassembly_bytes,
            reply_keys,
            sender_tags,
            stores: HashMap::new(),
            surb_bytes,
            events: VecDeque::new(),
            event_bytes,
            warnings,
            subscriber: None,
            cover_markers: CoverMarkers::default(),
            outbox: parts.outbox,
            journalled: HashMap::new(),
            replies: parts.replies.map(|path| RepliesFile {
                path,
                dirty: false,
                writing: Arc::default(),
            }),
        }
    }

    /// Take back one message the outbox kept from a previous run: its
    /// fragments not already pending become pending on the general lane
    /// with `dest`, and their ids are returned for the caller to queue. A
    /// message with none left is marked done in the outbox.
    fn restore_message(
        &mut self,
        message: u64,
        fragments: Vec<(FragmentId, Vec<u8>)>,
        dest: impl Fn() -> Dest,
    ) -> Vec<FragmentId> {
        self.next_message = self
            .next_message
            .max((message & !REPLY_BIT).wrapping_add(1));
        let mut ids = Vec::with_capacity(fragments.len());
        for (id, fragment) in fragments {
            if self.pending.contains_key(&id) {
                continue;
            }
            self.pending.insert(
                id,
                Pending {
                    fragment,
                    dest: dest(),
                    lane: Lane::General,
                    message,
                    internal: false,
                    retransmissions: 0,
                    reached_gateway: false,
                    timer: None,
                },
            );
            ids.push(id);
        }
        if !ids.is_empty() {
            self.journalled.insert(message, ids.len());
        } else if let Some(o) = &self.outbox {
            o.done(message);
        }
        ids
    }

    /// Queue again the messages the outbox kept from a previous run (on the
    /// general lane: the app connections they came from are gone).
    pub(crate) fn restore(&mut self, entries: Vec<OutboxEntry>) {
        for e in entries {
            let recipient = Box::new(e.recipient);
            let ids = self.restore_message(e.message, e.fragments, || {
                Dest::Recipient(recipient.clone())
            });
            for id in ids {
                self.lanes.push(QueueLane::General, id, false);
            }
        }
    }

    /// Queue again the `reply` messages the outbox kept from a previous run
    /// (on the general lane), after [`Actor::restore_replies`]: they wait
    /// for SURBs of their sender tag like any reply.
    pub(crate) fn restore_journalled_replies(&mut self) {
        let Some(entries) = self.outbox.as_mut().map(Outbox::take_replies) else {
            return;
        };
        let mut tags = Vec::new();
        for e in entries {
            let tag = e.tag;
            let ids =
                self.restore_message(e.message, e.fragments, || Dest::Reply { tag, surb: None });
            if ids.is_empty() {
                continue;
            }
            for id in ids {
                self.push_waiting(tag, id, Lane::General, false, true);
            }
            if !tags.contains(&tag) {
                tags.push(tag);
            }
        }
        for tag in tags {
            self.pump_replies(tag);
        }
    }

    /// Take back the reply state saved by a previous run (already pruned of
    /// expired keys and rotated SURBs): sender tags, reply keys, and the
    /// SURBs received per tag, within the stores' bounds.
    pub(crate) fn restore_replies(&mut self, snap: Snapshot) {
        let now = Instant::now();
        let burst = self.config.reply_surbs.answer_burst;
        let (tags, keys, surbs) = (
            snap.tags.len(),
            snap.keys.len(),
            snap.stores.iter().map(|(_, s)| s.len()).sum::<usize>(),
        );
        for (recipient, tag) in snap.tags {
            self.sender_tags.restore(recipient, tag, now, burst);
        }
        for k in snap.keys {
            let at = now.checked_sub(k.age).unwrap_or(now);
            self.reply_keys.insert(k.digest, k.key, k.tag, at);
        }
        for (tag, list) in snap.stores {
            self.store_surbs(tag, list);
        }
        if tags + keys + surbs > 0 {
            tracing::info!(
                sender_tags = tags,
                reply_keys = keys,
                reply_surbs = surbs,
                "restored the reply state of the previous run"
            );
        }
        self.mark_replies();
    }

    /// The reply state changed (written on the next housekeeping tick).
    fn mark_replies(&mut self) {
        if let Some(r) = &mut self.replies {
            r.dirty = true;
        }
    }

    fn replies_snapshot(&self) -> Snapshot {
        Snapshot {
            saved_unix_ms: replies::unix_ms(std::time::SystemTime::now()),
            rotation_id: self.topology.current().map_or(0, |t| t.key_rotation_id()),
            tags: self.sender_tags.entries(),
            keys: self.reply_keys.entries(Instant::now()),
            stores: self
                .stores
                .iter()
                .filter(|(_, s)| !s.surbs.is_empty())
                .map(|(t, s)| (*t, s.surbs.iter().cloned().collect()))
                .collect(),
        }
    }

    /// Write the reply state if it changed and no write is under way, on
    /// a blocking thread (the task does not wait for the disk).
    fn save_replies(&mut self) {
        let Some(r) = &self.replies else {
            return;
        };
        if !r.dirty || r.writing.load(std::sync::atomic::Ordering::Acquire) {
            return;
        }
        let bytes = replies::encode(&self.replies_snapshot());
        let Some(r) = &mut self.replies else {
            return;
        };
        r.dirty = false;
        r.writing.store(true, std::sync::atomic::Ordering::Release);
        let (path, writing) = (r.path.clone(), r.writing.clone());
        tokio::task::spawn_blocking(move || {
            replies::save(&path, &bytes);
            writing.store(false, std::sync::atomic::Ordering::Release);
        });
    }

    /// One fragment of `message` was acknowledged (or will never be sent).
    fn fragment_done(&mut self, message: u64) {
        if let Some(left) = self.journalled.get_mut(&message) {
            *left = left.saturating_sub(1);
            if *left == 0 {
                self.message_done(message);
            }
        }
    }

    /// `message` needs no more sending: acknowledged, abandoned or dropped.
    fn message_done(&mut self, message: u64) {
        if self.journalled.remove(&message).is_some() {
            if let Some(o) = &self.outbox {
                o.done(message);
            }
        }
    }

    /// Connected, with room in the socket's queue.
    fn can_send(&self) -> bool {
        self.conn.as_ref().is_some_and(|c| c.tx.capacity() > 0)
    }

    fn stats(&self) -> &StatsCounters {
        &self.shared.stats
    }

    // ------------------------------------------------------------ main loop

    pub(crate) async fn run(mut self) {
        let main_mean = self.config.message_sending_average_delay;
        let cover_mean = self.config.loop_cover_average_delay;
        let main_sleep = tokio::time::sleep(exp_sample(&mut self.rng, main_mean));
        let cover_sleep = tokio::time::sleep(exp_sample(&mut self.rng, cover_mean));
        tokio::pin!(main_sleep, cover_sleep);
        let mut housekeeping = tokio::time::interval(HOUSEKEEPING);
        housekeeping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

        loop {
            self.publish_counters();
            let can_send = self.can_send();
            let topology_ok = self.topology.current().is_some();
            // New app messages wait while the queue is full, or while the
            // outbox journal is behind the disk (checked again at every
            // wake-up; the disk is never waited for here).
            let accept_requests = self.lanes.queued() < self.config.max_queued_packets
                && self.outbox.as_ref().is_none_or(Outbox::has_room);
            // Also while the daemon's memory budget is used up: the gateway
            // keeps what comes meanwhile.
            let read_gateway = self.event_bytes.has_room();
            let immediate =
                self.config.disable_main_poisson && can_send && topology_ok && self.lanes.total > 0;
            let main_on = !self.config.disable_main_poisson;
            let cover_on = !self.config.disable_loop_cover;
            let deliver = !self.events.is_empty();
            let subscriber = if deliver {
                self.subscriber.clone()
            } else {
                None
            };

            let wake = tokio::select! {
                biased;
                _ = self.cancel.cancelled() => Wake::Shutdown,
                _ = self.shared.notify.notified() => Wake::Control,
                p = reserve_opt(subscriber), if deliver => Wake::Deliver(p),
                r = join_opt(&mut self.reconnect), if self.reconnect.is_some() => Wake::Reconnected(r),
                e = self.gw_rx.recv(), if read_gateway => Wake::Gateway(e),
                t = self.timers.next(), if !self.timers.is_empty() => Wake::AckTimeout(t.map(|e| e.into_inner())),
                _ = &mut main_sleep, if main_on => Wake::MainTick,
                _ = &mut cover_sleep, if cover_on => Wake::CoverTick,
                _ = tokio::task::yield_now(), if immediate => Wake::Immediate,
                r = self.requests.recv(), if accept_requests => Wake::Request(r),
                _ = housekeeping.tick() => Wake::Housekeeping,
            };

            match wake {
                Wake::Shutdown => break,
                Wake::Control => self.on_control(),
                Wake::Deliver(Ok(permit)) => {
                    if let Some(ev) = self.events.pop_front() {
                        self.event_bytes.give_back(ev.weight());
                        permit.send(ev);
                    }
                }
                Wake::Deliver(Err(_)) => self.subscriber = None,
                Wake::Reconnected(r) => {
                    self.reconnect = None;
                    match r {
                        Ok(Ok(session)) => {
                            StatsCounters::add(&self.shared.stats.reconnects, 1);
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
                Wake::Gateway(Some((generation, ev))) => {
                    self.on_gateway(generation, ev);
                    // Drain what is already there, bounded.
                    for _ in 0..GATEWAY_BATCH {
                        if !self.event_bytes.has_room() {
                            break;
                        }
                        match self.gw_rx.try_recv() {
                            Ok((g, ev)) => self.on_gateway(g, ev),
                            Err(_) => break,
                        }
                    }
                }
                Wake::Gateway(None) => {}
                Wake::AckTimeout(Some(id)) => self.on_ack_timeout(id),
                Wake::AckTimeout(None) => {}
                Wake::MainTick => {
                    let next =
                        next_deadline(main_sleep.deadline(), exp_sample(&mut self.rng, main_mean));
                    main_sleep.as_mut().reset(next);
                    if can_send && !self.send_next_real() {
                        self.send_cover();
                    }
                }
                Wake::CoverTick => {
                    let next = next_deadline(
                        cover_sleep.deadline(),
                        exp_sample(&mut self.rng, cover_mean),
                    );
                    cover_sleep.as_mut().reset(next);
                    if can_send {
                        self.send_cover();
                    }
                }
                Wake::Immediate => {
                    for _ in 0..IMMEDIATE_BATCH {
                        if !self.can_send() || !self.send_next_real() {
                            break;
                        }
                    }
                }
                Wake::Request(Some(req)) => self.on_request(req),
                Wake::Request(None) => {
                    // Every handle is gone: nothing more will be asked.
                    tracing::debug!("all client handles dropped");
                    break;
                }
                Wake::Housekeeping => self.housekeeping(),
            }
        }
        self.shutdown().await;
    }

    async fn shutdown(&mut self) {
        self.stats().set_state(GatewayState::Closed);
        // What is journalled is written before the next run can open it.
        if let Some(mut o) = self.outbox.take() {
            let _ = tokio::task::spawn_blocking(move || o.close()).await;
        }
        // The reply state as it is now, after any write under way.
        if self.replies.is_some() {
            let bytes = replies::encode(&self.replies_snapshot());
            if let Some(r) = self.replies.take() {
                let _ = tokio::task::spawn_blocking(move || {
                    let deadline = Instant::now() + Duration::from_secs(5);
                    while r.writing.load(std::sync::atomic::Ordering::Acquire)
                        && Instant::now() < deadline
                    {
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
            while let Some(ev) = self.events.pop_front() {
                if sub.try_send(ev).is_err() {
                    break;
                }
            }
            let _ = sub.try_send(ClientEvent::GatewayStatus(GatewayState::Closed));
        }
    }

    /// Publish what the bounded stores hold (every housekeeping tick).
    fn publish_memory(&self) {
        let Ok(mut m) = self.stats().memory.lock() else {
            return;
        };
        let n = |v: usize| v as u64;
        *m = MemoryUse {
            reassembly_bytes: n(self.reassembly_bytes.used()),
            reassembly_bound: n(self.reassembly_bytes.bound()),
            surb_store_bytes: n(self.surb_bytes.used()),
            surb_store_bound: n(self.surb_bytes.bound()),
            stored_surbs: n(self.stores.values().map(|s| s.surbs.len()).sum()),
            surb_tags: n(self.stores.len()),
            reply_key_bytes: n(self.reply_keys.bytes()),
            reply_key_bound: n(self.reply_keys.bound()),
            reply_keys: n(self.reply_keys.len()),
            received_bytes: n(self.event_bytes.used()),
            received_bound: n(self.event_bytes.bound()),
            sender_tags: n(self.sender_tags.len()),
        };
    }

    fn publish_counters(&self) {
        let s = self.stats();
        s.outside_warnings
            .store(self.warnings.total(), std::sync::atomic::Ordering::Relaxed);
        let queued = self.lanes.queued() as u64;
        s.queued_packets
            .store(queued, std::sync::atomic::Ordering::Relaxed);
        s.peak_queued_packets
            .store(self.lanes.peak as u64, std::sync::atomic::Ordering::Relaxed);
        s.unacked_fragments.store(
            self.timers.len() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    fn emit(&mut self, ev: ClientEvent) {
        self.event_bytes.force_take(ev.weight());
        self.events.push_back(ev);
    }

    fn emit_error(&mut self, kind: ErrorKind, message: String, lane: Option<Lane>) {
        // The message may name a recipient: addresses are logged at debug
        // level only (the daemon reports the error at warn without it).
        tracing::debug!(?kind, %message, "client error");
        self.emit(ClientEvent::Error {
            kind,
            message,
            lane,
        });
    }

    fn on_control(&mut self) {
        let (sub, closed) = match self.shared.control.lock() {
            Ok(mut c) => (c.new_subscriber.take(), std::mem::take(&mut c.closed_lanes)),
            Err(_) => return,
        };
        if let Some(s) = sub {
            self.subscriber = Some(s);
        }
        for conn in closed {
            let ids = self.lanes.close(conn);
            for id in ids {
                self.shared.lane_adjust(Lane::Connection(conn), -1);
                if let Some(p) = self.pending.remove(&id) {
                    if let Some(k) = p.timer {
                        self.timers.try_remove(&k);
                    }
                    // The app gave the connection up: so do we.
                    self.message_done(p.message);
                }
            }
        }
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
            &self.config.gateway,
            self.cancel.child_token(),
        );
        if let Some(old) = self.conn.replace(conn) {
            old.task.abort();
        }
        self.claim_outstanding = false;
        let s = self.stats();
        s.bandwidth_remaining
            .store(bandwidth, std::sync::atomic::Ordering::Relaxed);
        s.gateway_rtt_us.store(
            u64::try_from(rtt.as_micros()).unwrap_or(u64::MAX).max(1),
            std::sync::atomic::Ordering::Relaxed,
        );
        s.set_state(GatewayState::Connected);
        self.emit(ClientEvent::GatewayStatus(GatewayState::Connected));
        for plain in early {
            self.on_pushed(plain);
        }
    }

    fn start_reconnect(&mut self) {
        if self.reconnect.is_some() || self.cancel.is_cancelled() {
            return;
        }
        self.stats().set_state(GatewayState::Reconnecting);
        self.emit(ClientEvent::GatewayStatus(GatewayState::Reconnecting));
        let listener = self.listener.clone();
        let fallback = self.fallback.clone();
        let identity = self.keys.identity.clone();
        let key = self.shared_key.clone();
        let shared = self.shared.clone();
        let gw = self.config.gateway.clone();
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
        match ev {
            GwEvent::Pushed(plain) => self.on_pushed(plain),
            GwEvent::Response(r) => self.on_response(r),
            GwEvent::Rtt(rtt) => self.stats().gateway_rtt_us.store(
                u64::try_from(rtt.as_micros()).unwrap_or(u64::MAX).max(1),
                std::sync::atomic::Ordering::Relaxed,
            ),
            GwEvent::Closed(reason) => {
                tracing::warn!(%reason, "gateway connection lost");
                if let Some(c) = self.conn.take() {
                    c.task.abort();
                }
                self.start_reconnect();
            }
        }
    }

    fn on_response(&mut self, r: ServerResponse) {
        let remaining = match r {
            ServerResponse::Send {
                remaining_bandwidth,
                ..
            } => Some(remaining_bandwidth),
            ServerResponse::Bandwidth {
                available_total, ..
            } => {
                self.claim_outstanding = false;
                Some(available_total)
            }
            ServerResponse::TypedError {
                error: TypedGatewayError::OutOfBandwidth { available, .. },
            } => {
                tracing::warn!("not enough bandwidth; claiming more");
                Some(available)
            }
            ServerResponse::Error { message } => {
                tracing::warn!(%message, "gateway error");
                None
            }
            other => {
                tracing::debug!(?other, "gateway response");
                None
            }
        };
        if let Some(rem) = remaining {
            self.stats()
                .bandwidth_remaining
                .store(rem, std::sync::atomic::Ordering::Relaxed);
            if bandwidth::client_should_claim(rem) && !self.claim_outstanding {
                if let Some(c) = &self.conn {
                    let text = ClientControlRequest::ClaimFreeTestnetBandwidth.to_json();
                    if c.tx.try_send(Message::text(text)).is_ok() {
                        self.claim_outstanding = true;
                    }
                }
            }
        }
    }

    // ------------------------------------------------------------ receiving

    /// Count a warning caused by what another party sent, and log it unless
    /// too many came in this interval (see [`OutsideWarnings`]).
    fn outside_warning(&mut self, what: &str, detail: &dyn std::fmt::Display) {
        if self.warnings.allow(Instant::now()) {
            tracing::warn!(%detail, "{what}");
        }
    }

    fn on_pushed(&mut self, plain: Vec<u8>) {
        let s = &self.shared.stats;
        match classify_pushed(plain.len()) {
            Some(PushedKind::Ack) => match recognise_ack(&self.keys.ack, &plain) {
                Ok(id) if id.is_cover() => {}
                Ok(id) => {
                    if let Some(p) = self.pending.remove(&id) {
                        StatsCounters::add(&s.acks_received, 1);
                        if let Some(k) = p.timer {
                            self.timers.try_remove(&k);
                        }
                        self.fragment_done(p.message);
                    }
                }
                Err(e) => self.outside_warning("ignored an unreadable ack", &e),
            },
            Some(PushedKind::Message(_)) => {
                if self.cover_markers.take(&plain) {
                    StatsCounters::add(&s.cover_packets_received, 1);
                    StatsCounters::add(&s.cover_bytes_received, plain.len() as u64);
                    return;
                }
                let reply_keys = &mut self.reply_keys;
                let mut surb_tag = None;
                let mut used_key = false;
                let decrypted =
                    decrypt_message(&self.keys.encryption, &plain, &mut |d: &[u8; 32]| {
                        reply_keys.take(d).map(|(key, tag)| {
                            used_key = true;
                            surb_tag = Some(tag);
                            key
                        })
                    });
                if used_key {
                    if let Some(r) = &mut self.replies {
                        r.dirty = true;
                    }
                }
                let decrypted = match decrypted {
                    Ok(d) => d,
                    Err(e) => return self.outside_warning("ignored an undecryptable message", &e),
                };
                if is_cover(&decrypted.fragment) {
                    StatsCounters::add(&s.cover_packets_received, 1);
                    StatsCounters::add(&s.cover_bytes_received, plain.len() as u64);
                    return;
                }
                StatsCounters::add(&s.real_packets_received, 1);
                StatsCounters::add(&s.real_bytes_received, plain.len() as u64);
                let fragment = match Fragment::from_bytes(&decrypted.fragment) {
                    Ok(f) => f,
                    Err(e) => return self.outside_warning("ignored a malformed fragment", &e),
                };
                // Only a message that came whole through one of our SURBs
                // can be a SURB request we answer (Nym's requests always
                // fit one fragment).
                let via = match surb_tag {
                    Some(tag) if fragment.total() == 1 && !fragment.header().is_linked() => {
                        Via::OurSurb(tag)
                    }
                    _ => Via::Other,
                };
                self.reassemble(fragment, via);
            }
            None => {
                self.outside_warning("ignored a pushed message of unknown length", &plain.len())
            }
        }
    }

    fn reassemble(&mut self, fragment: Fragment, via: Via) {
        let now = Instant::now();
        // The reassembler keeps to its own bound (its oldest incomplete
        // messages go first); the daemon's budget is kept by reading no
        // fragments while it is used up, so that no message whose
        // fragments the sender saw acknowledged is dropped for it.
        let inserted = self.reassembler.insert(fragment, now);
        self.reassembly_bytes
            .set_used(self.reassembler.buffered_bytes());
        match inserted {
            Ok(ins) => {
                for d in ins.evicted {
                    self.outside_warning(
                        "dropped an incomplete message to make room",
                        &format_args!("set {} ({} of {} fragments)", d.set_id, d.received, d.total),
                    );
                }
                match ins.outcome {
                    InsertOutcome::Complete(m) => {
                        self.note_completed(&m.set_ids);
                        match m.into_message() {
                            Ok(msg) => self.on_message(msg, via),
                            Err(e) => self.outside_warning("ignored a malformed message", &e),
                        }
                    }
                    InsertOutcome::Duplicate => {
                        StatsCounters::add(&self.stats().duplicate_fragments, 1)
                    }
                    InsertOutcome::Buffered => {}
                }
            }
            Err(e @ ReassemblyError::TooLarge { .. }) => self.outside_warning(
                "dropped a fragment: no memory left to reassemble its message",
                &e,
            ),
            Err(e) => self.outside_warning("ignored a fragment", &e),
        }
    }

    /// Publish the set ids of a completed message for the handle
    /// ([`crate::ClientHandle::completed_sets`]), bounded like the
    /// reassembler's own memory.
    fn note_completed(&self, set_ids: &[i32]) {
        let keep = self.config.reassembly.recently_completed;
        if let Ok(mut c) = self.shared.completed.lock() {
            c.extend(set_ids.iter().copied());
            while c.len() > keep {
                c.pop_front();
            }
        }
        self.shared
            .completions
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    fn deliver(&mut self, data: Vec<u8>, sender_tag: Option<SenderTag>) {
        StatsCounters::add(&self.shared.stats.messages_received, 1);
        self.emit(ClientEvent::Received(ReceivedMessage { data, sender_tag }));
    }

    fn on_message(&mut self, msg: NymMessage, via: Via) {
        match msg {
            NymMessage::Plain(data) => self.deliver(data, None),
            NymMessage::Repliable(m) => {
                let tag = m.sender_tag;
                let is_data = matches!(
                    m.content,
                    RepliableContent::DataV1 { .. } | RepliableContent::DataV2 { .. }
                );
                let (surbs, data) = m.content.into_parts();
                self.store_surbs(tag, surbs);
                if is_data {
                    self.deliver(data, Some(tag));
                }
                self.pump_replies(tag);
            }
            NymMessage::Reply(ReplyMessage::Data(data)) => self.deliver(data, None),
            NymMessage::Reply(ReplyMessage::SurbRequest { recipient, amount }) => {
                self.on_surb_request(*recipient, amount, via)
            }
        }
    }

    /// Keep SURBs received from `tag`: at most `max_stored_per_tag` per tag
    /// (its oldest go), `max_tags` tags (the least recently filled one with
    /// no reply waiting goes), and `surb_store_bytes` in all (the oldest
    /// SURBs of the tag holding the most go first).
    fn store_surbs(&mut self, tag: SenderTag, surbs: Vec<ReplySurb>) {
        self.mark_replies();
        let now = Instant::now();
        let cfg = &self.config.reply_surbs;
        let max = cfg.max_stored_per_tag;
        if !self.stores.contains_key(&tag) && self.stores.len() >= cfg.max_tags {
            if let Some(old) = self
                .stores
                .iter()
                .filter(|(_, s)| s.waiting.is_empty())
                .min_by_key(|(_, s)| s.touched)
                .map(|(t, _)| *t)
            {
                if let Some(gone) = self.stores.remove(&old) {
                    let bytes = gone.surbs.iter().map(surb_cost).sum();
                    self.surb_bytes.give_back(bytes);
                }
            }
        }
        {
            let store = self
                .stores
                .entry(tag)
                .or_insert_with(|| SurbStore::new(now));
            store.touched = now;
            if !surbs.is_empty() {
                store.request_sent = None;
                store.request_attempts = 0;
            }
        }
        let skip = surbs.len().saturating_sub(max);
        let mut dropped = 0usize;
        for surb in surbs.into_iter().skip(skip) {
            let cost = surb_cost(&surb);
            let mut room = self.surb_bytes.try_take(cost);
            while !room && self.evict_surbs() {
                room = self.surb_bytes.try_take(cost);
            }
            if !room {
                dropped += 1;
                continue;
            }
            let Some(store) = self.stores.get_mut(&tag) else {
                self.surb_bytes.give_back(cost);
                continue;
            };
            store.surbs.push_back(surb);
            if store.surbs.len() > max {
                if let Some(old) = store.surbs.pop_front() {
                    self.surb_bytes.give_back(surb_cost(&old));
                }
            }
        }
        if dropped > 0 {
            self.outside_warning(
                "dropped received reply SURBs: no memory left for them",
                &format_args!("{dropped} SURBs from {tag}"),
            );
        }
    }

    /// Evict the oldest SURBs of the tag that holds the most (ties: the
    /// least recently filled). False when no SURB is stored.
    fn evict_surbs(&mut self) -> bool {
        let Some(tag) = self
            .stores
            .iter()
            .filter(|(_, s)| !s.surbs.is_empty())
            .max_by(|(_, a), (_, b)| {
                a.surbs
                    .len()
                    .cmp(&b.surbs.len())
                    .then(b.touched.cmp(&a.touched))
            })
            .map(|(t, _)| *t)
        else {
            return false;
        };
        let Some(store) = self.stores.get_mut(&tag) else {
            return false;
        };
        for _ in 0..SURB_EVICT_BATCH {
            match store.surbs.pop_front() {
                Some(old) => self.surb_bytes.give_back(surb_cost(&old)),
                None => break,
            }
        }
        true
    }

    /// Take the oldest stored SURB of `tag`.
    fn take_surb(&mut self, tag: &SenderTag) -> Option<ReplySurb> {
        let surb = self.stores.get_mut(tag)?.surbs.pop_front()?;
        self.surb_bytes.give_back(surb_cost(&surb));
        self.mark_replies();
        Some(surb)
    }

    /// Put back a SURB that was not used after all.
    fn return_surb(&mut self, tag: &SenderTag, surb: ReplySurb) {
        if let Some(store) = self.stores.get_mut(tag) {
            self.surb_bytes.force_take(surb_cost(&surb));
            store.surbs.push_front(surb);
            self.mark_replies();
        }
    }

    fn refuse_surb_request(&mut self, why: &str) {
        StatsCounters::add(&self.shared.stats.surb_requests_refused, 1);
        self.outside_warning("refused a request for reply SURBs", &why);
    }

    /// A peer asks for more reply SURBs (it holds too few to reply). It is
    /// answered only if it came through one of the SURBs we made for the
    /// recipient it names (so only a party we sent anonymous messages to
    /// can ask, and only for itself), within that recipient's rate limit
    /// and while the send queue is at most half full. Nym's own client also
    /// refuses requests naming a recipient it never sent to.
    fn on_surb_request(&mut self, recipient: Recipient, amount: u32, via: Via) {
        let Via::OurSurb(surb_tag) = via else {
            return self.refuse_surb_request("it did not come through one of our reply SURBs");
        };
        let now = Instant::now();
        let (rate, burst) = (
            self.config.reply_surbs.answer_rate,
            self.config.reply_surbs.answer_burst,
        );
        let by_queue = self.surbs_fitting_in_queue();
        let max = self.config.reply_surbs.max_accepted_request;
        let grant = {
            let Some(entry) = self.sender_tags.get_mut(&recipient.to_bytes()) else {
                return self.refuse_surb_request(
                    "it names a recipient we never sent anonymous messages to",
                );
            };
            if entry.tag != surb_tag {
                return self.refuse_surb_request(
                    "it names another recipient than the one its SURB was made for",
                );
            }
            let available = entry.available(now, rate, burst);
            let grant = amount.min(max).min(available).min(by_queue);
            if grant > 0 {
                entry.spend(grant);
            }
            (grant, available)
        };
        let (grant, available) = grant;
        if grant == 0 {
            let why = if amount == 0 {
                "it asks for no SURBs"
            } else if available == 0 {
                "its sender tag is over the rate limit"
            } else {
                "the send queue is half full"
            };
            return self.refuse_surb_request(why);
        }
        let Some(topology) = self.topology.current() else {
            return self.refuse_surb_request("no usable network topology");
        };
        if topology
            .egress_by_identity(recipient.gateway().as_bytes(), false)
            .is_err()
        {
            return self.refuse_surb_request("the requester's gateway cannot be used");
        }
        tracing::debug!(amount, grant, %surb_tag, "answering a reply-SURB request");
        let surbs = match self.build_reply_surbs(&topology, grant, surb_tag) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "could not build reply SURBs");
                return;
            }
        };
        let s = &self.shared.stats;
        StatsCounters::add(&s.surb_requests_answered, 1);
        StatsCounters::add(&s.surbs_handed_out, surbs.len() as u64);
        let msg = NymMessage::Repliable(RepliableMessage::new_additional_surbs(surb_tag, surbs));
        self.enqueue_to_recipient(msg, recipient, Lane::General, true);
    }

    /// Serialised length of one of our reply SURBs.
    fn surb_len(&self) -> usize {
        match self.config.sphinx_version {
            SphinxVersion::Seeds259 => v2_reply_surb_len(DEFAULT_SURB_HOPS),
            SphinxVersion::Legacy258 => V1_REPLY_SURB_LEN,
        }
    }

    /// SURBs an answer may carry so that, with everything already queued,
    /// the send queue stays at most half full (the other half stays for
    /// the apps).
    fn surbs_fitting_in_queue(&self) -> u32 {
        let half = self.config.max_queued_packets / 2;
        let room = half.saturating_sub(self.lanes.queued());
        let per_packet = self
            .config
            .packet_size
            .fragment_capacity()
            .saturating_sub(LINKED_HEADER_LEN);
        let bytes = room
            .saturating_mul(per_packet)
            .saturating_sub(ANSWER_OVERHEAD);
        u32::try_from(bytes / self.surb_len().max(1)).unwrap_or(u32::MAX)
    }

    // -------------------------------------------------------------- sending

    fn new_message_id(&mut self) -> u64 {
        self.next_message = self.next_message.wrapping_add(1);
        self.next_message
    }

    fn sender_tag_for(&mut self, recipient: &Recipient) -> SenderTag {
        let burst = self.config.reply_surbs.answer_burst;
        let known = self.sender_tags.len();
        let tag =
            self.sender_tags
                .tag_for(&recipient.to_bytes(), &mut self.rng, Instant::now(), burst);
        // Also a use of a known tag: its place in the order changed.
        self.mark_replies();
        if self.sender_tags.len() > known {
            tracing::debug!(%tag, "using a new sender tag for anonymous messages to {recipient}");
        }
        tag
    }

    /// Build `count` reply SURBs back to us for the recipient that uses
    /// `tag`, keeping their keys.
    fn build_reply_surbs(
        &mut self,
        topology: &NymTopology,
        count: u32,
        tag: SenderTag,
    ) -> Result<Vec<ReplySurb>, String> {
        let count = (count as usize).min(MAX_SURBS_PER_LIST);
        self.mark_replies();
        let mut out = Vec::with_capacity(count);
        let now = Instant::now();
        for _ in 0..count {
            let route = topology
                .random_route_to(&mut self.rng, &self.own_gateway)
                .map_err(|e| e.to_string())?;
            let nodes = to_sphinx_route(&route).map_err(|e| e.to_string())?;
            let surb = ReplySurb::build_with_mean_delay(
                &mut self.rng,
                &nodes,
                self.own.identity(),
                self.config.packet_mean(),
                self.config.sphinx_version,
            )
            .map_err(|e| e.to_string())?
            .with_key_rotation(topology.key_rotation());
            if !self.reply_keys.insert(
                surb.key_digest(),
                *surb.encryption_key().as_bytes(),
                tag,
                now,
            ) {
                return Err("no room for the keys of reply SURBs (reply_key_bytes)".into());
            }
            out.push(surb);
        }
        Ok(out)
    }

    /// Check that the recipient's gateway is routable right now.
    fn check_recipient(
        &self,
        recipient: &Recipient,
    ) -> Result<Arc<NymTopology>, (ErrorKind, String)> {
        let Some(topology) = self.topology.current() else {
            return Err((
                ErrorKind::TopologyUnavailable,
                "no usable network topology; the message was not sent".into(),
            ));
        };
        if let Err(e) = topology.egress_by_identity(recipient.gateway().as_bytes(), false) {
            return Err((
                ErrorKind::RecipientGatewayUnknown,
                format!(
                    "the gateway {} of recipient {recipient} cannot be used ({e}); the message was not sent",
                    bs58_str(recipient.gateway().as_bytes())
                ),
            ));
        }
        Ok(topology)
    }

    fn on_request(&mut self, req: OutgoingMessage) {
        match req {
            OutgoingMessage::Plain {
                recipient,
                data,
                lane,
            } => {
                tracing::debug!(len = data.len(), ?lane, "sending a message to {recipient}");
                if let Err((kind, msg)) = self.check_recipient(&recipient) {
                    return self.emit_error(kind, msg, Some(lane));
                }
                self.enqueue_to_recipient(NymMessage::Plain(data), recipient, lane, false);
            }
            OutgoingMessage::Anonymous {
                recipient,
                data,
                reply_surbs,
                lane,
            } => {
                tracing::debug!(
                    len = data.len(),
                    reply_surbs,
                    ?lane,
                    "sending an anonymous message to {recipient}"
                );
                let topology = match self.check_recipient(&recipient) {
                    Ok(t) => t,
                    Err((kind, msg)) => return self.emit_error(kind, msg, Some(lane)),
                };
                let tag = self.sender_tag_for(&recipient);
                let surbs = match self.build_reply_surbs(&topology, reply_surbs, tag) {
                    Ok(s) => s,
                    Err(e) => {
                        return self.emit_error(
                            ErrorKind::SendFailed,
                            format!("could not build reply SURBs: {e}"),
                            Some(lane),
                        )
                    }
                };
                let msg = NymMessage::Repliable(RepliableMessage::new_data(tag, data, surbs));
                self.enqueue_to_recipient(msg, recipient, lane, false);
            }
            OutgoingMessage::Reply {
                sender_tag,
                data,
                lane,
            } => {
                tracing::debug!(len = data.len(), ?lane, %sender_tag, "sending a reply");
                if !self.stores.contains_key(&sender_tag) {
                    return self.emit_error(
                        ErrorKind::NoReplySurbs,
                        format!("no reply SURBs were ever received from sender tag {sender_tag}"),
                        Some(lane),
                    );
                }
                // Journalled under its own numbers (see the outbox).
                let message = self.new_message_id() | REPLY_BIT;
                let Some(fragments) =
                    self.fragment(NymMessage::Reply(ReplyMessage::Data(data)), lane)
                else {
                    return;
                };
                if let Some(o) = &self.outbox {
                    self.journalled.insert(message, fragments.len());
                    o.add_reply(message, &sender_tag, &fragments);
                }
                for (id, bytes) in fragments {
                    self.pending.insert(
                        id,
                        Pending {
                            fragment: bytes,
                            dest: Dest::Reply {
                                tag: sender_tag,
                                surb: None,
                            },
                            lane,
                            message,
                            internal: false,
                            retransmissions: 0,
                            reached_gateway: false,
                            timer: None,
                        },
                    );
                    self.push_waiting(sender_tag, id, lane, false, true);
                }
                self.pump_replies(sender_tag);
            }
        }
    }

    /// Pad and split; ids are (set, position) and must not collide with
    /// fragments still in flight.
    fn fragment(&mut self, msg: NymMessage, lane: Lane) -> Option<Vec<(FragmentId, Vec<u8>)>> {
        let cap = self.config.packet_size.fragment_capacity();
        let padded = match msg.pad(cap) {
            Ok(p) => p,
            Err(e) => {
                self.emit_error(
                    ErrorKind::SendFailed,
                    format!("could not encode the message: {e}"),
                    Some(lane),
                );
                return None;
            }
        };
        for _ in 0..8 {
            let fragments = match padded.split_into_fragments(&mut self.rng, cap) {
                Ok(f) => f,
                Err(e) => {
                    self.emit_error(
                        ErrorKind::SendFailed,
                        format!("could not split the message: {e}"),
                        Some(lane),
                    );
                    return None;
                }
            };
            if fragments.iter().any(|f| self.pending.contains_key(&f.id())) {
                continue;
            }
            return Some(
                fragments
                    .into_iter()
                    .map(|f| (f.id(), f.to_bytes()))
                    .collect(),
            );
        }
        self.emit_error(
            ErrorKind::SendFailed,
            "could not allocate fragment ids".into(),
            Some(lane),
        );
        None
    }

    fn queue_lane(lane: Lane) -> QueueLane {
        match lane {
            Lane::General => QueueLane::General,
            Lane::Connection(c) => QueueLane::Conn(c),
        }
    }

    fn enqueue_to_recipient(
        &mut self,
        msg: NymMessage,
        recipient: Recipient,
        lane: Lane,
        internal: bool,
    ) {
        let message = self.new_message_id();
        let Some(fragments) = self.fragment(msg, lane) else {
            return;
        };
        if !internal {
            if let Some(o) = &self.outbox {
                self.journalled.insert(message, fragments.len());
                o.add(message, &recipient, &fragments);
            }
        }
        let recipient = Box::new(recipient);
        for (id, bytes) in fragments {
            self.pending.insert(
                id,
                Pending {
                    fragment: bytes,
                    dest: Dest::Recipient(recipient.clone()),
                    lane,
                    message,
                    internal,
                    retransmissions: 0,
                    reached_gateway: false,
                    timer: None,
                },
            );
            self.lanes.push(Self::queue_lane(lane), id, false);
            self.shared.lane_adjust(lane, 1);
        }
    }

    /// Park a reply fragment until a SURB is reserved for it. `counted`:
    /// whether it counts on its lane (first transmissions do,
    /// retransmissions do not).
    fn push_waiting(
        &mut self,
        tag: SenderTag,
        id: FragmentId,
        lane: Lane,
        front: bool,
        counted: bool,
    ) {
        let now = Instant::now();
        let store = self
            .stores
            .entry(tag)
            .or_insert_with(|| SurbStore::new(now));
        let entry = (id, lane, counted);
        if front {
            store.waiting.push_front(entry);
        } else {
            store.waiting.push_back(entry);
        }
        self.lanes.add_waiting();
        if counted {
            self.shared.lane_adjust(lane, 1);
        }
    }

    /// Attach SURBs to replies waiting for `tag`; when there are too few,
    /// spend one on asking the sender for more.
    fn pump_replies(&mut self, tag: SenderTag) {
        loop {
            let Some(store) = self.stores.get_mut(&tag) else {
                return;
            };
            // Drop waiting ids whose fragment is gone (acked or failed).
            while let Some((id, lane, counted)) = store.waiting.front().copied() {
                if self.pending.contains_key(&id) {
                    break;
                }
                store.waiting.pop_front();
                self.lanes.remove_waiting(1);
                if counted {
                    self.shared.lane_adjust(lane, -1);
                }
            }
            let need = store.waiting.len();
            if need == 0 {
                return;
            }
            let have = store.surbs.len();
            if have == 0 {
                if store.request_sent.is_none() {
                    self.fail_waiting(tag, "no reply SURBs left for this sender tag");
                }
                return;
            }
            if have < need && store.request_sent.is_none() {
                let cfg = &self.config.reply_surbs;
                let want =
                    (need - (have - 1) + cfg.min_surb_threshold).min(cfg.max_surb_threshold) as u32;
                let amount = want.clamp(cfg.min_request, cfg.max_request.max(cfg.min_request));
                store.request_sent = Some(Instant::now());
                store.request_attempts += 1;
                if let Some(surb) = self.take_surb(&tag) {
                    self.send_surb_request(tag, surb, amount);
                }
                continue;
            }
            let Some((id, lane, counted)) = store.waiting.pop_front() else {
                return;
            };
            let Some(surb) = self.take_surb(&tag) else {
                if let Some(store) = self.stores.get_mut(&tag) {
                    store.waiting.push_front((id, lane, counted));
                }
                return;
            };
            self.lanes.remove_waiting(1);
            let Some(p) = self.pending.get_mut(&id) else {
                // Gone meanwhile: keep the SURB.
                self.return_surb(&tag, surb);
                if counted {
                    self.shared.lane_adjust(lane, -1);
                }
                continue;
            };
            if let Dest::Reply { surb: slot, .. } = &mut p.dest {
                *slot = Some(surb);
            }
            // A counted fragment moves to its lane (count unchanged); an
            // uncounted one (a retransmission) to the retransmission lane.
            let q = if counted {
                Self::queue_lane(lane)
            } else {
                QueueLane::Retransmit
            };
            self.lanes.push(q, id, false);
        }
    }

    fn send_surb_request(&mut self, tag: SenderTag, surb: ReplySurb, amount: u32) {
        tracing::debug!(%tag, amount, "asking for more reply SURBs");
        let msg = NymMessage::Reply(ReplyMessage::SurbRequest {
            recipient: Box::new(self.own),
            amount,
        });
        let Some(fragments) = self.fragment(msg, Lane::General) else {
            return;
        };
        let message = self.new_message_id();
        let mut surb = Some(surb);
        for (id, bytes) in fragments {
            let attached = surb.take();
            let has = attached.is_some();
            self.pending.insert(
                id,
                Pending {
                    fragment: bytes,
                    dest: Dest::Reply {
                        tag,
                        surb: attached,
                    },
                    lane: Lane::General,
                    message,
                    internal: true,
                    retransmissions: 0,
                    reached_gateway: false,
                    timer: None,
                },
            );
            if has {
                self.lanes.push(QueueLane::Retransmit, id, true);
            } else {
                self.push_waiting(tag, id, Lane::General, true, false);
            }
        }
    }

    fn fail_waiting(&mut self, tag: SenderTag, why: &str) {
        let Some(store) = self.stores.get_mut(&tag) else {
            return;
        };
        let ids: Vec<(FragmentId, Lane, bool)> = store.waiting.drain(..).collect();
        store.request_sent = None;
        store.request_attempts = 0;
        self.lanes.remove_waiting(ids.len());
        let mut failed: Vec<(u64, Lane, bool)> = Vec::new();
        for (id, lane, counted) in ids {
            if counted {
                self.shared.lane_adjust(lane, -1);
            }
            if let Some(p) = self.pending.remove(&id) {
                if let Some(k) = p.timer {
                    self.timers.try_remove(&k);
                }
                if !failed.iter().any(|(m, _, _)| *m == p.message) {
                    failed.push((p.message, p.lane, p.internal));
                }
            }
        }
        for (message, lane, internal) in failed {
            self.drop_message(message);
            if !internal {
                self.emit_error(
                    ErrorKind::NoReplySurbs,
                    format!("reply to {tag} not sent: {why}"),
                    Some(lane),
                );
            }
        }
    }

    /// Forget every fragment of a message.
    fn drop_message(&mut self, message: u64) {
        self.message_done(message);
        let ids: Vec<FragmentId> = self
            .pending
            .iter()
            .filter(|(_, p)| p.message == message)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            if let Some(p) = self.pending.remove(&id) {
                if let Some(k) = p.timer {
                    self.timers.try_remove(&k);
                }
            }
        }
    }

    /// Pop the next real fragment and send it. False when none was sent.
    fn send_next_real(&mut self) -> bool {
        loop {
            let Some((lane, id)) = self.lanes.pop(&mut self.rng) else {
                return false;
            };
            if let QueueLane::Conn(c) = lane {
                self.shared.lane_adjust(Lane::Connection(c), -1);
            }
            let Some(p) = self.pending.remove(&id) else {
                continue; // acked or dropped meanwhile
            };
            match self.send_fragment(id, p) {
                SendResult::Sent => return true,
                SendResult::Blocked => return false,
                SendResult::Dropped => continue,
            }
        }
    }

    fn send_fragment(&mut self, id: FragmentId, mut p: Pending) -> SendResult {
        let Some(topology) = self.topology.current() else {
            self.pending.insert(id, p);
            self.lanes.push(QueueLane::Retransmit, id, true);
            return SendResult::Blocked;
        };
        let built = self.build_packet(&topology, id, &mut p);
        let (mix_packet, total_delay) = match built {
            Ok(b) => b,
            Err(BuildError::NoSurb) => {
                let (tag, lane) = match &p.dest {
                    Dest::Reply { tag, .. } => (*tag, p.lane),
                    Dest::Recipient(_) => {
                        self.fragment_done(p.message);
                        return SendResult::Dropped;
                    }
                };
                let counted = p.retransmissions == 0;
                self.pending.insert(id, p);
                self.push_waiting(tag, id, lane, true, counted);
                self.pump_replies(tag);
                return SendResult::Dropped;
            }
            Err(BuildError::Route(kind, msg)) => {
                let (message, lane, internal) = (p.message, p.lane, p.internal);
                self.drop_message(message);
                if !internal {
                    self.emit_error(kind, msg, Some(lane));
                }
                return SendResult::Dropped;
            }
            Err(BuildError::Other(msg)) => {
                let (message, lane, internal) = (p.message, p.lane, p.internal);
                self.drop_message(message);
                if internal {
                    tracing::warn!(%msg, "internal message dropped");
                } else {
                    self.emit_error(ErrorKind::SendFailed, msg, Some(lane));
                }
                return SendResult::Dropped;
            }
        };
        let sent = self.forward(&mix_packet);
        if let Some(bytes) = sent {
            let s = &self.shared.stats;
            StatsCounters::add(&s.real_packets_sent, 1);
            StatsCounters::add(&s.real_bytes_sent, bytes as u64);
        }
        // Even if the frame could not be queued, the timer retransmits it
        // (that transmission does not count against the cap).
        p.reached_gateway = sent.is_some();
        let timeout = self.config.ack_wait(total_delay, p.retransmissions);
        p.timer = Some(self.timers.insert(id, timeout));
        self.pending.insert(id, p);
        SendResult::Sent
    }

    fn build_packet(
        &mut self,
        topology: &NymTopology,
        id: FragmentId,
        p: &mut Pending,
    ) -> Result<(MixPacket, Duration), BuildError> {
        let ack_route = topology
            .random_route_to(&mut self.rng, &self.own_gateway)
            .map(|r| hops(&r))
            .map_err(|e| BuildError::Other(format!("no route back to our own gateway: {e}")))?;
        let surb_ack = build_surb_ack(
            &mut self.rng,
            self.config.sphinx_version,
            &self.keys.ack,
            id,
            &ack_route,
            &self.own.identity().to_bytes(),
            self.config.ack_mean(),
        )
        .map_err(|e| BuildError::Other(format!("SURB-ACK: {e}")))?;
        match &mut p.dest {
            Dest::Recipient(r) => {
                let route = topology
                    .random_route_to(&mut self.rng, r.gateway().as_bytes())
                    .map_err(|e| match e {
                        RouteError::UnknownEgress(g) => BuildError::Route(
                            ErrorKind::RecipientGatewayUnknown,
                            format!("the gateway {g} of recipient {r} is not in the network topology; the message was dropped"),
                        ),
                        other => BuildError::Route(ErrorKind::TopologyUnavailable, other.to_string()),
                    })
                    .map(|r| hops(&r))?;
                let prepared = prepare_fragment(
                    &mut self.rng,
                    self.config.sphinx_version,
                    &p.fragment,
                    r,
                    &route,
                    &surb_ack,
                    self.config.packet_mean(),
                    topology.key_rotation(),
                )
                .map_err(|e| BuildError::Other(format!("packet: {e}")))?;
                let total = prepared.total_delay();
                Ok((prepared.mix_packet, total))
            }
            Dest::Reply { surb, .. } => {
                let Some(surb) = surb.take() else {
                    return Err(BuildError::NoSurb);
                };
                let rotation = surb.key_rotation();
                let plaintext = reply_plaintext(
                    surb.encryption_key().as_bytes(),
                    &surb_ack.bytes,
                    &p.fragment,
                )
                .map_err(|e| BuildError::Other(format!("reply payload: {e}")))?;
                let (packet, first_hop) = surb
                    .apply(&plaintext, self.config.packet_size)
                    .map_err(|e| BuildError::Other(format!("reply SURB: {e}")))?;
                let data_delay = self.config.packet_mean().saturating_mul(3);
                Ok((
                    MixPacket::new(first_hop, packet, rotation),
                    data_delay.saturating_add(surb_ack.expected_delay),
                ))
            }
        }
    }

    /// Seal and hand a packet to the connection; the frame length when it
    /// was queued.
    fn forward(&mut self, mp: &MixPacket) -> Option<usize> {
        let conn = self.conn.as_ref()?;
        let plain = if uses_forward_sphinx_v2(conn.protocol) {
            mp.to_v2_bytes()
        } else {
            mp.to_v1_bytes()
        };
        let frame = seal_client_frame(
            &mut self.rng,
            &self.shared_key,
            forward_kind_for(conn.protocol),
            &plain,
        );
        let len = frame.len();
        conn.tx.try_send(Message::binary(frame)).ok().map(|_| len)
    }

    fn send_cover(&mut self) {
        let Some(topology) = self.topology.current() else {
            tracing::debug!("no topology: skipping a loop cover packet");
            return;
        };
        let (route, ack_route) = match (
            topology.random_route_to(&mut self.rng, &self.own_gateway),
            topology.random_route_to(&mut self.rng, &self.own_gateway),
        ) {
            (Ok(r), Ok(a)) => (hops(&r), hops(&a)),
            (Err(e), _) | (_, Err(e)) => {
                tracing::debug!(error = %e, "cannot route loop cover");
                return;
            }
        };
        let params = LoopCover {
            own: &self.own,
            ack_key: &self.keys.ack,
            ack_route: &ack_route,
            route: &route,
            ack_mean: self.config.ack_mean(),
            packet_mean: self.config.packet_mean(),
            size: self.config.packet_size,
            key_rotation: topology.key_rotation(),
        };
        match build_loop_cover_marked(&mut self.rng, &params) {
            Ok((mp, marker)) => {
                if let Some(bytes) = self.forward(&mp) {
                    self.cover_markers.insert(marker);
                    let s = &self.shared.stats;
                    StatsCounters::add(&s.cover_packets_sent, 1);
                    StatsCounters::add(&s.cover_bytes_sent, bytes as u64);
                }
            }
            Err(e) => tracing::warn!(error = %e, "loop cover packet"),
        }
    }

    fn on_ack_timeout(&mut self, id: FragmentId) {
        let Some(mut p) = self.pending.remove(&id) else {
            return;
        };
        p.timer = None;
        // While the subscriber is slow (or the daemon's memory budget is
        // used up) we do not read acks; waiting longer beats retransmitting
        // what probably arrived.
        if !self.event_bytes.has_room() {
            p.timer = Some(self.timers.insert(id, self.config.ack_wait_addition));
            self.pending.insert(id, p);
            return;
        }
        // A transmission that never reached our gateway (disconnected) is
        // made again without counting.
        if !p.reached_gateway {
            return self.requeue(id, p);
        }
        if let Some(max) = self.config.max_retransmissions {
            if p.retransmissions >= max {
                let (message, lane, internal) = (p.message, p.lane, p.internal);
                self.drop_message(message);
                let text = format!(
                    "a message fragment was not acknowledged after {max} retransmissions; the message was abandoned"
                );
                if internal {
                    tracing::warn!(%text, "internal message abandoned");
                } else {
                    self.emit_error(ErrorKind::RetransmissionsExhausted, text, Some(lane));
                }
                return;
            }
        }
        p.retransmissions += 1;
        StatsCounters::add(&self.shared.stats.retransmissions, 1);
        tracing::debug!(
            set = id.set_id,
            position = id.position,
            attempt = p.retransmissions,
            "retransmitting"
        );
        self.requeue(id, p);
    }

    /// Queue a fragment whose ack did not come to be sent again.
    fn requeue(&mut self, id: FragmentId, p: Pending) {
        match &p.dest {
            Dest::Reply { tag, .. } => {
                let (tag, lane) = (*tag, p.lane);
                self.pending.insert(id, p);
                // Needs a fresh SURB; not counted on the app's lane.
                self.push_waiting(tag, id, lane, true, false);
                self.pump_replies(tag);
            }
            Dest::Recipient(_) => {
                self.pending.insert(id, p);
                self.lanes.push(QueueLane::Retransmit, id, false);
            }
        }
    }

    fn housekeeping(&mut self) {
        let now = Instant::now();
        for d in self.reassembler.purge(now) {
            self.outside_warning(
                "an incomplete message timed out",
                &format_args!("set {} ({} of {} fragments)", d.set_id, d.received, d.total),
            );
        }
        self.reassembly_bytes
            .set_used(self.reassembler.buffered_bytes());
        let keys = self.reply_keys.len();
        self.reply_keys
            .expire(now, self.config.reply_surbs.max_key_age);
        if self.reply_keys.len() != keys {
            self.mark_replies();
        }
        self.save_replies();
        self.warnings.roll(now);
        self.publish_memory();
        // Re-ask for SURBs, or give up.
        let retry = self.config.reply_surbs.request_retry;
        let max_attempts = self.config.reply_surbs.max_request_attempts;
        let due: Vec<(SenderTag, bool)> = self
            .stores
            .iter()
            .filter(|(_, s)| !s.waiting.is_empty())
            .filter_map(|(t, s)| match s.request_sent {
                Some(at) if now.saturating_duration_since(at) >= retry => {
                    Some((*t, s.request_attempts >= max_attempts))
                }
                _ => None,
            })
            .collect();
        for (tag, give_up) in due {
            if give_up {
                self.fail_waiting(tag, "the sender did not provide more reply SURBs");
            } else if let Some(s) = self.stores.get_mut(&tag) {
                s.request_sent = None;
                self.pump_replies(tag);
            }
        }
    }
}

enum SendResult {
    Sent,
    Blocked,
    Dropped,
}

enum BuildError {
    NoSurb,
    Route(ErrorKind, String),
    Other(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn id(set_id: i32, position: u8) -> FragmentId {
        FragmentId { set_id, position }
    }

    #[test]
    fn cover_markers_recognise_our_loops_once_and_forget_old_ones() {
        let mut m = CoverMarkers::default();
        let msg = |k: u8| {
            let mut v = vec![k; 32];
            v.extend_from_slice(&[9u8; 100]);
            v
        };
        m.insert([1; 32]);
        m.insert([2; 32]);
        assert!(m.take(&msg(1)));
        assert!(!m.take(&msg(1)), "a marker matches once");
        assert!(!m.take(&msg(3)));
        assert!(!m.take(&[2u8; 31]), "too short");
        for i in 0..COVER_MARKERS as u32 + 10 {
            let mut k = [0u8; 32];
            k[..4].copy_from_slice(&i.to_be_bytes());
            k[31] = 0xee;
            m.insert(k);
        }
        assert!(m.set.len() <= COVER_MARKERS && m.order.len() <= COVER_MARKERS);
        assert!(!m.take(&msg(2)), "old markers age out");
    }

    #[tokio::test(start_paused = true)]
    async fn poisson_deadlines_follow_the_schedule_not_the_wakeup() {
        let start = tokio::time::Instant::now();
        let gap = Duration::from_millis(20);
        // Woken late (timer granularity, packet building): the next send is
        // still one gap after the previous scheduled time.
        tokio::time::advance(Duration::from_millis(25)).await;
        let next = next_deadline(start + gap, gap);
        assert_eq!(next, start + 2 * gap);
        // Far behind (a stall): restart from now rather than burst.
        tokio::time::advance(Duration::from_secs(5)).await;
        let now = tokio::time::Instant::now();
        assert_eq!(next_deadline(start + 2 * gap, gap), now + gap);
        // The long-run rate of many scheduled sends is exact.
        let mut rng = StdRng::seed_from_u64(3);
        let mut d = now;
        let n = 20_000;
        for _ in 0..n {
            d += exp_sample(&mut rng, gap);
        }
        let mean = (d - now).as_secs_f64() / n as f64;
        assert!((mean - 0.020).abs() < 0.0006, "mean gap {mean}");
    }

    #[test]
    fn lanes_pop_everything_once_and_in_order_within_a_lane() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut lanes = Lanes::default();
        for i in 0..10 {
            lanes.push(QueueLane::General, id(1, i), false);
            lanes.push(QueueLane::Conn(7), id(2, i), false);
            lanes.push(QueueLane::Conn(8), id(3, i), false);
        }
        lanes.push(QueueLane::Retransmit, id(4, 0), false);
        assert_eq!(lanes.total, 31);
        let mut seen: HashMap<i32, Vec<u8>> = HashMap::new();
        while let Some((_, f)) = lanes.pop(&mut rng) {
            seen.entry(f.set_id).or_default().push(f.position);
        }
        assert_eq!(lanes.total, 0);
        for set in 1..=3 {
            assert_eq!(seen[&set], (0..10).collect::<Vec<u8>>());
        }
        assert_eq!(seen[&4], vec![0]);
        assert!(lanes.conns.is_empty());
    }

    #[test]
    fn lanes_pick_lanes_at_random() {
        let mut rng = StdRng::seed_from_u64(2);
        let mut first_from_conn = 0;
        for _ in 0..200 {
            let mut lanes = Lanes::default();
            lanes.push(QueueLane::General, id(1, 0), false);
            lanes.push(QueueLane::Conn(1), id(2, 0), false);
            if let Some((QueueLane::Conn(1), _)) = lanes.pop(&mut rng) {
                first_from_conn += 1;
            }
        }
        assert!((40..=160).contains(&first_from_conn), "{first_from_conn}");
    }

    #[test]
    fn closing_a_lane_returns_its_fragments() {
        let mut lanes = Lanes::default();
        lanes.push(QueueLane::Conn(5), id(1, 1), false);
        lanes.push(QueueLane::Conn(5), id(1, 2), false);
        lanes.push(QueueLane::General, id(2, 1), false);
        assert_eq!(lanes.close(5), vec![id(1, 1), id(1, 2)]);
        assert_eq!(lanes.close(5), vec![]);
        assert_eq!(lanes.total, 1);
    }

    #[test]
    fn the_queue_keeps_its_high_water_mark() {
        let mut rng = StdRng::seed_from_u64(5);
        let mut lanes = Lanes::default();
        for i in 0..5 {
            lanes.push(QueueLane::General, id(1, i), false);
        }
        lanes.add_waiting();
        assert_eq!((lanes.queued(), lanes.peak), (6, 6));
        for _ in 0..4 {
            lanes.pop(&mut rng);
        }
        lanes.remove_waiting(1);
        lanes.push(QueueLane::Conn(3), id(2, 0), false);
        assert_eq!((lanes.queued(), lanes.peak), (2, 6));
        for i in 1..6 {
            lanes.push(QueueLane::Conn(3), id(2, i), false);
        }
        lanes.add_waiting();
        assert_eq!((lanes.queued(), lanes.peak), (8, 8));
        lanes.close(3);
        assert_eq!((lanes.queued(), lanes.peak), (2, 8));
    }

    #[test]
    fn front_pushes_jump_the_queue() {
        let mut rng = StdRng::seed_from_u64(3);
        let mut lanes = Lanes::default();
        lanes.push(QueueLane::Retransmit, id(1, 1), false);
        lanes.push(QueueLane::Retransmit, id(1, 2), true);
        assert_eq!(lanes.pop(&mut rng).map(|(_, f)| f), Some(id(1, 2)));
    }

    #[test]
    fn exponential_samples_have_roughly_the_mean() {
        let mut rng = StdRng::seed_from_u64(4);
        assert_eq!(exp_sample(&mut rng, Duration::ZERO), Duration::ZERO);
        let n = 20_000u32;
        let total: Duration = (0..n)
            .map(|_| exp_sample(&mut rng, Duration::from_millis(20)))
            .sum();
        let mean = total / n;
        assert!(
            mean > Duration::from_millis(18) && mean < Duration::from_millis(22),
            "{mean:?}"
        );
    }
}
