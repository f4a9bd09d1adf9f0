//! Receiving: what the gateway pushes (acks, our loop cover coming back,
//! messages), decryption with reply keys, reassembly, and delivery.

use std::collections::VecDeque;

use nymd_proto::ack::recognise_ack;
use nymd_proto::chunking::{Fragment, InsertOutcome, NymMessage, ReassemblyError};
use nymd_proto::cover::is_cover;
use nymd_proto::payload::{classify_pushed, decrypt_message, PushedKind};
use nymd_proto::replies::{RepliableContent, ReplyMessage};
use nymd_proto::SenderTag;

use crate::client::Client;
use crate::types::{ClientEvent, ReceivedMessage, Stats};

/// How a received message came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Via {
    /// Whole, in one fragment, through one of the reply SURBs we made for
    /// this tag's recipient.
    OurSurb(SenderTag),
    /// Any other way (forward path, or several fragments).
    Other,
}

/// Loop cover markers kept. At Nym's defaults about 55 cover packets a
/// second leave (5 of the loop cover stream, 50 of the main Poisson stream
/// when it has nothing real to send) and each usually comes back within a
/// second (three mixes of 50 ms mean delay, then the gateway); a congested
/// mixnet can hold them for seconds. 512 markers (8 KiB) cover about 9 s of
/// cover in flight. A marker forgotten costs only work, but real work:
/// `on_pushed` then opens the packet the usual way (a Diffie-Hellman and
/// decryption, ~80 µs, more than the rest of an idle identity's receive
/// path per packet) and still counts it as cover when it finds the cover
/// content.
const COVER_MARKERS: usize = 512;

/// The ephemeral keys of our own loop cover packets still in flight. A
/// pushed message starting with one of them is our loop coming back: it is
/// counted and dropped without the Diffie-Hellman and decryption (a stock
/// client decrypts it only to find the cover content). Nothing on the wire
/// changes; anything else is opened as usual.
///
/// Only the first 16 bytes of each 32-byte key are kept, in a ring scanned
/// linearly (8 KiB when full; the set and queue of whole keys it replaces
/// took about 25 KB per identity). A message that is not one of our loops
/// starts with a key its sender drew at random (or a reply key digest), so
/// it matches a kept marker only by a coincidence of probability 2^-128 per
/// marker. Nobody can aim for one either: a marker is first seen by the
/// last mix and our gateway as the packet comes back, and they could as
/// well drop it (as with whole keys).
#[derive(Debug, Default)]
pub(crate) struct CoverMarkers {
    /// Oldest first; at most [`COVER_MARKERS`].
    ring: VecDeque<u128>,
}

/// The part of a marker (or of a message's first 32 bytes) that is kept.
fn short_marker(head: &[u8; 32]) -> u128 {
    let mut half = [0u8; 16];
    half.copy_from_slice(&head[..16]);
    u128::from_le_bytes(half)
}

impl CoverMarkers {
    pub(crate) fn insert(&mut self, marker: [u8; 32]) {
        if self.ring.len() >= COVER_MARKERS {
            self.ring.pop_front();
        }
        self.ring.push_back(short_marker(&marker));
    }

    /// Whether `message` is one of our loops (forgetting its marker, so
    /// that it matches once).
    pub(crate) fn take(&mut self, message: &[u8]) -> bool {
        let Some(head) = message.first_chunk::<32>() else {
            return false;
        };
        let key = short_marker(head);
        // Loops come back roughly in the order they left: oldest first.
        match self.ring.iter().position(|m| *m == key) {
            Some(i) => {
                self.ring.remove(i);
                true
            }
            None => false,
        }
    }
}

impl Client {
    pub(crate) fn on_pushed(&mut self, plain: Vec<u8>) {
        let s = &self.published.stats;
        match classify_pushed(plain.len()) {
            Some(PushedKind::Ack) => match recognise_ack(&self.keys.ack, &plain) {
                Ok(id) if id.is_cover() => {}
                Ok(id) => {
                    if let Some(p) = self.pending.remove(&id) {
                        Stats::add(&s.acks_received, 1);
                        if let Some(k) = p.timer {
                            self.timers.remove(&k);
                        }
                        self.out_of_flight(&p);
                        self.fragment_done(p.message);
                    }
                }
                Err(e) => self.outside_warning("ignored an unreadable ack", &e),
            },
            Some(PushedKind::Message(_)) => {
                if self.cover_markers.take(&plain) {
                    Stats::add(&s.cover_packets_received, 1);
                    Stats::add(&s.cover_bytes_received, plain.len() as u64);
                    return;
                }
                let reply_keys = &mut self.reply_keys;
                let mut surb_tag = None;
                let mut used_key = false;
                let decrypted =
                    decrypt_message(&self.keys.encryption, &plain, &mut |d: &[u8; 32]| {
                        reply_keys.take(d).map(|(key, tag)| {
                            used_key = true;
                            surb_tag = Some(tag);
                            key
                        })
                    });
                if used_key {
                    self.replies_dirty = true;
                }
                // One of our SURBs spent: our own session's peer gets it
                // back when it asks for more.
                if let Some(session) = surb_tag.and_then(|t| self.sessions.get_mut(&t)) {
                    session.spent_one();
                }
                let decrypted = match decrypted {
                    Ok(d) => d,
                    Err(e) => return self.outside_warning("ignored an undecryptable message", &e),
                };
                if is_cover(&decrypted.fragment) {
                    Stats::add(&s.cover_packets_received, 1);
                    Stats::add(&s.cover_bytes_received, plain.len() as u64);
                    return;
                }
                Stats::add(&s.real_packets_received, 1);
                Stats::add(&s.real_bytes_received, plain.len() as u64);
                let fragment = match Fragment::from_bytes(&decrypted.fragment) {
                    Ok(f) => f,
                    Err(e) => return self.outside_warning("ignored a malformed fragment", &e),
                };
                // Only a message that came whole through one of our SURBs
                // can be a SURB request we answer (Nym's requests always
                // fit one fragment).
                let via = match surb_tag {
                    Some(tag) if fragment.total() == 1 && !fragment.header().is_linked() => {
                        Via::OurSurb(tag)
                    }
                    _ => Via::Other,
                };
                self.reassemble(fragment, via);
            }
            None => {
                self.outside_warning("ignored a pushed message of unknown length", &plain.len())
            }
        }
    }

