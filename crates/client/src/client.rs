//! The client core of one identity: its state, and the calls its driver
//! makes. Input: `handle_*`; output: `poll_*`; time is the `now` each call
//! passes, randomness the seed it was made with.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nymd_proto::chunking::Reassembler;
use nymd_proto::gateway::{
    bandwidth, uses_forward_sphinx_v2, ClientControlRequest, ProtocolVersion, ServerResponse,
    TypedGatewayError,
};
use nymd_proto::params::FragmentId;
use nymd_proto::topology::NymTopology;
use nymd_proto::{Recipient, SenderTag};
use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::config::Config;
use crate::journal::{Journal, Journalled, JournalledReply};
use crate::lanes::{exp_sample, next_deadline, Lanes};
use crate::memory::{Account, MemoryBudget};
use crate::receiving::CoverMarkers;
use crate::replies::{Session, SurbStore};
use crate::sending::Pending;
use crate::snapshot::Snapshot;
use crate::surbs::{ReplyKeys, SenderTags};
use crate::timers::Timers;
use crate::types::{
    ClientEvent, ClientKeys, ErrorKind, GatewayState, Lane, MemoryUse, OutgoingMessage, Published,
};
use crate::warnings::OutsideWarnings;

/// How often bookkeeping runs (reassembly timeouts, SURB requests, keys).
pub const HOUSEKEEPING: Duration = Duration::from_secs(1);

/// Transmissions the core holds for its driver before the streams pause: a
/// Poisson tick finding this many not taken yet sends nothing (the
/// gateway's socket is full), as a stock client skips a tick it cannot
/// send on.
pub const MAX_TRANSMITS: usize = 8;

/// What the core gives its driver to send to the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transmit {
    /// A forward request's plaintext: a MixPacket in the form the
    /// session's protocol uses. The driver seals it into a binary frame.
    Packet {
        /// The plaintext.
        bytes: Vec<u8>,
        /// Loop cover (counted apart from real traffic).
        cover: bool,
    },
    /// A control request (text frame), e.g. a bandwidth claim.
    Control(String),
}

/// What a core is made of: keys, address, settings, and the parts it
/// shares with its driver.
#[derive(Debug)]
pub struct ClientParams {
    /// The identity's keys.
    pub keys: ClientKeys,
    /// Its address (behind its gateway).
    pub own: Recipient,
    /// Settings.
    pub config: Config,
    /// The daemon's memory budget, shared by every identity.
    pub budget: Arc<MemoryBudget>,
    /// Where the core publishes counters for other threads.
    pub published: Arc<Published>,
    /// Seed of every random choice the core makes (routes, delays, tags,
    /// fragment ids, lanes).
    pub seed: [u8; 32],
    /// The outbox journal, if messages are to survive a restart.
    pub journal: Option<Box<dyn Journal>>,
    /// The time the core starts at.
    pub now: Instant,
}

/// The gateway link as the core sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    Down,
    Up(ProtocolVersion),
}

/// The client state machine of one identity. It does no I/O, reads no
/// clock and spawns nothing: its driver feeds it app requests
/// ([`Client::handle_app`]), what the gateway pushes
/// ([`Client::handle_gateway_push`], [`Client::handle_gateway_response`]),
/// link changes, topologies and timeouts ([`Client::handle_timeout`] at
/// [`Client::poll_timeout`]), and sends what [`Client::poll_transmit`]
/// returns, delivering [`Client::poll_event`] to apps.
pub struct Client {
    pub(crate) keys: ClientKeys,
    pub(crate) own: Recipient,
    pub(crate) own_gateway: [u8; 32],
    pub(crate) config: Config,
    pub(crate) rng: StdRng,
    pub(crate) now: Instant,
    pub(crate) topology: Option<Arc<NymTopology>>,
    pub(crate) published: Arc<Published>,

    link: Link,
    claim_outstanding: bool,
    /// What the driver has not taken yet, with the fragment each carries.
    pub(crate) transmits: VecDeque<(Transmit, Option<FragmentId>)>,

    pub(crate) lanes: Lanes,
    pub(crate) pending: BTreeMap<FragmentId, Pending>,
    /// Real fragments of `pending` taken from their lanes and not
    /// acknowledged yet (see [`Config::max_in_flight`]).
    pub(crate) in_flight: usize,
    pub(crate) timers: Timers,
    pub(crate) next_message: u64,

