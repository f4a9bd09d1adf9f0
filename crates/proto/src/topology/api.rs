//! nym-api's JSON models for the calls a client makes, readable and writable
//! with the same field names (our embedded directory serves them, our client
//! reads them):
//!
//! - `GET v2/unstable/nym-nodes/skimmed/{mixnodes/active,entry-gateways}`:
//!   [`SkimmedNodesResponse`];
//! - `GET v1/nym-nodes/rewarded-set`: [`RewardedSetResponse`];
//! - `GET v1/epoch/key-rotation-info`: [`KeyRotationInfoResponse`].
//!
//! [`PageCollector`] gathers a paged listing the way nym clients do, with the
//! metadata consistency check.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::time::{lenient_display, Timestamp};
use super::NodeId;
use crate::keys::{VerifyingKey, X25519Public};
use crate::params::KeyRotation;

// ---------------------------------------------------------------------------
// Performance
// ---------------------------------------------------------------------------

/// A node's performance: a decimal in [0, 1], carried in JSON as a string
/// (`"0.97"`, `"1"`). Stored exactly, in units of 10⁻¹⁸ (the precision of
/// the CosmWasm decimal nym-api uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Performance(u64);

/// Why a performance string was rejected.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum PerformanceError {
    /// Not a plain decimal number.
    #[error("performance \"{0}\" is not a decimal number like \"0.97\"")]
    Syntax(String),
    /// More than 18 digits after the point.
    #[error("performance \"{0}\" has more than 18 fractional digits")]
    TooPrecise(String),
    /// Above 1.
    #[error("performance \"{0}\" is larger than 100% (the value must be in [0, 1])")]
    AboveOne(String),
}

impl Performance {
    const ONE: u64 = 1_000_000_000_000_000_000;

    /// 100 %.
    pub const FULL: Performance = Performance(Self::ONE);
    /// 0 %.
    pub const ZERO: Performance = Performance(0);

    /// From whole percent (values above 100 are clamped).
    pub fn from_percent(p: u8) -> Self {
        Self(u64::from(p.min(100)) * (Self::ONE / 100))
    }

    /// From units of 10⁻¹⁸; `None` above 1.
    pub fn from_atto(v: u64) -> Option<Self> {
        (v <= Self::ONE).then_some(Self(v))
    }

    /// The value in units of 10⁻¹⁸.
    pub fn atto(self) -> u64 {
        self.0
    }

    /// ×100, rounded down: what the ≥ 50 filter compares against.
    pub fn percent_floor(self) -> u8 {
        // At most 100.
        (self.0 / (Self::ONE / 100)) as u8
    }
}

impl FromStr for Performance {
    type Err = PerformanceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let syntax = || PerformanceError::Syntax(s.to_owned());
        let (whole, frac) = match s.split_once('.') {
            Some((w, f)) => (w, Some(f)),
            None => (s, None),
        };
        if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
            return Err(syntax());
        }
        let whole_digits = whole.trim_start_matches('0');
        let whole_value: u64 = match whole_digits {
            "" => 0,
            "1" => 1,
            _ => return Err(PerformanceError::AboveOne(s.to_owned())),
        };
        let mut frac_value: u64 = 0;
        if let Some(f) = frac {
            if f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit()) {
                return Err(syntax());
            }
            if f.len() > 18 {
                return Err(PerformanceError::TooPrecise(s.to_owned()));
            }
            for b in f.bytes() {
                frac_value = frac_value * 10 + u64::from(b - b'0');
            }
            for _ in f.len()..18 {
                frac_value *= 10;
            }
        }
        let v = whole_value * Self::ONE + frac_value;
        if v > Self::ONE {
            return Err(PerformanceError::AboveOne(s.to_owned()));
        }
        Ok(Self(v))
    }
}

impl fmt::Display for Performance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whole = self.0 / Self::ONE;
        let frac = self.0 % Self::ONE;
        if frac == 0 {
            write!(f, "{whole}")
        } else {
            let digits = format!("{frac:018}");
            write!(f, "{whole}.{}", digits.trim_end_matches('0'))
        }
    }
}

