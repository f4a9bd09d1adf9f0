//! What every identity of a daemon shares: the HTTP client, the topology
//! caches (one per source, each with its refresher), the connections
//! `register` leaves open for `start`, and the memory budget.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use nymd_proto::topology::PerformanceThresholds;
use tokio::sync::watch;

use crate::error::ClientError;
use crate::gateway::WarmConnection;
use crate::topology::{
    refresher, CacheEntry, Fetcher, TopologyHandle, TopologySource, Url, MAINNET_NYM_API,
};

/// Daemon-wide settings of [`Shared`].
#[derive(Debug, Clone, PartialEq)]
pub struct SharedConfig {
    /// Source used by identities whose config names none.
    pub default_source: TopologySource,
    /// Refresh period (5 min).
    pub refresh_interval: Duration,
    /// Consecutive failed refreshes tolerated before the topology is
    /// cleared (10).
    pub max_refresh_failures: u32,
    /// Timeout of one HTTP request.
    pub http_timeout: Duration,
    /// Performance filter for nym-api topologies (50 % / 50 %).
    pub thresholds: PerformanceThresholds,
    /// Bytes all identities together may hold for what other parties send
    /// them ([`crate::DEFAULT_MEMORY_BUDGET`]; see [`crate::MemoryBudget`]).
    pub memory_budget: u64,
}

impl Default for SharedConfig {
    fn default() -> Self {
        let mainnet = Url::parse(MAINNET_NYM_API)
            .map(|u| vec![u])
            .unwrap_or_default();
        Self {
            default_source: TopologySource::NymApi(mainnet),
            refresh_interval: Duration::from_secs(5 * 60),
            max_refresh_failures: 10,
            http_timeout: Duration::from_secs(30),
            thresholds: PerformanceThresholds::default(),
            memory_budget: nymd_client::DEFAULT_MEMORY_BUDGET,
        }
    }
}

pub(crate) struct SharedInner {
    pub(crate) http: reqwest::Client,
    pub(crate) config: SharedConfig,
    caches: tokio::sync::Mutex<HashMap<String, Weak<CacheEntry>>>,
    /// Connections left open by `register` for `start` to take over (so
    /// that messages the gateway pushes right after registration are kept).
    pub(crate) warm: Mutex<HashMap<[u8; 32], WarmConnection>>,
    memory: Arc<nymd_client::MemoryBudget>,
}

/// Resources shared by every identity of a daemon: the HTTP client and the
/// topology caches. Cheap to clone.
#[derive(Clone)]
pub struct Shared {
    pub(crate) inner: Arc<SharedInner>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// Build the shared resources. Installs rustls' ring provider as the
    /// process default if none is installed yet.
    pub fn new(config: SharedConfig) -> Result<Self, ClientError> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(config.http_timeout)
            .connect_timeout(config.http_timeout)
            .user_agent(concat!("nymd/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let memory = nymd_client::MemoryBudget::new(config.memory_budget);
        Ok(Self {
            inner: Arc::new(SharedInner {
                http,
                memory,
                config,
                caches: tokio::sync::Mutex::new(HashMap::new()),
                warm: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The HTTP client.
    pub fn http(&self) -> &reqwest::Client {
        &self.inner.http
    }

    /// The daemon settings.
    pub fn config(&self) -> &SharedConfig {
        &self.inner.config
    }

    /// The memory budget every identity's bounded stores draw on.
    pub fn memory_budget(&self) -> Arc<nymd_client::MemoryBudget> {
        self.inner.memory.clone()
    }

    /// The topology of `source` (the default source when `None`). The first
    /// call for a source fetches it and fails if that fetch fails; later
    /// calls share the cache and its refresher.
    pub async fn topology(
        &self,
        source: Option<&TopologySource>,
    ) -> Result<TopologyHandle, ClientError> {
        let source = source.unwrap_or(&self.inner.config.default_source);
        let Some(key) = source.cache_key() else {
            if let TopologySource::Fixed(t) = source {
                return Ok(TopologyHandle::fixed(t.clone()));
            }
            return Err(ClientError::Topology("unsupported source".into()));
        };
        let mut caches = self.inner.caches.lock().await;
        caches.retain(|_, w| w.strong_count() > 0);
        if let Some(entry) = caches.get(&key).and_then(Weak::upgrade) {
            return Ok(TopologyHandle { entry });
        }
        let mut fetcher = Fetcher::new(self.inner.http.clone(), source.clone(), &self.inner.config);
        if let TopologySource::NymApi(_) = source {
            fetcher.check_key_rotation().await;
        }
        let first = fetcher.fetch().await.map_err(ClientError::Topology)?;
        let (tx, rx) = watch::channel(Some(Arc::new(first)));
        let wake = Arc::new(tokio::sync::Notify::new());
        let entry = Arc::new(CacheEntry {
            rx,
            wake: wake.clone(),
        });
        caches.insert(key, Arc::downgrade(&entry));
        let interval = self.inner.config.refresh_interval;
        let max_failures = self.inner.config.max_refresh_failures;
        tokio::spawn(refresher(fetcher, tx, wake, interval, max_failures));
        Ok(TopologyHandle { entry })
    }

    pub(crate) fn take_warm(&self, client: &[u8; 32]) -> Option<WarmConnection> {
        let mut warm = self.inner.warm.lock().ok()?;
        warm.retain(|_, w| w.created.elapsed() < WARM_MAX_AGE);
        warm.remove(client)
    }

    /// Forget the session a registration left open for `client`'s next
    /// start, if it is still there: the run it was for ended before using
    /// it (stopped or restarted), and a later start must not take a session
    /// whose gateway may have gone meanwhile (it would count as connected
    /// until the dead socket is noticed).
    pub fn discard_warm(&self, client: &[u8; 32]) {
        if let Ok(mut warm) = self.inner.warm.lock() {
            warm.remove(client);
        }
    }

    pub(crate) fn put_warm(&self, client: [u8; 32], conn: WarmConnection) {
        if let Ok(mut warm) = self.inner.warm.lock() {
            warm.retain(|_, w| w.created.elapsed() < WARM_MAX_AGE);
            warm.insert(client, conn);
        }
    }
}

/// How long a connection left open by `register` waits for `start`.
const WARM_MAX_AGE: Duration = Duration::from_secs(60);
