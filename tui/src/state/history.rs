//! Per-second traffic samples in a ring buffer, for the charts.

use std::collections::VecDeque;

use nymd_ipc::TrafficCounters;

use super::Unit;

/// Samples kept per identity: ten minutes at one `Traffic` event a second,
/// wider than any terminal.
pub const HISTORY_LEN: usize = 600;

/// Traffic during one `Traffic` interval (one second in nymd).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sample {
    /// Real packets sent.
    pub real_sent_packets: u64,
    /// Real bytes sent.
    pub real_sent_bytes: u64,
    /// Cover packets sent.
    pub cover_sent_packets: u64,
    /// Cover bytes sent.
    pub cover_sent_bytes: u64,
    /// Real packets received.
    pub real_recv_packets: u64,
    /// Real bytes received.
    pub real_recv_bytes: u64,
    /// Cover packets received.
    pub cover_recv_packets: u64,
    /// Cover bytes received.
    pub cover_recv_bytes: u64,
    /// Acks received.
    pub acks: u64,
    /// Retransmissions.
    pub retransmissions: u64,
    /// Queue depth at the end of the interval (a level, not a rate).
    pub queue_depth: u64,
}

/// One line of a chart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Series {
    /// Real traffic sent.
    RealSent,
    /// Cover traffic sent.
    CoverSent,
    /// Real traffic received.
    RealRecv,
    /// Cover traffic received.
    CoverRecv,
}

impl Series {
    /// All, in chart order.
    pub const ALL: [Series; 4] = [
        Self::RealSent,
        Self::CoverSent,
        Self::RealRecv,
        Self::CoverRecv,
    ];

    /// Label for charts.
    pub fn label(self) -> &'static str {
        match self {
            Self::RealSent => "sent real",
            Self::CoverSent => "sent cover",
            Self::RealRecv => "recv real",
            Self::CoverRecv => "recv cover",
        }
    }
}

/// A delta of cumulative counters; a counter that went down (the identity
/// restarted) counts from zero.
fn delta(prev: u64, now: u64) -> u64 {
    if now >= prev {
        now - prev
    } else {
        now
    }
}

impl Sample {
    /// The traffic between two cumulative readings.
    pub fn between(prev: &TrafficCounters, now: &TrafficCounters) -> Self {
        Self {
            real_sent_packets: delta(prev.real_packets_sent, now.real_packets_sent),
            real_sent_bytes: delta(prev.real_bytes_sent, now.real_bytes_sent),
            cover_sent_packets: delta(prev.cover_packets_sent, now.cover_packets_sent),
            cover_sent_bytes: delta(prev.cover_bytes_sent, now.cover_bytes_sent),
            real_recv_packets: delta(prev.real_packets_received, now.real_packets_received),
            real_recv_bytes: delta(prev.real_bytes_received, now.real_bytes_received),
            cover_recv_packets: delta(prev.cover_packets_received, now.cover_packets_received),
            cover_recv_bytes: delta(prev.cover_bytes_received, now.cover_bytes_received),
            acks: delta(prev.acks_received, now.acks_received),
            retransmissions: delta(prev.retransmissions, now.retransmissions),
            queue_depth: now.queue_depth,
        }
    }

    /// The value of one series in one unit.
    pub fn get(&self, series: Series, unit: Unit) -> u64 {
        match (series, unit) {
            (Series::RealSent, Unit::Packets) => self.real_sent_packets,
            (Series::RealSent, Unit::Bytes) => self.real_sent_bytes,
            (Series::CoverSent, Unit::Packets) => self.cover_sent_packets,
            (Series::CoverSent, Unit::Bytes) => self.cover_sent_bytes,
            (Series::RealRecv, Unit::Packets) => self.real_recv_packets,
            (Series::RealRecv, Unit::Bytes) => self.real_recv_bytes,
            (Series::CoverRecv, Unit::Packets) => self.cover_recv_packets,
            (Series::CoverRecv, Unit::Bytes) => self.cover_recv_bytes,
        }
    }

    /// The sample of an interval with no traffic after this one: every
    /// rate zero, the queue depth (a level) kept.
    pub fn idle(&self) -> Self {
        Self {
            queue_depth: self.queue_depth,
            ..Self::default()
        }
    }

