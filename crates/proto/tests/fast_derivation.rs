//! The fast sender derivation (`nymd_proto::fastsphinx`) against
//! sphinx-packet 0.6's own code, byte for byte, on 10,000+ seeded random routes.
//!
//! For every route (1–5 hops, versions 258 and 259, a fresh initial secret):
//! 1. keys: alpha and all 288 bytes of every hop's expanded secret equal
//!    `KeyMaterial::derive` (the crate type only exposes its bytes through
//!    `Debug` and `replay_tag`, so both are compared);
//! 2. whole packet: the crate builds a packet with `SphinxPacketBuilder` and
//!    the same initial secret. Its only other input, the final hop's random
//!    padding, is drawn from the OS inside the crate; we read it back by
//!    peeling the routing layers with our keys, build our header with it and
//!    require all 348 header bytes and the whole payload to be equal. (Wrong
//!    keys could not reproduce the bytes: every layer's keystream, MAC and the
//!    payload's Lioness layers depend on them.)
//! 3. every 8th route also builds a reply SURB through `ReplySurb::build` and
//!    compares it with `SURB::new(..).to_bytes()` for the same secret in the
//!    same way.
//!
//! 4. the payload of every route is also built with our own Lioness
//!    (`fastsphinx::lioness`, SIMD ChaCha20 and BLAKE2b) and compared with
//!    the crate's; a separate test peels random payloads both ways.
//!
//! Further tests: batches of routes and key exchanges derived together
//! (`derive_batch`) against the one-at-a-time derivations, and a packet with
//! its SURB-ACK built together (`acked::prepare_acked`) against the SURB-ACK
//! and the packet built one after the other from the same RNG.
//!
//! Node keys mix what a real sender meets and what it must survive: a fixed
//! pool of valid node keys (so per-node tables get built and used), fresh
//! valid keys, uniformly random 32-byte strings (half of them are on the
//! twist and take the fallback; the others carry random torsion) and
//! low-order / edge encodings. Three caches cover table policies: tables at
//! once, never, and the global default.
#![allow(clippy::unwrap_used)]

use nymd_proto::crypto::aes128_ctr64;
use nymd_proto::fastsphinx::lioness::{encapsulate, lioness_decrypt, lioness_encrypt};
use nymd_proto::fastsphinx::{
    build_header, derive_batch, derive_keys, derive_keys_plain, final_padding_len, payload_keys,
    x25519, Derivation, Derived, DerivedKeys, NodeKeyCache,
};
use nymd_proto::keys::{X25519Public, X25519Secret};
use nymd_proto::replies::ReplySurb;
use nymd_proto::{NodeAddress, SphinxVersion};
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use sphinx_packet::header::delays::Delay;
use sphinx_packet::header::keys::KeyMaterial;
use sphinx_packet::payload::Payload;
use sphinx_packet::route::{Destination, DestinationAddressBytes, Node, NodeAddressBytes};
use sphinx_packet::version::Version;
use sphinx_packet::{SURBMaterial, SphinxPacketBuilder, SURB};

const ROUTES: usize = 10_240;

/// Edge encodings: 0, 1, p-1 (on the twist), p, p+1, 2^255-1, the order-8
/// points' u-coordinates and a key with the (ignored) top bit set.
fn special_keys() -> Vec<[u8; 32]> {
    let mut v = Vec::new();
    let mut zero = [0u8; 32];
    v.push(zero);
    zero[0] = 1;
    v.push(zero);
    // p - 1 = 2^255 - 20
    let mut pm1 = [0xffu8; 32];
    pm1[0] = 0xec;
    pm1[31] = 0x7f;
    v.push(pm1);
    let mut p = pm1;
    p[0] = 0xed;
    v.push(p);
    let mut p1 = pm1;
    p1[0] = 0xee;
    v.push(p1);
    let mut all = [0xffu8; 32];
    all[31] = 0x7f;
    v.push(all);
    v.push([0xffu8; 32]);
    // u-coordinates of the points of order 8 (RFC 7748 / libsodium blocklist).
    for hex in [
        "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
        "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
    ] {
        let b = hex::decode(hex).unwrap();
        let mut k = [0u8; 32];
        k.copy_from_slice(&b);
        v.push(k);
        let mut hi = k;
        hi[31] |= 0x80;
        v.push(hi);
    }
    v
}

