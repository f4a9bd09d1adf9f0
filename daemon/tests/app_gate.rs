//! Who may connect to an app port, and how many, over real sockets: the
//! browser origin check, the per-identity and daemon-wide connection
//! limits, and requests that must not cost more than their size (deep JSON
//! nesting, too many reply SURBs). The user check needs a second uid and is
//! tested end to end in `tests/tests/app_access.rs`.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use nymd::appserver::access::ConnectionLimit;
use nymd::appserver::server::serve;
use nymd::appserver::{AppCommand, AppHub, AppServerConfig};
use nymd::store::WebsocketConfig;
use nymd_proto::appapi::{ClientRequest, ServerResponse};
use nymd_proto::Recipient;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

const ADDR: &str = "CytBseW6yFXUMzz4SGAKdNLGR7q3sJLLYxyBGvutNEQV.4QXYyEVc5fUDjmmi8PrHN9tdUFV4PCvSJE1278cHyvoe@4sBbL1ngf1vtNqykydQKTFh26sQCw888GpUqvPvyNB4f";
/// Bound of every wait (a loaded 2-core machine is slow; nothing is timed).
const T: Duration = Duration::from_secs(30);

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

struct Server {
    addr: String,
    cancel: CancellationToken,
    tracker: TaskTracker,
}

/// An app server with `ws` settings counting against `daemon_limit`, and a
/// stand-in identity actor that answers sends with nothing.
async fn start(ws: WebsocketConfig, daemon_limit: Arc<ConnectionLimit>) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let (tx, mut rx) = mpsc::channel::<Box<AppCommand>>(16);
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    tracker.spawn(serve(
        listener,
        AppServerConfig {
            websocket: ws,
            address: ADDR.parse().expect("addr"),
            identity: "gate".into(),
        },
        daemon_limit,
        AppHub::new(100),
        tx,
        cancel.clone(),
        tracker.clone(),
    ));
    let me: Recipient = ADDR.parse().expect("addr");
    tracker.spawn(async move {
        while let Some(cmd) = rx.recv().await {
            let resp = match cmd.request {
                ClientRequest::SelfAddress => Some(ServerResponse::SelfAddress(me)),
                _ => None,
            };
            let _ = cmd.respond.send(resp);
        }
    });
    Server {
        addr,
        cancel,
        tracker,
    }
}

fn settings() -> WebsocketConfig {
    WebsocketConfig::new([127, 0, 0, 1].into(), 0, None)
}

impl Server {
    async fn stop(self) {
        self.cancel.cancel();
        self.tracker.close();
        tokio::time::timeout(T, self.tracker.wait())
            .await
            .expect("server tasks end");
    }

    fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }
}

/// A raw upgrade request, optionally with an `Origin` header; returns the
/// status line of the answer, or an empty string if the server closed the
/// connection without one.
async fn upgrade(addr: &str, origin: Option<&str>) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let origin = origin
        .map(|o| format!("Origin: {o}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{origin}\r\n"
    );
    // The server may already have closed a refused connection.
    let _ = s.write_all(req.as_bytes()).await;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        // A reset counts as closed.
        let n = tokio::time::timeout(T, s.read(&mut chunk))
            .await
            .expect("an answer or a close in time")
            .unwrap_or_default();
        buf.extend_from_slice(&chunk[..n]);
        if n == 0 || buf.windows(2).any(|w| w == b"\r\n") {
            break;
        }
    }
    let text = String::from_utf8_lossy(&buf);
    text.lines().next().unwrap_or_default().to_owned()
}

async fn connect(url: &str) -> Ws {
    tokio::time::timeout(T, tokio_tungstenite::connect_async(url))
        .await
        .expect("connect in time")
        .expect("connect")
        .0
}

