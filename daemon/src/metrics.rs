//! The opt-in metrics endpoint: Prometheus and OpenMetrics text over HTTP.
//!
//! Off unless `[metrics] listen` (or `--metrics-listen`) names an address.
//! `GET /metrics` answers with the OpenMetrics text format when the scraper
//! asks for it (`Accept: application/openmetrics-text`, as Prometheus does)
//! and with Prometheus' text format 0.0.4 otherwise. The values are read
//! from the [`Manager`] at each scrape (`prometheus-client`'s
//! [`Collector`]): nothing is counted twice and nothing runs between
//! scrapes.
//!
//! Per identity, labelled `identity`: packets and bytes sent and received
//! (`kind` = `real` or `cover`), acks, retransmissions, messages received,
//! duplicate fragments, gateway reconnections (counters, since the
//! identity's client last started: a restart resets them, which Prometheus'
//! `rate()` handles), queued packets, unacknowledged fragments, outbox and
//! inbox messages, gateway connected and round-trip time, bandwidth left,
//! connected apps, memory held per store, uptime and the state (gauges);
//! for identities with a SOCKS5 proxy, its connections (open, accepted,
//! refused, failed) and bytes each way.
//! For the daemon: identities by state, the memory budget's use and limit,
//! app connections and their limit, resident memory, version.
//!
//! The HTTP server is a few lines on tokio: one request per connection
//! (`Connection: close`), the request head read within
//! [`REQUEST_DEADLINE`] and at most [`MAX_REQUEST_HEAD`] bytes, at most
//! [`MAX_CONNECTIONS`] at once (more are closed at once). No HTTP library:
//! a scrape endpoint needs none of hyper's features, and it keeps the build
//! small.
//!
//! Identity names and traffic volumes are visible to whoever can connect,
//! so an address other than loopback is refused unless
//! `allow_remote_metrics = true`.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::manager::{Manager, RunState};
use nymd_mixnet::GatewayState;

/// Port of the example address in the docs and the shipped config.
pub const DEFAULT_PORT: u16 = 9477;
/// A request head (request line and headers) larger than this is refused.
pub const MAX_REQUEST_HEAD: usize = 8 * 1024;
/// The request head must arrive, and the answer be written, within this.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(10);
/// Scrapes served at once; another connection is closed at once.
pub const MAX_CONNECTIONS: usize = 16;

const OPENMETRICS_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const PROMETHEUS_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `[metrics]` section of `nymd.toml`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    /// Where to serve `GET /metrics`; `None`: no endpoint.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
    /// Allow an address other than loopback.
    #[serde(default)]
    pub allow_remote_metrics: bool,
}

/// Errors setting up the endpoint.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// A non-loopback address without `allow_remote_metrics`.
    #[error(
        "the metrics address {0} is not a loopback address: anyone who can reach it would read \
         identity names and traffic; use 127.0.0.1:{DEFAULT_PORT}, or set \
         allow_remote_metrics = true in [metrics] of nymd.toml"
    )]
    Remote(SocketAddr),
    /// The address cannot be bound.
    #[error("cannot listen for metrics on {addr}: {source} (is another program using the port? change [metrics] listen or --metrics-listen)")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Whether `addr` may be used under `allow_remote`.
pub fn check_address(addr: SocketAddr, allow_remote: bool) -> Result<(), MetricsError> {
    let loopback = match addr.ip() {
        IpAddr::V4(a) => a.is_loopback(),
        IpAddr::V6(a) => a.is_loopback() || a.to_ipv4_mapped().is_some_and(|a| a.is_loopback()),
    };
    if loopback || allow_remote {
        Ok(())
    } else {
        Err(MetricsError::Remote(addr))
    }
}

/// Bind the endpoint's listener (checked with [`check_address`] first).
pub async fn bind(addr: SocketAddr, allow_remote: bool) -> Result<TcpListener, MetricsError> {
    check_address(addr, allow_remote)?;
    TcpListener::bind(addr)
        .await
        .map_err(|source| MetricsError::Bind { addr, source })
}

/// The registry of everything nymd exports, read from `manager` at each
/// scrape.
pub fn registry(manager: Manager, max_app_connections: usize) -> Registry {
    let mut registry = Registry::with_prefix("nymd");
    registry.register(
        "build",
        "nymd's version",
        Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
    );
    registry.register_collector(Box::new(ManagerCollector {
        manager,
        max_app_connections,
    }));
    registry
}

