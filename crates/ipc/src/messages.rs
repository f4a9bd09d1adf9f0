//! Every message that crosses the control socket.
//!
//! A connection carries [`ClientMessage`]s from the client and
//! [`ServerMessage`]s from the daemon. The client speaks first with
//! [`Hello`]; the daemon answers [`Welcome`] (or [`ServerMessage::Error`]
//! and closes). After that the client sends [`Request`]s, each with an id
//! it chooses, and the daemon answers each with a [`Response`] carrying the
//! same id, in any order. A [`RequestBody::Subscribe`] request is answered
//! with [`ResponseBody::Subscribed`], then a [`ServerMessage::Snapshot`],
//! then [`ServerMessage::Event`]s and [`ServerMessage::Lagged`] notices,
//! all tagged with the subscription's request id, until the connection
//! closes.
//!
//! Evolution rules (MessagePack with named fields, see [`crate::codec`]):
//! - a new optional field gets `#[serde(default)]`, so older peers' frames
//!   still decode, and older peers ignore it;
//! - a new request, response, event or error code is announced by a
//!   feature string in [`Welcome::features`]; clients must not send a
//!   request the daemon does not announce;
//! - anything else (renaming, removing, changing a type) bumps
//!   [`crate::PROTOCOL_VERSION`].
//!
//! No field is a `HashMap`: the encoding of every message is deterministic,
//! which the golden fixtures rely on.

use serde::{Deserialize, Serialize};

/// What a client sends.
#[allow(
    clippy::large_enum_variant,
    reason = "messages live briefly between the socket and a handler; boxing would only add allocations"
)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientMessage {
    /// The first message on every connection.
    Hello(Hello),
    /// A request; only after [`Welcome`].
    Request(Request),
}

/// What the daemon sends.
#[allow(
    clippy::large_enum_variant,
    reason = "messages live briefly between the socket and a handler; boxing would only add allocations"
)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServerMessage {
    /// The answer to [`Hello`].
    Welcome(Welcome),
    /// The answer to one [`Request`].
    Response(Response),
    /// The state at the start of a subscription.
    Snapshot {
        /// The request id of the `Subscribe` request.
        subscription: u64,
        /// Everything a dashboard needs to draw its first frame.
        snapshot: Snapshot,
    },
    /// One change after the snapshot.
    Event {
        /// The request id of the `Subscribe` request.
        subscription: u64,
        /// What changed.
        event: Event,
    },
    /// The subscriber read too slowly and `missed` events were dropped for
    /// it. The daemon never waits for a subscriber; a client that needs an
    /// exact picture again subscribes anew for a fresh snapshot.
    Lagged {
        /// The request id of the `Subscribe` request.
        subscription: u64,
        /// How many events were dropped.
        missed: u64,
    },
    /// A connection-level error (bad hello, version mismatch, malformed
    /// frame). The daemon closes the connection after sending it.
    Error(IpcError),
}

/// The client's opening message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// [`crate::PROTOCOL_VERSION`] of the client.
    pub protocol_version: u32,
    /// Who is calling, for logs: `nymctl 0.1.0`, `nym-tui 0.1.0`.
    pub client_name: String,
}

/// The daemon's answer to [`Hello`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    /// The daemon's package version, e.g. `0.1.0`.
    pub daemon_version: String,
    /// [`crate::PROTOCOL_VERSION`] of the daemon.
    pub protocol_version: u32,
    /// Random per daemon start: a client that reconnects and sees another
    /// value knows the daemon restarted and its snapshot is stale.
    pub instance_id: String,
    /// Optional capabilities beyond the base protocol version.
    pub features: Vec<String>,
    /// What this connection may do, decided from the peer's credentials.
    pub tier: Tier,
}

/// Access level of one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Tier {
    /// Read and subscribe only.
    Observe,
    /// Everything, including requests that change state.
    Operate,
}

/// A request with the id its answer will carry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// Chosen by the client, unique among its requests in flight.
    pub id: u64,
    /// What to do.
    pub body: RequestBody,
}

