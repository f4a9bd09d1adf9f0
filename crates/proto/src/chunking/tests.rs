//! Tests of fragmentation and reassembly: Nym's capacity, fragment and set
//! cases, and property tests of the whole split-and-reassemble round trip.
//! Its helpers are shared with the tests of [`crate::message`].

use std::time::{Duration, Instant};

use proptest::prelude::*;
use rand::seq::SliceRandom;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

use super::*;
use crate::message::{NymMessage, PaddedMessage};
use crate::params::{FragmentId, PacketSize};

/// The capacity Nym's chunking tests use: regular plaintext minus an ack
/// packet (2048 − 386).
const NYM_TEST_CAPACITY: usize = 1662;
const SET_LEN: usize = MAX_FRAGMENTS_PER_SET;

pub(crate) fn rng() -> ChaCha20Rng {
    ChaCha20Rng::from_seed([7u8; 32])
}

pub(crate) fn random_bytes(rng: &mut ChaCha20Rng, n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    rng.fill_bytes(&mut v);
    v
}

// ---- arithmetic (ported inputs/expectations of Nym's chunking tests) ----

#[test]
fn number_of_required_fragments_matches_nym() {
    // 1643 = 2048 − 386 − 19, as in Nym's test.
    for cap in [17usize, 1643, 20, 42, 10000] {
        let u = unlinked_payload_len(cap);
        let l = linked_payload_len(cap);
        let edge = one_way_linked_set_len(cap);
        let middle = two_way_linked_set_len(cap);
        let cases: [(usize, usize, usize); 14] = [
            (u - 5, 1, 5),
            (u, 1, 0),
            (u + 1, 2, u - 1),
            (2 * u, 2, 0),
            (u * 42 - 5, 42, 5),
            (u * 42, 42, 0),
            (edge + l - 1, SET_LEN + 1, 1),
            (edge + l, SET_LEN + 1, 0),
            (edge + l + u * 41 - 5, SET_LEN + 42, 5),
            (edge + l + u * 41, SET_LEN + 42, 0),
            (edge + 8 * middle + l - 1, 9 * SET_LEN + 1, 1),
            (edge + 8 * middle + l, 9 * SET_LEN + 1, 0),
            (edge + 8 * middle + l + 41 * u - 5, 9 * SET_LEN + 42, 5),
            (edge + 8 * middle + l + 41 * u, 9 * SET_LEN + 42, 0),
        ];
        for (len, frags, left) in cases {
            assert_eq!(
                number_of_required_fragments(len, cap),
                (frags, left),
                "capacity {cap}, length {len}"
            );
        }
    }
}

#[test]
fn total_number_of_sets_matches_nym() {
    let c = NYM_TEST_CAPACITY;
    let unl = max_unlinked_set_len(c);
    let one = one_way_linked_set_len(c);
    let two = two_way_linked_set_len(c);
    let cases = [
        (unl - 1, 1),
        (unl, 1),
        (unl + 1, 2),
        (2 * one, 2),
        (2 * one + 1, 3),
        (2 * one + two - 1, 3),
        (2 * one + two, 3),
        (2 * one + two + 1, 4),
        (2 * one + 2 * two - 1, 4),
        (2 * one + 2 * two, 4),
        (2 * one + 2 * two + 1, 5),
    ];
    for (len, sets) in cases {
        assert_eq!(total_number_of_sets(len, c), sets, "length {len}");
    }
}

#[test]
fn regular_packet_numbers() {
    let cap = PacketSize::Regular.fragment_capacity();
    assert_eq!(cap, 1611);
    assert_eq!(unlinked_payload_len(cap), 1604);
    assert_eq!(linked_payload_len(cap), 1601);
    assert_eq!(max_unlinked_set_len(cap), 255 * 1604);
    assert_eq!(one_way_linked_set_len(cap), 255 * 1604 - 3);
    assert_eq!(two_way_linked_set_len(cap), 255 * 1604 - 6);
}

// ---- fragment headers (ported from Nym's fragment tests) ----

fn hdr(
    id: i32,
    t: u8,
    c: u8,
    p: Option<i32>,
    n: Option<i32>,
) -> Result<FragmentHeader, ChunkingError> {
    FragmentHeader::new(id, t, c, p, n)
}

