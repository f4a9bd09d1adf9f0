//! One simulated run: client cores from `nymd-client` on the simulated
//! network of [`crate::net`], in virtual time, driven the way nymd-mixnet's
//! driver drives them, with a seeded workload and seeded faults, checking
//! invariants as it goes and at the end.
//!
//! Invariants:
//! - a message is never delivered twice, and at the end each one was
//!   delivered or its sender got a failure event on its lane;
//! - replies through reply SURBs are tracked the same way (they reach the
//!   party that sent the anonymous message, or their sender hears why not);
//! - no store passes its bound (SURBs, reply keys, reassembly, sender tags,
//!   the transmissions held for the driver) after any step;
//! - at the end nothing is left pending: no fragment, no ack timer, no
//!   journalled message;
//! - no panic (a panic fails the seed like any broken invariant).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nymd_client::{
    Client, ClientEvent, ClientKeys, ClientParams, Config, Journal, Lane, MemoryBudget,
    OutgoingMessage, Published, Transmit, MAX_TRANSMITS,
};
use nymd_proto::gateway::CURRENT_PROTOCOL_VERSION;
use nymd_proto::keys::VerifyingKey;
use nymd_proto::params::FragmentId;
use nymd_proto::{Recipient, SenderTag};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

use crate::net::{ClientId, Faults, NetConfig, SimNet};

/// Virtual time a run may take before unresolved messages count as lost
/// (retransmissions give up after about 7½ minutes of silence).
const DEADLINE: Duration = Duration::from_secs(20 * 60);
/// Virtual time a resolved run goes on for before the final checks.
const SETTLE: Duration = Duration::from_secs(2);
/// Bandwidth the simulated gateways report.
const BANDWIDTH: i64 = 1 << 40;

/// What a payload says about itself: `SIM | id: u32 | kind | filler`.
const MAGIC: &[u8; 3] = b"SIM";
const KIND_PLAIN: u8 = 0;
const KIND_ASK: u8 = 1;
const KIND_REPLY: u8 = 2;

/// The journal of a simulated client: what the core asked to keep.
#[derive(Debug, Default)]
pub struct MemJournal {
    live: Mutex<BTreeMap<u64, usize>>,
}

#[derive(Debug, Clone)]
struct JournalHandle(Arc<MemJournal>);

impl Journal for JournalHandle {
    fn add(&self, message: u64, _: &Recipient, fragments: &[(FragmentId, Vec<u8>)]) {
        if let Ok(mut l) = self.0.live.lock() {
            l.insert(message, fragments.len());
        }
    }
    fn add_reply(&self, message: u64, _: &SenderTag, fragments: &[(FragmentId, Vec<u8>)]) {
        if let Ok(mut l) = self.0.live.lock() {
            l.insert(message, fragments.len());
        }
    }
    fn done(&self, message: u64) {
        if let Ok(mut l) = self.0.live.lock() {
            l.remove(&message);
        }
    }
    fn has_room(&self) -> bool {
        true
    }
    fn close(&mut self) {}
}

/// One tracked message (or reply).
#[derive(Debug, Clone)]
struct Tracked {
    from: usize,
    to: usize,
    kind: u8,
    delivered: u32,
    failed: bool,
}

struct Node {
    core: Client,
    id: ClientId,
    gateway: usize,
    address: Recipient,
    connected: bool,
    journal: Arc<MemJournal>,
}

/// Settings of one run, drawn from its seed.
#[derive(Debug, Clone)]
pub struct Plan {
    pub faults: Faults,
    pub clients: usize,
    pub messages: usize,
    pub poisson: bool,
    pub outages: usize,
    pub topology_changes: usize,
    /// The cores' bound on real packets in flight (`Config::max_in_flight`).
    pub max_in_flight: Option<usize>,
    /// Messages of 4 to 40 fragments instead of mostly one.
    pub large_messages: bool,
}

/// A failed run: which seed, what broke.
#[derive(Debug)]
pub struct Failure {
    pub seed: u64,
    pub what: String,
}

/// What a run did (for the determinism check and the summary).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Outcome {
    pub delivered: u64,
    /// Of those, replies sent back through reply SURBs.
    pub replies_delivered: u64,
    pub failed: u64,
    pub retransmissions: u64,
    /// The most real packets any core had in flight after a step.
    pub peak_in_flight: usize,
    pub trace: u64,
    pub end_ms: u64,
}