fn keystream(key: &[u8; 16]) -> [u8; 360] {
    let mut ks = [0u8; 360];
    aes128_ctr64(key, &[0u8; 16], &mut ks);
    ks
}

/// Peel the routing layers of `header` with `keys` and return the final
/// hop's padding bytes.
fn recover_final_padding(header: &[u8], keys: &DerivedKeys) -> Vec<u8> {
    let n = keys.expanded.len();
    let mut beta = header[48..348].to_vec();
    for e in keys.expanded.iter().take(n - 1) {
        let mut padded = beta.clone();
        padded.extend_from_slice(&[0u8; 60]);
        for (b, k) in padded.iter_mut().zip(keystream(&e.stream_key()).iter()) {
            *b ^= k;
        }
        beta = padded[60..].to_vec();
    }
    let ks = keystream(&keys.expanded[n - 1].stream_key());
    let final_len = 300 - 60 * (n - 1);
    let plain: Vec<u8> = beta[..final_len]
        .iter()
        .zip(ks.iter())
        .map(|(b, k)| b ^ k)
        .collect();
    assert_eq!(plain[0], 2, "final flag");
    plain[52..].to_vec()
}

fn expanded_debug(bytes: &[u8; 288]) -> String {
    format!("ExpandedSharedSecret({bytes:?})")
}

fn assert_keys_equal(ours: &DerivedKeys, theirs: &KeyMaterial, ctx: &str) {
    assert_eq!(
        ours.alpha,
        *theirs.initial_shared_secret.as_bytes(),
        "alpha {ctx}"
    );
    assert_eq!(ours.expanded.len(), theirs.expanded_shared_secrets.len());
    for (i, (o, t)) in ours
        .expanded
        .iter()
        .zip(&theirs.expanded_shared_secrets)
        .enumerate()
    {
        assert_eq!(o.replay_tag(), *t.replay_tag(), "replay tag hop {i} {ctx}");
        assert_eq!(
            expanded_debug(&o.0),
            format!("{t:?}"),
            "expanded secret hop {i} {ctx}"
        );
    }
}

