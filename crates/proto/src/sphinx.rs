//! A thin wrapper over `sphinx-packet =0.6.0`: building forward packets and
//! processing them one hop at a time, always with an explicit packet version.
//!
//! - Route hops are sphinx `Node`s whose 32-byte address is the node's routing
//!   address ([`NodeAddress`]) zero-padded to 32 bytes.
//! - The destination of every packet Nym builds is a client's ed25519 identity
//!   with a 16-byte all-zero identifier.
//! - One delay is sampled per hop, but the crate only embeds the first `n - 1`
//!   of them: hop `i` holds back the packet for `delays[i]` before passing it to
//!   hop `i + 1`, and the final hop (a gateway) has no delay. [`embedded_delay`]
//!   gives the sum that actually applies.
//! - Node side: [`begin_unwrap`] computes the per-packet shared secret and checks
//!   the header MAC; its result exposes the 32-byte replay tag (taken from the
//!   expanded shared secret, bytes 256..288) before [`PartialUnwrap::finish`]
//!   does the rest without a second Diffie-Hellman.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rand::{CryptoRng, Rng, RngCore};
use rand_distr::{Distribution, Exp};
use sphinx_packet::constants::{
    DESTINATION_ADDRESS_LENGTH, IDENTIFIER_LENGTH, MAX_PATH_LENGTH, NODE_ADDRESS_LENGTH,
    REPLAY_TAG_SIZE,
};
use sphinx_packet::header::delays::Delay;
use sphinx_packet::header::shared_secret::ExpandedSharedSecret;
use sphinx_packet::header::{SphinxHeader, HEADER_SIZE as SPHINX_HEADER_SIZE};
use sphinx_packet::route::{Destination, DestinationAddressBytes, Node, NodeAddressBytes};
use sphinx_packet::{ProcessedPacketData, SphinxPacket, SphinxPacketBuilder};

use crate::address::{NodeAddress, NodeAddressError};
use crate::fastsphinx;
use crate::keys::{X25519Public, X25519Secret};
use crate::params::{PacketSize, SphinxVersion, HEADER_SIZE};

/// Length of a packet's replay tag.
pub const REPLAY_TAG_LEN: usize = REPLAY_TAG_SIZE;

/// Largest number of hops a sphinx route may have.
pub const MAX_HOPS: usize = MAX_PATH_LENGTH;

/// Errors building or processing sphinx packets.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SphinxError {
    /// A route must have between 1 and 5 hops.
    #[error("a sphinx route needs 1 to {MAX_HOPS} hops, got {0}")]
    RouteLength(usize),
    /// One delay per hop is required.
    #[error("{delays} delays given for a route of {hops} hops")]
    DelayCount {
        /// Delays given.
        delays: usize,
        /// Hops in the route.
        hops: usize,
    },
    /// The plaintext does not fill the packet exactly.
    #[error("a {size:?} packet carries exactly {expected} bytes of plaintext, got {got}")]
    PlaintextLength {
        /// Requested packet size.
        size: PacketSize,
        /// Required plaintext length.
        expected: usize,
        /// Given plaintext length.
        got: usize,
    },
    /// A node address does not fit (or cannot be read from) the 32-byte field.
    #[error("node address: {0}")]
    Address(#[from] NodeAddressError),
    /// The packet's length is not one of the supported packet sizes.
    #[error("{0} bytes is not a valid sphinx packet length")]
    Length(usize),
    /// The header MAC does not verify under this node's key (wrong key,
    /// corrupted or forged packet).
    #[error("sphinx header integrity MAC mismatch")]
    Mac,
    /// The routing information or payload is malformed after unwrapping.
    #[error("malformed sphinx packet: {0}")]
    Malformed(String),
    /// The final payload lacks its 16 leading zero bytes or its padding
    /// marker.
    #[error("malformed final payload: {0}")]
    Payload(String),
    /// The sphinx crate refused to build the packet.
    #[error("could not build sphinx packet: {0}")]
    Build(String),
}

/// One hop of a sphinx route: the node's routing address and its current
/// x25519 sphinx key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct RouteHop {
    /// Where the previous hop sends the packet.
    pub address: NodeAddress,
    /// The node's x25519 sphinx public key.
    pub key: X25519Public,
}

impl fmt::Debug for RouteHop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "RouteHop({}, {})",
            self.address,
            bs58::encode(self.key.as_bytes()).into_string()
        )
    }
}

impl RouteHop {
    /// A hop from its parts.
    pub fn new(address: NodeAddress, key: X25519Public) -> Self {
        Self { address, key }
    }
}

impl From<(NodeAddress, X25519Public)> for RouteHop {
    fn from((address, key): (NodeAddress, X25519Public)) -> Self {
        Self { address, key }
    }
}

/// The sphinx `Node` for a hop: the routing address zero-padded to 32 bytes.
pub fn sphinx_node(address: &NodeAddress, key: &X25519Public) -> Result<Node, SphinxError> {
    let padded = address.to_padded::<NODE_ADDRESS_LENGTH>()?;
    Ok(Node::new(NodeAddressBytes::from_bytes(padded), *key))
}

/// The sphinx `Destination` for a client: its ed25519 identity bytes, with an
/// all-zero identifier.
pub fn sphinx_destination(identity: &[u8; DESTINATION_ADDRESS_LENGTH]) -> Destination {
    Destination::new(
        DestinationAddressBytes::from_bytes(*identity),
        [0u8; IDENTIFIER_LENGTH],
    )
}

