//! Reassembly: collecting received fragments, by set id, into the padded
//! bytes of whole messages, within memory, set-count and time bounds.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use super::fragment::Fragment;
use super::{ChunkingError, MAX_FRAGMENTS_PER_SET};

/// Limits of a [`Reassembler`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReassemblyConfig {
    /// Most bytes buffered across all incomplete messages, counting each
    /// fragment as its payload plus [`FRAGMENT_ACCOUNTING_OVERHEAD`].
    pub max_buffered_bytes: usize,
    /// Most sets buffered at once.
    pub max_sets: usize,
    /// Sets with no new fragment for this long are dropped by
    /// [`Reassembler::purge`].
    pub incomplete_timeout: Duration,
    /// How many recently completed set ids are remembered to ignore late
    /// duplicates.
    pub recently_completed: usize,
}

impl ReassemblyConfig {
    /// Nym's timeout for incomplete messages: 30 minutes.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);
}

impl Default for ReassemblyConfig {
    fn default() -> Self {
        Self {
            max_buffered_bytes: 128 * 1024 * 1024,
            max_sets: 16 * 1024,
            incomplete_timeout: Self::DEFAULT_TIMEOUT,
            recently_completed: 16 * 1024,
        }
    }
}

/// A message whose every fragment arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReassembledMessage {
    /// The padded message bytes (see
    /// [`PaddedMessage::unpad`](crate::message::PaddedMessage::unpad)).
    pub data: Vec<u8>,
    /// Set ids of the chain, in order.
    pub set_ids: Vec<i32>,
}

/// Why a buffered set was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Evicted to respect the memory or set-count bound.
    OverLimit,
    /// No fragment arrived within the timeout.
    TimedOut,
}

/// A buffered set that was dropped before its message completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DroppedSet {
    /// Its id.
    pub set_id: i32,
    /// Fragments it had received.
    pub received: usize,
    /// Fragments it expected.
    pub total: u8,
    /// Accounted bytes freed.
    pub bytes: usize,
    /// Why.
    pub reason: DropReason,
}

/// What happened to an inserted fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InsertOutcome {
    /// Stored; its message is not complete yet.
    Buffered,
    /// Ignored: its position was already filled, or its set was recently
    /// completed (a retransmission after a lost ack).
    Duplicate,
    /// It completed a message.
    Complete(ReassembledMessage),
}

/// Result of [`Reassembler::insert`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inserted {
    /// What happened to the fragment.
    pub outcome: InsertOutcome,
    /// Sets evicted to make room for it (oldest activity first).
    pub evicted: Vec<DroppedSet>,
}

/// Fragments that cannot be buffered.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ReassemblyError {
    /// A fragment of a known set disagrees with it about the set size.
    #[error("fragment of set {set_id} says {got} fragments, the set has {expected}")]
    InconsistentTotal {
        /// Set id.
        set_id: i32,
        /// Total announced by the first fragment.
        expected: u8,
        /// Total in this fragment.
        got: u8,
    },
    /// A single fragment larger than the whole memory bound.
    #[error("fragment of {bytes} bytes exceeds the reassembly bound of {limit} bytes")]
    TooLarge {
        /// Accounted size (payload plus [`FRAGMENT_ACCOUNTING_OVERHEAD`]).
        bytes: usize,
        /// Configured bound.
        limit: usize,
    },
    /// The bytes are not a fragment.
    #[error(transparent)]
    Malformed(#[from] ChunkingError),
}

/// Bytes charged per buffered fragment on top of its payload, so that floods
/// of tiny fragments are bounded by [`ReassemblyConfig::max_buffered_bytes`]
/// too.
pub const FRAGMENT_ACCOUNTING_OVERHEAD: usize = 64;

fn accounted_size(fragment: &Fragment) -> usize {
    fragment.payload().len() + FRAGMENT_ACCOUNTING_OVERHEAD
}

#[derive(Debug)]
struct SetBuffer {
    total: u8,
    /// Received fragments by 1-based position (sparse: memory follows what
    /// actually arrived).
    fragments: BTreeMap<u8, Fragment>,
    bytes: usize,
    last_update: Instant,
    touch: u64,
}

impl SetBuffer {
    fn complete(&self) -> bool {
        self.fragments.len() == usize::from(self.total)
    }