#[test]
fn fast_derivation_is_byte_identical_to_sphinx_packet() {
    let mut rng = ChaCha20Rng::seed_from_u64(0x6e79_6d64_2d70_6572);
    let pool: Vec<[u8; 32]> = (0..24)
        .map(|_| X25519Public::from(&X25519Secret::random_from_rng(&mut rng)).to_bytes())
        .collect();
    let specials = special_keys();
    let eager = NodeKeyCache::new(4096, 4096, 1);
    let never = NodeKeyCache::new(4096, 0, u32::MAX);
    // A small cache also exercises eviction.
    let small = NodeKeyCache::new(16, 8, 2);
    let caches = [&eager, &never, &small, NodeKeyCache::global()];

    let mut twist_hops = 0usize;
    let mut surbs = 0usize;
    for i in 0..ROUTES {
        let n = rng.gen_range(1..=5usize);
        let version: u16 = if rng.gen_bool(0.5) { 258 } else { 259 };
        let mut keys = Vec::with_capacity(n);
        for _ in 0..n {
            let roll = rng.gen_range(0..100);
            let key = if roll < 60 {
                pool[rng.gen_range(0..pool.len())]
            } else if roll < 75 {
                X25519Public::from(&X25519Secret::random_from_rng(&mut rng)).to_bytes()
            } else if roll < 97 {
                let mut k = [0u8; 32];
                rng.fill_bytes(&mut k);
                k
            } else {
                specials[rng.gen_range(0..specials.len())]
            };
            if curve25519_dalek::MontgomeryPoint(key)
                .to_edwards(0)
                .is_none()
            {
                twist_hops += 1;
            }
            keys.push(key);
        }
        let addresses: Vec<[u8; 32]> = (0..n)
            .map(|_| {
                let ip = std::net::Ipv4Addr::from(rng.gen::<u32>());
                NodeAddress(std::net::SocketAddr::from((ip, rng.gen::<u16>())))
                    .to_padded::<32>()
                    .unwrap()
            })
            .collect();
        let delays: Vec<u64> = (0..n).map(|_| rng.gen()).collect();
        let mut dest = [0u8; 32];
        rng.fill_bytes(&mut dest);
        let mut identifier = [0u8; 16];
        if rng.gen_bool(0.5) {
            rng.fill_bytes(&mut identifier);
        }
        let mut x = [0u8; 32];
        rng.fill_bytes(&mut x);
        let ctx = format!("route {i}: {n} hops, version {version}");

        let nodes: Vec<Node> = keys
            .iter()
            .zip(&addresses)
            .map(|(k, a)| Node::new(NodeAddressBytes::from_bytes(*a), X25519Public::from(*k)))
            .collect();
        let destination = Destination::new(DestinationAddressBytes::from_bytes(dest), identifier);
        let sphinx_delays: Vec<Delay> = delays.iter().map(|d| Delay::new_from_nanos(*d)).collect();

        // 1. Keys.
        let cache = caches[i % caches.len()];
        let ours = derive_keys(cache, &x, &keys);
        let theirs = KeyMaterial::derive(&nodes, &X25519Secret::from(x));
        assert_keys_equal(&ours, &theirs, &ctx);
        if i % 16 == 0 {
            assert_keys_equal(&derive_keys_plain(&x, &keys), &theirs, &ctx);
        }

        // 2. Whole packet.
        let payload_size = if i % 32 == 0 {
            2048 + 17
        } else {
            rng.gen_range(33..=400usize)
        };
        let msg_len = rng.gen_range(0..=payload_size - 17);
        let mut msg = vec![0u8; msg_len];
        rng.fill_bytes(&mut msg);
        let packet = SphinxPacketBuilder::new()
            .with_version(Version::new(version))
            .with_payload_size(payload_size)
            .with_initial_secret(&X25519Secret::from(x))
            .build_packet(&msg, &nodes, &destination, &sphinx_delays)
            .unwrap()
            .to_bytes();
        let padding = recover_final_padding(&packet, &ours);
        assert_eq!(padding.len(), final_padding_len(n));
        let header = build_header(
            &ours,
            &addresses,
            &delays,
            &dest,
            &identifier,
            version,
            &padding,
        )
        .unwrap();
        assert_eq!(header[..], packet[..348], "header bytes {ctx}");
        let payload =
            Payload::encapsulate_message(&msg, &payload_keys(&ours, version), payload_size)
                .unwrap();
        assert_eq!(payload.as_bytes(), &packet[348..], "payload bytes {ctx}");
        let ours_payload = encapsulate(&msg, &payload_keys(&ours, version), payload_size).unwrap();
        assert_eq!(ours_payload, &packet[348..], "our Lioness payload {ctx}");

        // 3. Reply SURBs through the public builder.
        if i % 8 == 0 {
            surbs += 1;
            let sv = if version == 258 {
                SphinxVersion::Legacy258
            } else {
                SphinxVersion::Seeds259
            };
            let mut seed = [0u8; 32];
            rng.fill_bytes(&mut seed);
            let mut r_ours = ChaCha20Rng::from_seed(seed);
            let mut r_secret = ChaCha20Rng::from_seed(seed);
            let mut sx = [0u8; 32];
            r_secret.fill_bytes(&mut sx);
            let identity = ed25519_dalek::SigningKey::from_bytes(&dest).verifying_key();
            let surb_dest = Destination::new(
                DestinationAddressBytes::from_bytes(identity.to_bytes()),
                [0u8; 16],
            );
            let ours_surb =
                ReplySurb::build(&mut r_ours, &nodes, &identity, &sphinx_delays, sv).unwrap();
            let ours_bytes = ours_surb.to_bytes()[16..].to_vec();
            let theirs_surb = SURB::new(
                X25519Secret::from(sx),
                SURBMaterial::new(nodes.clone(), sphinx_delays.clone(), surb_dest)
                    .with_version(Version::new(version)),
            )
            .unwrap()
            .to_bytes();
            assert_eq!(ours_bytes.len(), theirs_surb.len(), "SURB length {ctx}");
            assert_eq!(ours_bytes[348..], theirs_surb[348..], "SURB keys {ctx}");
            let surb_keys = derive_keys_plain(&sx, &keys);
            for (bytes, what) in [(&ours_bytes, "ours"), (&theirs_surb, "theirs")] {
                let pad = recover_final_padding(bytes, &surb_keys);
                let rebuilt = build_header(
                    &surb_keys,
                    &addresses,
                    &delays,
                    &identity.to_bytes(),
                    &[0u8; 16],
                    version,
                    &pad,
                )
                .unwrap();
                assert_eq!(rebuilt[..], bytes[..348], "SURB header ({what}) {ctx}");
            }
        }
    }
    assert!(
        twist_hops > 500,
        "twist fallback exercised {twist_hops} times"
    );
    assert!(surbs > 1000);
    assert!(eager.tables() > 0);
    assert_eq!(never.tables(), 0);
    assert!(small.len() <= 16);
    // The pool's keys got tables in the default cache too.
    assert!(pool
        .iter()
        .any(|p| NodeKeyCache::global().get(p).has_table()));
}

