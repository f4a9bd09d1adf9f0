//! The SOCKS5 proxy of an identity: nym-socks5-client's job, inside nymd.
//!
//! A program connects to the identity's SOCKS port (SOCKS4, SOCKS4a or
//! SOCKS5 CONNECT) and each connection is carried through the mixnet to a
//! network requester (the `provider` of `[socks5]`), which opens the TCP
//! connection at the exit. The bytes on the wire are Nym 2026.9's
//! (`nymd_proto::socks5`).
//!
//! - [`server`]: the listener: who may connect (the identity's users, as on
//!   its app port), the connection cap, the SOCKS handshake;
//! - [`conn`]: one proxied connection: Connect, the requester's answer, the
//!   data both ways with sequence numbers, keepalives, closing;
//! - [`SocksHub`] (one per running identity, kept across client restarts):
//!   the identity's current mixnet client, the open connections by id (so
//!   the runner can hand them the requester's answers, [`SocksHub::route`]),
//!   what they hold of those answers (charged to the daemon's memory
//!   budget, bounded per identity: [`SocksHub::has_room`]), and the
//!   counters.
//!
//! Lanes: every connection sends on a lane of its own in the mixnet client,
//! numbered from [`LANE_BASE`] (`2^63`) up; the runner numbers the app
//! sessions' lanes from 1, so the two never meet. The connection id on the
//! wire is random and independent of the lane.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nymd_mixnet::{Account, ClientSender, MemoryBudget};
use nymd_proto::socks5::wire::{ProviderResponse, SocketData, Socks5Response};
use nymd_proto::socks5::ConnectionId;
use tokio::sync::{mpsc, watch, Notify};
use tokio_util::sync::CancellationToken;

pub mod conn;
pub mod server;

pub use server::{serve, SocksServerConfig};

/// The first lane of SOCKS connections; app sessions' lanes stay below.
pub const LANE_BASE: u64 = 1 << 63;
/// Time a client has to complete its SOCKS handshake.
pub const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(10);
/// Connections in their handshake, beyond `max_connections`, before more
/// are closed at once.
pub const HANDSHAKE_SLACK: usize = 64;
/// Largest read from a local socket: one Send (Nym reads 16 KiB).
pub const MAX_READ: usize = 16 * 1024;
/// Reads from the app wait while the connection's lane holds more packets
/// than this (Nym's 30).
pub const LANE_BACKPRESSURE: usize = 30;
/// Reads from the app also wait while the identity's client has more than
/// this many messages not yet taken into a lane (of any connection or app).
pub const MAX_QUEUED_REQUESTS: usize = 4;
/// How often a connection held back by its lane looks again.
pub const LANE_POLL: Duration = Duration::from_millis(100);
/// An empty Send after this long without data (Nym's 60 s).
pub const KEEPALIVE: Duration = Duration::from_secs(60);
/// A network requester sends something on each open connection at least
/// this often (its keepalive, Nym's 60 s). Nothing from it for this long
/// plus `connect_timeout_secs` (the time its messages may take), while
/// this identity receives, means its answers do not reach us: the
/// connection is closed then rather than at its idle timeout.
pub const REQUESTER_KEEPALIVE: Duration = Duration::from_secs(60);
/// After the app closed its side, answers are still written for this long
/// after the last one arrived (and once the close has left the lane).
pub const LOCAL_EOF_GRACE: Duration = Duration::from_secs(5);
/// A closed connection's last messages may leave its lane for this long
/// before the lane is dropped.
pub const LANE_DRAIN: Duration = Duration::from_secs(5);
/// Reply SURBs sent with an anonymous Connect (Nym's 20).
pub const CONNECT_SURBS: u32 = 20;
/// Reply SURBs sent with every anonymous Send (Nym's 3).
pub const SEND_SURBS: u32 = 3;
/// Bytes from the requester one connection may hold (not yet written to
/// the app, or out of order); beyond it the connection is closed. All of
/// it may be out of order (waiting for a lost message to be sent again):
/// at 1,000 packets/s a lossy path holds megabytes behind one loss, and
/// the memory is charged to the daemon's budget and bounded per identity
/// ([`MAX_BUFFERED_BYTES`]).
pub const MAX_PENDING_BYTES: usize = 8 << 20;
/// What a user can do about a connection closed because its answers wait
/// out of order for lost ones.
pub const LOSSY_PATH_ADVICE: &str = "the mixnet path from the network requester is losing packets (the rest of its answers wait for lost ones to be sent again); retry, and if it keeps happening choose another network requester (nymctl socks5 ID provider ADDRESS, or auto)";
/// Bytes from the requester all SOCKS connections of one identity may hold
/// together (not yet written to their programs, or out of order), charged
/// to the daemon's memory budget. At this bound, or when the budget is used
/// up, the runner takes nothing more from the mixnet client until programs
/// read ([`SocksHub::has_room`]).
pub const MAX_BUFFERED_BYTES: usize = 64 << 20;
/// While the identity's own bound ([`MAX_BUFFERED_BYTES`]) keeps the runner
/// from taking messages this long, the connection holding the most is
/// closed ([`SocksHub::relieve`]): a program that stopped reading holds up
/// the identity's apps and other connections only this long.
pub const FULL_GRACE: Duration = Duration::from_secs(10);
/// Early data an app may send before its CONNECT is answered.
pub const MAX_EARLY_DATA: usize = 64 * 1024;
/// Ids of closed connections remembered, so that the requester's late
/// answers to them are dropped rather than handed to the apps.
pub const RECENTLY_CLOSED: usize = 4096;