/// One variant per `nymctl` command.
#[allow(
    clippy::large_enum_variant,
    reason = "messages live briefly between the socket and a handler; boxing would only add allocations"
)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RequestBody {
    /// Create an identity: keys, gateway registration, settings.
    Init(InitRequest),
    /// Start a stopped identity.
    Start {
        /// Identity name.
        id: String,
    },
    /// Stop a running identity (its keys stay).
    Stop {
        /// Identity name.
        id: String,
    },
    /// Stop and start again.
    Restart {
        /// Identity name.
        id: String,
    },
    /// Stop an identity and delete it with its keys.
    Remove {
        /// Identity name.
        id: String,
    },
    /// Every identity, brief.
    List,
    /// One identity in detail, or all.
    Status {
        /// Identity name; `None` for all.
        id: Option<String>,
    },
    /// The Nym address of an identity.
    Address {
        /// Identity name.
        id: String,
    },
    /// Gateways known from the topology.
    Gateways {
        /// Measure the latency to each (slow).
        latency: bool,
    },
    /// A summary of the current topology.
    Topology,
    /// Send one message through an identity.
    Send(SendRequest),
    /// Start a subscription (see the module docs).
    Subscribe {
        /// Only events of this identity (plus daemon-wide ones).
        identity: Option<String>,
    },
    /// Create an identity from existing nym-client key material.
    Import(ImportRequest),
    /// Version, uptime, paths of the daemon.
    DaemonInfo,
    /// Stop every identity and exit.
    Shutdown,
    /// Show or change who may connect to an identity's websocket port
    /// (announced by [`crate::FEATURE_ACCESS`]).
    Access(AccessRequest),
    /// Show or change an identity's SOCKS5 proxy (announced by
    /// [`crate::FEATURE_SOCKS5`]).
    Socks5(Socks5Request),
}

impl RequestBody {
    /// Whether the request changes state, so needs [`Tier::Operate`].
    pub fn changes_state(&self) -> bool {
        match self {
            Self::Init(_)
            | Self::Start { .. }
            | Self::Stop { .. }
            | Self::Restart { .. }
            | Self::Remove { .. }
            | Self::Send(_)
            | Self::Import(_)
            | Self::Shutdown
            | Self::Access(_)
            | Self::Socks5(_) => true,
            Self::List
            | Self::Status { .. }
            | Self::Address { .. }
            | Self::Gateways { .. }
            | Self::Topology
            | Self::Subscribe { .. }
            | Self::DaemonInfo => false,
        }
    }

    /// A short stable name, as used in logs and fixture files.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Init(_) => "init",
            Self::Start { .. } => "start",
            Self::Stop { .. } => "stop",
            Self::Restart { .. } => "restart",
            Self::Remove { .. } => "remove",
            Self::List => "list",
            Self::Status { .. } => "status",
            Self::Address { .. } => "address",
            Self::Gateways { .. } => "gateways",
            Self::Topology => "topology",
            Self::Send(_) => "send",
            Self::Subscribe { .. } => "subscribe",
            Self::Import(_) => "import",
            Self::DaemonInfo => "daemon_info",
            Self::Shutdown => "shutdown",
            Self::Access(_) => "access",
            Self::Socks5(_) => "socks5",
        }
    }
}

/// `nymctl init`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InitRequest {
    /// Identity name.
    pub id: String,
    /// Gateway identity key (base58) to register with; `None` picks one.
    pub gateway: Option<String>,
    /// Pick the gateway with the lowest latency instead of at random.
    pub latency_based_selection: bool,
    /// Websocket port for apps; `None` takes the next free one.
    pub port: Option<u16>,
    /// Websocket listen address; `None` means `127.0.0.1`.
    pub host: Option<String>,
    /// Create but do not start.
    pub no_start: bool,
    /// Give the identity a SOCKS5 proxy (`nymctl init --socks5`); `None`
    /// (and from older clients): none. Announced by
    /// [`crate::FEATURE_SOCKS5`].
    #[serde(default)]
    pub socks5: Option<InitSocks5>,
}

/// The SOCKS5 proxy of a new identity.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InitSocks5 {
    /// Its port; `None`: the next free one from 1080.
    #[serde(default)]
    pub port: Option<u16>,
    /// The network requester's Nym address, or `auto` (chosen from the
    /// directory); `None`: none yet (the port is not served until one is
    /// set).
    #[serde(default)]
    pub provider: Option<String>,
    /// Plain messages with the identity's address as return address, as
    /// nym-socks5-client does; `false` (default): anonymous, with reply
    /// SURBs.
    #[serde(default)]
    pub plain: bool,
}

