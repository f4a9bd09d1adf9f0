//! Replies: the reply SURBs others gave us (per sender tag, bounded), the
//! replies waiting for them, requests for more (ours and others'), the
//! SURBs we make for our anonymous messages, and the reply state snapshot.

use std::collections::VecDeque;
use std::time::Instant;

use nymd_proto::chunking::{NymMessage, LINKED_HEADER_LEN};
use nymd_proto::params::FragmentId;
use nymd_proto::replies::{
    v2_reply_surb_len, RepliableMessage, ReplyMessage, ReplySurb, DEFAULT_SURB_HOPS,
    MAX_SURBS_PER_LIST, V1_REPLY_SURB_LEN,
};
use nymd_proto::topology::route::to_sphinx_route;
use nymd_proto::topology::NymTopology;
use nymd_proto::{Recipient, SenderTag, SphinxVersion};

use crate::client::Client;
use crate::lanes::QueueLane;
use crate::receiving::Via;
use crate::sending::{Dest, Pending};
use crate::snapshot::Snapshot;
use crate::types::{ErrorKind, Lane, Stats};

/// Bytes accounted per stored reply SURB on top of its serialised length
/// (the struct, its vector and its place in the queue).
const SURB_OVERHEAD: usize = 96;
/// SURBs evicted at once from the fullest store (amortises finding it).
const SURB_EVICT_BATCH: usize = 16;
/// Bytes of an additional-SURBs answer besides its SURBs: message tag,
/// sender tag, content tag, list header, padding marker.
const ANSWER_OVERHEAD: usize = 1 + 16 + 1 + 4 + 1;

/// A sender tag our own sessions use (see
/// [`crate::Config::volatile_lanes_from`]).
#[derive(Debug, Default)]
pub(crate) struct Session {
    /// The open lanes that sent anonymous messages with this tag.
    lanes: std::collections::BTreeSet<u64>,
    /// Packets that came back through our SURBs for this tag since its
    /// last request for more was looked at.
    spent: u64,
}

impl Session {
    /// A packet came through one of the SURBs we made for this tag.
    pub(crate) fn spent_one(&mut self) {
        self.spent = self.spent.saturating_add(1);
    }
}

/// Bytes accounted for a stored reply SURB.
pub(crate) fn surb_cost(s: &ReplySurb) -> usize {
    s.serialized_len() + SURB_OVERHEAD
}

/// Reply SURBs received from one anonymous sender, and replies waiting for
/// SURBs.
#[derive(Debug)]
pub(crate) struct SurbStore {
    pub(crate) surbs: VecDeque<ReplySurb>,
    /// Fragment, its lane, and whether it counts on that lane.
    pub(crate) waiting: VecDeque<(FragmentId, Lane, bool)>,
    pub(crate) request_sent: Option<Instant>,
    pub(crate) request_attempts: u32,
    pub(crate) touched: Instant,
}

impl SurbStore {
    pub(crate) fn new(now: Instant) -> Self {
        Self {
            surbs: VecDeque::new(),
            waiting: VecDeque::new(),
            request_sent: None,
            request_attempts: 0,
            touched: now,
        }
    }
}

impl Client {
    /// Take back the reply state saved by a previous run (already pruned of
    /// expired keys and rotated SURBs): sender tags, reply keys, and the
    /// SURBs received per tag, within the stores' bounds.
    pub(crate) fn restore_replies(&mut self, snap: Snapshot) {
        let now = self.now;
        let burst = self.config.reply_surbs.answer_burst;
        let (tags, keys, surbs) = (
            snap.tags.len(),
            snap.keys.len(),
            snap.stores.iter().map(|(_, s)| s.len()).sum::<usize>(),
        );
        for (recipient, tag) in snap.tags {
            self.sender_tags.restore(recipient, tag, now, burst);
        }
        for k in snap.keys {
            let at = now.checked_sub(k.age).unwrap_or(now);
            self.reply_keys.insert(k.digest, k.key, k.tag, at);
        }
        for (tag, list) in snap.stores {
            self.store_surbs(tag, list, false);
        }
        if tags + keys + surbs > 0 {
            tracing::info!(
                sender_tags = tags,
                reply_keys = keys,
                reply_surbs = surbs,
                "restored the reply state of the previous run"
            );
        }
        self.mark_replies();
    }

    /// The reply state changed (written on the next housekeeping tick).
    pub(crate) fn mark_replies(&mut self) {
        self.replies_dirty = true;
    }

