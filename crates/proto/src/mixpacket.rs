//! `MixPacket` (a sphinx packet plus the address of the node to hand it to)
//! and the two byte forms it travels in:
//!
//! - inside a client's ForwardSphinx request to its gateway:
//!   v1 = `packet_type(1) || next_hop(7 or 19) || sphinx`,
//!   v2 = `packet_type(1) || key_rotation(1) || next_hop(7 or 19) || sphinx`;
//!   the sphinx length must be one of the [`PacketSize`]s;
//! - between nodes (TCP, after Noise): frames of
//!   `version(1) || size_tag(1) || packet_type(1) [|| key_rotation(1)]`
//!   followed by exactly `size` bytes, with no length prefix. Version 7 has the
//!   3-byte header (rotation is then Unknown); version 8 adds the rotation byte.
//!
//! Only packet type 0 (sphinx) is supported; outfox (type 2, size tags 6/7) is
//! rejected as malformed.

use std::collections::VecDeque;

use crate::address::{NodeAddress, NodeAddressError};
use crate::params::{
    KeyRotation, KeyRotationError, PacketSize, PacketSizeError, PACKET_TYPE_SPHINX,
};

/// A sphinx packet and the node it goes to next.
#[derive(Clone, PartialEq, Eq)]
pub struct MixPacket {
    /// The node to send the packet to (a layer-1 mix for a client's packets).
    pub next_hop: NodeAddress,
    /// The sphinx packet bytes (length is one of the [`PacketSize`]s).
    pub packet: Vec<u8>,
    /// Key-rotation parity of the keys the packet was built for.
    pub key_rotation: KeyRotation,
}

impl std::fmt::Debug for MixPacket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MixPacket")
            .field("next_hop", &self.next_hop)
            .field("len", &self.packet.len())
            .field("key_rotation", &self.key_rotation)
            .finish()
    }
}

