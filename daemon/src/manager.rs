//! The identity manager: owns every identity's lifecycle.
//!
//! Each running identity is an actor task (its *runner*) that owns the
//! identity's mixnet client, its websocket listener and its app hub. The
//! runner restarts a failed client with backoff without disturbing other
//! identities, and answers app requests through [`AppCommand`]s. The manager
//! keeps a status table that the control socket reads, and broadcasts
//! [`ManagerEvent`]s.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nymd_mixnet::{
    ClientConfig, ClientKeys, ClientStats, GatewayConfig, GatewayRegistration, GatewaySelection,
    Shared,
};
use nymd_proto::appapi::{ClientRequest, ServerResponse};
use nymd_proto::keys::VerifyingKey;
use nymd_proto::Recipient;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::appserver::access::ConnectionLimit;
use crate::appserver::{self, AppChange, AppCommand, AppHub, ConnectedApp};
use crate::config::{IdentitiesSection, DEFAULT_MAX_APP_CONNECTIONS};
use crate::health::{self, Ping};
use crate::socks::{SocksHub, SocksStats};
use crate::store::{
    validate_id, IdentityConfig, IdentityKeys, IdentityState as PersistedState, IdentityStore,
    Socks5Config, StoreError, StoredIdentity, StoredRegistration, TrafficConfig, WebsocketConfig,
};

mod access;
mod probe;
mod reload;
mod runner;
mod socks5;

use runner::{Runner, RunnerContext};

pub use access::AccessChange;
pub use reload::ReloadReport;
pub use socks5::{ProviderChoice, Socks5Change, AUTO_PROVIDER};

/// Longest wait between restarts of a failing identity.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// First wait before restarting a failed identity.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// Commands buffered between app sessions and the runner.
const COMMAND_BUFFER: usize = 64;
/// The set ids of received messages are saved every this many half-second
/// ticks when new ones arrived (and when the client stops), so that a
/// sender's retransmission after a restart is not delivered twice.
const RECEIVED_SAVE_TICKS: u32 = 2;
/// Events buffered for subscribers before they see `Lagged`.
const EVENT_BUFFER: usize = 1024;
/// How often traffic counters are published.
pub const STATS_INTERVAL: Duration = Duration::from_secs(1);

/// Lifecycle state of an identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunState {
    /// Not running.
    Stopped,
    /// Connecting to its gateway.
    Starting,
    /// Connected and serving apps.
    Running,
    /// Lost its gateway; reconnecting.
    Reconnecting,
    /// Failed; retrying with backoff.
    Failed {
        /// Why.
        reason: String,
    },
}

/// A change the control plane may want to show.
#[derive(Debug, Clone)]
pub enum ManagerEvent {
    /// An identity was created.
    Added {
        /// Identity.
        id: String,
    },
    /// An identity was removed.
    Removed {
        /// Identity.
        id: String,
    },
    /// An identity changed state.
    State {
        /// Identity.
        id: String,
        /// New state.
        state: RunState,
    },
    /// A step of `init`.
    InitProgress {
        /// Identity.
        id: String,
        /// Which step.
        step: InitStep,
        /// Detail for people.
        detail: String,
    },
    /// An app connected to or left an identity's websocket port.
    App {
        /// Identity.
        id: String,
        /// What happened.
        change: AppChange,
    },
    /// Traffic counters (every [`STATS_INTERVAL`]).
    Traffic {
        /// Identity.
        id: String,
        /// Counters (boxed: they are the largest event).
        stats: Box<ClientStats>,
        /// Apps connected.
        apps: usize,
        /// Messages waiting for an app, kept on disk.
        inbox: u64,
        /// The SOCKS5 proxy's counters, while its port is served
        /// (`[socks5]` enabled with a provider); `None` without one.
        socks: Option<SocksStats>,
    },
}

/// Steps of `init`, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitStep {
    /// Making keys.
    Keys,
    /// Fetching the topology and registering with a gateway.
    Registering,
    /// Writing the identity to disk.
    Storing,
    /// Starting it.
    Starting,
    /// Finished.
    Done,
}

/// Errors of manager operations; the control plane maps them to codes.
#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    /// No such identity.
    #[error("identity '{0}' does not exist (see `nymctl list`)")]
    NotFound(String),
    /// Name taken.
    #[error("identity '{0}' already exists")]
    AlreadyExists(String),
    /// The requested websocket port is taken.
    #[error("port {0} is already in use; choose another with --port")]
    PortInUse(u16),
    /// A bad argument.
    #[error("{0}")]
    InvalidArgument(String),
    /// The identity is not running.
    #[error("identity '{0}' is not running; start it with `nymctl start {0}`")]
    NotRunning(String),
    /// The identity store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The mixnet client failed.
    #[error("{0}")]
    Client(String),
    /// The daemon is shutting down.
    #[error("the daemon is shutting down")]
    ShuttingDown,
}

