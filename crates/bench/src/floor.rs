//! The single-core crypto floor: how many Nym packets one core can build
//! (and open), measured in this process on one thread, by CPU time.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use curve25519_dalek_5::edwards::EdwardsPoint;
use curve25519_dalek_5::scalar::Scalar;
use nymd_proto::ack::build_surb_ack;
use nymd_proto::cover::{build_loop_cover, cover_content, LoopCover};
use nymd_proto::fastsphinx::{self, NodeKeyCache};
use nymd_proto::keys::{AckKey, EncryptionKeyPair, SigningKey, X25519Public, X25519Secret};
use nymd_proto::params::FragmentId;
use nymd_proto::payload::{decrypt_message, prepare_fragment};
use nymd_proto::sphinx::{self, RouteHop, SenderDerivation};
use nymd_proto::{KeyRotation, NodeAddress, PacketSize, Recipient, SphinxVersion};
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

use crate::procfs::thread_cpu_seconds;

/// One measured operation.
#[derive(Debug, Clone)]
pub struct OpCost {
    /// Operations done.
    pub ops: u64,
    /// Microseconds of CPU per operation.
    pub cpu_us: f64,
    /// Microseconds of wall time per operation.
    pub wall_us: f64,
}

impl OpCost {
    /// The cost of `ops` operations that took `cpu_s` seconds of thread CPU
    /// and `wall_s` of wall time (wall time stands in where the CPU clock
    /// could not be read).
    fn from_totals(ops: u64, cpu_s: f64, wall_s: f64) -> Self {
        let ops_f = ops.max(1) as f64;
        OpCost {
            ops,
            cpu_us: if cpu_s > 0.0 { cpu_s } else { wall_s } * 1e6 / ops_f,
            wall_us: wall_s * 1e6 / ops_f,
        }
    }

    /// Operations per CPU second.
    pub fn per_core(&self) -> f64 {
        if self.cpu_us > 0.0 {
            1e6 / self.cpu_us
        } else {
            0.0
        }
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "ops": self.ops,
            "cpu_us": round(self.cpu_us),
            "wall_us": round(self.wall_us),
            "per_core_per_s": self.per_core().round(),
        })
    }
}

