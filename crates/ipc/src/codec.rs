//! Frames: a u32 big-endian body length, then a MessagePack body.
//!
//! Bodies are written with named fields (`rmp_serde::to_vec_named`), so a
//! frame describes itself (any MessagePack tool can dump it) and a field
//! added later is skipped by an older reader.
//!
//! Guarantees, for the sans-IO [`FrameDecoder`] and the async
//! [`read_message`] alike:
//! - the length is checked against the cap as soon as the 4 header bytes are
//!   in, before any buffer for the body is reserved; the async reader also
//!   grows its buffer only as body bytes actually arrive, so a peer that
//!   announces a large frame and stalls costs nothing;
//! - the end of the stream between frames is a clean close (`Ok(None)`),
//!   anywhere inside a frame it is [`FrameError::Truncated`];
//! - a body that does not decode, or has bytes after the message, is an
//!   error, never a panic.

use std::io::Cursor;

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Size of the length prefix.
pub const HEADER_LEN: usize = 4;

/// Default cap on a frame body: 16 MiB. The largest legitimate frame is a
/// `Send` request carrying a message for the mixnet, or a topology summary
/// of a few thousand nodes; both are far below this.
pub const DEFAULT_MAX_FRAME_LEN: u32 = 16 * 1024 * 1024;

/// Deepest nesting accepted in a body. Our messages nest about ten levels;
/// rmp-serde's default (1024) recurses deep enough to overflow a 2 MiB
/// thread stack in a debug build on crafted input.
pub const MAX_DEPTH: usize = 64;

/// Errors of framing and decoding.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The announced body length is over the cap.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Announced length.
        len: u64,
        /// The cap.
        max: u32,
    },
    /// The stream ended inside a frame.
    #[error("connection closed in the middle of a frame ({got} of {expected} bytes)")]
    Truncated {
        /// Bytes of the frame (header included) that arrived.
        got: u64,
        /// Bytes the frame needed (header included; 4 while the header was
        /// incomplete).
        expected: u64,
    },
    /// The body is not a valid message.
    #[error("malformed message: {0}")]
    Decode(#[from] rmp_serde::decode::Error),
    /// The body has bytes after the message.
    #[error("malformed message: {0} bytes after the end of the message")]
    TrailingBytes(usize),
    /// The message could not be encoded (a bug, or a message over the cap).
    #[error("cannot encode message: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
    /// The socket failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl FrameError {
    /// The peer sent something that is not the protocol (as opposed to an
    /// I/O failure of our own).
    pub fn is_protocol_violation(&self) -> bool {
        matches!(
            self,
            Self::TooLarge { .. } | Self::Decode(_) | Self::TrailingBytes(_)
        )
    }
}

/// Encode `msg` as one frame (header and body).
pub fn encode_frame<T: Serialize>(msg: &T, max_frame_len: u32) -> Result<Vec<u8>, FrameError> {
    let mut frame = vec![0u8; HEADER_LEN];
    rmp_serde::encode::write_named(&mut frame, msg)?;
    let body_len = frame.len() - HEADER_LEN;
    let len = u32::try_from(body_len)
        .ok()
        .filter(|len| *len <= max_frame_len)
        .ok_or(FrameError::TooLarge {
            len: body_len as u64,
            max: max_frame_len,
        })?;
    frame[..HEADER_LEN].copy_from_slice(&len.to_be_bytes());
    Ok(frame)
}

/// Decode one message from a complete frame body.
pub fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, FrameError> {
    let mut cursor = Cursor::new(body);
    let msg = {
        let mut de = rmp_serde::Deserializer::new(&mut cursor);
        de.set_max_depth(MAX_DEPTH);
        T::deserialize(&mut de)?
    };
    let used = usize::try_from(cursor.position()).unwrap_or(usize::MAX);
    match body.len().checked_sub(used) {
        Some(0) => Ok(msg),
        Some(rest) => Err(FrameError::TrailingBytes(rest)),
        None => Err(FrameError::TrailingBytes(0)),
    }
}

/// A sans-IO frame decoder: feed it bytes as they arrive, poll messages out.
///
/// ```
/// use nymd_ipc::codec::{encode_frame, FrameDecoder, DEFAULT_MAX_FRAME_LEN};
/// let frame = encode_frame(&"hi", DEFAULT_MAX_FRAME_LEN).unwrap();
/// let mut dec = FrameDecoder::new(DEFAULT_MAX_FRAME_LEN);
/// dec.handle_bytes(&frame[..3]).unwrap();
/// assert_eq!(dec.poll_message::<String>().unwrap(), None);
/// dec.handle_bytes(&frame[3..]).unwrap();
/// assert_eq!(dec.poll_message::<String>().unwrap().as_deref(), Some("hi"));
/// dec.finish().unwrap(); // clean end: nothing half-read
/// ```
#[derive(Debug)]
pub struct FrameDecoder {
    max_frame_len: u32,
    /// Bytes received and not yet returned as frames.
    buf: Vec<u8>,
    /// Set once an oversized header was seen: the stream is unusable.
    failed: Option<(u64, u32)>,
}

