//! nym-client's websocket app API: the requests an app sends, the responses it
//! gets, in both of the API's encodings.
//!
//! An app talks to the daemon over one websocket. A text frame carries a JSON
//! request ([`ClientRequest::parse_text`]); a binary frame carries the tagged
//! binary form ([`ClientRequest::parse_binary`]). Responses go back in the
//! kind of the most recent request frame, binary before any request
//! ([`ResponseMode`]).
//!
//! Everything an app can observe follows nym-client (release 2026.9): field
//! names, tag bytes, error kinds and error texts. The one extension is the
//! older (1.0.1) text form: `recipient_address` is read as `recipient`, and a
//! `message` that is not a JSON string is taken as its JSON text.
//!
//! Layout: this file holds the types; `text.rs` and `binary.rs` the codecs,
//! `tests.rs` the known-answer and property tests.

use std::fmt;

use crate::address::{Recipient, RecipientError, SenderTag};

mod binary;
mod text;

pub use text::MAX_TEXT_JSON_VALUES;

/// The query of a websocket URL (`ws://127.0.0.1:1977/?nymd-tap`) that
/// makes a connection to nymd's app port a *tap*, nymd's one extension of
/// the handshake (nym-client ignores the URL): it receives the messages
/// that arrive while it is connected, like any app, but takes none of them
/// from the apps (a message written only to taps still waits for an app).
/// Requests work as for any app. `nymctl listen`, `send --reply-surbs` and
/// `reply` connect this way.
pub const TAP_QUERY: &str = "nymd-tap";

/// Whether a handshake's request target (`/path?query`) asks for a tap:
/// [`TAP_QUERY`] is one of the query's `&`-separated parameters, alone or
/// with a value (`nymd-tap=1`).
pub fn is_tap_target(target: &str) -> bool {
    let target = target.split('#').next().unwrap_or("");
    let Some((_, query)) = target.split_once('?') else {
        return false;
    };
    query
        .split('&')
        .any(|p| p == TAP_QUERY || p.split_once('=').is_some_and(|(k, _)| k == TAP_QUERY))
}

/// Most reply SURBs one `sendAnonymous` may ask for. Each SURB is a
/// precomputed Sphinx header built (and sent) by the sender, so an app
/// asking for `u32::MAX` would make the identity build and send billions.
/// 500 is also the most a Nym client hands out when another client asks it
/// for more reply SURBs (client-core's default
/// `maximum_allowed_reply_surb_request_size`).
pub const MAX_REPLY_SURBS: u32 = 500;

/// A request from an app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientRequest {
    /// Send `message` to `recipient` as a plain message; the recipient sees no
    /// sender tag.
    Send {
        /// Where to.
        recipient: Recipient,
        /// The payload.
        message: Vec<u8>,
        /// The transmission lane; `None` is the general lane. With `Some`, the
        /// app gets a `LaneQueueLength` response.
        connection_id: Option<u64>,
    },
    /// Send `message` to `recipient` as a repliable message carrying
    /// `reply_surbs` reply SURBs and our sender tag.
    SendAnonymous {
        /// Where to.
        recipient: Recipient,
        /// The payload.
        message: Vec<u8>,
        /// How many reply SURBs to attach.
        reply_surbs: u32,
        /// As for `Send`.
        connection_id: Option<u64>,
    },
    /// Answer the anonymous sender behind `sender_tag` using its SURBs.
    Reply {
        /// Who to answer.
        sender_tag: SenderTag,
        /// The payload.
        message: Vec<u8>,
        /// As for `Send`.
        connection_id: Option<u64>,
    },
    /// Ask for our own address.
    SelfAddress,
    /// The app closed this connection: drop what is still queued on its lane.
    /// Binary only.
    ClosedConnection(u64),
    /// Ask how many packets are queued on this lane. Binary only.
    GetLaneQueueLength(u64),
}

