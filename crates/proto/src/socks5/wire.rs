//! The messages a socks5 client and a network requester (NR) exchange, one
//! per mixnet message (spec §2, §3). Both directions encode and decode: nymd
//! is the client, and its local test exit plays the NR.
//!
//! Client → NR ([`ProviderRequest`]):
//! - v3: `interface(0x03) ‖ kind ‖ body`, kind `0x00` control (a one-byte
//!   [`ControlRequest`] tag) or `0x01` provider data (a [`Socks5Request`]);
//! - legacy: the [`Socks5Request`] alone, starting with its legacy tag `0x00`.
//!
//! A [`Socks5Request`] is `version ‖ flag ‖ fields` (version `0x03`, or
//! `0x00` in legacy form); flags `0` Connect, `1` Send, `2` Query.
//!
//! NR → client ([`ProviderResponse`]): the same wrapper around a
//! [`ControlResponse`] or a [`Socks5Response`], which is `version ‖ flag ‖
//! fields` in v3 and has **no version byte** in legacy form; flags `1`
//! NetworkData, `2` ConnectionError, `3` Query.
//!
//! A first byte below 3 means legacy, in both wrappers. Send and
//! NetworkData carry a [`SocketData`] whose 17-byte header lists its fields
//! in a different order in each direction (spec §3.4).

use std::fmt;

use serde::Deserialize;

use super::query::{QueryError, QueryRequest, QueryResponse};
use crate::address::{Recipient, RecipientError};

/// Identifies one proxied TCP connection: random per accepted SOCKS
/// connection, big-endian on the wire.
pub type ConnectionId = u64;

/// A protocol version as one byte: below 3 is the unversioned legacy
/// format; 3 and up are versions. Both the provider interface and the socks5
/// protocol use this rule; both are at 3 in release 2026.9.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Version {
    /// The pre-versioning format (sorts below every version).
    Legacy,
    /// A versioned format. Values below 3 cannot be written: they would read
    /// back as [`Version::Legacy`].
    Versioned(u8),
}

impl Version {
    /// The version 2026.9 speaks, for both fields.
    pub const CURRENT: Self = Self::Versioned(3);
    /// The lowest byte that reads as a version.
    pub const FIRST: u8 = 3;

    /// Read a version byte.
    pub fn from_byte(b: u8) -> Self {
        if b < Self::FIRST {
            Self::Legacy
        } else {
            Self::Versioned(b)
        }
    }

    /// Whether this is the legacy format.
    pub fn is_legacy(self) -> bool {
        self == Self::Legacy
    }

    /// The byte to write, `None` for legacy.
    fn byte(self) -> Result<Option<u8>, EncodeError> {
        match self {
            Self::Legacy => Ok(None),
            Self::Versioned(v) if v < Self::FIRST => Err(EncodeError::VersionBelowFirst(v)),
            Self::Versioned(v) => Ok(Some(v)),
        }
    }
}

impl Default for Version {
    fn default() -> Self {
        Self::CURRENT
    }
}

/// Nym's text form, JSON with an adjacent tag: `{"type":"Versioned","version":3}`
/// or `{"type":"Legacy"}`. It appears inside the SupportedRequestVersions
/// answer.
impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Legacy => f.write_str(r#"{"type":"Legacy"}"#),
            Self::Versioned(v) => write!(f, r#"{{"type":"Versioned","version":{v}}}"#),
        }
    }
}

/// The two versions a provider-data message carries. An NR answers a
/// connection with the versions of its Connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Versions {
    /// The service-provider interface version (outer wrapper).
    pub interface: Version,
    /// The socks5 protocol version (inner message).
    pub socks5: Version,
}

impl Versions {
    /// v3/v3: what the 2026.9 CLI client sends.
    pub const CURRENT: Self = Self {
        interface: Version::CURRENT,
        socks5: Version::CURRENT,
    };
    /// Legacy/legacy: what library users (the SDK, the gateway probe) send.
    pub const LEGACY: Self = Self {
        interface: Version::Legacy,
        socks5: Version::Legacy,
    };
}

