//! The websocket to the client's gateway: connecting, registration
//! handshake, `authenticateV2`, bandwidth claims, and the per-connection
//! task that moves frames between the socket and the client task.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use nymd_proto::gateway::frames::open_gateway_frame;
use nymd_proto::gateway::{
    bandwidth, client_accept_gateway_version, client_proposal, AuthenticateV2,
    ClientAwaitingMaterial, ClientControlRequest, HandshakeMessage, ProtocolVersion,
    ServerResponse,
};
use nymd_proto::keys::{GatewaySharedKey, IdentityKeyPair, VerifyingKey};
use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

use crate::config::GatewayConfig;
use crate::error::ClientError;

pub(crate) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Most messages pushed before a session starts that are kept (a gateway
/// pushes stored messages in batches of 100 right after auth).
const MAX_EARLY_PUSHES: usize = 100_000;
/// Largest websocket message accepted from a gateway.
const MAX_WS_MESSAGE: usize = 1 << 20;

/// A connection that finished `register` and was left open for `start`.
pub(crate) struct WarmConnection {
    pub(crate) session: Session,
    pub(crate) created: Instant,
    pub(crate) gateway: [u8; 32],
}

/// An authenticated gateway session, before its connection task runs.
pub(crate) struct Session {
    pub(crate) ws: Ws,
    pub(crate) protocol: ProtocolVersion,
    pub(crate) bandwidth: i64,
    /// Decrypted plaintexts the gateway pushed before the session began.
    pub(crate) early: Vec<Vec<u8>>,
    pub(crate) rtt: Duration,
}

/// How far ahead of the wall clock a remembered timestamp may be and still
/// be built on (half the gateway's accepted skew of 120 s).
const AUTH_MAX_AHEAD_SECS: u64 = 60;

/// `authenticateV2` timestamps: strictly increasing, and otherwise the wall
/// clock: max(last + 1, now).
///
/// `last` is the last timestamp tried (persisted, so that a restart within
/// the same second does not reuse it). A remembered timestamp more than a
/// minute ahead of the clock comes from a clock that was wrong (e.g. just
/// after resume, before NTP): the gateway refused it (it accepts two minutes
/// of skew at most), so the last *accepted* timestamp is built on instead,
/// or the clock alone if that is implausible too. Without this, one attempt
/// with a wrong clock would lock the identity out until real time caught up.
#[derive(Debug, Default)]
pub(crate) struct AuthClock {
    last: AtomicU64,
    accepted: AtomicU64,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl AuthClock {
    pub(crate) fn new(last: u64) -> Self {
        Self {
            last: AtomicU64::new(last),
            accepted: AtomicU64::new(last),
        }
    }

    /// The timestamp for the next attempt.
    pub(crate) fn next(&self) -> u64 {
        self.next_at(unix_now())
    }

    fn next_at(&self, now: u64) -> u64 {
        let limit = now.saturating_add(AUTH_MAX_AHEAD_SECS);
        let after = |t: u64| Some(t.saturating_add(1)).filter(|n| *n <= limit);
        let ts = after(self.last())
            .or_else(|| after(self.accepted.load(Ordering::SeqCst)))
            .map_or(now, |n| n.max(now));
        self.last.store(ts, Ordering::SeqCst);
        ts
    }

    /// The gateway accepted `ts`.
    pub(crate) fn accepted(&self, ts: u64) {
        self.accepted.fetch_max(ts, Ordering::SeqCst);
    }

    /// The last timestamp tried; persist it.
    pub(crate) fn last(&self) -> u64 {
        self.last.load(Ordering::SeqCst)
    }
}

/// Read buffer of the gateway websocket, allocated when it connects:
/// tungstenite's default is 128 KiB. A regular gateway frame is one packet
/// (about 2.4 KiB), so 4 KiB holds one and the start of the next; a larger
/// frame (a bigger packet size, a long control response) is still read
/// whole, as tungstenite reserves room for the length its header announces.
/// At 16 KiB it was about 16 KB of the heap of each idle identity
/// (heaptrack, 100 idle identities, peak heap 23 MB).
const WS_READ_BUFFER: usize = 4 * 1024;
/// Frames collect in tungstenite's write buffer until it holds more than
/// this (or the batch is flushed: the connection task flushes after every
/// batch it takes from its queue, so an idle identity's single cover frame
/// leaves at once either way). The buffer is a `Vec` that keeps its
/// capacity, the threshold plus one frame: with the default, 128 KiB, a
/// burst grew it to about 160 KiB per identity; at 16 KiB it still held
/// about 20 KB per idle identity (heaptrack, 100 idle identities). At 4 KiB
/// it stays near 5 KiB and a burst is written two frames (about 4.9 KiB) per
/// system call.
const WS_WRITE_BUFFER: usize = 4 * 1024;

fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(WS_READ_BUFFER)
        .write_buffer_size(WS_WRITE_BUFFER)
        .max_message_size(Some(MAX_WS_MESSAGE))
        .max_frame_size(Some(MAX_WS_MESSAGE))
}

/// Open the websocket (no TLS: gateways are dialled with ws://).
pub(crate) async fn connect(url: &str, timeout: Duration) -> Result<Ws, ClientError> {
    let (ws, _resp) = tokio::time::timeout(
        timeout,
        tokio_tungstenite::connect_async_with_config(url, Some(ws_config()), true),
    )
    .await
    .map_err(|_| ClientError::Timeout("websocket connection"))??;
    Ok(ws)
}

/// Dial the primary listener, then the fallback.
pub(crate) async fn connect_any(
    primary: &str,
    fallback: Option<&str>,
    timeout: Duration,
) -> Result<Ws, ClientError> {
    match connect(primary, timeout).await {
        Ok(ws) => Ok(ws),
        Err(e) => match fallback {
            Some(f) => {
                tracing::debug!(error = %e, fallback = f, "primary gateway listener failed");
                connect(f, timeout).await
            }
            None => Err(e),
        },
    }
}

async fn send_json(ws: &mut Ws, text: String) -> Result<(), ClientError> {
    ws.send(Message::text(text)).await?;
    Ok(())
}

/// Read until a text frame arrives. Binary frames that arrive meanwhile are
/// pushed messages: decrypted with `key` when known and kept in `early`.
async fn next_text(
    ws: &mut Ws,
    key: Option<&GatewaySharedKey>,
    early: &mut Vec<Vec<u8>>,
    timeout: Duration,
    what: &'static str,
) -> Result<String, ClientError> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .map_err(|_| ClientError::Timeout(what))?;
        match msg {
            None => return Err(ClientError::ConnectionClosed),
            Some(Err(e)) => return Err(e.into()),
            Some(Ok(Message::Text(t))) => return Ok(t.as_str().to_owned()),
            Some(Ok(Message::Binary(b))) => match key {
                Some(k) => match open_gateway_frame(k, &b) {
                    Ok((_, plain)) if early.len() < MAX_EARLY_PUSHES => early.push(plain),
                    Ok(_) => {
                        tracing::warn!("too many messages pushed before the session; dropping one")
                    }
                    Err(e) => tracing::warn!(error = %e, "undecryptable frame from gateway"),
                },
                None => tracing::warn!("binary frame before any shared key; ignored"),
            },
            Some(Ok(Message::Close(_))) => return Err(ClientError::ConnectionClosed),
            Some(Ok(_)) => {}
        }
    }
}