pub struct World {
    seed: u64,
    large_messages: bool,
    peak_in_flight: usize,
    rng: ChaCha20Rng,
    start: Instant,
    now: Instant,
    net: SimNet,
    nodes: Vec<Node>,
    tracked: BTreeMap<u64, Tracked>,
    next_id: u64,
    /// Scripted faults: (time, what).
    script: Vec<(Instant, Scripted)>,
    trace: blake3::Hasher,
}

#[derive(Debug, Clone, Copy)]
enum Scripted {
    Send { from: usize },
    GatewayDown(usize),
    GatewayUp(usize),
    ReplaceMixnode,
}

impl World {
    /// The plan of `seed`.
    pub fn plan(seed: u64) -> Plan {
        let mut r = ChaCha20Rng::seed_from_u64(seed ^ 0x005e_ed0f_5a11);
        let loss = if r.gen_bool(0.3) {
            0.0
        } else {
            r.gen_range(0.0..0.12)
        };
        Plan {
            faults: Faults {
                loss,
                duplicate: r.gen_range(0.0..0.05),
                reorder: r.gen_range(0.0..0.3),
                spike: r.gen_range(0.0..0.02),
                spike_delay: Duration::from_millis(r.gen_range(500..5_000)),
                link_latency: (Duration::from_millis(1), Duration::from_millis(20)),
            },
            clients: r.gen_range(2..=3),
            messages: r.gen_range(1..=4),
            poisson: r.gen_bool(0.25),
            outages: if r.gen_bool(0.3) {
                r.gen_range(1..=2)
            } else {
                0
            },
            topology_changes: if r.gen_bool(0.2) { 1 } else { 0 },
            // Drawn last, so that the draws above stay what they were.
            max_in_flight: if r.gen_bool(0.5) {
                Some(r.gen_range(1..=8))
            } else {
                Some(nymd_client::DEFAULT_MAX_IN_FLIGHT)
            },
            large_messages: false,
        }
    }

    /// A run of `seed` with a plan (its own, [`World::plan`], or a
    /// caller's).
    pub fn with_plan(seed: u64, plan: Plan) -> Self {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let start = Instant::now();
        let gateways = 2;
        let mut net = SimNet::new(
            rng.gen(),
            NetConfig {
                per_layer: 2,
                gateways,
                faults: plan.faults,
            },
            start,
        );
        let topology = net.topology();
        let budget = MemoryBudget::new(256 * 1024 * 1024);
        let mut nodes = Vec::new();
        for i in 0..plan.clients {
            let keys = ClientKeys::generate(&mut rng);
            let gateway = i % gateways;
            let gw_key = VerifyingKey::from_bytes(&net.gateway_identity(gateway))
                .expect("simulated gateway key");
            let address = keys.address(gw_key);
            let id = net.attach(keys.identity.public_bytes(), gateway);
            let journal = Arc::new(MemJournal::default());
            let mut config = Config {
                disable_loop_cover: true,
                disable_main_poisson: !plan.poisson,
                message_sending_average_delay: Duration::from_millis(200),
                average_packet_delay: Duration::from_millis(5),
                average_ack_delay: Duration::from_millis(5),
                surb_store_bytes: 256 * 1024,
                reply_key_bytes: 64 * 1024,
                max_in_flight: plan.max_in_flight,
                ..Config::default()
            };
            config.reply_surbs.max_sender_tags = 2;
            let mut core = Client::new(ClientParams {
                keys,
                own: address,
                config,
                budget: budget.clone(),
                published: Arc::new(Published::default()),
                seed: rng.gen(),
                journal: Some(Box::new(JournalHandle(journal.clone()))),
                now: start,
            });
            core.set_topology(start, Some(topology.clone()));
            core.handle_connected(start, CURRENT_PROTOCOL_VERSION, BANDWIDTH);
            nodes.push(Node {
                core,
                id,
                gateway,
                address,
                connected: true,
                journal,
            });
        }
        let mut script = Vec::new();
        let at = |rng: &mut ChaCha20Rng, max_ms: u64| {
            start + Duration::from_millis(rng.gen_range(0..max_ms))
        };
        for _ in 0..plan.messages {
            let from = rng.gen_range(0..plan.clients);
            script.push((at(&mut rng, 20_000), Scripted::Send { from }));
        }
        for _ in 0..plan.outages {
            let g = rng.gen_range(0..gateways);
            let down = at(&mut rng, 20_000);
            script.push((down, Scripted::GatewayDown(g)));
            let up = down + Duration::from_millis(rng.gen_range(500..15_000));
            script.push((up, Scripted::GatewayUp(g)));
        }
        for _ in 0..plan.topology_changes {
            script.push((at(&mut rng, 20_000), Scripted::ReplaceMixnode));
        }
        script.sort_by_key(|(t, _)| *t);
        script.reverse();
        Self {
            seed,
            large_messages: plan.large_messages,
            peak_in_flight: 0,
            rng,
            start,
            now: start,
            net,
            nodes,
            tracked: BTreeMap::new(),
            next_id: 1,
            script,
            trace: blake3::Hasher::new(),
        }
    }

