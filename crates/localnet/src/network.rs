//! The [`Localnet`] handle: makes keys, binds every listener, publishes the
//! topology (directory and file), runs each node, and stops it all.
//!
//! Task structure: one root [`CancellationToken`]; each node run has a child
//! token and its own [`TaskTracker`] (so one node can be stopped and awaited
//! alone); the directory runs on the root tracker. [`Localnet::shutdown`]
//! cancels the root and waits for every tracker.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use nymd_proto::keys::{IdentityKeyPair, VerifyingKey, X25519Public, X25519Secret};
use nymd_proto::topology::api::{
    KeyRotationInfoResponse, KeyRotationState, Performance, SkimmedNode, SkimmedNodesResponse,
};
use nymd_proto::topology::{
    EntryDetails, NodeId, NymTopology, RewardedSet, RoutingNode, SupportedRoles, Timestamp,
    TopologyMetadata,
};
use nymd_proto::Recipient;
use rand::rngs::OsRng;
use tokio::net::{TcpListener, TcpSocket};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::LocalnetConfig;
use crate::counters::{CountersSnapshot, NodeCounters};
use crate::described;
use crate::directory::{self, Documents, SharedDocuments};
use crate::forwarder::Forwarder;
use crate::gateway::{self, session, GatewayState};
use crate::node::{self, NodeCore, Run};
use crate::persist::{self, ClientsFileRef, SavedNetwork, SavedNode, NETWORK_STATE_FILE};
use crate::replay::ReplayFilter;

/// Key-rotation schedule the directory announces: rotation 0 for the
/// current epoch 0 (parity "unknown"; our nodes hold one sphinx key).
const KEY_ROTATION_VALIDITY_EPOCHS: u32 = 24;
/// Epoch length the directory announces.
const EPOCH_LENGTH: Duration = Duration::from_secs(3600);
/// Name of the topology file in its directory.
pub const TOPOLOGY_FILE_NAME: &str = "network.json";

/// Why a network could not be started or a node operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LocalnetError {
    /// The configuration cannot make a routable network.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A listener could not be bound.
    #[error("failed to bind the {what} listener on {addr}: {source}")]
    Bind {
        /// Which listener.
        what: &'static str,
        /// Where.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The topology file could not be written.
    #[error("failed to write the topology file {path}: {source}")]
    TopologyFile {
        /// The path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A document could not be serialised.
    #[error("failed to serialise {0}")]
    Serialise(String),
    /// No node has this id.
    #[error("no node with id {0}")]
    UnknownNode(NodeId),
    /// A saved state file is corrupted or does not fit this network.
    #[error("the local mixnet state file {} cannot be used: {reason}; {hint}", path.display())]
    StateFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
        /// What to do about it.
        hint: String,
    },
    /// A state file or folder could not be read or written.
    #[error("cannot {action} {}: {source}", path.display())]
    StateIo {
        /// What was being done.
        action: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// What a node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeKind {
    /// A mixnode on layer 1, 2 or 3.
    Mixnode {
        /// The layer.
        layer: u8,
    },
    /// A gateway (entry and exit).
    Gateway,
}

/// One node as the handle describes it.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    /// Node id (mixnodes first, layer by layer, then gateways).
    pub id: NodeId,
    /// Mixnode layer or gateway.
    pub kind: NodeKind,
    /// ed25519 identity.
    pub identity: VerifyingKey,
    /// x25519 sphinx key.
    pub sphinx_key: X25519Public,
    /// Node-to-node (mix) address.
    pub mix_addr: SocketAddr,
    /// Client websocket address (gateways).
    pub ws_addr: Option<SocketAddr>,
}

impl NodeInfo {
    /// `ws://IP:PORT` for gateways.
    pub fn ws_url(&self) -> Option<String> {
        self.ws_addr.map(|a| format!("ws://{a}"))
    }

    /// Base58 identity, as nym-api and client addresses write it.
    pub fn identity_bs58(&self) -> String {
        bs58::encode(self.identity.as_bytes()).into_string()
    }
}

/// A node with its persistent state and current run, if running.
#[derive(Debug)]
struct NodeSlot {
    info: NodeInfo,
    core: Arc<NodeCore>,
    run: tokio::sync::Mutex<Option<Run>>,
}