async fn next_response(
    ws: &mut Ws,
    key: Option<&GatewaySharedKey>,
    early: &mut Vec<Vec<u8>>,
    timeout: Duration,
    what: &'static str,
) -> Result<ServerResponse, ClientError> {
    let text = next_text(ws, key, early, timeout, what).await?;
    let resp = ServerResponse::parse(&text)?;
    match resp {
        ServerResponse::Error { message } => Err(ClientError::Gateway(message)),
        ServerResponse::TypedError { error } => Err(ClientError::Gateway(error.to_string())),
        other => Ok(other),
    }
}

/// `supportedProtocol`: the gateway's version, and the one to propose.
async fn negotiate(ws: &mut Ws, timeout: Duration) -> Result<ProtocolVersion, ClientError> {
    send_json(ws, ClientControlRequest::SupportedProtocol {}.to_json()).await?;
    let mut early = Vec::new();
    match next_response(ws, None, &mut early, timeout, "supportedProtocol").await? {
        ServerResponse::SupportedProtocol { version } => Ok(client_proposal(version)?),
        other => Err(ClientError::Protocol(format!(
            "expected supportedProtocol, got {other:?}"
        ))),
    }
}

/// Claim free bandwidth; returns the new total.
async fn claim_bandwidth(
    ws: &mut Ws,
    key: &GatewaySharedKey,
    early: &mut Vec<Vec<u8>>,
    timeout: Duration,
) -> Result<i64, ClientError> {
    send_json(
        ws,
        ClientControlRequest::ClaimFreeTestnetBandwidth.to_json(),
    )
    .await?;
    loop {
        match next_response(ws, Some(key), early, timeout, "bandwidth").await? {
            ServerResponse::Bandwidth {
                available_total, ..
            } => return Ok(available_total),
            // A `send` answer cannot come before we forwarded anything;
            // tolerate stray responses anyway.
            other => tracing::debug!(?other, "ignored while claiming bandwidth"),
        }
    }
}