    fn fail(&self, what: impl Into<String>) -> Failure {
        Failure {
            seed: self.seed,
            what: format!(
                "{} (at {} ms virtual)",
                what.into(),
                self.now.duration_since(self.start).as_millis()
            ),
        }
    }

    fn payload(&mut self, id: u64, kind: u8) -> Vec<u8> {
        // Mostly one fragment; sometimes several.
        let len = if self.large_messages {
            self.rng.gen_range(8_000..40_000)
        } else if self.rng.gen_bool(0.15) {
            self.rng.gen_range(2_000..9_000)
        } else {
            self.rng.gen_range(0..1_500)
        };
        let mut v = Vec::with_capacity(8 + len);
        v.extend_from_slice(MAGIC);
        v.extend_from_slice(&(id as u32).to_be_bytes());
        v.push(kind);
        v.extend((0..len).map(|_| self.rng.gen::<u8>()));
        v
    }

    fn send_new(&mut self, from: usize) {
        let n = self.nodes.len();
        let to = (from + self.rng.gen_range(1..n)) % n;
        let id = self.next_id;
        self.next_id += 1;
        let ask = self.rng.gen_bool(0.5);
        let kind = if ask { KIND_ASK } else { KIND_PLAIN };
        let data = self.payload(id, kind);
        let recipient = self.nodes[to].address;
        let lane = Lane::Connection(id);
        let req = if ask {
            OutgoingMessage::Anonymous {
                recipient,
                data,
                reply_surbs: self.rng.gen_range(0..=4),
                lane,
            }
        } else {
            OutgoingMessage::Plain {
                recipient,
                data,
                lane,
            }
        };
        self.tracked.insert(
            id,
            Tracked {
                from,
                to,
                kind,
                delivered: 0,
                failed: false,
            },
        );
        let now = self.now;
        self.nodes[from].core.handle_app(now, req);
    }

    /// Give every core's transmissions to the network and take its events.
    fn drain(&mut self) -> Result<(), Failure> {
        let now = self.now;
        for i in 0..self.nodes.len() {
            loop {
                let node = &mut self.nodes[i];
                let Some(t) = node.core.poll_transmit(now) else {
                    break;
                };
                if let Transmit::Packet { bytes, .. } = t {
                    if node.connected {
                        self.trace.update(&bytes[..bytes.len().min(64)]);
                        self.net.submit(now, node.id, &bytes);
                    }
                }
            }
            while let Some(ev) = self.nodes[i].core.poll_event() {
                self.on_event(i, ev)?;
            }
        }
        Ok(())
    }

