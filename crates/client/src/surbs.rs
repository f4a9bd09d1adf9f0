//! What the client keeps about its anonymous conversations, bounded against
//! peers that would make it grow:
//!
//! - [`SenderTags`]: the sender tag used per recipient of our anonymous
//!   messages (at most `max_sender_tags`, the least recently used recipient
//!   forgotten), each with the token bucket that limits how many SURBs we
//!   hand that recipient in answer to its requests;
//! - [`ReplyKeys`]: the keys of the reply SURBs we handed out, looked up by
//!   digest when a reply comes back, bounded in bytes. When full, the tag
//!   holding the most keys loses its oldest ones first, so a peer that makes
//!   us mint many keys evicts its own, not those of other conversations.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use nymd_proto::SenderTag;
use rand::RngCore;

use crate::memory::Account;

/// Bytes accounted per reply key: the map entry (digest, key, time, tag),
/// its place in its tag's order, and the maps' overhead.
pub(crate) const REPLY_KEY_COST: usize = 192;

/// Keys evicted at once from the fullest tag (amortises finding it).
const EVICT_BATCH: usize = 64;

/// A recipient's entry.
#[derive(Debug)]
pub(crate) struct TagEntry {
    pub(crate) tag: SenderTag,
    stamp: u64,
    /// SURBs that may still be handed out in answers (token bucket).
    tokens: f64,
    refilled: Instant,
}

impl TagEntry {
    /// SURBs that may be handed out now: the bucket refilled at `rate` per
    /// second, up to `burst`.
    pub(crate) fn available(&mut self, now: Instant, rate: u32, burst: u32) -> u32 {
        let dt = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.refilled = now;
        self.tokens = (self.tokens + dt * f64::from(rate)).min(f64::from(burst));
        self.tokens.max(0.0) as u32
    }

    /// `n` SURBs may be handed out on top of the rate, up to `burst`.
    pub(crate) fn credit(&mut self, n: u64, burst: u32) {
        self.tokens = (self.tokens + n as f64).min(f64::from(burst));
    }

    /// `n` SURBs were handed out.
    pub(crate) fn spend(&mut self, n: u32) {
        self.tokens = (self.tokens - f64::from(n)).max(0.0);
    }
}

/// Sender tags per recipient (its 96-byte address), least recently used
/// forgotten first.
#[derive(Debug)]
pub(crate) struct SenderTags {
    map: BTreeMap<[u8; 96], TagEntry>,
    order: BTreeMap<u64, [u8; 96]>,
    next: u64,
    max: usize,
}