/// A running local network. Dropping it cancels every task (without
/// waiting); call [`Localnet::shutdown`] to wait for them.
#[derive(Debug)]
pub struct Localnet {
    nodes: Vec<NodeSlot>,
    /// Every node, as `nodes` will hold them (known before they run).
    infos: Vec<NodeInfo>,
    topology: NymTopology,
    api_addr: SocketAddr,
    topology_path: PathBuf,
    owned_dir: Option<PathBuf>,
    documents: SharedDocuments,
    stopped: Mutex<BTreeSet<NodeId>>,
    /// Network requesters the directory names, by gateway.
    requesters: Mutex<BTreeMap<NodeId, Recipient>>,
    key_rotation_json: String,
    state_dir: Option<PathBuf>,
    cancel: CancellationToken,
    tracker: TaskTracker,
}

/// Bind `ip:port` if a saved `port` is given and free, else a new ephemeral
/// port (logged: the caller saves the state again).
fn bind_saved(
    what: &'static str,
    ip: IpAddr,
    port: Option<u16>,
    node: NodeId,
) -> Result<TcpListener, LocalnetError> {
    if let Some(port) = port.filter(|p| *p != 0) {
        match bind(what, SocketAddr::new(ip, port)) {
            Ok(l) => return Ok(l),
            Err(e) => tracing::warn!(
                node,
                "the saved {what} port {port} cannot be bound ({e}); using a new port"
            ),
        }
    }
    bind(what, SocketAddr::new(ip, 0))
}

fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, LocalnetError> {
    let err = |source| LocalnetError::Bind { what, addr, source };
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(err)?;
    socket.set_reuseaddr(true).map_err(err)?;
    socket.bind(addr).map_err(err)?;
    socket.listen(1024).map_err(err)
}

fn local_addr(what: &'static str, l: &TcpListener) -> Result<SocketAddr, LocalnetError> {
    l.local_addr().map_err(|source| LocalnetError::Bind {
        what,
        addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        source,
    })
}

fn to_json<T: serde::Serialize>(what: &str, v: &T) -> Result<String, LocalnetError> {
    serde_json::to_string(v).map_err(|e| LocalnetError::Serialise(format!("{what}: {e}")))
}

