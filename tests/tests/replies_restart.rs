//! The persisted reply state (issue #14 part 1), with real `nymd`
//! processes on the embedded localnet: A's app sends `sendAnonymous` with
//! reply SURBs to B; B's nymd is SIGKILLed and started again, B's app
//! replies with the sender tag it had, and A's app gets the reply; then
//! A's nymd is SIGKILLed and started again too (its reply keys come from
//! its `replies` file), and B's second reply still arrives at A. Last
//! (#14 part 2), a reply B queues while the mixnet cannot carry it is
//! journalled in B's outbox, B is SIGKILLed, the mixnet comes back, and
//! after B's restart the reply reaches A; likewise for a reply made while
//! B's gateway is down (its link cut).

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use nymd_proto::appapi::{ClientRequest, ServerResponse};
use nymd_proto::{Recipient, SenderTag};
use nymd_tests::procs::{Daemon, NymdHarness};
use nymd_tests::{App, WAIT};

fn kill(d: &mut Daemon) {
    let _ = d.child.kill();
    let _ = d.child.wait();
}

async fn port(h: &NymdHarness, id: &str) -> u16 {
    let start = Instant::now();
    loop {
        let st = h.ctl(&["status", id]).await;
        if let Some(p) = st["identity"]["websocket_port"].as_u64() {
            if st["identity"]["state"].as_str() == Some("Running") {
                return p as u16;
            }
        }
        assert!(start.elapsed() < WAIT, "{id} never ran: {st}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn app(port: u16) -> App {
    let mut a = App::connect(SocketAddr::from(([127, 0, 0, 1], port))).await;
    // Binary mode: received messages come back as binary frames.
    a.request_binary(&ClientRequest::SelfAddress).await;
    let _ = a.next_response().await;
    a
}

async fn address(port: u16) -> Recipient {
    let mut a = App::connect(SocketAddr::from(([127, 0, 0, 1], port))).await;
    let r = a.self_address().await;
    a.close().await;
    r
}

/// The next message `app` receives (with its sender tag), within WAIT.
async fn receive(app: &mut App, what: &str) -> (Vec<u8>, Option<SenderTag>) {
    let start = Instant::now();
    loop {
        let left = WAIT.saturating_sub(start.elapsed());
        match tokio::time::timeout(left, app.next_response()).await {
            Ok(ServerResponse::Received {
                message,
                sender_tag,
            }) => return (message, sender_tag),
            Ok(_) => {}
            Err(_) => panic!("{what} never arrived"),
        }
    }
}

/// Wait until the identity's reply state file exists, then a housekeeping
/// tick and a half more so the latest change is on disk.
async fn wait_saved(state: &Path, id: &str) {
    let file = state.join(format!("state/identities/{id}/replies"));
    let start = Instant::now();
    while !file.exists() {
        assert!(start.elapsed() < WAIT, "{} never written", file.display());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{} holds keys", file.display());
    }
}

async fn reply(port: u16, tag: SenderTag, message: &[u8]) {
    let mut b = App::connect(SocketAddr::from(([127, 0, 0, 1], port))).await;
    b.request_binary(&ClientRequest::Reply {
        sender_tag: tag,
        message: message.to_vec(),
        connection_id: None,
    })
    .await;
    // Leave the connection open briefly: an error would come back here.
    if let Some(ServerResponse::Error(e)) = b.try_next_response(Duration::from_secs(1)).await {
        panic!("reply refused: {e:?}");
    }
    b.close().await;
}

async fn set_layer(net: &nymd_localnet::Localnet, running: bool) {
    for n in net.layer(1) {
        if running {
            net.start_node(n.id).await.expect("start mixnode");
        } else {
            net.stop_node(n.id).await.expect("stop mixnode");
        }
    }
}

/// The identity's `outbox_messages` once it has reached `want`.
async fn wait_outbox(h: &NymdHarness, id: &str, want: u64) {
    let start = Instant::now();
    loop {
        let st = h.ctl(&["status", id]).await;
        if st["identity"]["counters"]["outbox_messages"].as_u64() == Some(want) {
            return;
        }
        assert!(
            start.elapsed() < WAIT,
            "outbox of {id} never showed {want} messages: {st}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_survive_sigkill_of_either_side() {
    let test = async {
        let net = nymd_tests::fast_localnet().await;
        let tmp = tempfile::tempdir().expect("tmp");
        let (dir_a, dir_b) = (tmp.path().join("a"), tmp.path().join("b"));
        std::fs::create_dir(&dir_a).expect("dir");
        std::fs::create_dir(&dir_b).expect("dir");
        let mut ha = NymdHarness::new(&dir_a, &net.api_url(), "");
        let mut hb = NymdHarness::new(&dir_b, &net.api_url(), "");
        let mut da = ha.start().await;
        let mut db = hb.start().await;
        let _ = ha.ctl(&["init", "--id", "a"]).await;
        let _ = hb.ctl(&["init", "--id", "b"]).await;
        let (pa, pb) = (port(&ha, "a").await, port(&hb, "b").await);
        let b_addr = address(pb).await;

        let mut app_a = app(pa).await;
        let mut app_b = app(pb).await;
        app_a
            .request_binary(&ClientRequest::SendAnonymous {
                recipient: b_addr,
                message: b"hello b".to_vec(),
                reply_surbs: 40,
                connection_id: None,
            })
            .await;
        let (m, tag) = receive(&mut app_b, "A's anonymous message").await;
        assert_eq!(m, b"hello b");
        let tag = tag.expect("an anonymous message has a sender tag");
        wait_saved(&dir_a, "a").await;
        wait_saved(&dir_b, "b").await;
        app_b.close().await;

        // B is killed; after the restart it can still reply to the tag.
        kill(&mut db);
        db = hb.start().await;
        let pb = port(&hb, "b").await;
        reply(pb, tag, b"first reply").await;
        let (m, t) = receive(&mut app_a, "B's first reply").await;
        assert_eq!((m.as_slice(), t), (&b"first reply"[..], None));
        wait_saved(&dir_b, "b").await;

        // A is killed too; its reply keys come back from its file.
        app_a.close().await;
        kill(&mut da);
        da = ha.start().await;
        let pa = port(&ha, "a").await;
        let mut app_a = app(pa).await;
        reply(pb, tag, b"second reply").await;
        let (m, _) = receive(&mut app_a, "B's second reply after A's restart").await;
        assert_eq!(m, b"second reply");

        // A reply queued while the mixnet cannot carry it (every layer-1
        // mixnode stopped) is journalled, and survives B's SIGKILL.
        set_layer(&net, false).await;
        reply(pb, tag, b"third reply").await;
        wait_outbox(&hb, "b", 1).await;
        wait_saved(&dir_b, "b").await;
        kill(&mut db);
        set_layer(&net, true).await;
        db = hb.start().await;
        let (m, _) = receive(&mut app_a, "the reply journalled before B's SIGKILL").await;
        assert_eq!(m, b"third reply");
        wait_outbox(&hb, "b", 0).await;

        // A reply made while B's gateway link is cut (its gateway is down)
        // is journalled, and survives B's SIGKILL too.
        let st = hb.ctl(&["status", "b"]).await;
        let gw_id = st["identity"]["gateway_id"]
            .as_str()
            .expect("b's gateway")
            .to_owned();
        let gw = net
            .gateways()
            .into_iter()
            .find(|g| g.identity_bs58() == gw_id)
            .expect("b's gateway is a localnet gateway");
        net.stop_node(gw.id).await.expect("stop b's gateway");
        reply(pb, tag, b"fourth reply").await;
        wait_outbox(&hb, "b", 1).await;
        kill(&mut db);
        net.start_node(gw.id).await.expect("start b's gateway");
        db = hb.start().await;
        let (m, _) = receive(&mut app_a, "the reply made while B's gateway link was cut").await;
        assert_eq!(m, b"fourth reply");
        wait_outbox(&hb, "b", 0).await;

        // Both restarts took the saved state back (not a lucky new one).
        for (h, run) in [(&ha, 2), (&hb, 2)] {
            let log = std::fs::read_to_string(h.log(run)).unwrap_or_default();
            assert!(
                log.contains("restored the reply state"),
                "{} says nothing of the reply state",
                h.log(run).display()
            );
        }
        app_a.close().await;
        kill(&mut da);
        kill(&mut db);
        net.shutdown().await;
    };
    tokio::time::timeout(Duration::from_secs(300), test)
        .await
        .expect("the test finishes within 5 minutes");
}
