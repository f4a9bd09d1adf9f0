//! The listener of one identity's app port: accepts connections, checks
//! them and completes the websocket handshake, then hands each app to a
//! [`super::session`].

use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use nymd_proto::Recipient;

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
}

/// Accept app connections on `listener` until `cancel` fires.
pub async fn serve(
    listener: TcpListener,
    config: AppServerConfig,
    hub: Arc<AppHub>,
    commands: mpsc::Sender<AppCommand>,
    cancel: CancellationToken,
    tracker: TaskTracker,
) {
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
        if hub.connected_apps() >= config.websocket.max_apps() {
            tracing::warn!(%peer, limit = config.websocket.max_apps(), "this identity has as many apps connected as it allows: closing the new connection");
            drop(stream);
            continue;
        }
        let app = session::SessionContext {
            hub: hub.clone(),
            commands: commands.clone(),
            cancel: cancel.child_token(),
            address: config.address,
        };
        tracker.spawn(async move {
            let ws = match handshake(stream, &app.cancel).await {
                Ok(Some(ws)) => ws,
                Ok(None) => return,
                Err(e) => {
                    tracing::debug!(%peer, "app connection dropped: {e}");
                    return;
                }
            };
            if let Err(e) = session::run(ws, peer, app).await {
                tracing::debug!(%peer, "app session ended: {e}");
            }
        });
    }
}

/// Read buffer of an app websocket. tungstenite preallocates 128 KiB per
/// connection by default: 125 MiB for 1,000 idle apps. 16 KiB reads cost
/// nothing measurable for app traffic and keep an idle app at a few KiB.
const APP_READ_BUFFER: usize = 16 * 1024;

/// Complete the websocket handshake within [`HANDSHAKE_DEADLINE`]. `None`
/// when nymd is stopping.
async fn handshake(
    stream: TcpStream,
    cancel: &CancellationToken,
) -> Result<Option<WebSocketStream<TcpStream>>, String> {
    let _ = stream.set_nodelay(true);
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(APP_READ_BUFFER);
    let handshake = tokio::time::timeout(
        HANDSHAKE_DEADLINE,
        tokio_tungstenite::accept_async_with_config(stream, Some(config)),
    );
    let handshake = tokio::select! {
        _ = cancel.cancelled() => return Ok(None),
        h = handshake => h,
    };
    match handshake {
        Ok(Ok(ws)) => Ok(Some(ws)),
        Ok(Err(e)) => Err(format!("websocket handshake failed: {e}")),
        Err(_) => Err("websocket handshake not completed in time".into()),
    }
}
