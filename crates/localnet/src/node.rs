//! What every node does with node-to-node traffic: the mix listener (TCP,
//! Nym's frames), sphinx processing with replay detection, the per-packet
//! delay, and forwarding. A gateway's mix listener is the same code; at the
//! final hop it hands the packet to its [`GatewayState`].

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nymd_proto::keys::X25519Secret;
use nymd_proto::mixpacket::{encode_frame, Frame, FrameDecoder, FrameVersion};
use nymd_proto::sphinx::{begin_unwrap, Processed};
use nymd_proto::KeyRotation;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{DelayPolicy, Limits};
use crate::counters::{bump, raise, NodeCounters};
use crate::forwarder::Forwarder;
use crate::gateway::GatewayState;
use crate::replay::ReplayFilter;

/// Read buffer of a node link.
const READ_CHUNK: usize = 16 * 1024;

/// What a node keeps across stops and restarts: keys, counters, replay
/// tags and (for gateways) client state.
pub(crate) struct NodeCore {
    /// Node id (for logs).
    pub id: u32,
    /// The x25519 sphinx secret.
    pub sphinx: X25519Secret,
    /// Counters.
    pub counters: Arc<NodeCounters>,
    /// Replay tags seen.
    pub replay: Mutex<ReplayFilter>,
    /// Mix addresses of every node of the network: the only next hops
    /// accepted (Nym's routing filter).
    pub routes: Arc<HashSet<SocketAddr>>,
    /// Delay handling.
    pub delay: DelayPolicy,
    /// Bounds.
    pub limits: Limits,
    /// Client-side state, for gateways.
    pub gateway: Option<Arc<GatewayState>>,
    /// Test fault switch: drop every packet from other nodes
    /// ([`crate::Localnet::set_drop_incoming`]).
    pub drop_incoming: AtomicBool,
}

impl std::fmt::Debug for NodeCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeCore")
            .field("id", &self.id)
            .field("delay", &self.delay)
            .finish_non_exhaustive()
    }
}

/// One run of a node, from start to stop: its cancellation, its tasks and
/// its outbound links.
#[derive(Debug, Clone)]
pub(crate) struct Run {
    pub cancel: CancellationToken,
    pub tracker: TaskTracker,
    pub forwarder: Forwarder,
}

/// Counts an open inbound connection for as long as it lives.
pub(crate) struct ConnGuard {
    counters: Arc<NodeCounters>,
    _permit: OwnedSemaphorePermit,
}

impl ConnGuard {
    pub(crate) fn new(counters: Arc<NodeCounters>, permit: OwnedSemaphorePermit) -> Self {
        counters.connections_now.fetch_add(1, Ordering::Relaxed);
        Self {
            counters,
            _permit: permit,
        }
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.counters
            .connections_now
            .fetch_sub(1, Ordering::Relaxed);
    }
}

impl NodeCore {
    /// Process one framed packet from a peer.
    pub(crate) fn process(&self, frame: Frame, run: &Run) {
        bump(&self.counters.received);
        if self.drop_incoming.load(Ordering::Relaxed) {
            bump(&self.counters.fault_dropped);
            return;
        }
        let partial = match begin_unwrap(&frame.packet, &self.sphinx) {
            Ok(p) => p,
            Err(e) => {
                bump(&self.counters.malformed);
                tracing::warn!(node = self.id, "dropping undecodable packet: {e}");
                return;
            }
        };
        let fresh = self
            .replay
            .lock()
            .map(|mut f| f.insert(partial.replay_tag()))
            .unwrap_or(false);
        if !fresh {
            bump(&self.counters.replayed);
            tracing::warn!(node = self.id, "dropping replayed packet");
            return;
        }
        match partial.finish() {
            Err(e) => {
                bump(&self.counters.malformed);
                tracing::warn!(node = self.id, "dropping malformed packet: {e}");
            }
            Ok(Processed::Forward {
                next_hop,
                delay,
                packet,
            }) => self.forward(next_hop.0, &packet, delay, run),
            Ok(Processed::Final {
                destination,
                plaintext,
            }) => match &self.gateway {
                Some(gw) => gw.final_hop(
                    self,
                    run,
                    destination,
                    frame.header.size,
                    &plaintext,
                    frame.header.key_rotation,
                ),
                None => {
                    bump(&self.counters.malformed);
                    tracing::warn!(
                        node = self.id,
                        "dropping packet whose final hop is a mixnode"
                    );
                }
            },
        }
    }

