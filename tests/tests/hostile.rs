//! Hostile network peers cannot crash nymd's mixnet client, hang it, or
//! make it buffer without bound:
//!
//! - a nym-api "directory" answering with an endless chunked body, a body
//!   larger than it announced, a drip of one byte at a time (slowloris), or
//!   garbage: the topology fetch fails in bounded time, reading at most the
//!   body cap from each response;
//! - a "gateway" (listed in an otherwise valid topology) sending a frame
//!   header announcing a terabyte, oversized messages, garbage text and
//!   binary frames, or nothing at all after the websocket handshake:
//!   registration fails in bounded time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nymd_mixnet::{
    ClientKeys, GatewayConfig, GatewaySelection, Shared, SharedConfig, TopologySource, Url,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

/// What the mixnet client may read of one nym-api response (its cap is
/// 32 MiB) plus what socket buffers hold; an endless body would exceed it.
const READ_BOUND: u64 = 64 * 1024 * 1024;
/// Bound on the test process's peak memory growth facing the hostile
/// directories: 6 times the 32 MiB body cap. Seen: about 100 MiB, three
/// times the cap (a capped body's buffers as it grows). A client reading
/// an endless body without the cap passes the bound within a second on
/// loopback.
const DIRECTORY_RSS_GROWTH_KIB: u64 = 192 * 1024;
/// Bound on the test process's peak memory growth facing the hostile
/// gateways: 32 times the 1 MiB websocket message limit. Seen: about
/// 5 MiB. A client without the limit buffers the terabyte frame (the
/// server writes as fast as it is read) far past it.
const GATEWAY_RSS_GROWTH_KIB: u64 = 32 * 1024;
/// Upper bound on any one hostile exchange.
const BOUND: Duration = Duration::from_secs(60);

/// The two tests take turns, so that each one's memory growth is its own.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Start this process's peak resident set (`VmHWM`) again from its
/// current one (Linux: `5` to `clear_refs`). Best effort: without it the
/// peak may be an earlier one, and the growth seen only larger.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// `field` (`VmRSS:` or `VmHWM:`) of this process, in KiB.
fn rss_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

#[derive(Debug, Clone, Copy)]
enum Api {
    /// Chunked JSON that never ends.
    Endless,
    /// Announces 10 bytes, sends megabytes.
    LongerThanAnnounced,
    /// Announces 100 GB.
    Huge,
    /// One byte every 200 ms.
    Slowloris,
    /// Not HTTP at all.
    Garbage,
}

/// Read a request head (bounded) from `s`.
async fn read_head(s: &mut TcpStream) -> Vec<u8> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 * 1024 {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    head
}

