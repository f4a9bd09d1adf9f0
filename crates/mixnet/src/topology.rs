//! Topology sources and the cache shared by every identity of a daemon.
//!
//! One [`Shared`] per daemon holds the HTTP client and one cache per topology
//! source. A cache fetches once when the first identity needs it, then a
//! background task refreshes it every `refresh_interval` (5 min). A failed
//! refresh keeps the last good topology; after `max_refresh_failures` (10)
//! consecutive failures the topology is cleared until a refresh succeeds
//! (nym-client's behaviour). The task ends when no identity uses the source.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use nymd_proto::keys::VerifyingKey;
use nymd_proto::topology::api::{
    PageCollector, PageProgress, RewardedSetResponse, SkimmedNodesResponse,
    SkimmedNodesWithMetadata,
};
use nymd_proto::topology::{NymTopology, PerformanceThresholds};
pub use reqwest::Url;
use serde_json::de::from_slice;
use tokio::sync::{watch, Notify};

use crate::shared::SharedConfig;

/// nym-api route: key-rotation schedule.
pub const ROUTE_KEY_ROTATION: &str = "v1/epoch/key-rotation-info";
/// nym-api route: rewarded set.
pub const ROUTE_REWARDED_SET: &str = "v1/nym-nodes/rewarded-set";
/// nym-api route: active mixnodes (paged).
pub const ROUTE_MIXNODES: &str = "v2/unstable/nym-nodes/skimmed/mixnodes/active";
/// nym-api route: entry gateways (paged).
pub const ROUTE_GATEWAYS: &str = "v2/unstable/nym-nodes/skimmed/entry-gateways";

/// Nym mainnet's nym-api.
pub const MAINNET_NYM_API: &str = "https://validator.nymtech.net/api/";

/// Largest nym-api response body read.
const MAX_BODY: usize = 32 * 1024 * 1024;
/// Most pages read for one listing.
const MAX_PAGES: u32 = 1_000;

/// Where an identity gets its view of the network.
#[derive(Debug, Clone, PartialEq)]
pub enum TopologySource {
    /// nym-api base URLs (tried in turn; a failing one rotates to the end).
    NymApi(Vec<Url>),
    /// A topology file in nym-client's `--custom-mixnet` format, re-read on
    /// every refresh.
    File(PathBuf),
    /// A fixed topology (tests, embedded networks).
    Fixed(NymTopology),
}

impl TopologySource {
    pub(crate) fn cache_key(&self) -> Option<String> {
        match self {
            TopologySource::NymApi(urls) => Some(format!(
                "api:{}",
                urls.iter().map(Url::as_str).collect::<Vec<_>>().join(" ")
            )),
            TopologySource::File(p) => Some(format!("file:{}", p.display())),
            TopologySource::Fixed(_) => None,
        }
    }
}

pub(crate) type TopologyState = Option<Arc<NymTopology>>;

pub(crate) struct CacheEntry {
    pub(crate) rx: watch::Receiver<TopologyState>,
    /// Asks the refresher for a fetch before the interval is up.
    pub(crate) wake: Arc<Notify>,
}

/// A live view of one source's topology, shared by identities.
#[derive(Clone)]
pub struct TopologyHandle {
    pub(crate) entry: Arc<CacheEntry>,
}

impl std::fmt::Debug for TopologyHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopologyHandle")
            .field("available", &self.current().is_some())
            .finish()
    }
}

impl TopologyHandle {
    /// The current topology, `None` after too many failed refreshes.
    pub fn current(&self) -> Option<Arc<NymTopology>> {
        self.entry.rx.borrow().clone()
    }

    /// Watch for changes.
    pub fn watch(&self) -> watch::Receiver<TopologyState> {
        self.entry.rx.clone()
    }

    /// Ask for a fetch now instead of at the next interval (at most one
    /// per [`MIN_FORCED_REFRESH`]): the topology lacks something an
    /// identity needs (its gateway after an outage), and waiting minutes
    /// for the next refresh would keep the identity down after the node is
    /// back. Does nothing for a fixed topology.
    pub fn refresh_soon(&self) {
        self.entry.wake.notify_one();
    }