/// Why a ForwardSphinx plaintext could not be parsed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum MixPacketError {
    /// Too few bytes for the fixed fields.
    #[error("mix packet of {0} bytes is too short")]
    TooShort(usize),
    /// The packet type is not sphinx (0).
    #[error("unsupported packet type {0} (only 0, sphinx, is supported)")]
    PacketType(u8),
    /// Bad key-rotation byte.
    #[error(transparent)]
    KeyRotation(#[from] KeyRotationError),
    /// Bad next-hop address.
    #[error("next hop: {0}")]
    Address(#[from] NodeAddressError),
    /// The sphinx part has no valid packet length.
    #[error(transparent)]
    Size(#[from] PacketSizeError),
}

fn check_type(b: u8) -> Result<(), MixPacketError> {
    if b == PACKET_TYPE_SPHINX {
        Ok(())
    } else {
        Err(MixPacketError::PacketType(b))
    }
}

impl MixPacket {
    /// Assemble a mix packet.
    pub fn new(next_hop: NodeAddress, packet: Vec<u8>, key_rotation: KeyRotation) -> Self {
        Self {
            next_hop,
            packet,
            key_rotation,
        }
    }

    /// The size class of the sphinx packet.
    pub fn packet_size(&self) -> Result<PacketSize, PacketSizeError> {
        PacketSize::from_len(self.packet.len())
    }

    /// ForwardSphinx v1 plaintext: `0 || next_hop || sphinx` (the rotation is
    /// not carried).
    pub fn to_v1_bytes(&self) -> Vec<u8> {
        let addr = self.next_hop.to_bytes();
        let mut out = Vec::with_capacity(1 + addr.len() + self.packet.len());
        out.push(PACKET_TYPE_SPHINX);
        out.extend_from_slice(&addr);
        out.extend_from_slice(&self.packet);
        out
    }

    /// ForwardSphinx v2 plaintext: `0 || key_rotation || next_hop || sphinx`.
    pub fn to_v2_bytes(&self) -> Vec<u8> {
        let addr = self.next_hop.to_bytes();
        let mut out = Vec::with_capacity(2 + addr.len() + self.packet.len());
        out.push(PACKET_TYPE_SPHINX);
        out.push(self.key_rotation.to_byte());
        out.extend_from_slice(&addr);
        out.extend_from_slice(&self.packet);
        out
    }

    fn parse_rest(rest: &[u8], key_rotation: KeyRotation) -> Result<Self, MixPacketError> {
        let (next_hop, used) = NodeAddress::read(rest)?;
        let packet = rest.get(used..).unwrap_or_default();
        PacketSize::from_len(packet.len())?;
        Ok(Self {
            next_hop,
            packet: packet.to_vec(),
            key_rotation,
        })
    }

    /// Parse a ForwardSphinx v1 plaintext; the rotation is Unknown.
    pub fn from_v1_bytes(b: &[u8]) -> Result<Self, MixPacketError> {
        let (&ty, rest) = b.split_first().ok_or(MixPacketError::TooShort(b.len()))?;
        if rest.is_empty() {
            return Err(MixPacketError::TooShort(b.len()));
        }
        check_type(ty)?;
        Self::parse_rest(rest, KeyRotation::Unknown)
    }

    /// Parse a ForwardSphinx v2 plaintext.
    pub fn from_v2_bytes(b: &[u8]) -> Result<Self, MixPacketError> {
        if b.len() < 3 {
            return Err(MixPacketError::TooShort(b.len()));
        }
        check_type(b[0])?;
        let rotation = KeyRotation::from_byte(b[1])?;
        Self::parse_rest(&b[2..], rotation)
    }

    /// This packet as a node-to-node frame of the given version (the rotation
    /// byte is only written for version 8).
    pub fn to_frame(&self, version: FrameVersion) -> Result<Vec<u8>, FrameError> {
        encode_frame(version, self.key_rotation, &self.packet)
    }
}

/// Node-to-node frame versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameVersion {
    /// 7: `version || size || type` (what nodes send by default).
    V7,
    /// 8: `version || size || type || key_rotation`.
    V8,
}

impl FrameVersion {
    /// The version byte.
    pub fn to_byte(self) -> u8 {
        match self {
            FrameVersion::V7 => 7,
            FrameVersion::V8 => 8,
        }
    }

    /// From the version byte (7 or 8).
    pub fn from_byte(b: u8) -> Result<Self, FrameError> {
        match b {
            7 => Ok(FrameVersion::V7),
            8 => Ok(FrameVersion::V8),
            other => Err(FrameError::Version(other)),
        }
    }

    /// Header length for this version.
    pub fn header_len(self) -> usize {
        match self {
            FrameVersion::V7 => 3,
            FrameVersion::V8 => 4,
        }
    }
}

/// Why a node frame is invalid. After any of these the stream cannot be
/// resynchronised: drop the connection.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    /// Version byte other than 7 or 8.
    #[error("unsupported node frame version {0} (expected 7 or 8)")]
    Version(u8),
    /// Unknown size tag, or a packet whose length is no packet size.
    #[error(transparent)]
    Size(#[from] PacketSizeError),
    /// Packet type other than sphinx.
    #[error("unsupported packet type {0} (only 0, sphinx, is supported)")]
    PacketType(u8),
    /// Bad key-rotation byte in a version-8 header.
    #[error(transparent)]
    KeyRotation(#[from] KeyRotationError),
}

/// A decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FrameHeader {
    /// Frame version.
    pub version: FrameVersion,
    /// Size class of the packet that follows.
    pub size: PacketSize,
    /// Key rotation (always Unknown for version 7).
    pub key_rotation: KeyRotation,
}

impl FrameHeader {
    /// Append the header bytes to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.push(self.version.to_byte());
        out.push(self.size.tag());
        out.push(PACKET_TYPE_SPHINX);
        if self.version == FrameVersion::V8 {
            out.push(self.key_rotation.to_byte());
        }
    }

    /// Decode a complete header (exactly `version.header_len()` bytes or
    /// more; trailing bytes are ignored). `Ok(None)` if more bytes are needed.
    pub fn decode(bytes: &[u8]) -> Result<Option<Self>, FrameError> {
        let Some(&v) = bytes.first() else {
            return Ok(None);
        };
        let version = FrameVersion::from_byte(v)?;
        if bytes.len() < version.header_len() {
            return Ok(None);
        }
        let size = PacketSize::from_tag(bytes[1])?;
        if bytes[2] != PACKET_TYPE_SPHINX {
            return Err(FrameError::PacketType(bytes[2]));
        }
        let key_rotation = match version {
            FrameVersion::V7 => KeyRotation::Unknown,
            FrameVersion::V8 => KeyRotation::from_byte(bytes[3])?,
        };
        Ok(Some(Self {
            version,
            size,
            key_rotation,
        }))
    }
}

