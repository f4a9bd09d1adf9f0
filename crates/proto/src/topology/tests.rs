//! Tests for the topology module: formats, filters, routability, routes,
//! gateway URLs, and property tests.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use proptest::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::api::*;
use super::route::{first_hop_address, to_sphinx_route};
use super::*;
use crate::keys::IdentityKeyPair;

/// A valid identity from the notes (the gateway of Nym's test address).
const ID_B58: &str = "4sBbL1ngf1vtNqykydQKTFh26sQCw888GpUqvPvyNB4f";
/// Any 32 bytes make an x25519 key; this is the encryption key of the same
/// test address.
const SPHINX_B58: &str = "4QXYyEVc5fUDjmmi8PrHN9tdUFV4PCvSJE1278cHyvoe";

/// The notes' hand-made example entry, with the abridged keys filled in.
fn example_entry() -> String {
    format!(
        r#"{{"node_id":4,"ed25519_identity_pubkey":"{ID_B58}","ip_addresses":["203.0.113.7"],"mix_port":1789,"x25519_sphinx_pubkey":"{SPHINX_B58}","role":"EntryGateway","supported_roles":{{"mixnode":false,"entry":true,"exit_nr":true,"exit_ipr":true}},"entry":{{"hostname":"gw.example.org","ws_port":9000,"wss_port":9001}},"performance":"0.98"}}"#
    )
}

fn identity(n: u8) -> VerifyingKey {
    IdentityKeyPair::from_secret_bytes(&[n; 32]).public()
}

fn ints(b: &[u8; 32]) -> String {
    let v: Vec<String> = b.iter().map(|x| x.to_string()).collect();
    format!("[{}]", v.join(","))
}

fn file_node(id: u32, port: u16, entry: &str, mixnode: bool) -> String {
    format!(
        r#""{id}":{{"node_id":{id},"mix_host":"127.0.0.1:{port}","entry":{entry},"identity_key":{},"sphinx_key":{},"supported_roles":{{"mixnode":{mixnode},"mixnet_entry":{gw},"mixnet_exit":{gw}}}}}"#,
        ints(identity(id as u8).as_bytes()),
        ints(&[id as u8; 32]),
        gw = !mixnode,
    )
}

/// The notes' minimal example file, completed with nodes 2–4.
fn example_file() -> String {
    let gw_entry = r#"{"ip_addresses":["127.0.0.1"],"clients_ws_port":9000,"hostname":null,"clients_wss_port":null}"#;
    format!(
        r#"{{"metadata":{{"key_rotation_id":0,"absolute_epoch_id":0,"refreshed_at":"2026-05-01T00:00:00Z"}},"rewarded_set":{{"epoch_id":0,"entry_gateways":[4],"exit_gateways":[4],"layer1":[1],"layer2":[2],"layer3":[3],"standby":[]}},"node_details":{{{},{},{},{}}}}}"#,
        file_node(1, 10001, "null", true),
        file_node(2, 10002, "null", true),
        file_node(3, 10003, "null", true),
        file_node(4, 10004, gw_entry, false),
    )
}

fn routing_node(id: u32, ip: &str, port: u16, entry: Option<EntryDetails>) -> RoutingNode {
    RoutingNode {
        node_id: id,
        mix_host: SocketAddr::new(ip.parse().expect("ip"), port),
        entry,
        identity_key: identity(id as u8),
        sphinx_key: X25519Public::from([id as u8; 32]),
        supported_roles: SupportedRoles {
            mixnode: id <= 3,
            mixnet_entry: id > 3,
            mixnet_exit: id > 3,
        },
        performance: None,
    }
}

fn gw_entry(ips: &[&str], hostname: Option<&str>, wss: Option<u16>) -> EntryDetails {
    EntryDetails {
        ip_addresses: ips.iter().map(|s| s.parse().expect("ip")).collect(),
        clients_ws_port: 9000,
        hostname: hostname.map(str::to_owned),
        clients_wss_port: wss,
    }
}

fn set(ids: &[u32]) -> BTreeSet<u32> {
    ids.iter().copied().collect()
}

/// Three mixnodes and a gateway, fixed keys.
fn small_topology() -> NymTopology {
    NymTopology::new(
        TopologyMetadata {
            key_rotation_id: 7,
            absolute_epoch_id: 170,
            refreshed_at: Timestamp::parse_rfc3339("2026-05-01T10:05:00.123Z").expect("time"),
        },
        RewardedSet {
            epoch_id: 170,
            entry_gateways: set(&[4]),
            exit_gateways: set(&[4]),
            layer1: set(&[1]),
            layer2: set(&[2]),
            layer3: set(&[3]),
            standby: set(&[]),
        },
        vec![
            routing_node(1, "10.0.0.1", 1789, None),
            routing_node(2, "10.0.0.2", 1789, None),
            routing_node(3, "2001:db8::3", 1789, None),
            routing_node(
                4,
                "10.0.0.4",
                1789,
                Some(gw_entry(&["10.0.0.4"], Some("gw.example.org"), Some(9001))),
            ),
        ],
    )
}

const GOLDEN_FILE: &str = include_str!("testdata/small.topology.json");
const GOLDEN_SKIMMED: &str = include_str!("testdata/small.skimmed.json");

// ---------------------------------------------------------------------------
// Formats
// ---------------------------------------------------------------------------

