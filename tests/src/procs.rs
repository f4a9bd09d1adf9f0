//! Running the workspace's binaries (`nymd`, `nymctl`) as real processes.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// Path of a workspace binary next to the test executable
/// (`target/<profile>/NAME`), building it if `cargo test` has not yet.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target profile dir")
        .to_path_buf();
    let path = dir.join(name);
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--bin", name])
            .status()
            .expect("run cargo build");
        assert!(status.success(), "cargo build --bin {name} failed");
    }
    path
}

/// A `nymd` process, killed on drop if still running.
#[derive(Debug)]
pub struct Daemon {
    /// The process.
    pub child: Child,
    /// Its control socket.
    pub socket: PathBuf,
}

impl Daemon {
    /// Spawn `nymd` with `args`, stderr to `log`.
    pub fn spawn(socket: &Path, args: &[&str], log: &Path) -> Self {
        let log = std::fs::File::create(log).expect("log file");
        let child = Command::new(bin("nymd"))
            .args(args)
            .arg("--socket")
            .arg(socket)
            .env_remove("NYMD_CONFIG")
            .env_remove("NYMD_STATE_DIR")
            .env_remove("NYMD_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn nymd");
        Self {
            child,
            socket: socket.to_path_buf(),
        }
    }

    /// Wait until `nymctl daemon info` answers.
    pub fn wait_ready(&mut self, deadline: Duration) {
        let start = std::time::Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("nymd exited early: {status}");
            }
            if nymctl(&self.socket, &["daemon", "info"]).status.success() {
                return;
            }
            assert!(start.elapsed() < deadline, "nymd not ready in {deadline:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Send SIGTERM and wait (bounded) for the exit status.
    pub fn terminate(&mut self, deadline: Duration) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        self.wait_exit(deadline)
    }

    /// Wait (bounded) for the process to exit.
    pub fn wait_exit(&mut self, deadline: Duration) -> std::process::ExitStatus {
        let start = std::time::Instant::now();
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                return s;
            }
            assert!(
                start.elapsed() < deadline,
                "nymd did not exit in {deadline:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Run `nymctl --socket SOCKET ARGS…` and collect its output.
pub fn nymctl(socket: &Path, args: &[&str]) -> Output {
    Command::new(bin("nymctl"))
        .arg("--socket")
        .arg(socket)
        .args(args)
        .env_remove("NYMD_SOCKET")
        .stdin(Stdio::null())
        .output()
        .expect("run nymctl")
}

/// Run nymctl and parse its `--json` stdout; panics with stderr on failure.
pub fn nymctl_json(socket: &Path, args: &[&str]) -> serde_json::Value {
    let mut all: Vec<&str> = args.to_vec();
    all.push("--json");
    let out = nymctl(socket, &all);
    assert!(
        out.status.success(),
        "nymctl {args:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("nymctl --json prints JSON")
}

/// A fast nymd config (no cover traffic, no delays, identities from a free
/// port) written to `dir/nymd.toml`, with `extra_traffic` lines appended to
/// its `[identities.traffic]` section.
pub fn write_fast_config(dir: &Path, extra_traffic: &str) -> PathBuf {
    let cfg = dir.join("nymd.toml");
    std::fs::write(
        &cfg,
        format!(
            "[identities]\nfirst_port = {}\n\n[identities.traffic]\ndisable_cover_traffic = true\ndisable_delays = true\n{extra_traffic}",
            crate::free_port()
        ),
    )
    .expect("config");
    cfg
}

/// One nymd installation (config, state dir, socket under `dir`) started
/// and stopped as often as a test likes; each run logs to
/// `dir/nymd-<run>.log`.
#[derive(Debug)]
pub struct NymdHarness {
    /// Its control socket.
    pub socket: PathBuf,
    /// Where config, state and logs live.
    pub dir: PathBuf,
    args: Vec<String>,
    /// Runs started so far.
    pub runs: u32,
}

impl NymdHarness {
    /// `dir/nymd.toml` from [`write_fast_config`], `dir/state`, and the
    /// directory at `api`.
    pub fn new(dir: &Path, api: &str, extra_traffic: &str) -> Self {
        let cfg = write_fast_config(dir, extra_traffic);
        Self {
            socket: dir.join("nymd.sock"),
            dir: dir.to_path_buf(),
            args: vec![
                "--config".into(),
                cfg.display().to_string(),
                "--state-dir".into(),
                dir.join("state").display().to_string(),
                "--nym-api".into(),
                api.into(),
            ],
            runs: 0,
        }
    }

    /// Spawn a run without waiting for it.
    pub fn spawn(&mut self) -> Daemon {
        self.runs += 1;
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        Daemon::spawn(&self.socket, &args, &self.log(self.runs))
    }

    /// Spawn a run and wait until its control socket answers.
    pub async fn start(&mut self) -> Daemon {
        let d = self.spawn();
        tokio::task::spawn_blocking(move || {
            let mut d = d;
            d.wait_ready(crate::WAIT);
            d
        })
        .await
        .expect("join")
    }

    /// The log file of run `run`.
    pub fn log(&self, run: u32) -> PathBuf {
        self.dir.join(format!("nymd-{run}.log"))
    }

    /// `nymctl --json ARGS` against this daemon.
    pub async fn ctl(&self, args: &[&str]) -> serde_json::Value {
        let socket = self.socket.clone();
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        tokio::task::spawn_blocking(move || {
            let a: Vec<&str> = args.iter().map(String::as_str).collect();
            nymctl_json(&socket, &a)
        })
        .await
        .expect("join")
    }
}