    pub(crate) reassembler: Reassembler,
    /// Bytes the reassembler holds, against its bound and the budget.
    pub(crate) reassembly_bytes: Account,
    pub(crate) reply_keys: ReplyKeys,
    pub(crate) sender_tags: SenderTags,
    pub(crate) stores: BTreeMap<SenderTag, SurbStore>,
    /// Sender tags our own sessions (open volatile lanes) sent anonymous
    /// messages with, and the lane each such session uses.
    pub(crate) sessions: BTreeMap<SenderTag, Session>,
    pub(crate) session_lanes: BTreeMap<u64, SenderTag>,
    /// Bytes of the SURBs in `stores`.
    pub(crate) surb_bytes: Account,

    events: VecDeque<ClientEvent>,
    /// Bytes of `events` (weights), against `received_buffer_bytes` and
    /// the budget.
    pub(crate) event_bytes: Account,
    /// Rate limit of warnings caused by what others send.
    pub(crate) warnings: OutsideWarnings,
    /// Markers of our loop cover in flight (see [`CoverMarkers`]).
    pub(crate) cover_markers: CoverMarkers,
    /// Loop cover packets built ahead, in batches, for the next Poisson
    /// slots (see `Client::send_cover`).
    pub(crate) cover_reserve: VecDeque<(nymd_proto::mixpacket::MixPacket, [u8; 32])>,
    /// The outbox journal, and for each message journalled there the
    /// number of its fragments not acknowledged yet.
    pub(crate) journal: Option<Box<dyn Journal>>,
    pub(crate) journalled: BTreeMap<u64, usize>,
    /// The reply state changed since the last snapshot was taken.
    pub(crate) replies_dirty: bool,

    next_main: Instant,
    next_cover: Instant,
    next_housekeeping: Instant,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("own", &self.own.to_string())
            .field("link", &self.link)
            .field("queued", &self.lanes.queued())
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A core with nothing queued and the gateway link down.
    pub fn new(p: ClientParams) -> Self {
        let now = p.now;
        let own_gateway = p.own.gateway().to_bytes();
        let mut reassembler = Reassembler::new(p.config.reassembly);
        let keep = p.config.reassembly.recently_completed;
        let seeded = &p.config.completed_sets;
        let seeded = &seeded[seeded.len().saturating_sub(keep)..];
        for &id in seeded {
            reassembler.remember_completed(id);
        }
        p.published.note_completed(seeded, keep, false);
        let budget = p.budget;
        let account = |bound: usize| Account::new(budget.clone(), bound);
        let reassembly_bytes = account(p.config.reassembly.max_buffered_bytes);
        let reply_keys = ReplyKeys::new(account(p.config.reply_key_bytes));
        let surb_bytes = account(p.config.surb_store_bytes);
        let event_bytes = account(p.config.received_buffer_bytes);
        let warnings = OutsideWarnings::new(
            p.config.warning_interval,
            p.config.warnings_per_interval,
            now,
        );
        let sender_tags = SenderTags::new(p.config.reply_surbs.max_sender_tags);
        let mut rng = StdRng::from_seed(p.seed);
        let next_main = now + exp_sample(&mut rng, p.config.message_sending_average_delay);
        let next_cover = now + exp_sample(&mut rng, p.config.loop_cover_average_delay);
        Self {
            keys: p.keys,
            own: p.own,
            own_gateway,
            config: p.config,
            rng,
            now,
            topology: None,
            published: p.published,
            link: Link::Down,
            claim_outstanding: false,
            transmits: VecDeque::new(),
            lanes: Lanes::default(),
            pending: BTreeMap::new(),
            in_flight: 0,
            timers: Timers::default(),
            next_message: 0,
            reassembler,
            reassembly_bytes,
            reply_keys,
            sender_tags,
            stores: BTreeMap::new(),
            sessions: BTreeMap::new(),
            session_lanes: BTreeMap::new(),
            surb_bytes,
            events: VecDeque::new(),
            event_bytes,
            warnings,
            cover_markers: CoverMarkers::default(),
            cover_reserve: VecDeque::new(),
            journal: p.journal,
            journalled: BTreeMap::new(),
            replies_dirty: false,
            next_main,
            next_cover,
            next_housekeeping: now + HOUSEKEEPING,
        }
    }

