//! Keys, requests, events and statistics of a client core.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nymd_proto::keys::{AckKey, EncryptionKeyPair, IdentityKeyPair, VerifyingKey};
use nymd_proto::{Recipient, SenderTag};
use rand::{CryptoRng, RngCore};

pub(crate) fn bs58_str(b: &[u8]) -> String {
    bs58::encode(b).into_string()
}

/// The long-term keys of one client identity.
#[derive(Clone)]
pub struct ClientKeys {
    /// ed25519 identity (the address's first part; the gateway knows the
    /// client by it).
    pub identity: IdentityKeyPair,
    /// x25519 key that packets to us are encrypted for.
    pub encryption: EncryptionKeyPair,
    /// AES key of our acks.
    pub ack: AckKey,
}

impl std::fmt::Debug for ClientKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientKeys")
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

impl ClientKeys {
    /// Fresh keys.
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        Self {
            identity: IdentityKeyPair::generate(rng),
            encryption: EncryptionKeyPair::generate(rng),
            ack: AckKey::generate(rng),
        }
    }

    /// Our address behind `gateway`.
    pub fn address(&self, gateway: VerifyingKey) -> Recipient {
        Recipient::new(self.identity.public(), self.encryption.public(), gateway)
    }
}

/// A sending lane: nym-client's general lane or a per-connection lane
/// (connection ids come from the app).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lane {
    /// No connection id.
    General,
    /// The app's connection id.
    Connection(u64),
}

/// A message to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutgoingMessage {
    /// `send`: the recipient sees no sender tag.
    Plain {
        /// Recipient.
        recipient: Recipient,
        /// Bytes.
        data: Vec<u8>,
        /// Lane.
        lane: Lane,
    },
    /// `sendAnonymous`: attaches `reply_surbs` reply SURBs and our sender
    /// tag for this recipient.
    Anonymous {
        /// Recipient.
        recipient: Recipient,
        /// Bytes.
        data: Vec<u8>,
        /// SURBs to attach.
        reply_surbs: u32,
        /// Lane.
        lane: Lane,
    },
    /// `reply`: through SURBs received from `sender_tag`.
    Reply {
        /// Who to answer.
        sender_tag: SenderTag,
        /// Bytes.
        data: Vec<u8>,
        /// Lane.
        lane: Lane,
    },
}

impl OutgoingMessage {
    /// The lane it is sent on.
    pub fn lane(&self) -> Lane {
        match self {
            Self::Plain { lane, .. } | Self::Anonymous { lane, .. } | Self::Reply { lane, .. } => {
                *lane
            }
        }
    }
}

/// A message that arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMessage {
    /// The bytes.
    pub data: Vec<u8>,
    /// Present when the sender used `sendAnonymous`.
    pub sender_tag: Option<SenderTag>,
}

/// Failures an app should hear about (stock nym-client only logs them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The recipient's gateway is not in the current topology.
    RecipientGatewayUnknown,
    /// A fragment was retransmitted `max_retransmissions` times without an
    /// ack; the message was abandoned.
    RetransmissionsExhausted,
    /// No reply SURBs for the sender tag, and none could be obtained.
    NoReplySurbs,
    /// No usable topology: packets cannot be built.
    TopologyUnavailable,
    /// Any other failure to prepare a message.
    SendFailed,
}

/// Gateway connection state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum GatewayState {
    /// Authenticated and forwarding.
    Connected,
    /// Lost; reconnecting with backoff.
    #[default]
    Reconnecting,
    /// Shut down.
    Closed,
}

impl GatewayState {
    fn to_u8(self) -> u8 {
        match self {
            GatewayState::Connected => 0,
            GatewayState::Reconnecting => 1,
            GatewayState::Closed => 2,
        }
    }

    fn from_u8(v: u8) -> Self {
        match v {
            0 => GatewayState::Connected,
            1 => GatewayState::Reconnecting,
            _ => GatewayState::Closed,
        }
    }
}

/// What a subscriber receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// A reassembled message.
    Received(ReceivedMessage),
    /// Something the app should be told about.
    Error {
        /// Category.
        kind: ErrorKind,
        /// Detail.
        message: String,
        /// The lane of the affected message, when known.
        lane: Option<Lane>,
    },
    /// The gateway connection changed state.
    GatewayStatus(GatewayState),
}

impl ClientEvent {
    pub fn weight(&self) -> usize {
        64 + match self {
            ClientEvent::Received(m) => m.data.len(),
            ClientEvent::Error { message, .. } => message.len(),
            ClientEvent::GatewayStatus(_) => 0,
        }
    }
}

