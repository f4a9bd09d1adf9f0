//! Symmetric primitives shared by every layer of the protocol.
//!
//! - [`hkdf_blake3`]: HKDF (RFC 5869) whose HMAC is built over BLAKE3 (64-byte
//!   block, 32-byte output). Nym uses it for the gateway shared key and for the
//!   per-packet payload key.
//! - [`aes128_ctr64`]: AES-128 in counter mode with a 64-bit big-endian counter
//!   in the low half of the IV (RustCrypto `Ctr64BE`). Differs from a 128-bit
//!   counter only when the low 64 bits wrap.
//! - [`gcm_siv_seal`] / [`gcm_siv_open`]: AES-256-GCM-SIV with a 12-byte nonce
//!   and no associated data; the output is `ciphertext || tag`.

use aes::cipher::{KeyIvInit, StreamCipher};
use aes_gcm_siv::aead::{Aead, KeyInit};
use aes_gcm_siv::{Aes256GcmSiv, Nonce};
use hkdf::SimpleHkdf;

/// Length of an AES-256-GCM-SIV nonce.
pub const GCM_SIV_NONCE_LEN: usize = 12;
/// Length of an AES-256-GCM-SIV authentication tag.
pub const GCM_SIV_TAG_LEN: usize = 16;

type Aes128Ctr64 = ctr::Ctr64BE<aes::Aes128>;

/// Errors of the symmetric layer.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    /// HKDF was asked for more output than it can produce (255 blocks).
    #[error("HKDF output of {0} bytes is too long")]
    HkdfLength(usize),
    /// AEAD decryption failed: wrong key, corrupted ciphertext or forged tag.
    #[error("authenticated decryption failed (wrong key or corrupted data)")]
    Aead,
}

/// HKDF extract-then-expand with HMAC-BLAKE3. `salt = None` means the empty
/// salt (RFC 5869: a block of zeros), which is what Nym's packet key uses.
pub fn hkdf_blake3(
    salt: Option<&[u8]>,
    ikm: &[u8],
    info: &[u8],
    out: &mut [u8],
) -> Result<(), CryptoError> {
    let hk = SimpleHkdf::<blake3::Hasher>::new(salt, ikm);
    hk.expand(info, out)
        .map_err(|_| CryptoError::HkdfLength(out.len()))
}

/// Apply the AES-128-CTR (64-bit BE counter) keystream to `data` in place.
pub fn aes128_ctr64(key: &[u8; 16], iv: &[u8; 16], data: &mut [u8]) {
    let mut cipher = Aes128Ctr64::new(key.into(), iv.into());
    cipher.apply_keystream(data);
}

/// Encrypt with AES-256-GCM-SIV; returns `ciphertext || tag`.
pub fn gcm_siv_seal(key: &[u8; 32], nonce: &[u8; GCM_SIV_NONCE_LEN], plaintext: &[u8]) -> Vec<u8> {
    let cipher = Aes256GcmSiv::new(key.into());
    // Encryption with a 32-byte key and 12-byte nonce cannot fail for inputs
    // below 2^36 bytes; an impossible failure yields an empty output that the
    // peer will reject rather than a panic.
    cipher
        .encrypt(Nonce::from_slice(nonce), plaintext)
        .unwrap_or_default()
}

