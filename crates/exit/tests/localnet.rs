//! The exit on the embedded local mixnet: a network requester on a gateway,
//! a plain nymd-mixnet client playing the SOCKS side with nymd-proto's
//! byte layer, and real TCP targets on 127.0.0.1 (ephemeral ports). Every
//! wait is bounded; nothing asserts on timing.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use nymd_exit::{ExitConfig, ExitPolicy, NetworkRequester};
use nymd_localnet::{DelayPolicy, Localnet, LocalnetConfig};
use nymd_mixnet::{
    register_with, start, ClientConfig, ClientEvent, ClientHandle, ClientKeys, GatewaySelection,
    Lane, OutgoingMessage, Shared, SharedConfig, TopologySource, Url,
};
use nymd_proto::socks5::ordered::{OrderedReceiver, OrderedSender};
use nymd_proto::socks5::query::{PolicyAction, QueryRequest, QueryResponse};
use nymd_proto::socks5::{
    ConnectRequest, ConnectionId, ControlRequest, ControlResponse, ProviderRequest,
    ProviderResponse, SocketData, Socks5Request, Socks5Response, Version, Versions,
};
use nymd_proto::Recipient;
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::mpsc::Receiver;
use tokio_util::sync::CancellationToken;

/// Bound of any one wait.
const WAIT: Duration = Duration::from_secs(60);
/// Bound of a whole test.
const TEST: Duration = Duration::from_secs(300);
/// SURBs Nym's socks5 client attaches in anonymous mode.
const CONNECT_SURBS: u32 = 20;
const SEND_SURBS: u32 = 3;
/// Nym's socks5 client reads at most this much from its app at once.
const CHUNK: usize = 16 * 1024;
/// Nym's socks5 client stops reading its app while its lane holds more.
const LANE_HIGH_WATER: usize = 30;

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}

async fn bounded<F: std::future::Future<Output = ()>>(name: &str, body: F) {
    let t0 = Instant::now();
    tokio::time::timeout(TEST, body)
        .await
        .unwrap_or_else(|_| panic!("{name} exceeded {TEST:?}"));
    eprintln!("{name}: {:.1} s", t0.elapsed().as_secs_f64());
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    StdRng::from_entropy().fill_bytes(&mut v);
    v
}

/// Client settings of both ends: no cover, no per-hop delays, and a 5 s
/// ack wait instead of 1.5 s. Under load the debug-built localnet on a
/// shared 2-core machine takes seconds to carry a packet; shorter waits
/// only retransmit what is still under way, and each retransmitted reply
/// costs the exit one of the client's reply SURBs.
fn test_client_config() -> ClientConfig {
    let mut config = ClientConfig::for_tests();
    config.ack_wait_addition = Duration::from_secs(5);
    config
}

/// Tests that move hundreds of kilobytes take turns, so that they do not
/// starve each other of CPU.
static BULK: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

/// How the SOCKS side asks for answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Reply SURBs (20 on Connect, 3 on each Send), no return address.
    Anonymous,
    /// Its address in the Connect, plain messages.
    Plain,
}

/// A localnet, an exit on its gateway, and a client (the SOCKS side).
struct Setup {
    net: Localnet,
    exit: NetworkRequester,
    socks: Socks,
}

impl Setup {
    async fn new(mode: Mode, config: ExitConfig) -> Self {
        init_tracing();
        let net = Localnet::start(LocalnetConfig {
            mixnodes_per_layer: 1,
            gateways: 1,
            delay: DelayPolicy::NoDelay,
            ..LocalnetConfig::default()
        })
        .await
        .unwrap();
        let shared = Shared::new(SharedConfig {
            default_source: TopologySource::NymApi(vec![Url::parse(&net.api_url()).unwrap()]),
            ..SharedConfig::default()
        })
        .unwrap();
        let gateway = net.gateways()[0].clone();
        let exit = tokio::time::timeout(
            WAIT,
            NetworkRequester::launch(
                &shared,
                None,
                GatewaySelection::Given(gateway.identity.to_bytes()),
                test_client_config(),
                config,
            ),
        )
        .await
        .expect("exit started in time")
        .expect("exit started");
        net.set_network_requester(gateway.id, Some(exit.address()))
            .unwrap();
        let client = client(&shared, gateway.identity.to_bytes()).await;
        let events = client.subscribe();
        let socks = Socks {
            client,
            events,
            exit: exit.address(),
            mode,
        };
        Self { net, exit, socks }
    }

