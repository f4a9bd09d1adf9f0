//! The binary (binary frame) encoding.
//!
//! A tag byte, then fixed fields without length prefixes (recipient 96 bytes,
//! sender tag 16 bytes), integers big-endian, and variable data after a u64
//! length that must equal the number of bytes left. A connection id of 0
//! means "none" in this encoding.

use super::{ApiError, ClientRequest, ErrorKind, ServerResponse};
use crate::address::{Recipient, SenderTag};

/// Request tags.
mod req {
    pub const SEND: u8 = 0x00;
    pub const SEND_ANONYMOUS: u8 = 0x01;
    pub const REPLY: u8 = 0x02;
    pub const SELF_ADDRESS: u8 = 0x03;
    pub const CLOSED_CONNECTION: u8 = 0x04;
    pub const GET_LANE_QUEUE_LENGTH: u8 = 0x05;
}

/// Response tags.
mod resp {
    pub const ERROR: u8 = 0x00;
    pub const RECEIVED: u8 = 0x01;
    pub const SELF_ADDRESS: u8 = 0x02;
    pub const LANE_QUEUE_LENGTH: u8 = 0x03;
}

const U64: usize = 8;
const U32: usize = 4;

fn be_u64(b: &[u8]) -> Option<u64> {
    let a: [u8; U64] = b.get(..U64)?.try_into().ok()?;
    Some(u64::from_be_bytes(a))
}

fn be_u32(b: &[u8]) -> Option<u32> {
    let a: [u8; U32] = b.get(..U32)?.try_into().ok()?;
    Some(u32::from_be_bytes(a))
}

/// Binary connection ids: 0 is "none".
fn conn_from_wire(c: u64) -> Option<u64> {
    (c != 0).then_some(c)
}

fn push_data(out: &mut Vec<u8>, data: &[u8]) {
    out.extend_from_slice(&(data.len() as u64).to_be_bytes());
    out.extend_from_slice(data);
}

/// Split `len u64 ‖ data` where `len` must be exactly the data left;
/// `what` names the length in the error (`data` or `message`).
fn length_prefixed<'a>(b: &'a [u8], what: &str, kind: ErrorKind) -> Result<&'a [u8], ApiError> {
    let (len, data) = match (be_u64(b), b.get(U64..)) {
        (Some(len), Some(data)) => (len, data),
        // Callers check the minimum length first; this is only a backstop.
        _ => return Err(ApiError::new(kind, format!("{what} len is missing"))),
    };
    if data.len() as u64 != len {
        return Err(ApiError::new(
            kind,
            format!(
                "{what} len has inconsistent length. specified: {len} got: {}",
                data.len()
            ),
        ));
    }
    Ok(data)
}

/// Read a 96-byte recipient (the caller has checked there are 96 bytes).
fn recipient_at(b: &[u8]) -> Result<Recipient, ApiError> {
    let bytes = b
        .get(..Recipient::LEN)
        .ok_or_else(|| ApiError::malformed_request("malformed recipient: too short"))?;
    Recipient::from_bytes(bytes).map_err(|e| {
        ApiError::malformed_request(format!(
            "malformed recipient: {}",
            super::recipient_error_text(&e)
        ))
    })
}

