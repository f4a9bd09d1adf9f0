//! Sending queues and the Poisson schedule.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use nymd_proto::params::FragmentId;
use rand::Rng;
use rand_distr::{Distribution, Exp};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QueueLane {
    Retransmit,
    General,
    Conn(u64),
}

/// Sending queues: retransmissions, the general lane, and one lane per
/// connection id. The main stream picks a non-empty lane at random.
#[derive(Debug, Default)]
pub(crate) struct Lanes {
    pub(crate) retransmit: VecDeque<FragmentId>,
    pub(crate) general: VecDeque<FragmentId>,
    pub(crate) conns: BTreeMap<u64, VecDeque<FragmentId>>,
    pub(crate) total: usize,
    /// Reply fragments parked until a SURB is reserved for them (they are
    /// kept in the per-sender stores; counted here).
    pub(crate) waiting: usize,
    /// The most packets ever queued at once ([`Lanes::queued`]), kept at
    /// every push so that no peak between two looks is missed.
    pub(crate) peak: usize,
}

impl Lanes {
    /// Packets queued for sending: all lanes plus the waiting replies.
    pub(crate) fn queued(&self) -> usize {
        self.total + self.waiting
    }

    pub(crate) fn note_peak(&mut self) {
        self.peak = self.peak.max(self.queued());
    }

    /// One more reply fragment waits for a SURB.
    pub(crate) fn add_waiting(&mut self) {
        self.waiting += 1;
        self.note_peak();
    }

    /// `n` waiting reply fragments left the wait (sent on or dropped).
    pub(crate) fn remove_waiting(&mut self, n: usize) {
        self.waiting = self.waiting.saturating_sub(n);
    }

    pub(crate) fn push(&mut self, lane: QueueLane, id: FragmentId, front: bool) {
        let q = match lane {
            QueueLane::Retransmit => &mut self.retransmit,
            QueueLane::General => &mut self.general,
            QueueLane::Conn(c) => self.conns.entry(c).or_default(),
        };
        if front {
            q.push_front(id);
        } else {
            q.push_back(id);
        }
        self.total += 1;
        self.note_peak();
    }

    /// The next packet of a lane picked at random among those that hold
    /// one; with `fresh` false only the retransmission lane is looked at
    /// (the window of packets in flight is full).
    pub(crate) fn pop<R: Rng>(
        &mut self,
        rng: &mut R,
        fresh: bool,
    ) -> Option<(QueueLane, FragmentId)> {
        if !fresh {
            return self.pop_from(QueueLane::Retransmit);
        }
        let mut candidates: Vec<QueueLane> = Vec::with_capacity(2 + self.conns.len());
        if !self.retransmit.is_empty() {
            candidates.push(QueueLane::Retransmit);
        }
        if !self.general.is_empty() {
            candidates.push(QueueLane::General);
        }
        candidates.extend(
            self.conns
                .iter()
                .filter(|(_, q)| !q.is_empty())
                .map(|(c, _)| QueueLane::Conn(*c)),
        );
        if candidates.is_empty() {
            return None;
        }
        let lane = candidates[rng.gen_range(0..candidates.len())];
        self.pop_from(lane)
    }

    fn pop_from(&mut self, lane: QueueLane) -> Option<(QueueLane, FragmentId)> {
        let id = match lane {
            QueueLane::Retransmit => self.retransmit.pop_front(),
            QueueLane::General => self.general.pop_front(),
            QueueLane::Conn(c) => {
                let q = self.conns.get_mut(&c)?;
                let id = q.pop_front();
                if q.is_empty() {
                    self.conns.remove(&c);
                }
                id
            }
        }?;
        self.total = self.total.saturating_sub(1);
        Some((lane, id))
    }

    pub(crate) fn close(&mut self, conn: u64) -> Vec<FragmentId> {
        let ids: Vec<FragmentId> = self.conns.remove(&conn).map(Vec::from).unwrap_or_default();
        self.total = self.total.saturating_sub(ids.len());
        ids
    }
}

pub(crate) fn exp_sample<R: Rng>(rng: &mut R, mean: Duration) -> Duration {
    let ns = mean.as_nanos() as f64;
    if ns <= 0.0 {
        return Duration::ZERO;
    }
    match Exp::new(1.0 / ns) {
        Ok(d) => Duration::from_nanos(d.sample(rng).round() as u64),
        Err(_) => mean,
    }
}

/// How far a Poisson stream may fall behind its schedule before it gives up
/// catching up (after a suspend or a long stall) and restarts from now.
const MAX_SCHEDULE_LAG: Duration = Duration::from_secs(1);

