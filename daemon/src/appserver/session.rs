//! One connected app: its requests go to the identity actor, its responses,
//! received messages and its own send failures come back.
//!
//! The session never waits for the identity inline: requests in flight are
//! kept in order ([`MAX_IN_FLIGHT`] at most, then the socket is not read
//! until one is answered, which is the app's backpressure), so while the
//! identity is connecting the session keeps reading and answering pings;
//! `selfAddress` (known from the keys) and malformed requests are answered
//! at once in every state, ahead of answers the identity still owes.
//! Received messages are written in arrival order; the hub forgets one only
//! after the write completed. Every write has a deadline.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::FuturesOrdered;
use futures_util::{SinkExt, StreamExt};
use nymd_proto::appapi::{ApiError, AppFrame, ClientRequest, ResponseMode, ServerResponse};
use nymd_proto::Recipient;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;

use super::{AppCommand, AppHub};

/// Requests of one app waiting for the identity's answer before the
/// session stops reading the app's socket.
pub const MAX_IN_FLIGHT: usize = 32;
/// A write to the app (a response or a received message) that takes longer
/// than this ends the session: the app stopped reading. What it was being
/// given stays in the hub for the next app. The default of `[websocket]
/// write_timeout_secs`.
pub const WRITE_DEADLINE: Duration = Duration::from_secs(crate::store::DEFAULT_WRITE_TIMEOUT_SECS);

/// How long requests an app made before closing may take to be handed to
/// the identity (it waits at most [`crate::manager`]'s 30 s for a
/// connection).
const DRAIN_DEADLINE: Duration = Duration::from_secs(40);

/// What a session needs from its identity.
#[derive(Debug, Clone)]
pub(crate) struct SessionContext {
    pub(crate) hub: Arc<AppHub>,
    pub(crate) commands: mpsc::Sender<Box<AppCommand>>,
    pub(crate) cancel: CancellationToken,
    pub(crate) address: Recipient,
    /// How long one write to the app may wait (`write_timeout_secs`).
    pub(crate) write_deadline: Duration,
}

type Answer = Pin<Box<dyn Future<Output = Option<ServerResponse>> + Send>>;

/// A request for the identity actor, answered when it answers.
fn ask(session: u64, request: ClientRequest, commands: mpsc::Sender<Box<AppCommand>>) -> Answer {
    Box::pin(async move {
        let (tx, rx) = oneshot::channel();
        let cmd = Box::new(AppCommand {
            session,
            request,
            respond: tx,
        });
        if commands.send(cmd).await.is_err() {
            return Some(ServerResponse::Error(ApiError::other(
                "the identity stopped before answering",
            )));
        }
        match rx.await {
            Ok(r) => r,
            Err(_) => Some(ServerResponse::Error(ApiError::other(
                "the identity stopped before answering",
            ))),
        }
    })
}

type Sink = futures_util::stream::SplitSink<WebSocketStream<TcpStream>, Message>;

/// Write one frame within `deadline`.
async fn write(sink: &mut Sink, deadline: Duration, frame: AppFrame) -> Result<(), String> {
    match tokio::time::timeout(deadline, sink.send(to_message(frame))).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("write failed: {e}")),
        Err(_) => Err(format!(
            "the app did not read for {} s: closing its session",
            deadline.as_secs()
        )),
    }
}

async fn close(sink: &mut Sink, code: CloseCode, reason: &'static str) {
    let frame = Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }));
    let _ = tokio::time::timeout(Duration::from_secs(1), sink.send(frame)).await;
}

/// Serve one app until it leaves, nymd stops or the hub drops it. A `tap`
/// is registered as one ([`AppHub::register_tap`]): it takes no message
/// from the apps.
pub(crate) async fn run(
    ws: WebSocketStream<TcpStream>,
    peer: SocketAddr,
    ctx: SessionContext,
    tap: bool,
) -> Result<(), String> {
    let mut reg = if tap {
        ctx.hub.register_tap(peer)
    } else {
        ctx.hub.register(peer)
    };
    let id = reg.session;
    tracing::info!(%peer, session = id, tap, "app connected");
    let (mut sink, mut source) = ws.split();
    let mut mode = ResponseMode::default();
    let mut answers: FuturesOrdered<Answer> = FuturesOrdered::new();
    let hub = ctx.hub.clone();
    let result = loop {
        tokio::select! {
            _ = ctx.cancel.cancelled() => {
                close(&mut sink, CloseCode::Away, "nymd is shutting down").await;
                break Ok(());
            }
            _ = reg.kick.cancelled() => {
                close(&mut sink, CloseCode::Again, "the app fell too far behind the other apps").await;
                break Err("disconnected as too slow".into());
            }
            Some(answer) = answers.next(), if !answers.is_empty() => {
                if let Some(resp) = answer {
                    if let Err(e) = write(&mut sink, ctx.write_deadline, mode.encode(&resp)).await {
                        break Err(e);
                    }
                }
            }
            Some(err) = reg.errors.recv() => {
                if let Err(e) = write(&mut sink, ctx.write_deadline, mode.encode(&ServerResponse::Error(err))).await {
                    break Err(e);
                }
            }
            next = hub.next_for(id) => {
                let Some((seq, d)) = next else {
                    // Unregistered by the hub (too slow): the kick branch
                    // says so on the next turn.
                    continue;
                };
                let frame = mode.encode(&ServerResponse::Received {
                    message: d.data.clone(),
                    sender_tag: d.sender_tag,
                });
                drop(d);
                if let Err(e) = write(&mut sink, ctx.write_deadline, frame).await {
                    break Err(e);
                }
                hub.written(id, seq);
            }
            incoming = source.next(), if answers.len() < MAX_IN_FLIGHT => {
                let frame = match incoming {
                    None | Some(Ok(Message::Close(_))) => {
                        // The app is done sending: what it asked before
                        // closing is still carried out (an app may send and
                        // close at once, as with nym-client).
                        let drained = tokio::time::timeout(DRAIN_DEADLINE, async {
                            while let Some(answer) = answers.next().await {
                                if let Some(resp) = answer {
                                    let _ = write(&mut sink, ctx.write_deadline, mode.encode(&resp)).await;
                                }
                            }
                        });
                        tokio::select! {
                            _ = ctx.cancel.cancelled() => {}
                            _ = drained => {}
                        }
                        break Ok(());
                    }
                    Some(Err(e)) => break Err(format!("read failed: {e}")),
                    Some(Ok(Message::Text(t))) => AppFrame::Text(t.as_str().to_owned()),
                    Some(Ok(Message::Binary(b))) => AppFrame::Binary(b.to_vec()),
                    // Ping/pong are answered by tungstenite; raw frames ignored.
                    Some(Ok(_)) => continue,
                };
                mode.observe(&frame);
                // What the session answers itself goes out at once, ahead
                // of answers the identity still owes (nym-client answers
                // `selfAddress` in every state too).
                let now = match frame.parse_request() {
                    Err(e) => ServerResponse::Error(e),
                    Ok(ClientRequest::SelfAddress) => ServerResponse::SelfAddress(ctx.address),
                    Ok(request) => {
                        answers.push_back(ask(id, request, ctx.commands.clone()));
                        continue;
                    }
                };
                if let Err(e) = write(&mut sink, ctx.write_deadline, mode.encode(&now)).await {
                    break Err(e);
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