/// What `init` needs.
#[derive(Debug, Clone, Default)]
pub struct InitRequest {
    /// Identity name.
    pub id: String,
    /// Gateway to register with (base58 ed25519 identity).
    pub gateway: Option<String>,
    /// Pick the gateway with the lowest latency.
    pub latency_based_selection: bool,
    /// Websocket port (default: next free from the configured first port).
    pub port: Option<u16>,
    /// Websocket bind address.
    pub host: Option<IpAddr>,
    /// Create without starting.
    pub no_start: bool,
    /// Use these keys instead of fresh ones (import).
    pub keys: Option<IdentityKeys>,
    /// Use this gateway registration instead of registering (import).
    pub registration: Option<StoredRegistration>,
    /// The uid that asked (from the control socket's peer credentials): the
    /// one user, besides root and nymd's own uid, allowed on the new
    /// identity's port. `None`: only root and nymd's own uid.
    pub owner_uid: Option<u32>,
    /// Give the identity a SOCKS5 proxy (`[socks5]`) with these settings.
    pub socks5: Option<Socks5Change>,
}

/// A row of `list` / `status`.
#[derive(Debug, Clone)]
pub struct IdentityInfo {
    /// Name.
    pub id: String,
    /// Nym address.
    pub address: String,
    /// State.
    pub state: RunState,
    /// Starts with the daemon.
    pub enabled: bool,
    /// Websocket bind address.
    pub websocket: SocketAddr,
    /// Gateway identity (base58).
    pub gateway_id: String,
    /// Gateway URL.
    pub gateway_listener: String,
    /// Apps connected now.
    pub connected_apps: usize,
    /// Who they are.
    pub apps: Vec<ConnectedApp>,
    /// Time since the client last started.
    pub uptime: Option<Duration>,
    /// Latest counters.
    pub stats: Option<ClientStats>,
    /// Messages waiting for an app, kept on disk.
    pub inbox_messages: u64,
    /// Bytes of the messages held for apps, and their bound (0, 0 when
    /// not running).
    pub inbox_bytes: (usize, usize),
    /// Bytes all identities hold for what others sent them, and the
    /// daemon's budget ([`Manager::memory_use`]).
    pub daemon_memory: (u64, u64),
    /// The identity's `[websocket]` section: who may connect, limits.
    pub websocket_config: WebsocketConfig,
    /// The identity's `[socks5]` section, if it has one.
    pub socks5: Option<Socks5Config>,
    /// Its SOCKS5 counters while it runs.
    pub socks_stats: Option<SocksStats>,
}

/// An identity folder that failed to load at startup.
#[derive(Debug, Clone)]
pub struct BrokenIdentity {
    /// Folder name.
    pub id: String,
    /// What is wrong and where.
    pub error: String,
}

struct Slot {
    config: IdentityConfig,
    address: Recipient,
    gateway_id: [u8; 32],
    gateway_listener: String,
    /// The whole registration as loaded, to notice edits on reload.
    registration: StoredRegistration,
    state: RunState,
    running: Option<Running>,
    stats: Option<ClientStats>,
    started_at: Option<Instant>,
}

struct Running {
    stop: CancellationToken,
    commands: mpsc::Sender<Box<AppCommand>>,
    /// Liveness pings for the watchdog (see [`crate::health`]).
    pings: mpsc::Sender<Ping>,
    hub: Arc<AppHub>,
    /// The SOCKS5 side's connections and counters.
    socks: Arc<SocksHub>,
    done: tokio::task::JoinHandle<()>,
}

struct Inner {
    store: IdentityStore,
    shared: Shared,
    /// `[identities]` of the config file; replaced on reload.
    defaults: Mutex<IdentitiesSection>,
    slots: Arc<Mutex<HashMap<String, Slot>>>,
    broken: Mutex<Vec<BrokenIdentity>>,
    events: broadcast::Sender<ManagerEvent>,
    cancel: CancellationToken,
    tracker: TaskTracker,
    /// Serialises init/remove so two inits cannot pick the same port or name.
    admin: tokio::sync::Mutex<()>,
    /// Liveness pings answered by the stats ticker (see [`crate::health`]).
    ticker_pings: mpsc::Sender<Ping>,
    /// Held by every read-modify-write of an identity's `config.toml`
    /// (around the write, outside `slots`), so two changes made at once
    /// cannot lose one another on disk.
    config_writes: Mutex<()>,
    /// App connections of every identity count against it
    /// (`[daemon] max_app_connections`).
    app_limit: Mutex<Arc<ConnectionLimit>>,
}

