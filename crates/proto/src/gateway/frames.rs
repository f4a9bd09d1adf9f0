//! Binary WebSocket frames after authentication, both directions:
//!
//! ```text
//! kind(1) || encrypted(1) = 1 || nonce(12) || GCM-SIV_K(nonce, plaintext) || tag(16)
//! ```
//!
//! Client to gateway kinds: 1 `ForwardSphinx`, 2 `ForwardSphinxV2`; gateway
//! to client: 1 `PushedMixMessage`. The plaintext is opaque here (the
//! forward layouts live in [`crate::mixpacket`]).

use rand::{CryptoRng, RngCore};

use crate::crypto::{gcm_siv_open, gcm_siv_seal, GCM_SIV_NONCE_LEN, GCM_SIV_TAG_LEN};
use crate::keys::GatewaySharedKey;
use crate::params::PacketSize;

/// Bytes before the ciphertext: kind, flag, nonce.
pub const FRAME_HEADER_LEN: usize = 2 + GCM_SIV_NONCE_LEN;
/// Bytes a frame adds to its plaintext.
pub const FRAME_OVERHEAD: usize = FRAME_HEADER_LEN + GCM_SIV_TAG_LEN;
/// The largest plaintext either side can legitimately send: a
/// `ForwardSphinxV2` of the largest packet size with an IPv6 next hop
/// (type 1 + rotation 1 + address 19 + 33133).
pub const MAX_FRAME_PLAINTEXT: usize = 1 + 1 + 19 + PacketSize::Extended32.size();
/// Frames longer than this are refused before any decryption (33184 bytes).
pub const MAX_FRAME_SIZE: usize = FRAME_OVERHEAD + MAX_FRAME_PLAINTEXT;

/// Value of the encrypted flag (the only one accepted).
const ENCRYPTED: u8 = 1;

/// Client to gateway frame kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientFrameKind {
    /// 1: a forward request without the key-rotation byte (versions < 5).
    ForwardSphinx,
    /// 2: a forward request with the key-rotation byte (versions >= 5).
    ForwardSphinxV2,
}

impl ClientFrameKind {
    /// The wire byte.
    pub fn to_byte(self) -> u8 {
        match self {
            ClientFrameKind::ForwardSphinx => 1,
            ClientFrameKind::ForwardSphinxV2 => 2,
        }
    }

    /// From the wire byte.
    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            1 => Some(ClientFrameKind::ForwardSphinx),
            2 => Some(ClientFrameKind::ForwardSphinxV2),
            _ => None,
        }
    }
}

/// Gateway to client frame kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GatewayFrameKind {
    /// 1: a final-hop payload (without its SURB-ACK) pushed to the client.
    PushedMixMessage,
}

impl GatewayFrameKind {
    /// The wire byte.
    pub fn to_byte(self) -> u8 {
        match self {
            GatewayFrameKind::PushedMixMessage => 1,
        }
    }

    /// From the wire byte.
    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            1 => Some(GatewayFrameKind::PushedMixMessage),
            _ => None,
        }
    }
}

/// A binary frame that could not be opened.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    /// Longer than [`MAX_FRAME_SIZE`].
    #[error("binary frame of {0} bytes exceeds the maximum of {MAX_FRAME_SIZE}")]
    TooLarge(usize),
    /// Too short for the header.
    #[error("binary frame of {0} bytes is too short")]
    TooShort(usize),
    /// The encrypted flag is 0: unencrypted frames are not accepted.
    #[error("unencrypted binary frames are not accepted")]
    Unencrypted,
    /// The encrypted flag is neither 0 nor 1.
    #[error("invalid encryption flag {0}")]
    InvalidEncryptionFlag(u8),
    /// Unknown kind byte for this direction.
    #[error("unknown binary frame kind {0}")]
    UnknownKind(u8),
    /// The ciphertext did not decrypt under the shared key.
    #[error("failed to decrypt binary frame")]
    Decryption,
}

