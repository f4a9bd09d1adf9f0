//! The JSON (text frame) encoding.
//!
//! Parsing goes through serde with the same shape nym-client uses, so the
//! error details an app sees after `malformed request:` are serde_json's
//! texts, exactly as nym-client reports them. Output is written by hand so the
//! key order (`type` first, then the fields in nym-client's order) does not
//! depend on serde_json's map features.

use serde::Deserialize;
use serde_json::Value;

use super::{ApiError, ClientRequest, ErrorKind, ServerResponse, TextEncodeError};
use crate::address::{Recipient, SenderTag};

/// The JSON shape of a request. Field order matters: serde reports the first
/// missing field in declaration order, and this is nym-client's order.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
enum RequestJson {
    #[serde(rename_all = "camelCase")]
    Send {
        message: Value,
        #[serde(alias = "recipient_address")]
        recipient: String,
        connection_id: Option<u64>,
    },
    #[serde(rename_all = "camelCase")]
    SendAnonymous {
        #[serde(alias = "recipient_address")]
        recipient: String,
        message: Value,
        reply_surbs: u32,
        connection_id: Option<u64>,
    },
    #[serde(rename_all = "camelCase")]
    Reply {
        sender_tag: String,
        message: Value,
        connection_id: Option<u64>,
    },
    SelfAddress,
}

/// The JSON shape of a response.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
enum ResponseJson {
    #[serde(rename_all = "camelCase")]
    Received {
        message: String,
        sender_tag: Option<String>,
    },
    SelfAddress {
        address: String,
    },
    LaneQueueLength {
        lane: u64,
        queue_length: u64,
    },
    Error {
        message: String,
    },
}

/// A JSON `message` as bytes: a string gives its UTF-8 bytes (nym-client);
/// any other value gives its JSON text (the 1.0.1 form).
fn message_bytes(v: Value) -> Vec<u8> {
    match v {
        Value::String(s) => s.into_bytes(),
        other => other.to_string().into_bytes(),
    }
}

fn parse_recipient(s: &str) -> Result<Recipient, ApiError> {
    s.parse::<Recipient>()
        .map_err(|e| ApiError::bad_recipient(&e))
}

/// A JSON string literal, escaped as serde_json escapes it.
fn json_str(s: &str) -> String {
    Value::String(s.to_owned()).to_string()
}

fn json_conn(c: Option<u64>) -> String {
    c.map_or_else(|| "null".to_owned(), |c| c.to_string())
}

/// Most JSON values (counted by their `,` and `:` separators outside
/// strings) a text request may hold. serde buffers a tagged request as a
/// tree before it knows its type, at tens of bytes per value: a wide array
/// of small numbers as `message` would cost some 30 times the frame.
/// Bounded, a request costs at most a few MiB beyond its frame whatever its
/// shape. (Large data goes as a string, or through the binary API.)
pub const MAX_TEXT_JSON_VALUES: usize = 65_536;

