//! JSON control messages carried in WebSocket text frames.
//!
//! Shapes (checked by the golden tests below): every enum is internally
//! tagged by `"type"` with camelCase variant names; fields inside variants
//! stay snake_case, except in `authenticateV2` (see [`AuthenticateV2`]).
//! Byte vectors are JSON arrays of numbers. Missing `protocol_version` reads
//! as 0 and missing `upgrade_mode` as false.

use rand::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};

use super::auth::AuthenticateV2;
use super::ProtocolVersion;
use crate::crypto::{gcm_siv_open, gcm_siv_seal, GCM_SIV_NONCE_LEN};
use crate::keys::GatewaySharedKey;

/// A text message that could not be read.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum MessageError {
    /// Not JSON, or JSON of an unknown or ill-formed message.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// An AEAD nonce field that is not 12 bytes.
    #[error("nonce has {0} bytes, expected 12")]
    NonceLength(usize),
    /// The encrypted content did not decrypt under the shared key.
    #[error("failed to decrypt the encrypted content")]
    Decryption,
}

fn malformed(e: serde_json::Error) -> MessageError {
    MessageError::Malformed(e.to_string())
}

// Serialising these types cannot fail (string keys only, no fallible custom
// serialisers); an impossible failure yields an empty string, which the peer
// rejects, instead of a panic.
fn to_json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// Client to gateway text messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum ClientControlRequest {
    /// `{"type":"supportedProtocol"}`: ask for the gateway's version.
    SupportedProtocol {},
    /// A registration handshake step. The gateway's first read also accepts
    /// the type name `registerHandshakeInitRequest` for the Init message;
    /// later steps are read with [`HandshakeMessage::parse`], which does not.
    #[serde(alias = "registerHandshakeInitRequest")]
    HandshakePayload {
        /// The sender's protocol version.
        #[serde(default)]
        protocol_version: ProtocolVersion,
        /// The handshake message bytes.
        data: Vec<u8>,
    },
    /// The sender aborts the handshake. Outside a handshake a gateway treats
    /// it as an invalid request.
    HandshakeError {
        /// Human-readable reason.
        message: String,
    },
    /// Re-authentication with a stored shared key.
    AuthenticateV2(Box<AuthenticateV2>),
    /// Ask for 64 GiB of free bandwidth.
    ClaimFreeTestnetBandwidth,
    /// An encrypted zk-nym ticket (not produced by this implementation).
    EcashCredential {
        /// Ciphertext of the credential.
        enc_credential: Vec<u8>,
        /// AEAD nonce; written as `iv`, read from `iv` or `nonce`.
        #[serde(rename = "iv", alias = "nonce")]
        nonce: Vec<u8>,
    },
    /// An upgrade-mode attestation token.
    #[serde(rename = "upgradeModeJWT")]
    UpgradeModeJwt {
        /// The JWT text.
        token: String,
    },
    /// A [`ClientRequest`] encrypted under the shared key.
    EncryptedRequest {
        /// `GCM-SIV(JSON of the request) || tag`.
        ciphertext: Vec<u8>,
        /// The 12-byte nonce.
        nonce: Vec<u8>,
    },
    /// Legacy v1 authentication: parsed so that a gateway can refuse it.
    Authenticate {
        /// Optional proposed version.
        #[serde(default)]
        protocol_version: Option<ProtocolVersion>,
        /// Client address (bs58).
        address: String,
        /// Encrypted address (bs58).
        enc_address: String,
        /// IV (bs58).
        iv: String,
    },
    /// Legacy credential: parsed so that a gateway can refuse it.
    BandwidthCredential {
        /// Ciphertext.
        enc_credential: Vec<u8>,
        /// IV.
        iv: Vec<u8>,
    },
    /// Legacy credential: parsed so that a gateway can refuse it.
    BandwidthCredentialV2 {
        /// Ciphertext.
        enc_credential: Vec<u8>,
        /// IV.
        iv: Vec<u8>,
    },
}

