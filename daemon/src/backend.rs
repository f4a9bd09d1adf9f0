//! The control plane's view of the daemon: implements [`ControlBackend`] on
//! top of the identity [`Manager`], converting between the manager's types
//! and the wire types of `nymd-ipc`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nymd_ipc::{
    AccessInfo, AccessRequest, DaemonInfo, ErrorCode, Event, GatewayConnection, GatewayInfo,
    GatewayStatus, IdentityInfo, IdentityState, ImportRequest, InitRequest, InitStage, IpcError,
    MemoryInfo, NodeInfo, SendRequest, Snapshot, Socks5Info, Socks5Request, TopologyBrief,
    TopologyLayer, TopologySummary, TrafficCounters,
};
use nymd_mixnet::ClientStats;
use nymd_proto::keys::{AckKey, EncryptionKeyPair, GatewaySharedKey, IdentityKeyPair};
use nymd_proto::topology::NymTopology;
use nymd_proto::Recipient;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::appserver::AppChange;
use crate::control::{BackendResult, ControlBackend, PeerCredentials};
use crate::manager::{self, InitStep, Manager, ManagerError, ManagerEvent, RunState};
use crate::store::{IdentityKeys, StoredRegistration};

/// Events buffered for control subscribers.
const EVENT_CAPACITY: usize = 1024;

/// The daemon behind the control socket.
#[derive(Debug, Clone)]
pub struct DaemonBackend {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    manager: Manager,
    events: broadcast::Sender<Event>,
    started: Instant,
    instance_id: String,
    socket: PathBuf,
    state_dir: PathBuf,
    shutdown: CancellationToken,
}

