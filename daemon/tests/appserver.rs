//! The app websocket server over real sockets, with a stand-in identity actor
//! that answers requests the way the real one does.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use nymd::appserver::access::ConnectionLimit;
use nymd::appserver::{serve, AppCommand, AppHub, AppServerConfig, Delivery};
use nymd::store::WebsocketConfig;
use nymd_proto::appapi::{ClientRequest, ServerResponse};
use nymd_proto::{Recipient, SenderTag};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

const ADDR: &str = "CytBseW6yFXUMzz4SGAKdNLGR7q3sJLLYxyBGvutNEQV.4QXYyEVc5fUDjmmi8PrHN9tdUFV4PCvSJE1278cHyvoe@4sBbL1ngf1vtNqykydQKTFh26sQCw888GpUqvPvyNB4f";
const T: Duration = Duration::from_secs(10);

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

struct Server {
    url: String,
    hub: Arc<AppHub>,
    cancel: CancellationToken,
    tracker: TaskTracker,
}

async fn start(allow_multiple_apps: bool) -> Server {
    start_with(WebsocketConfig {
        allow_multiple_apps,
        ..WebsocketConfig::new([127, 0, 0, 1].into(), 0, None)
    })
    .await
}

async fn start_with(websocket: WebsocketConfig) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("ws://{}", listener.local_addr().expect("addr"));
    let hub = AppHub::new(100);
    let (tx, mut rx) = mpsc::channel::<Box<AppCommand>>(16);
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    tracker.spawn(serve(
        listener,
        AppServerConfig {
            websocket,
            address: ADDR.parse().expect("addr"),
            identity: "test".into(),
        },
        ConnectionLimit::new(100),
        hub.clone(),
        tx,
        cancel.clone(),
        tracker.clone(),
    ));
    // Stand-in identity actor.
    let me: Recipient = ADDR.parse().expect("addr");
    tracker.spawn(async move {
        while let Some(cmd) = rx.recv().await {
            let resp = match cmd.request {
                ClientRequest::SelfAddress => Some(ServerResponse::SelfAddress(me)),
                ClientRequest::Send { connection_id, .. }
                | ClientRequest::SendAnonymous { connection_id, .. }
                | ClientRequest::Reply { connection_id, .. } => {
                    connection_id.map(|lane| ServerResponse::LaneQueueLength {
                        lane,
                        queue_length: 0,
                    })
                }
                ClientRequest::GetLaneQueueLength(lane) => Some(ServerResponse::LaneQueueLength {
                    lane,
                    queue_length: 0,
                }),
                ClientRequest::ClosedConnection(_) => None,
            };
            let _ = cmd.respond.send(resp);
        }
    });
    Server {
        url,
        hub,
        cancel,
        tracker,
    }
}

impl Server {
    async fn stop(self) {
        self.cancel.cancel();
        self.tracker.close();
        tokio::time::timeout(T, self.tracker.wait())
            .await
            .expect("server tasks end");
    }
}

async fn connect(url: &str) -> Ws {
    tokio::time::timeout(T, tokio_tungstenite::connect_async(url))
        .await
        .expect("connect in time")
        .expect("connect")
        .0
}

async fn next(ws: &mut Ws) -> Message {
    loop {
        let m = tokio::time::timeout(T, ws.next())
            .await
            .expect("message in time")
            .expect("stream open")
            .expect("no error");
        if !matches!(m, Message::Ping(_) | Message::Pong(_)) {
            return m;
        }
    }
}

