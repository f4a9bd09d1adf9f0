//! nymctl: the command-line client of the nymd control socket.
//!
//! # Layout
//! - [`cli`]: the clap command line and the exit codes.
//! - [`commands`]: one function per command: request, then print.
//! - [`output`]: tables and event lines for people.
//! - [`import`]: reading a nym-client folder for `nymctl import`.
//! - [`app`]: nymctl as an app on an identity's websocket port (`listen`,
//!   `reply`, `send --reply-surbs`).
//! - [`validate`]: argument values checked before connecting.
//!
//! The binary (`src/main.rs`) maps errors to the exit codes of
//! [`cli::exit`] and exits quietly when stdout is a closed pipe.

pub mod app;
pub mod cli;
pub mod commands;
pub mod import;
pub mod output;
pub mod validate;

use std::io;

use nymd_ipc::client::ClientError;
use nymd_ipc::ErrorCode;

/// An error with a chosen exit code and an optional hint.
#[derive(Debug)]
pub struct Failure {
    /// Exit code (see [`cli::exit`]).
    pub exit: u8,
    /// Stable error code for JSON output.
    pub code: &'static str,
    /// What went wrong.
    pub message: String,
    /// What to do.
    pub hint: Option<String>,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

impl Failure {
    /// A usage error (exit 2).
    pub fn usage(message: impl Into<String>, hint: Option<&str>) -> Self {
        Self {
            exit: cli::exit::USAGE,
            code: "Usage",
            message: message.into(),
            hint: hint.map(str::to_owned),
        }
    }
}

/// Turn any error into what the user sees: exit code, code, message, hint.
pub fn classify(err: &anyhow::Error, socket: Option<&std::path::Path>) -> Failure {
    if let Some(f) = err.downcast_ref::<Failure>() {
        return Failure {
            exit: f.exit,
            code: f.code,
            message: f.message.clone(),
            hint: f.hint.clone(),
        };
    }
    let sock = socket
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "the control socket".into());
    if let Some(ce) = err.downcast_ref::<ClientError>() {
        match ce {
            ClientError::Connect { source, .. } => {
                return match source.kind() {
                    io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => Failure {
                        exit: cli::exit::DAEMON_DOWN,
                        code: "DaemonNotRunning",
                        message: if source.kind() == io::ErrorKind::NotFound {
                            format!("nymd is not running: no control socket at {sock}")
                        } else {
                            format!("nymd is not running: nobody listens on {sock}")
                        },
                        hint: Some(
                            "start it (sudo systemctl start nymd, or run nymd); if it listens elsewhere, pass --socket or set NYMD_SOCKET"
                                .into(),
                        ),
                    },
                    io::ErrorKind::PermissionDenied => Failure {
                        exit: cli::exit::PERMISSION,
                        code: "PermissionDenied",
                        message: format!("permission denied on {sock}"),
                        hint: Some(
                            "operators are members of group nymd: sudo usermod -aG nymd $USER, then log in again"
                                .into(),
                        ),
                    },
                    _ => Failure {
                        exit: cli::exit::OTHER,
                        code: "Connect",
                        message: format!("cannot connect to nymd at {sock}: {source}"),
                        hint: None,
                    },
                };
            }
            ClientError::Remote(e) => {
                let exit = match e.code {
                    ErrorCode::PermissionDenied => cli::exit::PERMISSION,
                    ErrorCode::NotFound => cli::exit::NOT_FOUND,
                    ErrorCode::VersionMismatch => cli::exit::VERSION_MISMATCH,
                    // A value nymd refused (a bad name, address or key):
                    // a usage error, as when nymctl finds it itself.
                    ErrorCode::InvalidArgument => cli::exit::USAGE,
                    _ => cli::exit::OTHER,
                };
                return Failure {
                    exit,
                    code: code_name(e.code),
                    message: e.message.clone(),
                    hint: e.hint.clone(),
                };
            }
            _ => {}
        }
    }
    Failure {
        exit: cli::exit::OTHER,
        code: "Error",
        message: format!("{err:#}"),
        hint: None,
    }
}

fn code_name(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::NotFound => "NotFound",
        ErrorCode::AlreadyExists => "AlreadyExists",
        ErrorCode::PortInUse => "PortInUse",
        ErrorCode::PermissionDenied => "PermissionDenied",
        ErrorCode::InvalidArgument => "InvalidArgument",
        ErrorCode::VersionMismatch => "VersionMismatch",
        ErrorCode::Unavailable => "Unavailable",
        ErrorCode::InvalidState => "InvalidState",
        ErrorCode::ProtocolError => "ProtocolError",
        ErrorCode::Internal => "Internal",
        ErrorCode::Unknown => "Unknown",
    }
}

/// Whether the error is a write to a closed pipe (`nymctl … | head`).
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
    })
}