/// Decrypt `ciphertext || tag` with AES-256-GCM-SIV.
pub fn gcm_siv_open(
    key: &[u8; 32],
    nonce: &[u8; GCM_SIV_NONCE_LEN],
    ciphertext: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let cipher = Aes256GcmSiv::new(key.into());
    cipher
        .decrypt(Nonce::from_slice(nonce), ciphertext)
        .map_err(|_| CryptoError::Aead)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        hex::decode(s).expect("test vector hex")
    }

    /// Ctr64BE wraps within the low 64 bits: the block after counter
    /// 0xffff_ffff_ffff_ffff uses counter 0 with the same upper half, unlike a
    /// 128-bit counter which would carry into the upper half.
    #[test]
    fn ctr64_wraps_in_the_low_half() {
        let key = [7u8; 16];
        let mut iv = [0u8; 16];
        iv[..8].copy_from_slice(&[0xaa; 8]);
        iv[8..].copy_from_slice(&[0xff; 8]);
        let mut two_blocks = [0u8; 32];
        aes128_ctr64(&key, &iv, &mut two_blocks);

        // Second block must equal the keystream of (upper half, counter 0).
        let mut iv_wrapped = [0u8; 16];
        iv_wrapped[..8].copy_from_slice(&[0xaa; 8]);
        let mut one_block = [0u8; 16];
        aes128_ctr64(&key, &iv_wrapped, &mut one_block);
        assert_eq!(&two_blocks[16..], &one_block);

        // A 128-bit counter would carry into the upper half instead.
        let mut iv_carry = [0u8; 16];
        iv_carry[..8].copy_from_slice(&[0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xab]);
        let mut carried = [0u8; 16];
        aes128_ctr64(&key, &iv_carry, &mut carried);
        assert_ne!(&two_blocks[16..], &carried);
    }

    /// FIPS-197 / SP 800-38A F.5.1 CTR-AES128 vector (its counter never wraps,
    /// so Ctr64BE and Ctr128BE agree on it).
    #[test]
    fn aes128_ctr_sp800_38a_vector() {
        let key: [u8; 16] = unhex("2b7e151628aed2a6abf7158809cf4f3c")
            .try_into()
            .expect("16");
        let iv: [u8; 16] = unhex("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff")
            .try_into()
            .expect("16");
        let mut data = unhex("6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51");
        aes128_ctr64(&key, &iv, &mut data);
        assert_eq!(
            hex::encode(&data),
            "874d6191b620e3261bef6864990db6ce9806f66b7970fdff8617187bb9fffdff"
        );
    }

    /// RFC 8452 appendix C.2, first AES-256-GCM-SIV vector with empty
    /// plaintext and no AAD.
    #[test]
    fn gcm_siv_rfc8452_vector() {
        let key: [u8; 32] =
            unhex("0100000000000000000000000000000000000000000000000000000000000000")
                .try_into()
                .expect("32");
        let nonce: [u8; 12] = unhex("030000000000000000000000").try_into().expect("12");
        let sealed = gcm_siv_seal(&key, &nonce, b"");
        assert_eq!(hex::encode(&sealed), "07f5f4169bbf55a8400cd47ea6fd400f");
        assert_eq!(gcm_siv_open(&key, &nonce, &sealed), Ok(Vec::new()));
        let mut bad = sealed.clone();
        bad[0] ^= 1;
        assert_eq!(gcm_siv_open(&key, &nonce, &bad), Err(CryptoError::Aead));
    }

    /// HKDF-BLAKE3 checked against an independent HMAC-BLAKE3 built here from
    /// the HMAC definition (RFC 2104) with BLAKE3's 64-byte block.
    #[test]
    fn hkdf_blake3_matches_rfc5869_over_hmac_blake3() {
        fn hmac(key: &[u8], msg: &[u8]) -> [u8; 32] {
            let mut k = [0u8; 64];
            if key.len() > 64 {
                k[..32].copy_from_slice(blake3::hash(key).as_bytes());
            } else {
                k[..key.len()].copy_from_slice(key);
            }
            let mut inner = blake3::Hasher::new();
            inner.update(&k.map(|b| b ^ 0x36));
            inner.update(msg);
            let mut outer = blake3::Hasher::new();
            outer.update(&k.map(|b| b ^ 0x5c));
            outer.update(inner.finalize().as_bytes());
            *outer.finalize().as_bytes()
        }
        let salt = [0x11u8; 16];
        let ikm = [0x22u8; 32];
        let prk = hmac(&salt, &ikm);
        let t1 = hmac(&prk, &[1u8]);
        let mut out = [0u8; 32];
        hkdf_blake3(Some(&salt), &ikm, &[], &mut out).expect("32 bytes");
        assert_eq!(out, t1);

        // No salt = 32 zero bytes of salt (the hash length), as RFC 5869 says.
        let prk0 = hmac(&[0u8; 32], &ikm);
        let t1_0 = hmac(&prk0, &[1u8]);
        let mut out16 = [0u8; 16];
        hkdf_blake3(None, &ikm, &[], &mut out16).expect("16 bytes");
        assert_eq!(out16, t1_0[..16]);
    }
}