impl ClientRequest {
    /// Parse a binary frame exactly as nym-client does, with its error kinds
    /// and texts. Fields are checked in nym-client's order: minimum length,
    /// recipient, then the data length.
    pub fn parse_binary(b: &[u8]) -> Result<Self, ApiError> {
        let (&tag, rest) = b.split_first().ok_or_else(ApiError::empty_request)?;
        match tag {
            req::SEND => {
                if rest.len() < Recipient::LEN + 2 * U64 {
                    return Err(ApiError::too_short_request("send"));
                }
                let recipient = recipient_at(rest)?;
                let rest = &rest[Recipient::LEN..];
                let connection_id = be_u64(rest).and_then(conn_from_wire);
                let message =
                    length_prefixed(&rest[U64..], "data", ErrorKind::MalformedRequest)?.to_vec();
                Ok(ClientRequest::Send {
                    recipient,
                    message,
                    connection_id,
                })
            }
            req::SEND_ANONYMOUS => {
                if rest.len() < U32 + Recipient::LEN + 2 * U64 {
                    return Err(ApiError::too_short_request("send_anonymous"));
                }
                let reply_surbs = be_u32(rest).unwrap_or_default();
                let rest = &rest[U32..];
                let recipient = recipient_at(rest)?;
                let rest = &rest[Recipient::LEN..];
                let connection_id = be_u64(rest).and_then(conn_from_wire);
                let message =
                    length_prefixed(&rest[U64..], "data", ErrorKind::MalformedRequest)?.to_vec();
                Ok(ClientRequest::SendAnonymous {
                    recipient,
                    message,
                    reply_surbs,
                    connection_id,
                })
            }
            req::REPLY => {
                if rest.len() < SenderTag::LEN + 2 * U64 {
                    return Err(ApiError::too_short_request("reply"));
                }
                let mut tag = [0u8; SenderTag::LEN];
                tag.copy_from_slice(&rest[..SenderTag::LEN]);
                let rest = &rest[SenderTag::LEN..];
                let connection_id = be_u64(rest).and_then(conn_from_wire);
                let message =
                    length_prefixed(&rest[U64..], "message", ErrorKind::MalformedRequest)?.to_vec();
                Ok(ClientRequest::Reply {
                    sender_tag: SenderTag(tag),
                    message,
                    connection_id,
                })
            }
            req::SELF_ADDRESS => Ok(ClientRequest::SelfAddress),
            req::CLOSED_CONNECTION => match (rest.len(), be_u64(rest)) {
                (U64, Some(id)) => Ok(ClientRequest::ClosedConnection(id)),
                _ => Err(ApiError::malformed_request(
                    "The received closed connection has invalid length",
                )),
            },
            req::GET_LANE_QUEUE_LENGTH => match (rest.len(), be_u64(rest)) {
                (U64, Some(id)) => Ok(ClientRequest::GetLaneQueueLength(id)),
                _ => Err(ApiError::malformed_request(
                    "The received get lane queue lengths has invalid length",
                )),
            },
            n => Err(ApiError::unknown_request_tag(n)),
        }
    }

    /// The binary form. A `None` connection id (and `Some(0)`) is written
    /// as 0.
    pub fn to_binary(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            ClientRequest::Send {
                recipient,
                message,
                connection_id,
            } => {
                out.reserve(1 + Recipient::LEN + 2 * U64 + message.len());
                out.push(req::SEND);
                out.extend_from_slice(&recipient.to_bytes());
                out.extend_from_slice(&connection_id.unwrap_or(0).to_be_bytes());
                push_data(&mut out, message);
            }
            ClientRequest::SendAnonymous {
                recipient,
                message,
                reply_surbs,
                connection_id,
            } => {
                out.reserve(1 + U32 + Recipient::LEN + 2 * U64 + message.len());
                out.push(req::SEND_ANONYMOUS);
                out.extend_from_slice(&reply_surbs.to_be_bytes());
                out.extend_from_slice(&recipient.to_bytes());
                out.extend_from_slice(&connection_id.unwrap_or(0).to_be_bytes());
                push_data(&mut out, message);
            }
            ClientRequest::Reply {
                sender_tag,
                message,
                connection_id,
            } => {
                out.reserve(1 + SenderTag::LEN + 2 * U64 + message.len());
                out.push(req::REPLY);
                out.extend_from_slice(&sender_tag.0);
                out.extend_from_slice(&connection_id.unwrap_or(0).to_be_bytes());
                push_data(&mut out, message);
            }
            ClientRequest::SelfAddress => out.push(req::SELF_ADDRESS),
            ClientRequest::ClosedConnection(id) => {
                out.push(req::CLOSED_CONNECTION);
                out.extend_from_slice(&id.to_be_bytes());
            }
            ClientRequest::GetLaneQueueLength(id) => {
                out.push(req::GET_LANE_QUEUE_LENGTH);
                out.extend_from_slice(&id.to_be_bytes());
            }
        }
        out
    }
}

fn too_short_response(name: &str) -> ApiError {
    ApiError::new(
        ErrorKind::TooShortResponse,
        format!("not enough data provided to recover '{name}'"),
    )
}

