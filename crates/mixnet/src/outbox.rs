//! The persisted outbox: messages an app handed over whose fragments the
//! recipient's gateway has not all acknowledged yet, kept in an append-only
//! journal so that after a restart, even one after SIGKILL or a power cut,
//! the client sends them again. Recipients drop the fragments they already
//! have (their set ids are the same), so a message arrives once.
//!
//! The journal (our own format, not Nym's) is a header line followed by
//! records `len: u32 LE | body | blake3(body)[..8]`. A body is either
//! `1 | message: u64 | recipient: 96 bytes | count: u16 | count ×
//! (set_id: i32 | position: u8 | len: u32 | fragment)` (a message was
//! queued) or `2 | message: u64` (it was acknowledged or abandoned). A torn
//! or damaged tail (a crash mid-write) ends the replay; what was before it
//! is kept.
//!
//! One thread per journal does the file work, in batches with one
//! `fdatasync` each, so the client task never waits for the disk. A message
//! is written shortly after its first packets leave: a crash within that
//! window (milliseconds) can still lose it.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nymd_proto::params::FragmentId;
use nymd_proto::Recipient;
use tokio::sync::mpsc;

const HEADER: &[u8] = b"nymd-outbox v1\n";
const JOURNAL: &str = "journal";
const LOCK: &str = "lock";
const DAMAGED: &str = "journal.damaged";
const ADD: u8 = 1;
const DONE: u8 = 2;
const CHECK: usize = 8;
/// A record larger than this is damage, not a message (the app API caps
/// messages far below).
const MAX_RECORD: usize = 512 * 1024 * 1024;
/// Compact when the journal is this large and at least twice the live part.
const COMPACT_AT: u64 = 4 * 1024 * 1024;
/// Ops written per batch at most (one fdatasync each).
const BATCH: usize = 1024;
/// How long [`Outbox::open`] waits for a previous writer of the same folder
/// (an identity being restarted in this process) to let go.
const LOCK_WAIT: Duration = Duration::from_secs(5);

/// A message that was queued and not acknowledged when the journal was last
/// written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OutboxEntry {
    pub message: u64,
    pub recipient: Recipient,
    pub fragments: Vec<(FragmentId, Vec<u8>)>,
}

/// Errors opening the outbox folder.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// The folder or a file in it could not be used.
    #[error("outbox {path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Another client holds the journal.
    #[error(
        "outbox {0} is in use by another client (is a second nymd running on this state dir?)"
    )]
    Locked(PathBuf),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> OutboxError + '_ {
    move |source| OutboxError::Io {
        path: path.to_path_buf(),
        source,
    }
}

enum Op {
    Add(Box<OutboxEntry>),
    Done(u64),
}

/// The client task's side: queue journal writes (never blocks).
#[derive(Debug)]
pub(crate) struct Outbox {
    tx: Option<mpsc::UnboundedSender<Op>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Op::Add(e) => write!(f, "Add({})", e.message),
            Op::Done(m) => write!(f, "Done({m})"),
        }
    }
}

impl Outbox {
    /// Open (creating) the outbox in `dir`, returning what is still to be
    /// sent, oldest first. Blocking: call from a blocking context.
    /// `journalled` is kept at the number of messages in the journal.
    ///
    /// Only another writer holding the journal is an error. When the folder
    /// cannot be written (disk full, read-only) the client still runs, with
    /// what can be read of the journal queued again and new messages kept in
    /// memory only, and says so in the log.
    pub(crate) fn open(
        dir: &Path,
        journalled: Arc<AtomicU64>,
    ) -> Result<(Outbox, Vec<OutboxEntry>), OutboxError> {
        match Self::open_journal(dir, journalled) {
            Ok(x) => Ok(x),
            Err(e @ OutboxError::Locked(_)) => Err(e),
            Err(e) => {
                tracing::warn!(
                    "{e}; outgoing messages are kept in memory only (lost if nymd stops) \
                     until the identity restarts with a writable outbox"
                );
                let path = dir.join(JOURNAL);
                let entries = std::fs::read(&path)
                    .map(|bytes| replay(&path, &bytes).0)
                    .unwrap_or_default();
                Ok((
                    Outbox {
                        tx: None,
                        thread: None,
                    },
                    entries,
                ))
            }
        }
    }