    fn previous(&self) -> Option<i32> {
        self.fragments
            .get(&1)
            .and_then(|f| f.header().previous_set())
    }

    fn next(&self) -> Option<i32> {
        if usize::from(self.total) != MAX_FRAGMENTS_PER_SET {
            return None;
        }
        self.fragments
            .get(&self.total)
            .and_then(|f| f.header().next_set())
    }
}

/// Collects fragments into messages. Sans-IO: the caller passes the time.
#[derive(Debug)]
pub struct Reassembler {
    config: ReassemblyConfig,
    sets: HashMap<i32, SetBuffer>,
    /// Activity order: touch counter → set id (oldest first).
    order: BTreeMap<u64, i32>,
    next_touch: u64,
    buffered_bytes: usize,
    recent: HashSet<i32>,
    recent_order: VecDeque<i32>,
}

impl Default for Reassembler {
    fn default() -> Self {
        Self::new(ReassemblyConfig::default())
    }
}

impl Reassembler {
    /// An empty reassembler.
    pub fn new(config: ReassemblyConfig) -> Self {
        Self {
            config,
            sets: HashMap::new(),
            order: BTreeMap::new(),
            next_touch: 0,
            buffered_bytes: 0,
            recent: HashSet::new(),
            recent_order: VecDeque::new(),
        }
    }

    /// The limits in force.
    pub fn config(&self) -> &ReassemblyConfig {
        &self.config
    }

    /// Bytes currently charged against the bound: payloads plus
    /// [`FRAGMENT_ACCOUNTING_OVERHEAD`] per fragment.
    pub fn buffered_bytes(&self) -> usize {
        self.buffered_bytes
    }

    /// Sets currently buffered (complete or not).
    pub fn buffered_sets(&self) -> usize {
        self.sets.len()
    }

    /// Whether `set_id` belongs to a recently completed message.
    pub fn recently_completed(&self, set_id: i32) -> bool {
        self.recent.contains(&set_id)
    }

    /// Treat `set_id` as completed: its fragments are ignored as duplicates
    /// (e.g. ids of messages delivered before a restart, whose senders may
    /// still retransmit them). Bounded like every completed id.
    pub fn remember_completed(&mut self, set_id: i32) {
        self.remember(set_id);
    }

    /// Parse and insert a received fragment.
    pub fn insert_bytes(
        &mut self,
        bytes: &[u8],
        now: Instant,
    ) -> Result<Inserted, ReassemblyError> {
        self.insert(Fragment::from_bytes(bytes)?, now)
    }

    /// Insert a fragment; returns the completed message when it was the last
    /// missing piece.
    pub fn insert(
        &mut self,
        fragment: Fragment,
        now: Instant,
    ) -> Result<Inserted, ReassemblyError> {
        let set_id = fragment.set_id();
        let total = fragment.total();
        let size = accounted_size(&fragment);
        let position = fragment.current();

        let buffered = |outcome| Inserted {
            outcome,
            evicted: Vec::new(),
        };
        if self.recent.contains(&set_id) {
            return Ok(buffered(InsertOutcome::Duplicate));
        }
        if let Some(buf) = self.sets.get(&set_id) {
            if buf.total != total {
                return Err(ReassemblyError::InconsistentTotal {
                    set_id,
                    expected: buf.total,
                    got: total,
                });
            }
            if buf.fragments.contains_key(&position) {
                return Ok(buffered(InsertOutcome::Duplicate));
            }
        }
        if size > self.config.max_buffered_bytes {
            return Err(ReassemblyError::TooLarge {
                bytes: size,
                limit: self.config.max_buffered_bytes,
            });
        }

        let evicted = self.make_room(set_id, size);

        let touch = self.next_touch;
        self.next_touch += 1;
        let buf = self.sets.entry(set_id).or_insert_with(|| SetBuffer {
            total,
            fragments: BTreeMap::new(),
            bytes: 0,
            last_update: now,
            touch,
        });
        self.order.remove(&buf.touch);
        buf.touch = touch;
        buf.last_update = now;
        buf.fragments.insert(position, fragment);
        buf.bytes += size;
        self.buffered_bytes += size;
        let complete = buf.complete();
        self.order.insert(touch, set_id);

        let outcome = if complete {
            match self.try_complete(set_id) {
                Some(msg) => InsertOutcome::Complete(msg),
                None => InsertOutcome::Buffered,
            }
        } else {
            InsertOutcome::Buffered
        };
        Ok(Inserted { outcome, evicted })
    }