/// Register: handshake, then the `register` answer and a bandwidth claim.
/// The connection stays usable as an authenticated session.
pub(crate) async fn register(
    primary: &str,
    fallback: Option<&str>,
    identity: &IdentityKeyPair,
    gateway: VerifyingKey,
    config: &GatewayConfig,
) -> Result<(GatewaySharedKey, Session), ClientError> {
    let timeout = config.response_timeout;
    let mut rng = StdRng::from_entropy();
    let started = Instant::now();
    let mut ws = connect_any(primary, fallback, timeout).await?;
    let rtt = started.elapsed();
    let proposal = negotiate(&mut ws, timeout).await?;
    let (state, init) = ClientAwaitingMaterial::start(&mut rng, identity, gateway, proposal);
    send_json(&mut ws, init.to_json()).await?;
    let mut early = Vec::new();
    let text = next_text(&mut ws, None, &mut early, timeout, "handshake material").await?;
    let msg = parse_handshake(&text)?;
    let (state, material) = state.on_message(&mut rng, &msg)?;
    send_json(&mut ws, material.to_json()).await?;
    let key = state.shared_key().clone();
    let text = next_text(
        &mut ws,
        Some(&key),
        &mut early,
        timeout,
        "handshake finalization",
    )
    .await?;
    let msg = parse_handshake(&text)?;
    let outcome = state.on_message(&msg)?;
    let protocol = loop {
        match next_response(&mut ws, Some(&key), &mut early, timeout, "register").await? {
            ServerResponse::Register {
                status: true,
                protocol_version,
                ..
            } => break client_accept_gateway_version(protocol_version)?,
            ServerResponse::Register { status: false, .. } => {
                return Err(ClientError::Gateway("registration refused".into()))
            }
            other => tracing::debug!(?other, "ignored while waiting for register"),
        }
    };
    let _ = outcome.negotiated_protocol;
    let bandwidth = claim_bandwidth(&mut ws, &key, &mut early, timeout).await?;
    Ok((
        key,
        Session {
            ws,
            protocol,
            bandwidth,
            early,
            rtt,
        },
    ))
}

fn parse_handshake(text: &str) -> Result<HandshakeMessage, ClientError> {
    if let Ok(m) = HandshakeMessage::parse(text) {
        return Ok(m);
    }
    match ServerResponse::parse(text) {
        Ok(ServerResponse::Error { message }) => Err(ClientError::Gateway(message)),
        _ => Err(ClientError::Protocol(format!(
            "unexpected message during handshake: {text}"
        ))),
    }
}

