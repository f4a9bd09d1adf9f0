//! One proxied connection, from its Connect to its end (spec §6.3, §6.4,
//! §5.7): resolve, check every address against the policy, connect, then
//! pump bytes both ways until either side ends.
//!
//! The requester's dispatcher puts the client's Sends back in order and
//! hands the contiguous bytes to this task through an unbounded channel
//! whose bytes it counts (`queued`), so what waits for a slow target is
//! bounded by [`ExitConfig::max_buffered_bytes`](crate::ExitConfig).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nymd_mixnet::{ClientError, ClientHandle, Lane, OutgoingMessage};
use nymd_proto::socks5::ordered::{Delivery, OrderedSender};
use nymd_proto::socks5::{ConnectionId, ProviderResponse, SocketData, Socks5Response, Versions};
use nymd_proto::{Recipient, SenderTag};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::requester::Ctx;
use crate::stats::Counters;

/// How often a connection whose lane is over its high-water mark looks
/// again.
const LANE_POLL: Duration = Duration::from_millis(20);
/// How often a finished connection looks whether its lane has drained.
const DRAIN_POLL: Duration = Duration::from_millis(250);
/// Longest wait for the client core to take in a message just sent.
const SETTLE_MAX: Duration = Duration::from_millis(250);
/// How often that is looked at.
const SETTLE_POLL: Duration = Duration::from_millis(1);

/// Where a connection's answers go (spec §6.5).
#[allow(
    clippy::large_enum_variant,
    reason = "one per connection, copied into each message it sends; a box would only add an allocation"
)]
#[derive(Debug, Clone, Copy)]
pub(crate) enum ReturnPath {
    /// The Connect named its sender: plain messages to it.
    Address(Recipient),
    /// An anonymous sender: replies through its reply SURBs.
    Tag(SenderTag),
}

impl ReturnPath {
    pub fn message(self, data: Vec<u8>, lane: Lane) -> OutgoingMessage {
        match self {
            Self::Address(recipient) => OutgoingMessage::Plain {
                recipient,
                data,
                lane,
            },
            Self::Tag(sender_tag) => OutgoingMessage::Reply {
                sender_tag,
                data,
                lane,
            },
        }
    }
}

/// What a connection task is started with.
#[derive(Debug)]
pub(crate) struct ConnStart {
    pub conn_id: ConnectionId,
    /// The Connect's `host:port` text.
    pub remote: String,
    /// The Connect's versions; every answer on the connection uses them.
    pub versions: Versions,
    pub path: ReturnPath,
    /// Fired by the dispatcher to cut the connection off (a child of the
    /// exit's token).
    pub stop: CancellationToken,
    /// The client's bytes in order, for the target.
    pub from_client: mpsc::UnboundedReceiver<Delivery>,
    /// Bytes in `from_client` not yet written.
    pub queued: Arc<AtomicUsize>,
    /// Told when the task is done with the connection.
    pub ended: mpsc::UnboundedSender<ConnectionId>,
}

/// Why a Connect got no connection.
enum NotOpened {
    /// Answered with ConnectionError: the policy, or a name that does not
    /// resolve.
    Refused(String),
    /// Answered with NetworkData seq 0, closed: the TCP connect failed.
    Failed(String),
    /// Cut off before it connected.
    Stopped,
}

/// Run one connection to its end.
pub(crate) async fn run(ctx: Arc<Ctx>, start: ConnStart) {
    let ConnStart {
        conn_id,
        remote,
        versions,
        path,
        stop,
        from_client,
        queued,
        ended,
    } = start;
    let counters = &ctx.counters;
    match open(&ctx, &remote, &stop).await {
        Ok(stream) => {
            Counters::add(&counters.total, 1);
            Counters::add(&counters.open, 1);
            tracing::debug!(conn_id, remote = ?remote, "connection open");
            let proxy = Proxy {
                ctx: &ctx,
                conn_id,
                versions,
                path,
                stop,
                queued,
                last_activity: AtomicU64::new(0),
                started: Instant::now(),
            };
            proxy.run(stream, from_client).await;
            Counters::sub(&counters.open, 1);
            tracing::debug!(conn_id, remote = ?remote, "connection closed");
        }
        Err(NotOpened::Refused(reason)) => {
            Counters::add(&counters.refused, 1);
            if let Some(skipped) = ctx.refusal_log.check() {
                tracing::info!(conn_id, remote = ?remote, %reason, skipped, "connection refused");
            }
            let message = format!("Domain {remote:?} failed filter check");
            let response = Socks5Response::ConnectionError { conn_id, message };
            send_response(&ctx, path, versions, conn_id, response).await;
        }
        Err(NotOpened::Failed(reason)) => {
            Counters::add(&counters.failed, 1);
            if let Some(skipped) = ctx.refusal_log.check() {
                tracing::info!(conn_id, remote = ?remote, %reason, skipped, "connection failed");
            }
            let close = OrderedSender::new(conn_id).close();
            let response = Socks5Response::NetworkData(close);
            send_response(&ctx, path, versions, conn_id, response).await;
        }
        Err(NotOpened::Stopped) => {
            if !ctx.cancel.is_cancelled() {
                let close = OrderedSender::new(conn_id).close();
                let response = Socks5Response::NetworkData(close);
                send_response(&ctx, path, versions, conn_id, response).await;
            }
        }
    }
    let _ = ended.send(conn_id);
    drain_lane(&ctx, conn_id).await;
}

