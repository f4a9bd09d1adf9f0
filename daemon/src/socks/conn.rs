//! One proxied connection, after its user was let in:
//!
//! 1. the SOCKS handshake ([`nymd_proto::socks5::local::Handshake`]), within
//!    [`HANDSHAKE_DEADLINE`]; a refused one gets its reply and is closed;
//! 2. a place under the identity's `max_connections` (else a failure reply);
//! 3. Connect to the network requester on the connection's own lane, then an
//!    empty Send (seq 0), as Nym's client does;
//! 4. the CONNECT is answered only when the requester has: success on its
//!    first NetworkData; "not allowed" (SOCKS5 0x02, SOCKS4 0x5B) on a
//!    ConnectionError, whose text is logged; "connection refused" (0x05)
//!    when its TCP connect failed (seq 0, closed, no data); "host
//!    unreachable" (0x04) without an answer in `connect_timeout_secs`;
//!    "network unreachable" (0x03) when the mixnet client cannot send to it;
//! 5. the data both ways: reads of at most [`MAX_READ`], each one Send with
//!    the next sequence number, held back while the lane has more than
//!    [`LANE_BACKPRESSURE`] packets queued; the requester's data put back in
//!    order (bounded) and written to the app; an empty Send after
//!    [`KEEPALIVE`] without data;
//! 6. closing (spec §5.7, simplified): the requester's close ends the
//!    writing once what came before it is written, then the socket is
//!    closed; the app's EOF sends our close and answers are still written
//!    for [`LOCAL_EOF_GRACE`] after the last one; `idle_timeout_secs`
//!    without data either way ends it; so does nothing at all from the
//!    requester (not even its keepalive) for [`REQUESTER_KEEPALIVE`] plus
//!    `connect_timeout_secs` while the identity receives (its answers no
//!    longer reach us); the lane is dropped last, once its messages left
//!    (at most [`LANE_DRAIN`]).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use nymd_mixnet::{ClientSender, Lane, OutgoingMessage};
use nymd_proto::socks5::local::{self, Handshake, Refused, ReplyCode, Step, Target};
use nymd_proto::socks5::ordered::{
    OrderedError, OrderedReceiver, OrderedSender, Pushed, ReceiveLimits,
};
use nymd_proto::socks5::wire::{ConnectRequest, ProviderRequest, SocketData, Socks5Request};
use nymd_proto::Recipient;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::sleep_until_some;
use super::{
    FromMixnet, Registration, SocksHub, CONNECT_SURBS, HANDSHAKE_DEADLINE, KEEPALIVE,
    LANE_BACKPRESSURE, LANE_DRAIN, LANE_POLL, LOCAL_EOF_GRACE, LOSSY_PATH_ADVICE, MAX_EARLY_DATA,
    MAX_PENDING_BYTES, MAX_QUEUED_REQUESTS, MAX_READ, REQUESTER_KEEPALIVE, SEND_SURBS,
};
use crate::appserver::access::ConnectionLimit;

/// What every connection of one listener shares.
#[derive(Debug, Clone)]
pub struct ConnSettings {
    /// The network requester.
    pub provider: Recipient,
    /// Anonymous (reply SURBs, no return address) or plain.
    pub anonymous: bool,
    /// How long a CONNECT waits for the requester.
    pub connect_timeout: Duration,
    /// How long a connection may carry no data.
    pub idle_timeout: Duration,
}

/// A connection's environment.
#[derive(Debug, Clone)]
pub struct ConnContext {
    /// The identity's SOCKS side.
    pub hub: Arc<SocksHub>,
    /// The listener's settings.
    pub settings: Arc<ConnSettings>,
    /// Connections proxied at once (`max_connections`).
    pub cap: Arc<ConnectionLimit>,
    /// Fires when the listener (the identity) stops.
    pub cancel: CancellationToken,
}

