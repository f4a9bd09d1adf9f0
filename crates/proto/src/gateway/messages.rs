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

// `AuthenticateV2` is defined in `auth`, which does not depend on this
// module; wrapping it into the request that carries it belongs here.
impl AuthenticateV2 {
    /// Wrap into the control request.
    pub fn into_request(self) -> ClientControlRequest {
        ClientControlRequest::AuthenticateV2(Box::new(self))
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::auth::AuthenticateV2;
    use crate::gateway::CURRENT_PROTOCOL_VERSION;
    use crate::keys::IdentityKeyPair;
    use base64::Engine;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    /// Parse `text` with `parse`, compare with `value`, and check that `value`
    /// serialises back to exactly `text`.
    fn golden<T, P>(text: &str, value: T, parse: P, to_json: fn(&T) -> String)
    where
        T: PartialEq + std::fmt::Debug,
        P: Fn(&str) -> Result<T, MessageError>,
    {
        assert_eq!(parse(text).expect(text), value, "parsing {text}");
        assert_eq!(to_json(&value), text);
    }

    fn req(text: &str, value: ClientControlRequest) {
        golden(
            text,
            value,
            ClientControlRequest::parse,
            ClientControlRequest::to_json,
        );
    }

    fn resp(text: &str, value: ServerResponse) {
        golden(text, value, ServerResponse::parse, ServerResponse::to_json);
    }

    fn nums(bytes: &[u8]) -> String {
        let v: Vec<String> = bytes.iter().map(|b| b.to_string()).collect();
        format!("[{}]", v.join(","))
    }

    #[test]
    fn client_requests_golden() {
        req(
            r#"{"type":"supportedProtocol"}"#,
            ClientControlRequest::SupportedProtocol {},
        );
        req(
            r#"{"type":"handshakePayload","protocol_version":6,"data":[1,2,255]}"#,
            ClientControlRequest::handshake_payload(6, vec![1, 2, 255]),
        );
        req(
            r#"{"type":"handshakeError","message":"received invalid signature"}"#,
            ClientControlRequest::HandshakeError {
                message: "received invalid signature".into(),
            },
        );
        req(
            r#"{"type":"claimFreeTestnetBandwidth"}"#,
            ClientControlRequest::ClaimFreeTestnetBandwidth,
        );
        req(
            r#"{"type":"ecashCredential","enc_credential":[1,2],"iv":[3,4]}"#,
            ClientControlRequest::EcashCredential {
                enc_credential: vec![1, 2],
                nonce: vec![3, 4],
            },
        );
        req(
            r#"{"type":"upgradeModeJWT","token":"e30.e30.sig"}"#,
            ClientControlRequest::UpgradeModeJwt {
                token: "e30.e30.sig".into(),
            },
        );
        req(
            r#"{"type":"encryptedRequest","ciphertext":[9,8,7],"nonce":[0,0,0,0,0,0,0,0,0,0,0,1]}"#,
            ClientControlRequest::EncryptedRequest {
                ciphertext: vec![9, 8, 7],
                nonce: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1].to_vec(),
            },
        );
        req(
            r#"{"type":"authenticate","protocol_version":3,"address":"a","enc_address":"b","iv":"c"}"#,
            ClientControlRequest::Authenticate {
                protocol_version: Some(3),
                address: "a".into(),
                enc_address: "b".into(),
                iv: "c".into(),
            },
        );
        req(
            r#"{"type":"bandwidthCredential","enc_credential":[1],"iv":[2]}"#,
            ClientControlRequest::BandwidthCredential {
                enc_credential: vec![1],
                iv: vec![2],
            },
        );
        req(
            r#"{"type":"bandwidthCredentialV2","enc_credential":[1],"iv":[2]}"#,
            ClientControlRequest::BandwidthCredentialV2 {
                enc_credential: vec![1],
                iv: vec![2],
            },
        );
    }