    fn open_journal(
        dir: &Path,
        journalled: Arc<AtomicU64>,
    ) -> Result<(Outbox, Vec<OutboxEntry>), OutboxError> {
        create_private_dir(dir)?;
        let lock_path = dir.join(LOCK);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .map_err(io(&lock_path))?;
        let started = Instant::now();
        loop {
            match lock.try_lock() {
                Ok(()) => break,
                Err(std::fs::TryLockError::WouldBlock) if started.elapsed() < LOCK_WAIT => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(OutboxError::Locked(dir.to_path_buf()))
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(io(&lock_path)(e)),
            }
        }
        let path = dir.join(JOURNAL);
        let (entries, damaged) = match std::fs::read(&path) {
            Ok(bytes) => replay(&path, &bytes),
            Err(e) if e.kind() == ErrorKind::NotFound => (Vec::new(), false),
            Err(e) => return Err(io(&path)(e)),
        };
        if damaged {
            // Kept for inspection; the readable part is rewritten below.
            let aside = dir.join(DAMAGED);
            std::fs::rename(&path, &aside).map_err(io(&aside))?;
            tracing::warn!(path = %aside.display(), "the damaged outbox journal was moved aside");
        }
        let journal = Journal::rewrite(&path, &entries, journalled)?;
        if !entries.is_empty() {
            tracing::info!(
                messages = entries.len(),
                "sending again the messages not acknowledged before the restart"
            );
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let thread = std::thread::Builder::new()
            .name("nymd-outbox".into())
            .spawn(move || journal.run(rx, lock))
            .map_err(io(dir))?;
        Ok((
            Outbox {
                tx: Some(tx),
                thread: Some(thread),
            },
            entries,
        ))
    }

    /// Record a queued message.
    pub(crate) fn add(&self, entry: OutboxEntry) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(Op::Add(Box::new(entry)));
        }
    }

    /// Record that a message needs no more sending.
    pub(crate) fn done(&self, message: u64) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(Op::Done(message));
        }
    }

    /// Write what is queued and stop the writer (blocking).
    pub(crate) fn close(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        // Without a join the writer finishes on its own; the lock file keeps
        // a new writer of the same folder waiting until then.
        self.tx = None;
    }
}

fn create_private_dir(dir: &Path) -> Result<(), OutboxError> {
    nymd_fsutil::create_private_dir(dir).map_err(io(dir))
}

/// Read the records of a journal; what follows a damaged record is ignored
/// (logged). Also says whether there was damage.
fn replay(path: &Path, bytes: &[u8]) -> (Vec<OutboxEntry>, bool) {
    let Some(mut rest) = bytes.strip_prefix(HEADER) else {
        if bytes.is_empty() {
            return (Vec::new(), false);
        }
        tracing::warn!(
            path = %path.display(),
            "the outbox journal has no valid header; its messages cannot be sent again"
        );
        return (Vec::new(), true);
    };
    let mut damaged = false;
    let mut live: Vec<OutboxEntry> = Vec::new();
    let mut index: HashMap<u64, usize> = HashMap::new();
    let mut records = 0usize;
    while !rest.is_empty() {
        let Some(body) = next_record(&mut rest) else {
            tracing::warn!(
                path = %path.display(),
                records,
                damaged_bytes = rest.len(),
                "the outbox journal ends with a damaged record (a crash while writing); the records before it are kept"
            );
            damaged = true;
            break;
        };
        records += 1;
        match decode_body(body) {
            Some(Op::Add(e)) => {
                index.insert(e.message, live.len());
                live.push(*e);
            }
            Some(Op::Done(m)) => {
                if let Some(i) = index.remove(&m) {
                    live[i].fragments.clear();
                }
            }
            None => {
                tracing::warn!(path = %path.display(), records, "skipping an unreadable outbox record");
                damaged = true;
            }
        }
    }
    live.retain(|e| !e.fragments.is_empty());
    (live, damaged)
}

