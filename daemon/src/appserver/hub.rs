//! Fans received messages out to the connected apps of one identity.
//!
//! Every message that arrives is appended to one ordered log (and, unless
//! the inbox is kept in memory only, to the identity's inbox journal). Each
//! connected app has a cursor into the log; its session writes messages to
//! the app's socket in order and advances the cursor only once a write
//! completed. A message leaves the log (and the journal) once it has been
//! written to at least one app and no connected app still has it ahead of
//! its cursor. So:
//!
//! - nothing is lost to a slow or absent app: what no app has been given
//!   waits in the log, in arrival order, and the next app to connect gets
//!   that backlog first;
//! - a slow app holds back only its own cursor; when the log is full and a
//!   slow app is what keeps a message (one another app already has) in it,
//!   that app is disconnected (nothing is lost: the message was delivered);
//! - when the log is full of messages no app has had, the runner stops
//!   taking messages from the mixnet client ([`AppHub::has_room`]), which
//!   stops reading its gateway: the gateway keeps them meanwhile;
//! - a tap (`nymctl listen`, and `nymctl send`/`reply` while they wait for
//!   their answer) starts at the end of the log and what is written to it
//!   does not count as delivered: it takes nothing from the apps, and a
//!   message only a tap has seen still waits for the next app.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use nymd_fsutil::journal::{Journal, Record};
use nymd_mixnet::{Account, MemoryBudget};
use nymd_proto::appapi::ApiError;
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

use super::inbox::{decode_delivery, encode_delivery};
use super::{AppChange, ConnectedApp, Delivery};

/// Default bound of the bytes of messages held for apps.
pub const DEFAULT_PENDING_BYTES: usize = 128 * 1024 * 1024;
/// Errors queued for one app session (asynchronous send failures) before
/// more are dropped (and logged).
const ERROR_QUEUE: usize = 256;

struct Entry {
    /// The inbox journal's record id.
    jid: u64,
    delivery: Arc<Delivery>,
}

struct SessionState {
    /// Sequence number of the next message to write to this app.
    cursor: u64,
    peer: SocketAddr,
    since: std::time::Instant,
    /// Cancelled when the hub disconnects this app (too slow).
    kick: CancellationToken,
    /// Errors that concern only this app (its own sends failed).
    errors: mpsc::Sender<ApiError>,
    /// A tap (see [`AppHub::register_tap`]): sees what arrives while it is
    /// connected, takes nothing from the apps.
    tap: bool,
}

#[derive(Default)]
struct HubState {
    /// Messages not yet written to every app that should get them.
    log: VecDeque<Entry>,
    /// Sequence number of `log[0]`.
    base: u64,
    /// Every message with a lower sequence number was written to at least
    /// one app.
    high: u64,
    /// Payload bytes in `log`.
    bytes: usize,
    sessions: HashMap<u64, SessionState>,
    next_jid: u64,
    /// The inbox journal (see [`AppHub::attach_inbox`]).
    inbox: Option<Journal>,
    /// `bytes`, drawn from the daemon's memory budget.
    account: Option<Account>,
}

impl HubState {
    /// Drop the messages every app has had; true if any left.
    fn trim(&mut self) -> bool {
        let mut trimmed = false;
        while let Some(front) = self.log.front() {
            let seq = self.base;
            let done = seq < self.high && self.sessions.values().all(|s| s.cursor > seq);
            if !done {
                break;
            }
            if let Some(j) = &self.inbox {
                j.done(front.jid);
            }
            self.bytes = self.bytes.saturating_sub(front.delivery.data.len());
            if let Some(a) = &mut self.account {
                a.give_back(front.delivery.data.len());
            }
            self.log.pop_front();
            self.base += 1;
            trimmed = true;
        }
        trimmed
    }

    fn end(&self) -> u64 {
        self.base + self.log.len() as u64
    }
}

type Observer = Box<dyn Fn(AppChange) + Send + Sync>;