impl Serialize for Performance {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Performance {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

// ---------------------------------------------------------------------------
// Base58 keys
// ---------------------------------------------------------------------------

fn b58_32<E: serde::de::Error>(s: &str, what: &str) -> Result<[u8; 32], E> {
    let v = bs58::decode(s)
        .into_vec()
        .map_err(|e| E::custom(format!("{what} \"{s}\" is not base58: {e}")))?;
    let len = v.len();
    v.try_into().map_err(|_| {
        E::custom(format!(
            "{what} \"{s}\" decodes to {len} bytes, expected 32"
        ))
    })
}

/// Serde adapter: an ed25519 public key as base58 text (must be a valid
/// curve point, as nym-api's own reader requires).
pub mod bs58_ed25519 {
    use super::*;

    /// Write base58.
    pub fn serialize<S: Serializer>(k: &VerifyingKey, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&bs58::encode(k.as_bytes()).into_string())
    }

    /// Read base58.
    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<VerifyingKey, D::Error> {
        let s = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        let b = b58_32::<D::Error>(&s, "ed25519 identity key")?;
        VerifyingKey::from_bytes(&b).map_err(|_| {
            serde::de::Error::custom(format!(
                "ed25519 identity key \"{s}\" is not a valid curve point"
            ))
        })
    }
}

/// Serde adapter: an x25519 public key as base58 text.
pub mod bs58_x25519 {
    use super::*;

    /// Write base58.
    pub fn serialize<S: Serializer>(k: &X25519Public, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&bs58::encode(k.as_bytes()).into_string())
    }

    /// Read base58.
    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<X25519Public, D::Error> {
        let s = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        Ok(X25519Public::from(b58_32::<D::Error>(
            &s,
            "x25519 sphinx key",
        )?))
    }
}

// ---------------------------------------------------------------------------
// Skimmed nodes
// ---------------------------------------------------------------------------

/// A node's assignment this epoch, as nym-api reports it. Clients ignore it:
/// layers come from the rewarded set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum NodeRole {
    /// An active mixnode on `layer` (1..=3).
    Mixnode {
        /// The layer.
        layer: u8,
    },
    /// An active entry gateway.
    #[serde(alias = "entry", alias = "gateway")]
    EntryGateway,
    /// An active exit gateway.
    #[serde(alias = "exit")]
    ExitGateway,
    /// In the rewarded set as standby.
    Standby,
    /// Not in the rewarded set.
    #[default]
    Inactive,
}

/// The roles a node declares it can take (`supported_roles`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub struct DeclaredRoles {
    /// Can mix.
    pub mixnode: bool,
    /// Can be an entry gateway.
    pub entry: bool,
    /// Runs a network requester.
    pub exit_nr: bool,
    /// Runs an IP packet router.
    pub exit_ipr: bool,
}

/// The client-facing websocket a gateway announces.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BasicEntryInformation {
    /// DNS name, if any.
    pub hostname: Option<String>,
    /// Plain websocket port.
    pub ws_port: u16,
    /// TLS websocket port (TLS terminated in front of the node), if any.
    pub wss_port: Option<u16>,
}

/// One node in a skimmed listing: what a client needs to build packets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkimmedNode {
    /// Node id.
    pub node_id: NodeId,
    /// ed25519 identity, base58.
    #[serde(with = "bs58_ed25519")]
    pub ed25519_identity_pubkey: VerifyingKey,
    /// Announced IPs; the first is the mix address.
    pub ip_addresses: Vec<IpAddr>,
    /// Sphinx (mix) port.
    pub mix_port: u16,
    /// x25519 sphinx key for the current key rotation, base58.
    #[serde(with = "bs58_x25519")]
    pub x25519_sphinx_pubkey: X25519Public,
    /// Assignment this epoch (also read as `epoch_role`).
    #[serde(alias = "epoch_role")]
    pub role: NodeRole,
    /// Declared roles; all false when absent.
    #[serde(default)]
    pub supported_roles: DeclaredRoles,
    /// Client websocket details (gateways).
    pub entry: Option<BasicEntryInformation>,
    /// Performance over the last 24 h.
    pub performance: Performance,
}

