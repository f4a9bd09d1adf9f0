//! Addresses: a client's `Recipient` (identity.encryption@gateway), a node's
//! routing address as carried in packets, and the anonymous sender tag.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use crate::keys::{VerifyingKey, X25519Public};

/// A client address: its ed25519 identity, its x25519 encryption key and the
/// ed25519 identity of the gateway it is registered with.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Recipient {
    identity: VerifyingKey,
    encryption: X25519Public,
    gateway: VerifyingKey,
}

/// Why a recipient address could not be parsed. The texts match nym-client's,
/// which apps may show or match on.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum RecipientError {
    /// Not exactly one `@` or not exactly one `.` in the left half.
    #[error("recipient is malformed - {0} ")]
    Malformed(&'static str),
    /// The identity part is not a valid ed25519 key.
    #[error("recipient's identity key is malformed: {0}")]
    Identity(KeyTextError),
    /// The encryption part is not 32 bytes of base58.
    #[error("recipient's encryption key is malformed: {0}")]
    Encryption(KeyTextError),
    /// The gateway part is not a valid ed25519 key.
    #[error("recipient gateway's identity key is malformed: {0}")]
    Gateway(KeyTextError),
    /// The binary form is not 96 bytes.
    #[error("recipient bytes have length {0}, expected 96")]
    Length(usize),
}

/// A problem with one base58 key inside an address.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum KeyTextError {
    /// Not base58.
    #[error("the base58 representation of the public key was malformed - {0}")]
    Base58(String),
    /// An x25519 key decoded to the wrong size (nym-client's text).
    #[error("received public key of invalid size. Got: {0}, expected: 32")]
    Size(usize),
    /// An ed25519 key decoded to the wrong size (nym-client's text, which
    /// does not give the size).
    #[error("could not convert slice to array")]
    Ed25519Size(usize),
    /// 32 bytes that are not a valid compressed Edwards point (nym-client's
    /// text, from ed25519-dalek 2).
    #[error("signature error: Cannot decompress Edwards point")]
    NotAPoint,
}

fn decode_key_text(s: &str) -> Result<[u8; 32], KeyTextError> {
    let bytes = bs58::decode(s)
        .into_vec()
        .map_err(|e| KeyTextError::Base58(e.to_string()))?;
    let len = bytes.len();
    bytes.try_into().map_err(|_| KeyTextError::Size(len))
}

fn decode_ed25519_text(s: &str) -> Result<VerifyingKey, KeyTextError> {
    let bytes = decode_key_text(s).map_err(|e| match e {
        KeyTextError::Size(n) => KeyTextError::Ed25519Size(n),
        other => other,
    })?;
    ed25519_from(&bytes)
}

fn ed25519_from(bytes: &[u8; 32]) -> Result<VerifyingKey, KeyTextError> {
    VerifyingKey::from_bytes(bytes).map_err(|_| KeyTextError::NotAPoint)
}

impl Recipient {
    /// Length of the binary form.
    pub const LEN: usize = 96;

    /// Assemble from its three keys.
    pub fn new(identity: VerifyingKey, encryption: X25519Public, gateway: VerifyingKey) -> Self {
        Self {
            identity,
            encryption,
            gateway,
        }
    }

    /// The client's ed25519 identity.
    pub fn identity(&self) -> &VerifyingKey {
        &self.identity
    }

    /// The client's x25519 encryption key.
    pub fn encryption_key(&self) -> &X25519Public {
        &self.encryption
    }

    /// The gateway's ed25519 identity.
    pub fn gateway(&self) -> &VerifyingKey {
        &self.gateway
    }

    /// The 96-byte binary form: identity ‖ encryption ‖ gateway.
    pub fn to_bytes(&self) -> [u8; 96] {
        let mut out = [0u8; 96];
        out[..32].copy_from_slice(self.identity.as_bytes());
        out[32..64].copy_from_slice(self.encryption.as_bytes());
        out[64..].copy_from_slice(self.gateway.as_bytes());
        out
    }