impl Localnet {
    /// Make keys, bind every listener on loopback, publish the topology and
    /// run every node.
    pub async fn start(config: LocalnetConfig) -> Result<Self, LocalnetError> {
        if config.mixnodes_per_layer == 0 || config.gateways == 0 {
            return Err(LocalnetError::Config(
                "need at least one mixnode per layer and one gateway".into(),
            ));
        }
        let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let mut rng = OsRng;

        // A persistent network's saved state.
        let saved = match &config.state_dir {
            Some(dir) => {
                persist::create_private_dir(dir)?;
                let path = dir.join(NETWORK_STATE_FILE);
                let saved = SavedNetwork::load(&path)?;
                match &saved {
                    Some(s) => s.check_shape(&path, config.mixnodes_per_layer, config.gateways)?,
                    None => persist::remove_stale(dir),
                }
                saved
            }
            None => None,
        };
        let saved_directory_port = saved.as_ref().map(|s| s.directory_port);
        let saved_ports: Option<Vec<(u16, Option<u16>)>> = saved
            .as_ref()
            .map(|s| s.nodes.iter().map(|n| (n.mix_port, n.ws_port)).collect());
        let mut saved_nodes = saved.map(|s| s.nodes.into_iter());

        // Keys and listeners.
        struct Pending {
            info: NodeInfo,
            identity: IdentityKeyPair,
            sphinx: X25519Secret,
            mix: TcpListener,
            ws: Option<TcpListener>,
        }
        let mut pending = Vec::new();
        let kinds = (1..=3u8)
            .flat_map(|layer| {
                std::iter::repeat_n(NodeKind::Mixnode { layer }, config.mixnodes_per_layer)
            })
            .chain(std::iter::repeat_n(NodeKind::Gateway, config.gateways));
        for (i, kind) in kinds.enumerate() {
            let id = NodeId::try_from(i + 1)
                .map_err(|_| LocalnetError::Config("too many nodes".into()))?;
            // The shape was checked: saved nodes come in this order.
            let saved = saved_nodes.as_mut().and_then(Iterator::next);
            let (identity, sphinx, mix_port, ws_port) = match saved {
                Some(n) if n.id == id && n.kind == kind => {
                    (n.identity, n.sphinx, Some(n.mix_port), n.ws_port)
                }
                _ => (
                    IdentityKeyPair::generate(&mut rng),
                    X25519Secret::random_from_rng(rng),
                    None,
                    None,
                ),
            };
            let mix = bind_saved("mix", loopback, mix_port, id)?;
            let mix_addr = local_addr("mix", &mix)?;
            let (ws, ws_addr) = if kind == NodeKind::Gateway {
                let ws = bind_saved("client websocket", loopback, ws_port, id)?;
                let addr = local_addr("client websocket", &ws)?;
                (Some(ws), Some(addr))
            } else {
                (None, None)
            };
            pending.push(Pending {
                info: NodeInfo {
                    id,
                    kind,
                    identity: identity.public(),
                    sphinx_key: X25519Public::from(&sphinx),
                    mix_addr,
                    ws_addr,
                },
                identity,
                sphinx,
                mix,
                ws,
            });
        }

        // A persistent network's gateways load their registered clients
        // before anything runs.
        let mut gateway_clients = Vec::new();
        if let Some(dir) = &config.state_dir {
            for p in pending.iter().filter(|p| p.info.kind == NodeKind::Gateway) {
                let file = ClientsFileRef {
                    path: dir.join(persist::gateway_clients_file(p.info.id)),
                    gateway_id: p.info.id,
                };
                let clients =
                    persist::load_clients(&file.path, p.info.id, &p.identity.public_bytes())?;
                if !clients.is_empty() {
                    tracing::info!(
                        node = p.info.id,
                        clients = clients.len(),
                        "gateway clients loaded"
                    );
                }
                gateway_clients.push((p.info.id, clients, file));
            }
        }

        // The topology.
        let infos: Vec<NodeInfo> = pending.iter().map(|p| p.info.clone()).collect();
        let topology = build_topology(&infos);
        let routes: Arc<HashSet<SocketAddr>> = Arc::new(infos.iter().map(|n| n.mix_addr).collect());

        let (dir, owned_dir) = match &config.topology_dir {
            Some(d) => (d.clone(), None),
            None => {
                let d = std::env::temp_dir().join(format!(
                    "nym-localnet-{}-{:016x}",
                    std::process::id(),
                    rand::random::<u64>()
                ));
                (d.clone(), Some(d))
            }
        };
        let topology_path = dir.join(TOPOLOGY_FILE_NAME);
        let file_err = |source| LocalnetError::TopologyFile {
            path: topology_path.clone(),
            source,
        };
        std::fs::create_dir_all(&dir).map_err(file_err)?;
        let file = topology
            .to_file()
            .map_err(|e| LocalnetError::Serialise(format!("topology file: {e}")))?;
        std::fs::write(&topology_path, file).map_err(file_err)?;

        let now = Timestamp::from_system_time(SystemTime::now());
        let key_rotation = KeyRotationInfoResponse::new(
            KeyRotationState {
                validity_epochs: KEY_ROTATION_VALIDITY_EPOCHS,
                initial_epoch_id: 0,
            },
            topology.metadata().absolute_epoch_id,
            now,
            EPOCH_LENGTH,
        )
        .ok_or_else(|| LocalnetError::Config("invalid key rotation schedule".into()))?;
        let key_rotation_json = to_json("key rotation info", &key_rotation)?;

        let api = match saved_directory_port {
            Some(port) if config.api_addr.port() == 0 => {
                bind_saved("directory", config.api_addr.ip(), Some(port), 0)?
            }
            _ => bind("directory", config.api_addr)?,
        };
        let api_addr = local_addr("directory", &api)?;

        // Save the network when it is new or a port changed.
        if let Some(dir) = &config.state_dir {
            let path = dir.join(NETWORK_STATE_FILE);
            let now = SavedNetwork {
                directory_port: api_addr.port(),
                nodes: pending
                    .iter()
                    .map(|p| SavedNode {
                        id: p.info.id,
                        kind: p.info.kind,
                        identity: p.identity.clone(),
                        sphinx: p.sphinx.clone(),
                        mix_port: p.info.mix_addr.port(),
                        ws_port: p.info.ws_addr.map(|a| a.port()),
                    })
                    .collect(),
            };
            let ports: Vec<(u16, Option<u16>)> =
                now.nodes.iter().map(|n| (n.mix_port, n.ws_port)).collect();
            let unchanged = saved_directory_port == Some(now.directory_port)
                && saved_ports.as_ref() == Some(&ports);
            if !unchanged {
                now.save(&path)?;
                tracing::info!(file = %path.display(), "local mixnet state saved");
            }
        }

        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let mut net = Localnet {
            nodes: Vec::new(),
            infos,
            topology,
            api_addr,
            topology_path,
            owned_dir,
            documents: Arc::new(RwLock::new(Documents::default())),
            stopped: Mutex::new(BTreeSet::new()),
            requesters: Mutex::new(BTreeMap::new()),
            key_rotation_json,
            state_dir: config.state_dir.clone(),
            cancel,
            tracker,
        };
        net.refresh_documents()?;
        net.tracker.spawn(directory::serve(
            api,
            net.documents.clone(),
            net.cancel.clone(),
            net.tracker.clone(),
        ));

        for p in pending {
            let counters = Arc::new(NodeCounters::default());
            let gateway = (p.info.kind == NodeKind::Gateway).then(|| {
                let (clients, file) = match gateway_clients.iter().position(|g| g.0 == p.info.id) {
                    Some(i) => {
                        let (_, clients, file) = gateway_clients.swap_remove(i);
                        (clients, Some(file))
                    }
                    None => (Default::default(), None),
                };
                Arc::new(GatewayState::new(
                    p.identity.clone(),
                    counters.clone(),
                    config.limits,
                    clients,
                    file,
                ))
            });
            let core = Arc::new(NodeCore {
                id: p.info.id,
                sphinx: p.sphinx,
                counters,
                replay: Mutex::new(ReplayFilter::new(config.limits.replay_generation)),
                routes: routes.clone(),
                delay: config.delay,
                limits: config.limits,
                gateway,
                drop_incoming: Default::default(),
            });
            let run = net.spawn_node(&core, p.mix, p.ws);
            net.nodes.push(NodeSlot {
                info: p.info,
                core,
                run: tokio::sync::Mutex::new(Some(run)),
            });
        }
        tracing::info!(
            api = %net.api_url(),
            topology = %net.topology_path.display(),
            nodes = net.nodes.len(),
            "local mixnet started"
        );
        Ok(net)
    }

