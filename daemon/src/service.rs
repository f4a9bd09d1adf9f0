//! Running under systemd (`Type=notify`): readiness, the status line, the
//! watchdog, reload and stop, over [`crate::notify`].
//!
//! # When nymd says `READY=1`
//! Only when both hold:
//! 1. the control socket answers: the daemon connects to its own socket and
//!    completes the protocol handshake (`Hello` → `Welcome`), so
//!    `systemctl start nymd && nymctl list` never races;
//! 2. every enabled identity has been *started*: its runner was spawned and
//!    its first connection attempt has finished, connected or failed (a
//!    failed identity keeps retrying in the background; that is its state,
//!    not the daemon's). An attempt that hangs (a gateway that does not
//!    answer) is not waited for longer than [`READY_WAIT`]: the daemon then
//!    says `READY=1` anyway and the status line names what is still
//!    connecting, well inside systemd's default start timeout of 90 s.
//!
//! # Status
//! `STATUS=3 identities: 2 connected, 1 reconnecting`, sent again whenever
//! an identity changes state, is added or is removed (`systemctl status`
//! shows it).
//!
//! # Watchdog
//! With `WatchdogSec=` systemd sets `WATCHDOG_USEC`; every half of it the
//! daemon pings its loops through their own channels (the control server's
//! accept loop, the manager's stats loop and every identity's runner, see
//! [`crate::health`]) and sends `WATCHDOG=1` only if all of them answered
//! within 40 % of the interval. A wedged loop therefore gets the daemon
//! restarted by systemd, while an idle or busy one does not.
//!
//! # Reload and stop
//! SIGHUP: `RELOADING=1` (with `MONOTONIC_USEC=`), the config file and every
//! identity's `config.toml` are read again ([`crate::manager::Manager::reload`]),
//! then `READY=1` with the outcome in the status line. SIGTERM: `STOPPING=1`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use crate::config::ConfigFile;
use crate::health::{self, Ping};
use crate::manager::{IdentityInfo, Manager, ManagerEvent, RunState};
use crate::notify::Notifier;

/// Longest wait for the first connection attempts before `READY=1`.
pub const READY_WAIT: Duration = Duration::from_secs(30);
/// How long the self-check of the control socket may take.
const SOCKET_CHECK: Duration = Duration::from_secs(10);
/// How often readiness is re-checked besides on events.
const READY_POLL: Duration = Duration::from_millis(250);

/// `3 identities: 2 connected, 1 reconnecting` (states with no identity
/// are left out; `broken` counts folders that failed to load).
pub fn status_line(identities: &[IdentityInfo], broken: usize) -> String {
    let count = |f: fn(&RunState) -> bool| identities.iter().filter(|i| f(&i.state)).count();
    let parts = [
        (count(|s| *s == RunState::Running), "connected"),
        (count(|s| *s == RunState::Starting), "connecting"),
        (count(|s| *s == RunState::Reconnecting), "reconnecting"),
        (count(|s| matches!(s, RunState::Failed { .. })), "failed"),
        (count(|s| *s == RunState::Stopped), "stopped"),
        (broken, "broken"),
    ];
    let detail: Vec<String> = parts
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect();
    match identities.len() {
        0 if broken == 0 => "no identities".to_owned(),
        1 => format!("1 identity: {}", detail.join(", ")),
        n => format!("{n} identities: {}", detail.join(", ")),
    }
}

/// The daemon's side of systemd supervision. Create it right after the
/// manager, before any identity starts, so it sees every first attempt.
#[derive(Debug)]
pub struct Supervisor {
    notifier: Arc<Notifier>,
    manager: Manager,
    events: broadcast::Receiver<ManagerEvent>,
    watchdog: Option<Duration>,
    /// Identities whose first connection attempt has finished.
    attempted: std::collections::HashSet<String>,
}

/// What the supervisor pings besides the manager.
#[derive(Debug, Clone)]
pub struct Loops {
    /// The control socket path, for the readiness self-check.
    pub control_socket: PathBuf,
    /// The control server's accept loop.
    pub control_pings: mpsc::Sender<Ping>,
}

impl Supervisor {
    /// Subscribe to `manager` now; `watchdog` is systemd's `WATCHDOG_USEC`.
    pub fn new(notifier: Arc<Notifier>, manager: Manager, watchdog: Option<Duration>) -> Self {
        let events = manager.subscribe();
        Self {
            notifier,
            manager,
            events,
            watchdog,
            attempted: Default::default(),
        }
    }

