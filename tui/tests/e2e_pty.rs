//! The real `nym-tui` binary in a pseudo-terminal (80x24) against a real
//! `nymd --localnet` process with two identities exchanging traffic.
//!
//! The screen is read back through a VT100 model (`vt100`) of what the
//! binary wrote to the pty, and polled until it shows what it must or a
//! generous deadline passes, so a loaded 2-core machine only makes it slower.
//!
//! Proves, in order: the TUI says the daemon is not running and recovers by
//! itself when it starts; both identities, a connected gateway, non-zero real
//! traffic both ways and the three mix layers are on screen; the topology
//! page marks the gateway in use; stop and start of the selected identity
//! work from the keyboard (operate tier); the TUI notices the daemon going
//! away; `q` exits 0 with the terminal restored (main screen, cursor shown,
//! canonical mode and echo back on).

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::pty::{openpty, Winsize};
use nix::sys::termios::{tcgetattr, LocalFlags};
use nymd_ipc::client::Client;
use nymd_ipc::{InitRequest, RequestBody, ResponseBody, SendRequest};

/// Generous: a cold localnet on a busy 2-core machine takes a while.
const DEADLINE: Duration = Duration::from_secs(180);
const ROWS: u16 = 24;
const COLS: u16 = 80;

/// A workspace binary next to this test's executable
/// (`target/<profile>/NAME`); `cargo test --workspace` builds `nymd` (it has
/// integration tests of its own), `cargo test -p nym-tui` alone may not.
fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target profile dir")
        .to_path_buf();
    let path = dir.join(name);
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", name, "--bin", name])
            .status()
            .expect("run cargo build");
        assert!(status.success(), "cargo build --bin {name} failed");
    }
    path
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A child killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// `nym-tui` on a pty, with a VT100 model of its screen.
struct Tui {
    proc: Proc,
    screen: Arc<Mutex<vt100::Parser>>,
    input: File,
    slave: OwnedFd,
}

