//! Protocol constants and small enums shared by every layer: packet sizes and
//! their tags, Sphinx packet versions, key-rotation parity, packet types.

/// Sphinx header length (alpha 32 + MAC 16 + routing info 300).
pub const HEADER_SIZE: usize = 348;
/// Sphinx payload overhead (16 zero bytes + the 0x01 marker).
pub const PAYLOAD_OVERHEAD: usize = 17;
/// Length of a SURB-ACK blob at the start of every non-ack payload: a node
/// routing address zero-padded to 19 bytes, then a 386-byte ack packet.
pub const SURB_ACK_SIZE: usize = 19 + 386;
/// Length of the padded first-hop address inside a SURB-ACK.
pub const SURB_ACK_ADDRESS_SIZE: usize = 19;
/// Length of the plaintext of an ack (IV 16 + encrypted fragment id 5).
pub const ACK_PLAINTEXT_SIZE: usize = 21;
/// Length of a fragment identifier (set id i32 BE + position u8).
pub const FRAGMENT_ID_SIZE: usize = 5;
/// Length of the ephemeral key (or reply-key digest) after the SURB-ACK.
pub const PAYLOAD_KEY_SIZE: usize = 32;
/// Number of mix layers on every route.
pub const MIX_LAYERS: usize = 3;

/// Sphinx packet version 258: clamped blinding, explicit 192-byte payload
/// keys. A stock 2026.9 client uses it only for loop cover and its ack.
pub const SPHINX_VERSION_258: u16 = 258;
/// Sphinx packet version 259: payload keys derived from 16-byte seeds. A stock
/// 2026.9 client uses it for real data, its acks, retransmissions and SURBs.
pub const SPHINX_VERSION_259: u16 = 259;

/// The Sphinx version a stock 2026.9 client builds for a given purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SphinxVersion {
    /// 258: loop cover packets and their SURB-ACKs.
    Legacy258,
    /// 259: everything else.
    Seeds259,
}

impl SphinxVersion {
    /// The numeric version carried in each hop's routing block.
    pub fn number(self) -> u16 {
        match self {
            SphinxVersion::Legacy258 => SPHINX_VERSION_258,
            SphinxVersion::Seeds259 => SPHINX_VERSION_259,
        }
    }

    /// The sphinx-packet crate's version value.
    pub fn to_sphinx(self) -> sphinx_packet::version::Version {
        sphinx_packet::version::Version::new(self.number())
    }
}

/// Sizes of the packets the mixnet carries, with their one-byte tags used in
/// node-to-node framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PacketSize {
    /// 2413 bytes; 2048 bytes of plaintext.
    Regular,
    /// 386 bytes; 21 bytes of plaintext (an ack).
    Ack,
    /// 33133 bytes; 32 KiB of plaintext.
    Extended32,
    /// 8557 bytes; 8 KiB of plaintext.
    Extended8,
    /// 16749 bytes; 16 KiB of plaintext.
    Extended16,
}

/// A size tag or a length that names no packet size.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum PacketSizeError {
    /// Unknown tag byte (outfox sizes 6 and 7 are not supported).
    #[error("unknown packet size tag {0}")]
    UnknownTag(u8),
    /// No packet size has this length.
    #[error("{0} bytes is not a valid sphinx packet length")]
    UnknownLength(usize),
}

impl PacketSize {
    /// Every supported size.
    pub const ALL: [PacketSize; 5] = [
        PacketSize::Regular,
        PacketSize::Ack,
        PacketSize::Extended32,
        PacketSize::Extended8,
        PacketSize::Extended16,
    ];

    /// Total sphinx packet length in bytes.
    pub const fn size(self) -> usize {
        match self {
            PacketSize::Regular => 2413,
            PacketSize::Ack => 386,
            PacketSize::Extended32 => 33133,
            PacketSize::Extended8 => 8557,
            PacketSize::Extended16 => 16749,
        }
    }

    /// Sphinx payload size (what is passed to the sphinx builder).
    pub const fn payload_size(self) -> usize {
        self.size() - HEADER_SIZE
    }

    /// Plaintext carried by one packet.
    pub const fn plaintext_size(self) -> usize {
        self.size() - HEADER_SIZE - PAYLOAD_OVERHEAD
    }

    /// Fragment bytes per packet once the SURB-ACK and the 32-byte key (or
    /// digest) are taken out (1611 for Regular; 0 for Ack, which carries no
    /// fragment).
    pub const fn fragment_capacity(self) -> usize {
        self.plaintext_size()
            .saturating_sub(SURB_ACK_SIZE + PAYLOAD_KEY_SIZE)
    }

    /// The framing tag byte.
    pub const fn tag(self) -> u8 {
        match self {
            PacketSize::Regular => 1,
            PacketSize::Ack => 2,
            PacketSize::Extended32 => 3,
            PacketSize::Extended8 => 4,
            PacketSize::Extended16 => 5,
        }
    }