impl SenderTags {
    pub(crate) fn new(max: usize) -> Self {
        Self {
            map: BTreeMap::new(),
            order: BTreeMap::new(),
            next: 0,
            max: max.max(1),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    fn touch(&mut self, recipient: &[u8; 96]) {
        self.next += 1;
        let stamp = self.next;
        if let Some(e) = self.map.get_mut(recipient) {
            self.order.remove(&e.stamp);
            e.stamp = stamp;
            self.order.insert(stamp, *recipient);
        }
    }

    /// The tag used for `recipient`, made on first use (a full table forgets
    /// its least recently used recipient). Only our own anonymous sends call
    /// this: nothing a peer sends adds an entry.
    pub(crate) fn tag_for<R: RngCore>(
        &mut self,
        recipient: &[u8; 96],
        rng: &mut R,
        now: Instant,
        burst: u32,
    ) -> SenderTag {
        if self.map.contains_key(recipient) {
            self.touch(recipient);
        } else {
            while self.map.len() >= self.max {
                let Some((_, old)) = self.order.pop_first() else {
                    break;
                };
                self.map.remove(&old);
            }
            self.next += 1;
            let stamp = self.next;
            self.map.insert(
                *recipient,
                TagEntry {
                    tag: SenderTag::random(rng),
                    stamp,
                    tokens: f64::from(burst),
                    refilled: now,
                },
            );
            self.order.insert(stamp, *recipient);
        }
        self.map
            .get(recipient)
            .map_or(SenderTag([0; 16]), |e| e.tag)
    }

    /// `(recipient, tag)`, least recently used first (for the persisted
    /// reply state).
    pub(crate) fn entries(&self) -> Vec<([u8; 96], SenderTag)> {
        self.order
            .values()
            .filter_map(|r| self.map.get(r).map(|e| (*r, e.tag)))
            .collect()
    }

    /// Put back a saved recipient's tag (as the most recently used; a full
    /// table forgets its least recently used recipient). A recipient that
    /// already has a tag keeps it.
    pub(crate) fn restore(
        &mut self,
        recipient: [u8; 96],
        tag: SenderTag,
        now: Instant,
        burst: u32,
    ) {
        if self.map.contains_key(&recipient) {
            return;
        }
        while self.map.len() >= self.max {
            let Some((_, old)) = self.order.pop_first() else {
                break;
            };
            self.map.remove(&old);
        }
        self.next += 1;
        let stamp = self.next;
        self.map.insert(
            recipient,
            TagEntry {
                tag,
                stamp,
                tokens: f64::from(burst),
                refilled: now,
            },
        );
        self.order.insert(stamp, recipient);
    }

    /// The entry of a recipient we sent anonymous messages to (marked as
    /// used).
    pub(crate) fn get_mut(&mut self, recipient: &[u8; 96]) -> Option<&mut TagEntry> {
        if !self.map.contains_key(recipient) {
            return None;
        }
        self.touch(recipient);
        self.map.get_mut(recipient)
    }
}

#[derive(Debug, Clone, Copy)]
struct KeyEntry {
    key: [u8; 16],
    at: Instant,
    tag: SenderTag,
}

#[derive(Debug, Default)]
struct TagKeys {
    /// Digests in the order they were made (some may be used already).
    order: VecDeque<([u8; 32], Instant)>,
    /// How many of them are still unused.
    live: usize,
}

/// The keys of the reply SURBs we handed out, by digest.
#[derive(Debug)]
pub(crate) struct ReplyKeys {
    keys: BTreeMap<[u8; 32], KeyEntry>,
    by_tag: BTreeMap<SenderTag, TagKeys>,
    account: Account,
}

impl ReplyKeys {
    pub(crate) fn new(account: Account) -> Self {
        Self {
            keys: BTreeMap::new(),
            by_tag: BTreeMap::new(),
            account,
        }
    }

    /// Unused keys.
    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    /// Bytes accounted.
    pub(crate) fn bytes(&self) -> usize {
        self.account.used()
    }

    pub(crate) fn bound(&self) -> usize {
        self.account.bound()
    }

    /// Keys held for `tag`.
    #[cfg(test)]
    pub(crate) fn live_for(&self, tag: &SenderTag) -> usize {
        self.by_tag.get(tag).map_or(0, |t| t.live)
    }

    /// Keep the key of a SURB made for `tag`; older keys are evicted (the
    /// fullest tag's first) to keep within the bound. The keys count
    /// against the daemon's budget but are not refused for it: they are
    /// made by our own sends (and rate-limited answers), and evicting them
    /// would lose genuine replies. False only if the bound holds no key.
    pub(crate) fn insert(
        &mut self,
        digest: [u8; 32],
        key: [u8; 16],
        tag: SenderTag,
        now: Instant,
    ) -> bool {
        while !self.account.try_take_within_bound(REPLY_KEY_COST) {
            if !self.evict_fullest() {
                return false;
            }
        }
        if let Some(old) = self.keys.insert(digest, KeyEntry { key, at: now, tag }) {
            // A repeated digest (never in practice): the old one is gone.
            if let Some(t) = self.by_tag.get_mut(&old.tag) {
                t.live = t.live.saturating_sub(1);
            }
        }
        let t = self.by_tag.entry(tag).or_default();
        t.order.push_back((digest, now));
        t.live += 1;
        true
    }

    /// The unused keys with their ages at `now`, oldest first (for the
    /// persisted reply state).
    pub(crate) fn entries(&self, now: Instant) -> Vec<crate::snapshot::SavedKey> {
        let mut out: Vec<crate::snapshot::SavedKey> = self
            .keys
            .iter()
            .map(|(d, k)| crate::snapshot::SavedKey {
                digest: *d,
                key: k.key,
                tag: k.tag,
                age: now.saturating_duration_since(k.at),
            })
            .collect();
        out.sort_by_key(|k| std::cmp::Reverse(k.age));
        out
    }

    /// Use (and forget) the key named by `digest`: the key and the tag its
    /// SURB was made for.
    pub(crate) fn take(&mut self, digest: &[u8; 32]) -> Option<([u8; 16], SenderTag)> {
        let e = self.keys.remove(digest)?;
        if let Some(t) = self.by_tag.get_mut(&e.tag) {
            t.live = t.live.saturating_sub(1);
            // Drop used entries once they are most of the order.
            if t.order.len() > 2 * t.live + 32 {
                let keys = &self.keys;
                let before = t.order.len();
                let tag = e.tag;
                t.order
                    .retain(|(d, at)| keys.get(d).is_some_and(|k| k.at == *at && k.tag == tag));
                let removed = before - t.order.len();
                self.account.give_back(removed * REPLY_KEY_COST);
            }
        }
        Some((e.key, e.tag))
    }

    /// Pop the oldest entry of `tag`'s order; whether one was there.
    fn pop_oldest(&mut self, tag: SenderTag) -> bool {
        let Some(t) = self.by_tag.get_mut(&tag) else {
            return false;
        };
        let Some((d, at)) = t.order.pop_front() else {
            self.by_tag.remove(&tag);
            return false;
        };
        if self
            .keys
            .get(&d)
            .is_some_and(|k| k.at == at && k.tag == tag)
        {
            self.keys.remove(&d);
            t.live = t.live.saturating_sub(1);
        }
        if t.order.is_empty() {
            self.by_tag.remove(&tag);
        }
        self.account.give_back(REPLY_KEY_COST);
        true
    }

    /// Evict the oldest entries of the tag holding the most.
    fn evict_fullest(&mut self) -> bool {
        let Some(tag) = self
            .by_tag
            .iter()
            .max_by_key(|(_, t)| t.order.len())
            .map(|(tag, _)| *tag)
        else {
            return false;
        };
        let mut any = false;
        for _ in 0..EVICT_BATCH {
            if !self.pop_oldest(tag) {
                break;
            }
            any = true;
        }
        any
    }

    /// Forget keys older than `max_age`.
    pub(crate) fn expire(&mut self, now: Instant, max_age: Duration) {
        let tags: Vec<SenderTag> = self.by_tag.keys().copied().collect();
        for tag in tags {
            while self
                .by_tag
                .get(&tag)
                .and_then(|t| t.order.front())
                .is_some_and(|(_, at)| now.saturating_duration_since(*at) >= max_age)
            {
                self.pop_oldest(tag);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryBudget;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn digest(i: u32, t: u8) -> [u8; 32] {
        let mut d = [t; 32];
        d[..4].copy_from_slice(&i.to_be_bytes());
        d
    }

    #[test]
    fn sender_tags_forget_the_least_recently_used_recipient() {
        let mut rng = StdRng::seed_from_u64(1);
        let now = Instant::now();
        let mut t = SenderTags::new(2);
        let a = t.tag_for(&[1; 96], &mut rng, now, 10);
        let b = t.tag_for(&[2; 96], &mut rng, now, 10);
        assert_ne!(a, b);
        assert_eq!(t.tag_for(&[1; 96], &mut rng, now, 10), a, "kept");
        t.tag_for(&[3; 96], &mut rng, now, 10);
        assert_eq!(t.len(), 2);
        assert!(t.get_mut(&[2; 96]).is_none(), "least recently used goes");
        assert_eq!(t.get_mut(&[1; 96]).map(|e| e.tag), Some(a));
        assert!(t.get_mut(&[9; 96]).is_none(), "lookups add nothing");
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn the_answer_bucket_refills_at_its_rate_up_to_its_burst() {
        let mut rng = StdRng::seed_from_u64(2);
        let t0 = Instant::now();
        let mut t = SenderTags::new(4);
        t.tag_for(&[1; 96], &mut rng, t0, 100);
        let e = t.get_mut(&[1; 96]).expect("entry");
        assert_eq!(e.available(t0, 10, 100), 100);
        e.spend(100);
        assert_eq!(e.available(t0, 10, 100), 0);
        assert_eq!(e.available(t0 + Duration::from_secs(2), 10, 100), 20);
        assert_eq!(e.available(t0 + Duration::from_secs(100), 10, 100), 100);
    }

    #[test]
    fn reply_keys_stay_within_bytes_and_the_fullest_tag_pays() {
        let budget = MemoryBudget::new(u64::MAX);
        let mut k = ReplyKeys::new(Account::new(budget.clone(), 1000 * REPLY_KEY_COST));
        let now = Instant::now();
        let genuine = SenderTag([1; 16]);
        let flood = SenderTag([2; 16]);
        for i in 0..100 {
            assert!(k.insert(digest(i, 1), [1; 16], genuine, now));
        }
        for i in 0..50_000 {
            assert!(k.insert(digest(i, 2), [2; 16], flood, now));
            assert!(k.bytes() <= k.bound());
        }
        assert_eq!(k.live_for(&genuine), 100, "the flood evicted only its own");
        assert!(k.live_for(&flood) > 0);
        assert_eq!(k.take(&digest(7, 1)), Some(([1; 16], genuine)));
        assert_eq!(k.take(&digest(7, 1)), None, "single use");
        assert_eq!(budget.used() as usize, k.bytes());
        // Used keys' entries are compacted away.
        for i in 0..100 {
            k.take(&digest(i, 1));
        }
        assert_eq!(k.live_for(&genuine), 0);
        k.expire(now + Duration::from_secs(10), Duration::from_secs(5));
        assert_eq!((k.len(), k.bytes()), (0, 0));
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn saved_entries_restore_in_order() {
        let mut rng = StdRng::seed_from_u64(3);
        let now = Instant::now();
        let mut t = SenderTags::new(4);
        let a = t.tag_for(&[1; 96], &mut rng, now, 10);
        let b = t.tag_for(&[2; 96], &mut rng, now, 10);
        t.get_mut(&[1; 96]);
        let saved = t.entries();
        assert_eq!(saved, vec![([2; 96], b), ([1; 96], a)]);
        let mut u = SenderTags::new(4);
        for (r, tag) in saved {
            u.restore(r, tag, now, 10);
        }
        assert_eq!(u.entries(), t.entries());
        assert_eq!(
            u.tag_for(&[1; 96], &mut rng, now, 10),
            a,
            "same tag after restore"
        );

        let budget = MemoryBudget::new(u64::MAX);
        let mut k = ReplyKeys::new(Account::new(budget, 1000 * REPLY_KEY_COST));
        let t0 = now;
        k.insert(digest(1, 1), [1; 16], a, t0);
        k.insert(digest(2, 1), [2; 16], b, t0 + Duration::from_secs(5));
        let e = k.entries(t0 + Duration::from_secs(10));
        assert_eq!(e.len(), 2);
        assert_eq!(
            (e[0].digest, e[0].age),
            (digest(1, 1), Duration::from_secs(10))
        );
        assert_eq!((e[1].key, e[1].tag), ([2; 16], b));
    }

    #[test]
    fn reply_keys_count_against_the_daemon_budget_but_are_kept_when_it_is_used_up() {
        let budget = MemoryBudget::new(3 * REPLY_KEY_COST as u64);
        let mut other = Account::new(budget.clone(), usize::MAX);
        assert!(other.try_take(3 * REPLY_KEY_COST));
        let mut k = ReplyKeys::new(Account::new(budget.clone(), 1000 * REPLY_KEY_COST));
        let now = Instant::now();
        for i in 0..10 {
            assert!(k.insert(digest(i, 1), [0; 16], SenderTag([1; 16]), now));
        }
        assert_eq!(k.len(), 10, "none evicted for the others' use");
        assert_eq!(budget.used(), 13 * REPLY_KEY_COST as u64);
        let mut none = ReplyKeys::new(Account::new(budget, REPLY_KEY_COST - 1));
        assert!(!none.insert(digest(1, 2), [0; 16], SenderTag([2; 16]), now));
    }
}