    pub(crate) fn reassemble(&mut self, fragment: Fragment, via: Via) {
        let now = self.now;
        // The reassembler keeps to its own bound (its oldest incomplete
        // messages go first); the daemon's budget is kept by reading no
        // fragments while it is used up, so that no message whose
        // fragments the sender saw acknowledged is dropped for it.
        let inserted = self.reassembler.insert(fragment, now);
        self.reassembly_bytes
            .set_used(self.reassembler.buffered_bytes());
        match inserted {
            Ok(ins) => {
                for d in ins.evicted {
                    self.outside_warning(
                        "dropped an incomplete message to make room",
                        &format_args!("set {} ({} of {} fragments)", d.set_id, d.received, d.total),
                    );
                }
                match ins.outcome {
                    InsertOutcome::Complete(m) => {
                        self.note_completed(&m.set_ids);
                        match m.into_message() {
                            Ok(msg) => self.on_message(msg, via),
                            Err(e) => self.outside_warning("ignored a malformed message", &e),
                        }
                    }
                    InsertOutcome::Duplicate => {
                        Stats::add(&self.published.stats.duplicate_fragments, 1)
                    }
                    InsertOutcome::Buffered => {}
                }
            }
            Err(e @ ReassemblyError::TooLarge { .. }) => self.outside_warning(
                "dropped a fragment: no memory left to reassemble its message",
                &e,
            ),
            Err(e) => self.outside_warning("ignored a fragment", &e),
        }
    }

    /// Publish the set ids of a completed message for the handle
    /// ([`crate::ClientHandle::completed_sets`]), bounded like the
    /// reassembler's own memory.
    pub(crate) fn note_completed(&self, set_ids: &[i32]) {
        let keep = self.config.reassembly.recently_completed;
        self.published.note_completed(set_ids, keep, true);
    }

    pub(crate) fn deliver(&mut self, data: Vec<u8>, sender_tag: Option<SenderTag>) {
        Stats::add(&self.published.stats.messages_received, 1);
        self.emit(ClientEvent::Received(ReceivedMessage { data, sender_tag }));
    }

    pub(crate) fn on_message(&mut self, msg: NymMessage, via: Via) {
        match msg {
            NymMessage::Plain(data) => self.deliver(data, None),
            NymMessage::Repliable(m) => {
                let tag = m.sender_tag;
                let is_data = matches!(
                    m.content,
                    RepliableContent::DataV1 { .. } | RepliableContent::DataV2 { .. }
                );
                let (surbs, data) = m.content.into_parts();
                self.store_surbs(tag, surbs, !is_data);
                if is_data {
                    self.deliver(data, Some(tag));
                }
                self.pump_replies(tag);
            }
            NymMessage::Reply(ReplyMessage::Data(data)) => self.deliver(data, None),
            NymMessage::Reply(ReplyMessage::SurbRequest { recipient, amount }) => {
                self.on_surb_request(*recipient, amount, via)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cover_markers_recognise_our_loops_once_and_forget_old_ones() {
        let mut m = CoverMarkers::default();
        // A pushed message starting with `head`.
        let msg_of = |head: [u8; 32]| {
            let mut v = head.to_vec();
            v.extend_from_slice(&[9u8; 100]);
            v
        };
        let msg = |k: u8| msg_of([k; 32]);
        m.insert([1; 32]);
        m.insert([2; 32]);
        m.insert([4; 32]);
        assert!(m.take(&msg(1)));
        assert!(!m.take(&msg(1)), "a marker matches once");
        assert!(!m.take(&msg(3)));
        assert!(!m.take(&[2u8; 31]), "too short");
        // Taken from the middle of the ring: once, and the others stay.
        m.insert([5; 32]);
        assert!(m.take(&msg(4)));
        assert!(
            !m.take(&msg(4)),
            "a marker taken from the middle matches once"
        );
        assert!(m.take(&msg(5)));
        assert_eq!(m.ring.len(), 1, "only [2; 32] is left");
        // Only the first 16 bytes are compared.
        let mut near = [6u8; 32];
        m.insert(near);
        near[16..].fill(0);
        assert!(m.take(&msg_of(near)));
        // Many more: the last COVER_MARKERS are kept.
        let marker = |i: u32| {
            let mut k = [0u8; 32];
            k[..4].copy_from_slice(&i.to_be_bytes());
            k[15] = 0xee;
            k
        };
        for i in 0..COVER_MARKERS as u32 + 10 {
            m.insert(marker(i));
        }
        assert_eq!(m.ring.len(), COVER_MARKERS);
        assert!(!m.take(&msg(2)), "old markers age out");
        assert!(!m.take(&msg_of(marker(9))), "old markers age out");
        assert!(m.take(&msg_of(marker(COVER_MARKERS as u32 + 9))));
        assert!(m.take(&msg_of(marker(10))));
        assert!(!m.take(&msg_of(marker(10))), "a marker matches once");
        assert_eq!(m.ring.len(), COVER_MARKERS - 2);
    }
}