/// The next send time of a Poisson stream: `gap` after the previous
/// *scheduled* time, as nym-client does, so that timer granularity and the
/// time spent building packets do not lower the rate. A stream more than
/// [`MAX_SCHEDULE_LAG`] behind restarts from now instead of bursting.
pub(crate) fn next_deadline(previous: Instant, gap: Duration, now: Instant) -> Instant {
    let next = previous + gap;
    if next + MAX_SCHEDULE_LAG < now {
        now + gap
    } else {
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use std::collections::HashMap;

    fn id(set_id: i32, position: u8) -> FragmentId {
        FragmentId { set_id, position }
    }

    #[test]
    fn poisson_deadlines_follow_the_schedule_not_the_wakeup() {
        let start = Instant::now();
        let gap = Duration::from_millis(20);
        // Woken late (timer granularity, packet building): the next send is
        // still one gap after the previous scheduled time.
        let late = start + Duration::from_millis(25);
        let next = next_deadline(start + gap, gap, late);
        assert_eq!(next, start + 2 * gap);
        // Far behind (a stall): restart from now rather than burst.
        let now = late + Duration::from_secs(5);
        assert_eq!(next_deadline(start + 2 * gap, gap, now), now + gap);
        // The long-run rate of many scheduled sends is exact.
        let mut rng = StdRng::seed_from_u64(3);
        let mut d = now;
        let n = 20_000;
        for _ in 0..n {
            d += exp_sample(&mut rng, gap);
        }
        let mean = (d - now).as_secs_f64() / n as f64;
        assert!((mean - 0.020).abs() < 0.0006, "mean gap {mean}");
    }

    #[test]
    fn lanes_pop_everything_once_and_in_order_within_a_lane() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut lanes = Lanes::default();
        for i in 0..10 {
            lanes.push(QueueLane::General, id(1, i), false);
            lanes.push(QueueLane::Conn(7), id(2, i), false);
            lanes.push(QueueLane::Conn(8), id(3, i), false);
        }
        lanes.push(QueueLane::Retransmit, id(4, 0), false);
        assert_eq!(lanes.total, 31);
        let mut seen: HashMap<i32, Vec<u8>> = HashMap::new();
        while let Some((_, f)) = lanes.pop(&mut rng, true) {
            seen.entry(f.set_id).or_default().push(f.position);
        }
        assert_eq!(lanes.total, 0);
        for set in 1..=3 {
            assert_eq!(seen[&set], (0..10).collect::<Vec<u8>>());
        }
        assert_eq!(seen[&4], vec![0]);
        assert!(lanes.conns.is_empty());
    }

    #[test]
    fn lanes_pick_lanes_at_random() {
        let mut rng = StdRng::seed_from_u64(2);
        let mut first_from_conn = 0;
        for _ in 0..200 {
            let mut lanes = Lanes::default();
            lanes.push(QueueLane::General, id(1, 0), false);
            lanes.push(QueueLane::Conn(1), id(2, 0), false);
            if let Some((QueueLane::Conn(1), _)) = lanes.pop(&mut rng, true) {
                first_from_conn += 1;
            }
        }
        assert!((40..=160).contains(&first_from_conn), "{first_from_conn}");
    }

    #[test]
    fn closing_a_lane_returns_its_fragments() {
        let mut lanes = Lanes::default();
        lanes.push(QueueLane::Conn(5), id(1, 1), false);
        lanes.push(QueueLane::Conn(5), id(1, 2), false);
        lanes.push(QueueLane::General, id(2, 1), false);
        assert_eq!(lanes.close(5), vec![id(1, 1), id(1, 2)]);
        assert_eq!(lanes.close(5), vec![]);
        assert_eq!(lanes.total, 1);
    }

    #[test]
    fn the_queue_keeps_its_high_water_mark() {
        let mut rng = StdRng::seed_from_u64(5);
        let mut lanes = Lanes::default();
        for i in 0..5 {
            lanes.push(QueueLane::General, id(1, i), false);
        }
        lanes.add_waiting();
        assert_eq!((lanes.queued(), lanes.peak), (6, 6));
        for _ in 0..4 {
            lanes.pop(&mut rng, true);
        }
        lanes.remove_waiting(1);
        lanes.push(QueueLane::Conn(3), id(2, 0), false);
        assert_eq!((lanes.queued(), lanes.peak), (2, 6));
        for i in 1..6 {
            lanes.push(QueueLane::Conn(3), id(2, i), false);
        }
        lanes.add_waiting();
        assert_eq!((lanes.queued(), lanes.peak), (8, 8));
        lanes.close(3);
        assert_eq!((lanes.queued(), lanes.peak), (2, 8));
    }

    #[test]
    fn a_full_window_pops_only_retransmissions() {
        let mut rng = StdRng::seed_from_u64(6);
        let mut lanes = Lanes::default();
        lanes.push(QueueLane::General, id(1, 0), false);
        lanes.push(QueueLane::Conn(4), id(2, 0), false);
        assert_eq!(lanes.pop(&mut rng, false), None);
        lanes.push(QueueLane::Retransmit, id(3, 0), false);
        assert_eq!(
            lanes.pop(&mut rng, false),
            Some((QueueLane::Retransmit, id(3, 0)))
        );
        assert_eq!(lanes.pop(&mut rng, false), None);
        assert_eq!(lanes.total, 2);
        assert!(lanes.pop(&mut rng, true).is_some());
    }

    #[test]
    fn front_pushes_jump_the_queue() {
        let mut rng = StdRng::seed_from_u64(3);
        let mut lanes = Lanes::default();
        lanes.push(QueueLane::Retransmit, id(1, 1), false);
        lanes.push(QueueLane::Retransmit, id(1, 2), true);
        assert_eq!(lanes.pop(&mut rng, true).map(|(_, f)| f), Some(id(1, 2)));
    }

    #[test]
    fn exponential_samples_have_roughly_the_mean() {
        let mut rng = StdRng::seed_from_u64(4);
        assert_eq!(exp_sample(&mut rng, Duration::ZERO), Duration::ZERO);
        let n = 20_000u32;
        let total: Duration = (0..n)
            .map(|_| exp_sample(&mut rng, Duration::from_millis(20)))
            .sum();
        let mean = total / n;
        assert!(
            mean > Duration::from_millis(18) && mean < Duration::from_millis(22),
            "{mean:?}"
        );
    }
}