fn next_record<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
    let len_bytes: [u8; 4] = rest.get(..4)?.try_into().ok()?;
    let len = u32::from_le_bytes(len_bytes) as usize;
    if len > MAX_RECORD {
        return None;
    }
    let body = rest.get(4..4 + len)?;
    let check = rest.get(4 + len..4 + len + CHECK)?;
    if blake3::hash(body).as_bytes()[..CHECK] != *check {
        return None;
    }
    *rest = &rest[4 + len + CHECK..];
    Some(body)
}

fn decode_body(body: &[u8]) -> Option<Op> {
    let mut r = Reader(body);
    match r.u8()? {
        ADD => {
            let message = r.u64()?;
            let recipient = Recipient::from_bytes(r.take(96)?).ok()?;
            let count = r.u16()?;
            let mut fragments = Vec::with_capacity(usize::from(count).min(4096));
            for _ in 0..count {
                let set_id = i32::from_le_bytes(r.take(4)?.try_into().ok()?);
                let position = r.u8()?;
                let len = r.u32()? as usize;
                fragments.push((FragmentId { set_id, position }, r.take(len)?.to_vec()));
            }
            r.0.is_empty().then_some(Op::Add(Box::new(OutboxEntry {
                message,
                recipient,
                fragments,
            })))
        }
        DONE => {
            let message = r.u64()?;
            r.0.is_empty().then_some(Op::Done(message))
        }
        _ => None,
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (a, b) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = b;
        Some(a)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.take(2)?.try_into().ok()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
}

/// Append one record (length, body, check) to `out`.
fn encode_record(op: &Op, out: &mut Vec<u8>) {
    match op {
        Op::Add(e) => encode_add(e, out),
        Op::Done(m) => encode_done(*m, out),
    }
}

fn encode_add(e: &OutboxEntry, out: &mut Vec<u8>) {
    let start = begin_record(out);
    out.push(ADD);
    out.extend_from_slice(&e.message.to_le_bytes());
    out.extend_from_slice(&e.recipient.to_bytes());
    // Messages have far fewer than 65,536 fragments (the app API's size
    // cap); more would not fit the set format either.
    let count = e.fragments.len().min(usize::from(u16::MAX));
    out.extend_from_slice(&(count as u16).to_le_bytes());
    for (id, bytes) in e.fragments.iter().take(count) {
        out.extend_from_slice(&id.set_id.to_le_bytes());
        out.push(id.position);
        out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        out.extend_from_slice(bytes);
    }
    end_record(out, start);
}

fn encode_done(message: u64, out: &mut Vec<u8>) {
    let start = begin_record(out);
    out.push(DONE);
    out.extend_from_slice(&message.to_le_bytes());
    end_record(out, start);
}

fn begin_record(out: &mut Vec<u8>) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    start
}

fn end_record(out: &mut Vec<u8>, start: usize) {
    let len = (out.len() - start - 4) as u32;
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    let check = blake3::hash(&out[start + 4..]);
    out.extend_from_slice(&check.as_bytes()[..CHECK]);
}

/// The writer's state: the open journal and where each live message's
/// record is in it (for compaction).
struct Journal {
    path: PathBuf,
    file: File,
    /// Bytes known to be whole records.
    len: u64,
    live: HashMap<u64, (u64, u64)>,
    live_bytes: u64,
    /// The last write failed (logged once until one succeeds).
    failing: bool,
    journalled: Arc<AtomicU64>,
}