/// One complete node frame.
#[derive(Clone, PartialEq, Eq)]
pub struct Frame {
    /// Its header.
    pub header: FrameHeader,
    /// Exactly `header.size.size()` bytes of sphinx packet.
    pub packet: Vec<u8>,
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frame")
            .field("header", &self.header)
            .field("len", &self.packet.len())
            .finish()
    }
}

/// Append a node frame for `packet` to `out`.
pub fn encode_frame_into(
    out: &mut Vec<u8>,
    version: FrameVersion,
    key_rotation: KeyRotation,
    packet: &[u8],
) -> Result<(), FrameError> {
    let size = PacketSize::from_len(packet.len())?;
    let header = FrameHeader {
        version,
        size,
        key_rotation,
    };
    out.reserve(version.header_len() + packet.len());
    header.encode_into(out);
    out.extend_from_slice(packet);
    Ok(())
}

/// A node frame for `packet`.
pub fn encode_frame(
    version: FrameVersion,
    key_rotation: KeyRotation,
    packet: &[u8],
) -> Result<Vec<u8>, FrameError> {
    let mut out = Vec::new();
    encode_frame_into(&mut out, version, key_rotation, packet)?;
    Ok(out)
}

/// Sans-IO decoder for a stream of node frames. Feed it whatever the socket
/// gives with [`push`](Self::push) and take complete frames with
/// [`pop`](Self::pop). It only keeps the bytes of the frame in progress (at
/// most one header and one packet); headers are checked as soon as their
/// bytes arrive. Once it has returned an error it stays failed.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    partial: Vec<u8>,
    header: Option<FrameHeader>,
    ready: VecDeque<Frame>,
    failed: Option<FrameError>,
}

impl FrameDecoder {
    /// Largest number of bytes held for an incomplete frame.
    pub const MAX_BUFFERED: usize = 4 + 33133;

