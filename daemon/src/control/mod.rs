//! The control plane on the daemon side: the Unix socket that `nymctl` and
//! `nym-tui` talk to.
//!
//! # Layout
//! - [`socket`]: creating the socket file (folder, stale probe, mode, group).
//! - [`auth`]: peer credentials to [`Tier`].
//! - [`server`]: the accept loop and one task per connection.
//! - [`fake`]: an in-memory [`ControlBackend`] for tests and demos.
//!
//! The server knows nothing of identities: every request goes to a
//! [`ControlBackend`], which the identity manager implements. Wire types
//! come from `nymd-ipc`; the backend converts its own state to them.
//!
//! Start-up order: [`socket::bind`] (sets the umask briefly: do it before
//! anything else creates files), then [`server::serve`] with the listener.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use nymd::control::{self, ControlServerConfig, SocketOptions, TierPolicy, AccessRules};
//! let mut bound = control::socket::bind(&SocketOptions::new("/run/nymd/nymd.sock"))?;
//! let listener = bound.take_listener()?;
//! let backend = Arc::new(control::fake::FakeBackend::new());
//! let config = ControlServerConfig::new(TierPolicy::Credentials(AccessRules::for_this_process("nymd")));
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! control::server::serve(listener, backend, config, shutdown).await;
//! drop(bound); // removes the socket file
//! # Ok(()) }
//! ```

pub mod auth;
pub mod fake;
pub mod server;
pub mod socket;

use std::future::Future;
use std::time::Duration;

pub use auth::{AccessRules, PeerCredentials, TierPolicy};
pub use nymd_ipc::Tier;
use nymd_ipc::{
    AccessRequest, DaemonInfo, Event, GatewayInfo, IdentityInfo, ImportRequest, InitRequest,
    IpcError, SendRequest, Snapshot, Socks5Request, TopologySummary,
};
pub use socket::{BoundSocket, SocketError, SocketOptions};
use tokio::sync::broadcast;

/// What a backend method returns: a body, or an error for the client.
pub type BackendResult<T> = Result<T, IpcError>;

