//! A client's long-lived keys: ed25519 identity, x25519 encryption, the
//! acknowledgement key and the gateway shared key, with PEM persistence.

use ed25519_dalek::{Signer, Verifier};
use rand::{CryptoRng, RngCore};
use zeroize::{Zeroize, Zeroizing};

use crate::pem::{self, PemError};

pub use ed25519_dalek::{Signature, SigningKey, VerifyingKey};
pub use x25519_dalek::{PublicKey as X25519Public, StaticSecret as X25519Secret};

/// An ed25519 identity key pair (the client's or a node's identity).
#[derive(Clone)]
pub struct IdentityKeyPair {
    signing: SigningKey,
}

impl std::fmt::Debug for IdentityKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityKeyPair")
            .field("public", &bs58::encode(self.public_bytes()).into_string())
            .finish_non_exhaustive()
    }
}

impl IdentityKeyPair {
    /// A fresh random key pair.
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        Self {
            signing: SigningKey::generate(rng),
        }
    }

    /// From the raw 32-byte secret seed.
    pub fn from_secret_bytes(bytes: &[u8; 32]) -> Self {
        Self {
            signing: SigningKey::from_bytes(bytes),
        }
    }

    /// The raw 32-byte secret seed.
    pub fn secret_bytes(&self) -> [u8; 32] {
        self.signing.to_bytes()
    }

    /// The public half.
    pub fn public(&self) -> VerifyingKey {
        self.signing.verifying_key()
    }

    /// The raw public key bytes.
    pub fn public_bytes(&self) -> [u8; 32] {
        self.signing.verifying_key().to_bytes()
    }

    /// Plain RFC 8032 Ed25519 signature over `msg`.
    pub fn sign(&self, msg: &[u8]) -> Signature {
        self.signing.sign(msg)
    }

    /// PEM of the private seed (label `ED25519 PRIVATE KEY`).
    pub fn private_pem(&self) -> Zeroizing<String> {
        let mut seed = self.secret_bytes();
        let out = pem::encode_secret(pem::ED25519_PRIVATE, &seed);
        seed.zeroize();
        out
    }

    /// PEM of the public key (label `ED25519 PUBLIC KEY`).
    pub fn public_pem(&self) -> String {
        pem::encode(pem::ED25519_PUBLIC, &self.public_bytes())
    }

    /// Read a private identity PEM.
    pub fn from_private_pem(text: &str) -> Result<Self, PemError> {
        let mut seed = pem::decode_fixed::<32>(text, pem::ED25519_PRIVATE)?;
        let kp = Self::from_secret_bytes(&seed);
        seed.zeroize();
        Ok(kp)
    }
}

/// Verify a plain Ed25519 signature.
pub fn verify(key: &VerifyingKey, msg: &[u8], sig: &Signature) -> bool {
    key.verify(msg, sig).is_ok()
}

/// Read a public identity PEM; the key must be a valid Edwards point.
pub fn identity_public_from_pem(text: &str) -> Result<VerifyingKey, KeyError> {
    let bytes = pem::decode_fixed::<32>(text, pem::ED25519_PUBLIC)?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| KeyError::InvalidEd25519)
}

/// An x25519 encryption key pair (the client's end-to-end key, or a node's
/// sphinx key).
#[derive(Clone)]
pub struct EncryptionKeyPair {
    secret: X25519Secret,
    public: X25519Public,
}

impl std::fmt::Debug for EncryptionKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncryptionKeyPair")
            .field(
                "public",
                &bs58::encode(self.public.as_bytes()).into_string(),
            )
            .finish_non_exhaustive()
    }
}

impl EncryptionKeyPair {
    /// A fresh random key pair.
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        let secret = X25519Secret::random_from_rng(rng);
        let public = X25519Public::from(&secret);
        Self { secret, public }
    }

    /// From the raw 32-byte secret (clamped when used, as X25519 requires).
    pub fn from_secret_bytes(bytes: [u8; 32]) -> Self {
        let secret = X25519Secret::from(bytes);
        let public = X25519Public::from(&secret);
        Self { secret, public }
    }

    /// The secret half.
    pub fn secret(&self) -> &X25519Secret {
        &self.secret
    }

    /// The public half.
    pub fn public(&self) -> X25519Public {
        self.public
    }

    /// X25519 with a peer's public key.
    pub fn diffie_hellman(&self, peer: &X25519Public) -> [u8; 32] {
        self.secret.diffie_hellman(peer).to_bytes()
    }

    /// PEM of the private key (label `X25519 PRIVATE KEY`).
    pub fn private_pem(&self) -> Zeroizing<String> {
        let mut bytes = self.secret.to_bytes();
        let out = pem::encode_secret(pem::X25519_PRIVATE, &bytes);
        bytes.zeroize();
        out
    }

    /// PEM of the public key (label `X25519 PUBLIC KEY`).
    pub fn public_pem(&self) -> String {
        pem::encode(pem::X25519_PUBLIC, self.public.as_bytes())
    }

    /// Read a private encryption PEM.
    pub fn from_private_pem(text: &str) -> Result<Self, PemError> {
        let bytes = pem::decode_fixed::<32>(text, pem::X25519_PRIVATE)?;
        Ok(Self::from_secret_bytes(bytes))
    }
}