    /// Drop sets that received nothing for the configured timeout; returns
    /// what was dropped.
    pub fn purge(&mut self, now: Instant) -> Vec<DroppedSet> {
        let timeout = self.config.incomplete_timeout;
        let stale: Vec<i32> = self
            .sets
            .iter()
            .filter(|(_, b)| now.saturating_duration_since(b.last_update) >= timeout)
            .map(|(&id, _)| id)
            .collect();
        stale
            .into_iter()
            .filter_map(|id| self.remove_set(id, DropReason::TimedOut))
            .collect()
    }

    fn remove_set(&mut self, set_id: i32, reason: DropReason) -> Option<DroppedSet> {
        let buf = self.sets.remove(&set_id)?;
        self.order.remove(&buf.touch);
        self.buffered_bytes = self.buffered_bytes.saturating_sub(buf.bytes);
        Some(DroppedSet {
            set_id,
            received: buf.fragments.len(),
            total: buf.total,
            bytes: buf.bytes,
            reason,
        })
    }

    /// Evict least recently active sets until `extra` bytes (and, for a new
    /// set, one more set) fit. The target set goes last, only if nothing else
    /// is left.
    fn make_room(&mut self, target: i32, extra: usize) -> Vec<DroppedSet> {
        let mut evicted = Vec::new();
        loop {
            let new_set = !self.sets.contains_key(&target);
            let bytes_ok = self.buffered_bytes + extra <= self.config.max_buffered_bytes;
            let sets_ok = !new_set || self.sets.len() < self.config.max_sets.max(1);
            if bytes_ok && sets_ok {
                break;
            }
            let victim = self
                .order
                .values()
                .copied()
                .find(|&id| id != target)
                .or_else(|| self.sets.contains_key(&target).then_some(target));
            match victim.and_then(|id| self.remove_set(id, DropReason::OverLimit)) {
                Some(d) => evicted.push(d),
                None => break,
            }
        }
        evicted
    }

    /// If the chain containing the (complete) set `set_id` is complete, remove
    /// it and return the message.
    fn try_complete(&mut self, set_id: i32) -> Option<ReassembledMessage> {
        let limit = self.sets.len();
        // Walk back to the head of the chain, bounded against link cycles.
        let mut head = set_id;
        let mut steps = 0usize;
        while let Some(prev) = self.sets.get(&head).and_then(SetBuffer::previous) {
            let prev_buf = self.sets.get(&prev)?;
            if !prev_buf.complete() || prev_buf.next() != Some(head) {
                return None;
            }
            head = prev;
            steps += 1;
            if steps > limit {
                return None;
            }
        }
        // Walk forward to the tail, checking links agree both ways.
        let mut chain = vec![head];
        let mut cur = head;
        while let Some(next) = self.sets.get(&cur).and_then(SetBuffer::next) {
            let next_buf = self.sets.get(&next)?;
            if !next_buf.complete() || next_buf.previous() != Some(cur) {
                return None;
            }
            chain.push(next);
            cur = next;
            if chain.len() > limit {
                return None;
            }
        }
        if !chain.contains(&set_id) {
            return None;
        }

        let mut data = Vec::new();
        for &id in &chain {
            if let Some(buf) = self.sets.remove(&id) {
                self.order.remove(&buf.touch);
                self.buffered_bytes = self.buffered_bytes.saturating_sub(buf.bytes);
                for f in buf.fragments.into_values() {
                    data.extend_from_slice(f.payload());
                }
            }
            self.remember(id);
        }
        Some(ReassembledMessage {
            data,
            set_ids: chain,
        })
    }

    fn remember(&mut self, set_id: i32) {
        if self.config.recently_completed == 0 {
            return;
        }
        if self.recent.insert(set_id) {
            self.recent_order.push_back(set_id);
        }
        while self.recent_order.len() > self.config.recently_completed {
            if let Some(old) = self.recent_order.pop_front() {
                self.recent.remove(&old);
            }
        }
    }
}
