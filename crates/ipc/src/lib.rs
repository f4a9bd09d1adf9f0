//! nymd-ipc: the control plane between `nymd` and its clients (`nymctl`,
//! `nym-tui`).
//!
//! It owns the messages exchanged over the Unix control socket and their
//! codec: frames of a u32 big-endian length and a MessagePack body with named
//! fields. These are the only serde types that cross that socket; the daemon
//! converts its internal state to them at the edge. This crate knows nothing
//! of the daemon or the mixnet.
//!
//! # Layout
//! - [`messages`]: `Hello`/`Welcome`, requests, responses, errors, events.
//! - [`codec`]: the frame codec: a sans-IO [`codec::FrameDecoder`] and async
//!   read/write helpers over tokio's `AsyncRead`/`AsyncWrite`.
//! - [`client`]: a small async client (connect, handshake, request, stream).

pub mod client;
pub mod codec;
pub mod messages;

use std::path::{Path, PathBuf};

pub use messages::*;

/// Version of the control protocol. A client and a daemon with different
/// versions refuse each other with [`ErrorCode::VersionMismatch`]; additions
/// that older peers can ignore do not bump it (see [`messages`]).
pub const PROTOCOL_VERSION: u32 = 1;

/// Feature string in [`Welcome::features`]: the daemon understands
/// [`RequestBody::Access`].
pub const FEATURE_ACCESS: &str = "access";

/// Feature string in [`Welcome::features`]: the daemon understands
/// [`RequestBody::Socks5`] and [`InitRequest::socks5`].
pub const FEATURE_SOCKS5: &str = "socks5";

/// Default control socket of a daemon running as root.
pub const SYSTEM_SOCKET: &str = "/run/nymd/nymd.sock";

/// The default socket path: [`SYSTEM_SOCKET`] as root, else
/// `$XDG_RUNTIME_DIR/nymd/nymd.sock`; `None` when not root and
/// `XDG_RUNTIME_DIR` is unset or empty.
pub fn default_socket_path(is_root: bool, xdg_runtime_dir: Option<&Path>) -> Option<PathBuf> {
    if is_root {
        return Some(PathBuf::from(SYSTEM_SOCKET));
    }
    xdg_runtime_dir
        .filter(|d| !d.as_os_str().is_empty())
        .map(|d| d.join("nymd").join("nymd.sock"))
}

/// The error a daemon sends to a client of another protocol version.
pub fn version_mismatch(client_name: &str, client_version: u32, daemon_version: &str) -> IpcError {
    let (what, hint) = if client_version > PROTOCOL_VERSION {
        (
            "the client is newer than the daemon",
            "upgrade nymd to the version of the client and restart it (`sudo systemctl restart nymd`), or use the client that came with this nymd",
        )
    } else {
        (
            "the client is older than the daemon",
            "upgrade the client to the version of nymd; if you just upgraded nymd, the old client is still on your PATH",
        )
    };
    IpcError::new(
        ErrorCode::VersionMismatch,
        format!(
            "control protocol version mismatch: {client_name} speaks version {client_version}, \
             nymd {daemon_version} speaks version {PROTOCOL_VERSION} ({what})"
        ),
    )
    .with_hint(hint)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_socket_paths() {
        assert_eq!(
            default_socket_path(true, Some(Path::new("/run/user/1000"))),
            Some(PathBuf::from("/run/nymd/nymd.sock"))
        );
        assert_eq!(
            default_socket_path(false, Some(Path::new("/run/user/1000"))),
            Some(PathBuf::from("/run/user/1000/nymd/nymd.sock"))
        );
        assert_eq!(default_socket_path(false, Some(Path::new(""))), None);
        assert_eq!(default_socket_path(false, None), None);
    }

    #[test]
    fn version_mismatch_says_what_to_do() {
        let e = version_mismatch("nymctl 0.2.0", PROTOCOL_VERSION + 1, "0.1.0");
        assert_eq!(e.code, ErrorCode::VersionMismatch);
        assert!(e.message.contains("newer"), "{}", e.message);
        assert!(e.hint.as_deref().unwrap_or("").contains("restart"));
    }
}