/// The identity manager (cheap to clone).
#[derive(Clone)]
pub struct Manager {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock would poison it; the table is still
    // consistent (every update is a single assignment), so keep going.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Manager {
    /// A manager over `store`, using `shared` for every identity's mixnet
    /// client. Call [`Manager::load`] then [`Manager::autostart`].
    pub fn new(
        store: IdentityStore,
        shared: Shared,
        defaults: IdentitiesSection,
        cancel: CancellationToken,
        tracker: TaskTracker,
    ) -> Self {
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let (ticker_pings, pings) = health::channel();
        let m = Self {
            inner: Arc::new(Inner {
                store,
                shared,
                defaults: Mutex::new(defaults),
                slots: Arc::default(),
                broken: Mutex::new(Vec::new()),
                events,
                cancel,
                tracker,
                admin: tokio::sync::Mutex::new(()),
                ticker_pings,
                config_writes: Mutex::new(()),
                app_limit: Mutex::new(ConnectionLimit::new(DEFAULT_MAX_APP_CONNECTIONS)),
            }),
        };
        m.spawn_stats_ticker(pings);
        m
    }

    /// Change an identity's settings: `edit` runs on a copy of its config
    /// (returning whether it changed anything), the copy is written to
    /// `config.toml` outside the status table's lock (a slow disk must not
    /// stall `list`, `status` or the stats ticker), then taken in memory.
    /// Writers are serialised, so concurrent changes all reach the file.
    /// `Ok(false)`: nothing to change.
    fn edit_config(
        &self,
        id: &str,
        edit: impl FnOnce(&mut IdentityConfig) -> bool,
    ) -> Result<bool, ManagerError> {
        let _writing = lock(&self.inner.config_writes);
        let mut config = lock(&self.inner.slots)
            .get(id)
            .map(|s| s.config.clone())
            .ok_or_else(|| ManagerError::NotFound(id.to_string()))?;
        if !edit(&mut config) {
            return Ok(false);
        }
        self.inner.store.save_config(&config)?;
        if let Some(slot) = lock(&self.inner.slots).get_mut(id) {
            slot.config = config;
        }
        Ok(true)
    }

    /// Bytes every identity together holds for what others sent them, and
    /// the daemon's budget for that (`[daemon] memory_budget_mib`).
    pub fn memory_use(&self) -> (u64, u64) {
        let b = self.inner.shared.memory_budget();
        (b.used(), b.limit())
    }

    /// Set the daemon-wide limit of app connections (`[daemon]
    /// max_app_connections`). Identities started afterwards count against
    /// it; call it before [`Manager::autostart`].
    pub fn set_max_app_connections(&self, limit: usize) {
        *lock(&self.inner.app_limit) = ConnectionLimit::new(limit);
    }

    /// Subscribe to events.
    pub fn subscribe(&self) -> broadcast::Receiver<ManagerEvent> {
        self.inner.events.subscribe()
    }

    fn emit(&self, e: ManagerEvent) {
        let _ = self.inner.events.send(e);
    }

    /// Read every identity from the store. Broken ones are reported (and
    /// kept on disk untouched).
    pub fn load(&self) -> Result<(), ManagerError> {
        match self.inner.store.clean_leftovers() {
            Ok(removed) => {
                for p in removed {
                    tracing::info!(
                        "removed leftover of an interrupted operation: {}",
                        p.display()
                    );
                }
            }
            Err(e) => tracing::warn!("could not clean leftovers: {e}"),
        }
        let (good, bad) = self.inner.store.load_all()?;
        let mut broken = lock(&self.inner.broken);
        broken.clear();
        for b in bad {
            tracing::error!(identity = %b.id, "skipping identity that cannot be loaded: {}", b.error);
            broken.push(BrokenIdentity {
                id: b.id,
                error: b.error.to_string(),
            });
        }
        drop(broken);
        let mut slots = lock(&self.inner.slots);
        for s in good {
            let slot = slot_for(&s)?;
            slots.insert(s.config.id.clone(), slot);
        }
        Ok(())
    }

    /// Identities that failed to load.
    pub fn broken(&self) -> Vec<BrokenIdentity> {
        lock(&self.inner.broken).clone()
    }

