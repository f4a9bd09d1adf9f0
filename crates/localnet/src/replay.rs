//! Replay detection on sphinx replay tags with bounded memory.
//!
//! Nym uses a bloom filter reset at each key rotation. Here the tags are kept
//! exactly in two generations: when the current one is full it becomes the
//! previous one and the old previous one is forgotten. So the last
//! `generation` tags are always remembered, at most `2 × generation` are
//! held, and there are no false positives.

use std::collections::HashSet;

use nymd_proto::sphinx::REPLAY_TAG_LEN;

/// Remembers recent replay tags.
#[derive(Debug)]
pub struct ReplayFilter {
    current: HashSet<[u8; REPLAY_TAG_LEN]>,
    previous: HashSet<[u8; REPLAY_TAG_LEN]>,
    generation: usize,
}

impl ReplayFilter {
    /// A filter remembering at least the last `generation` tags (minimum 1).
    pub fn new(generation: usize) -> Self {
        Self {
            current: HashSet::new(),
            previous: HashSet::new(),
            generation: generation.max(1),
        }
    }

    /// Record `tag`; false if it was already known (a replay).
    pub fn insert(&mut self, tag: &[u8; REPLAY_TAG_LEN]) -> bool {
        if self.previous.contains(tag) || self.current.contains(tag) {
            return false;
        }
        if self.current.len() >= self.generation {
            self.previous = std::mem::take(&mut self.current);
        }
        self.current.insert(*tag);
        true
    }

    /// Tags held now.
    pub fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }

    /// Whether no tag is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(i: u32) -> [u8; REPLAY_TAG_LEN] {
        let mut t = [0u8; REPLAY_TAG_LEN];
        t[..4].copy_from_slice(&i.to_be_bytes());
        t
    }

    #[test]
    fn detects_replays_and_stays_bounded() {
        let mut f = ReplayFilter::new(10);
        for i in 0..10 {
            assert!(f.insert(&tag(i)));
        }
        assert!(!f.insert(&tag(3)));
        for i in 10..1000 {
            assert!(f.insert(&tag(i)));
            assert!(f.len() <= 20);
            // The last `generation` tags are always remembered.
            assert!(!f.insert(&tag(i)));
            assert!(!f.insert(&tag(i.saturating_sub(9))));
        }
        // Long-forgotten tags are accepted again.
        assert!(f.insert(&tag(0)));
    }
}