/// One delay drawn from the exponential distribution with the given mean,
/// sampled in nanoseconds and rounded to a whole nanosecond. A zero mean gives
/// zero.
pub fn sample_delay<R: Rng + ?Sized>(rng: &mut R, mean: Duration) -> Duration {
    let mean_ns = mean.as_nanos() as f64;
    if mean_ns <= 0.0 {
        return Duration::ZERO;
    }
    match Exp::new(1.0 / mean_ns) {
        Ok(exp) => {
            let ns: f64 = exp.sample(rng);
            // `as` saturates on overflow and maps NaN to 0.
            Duration::from_nanos(ns.round() as u64)
        }
        Err(_) => Duration::ZERO,
    }
}

/// `hops` delays, one per route hop (the last will not be embedded).
pub fn sample_delays<R: Rng + ?Sized>(rng: &mut R, mean: Duration, hops: usize) -> Vec<Duration> {
    (0..hops).map(|_| sample_delay(rng, mean)).collect()
}

/// The delay a packet actually accumulates on its route: the sum of all hop
/// delays but the last, which the final hop never sees.
pub fn embedded_delay(delays: &[Duration]) -> Duration {
    match delays.split_last() {
        Some((_, embedded)) => embedded
            .iter()
            .fold(Duration::ZERO, |acc, d| acc.saturating_add(*d)),
        None => Duration::ZERO,
    }
}

