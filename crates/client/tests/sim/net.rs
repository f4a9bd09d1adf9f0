//! The simulated Nym network that the deterministic simulation plugs client
//! cores into: gateways and three mix layers that really unwrap Sphinx
//! packets (with `nymd-proto`, exactly as `nym-localnet` does), on virtual
//! time, with seeded faults.
//!
//! Nothing here reads a clock, spawns or iterates a hash map in a way that
//! changes outcomes: time comes in as `Instant` parameters, every random draw
//! comes from the one `ChaCha20Rng` the network owns, and the event queue is
//! ordered by (time, sequence number). The same seed and the same calls give
//! byte-identical results.
//!
//! # Links
//!
//! - Node to node (gateway → layer 1 → 2 → 3 → gateway, and a SURB-ACK from
//!   the recipient's gateway onwards): each packet gets the sphinx delay its
//!   sender chose, plus a link latency drawn from `Faults::link_latency`, plus
//!   the faults: `loss` (gone), `duplicate` (a second copy with its own
//!   latency, which the next node drops as a replay), `reorder` (an extra
//!   random delay of up to [`REORDER_MAX`]), `spike` (an extra
//!   `spike_delay`).
//! - Client ↔ gateway (a websocket: ordered, reliable while it is up): each
//!   direction of each client is FIFO with a latency drawn from
//!   `Faults::link_latency`; there is no loss or reordering. With probability
//!   `duplicate` a gateway pushes a plaintext twice (a duplicate *after* the
//!   final hop's processing, so clients really see repeated deliveries).
//! - A gateway that is down loses everything reaching it or leaving it,
//!   judged at the virtual time of each event (pushes in flight on a client
//!   link when the gateway goes down are lost too).

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nymd_proto::ack::{split_final_hop, FinalHopDelivery};
use nymd_proto::keys::{IdentityKeyPair, X25519Public, X25519Secret};
use nymd_proto::mixpacket::MixPacket;
use nymd_proto::sphinx::{begin_unwrap, Processed, REPLAY_TAG_LEN};
use nymd_proto::topology::{
    EntryDetails, NodeId, NymTopology, RewardedSet, RoutingNode, SupportedRoles, Timestamp,
    TopologyMetadata,
};
use nymd_proto::PacketSize;
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

/// How long a mixnode that left the topology still processes packets
/// (routed by clients over the topology they had).
pub const GRACE: Duration = Duration::from_secs(10);

/// The largest extra delay the `reorder` fault adds.
pub const REORDER_MAX: Duration = Duration::from_millis(200);

/// Replay tags remembered per node: at least this many, at most twice.
const REPLAY_GENERATION: usize = 1 << 16;

/// The key-rotation id of every topology (0, as `nym-localnet`: the packets'
/// rotation byte is Unknown).
const KEY_ROTATION_ID: u32 = 0;

/// `refreshed_at` of the first topology (Unix seconds); each change adds one.
const REFRESHED_BASE: i64 = 1_700_000_000;

/// Mix port of every simulated node.
const MIX_PORT: u16 = 1789;

/// Client websocket port announced by every simulated gateway.
const WS_PORT: u16 = 9000;

/// Per-packet, per-link fault probabilities and delays.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Faults {
    /// Probability that a node-to-node packet is lost.
    pub loss: f64,
    /// Probability that a node-to-node packet is sent twice (the copy is a
    /// replay at the next node), and that a gateway pushes a plaintext twice.
    pub duplicate: f64,
    /// Probability that a node-to-node packet gets an extra random delay of
    /// up to [`REORDER_MAX`].
    pub reorder: f64,
    /// Probability that a node-to-node packet gets an extra `spike_delay`.
    pub spike: f64,
    /// The extra delay of a spike.
    pub spike_delay: Duration,
    /// Latency of every link, drawn uniformly in `[min, max]` per packet.
    pub link_latency: (Duration, Duration),
}

impl Faults {
    /// A perfect network: no faults, zero link latency (only the delays the
    /// packets carry).
    pub fn none() -> Self {
        Self {
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            spike: 0.0,
            spike_delay: Duration::ZERO,
            link_latency: (Duration::ZERO, Duration::ZERO),
        }
    }
}

/// The shape of the network.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NetConfig {
    /// Mixnodes in each of the three layers.
    pub per_layer: usize,
    /// Gateways (each entry and exit capable).
    pub gateways: usize,
    /// Faults of every link.
    pub faults: Faults,
}

/// A client attached to the network (an index; one per client identity).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClientId(pub usize);

/// What happened to packets so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Calls to [`SimNet::submit`].
    pub submitted: u64,
    /// Sphinx packets a node (gateway or mixnode) sent on to another node.
    pub forwarded: u64,
    /// Plaintexts handed to clients by [`SimNet::advance`].
    pub delivered: u64,
    /// Node-to-node packets lost by the `loss` fault.
    pub lost: u64,
    /// Copies made by the `duplicate` fault (on links and on pushes).
    pub duplicated: u64,
    /// Packets dropped by a node's replay filter.
    pub replayed: u64,
    /// Undecodable submissions or sphinx packets, bad final-hop plaintexts,
    /// packets whose final hop is a mixnode.
    pub malformed: u64,
    /// Lost because a gateway was down.
    pub dropped_down: u64,
    /// Pushes kept by a gateway that was down, pushed again when it came
    /// back.
    pub held: u64,
    /// Dropped for an unknown next hop or a client not attached (at that
    /// gateway, or at all).
    pub unroutable: u64,
    /// Dropped by a mixnode that left the topology more than [`GRACE`] ago.
    pub expired: u64,
}

