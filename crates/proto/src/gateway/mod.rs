//! The client-gateway protocol (Nym 2026.9), both sides, without I/O.
//!
//! A connection is one WebSocket. Text frames carry JSON control messages
//! ([`messages`]); binary frames carry encrypted mix traffic ([`frames`]).
//! A fresh client registers through a four-message handshake ([`handshake`])
//! that yields the [`GatewaySharedKey`](crate::keys::GatewaySharedKey); a
//! returning client proves it holds that key with `authenticateV2` ([`auth`]).
//!
//! This module also holds the protocol-version rules and the bandwidth
//! accounting constants, which both sides need.
//!
//! # Layout
//! - [`messages`]: `ClientControlRequest`, `ServerResponse`, handshake text
//!   frames and the encrypted JSON requests.
//! - [`handshake`]: registration handshake state machines (client, gateway).
//! - [`auth`]: building and verifying `authenticateV2`.
//! - [`frames`]: binary frame sealing and opening.
//! - `serde_helpers.rs`: serde helpers for byte fields of the JSON messages
//!   (used by [`auth`]).

pub mod auth;
pub mod frames;
pub mod handshake;
pub mod messages;
mod serde_helpers;

pub use auth::{AuthError, AuthenticateV2, StoredClient, VerifiedAuth};
pub use frames::{ClientFrameKind, FrameError, GatewayFrameKind};
pub use handshake::{
    ClientAwaitingFinalization, ClientAwaitingMaterial, GatewayAwaitingMaterial, HandshakeError,
    HandshakeOutcome,
};
pub use messages::{
    ClientControlRequest, ClientRequest, HandshakeMessage, MessageError, PreAuthRejection,
    PreAuthRequest, SensitiveResponse, ServerResponse, SessionType, TypedGatewayError,
};

/// A client-gateway protocol version (one byte on the wire and in JSON).
pub type ProtocolVersion = u8;

/// Version 3: AES-256-GCM-SIV with random nonces.
pub const AES_GCM_SIV_PROTOCOL_VERSION: ProtocolVersion = 3;
/// Version 4: replay-resistant `authenticateV2`.
pub const AUTHENTICATE_V2_PROTOCOL_VERSION: ProtocolVersion = 4;
/// Version 5: forwarded packets carry a key-rotation byte (`ForwardSphinxV2`).
pub const KEY_ROTATION_PROTOCOL_VERSION: ProtocolVersion = 5;
/// Version 6: responses carry the `upgrade_mode` flag.
pub const UPGRADE_MODE_PROTOCOL_VERSION: ProtocolVersion = 6;
/// The version this implementation speaks (Nym 2026.9: 6).
pub const CURRENT_PROTOCOL_VERSION: ProtocolVersion = UPGRADE_MODE_PROTOCOL_VERSION;
/// The lowest version either side of this implementation accepts for
/// authentication: `authenticateV2` and GCM-SIV are required.
pub const MIN_PROTOCOL_VERSION: ProtocolVersion = AUTHENTICATE_V2_PROTOCOL_VERSION;

/// A version that the rules below refuse.
#[derive(Debug, Clone, Copy, thiserror::Error, PartialEq, Eq)]
pub enum VersionError {
    /// The gateway announced a version below [`MIN_PROTOCOL_VERSION`].
    #[error(
        "gateway protocol version {gateway} is too old (need at least {MIN_PROTOCOL_VERSION})"
    )]
    GatewayTooOld {
        /// What the gateway announced.
        gateway: ProtocolVersion,
    },
    /// A peer asked for a version this side cannot speak (below the
    /// minimum, or newer than [`CURRENT_PROTOCOL_VERSION`]).
    #[error(
        "incompatible protocol version: ours is {CURRENT_PROTOCOL_VERSION}, the peer uses {peer}"
    )]
    Incompatible {
        /// The version the peer used.
        peer: ProtocolVersion,
    },
}

