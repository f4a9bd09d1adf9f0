//! nym-api's `v2/nym-nodes/described` (and the deprecated
//! `v1/nym-nodes/described`) for the local network: what every node says
//! about itself, in nym-api's shape (spec `nym-socks5.md` §7). Clients read
//! it to find network requesters: a gateway whose requester was set with
//! [`Localnet::set_network_requester`](crate::Localnet::set_network_requester)
//! declares `exit_nr` and names the requester's address; every other node
//! has `network_requester: null`.
//!
//! Every node is in the one page (`pagination.page` 0), as nym-api ignores
//! `page` and `per_page`.

use std::collections::BTreeMap;

use nymd_proto::topology::{NodeId, Timestamp};
use nymd_proto::Recipient;
use serde_json::{json, Value};

use crate::network::{NodeInfo, NodeKind};

/// The binary a node reports in `build_information`.
const BINARY_NAME: &str = "nym-localnet";

/// The listing: `nodes` in order, with the requesters in `requesters`
/// (by gateway node id); `polled` is the time of the description
/// (`last_polled`); `rotation_id` the key rotation of the sphinx keys.
pub fn described_nodes(
    nodes: &[NodeInfo],
    requesters: &BTreeMap<NodeId, Recipient>,
    polled: Timestamp,
    rotation_id: u32,
) -> Value {
    let data: Vec<Value> = nodes
        .iter()
        .map(|n| described_node(n, requesters.get(&n.id), polled, rotation_id))
        .collect();
    json!({
        "pagination": { "total": data.len(), "page": 0, "size": data.len() },
        "data": data,
    })
}