/// Serve one accepted connection to its end.
pub async fn run(stream: TcpStream, peer: SocketAddr, ctx: ConnContext) {
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.into_split();
    let handshake = tokio::select! {
        _ = ctx.cancel.cancelled() => return,
        h = tokio::time::timeout(HANDSHAKE_DEADLINE, handshake(&mut rd, &mut wr)) => h,
    };
    let (target, early) = match handshake {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => {
            if e.refused {
                ctx.hub.count_refused();
            }
            tracing::debug!(%peer, "SOCKS handshake failed: {}", e.reason);
            return;
        }
        Err(_) => {
            ctx.hub.count_refused();
            tracing::debug!(%peer, "SOCKS handshake not completed in {HANDSHAKE_DEADLINE:?}");
            return;
        }
    };
    let Some(_permit) = ctx.cap.try_take() else {
        ctx.hub.count_refused();
        tracing::warn!(
            %peer,
            limit = ctx.cap.limit(),
            "refused a SOCKS CONNECT: this identity has as many SOCKS connections open as it allows (max_connections in [socks5] of its config.toml)"
        );
        let _ = wr
            .write_all(&local::reply(target.version, ReplyCode::GeneralFailure))
            .await;
        let _ = wr.shutdown().await;
        return;
    };
    ctx.hub.count_accepted();
    let _open = ctx.hub.open_guard();
    let cancel = ctx.cancel.child_token();
    let reg = ctx.hub.register(cancel.clone());
    let (conn_id, lane) = (reg.conn_id, reg.lane);
    let mut conn = Conn {
        ctx: ctx.clone(),
        cancel,
        reg,
        target,
        peer,
        client: None,
        sender: OrderedSender::new(conn_id),
        sent_close: false,
    };
    conn.serve(rd, wr, early).await;
    // Answers that come now are dropped; our last messages may still leave
    // the lane before it is dropped.
    ctx.hub.unregister(conn_id);
    if let Some(client) = conn.client.take() {
        if !conn.cancel.is_cancelled() {
            let deadline = Instant::now() + LANE_DRAIN;
            while client.lane_queue_length(lane) > 0 && Instant::now() < deadline {
                tokio::select! {
                    _ = ctx.cancel.cancelled() => break,
                    _ = tokio::time::sleep(LANE_POLL) => {}
                }
            }
        }
        client.close_lane(lane);
    }
}

/// Why a handshake ended without a CONNECT.
#[derive(Debug)]
struct HandshakeFailure {
    /// It was refused (malformed, unsupported), not just cut short.
    refused: bool,
    reason: String,
}

/// Read the app's greeting and request; answer the greeting. On a refusal
/// its reply is written and the socket shut.
async fn handshake(
    rd: &mut OwnedReadHalf,
    wr: &mut OwnedWriteHalf,
) -> Result<(Target, Vec<u8>), HandshakeFailure> {
    let io = |e: std::io::Error| HandshakeFailure {
        refused: false,
        reason: e.to_string(),
    };
    let mut hs = Handshake::new();
    let mut buf = [0u8; 512];
    let mut step = hs.poll();
    loop {
        match step {
            Ok(Step::NeedMore) => {
                let n = rd.read(&mut buf).await.map_err(io)?;
                if n == 0 {
                    return Err(HandshakeFailure {
                        refused: false,
                        reason: "the app closed the connection during the handshake".into(),
                    });
                }
                step = hs.push(&buf[..n]);
            }
            Ok(Step::Reply(bytes)) => {
                wr.write_all(&bytes).await.map_err(io)?;
                step = hs.poll();
            }
            Ok(Step::Connect { target, early_data }) => return Ok((target, early_data)),
            Err(Refused { reply, reason }) => {
                if !reply.is_empty() {
                    let _ = wr.write_all(&reply).await;
                }
                let _ = wr.shutdown().await;
                return Err(HandshakeFailure {
                    refused: true,
                    reason: reason.to_string(),
                });
            }
        }
    }
}