/// The registry as OpenMetrics text (`openmetrics = true`, ends with
/// `# EOF`) or Prometheus text 0.0.4.
pub fn encode(registry: &Registry, openmetrics: bool) -> Result<String, std::fmt::Error> {
    let mut out = String::new();
    if openmetrics {
        prometheus_client::encoding::text::encode(&mut out, registry)?;
    } else {
        prometheus_client::encoding::prometheus_text::encode(&mut out, registry)?;
    }
    Ok(out)
}

/// Reads the manager's table at each scrape.
#[derive(Debug)]
struct ManagerCollector {
    manager: Manager,
    max_app_connections: usize,
}

/// The state names used as `state` label values.
const STATES: [&str; 5] = ["running", "starting", "reconnecting", "failed", "stopped"];

fn state_name(s: &RunState) -> &'static str {
    match s {
        RunState::Running => "running",
        RunState::Starting => "starting",
        RunState::Reconnecting => "reconnecting",
        RunState::Failed { .. } => "failed",
        RunState::Stopped => "stopped",
    }
}

/// One metric family at a time: its descriptor, then a sample per label set.
struct Family<'e, 'a> {
    encoder: &'e mut DescriptorEncoder<'a>,
}

impl Family<'_, '_> {
    /// A family of `kind` with one sample per label set (none at all when
    /// there is no sample: the exposition format has no empty families).
    fn family<'l, M: EncodeMetric>(
        &mut self,
        name: &str,
        help: &str,
        unit: Option<&Unit>,
        kind: MetricType,
        samples: impl Iterator<Item = (Vec<(&'static str, &'l str)>, M)>,
    ) -> Result<(), std::fmt::Error> {
        let mut samples = samples.peekable();
        if samples.peek().is_none() {
            return Ok(());
        }
        let mut m = self.encoder.encode_descriptor(name, help, unit, kind)?;
        for (labels, v) in samples {
            v.encode(m.encode_family(&labels)?)?;
        }
        Ok(())
    }

    fn counter<'l>(
        &mut self,
        name: &str,
        help: &str,
        unit: Option<&Unit>,
        samples: impl IntoIterator<Item = (Vec<(&'static str, &'l str)>, u64)>,
    ) -> Result<(), std::fmt::Error> {
        let samples = samples.into_iter().map(|(l, v)| (l, ConstCounter::new(v)));
        self.family(name, help, unit, MetricType::Counter, samples)
    }

    fn gauge<'l, N: prometheus_client::encoding::EncodeGaugeValue>(
        &mut self,
        name: &str,
        help: &str,
        unit: Option<&Unit>,
        samples: impl IntoIterator<Item = (Vec<(&'static str, &'l str)>, N)>,
    ) -> Result<(), std::fmt::Error> {
        let samples = samples.into_iter().map(|(l, v)| (l, ConstGauge::new(v)));
        self.family(name, help, unit, MetricType::Gauge, samples)
    }
}

