//! Finding network requesters (spec §7): nym-api's
//! `GET v2/nym-nodes/described` lists every node with what it describes
//! about itself; exit nodes name their network requester's Nym address.
//!
//! The models read (and write, for an embedded directory) the fields that
//! matter here, with nym-api's JSON names; other fields are ignored. One
//! node that does not parse is skipped, not fatal: the listing comes from
//! many independent operators.
//!
//! [`network_requesters`] keeps the nodes that declare a running network
//! requester (`declared_role.exit_nr`) whose address parses and names the
//! node itself as its gateway. Whether that gateway is in the client's
//! topology is for the caller to check.

use serde::{Deserialize, Serialize};

use crate::address::Recipient;
use crate::topology::api::DeclaredRoles;
use crate::topology::NodeId;

/// The route, relative to a nym-api base URL (which ends in `/api/` or
/// similar; join without a leading slash).
pub const DESCRIBED_NODES_PATH: &str = "v2/nym-nodes/described";

/// The one `contract_node_type` whose network requester runs for sure
/// (legacy nodes may still be listed).
pub const NYM_NODE_TYPE: &str = "nym_node";

/// `GET v2/nym-nodes/described`. Every node is in one page; `page` and
/// `per_page` are ignored by nym-api.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DescribedNodesResponse {
    /// Counts of the listing.
    #[serde(default)]
    pub pagination: Pagination,
    /// The nodes.
    pub data: Vec<DescribedNode>,
}

/// nym-api's page description.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pagination {
    /// Nodes in total.
    #[serde(default)]
    pub total: usize,
    /// Always 0 here.
    #[serde(default)]
    pub page: u32,
    /// Nodes in this page.
    #[serde(default)]
    pub size: usize,
}

/// One node of the listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DescribedNode {
    /// The node's id.
    pub node_id: NodeId,
    /// `nym_node`, `legacy_mixnode` or `legacy_gateway`; absent in some
    /// directories (then not checked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contract_node_type: Option<String>,
    /// What the node says about itself.
    pub description: NodeDescription,
}

/// The self-described part of a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeDescription {
    /// Addresses and keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_information: Option<HostInformation>,
    /// The roles it declares (`exit_nr`: gateway and network requester on).
    #[serde(default)]
    pub declared_role: DeclaredRoles,
    /// Its network requester; `null` when nym-api could not fetch it.
    #[serde(default)]
    pub network_requester: Option<NetworkRequesterDetails>,
}

/// Where a node is and its keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostInformation {
    /// Its IP addresses, as text.
    #[serde(default)]
    pub ip_address: Vec<String>,
    /// Its DNS name, if any.
    #[serde(default)]
    pub hostname: Option<String>,
    /// Its keys.
    pub keys: HostKeys,
}

/// A node's public keys, base58.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostKeys {
    /// The ed25519 identity (a network requester's gateway part).
    pub ed25519: String,
    /// The x25519 key.
    #[serde(default)]
    pub x25519: String,
}

/// A node's network requester.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkRequesterDetails {
    /// Its Nym address, `<identity>.<encryption>@<gateway>`.
    pub address: String,
    /// It filters by Nym's default exit policy (says nothing about open
    /// proxies).
    #[serde(default)]
    pub uses_exit_policy: bool,
}

/// A usable network requester.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkRequester {
    /// The node it runs on.
    pub node_id: NodeId,
    /// Its address; its gateway is the node.
    pub address: Recipient,
    /// It uses Nym's default exit policy.
    pub uses_exit_policy: bool,
}

/// Why a listing could not be read at all.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("the described-nodes listing is not JSON with a \"data\" array: {0}")]
pub struct DiscoveryError(pub String);

/// Read a `v2/nym-nodes/described` answer: the nodes that parse, and how
/// many did not.
pub fn parse_described(json: &[u8]) -> Result<(Vec<DescribedNode>, usize), DiscoveryError> {
    #[derive(Deserialize)]
    struct Raw {
        data: Vec<serde_json::Value>,
    }
    let raw: Raw = serde_json::from_slice(json).map_err(|e| DiscoveryError(e.to_string()))?;
    let mut skipped = 0;
    let nodes = raw
        .data
        .into_iter()
        .filter_map(|v| serde_json::from_value(v).map_err(|_| skipped += 1).ok())
        .collect();
    Ok((nodes, skipped))
}

