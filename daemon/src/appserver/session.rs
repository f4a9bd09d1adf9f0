//! One connected app: its requests go to the identity actor, its responses
//! and received messages come back.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use nymd_proto::appapi::{ApiError, AppFrame, ResponseMode, ServerResponse};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::hub::Outbound;
use super::{AppCommand, AppHub, HANDSHAKE_DEADLINE};

/// Time a stuck app gets before it is disconnected.
const STUCK_APP_GRACE: Duration = Duration::from_secs(5);

/// Read buffer of an app websocket (see `session`).
const APP_READ_BUFFER: usize = 16 * 1024;

pub(crate) async fn run(
    stream: TcpStream,
    peer: SocketAddr,
    allow_multiple: bool,
    hub: Arc<AppHub>,
    commands: mpsc::Sender<AppCommand>,
    cancel: CancellationToken,
) -> Result<(), String> {
    let _ = stream.set_nodelay(true);
    // tungstenite preallocates a 128 KiB read buffer per connection by
    // default: 125 MiB for 1,000 idle apps. 16 KiB reads cost nothing
    // measurable for app traffic and keep an idle app at a few KiB.
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(APP_READ_BUFFER);
    let handshake = tokio::time::timeout(
        HANDSHAKE_DEADLINE,
        tokio_tungstenite::accept_async_with_config(stream, Some(config)),
    );
    let handshake = tokio::select! {
        _ = cancel.cancelled() => return Ok(()),
        h = handshake => h,
    };
    let ws = match handshake {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => return Err(format!("websocket handshake failed: {e}")),
        Err(_) => return Err("websocket handshake not completed in time".into()),
    };
    let Some((id, mut outbound)) = hub.register(allow_multiple, peer) else {
        return Err("another app connected first".into());
    };
    tracing::info!(%peer, session = id, "app connected");
    let (mut sink, mut source) = ws.split();
    let mut mode = ResponseMode::default();
    let result = loop {
        tokio::select! {
            _ = cancel.cancelled() => {
                let _ = sink.send(Message::Close(Some(CloseFrame {
                    code: CloseCode::Away,
                    reason: "nymd is shutting down".into(),
                }))).await;
                break Ok(());
            }
            out = outbound.recv() => {
                let frame = match out {
                    Some(Outbound::Delivery(d)) => mode.encode(&ServerResponse::Received {
                        message: d.data.clone(),
                        sender_tag: d.sender_tag,
                    }),
                    Some(Outbound::Error(e)) => mode.encode(&ServerResponse::Error(e)),
                    None => {
                        // The hub dropped us: we were too slow.
                        let _ = sink.send(Message::Close(Some(CloseFrame {
                            code: CloseCode::Again,
                            reason: "app did not read its messages".into(),
                        }))).await;
                        break Err("disconnected as too slow".into());
                    }
                };
                match tokio::time::timeout(STUCK_APP_GRACE, sink.send(to_message(frame))).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => break Err(format!("write failed: {e}")),
                    Err(_) => break Err("app stopped reading".into()),
                }
            }
            incoming = source.next() => {
                let frame = match incoming {
                    None => break Ok(()),
                    Some(Err(e)) => break Err(format!("read failed: {e}")),
                    Some(Ok(Message::Text(t))) => AppFrame::Text(t.as_str().to_owned()),
                    Some(Ok(Message::Binary(b))) => AppFrame::Binary(b.to_vec()),
                    Some(Ok(Message::Close(_))) => break Ok(()),
                    // Ping/pong are answered by tungstenite; raw frames ignored.
                    Some(Ok(_)) => continue,
                };
                mode.observe(&frame);
                let response = match frame.parse_request() {
                    Err(e) => Some(ServerResponse::Error(e)),
                    Ok(request) => {
                        let (tx, rx) = oneshot::channel();
                        let cmd = AppCommand { session: id, request, respond: tx };
                        // Backpressure: while the identity's queue is full we
                        // stop reading this app's socket.
                        if commands.send(cmd).await.is_err() {
                            break Err("identity stopped".into());
                        }
                        match rx.await {
                            Ok(r) => r,
                            Err(_) => Some(ServerResponse::Error(ApiError::other(
                                "the identity stopped before answering",
                            ))),
                        }
                    }
                };
                if let Some(resp) = response {
                    let frame = mode.encode(&resp);
                    if let Err(e) = sink.send(to_message(frame)).await {
                        break Err(format!("write failed: {e}"));
                    }
                }
            }
        }
    };
    hub.unregister(id);
    tracing::info!(%peer, session = id, "app disconnected");
    result
}

fn to_message(frame: AppFrame) -> Message {
    match frame {
        AppFrame::Text(t) => Message::Text(t.into()),
        AppFrame::Binary(b) => Message::Binary(b.into()),
    }
}