fn to_sphinx_delay(d: Duration) -> Delay {
    Delay::new_from_nanos(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Build a forward sphinx packet of `size` carrying `plaintext`, which must be
/// exactly `size.plaintext_size()` bytes, over `route` (one delay per hop) to
/// the client with ed25519 identity `destination`. The packet's initial secret
/// and the final hop's random padding come from `rng` (with the `Stock`
/// derivation the sphinx crate draws the padding from the OS itself). Returns
/// the packet bytes (`size.size()` long).
pub fn build_forward<R: RngCore + CryptoRng>(
    rng: &mut R,
    version: SphinxVersion,
    size: PacketSize,
    plaintext: &[u8],
    route: &[RouteHop],
    destination: &[u8; 32],
    delays: &[Duration],
) -> Result<Vec<u8>, SphinxError> {
    check_plaintext(size, plaintext)?;
    build_raw(
        rng,
        version,
        size.payload_size(),
        plaintext,
        route,
        destination,
        delays,
    )
}

/// How senders derive per-hop keys. Both give identical packets; `Stock`
/// (sphinx-packet's own builder) exists for benchmarks and cross-checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SenderDerivation {
    /// [`crate::fastsphinx`]: blinding accumulator and per-node tables.
    Fast,
    /// `SphinxPacketBuilder` of sphinx-packet 0.6 (quadratic blinding chain).
    Stock,
}

static STOCK_DERIVATION: AtomicBool = AtomicBool::new(false);

/// Choose the sender derivation for the whole process (default: `Fast`).
pub fn set_sender_derivation(d: SenderDerivation) {
    STOCK_DERIVATION.store(d == SenderDerivation::Stock, Ordering::Relaxed);
}

/// The sender derivation in use.
pub fn sender_derivation() -> SenderDerivation {
    if STOCK_DERIVATION.load(Ordering::Relaxed) {
        SenderDerivation::Stock
    } else {
        SenderDerivation::Fast
    }
}

/// A packet of `size` carries exactly `size.plaintext_size()` bytes.
pub(crate) fn check_plaintext(size: PacketSize, plaintext: &[u8]) -> Result<(), SphinxError> {
    if plaintext.len() != size.plaintext_size() {
        return Err(SphinxError::PlaintextLength {
            size,
            expected: size.plaintext_size(),
            got: plaintext.len(),
        });
    }
    Ok(())
}

fn check_route(route_len: usize, delays_len: usize) -> Result<(), SphinxError> {
    // The crate asserts on these; check them first so bad input is an error.
    if route_len == 0 || route_len > MAX_HOPS {
        return Err(SphinxError::RouteLength(route_len));
    }
    if delays_len != route_len {
        return Err(SphinxError::DelayCount {
            delays: delays_len,
            hops: route_len,
        });
    }
    Ok(())
}

fn delay_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn build_raw<R: RngCore + CryptoRng>(
    rng: &mut R,
    version: SphinxVersion,
    payload_size: usize,
    plaintext: &[u8],
    route: &[RouteHop],
    destination: &[u8; 32],
    delays: &[Duration],
) -> Result<Vec<u8>, SphinxError> {
    match sender_derivation() {
        SenderDerivation::Fast => build_raw_fast(
            rng,
            version,
            payload_size,
            plaintext,
            route,
            destination,
            delays,
        ),
        SenderDerivation::Stock => build_raw_stock(
            rng,
            version,
            payload_size,
            plaintext,
            route,
            destination,
            delays,
        ),
    }
}

/// The randomness of one fast-path header, drawn from the caller's RNG in
/// the order the one-shot builder draws it (initial secret, then the final
/// hop's padding), before any key is derived: several of these can then be
/// derived together ([`fastsphinx::derive_batch`]).
pub(crate) struct DrawnHeader {
    version: SphinxVersion,
    keys: Vec<[u8; 32]>,
    addresses: Vec<[u8; 32]>,
    delays: Vec<u64>,
    destination: [u8; 32],
    identifier: [u8; 16],
    secret: zeroize::Zeroizing<[u8; 32]>,
    padding: zeroize::Zeroizing<Vec<u8>>,
}

impl DrawnHeader {
    /// Draw the secret and padding for `route` (checked: 1 to 5 hops, one
    /// delay in nanoseconds per hop).
    pub(crate) fn draw<R: RngCore + CryptoRng + ?Sized>(
        rng: &mut R,
        version: SphinxVersion,
        route: &[(NodeAddressBytes, [u8; 32])],
        destination: &Destination,
        delays: &[u64],
    ) -> Result<Self, SphinxError> {
        check_route(route.len(), delays.len())?;
        let mut secret = zeroize::Zeroizing::new([0u8; 32]);
        rng.fill_bytes(&mut secret[..]);
        let mut padding =
            zeroize::Zeroizing::new(vec![0u8; fastsphinx::final_padding_len(route.len())]);
        rng.fill_bytes(&mut padding[..]);
        Ok(Self {
            version,
            keys: route.iter().map(|(_, k)| *k).collect(),
            addresses: route.iter().map(|(a, _)| a.to_bytes()).collect(),
            delays: delays.to_vec(),
            destination: *destination.address.as_bytes_ref(),
            identifier: destination.identifier,
            secret,
            padding,
        })
    }

    /// As [`DrawnHeader::draw`] for a forward packet's route of [`RouteHop`]s.
    pub(crate) fn draw_forward<R: RngCore + CryptoRng + ?Sized>(
        rng: &mut R,
        version: SphinxVersion,
        route: &[RouteHop],
        destination: &[u8; 32],
        delays: &[Duration],
    ) -> Result<Self, SphinxError> {
        check_route(route.len(), delays.len())?;
        let hops = route
            .iter()
            .map(|h| {
                let padded = h.address.to_padded::<NODE_ADDRESS_LENGTH>()?;
                Ok((NodeAddressBytes::from_bytes(padded), h.key.to_bytes()))
            })
            .collect::<Result<Vec<_>, SphinxError>>()?;
        let delays: Vec<u64> = delays.iter().copied().map(delay_nanos).collect();
        Self::draw(
            rng,
            version,
            &hops,
            &sphinx_destination(destination),
            &delays,
        )
    }

    /// What to derive for this header.
    pub(crate) fn derivation(&self) -> fastsphinx::Derivation<'_> {
        fastsphinx::Derivation::Route {
            secret: &self.secret,
            keys: &self.keys,
        }
    }

    /// The 348-byte header from the derived keys.
    pub(crate) fn header(
        &self,
        derived: &fastsphinx::DerivedKeys,
    ) -> Result<[u8; SPHINX_HEADER_SIZE], SphinxError> {
        fastsphinx::build_header(
            derived,
            &self.addresses,
            &self.delays,
            &self.destination,
            &self.identifier,
            self.version.number(),
            &self.padding,
        )
        .map_err(|e| SphinxError::Build(e.to_string()))
    }

    /// The whole packet: header, then `plaintext` in a payload of
    /// `payload_size` bytes under the hops' payload keys.
    pub(crate) fn packet(
        &self,
        derived: &fastsphinx::DerivedKeys,
        payload_size: usize,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, SphinxError> {
        let header = self.header(derived)?;
        let payload_keys = fastsphinx::payload_keys(derived, self.version.number());
        let payload = fastsphinx::lioness::encapsulate(plaintext, &payload_keys, payload_size)
            .map_err(|e| SphinxError::Build(e.to_string()))?;
        let mut out = Vec::with_capacity(SPHINX_HEADER_SIZE + payload.len());
        out.extend_from_slice(&header);
        out.extend_from_slice(&payload);
        Ok(out)
    }

    /// Derive this header's keys on its own (no batch).
    pub(crate) fn derive(&self) -> fastsphinx::DerivedKeys {
        fastsphinx::derive_keys(fastsphinx::NodeKeyCache::global(), &self.secret, &self.keys)
    }
}

/// A sphinx header for `route` built with the fast derivation and the global
/// node-key cache, plus the derived keys (for payload keys or SURB material).
/// The initial secret and the final hop's padding come from `rng`.
pub(crate) fn fast_header<R: RngCore + CryptoRng + ?Sized>(
    rng: &mut R,
    version: SphinxVersion,
    route: &[(NodeAddressBytes, [u8; 32])],
    destination: &Destination,
    delays: &[u64],
) -> Result<([u8; SPHINX_HEADER_SIZE], fastsphinx::DerivedKeys), SphinxError> {
    let drawn = DrawnHeader::draw(rng, version, route, destination, delays)?;
    let derived = drawn.derive();
    let header = drawn.header(&derived)?;
    Ok((header, derived))
}

fn build_raw_fast<R: RngCore + CryptoRng>(
    rng: &mut R,
    version: SphinxVersion,
    payload_size: usize,
    plaintext: &[u8],
    route: &[RouteHop],
    destination: &[u8; 32],
    delays: &[Duration],
) -> Result<Vec<u8>, SphinxError> {
    let drawn = DrawnHeader::draw_forward(rng, version, route, destination, delays)?;
    let derived = drawn.derive();
    drawn.packet(&derived, payload_size, plaintext)
}

fn build_raw_stock<R: RngCore + CryptoRng>(
    rng: &mut R,
    version: SphinxVersion,
    payload_size: usize,
    plaintext: &[u8],
    route: &[RouteHop],
    destination: &[u8; 32],
    delays: &[Duration],
) -> Result<Vec<u8>, SphinxError> {
    check_route(route.len(), delays.len())?;
    let nodes = route
        .iter()
        .map(|h| sphinx_node(&h.address, &h.key))
        .collect::<Result<Vec<_>, _>>()?;
    let delays: Vec<Delay> = delays.iter().copied().map(to_sphinx_delay).collect();
    let initial_secret = X25519Secret::random_from_rng(&mut *rng);
    let packet = SphinxPacketBuilder::new()
        .with_version(version.to_sphinx())
        .with_payload_size(payload_size)
        .with_initial_secret(&initial_secret)
        .build_packet(plaintext, &nodes, &sphinx_destination(destination), &delays)
        .map_err(|e| SphinxError::Build(e.to_string()))?;
    Ok(packet.to_bytes())
}

/// What one hop's processing yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Processed {
    /// Send `packet` to `next_hop` after `delay`.
    Forward {
        /// The next node, parsed from the 32-byte address field.
        next_hop: NodeAddress,
        /// How long to hold the packet (as set by its sender).
        delay: Duration,
        /// The re-wrapped packet for the next hop (same length).
        packet: Vec<u8>,
    },
    /// This node is the final hop.
    Final {
        /// The destination (a client's ed25519 identity bytes).
        destination: [u8; 32],
        /// The recovered plaintext: leading zeros checked, padding stripped.
        plaintext: Vec<u8>,
    },
}