#[test]
fn header_layouts() {
    let h = hdr(12345, 10, 5, None, None).expect("valid");
    assert_eq!(h.to_bytes(), vec![0x80, 0x00, 0x30, 0x39, 10, 5, 0]);
    let h = hdr(12345, 10, 1, Some(1234), None).expect("valid");
    assert_eq!(
        h.to_bytes(),
        vec![0x80, 0x00, 0x30, 0x39, 10, 1, 0x80, 0x00, 0x04, 0xd2]
    );
    let h = hdr(i32::MAX, 255, 255, None, Some(1)).expect("valid");
    assert_eq!(
        h.to_bytes(),
        vec![0xff, 0xff, 0xff, 0xff, 255, 255, 0x80, 0, 0, 1]
    );
}

#[test]
fn header_round_trips_exact_and_with_extra_bytes() {
    for (h, len) in [
        (hdr(12345, 10, 5, None, None), UNLINKED_HEADER_LEN),
        (hdr(12345, 10, 1, Some(1234), None), LINKED_HEADER_LEN),
        (hdr(12345, 1, 1, Some(1234), None), LINKED_HEADER_LEN),
        (hdr(12345, 255, 255, None, Some(1234)), LINKED_HEADER_LEN),
    ] {
        let h = h.expect("valid");
        let mut b = h.to_bytes();
        assert_eq!(FragmentHeader::parse(&b), Ok((h, len)));
        b.extend_from_slice(&[1, 2, 3, 4, 5]);
        assert_eq!(FragmentHeader::parse(&b), Ok((h, len)));
        let short = &h.to_bytes()[..len - 1];
        assert!(matches!(
            FragmentHeader::parse(short),
            Err(ChunkingError::TooShortHeader { .. })
        ));
    }
}

#[test]
fn header_flags_are_checked() {
    let mut b = hdr(10, 10, 5, None, None).expect("valid").to_bytes();
    b[0] &= 0x7f;
    assert_eq!(
        FragmentHeader::parse(&b),
        Err(ChunkingError::MissingSetIdFlag)
    );
    b[0] |= 1 << 3;
    assert_eq!(
        FragmentHeader::parse(&b),
        Err(ChunkingError::MissingSetIdFlag)
    );

    // A link byte on fragment 5 of 10: a link where none may be.
    let mut b = hdr(12345, 10, 5, None, None).expect("valid").to_bytes();
    b[6] |= 0x80;
    b.extend_from_slice(&[0, 0, 1]);
    assert!(matches!(
        FragmentHeader::parse(&b),
        Err(ChunkingError::MisplacedLink { .. })
    ));
    // Non-zero link byte without the flag bit.
    let mut b = hdr(12345, 10, 1, None, None).expect("valid").to_bytes();
    b[6] = 0x01;
    b.extend_from_slice(&[0, 0, 1]);
    assert_eq!(
        FragmentHeader::parse(&b),
        Err(ChunkingError::MissingLinkFlag)
    );
}

#[test]
fn header_construction_rules() {
    assert!(hdr(12345, 10, 11, None, None).is_err());
    assert!(hdr(12345, 10, 0, None, None).is_err());
    assert!(hdr(12345, 0, 0, None, None).is_err());
    assert!(hdr(-10, 10, 5, None, None).is_err());
    assert!(hdr(0, 10, 5, None, None).is_err());
    assert!(hdr(12345, 10, 5, Some(0), None).is_err());
    assert!(hdr(12345, 255, 255, None, Some(0)).is_err());
    assert!(hdr(12345, 10, 1, Some(12345), None).is_err());
    assert!(hdr(12345, 10, 10, None, Some(12345)).is_err());
    assert!(hdr(12345, 10, 1, Some(1234), None).is_ok());
    assert!(hdr(12345, 10, 2, Some(1234), None).is_err());
    assert!(hdr(12345, 10, 10, None, Some(1234)).is_ok());
    assert!(hdr(12345, 255, 255, None, Some(1234)).is_ok());
}

#[test]
fn header_parse_rejects_bad_positions() {
    for (t, c) in [(10u8, 11u8), (0, 0), (5, 0), (0, 1)] {
        let b = [0x80, 0, 4, 0xd2, t, c, 0];
        assert!(matches!(
            FragmentHeader::parse(&b),
            Err(ChunkingError::InvalidPosition { .. })
        ));
    }
    // Fragment 1 of 1 with a link is a previous-set link.
    let b = [0x80, 0, 0, 9, 1, 1, 0x80, 0, 0, 8];
    let (h, _) = FragmentHeader::parse(&b).expect("valid");
    assert_eq!((h.previous_set(), h.next_set()), (Some(8), None));
    // Fragment 10 of 10 with a link is not allowed on the wire (only 255/255).
    let b = [0x80, 0, 0, 9, 10, 10, 0x80, 0, 0, 8];
    assert!(FragmentHeader::parse(&b).is_err());
}