#[test]
fn fast_x25519_is_byte_identical() {
    let mut rng = ChaCha20Rng::seed_from_u64(42);
    let eager = NodeKeyCache::new(64, 64, 1);
    let fixed: Vec<[u8; 32]> = (0..4)
        .map(|_| X25519Public::from(&X25519Secret::random_from_rng(&mut rng)).to_bytes())
        .collect();
    let specials = special_keys();
    for i in 0..4000 {
        let mut s = [0u8; 32];
        rng.fill_bytes(&mut s);
        let public = match i % 4 {
            0 | 1 => fixed[i % fixed.len()],
            2 => {
                let mut k = [0u8; 32];
                rng.fill_bytes(&mut k);
                k
            }
            _ => specials[i % specials.len()],
        };
        let expected = X25519Secret::from(s)
            .diffie_hellman(&X25519Public::from(public))
            .to_bytes();
        assert_eq!(x25519(&eager, &s, &public), expected, "case {i}");
        assert_eq!(
            x25519(NodeKeyCache::global(), &s, &public),
            expected,
            "case {i}"
        );
    }
}

/// A node key of the kinds the route test mixes: pool, fresh, random bytes
/// (half on the twist), edge encodings.
fn random_key(rng: &mut ChaCha20Rng, pool: &[[u8; 32]], specials: &[[u8; 32]]) -> [u8; 32] {
    let roll = rng.gen_range(0..100);
    if roll < 60 {
        pool[rng.gen_range(0..pool.len())]
    } else if roll < 75 {
        X25519Public::from(&X25519Secret::random_from_rng(&mut *rng)).to_bytes()
    } else if roll < 95 {
        let mut k = [0u8; 32];
        rng.fill_bytes(&mut k);
        k
    } else {
        specials[rng.gen_range(0..specials.len())]
    }
}