    pub(crate) fn fixed(topology: NymTopology) -> Self {
        let (_tx, rx) = watch::channel(Some(Arc::new(topology)));
        Self {
            entry: Arc::new(CacheEntry {
                rx,
                wake: Arc::new(Notify::new()),
            }),
        }
    }
}

/// How often the refresher compares the wall clock with the monotonic one.
/// While a machine is suspended its monotonic clock stops: without this
/// check a refresh due "in 5 minutes" would come 5 minutes after resume,
/// with a topology (and key rotation) hours old.
const WALL_CHECK: Duration = Duration::from_secs(10);

/// Fetches asked for with [`TopologyHandle::refresh_soon`] come at most
/// this often (a source that keeps lacking a gateway is not hammered).
pub const MIN_FORCED_REFRESH: Duration = Duration::from_secs(5);

pub(crate) async fn refresher(
    fetcher: Fetcher,
    tx: watch::Sender<TopologyState>,
    wake: Arc<Notify>,
    interval: Duration,
    max_failures: u32,
) {
    refresher_with_clock(fetcher, tx, wake, interval, max_failures, SystemTime::now).await
}

/// Whether a refresh is due: `interval` passed on the monotonic clock, or
/// the wall clock moved by `interval` or went back (suspend and resume, a
/// clock step).
fn refresh_due(mono: Duration, wall: Result<Duration, Duration>, interval: Duration) -> bool {
    mono >= interval || wall.map_or(true, |w| w >= interval)
}

async fn refresher_with_clock(
    mut fetcher: Fetcher,
    tx: watch::Sender<TopologyState>,
    wake: Arc<Notify>,
    interval: Duration,
    max_failures: u32,
    wall: impl Fn() -> SystemTime,
) {
    let mut failures = 0u32;
    let mut last_mono = tokio::time::Instant::now();
    let mut last_wall = wall();
    loop {
        let forced = tokio::select! {
            _ = tx.closed() => return,
            _ = tokio::time::sleep(WALL_CHECK.min(interval)) => false,
            _ = wake.notified() => true,
        };
        if forced {
            // Not more often than MIN_FORCED_REFRESH.
            let since = last_mono.elapsed();
            if since < MIN_FORCED_REFRESH {
                tokio::select! {
                    _ = tx.closed() => return,
                    _ = tokio::time::sleep(MIN_FORCED_REFRESH - since) => {}
                }
            }
            tracing::debug!("refreshing the topology before its interval (asked for)");
        }
        let mono = last_mono.elapsed();
        let wall_now = wall();
        let walled = wall_now.duration_since(last_wall).map_err(|e| e.duration());
        if !forced && !refresh_due(mono, walled, interval) {
            continue;
        }
        if !forced && mono < interval {
            tracing::info!(
                "the wall clock moved by {walled:?} while {mono:?} passed (suspend and resume, or a clock step); refreshing the topology now"
            );
        }
        last_mono = tokio::time::Instant::now();
        last_wall = wall_now;
        match fetcher.fetch().await {
            Ok(t) => {
                failures = 0;
                tx.send_replace(Some(Arc::new(t)));
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                if failures > max_failures {
                    tracing::warn!(error = %e, failures, "topology refresh failed again; clearing the topology");
                    tx.send_replace(None);
                } else {
                    tracing::warn!(error = %e, failures, "failed to obtain new network topology; keeping the old one");
                }
            }
        }
    }
}

pub(crate) struct Fetcher {
    http: reqwest::Client,
    source: TopologySource,
    thresholds: PerformanceThresholds,
}

impl Fetcher {
    pub(crate) fn new(
        http: reqwest::Client,
        source: TopologySource,
        config: &SharedConfig,
    ) -> Self {
        Self {
            http,
            source,
            thresholds: config.thresholds,
        }
    }

