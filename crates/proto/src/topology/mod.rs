//! The network topology a client routes over.
//!
//! - [`api`]: nym-api's JSON (skimmed node listings, rewarded set,
//!   key-rotation info), both directions, and paging.
//! - [`file`]: the `--custom-mixnet` topology file, both directions.
//! - [`route`]: route choice (three mix layers then the recipient's gateway).
//! - [`time`]: the small UTC timestamp those formats need.
//!
//! [`NymTopology`] is the model: nodes by id, the rewarded-set layers and
//! gateway sets, and the key-rotation id. Build it from nym-api answers with
//! [`NymTopology::from_api`] (performance filter applied) or from a file with
//! [`NymTopology::from_file_json`] (no filter).

pub mod api;
pub mod file;
pub mod route;
pub mod time;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

use crate::keys::{VerifyingKey, X25519Public};
use crate::params::KeyRotation;

pub use api::{
    ApiError, NodeRole, PageCollector, PageProgress, Performance, RewardedSetResponse, SkimmedNode,
    SkimmedNodesResponse, SkimmedNodesWithMetadata,
};
pub use file::TopologyFileError;
pub use route::{RouteError, RouteHop};
pub use time::Timestamp;

/// A node id, unique across mixnodes and gateways.
pub type NodeId = u32;

/// nym-client's default minimum performance, in percent, for mixnodes and
/// for gateways.
pub const DEFAULT_MIN_PERFORMANCE: u8 = 50;

/// The client-facing websocket of a gateway.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EntryDetails {
    /// All the node's announced IPs (first = preferred).
    pub ip_addresses: Vec<IpAddr>,
    /// Plain websocket port.
    pub clients_ws_port: u16,
    /// DNS name, if announced.
    #[serde(default)]
    pub hostname: Option<String>,
    /// TLS websocket port, if announced.
    #[serde(default)]
    pub clients_wss_port: Option<u16>,
}

/// Where to dial a gateway: a primary URL and an optional fallback.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GatewayListeners {
    /// Try this first.
    pub primary: String,
    /// Try this if the primary fails.
    pub fallback: Option<String>,
}

fn ws_url(scheme: &str, host: &str, port: u16) -> String {
    // An IPv6 literal needs brackets in a URL (Nym leaves them out).
    if host.parse::<std::net::Ipv6Addr>().is_ok() {
        format!("{scheme}://[{host}]:{port}")
    } else {
        format!("{scheme}://{host}:{port}")
    }
}

impl EntryDetails {
    /// Plain-websocket candidates in nym-client's order (it never uses wss
    /// unless TLS is required): the hostname if announced, then the IPs in
    /// announced order; the first two become primary and fallback. With
    /// `no_hostname` the hostname is skipped. `None` without any candidate.
    pub fn ws_listeners(&self, no_hostname: bool) -> Option<GatewayListeners> {
        let hostname = if no_hostname {
            None
        } else {
            self.hostname.clone()
        };
        let mut urls = hostname
            .into_iter()
            .chain(self.ip_addresses.iter().map(|ip| ip.to_string()))
            .take(2)
            .map(|host| ws_url("ws", &host, self.clients_ws_port));
        let primary = urls.next()?;
        Some(GatewayListeners {
            primary,
            fallback: urls.next(),
        })
    }

    /// `wss://hostname:wss_port`, used only when TLS is required; `None`
    /// unless both are announced.
    pub fn wss_listener(&self) -> Option<String> {
        let host = self.hostname.as_deref()?;
        let port = self.clients_wss_port?;
        Some(ws_url("wss", host, port))
    }
}

/// Roles a node can take, as the topology stores them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub struct SupportedRoles {
    /// Can mix.
    pub mixnode: bool,
    /// Can be an entry gateway.
    pub mixnet_entry: bool,
    /// Can be an exit (network requester and IP packet router both).
    pub mixnet_exit: bool,
}

impl From<api::DeclaredRoles> for SupportedRoles {
    fn from(r: api::DeclaredRoles) -> Self {
        Self {
            mixnode: r.mixnode,
            mixnet_entry: r.entry,
            mixnet_exit: r.exit_nr && r.exit_ipr,
        }
    }
}

