//! The control server against the fake backend, over real Unix sockets in
//! temp dirs. Every wait is bounded.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use nymd::control::fake::FakeBackend;
use nymd::control::socket::{self, BoundSocket, SocketError, SocketOptions, UMASK_LOCK};
use nymd::control::{server, AccessRules, ControlServerConfig, TierPolicy};
use nymd_ipc::client::{Client, ClientError};
use nymd_ipc::codec::{read_message, DEFAULT_MAX_FRAME_LEN};
use nymd_ipc::*;
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;
use tokio_util::sync::CancellationToken;

const LIMIT: Duration = Duration::from_secs(20);

/// A temp dir made while no socket is being bound: `bind` narrows the
/// process umask for an instant, and a folder created in that instant by a
/// parallel test would come out without its x bits.
fn tempdir() -> tempfile::TempDir {
    let _g = UMASK_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    tempfile::tempdir().expect("tempdir")
}

fn opts(path: PathBuf) -> SocketOptions {
    SocketOptions {
        path,
        mode: 0o660,
        group: None,
    }
}

struct Daemon {
    path: PathBuf,
    backend: FakeBackend,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    _bound: BoundSocket,
    _dir: tempfile::TempDir,
}

impl Daemon {
    async fn start(policy: TierPolicy) -> Self {
        Self::start_with(policy, FakeBackend::new(), |_| {}).await
    }

    async fn start_with(
        policy: TierPolicy,
        backend: FakeBackend,
        tweak: impl FnOnce(&mut ControlServerConfig),
    ) -> Self {
        let dir = tempdir();
        let path = dir.path().join("nymd.sock");
        let mut bound = socket::bind(&opts(path.clone())).expect("bind");
        let listener = bound.take_listener().expect("listener");
        let mut config = ControlServerConfig::new(policy);
        tweak(&mut config);
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(server::serve(
            listener,
            Arc::new(backend.clone()),
            config,
            shutdown.clone(),
        ));
        Self {
            path,
            backend,
            shutdown,
            task,
            _bound: bound,
            _dir: dir,
        }
    }

    async fn client(&self) -> Client {
        tokio::time::timeout(LIMIT, Client::connect(&self.path, "test"))
            .await
            .expect("in time")
            .expect("connect")
    }

    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(LIMIT, self.task)
            .await
            .expect("server stops in time")
            .expect("server task");
    }
}

fn operate_by_credentials() -> TierPolicy {
    TierPolicy::Credentials(AccessRules::for_this_process("nymd"))
}

async fn timed<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, f).await.expect("in time")
}

fn init(id: &str, port: Option<u16>) -> RequestBody {
    RequestBody::Init(InitRequest {
        id: id.into(),
        gateway: None,
        latency_based_selection: false,
        port,
        host: None,
        no_start: false,
        socks5: None,
    })
}

// === socket ===

#[test]
fn socket_is_created_0660_in_a_new_0755_folder_and_removed_on_drop() {
    let tmp = tempdir();
    let path = tmp.path().join("run/nymd/nymd.sock");
    let bound = socket::bind(&opts(path.clone())).expect("bind");
    let mode = std::fs::metadata(&path)
        .expect("socket")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o660);
    let dir_mode = std::fs::metadata(tmp.path().join("run/nymd"))
        .expect("dir")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(dir_mode, 0o755);
    drop(bound);
    assert!(!path.exists(), "the socket is removed on drop");
}

