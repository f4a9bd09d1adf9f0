//! Gateway state kept in memory across a gateway's stops and restarts:
//! registered clients (shared key, last authentication timestamp,
//! bandwidth), live sessions, and the bounded offline store. Also the
//! gateway's final-hop duty for packets from layer 3.
//!
//! In a persistent network the registered clients are also saved to the
//! gateway's client file: at once (and before the client is answered) when
//! a client registers, authenticates or is forgotten; bandwidth changes are
//! saved at most every [`CLIENTS_SAVE_PERIOD`] and when the gateway stops.
//! The offline store stays in memory only.
//!
//! # Layout
//! - [`session`]: the client websocket endpoint.

pub(crate) mod session;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nymd_proto::ack::{split_final_hop, FinalHopDelivery};
use nymd_proto::gateway::bandwidth;
use nymd_proto::gateway::{StoredClient, TypedGatewayError};
use nymd_proto::keys::{GatewaySharedKey, IdentityKeyPair};
use nymd_proto::{KeyRotation, PacketSize};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::config::Limits;
use crate::counters::{bump, raise, NodeCounters};
use crate::network::LocalnetError;
use crate::node::{NodeCore, Run};
use crate::persist::{self, ClientsFileRef};

/// How often changed bandwidth is saved (registrations and
/// authentications are saved at once).
pub(crate) const CLIENTS_SAVE_PERIOD: Duration = Duration::from_secs(1);

/// A client's address: its ed25519 identity bytes.
pub(crate) type ClientAddress = [u8; 32];

/// A short, log-friendly prefix of a client address (not secret: it is the
/// client's public identity).
pub(crate) fn short(client: &ClientAddress) -> String {
    bs58::encode(&client[..6]).into_string()
}

/// What a gateway remembers about a registered client.
#[derive(Debug)]
pub(crate) struct ClientRecord {
    pub shared_key: GatewaySharedKey,
    pub last_auth: Option<u64>,
    pub bandwidth: i64,
}

/// Saving the registered clients of a gateway in a persistent network.
#[derive(Debug)]
struct ClientsSaver {
    file: ClientsFileRef,
    /// Changed since the last save.
    dirty: AtomicBool,
    /// Held across snapshot and write, so saves land in order.
    write: Mutex<()>,
}

/// Requests to a live session from elsewhere in the gateway.
#[derive(Debug)]
pub(crate) enum Control {
    /// Ping the client; answer when its pong arrives.
    Probe(oneshot::Sender<()>),
    /// Close the session (another connection took over).
    Kick,
}

/// A live client session, as others see it.
#[derive(Debug, Clone)]
pub(crate) struct SessionHandle {
    pub id: u64,
    pub started: u64,
    pub push: mpsc::Sender<Vec<u8>>,
    pub control: mpsc::Sender<Control>,
}

/// Messages kept for offline clients, bounded per client, in total and by
/// age.
#[derive(Debug)]
struct OfflineStore {
    by_client: HashMap<ClientAddress, VecDeque<(Instant, Vec<u8>)>>,
    total: usize,
}

/// The result of storing one message.
struct StoreOutcome {
    stored: bool,
    evicted: usize,
}

impl OfflineStore {
    fn new() -> Self {
        Self {
            by_client: HashMap::new(),
            total: 0,
        }
    }

    fn expire_client(&mut self, client: &ClientAddress, now: Instant, max_age: Duration) -> usize {
        let Some(q) = self.by_client.get_mut(client) else {
            return 0;
        };
        let mut n = 0;
        while q
            .front()
            .is_some_and(|(t, _)| now.saturating_duration_since(*t) > max_age)
        {
            q.pop_front();
            n += 1;
        }
        if q.is_empty() {
            self.by_client.remove(client);
        }
        self.total -= n;
        n
    }

    fn insert(
        &mut self,
        client: ClientAddress,
        msg: Vec<u8>,
        now: Instant,
        limits: &Limits,
    ) -> StoreOutcome {
        let mut evicted = self.expire_client(&client, now, limits.stored_max_age);
        let q = self.by_client.entry(client).or_default();
        if limits.stored_per_client == 0 {
            return StoreOutcome {
                stored: false,
                evicted,
            };
        }
        // The client's oldest message makes room for its newest.
        while q.len() >= limits.stored_per_client {
            q.pop_front();
            self.total -= 1;
            evicted += 1;
        }
        if self.total >= limits.stored_total {
            if q.is_empty() {
                self.by_client.remove(&client);
            }
            return StoreOutcome {
                stored: false,
                evicted,
            };
        }
        q.push_back((now, msg));
        self.total += 1;
        StoreOutcome {
            stored: true,
            evicted,
        }
    }