impl ClientControlRequest {
    /// Read a text frame.
    pub fn parse(text: &str) -> Result<Self, MessageError> {
        serde_json::from_str(text).map_err(malformed)
    }

    /// The text frame.
    pub fn to_json(&self) -> String {
        to_json(self)
    }

    /// A handshake step as the client sends it (`handshakePayload`).
    pub fn handshake_payload(protocol_version: ProtocolVersion, data: Vec<u8>) -> Self {
        ClientControlRequest::HandshakePayload {
            protocol_version,
            data,
        }
    }

    /// Whether this is one of the retired request types a gateway refuses.
    pub fn is_legacy(&self) -> bool {
        matches!(
            self,
            ClientControlRequest::Authenticate { .. }
                | ClientControlRequest::BandwidthCredential { .. }
                | ClientControlRequest::BandwidthCredentialV2 { .. }
        )
    }

    /// Gateway: what to do with this request on a connection that is not
    /// authenticated yet.
    pub fn pre_auth(self) -> Result<PreAuthRequest, PreAuthRejection> {
        match self {
            ClientControlRequest::SupportedProtocol {} => Ok(PreAuthRequest::SupportedProtocol),
            ClientControlRequest::HandshakePayload {
                protocol_version,
                data,
            } => Ok(PreAuthRequest::Register {
                protocol_version,
                init: data,
            }),
            ClientControlRequest::AuthenticateV2(req) => Ok(PreAuthRequest::Authenticate(req)),
            ClientControlRequest::Authenticate { .. } => {
                Err(PreAuthRejection::LegacyAuthentication)
            }
            _ => Err(PreAuthRejection::InvalidRequest),
        }
    }
}

/// A request a gateway handles before authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PreAuthRequest {
    /// Reply `{"type":"supportedProtocol","version":6}` and keep waiting.
    SupportedProtocol,
    /// Start the registration handshake with this Init message.
    Register {
        /// The client's proposed version.
        protocol_version: ProtocolVersion,
        /// The 80-byte Init message.
        init: Vec<u8>,
    },
    /// Verify an `authenticateV2`.
    Authenticate(Box<AuthenticateV2>),
}

/// Why a gateway refuses a request before authentication. It answers with
/// `{"type":"error","message":<Display text>}` and closes the connection.
#[derive(Debug, Clone, Copy, thiserror::Error, PartialEq, Eq)]
pub enum PreAuthRejection {
    /// The legacy `authenticate` request.
    #[error("the legacy authentication method is no longer supported. please update your client")]
    LegacyAuthentication,
    /// Anything else (also unparsable text and non-text frames).
    #[error("Only 'Register' or 'Authenticate' requests are allowed")]
    InvalidRequest,
}

/// A text frame exchanged during the registration handshake (both
/// directions). Only these two type names are accepted here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum HandshakeMessage {
    /// A handshake step.
    HandshakePayload {
        /// The sender's protocol version.
        #[serde(default)]
        protocol_version: ProtocolVersion,
        /// The handshake message bytes.
        data: Vec<u8>,
    },
    /// The sender aborts the handshake.
    HandshakeError {
        /// Human-readable reason.
        message: String,
    },
}

impl HandshakeMessage {
    /// Read a text frame. Nym ignores text frames that fail here and keeps
    /// waiting; callers may do the same.
    pub fn parse(text: &str) -> Result<Self, MessageError> {
        serde_json::from_str(text).map_err(malformed)
    }

    /// The text frame.
    pub fn to_json(&self) -> String {
        to_json(self)
    }

    /// An error frame.
    pub fn error(message: impl Into<String>) -> Self {
        HandshakeMessage::HandshakeError {
            message: message.into(),
        }
    }

    /// The payload bytes, if this is a payload.
    pub fn data(&self) -> Option<&[u8]> {
        match self {
            HandshakeMessage::HandshakePayload { data, .. } => Some(data),
            HandshakeMessage::HandshakeError { .. } => None,
        }
    }
}