pub fn round(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn measure<F: FnMut()>(secs: f64, mut f: F) -> OpCost {
    // Warm up (tables, caches) for a tenth of the time.
    let warm = Instant::now();
    while warm.elapsed().as_secs_f64() < secs / 10.0 {
        f();
    }
    let cpu0 = thread_cpu_seconds().unwrap_or(0.0);
    let t0 = Instant::now();
    let mut ops = 0u64;
    while t0.elapsed().as_secs_f64() < secs {
        for _ in 0..8 {
            f();
        }
        ops += 8;
    }
    let wall = t0.elapsed().as_secs_f64();
    let cpu = thread_cpu_seconds().unwrap_or(0.0) - cpu0;
    OpCost::from_totals(ops, cpu, wall)
}

/// Measure several operations in alternating slices of about 20 ms, `secs`
/// of CPU for each in all, so that a machine whose speed drifts (a shared
/// VM) slows all of them alike and their ratios hold.
fn measure_alternating<const N: usize>(secs: f64, mut ops: [&mut dyn FnMut(); N]) -> [OpCost; N] {
    const SLICE_S: f64 = 0.02;
    for op in ops.iter_mut() {
        let warm = Instant::now();
        while warm.elapsed().as_secs_f64() < secs / 10.0 {
            op();
        }
    }
    let mut totals = [(0u64, 0.0f64, 0.0f64); N];
    let t0 = Instant::now();
    while t0.elapsed().as_secs_f64() < secs * N as f64 {
        for (op, total) in ops.iter_mut().zip(totals.iter_mut()) {
            let cpu0 = thread_cpu_seconds().unwrap_or(0.0);
            let w0 = Instant::now();
            while w0.elapsed().as_secs_f64() < SLICE_S {
                for _ in 0..4 {
                    op();
                }
                total.0 += 4;
            }
            total.2 += w0.elapsed().as_secs_f64();
            total.1 += thread_cpu_seconds().unwrap_or(0.0) - cpu0;
        }
    }
    totals.map(|(ops, cpu, wall)| OpCost::from_totals(ops, cpu, wall))
}

/// The floor measurements of one run.
#[derive(Debug, Clone)]
pub struct Floor {
    /// Loop cover packet (258, with its SURB-ACK), fast derivation.
    pub cover_fast: OpCost,
    /// The same with sphinx-packet's own builder.
    pub cover_stock: OpCost,
    /// Data packet (259: SURB-ACK + payload encryption + sphinx), fast.
    pub data_fast: OpCost,
    /// The same, stock.
    pub data_stock: OpCost,
    /// Bare 4-hop Regular sphinx packet, fast.
    pub sphinx_fast: OpCost,
    /// Bare 4-hop Regular sphinx packet, stock.
    pub sphinx_stock: OpCost,
    /// Receiving side: decrypt one pushed message (one X25519).
    pub receive: OpCost,
    /// One mixnode hop (for reference: the mixnet's cost per packet-hop).
    pub mix_hop: OpCost,
    /// One constant-time fixed-base scalar multiplication (curve25519-dalek's
    /// radix-16 basepoint table, `EdwardsPoint::mul_base`): a loop cover
    /// packet needs twelve of these or of the next one.
    pub fixed_base_mul: OpCost,
    /// One X25519 with a node key whose table is cached (the same
    /// multiplication on the node's table, plus one field inversion).
    pub node_table_x25519: OpCost,
}

/// Multiplications by a fresh secret scalar in one loop cover or data
/// packet with its SURB-ACK: alpha and four hop secrets for each of the two
/// Sphinx headers, and the payload key exchange's public key and secret.
pub const MULS_PER_PACKET: f64 = 12.0;

/// Packets per second of one idle identity at Nym's default rates: the
/// message stream every 20 ms and loop cover every 200 ms.
pub const IDLE_PACKETS_PER_S: f64 = 55.0;

/// The most identities one core can keep at Nym's default rates if it did
/// nothing but spend `us_per_packet` on each packet.
pub fn ceiling_per_core(us_per_packet: f64) -> f64 {
    if us_per_packet > 0.0 {
        1e6 / (IDLE_PACKETS_PER_S * us_per_packet)
    } else {
        0.0
    }
}

impl Floor {
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "cover_packet": {"fast": self.cover_fast.json(), "stock": self.cover_stock.json(),
                "speedup": round(self.cover_stock.cpu_us / self.cover_fast.cpu_us.max(1e-9))},
            "data_packet": {"fast": self.data_fast.json(), "stock": self.data_stock.json(),
                "speedup": round(self.data_stock.cpu_us / self.data_fast.cpu_us.max(1e-9))},
            "sphinx_4hop_regular": {"fast": self.sphinx_fast.json(), "stock": self.sphinx_stock.json(),
                "speedup": round(self.sphinx_stock.cpu_us / self.sphinx_fast.cpu_us.max(1e-9))},
            "receive_decrypt": self.receive.json(),
            "mix_hop": self.mix_hop.json(),
            "fixed_base_mul": self.fixed_base_mul.json(),
            "node_table_x25519": self.node_table_x25519.json(),
            "ceiling": self.ceiling_json(),
        })
    }

    /// What the measured costs allow at Nym's default rates, whatever else
    /// the daemon does: identities per core from the loop cover packet's
    /// cryptography alone, and from its twelve multiplications alone.
    fn ceiling_json(&self) -> serde_json::Value {
        let muls_us = MULS_PER_PACKET * self.fixed_base_mul.cpu_us;
        serde_json::json!({
            "packets_per_s_per_identity": IDLE_PACKETS_PER_S,
            "muls_per_packet": MULS_PER_PACKET,
            "muls_us_per_packet": round(muls_us),
            "rest_of_cover_packet_us": round((self.cover_fast.cpu_us - muls_us).max(0.0)),
            "identities_per_core_cover_crypto": round(ceiling_per_core(self.cover_fast.cpu_us)),
            "identities_per_core_muls_only": round(ceiling_per_core(muls_us)),
        })
    }
}

struct Fixture {
    route: Vec<RouteHop>,
    ack_route: Vec<RouteHop>,
    own: Recipient,
    enc: EncryptionKeyPair,
    ack_key: AckKey,
    first_secret: X25519Secret,
}

fn fixture(rng: &mut StdRng) -> Fixture {
    // A route shaped like the localnet's (and Nym's): three mixes, then the
    // egress gateway.
    let secrets: Vec<X25519Secret> = (0..4)
        .map(|_| X25519Secret::random_from_rng(&mut *rng))
        .collect();
    let route: Vec<RouteHop> = secrets
        .iter()
        .enumerate()
        .map(|(i, s)| {
            RouteHop::new(
                NodeAddress(SocketAddr::from(([127, 0, 0, 1], 40_000 + i as u16))),
                X25519Public::from(s),
            )
        })
        .collect();
    let enc = EncryptionKeyPair::generate(rng);
    let identity = SigningKey::generate(rng).verifying_key();
    let gateway = SigningKey::generate(rng).verifying_key();
    let own = Recipient::new(identity, enc.public(), gateway);
    Fixture {
        ack_route: route.clone(),
        route,
        own,
        enc,
        ack_key: AckKey::generate(rng),
        first_secret: secrets
            .into_iter()
            .next()
            .unwrap_or_else(|| X25519Secret::from([1u8; 32])),
    }
}

fn cover(rng: &mut StdRng, f: &Fixture) {
    let params = LoopCover {
        own: &f.own,
        ack_key: &f.ack_key,
        ack_route: &f.ack_route,
        route: &f.route,
        ack_mean: Duration::from_millis(15),
        packet_mean: Duration::from_millis(15),
        size: PacketSize::Regular,
        key_rotation: KeyRotation::Unknown,
        own_keys: Some(&f.enc),
    };
    let _ = std::hint::black_box(build_loop_cover(rng, &params));
}