/// Connect and re-authenticate with the stored shared key; claim
/// bandwidth when the gateway reports less than the threshold.
pub(crate) async fn authenticate(
    primary: &str,
    fallback: Option<&str>,
    identity: &IdentityKeyPair,
    key: &GatewaySharedKey,
    clock: &AuthClock,
    config: &GatewayConfig,
) -> Result<Session, ClientError> {
    let timeout = config.response_timeout;
    let mut rng = StdRng::from_entropy();
    let started = Instant::now();
    let mut ws = connect_any(primary, fallback, timeout).await?;
    let rtt = started.elapsed();
    let proposal = negotiate(&mut ws, timeout).await?;
    let timestamp = clock.next();
    let req = AuthenticateV2::new(&mut rng, key, identity, proposal, timestamp);
    send_json(&mut ws, req.into_request().to_json()).await?;
    let mut early = Vec::new();
    let (protocol, mut remaining) = loop {
        match next_response(&mut ws, Some(key), &mut early, timeout, "authenticate").await? {
            ServerResponse::Authenticate {
                status: true,
                protocol_version,
                bandwidth_remaining,
                ..
            } => {
                clock.accepted(timestamp);
                break (
                    client_accept_gateway_version(protocol_version)?,
                    bandwidth_remaining,
                );
            }
            ServerResponse::Authenticate { status: false, .. } => {
                return Err(ClientError::Gateway("authentication refused".into()))
            }
            other => tracing::debug!(?other, "ignored while waiting for authenticate"),
        }
    };
    if bandwidth::client_should_claim(remaining) {
        remaining = claim_bandwidth(&mut ws, key, &mut early, timeout).await?;
    }
    Ok(Session {
        ws,
        protocol,
        bandwidth: remaining,
        early,
        rtt,
    })
}

/// What a connection task reports to the client task.
#[derive(Debug)]
pub(crate) enum GwEvent {
    /// A decrypted pushed plaintext (ack or message).
    Pushed(Vec<u8>),
    /// A control response.
    Response(ServerResponse),
    /// Round-trip time of a websocket ping.
    Rtt(Duration),
    /// The connection is gone.
    Closed(String),
}

/// What travels from a connection task to the client task: the
/// connection's generation and an event. Boxed, as are the frames of
/// [`Connection::tx`]: tokio allocates a channel's first block of 32 slots
/// when it makes the channel, 1.8 KB for these 56-byte items and 256 bytes
/// for a box, in every identity however idle (one allocation per frame is
/// little next to the frame's own).
pub(crate) type GwItem = Box<(u64, GwEvent)>;

/// The client task's side of a running connection.
#[derive(Debug)]
pub(crate) struct Connection {
    /// Frames for the socket, boxed (see [`GwItem`]).
    pub(crate) tx: mpsc::Sender<Box<Message>>,
    pub(crate) protocol: ProtocolVersion,
    pub(crate) task: tokio::task::JoinHandle<()>,
}

/// Run the socket: write what `rx` gives, decrypt what arrives, answer
/// pings (tungstenite does), ping every `keepalive`, and give up after
/// `dead_after` of silence.
pub(crate) fn spawn_connection(
    ws: Ws,
    key: GatewaySharedKey,
    protocol: ProtocolVersion,
    generation: u64,
    events: mpsc::Sender<GwItem>,
    config: &GatewayConfig,
    cancel: CancellationToken,
) -> Connection {
    let (tx, rx) = mpsc::channel(config.send_buffer.max(1));
    let keepalive = config.keepalive;
    let dead_after = config.dead_after;
    let task = tokio::spawn(tracing::Instrument::in_current_span(run_connection(
        ws, key, rx, events, generation, keepalive, dead_after, cancel,
    )));
    Connection { tx, protocol, task }
}

/// The connection task: [`serve`] the socket, then tell the client task
/// why it ended.
///
/// Not an `async fn`: one keeps each argument twice in its state (as the
/// argument and as the local it is moved into, rust-lang/rust#62958), and
/// an `async move` block around the call would keep them twice too (its
/// captures stay in its state while the call's future holds them). Built
/// here, they are kept once and [`serve`] borrows them: the future is 968
/// bytes instead of 1.8 KB.
#[allow(clippy::too_many_arguments, clippy::manual_async_fn)]
fn run_connection(
    mut ws: Ws,
    key: GatewaySharedKey,
    mut rx: mpsc::Receiver<Box<Message>>,
    events: mpsc::Sender<GwItem>,
    generation: u64,
    keepalive: Duration,
    dead_after: Duration,
    cancel: CancellationToken,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    async move {
        let reason = serve(
            &mut ws, &key, &mut rx, &events, generation, keepalive, dead_after, &cancel,
        )
        .await;
        let _ = events
            .send(Box::new((generation, GwEvent::Closed(reason))))
            .await;
    }
}