impl ServerResponse {
    /// The binary form nym-client sends. An error carries only its detail;
    /// the kind goes in its own byte.
    pub fn to_binary(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            ServerResponse::Error(e) => {
                out.reserve(2 + U64 + e.message.len());
                out.push(resp::ERROR);
                out.push(e.kind.to_byte());
                push_data(&mut out, e.message.as_bytes());
            }
            ServerResponse::Received {
                message,
                sender_tag,
            } => {
                out.reserve(2 + SenderTag::LEN + U64 + message.len());
                out.push(resp::RECEIVED);
                match sender_tag {
                    Some(t) => {
                        out.push(1);
                        out.extend_from_slice(&t.0);
                    }
                    None => out.push(0),
                }
                push_data(&mut out, message);
            }
            ServerResponse::SelfAddress(r) => {
                out.push(resp::SELF_ADDRESS);
                out.extend_from_slice(&r.to_bytes());
            }
            ServerResponse::LaneQueueLength { lane, queue_length } => {
                out.push(resp::LANE_QUEUE_LENGTH);
                out.extend_from_slice(&lane.to_be_bytes());
                out.extend_from_slice(&queue_length.to_be_bytes());
            }
        }
        out
    }

    /// Parse the binary form (for apps and tests), with nym-client's error
    /// kinds and texts. Where nym-client's decoder would panic on a short
    /// frame (lane queue length, a 9-byte error) this returns
    /// `TooShortResponse`; trailing bytes after a lane queue length are
    /// ignored, as nym-client ignores them.
    pub fn parse_binary(b: &[u8]) -> Result<Self, ApiError> {
        let (&tag, rest) = b
            .split_first()
            .ok_or_else(|| ApiError::new(ErrorKind::EmptyResponse, "no data provided"))?;
        match tag {
            resp::ERROR => {
                // kind u8 ‖ len u64
                let (&kind, rest) = match rest.split_first() {
                    Some(x) if rest.len() > U64 => x,
                    _ => return Err(too_short_response("error")),
                };
                let kind = ErrorKind::from_byte(kind).ok_or_else(|| {
                    ApiError::malformed_response(format!("invalid error code {kind}"))
                })?;
                let data = length_prefixed(rest, "message", ErrorKind::MalformedResponse)?;
                let message = String::from_utf8(data.to_vec()).map_err(|e| {
                    ApiError::malformed_response(format!("malformed error message: {e}"))
                })?;
                Ok(ServerResponse::Error(ApiError::new(kind, message)))
            }
            resp::RECEIVED => {
                // flag u8 ‖ [tag] ‖ len u64
                let (&flag, rest) = match rest.split_first() {
                    Some(x) if rest.len() > U64 => x,
                    _ => return Err(too_short_response("received")),
                };
                let (sender_tag, rest) = match flag {
                    0 => (None, rest),
                    1 => {
                        let t: [u8; SenderTag::LEN] = rest
                            .get(..SenderTag::LEN)
                            .and_then(|t| t.try_into().ok())
                            .ok_or_else(|| too_short_response("received"))?;
                        (Some(SenderTag(t)), &rest[SenderTag::LEN..])
                    }
                    n => {
                        return Err(ApiError::malformed_response(format!(
                            "invalid sender tag flag {n}"
                        )))
                    }
                };
                if rest.len() < U64 {
                    return Err(too_short_response("received"));
                }
                let message = length_prefixed(rest, "message", ErrorKind::MalformedResponse)?;
                Ok(ServerResponse::Received {
                    message: message.to_vec(),
                    sender_tag,
                })
            }
            resp::SELF_ADDRESS => {
                if rest.len() != Recipient::LEN {
                    return Err(too_short_response("self_address"));
                }
                Recipient::from_bytes(rest)
                    .map(ServerResponse::SelfAddress)
                    .map_err(|e| {
                        ApiError::malformed_response(format!(
                            "malformed Recipient: {}",
                            super::recipient_error_text(&e)
                        ))
                    })
            }
            resp::LANE_QUEUE_LENGTH => match (be_u64(rest), rest.get(U64..).and_then(be_u64)) {
                (Some(lane), Some(queue_length)) => {
                    Ok(ServerResponse::LaneQueueLength { lane, queue_length })
                }
                _ => Err(too_short_response("lane_queue_length")),
            },
            n => Err(ApiError::new(
                ErrorKind::UnknownResponse,
                format!("{n} does not correspond to any valid response tag"),
            )),
        }
    }
}