/// Client: the version to propose in `register`/`authenticateV2`, given the
/// version the gateway announced in its `supportedProtocol` response.
/// Gateways below 4 are refused; a newer gateway gets our own version.
pub fn client_proposal(
    gateway_announced: ProtocolVersion,
) -> Result<ProtocolVersion, VersionError> {
    if gateway_announced < MIN_PROTOCOL_VERSION {
        return Err(VersionError::GatewayTooOld {
            gateway: gateway_announced,
        });
    }
    Ok(gateway_announced.min(CURRENT_PROTOCOL_VERSION))
}

/// Client: check the `protocol_version` echoed in an `authenticate` response
/// (or carried by the gateway's handshake message). A version newer than
/// ours is refused; anything else becomes the negotiated version.
pub fn client_accept_gateway_version(
    gateway: ProtocolVersion,
) -> Result<ProtocolVersion, VersionError> {
    if gateway > CURRENT_PROTOCOL_VERSION {
        return Err(VersionError::Incompatible { peer: gateway });
    }
    Ok(gateway)
}

/// Gateway: the version to use for an `authenticateV2` proposal. Proposals
/// below 4 or above our own are refused; otherwise the proposal is echoed.
pub fn gateway_auth_version(proposed: ProtocolVersion) -> Result<ProtocolVersion, VersionError> {
    if !(MIN_PROTOCOL_VERSION..=CURRENT_PROTOCOL_VERSION).contains(&proposed) {
        return Err(VersionError::Incompatible { peer: proposed });
    }
    Ok(proposed)
}

/// Gateway: the version to use for a registration handshake. A proposal
/// above our own is lowered to our own; any lower one (even below 4) is
/// accepted as is, as Nym's gateway does.
pub fn gateway_register_version(proposed: ProtocolVersion) -> ProtocolVersion {
    proposed.min(CURRENT_PROTOCOL_VERSION)
}

/// Whether a negotiated version makes the client send `ForwardSphinxV2`
/// (binary kind 2, with the key-rotation byte) instead of `ForwardSphinx`.
pub fn uses_forward_sphinx_v2(negotiated: ProtocolVersion) -> bool {
    negotiated >= KEY_ROTATION_PROTOCOL_VERSION
}

/// The binary frame kind a client sends under a negotiated version.
pub fn forward_kind_for(negotiated: ProtocolVersion) -> ClientFrameKind {
    if uses_forward_sphinx_v2(negotiated) {
        ClientFrameKind::ForwardSphinxV2
    } else {
        ClientFrameKind::ForwardSphinx
    }
}

/// Bandwidth accounting shared by both sides. Amounts are bytes as `i64`,
/// matching the JSON fields.
pub mod bandwidth {
    use super::messages::TypedGatewayError;

    /// What one `claimFreeTestnetBandwidth` adds: 64 GiB.
    pub const FREE_TESTNET_BANDWIDTH: i64 = 64 * 1024 * 1024 * 1024;
    /// Value of a mixnet entry ticket (200 MB); the threshold is a fifth of it.
    pub const MIXNET_ENTRY_TICKET_BANDWIDTH: i64 = 200 * 1000 * 1000;
    /// Below this remaining amount a client claims more (40,000,000 bytes).
    pub const REMAINING_BANDWIDTH_THRESHOLD: i64 = MIXNET_ENTRY_TICKET_BANDWIDTH / 5;

    /// Cost of one forward request: the length of its sphinx packet.
    pub fn forward_cost(sphinx_packet_len: usize) -> i64 {
        i64::try_from(sphinx_packet_len).unwrap_or(i64::MAX)
    }

    /// Client: whether to claim more bandwidth (after authentication and
    /// before sending) given the last reported remaining amount.
    pub fn client_should_claim(remaining: i64) -> bool {
        remaining < REMAINING_BANDWIDTH_THRESHOLD
    }

    /// Gateway: the new total after a free claim.
    pub fn gateway_after_free_claim(available: i64) -> i64 {
        available.saturating_add(FREE_TESTNET_BANDWIDTH)
    }

    /// Gateway: charge one forward. Returns the remaining amount, or the
    /// `out_of_bandwidth` error (then the packet is not forwarded).
    pub fn gateway_try_use(available: i64, required: i64) -> Result<i64, TypedGatewayError> {
        if available < required {
            return Err(TypedGatewayError::OutOfBandwidth {
                required,
                available,
            });
        }
        Ok(available - required)
    }