    fn on_event(&mut self, at: usize, ev: ClientEvent) -> Result<(), Failure> {
        match ev {
            ClientEvent::Received(m) => {
                let d = &m.data;
                if d.len() < 8 || &d[..3] != MAGIC {
                    return Err(self.fail(format!("client {at} got a message that was never sent")));
                }
                let id = u64::from(u32::from_be_bytes([d[3], d[4], d[5], d[6]]));
                let kind = d[7];
                self.trace.update(&id.to_be_bytes());
                let Some(t) = self.tracked.get_mut(&id) else {
                    return Err(self.fail(format!("client {at} got unknown message {id}")));
                };
                t.delivered += 1;
                let t = t.clone();
                if t.delivered > 1 {
                    return Err(self.fail(format!("message {id} delivered {} times", t.delivered)));
                }
                if t.to != at {
                    return Err(self.fail(format!("message {id} for {} delivered to {at}", t.to)));
                }
                if (kind == KIND_ASK) != m.sender_tag.is_some() {
                    return Err(self.fail(format!(
                        "message {id}: sender tag {:?} for kind {kind}",
                        m.sender_tag
                    )));
                }
                if kind == KIND_ASK {
                    if let Some(tag) = m.sender_tag {
                        let rid = self.next_id;
                        self.next_id += 1;
                        let data = self.payload(rid, KIND_REPLY);
                        self.tracked.insert(
                            rid,
                            Tracked {
                                from: at,
                                to: t.from,
                                kind: KIND_REPLY,
                                delivered: 0,
                                failed: false,
                            },
                        );
                        let now = self.now;
                        self.nodes[at].core.handle_app(
                            now,
                            OutgoingMessage::Reply {
                                sender_tag: tag,
                                data,
                                lane: Lane::Connection(rid),
                            },
                        );
                    }
                }
            }
            ClientEvent::Error {
                lane,
                kind,
                message,
            } => {
                if let Some(Lane::Connection(id)) = lane {
                    match self.tracked.get_mut(&id) {
                        Some(t) if t.from == at => t.failed = true,
                        _ => {
                            return Err(self.fail(format!(
                                "client {at} got an error for message {id} it did not send: {kind:?} {message}"
                            )))
                        }
                    }
                }
            }
            ClientEvent::GatewayStatus(_) => {}
        }
        Ok(())
    }

    fn check_bounds(&mut self) -> Result<(), Failure> {
        for (i, n) in self.nodes.iter().enumerate() {
            let o = n.core.occupancy();
            self.peak_in_flight = self.peak_in_flight.max(o.in_flight);
            let c = n.core.config();
            let checks = [
                ("SURB store bytes", o.surb_bytes, c.surb_store_bytes),
                ("reply key bytes", o.reply_key_bytes, c.reply_key_bytes),
                (
                    "reassembly bytes",
                    o.reassembly_bytes,
                    c.reassembly.max_buffered_bytes,
                ),
                ("sender tags", o.sender_tags, c.reply_surbs.max_sender_tags),
                ("transmissions held", o.transmits, MAX_TRANSMITS + 1),
                ("queued packets", o.queued_packets, c.max_queued_packets),
                (
                    "real packets in flight",
                    o.in_flight,
                    c.max_in_flight.unwrap_or(usize::MAX),
                ),
            ];
            for (what, got, bound) in checks {
                if got > bound {
                    return Err(
                        self.fail(format!("client {i}: {what} {got} over its bound {bound}"))
                    );
                }
            }
        }
        Ok(())
    }

    fn resolved(&self) -> bool {
        self.script.is_empty()
            && self.tracked.values().all(|t| t.delivered > 0 || t.failed)
            && self
                .nodes
                .iter()
                .all(|n| n.core.occupancy().pending_fragments == 0)
    }

    fn run_script(&mut self) {
        while self.script.last().is_some_and(|(t, _)| *t <= self.now) {
            let Some((_, s)) = self.script.pop() else {
                break;
            };
            let now = self.now;
            match s {
                Scripted::Send { from } => self.send_new(from),
                Scripted::GatewayDown(g) => {
                    self.net.set_gateway_down(now, g, true);
                    for n in self
                        .nodes
                        .iter_mut()
                        .filter(|n| n.gateway == g && n.connected)
                    {
                        n.connected = false;
                        n.core.handle_disconnected(now);
                    }
                }
                Scripted::GatewayUp(g) => {
                    if self.net.is_gateway_down(g) {
                        self.net.set_gateway_down(now, g, false);
                    }
                    for n in self
                        .nodes
                        .iter_mut()
                        .filter(|n| n.gateway == g && !n.connected)
                    {
                        if !self.net.is_gateway_down(g) {
                            n.connected = true;
                            n.core
                                .handle_connected(now, CURRENT_PROTOCOL_VERSION, BANDWIDTH);
                        }
                    }
                }
                Scripted::ReplaceMixnode => {
                    let t = self.net.replace_mixnode(now);
                    for n in &mut self.nodes {
                        n.core.set_topology(now, Some(t.clone()));
                    }
                }
            }
        }
    }

