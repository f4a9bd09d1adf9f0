//! nymctl as an app on an identity's websocket port: `listen`, `send
//! --reply-surbs` and `reply`.
//!
//! These speak nym-client's app API, binary form, on the port the control
//! socket names (`Status`), as a tap ([`nymd_proto::appapi::TAP_QUERY`]):
//! nymd fans every received message out to every connected app, and what it
//! writes to a tap stays for the identity's apps. So nymctl needs no
//! control-plane path to the messages, and may reach them exactly when any
//! app of the identity may: nymd checks the connecting user against the
//! identity's allowed users before the handshake.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use nymd_ipc::client::Client;
use nymd_ipc::{IdentityInfo, IdentityState, RequestBody, ResponseBody};
use nymd_proto::appapi::{AppFrame, ClientRequest, ServerResponse, TAP_QUERY};
use nymd_proto::SenderTag;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::cli::exit;
use crate::Failure;

/// Time to connect to the port and complete the handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time the identity may take to queue a message: nymd keeps an app's
/// requests for up to 30 s while the identity connects.
const QUEUE_TIMEOUT: Duration = Duration::from_secs(40);
/// After a message is queued, how long to wait for an error the identity
/// reports later (a reply to a tag it has no SURBs from).
const LINGER: Duration = Duration::from_millis(1500);
/// The connection id nymctl's sends use (its own lane; it gets a queue
/// length back, which says the identity took the message).
const LANE: u64 = 1;

/// A message that arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The payload.
    pub message: Vec<u8>,
    /// Present when the sender used `sendAnonymous`.
    pub sender_tag: Option<SenderTag>,
}

/// A connection to an identity's websocket port.
#[derive(Debug)]
pub struct AppConn {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    id: String,
    endpoint: SocketAddr,
}

fn failure(exit: u8, code: &'static str, message: String, hint: Option<String>) -> Failure {
    Failure {
        exit,
        code,
        message,
        hint,
    }
}

