//! The `--custom-mixnet` topology file: the JSON form of Nym's topology type.
//!
//! ```text
//! {"metadata":{"key_rotation_id":0,"absolute_epoch_id":0,"refreshed_at":"2026-05-01T00:00:00Z"},
//!  "rewarded_set":{"epoch_id":0,"entry_gateways":[4],"exit_gateways":[4],
//!                  "layer1":[1],"layer2":[2],"layer3":[3],"standby":[]},
//!  "node_details":{"1":{"node_id":1,"mix_host":"127.0.0.1:10001","entry":null,
//!                       "identity_key":[32 ints],"sphinx_key":[32 ints],
//!                       "supported_roles":{"mixnode":true,"mixnet_entry":false,"mixnet_exit":false}}}}
//! ```
//!
//! - `metadata` may be left out (rotation id u32::MAX); if present, all three
//!   keys are required and `refreshed_at` is RFC 3339.
//! - `rewarded_set` needs all seven keys.
//! - `node_details` is keyed by the node id as a string.
//! - keys are JSON arrays of 32 integers (not base58);
//! - `mix_host` is a literal `IP:port`.
//! - `entry` may be null or missing; inside it `hostname` and
//!   `clients_wss_port` may be missing.
//! - Unknown keys (such as the localnet generator's `version`) are ignored.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;

use serde::de::{SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{NodeId, NymTopology, RewardedSet, RoutingNode, Timestamp, TopologyMetadata};
use crate::keys::{VerifyingKey, X25519Public};

/// Why a topology file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum TopologyFileError {
    /// The JSON does not match the topology file schema. The message names
    /// the problem and its line and column.
    #[error("invalid topology file: {0}")]
    Parse(#[source] serde_json::Error),
    /// Serialisation failed (not expected for a well-formed model).
    #[error("could not write topology file: {0}")]
    Write(#[source] serde_json::Error),
}

/// The file's top level.
#[derive(Serialize, Deserialize)]
struct FileForm {
    #[serde(default)]
    metadata: TopologyMetadata,
    rewarded_set: RewardedSet,
    node_details: BTreeMap<NodeId, RoutingNode>,
}

impl NymTopology {
    /// Read a topology file. No performance filter is applied.
    pub fn from_file_json(json: &str) -> Result<Self, TopologyFileError> {
        let f: FileForm = serde_json::from_str(json).map_err(TopologyFileError::Parse)?;
        Ok(Self {
            metadata: f.metadata,
            rewarded_set: f.rewarded_set,
            nodes: f.node_details,
        })
    }

    /// Read a topology file from bytes (must be UTF-8 JSON).
    pub fn from_file_slice(json: &[u8]) -> Result<Self, TopologyFileError> {
        let f: FileForm = serde_json::from_slice(json).map_err(TopologyFileError::Parse)?;
        Ok(Self {
            metadata: f.metadata,
            rewarded_set: f.rewarded_set,
            nodes: f.node_details,
        })
    }

    fn file_form(&self) -> FileForm {
        FileForm {
            metadata: self.metadata,
            rewarded_set: self.rewarded_set.clone(),
            node_details: self.nodes.clone(),
        }
    }

    /// Write the topology file, compact. Node ids and set members come out
    /// sorted, so equal topologies give equal text. Node performance is
    /// not part of the file.
    pub fn to_file_json(&self) -> Result<String, TopologyFileError> {
        serde_json::to_string(&self.file_form()).map_err(TopologyFileError::Write)
    }

    /// Write the topology file, indented (what goes on disk for
    /// `--custom-mixnet`).
    pub fn to_file(&self) -> Result<String, TopologyFileError> {
        serde_json::to_string_pretty(&self.file_form()).map_err(TopologyFileError::Write)
    }
}

// ---------------------------------------------------------------------------
// All-or-nothing objects with explicit messages
// ---------------------------------------------------------------------------

#[derive(Deserialize)]
struct RawMetadata {
    key_rotation_id: Option<u32>,
    absolute_epoch_id: Option<u32>,
    refreshed_at: Option<Timestamp>,
}

impl<'de> Deserialize<'de> for TopologyMetadata {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = RawMetadata::deserialize(deserializer)?;
        let missing = |field: &str| {
            serde::de::Error::custom(format!(
                "metadata is missing `{field}`: when `metadata` is present, key_rotation_id, \
                 absolute_epoch_id and refreshed_at (RFC 3339) are all required; \
                 leave `metadata` out entirely for an unknown key rotation"
            ))
        };
        Ok(TopologyMetadata {
            key_rotation_id: raw
                .key_rotation_id
                .ok_or_else(|| missing("key_rotation_id"))?,
            absolute_epoch_id: raw
                .absolute_epoch_id
                .ok_or_else(|| missing("absolute_epoch_id"))?,
            refreshed_at: raw.refreshed_at.ok_or_else(|| missing("refreshed_at"))?,
        })
    }
}

#[derive(Deserialize)]
struct RawRewardedSet {
    epoch_id: Option<u32>,
    entry_gateways: Option<Vec<NodeId>>,
    exit_gateways: Option<Vec<NodeId>>,
    layer1: Option<Vec<NodeId>>,
    layer2: Option<Vec<NodeId>>,
    layer3: Option<Vec<NodeId>>,
    standby: Option<Vec<NodeId>>,
}

impl<'de> Deserialize<'de> for RewardedSet {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = RawRewardedSet::deserialize(deserializer)?;
        fn need<T, E: serde::de::Error>(v: Option<T>, field: &str) -> Result<T, E> {
            v.ok_or_else(|| {
                E::custom(format!(
                    "missing field `{field}` in rewarded_set: all seven of epoch_id, \
                     entry_gateways, exit_gateways, layer1, layer2, layer3 and standby are \
                     required (use [] for an empty list)"
                ))
            })
        }
        Ok(RewardedSet {
            epoch_id: need(raw.epoch_id, "epoch_id")?,
            entry_gateways: need(raw.entry_gateways, "entry_gateways")?
                .into_iter()
                .collect(),
            exit_gateways: need(raw.exit_gateways, "exit_gateways")?
                .into_iter()
                .collect(),
            layer1: need(raw.layer1, "layer1")?.into_iter().collect(),
            layer2: need(raw.layer2, "layer2")?.into_iter().collect(),
            layer3: need(raw.layer3, "layer3")?.into_iter().collect(),
            standby: need(raw.standby, "standby")?.into_iter().collect(),
        })
    }
}

