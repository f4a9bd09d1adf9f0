//! Splitting: cutting a padded message into sets of fragments, linked into a
//! chain when it needs more than one set.

use rand::Rng;

use super::capacity::{
    linked_payload_len, max_unlinked_set_len, one_way_linked_set_len, total_number_of_sets,
    two_way_linked_set_len, unlinked_payload_len,
};
use super::fragment::{Fragment, FragmentHeader};
use super::{ChunkingError, MAX_FRAGMENTS_PER_SET, MIN_FRAGMENT_CAPACITY};

/// A random set id in `1..=i32::MAX`: the absolute value of a random `i32`,
/// redrawing 0 and `i32::MIN`.
pub fn random_set_id<R: Rng + ?Sized>(rng: &mut R) -> i32 {
    loop {
        let v: i32 = rng.gen();
        if v != 0 && v != i32::MIN {
            return v.abs();
        }
    }
}

fn unlinked_set(message: &[u8], id: i32, capacity: usize) -> Result<Vec<Fragment>, ChunkingError> {
    let step = unlinked_payload_len(capacity);
    let count = message.len().div_ceil(step);
    let total = u8::try_from(count).map_err(|_| ChunkingError::PayloadTooLong {
        received: message.len(),
        max: max_unlinked_set_len(capacity),
    })?;
    message
        .chunks(step)
        .zip(1..=total)
        .map(|(chunk, i)| {
            Fragment::new(
                FragmentHeader::new(id, total, i, None, None)?,
                chunk.to_vec(),
                capacity,
            )
        })
        .collect()
}

fn linked_set(
    message: &[u8],
    id: i32,
    previous: Option<i32>,
    next: Option<i32>,
    capacity: usize,
) -> Result<Vec<Fragment>, ChunkingError> {
    let linked = linked_payload_len(capacity);
    let unlinked = unlinked_payload_len(capacity);
    let count = if next.is_some() {
        MAX_FRAGMENTS_PER_SET
    } else {
        1 + message.len().saturating_sub(linked).div_ceil(unlinked)
    };
    let total = u8::try_from(count).map_err(|_| ChunkingError::PayloadTooLong {
        received: message.len(),
        max: one_way_linked_set_len(capacity),
    })?;

    let mut fragments = Vec::with_capacity(count);
    let mut start = 0usize;
    let mut end = if previous.is_some() {
        message.len().min(linked)
    } else {
        unlinked
    };
    for i in 1..=total {
        let chunk = message
            .get(start..end)
            .ok_or(ChunkingError::PayloadLength {
                received: message.len(),
                expected: end,
            })?;
        let header = FragmentHeader::new(
            id,
            total,
            i,
            if i == 1 { previous } else { None },
            if i == total { next } else { None },
        )?;
        fragments.push(Fragment::new(header, chunk.to_vec(), capacity)?);
        start = end;
        end = message.len().min(end + unlinked);
    }
    Ok(fragments)
}

/// Split `message` into sets of fragments with serialised length at most
/// `capacity` (exactly `capacity` when the message was padded by
/// [`NymMessage::pad`](crate::message::NymMessage::pad)). Messages longer
/// than one set become a chain of linked sets; set ids are drawn from `rng`
/// and are distinct within the message.
pub fn split_into_sets<R: Rng + ?Sized>(
    rng: &mut R,
    message: &[u8],
    capacity: usize,
) -> Result<Vec<Vec<Fragment>>, ChunkingError> {
    if capacity < MIN_FRAGMENT_CAPACITY {
        return Err(ChunkingError::CapacityTooSmall(capacity));
    }
    if message.is_empty() {
        return Err(ChunkingError::EmptyMessage);
    }
    let sets = total_number_of_sets(message.len(), capacity);
    if sets == 1 {
        return Ok(vec![unlinked_set(message, random_set_id(rng), capacity)?]);
    }

    let mut ids: Vec<i32> = Vec::with_capacity(sets);
    while ids.len() < sets {
        let id = random_set_id(rng);
        // Distinct ids: a repeat would make a set link to itself.
        if !ids.contains(&id) {
            ids.push(id);
        }
    }

    let one_way = one_way_linked_set_len(capacity);
    let two_way = two_way_linked_set_len(capacity);
    let mut out = Vec::with_capacity(sets);
    let mut start = 0usize;
    let mut end = one_way;
    for i in 0..sets {
        let previous = if i == 0 { None } else { Some(ids[i - 1]) };
        let next = ids.get(i + 1).copied();
        let part = message
            .get(start..end)
            .ok_or(ChunkingError::PayloadLength {
                received: message.len(),
                expected: end,
            })?;
        out.push(linked_set(part, ids[i], previous, next, capacity)?);
        start = end;
        let step = if i + 2 == sets { one_way } else { two_way };
        end = message.len().min(end + step);
    }
    Ok(out)
}
