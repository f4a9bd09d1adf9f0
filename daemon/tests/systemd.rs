//! The real `nymd` binary under a stand-in for systemd: the test owns the
//! notification socket (an abstract datagram socket named in
//! `NOTIFY_SOCKET`), sets `WATCHDOG_USEC`, and sends the signals systemd
//! sends. The daemon runs its embedded local mixnet (`--localnet`) on a temp
//! state dir, socket and config, with ports from a free `first_port`.
//!
//! Checked: `READY=1` only once the control socket answers and the first
//! identity finished its first connection attempt; `STATUS=` lines; periodic
//! `WATCHDOG=1`; SIGHUP → `RELOADING=1` + `MONOTONIC_USEC=` → `READY=1`,
//! with a changed identity restarted on its new port while the other keeps
//! running undisturbed (no state event, uptime not reset); the socket is
//! 0660 under systemd's `UMask=0077`; SIGTERM →
//! `STOPPING=1` and a clean exit.

use std::os::linux::net::SocketAddrExt as _;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use nymd_ipc::client::Client;
use nymd_ipc::{
    Event, IdentityInfo, IdentityState, InitRequest, RequestBody, ResponseBody, ServerMessage,
};

/// Bound for every wait (a loaded 2-core machine is slow; nothing here
/// measures speed).
const WAIT: Duration = Duration::from_secs(60);