/// Replay detection with bounded memory (two generations, no false
/// positives), as `nym-localnet`'s. Membership only: the set's order never
/// shows.
#[derive(Debug)]
struct ReplayFilter {
    current: HashSet<[u8; REPLAY_TAG_LEN]>,
    previous: HashSet<[u8; REPLAY_TAG_LEN]>,
}

impl ReplayFilter {
    fn new() -> Self {
        Self {
            current: HashSet::new(),
            previous: HashSet::new(),
        }
    }

    /// Record `tag`; false if it was already known.
    fn insert(&mut self, tag: &[u8; REPLAY_TAG_LEN]) -> bool {
        if self.current.contains(tag) || self.previous.contains(tag) {
            return false;
        }
        if self.current.len() >= REPLAY_GENERATION {
            self.previous = std::mem::take(&mut self.current);
        }
        self.current.insert(*tag);
        true
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// A mixnode of layer 1, 2 or 3.
    Mix(u8),
    /// Gateway number `.0`.
    Gateway(usize),
}

struct Node {
    id: NodeId,
    addr: SocketAddr,
    identity: IdentityKeyPair,
    sphinx: X25519Secret,
    role: Role,
    replay: ReplayFilter,
    /// Left the topology; packets arriving after this are dropped.
    retired_until: Option<Instant>,
}

impl Node {
    fn routing(&self) -> RoutingNode {
        let gateway = matches!(self.role, Role::Gateway(_));
        RoutingNode {
            node_id: self.id,
            mix_host: self.addr,
            entry: gateway.then(|| EntryDetails {
                ip_addresses: vec![self.addr.ip()],
                clients_ws_port: WS_PORT,
                hostname: None,
                clients_wss_port: None,
            }),
            identity_key: self.identity.public(),
            sphinx_key: X25519Public::from(&self.sphinx),
            supported_roles: SupportedRoles {
                mixnode: !gateway,
                mixnet_entry: gateway,
                mixnet_exit: gateway,
            },
            performance: None,
        }
    }
}

struct Gateway {
    /// Index in `SimNet::nodes`.
    node: usize,
    /// Up/down transitions in time order; the last one at or before an
    /// event's time decides.
    transitions: Vec<(Instant, bool)>,
    /// Pushes that found the gateway down: it keeps them (as a Nym gateway
    /// keeps what it acknowledged for a client that is not connected) and
    /// pushes them when it is back up.
    held: Vec<(ClientId, Vec<u8>)>,
    /// Attached clients by identity.
    clients: BTreeMap<[u8; 32], ClientId>,
}

impl Gateway {
    fn down_at(&self, t: Instant) -> bool {
        self.transitions
            .iter()
            .rev()
            .find(|(at, _)| *at <= t)
            .is_some_and(|(_, down)| *down)
    }
}

struct Client {
    identity: [u8; 32],
    gateway: Option<usize>,
    /// Last arrival time scheduled on the client → gateway link (FIFO).
    up_last: Option<Instant>,
    /// Last arrival time scheduled on the gateway → client link (FIFO).
    down_last: Option<Instant>,
}

enum Event {
    /// A client's MixPacket bytes reaching its gateway.
    Submit { gateway: usize, bytes: Vec<u8> },
    /// A sphinx packet reaching node `to`.
    Hop { to: usize, packet: Vec<u8> },
    /// A gateway's push reaching a client.
    Push {
        gateway: usize,
        client: ClientId,
        bytes: Vec<u8>,
    },
}

/// The simulated network. See the module documentation.
pub struct SimNet {
    rng: ChaCha20Rng,
    faults: Faults,
    nodes: Vec<Node>,
    by_addr: BTreeMap<SocketAddr, usize>,
    gateways: Vec<Gateway>,
    clients: Vec<Client>,
    by_identity: BTreeMap<[u8; 32], ClientId>,
    queue: BTreeMap<(Instant, u64), Event>,
    seq: u64,
    /// The latest time the network was told about (submissions earlier than
    /// this are moved up to it).
    clock: Instant,
    next_node_id: NodeId,
    epoch: u32,
    topology: Arc<NymTopology>,
    stats: NetStats,
}

impl std::fmt::Debug for SimNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimNet")
            .field("nodes", &self.nodes.len())
            .field("gateways", &self.gateways.len())
            .field("clients", &self.clients.len())
            .field("queued", &self.queue.len())
            .field("epoch", &self.epoch)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// True with probability `p` (NaN and p ≤ 0 never, p ≥ 1 always; draws only
/// when it has to).
fn chance(rng: &mut ChaCha20Rng, p: f64) -> bool {
    if p.is_nan() || p <= 0.0 {
        false
    } else if p >= 1.0 {
        true
    } else {
        rng.gen::<f64>() < p
    }
}

/// Uniform in `[lo, hi]` (just `lo` if the range is empty).
fn uniform(rng: &mut ChaCha20Rng, lo: Duration, hi: Duration) -> Duration {
    if hi <= lo {
        return lo;
    }
    let span = u64::try_from((hi - lo).as_nanos()).unwrap_or(u64::MAX);
    lo + Duration::from_nanos(rng.gen_range(0..=span))
}

/// The mix address of node `id`: 10.x.y.z:1789 from the id's low 24 bits.
fn node_addr(id: NodeId) -> SocketAddr {
    let [_, a, b, c] = id.to_be_bytes();
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, a, b, c)), MIX_PORT)
}

