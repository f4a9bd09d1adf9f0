//! The directory's nym-api JSON parses back into a routable topology, and
//! the topology file matches it.

use std::time::Duration;

use nymd_localnet::{Localnet, LocalnetConfig, NodeKind};
use nymd_proto::topology::api::{
    KeyRotationInfoResponse, PageCollector, PageProgress, Performance, RewardedSetResponse,
    SkimmedNodesResponse,
};
use nymd_proto::topology::{NymTopology, PerformanceThresholds};
use nymd_proto::KeyRotation;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{bounded, init_tracing, STEP};

/// Send raw request bytes; return (status, body).
async fn raw(addr: std::net::SocketAddr, request: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.expect("tcp");
    s.write_all(request).await.expect("write");
    let mut out = Vec::new();
    tokio::time::timeout(STEP, s.read_to_end(&mut out))
        .await
        .expect("response in time")
        .expect("read");
    let text = String::from_utf8(out).expect("utf-8");
    let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    (status, body.to_string())
}

async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: application/bincode\r\nUser-Agent: test\r\n\r\n"
    );
    raw(addr, req.as_bytes()).await
}

async fn listing(addr: std::net::SocketAddr, path: &str) -> SkimmedNodesResponse {
    let (status, body) = get(addr, path).await;
    assert_eq!(status, 200, "{path}");
    serde_json::from_str(&body).expect("skimmed listing")
}

/// The nodes, ignoring performance (the API carries it, files do not).
fn without_performance(t: &NymTopology) -> Vec<nymd_proto::topology::RoutingNode> {
    t.nodes()
        .values()
        .cloned()
        .map(|mut n| {
            n.performance = None;
            n
        })
        .collect()
}

/// Fetch the routes nym-client calls and build its topology from them.
async fn fetch_topology(addr: std::net::SocketAddr, prefix: &str) -> NymTopology {
    let (status, body) = get(addr, &format!("{prefix}v1/nym-nodes/rewarded-set")).await;
    assert_eq!(status, 200);
    let rewarded: RewardedSetResponse = serde_json::from_str(&body).expect("rewarded set");
    let mut collected = Vec::new();
    for route in ["mixnodes/active", "entry-gateways"] {
        let mut pages = PageCollector::new();
        let mut page = 0;
        loop {
            let l = listing(
                addr,
                &format!(
                    "{prefix}v2/unstable/nym-nodes/skimmed/{route}?page={page}&output=bincode"
                ),
            )
            .await;
            match pages.push(l).expect("page") {
                PageProgress::Complete => break,
                PageProgress::NeedPage(p) => page = p,
            }
        }
        collected.push(pages.finish().expect("listing"));
    }
    NymTopology::from_api(
        &rewarded,
        &collected[0],
        &collected[1],
        PerformanceThresholds::default(),
    )
    .expect("consistent listings")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_json_parses_into_a_routable_topology() {
    init_tracing();
    bounded(Duration::from_secs(30), async {
        let net = Localnet::start(LocalnetConfig {
            mixnodes_per_layer: 2,
            gateways: 2,
            ..LocalnetConfig::default()
        })
        .await
        .expect("start");
        let addr = net.api_addr();
        assert_eq!(net.api_url(), format!("http://{addr}/"));

        let (status, body) = get(addr, "/v1/epoch/key-rotation-info").await;
        assert_eq!(status, 200);
        let rotation: KeyRotationInfoResponse = serde_json::from_str(&body).expect("rotation");
        assert_eq!(rotation.progress.current_key_rotation_id, 0);
        assert_eq!(rotation.key_rotation(), KeyRotation::Unknown);

        for prefix in ["/", "/api/"] {
            let t = fetch_topology(addr, prefix).await;
            assert!(t.is_routable());
            assert_eq!(without_performance(&t), without_performance(net.topology()));
            assert_eq!(t.rewarded_set(), net.topology().rewarded_set());
            assert_eq!(t.key_rotation_id(), 0);
        }
        let all = listing(addr, "/v2/unstable/nym-nodes/skimmed").await;
        assert_eq!(all.nodes.data.len(), 8);

        // Gateways announce the websocket the handle reports.
        for gw in net.gateways() {
            let node = net.topology().node(gw.id).expect("in topology");
            let listeners = node.ws_listeners(true).expect("entry");
            assert_eq!(Some(listeners.primary), gw.ws_url());
            assert!(net
                .topology()
                .rewarded_set()
                .entry_gateways
                .contains(&gw.id));
            assert!(net.topology().rewarded_set().exit_gateways.contains(&gw.id));
        }
        for layer in 1..=3u8 {
            let ids = net
                .topology()
                .rewarded_set()
                .layer(layer)
                .expect("layer")
                .clone();
            let expected: Vec<u32> = net.layer(layer).iter().map(|n| n.id).collect();
            assert_eq!(ids.into_iter().collect::<Vec<_>>(), expected);
        }

        // The topology file is the same network.
        let text = std::fs::read_to_string(net.topology_path()).expect("topology file");
        let file = NymTopology::from_file_json(&text).expect("file parses");
        assert_eq!(file.nodes(), net.topology().nodes());
        assert_eq!(file.rewarded_set(), net.topology().rewarded_set());
        assert!(file.is_routable());

        // Bad requests get errors; the directory keeps serving.
        assert_eq!(get(addr, "/v1/nothing").await.0, 404);
        assert_eq!(
            raw(addr, b"POST /v1/nym-nodes/rewarded-set HTTP/1.1\r\n\r\n")
                .await
                .0,
            405
        );
        let mut junk = TcpStream::connect(addr).await.expect("tcp");
        junk.write_all(&[0xff; 20_000]).await.ok();
        let mut sink = Vec::new();
        let _ = tokio::time::timeout(STEP, junk.read_to_end(&mut sink)).await;
        assert!(fetch_topology(addr, "/").await.is_routable());

        // A stopped node is served with performance 0, so clients skip it.
        let stopped = net.layer(1)[0].id;
        net.stop_node(stopped).await.expect("stop");
        let mixnodes = listing(addr, "/v2/unstable/nym-nodes/skimmed/mixnodes/active").await;
        let entry = mixnodes
            .nodes
            .data
            .iter()
            .find(|n| n.node_id == stopped)
            .expect("still listed");
        assert_eq!(entry.performance, Performance::ZERO);
        let t = fetch_topology(addr, "/").await;
        assert!(t.node(stopped).is_none());
        assert!(t.is_routable());
        net.start_node(stopped).await.expect("start");
        assert!(fetch_topology(addr, "/").await.node(stopped).is_some());
        assert!(matches!(
            net.node(stopped).expect("node").kind,
            NodeKind::Mixnode { layer: 1 }
        ));

        let dir = net.topology_path().parent().expect("dir").to_path_buf();
        net.shutdown().await;
        assert!(!dir.exists(), "temporary topology directory removed");
        // The port is free again. Another test may bind the same ephemeral
        // port right after we release it; then it must at least not be us
        // answering (our directory would serve the rewarded set).
        if let Ok(mut s) = TcpStream::connect(addr).await {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let _ = s
                .write_all(b"GET /v1/nym-nodes/rewarded-set HTTP/1.1\r\nHost: x\r\n\r\n")
                .await;
            let mut buf = vec![0u8; 4096];
            let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf))
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or(0);
            let text = String::from_utf8_lossy(&buf[..n]);
            assert!(
                !text.contains("layer1"),
                "the directory still answers: {text}"
            );
        }
    })
    .await;
}