/// How the wait for the requester's answer ended.
#[derive(Debug)]
enum Answer {
    /// Its first NetworkData (already in the receiver).
    Connected,
    /// ConnectionError with its text.
    Refused(String),
    /// Its TCP connect failed.
    ConnectFailed,
    /// The mixnet client could not send to it.
    Unreachable(String),
    /// Nothing in time.
    Timeout,
    /// The app left first.
    AppGone,
    /// The identity is stopping (or its client stopped).
    Cancelled,
    /// The requester sent more than the connection may hold.
    Overflow(String),
}

/// Why the data phase ended.
#[derive(Debug)]
enum End {
    /// Closed normally (by either side).
    Closed,
    /// No data for `idle_timeout`.
    Idle,
    /// The app's socket failed.
    AppError(String),
    /// The requester closed it abnormally or the mixnet client failed.
    Mixnet(String),
    /// Nothing came from the requester for this long while this identity
    /// received: its answers do not reach us.
    Unanswered(Duration),
    /// The identity is stopping.
    Cancelled,
}

struct Conn {
    ctx: ConnContext,
    cancel: CancellationToken,
    reg: Registration,
    target: Target,
    peer: SocketAddr,
    /// Set once the connection sends through it.
    client: Option<ClientSender>,
    sender: OrderedSender,
    sent_close: bool,
}

