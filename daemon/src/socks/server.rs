//! The listener of one identity's SOCKS port: accepts connections, lets in
//! only the identity's users (the checks of its app port,
//! [`crate::appserver::access::Gate::socks`]) before a byte is read, and
//! hands each to [`super::conn`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

use super::conn::{self, ConnContext, ConnSettings};
use super::{SocksHub, HANDSHAKE_SLACK};
use crate::appserver::access::{ConnectionLimit, Gate};
use crate::store::{Socks5Config, WebsocketConfig};

/// Settings of one identity's SOCKS listener.
#[derive(Debug, Clone)]
pub struct SocksServerConfig {
    /// The identity's `[socks5]` section (its provider must be valid).
    pub socks5: Socks5Config,
    /// The identity's `[websocket]` section: who may connect.
    pub websocket: WebsocketConfig,
    /// The identity's name.
    pub identity: String,
}

/// Why the listener cannot serve.
#[derive(Debug, thiserror::Error)]
pub enum SocksServerError {
    /// No provider, or not a Nym address.
    #[error("[socks5] of identity '{0}' has no valid provider; set one with `nymctl socks5 {0} provider ADDRESS` (or `auto`)")]
    NoProvider(String),
}

/// Accept SOCKS connections on `listener` until `cancel` fires; runs in a
/// span `identity`, like the app server.
pub async fn serve(
    listener: TcpListener,
    config: SocksServerConfig,
    hub: Arc<SocksHub>,
    cancel: CancellationToken,
    tracker: TaskTracker,
) -> Result<(), SocksServerError> {
    let provider = config
        .socks5
        .provider_address()
        .ok_or_else(|| SocksServerError::NoProvider(config.identity.clone()))?;
    let span = tracing::info_span!("identity", identity = %config.identity);
    let settings = Arc::new(ConnSettings {
        provider,
        anonymous: config.socks5.anonymous,
        connect_timeout: config.socks5.connect_timeout(),
        idle_timeout: config.socks5.idle_timeout(),
    });
    accept_loop(listener, config, settings, hub, cancel, tracker)
        .instrument(span)
        .await;
    Ok(())
}

async fn accept_loop(
    listener: TcpListener,
    config: SocksServerConfig,
    settings: Arc<ConnSettings>,
    hub: Arc<SocksHub>,
    cancel: CancellationToken,
    tracker: TaskTracker,
) {
    let max = config.socks5.max_connections;
    // Connections from accept to end, handshakes included: a flood of
    // half-open connections is closed at once beyond this.
    let admission = ConnectionLimit::new(max.saturating_add(HANDSHAKE_SLACK));
    let gate = Arc::new(Gate::socks(
        &config.websocket,
        config.socks5.port,
        &config.identity,
        admission,
    ));
    let cap = ConnectionLimit::new(max);
    let port = config.socks5.port;
    if !crate::appserver::access::is_loopback(config.socks5.host) {
        tracing::warn!(
            port,
            host = %config.socks5.host,
            "programs on other machines may use this SOCKS port (allow_remote_apps): the user check applies only to programs on this machine"
        );
    }
    loop {
        let accepted = tokio::select! {
            _ = cancel.cancelled() => return,
            a = listener.accept() => a,
        };
        let (stream, peer): (_, SocketAddr) = match accepted {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!("SOCKS listener accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(admission) = gate.admit(peer) else {
            hub.count_refused();
            drop(stream);
            continue;
        };
        let ctx = ConnContext {
            hub: hub.clone(),
            settings: settings.clone(),
            cap: cap.clone(),
            cancel: cancel.child_token(),
        };
        let gate = gate.clone();
        let task = async move {
            let _admission = admission;
            // Closed before the handshake if its user may not connect.
            if !gate.check_peer(&stream, peer).await {
                ctx.hub.count_refused();
                return;
            }
            conn::run(stream, peer, ctx).await;
        };
        tracker.spawn(task.in_current_span());
    }
}
