//! Ack timers: deadlines in the core's virtual time, ordered, removable.

use std::collections::BTreeMap;
use std::time::Instant;

use nymd_proto::params::FragmentId;

/// A timer's place, to remove it.
pub(crate) type TimerKey = (Instant, u64);

/// Armed ack timers, earliest first (ties in the order they were armed).
#[derive(Debug, Default)]
pub(crate) struct Timers {
    queue: BTreeMap<TimerKey, FragmentId>,
    next: u64,
}

impl Timers {
    /// Arm a timer for `id` at `at`.
    pub(crate) fn insert(&mut self, id: FragmentId, at: Instant) -> TimerKey {
        self.next = self.next.wrapping_add(1);
        let key = (at, self.next);
        self.queue.insert(key, id);
        key
    }

    pub(crate) fn remove(&mut self, key: &TimerKey) {
        self.queue.remove(key);
    }

    pub(crate) fn len(&self) -> usize {
        self.queue.len()
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.queue.first_key_value().map(|((at, _), _)| *at)
    }

    /// The earliest timer due at `now`, disarmed.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<FragmentId> {
        let first = self.queue.first_entry()?;
        if first.key().0 > now {
            return None;
        }
        Some(first.remove())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timers_fire_in_order_once_and_can_be_removed() {
        let t0 = Instant::now();
        let id = |n| FragmentId {
            set_id: n,
            position: 0,
        };
        let mut t = Timers::default();
        let a = t.insert(id(1), t0 + Duration::from_secs(2));
        t.insert(id(2), t0 + Duration::from_secs(1));
        t.insert(id(3), t0 + Duration::from_secs(1));
        assert_eq!(t.next_deadline(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(t.pop_due(t0), None);
        t.remove(&a);
        let due: Vec<_> = std::iter::from_fn(|| t.pop_due(t0 + Duration::from_secs(5))).collect();
        assert_eq!(
            due,
            vec![id(2), id(3)],
            "ties in arming order; removed ones never"
        );
        assert_eq!(t.len(), 0);
    }
}