impl SimNet {
    /// A network of `cfg.gateways` gateways and `cfg.per_layer` mixnodes in
    /// each of three layers, all keys drawn from `seed`; virtual time starts
    /// at `start`.
    pub fn new(seed: u64, cfg: NetConfig, start: Instant) -> Self {
        let mut net = Self {
            rng: ChaCha20Rng::seed_from_u64(seed),
            faults: cfg.faults,
            nodes: Vec::new(),
            by_addr: BTreeMap::new(),
            gateways: Vec::new(),
            clients: Vec::new(),
            by_identity: BTreeMap::new(),
            queue: BTreeMap::new(),
            seq: 0,
            clock: start,
            next_node_id: 1,
            epoch: 0,
            topology: Arc::new(NymTopology::default()),
            stats: NetStats::default(),
        };
        for g in 0..cfg.gateways {
            let node = net.add_node(Role::Gateway(g));
            net.gateways.push(Gateway {
                node,
                transitions: Vec::new(),
                held: Vec::new(),
                clients: BTreeMap::new(),
            });
        }
        for layer in 1..=3u8 {
            for _ in 0..cfg.per_layer {
                net.add_node(Role::Mix(layer));
            }
        }
        net.rebuild_topology();
        net
    }

    fn add_node(&mut self, role: Role) -> usize {
        let id = self.next_node_id;
        self.next_node_id += 1;
        let identity = IdentityKeyPair::generate(&mut self.rng);
        let mut secret = [0u8; 32];
        self.rng.fill_bytes(&mut secret);
        let addr = node_addr(id);
        let index = self.nodes.len();
        self.nodes.push(Node {
            id,
            addr,
            identity,
            sphinx: X25519Secret::from(secret),
            role,
            replay: ReplayFilter::new(),
            retired_until: None,
        });
        self.by_addr.insert(addr, index);
        index
    }

    fn rebuild_topology(&mut self) {
        let mut set = RewardedSet {
            epoch_id: self.epoch,
            ..RewardedSet::default()
        };
        let live = self.nodes.iter().filter(|n| n.retired_until.is_none());
        for n in live.clone() {
            match n.role {
                Role::Mix(1) => set.layer1.insert(n.id),
                Role::Mix(2) => set.layer2.insert(n.id),
                Role::Mix(_) => set.layer3.insert(n.id),
                Role::Gateway(_) => {
                    set.exit_gateways.insert(n.id);
                    set.entry_gateways.insert(n.id)
                }
            };
        }
        let metadata = TopologyMetadata {
            key_rotation_id: KEY_ROTATION_ID,
            absolute_epoch_id: self.epoch,
            refreshed_at: Timestamp::from_unix(REFRESHED_BASE + i64::from(self.epoch), 0)
                .unwrap_or(Timestamp::UNIX_EPOCH),
        };
        self.topology = Arc::new(NymTopology::new(metadata, set, live.map(Node::routing)));
    }

    /// The current topology.
    pub fn topology(&self) -> Arc<NymTopology> {
        self.topology.clone()
    }

    /// The ed25519 identity of gateway `g` (what a `Recipient` names).
    ///
    /// # Panics
    /// If there is no gateway `g` (a harness bug).
    pub fn gateway_identity(&self, g: usize) -> [u8; 32] {
        self.nodes[self.gateways[g].node].identity.public_bytes()
    }

    /// Attach the client with this ed25519 identity (its destination
    /// address) to gateway `gateway`. Attaching an identity again moves it
    /// (same `ClientId`); messages then reach it at the new gateway only.
    ///
    /// # Panics
    /// If there is no such gateway (a harness bug).
    pub fn attach(&mut self, client_identity: [u8; 32], gateway: usize) -> ClientId {
        assert!(gateway < self.gateways.len(), "no gateway {gateway}");
        let id = match self.by_identity.get(&client_identity) {
            Some(id) => *id,
            None => {
                let id = ClientId(self.clients.len());
                self.clients.push(Client {
                    identity: client_identity,
                    gateway: None,
                    up_last: None,
                    down_last: None,
                });
                self.by_identity.insert(client_identity, id);
                id
            }
        };
        self.detach(id);
        self.clients[id.0].gateway = Some(gateway);
        self.gateways[gateway].clients.insert(client_identity, id);
        id
    }

    /// Detach a client from its gateway: what is in flight to it and what
    /// reaches its gateway for it is dropped until it attaches again.
    pub fn detach(&mut self, client: ClientId) {
        let Some(c) = self.clients.get_mut(client.0) else {
            return;
        };
        if let Some(g) = c.gateway.take() {
            self.gateways[g].clients.remove(&c.identity);
        }
    }

