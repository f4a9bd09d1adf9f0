//! `nymctl listen`, `send --reply-surbs` and `reply` against a real nymd
//! process on an embedded localnet. nymctl is one more app on the
//! identity's websocket port (a tap): it prints what arrives, and the
//! identity's apps get every message as before, also the ones that arrived
//! while only nymctl was connected.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use base64::Engine as _;
use nymd_proto::appapi::{ClientRequest, ServerResponse};
use nymd_tests::procs::{bin, nymctl, NymdHarness};
use nymd_tests::{App, WAIT};

/// A `nymctl listen` running in the background.
struct Listener {
    child: Child,
    stdout: mpsc::Receiver<String>,
}

impl Listener {
    /// Start `nymctl listen ARGS` and wait until it says it listens (its
    /// session on the port is registered by then).
    fn start(socket: &Path, args: &[&str]) -> Self {
        let mut child = Command::new(bin("nymctl"))
            .arg("--socket")
            .arg(socket)
            .arg("listen")
            .args(args)
            .env_remove("NYMD_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn nymctl listen");
        let stderr = child.stderr.take().expect("stderr");
        let (ready_tx, ready_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stderr).lines();
            let mut seen = String::new();
            for line in lines.by_ref().map_while(Result::ok) {
                let ready = line.starts_with("listening on");
                seen.push_str(&line);
                seen.push('\n');
                if ready {
                    let _ = ready_tx.send(Ok(()));
                    // Keep draining so the child never blocks on stderr.
                    for _ in lines.by_ref() {}
                    return;
                }
            }
            let _ = ready_tx.send(Err(seen));
        });
        let mut out = child.stdout.take().expect("stdout");
        let (tx, stdout) = mpsc::channel();
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = out.read_to_string(&mut s);
            let _ = tx.send(s);
        });
        match ready_rx.recv_timeout(WAIT) {
            Ok(Ok(())) => {}
            Ok(Err(stderr)) => {
                let _ = child.kill();
                panic!("nymctl listen {args:?} ended before listening: {stderr}");
            }
            Err(_) => {
                let _ = child.kill();
                panic!("nymctl listen {args:?} did not start listening in {WAIT:?}");
            }
        }
        Self { child, stdout }
    }

    /// Wait (bounded) for it to exit 0; its stdout.
    fn finish(mut self) -> String {
        let start = std::time::Instant::now();
        let status = loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                break s;
            }
            if start.elapsed() > WAIT {
                let _ = self.child.kill();
                panic!("nymctl listen did not finish in {WAIT:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let out = self.stdout.recv_timeout(WAIT).expect("stdout");
        assert!(status.success(), "nymctl listen: {status}; stdout: {out}");
        out
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The one JSON line of a `listen --count 1 --json`.
fn one_message(stdout: &str) -> serde_json::Value {
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{stdout}");
    let v: serde_json::Value = serde_json::from_str(lines[0]).expect("a JSON line");
    assert_eq!(v["schema_version"], 1, "{v}");
    assert_eq!(v["type"], "received", "{v}");
    v
}

fn payload(v: &serde_json::Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(v["message_base64"].as_str().expect("message_base64"))
        .expect("base64")
}

#[track_caller]
fn ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `nymctl ARGS` off the async runtime.
async fn ctl(socket: &Path, args: &[&str]) -> std::process::Output {
    let socket: PathBuf = socket.to_path_buf();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        nymctl(&socket, &a)
    })
    .await
    .expect("join")
}

async fn finish(l: Listener) -> String {
    tokio::task::spawn_blocking(move || l.finish())
        .await
        .expect("join")
}

