//! An in-memory [`ControlBackend`]: identities are records in a map, init
//! emits progress events, nothing touches the network or the disk. Used to
//! test the control server and `nymctl`, and to demo `nym-tui`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nymd_ipc::{
    AccessInfo, AccessRequest, DaemonInfo, ErrorCode, Event, GatewayInfo, IdentityInfo,
    IdentityState, ImportRequest, InitRequest, InitStage, IpcError, NodeInfo, SendRequest,
    Snapshot, Socks5Request, TopologyBrief, TopologyLayer, TopologySummary, TrafficCounters,
    PROTOCOL_VERSION,
};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::{BackendResult, ControlBackend, PeerCredentials};

/// Broadcast capacity of the fake's event channel.
pub const EVENT_CAPACITY: usize = 1024;

/// The gateway every fake identity registers with.
pub const FAKE_GATEWAY: &str = "FakeGateway1111111111111111111111111111111111";

/// An in-memory backend.
#[derive(Debug, Clone)]
pub struct FakeBackend {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    identities: Mutex<BTreeMap<String, IdentityInfo>>,
    /// Messages passed to `send`, in order.
    sent: Mutex<Vec<SendRequest>>,
    events: broadcast::Sender<Event>,
    /// Cancelled by the `Shutdown` request.
    shutdown: CancellationToken,
    /// Delay between init steps, so progress can be watched.
    step_delay: Duration,
    started: Instant,
}

impl Default for FakeBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeBackend {
    /// An empty fake with instant init steps.
    pub fn new() -> Self {
        Self::with_step_delay(Duration::ZERO)
    }

    /// An empty fake whose init steps take `step_delay` each.
    pub fn with_step_delay(step_delay: Duration) -> Self {
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        Self {
            inner: Arc::new(Inner {
                identities: Mutex::new(BTreeMap::new()),
                sent: Mutex::new(Vec::new()),
                events,
                shutdown: CancellationToken::new(),
                step_delay,
                started: Instant::now(),
            }),
        }
    }

    /// Cancelled when a client sends `Shutdown`.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.inner.shutdown.clone()
    }

    /// Publish an event to subscribers (tests drive traffic with it).
    pub fn emit(&self, event: Event) {
        let _ = self.inner.events.send(event);
    }

    /// Messages sent so far.
    pub fn sent(&self) -> Vec<SendRequest> {
        lock(&self.inner.sent).clone()
    }

    /// Add an identity directly, bypassing init.
    pub fn insert(&self, info: IdentityInfo) {
        lock(&self.inner.identities).insert(info.id.clone(), info);
    }

    /// A fake identity record.
    pub fn identity(id: &str, port: u16, host: &str, running: bool) -> IdentityInfo {
        IdentityInfo {
            id: id.to_owned(),
            state: if running {
                IdentityState::Running
            } else {
                IdentityState::Stopped
            },
            address: Some(fake_address(id)),
            websocket_host: host.to_owned(),
            websocket_port: port,
            gateway_id: Some(FAKE_GATEWAY.to_owned()),
            gateway_url: Some("ws://127.0.0.1:9000/".to_owned()),
            gateway_status: None,
            connected_apps: Vec::new(),
            uptime_secs: running.then_some(0),
            counters: TrafficCounters::default(),
            access: None,
            memory: None,
            socks5: None,
        }
    }

    fn set_state(&self, id: &str, state: IdentityState) -> BackendResult<()> {
        {
            let mut ids = lock(&self.inner.identities);
            let info = ids
                .get_mut(id)
                .ok_or_else(|| IpcError::unknown_identity(id))?;
            info.uptime_secs = matches!(state, IdentityState::Running).then_some(0);
            info.state = state.clone();
        }
        self.emit(Event::IdentityState {
            identity: id.to_owned(),
            state,
        });
        Ok(())
    }

    fn check_new(&self, id: &str, port: Option<u16>) -> BackendResult<u16> {
        if id.is_empty() || id.len() > 64 || id.starts_with('.') || id.contains('/') {
            return Err(IpcError::new(
                ErrorCode::InvalidArgument,
                format!("invalid identity name {id:?}"),
            )
            .with_hint("use 1-64 characters from A-Z a-z 0-9 _ -"));
        }
        let ids = lock(&self.inner.identities);
        if ids.contains_key(id) {
            return Err(IpcError::new(
                ErrorCode::AlreadyExists,
                format!("identity '{id}' already exists"),
            )
            .with_hint("pick another --id, or remove the old one with `nymctl remove`"));
        }
        let used = |p: u16| ids.values().any(|i| i.websocket_port == p);
        match port {
            Some(p) if used(p) => Err(IpcError::new(
                ErrorCode::PortInUse,
                format!("port {p} is already used by another identity"),
            )
            .with_hint("choose another --port, or leave it out to take the next free one")),
            Some(p) => Ok(p),
            None => Ok((1977..u16::MAX).find(|p| !used(*p)).unwrap_or(u16::MAX)),
        }
    }

    async fn progress(&self, id: &str, stage: InitStage, detail: &str) {
        self.emit(Event::InitProgress {
            identity: id.to_owned(),
            stage,
            detail: detail.to_owned(),
        });
        if !self.inner.step_delay.is_zero() {
            tokio::time::sleep(self.inner.step_delay).await;
        }
    }

    fn add(&self, mut info: IdentityInfo, start: bool) -> IdentityInfo {
        info.state = if start {
            IdentityState::Running
        } else {
            IdentityState::Stopped
        };
        info.uptime_secs = start.then_some(0);
        lock(&self.inner.identities).insert(info.id.clone(), info.clone());
        self.emit(Event::IdentityState {
            identity: info.id.clone(),
            state: info.state.clone(),
        });
        info
    }

    fn get(&self, id: &str) -> BackendResult<IdentityInfo> {
        lock(&self.inner.identities)
            .get(id)
            .cloned()
            .ok_or_else(|| IpcError::unknown_identity(id))
    }
}