/// Fans mixnet messages out to the connected apps of one identity, and keeps
/// them (bounded) until an app has them.
pub struct AppHub {
    state: Mutex<HubState>,
    observer: Mutex<Option<Observer>>,
    pending_limit: usize,
    pending_bytes: usize,
    next_session: AtomicU64,
    inbox_count: Arc<AtomicU64>,
    /// Woken when messages are appended (sessions wait on it).
    appended: Notify,
    /// Woken when messages leave the log (the runner waits on it).
    room: Notify,
    /// Apps disconnected for being too slow.
    kicked: AtomicU64,
}

impl std::fmt::Debug for AppHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppHub")
            .field("pending_limit", &self.pending_limit)
            .field("pending_bytes", &self.pending_bytes)
            .finish_non_exhaustive()
    }
}

/// A registered app session, as the hub hands it to the session task.
#[derive(Debug)]
pub(crate) struct Registration {
    pub(crate) session: u64,
    pub(crate) kick: CancellationToken,
    pub(crate) errors: mpsc::Receiver<ApiError>,
}

fn lock(m: &Mutex<HubState>) -> std::sync::MutexGuard<'_, HubState> {
    // Every update keeps the state consistent; a panic elsewhere while
    // holding the lock does not make it unusable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl AppHub {
    /// A hub that holds at most `pending_limit` messages (and
    /// [`DEFAULT_PENDING_BYTES`]) for apps.
    pub fn new(pending_limit: usize) -> Arc<Self> {
        Self::with_limits(pending_limit, DEFAULT_PENDING_BYTES)
    }

    /// A hub with explicit bounds: messages and payload bytes.
    pub fn with_limits(pending_limit: usize, pending_bytes: usize) -> Arc<Self> {
        Self::with_budget(pending_limit, pending_bytes, MemoryBudget::new(u64::MAX))
    }

    /// A hub with explicit bounds whose bytes also draw on the daemon's
    /// memory budget: while that is used up (by any identity), the hub
    /// takes no more ([`AppHub::has_room`]).
    pub fn with_budget(
        pending_limit: usize,
        pending_bytes: usize,
        budget: Arc<MemoryBudget>,
    ) -> Arc<Self> {
        let state = HubState {
            account: Some(Account::new(budget, pending_bytes.max(1))),
            ..HubState::default()
        };
        Arc::new(Self {
            state: Mutex::new(state),
            observer: Mutex::new(None),
            pending_limit: pending_limit.max(1),
            pending_bytes: pending_bytes.max(1),
            next_session: AtomicU64::new(1),
            inbox_count: Arc::default(),
            appended: Notify::new(),
            room: Notify::new(),
            kicked: AtomicU64::new(0),
        })
    }

    /// Be told when apps connect and disconnect.
    pub fn set_observer(&self, f: impl Fn(AppChange) + Send + Sync + 'static) {
        if let Ok(mut o) = self.observer.lock() {
            *o = Some(Box::new(f));
        }
    }

    fn notify(&self, change: AppChange) {
        if let Ok(o) = self.observer.lock() {
            if let Some(f) = o.as_ref() {
                f(change);
            }
        }
    }

    /// The apps connected now.
    pub fn apps(&self) -> Vec<ConnectedApp> {
        let st = lock(&self.state);
        let mut v: Vec<ConnectedApp> = st
            .sessions
            .iter()
            .map(|(session, s)| ConnectedApp {
                session: *session,
                peer: s.peer,
                connected_for: s.since.elapsed(),
            })
            .collect();
        v.sort_by_key(|a| a.session);
        v
    }

    /// Whether `session` is connected.
    pub fn is_connected(&self, session: u64) -> bool {
        lock(&self.state).sessions.contains_key(&session)
    }

    /// Number of connected apps.
    pub fn connected_apps(&self) -> usize {
        lock(&self.state).sessions.len()
    }

    /// Messages held for apps (not yet written to every app that gets
    /// them).
    pub fn pending(&self) -> usize {
        lock(&self.state).log.len()
    }

    /// Messages held for apps that no app has been given yet.
    pub fn undelivered(&self) -> usize {
        let st = lock(&self.state);
        usize::try_from(st.end().saturating_sub(st.high.max(st.base))).unwrap_or(usize::MAX)
    }

    /// Messages waiting for an app that are kept on disk.
    pub fn inbox_messages(&self) -> u64 {
        self.inbox_count.load(Ordering::Relaxed)
    }

    /// The counter [`AppHub::attach_inbox`]'s journal keeps current.
    pub fn inbox_counter(&self) -> Arc<AtomicU64> {
        self.inbox_count.clone()
    }

    /// Apps disconnected because they fell too far behind.
    pub fn slow_apps_disconnected(&self) -> u64 {
        self.kicked.load(Ordering::Relaxed)
    }

    /// Keep the messages held for apps in `journal`, and take back the
    /// ones it held from before a restart (they go first, in order).
    pub fn attach_inbox(&self, journal: Journal, restored: Vec<Record>) {
        let mut st = lock(&self.state);
        let mut log = VecDeque::with_capacity(restored.len() + st.log.len());
        let mut bytes = 0usize;
        for (id, payload) in restored {
            st.next_jid = st.next_jid.max(id.saturating_add(1));
            match decode_delivery(&payload) {
                Some(d) => {
                    bytes += d.data.len();
                    log.push_back(Entry {
                        jid: id,
                        delivery: Arc::new(d),
                    });
                }
                None => {
                    tracing::warn!(id, "skipping an unreadable inbox entry");
                    journal.done(id);
                }
            }
        }
        if !log.is_empty() {
            tracing::info!(
                messages = log.len(),
                "messages received before the restart wait for an app"
            );
        }
        // Anything that arrived before the journal was attached is kept too,
        // after the restored messages.
        let earlier: Vec<Entry> = st.log.drain(..).collect();
        for e in earlier {
            let jid = st.next_jid;
            st.next_jid += 1;
            journal.add(jid, encode_delivery(&e.delivery));
            bytes += e.delivery.data.len();
            log.push_back(Entry {
                jid,
                delivery: e.delivery,
            });
        }
        // The log is renumbered: every app starts again at its beginning
        // (a tap at its end: it only sees what arrives).
        st.log = log;
        st.bytes = bytes;
        if let Some(a) = &mut st.account {
            a.set_used(bytes);
        }
        st.high = st.base;
        let (base, end) = (st.base, st.end());
        for s in st.sessions.values_mut() {
            s.cursor = if s.tap { end } else { base };
        }
        st.inbox = Some(journal);
        drop(st);
        self.appended.notify_waiters();
    }

    /// Write what the inbox journal has queued and stop its writer
    /// (blocking; the runner calls it when the identity stops).
    pub fn close_inbox(&self) -> Option<Journal> {
        lock(&self.state).inbox.take()
    }

    /// Whether the hub takes another message now. While it does not, the
    /// runner leaves messages in the mixnet client (whose gateway keeps
    /// them) and waits for [`AppHub::room`].
    pub fn has_room(&self) -> bool {
        let mut st = lock(&self.state);
        // The inbox journal behind a slow or failing disk stops intake too
        // (the gateway keeps what comes meanwhile).
        if st.inbox.as_ref().is_some_and(|j| !j.has_room()) {
            return false;
        }
        if self.below_bounds(&st) {
            // The daemon's budget, used up by any identity, also stops it
            // (no app is at fault for that: nobody is disconnected).
            return st.account.as_ref().is_none_or(|a| a.budget().has_room());
        }
        // Full. If what holds the oldest message is an app that fell behind
        // while another app already has it, that app goes.
        let seq = st.base;
        if seq < st.high {
            let mut kicked = Vec::new();
            for (id, s) in st.sessions.iter() {
                if s.cursor <= seq {
                    s.kick.cancel();
                    kicked.push(*id);
                }
            }
            for id in &kicked {
                st.sessions.remove(id);
            }
            if !kicked.is_empty() {
                self.kicked
                    .fetch_add(kicked.len() as u64, Ordering::Relaxed);
                tracing::warn!(
                    sessions = ?kicked,
                    held = st.log.len(),
                    "apps fell too far behind the others: disconnecting them (they can reconnect)"
                );
                let trimmed = st.trim();
                let room = self.below_bounds(&st)
                    && st.account.as_ref().is_none_or(|a| a.budget().has_room());
                drop(st);
                if trimmed {
                    self.room.notify_waiters();
                }
                for id in kicked {
                    self.notify(AppChange::Disconnected { session: id });
                }
                return room;
            }
        }
        false
    }

    fn below_bounds(&self, st: &HubState) -> bool {
        st.log.len() < self.pending_limit && st.bytes < self.pending_bytes
    }

    /// Payload bytes of the messages held for apps, and their bound.
    pub fn pending_bytes(&self) -> (usize, usize) {
        (lock(&self.state).bytes, self.pending_bytes)
    }

    /// Wait until messages leave the log (check [`AppHub::has_room`]
    /// again after).
    pub async fn room(&self) {
        let notified = self.room.notified();
        if self.has_room() {
            return;
        }
        notified.await;
    }

    /// Take a message for the apps. It is journalled (when the inbox is
    /// on) and stays until an app has it. Never blocks; the runner keeps
    /// within the bounds by checking [`AppHub::has_room`] first.
    pub fn deliver(&self, delivery: Delivery) {
        let mut st = lock(&self.state);
        let jid = st.next_jid;
        st.next_jid += 1;
        if let Some(j) = &st.inbox {
            j.add(jid, encode_delivery(&delivery));
        }
        st.bytes += delivery.data.len();
        if let Some(a) = &mut st.account {
            a.force_take(delivery.data.len());
        }
        st.log.push_back(Entry {
            jid,
            delivery: Arc::new(delivery),
        });
        drop(st);
        self.appended.notify_waiters();
    }

    /// The next message for `session` (its sequence number and payload),
    /// waiting until there is one. `None` when the session is not (or no
    /// longer) registered.
    pub(crate) async fn next_for(&self, session: u64) -> Option<(u64, Arc<Delivery>)> {
        loop {
            let notified = self.appended.notified();
            {
                let st = lock(&self.state);
                let s = st.sessions.get(&session)?;
                let cursor = s.cursor.max(st.base);
                if cursor < st.end() {
                    let idx = usize::try_from(cursor - st.base).ok()?;
                    return st.log.get(idx).map(|e| (cursor, e.delivery.clone()));
                }
            }
            notified.await;
        }
    }

    /// `session` wrote message `seq` to its app's socket.
    pub(crate) fn written(&self, session: u64, seq: u64) {
        let mut st = lock(&self.state);
        let Some(s) = st.sessions.get_mut(&session) else {
            return;
        };
        s.cursor = s.cursor.max(seq + 1);
        if !s.tap {
            st.high = st.high.max(seq + 1);
        }
        if st.trim() {
            drop(st);
            self.room.notify_waiters();
        }
    }

    /// Tell one app session about a failure that concerns it (a send it
    /// made failed later). Dropped (with a debug line) if the session is
    /// gone or has too many errors queued.
    pub fn error_to(&self, session: u64, err: ApiError) -> bool {
        let st = lock(&self.state);
        match st.sessions.get(&session) {
            Some(s) => match s.errors.try_send(err) {
                Ok(()) => true,
                Err(_) => {
                    tracing::debug!(session, "an app's error queue is full: dropping an error");
                    false
                }
            },
            None => false,
        }
    }

    /// Register an app that completed its handshake: it starts with the
    /// oldest message no app has been given yet.
    pub(crate) fn register(&self, peer: SocketAddr) -> Registration {
        self.register_as(peer, false)
    }

    /// Register a tap: it gets the messages that arrive from now on, like
    /// any app, but one written to it is not delivered (it stays for the
    /// apps, and the next app to connect gets it if none had it). It holds
    /// the log like an app (and is disconnected like one when too slow).
    pub(crate) fn register_tap(&self, peer: SocketAddr) -> Registration {
        self.register_as(peer, true)
    }

    fn register_as(&self, peer: SocketAddr, tap: bool) -> Registration {
        let session = self.next_session.fetch_add(1, Ordering::Relaxed);
        let kick = CancellationToken::new();
        let (etx, erx) = mpsc::channel(ERROR_QUEUE);
        {
            let mut st = lock(&self.state);
            let cursor = if tap { st.end() } else { st.high.max(st.base) };
            st.sessions.insert(
                session,
                SessionState {
                    cursor,
                    peer,
                    since: std::time::Instant::now(),
                    kick: kick.clone(),
                    errors: etx,
                    tap,
                },
            );
        }
        self.notify(AppChange::Connected { session, peer });
        Registration {
            session,
            kick,
            errors: erx,
        }
    }

    /// The app's session ended.
    pub(crate) fn unregister(&self, session: u64) {
        let (was, trimmed) = {
            let mut st = lock(&self.state);
            let was = st.sessions.remove(&session).is_some();
            (was, st.trim())
        };
        if trimmed {
            self.room.notify_waiters();
        }
        if was {
            self.notify(AppChange::Disconnected { session });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::appserver::inbox::{decode_delivery, encode_delivery, INBOX_HEADER};
    use nymd_proto::SenderTag;
    use std::time::Duration;

    fn delivery(i: u8, tagged: bool) -> Delivery {
        Delivery {
            data: vec![i; usize::from(i) + 1],
            sender_tag: tagged.then_some(SenderTag([i; 16])),
        }
    }

    fn peer() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 9))
    }

    fn open(dir: &std::path::Path, hub: &AppHub) -> Vec<Record> {
        let (j, restored) = Journal::open(dir, INBOX_HEADER, hub.inbox_counter()).expect("journal");
        hub.attach_inbox(j, restored.clone());
        restored
    }

    fn close(hub: &AppHub) {
        if let Some(mut j) = hub.close_inbox() {
            j.close();
        }
    }

    /// What `session` gets next, without waiting.
    fn next_now(hub: &AppHub, session: u64) -> Option<(u64, Arc<Delivery>)> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        rt.block_on(async {
            tokio::time::timeout(Duration::from_millis(20), hub.next_for(session))
                .await
                .ok()
                .flatten()
        })
    }

    /// Write everything `session` has to it; returns the payloads.
    fn drain(hub: &AppHub, session: u64) -> Vec<Delivery> {
        let mut got = Vec::new();
        while let Some((seq, d)) = next_now(hub, session) {
            got.push((*d).clone());
            hub.written(session, seq);
        }
        got
    }

    #[test]
    fn deliveries_round_trip() {
        for d in [delivery(0, false), delivery(7, true), delivery(255, true)] {
            assert_eq!(decode_delivery(&encode_delivery(&d)), Some(d));
        }
        assert_eq!(decode_delivery(&[]), None);
        assert_eq!(decode_delivery(&[1, 2, 3]), None);
        assert_eq!(decode_delivery(&[9, 2, 3]), None);
    }

    /// A flood of received messages with no app reading: each hub takes
    /// messages while it is below its own bounds and the daemon's budget
    /// has room (one message may pass a bound, as the runner checks before
    /// it delivers), then none until apps read; what one identity holds
    /// also stops the others, without disconnecting anyone.
    #[test]
    fn hostile_peer_inbox_stays_within_its_bounds_and_the_daemon_budget() {
        let budget = MemoryBudget::new(3_000);
        let a = AppHub::with_budget(1_000, 2_000, budget.clone());
        let b = AppHub::with_budget(1_000, 2_000, budget.clone());
        let msg = || Delivery {
            data: vec![7; 300],
            sender_tag: None,
        };
        let mut taken = 0;
        while a.has_room() && taken < 100 {
            a.deliver(msg());
            taken += 1;
        }
        assert_eq!(taken, 7, "2,000 bytes of its own, plus one message");
        assert_eq!(a.pending_bytes(), (2_100, 2_000));
        taken = 0;
        while b.has_room() && taken < 100 {
            b.deliver(msg());
            taken += 1;
        }
        assert_eq!(taken, 3, "what the daemon's budget had left, plus one");
        assert_eq!(budget.used(), 3_000);
        assert!(!b.has_room() && !a.has_room());
        // An app reads A's messages: the budget is free again for B.
        let app = a.register(peer());
        assert_eq!(drain(&a, app.session).len(), 7);
        assert_eq!(a.pending_bytes().0, 0);
        assert_eq!(budget.used(), 900);
        assert!(b.has_room());
        assert!(a.is_connected(app.session), "nobody was disconnected");
        drop(b);
        assert_eq!(budget.used(), 0, "a stopped identity's share goes back");
    }

    /// Messages that no app was given outlive the hub (a restart); those
    /// written to an app do not come back.
    #[test]
    fn waiting_messages_survive_a_restart_and_leave_once_written() {
        let dir = tempfile::tempdir().expect("tmp");
        let inbox = dir.path().join("inbox");
        let hub = AppHub::new(10);
        assert!(open(&inbox, &hub).is_empty());
        for i in 0..3 {
            hub.deliver(delivery(i, i % 2 == 1));
        }
        assert_eq!(hub.pending(), 3);
        close(&hub);
        assert_eq!(hub.inbox_messages(), 3);

        let hub = AppHub::new(10);
        assert_eq!(open(&inbox, &hub).len(), 3);
        let app = hub.register(peer());
        // Taken into the app's hands but not written: still in the inbox.
        let (seq, first) = next_now(&hub, app.session).expect("first");
        assert_eq!(*first, delivery(0, false));
        assert_eq!(hub.pending(), 3);
        hub.written(app.session, seq);
        assert_eq!(hub.pending(), 2);
        // The app goes away before the rest are written: they stay.
        hub.unregister(app.session);
        close(&hub);
        assert_eq!(hub.inbox_messages(), 2);

        let hub = AppHub::new(10);
        assert_eq!(open(&inbox, &hub).len(), 2);
        let app = hub.register(peer());
        assert_eq!(
            drain(&hub, app.session),
            vec![delivery(1, true), delivery(2, false)]
        );
        // Delivered while an app is connected: journalled until written.
        hub.deliver(delivery(9, false));
        assert_eq!(drain(&hub, app.session), vec![delivery(9, false)]);
        close(&hub);
        assert_eq!(hub.inbox_messages(), 0);

        let hub = AppHub::new(10);
        assert!(open(&inbox, &hub).is_empty(), "nothing comes back twice");
        close(&hub);
    }

    /// Messages that arrived before the journal was attached are kept too,
    /// after the restored ones.
    #[test]
    fn earlier_messages_are_journalled_on_attach() {
        let dir = tempfile::tempdir().expect("tmp");
        let inbox = dir.path().join("inbox");
        let hub = AppHub::new(10);
        open(&inbox, &hub);
        hub.deliver(delivery(1, false));
        close(&hub);

        let hub = AppHub::new(10);
        hub.deliver(delivery(2, false));
        open(&inbox, &hub);
        close(&hub);

        let hub = AppHub::new(10);
        let restored = open(&inbox, &hub);
        let data: Vec<Delivery> = restored
            .iter()
            .filter_map(|(_, p)| decode_delivery(p))
            .collect();
        assert_eq!(data, vec![delivery(1, false), delivery(2, false)]);
        close(&hub);
    }

    /// A full hub with no app takes nothing more (the runner leaves the
    /// rest with the gateway) and drops nothing; an app that connects gets
    /// the whole backlog in order, then what comes after.
    #[test]
    fn a_full_hub_refuses_more_and_loses_nothing() {
        let hub = AppHub::new(5);
        for i in 0..5 {
            assert!(hub.has_room());
            hub.deliver(delivery(i, false));
        }
        assert!(!hub.has_room());
        let app = hub.register(peer());
        let mut got = drain(&hub, app.session);
        assert!(hub.has_room());
        hub.deliver(delivery(5, false));
        got.extend(drain(&hub, app.session));
        assert_eq!(got, (0..6).map(|i| delivery(i, false)).collect::<Vec<_>>());
        assert_eq!(hub.pending(), 0);
    }

    /// The byte bound holds too.
    #[test]
    fn the_byte_bound_stops_intake() {
        let hub = AppHub::with_limits(100, 10);
        hub.deliver(delivery(4, false)); // 5 bytes
        assert!(hub.has_room());
        hub.deliver(delivery(4, false)); // 10 bytes
        assert!(!hub.has_room());
    }

    /// Two apps: both get every message; a slow one holds only its own
    /// cursor until the log is full, then it is disconnected (the fast one
    /// had everything, so nothing is lost) and intake resumes.
    #[test]
    fn a_slow_app_is_dropped_only_when_it_holds_back_a_full_log() {
        let hub = AppHub::new(4);
        let fast = hub.register(peer());
        let slow = hub.register(peer());
        for i in 0..4 {
            hub.deliver(delivery(i, false));
        }
        assert_eq!(drain(&hub, fast.session).len(), 4);
        // The slow app has written none: all four are still held for it.
        assert_eq!(hub.pending(), 4);
        assert_eq!(hub.undelivered(), 0);
        assert!(!slow.kick.is_cancelled());
        // Full: has_room disconnects the slow app, which frees the log.
        assert!(hub.has_room());
        assert!(slow.kick.is_cancelled());
        assert_eq!(hub.slow_apps_disconnected(), 1);
        assert_eq!(hub.pending(), 0);
        assert!(!hub.is_connected(slow.session));
        assert!(hub.is_connected(fast.session));
    }

    /// A full log of messages no app has had never disconnects anyone.
    #[test]
    fn a_full_log_nobody_had_keeps_its_apps() {
        let hub = AppHub::new(2);
        let app = hub.register(peer());
        hub.deliver(delivery(0, false));
        hub.deliver(delivery(1, false));
        assert!(!hub.has_room());
        assert!(!app.kick.is_cancelled());
        assert_eq!(drain(&hub, app.session).len(), 2);
        assert!(hub.has_room());
    }

    /// An app that connects while another is connected starts at the first
    /// message no app has been given (not at the ones the other already
    /// wrote).
    #[test]
    fn a_second_app_starts_at_the_undelivered_backlog() {
        let hub = AppHub::new(10);
        let a = hub.register(peer());
        hub.deliver(delivery(0, false));
        hub.deliver(delivery(1, false));
        let (seq, _) = next_now(&hub, a.session).expect("first");
        hub.written(a.session, seq);
        let b = hub.register(peer());
        assert_eq!(drain(&hub, b.session), vec![delivery(1, false)]);
        assert_eq!(drain(&hub, a.session), vec![delivery(1, false)]);
        assert_eq!(hub.pending(), 0);
    }

    /// Errors go to the one session they concern.
    #[test]
    fn errors_reach_only_their_session() {
        let hub = AppHub::new(10);
        let mut a = hub.register(peer());
        let mut b = hub.register(peer());
        assert!(hub.error_to(a.session, ApiError::other("yours")));
        assert_eq!(a.errors.try_recv().expect("a's").message, "yours");
        assert!(b.errors.try_recv().is_err());
        hub.unregister(b.session);
        assert!(!hub.error_to(b.session, ApiError::other("gone")));
    }

    /// A tap sees only what arrives after it connected, and what is
    /// written to it still waits for an app: alone, it takes nothing; next
    /// to an app, the app's writes decide when a message leaves.
    #[test]
    fn a_tap_takes_nothing_from_the_apps() {
        let hub = AppHub::new(10);
        hub.deliver(delivery(0, false));
        let tap = hub.register_tap(peer());
        assert!(
            next_now(&hub, tap.session).is_none(),
            "no backlog for a tap"
        );
        hub.deliver(delivery(1, true));
        assert_eq!(drain(&hub, tap.session), vec![delivery(1, true)]);
        assert_eq!(hub.pending(), 2, "the tap's write delivered nothing");
        assert_eq!(hub.undelivered(), 2);
        hub.unregister(tap.session);
        assert_eq!(hub.pending(), 2);
        // The next app gets everything, the tap's message included.
        let app = hub.register(peer());
        assert_eq!(
            drain(&hub, app.session),
            vec![delivery(0, false), delivery(1, true)]
        );
        assert_eq!(hub.pending(), 0);

        // With an app connected, both get a new message; it leaves once
        // both wrote it, in either order.
        let tap = hub.register_tap(peer());
        hub.deliver(delivery(2, false));
        assert_eq!(drain(&hub, tap.session), vec![delivery(2, false)]);
        assert_eq!(hub.pending(), 1);
        assert_eq!(drain(&hub, app.session), vec![delivery(2, false)]);
        assert_eq!(hub.pending(), 0);
    }
}
