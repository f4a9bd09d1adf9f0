//! A persistent network (`LocalnetConfig::state_dir`): the same keys and
//! ports after a restart, gateway registrations that survive it, a taken
//! port replaced and saved, and clear errors for unusable state files.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use nymd_localnet::persist::{gateway_clients_file, NETWORK_STATE_FILE};
use nymd_localnet::{DelayPolicy, Localnet, LocalnetConfig, NodeInfo};
use nymd_proto::gateway::ServerResponse;

use crate::support::{bounded, init_tracing, payload, unix_now, Client, STEP};

fn persistent(dir: &Path) -> LocalnetConfig {
    LocalnetConfig {
        delay: DelayPolicy::NoDelay,
        state_dir: Some(dir.to_path_buf()),
        ..LocalnetConfig::default()
    }
}

/// A saved port is reused if it is free at the restart; tests share the
/// machine, so one may rarely have been taken meanwhile (then it must be in
/// use now).
fn same_or_taken(before: u16, after: u16) -> bool {
    before == after || std::net::TcpListener::bind(("127.0.0.1", before)).is_err()
}

/// Id, identity and sphinx key of each node.
fn keys(f: &[Fingerprint]) -> Vec<(u32, String, Vec<u8>)> {
    f.iter().map(|n| (n.0, n.1.clone(), n.2.clone())).collect()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

/// Id, identity, sphinx key, mix port and websocket port of a node.
type Fingerprint = (u32, String, Vec<u8>, u16, Option<u16>);

/// What must not change across a restart.
fn fingerprint(nodes: &[NodeInfo]) -> Vec<Fingerprint> {
    nodes
        .iter()
        .map(|n| {
            (
                n.id,
                n.identity_bs58(),
                n.sphinx_key.as_bytes().to_vec(),
                n.mix_addr.port(),
                n.ws_addr.map(|a| a.port()),
            )
        })
        .collect()
}

/// Start with a state dir, register two clients, restart: the same node
/// keys and ports; each client authenticates again with its saved key and
/// bandwidth (a timestamp it already used is refused, so the replay check
/// survives too), and a message goes from one to the other with its acks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_keys_ports_and_registrations() {
    init_tracing();
    bounded(Duration::from_secs(90), async {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path().join("localnet");
        let net = Localnet::start(persistent(&dir))
            .await
            .expect("first start");
        assert_eq!(net.state_dir(), Some(dir.as_path()));
        let before = fingerprint(&net.nodes());
        let api_before = net.api_addr();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join(NETWORK_STATE_FILE)), 0o600);

        let gws = net.gateways();
        let a = Client::register(&gws[0]).await;
        let b = Client::register(&gws[1]).await;
        let a_bandwidth = a.bandwidth;
        let a_keys = a.disconnect().await;
        let b_keys = b.disconnect().await;
        // One authentication before the restart: its timestamp is saved.
        let t1 = unix_now();
        let a = Client::authenticate_at(a_keys, t1)
            .await
            .map_err(|(_, r)| r)
            .expect("authenticate before the restart");
        assert_eq!(a.bandwidth, a_bandwidth);
        let a_keys = a.disconnect().await;
        net.shutdown().await;

        for g in &gws {
            let f = dir.join(gateway_clients_file(g.id));
            assert_eq!(mode(&f), 0o600, "{}", f.display());
        }

        let net = Localnet::start(persistent(&dir))
            .await
            .expect("second start");
        let after = fingerprint(&net.nodes());
        assert_eq!(keys(&after), keys(&before), "same keys");
        for (b, a) in before.iter().zip(&after) {
            assert!(
                same_or_taken(b.3, a.3),
                "node {} mix port {} -> {}",
                b.0,
                b.3,
                a.3
            );
            if let (Some(bw), Some(aw)) = (b.4, a.4) {
                assert!(same_or_taken(bw, aw), "node {} ws port {bw} -> {aw}", b.0);
            }
        }
        assert!(
            same_or_taken(api_before.port(), net.api_addr().port()),
            "same directory port"
        );

        // The saved last timestamp still guards against replays.
        let a_keys = match Client::authenticate_at(a_keys, t1).await {
            Ok(_) => panic!("a reused authentication timestamp was accepted"),
            Err((keys, ServerResponse::Error { .. })) => keys,
            Err((_, other)) => panic!("unexpected {other:?}"),
        };
        let mut a = Client::authenticate_at(a_keys, t1 + 1)
            .await
            .map_err(|(_, r)| r)
            .expect("A authenticates after the restart");
        assert_eq!(a.bandwidth, a_bandwidth, "bandwidth saved");
        let mut b = Client::authenticate(b_keys)
            .await
            .map_err(|(_, r)| r)
            .expect("B authenticates after the restart");

        let data = payload(3000, 3);
        let ids = a
            .send_message(net.topology(), &b.recipient(), &data, Duration::ZERO)
            .await;
        let got = b.receive_message(STEP).await.expect("message delivered");
        assert_eq!(got, data);
        assert!(a.wait_for_acks(ids.len(), STEP).await, "acks back at A");
        net.shutdown().await;
    })
    .await;
}