    /// Announce readiness, then keep the status line current and feed the
    /// watchdog until `cancel`.
    pub async fn run(mut self, loops: Loops, cancel: CancellationToken) {
        let watchdog_every = self.watchdog.map(|w| w / 2);
        let mut tick = tokio::time::interval(watchdog_every.unwrap_or(Duration::from_secs(3600)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

        // Readiness.
        self.notifier
            .status("starting: waiting for the control socket");
        let mut complained = false;
        loop {
            let answer = tokio::select! {
                _ = cancel.cancelled() => return,
                r = control_socket_answers(&loops.control_socket, SOCKET_CHECK) => r,
            };
            match answer {
                Ok(()) => break,
                Err(e) => {
                    // No READY=1 without a working socket: systemd's start
                    // timeout decides, as it should.
                    if !complained {
                        tracing::error!("the control socket does not answer yet: {e}");
                        self.notifier.status(&format!(
                            "starting: the control socket does not answer: {e}"
                        ));
                        complained = true;
                    }
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tokio::time::sleep(READY_POLL) => {}
                    }
                }
            }
        }
        let ready_by = tokio::time::Instant::now() + READY_WAIT;
        let mut poll = tokio::time::interval(READY_POLL);
        let mut starting = String::new();
        loop {
            let pending = self.pending_first_attempts();
            if pending.is_empty() {
                break;
            }
            if tokio::time::Instant::now() >= ready_by {
                tracing::warn!(
                    "ready while still connecting: {} (they keep trying)",
                    pending.join(", ")
                );
                break;
            }
            let line = format!(
                "starting: {} connecting ({})",
                pending.len(),
                pending.join(", ")
            );
            if line != starting {
                self.notifier.status(&line);
                starting = line;
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                ev = self.events.recv() => self.note(ev),
                _ = poll.tick() => {}
                _ = tick.tick(), if watchdog_every.is_some() => self.feed_watchdog(&loops).await,
            }
        }
        let mut status = self.status();
        self.notifier.ready(&status);
        tracing::info!("ready: {status}");

        // Status and watchdog.
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                ev = self.events.recv() => {
                    let relevant = !matches!(
                        ev,
                        Ok(ManagerEvent::Traffic { .. } | ManagerEvent::InitProgress { .. })
                    );
                    if matches!(ev, Err(broadcast::error::RecvError::Closed)) {
                        return;
                    }
                    if relevant {
                        let now = self.status();
                        if now != status {
                            self.notifier.status(&now);
                            status = now;
                        }
                    }
                }
                _ = tick.tick(), if watchdog_every.is_some() => self.feed_watchdog(&loops).await,
            }
        }
    }

    fn note(&mut self, ev: Result<ManagerEvent, broadcast::error::RecvError>) {
        if let Ok(ManagerEvent::State { id, state }) = ev {
            if state != RunState::Starting && state != RunState::Stopped {
                self.attempted.insert(id);
            }
        }
    }

    /// Enabled identities whose first connection attempt is still running.
    fn pending_first_attempts(&self) -> Vec<String> {
        self.manager
            .list()
            .into_iter()
            .filter(|i| {
                i.enabled && i.state == RunState::Starting && !self.attempted.contains(&i.id)
            })
            .map(|i| i.id)
            .collect()
    }

    fn status(&self) -> String {
        status_line(&self.manager.list(), self.manager.broken().len())
    }

    /// Ping every loop; `WATCHDOG=1` only if all answered.
    async fn feed_watchdog(&self, loops: &Loops) {
        let Some(interval) = self.watchdog else {
            return;
        };
        let deadline = interval.mul_f64(0.4);
        let (control, manager) = tokio::join!(
            health::ping(&loops.control_pings, deadline),
            self.manager.health_check(deadline),
        );
        let mut problems = manager.problems;
        if let Err(e) = control {
            problems.push(format!("the control server's accept loop: {e}"));
        }
        if problems.is_empty() {
            self.notifier.watchdog();
        } else {
            tracing::error!(
                "health check failed, not feeding systemd's watchdog: {}",
                problems.join("; ")
            );
        }
    }
}

