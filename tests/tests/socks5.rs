//! An identity's SOCKS5 proxy end to end: nymd's library (the manager,
//! runners, the SOCKS listener), the embedded local mixnet, and the network
//! requester of `nymd-exit` on one of its gateways (its default exit policy:
//! loopback only). Programs are played by a small SOCKS client over real
//! TCP sockets; targets are TCP servers on 127.0.0.1 with ephemeral ports.
//! Every wait is bounded; timings are printed, never asserted.
//!
//! - through the anonymous proxy: malformed greetings and abrupt
//!   disconnects leave the port serving; 10 MB arrive intact; 50 parallel
//!   connections all complete; the identity's `Traffic` events carry the
//!   SOCKS counters; a target that closes mid-transfer closes the
//!   SOCKS connection; while the identity's gateway is down the proxy stops
//!   reading a fast uploader (bounded), and the upload completes intact
//!   once it is back; a host outside the exit policy gets "not allowed"
//!   (SOCKS5 0x02, SOCKS4 0x5B); a closed port gets "connection refused";
//!   apps on the identity's websocket see none of it, and an app's message
//!   that looks like a requester's answer still reaches them;
//! - the plain mode (the identity's address in each Connect) fetches a page
//!   and 16 MiB intact (checksum) within a generous bound;
//! - a requester that stops answering: an open connection is closed
//!   within its keepalive interval plus the connect timeout, a new CONNECT
//!   gets "host unreachable";
//! - a program that stops reading is held to the daemon's memory budget
//!   (the identity stops taking from the mixnet) and, once it reads, gets
//!   everything intact;
//! - a uid not allowed on the identity is closed before the handshake.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nymd::manager::{InitRequest, ManagerEvent, ProviderChoice, RunState, Socks5Change};
use nymd_exit::{ExitConfig, NetworkRequester};
use nymd_mixnet::{ClientConfig, GatewaySelection, Shared, SharedConfig, TopologySource, Url};
use nymd_proto::appapi::{ClientRequest, ServerResponse};
use nymd_proto::socks5::wire::{ProviderResponse, SocketData, Socks5Response, Versions};
use nymd_tests::{fast_localnet, free_port, precondition, App, TestDaemon, WAIT};
use rand::RngCore;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;

/// Bound of a whole test.
const TEST: Duration = Duration::from_secs(600);

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}

/// Run `body` within [`TEST`], printing how long it took.
async fn bounded<F: std::future::Future<Output = ()>>(name: &str, body: F) {
    let t0 = Instant::now();
    tokio::time::timeout(TEST, body)
        .await
        .unwrap_or_else(|_| panic!("{name} exceeded {TEST:?}"));
    eprintln!("{name}: {:.1} s", t0.elapsed().as_secs_f64());
}

/// Time one phase of a test.
async fn phase<T, F: std::future::Future<Output = T>>(name: &str, body: F) -> T {
    let t0 = Instant::now();
    let out = body.await;
    eprintln!("  {name}: {:.1} s", t0.elapsed().as_secs_f64());
    out
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    rand::thread_rng().fill_bytes(&mut v);
    v
}

/// The local mixnet, an exit on its first gateway, and a daemon with
/// identity `w` whose SOCKS5 proxy uses it (chosen with `auto`).
struct Setup {
    net: nymd_localnet::Localnet,
    exit: NetworkRequester,
    daemon: TestDaemon,
    socks: SocketAddr,
    websocket: SocketAddr,
    _state: tempfile::TempDir,
}

impl Setup {
    async fn new(anonymous: bool) -> Self {
        Self::with_budget(anonymous, SharedConfig::default().memory_budget).await
    }