/// One routable node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoutingNode {
    /// Node id.
    pub node_id: NodeId,
    /// Mix (sphinx) address: first IP and mix port.
    #[serde(with = "file::literal_socket_addr")]
    pub mix_host: SocketAddr,
    /// Client websocket details (gateways only).
    #[serde(default)]
    pub entry: Option<EntryDetails>,
    /// ed25519 identity.
    #[serde(with = "file::ed25519_bytes")]
    pub identity_key: VerifyingKey,
    /// x25519 sphinx key for the current rotation.
    #[serde(with = "file::x25519_bytes")]
    pub sphinx_key: X25519Public,
    /// Declared roles.
    pub supported_roles: SupportedRoles,
    /// Performance from nym-api; absent for file topologies and not written
    /// to files.
    #[serde(skip)]
    pub performance: Option<Performance>,
}

/// Why a skimmed node cannot be routed to.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("node {node_id} ('{identity}') has not provided any valid ip addresses")]
pub struct NoIpAddresses {
    /// Node id.
    pub node_id: NodeId,
    /// Base58 identity.
    pub identity: String,
}

impl RoutingNode {
    /// From a nym-api entry: mix host = first IP : mix port; the entry's IPs
    /// are the node's whole list.
    pub fn from_skimmed(n: &SkimmedNode) -> Result<Self, NoIpAddresses> {
        let first = n.ip_addresses.first().ok_or_else(|| NoIpAddresses {
            node_id: n.node_id,
            identity: bs58::encode(n.ed25519_identity_pubkey.as_bytes()).into_string(),
        })?;
        Ok(Self {
            node_id: n.node_id,
            mix_host: SocketAddr::new(*first, n.mix_port),
            entry: n.entry.as_ref().map(|e| EntryDetails {
                ip_addresses: n.ip_addresses.clone(),
                clients_ws_port: e.ws_port,
                hostname: e.hostname.clone(),
                clients_wss_port: e.wss_port,
            }),
            identity_key: n.ed25519_identity_pubkey,
            sphinx_key: n.x25519_sphinx_pubkey,
            supported_roles: n.supported_roles.into(),
            performance: Some(n.performance),
        })
    }

    /// The nym-api entry a directory would serve for this node. Its
    /// `ip_addresses` are the mix host's IP followed by the entry IPs not
    /// already listed; missing performance is served as 100 %.
    pub fn to_skimmed(&self, role: NodeRole) -> SkimmedNode {
        let mut ips = vec![self.mix_host.ip()];
        if let Some(e) = &self.entry {
            for ip in &e.ip_addresses {
                if !ips.contains(ip) {
                    ips.push(*ip);
                }
            }
        }
        SkimmedNode {
            node_id: self.node_id,
            ed25519_identity_pubkey: self.identity_key,
            ip_addresses: ips,
            mix_port: self.mix_host.port(),
            x25519_sphinx_pubkey: self.sphinx_key,
            role,
            supported_roles: api::DeclaredRoles {
                mixnode: self.supported_roles.mixnode,
                entry: self.supported_roles.mixnet_entry,
                exit_nr: self.supported_roles.mixnet_exit,
                exit_ipr: self.supported_roles.mixnet_exit,
            },
            entry: self.entry.as_ref().map(|e| api::BasicEntryInformation {
                hostname: e.hostname.clone(),
                ws_port: e.clients_ws_port,
                wss_port: e.clients_wss_port,
            }),
            performance: self.performance.unwrap_or(Performance::FULL),
        }
    }

    /// The node's mix address in packet form.
    pub fn address(&self) -> crate::NodeAddress {
        crate::NodeAddress(self.mix_host)
    }

    /// Plain-websocket URLs for this gateway (see
    /// [`EntryDetails::ws_listeners`]); `None` if it announces no entry.
    pub fn ws_listeners(&self, no_hostname: bool) -> Option<GatewayListeners> {
        self.entry.as_ref()?.ws_listeners(no_hostname)
    }

    /// The TLS URL, if hostname and wss port are both announced.
    pub fn wss_listener(&self) -> Option<String> {
        self.entry.as_ref()?.wss_listener()
    }
}

/// Key-rotation and epoch details of a topology.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct TopologyMetadata {
    /// Key-rotation id (u32::MAX: unknown/legacy).
    pub key_rotation_id: u32,
    /// Absolute epoch id.
    pub absolute_epoch_id: u32,
    /// When the data was refreshed.
    pub refreshed_at: Timestamp,
}

