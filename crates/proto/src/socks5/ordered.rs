//! Sequence numbers of one connection's byte stream (spec §4).
//!
//! The mixnet delivers messages in any order and may deliver one twice. Each
//! direction of each connection therefore numbers its messages from 0, one
//! number per message (data, empty keepalive, close), and the receiver puts
//! them back in order.
//!
//! [`OrderedSender`] hands out the numbers. [`OrderedReceiver`] stores what
//! arrives, releases the bytes contiguous from the next expected number,
//! drops duplicates and numbers already released, and says when the closing
//! message has been reached. Unlike Nym's buffer it is bounded in bytes as
//! well as in look-ahead (see [`ReceiveLimits`]).

use std::collections::BTreeMap;

use super::wire::{ConnectionId, SocketData};

/// Numbers the messages one side sends on one connection.
#[derive(Debug, Clone)]
pub struct OrderedSender {
    conn_id: ConnectionId,
    next: u64,
}

impl OrderedSender {
    /// A sender whose first message gets seq 0.
    pub fn new(conn_id: ConnectionId) -> Self {
        Self { conn_id, next: 0 }
    }

    /// The seq the next message will get.
    pub fn next_seq(&self) -> u64 {
        self.next
    }

    /// The next message. `closed` marks the last one (Nym's senders send
    /// the close as an empty message of its own; data with it is also valid).
    pub fn message(&mut self, data: Vec<u8>, closed: bool) -> SocketData {
        let seq = self.next;
        // 2^64 messages cannot happen; wrapping keeps this total.
        self.next = self.next.wrapping_add(1);
        SocketData {
            conn_id: self.conn_id,
            seq,
            closed,
            data,
        }
    }

    /// An empty keepalive. Both sides send one at once (seq 0) and then
    /// after 60 s without data; it takes a seq like any message.
    pub fn keepalive(&mut self) -> SocketData {
        self.message(Vec::new(), false)
    }

    /// An empty close: the local socket reached EOF or failed.
    pub fn close(&mut self) -> SocketData {
        self.message(Vec::new(), true)
    }
}

/// Bounds of an [`OrderedReceiver`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceiveLimits {
    /// How far past the next expected seq a message may be. Nym's receiver
    /// drops anything more than 1000 ahead.
    pub window: u64,
    /// Messages that may wait (out of order, or not yet read).
    pub max_messages: usize,
    /// Bytes that may wait.
    pub max_bytes: usize,
}

impl Default for ReceiveLimits {
    /// Nym's window of 1000, and 8 MiB: Nym's senders stop reading their
    /// socket while more than 30 packets wait on the connection's lane, so a
    /// well-behaved peer has far less than this in flight.
    fn default() -> Self {
        Self {
            window: 1000,
            max_messages: 1000,
            max_bytes: 8 << 20,
        }
    }
}

/// What [`OrderedReceiver::push`] did with a message it did not refuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Kept until it can be read in order.
    Stored,
    /// Dropped: a message with this seq is already waiting.
    Duplicate,
    /// Dropped: this seq was already released.
    Stale,
}

/// A message the receiver refuses; the connection should be torn down.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum OrderedError {
    /// The seq is beyond the look-ahead window.
    #[error("sequence number {seq} is more than {window} past the next expected {next}")]
    TooFarAhead {
        /// The message's seq.
        seq: u64,
        /// The next seq expected.
        next: u64,
        /// The window.
        window: u64,
    },
    /// Storing it would exceed the message or byte bound.
    #[error(
        "sequence number {seq} refused: {messages} messages ({bytes} bytes) already wait out of order"
    )]
    BufferFull {
        /// The message's seq.
        seq: u64,
        /// Messages waiting.
        messages: usize,
        /// Bytes waiting.
        bytes: usize,
    },
}

/// Bytes released in order by [`OrderedReceiver::read`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The contiguous bytes, possibly empty when `closed` is set.
    pub data: Vec<u8>,
    /// The closing message has been reached: nothing more will follow.
    pub closed: bool,
}

/// Puts one connection's incoming messages back in order.
#[derive(Debug, Clone)]
pub struct OrderedReceiver {
    limits: ReceiveLimits,
    /// The seq to release next.
    next: u64,
    waiting: BTreeMap<u64, Vec<u8>>,
    waiting_bytes: usize,
    /// The lowest seq seen with the closed flag.
    closed_at: Option<u64>,
}

