//! systemd's notification protocol (`sd_notify(3)`), written out: no
//! libsystemd, no crate.
//!
//! The service manager passes a datagram socket in `NOTIFY_SOCKET`: a path
//! (`/run/systemd/notify`) or, when it starts with `@`, a name in Linux's
//! abstract socket namespace. Each notification is one datagram of
//! newline-separated `KEY=VALUE` assignments (`READY=1`, `STATUS=...`,
//! `WATCHDOG=1`, `RELOADING=1`, `STOPPING=1`). systemd reads the sender's pid
//! from the datagram's credentials, so with `NotifyAccess=main` only the
//! daemon's main process may notify; every thread of it qualifies.
//!
//! Without `NOTIFY_SOCKET` every call here is a no-op, so the daemon behaves
//! the same by hand, under another supervisor, or in tests.
//!
//! Why not the `sd-notify` crate (0.5.0, the latest, checked against it):
//! 1. it `connect()`s to `NOTIFY_SOCKET` as a file path, so an abstract
//!    `@name` socket, which `sd_notify(3)` documents and older systemd
//!    (v208's `@/org/freedesktop/systemd1/notify`) and test harnesses
//!    use, fails with `ENOENT`:
//!    `READY=1` never arrives and systemd kills the daemon at its start
//!    timeout (`daemon/tests/systemd.rs` uses such a socket);
//! 2. `notify()` has no send timeout: when the manager's queue is full it
//!    blocks the calling thread (here a tokio worker) for as long as that
//!    lasts; [`Notifier`] gives up after 1 s and logs it;
//! 3. `watchdog_enabled()` returns `Some(0)` for `WATCHDOG_USEC=0`, which
//!    libsystemd treats as "no watchdog" and on which
//!    `tokio::time::interval` panics ([`parse_watchdog`] returns `None`).

use std::ffi::OsStr;
use std::io;
use std::os::linux::net::SocketAddrExt as _;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::PathBuf;
use std::time::Duration;

/// How long one notification may block when systemd's queue is full.
const SEND_TIMEOUT: Duration = Duration::from_secs(1);

/// Errors reading `NOTIFY_SOCKET`.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The variable names neither a path nor an abstract socket.
    #[error("NOTIFY_SOCKET={0:?} is neither an absolute path nor an @abstract name")]
    BadAddress(String),
    /// The local datagram socket could not be created.
    #[error("cannot create the notification socket: {0}")]
    Socket(#[source] io::Error),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Path(PathBuf),
    Abstract(Vec<u8>),
}

/// A connection to the service manager's notification socket, or nothing.
#[derive(Debug)]
pub struct Notifier {
    inner: Option<(UnixDatagram, Target)>,
}

impl Notifier {
    /// A notifier that sends nothing.
    pub fn disabled() -> Self {
        Self { inner: None }
    }

    /// From the process environment (`NOTIFY_SOCKET`). An unusable value is
    /// logged and gives a disabled notifier: the daemon still runs, and
    /// systemd reports the missing `READY=1` itself.
    pub fn from_env() -> Self {
        let value = std::env::var_os("NOTIFY_SOCKET");
        match Self::from_value(value.as_deref()) {
            Ok(n) => n,
            Err(e) => {
                tracing::error!("{e}; not notifying systemd");
                Self::disabled()
            }
        }
    }

    /// From a `NOTIFY_SOCKET` value; `None` or empty gives a disabled
    /// notifier.
    pub fn from_value(value: Option<&OsStr>) -> Result<Self, NotifyError> {
        let Some(value) = value.filter(|v| !v.is_empty()) else {
            return Ok(Self::disabled());
        };
        let bytes = value.as_bytes();
        let target = match bytes.first() {
            Some(b'@') => Target::Abstract(bytes[1..].to_vec()),
            Some(b'/') => Target::Path(PathBuf::from(value)),
            _ => {
                return Err(NotifyError::BadAddress(
                    value.to_string_lossy().into_owned(),
                ))
            }
        };
        let socket = UnixDatagram::unbound().map_err(NotifyError::Socket)?;
        socket
            .set_write_timeout(Some(SEND_TIMEOUT))
            .map_err(NotifyError::Socket)?;
        Ok(Self {
            inner: Some((socket, target)),
        })
    }

