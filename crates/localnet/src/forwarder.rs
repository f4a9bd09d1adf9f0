//! Outbound node-to-node links. One task per next hop owns its TCP
//! connection and a bounded queue of already-framed packets; a full queue or a
//! dead peer drops packets (counted), as a mixnet node does, and never blocks
//! the caller.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Packets queued per next hop before new ones are dropped.
const QUEUE_PER_PEER: usize = 2048;
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
    cancel: CancellationToken,
    tracker: TaskTracker,
    /// Packets dropped because a queue was full or a peer unreachable.
    dropped: AtomicU64,
    /// Packets written to a socket.
    sent: AtomicU64,
}

impl Forwarder {
    /// A forwarder whose link tasks stop when `cancel` fires.
    pub fn new(cancel: CancellationToken, tracker: TaskTracker) -> Self {
        Self {
            inner: Arc::new(Inner {
                peers: Mutex::new(HashMap::new()),
                cancel,
                tracker,
                dropped: AtomicU64::new(0),
                sent: AtomicU64::new(0),
            }),
        }
    }

    /// Queue `frame` for `to`. Returns false if it was dropped.
    pub fn send(&self, to: SocketAddr, frame: Vec<u8>) -> bool {
        let Ok(mut peers) = self.inner.peers.lock() else {
            return false;
        };
        let tx = peers
            .entry(to)
            .or_insert_with(|| {
                let (tx, rx) = mpsc::channel(QUEUE_PER_PEER);
                let inner = self.inner.clone();
                self.inner.tracker.spawn(link(to, rx, inner));
                tx
            })
            .clone();
        drop(peers);
        match tx.try_send(frame) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.inner.dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
            Err(mpsc::error::TrySendError::Closed(frame)) => {
                // The link task ended (cancelled); forget it and retry once.
                if let Ok(mut peers) = self.inner.peers.lock() {
                    peers.remove(&to);
                }
                if self.inner.cancel.is_cancelled() {
                    self.inner.dropped.fetch_add(1, Ordering::Relaxed);
                    return false;
                }
                self.send(to, frame)
            }
        }
    }

    /// Packets dropped so far.
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    /// Packets written so far.
    pub fn sent(&self) -> u64 {
        self.inner.sent.load(Ordering::Relaxed)
    }
}

async fn link(to: SocketAddr, mut rx: mpsc::Receiver<Vec<u8>>, inner: Arc<Inner>) {
    let mut conn: Option<TcpStream> = None;
    loop {
        let frame = tokio::select! {
            _ = inner.cancel.cancelled() => return,
            f = rx.recv() => match f {
                Some(f) => f,
                None => return,
            },
        };
        if conn.is_none() {
            match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(to)).await {
                Ok(Ok(s)) => {
                    let _ = s.set_nodelay(true);
                    conn = Some(s);
                }
                Ok(Err(e)) => {
                    tracing::debug!(%to, "next hop unreachable: {e}");
                    inner.dropped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                Err(_) => {
                    tracing::debug!(%to, "next hop connect timed out");
                    inner.dropped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
            }
        }
        if let Some(stream) = conn.as_mut() {
            match stream.write_all(&frame).await {
                Ok(()) => {
                    inner.sent.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    tracing::debug!(%to, "link to next hop broke: {e}");
                    inner.dropped.fetch_add(1, Ordering::Relaxed);
                    conn = None;
                }
            }
        }
    }
}