    /// Start every enabled identity.
    pub fn autostart(&self) {
        let ids: Vec<String> = lock(&self.inner.slots)
            .iter()
            .filter(|(_, s)| s.config.enabled)
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            if let Err(e) = self.start(&id) {
                tracing::error!(identity = %id, "autostart failed: {e}");
            }
        }
    }

    /// Number of identities known.
    pub fn len(&self) -> usize {
        lock(&self.inner.slots).len()
    }

    /// Whether no identity exists.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Create an identity: keys, gateway registration, port; then start it
    /// unless `no_start`.
    pub async fn init(&self, req: InitRequest) -> Result<IdentityInfo, ManagerError> {
        if self.inner.cancel.is_cancelled() {
            return Err(ManagerError::ShuttingDown);
        }
        validate_id(&req.id)?;
        let _admin = self.inner.admin.lock().await;
        if lock(&self.inner.slots).contains_key(&req.id) || self.inner.store.exists(&req.id) {
            return Err(ManagerError::AlreadyExists(req.id));
        }
        let defaults = lock(&self.inner.defaults).clone();
        let host = req.host.unwrap_or(defaults.host);
        if !crate::appserver::access::is_loopback(host) {
            return Err(ManagerError::InvalidArgument(format!(
                "websocket host {host} is not a loopback address: apps on other machines could connect, and nymd cannot check which user they run as; create the identity on 127.0.0.1 (--host, or [identities] host in nymd.toml), then set host and allow_remote_apps = true in the [websocket] section of its config.toml and reload nymd"
            )));
        }
        let port = self.choose_port(host, req.port).await?;
        // The SOCKS5 section (and an `auto` provider) before anything is
        // registered or written: a failure leaves nothing behind.
        let websocket = WebsocketConfig::new(host, port, req.owner_uid);
        let socks5 = match req.socks5.clone() {
            Some(change) => {
                let section = self.socks5_section(&req.id, None, change).await?;
                if section.port == port {
                    return Err(ManagerError::InvalidArgument(format!(
                        "the SOCKS5 port {port} is the websocket port too; choose another with --socks5-port"
                    )));
                }
                section
                    .validate(&websocket)
                    .map_err(|e| ManagerError::InvalidArgument(e.to_string()))?;
                Some(section)
            }
            None => None,
        };
        let selection = match (&req.gateway, req.latency_based_selection) {
            (Some(g), _) => {
                let bytes: [u8; 32] = bs58::decode(g)
                    .into_vec()
                    .ok()
                    .and_then(|v| v.try_into().ok())
                    .ok_or_else(|| {
                        ManagerError::InvalidArgument(format!(
                            "--gateway {g:?} is not a base58 ed25519 identity"
                        ))
                    })?;
                GatewaySelection::Given(bytes)
            }
            (None, true) => GatewaySelection::LatencyBased,
            (None, false) => GatewaySelection::UniformRandom,
        };
        self.progress(&req.id, InitStep::Keys, "generating keys");
        let keys = req
            .keys
            .clone()
            .unwrap_or_else(|| IdentityKeys::generate(&mut rand::thread_rng()));
        let reg = match req.registration.clone() {
            Some(r) => GatewayRegistration {
                gateway_id: r.gateway_id,
                listener: r.listener,
                fallback_listener: r.fallback_listener,
                shared_key: r.shared_key,
                last_auth_timestamp: 0,
            },
            None => {
                self.progress(
                    &req.id,
                    InitStep::Registering,
                    "fetching the network topology and registering with a gateway",
                );
                let client_keys = to_client_keys(&keys);
                let gateway_config = GatewayConfig::default();
                tokio::select! {
                    _ = self.inner.cancel.cancelled() => return Err(ManagerError::ShuttingDown),
                    r = nymd_mixnet::register_with(
                        &self.inner.shared,
                        None,
                        &client_keys,
                        selection,
                        &gateway_config,
                    ) => r.map_err(|e| ManagerError::Client(format!("registration failed: {e}")))?,
                }
            }
        };
        self.progress(
            &req.id,
            InitStep::Storing,
            &format!(
                "registered with gateway {}; storing the identity",
                bs58::encode(reg.gateway_id).into_string()
            ),
        );
        let stored = StoredIdentity {
            config: IdentityConfig {
                id: req.id.clone(),
                enabled: !req.no_start,
                // Access: see `WebsocketConfig::new`; the owner is the uid
                // that asked for the identity (set by the control server).
                websocket,
                traffic: defaults.traffic.clone(),
                socks5,
            },
            keys,
            registration: StoredRegistration {
                gateway_id: reg.gateway_id,
                listener: reg.listener.clone(),
                fallback_listener: reg.fallback_listener.clone(),
                shared_key: reg.shared_key.clone(),
            },
            state: PersistedState {
                last_auth_timestamp: reg.last_auth_timestamp,
            },
        };
        self.inner.store.create(&stored)?;
        let slot = slot_for(&stored)?;
        lock(&self.inner.slots).insert(req.id.clone(), slot);
        self.emit(ManagerEvent::Added { id: req.id.clone() });
        if !req.no_start {
            self.progress(&req.id, InitStep::Starting, "starting");
            self.start(&req.id)?;
        }
        self.progress(&req.id, InitStep::Done, "done");
        self.info(&req.id)
    }

    fn progress(&self, id: &str, step: InitStep, detail: &str) {
        self.emit(ManagerEvent::InitProgress {
            id: id.to_string(),
            step,
            detail: detail.to_string(),
        });
    }

    async fn choose_port(&self, host: IpAddr, wanted: Option<u16>) -> Result<u16, ManagerError> {
        let taken: Vec<u16> = lock(&self.inner.slots)
            .values()
            .map(|s| s.config.websocket.port)
            .collect();
        if let Some(p) = wanted {
            if p == 0 {
                return Err(ManagerError::InvalidArgument("--port must not be 0".into()));
            }
            if taken.contains(&p) || TcpListener::bind((host, p)).await.is_err() {
                return Err(ManagerError::PortInUse(p));
            }
            return Ok(p);
        }
        let mut p = lock(&self.inner.defaults).first_port.max(1);
        loop {
            if !taken.contains(&p) && TcpListener::bind((host, p)).await.is_ok() {
                return Ok(p);
            }
            p = p.checked_add(1).ok_or_else(|| {
                ManagerError::InvalidArgument("no free port above first_port".into())
            })?;
        }
    }

    /// Start an identity (no-op if running). Marks it enabled.
    pub fn start(&self, id: &str) -> Result<(), ManagerError> {
        if self.inner.cancel.is_cancelled() {
            return Err(ManagerError::ShuttingDown);
        }
        // Enabled on disk first.
        self.edit_config(id, |c| !std::mem::replace(&mut c.enabled, true))?;
        let mut slots = lock(&self.inner.slots);
        let slot = slots
            .get_mut(id)
            .ok_or_else(|| ManagerError::NotFound(id.to_string()))?;
        if slot.running.as_ref().is_some_and(|r| !r.done.is_finished()) {
            return Ok(());
        }
        if let Some(reason) = remote_apps_refusal(&slot.config, &self.inner.store)
            .or_else(|| socks5_refusal(&slot.config, &self.inner.store))
        {
            drop(slots);
            tracing::error!(identity = %id, "not started: {reason}");
            self.set_state(
                id,
                RunState::Failed {
                    reason: reason.clone(),
                },
            );
            return Err(ManagerError::InvalidArgument(reason));
        }
        let stop = self.inner.cancel.child_token();
        let (tx, rx) = mpsc::channel(COMMAND_BUFFER);
        let (ping_tx, pings) = health::channel();
        let hub = AppHub::with_budget(
            appserver::DEFAULT_PENDING_LIMIT,
            appserver::hub::DEFAULT_PENDING_BYTES,
            self.inner.shared.memory_budget(),
        );
        {
            let events = self.inner.events.clone();
            let id = id.to_string();
            hub.set_observer(move |change| {
                let _ = events.send(ManagerEvent::App {
                    id: id.clone(),
                    change,
                });
            });
        }
        let socks = SocksHub::with_budget(
            self.inner.shared.memory_budget(),
            crate::socks::MAX_BUFFERED_BYTES,
        );
        let runner = Runner {
            ctx: RunnerContext {
                store: self.inner.store.clone(),
                shared: self.inner.shared.clone(),
                tracker: self.inner.tracker.clone(),
                app_limit: lock(&self.inner.app_limit).clone(),
                status: StatusHandle {
                    id: id.to_string(),
                    slots: self.inner.slots.clone(),
                    events: self.inner.events.clone(),
                },
            },
            id: id.to_string(),
            stop: stop.clone(),
            inbound: runner::Inbound::new(rx, pings),
            commands_tx: tx.clone(),
            hub: hub.clone(),
            lanes: runner::AppLanes::default(),
            report_send_failures: slot.config.websocket.report_send_failures,
            socks: socks.clone(),
        };
        // Every record of the runner (and of its mixnet client) names the
        // identity: a field of text and JSON lines, `NYMD_IDENTITY` in the
        // journal.
        let span = tracing::info_span!("identity", identity = %id);
        let done = self
            .inner
            .tracker
            .spawn(tracing::Instrument::instrument(runner.run(), span));
        slot.running = Some(Running {
            stop,
            commands: tx,
            pings: ping_tx,
            hub,
            socks,
            done,
        });
        slot.state = RunState::Starting;
        drop(slots);
        self.emit(ManagerEvent::State {
            id: id.to_string(),
            state: RunState::Starting,
        });
        Ok(())
    }

    /// Stop an identity and wait for it. Marks it disabled (it will not
    /// autostart) unless `keep_enabled`.
    pub async fn stop(&self, id: &str) -> Result<(), ManagerError> {
        self.stop_inner(id, false).await
    }

    async fn stop_inner(&self, id: &str, keep_enabled: bool) -> Result<(), ManagerError> {
        let saved = if keep_enabled {
            Ok(false)
        } else {
            self.edit_config(id, |c| std::mem::replace(&mut c.enabled, false))
        };
        if let Err(ManagerError::NotFound(_)) = saved {
            return Err(ManagerError::NotFound(id.to_string()));
        }
        let running = lock(&self.inner.slots)
            .get_mut(id)
            .and_then(|s| s.running.take());
        // Stopped even if the disk refused the change (the next start or
        // stop writes it again); the error is still reported.
        if let Err(e) = &saved {
            tracing::warn!(identity = %id, "cannot save that the identity is disabled: {e}");
        }
        if let Some(r) = running {
            r.stop.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(10), r.done).await;
        }
        self.set_state(id, RunState::Stopped);
        saved.map(|_| ())
    }

    /// Stop then start.
    pub async fn restart(&self, id: &str) -> Result<(), ManagerError> {
        self.stop_inner(id, true).await?;
        self.start(id)
    }

    /// Stop and delete an identity with all its keys.
    pub async fn remove(&self, id: &str) -> Result<(), ManagerError> {
        let _admin = self.inner.admin.lock().await;
        if !lock(&self.inner.slots).contains_key(id) {
            // A broken identity can still be removed from disk.
            if self.inner.store.exists(id) {
                self.inner.store.remove(id)?;
                lock(&self.inner.broken).retain(|b| b.id != id);
                self.emit(ManagerEvent::Removed { id: id.to_string() });
                return Ok(());
            }
            return Err(ManagerError::NotFound(id.to_string()));
        }
        self.stop_inner(id, true).await?;
        self.inner.store.remove(id)?;
        lock(&self.inner.slots).remove(id);
        self.emit(ManagerEvent::Removed { id: id.to_string() });
        Ok(())
    }

    /// One identity's row.
    pub fn info(&self, id: &str) -> Result<IdentityInfo, ManagerError> {
        let slots = lock(&self.inner.slots);
        let s = slots
            .get(id)
            .ok_or_else(|| ManagerError::NotFound(id.to_string()))?;
        let mut info = info_of(id, s);
        info.daemon_memory = self.memory_use();
        Ok(info)
    }

    /// Every identity's row, sorted by name.
    pub fn list(&self) -> Vec<IdentityInfo> {
        let slots = lock(&self.inner.slots);
        let mut v: Vec<IdentityInfo> = slots.iter().map(|(id, s)| info_of(id, s)).collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        let memory = self.memory_use();
        for i in &mut v {
            i.daemon_memory = memory;
        }
        v
    }

    /// Send a plain message from an identity.
    pub async fn send(
        &self,
        id: &str,
        recipient: Recipient,
        data: Vec<u8>,
    ) -> Result<(), ManagerError> {
        let tx = {
            let slots = lock(&self.inner.slots);
            let s = slots
                .get(id)
                .ok_or_else(|| ManagerError::NotFound(id.to_string()))?;
            s.running
                .as_ref()
                .map(|r| r.commands.clone())
                .ok_or_else(|| ManagerError::NotRunning(id.to_string()))?
        };
        // A recipient whose gateway is unknown or a mixnode is refused now,
        // not retransmitted into the void.
        if let Ok(Ok(t)) =
            tokio::time::timeout(Duration::from_secs(10), self.inner.shared.topology(None)).await
        {
            runner::check_recipient(Some(&t), &recipient)
                .map_err(|e| ManagerError::InvalidArgument(e.message))?;
        }
        let (respond, rx) = oneshot::channel();
        tx.send(Box::new(AppCommand {
            session: 0,
            request: ClientRequest::Send {
                recipient,
                message: data,
                connection_id: None,
            },
            respond,
        }))
        .await
        .map_err(|_| ManagerError::NotRunning(id.to_string()))?;
        match rx.await {
            Ok(Some(ServerResponse::Error(e))) => Err(ManagerError::Client(e.message)),
            Ok(_) => Ok(()),
            Err(_) => Err(ManagerError::NotRunning(id.to_string())),
        }
    }

    /// The shared mixnet resources.
    pub fn shared(&self) -> &Shared {
        &self.inner.shared
    }

    /// Stop every identity (keeping them enabled) and wait.
    pub async fn shutdown(&self) {
        let ids: Vec<String> = lock(&self.inner.slots).keys().cloned().collect();
        for id in ids {
            let _ = self.stop_inner(&id, true).await;
        }
    }

    fn set_state(&self, id: &str, state: RunState) {
        set_state(&self.inner.slots, &self.inner.events, id, state);
    }

    fn spawn_stats_ticker(&self, mut pings: mpsc::Receiver<Ping>) {
        let m = self.clone();
        let cancel = self.inner.cancel.clone();
        self.inner.tracker.spawn(async move {
            let mut tick = tokio::time::interval(STATS_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    Some(p) = pings.recv() => { let _ = p.send(()); continue; }
                    _ = tick.tick() => {}
                }
                type Row = (String, ClientStats, usize, u64, Option<SocksStats>);
                let rows: Vec<Row> = lock(&m.inner.slots)
                    .iter()
                    .filter_map(|(id, s)| {
                        let running = s.running.as_ref()?;
                        let socks = s
                            .config
                            .socks5
                            .as_ref()
                            .is_some_and(|c| c.serves())
                            .then(|| running.socks.stats());
                        Some((
                            id.clone(),
                            s.stats.clone()?,
                            running.hub.connected_apps(),
                            running.hub.inbox_messages(),
                            socks,
                        ))
                    })
                    .collect();
                for (id, stats, apps, inbox, socks) in rows {
                    m.emit(ManagerEvent::Traffic {
                        id,
                        stats: Box::new(stats),
                        apps,
                        inbox,
                        socks,
                    });
                }
            }
        });
    }
}