    /// Start the tasks of one node run on its own listeners.
    fn spawn_node(&self, core: &Arc<NodeCore>, mix: TcpListener, ws: Option<TcpListener>) -> Run {
        let cancel = self.cancel.child_token();
        let tracker = TaskTracker::new();
        let forwarder = Forwarder::new(
            core.limits.queue_per_peer,
            cancel.clone(),
            tracker.clone(),
            core.counters.clone(),
        );
        let run = Run {
            cancel,
            tracker,
            forwarder,
        };
        run.tracker
            .spawn(node::serve_mix(mix, core.clone(), run.clone()));
        if let (Some(ws), Some(gw)) = (ws, core.gateway.clone()) {
            run.tracker.spawn(session::serve_clients(
                ws,
                core.clone(),
                gw.clone(),
                run.clone(),
            ));
            run.tracker.spawn(purge_stored(
                gw.clone(),
                core.limits.stored_max_age,
                run.cancel.clone(),
            ));
            run.tracker
                .spawn(gateway::save_clients_periodically(gw, run.cancel.clone()));
        }
        run
    }

    fn slot(&self, id: NodeId) -> Result<&NodeSlot, LocalnetError> {
        self.nodes
            .iter()
            .find(|n| n.info.id == id)
            .ok_or(LocalnetError::UnknownNode(id))
    }