    /// [`Setup::new`] with a daemon memory budget of `memory_budget` bytes.
    async fn with_budget(anonymous: bool, memory_budget: u64) -> Self {
        init_tracing();
        let net = fast_localnet().await;
        let shared = Shared::new(SharedConfig {
            default_source: TopologySource::NymApi(vec![Url::parse(&net.api_url()).expect("url")]),
            ..SharedConfig::default()
        })
        .expect("shared");
        let gateway = net.gateways()[0].clone();
        let exit = tokio::time::timeout(
            WAIT,
            NetworkRequester::launch(
                &shared,
                None,
                GatewaySelection::Given(gateway.identity.to_bytes()),
                ClientConfig::for_tests(),
                ExitConfig::default(),
            ),
        )
        .await
        .expect("exit started in time")
        .expect("exit started");
        net.set_network_requester(gateway.id, Some(exit.address()))
            .expect("exit listed");
        let state = tempfile::tempdir().expect("tmp");
        let daemon =
            TestDaemon::start_with_budget(state.path(), &net.api_url(), free_port(), memory_budget);
        let port = free_port();
        let info = tokio::time::timeout(
            WAIT,
            daemon.manager.init(InitRequest {
                id: "w".into(),
                // The exit is on the first gateway, w on the other.
                gateway: Some(net.gateways()[1].identity_bs58()),
                socks5: Some(Socks5Change {
                    enabled: Some(true),
                    port: Some(port),
                    provider: Some(ProviderChoice::Auto),
                    anonymous: Some(anonymous),
                }),
                ..InitRequest::default()
            }),
        )
        .await
        .expect("init in time")
        .expect("init");
        let chosen = info
            .socks5
            .as_ref()
            .and_then(|s| s.provider.clone())
            .expect("a provider was chosen");
        assert_eq!(chosen, exit.address().to_string(), "auto chose the exit");
        daemon.wait_state("w", RunState::Running).await;
        let socks = SocketAddr::from(([127, 0, 0, 1], port));
        wait_listening(socks).await;
        Self {
            net,
            exit,
            daemon,
            socks,
            websocket: info.websocket,
            _state: state,
        }
    }

    fn stats(&self) -> nymd::socks::SocksStats {
        self.daemon
            .manager
            .info("w")
            .expect("w")
            .socks_stats
            .expect("running")
    }

    async fn stop(self) {
        self.daemon.stop().await;
        self.exit.shutdown().await;
        self.net.shutdown().await;
    }
}

/// Wait until `addr` accepts connections.
async fn wait_listening(addr: SocketAddr) {
    let deadline = Instant::now() + WAIT;
    while TcpStream::connect(addr).await.is_err() {
        assert!(Instant::now() < deadline, "{addr} never listened");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// === A SOCKS client ===

/// SOCKS5 CONNECT to `host:port` (a domain name, resolved at the exit).
/// The open stream, or the reply code of a failure.
async fn socks5_connect(proxy: SocketAddr, host: &str, port: u16) -> Result<TcpStream, u8> {
    let s = TcpStream::connect(proxy)
        .await
        .expect("connect to the proxy");
    socks5_handshake(s, host, port).await
}

/// Which of the program's kernel socket buffers to make small and fixed
/// (a size set by hand is no longer grown by the kernel's autotuning).
#[derive(Clone, Copy)]
enum SmallBuffer {
    /// What the program does not read stays in nymd.
    Receive,
    /// What nymd does not read stays in the program: its writes block
    /// instead of filling a send buffer that may grow to `tcp_wmem`'s
    /// maximum (4 MiB on this kernel, the size of a whole test upload).
    Send,
}

/// [`socks5_connect`] on a socket with one small kernel buffer.
async fn socks5_connect_small_buffer(
    proxy: SocketAddr,
    host: &str,
    port: u16,
    which: SmallBuffer,
) -> Result<TcpStream, u8> {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    match which {
        SmallBuffer::Receive => socket.set_recv_buffer_size(4096).expect("SO_RCVBUF"),
        SmallBuffer::Send => socket.set_send_buffer_size(16 * 1024).expect("SO_SNDBUF"),
    }
    let s = socket.connect(proxy).await.expect("connect to the proxy");
    socks5_handshake(s, host, port).await
}

async fn socks5_handshake(mut s: TcpStream, host: &str, port: u16) -> Result<TcpStream, u8> {
    s.write_all(&[5, 1, 0]).await.expect("greeting");
    let mut method = [0u8; 2];
    tokio::time::timeout(WAIT, s.read_exact(&mut method))
        .await
        .expect("method in time")
        .expect("method");
    assert_eq!(method, [5, 0], "no authentication chosen");
    let mut req = vec![5, 1, 0, 3, host.len() as u8];
    req.extend_from_slice(host.as_bytes());
    req.extend_from_slice(&port.to_be_bytes());
    s.write_all(&req).await.expect("request");
    let mut reply = [0u8; 10];
    tokio::time::timeout(WAIT + WAIT, s.read_exact(&mut reply))
        .await
        .expect("CONNECT answered in time")
        .expect("reply");
    assert_eq!(reply[0], 5);
    match reply[1] {
        0 => Ok(s),
        code => Err(code),
    }
}

/// SOCKS4a CONNECT to `host:port`: the stream or the status byte.
async fn socks4a_connect(proxy: SocketAddr, host: &str, port: u16) -> Result<TcpStream, u8> {
    let mut s = TcpStream::connect(proxy)
        .await
        .expect("connect to the proxy");
    let mut req = vec![4, 1];
    req.extend_from_slice(&port.to_be_bytes());
    req.extend_from_slice(&[0, 0, 0, 1]);
    req.extend_from_slice(b"nymd-test\0");
    req.extend_from_slice(host.as_bytes());
    req.push(0);
    s.write_all(&req).await.expect("request");
    let mut reply = [0u8; 8];
    tokio::time::timeout(WAIT + WAIT, s.read_exact(&mut reply))
        .await
        .expect("CONNECT answered in time")
        .expect("reply");
    match reply[1] {
        0x5A => Ok(s),
        code => Err(code),
    }
}

/// Send an HTTP request for `path` and read to EOF: the body after the
/// header.
async fn http_get(mut s: TcpStream, path: &str) -> Vec<u8> {
    let req = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("request");
    let mut all = Vec::new();
    tokio::time::timeout(TEST, s.read_to_end(&mut all))
        .await
        .expect("the answer ends in time")
        .expect("read");
    let head = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP header");
    all.split_off(head + 4)
}

// === Targets ===

/// A tiny HTTP/1.0 server: `GET /N` answers N bytes of `body` (all of it
/// for other paths) and closes; `GET /cut` announces all of `body` but
/// sends only its first half and closes.
async fn http_server(body: Arc<Vec<u8>>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let body = body.clone();
            tokio::spawn(async move {
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&req).into_owned();
                let path = text.split_whitespace().nth(1).unwrap_or("/").to_owned();
                let (announced, sent) = match path.as_str() {
                    "/cut" => (body.len(), body.len() / 2),
                    p => {
                        let n = p[1..].parse().unwrap_or(body.len()).min(body.len());
                        (n, n)
                    }
                };
                let head = format!("HTTP/1.0 200 OK\r\nContent-Length: {announced}\r\n\r\n");
                if s.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let _ = s.write_all(&body[..sent]).await;
                let _ = s.shutdown().await;
            });
        }
    });
    port
}