/// `nymctl socks5`: changes to an identity's SOCKS5 proxy; `None` leaves a
/// setting as it is, and a request without any change only reads. An
/// identity without a proxy gets one (enabled, anonymous, the next free
/// port from 1080) on any change. Answered with the identity
/// ([`IdentityInfo::socks5`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Socks5Request {
    /// Identity name.
    pub id: String,
    /// Serve the port (`Some(true)`) or not (`Some(false)`).
    #[serde(default)]
    pub enable: Option<bool>,
    /// The port.
    #[serde(default)]
    pub port: Option<u16>,
    /// The network requester's Nym address, or `auto`.
    #[serde(default)]
    pub provider: Option<String>,
    /// Anonymous (`Some(true)`) or plain (`Some(false)`) messages.
    #[serde(default)]
    pub anonymous: Option<bool>,
}

impl Socks5Request {
    /// Whether the request changes nothing (it only reads the settings).
    pub fn is_read_only(&self) -> bool {
        self.enable.is_none()
            && self.port.is_none()
            && self.provider.is_none()
            && self.anonymous.is_none()
    }
}

/// `nymctl access`: changes to who may connect to an identity's websocket
/// port. Empty lists and `None` leave a setting as it is; a request without
/// any change only reads the settings. The daemon resolves user and group
/// names with its own user database and answers with the identity
/// ([`IdentityInfo::access`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessRequest {
    /// Identity name.
    pub id: String,
    /// Web origins (`scheme://host[:port]`) whose pages may connect.
    #[serde(default)]
    pub allow_origins: Vec<String>,
    /// Origins to take off the list.
    #[serde(default)]
    pub remove_origins: Vec<String>,
    /// Local users (names, or numeric uids) who may connect.
    #[serde(default)]
    pub allow_users: Vec<String>,
    /// Users to take off the list.
    #[serde(default)]
    pub remove_users: Vec<String>,
    /// Local groups (names) whose members may connect.
    #[serde(default)]
    pub allow_groups: Vec<String>,
    /// Groups to take off the list.
    #[serde(default)]
    pub remove_groups: Vec<String>,
    /// `Some(true)`: any local user may connect; `Some(false)`: only root,
    /// nymd's own user and the listed users and groups; `None`: unchanged.
    #[serde(default)]
    pub any_local_user: Option<bool>,
}

impl AccessRequest {
    /// Whether the request changes nothing (it only reads the settings).
    pub fn is_read_only(&self) -> bool {
        self.allow_origins.is_empty()
            && self.remove_origins.is_empty()
            && self.allow_users.is_empty()
            && self.remove_users.is_empty()
            && self.allow_groups.is_empty()
            && self.remove_groups.is_empty()
            && self.any_local_user.is_none()
    }
}

/// `nymctl send`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendRequest {
    /// Identity that sends.
    pub id: String,
    /// Recipient Nym address.
    pub to: String,
    /// The message.
    #[serde(with = "serde_bytes")]
    pub message: Vec<u8>,
}

/// Longest identity name nymd accepts.
pub const MAX_IDENTITY_NAME_LEN: usize = 64;

/// Whether `id` is a usable identity name (it names a folder in nymd's
/// state dir): 1-64 characters from `A-Z a-z 0-9 _ -`, not starting with
/// `.`. nymd and nymctl both check names with it.
pub fn is_valid_identity_name(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_IDENTITY_NAME_LEN
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Secret key bytes on the control socket: encoded as MessagePack bytes
/// (as a plain `Vec<u8>` with `serde_bytes` would be), wiped from memory
/// when dropped, and never shown by `Debug`.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct SecretBytes(Vec<u8>);

impl SecretBytes {
    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl From<Vec<u8>> for SecretBytes {
    fn from(v: Vec<u8>) -> Self {
        Self(v)
    }
}

impl std::ops::Deref for SecretBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for SecretBytes {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

impl std::fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[secret, {} bytes]", self.0.len())
    }
}

impl Serialize for SecretBytes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serde_bytes::serialize(&self.0, s)
    }
}