fn frag(
    payload_len: usize,
    t: u8,
    c: u8,
    p: Option<i32>,
    n: Option<i32>,
) -> Result<Fragment, ChunkingError> {
    Fragment::new(
        hdr(12345, t, c, p, n)?,
        vec![1u8; payload_len],
        NYM_TEST_CAPACITY,
    )
}

#[test]
fn unlinked_fragment_payload_rules() {
    let u = unlinked_payload_len(NYM_TEST_CAPACITY);
    for (len, t, c) in [
        (u, 10, 1),
        (u, 10, 5),
        (u, 10, 10),
        (u, 1, 1),
        (u - 1, 10, 10),
        (u - 1, 1, 1),
        (u - 60, 10, 10),
        (u - 60, 1, 1),
    ] {
        assert!(frag(len, t, c, None, None).is_ok(), "{len} {t} {c}");
    }
    for (len, t, c) in [
        (u - 1, 10, 1),
        (u - 1, 10, 5),
        (u + 1, 10, 1),
        (u + 1, 10, 5),
        (u + 1, 1, 1),
        (u - 20, 10, 1),
        (u - 20, 10, 5),
    ] {
        assert!(frag(len, t, c, None, None).is_err(), "{len} {t} {c}");
    }
}

#[test]
fn linked_fragment_payload_rules() {
    let l = linked_payload_len(NYM_TEST_CAPACITY);
    let link = Some(1234);
    assert!(frag(l, 10, 1, link, None).is_ok());
    assert!(frag(l, 1, 1, link, None).is_ok());
    assert!(frag(l - 1, 1, 1, link, None).is_ok());
    assert!(frag(l - 20, 1, 1, link, None).is_ok());
    assert!(frag(l, 255, 255, None, link).is_ok());

    assert!(frag(l - 1, 10, 1, link, None).is_err());
    assert!(frag(l - 20, 10, 1, link, None).is_err());
    assert!(frag(l + 1, 10, 1, link, None).is_err());
    assert!(frag(l + 1, 1, 1, link, None).is_err());
    assert!(frag(l - 1, 255, 255, None, link).is_err());
    assert!(frag(l - 20, 255, 255, None, link).is_err());
    assert!(frag(l + 1, 255, 255, None, link).is_err());
}

#[test]
fn fragments_round_trip_through_bytes() {
    let u = unlinked_payload_len(NYM_TEST_CAPACITY);
    let l = linked_payload_len(NYM_TEST_CAPACITY);
    for f in [
        frag(40, 1, 1, None, None),
        frag(0, 1, 1, None, None),
        frag(u, 10, 5, None, None),
        frag(u, 10, 10, None, None),
        frag(u - 20, 10, 10, None, None),
        frag(l, 10, 1, Some(1234), None),
        frag(l - 20, 1, 1, Some(1234), None),
        frag(l, 255, 255, None, Some(1234)),
    ] {
        let f = f.expect("valid");
        let b = f.to_bytes();
        assert_eq!(b.len(), f.encoded_len());
        assert_eq!(Fragment::from_bytes(&b), Ok(f.clone()));
        assert_eq!(
            f.id(),
            FragmentId {
                set_id: 12345,
                position: f.current()
            }
        );
    }
}

// ---- splitting (ported from Nym's set tests) ----

/// Check a set's fragments carry `payload` laid out as the splitter must:
/// linked first/last fragments when `prev`/`next`, full fragments except
/// possibly the last, serialised lengths never above the capacity.
fn verify_set(set: &[Fragment], payload: &[u8], prev: bool, next: bool, cap: usize) {
    let joined: Vec<u8> = set.iter().flat_map(|f| f.payload().to_vec()).collect();
    assert_eq!(joined, payload);
    let n = set.len();
    assert!((1..=SET_LEN).contains(&n));
    let id = set[0].set_id();
    for (i, f) in set.iter().enumerate() {
        assert_eq!(f.set_id(), id);
        assert_eq!(usize::from(f.total()), n);
        assert_eq!(usize::from(f.current()), i + 1);
        assert!(f.encoded_len() <= cap);
        let is_first_linked = i == 0 && prev;
        let is_last_linked = i + 1 == n && next;
        assert_eq!(f.header().previous_set().is_some(), is_first_linked);
        assert_eq!(f.header().next_set().is_some(), is_last_linked);
        if i + 1 < n || is_last_linked {
            assert_eq!(
                f.encoded_len(),
                cap,
                "fragment {} of {n} must be full",
                i + 1
            );
        }
    }
    if next {
        assert_eq!(n, SET_LEN);
    }
}