    #[test]
    fn client_request_aliases_and_defaults() {
        let init = ClientControlRequest::parse(
            r#"{"type":"registerHandshakeInitRequest","protocol_version":5,"data":[7]}"#,
        )
        .expect("alias");
        assert_eq!(init, ClientControlRequest::handshake_payload(5, vec![7]));
        // Missing protocol_version reads as 0.
        let init = ClientControlRequest::parse(r#"{"type":"handshakePayload","data":[]}"#)
            .expect("default");
        assert_eq!(init, ClientControlRequest::handshake_payload(0, vec![]));
        // Later handshake steps do not accept the alias.
        assert!(HandshakeMessage::parse(
            r#"{"type":"registerHandshakeInitRequest","protocol_version":5,"data":[7]}"#
        )
        .is_err());
        // The ecash nonce may be spelt `nonce`.
        let ecash = ClientControlRequest::parse(
            r#"{"type":"ecashCredential","enc_credential":[],"nonce":[5]}"#,
        )
        .expect("nonce alias");
        assert_eq!(
            ecash,
            ClientControlRequest::EcashCredential {
                enc_credential: vec![],
                nonce: vec![5]
            }
        );
        // Legacy authenticate without a version.
        let legacy = ClientControlRequest::parse(
            r#"{"type":"authenticate","address":"a","enc_address":"b","iv":"c"}"#,
        )
        .expect("legacy");
        assert!(legacy.is_legacy());
        assert_eq!(
            legacy.pre_auth(),
            Err(PreAuthRejection::LegacyAuthentication)
        );
        for bad in [
            "",
            "{}",
            r#"{"type":"nope"}"#,
            r#"{"type":"handshakePayload","protocol_version":256,"data":[]}"#,
            r#"{"type":"handshakePayload","data":[256]}"#,
            r#"{"type":"SupportedProtocol"}"#,
        ] {
            assert!(ClientControlRequest::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn pre_auth_classification() {
        assert_eq!(
            ClientControlRequest::SupportedProtocol {}.pre_auth(),
            Ok(PreAuthRequest::SupportedProtocol)
        );
        assert_eq!(
            ClientControlRequest::handshake_payload(6, vec![1]).pre_auth(),
            Ok(PreAuthRequest::Register {
                protocol_version: 6,
                init: vec![1]
            })
        );
        for other in [
            ClientControlRequest::ClaimFreeTestnetBandwidth,
            ClientControlRequest::HandshakeError {
                message: "x".into(),
            },
            ClientControlRequest::BandwidthCredential {
                enc_credential: vec![],
                iv: vec![],
            },
        ] {
            assert_eq!(other.pre_auth(), Err(PreAuthRejection::InvalidRequest));
        }
        assert_eq!(
            PreAuthRejection::InvalidRequest.to_string(),
            "Only 'Register' or 'Authenticate' requests are allowed"
        );
    }

    /// A request built by the client survives the trip through the JSON
    /// control request (moved from `auth`'s `build_then_verify`).
    #[test]
    fn authenticate_v2_through_control_request() {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let id = IdentityKeyPair::generate(&mut rng);
        let key = GatewaySharedKey::from_bytes([9u8; 32]);
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let req = AuthenticateV2::new(&mut rng, &key, &id, CURRENT_PROTOCOL_VERSION, 1_700_000_000);
        let text = req.clone().into_request().to_json();
        match ClientControlRequest::parse(&text).expect("parse") {
            ClientControlRequest::AuthenticateV2(back) => assert_eq!(*back, req),
            other => panic!("unexpected {other:?}"),
        }
    }

    /// authenticateV2 with the RFC 8032 test-1 key, a fixed shared key,
    /// nonce and timestamp.
    #[test]
    fn authenticate_v2_golden() {
        let seed: [u8; 32] =
            hex::decode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
                .expect("hex")
                .try_into()
                .expect("32");
        let id = IdentityKeyPair::from_secret_bytes(&seed);
        let key = GatewaySharedKey::from_bytes([0x42; 32]);
        let nonce = [7u8; 12];
        let auth = AuthenticateV2::with_nonce(&key, &id, 6, nonce, 1_750_000_000);
        let b64 = base64::engine::general_purpose::STANDARD;
        let ct = gcm_siv_seal(key.as_bytes(), &nonce, &id.public_bytes());
        let text = format!(
            r#"{{"type":"authenticateV2","protocolVersion":6,"clientIdentity":{},"addressCiphertext":"{}","nonce":"{}","requestUnixTimestamp":1750000000,"requestSignature":{}}}"#,
            nums(&id.public_bytes()),
            b64.encode(&ct),
            b64.encode(nonce),
            nums(&auth.request_signature.to_bytes()),
        );
        // 48 bytes and 12 bytes of base64 have no padding; a 13-byte nonce does.
        assert_eq!(b64.encode(nonce), "BwcHBwcHBwcHBwcH");
        assert!(text.starts_with(
            r#"{"type":"authenticateV2","protocolVersion":6,"clientIdentity":[215,90,152,1,130,177,10,183,"#
        ));
        req(&text, auth.clone().into_request());

        // Padding is written and required.
        let mut odd = auth.clone();
        odd.nonce = vec![1u8; 13];
        let odd_text = odd.clone().into_request().to_json();
        assert!(odd_text.contains(r#""nonce":"AQEBAQEBAQEBAQEBAQ==""#));
        assert_eq!(
            ClientControlRequest::parse(&odd_text).expect("padded"),
            odd.into_request()
        );
        assert!(ClientControlRequest::parse(&odd_text.replace("AQ==", "AQ")).is_err());

        // A client identity that is not a curve point fails to parse.
        let mut not_point = [0u8; 32];
        for b in 0u8..=255 {
            not_point[0] = b;
            not_point[31] = 0x7f;
            if crate::keys::VerifyingKey::from_bytes(&not_point).is_err() {
                break;
            }
        }
        assert!(crate::keys::VerifyingKey::from_bytes(&not_point).is_err());
        let bad = text.replace(&nums(&id.public_bytes()), &nums(&not_point));
        assert!(ClientControlRequest::parse(&bad).is_err());
        // Wrong array lengths fail too.
        let short = text.replace(&nums(&id.public_bytes()), &nums(&[1u8; 31]));
        assert!(ClientControlRequest::parse(&short).is_err());
        let sig = nums(&auth.request_signature.to_bytes());
        let long_sig = format!("{},0]", &sig[..sig.len() - 1]);
        assert!(ClientControlRequest::parse(&text.replace(&sig, &long_sig)).is_err());
    }

    #[test]
    fn server_responses_golden() {
        resp(
            r#"{"type":"register","protocol_version":6,"status":true,"upgrade_mode":false}"#,
            ServerResponse::Register {
                protocol_version: 6,
                status: true,
                upgrade_mode: false,
            },
        );
        resp(
            r#"{"type":"authenticate","protocol_version":6,"status":true,"bandwidth_remaining":12345,"upgrade_mode":false}"#,
            ServerResponse::Authenticate {
                protocol_version: 6,
                status: true,
                bandwidth_remaining: 12345,
                upgrade_mode: false,
            },
        );
        resp(
            r#"{"type":"bandwidth","available_total":68719476736,"upgrade_mode":false}"#,
            ServerResponse::Bandwidth {
                available_total: 68_719_476_736,
                upgrade_mode: false,
            },
        );
        resp(
            r#"{"type":"send","remaining_bandwidth":68719474323,"upgrade_mode":true}"#,
            ServerResponse::Send {
                remaining_bandwidth: 68_719_474_323,
                upgrade_mode: true,
            },
        );
        resp(
            r#"{"type":"supportedProtocol","version":6}"#,
            ServerResponse::SupportedProtocol { version: 6 },
        );
        resp(
            r#"{"type":"error","message":"the client is not registered"}"#,
            ServerResponse::error("the client is not registered"),
        );
        resp(
            r#"{"type":"typedError","error":{"out_of_bandwidth":{"required":2413,"available":0}}}"#,
            ServerResponse::TypedError {
                error: TypedGatewayError::OutOfBandwidth {
                    required: 2413,
                    available: 0,
                },
            },
        );
        resp(
            r#"{"type":"typedError","error":"ticket_replay"}"#,
            ServerResponse::TypedError {
                error: TypedGatewayError::TicketReplay,
            },
        );
        resp(
            r#"{"type":"encryptedResponse","ciphertext":[1,2,3],"nonce":[4,5]}"#,
            ServerResponse::EncryptedResponse {
                ciphertext: vec![1, 2, 3],
                nonce: vec![4, 5],
            },
        );
    }

    #[test]
    fn server_response_defaults() {
        assert_eq!(
            ServerResponse::parse(r#"{"type":"register","status":true}"#).expect("register"),
            ServerResponse::Register {
                protocol_version: 0,
                status: true,
                upgrade_mode: false
            }
        );
        assert_eq!(
            ServerResponse::parse(
                r#"{"type":"authenticate","status":false,"bandwidth_remaining":-1}"#
            )
            .expect("authenticate"),
            ServerResponse::Authenticate {
                protocol_version: 0,
                status: false,
                bandwidth_remaining: -1,
                upgrade_mode: false
            }
        );
        assert_eq!(
            ServerResponse::parse(r#"{"type":"bandwidth","available_total":100}"#).expect("bw"),
            ServerResponse::Bandwidth {
                available_total: 100,
                upgrade_mode: false
            }
        );
        assert_eq!(
            ServerResponse::parse(r#"{"type":"send","remaining_bandwidth":100}"#).expect("send"),
            ServerResponse::Send {
                remaining_bandwidth: 100,
                upgrade_mode: false
            }
        );
        assert!(ServerResponse::parse(r#"{"type":"register"}"#).is_err());
        assert!(ServerResponse::parse(r#"{"type":"typedError","error":"nope"}"#).is_err());
        assert!(ServerResponse::Register {
            protocol_version: 6,
            status: true,
            upgrade_mode: false
        }
        .is_successful_authentication());
    }

    #[test]
    fn handshake_messages_golden() {
        golden(
            r#"{"type":"handshakePayload","protocol_version":6,"data":[1]}"#,
            HandshakeMessage::HandshakePayload {
                protocol_version: 6,
                data: vec![1],
            },
            HandshakeMessage::parse,
            HandshakeMessage::to_json,
        );
        golden(
            r#"{"type":"handshakeError","message":"received invalid signature"}"#,
            HandshakeMessage::error("received invalid signature"),
            HandshakeMessage::parse,
            HandshakeMessage::to_json,
        );
        // Non-handshake text (e.g. a stray response) is not a handshake frame.
        assert!(HandshakeMessage::parse(r#"{"type":"supportedProtocol","version":6}"#).is_err());
    }

    #[test]
    fn encrypted_requests() {
        let key = GatewaySharedKey::from_bytes([1; 32]);
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(3);
        let forget = ClientRequest::ForgetMe {
            client: true,
            stats: false,
        };
        assert_eq!(
            serde_json::to_string(&forget).expect("json"),
            r#"{"ForgetMe":{"client":true,"stats":false}}"#
        );
        let remember = ClientRequest::RememberMe {
            session_type: SessionType::Mixnet,
        };
        assert_eq!(
            serde_json::to_string(&remember).expect("json"),
            r#"{"RememberMe":{"session_type":"Mixnet"}}"#
        );
        assert_eq!(
            serde_json::to_string(&SensitiveResponse::ForgetMeAck {}).expect("json"),
            r#"{"ForgetMeAck":{}}"#
        );
        assert_eq!(
            serde_json::to_string(&SensitiveResponse::RememberMeAck {}).expect("json"),
            r#"{"RememberMeAck":{}}"#
        );

        let ClientControlRequest::EncryptedRequest { ciphertext, nonce } =
            forget.encrypt(&mut rng, &key)
        else {
            panic!("not an encrypted request");
        };
        assert_eq!(nonce.len(), 12);
        assert_eq!(
            ClientRequest::decrypt(&ciphertext, &nonce, &key),
            Ok(forget.clone())
        );
        assert_eq!(
            ClientRequest::decrypt(&ciphertext, &nonce[..11], &key),
            Err(MessageError::NonceLength(11))
        );
        let other = GatewaySharedKey::from_bytes([2; 32]);
        assert_eq!(
            ClientRequest::decrypt(&ciphertext, &nonce, &other),
            Err(MessageError::Decryption)
        );

        let ServerResponse::EncryptedResponse { ciphertext, nonce } =
            SensitiveResponse::RememberMeAck {}.encrypt(&mut rng, &key)
        else {
            panic!("not an encrypted response");
        };
        assert_eq!(
            SensitiveResponse::decrypt(&ciphertext, &nonce, &key),
            Ok(SensitiveResponse::RememberMeAck {})
        );
        // A well-encrypted plaintext of the wrong shape is malformed.
        let ct = gcm_siv_seal(key.as_bytes(), &[0; 12], br#"{"Nope":{}}"#);
        assert!(matches!(
            SensitiveResponse::decrypt(&ct, &[0; 12], &key),
            Err(MessageError::Malformed(_))
        ));
    }
}