/// What the runner hands a connection.
#[derive(Debug)]
pub enum FromMixnet {
    /// NetworkData: the target's bytes (or the requester's failure to
    /// connect: seq 0, closed, empty).
    Data(SocketData),
    /// ConnectionError: the requester refused (its exit policy).
    Refused(String),
    /// The mixnet client could not send on the connection's lane.
    SendFailed(String),
}

/// The counters of an identity's SOCKS side.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SocksStats {
    /// Connections open now (past their handshake).
    pub open: u64,
    /// Connections accepted since the identity started.
    pub total: u64,
    /// Connections refused here: the user check, the cap, a bad handshake.
    pub refused: u64,
    /// CONNECTs that failed: refused by the requester, its connect failed,
    /// no answer in time, the requester unreachable.
    pub failed: u64,
    /// Bytes read from apps and sent into the mixnet.
    pub bytes_sent: u64,
    /// Bytes received from the mixnet and written to apps.
    pub bytes_received: u64,
    /// Bytes of the requester's answers held now for the programs (all
    /// connections), charged to the daemon's memory budget.
    pub buffered: u64,
    /// The bound of `buffered`.
    pub buffered_bound: u64,
}

#[derive(Debug, Default)]
struct Counters {
    open: AtomicU64,
    total: AtomicU64,
    refused: AtomicU64,
    failed: AtomicU64,
    bytes_sent: AtomicU64,
    bytes_received: AtomicU64,
}

/// What all connections of an identity hold of the requester's answers:
/// an account of the daemon's memory budget, bounded by
/// [`MAX_BUFFERED_BYTES`].
#[derive(Debug)]
struct Buffers {
    account: Mutex<Account>,
    /// Told when bytes are given back.
    room: Notify,
}

impl Buffers {
    fn take(&self, n: usize) {
        // Admitted while there was room: never refused (the runner checks
        // `has_room` before it takes a message).
        lock(&self.account).force_take(n);
    }

    fn give_back(&self, n: usize) {
        if n == 0 {
            return;
        }
        lock(&self.account).give_back(n);
        self.room.notify_waiters();
    }

    fn has_room(&self) -> bool {
        lock(&self.account).has_room()
    }
}

/// Bytes of one connection's answers that nymd holds: handed over by the
/// runner and not yet written to the program, nor dropped. They are
/// charged to the identity's SOCKS account (and so to the daemon's memory
/// budget) until released; what is left when the connection is
/// unregistered goes back then.
#[derive(Debug)]
pub struct Pending {
    bytes: AtomicUsize,
    /// Of those, bytes waiting out of order (as the connection last saw).
    out_of_order: AtomicUsize,
    buffers: Arc<Buffers>,
}

impl Pending {
    /// Bytes held now.
    pub fn get(&self) -> usize {
        self.bytes.load(Ordering::Acquire)
    }