fn verify_link(a: &[Fragment], b: &[Fragment]) {
    let last = a.last().expect("non-empty");
    assert_eq!(last.header().next_set(), Some(b[0].set_id()));
    assert_eq!(b[0].header().previous_set(), Some(a[0].set_id()));
}

#[test]
fn single_set_split() {
    let cap = NYM_TEST_CAPACITY;
    let mut r = rng();
    let msg = random_bytes(&mut r, max_unlinked_set_len(cap) - 2345);
    let sets = split_into_sets(&mut r, &msg, cap).expect("split");
    assert_eq!(sets.len(), 1);
    verify_set(&sets[0], &msg, false, false, cap);
}

#[test]
fn two_sets_with_small_second_set() {
    let cap = NYM_TEST_CAPACITY;
    let one = one_way_linked_set_len(cap);
    let mut r = rng();
    for extra in [123usize, 2345, one] {
        let msg = random_bytes(&mut r, one + extra);
        let sets = split_into_sets(&mut r, &msg, cap).expect("split");
        assert_eq!(sets.len(), 2);
        verify_link(&sets[0], &sets[1]);
        verify_set(&sets[0], &msg[..one], false, true, cap);
        verify_set(&sets[1], &msg[one..], true, false, cap);
    }
    let msg = random_bytes(&mut r, 2 * one);
    let sets = split_into_sets(&mut r, &msg, cap).expect("split");
    assert_eq!((sets[0].len(), sets[1].len()), (SET_LEN, SET_LEN));
}

#[test]
fn four_sets() {
    let cap = NYM_TEST_CAPACITY;
    let one = one_way_linked_set_len(cap);
    let two = two_way_linked_set_len(cap);
    let mut r = rng();
    for tail in [2345usize, one] {
        let msg = random_bytes(&mut r, 2 * two + one + tail);
        let sets = split_into_sets(&mut r, &msg, cap).expect("split");
        assert_eq!(sets.len(), 4);
        for w in sets.windows(2) {
            verify_link(&w[0], &w[1]);
        }
        verify_set(&sets[0], &msg[..one], false, true, cap);
        verify_set(&sets[1], &msg[one..one + two], true, true, cap);
        verify_set(&sets[2], &msg[one + two..one + 2 * two], true, true, cap);
        verify_set(&sets[3], &msg[one + 2 * two..], true, false, cap);
        if tail == one {
            assert_eq!(sets[3].len(), SET_LEN);
        }
    }
}

#[test]
fn set_ids_are_positive_and_distinct() {
    let mut r = rng();
    for _ in 0..1000 {
        let id = random_set_id(&mut r);
        assert!(id >= 1);
    }
    let cap = 20;
    let msg = random_bytes(&mut r, 10 * max_unlinked_set_len(cap));
    let sets = split_into_sets(&mut r, &msg, cap).expect("split");
    let mut ids: Vec<i32> = sets.iter().map(|s| s[0].set_id()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), sets.len());
}

#[test]
fn split_rejects_bad_input() {
    let mut r = rng();
    assert_eq!(
        split_into_sets(&mut r, &[1, 2, 3], 10),
        Err(ChunkingError::CapacityTooSmall(10))
    );
    assert_eq!(
        split_into_sets(&mut r, &[], 100),
        Err(ChunkingError::EmptyMessage)
    );
}

// ---- reassembly ----

fn fragments_of(r: &mut ChaCha20Rng, len: usize, cap: usize) -> (NymMessage, Vec<Fragment>) {
    let m = NymMessage::Plain(random_bytes(r, len));
    let f = m
        .pad(cap)
        .expect("pad")
        .split_into_fragments(r, cap)
        .expect("split");
    (m, f)
}