impl<'de> Deserialize<'de> for SecretBytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde_bytes::deserialize::<Vec<u8>, D>(d).map(Self)
    }
}

/// `nymctl import`: key material read from a nym-client folder
/// (`~/.nym/clients/<id>/data/*.pem`), raw key bytes (PEM bodies decoded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportRequest {
    /// Name of the new identity.
    pub id: String,
    /// The folder it came from, for logs and messages.
    pub source: String,
    /// `private_identity.pem`: ed25519 secret seed, 32 bytes.
    pub private_identity: SecretBytes,
    /// `public_identity.pem`: ed25519 public key, 32 bytes.
    #[serde(with = "serde_bytes")]
    pub public_identity: Vec<u8>,
    /// `private_encryption.pem`: x25519 secret, 32 bytes.
    pub private_encryption: SecretBytes,
    /// `public_encryption.pem`: x25519 public key, 32 bytes.
    #[serde(with = "serde_bytes")]
    pub public_encryption: Vec<u8>,
    /// `ack_key.pem`: AES-128-CTR key, 16 bytes.
    pub ack_key: SecretBytes,
    /// The gateway registration, when the client could read it. `None`
    /// makes the daemon register anew.
    #[serde(default)]
    pub gateway: Option<ImportedGateway>,
    /// Websocket port from the folder's `config.toml`, if any.
    #[serde(default)]
    pub port: Option<u16>,
    /// Websocket host from the folder's `config.toml`, if any.
    #[serde(default)]
    pub host: Option<String>,
}

/// A gateway registration carried over from nym-client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportedGateway {
    /// Gateway identity key, base58.
    pub gateway_id: String,
    /// Gateway websocket listener URL.
    pub listener: String,
    /// The AES-256-GCM-SIV shared key derived at registration, 32 bytes.
    pub shared_key: SecretBytes,
}

/// The answer to one [`Request`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// The id of the request.
    pub id: u64,
    /// Success body or typed error.
    pub result: Result<ResponseBody, IpcError>,
}

/// Success bodies.
#[allow(
    clippy::large_enum_variant,
    reason = "messages live briefly between the socket and a handler; boxing would only add allocations"
)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResponseBody {
    /// Done; nothing to report (start, stop, restart, remove, send, shutdown).
    Done,
    /// One identity (init, import).
    Identity(IdentityInfo),
    /// Several identities (list, status).
    Identities(Vec<IdentityInfo>),
    /// `address`.
    Address {
        /// Identity name.
        id: String,
        /// Its Nym address.
        address: String,
    },
    /// `gateways`.
    Gateways(Vec<GatewayInfo>),
    /// `topology`.
    Topology(TopologySummary),
    /// `subscribe`: the snapshot and events follow.
    Subscribed,
    /// `daemon info`.
    DaemonInfo(DaemonInfo),
}

/// A typed error: what went wrong, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct IpcError {
    /// Stable code; scripts and exit codes use it.
    pub code: ErrorCode,
    /// What went wrong, for a person.
    pub message: String,
    /// What to do about it, if we know.
    pub hint: Option<String>,
}

impl IpcError {
    /// An error without a hint.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            hint: None,
        }
    }

    /// Add a hint.
    #[must_use]
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// `NotFound` for an identity.
    pub fn unknown_identity(id: &str) -> Self {
        Self::new(
            ErrorCode::NotFound,
            format!("identity '{id}' does not exist"),
        )
        .with_hint("`nymctl list` shows the identities")
    }
}

/// Stable error codes. A code the client does not know decodes as
/// [`ErrorCode::Unknown`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ErrorCode {
    /// No such identity (or gateway).
    NotFound,
    /// An identity of that name exists already.
    AlreadyExists,
    /// The requested websocket port is taken.
    PortInUse,
    /// The connection's tier does not allow the request.
    PermissionDenied,
    /// A field has a value that cannot work.
    InvalidArgument,
    /// Client and daemon speak different protocol versions.
    VersionMismatch,
    /// The daemon cannot do it now (starting, shutting down, network down).
    Unavailable,
    /// The identity is in a state that does not allow it (e.g. not running).
    InvalidState,
    /// A frame that does not decode, or a request before `Hello`.
    ProtocolError,
    /// A bug or an unexpected failure inside the daemon.
    Internal,
    /// A code from a newer daemon.
    #[serde(other)]
    Unknown,
}