impl Journal {
    /// Write a fresh journal holding `entries` (temp file, fsync, rename)
    /// and open it for appending.
    fn rewrite(
        path: &Path,
        entries: &[OutboxEntry],
        journalled: Arc<AtomicU64>,
    ) -> Result<Journal, OutboxError> {
        let mut buf = HEADER.to_vec();
        let mut live = HashMap::new();
        let mut live_bytes = 0;
        for e in entries {
            let at = buf.len() as u64;
            encode_add(e, &mut buf);
            let n = buf.len() as u64 - at;
            live.insert(e.message, (at, n));
            live_bytes += n;
        }
        write_atomic(path, &buf)?;
        journalled.store(live.len() as u64, Ordering::Relaxed);
        let file = OpenOptions::new()
            .append(true)
            .read(true)
            .open(path)
            .map_err(io(path))?;
        Ok(Journal {
            path: path.to_path_buf(),
            file,
            len: buf.len() as u64,
            live,
            live_bytes,
            failing: false,
            journalled,
        })
    }

    fn run(mut self, mut rx: mpsc::UnboundedReceiver<Op>, _lock: File) {
        let mut batch = Vec::new();
        while let Some(op) = rx.blocking_recv() {
            batch.push(op);
            while batch.len() < BATCH {
                match rx.try_recv() {
                    Ok(op) => batch.push(op),
                    Err(_) => break,
                }
            }
            self.write_batch(&batch);
            batch.clear();
        }
    }

    fn write_batch(&mut self, batch: &[Op]) {
        let mut buf = Vec::new();
        let mut placed = Vec::new();
        for op in batch {
            let at = buf.len() as u64;
            encode_record(op, &mut buf);
            placed.push((at, buf.len() as u64 - at));
        }
        let result = self
            .file
            .write_all(&buf)
            .and_then(|()| self.file.sync_data());
        if let Err(e) = result {
            // A partial record must not stay in front of later ones.
            let _ = self.file.set_len(self.len);
            if !std::mem::replace(&mut self.failing, true) {
                tracing::warn!(
                    path = %self.path.display(),
                    "cannot write the outbox journal ({e}); messages are still sent, but those \
                     not yet acknowledged would be lost if nymd stopped now"
                );
            }
            return;
        }
        if std::mem::replace(&mut self.failing, false) {
            tracing::info!(path = %self.path.display(), "the outbox journal is written again");
        }
        let base = self.len;
        self.len += buf.len() as u64;
        for (op, (at, n)) in batch.iter().zip(placed) {
            match op {
                Op::Add(e) => {
                    self.live.insert(e.message, (base + at, n));
                    self.live_bytes += n;
                }
                Op::Done(m) => {
                    if let Some((_, n)) = self.live.remove(m) {
                        self.live_bytes -= n;
                    }
                }
            }
        }
        self.journalled
            .store(self.live.len() as u64, Ordering::Relaxed);
        if self.len >= COMPACT_AT && self.len >= 2 * (self.live_bytes + HEADER.len() as u64) {
            if let Err(e) = self.compact() {
                tracing::warn!(path = %self.path.display(), "cannot compact the outbox journal: {e}");
            }
        }
    }

    /// Copy the live records into a new journal and replace the old one.
    fn compact(&mut self) -> Result<(), OutboxError> {
        let mut order: Vec<(u64, u64, u64)> =
            self.live.iter().map(|(m, (at, n))| (*at, *n, *m)).collect();
        order.sort_unstable();
        let mut buf = HEADER.to_vec();
        let mut live = HashMap::with_capacity(order.len());
        for (at, n, m) in order {
            let start = buf.len();
            buf.resize(start + n as usize, 0);
            self.file
                .read_exact_at(&mut buf[start..], at)
                .map_err(io(&self.path))?;
            live.insert(m, (start as u64, n));
        }
        write_atomic(&self.path, &buf)?;
        self.file = OpenOptions::new()
            .append(true)
            .read(true)
            .open(&self.path)
            .map_err(io(&self.path))?;
        self.len = buf.len() as u64;
        self.live = live;
        Ok(())
    }
}

/// Temp file in the same folder, fsync, rename, fsync the folder; mode 0600.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), OutboxError> {
    nymd_fsutil::write_atomic(path, bytes, nymd_fsutil::SECRET_FILE_MODE).map_err(io(path))
}