#[test]
fn a_live_socket_is_not_taken_over_and_a_stale_one_is_replaced() {
    let tmp = tempdir();
    let path = tmp.path().join("nymd.sock");
    let first = socket::bind(&opts(path.clone())).expect("bind");
    let err = socket::bind(&opts(path.clone())).expect_err("second daemon");
    assert!(matches!(err, SocketError::AlreadyRunning { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        format!("another nymd is already running on {}", path.display())
    );
    drop(first);

    // A crash leaves the file behind with nobody listening.
    drop(std::os::unix::net::UnixListener::bind(&path).expect("stale bind"));
    assert!(path.exists());
    let second = socket::bind(&opts(path.clone())).expect("stale socket replaced");
    drop(second);
    assert!(!path.exists());
}

#[test]
fn a_successors_socket_is_left_alone() {
    let tmp = tempdir();
    let path = tmp.path().join("nymd.sock");
    let first = socket::bind(&opts(path.clone())).expect("bind");
    // Someone removes our file and another daemon binds the path.
    std::fs::remove_file(&path).expect("rm");
    let second = socket::bind(&opts(path.clone())).expect("bind again");
    drop(first);
    assert!(
        path.exists(),
        "the first daemon must not remove the second's socket"
    );
    drop(second);
    assert!(!path.exists());
}

#[test]
fn a_regular_file_is_never_removed() {
    let tmp = tempdir();
    let path = tmp.path().join("nymd.sock");
    std::fs::write(&path, b"precious").expect("write");
    let err = socket::bind(&opts(path.clone())).expect_err("not a socket");
    assert!(matches!(err, SocketError::NotASocket { .. }), "{err}");
    assert_eq!(std::fs::read(&path).expect("still there"), b"precious");
}

#[test]
fn a_world_writable_folder_is_refused() {
    let tmp = tempdir();
    let dir = tmp.path().join("open");
    std::fs::create_dir(&dir).expect("mkdir");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let err = socket::bind(&opts(dir.join("nymd.sock"))).expect_err("insecure");
    assert!(matches!(err, SocketError::InsecureDir { .. }), "{err}");
}

// === protocol ===

#[tokio::test]
async fn same_user_operates_and_drives_an_identity() {
    let d = Daemon::start(operate_by_credentials()).await;
    let mut c = d.client().await;
    assert_eq!(c.welcome().tier, Tier::Operate);
    assert_eq!(c.welcome().protocol_version, PROTOCOL_VERSION);

    let r = timed(c.request(init("alice", Some(2000))))
        .await
        .expect("init");
    let ResponseBody::Identity(info) = r else {
        panic!("unexpected {r:?}")
    };
    assert_eq!(info.websocket_port, 2000);
    assert_eq!(info.state, IdentityState::Running);

    let dup = timed(c.request(init("alice", None)))
        .await
        .expect_err("dup");
    assert_eq!(dup.code(), Some(ErrorCode::AlreadyExists));
    let port = timed(c.request(init("bob", Some(2000))))
        .await
        .expect_err("port");
    assert_eq!(port.code(), Some(ErrorCode::PortInUse));
    let unknown = timed(c.request(RequestBody::Stop { id: "carol".into() }))
        .await
        .expect_err("unknown");
    assert_eq!(unknown.code(), Some(ErrorCode::NotFound));

    timed(c.request(RequestBody::Send(SendRequest {
        id: "alice".into(),
        to: "somebody".into(),
        message: b"hi".to_vec(),
    })))
    .await
    .expect("send");
    assert_eq!(d.backend.sent().len(), 1);

    let r = timed(c.request(RequestBody::List)).await.expect("list");
    assert!(matches!(r, ResponseBody::Identities(v) if v.len() == 1));
    timed(c.request(RequestBody::Remove { id: "alice".into() }))
        .await
        .expect("remove");
    d.stop().await;
}

#[tokio::test]
async fn observe_tier_reads_but_cannot_change() {
    let d = Daemon::start(TierPolicy::Fixed(Tier::Observe)).await;
    d.backend
        .insert(FakeBackend::identity("alice", 1977, "127.0.0.1", true));
    let mut c = d.client().await;
    assert_eq!(c.welcome().tier, Tier::Observe);
    timed(c.request(RequestBody::List))
        .await
        .expect("list is a read");
    timed(c.request(RequestBody::DaemonInfo))
        .await
        .expect("info is a read");
    for body in [
        init("bob", None),
        RequestBody::Stop { id: "alice".into() },
        RequestBody::Remove { id: "alice".into() },
        RequestBody::Shutdown,
    ] {
        let e = timed(c.request(body)).await.expect_err("denied");
        let ClientError::Remote(e) = e else {
            panic!("unexpected {e:?}")
        };
        assert_eq!(e.code, ErrorCode::PermissionDenied);
        assert!(e.hint.is_some());
    }
    // Nothing changed.
    assert!(!d.backend.shutdown_token().is_cancelled());
    let r = timed(c.request(RequestBody::Status {
        id: Some("alice".into()),
    }))
    .await
    .expect("status");
    assert!(matches!(r, ResponseBody::Identities(v) if v[0].state == IdentityState::Running));
    d.stop().await;
}

#[tokio::test]
async fn version_mismatch_is_refused_with_instructions() {
    let d = Daemon::start(operate_by_credentials()).await;
    let stream = UnixStream::connect(&d.path).await.expect("connect");
    let e = timed(Client::handshake(
        stream,
        "nymctl 9.0",
        PROTOCOL_VERSION + 1,
    ))
    .await
    .expect_err("mismatch");
    let ClientError::Remote(e) = e else {
        panic!("unexpected {e:?}")
    };
    assert_eq!(e.code, ErrorCode::VersionMismatch);
    assert!(e.message.contains("nymctl 9.0"), "{}", e.message);
    assert!(e.hint.is_some());
    d.stop().await;
}

#[tokio::test]
async fn request_before_hello_is_a_protocol_error() {
    let d = Daemon::start(operate_by_credentials()).await;
    let mut s = UnixStream::connect(&d.path).await.expect("connect");
    let frame = codec_frame(&ClientMessage::Request(Request {
        id: 1,
        body: RequestBody::List,
    }));
    s.write_all(&frame).await.expect("write");
    let m: Option<ServerMessage> = timed(read_message(&mut s, DEFAULT_MAX_FRAME_LEN))
        .await
        .expect("read");
    assert!(
        matches!(&m, Some(ServerMessage::Error(e)) if e.code == ErrorCode::ProtocolError),
        "{m:?}"
    );
    let end: Option<ServerMessage> = timed(read_message(&mut s, DEFAULT_MAX_FRAME_LEN))
        .await
        .expect("closed cleanly");
    assert_eq!(end, None);
    d.stop().await;
}

fn codec_frame<T: serde::Serialize>(m: &T) -> Vec<u8> {
    nymd_ipc::codec::encode_frame(m, DEFAULT_MAX_FRAME_LEN).expect("encode")
}

/// Garbage and oversized frames end that connection with an error; the
/// daemon keeps serving others.
#[tokio::test]
async fn bad_frames_close_the_connection_and_the_daemon_keeps_serving() {
    let d = Daemon::start(operate_by_credentials()).await;
    let hello = codec_frame(&ClientMessage::Hello(Hello {
        protocol_version: PROTOCOL_VERSION,
        client_name: "fuzzer".into(),
    }));
    let mut garbage = 4u32.to_be_bytes().to_vec();
    garbage.extend([0xc1, 0xff, 0x00, 0x93]);
    let oversized = u32::MAX.to_be_bytes().to_vec();
    for (what, bad) in [("garbage", garbage), ("oversized", oversized)] {
        for before_hello in [true, false] {
            let mut s = UnixStream::connect(&d.path).await.expect("connect");
            if !before_hello {
                s.write_all(&hello).await.expect("hello");
                let w: Option<ServerMessage> = timed(read_message(&mut s, DEFAULT_MAX_FRAME_LEN))
                    .await
                    .expect("welcome");
                assert!(matches!(w, Some(ServerMessage::Welcome(_))));
            }
            s.write_all(&bad).await.expect("write");
            let m: Option<ServerMessage> = timed(read_message(&mut s, DEFAULT_MAX_FRAME_LEN))
                .await
                .expect("read");
            assert!(
                matches!(&m, Some(ServerMessage::Error(e)) if e.code == ErrorCode::ProtocolError),
                "{what}: {m:?}"
            );
            let end: Option<ServerMessage> = timed(read_message(&mut s, DEFAULT_MAX_FRAME_LEN))
                .await
                .expect("closed");
            assert_eq!(end, None, "{what}: connection closed");
        }
    }
    // A torn frame (client dies mid-frame) is simply dropped.
    let mut s = UnixStream::connect(&d.path).await.expect("connect");
    s.write_all(&hello[..3]).await.expect("write");
    drop(s);
    // Still serving.
    let mut c = d.client().await;
    timed(c.request(RequestBody::List)).await.expect("list");
    d.stop().await;
}

#[tokio::test]
async fn a_silent_client_is_dropped_after_the_hello_timeout() {
    let d = Daemon::start_with(operate_by_credentials(), FakeBackend::new(), |c| {
        c.hello_timeout = Duration::from_millis(200);
    })
    .await;
    let mut s = UnixStream::connect(&d.path).await.expect("connect");
    let m: Option<ServerMessage> = timed(read_message(&mut s, DEFAULT_MAX_FRAME_LEN))
        .await
        .expect("read");
    assert!(
        matches!(&m, Some(ServerMessage::Error(e)) if e.code == ErrorCode::ProtocolError),
        "{m:?}"
    );
    d.stop().await;
}

/// A subscription gets its response, a snapshot, then events, while other
/// requests on the same connection are answered.
#[tokio::test]
async fn subscription_streams_alongside_requests() {
    let backend = FakeBackend::with_step_delay(Duration::from_millis(5));
    let d = Daemon::start_with(operate_by_credentials(), backend, |_| {}).await;
    let mut c = d.client().await;
    let sub = timed(c.request(RequestBody::Subscribe {
        identity: Some("alice".into()),
    }))
    .await
    .expect("subscribe");
    assert_eq!(sub, ResponseBody::Subscribed);
    let mut others = Vec::new();
    let r = timed(c.request_with(init("alice", None), |m| others.push(m)))
        .await
        .expect("init");
    assert!(matches!(r, ResponseBody::Identity(_)));
    // The snapshot came first (empty: alice did not exist), then progress.
    assert!(
        matches!(&others[0], ServerMessage::Snapshot { snapshot, .. } if snapshot.identities.is_empty()),
        "{others:?}"
    );
    let stages: Vec<InitStage> = others
        .iter()
        .filter_map(|m| match m {
            ServerMessage::Event {
                event: Event::InitProgress { stage, .. },
                ..
            } => Some(*stage),
            _ => None,
        })
        .collect();
    assert!(stages.contains(&InitStage::FetchingTopology), "{stages:?}");
    assert!(stages.contains(&InitStage::Registering), "{stages:?}");

    // Events of other identities are filtered out; daemon-wide ones pass.
    d.backend.emit(Event::IdentityRemoved {
        identity: "bob".into(),
    });
    d.backend.emit(Event::TopologyRefreshed(TopologyBrief {
        epoch: Some(2),
        layers: 3,
        mixnodes: 3,
        gateways: 1,
    }));
    loop {
        let m = timed(c.next_message()).await.expect("read").expect("open");
        match m {
            ServerMessage::Event {
                event: Event::TopologyRefreshed(_),
                ..
            } => break,
            ServerMessage::Event {
                event: Event::IdentityRemoved { identity },
                ..
            } => panic!("event of {identity} leaked through the filter"),
            _ => {}
        }
    }
    d.stop().await;
}

/// A subscriber that does not read never slows the daemon: publishing does
/// not wait, and the subscriber is told how much it missed.
#[tokio::test]
async fn a_slow_subscriber_gets_lagged_and_never_blocks_the_daemon() {
    let d = Daemon::start(operate_by_credentials()).await;
    let mut c = d.client().await;
    timed(c.request(RequestBody::Subscribe { identity: None }))
        .await
        .expect("subscribe");
    let counters = TrafficCounters {
        real_packets_sent: 1,
        ..TrafficCounters::default()
    };
    // Far more than the broadcast capacity, the outbound queue and the
    // socket buffers together.
    let started = std::time::Instant::now();
    for _ in 0..50_000 {
        d.backend.emit(Event::Traffic {
            identity: "alice".into(),
            counters,
            socks5: None,
        });
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "publishing waited"
    );
    let mut missed = 0;
    let mut events = 0u64;
    while missed == 0 {
        match timed(c.next_message()).await.expect("read").expect("open") {
            ServerMessage::Lagged { missed: m, .. } => missed = m,
            ServerMessage::Event { .. } => events += 1,
            _ => {}
        }
    }
    assert!(
        missed > 0 && events < 50_000,
        "missed {missed}, got {events}"
    );
    // The connection still works.
    timed(c.request(RequestBody::List)).await.expect("list");
    d.stop().await;
}

#[tokio::test]
async fn shutdown_request_is_answered_then_the_backend_stops() {
    let d = Daemon::start(operate_by_credentials()).await;
    let mut c = d.client().await;
    timed(c.request(RequestBody::Shutdown))
        .await
        .expect("shutdown");
    timed(d.backend.shutdown_token().cancelled()).await;
    d.stop().await;
}

#[tokio::test]
async fn server_shutdown_closes_connections_in_time() {
    let d = Daemon::start(operate_by_credentials()).await;
    let mut c = d.client().await;
    timed(c.request(RequestBody::Subscribe { identity: None }))
        .await
        .expect("subscribe");
    d.stop().await;
    // The subscription ends with the connection.
    while let Ok(Some(_)) = timed(c.next_message()).await {}
}