    /// A client hands its gateway a MixPacket (ForwardSphinx v2 plaintext:
    /// what a client seals in its gateway frame). The gateway forwards the
    /// sphinx packet to its next hop with no delay of its own.
    pub fn submit(&mut self, now: Instant, from: ClientId, mix_packet_v2: &[u8]) {
        self.stats.submitted += 1;
        let now = now.max(self.clock);
        let Some(g) = self.clients.get(from.0).and_then(|c| c.gateway) else {
            self.stats.unroutable += 1;
            return;
        };
        if self.gateways[g].down_at(now) {
            self.stats.dropped_down += 1;
            return;
        }
        let at = self.client_link(now, from, true);
        self.schedule(
            at,
            Event::Submit {
                gateway: g,
                bytes: mix_packet_v2.to_vec(),
            },
        );
    }

    /// The time of the earliest scheduled event.
    pub fn next_time(&self) -> Option<Instant> {
        self.queue.keys().next().map(|(t, _)| *t)
    }

    /// Process, in time order, every event due at or before `now` (and
    /// those they cause that are also due); return what gateways pushed to
    /// their clients, in delivery order.
    pub fn advance(&mut self, now: Instant) -> Vec<(ClientId, Vec<u8>)> {
        self.clock = self.clock.max(now);
        let mut out = Vec::new();
        while let Some(entry) = self.queue.first_entry() {
            let (t, _) = *entry.key();
            if t > now {
                break;
            }
            let event = entry.remove();
            match event {
                Event::Submit { gateway, bytes } => self.on_submit(t, gateway, &bytes),
                Event::Hop { to, packet } => self.on_hop(t, to, &packet),
                Event::Push {
                    gateway,
                    client,
                    bytes,
                } => {
                    if self.gateways[gateway].down_at(t) {
                        self.stats.held += 1;
                        self.gateways[gateway].held.push((client, bytes));
                    } else if self.clients[client.0].gateway != Some(gateway) {
                        self.stats.unroutable += 1;
                    } else {
                        self.stats.delivered += 1;
                        out.push((client, bytes));
                    }
                }
            }
        }
        out
    }

    /// Take gateway `g` down (or bring it back up) from `now` on.
    ///
    /// # Panics
    /// If there is no gateway `g` (a harness bug).
    pub fn set_gateway_down(&mut self, now: Instant, g: usize, down: bool) {
        let gw = &mut self.gateways[g];
        let last = gw.transitions.last().map(|(t, _)| *t);
        let at = last.map_or(now, |l| now.max(l));
        gw.transitions.push((at, down));
        if !down {
            for (client, bytes) in std::mem::take(&mut self.gateways[g].held) {
                self.push(at, g, client, bytes);
            }
        }
    }

    /// Whether gateway `g` is down (as last set).
    ///
    /// # Panics
    /// If there is no gateway `g` (a harness bug).
    pub fn is_gateway_down(&self, g: usize) -> bool {
        self.gateways[g]
            .transitions
            .last()
            .is_some_and(|(_, down)| *down)
    }