impl Default for OrderedReceiver {
    fn default() -> Self {
        Self::new(ReceiveLimits::default())
    }
}

impl OrderedReceiver {
    /// A receiver expecting seq 0 first.
    pub fn new(limits: ReceiveLimits) -> Self {
        Self {
            limits,
            next: 0,
            waiting: BTreeMap::new(),
            waiting_bytes: 0,
            closed_at: None,
        }
    }

    /// Take one message. Empty ones are stored too: keepalives use up a seq.
    ///
    /// The message that is next in order is always accepted, whatever the
    /// bounds, so a full buffer can always drain.
    pub fn push(&mut self, seq: u64, data: Vec<u8>, closed: bool) -> Result<Pushed, OrderedError> {
        let window = self.limits.window;
        if seq > self.next.saturating_add(window) {
            return Err(OrderedError::TooFarAhead {
                seq,
                next: self.next,
                window,
            });
        }
        if self.waiting.contains_key(&seq) {
            return Ok(Pushed::Duplicate);
        }
        if seq < self.next {
            return Ok(Pushed::Stale);
        }
        let too_many = self.waiting.len() >= self.limits.max_messages;
        let too_big = self.waiting_bytes.saturating_add(data.len()) > self.limits.max_bytes;
        if seq != self.next && (too_many || too_big) {
            return Err(OrderedError::BufferFull {
                seq,
                messages: self.waiting.len(),
                bytes: self.waiting_bytes,
            });
        }
        if closed {
            self.closed_at = Some(self.closed_at.map_or(seq, |c| c.min(seq)));
        }
        self.waiting_bytes += data.len();
        self.waiting.insert(seq, data);
        Ok(Pushed::Stored)
    }

    /// [`push`](Self::push) a decoded Send or NetworkData body (its
    /// connection id is the caller's to check).
    pub fn push_data(&mut self, d: SocketData) -> Result<Pushed, OrderedError> {
        self.push(d.seq, d.data, d.closed)
    }

    /// Release every message contiguous from the next expected seq.
    ///
    /// `None` when nothing is ready, and also when what is ready is only
    /// empty keepalives: those are consumed but not worth passing on. A read
    /// that reaches the closing message always returns it.
    pub fn read(&mut self) -> Option<Delivery> {
        if !self.waiting.contains_key(&self.next) {
            return None;
        }
        let mut data = Vec::new();
        while let Some(chunk) = self.waiting.remove(&self.next) {
            self.waiting_bytes -= chunk.len();
            if data.is_empty() {
                data = chunk;
            } else {
                data.extend_from_slice(&chunk);
            }
            self.next = self.next.wrapping_add(1);
        }
        let closed = self.is_closed();
        (closed || !data.is_empty()).then_some(Delivery { data, closed })
    }

    /// Whether the closing message has been released: the peer's stream has
    /// ended.
    pub fn is_closed(&self) -> bool {
        self.closed_at.is_some_and(|c| c < self.next)
    }

    /// The seq to be released next.
    pub fn next_seq(&self) -> u64 {
        self.next
    }

    /// Messages waiting to be read.
    pub fn waiting_messages(&self) -> usize {
        self.waiting.len()
    }