pub(crate) fn feed(
    re: &mut Reassembler,
    frags: Vec<Fragment>,
    now: Instant,
) -> Vec<ReassembledMessage> {
    frags
        .into_iter()
        .filter_map(|f| match re.insert(f, now).expect("insert").outcome {
            InsertOutcome::Complete(m) => Some(m),
            _ => None,
        })
        .collect()
}

#[test]
fn reassembles_nym_reconstruction_cases() {
    let cap = 1024;
    let mut r = rng();
    let now = Instant::now();
    for len in [
        42,
        unlinked_payload_len(cap) * 3,
        one_way_linked_set_len(cap) + 123,
        one_way_linked_set_len(cap) + unlinked_payload_len(cap),
    ] {
        let (m, mut frags) = fragments_of(&mut r, len, cap);
        frags.reverse();
        let mut re = Reassembler::default();
        let out = feed(&mut re, frags, now);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].clone().into_message(), Ok(m));
        assert_eq!(re.buffered_bytes(), 0);
        assert_eq!(re.buffered_sets(), 0);
    }
}

#[test]
fn duplicates_are_ignored_and_recent_sets_suppressed() {
    let cap = 100;
    let mut r = rng();
    let now = Instant::now();
    let (m, frags) = fragments_of(&mut r, 500, cap);
    let mut re = Reassembler::default();
    let first = re.insert(frags[0].clone(), now).expect("insert");
    assert_eq!(first.outcome, InsertOutcome::Buffered);
    let dup = re.insert(frags[0].clone(), now).expect("insert");
    assert_eq!(dup.outcome, InsertOutcome::Duplicate);
    let out = feed(&mut re, frags[1..].to_vec(), now);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].clone().into_message(), Ok(m));
    let set_id = frags[0].set_id();
    assert!(re.recently_completed(set_id));
    for f in frags {
        assert_eq!(
            re.insert(f, now).expect("insert").outcome,
            InsertOutcome::Duplicate
        );
    }
    assert_eq!(re.buffered_sets(), 0);
}

#[test]
fn sets_completed_before_a_restart_are_duplicates_after_it() {
    let cap = 100;
    let mut r = rng();
    let now = Instant::now();
    let (_, frags) = fragments_of(&mut r, 500, cap);
    let mut before = Reassembler::default();
    let done = feed(&mut before, frags.clone(), now);
    assert_eq!(done.len(), 1);
    // A new reassembler told what the old one completed ignores the
    // sender's retransmission of the whole set.
    let mut after = Reassembler::default();
    for id in &done[0].set_ids {
        after.remember_completed(*id);
    }
    for f in frags {
        assert_eq!(
            after.insert(f, now).expect("insert").outcome,
            InsertOutcome::Duplicate
        );
    }
}

#[test]
fn recent_set_memory_is_bounded() {
    let cap = 100;
    let mut r = rng();
    let now = Instant::now();
    let mut re = Reassembler::new(ReassemblyConfig {
        recently_completed: 3,
        ..ReassemblyConfig::default()
    });
    let mut ids = Vec::new();
    for _ in 0..5 {
        let (_, frags) = fragments_of(&mut r, 10, cap);
        ids.push(frags[0].set_id());
        assert_eq!(feed(&mut re, frags, now).len(), 1);
    }
    assert!(!re.recently_completed(ids[0]));
    assert!(!re.recently_completed(ids[1]));
    assert!(ids[2..].iter().all(|&id| re.recently_completed(id)));
}

#[test]
fn inconsistent_total_is_rejected() {
    let now = Instant::now();
    let mut re = Reassembler::default();
    let a = Fragment::from_bytes(&[0x80, 0, 0, 9, 3, 1, 0, 7, 7]).expect("frag");
    let b = Fragment::from_bytes(&[0x80, 0, 0, 9, 4, 4, 0, 7]).expect("frag");
    assert_eq!(
        re.insert(a, now).expect("insert").outcome,
        InsertOutcome::Buffered
    );
    assert_eq!(
        re.insert(b, now),
        Err(ReassemblyError::InconsistentTotal {
            set_id: 9,
            expected: 3,
            got: 4
        })
    );
}

