//! The persisted outbox: messages an app handed over whose fragments the
//! recipient's gateway has not all acknowledged yet, kept in a journal
//! ([`nymd_fsutil::journal`]) so that after a restart, even one after
//! SIGKILL or a power cut, the client sends them again. Recipients drop the
//! fragments they already have (their set ids are the same), so a message
//! arrives once.
//!
//! A record's payload (our format): `recipient: 96 bytes | count: u16 |
//! count × (set_id: i32 LE | position: u8 | len: u32 LE | fragment)`, keyed
//! by the client's message number. `reply` messages are journalled too:
//! their message numbers have the top bit set ([`REPLY_BIT`]) and their
//! payload starts with the 16-byte sender tag instead of a recipient; after
//! a restart they wait for SURBs of that tag (the persisted reply state
//! brings the stored ones back). The journal's writer thread does the
//! disk work, so the client task never waits: a message is written shortly
//! after its first packets leave, and a crash within that window
//! (milliseconds) can still lose it.

use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use nymd_fsutil::journal::Journal;
use nymd_proto::params::FragmentId;
use nymd_proto::{Recipient, SenderTag};

/// Errors opening the outbox (another writer holds it).
pub use nymd_fsutil::journal::JournalError as OutboxError;

const HEADER: &[u8] = b"nymd-outbox v1\n";

pub(crate) use nymd_client::{Journalled as OutboxEntry, JournalledReply as ReplyEntry, REPLY_BIT};

/// The client task's side of the journal (never blocks).
#[derive(Debug)]
pub(crate) struct Outbox {
    journal: Journal,
    /// The `reply` messages found at open, until the client takes them.
    replies: Vec<ReplyEntry>,
}

impl Outbox {
    /// Open (creating) the outbox in `dir`, returning what is still to be
    /// sent, oldest first; `journalled` is kept at the number of messages
    /// in it. Blocking. A folder that cannot be written gives an outbox that
    /// keeps nothing (logged); only a second writer is an error.
    pub(crate) fn open(
        dir: &Path,
        journalled: Arc<AtomicU64>,
    ) -> Result<(Outbox, Vec<OutboxEntry>), OutboxError> {
        let (journal, records) = Journal::open(dir, HEADER, journalled)?;
        let (replies, records): (Vec<_>, Vec<_>) =
            records.into_iter().partition(|(m, _)| m & REPLY_BIT != 0);
        let replies: Vec<ReplyEntry> = replies
            .into_iter()
            .filter_map(|(message, payload)| {
                let e = decode_reply(message, &payload);
                if e.is_none() {
                    tracing::warn!(message, "skipping an unreadable outbox reply entry");
                }
                e
            })
            .collect();
        let entries: Vec<OutboxEntry> = records
            .into_iter()
            .filter_map(|(message, payload)| {
                let e = decode_entry(message, &payload);
                if e.is_none() {
                    tracing::warn!(message, "skipping an unreadable outbox entry");
                }
                e
            })
            .collect();
        if !entries.is_empty() || !replies.is_empty() {
            tracing::info!(
                messages = entries.len(),
                replies = replies.len(),
                "sending again the messages not acknowledged before the restart"
            );
        }
        Ok((Outbox { journal, replies }, entries))
    }

    /// The `reply` messages found at open (once).
    pub(crate) fn take_replies(&mut self) -> Vec<ReplyEntry> {
        std::mem::take(&mut self.replies)
    }

    /// Record a queued `reply` message; `message` has [`REPLY_BIT`] set.
    pub(crate) fn add_reply(
        &self,
        message: u64,
        tag: &SenderTag,
        fragments: &[(FragmentId, Vec<u8>)],
    ) {
        if self.journal.enabled() {
            let mut out = tag.0.to_vec();
            encode_fragments(&mut out, fragments);
            self.journal.add(message | REPLY_BIT, out);
        }
    }

    /// Record a queued message (its fragments are encoded straight into
    /// the record, not copied first).
    pub(crate) fn add(
        &self,
        message: u64,
        recipient: &Recipient,
        fragments: &[(FragmentId, Vec<u8>)],
    ) {
        if self.journal.enabled() {
            self.journal
                .add(message, encode_payload(recipient, fragments));
        }
    }