impl Conn {
    async fn serve(&mut self, mut rd: OwnedReadHalf, mut wr: OwnedWriteHalf, early: Vec<u8>) {
        let version = self.target.version;
        let remote = self.target.remote_address();
        let settings = self.ctx.settings.clone();
        let hub = self.ctx.hub.clone();
        let client = tokio::select! {
            _ = self.cancel.cancelled() => None,
            c = hub.client(settings.connect_timeout) => c,
        };
        let Some(client) = client else {
            self.ctx.hub.count_failed();
            tracing::info!(peer = %self.peer, "SOCKS CONNECT to {remote} failed: the identity is not connected to the mixnet");
            let _ = wr
                .write_all(&local::reply(version, ReplyCode::NetworkUnreachable))
                .await;
            return;
        };
        self.client = Some(client.clone());
        let mut receiver = OrderedReceiver::new(receive_limits());
        let connect = Socks5Request::Connect(ConnectRequest {
            conn_id: self.reg.conn_id,
            remote: remote.clone(),
            return_address: (!settings.anonymous).then(|| client.address()),
        });
        tracing::debug!(conn_id = self.reg.conn_id, peer = %self.peer, "SOCKS CONNECT {remote}");
        // The Connect, then an empty Send (seq 0), as Nym's client starts.
        let keepalive = self.sender.keepalive();
        let mut sent = self.send(&client, connect, CONNECT_SURBS).await;
        if sent.is_ok() {
            sent = self
                .send(&client, Socks5Request::Send(keepalive), SEND_SURBS)
                .await;
        }
        let (answer, more_early) = match sent {
            Err(e) => (Answer::Unreachable(e), Vec::new()),
            Ok(()) => self.wait_answer(&mut rd, &mut receiver, early.len()).await,
        };
        let code = match &answer {
            Answer::Connected => ReplyCode::Succeeded,
            Answer::Refused(text) => {
                tracing::info!(peer = %self.peer, "the network requester refused {remote}: {text}");
                ReplyCode::NotAllowed
            }
            Answer::ConnectFailed => {
                tracing::info!(peer = %self.peer, "the network requester could not connect to {remote}");
                ReplyCode::ConnectionRefused
            }
            Answer::Unreachable(e) => {
                tracing::warn!(peer = %self.peer, "SOCKS CONNECT to {remote} failed: the network requester cannot be reached: {e}");
                ReplyCode::NetworkUnreachable
            }
            Answer::Timeout => {
                tracing::info!(peer = %self.peer, "the network requester did not answer a CONNECT to {remote} within {:?} (connect_timeout_secs in [socks5]): it is down or overloaded, or its answers cannot reach this identity (it had no usable reply SURBs, or no way to this identity's gateway; its own log says which)", settings.connect_timeout);
                ReplyCode::HostUnreachable
            }
            Answer::Overflow(e) => {
                tracing::info!(peer = %self.peer, "SOCKS CONNECT to {remote} failed: {e}");
                ReplyCode::GeneralFailure
            }
            Answer::AppGone | Answer::Cancelled => ReplyCode::GeneralFailure,
        };
        if !matches!(answer, Answer::Connected) {
            self.ctx.hub.count_failed();
            if !matches!(answer, Answer::AppGone) {
                let _ = wr.write_all(&local::reply(version, code)).await;
                let _ = wr.shutdown().await;
            }
            // A requester that may hold the connection gets our close.
            if matches!(answer, Answer::Timeout | Answer::AppGone) {
                let _ = self.send_close(&client).await;
            }
            return;
        }
        if wr.write_all(&local::reply(version, code)).await.is_err() {
            let _ = self.send_close(&client).await;
            return;
        }
        let mut early = early;
        early.extend(more_early);
        let end = self.pump(&client, rd, &mut wr, receiver, early).await;
        let conn_id = self.reg.conn_id;
        match &end {
            End::Closed => tracing::debug!(conn_id, "SOCKS connection to {remote} closed"),
            End::Idle => {
                tracing::info!(peer = %self.peer, "closing the SOCKS connection to {remote}: no data for {:?} (idle_timeout_secs in [socks5])", settings.idle_timeout)
            }
            End::AppError(e) => tracing::debug!(
                conn_id,
                "SOCKS connection to {remote}: the app's socket failed: {e}"
            ),
            End::Mixnet(e) => {
                tracing::info!(peer = %self.peer, "closing the SOCKS connection to {remote}: {e}")
            }
            End::Unanswered(silent) => {
                tracing::info!(peer = %self.peer, "closing the SOCKS connection to {remote}: nothing came from the network requester for {silent:?}, though it sends at least a keepalive every {REQUESTER_KEEPALIVE:?} on an open connection: its answers no longer reach this identity (it ran out of reply SURBs, lost its way to this identity's gateway, or stopped; its own log says which)")
            }
            End::Cancelled => tracing::debug!(
                conn_id,
                "SOCKS connection to {remote} closed: the identity stops"
            ),
        }
        if !self.sent_close && !matches!(end, End::Cancelled) {
            let _ = self.send_close(&client).await;
        }
        let _ = wr.shutdown().await;
    }

    /// Wait for the requester's first answer, keeping (bounded) what the
    /// app sends meanwhile and noticing when it leaves.
    async fn wait_answer(
        &mut self,
        rd: &mut OwnedReadHalf,
        receiver: &mut OrderedReceiver,
        mut early_len: usize,
    ) -> (Answer, Vec<u8>) {
        let deadline = Instant::now() + self.ctx.settings.connect_timeout;
        let mut buf = vec![0u8; 4096];
        let mut extra = Vec::new();
        let answer = loop {
            tokio::select! {
                _ = self.cancel.cancelled() => break Answer::Cancelled,
                _ = tokio::time::sleep_until(deadline) => break Answer::Timeout,
                m = self.reg.rx.recv() => match m {
                    None => break Answer::Cancelled,
                    Some(FromMixnet::Refused(text)) => break Answer::Refused(text),
                    Some(FromMixnet::SendFailed(e)) => break Answer::Unreachable(e),
                    Some(FromMixnet::Data(d)) => {
                        if d.seq == 0 && d.closed && d.data.is_empty() {
                            break Answer::ConnectFailed;
                        }
                        match self.push(receiver, d) {
                            Ok(()) => break Answer::Connected,
                            Err(e) => break Answer::Overflow(e),
                        }
                    }
                },
                r = rd.read(&mut buf), if early_len < MAX_EARLY_DATA => match r {
                    Ok(0) | Err(_) => break Answer::AppGone,
                    Ok(n) => {
                        early_len += n;
                        extra.extend_from_slice(&buf[..n]);
                    }
                },
            }
        };
        (answer, extra)
    }

