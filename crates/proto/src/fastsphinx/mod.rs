//! Sender-side Sphinx construction with a fast key derivation that produces
//! exactly the bytes sphinx-packet 0.6 produces (versions 258 and 259).
//!
//! # Why
//! sphinx-packet 0.6 derives hop `i`'s shared secret by replaying the whole
//! blinding chain: `s_i = X25519(b_{i-1}, … X25519(b_0, X25519(x, P_i)))`,
//! with `x` the initial secret and `b_j` hop `j`'s blinding factor (bytes
//! 224..256 of its expanded secret). That is `1 + 2 + … + n` variable-base
//! ladders: 10 for a 4-hop route, plus one fixed-base multiplication for alpha.
//!
//! # How
//! X25519 clamps every scalar to `c = 8·k` with `2^251 <= k < 2^252`, and on a
//! Montgomery x-line `X25519(a, X25519(b, u)) = u((c_a·c_b)·Q)` for a point `Q`
//! with x-coordinate `u` (the sign of `Q` does not matter for `u`). So
//! `s_i = u(K_i·P_i)` with the integer `K_i = c_x·c_{b_0}·…·c_{b_{i-1}}`.
//! When `P_i` is on the curve (group order `8ℓ`), `K_i·P_i` only depends on
//! `K_i mod 8ℓ`, and since `8 | K_i`,
//! `K_i·P_i = t_i·(8·P_i)` with `t_i = K_i/8 mod ℓ`. The accumulator starts at
//! `t_0 = c_x/8` (exact, `< ℓ`) and takes one scalar multiplication mod ℓ per
//! hop: `t_{i+1} = t_i·c_{b_i} mod ℓ`. Each hop then costs one scalar
//! multiplication of the fixed point `8·P_i`:
//! - a constant-time Edwards multiplication by `t_i` the first time a node key
//!   is seen, and
//! - a constant-time fixed-base multiplication with a per-node
//!   [`EdwardsBasepointTable`] (30 KiB) once the key has been used again.
//!   Node keys are fixed for a key rotation, so the table is built once per
//!   node per rotation and shared by every identity in the process through
//!   [`NodeKeyCache::global`] (bounded, least-recently-used eviction).
//!
//! The result is converted back to a Montgomery `u`, whose canonical encoding
//! is what X25519 returns (the identity maps to `u = 0` on both paths).
//! Keys whose `u` is not on the curve (it is then on the quadratic twist,
//! whose group order is different) take the plain chain for that hop, using
//! the clamped factors kept alongside the accumulator.
//!
//! The rest of the header (filler, per-hop routing blocks, MACs) and the
//! payload keys are built here from the expanded secrets, following the wire
//! format: AES-128-CTR keystreams with a zero IV (64-bit big-endian counter),
//! HMAC-SHA256 truncated to 16 bytes, HKDF-SHA256 (empty salt) expanding each
//! shared secret to 288 bytes, and the crate's own public
//! `Payload::encapsulate_message` for the Lioness layers. sphinx-packet 0.6
//! has no way to take precomputed keys (its header builder and key material
//! are private), which is why the header is built here.
//!
//! `tests/fast_derivation.rs` checks 10,000+ seeded random routes (1–5 hops,
//! both versions, valid, random, twist and low-order keys) against
//! `KeyMaterial::derive` and `SphinxPacketBuilder` byte for byte.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, OnceLock};

use curve25519_dalek_5::edwards::{EdwardsBasepointTable, EdwardsPoint};
use curve25519_dalek_5::montgomery::MontgomeryPoint;
use curve25519_dalek_5::scalar::{clamp_integer, Scalar};
use curve25519_dalek_5::traits::BasepointTable;
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::{Zeroize, Zeroizing};

use crate::crypto::aes128_ctr64;

mod batch;
pub mod lioness;

pub use batch::{derive_batch, Derivation, Derived};

/// Header length: alpha 32 + MAC 16 + routing information 300.
pub const HEADER_LEN: usize = 348;
/// Length of one hop's expanded shared secret.
pub const EXPANDED_LEN: usize = 288;
/// Largest route.
pub const MAX_HOPS: usize = 5;
/// Encrypted routing information length.
pub const ROUTING_INFO_LEN: usize = 300;
/// One hop's share of the routing information: meta info 44 + MAC 16.
const HOP_BLOCK: usize = 60;
/// Keystream length per hop (routing information plus one hop block).
const KEYSTREAM_LEN: usize = ROUTING_INFO_LEN + HOP_BLOCK;
/// Flag, version, destination 32, identifier 16.
const FINAL_META_LEN: usize = 52;
const FORWARD_FLAG: u8 = 1;
const FINAL_FLAG: u8 = 2;
const MAC_LEN: usize = 16;