    /// Parse the 96-byte binary form.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, RecipientError> {
        let b: &[u8; 96] = bytes
            .try_into()
            .map_err(|_| RecipientError::Length(bytes.len()))?;
        let mut id = [0u8; 32];
        id.copy_from_slice(&b[..32]);
        let mut enc = [0u8; 32];
        enc.copy_from_slice(&b[32..64]);
        let mut gw = [0u8; 32];
        gw.copy_from_slice(&b[64..]);
        Ok(Self {
            identity: ed25519_from(&id).map_err(RecipientError::Identity)?,
            encryption: X25519Public::from(enc),
            gateway: ed25519_from(&gw).map_err(RecipientError::Gateway)?,
        })
    }
}

impl FromStr for Recipient {
    type Err = RecipientError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut at = s.split('@');
        let (left, gw) = match (at.next(), at.next(), at.next()) {
            (Some(l), Some(g), None) => (l, g),
            _ => {
                return Err(RecipientError::Malformed(
                    "the string address does not contain exactly a single '@' character",
                ))
            }
        };
        let mut dot = left.split('.');
        let (id, enc) = match (dot.next(), dot.next(), dot.next()) {
            (Some(i), Some(e), None) => (i, e),
            _ => {
                return Err(RecipientError::Malformed(
                    "the string address does not contain exactly a single '.' character",
                ))
            }
        };
        let identity = decode_ed25519_text(id).map_err(RecipientError::Identity)?;
        let encryption =
            X25519Public::from(decode_key_text(enc).map_err(RecipientError::Encryption)?);
        let gateway = decode_ed25519_text(gw).map_err(RecipientError::Gateway)?;
        Ok(Self {
            identity,
            encryption,
            gateway,
        })
    }
}

impl fmt::Display for Recipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{}@{}",
            bs58::encode(self.identity.as_bytes()).into_string(),
            bs58::encode(self.encryption.as_bytes()).into_string(),
            bs58::encode(self.gateway.as_bytes()).into_string()
        )
    }
}

impl fmt::Debug for Recipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Recipient({self})")
    }
}

/// A node's routing address as carried in packets: a type byte (4 for IPv4, 6
/// for IPv6), the port (u16 BE), then the IP bytes. 7 or 19 bytes; zero-padded
/// to 19 inside a SURB-ACK and to 32 as a Sphinx node address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NodeAddress(pub SocketAddr);

/// Why a routing address could not be read.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum NodeAddressError {
    /// No bytes at all.
    #[error("node address is empty")]
    Empty,
    /// The type byte is neither 4 nor 6.
    #[error("unknown node address type byte {0} (expected 4 or 6)")]
    UnknownType(u8),
    /// Fewer bytes than the type byte calls for.
    #[error("node address too short: type {kind} needs {need} bytes, got {got}")]
    TooShort {
        /// The type byte.
        kind: u8,
        /// Bytes that type needs.
        need: usize,
        /// Bytes present.
        got: usize,
    },
    /// The encoding does not fit the padded field it must go into.
    #[error("node address needs {need} bytes but the field is {field}")]
    DoesNotFit {
        /// Encoded length.
        need: usize,
        /// Field length.
        field: usize,
    },
}

impl NodeAddress {
    /// Length of an IPv4 routing address.
    pub const V4_LEN: usize = 7;
    /// Length of an IPv6 routing address.
    pub const V6_LEN: usize = 19;

    /// Encoded length of this address.
    pub fn encoded_len(&self) -> usize {
        match self.0 {
            SocketAddr::V4(_) => Self::V4_LEN,
            SocketAddr::V6(_) => Self::V6_LEN,
        }
    }

