//! Reply SURBs for our own sessions: a recipient that one of our SOCKS
//! lanes (`Config::volatile_lanes_from`) sent anonymous messages to is
//! given back, on top of the answer rate, a SURB for every packet it sent
//! us through our SURBs; a stranger keeps the rate after its burst; closing
//! the lane ends the privilege. Three cores on a perfect simulated network,
//! in virtual time.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nymd_client::{
    Client, ClientEvent, ClientKeys, ClientParams, Config, Lane, MemoryBudget, OutgoingMessage,
    Published, Transmit,
};
use nymd_proto::gateway::CURRENT_PROTOCOL_VERSION;
use nymd_proto::keys::VerifyingKey;
use nymd_proto::{Recipient, SenderTag};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

use crate::net::{ClientId, Faults, NetConfig, SimNet};

/// The lanes of our own sessions start here (as nymd's SOCKS lanes).
const VOLATILE_FROM: u64 = 1 << 63;
/// The answer bucket of the test: small, so that a reply needing more
/// SURBs than burst plus rate over [`WINDOW`] cannot get them at the rate.
const BURST: u32 = 10;
const RATE: u32 = 1;
/// Virtual time each phase is watched for.
const WINDOW: Duration = Duration::from_secs(10);
/// A reply of this size needs about 100 SURBs (regular packets).
const REPLY_LEN: usize = 200_000;

struct Peer {
    core: Client,
    id: ClientId,
    address: Recipient,
    /// Messages received: (first byte, length, sender tag).
    got: Vec<(u8, usize, Option<SenderTag>)>,
}

struct Sim {
    net: SimNet,
    peers: Vec<Peer>,
    now: Instant,
}

impl Sim {
    fn new(seed: u64) -> Self {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let start = Instant::now();
        let mut net = SimNet::new(
            rng.gen(),
            NetConfig {
                per_layer: 2,
                gateways: 2,
                faults: Faults::none(),
            },
            start,
        );
        let topology = net.topology();
        let budget = MemoryBudget::new(256 * 1024 * 1024);
        let mut peers = Vec::new();
        for i in 0..3 {
            let keys = ClientKeys::generate(&mut rng);
            let gateway = i % 2;
            let gw_key = VerifyingKey::from_bytes(&net.gateway_identity(gateway))
                .expect("simulated gateway key");
            let address = keys.address(gw_key);
            let id = net.attach(keys.identity.public_bytes(), gateway);
            let mut config = Config {
                disable_loop_cover: true,
                disable_main_poisson: true,
                average_packet_delay: Duration::from_millis(5),
                average_ack_delay: Duration::from_millis(5),
                ..Config::default()
            };
            // Peers ask again soon after an unanswered request, so that
            // the rate, not their patience, is what limits them.
            config.reply_surbs.request_retry = Duration::from_secs(1);
            config.reply_surbs.max_request_attempts = 100;
            if i == 0 {
                // Us: nymd with its SOCKS lanes.
                config.volatile_lanes_from = Some(VOLATILE_FROM);
                config.reply_surbs.answer_burst = BURST;
                config.reply_surbs.answer_rate = RATE;
            }
            let mut core = Client::new(ClientParams {
                keys,
                own: address,
                config,
                budget: budget.clone(),
                published: Arc::new(Published::default()),
                seed: rng.gen(),
                journal: None,
                now: start,
            });
            core.set_topology(start, Some(topology.clone()));
            core.handle_connected(start, CURRENT_PROTOCOL_VERSION, 1 << 40);
            peers.push(Peer {
                core,
                id,
                address,
                got: Vec::new(),
            });
        }
        Self {
            net,
            peers,
            now: start,
        }
    }

