//! The accept loop and the per-connection protocol.
//!
//! Each connection is one task that reads frames, plus a writer task that
//! owns the write half and drains a bounded queue of outgoing messages.
//! Requests run as their own tasks (at most `max_in_flight` per connection),
//! so a slow `init` does not hold up `list`, and subscriptions forward
//! events from the backend's broadcast channel into the same queue. When
//! the socket is slow the queue fills, the forwarder waits, and the
//! broadcast receiver falls behind: the subscriber is told `Lagged`, the
//! daemon never waits.
//!
//! Responses and subscription events are separate streams on one
//! connection: an event published just before a request completes may reach
//! the client just after its response.
//!
//! A frame that is oversized or does not decode ends the connection after
//! a [`ServerMessage::Error`]; other connections are unaffected.

use std::sync::Arc;

use nymd_ipc::codec::{read_message, write_message, FrameError};
use nymd_ipc::{
    version_mismatch, ClientMessage, ErrorCode, Event, IpcError, RequestBody, Response,
    ResponseBody, ServerMessage, Tier, Welcome, PROTOCOL_VERSION,
};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{broadcast, mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::auth::{PeerCredentials, TierPolicy};
use super::{ControlBackend, ControlServerConfig};
use crate::health::{self, Ping};

/// Outgoing messages queued per connection before producers wait.
const OUTBOUND_QUEUE: usize = 256;

/// Serve the control socket until `shutdown` is cancelled, then let
/// connections flush for `shutdown_grace` and return.
pub async fn serve<B: ControlBackend>(
    listener: UnixListener,
    backend: Arc<B>,
    config: ControlServerConfig,
    shutdown: CancellationToken,
) {
    let (_no_pings, pings) = health::channel();
    serve_with_health(listener, backend, config, shutdown, pings).await;
}

/// [`serve`], also answering the watchdog's liveness pings from the accept
/// loop (see [`crate::health`]).
pub async fn serve_with_health<B: ControlBackend>(
    listener: UnixListener,
    backend: Arc<B>,
    config: ControlServerConfig,
    shutdown: CancellationToken,
    mut pings: mpsc::Receiver<Ping>,
) {
    let config = Arc::new(config);
    let tracker = TaskTracker::new();
    let permits = Arc::new(Semaphore::new(config.max_connections.max(1)));
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(p) = pings.recv() => { let _ = p.send(()); continue; }
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let stream = loop {
            tokio::select! {
                _ = shutdown.cancelled() => break None,
                Some(p) = pings.recv() => { let _ = p.send(()); }
                r = listener.accept() => break Some(r),
            }
        };
        let Some(accepted) = stream else { break };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!("control socket accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let backend = backend.clone();
        let config = config.clone();
        let cancel = shutdown.child_token();
        tracker.spawn(async move {
            serve_connection(stream, backend, config, cancel).await;
            drop(permit);
        });
    }
    tracker.close();
    if tokio::time::timeout(config.shutdown_grace, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("control connections still open at shutdown; dropping them");
    }
}

/// Everything a connection's tasks share.
struct Conn<B> {
    backend: Arc<B>,
    config: Arc<ControlServerConfig>,
    tier: Tier,
    peer: Option<PeerCredentials>,
    out: mpsc::Sender<ServerMessage>,
    cancel: CancellationToken,
}

async fn serve_connection<B: ControlBackend>(
    stream: UnixStream,
    backend: Arc<B>,
    config: Arc<ControlServerConfig>,
    cancel: CancellationToken,
) {
    let peer = stream.peer_cred().ok().map(|c| PeerCredentials {
        uid: c.uid(),
        gid: c.gid(),
        pid: c.pid(),
    });
    let tier = match &config.tier_policy {
        TierPolicy::Fixed(t) => *t,
        TierPolicy::Credentials(rules) => match peer {
            Some(p) => {
                let rules = rules.clone();
                tokio::task::spawn_blocking(move || rules.tier_of(&p))
                    .await
                    .unwrap_or(Tier::Observe)
            }
            None => Tier::Observe,
        },
    };
    let (mut rd, mut wr) = stream.into_split();

    // Handshake.
    let hello = tokio::select! {
        _ = cancel.cancelled() => return,
        r = tokio::time::timeout(config.hello_timeout, read_message::<_, ClientMessage>(&mut rd, config.max_frame_len)) => r,
    };
    let hello = match hello {
        Ok(Ok(Some(ClientMessage::Hello(h)))) => h,
        Ok(Ok(None)) => return,
        Ok(Ok(Some(ClientMessage::Request(_)))) => {
            let e = IpcError::new(
                ErrorCode::ProtocolError,
                "expected Hello before any request",
            );
            let _ = write_message(&mut wr, &ServerMessage::Error(e), config.max_frame_len).await;
            return;
        }
        Ok(Err(e)) => {
            refuse_frame(&mut wr, &config, &e).await;
            return;
        }
        Err(_) => {
            let e = IpcError::new(ErrorCode::ProtocolError, "no Hello within the time limit");
            let _ = write_message(&mut wr, &ServerMessage::Error(e), config.max_frame_len).await;
            return;
        }
    };
    if hello.protocol_version != PROTOCOL_VERSION {
        tracing::info!(
            client = %hello.client_name,
            version = hello.protocol_version,
            "refusing a control client of another protocol version"
        );
        let e = version_mismatch(
            &hello.client_name,
            hello.protocol_version,
            &config.daemon_version,
        );
        let _ = write_message(&mut wr, &ServerMessage::Error(e), config.max_frame_len).await;
        return;
    }
    let welcome = ServerMessage::Welcome(Welcome {
        daemon_version: config.daemon_version.clone(),
        protocol_version: PROTOCOL_VERSION,
        instance_id: config.instance_id.clone(),
        features: config.features.clone(),
        tier,
    });
    if write_message(&mut wr, &welcome, config.max_frame_len)
        .await
        .is_err()
    {
        return;
    }
    tracing::debug!(client = %hello.client_name, ?peer, ?tier, "control client connected");

    let (out, out_rx) = mpsc::channel(OUTBOUND_QUEUE);
    let writer = tokio::spawn(write_loop(wr, out_rx, config.max_frame_len));
    let conn = Arc::new(Conn {
        backend,
        config: config.clone(),
        tier,
        peer,
        out,
        cancel: cancel.child_token(),
    });
    read_loop(&mut rd, &conn).await;

    // Stop subscriptions; requests in flight finish on their own and their
    // answers are flushed if the client is still there.
    conn.cancel.cancel();
    drop(conn);
    let grace = config.shutdown_grace;
    let _ = tokio::time::timeout(grace, writer).await;
}

async fn read_loop<B: ControlBackend>(rd: &mut OwnedReadHalf, conn: &Arc<Conn<B>>) {
    let in_flight = Arc::new(Semaphore::new(conn.config.max_in_flight.max(1)));
    let subscriptions = Arc::new(Semaphore::new(conn.config.max_subscriptions));
    loop {
        let permit = tokio::select! {
            _ = conn.cancel.cancelled() => return,
            p = in_flight.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let msg = tokio::select! {
            _ = conn.cancel.cancelled() => return,
            r = read_message::<_, ClientMessage>(rd, conn.config.max_frame_len) => r,
        };
        let req = match msg {
            Ok(Some(ClientMessage::Request(req))) => req,
            Ok(Some(ClientMessage::Hello(_))) => {
                let e = IpcError::new(ErrorCode::ProtocolError, "Hello sent twice");
                let _ = conn.out.send(ServerMessage::Error(e)).await;
                return;
            }
            Ok(None) => return,
            Err(e) => {
                if e.is_protocol_violation() {
                    tracing::info!(peer = ?conn.peer, "closing a control connection: {e}");
                    let err = IpcError::new(ErrorCode::ProtocolError, e.to_string());
                    let _ = conn.out.send(ServerMessage::Error(err)).await;
                } else {
                    tracing::debug!(peer = ?conn.peer, "control connection ended: {e}");
                }
                return;
            }
        };
        if req.body.changes_state() && conn.tier != Tier::Operate {
            let e = permission_denied(conn);
            let _ = conn
                .out
                .send(ServerMessage::Response(Response {
                    id: req.id,
                    result: Err(e),
                }))
                .await;
            continue;
        }
        if req.body.changes_state() {
            tracing::info!(
                request = req.body.name(),
                uid = conn.peer.map(|p| p.uid),
                pid = conn.peer.and_then(|p| p.pid),
                "control request"
            );
        }
        if let RequestBody::Subscribe { identity } = req.body {
            let Ok(sub_permit) = subscriptions.clone().try_acquire_owned() else {
                let e = IpcError::new(
                    ErrorCode::Unavailable,
                    format!(
                        "too many subscriptions on one connection (limit {})",
                        conn.config.max_subscriptions
                    ),
                );
                let _ = conn
                    .out
                    .send(ServerMessage::Response(Response {
                        id: req.id,
                        result: Err(e),
                    }))
                    .await;
                continue;
            };
            drop(permit);
            let conn = conn.clone();
            tokio::spawn(async move {
                subscription(&conn, req.id, identity).await;
                drop(sub_permit);
            });
            continue;
        }
        let conn = conn.clone();
        tokio::spawn(async move {
            let result = handle(&*conn.backend, req.body, conn.peer).await;
            let _ = conn
                .out
                .send(ServerMessage::Response(Response { id: req.id, result }))
                .await;
            drop(permit);
        });
    }
}

fn permission_denied<B>(conn: &Conn<B>) -> IpcError {
    let (message, hint) = match (&conn.config.tier_policy, conn.peer) {
        (TierPolicy::Credentials(rules), Some(peer)) => rules.observe_reason(&peer),
        _ => (
            "permission denied: this connection may only observe nymd".to_owned(),
            "run the command as root, as the daemon's user, or as a member of group 'nymd'"
                .to_owned(),
        ),
    };
    IpcError::new(ErrorCode::PermissionDenied, message).with_hint(hint)
}

/// Run one request on the backend; `peer` is the connection's peer, as the
/// kernel reported it.
async fn handle<B: ControlBackend>(
    backend: &B,
    body: RequestBody,
    peer: Option<PeerCredentials>,
) -> Result<ResponseBody, IpcError> {
    Ok(match body {
        RequestBody::Init(req) => ResponseBody::Identity(backend.init(req, peer).await?),
        RequestBody::Start { id } => {
            backend.start(id).await?;
            ResponseBody::Done
        }
        RequestBody::Stop { id } => {
            backend.stop(id).await?;
            ResponseBody::Done
        }
        RequestBody::Restart { id } => {
            backend.restart(id).await?;
            ResponseBody::Done
        }
        RequestBody::Remove { id } => {
            backend.remove(id).await?;
            ResponseBody::Done
        }
        RequestBody::List => ResponseBody::Identities(backend.list().await?),
        RequestBody::Status { id } => ResponseBody::Identities(backend.status(id).await?),
        RequestBody::Address { id } => {
            let address = backend.address(id.clone()).await?;
            ResponseBody::Address { id, address }
        }
        RequestBody::Gateways { latency } => {
            ResponseBody::Gateways(backend.gateways(latency).await?)
        }
        RequestBody::Topology => ResponseBody::Topology(backend.topology().await?),
        RequestBody::Send(req) => {
            backend.send(req).await?;
            ResponseBody::Done
        }
        RequestBody::Import(req) => ResponseBody::Identity(backend.import(req, peer).await?),
        RequestBody::Access(req) => ResponseBody::Identity(backend.access(req).await?),
        RequestBody::Socks5(req) => ResponseBody::Identity(backend.socks5(req).await?),
        RequestBody::DaemonInfo => ResponseBody::DaemonInfo(backend.daemon_info().await?),
        RequestBody::Shutdown => {
            backend.shutdown().await?;
            ResponseBody::Done
        }
        // Handled by the read loop; kept here so the match stays exhaustive.
        RequestBody::Subscribe { .. } => ResponseBody::Subscribed,
    })
}

/// One subscription: the response, the snapshot, then events until the
/// connection ends.
async fn subscription<B: ControlBackend>(conn: &Conn<B>, id: u64, identity: Option<String>) {
    // Subscribe before the snapshot: a change in between shows up twice
    // (once in the snapshot, once as an event) rather than not at all.
    let mut events = conn.backend.subscribe();
    let snapshot = match conn.backend.snapshot(identity.clone()).await {
        Ok(s) => s,
        Err(e) => {
            let _ = conn
                .out
                .send(ServerMessage::Response(Response { id, result: Err(e) }))
                .await;
            return;
        }
    };
    let first = [
        ServerMessage::Response(Response {
            id,
            result: Ok(ResponseBody::Subscribed),
        }),
        ServerMessage::Snapshot {
            subscription: id,
            snapshot,
        },
    ];
    for msg in first {
        if conn.out.send(msg).await.is_err() {
            return;
        }
    }
    let wanted = |ev: &Event| match (&identity, ev.identity()) {
        (None, _) | (_, None) => true,
        (Some(want), Some(got)) => want == got,
    };
    loop {
        let msg = tokio::select! {
            _ = conn.cancel.cancelled() => return,
            r = events.recv() => match r {
                Ok(event) if wanted(&event) => ServerMessage::Event { subscription: id, event },
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    ServerMessage::Lagged { subscription: id, missed }
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
        };
        tokio::select! {
            _ = conn.cancel.cancelled() => return,
            r = conn.out.send(msg) => if r.is_err() { return },
        }
    }
}

async fn write_loop(
    mut wr: OwnedWriteHalf,
    mut rx: mpsc::Receiver<ServerMessage>,
    max_frame_len: u32,
) {
    while let Some(msg) = rx.recv().await {
        if let Err(e) = write_message(&mut wr, &msg, max_frame_len).await {
            match e {
                FrameError::TooLarge { .. } | FrameError::Encode(_) => {
                    // A response too big for a frame: tell the client, go on.
                    tracing::warn!("control response not sent: {e}");
                    if let ServerMessage::Response(Response { id, .. }) = msg {
                        let err = ServerMessage::Response(Response {
                            id,
                            result: Err(IpcError::new(
                                ErrorCode::Internal,
                                format!("the response could not be sent: {e}"),
                            )),
                        });
                        if write_message(&mut wr, &err, max_frame_len).await.is_err() {
                            return;
                        }
                    }
                }
                _ => return,
            }
        }
    }
}

async fn refuse_frame(wr: &mut OwnedWriteHalf, config: &ControlServerConfig, e: &FrameError) {
    if e.is_protocol_violation() {
        let err = IpcError::new(ErrorCode::ProtocolError, e.to_string());
        let _ = write_message(wr, &ServerMessage::Error(err), config.max_frame_len).await;
    }
}