impl FrameDecoder {
    /// A decoder that refuses bodies over `max_frame_len` bytes.
    pub fn new(max_frame_len: u32) -> Self {
        Self {
            max_frame_len,
            buf: Vec::new(),
            failed: None,
        }
    }

    /// Add received bytes. Fails as soon as a header announces a body over
    /// the cap; the body of an acceptable frame is buffered only as far as it
    /// has arrived.
    pub fn handle_bytes(&mut self, data: &[u8]) -> Result<(), FrameError> {
        self.check_failed()?;
        self.buf.extend_from_slice(data);
        self.check_header()
    }

    fn check_failed(&self) -> Result<(), FrameError> {
        match self.failed {
            Some((len, max)) => Err(FrameError::TooLarge { len, max }),
            None => Ok(()),
        }
    }

    /// Check the header at the front of the buffer, if complete.
    fn check_header(&mut self) -> Result<(), FrameError> {
        if let Some(len) = self.announced_len() {
            if len > self.max_frame_len {
                self.failed = Some((u64::from(len), self.max_frame_len));
                self.buf = Vec::new();
                self.check_failed()?;
            }
        }
        Ok(())
    }

    fn announced_len(&self) -> Option<u32> {
        let header: [u8; HEADER_LEN] = self.buf.get(..HEADER_LEN)?.try_into().ok()?;
        Some(u32::from_be_bytes(header))
    }

    /// The next complete frame body, if one is buffered.
    #[must_use = "a frame that is polled and dropped is lost"]
    pub fn poll_frame(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        self.check_failed()?;
        let Some(len) = self.announced_len() else {
            return Ok(None);
        };
        let end = HEADER_LEN + len as usize;
        if self.buf.len() < end {
            return Ok(None);
        }
        let body = self.buf[HEADER_LEN..end].to_vec();
        self.buf.drain(..end);
        self.check_header()?;
        Ok(Some(body))
    }

    /// The next complete message, if one is buffered.
    #[must_use = "a message that is polled and dropped is lost"]
    pub fn poll_message<T: DeserializeOwned>(&mut self) -> Result<Option<T>, FrameError> {
        match self.poll_frame()? {
            Some(body) => decode_body(&body).map(Some),
            None => Ok(None),
        }
    }

    /// No partial frame is buffered: the stream may end here cleanly.
    pub fn is_idle(&self) -> bool {
        self.buf.is_empty() && self.failed.is_none()
    }

    /// Call at the end of the stream: `Ok` if it ended between frames.
    pub fn finish(&self) -> Result<(), FrameError> {
        self.check_failed()?;
        if self.buf.is_empty() {
            return Ok(());
        }
        let expected = match self.announced_len() {
            Some(len) => HEADER_LEN as u64 + u64::from(len),
            None => HEADER_LEN as u64,
        };
        Err(FrameError::Truncated {
            got: self.buf.len() as u64,
            expected,
        })
    }
}

/// Read one frame body. `Ok(None)` on a clean end of stream (no byte of a
/// next frame arrived).
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    max_frame_len: u32,
) -> Result<Option<Vec<u8>>, FrameError> {
    let mut header = [0u8; HEADER_LEN];
    let mut got = 0;
    while got < HEADER_LEN {
        let n = reader.read(&mut header[got..]).await?;
        if n == 0 {
            if got == 0 {
                return Ok(None);
            }
            return Err(FrameError::Truncated {
                got: got as u64,
                expected: HEADER_LEN as u64,
            });
        }
        got += n;
    }
    let len = u32::from_be_bytes(header);
    if len > max_frame_len {
        return Err(FrameError::TooLarge {
            len: u64::from(len),
            max: max_frame_len,
        });
    }
    // Grow with the data, not with the announcement.
    let mut body = Vec::with_capacity((len as usize).min(64 * 1024));
    let read = (&mut *reader)
        .take(u64::from(len))
        .read_to_end(&mut body)
        .await?;
    if read < len as usize {
        return Err(FrameError::Truncated {
            got: (HEADER_LEN + read) as u64,
            expected: HEADER_LEN as u64 + u64::from(len),
        });
    }
    Ok(Some(body))
}

/// Read and decode one message. `Ok(None)` on a clean end of stream.
pub async fn read_message<R: AsyncRead + Unpin, T: DeserializeOwned>(
    reader: &mut R,
    max_frame_len: u32,
) -> Result<Option<T>, FrameError> {
    match read_frame(reader, max_frame_len).await? {
        Some(body) => decode_body(&body).map(Some),
        None => Ok(None),
    }
}

/// Encode and write one message, then flush.
pub async fn write_message<W: AsyncWrite + Unpin, T: Serialize>(
    writer: &mut W,
    msg: &T,
    max_frame_len: u32,
) -> Result<(), FrameError> {
    let frame = encode_frame(msg, max_frame_len)?;
    writer.write_all(&frame).await?;
    writer.flush().await?;
    Ok(())
}
