//! `authenticateV2`: a returning client proves it holds the shared key agreed
//! at registration, and binds the proof to a timestamp so that a captured
//! request cannot be replayed.
//!
//! The client encrypts its own ed25519 public key under the shared key with a
//! fresh nonce and signs
//! `version(1) || client_pub(32) || ciphertext(48) || nonce(12) || timestamp(u64 BE)`.

use rand::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};

use super::serde_helpers::{base64_padded, byte_array};
use super::{gateway_auth_version, ProtocolVersion, VersionError};
use crate::crypto::{gcm_siv_seal, GCM_SIV_NONCE_LEN};
use crate::keys::{verify, GatewaySharedKey, IdentityKeyPair, Signature, VerifyingKey};

/// Largest accepted difference between a request's timestamp and the
/// gateway's clock, in seconds (either direction, inclusive).
pub const MAX_REQUEST_TIMESTAMP_SKEW_SECS: u64 = 120;
/// Length of the encrypted client address (32 bytes + 16-byte tag).
pub const ADDRESS_CIPHERTEXT_LEN: usize = 48;
/// Length of the signed byte string.
pub const SIGNED_BYTES_LEN: usize = 1 + 32 + ADDRESS_CIPHERTEXT_LEN + GCM_SIV_NONCE_LEN + 8;

/// The `authenticateV2` payload. In JSON its field names are camelCase,
/// `clientIdentity` and `requestSignature` are arrays of numbers, and
/// `addressCiphertext` and `nonce` are standard base64 with padding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthenticateV2 {
    /// The proposed protocol version.
    pub protocol_version: ProtocolVersion,
    /// The client's ed25519 identity (a valid curve point, checked on parse).
    #[serde(with = "identity_serde")]
    pub client_identity: VerifyingKey,
    /// `GCM-SIV_K(nonce, client_identity bytes)`, 48 bytes when well formed.
    #[serde(with = "base64_padded")]
    pub address_ciphertext: Vec<u8>,
    /// The AEAD nonce, 12 bytes when well formed.
    #[serde(with = "base64_padded")]
    pub nonce: Vec<u8>,
    /// Client clock, unix seconds.
    pub request_unix_timestamp: u64,
    /// Ed25519 signature over [`AuthenticateV2::signed_bytes`].
    #[serde(with = "signature_serde")]
    pub request_signature: Signature,
}