async fn next_text(ws: &mut Ws) -> String {
    loop {
        let m = tokio::time::timeout(T, ws.next())
            .await
            .expect("a message in time")
            .expect("stream open")
            .expect("no error");
        match m {
            Message::Text(t) => return t.as_str().to_owned(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected text, got {other:?}"),
        }
    }
}

async fn self_address(ws: &mut Ws) {
    ws.send(Message::Text(r#"{"type":"selfAddress"}"#.into()))
        .await
        .expect("send");
    let t = next_text(ws).await;
    assert!(t.contains(r#""type":"selfAddress""#), "{t}");
}

#[tokio::test]
async fn browser_pages_need_an_allowed_origin() {
    let s = start(
        WebsocketConfig {
            allowed_origins: vec!["http://localhost:8080".into()],
            ..settings()
        },
        ConnectionLimit::new(100),
    )
    .await;
    assert!(
        upgrade(&s.addr, Some("http://evil.example"))
            .await
            .contains(" 403 "),
        "a page of another origin is refused"
    );
    assert!(upgrade(&s.addr, Some("http://localhost:8080"))
        .await
        .contains(" 101 "));
    // Apps that are not browsers send no Origin: unaffected.
    assert!(upgrade(&s.addr, None).await.contains(" 101 "));
    let mut app = connect(&s.url()).await;
    self_address(&mut app).await;
    s.stop().await;
}

#[tokio::test]
async fn one_connection_over_max_apps_is_closed_and_the_others_keep_working() {
    let s = start(
        WebsocketConfig {
            max_apps: Some(2),
            ..settings()
        },
        ConnectionLimit::new(100),
    )
    .await;
    let mut a = connect(&s.url()).await;
    let mut b = connect(&s.url()).await;
    assert_eq!(upgrade(&s.addr, None).await, "", "the third is closed");
    self_address(&mut a).await;
    self_address(&mut b).await;
    // A place frees up when an app leaves.
    a.close(None).await.expect("close");
    drop(a);
    let mut c = tokio::time::timeout(T, async {
        loop {
            if let Ok((ws, _)) = tokio_tungstenite::connect_async(s.url()).await {
                break ws;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("room again after an app left");
    self_address(&mut c).await;
    self_address(&mut b).await;
    s.stop().await;
}

#[tokio::test]
async fn the_daemon_wide_limit_is_shared_by_every_port() {
    let shared = ConnectionLimit::new(2);
    let s1 = start(settings(), shared.clone()).await;
    let s2 = start(settings(), shared.clone()).await;
    let mut a = connect(&s1.url()).await;
    let mut b = connect(&s2.url()).await;
    assert_eq!(upgrade(&s1.addr, None).await, "");
    assert_eq!(upgrade(&s2.addr, None).await, "");
    self_address(&mut a).await;
    self_address(&mut b).await;
    assert_eq!(shared.open(), 2);
    s1.stop().await;
    s2.stop().await;
    drop((a, b));
}

#[tokio::test]
async fn deep_json_nesting_is_an_error_and_the_port_keeps_serving() {
    let s = start(settings(), ConnectionLimit::new(100)).await;
    let mut app = connect(&s.url()).await;
    // 1 MiB of nesting in the message field: serde_json stops at its
    // recursion limit instead of recursing (or allocating) per level.
    let depth = 512 * 1024;
    let mut text = String::with_capacity(2 * depth + 200);
    text.push_str(r#"{"type":"send","recipient":"x","message":"#);
    text.extend(std::iter::repeat_n('[', depth));
    text.extend(std::iter::repeat_n(']', depth));
    text.push('}');
    app.send(Message::Text(text.into())).await.expect("send");
    let t = next_text(&mut app).await;
    assert!(
        t.starts_with(r#"{"type":"error","message":"malformed request:"#)
            && t.contains("recursion limit"),
        "{t}"
    );
    self_address(&mut app).await;
    let mut other = connect(&s.url()).await;
    self_address(&mut other).await;
    s.stop().await;
}

#[tokio::test]
async fn more_than_500_reply_surbs_is_an_error() {
    let s = start(settings(), ConnectionLimit::new(100)).await;
    let mut app = connect(&s.url()).await;
    app.send(Message::Text(
        format!(
            r#"{{"type":"sendAnonymous","message":"x","recipient":"{ADDR}","replySurbs":501}}"#
        )
        .into(),
    ))
    .await
    .expect("send");
    let t = next_text(&mut app).await;
    assert!(
        t.starts_with(r#"{"type":"error","message":"malformed request:"#) && t.contains("500"),
        "{t}"
    );
    self_address(&mut app).await;
    s.stop().await;
}
