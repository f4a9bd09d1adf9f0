//! Topology sources: file refresh and failure handling, nym-api failover.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use nymd_localnet::config::LocalnetConfig;
use nymd_localnet::network::Localnet;
use nymd_mixnet::{Shared, SharedConfig, TopologySource, Url};

const WAIT: Duration = Duration::from_secs(30);

async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_topology_is_kept_through_failures_then_cleared_then_restored() {
    let net = Localnet::start(LocalnetConfig::default()).await.unwrap();
    let json = std::fs::read(net.topology_path()).unwrap();
    let dir = std::env::temp_dir().join(format!("nymd-mixnet-topo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("network.json");
    std::fs::write(&path, &json).unwrap();

    let shared = Shared::new(SharedConfig {
        default_source: TopologySource::File(path.clone()),
        refresh_interval: Duration::from_millis(50),
        max_refresh_failures: 3,
        ..SharedConfig::default()
    })
    .unwrap();
    let t = shared.topology(None).await.unwrap();
    let first = t.current().unwrap();
    assert_eq!(first.nodes().len(), net.topology().nodes().len());
    assert!(first.is_routable());

    // A second user of the same source shares the cache.
    let t2 = shared.topology(None).await.unwrap();

    std::fs::write(&path, b"not json").unwrap();
    // Kept for up to 3 failed refreshes, cleared after.
    until("topology cleared", || t.current().is_none()).await;
    assert!(t2.current().is_none());
    std::fs::write(&path, &json).unwrap();
    until("topology restored", || t.current().is_some()).await;
    assert!(t2.current().is_some());
    let _ = std::fs::remove_dir_all(&dir);
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_fetch_fails_for_a_missing_file() {
    let shared = Shared::new(SharedConfig {
        default_source: TopologySource::File("/nonexistent/nymd/topology.json".into()),
        ..SharedConfig::default()
    })
    .unwrap();
    assert!(shared.topology(None).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nym_api_urls_fail_over() {
    let net = Localnet::start(LocalnetConfig::default()).await.unwrap();
    // A port nothing listens on.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let a = l.local_addr().unwrap();
        drop(l);
        Url::parse(&format!("http://{a}/api/")).unwrap()
    };
    let shared = Shared::new(SharedConfig {
        default_source: TopologySource::NymApi(vec![dead, Url::parse(&net.api_url()).unwrap()]),
        http_timeout: Duration::from_secs(5),
        ..SharedConfig::default()
    })
    .unwrap();
    let t = shared.topology(None).await.unwrap().current().unwrap();
    assert_eq!(t.nodes().len(), net.topology().nodes().len());
    assert!(t.is_routable());
    // nym-api sends the key-rotation parity in the listing metadata.
    assert_eq!(t.key_rotation_id(), net.topology().key_rotation_id());
    net.shutdown().await;
}
