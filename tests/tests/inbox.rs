//! Messages that arrive while no app is connected wait in the identity's
//! inbox journal: a real `nymd` process receives them with no app attached,
//! `nymctl status` shows them kept, nymd is killed with SIGKILL (and, in a
//! second round, stopped with `nymctl daemon shutdown`), and after the
//! restart the first app to connect gets every one of them, once.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use nymd_proto::appapi::ClientRequest;
use nymd_tests::procs::{nymctl, NymdHarness};
use nymd_tests::{
    assert_exactly_once, collect_received, fast_localnet, free_port, App, TestDaemon, WAIT,
};

async fn wait_inbox(h: &NymdHarness, id: &str, want: u64) {
    let start = Instant::now();
    loop {
        let st = h.ctl(&["status", id]).await;
        if st["identity"]["counters"]["inbox_messages"].as_u64() == Some(want) {
            return;
        }
        assert!(
            start.elapsed() < WAIT,
            "inbox of {id} never showed {want} messages: {st}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_waiting_for_an_app_survive_sigkill_and_shutdown() {
    let net = fast_localnet().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let outside_state = tmp.path().join("outside");
    std::fs::create_dir(&outside_state).expect("dir");
    let outside = TestDaemon::start(&outside_state, &net.api_url(), free_port());
    let (outside_ws, _) = outside.init("outside").await;
    let mut tx = App::connect(outside_ws).await;

    let dir = tmp.path().join("nymd");
    std::fs::create_dir(&dir).expect("dir");
    let mut h = NymdHarness::new(&dir, &net.api_url(), "");
    let mut d = h.start().await;
    let v = h.ctl(&["init", "--id", "rx"]).await;
    let rx_addr = v["identity"]["address"]
        .as_str()
        .expect("address")
        .parse()
        .expect("recipient");
    let port = v["identity"]["websocket_port"].as_u64().expect("port") as u16;

    for (round, how) in ["SIGKILL", "nymctl daemon shutdown"].iter().enumerate() {
        // No app is connected to rx: what arrives waits in its inbox.
        let batch: Vec<Vec<u8>> = (0..6u8)
            .map(|i| {
                let mut m = vec![i; 100 + 3_000 * usize::from(i)];
                m.push(round as u8);
                m
            })
            .collect();
        for m in &batch {
            tx.request_binary(&ClientRequest::Send {
                recipient: rx_addr,
                message: m.clone(),
                connection_id: None,
            })
            .await;
        }
        wait_inbox(&h, "rx", batch.len() as u64).await;
        if round == 0 {
            let _ = d.child.kill();
            let _ = d.child.wait();
        } else {
            assert!(nymctl(&h.socket, &["daemon", "shutdown"]).status.success());
            let status = tokio::task::spawn_blocking(move || d.wait_exit(WAIT))
                .await
                .expect("join");
            assert!(status.success(), "nymd exit status {status}");
        }
        d = h.start().await;
        wait_inbox(&h, "rx", batch.len() as u64).await;

        let mut app = App::connect(SocketAddr::from(([127, 0, 0, 1], port))).await;
        app.request_binary(&ClientRequest::SelfAddress).await;
        let seen = collect_received(&mut app, batch.len(), Duration::from_secs(1)).await;
        assert_exactly_once(&seen, &batch, &format!("after {how}"));
        // Taken by the app: the inbox is empty.
        wait_inbox(&h, "rx", 0).await;
        app.close().await;
    }

    let _ = d.child.kill();
    let _ = d.child.wait();
    tx.close().await;
    outside.stop().await;
    net.shutdown().await;
}
