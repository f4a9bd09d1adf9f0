//! nymd-tests: end-to-end tests that drive real processes and sockets.
//!
//! The tests live in `tests/tests/*.rs`; this library holds shared helpers:
//! an app-side websocket client speaking nym-client's API, a daemon built
//! from the real library on a temporary state dir, and the localnet.

pub mod precondition;
pub mod procs;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use nymd::config::IdentitiesSection;
use nymd::manager::{InitRequest, Manager};
use nymd::store::{IdentityStore, TrafficConfig};
use nymd_mixnet::{Shared, SharedConfig, TopologySource, Url};
use nymd_proto::appapi::{AppFrame, ClientRequest, ServerResponse};
use nymd_proto::Recipient;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Upper bound for any single wait in these tests (a loaded 2-core machine
/// can be slow; nothing here measures time).
pub const WAIT: Duration = Duration::from_secs(60);

/// Traffic settings that make tests fast: no cover traffic, no delays.
pub fn fast_traffic() -> TrafficConfig {
    TrafficConfig {
        disable_cover_traffic: true,
        disable_delays: true,
        ..TrafficConfig::default()
    }
}

/// The embedded mixnet with per-hop delays off (tests measure nothing).
pub async fn fast_localnet() -> nymd_localnet::Localnet {
    nymd_localnet::Localnet::start(nymd_localnet::LocalnetConfig {
        delay: nymd_localnet::DelayPolicy::NoDelay,
        ..nymd_localnet::LocalnetConfig::default()
    })
    .await
    .expect("localnet")
}

/// A free loopback port (bound then released; good enough for tests).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A daemon built from the real library: identity store in `state_dir`,
/// topology from `api_url`.
#[derive(Debug)]
pub struct TestDaemon {
    /// The manager.
    pub manager: Manager,
    cancel: CancellationToken,
    tracker: TaskTracker,
}

impl TestDaemon {
    /// Start a manager over `state_dir` using the directory at `api_url`.
    pub fn start(state_dir: &Path, api_url: &str, first_port: u16) -> Self {
        Self::start_with_budget(
            state_dir,
            api_url,
            first_port,
            SharedConfig::default().memory_budget,
        )
    }

    /// [`TestDaemon::start`] with a daemon memory budget of
    /// `memory_budget` bytes (`[daemon] memory_budget_mib`).
    pub fn start_with_budget(
        state_dir: &Path,
        api_url: &str,
        first_port: u16,
        memory_budget: u64,
    ) -> Self {
        let store = IdentityStore::open(state_dir).expect("state dir");
        let shared = Shared::new(SharedConfig {
            default_source: TopologySource::NymApi(vec![Url::parse(api_url).expect("url")]),
            memory_budget,
            ..SharedConfig::default()
        })
        .expect("shared");
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let manager = Manager::new(
            store,
            shared,
            IdentitiesSection {
                first_port,
                traffic: fast_traffic(),
                ..IdentitiesSection::default()
            },
            cancel.child_token(),
            tracker.clone(),
        );
        manager.load().expect("load");
        manager.autostart();
        Self {
            manager,
            cancel,
            tracker,
        }
    }

    /// Create and start an identity; returns its websocket address and
    /// Nym address.
    pub async fn init(&self, id: &str) -> (SocketAddr, Recipient) {
        let info = tokio::time::timeout(
            WAIT,
            self.manager.init(InitRequest {
                id: id.into(),
                ..InitRequest::default()
            }),
        )
        .await
        .expect("init in time")
        .expect("init");
        (info.websocket, info.address.parse().expect("address"))
    }

    /// Wait (at most [`WAIT`]) until identity `id` is in state `want`.
    pub async fn wait_state(&self, id: &str, want: nymd::manager::RunState) {
        self.wait_state_where(id, |s| *s == want, &format!("{want:?}"))
            .await;
    }

    /// Wait (at most [`WAIT`]) until identity `id`'s state satisfies
    /// `want` (described as `what` in the failure).
    pub async fn wait_state_where(
        &self,
        id: &str,
        want: impl Fn(&nymd::manager::RunState) -> bool,
        what: &str,
    ) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let info = self.manager.info(id).expect("identity");
            if want(&info.state) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{id} never became {what}: {:?}",
                info.state
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Graceful shutdown, bounded.
    pub async fn stop(self) {
        self.manager.shutdown().await;
        self.cancel.cancel();
        self.tracker.close();
        tokio::time::timeout(WAIT, self.tracker.wait())
            .await
            .expect("daemon tasks end");
    }
}

/// An app connected to an identity's websocket port.
#[derive(Debug)]
pub struct App {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl App {
    /// Connect, retrying while the identity's listener comes up.
    pub async fn connect(addr: SocketAddr) -> Self {
        let url = format!("ws://{addr}");
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio_tungstenite::connect_async(&url).await {
                Ok((ws, _)) => return Self { ws },
                Err(e) => {
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "cannot connect to {url}: {e}"
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    /// Connect with a tiny kernel receive buffer (`bytes`), so that an app
    /// that stops reading pushes back on nymd at once instead of after
    /// megabytes of socket buffers.
    pub async fn connect_with_receive_buffer(addr: SocketAddr, bytes: u32) -> Self {
        // Retried while the identity's listener comes up.
        let deadline = tokio::time::Instant::now() + WAIT;
        let stream = loop {
            let socket = if addr.is_ipv4() {
                tokio::net::TcpSocket::new_v4()
            } else {
                tokio::net::TcpSocket::new_v6()
            }
            .expect("socket");
            socket.set_recv_buffer_size(bytes).expect("SO_RCVBUF");
            match socket.connect(addr).await {
                Ok(s) => break s,
                Err(e) => {
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "cannot connect to {addr}: {e}"
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        let (ws, _) = tokio::time::timeout(
            WAIT,
            tokio_tungstenite::client_async(format!("ws://{addr}"), MaybeTlsStream::Plain(stream)),
        )
        .await
        .expect("handshake in time")
        .expect("handshake");
        Self { ws }
    }

    /// Send a websocket ping and wait up to `within` for its pong (data
    /// frames that arrive meanwhile are returned too).
    pub async fn ping(&mut self, within: Duration) -> (bool, Vec<AppFrame>) {
        let mut frames = Vec::new();
        self.ws
            .send(Message::Ping(b"nymd-test"[..].into()))
            .await
            .expect("send ping");
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return (false, frames),
                Ok(None) | Ok(Some(Err(_))) => return (false, frames),
                Ok(Some(Ok(Message::Pong(_)))) => return (true, frames),
                Ok(Some(Ok(Message::Text(t)))) => {
                    frames.push(AppFrame::Text(t.as_str().to_owned()))
                }
                Ok(Some(Ok(Message::Binary(b)))) => frames.push(AppFrame::Binary(b.to_vec())),
                Ok(Some(Ok(_))) => {}
            }
        }
    }

    /// The next response within `within`, or `None`.
    pub async fn try_next_response(&mut self, within: Duration) -> Option<ServerResponse> {
        tokio::time::timeout(within, self.next_response())
            .await
            .ok()
    }

    /// Send a raw text frame.
    pub async fn send_text(&mut self, text: &str) {
        self.ws
            .send(Message::Text(text.into()))
            .await
            .expect("send text");
    }

    /// Send a raw binary frame.
    pub async fn send_binary(&mut self, bytes: Vec<u8>) {
        self.ws
            .send(Message::Binary(bytes.into()))
            .await
            .expect("send binary");
    }

    /// Send a request in binary form.
    pub async fn request_binary(&mut self, req: &ClientRequest) {
        self.send_binary(req.to_binary()).await;
    }

    /// Next data frame (pings skipped), bounded.
    pub async fn next_frame(&mut self) -> AppFrame {
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("a frame in time")
                .expect("socket open")
                .expect("no socket error");
            match msg {
                Message::Text(t) => return AppFrame::Text(t.as_str().to_owned()),
                Message::Binary(b) => return AppFrame::Binary(b.to_vec()),
                Message::Close(c) => panic!("socket closed: {c:?}"),
                _ => continue,
            }
        }
    }

    /// Next frame parsed as a server response.
    pub async fn next_response(&mut self) -> ServerResponse {
        let f = self.next_frame().await;
        f.parse_response().expect("a valid response")
    }

    /// Ask for our address (text mode).
    pub async fn self_address(&mut self) -> Recipient {
        self.send_text(r#"{"type":"selfAddress"}"#).await;
        match self.next_response().await {
            ServerResponse::SelfAddress(r) => r,
            other => panic!("expected selfAddress, got {other:?}"),
        }
    }

    /// Close the websocket.
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}

/// Collect the messages `app` receives, counting repeats: until `expected`
/// distinct ones came and then `quiet` passed without another (or [`WAIT`]
/// passed).
pub async fn collect_received(
    app: &mut App,
    expected: usize,
    quiet: Duration,
) -> std::collections::BTreeMap<Vec<u8>, u32> {
    let mut seen = std::collections::BTreeMap::new();
    let start = std::time::Instant::now();
    loop {
        let wait = if seen.len() >= expected {
            quiet
        } else {
            WAIT.saturating_sub(start.elapsed())
        };
        match tokio::time::timeout(wait, app.next_response()).await {
            Ok(ServerResponse::Received { message, .. }) => {
                *seen.entry(message).or_insert(0u32) += 1
            }
            Ok(_) => {}
            Err(_) => return seen,
        }
    }
}

/// Every message of `batch` was seen exactly once, and nothing else.
pub fn assert_exactly_once(
    seen: &std::collections::BTreeMap<Vec<u8>, u32>,
    batch: &[Vec<u8>],
    what: &str,
) {
    for m in batch {
        assert_eq!(
            seen.get(m).copied(),
            Some(1),
            "{what}: a {}-byte message arrived {:?} times",
            m.len(),
            seen.get(m)
        );
    }
    assert_eq!(seen.len(), batch.len(), "{what}: unexpected messages");
}