    async fn stop(self) {
        let Setup { net, exit, socks } = self;
        exit.shutdown().await;
        socks.client.shutdown().await;
        net.shutdown().await;
    }
}

async fn client(shared: &Shared, gateway: [u8; 32]) -> ClientHandle {
    let keys = ClientKeys::generate(&mut StdRng::from_entropy());
    // As Nym's socks5 client: real packets go out on the main Poisson
    // stream (20 ms mean gap), which also paces them; no separate loop
    // cover, no per-hop delays.
    let mut config = test_client_config();
    config.disable_main_poisson = false;
    let reg = register_with(
        shared,
        None,
        &keys,
        GatewaySelection::Given(gateway),
        &config.gateway,
    )
    .await
    .unwrap();
    start(shared, keys, reg, config, CancellationToken::new())
        .await
        .unwrap()
}

/// The SOCKS side: speaks to the exit with nymd-proto's byte layer.
struct Socks {
    client: ClientHandle,
    events: Receiver<ClientEvent>,
    exit: Recipient,
    mode: Mode,
}

impl Socks {
    async fn send_raw(&self, data: Vec<u8>, surbs: u32, lane: Lane) {
        let message = match self.mode {
            Mode::Anonymous => OutgoingMessage::Anonymous {
                recipient: self.exit,
                data,
                reply_surbs: surbs,
                lane,
            },
            Mode::Plain => OutgoingMessage::Plain {
                recipient: self.exit,
                data,
                lane,
            },
        };
        self.client.send(message).await.unwrap();
    }

    async fn request(&self, request: Socks5Request, surbs: u32, lane: Lane) {
        let bytes = ProviderRequest::current(request).encode().unwrap();
        self.send_raw(bytes, surbs, lane).await;
    }

    async fn connect(&self, conn_id: ConnectionId, remote: &str) {
        let return_address = (self.mode == Mode::Plain).then(|| self.client.address());
        let connect = Socks5Request::Connect(ConnectRequest {
            conn_id,
            remote: remote.into(),
            return_address,
        });
        self.request(connect, CONNECT_SURBS, Lane::Connection(conn_id))
            .await;
    }

    async fn send(&self, d: SocketData) {
        let lane = Lane::Connection(d.conn_id);
        self.request(Socks5Request::Send(d), SEND_SURBS, lane).await;
    }

    /// The next answer from the exit.
    async fn response(&mut self) -> ProviderResponse {
        loop {
            let event = tokio::time::timeout(WAIT, self.events.recv())
                .await
                .expect("an answer from the exit in time")
                .expect("client events");
            match event {
                ClientEvent::Received(m) => {
                    assert!(m.sender_tag.is_none(), "the exit never sends anonymously");
                    return ProviderResponse::decode(&m.data).unwrap();
                }
                ClientEvent::Error { kind, message, .. } => {
                    panic!("client error {kind:?}: {message}")
                }
                ClientEvent::GatewayStatus(_) => {}
            }
        }
    }

    /// The next socks5 answer, with its versions.
    async fn socks5(&mut self) -> (Versions, Socks5Response) {
        match self.response().await {
            ProviderResponse::Socks5 { versions, response } => (versions, response),
            other => panic!("expected a socks5 answer, got {other:?}"),
        }
    }

    /// The next NetworkData (for `conn_id`).
    async fn data(&mut self, conn_id: ConnectionId) -> SocketData {
        match self.socks5().await {
            (v, Socks5Response::NetworkData(d)) => {
                assert_eq!(v, Versions::CURRENT, "the Connect's versions");
                assert_eq!(d.conn_id, conn_id);
                d
            }
            (_, other) => panic!("expected NetworkData, got {other:?}"),
        }
    }
}

/// One proxied connection as the SOCKS side sees it.
struct Conn {
    id: ConnectionId,
    out: OrderedSender,
    back: OrderedReceiver,
    received: Vec<u8>,
    closed: bool,
}