/// Lifecycle state of an identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum IdentityState {
    /// Not running.
    Stopped,
    /// Fetching topology, connecting to the gateway.
    Starting,
    /// Connected and serving apps.
    Running,
    /// Lost the gateway; trying again.
    Reconnecting,
    /// Gave up; `reason` says why.
    Failed {
        /// What went wrong.
        reason: String,
    },
}

impl IdentityState {
    /// One lowercase word, for tables.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Stopped => "stopped",
            Self::Starting => "starting",
            Self::Running => "running",
            Self::Reconnecting => "reconnecting",
            Self::Failed { .. } => "failed",
        }
    }
}

/// An identity as the control plane shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityInfo {
    /// Identity name.
    pub id: String,
    /// Lifecycle state.
    pub state: IdentityState,
    /// Nym address, once the identity has a gateway.
    pub address: Option<String>,
    /// Websocket listen address for apps.
    pub websocket_host: String,
    /// Websocket port for apps.
    pub websocket_port: u16,
    /// Gateway identity key, base58.
    pub gateway_id: Option<String>,
    /// Gateway websocket URL.
    pub gateway_url: Option<String>,
    /// Gateway connection status, while running.
    #[serde(default)]
    pub gateway_status: Option<GatewayStatus>,
    /// Apps connected to the websocket now.
    pub connected_apps: Vec<AppInfo>,
    /// Seconds since the identity last started; `None` when stopped.
    pub uptime_secs: Option<u64>,
    /// Traffic since the identity last started.
    pub counters: TrafficCounters,
    /// Who may connect to the websocket port. `None` from daemons that
    /// predate access control.
    #[serde(default)]
    pub access: Option<AccessInfo>,
    /// Memory held for what others send the identity, against its bounds
    /// and the daemon's budget. `None` when not running, or from daemons
    /// that predate memory budgets.
    #[serde(default)]
    pub memory: Option<MemoryInfo>,
    /// The identity's SOCKS5 proxy; `None` when it has none, or from
    /// daemons that predate SOCKS5.
    #[serde(default)]
    pub socks5: Option<Socks5Info>,
}

/// An identity's SOCKS5 proxy: its settings, and its counters since the
/// identity started (0 while stopped).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Socks5Info {
    /// The port is to be served (it is once a provider is set).
    pub enabled: bool,
    /// Listen address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// The network requester's Nym address, if set.
    pub provider: Option<String>,
    /// Anonymous (reply SURBs, no return address) rather than plain.
    pub anonymous: bool,
    /// The identity is running and the port is served.
    pub listening: bool,
    /// Connections open at once, at most.
    pub max_connections: u32,
    /// Seconds a CONNECT waits for the network requester.
    pub connect_timeout_secs: u64,
    /// Seconds without data before a connection is closed.
    pub idle_timeout_secs: u64,
    /// Connections open now.
    pub open_connections: u64,
    /// Connections accepted.
    pub connections_total: u64,
    /// Connections refused here (user check, cap, bad handshake).
    pub connections_refused: u64,
    /// CONNECTs that failed (refused by the requester, unreachable, no
    /// answer in time).
    pub connections_failed: u64,
    /// Bytes read from programs and sent into the mixnet.
    pub bytes_sent: u64,
    /// Bytes received from the mixnet and written to programs.
    pub bytes_received: u64,
}

impl Socks5Info {
    /// The counters alone, as [`Event::Traffic`] carries them.
    pub fn counters(&self) -> Socks5Counters {
        Socks5Counters {
            open_connections: self.open_connections,
            connections_total: self.connections_total,
            connections_refused: self.connections_refused,
            connections_failed: self.connections_failed,
            bytes_sent: self.bytes_sent,
            bytes_received: self.bytes_received,
        }
    }
}

