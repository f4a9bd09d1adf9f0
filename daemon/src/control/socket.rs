//! Creating the control socket: folder, stale-socket probe, mode and group.
//!
//! The socket file gets its mode from the process umask at `bind()` time:
//! [`bind`] sets the umask for the duration of the call and restores it, so
//! the file never exists with a wider mode (a `chmod` after `bind` leaves a
//! window where anyone can connect; yggdrasil and tailscale had that race).
//!
//! Why tokio's `UnixListener` and not `interprocess`: nymd is Linux-only, so
//! interprocess's portable names add nothing; tokio's stream already gives
//! the peer's credentials (`peer_cred`, SO_PEERCRED); interprocess's
//! `mode()` is an `fchmod` before `bind`, which Linux still narrows by the
//! umask (`unix_bind` uses `i_mode & ~umask`), so under systemd's
//! `UMask=0077` the socket would come out 0600 and the umask has to be set
//! anyway; and its name reclamation unlinks an existing file instead of
//! probing it. One dependency less on a 2-core build.
//!
//! The umask is process-wide. While [`bind`] runs, a file or folder created
//! by another thread gets the socket's umask too (e.g. a 0700 folder would
//! come out 0600). Call [`bind`] at start-up, before the daemon starts
//! creating identities; every umask change in nymd goes through
//! [`UMASK_LOCK`].

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nix::sys::stat::{umask, Mode};
use nix::unistd::{Gid, Group};

/// Serialises umask changes within the process.
pub static UMASK_LOCK: Mutex<()> = Mutex::new(());

/// Default name of the operator group.
pub const DEFAULT_GROUP: &str = "nymd";

/// How to create the socket.
#[derive(Debug, Clone)]
pub struct SocketOptions {
    /// The socket path.
    pub path: PathBuf,
    /// Permission bits of the socket file. 0660: owner and group may
    /// connect. 0666 lets everyone connect (non-members get the observe tier).
    pub mode: u32,
    /// Group that owns the socket (and a folder we create), if it exists.
    pub group: Option<String>,
}

impl SocketOptions {
    /// Mode 0660, group `nymd`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            mode: 0o660,
            group: Some(DEFAULT_GROUP.to_owned()),
        }
    }
}

/// Why the socket could not be created.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    /// Another daemon answers on the socket.
    #[error("another nymd is already running on {}", path.display())]
    AlreadyRunning {
        /// The socket path.
        path: PathBuf,
    },
    /// Something other than a socket is at the path.
    #[error("{} exists and is not a socket; remove it or choose another --socket", path.display())]
    NotASocket {
        /// The path.
        path: PathBuf,
    },
    /// The folder can be written by anyone, so anyone could replace the
    /// socket.
    #[error("{} is writable by others; fix with: chmod o-w {}", path.display(), path.display())]
    InsecureDir {
        /// The folder.
        path: PathBuf,
    },
    /// A filesystem or socket call failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What we were doing.
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> SocketError + 'a {
    move |source| SocketError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// A bound control socket. Dropping it removes the socket file, if the file
/// is still the one we created.
#[derive(Debug)]
pub struct BoundSocket {
    listener: Option<std::os::unix::net::UnixListener>,
    /// A duplicate of the listening socket, held until drop. It keeps our
    /// socket inode referenced (so its number cannot be reused by a
    /// successor's file) and keeps the socket answering probes, so no
    /// second daemon takes the path over while this one lives.
    _keepalive: std::os::unix::net::UnixListener,
    path: PathBuf,
    /// Device and inode of our socket file, to never remove a successor's.
    identity: (u64, u64),
}

impl BoundSocket {
    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The tokio listener. Must be called inside a tokio runtime; can be
    /// taken once.
    pub fn take_listener(&mut self) -> io::Result<tokio::net::UnixListener> {
        let std = self
            .listener
            .take()
            .ok_or_else(|| io::Error::other("listener already taken"))?;
        std.set_nonblocking(true)?;
        tokio::net::UnixListener::from_std(std)
    }
}