/// Why a message could not be decoded.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// An empty message.
    #[error("empty message")]
    Empty,
    /// The message stops inside a field.
    #[error("message ends inside the {0}")]
    Truncated(&'static str),
    /// The byte after the interface version is neither control nor data.
    #[error("unknown message kind {0:#04x} (expected 0x00 control or 0x01 provider data)")]
    UnknownKind(u8),
    /// An unknown control request tag.
    #[error("unknown control request {0:#04x}")]
    UnknownControlRequest(u8),
    /// An unknown control response tag.
    #[error("unknown control response {0:#04x}")]
    UnknownControlResponse(u8),
    /// A control response whose JSON body does not have the expected shape.
    #[error("control response body is not the expected JSON: {0}")]
    ControlJson(String),
    /// A request in a socks5 version newer than 3 (the NR drops those).
    #[error("unsupported socks5 protocol version {0} (at most 3)")]
    UnsupportedSocks5Version(u8),
    /// An unknown request flag.
    #[error("unknown socks5 request flag {0:#04x}")]
    UnknownRequestFlag(u8),
    /// An unknown response flag.
    #[error("unknown socks5 response flag {0:#04x}")]
    UnknownResponseFlag(u8),
    /// Bytes after a Connect's address that are not one 96-byte address.
    #[error("{0} bytes follow the Connect address; expected none or a 96-byte return address")]
    ReturnAddressLength(usize),
    /// A return address whose keys are invalid.
    #[error("invalid Connect return address: {0}")]
    ReturnAddress(RecipientError),
    /// A ConnectionError text that is not UTF-8.
    #[error("ConnectionError message is not UTF-8")]
    ErrorMessageNotUtf8,
    /// A malformed query or query answer.
    #[error(transparent)]
    Query(#[from] QueryError),
}

/// Why a message cannot be encoded so that it reads back as itself.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum EncodeError {
    /// `Versioned(n)` with `n` < 3.
    #[error("version {0} would read back as legacy; versions start at 3")]
    VersionBelowFirst(u8),
    /// Control messages exist only in the versioned interface.
    #[error("control messages need a versioned interface (3 or more), not legacy")]
    LegacyControl,
    /// In a legacy interface the socks5 version byte would be read as the
    /// interface version.
    #[error("a legacy interface needs the legacy socks5 format too")]
    LegacyInterfaceVersionedSocks5,
    /// A legacy Query response would start with its flag 3, which reads as a
    /// version.
    #[error("query answers need socks5 version 3 or more, not legacy")]
    LegacyQueryResponse,
    /// The remote address does not fit its u16 length field.
    #[error("remote address is {0} bytes; at most 65535 fit")]
    AddressTooLong(usize),
}

/// A connection's bytes with their sequence number: the body of Send and of
/// NetworkData.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SocketData {
    /// The connection.
    pub conn_id: ConnectionId,
    /// Position in this direction's stream, from 0 (spec §4).
    pub seq: u64,
    /// The sender's socket closed: this is the last message (any non-zero
    /// byte reads as closed; we write 1).
    pub closed: bool,
    /// The bytes, possibly none (a keepalive or a bare close).
    pub data: Vec<u8>,
}

impl SocketData {
    /// Length of the header in either order.
    pub const HEADER_LEN: usize = 17;

    /// Append in request (Send) order: `conn_id(8) ‖ closed(1) ‖ seq(8) ‖ data`.
    pub fn encode_request(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.conn_id.to_be_bytes());
        out.push(u8::from(self.closed));
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.data);
    }

    /// Append in response (NetworkData) order: `closed(1) ‖ conn_id(8) ‖
    /// seq(8) ‖ data`.
    pub fn encode_response(&self, out: &mut Vec<u8>) {
        out.push(u8::from(self.closed));
        out.extend_from_slice(&self.conn_id.to_be_bytes());
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.data);
    }

    /// Read request order.
    pub fn decode_request(b: &[u8]) -> Result<Self, DecodeError> {
        let (h, data) = split_header(b)?;
        Ok(Self {
            conn_id: u64::from_be_bytes(array(&h[..8])),
            closed: h[8] != 0,
            seq: u64::from_be_bytes(array(&h[9..])),
            data: data.to_vec(),
        })
    }

    /// Read response order.
    pub fn decode_response(b: &[u8]) -> Result<Self, DecodeError> {
        let (h, data) = split_header(b)?;
        Ok(Self {
            closed: h[0] != 0,
            conn_id: u64::from_be_bytes(array(&h[1..9])),
            seq: u64::from_be_bytes(array(&h[9..])),
            data: data.to_vec(),
        })
    }
}