    pub(crate) fn snapshot(&self, unix_ms: u64) -> Snapshot {
        Snapshot {
            saved_unix_ms: unix_ms,
            rotation_id: self.topology.clone().map_or(0, |t| t.key_rotation_id()),
            tags: self.sender_tags.entries(),
            keys: self.reply_keys.entries(self.now),
            stores: self
                .stores
                .iter()
                .filter(|(_, s)| !s.surbs.is_empty())
                .map(|(t, s)| (*t, s.surbs.iter().cloned().collect()))
                .collect(),
        }
    }

    /// Keep SURBs received from `tag`: at most `max_stored_per_tag` per tag
    /// (its oldest go), `max_tags` tags (the least recently filled one with
    /// no reply waiting goes), and `surb_store_bytes` in all (the oldest
    /// SURBs of the tag holding the most go first). `answer`: they answer a
    /// request for SURBs (which is then no longer outstanding); SURBs that
    /// come with a data message leave an outstanding request as it is (its
    /// answer is still on the way).
    pub(crate) fn store_surbs(&mut self, tag: SenderTag, surbs: Vec<ReplySurb>, answer: bool) {
        self.mark_replies();
        let now = self.now;
        let cfg = &self.config.reply_surbs;
        let max = cfg.max_stored_per_tag;
        if !self.stores.contains_key(&tag) && self.stores.len() >= cfg.max_tags {
            if let Some(old) = self
                .stores
                .iter()
                .filter(|(_, s)| s.waiting.is_empty())
                .min_by_key(|(_, s)| s.touched)
                .map(|(t, _)| *t)
            {
                if let Some(gone) = self.stores.remove(&old) {
                    let bytes = gone.surbs.iter().map(surb_cost).sum();
                    self.surb_bytes.give_back(bytes);
                }
            }
        }
        {
            let store = self
                .stores
                .entry(tag)
                .or_insert_with(|| SurbStore::new(now));
            store.touched = now;
            if answer && !surbs.is_empty() {
                store.request_sent = None;
                store.request_attempts = 0;
            }
        }
        let skip = surbs.len().saturating_sub(max);
        let mut dropped = 0usize;
        for surb in surbs.into_iter().skip(skip) {
            let cost = surb_cost(&surb);
            let mut room = self.surb_bytes.try_take(cost);
            while !room && self.evict_surbs() {
                room = self.surb_bytes.try_take(cost);
            }
            if !room {
                dropped += 1;
                continue;
            }
            let Some(store) = self.stores.get_mut(&tag) else {
                self.surb_bytes.give_back(cost);
                continue;
            };
            store.surbs.push_back(surb);
            if store.surbs.len() > max {
                if let Some(old) = store.surbs.pop_front() {
                    self.surb_bytes.give_back(surb_cost(&old));
                }
            }
        }
        if dropped > 0 {
            self.outside_warning(
                "dropped received reply SURBs: no memory left for them",
                &format_args!("{dropped} SURBs from {tag}"),
            );
        }
    }

    /// Evict the oldest SURBs of the tag that holds the most (ties: the
    /// least recently filled). False when no SURB is stored.
    pub(crate) fn evict_surbs(&mut self) -> bool {
        let Some(tag) = self
            .stores
            .iter()
            .filter(|(_, s)| !s.surbs.is_empty())
            .max_by(|(_, a), (_, b)| {
                a.surbs
                    .len()
                    .cmp(&b.surbs.len())
                    .then(b.touched.cmp(&a.touched))
            })
            .map(|(t, _)| *t)
        else {
            return false;
        };
        let Some(store) = self.stores.get_mut(&tag) else {
            return false;
        };
        for _ in 0..SURB_EVICT_BATCH {
            match store.surbs.pop_front() {
                Some(old) => self.surb_bytes.give_back(surb_cost(&old)),
                None => break,
            }
        }
        true
    }

    /// Take the oldest stored SURB of `tag`.
    pub(crate) fn take_surb(&mut self, tag: &SenderTag) -> Option<ReplySurb> {
        let surb = self.stores.get_mut(tag)?.surbs.pop_front()?;
        self.surb_bytes.give_back(surb_cost(&surb));
        self.mark_replies();
        Some(surb)
    }

    /// Put back a SURB that was not used after all.
    pub(crate) fn return_surb(&mut self, tag: &SenderTag, surb: ReplySurb) {
        if let Some(store) = self.stores.get_mut(tag) {
            self.surb_bytes.force_take(surb_cost(&surb));
            store.surbs.push_front(surb);
            self.mark_replies();
        }
    }