// ---------------------------------------------------------------------------
// Field adapters
// ---------------------------------------------------------------------------

struct KeyBytesVisitor(&'static str);

impl<'de> Visitor<'de> for KeyBytesVisitor {
    type Value = [u8; 32];

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} as a JSON array of 32 integers 0-255 (raw key bytes)",
            self.0
        )
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Err(E::custom(format!(
            "{} must be a JSON array of 32 integers (raw key bytes), not the string \"{v}\"; \
             base58 keys as nym-api shows them have to be decoded into bytes for this file",
            self.0
        )))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = [0u8; 32];
        let mut n = 0usize;
        while let Some(b) = seq.next_element::<u8>()? {
            if n < 32 {
                out[n] = b;
            }
            n += 1;
        }
        if n != 32 {
            return Err(serde::de::Error::custom(format!(
                "{} must have exactly 32 bytes, found {n}",
                self.0
            )));
        }
        Ok(out)
    }
}

fn serialize_key<S: Serializer>(bytes: &[u8; 32], serializer: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    let mut seq = serializer.serialize_seq(Some(32))?;
    for b in bytes {
        seq.serialize_element(b)?;
    }
    seq.end()
}

/// Serde adapter: an ed25519 key as 32 integers (must be a valid point).
pub mod ed25519_bytes {
    use super::*;

    /// Write 32 integers.
    pub fn serialize<S: Serializer>(k: &VerifyingKey, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_key(k.as_bytes(), serializer)
    }

    /// Read 32 integers.
    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<VerifyingKey, D::Error> {
        let b = deserializer.deserialize_any(KeyBytesVisitor("identity_key"))?;
        VerifyingKey::from_bytes(&b).map_err(|_| {
            serde::de::Error::custom(
                "identity_key is not a valid ed25519 public key (not a curve point)",
            )
        })
    }
}

/// Serde adapter: an x25519 key as 32 integers.
pub mod x25519_bytes {
    use super::*;

    /// Write 32 integers.
    pub fn serialize<S: Serializer>(k: &X25519Public, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_key(k.as_bytes(), serializer)
    }

    /// Read 32 integers.
    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<X25519Public, D::Error> {
        Ok(X25519Public::from(
            deserializer.deserialize_any(KeyBytesVisitor("sphinx_key"))?,
        ))
    }
}

/// Serde adapter: a literal `IP:port` socket address (no host names).
pub mod literal_socket_addr {
    use super::*;

    /// Write `IP:port` (`[v6]:port`).
    pub fn serialize<S: Serializer>(a: &SocketAddr, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(a)
    }

    /// Read `IP:port`.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<SocketAddr, D::Error> {
        let s = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        s.parse().map_err(|_| {
            serde::de::Error::custom(format!(
                "mix_host \"{s}\" is not a literal socket address: write IP:port such as \
                 \"127.0.0.1:1789\" or \"[::1]:1789\" (host names are not allowed)"
            ))
        })
    }
}