/// Resolve, check and connect, each bounded by the connect timeout.
async fn open(ctx: &Ctx, remote: &str, stop: &CancellationToken) -> Result<TcpStream, NotOpened> {
    let timeout = ctx.config.connect_timeout;
    let resolve = tokio::time::timeout(timeout, tokio::net::lookup_host(remote));
    let resolved = tokio::select! {
        _ = stop.cancelled() => return Err(NotOpened::Stopped),
        r = resolve => r,
    };
    let addrs: Vec<SocketAddr> = match resolved {
        Err(_) => return Err(NotOpened::Refused("name resolution timed out".into())),
        Ok(Err(e)) => return Err(NotOpened::Refused(format!("name resolution failed: {e}"))),
        Ok(Ok(a)) => a.collect(),
    };
    if addrs.is_empty() {
        return Err(NotOpened::Refused("the name resolves to no address".into()));
    }
    if let Some(bad) = ctx.config.policy.first_refused(&addrs) {
        return Err(NotOpened::Refused(format!("the exit policy refuses {bad}")));
    }
    // Connect to the addresses just checked (not to the name again, which
    // could resolve differently), in turn, within one deadline.
    let deadline = Instant::now() + timeout;
    let mut last = String::from("no address tried");
    for addr in addrs {
        let attempt = tokio::time::timeout_at(deadline, TcpStream::connect(addr));
        let result = tokio::select! {
            _ = stop.cancelled() => return Err(NotOpened::Stopped),
            r = attempt => r,
        };
        match result {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Ok(Err(e)) => last = format!("{addr}: {e}"),
            Err(_) => {
                return Err(NotOpened::Failed(format!(
                    "connect timed out after {timeout:?} ({addr})"
                )))
            }
        }
    }
    Err(NotOpened::Failed(last))
}

/// Encode and send one answer on the connection's lane (given up only when
/// the exit stops).
async fn send_response(
    ctx: &Ctx,
    path: ReturnPath,
    versions: Versions,
    conn_id: ConnectionId,
    response: Socks5Response,
) -> bool {
    let bytes = match (ProviderResponse::Socks5 { versions, response }).encode() {
        Ok(b) => b,
        Err(e) => {
            tracing::debug!(
                conn_id,
                "cannot encode an answer in the Connect's versions: {e}"
            );
            return false;
        }
    };
    let message = path.message(bytes, Lane::Connection(conn_id));
    let sent = tokio::select! {
        _ = ctx.cancel.cancelled() => return false,
        r = ctx.client.send(message) => r,
    };
    match sent {
        Ok(()) => true,
        Err(ClientError::Shutdown) => false,
        Err(e) => {
            tracing::debug!(conn_id, "cannot send to the client: {e}");
            false
        }
    }
}

/// Packets the client core has taken in: queued now plus sent so far
/// (over every lane). It grows when the core takes a message.
fn taken_in(client: &ClientHandle) -> u64 {
    let s = client.stats();
    s.queued_packets.saturating_add(s.real_packets_sent)
}

/// Wait (bounded) until the connection's last messages have left its lane,
/// then close the lane, dropping whatever is left.
async fn drain_lane(ctx: &Ctx, conn_id: ConnectionId) {
    let deadline = Instant::now() + ctx.config.lane_drain_timeout;
    while ctx.client.lane_queue_length(conn_id) > 0 && Instant::now() < deadline {
        tokio::select! {
            _ = ctx.cancel.cancelled() => return,
            _ = tokio::time::sleep(DRAIN_POLL) => {}
        }
    }
    ctx.client.close_lane(conn_id);
}

/// An open connection.
struct Proxy<'a> {
    ctx: &'a Ctx,
    conn_id: ConnectionId,
    versions: Versions,
    path: ReturnPath,
    stop: CancellationToken,
    queued: Arc<AtomicUsize>,
    /// Milliseconds after `started` of the last byte moved either way.
    last_activity: AtomicU64,
    started: Instant,
}