    /// Regenerate the directory's documents (stopped nodes are served with
    /// performance 0, so nym-api clients route around them).
    fn refresh_documents(&self) -> Result<(), LocalnetError> {
        let stopped = self.stopped.lock().map(|s| s.clone()).unwrap_or_default();
        let t = &self.topology;
        let meta = t.response_metadata();
        let skimmed = |keep: &dyn Fn(&RoutingNode) -> bool| -> Vec<SkimmedNode> {
            t.skimmed_nodes(keep)
                .into_iter()
                .map(|mut n| {
                    if stopped.contains(&n.node_id) {
                        n.performance = Performance::ZERO;
                    }
                    n
                })
                .collect()
        };
        let mixnodes = SkimmedNodesResponse::full(meta, skimmed(&|n| n.entry.is_none()));
        let gateways = SkimmedNodesResponse::full(meta, skimmed(&|n| n.entry.is_some()));
        let all = SkimmedNodesResponse::full(meta, skimmed(&|_| true));
        let mut docs = Documents::default();
        docs.set(
            directory::ROUTE_KEY_ROTATION,
            self.key_rotation_json.clone(),
        );
        docs.set(
            directory::ROUTE_REWARDED_SET,
            to_json("rewarded set", &t.rewarded_set_response())?,
        );
        docs.set(directory::ROUTE_MIXNODES, to_json("mixnodes", &mixnodes)?);
        docs.set(directory::ROUTE_GATEWAYS, to_json("gateways", &gateways)?);
        docs.set(directory::ROUTE_ALL_NODES, to_json("nodes", &all)?);
        let requesters = self
            .requesters
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default();
        let described = described::described_nodes(
            &self.infos,
            &requesters,
            meta.refreshed_at,
            t.key_rotation_id(),
        )
        .to_string();
        docs.set(directory::ROUTE_DESCRIBED, described.clone());
        docs.set(directory::ROUTE_DESCRIBED_V1, described);
        if let Ok(mut d) = self.documents.write() {
            *d = docs;
        }
        Ok(())
    }

    // ------------------------------------------------------------ queries

    /// The directory's base URL, `http://127.0.0.1:PORT/` (a nym-api URL).
    pub fn api_url(&self) -> String {
        format!("http://{}/", self.api_addr)
    }

    /// The directory's address.
    pub fn api_addr(&self) -> SocketAddr {
        self.api_addr
    }

    /// The folder of a persistent network's saved state.
    pub fn state_dir(&self) -> Option<&Path> {
        self.state_dir.as_deref()
    }

    /// The keys of this network's own network requester (the SOCKS5 exit
    /// `nymd --localnet` runs), kept in the state folder
    /// ([`crate::persist::NETWORK_REQUESTER_KEYS_FILE`]) and made there the
    /// first time, so that its address stays the same across restarts.
    /// `None` for a network without a state folder (a requester then gets
    /// new keys each time). A damaged file is an error that names it.
    pub fn network_requester_keys(
        &self,
    ) -> Result<Option<crate::persist::LocalClientKeys>, LocalnetError> {
        let Some(dir) = &self.state_dir else {
            return Ok(None);
        };
        let path = dir.join(crate::persist::NETWORK_REQUESTER_KEYS_FILE);
        let (keys, created) = crate::persist::load_or_create_client_keys(&path)?;
        if created {
            tracing::info!(file = %path.display(), "made the keys of the local network requester");
        }
        Ok(Some(keys))
    }

    /// The `--custom-mixnet` topology file.
    pub fn topology_path(&self) -> &Path {
        &self.topology_path
    }

    /// The network as a client sees it.
    pub fn topology(&self) -> &NymTopology {
        &self.topology
    }

    /// Every node, mixnodes first (layer 1, 2, 3), then gateways.
    pub fn nodes(&self) -> Vec<NodeInfo> {
        self.nodes.iter().map(|n| n.info.clone()).collect()
    }

    /// One node.
    pub fn node(&self, id: NodeId) -> Option<NodeInfo> {
        self.slot(id).ok().map(|n| n.info.clone())
    }

    /// The gateways.
    pub fn gateways(&self) -> Vec<NodeInfo> {
        self.nodes
            .iter()
            .filter(|n| n.info.kind == NodeKind::Gateway)
            .map(|n| n.info.clone())
            .collect()
    }

