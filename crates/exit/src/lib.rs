//! nymd-exit: a network requester (NR), the SOCKS5 exit of the mixnet, for
//! the embedded local mixnet (`nymd --localnet`) and tests.
//!
//! It is a Nym client like any other ([`nymd_mixnet::ClientHandle`]) that
//! answers what Nym's socks5 clients send (spec `nym-socks5.md` §6): a
//! Connect opens a TCP connection to `host:port` if the [`ExitPolicy`]
//! allows every address the name resolves to; Sends carry the client's
//! bytes, put back in order; what the target sends goes back as NetworkData
//! with the exit's own sequence numbers, to the Connect's return address or
//! through the sender's reply SURBs. Control requests and queries are
//! answered through reply SURBs. Every byte layout comes from
//! [`nymd_proto::socks5`].
//!
//! Deliberate differences from Nym's NR: connects have a timeout; the exit
//! connects to the addresses it checked rather than resolving the name
//! again; private addresses are not refused on principle (the policy
//! decides, and the default allows loopback only); what clients can make it
//! hold is bounded ([`ExitConfig`]); a connection is idle when no byte
//! moved either way.
//!
//! # Layout
//! - [`policy`]: the torrc-style exit policy.
//! - `config`: [`ExitConfig`] and the exit client's settings.
//! - `requester`: the dispatcher task (every received message).
//! - `connection`: one task per proxied connection.
//! - `stats`: [`ExitStats`].

mod config;
mod connection;
mod limiter;
pub mod policy;
mod requester;
mod stats;

use std::sync::Arc;
use std::time::Duration;

use nymd_mixnet::{
    ClientConfig, ClientError, ClientHandle, ClientKeys, GatewaySelection, Shared, TopologySource,
};
use nymd_proto::Recipient;
use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, DropGuard};
use tokio_util::task::TaskTracker;

pub use config::{network_requester_client_config, ExitConfig};
pub use policy::{ExitPolicy, PolicyError, PolicyErrorKind};
pub use requester::{EARLY_BYTES, EARLY_CONNECTIONS, EARLY_MAX_AGE, RECENTLY_CLOSED};
pub use stats::ExitStats;

use crate::limiter::LogLimiter;
use crate::requester::{Ctx, Dispatcher};
use crate::stats::Counters;

/// How long [`NetworkRequester::shutdown`] waits for the exit's tasks.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);
/// Refused connections logged per minute (the rest are counted).
const REFUSALS_PER_MINUTE: u32 = 10;
/// Unusable messages logged per minute (the rest are counted).
const MALFORMED_PER_MINUTE: u32 = 5;

/// Why an exit could not be started.
#[derive(Debug, thiserror::Error)]
pub enum ExitError {
    /// Registering with the gateway or starting the mixnet client failed.
    #[error("cannot start the exit's mixnet client: {0}")]
    Client(#[from] ClientError),
}

/// A running network requester. Stop it with [`NetworkRequester::shutdown`];
/// dropping it stops its tasks without waiting.
#[derive(Debug)]
pub struct NetworkRequester {
    address: Recipient,
    client: Arc<ClientHandle>,
    counters: Arc<Counters>,
    cancel: CancellationToken,
    tracker: TaskTracker,
    dispatcher: JoinHandle<()>,
    /// Fires `cancel` when the handle is dropped.
    _guard: DropGuard,
}

impl NetworkRequester {
    /// Serve on `client`, whose received messages it takes from now on (it
    /// subscribes to the client's events) and which it shuts down with
    /// itself. Must be called within a tokio runtime.
    pub fn start(client: ClientHandle, config: ExitConfig) -> Self {
        Self::serve(client, config, CancellationToken::new())
    }