/// The network requesters of `nodes` (spec §7): nodes that are nym-nodes
/// (when the type is given), declare `exit_nr`, describe a network
/// requester whose address parses, and whose address's gateway is the node
/// itself (when its keys are given).
pub fn network_requesters(nodes: &[DescribedNode]) -> Vec<NetworkRequester> {
    nodes
        .iter()
        .filter(|n| {
            n.contract_node_type
                .as_deref()
                .is_none_or(|t| t == NYM_NODE_TYPE)
        })
        .filter(|n| n.description.declared_role.exit_nr)
        .filter_map(|n| {
            let nr = n.description.network_requester.as_ref()?;
            let address: Recipient = nr.address.parse().ok()?;
            if let Some(h) = &n.description.host_information {
                let gateway = bs58::encode(address.gateway().as_bytes()).into_string();
                if gateway != h.keys.ed25519 {
                    return None;
                }
            }
            Some(NetworkRequester {
                node_id: n.node_id,
                address,
                uses_exit_policy: nr.uses_exit_policy,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GW: &str = "4kjgWmFU1tcGAZYRZR57yFuVAexjLbJ5M7jvo3X5Hkcf";
    const NR: &str = "DguTcdkWWtDyUFLvQxRdcA8qZhardhE1ZXy1YCC7Zfmq.Dxreouj5RhQqMb3ZaAxgXFdGkmfbDKwk457FdeHGKmQQ@4kjgWmFU1tcGAZYRZR57yFuVAexjLbJ5M7jvo3X5Hkcf";

    /// A listing in nym-api's shape (fields as in spec §7, plus some this
    /// module ignores).
    fn sample() -> String {
        format!(
            r#"{{
  "pagination": {{"total": 5, "page": 0, "size": 5}},
  "data": [
    {{"node_id": 1, "contract_node_type": "nym_node",
      "description": {{
        "last_polled": "2026-01-01T00:00:00Z",
        "host_information": {{"ip_address": ["203.0.113.7"], "hostname": null,
          "keys": {{"ed25519": "{GW}", "x25519": "Dxreouj5RhQqMb3ZaAxgXFdGkmfbDKwk457FdeHGKmQQ",
                   "current_x25519_sphinx_key": {{"rotation_id": 7, "public_key": "x"}}}}}},
        "declared_role": {{"mixnode": false, "entry": true, "exit_nr": true, "exit_ipr": true}},
        "build_information": {{"binary_name": "nym-node"}},
        "network_requester": {{"address": "{NR}", "uses_exit_policy": true}},
        "ip_packet_router": {{"address": "whatever"}},
        "authenticator": null,
        "mixnet_websockets": {{"ws_port": 9000, "wss_port": null}}}}}},
    {{"node_id": 2, "contract_node_type": "nym_node",
      "description": {{"declared_role": {{"mixnode": true, "entry": false, "exit_nr": false, "exit_ipr": false}},
        "network_requester": {{"address": "{NR}", "uses_exit_policy": true}}}}}},
    {{"node_id": 3, "contract_node_type": "legacy_gateway",
      "description": {{"declared_role": {{"mixnode": false, "entry": true, "exit_nr": true, "exit_ipr": false}},
        "network_requester": {{"address": "{NR}", "uses_exit_policy": false}}}}}},
    {{"node_id": 4, "contract_node_type": "nym_node",
      "description": {{"declared_role": {{"mixnode": false, "entry": true, "exit_nr": true, "exit_ipr": true}},
        "network_requester": null}}}},
    {{"node_id": "five", "description": {{}}}}
  ]
}}"#
        )
    }

    #[test]
    fn picks_exit_nodes_with_a_requester() {
        let (nodes, skipped) = parse_described(sample().as_bytes()).expect("parses");
        assert_eq!((nodes.len(), skipped), (4, 1));
        let found = network_requesters(&nodes);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].node_id, 1);
        assert_eq!(found[0].address.to_string(), NR);
        assert!(found[0].uses_exit_policy);
    }

    #[test]
    fn a_requester_whose_gateway_is_another_node_is_not_taken() {
        let json = sample().replace(
            &format!(r#""ed25519": "{GW}""#),
            r#""ed25519": "9Byd9VAtyYMnbVAcqdoQxJnq76XEg2dbxbiF5Aa5Jj9J""#,
        );
        let (nodes, _) = parse_described(json.as_bytes()).expect("parses");
        assert!(network_requesters(&nodes).is_empty());
    }

    #[test]
    fn written_listings_read_back() {
        let listing = DescribedNodesResponse {
            pagination: Pagination {
                total: 1,
                page: 0,
                size: 1,
            },
            data: vec![DescribedNode {
                node_id: 9,
                contract_node_type: None,
                description: NodeDescription {
                    host_information: None,
                    declared_role: DeclaredRoles {
                        entry: true,
                        exit_nr: true,
                        ..DeclaredRoles::default()
                    },
                    network_requester: Some(NetworkRequesterDetails {
                        address: NR.into(),
                        uses_exit_policy: false,
                    }),
                },
            }],
        };
        let json = serde_json::to_vec(&listing).expect("encodes");
        let (nodes, skipped) = parse_described(&json).expect("parses");
        assert_eq!((nodes.clone(), skipped), (listing.data, 0));
        assert_eq!(network_requesters(&nodes).len(), 1);
    }

    #[test]
    fn not_a_listing() {
        assert!(parse_described(b"").is_err());
        assert!(parse_described(b"{\"data\": 3}").is_err());
        assert!(parse_described(b"[]").is_err());
        assert_eq!(parse_described(b"{\"data\": []}"), Ok((vec![], 0)));
    }
}