/// Read a whole journal file (tests and tools).
#[cfg(test)]
fn read_journal(dir: &Path) -> Vec<OutboxEntry> {
    use std::io::Read;
    let path = dir.join(JOURNAL);
    let mut bytes = Vec::new();
    if let Ok(mut f) = File::open(&path) {
        let _ = f.read_to_end(&mut bytes);
    }
    replay(&path, &bytes).0
}

#[cfg(test)]
mod tests {
    use super::*;
    use nymd_proto::keys::{EncryptionKeyPair, IdentityKeyPair};
    use rand::SeedableRng;

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

    #[test]
    fn added_and_not_done_messages_survive_a_reopen() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("outbox");
        let (mut ob, restored) = Outbox::open(&path, Arc::default()).expect("open");
        assert!(restored.is_empty());
        for m in 0..5 {
            ob.add(entry(m, 3));
        }
        ob.done(1);
        ob.done(3);
        ob.done(77); // unknown: ignored
        ob.close();
        let counter = Arc::new(AtomicU64::new(0));
        let (mut ob, restored) = Outbox::open(&path, counter.clone()).expect("reopen");
        assert_eq!(counter.load(Ordering::Relaxed), 3);
        assert_eq!(restored, vec![entry(0, 3), entry(2, 3), entry(4, 3)]);
        ob.done(0);
        ob.close();
        assert_eq!(counter.load(Ordering::Relaxed), 2);
        let (_ob, restored) = Outbox::open(&path, Arc::default()).expect("reopen");
        assert_eq!(restored, vec![entry(2, 3), entry(4, 3)]);
    }

    #[test]
    fn an_unwritable_folder_degrades_to_memory_only() {
        let dir = tempfile::tempdir().expect("tmp");
        let file = dir.path().join("a-file");
        std::fs::write(&file, b"x").expect("write");
        // A folder below a file cannot be created, even by root.
        let counter = Arc::new(AtomicU64::new(0));
        let (mut ob, restored) =
            Outbox::open(&file.join("outbox"), counter.clone()).expect("runs without it");
        assert!(restored.is_empty());
        ob.add(entry(1, 1));
        ob.done(1);
        ob.close();
        assert_eq!(counter.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn files_are_private() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("outbox");
        let (mut ob, _) = Outbox::open(&path, Arc::default()).expect("open");
        ob.add(entry(1, 1));
        ob.close();
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o700);
        assert_eq!(mode(&path.join(JOURNAL)), 0o600);
    }

    #[test]
    fn a_torn_or_damaged_tail_keeps_what_came_before() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("outbox");
        let (mut ob, _) = Outbox::open(&path, Arc::default()).expect("open");
        ob.add(entry(1, 2));
        ob.add(entry(2, 2));
        ob.close();
        let journal = path.join(JOURNAL);
        let whole = std::fs::read(&journal).expect("read");
        // Every cut inside the second record keeps the first message.
        let first_end = {
            let mut rest = &whole[HEADER.len()..];
            next_record(&mut rest).expect("first");
            whole.len() - rest.len()
        };
        for cut in [first_end + 1, first_end + 7, whole.len() - 1] {
            std::fs::write(&journal, &whole[..cut]).expect("write");
            assert_eq!(read_journal(&path), vec![entry(1, 2)], "cut at {cut}");
        }
        // A flipped bit in the second record: same.
        let mut flipped = whole.clone();
        flipped[first_end + 20] ^= 1;
        std::fs::write(&journal, &flipped).expect("write");
        assert_eq!(read_journal(&path), vec![entry(1, 2)]);
        // A damaged header: nothing, and no panic; opening starts afresh.
        std::fs::write(&journal, b"garbage").expect("write");
        let (_ob, restored) = Outbox::open(&path, Arc::default()).expect("open over garbage");
        assert!(restored.is_empty());
        assert_eq!(
            std::fs::read(path.join(DAMAGED)).expect("moved aside"),
            b"garbage"
        );
    }

    #[test]
    fn garbage_never_panics() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join(JOURNAL);
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for n in 0..500usize {
            let mut bytes = HEADER.to_vec();
            let len = rand::Rng::gen_range(&mut rng, 0..64usize);
            let mut tail = vec![0u8; len];
            rand::RngCore::fill_bytes(&mut rng, &mut tail);
            if n % 2 == 0 && len >= 4 {
                // A plausible length with garbage behind it.
                tail[..4].copy_from_slice(&((len as u32) / 2).to_le_bytes());
            }
            bytes.extend_from_slice(&tail);
            let _ = replay(&path, &bytes);
        }
    }

    /// Valid journals damaged at random (bit flips, cuts, inserted bytes,
    /// forged lengths): replay never panics and returns only messages that
    /// were really written, whole.
    #[test]
    fn damaged_journals_yield_only_real_messages() {
        let path = Path::new("journal");
        let originals: Vec<OutboxEntry> = (0..6).map(|m| entry(m, (m % 3 + 1) as usize)).collect();
        let mut whole = HEADER.to_vec();
        for e in &originals {
            encode_add(e, &mut whole);
        }
        encode_done(2, &mut whole);
        let (clean, damaged) = replay(path, &whole);
        assert!(!damaged);
        assert_eq!(clean.len(), 5);
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x0b0c);
        for round in 0..3_000 {
            let mut bytes = whole.clone();
            for _ in 0..rand::Rng::gen_range(&mut rng, 1..4) {
                let at = rand::Rng::gen_range(&mut rng, 0..bytes.len());
                match rand::Rng::gen_range(&mut rng, 0..4) {
                    0 => bytes[at] ^= 1 << rand::Rng::gen_range(&mut rng, 0..8),
                    1 => bytes.truncate(at),
                    2 => bytes.insert(at, rand::Rng::gen(&mut rng)),
                    _ => {
                        let forged: u32 = rand::Rng::gen(&mut rng);
                        let end = (at + 4).min(bytes.len());
                        let n = end - at;
                        bytes[at..end].copy_from_slice(&forged.to_le_bytes()[..n]);
                    }
                }
                if bytes.is_empty() {
                    break;
                }
            }
            let (got, _) = replay(path, &bytes);
            for e in &got {
                assert!(
                    originals.contains(e),
                    "round {round}: invented {}",
                    e.message
                );
            }
        }
    }

    #[test]
    fn compaction_keeps_exactly_the_live_messages() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("outbox");
        let (mut ob, _) = Outbox::open(&path, Arc::default()).expect("open");
        // ~10 MiB of adds, almost all done: compaction must run.
        for m in 0..2_000u64 {
            ob.add(OutboxEntry {
                message: m,
                recipient: recipient(m % 3),
                fragments: vec![(
                    FragmentId {
                        set_id: m as i32 + 1,
                        position: 1,
                    },
                    vec![m as u8; 5_000],
                )],
            });
            if m % 100 != 7 {
                ob.done(m);
            }
        }
        ob.close();
        let size = std::fs::metadata(path.join(JOURNAL)).expect("meta").len();
        assert!(size < COMPACT_AT, "journal compacted: {size} bytes");
        let (_ob, restored) = Outbox::open(&path, Arc::default()).expect("reopen");
        let ids: Vec<u64> = restored.iter().map(|e| e.message).collect();
        assert_eq!(ids, (0..2_000).filter(|m| m % 100 == 7).collect::<Vec<_>>());
        assert!(restored
            .iter()
            .all(|e| e.fragments[0].1 == vec![e.message as u8; 5_000]));
    }

    #[test]
    fn a_second_writer_waits_for_the_first() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("outbox");
        let (mut first, _) = Outbox::open(&path, Arc::default()).expect("open");
        first.add(entry(9, 1));
        let p2 = path.clone();
        let second = std::thread::spawn(move || Outbox::open(&p2, Arc::default()).map(|(_, r)| r));
        std::thread::sleep(Duration::from_millis(100));
        first.close();
        let restored = second.join().expect("join").expect("second open");
        assert_eq!(restored, vec![entry(9, 1)]);
    }
}