    /// Start an exit as its own Nym client: fresh keys, registered with
    /// `gateway` (usually [`GatewaySelection::Given`]), topology from
    /// `topology` (else `client_config.topology`, else `shared`'s default
    /// source). [`network_requester_client_config`] gives Nym's NR client
    /// settings.
    pub async fn launch(
        shared: &Shared,
        topology: Option<TopologySource>,
        gateway: GatewaySelection,
        client_config: ClientConfig,
        config: ExitConfig,
    ) -> Result<Self, ExitError> {
        let keys = ClientKeys::generate(&mut rand::rngs::OsRng);
        Self::launch_with_keys(shared, topology, gateway, keys, client_config, config).await
    }

    /// [`NetworkRequester::launch`] with the given keys (kept by the caller,
    /// so that the exit's address, made of them and the gateway, stays the
    /// same across restarts). It registers with the gateway anew each
    /// time.
    pub async fn launch_with_keys(
        shared: &Shared,
        topology: Option<TopologySource>,
        gateway: GatewaySelection,
        keys: ClientKeys,
        mut client_config: ClientConfig,
        config: ExitConfig,
    ) -> Result<Self, ExitError> {
        if topology.is_some() {
            client_config.topology = topology;
        }
        let registration = nymd_mixnet::register_with(
            shared,
            client_config.topology.as_ref(),
            &keys,
            gateway,
            &client_config.gateway,
        )
        .await?;
        let cancel = CancellationToken::new();
        // The client stops with the exit even if a task holds it too long.
        let client = nymd_mixnet::start(
            shared,
            keys,
            registration,
            client_config,
            cancel.child_token(),
        )
        .await?;
        Ok(Self::serve(client, config, cancel))
    }

    fn serve(client: ClientHandle, config: ExitConfig, cancel: CancellationToken) -> Self {
        let address = client.address();
        let client = Arc::new(client);
        let counters = Arc::new(Counters::default());
        let tracker = TaskTracker::new();
        let minute = Duration::from_secs(60);
        let ctx = Arc::new(Ctx {
            client: client.clone(),
            config,
            counters: counters.clone(),
            cancel: cancel.clone(),
            tracker: tracker.clone(),
            refusal_log: LogLimiter::new(REFUSALS_PER_MINUTE, minute),
            malformed_log: LogLimiter::new(MALFORMED_PER_MINUTE, minute),
            unanswerable_log: LogLimiter::new(REFUSALS_PER_MINUTE, minute),
        });
        tracing::debug!(%address, "network requester started");
        let dispatcher = tokio::spawn(tracing::Instrument::in_current_span(
            Dispatcher::new(ctx).run(),
        ));
        Self {
            address,
            client,
            counters,
            tracker,
            dispatcher,
            _guard: cancel.clone().drop_guard(),
            cancel,
        }
    }

    /// The exit's Nym address: what Nym's socks5 client takes as
    /// `--provider`.
    pub fn address(&self) -> Recipient {
        self.address
    }

    /// The exit's counters now.
    pub fn stats(&self) -> ExitStats {
        self.counters.snapshot()
    }

    /// The exit's mixnet client (its counters, lanes).
    pub fn client(&self) -> &ClientHandle {
        &self.client
    }

    /// Whether the exit stopped serving (its client ended).
    pub fn is_finished(&self) -> bool {
        self.dispatcher.is_finished()
    }

    /// Stop: close every connection, wait (at most 5 s) for the tasks, then
    /// shut the mixnet client down.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        self.tracker.close();
        let tasks = async {
            let _ = self.dispatcher.await;
            self.tracker.wait().await;
        };
        if tokio::time::timeout(SHUTDOWN_WAIT, tasks).await.is_err() {
            tracing::warn!("network requester tasks did not end within {SHUTDOWN_WAIT:?}");
        }
        match Arc::try_unwrap(self.client) {
            Ok(client) => client.shutdown().await,
            Err(_) => {
                tracing::warn!("the network requester's client is still in use; not waiting for it")
            }
        }
        tracing::info!("network requester stopped");
    }
}
