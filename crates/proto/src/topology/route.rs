//! Route choice: one uniformly random known node from each of rewarded-set
//! layers 1, 2 and 3, then the egress (the recipient's gateway, looked up by
//! identity among all known nodes).

use std::collections::BTreeSet;

use rand::Rng;

use super::{NodeId, NodeRole, NymTopology, RoutingNode};
use crate::address::{NodeAddress, NodeAddressError};
use crate::keys::{VerifyingKey, X25519Public};

/// One Sphinx hop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteHop {
    /// Node id.
    pub node_id: NodeId,
    /// Mix address (the Sphinx routing address of this hop).
    pub address: NodeAddress,
    /// x25519 sphinx key.
    pub sphinx_key: X25519Public,
    /// ed25519 identity.
    pub identity: VerifyingKey,
}

impl RouteHop {
    /// The hop for a node.
    pub fn from_node(node: &RoutingNode) -> Self {
        Self {
            node_id: node.node_id,
            address: node.address(),
            sphinx_key: node.sphinx_key,
            identity: node.identity_key,
        }
    }

    /// As a sphinx-packet route node: the address zero-padded to 32 bytes.
    pub fn to_sphinx_node(&self) -> Result<sphinx_packet::route::Node, RouteError> {
        let bytes = self
            .address
            .to_padded::<32>()
            .map_err(RouteError::Address)?;
        Ok(sphinx_packet::route::Node::new(
            sphinx_packet::route::NodeAddressBytes::from_bytes(bytes),
            self.sphinx_key,
        ))
    }
}

/// Why no route could be built.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum RouteError {
    /// No rewarded set or no nodes at all.
    #[error("the provided network topology is empty")]
    EmptyTopology,
    /// No known node in a mix layer.
    #[error("no node known in mix layer {0}")]
    NoMixnodesAvailable(u8),
    /// The egress identity is not in the topology.
    #[error("node {0} does not exist in the network topology")]
    UnknownEgress(String),
    /// The egress is an active mixnode this epoch (only checked when epoch
    /// roles are not ignored).
    #[error("node {0} can't act as an egress as it is currently a mixnode")]
    InvalidEgressRole(String),
    /// A mix address did not fit a Sphinx node address (cannot happen for IP
    /// addresses; kept so nothing panics).
    #[error("bad node address: {0}")]
    Address(NodeAddressError),
}

/// The route as sphinx-packet route nodes, in order.
pub fn to_sphinx_route(route: &[RouteHop]) -> Result<Vec<sphinx_packet::route::Node>, RouteError> {
    route.iter().map(RouteHop::to_sphinx_node).collect()
}

/// The first hop's address: where the packet goes after our gateway (the
/// MixPacket next hop).
pub fn first_hop_address(route: &[RouteHop]) -> Option<NodeAddress> {
    route.first().map(|h| h.address)
}

impl NymTopology {
    /// The egress node for `identity`. With `ignore_epoch_roles` (nym-client's
    /// default) any known node will do; otherwise it must not be an active
    /// mixnode.
    pub fn egress_by_identity(
        &self,
        identity: &[u8; 32],
        ignore_epoch_roles: bool,
    ) -> Result<&RoutingNode, RouteError> {
        let b58 = || bs58::encode(identity).into_string();
        let node = self
            .gateway_by_identity(identity)
            .ok_or_else(|| RouteError::UnknownEgress(b58()))?;
        if !ignore_epoch_roles
            && matches!(
                self.rewarded_set.role(node.node_id),
                NodeRole::Mixnode { .. }
            )
        {
            return Err(RouteError::InvalidEgressRole(b58()));
        }
        Ok(node)
    }

    /// Draw uniformly among the layer's ids, dropping ids with no known node
    /// and drawing again.
    fn choose_in_layer<R: Rng + ?Sized>(
        &self,
        rng: &mut R,
        ids: &BTreeSet<NodeId>,
        layer: u8,
    ) -> Result<&RoutingNode, RouteError> {
        let mut candidates: Vec<NodeId> = ids.iter().copied().collect();
        while !candidates.is_empty() {
            let i = rng.gen_range(0..candidates.len());
            if let Some(node) = self.nodes.get(&candidates[i]) {
                return Ok(node);
            }
            candidates.swap_remove(i);
        }
        Err(RouteError::NoMixnodesAvailable(layer))
    }

    /// Three random mix hops (layer 1, 2, 3).
    pub fn random_mix_route<R: Rng + ?Sized>(
        &self,
        rng: &mut R,
    ) -> Result<Vec<RouteHop>, RouteError> {
        if self.is_empty() {
            return Err(RouteError::EmptyTopology);
        }
        let s = &self.rewarded_set;
        let mut route = Vec::with_capacity(4);
        for (layer, ids) in [(1u8, &s.layer1), (2, &s.layer2), (3, &s.layer3)] {
            route.push(RouteHop::from_node(self.choose_in_layer(rng, ids, layer)?));
        }
        Ok(route)
    }

    /// Layer 1, 2, 3, then the egress with this identity (epoch roles
    /// ignored, as nym-client does by default).
    pub fn random_route_to<R: Rng + ?Sized>(
        &self,
        rng: &mut R,
        egress_identity: &[u8; 32],
    ) -> Result<Vec<RouteHop>, RouteError> {
        self.random_route_to_with(rng, egress_identity, true)
    }

    /// [`NymTopology::random_route_to`] with the epoch-role check selectable.
    pub fn random_route_to_with<R: Rng + ?Sized>(
        &self,
        rng: &mut R,
        egress_identity: &[u8; 32],
        ignore_epoch_roles: bool,
    ) -> Result<Vec<RouteHop>, RouteError> {
        let egress =
            RouteHop::from_node(self.egress_by_identity(egress_identity, ignore_epoch_roles)?);
        let mut route = self.random_mix_route(rng)?;
        route.push(egress);
        Ok(route)
    }

    /// Just the egress (`disable_mix_hops`).
    pub fn egress_only_route(
        &self,
        egress_identity: &[u8; 32],
        ignore_epoch_roles: bool,
    ) -> Result<Vec<RouteHop>, RouteError> {
        Ok(vec![RouteHop::from_node(self.egress_by_identity(
            egress_identity,
            ignore_epoch_roles,
        )?)])
    }
}

impl From<&RouteHop> for crate::sphinx::RouteHop {
    fn from(hop: &RouteHop) -> Self {
        crate::sphinx::RouteHop::new(hop.address, hop.sphinx_key)
    }
}

/// The Sphinx hops (address and key) of a topology route, as the packet
/// builders take them.
pub fn to_sphinx_hops(route: &[RouteHop]) -> Vec<crate::sphinx::RouteHop> {
    route.iter().map(Into::into).collect()
}