    /// This identity's address.
    pub fn address(&self) -> Recipient {
        self.own
    }

    /// The settings.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The counters the core publishes.
    pub fn published(&self) -> &Arc<Published> {
        &self.published
    }

    fn advance(&mut self, now: Instant) {
        // Time never goes back for the core, whatever its driver passes.
        self.now = self.now.max(now);
    }

    // ------------------------------------------------------------- inputs

    /// The network topology to route over (`None`: none is usable; packets
    /// then wait).
    pub fn set_topology(&mut self, now: Instant, topology: Option<Arc<NymTopology>>) {
        self.advance(now);
        self.topology = topology;
        // Built over the old routes and key rotation.
        self.cover_reserve.clear();
    }

    /// The topology in use.
    pub fn topology(&self) -> Option<&Arc<NymTopology>> {
        self.topology.as_ref()
    }

    /// The gateway session is up (authenticated) with this protocol version
    /// and bandwidth.
    pub fn handle_connected(&mut self, now: Instant, protocol: ProtocolVersion, bandwidth: i64) {
        self.advance(now);
        self.link = Link::Up(protocol);
        self.claim_outstanding = false;
        let s = &self.published.stats;
        s.bandwidth_remaining.store(bandwidth, Ordering::Relaxed);
        s.set_state(GatewayState::Connected);
        self.emit(ClientEvent::GatewayStatus(GatewayState::Connected));
    }

    /// The gateway session is gone; the driver reconnects. What was not
    /// taken for sending is dropped; fragments among it are sent again
    /// without counting as retransmissions.
    pub fn handle_disconnected(&mut self, now: Instant) {
        self.advance(now);
        if self.link == Link::Down {
            return;
        }
        self.link = Link::Down;
        for (_, id) in std::mem::take(&mut self.transmits) {
            if let Some(p) = id.and_then(|id| self.pending.get_mut(&id)) {
                p.reached_gateway = false;
            }
        }
        self.published.stats.set_state(GatewayState::Reconnecting);
        self.emit(ClientEvent::GatewayStatus(GatewayState::Reconnecting));
    }

    /// A plaintext the gateway pushed (an ack or a message), decrypted
    /// from its frame by the driver.
    pub fn handle_gateway_push(&mut self, now: Instant, plaintext: Vec<u8>) {
        self.advance(now);
        self.on_pushed(plaintext);
    }

    /// A control response from the gateway (bandwidth, errors).
    pub fn handle_gateway_response(&mut self, now: Instant, response: ServerResponse) {
        self.advance(now);
        self.on_response(response);
    }

    /// An app's request. Check [`Client::accepts_requests`] first: the core
    /// takes what it is given, so the driver provides the backpressure.
    pub fn handle_app(&mut self, now: Instant, request: OutgoingMessage) {
        self.advance(now);
        self.on_request(request);
    }

    /// The app gave up a connection: drop the packets still queued on its
    /// lane.
    pub fn close_lane(&mut self, now: Instant, conn: u64) {
        self.advance(now);
        self.end_session(conn);
        for id in self.lanes.close(conn) {
            self.published.lane_adjust(Lane::Connection(conn), -1);
            if let Some(p) = self.pending.remove(&id) {
                if let Some(k) = p.timer {
                    self.timers.remove(&k);
                }
                self.out_of_flight(&p);
                self.message_done(p.message);
            }
        }
    }