/// Read a public encryption PEM.
pub fn encryption_public_from_pem(text: &str) -> Result<X25519Public, PemError> {
    Ok(X25519Public::from(pem::decode_fixed::<32>(
        text,
        pem::X25519_PUBLIC,
    )?))
}

/// The 16-byte AES-128 key that encrypts fragment ids inside SURB-ACKs.
#[derive(Clone, PartialEq, Eq)]
pub struct AckKey([u8; 16]);

impl std::fmt::Debug for AckKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AckKey(..)")
    }
}

impl Drop for AckKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl AckKey {
    /// A fresh random key.
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        let mut k = [0u8; 16];
        rng.fill_bytes(&mut k);
        Self(k)
    }

    /// From raw bytes.
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// PEM (label `AES-128-CTR ACKNOWLEDGEMENTS KEY`).
    pub fn to_pem(&self) -> Zeroizing<String> {
        pem::encode_secret(pem::ACK_KEY, &self.0)
    }

    /// Read an ack key PEM.
    pub fn from_pem(text: &str) -> Result<Self, PemError> {
        Ok(Self(pem::decode_fixed::<16>(text, pem::ACK_KEY)?))
    }
}

/// The 32-byte AES-256-GCM-SIV key agreed with a gateway at registration.
#[derive(Clone, PartialEq, Eq)]
pub struct GatewaySharedKey([u8; 32]);

impl std::fmt::Debug for GatewaySharedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GatewaySharedKey(..)")
    }
}

impl Drop for GatewaySharedKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl GatewaySharedKey {
    /// From raw bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// PEM (label `AES-256-GCM-SIV GATEWAY SHARED KEY`).
    pub fn to_pem(&self) -> Zeroizing<String> {
        pem::encode_secret(pem::GATEWAY_SHARED_KEY, &self.0)
    }

    /// Read a shared key PEM.
    pub fn from_pem(text: &str) -> Result<Self, PemError> {
        Ok(Self(pem::decode_fixed::<32>(
            text,
            pem::GATEWAY_SHARED_KEY,
        )?))
    }
}

/// Errors reading public keys.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    /// The PEM layer failed.
    #[error(transparent)]
    Pem(#[from] PemError),
    /// 32 bytes that are not a valid compressed Edwards point.
    #[error("the ed25519 public key is not a valid curve point")]
    InvalidEd25519,
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn pem_round_trips() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
        let id = IdentityKeyPair::generate(&mut rng);
        let back = IdentityKeyPair::from_private_pem(&id.private_pem()).expect("pem");
        assert_eq!(back.public_bytes(), id.public_bytes());
        assert_eq!(
            identity_public_from_pem(&id.public_pem()).expect("pub"),
            id.public()
        );
        let enc = EncryptionKeyPair::generate(&mut rng);
        let back = EncryptionKeyPair::from_private_pem(&enc.private_pem()).expect("pem");
        assert_eq!(back.public(), enc.public());
        assert_eq!(
            encryption_public_from_pem(&enc.public_pem()).expect("pub"),
            enc.public()
        );
        let ack = AckKey::generate(&mut rng);
        assert_eq!(AckKey::from_pem(&ack.to_pem()).expect("ack"), ack);
        let sk = GatewaySharedKey::from_bytes([3; 32]);
        assert_eq!(GatewaySharedKey::from_pem(&sk.to_pem()).expect("sk"), sk);
        // A private key file is not accepted where a public one is expected.
        assert!(identity_public_from_pem(&id.private_pem()).is_err());
    }

    /// RFC 8032 test 1: the empty message.
    #[test]
    fn ed25519_rfc8032_vector() {
        let seed: [u8; 32] =
            hex::decode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
                .expect("hex")
                .try_into()
                .expect("32");
        let kp = IdentityKeyPair::from_secret_bytes(&seed);
        assert_eq!(
            hex::encode(kp.public_bytes()),
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
        );
        let sig = kp.sign(b"");
        assert_eq!(
            hex::encode(sig.to_bytes()),
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
        );
        assert!(verify(&kp.public(), b"", &sig));
        assert!(!verify(&kp.public(), b"x", &sig));
    }

    /// RFC 7748 section 6.1 Diffie-Hellman vector.
    #[test]
    fn x25519_rfc7748_vector() {
        let a: [u8; 32] =
            hex::decode("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
                .expect("hex")
                .try_into()
                .expect("32");
        let b_pub: [u8; 32] =
            hex::decode("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
                .expect("hex")
                .try_into()
                .expect("32");
        let kp = EncryptionKeyPair::from_secret_bytes(a);
        assert_eq!(
            hex::encode(kp.public().as_bytes()),
            "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
        );
        assert_eq!(
            hex::encode(kp.diffie_hellman(&X25519Public::from(b_pub))),
            "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"
        );
    }
}