#[test]
fn batched_derivation_is_byte_identical() {
    let mut rng = ChaCha20Rng::seed_from_u64(0xba7c_4ed0);
    let pool: Vec<[u8; 32]> = (0..16)
        .map(|_| X25519Public::from(&X25519Secret::random_from_rng(&mut rng)).to_bytes())
        .collect();
    let specials = special_keys();
    let eager = NodeKeyCache::new(4096, 4096, 1);
    let never = NodeKeyCache::new(4096, 0, u32::MAX);
    let caches = [&eager, &never, NodeKeyCache::global()];
    let mut exchanges = 0usize;
    for b in 0..1_500usize {
        // 1 to 4 jobs; routes of 1 to 5 hops (different lengths in one batch).
        let jobs = rng.gen_range(1..=4usize);
        let mut secrets: Vec<[u8; 32]> = Vec::new();
        let mut keys: Vec<Vec<[u8; 32]>> = Vec::new();
        let mut is_route: Vec<bool> = Vec::new();
        for _ in 0..jobs {
            let mut x = [0u8; 32];
            rng.fill_bytes(&mut x);
            secrets.push(x);
            let route = rng.gen_bool(0.7);
            let n = if route { rng.gen_range(1..=5usize) } else { 1 };
            keys.push(
                (0..n)
                    .map(|_| random_key(&mut rng, &pool, &specials))
                    .collect(),
            );
            is_route.push(route);
        }
        let batch: Vec<Derivation<'_>> = (0..jobs)
            .map(|j| {
                if is_route[j] {
                    Derivation::Route {
                        secret: &secrets[j],
                        keys: &keys[j],
                    }
                } else {
                    Derivation::Exchange {
                        secret: &secrets[j],
                        public: &keys[j][0],
                    }
                }
            })
            .collect();
        let out = derive_batch(caches[b % caches.len()], &batch);
        assert_eq!(out.len(), jobs, "batch {b}");
        for (j, got) in out.iter().enumerate() {
            let ctx = format!("batch {b} job {j}");
            match got {
                Derived::Route(k) => {
                    assert!(is_route[j], "{ctx}: kind");
                    let plain = derive_keys_plain(&secrets[j], &keys[j]);
                    assert_eq!(k.alpha, plain.alpha, "{ctx}: alpha");
                    assert_eq!(k.expanded, plain.expanded, "{ctx}: expanded secrets");
                }
                Derived::Exchange { public, shared } => {
                    assert!(!is_route[j], "{ctx}: kind");
                    exchanges += 1;
                    let secret = X25519Secret::from(secrets[j]);
                    assert_eq!(
                        *public,
                        X25519Public::from(&secret).to_bytes(),
                        "{ctx}: public"
                    );
                    let expected = secret.diffie_hellman(&X25519Public::from(keys[j][0]));
                    assert_eq!(**shared, expected.to_bytes(), "{ctx}: shared secret");
                }
            }
        }
    }
    assert!(exchanges > 500, "{exchanges} exchanges");
}

#[test]
fn an_exchange_with_our_own_key_is_byte_identical() {
    // Derivation::OwnExchange (fixed base, product of both clamped secrets)
    // against StaticSecret::diffie_hellman with the pair's public key, for
    // random and edge secrets on both sides, alone and batched with routes
    // and ordinary exchanges.
    let mut rng = ChaCha20Rng::seed_from_u64(0x0e4e_c4a6);
    let mut edges: Vec<[u8; 32]> = vec![[0u8; 32], [0xff; 32], [1u8; 32], [0x80; 32]];
    let mut low = [0u8; 32];
    low[0] = 8;
    edges.push(low);
    let pool: Vec<[u8; 32]> = (0..8)
        .map(|_| X25519Public::from(&X25519Secret::random_from_rng(&mut rng)).to_bytes())
        .collect();
    let specials = special_keys();
    let cache = NodeKeyCache::new(4096, 4096, 1);
    for b in 0..600usize {
        let pick = |rng: &mut ChaCha20Rng| -> [u8; 32] {
            if rng.gen_bool(0.1) {
                edges[rng.gen_range(0..edges.len())]
            } else {
                rng.gen()
            }
        };
        let secret = pick(&mut rng);
        let own_secret = pick(&mut rng);
        let own_public = X25519Public::from(&X25519Secret::from(own_secret)).to_bytes();
        let route_secret: [u8; 32] = rng.gen();
        let route: Vec<[u8; 32]> = (0..rng.gen_range(1..=5usize))
            .map(|_| random_key(&mut rng, &pool, &specials))
            .collect();
        let own = Derivation::OwnExchange {
            secret: &secret,
            own_secret: &own_secret,
            own_public: &own_public,
        };
        let batch = match b % 3 {
            0 => vec![own],
            1 => vec![
                Derivation::Route {
                    secret: &route_secret,
                    keys: &route,
                },
                own,
            ],
            _ => vec![
                own,
                Derivation::Exchange {
                    secret: &route_secret,
                    public: &route[0],
                },
            ],
        };
        let out = derive_batch(&cache, &batch);
        assert_eq!(out.len(), batch.len(), "batch {b}");
        let at = usize::from(b % 3 == 1);
        let Derived::Exchange { public, shared } = &out[at] else {
            panic!("batch {b}: kind");
        };
        let ours = X25519Secret::from(secret);
        assert_eq!(
            *public,
            X25519Public::from(&ours).to_bytes(),
            "batch {b}: public"
        );
        let expected = ours.diffie_hellman(&X25519Public::from(own_public));
        assert_eq!(**shared, expected.to_bytes(), "batch {b}: shared secret");
        // The other job is unaffected.
        let Some(other) = out.get(1 - at).filter(|_| out.len() == 2) else {
            continue;
        };
        match (other, b % 3) {
            (Derived::Route(k), 1) => {
                let plain = derive_keys_plain(&route_secret, &route);
                assert_eq!(k.expanded, plain.expanded, "batch {b}: route");
            }
            (Derived::Exchange { shared, .. }, 2) => {
                let expected =
                    X25519Secret::from(route_secret).diffie_hellman(&X25519Public::from(route[0]));
                assert_eq!(**shared, expected.to_bytes(), "batch {b}: exchange");
            }
            _ => panic!("batch {b}: kinds"),
        }
    }
}