impl Default for TopologyMetadata {
    /// What a topology file without `metadata` gets: rotation u32::MAX,
    /// epoch 0, refreshed at the Unix epoch (Nym uses the current time; we
    /// have no clock here).
    fn default() -> Self {
        Self {
            key_rotation_id: u32::MAX,
            absolute_epoch_id: 0,
            refreshed_at: Timestamp::UNIX_EPOCH,
        }
    }
}

impl From<&api::NodesResponseMetadata> for TopologyMetadata {
    fn from(m: &api::NodesResponseMetadata) -> Self {
        Self {
            key_rotation_id: m.rotation_id,
            absolute_epoch_id: m.absolute_epoch_id,
            refreshed_at: m.refreshed_at,
        }
    }
}

/// The epoch's role assignment (sets of node ids).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize)]
pub struct RewardedSet {
    /// Epoch id.
    pub epoch_id: u32,
    /// Entry gateways.
    pub entry_gateways: BTreeSet<NodeId>,
    /// Exit gateways.
    pub exit_gateways: BTreeSet<NodeId>,
    /// Layer-1 mixnodes.
    pub layer1: BTreeSet<NodeId>,
    /// Layer-2 mixnodes.
    pub layer2: BTreeSet<NodeId>,
    /// Layer-3 mixnodes.
    pub layer3: BTreeSet<NodeId>,
    /// Standby nodes.
    pub standby: BTreeSet<NodeId>,
}

impl From<&RewardedSetResponse> for RewardedSet {
    fn from(r: &RewardedSetResponse) -> Self {
        Self {
            epoch_id: r.epoch_id,
            entry_gateways: r.entry_gateways.iter().copied().collect(),
            exit_gateways: r.exit_gateways.iter().copied().collect(),
            layer1: r.layer1.iter().copied().collect(),
            layer2: r.layer2.iter().copied().collect(),
            layer3: r.layer3.iter().copied().collect(),
            standby: r.standby.iter().copied().collect(),
        }
    }
}

impl From<&RewardedSet> for RewardedSetResponse {
    fn from(r: &RewardedSet) -> Self {
        Self {
            epoch_id: r.epoch_id,
            entry_gateways: r.entry_gateways.iter().copied().collect(),
            exit_gateways: r.exit_gateways.iter().copied().collect(),
            layer1: r.layer1.iter().copied().collect(),
            layer2: r.layer2.iter().copied().collect(),
            layer3: r.layer3.iter().copied().collect(),
            standby: r.standby.iter().copied().collect(),
        }
    }
}

impl RewardedSet {
    /// No ids at all.
    pub fn is_empty(&self) -> bool {
        self.entry_gateways.is_empty()
            && self.exit_gateways.is_empty()
            && self.layer1.is_empty()
            && self.layer2.is_empty()
            && self.layer3.is_empty()
            && self.standby.is_empty()
    }

    /// The ids of mix layer `layer` (1..=3).
    pub fn layer(&self, layer: u8) -> Option<&BTreeSet<NodeId>> {
        match layer {
            1 => Some(&self.layer1),
            2 => Some(&self.layer2),
            3 => Some(&self.layer3),
            _ => None,
        }
    }

    /// A node's role, checked in the order entry, exit, layer 1–3, standby
    /// (a node listed twice gets the first).
    pub fn role(&self, id: NodeId) -> NodeRole {
        if self.entry_gateways.contains(&id) {
            NodeRole::EntryGateway
        } else if self.exit_gateways.contains(&id) {
            NodeRole::ExitGateway
        } else if self.layer1.contains(&id) {
            NodeRole::Mixnode { layer: 1 }
        } else if self.layer2.contains(&id) {
            NodeRole::Mixnode { layer: 2 }
        } else if self.layer3.contains(&id) {
            NodeRole::Mixnode { layer: 3 }
        } else if self.standby.contains(&id) {
            NodeRole::Standby
        } else {
            NodeRole::Inactive
        }
    }
}

/// Minimum performance, in whole percent (floor of ×100), applied when
/// building from nym-api.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PerformanceThresholds {
    /// For nodes from the active-mixnodes listing.
    pub mixnode: u8,
    /// For nodes from the entry-gateways listing.
    pub gateway: u8,
}

