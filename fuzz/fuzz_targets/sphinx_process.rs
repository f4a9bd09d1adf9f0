//! A node processing one Sphinx hop with a fixed key. Mode 0: the input,
//! cut or zero-padded to a packet size the first byte picks, is processed as
//! received from the network. Mode 1: the input is the plaintext (and route
//! shape) of a packet we build for fixed nodes; processing it hop by hop must
//! deliver exactly that plaintext to the destination.
#![no_main]
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use nymd_proto::keys::{X25519Public, X25519Secret};
use nymd_proto::sphinx::{self, Processed, RouteHop};
use nymd_proto::{NodeAddress, PacketSize, SphinxVersion};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

const DEST: [u8; 32] = [0x42; 32];

fn node(i: u8) -> (X25519Secret, RouteHop) {
    let secret = X25519Secret::from([i.wrapping_add(1); 32]);
    let addr = if i % 2 == 0 {
        format!("10.0.0.{i}:1789")
    } else {
        format!("[fe80::{i}]:1789")
    };
    let hop = RouteHop::new(
        NodeAddress(addr.parse().expect("address")),
        X25519Public::from(&secret),
    );
    (secret, hop)
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let size = PacketSize::ALL[usize::from(mode >> 1) % PacketSize::ALL.len()];
    if mode & 1 == 0 {
        let (secret, _) = node(0);
        let mut packet = rest.to_vec();
        packet.resize(size.size(), 0);
        let _ = sphinx::replay_tag(&packet, &secret);
        let _ = sphinx::process(&packet, &secret);
        // Raw input of any length, too.
        let _ = sphinx::process(rest, &secret);
        return;
    }
    // Built packet: hops (1..=5), version, then the plaintext.
    let Some((&shape, body)) = rest.split_first() else {
        return;
    };
    let hops = usize::from(shape % 5) + 1;
    let version = if shape & 0x80 == 0 {
        SphinxVersion::Seeds259
    } else {
        SphinxVersion::Legacy258
    };
    let nodes: Vec<_> = (0..hops as u8).map(node).collect();
    let route: Vec<RouteHop> = nodes.iter().map(|(_, h)| *h).collect();
    let mut plaintext = body.to_vec();
    plaintext.resize(size.plaintext_size(), 0);
    let delays = vec![Duration::from_micros(u64::from(shape)); hops];
    let mut rng = ChaCha20Rng::seed_from_u64(u64::from(shape));
    let packet = sphinx::build_forward(&mut rng, version, size, &plaintext, &route, &DEST, &delays)
        .expect("build over a valid route");
    let mut current = packet;
    for (i, (secret, _)) in nodes.iter().enumerate() {
        match sphinx::process(&current, secret).expect("honest packet processes") {
            Processed::Forward {
                next_hop, packet, ..
            } => {
                assert_eq!(Some(next_hop), route.get(i + 1).map(|h| h.address));
                current = packet;
            }
            Processed::Final {
                destination,
                plaintext: got,
            } => {
                assert_eq!(i + 1, hops);
                assert_eq!(destination, DEST);
                assert_eq!(got, plaintext);
                return;
            }
        }
    }
    panic!("packet never reached its final hop");
});