/// Errors a gateway reports with a typed payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case")]
pub enum TypedGatewayError {
    /// Not enough bandwidth for the request; nothing was forwarded.
    #[error("insufficient bandwidth: required {required} B, available {available} B")]
    OutOfBandwidth {
        /// Bytes the request needed.
        required: i64,
        /// Bytes available.
        available: i64,
    },
    /// A zk-nym ticket was spent twice.
    #[error("the ticket was already spent at this gateway")]
    TicketReplay,
}

/// Gateway to client text messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum ServerResponse {
    /// Answer to `authenticateV2`.
    Authenticate {
        /// The negotiated version (0 if absent).
        #[serde(default)]
        protocol_version: ProtocolVersion,
        /// Whether authentication succeeded.
        status: bool,
        /// Remaining bandwidth in bytes.
        bandwidth_remaining: i64,
        /// Whether the gateway meters nothing (false if absent).
        #[serde(default)]
        upgrade_mode: bool,
    },
    /// Sent after a successful registration handshake.
    Register {
        /// The negotiated version (0 if absent).
        #[serde(default)]
        protocol_version: ProtocolVersion,
        /// Whether registration succeeded.
        status: bool,
        /// Whether the gateway meters nothing (false if absent).
        #[serde(default)]
        upgrade_mode: bool,
    },
    /// A [`SensitiveResponse`] encrypted under the shared key.
    EncryptedResponse {
        /// `GCM-SIV(JSON) || tag`.
        ciphertext: Vec<u8>,
        /// The 12-byte nonce.
        nonce: Vec<u8>,
    },
    /// Answer to a bandwidth claim: the new total.
    Bandwidth {
        /// Total available bytes.
        available_total: i64,
        /// Whether the gateway meters nothing (false if absent).
        #[serde(default)]
        upgrade_mode: bool,
    },
    /// One per forwarded packet.
    Send {
        /// Remaining bytes.
        remaining_bandwidth: i64,
        /// Whether the gateway meters nothing (false if absent).
        #[serde(default)]
        upgrade_mode: bool,
    },
    /// Answer to `supportedProtocol`.
    SupportedProtocol {
        /// The gateway's version.
        version: ProtocolVersion,
    },
    /// A generic error.
    Error {
        /// Human-readable text.
        message: String,
    },
    /// An error clients can match on.
    TypedError {
        /// The error.
        error: TypedGatewayError,
    },
}

impl ServerResponse {
    /// Read a text frame.
    pub fn parse(text: &str) -> Result<Self, MessageError> {
        serde_json::from_str(text).map_err(malformed)
    }

    /// The text frame.
    pub fn to_json(&self) -> String {
        to_json(self)
    }

    /// A generic error response.
    pub fn error(message: impl Into<String>) -> Self {
        ServerResponse::Error {
            message: message.into(),
        }
    }

    /// Whether this reports a successful register or authenticate.
    pub fn is_successful_authentication(&self) -> bool {
        match self {
            ServerResponse::Authenticate { status, .. }
            | ServerResponse::Register { status, .. } => *status,
            _ => false,
        }
    }
}

/// Statistics session type carried by `RememberMe`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum SessionType {
    /// A VPN client.
    Vpn,
    /// A mixnet client.
    Mixnet,
    /// A WASM client.
    Wasm,
    /// A native client.
    Native,
    /// A SOCKS5 client.
    Socks5,
    /// Unknown.
    #[default]
    Unknown,
}

/// Plaintext of an `encryptedRequest` (externally tagged JSON, e.g.
/// `{"ForgetMe":{"client":true,"stats":false}}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientRequest {
    /// Ask the gateway to delete the client's data and/or statistics.
    ForgetMe {
        /// Delete client data.
        client: bool,
        /// Delete statistics.
        stats: bool,
    },
    /// Ask the gateway to keep statistics under this session type.
    RememberMe {
        /// The session type.
        session_type: SessionType,
    },
}

/// Plaintext of an `encryptedResponse`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SensitiveResponse {
    /// `{"ForgetMeAck":{}}`.
    ForgetMeAck {},
    /// `{"RememberMeAck":{}}`.
    RememberMeAck {},
}