impl Collector for ManagerCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let list = self.manager.list();
        let broken = self.manager.broken().len();
        let mut f = Family {
            encoder: &mut encoder,
        };

        // The daemon.
        let mut by_state: Vec<(Vec<(&'static str, &str)>, i64)> = STATES
            .iter()
            .map(|s| {
                let n = list.iter().filter(|i| state_name(&i.state) == *s).count();
                (vec![("state", *s)], i64::try_from(n).unwrap_or(i64::MAX))
            })
            .collect();
        by_state.push((
            vec![("state", "broken")],
            i64::try_from(broken).unwrap_or(i64::MAX),
        ));
        f.gauge(
            "identities",
            "Identities by state (broken: folders that could not be loaded)",
            None,
            by_state,
        )?;
        let apps: usize = list.iter().map(|i| i.connected_apps).sum();
        f.gauge(
            "app_connections",
            "Apps connected to the websocket ports of all identities",
            None,
            [(Vec::new(), apps as u64)],
        )?;
        f.gauge(
            "app_connections_limit",
            "[daemon] max_app_connections",
            None,
            [(Vec::new(), self.max_app_connections as u64)],
        )?;
        let budget = self.manager.shared().memory_budget();
        f.gauge(
            "memory_budget_used",
            "Memory all identities hold for what other parties send them ([daemon] memory_budget_mib)",
            Some(&Unit::Bytes),
            [(Vec::new(), budget.used())],
        )?;
        f.gauge(
            "memory_budget_limit",
            "[daemon] memory_budget_mib in bytes",
            Some(&Unit::Bytes),
            [(Vec::new(), budget.limit())],
        )?;
        if let Some(rss) = resident_memory_bytes() {
            f.gauge(
                "process_resident_memory",
                "Resident memory of the nymd process",
                Some(&Unit::Bytes),
                [(Vec::new(), rss)],
            )?;
        }

        // Every identity.
        fn id(i: &crate::manager::IdentityInfo) -> Vec<(&'static str, &str)> {
            vec![("identity", i.id.as_str())]
        }
        f.gauge(
            "identity_state",
            "1 for the identity's current state, 0 for the others",
            None,
            list.iter().flat_map(|i| {
                let now = state_name(&i.state);
                STATES.iter().map(move |s| {
                    (
                        vec![("identity", i.id.as_str()), ("state", *s)],
                        i64::from(now == *s),
                    )
                })
            }),
        )?;
        f.gauge(
            "identity_connected_apps",
            "Apps connected to the identity's websocket port",
            None,
            list.iter().map(|i| (id(i), i.connected_apps as u64)),
        )?;
        f.gauge(
            "identity_inbox_messages",
            "Received messages waiting for an app",
            None,
            list.iter().map(|i| (id(i), i.inbox_messages)),
        )?;

        // Counters of the running client (absent while stopped).
        let running: Vec<_> = list
            .iter()
            .filter_map(|i| i.stats.as_ref().map(|s| (i, s)))
            .collect();
        let kinds = |real: fn(&nymd_mixnet::ClientStats) -> u64,
                     cover: fn(&nymd_mixnet::ClientStats) -> u64| {
            running.iter().flat_map(move |(i, s)| {
                [
                    (vec![("identity", i.id.as_str()), ("kind", "real")], real(s)),
                    (
                        vec![("identity", i.id.as_str()), ("kind", "cover")],
                        cover(s),
                    ),
                ]
            })
        };
        f.counter(
            "identity_sent_packets",
            "Sphinx packets sent to the gateway (real: messages, replies, acks; cover: loop cover)",
            None,
            kinds(|s| s.real_packets_sent, |s| s.cover_packets_sent),
        )?;
        f.counter(
            "identity_sent",
            "Bytes of the gateway frames of those packets",
            Some(&Unit::Bytes),
            kinds(|s| s.real_bytes_sent, |s| s.cover_bytes_sent),
        )?;
        f.counter(
            "identity_received_packets",
            "Packets received from the gateway (real: message fragments; cover: loop cover)",
            None,
            kinds(|s| s.real_packets_received, |s| s.cover_packets_received),
        )?;
        f.counter(
            "identity_received",
            "Bytes of those packets' plaintexts",
            Some(&Unit::Bytes),
            kinds(|s| s.real_bytes_received, |s| s.cover_bytes_received),
        )?;
        let each = |v: fn(&nymd_mixnet::ClientStats) -> u64| {
            running.iter().map(move |(i, s)| (id(i), v(s)))
        };
        f.counter(
            "identity_acks_received",
            "Acknowledgements of sent fragments received",
            None,
            each(|s| s.acks_received),
        )?;
        f.counter(
            "identity_retransmissions",
            "Fragments sent again because no acknowledgement came in time",
            None,
            each(|s| s.retransmissions),
        )?;
        f.counter(
            "identity_messages_received",
            "Whole messages received (reassembled)",
            None,
            each(|s| s.messages_received),
        )?;
        f.counter(
            "identity_duplicate_fragments",
            "Received fragments ignored as duplicates",
            None,
            each(|s| s.duplicate_fragments),
        )?;
        f.counter(
            "identity_gateway_reconnects",
            "Successful reconnections to the gateway",
            None,
            each(|s| s.reconnects),
        )?;
        f.gauge(
            "identity_queued_packets",
            "Packets waiting to be sent (all lanes)",
            None,
            each(|s| s.queued_packets),
        )?;
        f.gauge(
            "identity_unacked_fragments",
            "Fragments sent and not acknowledged yet",
            None,
            each(|s| s.unacked_fragments),
        )?;
        f.gauge(
            "identity_outbox_messages",
            "Sent messages kept in the outbox until acknowledged",
            None,
            each(|s| s.outbox_messages),
        )?;
        f.gauge(
            "identity_memory",
            "Memory the identity holds for what others send it, by store (reassembly: incomplete \
             messages; surbs: reply SURBs received; reply_keys: keys of the reply SURBs handed \
             out; received: messages on their way to the app port; socks: the network \
             requester's answers waiting for SOCKS programs)",
            Some(&Unit::Bytes),
            running.iter().flat_map(|(i, s)| {
                let m = &s.memory;
                let socks = i.socks_stats.map_or(0, |s| s.buffered);
                [
                    ("reassembly", m.reassembly_bytes),
                    ("surbs", m.surb_store_bytes),
                    ("reply_keys", m.reply_key_bytes),
                    ("received", m.received_bytes),
                    ("socks", socks),
                ]
                .map(|(store, v)| (vec![("identity", i.id.as_str()), ("store", store)], v))
            }),
        )?;
        f.gauge(
            "identity_gateway_connected",
            "1 while the gateway connection is up",
            None,
            running
                .iter()
                .map(|(i, s)| (id(i), i64::from(s.gateway_state == GatewayState::Connected))),
        )?;
        f.gauge(
            "identity_gateway_rtt",
            "Last measured round trip of the gateway connection",
            Some(&Unit::Seconds),
            running
                .iter()
                .filter_map(|(i, s)| s.gateway_rtt.map(|r| (id(i), r.as_secs_f64()))),
        )?;
        f.gauge(
            "identity_gateway_bandwidth_remaining",
            "Bandwidth the gateway last reported as left",
            Some(&Unit::Bytes),
            running.iter().map(|(i, s)| (id(i), s.bandwidth_remaining)),
        )?;
        f.gauge(
            "identity_uptime",
            "Time since the identity's client last started (its counters start at 0 then)",
            Some(&Unit::Seconds),
            list.iter()
                .filter_map(|i| i.uptime.map(|u| (id(i), u.as_secs_f64()))),
        )?;

        // SOCKS5 proxies of running identities that have one.
        let socks: Vec<_> = list
            .iter()
            .filter(|i| i.socks5.is_some())
            .filter_map(|i| i.socks_stats.map(|s| (i, s)))
            .collect();
        let socks_each =
            |v: fn(&crate::socks::SocksStats) -> u64| socks.iter().map(move |(i, s)| (id(i), v(s)));
        f.gauge(
            "identity_socks5_connections",
            "SOCKS5 connections open now",
            None,
            socks_each(|s| s.open),
        )?;
        f.counter(
            "identity_socks5_accepted_connections",
            "SOCKS5 connections accepted (past their handshake and the connection cap)",
            None,
            socks_each(|s| s.total),
        )?;
        f.counter(
            "identity_socks5_refused_connections",
            "SOCKS5 connections refused here: user not allowed, connection cap, bad handshake",
            None,
            socks_each(|s| s.refused),
        )?;
        f.counter(
            "identity_socks5_failed_connections",
            "SOCKS5 CONNECTs that failed: refused by the network requester, unreachable, no answer in time",
            None,
            socks_each(|s| s.failed),
        )?;
        f.counter(
            "identity_socks5_sent",
            "Bytes read from SOCKS5 clients and sent into the mixnet",
            Some(&Unit::Bytes),
            socks_each(|s| s.bytes_sent),
        )?;
        f.counter(
            "identity_socks5_received",
            "Bytes received through the mixnet and written to SOCKS5 clients",
            Some(&Unit::Bytes),
            socks_each(|s| s.bytes_received),
        )?;
        Ok(())
    }
}