    /// A fresh decoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feed bytes. Complete frames become available from [`pop`](Self::pop)
    /// (including those completed before an error in the same chunk).
    pub fn push(&mut self, mut data: &[u8]) -> Result<(), FrameError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        while !data.is_empty() {
            match self.header {
                None => {
                    // Accumulate header bytes; the first byte fixes the length.
                    let first = self.partial.first().copied().unwrap_or(data[0]);
                    let need = match FrameVersion::from_byte(first) {
                        Ok(v) => v.header_len(),
                        Err(e) => return Err(self.fail(e)),
                    };
                    let take = (need - self.partial.len()).min(data.len());
                    self.partial.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    match FrameHeader::decode(&self.partial) {
                        Ok(Some(h)) => {
                            self.partial.clear();
                            self.partial.reserve(h.size.size());
                            self.header = Some(h);
                        }
                        Ok(None) => {}
                        Err(e) => return Err(self.fail(e)),
                    }
                }
                Some(h) => {
                    let need = h.size.size() - self.partial.len();
                    let take = need.min(data.len());
                    self.partial.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    if self.partial.len() == h.size.size() {
                        self.ready.push_back(Frame {
                            header: h,
                            packet: std::mem::take(&mut self.partial),
                        });
                        self.header = None;
                    }
                }
            }
        }
        Ok(())
    }

    fn fail(&mut self, e: FrameError) -> FrameError {
        self.partial = Vec::new();
        self.header = None;
        self.failed = Some(e.clone());
        e
    }

    /// The next complete frame, if any.
    pub fn pop(&mut self) -> Option<Frame> {
        self.ready.pop_front()
    }

    /// Bytes held for the frame in progress.
    pub fn buffered(&self) -> usize {
        self.partial.len() + self.header.map_or(0, |h| h.version.header_len())
    }

    /// Whether the decoder has hit an error (the connection should be dropped).
    pub fn is_failed(&self) -> bool {
        self.failed.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::{Rng, RngCore, SeedableRng};

    fn addr(s: &str) -> NodeAddress {
        NodeAddress(s.parse().expect("addr"))
    }

    fn fake_packet(size: PacketSize, fill: u8) -> Vec<u8> {
        vec![fill; size.size()]
    }

    #[test]
    fn forward_sphinx_v1_v2_layout_and_round_trip() {
        let p = MixPacket::new(
            addr("1.2.3.4:1789"),
            fake_packet(PacketSize::Regular, 0xaa),
            KeyRotation::Even,
        );
        let v1 = p.to_v1_bytes();
        assert_eq!(v1.len(), 1 + 7 + 2413);
        assert_eq!(&v1[..8], &[0, 4, 0x06, 0xfd, 1, 2, 3, 4]);
        let back = MixPacket::from_v1_bytes(&v1).expect("v1");
        assert_eq!(back.next_hop, p.next_hop);
        assert_eq!(back.packet, p.packet);
        assert_eq!(back.key_rotation, KeyRotation::Unknown);

        let v2 = p.to_v2_bytes();
        assert_eq!(v2.len(), 2 + 7 + 2413);
        assert_eq!(&v2[..3], &[0, 2, 4]);
        assert_eq!(MixPacket::from_v2_bytes(&v2), Ok(p.clone()));

        let p6 = MixPacket::new(
            addr("[2001:db8::1]:9"),
            fake_packet(PacketSize::Ack, 1),
            KeyRotation::Odd,
        );
        let v2 = p6.to_v2_bytes();
        assert_eq!(v2.len(), 2 + 19 + 386);
        assert_eq!(MixPacket::from_v2_bytes(&v2), Ok(p6));
    }

    #[test]
    fn forward_sphinx_errors() {
        let p = MixPacket::new(
            addr("1.2.3.4:1789"),
            fake_packet(PacketSize::Regular, 0),
            KeyRotation::Unknown,
        );
        let mut v1 = p.to_v1_bytes();
        v1.pop();
        assert_eq!(
            MixPacket::from_v1_bytes(&v1),
            Err(MixPacketError::Size(PacketSizeError::UnknownLength(2412)))
        );
        let mut v1 = p.to_v1_bytes();
        v1[0] = 2;
        assert_eq!(
            MixPacket::from_v1_bytes(&v1),
            Err(MixPacketError::PacketType(2))
        );
        let mut v2 = p.to_v2_bytes();
        v2[1] = 3;
        assert!(matches!(
            MixPacket::from_v2_bytes(&v2),
            Err(MixPacketError::KeyRotation(_))
        ));
        let mut v2 = p.to_v2_bytes();
        v2[2] = 5;
        assert!(matches!(
            MixPacket::from_v2_bytes(&v2),
            Err(MixPacketError::Address(_))
        ));
        assert_eq!(
            MixPacket::from_v1_bytes(&[0]),
            Err(MixPacketError::TooShort(1))
        );
        assert_eq!(
            MixPacket::from_v2_bytes(&[0, 0]),
            Err(MixPacketError::TooShort(2))
        );
    }

    #[test]
    fn frame_headers() {
        let packet = fake_packet(PacketSize::Ack, 9);
        let f7 = encode_frame(FrameVersion::V7, KeyRotation::Even, &packet).expect("v7");
        assert_eq!(&f7[..3], &[7, 2, 0]);
        assert_eq!(f7.len(), 3 + 386);
        let f8 = encode_frame(FrameVersion::V8, KeyRotation::Even, &packet).expect("v8");
        assert_eq!(&f8[..4], &[8, 2, 0, 2]);
        assert_eq!(f8.len(), 4 + 386);
        assert!(encode_frame(FrameVersion::V7, KeyRotation::Unknown, &[0; 10]).is_err());

        assert_eq!(FrameHeader::decode(&[]), Ok(None));
        assert_eq!(FrameHeader::decode(&[8, 1, 0]), Ok(None));
        assert_eq!(FrameHeader::decode(&[6, 1, 0]), Err(FrameError::Version(6)));
        assert_eq!(
            FrameHeader::decode(&[9, 1, 0, 0]),
            Err(FrameError::Version(9))
        );
        assert_eq!(
            FrameHeader::decode(&[7, 6, 0]),
            Err(FrameError::Size(PacketSizeError::UnknownTag(6)))
        );
        assert_eq!(
            FrameHeader::decode(&[7, 1, 2]),
            Err(FrameError::PacketType(2))
        );
        assert!(matches!(
            FrameHeader::decode(&[8, 1, 0, 3]),
            Err(FrameError::KeyRotation(_))
        ));
        assert_eq!(
            FrameHeader::decode(&[8, 5, 0, 1]),
            Ok(Some(FrameHeader {
                version: FrameVersion::V8,
                size: PacketSize::Extended16,
                key_rotation: KeyRotation::Odd
            }))
        );
    }

    #[test]
    fn decoder_with_random_chunking() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(5);
        let mut stream = Vec::new();
        let mut expected = Vec::new();
        for i in 0..40u8 {
            let size = PacketSize::ALL[rng.gen_range(0..PacketSize::ALL.len())];
            let version = if rng.gen() {
                FrameVersion::V7
            } else {
                FrameVersion::V8
            };
            let rotation =
                [KeyRotation::Unknown, KeyRotation::Odd, KeyRotation::Even][rng.gen_range(0..3)];
            let mut packet = vec![0u8; size.size()];
            rng.fill_bytes(&mut packet);
            packet[0] = i;
            encode_frame_into(&mut stream, version, rotation, &packet).expect("encode");
            let rotation = if version == FrameVersion::V7 {
                KeyRotation::Unknown
            } else {
                rotation
            };
            expected.push(Frame {
                header: FrameHeader {
                    version,
                    size,
                    key_rotation: rotation,
                },
                packet,
            });
        }
        for round in 0..20 {
            let mut dec = FrameDecoder::new();
            let mut got = Vec::new();
            let mut rest = &stream[..];
            while !rest.is_empty() {
                let max = if round % 2 == 0 { 8 } else { 5000 };
                let n = rng.gen_range(1..=max).min(rest.len());
                dec.push(&rest[..n]).expect("push");
                rest = &rest[n..];
                assert!(dec.buffered() <= FrameDecoder::MAX_BUFFERED);
                while let Some(f) = dec.pop() {
                    got.push(f);
                }
            }
            assert_eq!(dec.buffered(), 0);
            assert_eq!(got, expected);
        }
        // All at once.
        let mut dec = FrameDecoder::new();
        dec.push(&stream).expect("push");
        let got: Vec<Frame> = std::iter::from_fn(|| dec.pop()).collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn decoder_fails_on_bad_bytes_and_stays_failed() {
        let good = encode_frame(
            FrameVersion::V7,
            KeyRotation::Unknown,
            &fake_packet(PacketSize::Ack, 3),
        )
        .expect("frame");
        for bad in [&[1u8, 1, 0][..], &[8, 1, 0, 7], &[7, 9, 0], &[7, 1, 1]] {
            let mut dec = FrameDecoder::new();
            let mut stream = good.clone();
            stream.extend_from_slice(bad);
            let err = dec.push(&stream).expect_err("bad header");
            assert!(dec.is_failed());
            // The good frame before the bad header is still delivered.
            assert_eq!(dec.pop().map(|f| f.packet.len()), Some(386));
            assert_eq!(dec.push(&good), Err(err));
            assert!(dec.pop().is_none());
        }
        // A bad version byte fails at once, before the rest of the header.
        let mut dec = FrameDecoder::new();
        assert_eq!(dec.push(&[0]), Err(FrameError::Version(0)));
    }

    proptest! {
        #[test]
        fn parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600), split in 0usize..600) {
            let _ = MixPacket::from_v1_bytes(&bytes);
            let _ = MixPacket::from_v2_bytes(&bytes);
            let _ = FrameHeader::decode(&bytes);
            let mut dec = FrameDecoder::new();
            let s = split.min(bytes.len());
            let _ = dec.push(&bytes[..s]);
            let _ = dec.push(&bytes[s..]);
            while dec.pop().is_some() {}
            prop_assert!(dec.buffered() <= FrameDecoder::MAX_BUFFERED);
        }

        #[test]
        fn valid_prefix_frames_parse(
            version in prop_oneof![Just(7u8), Just(8u8)],
            tag in 1u8..=5,
            rot in 0u8..=2,
            cut in 0usize..40000,
        ) {
            let size = PacketSize::from_tag(tag).expect("tag");
            let mut stream = vec![version, tag, 0];
            if version == 8 { stream.push(rot); }
            stream.extend(std::iter::repeat_n(0x5a, size.size()));
            let cut = cut.min(stream.len());
            let mut dec = FrameDecoder::new();
            dec.push(&stream[..cut]).expect("prefix");
            prop_assert_eq!(dec.pop().is_some(), cut == stream.len());
            dec.push(&stream[cut..]).expect("rest");
            if cut < stream.len() {
                prop_assert!(dec.pop().is_some());
            }
            prop_assert_eq!(dec.buffered(), 0);
        }
    }
}
