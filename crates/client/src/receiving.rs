//! Receiving: what the gateway pushes (acks, our loop cover coming back,
//! messages), decryption with reply keys, reassembly, and delivery.

use std::collections::{HashSet, VecDeque};

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

/// Loop cover markers kept (about 55 cover packets a second leave at
/// Nym's defaults and come back within a second; older ones are opened the
/// usual way).
const COVER_MARKERS: usize = 256;

/// The ephemeral keys of our own loop cover packets still in flight. A
/// pushed message starting with one of them is our loop coming back: it is
/// counted and dropped without the Diffie-Hellman and decryption (a stock
/// client decrypts it only to find the cover content). Nothing on the wire
/// changes; anything else is opened as usual.
#[derive(Debug, Default)]
pub(crate) struct CoverMarkers {
    order: VecDeque<[u8; 32]>,
    set: HashSet<[u8; 32]>,
}

impl CoverMarkers {
    pub(crate) fn insert(&mut self, marker: [u8; 32]) {
        if self.order.len() >= COVER_MARKERS {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        if self.set.insert(marker) {
            self.order.push_back(marker);
        }
    }

    /// Whether `message` is one of our loops (forgetting its marker).
    pub(crate) fn take(&mut self, message: &[u8]) -> bool {
        let Some(head) = message.get(..32) else {
            return false;
        };
        let mut key = [0u8; 32];
        key.copy_from_slice(head);
        // Its entry in `order` stays until it ages out (removing it would
        // cost a scan; an absent key is harmless there).
        self.set.remove(&key)
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
        let msg = |k: u8| {
            let mut v = vec![k; 32];
            v.extend_from_slice(&[9u8; 100]);
            v
        };
        m.insert([1; 32]);
        m.insert([2; 32]);
        assert!(m.take(&msg(1)));
        assert!(!m.take(&msg(1)), "a marker matches once");
        assert!(!m.take(&msg(3)));
        assert!(!m.take(&[2u8; 31]), "too short");
        for i in 0..COVER_MARKERS as u32 + 10 {
            let mut k = [0u8; 32];
            k[..4].copy_from_slice(&i.to_be_bytes());
            k[31] = 0xee;
            m.insert(k);
        }
        assert!(m.set.len() <= COVER_MARKERS && m.order.len() <= COVER_MARKERS);
        assert!(!m.take(&msg(2)), "old markers age out");
    }
}