/// Paging details of a listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Pagination {
    /// Total number of items across all pages.
    pub total: usize,
    /// This page's number (0-based).
    pub page: u32,
    /// Items on this page.
    pub size: usize,
}

/// One page of items.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaginatedResponse<T> {
    /// Paging details.
    pub pagination: Pagination,
    /// The items.
    pub data: Vec<T>,
}

/// Contract interval details carried in a `fresh` status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Interval {
    /// Interval id.
    pub id: u32,
    /// Epochs per interval.
    pub epochs_in_interval: u32,
    /// Start of the current epoch (RFC 3339).
    pub current_epoch_start: Timestamp,
    /// Epoch id within the interval.
    pub current_epoch_id: u32,
    /// Epoch length, `{"secs":…,"nanos":…}`.
    pub epoch_length: Duration,
    /// Epochs elapsed since the first one.
    pub total_elapsed_epochs: u32,
}

/// `metadata.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TopologyRequestStatus {
    /// `"no-updates"`: the caller's `epoch_id` is current; no nodes follow.
    NoUpdates,
    /// `{"fresh": Interval}`.
    Fresh(Interval),
}

/// The `metadata` object of skimmed listings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NodesResponseMetadata {
    /// Freshness status; may be null.
    pub status: Option<TopologyRequestStatus>,
    /// Absolute epoch id.
    pub absolute_epoch_id: u32,
    /// Current key-rotation id.
    pub rotation_id: u32,
    /// When nym-api refreshed its cache. Written in the display form; any
    /// unparsable string reads as the Unix epoch.
    #[serde(with = "lenient_display", default)]
    pub refreshed_at: Timestamp,
}

impl NodesResponseMetadata {
    /// Whether two responses describe the same network state: `status`,
    /// `absolute_epoch_id` and `rotation_id` equal (`refreshed_at` is not
    /// compared).
    pub fn consistency_check(&self, other: &NodesResponseMetadata) -> bool {
        self.status == other.status
            && self.absolute_epoch_id == other.absolute_epoch_id
            && self.rotation_id == other.rotation_id
    }
}

/// A skimmed listing: `{"metadata":{…},"nodes":{"pagination":{…},"data":[…]}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkimmedNodesResponse {
    /// Network state the listing describes.
    pub metadata: NodesResponseMetadata,
    /// The page.
    pub nodes: PaginatedResponse<SkimmedNode>,
}

impl SkimmedNodesResponse {
    /// Everything in one page (`page` 0, `size` = `total`), as nym-api
    /// currently answers.
    pub fn full(metadata: NodesResponseMetadata, nodes: Vec<SkimmedNode>) -> Self {
        Self {
            metadata,
            nodes: PaginatedResponse {
                pagination: Pagination {
                    total: nodes.len(),
                    page: 0,
                    size: nodes.len(),
                },
                data: nodes,
            },
        }
    }

    /// Page `page` of `per_page` items (`per_page` 0 means everything in
    /// page 0). A page past the end is empty.
    pub fn page_of(
        metadata: NodesResponseMetadata,
        all: &[SkimmedNode],
        page: u32,
        per_page: usize,
    ) -> Self {
        if per_page == 0 {
            return Self::full(metadata, all.to_vec());
        }
        let start = (page as usize).saturating_mul(per_page).min(all.len());
        let end = start.saturating_add(per_page).min(all.len());
        let data = all[start..end].to_vec();
        Self {
            metadata,
            nodes: PaginatedResponse {
                pagination: Pagination {
                    total: all.len(),
                    page,
                    size: data.len(),
                },
                data,
            },
        }
    }