/// Set an identity's state in `slots` and tell subscribers if it changed.
fn set_state(
    slots: &Mutex<HashMap<String, Slot>>,
    events: &broadcast::Sender<ManagerEvent>,
    id: &str,
    state: RunState,
) {
    let changed = {
        let mut slots = lock(slots);
        match slots.get_mut(id) {
            Some(s) if s.state != state => {
                s.state = state.clone();
                if state == RunState::Running && s.started_at.is_none() {
                    s.started_at = Some(Instant::now());
                }
                if matches!(state, RunState::Stopped | RunState::Failed { .. }) {
                    s.started_at = None;
                    s.stats = None;
                }
                true
            }
            _ => false,
        }
    };
    if changed {
        let _ = events.send(ManagerEvent::State {
            id: id.to_string(),
            state,
        });
    }
}

/// What a runner may touch of the manager's status table: its own
/// identity's row (state, counters, gateway listener).
#[derive(Clone)]
pub(crate) struct StatusHandle {
    id: String,
    slots: Arc<Mutex<HashMap<String, Slot>>>,
    events: broadcast::Sender<ManagerEvent>,
}

impl StatusHandle {
    fn set_state(&self, state: RunState) {
        set_state(&self.slots, &self.events, &self.id, state);
    }

    fn set_stats(&self, stats: ClientStats) {
        if let Some(s) = lock(&self.slots).get_mut(&self.id) {
            s.stats = Some(stats);
        }
    }