    /// Bytes waiting to be read.
    pub fn waiting_bytes(&self) -> usize {
        self.waiting_bytes
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn delivery(data: &[u8], closed: bool) -> Option<Delivery> {
        Some(Delivery {
            data: data.to_vec(),
            closed,
        })
    }

    #[test]
    fn sender_counts_every_message_from_zero() {
        let mut s = OrderedSender::new(7);
        let seqs: Vec<_> = [s.keepalive(), s.message(b"a".to_vec(), false), s.close()]
            .iter()
            .map(|d| (d.conn_id, d.seq, d.closed, d.data.len()))
            .collect();
        assert_eq!(seqs, [(7, 0, false, 0), (7, 1, false, 1), (7, 2, true, 0)]);
        assert_eq!(s.next_seq(), 3);
    }

    #[test]
    fn in_order_with_keepalives_and_close() {
        let mut r = OrderedReceiver::default();
        assert_eq!(r.push(0, vec![], false), Ok(Pushed::Stored));
        assert_eq!(r.read(), None, "a keepalive alone is not passed on");
        assert_eq!(r.next_seq(), 1);
        r.push(1, b"GET".to_vec(), false).expect("push");
        assert_eq!(r.read(), delivery(b"GET", false));
        r.push(2, vec![], true).expect("push");
        assert_eq!(r.read(), delivery(b"", true));
        assert!(r.is_closed());
    }

    #[test]
    fn reordering_and_duplicates() {
        let mut r = OrderedReceiver::default();
        r.push(2, b"c".to_vec(), false).expect("push");
        r.push(1, b"b".to_vec(), false).expect("push");
        assert_eq!(r.push(2, b"X".to_vec(), false), Ok(Pushed::Duplicate));
        assert_eq!(r.read(), None, "seq 0 is missing");
        r.push(0, b"a".to_vec(), false).expect("push");
        assert_eq!(r.read(), delivery(b"abc", false));
        assert_eq!(r.push(1, b"b".to_vec(), false), Ok(Pushed::Stale));
        assert_eq!(r.read(), None);
        assert_eq!((r.waiting_messages(), r.waiting_bytes()), (0, 0));
    }

    #[test]
    fn close_waits_for_the_bytes_before_it() {
        let mut r = OrderedReceiver::default();
        r.push(2, vec![], true).expect("push");
        r.push(0, b"a".to_vec(), false).expect("push");
        assert_eq!(r.read(), delivery(b"a", false));
        assert!(!r.is_closed());
        r.push(1, b"b".to_vec(), false).expect("push");
        assert_eq!(r.read(), delivery(b"b", true));
        // A second close (the peer's late one) is harmless.
        r.push(3, vec![], true).expect("push");
        assert_eq!(r.read(), delivery(b"", true));
    }

    #[test]
    fn a_peer_starting_at_one_gets_nothing() {
        let mut r = OrderedReceiver::default();
        r.push(1, b"x".to_vec(), false).expect("push");
        assert_eq!(r.read(), None);
    }

    #[test]
    fn bounds() {
        let limits = ReceiveLimits {
            window: 10,
            max_messages: 2,
            max_bytes: 5,
        };
        let mut r = OrderedReceiver::new(limits);
        assert!(matches!(
            r.push(11, vec![], false),
            Err(OrderedError::TooFarAhead { seq: 11, .. })
        ));
        assert!(matches!(
            r.push(u64::MAX, vec![], false),
            Err(OrderedError::TooFarAhead { .. })
        ));
        r.push(10, vec![], false).expect("the window's edge");
        assert!(matches!(
            r.push(3, vec![0; 6], false),
            Err(OrderedError::BufferFull { .. })
        ));
        r.push(3, vec![0; 5], false).expect("push");
        assert!(matches!(
            r.push(4, vec![], false),
            Err(OrderedError::BufferFull { messages: 2, .. })
        ));
        // The next expected message is taken even so, and drains the rest.
        r.push(0, vec![1; 100], false).expect("next in order");
        assert_eq!(r.read().map(|d| d.data.len()), Some(100));
        r.push(1, vec![], false).expect("push");
        assert_eq!(r.read(), None, "only a keepalive is ready");
        r.push(2, vec![], false).expect("push");
        assert_eq!(r.read().map(|d| d.data.len()), Some(5));
        assert_eq!(r.next_seq(), 4);
    }

    proptest! {
        /// Any arrival order, with duplicates, yields the stream once, in
        /// order, closed exactly when the last message is through.
        #[test]
        fn any_order_reassembles(
            chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..5), 1..20),
            order in proptest::collection::vec(any::<proptest::sample::Index>(), 0..60),
        ) {
            let mut s = OrderedSender::new(1);
            let last = chunks.len() - 1;
            let msgs: Vec<SocketData> = chunks
                .iter()
                .enumerate()
                .map(|(i, c)| s.message(c.clone(), i == last))
                .collect();
            let arrivals = order.iter().map(|i| i.index(msgs.len())).chain(0..msgs.len());
            let mut r = OrderedReceiver::default();
            let mut out = Vec::new();
            let mut closed = false;
            for i in arrivals {
                r.push_data(msgs[i].clone()).expect("within bounds");
                if let Some(d) = r.read() {
                    prop_assert!(!closed || d.data.is_empty());
                    out.extend(d.data);
                    closed = d.closed;
                }
            }
            prop_assert!(closed);
            prop_assert_eq!(out, chunks.concat());
        }
    }
}
