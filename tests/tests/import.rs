//! `nymctl import` of a nym-client folder keeps the whole Nym address: the
//! keys and the gateway registration (from nym-client's SQLite database)
//! carry over, and the identity authenticates with the imported shared key.

use std::path::Path;
use std::time::Duration;

use nymd_proto::appapi::{ClientRequest, ServerResponse};
use nymd_proto::keys::GatewaySharedKey;
use nymd_tests::procs::{nymctl, nymctl_json, Daemon};
use nymd_tests::App;

/// nym-client's registration database, from the schema pinned next to
/// nymctl's tests.
#[path = "../../ctl/tests/fixtures/nym_client_db.rs"]
mod nym_client_db;

fn write_nym_client_folder(from: &Path, to: &Path) {
    let data = to.join("data");
    std::fs::create_dir_all(&data).expect("mkdir");
    for f in [
        "private_identity.pem",
        "public_identity.pem",
        "private_encryption.pem",
        "public_encryption.pem",
        "ack_key.pem",
    ] {
        std::fs::copy(from.join(f), data.join(f)).expect("copy key");
    }
    let shared = GatewaySharedKey::from_pem(
        &std::fs::read_to_string(from.join("gateway_shared.pem")).expect("read"),
    )
    .expect("shared key");
    let gw: toml_like::Gateway = toml_like::read(&from.join("gateway.toml"));
    // As nym-client 2026.9 stores a registration (its listener URL with
    // the trailing slash of a parsed URL).
    let conn = nym_client_db::create(&data.join("gateways_registrations.sqlite"));
    nym_client_db::register_active(
        &conn,
        &gw.gateway_id,
        shared.as_bytes(),
        &format!("{}/", gw.listener),
        None,
    );
}

mod toml_like {
    //! Just enough to read nymd's gateway.toml in a test.
    pub struct Gateway {
        pub gateway_id: String,
        pub listener: String,
    }

    pub fn read(path: &std::path::Path) -> Gateway {
        let text = std::fs::read_to_string(path).expect("gateway.toml");
        let get = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{k} = ")))
                .map(|v| v.trim().trim_matches('"').to_string())
                .expect("key present")
        };
        Gateway {
            gateway_id: get("gateway_id"),
            listener: get("listener"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_keeps_the_whole_address() {
    let net = nymd_tests::fast_localnet().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let cfg = nymd_tests::procs::write_fast_config(tmp.path(), "");
    let socket = tmp.path().join("nymd.sock");
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
    let mut d = tokio::task::spawn_blocking(move || {
        let mut d = d;
        d.wait_ready(Duration::from_secs(60));
        d
    })
    .await
    .expect("ready");

    let first = nymctl_json(&socket, &["init", "--id", "original"]);
    let address = first["identity"]["address"]
        .as_str()
        .expect("address")
        .to_string();
    // Make a nym-client folder out of it, then drop the original.
    let client_dir = tmp.path().join(".nym/clients/old");
    write_nym_client_folder(&state.join("identities/original"), &client_dir);
    assert!(nymctl(&socket, &["remove", "original", "--yes"])
        .status
        .success());

    let imported = nymctl_json(
        &socket,
        &[
            "import",
            "--id",
            "migrated",
            client_dir.to_str().expect("utf8"),
        ],
    );
    assert_eq!(
        imported["identity"]["address"].as_str(),
        Some(address.as_str()),
        "the whole address, gateway part included, is kept"
    );
    let port = imported["identity"]["websocket_port"]
        .as_u64()
        .expect("port") as u16;
    // It authenticates with the imported shared key: a message to itself
    // goes round the mixnet.
    let mut app = App::connect(([127, 0, 0, 1], port).into()).await;
    let me = app.self_address().await;
    assert_eq!(me.to_string(), address);
    app.request_binary(&ClientRequest::Send {
        recipient: me,
        message: b"still me".to_vec(),
        connection_id: None,
    })
    .await;
    match app.next_response().await {
        ServerResponse::Received { message, .. } => assert_eq!(message, b"still me"),
        other => panic!("unexpected {other:?}"),
    }
    app.close().await;
    let status = tokio::task::spawn_blocking(move || d.terminate(Duration::from_secs(30)))
        .await
        .expect("join");
    assert!(status.success());
    net.shutdown().await;
}