    /// The gateway's listener moved: show the new one, and remember the
    /// registration as loaded (not an edit: a reload must not restart the
    /// identity for it).
    fn set_registration(&self, reg: &StoredRegistration) {
        if let Some(slot) = lock(&self.slots).get_mut(&self.id) {
            slot.gateway_listener = reg.listener.clone();
            slot.registration = reg.clone();
        }
    }
}

fn info_of(id: &str, s: &Slot) -> IdentityInfo {
    IdentityInfo {
        id: id.to_string(),
        address: s.address.to_string(),
        state: s.state.clone(),
        enabled: s.config.enabled,
        websocket: SocketAddr::new(s.config.websocket.host, s.config.websocket.port),
        gateway_id: bs58::encode(s.gateway_id).into_string(),
        gateway_listener: s.gateway_listener.clone(),
        connected_apps: s
            .running
            .as_ref()
            .map(|r| r.hub.connected_apps())
            .unwrap_or(0),
        apps: s.running.as_ref().map(|r| r.hub.apps()).unwrap_or_default(),
        uptime: s.started_at.map(|t| t.elapsed()),
        stats: s.stats.clone(),
        inbox_messages: s
            .running
            .as_ref()
            .map(|r| r.hub.inbox_messages())
            .unwrap_or(0),
        inbox_bytes: s
            .running
            .as_ref()
            .map(|r| r.hub.pending_bytes())
            .unwrap_or((0, 0)),
        daemon_memory: (0, 0),
        websocket_config: s.config.websocket.clone(),
        socks5: s.config.socks5.clone(),
        socks_stats: s.running.as_ref().map(|r| r.socks.stats()),
    }
}