/// Move frames between the socket and the client task until the
/// connection ends; why it ended.
#[allow(clippy::too_many_arguments)]
async fn serve(
    ws: &mut Ws,
    key: &GatewaySharedKey,
    rx: &mut mpsc::Receiver<Box<Message>>,
    events: &mpsc::Sender<GwItem>,
    generation: u64,
    keepalive: Duration,
    dead_after: Duration,
    cancel: &CancellationToken,
) -> String {
    let mut ping = tokio::time::interval(keepalive.max(Duration::from_millis(100)));
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.tick().await;
    let mut ping_sent: Option<(u64, Instant)> = None;
    let mut ping_counter = 0u64;
    let mut last_heard = Instant::now();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => {
                let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
                return "client shut down".into();
            }
            out = rx.recv() => {
                let Some(first) = out else {
                    let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
                    return "client task ended".into();
                };
                if let Err(e) = ws.feed(*first).await {
                    return format!("send failed: {e}");
                }
                let mut batch = 0;
                while batch < 64 {
                    match rx.try_recv() {
                        Ok(m) => {
                            if let Err(e) = ws.feed(*m).await {
                                return format!("send failed: {e}");
                            }
                            batch += 1;
                        }
                        Err(_) => break,
                    }
                }
                if let Err(e) = ws.flush().await {
                    return format!("send failed: {e}");
                }
            }
            _ = ping.tick() => {
                if last_heard.elapsed() > dead_after {
                    return format!("no frame from the gateway for {dead_after:?}");
                }
                ping_counter = ping_counter.wrapping_add(1);
                ping_sent = Some((ping_counter, Instant::now()));
                if let Err(e) = ws.send(Message::Ping(ping_counter.to_be_bytes().to_vec().into())).await {
                    return format!("ping failed: {e}");
                }
            }
            msg = ws.next() => {
                last_heard = Instant::now();
                let ev = match msg {
                    None => return "connection closed".into(),
                    Some(Err(e)) => return format!("read failed: {e}"),
                    Some(Ok(Message::Close(frame))) => return format!("closed by gateway: {frame:?}"),
                    Some(Ok(Message::Binary(b))) => match open_gateway_frame(key, &b) {
                        Ok((_, plain)) => GwEvent::Pushed(plain),
                        Err(e) => {
                            tracing::warn!(error = %e, "undecryptable frame from gateway");
                            continue;
                        }
                    },
                    Some(Ok(Message::Text(t))) => match ServerResponse::parse(t.as_str()) {
                        Ok(r) => GwEvent::Response(r),
                        Err(e) => {
                            tracing::warn!(error = %e, "unreadable text from gateway");
                            continue;
                        }
                    },
                    Some(Ok(Message::Pong(p))) => {
                        match ping_sent {
                            Some((n, at)) if p.as_ref() == n.to_be_bytes() => {
                                ping_sent = None;
                                GwEvent::Rtt(at.elapsed())
                            }
                            _ => continue,
                        }
                    }
                    Some(Ok(_)) => continue,
                };
                // Awaiting here is the backpressure: a slow client task
                // stops us reading, and the gateway's socket fills.
                if events.send(Box::new((generation, ev))).await.is_err() {
                    return "client task ended".into();
                }
            }
        }
    }
}

