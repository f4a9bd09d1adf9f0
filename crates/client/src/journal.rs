//! What the core asks its driver to keep on disk: the messages it sends,
//! until each is acknowledged, given up or dropped with its lane
//! ([`Journal`]); and taking them back after a restart
//! ([`crate::Client::restore`]) with the same fragment ids, so that the
//! recipients' duplicate suppression keeps delivery exactly-once.

use nymd_proto::params::FragmentId;
use nymd_proto::{Recipient, SenderTag};

use crate::client::Client;
use crate::lanes::QueueLane;
use crate::sending::{Dest, Pending};
use crate::types::Lane;

/// The top bit of the message numbers of `reply` messages (the core's
/// message numbers count up from 0 and never reach it).
pub const REPLY_BIT: u64 = 1 << 63;

/// Where the core's journalled messages go. Calls must not block: a
/// driver hands them to a writer (nymd's outbox has a thread per
/// journal) and says through [`Journal::has_room`] when it falls behind.
pub trait Journal: Send + std::fmt::Debug {
    /// A message to `recipient`, as the fragments that will be sent.
    fn add(&self, message: u64, recipient: &Recipient, fragments: &[(FragmentId, Vec<u8>)]);
    /// A reply to `tag` (its number has [`REPLY_BIT`] set).
    fn add_reply(&self, message: u64, tag: &SenderTag, fragments: &[(FragmentId, Vec<u8>)]);
    /// The message needs no more sending.
    fn done(&self, message: u64);
    /// Whether the journal keeps up: while false the core takes no new app
    /// messages ([`Client::accepts_requests`]).
    fn has_room(&self) -> bool;
    /// Wait until what was added is written (the driver is stopping).
    fn close(&mut self);
}

/// A message journalled by a previous run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Journalled {
    /// Its number.
    pub message: u64,
    /// Its recipient.
    pub recipient: Recipient,
    /// Its fragments not acknowledged when the run ended.
    pub fragments: Vec<(FragmentId, Vec<u8>)>,
}

/// A reply journalled by a previous run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalledReply {
    /// Its number ([`REPLY_BIT`] set).
    pub message: u64,
    /// Who it answers.
    pub tag: SenderTag,
    /// Its fragments not acknowledged when the run ended.
    pub fragments: Vec<(FragmentId, Vec<u8>)>,
}

impl Client {
    /// Take back one message the outbox kept from a previous run: its
    /// fragments not already pending become pending on the general lane
    /// with `dest`, and their ids are returned for the caller to queue. A
    /// message with none left is marked done in the outbox.
    pub(crate) fn restore_message(
        &mut self,
        message: u64,
        fragments: Vec<(FragmentId, Vec<u8>)>,
        dest: impl Fn() -> Dest,
    ) -> Vec<FragmentId> {
        self.next_message = self
            .next_message
            .max((message & !REPLY_BIT).wrapping_add(1));
        let mut ids = Vec::with_capacity(fragments.len());
        for (id, fragment) in fragments {
            if self.pending.contains_key(&id) {
                continue;
            }
            self.pending.insert(
                id,
                Pending {
                    fragment,
                    dest: dest(),
                    lane: Lane::General,
                    message,
                    internal: false,
                    retransmissions: 0,
                    reached_gateway: false,
                    in_flight: false,
                    timer: None,
                },
            );
            ids.push(id);
        }
        if !ids.is_empty() {
            self.journalled.insert(message, ids.len());
        } else if let Some(o) = &self.journal {
            o.done(message);
        }
        ids
    }

    /// Queue again the messages the outbox kept from a previous run (on the
    /// general lane: the app connections they came from are gone).
    pub(crate) fn restore_sends(&mut self, entries: Vec<Journalled>) {
        for e in entries {
            let recipient = Box::new(e.recipient);
            let ids = self.restore_message(e.message, e.fragments, || {
                Dest::Recipient(recipient.clone())
            });
            for id in ids {
                self.lanes.push(QueueLane::General, id, false);
            }
        }
    }

    /// Queue again the `reply` messages the outbox kept from a previous run
    /// (on the general lane), after the reply state: they wait for SURBs
    /// of their sender tag like any reply.
    pub(crate) fn restore_journalled_replies(&mut self, entries: Vec<JournalledReply>) {
        let mut tags = Vec::new();
        for e in entries {
            let tag = e.tag;
            let ids =
                self.restore_message(e.message, e.fragments, || Dest::Reply { tag, surb: None });
            if ids.is_empty() {
                continue;
            }
            for id in ids {
                self.push_waiting(tag, id, Lane::General, false, true);
            }
            if !tags.contains(&tag) {
                tags.push(tag);
            }
        }
        for tag in tags {
            self.pump_replies(tag);
        }
    }
}