#[test]
fn parses_the_notes_example_entry() {
    let n: SkimmedNode = serde_json::from_str(&example_entry()).expect("entry");
    assert_eq!(n.node_id, 4);
    assert_eq!(
        bs58::encode(n.ed25519_identity_pubkey.as_bytes()).into_string(),
        ID_B58
    );
    assert_eq!(n.role, NodeRole::EntryGateway);
    assert_eq!(n.performance.percent_floor(), 98);
    assert_eq!(n.performance.to_string(), "0.98");
    let r = RoutingNode::from_skimmed(&n).expect("has an ip");
    assert_eq!(r.mix_host, "203.0.113.7:1789".parse().expect("addr"));
    assert_eq!(
        r.supported_roles,
        SupportedRoles {
            mixnode: false,
            mixnet_entry: true,
            mixnet_exit: true
        }
    );
    let l = r.ws_listeners(false).expect("entry");
    assert_eq!(l.primary, "ws://gw.example.org:9000");
    assert_eq!(l.fallback.as_deref(), Some("ws://203.0.113.7:9000"));
    assert_eq!(
        r.wss_listener().as_deref(),
        Some("wss://gw.example.org:9001")
    );

    // Serialising gives back the same JSON.
    let back = serde_json::to_string(&n).expect("ser");
    let a: serde_json::Value = serde_json::from_str(&back).expect("json");
    let b: serde_json::Value = serde_json::from_str(&example_entry()).expect("json");
    assert_eq!(a, b);
}

#[test]
fn skimmed_node_variants() {
    let base = example_entry();
    // epoch_role alias, mixnode role, no supported_roles, entry absent.
    let v = base
        .replace(
            r#""role":"EntryGateway""#,
            r#""epoch_role":{"Mixnode":{"layer":2}}"#,
        )
        .replace(
            r#""supported_roles":{"mixnode":false,"entry":true,"exit_nr":true,"exit_ipr":true},"#,
            "",
        )
        .replace(
            r#""entry":{"hostname":"gw.example.org","ws_port":9000,"wss_port":9001},"#,
            "",
        );
    let n: SkimmedNode = serde_json::from_str(&v).expect("variant");
    assert_eq!(n.role, NodeRole::Mixnode { layer: 2 });
    assert_eq!(n.supported_roles, DeclaredRoles::default());
    assert_eq!(n.entry, None);
    for (text, role) in [
        ("\"entry\"", NodeRole::EntryGateway),
        ("\"gateway\"", NodeRole::EntryGateway),
        ("\"exit\"", NodeRole::ExitGateway),
        ("\"ExitGateway\"", NodeRole::ExitGateway),
        ("\"Standby\"", NodeRole::Standby),
        ("\"Inactive\"", NodeRole::Inactive),
    ] {
        let v = base.replace("\"EntryGateway\"", text);
        let n: SkimmedNode = serde_json::from_str(&v).expect(text);
        assert_eq!(n.role, role);
    }
    // Wrong key length, bad point, performance out of range: errors.
    let bad = base.replace(ID_B58, "4sBbL1ng");
    assert!(serde_json::from_str::<SkimmedNode>(&bad).is_err());
    let bad = base.replace("\"0.98\"", "\"1.01\"");
    let e = serde_json::from_str::<SkimmedNode>(&bad).expect_err("over 1");
    assert!(e.to_string().contains("larger than 100%"), "{e}");
    let bad = base.replace("\"0.98\"", "0.98");
    assert!(serde_json::from_str::<SkimmedNode>(&bad).is_err());
}

#[test]
fn parses_the_notes_example_file() {
    let t = NymTopology::from_file_json(&example_file()).expect("file");
    assert_eq!(t.key_rotation_id(), 0);
    assert_eq!(t.key_rotation(), KeyRotation::Unknown);
    assert_eq!(t.nodes().len(), 4);
    assert!(t.is_routable());
    let gw = t.node(4).expect("gateway");
    let l = gw.ws_listeners(false).expect("entry");
    assert_eq!(l.primary, "ws://127.0.0.1:9000");
    assert_eq!(l.fallback, None);
    assert_eq!(gw.wss_listener(), None);
    assert_eq!(
        t.entry_capable_nodes()
            .map(|n| n.node_id)
            .collect::<Vec<_>>(),
        vec![4]
    );
    assert_eq!(
        t.metadata().refreshed_at,
        Timestamp::parse_rfc3339("2026-05-01T00:00:00Z").expect("t")
    );
}

#[test]
fn golden_topology_file() {
    let t = small_topology();
    let json = t.to_file().expect("write");
    assert_eq!(json, GOLDEN_FILE.trim_end());
    let back = NymTopology::from_file_json(GOLDEN_FILE).expect("read");
    assert_eq!(back, t);
    let compact = t.to_file_json().expect("write");
    assert_eq!(NymTopology::from_file_json(&compact).expect("read"), t);
    assert_eq!(
        NymTopology::from_file_slice(compact.as_bytes()).expect("read"),
        t
    );
}

fn small_api_answers() -> (
    RewardedSetResponse,
    SkimmedNodesResponse,
    SkimmedNodesResponse,
) {
    let t = small_topology();
    let mut meta = t.response_metadata();
    meta.status = Some(TopologyRequestStatus::Fresh(Interval {
        id: 3,
        epochs_in_interval: 720,
        current_epoch_start: Timestamp::parse_rfc3339("2026-05-01T10:00:00Z").expect("t"),
        current_epoch_id: 170,
        epoch_length: Duration::from_secs(3600),
        total_elapsed_epochs: 2330,
    }));
    let mut with_perf = t.clone();
    for (id, p) in [(1u32, "0.97"), (2, "1"), (3, "0.5"), (4, "0.98")] {
        let mut n = with_perf.node(id).expect("node").clone();
        n.performance = Some(p.parse().expect("perf"));
        with_perf.insert_node(n);
    }
    let mixnodes = SkimmedNodesResponse::full(meta, with_perf.skimmed_nodes(|n| n.node_id <= 3));
    let gateways = SkimmedNodesResponse::full(meta, with_perf.skimmed_nodes(|n| n.entry.is_some()));
    (t.rewarded_set_response(), mixnodes, gateways)
}