    /// Gateway in upgrade mode: the amount it reports (metering is off).
    pub fn upgrade_mode_reported(actual: i64) -> i64 {
        actual.max(REMAINING_BANDWIDTH_THRESHOLD.saturating_add(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_proposal_rules() {
        assert_eq!(
            client_proposal(3),
            Err(VersionError::GatewayTooOld { gateway: 3 })
        );
        assert_eq!(client_proposal(4), Ok(4));
        assert_eq!(client_proposal(5), Ok(5));
        assert_eq!(client_proposal(6), Ok(6));
        assert_eq!(client_proposal(200), Ok(CURRENT_PROTOCOL_VERSION));
        assert_eq!(client_accept_gateway_version(5), Ok(5));
        assert!(client_accept_gateway_version(7).is_err());
    }

    #[test]
    fn gateway_rules() {
        for v in [0, 1, 3, 7, 255] {
            assert_eq!(
                gateway_auth_version(v),
                Err(VersionError::Incompatible { peer: v })
            );
        }
        for v in 4..=6 {
            assert_eq!(gateway_auth_version(v), Ok(v));
        }
        assert_eq!(gateway_register_version(0), 0);
        assert_eq!(gateway_register_version(3), 3);
        assert_eq!(gateway_register_version(6), 6);
        assert_eq!(gateway_register_version(48), 6);
        assert!(!uses_forward_sphinx_v2(4));
        assert!(uses_forward_sphinx_v2(5));
        assert_eq!(forward_kind_for(6), ClientFrameKind::ForwardSphinxV2);
        assert_eq!(forward_kind_for(4), ClientFrameKind::ForwardSphinx);
    }

    #[test]
    fn bandwidth_rules() {
        use bandwidth::*;
        assert_eq!(FREE_TESTNET_BANDWIDTH, 68_719_476_736);
        assert_eq!(REMAINING_BANDWIDTH_THRESHOLD, 40_000_000);
        assert_eq!(forward_cost(2413), 2413);
        assert!(client_should_claim(0));
        assert!(client_should_claim(39_999_999));
        assert!(!client_should_claim(40_000_000));
        assert_eq!(gateway_after_free_claim(100), 100 + FREE_TESTNET_BANDWIDTH);
        assert_eq!(gateway_after_free_claim(i64::MAX), i64::MAX);
        assert_eq!(gateway_try_use(2413, 2413), Ok(0));
        assert_eq!(
            gateway_try_use(2412, 2413),
            Err(TypedGatewayError::OutOfBandwidth {
                required: 2413,
                available: 2412
            })
        );
        assert_eq!(upgrade_mode_reported(0), 40_000_001);
        assert_eq!(upgrade_mode_reported(50_000_000), 50_000_000);
    }

    /// No parser panics on random or truncated input.
    mod no_panic {
        use super::super::auth::{AuthenticateV2, StoredClient};
        use super::super::frames::{open_client_frame, open_gateway_frame, seal_client_frame};
        use super::super::handshake::{
            init_client_identity, ClientAwaitingMaterial, GatewayAwaitingMaterial,
        };
        use super::super::*;
        use crate::keys::{GatewaySharedKey, IdentityKeyPair, Signature};
        use proptest::prelude::*;
        use rand::SeedableRng;
        use rand_chacha::ChaCha20Rng;

        fn samples() -> Vec<String> {
            let key = GatewaySharedKey::from_bytes([3; 32]);
            let id = IdentityKeyPair::from_secret_bytes(&[4; 32]);
            vec![
                ClientControlRequest::SupportedProtocol {}.to_json(),
                ClientControlRequest::handshake_payload(6, vec![1; 80]).to_json(),
                AuthenticateV2::with_nonce(&key, &id, 6, [1; 12], 1_700_000_000)
                    .into_request()
                    .to_json(),
                r#"{"type":"ecashCredential","enc_credential":[1],"nonce":[2]}"#.to_string(),
                ServerResponse::Authenticate {
                    protocol_version: 6,
                    status: true,
                    bandwidth_remaining: 5,
                    upgrade_mode: false,
                }
                .to_json(),
                r#"{"type":"typedError","error":{"out_of_bandwidth":{"required":1,"available":0}}}"#
                    .to_string(),
                HandshakeMessage::error("x").to_json(),
            ]
        }

        fn parse_all(text: &str) {
            let _ = ClientControlRequest::parse(text);
            let _ = ServerResponse::parse(text);
            let _ = HandshakeMessage::parse(text);
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(128))]

            #[test]
            fn json_random(text in ".{0,200}") {
                parse_all(&text);
            }

            #[test]
            fn json_truncated_or_mutated(which in 0usize..7, cut in 0usize..400, pos in 0usize..400, byte in any::<u8>()) {
                let samples = samples();
                let text = &samples[which % samples.len()];
                let cut = cut.min(text.len());
                parse_all(&text[..cut]);
                let mut bytes = text.clone().into_bytes();
                if !bytes.is_empty() {
                    let p = pos % bytes.len();
                    bytes[p] = byte;
                }
                if let Ok(mutated) = String::from_utf8(bytes) {
                    parse_all(&mutated);
                }
            }

            #[test]
            fn auth_verify_random(
                version in any::<u8>(),
                ts in any::<u64>(),
                now in any::<u64>(),
                last in proptest::option::of(any::<u64>()),
                nonce in proptest::collection::vec(any::<u8>(), 0..20),
                ct in proptest::collection::vec(any::<u8>(), 0..64),
                sig in proptest::collection::vec(any::<u8>(), 64),
            ) {
                let id = IdentityKeyPair::from_secret_bytes(&[4; 32]);
                let sig: [u8; 64] = sig.try_into().unwrap_or([0; 64]);
                let mut req = AuthenticateV2 {
                    protocol_version: version,
                    client_identity: id.public(),
                    address_ciphertext: ct,
                    nonce,
                    request_unix_timestamp: ts,
                    request_signature: Signature::from_bytes(&sig),
                };
                let lookup = |_: &[u8; 32]| Some(StoredClient {
                    shared_key: GatewaySharedKey::from_bytes([3; 32]),
                    last_used_timestamp: last,
                });
                let _ = req.verify(now, lookup);
                // Properly signed but otherwise random.
                req.request_signature = id.sign(&req.signed_bytes());
                let _ = req.verify(now, lookup);
            }

            #[test]
            fn handshake_random(data in proptest::collection::vec(any::<u8>(), 0..200), version in any::<u8>()) {
                let mut rng = ChaCha20Rng::seed_from_u64(5);
                let gw = IdentityKeyPair::from_secret_bytes(&[6; 32]);
                let client = IdentityKeyPair::from_secret_bytes(&[7; 32]);
                let _ = init_client_identity(&data);
                let _ = GatewayAwaitingMaterial::start(&mut rng, &gw, &data, version);

                let (c, init) = ClientAwaitingMaterial::start(&mut rng, &client, gw.public(), 6);
                let _ = ClientAwaitingMaterial::start(&mut rng, &client, gw.public(), 6)
                    .0
                    .on_gateway_material(&mut rng, &data, version);
                let init = init.data().map(<[u8]>::to_vec).unwrap_or_default();
                if let Ok((g, material)) = GatewayAwaitingMaterial::start(&mut rng, &gw, &init, 6) {
                    let _ = g.on_client_material(&data, version);
                    if let Ok((c2, _)) = c.on_message(&mut rng, &material) {
                        let _ = c2.on_finalization(&data);
                    }
                }
            }

            #[test]
            fn frames_random(data in proptest::collection::vec(any::<u8>(), 0..300), cut in 0usize..300) {
                let key = GatewaySharedKey::from_bytes([8; 32]);
                let _ = open_client_frame(&key, &data);
                let _ = open_gateway_frame(&key, &data);
                let mut rng = ChaCha20Rng::seed_from_u64(9);
                let frame = seal_client_frame(&mut rng, &key, ClientFrameKind::ForwardSphinxV2, &data);
                let cut = cut.min(frame.len());
                let _ = open_client_frame(&key, &frame[..cut]);
                prop_assert_eq!(
                    open_client_frame(&key, &frame),
                    Ok((ClientFrameKind::ForwardSphinxV2, data.clone()))
                );
            }
        }
    }
}