impl Default for PerformanceThresholds {
    fn default() -> Self {
        Self {
            mixnode: DEFAULT_MIN_PERFORMANCE,
            gateway: DEFAULT_MIN_PERFORMANCE,
        }
    }
}

/// The network as a client sees it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NymTopology {
    pub(crate) metadata: TopologyMetadata,
    pub(crate) rewarded_set: RewardedSet,
    pub(crate) nodes: BTreeMap<NodeId, RoutingNode>,
}

impl NymTopology {
    /// Assemble from parts; nodes are keyed by their `node_id` (a later
    /// duplicate replaces an earlier one).
    pub fn new(
        metadata: TopologyMetadata,
        rewarded_set: RewardedSet,
        nodes: impl IntoIterator<Item = RoutingNode>,
    ) -> Self {
        Self {
            metadata,
            rewarded_set,
            nodes: nodes.into_iter().map(|n| (n.node_id, n)).collect(),
        }
    }

    /// Build from one refresh's nym-api answers, as nym-client does:
    /// - the two listings must agree on status, epoch and rotation
    ///   ([`api::NodesResponseMetadata::consistency_check`]);
    /// - mixnodes below `thresholds.mixnode` and gateways below
    ///   `thresholds.gateway` (floor of ×100) are dropped, as are nodes
    ///   without IPs; a gateway entry replaces a mixnode entry of the same id;
    /// - layers and gateway sets come only from the rewarded set;
    /// - metadata comes from the mixnode listing.
    ///
    /// Whether the result is usable is for [`NymTopology::is_routable`].
    pub fn from_api(
        rewarded: &RewardedSetResponse,
        mixnodes: &SkimmedNodesWithMetadata,
        gateways: &SkimmedNodesWithMetadata,
        thresholds: PerformanceThresholds,
    ) -> Result<Self, ApiError> {
        if !mixnodes.metadata.consistency_check(&gateways.metadata) {
            return Err(ApiError::InconsistentMetadata {
                mixnodes: Box::new(mixnodes.metadata),
                gateways: Box::new(gateways.metadata),
            });
        }
        let mix = mixnodes
            .nodes
            .iter()
            .filter(|n| n.performance.percent_floor() >= thresholds.mixnode);
        let gw = gateways
            .nodes
            .iter()
            .filter(|n| n.performance.percent_floor() >= thresholds.gateway);
        Ok(Self::new(
            TopologyMetadata::from(&mixnodes.metadata),
            RewardedSet::from(rewarded),
            mix.chain(gw)
                .filter_map(|n| RoutingNode::from_skimmed(n).ok()),
        ))
    }

    /// Build from the single all-nodes listing (`use_extended_topology`):
    /// one threshold, the lower of the two.
    pub fn from_api_all_nodes(
        rewarded: &RewardedSetResponse,
        all: &SkimmedNodesWithMetadata,
        thresholds: PerformanceThresholds,
    ) -> Self {
        let min = thresholds.mixnode.min(thresholds.gateway);
        Self::new(
            TopologyMetadata::from(&all.metadata),
            RewardedSet::from(rewarded),
            all.nodes
                .iter()
                .filter(|n| n.performance.percent_floor() >= min)
                .filter_map(|n| RoutingNode::from_skimmed(n).ok()),
        )
    }

    /// Metadata.
    pub fn metadata(&self) -> &TopologyMetadata {
        &self.metadata
    }

    /// Replace the metadata.
    pub fn set_metadata(&mut self, metadata: TopologyMetadata) {
        self.metadata = metadata;
    }

    /// The key-rotation id.
    pub fn key_rotation_id(&self) -> u32 {
        self.metadata.key_rotation_id
    }

    /// The parity byte for packets built over this topology.
    pub fn key_rotation(&self) -> KeyRotation {
        KeyRotation::from_rotation_id(self.metadata.key_rotation_id)
    }

    /// The rewarded set.
    pub fn rewarded_set(&self) -> &RewardedSet {
        &self.rewarded_set
    }

    /// Replace the rewarded set.
    pub fn set_rewarded_set(&mut self, rewarded_set: RewardedSet) {
        self.rewarded_set = rewarded_set;
    }

    /// Known nodes by id.
    pub fn nodes(&self) -> &BTreeMap<NodeId, RoutingNode> {
        &self.nodes
    }

    /// One node by id.
    pub fn node(&self, id: NodeId) -> Option<&RoutingNode> {
        self.nodes.get(&id)
    }