/// A packet whose shared secret is known and whose header MAC verified: the
/// point at which a node checks the replay tag before finishing the unwrap.
pub struct PartialUnwrap {
    packet: SphinxPacket,
    secret: ExpandedSharedSecret,
    size: PacketSize,
}

impl fmt::Debug for PartialUnwrap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PartialUnwrap")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl PartialUnwrap {
    /// The packet's 32-byte replay tag for this node's key.
    pub fn replay_tag(&self) -> &[u8; REPLAY_TAG_LEN] {
        self.secret.replay_tag()
    }

    /// The packet's size class.
    pub fn packet_size(&self) -> PacketSize {
        self.size
    }

    /// Finish unwrapping: decrypt the routing block and one payload layer.
    ///
    /// Note: sphinx-packet 0.6 has a `debug_assert` that the first of the
    /// three version bytes is zero. Only a packet with a valid MAC reaches it,
    /// i.e. one crafted by its sender, and only debug builds can panic there.
    pub fn finish(self) -> Result<Processed, SphinxError> {
        let processed = self
            .packet
            .process_with_expanded_secret(&self.secret)
            .map_err(|e| SphinxError::Malformed(e.to_string()))?;
        match processed.data {
            ProcessedPacketData::ForwardHop {
                next_hop_packet,
                next_hop_address,
                delay,
            } => {
                let (next_hop, _) = NodeAddress::read(next_hop_address.as_bytes())?;
                Ok(Processed::Forward {
                    next_hop,
                    delay: delay.to_duration(),
                    packet: next_hop_packet.to_bytes(),
                })
            }
            ProcessedPacketData::FinalHop {
                destination,
                identifier: _,
                payload,
            } => {
                let plaintext = payload
                    .recover_plaintext()
                    .map_err(|e| SphinxError::Payload(e.to_string()))?;
                Ok(Processed::Final {
                    destination: destination.as_bytes(),
                    plaintext,
                })
            }
        }
    }
}

fn parse_packet(bytes: &[u8]) -> Result<(SphinxPacket, PacketSize), SphinxError> {
    let size = PacketSize::from_len(bytes.len()).map_err(|_| SphinxError::Length(bytes.len()))?;
    let packet =
        SphinxPacket::from_bytes(bytes).map_err(|e| SphinxError::Malformed(e.to_string()))?;
    Ok((packet, size))
}

/// First half of a node's processing: parse, derive the shared secret with the
/// node's x25519 key and verify the header MAC.
pub fn begin_unwrap(
    packet: &[u8],
    node_secret: &X25519Secret,
) -> Result<PartialUnwrap, SphinxError> {
    let (packet, size) = parse_packet(packet)?;
    let secret = packet.header.compute_expanded_shared_secret(node_secret);
    packet
        .header
        .ensure_header_integrity(&secret)
        .map_err(|_| SphinxError::Mac)?;
    Ok(PartialUnwrap {
        packet,
        secret,
        size,
    })
}

/// Process one hop of a packet with the node's x25519 key.
pub fn process(packet: &[u8], node_secret: &X25519Secret) -> Result<Processed, SphinxError> {
    begin_unwrap(packet, node_secret)?.finish()
}

/// The 32-byte replay tag of a packet for a node's key, without checking the
/// MAC or unwrapping anything (one Diffie-Hellman).
pub fn replay_tag(
    packet: &[u8],
    node_secret: &X25519Secret,
) -> Result<[u8; REPLAY_TAG_LEN], SphinxError> {
    PacketSize::from_len(packet.len()).map_err(|_| SphinxError::Length(packet.len()))?;
    let header_bytes = packet
        .get(..HEADER_SIZE)
        .ok_or(SphinxError::Length(packet.len()))?;
    let header = SphinxHeader::from_bytes(header_bytes)
        .map_err(|e| SphinxError::Malformed(e.to_string()))?;
    Ok(*header
        .compute_expanded_shared_secret(node_secret)
        .replay_tag())
}