    /// Whether the journal keeps up with the disk (see
    /// `nymd_fsutil::journal::Journal::has_room`): while it does not, the
    /// client takes no new app messages.
    pub(crate) fn has_room(&self) -> bool {
        self.journal.has_room()
    }

    /// Record that a message needs no more sending.
    pub(crate) fn done(&self, message: u64) {
        self.journal.done(message);
    }

    /// Write what is queued and stop the writer (blocking).
    pub(crate) fn close(&mut self) {
        self.journal.close();
    }
}

/// The core's journal is this outbox.
impl nymd_client::Journal for Outbox {
    fn add(&self, message: u64, recipient: &Recipient, fragments: &[(FragmentId, Vec<u8>)]) {
        Outbox::add(self, message, recipient, fragments);
    }

    fn add_reply(&self, message: u64, tag: &SenderTag, fragments: &[(FragmentId, Vec<u8>)]) {
        Outbox::add_reply(self, message, tag, fragments);
    }

    fn done(&self, message: u64) {
        Outbox::done(self, message);
    }

    fn has_room(&self) -> bool {
        Outbox::has_room(self)
    }

    fn close(&mut self) {
        Outbox::close(self);
    }
}

fn encode_payload(recipient: &Recipient, fragments: &[(FragmentId, Vec<u8>)]) -> Vec<u8> {
    let size: usize = fragments.iter().map(|(_, f)| 9 + f.len()).sum();
    let mut out = Vec::with_capacity(98 + size);
    out.extend_from_slice(&recipient.to_bytes());
    encode_fragments(&mut out, fragments);
    out
}

fn encode_fragments(out: &mut Vec<u8>, fragments: &[(FragmentId, Vec<u8>)]) {
    // Messages have far fewer than 65,536 fragments (the set format caps
    // them well below).
    let count = fragments.len().min(usize::from(u16::MAX));
    out.extend_from_slice(&(count as u16).to_le_bytes());
    for (id, bytes) in fragments.iter().take(count) {
        out.extend_from_slice(&id.set_id.to_le_bytes());
        out.push(id.position);
        out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        out.extend_from_slice(bytes);
    }
}

fn decode_fragments(r: &mut Reader<'_>) -> Option<Vec<(FragmentId, Vec<u8>)>> {
    let count = u16::from_le_bytes(r.take(2)?.try_into().ok()?);
    let mut fragments = Vec::with_capacity(usize::from(count).min(4096));
    for _ in 0..count {
        let set_id = i32::from_le_bytes(r.take(4)?.try_into().ok()?);
        let position = r.take(1)?[0];
        let len = u32::from_le_bytes(r.take(4)?.try_into().ok()?) as usize;
        fragments.push((FragmentId { set_id, position }, r.take(len)?.to_vec()));
    }
    (r.0.is_empty() && !fragments.is_empty()).then_some(fragments)
}

fn decode_reply(message: u64, payload: &[u8]) -> Option<ReplyEntry> {
    let mut r = Reader(payload);
    let tag = SenderTag(r.take(16)?.try_into().ok()?);
    let fragments = decode_fragments(&mut r)?;
    Some(ReplyEntry {
        message,
        tag,
        fragments,
    })
}

