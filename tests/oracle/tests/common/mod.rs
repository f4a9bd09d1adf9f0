//! Helpers shared by the oracle tests: seeded RNGs for both rand versions and
//! scratch directories.
#![allow(dead_code)]

use std::path::PathBuf;

/// Our side's RNG (rand 0.8), seeded.
pub fn our_rng(seed: u64) -> rand_chacha::ChaCha20Rng {
    use rand::SeedableRng;
    rand_chacha::ChaCha20Rng::seed_from_u64(seed)
}

/// Nym's side's RNG (rand 0.10), seeded.
pub fn nym_rng(seed: u64) -> nym_rand_chacha::ChaCha20Rng {
    use nym_rand::SeedableRng;
    nym_rand_chacha::ChaCha20Rng::seed_from_u64(seed)
}

/// `N` deterministic bytes.
pub fn bytes<const N: usize>(seed: u64) -> [u8; N] {
    use rand::RngCore;
    let mut out = [0u8; N];
    our_rng(seed).fill_bytes(&mut out);
    out
}

/// A fresh empty directory under the target's temp dir, unique per test name.
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("nymd-oracle-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

pub mod net;