impl Proxy<'_> {
    async fn run(&self, stream: TcpStream, from_client: mpsc::UnboundedReceiver<Delivery>) {
        let (reader, writer) = stream.into_split();
        // Fired when each direction ends: the other keeps going for the
        // half-close grace, then ends too.
        let target_done = CancellationToken::new();
        let client_done = CancellationToken::new();
        let outbound = async {
            self.to_target(writer, from_client, &target_done).await;
            client_done.cancel();
        };
        let inbound = async {
            self.to_client(reader, &client_done).await;
            target_done.cancel();
        };
        tokio::join!(inbound, outbound);
    }

    fn touch(&self) {
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_activity.store(ms, Ordering::Relaxed);
    }

    fn idle_deadline(&self) -> Instant {
        let last = Duration::from_millis(self.last_activity.load(Ordering::Relaxed));
        self.started + last + self.ctx.config.idle_timeout
    }

    /// Send one NetworkData; false when the client is gone or the exit
    /// stops.
    async fn send(&self, data: SocketData) -> bool {
        let response = Socks5Response::NetworkData(data);
        send_response(self.ctx, self.path, self.versions, self.conn_id, response).await
    }

    /// Wait (at most [`SETTLE_MAX`]) until the client core has taken in
    /// what was sent since `before` was read, so that the lane's length
    /// counts it before the next read is decided on. `send` returns once
    /// the message is in the client's request queue; without this, a fast
    /// target would be read as fast as that queue takes messages.
    async fn settle(&self, before: u64) {
        let deadline = Instant::now() + SETTLE_MAX;
        while taken_in(&self.ctx.client) <= before && Instant::now() < deadline {
            tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = tokio::time::sleep(SETTLE_POLL) => {}
            }
        }
    }

    /// Target → client: the seq-0 keepalive, then what the target sends,
    /// in reads of at most `read_size`, paused while the lane is full;
    /// keepalives after quiet spells; a close at the end.
    async fn to_client(&self, mut reader: OwnedReadHalf, client_done: &CancellationToken) {
        // Numbers what goes to the client.
        let mut sender = OrderedSender::new(self.conn_id);
        let config = &self.ctx.config;
        let counters = &self.ctx.counters;
        if !self.send(sender.keepalive()).await {
            self.stop.cancel();
            return;
        }
        let mut last_sent = Instant::now();
        let mut buf = vec![0u8; config.read_size.max(1)];
        let grace = async {
            client_done.cancelled().await;
            tokio::time::sleep(config.half_close_grace).await;
        };
        tokio::pin!(grace);
        loop {
            let room = self.ctx.client.lane_queue_length(self.conn_id) <= config.lane_high_water;
            let keepalive_at = last_sent + config.keepalive_interval;
            let idle_at = self.idle_deadline();
            tokio::select! {
                biased;
                _ = self.stop.cancelled() => {
                    if !self.ctx.cancel.is_cancelled() {
                        self.send(sender.close()).await;
                    }
                    return;
                }
                _ = &mut grace => {
                    self.send(sender.close()).await;
                    return;
                }
                _ = tokio::time::sleep_until(idle_at) => {
                    if Instant::now() >= self.idle_deadline() {
                        tracing::debug!(conn_id = self.conn_id, "connection idle; closing");
                        self.stop.cancel();
                        self.send(sender.close()).await;
                        return;
                    }
                }
                _ = tokio::time::sleep_until(keepalive_at) => {
                    if !self.send(sender.keepalive()).await {
                        self.stop.cancel();
                        return;
                    }
                    last_sent = Instant::now();
                }
                _ = tokio::time::sleep(LANE_POLL), if !room => {}
                r = reader.read(&mut buf), if room => {
                    let n = match r {
                        Ok(n) => n,
                        Err(e) => {
                            tracing::debug!(conn_id = self.conn_id, "target read failed: {e}");
                            0
                        }
                    };
                    if n == 0 {
                        self.send(sender.close()).await;
                        return;
                    }
                    Counters::add(&counters.from_targets, n as u64);
                    self.touch();
                    let before = taken_in(&self.ctx.client);
                    if !self.send(sender.message(buf[..n].to_vec(), false)).await {
                        self.stop.cancel();
                        return;
                    }
                    last_sent = Instant::now();
                    self.settle(before).await;
                }
            }
        }
    }

    /// Client → target: the ordered bytes, written as they come; the
    /// client's close shuts the target's write half.
    async fn to_target(
        &self,
        mut writer: OwnedWriteHalf,
        mut from_client: mpsc::UnboundedReceiver<Delivery>,
        target_done: &CancellationToken,
    ) {
        let counters = &self.ctx.counters;
        let grace = async {
            target_done.cancelled().await;
            tokio::time::sleep(self.ctx.config.half_close_grace).await;
        };
        tokio::pin!(grace);
        loop {
            let delivery = tokio::select! {
                biased;
                _ = self.stop.cancelled() => return,
                _ = &mut grace => return,
                d = from_client.recv() => match d {
                    Some(d) => d,
                    None => return,
                },
            };
            let n = delivery.data.len();
            let written = tokio::select! {
                _ = self.stop.cancelled() => return,
                r = writer.write_all(&delivery.data) => r,
            };
            self.queued.fetch_sub(n, Ordering::Relaxed);
            if let Err(e) = written {
                tracing::debug!(conn_id = self.conn_id, "target write failed: {e}");
                return;
            }
            Counters::add(&counters.to_targets, n as u64);
            if n > 0 {
                self.touch();
            }
            if delivery.closed {
                let _ = writer.shutdown().await;
                return;
            }
        }
    }
}