/// Seal `plaintext` into a frame of kind byte `kind` with a random nonce.
pub fn seal<R: RngCore + CryptoRng>(
    rng: &mut R,
    key: &GatewaySharedKey,
    kind: u8,
    plaintext: &[u8],
) -> Vec<u8> {
    let mut nonce = [0u8; GCM_SIV_NONCE_LEN];
    rng.fill_bytes(&mut nonce);
    let ct = gcm_siv_seal(key.as_bytes(), &nonce, plaintext);
    let mut out = Vec::with_capacity(FRAME_HEADER_LEN + ct.len());
    out.push(kind);
    out.push(ENCRYPTED);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    out
}

/// Check size, flag and length, then the kind (in the order Nym reports
/// them), all before decrypting. Returns the kind byte and the plaintext.
fn open_with(
    key: &GatewaySharedKey,
    frame: &[u8],
    known_kind: impl Fn(u8) -> bool,
) -> Result<(u8, Vec<u8>), FrameError> {
    if frame.len() > MAX_FRAME_SIZE {
        return Err(FrameError::TooLarge(frame.len()));
    }
    let (kind, flag) = match frame {
        [kind, flag, ..] => (*kind, *flag),
        _ => return Err(FrameError::TooShort(frame.len())),
    };
    match flag {
        ENCRYPTED => {}
        0 => return Err(FrameError::Unencrypted),
        other => return Err(FrameError::InvalidEncryptionFlag(other)),
    }
    let nonce: [u8; GCM_SIV_NONCE_LEN] = frame
        .get(2..FRAME_HEADER_LEN)
        .and_then(|n| n.try_into().ok())
        .ok_or(FrameError::TooShort(frame.len()))?;
    if !known_kind(kind) {
        return Err(FrameError::UnknownKind(kind));
    }
    let ct = frame.get(FRAME_HEADER_LEN..).unwrap_or_default();
    let plain = gcm_siv_open(key.as_bytes(), &nonce, ct).map_err(|_| FrameError::Decryption)?;
    Ok((kind, plain))
}

/// Client: seal a forward request plaintext.
pub fn seal_client_frame<R: RngCore + CryptoRng>(
    rng: &mut R,
    key: &GatewaySharedKey,
    kind: ClientFrameKind,
    plaintext: &[u8],
) -> Vec<u8> {
    seal(rng, key, kind.to_byte(), plaintext)
}

/// Gateway: open a client frame. The kind is checked before decryption.
pub fn open_client_frame(
    key: &GatewaySharedKey,
    frame: &[u8],
) -> Result<(ClientFrameKind, Vec<u8>), FrameError> {
    let (kind, plain) = open_with(key, frame, |b| ClientFrameKind::from_byte(b).is_some())?;
    let kind = ClientFrameKind::from_byte(kind).ok_or(FrameError::UnknownKind(kind))?;
    Ok((kind, plain))
}

/// Gateway: seal a pushed message for the client.
pub fn seal_pushed_message<R: RngCore + CryptoRng>(
    rng: &mut R,
    key: &GatewaySharedKey,
    message: &[u8],
) -> Vec<u8> {
    seal(
        rng,
        key,
        GatewayFrameKind::PushedMixMessage.to_byte(),
        message,
    )
}