/// The counters of an identity's SOCKS5 proxy since the identity started,
/// as [`Event::Traffic`] carries them every second (the same numbers as
/// in [`Socks5Info`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Socks5Counters {
    /// Connections open now.
    pub open_connections: u64,
    /// Connections accepted.
    pub connections_total: u64,
    /// Connections refused here (user check, cap, bad handshake).
    pub connections_refused: u64,
    /// CONNECTs that failed (refused by the requester, unreachable, no
    /// answer in time).
    pub connections_failed: u64,
    /// Bytes read from programs and sent into the mixnet.
    pub bytes_sent: u64,
    /// Bytes received from the mixnet and written to programs.
    pub bytes_received: u64,
}

impl Socks5Counters {
    /// Add `other` to these (for totals over identities).
    pub fn add(&mut self, other: &Socks5Counters) {
        self.open_connections += other.open_connections;
        self.connections_total += other.connections_total;
        self.connections_refused += other.connections_refused;
        self.connections_failed += other.connections_failed;
        self.bytes_sent += other.bytes_sent;
        self.bytes_received += other.bytes_received;
    }
}

/// Memory an identity holds for what other parties send it, each store
/// against its own bound, and what all identities together hold against
/// the daemon's budget (`[daemon] memory_budget_mib`). Bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MemoryInfo {
    /// Messages waiting for an app.
    pub inbox_bytes: u64,
    /// Bound of `inbox_bytes`.
    pub inbox_bound: u64,
    /// Messages on their way from the mixnet client to the app port.
    pub received_bytes: u64,
    /// Bound of `received_bytes`.
    pub received_bound: u64,
    /// Fragments of incomplete messages.
    pub reassembly_bytes: u64,
    /// Bound of `reassembly_bytes`.
    pub reassembly_bound: u64,
    /// Reply SURBs received from others.
    pub surb_store_bytes: u64,
    /// Bound of `surb_store_bytes`.
    pub surb_store_bound: u64,
    /// Keys of the reply SURBs this identity handed out.
    pub reply_key_bytes: u64,
    /// Bound of `reply_key_bytes`.
    pub reply_key_bound: u64,
    /// What the SOCKS5 connections hold of the network requester's answers
    /// for their programs. 0 (and its bound 0) for an identity without a
    /// served SOCKS5 port, and from daemons that predate it.
    pub socks_bytes: u64,
    /// Bound of `socks_bytes`.
    pub socks_bound: u64,
    /// What every identity of the daemon holds together.
    pub daemon_bytes: u64,
    /// The daemon's budget for that.
    pub daemon_budget: u64,
}

impl MemoryInfo {
    /// This identity's bytes over all its stores.
    pub fn total(&self) -> u64 {
        self.inbox_bytes
            + self.received_bytes
            + self.reassembly_bytes
            + self.surb_store_bytes
            + self.reply_key_bytes
            + self.socks_bytes
    }
}

/// Who may connect to an identity's websocket port, and how many at once.
/// Root and nymd's own user may always connect.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessInfo {
    /// Any local user may connect (no user check).
    pub any_local_user: bool,
    /// `any_local_user` holds because the identity was created before access
    /// control existed (its `config.toml` does not say).
    pub predates_access_control: bool,
    /// Local users (uids) who may connect.
    pub allowed_uids: Vec<u32>,
    /// Local groups whose members may connect.
    pub allowed_groups: Vec<String>,
    /// Web origins whose pages may connect; any other browser page is
    /// refused.
    pub allowed_origins: Vec<String>,
    /// The port may listen on an address other than loopback (the user
    /// check does not apply to apps on other machines).
    pub allow_remote_apps: bool,
    /// Apps connected at once, at most.
    pub max_apps: u32,
}

/// One app connected to an identity's websocket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppInfo {
    /// Connection number within the identity.
    pub connection: u64,
    /// Peer socket address, e.g. `127.0.0.1:50312`.
    pub peer: String,
    /// Seconds since it connected.
    pub connected_secs: u64,
}

/// How an identity's gateway connection is doing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayStatus {
    /// Connected, reconnecting or down.
    pub connection: GatewayConnection,
    /// Last measured round trip, milliseconds.
    pub rtt_ms: Option<u32>,
    /// The last error seen on this gateway connection.
    pub last_error: Option<String>,
    /// Successful reconnections since the identity started.
    #[serde(default)]
    pub reconnects: u64,
    /// Bandwidth the gateway last reported as remaining, bytes; `None`
    /// when not known (no statistics yet, or an older daemon).
    #[serde(default)]
    pub bandwidth_remaining: Option<i64>,
}