fn split_header(b: &[u8]) -> Result<(&[u8; SocketData::HEADER_LEN], &[u8]), DecodeError> {
    let (h, data) = b
        .split_first_chunk::<{ SocketData::HEADER_LEN }>()
        .ok_or(DecodeError::Truncated("17-byte socket data header"))?;
    Ok((h, data))
}

/// The first 8 bytes of `b`, which callers have checked holds 8.
fn array(b: &[u8]) -> [u8; 8] {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    a
}

/// Read a big-endian u64 from the front of `b`.
fn take_u64<'a>(b: &'a [u8], what: &'static str) -> Result<(u64, &'a [u8]), DecodeError> {
    let (h, rest) = b
        .split_first_chunk::<8>()
        .ok_or(DecodeError::Truncated(what))?;
    Ok((u64::from_be_bytes(*h), rest))
}

/// Open a TCP connection to `remote` for `conn_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectRequest {
    /// The new connection's id.
    pub conn_id: ConnectionId,
    /// `host:port` as text ([`super::local::Target::remote_address`]). Read
    /// lossily: invalid UTF-8 becomes U+FFFD, as the NR reads it.
    pub remote: String,
    /// Where the NR sends its answers; `None` in anonymous mode, where they
    /// go back through reply SURBs.
    pub return_address: Option<Recipient>,
}

/// A socks5 request, client → NR.
#[allow(
    clippy::large_enum_variant,
    reason = "a request lives briefly between the codec and a send; boxing would only add an allocation"
)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Socks5Request {
    /// Open a connection (flag 0).
    Connect(ConnectRequest),
    /// Bytes for an open connection, in request header order (flag 1).
    Send(SocketData),
    /// Ask the NR about itself (flag 2); answered only through reply SURBs.
    Query(QueryRequest),
}

impl Socks5Request {
    /// The byte before the flag in legacy form.
    const LEGACY_TAG: u8 = 0x00;

    /// Append `version ‖ flag ‖ fields`.
    fn encode(&self, version: Version, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        out.push(version.byte()?.unwrap_or(Self::LEGACY_TAG));
        match self {
            Self::Connect(c) => {
                let len = u16::try_from(c.remote.len())
                    .map_err(|_| EncodeError::AddressTooLong(c.remote.len()))?;
                out.push(0);
                out.extend_from_slice(&c.conn_id.to_be_bytes());
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(c.remote.as_bytes());
                if let Some(r) = &c.return_address {
                    out.extend_from_slice(&r.to_bytes());
                }
            }
            Self::Send(d) => {
                out.push(1);
                d.encode_request(out);
            }
            Self::Query(q) => {
                out.push(2);
                q.encode(out);
            }
        }
        Ok(())
    }

    /// Read `version ‖ flag ‖ fields`.
    fn decode(b: &[u8]) -> Result<(Version, Self), DecodeError> {
        let (&v, rest) = b
            .split_first()
            .ok_or(DecodeError::Truncated("socks5 version"))?;
        let version = Version::from_byte(v);
        if version > Version::CURRENT {
            return Err(DecodeError::UnsupportedSocks5Version(v));
        }
        let (&flag, body) = rest
            .split_first()
            .ok_or(DecodeError::Truncated("request flag"))?;
        let request = match flag {
            0 => Self::Connect(decode_connect(body)?),
            1 => Self::Send(SocketData::decode_request(body)?),
            2 => Self::Query(QueryRequest::decode(body)?),
            f => return Err(DecodeError::UnknownRequestFlag(f)),
        };
        Ok((version, request))
    }
}

