//! The README's run command, `nymd --localnet`, gives an app a working
//! nym-client endpoint on the default port 1977, and stops cleanly on
//! SIGTERM. (This test checks the default port, so it binds 1977.)

use std::time::Duration;

use nymd_proto::appapi::{ClientRequest, ServerResponse};
use nymd_tests::procs::Daemon;
use nymd_tests::App;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nymd_localnet_serves_nym_client_api_on_1977() {
    let tmp = tempfile::tempdir().expect("tmp");
    let socket = tmp.path().join("nymd.sock");
    let state = tmp.path().join("state");
    let d = Daemon::spawn(
        &socket,
        &["--localnet", "--state-dir", state.to_str().expect("utf8")],
        &tmp.path().join("nymd.log"),
    );
    let mut d = tokio::task::spawn_blocking(move || {
        let mut d = d;
        d.wait_ready(Duration::from_secs(60));
        d
    })
    .await
    .expect("ready");

    let mut app = App::connect(([127, 0, 0, 1], 1977).into()).await;
    let me = app.self_address().await;
    // Default traffic settings (cover traffic, Poisson delays): a message to
    // ourselves still arrives.
    app.request_binary(&ClientRequest::Send {
        recipient: me,
        message: b"hello, mixnet".to_vec(),
        connection_id: None,
    })
    .await;
    match app.next_response().await {
        ServerResponse::Received {
            message,
            sender_tag,
        } => {
            assert_eq!(message, b"hello, mixnet");
            assert_eq!(sender_tag, None);
        }
        other => panic!("unexpected {other:?}"),
    }
    app.close().await;

    let status = tokio::task::spawn_blocking(move || d.terminate(Duration::from_secs(30)))
        .await
        .expect("join");
    assert!(status.success(), "exit status {status}");
    assert!(!socket.exists(), "the control socket is removed on exit");
    let log = std::fs::read_to_string(tmp.path().join("nymd.log")).unwrap_or_default();
    assert!(!log.contains("panicked"), "{log}");
}