/// Gateway connection state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum GatewayConnection {
    /// Authenticated and passing traffic.
    Connected,
    /// Lost; retrying.
    Reconnecting,
    /// Not connected and not trying (identity stopped or failed).
    Down,
}

/// Traffic counters of one identity, cumulative since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrafficCounters {
    /// Real (app) packets sent to the gateway.
    pub real_packets_sent: u64,
    /// Bytes of real packets sent.
    pub real_bytes_sent: u64,
    /// Real packets received from the gateway.
    pub real_packets_received: u64,
    /// Bytes of real packets received.
    pub real_bytes_received: u64,
    /// Cover packets sent.
    pub cover_packets_sent: u64,
    /// Bytes of cover packets sent.
    pub cover_bytes_sent: u64,
    /// Cover packets received (own loop cover coming back).
    pub cover_packets_received: u64,
    /// Bytes of cover packets received.
    pub cover_bytes_received: u64,
    /// Acknowledgements received for real packets.
    pub acks_received: u64,
    /// Real packets sent again after their ack did not come.
    pub retransmissions: u64,
    /// Real packets waiting to be sent now.
    pub queue_depth: u64,
    /// Messages kept in the persisted outbox (not yet acknowledged; sent
    /// again if nymd restarts now). Absent from older daemons: 0.
    #[serde(default)]
    pub outbox_messages: u64,
    /// Messages received while no app was connected, kept on disk until an
    /// app takes them. Absent from older daemons: 0.
    #[serde(default)]
    pub inbox_messages: u64,
    /// Warnings caused by what other parties sent (malformed messages,
    /// refused requests, incomplete messages dropped), also those the
    /// rate-limited log left out. Absent from older daemons: 0.
    #[serde(default)]
    pub outside_warnings: u64,
    /// Requests for reply SURBs refused (not through one of our SURBs,
    /// naming a recipient never sent to, over the rate limit). Absent from
    /// older daemons: 0.
    #[serde(default)]
    pub surb_requests_refused: u64,
    /// Reply keys of SURBs handed out before the last restart that were too
    /// old to keep when the saved reply state was loaded. Absent from older
    /// daemons: 0.
    #[serde(default)]
    pub reply_keys_expired_on_load: u64,
    /// Received reply SURBs dropped when the saved reply state was loaded
    /// because their key rotation is gone. Absent from older daemons: 0.
    #[serde(default)]
    pub reply_surbs_rotated_on_load: u64,
}

/// A gateway from the topology.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayInfo {
    /// Identity key, base58.
    pub identity: String,
    /// Host or IP address.
    pub host: String,
    /// Client websocket URL.
    pub ws_url: String,
    /// Performance score 0..=100 from the directory.
    pub performance: u8,
    /// Round trip measured now, when asked for with `latency`.
    pub latency_ms: Option<u32>,
}

/// A summary of the topology in use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopologySummary {
    /// Directory epoch it came from, if known.
    pub epoch: Option<u64>,
    /// Unix seconds of the last refresh.
    pub fetched_at_unix: u64,
    /// Mix layers, in route order.
    pub layers: Vec<TopologyLayer>,
    /// Gateways.
    pub gateways: Vec<NodeInfo>,
}

/// One mix layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopologyLayer {
    /// Layer number, 1-based.
    pub layer: u8,
    /// Its nodes.
    pub nodes: Vec<NodeInfo>,
}

/// A node of the topology.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Identity key, base58.
    pub identity: String,
    /// Mix (or gateway) address, `host:port`.
    pub address: String,
    /// Performance score 0..=100.
    pub performance: u8,
}

/// `daemon info`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonInfo {
    /// Package version.
    pub version: String,
    /// Control protocol version.
    pub protocol_version: u32,
    /// Same as in [`Welcome::instance_id`].
    pub instance_id: String,
    /// Process id.
    pub pid: u32,
    /// Seconds since the daemon started.
    pub uptime_secs: u64,
    /// The control socket.
    pub socket: String,
    /// The state dir.
    pub state_dir: String,
    /// Number of identities.
    pub identities: u32,
    /// Number of running identities.
    pub running: u32,
}