#[test]
fn our_lioness_matches_the_crates_both_ways() {
    let mut rng = ChaCha20Rng::seed_from_u64(0x110e55);
    for i in 0..400 {
        let mut key = [0u8; 192];
        rng.fill_bytes(&mut key);
        let len = if i % 4 == 0 {
            2413 - 348
        } else {
            rng.gen_range(33..=5000usize)
        };
        let mut block = vec![0u8; len];
        rng.fill_bytes(&mut block);
        // The crate's decrypt (a payload's unwrap) of our encryption gives
        // back the block, and ours of its encryption too.
        let mut ours = block.clone();
        lioness_encrypt(&key, &mut ours).unwrap();
        let theirs = Payload::from_bytes(&ours).unwrap().unwrap(key).unwrap();
        assert_eq!(theirs.as_bytes(), &block[..], "case {i}: crate peels ours");
        let mut back = ours.clone();
        lioness_decrypt(&key, &mut back).unwrap();
        assert_eq!(back, block, "case {i}: round trip");
        // One-layer payloads: ours and the crate's, byte for byte.
        let payload_size = len.max(49);
        let msg_len = rng.gen_range(0..=payload_size - 17);
        let msg = &block[..msg_len.min(block.len())];
        let crate_payload = Payload::encapsulate_message(msg, &[key], payload_size).unwrap();
        assert_eq!(
            encapsulate(msg, &[key], payload_size).unwrap(),
            crate_payload.as_bytes(),
            "case {i}: one layer"
        );
    }
    // Too short or too long: errors, not panics.
    assert!(lioness_encrypt(&[0u8; 192], &mut [0u8; 32]).is_err());
    assert!(encapsulate(&[0u8; 100], &[[0u8; 192]], 116).is_err());
    assert!(encapsulate(&[0u8; 99], &[[0u8; 192]], 116).is_ok());
}

mod acked {
    use super::*;
    use nymd_proto::ack::build_surb_ack;
    use nymd_proto::acked::{prepare_acked, prepare_acked_many, AckSpec, PacketSpec};
    use nymd_proto::address::Recipient;
    use nymd_proto::keys::{AckKey, EncryptionKeyPair, IdentityKeyPair};
    use nymd_proto::params::{FragmentId, KeyRotation, PacketSize};
    use nymd_proto::payload::{prepare_fragment_keyed, PreparedPacket};
    use nymd_proto::sphinx::RouteHop;
    use std::time::Duration;