    /// `n` bytes were written to the program, or dropped (duplicates).
    pub fn release(&self, n: usize) {
        let before = self
            .bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |b| {
                Some(b.saturating_sub(n))
            })
            .unwrap_or_else(|b| b);
        self.buffers.give_back(before.min(n));
    }

    /// The connection's receiver holds `n` bytes out of order.
    pub fn set_out_of_order(&self, n: usize) {
        self.out_of_order.store(n, Ordering::Release);
    }

    /// Bytes held out of order.
    pub fn out_of_order(&self) -> usize {
        self.out_of_order.load(Ordering::Acquire)
    }

    /// `n` more bytes are held; the new total.
    fn add(&self, n: usize) -> usize {
        self.buffers.take(n);
        self.bytes.fetch_add(n, Ordering::AcqRel) + n
    }

    fn release_all(&self) {
        let n = self.bytes.swap(0, Ordering::AcqRel);
        self.buffers.give_back(n);
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        // A connection dropped without unregistering (the identity
        // stopped) leaves nothing charged.
        self.release_all();
    }
}

/// An open connection, as the runner sees it.
#[derive(Debug)]
struct Registered {
    tx: mpsc::UnboundedSender<FromMixnet>,
    /// Bytes handed over and not yet written to the app or dropped.
    pending: Arc<Pending>,
    cancel: CancellationToken,
    lane: u64,
}

#[derive(Debug, Default)]
struct Conns {
    open: HashMap<ConnectionId, Registered>,
    by_lane: HashMap<u64, ConnectionId>,
    closed: VecDeque<ConnectionId>,
    closed_set: HashSet<ConnectionId>,
}

/// A connection's side of its registration.
#[derive(Debug)]
pub struct Registration {
    /// The id on the wire.
    pub conn_id: ConnectionId,
    /// Its lane in the mixnet client.
    pub lane: u64,
    /// The requester's answers.
    pub rx: mpsc::UnboundedReceiver<FromMixnet>,
    /// Bytes of those answers not yet written or dropped (the connection
    /// releases them).
    pub pending: Arc<Pending>,
}

/// Whether the requester's messages can reach the connections now.
#[derive(Debug, Default)]
struct Receiving {
    /// The client is connected to its gateway.
    gateway_up: bool,
    /// The runner takes messages from the client (nothing holds it back).
    intake: bool,
    /// Since when both hold; `None` while either does not.
    since: Option<tokio::time::Instant>,
}

impl Receiving {
    fn update(&mut self, gateway_up: Option<bool>, intake: Option<bool>) {
        self.gateway_up = gateway_up.unwrap_or(self.gateway_up);
        self.intake = intake.unwrap_or(self.intake);
        match (self.gateway_up && self.intake, self.since) {
            (true, None) => self.since = Some(tokio::time::Instant::now()),
            (false, Some(_)) => self.since = None,
            _ => {}
        }
    }
}

/// One identity's SOCKS side, shared by its runner and its connections.
#[derive(Debug)]
pub struct SocksHub {
    client: watch::Sender<Option<ClientSender>>,
    receiving: Mutex<Receiving>,
    conns: Mutex<Conns>,
    next_lane: AtomicU64,
    counters: Counters,
    buffers: Arc<Buffers>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every update leaves the maps consistent; a panic elsewhere does not
    // make them unusable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl SocksHub {
    /// A hub without a client or connections, whose buffers have only
    /// their own bound ([`MAX_BUFFERED_BYTES`]).
    pub fn new() -> Arc<Self> {
        Self::with_budget(MemoryBudget::new(u64::MAX), MAX_BUFFERED_BYTES)
    }

    /// A hub whose connections' buffers draw on the daemon's memory
    /// `budget`, at most `bound` bytes together.
    pub fn with_budget(budget: Arc<MemoryBudget>, bound: usize) -> Arc<Self> {
        Arc::new(Self {
            client: watch::channel(None).0,
            receiving: Mutex::new(Receiving {
                intake: true,
                ..Receiving::default()
            }),
            conns: Mutex::default(),
            next_lane: AtomicU64::new(LANE_BASE),
            counters: Counters::default(),
            buffers: Arc::new(Buffers {
                account: Mutex::new(Account::new(budget, bound.max(1))),
                room: Notify::new(),
            }),
        })
    }