/// A sink: reads an 8-byte length, then that many bytes, answers their
/// FNV-1a hash (8 bytes) and closes.
async fn sink_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut len = [0u8; 8];
                if s.read_exact(&mut len).await.is_err() {
                    return;
                }
                let mut left = u64::from_be_bytes(len);
                let mut hash = FNV_OFFSET;
                let mut buf = vec![0u8; 64 * 1024];
                while left > 0 {
                    let want = buf.len().min(left as usize);
                    match s.read(&mut buf[..want]).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            hash = fnv(hash, &buf[..n]);
                            left -= n as u64;
                        }
                    }
                }
                let _ = s.write_all(&hash.to_be_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    port
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    free_port()
}

// === Tests ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_proxy_end_to_end() {
    bounded("anonymous_proxy_end_to_end", async {
        let s = phase("setup (localnet, exit, daemon, auto)", Setup::new(true)).await;
        let body = Arc::new(random_bytes(10 << 20));
        let target = http_server(body.clone()).await;
        let mut app = App::connect(s.websocket).await;
        let _ = app.self_address().await;

        phase("malformed greetings and abrupt disconnects", async {
            // Not SOCKS: closed without a reply.
            let mut c = TcpStream::connect(s.socks).await.expect("connect");
            c.write_all(b"GET / HTTP/1.1\r\n\r\n").await.expect("write");
            let mut buf = Vec::new();
            let n = tokio::time::timeout(WAIT, c.read_to_end(&mut buf))
                .await
                .expect("closed in time");
            assert!(matches!(n, Ok(0) | Err(_)), "no reply to HTTP: {buf:?}");
            // Only username/password offered: 05 FF, closed.
            let mut c = TcpStream::connect(s.socks).await.expect("connect");
            c.write_all(&[5, 1, 2]).await.expect("write");
            let mut buf = Vec::new();
            let _ = tokio::time::timeout(WAIT, c.read_to_end(&mut buf))
                .await
                .expect("closed in time");
            assert_eq!(buf, [5, 0xFF]);
            // BIND: command not supported (07).
            let mut c = TcpStream::connect(s.socks).await.expect("connect");
            c.write_all(&[5, 1, 0, 5, 2, 0, 1, 127, 0, 0, 1, 0, 80])
                .await
                .expect("write");
            let mut buf = Vec::new();
            let _ = tokio::time::timeout(WAIT, c.read_to_end(&mut buf))
                .await
                .expect("closed in time");
            assert_eq!(buf, [5, 0, 5, 7, 0, 1, 127, 0, 0, 1, 0, 0]);
            // Half a greeting, then gone; connected and gone at once.
            let mut c = TcpStream::connect(s.socks).await.expect("connect");
            c.write_all(&[5, 2]).await.expect("write");
            drop(c);
            drop(TcpStream::connect(s.socks).await.expect("connect"));
            // A CONNECT whose app leaves before the answer.
            let mut c = TcpStream::connect(s.socks).await.expect("connect");
            c.write_all(&[5, 1, 0, 5, 1, 0, 1, 127, 0, 0, 1])
                .await
                .expect("write");
            c.write_all(&target.to_be_bytes()).await.expect("write");
            drop(c);
            // The port still serves.
            let got = http_get(
                socks5_connect(s.socks, "127.0.0.1", target)
                    .await
                    .expect("connected after the garbage"),
                "/1000",
            )
            .await;
            assert_eq!(got, body[..1000]);
        })
        .await;

        phase("10 MB download", async {
            let c = socks5_connect(s.socks, "localhost", target)
                .await
                .expect("connected");
            let t0 = Instant::now();
            let got = http_get(c, "/").await;
            let secs = t0.elapsed().as_secs_f64();
            assert_eq!(got.len(), body.len(), "all of it");
            assert!(got == *body, "intact");
            eprintln!(
                "    {} bytes in {secs:.1} s ({:.0} KiB/s)",
                got.len(),
                got.len() as f64 / 1024.0 / secs
            );
        })
        .await;

        phase("the Traffic events carry the SOCKS counters", async {
            let mut events = s.daemon.manager.subscribe();
            let counted = tokio::time::timeout(WAIT, async {
                loop {
                    match events.recv().await {
                        Ok(ManagerEvent::Traffic {
                            id,
                            socks: Some(c),
                            ..
                        }) if id == "w" => break c,
                        Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                        Err(broadcast::error::RecvError::Closed) => panic!("manager gone"),
                    }
                }
            })
            .await
            .expect("a Traffic event of w with SOCKS counters");
            assert!(
                counted.bytes_received >= body.len() as u64 && counted.total >= 2,
                "{counted:?}"
            );
        })
        .await;

        phase("50 parallel connections", async {
            let mut tasks = Vec::new();
            for i in 0..50usize {
                let proxy = s.socks;
                let want = 1000 + i * 997;
                tasks.push(tokio::spawn(async move {
                    let c = socks5_connect(proxy, "127.0.0.1", target)
                        .await
                        .unwrap_or_else(|code| panic!("connection {i}: reply {code}"));
                    (i, want, http_get(c, &format!("/{want}")).await)
                }));
            }
            for t in tasks {
                let (i, want, got) = t.await.expect("task");
                assert_eq!(got, body[..want], "connection {i}");
            }
        })
        .await;

        phase("a target that closes mid-transfer", async {
            let mut c = socks5_connect(s.socks, "127.0.0.1", target)
                .await
                .expect("connected");
            c.write_all(b"GET /cut HTTP/1.0\r\n\r\n")
                .await
                .expect("request");
            let mut all = Vec::new();
            tokio::time::timeout(TEST, c.read_to_end(&mut all))
                .await
                .expect("the SOCKS connection closes")
                .expect("read");
            let head = all
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .expect("header");
            let got = &all[head + 4..];
            assert_eq!(got, &body[..body.len() / 2], "the half that was sent");
        })
        .await;

        phase(
            "backpressure: a stalled mixnet stops the proxy reading",
            async {
                let sink = sink_server().await;
                let data = Arc::new(random_bytes(4 << 20));
                // A small send buffer: with the kernel's own, the 4 MiB could
                // all sit in socket buffers and the app's write would finish.
                let c = socks5_connect_small_buffer(s.socks, "127.0.0.1", sink, SmallBuffer::Send)
                    .await
                    .expect("connected");
                let (mut rd, mut wr) = c.into_split();
                wr.write_all(&(data.len() as u64).to_be_bytes())
                    .await
                    .expect("length");
                // w's gateway goes away: nothing leaves w any more.
                let gateway = s.net.gateways()[1].id;
                s.net.stop_node(gateway).await.expect("stop w's gateway");
                s.daemon
                    .wait_state_where("w", |st| *st == RunState::Reconnecting, "reconnecting")
                    .await;
                let before = s.stats().bytes_sent;
                let writer = {
                    let data = data.clone();
                    tokio::spawn(async move {
                        wr.write_all(&data).await.expect("upload");
                        wr
                    })
                };
                // The proxy reads until the lane is full, then stops: what it
                // took stays bounded however much the app offers.
                let deadline = Instant::now() + WAIT;
                let mut last = s.stats().bytes_sent;
                loop {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    let now = s.stats().bytes_sent;
                    if now == last && now > before {
                        break;
                    }
                    assert!(Instant::now() < deadline, "the proxy never stopped reading");
                    last = now;
                }
                let taken = last - before;
                eprintln!(
                    "    read while the mixnet stalled: {taken} of {} bytes",
                    data.len()
                );
                assert!(
                    taken <= 2 << 20,
                    "the proxy took {taken} bytes from the app while nothing could leave"
                );
                assert!(!writer.is_finished(), "the app's writes are held back");
                // The gateway returns: the rest goes through, intact.
                s.net.start_node(gateway).await.expect("start w's gateway");
                let back = Instant::now();
                s.daemon.wait_state("w", RunState::Running).await;
                let reconnected = back.elapsed();
                let _wr = tokio::time::timeout(TEST, writer)
                    .await
                    .expect("upload finished in time")
                    .expect("writer");
                eprintln!(
                    "    w reconnected {:.1} s after its gateway returned; the upload ended {:.1} s after",
                    reconnected.as_secs_f64(),
                    back.elapsed().as_secs_f64()
                );
                let mut hash = [0u8; 8];
                tokio::time::timeout(TEST, rd.read_exact(&mut hash))
                    .await
                    .expect("hash in time")
                    .expect("hash");
                assert_eq!(u64::from_be_bytes(hash), fnv(FNV_OFFSET, &data), "intact");
            },
        )
        .await;

        phase("refusals", async {
            // Outside the exit policy: not allowed.
            assert_eq!(
                socks5_connect(s.socks, "192.0.2.1", 80).await.err(),
                Some(0x02)
            );
            assert_eq!(
                socks4a_connect(s.socks, "192.0.2.1", 80).await.err(),
                Some(0x5B)
            );
            // Allowed, but nothing listens: connection refused.
            assert_eq!(
                socks5_connect(s.socks, "127.0.0.1", closed_port())
                    .await
                    .err(),
                Some(0x05)
            );
            // SOCKS4a to an allowed host works.
            let got = http_get(
                socks4a_connect(s.socks, "localhost", target)
                    .await
                    .expect("socks4a"),
                "/500",
            )
            .await;
            assert_eq!(got, body[..500]);
        })
        .await;

        phase(
            "routing: apps see no SOCKS traffic, and keep theirs",
            async {
                let stray = app.try_next_response(Duration::from_millis(500)).await;
                assert!(
                    stray.is_none(),
                    "the requester's answers go to the SOCKS connections: {stray:?}"
                );
                // Another identity sends w's apps a message shaped like a
                // requester's answer for a connection w does not have.
                let (other_ws, _) = s.daemon.init("other").await;
                let mut other = App::connect(other_ws).await;
                // Binary mode: the message is not text.
                app.request_binary(&ClientRequest::SelfAddress).await;
                let w = match app.next_response().await {
                    ServerResponse::SelfAddress(r) => r,
                    other => panic!("expected selfAddress, got {other:?}"),
                };
                let fake = ProviderResponse::Socks5 {
                    versions: Versions::CURRENT,
                    response: Socks5Response::NetworkData(SocketData {
                        conn_id: 0x1122_3344_5566_7788,
                        seq: 0,
                        closed: false,
                        data: b"not for a SOCKS connection".to_vec(),
                    }),
                }
                .encode()
                .expect("encodes");
                other
                    .request_binary(&ClientRequest::Send {
                        recipient: w,
                        message: fake.clone(),
                        connection_id: None,
                    })
                    .await;
                loop {
                    match app.next_response().await {
                        ServerResponse::Received { message, .. } => {
                            assert_eq!(message, fake);
                            break;
                        }
                        _ => continue,
                    }
                }
            },
        )
        .await;

        let stats = s.stats();
        eprintln!("  counters: {stats:?}");
        // The metrics endpoint's view of them, in valid OpenMetrics.
        let registry = nymd::metrics::registry(s.daemon.manager.clone(), 4096);
        let text = nymd::metrics::encode(&registry, true).expect("encodes");
        openmetrics_parser::openmetrics::parse_openmetrics(&text).expect("valid OpenMetrics");
        for family in [
            "nymd_identity_socks5_connections{",
            "nymd_identity_socks5_accepted_connections_total{",
            "nymd_identity_socks5_refused_connections_total{",
            "nymd_identity_socks5_failed_connections_total{",
            "nymd_identity_socks5_sent_bytes_total{",
            "nymd_identity_socks5_received_bytes_total{",
        ] {
            assert!(
                text.contains(&format!("{family}identity=\"w\"}}")),
                "{family} in {text}"
            );
        }
        assert!(stats.bytes_received >= 10 << 20, "{stats:?}");
        assert!(stats.total >= 55 && stats.failed >= 3, "{stats:?}");
        assert!(stats.refused >= 3, "{stats:?}");
        let deadline = Instant::now() + WAIT;
        while s.stats().open > 0 {
            assert!(
                Instant::now() < deadline,
                "connections left open: {:?}",
                s.stats()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        s.stop().await;
    })
    .await;
}

/// Bytes of the plain mode's large download.
const PLAIN_DOWNLOAD: usize = 16 << 20;
/// Bound of that download: generous, so that a loaded 2-core machine
/// passes (no speed is asserted).
const PLAIN_DOWNLOAD_WAIT: Duration = Duration::from_secs(300);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_mode_fetches_a_page_and_16_mib() {
    bounded("plain_mode_fetches_a_page_and_16_mib", async {
        let s = phase("setup (localnet, exit, daemon, auto)", Setup::new(false)).await;
        let info = s.daemon.manager.info("w").expect("w");
        assert!(!info.socks5.expect("section").anonymous);
        let body = Arc::new(random_bytes(PLAIN_DOWNLOAD));
        let target = http_server(body.clone()).await;
        phase("a page", async {
            let c = socks5_connect(s.socks, "127.0.0.1", target)
                .await
                .expect("connected");
            assert!(http_get(c, "/300000").await == body[..300_000], "intact");
        })
        .await;
        phase("16 MiB download", async {
            let c = socks5_connect(s.socks, "127.0.0.1", target)
                .await
                .expect("connected");
            let t0 = Instant::now();
            let got = tokio::time::timeout(PLAIN_DOWNLOAD_WAIT, http_get(c, "/"))
                .await
                .unwrap_or_else(|_| panic!("16 MiB not downloaded within {PLAIN_DOWNLOAD_WAIT:?}"));
            let secs = t0.elapsed().as_secs_f64();
            assert_eq!(got.len(), body.len(), "all of it");
            assert_eq!(fnv(FNV_OFFSET, &got), fnv(FNV_OFFSET, &body), "intact");
            eprintln!(
                "    {} bytes in {secs:.1} s ({:.0} KiB/s)",
                got.len(),
                got.len() as f64 / 1024.0 / secs
            );
        })
        .await;
        s.stop().await;
    })
    .await;
}

/// A program that stops reading holds back its identity, not nymd's
/// memory: what the exit sends for it is charged to the daemon's memory
/// budget, and once that is used up the identity takes nothing more from
/// the mixnet (its gateway keeps it) until the program reads; then the
/// download completes intact. Before, the connection's buffer grew outside
/// any budget to 8 MiB and the connection was closed, cutting the download.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_program_that_does_not_read_is_held_to_the_memory_budget() {
    bounded("a_program_that_does_not_read_is_held_to_the_memory_budget", async {
        const BUDGET: u64 = 1 << 20;
        // Past the budget: one message admitted while there was room, and
        // what the client's own stores force past it.
        const SLACK: u64 = 1 << 20;
        let s = Setup::with_budget(false, BUDGET).await;
        // More than the kernel's socket buffers take (nymd's side of the
        // socket took about 3 MB here) plus the budget.
        let body = Arc::new(random_bytes(6 << 20));
        let target = http_server(body.clone()).await;
        let mut c = socks5_connect_small_buffer(s.socks, "127.0.0.1", target, SmallBuffer::Receive)
            .await
            .expect("connected");
        c.write_all(b"GET / HTTP/1.0\r\n\r\n")
            .await
            .expect("request");
        let full = phase("the program does not read: the budget fills", async {
            let deadline = Instant::now() + TEST / 2;
            loop {
                let (used, limit) = s.daemon.manager.memory_use();
                let stats = s.stats();
                assert!(
                    used <= limit + SLACK && stats.buffered <= limit + SLACK,
                    "past the budget: {used} of {limit} used, SOCKS {stats:?}"
                );
                assert!(stats.open == 1 && stats.failed == 0, "{stats:?}");
                if used >= limit && stats.buffered > 0 {
                    eprintln!("    full: {used} of {limit} used, SOCKS {stats:?}");
                    break stats;
                }
                assert!(
                    Instant::now() < deadline,
                    "the daemon's budget never filled ({used} of {limit}; SOCKS {stats:?}): the SOCKS buffers are not charged to it"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await;
        phase("held there", async {
            tokio::time::sleep(Duration::from_secs(3)).await;
            let (used, limit) = s.daemon.manager.memory_use();
            let stats = s.stats();
            assert!(
                used <= limit + SLACK && stats.buffered <= limit + SLACK,
                "past the budget: {used} of {limit} used, SOCKS {stats:?}"
            );
            assert!(
                stats.bytes_received <= full.bytes_received + (256 << 10),
                "nymd kept writing: {full:?} then {stats:?}"
            );
        })
        .await;
        phase("the program reads: everything, intact", async {
            let mut all = Vec::new();
            tokio::time::timeout(TEST / 2, c.read_to_end(&mut all))
                .await
                .expect("the answer ends in time")
                .expect("read");
            let head = all
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .expect("an HTTP header");
            assert_eq!(all.len() - head - 4, body.len(), "all of it");
            assert!(all[head + 4..] == body[..], "intact");
        })
        .await;
        let stats = s.stats();
        assert_eq!(stats.failed, 0, "{stats:?}");
        s.stop().await;
    })
    .await;
}

/// A network requester whose answers stop reaching the identity (here it
/// stops; one out of reply SURBs or without a way to the identity's
/// gateway is as silent): an open SOCKS connection is closed once nothing,
/// not even a keepalive, came from it for its keepalive interval (60 s)
/// plus `connect_timeout_secs`, well before `idle_timeout_secs` (300 s);
/// a new CONNECT gets "host unreachable" (0x04) after
/// `connect_timeout_secs`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_requester_that_stops_answering_is_noticed_in_bounded_time() {
    bounded(
        "a_requester_that_stops_answering_is_noticed_in_bounded_time",
        async {
            const CONNECT_TIMEOUT: u64 = 5;
            let s = Setup::new(false).await;
            // A shorter connect timeout for w ([socks5] connect_timeout_secs),
            // applied as by `systemctl reload nymd`.
            let store = nymd::store::IdentityStore::open(s._state.path()).expect("store");
            let mut stored = store.load("w").expect("w");
            let section = stored.config.socks5.as_mut().expect("[socks5]");
            section.connect_timeout_secs = CONNECT_TIMEOUT;
            let idle = Duration::from_secs(section.idle_timeout_secs);
            store.save_config(&stored.config).expect("save");
            s.daemon.manager.reload().await.expect("reload");
            s.daemon.wait_state("w", RunState::Running).await;
            wait_listening(s.socks).await;

            let sink = sink_server().await;
            let mut c = socks5_connect(s.socks, "127.0.0.1", sink)
                .await
                .expect("connected");
            let Setup {
                net,
                exit,
                daemon,
                socks,
                _state,
                ..
            } = s;
            exit.shutdown().await;
            let limit = nymd::socks::REQUESTER_KEEPALIVE + Duration::from_secs(CONNECT_TIMEOUT);
            assert!(limit + Duration::from_secs(60) < idle);
            let t0 = Instant::now();
            let mut buf = [0u8; 16];
            let n = tokio::time::timeout(limit + Duration::from_secs(60), c.read(&mut buf))
                .await
                .expect("closed before the idle timeout");
            assert!(matches!(n, Ok(0) | Err(_)), "closed, no data: {n:?}");
            eprintln!(
                "    closed {:.1} s after the requester stopped (limit {limit:?})",
                t0.elapsed().as_secs_f64()
            );
            let failed_before = daemon
                .manager
                .info("w")
                .expect("w")
                .socks_stats
                .expect("running")
                .failed;
            assert_eq!(
                socks5_connect(socks, "127.0.0.1", sink).await.err(),
                Some(4),
                "host unreachable"
            );
            let stats = daemon
                .manager
                .info("w")
                .expect("w")
                .socks_stats
                .expect("running");
            assert_eq!(stats.failed, failed_before + 1, "{stats:?}");
            daemon.stop().await;
            net.shutdown().await;
        },
    )
    .await;
}

/// A SOCKS5 greeting made by Python as uid 65534: prints the bytes
/// answered (hex), or `CLOSED` when the connection was closed without any.
const PY_GREETING: &str = r#"
import socket, sys
try:
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=20)
    s.sendall(b"\x05\x01\x00")
    d = s.recv(16)
except OSError:
    d = b""
print(d.hex() if d else "CLOSED")
"#;

/// Run `/usr/bin/python3 -I -c SCRIPT ARGS` as uid 65534, or `None` (after
/// reporting the missing precondition) when that is not possible here.
fn python_as_nobody(script: &str, args: &[&str]) -> Option<Output> {
    if !precondition::is_root() {
        precondition::missing("needs root to run a client as uid 65534");
        return None;
    }
    let Some(setpriv) = ["/usr/bin/setpriv", "/bin/setpriv"]
        .into_iter()
        .find(|p| Path::new(p).exists())
    else {
        precondition::missing("setpriv not found (util-linux)");
        return None;
    };
    if !Path::new("/usr/bin/python3").exists() {
        precondition::missing("/usr/bin/python3 not found");
        return None;
    }
    let out = Command::new(setpriv)
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .args([
            "/usr/bin/timeout",
            "60",
            "/usr/bin/python3",
            "-I",
            "-c",
            script,
        ])
        .args(args)
        .current_dir("/")
        .stdin(Stdio::null())
        .output()
        .expect("run setpriv");
    Some(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_uid_not_allowed_is_refused_before_the_handshake() {
    bounded("a_uid_not_allowed_is_refused_before_the_handshake", async {
        init_tracing();
        // No exit needed: nothing gets past the user check. Any valid
        // address serves as the provider.
        let net = fast_localnet().await;
        let state = tempfile::tempdir().expect("tmp");
        let daemon = TestDaemon::start(state.path(), &net.api_url(), free_port());
        let (_, me) = daemon.init("w").await;
        let port = free_port();
        let info = daemon
            .manager
            .update_socks5(
                "w",
                Socks5Change {
                    enabled: Some(true),
                    port: Some(port),
                    provider: Some(ProviderChoice::Address(Box::new(me))),
                    anonymous: None,
                },
            )
            .await
            .expect("socks5 on");
        assert_eq!(info.socks5.as_ref().map(|c| c.port), Some(port));
        daemon.wait_state("w", RunState::Running).await;
        let socks = SocketAddr::from(([127, 0, 0, 1], port));
        wait_listening(socks).await;
        // Root (nymd's own user here) gets the method reply.
        let mut c = TcpStream::connect(socks).await.expect("connect");
        c.write_all(&[5, 1, 0]).await.expect("greeting");
        let mut m = [0u8; 2];
        c.read_exact(&mut m).await.expect("method");
        assert_eq!(m, [5, 0]);
        drop(c);
        let port_arg = port.to_string();
        let out = tokio::task::spawn_blocking(move || python_as_nobody(PY_GREETING, &[&port_arg]))
            .await
            .expect("join");
        if let Some(out) = out {
            let got = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            assert_eq!(
                got,
                "CLOSED",
                "uid 65534 must be closed before the handshake ({})",
                String::from_utf8_lossy(&out.stderr)
            );
            let stats = daemon
                .manager
                .info("w")
                .expect("w")
                .socks_stats
                .expect("running");
            assert!(stats.refused >= 1, "{stats:?}");
        }
        daemon.stop().await;
        net.shutdown().await;
    })
    .await;
}
