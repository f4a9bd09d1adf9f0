//! The listener of one identity's app port: accepts connections, checks
//! them and completes the websocket handshake, then hands each app to a
//! [`super::session`].

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use nymd_proto::Recipient;

use super::session;
use super::{AppCommand, AppHub};
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
        if !hub.slot_free(config.websocket.allow_multiple_apps) {
            tracing::warn!(%peer, "an app is already connected and this identity allows one at a time: closing the new connection");
            drop(stream);
            continue;
        }
        let hub = hub.clone();
        let commands = commands.clone();
        let cancel = cancel.child_token();
        let allow = config.websocket.allow_multiple_apps;
        tracker.spawn(async move {
            if let Err(e) = session::run(stream, peer, allow, hub, commands, cancel).await {
                tracing::debug!(%peer, "app session ended: {e}");
            }
        });
    }
}