    /// Whether the runner may take another message from the mixnet
    /// client: the connections hold less than their bound, and the
    /// daemon's memory budget is not used up. While it may not, the
    /// messages stay with the client, which stops reading its gateway (the
    /// gateway keeps them); nothing is dropped.
    pub fn has_room(&self) -> bool {
        self.buffers.has_room()
    }

    /// Wait until connections give bytes back (their programs read) and
    /// [`SocksHub::has_room`] holds. Room the daemon's budget gets from
    /// elsewhere is not announced: callers look again now and then.
    pub async fn room(&self) {
        let notified = self.buffers.room.notified();
        if self.has_room() {
            return;
        }
        notified.await;
    }

    /// The connections hold their whole bound (not merely a daemon budget
    /// used up by others): close the open connection that holds the most,
    /// whose program reads slowest or not at all, so the identity can take
    /// messages again. True when one was closed.
    pub fn relieve(&self) -> bool {
        {
            let a = lock(&self.buffers.account);
            if a.used() < a.bound() {
                return false;
            }
        }
        let conns = lock(&self.conns);
        let largest = conns
            .open
            .iter()
            .filter(|(_, r)| !r.cancel.is_cancelled())
            .max_by_key(|(_, r)| r.pending.get());
        let Some((conn_id, r)) = largest.filter(|(_, r)| r.pending.get() > 0) else {
            return false;
        };
        tracing::info!(
            conn_id,
            "closing a SOCKS connection: its program has not read the {} bytes the network requester sent it, and this identity's SOCKS connections hold {MAX_BUFFERED_BYTES} bytes (nothing more is taken from the mixnet meanwhile)",
            r.pending.get()
        );
        r.cancel.cancel();
        true
    }

    /// Whether `lane` belongs to a SOCKS connection (not to an app).
    pub fn is_socks_lane(lane: u64) -> bool {
        lane >= LANE_BASE
    }

    /// The identity's mixnet client started (`Some`) or stopped (`None`).
    /// When it stops, every open connection is closed: their lanes and the
    /// sequence of their messages died with it.
    pub fn set_client(&self, client: Option<ClientSender>) {
        let stopped = client.is_none();
        // A client is handed over once it is connected to its gateway.
        self.set_gateway_up(!stopped);
        self.client.send_replace(client);
        if stopped {
            for r in lock(&self.conns).open.values() {
                r.cancel.cancel();
            }
        }
    }

    /// The client's gateway connection is up (`true`) or not.
    pub fn set_gateway_up(&self, up: bool) {
        lock(&self.receiving).update(Some(up), None);
    }

    /// The runner takes messages from the client (`true`), or something
    /// (the apps' inbox, the SOCKS buffers, the memory budget) holds it
    /// back.
    pub fn set_intake(&self, taking: bool) {
        lock(&self.receiving).update(None, Some(taking));
    }

    /// Since when the requester's messages can reach the connections
    /// (the gateway is connected and the runner takes messages); `None`
    /// while they cannot, so that a requester's silence meanwhile is not
    /// held against it.
    pub fn receiving_since(&self) -> Option<tokio::time::Instant> {
        lock(&self.receiving).since
    }

    /// The current client, once there is one (at most `wait`).
    pub async fn client(&self, wait: Duration) -> Option<ClientSender> {
        let mut rx = self.client.subscribe();
        let found = tokio::time::timeout(wait, rx.wait_for(Option::is_some)).await;
        match found {
            Ok(Ok(c)) => c.clone(),
            _ => None,
        }
    }

    /// Register a new connection: a random id not in use, the next lane.
    pub fn register(&self, cancel: CancellationToken) -> Registration {
        let (tx, rx) = mpsc::unbounded_channel();
        let pending = Arc::new(Pending {
            bytes: AtomicUsize::new(0),
            out_of_order: AtomicUsize::new(0),
            buffers: self.buffers.clone(),
        });
        let lane = self.next_lane.fetch_add(1, Ordering::Relaxed);
        let mut conns = lock(&self.conns);
        let conn_id = loop {
            let id = rand::random::<u64>();
            if !conns.open.contains_key(&id) && !conns.closed_set.contains(&id) {
                break id;
            }
        };
        conns.open.insert(
            conn_id,
            Registered {
                tx,
                pending: pending.clone(),
                cancel,
                lane,
            },
        );
        conns.by_lane.insert(lane, conn_id);
        Registration {
            conn_id,
            lane,
            rx,
            pending,
        }
    }