/// The test's end of `NOTIFY_SOCKET`: every datagram, in order.
struct FakeSystemd {
    env_value: String,
    rx: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl FakeSystemd {
    fn new() -> Self {
        let name = format!("nymd-test-notify-{}", rand::random::<u64>());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).expect("abstract address");
        let sock = UnixDatagram::bind_addr(&addr).expect("bind the notify socket");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 4096];
            while let Ok(n) = sock.recv(&mut buf) {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                if tx.send(msg).is_err() {
                    return;
                }
            }
        });
        Self {
            env_value: format!("@{name}"),
            rx,
            seen: Vec::new(),
        }
    }

    /// Wait for a datagram with a line starting with `prefix`; returns it
    /// and keeps everything seen.
    fn expect(&mut self, prefix: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let msg = self.rx.recv_timeout(left).unwrap_or_else(|_| {
                panic!("no {prefix:?} from nymd in {WAIT:?}; got {:#?}", self.seen)
            });
            self.seen.push(msg.clone());
            if msg.lines().any(|l| l.starts_with(prefix)) {
                return msg;
            }
        }
    }

    /// Datagrams so far that have a line starting with `prefix`.
    fn count(&self, prefix: &str) -> usize {
        self.seen
            .iter()
            .filter(|m| m.lines().any(|l| l.starts_with(prefix)))
            .count()
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

struct Daemon {
    child: Child,
    socket: PathBuf,
    state: PathBuf,
    log: PathBuf,
}

impl Daemon {
    fn signal(&self, sig: Signal) {
        let pid = i32::try_from(self.child.id()).expect("pid");
        kill(Pid::from_raw(pid), sig).expect("signal nymd");
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_daemon(dir: &Path, notify: &FakeSystemd, watchdog_usec: u64) -> Daemon {
    let state = dir.join("state");
    let socket = dir.join("run").join("nymd.sock");
    let config = dir.join("nymd.toml");
    std::fs::write(
        &config,
        format!(
            "[daemon]\nstate_dir = {state:?}\nsocket = {socket:?}\nlog_level = \"info\"\n\
             [identities]\nfirst_port = {}\n\
             [identities.traffic]\ndisable_cover_traffic = true\ndisable_delays = true\n",
            free_port()
        ),
    )
    .expect("write config");
    let log = dir.join("nymd.log");
    // UMask=0077 as in nymd.service: the socket must still come out 0660.
    let child = Command::new("/bin/sh")
        .arg("-c")
        .arg("umask 077 && exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_nymd"))
        .arg("--config")
        .arg(&config)
        .arg("--localnet")
        .env("NOTIFY_SOCKET", &notify.env_value)
        .env("WATCHDOG_USEC", watchdog_usec.to_string())
        .env_remove("WATCHDOG_PID")
        .env_remove("NYMD_STATE_DIR")
        .env_remove("NYMD_SOCKET")
        .env("NYMD_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("start nymd");
    Daemon {
        child,
        socket,
        state,
        log,
    }
}

async fn status(client: &mut Client, id: &str) -> IdentityInfo {
    match client
        .request(RequestBody::Status {
            id: Some(id.into()),
        })
        .await
        .expect("status")
    {
        ResponseBody::Identities(mut v) if v.len() == 1 => v.remove(0),
        other => panic!("unexpected status answer {other:?}"),
    }
}

async fn wait_running(client: &mut Client, id: &str) -> IdentityInfo {
    let deadline = Instant::now() + WAIT;
    loop {
        let info = status(client, id).await;
        if info.state == IdentityState::Running {
            return info;
        }
        assert!(Instant::now() < deadline, "{id} not running: {info:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every identity-state event that arrives within `window`.
async fn state_events(sub: &mut Client, window: Duration) -> Vec<(String, IdentityState)> {
    let mut out = Vec::new();
    let end = tokio::time::Instant::now() + window;
    while let Ok(msg) = tokio::time::timeout_at(end, sub.next_message()).await {
        match msg.expect("subscription") {
            Some(ServerMessage::Event {
                event: Event::IdentityState { identity, state },
                ..
            }) => out.push((identity, state)),
            Some(_) => {}
            None => break,
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nymd_speaks_sd_notify_and_reloads_only_what_changed() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut systemd = FakeSystemd::new();
    let daemon = start_daemon(dir.path(), &systemd, 1_000_000);

    // READY=1: the socket must answer right then (no retry), and the first
    // identity must be past its first connection attempt.
    let ready = systemd.expect("READY=1");
    assert!(
        ready.lines().any(|l| l.starts_with("STATUS=1 identity: ")),
        "READY carries the status line: {ready:?}"
    );
    let mut client = tokio::time::timeout(
        Duration::from_secs(5),
        Client::connect(&daemon.socket, "systemd test"),
    )
    .await
    .expect("the control socket answers at once after READY=1")
    .expect("the control socket accepts connections when READY=1 is sent");
    let mode = std::fs::metadata(&daemon.socket)
        .expect("socket")
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o777,
        0o660,
        "socket mode under umask 077 is {:o}",
        mode & 0o777
    );
    let first = status(&mut client, "default").await;
    assert_ne!(
        first.state,
        IdentityState::Starting,
        "READY=1 only after the first connection attempt"
    );
    for m in &systemd.seen[..systemd.seen.len() - 1] {
        assert!(
            m.starts_with("STATUS=") || m == "WATCHDOG=1",
            "only STATUS (and WATCHDOG) before READY, got {m:?}"
        );
    }

    // Periodic WATCHDOG=1 (WATCHDOG_USEC=1s: every 0.5 s).
    let before = systemd.count("WATCHDOG=1");
    for _ in 0..3 {
        systemd.expect("WATCHDOG=1");
    }
    assert!(systemd.count("WATCHDOG=1") >= before + 3);

    // A second identity; STATUS follows the states.
    match client
        .request(RequestBody::Init(InitRequest {
            id: "other".into(),
            gateway: None,
            latency_based_selection: false,
            port: None,
            host: None,
            no_start: false,
            socks5: None,
        }))
        .await
        .expect("init")
    {
        ResponseBody::Identity(_) => {}
        other => panic!("unexpected init answer {other:?}"),
    }
    let default_before = wait_running(&mut client, "default").await;
    let other_before = wait_running(&mut client, "other").await;
    loop {
        let m = systemd.expect("STATUS=");
        if m.contains("STATUS=2 identities: 2 connected") {
            break;
        }
    }

    // Edit only "other": a new port and a traffic setting.
    let new_port = free_port();
    let cfg_path = daemon
        .state
        .join("identities")
        .join("other")
        .join("config.toml");
    let text = std::fs::read_to_string(&cfg_path).expect("read config.toml");
    let mut cfg: toml::Table = toml::from_str(&text).expect("parse config.toml");
    let ws = cfg
        .get_mut("websocket")
        .and_then(|v| v.as_table_mut())
        .expect("[websocket]");
    ws.insert("port".into(), toml::Value::Integer(i64::from(new_port)));
    let traffic = cfg
        .entry("traffic")
        .or_insert_with(|| toml::Value::Table(Default::default()))
        .as_table_mut()
        .expect("[traffic]");
    traffic.insert(
        "loop_cover_average_delay_ms".into(),
        toml::Value::Integer(150),
    );
    std::fs::write(&cfg_path, toml::to_string(&cfg).expect("toml")).expect("write config.toml");

    let mut sub = Client::connect(&daemon.socket, "systemd test events")
        .await
        .expect("connect");
    sub.send(RequestBody::Subscribe { identity: None })
        .await
        .expect("subscribe");
    // Let the subscription settle (Subscribed + snapshot).
    let _ = state_events(&mut sub, Duration::from_millis(300)).await;

    let hup_at = Instant::now();
    daemon.signal(Signal::SIGHUP);
    let reloading = systemd.expect("RELOADING=1");
    let usec = reloading
        .lines()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .and_then(|v| v.parse::<u64>().ok())
        .expect("MONOTONIC_USEC with RELOADING=1");
    assert!(usec > 0);
    let reloaded = systemd.expect("READY=1");
    assert!(
        reloaded.contains("reloaded: 1 restarted"),
        "reload outcome in STATUS: {reloaded:?}"
    );

    let other_after = wait_running(&mut client, "other").await;
    assert_eq!(other_after.websocket_port, new_port, "new port applied");
    assert_ne!(other_before.websocket_port, new_port);
    let events = state_events(&mut sub, Duration::from_secs(2)).await;
    assert!(
        events
            .iter()
            .any(|(id, s)| id == "other" && *s == IdentityState::Stopped),
        "other was restarted: {events:?}"
    );
    assert!(
        events.iter().all(|(id, _)| id != "default"),
        "default was not touched: {events:?}"
    );
    let default_after = status(&mut client, "default").await;
    assert_eq!(default_after.state, IdentityState::Running);
    assert_eq!(default_after.websocket_port, default_before.websocket_port);
    let (before, after) = (
        default_before.uptime_secs.expect("uptime"),
        default_after.uptime_secs.expect("uptime"),
    );
    assert!(
        after >= before + hup_at.elapsed().as_secs().saturating_sub(1),
        "default's uptime went on ({before} s → {after} s)"
    );
    drop(sub);
    drop(client);

    // SIGTERM: STOPPING=1, then a clean exit.
    daemon.signal(Signal::SIGTERM);
    systemd.expect("STOPPING=1");
    let mut daemon = daemon;
    let deadline = Instant::now() + WAIT;
    let code = loop {
        if let Some(code) = daemon.child.try_wait().expect("wait") {
            break code;
        }
        assert!(
            Instant::now() < deadline,
            "nymd did not exit:\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(code.success(), "exit {code:?}\n{}", daemon.log());
    assert!(!daemon.socket.exists(), "socket removed at exit");
    eprintln!("notifications: {:#?}", systemd.seen);
}