    /// The 7- or 19-byte encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::V6_LEN);
        match self.0.ip() {
            IpAddr::V4(ip) => {
                out.push(4);
                out.extend_from_slice(&self.0.port().to_be_bytes());
                out.extend_from_slice(&ip.octets());
            }
            IpAddr::V6(ip) => {
                out.push(6);
                out.extend_from_slice(&self.0.port().to_be_bytes());
                out.extend_from_slice(&ip.octets());
            }
        }
        out
    }

    /// The encoding zero-padded to `N` bytes (19 in SURB-ACKs, 32 in Sphinx).
    pub fn to_padded<const N: usize>(&self) -> Result<[u8; N], NodeAddressError> {
        let b = self.to_bytes();
        if b.len() > N {
            return Err(NodeAddressError::DoesNotFit {
                need: b.len(),
                field: N,
            });
        }
        let mut out = [0u8; N];
        out[..b.len()].copy_from_slice(&b);
        Ok(out)
    }

    /// Read an address from the start of `bytes`; returns it and how many
    /// bytes it used. Trailing bytes (padding or a following packet) are left.
    pub fn read(bytes: &[u8]) -> Result<(Self, usize), NodeAddressError> {
        let kind = *bytes.first().ok_or(NodeAddressError::Empty)?;
        let need = match kind {
            4 => Self::V4_LEN,
            6 => Self::V6_LEN,
            other => return Err(NodeAddressError::UnknownType(other)),
        };
        if bytes.len() < need {
            return Err(NodeAddressError::TooShort {
                kind,
                need,
                got: bytes.len(),
            });
        }
        let port = u16::from_be_bytes([bytes[1], bytes[2]]);
        let ip = if kind == 4 {
            let mut o = [0u8; 4];
            o.copy_from_slice(&bytes[3..7]);
            IpAddr::V4(Ipv4Addr::from(o))
        } else {
            let mut o = [0u8; 16];
            o.copy_from_slice(&bytes[3..19]);
            IpAddr::V6(Ipv6Addr::from(o))
        };
        Ok((Self(SocketAddr::new(ip, port)), need))
    }
}

impl fmt::Display for NodeAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The 16 random bytes that name an anonymous sender to the party it sends
/// repliable messages to. Base58 in text form.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SenderTag(pub [u8; 16]);

/// Why a sender tag could not be parsed (nym-client's texts).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SenderTagError {
    /// Not base58.
    #[error("Failed to decode the base58-encoded string - {0}")]
    Base58(String),
    /// Wrong decoded length.
    #[error("Decoded AnonymousSenderTag has invalid length. Expected 16, but got {0}")]
    Length(usize),
}

impl SenderTag {
    /// Length in bytes.
    pub const LEN: usize = 16;

    /// A fresh random tag.
    pub fn random<R: rand::RngCore>(rng: &mut R) -> Self {
        let mut b = [0u8; 16];
        rng.fill_bytes(&mut b);
        Self(b)
    }
}

impl FromStr for SenderTag {
    type Err = SenderTagError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let v = bs58::decode(s)
            .into_vec()
            .map_err(|e| SenderTagError::Base58(e.to_string()))?;
        let len = v.len();
        Ok(Self(v.try_into().map_err(|_| SenderTagError::Length(len))?))
    }
}

impl fmt::Display for SenderTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&bs58::encode(self.0).into_string())
    }
}