/// `VmRSS` of this process, from `/proc/self/status`.
fn resident_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// Serve scrapes on `listener` until `cancel`. Connections are spawned on
/// `tracker`.
pub async fn serve(
    listener: TcpListener,
    registry: Arc<Registry>,
    cancel: CancellationToken,
    tracker: TaskTracker,
) {
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, peer) = tokio::select! {
            _ = cancel.cancelled() => return,
            a = listener.accept() => match a {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!("metrics listener accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "metrics: {MAX_CONNECTIONS} scrapes in progress; closing");
            continue;
        };
        let registry = registry.clone();
        let cancel = cancel.clone();
        tracker.spawn(async move {
            let _permit = permit;
            tokio::select! {
                _ = cancel.cancelled() => {}
                r = tokio::time::timeout(REQUEST_DEADLINE, answer(stream, &registry)) => {
                    match r {
                        Ok(Err(e)) => tracing::debug!(%peer, "metrics request failed: {e}"),
                        Err(_) => tracing::debug!(%peer, "metrics request timed out"),
                        Ok(Ok(())) => {}
                    }
                }
            }
        });
    }
}

/// A parsed request head.
#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    /// `GET`, `HEAD`, ...
    pub method: String,
    /// The path, without a query.
    pub path: String,
    /// Whether the scraper accepts OpenMetrics text.
    pub openmetrics: bool,
}

/// Parse a request head (up to and without the blank line).
pub fn parse_request(head: &[u8]) -> Option<Request> {
    let text = std::str::from_utf8(head).ok()?;
    let mut lines = text.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_owned();
    let target = first.next()?;
    let version = first.next()?;
    if !version.starts_with("HTTP/1.") || first.next().is_some() {
        return None;
    }
    let path = target.split('?').next().unwrap_or(target).to_owned();
    let openmetrics = lines.any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("accept")
                && v.to_ascii_lowercase()
                    .contains("application/openmetrics-text")
        })
    });
    Some(Request {
        method,
        path,
        openmetrics,
    })
}

