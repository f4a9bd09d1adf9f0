//! Deterministic simulation of `nymd-client` cores on a simulated Nym
//! network: many seeds, virtual time, faults; a failing seed replays
//! exactly.
//!
//! - [`net`]: the simulated network (gateways, three mix layers, faults).
//! - [`sessions`]: reply SURBs for our own sessions against strangers.
//! - [`world`]: cores on that network, a seeded workload and seeded faults,
//!   and the invariants checked during and after each run.
//!
//! `cargo test` runs [`SEEDS`] seeds (split over four tests so that they
//! run in parallel). More: `NYMD_SIM_SEEDS=20000`; one seed, replayed
//! exactly: `NYMD_SIM_SEED=1234 cargo test -p nymd-client --test sim
//! replay -- --nocapture`.

mod net;
mod sessions;
mod world;

use world::{run_plan, run_seed, Failure, World};

/// Seeds run by `cargo test`.
const SEEDS: u64 = 1_000;
/// Tests the seeds are split over.
const SHARDS: u64 = 4;

fn seeds() -> u64 {
    std::env::var("NYMD_SIM_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(SEEDS)
}

fn shard(k: u64) {
    let n = seeds();
    let mut failures: Vec<Failure> = Vec::new();
    let mut delivered = 0;
    let mut replies = 0;
    let mut failed = 0;
    let mut retransmissions = 0;
    let mut ran = 0;
    for seed in (0..n).filter(|s| s % SHARDS == k) {
        match run_seed(seed) {
            Ok(o) => {
                delivered += o.delivered;
                replies += o.replies_delivered;
                failed += o.failed;
                retransmissions += o.retransmissions;
                ran += 1;
            }
            Err(f) => failures.push(f),
        }
    }
    eprintln!(
        "shard {k}: {ran} seeds passed; {delivered} messages delivered ({replies} of them replies through reply SURBs), {failed} failures reported, {retransmissions} retransmissions"
    );
    if let Some(f) = failures.first() {
        panic!(
            "{} of the seeds failed; first: seed {}: {}\nreplay: NYMD_SIM_SEED={} cargo test -p nymd-client --test sim replay -- --nocapture",
            failures.len(),
            f.seed,
            f.what,
            f.seed
        );
    }
}

#[test]
fn simulation_seeds_shard_0() {
    shard(0);
}

#[test]
fn simulation_seeds_shard_1() {
    shard(1);
}

#[test]
fn simulation_seeds_shard_2() {
    shard(2);
}

#[test]
fn simulation_seeds_shard_3() {
    shard(3);
}

/// Replay one seed (`NYMD_SIM_SEED`), printing its plan and outcome.
#[test]
fn replay() {
    let Some(seed) = std::env::var("NYMD_SIM_SEED")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    else {
        return;
    };
    eprintln!("seed {seed}: {:?}", World::plan(seed));
    match run_seed(seed) {
        Ok(o) => eprintln!("seed {seed} passed: {o:?}"),
        Err(f) => panic!("seed {}: {}", f.seed, f.what),
    }
}

/// A run is a function of its seed: the same seed gives the same outcome,
/// down to a hash of every packet sent and message delivered.
#[test]
fn a_seed_replays_exactly() {
    for seed in [3, 17, 101] {
        let a = run_seed(seed).unwrap_or_else(|f| panic!("seed {}: {}", f.seed, f.what));
        let b = run_seed(seed).unwrap_or_else(|f| panic!("seed {}: {}", f.seed, f.what));
        assert_eq!(a, b, "seed {seed} ran differently twice");
        assert!(a.delivered > 0, "seed {seed} delivered nothing: {a:?}");
        assert!(a.delivered >= a.replies_delivered);
    }
}

/// The simulation catches a planted bug: a core that forgets a fragment at
/// its first retransmission (no resend, no failure) fails some seed.
#[test]
fn the_simulation_catches_a_core_that_skips_a_retransmission() {
    nymd_client::planted::skip_first_retransmission(true);
    let caught = (0..200u64).find_map(|seed| run_seed(seed).err());
    nymd_client::planted::skip_first_retransmission(false);
    let f =
        caught.expect("200 seeds with lossy links, and none noticed the skipped retransmission");
    eprintln!("caught at seed {}: {}", f.seed, f.what);
}

/// A core that may have only a few real packets in flight keeps to that
/// bound under loss, and every message of several dozen fragments is still
/// delivered, exactly once (the world fails a seed on a second delivery;
/// a reply may fail only when its asker gave no reply SURBs, and the world
/// checks that its sender heard so).
#[test]
fn packets_in_flight_stay_bounded_under_loss_and_all_is_delivered_once() {
    let mut reached = 0;
    for seed in 0..30u64 {
        let mut plan = World::plan(seed);
        let bound = 1 + (seed as usize % 6);
        plan.max_in_flight = Some(bound);
        plan.large_messages = true;
        plan.messages = 3;
        plan.outages = 0;
        plan.topology_changes = 0;
        plan.faults.loss = 0.15;
        let o = run_plan(seed, plan).unwrap_or_else(|f| panic!("seed {}: {}", f.seed, f.what));
        assert_eq!(o.delivered - o.replies_delivered, 3, "seed {seed}: {o:?}");
        assert!(o.peak_in_flight <= bound, "seed {seed}: {o:?}");
        assert!(o.retransmissions > 0, "seed {seed}: no loss seen: {o:?}");
        if o.peak_in_flight == bound {
            reached += 1;
        }
    }
    assert!(
        reached > 25,
        "the bound was reached in only {reached} of 30 runs"
    );
}
