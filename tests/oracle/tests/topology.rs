//! Topology formats against Nym's own types: the `--custom-mixnet` topology
//! file (`nym_topology::NymTopology`), nym-api's skimmed node listings,
//! rewarded set and key-rotation info (`nym-api-requests`), both directions;
//! and routes chosen by Nym's topology over a network read from our file.

mod common;

use std::sync::Arc;

use common::net::Net;
use nym_api_requests::models::{
    KeyRotationDetails, KeyRotationInfoResponse as NymKeyRotationInfo,
    RewardedSetResponse as NymRewarded,
};
use nym_api_requests::nym_nodes::{
    BasicEntryInformation as NymEntry, NodeRole as NymNodeRole, PaginatedCachedNodesResponseV2,
    SkimmedNodeV1,
};
use nym_crypto::asymmetric::{ed25519, x25519};
use nym_mixnet_contract_common::reward_params::Performance as NymPerformance;
use nym_mixnet_contract_common::KeyRotationState as NymKeyRotationState;
use nym_topology::{NymRouteProvider, NymTopology as NymNymTopology};
use nymd_proto::topology::api::KeyRotationInfoResponse;
use nymd_proto::topology::{
    NodeRole, NymTopology, Performance, RewardedSetResponse, SkimmedNodesResponse,
};

fn skimmed(id: u32, role: NymNodeRole, gateway: bool, perf: u64) -> SkimmedNodeV1 {
    let identity = ed25519::PrivateKey::from_bytes(&common::bytes::<32>(3000 + u64::from(id)))
        .expect("seed")
        .public_key();
    let sphinx = x25519::PrivateKey::from_bytes(&common::bytes::<32>(4000 + u64::from(id)))
        .expect("32")
        .public_key();
    let json = serde_json::json!({
        "mixnode": !gateway, "entry": gateway, "exit_nr": gateway, "exit_ipr": gateway
    });
    SkimmedNodeV1 {
        node_id: id,
        ed25519_identity_pubkey: identity,
        ip_addresses: vec![
            format!("10.0.0.{id}").parse().expect("ip"),
            "::1".parse().expect("ip"),
        ],
        mix_port: 1789,
        x25519_sphinx_pubkey: sphinx,
        role,
        supported_roles: serde_json::from_value(json).expect("roles"),
        entry: gateway.then(|| NymEntry {
            hostname: (id % 2 == 0).then(|| format!("gw{id}.example")),
            ws_port: 9000,
            wss_port: (id % 2 == 0).then_some(9001),
        }),
        performance: NymPerformance::from_percentage_value(perf).expect("perf"),
    }
}

fn nym_nodes() -> Vec<SkimmedNodeV1> {
    vec![
        skimmed(1, NymNodeRole::Mixnode { layer: 1 }, false, 100),
        skimmed(2, NymNodeRole::Mixnode { layer: 2 }, false, 95),
        skimmed(3, NymNodeRole::Mixnode { layer: 3 }, false, 20),
        skimmed(4, NymNodeRole::EntryGateway, true, 99),
        skimmed(5, NymNodeRole::ExitGateway, true, 50),
        skimmed(6, NymNodeRole::Standby, false, 77),
        skimmed(7, NymNodeRole::Inactive, true, 0),
    ]
}

/// A skimmed listing written by Nym's types is read by ours field for field;
/// ours written back is read by Nym's to the same values.
#[test]
fn skimmed_nodes_both_ways() {
    let refreshed = time::OffsetDateTime::from_unix_timestamp(1_770_000_000).expect("time");
    let theirs = PaginatedCachedNodesResponseV2::new_full(42, 7, refreshed, nym_nodes());
    let json = serde_json::to_string(&theirs).expect("json");
    let ours: SkimmedNodesResponse = serde_json::from_str(&json)
        .unwrap_or_else(|e| panic!("we parse Nym's listing: {e}\n{json}"));
    assert_eq!(ours.metadata.absolute_epoch_id, 42);
    assert_eq!(ours.metadata.rotation_id, 7);
    assert_eq!(ours.nodes.data.len(), 7);
    for (o, t) in ours.nodes.data.iter().zip(&theirs.nodes.data) {
        assert_eq!(o.node_id, t.node_id);
        assert_eq!(
            o.ed25519_identity_pubkey.to_bytes(),
            t.ed25519_identity_pubkey.to_bytes()
        );
        assert_eq!(
            *o.x25519_sphinx_pubkey.as_bytes(),
            t.x25519_sphinx_pubkey.to_bytes()
        );
        assert_eq!(o.ip_addresses, t.ip_addresses);
        assert_eq!(o.mix_port, t.mix_port);
        assert_eq!(
            o.performance.percent_floor(),
            t.performance.round_to_integer(),
            "performance of {}",
            o.node_id
        );
        let role_ok = match (&o.role, &t.role) {
            (NodeRole::Mixnode { layer: a }, NymNodeRole::Mixnode { layer: b }) => a == b,
            (NodeRole::EntryGateway, NymNodeRole::EntryGateway)
            | (NodeRole::ExitGateway, NymNodeRole::ExitGateway)
            | (NodeRole::Standby, NymNodeRole::Standby)
            | (NodeRole::Inactive, NymNodeRole::Inactive) => true,
            _ => false,
        };
        assert!(
            role_ok,
            "role of {}: {:?} vs {:?}",
            o.node_id, o.role, t.role
        );
        assert_eq!(o.entry.is_some(), t.entry.is_some());
    }
    // Ours written, Nym reads, Nym writes, we read the same thing.
    let ours_json = serde_json::to_string(&ours).expect("json");
    let back: PaginatedCachedNodesResponseV2<SkimmedNodeV1> = serde_json::from_str(&ours_json)
        .unwrap_or_else(|e| panic!("Nym parses our listing: {e}\n{ours_json}"));
    let again: SkimmedNodesResponse =
        serde_json::from_str(&serde_json::to_string(&back).expect("json")).expect("parse");
    assert_eq!(again, ours);
    assert_eq!(
        Performance::from_percent(95),
        ours.nodes.data[1].performance,
        "0.95"
    );
}