/// Read one request head from `stream` (at most [`MAX_REQUEST_HEAD`]).
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Option<Vec<u8>>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            buf.truncate(end);
            return Ok(Some(buf));
        }
        if buf.len() > MAX_REQUEST_HEAD {
            return Ok(None);
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn answer(mut stream: TcpStream, registry: &Registry) -> std::io::Result<()> {
    let Some(head) = read_head(&mut stream).await? else {
        return respond(
            &mut stream,
            "400 Bad Request",
            "text/plain",
            b"bad request\n",
            true,
        )
        .await;
    };
    let Some(req) = parse_request(&head) else {
        return respond(
            &mut stream,
            "400 Bad Request",
            "text/plain",
            b"bad request\n",
            true,
        )
        .await;
    };
    let head_only = req.method == "HEAD";
    if req.method != "GET" && !head_only {
        return respond(
            &mut stream,
            "405 Method Not Allowed",
            "text/plain",
            b"only GET /metrics\n",
            false,
        )
        .await;
    }
    if req.path != "/metrics" {
        return respond(
            &mut stream,
            "404 Not Found",
            "text/plain",
            b"nymd serves its metrics at /metrics\n",
            head_only,
        )
        .await;
    }
    match encode(registry, req.openmetrics) {
        Ok(body) => {
            let ty = if req.openmetrics {
                OPENMETRICS_TYPE
            } else {
                PROMETHEUS_TYPE
            };
            respond(&mut stream, "200 OK", ty, body.as_bytes(), head_only).await
        }
        Err(_) => {
            respond(
                &mut stream,
                "500 Internal Server Error",
                "text/plain",
                b"cannot encode the metrics\n",
                head_only,
            )
            .await
        }
    }
}

async fn respond(
    stream: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &[u8],
    head_only: bool,
) -> std::io::Result<()> {
    let mut head = String::with_capacity(128);
    let _ = write!(
        head,
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if status.starts_with("405") {
        head.push_str("Allow: GET, HEAD\r\n");
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    if !head_only {
        stream.write_all(body).await?;
    }
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_only_unless_allowed() {
        let a = |s: &str| s.parse::<SocketAddr>().expect("addr");
        assert!(check_address(a("127.0.0.1:9477"), false).is_ok());
        assert!(check_address(a("127.8.9.1:9477"), false).is_ok());
        assert!(check_address(a("[::1]:9477"), false).is_ok());
        assert!(check_address(a("[::ffff:127.0.0.1]:9477"), false).is_ok());
        let err = check_address(a("0.0.0.0:9477"), false).expect_err("any address");
        assert!(
            err.to_string().contains("allow_remote_metrics = true"),
            "{err}"
        );
        assert!(check_address(a("[::]:9477"), false).is_err());
        assert!(check_address(a("192.0.2.7:9477"), false).is_err());
        assert!(check_address(a("0.0.0.0:9477"), true).is_ok());
    }

    #[test]
    fn request_heads() {
        let r = parse_request(
            b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\nAccept: application/openmetrics-text;version=1.0.0,text/plain;q=0.5",
        )
        .expect("parses");
        assert_eq!(
            r,
            Request {
                method: "GET".into(),
                path: "/metrics".into(),
                openmetrics: true
            }
        );
        let r = parse_request(b"HEAD / HTTP/1.0").expect("parses");
        assert_eq!(
            (r.method.as_str(), r.path.as_str(), r.openmetrics),
            ("HEAD", "/", false)
        );
        assert!(parse_request(b"GET /metrics").is_none());
        assert!(parse_request(b"GET /metrics SPDY/3").is_none());
        assert!(parse_request(b"GET /a b HTTP/1.1").is_none());
        assert!(parse_request(&[0xff, 0xfe]).is_none());
        assert!(parse_request(b"").is_none());
    }

    #[test]
    fn the_shipped_config_section_parses() {
        let s: MetricsSection =
            toml::from_str("listen = \"127.0.0.1:9477\"\nallow_remote_metrics = false\n")
                .expect("parses");
        assert_eq!(
            s.listen,
            Some(SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT)))
        );
        assert!(toml::from_str::<MetricsSection>("listen = \"localhost\"\n").is_err());
        assert!(toml::from_str::<MetricsSection>("lisen = \"127.0.0.1:1\"\n").is_err());
    }
}