/// Client: open a gateway frame. The kind is checked before decryption.
pub fn open_gateway_frame(
    key: &GatewaySharedKey,
    frame: &[u8],
) -> Result<(GatewayFrameKind, Vec<u8>), FrameError> {
    let (kind, plain) = open_with(key, frame, |b| GatewayFrameKind::from_byte(b).is_some())?;
    let kind = GatewayFrameKind::from_byte(kind).ok_or(FrameError::UnknownKind(kind))?;
    Ok((kind, plain))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    fn key() -> GatewaySharedKey {
        GatewaySharedKey::from_bytes([0x5a; 32])
    }

    #[test]
    fn round_trips() {
        let mut rng = ChaCha20Rng::seed_from_u64(11);
        let k = key();
        for kind in [
            ClientFrameKind::ForwardSphinx,
            ClientFrameKind::ForwardSphinxV2,
        ] {
            let frame = seal_client_frame(&mut rng, &k, kind, b"forward me");
            assert_eq!(frame[0], kind.to_byte());
            assert_eq!(frame[1], 1);
            assert_eq!(frame.len(), FRAME_OVERHEAD + 10);
            assert_eq!(
                open_client_frame(&k, &frame),
                Ok((kind, b"forward me".to_vec()))
            );
        }
        let frame = seal_pushed_message(&mut rng, &k, &[3u8; 1643]);
        assert_eq!(
            open_gateway_frame(&k, &frame),
            Ok((GatewayFrameKind::PushedMixMessage, vec![3u8; 1643]))
        );
        // Empty plaintext is fine (ciphertext is just the tag).
        let frame = seal_pushed_message(&mut rng, &k, &[]);
        assert_eq!(frame.len(), FRAME_OVERHEAD);
        assert_eq!(
            open_gateway_frame(&k, &frame),
            Ok((GatewayFrameKind::PushedMixMessage, vec![]))
        );
        // The layout: kind, flag, nonce, then GCM-SIV with that nonce.
        let nonce: [u8; 12] = frame[2..14].try_into().expect("12");
        assert_eq!(frame[14..], gcm_siv_seal(k.as_bytes(), &nonce, &[])[..]);
    }

    /// A regular IPv4 ForwardSphinxV2: type 1 + rotation 1 + address 7 +
    /// 2413 bytes of packet, sealed: 2452 bytes on the wire.
    #[test]
    fn regular_ipv4_v2_frame_size() {
        let mut rng = ChaCha20Rng::seed_from_u64(12);
        let mut plaintext = vec![0u8, 0u8];
        plaintext.extend_from_slice(&[4, 0x06, 0xfd, 10, 0, 0, 1]);
        plaintext.extend_from_slice(&[0xaa; 2413]);
        assert_eq!(plaintext.len(), 2422);
        let frame = seal_client_frame(
            &mut rng,
            &key(),
            ClientFrameKind::ForwardSphinxV2,
            &plaintext,
        );
        assert_eq!(frame.len(), 2452);
        assert_eq!(MAX_FRAME_SIZE, 33184);
    }

    #[test]
    fn errors() {
        let mut rng = ChaCha20Rng::seed_from_u64(13);
        let k = key();
        for len in [0usize, 1, 2, 13] {
            let mut f = vec![1u8; len];
            if len >= 2 {
                f[1] = 1;
            }
            assert_eq!(open_client_frame(&k, &f), Err(FrameError::TooShort(len)));
            assert_eq!(open_gateway_frame(&k, &f), Err(FrameError::TooShort(len)));
        }
        // Header only: the tag is missing.
        assert_eq!(
            open_client_frame(&k, &[1u8, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(FrameError::Decryption)
        );

        let good = seal_client_frame(&mut rng, &k, ClientFrameKind::ForwardSphinxV2, b"x");
        let mut f = good.clone();
        f[1] = 0;
        assert_eq!(open_client_frame(&k, &f), Err(FrameError::Unencrypted));
        f[1] = 2;
        assert_eq!(
            open_client_frame(&k, &f),
            Err(FrameError::InvalidEncryptionFlag(2))
        );

        let mut f = good.clone();
        f[0] = 3;
        assert_eq!(open_client_frame(&k, &f), Err(FrameError::UnknownKind(3)));
        // Kind 2 is a client kind only.
        assert_eq!(
            open_gateway_frame(&k, &good),
            Err(FrameError::UnknownKind(2))
        );

        let mut f = good.clone();
        let last = f.len() - 1;
        f[last] ^= 1;
        assert_eq!(open_client_frame(&k, &f), Err(FrameError::Decryption));
        let mut f = good.clone();
        f[5] ^= 1;
        assert_eq!(open_client_frame(&k, &f), Err(FrameError::Decryption));
        let other = GatewaySharedKey::from_bytes([1; 32]);
        assert_eq!(
            open_client_frame(&other, &good),
            Err(FrameError::Decryption)
        );

        let big = vec![1u8; MAX_FRAME_SIZE + 1];
        assert_eq!(
            open_client_frame(&k, &big),
            Err(FrameError::TooLarge(MAX_FRAME_SIZE + 1))
        );
        // The largest legitimate frame opens.
        let max = seal_client_frame(
            &mut rng,
            &k,
            ClientFrameKind::ForwardSphinxV2,
            &vec![0u8; MAX_FRAME_PLAINTEXT],
        );
        assert_eq!(max.len(), MAX_FRAME_SIZE);
        assert!(open_client_frame(&k, &max).is_ok());
    }
}