    /// A topology change at `now`: one random mixnode leaves (it still
    /// processes what reaches it for [`GRACE`]), a new one with new keys and
    /// a new address joins its layer. Returns the new topology.
    pub fn replace_mixnode(&mut self, now: Instant) -> Arc<NymTopology> {
        let live: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| {
                let n = &self.nodes[i];
                n.retired_until.is_none() && matches!(n.role, Role::Mix(_))
            })
            .collect();
        if live.is_empty() {
            return self.topology();
        }
        let victim = live[self.rng.gen_range(0..live.len())];
        let role = self.nodes[victim].role;
        self.nodes[victim].retired_until = Some(now.max(self.clock) + GRACE);
        self.add_node(role);
        self.epoch += 1;
        self.rebuild_topology();
        self.topology()
    }

    /// The counters so far.
    pub fn stats(&self) -> NetStats {
        self.stats
    }

    fn schedule(&mut self, at: Instant, event: Event) {
        self.seq += 1;
        self.queue.insert((at, self.seq), event);
    }

    /// The arrival time of a packet leaving at `now` on a client link
    /// (`up`: client → gateway), FIFO per client and direction.
    fn client_link(&mut self, now: Instant, client: ClientId, up: bool) -> Instant {
        let (lo, hi) = self.faults.link_latency;
        let at = now + uniform(&mut self.rng, lo, hi);
        let c = &mut self.clients[client.0];
        let last = if up { &mut c.up_last } else { &mut c.down_last };
        let at = last.map_or(at, |l| at.max(l));
        *last = Some(at);
        at
    }

    /// Latency plus the delaying faults of one node-to-node packet.
    fn link_delay(&mut self) -> Duration {
        let f = self.faults;
        let mut d = uniform(&mut self.rng, f.link_latency.0, f.link_latency.1);
        if chance(&mut self.rng, f.reorder) {
            d += uniform(&mut self.rng, Duration::ZERO, REORDER_MAX);
        }
        if chance(&mut self.rng, f.spike) {
            d += f.spike_delay;
        }
        d
    }

    /// A node sends `packet` to the node at `to` after holding it for
    /// `hold`, over a faulty link.
    fn send_hop(&mut self, now: Instant, to: SocketAddr, hold: Duration, packet: Vec<u8>) {
        let Some(&to) = self.by_addr.get(&to) else {
            self.stats.unroutable += 1;
            return;
        };
        self.stats.forwarded += 1;
        if chance(&mut self.rng, self.faults.loss) {
            self.stats.lost += 1;
            return;
        }
        let depart = now + hold;
        if chance(&mut self.rng, self.faults.duplicate) {
            self.stats.duplicated += 1;
            let at = depart + self.link_delay();
            self.schedule(
                at,
                Event::Hop {
                    to,
                    packet: packet.clone(),
                },
            );
        }
        let at = depart + self.link_delay();
        self.schedule(at, Event::Hop { to, packet });
    }

    /// Gateway `g` pushes `bytes` to `client`.
    fn push(&mut self, now: Instant, gateway: usize, client: ClientId, bytes: Vec<u8>) {
        let at = self.client_link(now, client, false);
        if chance(&mut self.rng, self.faults.duplicate) {
            self.stats.duplicated += 1;
            self.schedule(
                at,
                Event::Push {
                    gateway,
                    client,
                    bytes: bytes.clone(),
                },
            );
        }
        self.schedule(
            at,
            Event::Push {
                gateway,
                client,
                bytes,
            },
        );
    }

    fn on_submit(&mut self, t: Instant, g: usize, bytes: &[u8]) {
        if self.gateways[g].down_at(t) {
            self.stats.dropped_down += 1;
            return;
        }
        match MixPacket::from_v2_bytes(bytes) {
            Ok(mp) => self.send_hop(t, mp.next_hop.0, Duration::ZERO, mp.packet),
            Err(_) => self.stats.malformed += 1,
        }
    }

    fn on_hop(&mut self, t: Instant, to: usize, packet: &[u8]) {
        let node = &mut self.nodes[to];
        if node.retired_until.is_some_and(|until| t > until) {
            self.stats.expired += 1;
            return;
        }
        if let Role::Gateway(g) = node.role {
            if self.gateways[g].down_at(t) {
                self.stats.dropped_down += 1;
                return;
            }
        }
        let Ok(partial) = begin_unwrap(packet, &node.sphinx) else {
            self.stats.malformed += 1;
            return;
        };
        if !node.replay.insert(partial.replay_tag()) {
            self.stats.replayed += 1;
            return;
        }
        let size = partial.packet_size();
        let role = node.role;
        match (partial.finish(), role) {
            (Err(_), _) => self.stats.malformed += 1,
            (
                Ok(Processed::Forward {
                    next_hop,
                    delay,
                    packet,
                }),
                _,
            ) => self.send_hop(t, next_hop.0, delay, packet),
            (
                Ok(Processed::Final {
                    destination,
                    plaintext,
                }),
                Role::Gateway(g),
            ) => self.final_hop(t, g, destination, size, &plaintext),
            (Ok(Processed::Final { .. }), Role::Mix(_)) => self.stats.malformed += 1,
        }
    }

    fn final_hop(
        &mut self,
        t: Instant,
        g: usize,
        destination: [u8; 32],
        size: PacketSize,
        plaintext: &[u8],
    ) {
        let Some(&client) = self.gateways[g].clients.get(&destination) else {
            self.stats.unroutable += 1;
            return;
        };
        match split_final_hop(size, plaintext) {
            Err(_) => self.stats.malformed += 1,
            Ok(FinalHopDelivery::Ack(ack)) => self.push(t, g, client, ack.to_vec()),
            Ok(FinalHopDelivery::Message(split)) => {
                self.push(t, g, client, split.message.to_vec());
                self.send_hop(
                    t,
                    split.ack_first_hop.0,
                    Duration::ZERO,
                    split.ack_packet.to_vec(),
                );
            }
        }
    }
}

/// Tests of the network alone, with packets built by `nymd-proto`'s sender
/// side as a client core builds them.
mod tests {
    use super::*;
    use nymd_proto::ack::{build_surb_ack, recognise_ack};
    use nymd_proto::keys::{AckKey, EncryptionKeyPair, VerifyingKey};
    use nymd_proto::params::FragmentId;
    use nymd_proto::payload::{
        classify_pushed, decrypt_message, prepare_fragment, PushedKind, SURB_KEY_SIZE,
    };
    use nymd_proto::topology::route::to_sphinx_hops;
    use nymd_proto::{NodeAddress, Recipient, SphinxVersion};

    /// Mean per-hop delay of data packets and acks (nym-client's default).
    const MEAN: Duration = Duration::from_millis(50);

    /// A client's keys and where it is attached.
    struct Peer {
        identity: IdentityKeyPair,
        enc: EncryptionKeyPair,
        ack: AckKey,
        gateway: usize,
        id: ClientId,
    }

    impl Peer {
        fn new(net: &mut SimNet, rng: &mut ChaCha20Rng, gateway: usize) -> Self {
            let identity = IdentityKeyPair::generate(rng);
            let id = net.attach(identity.public_bytes(), gateway);
            Self {
                identity,
                enc: EncryptionKeyPair::generate(rng),
                ack: AckKey::generate(rng),
                gateway,
                id,
            }
        }

        fn recipient(&self, net: &SimNet) -> Recipient {
            let gateway = VerifyingKey::from_bytes(&net.gateway_identity(self.gateway))
                .expect("gateway identity is a point");
            Recipient::new(self.identity.public(), self.enc.public(), gateway)
        }