    pub(crate) async fn fetch(&mut self) -> Result<NymTopology, String> {
        match &mut self.source {
            TopologySource::Fixed(t) => Ok(t.clone()),
            TopologySource::File(path) => {
                let bytes = std::fs::read(&*path)
                    .map_err(|e| format!("reading {}: {e}", path.display()))?;
                NymTopology::from_file_slice(&bytes).map_err(|e| {
                    format!(
                        "failed to load custom topology using path '{}'. detailed message: {e}",
                        path.display()
                    )
                })
            }
            TopologySource::NymApi(urls) => {
                if urls.is_empty() {
                    return Err("no nym-api URL configured".into());
                }
                let mut last = String::new();
                for _ in 0..urls.len() {
                    let Some(base) = urls.first().cloned() else {
                        break;
                    };
                    match fetch_from_api(&self.http, &base, self.thresholds).await {
                        Ok(t) => return Ok(t),
                        Err(e) => {
                            tracing::warn!(api = %base, error = %e, "failed to get network nodes");
                            last = e;
                            urls.rotate_left(1);
                        }
                    }
                }
                Err(last)
            }
        }
    }

    /// nym-client reads the key-rotation schedule at start. The parity
    /// used for packets comes from the node listings' metadata, so a
    /// failure here is only logged.
    pub(crate) async fn check_key_rotation(&self) {
        if let TopologySource::NymApi(urls) = &self.source {
            if let Some(base) = urls.first() {
                match get_json::<nymd_proto::topology::api::KeyRotationInfoResponse>(
                    &self.http,
                    base,
                    ROUTE_KEY_ROTATION,
                    None,
                )
                .await
                {
                    Ok(info) => {
                        tracing::debug!(rotation = ?info.current_key_rotation_id(), "key rotation info")
                    }
                    Err(e) => tracing::warn!(error = %e, "could not read key-rotation-info"),
                }
            }
        }
    }
}

fn join(base: &Url, route: &str) -> Result<Url, String> {
    let mut base = base.clone();
    if !base.path().ends_with('/') {
        let p = format!("{}/", base.path());
        base.set_path(&p);
    }
    base.join(route)
        .map_err(|e| format!("bad URL {base}{route}: {e}"))
}