impl Conn {
    /// Connect and wait for the exit's seq-0 keepalive (the SOCKS side
    /// answers its app's CONNECT only then).
    async fn open(socks: &mut Socks, id: ConnectionId, remote: &str) -> Self {
        socks.connect(id, remote).await;
        let first = socks.data(id).await;
        assert_eq!(
            (first.seq, first.closed, first.data.len()),
            (0, false, 0),
            "the first NetworkData is the seq-0 keepalive"
        );
        let mut back = OrderedReceiver::default();
        back.push_data(first).unwrap();
        let mut conn = Self {
            id,
            out: OrderedSender::new(id),
            back,
            received: Vec::new(),
            closed: false,
        };
        // As Nym's client: a keepalive first, data from seq 1.
        let keepalive = conn.out.keepalive();
        socks.send(keepalive).await;
        conn
    }

    async fn write(&mut self, socks: &Socks, data: &[u8]) {
        for chunk in data.chunks(CHUNK) {
            // As Nym's client: read the app only while the lane holds at
            // most 30 packets.
            let deadline = Instant::now() + WAIT;
            while socks.client.lane_queue_length(self.id) > LANE_HIGH_WATER {
                assert!(Instant::now() < deadline, "the lane never drained");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let d = self.out.message(chunk.to_vec(), false);
            socks.send(d).await;
        }
    }

    async fn close(&mut self, socks: &Socks) {
        let d = self.out.close();
        socks.send(d).await;
    }

    /// Take answers until `n` bytes came back in order, or the exit closed.
    async fn read_until(&mut self, socks: &mut Socks, n: usize) {
        while self.received.len() < n && !self.closed {
            let d = socks.data(self.id).await;
            self.back.push_data(d).unwrap();
            if let Some(delivery) = self.back.read() {
                self.received.extend_from_slice(&delivery.data);
                self.closed = delivery.closed;
            }
        }
    }

    async fn read_to_close(&mut self, socks: &mut Socks) {
        self.read_until(socks, usize::MAX).await;
    }
}

/// A TCP echo server on 127.0.0.1: each connection gets back what it
/// sends, and is closed after the client's EOF.
async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = stream.into_split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    addr
}