async fn wait_apps(hub: &AppHub, n: usize) {
    tokio::time::timeout(T, async {
        while hub.connected_apps() != n {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("app count reached");
}

#[tokio::test]
async fn text_and_binary_requests_get_answers_in_their_own_mode() {
    let s = start(true).await;
    let mut ws = connect(&s.url).await;
    ws.send(Message::Text(r#"{"type":"selfAddress"}"#.into()))
        .await
        .expect("send");
    match next(&mut ws).await {
        Message::Text(t) => assert_eq!(
            t.as_str(),
            format!(r#"{{"type":"selfAddress","address":"{ADDR}"}}"#)
        ),
        other => panic!("expected text, got {other:?}"),
    }
    ws.send(Message::Binary(vec![0x03].into()))
        .await
        .expect("send");
    match next(&mut ws).await {
        Message::Binary(b) => {
            assert_eq!(b[0], 0x02);
            assert_eq!(b.len(), 97);
        }
        other => panic!("expected binary, got {other:?}"),
    }
    // Malformed JSON: a text error, and the session stays usable.
    ws.send(Message::Text("not json".into()))
        .await
        .expect("send");
    match next(&mut ws).await {
        Message::Text(t) => assert!(
            t.as_str()
                .starts_with(r#"{"type":"error","message":"malformed request:"#),
            "{t}"
        ),
        other => panic!("expected text error, got {other:?}"),
    }
    // Malformed binary: a binary error (kind byte after tag 0).
    ws.send(Message::Binary(vec![0x09].into()))
        .await
        .expect("send");
    match next(&mut ws).await {
        Message::Binary(b) => assert_eq!(&b[..2], &[0x00, 0x03]),
        other => panic!("expected binary error, got {other:?}"),
    }
    // A text send with a connection id answers laneQueueLength.
    ws.send(Message::Text(
        format!(r#"{{"type":"send","message":"hi","recipient":"{ADDR}","connectionId":0}}"#).into(),
    ))
    .await
    .expect("send");
    match next(&mut ws).await {
        Message::Text(t) => assert_eq!(
            t.as_str(),
            r#"{"type":"laneQueueLength","lane":0,"queue_length":0}"#
        ),
        other => panic!("unexpected {other:?}"),
    }
    s.stop().await;
}

#[tokio::test]
async fn deliveries_reach_every_app_in_its_mode_and_survive_a_disconnect() {
    let s = start(true).await;
    let mut a = connect(&s.url).await;
    let mut b = connect(&s.url).await;
    wait_apps(&s.hub, 2).await;
    // Put `b` in text mode.
    b.send(Message::Text(r#"{"type":"selfAddress"}"#.into()))
        .await
        .expect("send");
    let _ = next(&mut b).await;
    s.hub.deliver(Delivery {
        data: b"foomp".to_vec(),
        sender_tag: Some(SenderTag([0x2a; 16])),
    });
    match next(&mut a).await {
        Message::Binary(bytes) => assert_eq!(
            hex(&bytes),
            "01012a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a0000000000000005666f6f6d70"
        ),
        other => panic!("unexpected {other:?}"),
    }
    match next(&mut b).await {
        Message::Text(t) => assert_eq!(
            t.as_str(),
            r#"{"type":"received","message":"foomp","senderTag":"6CzGHguLGCk1f416kwDZB7"}"#
        ),
        other => panic!("unexpected {other:?}"),
    }
    a.close(None).await.expect("close");
    wait_apps(&s.hub, 1).await;
    s.hub.deliver(Delivery {
        data: b"second".to_vec(),
        sender_tag: None,
    });
    match next(&mut b).await {
        Message::Text(t) => assert_eq!(
            t.as_str(),
            r#"{"type":"received","message":"second","senderTag":null}"#
        ),
        other => panic!("unexpected {other:?}"),
    }
    s.stop().await;
}

#[tokio::test]
async fn messages_wait_for_the_first_app() {
    let s = start(true).await;
    for i in 0..3u8 {
        s.hub.deliver(Delivery {
            data: vec![i],
            sender_tag: None,
        });
    }
    assert_eq!(s.hub.pending(), 3);
    let mut a = connect(&s.url).await;
    for i in 0..3u8 {
        match next(&mut a).await {
            Message::Binary(b) => assert_eq!(b.last(), Some(&i)),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(s.hub.pending(), 0);
    s.stop().await;
}

/// An app that stops reading is closed once one write waited
/// `write_timeout_secs`; what it was not given waits for the next app,
/// which gets it in order.
#[tokio::test]
async fn an_app_that_stops_reading_is_closed_after_the_write_timeout() {
    let s = start_with(WebsocketConfig {
        write_timeout_secs: 1,
        ..WebsocketConfig::new([127, 0, 0, 1].into(), 0, None)
    })
    .await;
    // Connects, never reads.
    let stuck = connect(&s.url).await;
    wait_apps(&s.hub, 1).await;
    // 48 MiB: more than the socket buffers between the two can hold.
    const N: u8 = 48;
    for i in 0..N {
        let mut data = vec![0u8; 1 << 20];
        data[0] = i;
        s.hub.deliver(Delivery {
            data,
            sender_tag: None,
        });
    }
    tokio::time::timeout(Duration::from_secs(30), async {
        while s.hub.connected_apps() != 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the app that stopped reading was closed");
    let left = s.hub.pending();
    assert!(
        left > 0 && left < usize::from(N),
        "some messages were written, the rest wait: {left} of {N}"
    );
    drop(stuck);
    let mut next_app = connect(&s.url).await;
    let first = usize::from(N) - left;
    for i in first..usize::from(N) {
        match next(&mut next_app).await {
            Message::Binary(b) => assert_eq!(
                b.get(10).copied(),
                u8::try_from(i).ok(),
                "message {i} in order"
            ),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(s.hub.pending(), 0);
    s.stop().await;
}

#[tokio::test]
async fn garbage_and_silent_tcp_clients_do_not_disturb_apps() {
    let s = start(true).await;
    let addr = s.url.trim_start_matches("ws://").to_string();
    // One client connects and says nothing; another sends garbage and leaves.
    let _silent = TcpStream::connect(&addr).await.expect("tcp");
    let mut garbage = TcpStream::connect(&addr).await.expect("tcp");
    garbage
        .write_all(b"\x16\x03\x01 definitely not http\r\n\r\n")
        .await
        .expect("write");
    drop(garbage);
    let mut app = connect(&s.url).await;
    app.send(Message::Binary(vec![0x03].into()))
        .await
        .expect("send");
    assert!(matches!(next(&mut app).await, Message::Binary(_)));
    s.stop().await;
}

#[tokio::test]
async fn one_app_mode_refuses_a_second_app() {
    let s = start(false).await;
    let mut first = connect(&s.url).await;
    wait_apps(&s.hub, 1).await;
    let second = tokio::time::timeout(T, tokio_tungstenite::connect_async(&s.url))
        .await
        .expect("answer in time");
    assert!(second.is_err(), "second app must be refused");
    first
        .send(Message::Binary(vec![0x03].into()))
        .await
        .expect("send");
    assert!(matches!(next(&mut first).await, Message::Binary(_)));
    first.close(None).await.expect("close");
    wait_apps(&s.hub, 0).await;
    let _third = connect(&s.url).await;
    s.stop().await;
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
