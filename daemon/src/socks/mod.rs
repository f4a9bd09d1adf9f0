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
//!   and the counters.
//!
//! Lanes: every connection sends on a lane of its own in the mixnet client,
//! numbered from [`LANE_BASE`] (`2^63`) up; the runner numbers the app
//! sessions' lanes from 1, so the two never meet. The connection id on the
//! wire is random and independent of the lane.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nymd_mixnet::ClientSender;
use nymd_proto::socks5::wire::{ProviderResponse, SocketData, Socks5Response};
use nymd_proto::socks5::ConnectionId;
use tokio::sync::{mpsc, watch};
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
/// the app, or out of order); beyond it the connection is closed.
pub const MAX_PENDING_BYTES: usize = 8 << 20;
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

/// An open connection, as the runner sees it.
#[derive(Debug)]
struct Registered {
    tx: mpsc::UnboundedSender<FromMixnet>,
    /// Bytes handed over and not yet written to the app or dropped.
    pending: Arc<AtomicUsize>,
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
    /// lowers it).
    pub pending: Arc<AtomicUsize>,
}

/// One identity's SOCKS side, shared by its runner and its connections.
#[derive(Debug)]
pub struct SocksHub {
    client: watch::Sender<Option<ClientSender>>,
    conns: Mutex<Conns>,
    next_lane: AtomicU64,
    counters: Counters,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every update leaves the maps consistent; a panic elsewhere does not
    // make them unusable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Default for SocksHub {
    fn default() -> Self {
        Self {
            client: watch::channel(None).0,
            conns: Mutex::default(),
            next_lane: AtomicU64::new(LANE_BASE),
            counters: Counters::default(),
        }
    }
}

impl SocksHub {
    /// A hub without a client or connections.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
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
        self.client.send_replace(client);
        if stopped {
            for r in lock(&self.conns).open.values() {
                r.cancel.cancel();
            }
        }
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
        let pending = Arc::new(AtomicUsize::new(0));
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

    /// The connection ended: later answers to it are dropped.
    pub fn unregister(&self, conn_id: ConnectionId) {
        let mut conns = lock(&self.conns);
        if let Some(r) = conns.open.remove(&conn_id) {
            conns.by_lane.remove(&r.lane);
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
            let now = r.pending.fetch_add(d.data.len(), Ordering::AcqRel) + d.data.len();
            if now > MAX_PENDING_BYTES {
                tracing::info!(
                    conn_id,
                    "closing a SOCKS connection: {now} bytes from the network requester wait for an app that does not read them (at most {MAX_PENDING_BYTES})"
                );
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
        SocksStats {
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

/// One open connection in [`SocksStats::open`].
#[derive(Debug)]
pub(crate) struct OpenGuard(Arc<SocksHub>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.counters.open.fetch_sub(1, Ordering::Relaxed);
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
        assert_eq!(a.pending.load(Ordering::Acquire), 5);
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

    #[test]
    fn a_stopped_client_closes_every_connection() {
        let hub = SocksHub::new();
        let cancel = CancellationToken::new();
        let _a = hub.register(cancel.clone());
        hub.set_client(None);
        assert!(cancel.is_cancelled());
    }
}
