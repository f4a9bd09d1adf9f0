//! Outbound node-to-node links. One task per next hop owns its TCP
//! connection and a bounded queue of already-framed packets; a full queue or a
//! dead peer drops packets (counted), as a mixnet node does, and never blocks
//! the caller.
//!
//! Links are plain TCP carrying Nym's node frames (version 7): our nodes
//! announce no Noise key, and Nym falls back to raw TCP in that case. A peer
//! never writes on a link, so anything readable (normally EOF) means the peer
//! went away; the link notices at once and reconnects for the next packet
//! instead of losing it to a half-closed socket.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::counters::{bump, raise, NodeCounters};

/// Time allowed to open a connection to a next hop.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Sends framed packets to next hops.
#[derive(Debug, Clone)]
pub struct Forwarder {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    peers: Mutex<HashMap<SocketAddr, mpsc::Sender<Vec<u8>>>>,
    queue_per_peer: usize,
    cancel: CancellationToken,
    tracker: TaskTracker,
    counters: Arc<NodeCounters>,
}

impl Forwarder {
    /// A forwarder whose link tasks run on `tracker` and stop when `cancel`
    /// fires. `forwarded`, `dropped` and `queued_max` go to `counters`.
    pub fn new(
        queue_per_peer: usize,
        cancel: CancellationToken,
        tracker: TaskTracker,
        counters: Arc<NodeCounters>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                peers: Mutex::new(HashMap::new()),
                queue_per_peer: queue_per_peer.max(1),
                cancel,
                tracker,
                counters,
            }),
        }
    }

    /// Queue `frame` for `to`. Returns false if it was dropped. Callers
    /// check `to` against the network's nodes first, which bounds the
    /// number of links.
    pub fn send(&self, to: SocketAddr, frame: Vec<u8>) -> bool {
        let inner = &self.inner;
        if inner.cancel.is_cancelled() {
            bump(&inner.counters.dropped);
            return false;
        }
        let Ok(mut peers) = inner.peers.lock() else {
            bump(&inner.counters.dropped);
            return false;
        };
        let tx = peers
            .entry(to)
            .or_insert_with(|| {
                let (tx, rx) = mpsc::channel(inner.queue_per_peer);
                inner.tracker.spawn(link(to, rx, self.inner.clone()));
                tx
            })
            .clone();
        drop(peers);
        match tx.try_send(frame) {
            Ok(()) => {
                let queued = tx.max_capacity().saturating_sub(tx.capacity());
                raise(&inner.counters.queued_max, queued as u64);
                true
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::debug!(%to, "queue to next hop full, packet dropped");
                bump(&inner.counters.dropped);
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                // Only happens once cancelled: link tasks never end otherwise.
                if let Ok(mut peers) = inner.peers.lock() {
                    peers.remove(&to);
                }
                bump(&inner.counters.dropped);
                false
            }
        }
    }
}

async fn connect(to: SocketAddr) -> Option<TcpStream> {
    match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(to)).await {
        Ok(Ok(s)) => {
            let _ = s.set_nodelay(true);
            Some(s)
        }
        Ok(Err(e)) => {
            tracing::debug!(%to, "next hop unreachable: {e}");
            None
        }
        Err(_) => {
            tracing::debug!(%to, "next hop connect timed out");
            None
        }
    }
}

enum LinkEvent {
    Frame(Vec<u8>),
    PeerClosed,
    Stop,
}

/// Completes when the peer closes (or writes, which peers never do).
async fn peer_closed(conn: &mut Option<TcpStream>, scratch: &mut [u8]) {
    match conn.as_mut() {
        Some(s) => {
            let _ = s.read(scratch).await;
        }
        None => std::future::pending::<()>().await,
    }
}

async fn link(to: SocketAddr, mut rx: mpsc::Receiver<Vec<u8>>, inner: Arc<Inner>) {
    let mut conn: Option<TcpStream> = None;
    let mut scratch = [0u8; 64];
    loop {
        let event = tokio::select! {
            _ = inner.cancel.cancelled() => LinkEvent::Stop,
            f = rx.recv() => f.map_or(LinkEvent::Stop, LinkEvent::Frame),
            _ = peer_closed(&mut conn, &mut scratch) => LinkEvent::PeerClosed,
        };
        let frame = match event {
            LinkEvent::Stop => return,
            LinkEvent::PeerClosed => {
                tracing::debug!(%to, "next hop closed the link");
                conn = None;
                continue;
            }
            LinkEvent::Frame(f) => f,
        };
        if conn.is_none() {
            conn = connect(to).await;
        }
        let Some(stream) = conn.as_mut() else {
            bump(&inner.counters.dropped);
            continue;
        };
        match stream.write_all(&frame).await {
            Ok(()) => bump(&inner.counters.forwarded),
            Err(e) => {
                tracing::debug!(%to, "link to next hop broke: {e}");
                bump(&inner.counters.dropped);
                conn = None;
            }
        }
    }
}
