//! Padding, fragmentation (single and linked sets) and reassembly, both
//! directions, against `nym-sphinx-chunking` and `nym-sphinx`'s message
//! padding, without the packet layers.

mod common;

use std::time::Instant;

use nym_sphinx::message::{NymMessage as NymNymMessage, PaddedMessage as NymPadded};
use nym_sphinx_chunking::fragment::Fragment as NymFragment;
use nym_sphinx_chunking::reconstruction::MessageReconstructor;
use nym_sphinx_params::PacketSize as NymPacketSize;
use nymd_proto::chunking::{Fragment, InsertOutcome, NymMessage, Reassembler};
use nymd_proto::params::PacketSize;

/// Message lengths around every boundary that matters for Regular packets:
/// one fragment, a full unlinked set (255 fragments), one-way and two-way
/// linked sets (three sets).
fn lengths() -> Vec<usize> {
    let cap = PacketSize::Regular.fragment_capacity();
    let unlinked = cap - 7;
    let linked = cap - 10;
    vec![
        0,
        1,
        unlinked - 2,
        unlinked - 1,
        unlinked,
        5000,
        255 * unlinked - 2,
        255 * unlinked - 1,
        255 * unlinked,
        255 * unlinked + 1,
        2 * 254 * unlinked + 2 * linked,
        600_000,
    ]
}

fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut v = vec![0u8; len];
    rand::RngCore::fill_bytes(&mut common::our_rng(seed), &mut v);
    v
}

fn nym_size(s: PacketSize) -> NymPacketSize {
    match s {
        PacketSize::Regular => NymPacketSize::RegularPacket,
        PacketSize::Extended8 => NymPacketSize::ExtendedPacket8,
        PacketSize::Extended16 => NymPacketSize::ExtendedPacket16,
        PacketSize::Extended32 => NymPacketSize::ExtendedPacket32,
        PacketSize::Ack => NymPacketSize::AckPacket,
    }
}

/// Our fragments, reassembled by Nym; the padded payloads are identical to
/// Nym's own padding of the same message.
#[test]
fn our_fragments_reassembled_by_nym() {
    for (i, len) in lengths().into_iter().enumerate() {
        let size = PacketSize::Regular;
        let msg = data(len, i as u64);
        let ours = NymMessage::Plain(msg.clone());
        let cap = ours.fragment_capacity(size);
        let nym_msg = NymNymMessage::new_plain(msg.clone());
        assert_eq!(
            cap,
            nym_msg.available_sphinx_plaintext_per_packet(nym_size(size)),
            "capacity"
        );
        let fragments = ours
            .pad(cap)
            .expect("pad")
            .split_into_fragments(&mut common::our_rng(100 + i as u64), cap)
            .expect("split");
        let nym_count = nym_msg
            .pad_to_full_packet_lengths(cap)
            .split_into_fragments(&mut common::nym_rng(1), cap)
            .len();
        assert_eq!(fragments.len(), nym_count, "fragment count for {len}");
        assert_eq!(ours.required_packets(size), nym_count, "packets for {len}");
        let mut reconstructor = MessageReconstructor::new();
        let mut done = None;
        // Deliver in reverse to exercise out-of-order reassembly.
        for f in fragments.iter().rev() {
            let bytes = f.to_bytes();
            assert_eq!(bytes.len(), cap, "every fragment fills the packet");
            let theirs = NymFragment::try_from_bytes(&bytes)
                .unwrap_or_else(|e| panic!("Nym parses our fragment ({len}): {e:?}"));
            assert_eq!(theirs.id(), f.set_id());
            assert_eq!(theirs.total_fragments(), f.total());
            assert_eq!(theirs.current_fragment(), f.current());
            assert_eq!(
                theirs.previous_fragments_set_id(),
                f.header().previous_set()
            );
            assert_eq!(theirs.next_fragments_set_id(), f.header().next_set());
            assert_eq!(theirs.payload(), f.payload());
            assert_eq!(theirs.clone().into_bytes(), bytes);
            if let Some((padded, set_ids)) = reconstructor.insert_new_fragment(theirs) {
                done = Some((padded, set_ids));
            }
        }
        let (padded, _) = done.unwrap_or_else(|| panic!("Nym did not reassemble {len}"));
        let back = NymPadded::new_reconstructed(padded)
            .remove_padding()
            .expect("Nym unpads");
        assert_eq!(back.into_inner_data(), msg, "{len}");
    }
}