    /// Carry data both ways until the connection ends.
    async fn pump(
        &mut self,
        client: &ClientSender,
        mut rd: OwnedReadHalf,
        wr: &mut OwnedWriteHalf,
        mut receiver: OrderedReceiver,
        early: Vec<u8>,
    ) -> End {
        let idle = self.ctx.settings.idle_timeout;
        let lane = self.reg.lane;
        let mut out: VecDeque<Vec<u8>> = VecDeque::new();
        let mut out_off = 0usize;
        let mut remote_closed = drain(&mut receiver, &mut out);
        let mut reading = true;
        let mut eof_at: Option<Instant> = None;
        let mut last_activity = Instant::now();
        let mut last_send = Instant::now();
        // The requester's last message (the first came before the pump).
        let mut last_heard = Instant::now();
        let silence_limit = REQUESTER_KEEPALIVE + self.ctx.settings.connect_timeout;
        if !early.is_empty() {
            let n = early.len();
            if let Err(e) = self.send_data(client, early, false).await {
                return End::Mixnet(e);
            }
            self.ctx.hub.count_sent(n);
        }
        let mut buf = vec![0u8; MAX_READ];
        loop {
            if remote_closed && out.is_empty() {
                return End::Closed;
            }
            // Messages the client has not taken yet are in no lane: wait
            // for those too, or a fast app could fill the client's request
            // queue before its lane shows anything.
            let lane_room = client.lane_queue_length(lane) <= LANE_BACKPRESSURE
                && client.queued_requests() <= MAX_QUEUED_REQUESTS;
            let open = reading && !remote_closed;
            let grace = eof_at.map(|t| t.max(last_activity) + LOCAL_EOF_GRACE);
            let silence_check = silence_deadline(
                last_heard,
                self.ctx.hub.receiving_since(),
                silence_limit,
                Instant::now(),
            );
            tokio::select! {
                _ = self.cancel.cancelled() => return End::Cancelled,
                m = self.reg.rx.recv() => match m {
                    None => return End::Cancelled,
                    Some(FromMixnet::Data(d)) => {
                        last_heard = Instant::now();
                        if let Err(e) = self.push(&mut receiver, d) {
                            return End::Mixnet(e);
                        }
                        remote_closed |= drain(&mut receiver, &mut out);
                        self.reg.pending.set_out_of_order(receiver.waiting_bytes());
                    }
                    Some(FromMixnet::Refused(text)) => {
                        return End::Mixnet(format!("the network requester closed it: {text}"));
                    }
                    Some(FromMixnet::SendFailed(e)) => {
                        return End::Mixnet(format!("a message to the network requester could not be sent: {e}"));
                    }
                },
                r = wr.write(out.front().map_or(&[][..], |b| &b[out_off..])), if !out.is_empty() => match r {
                    Ok(0) => return End::AppError("the socket takes no more data".into()),
                    Err(e) => return End::AppError(e.to_string()),
                    Ok(n) => {
                        out_off += n;
                        self.reg.pending.release(n);
                        self.ctx.hub.count_received(n);
                        last_activity = Instant::now();
                        if out.front().is_some_and(|b| out_off >= b.len()) {
                            out.pop_front();
                            out_off = 0;
                        }
                    }
                },
                r = rd.read(&mut buf), if open && lane_room => match r {
                    Ok(0) | Err(_) => {
                        reading = false;
                        eof_at = Some(Instant::now());
                        if let Err(e) = self.send_close(client).await {
                            return End::Mixnet(e);
                        }
                    }
                    Ok(n) => {
                        if let Err(e) = self.send_data(client, buf[..n].to_vec(), false).await {
                            return End::Mixnet(e);
                        }
                        self.ctx.hub.count_sent(n);
                        last_activity = Instant::now();
                        last_send = last_activity;
                    }
                },
                _ = tokio::time::sleep(LANE_POLL), if open && !lane_room => {}
                _ = tokio::time::sleep_until(last_send + KEEPALIVE), if open => {
                    let keepalive = self.sender.keepalive();
                    if let Err(e) = self.send(client, Socks5Request::Send(keepalive), SEND_SURBS).await {
                        return End::Mixnet(e);
                    }
                    last_send = Instant::now();
                }
                _ = tokio::time::sleep_until(last_activity + idle) => {
                    tracing::debug!(
                        conn_id = self.reg.conn_id,
                        next_seq = receiver.next_seq(),
                        waiting = receiver.waiting_messages(),
                        unwritten = out.len(),
                        "idle SOCKS connection"
                    );
                    return End::Idle;
                }
                _ = tokio::time::sleep_until(silence_check) => {
                    if let Some(since) = self.ctx.hub.receiving_since() {
                        let from = last_heard.max(since);
                        if Instant::now() >= from + silence_limit {
                            return End::Unanswered(Instant::now() - last_heard);
                        }
                    }
                }
                _ = sleep_until_some(grace) => {
                    if client.lane_queue_length(lane) == 0 {
                        return End::Closed;
                    }
                    // Our close has not left yet: give the answers time.
                    eof_at = Some(Instant::now());
                }
            }
        }
    }