        /// Decrypt a pushed message to its fragment.
        fn open(&self, message: &[u8]) -> Vec<u8> {
            let mut no_replies = |_: &[u8; 32]| -> Option<[u8; SURB_KEY_SIZE]> { None };
            decrypt_message(&self.enc, message, &mut no_replies)
                .expect("decrypts")
                .fragment
        }
    }

    /// A regular-size fragment filled with `tag`.
    fn fragment(tag: u8) -> Vec<u8> {
        vec![tag; PacketSize::Regular.fragment_capacity()]
    }

    fn fid(tag: u8) -> FragmentId {
        FragmentId {
            set_id: 1000 + i32::from(tag),
            position: 1,
        }
    }

    /// The ForwardSphinx v2 bytes of fragment `tag` from `from` to `to`
    /// over `topology`, with a SURB-ACK back to `from`'s gateway (as
    /// nymd-mixnet's `build_packet`).
    fn packet(
        rng: &mut ChaCha20Rng,
        net: &SimNet,
        topology: &NymTopology,
        from: &Peer,
        to: &Recipient,
        tag: u8,
    ) -> Vec<u8> {
        let ack_route = topology
            .random_route_to(rng, &net.gateway_identity(from.gateway))
            .expect("route back");
        let surb_ack = build_surb_ack(
            rng,
            SphinxVersion::Seeds259,
            &from.ack,
            fid(tag),
            &to_sphinx_hops(&ack_route),
            &from.identity.public_bytes(),
            MEAN,
        )
        .expect("SURB-ACK");
        let route = topology
            .random_route_to(rng, to.gateway().as_bytes())
            .expect("route");
        prepare_fragment(
            rng,
            SphinxVersion::Seeds259,
            &fragment(tag),
            to,
            &to_sphinx_hops(&route),
            &surb_ack,
            MEAN,
            topology.key_rotation(),
        )
        .expect("packet")
        .mix_packet
        .to_v2_bytes()
    }

    /// Run until nothing is scheduled; pushes with their virtual time since
    /// `start`.
    fn drain(net: &mut SimNet, start: Instant) -> Vec<(Duration, ClientId, Vec<u8>)> {
        let mut out = Vec::new();
        while let Some(t) = net.next_time() {
            for (c, b) in net.advance(t) {
                out.push((t - start, c, b));
            }
        }
        out
    }

    fn config(per_layer: usize, gateways: usize, faults: Faults) -> NetConfig {
        NetConfig {
            per_layer,
            gateways,
            faults,
        }
    }

    /// A network with A at gateway 0 and B at gateway 1, and a sender rng.
    fn two_peers(seed: u64, cfg: NetConfig, start: Instant) -> (SimNet, ChaCha20Rng, Peer, Peer) {
        let mut net = SimNet::new(seed, cfg, start);
        let mut rng = ChaCha20Rng::seed_from_u64(seed ^ 0x5eed);
        let a = Peer::new(&mut net, &mut rng, 0);
        let b = Peer::new(&mut net, &mut rng, 1);
        (net, rng, a, b)
    }

    /// Send fragments `tags` from `from` to `to` at `now` over the current
    /// topology.
    fn send(
        net: &mut SimNet,
        rng: &mut ChaCha20Rng,
        now: Instant,
        from: &Peer,
        to: &Peer,
        tags: &[u8],
    ) {
        let topology = net.topology();
        let recipient = to.recipient(net);
        for &tag in tags {
            let bytes = packet(rng, net, &topology, from, &recipient, tag);
            net.submit(now, from.id, &bytes);
        }
    }

    /// The fragment tags `to` got and the acks `from` got, sorted.
    fn received(
        pushes: &[(Duration, ClientId, Vec<u8>)],
        from: &Peer,
        to: &Peer,
    ) -> (Vec<u8>, Vec<u8>) {
        let mut messages = Vec::new();
        let mut acks = Vec::new();
        for (_, c, bytes) in pushes {
            if *c == to.id {
                assert_eq!(
                    classify_pushed(bytes.len()),
                    Some(PushedKind::Message(PacketSize::Regular))
                );
                let f = to.open(bytes);
                assert!(f.iter().all(|b| *b == f[0]), "fragment intact");
                messages.push(f[0]);
            } else if *c == from.id {
                assert_eq!(classify_pushed(bytes.len()), Some(PushedKind::Ack));
                let id = recognise_ack(&from.ack, bytes).expect("our ack");
                acks.push(u8::try_from(id.set_id - 1000).expect("tag"));
            } else {
                panic!("push to a stranger {c:?}");
            }
        }
        messages.sort_unstable();
        acks.sort_unstable();
        (messages, acks)
    }

    #[test]
    fn message_and_ack_arrive_without_faults() {
        let start = Instant::now();
        let (mut net, mut rng, a, b) = two_peers(1, config(2, 2, Faults::none()), start);
        let tags: Vec<u8> = (0..8).collect();
        send(&mut net, &mut rng, start, &a, &b, &tags);
        let pushes = drain(&mut net, start);
        let (messages, acks) = received(&pushes, &a, &b);
        assert_eq!(messages, tags);
        assert_eq!(acks, tags);
        // Every message reaches B before its ack reaches A, and only after
        // the mix delays.
        assert!(pushes.iter().all(|(t, _, _)| !t.is_zero()));
        assert_eq!(
            net.stats(),
            NetStats {
                submitted: 8,
                // gateway, 3 mixes for the data; the same for its ack.
                forwarded: 8 * 8,
                delivered: 16,
                ..NetStats::default()
            }
        );
        assert_eq!(net.next_time(), None);
    }