impl Drop for BoundSocket {
    fn drop(&mut self) {
        if let Ok(meta) = fs::symlink_metadata(&self.path) {
            if (meta.dev(), meta.ino()) == self.identity {
                let _ = fs::remove_file(&self.path);
            }
        }
    }
}

/// Look up a group by name; `None` if it does not exist.
pub fn lookup_group(name: &str) -> Option<Gid> {
    match Group::from_name(name) {
        Ok(Some(g)) => Some(g.gid),
        Ok(None) => None,
        Err(e) => {
            tracing::warn!("cannot look up group {name}: {e}");
            None
        }
    }
}

/// Create the control socket as described in the module docs.
pub fn bind(opts: &SocketOptions) -> Result<BoundSocket, SocketError> {
    let path = &opts.path;
    let gid = opts.group.as_deref().and_then(lookup_group);
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    prepare_dir(dir, opts.mode, gid)?;
    remove_stale(path)?;

    let listener = {
        let _guard = UMASK_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        let old = umask(Mode::from_bits_truncate(!opts.mode & 0o777));
        let result = std::os::unix::net::UnixListener::bind(path);
        umask(old);
        result.map_err(io_err("cannot bind the control socket", path))?
    };
    let meta = fs::symlink_metadata(path).map_err(io_err("cannot stat", path))?;
    let keepalive = listener
        .try_clone()
        .map_err(io_err("cannot duplicate the control socket", path))?;
    let bound = BoundSocket {
        listener: Some(listener),
        _keepalive: keepalive,
        path: path.clone(),
        identity: (meta.dev(), meta.ino()),
    };
    if let Some(gid) = gid {
        if meta.gid() != gid.as_raw() {
            if let Err(e) = nix::unistd::chown(path, None, Some(gid)) {
                tracing::warn!(
                    "cannot give {} to group {}: {e}; only the daemon's user can operate",
                    path.display(),
                    opts.group.as_deref().unwrap_or_default()
                );
            }
        }
    }
    tracing::info!(
        socket = %path.display(),
        mode = format_args!("{:o}", meta.permissions().mode() & 0o777),
        "control socket listening"
    );
    Ok(bound)
}

/// Create the socket's folder if missing (0750 with the operator group, or
/// 0755 when there is no group or everyone may connect); refuse an existing
/// folder that others can write without the sticky bit.
fn prepare_dir(dir: &Path, socket_mode: u32, gid: Option<Gid>) -> Result<(), SocketError> {
    match fs::metadata(dir) {
        Ok(meta) => {
            let mode = meta.permissions().mode();
            if mode & 0o002 != 0 && mode & 0o1000 == 0 {
                return Err(SocketError::InsecureDir {
                    path: dir.to_path_buf(),
                });
            }
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let mode = if gid.is_some() && socket_mode & 0o007 == 0 {
                0o750
            } else {
                0o755
            };
            let created = {
                // The folder mode must not be narrowed by the umask either.
                let _guard = UMASK_LOCK.lock().unwrap_or_else(|p| p.into_inner());
                let old = umask(Mode::from_bits_truncate(0o022));
                let r = fs::DirBuilder::new().recursive(true).mode(mode).create(dir);
                umask(old);
                r
            };
            created.map_err(io_err("cannot create the socket folder", dir))?;
            if let Some(gid) = gid {
                if let Err(e) = nix::unistd::chown(dir, None, Some(gid)) {
                    tracing::warn!("cannot give {} to the operator group: {e}", dir.display());
                }
            }
            Ok(())
        }
        Err(e) => Err(io_err("cannot stat the socket folder", dir)(e)),
    }
}

/// A socket file left by a daemon that died is removed; one that answers
/// belongs to a running daemon and is an error.
fn remove_stale(path: &Path) -> Result<(), SocketError> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err("cannot stat", path)(e)),
    };
    if !meta.file_type().is_socket() {
        return Err(SocketError::NotASocket {
            path: path.to_path_buf(),
        });
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(SocketError::AlreadyRunning {
            path: path.to_path_buf(),
        }),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            tracing::info!("removing stale control socket {}", path.display());
            fs::remove_file(path).map_err(io_err("cannot remove the stale socket", path))
        }
        Err(e) => Err(io_err("cannot probe the existing socket", path)(e)),
    }
}
