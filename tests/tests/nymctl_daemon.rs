//! nymctl driving a real nymd process over its control socket, with the
//! mixnet on an embedded localnet, as an operator would.

use std::time::Duration;

use nymd_proto::appapi::ServerResponse;
use nymd_tests::procs::{nymctl, nymctl_json, Daemon};
use nymd_tests::{free_port, App};

const READY: Duration = Duration::from_secs(60);

fn config(first_port: u16) -> String {
    format!(
        "[identities]\nfirst_port = {first_port}\n\n[identities.traffic]\ndisable_cover_traffic = true\ndisable_delays = true\n"
    )
}

fn code(out: &std::process::Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nymctl_drives_a_real_daemon() {
    let net = nymd_tests::fast_localnet().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let cfg = tmp.path().join("nymd.toml");
    std::fs::write(&cfg, config(free_port())).expect("config");
    let socket = tmp.path().join("run/nymd.sock");
    let state = tmp.path().join("state");
    let api = net.api_url();
    let d = Daemon::spawn(
        &socket,
        &[
            "--config",
            cfg.to_str().expect("utf8"),
            "--state-dir",
            state.to_str().expect("utf8"),
            "--nym-api",
            &api,
        ],
        &tmp.path().join("nymd.log"),
    );
    let sock = socket.clone();
    let mut d = tokio::task::spawn_blocking(move || {
        let mut d = d;
        d.wait_ready(READY);
        d
    })
    .await
    .expect("ready");

    // init two identities.
    let alice = nymctl_json(&sock, &["init", "--id", "alice"]);
    let bob = nymctl_json(&sock, &["init", "--id", "bob"]);
    let bob_addr = bob["identity"]["address"]
        .as_str()
        .expect("address")
        .to_string();
    let bob_port = bob["identity"]["websocket_port"].as_u64().expect("port") as u16;
    let alice_port = alice["identity"]["websocket_port"].as_u64().expect("port") as u16;
    assert_ne!(alice_port, bob_port);

    // list shows both.
    let list = nymctl_json(&sock, &["list"]);
    let ids: Vec<&str> = list["identities"]
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|i| i["id"].as_str())
        .collect();
    assert_eq!(ids, vec!["alice", "bob"]);

    // address agrees with init.
    let addr = nymctl_json(&sock, &["address", "bob"]);
    assert_eq!(addr["address"].as_str(), Some(bob_addr.as_str()));

    // Errors: duplicate id, port in use, unknown identity.
    let dup = nymctl(&sock, &["init", "--id", "alice"]);
    assert_ne!(code(&dup), 0);
    assert!(String::from_utf8_lossy(&dup.stderr).contains("already exists"));
    let port = alice_port.to_string();
    let busy = nymctl(&sock, &["init", "--id", "carol", "--port", &port]);
    assert_ne!(code(&busy), 0);
    assert!(String::from_utf8_lossy(&busy.stderr).contains("in use"));
    assert_eq!(code(&nymctl(&sock, &["status", "nobody"])), 5);
    assert_eq!(code(&nymctl(&sock, &["stop", "nobody"])), 5);

    // send: an app on bob's port receives what nymctl sends from alice.
    let mut app = App::connect(([127, 0, 0, 1], bob_port).into()).await;
    let out = nymctl(
        &sock,
        &["send", "alice", "--to", &bob_addr, "hello from nymctl"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    match app.next_response().await {
        ServerResponse::Received { message, .. } => assert_eq!(message, b"hello from nymctl"),
        other => panic!("unexpected {other:?}"),
    }
    app.close().await;

    // send to an address whose "gateway" is a mixnode: refused at once with
    // a clear message (it would never be acknowledged), nothing queued.
    let mixnode = net.layer(2)[0].identity_bs58();
    let (client, _gateway) = bob_addr.split_once('@').expect("address has a gateway");
    let to_mixnode = format!("{client}@{mixnode}");
    let out = nymctl(&sock, &["send", "alice", "--to", &to_mixnode, "lost?"]);
    assert_ne!(
        code(&out),
        0,
        "nymctl send to a mixnode-as-gateway must fail"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("mixnode"), "the error says why: {err}");

    // stop / start.
    assert!(nymctl(&sock, &["stop", "bob"]).status.success());
    let st = nymctl_json(&sock, &["status", "bob"]);
    assert_eq!(st["identity"]["state"].as_str(), Some("Stopped"), "{st}");
    assert!(nymctl(&sock, &["start", "bob"]).status.success());

    // events: the snapshot names both identities.
    let ev = nymctl(&sock, &["events", "--json"]);
    assert!(ev.status.success());
    let text = String::from_utf8_lossy(&ev.stdout);
    assert!(text.contains("alice") && text.contains("bob"), "{text}");

    // remove: gone from the list and from disk.
    assert!(nymctl(&sock, &["remove", "alice", "--yes"])
        .status
        .success());
    let list = nymctl_json(&sock, &["list"]);
    assert_eq!(list["identities"].as_array().map(Vec::len), Some(1));
    assert!(!state.join("identities/alice").exists());

    // shutdown over the socket; then the daemon is down (exit code 3).
    assert!(nymctl(&sock, &["daemon", "shutdown"]).status.success());
    let status = tokio::task::spawn_blocking(move || d.wait_exit(Duration::from_secs(30)))
        .await
        .expect("join");
    assert!(status.success(), "nymd exit status {status}");
    assert_eq!(code(&nymctl(&sock, &["list"])), 3);
    net.shutdown().await;
}