fn decode_entry(message: u64, payload: &[u8]) -> Option<OutboxEntry> {
    let mut r = Reader(payload);
    let recipient = Recipient::from_bytes(r.take(96)?).ok()?;
    let fragments = decode_fragments(&mut r)?;
    Some(OutboxEntry {
        message,
        recipient,
        fragments,
    })
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (a, b) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = b;
        Some(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nymd_proto::keys::{EncryptionKeyPair, IdentityKeyPair};
    use rand::{Rng, SeedableRng};
    use std::sync::atomic::Ordering;

    fn recipient(seed: u64) -> Recipient {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let id = IdentityKeyPair::generate(&mut rng);
        let enc = EncryptionKeyPair::generate(&mut rng);
        let gw = IdentityKeyPair::generate(&mut rng);
        Recipient::new(id.public(), enc.public(), gw.public())
    }

    fn entry(message: u64, fragments: usize) -> OutboxEntry {
        OutboxEntry {
            message,
            recipient: recipient(message),
            fragments: (0..fragments)
                .map(|i| {
                    (
                        FragmentId {
                            set_id: 1000 + message as i32,
                            position: i as u8 + 1,
                        },
                        vec![i as u8; 100 + i],
                    )
                })
                .collect(),
        }
    }

    fn encode_entry(e: &OutboxEntry) -> Vec<u8> {
        encode_payload(&e.recipient, &e.fragments)
    }

    fn add(ob: &Outbox, e: &OutboxEntry) {
        ob.add(e.message, &e.recipient, &e.fragments);
    }

    #[test]
    fn entries_round_trip_and_garbage_is_refused() {
        for (m, n) in [(0, 1), (7, 3), (u64::MAX, 30)] {
            let e = entry(m, n);
            assert_eq!(decode_entry(m, &encode_entry(&e)), Some(e));
        }
        let good = encode_entry(&entry(3, 2));
        for cut in 0..good.len() {
            assert_eq!(decode_entry(3, &good[..cut]), None, "cut at {cut}");
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        for _ in 0..2_000 {
            let mut bytes = good.clone();
            let at = rng.gen_range(0..bytes.len());
            bytes[at] = rng.gen();
            let _ = decode_entry(3, &bytes);
        }
    }

    #[test]
    fn added_and_not_done_messages_survive_a_reopen() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("outbox");
        let (mut ob, restored) = Outbox::open(&path, Arc::default()).expect("open");
        assert!(restored.is_empty());
        for m in 0..5 {
            add(&ob, &entry(m, 3));
        }
        ob.done(1);
        ob.done(3);
        ob.close();
        let counter = Arc::new(AtomicU64::new(0));
        let (mut ob, restored) = Outbox::open(&path, counter.clone()).expect("reopen");
        assert_eq!(restored, vec![entry(0, 3), entry(2, 3), entry(4, 3)]);
        assert_eq!(counter.load(Ordering::Relaxed), 3);
        ob.done(0);
        ob.close();
        assert_eq!(counter.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn replies_survive_a_reopen_apart_from_sends() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("outbox");
        let (mut ob, _) = Outbox::open(&path, Arc::default()).expect("open");
        let e = entry(1, 2);
        add(&ob, &e);
        let frags = entry(2, 3).fragments;
        ob.add_reply(2 | REPLY_BIT, &SenderTag([7; 16]), &frags);
        ob.add_reply(3 | REPLY_BIT, &SenderTag([8; 16]), &frags);
        ob.done(3 | REPLY_BIT);
        ob.close();
        let (mut ob, restored) = Outbox::open(&path, Arc::default()).expect("reopen");
        assert_eq!(restored, vec![e]);
        let replies = ob.take_replies();
        assert_eq!(
            replies,
            vec![ReplyEntry {
                message: 2 | REPLY_BIT,
                tag: SenderTag([7; 16]),
                fragments: frags.clone(),
            }]
        );
        assert!(ob.take_replies().is_empty(), "once");
        let mut payload = vec![7; 16];
        encode_fragments(&mut payload, &frags);
        for cut in 0..payload.len() {
            assert_eq!(decode_reply(1, &payload[..cut]), None, "cut at {cut}");
        }
        ob.close();
    }

    #[test]
    fn an_unwritable_folder_degrades_to_memory_only() {
        let dir = tempfile::tempdir().expect("tmp");
        let file = dir.path().join("a-file");
        std::fs::write(&file, b"x").expect("write");
        let counter = Arc::new(AtomicU64::new(0));
        let (mut ob, restored) =
            Outbox::open(&file.join("outbox"), counter.clone()).expect("runs without it");
        assert!(restored.is_empty());
        add(&ob, &entry(1, 1));
        ob.close();
        assert_eq!(counter.load(Ordering::Relaxed), 0);
    }
}