impl fmt::Debug for SenderTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SenderTag({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The address used throughout Nym's websocket-requests tests, and its
    /// bytes as given in our notes (nym-app-api.md §1.3).
    pub const ADDR: &str = "CytBseW6yFXUMzz4SGAKdNLGR7q3sJLLYxyBGvutNEQV.4QXYyEVc5fUDjmmi8PrHN9tdUFV4PCvSJE1278cHyvoe@4sBbL1ngf1vtNqykydQKTFh26sQCw888GpUqvPvyNB4f";
    const ADDR_HEX: &str = concat!(
        "b202f5983ab6ad7e78b5237d005ff4887689be9a2341179b05d382cf80f1dade",
        "3299f6b78e8a0bce4daa9fcca3f93204da56a5d5132ee4d484cec3c9927cb965",
        "396e13d61e2bc32b6353a31da0c34dcc1545f93bab112ce63d9a2c1d0327a724"
    );

    #[test]
    fn nym_test_address_known_answer() {
        let r: Recipient = ADDR.parse().expect("valid");
        assert_eq!(hex::encode(r.to_bytes()), ADDR_HEX);
        assert_eq!(r.to_string(), ADDR);
        let back = Recipient::from_bytes(&hex::decode(ADDR_HEX).expect("hex")).expect("bytes");
        assert_eq!(back, r);
    }

    #[test]
    fn parse_errors_are_nym_client_texts() {
        let e = "abc".parse::<Recipient>().expect_err("no @");
        assert_eq!(
            e.to_string(),
            "recipient is malformed - the string address does not contain exactly a single '@' character "
        );
        let e = "a.b.c@d".parse::<Recipient>().expect_err("two dots");
        assert!(e.to_string().contains("single '.' character "));
        let (left, gw) = ADDR.split_once('@').expect("@");
        let (id, _) = left.split_once('.').expect(".");
        let e = format!("{id}.abc@{gw}")
            .parse::<Recipient>()
            .expect_err("short enc");
        assert!(matches!(
            e,
            RecipientError::Encryption(KeyTextError::Size(_))
        ));
        assert!(e.to_string().starts_with(
            "recipient's encryption key is malformed: received public key of invalid size. Got: "
        ));
        let e = format!("0OIl.{}", &ADDR[ADDR.find('.').expect(".") + 1..])
            .parse::<Recipient>()
            .expect_err("bad base58");
        assert!(matches!(
            e,
            RecipientError::Identity(KeyTextError::Base58(_))
        ));
    }

    #[test]
    fn sender_tag_known_answers() {
        let t: SenderTag = "zXExeyvPEHUk9rjXTu78T".parse().expect("tag");
        assert_eq!(t.0, [8u8; 16]);
        assert_eq!(SenderTag([0x2a; 16]).to_string(), "6CzGHguLGCk1f416kwDZB7");
        assert_eq!(
            "2g".parse::<SenderTag>().expect_err("short").to_string(),
            "Decoded AnonymousSenderTag has invalid length. Expected 16, but got 1"
        );
    }

    #[test]
    fn node_address_layout() {
        let a = NodeAddress("1.2.3.4:1789".parse().expect("addr"));
        assert_eq!(a.to_bytes(), vec![4, 0x06, 0xfd, 1, 2, 3, 4]);
        let padded = a.to_padded::<32>().expect("fits");
        assert_eq!(&padded[7..], &[0u8; 25]);
        assert_eq!(NodeAddress::read(&padded), Ok((a, 7)));
        let b = NodeAddress("[::1]:9".parse().expect("addr"));
        let bytes = b.to_bytes();
        assert_eq!(bytes.len(), 19);
        assert_eq!(&bytes[..3], &[6, 0, 9]);
        assert_eq!(NodeAddress::read(&bytes), Ok((b, 19)));
        assert_eq!(NodeAddress::read(&[]), Err(NodeAddressError::Empty));
        assert_eq!(
            NodeAddress::read(&[5, 0]),
            Err(NodeAddressError::UnknownType(5))
        );
        assert!(matches!(
            NodeAddress::read(&[6, 0, 1, 2]),
            Err(NodeAddressError::TooShort { .. })
        ));
    }

    proptest! {
        #[test]
        fn recipient_text_parser_never_panics(s in ".{0,200}") {
            let _ = s.parse::<Recipient>();
            let _ = s.parse::<SenderTag>();
        }

        #[test]
        fn recipient_bytes_parser_never_panics(b in proptest::collection::vec(any::<u8>(), 0..120)) {
            let _ = Recipient::from_bytes(&b);
            let _ = NodeAddress::read(&b);
        }

        #[test]
        fn node_address_round_trip(v4 in any::<[u8; 4]>(), v6 in any::<[u8; 16]>(), port in any::<u16>(), six in any::<bool>()) {
            let ip = if six { IpAddr::from(v6) } else { IpAddr::from(v4) };
            let a = NodeAddress(SocketAddr::new(ip, port));
            let bytes = a.to_bytes();
            prop_assert_eq!(NodeAddress::read(&bytes), Ok((a, bytes.len())));
        }

        #[test]
        fn recipient_round_trip(seed in any::<[u8; 32]>(), enc in any::<[u8; 32]>(), gw in any::<[u8; 32]>()) {
            let id = crate::keys::IdentityKeyPair::from_secret_bytes(&seed).public();
            let g = crate::keys::IdentityKeyPair::from_secret_bytes(&gw).public();
            let r = Recipient::new(id, X25519Public::from(enc), g);
            prop_assert_eq!(r.to_string().parse::<Recipient>(), Ok(r));
            prop_assert_eq!(Recipient::from_bytes(&r.to_bytes()), Ok(r));
        }
    }
}