/// Refuse text with more than [`MAX_TEXT_JSON_VALUES`] separators outside
/// strings, without allocating.
fn check_json_width(s: &str) -> Result<(), ApiError> {
    let mut in_string = false;
    let mut escaped = false;
    let mut values = 0usize;
    for b in s.bytes() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b',' | b':' => {
                values += 1;
                if values > MAX_TEXT_JSON_VALUES {
                    return Err(ApiError::malformed_request(format!(
                        "a text request may hold at most {MAX_TEXT_JSON_VALUES} JSON values; send large data as a string, or use the binary API"
                    )));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

impl ClientRequest {
    /// Parse a text frame the way nym-client does (plus the 1.0.1 aliases).
    /// Errors are `MalformedRequest` with serde_json's or the address
    /// parser's detail; a request wider than [`MAX_TEXT_JSON_VALUES`] is
    /// refused before it is parsed.
    pub fn parse_text(s: &str) -> Result<Self, ApiError> {
        check_json_width(s)?;
        let req: RequestJson =
            serde_json::from_str(s).map_err(|e| ApiError::malformed_request(e.to_string()))?;
        Ok(match req {
            RequestJson::Send {
                message,
                recipient,
                connection_id,
            } => ClientRequest::Send {
                message: message_bytes(message),
                recipient: parse_recipient(&recipient)?,
                connection_id,
            },
            RequestJson::SendAnonymous {
                recipient,
                message,
                reply_surbs,
                connection_id,
            } => ClientRequest::SendAnonymous {
                message: message_bytes(message),
                recipient: parse_recipient(&recipient)?,
                reply_surbs,
                connection_id,
            },
            RequestJson::Reply {
                sender_tag,
                message,
                connection_id,
            } => ClientRequest::Reply {
                message: message_bytes(message),
                sender_tag: sender_tag
                    .parse::<SenderTag>()
                    .map_err(|e| ApiError::malformed_request(e.to_string()))?,
                connection_id,
            },
            RequestJson::SelfAddress => ClientRequest::SelfAddress,
        })
    }

    /// The JSON form, keys in nym-client's order, `connectionId` null when
    /// absent. Fails for binary-only requests and non-UTF-8 messages.
    pub fn to_text(&self) -> Result<String, TextEncodeError> {
        let utf8 = |m: &[u8]| -> Result<String, TextEncodeError> {
            std::str::from_utf8(m)
                .map(json_str)
                .map_err(|_| TextEncodeError::NotUtf8)
        };
        Ok(match self {
            ClientRequest::Send {
                recipient,
                message,
                connection_id,
            } => format!(
                r#"{{"type":"send","message":{},"recipient":{},"connectionId":{}}}"#,
                utf8(message)?,
                json_str(&recipient.to_string()),
                json_conn(*connection_id)
            ),
            ClientRequest::SendAnonymous {
                recipient,
                message,
                reply_surbs,
                connection_id,
            } => format!(
                r#"{{"type":"sendAnonymous","recipient":{},"message":{},"replySurbs":{},"connectionId":{}}}"#,
                json_str(&recipient.to_string()),
                utf8(message)?,
                reply_surbs,
                json_conn(*connection_id)
            ),
            ClientRequest::Reply {
                sender_tag,
                message,
                connection_id,
            } => format!(
                r#"{{"type":"reply","senderTag":{},"message":{},"connectionId":{}}}"#,
                json_str(&sender_tag.to_string()),
                utf8(message)?,
                json_conn(*connection_id)
            ),
            ClientRequest::SelfAddress => r#"{"type":"selfAddress"}"#.to_owned(),
            ClientRequest::ClosedConnection(_) => {
                return Err(TextEncodeError::BinaryOnly("closedConnection"))
            }
            ClientRequest::GetLaneQueueLength(_) => {
                return Err(TextEncodeError::BinaryOnly("getLaneQueueLength"))
            }
        })
    }
}

impl ServerResponse {
    /// The JSON form nym-client sends: a received payload is decoded as UTF-8
    /// lossily, `senderTag` is always present (null without a tag),
    /// `queue_length` is snake_case, an error is `"<kind text>:<detail>"`.
    pub fn to_text(&self) -> String {
        match self {
            ServerResponse::Received {
                message,
                sender_tag,
            } => format!(
                r#"{{"type":"received","message":{},"senderTag":{}}}"#,
                json_str(&String::from_utf8_lossy(message)),
                sender_tag.map_or_else(|| "null".to_owned(), |t| json_str(&t.to_string()))
            ),
            ServerResponse::SelfAddress(r) => format!(
                r#"{{"type":"selfAddress","address":{}}}"#,
                json_str(&r.to_string())
            ),
            ServerResponse::LaneQueueLength { lane, queue_length } => format!(
                r#"{{"type":"laneQueueLength","lane":{lane},"queue_length":{queue_length}}}"#
            ),
            ServerResponse::Error(e) => format!(
                r#"{{"type":"error","message":{}}}"#,
                json_str(&e.to_string())
            ),
        }
    }

    /// Parse the JSON form (for apps and tests). A text error's kind is
    /// recovered from its prefix; an unrecognised prefix gives `Other` with
    /// the whole text. Errors are `MalformedResponse`.
    pub fn parse_text(s: &str) -> Result<Self, ApiError> {
        let resp: ResponseJson =
            serde_json::from_str(s).map_err(|e| ApiError::malformed_response(e.to_string()))?;
        Ok(match resp {
            ResponseJson::Received {
                message,
                sender_tag,
            } => ServerResponse::Received {
                message: message.into_bytes(),
                sender_tag: sender_tag
                    .map(|t| t.parse::<SenderTag>())
                    .transpose()
                    .map_err(|e| ApiError::malformed_response(e.to_string()))?,
            },
            ResponseJson::SelfAddress { address } => ServerResponse::SelfAddress(
                address
                    .parse::<Recipient>()
                    .map_err(|e| ApiError::malformed_response(super::recipient_error_text(&e)))?,
            ),
            ResponseJson::LaneQueueLength { lane, queue_length } => {
                ServerResponse::LaneQueueLength { lane, queue_length }
            }
            ResponseJson::Error { message } => ServerResponse::Error(split_error_text(&message)),
        })
    }
}

/// Split `"<kind text>:<detail>"` back into kind and detail.
fn split_error_text(s: &str) -> ApiError {
    ErrorKind::ALL
        .into_iter()
        .find_map(|k| {
            s.strip_prefix(k.as_str())
                .and_then(|rest| rest.strip_prefix(':'))
                .map(|detail| ApiError::new(k, detail))
        })
        .unwrap_or_else(|| ApiError::other(s))
}