#[test]
fn rewarded_set_and_key_rotation_both_ways() {
    let theirs = NymRewarded {
        epoch_id: 9,
        entry_gateways: vec![4],
        exit_gateways: vec![5],
        layer1: vec![1],
        layer2: vec![2],
        layer3: vec![3],
        standby: vec![6],
    };
    let json = serde_json::to_string(&theirs).expect("json");
    let ours: RewardedSetResponse = serde_json::from_str(&json).expect("we parse");
    assert_eq!(
        (ours.epoch_id, &ours.layer3, &ours.standby),
        (9, &vec![3], &vec![6])
    );
    let back: NymRewarded =
        serde_json::from_str(&serde_json::to_string(&ours).expect("json")).expect("Nym parses");
    assert_eq!(
        serde_json::to_value(&back).expect("v"),
        serde_json::to_value(&theirs).expect("v")
    );

    for (validity, initial, current) in [(24u32, 0u32, 0u32), (24, 10, 100), (3, 5, 1000)] {
        let details = KeyRotationDetails {
            key_rotation_state: NymKeyRotationState {
                validity_epochs: validity,
                initial_epoch_id: initial,
            },
            current_absolute_epoch_id: current,
            current_epoch_start: time::OffsetDateTime::from_unix_timestamp(1_770_000_000)
                .expect("time"),
            epoch_duration: std::time::Duration::from_secs(3600),
        };
        let theirs = NymKeyRotationInfo::from(details);
        let json = serde_json::to_string(&theirs).expect("json");
        let ours: KeyRotationInfoResponse =
            serde_json::from_str(&json).unwrap_or_else(|e| panic!("we parse {json}: {e}"));
        assert_eq!(
            ours.current_key_rotation_id(),
            Some(details.current_key_rotation_id()),
            "{json}"
        );
        assert_eq!(
            ours.progress.current_rotation_ending_epoch,
            theirs.progress.current_rotation_ending_epoch
        );
        let rebuilt = KeyRotationInfoResponse::new(
            ours.key_rotation_state,
            ours.current_absolute_epoch_id,
            ours.current_epoch_start,
            ours.epoch_duration,
        )
        .expect("valid");
        assert_eq!(rebuilt, ours, "our progress computation matches Nym's");
        let back: NymKeyRotationInfo =
            serde_json::from_str(&serde_json::to_string(&ours).expect("json")).expect("Nym parses");
        assert_eq!(
            serde_json::to_value(back).expect("v"),
            serde_json::to_value(theirs).expect("v")
        );
    }
}

/// The topology file: Nym's written, ours reads; ours written, Nym reads and
/// routes over it.
#[test]
fn topology_file_both_ways() {
    let net = Net::new();
    let provider: NymRouteProvider = net.nym_topology(11);
    let theirs_json = serde_json::to_string(&net.nym_topology_raw(11)).expect("json");
    let ours = NymTopology::from_file_json(&theirs_json)
        .unwrap_or_else(|e| panic!("we read Nym's topology file: {e}\n{theirs_json}"));
    assert_eq!(ours.key_rotation_id(), 11);
    assert_eq!(ours.nodes().len(), 5);
    for n in net.mixes.iter().chain(&net.gateways) {
        let node = ours.node(n.id).expect("node");
        assert_eq!(node.mix_host, n.addr);
        assert_eq!(node.sphinx_key, n.ours_hop().key);
    }
    assert!(ours.is_routable());

    let ours_json = ours.to_file_json().expect("write");
    let back: NymNymTopology = serde_json::from_str(&ours_json)
        .unwrap_or_else(|e| panic!("Nym reads our topology file: {e}\n{ours_json}"));
    assert_eq!(back.metadata().key_rotation_id, 11);
    let provider_back = NymRouteProvider::new(Arc::new(back), true);
    let gw_identity =
        ed25519::PublicKey::from_bytes(&net.gateways[1].identity().public_bytes()).expect("pub");
    let mut rng = common::nym_rng(5);
    let route = provider_back
        .random_route_to_egress(&mut rng, gw_identity)
        .expect("Nym routes over our topology");
    let expected = provider
        .random_route_to_egress(&mut common::nym_rng(5), gw_identity)
        .expect("route");
    assert_eq!(route.len(), 4);
    assert_eq!(
        route
            .iter()
            .map(|n| n.address.as_bytes())
            .collect::<Vec<_>>(),
        expected
            .iter()
            .map(|n| n.address.as_bytes())
            .collect::<Vec<_>>()
    );
}