    /// The `"no-updates"` answer: no nodes.
    pub fn no_updates(absolute_epoch_id: u32, rotation_id: u32, refreshed_at: Timestamp) -> Self {
        Self::full(
            NodesResponseMetadata {
                status: Some(TopologyRequestStatus::NoUpdates),
                absolute_epoch_id,
                rotation_id,
                refreshed_at,
            },
            Vec::new(),
        )
    }
}

/// A complete listing gathered from one or more pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkimmedNodesWithMetadata {
    /// All nodes, in page order.
    pub nodes: Vec<SkimmedNode>,
    /// The first page's metadata.
    pub metadata: NodesResponseMetadata,
}

/// Problems with nym-api answers.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ApiError {
    /// A later page disagrees with the first on status, epoch or rotation.
    #[error("Inconsistent paged metadata")]
    InconsistentPagedMetadata,
    /// The mixnode and gateway listings describe different network states.
    #[error("inconsistent nodes metadata between mixnodes and gateways calls! {mixnodes:?} and {gateways:?}")]
    InconsistentMetadata {
        /// From the mixnode listing.
        mixnodes: Box<NodesResponseMetadata>,
        /// From the gateway listing.
        gateways: Box<NodesResponseMetadata>,
    },
    /// A page brought no new nodes although the total is not reached.
    #[error("nym-api returned an empty page {page} with only {have} of {total} nodes gathered")]
    StalledPaging {
        /// The empty page.
        page: u32,
        /// Nodes gathered so far.
        have: usize,
        /// Announced total.
        total: usize,
    },
    /// `push` after the listing completed, or `finish` before any page.
    #[error("page collector used out of order")]
    OutOfOrder,
}

/// What to do after a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageProgress {
    /// Fetch this page next.
    NeedPage(u32),
    /// Every node is in; call [`PageCollector::finish`].
    Complete,
}

/// Gathers a paged skimmed listing, starting from page 0: the caller fetches
/// the page [`PageProgress::NeedPage`] names until [`PageProgress::Complete`].
#[derive(Debug, Clone, Default)]
pub struct PageCollector {
    metadata: Option<NodesResponseMetadata>,
    nodes: Vec<SkimmedNode>,
    next_page: u32,
    complete: bool,
}

impl PageCollector {
    /// An empty collector; fetch page 0 first.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add the page that was asked for. Later pages must agree with the
    /// first one's metadata.
    pub fn push(&mut self, page: SkimmedNodesResponse) -> Result<PageProgress, ApiError> {
        if self.complete {
            return Err(ApiError::OutOfOrder);
        }
        match &self.metadata {
            None => self.metadata = Some(page.metadata),
            Some(first) => {
                if !first.consistency_check(&page.metadata) {
                    return Err(ApiError::InconsistentPagedMetadata);
                }
            }
        }
        let added = page.nodes.data.len();
        let total = page.nodes.pagination.total;
        self.nodes.extend(page.nodes.data);
        if self.nodes.len() >= total {
            self.complete = true;
            return Ok(PageProgress::Complete);
        }
        if added == 0 {
            return Err(ApiError::StalledPaging {
                page: self.next_page,
                have: self.nodes.len(),
                total,
            });
        }
        self.next_page = self.next_page.saturating_add(1);
        Ok(PageProgress::NeedPage(self.next_page))
    }

    /// The gathered listing.
    pub fn finish(self) -> Result<SkimmedNodesWithMetadata, ApiError> {
        match (self.complete, self.metadata) {
            (true, Some(metadata)) => Ok(SkimmedNodesWithMetadata {
                nodes: self.nodes,
                metadata,
            }),
            _ => Err(ApiError::OutOfOrder),
        }
    }
}

// ---------------------------------------------------------------------------
// Rewarded set
// ---------------------------------------------------------------------------

/// `GET v1/nym-nodes/rewarded-set`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub struct RewardedSetResponse {
    /// Epoch the assignment is for (0 when absent).
    #[serde(default)]
    pub epoch_id: u32,
    /// Entry gateways.
    pub entry_gateways: Vec<NodeId>,
    /// Exit gateways.
    pub exit_gateways: Vec<NodeId>,
    /// Layer-1 mixnodes.
    pub layer1: Vec<NodeId>,
    /// Layer-2 mixnodes.
    pub layer2: Vec<NodeId>,
    /// Layer-3 mixnodes.
    pub layer3: Vec<NodeId>,
    /// Standby nodes.
    pub standby: Vec<NodeId>,
}

