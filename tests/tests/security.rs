//! Security checks against a real `nymd` process:
//!
//! - identity folders are 0700 and every file in them 0600 when made through
//!   `nymctl init`;
//! - nymd refuses a state dir that others can write, saying how to fix it;
//! - with `--log-level trace`, no private key, ack key, gateway shared key
//!   or message content appears in the log (in hex, base64, base58 or as a
//!   Rust byte list); at `info`, no client address appears;
//! - a second uid cannot use the control socket (when the test runs as root).

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use nymd_proto::appapi::{ClientRequest, ServerResponse};
use nymd_proto::Recipient;
use nymd_tests::procs::{bin, nymctl, nymctl_json, Daemon};
use nymd_tests::{free_port, App};

const READY: Duration = Duration::from_secs(60);

fn config(first_port: u16) -> String {
    format!(
        "[identities]\nfirst_port = {first_port}\n\n[identities.traffic]\ndisable_cover_traffic = true\ndisable_delays = true\n"
    )
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777
}

async fn spawn_ready(socket: &Path, args: Vec<String>, log: &Path) -> Daemon {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let d = Daemon::spawn(socket, &args, log);
    tokio::task::spawn_blocking(move || {
        let mut d = d;
        d.wait_ready(READY);
        d
    })
    .await
    .expect("join")
}

async fn terminate(d: Daemon) {
    let status = tokio::task::spawn_blocking(move || {
        let mut d = d;
        d.terminate(Duration::from_secs(30))
    })
    .await
    .expect("join");
    assert!(status.success(), "nymd exit status {status}");
}

/// The ways a secret could be written into a log line.
fn encodings(bytes: &[u8]) -> Vec<String> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE_NO_PAD};
    let mut v = vec![
        hex::encode(bytes),
        hex::encode_upper(bytes),
        STANDARD.encode(bytes),
        STANDARD_NO_PAD.encode(bytes),
        URL_SAFE_NO_PAD.encode(bytes),
        bs58::encode(bytes).into_string(),
    ];
    // `{:?}` of a byte array or slice: "[1, 2, 3, ...". The first 12 bytes
    // are enough to recognise it.
    let debug = format!("{:?}", &bytes[..bytes.len().min(12)]);
    v.push(debug.trim_end_matches(']').to_string());
    v
}

/// Every PEM file of an identity: (file, decoded body, base64 body).
fn pem_secrets(dir: &Path) -> Vec<(PathBuf, Vec<u8>, String)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("identity dir") {
        let p = e.expect("entry").path();
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if !name.ends_with(".pem") || name.starts_with("public_") {
            continue;
        }
        let text = std::fs::read_to_string(&p).expect("pem");
        let body: String = text
            .lines()
            .filter(|l| !l.starts_with("-----") && !l.trim().is_empty())
            .collect();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(body.trim())
            .expect("PEM body is base64");
        out.push((p, bytes, body));
    }
    out
}

async fn received(app: &mut App) -> Vec<u8> {
    loop {
        if let ServerResponse::Received { message, .. } = app.next_response().await {
            return message;
        }
    }
}

/// Unix-socket, state dir and config for one daemon.
struct Setup {
    dir: PathBuf,
    socket: PathBuf,
    state: PathBuf,
    cfg: PathBuf,
}

impl Setup {
    fn new(dir: &Path) -> Self {
        let cfg = dir.join("nymd.toml");
        std::fs::write(&cfg, config(free_port())).expect("config");
        Self {
            dir: dir.to_path_buf(),
            socket: dir.join("run/nymd.sock"),
            state: dir.join("state"),
            cfg,
        }
    }