    fn take(&mut self, client: &ClientAddress, now: Instant, max_age: Duration) -> Vec<Vec<u8>> {
        self.expire_client(client, now, max_age);
        let Some(q) = self.by_client.remove(client) else {
            return Vec::new();
        };
        self.total -= q.len();
        q.into_iter().map(|(_, m)| m).collect()
    }

    fn purge(&mut self, now: Instant, max_age: Duration) -> usize {
        let clients: Vec<ClientAddress> = self.by_client.keys().copied().collect();
        clients
            .iter()
            .map(|c| self.expire_client(c, now, max_age))
            .sum()
    }
}

/// Everything a gateway knows about its clients.
#[derive(Debug)]
pub(crate) struct GatewayState {
    /// The gateway's identity (signs the registration handshake).
    pub identity: IdentityKeyPair,
    counters: std::sync::Arc<NodeCounters>,
    limits: Limits,
    clients: Mutex<HashMap<ClientAddress, ClientRecord>>,
    sessions: Mutex<HashMap<ClientAddress, SessionHandle>>,
    store: Mutex<OfflineStore>,
    next_session: AtomicU64,
    saver: Option<ClientsSaver>,
    /// Test switch: milliseconds each new client connection waits before
    /// its websocket upgrade is answered ([`crate::Localnet::set_client_delay`]).
    client_delay_ms: AtomicU64,
}