impl ClientRequest {
    /// Whether a server can serve the request: a `sendAnonymous` asks for at
    /// most [`MAX_REPLY_SURBS`] reply SURBs. The codecs accept any value
    /// (they are nym-client's encodings); a server refuses more with a
    /// `MalformedRequest` error, the kind nym-client gives a request it
    /// cannot use.
    pub fn check_limits(&self) -> Result<(), ApiError> {
        match self {
            ClientRequest::SendAnonymous { reply_surbs, .. } if *reply_surbs > MAX_REPLY_SURBS => {
                Err(ApiError::malformed_request(format!(
                    "replySurbs is {reply_surbs}, but one message may carry at most {MAX_REPLY_SURBS} reply SURBs"
                )))
            }
            _ => Ok(()),
        }
    }
}

/// A response (or an unsolicited received message) to an app.
// A `Recipient` holds decompressed points (~400 bytes). Responses live for
// one frame, so the size is not worth a box in the public shape.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerResponse {
    /// A message reconstructed from the mixnet.
    Received {
        /// The payload.
        message: Vec<u8>,
        /// Present only when the sender used `sendAnonymous`.
        sender_tag: Option<SenderTag>,
    },
    /// Our own address.
    SelfAddress(Recipient),
    /// Packets still queued on a lane.
    LaneQueueLength {
        /// The connection id.
        lane: u64,
        /// Packets queued (including replies waiting for SURBs).
        queue_length: u64,
    },
    /// A request could not be handled.
    Error(ApiError),
}

/// The error kinds of the app API, with their wire bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ErrorKind {
    /// The request frame was empty.
    EmptyRequest = 0x01,
    /// The request ended before all its fields.
    TooShortRequest = 0x02,
    /// The request tag is not one we know.
    UnknownRequest = 0x03,
    /// The request could not be understood.
    MalformedRequest = 0x04,
    /// The response frame was empty.
    EmptyResponse = 0x80,
    /// The response ended before all its fields.
    TooShortResponse = 0x81,
    /// The response tag is not one we know.
    UnknownResponse = 0x82,
    /// The response could not be understood.
    MalformedResponse = 0x83,
    /// Anything else.
    Other = 0xFF,
}

impl ErrorKind {
    /// Every kind, in byte order.
    pub const ALL: [ErrorKind; 9] = [
        ErrorKind::EmptyRequest,
        ErrorKind::TooShortRequest,
        ErrorKind::UnknownRequest,
        ErrorKind::MalformedRequest,
        ErrorKind::EmptyResponse,
        ErrorKind::TooShortResponse,
        ErrorKind::UnknownResponse,
        ErrorKind::MalformedResponse,
        ErrorKind::Other,
    ];

    /// The wire byte.
    pub fn to_byte(self) -> u8 {
        self as u8
    }

    /// The kind for a wire byte, if it names one.
    pub fn from_byte(b: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.to_byte() == b)
    }

    /// The text that precedes the colon in a text-mode error.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::EmptyRequest => "received request contained no data",
            ErrorKind::TooShortRequest => "received request did not contain enough data",
            ErrorKind::UnknownRequest => "unknown request type",
            ErrorKind::MalformedRequest => "malformed request",
            ErrorKind::EmptyResponse => "received response contained no data",
            ErrorKind::TooShortResponse => "received response did not contain enough data",
            ErrorKind::UnknownResponse => "unknown response type",
            ErrorKind::MalformedResponse => "malformed response",
            ErrorKind::Other => "other",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An app API error: a kind and a detail text. Displayed as
/// `"<kind text>:<detail>"` (no space), which is what text mode sends.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{message}", kind.as_str())]
pub struct ApiError {
    /// What went wrong.
    pub kind: ErrorKind,
    /// The detail (the only text binary mode sends).
    pub message: String,
}