    /// An anonymous message to the recipient of `tag` goes out on `lane`:
    /// if that is one of our own sessions, the recipient is given SURBs at
    /// the rate it spends them while the lane is open.
    pub(crate) fn note_session(&mut self, lane: Lane, tag: SenderTag) {
        let Lane::Connection(c) = lane else {
            return;
        };
        if !self.config.is_volatile(lane) {
            return;
        }
        if let Some(old) = self.session_lanes.insert(c, tag) {
            if old != tag {
                self.leave_session(c, old);
            }
        }
        self.sessions.entry(tag).or_default().lanes.insert(c);
    }

    /// Lane `conn` closed: it is no longer one of our sessions.
    pub(crate) fn end_session(&mut self, conn: u64) {
        if let Some(tag) = self.session_lanes.remove(&conn) {
            self.leave_session(conn, tag);
        }
    }

    fn leave_session(&mut self, conn: u64, tag: SenderTag) {
        if let Some(s) = self.sessions.get_mut(&tag) {
            s.lanes.remove(&conn);
            if s.lanes.is_empty() {
                self.sessions.remove(&tag);
            }
        }
    }

    pub(crate) fn refuse_surb_request(&mut self, why: &str) {
        Stats::add(&self.published.stats.surb_requests_refused, 1);
        self.outside_warning("refused a request for reply SURBs", &why);
    }

