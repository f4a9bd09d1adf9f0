//! Who may connect to an identity's app port, against a real `nymd`
//! process, real sockets and the embedded local mixnet:
//!
//! - a browser page (a handshake with an `Origin` header) gets 403 unless
//!   `nymctl access --allow-origin` listed its origin, then 101;
//! - a client running as another uid (65534) is closed before the
//!   handshake, and let in after `nymctl access --allow-user nobody` (or
//!   `--allow-group nogroup`);
//! - the connection one over `max_apps` is closed while the others keep
//!   working;
//! - an identity whose config.toml predates access control lets any local
//!   user in, and `nymctl status` says why;
//! - a websocket host other than loopback needs `allow_remote_apps`: init
//!   refuses it, start fails saying what to set, and with it the port
//!   serves.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use nymd_tests::procs::{nymctl, Daemon, NymdHarness};
use nymd_tests::{precondition, App, WAIT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A raw websocket upgrade, optionally with an `Origin` header. The status
/// line of the answer, or `None` if the server closed the connection
/// without answering (or refused it: the identity restarting).
async fn upgrade(port: u16, origin: Option<&str>) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
    let origin = origin
        .map(|o| format!("Origin: {o}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{origin}\r\n"
    );
    let _ = s.write_all(req.as_bytes()).await;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        let n = tokio::time::timeout(WAIT, s.read(&mut chunk))
            .await
            .expect("an answer or a close in time")
            .unwrap_or(0);
        buf.extend_from_slice(&chunk[..n]);
        if n == 0 || buf.windows(2).any(|w| w == b"\r\n") {
            break;
        }
    }
    let text = String::from_utf8_lossy(&buf);
    text.lines()
        .next()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
}

/// Retry `probe` until it returns something `want` accepts (the identity
/// may be restarting), bounded by [`WAIT`]; returns the last result.
async fn until<T: std::fmt::Debug, F: std::future::Future<Output = T>>(
    mut probe: impl FnMut() -> F,
    want: impl Fn(&T) -> bool,
    what: &str,
) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        let got = probe().await;
        if want(&got) {
            return got;
        }
        assert!(Instant::now() < deadline, "{what}: last result {got:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn is_101(s: &Option<String>) -> bool {
    s.as_deref().is_some_and(|l| l.contains(" 101 "))
}

/// `nymctl ARGS` off the async threads.
async fn ctl(socket: &Path, args: &[&str]) -> Output {
    let socket = socket.to_path_buf();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        nymctl(&socket, &a)
    })
    .await
    .expect("join")
}

#[track_caller]
fn assert_ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A daemon (real process) on the embedded mixnet with identity `alice`;
/// returns its port.
async fn daemon_with_alice(
    dir: &Path,
    net: &nymd_localnet::Localnet,
) -> (NymdHarness, Daemon, u16) {
    let mut h = NymdHarness::new(dir, &net.api_url(), "");
    let d = h.start().await;
    let v = h.ctl(&["init", "--id", "alice"]).await;
    let port = v["identity"]["websocket_port"]
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .expect("a port");
    (h, d, port)
}

fn config_path(h: &NymdHarness, id: &str) -> PathBuf {
    h.dir.join("state/identities").join(id).join("config.toml")
}

/// Edit an identity's `[websocket]` section: drop the keys in `remove`, add
/// the lines in `add`.
fn edit_websocket(path: &Path, remove: &[&str], add: &[&str]) {
    let text = std::fs::read_to_string(path).expect("config.toml");
    let mut out = String::new();
    for line in text.lines() {
        let key = line.split('=').next().unwrap_or_default().trim();
        if remove.contains(&key) {
            continue;
        }
        out.push_str(line);
        out.push('\n');
        if line.trim() == "[websocket]" {
            for a in add {
                out.push_str(a);
                out.push('\n');
            }
        }
    }
    std::fs::write(path, out).expect("write config.toml");
}