/// Why an identity may not start with its websocket settings: a host other
/// than loopback needs `allow_remote_apps = true`.
fn remote_apps_refusal(config: &IdentityConfig, store: &IdentityStore) -> Option<String> {
    let ws = &config.websocket;
    if crate::appserver::access::is_loopback(ws.host) || ws.allow_remote_apps {
        return None;
    }
    Some(format!(
        "websocket host {} is not a loopback address, so apps on other machines could connect and nymd could not check which user they run as; to allow that, set allow_remote_apps = true in the [websocket] section of {} and reload nymd (or set host = \"127.0.0.1\")",
        ws.host,
        store.dir(&config.id).join("config.toml").display()
    ))
}

/// Why an identity may not start with its `[socks5]` section, saying what
/// to change in which file.
fn socks5_refusal(config: &IdentityConfig, store: &IdentityStore) -> Option<String> {
    let s5 = config.socks5.as_ref().filter(|s| s.enabled)?;
    let e = s5.validate(&config.websocket).err()?;
    Some(format!(
        "{e} (in {})",
        store.dir(&config.id).join("config.toml").display()
    ))
}

/// An identity's Nym address, from its keys and its gateway.
fn address_of(s: &StoredIdentity) -> Result<Recipient, ManagerError> {
    let gw = VerifyingKey::from_bytes(&s.registration.gateway_id).map_err(|_| {
        ManagerError::InvalidArgument(format!(
            "identity '{}' names a gateway identity that is not a valid key",
            s.config.id
        ))
    })?;
    Ok(Recipient::new(
        s.keys.identity.public(),
        s.keys.encryption.public(),
        gw,
    ))
}