/// A snapshot of counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// Real (data, reply, ack-requesting) packets sent.
    pub real_packets_sent: u64,
    /// Bytes of their gateway frames.
    pub real_bytes_sent: u64,
    /// Loop cover packets sent.
    pub cover_packets_sent: u64,
    /// Bytes of their gateway frames.
    pub cover_bytes_sent: u64,
    /// Real message packets received.
    pub real_packets_received: u64,
    /// Bytes of those pushed plaintexts.
    pub real_bytes_received: u64,
    /// Loop cover packets received.
    pub cover_packets_received: u64,
    /// Bytes of those pushed plaintexts.
    pub cover_bytes_received: u64,
    /// Acks of real fragments received.
    pub acks_received: u64,
    /// Fragments retransmitted.
    pub retransmissions: u64,
    /// Whole messages delivered.
    pub messages_received: u64,
    /// Received fragments ignored as duplicates: their place in a message
    /// was filled already, or their message was delivered recently (a
    /// retransmission after a lost ack), also in an earlier run
    /// ([`crate::ClientConfig::completed_sets`]).
    pub duplicate_fragments: u64,
    /// Packets queued for sending (all lanes, including replies waiting
    /// for SURBs).
    pub queued_packets: u64,
    /// The most packets ever queued at once (the high-water mark of
    /// `queued_packets`, kept by the queue at every push, so it misses no
    /// peak between two snapshots).
    pub peak_queued_packets: u64,
    /// Fragments sent but not acknowledged yet.
    pub unacked_fragments: u64,
    /// Messages written to the persisted outbox and not yet acknowledged
    /// (sent again if the client restarts now); 0 without an outbox.
    pub outbox_messages: u64,
    /// Reply keys of the persisted reply state found expired when the
    /// client started (older than `max_key_age`).
    pub reply_keys_expired_on_load: u64,
    /// Received reply SURBs of the persisted reply state dropped when the
    /// client started because their key rotation is gone.
    pub reply_surbs_rotated_on_load: u64,
    /// Gateway connection state.
    pub gateway_state: GatewayState,
    /// Last measured websocket round trip to the gateway.
    pub gateway_rtt: Option<Duration>,
    /// Successful reconnections.
    pub reconnects: u64,
    /// Bandwidth the gateway last reported, bytes.
    pub bandwidth_remaining: i64,
    /// Requests for more reply SURBs that were answered.
    pub surb_requests_answered: u64,
    /// Requests for more reply SURBs that were refused: not through one of
    /// our SURBs, naming a recipient we never sent anonymous messages to
    /// (or another than the SURB's), over the sender tag's rate limit, or
    /// while the send queue was half full.
    pub surb_requests_refused: u64,
    /// SURBs handed out in answers to those requests.
    pub surbs_handed_out: u64,
    /// Warnings caused by what others sent (malformed or unexpected
    /// messages, refused requests, incomplete messages dropped), counted
    /// also when rate-limiting kept them out of the log.
    pub outside_warnings: u64,
    /// What the bounded stores hold (refreshed every second).
    pub memory: MemoryUse,
}

/// Bytes the stores that other parties fill hold, against their bounds
/// (each store also draws on the daemon's shared budget).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryUse {
    /// Fragments of incomplete messages.
    pub reassembly_bytes: u64,
    /// Bound of `reassembly_bytes`.
    pub reassembly_bound: u64,
    /// Reply SURBs received from others.
    pub surb_store_bytes: u64,
    /// Bound of `surb_store_bytes`.
    pub surb_store_bound: u64,
    /// How many SURBs that is.
    pub stored_surbs: u64,
    /// Sender tags they came from.
    pub surb_tags: u64,
    /// Keys of the reply SURBs we handed out.
    pub reply_key_bytes: u64,
    /// Bound of `reply_key_bytes`.
    pub reply_key_bound: u64,
    /// How many keys that is.
    pub reply_keys: u64,
    /// Received messages (and events) not yet taken by the subscriber.
    pub received_bytes: u64,
    /// Bound of `received_bytes`.
    pub received_bound: u64,
    /// Recipients we keep a sender tag for.
    pub sender_tags: u64,
}

impl MemoryUse {
    /// Bytes held over all the stores.
    pub fn total(&self) -> u64 {
        self.reassembly_bytes + self.surb_store_bytes + self.reply_key_bytes + self.received_bytes
    }
}

/// Counters a core keeps, readable from other threads ([`Stats::snapshot`]).
#[derive(Debug, Default)]
pub struct Stats {
    pub real_packets_sent: AtomicU64,
    pub real_bytes_sent: AtomicU64,
    pub cover_packets_sent: AtomicU64,
    pub cover_bytes_sent: AtomicU64,
    pub real_packets_received: AtomicU64,
    pub real_bytes_received: AtomicU64,
    pub cover_packets_received: AtomicU64,
    pub cover_bytes_received: AtomicU64,
    pub acks_received: AtomicU64,
    pub retransmissions: AtomicU64,
    pub messages_received: AtomicU64,
    pub duplicate_fragments: AtomicU64,
    pub queued_packets: AtomicU64,
    pub peak_queued_packets: AtomicU64,
    pub unacked_fragments: AtomicU64,
    /// Written by the outbox's writer thread after each synced batch.
    pub outbox_messages: Arc<AtomicU64>,
    pub reply_keys_expired_on_load: AtomicU64,
    pub reply_surbs_rotated_on_load: AtomicU64,
    pub gateway_state: AtomicU8,
    pub gateway_rtt_us: AtomicU64,
    pub reconnects: AtomicU64,
    pub bandwidth_remaining: AtomicI64,
    pub surb_requests_answered: AtomicU64,
    pub surb_requests_refused: AtomicU64,
    pub surbs_handed_out: AtomicU64,
    pub outside_warnings: AtomicU64,
    pub memory: Mutex<MemoryUse>,
}

