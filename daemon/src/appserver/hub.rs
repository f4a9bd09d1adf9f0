//! Fans received messages out to the connected apps of one identity.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use nymd_fsutil::journal::{Journal, Record};
use nymd_proto::appapi::ApiError;
use tokio::sync::mpsc;

use super::inbox::{decode_delivery, encode_delivery};
use super::{AppChange, ConnectedApp, Delivery, APP_QUEUE};

/// Something to write to one app.
#[derive(Debug, Clone)]
pub(crate) enum Outbound {
    Delivery(Arc<Delivery>),
    Error(ApiError),
}

#[derive(Debug, Default)]
struct HubState {
    apps: HashMap<u64, mpsc::Sender<Outbound>>,
    /// Who is connected and since when, for status and events.
    peers: HashMap<u64, (SocketAddr, std::time::Instant)>,
    /// Messages waiting for an app, with their inbox journal ids.
    pending: VecDeque<(u64, Arc<Delivery>)>,
    next_id: u64,
    /// The inbox journal (see [`AppHub::attach_inbox`]).
    inbox: Option<Journal>,
}

impl HubState {
    /// A pending message left the hub (taken by an app, or dropped).
    fn taken(&self, id: u64) {
        if let Some(j) = &self.inbox {
            j.done(id);
        }
    }
}

type Observer = Box<dyn Fn(AppChange) + Send + Sync>;

/// Fans mixnet messages out to the connected apps of one identity, and keeps
/// them (bounded) while none is connected.
pub struct AppHub {
    state: Mutex<HubState>,
    observer: Mutex<Option<Observer>>,
    pending_limit: usize,
    next_session: AtomicU64,
    dropped_pending: AtomicU64,
    inbox_count: Arc<AtomicU64>,
}

impl std::fmt::Debug for AppHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppHub")
            .field("pending_limit", &self.pending_limit)
            .finish_non_exhaustive()
    }
}