/// Measure how long a websocket connection to `url` takes (for
/// latency-based gateway selection).
pub(crate) async fn measure_latency(url: &str, timeout: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut ws = connect(url, timeout).await.ok()?;
    let rtt = started.elapsed();
    let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
    Some(rtt)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }

    /// The small websocket buffers: frames much larger than the read buffer
    /// arrive whole, and a burst larger than the write buffer leaves whole
    /// and in order.
    #[tokio::test]
    async fn small_websocket_buffers_carry_large_frames_and_bursts() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("ws://{}", listener.local_addr().expect("address"));
        let frame = |i: usize, len: usize| -> Vec<u8> { (0..len).map(|j| (i + j) as u8).collect() };
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.expect("accept");
            let mut ws = tokio_tungstenite::accept_async(tcp)
                .await
                .expect("server handshake");
            for (i, len) in [(0, 200 * 1024), (1, 2413), (2, 5 * 1024)] {
                ws.send(Message::binary(frame(i, len)))
                    .await
                    .expect("server send");
            }
            ws.send(Message::text("x".repeat(9000)))
                .await
                .expect("server send");
            let mut got = Vec::new();
            while got.len() < 100 {
                match ws.next().await {
                    Some(Ok(Message::Binary(b))) => got.push(b.to_vec()),
                    Some(Ok(_)) => {}
                    other => panic!("server read: {other:?}"),
                }
            }
            got
        });
        let mut ws = connect(&url, Duration::from_secs(10))
            .await
            .expect("connect");
        for (i, len) in [(0, 200 * 1024), (1, 2413), (2, 5 * 1024)] {
            match ws.next().await {
                Some(Ok(Message::Binary(b))) => assert!(b.as_ref() == frame(i, len), "frame {i}"),
                other => panic!("client read: {other:?}"),
            }
        }
        match ws.next().await {
            Some(Ok(Message::Text(t))) => assert_eq!(t.as_str(), "x".repeat(9000)),
            other => panic!("client read: {other:?}"),
        }
        // As the connection task writes: fed in a batch, then flushed.
        for i in 0..100 {
            ws.feed(Message::binary(frame(i, 2413)))
                .await
                .expect("feed");
        }
        ws.flush().await.expect("flush");
        let got = server.await.expect("server task");
        for (i, b) in got.iter().enumerate() {
            assert!(*b == frame(i, 2413), "frame {i} sent");
        }
    }

    #[test]
    fn auth_timestamps_follow_the_clock() {
        let clock = AuthClock::new(0);
        let t = clock.next();
        assert!(t >= now().saturating_sub(1) && t <= now() + 1);
        assert_eq!(clock.last(), t);
        // Tried again in the same second (refused or not): later still.
        assert!(clock.next() > t);
    }

    #[test]
    fn accepted_timestamps_strictly_increase_even_within_a_second() {
        let clock = AuthClock::new(0);
        let now = 1_900_000_000;
        let mut last = 0;
        // Up to a minute's worth of attempts within one second.
        for _ in 0..AUTH_MAX_AHEAD_SECS {
            let t = clock.next_at(now);
            assert!(t > last);
            clock.accepted(t);
            last = t;
        }
    }

    #[test]
    fn auth_timestamps_increase_when_the_clock_is_behind_the_last_one() {
        // As if the wall clock stepped back an hour after the last auth.
        // As if the wall clock stepped back 30 s after the last auth (within
        // the gateway's skew: build on the last one).
        let ahead = now() + 30;
        let clock = AuthClock::new(ahead);
        assert_eq!(clock.next(), ahead + 1);
        clock.accepted(ahead + 1);
        assert_eq!(clock.next(), ahead + 2);
        // An hour back: the saved timestamp cannot be from a gateway that
        // accepts two minutes of skew; the clock is used.
        let far = AuthClock::new(now() + 3600);
        let t = far.next();
        assert!(t <= now() + 1, "{t}");
    }

    #[test]
    fn suspend_and_resume_jumps_forward() {
        let clock = AuthClock::new(0);
        let before = 1_900_000_000;
        clock.accepted(clock.next_at(before));
        // A day asleep: the next timestamp is the new time.
        let after = before + 86_400;
        assert_eq!(clock.next_at(after), after);
        clock.accepted(after);
        assert_eq!(clock.next_at(after), after + 1);
    }

    #[test]
    fn a_refused_timestamp_from_a_wrong_clock_is_not_remembered() {
        let clock = AuthClock::new(0);
        let real = 1_900_000_000;
        clock.accepted(clock.next_at(real));
        // Right after resume the clock is an hour ahead; the gateway refuses
        // the attempt (skew), so it is never accepted.
        let wrong = clock.next_at(real + 3600);
        assert_eq!(wrong, real + 3600);
        // NTP fixes the clock: the next attempt uses real time again, which
        // the gateway accepts (within its skew and after the last accepted).
        let t = clock.next_at(real + 10);
        assert_eq!(t, real + 10);
        clock.accepted(t);
        assert_eq!(clock.last(), real + 10);
        assert_eq!(clock.next_at(real + 10), real + 11);
    }
}