mod identity_serde {
    use super::byte_array;
    use crate::keys::VerifyingKey;
    use serde::{Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(key: &VerifyingKey, s: S) -> Result<S::Ok, S::Error> {
        byte_array::serialize(key.as_bytes(), s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<VerifyingKey, D::Error> {
        let bytes: [u8; 32] = byte_array::deserialize(d)?;
        VerifyingKey::from_bytes(&bytes).map_err(serde::de::Error::custom)
    }
}

mod signature_serde {
    use super::byte_array;
    use crate::keys::Signature;
    use serde::{Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(sig: &Signature, s: S) -> Result<S::Ok, S::Error> {
        byte_array::serialize(&sig.to_bytes(), s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Signature, D::Error> {
        let bytes: [u8; 64] = byte_array::deserialize(d)?;
        Ok(Signature::from_bytes(&bytes))
    }
}

impl AuthenticateV2 {
    /// Client: build a request with a random nonce. `now_unix` is the
    /// client's clock in seconds.
    pub fn new<R: RngCore + CryptoRng>(
        rng: &mut R,
        shared_key: &GatewaySharedKey,
        identity: &IdentityKeyPair,
        protocol_version: ProtocolVersion,
        now_unix: u64,
    ) -> Self {
        let mut nonce = [0u8; GCM_SIV_NONCE_LEN];
        rng.fill_bytes(&mut nonce);
        Self::with_nonce(shared_key, identity, protocol_version, nonce, now_unix)
    }

    /// Client: build a request with a given nonce (deterministic; tests).
    pub fn with_nonce(
        shared_key: &GatewaySharedKey,
        identity: &IdentityKeyPair,
        protocol_version: ProtocolVersion,
        nonce: [u8; GCM_SIV_NONCE_LEN],
        now_unix: u64,
    ) -> Self {
        let client_identity = identity.public();
        let address_ciphertext =
            gcm_siv_seal(shared_key.as_bytes(), &nonce, client_identity.as_bytes());
        let mut req = AuthenticateV2 {
            protocol_version,
            client_identity,
            address_ciphertext,
            nonce: nonce.to_vec(),
            request_unix_timestamp: now_unix,
            // Replaced below once the content is fixed.
            request_signature: Signature::from_bytes(&[0u8; 64]),
        };
        req.request_signature = identity.sign(&req.signed_bytes());
        req
    }

    /// The signed bytes: `version || client_pub || ciphertext || nonce ||
    /// timestamp (u64 BE)`. The variable fields are taken as they are, so a
    /// malformed request still has a well-defined signed string.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(1 + 32 + self.address_ciphertext.len() + self.nonce.len() + 8);
        out.push(self.protocol_version);
        out.extend_from_slice(self.client_identity.as_bytes());
        out.extend_from_slice(&self.address_ciphertext);
        out.extend_from_slice(&self.nonce);
        out.extend_from_slice(&self.request_unix_timestamp.to_be_bytes());
        out
    }

    /// Gateway: verify the request in Nym's order: protocol version,
    /// timestamp skew against `now_unix`, signature, stored registration
    /// (`lookup` gets the client's 32-byte address, i.e. its identity bytes),
    /// address ciphertext (constant-time), then replay (timestamp strictly
    /// after the last accepted one). On success the caller stores
    /// [`VerifiedAuth::timestamp`] as the new last-used timestamp.
    pub fn verify<F>(&self, now_unix: u64, lookup: F) -> Result<VerifiedAuth, AuthError>
    where
        F: FnOnce(&[u8; 32]) -> Option<StoredClient>,
    {
        let protocol_version =
            gateway_auth_version(self.protocol_version).map_err(AuthError::Version)?;

        let skew = i128::from(self.request_unix_timestamp) - i128::from(now_unix);
        if skew.unsigned_abs() > u128::from(MAX_REQUEST_TIMESTAMP_SKEW_SECS) {
            return Err(AuthError::TimestampSkew {
                received: self.request_unix_timestamp,
                server: now_unix,
            });
        }

        if !verify(
            &self.client_identity,
            &self.signed_bytes(),
            &self.request_signature,
        ) {
            return Err(AuthError::InvalidSignature);
        }

        let address = self.client_identity.to_bytes();
        let stored = lookup(&address).ok_or(AuthError::NotRegistered)?;

        let nonce: [u8; GCM_SIV_NONCE_LEN] = self
            .nonce
            .as_slice()
            .try_into()
            .map_err(|_| AuthError::NonceLength(self.nonce.len()))?;
        let expected = gcm_siv_seal(stored.shared_key.as_bytes(), &nonce, &address);
        if !constant_time_eq(&expected, &self.address_ciphertext) {
            return Err(AuthError::CiphertextMismatch);
        }

        if let Some(previous) = stored.last_used_timestamp {
            if self.request_unix_timestamp <= previous {
                return Err(AuthError::RequestReuse);
            }
        }

        Ok(VerifiedAuth {
            protocol_version,
            client_address: address,
            timestamp: self.request_unix_timestamp,
            shared_key: stored.shared_key,
        })
    }
}

/// What the gateway stored for a registered client.
#[derive(Debug, Clone)]
pub struct StoredClient {
    /// The shared key from registration.
    pub shared_key: GatewaySharedKey,
    /// Timestamp of the last accepted `authenticateV2`, if any.
    pub last_used_timestamp: Option<u64>,
}

/// A request that passed every check.
#[derive(Debug, Clone)]
pub struct VerifiedAuth {
    /// The version to echo in the `authenticate` response.
    pub protocol_version: ProtocolVersion,
    /// The client's address (its identity bytes).
    pub client_address: [u8; 32],
    /// The request timestamp: store it as the new last-used value (it is
    /// also the session start used by the duplicate-connection check).
    pub timestamp: u64,
    /// The client's shared key.
    pub shared_key: GatewaySharedKey,
}

/// Why a gateway refused an `authenticateV2`. The gateway answers with
/// `{"type":"error","message":…}` and closes the connection.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    /// The proposed version is below 4 or newer than ours.
    #[error(transparent)]
    Version(VersionError),
    /// The timestamp is more than 120 s away from the gateway's clock.
    #[error("the request timestamp {received} is too far from the server time {server}")]
    TimestampSkew {
        /// Request timestamp.
        received: u64,
        /// Gateway clock.
        server: u64,
    },
    /// The signature does not verify under the claimed identity.
    #[error("failed to verify request signature")]
    InvalidSignature,
    /// No shared key is stored for this client.
    #[error("the client is not registered")]
    NotRegistered,
    /// The nonce field is not 12 bytes.
    #[error("nonce has {0} bytes, expected 12")]
    NonceLength(usize),
    /// The address ciphertext does not match the stored key.
    #[error("failed to verify provided address ciphertext")]
    CiphertextMismatch,
    /// The timestamp is not later than the last accepted one.
    #[error("the request timestamp is not later than one previously used")]
    RequestReuse,
}

/// Compare two byte strings without branching on their contents (lengths
/// are public).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::CURRENT_PROTOCOL_VERSION;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    const NOW: u64 = 1_700_000_000;

    fn setup() -> (IdentityKeyPair, GatewaySharedKey) {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let id = IdentityKeyPair::generate(&mut rng);
        (id, GatewaySharedKey::from_bytes([9u8; 32]))
    }

    fn stored(key: &GatewaySharedKey, last: Option<u64>) -> Option<StoredClient> {
        Some(StoredClient {
            shared_key: key.clone(),
            last_used_timestamp: last,
        })
    }

    #[test]
    fn build_then_verify() {
        let (id, key) = setup();
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let req = AuthenticateV2::new(&mut rng, &key, &id, CURRENT_PROTOCOL_VERSION, NOW);
        assert_eq!(req.address_ciphertext.len(), ADDRESS_CIPHERTEXT_LEN);
        let ok = req
            .verify(NOW + 5, |addr| {
                assert_eq!(addr, &id.public_bytes());
                stored(&key, Some(NOW - 1000))
            })
            .expect("valid request");
        assert_eq!(ok.protocol_version, CURRENT_PROTOCOL_VERSION);
        assert_eq!(ok.timestamp, NOW);
        assert_eq!(ok.client_address, id.public_bytes());
        assert_eq!(ok.shared_key, key);
        // First authentication ever (no previous timestamp). The trip through
        // JSON is tested in `messages`.
        assert!(req.verify(NOW, |_| stored(&key, None)).is_ok());
    }

    #[test]
    fn signed_bytes_layout() {
        let (id, key) = setup();
        let nonce = [0xA5u8; 12];
        let ts = 0x0102_0304_0506_0708u64;
        let req = AuthenticateV2::with_nonce(&key, &id, 6, nonce, ts);
        let signed = req.signed_bytes();
        assert_eq!(signed.len(), SIGNED_BYTES_LEN);
        assert_eq!(SIGNED_BYTES_LEN, 101);
        let ct = gcm_siv_seal(key.as_bytes(), &nonce, &id.public_bytes());
        let mut expected = vec![6u8];
        expected.extend_from_slice(&id.public_bytes());
        expected.extend_from_slice(&ct);
        expected.extend_from_slice(&nonce);
        expected.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(signed, expected);
        assert_eq!(&signed[33..81], ct.as_slice());
        assert_eq!(&signed[81..93], &nonce);
        assert_eq!(&signed[93..], &ts.to_be_bytes());
        assert!(verify(&id.public(), &expected, &req.request_signature));
        // Ed25519 is deterministic, so the signature is fixed too.
        assert_eq!(req.request_signature, id.sign(&expected));
    }

    #[test]
    fn each_failure_has_its_error() {
        let (id, key) = setup();
        let nonce = [1u8; 12];
        let req = AuthenticateV2::with_nonce(&key, &id, 6, nonce, NOW);

        // Wrong version (too old, too new): checked before anything else.
        for v in [3u8, 7] {
            let bad = AuthenticateV2::with_nonce(&key, &id, v, nonce, NOW);
            assert_eq!(
                bad.verify(NOW, |_| None).err(),
                Some(AuthError::Version(VersionError::Incompatible { peer: v }))
            );
        }

        // Skew: 120 s either way is fine, 121 is not.
        assert!(req.verify(NOW + 120, |_| stored(&key, None)).is_ok());
        assert!(req.verify(NOW - 120, |_| stored(&key, None)).is_ok());
        assert!(matches!(
            req.verify(NOW + 121, |_| stored(&key, None)),
            Err(AuthError::TimestampSkew { .. })
        ));
        assert!(matches!(
            req.verify(NOW - 121, |_| stored(&key, None)),
            Err(AuthError::TimestampSkew { .. })
        ));
        let far = AuthenticateV2::with_nonce(&key, &id, 6, nonce, u64::MAX);
        assert!(matches!(
            far.verify(NOW, |_| stored(&key, None)),
            Err(AuthError::TimestampSkew { .. })
        ));

        // Bad signature: a tampered timestamp.
        let mut tampered = req.clone();
        tampered.request_unix_timestamp += 1;
        assert!(matches!(
            tampered.verify(NOW, |_| stored(&key, None)),
            Err(AuthError::InvalidSignature)
        ));

        // Not registered.
        assert!(matches!(
            req.verify(NOW, |_| None),
            Err(AuthError::NotRegistered)
        ));

        // Wrong stored key.
        let other = GatewaySharedKey::from_bytes([8u8; 32]);
        assert!(matches!(
            req.verify(NOW, |_| stored(&other, None)),
            Err(AuthError::CiphertextMismatch)
        ));

        // Replay: equal and older timestamps are refused, newer accepted.
        assert!(matches!(
            req.verify(NOW, |_| stored(&key, Some(NOW))),
            Err(AuthError::RequestReuse)
        ));
        assert!(matches!(
            req.verify(NOW, |_| stored(&key, Some(NOW + 1))),
            Err(AuthError::RequestReuse)
        ));
        assert!(req.verify(NOW, |_| stored(&key, Some(NOW - 1))).is_ok());

        // A signed request with a 13-byte nonce fails at the ciphertext step.
        let mut odd = req.clone();
        odd.nonce.push(0);
        odd.request_signature = id.sign(&odd.signed_bytes());
        assert!(matches!(
            odd.verify(NOW, |_| stored(&key, None)),
            Err(AuthError::NonceLength(13))
        ));
    }

    #[test]
    fn constant_time_compare() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
