//! The listener of one identity's app port: accepts connections, checks
//! them ([`super::access`]: limits, the peer's user, the browser origin)
//! and completes the websocket handshake, then hands each app to a
//! [`super::session`].

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

use nymd_proto::Recipient;

use super::access::{self, ConnectionLimit, Gate};
use super::session;
use super::{AppCommand, AppHub, HANDSHAKE_DEADLINE};
use crate::store::WebsocketConfig;

/// Settings of one identity's app server.
#[derive(Debug, Clone)]
pub struct AppServerConfig {
    /// The identity's `[websocket]` section: access, limits, one-app mode.
    pub websocket: WebsocketConfig,
    /// The identity's Nym address, answered to `selfAddress` in every state.
    pub address: Recipient,
    /// The identity's name (for log lines that say what to run).
    pub identity: String,
}

/// Accept app connections on `listener` until `cancel` fires. Connections
/// count against the identity's own limit and `daemon_limit`, which every
/// identity's server of the daemon shares (`[daemon] max_app_connections`).
///
/// Runs in a span `identity` with the identity's name (a journal field,
/// `NYMD_IDENTITY`, see [`crate::logging`]), as do its app sessions.
///
/// Not `async fn`s (this and the accept loop): each would keep a second
/// copy of its arguments in the future, which every identity holds while it
/// runs.
pub fn serve(
    listener: TcpListener,
    config: AppServerConfig,
    daemon_limit: Arc<ConnectionLimit>,
    hub: Arc<AppHub>,
    commands: mpsc::Sender<Box<AppCommand>>,
    cancel: CancellationToken,
    tracker: TaskTracker,
) -> impl Future<Output = ()> {
    let span = tracing::info_span!("identity", identity = %config.identity);
    accept_loop(
        listener,
        config,
        daemon_limit,
        hub,
        commands,
        cancel,
        tracker,
    )
    .instrument(span)
}

#[allow(clippy::manual_async_fn)] // see `serve`
fn accept_loop(
    listener: TcpListener,
    config: AppServerConfig,
    daemon_limit: Arc<ConnectionLimit>,
    hub: Arc<AppHub>,
    commands: mpsc::Sender<Box<AppCommand>>,
    cancel: CancellationToken,
    tracker: TaskTracker,
) -> impl Future<Output = ()> {
    async move {
        let gate = Arc::new(Gate::new(&config.websocket, &config.identity, daemon_limit));
        let ws = &config.websocket;
        if !access::is_loopback(ws.host) && ws.allow_remote_apps {
            tracing::warn!(
                port = ws.port,
                host = %ws.host,
                "apps on other machines may connect to this port (allow_remote_apps): the user check applies only to apps on this machine"
            );
        }
        loop {
            let accepted = tokio::select! {
                _ = cancel.cancelled() => return,
                a = listener.accept() => a,
            };
            let (stream, peer) = match accepted {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!("app listener accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            // Counted from here until the session ends, so connections still
            // in the handshake count too; over the limit: closed at once.
            let Some(admission) = gate.admit(peer) else {
                drop(stream);
                continue;
            };
            let app = session::SessionContext {
                hub: hub.clone(),
                commands: commands.clone(),
                cancel: cancel.child_token(),
                address: config.address,
                write_deadline: config.websocket.write_timeout(),
            };
            let gate = gate.clone();
            let app_task = async move {
                let _admission = admission;
                // Closed before the handshake if its user may not connect.
                if !gate.check_peer(&stream, peer).await {
                    return;
                }
                let (ws, tap) = match handshake(stream, peer, &gate, &app.cancel).await {
                    Ok(Some(ws)) => ws,
                    Ok(None) => return,
                    Err(e) => {
                        tracing::debug!(%peer, "app connection dropped: {e}");
                        return;
                    }
                };
                if let Err(e) = session::run(ws, peer, app, tap).await {
                    tracing::debug!(%peer, "app session ended: {e}");
                }
            };
            tracker.spawn(app_task.in_current_span());
        }
    }
}

/// Read buffer of an app websocket. tungstenite preallocates 128 KiB per
/// connection by default: 125 MiB for 1,000 idle apps. 16 KiB reads cost
/// nothing measurable for app traffic and keep an idle app at a few KiB.
const APP_READ_BUFFER: usize = 16 * 1024;

/// Largest message an app may send: nym-client's (tungstenite's default),
/// so every app written for nym-client works. Memory per connection is
/// bounded by it; a text frame's JSON nesting is bounded separately by
/// serde_json's recursion limit (128), so a deeply nested message costs no
/// more than a flat one of the same size.
const MAX_MESSAGE_SIZE: usize = 64 << 20;
/// Largest single frame (tungstenite's default, as nym-client): a message
/// may come in several.
const MAX_FRAME_SIZE: usize = 16 << 20;

/// Complete the websocket handshake within [`HANDSHAKE_DEADLINE`]; a
/// browser page of an origin `gate` does not allow gets HTTP 403. `None`
/// when nymd is stopping; else the websocket and whether the URL asked for
/// a tap ([`nymd_proto::appapi::TAP_QUERY`]).
async fn handshake(
    stream: TcpStream,
    peer: std::net::SocketAddr,
    gate: &Gate,
    cancel: &CancellationToken,
) -> Result<Option<(WebSocketStream<TcpStream>, bool)>, String> {
    let _ = stream.set_nodelay(true);
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(APP_READ_BUFFER)
        .max_message_size(Some(MAX_MESSAGE_SIZE))
        .max_frame_size(Some(MAX_FRAME_SIZE));
    let tap = std::sync::atomic::AtomicBool::new(false);
    let origin_check = gate.origin_check(peer);
    #[allow(
        clippy::result_large_err,
        reason = "the callback's signature is tungstenite's"
    )]
    let callback = |request: &Request, response: Response| {
        tap.store(
            nymd_proto::appapi::is_tap_target(
                request.uri().path_and_query().map_or("", |p| p.as_str()),
            ),
            std::sync::atomic::Ordering::Relaxed,
        );
        origin_check(request, response)
    };
    let handshake = tokio::time::timeout(
        HANDSHAKE_DEADLINE,
        tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(config)),
    );
    let handshake = tokio::select! {
        _ = cancel.cancelled() => return Ok(None),
        h = handshake => h,
    };
    match handshake {
        Ok(Ok(ws)) => Ok(Some((ws, tap.load(std::sync::atomic::Ordering::Relaxed)))),
        Ok(Err(e)) => Err(format!("websocket handshake failed: {e}")),
        Err(_) => Err("websocket handshake not completed in time".into()),
    }
}