/// A saved port that is taken at the next start is replaced by a new one,
/// and the file is saved with it; keys stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn taken_port_is_replaced_and_saved() {
    init_tracing();
    bounded(Duration::from_secs(60), async {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path().join("localnet");
        let net = Localnet::start(persistent(&dir))
            .await
            .expect("first start");
        let gw = net.gateways()[0].clone();
        net.shutdown().await;
        let old = gw.ws_addr.expect("gateway websocket");
        let squatter = std::net::TcpListener::bind(old).expect("take the saved port");

        let net = Localnet::start(persistent(&dir))
            .await
            .expect("second start");
        let now = net.node(gw.id).expect("gateway");
        assert_eq!(now.identity, gw.identity);
        assert_eq!(now.mix_addr, gw.mix_addr);
        let new = now.ws_addr.expect("gateway websocket");
        assert_ne!(new.port(), old.port());
        let saved = std::fs::read_to_string(dir.join(NETWORK_STATE_FILE)).expect("state");
        let saved: serde_json::Value = serde_json::from_str(&saved).expect("json");
        let entry = saved["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .find(|n| n["id"].as_u64() == Some(u64::from(gw.id)))
            .expect("gateway entry")
            .clone();
        assert_eq!(entry["ws_port"].as_u64(), Some(u64::from(new.port())));
        // A client registers on the new port.
        let c = Client::register(&now).await;
        c.disconnect().await;
        net.shutdown().await;
        drop(squatter);
    })
    .await;
}

/// Unusable state files stop the start with an error that names the file
/// and says what to do; deleting the network file starts a fresh network
/// (and drops the old gateways' client files).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_state_files_give_clear_errors() {
    init_tracing();
    bounded(Duration::from_secs(60), async {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path().join("localnet");
        let net = Localnet::start(persistent(&dir))
            .await
            .expect("first start");
        let first = fingerprint(&net.nodes());
        let gw = net.gateways()[0].id;
        net.shutdown().await;
        let file = dir.join(NETWORK_STATE_FILE);
        let good = std::fs::read(&file).expect("state");

        let expect_error = |r: Result<Localnet, nymd_localnet::LocalnetError>, path: &Path| {
            let Err(e) = r else {
                panic!("started with an unusable {}", path.display());
            };
            let text = e.to_string();
            assert!(text.contains(&path.display().to_string()), "{text}");
            assert!(text.contains("delete"), "{text}");
            text
        };

        // Corrupted.
        std::fs::write(&file, b"{\"version\": 1, \"nodes\": [").expect("corrupt");
        expect_error(Localnet::start(persistent(&dir)).await, &file);
        // A key that is not hex.
        let text = String::from_utf8(good.clone()).expect("utf8");
        let bad_key = text.replacen("\"identity_secret\": \"", "\"identity_secret\": \"zz", 1);
        std::fs::write(&file, bad_key).expect("bad key");
        expect_error(Localnet::start(persistent(&dir)).await, &file);

        // Another shape than configured.
        std::fs::write(&file, &good).expect("restore");
        let text = expect_error(
            Localnet::start(LocalnetConfig {
                gateways: 3,
                ..persistent(&dir)
            })
            .await,
            &file,
        );
        assert!(text.contains("2 gateway(s)"), "{text}");

        // A corrupted client file.
        let clients = dir.join(gateway_clients_file(gw));
        std::fs::write(&clients, b"not json").expect("corrupt clients");
        expect_error(Localnet::start(persistent(&dir)).await, &clients);

        // Deleting the network file starts a fresh network.
        std::fs::remove_file(&file).expect("delete");
        let net = Localnet::start(persistent(&dir))
            .await
            .expect("fresh start");
        assert_ne!(fingerprint(&net.nodes()), first, "new keys");
        assert!(!clients.exists(), "the old gateway's client file is gone");
        net.shutdown().await;
    })
    .await;
}