/// The expanded-secret HKDF info string of sphinx-packet (the crate's public
/// constant, so both sides agree by construction).
const EXPAND_INFO: &[u8] = sphinx_packet::constants::EXPANDED_SHARED_SECRET_HKDF_INFO;

/// One hop's 288 expanded bytes: stream key 0..16, MAC key 16..32, payload
/// key 32..224 (its first 16 bytes are the 259 seed), blinding factor
/// 224..256, replay tag 256..288. Zeroed on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct Expanded(pub [u8; EXPANDED_LEN]);

impl fmt::Debug for Expanded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Expanded(..)")
    }
}

impl Drop for Expanded {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl Expanded {
    /// HKDF-SHA256 of a hop's shared secret.
    pub fn from_shared_secret(shared: &[u8; 32]) -> Self {
        let hk = Hkdf::<Sha256>::new(Some(b""), shared);
        let mut out = [0u8; EXPANDED_LEN];
        // 288 bytes is far below HKDF-SHA256's limit (8160): expand cannot
        // fail; an impossible failure would leave zeros, never panic.
        let _ = hk.expand(EXPAND_INFO, &mut out);
        Self(out)
    }

    /// AES-128-CTR key of the routing information.
    pub fn stream_key(&self) -> [u8; 16] {
        let mut k = [0u8; 16];
        k.copy_from_slice(&self.0[..16]);
        k
    }

    /// HMAC key of the header integrity MAC.
    pub fn mac_key(&self) -> &[u8] {
        &self.0[16..32]
    }

    /// The full 192-byte payload key (version 258).
    pub fn legacy_payload_key(&self) -> [u8; 192] {
        let mut k = [0u8; 192];
        k.copy_from_slice(&self.0[32..224]);
        k
    }

    /// The 16-byte payload key seed (version 259).
    pub fn payload_key_seed(&self) -> [u8; 16] {
        let mut k = [0u8; 16];
        k.copy_from_slice(&self.0[32..48]);
        k
    }

    /// The 32 blinding-factor bytes (clamped before use, as X25519 does).
    pub fn blinding_factor(&self) -> [u8; 32] {
        let mut k = [0u8; 32];
        k.copy_from_slice(&self.0[224..256]);
        k
    }

    /// The replay tag.
    pub fn replay_tag(&self) -> [u8; 32] {
        let mut k = [0u8; 32];
        k.copy_from_slice(&self.0[256..288]);
        k
    }

    fn keystream(&self) -> Zeroizing<[u8; KEYSTREAM_LEN]> {
        let mut ks = Zeroizing::new([0u8; KEYSTREAM_LEN]);
        aes128_ctr64(&self.stream_key(), &[0u8; 16], &mut ks[..]);
        ks
    }
}

/// What the cache knows about a node (or recipient) x25519 key.
pub struct NodePoint {
    /// `8·P` for a key on the curve; `None` for a key on the twist.
    cleared: Option<EdwardsPoint>,
    uses: AtomicU32,
    table: OnceLock<Box<EdwardsBasepointTable>>,
}

impl fmt::Debug for NodePoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodePoint")
            .field("on_curve", &self.cleared.is_some())
            .field("table", &self.table.get().is_some())
            .finish()
    }
}

impl NodePoint {
    fn new(key: &[u8; 32]) -> Self {
        Self {
            cleared: MontgomeryPoint(*key)
                .to_edwards(0)
                .map(|p| p.mul_by_cofactor()),
            uses: AtomicU32::new(0),
            table: OnceLock::new(),
        }
    }

    /// Whether the key is on the curve (the fast path applies).
    pub fn on_curve(&self) -> bool {
        self.cleared.is_some()
    }

    /// Whether its fixed-base table has been built.
    pub fn has_table(&self) -> bool {
        self.table.get().is_some()
    }

    /// `t·8P` (not yet converted to Montgomery): the table when built, else a
    /// variable-base multiplication; `None` for a key on the twist.
    fn mul_edwards(&self, t: &Scalar) -> Option<EdwardsPoint> {
        let cleared = self.cleared.as_ref()?;
        Some(match self.table.get() {
            Some(table) => table.as_ref() * t,
            None => cleared * t,
        })
    }

    /// `u(t·8P)` on its own (one field inversion).
    fn mul(&self, t: &Scalar) -> Option<[u8; 32]> {
        self.mul_edwards(t).map(|p| p.to_montgomery().to_bytes())
    }
}

