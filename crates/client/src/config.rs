//! The settings of a client core, with nym-client's defaults.

use std::time::Duration;

use nymd_proto::chunking::ReassemblyConfig;
use nymd_proto::{PacketSize, SphinxVersion};

/// Reply-SURB settings (nym-client defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct ReplySurbConfig {
    /// Ask for more SURBs when fewer than this remain for a tag (10).
    pub min_surb_threshold: usize,
    /// Keep at most this many SURBs per tag when asking (200).
    pub max_surb_threshold: usize,
    /// Smallest amount asked for in one request (10).
    pub min_request: u32,
    /// Largest amount asked for in one request (50).
    pub max_request: u32,
    /// Most SURBs handed out in answer to one request (500).
    pub max_accepted_request: u32,
    /// Ask again when a request got no answer within this (10 s).
    pub request_retry: Duration,
    /// Give up on waiting replies after this many requests (5).
    pub max_request_attempts: u32,
    /// Keys of SURBs we handed out expire after this (24 h).
    pub max_key_age: Duration,
    /// Most received SURBs stored per sender tag (oldest dropped).
    pub max_stored_per_tag: usize,
    /// Most sender tags with stored SURBs (least recently filled dropped).
    pub max_tags: usize,
    /// Most recipients we keep a sender tag for (the least recently used
    /// one is forgotten; a later anonymous message to it gets a new tag).
    pub max_sender_tags: usize,
    /// SURBs handed out at once to one sender tag in answer to its
    /// requests, before [`ReplySurbConfig::answer_rate`] applies (2,000).
    pub answer_burst: u32,
    /// SURBs per second handed out to one sender tag in answer to its
    /// requests, after the burst (200).
    pub answer_rate: u32,
}

impl Default for ReplySurbConfig {
    fn default() -> Self {
        Self {
            min_surb_threshold: 10,
            max_surb_threshold: 200,
            min_request: 10,
            max_request: 50,
            max_accepted_request: 500,
            request_retry: Duration::from_secs(10),
            max_request_attempts: 5,
            max_key_age: Duration::from_secs(24 * 60 * 60),
            max_stored_per_tag: 2_000,
            max_tags: 1_000,
            max_sender_tags: 10_000,
            answer_burst: 2_000,
            answer_rate: 200,
        }
    }
}

/// Default of [`Config::max_retransmissions`]. The first 20
/// retransmissions of a fragment come at nym-client's pace (an ack wait of
/// about 1.7 s at Nym's default delays, so a lossy route recovers as fast
/// as with nym-client); then the wait doubles up to 60 s, so a gateway that
/// is down for minutes does not lose the message. One whose recipient's
/// gateway never acknowledges is given up about 7½ minutes after it was
/// first sent (plus any time its packets waited in the send queue or for
/// our gateway connection). Even with half of all attempts lost, a
/// fragment is given up with a probability of 2^-31.
pub const DEFAULT_MAX_RETRANSMISSIONS: u32 = 30;

/// Default of [`Config::ack_backoff_after`].
pub const DEFAULT_ACK_BACKOFF_AFTER: u32 = 20;

/// Default of [`Config::max_in_flight`]. A healthy path needs its rate
/// times its ack round trip: nymd-bench's throughput run keeps 8 messages
/// of 64 KiB (about 350 packets) in flight. A path slower than its sender
/// holds the whole window in its queues, so the window must drain within
/// the ack wait (1.5 s with delays off) at the rate the path carries, or
/// every packet is sent twice: 1,024 did that on a localnet carrying
/// 630 packets/s (nymd-bench socks, plain: 21,420 retransmissions of
/// 32,697 packets), 512 drains at 350 packets/s. Well below what one hop
/// of a mix network queues (the localnet keeps 2,048 packets per link).
pub const DEFAULT_MAX_IN_FLIGHT: usize = 512;

