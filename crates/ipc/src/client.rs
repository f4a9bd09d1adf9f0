//! A small async client of the control socket, used by `nymctl` and
//! `nym-tui`.
//!
//! It does the handshake and matches responses to requests; everything that
//! arrives while waiting for a response (events of a subscription) is handed
//! to a callback, so one connection can watch progress while a request runs.

use std::io;
use std::path::{Path, PathBuf};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::UnixStream;

use crate::codec::{read_message, write_message, FrameError, DEFAULT_MAX_FRAME_LEN};
use crate::{
    ClientMessage, ErrorCode, Hello, IpcError, Request, RequestBody, ResponseBody, ServerMessage,
    Welcome, PROTOCOL_VERSION,
};

/// Errors of the client.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket could not be reached.
    #[error("cannot connect to nymd at {}: {source}", path.display())]
    Connect {
        /// The socket path.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The daemon answered with an error (or refused the connection).
    #[error(transparent)]
    Remote(#[from] IpcError),
    /// Framing or decoding failed.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The daemon closed the connection.
    #[error("nymd closed the connection")]
    Closed,
    /// The daemon sent something out of protocol.
    #[error("unexpected message from nymd: {0}")]
    Unexpected(String),
}

impl ClientError {
    /// The daemon is not running at that path (no socket file, or nobody
    /// listening on it).
    pub fn is_daemon_down(&self) -> bool {
        matches!(self, Self::Connect { source, .. }
            if matches!(source.kind(), io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused))
    }

    /// The error code, if the daemon sent one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Self::Remote(e) => Some(e.code),
            _ => None,
        }
    }
}

/// A connection that completed the handshake.
#[derive(Debug)]
pub struct Client<S = UnixStream> {
    stream: S,
    welcome: Welcome,
    next_id: u64,
    max_frame_len: u32,
}

impl Client<UnixStream> {
    /// Connect to the socket at `path` and do the handshake.
    pub async fn connect(path: &Path, client_name: &str) -> Result<Self, ClientError> {
        let stream = UnixStream::connect(path)
            .await
            .map_err(|source| ClientError::Connect {
                path: path.to_path_buf(),
                source,
            })?;
        Self::handshake(stream, client_name, PROTOCOL_VERSION).await
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    /// Do the handshake on a connected stream, announcing
    /// `protocol_version` (normally [`PROTOCOL_VERSION`]; tests use others).
    pub async fn handshake(
        mut stream: S,
        client_name: &str,
        protocol_version: u32,
    ) -> Result<Self, ClientError> {
        let hello = ClientMessage::Hello(Hello {
            protocol_version,
            client_name: client_name.to_owned(),
        });
        write_message(&mut stream, &hello, DEFAULT_MAX_FRAME_LEN).await?;
        let reply: Option<ServerMessage> = read_message(&mut stream, DEFAULT_MAX_FRAME_LEN).await?;
        match reply {
            Some(ServerMessage::Welcome(welcome)) => Ok(Self {
                stream,
                welcome,
                next_id: 1,
                max_frame_len: DEFAULT_MAX_FRAME_LEN,
            }),
            Some(ServerMessage::Error(e)) => Err(ClientError::Remote(e)),
            Some(other) => Err(ClientError::Unexpected(format!("{other:?}"))),
            None => Err(ClientError::Closed),
        }
    }

    /// What the daemon said in its welcome.
    pub fn welcome(&self) -> &Welcome {
        &self.welcome
    }

    /// Send a request without waiting; returns its id.
    pub async fn send(&mut self, body: RequestBody) -> Result<u64, ClientError> {
        let id = self.next_id;
        self.next_id += 1;
        let msg = ClientMessage::Request(Request { id, body });
        write_message(&mut self.stream, &msg, self.max_frame_len).await?;
        Ok(id)
    }

    /// The next message from the daemon; `Ok(None)` when it closed the
    /// connection cleanly.
    pub async fn next_message(&mut self) -> Result<Option<ServerMessage>, ClientError> {
        Ok(read_message(&mut self.stream, self.max_frame_len).await?)
    }

    /// Send a request and wait for its response. Other messages that arrive
    /// meanwhile go to `on_other`.
    pub async fn request_with(
        &mut self,
        body: RequestBody,
        mut on_other: impl FnMut(ServerMessage),
    ) -> Result<ResponseBody, ClientError> {
        let id = self.send(body).await?;
        loop {
            match self.next_message().await? {
                Some(ServerMessage::Response(resp)) if resp.id == id => {
                    return resp.result.map_err(ClientError::Remote)
                }
                Some(ServerMessage::Error(e)) => return Err(ClientError::Remote(e)),
                Some(other) => on_other(other),
                None => return Err(ClientError::Closed),
            }
        }
    }

    /// Send a request and wait for its response, dropping anything else.
    pub async fn request(&mut self, body: RequestBody) -> Result<ResponseBody, ClientError> {
        self.request_with(body, |_| {}).await
    }
}