fn decode_connect(b: &[u8]) -> Result<ConnectRequest, DecodeError> {
    let (conn_id, rest) = take_u64(b, "connection id")?;
    let (len, rest) = rest
        .split_first_chunk::<2>()
        .ok_or(DecodeError::Truncated("remote address length"))?;
    let len = usize::from(u16::from_be_bytes(*len));
    if rest.len() < len {
        return Err(DecodeError::Truncated("remote address"));
    }
    let (remote, tail) = rest.split_at(len);
    let return_address = match tail.len() {
        0 => None,
        Recipient::LEN => Some(Recipient::from_bytes(tail).map_err(DecodeError::ReturnAddress)?),
        n => return Err(DecodeError::ReturnAddressLength(n)),
    };
    Ok(ConnectRequest {
        conn_id,
        remote: String::from_utf8_lossy(remote).into_owned(),
        return_address,
    })
}

/// A socks5 response, NR → client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Socks5Response {
    /// Bytes from the target, in response header order (flag 1). The NR
    /// also reports a failed TCP connect this way: seq 0, closed, no data.
    NetworkData(SocketData),
    /// The NR refused the connection (flag 2), e.g. `Domain
    /// "example.com:443" failed filter check`.
    ConnectionError {
        /// The refused connection.
        conn_id: ConnectionId,
        /// Why, as text (strict UTF-8).
        message: String,
    },
    /// An answer to a query (flag 3).
    Query(QueryResponse),
}

impl Socks5Response {
    /// Append `[version] ‖ flag ‖ fields`; legacy has no version byte.
    fn encode(&self, version: Version, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        match (version.byte()?, self) {
            (None, Self::Query(_)) => return Err(EncodeError::LegacyQueryResponse),
            (None, _) => {}
            (Some(v), _) => out.push(v),
        }
        match self {
            Self::NetworkData(d) => {
                out.push(1);
                d.encode_response(out);
            }
            Self::ConnectionError { conn_id, message } => {
                out.push(2);
                out.extend_from_slice(&conn_id.to_be_bytes());
                out.extend_from_slice(message.as_bytes());
            }
            Self::Query(q) => {
                out.push(3);
                q.encode(out);
            }
        }
        Ok(())
    }

    /// Read `[version] ‖ flag ‖ fields`. Unlike requests, any version ≥ 3 is
    /// accepted, as the client does.
    fn decode(b: &[u8]) -> Result<(Version, Self), DecodeError> {
        let &first = b.first().ok_or(DecodeError::Truncated("socks5 response"))?;
        let version = Version::from_byte(first);
        let content = if version.is_legacy() { b } else { &b[1..] };
        let (&flag, body) = content
            .split_first()
            .ok_or(DecodeError::Truncated("response flag"))?;
        let response = match flag {
            1 => Self::NetworkData(SocketData::decode_response(body)?),
            2 => {
                let (conn_id, text) = take_u64(body, "connection id")?;
                let message = std::str::from_utf8(text)
                    .map_err(|_| DecodeError::ErrorMessageNotUtf8)?
                    .to_owned();
                Self::ConnectionError { conn_id, message }
            }
            3 => Self::Query(QueryResponse::decode(body)?),
            f => return Err(DecodeError::UnknownResponseFlag(f)),
        };
        Ok((version, response))
    }
}

/// A control request (versioned interface only). Its body is the tag byte;
/// the NR ignores anything after it and answers only through reply SURBs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ControlRequest {
    /// Tag 0: is the provider alive.
    Health,
    /// Tag 1: binary name and build information.
    BinaryInfo,
    /// Tag 2: the interface and provider versions it speaks.
    SupportedRequestVersions,
}

impl ControlRequest {
    fn tag(self) -> u8 {
        match self {
            Self::Health => 0,
            Self::BinaryInfo => 1,
            Self::SupportedRequestVersions => 2,
        }
    }

    fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        match b.first() {
            None => Err(DecodeError::Truncated("control request tag")),
            Some(0) => Ok(Self::Health),
            Some(1) => Ok(Self::BinaryInfo),
            Some(2) => Ok(Self::SupportedRequestVersions),
            Some(&t) => Err(DecodeError::UnknownControlRequest(t)),
        }
    }
}