fn seal_json<T: Serialize, R: RngCore + CryptoRng>(
    value: &T,
    rng: &mut R,
    key: &GatewaySharedKey,
) -> (Vec<u8>, Vec<u8>) {
    let plaintext = to_json(value);
    let mut nonce = [0u8; GCM_SIV_NONCE_LEN];
    rng.fill_bytes(&mut nonce);
    let ciphertext = gcm_siv_seal(key.as_bytes(), &nonce, plaintext.as_bytes());
    (ciphertext, nonce.to_vec())
}

fn open_json<T: for<'de> Deserialize<'de>>(
    ciphertext: &[u8],
    nonce: &[u8],
    key: &GatewaySharedKey,
) -> Result<T, MessageError> {
    let nonce: [u8; GCM_SIV_NONCE_LEN] = nonce
        .try_into()
        .map_err(|_| MessageError::NonceLength(nonce.len()))?;
    let plaintext =
        gcm_siv_open(key.as_bytes(), &nonce, ciphertext).map_err(|_| MessageError::Decryption)?;
    serde_json::from_slice(&plaintext).map_err(malformed)
}

impl ClientRequest {
    /// Encrypt into an `encryptedRequest` with a random nonce.
    pub fn encrypt<R: RngCore + CryptoRng>(
        &self,
        rng: &mut R,
        key: &GatewaySharedKey,
    ) -> ClientControlRequest {
        let (ciphertext, nonce) = seal_json(self, rng, key);
        ClientControlRequest::EncryptedRequest { ciphertext, nonce }
    }

    /// Decrypt the fields of an `encryptedRequest`.
    pub fn decrypt(
        ciphertext: &[u8],
        nonce: &[u8],
        key: &GatewaySharedKey,
    ) -> Result<Self, MessageError> {
        open_json(ciphertext, nonce, key)
    }
}

impl SensitiveResponse {
    /// Encrypt into an `encryptedResponse` with a random nonce.
    pub fn encrypt<R: RngCore + CryptoRng>(
        &self,
        rng: &mut R,
        key: &GatewaySharedKey,
    ) -> ServerResponse {
        let (ciphertext, nonce) = seal_json(self, rng, key);
        ServerResponse::EncryptedResponse { ciphertext, nonce }
    }

    /// Decrypt the fields of an `encryptedResponse`.
    pub fn decrypt(
        ciphertext: &[u8],
        nonce: &[u8],
        key: &GatewaySharedKey,
    ) -> Result<Self, MessageError> {
        open_json(ciphertext, nonce, key)
    }
}

/// Serde helpers for the fixed-size byte fields of `authenticateV2`: written
/// as JSON arrays of numbers, read from a sequence (or raw bytes).
pub(crate) mod byte_array {
    use serde::de::{Error, SeqAccess, Visitor};
    use serde::{Deserializer, Serializer};
    use std::fmt;

    pub(crate) fn serialize<S: Serializer, const N: usize>(
        bytes: &[u8; N],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(bytes)
    }

    struct ArrayVisitor<const N: usize>;

    impl<'de, const N: usize> Visitor<'de> for ArrayVisitor<N> {
        type Value = [u8; N];

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "an array of {N} bytes")
        }

        fn visit_bytes<E: Error>(self, v: &[u8]) -> Result<Self::Value, E> {
            v.try_into().map_err(|_| E::invalid_length(v.len(), &self))
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = [0u8; N];
            let mut n = 0usize;
            while let Some(b) = seq.next_element::<u8>()? {
                match out.get_mut(n) {
                    Some(slot) => *slot = b,
                    None => return Err(A::Error::invalid_length(n + 1, &self)),
                }
                n += 1;
            }
            if n != N {
                return Err(A::Error::invalid_length(n, &self));
            }
            Ok(out)
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
        d: D,
    ) -> Result<[u8; N], D::Error> {
        d.deserialize_bytes(ArrayVisitor::<N>)
    }
}

/// Serde helper: standard base64 with padding.
pub(crate) mod base64_padded {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}