    /// From a framing tag byte.
    pub fn from_tag(tag: u8) -> Result<Self, PacketSizeError> {
        Self::ALL
            .into_iter()
            .find(|s| s.tag() == tag)
            .ok_or(PacketSizeError::UnknownTag(tag))
    }

    /// From a sphinx packet length.
    pub fn from_len(len: usize) -> Result<Self, PacketSizeError> {
        Self::ALL
            .into_iter()
            .find(|s| s.size() == len)
            .ok_or(PacketSizeError::UnknownLength(len))
    }
}

/// Key-rotation parity byte carried in ForwardSphinxV2 frames, version-8 node
/// frames and V2 reply-SURB lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum KeyRotation {
    /// 0: unknown; the node tries its primary then secondary key.
    #[default]
    Unknown,
    /// 1: an odd rotation id.
    Odd,
    /// 2: an even rotation id.
    Even,
}

/// An unknown key-rotation byte.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("unknown key rotation byte {0}")]
pub struct KeyRotationError(pub u8);

impl KeyRotation {
    /// From a topology's key-rotation id: 0 and u32::MAX mean unknown.
    pub fn from_rotation_id(id: u32) -> Self {
        if id == 0 || id == u32::MAX {
            KeyRotation::Unknown
        } else if id.is_multiple_of(2) {
            KeyRotation::Even
        } else {
            KeyRotation::Odd
        }
    }

    /// The wire byte.
    pub fn to_byte(self) -> u8 {
        match self {
            KeyRotation::Unknown => 0,
            KeyRotation::Odd => 1,
            KeyRotation::Even => 2,
        }
    }

    /// From the wire byte.
    pub fn from_byte(b: u8) -> Result<Self, KeyRotationError> {
        match b {
            0 => Ok(KeyRotation::Unknown),
            1 => Ok(KeyRotation::Odd),
            2 => Ok(KeyRotation::Even),
            other => Err(KeyRotationError(other)),
        }
    }
}

/// Names one fragment for acknowledgement: its set id and its position in the
/// set. Five bytes on the wire: set id as i32 BE, then the position. All zero
/// names a cover packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FragmentId {
    /// Set id (positive for real fragments; 0 only for cover).
    pub set_id: i32,
    /// Position of the fragment within its set, as in its header (1-based).
    pub position: u8,
}

impl FragmentId {
    /// The id carried by loop cover packets' acks.
    pub const COVER: FragmentId = FragmentId {
        set_id: 0,
        position: 0,
    };

    /// Five-byte encoding.
    pub fn to_bytes(self) -> [u8; FRAGMENT_ID_SIZE] {
        let s = self.set_id.to_be_bytes();
        [s[0], s[1], s[2], s[3], self.position]
    }

    /// From the five-byte encoding.
    pub fn from_bytes(b: [u8; FRAGMENT_ID_SIZE]) -> Self {
        FragmentId {
            set_id: i32::from_be_bytes([b[0], b[1], b[2], b[3]]),
            position: b[4],
        }
    }

    /// Whether this is the cover id.
    pub fn is_cover(self) -> bool {
        self == Self::COVER
    }
}

/// Packet type byte: 0 = sphinx, 2 = outfox (not supported here).
pub const PACKET_TYPE_SPHINX: u8 = 0;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_match_the_notes() {
        assert_eq!(PacketSize::Regular.plaintext_size(), 2048);
        assert_eq!(PacketSize::Ack.plaintext_size(), 21);
        assert_eq!(PacketSize::Extended8.plaintext_size(), 8192);
        assert_eq!(PacketSize::Extended16.plaintext_size(), 16384);
        assert_eq!(PacketSize::Extended32.plaintext_size(), 32768);
        assert_eq!(PacketSize::Regular.fragment_capacity(), 1611);
        assert_eq!(SURB_ACK_SIZE, 405);
        for s in PacketSize::ALL {
            assert_eq!(PacketSize::from_tag(s.tag()), Ok(s));
            assert_eq!(PacketSize::from_len(s.size()), Ok(s));
        }
        assert!(PacketSize::from_tag(6).is_err());
        assert!(PacketSize::from_len(2414).is_err());
    }

    #[test]
    fn rotation_parity() {
        assert_eq!(KeyRotation::from_rotation_id(0), KeyRotation::Unknown);
        assert_eq!(
            KeyRotation::from_rotation_id(u32::MAX),
            KeyRotation::Unknown
        );
        assert_eq!(KeyRotation::from_rotation_id(3), KeyRotation::Odd);
        assert_eq!(KeyRotation::from_rotation_id(4), KeyRotation::Even);
        for b in 0..=2 {
            assert_eq!(KeyRotation::from_byte(b).map(KeyRotation::to_byte), Ok(b));
        }
        assert!(KeyRotation::from_byte(3).is_err());
    }
}
