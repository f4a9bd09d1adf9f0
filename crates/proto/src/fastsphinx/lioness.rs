//! The sender's payload layers: Sphinx payload encapsulation with a Lioness
//! wide-block cipher built on the SIMD `chacha20` (djb's variant: 64-bit
//! nonce, all zero here) and `blake2b_simd`, producing the bytes of
//! sphinx-packet 0.6's `Payload::encapsulate_message` (whose Lioness is the
//! `lioness` 0.1 crate over `chacha` 0.3 and `blake2` 0.8, both portable
//! code: about a tenth of a packet's cost went there).
//!
//! Lioness with a 192-byte key `k1 (32) | k2 (64) | k3 (32) | k4 (64)` over a
//! block `L (32) | R`:
//! `R ^= ChaCha20(L ^ k1)`, `L ^= BLAKE2b-256_k2(R)`,
//! `R ^= ChaCha20(L ^ k3)`, `L ^= BLAKE2b-256_k4(R)`.
//! The payload is `16 zero bytes | plaintext | 0x01 | zeros` up to the
//! payload size, encrypted under the hop keys from the last hop to the first.
//! `tests/fast_derivation.rs` compares both functions with the crate's on
//! random keys, lengths and plaintexts.

use chacha20::cipher::{KeyIvInit, StreamCipher};
use chacha20::ChaCha20Legacy;
use zeroize::Zeroizing;

/// A Sphinx payload key (sphinx-packet's `PAYLOAD_KEY_SIZE`).
pub const PAYLOAD_KEY_LEN: usize = 192;
/// Zero bytes before the plaintext (the Sphinx security parameter).
const LEADING_ZEROS: usize = 16;
/// The left half of the Lioness block (a ChaCha20 key, a BLAKE2b-256 digest).
const LEFT: usize = 32;

/// Why a payload could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PayloadBuildError {
    /// The plaintext does not fit the payload with its 17 bytes of framing.
    #[error("a {plaintext}-byte plaintext does not fit a {payload}-byte sphinx payload")]
    TooLong {
        /// Plaintext length.
        plaintext: usize,
        /// Payload size.
        payload: usize,
    },
    /// Lioness needs more than its 32-byte left half.
    #[error("a sphinx payload must be longer than {LEFT} bytes, got {0}")]
    TooShort(usize),
}

fn xor_into(out: &mut [u8; LEFT], a: &[u8], b: &[u8]) {
    for ((o, x), y) in out.iter_mut().zip(a).zip(b) {
        *o = x ^ y;
    }
}

fn stream(left: &[u8], key_part: &[u8], right: &mut [u8]) {
    let mut key = Zeroizing::new([0u8; LEFT]);
    xor_into(&mut key, left, key_part);
    let mut cipher = ChaCha20Legacy::new(&(*key).into(), &[0u8; 8].into());
    cipher.apply_keystream(right);
}

fn digest(key_part: &[u8], right: &[u8], left: &mut [u8]) {
    let hash = blake2b_simd::Params::new()
        .hash_length(LEFT)
        .key(key_part)
        .hash(right);
    for (l, h) in left.iter_mut().zip(hash.as_bytes()) {
        *l ^= h;
    }
}

/// The four parts of a Lioness key, and the block split into its halves
/// (an error for a block of 32 bytes or less).
#[allow(clippy::type_complexity)]
fn parts<'a, 'b>(
    key: &'a [u8; PAYLOAD_KEY_LEN],
    block: &'b mut [u8],
) -> Result<([&'a [u8]; 4], &'b mut [u8], &'b mut [u8]), PayloadBuildError> {
    if block.len() <= LEFT {
        return Err(PayloadBuildError::TooShort(block.len()));
    }
    let (k1, rest) = key.split_at(32);
    let (k2, rest) = rest.split_at(64);
    let (k3, k4) = rest.split_at(32);
    let (left, right) = block.split_at_mut(LEFT);
    Ok(([k1, k2, k3, k4], left, right))
}

/// Lioness-encrypt `block` (longer than 32 bytes) in place under `key`.
pub fn lioness_encrypt(
    key: &[u8; PAYLOAD_KEY_LEN],
    block: &mut [u8],
) -> Result<(), PayloadBuildError> {
    let ([k1, k2, k3, k4], left, right) = parts(key, block)?;
    stream(left, k1, right);
    digest(k2, right, left);
    stream(left, k3, right);
    digest(k4, right, left);
    Ok(())
}

/// Lioness-decrypt `block` in place under `key` (the inverse of
/// [`lioness_encrypt`]).
pub fn lioness_decrypt(
    key: &[u8; PAYLOAD_KEY_LEN],
    block: &mut [u8],
) -> Result<(), PayloadBuildError> {
    let ([k1, k2, k3, k4], left, right) = parts(key, block)?;
    digest(k4, right, left);
    stream(left, k3, right);
    digest(k2, right, left);
    stream(left, k1, right);
    Ok(())
}

/// A Sphinx payload of `payload_size` bytes carrying `plaintext`, with one
/// Lioness layer per key, the last key's layer innermost (what each hop
/// removes in route order).
pub fn encapsulate(
    plaintext: &[u8],
    keys: &[[u8; PAYLOAD_KEY_LEN]],
    payload_size: usize,
) -> Result<Vec<u8>, PayloadBuildError> {
    if payload_size <= LEFT {
        return Err(PayloadBuildError::TooShort(payload_size));
    }
    if plaintext.len() + LEADING_ZEROS + 1 > payload_size {
        return Err(PayloadBuildError::TooLong {
            plaintext: plaintext.len(),
            payload: payload_size,
        });
    }
    let mut payload = vec![0u8; payload_size];
    let end = LEADING_ZEROS + plaintext.len();
    payload[LEADING_ZEROS..end].copy_from_slice(plaintext);
    payload[end] = 1;
    for key in keys.iter().rev() {
        lioness_encrypt(key, &mut payload)?;
    }
    Ok(payload)
}