/// A control answer: `tag ‖ body`, the body empty (Health) or JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlResponse {
    /// Tag 0, no body.
    Health,
    /// Tag 1: `{"binary_name":…,"build_information":{…}}`.
    BinaryInfo {
        /// `nym-network-requester` for Nym's NR.
        binary_name: String,
        /// Build facts (`build_version`, `commit_sha`, …), all strings.
        build_information: std::collections::BTreeMap<String, String>,
    },
    /// Tag 2: each value is a [`Version`]'s JSON text, as a string.
    SupportedRequestVersions {
        /// E.g. `{"type":"Versioned","version":3}`.
        interface_version: String,
        /// E.g. `{"type":"Versioned","version":3}`.
        provider_version: String,
    },
    /// Tag 0xFF: `{"message":…}`. Defined, never sent by Nym's NR.
    Error {
        /// The explanation.
        message: String,
    },
}

#[derive(Deserialize)]
struct BinaryInfoJson {
    binary_name: String,
    build_information: std::collections::BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct VersionsJson {
    interface_version: String,
    provider_version: String,
}

#[derive(Deserialize)]
struct ErrorJson {
    message: String,
}

impl ControlResponse {
    /// The SupportedRequestVersions answer of a provider speaking `versions`.
    pub fn supported_versions(versions: Versions) -> Self {
        Self::SupportedRequestVersions {
            interface_version: versions.interface.to_string(),
            provider_version: versions.socks5.to_string(),
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        // `Value`'s Display cannot fail; keys come out in the order Nym's
        // structs declare them (which is also alphabetical).
        let json = |v: serde_json::Value| v.to_string().into_bytes();
        match self {
            Self::Health => out.push(0),
            Self::BinaryInfo {
                binary_name,
                build_information,
            } => {
                out.push(1);
                out.extend(json(serde_json::json!({
                    "binary_name": binary_name,
                    "build_information": build_information,
                })));
            }
            Self::SupportedRequestVersions {
                interface_version,
                provider_version,
            } => {
                out.push(2);
                out.extend(json(serde_json::json!({
                    "interface_version": interface_version,
                    "provider_version": provider_version,
                })));
            }
            Self::Error { message } => {
                out.push(0xFF);
                out.extend(json(serde_json::json!({ "message": message })));
            }
        }
    }

    fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        let (&tag, body) = b
            .split_first()
            .ok_or(DecodeError::Truncated("control response tag"))?;
        let bad = |e: serde_json::Error| DecodeError::ControlJson(e.to_string());
        match tag {
            0 => Ok(Self::Health),
            1 => {
                let j: BinaryInfoJson = serde_json::from_slice(body).map_err(bad)?;
                Ok(Self::BinaryInfo {
                    binary_name: j.binary_name,
                    build_information: j.build_information,
                })
            }
            2 => {
                let j: VersionsJson = serde_json::from_slice(body).map_err(bad)?;
                Ok(Self::SupportedRequestVersions {
                    interface_version: j.interface_version,
                    provider_version: j.provider_version,
                })
            }
            0xFF => {
                let j: ErrorJson = serde_json::from_slice(body).map_err(bad)?;
                Ok(Self::Error { message: j.message })
            }
            t => Err(DecodeError::UnknownControlResponse(t)),
        }
    }
}

/// Kind byte of a control message (after a versioned interface byte).
const KIND_CONTROL: u8 = 0x00;
/// Kind byte of a provider-data message.
const KIND_PROVIDER_DATA: u8 = 0x01;

/// Everything a client sends a provider: one mixnet message.
#[allow(
    clippy::large_enum_variant,
    reason = "a request lives briefly between the codec and a send; boxing would only add an allocation"
)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderRequest {
    /// A control request (versioned interface only).
    Control {
        /// The interface version (3 or more).
        interface: Version,
        /// What is asked.
        request: ControlRequest,
    },
    /// A socks5 request.
    Socks5 {
        /// Interface and socks5 versions.
        versions: Versions,
        /// The request.
        request: Socks5Request,
    },
}