    /// The connection ended: later answers to it are dropped, and what it
    /// held goes back to the budget.
    pub fn unregister(&self, conn_id: ConnectionId) {
        let mut conns = lock(&self.conns);
        if let Some(r) = conns.open.remove(&conn_id) {
            conns.by_lane.remove(&r.lane);
            r.pending.release_all();
        }
        if conns.closed_set.insert(conn_id) {
            conns.closed.push_back(conn_id);
        }
        while conns.closed.len() > RECENTLY_CLOSED {
            if let Some(old) = conns.closed.pop_front() {
                conns.closed_set.remove(&old);
            }
        }
    }

    /// Hand a received message to the SOCKS connection it answers, if it
    /// is a socks5 answer (NetworkData, ConnectionError) for a connection
    /// of this identity. `Some(data)`: not for us, the apps get it (also an
    /// app's message that happens to parse as a socks5 answer). Answers for
    /// a connection that closed recently are dropped.
    pub fn route(&self, data: Vec<u8>) -> Option<Vec<u8>> {
        {
            let conns = lock(&self.conns);
            if conns.open.is_empty() && conns.closed.is_empty() {
                return Some(data);
            }
        }
        let (conn_id, msg) = match ProviderResponse::decode(&data) {
            Ok(ProviderResponse::Socks5 { response, .. }) => match response {
                Socks5Response::NetworkData(d) => (d.conn_id, FromMixnet::Data(d)),
                Socks5Response::ConnectionError { conn_id, message } => {
                    (conn_id, FromMixnet::Refused(message))
                }
                Socks5Response::Query(_) => return Some(data),
            },
            _ => return Some(data),
        };
        if let FromMixnet::Data(d) = &msg {
            tracing::trace!(
                conn_id,
                seq = d.seq,
                len = d.data.len(),
                closed = d.closed,
                "NetworkData"
            );
        }
        let conns = lock(&self.conns);
        let Some(r) = conns.open.get(&conn_id) else {
            if conns.closed_set.contains(&conn_id) {
                tracing::debug!(
                    conn_id,
                    "an answer for a closed SOCKS connection was dropped"
                );
                return None;
            }
            return Some(data);
        };
        if let FromMixnet::Data(d) = &msg {
            let now = r.pending.add(d.data.len());
            if now > MAX_PENDING_BYTES {
                let why = overflow_reason(now, r.pending.out_of_order());
                tracing::info!(conn_id, "closing a SOCKS connection: {why}");
                r.cancel.cancel();
                return None;
            }
        }
        let _ = r.tx.send(msg);
        None
    }

    /// The mixnet client could not send a message of the connection on
    /// `lane`. False when no connection has that lane.
    pub fn lane_error(&self, lane: u64, message: String) -> bool {
        let conns = lock(&self.conns);
        let Some(r) = conns.by_lane.get(&lane).and_then(|c| conns.open.get(c)) else {
            return false;
        };
        let _ = r.tx.send(FromMixnet::SendFailed(message));
        true
    }

    /// The counters.
    pub fn stats(&self) -> SocksStats {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let (buffered, bound) = {
            let a = lock(&self.buffers.account);
            (a.used() as u64, a.bound() as u64)
        };
        SocksStats {
            buffered,
            buffered_bound: bound,
            open: get(&c.open),
            total: get(&c.total),
            refused: get(&c.refused),
            failed: get(&c.failed),
            bytes_sent: get(&c.bytes_sent),
            bytes_received: get(&c.bytes_received),
        }
    }