    /// Whether a service manager listens.
    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Send one notification: `KEY=VALUE` lines. Errors are returned (and
    /// mean systemd will not see it); with no manager this is `Ok`.
    pub fn notify(&self, message: &str) -> io::Result<()> {
        let Some((socket, target)) = &self.inner else {
            return Ok(());
        };
        let sent = match target {
            Target::Path(p) => socket.send_to(message.as_bytes(), p)?,
            Target::Abstract(name) => {
                let addr = SocketAddr::from_abstract_name(name)?;
                socket.send_to_addr(message.as_bytes(), &addr)?
            }
        };
        if sent != message.len() {
            return Err(io::Error::other("notification datagram truncated"));
        }
        Ok(())
    }

    /// [`Notifier::notify`], logging a failure instead of returning it.
    fn send(&self, message: &str) {
        if let Err(e) = self.notify(message) {
            tracing::warn!("cannot notify systemd ({}): {e}", first_key(message));
        }
    }

    /// `READY=1` with a status line.
    pub fn ready(&self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={}", one_line(status)));
    }

    /// `STATUS=...`.
    pub fn status(&self, status: &str) {
        self.send(&format!("STATUS={}", one_line(status)));
    }

    /// `WATCHDOG=1`: the daemon's loops answered their health check.
    pub fn watchdog(&self) {
        self.send("WATCHDOG=1");
    }

    /// `RELOADING=1` with the `MONOTONIC_USEC=` that systemd 253+ wants
    /// (older versions ignore it). Follow with [`Notifier::ready`].
    pub fn reloading(&self) {
        self.send(&format!(
            "RELOADING=1\nMONOTONIC_USEC={}\nSTATUS=reloading the configuration",
            monotonic_usec()
        ));
    }

    /// `STOPPING=1`.
    pub fn stopping(&self) {
        self.send("STOPPING=1\nSTATUS=shutting down");
    }
}

fn first_key(message: &str) -> &str {
    message.split(['\n', '=']).next().unwrap_or(message)
}

/// A status value must not contain a newline (it would start a new key).
fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

/// `CLOCK_MONOTONIC` in microseconds, as systemd's `MONOTONIC_USEC=` wants.
pub fn monotonic_usec() -> u64 {
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC) {
        Ok(ts) => {
            let secs = u64::try_from(ts.tv_sec()).unwrap_or(0);
            let nanos = u64::try_from(ts.tv_nsec()).unwrap_or(0);
            secs.saturating_mul(1_000_000).saturating_add(nanos / 1_000)
        }
        Err(_) => 0,
    }
}

/// The watchdog interval systemd asks for (`WATCHDOG_USEC`), if it is
/// meant for this process (`WATCHDOG_PID` unset or ours).
pub fn watchdog_from_env() -> Option<Duration> {
    let usec = std::env::var("WATCHDOG_USEC").ok();
    let pid = std::env::var("WATCHDOG_PID").ok();
    parse_watchdog(usec.as_deref(), pid.as_deref(), std::process::id())
}

/// [`watchdog_from_env`] on given values.
pub fn parse_watchdog(usec: Option<&str>, pid: Option<&str>, own_pid: u32) -> Option<Duration> {
    if let Some(pid) = pid {
        if pid.trim().parse::<u32>().ok() != Some(own_pid) {
            return None;
        }
    }
    let usec: u64 = usec?.trim().parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_socket_means_silence() {
        let n = Notifier::from_value(None).expect("none");
        assert!(!n.is_enabled());
        n.notify("READY=1").expect("no-op");
        let n = Notifier::from_value(Some(OsStr::new(""))).expect("empty");
        assert!(!n.is_enabled());
    }

    #[test]
    fn relative_paths_are_refused() {
        assert!(Notifier::from_value(Some(OsStr::new("run/notify"))).is_err());
    }

    #[test]
    fn sends_to_a_path_socket() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("notify");
        let rx = UnixDatagram::bind(&path).expect("bind");
        let n = Notifier::from_value(Some(path.as_os_str())).expect("notifier");
        n.ready("2 identities:\nboth connected");
        let mut buf = [0u8; 256];
        let len = rx.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..len], b"READY=1\nSTATUS=2 identities: both connected");
    }

    #[test]
    fn sends_to_an_abstract_socket() {
        let name = format!("nymd-notify-test-{}", rand::random::<u64>());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).expect("addr");
        let rx = UnixDatagram::bind_addr(&addr).expect("bind");
        let n = Notifier::from_value(Some(OsStr::new(&format!("@{name}")))).expect("notifier");
        n.watchdog();
        n.reloading();
        let mut buf = [0u8; 256];
        let len = rx.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..len], b"WATCHDOG=1");
        let len = rx.recv(&mut buf).expect("recv");
        let text = String::from_utf8_lossy(&buf[..len]);
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("RELOADING=1"));
        let usec: u64 = lines
            .next()
            .and_then(|l| l.strip_prefix("MONOTONIC_USEC="))
            .and_then(|v| v.parse().ok())
            .expect("MONOTONIC_USEC");
        assert!(usec > 0);
    }

    #[test]
    fn watchdog_settings() {
        let d = |us| Some(Duration::from_micros(us));
        assert_eq!(parse_watchdog(Some("30000000"), None, 7), d(30_000_000));
        assert_eq!(
            parse_watchdog(Some("30000000"), Some("7"), 7),
            d(30_000_000)
        );
        assert_eq!(parse_watchdog(Some("30000000"), Some("8"), 7), None);
        assert_eq!(parse_watchdog(Some("0"), None, 7), None);
        assert_eq!(parse_watchdog(Some("soon"), None, 7), None);
        assert_eq!(parse_watchdog(None, None, 7), None);
    }
}