#[test]
fn golden_api_json() {
    let (rewarded, mixnodes, gateways) = small_api_answers();
    let json = serde_json::to_string_pretty(&mixnodes).expect("ser");
    assert_eq!(json, GOLDEN_SKIMMED.trim_end());
    let back: SkimmedNodesResponse = serde_json::from_str(GOLDEN_SKIMMED).expect("de");
    assert_eq!(back, mixnodes);

    assert_eq!(
        serde_json::to_string(&rewarded).expect("ser"),
        r#"{"epoch_id":170,"entry_gateways":[4],"exit_gateways":[4],"layer1":[1],"layer2":[2],"layer3":[3],"standby":[]}"#
    );
    let gw_json = serde_json::to_string(&gateways).expect("ser");
    assert!(gw_json.contains(r#""role":"EntryGateway""#), "{gw_json}");
    assert!(
        gw_json.contains(r#""entry":{"hostname":"gw.example.org","ws_port":9000,"wss_port":9001}"#)
    );

    // Rebuilding the model from the served answers gives the original back
    // (plus performance).
    let t = NymTopology::from_api(
        &rewarded,
        &collect(mixnodes),
        &collect(gateways),
        PerformanceThresholds::default(),
    )
    .expect("consistent");
    let mut expected = small_topology();
    for (id, p) in [(1u32, "0.97"), (2, "1"), (3, "0.5"), (4, "0.98")] {
        let mut n = expected.node(id).expect("node").clone();
        n.performance = Some(p.parse().expect("perf"));
        expected.insert_node(n);
    }
    assert_eq!(t, expected);
    assert_eq!(t.key_rotation(), KeyRotation::Odd);
}

fn collect(page: SkimmedNodesResponse) -> SkimmedNodesWithMetadata {
    let mut c = PageCollector::new();
    assert_eq!(c.push(page), Ok(PageProgress::Complete));
    c.finish().expect("complete")
}

#[test]
fn metadata_json_shapes() {
    let m: NodesResponseMetadata = serde_json::from_str(
        r#"{"status":"no-updates","absolute_epoch_id":5,"rotation_id":2,"refreshed_at":"2026-05-01 10:05:00.123 +00:00:00"}"#,
    )
    .expect("metadata");
    assert_eq!(m.status, Some(TopologyRequestStatus::NoUpdates));
    assert_eq!(
        m.refreshed_at,
        Timestamp::parse_rfc3339("2026-05-01T10:05:00.123Z").expect("t")
    );
    let back = serde_json::to_string(&m).expect("ser");
    assert_eq!(
        back,
        r#"{"status":"no-updates","absolute_epoch_id":5,"rotation_id":2,"refreshed_at":"2026-05-01 10:05:00.123 +00:00:00"}"#
    );
    // RFC 3339 also accepted; garbage becomes the epoch; null status ok.
    for (text, want) in [
        (
            "2026-05-01T10:05:00.123Z",
            Timestamp::parse_rfc3339("2026-05-01T10:05:00.123Z").expect("t"),
        ),
        ("last tuesday", Timestamp::UNIX_EPOCH),
        ("", Timestamp::UNIX_EPOCH),
    ] {
        let m: NodesResponseMetadata = serde_json::from_str(&format!(
            r#"{{"status":null,"absolute_epoch_id":5,"rotation_id":2,"refreshed_at":"{text}"}}"#
        ))
        .expect("tolerated");
        assert_eq!(m.refreshed_at, want, "{text}");
        assert_eq!(m.status, None);
    }
    let fresh: NodesResponseMetadata = serde_json::from_str(
        r#"{"status":{"fresh":{"id":3,"epochs_in_interval":720,"current_epoch_start":"2026-05-01T10:00:00Z","current_epoch_id":170,"epoch_length":{"secs":3600,"nanos":0},"total_elapsed_epochs":2330}},"absolute_epoch_id":5,"rotation_id":2,"refreshed_at":"x"}"#,
    )
    .expect("fresh");
    assert!(matches!(
        fresh.status,
        Some(TopologyRequestStatus::Fresh(i)) if i.epoch_length == Duration::from_secs(3600)
    ));
}

#[test]
fn rewarded_set_response_epoch_optional() {
    let r: RewardedSetResponse = serde_json::from_str(
        r#"{"entry_gateways":[4],"exit_gateways":[5],"layer1":[1],"layer2":[2],"layer3":[3],"standby":[]}"#,
    )
    .expect("no epoch_id");
    assert_eq!(r.epoch_id, 0);
    assert!(serde_json::from_str::<RewardedSetResponse>(
        r#"{"entry_gateways":[4],"exit_gateways":[5],"layer1":[1],"layer2":[2],"layer3":[3]}"#
    )
    .is_err());
}

#[test]
fn key_rotation_info() {
    let state = KeyRotationState {
        validity_epochs: 24,
        initial_epoch_id: 100,
    };
    assert_eq!(state.key_rotation_id(50), Some(0));
    assert_eq!(state.key_rotation_id(123), Some(0));
    assert_eq!(state.key_rotation_id(124), Some(1));
    assert_eq!(state.key_rotation_id(171), Some(2));
    let r = KeyRotationInfoResponse::new(
        state,
        171,
        Timestamp::parse_rfc3339("2026-05-01T10:00:00Z").expect("t"),
        Duration::from_secs(3600),
    )
    .expect("valid");
    assert_eq!(
        r.progress,
        KeyRotationProgressInfo {
            current_key_rotation_id: 2,
            current_rotation_starting_epoch: 148,
            current_rotation_ending_epoch: 171,
        }
    );
    assert_eq!(r.key_rotation(), KeyRotation::Even);
    let json = serde_json::to_string(&r).expect("ser");
    assert_eq!(
        json,
        r#"{"key_rotation_state":{"validity_epochs":24,"initial_epoch_id":100},"current_absolute_epoch_id":171,"current_epoch_start":"2026-05-01T10:00:00Z","epoch_duration":{"secs":3600,"nanos":0},"progress":{"current_key_rotation_id":2,"current_rotation_starting_epoch":148,"current_rotation_ending_epoch":171}}"#
    );
    let back: KeyRotationInfoResponse = serde_json::from_str(&json).expect("de");
    assert_eq!(back, r);

    let zero = KeyRotationState {
        validity_epochs: 0,
        initial_epoch_id: 0,
    };
    assert_eq!(zero.key_rotation_id(5), None);
    assert!(KeyRotationInfoResponse::new(zero, 5, Timestamp::UNIX_EPOCH, Duration::ZERO).is_none());
}

// ---------------------------------------------------------------------------
// Topology file: tolerant and strict cases
// ---------------------------------------------------------------------------

fn file_err(json: &str) -> String {
    NymTopology::from_file_json(json)
        .expect_err("should be rejected")
        .to_string()
}

#[test]
fn file_without_standby_is_rejected_clearly() {
    let json = example_file().replace(r#","standby":[]"#, "");
    let e = file_err(&json);
    assert!(e.contains("missing field `standby` in rewarded_set"), "{e}");
    assert!(e.contains("use [] for an empty list"), "{e}");
    assert!(e.contains("line 1 column"), "{e}");
}

#[test]
fn file_without_metadata_is_fine() {
    let full = example_file();
    let start = full.find(r#""metadata""#).expect("metadata");
    let end = full.find(r#""rewarded_set""#).expect("rewarded_set");
    let json = format!("{}{}", &full[..start], &full[end..]);
    let t = NymTopology::from_file_json(&json).expect("no metadata");
    assert_eq!(t.key_rotation_id(), u32::MAX);
    assert_eq!(t.key_rotation(), KeyRotation::Unknown);
    assert_eq!(*t.metadata(), TopologyMetadata::default());
}

#[test]
fn partial_metadata_is_rejected() {
    let json = example_file().replace(r#""absolute_epoch_id":0,"#, "");
    let e = file_err(&json);
    assert!(e.contains("metadata is missing `absolute_epoch_id`"), "{e}");
    let json = example_file().replace("2026-05-01T00:00:00Z", "2026-05-01 00:00:00");
    let e = file_err(&json);
    assert!(e.contains("expected RFC 3339"), "{e}");
}

#[test]
fn base58_identity_key_is_rejected() {
    let id = ints(identity(1).as_bytes());
    let json = example_file().replacen(&id, &format!("\"{ID_B58}\""), 1);
    let e = file_err(&json);
    assert!(
        e.contains("identity_key must be a JSON array of 32 integers"),
        "{e}"
    );
    // Wrong length and a non-point are also caught.
    let json = example_file().replacen(&id, "[1,2,3]", 1);
    assert!(file_err(&json).contains("exactly 32 bytes, found 3"));
    let mut not_point = [0u8; 32];
    not_point[0] = 2;
    let json = example_file().replacen(&id, &ints(&not_point), 1);
    assert!(file_err(&json).contains("not a valid ed25519 public key"));
}

#[test]
fn hostname_mix_host_is_rejected() {
    let json = example_file().replace("127.0.0.1:10001", "localhost:10001");
    let e = file_err(&json);
    assert!(
        e.contains("mix_host \"localhost:10001\" is not a literal socket address"),
        "{e}"
    );
}

#[test]
fn file_tolerates_omissions_and_unknown_keys() {
    let json = example_file()
        // `entry` left out of a mixnode.
        .replacen(r#""entry":null,"#, "", 1)
        // hostname and wss port left out of the gateway entry.
        .replace(r#","hostname":null,"clients_wss_port":null"#, "")
        // the generator's per-node version.
        .replace(r#""node_id":2,"#, r#""node_id":2,"version":"1.2.3","#);
    let t = NymTopology::from_file_json(&json).expect("tolerated");
    assert_eq!(t.nodes().len(), 4);
    assert_eq!(
        t.node(4)
            .and_then(|n| n.entry.as_ref())
            .map(|e| e.hostname.clone()),
        Some(None)
    );
    // No performance filter for files.
    assert!(t.nodes().values().all(|n| n.performance.is_none()));
}

#[test]
fn unparsable_refreshed_at_is_tolerated_in_api_listing() {
    let page = format!(
        r#"{{"metadata":{{"status":null,"absolute_epoch_id":1,"rotation_id":3,"refreshed_at":"not a date"}},"nodes":{{"pagination":{{"total":1,"page":0,"size":1}},"data":[{}]}}}}"#,
        example_entry()
    );
    let r: SkimmedNodesResponse = serde_json::from_str(&page).expect("tolerated");
    assert_eq!(r.metadata.refreshed_at, Timestamp::UNIX_EPOCH);
    assert_eq!(r.nodes.data.len(), 1);
}

// ---------------------------------------------------------------------------
// Building from nym-api, paging
// ---------------------------------------------------------------------------

#[test]
fn performance_values() {
    for (text, floor) in [
        ("0", 0u8),
        ("0.5", 50),
        ("0.499999999999999999", 49),
        ("0.98", 98),
        ("0.989", 98),
        ("1", 100),
        ("1.000", 100),
        ("00.25", 25),
    ] {
        let p: Performance = text.parse().expect(text);
        assert_eq!(p.percent_floor(), floor, "{text}");
    }
    for bad in [
        "",
        ".5",
        "1.",
        "1.0000001",
        "2",
        "-0.5",
        "0.5e1",
        "0.1234567890123456789",
        " 0.5",
    ] {
        assert!(bad.parse::<Performance>().is_err(), "{bad}");
    }
    assert_eq!(Performance::from_percent(50).to_string(), "0.5");
    assert_eq!(Performance::FULL.to_string(), "1");
    assert_eq!(Performance::ZERO.to_string(), "0");
}

fn skimmed(id: u32, perf: &str, entry: bool) -> SkimmedNode {
    let mut n = routing_node(
        id,
        &format!("10.0.0.{id}"),
        1789,
        entry.then(|| gw_entry(&[&format!("10.0.0.{id}")], None, None)),
    );
    n.performance = Some(perf.parse().expect("perf"));
    n.to_skimmed(NodeRole::Inactive)
}

fn meta(epoch: u32, rotation: u32) -> NodesResponseMetadata {
    NodesResponseMetadata {
        status: None,
        absolute_epoch_id: epoch,
        rotation_id: rotation,
        refreshed_at: Timestamp::UNIX_EPOCH,
    }
}

fn layered_rewarded_set() -> RewardedSetResponse {
    RewardedSetResponse {
        epoch_id: 1,
        entry_gateways: vec![10, 11],
        exit_gateways: vec![10],
        layer1: vec![1, 2],
        layer2: vec![3, 4],
        layer3: vec![5, 6],
        standby: vec![7],
    }
}

#[test]
fn performance_filter_and_layers_from_rewarded_set() {
    let mix = SkimmedNodesWithMetadata {
        metadata: meta(1, 2),
        nodes: vec![
            skimmed(1, "0.50", false),
            skimmed(2, "0.4999", false),
            skimmed(3, "0.9", false),
            skimmed(4, "0.1", false),
            skimmed(5, "1", false),
            skimmed(6, "0.49", false),
            // Listed as active by nym-api but in no layer of the rewarded set.
            skimmed(8, "1", false),
        ],
    };
    let gws = SkimmedNodesWithMetadata {
        metadata: meta(1, 2),
        nodes: vec![skimmed(10, "0.7", true), skimmed(11, "0.3", true)],
    };
    let rs = layered_rewarded_set();
    let t = NymTopology::from_api(&rs, &mix, &gws, PerformanceThresholds::default())
        .expect("consistent");
    let ids: Vec<u32> = t.nodes().keys().copied().collect();
    assert_eq!(ids, vec![1, 3, 5, 8, 10]);
    assert!(t.is_routable());
    assert_eq!(
        t.mixnodes().map(|n| n.node_id).collect::<Vec<_>>(),
        vec![1, 3, 5]
    );
    assert_eq!(
        t.entry_gateways().map(|n| n.node_id).collect::<Vec<_>>(),
        vec![10]
    );
    assert_eq!(t.key_rotation_id(), 2);

    // Separate gateway threshold.
    let t = NymTopology::from_api(
        &rs,
        &mix,
        &gws,
        PerformanceThresholds {
            mixnode: 50,
            gateway: 20,
        },
    )
    .expect("consistent");
    assert!(t.node(11).is_some());

    // Extended listing: one threshold, the lower one.
    let mut all = mix.clone();
    all.nodes.extend(gws.nodes.clone());
    let t = NymTopology::from_api_all_nodes(
        &rs,
        &all,
        PerformanceThresholds {
            mixnode: 60,
            gateway: 30,
        },
    );
    let ids: Vec<u32> = t.nodes().keys().copied().collect();
    assert_eq!(ids, vec![1, 2, 3, 5, 6, 8, 10, 11]);

    // Filtering out every layer-3 node makes it unroutable.
    let strict = NymTopology::from_api(
        &rs,
        &mix,
        &gws,
        PerformanceThresholds {
            mixnode: 100,
            gateway: 50,
        },
    )
    .expect("consistent");
    assert!(!strict.is_routable());
}

#[test]
fn inconsistent_metadata_between_calls() {
    let mix = SkimmedNodesWithMetadata {
        metadata: meta(1, 2),
        nodes: vec![],
    };
    let mut gws = mix.clone();
    gws.metadata.rotation_id = 3;
    let e = NymTopology::from_api(
        &layered_rewarded_set(),
        &mix,
        &gws,
        PerformanceThresholds::default(),
    )
    .expect_err("inconsistent");
    assert!(e
        .to_string()
        .starts_with("inconsistent nodes metadata between mixnodes and gateways calls!"));
    // refreshed_at is not compared.
    let mut gws = mix.clone();
    gws.metadata.refreshed_at = Timestamp::from_unix(1000, 0).expect("t");
    assert!(NymTopology::from_api(
        &layered_rewarded_set(),
        &mix,
        &gws,
        PerformanceThresholds::default()
    )
    .is_ok());
}

#[test]
fn nodes_without_ips_are_skipped() {
    let mut n = skimmed(1, "1", false);
    n.ip_addresses.clear();
    let e = RoutingNode::from_skimmed(&n).expect_err("no ip");
    assert!(e
        .to_string()
        .contains("has not provided any valid ip addresses"));
    let listing = SkimmedNodesWithMetadata {
        metadata: meta(1, 1),
        nodes: vec![n, skimmed(2, "1", false)],
    };
    let t = NymTopology::from_api_all_nodes(
        &layered_rewarded_set(),
        &listing,
        PerformanceThresholds::default(),
    );
    assert_eq!(t.nodes().keys().copied().collect::<Vec<_>>(), vec![2]);
}

#[test]
fn paging() {
    let all: Vec<SkimmedNode> = (1..=5).map(|i| skimmed(i, "1", false)).collect();
    let m = meta(4, 1);
    let mut c = PageCollector::new();
    assert_eq!(
        c.push(SkimmedNodesResponse::page_of(m, &all, 0, 2)),
        Ok(PageProgress::NeedPage(1))
    );
    assert_eq!(
        c.push(SkimmedNodesResponse::page_of(m, &all, 1, 2)),
        Ok(PageProgress::NeedPage(2))
    );
    assert_eq!(
        c.push(SkimmedNodesResponse::page_of(m, &all, 2, 2)),
        Ok(PageProgress::Complete)
    );
    assert_eq!(
        c.push(SkimmedNodesResponse::page_of(m, &all, 2, 2)),
        Err(ApiError::OutOfOrder)
    );
    let got = c.finish().expect("done");
    assert_eq!(got.nodes, all);
    assert_eq!(got.metadata, m);

    // A later page from another epoch.
    let mut c = PageCollector::new();
    c.push(SkimmedNodesResponse::page_of(m, &all, 0, 2))
        .expect("first");
    let e = c
        .push(SkimmedNodesResponse::page_of(meta(5, 1), &all, 1, 2))
        .expect_err("inconsistent");
    assert_eq!(e, ApiError::InconsistentPagedMetadata);
    assert_eq!(e.to_string(), "Inconsistent paged metadata");

    // An empty page before the total is reached.
    let mut c = PageCollector::new();
    c.push(SkimmedNodesResponse::page_of(m, &all, 0, 2))
        .expect("first");
    assert!(matches!(
        c.push(SkimmedNodesResponse::page_of(m, &all, 9, 2)),
        Err(ApiError::StalledPaging { .. })
    ));
    assert!(PageCollector::new().finish().is_err());

    // Everything-in-one-page and no-updates.
    let full = SkimmedNodesResponse::page_of(m, &all, 0, 0);
    assert_eq!(
        full.nodes.pagination,
        Pagination {
            total: 5,
            page: 0,
            size: 5
        }
    );
    let none = SkimmedNodesResponse::no_updates(4, 1, Timestamp::UNIX_EPOCH);
    let json = serde_json::to_string(&none).expect("ser");
    assert_eq!(
        json,
        r#"{"metadata":{"status":"no-updates","absolute_epoch_id":4,"rotation_id":1,"refreshed_at":"1970-01-01 00:00:00.0 +00:00:00"},"nodes":{"pagination":{"total":0,"page":0,"size":0},"data":[]}}"#
    );
    assert_eq!(collect(none).nodes.len(), 0);
}

#[test]
fn init_gateway_list() {
    let mut mixcapable = skimmed(12, "1", true);
    mixcapable.supported_roles.mixnode = true;
    let listing = vec![
        skimmed(10, "0.9", true),
        skimmed(11, "0.2", true),
        mixcapable,
    ];
    let ids = |v: Vec<RoutingNode>| v.iter().map(|n| n.node_id).collect::<Vec<_>>();
    assert_eq!(
        ids(init_gateway_candidates(&listing, 50, true)),
        vec![10, 12]
    );
    assert_eq!(ids(init_gateway_candidates(&listing, 50, false)), vec![10]);
    let gws = init_gateway_candidates(&listing, 0, true);
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mut seen = BTreeMap::new();
    for _ in 0..3000 {
        let g = choose_gateway(&mut rng, &gws).expect("non-empty");
        *seen.entry(g.node_id).or_insert(0u32) += 1;
    }
    assert_eq!(seen.len(), 3);
    assert!(seen.values().all(|&c| (850..1150).contains(&c)), "{seen:?}");
    assert!(choose_gateway(&mut rng, &[]).is_none());
}

// ---------------------------------------------------------------------------
// Routability and routes
// ---------------------------------------------------------------------------

fn big_topology() -> NymTopology {
    // Layers of three known nodes each plus one unknown id per layer.
    let rs = RewardedSet {
        epoch_id: 1,
        entry_gateways: set(&[10]),
        exit_gateways: set(&[11]),
        layer1: set(&[1, 2, 3, 91]),
        layer2: set(&[4, 5, 6, 92]),
        layer3: set(&[7, 8, 9, 93]),
        standby: set(&[]),
    };
    let mut nodes: Vec<RoutingNode> = (1..=9)
        .map(|i| routing_node(i, &format!("10.0.0.{i}"), 1789, None))
        .collect();
    nodes.push(routing_node(
        10,
        "10.0.0.10",
        1789,
        Some(gw_entry(&["10.0.0.10"], None, None)),
    ));
    nodes.push(routing_node(
        11,
        "10.0.0.11",
        1789,
        Some(gw_entry(&["10.0.0.11"], None, None)),
    ));
    // A gateway outside the rewarded set (a recipient's gateway may be).
    nodes.push(routing_node(
        12,
        "10.0.0.12",
        1789,
        Some(gw_entry(&["10.0.0.12"], None, None)),
    ));
    NymTopology::new(TopologyMetadata::default(), rs, nodes)
}

#[test]
fn routable_checks() {
    let t = big_topology();
    assert!(t.is_routable());

    // A layer whose only ids are unknown.
    let mut u = t.clone();
    u.rewarded_set.layer2 = set(&[92]);
    assert!(!u.is_routable());

    // No entry and no exit ids.
    let mut u = t.clone();
    u.rewarded_set.entry_gateways.clear();
    assert!(u.is_routable(), "exit set alone suffices");
    u.rewarded_set.exit_gateways.clear();
    assert!(!u.is_routable());

    assert!(!NymTopology::default().is_routable());
    assert!(NymTopology::default().is_empty());
}

#[test]
fn route_selection_is_uniform_and_skips_unknown_ids() {
    let t = big_topology();
    let egress = *t.node(12).expect("gw").identity_key.as_bytes();
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    let mut counts: BTreeMap<u32, u32> = BTreeMap::new();
    const N: u32 = 9000;
    for _ in 0..N {
        let route = t.random_route_to(&mut rng, &egress).expect("route");
        assert_eq!(route.len(), 4);
        assert!((1..=3).contains(&route[0].node_id));
        assert!((4..=6).contains(&route[1].node_id));
        assert!((7..=9).contains(&route[2].node_id));
        assert_eq!(route[3].node_id, 12);
        assert_eq!(first_hop_address(&route), Some(route[0].address));
        for hop in &route {
            *counts.entry(hop.node_id).or_insert(0) += 1;
        }
    }
    // Each of the 9 mixnodes is drawn about N/3 times.
    for id in 1..=9u32 {
        let c = counts.get(&id).copied().unwrap_or(0);
        assert!((2700..3300).contains(&c), "node {id}: {c}");
    }
    assert_eq!(counts.get(&12), Some(&N));
    for missing in [91u32, 92, 93] {
        assert!(!counts.contains_key(&missing));
    }
}

#[test]
fn route_hops_carry_keys_and_sphinx_form() {
    let t = small_topology();
    let egress = *t.node(4).expect("gw").identity_key.as_bytes();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let route = t.random_route_to(&mut rng, &egress).expect("route");
    let ids: Vec<u32> = route.iter().map(|h| h.node_id).collect();
    assert_eq!(ids, vec![1, 2, 3, 4]);
    for hop in &route {
        let node = t.node(hop.node_id).expect("node");
        assert_eq!(hop.sphinx_key, node.sphinx_key);
        assert_eq!(hop.identity, node.identity_key);
        assert_eq!(hop.address, crate::NodeAddress(node.mix_host));
    }
    let sphinx = to_sphinx_route(&route).expect("sphinx");
    assert_eq!(sphinx.len(), 4);
    // IPv4 10.0.0.1:1789 → 04 06fd 0a000001, zero-padded to 32.
    let mut want = [0u8; 32];
    want[..7].copy_from_slice(&[4, 0x06, 0xfd, 10, 0, 0, 1]);
    assert_eq!(*sphinx[0].address.as_bytes(), want);
    assert_eq!(sphinx[0].pub_key, route[0].sphinx_key);
    // IPv6 hop (node 3) uses 19 bytes.
    let third = sphinx[2].address.as_bytes();
    assert_eq!(third[0], 6);
    assert!(third[19..].iter().all(|&b| b == 0));
}

#[test]
fn route_errors() {
    let t = big_topology();
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let unknown = *identity(200).as_bytes();
    let e = t.random_route_to(&mut rng, &unknown).expect_err("unknown");
    assert_eq!(
        e,
        RouteError::UnknownEgress(bs58::encode(unknown).into_string())
    );
    assert!(e
        .to_string()
        .contains("does not exist in the network topology"));

    // An active mixnode as egress: fine when roles are ignored, not otherwise.
    let mix = *t.node(5).expect("mix").identity_key.as_bytes();
    assert!(t.random_route_to(&mut rng, &mix).is_ok());
    assert!(matches!(
        t.random_route_to_with(&mut rng, &mix, false),
        Err(RouteError::InvalidEgressRole(_))
    ));

    // A layer with only unknown ids.
    let mut u = t.clone();
    u.rewarded_set.layer3 = set(&[93, 94]);
    let gw = *t.node(10).expect("gw").identity_key.as_bytes();
    assert_eq!(
        u.random_route_to(&mut rng, &gw),
        Err(RouteError::NoMixnodesAvailable(3))
    );
    let mut u = t.clone();
    u.rewarded_set = RewardedSet::default();
    assert_eq!(
        u.random_route_to(&mut rng, &gw),
        Err(RouteError::EmptyTopology)
    );

    // Egress-only route (disable_mix_hops).
    let r = t.egress_only_route(&gw, true).expect("egress");
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].node_id, 10);
    assert_eq!(t.gateway_by_identity(&gw).map(|n| n.node_id), Some(10));
    assert!(t.gateway_by_identity(&unknown).is_none());
}

// ---------------------------------------------------------------------------
// Gateway URLs
// ---------------------------------------------------------------------------

#[test]
fn gateway_url_rules() {
    // Hostname first, first IP as fallback; wss only with hostname + port.
    let e = gw_entry(&["1.2.3.4", "5.6.7.8"], Some("gw.example"), Some(443));
    let l = e.ws_listeners(false).expect("listeners");
    assert_eq!(l.primary, "ws://gw.example:9000");
    assert_eq!(l.fallback.as_deref(), Some("ws://1.2.3.4:9000"));
    assert_eq!(e.wss_listener().as_deref(), Some("wss://gw.example:443"));
    // no_hostname: the two IPs.
    let l = e.ws_listeners(true).expect("listeners");
    assert_eq!(l.primary, "ws://1.2.3.4:9000");
    assert_eq!(l.fallback.as_deref(), Some("ws://5.6.7.8:9000"));

    // No hostname: first IP, second IP as fallback; no wss even with a port.
    let e = gw_entry(&["1.2.3.4", "2001:db8::1"], None, Some(443));
    let l = e.ws_listeners(false).expect("listeners");
    assert_eq!(l.primary, "ws://1.2.3.4:9000");
    assert_eq!(l.fallback.as_deref(), Some("ws://[2001:db8::1]:9000"));
    assert_eq!(e.wss_listener(), None);

    // IPv6 first and only.
    let e = gw_entry(&["::1"], None, None);
    let l = e.ws_listeners(false).expect("listeners");
    assert_eq!(l.primary, "ws://[::1]:9000");
    assert_eq!(l.fallback, None);

    // Hostname with no IPs; nothing at all.
    let e = gw_entry(&[], Some("gw.example"), None);
    let l = e.ws_listeners(false).expect("listeners");
    assert_eq!(l.primary, "ws://gw.example:9000");
    assert_eq!(l.fallback, None);
    assert_eq!(gw_entry(&[], None, None).ws_listeners(false), None);
    assert_eq!(e.ws_listeners(true), None);

    // A node without entry details has no listeners.
    let n = routing_node(1, "1.2.3.4", 1789, None);
    assert_eq!(n.ws_listeners(false), None);
    assert_eq!(n.wss_listener(), None);
}

// ---------------------------------------------------------------------------
// Property tests
// ---------------------------------------------------------------------------

fn arb_ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(IpAddr::from),
        any::<[u8; 16]>().prop_map(IpAddr::from),
    ]
}

fn arb_entry() -> impl Strategy<Value = Option<EntryDetails>> {
    proptest::option::of(
        (
            proptest::collection::vec(arb_ip(), 0..3),
            any::<u16>(),
            proptest::option::of("[a-z]{1,10}(\\.[a-z]{1,5}){0,2}"),
            proptest::option::of(any::<u16>()),
        )
            .prop_map(
                |(ip_addresses, clients_ws_port, hostname, clients_wss_port)| EntryDetails {
                    ip_addresses,
                    clients_ws_port,
                    hostname,
                    clients_wss_port,
                },
            ),
    )
}

fn arb_node(id: u32) -> impl Strategy<Value = RoutingNode> {
    (
        arb_ip(),
        any::<u16>(),
        arb_entry(),
        any::<[u8; 32]>(),
        any::<[u8; 32]>(),
        any::<(bool, bool, bool)>(),
    )
        .prop_map(move |(ip, port, entry, seed, sphinx, roles)| RoutingNode {
            node_id: id,
            mix_host: SocketAddr::new(ip, port),
            entry,
            identity_key: IdentityKeyPair::from_secret_bytes(&seed).public(),
            sphinx_key: X25519Public::from(sphinx),
            supported_roles: SupportedRoles {
                mixnode: roles.0,
                mixnet_entry: roles.1,
                mixnet_exit: roles.2,
            },
            performance: None,
        })
}

fn arb_topology() -> impl Strategy<Value = NymTopology> {
    let ids = proptest::collection::btree_set(any::<u32>(), 0..6);
    let sets = proptest::collection::vec(proptest::collection::btree_set(any::<u32>(), 0..4), 6);
    (
        ids,
        sets,
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        (0i64..4_000_000_000, 0u32..1_000_000_000),
    )
        .prop_flat_map(|(ids, sets, epoch, rotation, abs, (secs, nanos))| {
            let nodes: Vec<_> = ids.into_iter().map(arb_node).collect();
            (nodes, Just((sets, epoch, rotation, abs, secs, nanos)))
        })
        .prop_map(|(nodes, (sets, epoch, rotation, abs, secs, nanos))| {
            let rs = RewardedSet {
                epoch_id: epoch,
                entry_gateways: sets[0].clone(),
                exit_gateways: sets[1].clone(),
                layer1: sets[2].clone(),
                layer2: sets[3].clone(),
                layer3: sets[4].clone(),
                standby: sets[5].clone(),
            };
            NymTopology::new(
                TopologyMetadata {
                    key_rotation_id: rotation,
                    absolute_epoch_id: abs,
                    refreshed_at: Timestamp::from_unix(secs, nanos).unwrap_or_default(),
                },
                rs,
                nodes,
            )
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn parsers_never_panic_on_random_text(s in "\\PC{0,200}") {
        let _ = NymTopology::from_file_json(&s);
        let _ = serde_json::from_str::<SkimmedNodesResponse>(&s);
        let _ = serde_json::from_str::<SkimmedNode>(&s);
        let _ = serde_json::from_str::<RewardedSetResponse>(&s);
        let _ = serde_json::from_str::<KeyRotationInfoResponse>(&s);
        let _ = s.parse::<Performance>();
    }

    #[test]
    fn parsers_never_panic_on_mangled_documents(
        which in 0usize..3,
        cut in any::<prop::sample::Index>(),
        pos in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let doc = match which {
            0 => example_file(),
            1 => GOLDEN_SKIMMED.to_owned(),
            _ => example_entry(),
        };
        let mut bytes = doc.into_bytes();
        let p = pos.index(bytes.len());
        bytes[p] = byte;
        bytes.truncate(cut.index(bytes.len() + 1));
        let _ = NymTopology::from_file_slice(&bytes);
        let _ = serde_json::from_slice::<SkimmedNodesResponse>(&bytes);
        let _ = serde_json::from_slice::<SkimmedNode>(&bytes);
    }

    #[test]
    fn model_file_model_round_trip(t in arb_topology()) {
        let json = t.to_file_json().expect("write");
        let back = NymTopology::from_file_json(&json).expect("read back");
        prop_assert_eq!(&back, &t);
        let pretty = t.to_file().expect("write");
        prop_assert_eq!(NymTopology::from_file_json(&pretty).expect("read back"), t);
    }

    #[test]
    fn routes_only_use_known_layer_nodes(t in arb_topology(), seed in any::<u64>()) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        if let Some(egress) = t.nodes().values().next().map(|n| *n.identity_key.as_bytes()) {
            match t.random_route_to(&mut rng, &egress) {
                Ok(route) => {
                    prop_assert!(t.is_routable() || t.rewarded_set().entry_gateways.is_empty()
                        && t.rewarded_set().exit_gateways.is_empty());
                    prop_assert_eq!(route.len(), 4);
                    for (i, hop) in route.iter().take(3).enumerate() {
                        let layer = t.rewarded_set().layer(i as u8 + 1).expect("layer");
                        prop_assert!(layer.contains(&hop.node_id));
                        prop_assert!(t.node(hop.node_id).is_some());
                    }
                    prop_assert!(to_sphinx_route(&route).is_ok());
                }
                Err(_) => prop_assert!(!t.is_routable()),
            }
        }
    }
}
