//! App-side websocket clients speaking nym-client's API.

use std::time::Duration;

use anyhow::{bail, Context};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use nymd_proto::appapi::{AppFrame, ClientRequest, ServerResponse};
use nymd_proto::Recipient;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Connect to an identity's websocket (retrying while it comes up).
pub async fn connect(addr: &str) -> anyhow::Result<Ws> {
    let url = format!("ws://{addr}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match tokio_tungstenite::connect_async(&url).await {
            Ok((ws, _)) => return Ok(ws),
            Err(e) => {
                if tokio::time::Instant::now() > deadline {
                    bail!("cannot connect to {url}: {e}");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Sending half.
pub struct Sender {
    sink: SplitSink<Ws, Message>,
}

/// Receiving half.
pub struct Receiver {
    stream: SplitStream<Ws>,
}

/// Connect and split.
pub async fn open(addr: &str) -> anyhow::Result<(Sender, Receiver)> {
    let (sink, stream) = connect(addr).await?.split();
    Ok((Sender { sink }, Receiver { stream }))
}

impl Sender {
    /// Send `message` to `recipient` (binary request, general lane).
    pub async fn send(&mut self, recipient: &Recipient, message: Vec<u8>) -> anyhow::Result<()> {
        let req = ClientRequest::Send {
            recipient: *recipient,
            message,
            connection_id: None,
        };
        self.sink
            .send(Message::Binary(req.to_binary().into()))
            .await
            .context("websocket send")
    }
}

impl Receiver {
    /// The next received message's payload (other responses skipped).
    pub async fn next_message(&mut self) -> anyhow::Result<Vec<u8>> {
        loop {
            let msg = self
                .stream
                .next()
                .await
                .context("websocket closed")?
                .context("websocket error")?;
            let frame = match msg {
                Message::Binary(b) => AppFrame::Binary(b.to_vec()),
                Message::Text(t) => AppFrame::Text(t.as_str().to_owned()),
                Message::Close(_) => bail!("websocket closed"),
                _ => continue,
            };
            match frame.parse_response() {
                Ok(ServerResponse::Received { message, .. }) => return Ok(message),
                Ok(ServerResponse::Error(e)) => bail!("nymd error: {e:?}"),
                _ => continue,
            }
        }
    }
}