    /// Run the network and the cores in virtual time until `until`, or
    /// until `done` holds.
    fn run_until(&mut self, until: Instant, done: impl Fn(&Sim) -> bool) {
        loop {
            let now = self.now;
            for p in &mut self.peers {
                while let Some(t) = p.core.poll_transmit(now) {
                    if let Transmit::Packet { bytes, .. } = t {
                        self.net.submit(now, p.id, &bytes);
                    }
                }
                while let Some(ev) = p.core.poll_event() {
                    if let ClientEvent::Received(m) = ev {
                        let first = m.data.first().copied().unwrap_or(0);
                        p.got.push((first, m.data.len(), m.sender_tag));
                    }
                }
            }
            if done(self) {
                return;
            }
            let mut next = self.net.next_time();
            for p in &self.peers {
                next = match (next, p.core.poll_timeout()) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
            let Some(next) = next.filter(|t| *t <= until) else {
                self.now = until.max(self.now);
                return;
            };
            self.now = self.now.max(next);
            let now = self.now;
            for (cid, plain) in self.net.advance(now) {
                if let Some(p) = self.peers.iter_mut().find(|p| p.id == cid) {
                    if p.core.accepts_gateway_input() {
                        p.core.handle_gateway_push(now, plain);
                    }
                }
            }
            for p in &mut self.peers {
                if p.core.poll_timeout().is_some_and(|t| t <= now) {
                    p.core.handle_timeout(now);
                }
            }
        }
    }

    fn received(&self, at: usize, marker: u8) -> bool {
        self.peers[at].got.iter().any(|(m, _, _)| *m == marker)
    }

    fn tag_seen_by(&self, at: usize, marker: u8) -> Option<SenderTag> {
        self.peers[at]
            .got
            .iter()
            .find(|(m, _, _)| *m == marker)
            .and_then(|(_, _, t)| *t)
    }

    fn reply(&mut self, from: usize, tag: SenderTag, marker: u8) {
        let now = self.now;
        let mut data = vec![marker; REPLY_LEN];
        data[1] = from as u8;
        self.peers[from].core.handle_app(
            now,
            OutgoingMessage::Reply {
                sender_tag: tag,
                data,
                lane: Lane::Connection(u64::from(marker)),
            },
        );
    }

    /// We (client 0) send `to` 100 bytes of `marker` anonymously, with 5
    /// reply SURBs, on `lane`.
    fn ask(&mut self, to: usize, marker: u8, lane: Lane) {
        let now = self.now;
        let recipient = self.peers[to].address;
        self.peers[0].core.handle_app(
            now,
            OutgoingMessage::Anonymous {
                recipient,
                data: vec![marker; 100],
                reply_surbs: 5,
                lane,
            },
        );
    }

    /// `from` replies on `tag` with `marker`; the network runs until we
    /// (client 0) have it or [`WINDOW`] has passed. Our answers before and
    /// after, and how long it ran.
    fn reply_for_a_window(&mut self, from: usize, tag: SenderTag, marker: u8) -> Window {
        let before = self.answers();
        let start = self.now;
        self.reply(from, tag, marker);
        self.run_until(start + WINDOW, |s| s.received(0, marker));
        Window {
            before,
            after: self.answers(),
            took: self.now.duration_since(start),
        }
    }

    /// Our (client 0's) answers so far: (answered, refused, SURBs handed out).
    fn answers(&self) -> (u64, u64, u64) {
        let s = &self.peers[0].core.published().stats;
        (
            s.surb_requests_answered.load(Ordering::Relaxed),
            s.surb_requests_refused.load(Ordering::Relaxed),
            s.surbs_handed_out.load(Ordering::Relaxed),
        )
    }
}

/// What [`Sim::reply_for_a_window`] saw: our answers (answered, refused,
/// SURBs handed out) before and after, and the time it ran.
struct Window {
    before: (u64, u64, u64),
    after: (u64, u64, u64),
    took: Duration,
}

/// Our own SOCKS session's peer is kept supplied with SURBs as it spends
/// them; a stranger asking beyond the burst gets the rate and is refused
/// beyond it; once the session's lane is closed its peer is a stranger too.
#[test]
fn our_own_sessions_peer_gets_back_the_surbs_it_spends_and_strangers_keep_the_rate() {
    let mut sim = Sim::new(7);
    let session_lane = Lane::Connection(VOLATILE_FROM + 3);
    let (peer, stranger) = (1, 2);
    // Our session asks the peer (the network requester) something; another
    // lane of ours, not a session, asks the stranger.
    sim.ask(peer, 1, session_lane);
    sim.ask(stranger, 2, Lane::Connection(5));
    let until = sim.now + WINDOW;
    sim.run_until(until, |s| s.received(peer, 1) && s.received(stranger, 2));
    let peer_tag = sim.tag_seen_by(peer, 1).expect("the peer got our question");
    let stranger_tag = sim.tag_seen_by(stranger, 2).expect("the stranger got ours");

    // 1. The session's peer replies with ~100 packets, 5 SURBs in hand:
    // every packet it sends through our SURBs is given back, so it is
    // never refused and gets far more than burst + rate over the window.
    let Window {
        before,
        after,
        took,
    } = sim.reply_for_a_window(peer, peer_tag, 11);
    assert!(
        sim.received(0, 11),
        "our session's peer could not reply {REPLY_LEN} bytes within {WINDOW:?}: answers {before:?} -> {after:?}"
    );
    assert_eq!(after.1, before.1, "our session's peer was refused SURBs");
    let by_rate = u64::from(BURST) + u64::from(RATE) * took.as_secs().saturating_add(1);
    assert!(
        after.2 - before.2 > by_rate,
        "our session's peer got {} SURBs in {took:?}, no more than the rate allows ({by_rate})",
        after.2 - before.2
    );

    // 2. The stranger replies as much: it gets the burst and then the
    // rate, its requests beyond that are refused, and its reply cannot be
    // complete within the window.
    let Window { before, after, .. } = sim.reply_for_a_window(stranger, stranger_tag, 12);
    assert!(
        !sim.received(0, 12),
        "a stranger got SURBs for {REPLY_LEN} bytes within {WINDOW:?}: answers {before:?} -> {after:?}"
    );
    let by_rate = u64::from(BURST) + u64::from(RATE) * (WINDOW.as_secs() + 1);
    assert!(
        after.2 - before.2 <= by_rate,
        "a stranger got {} SURBs in {WINDOW:?}, more than the rate allows ({by_rate})",
        after.2 - before.2
    );
    assert!(
        after.1 > before.1,
        "the stranger's requests beyond the rate were not refused: {before:?} -> {after:?}"
    );

    // 3. The session ends: its peer is limited to the rate like anyone
    // (the stranger still asks meanwhile, within its own rate).
    let now = sim.now;
    sim.peers[0].core.close_lane(now, VOLATILE_FROM + 3);
    let Window { before, after, .. } = sim.reply_for_a_window(peer, peer_tag, 13);
    assert!(
        !sim.received(0, 13),
        "the peer of a closed session still got SURBs for {REPLY_LEN} bytes within {WINDOW:?}: answers {before:?} -> {after:?}"
    );
    assert!(
        after.2 - before.2 <= 2 * by_rate,
        "the peer of a closed session and the stranger got {} SURBs in {WINDOW:?}, more than their rates allow ({})",
        after.2 - before.2,
        2 * by_rate
    );
}