impl Tui {
    fn spawn(socket: &Path) -> Self {
        let size = Winsize {
            ws_row: ROWS,
            ws_col: COLS,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let pty = openpty(Some(&size), None).expect("openpty");
        let slave = pty.slave;
        let stdio = || Stdio::from(slave.try_clone().expect("dup pty"));
        // In a session of its own the binary has no controlling terminal,
        // so it cannot reach the terminal `cargo test` may run in; the pty
        // on its stdin/stdout is its terminal.
        let tui = env!("CARGO_BIN_EXE_nym-tui");
        let mut cmd = match ["/usr/bin/setsid", "/bin/setsid"]
            .iter()
            .find(|p| Path::new(p).exists())
        {
            Some(setsid) => {
                let mut c = Command::new(setsid);
                c.arg(tui);
                c
            }
            None => Command::new(tui),
        };
        let child = cmd
            .arg("--socket")
            .arg(socket)
            .env("TERM", "xterm-256color")
            .env_remove("NYMD_SOCKET")
            .stdin(stdio())
            .stdout(stdio())
            .stderr(stdio())
            .spawn()
            .expect("spawn nym-tui");
        let screen = Arc::new(Mutex::new(vt100::Parser::new(ROWS, COLS, 0)));
        let mut output = File::from(pty.master.try_clone().expect("dup master"));
        let sink = screen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            // Ends with EIO when the last slave fd closes.
            while let Ok(n) = output.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .process(&buf[..n]);
            }
        });
        Self {
            proc: Proc(child),
            screen,
            input: File::from(pty.master),
            slave,
        }
    }

    fn contents(&self) -> String {
        self.screen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .screen()
            .contents()
    }

    fn key(&mut self, k: &str) {
        self.input.write_all(k.as_bytes()).expect("write key");
        self.input.flush().expect("flush key");
    }

    /// Poll until `ok(screen)` or the deadline; the last screen in the
    /// panic message.
    #[track_caller]
    fn wait_for(&mut self, what: &str, deadline: Instant, ok: impl Fn(&str) -> bool) -> String {
        loop {
            let s = self.contents();
            if ok(&s) {
                return s;
            }
            if let Ok(Some(status)) = self.proc.0.try_wait() {
                panic!("nym-tui exited ({status}) while waiting for {what}; screen:\n{s}");
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; screen:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

/// The line of `screen` that contains `needle`.
fn line_with<'a>(screen: &'a str, needle: &str) -> Option<&'a str> {
    screen.lines().find(|l| l.contains(needle))
}

/// The token after `label` on its line is a non-zero number (`3`, `1.2K`).
fn nonzero_after(screen: &str, label: &str) -> bool {
    line_with(screen, label)
        .and_then(|l| l.split(label).nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .is_some_and(|tok| tok.starts_with(|c: char| c.is_ascii_digit()) && tok != "0")
}

fn row_running(screen: &str, id: &str) -> bool {
    screen
        .lines()
        .any(|l| l.contains(&format!(" {id} ")) && l.contains("running"))
}

fn three_layers(screen: &str) -> bool {
    (1..=3).all(|n| nonzero_after(screen, &format!("│layer {n} ")))
        && nonzero_after(screen, "│gateways ")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

async fn connect(socket: &Path) -> Client {
    Client::connect(socket, "nym-tui e2e")
        .await
        .expect("connect to nymd")
}

#[test]
fn dashboard_of_a_real_daemon_on_the_localnet() {
    let deadline = Instant::now() + DEADLINE;
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("nymd.sock");
    let config = dir.path().join("nymd.toml");
    std::fs::write(
        &config,
        format!("[identities]\nfirst_port = {}\n", free_port()),
    )
    .expect("config");

    // 1. No daemon yet: the TUI says so and keeps trying.
    let mut tui = Tui::spawn(&socket);
    tui.wait_for("'not running'", deadline, |s| {
        s.contains("nymd is not running") && s.contains("Waiting for nymd")
    });

    // 2. The daemon starts; the TUI connects by itself.
    let log = File::create(dir.path().join("nymd.log")).expect("log");
    let mut nymd = Proc(
        Command::new(workspace_bin("nymd"))
            .arg("--localnet")
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .arg("--socket")
            .arg(&socket)
            .arg("--config")
            .arg(&config)
            .env_remove("NYMD_CONFIG")
            .env_remove("NYMD_STATE_DIR")
            .env_remove("NYMD_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn nymd"),
    );
    tui.wait_for("identity 'default' running", deadline, |s| {
        row_running(s, "default")
    });

    // 3. A second identity, and traffic both ways between the two.
    let rt = runtime();
    let (default_addr, second_addr) = rt.block_on(async {
        let mut c = connect(&socket).await;
        let body = RequestBody::Init(InitRequest {
            id: "second".into(),
            gateway: None,
            latency_based_selection: false,
            port: None,
            host: None,
            no_start: false,
            socks5: None,
        });
        c.request(body).await.expect("init second");
        let addr = |id: &str| RequestBody::Address { id: id.into() };
        let a = match c.request(addr("default")).await.expect("address") {
            ResponseBody::Address { address, .. } => address,
            other => panic!("unexpected {other:?}"),
        };
        let b = match c.request(addr("second")).await.expect("address") {
            ResponseBody::Address { address, .. } => address,
            other => panic!("unexpected {other:?}"),
        };
        (a, b)
    });
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = {
        let stop = stop.clone();
        let socket = socket.clone();
        std::thread::spawn(move || {
            runtime().block_on(async {
                let mut c = connect(&socket).await;
                while !stop.load(Ordering::Relaxed) {
                    for (from, to) in [("default", &second_addr), ("second", &default_addr)] {
                        let send = RequestBody::Send(SendRequest {
                            id: from.into(),
                            to: to.clone(),
                            message: format!("hello from {from}").into_bytes(),
                        });
                        // A stopped identity refuses; that is expected
                        // during the stop/start step below.
                        if let Err(e) = c.request(send).await {
                            if e.code().is_none() {
                                return; // the daemon is gone
                            }
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            });
        })
    };

    // 4. The overview: both identities, a connected gateway, traffic and
    //    the three layers.
    let overview = tui.wait_for(
        "both identities, a connected gateway, traffic and three layers",
        deadline,
        |s| {
            row_running(s, "default")
                && row_running(s, "second")
                && s.contains("connection  connected")
                && nonzero_after(s, "since start: sent ")
                && three_layers(s)
        },
    );
    eprintln!("overview:\n{overview}");

    // Real traffic both ways, cumulative, on the traffic page.
    tui.key("2");
    let traffic_page = tui.wait_for("real traffic sent and received", deadline, |s| {
        s.contains("Totals since the identity started")
            && nonzero_after(s, "sent  real ")
            && nonzero_after(s, "recv  real ")
    });
    eprintln!("traffic:\n{traffic_page}");

    // The topology page lists the layers and marks the gateway in use.
    tui.key("3");
    tui.wait_for("the topology page", deadline, |s| {
        (1..=3).all(|n| s.lines().any(|l| l.starts_with(&format!("│  {n}  "))))
            && s.lines()
                .any(|l| l.starts_with("│* gw ") && l.contains("default"))
    });

    // 5. Stop and start the second identity from the keyboard.
    tui.key("1");
    tui.key("j");
    tui.wait_for("'second' selected", deadline, |s| {
        s.contains("Gateway · second")
    });
    tui.key("x");
    tui.wait_for("'second' stopped", deadline, |s| {
        s.lines()
            .any(|l| l.contains(" second ") && l.contains("stopped"))
            && s.contains("second: stop done")
    });
    tui.key("s");
    tui.wait_for("'second' running again", deadline, |s| {
        row_running(s, "second") && s.contains("second: start done")
    });

    // 6. The daemon goes away: the TUI says so.
    stop.store(true, Ordering::Relaxed);
    let _ = nymd.0.kill();
    let _ = nymd.0.wait();
    let _ = traffic.join();
    // Its rows no longer claim a state.
    tui.wait_for("the daemon gone", deadline, |s| {
        (s.contains("reconnecting in") || s.contains("retrying in"))
            && s.lines()
                .any(|l| l.contains(" default ") && l.contains("unknown"))
            && !row_running(s, "default")
    });

    // 7. Quit: exit 0, terminal restored.
    tui.key("q");
    let status = loop {
        if let Ok(Some(s)) = tui.proc.0.try_wait() {
            break s;
        }
        assert!(Instant::now() < deadline, "nym-tui did not exit on q");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "nym-tui exited with {status}");
    // Let the reader take the last bytes.
    std::thread::sleep(Duration::from_millis(200));
    {
        let parser = tui.screen.lock().unwrap_or_else(|p| p.into_inner());
        assert!(
            !parser.screen().alternate_screen(),
            "left the alternate screen"
        );
        assert!(!parser.screen().hide_cursor(), "cursor shown again");
    }
    let termios = tcgetattr(&tui.slave).expect("tcgetattr");
    assert!(
        termios
            .local_flags
            .contains(LocalFlags::ICANON | LocalFlags::ECHO),
        "raw mode is off again: {:?}",
        termios.local_flags
    );
}