    /// Run to the end and check everything.
    pub fn run(mut self) -> Result<Outcome, Failure> {
        let deadline = self.start + DEADLINE;
        let mut settle_until: Option<Instant> = None;
        loop {
            self.run_script();
            self.drain()?;
            self.check_bounds()?;
            if self.resolved() {
                if settle_until.is_none() {
                    // Let the streams pop what acks made stale in the queues.
                    settle_until = Some(self.now + SETTLE);
                }
                if settle_until.is_some_and(|t| self.now >= t) {
                    break;
                }
            }
            let mut next = self.net.next_time();
            for n in &self.nodes {
                next = match (next, n.core.poll_timeout()) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
            if let Some((t, _)) = self.script.last() {
                next = Some(next.map_or(*t, |n| n.min(*t)));
            }
            if let Some(t) = settle_until {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
            let Some(next) = next else {
                return Err(self.fail("nothing left to happen, yet not everything is resolved"));
            };
            if next > deadline {
                let open: Vec<(u64, Tracked)> = self
                    .tracked
                    .iter()
                    .filter(|(_, t)| t.delivered == 0 && !t.failed)
                    .map(|(id, t)| (*id, t.clone()))
                    .collect();
                return Err(self.fail(format!(
                    "deadline: messages neither delivered nor failed: {open:?}; pending fragments {:?}",
                    self.nodes.iter().map(|n| n.core.occupancy().pending_fragments).collect::<Vec<_>>()
                )));
            }
            self.now = self.now.max(next);
            let now = self.now;
            for (cid, plain) in self.net.advance(now) {
                if let Some(n) = self.nodes.iter_mut().find(|n| n.id == cid) {
                    if n.connected && n.core.accepts_gateway_input() {
                        n.core.handle_gateway_push(now, plain);
                    }
                }
            }
            for n in &mut self.nodes {
                if n.core.poll_timeout().is_some_and(|t| t <= now) {
                    n.core.handle_timeout(now);
                }
            }
        }
        // Quiescent: nothing pending, nothing journalled.
        for (i, n) in self.nodes.iter().enumerate() {
            let o = n.core.occupancy();
            if o.ack_timers != 0
                || o.journalled_messages != 0
                || o.queued_packets != 0
                || o.in_flight != 0
            {
                return Err(self.fail(format!("client {i} is not quiescent at the end: {o:?}")));
            }
            let live = n.journal.live.lock().map(|l| l.len()).unwrap_or(usize::MAX);
            if live != 0 {
                return Err(self.fail(format!("client {i}: {live} messages still journalled")));
            }
        }
        let mut out = Outcome {
            delivered: self.tracked.values().filter(|t| t.delivered > 0).count() as u64,
            replies_delivered: self
                .tracked
                .values()
                .filter(|t| t.kind == KIND_REPLY && t.delivered > 0)
                .count() as u64,
            failed: self.tracked.values().filter(|t| t.failed).count() as u64,
            retransmissions: self
                .nodes
                .iter()
                .map(|n| n.core.published().stats.snapshot().retransmissions)
                .sum(),
            peak_in_flight: self.peak_in_flight,
            trace: 0,
            end_ms: self.now.duration_since(self.start).as_millis() as u64,
        };
        let h = self.trace.finalize();
        let mut b = [0u8; 8];
        b.copy_from_slice(&h.as_bytes()[..8]);
        out.trace = u64::from_le_bytes(b);
        Ok(out)
    }
}

/// Run one seed, turning a panic into a failure that names the seed.
pub fn run_seed(seed: u64) -> Result<Outcome, Failure> {
    run_plan(seed, World::plan(seed))
}

/// Run one seed with a plan of the caller's.
pub fn run_plan(seed: u64, plan: Plan) -> Result<Outcome, Failure> {
    match std::panic::catch_unwind(move || World::with_plan(seed, plan).run()) {
        Ok(r) => r,
        Err(p) => Err(Failure {
            seed,
            what: format!(
                "panic: {}",
                p.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default()
            ),
        }),
    }
}