#[test]
fn hostile_link_cycle_does_not_hang() {
    let now = Instant::now();
    let mut re = Reassembler::default();
    // Two one-fragment sets, each claiming the other as its previous set.
    let a = Fragment::from_bytes(&[0x80, 0, 0, 1, 1, 1, 0x80, 0, 0, 2, 5]).expect("frag");
    let b = Fragment::from_bytes(&[0x80, 0, 0, 2, 1, 1, 0x80, 0, 0, 1, 6]).expect("frag");
    assert_eq!(
        re.insert(a, now).expect("insert").outcome,
        InsertOutcome::Buffered
    );
    assert_eq!(
        re.insert(b, now).expect("insert").outcome,
        InsertOutcome::Buffered
    );
    // A 255-set ring linked forwards is also bounded.
    let mut re = Reassembler::default();
    let mut ring = Vec::new();
    for id in 1..=2i32 {
        let other = 3 - id;
        for pos in 1..=255u8 {
            let h = if pos == 1 {
                hdr(id, 255, 1, Some(other), None)
            } else if pos == 255 {
                hdr(id, 255, 255, None, Some(other))
            } else {
                hdr(id, 255, pos, None, None)
            }
            .expect("header");
            let mut b = h.to_bytes();
            b.push(pos);
            ring.push(Fragment::from_bytes(&b).expect("frag"));
        }
    }
    assert!(feed(&mut re, ring, now).is_empty());
}

#[test]
fn memory_bound_evicts_oldest() {
    let cap = 100;
    let per = unlinked_payload_len(cap);
    let charged = per + FRAGMENT_ACCOUNTING_OVERHEAD;
    let mut r = rng();
    let t0 = Instant::now();
    let mut re = Reassembler::new(ReassemblyConfig {
        max_buffered_bytes: 5 * charged,
        ..ReassemblyConfig::default()
    });
    // Three incomplete messages of 3 fragments; feed 2 of each.
    let msgs: Vec<_> = (0..3)
        .map(|_| fragments_of(&mut r, 2 * per + 10, cap))
        .collect();
    let mut evicted = Vec::new();
    for (i, (_, f)) in msgs.iter().enumerate() {
        for frag in &f[..2] {
            let t = t0 + Duration::from_secs(i as u64);
            evicted.extend(re.insert(frag.clone(), t).expect("insert").evicted);
        }
    }
    assert!(re.buffered_bytes() <= 5 * charged);
    assert_eq!(evicted.len(), 1);
    assert_eq!(evicted[0].set_id, msgs[0].1[0].set_id());
    assert_eq!(evicted[0].reason, DropReason::OverLimit);
    assert_eq!(evicted[0].received, 2);
    // The newer messages still complete.
    for (m, f) in &msgs[1..] {
        let out = feed(&mut re, f[2..].to_vec(), t0);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].clone().into_message().as_ref(), Ok(m));
    }
    assert_eq!(re.buffered_bytes(), 0);
    // A fragment bigger than the whole bound is refused.
    let mut tiny = Reassembler::new(ReassemblyConfig {
        max_buffered_bytes: 4,
        ..ReassemblyConfig::default()
    });
    assert!(matches!(
        tiny.insert(msgs[0].1[0].clone(), t0),
        Err(ReassemblyError::TooLarge { .. })
    ));
}

#[test]
fn set_count_bound_evicts_oldest() {
    let cap = 100;
    let mut r = rng();
    let t0 = Instant::now();
    let mut re = Reassembler::new(ReassemblyConfig {
        max_sets: 2,
        ..ReassemblyConfig::default()
    });
    let msgs: Vec<_> = (0..3).map(|_| fragments_of(&mut r, 300, cap)).collect();
    let mut evicted = Vec::new();
    for (_, f) in &msgs {
        evicted.extend(re.insert(f[0].clone(), t0).expect("insert").evicted);
    }
    assert_eq!(re.buffered_sets(), 2);
    assert_eq!(evicted.len(), 1);
    assert_eq!(evicted[0].set_id, msgs[0].1[0].set_id());
}

#[test]
fn purge_drops_stale_buffers() {
    let cap = 100;
    let mut r = rng();
    let t0 = Instant::now();
    let mut re = Reassembler::default();
    let (_, a) = fragments_of(&mut r, 300, cap);
    let (mb, b) = fragments_of(&mut r, 300, cap);
    re.insert(a[0].clone(), t0).expect("insert");
    re.insert(b[0].clone(), t0 + Duration::from_secs(600))
        .expect("insert");
    assert!(re.purge(t0 + Duration::from_secs(29 * 60)).is_empty());
    let dropped = re.purge(t0 + ReassemblyConfig::DEFAULT_TIMEOUT);
    assert_eq!(dropped.len(), 1);
    assert_eq!(dropped[0].set_id, a[0].set_id());
    assert_eq!(dropped[0].reason, DropReason::TimedOut);
    assert_eq!(re.buffered_sets(), 1);
    let out = feed(&mut re, b[1..].to_vec(), t0 + Duration::from_secs(1200));
    assert_eq!(out[0].clone().into_message(), Ok(mb));
    assert_eq!(re.buffered_bytes(), 0);
}