/// Lock, recovering the data if a panicking thread poisoned the mutex (no
/// invariant here spans a panic point).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl GatewayState {
    /// A gateway with these registered `clients`, saving them to `file`
    /// if given.
    pub(crate) fn new(
        identity: IdentityKeyPair,
        counters: std::sync::Arc<NodeCounters>,
        limits: Limits,
        clients: HashMap<ClientAddress, ClientRecord>,
        file: Option<ClientsFileRef>,
    ) -> Self {
        Self {
            identity,
            counters,
            limits,
            clients: Mutex::new(clients),
            sessions: Mutex::new(HashMap::new()),
            store: Mutex::new(OfflineStore::new()),
            next_session: AtomicU64::new(1),
            client_delay_ms: AtomicU64::new(0),
            saver: file.map(|file| ClientsSaver {
                file,
                dirty: AtomicBool::new(false),
                write: Mutex::new(()),
            }),
        }
    }

    // ------------------------------------------------------- test switch

    /// How long a new client connection waits before its websocket upgrade
    /// is answered (zero unless a test set it).
    pub(crate) fn client_delay(&self) -> Duration {
        Duration::from_millis(self.client_delay_ms.load(Ordering::Relaxed))
    }

    /// Set [`GatewayState::client_delay`].
    pub(crate) fn set_client_delay(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.client_delay_ms.store(ms, Ordering::Relaxed);
    }

    // -------------------------------------------------------- persistence

    fn mark_dirty(&self) {
        if let Some(s) = &self.saver {
            s.dirty.store(true, Ordering::Release);
        }
    }

    /// Whether registered clients changed since they were last saved.
    pub(crate) fn is_dirty(&self) -> bool {
        self.saver
            .as_ref()
            .is_some_and(|s| s.dirty.load(Ordering::Acquire))
    }

    /// Save the registered clients now (blocking file I/O); nothing if the
    /// network is not persistent.
    pub(crate) fn save_clients(&self) -> Result<(), LocalnetError> {
        let Some(saver) = &self.saver else {
            return Ok(());
        };
        let _order = lock(&saver.write);
        saver.dirty.store(false, Ordering::Release);
        let bytes = persist::encode_clients(
            saver.file.gateway_id,
            &self.identity.public_bytes(),
            &lock(&self.clients),
        );
        let result = bytes.and_then(|b| persist::write_clients(&saver.file.path, &b));
        if result.is_err() {
            saver.dirty.store(true, Ordering::Release);
        }
        result
    }

    /// Save the registered clients on a blocking thread and wait; a failure
    /// is logged (the gateway goes on with what it has in memory).
    pub(crate) async fn persist_now(self: &Arc<Self>) {
        if self.saver.is_none() {
            return;
        }
        let gw = self.clone();
        match tokio::task::spawn_blocking(move || gw.save_clients()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!("cannot save the gateway's clients: {e}"),
            Err(e) => tracing::warn!("cannot save the gateway's clients: {e}"),
        }
    }

    /// Save the registered clients if they changed.
    pub(crate) async fn persist_if_dirty(self: &Arc<Self>) {
        if self.is_dirty() {
            self.persist_now().await;
        }
    }

    // ------------------------------------------------------------ clients

    /// What `authenticateV2` verification needs.
    pub(crate) fn stored_client(&self, client: &ClientAddress) -> Option<StoredClient> {
        lock(&self.clients).get(client).map(|r| StoredClient {
            shared_key: r.shared_key.clone(),
            last_used_timestamp: r.last_auth,
        })
    }

    /// Store the key of a freshly registered client. A client registering
    /// again keeps its bandwidth; a new one starts with none.
    pub(crate) fn register_client(&self, client: ClientAddress, key: GatewaySharedKey) {
        let mut clients = lock(&self.clients);
        match clients.get_mut(&client) {
            Some(r) => {
                r.shared_key = key;
                r.last_auth = None;
            }
            None => {
                clients.insert(
                    client,
                    ClientRecord {
                        shared_key: key,
                        last_auth: None,
                        bandwidth: 0,
                    },
                );
            }
        }
        self.mark_dirty();
    }

    /// Remember an accepted authentication timestamp.
    pub(crate) fn record_auth(&self, client: &ClientAddress, timestamp: u64) {
        if let Some(r) = lock(&self.clients).get_mut(client) {
            r.last_auth = Some(timestamp);
            self.mark_dirty();
        }
    }

    /// Delete a client's registration and stored messages (`ForgetMe`).
    pub(crate) fn forget_client(&self, client: &ClientAddress) {
        if lock(&self.clients).remove(client).is_some() {
            self.mark_dirty();
        }
        let mut store = lock(&self.store);
        store.take(client, Instant::now(), Duration::MAX);
        self.counters
            .stored_now
            .store(store.total as u64, Ordering::Relaxed);
    }

    /// Remaining bandwidth.
    pub(crate) fn bandwidth(&self, client: &ClientAddress) -> i64 {
        lock(&self.clients).get(client).map_or(0, |r| r.bandwidth)
    }

    /// `claimFreeTestnetBandwidth`: add 64 GiB; returns the new total.
    pub(crate) fn claim_free_bandwidth(&self, client: &ClientAddress) -> i64 {
        let mut clients = lock(&self.clients);
        match clients.get_mut(client) {
            Some(r) => {
                r.bandwidth = bandwidth::gateway_after_free_claim(r.bandwidth);
                self.mark_dirty();
                r.bandwidth
            }
            None => 0,
        }
    }

    /// Take `cost` bytes; returns what remains, or the typed error to send.
    pub(crate) fn use_bandwidth(
        &self,
        client: &ClientAddress,
        cost: i64,
    ) -> Result<i64, TypedGatewayError> {
        let mut clients = lock(&self.clients);
        let Some(r) = clients.get_mut(client) else {
            return Err(TypedGatewayError::OutOfBandwidth {
                required: cost,
                available: 0,
            });
        };
        let remaining = bandwidth::gateway_try_use(r.bandwidth, cost)?;
        r.bandwidth = remaining;
        self.mark_dirty();
        Ok(remaining)
    }

    // ----------------------------------------------------------- sessions

    /// The live session of a client, if any.
    pub(crate) fn session(&self, client: &ClientAddress) -> Option<SessionHandle> {
        lock(&self.sessions).get(client).cloned()
    }

    /// Install a session for `client` (replacing and kicking any other),
    /// returning its handle and receivers.
    pub(crate) fn open_session(
        &self,
        client: ClientAddress,
        started: u64,
    ) -> (
        SessionHandle,
        mpsc::Receiver<Vec<u8>>,
        mpsc::Receiver<Control>,
    ) {
        let (push, push_rx) = mpsc::channel(self.limits.push_queue_per_client.max(1));
        let (control, control_rx) = mpsc::channel(4);
        let handle = SessionHandle {
            id: self.next_session.fetch_add(1, Ordering::Relaxed),
            started,
            push,
            control,
        };
        let replaced = lock(&self.sessions).insert(client, handle.clone());
        tracing::debug!(client = %short(&client), session = handle.id, replaced = ?replaced.as_ref().map(|r| r.id), "session opened");
        if let Some(old) = replaced {
            let _ = old.control.try_send(Control::Kick);
        }
        (handle, push_rx, control_rx)
    }

    /// Remove the session `id` of `client` (if it is still the live one).
    pub(crate) fn close_session(&self, client: &ClientAddress, id: u64) {
        let mut sessions = lock(&self.sessions);
        if sessions.get(client).is_some_and(|s| s.id == id) {
            sessions.remove(client);
            tracing::debug!(client = %short(client), session = id, "session closed");
        }
    }

    // ---------------------------------------------------------- messages

    /// Take the stored messages of a client (those not expired).
    pub(crate) fn take_stored(&self, client: &ClientAddress) -> Vec<Vec<u8>> {
        let mut store = lock(&self.store);
        let msgs = store.take(client, Instant::now(), self.limits.stored_max_age);
        self.counters
            .stored_now
            .store(store.total as u64, Ordering::Relaxed);
        msgs
    }

    /// Delete stored messages older than the maximum age; returns how many.
    pub(crate) fn purge_stored(&self) -> usize {
        let mut store = lock(&self.store);
        let n = store.purge(Instant::now(), self.limits.stored_max_age);
        self.counters
            .stored_now
            .store(store.total as u64, Ordering::Relaxed);
        n
    }

    fn store(&self, client: ClientAddress, msg: Vec<u8>) -> bool {
        let mut store = lock(&self.store);
        let outcome = store.insert(client, msg, Instant::now(), &self.limits);
        let total = store.total as u64;
        drop(store);
        self.counters.stored_now.store(total, Ordering::Relaxed);
        raise(&self.counters.stored_max, total);
        for _ in 0..outcome.evicted {
            bump(&self.counters.dropped);
        }
        if outcome.stored {
            tracing::debug!(client = %short(&client), "message stored");
            bump(&self.counters.stored);
        } else {
            bump(&self.counters.dropped);
            tracing::debug!("offline store full, message dropped");
        }
        outcome.stored
    }

    /// Hand a message or ack to the client: push it if connected, store it
    /// otherwise. Returns whether it was accepted: a connected client whose
    /// queue is full, or a full store, loses it, and then the caller must not
    /// acknowledge it (the sender will retransmit).
    fn deliver(&self, client: ClientAddress, msg: Vec<u8>) -> bool {
        let Some(session) = self.session(&client) else {
            return self.store(client, msg);
        };
        match session.push.try_send(msg) {
            Ok(()) => {
                tracing::debug!(client = %short(&client), session = session.id, "message queued for push");
                bump(&self.counters.delivered);
                let queued = session
                    .push
                    .max_capacity()
                    .saturating_sub(session.push.capacity());
                raise(&self.counters.push_queued_max, queued as u64);
                true
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                bump(&self.counters.dropped);
                tracing::debug!("client push queue full, message dropped and not acknowledged");
                false
            }
            Err(mpsc::error::TrySendError::Closed(msg)) => self.store(client, msg),
        }
    }

    /// The final hop of a packet for one of our clients: split off the
    /// SURB-ACK, deliver the rest, then forward the ack at once to its first
    /// mix with the received frame's rotation (§3.4).
    pub(crate) fn final_hop(
        &self,
        core: &NodeCore,
        run: &Run,
        destination: ClientAddress,
        size: PacketSize,
        plaintext: &[u8],
        _rotation: KeyRotation,
    ) {
        match split_final_hop(size, plaintext) {
            Err(e) => {
                bump(&self.counters.malformed);
                tracing::warn!(node = core.id, "dropping final-hop packet: {e}");
            }
            Ok(FinalHopDelivery::Ack(ack)) => {
                self.deliver(destination, ack.to_vec());
            }
            Ok(FinalHopDelivery::Message(split)) => {
                // Acknowledge only what the client got or will get; a message
                // dropped here is retransmitted by its sender.
                if self.deliver(destination, split.message.to_vec()) {
                    // Version-7 frames carry no rotation, so the ack's parity
                    // byte never reaches the wire.
                    core.forward(split.ack_first_hop.0, split.ack_packet, Duration::ZERO, run);
                }
            }
        }
    }
}