// ---------------------------------------------------------------------------
// Key rotation
// ---------------------------------------------------------------------------

/// The contract's key-rotation schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct KeyRotationState {
    /// Epochs each rotation lasts.
    pub validity_epochs: u32,
    /// Epoch at which rotation 0 began.
    pub initial_epoch_id: u32,
}

impl KeyRotationState {
    /// `(epoch − initial_epoch_id) / validity_epochs`, subtraction saturating
    /// at 0. `None` when `validity_epochs` is 0.
    pub fn key_rotation_id(&self, epoch: u32) -> Option<u32> {
        epoch
            .saturating_sub(self.initial_epoch_id)
            .checked_div(self.validity_epochs)
    }

    /// First epoch of the rotation `epoch` belongs to (saturating).
    pub fn rotation_starting_epoch(&self, epoch: u32) -> Option<u32> {
        let id = self.key_rotation_id(epoch)?;
        Some(
            self.initial_epoch_id
                .saturating_add(self.validity_epochs.saturating_mul(id)),
        )
    }

    /// Last epoch of the rotation `epoch` belongs to (saturating).
    pub fn rotation_ending_epoch(&self, epoch: u32) -> Option<u32> {
        Some(
            self.rotation_starting_epoch(epoch)?
                .saturating_add(self.validity_epochs)
                .saturating_sub(1),
        )
    }
}

/// The precomputed `progress` object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct KeyRotationProgressInfo {
    /// Current rotation id.
    pub current_key_rotation_id: u32,
    /// First epoch of the current rotation.
    pub current_rotation_starting_epoch: u32,
    /// Last epoch of the current rotation.
    pub current_rotation_ending_epoch: u32,
}

/// `GET v1/epoch/key-rotation-info`. The first four keys sit at the top level
/// of the JSON, next to `progress`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct KeyRotationInfoResponse {
    /// The schedule.
    pub key_rotation_state: KeyRotationState,
    /// Current absolute epoch.
    pub current_absolute_epoch_id: u32,
    /// When the current epoch began (RFC 3339).
    pub current_epoch_start: Timestamp,
    /// Epoch length, `{"secs":…,"nanos":…}`.
    pub epoch_duration: Duration,
    /// Values derived from the above.
    pub progress: KeyRotationProgressInfo,
}

impl KeyRotationInfoResponse {
    /// Build a response, computing `progress`. `None` when
    /// `validity_epochs` is 0.
    pub fn new(
        key_rotation_state: KeyRotationState,
        current_absolute_epoch_id: u32,
        current_epoch_start: Timestamp,
        epoch_duration: Duration,
    ) -> Option<Self> {
        let epoch = current_absolute_epoch_id;
        Some(Self {
            key_rotation_state,
            current_absolute_epoch_id,
            current_epoch_start,
            epoch_duration,
            progress: KeyRotationProgressInfo {
                current_key_rotation_id: key_rotation_state.key_rotation_id(epoch)?,
                current_rotation_starting_epoch: key_rotation_state
                    .rotation_starting_epoch(epoch)?,
                current_rotation_ending_epoch: key_rotation_state.rotation_ending_epoch(epoch)?,
            },
        })
    }

    /// The current rotation id computed from the schedule (not the
    /// `progress` field); `None` when `validity_epochs` is 0.
    pub fn current_key_rotation_id(&self) -> Option<u32> {
        self.key_rotation_state
            .key_rotation_id(self.current_absolute_epoch_id)
    }

    /// Parity of the current rotation (unknown when it cannot be computed).
    pub fn key_rotation(&self) -> KeyRotation {
        self.current_key_rotation_id()
            .map_or(KeyRotation::Unknown, KeyRotation::from_rotation_id)
    }
}