// The crate's header length must match ours.
const _: () = assert!(SPHINX_HEADER_SIZE == HEADER_SIZE);

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    pub(crate) struct TestNode {
        pub secret: X25519Secret,
        pub hop: RouteHop,
    }

    pub(crate) fn test_node(rng: &mut ChaCha20Rng, addr: &str) -> TestNode {
        let secret = X25519Secret::random_from_rng(&mut *rng);
        let hop = RouteHop::new(
            NodeAddress(addr.parse().expect("socket address")),
            X25519Public::from(&secret),
        );
        TestNode { secret, hop }
    }

    /// Three mixes (IPv4, IPv6, IPv4) and a gateway.
    pub(crate) fn four_nodes(rng: &mut ChaCha20Rng) -> Vec<TestNode> {
        vec![
            test_node(rng, "10.0.0.1:1789"),
            test_node(rng, "[2001:db8::2]:1789"),
            test_node(rng, "10.0.0.3:1790"),
            test_node(rng, "10.0.0.4:1789"),
        ]
    }

    fn hkdf_sha256_expand(ikm: &[u8; 32]) -> [u8; 288] {
        let hk = hkdf::Hkdf::<sha2::Sha256>::new(Some(b""), ikm);
        let mut out = [0u8; 288];
        hk.expand(
            sphinx_packet::constants::EXPANDED_SHARED_SECRET_HKDF_INFO,
            &mut out,
        )
        .expect("288 bytes");
        out
    }

    /// sphinx-packet's `results_in_same_values_as_old_implementation` vector
    /// (`src/header/shared_secret.rs`), recomputed from the HKDF layout of our
    /// notes (§2.3), and tied to the crate's public replay tag.
    #[test]
    fn expanded_secret_known_answer_and_replay_tag() {
        let mut rng = ChaCha20Rng::from_seed([1u8; 32]);
        let sk1 = X25519Secret::random_from_rng(&mut rng);
        let pk1 = X25519Public::from(&sk1);
        let sk2 = X25519Secret::random_from_rng(&mut rng);
        let ss = sk2.diffie_hellman(&pk1).to_bytes();
        let expanded = hkdf_sha256_expand(&ss);

        assert_eq!(
            expanded[..16],
            [186, 234, 152, 113, 202, 124, 191, 228, 173, 89, 91, 8, 127, 251, 214, 200]
        );
        assert_eq!(
            expanded[16..32],
            [28, 222, 17, 227, 46, 180, 170, 7, 34, 52, 177, 142, 150, 137, 142, 222]
        );
        let expected_pk: [u8; 192] = [
            210, 209, 81, 241, 254, 123, 36, 81, 155, 85, 115, 40, 101, 210, 97, 8, 196, 104, 61,
            23, 165, 190, 191, 236, 203, 69, 15, 230, 70, 100, 161, 136, 53, 88, 116, 118, 81, 57,
            58, 181, 232, 102, 149, 93, 239, 255, 156, 205, 0, 146, 110, 117, 137, 59, 102, 170,
            87, 250, 175, 207, 193, 107, 112, 154, 247, 220, 110, 135, 32, 106, 20, 152, 14, 132,
            89, 154, 249, 24, 176, 40, 30, 182, 195, 209, 124, 59, 58, 201, 209, 255, 80, 151, 109,
            226, 157, 232, 48, 128, 56, 159, 90, 168, 229, 60, 106, 14, 50, 215, 198, 200, 168, 24,
            159, 224, 240, 119, 23, 242, 61, 129, 54, 36, 140, 245, 127, 159, 230, 5, 52, 142, 254,
            52, 168, 171, 139, 100, 206, 16, 94, 219, 68, 113, 141, 159, 4, 233, 189, 144, 164,
            202, 180, 74, 214, 66, 96, 185, 70, 191, 155, 18, 210, 52, 123, 71, 231, 225, 79, 0,
            196, 25, 217, 231, 133, 191, 96, 119, 103, 182, 200, 36, 215, 62, 203, 149, 214, 139,
            32, 70, 66, 30, 63, 102,
        ];
        assert_eq!(expanded[32..224], expected_pk);
        assert_eq!(
            expanded[224..256],
            [
                227, 64, 184, 235, 140, 62, 232, 172, 235, 42, 58, 169, 241, 253, 245, 2, 136, 149,
                74, 48, 6, 165, 145, 133, 190, 105, 222, 218, 248, 172, 49, 188,
            ]
        );

        // A "packet" whose alpha is pk1, processed by the node holding sk2,
        // has the shared secret above; its replay tag is bytes 256..288.
        let mut packet = vec![0u8; PacketSize::Ack.size()];
        packet[..32].copy_from_slice(pk1.as_bytes());
        let tag = replay_tag(&packet, &sk2).expect("tag");
        assert_eq!(tag[..], expanded[256..288]);
    }

    /// The LIONESS vector from crate `lioness` 0.1.2
    /// (`chach20_blake2b_lioness_vectors_test`), decrypted through
    /// sphinx-packet's public payload API (one payload layer = one LIONESS
    /// decryption with a 192-byte key).
    #[test]
    fn lioness_known_answer_through_payload_api() {
        let key: [u8; 192] = hex::decode(concat!(
            "0f2c69732932c99e56fa50fbb2763ad77ee221fc5d9e6c08f89fc577a7467f1ee34003440ee2bfbf",
            "aac60912b0e547fbe9a6a9292db70bc718c6f2773ab198ac8f255378f7ea799e1d4b8596079173b6",
            "e443c416f13195f1976acc03d53a4b8581b609df3b7029d5b487051d5ae4189129c045edc8822e1f",
            "52e30251e4b322b3f6d6e8bb0ddb0578dcba41603abf5e51848c84d2082d293f30a645faf4df028e",
            "e2c40853ea33e40b55fca902371dc00dc1e0e77161bd097a59e8368bf99174d9"
        ))
        .expect("hex")
        .try_into()
        .expect("192");
        let input = hex::decode(concat!(
            "5ac4cb9674a8908915a2b1aaf2043271612531911a26186bd5c811951330753a0e3259f3fcf52f",
            "b86e666ab4d96243e57d73b976611f928d44ad137799016861576ca0a6b8a8a9e2ea02db71e71c",
            "9654e476ca845c44456eba62f11f004b222756e485185c446c30b7a05cf9acd53b3131227b428d",
            "a5c9601664d45ae5c2387956307961a0680894844190605dce0c86e597105884e151eb8a005eda",
            "08ff5891a6b40bae299cddad979063a9a356f3477feabb9cc7bd80a1e2d6a419fcd8af9e98f7b1",
            "93c71bd6056d7634b8c2b8f85920f314554104659e52d9266ddbc2ac40c1b875f6b00225f832cf",
            "310e139ad8cc2568608f0323534fa15a84280e776e7e1167a001f6e18c49f3cd02c19837da47ac",
            "091219ee2fdb4458836db20cbd362bb65add9b40f2817f666caf19787abc2013737eea8c7552d7",
            "55a29beba5da31956f75fe7628221fe8d0a75da5bee39af956a2246c5a339560dcf029eb76d191",
            "963354b70142df29ec69930977ce2f0e491513664ce83a8fa75f3e698530cf9dafbdb90b19745e",
            "9257d03d7320c6d306f529eda242cb3f6f452a943f6e1c04eb02cbb0368d79e49a2b42ac3ff7cd",
            "9a5686bfdb90a29322016bbcef5c733f451a9f4ea7c534116158eb611796d47b83ffe7cd6e6c11",
            "d56e2d26c7a386853212a2f92efeabc74e8fe69e3d374d7b033d0ec9862221435b14ad534217ad",
            "7da50bc236"
        ))
        .expect("hex");
        let output = hex::decode(concat!(
            "9eb45ca2ca4d0b6ff05a749511aad1357aa64caf9ce547c7388fe24fd1300fe856bb5c396869a",
            "cd21c45805e6a7c8a1b7f71cc5f0ea9dd0c4ecd4bba9a7a4853bc352bc9f6562e9907973f91fb",
            "cf7c710f5a89abc8eb4489b90e8111cbf85ffd595d603268ddceb40e39e747a4e7bd5c965585b",
            "6964e180bd6ccb9d0fad210c7f7dd6f90cf6db9bda70d41d3922cedec5ea147ef318de5f34e6f",
            "e5bd646859a9d4171b973b6b58c8d7f94bc9eb293c197f3408a51e3626196e3f6bca625cef90f",
            "a7a3e3713bdaebdda82f48db1a97c9ed5c48bc419dbc3d1f9ef43d1b17dd83c966bde9d9360b7",
            "cdac0871844c27921dcf3bb7edce9fb24661a41a8f92c8502925f062e9cd2f77c561e5825eae2",
            "11657652330bc64cd63b18d1014975f167f8b68d6e702dd3d3547971662238216cc5b07517cc9",
            "0aaa49a61ee423861cdc49c0e1f64e086007095a00f8adb0314fd85c88158001202edf2ed43c2",
            "01176d6141e469dd89430352a927ee22a41c62c8cfdfd5d592e76793e58a9c63b7fe6dad335d7",
            "acec90727675854d7708358115794e013bb4fdb504c44e21ce500f764fac211e8de20b81ca55f",
            "c778ace024d2a40045241e71b023ceb519c8c28285c333b9f90f5e2cde21ca6744e43f89d0054",
            "5dd34df072c7214f6cbd2123c4b0613614609961dd855d6d611c3018e4df3550b4e93f33f7c3e",
            "8b2c890ca0405c957aa277d"
        ))
        .expect("hex");
        assert_eq!(input.len(), output.len());
        let payload = sphinx_packet::payload::Payload::from_bytes(&output).expect("payload");
        let decrypted = payload.unwrap(key).expect("lioness decrypt");
        assert_eq!(decrypted.as_bytes(), &input[..]);
    }

    fn walk(nodes: &[TestNode], mut packet: Vec<u8>, delays: &[Duration]) -> ([u8; 32], Vec<u8>) {
        for (i, node) in nodes.iter().enumerate() {
            match process(&packet, &node.secret).expect("process") {
                Processed::Forward {
                    next_hop,
                    delay,
                    packet: next,
                } => {
                    assert!(i + 1 < nodes.len(), "forward at the last hop");
                    assert_eq!(next_hop, nodes[i + 1].hop.address);
                    assert_eq!(delay, delays[i]);
                    assert_eq!(next.len(), packet.len());
                    packet = next;
                }
                Processed::Final {
                    destination,
                    plaintext,
                } => {
                    assert_eq!(i + 1, nodes.len(), "final before the last hop");
                    return (destination, plaintext);
                }
            }
        }
        panic!("no final hop");
    }

    #[test]
    fn four_hops_deliver_exact_plaintext_both_versions() {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let nodes = four_nodes(&mut rng);
        let route: Vec<RouteHop> = nodes.iter().map(|n| n.hop).collect();
        let dest = [0x42u8; 32];
        for version in [SphinxVersion::Legacy258, SphinxVersion::Seeds259] {
            for size in [PacketSize::Regular, PacketSize::Ack, PacketSize::Extended8] {
                let mut plaintext = vec![0u8; size.plaintext_size()];
                rng.fill_bytes(&mut plaintext);
                // Trailing 0x01 and zeros in the plaintext itself must survive.
                let n = plaintext.len();
                plaintext[n - 1] = 0;
                plaintext[n - 2] = 1;
                let delays = vec![
                    Duration::from_nanos(1_234_567),
                    Duration::from_millis(15),
                    Duration::from_nanos(1),
                    Duration::from_secs(9),
                ];
                let packet =
                    build_forward(&mut rng, version, size, &plaintext, &route, &dest, &delays)
                        .expect("build");
                assert_eq!(packet.len(), size.size());
                let (d, p) = walk(&nodes, packet, &delays);
                assert_eq!(d, dest);
                assert_eq!(p, plaintext);
            }
        }
    }

    #[test]
    fn version_bytes_are_in_each_hop_block() {
        // Decrypt the first hop's routing block by hand: flag 1, then 00 01 02
        // (258) or 00 01 03 (259).
        let mut rng = ChaCha20Rng::seed_from_u64(8);
        let nodes = four_nodes(&mut rng);
        let route: Vec<RouteHop> = nodes.iter().map(|n| n.hop).collect();
        for (version, vbytes) in [
            (SphinxVersion::Legacy258, [0u8, 1, 2]),
            (SphinxVersion::Seeds259, [0u8, 1, 3]),
        ] {
            let plaintext = vec![9u8; PacketSize::Regular.plaintext_size()];
            let delays = [Duration::from_nanos(0x0102_0304_0506_0708); 4];
            let packet = build_forward(
                &mut rng,
                version,
                PacketSize::Regular,
                &plaintext,
                &route,
                &[1; 32],
                &delays,
            )
            .expect("build");
            let alpha: [u8; 32] = packet[..32].try_into().expect("32");
            let ss = nodes[0]
                .secret
                .diffie_hellman(&X25519Public::from(alpha))
                .to_bytes();
            let expanded = hkdf_sha256_expand(&ss);
            let key: [u8; 16] = expanded[..16].try_into().expect("16");
            let mut block = packet[48..48 + 60].to_vec();
            // sphinx's PRG: AES-128-CTR, zero IV.
            crate::crypto::aes128_ctr64(&key, &[0u8; 16], &mut block);
            assert_eq!(block[0], 1, "forward flag");
            assert_eq!(block[1..4], vbytes);
            assert_eq!(
                block[4..36],
                nodes[1].hop.address.to_padded::<32>().expect("pad")
            );
            assert_eq!(block[36..44], 0x0102_0304_0506_0708u64.to_be_bytes());
        }
    }

    #[test]
    fn our_packets_cross_the_crate_api_both_ways() {
        let mut rng = ChaCha20Rng::seed_from_u64(9);
        let nodes = four_nodes(&mut rng);
        let route: Vec<RouteHop> = nodes.iter().map(|n| n.hop).collect();
        let delays = [Duration::from_micros(10); 4];
        let plaintext = vec![0xabu8; PacketSize::Regular.plaintext_size()];
        let dest = [7u8; 32];

        // Ours built, the crate processes every hop.
        let ours = build_forward(
            &mut rng,
            SphinxVersion::Seeds259,
            PacketSize::Regular,
            &plaintext,
            &route,
            &dest,
            &delays,
        )
        .expect("build");
        let mut bytes = ours;
        for (i, node) in nodes.iter().enumerate() {
            let p = SphinxPacket::from_bytes(&bytes)
                .expect("parse")
                .process(&node.secret)
                .expect("process");
            assert_eq!(p.version.value(), 259);
            match p.data {
                ProcessedPacketData::ForwardHop {
                    next_hop_packet,
                    next_hop_address,
                    delay,
                } => {
                    assert_eq!(
                        next_hop_address.to_bytes(),
                        nodes[i + 1].hop.address.to_padded::<32>().expect("pad")
                    );
                    assert_eq!(delay.to_nanos(), 10_000);
                    bytes = next_hop_packet.to_bytes();
                }
                ProcessedPacketData::FinalHop {
                    destination,
                    identifier,
                    payload,
                } => {
                    assert_eq!(i, 3);
                    assert_eq!(destination.as_bytes(), dest);
                    assert_eq!(identifier, [0u8; 16]);
                    assert_eq!(payload.recover_plaintext().expect("plain"), plaintext);
                }
            }
        }

        // The crate built (as Nym's sphinx_build does), ours processes.
        let sphinx_nodes: Vec<Node> = route
            .iter()
            .map(|h| sphinx_node(&h.address, &h.key).expect("node"))
            .collect();
        let theirs = SphinxPacketBuilder::new()
            .with_version(sphinx_packet::version::X25519_WITH_EXPLICIT_PAYLOAD_KEYS_VERSION)
            .with_payload_size(PacketSize::Regular.payload_size())
            .build_packet(
                &plaintext,
                &sphinx_nodes,
                &sphinx_destination(&dest),
                &[Delay::new_from_nanos(10_000); 4],
            )
            .expect("crate build")
            .to_bytes();
        let (d, p) = walk(&nodes, theirs, &delays);
        assert_eq!(d, dest);
        assert_eq!(p, plaintext);
    }

    #[test]
    fn replay_tag_is_stable_and_per_hop() {
        let mut rng = ChaCha20Rng::seed_from_u64(10);
        let nodes = four_nodes(&mut rng);
        let route: Vec<RouteHop> = nodes.iter().map(|n| n.hop).collect();
        let plaintext = vec![1u8; PacketSize::Ack.plaintext_size()];
        let packet = build_forward(
            &mut rng,
            SphinxVersion::Seeds259,
            PacketSize::Ack,
            &plaintext,
            &route,
            &[3; 32],
            &[Duration::ZERO; 4],
        )
        .expect("build");
        let partial = begin_unwrap(&packet, &nodes[0].secret).expect("mac ok");
        let tag = *partial.replay_tag();
        assert_eq!(replay_tag(&packet, &nodes[0].secret).expect("tag"), tag);
        let Processed::Forward { packet: next, .. } = partial.finish().expect("finish") else {
            panic!("expected forward");
        };
        let tag2 = replay_tag(&next, &nodes[1].secret).expect("tag");
        assert_ne!(tag, tag2);
        // A different node key yields a different tag (and a MAC failure).
        assert_ne!(replay_tag(&packet, &nodes[1].secret).expect("tag"), tag,);
        assert_eq!(
            begin_unwrap(&packet, &nodes[1].secret).expect_err("wrong key"),
            SphinxError::Mac
        );
    }

    #[test]
    fn bad_input_is_an_error() {
        let mut rng = ChaCha20Rng::seed_from_u64(11);
        let nodes = four_nodes(&mut rng);
        let route: Vec<RouteHop> = nodes.iter().map(|n| n.hop).collect();
        let pt = vec![0u8; PacketSize::Regular.plaintext_size()];
        let d4 = [Duration::ZERO; 4];
        let v = SphinxVersion::Seeds259;
        let s = PacketSize::Regular;
        assert!(matches!(
            build_forward(&mut rng, v, s, &pt[1..], &route, &[0; 32], &d4),
            Err(SphinxError::PlaintextLength { .. })
        ));
        assert_eq!(
            build_forward(&mut rng, v, s, &pt, &[], &[0; 32], &[]),
            Err(SphinxError::RouteLength(0))
        );
        let six: Vec<RouteHop> = (0..6).map(|i| route[i % 4]).collect();
        assert_eq!(
            build_forward(&mut rng, v, s, &pt, &six, &[0; 32], &[Duration::ZERO; 6]),
            Err(SphinxError::RouteLength(6))
        );
        assert!(matches!(
            build_forward(&mut rng, v, s, &pt, &route, &[0; 32], &d4[..3]),
            Err(SphinxError::DelayCount { .. })
        ));
        // A 5-hop route is the maximum and works.
        let five: Vec<RouteHop> = (0..5).map(|i| route[i % 4]).collect();
        assert!(build_forward(&mut rng, v, s, &pt, &five, &[0; 32], &[Duration::ZERO; 5]).is_ok());

        assert_eq!(
            process(&[0u8; 10], &nodes[0].secret),
            Err(SphinxError::Length(10))
        );
        let mut packet = build_forward(&mut rng, v, s, &pt, &route, &[0; 32], &d4).expect("build");
        packet[100] ^= 1;
        assert_eq!(process(&packet, &nodes[0].secret), Err(SphinxError::Mac));
    }

    #[test]
    fn one_hop_route_and_delays() {
        let mut rng = ChaCha20Rng::seed_from_u64(12);
        let gw = test_node(&mut rng, "127.0.0.1:1789");
        let pt = vec![5u8; PacketSize::Regular.plaintext_size()];
        let packet = build_forward(
            &mut rng,
            SphinxVersion::Seeds259,
            PacketSize::Regular,
            &pt,
            &[gw.hop],
            &[8; 32],
            &[Duration::from_secs(1)],
        )
        .expect("build");
        assert_eq!(
            process(&packet, &gw.secret),
            Ok(Processed::Final {
                destination: [8; 32],
                plaintext: pt
            })
        );

        assert_eq!(embedded_delay(&[]), Duration::ZERO);
        assert_eq!(embedded_delay(&[Duration::from_secs(5)]), Duration::ZERO);
        assert_eq!(
            embedded_delay(&[1, 2, 3, 4].map(Duration::from_millis)),
            Duration::from_millis(6)
        );
        assert_eq!(
            sample_delays(&mut rng, Duration::ZERO, 3),
            vec![Duration::ZERO; 3]
        );
        let mean = Duration::from_millis(15);
        let n = 20_000;
        let total: Duration = sample_delays(&mut rng, mean, n).iter().sum();
        let avg = total.as_secs_f64() / n as f64;
        assert!((avg - 0.015).abs() < 0.001, "mean {avg}");
    }

    proptest::proptest! {
        #[test]
        fn processing_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..3000), cut in 0usize..3000) {
            let secret = X25519Secret::from([3u8; 32]);
            let _ = process(&bytes, &secret);
            let _ = replay_tag(&bytes, &secret);
            let mut ack = bytes.clone();
            ack.resize(PacketSize::Ack.size(), 0);
            let _ = process(&ack, &secret);
            let mut regular = bytes.clone();
            regular.resize(PacketSize::Regular.size(), 7);
            let _ = process(&regular, &secret);
            let _ = process(&regular[..cut.min(regular.len())], &secret);
        }
    }
}
