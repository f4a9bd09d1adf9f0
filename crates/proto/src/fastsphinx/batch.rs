//! Several independent derivations advanced hop by hop together, so that
//! the Edwards-to-Montgomery conversions of one step share a single field
//! inversion (Montgomery's trick, `EdwardsPoint::to_montgomery_batch`).
//!
//! A hop's blinding factor comes from the previous hop's shared secret, so
//! one route's hops are sequential; but a Nym packet has three independent
//! derivations: the SURB-ACK's route, the payload's key exchange with the
//! recipient and the packet's route. Run together, a 4-hop packet with its
//! SURB-ACK takes 4 inversions instead of 12 (step 0 converts both alphas,
//! the exchange's public key and shared secret, and both first hops).
//! Every output is the same bytes as the one-at-a-time derivation: the
//! batch conversion computes the same `u = (Z+Y)/(Z-Y)` (the identity still
//! maps to 0), and twist keys still take the plain ladder chain.

use curve25519_dalek_5::edwards::EdwardsPoint;
use curve25519_dalek_5::montgomery::MontgomeryPoint;
use curve25519_dalek_5::scalar::{clamp_integer, Scalar};
use zeroize::{Zeroize, Zeroizing};

use super::{clamped_over_8, DerivedKeys, Expanded, NodeKeyCache};

/// One derivation of a batch.
#[derive(Debug, Clone, Copy)]
pub enum Derivation<'a> {
    /// A Sphinx route: alpha and every hop's expanded secret
    /// (sphinx-packet's `KeyMaterial::derive`).
    Route {
        /// The initial secret `x`.
        secret: &'a [u8; 32],
        /// The hops' x25519 keys, in route order (1 to 5).
        keys: &'a [[u8; 32]],
    },
    /// One X25519 exchange: the public key of `secret` and the shared secret
    /// with `public` (`StaticSecret::diffie_hellman`).
    Exchange {
        /// Our ephemeral secret.
        secret: &'a [u8; 32],
        /// Their public key.
        public: &'a [u8; 32],
    },
    /// An exchange with a key pair of our own (a loop cover packet's payload
    /// is encrypted to our own key): the same results as [`Self::Exchange`]
    /// with `public = X25519(own_secret, 9)`, computed on the fixed base.
    /// X25519 multiplies by clamped scalars `c`, so the shared secret is
    /// `u(c_secret·c_own·B)` for the base point `B` of prime order ℓ, i.e.
    /// `u(s·B)` with `s = c_secret·c_own mod ℓ` (never 0: `c = 8k` with
    /// `0 < k < ℓ`). No per-key table is needed, and nothing is cached per
    /// identity. The caller must pass a matching pair
    /// ([`crate::keys::EncryptionKeyPair`] guarantees it).
    OwnExchange {
        /// Our ephemeral secret.
        secret: &'a [u8; 32],
        /// The secret half of the recipient's (our own) key.
        own_secret: &'a [u8; 32],
        /// Its public half, `X25519(own_secret, 9)`.
        own_public: &'a [u8; 32],
    },
}

/// The result of one [`Derivation`], in the same position.
#[derive(Debug)]
pub enum Derived {
    /// Alpha and the expanded secrets of a route.
    Route(DerivedKeys),
    /// An exchange's public key and shared secret.
    Exchange {
        /// `X25519(secret, 9)`.
        public: [u8; 32],
        /// `X25519(secret, public)`.
        shared: Zeroizing<[u8; 32]>,
    },
}

/// Where a pending Edwards point's `u` goes.
#[derive(Clone, Copy)]
enum Slot {
    Alpha,
    Hop(usize),
}

struct Chain<'a> {
    keys: &'a [[u8; 32]],
    route: bool,
    t: Scalar,
    /// The raw factors (initial secret, then blinding factors), for hops whose
    /// key is on the twist.
    factors: Vec<Zeroizing<[u8; 32]>>,
    alpha: [u8; 32],
    expanded: Vec<Expanded>,
    shared: Zeroizing<[u8; 32]>,
    /// For [`Derivation::OwnExchange`]: `c_secret·c_own mod ℓ`.
    own: Option<Scalar>,
}

impl Drop for Chain<'_> {
    fn drop(&mut self) {
        self.t.zeroize();
        if let Some(s) = self.own.as_mut() {
            s.zeroize();
        }
    }
}