    /// Sent, real and cover.
    pub fn sent(&self, unit: Unit) -> u64 {
        self.get(Series::RealSent, unit) + self.get(Series::CoverSent, unit)
    }

    /// Received, real and cover.
    pub fn received(&self, unit: Unit) -> u64 {
        self.get(Series::RealRecv, unit) + self.get(Series::CoverRecv, unit)
    }

    fn add(&mut self, o: &Sample) {
        self.real_sent_packets += o.real_sent_packets;
        self.real_sent_bytes += o.real_sent_bytes;
        self.cover_sent_packets += o.cover_sent_packets;
        self.cover_sent_bytes += o.cover_sent_bytes;
        self.real_recv_packets += o.real_recv_packets;
        self.real_recv_bytes += o.real_recv_bytes;
        self.cover_recv_packets += o.cover_recv_packets;
        self.cover_recv_bytes += o.cover_recv_bytes;
        self.acks += o.acks;
        self.retransmissions += o.retransmissions;
        self.queue_depth += o.queue_depth;
    }
}

/// Sum of two counter sets (for totals).
pub(crate) fn add_counters(t: &mut TrafficCounters, c: &TrafficCounters) {
    t.real_packets_sent += c.real_packets_sent;
    t.real_bytes_sent += c.real_bytes_sent;
    t.real_packets_received += c.real_packets_received;
    t.real_bytes_received += c.real_bytes_received;
    t.cover_packets_sent += c.cover_packets_sent;
    t.cover_bytes_sent += c.cover_bytes_sent;
    t.cover_packets_received += c.cover_packets_received;
    t.cover_bytes_received += c.cover_bytes_received;
    t.acks_received += c.acks_received;
    t.retransmissions += c.retransmissions;
    t.queue_depth += c.queue_depth;
    t.outbox_messages += c.outbox_messages;
    t.inbox_messages += c.inbox_messages;
}

/// A ring buffer of the last [`HISTORY_LEN`] samples, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    samples: VecDeque<Sample>,
}

impl History {
    /// Add the newest sample, dropping the oldest when full.
    pub fn push(&mut self, s: Sample) {
        if self.samples.len() == HISTORY_LEN {
            self.samples.pop_front();
        }
        self.samples.push_back(s);
    }

    /// The newest sample.
    pub fn last(&self) -> Option<&Sample> {
        self.samples.back()
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// No samples yet.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// One series, oldest first.
    pub fn series(&self, series: Series, unit: Unit) -> Vec<u64> {
        self.samples.iter().map(|s| s.get(series, unit)).collect()
    }

    /// The newest `n` values of a series, oldest first.
    pub fn tail(&self, series: Series, unit: Unit, n: usize) -> Vec<u64> {
        let skip = self.samples.len().saturating_sub(n);
        self.samples
            .iter()
            .skip(skip)
            .map(|s| s.get(series, unit))
            .collect()
    }

    /// The largest value of a series.
    pub fn peak(&self, series: Series, unit: Unit) -> u64 {
        self.samples
            .iter()
            .map(|s| s.get(series, unit))
            .max()
            .unwrap_or(0)
    }

    /// Histories summed, aligned on their newest samples (identities send
    /// their `Traffic` events on their own clocks, a second apart each).
    pub fn sum<'a>(all: impl Iterator<Item = &'a History>) -> History {
        let mut out: VecDeque<Sample> = VecDeque::new();
        for h in all {
            while out.len() < h.samples.len() {
                out.push_front(Sample::default());
            }
            let offset = out.len() - h.samples.len();
            for (i, s) in h.samples.iter().enumerate() {
                out[offset + i].add(s);
            }
        }
        History { samples: out }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_buffer_keeps_the_newest() {
        let mut h = History::default();
        for i in 0..(HISTORY_LEN as u64 + 5) {
            h.push(Sample {
                real_sent_packets: i,
                ..Sample::default()
            });
        }
        assert_eq!(h.len(), HISTORY_LEN);
        assert_eq!(h.series(Series::RealSent, Unit::Packets)[0], 5);
        assert_eq!(
            h.tail(Series::RealSent, Unit::Packets, 2),
            vec![HISTORY_LEN as u64 + 3, HISTORY_LEN as u64 + 4]
        );
        assert_eq!(
            h.peak(Series::RealSent, Unit::Packets),
            HISTORY_LEN as u64 + 4
        );
    }
}