fn data(rng: &mut StdRng, f: &Fixture, fragment: &[u8]) {
    let v = SphinxVersion::Seeds259;
    let Ok(ack) = build_surb_ack(
        rng,
        v,
        &f.ack_key,
        FragmentId {
            set_id: 7,
            position: 0,
        },
        &f.ack_route,
        f.own.identity().as_bytes(),
        Duration::from_millis(15),
    ) else {
        return;
    };
    let _ = std::hint::black_box(prepare_fragment(
        rng,
        v,
        fragment,
        &f.own,
        &f.route,
        &ack,
        Duration::from_millis(15),
        KeyRotation::Unknown,
    ));
}

/// Measure the floor, `secs` per operation.
pub fn measure_floor(secs: f64) -> Floor {
    let mut rng = StdRng::from_entropy();
    let f = fixture(&mut rng);
    let fragment = cover_content(PacketSize::Regular).unwrap_or_default();
    let plaintext = vec![7u8; PacketSize::Regular.plaintext_size()];
    let delays = [Duration::ZERO; 4];
    let dest = f.own.identity().to_bytes();
    let before = sphinx::sender_derivation();

    let run = |d: SenderDerivation, rng: &mut StdRng| {
        sphinx::set_sender_derivation(d);
        let dp = measure(secs, || data(rng, &f, &fragment));
        let s = measure(secs, || {
            let _ = std::hint::black_box(sphinx::build_forward(
                rng,
                SphinxVersion::Legacy258,
                PacketSize::Regular,
                &plaintext,
                &f.route,
                &dest,
                &delays,
            ));
        });
        (dp, s)
    };
    let (data_fast, sphinx_fast) = run(SenderDerivation::Fast, &mut rng);
    let (data_stock, sphinx_stock) = run(SenderDerivation::Stock, &mut rng);
    // The fast cover packet is measured below, beside its multiplications.
    let cover_stock = measure(secs, || cover(&mut rng, &f));
    sphinx::set_sender_derivation(before);

    // A pushed message as the client receives it: eph key || ciphertext.
    let mut message = vec![0u8; 32 + fragment.len()];
    let eph = X25519Secret::random_from_rng(&mut rng);
    message[..32].copy_from_slice(X25519Public::from(&eph).as_bytes());
    let receive = measure(secs, || {
        let mut none = |_: &[u8; 32]| None;
        let _ = std::hint::black_box(decrypt_message(&f.enc, &message, &mut none));
    });
    let packet = sphinx::build_forward(
        &mut rng,
        SphinxVersion::Legacy258,
        PacketSize::Regular,
        &plaintext,
        &f.route,
        &dest,
        &delays,
    )
    .unwrap_or_default();
    let mix_hop = measure(secs, || {
        let _ = std::hint::black_box(sphinx::process(&packet, &f.first_secret));
    });
    // A loop cover packet, one fixed-base multiplication and one X25519
    // with a node table, in alternating slices: the ceiling divides the
    // packet into its twelve multiplications and the rest.
    sphinx::set_sender_derivation(SenderDerivation::Fast);
    let mut scalars = [Scalar::ZERO; 16];
    for s in scalars.iter_mut() {
        let mut bytes = [0u8; 64];
        rng.fill_bytes(&mut bytes);
        *s = Scalar::from_bytes_mod_order_wide(&bytes);
    }
    let mut next = 0usize;
    let mut mul = || {
        next = (next + 1) % scalars.len();
        if let Some(s) = scalars.get(next) {
            let _ = std::hint::black_box(EdwardsPoint::mul_base(std::hint::black_box(s)));
        }
    };
    // Its own cache, building the node's table on first use (the daemon's
    // global cache does so on a key's second use).
    let cache = NodeKeyCache::new(4, 4, 1);
    let node = f
        .route
        .first()
        .map(|hop| *hop.key.as_bytes())
        .unwrap_or([9u8; 32]);
    let mut node_rng = StdRng::from_entropy();
    let mut secret = [0u8; 32];
    let mut node_x25519 = || {
        node_rng.fill_bytes(&mut secret);
        let _ = std::hint::black_box(fastsphinx::x25519(&cache, &secret, &node));
    };
    let mut cover_fast_op = || cover(&mut rng, &f);
    let [cover_fast, fixed_base_mul, node_table_x25519] =
        measure_alternating(secs, [&mut cover_fast_op, &mut mul, &mut node_x25519]);
    sphinx::set_sender_derivation(before);
    Floor {
        cover_fast,
        cover_stock,
        data_fast,
        data_stock,
        sphinx_fast,
        sphinx_stock,
        receive,
        mix_hop,
        fixed_base_mul,
        node_table_x25519,
    }
}