    /// One random packet to build: sender, recipient, routes, fragment.
    struct Case {
        own: [u8; 32],
        /// The recipient's key pair (as if the packet were to ourselves).
        enc: EncryptionKeyPair,
        recipient: Recipient,
        ack_key: AckKey,
        ack_route: Vec<RouteHop>,
        route: Vec<RouteHop>,
        version: SphinxVersion,
        fragment: Vec<u8>,
        id: FragmentId,
        mean: Duration,
    }

    impl Case {
        fn random(rng: &mut ChaCha20Rng, nodes: &[RouteHop], i: u64) -> Case {
            let own = IdentityKeyPair::generate(rng).public();
            let enc = EncryptionKeyPair::generate(rng);
            let gateway = IdentityKeyPair::generate(rng).public();
            let recipient = Recipient::new(own, enc.public(), gateway);
            let ack_key = AckKey::generate(rng);
            let mut pick = || -> Vec<RouteHop> {
                (0..4)
                    .map(|_| nodes[rng.gen_range(0..nodes.len())])
                    .collect()
            };
            let (ack_route, route) = (pick(), pick());
            let version = if i.is_multiple_of(2) {
                SphinxVersion::Legacy258
            } else {
                SphinxVersion::Seeds259
            };
            let size = [PacketSize::Regular, PacketSize::Extended8][(i % 2) as usize];
            let mut fragment = vec![0u8; size.fragment_capacity()];
            rng.fill_bytes(&mut fragment);
            let id = FragmentId::from_bytes({
                let mut b: [u8; 5] = rng.gen();
                b[0] &= 0x7f;
                b
            });
            let mean = Duration::from_millis(rng.gen_range(0..100));
            Case {
                own: own.to_bytes(),
                enc,
                recipient,
                ack_key,
                ack_route,
                route,
                version,
                fragment,
                id,
                mean,
            }
        }

        fn specs(&self) -> (AckSpec<'_>, PacketSpec<'_>) {
            self.specs_with(None)
        }

        fn specs_with<'s>(
            &'s self,
            own_keys: Option<&'s EncryptionKeyPair>,
        ) -> (AckSpec<'s>, PacketSpec<'s>) {
            (
                AckSpec {
                    version: self.version,
                    key: &self.ack_key,
                    id: self.id,
                    route: &self.ack_route,
                    own_identity: &self.own,
                    mean: self.mean,
                },
                PacketSpec {
                    version: self.version,
                    fragment: &self.fragment,
                    recipient: &self.recipient,
                    route: &self.route,
                    mean: self.mean,
                    key_rotation: KeyRotation::Even,
                    own_keys,
                },
            )
        }