    /// Take one NetworkData into the receiver; bytes it drops are no longer
    /// pending.
    fn push(&self, receiver: &mut OrderedReceiver, d: SocketData) -> Result<(), String> {
        let len = d.data.len();
        match receiver.push_data(d) {
            Ok(Pushed::Stored) => {
                self.reg.pending.set_out_of_order(receiver.waiting_bytes());
                Ok(())
            }
            Ok(Pushed::Duplicate | Pushed::Stale) => {
                self.reg.pending.release(len);
                Ok(())
            }
            Err(e) => Err(out_of_order_error(&e)),
        }
    }

    /// Queue one request to the requester on the connection's lane.
    async fn send(
        &self,
        client: &ClientSender,
        request: Socks5Request,
        surbs: u32,
    ) -> Result<(), String> {
        let data = ProviderRequest::current(request)
            .encode()
            .map_err(|e| e.to_string())?;
        let settings = &self.ctx.settings;
        let lane = Lane::Connection(self.reg.lane);
        let msg = if settings.anonymous {
            OutgoingMessage::Anonymous {
                recipient: settings.provider,
                data,
                reply_surbs: surbs,
                lane,
            }
        } else {
            OutgoingMessage::Plain {
                recipient: settings.provider,
                data,
                lane,
            }
        };
        tokio::select! {
            _ = self.cancel.cancelled() => Err("the identity stops".into()),
            r = client.send(msg) => r.map_err(|e| format!("the mixnet client stopped: {e}")),
        }
    }

    /// Send the next chunk of the app's stream (`closed`: the last).
    async fn send_data(
        &mut self,
        client: &ClientSender,
        data: Vec<u8>,
        closed: bool,
    ) -> Result<(), String> {
        let d = self.sender.message(data, closed);
        self.sent_close |= closed;
        self.send(client, Socks5Request::Send(d), SEND_SURBS).await
    }

    /// Tell the requester that the app's side is closed.
    async fn send_close(&mut self, client: &ClientSender) -> Result<(), String> {
        self.send_data(client, Vec::new(), true).await
    }
}