fn sighup(d: &Daemon) {
    let status = Command::new("kill")
        .args(["-HUP", &d.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

async fn terminate(d: Daemon) {
    let status = tokio::task::spawn_blocking(move || {
        let mut d = d;
        d.terminate(WAIT)
    })
    .await
    .expect("join");
    assert!(status.success(), "nymd exit status {status}");
}

fn log_text(h: &NymdHarness) -> String {
    std::fs::read_to_string(h.log(h.runs)).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_pages_need_an_allowed_origin_and_max_apps_holds() {
    let net = nymd_tests::fast_localnet().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let (h, d, port) = daemon_with_alice(tmp.path(), &net).await;

    // An app that sends no Origin is not affected.
    let plain = until(|| upgrade(port, None), is_101, "app without Origin").await;
    assert!(is_101(&plain));
    let evil = upgrade(port, Some("http://evil.example")).await;
    assert!(
        evil.as_deref().is_some_and(|l| l.contains(" 403 ")),
        "{evil:?}"
    );
    let origin = "http://localhost:8080";
    assert!(!is_101(&upgrade(port, Some(origin)).await));
    let log = log_text(&h);
    assert!(
        log.contains("refused a browser page from origin http://evil.example")
            && log.contains("nymctl access alice --allow-origin http://evil.example"),
        "{log}"
    );

    assert_ok(
        &ctl(&h.socket, &["access", "alice", "--allow-origin", origin]).await,
        "allow origin",
    );
    until(|| upgrade(port, Some(origin)), is_101, "allowed origin").await;
    let evil = upgrade(port, Some("http://evil.example")).await;
    assert!(
        evil.as_deref().is_some_and(|l| l.contains(" 403 ")),
        "{evil:?}"
    );
    let status = assert_ok(&ctl(&h.socket, &["status", "alice"]).await, "status");
    assert!(
        status.contains("origins        http://localhost:8080"),
        "{status}"
    );

    // Two apps at most: the third connection is closed before the
    // handshake, the two keep working.
    edit_websocket(&config_path(&h, "alice"), &[], &["max_apps = 2"]);
    sighup(&d);
    until(
        || h.ctl(&["status", "alice"]),
        |v| v["identity"]["access"]["max_apps"] == 2,
        "reload applies max_apps",
    )
    .await;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut a = App::connect(addr).await;
    let mut b = App::connect(addr).await;
    a.self_address().await;
    b.self_address().await;
    assert_eq!(upgrade(port, None).await, None, "the third is closed");
    a.self_address().await;
    b.self_address().await;
    assert!(log_text(&h).contains("as many apps connected as it allows"));
    a.close().await;
    until(|| upgrade(port, None), is_101, "room after an app left").await;
    b.self_address().await;
    terminate(d).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identity_from_before_access_control_lets_any_local_user_in() {
    let net = nymd_tests::fast_localnet().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let (mut h, d, port) = daemon_with_alice(tmp.path(), &net).await;
    let v = h.ctl(&["status", "alice"]).await;
    // Created by this (root or not) user: it alone, besides root and nymd.
    let me = nix_uid();
    assert_eq!(
        v["identity"]["access"]["allowed_uids"],
        serde_json::json!([me])
    );
    assert_eq!(v["identity"]["access"]["any_local_user"], false);
    terminate(d).await;

    // The [websocket] section as nymd wrote it before access control.
    edit_websocket(
        &config_path(&h, "alice"),
        &["any_local_user", "allowed_uids"],
        &[],
    );
    let d = h.start().await;
    let v = h.ctl(&["status", "alice"]).await;
    let access = &v["identity"]["access"];
    assert_eq!(access["any_local_user"], true, "{v}");
    assert_eq!(access["predates_access_control"], true, "{v}");
    let text = assert_ok(&ctl(&h.socket, &["status", "alice"]).await, "status");
    assert!(
        text.contains("any local user (identity created before access control)"),
        "{text}"
    );
    until(|| upgrade(port, None), is_101, "old identity serves").await;
    // As before: any local user, when a second uid is at hand.
    if let Some(client) = OtherUidClient::new() {
        let got = client.upgrade(port).await;
        assert!(got.contains(" 101 "), "uid 65534 on an old identity: {got}");
    }
    // Saving the config (stop clears `enabled`) keeps it an old identity.
    assert_ok(&ctl(&h.socket, &["stop", "alice"]).await, "stop");
    let text = std::fs::read_to_string(config_path(&h, "alice")).expect("config");
    assert!(!text.contains("any_local_user"), "{text}");
    terminate(d).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_uid_is_refused_until_allowed() {
    let Some(client) = OtherUidClient::new() else {
        return;
    };
    let net = nymd_tests::fast_localnet().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let (h, d, port) = daemon_with_alice(tmp.path(), &net).await;
    until(|| upgrade(port, None), is_101, "the owner connects").await;

    let got = client.upgrade(port).await;
    assert_eq!(
        got, "CLOSED",
        "uid 65534 must be closed before the handshake"
    );
    let log = log_text(&h);
    assert!(
        log.contains("refused an app connection from uid 65534")
            && log.contains("nymctl access alice --allow-user 65534"),
        "{log}"
    );

    assert_ok(
        &ctl(&h.socket, &["access", "alice", "--allow-user", "nobody"]).await,
        "allow nobody",
    );
    until(
        || client.upgrade(port),
        |s| s.contains(" 101 "),
        "uid 65534 once allowed",
    )
    .await;

    // By group instead: nobody's primary group.
    assert_ok(
        &ctl(
            &h.socket,
            &[
                "access",
                "alice",
                "--remove-user",
                "nobody",
                "--allow-group",
                "nogroup",
            ],
        )
        .await,
        "group instead of user",
    );
    until(
        || client.upgrade(port),
        |s| s.contains(" 101 "),
        "uid 65534 through its group",
    )
    .await;
    assert_ok(
        &ctl(&h.socket, &["access", "alice", "--remove-group", "nogroup"]).await,
        "remove the group",
    );
    until(
        || client.upgrade(port),
        |s| s == "CLOSED",
        "uid 65534 refused again",
    )
    .await;
    // The owner is unaffected throughout.
    until(|| upgrade(port, None), is_101, "the owner still connects").await;
    terminate(d).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_loopback_host_needs_allow_remote_apps() {
    let net = nymd_tests::fast_localnet().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let (h, d, port) = daemon_with_alice(tmp.path(), &net).await;

    let out = ctl(&h.socket, &["init", "--id", "bob", "--host", "0.0.0.0"]).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not a loopback address") && err.contains("allow_remote_apps"),
        "{err}"
    );

    assert_ok(&ctl(&h.socket, &["stop", "alice"]).await, "stop");
    edit_websocket(
        &config_path(&h, "alice"),
        &["host"],
        &["host = \"0.0.0.0\""],
    );
    sighup(&d);
    until(
        || h.ctl(&["status", "alice"]),
        |v| v["identity"]["websocket_host"] == "0.0.0.0",
        "reload reads the new host",
    )
    .await;
    let out = ctl(&h.socket, &["start", "alice"]).await;
    assert!(!out.status.success(), "start must refuse the remote host");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("0.0.0.0") && err.contains("config.toml"),
        "{err}"
    );
    let status = assert_ok(&ctl(&h.socket, &["status", "alice"]).await, "status");
    assert!(
        status.contains("failed: websocket host 0.0.0.0"),
        "{status}"
    );
    assert!(upgrade(port, None).await.is_none(), "nothing listens");

    edit_websocket(
        &config_path(&h, "alice"),
        &["allow_remote_apps"],
        &["allow_remote_apps = true"],
    );
    sighup(&d);
    until(
        || h.ctl(&["status", "alice"]),
        |v| v["identity"]["access"]["allow_remote_apps"] == true,
        "reload reads allow_remote_apps",
    )
    .await;
    assert_ok(&ctl(&h.socket, &["start", "alice"]).await, "start");
    until(
        || upgrade(port, None),
        is_101,
        "with allow_remote_apps the port serves",
    )
    .await;
    assert!(
        log_text(&h).contains("the user check applies only to apps on this machine"),
        "the remote-apps warning is logged"
    );
    terminate(d).await;
}

fn nix_uid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .expect("uid")
}

/// A tiny websocket client (Python's standard library, run through
/// `setpriv` as uid/gid 65534 without supplementary groups): a raw TCP
/// connect and upgrade request; prints the answer's status line or
/// `CLOSED`.
struct OtherUidClient {
    setpriv: &'static str,
}

const PY_UPGRADE: &str = r#"
import socket, sys
try:
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=20)
    s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    d = b""
    while b"\r\n" not in d:
        c = s.recv(1024)
        if not c:
            break
        d += c
except OSError:
    d = b""
line = d.split(b"\r\n")[0].decode("latin-1")
print(line if line else "CLOSED")
"#;

impl OtherUidClient {
    /// `None` (after reporting the missing precondition) when this test
    /// cannot run a process as another uid.
    fn new() -> Option<Self> {
        if !precondition::is_root() {
            precondition::missing("needs root to run a client as uid 65534");
            return None;
        }
        let Some(setpriv) = ["/usr/bin/setpriv", "/bin/setpriv"]
            .into_iter()
            .find(|p| Path::new(p).exists())
        else {
            precondition::missing("setpriv not found (util-linux)");
            return None;
        };
        if !Path::new("/usr/bin/python3").exists() {
            precondition::missing("/usr/bin/python3 not found");
            return None;
        }
        let c = Self { setpriv };
        let out = c.run(&["-c", "import os; print(os.getuid())"]);
        if String::from_utf8_lossy(&out.stdout).trim() != "65534" {
            precondition::missing(&format!(
                "cannot run python3 as uid 65534: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
            return None;
        }
        Some(c)
    }

    /// Run `/usr/bin/python3 -I ARGS` as uid 65534, killed after [`WAIT`].
    fn run(&self, args: &[&str]) -> Output {
        let child = Command::new(self.setpriv)
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg("/usr/bin/python3")
            .arg("-I")
            .args(args)
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn setpriv");
        let pid = child.id();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        match rx.recv_timeout(WAIT) {
            Ok(out) => out.expect("wait"),
            Err(_) => {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
                panic!("the uid-65534 client did not finish within {WAIT:?}");
            }
        }
    }

    /// The status line of the answer to an upgrade as uid 65534, or
    /// `CLOSED`.
    async fn upgrade(&self, port: u16) -> String {
        let setpriv = self.setpriv;
        tokio::task::spawn_blocking(move || {
            let c = OtherUidClient { setpriv };
            let out = c.run(&["-c", PY_UPGRADE, &port.to_string()]);
            String::from_utf8_lossy(&out.stdout).trim().to_owned()
        })
        .await
        .expect("join")
    }
}