impl ApiError {
    /// An error of any kind.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// An `Other` error, for failures that are not about the frame itself.
    pub fn other(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Other, message)
    }

    /// A `MalformedRequest` error.
    pub fn malformed_request(detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::MalformedRequest, detail)
    }

    /// A `MalformedResponse` error.
    pub fn malformed_response(detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::MalformedResponse, detail)
    }

    /// The error for an empty binary request frame.
    pub fn empty_request() -> Self {
        Self::new(ErrorKind::EmptyRequest, "no data provided")
    }

    /// The error for an unknown binary request tag.
    pub fn unknown_request_tag(tag: u8) -> Self {
        Self::new(
            ErrorKind::UnknownRequest,
            format!("{tag} does not correspond to any valid request tag"),
        )
    }

    /// The error for a binary request shorter than its fixed fields;
    /// `name` is nym-client's name for it (`send`, `send_anonymous`, `reply`).
    pub fn too_short_request(name: &str) -> Self {
        Self::new(
            ErrorKind::TooShortRequest,
            format!("not enough data provided to recover '{name}'"),
        )
    }

    /// The error for a bad recipient: nym-client's text for it.
    pub fn bad_recipient(err: &RecipientError) -> Self {
        Self::malformed_request(recipient_error_text(err))
    }
}

impl From<ApiError> for ServerResponse {
    fn from(e: ApiError) -> Self {
        ServerResponse::Error(e)
    }
}

/// nym-client's text for a recipient error (our `RecipientError` texts are
/// nym-client's, including the library texts it passes through).
pub fn recipient_error_text(err: &RecipientError) -> String {
    err.to_string()
}

/// Which encoding responses use: that of the last request frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ResponseMode {
    /// JSON in text frames.
    Text,
    /// The binary form in binary frames. A session starts here.
    #[default]
    Binary,
}

impl ResponseMode {
    /// The mode a frame sets. Call this for every data frame, before parsing
    /// it: a malformed frame still switches the mode.
    pub fn observe(&mut self, frame: &AppFrame) {
        *self = frame.mode();
    }

    /// Encode a response in this mode.
    pub fn encode(self, resp: &ServerResponse) -> AppFrame {
        match self {
            ResponseMode::Text => AppFrame::Text(resp.to_text()),
            ResponseMode::Binary => AppFrame::Binary(resp.to_binary()),
        }
    }
}

/// A websocket data frame of the app API.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AppFrame {
    /// A text frame (JSON).
    Text(String),
    /// A binary frame.
    Binary(Vec<u8>),
}

impl AppFrame {
    /// The response mode this frame selects.
    pub fn mode(&self) -> ResponseMode {
        match self {
            AppFrame::Text(_) => ResponseMode::Text,
            AppFrame::Binary(_) => ResponseMode::Binary,
        }
    }

    /// Parse as a request, in the frame's own encoding, and check it
    /// against the limits a server applies ([`ClientRequest::check_limits`]).
    pub fn parse_request(&self) -> Result<ClientRequest, ApiError> {
        let req = match self {
            AppFrame::Text(s) => ClientRequest::parse_text(s),
            AppFrame::Binary(b) => ClientRequest::parse_binary(b),
        }?;
        req.check_limits()?;
        Ok(req)
    }

    /// Parse as a response, in the frame's own encoding.
    pub fn parse_response(&self) -> Result<ServerResponse, ApiError> {
        match self {
            AppFrame::Text(s) => ServerResponse::parse_text(s),
            AppFrame::Binary(b) => ServerResponse::parse_binary(b),
        }
    }
}

/// Why a request has no text form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextEncodeError {
    /// The text API carries messages as JSON strings, so they must be UTF-8.
    #[error("the message is not valid UTF-8, so it cannot be sent in a text frame")]
    NotUtf8,
    /// `closedConnection` and `getLaneQueueLength` exist only in binary.
    #[error("the {0} request has no text form; send it in a binary frame")]
    BinaryOnly(&'static str),
}

impl ClientRequest {
    /// Encode in the given mode. Text fails as [`ClientRequest::to_text`] does.
    pub fn encode(&self, mode: ResponseMode) -> Result<AppFrame, TextEncodeError> {
        Ok(match mode {
            ResponseMode::Text => AppFrame::Text(self.to_text()?),
            ResponseMode::Binary => AppFrame::Binary(self.to_binary()),
        })
    }
}

#[cfg(test)]
mod tests;