        /// The SURB-ACK, then the packet, one after the other.
        fn sequential(&self, rng: &mut ChaCha20Rng) -> (PreparedPacket, [u8; 32]) {
            let surb_ack = build_surb_ack(
                rng,
                self.version,
                &self.ack_key,
                self.id,
                &self.ack_route,
                &self.own,
                self.mean,
            )
            .unwrap();
            prepare_fragment_keyed(
                rng,
                self.version,
                &self.fragment,
                &self.recipient,
                &self.route,
                &surb_ack,
                self.mean,
                KeyRotation::Even,
            )
            .unwrap()
        }
    }

    fn nodes(rng: &mut ChaCha20Rng) -> Vec<RouteHop> {
        (0..6)
            .map(|_| {
                let ip = std::net::Ipv4Addr::from(rng.gen::<u32>());
                RouteHop {
                    address: NodeAddress(std::net::SocketAddr::from((ip, rng.gen::<u16>()))),
                    key: X25519Public::from(&X25519Secret::random_from_rng(&mut *rng)),
                }
            })
            .collect()
    }

    #[test]
    fn a_packet_built_with_its_surb_ack_is_byte_identical_to_one_built_after_it() {
        let mut rng = ChaCha20Rng::seed_from_u64(0xac4ed);
        let nodes = nodes(&mut rng);
        for i in 0..64u64 {
            let case = Case::random(&mut rng, &nodes, i);
            let seed: [u8; 32] = rng.gen();
            let mut one = ChaCha20Rng::from_seed(seed);
            let (sequential, eph) = case.sequential(&mut one);
            let mut two = ChaCha20Rng::from_seed(seed);
            let (ack, packet) = case.specs();
            let (together, eph2) = prepare_acked(&mut two, &ack, &packet).unwrap();
            assert_eq!(together, sequential, "case {i}");
            assert_eq!(eph2, eph, "case {i}: marker");
            // Both drew the same amount of randomness.
            assert_eq!(one.gen::<u64>(), two.gen::<u64>(), "case {i}: RNG position");
        }
    }

    /// `n` random cases built one after the other from a fresh seed.
    struct InTurn {
        cases: Vec<Case>,
        /// What building them in turn gave.
        sequential: Vec<(PreparedPacket, [u8; 32])>,
        /// The RNG after them.
        after: ChaCha20Rng,
        /// A second RNG from the same seed, for the build under test.
        fresh: ChaCha20Rng,
    }

    impl InTurn {
        /// `batch`, built from `fresh`, is what building in turn gave, and
        /// both drew the same amount of randomness.
        fn check(&mut self, batch: &[(PreparedPacket, [u8; 32])], b: u64) {
            let n = self.cases.len();
            assert_eq!(batch, self.sequential, "batch {b} of {n}");
            assert_eq!(
                self.after.gen::<u64>(),
                self.fresh.gen::<u64>(),
                "batch {b}: RNG position"
            );
        }
    }

    /// [`InTurn`] for the `b`th batch of `n` cases.
    fn in_turn(rng: &mut ChaCha20Rng, nodes: &[RouteHop], b: u64, n: usize) -> InTurn {
        let cases: Vec<Case> = (0..n)
            .map(|i| Case::random(rng, nodes, b + i as u64))
            .collect();
        let seed: [u8; 32] = rng.gen();
        let mut after = ChaCha20Rng::from_seed(seed);
        let sequential = cases.iter().map(|c| c.sequential(&mut after)).collect();
        InTurn {
            cases,
            sequential,
            after,
            fresh: ChaCha20Rng::from_seed(seed),
        }
    }

    #[test]
    fn packets_built_in_one_batch_are_byte_identical_to_ones_built_in_turn() {
        let mut rng = ChaCha20Rng::seed_from_u64(0xba7c4);
        let nodes = nodes(&mut rng);
        for b in 0..16u64 {
            let n = 1 + (b % 5) as usize;
            let mut t = in_turn(&mut rng, &nodes, b, n);
            let specs: Vec<_> = t.cases.iter().map(Case::specs).collect();
            let batch: Vec<_> = prepare_acked_many(&mut t.fresh, &specs)
                .into_iter()
                .map(Result::unwrap)
                .collect();
            t.check(&batch, b);
        }
    }

    #[test]
    fn a_packet_to_ourselves_built_with_our_key_pair_is_byte_identical() {
        // `own_keys` matching the recipient: the key exchange runs on the
        // fixed base; not matching: ignored. Same bytes and RNG position as
        // building the SURB-ACK then the packet, either way, alone and in
        // batches.
        let mut rng = ChaCha20Rng::seed_from_u64(0x0e4c0e);
        let nodes = nodes(&mut rng);
        let stranger = EncryptionKeyPair::generate(&mut rng);
        for b in 0..24u64 {
            let n = 1 + (b % 4) as usize;
            let mut t = in_turn(&mut rng, &nodes, b, n);
            let specs: Vec<_> = t
                .cases
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    // Mostly our own key; now and then a key pair that is
                    // not the recipient's (must be ignored).
                    if (b + i as u64) % 5 == 4 {
                        c.specs_with(Some(&stranger))
                    } else {
                        c.specs_with(Some(&c.enc))
                    }
                })
                .collect();
            let batch: Vec<_> = if n == 1 {
                let (ack, packet) = specs[0];
                vec![prepare_acked(&mut t.fresh, &ack, &packet).unwrap()]
            } else {
                prepare_acked_many(&mut t.fresh, &specs)
                    .into_iter()
                    .map(Result::unwrap)
                    .collect()
            };
            t.check(&batch, b);
        }
    }
}