/// `nym-nodes/described` (v2 and the deprecated v1) lists every node; the
/// gateway whose network requester was set declares `exit_nr` and names
/// it, and a client's discovery finds exactly that one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn described_nodes_name_the_network_requester() {
    use nymd_proto::keys::{EncryptionKeyPair, IdentityKeyPair};
    use nymd_proto::socks5::discovery::{network_requesters, parse_described};
    use nymd_proto::Recipient;

    init_tracing();
    bounded(Duration::from_secs(30), async {
        let net = Localnet::start(LocalnetConfig {
            gateways: 2,
            ..LocalnetConfig::default()
        })
        .await
        .expect("localnet");
        let addr = net.api_addr();
        let gateways = net.gateways();
        let (status, body) = get(addr, "/v2/nym-nodes/described?output=json").await;
        assert_eq!(status, 200);
        let (nodes, skipped) = parse_described(body.as_bytes()).expect("listing");
        assert_eq!((nodes.len(), skipped), (net.nodes().len(), 0));
        assert!(network_requesters(&nodes).is_empty(), "none set yet");

        let mut rng = rand::rngs::OsRng;
        let nr = Recipient::new(
            IdentityKeyPair::generate(&mut rng).public(),
            EncryptionKeyPair::generate(&mut rng).public(),
            gateways[1].identity,
        );
        // Only a gateway, and only for a requester behind it.
        let mixnode = net.layer(1)[0].id;
        assert!(net.set_network_requester(mixnode, Some(nr)).is_err());
        assert!(net.set_network_requester(gateways[0].id, Some(nr)).is_err());
        net.set_network_requester(gateways[1].id, Some(nr))
            .expect("set");

        for path in [
            "/v2/nym-nodes/described",
            "/api/v2/nym-nodes/described?output=json&page=2&per_page=1",
            "/v1/nym-nodes/described",
        ] {
            let (status, body) = get(addr, path).await;
            assert_eq!(status, 200, "{path}");
            let json: serde_json::Value = serde_json::from_str(&body).expect("json");
            assert_eq!(json["pagination"]["page"], 0, "{path}");
            assert_eq!(json["pagination"]["total"], net.nodes().len(), "{path}");
            let (nodes, _) = parse_described(body.as_bytes()).expect("listing");
            let found = network_requesters(&nodes);
            assert_eq!(found.len(), 1, "{path}");
            assert_eq!(found[0].node_id, gateways[1].id);
            assert_eq!(found[0].address, nr);
            let exits: Vec<_> = nodes
                .iter()
                .filter(|n| n.description.declared_role.exit_nr)
                .map(|n| n.node_id)
                .collect();
            assert_eq!(exits, vec![gateways[1].id], "{path}");
        }

        net.set_network_requester(gateways[1].id, None)
            .expect("withdraw");
        let (_, body) = get(addr, "/v2/nym-nodes/described").await;
        let (nodes, _) = parse_described(body.as_bytes()).expect("listing");
        assert!(network_requesters(&nodes).is_empty());
        net.shutdown().await;
    })
    .await;
}
