//! The persisted outbox, driven as a user would: an app hands a real `nymd`
//! process messages while the mixnet cannot carry them (every layer-1
//! mixnode is stopped), `nymctl status` shows them journalled, nymd is
//! killed with SIGKILL (and, in a second round, stopped with `nymctl daemon
//! shutdown`), the mixnet comes back, nymd starts again, and every message
//! arrives exactly once. With `persist_outbox = false` they are gone after
//! the restart, as documented.

use std::path::Path;
use std::time::{Duration, Instant};

use nymd_localnet::Localnet;
use nymd_proto::appapi::ClientRequest;
use nymd_proto::Recipient;
use nymd_tests::procs::{nymctl, Daemon, NymdHarness};
use nymd_tests::{assert_exactly_once, collect_received, free_port, App, TestDaemon, WAIT};

/// The daemon under test, with a few outbox helpers.
struct Nymd(NymdHarness);

impl Nymd {
    fn new(dir: &Path, api: &str, persist: bool) -> Self {
        Self(NymdHarness::new(
            dir,
            api,
            &format!("persist_outbox = {persist}\n"),
        ))
    }

    async fn start(&mut self) -> Daemon {
        self.0.start().await
    }

    async fn ctl(&self, args: &[&str]) -> serde_json::Value {
        self.0.ctl(args).await
    }

    /// The identity's `outbox_messages` once it has reached `want`.
    async fn wait_outbox(&self, id: &str, want: u64) {
        let start = Instant::now();
        loop {
            let st = self.ctl(&["status", id]).await;
            let n = st["identity"]["counters"]["outbox_messages"].as_u64();
            if n == Some(want) {
                return;
            }
            assert!(
                start.elapsed() < WAIT,
                "outbox of {id} never showed {want} messages: {st}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn port(&self, id: &str) -> u16 {
        let st = self.ctl(&["status", id]).await;
        st["identity"]["websocket_port"].as_u64().expect("port") as u16
    }
}

fn messages() -> Vec<Vec<u8>> {
    // Single-fragment ones and two that take many fragments.
    let mut m: Vec<Vec<u8>> = (0..12u32)
        .map(|i| format!("outbox message {i}").into_bytes())
        .collect();
    m.push((0..40_000u32).map(|i| (i % 251) as u8).collect());
    m.push(vec![7u8; 9_000]);
    m
}

async fn send_all(port: u16, to: Recipient, msgs: &[Vec<u8>]) {
    let mut app = App::connect(std::net::SocketAddr::from(([127, 0, 0, 1], port))).await;
    for m in msgs {
        app.request_binary(&ClientRequest::Send {
            recipient: to,
            message: m.clone(),
            connection_id: None,
        })
        .await;
    }
    app.close().await;
}

async fn set_layer(net: &Localnet, running: bool) {
    for n in net.layer(1) {
        if running {
            net.start_node(n.id).await.expect("start mixnode");
        } else {
            net.stop_node(n.id).await.expect("stop mixnode");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacknowledged_messages_survive_sigkill_and_shutdown() {
    let net = nymd_tests::fast_localnet().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let outside_state = tmp.path().join("outside");
    std::fs::create_dir(&outside_state).expect("dir");
    let outside = TestDaemon::start(&outside_state, &net.api_url(), free_port());
    let (outside_ws, outside_addr) = outside.init("outside").await;
    let mut rx = App::connect(outside_ws).await;
    // A binary request: received messages come back as binary frames
    // (nym-client answers in the format of the app's last request).
    rx.request_binary(&ClientRequest::SelfAddress).await;
    let _ = rx.next_response().await;

    let mut nymd = Nymd::new(tmp.path(), &net.api_url(), true);
    let mut d = nymd.start().await;
    let _ = nymd.ctl(&["init", "--id", "tx"]).await;
    let port = nymd.port("tx").await;
    let msgs = messages();

    for (round, how) in ["SIGKILL", "nymctl daemon shutdown"].iter().enumerate() {
        // The mixnet cannot carry anything: the messages stay unacknowledged.
        set_layer(&net, false).await;
        let batch: Vec<Vec<u8>> = msgs
            .iter()
            .map(|m| {
                let mut m = m.clone();
                m.push(round as u8);
                m
            })
            .collect();
        send_all(port, outside_addr, &batch).await;
        nymd.wait_outbox("tx", batch.len() as u64).await;
        if round == 0 {
            let _ = d.child.kill();
            let _ = d.child.wait();
        } else {
            assert!(nymctl(&nymd.0.socket, &["daemon", "shutdown"])
                .status
                .success());
            let socket_gone = tokio::task::spawn_blocking(move || d.wait_exit(WAIT))
                .await
                .expect("join");
            assert!(socket_gone.success(), "nymd exit status {socket_gone}");
        }
        let journal = tmp.path().join("state/identities/tx/outbox/journal");
        assert!(journal.exists(), "journal at {}", journal.display());

        set_layer(&net, true).await;
        d = nymd.start().await;
        let seen = collect_received(&mut rx, batch.len(), Duration::from_secs(2)).await;
        assert_exactly_once(&seen, &batch, &format!("after {how}"));
        // Acknowledged: the outbox empties.
        nymd.wait_outbox("tx", 0).await;
    }

    // Without persistence the same kill loses them, as documented.
    let _ = d.child.kill();
    let _ = d.child.wait();
    let dir2 = tmp.path().join("volatile");
    std::fs::create_dir(&dir2).expect("dir");
    let mut volatile = Nymd::new(&dir2, &net.api_url(), false);
    let mut d2 = volatile.start().await;
    let _ = volatile.ctl(&["init", "--id", "tx"]).await;
    let port2 = volatile.port("tx").await;
    set_layer(&net, false).await;
    let lost = b"not persisted".to_vec();
    send_all(port2, outside_addr, std::slice::from_ref(&lost)).await;
    // Wait until nymd has it queued (sent and not acknowledged).
    let start = Instant::now();
    loop {
        let st = volatile.ctl(&["status", "tx"]).await;
        if st["identity"]["counters"]["real_packets_sent"].as_u64() > Some(0) {
            assert_eq!(
                st["identity"]["counters"]["outbox_messages"].as_u64(),
                Some(0)
            );
            break;
        }
        assert!(start.elapsed() < WAIT, "never sent: {st}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = d2.child.kill();
    let _ = d2.child.wait();
    assert!(!dir2.join("state/identities/tx/outbox").exists());
    set_layer(&net, true).await;
    let mut d2 = volatile.start().await;
    let seen = collect_received(&mut rx, 0, Duration::from_secs(5)).await;
    assert!(seen.is_empty(), "nothing comes back: {seen:?}");

    let _ = d2.child.kill();
    let _ = d2.child.wait();
    rx.close().await;
    outside.stop().await;
    net.shutdown().await;
}