    /// The mixnodes of one layer (1..=3).
    pub fn layer(&self, layer: u8) -> Vec<NodeInfo> {
        self.nodes
            .iter()
            .filter(|n| n.info.kind == NodeKind::Mixnode { layer })
            .map(|n| n.info.clone())
            .collect()
    }

    /// A node's counters now.
    pub fn counters(&self, id: NodeId) -> Option<CountersSnapshot> {
        self.slot(id).ok().map(|n| n.core.counters.snapshot())
    }

    /// Test switch: gateway `id` holds each new client websocket connection
    /// for `delay` before it answers the upgrade, as a far-away gateway
    /// would (for tests of latency-based gateway selection). Connections
    /// already open are not affected; zero, the default, turns it off. The
    /// setting outlives [`Localnet::stop_node`] and [`Localnet::start_node`].
    /// A mixnode id is an error.
    pub fn set_client_delay(&self, id: NodeId, delay: Duration) -> Result<(), LocalnetError> {
        let gw = self
            .slot(id)?
            .core
            .gateway
            .as_ref()
            .ok_or_else(|| LocalnetError::Config(format!("node {id} is not a gateway")))?;
        gw.set_client_delay(delay);
        tracing::info!(node = id, ?delay, "test switch: client connection delay");
        Ok(())
    }

    /// Name `address` as the network requester of gateway `gateway` in the
    /// directory's `nym-nodes/described` listing (its `declared_role.exit_nr`
    /// becomes true), or name none with `None`. The address's gateway must be
    /// that node, as Nym's nodes run their own requester. Not persisted.
    pub fn set_network_requester(
        &self,
        gateway: NodeId,
        address: Option<Recipient>,
    ) -> Result<(), LocalnetError> {
        let slot = self.slot(gateway)?;
        if slot.info.kind != NodeKind::Gateway {
            return Err(LocalnetError::Config(format!(
                "node {gateway} is not a gateway"
            )));
        }
        if let Some(a) = &address {
            if a.gateway() != &slot.info.identity {
                return Err(LocalnetError::Config(format!(
                    "the network requester {a} is behind another gateway than node {gateway} ({})",
                    slot.info.identity_bs58()
                )));
            }
        }
        if let Ok(mut r) = self.requesters.lock() {
            match address {
                Some(a) => r.insert(gateway, a),
                None => r.remove(&gateway),
            };
        }
        self.refresh_documents()?;
        match address {
            Some(a) => tracing::debug!(node = gateway, address = %a, "network requester announced"),
            None => tracing::debug!(node = gateway, "network requester withdrawn"),
        }
        Ok(())
    }