fn described_node(
    n: &NodeInfo,
    requester: Option<&Recipient>,
    polled: Timestamp,
    rotation_id: u32,
) -> Value {
    let sphinx = bs58::encode(n.sphinx_key.as_bytes()).into_string();
    let gateway = n.kind == NodeKind::Gateway;
    let ip = n.ws_addr.unwrap_or(n.mix_addr).ip();
    let network_requester = match requester {
        Some(address) => json!({
            "address": address.to_string(),
            // Nym sets it only for its own upstream policy URL.
            "uses_exit_policy": false,
        }),
        None => Value::Null,
    };
    json!({
        "node_id": n.id,
        "contract_node_type": "nym_node",
        "description": {
            "last_polled": polled.to_string(),
            "host_information": {
                "ip_address": [ip.to_string()],
                "hostname": null,
                "keys": {
                    "ed25519": n.identity_bs58(),
                    "x25519": sphinx,
                    "current_x25519_sphinx_key": {
                        "rotation_id": rotation_id,
                        "public_key": sphinx,
                    },
                    "pre_announced_x25519_sphinx_key": null,
                    "x25519_versioned_noise": null,
                },
            },
            "declared_role": {
                "mixnode": !gateway,
                "entry": gateway,
                "exit_nr": gateway && requester.is_some(),
                "exit_ipr": false,
            },
            "auxiliary_details": {
                "location": null,
                "announce_ports": { "verloc_port": null, "mix_port": n.mix_addr.port() },
                "accepted_operator_terms_and_conditions": true,
            },
            "build_information": {
                "binary_name": BINARY_NAME,
                "build_timestamp": "",
                "build_version": env!("CARGO_PKG_VERSION"),
                "commit_sha": "",
                "commit_timestamp": "",
                "commit_branch": "",
                "rustc_version": "",
                "rustc_channel": "",
                "cargo_profile": "",
                "cargo_triple": "",
            },
            "network_requester": network_requester,
            "ip_packet_router": null,
            "authenticator": null,
            "wireguard": null,
            // Mixnodes have no client websocket: port 0.
            "mixnet_websockets": {
                "ws_port": n.ws_addr.map_or(0, |a| a.port()),
                "wss_port": null,
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::SystemTime;

    use nymd_proto::keys::{EncryptionKeyPair, IdentityKeyPair, X25519Public, X25519Secret};
    use nymd_proto::socks5::discovery::{network_requesters, parse_described};
    use rand::rngs::OsRng;

    use super::*;

    fn node(id: NodeId, kind: NodeKind, port: u16) -> NodeInfo {
        let mix_addr = SocketAddr::from(([127, 0, 0, 1], port));
        NodeInfo {
            id,
            kind,
            identity: IdentityKeyPair::generate(&mut OsRng).public(),
            sphinx_key: X25519Public::from(&X25519Secret::random_from_rng(OsRng)),
            mix_addr,
            ws_addr: (kind == NodeKind::Gateway)
                .then(|| SocketAddr::from(([127, 0, 0, 1], port + 1))),
        }
    }

    #[test]
    fn lists_every_node_and_names_the_requester_of_one_gateway() {
        let nodes = vec![
            node(1, NodeKind::Mixnode { layer: 1 }, 1000),
            node(2, NodeKind::Gateway, 2000),
            node(3, NodeKind::Gateway, 3000),
        ];
        let nr = Recipient::new(
            IdentityKeyPair::generate(&mut OsRng).public(),
            EncryptionKeyPair::generate(&mut OsRng).public(),
            nodes[2].identity,
        );
        let requesters = BTreeMap::from([(3, nr)]);
        let now = Timestamp::from_system_time(SystemTime::now());
        let doc = described_nodes(&nodes, &requesters, now, 0);

        assert_eq!(doc["pagination"], json!({"total": 3, "page": 0, "size": 3}));
        let data = doc["data"].as_array().expect("data");
        assert_eq!(data.len(), 3);
        for (n, d) in nodes.iter().zip(data) {
            assert_eq!(d["node_id"], json!(n.id));
            assert_eq!(d["contract_node_type"], "nym_node");
            let desc = &d["description"];
            assert_eq!(
                desc["host_information"]["keys"]["ed25519"],
                n.identity_bs58()
            );
            assert_eq!(
                desc["host_information"]["keys"]["current_x25519_sphinx_key"]["public_key"],
                bs58::encode(n.sphinx_key.as_bytes()).into_string()
            );
            let gateway = n.kind == NodeKind::Gateway;
            assert_eq!(desc["declared_role"]["entry"], gateway);
            assert_eq!(desc["declared_role"]["mixnode"], !gateway);
            assert_eq!(desc["declared_role"]["exit_nr"], n.id == 3);
            assert_eq!(desc["network_requester"].is_null(), n.id != 3);
            assert!(desc["ip_packet_router"].is_null());
            assert!(desc["authenticator"].is_null());
            assert_eq!(
                desc["mixnet_websockets"]["ws_port"],
                json!(n.ws_addr.map_or(0, |a| a.port()))
            );
        }
        let nr_json = &data[2]["description"]["network_requester"];
        assert_eq!(nr_json["address"], nr.to_string());
        assert_eq!(nr_json["uses_exit_policy"], false);

        // What a client's discovery reads from it.
        let (parsed, skipped) = parse_described(doc.to_string().as_bytes()).expect("listing");
        assert_eq!((parsed.len(), skipped), (3, 0));
        let found = network_requesters(&parsed);
        assert_eq!(found.len(), 1);
        assert_eq!((found[0].node_id, found[0].address), (3, nr));
    }

    #[test]
    fn no_requester_no_exit() {
        let nodes = vec![node(1, NodeKind::Gateway, 4000)];
        let now = Timestamp::from_system_time(SystemTime::now());
        let doc = described_nodes(&nodes, &BTreeMap::new(), now, 7);
        let desc = &doc["data"][0]["description"];
        assert_eq!(desc["declared_role"]["exit_nr"], false);
        assert!(desc["network_requester"].is_null());
        assert_eq!(
            desc["host_information"]["keys"]["current_x25519_sphinx_key"]["rotation_id"],
            7
        );
    }
}