impl Stats {
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    pub fn set_state(&self, s: GatewayState) {
        self.gateway_state.store(s.to_u8(), Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> ClientStats {
        let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let rtt = l(&self.gateway_rtt_us);
        ClientStats {
            real_packets_sent: l(&self.real_packets_sent),
            real_bytes_sent: l(&self.real_bytes_sent),
            cover_packets_sent: l(&self.cover_packets_sent),
            cover_bytes_sent: l(&self.cover_bytes_sent),
            real_packets_received: l(&self.real_packets_received),
            real_bytes_received: l(&self.real_bytes_received),
            cover_packets_received: l(&self.cover_packets_received),
            cover_bytes_received: l(&self.cover_bytes_received),
            acks_received: l(&self.acks_received),
            retransmissions: l(&self.retransmissions),
            messages_received: l(&self.messages_received),
            duplicate_fragments: l(&self.duplicate_fragments),
            queued_packets: l(&self.queued_packets),
            peak_queued_packets: l(&self.peak_queued_packets),
            unacked_fragments: l(&self.unacked_fragments),
            outbox_messages: l(&self.outbox_messages),
            reply_keys_expired_on_load: l(&self.reply_keys_expired_on_load),
            reply_surbs_rotated_on_load: l(&self.reply_surbs_rotated_on_load),
            gateway_state: GatewayState::from_u8(self.gateway_state.load(Ordering::Relaxed)),
            gateway_rtt: (rtt > 0).then(|| Duration::from_micros(rtt)),
            reconnects: l(&self.reconnects),
            bandwidth_remaining: self.bandwidth_remaining.load(Ordering::Relaxed),
            surb_requests_answered: l(&self.surb_requests_answered),
            surb_requests_refused: l(&self.surb_requests_refused),
            surbs_handed_out: l(&self.surbs_handed_out),
            outside_warnings: l(&self.outside_warnings),
            memory: self.memory.lock().map(|m| m.clone()).unwrap_or_default(),
        }
    }
}

/// What a core publishes for other threads (its driver's handle): the
/// counters, the packets queued per connection lane, and the set ids of
/// the messages it delivered.
#[derive(Debug, Default)]
pub struct Published {
    /// Counters.
    pub stats: Stats,
    lanes: Mutex<HashMap<u64, usize>>,
    completed: Mutex<VecDeque<i32>>,
    completions: AtomicU64,
}

impl Published {
    /// Packets queued on a connection lane, including replies waiting for
    /// reply SURBs, plus the lane's messages its driver has not taken yet
    /// (one each, see [`Published::lane_in_transit`]).
    pub fn lane_queue_length(&self, conn: u64) -> usize {
        self.lanes
            .lock()
            .map(|m| m.get(&conn).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    /// Set ids of the messages delivered, oldest first (bounded by
    /// [`crate::Config::reassembly`]'s `recently_completed`): pass them as
    /// [`crate::Config::completed_sets`] to the next run, so that a
    /// retransmission of a message delivered before a restart is not
    /// delivered again.
    pub fn completed_sets(&self) -> Vec<i32> {
        self.completed
            .lock()
            .map(|c| c.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Messages completed since the core was made (changes when
    /// [`Published::completed_sets`] does).
    pub fn completions(&self) -> u64 {
        self.completions.load(Ordering::Relaxed)
    }

    /// A message for `lane` entered (`+1`) or left (`-1`) its driver's
    /// request queue. While there it counts as one packet of the lane, so
    /// [`Published::lane_queue_length`] does not read 0 while a message of
    /// the lane waits to be taken (a connection that waits for its lane to
    /// empty before closing it would otherwise drop its last message).
    pub fn lane_in_transit(&self, lane: Lane, delta: isize) {
        self.lane_adjust(lane, delta);
    }

    pub(crate) fn lane_adjust(&self, lane: Lane, delta: isize) {
        let Lane::Connection(c) = lane else {
            return;
        };
        if let Ok(mut m) = self.lanes.lock() {
            let e = m.entry(c).or_insert(0);
            *e = e.saturating_add_signed(delta);
            if *e == 0 {
                m.remove(&c);
            }
        }
    }

    /// Add completed set ids, keeping the newest `keep`.
    pub(crate) fn note_completed(&self, set_ids: &[i32], keep: usize, count: bool) {
        if let Ok(mut c) = self.completed.lock() {
            c.extend(set_ids.iter().copied());
            while c.len() > keep {
                c.pop_front();
            }
        }
        if count {
            self.completions.fetch_add(1, Ordering::Relaxed);
        }
    }
}