    #[test]
    fn total_loss_delivers_nothing() {
        let start = Instant::now();
        let faults = Faults {
            loss: 1.0,
            ..Faults::none()
        };
        let (mut net, mut rng, a, b) = two_peers(2, config(2, 2, faults), start);
        send(&mut net, &mut rng, start, &a, &b, &[1, 2, 3, 4, 5]);
        assert!(drain(&mut net, start).is_empty());
        let s = net.stats();
        assert_eq!((s.submitted, s.lost, s.delivered), (5, 5, 0));
    }

    #[test]
    fn duplicates_are_replays_between_nodes_and_repeats_at_clients() {
        let start = Instant::now();
        let faults = Faults {
            duplicate: 1.0,
            ..Faults::none()
        };
        let (mut net, mut rng, a, b) = two_peers(3, config(2, 2, faults), start);
        send(&mut net, &mut rng, start, &a, &b, &[1, 2, 3]);
        let pushes = drain(&mut net, start);
        let (messages, acks) = received(&pushes, &a, &b);
        assert_eq!(messages, vec![1, 1, 2, 2, 3, 3]);
        assert_eq!(acks, vec![1, 1, 2, 2, 3, 3]);
        let s = net.stats();
        // 8 links per packet and its ack, each copy a replay at the next
        // node; plus 2 repeated pushes.
        assert_eq!(s.replayed, 3 * 8);
        assert_eq!(s.duplicated, 3 * (8 + 2));
        assert_eq!(s.delivered, 12);
    }

    #[test]
    fn a_down_gateway_loses_packets_but_keeps_what_it_acknowledged() {
        let start = Instant::now();
        // Client links take 1 ms: pushes spend time in flight.
        let faults = Faults {
            link_latency: (Duration::from_millis(1), Duration::from_millis(1)),
            ..Faults::none()
        };
        let (mut net, mut rng, a, b) = two_peers(4, config(2, 2, faults), start);
        net.set_gateway_down(start, 1, true);
        assert!(net.is_gateway_down(1) && !net.is_gateway_down(0));
        send(&mut net, &mut rng, start, &a, &b, &[1]);
        // B's packets do not even reach its gateway.
        send(&mut net, &mut rng, start, &b, &a, &[2]);
        assert!(drain(&mut net, start).is_empty());
        assert_eq!(net.stats().dropped_down, 2);

        let later = start + Duration::from_secs(5);
        net.advance(later);
        net.set_gateway_down(later, 1, false);
        assert!(!net.is_gateway_down(1));
        send(&mut net, &mut rng, later, &a, &b, &[3]);
        let (messages, acks) = received(&drain(&mut net, start), &a, &b);
        assert_eq!((messages, acks), (vec![3], vec![3]));

        // A push already on its way when the gateway goes down is kept
        // (the gateway acknowledged it) and pushed once it is back up.
        let t = start + Duration::from_secs(10);
        net.advance(t);
        send(&mut net, &mut rng, t, &a, &b, &[4]);
        let mut seen_b = false;
        while let Some(next) = net.next_time() {
            for (c, _) in net.advance(next) {
                seen_b |= c == b.id;
            }
            // Down from the moment B's message is pushed (final hop done).
            if net.queue.values().any(|e| matches!(e, Event::Push { .. })) {
                net.set_gateway_down(next, 1, true);
            }
        }
        assert!(!seen_b, "not pushed while the gateway is down");
        assert_eq!(net.stats().held, 1);
        let back = net.next_time().unwrap_or(t) + Duration::from_secs(30);
        net.advance(back);
        net.set_gateway_down(back, 1, false);
        let (messages, _) = received(&drain(&mut net, back), &a, &b);
        assert_eq!(messages, vec![4], "pushed once the gateway is back");
    }

    #[test]
    fn replaced_mixnode_changes_topology_and_drains_after_grace() {
        let start = Instant::now();
        // One node per layer: every route uses the replaced node.
        let (mut net, mut rng, a, b) = two_peers(5, config(1, 2, Faults::none()), start);
        let old = net.topology();
        let new = net.replace_mixnode(start);
        assert_ne!(old, new);
        assert!(Arc::ptr_eq(&new, &net.topology()));
        assert!(new.is_routable());
        assert_eq!(new.metadata().absolute_epoch_id, 1);
        let keys = |t: &NymTopology| -> Vec<(NodeId, [u8; 32])> {
            t.mixnodes()
                .map(|n| (n.node_id, n.identity_key.to_bytes()))
                .collect()
        };
        let (old_keys, new_keys) = (keys(&old), keys(&new));
        assert_eq!(new_keys.len(), 3);
        let gone: Vec<_> = old_keys.iter().filter(|k| !new_keys.contains(k)).collect();
        let came: Vec<_> = new_keys.iter().filter(|k| !old_keys.contains(k)).collect();
        assert_eq!((gone.len(), came.len()), (1, 1));
        let (old_node, new_node) = (gone[0].0, came[0].0);
        assert_ne!(
            old.node(old_node).expect("old").mix_host,
            new.node(new_node).expect("new").mix_host
        );

        // Built over the old topology, within the grace period: delivered.
        let recipient = b.recipient(&net);
        let stale = packet(&mut rng, &net, &old, &a, &recipient, 1);
        net.submit(start, a.id, &stale);
        let (m, k) = received(&drain(&mut net, start), &a, &b);
        assert_eq!((m, k), (vec![1], vec![1]));

        // After it: dropped by the node that left.
        let late = start + GRACE + Duration::from_secs(1);
        net.advance(late);
        let stale = packet(&mut rng, &net, &old, &a, &recipient, 2);
        net.submit(late, a.id, &stale);
        assert!(drain(&mut net, start).is_empty());
        assert_eq!(net.stats().expired, 1);

        // Over the new topology: delivered.
        send(&mut net, &mut rng, late, &a, &b, &[3]);
        let (m, k) = received(&drain(&mut net, start), &a, &b);
        assert_eq!((m, k), (vec![3], vec![3]));
    }