/// Settings of one client core (nym-client's defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Mean per-hop delay of data packets (15 ms).
    pub average_packet_delay: Duration,
    /// Mean per-hop delay of acks (15 ms).
    pub average_ack_delay: Duration,
    /// Mean gap of the main Poisson stream (20 ms).
    pub message_sending_average_delay: Duration,
    /// Mean gap of the loop cover stream (200 ms).
    pub loop_cover_average_delay: Duration,
    /// Send real packets at once instead of on the main Poisson stream
    /// (which then sends no cover either).
    pub disable_main_poisson: bool,
    /// Turn the separate loop cover stream off.
    pub disable_loop_cover: bool,
    /// Test switch: every per-hop delay (packets and acks) is zero.
    pub disable_delays: bool,
    /// Ack timeout = total route delay × this + `ack_wait_addition` (1.5).
    pub ack_wait_multiplier: f64,
    /// See `ack_wait_multiplier` (1.5 s).
    pub ack_wait_addition: Duration,
    /// Give up on a message when one of its fragments was retransmitted
    /// this many times without an ack ([`DEFAULT_MAX_RETRANSMISSIONS`];
    /// `None`: never, as nym-client). Only transmissions that reached our
    /// gateway's socket count.
    pub max_retransmissions: Option<u32>,
    /// Retransmissions of a fragment made at nym-client's constant ack
    /// wait ([`DEFAULT_ACK_BACKOFF_AFTER`]); after them the wait doubles
    /// with each one, up to [`Config::ack_wait_max`].
    pub ack_backoff_after: u32,
    /// Most real packets taken from their lanes and not acknowledged yet
    /// (sent and awaiting their ack, due for retransmission, or a reply
    /// waiting for a SURB to be sent again): while this many are out, the
    /// core takes no new packet from any lane (retransmissions still go),
    /// so the lanes fill up, which is what their senders see as
    /// backpressure ([`DEFAULT_MAX_IN_FLIGHT`]; `None`: no bound, as
    /// nym-client). Without it a sender faster than its path overruns
    /// the mixnodes' queues, and the losses come back as retransmissions
    /// on top of new packets. Packets the core makes itself (SURB requests
    /// and answers) are not counted.
    pub max_in_flight: Option<usize>,
    /// Longest ack wait (60 s; the first wait if that is longer). Zero keeps
    /// the first wait for every retransmission (nym-client's timing).
    pub ack_wait_max: Duration,
    /// Packet size of real traffic and cover (Regular).
    pub packet_size: PacketSize,
    /// Sphinx version of data packets, their SURB-ACKs and reply SURBs
    /// (259, as a stock 2026.9 client). Cover always uses 258.
    pub sphinx_version: SphinxVersion,
    /// Reply-SURB settings.
    pub reply_surbs: ReplySurbConfig,
    /// Reassembly bounds.
    pub reassembly: ReassemblyConfig,
    /// Set ids of messages already delivered, oldest first (from
    /// the driver's `completed_sets` of a previous run): fragments
    /// of these sets that senders retransmit (their ack was lost) are
    /// ignored instead of delivering the message twice.
    pub completed_sets: Vec<i32>,
    /// Bytes of received messages held for a slow subscriber before the
    /// client stops reading from its gateway (backpressure, nothing dropped).
    pub received_buffer_bytes: usize,
    /// Bytes of reply SURBs received from others that are kept (32 MiB).
    pub surb_store_bytes: usize,
    /// Bytes of the keys of reply SURBs we handed out that are kept
    /// (32 MiB, about 170,000 keys).
    pub reply_key_bytes: usize,
    /// Warnings caused by what others send (malformed messages, refused
    /// requests, dropped incomplete messages) are logged at most
    /// [`Config::warnings_per_interval`] times per interval (60 s),
    /// then one summary line per interval counts the rest.
    pub warning_interval: Duration,
    /// See [`Config::warning_interval`] (5).
    pub warnings_per_interval: u32,
    /// Packets queued for sending before `send` waits.
    pub max_queued_packets: usize,
    /// Connection lanes numbered from this one up are the identity's own
    /// sessions (nymd's SOCKS connections use lanes from 2^63): connections
    /// that end with the client, so their messages are not journalled
    /// (sending them again after a restart would only feed dead
    /// connections); and a recipient that such a lane, while open, sent
    /// anonymous messages to (the network requester we chose, answering
    /// our own requests) is given the reply SURBs it asks for at the rate
    /// it spends them: every packet it sends us through one of our SURBs
    /// puts one back in its [`ReplySurbConfig::answer_burst`] on top of
    /// [`ReplySurbConfig::answer_rate`]. Others keep that rate. `None`
    /// (default): every app message is journalled, every recipient gets
    /// the rate.
    pub volatile_lanes_from: Option<u64>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            average_packet_delay: Duration::from_millis(15),
            average_ack_delay: Duration::from_millis(15),
            message_sending_average_delay: Duration::from_millis(20),
            loop_cover_average_delay: Duration::from_millis(200),
            disable_main_poisson: false,
            disable_loop_cover: false,
            disable_delays: false,
            ack_wait_multiplier: 1.5,
            ack_wait_addition: Duration::from_millis(1500),
            max_retransmissions: Some(DEFAULT_MAX_RETRANSMISSIONS),
            ack_backoff_after: DEFAULT_ACK_BACKOFF_AFTER,
            max_in_flight: Some(DEFAULT_MAX_IN_FLIGHT),
            ack_wait_max: Duration::from_secs(60),
            packet_size: PacketSize::Regular,
            sphinx_version: SphinxVersion::Seeds259,
            reply_surbs: ReplySurbConfig::default(),
            reassembly: ReassemblyConfig::default(),
            completed_sets: Vec::new(),
            received_buffer_bytes: 64 * 1024 * 1024,
            surb_store_bytes: 32 * 1024 * 1024,
            reply_key_bytes: 32 * 1024 * 1024,
            warning_interval: Duration::from_secs(60),
            warnings_per_interval: 5,
            max_queued_packets: 16 * 1024,
            volatile_lanes_from: None,
        }
    }
}

