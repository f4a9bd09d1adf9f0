//! Serde helpers for byte fields of the JSON control messages (today those of
//! `authenticateV2`). They sit apart from [`super::messages`] so that
//! [`super::auth`] can use them without depending on it: `messages` uses
//! `auth`, never the other way round.

/// Serde helpers for the fixed-size byte fields of `authenticateV2`: written
/// as JSON arrays of numbers, read from a sequence (or raw bytes).
pub(crate) mod byte_array {
    use serde::de::{Error, SeqAccess, Visitor};
    use serde::{Deserializer, Serializer};
    use std::fmt;

    pub(crate) fn serialize<S: Serializer, const N: usize>(
        bytes: &[u8; N],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(bytes)
    }

    struct ArrayVisitor<const N: usize>;

    impl<'de, const N: usize> Visitor<'de> for ArrayVisitor<N> {
        type Value = [u8; N];

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "an array of {N} bytes")
        }

        fn visit_bytes<E: Error>(self, v: &[u8]) -> Result<Self::Value, E> {
            v.try_into().map_err(|_| E::invalid_length(v.len(), &self))
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = [0u8; N];
            let mut n = 0usize;
            while let Some(b) = seq.next_element::<u8>()? {
                match out.get_mut(n) {
                    Some(slot) => *slot = b,
                    None => return Err(A::Error::invalid_length(n + 1, &self)),
                }
                n += 1;
            }
            if n != N {
                return Err(A::Error::invalid_length(n, &self));
            }
            Ok(out)
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
        d: D,
    ) -> Result<[u8; N], D::Error> {
        d.deserialize_bytes(ArrayVisitor::<N>)
    }
}

/// Serde helper: standard base64 with padding.
pub(crate) mod base64_padded {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}