    fn count(a: &AtomicU64, n: u64) {
        a.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn count_refused(&self) {
        Self::count(&self.counters.refused, 1);
    }

    pub(crate) fn count_failed(&self) {
        Self::count(&self.counters.failed, 1);
    }

    pub(crate) fn count_accepted(&self) {
        Self::count(&self.counters.total, 1);
    }

    pub(crate) fn count_sent(&self, n: usize) {
        Self::count(&self.counters.bytes_sent, n as u64);
    }

    pub(crate) fn count_received(&self, n: usize) {
        Self::count(&self.counters.bytes_received, n as u64);
    }

    /// Count a connection open until the guard drops.
    pub(crate) fn open_guard(self: &Arc<Self>) -> OpenGuard {
        Self::count(&self.counters.open, 1);
        OpenGuard(self.clone())
    }
}

/// Sleep until `at`, or forever when `None`.
pub(crate) async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// One open connection in [`SocksStats::open`].
#[derive(Debug)]
pub(crate) struct OpenGuard(Arc<SocksHub>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.counters.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Why a connection holding `held` bytes (`out_of_order` of them waiting
/// for lost messages) is closed at [`MAX_PENDING_BYTES`]: mostly out of
/// order, the path loses packets; otherwise the program does not read.
fn overflow_reason(held: usize, out_of_order: usize) -> String {
    if out_of_order >= held / 2 {
        format!("{held} bytes from the network requester are held, {out_of_order} of them out of order (at most {MAX_PENDING_BYTES} per connection): {LOSSY_PATH_ADVICE}")
    } else {
        format!("{held} bytes from the network requester wait for an app that does not read them (at most {MAX_PENDING_BYTES})")
    }
}

#[cfg(test)]
mod tests {
    use nymd_proto::socks5::wire::{ProviderResponse, Socks5Response, Versions};

    use super::*;

    fn network_data(conn_id: u64, seq: u64, data: &[u8]) -> Vec<u8> {
        ProviderResponse::Socks5 {
            versions: Versions::CURRENT,
            response: Socks5Response::NetworkData(SocketData {
                conn_id,
                seq,
                closed: false,
                data: data.to_vec(),
            }),
        }
        .encode()
        .expect("encodes")
    }

    fn refusal(conn_id: u64, legacy: bool) -> Vec<u8> {
        ProviderResponse::Socks5 {
            versions: if legacy {
                Versions::LEGACY
            } else {
                Versions::CURRENT
            },
            response: Socks5Response::ConnectionError {
                conn_id,
                message: "Domain \"x:1\" failed filter check".into(),
            },
        }
        .encode()
        .expect("encodes")
    }

    #[test]
    fn answers_go_to_their_connection_and_everything_else_to_the_apps() {
        let hub = SocksHub::new();
        // No connection: nothing is even decoded.
        let m = network_data(1, 0, b"x");
        assert_eq!(hub.route(m.clone()), Some(m));

        let mut a = hub.register(CancellationToken::new());
        let b = hub.register(CancellationToken::new());
        assert_ne!(a.conn_id, b.conn_id);
        assert!(SocksHub::is_socks_lane(a.lane) && SocksHub::is_socks_lane(b.lane));
        assert_eq!(b.lane, a.lane + 1);

        assert_eq!(hub.route(network_data(a.conn_id, 0, b"hello")), None);
        match a.rx.try_recv() {
            Ok(FromMixnet::Data(d)) => assert_eq!((d.seq, d.data), (0, b"hello".to_vec())),
            other => panic!("{other:?}"),
        }
        assert_eq!(a.pending.get(), 5);
        assert_eq!(hub.route(refusal(a.conn_id, true)), None);
        assert!(matches!(a.rx.try_recv(), Ok(FromMixnet::Refused(m)) if m.contains("filter")));

        // For another id, or not a socks5 answer at all: the apps'.
        for other in [
            network_data(a.conn_id ^ 1, 0, b"x"),
            refusal(a.conn_id.wrapping_add(7), false),
            b"hello apps".to_vec(),
            Vec::new(),
            // A request (Send) has the response layout's flag byte but
            // means something else.
            vec![3, 1, 3, 1],
        ] {
            assert_eq!(hub.route(other.clone()), Some(other));
        }
        assert!(a.rx.try_recv().is_err());

        // Send failures reach the connection of the lane.
        assert!(hub.lane_error(a.lane, "gateway unknown".into()));
        assert!(matches!(a.rx.try_recv(), Ok(FromMixnet::SendFailed(_))));
        assert!(!hub.lane_error(1, "an app's lane".into()));
    }

    #[test]
    fn late_answers_to_closed_connections_are_dropped() {
        let hub = SocksHub::new();
        let a = hub.register(CancellationToken::new());
        hub.unregister(a.conn_id);
        assert_eq!(hub.route(network_data(a.conn_id, 3, b"late")), None);
        assert!(!hub.lane_error(a.lane, "x".into()));
        // Bounded memory of closed ids; the oldest are forgotten.
        for _ in 0..RECENTLY_CLOSED {
            let r = hub.register(CancellationToken::new());
            hub.unregister(r.conn_id);
        }
        let m = network_data(a.conn_id, 4, b"much later");
        assert_eq!(hub.route(m.clone()), Some(m));
    }

    #[test]
    fn a_flood_for_one_connection_closes_it() {
        let hub = SocksHub::new();
        let cancel = CancellationToken::new();
        let a = hub.register(cancel.clone());
        let chunk = vec![0u8; 1 << 20];
        for seq in 0..8 {
            assert_eq!(hub.route(network_data(a.conn_id, seq, &chunk)), None);
        }
        assert!(!cancel.is_cancelled());
        assert_eq!(hub.route(network_data(a.conn_id, 8, b"one more")), None);
        assert!(cancel.is_cancelled());
    }

    /// The runner's intake: it takes a message only while the hub has
    /// room. However many connections hold data for programs that do not
    /// read, the identity holds at most its bound plus one message, all of
    /// it charged to the daemon's budget (before the bound, 256 such
    /// connections could hold 8 MiB each, 2 GiB, outside any budget).
    #[test]
    fn what_connections_hold_is_bounded_per_identity_and_charged_to_the_budget() {
        let budget = MemoryBudget::new(1 << 30);
        let bound = 1 << 20;
        let hub = SocksHub::with_budget(budget.clone(), bound);
        let conns: Vec<_> = (0..256)
            .map(|_| {
                let cancel = CancellationToken::new();
                (hub.register(cancel.clone()), cancel)
            })
            .collect();
        let chunk = vec![7u8; 16 * 1024];
        let mut held = 0usize;
        let mut seq = vec![0u64; conns.len()];
        for n in 0..(conns.len() * MAX_PENDING_BYTES / chunk.len()) {
            if !hub.has_room() {
                break;
            }
            let i = n % conns.len();
            assert_eq!(
                hub.route(network_data(conns[i].0.conn_id, seq[i], &chunk)),
                None
            );
            seq[i] += 1;
            held += chunk.len();
            assert!(
                held <= bound + chunk.len(),
                "{held} bytes taken past the bound of {bound}"
            );
        }
        assert!(!hub.has_room());
        assert_eq!(budget.used(), held as u64, "charged to the daemon's budget");
        let stats = hub.stats();
        assert_eq!(
            (stats.buffered, stats.buffered_bound),
            (held as u64, bound as u64)
        );
        assert!(
            conns.iter().all(|(_, c)| !c.is_cancelled()),
            "nothing dropped, no connection closed"
        );
        // A daemon budget used up by others stops the intake too.
        let small = MemoryBudget::new(100);
        let other = SocksHub::with_budget(small.clone(), bound);
        assert!(other.has_room());
        let mut inbox = nymd_mixnet::Account::new(small.clone(), 1000);
        assert!(inbox.try_take(100));
        assert!(!other.has_room());
        drop(inbox);
        assert!(other.has_room());
    }

    #[tokio::test]
    async fn bytes_written_or_dropped_give_room_back_and_wake_the_runner() {
        let budget = MemoryBudget::new(1 << 30);
        let hub = SocksHub::with_budget(budget.clone(), 1000);
        let a = hub.register(CancellationToken::new());
        let b = hub.register(CancellationToken::new());
        assert_eq!(hub.route(network_data(a.conn_id, 0, &[1; 600])), None);
        assert_eq!(hub.route(network_data(b.conn_id, 0, &[2; 600])), None);
        assert!(!hub.has_room());
        let waiting = {
            let hub = hub.clone();
            tokio::spawn(async move { hub.room().await })
        };
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        // a's program read 500 bytes: under the bound again.
        a.pending.release(500);
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the runner is woken")
            .expect("task");
        assert!(hub.has_room());
        assert_eq!(budget.used(), 700);
        // Releasing more than is held gives back only what is held.
        a.pending.release(10_000);
        assert_eq!((a.pending.get(), budget.used()), (0, 600));
        // A connection that ends gives back what it still held.
        hub.unregister(b.conn_id);
        assert_eq!(budget.used(), 0);
        assert_eq!(hub.stats().buffered, 0);
        // And so does the hub itself when the identity stops.
        let c = hub.register(CancellationToken::new());
        assert_eq!(hub.route(network_data(c.conn_id, 0, &[3; 10])), None);
        assert_eq!(budget.used(), 10);
        drop(c);
        drop(hub);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn relieve_closes_the_largest_holder_only_at_the_identity_s_own_bound() {
        let budget = MemoryBudget::new(1 << 30);
        let hub = SocksHub::with_budget(budget.clone(), 1000);
        let (small, big) = (CancellationToken::new(), CancellationToken::new());
        let s = hub.register(small.clone());
        let b = hub.register(big.clone());
        assert_eq!(hub.route(network_data(s.conn_id, 0, &[0; 100])), None);
        assert_eq!(hub.route(network_data(b.conn_id, 0, &[0; 800])), None);
        assert!(!hub.relieve(), "under the bound: nobody is closed");
        assert_eq!(hub.route(network_data(b.conn_id, 1, &[0; 200])), None);
        assert!(hub.relieve());
        assert!(big.is_cancelled() && !small.is_cancelled());
        // Its task ends and unregisters: the room is back.
        hub.unregister(b.conn_id);
        assert!(hub.has_room());
        // Only a daemon budget used up by others: backpressure, no closing.
        let tight = MemoryBudget::new(150);
        let hub = SocksHub::with_budget(tight, 1000);
        let cancel = CancellationToken::new();
        let c = hub.register(cancel.clone());
        assert_eq!(hub.route(network_data(c.conn_id, 0, &[0; 200])), None);
        assert!(!hub.has_room());
        assert!(!hub.relieve());
        assert!(!cancel.is_cancelled());
    }

    #[tokio::test]
    async fn receiving_counts_from_when_the_gateway_is_up_and_the_runner_takes() {
        let hub = SocksHub::new();
        assert_eq!(hub.receiving_since(), None, "no client yet");
        hub.set_gateway_up(true);
        let t0 = hub.receiving_since().expect("receiving");
        tokio::time::sleep(Duration::from_millis(20)).await;
        hub.set_intake(true);
        assert_eq!(hub.receiving_since(), Some(t0), "unchanged by a repeat");
        hub.set_intake(false);
        assert_eq!(hub.receiving_since(), None, "the runner is held up");
        tokio::time::sleep(Duration::from_millis(20)).await;
        hub.set_intake(true);
        let t1 = hub.receiving_since().expect("receiving again");
        assert!(t1 - t0 >= Duration::from_millis(40), "{:?}", t1 - t0);
        hub.set_gateway_up(false);
        assert_eq!(hub.receiving_since(), None, "the gateway is down");
        hub.set_gateway_up(true);
        assert!(hub.receiving_since().is_some());
        hub.set_client(None);
        assert_eq!(hub.receiving_since(), None, "the client stopped");
    }

    #[test]
    fn a_stopped_client_closes_every_connection() {
        let hub = SocksHub::new();
        let cancel = CancellationToken::new();
        let _a = hub.register(cancel.clone());
        hub.set_client(None);
        assert!(cancel.is_cancelled());
    }

    #[test]
    fn a_connection_closed_for_answers_out_of_order_blames_the_path() {
        let lossy = overflow_reason(MAX_PENDING_BYTES + 1, MAX_PENDING_BYTES - 100);
        assert!(lossy.contains("losing packets"), "{lossy}");
        assert!(lossy.contains("nymctl socks5 ID provider"), "{lossy}");
        let unread = overflow_reason(MAX_PENDING_BYTES + 1, 1000);
        assert!(unread.contains("does not read"), "{unread}");

        // The hub sees what the connection reported out of order.
        let hub = SocksHub::new();
        let a = hub.register(CancellationToken::new());
        a.pending.set_out_of_order(123);
        assert_eq!(a.pending.out_of_order(), 123);
    }
}
