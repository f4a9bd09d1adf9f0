//! How a local network is shaped and the limits its nodes keep.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// What a mixnode does with the delay its sender put in each hop's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DelayPolicy {
    /// Forward at once, ignoring the header (fast tests).
    NoDelay,
    /// Hold each packet for the header's delay, at most this long (Nym caps
    /// at 10 s).
    Capped(Duration),
}

impl DelayPolicy {
    /// How long to hold a packet whose header asks for `requested`.
    pub fn hold_for(self, requested: Duration) -> Duration {
        match self {
            DelayPolicy::NoDelay => Duration::ZERO,
            DelayPolicy::Capped(cap) => requested.min(cap),
        }
    }
}

impl Default for DelayPolicy {
    fn default() -> Self {
        DelayPolicy::Capped(Duration::from_secs(10))
    }
}

/// Bounds every node keeps, whatever its peers and clients send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Packets queued per next hop before new ones are dropped.
    pub queue_per_peer: usize,
    /// Packets a node holds for their delay at once; more are dropped.
    pub max_delayed: usize,
    /// Replay tags remembered per generation; the filter keeps two
    /// generations, so between this many and twice this many recent tags.
    pub replay_generation: usize,
    /// Inbound node-to-node connections a node serves at once.
    pub max_mix_connections: usize,
    /// Client websocket connections a gateway serves at once.
    pub max_client_connections: usize,
    /// Pushed messages queued per connected client before new ones are
    /// dropped (a client that does not read cannot grow the gateway).
    pub push_queue_per_client: usize,
    /// Messages stored for one offline client; the oldest go first.
    pub stored_per_client: usize,
    /// Messages stored for all offline clients of a gateway together.
    pub stored_total: usize,
    /// Stored messages older than this are deleted (Nym: 24 h).
    pub stored_max_age: Duration,
    /// Time a TCP client has to complete the websocket upgrade.
    pub ws_handshake_timeout: Duration,
    /// Time a client has for each message before it is authenticated
    /// (Nym: 10 s).
    pub pre_auth_message_timeout: Duration,
    /// Time for each step of the registration handshake (Nym: 5 s).
    pub handshake_step_timeout: Duration,
    /// Largest websocket message a gateway accepts.
    pub max_ws_message: usize,
    /// Benchmark switch (`nym-localnet --sink`): entry gateways open, meter
    /// and answer every packet a client forwards, then drop it instead of
    /// passing it on, so that a client's sending side can be measured
    /// without the mixnet's CPU cost (nothing comes back: no loops, no acks).
    pub drop_client_packets: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            queue_per_peer: 2048,
            max_delayed: 8192,
            replay_generation: 65_536,
            max_mix_connections: 256,
            max_client_connections: 512,
            push_queue_per_client: 1024,
            stored_per_client: 1000,
            stored_total: 10_000,
            stored_max_age: Duration::from_secs(24 * 60 * 60),
            ws_handshake_timeout: Duration::from_secs(10),
            pre_auth_message_timeout: Duration::from_secs(10),
            handshake_step_timeout: Duration::from_secs(5),
            max_ws_message: 64 * 1024,
            drop_client_packets: false,
        }
    }
}

/// A network to start with [`Localnet::start`](crate::Localnet::start).
#[derive(Debug, Clone)]
pub struct LocalnetConfig {
    /// Mixnodes in each of the three layers (at least 1).
    pub mixnodes_per_layer: usize,
    /// Gateways, each both entry and exit (at least 1).
    pub gateways: usize,
    /// What mixnodes do with header delays.
    pub delay: DelayPolicy,
    /// Where the directory listens; `127.0.0.1:0` picks a free port.
    pub api_addr: SocketAddr,
    /// Directory for the topology file; `None` makes a temporary one that
    /// the handle deletes on shutdown.
    pub topology_dir: Option<PathBuf>,
    /// Node bounds.
    pub limits: Limits,
    /// Folder that makes the network persistent; `None` (the default) makes
    /// a new network at every start.
    ///
    /// On the first start the node keys are made as usual and saved to
    /// `localnet.json` there (with every node's ports and the directory's);
    /// later starts reuse the keys and bind the same ports where they are
    /// free (a port that is taken is replaced by a new one, logged, and the
    /// file saved again; the saved directory port is used only when
    /// `api_addr` asks for port 0). Each gateway saves its registered
    /// clients (shared key, last authentication timestamp, bandwidth) to
    /// `gateway-<id>-clients.json`, so clients can authenticate again after
    /// a restart; messages stored for offline clients are not saved.
    /// A saved network whose shape differs from `mixnodes_per_layer` and
    /// `gateways` is an error (it is never regenerated silently).
    pub state_dir: Option<PathBuf>,
}

impl Default for LocalnetConfig {
    fn default() -> Self {
        Self {
            mixnodes_per_layer: 1,
            gateways: 2,
            delay: DelayPolicy::default(),
            api_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            topology_dir: None,
            limits: Limits::default(),
            state_dir: None,
        }
    }
}