/// Save changed client state every [`CLIENTS_SAVE_PERIOD`], and once more
/// when the run is cancelled.
pub(crate) async fn save_clients_periodically(gw: Arc<GatewayState>, cancel: CancellationToken) {
    if gw.saver.is_none() {
        return;
    }
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(CLIENTS_SAVE_PERIOD) => gw.persist_if_dirty().await,
        }
    }
    gw.persist_if_dirty().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(per_client: usize, total: usize, age: Duration) -> Limits {
        Limits {
            stored_per_client: per_client,
            stored_total: total,
            stored_max_age: age,
            ..Limits::default()
        }
    }

    #[test]
    fn store_is_bounded_per_client_in_total_and_by_age() {
        let l = limits(3, 5, Duration::from_secs(60));
        let mut s = OfflineStore::new();
        let t0 = Instant::now();
        for i in 0..5u8 {
            s.insert([1; 32], vec![i], t0, &l);
        }
        assert_eq!(s.total, 3);
        assert_eq!(
            s.take(&[1; 32], t0, l.stored_max_age),
            vec![vec![2], vec![3], vec![4]]
        );
        assert_eq!(s.total, 0);
        for c in 0..3u8 {
            for i in 0..3u8 {
                s.insert([c; 32], vec![i], t0, &l);
            }
        }
        assert_eq!(s.total, 5);
        let later = t0 + Duration::from_secs(61);
        assert_eq!(s.purge(later, l.stored_max_age), 5);
        assert_eq!(s.total, 0);
        assert!(s.by_client.is_empty());
    }
}