    #[test]
    fn bad_input_is_counted_never_fatal() {
        let start = Instant::now();
        let (mut net, mut rng, a, b) = two_peers(6, config(2, 2, Faults::none()), start);
        let good = packet(&mut rng, &net, &net.topology(), &a, &b.recipient(&net), 1);

        net.submit(start, a.id, &[0xff; 10]);
        net.submit(start, a.id, &good[..good.len() - 1]);
        let mut junk = MixPacket::from_v2_bytes(&good).expect("ours");
        rng.fill_bytes(&mut junk.packet);
        net.submit(start, a.id, &junk.to_v2_bytes());
        assert!(drain(&mut net, start).is_empty());
        assert_eq!(net.stats().malformed, 3);

        // Unknown next hop; unknown client; a stranger at B's gateway.
        let mut lost = MixPacket::from_v2_bytes(&good).expect("ours");
        lost.next_hop = NodeAddress(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 1));
        net.submit(start, a.id, &lost.to_v2_bytes());
        net.submit(start, ClientId(99), &good);
        let stranger = Recipient::new(
            IdentityKeyPair::generate(&mut rng).public(),
            EncryptionKeyPair::generate(&mut rng).public(),
            *b.recipient(&net).gateway(),
        );
        let to_stranger = packet(&mut rng, &net, &net.topology(), &a, &stranger, 2);
        net.submit(start, a.id, &to_stranger);
        assert!(drain(&mut net, start).is_empty());
        assert_eq!(net.stats().unroutable, 3);

        // B detached, then attached elsewhere: same id, nothing at its old
        // gateway.
        net.detach(b.id);
        send(&mut net, &mut rng, start, &a, &b, &[3]);
        assert!(drain(&mut net, start).is_empty());
        assert_eq!(net.attach(b.identity.public_bytes(), 0), b.id);
        send(&mut net, &mut rng, start, &a, &b, &[4]);
        assert!(drain(&mut net, start).is_empty());
        assert_eq!(net.stats().unroutable, 5);

        // The good packet still goes through once B is back at gateway 1.
        net.attach(b.identity.public_bytes(), 1);
        net.submit(start, a.id, &good);
        let (m, k) = received(&drain(&mut net, start), &a, &b);
        assert_eq!((m, k), (vec![1], vec![1]));
    }

    /// A busy run with every fault, a topology change and a gateway outage:
    /// the trace of pushes (time, client, bytes) and the counters.
    fn busy_run(seed: u64) -> (Vec<(Duration, ClientId, Vec<u8>)>, NetStats) {
        let start = Instant::now();
        let faults = Faults {
            loss: 0.05,
            duplicate: 0.1,
            reorder: 0.3,
            spike: 0.05,
            spike_delay: Duration::from_secs(2),
            link_latency: (Duration::from_millis(1), Duration::from_millis(30)),
        };
        let mut net = SimNet::new(seed, config(3, 3, faults), start);
        let mut rng = ChaCha20Rng::seed_from_u64(seed.wrapping_add(1));
        let peers: Vec<Peer> = (0..3).map(|g| Peer::new(&mut net, &mut rng, g)).collect();
        let mut trace = Vec::new();
        for i in 0..30u8 {
            let now = start + Duration::from_millis(20) * u32::from(i);
            for (c, b) in net.advance(now) {
                trace.push((now - start, c, b));
            }
            match i {
                10 => {
                    net.replace_mixnode(now);
                }
                15 => net.set_gateway_down(now, 2, true),
                18 => net.set_gateway_down(now, 2, false),
                _ => {}
            }
            let from = &peers[usize::from(i % 3)];
            let to = &peers[usize::from((i + 1) % 3)];
            send(&mut net, &mut rng, now, from, to, &[i]);
        }
        trace.extend(drain(&mut net, start));
        (trace, net.stats())
    }

    #[test]
    fn same_seed_gives_identical_bytes() {
        let (trace, stats) = busy_run(7);
        assert!(stats.delivered > 0 && stats.duplicated > 0 && stats.replayed > 0);
        assert_eq!(busy_run(7), (trace.clone(), stats));
        assert_ne!(busy_run(8).0, trace);
    }
}