    fn args(&self, api: &str, level: &str) -> Vec<String> {
        vec![
            "--config".into(),
            self.cfg.display().to_string(),
            "--state-dir".into(),
            self.state.display().to_string(),
            "--nym-api".into(),
            api.into(),
            "--log-level".into(),
            level.into(),
        ]
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_private_and_stay_out_of_the_logs() {
    let net = nymd_tests::fast_localnet().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let s = Setup::new(tmp.path());
    let api = net.api_url();

    // Run 1, trace: init, send, receive (text, binary, anonymous, reply).
    let trace_log = s.dir.join("trace.log");
    let d = spawn_ready(&s.socket, s.args(&api, "trace"), &trace_log).await;
    let mut ports = BTreeMap::new();
    let mut addrs = BTreeMap::new();
    for id in ["alice", "bob"] {
        let v = nymctl_json(&s.socket, &["init", "--id", id]);
        ports.insert(
            id,
            v["identity"]["websocket_port"].as_u64().expect("port") as u16,
        );
        addrs.insert(
            id,
            v["identity"]["address"]
                .as_str()
                .expect("address")
                .to_string(),
        );
    }
    // Folders 0700, files 0600, made through the daemon.
    let ids = s.state.join("identities");
    assert_eq!(
        mode(&s.state) & 0o022,
        0,
        "state dir not writable by others"
    );
    // Every folder below an identity (its outbox too) 0700, every file 0600.
    fn check_tree(dir: &std::path::Path) {
        assert_eq!(mode(dir), 0o700, "{}", dir.display());
        for e in std::fs::read_dir(dir).expect("dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                check_tree(&p);
            } else {
                assert_eq!(mode(&p), 0o600, "{}", p.display());
            }
        }
    }
    for id in ["alice", "bob"] {
        check_tree(&ids.join(id));
    }
    assert!(
        ids.join("alice/outbox/journal").exists(),
        "the outbox is checked too"
    );

    let secret_text = "SECRET-CONTENT-7f3a9c";
    let secret_bin: Vec<u8> = (0..64u8).map(|i| i.wrapping_mul(37) ^ 0xa5).collect();
    let secret_reply = "SECRET-REPLY-51e0d2";
    let bob_addr: Recipient = addrs["bob"].parse().expect("address");
    let mut alice = App::connect(([127, 0, 0, 1], ports["alice"]).into()).await;
    let mut bob = App::connect(([127, 0, 0, 1], ports["bob"]).into()).await;
    alice
        .send_text(&format!(
            r#"{{"type":"send","message":"{secret_text}","recipient":"{bob_addr}"}}"#
        ))
        .await;
    assert_eq!(received(&mut bob).await, secret_text.as_bytes());
    alice
        .request_binary(&ClientRequest::SendAnonymous {
            recipient: bob_addr,
            message: secret_bin.clone(),
            reply_surbs: 5,
            connection_id: None,
        })
        .await;
    let tag = loop {
        if let ServerResponse::Received {
            message,
            sender_tag,
        } = bob.next_response().await
        {
            assert_eq!(message, secret_bin);
            break sender_tag.expect("tag");
        }
    };
    bob.request_binary(&ClientRequest::Reply {
        sender_tag: tag,
        message: secret_reply.as_bytes().to_vec(),
        connection_id: None,
    })
    .await;
    assert_eq!(received(&mut alice).await, secret_reply.as_bytes());
    let out = nymctl(
        &s.socket,
        &["send", "alice", "--to", &addrs["bob"], secret_text],
    );
    assert!(out.status.success());
    assert_eq!(received(&mut bob).await, secret_text.as_bytes());
    alice.close().await;
    bob.close().await;
    terminate(d).await;

    let log = std::fs::read_to_string(&trace_log).expect("log");
    assert!(
        log.contains("TRACE") || log.contains("DEBUG"),
        "the log is at trace level"
    );
    // Addresses are logged at debug level: the search finds what is there.
    assert!(
        log.contains(&addrs["alice"]),
        "the trace log names alice's address at debug level"
    );
    let mut secrets: Vec<(String, Vec<u8>)> = vec![
        ("message text".into(), secret_text.as_bytes().to_vec()),
        ("binary message".into(), secret_bin.clone()),
        ("reply".into(), secret_reply.as_bytes().to_vec()),
    ];
    for id in ["alice", "bob"] {
        for (p, bytes, body) in pem_secrets(&ids.join(id)) {
            let what = p.display().to_string();
            assert!(
                !log.contains(body.trim()),
                "{what} (PEM body) is in the log"
            );
            secrets.push((what, bytes));
        }
    }
    let mut leaks = Vec::new();
    for (what, bytes) in &secrets {
        for enc in encodings(bytes) {
            if log.contains(&enc) {
                let line = log.lines().find(|l| l.contains(&enc)).unwrap_or_default();
                leaks.push(format!("{what} as {enc:?}: {line}"));
            }
        }
    }
    assert!(
        leaks.is_empty(),
        "secrets in the trace log:\n{}",
        leaks.join("\n")
    );

    // Run 2, info: start, send, init another: no client address is logged.
    let info_log = s.dir.join("info.log");
    let d = spawn_ready(&s.socket, s.args(&api, "info"), &info_log).await;
    let v = nymctl_json(&s.socket, &["init", "--id", "carol"]);
    addrs.insert(
        "carol",
        v["identity"]["address"]
            .as_str()
            .expect("address")
            .to_string(),
    );
    let mut bob = App::connect(([127, 0, 0, 1], ports["bob"]).into()).await;
    bob.request_binary(&ClientRequest::SelfAddress).await;
    let out = nymctl(&s.socket, &["send", "alice", "--to", &addrs["bob"], "hi"]);
    assert!(out.status.success());
    assert_eq!(received(&mut bob).await, b"hi");
    bob.close().await;
    terminate(d).await;
    let log = std::fs::read_to_string(&info_log).expect("log");
    assert!(log.contains("INFO"), "the log is at info level");
    for (id, addr) in &addrs {
        // The client part of the address (identity.encryption) is what
        // identifies the user; the gateway is a public node.
        let client = addr.split('@').next().expect("address");
        for part in client.split('.') {
            let line = log.lines().find(|l| l.contains(part));
            assert!(line.is_none(), "{id}'s address at info level: {line:?}");
        }
    }
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nymd_refuses_a_state_dir_others_can_write() {
    let tmp = tempfile::tempdir().expect("tmp");
    let s = Setup::new(tmp.path());
    std::fs::create_dir(&s.state).expect("state");
    std::fs::set_permissions(&s.state, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    // The directory is never contacted: nymd stops before.
    let text = refused_start(&s).await;
    assert!(
        text.contains("writable by group or others") && text.contains("chmod go-w"),
        "the error says what is wrong and how to fix it: {text}"
    );
    assert!(text.contains(&s.state.display().to_string()), "{text}");
}

/// nymd with `s`'s settings exits non-zero; its log.
async fn refused_start(s: &Setup) -> String {
    let log = s.dir.join("nymd.log");
    let args = s.args("http://127.0.0.1:9/", "info");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut d = Daemon::spawn(&s.socket, &args, &log);
    let status = tokio::task::spawn_blocking(move || d.wait_exit(Duration::from_secs(30)))
        .await
        .expect("join");
    assert!(!status.success(), "nymd must refuse to start");
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(!text.contains("panicked"), "{text}");
    text
}

/// A state dir another user owns (pre-created in /tmp, say), or one inside
/// a folder another user owns, is refused: that user could swap the
/// identities in it. Needs root to hand a folder to uid 65534.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nymd_refuses_a_state_dir_another_user_owns() {
    if !nymd_tests::precondition::is_root() {
        nymd_tests::precondition::missing("needs root to give a folder to another uid");
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let s = Setup::new(tmp.path());
    std::fs::create_dir(&s.state).expect("state");
    std::fs::set_permissions(&s.state, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    std::os::unix::fs::chown(&s.state, Some(65534), Some(65534)).expect("chown");
    let text = refused_start(&s).await;
    assert!(
        text.contains("belongs to uid 65534") && text.contains("chown"),
        "the error says what is wrong and how to fix it: {text}"
    );
    assert!(text.contains(&s.state.display().to_string()), "{text}");

    // Inside a folder another user owns: refused too, naming that folder.
    let tmp = tempfile::tempdir().expect("tmp");
    let theirs = tmp.path().join("theirs");
    std::fs::create_dir(&theirs).expect("theirs");
    std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).expect("chown");
    let mut s = Setup::new(tmp.path());
    s.state = theirs.join("state");
    std::fs::create_dir(&s.state).expect("state");
    std::fs::set_permissions(&s.state, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let text = refused_start(&s).await;
    assert!(
        text.contains(&format!("{} belongs to uid 65534", theirs.display())),
        "the folder above is named: {text}"
    );

    // Owned by nymd's user: starts (the control socket answers).
    let tmp = tempfile::tempdir().expect("tmp");
    let s = Setup::new(tmp.path());
    let d = spawn_ready(
        &s.socket,
        s.args("http://127.0.0.1:9/", "info"),
        &s.dir.join("nymd.log"),
    )
    .await;
    terminate(d).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_uid_cannot_use_the_control_socket() {
    if !nymd_tests::precondition::is_root() {
        nymd_tests::precondition::missing("needs root to run nymctl as another uid");
        return;
    }
    let Some(setpriv) = ["/usr/bin/setpriv", "/bin/setpriv"]
        .into_iter()
        .find(|p| Path::new(p).exists())
    else {
        nymd_tests::precondition::missing("setpriv not found (util-linux)");
        return;
    };
    // A folder everyone may traverse, so that only the socket's own mode
    // decides.
    let tmp = tempfile::tempdir().expect("tmp");
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let s = Setup::new(tmp.path());
    let d = spawn_ready(
        &s.socket,
        s.args("http://127.0.0.1:9/", "info"),
        &s.dir.join("nymd.log"),
    )
    .await;
    std::fs::set_permissions(
        s.socket.parent().expect("run dir"),
        std::fs::Permissions::from_mode(0o755),
    )
    .ok();
    // A copy uid 65534 can reach, wherever the build tree lives.
    let (_bin_dir, nymctl_bin) = nymd_tests::precondition::copy_for_other_users(&bin("nymctl"));
    let as_nobody = |args: &[&str]| {
        std::process::Command::new(setpriv)
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&nymctl_bin)
            .arg("--socket")
            .arg(&s.socket)
            .args(args)
            .env_remove("NYMD_SOCKET")
            .output()
            .expect("run setpriv")
    };
    // The binary itself must be usable by uid 65534 for the check to mean
    // anything.
    let version = std::process::Command::new(setpriv)
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&nymctl_bin)
        .arg("--version")
        .output()
        .expect("run setpriv");
    if !version.status.success() {
        terminate(d).await;
        nymd_tests::precondition::missing(&format!(
            "uid 65534 cannot run {}: {}",
            nymctl_bin.display(),
            String::from_utf8_lossy(&version.stderr)
        ));
        return;
    }
    for args in [&["list"][..], &["daemon", "shutdown"][..]] {
        let out = as_nobody(args);
        assert!(!out.status.success(), "uid 65534 ran nymctl {args:?}");
        let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
        assert!(err.contains("permission"), "nymctl {args:?}: {err}");
    }
    // The daemon is unaffected.
    assert!(nymctl(&s.socket, &["list"]).status.success());
    terminate(d).await;
}