impl Config {
    /// Whether messages on `lane` skip the journal
    /// ([`Config::volatile_lanes_from`]).
    pub fn is_volatile(&self, lane: crate::types::Lane) -> bool {
        match (lane, self.volatile_lanes_from) {
            (crate::types::Lane::Connection(c), Some(from)) => c >= from,
            _ => false,
        }
    }

    /// Nym's defaults with cover traffic, the Poisson rate limit and all
    /// per-hop delays off (nym-client's `--no-cover` plus zero delays).
    pub fn for_tests() -> Self {
        Self {
            disable_main_poisson: true,
            disable_loop_cover: true,
            disable_delays: true,
            ..Self::default()
        }
    }

    pub fn packet_mean(&self) -> Duration {
        if self.disable_delays {
            Duration::ZERO
        } else {
            self.average_packet_delay
        }
    }

    pub fn ack_mean(&self) -> Duration {
        if self.disable_delays {
            Duration::ZERO
        } else {
            self.average_ack_delay
        }
    }

    pub fn ack_timeout(&self, total_delay: Duration) -> Duration {
        let m = if self.ack_wait_multiplier.is_finite() && self.ack_wait_multiplier > 0.0 {
            self.ack_wait_multiplier
        } else {
            1.5
        };
        total_delay
            .mul_f64(m)
            .saturating_add(self.ack_wait_addition)
    }