async fn echo_round_trip(mode: Mode, config: ExitConfig, big: usize) {
    let _turn = BULK.acquire().await.unwrap();
    let mut s = Setup::new(mode, config).await;
    let echo = echo_server().await;
    let mut conn = Conn::open(&mut s.socks, 7, &echo.to_string()).await;

    conn.write(&s.socks, b"hello, exit").await;
    conn.read_until(&mut s.socks, 11).await;
    assert_eq!(conn.received, b"hello, exit");

    let payload = random_bytes(big);
    conn.write(&s.socks, &payload).await;
    conn.read_until(&mut s.socks, 11 + big).await;
    assert_eq!(conn.received.len(), 11 + big);
    assert!(
        conn.received[11..] == payload[..],
        "the data came back intact, in order"
    );
    assert!(!conn.closed);

    // Our close reaches the echo server, which closes: the exit says so.
    conn.close(&s.socks).await;
    conn.read_to_close(&mut s.socks).await;
    assert!(conn.closed);
    assert_eq!(conn.received.len(), 11 + big, "nothing after the data");

    let stats = s.exit.stats();
    assert_eq!(stats.connections_total, 1);
    assert_eq!(stats.bytes_to_targets, 11 + big as u64);
    assert_eq!(stats.bytes_from_targets, 11 + big as u64);
    assert_eq!(
        (stats.connections_refused, stats.connections_failed),
        (0, 0)
    );
    // The connection ends shortly after both closes.
    let deadline = Instant::now() + WAIT;
    while s.exit.stats().connections_open != 0 {
        assert!(Instant::now() < deadline, "connection still open");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_echo_one_megabyte_round_trip() {
    bounded("anonymous_echo_one_megabyte_round_trip", async {
        echo_round_trip(Mode::Anonymous, ExitConfig::default(), 1 << 20).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_mode_answers_the_return_address() {
    bounded("plain_mode_answers_the_return_address", async {
        echo_round_trip(Mode::Plain, ExitConfig::default(), 256 * 1024).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destination_outside_the_policy_is_refused_with_nyms_text() {
    bounded(
        "destination_outside_the_policy_is_refused_with_nyms_text",
        async {
            let echo = echo_server().await;
            let other = echo.port().wrapping_add(1).max(1);
            let config = ExitConfig {
                policy: ExitPolicy::parse(&format!("accept 127.0.0.1:{other}\nreject *:*"))
                    .unwrap(),
                ..ExitConfig::default()
            };
            let mut s = Setup::new(Mode::Anonymous, config).await;
            let remote = format!("127.0.0.1:{}", echo.port());
            s.socks.connect(3, &remote).await;
            let (versions, response) = s.socks.socks5().await;
            assert_eq!(versions, Versions::CURRENT);
            assert_eq!(
                response,
                Socks5Response::ConnectionError {
                    conn_id: 3,
                    message: format!("Domain \"127.0.0.1:{}\" failed filter check", echo.port()),
                }
            );
            // A name that is not host:port is refused the same way.
            s.socks.connect(4, "no port here").await;
            let (_, response) = s.socks.socks5().await;
            assert_eq!(
                response,
                Socks5Response::ConnectionError {
                    conn_id: 4,
                    message: "Domain \"no port here\" failed filter check".into(),
                }
            );
            let stats = s.exit.stats();
            assert_eq!(stats.connections_refused, 2);
            assert_eq!(stats.connections_total, 0);
            s.stop().await;
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_port_gets_seq_zero_close() {
    bounded("closed_port_gets_seq_zero_close", async {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            l.local_addr().unwrap().port()
        };
        let mut s = Setup::new(Mode::Plain, ExitConfig::default()).await;
        s.socks.connect(11, &format!("127.0.0.1:{port}")).await;
        let d = s.socks.data(11).await;
        assert_eq!((d.seq, d.closed, d.data.len()), (0, true, 0));
        assert_eq!(s.exit.stats().connections_failed, 1);
        s.stop().await;
    })
    .await;
}

/// A Connect whose return address the exit cannot reach (its gateway is in
/// no topology): the target connection opens, the exit's first answer
/// fails, and the exit closes the target connection at once, counting it,
/// instead of holding it until its idle timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_whose_answers_cannot_reach_the_client_is_closed_at_once() {
    bounded(
        "a_connection_whose_answers_cannot_reach_the_client_is_closed_at_once",
        async {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let (closed_tx, closed_rx) = tokio::sync::oneshot::channel();
            tokio::spawn(async move {
                if let Ok((mut stream, _)) = listener.accept().await {
                    let mut buf = [0u8; 64];
                    // Holds the connection until the exit ends it.
                    let _ = tokio::io::AsyncReadExt::read(&mut stream, &mut buf).await;
                    let _ = closed_tx.send(());
                }
            });
            let s = Setup::new(Mode::Plain, ExitConfig::default()).await;
            let mut rng = StdRng::from_entropy();
            let unreachable = Recipient::new(
                nymd_proto::keys::IdentityKeyPair::generate(&mut rng).public(),
                nymd_proto::keys::EncryptionKeyPair::generate(&mut rng).public(),
                nymd_proto::keys::IdentityKeyPair::generate(&mut rng).public(),
            );
            let connect = Socks5Request::Connect(ConnectRequest {
                conn_id: 21,
                remote: addr.to_string(),
                return_address: Some(unreachable),
            });
            s.socks.request(connect, 0, Lane::Connection(21)).await;
            tokio::time::timeout(WAIT, closed_rx)
                .await
                .expect("the exit closed the target connection in time")
                .unwrap();
            let deadline = Instant::now() + WAIT;
            loop {
                let stats = s.exit.stats();
                if stats.connections_open == 0 && stats.connections_unanswerable == 1 {
                    assert_eq!(stats.connections_total, 1, "{stats:?}");
                    break;
                }
                assert!(Instant::now() < deadline, "{stats:?}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            s.stop().await;
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_closing_mid_transfer_reaches_the_client() {
    bounded("target_closing_mid_transfer_reaches_the_client", async {
        let sent = random_bytes(200 * 1024);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let body = sent.clone();
        tokio::spawn(async move {
            if let Ok((mut stream, _)) = listener.accept().await {
                // Whatever the client says, send this and hang up.
                let _ = stream.write_all(&body).await;
                drop(stream);
            }
        });
        let _turn = BULK.acquire().await.unwrap();
        let mut s = Setup::new(Mode::Anonymous, ExitConfig::default()).await;
        let mut conn = Conn::open(&mut s.socks, 12, &addr.to_string()).await;
        conn.read_to_close(&mut s.socks).await;
        assert!(conn.closed, "closed=1 reached the client");
        assert!(conn.received == sent, "all the data came first, intact");
        s.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_does_not_stop_the_exit() {
    bounded("garbage_does_not_stop_the_exit", async {
        let mut s = Setup::new(Mode::Anonymous, ExitConfig::default()).await;
        let garbage: Vec<Vec<u8>> = vec![
            vec![],
            random_bytes(100),
            vec![3],
            vec![3, 7],
            vec![3, 1, 3, 9],
            vec![3, 1, 9, 0],
            vec![3, 1, 3, 0, 0, 0, 0, 0],
            vec![3, 1, 3, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 200, b'x'],
            vec![3, 0, 9],
            vec![0, 7, 1, 2],
            vec![2, 1],
            random_bytes(5000),
        ];
        let n = garbage.len();
        for g in garbage {
            s.socks.send_raw(g, 1, Lane::General).await;
        }
        // Garbage in a plain message: no way back either.
        let plain = ProviderRequest::current(Socks5Request::Connect(ConnectRequest {
            conn_id: 99,
            remote: "127.0.0.1:1".into(),
            return_address: None,
        }))
        .encode()
        .unwrap();
        s.socks
            .client
            .send(OutgoingMessage::Plain {
                recipient: s.socks.exit,
                data: plain,
                lane: Lane::General,
            })
            .await
            .unwrap();
        // A Send for a connection that never comes.
        s.socks
            .send(OrderedSender::new(98).message(b"x".to_vec(), false))
            .await;

        // Each one counted (they may arrive in any order), none fatal.
        let deadline = Instant::now() + WAIT;
        while s.exit.stats().malformed_messages < n as u64 + 1 {
            assert!(
                Instant::now() < deadline,
                "garbage not all counted: {:?}",
                s.exit.stats()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        // The exit still serves.
        let echo = echo_server().await;
        let mut conn = Conn::open(&mut s.socks, 21, &echo.to_string()).await;
        conn.write(&s.socks, b"still here").await;
        conn.read_until(&mut s.socks, 10).await;
        assert_eq!(conn.received, b"still here");
        assert!(!s.exit.is_finished());
        let stats = s.exit.stats();
        assert_eq!(stats.malformed_messages, n as u64 + 1);
        assert_eq!(stats.connections_total, 1);
        s.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_requests_and_queries_are_answered_through_surbs() {
    bounded(
        "control_requests_and_queries_are_answered_through_surbs",
        async {
            let mut s = Setup::new(Mode::Anonymous, ExitConfig::default()).await;
            let health = ProviderRequest::Control {
                interface: Version::CURRENT,
                request: ControlRequest::Health,
            };
            s.socks
                .send_raw(health.encode().unwrap(), 5, Lane::General)
                .await;
            assert_eq!(
                s.socks.response().await,
                ProviderResponse::Control {
                    interface: Version::CURRENT,
                    response: ControlResponse::Health
                }
            );
            let versions = ProviderRequest::Control {
                interface: Version::CURRENT,
                request: ControlRequest::SupportedRequestVersions,
            };
            s.socks
                .send_raw(versions.encode().unwrap(), 5, Lane::General)
                .await;
            assert_eq!(
                s.socks.response().await,
                ProviderResponse::Control {
                    interface: Version::CURRENT,
                    response: ControlResponse::supported_versions(Versions::CURRENT)
                }
            );
            s.socks
                .request(
                    Socks5Request::Query(QueryRequest::ExitPolicy),
                    5,
                    Lane::General,
                )
                .await;
            match s.socks.socks5().await {
                (
                    _,
                    Socks5Response::Query(QueryResponse::ExitPolicy {
                        enabled: true,
                        policy: Some(rules),
                        ..
                    }),
                ) => {
                    assert_eq!(rules.len(), 3);
                    assert_eq!(rules[0].action, PolicyAction::Accept);
                    assert_eq!(rules[0].ip_pattern, "127.0.0.0/8");
                    assert_eq!(rules[2].action, PolicyAction::Reject);
                }
                other => panic!("expected the exit policy, got {other:?}"),
            }
            s.socks
                .request(
                    Socks5Request::Query(QueryRequest::OpenProxy),
                    5,
                    Lane::General,
                )
                .await;
            assert_eq!(
                s.socks.socks5().await.1,
                Socks5Response::Query(QueryResponse::OpenProxy(false))
            );
            assert_eq!(s.exit.stats().control_answered, 4);
            // The exit is announced in the directory.
            assert_eq!(
                s.net
                    .network_requesters()
                    .values()
                    .copied()
                    .collect::<Vec<_>>(),
                vec![s.exit.address()]
            );
            s.stop().await;
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalives_then_idle_teardown() {
    bounded("keepalives_then_idle_teardown", async {
        let echo = echo_server().await;
        let config = ExitConfig {
            keepalive_interval: Duration::from_millis(300),
            idle_timeout: Duration::from_secs(2),
            ..ExitConfig::default()
        };
        let mut s = Setup::new(Mode::Plain, config).await;
        let mut conn = Conn::open(&mut s.socks, 31, &echo.to_string()).await;
        // Nothing moves: empty keepalives with their own seqs, then a close.
        let mut keepalives = 0;
        loop {
            let d = s.socks.data(31).await;
            assert!(d.data.is_empty());
            conn.back.push_data(d.clone()).unwrap();
            if d.closed {
                break;
            }
            keepalives += 1;
        }
        assert!(
            keepalives >= 2,
            "{keepalives} keepalives before the idle close"
        );
        assert!(conn.back.read().is_some_and(|d| d.closed));
        let deadline = Instant::now() + WAIT;
        while s.exit.stats().connections_open != 0 {
            assert!(Instant::now() < deadline, "connection still open");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        s.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_fail_and_sends_may_come_first() {
    bounded(
        "connections_beyond_the_cap_fail_and_sends_may_come_first",
        async {
            let echo = echo_server().await;
            let config = ExitConfig {
                max_connections: 1,
                ..ExitConfig::default()
            };
            let mut s = Setup::new(Mode::Anonymous, config).await;
            // The data before its Connect (the mixnet may reorder them).
            let mut out = OrderedSender::new(41);
            s.socks.send(out.keepalive()).await;
            s.socks
                .send(out.message(b"early bird".to_vec(), false))
                .await;
            let mut conn = Conn::open(&mut s.socks, 41, &echo.to_string()).await;
            conn.out = out;
            conn.read_until(&mut s.socks, 10).await;
            assert_eq!(conn.received, b"early bird");

            // One connection is the cap: the next gets the failure answer.
            s.socks.connect(42, &echo.to_string()).await;
            let d = s.socks.data(42).await;
            assert_eq!((d.seq, d.closed, d.data.len()), (0, true, 0));
            let stats = s.exit.stats();
            assert_eq!((stats.connections_total, stats.connections_failed), (1, 1));
            s.stop().await;
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fast_target_is_read_only_as_fast_as_the_lane_drains() {
    bounded(
        "a_fast_target_is_read_only_as_fast_as_the_lane_drains",
        async {
            const TOTAL: usize = 16 << 20;
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(async move {
                if let Ok((mut stream, _)) = listener.accept().await {
                    let block = vec![0x5a; 64 * 1024];
                    for _ in 0..TOTAL / block.len() {
                        if stream.write_all(&block).await.is_err() {
                            return;
                        }
                    }
                }
            });
            let _turn = BULK.acquire().await.unwrap();
            let config = ExitConfig::default();
            let high_water = config.lane_high_water;
            let mut s = Setup::new(Mode::Anonymous, config).await;
            let _conn = Conn::open(&mut s.socks, 51, &addr.to_string()).await;
            // The SOCKS side reads nothing for a while; the exit holds at most
            // its high-water mark plus one read's fragments (and SURB requests).
            let mut peak = 0;
            let until = Instant::now() + Duration::from_secs(4);
            while Instant::now() < until {
                peak = peak.max(s.exit.client().lane_queue_length(51));
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let read = s.exit.stats().bytes_from_targets;
            eprintln!("lane peak {peak} packets, {read} bytes read from the target");
            assert!(peak <= high_water + 16, "lane peaked at {peak} packets");
            assert!(read < TOTAL as u64 / 4, "the exit read {read} bytes ahead");
            s.stop().await;
        },
    )
    .await;
}