#[test]
fn regular_message_spanning_linked_sets() {
    // > 255 regular fragments: two linked sets.
    let cap = PacketSize::Regular.fragment_capacity();
    let mut r = rng();
    let (m, mut frags) = fragments_of(&mut r, one_way_linked_set_len(cap) + 5000, cap);
    assert_eq!(frags.len(), 255 + 4);
    assert!(frags.iter().all(|f| f.to_bytes().len() == cap));
    frags.shuffle(&mut r);
    let mut re = Reassembler::default();
    let out = feed(&mut re, frags, Instant::now());
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].set_ids.len(), 2);
    assert_eq!(out[0].clone().into_message(), Ok(m));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn round_trip_with_shuffle_and_duplicates(
        len in 0usize..12_000,
        cap in prop_oneof![Just(20usize), Just(64), Just(300)],
        seed in any::<[u8; 32]>(),
    ) {
        let mut r = ChaCha20Rng::from_seed(seed);
        let (m, frags) = fragments_of(&mut r, len, cap);
        let padded_len = m.pad(cap).expect("pad").as_bytes().len();
        prop_assert_eq!(
            frags.len(),
            number_of_required_fragments(m.serialized_len() + 1, cap).0
        );
        prop_assert!(frags.iter().all(|f| f.to_bytes().len() == cap));
        // Duplicate a third of the fragments, shuffle, feed as bytes.
        let mut wire: Vec<Vec<u8>> = frags.iter().map(Fragment::to_bytes).collect();
        let dups: Vec<Vec<u8>> = wire.iter().step_by(3).cloned().collect();
        wire.extend(dups);
        wire.shuffle(&mut r);
        let mut re = Reassembler::default();
        let mut done = Vec::new();
        for w in &wire {
            if let InsertOutcome::Complete(msg) = re.insert_bytes(w, Instant::now()).expect("insert").outcome {
                done.push(msg);
            }
        }
        prop_assert_eq!(done.len(), 1);
        prop_assert_eq!(done[0].data.len(), padded_len);
        prop_assert_eq!(done[0].set_ids.len(), total_number_of_sets(padded_len, cap));
        prop_assert_eq!(done[0].clone().into_message(), Ok(m));
        prop_assert_eq!(re.buffered_bytes(), 0);
    }


    #[test]
    fn parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = Fragment::from_bytes(&bytes);
        let _ = NymMessage::from_bytes(&bytes);
        let _ = PaddedMessage::new(bytes.clone()).unpad();
        let mut re = Reassembler::default();
        let _ = re.insert_bytes(&bytes, Instant::now());
    }

    #[test]
    fn reassembler_survives_random_fragments(
        frags in proptest::collection::vec(
            (1i32..4, 1u8..4, 1u8..4, any::<Option<bool>>(), 1i32..4, 0usize..8),
            0..60,
        )
    ) {
        let mut re = Reassembler::new(ReassemblyConfig {
            max_buffered_bytes: 3 * FRAGMENT_ACCOUNTING_OVERHEAD,
            max_sets: 2,
            ..ReassemblyConfig::default()
        });
        let now = Instant::now();
        for (id, total, current, link, link_id, len) in frags {
            let mut b = Vec::new();
            b.extend_from_slice(&(id as u32 | 0x8000_0000).to_be_bytes());
            b.push(total);
            b.push(current);
            match link {
                None => b.push(0),
                Some(_) => b.extend_from_slice(&(link_id as u32 | 0x8000_0000).to_be_bytes()),
            }
            b.extend(std::iter::repeat_n(7u8, len));
            let _ = re.insert_bytes(&b, now);
            prop_assert!(re.buffered_bytes() <= 3 * FRAGMENT_ACCOUNTING_OVERHEAD);
            prop_assert!(re.buffered_sets() <= 2);
        }
    }
}