    /// The wait for the ack of a fragment after its `attempt`-th
    /// retransmission (0: the first transmission):
    /// [`Config::ack_timeout`] up to
    /// [`Config::ack_backoff_after`], then doubled per retransmission,
    /// at most [`Config::ack_wait_max`] (or the first wait, if that
    /// is longer).
    pub fn ack_wait(&self, total_delay: Duration, attempt: u32) -> Duration {
        let base = self.ack_timeout(total_delay);
        let cap = self.ack_wait_max.max(base);
        let doublings = attempt.saturating_sub(self.ack_backoff_after).min(20);
        base.saturating_mul(1u32 << doublings).min(cap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volatile_lanes_are_those_from_the_threshold_up() {
        use crate::types::Lane;
        let mut c = Config::default();
        assert!(!c.is_volatile(Lane::Connection(u64::MAX)), "off by default");
        c.volatile_lanes_from = Some(1 << 63);
        assert!(c.is_volatile(Lane::Connection(1 << 63)));
        assert!(c.is_volatile(Lane::Connection(u64::MAX)));
        assert!(!c.is_volatile(Lane::Connection((1 << 63) - 1)));
        assert!(!c.is_volatile(Lane::General));
    }

    #[test]
    fn nym_defaults() {
        let c = Config::default();
        assert_eq!(c.average_packet_delay, Duration::from_millis(15));
        assert_eq!(c.average_ack_delay, Duration::from_millis(15));
        assert_eq!(c.message_sending_average_delay, Duration::from_millis(20));
        assert_eq!(c.loop_cover_average_delay, Duration::from_millis(200));
        assert!(!c.disable_main_poisson && !c.disable_loop_cover && !c.disable_delays);
        assert_eq!(
            c.max_retransmissions,
            Some(30),
            "nymd gives up; nym-client does not"
        );
        let r = ReplySurbConfig::default();
        assert_eq!(
            (
                r.min_surb_threshold,
                r.max_surb_threshold,
                r.min_request,
                r.max_request
            ),
            (10, 200, 10, 50)
        );
        assert_eq!(r.max_accepted_request, 500);
    }

    #[test]
    fn ack_timeout_is_delay_times_multiplier_plus_addition() {
        let c = Config::default();
        assert_eq!(c.ack_timeout(Duration::ZERO), Duration::from_millis(1500));
        assert_eq!(
            c.ack_timeout(Duration::from_secs(2)),
            Duration::from_millis(4500)
        );
        let t = Config::for_tests();
        assert_eq!(t.packet_mean(), Duration::ZERO);
        assert_eq!(t.ack_mean(), Duration::ZERO);
        assert_eq!(c.packet_mean(), Duration::from_millis(15));
    }

    #[test]
    fn the_ack_wait_doubles_up_to_its_cap_and_the_default_gives_up_in_minutes() {
        let c = Config::default();
        let d = Duration::from_millis(120);
        let first = c.ack_timeout(d);
        assert_eq!(c.ack_wait(d, 0), first);
        assert_eq!(c.ack_wait(d, 20), first, "nym-client's pace first");
        assert_eq!(c.ack_wait(d, 21), first * 2);
        assert_eq!(c.ack_wait(d, 23), first * 8);
        assert_eq!(c.ack_wait(d, 29), Duration::from_secs(60));
        assert_eq!(c.ack_wait(d, u32::MAX), Duration::from_secs(60));
        // No cap: nym-client's constant wait.
        let nym = Config {
            ack_wait_max: Duration::ZERO,
            ..Config::default()
        };
        assert_eq!(nym.ack_wait(d, 5), nym.ack_timeout(d));
        // A first wait above the cap is kept, not shortened.
        let slow = Duration::from_secs(100);
        assert_eq!(c.ack_wait(slow, 4), c.ack_timeout(slow));
        // 31 waits (the first transmission and 30 retransmissions) at
        // Nym's default delays (8 hops of 15 ms): about 7 1/2 minutes.
        let max = c.max_retransmissions.unwrap_or(0);
        let total: Duration = (0..=max).map(|n| c.ack_wait(d, n)).sum();
        assert!(
            total > Duration::from_secs(420) && total < Duration::from_secs(480),
            "{total:?}"
        );
    }
}