struct CacheInner {
    map: HashMap<[u8; 32], (Arc<NodePoint>, u64)>,
    clock: u64,
}

/// A bounded cache of per-key precomputation, keyed by x25519 public key
/// bytes. Shared by every identity in a process ([`NodeKeyCache::global`]).
pub struct NodeKeyCache {
    inner: Mutex<CacheInner>,
    capacity: usize,
    table_after: u32,
    max_tables: usize,
    tables: AtomicUsize,
}

impl fmt::Debug for NodeKeyCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeKeyCache")
            .field("capacity", &self.capacity)
            .field("table_after", &self.table_after)
            .field("tables", &self.tables.load(Ordering::Relaxed))
            .finish()
    }
}

/// Keys remembered by the global cache (about 160 bytes each without a table).
pub const GLOBAL_CACHE_KEYS: usize = 4096;
/// Tables the global cache may hold at once (30 KiB each: 30 MiB at most).
pub const GLOBAL_CACHE_TABLES: usize = 1024;
/// A key gets its table on this use (building one costs about as much as
/// 20–40 multiplications, and node keys are used thousands of times).
pub const GLOBAL_TABLE_AFTER: u32 = 2;

static GLOBAL: LazyLock<NodeKeyCache> =
    LazyLock::new(|| NodeKeyCache::new(GLOBAL_CACHE_KEYS, GLOBAL_CACHE_TABLES, GLOBAL_TABLE_AFTER));

impl NodeKeyCache {
    /// A cache holding at most `capacity` keys and `max_tables` tables, which
    /// builds a key's table on its `table_after`-th use (0 or 1: at once;
    /// `u32::MAX`: never).
    pub fn new(capacity: usize, max_tables: usize, table_after: u32) -> Self {
        Self {
            inner: Mutex::new(CacheInner {
                map: HashMap::new(),
                clock: 0,
            }),
            capacity: capacity.max(1),
            table_after,
            max_tables,
            tables: AtomicUsize::new(0),
        }
    }