async fn hostile_api(l: TcpListener, mode: Api, written: Arc<AtomicU64>) {
    loop {
        let Ok((mut s, _)) = l.accept().await else {
            return;
        };
        let written = written.clone();
        tokio::spawn(async move {
            let _ = read_head(&mut s).await;
            // The most written on one connection (each request is capped).
            let mut total = 0u64;
            let mut count = |n: usize| {
                total += n as u64;
                written.fetch_max(total, Ordering::Relaxed);
            };
            let chunk = vec![b' '; 64 * 1024];
            match mode {
                Api::Endless => {
                    let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
                    if s.write_all(head.as_bytes()).await.is_err() {
                        return;
                    }
                    let _ = s.write_all(b"1\r\n[\r\n").await;
                    let framed =
                        [format!("{:x}\r\n", chunk.len()).as_bytes(), &chunk, b"\r\n"].concat();
                    while s.write_all(&framed).await.is_ok() {
                        count(framed.len());
                    }
                }
                Api::LongerThanAnnounced | Api::Huge => {
                    let len = if matches!(mode, Api::Huge) {
                        100_000_000_000u64
                    } else {
                        10
                    };
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n\r\n"
                    );
                    if s.write_all(head.as_bytes()).await.is_err() {
                        return;
                    }
                    while s.write_all(&chunk).await.is_ok() {
                        count(chunk.len());
                    }
                }
                Api::Slowloris => {
                    let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n[";
                    if s.write_all(head.as_bytes()).await.is_err() {
                        return;
                    }
                    loop {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        if s.write_all(b" ").await.is_err() {
                            return;
                        }
                        count(1);
                    }
                }
                Api::Garbage => {
                    let junk: Vec<u8> = (0..100_000u32).map(|i| (i * 7919 % 251) as u8).collect();
                    let _ = s.write_all(&junk).await;
                    count(junk.len());
                }
            }
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_directory_cannot_hang_or_flood_the_client() {
    let _turn = ONE_AT_A_TIME.lock().await;
    reset_peak_rss();
    let rss_before = rss_kib("VmRSS:");
    for mode in [
        Api::Endless,
        Api::LongerThanAnnounced,
        Api::Huge,
        Api::Slowloris,
        Api::Garbage,
    ] {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("addr");
        let written = Arc::new(AtomicU64::new(0));
        let server = tokio::spawn(hostile_api(l, mode, written.clone()));
        let shared = Shared::new(SharedConfig {
            default_source: TopologySource::NymApi(vec![
                Url::parse(&format!("http://{addr}/")).expect("url")
            ]),
            http_timeout: Duration::from_secs(3),
            ..SharedConfig::default()
        })
        .expect("shared");
        let r = tokio::time::timeout(BOUND, shared.topology(None))
            .await
            .unwrap_or_else(|_| panic!("{mode:?}: the fetch did not end"));
        let err = r
            .err()
            .unwrap_or_else(|| panic!("{mode:?}: a topology from a hostile directory"));
        let sent = written.load(Ordering::Relaxed);
        eprintln!(
            "hostile directory {mode:?}: {err} (at most {sent} bytes written on one connection)"
        );
        assert!(sent < READ_BOUND, "{mode:?}: the client read {sent} bytes");
        server.abort();
    }
    let peak = rss_kib("VmHWM:");
    assert!(rss_before > 0 && peak > 0, "memory not readable");
    let growth = peak.saturating_sub(rss_before);
    eprintln!(
        "hostile directory: peak RSS of the test process {peak} KiB (was {rss_before} KiB): \
         grew by {growth} KiB, bound {DIRECTORY_RSS_GROWTH_KIB} KiB"
    );
    assert!(
        growth < DIRECTORY_RSS_GROWTH_KIB,
        "the test process grew by {growth} KiB facing hostile directories"
    );
}

#[derive(Debug, Clone, Copy)]
enum Gw {
    /// A binary frame header announcing 2^40 bytes, then junk.
    TerabyteFrame,
    /// A 4 MiB binary message.
    Oversized,
    /// Text frames that are not JSON.
    GarbageText,
    /// Binary frames of random bytes.
    GarbageBinary,
    /// Handshake, then silence.
    Silent,
}

/// A websocket server that completes the upgrade, then misbehaves.
async fn hostile_gateway(l: TcpListener, mode: Gw, written: Arc<AtomicU64>) {
    loop {
        let Ok((mut s, _)) = l.accept().await else {
            return;
        };
        let written = written.clone();
        tokio::spawn(async move {
            let head = read_head(&mut s).await;
            let head = String::from_utf8_lossy(&head);
            let Some(key) = head.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("sec-websocket-key")
                    .then(|| v.trim().to_string())
            }) else {
                return;
            };
            let resp = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
                derive_accept_key(key.as_bytes())
            );
            if s.write_all(resp.as_bytes()).await.is_err() {
                return;
            }
            // Drain what the client sends meanwhile.
            let (mut rd, mut wr) = s.into_split();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while matches!(rd.read(&mut buf).await, Ok(n) if n > 0) {}
            });
            let frame = |opcode: u8, payload: &[u8]| {
                let mut f = vec![0x80 | opcode];
                match payload.len() {
                    n if n < 126 => f.push(n as u8),
                    n if n <= 0xffff => {
                        f.push(126);
                        f.extend_from_slice(&(n as u16).to_be_bytes());
                    }
                    n => {
                        f.push(127);
                        f.extend_from_slice(&(n as u64).to_be_bytes());
                    }
                }
                f.extend_from_slice(payload);
                f
            };
            let junk = vec![0x5au8; 64 * 1024];
            match mode {
                Gw::TerabyteFrame => {
                    let mut h = vec![0x82, 127];
                    h.extend_from_slice(&(1u64 << 40).to_be_bytes());
                    if wr.write_all(&h).await.is_err() {
                        return;
                    }
                    while wr.write_all(&junk).await.is_ok() {
                        written.fetch_add(junk.len() as u64, Ordering::Relaxed);
                    }
                }
                Gw::Oversized => {
                    let big = frame(0x2, &vec![0u8; 4 << 20]);
                    let _ = wr.write_all(&big).await;
                    written.fetch_add(big.len() as u64, Ordering::Relaxed);
                }
                Gw::GarbageText => {
                    for i in 0..10_000u32 {
                        let f = frame(0x1, format!("{{\"type\":\"nonsense{i}\"").as_bytes());
                        if wr.write_all(&f).await.is_err() {
                            return;
                        }
                        written.fetch_add(f.len() as u64, Ordering::Relaxed);
                    }
                }
                Gw::GarbageBinary => {
                    for i in 0..2_000u32 {
                        let payload: Vec<u8> = (0..(i % 3000)).map(|j| (j ^ i) as u8).collect();
                        let f = frame(0x2, &payload);
                        if wr.write_all(&f).await.is_err() {
                            return;
                        }
                        written.fetch_add(f.len() as u64, Ordering::Relaxed);
                    }
                }
                Gw::Silent => {}
            }
            // Keep the connection open (a hostile gateway does not hang up).
            tokio::time::sleep(BOUND * 2).await;
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_gateway_cannot_hang_or_flood_the_client() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let net = nymd_tests::fast_localnet().await;
    let gw = net.gateways()[0].clone();
    let gw_id = gw.id.to_string();
    let original: serde_json::Value =
        serde_json::from_slice(&std::fs::read(net.topology_path()).expect("topology file"))
            .expect("json");
    let tmp = tempfile::tempdir().expect("tmp");
    reset_peak_rss();
    let rss_before = rss_kib("VmRSS:");
    for mode in [
        Gw::TerabyteFrame,
        Gw::Oversized,
        Gw::GarbageText,
        Gw::GarbageBinary,
        Gw::Silent,
    ] {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = l.local_addr().expect("addr").port();
        let written = Arc::new(AtomicU64::new(0));
        let server = tokio::spawn(hostile_gateway(l, mode, written.clone()));
        // The real topology, with the gateway's client port pointing at the
        // hostile server.
        let mut topo = original.clone();
        topo["node_details"][&gw_id]["entry"]["clients_ws_port"] = port.into();
        let path = tmp.path().join(format!("{mode:?}.json"));
        std::fs::write(&path, serde_json::to_vec(&topo).expect("json")).expect("write");
        let shared = Shared::new(SharedConfig {
            default_source: TopologySource::File(path),
            ..SharedConfig::default()
        })
        .expect("shared");
        let keys = ClientKeys::generate(&mut rand::rngs::OsRng);
        let config = GatewayConfig {
            response_timeout: Duration::from_secs(3),
            ..GatewayConfig::default()
        };
        let r = tokio::time::timeout(
            BOUND,
            nymd_mixnet::register_with(
                &shared,
                None,
                &keys,
                GatewaySelection::Given(gw.identity.to_bytes()),
                &config,
            ),
        )
        .await
        .unwrap_or_else(|_| panic!("{mode:?}: registration did not end"));
        let err = r
            .err()
            .unwrap_or_else(|| panic!("{mode:?}: registered with a hostile gateway"));
        let sent = written.load(Ordering::Relaxed);
        eprintln!("hostile gateway {mode:?}: {err} (server wrote {sent} bytes)");
        assert!(sent < READ_BOUND, "{mode:?}: the client read {sent} bytes");
        server.abort();
    }
    let peak = rss_kib("VmHWM:");
    assert!(rss_before > 0 && peak > 0, "memory not readable");
    let growth = peak.saturating_sub(rss_before);
    eprintln!(
        "hostile gateway: peak RSS of the test process {peak} KiB (was {rss_before} KiB): \
         grew by {growth} KiB, bound {GATEWAY_RSS_GROWTH_KIB} KiB"
    );
    assert!(
        growth < GATEWAY_RSS_GROWTH_KIB,
        "the test process grew by {growth} KiB facing hostile gateways"
    );
    net.shutdown().await;
}