/// The daemon behind the control socket: one method per request.
///
/// Methods run concurrently (several connections, several requests per
/// connection); each runs to completion even if its client disconnects, so
/// a half-done `init` is never cancelled by a closed terminal. Errors are
/// [`IpcError`]s with a stable code, a message and, when known, a hint.
/// The server checks the tier before calling a method that changes state.
pub trait ControlBackend: Send + Sync + 'static {
    /// Create an identity. Emit [`Event::InitProgress`] for it while it runs.
    /// `caller` is the peer of the control connection (from the kernel,
    /// never from the request): its user becomes the one, besides root and
    /// nymd's own user, allowed on the new identity's port.
    fn init(
        &self,
        req: InitRequest,
        caller: Option<PeerCredentials>,
    ) -> impl Future<Output = BackendResult<IdentityInfo>> + Send;
    /// Start a stopped identity.
    fn start(&self, id: String) -> impl Future<Output = BackendResult<()>> + Send;
    /// Stop a running identity.
    fn stop(&self, id: String) -> impl Future<Output = BackendResult<()>> + Send;
    /// Stop and start an identity.
    fn restart(&self, id: String) -> impl Future<Output = BackendResult<()>> + Send;
    /// Stop and delete an identity.
    fn remove(&self, id: String) -> impl Future<Output = BackendResult<()>> + Send;
    /// Every identity.
    fn list(&self) -> impl Future<Output = BackendResult<Vec<IdentityInfo>>> + Send;
    /// One identity (`Some`, `NotFound` if unknown) or all (`None`).
    fn status(
        &self,
        id: Option<String>,
    ) -> impl Future<Output = BackendResult<Vec<IdentityInfo>>> + Send;
    /// The Nym address of an identity.
    fn address(&self, id: String) -> impl Future<Output = BackendResult<String>> + Send;
    /// Gateways of the current topology, with latency if asked.
    fn gateways(
        &self,
        latency: bool,
    ) -> impl Future<Output = BackendResult<Vec<GatewayInfo>>> + Send;
    /// The current topology.
    fn topology(&self) -> impl Future<Output = BackendResult<TopologySummary>> + Send;
    /// Send a message through an identity.
    fn send(&self, req: SendRequest) -> impl Future<Output = BackendResult<()>> + Send;
    /// Create an identity from nym-client key material; `caller` as for
    /// [`Self::init`].
    fn import(
        &self,
        req: ImportRequest,
        caller: Option<PeerCredentials>,
    ) -> impl Future<Output = BackendResult<IdentityInfo>> + Send;
    /// Show (no change in `req`) or change who may connect to an
    /// identity's websocket port; answers with the identity afterwards.
    fn access(
        &self,
        req: AccessRequest,
    ) -> impl Future<Output = BackendResult<IdentityInfo>> + Send;
    /// Show (no change in `req`) or change an identity's SOCKS5 proxy;
    /// answers with the identity afterwards.
    fn socks5(
        &self,
        req: Socks5Request,
    ) -> impl Future<Output = BackendResult<IdentityInfo>> + Send;
    /// Facts about the daemon.
    fn daemon_info(&self) -> impl Future<Output = BackendResult<DaemonInfo>> + Send;
    /// Begin an orderly shutdown and return at once: the server still
    /// delivers the response before the connections close.
    fn shutdown(&self) -> impl Future<Output = BackendResult<()>> + Send;
    /// A receiver of every event. The sender should have a capacity of about
    /// a thousand: a subscriber that falls further behind gets
    /// [`nymd_ipc::ServerMessage::Lagged`] instead of slowing the daemon.
    fn subscribe(&self) -> broadcast::Receiver<Event>;
    /// The state a new subscriber starts from: every identity, or only
    /// `identity` (an empty list if it does not exist yet, so a client can
    /// subscribe before `init`). The server calls [`Self::subscribe`] first,
    /// so no change falls between the snapshot and the events.
    fn snapshot(
        &self,
        identity: Option<String>,
    ) -> impl Future<Output = BackendResult<Snapshot>> + Send;
}

/// Settings of the control server.
#[derive(Debug, Clone)]
pub struct ControlServerConfig {
    /// Reported in `Welcome`.
    pub daemon_version: String,
    /// Random per daemon start; reported in `Welcome`.
    pub instance_id: String,
    /// Optional capabilities announced in `Welcome`.
    pub features: Vec<String>,
    /// How a connection's tier is decided.
    pub tier_policy: TierPolicy,
    /// Cap on a frame body, both directions.
    pub max_frame_len: u32,
    /// Connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// Requests one connection may have in flight; more are not read until
    /// one finishes.
    pub max_in_flight: usize,
    /// Subscriptions one connection may hold.
    pub max_subscriptions: usize,
    /// Time a client has to send `Hello`.
    pub hello_timeout: Duration,
    /// Time given to connections to flush their last messages at shutdown.
    pub shutdown_grace: Duration,
}

impl ControlServerConfig {
    /// Defaults with a fresh instance id and this package's version.
    pub fn new(tier_policy: TierPolicy) -> Self {
        Self {
            daemon_version: env!("CARGO_PKG_VERSION").to_owned(),
            instance_id: format!("{:016x}", rand::random::<u64>()),
            // Every request the server hands to a backend beyond the base
            // protocol.
            features: vec![
                nymd_ipc::FEATURE_ACCESS.to_owned(),
                nymd_ipc::FEATURE_SOCKS5.to_owned(),
            ],
            tier_policy,
            max_frame_len: nymd_ipc::codec::DEFAULT_MAX_FRAME_LEN,
            max_connections: 256,
            max_in_flight: 32,
            max_subscriptions: 8,
            hello_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(2),
        }
    }
}