/// `c_a·c_b mod ℓ` for the X25519-clamped scalars of `a` and `b`.
fn clamped_product(a: &[u8; 32], b: &[u8; 32]) -> Scalar {
    let mut ca = clamp_integer(*a);
    let mut cb = clamp_integer(*b);
    let s = Scalar::from_bytes_mod_order(ca) * Scalar::from_bytes_mod_order(cb);
    ca.zeroize();
    cb.zeroize();
    s
}

impl Chain<'_> {
    /// Record hop `i`'s shared secret and advance the accumulator.
    fn take_shared(&mut self, i: usize, shared: [u8; 32]) {
        let mut shared = Zeroizing::new(shared);
        if !self.route {
            self.shared = shared;
            return;
        }
        let e = Expanded::from_shared_secret(&shared);
        shared.zeroize();
        if i + 1 < self.keys.len() {
            let b = Zeroizing::new(e.blinding_factor());
            self.t *= Scalar::from_bytes_mod_order(clamp_integer(*b));
            self.factors.push(b);
        }
        self.expanded.push(e);
    }
}

/// Run `jobs` together; the results come back in the same order.
pub fn derive_batch(cache: &NodeKeyCache, jobs: &[Derivation<'_>]) -> Vec<Derived> {
    let mut chains: Vec<Chain<'_>> = jobs
        .iter()
        .map(|job| {
            let (secret, keys, route, own) = match job {
                Derivation::Route { secret, keys } => (*secret, *keys, true, None),
                Derivation::Exchange { secret, public } => {
                    (*secret, std::slice::from_ref(*public), false, None)
                }
                Derivation::OwnExchange {
                    secret,
                    own_secret,
                    own_public,
                } => (
                    *secret,
                    std::slice::from_ref(*own_public),
                    false,
                    Some(clamped_product(secret, own_secret)),
                ),
            };
            Chain {
                keys,
                route,
                t: clamped_over_8(secret),
                factors: vec![Zeroizing::new(*secret)],
                alpha: [0u8; 32],
                expanded: Vec::with_capacity(keys.len()),
                shared: Zeroizing::new([0u8; 32]),
                own,
            }
        })
        .collect();
    let hops = chains.iter().map(|c| c.keys.len()).max().unwrap_or(0);
    let mut points: Vec<EdwardsPoint> = Vec::with_capacity(2 * chains.len());
    let mut slots: Vec<(usize, Slot)> = Vec::with_capacity(2 * chains.len());
    for step in 0..hops.max(1) {
        points.clear();
        slots.clear();
        // Hops whose key is on the twist: computed now, recorded after the
        // batch (the order of recording does not matter between chains).
        let mut plain: Vec<(usize, Zeroizing<[u8; 32]>)> = Vec::new();
        for (c, chain) in chains.iter().enumerate() {
            if step == 0 {
                if let Some(first) = chain.factors.first() {
                    points.push(EdwardsPoint::mul_base_clamped(**first));
                    slots.push((c, Slot::Alpha));
                }
            }
            let Some(key) = chain.keys.get(step) else {
                continue;
            };
            if let Some(s) = chain.own.as_ref() {
                points.push(EdwardsPoint::mul_base(s));
                slots.push((c, Slot::Hop(step)));
                continue;
            }
            let point = cache.get(key);
            match point.mul_edwards(&chain.t) {
                Some(p) => {
                    points.push(p);
                    slots.push((c, Slot::Hop(step)));
                }
                None => {
                    let shared = chain.factors.iter().fold(*key, |acc, f| {
                        MontgomeryPoint(acc).mul_clamped(**f).to_bytes()
                    });
                    plain.push((c, Zeroizing::new(shared)));
                }
            }
        }
        let us = EdwardsPoint::to_montgomery_batch(&points);
        for ((c, slot), u) in slots.iter().zip(us) {
            let Some(chain) = chains.get_mut(*c) else {
                continue;
            };
            match slot {
                Slot::Alpha => chain.alpha = u.to_bytes(),
                Slot::Hop(i) => chain.take_shared(*i, u.to_bytes()),
            }
        }
        for (c, shared) in plain {
            if let Some(chain) = chains.get_mut(c) {
                chain.take_shared(step, *shared);
            }
        }
        for p in points.iter_mut() {
            *p = EdwardsPoint::default();
        }
    }
    chains
        .iter_mut()
        .map(|chain| {
            if chain.route {
                Derived::Route(DerivedKeys {
                    alpha: chain.alpha,
                    expanded: std::mem::take(&mut chain.expanded),
                })
            } else {
                Derived::Exchange {
                    public: chain.alpha,
                    shared: std::mem::take(&mut chain.shared),
                }
            }
        })
        .collect()
}