/// Where to connect for a port listening on `host`: the loopback address
/// of the same family when it listens on all addresses.
fn endpoint(info: &IdentityInfo) -> anyhow::Result<SocketAddr> {
    let ip: IpAddr = info.websocket_host.parse().map_err(|_| {
        anyhow::anyhow!(
            "nymd reports websocket host {:?} for '{}', which is not an IP address",
            info.websocket_host,
            info.id
        )
    })?;
    let ip = match ip {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    Ok(SocketAddr::new(ip, info.websocket_port))
}

fn denied(id: &str, endpoint: SocketAddr, detail: &str) -> Failure {
    let uid = nix::unistd::geteuid();
    failure(
        exit::PERMISSION,
        "AppRefused",
        format!(
            "nymd closed the connection to '{id}''s websocket port ({endpoint}) before the handshake ({detail}): your user (uid {uid}) may not connect to '{id}', or '{id}' has as many apps connected as it allows"
        ),
        Some(format!(
            "nymctl access {id} shows who may connect; the identity's owner or root can let you in with nymctl access {id} --allow-user {uid}; also check max_apps and allow_multiple_apps in its config.toml"
        )),
    )
}

impl AppConn {
    /// Look up `id`'s port over the control socket and connect to it as a
    /// tap, in binary mode. Returns the messages that arrived before the
    /// session was confirmed (by a `selfAddress` round trip), in order.
    pub async fn connect(client: &mut Client, id: &str) -> anyhow::Result<(Self, Vec<Received>)> {
        let info = match client
            .request(RequestBody::Status {
                id: Some(id.to_owned()),
            })
            .await?
        {
            ResponseBody::Identities(v) => v.into_iter().next().ok_or_else(|| {
                anyhow::anyhow!("nymd answered the status of '{id}' with no identity")
            })?,
            other => anyhow::bail!("unexpected answer from nymd: {other:?}"),
        };
        if matches!(info.state, IdentityState::Stopped) {
            return Err(failure(
                exit::OTHER,
                "NotRunning",
                format!("identity '{id}' is stopped: its websocket port is closed"),
                Some(format!("start it: nymctl start {id}")),
            )
            .into());
        }
        let endpoint = endpoint(&info)?;
        let url = format!("ws://{endpoint}/?{TAP_QUERY}");
        let ws = match tokio::time::timeout(CONNECT_TIMEOUT, async {
            let tcp = TcpStream::connect(endpoint).await?;
            let _ = tcp.set_nodelay(true);
            tokio_tungstenite::client_async(url.as_str(), MaybeTlsStream::Plain(tcp))
                .await
                .map(|(ws, _)| ws)
                .map_err(|e| match e {
                    tungstenite::Error::Io(io) => io,
                    other => std::io::Error::other(other),
                })
        })
        .await
        {
            Err(_) => {
                return Err(failure(
                    exit::OTHER,
                    "AppTimeout",
                    format!(
                        "'{id}''s websocket port ({endpoint}) did not complete the handshake within {} s",
                        CONNECT_TIMEOUT.as_secs()
                    ),
                    None,
                )
                .into())
            }
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                return Err(failure(
                    exit::OTHER,
                    "NotListening",
                    format!(
                        "nothing listens on '{id}''s websocket port ({endpoint}); the identity is {}",
                        crate::output::state(&info.state)
                    ),
                    Some(format!(
                        "nymctl status {id} says why; nymctl restart {id} starts it again"
                    )),
                )
                .into())
            }
            Ok(Err(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::UnexpectedEof
                        | std::io::ErrorKind::ConnectionReset
                        | std::io::ErrorKind::BrokenPipe
                ) =>
            {
                return Err(denied(id, endpoint, &e.to_string()).into());
            }
            Ok(Err(e)) => {
                // A close before the handshake shows as a protocol error
                // ("handshake not finished") too.
                let text = e.to_string();
                if text.contains("andshake") {
                    return Err(denied(id, endpoint, &text).into());
                }
                return Err(anyhow::anyhow!(
                    "cannot connect to '{id}''s websocket port ({endpoint}): {text}"
                ));
            }
            Ok(Ok(ws)) => ws,
        };
        let mut conn = Self {
            ws,
            id: id.to_owned(),
            endpoint,
        };
        let early = conn.confirm().await?;
        Ok((conn, early))
    }

    /// The port's address.
    pub fn endpoint(&self) -> SocketAddr {
        self.endpoint
    }

    async fn write(&mut self, req: &ClientRequest) -> anyhow::Result<()> {
        self.ws
            .send(Message::Binary(req.to_binary().into()))
            .await
            .map_err(|e| self.closed(Some(e.to_string())).into())
    }

    fn closed(&self, detail: Option<String>) -> Failure {
        let id = &self.id;
        failure(
            exit::OTHER,
            "AppClosed",
            match detail {
                Some(d) => format!("'{id}''s websocket port closed the connection: {d}"),
                None => format!(
                    "'{id}''s websocket port closed the connection: the identity stopped or restarted, or nymd is shutting down"
                ),
            },
            Some(format!("nymctl status {id}")),
        )
    }

    /// The next response or message; `Err` when the port closed.
    pub async fn next(&mut self) -> anyhow::Result<ServerResponse> {
        loop {
            let frame = match self.ws.next().await {
                None => return Err(self.closed(None).into()),
                Some(Err(e)) => return Err(self.closed(Some(e.to_string())).into()),
                Some(Ok(Message::Close(c))) => {
                    return Err(self
                        .closed(c.map(|c| c.reason.to_string()).filter(|r| !r.is_empty()))
                        .into())
                }
                Some(Ok(Message::Binary(b))) => AppFrame::Binary(b.to_vec()),
                Some(Ok(Message::Text(t))) => AppFrame::Text(t.as_str().to_owned()),
                Some(Ok(_)) => continue,
            };
            return frame.parse_response().map_err(|e| {
                anyhow::anyhow!(
                    "'{}''s websocket port sent a frame nymctl cannot read: {e}",
                    self.id
                )
            });
        }
    }

    /// A binary `selfAddress` round trip: once it is answered, the session
    /// is registered (and in binary mode). Messages that came first are
    /// returned.
    async fn confirm(&mut self) -> anyhow::Result<Vec<Received>> {
        self.write(&ClientRequest::SelfAddress).await?;
        let mut early = Vec::new();
        let id = self.id.clone();
        let wait = async {
            loop {
                match self.next().await? {
                    ServerResponse::SelfAddress(_) => return Ok::<_, anyhow::Error>(()),
                    ServerResponse::Received {
                        message,
                        sender_tag,
                    } => early.push(Received {
                        message,
                        sender_tag,
                    }),
                    ServerResponse::Error(e) => {
                        anyhow::bail!(
                            "'{id}''s websocket port answered selfAddress with an error: {e}"
                        )
                    }
                    ServerResponse::LaneQueueLength { .. } => {}
                }
            }
        };
        tokio::time::timeout(CONNECT_TIMEOUT, wait)
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "'{id}''s websocket port did not answer selfAddress within {} s",
                    CONNECT_TIMEOUT.as_secs()
                )
            })??;
        Ok(early)
    }

    /// Hand a send, sendAnonymous or reply (its connection id is set here)
    /// to the identity and wait until it has queued it; then wait
    /// [`LINGER`] for an error it reports later. Received messages are
    /// ignored (they stay for the identity's apps).
    pub async fn submit(&mut self, mut req: ClientRequest) -> anyhow::Result<()> {
        match &mut req {
            ClientRequest::Send { connection_id, .. }
            | ClientRequest::SendAnonymous { connection_id, .. }
            | ClientRequest::Reply { connection_id, .. } => *connection_id = Some(LANE),
            _ => {}
        }
        self.write(&req).await?;
        let id = self.id.clone();
        let refused = |e: nymd_proto::appapi::ApiError| {
            failure(
                exit::OTHER,
                "NotSent",
                format!("'{id}' did not send the message: {}", e.message),
                None,
            )
        };
        let queued = async {
            loop {
                match self.next().await? {
                    ServerResponse::LaneQueueLength { lane: LANE, .. } => {
                        return Ok::<(), anyhow::Error>(())
                    }
                    ServerResponse::Error(e) => return Err(refused(e).into()),
                    _ => {}
                }
            }
        };
        match tokio::time::timeout(QUEUE_TIMEOUT, queued).await {
            Err(_) => anyhow::bail!(
                "'{}' did not take the message within {} s",
                self.id,
                QUEUE_TIMEOUT.as_secs()
            ),
            Ok(r) => r?,
        }
        let later = async {
            loop {
                if let ServerResponse::Error(e) = self.next().await? {
                    return Err::<(), anyhow::Error>(refused(e).into());
                }
            }
        };
        match tokio::time::timeout(LINGER, later).await {
            Err(_) => Ok(()),
            Ok(r) => r,
        }
    }

    /// Close the websocket (what was queued is sent regardless).
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), self.ws.close(None)).await;
    }
}

/// One received message as a line of text: the payload as UTF-8 (invalid
/// bytes as U+FFFD) with control characters escaped, so one message is
/// one line and cannot drive the terminal; an anonymous sender's tag first,
/// in brackets.
pub fn text_line(r: &Received) -> String {
    let mut out = String::new();
    if let Some(tag) = r.sender_tag {
        out.push_str(&format!("[{tag}] "));
    }
    for c in String::from_utf8_lossy(&r.message).chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_lines_escape_controls_and_show_tags() {
        let r = Received {
            message: b"a\nb\x1b[31m\xffc".to_vec(),
            sender_tag: None,
        };
        assert_eq!(text_line(&r), "a\\nb\\u{1b}[31m\u{fffd}c\n");
        let r = Received {
            message: "grüße".as_bytes().to_vec(),
            sender_tag: Some(SenderTag([42; 16])),
        };
        assert_eq!(text_line(&r), "[6CzGHguLGCk1f416kwDZB7] grüße\n");
    }
}