/// The access settings of a new identity made by `caller`.
fn owner_only(caller: Option<PeerCredentials>) -> AccessInfo {
    AccessInfo {
        allowed_uids: caller.map(|c| c.uid).into_iter().collect(),
        max_apps: 64,
        ..AccessInfo::default()
    }
}

/// `access` on a fake record: numeric uids only (no user database), any
/// group name, origins checked as the daemon checks them.
fn apply_access(info: &mut IdentityInfo, req: &AccessRequest) -> BackendResult<()> {
    let bad = |m: String| IpcError::new(ErrorCode::InvalidArgument, m);
    let a = info.access.get_or_insert_with(|| AccessInfo {
        any_local_user: true,
        predates_access_control: true,
        max_apps: 64,
        ..AccessInfo::default()
    });
    let uid = |u: &String| {
        u.parse::<u32>()
            .map_err(|_| bad(format!("the fake backend knows uids only, not {u:?}")))
    };
    for o in &req.remove_origins {
        a.allowed_origins.retain(|x| x != o);
    }
    for u in &req.remove_users {
        let u = uid(u)?;
        a.allowed_uids.retain(|x| *x != u);
    }
    for g in &req.remove_groups {
        a.allowed_groups.retain(|x| x != g);
    }
    for o in &req.allow_origins {
        let o = crate::appserver::access::normalize_origin(o).map_err(|e| bad(e.to_string()))?;
        if !a.allowed_origins.contains(&o) {
            a.allowed_origins.push(o);
        }
    }
    for u in &req.allow_users {
        let u = uid(u)?;
        if !a.allowed_uids.contains(&u) {
            a.allowed_uids.push(u);
        }
    }
    for g in &req.allow_groups {
        if !a.allowed_groups.contains(g) {
            a.allowed_groups.push(g.clone());
        }
    }
    if let Some(any) = req.any_local_user {
        a.any_local_user = any;
        a.predates_access_control = false;
    }
    Ok(())
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The fake address of an identity.
pub fn fake_address(id: &str) -> String {
    format!("{id}Identity.{id}Encryption@{FAKE_GATEWAY}")
}

/// The provider a fake identity stores: the address given, or for `auto`
/// the fake network requester's.
fn fake_provider(given: &str) -> String {
    if given.eq_ignore_ascii_case("auto") {
        fake_address("exit")
    } else {
        given.to_owned()
    }
}

fn node(i: u8) -> NodeInfo {
    NodeInfo {
        identity: format!("FakeMix{i}"),
        address: format!("127.0.0.{i}:1789"),
        performance: 100 - i,
    }
}

impl ControlBackend for FakeBackend {
    async fn init(
        &self,
        req: InitRequest,
        caller: Option<PeerCredentials>,
    ) -> BackendResult<IdentityInfo> {
        let host = req.host.clone().unwrap_or_else(|| "127.0.0.1".to_owned());
        let port = self.check_new(&req.id, req.port)?;
        let id = req.id.as_str();
        self.progress(
            id,
            InitStage::Keys,
            "generated identity, encryption and ack keys",
        )
        .await;
        self.progress(
            id,
            InitStage::FetchingTopology,
            "3 layers, 3 mix nodes, 1 gateway",
        )
        .await;
        let gateway = req
            .gateway
            .clone()
            .unwrap_or_else(|| FAKE_GATEWAY.to_owned());
        self.progress(id, InitStage::SelectingGateway, &gateway)
            .await;
        self.progress(id, InitStage::Registering, &gateway).await;
        self.progress(id, InitStage::Storing, "").await;
        // Re-check: another init may have taken the name meanwhile.
        self.check_new(id, Some(port))?;
        let mut info = Self::identity(id, port, &host, false);
        info.gateway_id = Some(gateway);
        info.access = Some(owner_only(caller));
        if let Some(s) = &req.socks5 {
            let used: Vec<u16> = lock(&self.inner.identities)
                .values()
                .filter_map(|i| i.socks5.as_ref().map(|s| s.port))
                .collect();
            let port = s
                .port
                .unwrap_or_else(|| (1080..).find(|p| !used.contains(p)).unwrap_or(1080));
            info.socks5 = Some(nymd_ipc::Socks5Info {
                enabled: true,
                host: "127.0.0.1".to_owned(),
                port,
                provider: s.provider.as_deref().map(fake_provider),
                anonymous: !s.plain,
                max_connections: 256,
                connect_timeout_secs: 60,
                idle_timeout_secs: 300,
                ..nymd_ipc::Socks5Info::default()
            });
        }
        let info = self.add(info, !req.no_start);
        self.progress(id, InitStage::Done, info.address.as_deref().unwrap_or(""))
            .await;
        Ok(info)
    }

    async fn start(&self, id: String) -> BackendResult<()> {
        if matches!(self.get(&id)?.state, IdentityState::Running) {
            return Err(IpcError::new(
                ErrorCode::InvalidState,
                format!("identity '{id}' is already running"),
            ));
        }
        self.set_state(&id, IdentityState::Running)
    }

    async fn stop(&self, id: String) -> BackendResult<()> {
        if matches!(self.get(&id)?.state, IdentityState::Stopped) {
            return Err(IpcError::new(
                ErrorCode::InvalidState,
                format!("identity '{id}' is not running"),
            ));
        }
        self.set_state(&id, IdentityState::Stopped)
    }

    async fn restart(&self, id: String) -> BackendResult<()> {
        self.get(&id)?;
        self.set_state(&id, IdentityState::Stopped)?;
        self.set_state(&id, IdentityState::Running)
    }

    async fn remove(&self, id: String) -> BackendResult<()> {
        lock(&self.inner.identities)
            .remove(&id)
            .ok_or_else(|| IpcError::unknown_identity(&id))?;
        self.emit(Event::IdentityRemoved { identity: id });
        Ok(())
    }

    async fn list(&self) -> BackendResult<Vec<IdentityInfo>> {
        Ok(lock(&self.inner.identities).values().cloned().collect())
    }

    async fn status(&self, id: Option<String>) -> BackendResult<Vec<IdentityInfo>> {
        match id {
            Some(id) => Ok(vec![self.get(&id)?]),
            None => self.list().await,
        }
    }

    async fn address(&self, id: String) -> BackendResult<String> {
        self.get(&id)?.address.ok_or_else(|| {
            IpcError::new(
                ErrorCode::InvalidState,
                format!("identity '{id}' has no address yet"),
            )
        })
    }

    async fn gateways(&self, latency: bool) -> BackendResult<Vec<GatewayInfo>> {
        Ok(vec![GatewayInfo {
            identity: FAKE_GATEWAY.to_owned(),
            host: "127.0.0.1".to_owned(),
            ws_url: "ws://127.0.0.1:9000/".to_owned(),
            performance: 100,
            latency_ms: latency.then_some(1),
        }])
    }

    async fn topology(&self) -> BackendResult<TopologySummary> {
        Ok(TopologySummary {
            epoch: Some(1),
            fetched_at_unix: 1_760_000_000,
            layers: (1..=3)
                .map(|l| TopologyLayer {
                    layer: l,
                    nodes: vec![node(l)],
                })
                .collect(),
            gateways: vec![NodeInfo {
                identity: FAKE_GATEWAY.to_owned(),
                address: "127.0.0.1:9000".to_owned(),
                performance: 100,
            }],
        })
    }

    async fn send(&self, req: SendRequest) -> BackendResult<()> {
        if !matches!(self.get(&req.id)?.state, IdentityState::Running) {
            return Err(IpcError::new(
                ErrorCode::InvalidState,
                format!("identity '{}' is not running", req.id),
            )
            .with_hint(format!("start it first: nymctl start {}", req.id)));
        }
        lock(&self.inner.sent).push(req);
        Ok(())
    }

    async fn import(
        &self,
        req: ImportRequest,
        caller: Option<PeerCredentials>,
    ) -> BackendResult<IdentityInfo> {
        let port = self.check_new(&req.id, req.port)?;
        let sizes = [
            ("private_identity", req.private_identity.len(), 32),
            ("public_identity", req.public_identity.len(), 32),
            ("private_encryption", req.private_encryption.len(), 32),
            ("public_encryption", req.public_encryption.len(), 32),
            ("ack_key", req.ack_key.len(), 16),
        ];
        for (name, got, want) in sizes {
            if got != want {
                return Err(IpcError::new(
                    ErrorCode::InvalidArgument,
                    format!("{name} is {got} bytes, expected {want}"),
                ));
            }
        }
        let host = req.host.clone().unwrap_or_else(|| "127.0.0.1".to_owned());
        let mut info = Self::identity(&req.id, port, &host, false);
        info.access = Some(owner_only(caller));
        if let Some(gw) = &req.gateway {
            info.gateway_id = Some(gw.gateway_id.clone());
            info.gateway_url = Some(gw.listener.clone());
        }
        Ok(self.add(info, false))
    }

    async fn access(&self, req: AccessRequest) -> BackendResult<IdentityInfo> {
        let mut ids = lock(&self.inner.identities);
        let info = ids
            .get_mut(&req.id)
            .ok_or_else(|| IpcError::unknown_identity(&req.id))?;
        // Validate on a copy: a bad value changes nothing.
        let mut updated = info.clone();
        apply_access(&mut updated, &req)?;
        *info = updated.clone();
        Ok(updated)
    }

    async fn socks5(&self, req: Socks5Request) -> BackendResult<IdentityInfo> {
        let mut ids = lock(&self.inner.identities);
        let info = ids
            .get_mut(&req.id)
            .ok_or_else(|| IpcError::unknown_identity(&req.id))?;
        if req.is_read_only() {
            return Ok(info.clone());
        }
        let s = info.socks5.get_or_insert_with(|| nymd_ipc::Socks5Info {
            enabled: true,
            host: "127.0.0.1".to_owned(),
            port: 1080,
            anonymous: true,
            max_connections: 256,
            connect_timeout_secs: 60,
            idle_timeout_secs: 300,
            ..nymd_ipc::Socks5Info::default()
        });
        if let Some(e) = req.enable {
            s.enabled = e;
        }
        if let Some(p) = req.port {
            s.port = p;
        }
        if let Some(a) = req.anonymous {
            s.anonymous = a;
        }
        if let Some(p) = &req.provider {
            s.provider = Some(fake_provider(p));
        }
        Ok(info.clone())
    }

    async fn daemon_info(&self) -> BackendResult<DaemonInfo> {
        let ids = lock(&self.inner.identities);
        let running = ids
            .values()
            .filter(|i| matches!(i.state, IdentityState::Running))
            .count();
        Ok(DaemonInfo {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            protocol_version: PROTOCOL_VERSION,
            instance_id: "fake".to_owned(),
            pid: std::process::id(),
            uptime_secs: self.inner.started.elapsed().as_secs(),
            socket: String::new(),
            state_dir: "(in memory)".to_owned(),
            identities: u32::try_from(ids.len()).unwrap_or(u32::MAX),
            running: u32::try_from(running).unwrap_or(u32::MAX),
        })
    }

    async fn shutdown(&self) -> BackendResult<()> {
        self.inner.shutdown.cancel();
        Ok(())
    }

    fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.inner.events.subscribe()
    }

    async fn snapshot(&self, identity: Option<String>) -> BackendResult<Snapshot> {
        let ids = lock(&self.inner.identities);
        let identities = ids
            .values()
            .filter(|i| identity.as_deref().is_none_or(|want| want == i.id))
            .cloned()
            .collect();
        Ok(Snapshot {
            identities,
            topology: Some(TopologyBrief {
                epoch: Some(1),
                layers: 3,
                mixnodes: 3,
                gateways: 1,
            }),
        })
    }
}