    /// The network requesters the directory names, by gateway.
    pub fn network_requesters(&self) -> BTreeMap<NodeId, Recipient> {
        self.requesters
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    /// Whether a node is running.
    pub async fn is_running(&self, id: NodeId) -> bool {
        match self.slot(id) {
            Ok(n) => n.run.lock().await.is_some(),
            Err(_) => false,
        }
    }

    /// Test fault: while `drop` is on, node `id` drops every packet that
    /// reaches it from other nodes instead of processing it (counted in
    /// [`CountersSnapshot::fault_dropped`]), as if its incoming links lost
    /// everything. A gateway's clients stay connected and what they send
    /// still goes out, but nothing reaches them through the mixnet: their
    /// acks, replies and incoming messages are lost. The switch outlives
    /// [`Localnet::stop_node`] and [`Localnet::start_node`].
    pub fn set_drop_incoming(&self, id: NodeId, drop: bool) -> Result<(), LocalnetError> {
        let slot = self.slot(id)?;
        slot.core
            .drop_incoming
            .store(drop, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(node = id, drop, "fault switch: drop incoming packets");
        Ok(())
    }

    // ---------------------------------------------------------- lifecycle

    /// Stop one node: close its listeners and connections and wait for its
    /// tasks. Its keys and state (replay tags, a gateway's clients and
    /// stored messages) are kept for [`Localnet::start_node`]. Stopping a
    /// stopped node does nothing.
    pub async fn stop_node(&self, id: NodeId) -> Result<(), LocalnetError> {
        let slot = self.slot(id)?;
        let mut run = slot.run.lock().await;
        if let Some(r) = run.take() {
            r.cancel.cancel();
            r.tracker.close();
            r.tracker.wait().await;
            if let Ok(mut s) = self.stopped.lock() {
                s.insert(id);
            }
            self.refresh_documents()?;
            tracing::info!(node = id, "node stopped");
        }
        Ok(())
    }

    /// Start a stopped node again with the same keys on the same ports.
    /// Starting a running node does nothing.
    pub async fn start_node(&self, id: NodeId) -> Result<(), LocalnetError> {
        let slot = self.slot(id)?;
        let mut run = slot.run.lock().await;
        if run.is_some() {
            return Ok(());
        }
        let mix = bind("mix", slot.info.mix_addr)?;
        let ws = match slot.info.ws_addr {
            Some(a) => Some(bind("client websocket", a)?),
            None => None,
        };
        *run = Some(self.spawn_node(&slot.core, mix, ws));
        if let Ok(mut s) = self.stopped.lock() {
            s.remove(&id);
        }
        self.refresh_documents()?;
        tracing::info!(node = id, "node started");
        Ok(())
    }

    /// Cancel everything, wait for every task, and delete the topology
    /// directory if the handle made it.
    pub async fn shutdown(mut self) {
        self.cancel.cancel();
        for slot in &self.nodes {
            if let Some(r) = slot.run.lock().await.take() {
                r.tracker.close();
                r.tracker.wait().await;
            }
        }
        self.tracker.close();
        self.tracker.wait().await;
        // Each gateway run saved its clients when it ended; this catches a
        // save that failed then.
        for gw in self.nodes.iter().filter_map(|n| n.core.gateway.as_ref()) {
            gw.persist_if_dirty().await;
        }
        if let Some(dir) = self.owned_dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
        tracing::info!("local mixnet stopped");
    }
}

impl Drop for Localnet {
    fn drop(&mut self) {
        self.cancel.cancel();
        if let Some(dir) = self.owned_dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Delete expired stored messages now and then.
async fn purge_stored(gw: Arc<GatewayState>, max_age: Duration, cancel: CancellationToken) {
    let period = (max_age / 4).clamp(Duration::from_millis(100), Duration::from_secs(3600));
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(period) => {
                let n = gw.purge_stored();
                if n > 0 {
                    tracing::debug!("deleted {n} expired stored messages");
                }
            }
        }
    }
}

/// The network as a topology: layers from the node kinds, every gateway in
/// both the entry and exit sets, rotation 0 at epoch 0.
fn build_topology(nodes: &[NodeInfo]) -> NymTopology {
    let mut set = RewardedSet::default();
    let routing = nodes.iter().map(|n| {
        let (roles, entry) = match n.kind {
            NodeKind::Mixnode { layer } => {
                let ids = match layer {
                    1 => &mut set.layer1,
                    2 => &mut set.layer2,
                    _ => &mut set.layer3,
                };
                ids.insert(n.id);
                (
                    SupportedRoles {
                        mixnode: true,
                        mixnet_entry: false,
                        mixnet_exit: false,
                    },
                    None,
                )
            }
            NodeKind::Gateway => {
                set.entry_gateways.insert(n.id);
                set.exit_gateways.insert(n.id);
                (
                    SupportedRoles {
                        mixnode: false,
                        mixnet_entry: true,
                        mixnet_exit: true,
                    },
                    n.ws_addr.map(|a| EntryDetails {
                        ip_addresses: vec![a.ip()],
                        clients_ws_port: a.port(),
                        hostname: None,
                        clients_wss_port: None,
                    }),
                )
            }
        };
        RoutingNode {
            node_id: n.id,
            mix_host: n.mix_addr,
            entry,
            identity_key: n.identity,
            sphinx_key: n.sphinx_key,
            supported_roles: roles,
            performance: None,
        }
    });
    let routing: Vec<RoutingNode> = routing.collect();
    NymTopology::new(
        TopologyMetadata {
            key_rotation_id: 0,
            absolute_epoch_id: 0,
            refreshed_at: Timestamp::from_system_time(SystemTime::now()),
        },
        set,
        routing,
    )
}