async fn get_json<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    base: &Url,
    route: &str,
    page: Option<u32>,
) -> Result<T, String> {
    let mut url = join(base, route)?;
    if let Some(p) = page {
        url.query_pairs_mut().append_pair("page", &p.to_string());
    }
    let mut resp = http
        .get(url.clone())
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| format!("GET {url}: {e}"))?;
    // A response announcing more than the cap is refused before reading.
    if let Some(len) = resp.content_length() {
        if len > MAX_BODY as u64 {
            return Err(format!(
                "GET {url}: response of {len} bytes is larger than {MAX_BODY} bytes"
            ));
        }
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| format!("GET {url}: {e}"))? {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(format!("GET {url}: response larger than {MAX_BODY} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    from_slice(&body).map_err(|e| format!("GET {url}: {e}"))
}

async fn get_listing(
    http: &reqwest::Client,
    base: &Url,
    route: &str,
) -> Result<SkimmedNodesWithMetadata, String> {
    let mut collector = PageCollector::new();
    let mut page = 0u32;
    loop {
        let resp: SkimmedNodesResponse = get_json(http, base, route, Some(page)).await?;
        match collector.push(resp).map_err(|e| e.to_string())? {
            PageProgress::Complete => break,
            PageProgress::NeedPage(p) if p < MAX_PAGES => page = p,
            PageProgress::NeedPage(_) => return Err("too many pages".into()),
        }
    }
    collector.finish().map_err(|e| e.to_string())
}

async fn fetch_from_api(
    http: &reqwest::Client,
    base: &Url,
    thresholds: PerformanceThresholds,
) -> Result<NymTopology, String> {
    let started = Instant::now();
    let (rewarded, mixnodes, gateways) = tokio::try_join!(
        get_json::<RewardedSetResponse>(http, base, ROUTE_REWARDED_SET, None),
        get_listing(http, base, ROUTE_MIXNODES),
        get_listing(http, base, ROUTE_GATEWAYS),
    )?;
    let topology = NymTopology::from_api(&rewarded, &mixnodes, &gateways, thresholds)
        .map_err(|e| e.to_string())?;
    if !topology.is_routable() {
        return Err(
            "the current filtered active topology can't be used to construct any packets".into(),
        );
    }
    tracing::debug!(nodes = topology.nodes().len(), took = ?started.elapsed(), "fetched topology");
    Ok(topology)
}

/// Gateways a new identity may register with: the rewarded entry gateways
/// that announce a websocket, or (topology files often have no entry set)
/// any node declaring the entry role.
pub(crate) fn gateway_candidates(
    topology: &NymTopology,
) -> Vec<(VerifyingKey, String, Option<String>)> {
    let collect = |nodes: Vec<&nymd_proto::topology::RoutingNode>| {
        nodes
            .into_iter()
            .filter_map(|n| {
                let l = n.ws_listeners(false)?;
                Some((n.identity_key, l.primary, l.fallback))
            })
            .collect::<Vec<_>>()
    };
    let rewarded = collect(topology.entry_gateways().collect());
    if !rewarded.is_empty() {
        return rewarded;
    }
    collect(topology.entry_capable_nodes().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Shared;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[test]
    fn refreshes_are_due_on_either_clock() {
        let i = Duration::from_secs(300);
        let s = Duration::from_secs;
        assert!(!refresh_due(s(10), Ok(s(10)), i));
        assert!(refresh_due(s(300), Ok(s(300)), i));
        // Suspended for an hour: the monotonic clock saw 10 s.
        assert!(refresh_due(s(10), Ok(s(3600)), i));
        // The wall clock stepped back.
        assert!(refresh_due(s(10), Err(s(5)), i));
    }

    /// A suspend (wall clock jumps an hour, the monotonic clock does not)
    /// brings a refresh within one check, not at the next interval.
    #[tokio::test(start_paused = true)]
    async fn a_suspend_triggers_a_refresh_at_once() {
        let shared = Shared::new(SharedConfig::default()).expect("shared");
        let fetcher = Fetcher::new(
            shared.http().clone(),
            TopologySource::Fixed(NymTopology::default()),
            &SharedConfig::default(),
        );
        let (tx, mut rx) = watch::channel(None);
        let offset = Arc::new(AtomicU64::new(0));
        let o = offset.clone();
        let base = SystemTime::now();
        let wall = move || base + Duration::from_secs(o.load(Ordering::Relaxed));
        let interval = Duration::from_secs(300);
        let task = tokio::spawn(refresher_with_clock(
            fetcher,
            tx,
            Arc::new(Notify::new()),
            interval,
            3,
            wall,
        ));

        // 60 s on both clocks: nothing due.
        offset.store(60, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(
            !rx.has_changed().expect("open"),
            "no refresh before the interval"
        );

        // Resume after an hour: the wall clock jumped.
        offset.store(60 + 3600, Ordering::Relaxed);
        tokio::time::sleep(WALL_CHECK + Duration::from_secs(1)).await;
        assert!(rx.has_changed().expect("open"), "refreshed after the jump");
        rx.borrow_and_update();

        // And then on the normal schedule again, not in a loop.
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(!rx.has_changed().expect("open"));
        tokio::time::sleep(interval).await;
        assert!(rx.has_changed().expect("open"));
        drop(rx);
        task.abort();
    }

    /// A fetch asked for comes at once (or MIN_FORCED_REFRESH after the
    /// last one), not at the next interval; asking again and again does
    /// not fetch more often than that.
    #[tokio::test(start_paused = true)]
    async fn a_refresh_asked_for_comes_before_the_interval() {
        let shared = Shared::new(SharedConfig::default()).expect("shared");
        let fetcher = Fetcher::new(
            shared.http().clone(),
            TopologySource::Fixed(NymTopology::default()),
            &SharedConfig::default(),
        );
        let (tx, mut rx) = watch::channel(None);
        let wake = Arc::new(Notify::new());
        let interval = Duration::from_secs(300);
        let task = tokio::spawn(refresher_with_clock(
            fetcher,
            tx,
            wake.clone(),
            interval,
            3,
            SystemTime::now,
        ));
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert!(!rx.has_changed().expect("open"), "nothing due yet");
        wake.notify_one();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(rx.has_changed().expect("open"), "fetched when asked");
        rx.borrow_and_update();
        // Asked again at once: the fetch waits for MIN_FORCED_REFRESH.
        wake.notify_one();
        tokio::time::sleep(MIN_FORCED_REFRESH - Duration::from_secs(1)).await;
        assert!(
            !rx.has_changed().expect("open"),
            "not before the minimum gap"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(rx.has_changed().expect("open"), "then fetched");
        drop(rx);
        task.abort();
    }
}