/// When to look whether the requester has been silent too long: `limit`
/// after its last message, or after this identity last started receiving
/// if that is later (silence while nothing could reach us is not the
/// requester's); while nothing can reach us, look again in a second.
fn silence_deadline(
    last_heard: Instant,
    receiving_since: Option<Instant>,
    limit: Duration,
    now: Instant,
) -> Instant {
    match receiving_since {
        Some(since) => last_heard.max(since) + limit,
        None => now + Duration::from_secs(1),
    }
}

/// Bounds of a connection's reorder buffer: the whole per-connection bound
/// may wait out of order. On a lossy path every lost message holds back
/// what follows it until it is sent again (seconds, at up to 1,000
/// packets/s), and closing the connection for it would end a healthy
/// download; the memory is charged to the daemon's budget and bounded per
/// identity ([`super::MAX_BUFFERED_BYTES`]).
fn receive_limits() -> ReceiveLimits {
    ReceiveLimits {
        max_bytes: MAX_PENDING_BYTES,
        ..ReceiveLimits::default()
    }
}

/// Why a connection whose answers the receiver refused is closed, and what
/// the user can do.
fn out_of_order_error(e: &OrderedError) -> String {
    format!("the network requester's answers wait out of order beyond the bounds ({e}): {LOSSY_PATH_ADVICE}")
}

/// Move what the receiver has in order to `out`; true once the requester's
/// close is reached.
fn drain(receiver: &mut OrderedReceiver, out: &mut VecDeque<Vec<u8>>) -> bool {
    while let Some(d) = receiver.read() {
        if !d.data.is_empty() {
            out.push_back(d.data);
        }
        if d.closed {
            return true;
        }
    }
    receiver.is_closed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_requester_s_silence_counts_only_while_this_identity_receives() {
        let t0 = Instant::now();
        let limit = Duration::from_secs(65);
        let secs = Duration::from_secs;
        // Receiving all along: the limit after its last message.
        assert_eq!(
            silence_deadline(t0 + secs(10), Some(t0), limit, t0 + secs(20)),
            t0 + secs(75)
        );
        // The gateway came back (or the runner took messages again) after
        // its last message: the limit counts from then.
        assert_eq!(
            silence_deadline(t0 + secs(10), Some(t0 + secs(50)), limit, t0 + secs(60)),
            t0 + secs(115)
        );
        // Nothing can reach us now: no verdict, look again soon.
        assert_eq!(
            silence_deadline(t0, None, limit, t0 + secs(500)),
            t0 + secs(501)
        );
    }

    #[test]
    fn the_whole_per_connection_bound_may_wait_out_of_order() {
        // 16 KiB answers (the exit's reads) behind a lost seq 0.
        let mut receiver = OrderedReceiver::new(receive_limits());
        let chunk = 16 * 1024;
        let fit = MAX_PENDING_BYTES / chunk;
        assert!(fit < receive_limits().max_messages, "the byte bound binds");
        for seq in 1..=fit as u64 {
            assert_eq!(
                receiver.push(seq, vec![0; chunk], false),
                Ok(Pushed::Stored)
            );
        }
        // More than half the bound (what it used to be) waits.
        assert!(receiver.waiting_bytes() > MAX_PENDING_BYTES / 2);
        let e = match receiver.push(fit as u64 + 1, vec![0; chunk], false) {
            Err(e) => e,
            other => panic!("beyond the bound: {other:?}"),
        };
        let text = out_of_order_error(&e);
        assert!(text.contains("losing packets"), "{text}");
        assert!(text.contains("nymctl socks5 ID provider"), "{text}");
        // The lost one still gets in, and everything drains.
        assert_eq!(receiver.push(0, vec![0; chunk], false), Ok(Pushed::Stored));
        let mut out = VecDeque::new();
        assert!(!drain(&mut receiver, &mut out));
        assert_eq!(out.iter().map(Vec::len).sum::<usize>(), (fit + 1) * chunk);
        assert_eq!(receiver.waiting_bytes(), 0);
    }
}