    /// Run what is due at `now`: ack timeouts, the Poisson streams,
    /// housekeeping.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.advance(now);
        let now = self.now;
        while let Some(id) = self.timers.pop_due(now) {
            self.on_ack_timeout(id);
        }
        if !self.config.disable_main_poisson && self.next_main <= now {
            let gap = exp_sample(&mut self.rng, self.config.message_sending_average_delay);
            self.next_main = next_deadline(self.next_main, gap, now);
            if self.can_send() && !self.send_next_real() {
                self.send_cover();
            }
        }
        if !self.config.disable_loop_cover && self.next_cover <= now {
            let gap = exp_sample(&mut self.rng, self.config.loop_cover_average_delay);
            self.next_cover = next_deadline(self.next_cover, gap, now);
            if self.can_send() {
                self.send_cover();
            }
        }
        if self.next_housekeeping <= now {
            self.next_housekeeping = now + HOUSEKEEPING;
            self.housekeeping();
        }
        self.publish_counters();
    }

    // ------------------------------------------------------------ outputs

    /// When [`Client::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t = self.next_housekeeping;
        if let Some(a) = self.timers.next_deadline() {
            t = t.min(a);
        }
        if !self.config.disable_main_poisson {
            t = t.min(self.next_main);
        }
        if !self.config.disable_loop_cover {
            t = t.min(self.next_cover);
        }
        Some(t)
    }

    /// The next thing to send to the gateway. With the main Poisson stream
    /// off, queued packets are built here, as fast as the driver takes them.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        self.advance(now);
        if self.transmits.is_empty() && self.wants_to_transmit() {
            self.send_next_real();
            self.publish_counters();
        }
        self.transmits.pop_front().map(|(t, _)| t)
    }

    /// Whether [`Client::poll_transmit`] has something now: a transmission
    /// not taken yet, or (main Poisson stream off) queued packets to build:
    /// retransmissions, or new packets while fewer than
    /// [`Config::max_in_flight`] are out.
    pub fn wants_to_transmit(&self) -> bool {
        !self.transmits.is_empty()
            || (self.config.disable_main_poisson
                && self.link != Link::Down
                && self.topology.is_some()
                && (!self.lanes.retransmit.is_empty()
                    || (self.lanes.total > 0 && self.window_open())))
    }

    /// The next event for the apps (messages, errors, link changes).
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        let ev = self.events.pop_front()?;
        self.event_bytes.give_back(ev.weight());
        Some(ev)
    }

    /// Whether events wait for [`Client::poll_event`].
    pub fn has_events(&self) -> bool {
        !self.events.is_empty()
    }

    /// Whether the core takes new app requests now: its send queue is below
    /// `max_queued_packets` and the journal keeps up with the disk.
    pub fn accepts_requests(&self) -> bool {
        self.lanes.queued() < self.config.max_queued_packets
            && self.journal.as_ref().is_none_or(|j| j.has_room())
    }

    /// Whether the driver should read what the gateway pushes now: the
    /// events not taken yet are within their bound and the daemon's memory
    /// budget (otherwise the gateway keeps what comes meanwhile).
    pub fn accepts_gateway_input(&self) -> bool {
        self.event_bytes.has_room()
    }

    /// Whether the reply state changed since the last
    /// [`Client::replies_snapshot`].
    pub fn replies_changed(&self) -> bool {
        self.replies_dirty
    }

    /// The reply state to persist (sender tags, reply keys, SURBs received
    /// per tag); marks it saved. `unix_ms`: the wall clock, written into
    /// the snapshot so that the next run can age the keys.
    pub fn replies_snapshot(&mut self, unix_ms: u64) -> Snapshot {
        self.replies_dirty = false;
        self.snapshot(unix_ms)
    }

    /// Take back messages journalled by a previous run (see
    /// [`crate::journal`]), then the reply state it saved.
    pub fn restore(
        &mut self,
        now: Instant,
        sends: Vec<Journalled>,
        replies: Option<Snapshot>,
        journalled_replies: Vec<JournalledReply>,
    ) {
        self.advance(now);
        self.restore_sends(sends);
        if let Some(snap) = replies {
            self.restore_replies(snap);
        }
        self.restore_journalled_replies(journalled_replies);
        self.publish_counters();
    }

    /// Close the journal (waiting for what it holds to be written), for a
    /// driver that stops.
    pub fn take_journal(&mut self) -> Option<Box<dyn Journal>> {
        self.journal.take()
    }

    /// Counters of what is held, for tests and the simulation: (queued
    /// packets, pending fragments, armed ack timers, events, stored SURBs,
    /// reply keys, sender tags, reassembly bytes).
    pub fn occupancy(&self) -> Occupancy {
        Occupancy {
            queued_packets: self.lanes.queued(),
            pending_fragments: self.pending.len(),
            in_flight: self.in_flight,
            ack_timers: self.timers.len(),
            events: self.events.len(),
            event_bytes: self.event_bytes.used(),
            stored_surbs: self.stores.values().map(|s| s.surbs.len()).sum(),
            surb_bytes: self.surb_bytes.used(),
            sender_tags: self.sender_tags.len(),
            reply_keys: self.reply_keys.len(),
            reply_key_bytes: self.reply_keys.bytes(),
            reassembly_bytes: self.reassembler.buffered_bytes(),
            journalled_messages: self.journalled.len(),
            transmits: self.transmits.len(),
        }
    }

    // ------------------------------------------------------------ helpers

    /// Connected, and the driver took what was there to send.
    pub(crate) fn can_send(&self) -> bool {
        self.link != Link::Down && self.transmits.len() < MAX_TRANSMITS
    }

    /// Queue a MixPacket for the gateway; false when the link is down.
    pub(crate) fn transmit_packet(
        &mut self,
        mix_packet: &nymd_proto::mixpacket::MixPacket,
        fragment: Option<FragmentId>,
    ) -> Option<usize> {
        let Link::Up(protocol) = self.link else {
            return None;
        };
        let bytes = if uses_forward_sphinx_v2(protocol) {
            mix_packet.to_v2_bytes()
        } else {
            mix_packet.to_v1_bytes()
        };
        let len = bytes.len();
        self.transmits.push_back((
            Transmit::Packet {
                bytes,
                cover: fragment.is_none(),
            },
            fragment,
        ));
        Some(len)
    }

    pub(crate) fn emit(&mut self, ev: ClientEvent) {
        self.event_bytes.force_take(ev.weight());
        self.events.push_back(ev);
    }

    pub(crate) fn emit_error(&mut self, kind: ErrorKind, message: String, lane: Option<Lane>) {
        // The message may name a recipient: addresses are logged at debug
        // level only (the daemon reports the error at warn without it).
        tracing::debug!(?kind, %message, "client error");
        self.emit(ClientEvent::Error {
            kind,
            message,
            lane,
        });
    }

    /// Count a warning caused by what another party sent, and log it unless
    /// too many came in this interval (see [`OutsideWarnings`]).
    pub(crate) fn outside_warning(&mut self, what: &str, detail: &dyn std::fmt::Display) {
        if self.warnings.allow(self.now) {
            tracing::warn!(%detail, "{what}");
        }
    }

    /// Publish what the bounded stores hold (every housekeeping tick).
    fn publish_memory(&self) {
        let Ok(mut m) = self.published.stats.memory.lock() else {
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

    /// Publish the queue counters (after every call that changes them).
    pub(crate) fn publish_counters(&self) {
        let s = &self.published.stats;
        s.outside_warnings
            .store(self.warnings.total(), Ordering::Relaxed);
        s.queued_packets
            .store(self.lanes.queued() as u64, Ordering::Relaxed);
        s.peak_queued_packets
            .store(self.lanes.peak as u64, Ordering::Relaxed);
        s.unacked_fragments
            .store(self.timers.len() as u64, Ordering::Relaxed);
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
            self.published
                .stats
                .bandwidth_remaining
                .store(rem, Ordering::Relaxed);
            if bandwidth::client_should_claim(rem)
                && !self.claim_outstanding
                && self.link != Link::Down
            {
                let text = ClientControlRequest::ClaimFreeTestnetBandwidth.to_json();
                self.transmits.push_back((Transmit::Control(text), None));
                self.claim_outstanding = true;
            }
        }
    }

    fn housekeeping(&mut self) {
        let now = self.now;
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

/// What a core holds (see [`Client::occupancy`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Occupancy {
    /// Packets queued for sending, including replies waiting for SURBs.
    pub queued_packets: usize,
    /// Fragments queued or awaiting their ack.
    pub pending_fragments: usize,
    /// Real fragments taken from their lanes and not acknowledged yet
    /// (bounded by [`Config::max_in_flight`]).
    pub in_flight: usize,
    /// Ack timers armed.
    pub ack_timers: usize,
    /// Events not taken by the driver.
    pub events: usize,
    /// Their accounted bytes.
    pub event_bytes: usize,
    /// Reply SURBs received and stored.
    pub stored_surbs: usize,
    /// Their accounted bytes.
    pub surb_bytes: usize,
    /// Recipients with a sender tag.
    pub sender_tags: usize,
    /// Keys of reply SURBs handed out.
    pub reply_keys: usize,
    /// Their accounted bytes.
    pub reply_key_bytes: usize,
    /// Bytes of incomplete messages.
    pub reassembly_bytes: usize,
    /// Messages in the journal not finished yet.
    pub journalled_messages: usize,
    /// Transmissions not taken by the driver.
    pub transmits: usize,
}