/// Nym's fragments, reassembled by us.
#[test]
fn nym_fragments_reassembled_by_us() {
    for (i, len) in lengths().into_iter().enumerate() {
        let msg = data(len, 50 + i as u64);
        let nym_msg = NymNymMessage::new_plain(msg.clone());
        let cap = nym_msg.available_sphinx_plaintext_per_packet(NymPacketSize::RegularPacket);
        let fragments = nym_msg
            .pad_to_full_packet_lengths(cap)
            .split_into_fragments(&mut common::nym_rng(200 + i as u64), cap);
        let mut reassembler = Reassembler::default();
        let mut done = None;
        for f in fragments.into_iter().rev() {
            let bytes = f.into_bytes();
            let ours = Fragment::from_bytes(&bytes)
                .unwrap_or_else(|e| panic!("we parse Nym's fragment ({len}): {e}"));
            assert_eq!(ours.to_bytes(), bytes);
            match reassembler
                .insert(ours, Instant::now())
                .expect("insert")
                .outcome
            {
                InsertOutcome::Complete(m) => done = Some(m),
                InsertOutcome::Buffered => {}
                InsertOutcome::Duplicate => panic!("duplicate"),
            }
        }
        let m = done.unwrap_or_else(|| panic!("we did not reassemble {len}"));
        assert_eq!(m.into_message().expect("unpad"), NymMessage::Plain(msg));
    }
}

/// Extended packet sizes: capacities agree and fragments cross over.
#[test]
fn extended_sizes_both_ways() {
    for size in [
        PacketSize::Extended8,
        PacketSize::Extended16,
        PacketSize::Extended32,
    ] {
        let msg = data(100_000, 7);
        let ours = NymMessage::Plain(msg.clone());
        let cap = ours.fragment_capacity(size);
        let nym_msg = NymNymMessage::new_plain(msg.clone());
        assert_eq!(
            cap,
            nym_msg.available_sphinx_plaintext_per_packet(nym_size(size))
        );
        let fragments = ours
            .pad(cap)
            .expect("pad")
            .split_into_fragments(&mut common::our_rng(8), cap)
            .expect("split");
        let mut reconstructor = MessageReconstructor::new();
        let mut done = None;
        for f in &fragments {
            let theirs = NymFragment::try_from_bytes(&f.to_bytes()).expect("Nym parses");
            if let Some(r) = reconstructor.insert_new_fragment(theirs) {
                done = Some(r);
            }
        }
        let (padded, _) = done.expect("complete");
        assert_eq!(
            NymPadded::new_reconstructed(padded)
                .remove_padding()
                .expect("unpad")
                .into_inner_data(),
            msg
        );
    }
}

/// Nym's `NymMessage::required_packets` takes the one byte of padding off
/// every packet's capacity instead of once per message, so just below a
/// fragment boundary it counts one packet more than its own splitter then
/// produces. Ours returns the real count. Ignored: documents the difference
/// (it only matters where a count is used to size reply-SURB requests).
#[test]
#[ignore = "known difference: Nym's required_packets estimate is off by one below boundaries"]
fn required_packets_estimate_matches_nym() {
    let mut diffs = Vec::new();
    for len in lengths() {
        let ours = NymMessage::Plain(vec![0; len]).required_packets(PacketSize::Regular);
        let theirs =
            NymNymMessage::new_plain(vec![0; len]).required_packets(NymPacketSize::RegularPacket);
        if ours != theirs {
            diffs.push(format!("len {len}: ours {ours}, Nym {theirs}"));
        }
    }
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
}