    /// A peer asks for more reply SURBs (it holds too few to reply). It is
    /// answered only if it came through one of the SURBs we made for the
    /// recipient it names (so only a party we sent anonymous messages to
    /// can ask, and only for itself), within that recipient's rate limit
    /// and while the send queue is at most half full. Nym's own client also
    /// refuses requests naming a recipient it never sent to.
    pub(crate) fn on_surb_request(&mut self, recipient: Recipient, amount: u32, via: Via) {
        let Via::OurSurb(surb_tag) = via else {
            return self.refuse_surb_request("it did not come through one of our reply SURBs");
        };
        let now = self.now;
        let (rate, burst) = (
            self.config.reply_surbs.answer_rate,
            self.config.reply_surbs.answer_burst,
        );
        let by_queue = self.surbs_fitting_in_queue();
        let max = self.config.reply_surbs.max_accepted_request;
        // Our own session's peer gets back what it spent.
        let spent = self
            .sessions
            .get_mut(&surb_tag)
            .map_or(0, |s| std::mem::take(&mut s.spent));
        let grant = {
            let Some(entry) = self.sender_tags.get_mut(&recipient.to_bytes()) else {
                return self.refuse_surb_request(
                    "it names a recipient we never sent anonymous messages to",
                );
            };
            if entry.tag != surb_tag {
                return self.refuse_surb_request(
                    "it names another recipient than the one its SURB was made for",
                );
            }
            if spent > 0 {
                entry.credit(spent, burst);
            }
            let available = entry.available(now, rate, burst);
            let grant = amount.min(max).min(available).min(by_queue);
            if grant > 0 {
                entry.spend(grant);
            }
            (grant, available)
        };
        let (grant, available) = grant;
        if grant == 0 {
            let why = if amount == 0 {
                "it asks for no SURBs"
            } else if available == 0 {
                "its sender tag is over the rate limit"
            } else {
                "the send queue is half full"
            };
            return self.refuse_surb_request(why);
        }
        let Some(topology) = self.topology.clone() else {
            return self.refuse_surb_request("no usable network topology");
        };
        if topology
            .egress_by_identity(recipient.gateway().as_bytes(), false)
            .is_err()
        {
            return self.refuse_surb_request("the requester's gateway cannot be used");
        }
        tracing::debug!(amount, grant, %surb_tag, "answering a reply-SURB request");
        let surbs = match self.build_reply_surbs(&topology, grant, surb_tag) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "could not build reply SURBs");
                return;
            }
        };
        let s = &self.published.stats;
        Stats::add(&s.surb_requests_answered, 1);
        Stats::add(&s.surbs_handed_out, surbs.len() as u64);
        let msg = NymMessage::Repliable(RepliableMessage::new_additional_surbs(surb_tag, surbs));
        self.enqueue_to_recipient(msg, recipient, Lane::General, true);
    }

    /// Serialised length of one of our reply SURBs.
    pub(crate) fn surb_len(&self) -> usize {
        match self.config.sphinx_version {
            SphinxVersion::Seeds259 => v2_reply_surb_len(DEFAULT_SURB_HOPS),
            SphinxVersion::Legacy258 => V1_REPLY_SURB_LEN,
        }
    }

    /// SURBs an answer may carry so that, with everything already queued,
    /// the send queue stays at most half full (the other half stays for
    /// the apps).
    pub(crate) fn surbs_fitting_in_queue(&self) -> u32 {
        let half = self.config.max_queued_packets / 2;
        let room = half.saturating_sub(self.lanes.queued());
        let per_packet = self
            .config
            .packet_size
            .fragment_capacity()
            .saturating_sub(LINKED_HEADER_LEN);
        let bytes = room
            .saturating_mul(per_packet)
            .saturating_sub(ANSWER_OVERHEAD);
        u32::try_from(bytes / self.surb_len().max(1)).unwrap_or(u32::MAX)
    }

    // -------------------------------------------------------------- sending

    pub(crate) fn sender_tag_for(&mut self, recipient: &Recipient) -> SenderTag {
        let burst = self.config.reply_surbs.answer_burst;
        let known = self.sender_tags.len();
        let tag = self
            .sender_tags
            .tag_for(&recipient.to_bytes(), &mut self.rng, self.now, burst);
        // Also a use of a known tag: its place in the order changed.
        self.mark_replies();
        if self.sender_tags.len() > known {
            tracing::debug!(%tag, "using a new sender tag for anonymous messages to {recipient}");
        }
        tag
    }

    /// Build `count` reply SURBs back to us for the recipient that uses
    /// `tag`, keeping their keys.
    pub(crate) fn build_reply_surbs(
        &mut self,
        topology: &NymTopology,
        count: u32,
        tag: SenderTag,
    ) -> Result<Vec<ReplySurb>, String> {
        let count = (count as usize).min(MAX_SURBS_PER_LIST);
        self.mark_replies();
        let mut out = Vec::with_capacity(count);
        let now = self.now;
        for _ in 0..count {
            let route = topology
                .random_route_to(&mut self.rng, &self.own_gateway)
                .map_err(|e| e.to_string())?;
            let nodes = to_sphinx_route(&route).map_err(|e| e.to_string())?;
            let surb = ReplySurb::build_with_mean_delay(
                &mut self.rng,
                &nodes,
                self.own.identity(),
                self.config.packet_mean(),
                self.config.sphinx_version,
            )
            .map_err(|e| e.to_string())?
            .with_key_rotation(topology.key_rotation());
            if !self.reply_keys.insert(
                surb.key_digest(),
                *surb.encryption_key().as_bytes(),
                tag,
                now,
            ) {
                return Err("no room for the keys of reply SURBs (reply_key_bytes)".into());
            }
            out.push(surb);
        }
        Ok(out)
    }

    /// Park a reply fragment until a SURB is reserved for it. `counted`:
    /// whether it counts on its lane (first transmissions do,
    /// retransmissions do not).
    pub(crate) fn push_waiting(
        &mut self,
        tag: SenderTag,
        id: FragmentId,
        lane: Lane,
        front: bool,
        counted: bool,
    ) {
        let now = self.now;
        let store = self
            .stores
            .entry(tag)
            .or_insert_with(|| SurbStore::new(now));
        let entry = (id, lane, counted);
        if front {
            store.waiting.push_front(entry);
        } else {
            store.waiting.push_back(entry);
        }
        self.lanes.add_waiting();
        if counted {
            self.published.lane_adjust(lane, 1);
        }
    }

    /// Attach SURBs to replies waiting for `tag`; when there are too few,
    /// spend one on asking the sender for more.
    pub(crate) fn pump_replies(&mut self, tag: SenderTag) {
        loop {
            let Some(store) = self.stores.get_mut(&tag) else {
                return;
            };
            // Drop waiting ids whose fragment is gone (acked or failed).
            while let Some((id, lane, counted)) = store.waiting.front().copied() {
                if self.pending.contains_key(&id) {
                    break;
                }
                store.waiting.pop_front();
                self.lanes.remove_waiting(1);
                if counted {
                    self.published.lane_adjust(lane, -1);
                }
            }
            let need = store.waiting.len();
            if need == 0 {
                return;
            }
            let have = store.surbs.len();
            let asked = store.request_sent.is_some();
            if have == 0 {
                if !asked {
                    self.fail_waiting(tag, "no reply SURBs left for this sender tag");
                }
                return;
            }
            let cfg = &self.config.reply_surbs;
            // Ask for more while a SURB is left to ask with: before the
            // stock runs low (so a stream of replies never runs dry), or,
            // with the last one, again after a request went unanswered.
            let running_low = have >= 2 && have - 1 < need + cfg.min_surb_threshold;
            let ask_again = have == 1 && store.request_attempts > 0;
            if !asked && (running_low || ask_again) {
                // Enough for what waits plus the threshold, after the one
                // spent on asking.
                let want = (need + cfg.min_surb_threshold)
                    .saturating_sub(have - 1)
                    .min(cfg.max_surb_threshold) as u32;
                let amount = want.clamp(cfg.min_request, cfg.max_request.max(cfg.min_request));
                store.request_sent = Some(self.now);
                store.request_attempts += 1;
                if let Some(surb) = self.take_surb(&tag) {
                    self.send_surb_request(tag, surb, amount);
                }
                continue;
            }
            // While a request is out, the last SURB is kept to ask again
            // with if it goes unanswered.
            if asked && have == 1 {
                return;
            }
            let Some((id, lane, counted)) = store.waiting.pop_front() else {
                return;
            };
            let Some(surb) = self.take_surb(&tag) else {
                if let Some(store) = self.stores.get_mut(&tag) {
                    store.waiting.push_front((id, lane, counted));
                }
                return;
            };
            self.lanes.remove_waiting(1);
            let Some(p) = self.pending.get_mut(&id) else {
                // Gone meanwhile: keep the SURB.
                self.return_surb(&tag, surb);
                if counted {
                    self.published.lane_adjust(lane, -1);
                }
                continue;
            };
            if let Dest::Reply { surb: slot, .. } = &mut p.dest {
                *slot = Some(surb);
            }
            // A counted fragment moves to its lane (count unchanged); an
            // uncounted one (a retransmission) to the retransmission lane.
            let q = if counted {
                Self::queue_lane(lane)
            } else {
                QueueLane::Retransmit
            };
            self.lanes.push(q, id, false);
        }
    }

    pub(crate) fn send_surb_request(&mut self, tag: SenderTag, surb: ReplySurb, amount: u32) {
        tracing::debug!(%tag, amount, "asking for more reply SURBs");
        let msg = NymMessage::Reply(ReplyMessage::SurbRequest {
            recipient: Box::new(self.own),
            amount,
        });
        let Some(fragments) = self.fragment(msg, Lane::General) else {
            return;
        };
        let message = self.new_message_id();
        let mut surb = Some(surb);
        for (id, bytes) in fragments {
            let attached = surb.take();
            let has = attached.is_some();
            self.pending.insert(
                id,
                Pending {
                    fragment: bytes,
                    dest: Dest::Reply {
                        tag,
                        surb: attached,
                    },
                    lane: Lane::General,
                    message,
                    internal: true,
                    retransmissions: 0,
                    reached_gateway: false,
                    in_flight: false,
                    timer: None,
                },
            );
            if has {
                self.lanes.push(QueueLane::Retransmit, id, true);
            } else {
                self.push_waiting(tag, id, Lane::General, true, false);
            }
        }
    }

    pub(crate) fn fail_waiting(&mut self, tag: SenderTag, why: &str) {
        let Some(store) = self.stores.get_mut(&tag) else {
            return;
        };
        let ids: Vec<(FragmentId, Lane, bool)> = store.waiting.drain(..).collect();
        store.request_sent = None;
        store.request_attempts = 0;
        self.lanes.remove_waiting(ids.len());
        let mut failed: Vec<(u64, Lane, bool)> = Vec::new();
        for (id, lane, counted) in ids {
            if counted {
                self.published.lane_adjust(lane, -1);
            }
            if let Some(p) = self.pending.remove(&id) {
                if let Some(k) = p.timer {
                    self.timers.remove(&k);
                }
                self.out_of_flight(&p);
                if !failed.iter().any(|(m, _, _)| *m == p.message) {
                    failed.push((p.message, p.lane, p.internal));
                }
            }
        }
        for (message, lane, internal) in failed {
            self.drop_message(message);
            if !internal {
                self.emit_error(
                    ErrorKind::NoReplySurbs,
                    format!("reply to {tag} not sent: {why}"),
                    Some(lane),
                );
            }
        }
    }
}