    /// The process-wide cache.
    pub fn global() -> &'static NodeKeyCache {
        &GLOBAL
    }

    /// Keys currently cached.
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    /// Whether no key is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Tables currently built.
    pub fn tables(&self) -> usize {
        self.tables.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CacheInner> {
        // A panic while holding the lock cannot leave the map inconsistent
        // (every update is a single insert/remove), so poison is ignored.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The precomputation for `key`, counting one use (and building its
    /// table when this use reaches the threshold).
    pub fn get(&self, key: &[u8; 32]) -> Arc<NodePoint> {
        let found = {
            let mut inner = self.lock();
            inner.clock += 1;
            let now = inner.clock;
            inner.map.get_mut(key).map(|(p, stamp)| {
                *stamp = now;
                p.clone()
            })
        };
        let point = match found {
            Some(p) => p,
            None => {
                // Decompressing costs a square root: do it outside the lock.
                let fresh = Arc::new(NodePoint::new(key));
                self.insert(*key, fresh)
            }
        };
        let uses = point.uses.fetch_add(1, Ordering::Relaxed).saturating_add(1);
        if uses == self.table_after.max(1) && point.cleared.is_some() {
            self.build_table(&point);
        }
        point
    }

    fn insert(&self, key: [u8; 32], fresh: Arc<NodePoint>) -> Arc<NodePoint> {
        let mut inner = self.lock();
        inner.clock += 1;
        let now = inner.clock;
        if let Some((p, stamp)) = inner.map.get_mut(&key) {
            // Another thread inserted it meanwhile.
            *stamp = now;
            return p.clone();
        }
        if inner.map.len() >= self.capacity {
            let oldest = inner
                .map
                .iter()
                .min_by_key(|(_, (_, stamp))| *stamp)
                .map(|(k, _)| *k);
            if let Some(k) = oldest {
                if let Some((evicted, _)) = inner.map.remove(&k) {
                    if evicted.has_table() {
                        self.tables.fetch_sub(1, Ordering::Relaxed);
                    }
                }
            }
        }
        inner.map.insert(key, (fresh.clone(), now));
        fresh
    }

    fn build_table(&self, point: &NodePoint) {
        let Some(cleared) = point.cleared.as_ref() else {
            return;
        };
        // Reserve a slot first so concurrent builders respect the bound.
        if self.tables.fetch_add(1, Ordering::Relaxed) >= self.max_tables {
            self.tables.fetch_sub(1, Ordering::Relaxed);
            return;
        }
        let mut built = false;
        point.table.get_or_init(|| {
            built = true;
            Box::new(EdwardsBasepointTable::create(cleared))
        });
        if !built {
            self.tables.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Drop every cached key (e.g. after a key rotation).
    pub fn clear(&self) {
        let mut inner = self.lock();
        inner.map.clear();
        self.tables.store(0, Ordering::Relaxed);
    }
}

/// The clamped scalar of X25519 divided by 8 (exact: the low 3 bits are
/// zero), i.e. `k` with `clamp(bytes) = 8·k`; `k < 2^252 < ℓ`.
fn clamped_over_8(bytes: &[u8; 32]) -> Scalar {
    let mut c = clamp_integer(*bytes);
    let mut k = [0u8; 32];
    for i in 0..32 {
        let next = if i + 1 < 32 { c[i + 1] } else { 0 };
        k[i] = (c[i] >> 3) | (next << 5);
    }
    c.zeroize();
    let s = Scalar::from_bytes_mod_order(k);
    k.zeroize();
    s
}

/// X25519 (`StaticSecret::diffie_hellman`), byte for byte, using the cache's
/// precomputation for `public` when it is on the curve.
pub fn x25519(cache: &NodeKeyCache, secret: &[u8; 32], public: &[u8; 32]) -> [u8; 32] {
    let point = cache.get(public);
    let mut t = clamped_over_8(secret);
    let out = point
        .mul(&t)
        .unwrap_or_else(|| MontgomeryPoint(*public).mul_clamped(*secret).to_bytes());
    t.zeroize();
    out
}

/// Alpha and the expanded secret of every hop, as
/// `sphinx_packet::header::keys::KeyMaterial::derive` computes them.
#[derive(Debug)]
pub struct DerivedKeys {
    /// The header's group element: `X25519(x, 9)`.
    pub alpha: [u8; 32],
    /// One per hop, in route order.
    pub expanded: Vec<Expanded>,
}

/// Derive the keys of a route from the initial secret `x` and the hops'
/// x25519 keys (see the module documentation for the method).
pub fn derive_keys(
    cache: &NodeKeyCache,
    initial_secret: &[u8; 32],
    keys: &[[u8; 32]],
) -> DerivedKeys {
    let job = Derivation::Route {
        secret: initial_secret,
        keys,
    };
    match derive_batch(cache, &[job]).pop() {
        Some(Derived::Route(k)) => k,
        // derive_batch returns one result per job, of the job's kind.
        _ => DerivedKeys {
            alpha: [0u8; 32],
            expanded: Vec::new(),
        },
    }
}

/// The plain derivation (sphinx-packet 0.6's method, written out): the full
/// blinding chain per hop. For benchmarks and cross-checks.
pub fn derive_keys_plain(initial_secret: &[u8; 32], keys: &[[u8; 32]]) -> DerivedKeys {
    let alpha = MontgomeryPoint::mul_base_clamped(*initial_secret).to_bytes();
    let mut expanded: Vec<Expanded> = Vec::with_capacity(keys.len());
    let mut factors: Vec<Zeroizing<[u8; 32]>> = vec![Zeroizing::new(*initial_secret)];
    for (i, key) in keys.iter().enumerate() {
        let shared = factors.iter().fold(*key, |acc, f| {
            MontgomeryPoint(acc).mul_clamped(**f).to_bytes()
        });
        let e = Expanded::from_shared_secret(&shared);
        if i + 1 < keys.len() {
            factors.push(Zeroizing::new(e.blinding_factor()));
        }
        expanded.push(e);
    }
    DerivedKeys { alpha, expanded }
}

/// Why a header could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// 1 to 5 hops.
    #[error("a sphinx route needs 1 to {MAX_HOPS} hops, got {0}")]
    RouteLength(usize),
    /// Keys, addresses and delays must have one entry per hop.
    #[error("{keys} keys, {addresses} addresses and {delays} delays do not match")]
    Mismatch {
        /// Expanded secrets given.
        keys: usize,
        /// Addresses given.
        addresses: usize,
        /// Delays given.
        delays: usize,
    },
    /// The final hop's padding has a fixed length for a route length.
    #[error("final padding must be {expected} bytes, got {got}")]
    Padding {
        /// Required length.
        expected: usize,
        /// Given length.
        got: usize,
    },
}

/// Length of the final hop's random padding for a route of `hops` hops.
pub fn final_padding_len(hops: usize) -> usize {
    ROUTING_INFO_LEN
        .saturating_sub(HOP_BLOCK * hops.saturating_sub(1))
        .saturating_sub(FINAL_META_LEN)
}

fn mac16(key: &[u8], data: &[u8]) -> [u8; MAC_LEN] {
    let mut out = [0u8; MAC_LEN];
    // HMAC takes keys of any length, so this always succeeds.
    if let Ok(mut m) = <Hmac<Sha256> as Mac>::new_from_slice(key) {
        m.update(data);
        out.copy_from_slice(&m.finalize().into_bytes()[..MAC_LEN]);
    }
    out
}

/// Build the 348-byte header from derived keys: `addresses[i]` is hop `i`'s
/// 32-byte address field, `delays[i]` the nanoseconds hop `i` holds the
/// packet (the last is not embedded), the final hop's block carries
/// `destination`, `identifier` and `padding` (`final_padding_len(n)` bytes).
#[allow(clippy::too_many_arguments)]
pub fn build_header(
    keys: &DerivedKeys,
    addresses: &[[u8; 32]],
    delays: &[u64],
    destination: &[u8; 32],
    identifier: &[u8; 16],
    version: u16,
    padding: &[u8],
) -> Result<[u8; HEADER_LEN], HeaderError> {
    let n = keys.expanded.len();
    if n == 0 || n > MAX_HOPS {
        return Err(HeaderError::RouteLength(n));
    }
    if addresses.len() != n || delays.len() != n {
        return Err(HeaderError::Mismatch {
            keys: n,
            addresses: addresses.len(),
            delays: delays.len(),
        });
    }
    let pad_len = final_padding_len(n);
    if padding.len() != pad_len {
        return Err(HeaderError::Padding {
            expected: pad_len,
            got: padding.len(),
        });
    }
    let vb = version.to_be_bytes();
    let version_bytes = [0u8, vb[0], vb[1]];
    let streams: Vec<Zeroizing<[u8; KEYSTREAM_LEN]>> =
        keys.expanded.iter().map(Expanded::keystream).collect();

    // Filler: what hops 0..n-2 append (and encrypt) as they unwrap.
    let filler_len = HOP_BLOCK * (n - 1);
    let mut filler = [0u8; HOP_BLOCK * (MAX_HOPS - 1)];
    for (i, ks) in streams.iter().take(n - 1).enumerate() {
        let len = HOP_BLOCK * (i + 1);
        for (f, k) in filler[..len].iter_mut().zip(&ks[KEYSTREAM_LEN - len..]) {
            *f ^= k;
        }
    }

    // The final hop's block.
    let final_len = ROUTING_INFO_LEN - filler_len;
    let mut beta = [0u8; ROUTING_INFO_LEN];
    beta[0] = FINAL_FLAG;
    beta[1..4].copy_from_slice(&version_bytes);
    beta[4..36].copy_from_slice(destination);
    beta[36..52].copy_from_slice(identifier);
    beta[52..final_len].copy_from_slice(padding);
    let last = &streams[n - 1];
    for (b, k) in beta[..final_len].iter_mut().zip(last.iter()) {
        *b ^= k;
    }
    beta[final_len..].copy_from_slice(&filler[..filler_len]);
    let mut mac = mac16(keys.expanded[n - 1].mac_key(), &beta);

    // Forward hops, from the inside out.
    for i in (0..n - 1).rev() {
        let mut next = [0u8; ROUTING_INFO_LEN];
        next[0] = FORWARD_FLAG;
        next[1..4].copy_from_slice(&version_bytes);
        next[4..36].copy_from_slice(&addresses[i + 1]);
        next[36..44].copy_from_slice(&delays[i].to_be_bytes());
        next[44..60].copy_from_slice(&mac);
        next[60..].copy_from_slice(&beta[..ROUTING_INFO_LEN - HOP_BLOCK]);
        for (b, k) in next.iter_mut().zip(streams[i].iter()) {
            *b ^= k;
        }
        mac = mac16(keys.expanded[i].mac_key(), &next);
        beta = next;
    }

    let mut header = [0u8; HEADER_LEN];
    header[..32].copy_from_slice(&keys.alpha);
    header[32..48].copy_from_slice(&mac);
    header[48..].copy_from_slice(&beta);
    Ok(header)
}

/// The payload keys of a packet or SURB: the 192-byte keys for 258 (and the
/// legacy versions 1 and 257), keys derived from the 16-byte seeds for 259
/// and anything newer.
pub fn payload_keys(keys: &DerivedKeys, version: u16) -> Vec<[u8; 192]> {
    if matches!(version, 1 | 257 | 258) {
        keys.expanded
            .iter()
            .map(Expanded::legacy_payload_key)
            .collect()
    } else {
        keys.expanded
            .iter()
            .map(|e| sphinx_packet::payload::key::derive_payload_key(&e.payload_key_seed()))
            .collect()
    }
}