    /// Add or replace a node.
    pub fn insert_node(&mut self, node: RoutingNode) {
        self.nodes.insert(node.node_id, node);
    }

    /// No rewarded set or no nodes.
    pub fn is_empty(&self) -> bool {
        self.rewarded_set.is_empty() || self.nodes.is_empty()
    }

    fn layer_has_known_node(&self, ids: &BTreeSet<NodeId>) -> bool {
        ids.iter().any(|id| self.nodes.contains_key(id))
    }

    /// nym-client's "minimally routable": at least one known node in each
    /// of layer 1, 2 and 3, and a non-empty entry or exit id set.
    pub fn is_routable(&self) -> bool {
        self.layer_has_known_node(&self.rewarded_set.layer1)
            && self.layer_has_known_node(&self.rewarded_set.layer2)
            && self.layer_has_known_node(&self.rewarded_set.layer3)
            && !(self.rewarded_set.entry_gateways.is_empty()
                && self.rewarded_set.exit_gateways.is_empty())
    }

    /// Any known node (gateway or not) with this ed25519 identity.
    pub fn gateway_by_identity(&self, identity: &[u8; 32]) -> Option<&RoutingNode> {
        self.nodes
            .values()
            .find(|n| n.identity_key.as_bytes() == identity)
    }

    /// Known nodes in the rewarded entry set.
    pub fn entry_gateways(&self) -> impl Iterator<Item = &RoutingNode> {
        self.nodes
            .values()
            .filter(|n| self.rewarded_set.entry_gateways.contains(&n.node_id))
    }

    /// Known nodes declaring the entry role: the gateway list a client picks
    /// from at init with a topology file.
    pub fn entry_capable_nodes(&self) -> impl Iterator<Item = &RoutingNode> {
        self.nodes
            .values()
            .filter(|n| n.supported_roles.mixnet_entry)
    }

    /// Known nodes in any of the three layers.
    pub fn mixnodes(&self) -> impl Iterator<Item = &RoutingNode> {
        self.nodes.values().filter(|n| {
            let s = &self.rewarded_set;
            s.layer1.contains(&n.node_id)
                || s.layer2.contains(&n.node_id)
                || s.layer3.contains(&n.node_id)
        })
    }

    /// The rewarded set as nym-api serves it.
    pub fn rewarded_set_response(&self) -> RewardedSetResponse {
        RewardedSetResponse::from(&self.rewarded_set)
    }

    /// The nym-api entries of the nodes `keep` selects, with their roles
    /// from the rewarded set (for a directory serving this topology).
    pub fn skimmed_nodes(&self, mut keep: impl FnMut(&RoutingNode) -> bool) -> Vec<SkimmedNode> {
        self.nodes
            .values()
            .filter(|n| keep(n))
            .map(|n| n.to_skimmed(self.rewarded_set.role(n.node_id)))
            .collect()
    }

    /// The listing metadata a directory would serve for this topology
    /// (status null).
    pub fn response_metadata(&self) -> api::NodesResponseMetadata {
        api::NodesResponseMetadata {
            status: None,
            absolute_epoch_id: self.metadata.absolute_epoch_id,
            rotation_id: self.metadata.key_rotation_id,
            refreshed_at: self.metadata.refreshed_at,
        }
    }
}

/// nym-client's gateway list at init from the entry-gateways listing: nodes
/// at or above `min_performance`, skipping mix-capable nodes unless
/// `ignore_epoch_roles`, and nodes without IPs.
pub fn init_gateway_candidates(
    listing: &[SkimmedNode],
    min_performance: u8,
    ignore_epoch_roles: bool,
) -> Vec<RoutingNode> {
    listing
        .iter()
        .filter(|n| ignore_epoch_roles || !n.supported_roles.mixnode)
        .filter(|n| n.performance.percent_floor() >= min_performance)
        .filter_map(|n| RoutingNode::from_skimmed(n).ok())
        .collect()
}

/// Pick one gateway uniformly at random.
pub fn choose_gateway<'a, R: rand::Rng + ?Sized>(
    rng: &mut R,
    gateways: &'a [RoutingNode],
) -> Option<&'a RoutingNode> {
    if gateways.is_empty() {
        return None;
    }
    gateways.get(rng.gen_range(0..gateways.len()))
}

#[cfg(test)]
pub(crate) mod tests;