/// What a subscriber sees first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Every identity (or the one subscribed to).
    pub identities: Vec<IdentityInfo>,
    /// The topology in use, once fetched.
    pub topology: Option<TopologyBrief>,
}

/// Topology counts, for events and snapshots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopologyBrief {
    /// Directory epoch, if known.
    pub epoch: Option<u64>,
    /// Number of mix layers.
    pub layers: u8,
    /// Mix nodes over all layers.
    pub mixnodes: u32,
    /// Gateways.
    pub gateways: u32,
}

/// A change, pushed to subscribers.
#[allow(
    clippy::large_enum_variant,
    reason = "messages live briefly between the socket and a handler; boxing would only add allocations"
)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    /// An identity changed lifecycle state (also on creation).
    IdentityState {
        /// Identity name.
        identity: String,
        /// The new state.
        state: IdentityState,
    },
    /// An identity was removed.
    IdentityRemoved {
        /// Identity name.
        identity: String,
    },
    /// The gateway connection of an identity changed.
    GatewayStatus {
        /// Identity name.
        identity: String,
        /// Gateway identity key.
        gateway_id: String,
        /// The new status.
        status: GatewayStatus,
    },
    /// Traffic counters, every second while running.
    Traffic {
        /// Identity name.
        identity: String,
        /// Cumulative counters.
        counters: TrafficCounters,
        /// The SOCKS5 proxy's counters while its port is served; `None`
        /// for an identity without one (and from daemons that predate
        /// them in this event).
        #[serde(default)]
        socks5: Option<Socks5Counters>,
    },
    /// The topology was refreshed (daemon-wide).
    TopologyRefreshed(TopologyBrief),
    /// An app connected to an identity's websocket.
    AppConnected {
        /// Identity name.
        identity: String,
        /// The app.
        app: AppInfo,
    },
    /// An app disconnected.
    AppDisconnected {
        /// Identity name.
        identity: String,
        /// Its connection number.
        connection: u64,
    },
    /// A step of `init` (or `import`) while it runs.
    InitProgress {
        /// Identity name.
        identity: String,
        /// Which step.
        stage: InitStage,
        /// Details for a person, e.g. the gateway chosen.
        detail: String,
    },
}

impl Event {
    /// The identity the event is about; `None` for daemon-wide events.
    pub fn identity(&self) -> Option<&str> {
        match self {
            Self::IdentityState { identity, .. }
            | Self::IdentityRemoved { identity }
            | Self::GatewayStatus { identity, .. }
            | Self::Traffic { identity, .. }
            | Self::AppConnected { identity, .. }
            | Self::AppDisconnected { identity, .. }
            | Self::InitProgress { identity, .. } => Some(identity),
            Self::TopologyRefreshed(_) => None,
        }
    }

    /// A short stable name, as used in logs, JSON and fixture files.
    pub fn name(&self) -> &'static str {
        match self {
            Self::IdentityState { .. } => "identity_state",
            Self::IdentityRemoved { .. } => "identity_removed",
            Self::GatewayStatus { .. } => "gateway_status",
            Self::Traffic { .. } => "traffic",
            Self::TopologyRefreshed(_) => "topology_refreshed",
            Self::AppConnected { .. } => "app_connected",
            Self::AppDisconnected { .. } => "app_disconnected",
            Self::InitProgress { .. } => "init_progress",
        }
    }
}

/// Steps of creating an identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum InitStage {
    /// Generating (or checking imported) keys.
    Keys,
    /// Fetching the topology from the directory.
    FetchingTopology,
    /// Choosing a gateway (measuring latency when asked).
    SelectingGateway,
    /// Registering with the gateway.
    Registering,
    /// Writing the identity to the store.
    Storing,
    /// Starting the identity.
    Starting,
    /// Done.
    Done,
}

impl InitStage {
    /// A phrase for progress lines.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Keys => "keys",
            Self::FetchingTopology => "fetching topology",
            Self::SelectingGateway => "selecting gateway",
            Self::Registering => "registering with gateway",
            Self::Storing => "storing identity",
            Self::Starting => "starting",
            Self::Done => "done",
        }
    }
}
