//! A full (or, without root, read-only) state dir: `nymctl init` fails with
//! an error that names the problem, the identities already running keep
//! running and delivering, and once there is room again `init` works (the
//! failed attempt left nothing in the way).
//!
//! As root the state dir is a 1 MiB tmpfs that the test fills; otherwise the
//! identities folder is made read-only (mode 0500).

use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use nymd_proto::appapi::{ClientRequest, ServerResponse};
use nymd_tests::procs::{nymctl, nymctl_json, Daemon};
use nymd_tests::App;

const READY: Duration = Duration::from_secs(60);

/// Unmounts on drop.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn mount_tiny_tmpfs(dir: &Path) -> Option<Mount> {
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs"])
        .arg(dir)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    ok.then(|| Mount(dir.to_path_buf()))
}

/// Fill the file system holding `dir`; returns the filler file.
fn fill(dir: &Path) -> PathBuf {
    let p = dir.join("filler");
    let mut f = std::fs::File::create(&p).expect("filler");
    let chunk = vec![0u8; 4096];
    while f.write_all(&chunk).and_then(|_| f.flush()).is_ok() {}
    let _ = f.sync_all();
    p
}

async fn round_trip(port: u16, text: &[u8]) {
    let mut app = App::connect(SocketAddr::from(([127, 0, 0, 1], port))).await;
    let me = app.self_address().await;
    app.request_binary(&ClientRequest::Send {
        recipient: me,
        message: text.to_vec(),
        connection_id: None,
    })
    .await;
    loop {
        match app.next_response().await {
            ServerResponse::Received { message, .. } => {
                assert_eq!(message, text);
                break;
            }
            ServerResponse::Error(e) => panic!("error: {e:?}"),
            _ => continue,
        }
    }
    app.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_on_a_full_or_read_only_state_dir_fails_clearly_and_running_identities_keep_running() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path();
    let state = dir.join("state");
    std::fs::create_dir(&state).expect("state");
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let root = nymd_tests::precondition::is_root();
    let mount = if root {
        match mount_tiny_tmpfs(&state) {
            Some(m) => Some(m),
            None => {
                nymd_tests::precondition::missing("running as root but cannot mount a tmpfs");
                return;
            }
        }
    } else {
        None
    };

    let net = nymd_tests::fast_localnet().await;
    let cfg = nymd_tests::procs::write_fast_config(dir, "");
    let socket = dir.join("nymd.sock");
    let log = dir.join("nymd.log");
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
        &log,
    );
    let d = tokio::task::spawn_blocking(move || {
        let mut d = d;
        d.wait_ready(READY);
        d
    })
    .await
    .expect("ready");

    let a = nymctl_json(&socket, &["init", "--id", "a"]);
    let port = a["identity"]["websocket_port"].as_u64().expect("port") as u16;
    round_trip(port, b"before").await;

    // No room.
    let identities = state.join("identities");
    let filler = if mount.is_some() {
        Some(fill(&state))
    } else {
        std::fs::set_permissions(&identities, std::fs::Permissions::from_mode(0o500))
            .expect("chmod");
        None
    };
    let out = nymctl(&socket, &["init", "--id", "b"]);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    eprintln!("init on a full/read-only state dir: {err}");
    assert!(!out.status.success(), "init must fail");
    let want = if mount.is_some() {
        "No space left on device"
    } else {
        "Permission denied"
    };
    assert!(
        err.contains(want),
        "the error names the cause ({want}): {err}"
    );
    assert!(
        err.contains(&identities.display().to_string()),
        "the error names where: {err}"
    );

    // `a` keeps running.
    round_trip(port, b"while full").await;
    let st = nymctl_json(&socket, &["status", "a"]);
    assert_eq!(st["identity"]["state"].as_str(), Some("Running"), "{st}");
    // And it starts again while the disk is full: its outbox cannot be
    // rewritten, so it runs with outgoing messages in memory (logged).
    // (`restart` writes nothing; `stop` would record autostart = false.)
    let restart = nymctl(&socket, &["restart", "a"]);
    assert!(
        restart.status.success(),
        "restart while full: {}",
        String::from_utf8_lossy(&restart.stderr)
    );
    let start = std::time::Instant::now();
    loop {
        let st = nymctl_json(&socket, &["status", "a"]);
        if st["identity"]["state"].as_str() == Some("Running") {
            break;
        }
        assert!(start.elapsed() < READY, "a did not start again: {st}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    round_trip(port, b"restarted while full").await;

    // Room again: init works.
    match filler {
        Some(f) => std::fs::remove_file(f).expect("remove filler"),
        None => std::fs::set_permissions(&identities, std::fs::Permissions::from_mode(0o700))
            .expect("chmod"),
    }
    let b = nymctl_json(&socket, &["init", "--id", "b"]);
    let port_b = b["identity"]["websocket_port"].as_u64().expect("port") as u16;
    round_trip(port_b, b"after").await;

    let status = tokio::task::spawn_blocking(move || {
        let mut d = d;
        d.terminate(Duration::from_secs(30))
    })
    .await
    .expect("join");
    assert!(status.success(), "nymd exit status {status}");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!text.contains("panicked"), "{text}");
    net.shutdown().await;
    drop(mount);
}