async fn start(socket: &Path, args: &[&str]) -> Listener {
    let socket = socket.to_path_buf();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        Listener::start(&socket, &a)
    })
    .await
    .expect("join")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_send_anonymous_and_reply() {
    let net = nymd_tests::fast_localnet().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let mut h = NymdHarness::new(tmp.path(), &net.api_url(), "");
    let _d = h.start().await;
    let sock = h.socket.clone();
    let alice = h.ctl(&["init", "--id", "alice"]).await;
    let bob = h.ctl(&["init", "--id", "bob"]).await;
    let addr = |v: &serde_json::Value| v["identity"]["address"].as_str().expect("addr").to_owned();
    let port =
        |v: &serde_json::Value| v["identity"]["websocket_port"].as_u64().expect("port") as u16;
    let (alice_addr, bob_addr) = (addr(&alice), addr(&bob));

    // 1. An app on alice and nymctl listen both get what bob sends.
    let mut app = App::connect(([127, 0, 0, 1], port(&alice)).into()).await;
    // Binary mode (payloads intact); answered once its session is
    // registered, so it gets what comes next.
    app.request_binary(&ClientRequest::SelfAddress).await;
    assert!(matches!(
        app.next_response().await,
        ServerResponse::SelfAddress(_)
    ));
    let l = start(&sock, &["alice", "--count", "1", "--json"]).await;
    ok(&ctl(&sock, &["send", "bob", "--to", &alice_addr, "hello listen"]).await);
    let v = one_message(&finish(l).await);
    assert_eq!(payload(&v), b"hello listen", "{v}");
    assert_eq!(v["text"], "hello listen", "{v}");
    assert_eq!(v["id"], "alice", "{v}");
    assert!(v["sender_tag"].is_null(), "{v}");
    match tokio::time::timeout(WAIT, app.next_response()).await {
        Ok(ServerResponse::Received { message, .. }) => assert_eq!(message, b"hello listen"),
        other => panic!("the app did not get the message: {other:?}"),
    }

    // 2. Payloads arrive intact (binary mode), in text mode one line each.
    let bytes: Vec<u8> = (0..=255u8).collect();
    let file = tmp.path().join("bytes");
    std::fs::write(&file, &bytes).expect("write");
    let l = start(&sock, &["alice", "--count", "1", "--json"]).await;
    let f = file.to_string_lossy().into_owned();
    ok(&ctl(&sock, &["send", "bob", "--to", &alice_addr, "--file", &f]).await);
    let v = one_message(&finish(l).await);
    assert_eq!(payload(&v), bytes);
    assert!(v["text"].is_null(), "not UTF-8: {v}");
    let l = start(&sock, &["alice", "--count", "1"]).await;
    ok(&ctl(&sock, &["send", "bob", "--to", &alice_addr, "two\nlines"]).await);
    assert_eq!(finish(l).await, "two\\nlines\n");
    // The app had both too.
    for want in [&bytes[..], b"two\nlines"] {
        match tokio::time::timeout(WAIT, app.next_response()).await {
            Ok(ServerResponse::Received { message, .. }) => assert_eq!(message, want),
            other => panic!("the app did not get the message: {other:?}"),
        }
    }
    app.close().await;

    // 3. With no app connected, what nymctl saw still waits for the next
    //    app (nymctl takes nothing from the identity's apps).
    let l = start(&sock, &["alice", "--count", "1", "--json"]).await;
    ok(&ctl(&sock, &["send", "bob", "--to", &alice_addr, "for the app"]).await);
    assert_eq!(payload(&one_message(&finish(l).await)), b"for the app");
    let mut app = App::connect(([127, 0, 0, 1], port(&alice)).into()).await;
    match tokio::time::timeout(WAIT, app.next_response()).await {
        Ok(ServerResponse::Received { message, .. }) => assert_eq!(message, b"for the app"),
        other => panic!("the waiting message did not reach the app: {other:?}"),
    }
    app.close().await;

    // 4. send --reply-surbs: bob sees alice's sender tag; reply --tag
    //    answers through the SURBs; alice gets the answer, untagged.
    let lb = start(&sock, &["bob", "--count", "1", "--json"]).await;
    let out = ok(&ctl(
        &sock,
        &[
            "send",
            "alice",
            "--to",
            &bob_addr,
            "--reply-surbs",
            "5",
            "question",
        ],
    )
    .await);
    assert!(out.contains("anonymously with 5 reply SURBs"), "{out}");
    let v = one_message(&finish(lb).await);
    assert_eq!(payload(&v), b"question");
    let tag = v["sender_tag"].as_str().expect("a sender tag").to_owned();
    let la = start(&sock, &["alice", "--count", "1", "--json"]).await;
    let out = ok(&ctl(&sock, &["reply", "bob", "--tag", &tag, "answer"]).await);
    assert!(out.contains("replied 6 bytes"), "{out}");
    let v = one_message(&finish(la).await);
    assert_eq!(payload(&v), b"answer");
    assert!(v["sender_tag"].is_null(), "replies carry no tag: {v}");

    // 5. --timeout without --count ends quietly; with an unmet --count it
    //    is a failure that says how many came.
    let l = start(&sock, &["alice", "--timeout", "1"]).await;
    assert_eq!(finish(l).await, "");
    let out = ctl(
        &sock,
        &["listen", "alice", "--count", "1", "--timeout", "1"],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("received 0 of 1"),
        "{out:?}"
    );

    // 6. A stopped identity: said so, with what to do.
    ok(&ctl(&sock, &["stop", "bob"]).await);
    let out = ctl(&sock, &["listen", "bob"]).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("nymctl start bob"),
        "{out:?}"
    );
    net.shutdown().await;
}