fn slot_for(s: &StoredIdentity) -> Result<Slot, ManagerError> {
    let address = address_of(s)?;
    Ok(Slot {
        config: s.config.clone(),
        address,
        gateway_id: s.registration.gateway_id,
        gateway_listener: s.registration.listener.clone(),
        registration: s.registration.clone(),
        state: RunState::Stopped,
        running: None,
        stats: None,
        started_at: None,
    })
}

fn to_client_keys(k: &IdentityKeys) -> ClientKeys {
    ClientKeys {
        identity: k.identity.clone(),
        encryption: k.encryption.clone(),
        ack: k.ack.clone(),
    }
}

/// Client settings from an identity's traffic section.
pub fn client_config(t: &TrafficConfig) -> ClientConfig {
    let mut c = ClientConfig::default();
    let ms = Duration::from_millis;
    if let Some(v) = t.average_packet_delay_ms {
        c.average_packet_delay = ms(v);
    }
    if let Some(v) = t.average_ack_delay_ms {
        c.average_ack_delay = ms(v);
    }
    if let Some(v) = t.message_sending_average_delay_ms {
        c.message_sending_average_delay = ms(v);
    }
    if let Some(v) = t.loop_cover_average_delay_ms {
        c.loop_cover_average_delay = ms(v);
    }
    if t.disable_cover_traffic {
        c.disable_main_poisson = true;
        c.disable_loop_cover = true;
    }
    c.disable_delays = t.disable_delays;
    if let Some(v) = t.max_retransmissions {
        c.max_retransmissions = Some(v);
    }
    // SOCKS connections end with the client: their messages are not
    // journalled for a restart.
    c.volatile_lanes_from = Some(crate::socks::LANE_BASE);
    c
}

/// The folder, inside an identity's folder, of its persisted outbox.
pub const OUTBOX_DIR: &str = "outbox";
/// The file of an identity's persisted reply state (sender tags, reply
/// keys, received reply SURBs), under its folder, mode 0600.
pub const REPLIES_FILE: &str = "replies";
/// The folder, inside an identity's folder, of the messages that wait for
/// an app.
pub const INBOX_DIR: &str = "inbox";