impl AppHub {
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
        let Ok(st) = self.state.lock() else {
            return Vec::new();
        };
        let mut v: Vec<ConnectedApp> = st
            .peers
            .iter()
            .map(|(session, (peer, since))| ConnectedApp {
                session: *session,
                peer: *peer,
                connected_for: since.elapsed(),
            })
            .collect();
        v.sort_by_key(|a| a.session);
        v
    }

    /// A hub that keeps at most `pending_limit` messages while no app is
    /// connected.
    pub fn new(pending_limit: usize) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(HubState::default()),
            observer: Mutex::new(None),
            pending_limit: pending_limit.max(1),
            next_session: AtomicU64::new(1),
            dropped_pending: AtomicU64::new(0),
            inbox_count: Arc::default(),
        })
    }

    /// Number of connected apps.
    pub fn connected_apps(&self) -> usize {
        self.state.lock().map(|s| s.apps.len()).unwrap_or(0)
    }

    /// Messages waiting for an app.
    pub fn pending(&self) -> usize {
        self.state.lock().map(|s| s.pending.len()).unwrap_or(0)
    }

    /// Messages waiting for an app that are kept on disk.
    pub fn inbox_messages(&self) -> u64 {
        self.inbox_count.load(Ordering::Relaxed)
    }

    /// The counter [`AppHub::attach_inbox`]'s journal keeps current.
    pub fn inbox_counter(&self) -> Arc<AtomicU64> {
        self.inbox_count.clone()
    }

    /// Keep the messages that wait for an app in `journal`, and take back
    /// the ones it held from before a restart (they go first, in order).
    pub fn attach_inbox(&self, journal: Journal, restored: Vec<Record>) {
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        let mut queue = VecDeque::with_capacity(restored.len() + st.pending.len());
        for (id, payload) in restored {
            st.next_id = st.next_id.max(id.saturating_add(1));
            match decode_delivery(&payload) {
                Some(d) => queue.push_back((id, Arc::new(d))),
                None => {
                    tracing::warn!(id, "skipping an unreadable inbox entry");
                    journal.done(id);
                }
            }
        }
        if !queue.is_empty() {
            tracing::info!(
                messages = queue.len(),
                "messages received before the restart wait for an app"
            );
        }
        // Anything that arrived before the journal was attached is kept now.
        let earlier: Vec<(u64, Arc<Delivery>)> = st.pending.drain(..).collect();
        for (_, d) in earlier {
            let id = st.next_id;
            st.next_id += 1;
            journal.add(id, encode_delivery(&d));
            queue.push_back((id, d));
        }
        while queue.len() > self.pending_limit {
            if let Some((id, _)) = queue.pop_front() {
                journal.done(id);
                self.dropped_pending.fetch_add(1, Ordering::Relaxed);
            }
        }
        st.pending = queue;
        st.inbox = Some(journal);
    }

    /// Write what the inbox journal has queued and stop its writer
    /// (blocking; the runner calls it when the identity stops).
    pub fn close_inbox(&self) -> Option<Journal> {
        self.state.lock().ok().and_then(|mut st| st.inbox.take())
    }

    /// Messages discarded because the pending buffer was full.
    pub fn dropped_pending(&self) -> u64 {
        self.dropped_pending.load(Ordering::Relaxed)
    }

    /// Hand a message to every connected app, or keep it until one connects.
    /// Never blocks: an app whose queue is full is disconnected (it can
    /// reconnect) rather than stall the identity.
    pub fn deliver(&self, delivery: Delivery) {
        let d = Arc::new(delivery);
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        if st.apps.is_empty() {
            if st.pending.len() >= self.pending_limit {
                if let Some((id, _)) = st.pending.pop_front() {
                    st.taken(id);
                }
                self.dropped_pending.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    "no app connected and {} messages waiting: dropped the oldest",
                    self.pending_limit
                );
            }
            let id = st.next_id;
            st.next_id += 1;
            if let Some(j) = &st.inbox {
                j.add(id, encode_delivery(&d));
            }
            st.pending.push_back((id, d));
            return;
        }
        st.apps.retain(
            |session, tx| match tx.try_send(Outbound::Delivery(d.clone())) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    tracing::warn!(session, "app is not reading its messages: disconnecting it");
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            },
        );
    }

    /// Send an `error` response to every connected app (for failures that are
    /// not a direct answer to a request, e.g. retransmissions exhausted).
    pub fn broadcast_error(&self, err: ApiError) {
        if let Ok(st) = self.state.lock() {
            for tx in st.apps.values() {
                let _ = tx.try_send(Outbound::Error(err.clone()));
            }
        }
    }

    pub(crate) fn register(
        &self,
        allow_multiple: bool,
        peer: SocketAddr,
    ) -> Option<(u64, mpsc::Receiver<Outbound>)> {
        let registered = self.register_inner(allow_multiple, peer);
        if let Some((session, _)) = &registered {
            self.notify(AppChange::Connected {
                session: *session,
                peer,
            });
        }
        registered
    }

    fn register_inner(
        &self,
        allow_multiple: bool,
        peer: SocketAddr,
    ) -> Option<(u64, mpsc::Receiver<Outbound>)> {
        let mut st = self.state.lock().ok()?;
        if !allow_multiple && !st.apps.is_empty() {
            return None;
        }
        let session = self.next_session.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(APP_QUEUE);
        // Flush what arrived while nobody was connected, in order. Messages
        // beyond the app queue stay pending for the next app.
        while let Some((id, d)) = st.pending.front() {
            if tx.try_send(Outbound::Delivery(d.clone())).is_err() {
                break;
            }
            let id = *id;
            st.pending.pop_front();
            st.taken(id);
        }
        st.apps.insert(session, tx);
        st.peers.insert(session, (peer, std::time::Instant::now()));
        Some((session, rx))
    }

    pub(crate) fn unregister(&self, session: u64) {
        if let Ok(mut st) = self.state.lock() {
            st.apps.remove(&session);
            st.peers.remove(&session);
        }
        self.notify(AppChange::Disconnected { session });
    }

    /// Reserve a slot for a TCP connection before its handshake (one-app
    /// mode): `false` if an app is already connected.
    pub(crate) fn slot_free(&self, allow_multiple: bool) -> bool {
        allow_multiple || self.connected_apps() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::appserver::inbox::{decode_delivery, encode_delivery, INBOX_HEADER};
    use nymd_proto::SenderTag;
    use std::net::SocketAddr;

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

    #[test]
    fn deliveries_round_trip() {
        for d in [delivery(0, false), delivery(7, true), delivery(255, true)] {
            assert_eq!(decode_delivery(&encode_delivery(&d)), Some(d));
        }
        assert_eq!(decode_delivery(&[]), None);
        assert_eq!(decode_delivery(&[1, 2, 3]), None);
        assert_eq!(decode_delivery(&[9, 2, 3]), None);
    }

    /// Messages that wait for an app outlive the hub (a restart); those an
    /// app took, or that the limit dropped, do not come back.
    #[test]
    fn waiting_messages_survive_a_restart_and_leave_when_taken() {
        let dir = tempfile::tempdir().expect("tmp");
        let inbox = dir.path().join("inbox");
        let hub = AppHub::new(3);
        assert!(open(&inbox, &hub).is_empty());
        for i in 0..4 {
            hub.deliver(delivery(i, i % 2 == 1));
        }
        // The limit of 3 dropped the oldest.
        assert_eq!(hub.pending(), 3);
        close(&hub);
        assert_eq!(hub.inbox_messages(), 3);

        let hub = AppHub::new(3);
        let restored = open(&inbox, &hub);
        assert_eq!(restored.len(), 3);
        assert_eq!(hub.pending(), 3);
        let (_, mut rx) = hub.register_inner(true, peer()).expect("app");
        let mut got = Vec::new();
        while let Ok(Outbound::Delivery(d)) = rx.try_recv() {
            got.push((*d).clone());
        }
        assert_eq!(
            got,
            vec![delivery(1, true), delivery(2, false), delivery(3, true)]
        );
        // Delivered while an app is connected: not journalled.
        hub.deliver(delivery(9, false));
        close(&hub);
        assert_eq!(hub.inbox_messages(), 0);

        let hub = AppHub::new(3);
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
}