/// Connect to our own control socket and complete the handshake.
pub async fn control_socket_answers(path: &Path, deadline: Duration) -> Result<(), String> {
    match tokio::time::timeout(
        deadline,
        nymd_ipc::client::Client::connect(path, "nymd (self-check)"),
    )
    .await
    {
        Ok(Ok(_client)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no handshake within {deadline:?}")),
    }
}

/// SIGHUP: read the config file and every identity again and apply the
/// difference. `current` is the config in force; it is replaced when the
/// new one is applied. Always ends with `READY=1`.
pub async fn reload(
    notifier: &Notifier,
    manager: &Manager,
    config_path: &Path,
    explicit: bool,
    current: &mut ConfigFile,
) {
    notifier.reloading();
    tracing::info!(config = %config_path.display(), "reloading");
    let new = match ConfigFile::load(config_path, explicit) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("reload failed, keeping the running configuration: {e}");
            notifier.ready(&format!(
                "reload failed ({e}); running with the previous configuration; {}",
                status_line(&manager.list(), manager.broken().len())
            ));
            return;
        }
    };
    for what in restart_only_changes(current, &new) {
        tracing::warn!(
            "{what} changed in {}: takes effect when nymd restarts",
            config_path.display()
        );
    }
    if new.identities != current.identities {
        tracing::info!("new [identities] defaults apply to identities created from now on");
        manager.set_defaults(new.identities.clone());
    }
    *current = new;
    let outcome = match manager.reload().await {
        Ok(report) => {
            for (id, error) in &report.failed {
                tracing::error!(identity = %id, "reload: {error}");
            }
            tracing::info!(
                restarted = ?report.restarted,
                added = ?report.added,
                removed = ?report.removed,
                "reloaded: {}",
                report.summary()
            );
            format!("reloaded: {}", report.summary())
        }
        Err(e) => {
            tracing::error!("reload failed: {e}");
            format!("reload failed: {e}")
        }
    };
    notifier.ready(&format!(
        "{outcome}; {}",
        status_line(&manager.list(), manager.broken().len())
    ));
}

/// Settings of the config file that a reload cannot apply.
fn restart_only_changes(old: &ConfigFile, new: &ConfigFile) -> Vec<&'static str> {
    let mut v = Vec::new();
    if old.daemon.state_dir != new.daemon.state_dir {
        v.push("[daemon] state_dir");
    }
    if old.daemon.socket != new.daemon.socket {
        v.push("[daemon] socket");
    }
    if old.daemon.log_level != new.daemon.log_level {
        v.push("[daemon] log_level");
    }
    if old.daemon.max_app_connections != new.daemon.max_app_connections {
        v.push("[daemon] max_app_connections");
    }
    if old.daemon.memory_budget_mib != new.daemon.memory_budget_mib {
        v.push("[daemon] memory_budget_mib");
    }
    if old.network != new.network {
        v.push("[network]");
    }
    if old.metrics != new.metrics {
        v.push("[metrics]");
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn info(id: &str, state: RunState) -> IdentityInfo {
        IdentityInfo {
            id: id.into(),
            address: String::new(),
            state,
            enabled: true,
            websocket: SocketAddr::from(([127, 0, 0, 1], 1977)),
            gateway_id: String::new(),
            gateway_listener: String::new(),
            connected_apps: 0,
            apps: Vec::new(),
            uptime: None,
            stats: None,
            inbox_messages: 0,
            inbox_bytes: (0, 0),
            daemon_memory: (0, 0),
            websocket_config: crate::store::WebsocketConfig::new([127, 0, 0, 1].into(), 1977, None),
            socks5: None,
            socks_stats: None,
        }
    }

    #[test]
    fn status_lines() {
        assert_eq!(status_line(&[], 0), "no identities");
        assert_eq!(status_line(&[], 1), "0 identities: 1 broken");
        assert_eq!(
            status_line(&[info("a", RunState::Running)], 0),
            "1 identity: 1 connected"
        );
        let three = [
            info("a", RunState::Running),
            info("b", RunState::Reconnecting),
            info("c", RunState::Running),
        ];
        assert_eq!(
            status_line(&three, 0),
            "3 identities: 2 connected, 1 reconnecting"
        );
        let mixed = [
            info("a", RunState::Starting),
            info("b", RunState::Failed { reason: "x".into() }),
            info("c", RunState::Stopped),
        ];
        assert_eq!(
            status_line(&mixed, 2),
            "3 identities: 1 connecting, 1 failed, 1 stopped, 2 broken"
        );
    }

    #[test]
    fn daemon_settings_need_a_restart() {
        let old = ConfigFile::default();
        let mut new = old.clone();
        assert!(restart_only_changes(&old, &new).is_empty());
        new.daemon.log_level = "debug".into();
        new.identities.first_port = 2000;
        assert_eq!(restart_only_changes(&old, &new), vec!["[daemon] log_level"]);
    }
}