impl DaemonBackend {
    /// Wrap `manager`; `shutdown` is cancelled by the `Shutdown` request.
    /// Spawns the task that turns manager events into wire events.
    pub fn new(
        manager: Manager,
        instance_id: String,
        socket: PathBuf,
        state_dir: PathBuf,
        shutdown: CancellationToken,
        tracker: &tokio_util::task::TaskTracker,
    ) -> Self {
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        let backend = Self {
            inner: Arc::new(Inner {
                manager,
                events,
                started: Instant::now(),
                instance_id,
                socket,
                state_dir,
                shutdown,
            }),
        };
        let b = backend.clone();
        let mut rx = backend.inner.manager.subscribe();
        let stop = backend.inner.shutdown.clone();
        tracker.spawn(async move {
            loop {
                let ev = tokio::select! {
                    _ = stop.cancelled() => return,
                    ev = rx.recv() => ev,
                };
                match ev {
                    Ok(ev) => b.forward(ev),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::debug!("control event relay skipped {n} manager events");
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        let b = backend.clone();
        let stop = backend.inner.shutdown.clone();
        tracker.spawn(async move { b.relay_topology(stop).await });
        backend
    }

    /// Publish `TopologyRefreshed` whenever the shared topology changes.
    async fn relay_topology(&self, stop: CancellationToken) {
        loop {
            let handle = tokio::select! {
                _ = stop.cancelled() => return,
                h = self.inner.manager.shared().topology(None) => h,
            };
            match handle {
                Ok(handle) => {
                    let mut rx = handle.watch();
                    loop {
                        let brief = rx.borrow_and_update().as_ref().map(|t| brief_of(t));
                        if let Some(b) = brief {
                            let _ = self.inner.events.send(Event::TopologyRefreshed(b));
                        }
                        tokio::select! {
                            _ = stop.cancelled() => return,
                            changed = rx.changed() => if changed.is_err() { break },
                        }
                    }
                }
                Err(e) => tracing::debug!("topology not available for events yet: {e}"),
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(30)) => {}
            }
        }
    }

    fn forward(&self, ev: ManagerEvent) {
        let out: Vec<Event> = match ev {
            ManagerEvent::Added { id } => match self.inner.manager.info(&id) {
                Ok(i) => vec![Event::IdentityState {
                    identity: id,
                    state: state_of(&i.state),
                }],
                Err(_) => vec![],
            },
            ManagerEvent::Removed { id } => vec![Event::IdentityRemoved { identity: id }],
            ManagerEvent::State { id, state } => {
                // The statistics go with the status so that a subscriber's
                // RTT, reconnect count and bandwidth stay right across a
                // state change.
                let (gw, stats) = self
                    .inner
                    .manager
                    .info(&id)
                    .map(|i| (i.gateway_id, i.stats))
                    .unwrap_or_default();
                vec![
                    Event::IdentityState {
                        identity: id.clone(),
                        state: state_of(&state),
                    },
                    Event::GatewayStatus {
                        identity: id,
                        gateway_id: gw,
                        status: gateway_status(&state, stats.as_ref()),
                    },
                ]
            }
            ManagerEvent::InitProgress { id, step, detail } => vec![Event::InitProgress {
                identity: id,
                stage: stage_of(step),
                detail,
            }],
            ManagerEvent::App { id, change } => match change {
                AppChange::Connected { session, peer } => vec![Event::AppConnected {
                    identity: id,
                    app: nymd_ipc::AppInfo {
                        connection: session,
                        peer: peer.to_string(),
                        connected_secs: 0,
                    },
                }],
                AppChange::Disconnected { session } => vec![Event::AppDisconnected {
                    identity: id,
                    connection: session,
                }],
            },
            ManagerEvent::Traffic {
                id,
                stats,
                inbox,
                socks,
                ..
            } => vec![Event::Traffic {
                identity: id,
                counters: TrafficCounters {
                    inbox_messages: inbox,
                    ..counters_of(&stats)
                },
                socks5: socks.map(|s| socks5_counters(&s)),
            }],
        };
        for e in out {
            let _ = self.inner.events.send(e);
        }
    }

    async fn current_topology(&self) -> BackendResult<Arc<NymTopology>> {
        let handle = self
            .inner
            .manager
            .shared()
            .topology(None)
            .await
            .map_err(|e| {
                IpcError::new(ErrorCode::Unavailable, format!("no topology: {e}"))
                    .with_hint("check the nym-api URLs or the topology file in the config")
            })?;
        handle.current().ok_or_else(|| {
            IpcError::new(
                ErrorCode::Unavailable,
                "the topology could not be fetched yet",
            )
        })
    }
}

fn brief_of(t: &NymTopology) -> TopologyBrief {
    TopologyBrief {
        epoch: Some(u64::from(t.metadata().absolute_epoch_id)),
        layers: 3,
        mixnodes: t.mixnodes().count() as u32,
        gateways: t.entry_gateways().count() as u32,
    }
}

fn state_of(s: &RunState) -> IdentityState {
    match s {
        RunState::Stopped => IdentityState::Stopped,
        RunState::Starting => IdentityState::Starting,
        RunState::Running => IdentityState::Running,
        RunState::Reconnecting => IdentityState::Reconnecting,
        RunState::Failed { reason } => IdentityState::Failed {
            reason: reason.clone(),
        },
    }
}

fn gateway_status(s: &RunState, stats: Option<&ClientStats>) -> GatewayStatus {
    let connection = match s {
        RunState::Running => GatewayConnection::Connected,
        RunState::Starting | RunState::Reconnecting => GatewayConnection::Reconnecting,
        RunState::Stopped | RunState::Failed { .. } => GatewayConnection::Down,
    };
    GatewayStatus {
        connection,
        rtt_ms: stats
            .and_then(|s| s.gateway_rtt)
            .map(|d| u32::try_from(d.as_millis()).unwrap_or(u32::MAX)),
        last_error: match s {
            RunState::Failed { reason } => Some(reason.clone()),
            _ => None,
        },
        reconnects: stats.map(|s| s.reconnects).unwrap_or(0),
        bandwidth_remaining: stats.map(|s| s.bandwidth_remaining),
    }
}

fn stage_of(s: InitStep) -> InitStage {
    match s {
        InitStep::Keys => InitStage::Keys,
        InitStep::Registering => InitStage::Registering,
        InitStep::Storing => InitStage::Storing,
        InitStep::Starting => InitStage::Starting,
        InitStep::Done => InitStage::Done,
    }
}

fn counters_of(s: &ClientStats) -> TrafficCounters {
    TrafficCounters {
        real_packets_sent: s.real_packets_sent,
        real_bytes_sent: s.real_bytes_sent,
        real_packets_received: s.real_packets_received,
        real_bytes_received: s.real_bytes_received,
        cover_packets_sent: s.cover_packets_sent,
        cover_bytes_sent: s.cover_bytes_sent,
        cover_packets_received: s.cover_packets_received,
        cover_bytes_received: s.cover_bytes_received,
        acks_received: s.acks_received,
        retransmissions: s.retransmissions,
        queue_depth: s.queued_packets,
        outbox_messages: s.outbox_messages,
        inbox_messages: 0,
        outside_warnings: s.outside_warnings,
        surb_requests_refused: s.surb_requests_refused,
        reply_keys_expired_on_load: s.reply_keys_expired_on_load,
        reply_surbs_rotated_on_load: s.reply_surbs_rotated_on_load,
    }
}

/// What a running identity holds, against its bounds and the daemon's
/// budget.
fn memory_of(i: &manager::IdentityInfo) -> Option<MemoryInfo> {
    let m = &i.stats.as_ref()?.memory;
    let (inbox, inbox_bound) = i.inbox_bytes;
    // The SOCKS buffers, for an identity whose SOCKS5 port is served.
    let socks = i
        .socks_stats
        .filter(|_| i.socks5.as_ref().is_some_and(|c| c.serves()));
    Some(MemoryInfo {
        inbox_bytes: inbox as u64,
        inbox_bound: inbox_bound as u64,
        received_bytes: m.received_bytes,
        received_bound: m.received_bound,
        reassembly_bytes: m.reassembly_bytes,
        reassembly_bound: m.reassembly_bound,
        surb_store_bytes: m.surb_store_bytes,
        surb_store_bound: m.surb_store_bound,
        reply_key_bytes: m.reply_key_bytes,
        reply_key_bound: m.reply_key_bound,
        socks_bytes: socks.map_or(0, |s| s.buffered),
        socks_bound: socks.map_or(0, |s| s.buffered_bound),
        daemon_bytes: i.daemon_memory.0,
        daemon_budget: i.daemon_memory.1,
    })
}

fn info_of(i: &manager::IdentityInfo) -> IdentityInfo {
    IdentityInfo {
        id: i.id.clone(),
        state: state_of(&i.state),
        address: Some(i.address.clone()),
        websocket_host: i.websocket.ip().to_string(),
        websocket_port: i.websocket.port(),
        gateway_id: Some(i.gateway_id.clone()),
        gateway_url: Some(i.gateway_listener.clone()),
        gateway_status: Some(gateway_status(&i.state, i.stats.as_ref())),
        connected_apps: i
            .apps
            .iter()
            .map(|a| nymd_ipc::AppInfo {
                connection: a.session,
                peer: a.peer.to_string(),
                connected_secs: a.connected_for.as_secs(),
            })
            .collect(),
        uptime_secs: i.uptime.map(|d| d.as_secs()),
        counters: TrafficCounters {
            inbox_messages: i.inbox_messages,
            ..i.stats.as_ref().map(counters_of).unwrap_or_default()
        },
        access: Some(access_of(&i.websocket_config)),
        memory: matches!(
            i.state,
            manager::RunState::Running | manager::RunState::Reconnecting
        )
        .then(|| memory_of(i))
        .flatten(),
        socks5: i.socks5.as_ref().map(|c| socks5_of(i, c)),
    }
}

/// An identity's SOCKS5 settings and, while it runs, its counters.
fn socks5_of(i: &manager::IdentityInfo, c: &crate::store::Socks5Config) -> Socks5Info {
    let s = i.socks_stats.unwrap_or_default();
    let running = !matches!(
        i.state,
        manager::RunState::Stopped | manager::RunState::Failed { .. }
    );
    Socks5Info {
        enabled: c.enabled,
        host: c.host.to_string(),
        port: c.port,
        provider: c.provider.clone(),
        anonymous: c.anonymous,
        listening: running && c.serves() && i.socks_stats.is_some(),
        max_connections: u32::try_from(c.max_connections).unwrap_or(u32::MAX),
        connect_timeout_secs: c.connect_timeout_secs,
        idle_timeout_secs: c.idle_timeout_secs,
        open_connections: s.open,
        connections_total: s.total,
        connections_refused: s.refused,
        connections_failed: s.failed,
        bytes_sent: s.bytes_sent,
        bytes_received: s.bytes_received,
    }
}

/// The SOCKS5 counters of a [`Event::Traffic`].
fn socks5_counters(s: &crate::socks::SocksStats) -> nymd_ipc::Socks5Counters {
    nymd_ipc::Socks5Counters {
        open_connections: s.open,
        connections_total: s.total,
        connections_refused: s.refused,
        connections_failed: s.failed,
        bytes_sent: s.bytes_sent,
        bytes_received: s.bytes_received,
    }
}

/// `nymctl init --socks5` and `nymctl socks5` as the manager's change.
fn socks5_change(
    enable: Option<bool>,
    port: Option<u16>,
    provider: Option<&str>,
    anonymous: Option<bool>,
) -> BackendResult<manager::Socks5Change> {
    Ok(manager::Socks5Change {
        enabled: enable,
        port,
        provider: provider.map(str::parse).transpose().map_err(err_of)?,
        anonymous,
    })
}

fn access_of(ws: &crate::store::WebsocketConfig) -> AccessInfo {
    AccessInfo {
        any_local_user: ws.any_local_user(),
        predates_access_control: ws.predates_access_control(),
        allowed_uids: ws.allowed_uids.clone(),
        allowed_groups: ws.allowed_groups.clone(),
        allowed_origins: ws.allowed_origins.clone(),
        allow_remote_apps: ws.allow_remote_apps,
        max_apps: u32::try_from(ws.max_apps()).unwrap_or(u32::MAX),
    }
}

fn err_of(e: ManagerError) -> IpcError {
    let msg = e.to_string();
    match e {
        ManagerError::NotFound(id) => IpcError::unknown_identity(&id),
        ManagerError::AlreadyExists(_) => IpcError::new(ErrorCode::AlreadyExists, msg)
            .with_hint("pick another --id, or `nymctl remove` the old one"),
        ManagerError::PortInUse(_) => IpcError::new(ErrorCode::PortInUse, msg)
            .with_hint("choose another --port, or leave it out to take the next free one"),
        ManagerError::InvalidArgument(_) => IpcError::new(ErrorCode::InvalidArgument, msg),
        ManagerError::NotRunning(_) => IpcError::new(ErrorCode::InvalidState, msg),
        ManagerError::Store(crate::store::StoreError::InvalidId(_)) => {
            IpcError::new(ErrorCode::InvalidArgument, msg)
        }
        ManagerError::Store(_) => IpcError::new(ErrorCode::Internal, msg),
        ManagerError::Client(_) => IpcError::new(ErrorCode::Unavailable, msg),
        ManagerError::ShuttingDown => IpcError::new(ErrorCode::Unavailable, msg),
    }
}

fn parse_host(h: Option<String>) -> BackendResult<Option<std::net::IpAddr>> {
    h.map(|h| {
        h.parse().map_err(|_| {
            IpcError::new(
                ErrorCode::InvalidArgument,
                format!("--host {h:?} is not an IP address"),
            )
        })
    })
    .transpose()
}

fn node_info(n: &nymd_proto::topology::RoutingNode) -> NodeInfo {
    NodeInfo {
        identity: bs58::encode(n.identity_key.as_bytes()).into_string(),
        address: n.mix_host.to_string(),
        performance: n.performance.map(|p| p.percent_floor()).unwrap_or(100),
    }
}

fn fixed<const N: usize>(what: &str, v: &[u8]) -> BackendResult<[u8; N]> {
    v.try_into().map_err(|_| {
        IpcError::new(
            ErrorCode::InvalidArgument,
            format!("{what} is {} bytes, expected {N}", v.len()),
        )
    })
}

impl ControlBackend for DaemonBackend {
    async fn init(
        &self,
        req: InitRequest,
        caller: Option<PeerCredentials>,
    ) -> BackendResult<IdentityInfo> {
        let info = self
            .inner
            .manager
            .init(manager::InitRequest {
                id: req.id,
                gateway: req.gateway,
                latency_based_selection: req.latency_based_selection,
                port: req.port,
                host: parse_host(req.host)?,
                no_start: req.no_start,
                keys: None,
                registration: None,
                owner_uid: caller.map(|c| c.uid),
                socks5: req
                    .socks5
                    .as_ref()
                    .map(|s| {
                        socks5_change(Some(true), s.port, s.provider.as_deref(), Some(!s.plain))
                    })
                    .transpose()?,
            })
            .await
            .map_err(err_of)?;
        Ok(info_of(&info))
    }

    async fn start(&self, id: String) -> BackendResult<()> {
        self.inner.manager.start(&id).map_err(err_of)
    }

    async fn stop(&self, id: String) -> BackendResult<()> {
        self.inner.manager.stop(&id).await.map_err(err_of)
    }

    async fn restart(&self, id: String) -> BackendResult<()> {
        self.inner.manager.restart(&id).await.map_err(err_of)
    }

    async fn remove(&self, id: String) -> BackendResult<()> {
        self.inner.manager.remove(&id).await.map_err(err_of)
    }

    async fn list(&self) -> BackendResult<Vec<IdentityInfo>> {
        Ok(self.inner.manager.list().iter().map(info_of).collect())
    }

    async fn status(&self, id: Option<String>) -> BackendResult<Vec<IdentityInfo>> {
        match id {
            Some(id) => Ok(vec![info_of(
                &self.inner.manager.info(&id).map_err(err_of)?,
            )]),
            None => self.list().await,
        }
    }

    async fn address(&self, id: String) -> BackendResult<String> {
        Ok(self.inner.manager.info(&id).map_err(err_of)?.address)
    }

    async fn gateways(&self, latency: bool) -> BackendResult<Vec<GatewayInfo>> {
        let topo = self.current_topology().await?;
        let mut out = Vec::new();
        for g in topo.entry_gateways() {
            let Some(listeners) = g.ws_listeners(false) else {
                continue;
            };
            let latency_ms = if latency {
                measure_latency(&listeners.primary).await
            } else {
                None
            };
            out.push(GatewayInfo {
                identity: bs58::encode(g.identity_key.as_bytes()).into_string(),
                host: g.mix_host.ip().to_string(),
                ws_url: listeners.primary,
                performance: g.performance.map(|p| p.percent_floor()).unwrap_or(100),
                latency_ms,
            });
        }
        Ok(out)
    }

    async fn topology(&self) -> BackendResult<TopologySummary> {
        let topo = self.current_topology().await?;
        let mut layers = Vec::new();
        for l in 1..=3u8 {
            let nodes = topo
                .rewarded_set()
                .layer(l)
                .map(|ids| {
                    ids.iter()
                        .filter_map(|id| topo.node(*id))
                        .map(node_info)
                        .collect()
                })
                .unwrap_or_default();
            layers.push(TopologyLayer { layer: l, nodes });
        }
        Ok(TopologySummary {
            epoch: Some(u64::from(topo.metadata().absolute_epoch_id)),
            fetched_at_unix: topo.metadata().refreshed_at.unix_secs().max(0) as u64,
            layers,
            gateways: topo.entry_gateways().map(node_info).collect(),
        })
    }

    async fn send(&self, req: SendRequest) -> BackendResult<()> {
        let to: Recipient = req.to.parse().map_err(|e| {
            IpcError::new(
                ErrorCode::InvalidArgument,
                format!("--to is not a Nym address: {e}"),
            )
        })?;
        self.inner
            .manager
            .send(&req.id, to, req.message)
            .await
            .map_err(err_of)
    }

    async fn import(
        &self,
        req: ImportRequest,
        caller: Option<PeerCredentials>,
    ) -> BackendResult<IdentityInfo> {
        let identity = IdentityKeyPair::from_secret_bytes(&fixed::<32>(
            "private_identity.pem",
            &req.private_identity,
        )?);
        if identity.public_bytes().as_slice() != req.public_identity.as_slice() {
            return Err(IpcError::new(
                ErrorCode::InvalidArgument,
                format!(
                    "{}: public_identity.pem does not match private_identity.pem",
                    req.source
                ),
            ));
        }
        let encryption = EncryptionKeyPair::from_secret_bytes(fixed::<32>(
            "private_encryption.pem",
            &req.private_encryption,
        )?);
        if encryption.public().as_bytes().as_slice() != req.public_encryption.as_slice() {
            return Err(IpcError::new(
                ErrorCode::InvalidArgument,
                format!(
                    "{}: public_encryption.pem does not match private_encryption.pem",
                    req.source
                ),
            ));
        }
        let ack = AckKey::from_bytes(fixed::<16>("ack_key.pem", &req.ack_key)?);
        let registration = match req.gateway {
            Some(g) => Some(StoredRegistration {
                gateway_id: bs58::decode(&g.gateway_id)
                    .into_vec()
                    .ok()
                    .and_then(|v| v.try_into().ok())
                    .ok_or_else(|| {
                        IpcError::new(
                            ErrorCode::InvalidArgument,
                            "the gateway identity is not base58 of 32 bytes",
                        )
                    })?,
                listener: g.listener,
                fallback_listener: None,
                shared_key: GatewaySharedKey::from_bytes(fixed::<32>(
                    "gateway shared key",
                    &g.shared_key,
                )?),
            }),
            None => None,
        };
        let info = self
            .inner
            .manager
            .init(manager::InitRequest {
                id: req.id,
                port: req.port,
                host: parse_host(req.host)?,
                keys: Some(IdentityKeys {
                    identity,
                    encryption,
                    ack,
                }),
                registration,
                owner_uid: caller.map(|c| c.uid),
                ..manager::InitRequest::default()
            })
            .await
            .map_err(err_of)?;
        Ok(info_of(&info))
    }

    async fn access(&self, req: AccessRequest) -> BackendResult<IdentityInfo> {
        let change = manager::AccessChange {
            allow_origins: req.allow_origins,
            remove_origins: req.remove_origins,
            allow_users: req.allow_users,
            remove_users: req.remove_users,
            allow_groups: req.allow_groups,
            remove_groups: req.remove_groups,
            any_local_user: req.any_local_user,
        };
        let info = self
            .inner
            .manager
            .update_access(&req.id, change)
            .await
            .map_err(err_of)?;
        Ok(info_of(&info))
    }

    async fn socks5(&self, req: Socks5Request) -> BackendResult<IdentityInfo> {
        let change = socks5_change(req.enable, req.port, req.provider.as_deref(), req.anonymous)?;
        let info = self
            .inner
            .manager
            .update_socks5(&req.id, change)
            .await
            .map_err(err_of)?;
        Ok(info_of(&info))
    }

    async fn daemon_info(&self) -> BackendResult<DaemonInfo> {
        let list = self.inner.manager.list();
        Ok(DaemonInfo {
            version: env!("CARGO_PKG_VERSION").to_string(),
            protocol_version: nymd_ipc::PROTOCOL_VERSION,
            instance_id: self.inner.instance_id.clone(),
            pid: std::process::id(),
            uptime_secs: self.inner.started.elapsed().as_secs(),
            socket: self.inner.socket.display().to_string(),
            state_dir: self.inner.state_dir.display().to_string(),
            identities: list.len() as u32,
            running: list
                .iter()
                .filter(|i| matches!(i.state, RunState::Running))
                .count() as u32,
        })
    }

    async fn shutdown(&self) -> BackendResult<()> {
        tracing::info!("shutdown requested over the control socket");
        self.inner.shutdown.cancel();
        Ok(())
    }

    fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.inner.events.subscribe()
    }

    async fn snapshot(&self, identity: Option<String>) -> BackendResult<Snapshot> {
        let identities = self
            .inner
            .manager
            .list()
            .iter()
            .filter(|i| identity.as_ref().is_none_or(|id| &i.id == id))
            .map(info_of)
            .collect();
        let topology = match self.inner.manager.shared().topology(None).await {
            Ok(h) => h.current().map(|t| brief_of(&t)),
            Err(_) => None,
        };
        Ok(Snapshot {
            identities,
            topology,
        })
    }
}

async fn measure_latency(url: &str) -> Option<u32> {
    let hostport = url
        .strip_prefix("ws://")
        .or_else(|| url.strip_prefix("wss://"))?
        .split('/')
        .next()?
        .to_string();
    let start = Instant::now();
    let conn = tokio::time::timeout(
        Duration::from_secs(3),
        tokio::net::TcpStream::connect(hostport),
    )
    .await;
    match conn {
        Ok(Ok(_)) => Some(u32::try_from(start.elapsed().as_millis()).unwrap_or(u32::MAX)),
        _ => None,
    }
}
