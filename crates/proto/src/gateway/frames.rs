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