impl ProviderRequest {
    /// A v3/v3 socks5 request, as the 2026.9 client sends.
    pub fn current(request: Socks5Request) -> Self {
        Self::Socks5 {
            versions: Versions::CURRENT,
            request,
        }
    }

    /// The message bytes.
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::new();
        match self {
            Self::Control { interface, request } => {
                let v = interface.byte()?.ok_or(EncodeError::LegacyControl)?;
                out.extend_from_slice(&[v, KIND_CONTROL, request.tag()]);
            }
            Self::Socks5 { versions, request } => {
                open_provider_data(*versions, &mut out)?;
                request.encode(versions.socks5, &mut out)?;
            }
        }
        Ok(out)
    }

    /// Read a message. A first byte below 3 means the whole message is a
    /// legacy socks5 request; any interface version ≥ 3 is read with the
    /// layout of 3 (there is no upper bound) and kept as it was.
    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        match open_wrapper(b)? {
            Wrapper::Control(interface, body) => Ok(Self::Control {
                interface,
                request: ControlRequest::decode(body)?,
            }),
            Wrapper::ProviderData(interface, body) => {
                let (socks5, request) = Socks5Request::decode(body)?;
                let versions = Versions { interface, socks5 };
                Ok(Self::Socks5 { versions, request })
            }
        }
    }
}

/// Everything a provider sends a client: one mixnet message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderResponse {
    /// A control answer (versioned interface only).
    Control {
        /// The interface version of the request answered.
        interface: Version,
        /// The answer.
        response: ControlResponse,
    },
    /// A socks5 response.
    Socks5 {
        /// Interface and socks5 versions (a connection's are its Connect's).
        versions: Versions,
        /// The response.
        response: Socks5Response,
    },
}

impl ProviderResponse {
    /// The message bytes.
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::new();
        match self {
            Self::Control {
                interface,
                response,
            } => {
                let v = interface.byte()?.ok_or(EncodeError::LegacyControl)?;
                out.extend_from_slice(&[v, KIND_CONTROL]);
                response.encode(&mut out);
            }
            Self::Socks5 { versions, response } => {
                open_provider_data(*versions, &mut out)?;
                response.encode(versions.socks5, &mut out)?;
            }
        }
        Ok(out)
    }

    /// Read a message, with the same wrapper rule as [`ProviderRequest::decode`].
    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        match open_wrapper(b)? {
            Wrapper::Control(interface, body) => Ok(Self::Control {
                interface,
                response: ControlResponse::decode(body)?,
            }),
            Wrapper::ProviderData(interface, body) => {
                let (socks5, response) = Socks5Response::decode(body)?;
                let versions = Versions { interface, socks5 };
                Ok(Self::Socks5 { versions, response })
            }
        }
    }
}

/// Write the wrapper of a provider-data message (nothing in legacy form).
fn open_provider_data(versions: Versions, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    match versions.interface.byte()? {
        None if !versions.socks5.is_legacy() => Err(EncodeError::LegacyInterfaceVersionedSocks5),
        None => Ok(()),
        Some(v) => {
            out.extend_from_slice(&[v, KIND_PROVIDER_DATA]);
            Ok(())
        }
    }
}

/// A message's wrapper, opened.
enum Wrapper<'a> {
    /// A control message: the interface version and the body after the kind.
    Control(Version, &'a [u8]),
    /// A socks5 message: the interface version and the socks5 bytes (the
    /// whole message when legacy).
    ProviderData(Version, &'a [u8]),
}

fn open_wrapper(b: &[u8]) -> Result<Wrapper<'_>, DecodeError> {
    let (&first, rest) = b.split_first().ok_or(DecodeError::Empty)?;
    let interface = Version::from_byte(first);
    if interface.is_legacy() {
        return Ok(Wrapper::ProviderData(interface, b));
    }
    match rest.split_first() {
        None => Err(DecodeError::Truncated("message kind")),
        Some((&KIND_CONTROL, body)) => Ok(Wrapper::Control(interface, body)),
        Some((&KIND_PROVIDER_DATA, body)) => Ok(Wrapper::ProviderData(interface, body)),
        Some((&k, _)) => Err(DecodeError::UnknownKind(k)),
    }
}