    /// Send `packet` to `to` after the delay policy's share of `delay`, as a
    /// version-7 frame. Next hops outside the network are refused.
    pub(crate) fn forward(&self, to: SocketAddr, packet: &[u8], delay: Duration, run: &Run) {
        if !self.routes.contains(&to) {
            bump(&self.counters.unroutable);
            tracing::warn!(node = self.id, %to, "dropping packet for an unknown next hop");
            return;
        }
        let frame = match encode_frame(FrameVersion::V7, KeyRotation::Unknown, packet) {
            Ok(f) => f,
            Err(e) => {
                bump(&self.counters.malformed);
                tracing::warn!(node = self.id, "dropping unframeable packet: {e}");
                return;
            }
        };
        let hold = self.delay.hold_for(delay);
        if hold.is_zero() {
            run.forwarder.send(to, frame);
            return;
        }
        let held = self.counters.delayed_now.fetch_add(1, Ordering::Relaxed) + 1;
        if held > self.limits.max_delayed as u64 {
            self.counters.delayed_now.fetch_sub(1, Ordering::Relaxed);
            bump(&self.counters.dropped);
            tracing::debug!(node = self.id, "delay queue full, packet dropped");
            return;
        }
        raise(&self.counters.delayed_max, held);
        let forwarder = run.forwarder.clone();
        let cancel = run.cancel.clone();
        let counters = self.counters.clone();
        run.tracker.spawn(async move {
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = tokio::time::sleep(hold) => { forwarder.send(to, frame); }
            }
            counters.delayed_now.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// Accept node links until the run is cancelled.
pub(crate) async fn serve_mix(listener: TcpListener, core: Arc<NodeCore>, run: Run) {
    let slots = Arc::new(Semaphore::new(core.limits.max_mix_connections.max(1)));
    loop {
        let accepted = tokio::select! {
            _ = run.cancel.cancelled() => return,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, peer)) => {
                let Ok(permit) = slots.clone().try_acquire_owned() else {
                    bump(&core.counters.dropped);
                    tracing::warn!(node = core.id, %peer, "too many node links, refusing one");
                    continue;
                };
                let guard = ConnGuard::new(core.counters.clone(), permit);
                let (core, run2) = (core.clone(), run.clone());
                run.tracker.spawn(async move {
                    mix_link(stream, peer, &core, &run2).await;
                    drop(guard);
                });
            }
            Err(e) => {
                tracing::warn!(node = core.id, "mix accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Read frames from one peer until it closes, sends an invalid frame, or the
/// run is cancelled.
async fn mix_link(mut stream: TcpStream, peer: SocketAddr, core: &NodeCore, run: &Run) {
    let _ = stream.set_nodelay(true);
    let mut decoder = FrameDecoder::new();
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        let n = tokio::select! {
            _ = run.cancel.cancelled() => return,
            r = stream.read(&mut buf) => match r {
                Ok(0) => return,
                Ok(n) => n,
                Err(e) => {
                    tracing::debug!(node = core.id, %peer, "node link read failed: {e}");
                    return;
                }
            },
        };
        let pushed = decoder.push(&buf[..n]);
        // Frames completed before an invalid one are still served.
        while let Some(frame) = decoder.pop() {
            core.process(frame, run);
        }
        if let Err(e) = pushed {
            bump(&core.counters.malformed);
            tracing::warn!(node = core.id, %peer, "invalid node frame, closing the link: {e}");
            return;
        }
    }
}
