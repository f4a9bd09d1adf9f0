//! An append-only journal of records that are added and later marked done,
//! kept so that what is not done yet survives a restart, SIGKILL or power
//! cut. nymd keeps two: an identity's outbox (messages not yet acknowledged
//! by the mixnet) and its inbox (messages no app has taken yet).
//!
//! Format (ours): a header line naming the journal, then records `len: u32
//! LE | body | blake3(body)[..8]`; a body is `1 | id: u64 | payload` (added)
//! or `2 | id: u64` (done). A torn or damaged tail (a crash mid-write) ends
//! the replay and what came before it is kept; the damaged file is moved
//! aside as `journal.damaged.<unix seconds>` (a later damage gets a name of
//! its own).
//!
//! A small pool of writer threads (two, named `nymd-journal`, started with
//! the first journals and shared by every journal of the process) does the
//! file work, so callers never wait for the disk and a journal costs no
//! thread of its own. Each journal is pinned to one of them, which writes
//! its operations in order, in batches with one `fdatasync` each (a batch:
//! what is queued for that journal when its thread gets to it). A write of
//! one journal delays the others of its thread only while it runs: a
//! failing journal holds them up for its tries, not until it recovers. A
//! lock file keeps a second writer of the same folder waiting (up to 5 s)
//! until the first has written everything and closed, or been dropped.
//! When the folder cannot be written (disk full, read-only) the journal is
//! opened disabled: callers go on in memory and the log says so.
//!
//! A write that fails later (ENOSPC, EIO) loses nothing: the operations of
//! the failed batch stay with the writer, an add and its done cancelling out
//! while both wait, and are written when a write succeeds again (retried
//! every second, and with every new batch of that journal); a file left
//! longer than its whole records is cut back, or rewritten from its live
//! records, first. The writer threads always drain their channels, so what
//! waits is bounded by the live records the callers hold (their own bounds),
//! not by time.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::{create_private_dir, write_atomic, SECRET_FILE_MODE};

const JOURNAL: &str = "journal";
const LOCK: &str = "lock";
const DAMAGED: &str = "journal.damaged";
const ADD: u8 = 1;
const DONE: u8 = 2;
const CHECK: usize = 8;
/// A record larger than this is damage, not data.
const MAX_RECORD: usize = 512 * 1024 * 1024;
/// Compact when the file is this large and at least twice the live part.
const COMPACT_AT: u64 = 4 * 1024 * 1024;
/// Operations written per batch at most (one fdatasync each).
const BATCH: usize = 1024;
/// Bytes of operations queued for the writer (or kept after a failed
/// write) above which [`Journal::has_room`] says no: callers stop taking new
/// records until the disk catches up, and are never blocked by it.
pub const MAX_BACKLOG_BYTES: usize = 64 * 1024 * 1024;
/// What one operation counts for in the backlog besides its payload.
const OP_OVERHEAD: usize = 4 + 1 + 8 + CHECK;

/// How long [`Journal::open`] waits for a previous writer to let go.
const LOCK_WAIT: Duration = Duration::from_secs(5);

/// Errors opening a journal.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// The folder or a file in it could not be used.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Another writer holds the journal.
    #[error("{0} is in use by another writer (is a second nymd running on this state dir?)")]
    Locked(PathBuf),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> JournalError + '_ {
    move |source| JournalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A record not marked done: its id and payload.
pub type Record = (u64, Vec<u8>);

enum Op {
    Add(u64, Vec<u8>),
    Done(u64),
}

/// The writing side: queue records (never blocks).
#[derive(Debug)]
pub struct Journal {
    /// The channel of the pool thread this journal is pinned to (`None`:
    /// disabled or closed).
    tx: Option<mpsc::Sender<Msg>>,
    /// This journal's name on that thread.
    key: u64,
    /// Bytes of operations not yet on disk (see [`MAX_BACKLOG_BYTES`]).
    backlog: Arc<std::sync::atomic::AtomicUsize>,
}

impl Op {
    /// What the operation counts for in the backlog.
    fn cost(&self) -> usize {
        OP_OVERHEAD
            + match self {
                Op::Add(_, p) => p.len(),
                Op::Done(_) => 0,
            }
    }
}

impl std::fmt::Debug for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Op::Add(id, p) => write!(f, "Add({id}, {} bytes)", p.len()),
            Op::Done(id) => write!(f, "Done({id})"),
        }
    }
}

impl Journal {
    /// Open (creating) the journal in `dir` whose files start with
    /// `header`, returning the records not marked done, oldest first.
    /// `live` is kept at their number as writes reach the disk. Blocking.
    ///
    /// Only another writer holding the journal is an error; a folder that
    /// cannot be written gives a disabled journal (see [`Journal::enabled`])
    /// with whatever could be read, and a warning in the log.
    pub fn open(
        dir: &Path,
        header: &'static [u8],
        live: Arc<AtomicU64>,
    ) -> Result<(Journal, Vec<Record>), JournalError> {
        match Self::open_writable(dir, header, live) {
            Ok(x) => Ok(x),
            Err(e @ JournalError::Locked(_)) => Err(e),
            Err(e) => {
                tracing::warn!(
                    "{e}; this journal is not kept: what it protects lives in memory only \
                     (lost if nymd stops) until it can be written again"
                );
                let path = dir.join(JOURNAL);
                let records = std::fs::read(&path)
                    .map(|bytes| replay(&path, header, &bytes).0)
                    .unwrap_or_default();
                Ok((Journal::disabled(), records))
            }
        }
    }

    /// A journal that writes nothing.
    pub fn disabled() -> Journal {
        Journal {
            tx: None,
            key: 0,
            backlog: Arc::default(),
        }
    }

    /// Whether the writer keeps up: `false` while more than
    /// [`MAX_BACKLOG_BYTES`] wait for the disk (a slow or failing disk).
    /// Callers then take no new records (their own backpressure) until it
    /// is `true` again; [`Journal::add`] itself never blocks.
    pub fn has_room(&self) -> bool {
        self.backlog.load(Ordering::Relaxed) < MAX_BACKLOG_BYTES
    }

    /// Bytes of operations waiting for the disk.
    pub fn backlog_bytes(&self) -> usize {
        self.backlog.load(Ordering::Relaxed)
    }

    /// Whether records reach the disk.
    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    fn open_writable(
        dir: &Path,
        header: &'static [u8],
        live: Arc<AtomicU64>,
    ) -> Result<(Journal, Vec<Record>), JournalError> {
        create_private_dir(dir).map_err(io(dir))?;
        let lock_path = dir.join(LOCK);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(SECRET_FILE_MODE)
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
                    return Err(JournalError::Locked(dir.to_path_buf()))
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(io(&lock_path)(e)),
            }
        }
        let path = dir.join(JOURNAL);
        let (records, damaged) = match std::fs::read(&path) {
            Ok(bytes) => replay(&path, header, &bytes),
            Err(e) if e.kind() == ErrorKind::NotFound => (Vec::new(), false),
            Err(e) => return Err(io(&path)(e)),
        };
        if damaged {
            // Kept for inspection; the readable part is rewritten below.
            let aside = damaged_name(dir);
            std::fs::rename(&path, &aside).map_err(io(&aside))?;
            tracing::warn!(path = %aside.display(), "a damaged journal was moved aside");
        }
        let writer = Writer::rewrite(&path, header, &records, live)?;
        let key = NEXT_KEY.fetch_add(1, Ordering::Relaxed);
        let journal = Journal::start(key, writer, lock).map_err(io(dir))?;
        Ok((journal, records))
    }

    /// Hand `writer` and the `lock` it holds to the pool thread of `key`
    /// (a key no other journal has).
    fn start(key: u64, writer: Writer, lock: File) -> std::io::Result<Journal> {
        let backlog = writer.backlog.clone();
        let tx = attach(key, writer, lock)?;
        Ok(Journal {
            tx: Some(tx),
            key,
            backlog,
        })
    }

    /// Record `payload` under `id`.
    pub fn add(&self, id: u64, payload: Vec<u8>) {
        self.send(Op::Add(id, payload));
    }

    /// Mark `id` done (unknown ids are ignored).
    pub fn done(&self, id: u64) {
        self.send(Op::Done(id));
    }

    fn send(&self, op: Op) {
        if let Some(tx) = &self.tx {
            let cost = op.cost();
            self.backlog.fetch_add(cost, Ordering::Relaxed);
            let msg = Msg::Op { key: self.key, op };
            if tx.send(msg).is_err() {
                self.backlog.fetch_sub(cost, Ordering::Relaxed);
            }
        }
    }

    /// Write what is queued for this journal and let go of its folder
    /// (blocking; a write that still fails is logged and its operations
    /// lost with the process).
    pub fn close(&mut self) {
        if let Some(tx) = self.tx.take() {
            let (ack, closed) = mpsc::channel();
            let msg = Msg::Close {
                key: self.key,
                ack: Some(ack),
            };
            if tx.send(msg).is_ok() {
                // An error: the thread ended, which released the lock too.
                let _ = closed.recv();
            }
        }
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        // Without waiting: the pool thread writes what is queued on its own;
        // the lock file keeps a new writer of the same folder waiting until
        // then.
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(Msg::Close {
                key: self.key,
                ack: None,
            });
        }
    }
}

/// Writer threads shared by every journal of the process.
const WORKERS: usize = 2;
/// Their name.
const THREAD_NAME: &str = "nymd-journal";
/// Messages a writer thread takes before it writes what they brought, so
/// that a busy journal delays the others of its thread by a few batches at
/// most.
const ROUND: usize = 4 * BATCH;

/// What a journal tells its pool thread.
enum Msg {
    /// A journal starts: its writer, and its lock file, held until it is
    /// closed and written.
    Attach {
        key: u64,
        writer: Box<Writer>,
        lock: File,
    },
    Op {
        key: u64,
        op: Op,
    },
    /// Write what is queued, release the lock, then answer on `ack` (a
    /// dropped journal waits for no answer).
    Close {
        key: u64,
        ack: Option<mpsc::Sender<()>>,
    },
}

/// The pool: a channel to each writer thread, started when first needed.
/// Threads live as long as the process.
static POOL: Mutex<[Option<mpsc::Sender<Msg>>; WORKERS]> = Mutex::new([const { None }; WORKERS]);

/// Names of journals on their pool thread (never reused).
static NEXT_KEY: AtomicU64 = AtomicU64::new(0);

/// The pool thread a journal is pinned to (so its operations stay in
/// order).
fn worker_of(key: u64) -> usize {
    (key % WORKERS as u64) as usize
}

/// Give `writer` and `lock` to the pool thread of `key`, starting that
/// thread if needed. Returns the journal's channel to it.
fn attach(key: u64, writer: Writer, lock: File) -> std::io::Result<mpsc::Sender<Msg>> {
    let mut pool = POOL.lock().unwrap_or_else(PoisonError::into_inner);
    let slot = &mut pool[worker_of(key)];
    let mut msg = Msg::Attach {
        key,
        writer: Box::new(writer),
        lock,
    };
    let mut started = false;
    loop {
        if let Some(tx) = slot.as_ref() {
            match tx.send(msg) {
                Ok(()) => return Ok(tx.clone()),
                Err(mpsc::SendError(back)) => msg = back,
            }
            if started {
                return Err(std::io::Error::other("the journal writer thread ended"));
            }
        }
        // Not started yet, or it ended (a bug; its journals are lost): a
        // new one. A failed start drops `msg` later, which lets go of the
        // lock.
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name(THREAD_NAME.into())
            .spawn(move || Worker::default().run(rx))?;
        *slot = Some(tx);
        started = true;
    }
}

/// A journal on its pool thread.
struct Slot {
    writer: Writer,
    /// Held until the journal is closed and written.
    _lock: File,
    /// Operations taken this round and not written yet.
    fresh: usize,
}

/// A pool thread: the journals pinned to it.
#[derive(Default)]
struct Worker {
    journals: HashMap<u64, Slot>,
    /// Journals that took operations this round (a key may repeat).
    dirty: Vec<u64>,
    /// Failing journals, and when each tries again.
    retry: HashMap<u64, Instant>,
}

impl Worker {
    fn run(mut self, rx: mpsc::Receiver<Msg>) {
        loop {
            let first = match self.retry.values().min() {
                None => match rx.recv() {
                    Ok(msg) => Some(msg),
                    Err(_) => break,
                },
                // Failing journals try again every second even if nothing
                // comes.
                Some(at) => match rx.recv_timeout(at.saturating_duration_since(Instant::now())) {
                    Ok(msg) => Some(msg),
                    Err(mpsc::RecvTimeoutError::Timeout) => None,
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                },
            };
            let mut next = first;
            let mut taken = 0;
            while let Some(msg) = next {
                self.take(msg);
                taken += 1;
                next = if taken < ROUND {
                    rx.try_recv().ok()
                } else {
                    None
                };
            }
            for i in 0..self.dirty.len() {
                let key = self.dirty[i];
                if self.journals.get(&key).is_some_and(|s| s.fresh > 0) {
                    self.flush(key);
                }
            }
            self.dirty.clear();
            let now = Instant::now();
            let due: Vec<u64> = self
                .retry
                .iter()
                .filter(|(_, at)| **at <= now)
                .map(|(key, _)| *key)
                .collect();
            for key in due {
                self.flush(key);
            }
        }
        // Only when the pool lets go of the thread (it never does).
        let keys: Vec<u64> = self.journals.keys().copied().collect();
        for key in keys {
            self.close(key, None);
        }
    }

    fn take(&mut self, msg: Msg) {
        match msg {
            Msg::Attach { key, writer, lock } => {
                let slot = Slot {
                    writer: *writer,
                    _lock: lock,
                    fresh: 0,
                };
                self.journals.insert(key, slot);
            }
            Msg::Op { key, op } => {
                // A journal's operations follow its attach on this channel.
                let Some(slot) = self.journals.get_mut(&key) else {
                    return;
                };
                slot.writer.pending.push(op);
                slot.fresh += 1;
                if slot.fresh == 1 {
                    self.dirty.push(key);
                }
                if slot.fresh >= BATCH {
                    self.flush(key);
                }
            }
            Msg::Close { key, ack } => self.close(key, ack),
        }
    }

    /// Write what the journal `key` has pending (one batch).
    fn flush(&mut self, key: u64) {
        let Some(slot) = self.journals.get_mut(&key) else {
            return;
        };
        slot.fresh = 0;
        slot.writer.flush();
        if slot.writer.pending.is_empty() {
            self.retry.remove(&key);
        } else {
            self.retry.insert(key, Instant::now() + RETRY);
        }
    }

    fn close(&mut self, key: u64, ack: Option<mpsc::Sender<()>>) {
        self.retry.remove(&key);
        if let Some(mut slot) = self.journals.remove(&key) {
            // Closing: a last try, then what could not be written is lost
            // with the process (logged).
            slot.writer.flush();
            if !slot.writer.pending.is_empty() {
                tracing::warn!(
                    path = %slot.writer.path.display(),
                    operations = slot.writer.pending.len(),
                    "the journal could not be written before it was closed"
                );
            }
            // Lets go of the lock.
            drop(slot);
        }
        if let Some(ack) = ack {
            let _ = ack.send(());
        }
    }
}

/// A name for a damaged journal that no earlier one has:
/// `journal.damaged.<unix seconds>`, with `.<n>` added if taken.
fn damaged_name(dir: &Path) -> PathBuf {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let base = format!("{DAMAGED}.{secs}");
    let mut path = dir.join(&base);
    let mut n = 1u32;
    while path.exists() {
        path = dir.join(format!("{base}.{n}"));
        n += 1;
    }
    path
}

/// Read the records of a journal; what follows a damaged record is ignored
/// (logged). Also says whether there was damage.
fn replay(path: &Path, header: &[u8], bytes: &[u8]) -> (Vec<Record>, bool) {
    let Some(mut rest) = bytes.strip_prefix(header) else {
        if bytes.is_empty() {
            return (Vec::new(), false);
        }
        tracing::warn!(path = %path.display(), "the journal has no valid header; its records are ignored");
        return (Vec::new(), true);
    };
    let mut damaged = false;
    let mut live: Vec<Option<Record>> = Vec::new();
    let mut index: HashMap<u64, usize> = HashMap::new();
    let mut records = 0usize;
    while !rest.is_empty() {
        let Some(body) = next_record(&mut rest) else {
            tracing::warn!(
                path = %path.display(),
                records,
                damaged_bytes = rest.len(),
                "the journal ends with a damaged record (a crash while writing); the records before it are kept"
            );
            damaged = true;
            break;
        };
        records += 1;
        match decode_body(body) {
            Some(Op::Add(id, payload)) => {
                if let Some(old) = index.insert(id, live.len()) {
                    live[old] = None;
                }
                live.push(Some((id, payload)));
            }
            Some(Op::Done(id)) => {
                if let Some(i) = index.remove(&id) {
                    live[i] = None;
                }
            }
            None => {
                tracing::warn!(path = %path.display(), records, "skipping an unreadable journal record");
                damaged = true;
            }
        }
    }
    (live.into_iter().flatten().collect(), damaged)
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
    let (&kind, rest) = body.split_first()?;
    let id = u64::from_le_bytes(rest.get(..8)?.try_into().ok()?);
    let payload = rest.get(8..)?;
    match kind {
        ADD => Some(Op::Add(id, payload.to_vec())),
        DONE if payload.is_empty() => Some(Op::Done(id)),
        _ => None,
    }
}

/// Append one record (length, body, check) to `out`.
fn encode_record(kind: u8, id: u64, payload: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    let len = (1 + 8 + payload.len()) as u32;
    out.extend_from_slice(&len.to_le_bytes());
    out.push(kind);
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(payload);
    let check = blake3::hash(&out[start + 4..]);
    out.extend_from_slice(&check.as_bytes()[..CHECK]);
}

/// Drop each add whose done waits after it (and that done): neither needs
/// the disk. Order is kept.
fn coalesce(ops: Vec<Op>) -> Vec<Op> {
    let mut keep = vec![true; ops.len()];
    let mut last_add: HashMap<u64, usize> = HashMap::new();
    for (i, op) in ops.iter().enumerate() {
        match op {
            Op::Add(id, _) => {
                last_add.insert(*id, i);
            }
            Op::Done(id) => {
                if let Some(a) = last_add.remove(id) {
                    keep[a] = false;
                    keep[i] = false;
                }
            }
        }
    }
    ops.into_iter()
        .zip(keep)
        .filter_map(|(op, k)| k.then_some(op))
        .collect()
}

/// A journal's state on its pool thread: the open file and where each live
/// record is in it (for compaction).
struct Writer {
    path: PathBuf,
    header: &'static [u8],
    file: File,
    /// Bytes known to be whole records.
    len: u64,
    live: HashMap<u64, (u64, u64)>,
    live_bytes: u64,
    /// The last write failed (logged once until one succeeds).
    failing: bool,
    /// Operations not yet on disk because a write failed: written, in
    /// order, before anything newer.
    pending: Vec<Op>,
    live_count: Arc<AtomicU64>,
    /// The journal's backlog, lowered as operations reach the disk (or
    /// cancel out).
    backlog: Arc<std::sync::atomic::AtomicUsize>,
}

/// How often a failing journal tries again while nothing new comes.
const RETRY: Duration = Duration::from_secs(1);

impl Writer {
    /// Write a fresh journal holding `records` (temp file, fsync, rename)
    /// and open it for appending.
    fn rewrite(
        path: &Path,
        header: &'static [u8],
        records: &[Record],
        live_count: Arc<AtomicU64>,
    ) -> Result<Writer, JournalError> {
        let mut buf = header.to_vec();
        let mut live = HashMap::new();
        let mut live_bytes = 0;
        for (id, payload) in records {
            let at = buf.len() as u64;
            encode_record(ADD, *id, payload, &mut buf);
            let n = buf.len() as u64 - at;
            live.insert(*id, (at, n));
            live_bytes += n;
        }
        write_atomic(path, &buf, SECRET_FILE_MODE).map_err(io(path))?;
        live_count.store(live.len() as u64, Ordering::Relaxed);
        let file = OpenOptions::new()
            .append(true)
            .read(true)
            .open(path)
            .map_err(io(path))?;
        Ok(Writer {
            path: path.to_path_buf(),
            header,
            file,
            len: buf.len() as u64,
            live,
            live_bytes,
            failing: false,
            pending: Vec::new(),
            live_count,
            backlog: Arc::default(),
        })
    }

    /// Write what is pending; on failure keep it (coalesced) for the next
    /// try.
    fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.pending);
        let before: usize = batch.iter().map(Op::cost).sum();
        let left = match self.write_batch(batch) {
            Ok(()) => 0,
            Err(batch) => {
                self.pending = coalesce(batch);
                self.pending.iter().map(Op::cost).sum()
            }
        };
        self.backlog
            .fetch_sub(before.saturating_sub(left), Ordering::Relaxed);
    }

    /// Make the file end at the last whole record again after a failed
    /// write: cut it back, or, if that fails too, rewrite it from its live
    /// records.
    fn repair_tail(&mut self) -> std::io::Result<()> {
        let on_disk = self.file.metadata()?.len();
        if on_disk == self.len {
            return Ok(());
        }
        if self.file.set_len(self.len).is_ok() {
            return Ok(());
        }
        self.compact().map_err(|e| match e {
            JournalError::Io { source, .. } => source,
            JournalError::Locked(_) => std::io::Error::other("locked"),
        })
    }

    /// Write `batch` (one fdatasync). On failure it is given back whole.
    fn write_batch(&mut self, batch: Vec<Op>) -> Result<(), Vec<Op>> {
        let mut buf = Vec::new();
        let mut placed = Vec::with_capacity(batch.len());
        for op in &batch {
            let at = buf.len() as u64;
            match op {
                Op::Add(id, payload) => encode_record(ADD, *id, payload, &mut buf),
                Op::Done(id) => encode_record(DONE, *id, &[], &mut buf),
            }
            placed.push((at, buf.len() as u64 - at));
        }
        let result = self
            .repair_tail()
            .and_then(|()| self.file.write_all(&buf))
            .and_then(|()| self.file.sync_data());
        if let Err(e) = result {
            // A partial record must not stay in front of later ones (if
            // this fails too, the next try repairs the tail first).
            let _ = self.file.set_len(self.len);
            if !std::mem::replace(&mut self.failing, true) {
                tracing::warn!(
                    path = %self.path.display(),
                    "cannot write the journal ({e}); its records wait in memory and are written as soon as a write succeeds"
                );
            }
            return Err(batch);
        }
        if std::mem::replace(&mut self.failing, false) {
            tracing::info!(path = %self.path.display(), "the journal is written again");
        }
        let base = self.len;
        self.len += buf.len() as u64;
        for (op, (at, n)) in batch.iter().zip(placed) {
            let id = match op {
                Op::Add(id, _) | Op::Done(id) => *id,
            };
            if let Some((_, old)) = self.live.remove(&id) {
                self.live_bytes -= old;
            }
            if let Op::Add(..) = op {
                self.live.insert(id, (base + at, n));
                self.live_bytes += n;
            }
        }
        self.live_count
            .store(self.live.len() as u64, Ordering::Relaxed);
        let floor = self.live_bytes + self.header.len() as u64;
        if self.len >= COMPACT_AT && self.len >= 2 * floor {
            if let Err(e) = self.compact() {
                tracing::warn!(path = %self.path.display(), "cannot compact the journal: {e}");
            }
        }
        Ok(())
    }

    /// Copy the live records into a new journal and replace the old one.
    fn compact(&mut self) -> Result<(), JournalError> {
        let mut order: Vec<(u64, u64, u64)> = self
            .live
            .iter()
            .map(|(id, (at, n))| (*at, *n, *id))
            .collect();
        order.sort_unstable();
        let mut buf = self.header.to_vec();
        let mut live = HashMap::with_capacity(order.len());
        for (at, n, id) in order {
            let start = buf.len();
            buf.resize(start + n as usize, 0);
            self.file
                .read_exact_at(&mut buf[start..], at)
                .map_err(io(&self.path))?;
            live.insert(id, (start as u64, n));
        }
        write_atomic(&self.path, &buf, SECRET_FILE_MODE).map_err(io(&self.path))?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, RngCore, SeedableRng};

    const H: &[u8] = b"test-journal v1\n";

    fn rec(id: u64, n: usize) -> (u64, Vec<u8>) {
        (id, (0..n).map(|i| (i as u64 ^ id) as u8).collect())
    }

    #[test]
    fn what_is_not_done_survives_a_reopen() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("j");
        let (mut j, got) = Journal::open(&path, H, Arc::default()).expect("open");
        assert!(got.is_empty());
        for id in 0..5 {
            let (id, p) = rec(id, 100);
            j.add(id, p);
        }
        j.done(1);
        j.done(3);
        j.done(77);
        j.close();
        let count = Arc::new(AtomicU64::new(0));
        let (mut j, got) = Journal::open(&path, H, count.clone()).expect("reopen");
        assert_eq!(got, vec![rec(0, 100), rec(2, 100), rec(4, 100)]);
        assert_eq!(count.load(Ordering::Relaxed), 3);
        j.done(0);
        j.close();
        assert_eq!(count.load(Ordering::Relaxed), 2);
        let (_j, got) = Journal::open(&path, H, Arc::default()).expect("reopen");
        assert_eq!(got, vec![rec(2, 100), rec(4, 100)]);
    }

    #[test]
    fn files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("j");
        let (mut j, _) = Journal::open(&path, H, Arc::default()).expect("open");
        j.add(1, vec![1]);
        j.close();
        let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o700);
        assert_eq!(mode(&path.join(JOURNAL)), 0o600);
        assert_eq!(mode(&path.join(LOCK)), 0o600);
    }

    #[test]
    fn a_torn_or_damaged_tail_keeps_what_came_before() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("j");
        let (mut j, _) = Journal::open(&path, H, Arc::default()).expect("open");
        let (a, b) = (rec(1, 300), rec(2, 300));
        j.add(a.0, a.1.clone());
        j.add(b.0, b.1.clone());
        j.close();
        let file = path.join(JOURNAL);
        let whole = std::fs::read(&file).expect("read");
        let first_end = {
            let mut rest = &whole[H.len()..];
            next_record(&mut rest).expect("first");
            whole.len() - rest.len()
        };
        for cut in [first_end + 1, first_end + 7, whole.len() - 1] {
            let (got, damaged) = replay(&file, H, &whole[..cut]);
            assert_eq!(got, vec![a.clone()], "cut at {cut}");
            assert!(damaged);
        }
        let mut flipped = whole.clone();
        flipped[first_end + 20] ^= 1;
        assert_eq!(replay(&file, H, &flipped).0, vec![a.clone()]);
        // On open, the damaged file is moved aside and the rest kept.
        std::fs::write(&file, &flipped).expect("write");
        let (mut j, got) = Journal::open(&path, H, Arc::default()).expect("open");
        assert_eq!(got, vec![a.clone()]);
        let aside = damaged_files(&path);
        assert_eq!(aside.len(), 1);
        assert_eq!(std::fs::read(&aside[0]).expect("aside"), flipped);
        j.close();
        // A second damage keeps the first one's file.
        std::fs::write(&file, &flipped).expect("write");
        let (_j, got) = Journal::open(&path, H, Arc::default()).expect("open");
        assert_eq!(got, vec![a]);
        assert_eq!(
            damaged_files(&path).len(),
            2,
            "each damage has its own file"
        );
    }

    /// The files damaged journals were moved to, by name.
    fn damaged_files(dir: &Path) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
            .expect("dir")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(DAMAGED))
            })
            .collect();
        v.sort();
        v
    }

    #[test]
    fn another_header_is_not_read() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("j");
        let (mut j, _) = Journal::open(&path, H, Arc::default()).expect("open");
        j.add(1, vec![1, 2, 3]);
        j.close();
        let (_j, got) = Journal::open(&path, b"other v1\n", Arc::default()).expect("open");
        assert!(got.is_empty());
        assert_eq!(damaged_files(&path).len(), 1);
    }

    /// Valid journals damaged at random (bit flips, cuts, inserted bytes,
    /// forged lengths): replay never panics and returns only records that
    /// were really written, whole.
    #[test]
    fn damaged_journals_yield_only_real_records() {
        let file = Path::new("journal");
        let originals: Vec<(u64, Vec<u8>)> = (0..6).map(|i| rec(i, 50 + 40 * i as usize)).collect();
        let mut whole = H.to_vec();
        for (id, p) in &originals {
            encode_record(ADD, *id, p, &mut whole);
        }
        encode_record(DONE, 2, &[], &mut whole);
        let (clean, damaged) = replay(file, H, &whole);
        assert!(!damaged);
        assert_eq!(clean.len(), 5);
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x0b0c);
        for round in 0..3_000 {
            let mut bytes = whole.clone();
            for _ in 0..rng.gen_range(1..4) {
                if bytes.is_empty() {
                    break;
                }
                let at = rng.gen_range(0..bytes.len());
                match rng.gen_range(0..4) {
                    0 => bytes[at] ^= 1 << rng.gen_range(0..8),
                    1 => bytes.truncate(at),
                    2 => bytes.insert(at, rng.gen()),
                    _ => {
                        let forged: u32 = rng.gen();
                        let end = (at + 4).min(bytes.len());
                        let n = end - at;
                        bytes[at..end].copy_from_slice(&forged.to_le_bytes()[..n]);
                    }
                }
            }
            for r in replay(file, H, &bytes).0 {
                assert!(
                    originals.contains(&r),
                    "round {round}: invented record {}",
                    r.0
                );
            }
        }
        // Pure garbage after a valid header.
        for n in 0..500usize {
            let mut bytes = H.to_vec();
            let mut tail = vec![0u8; n % 64];
            rng.fill_bytes(&mut tail);
            bytes.extend_from_slice(&tail);
            let _ = replay(file, H, &bytes);
        }
    }

    #[test]
    fn compaction_keeps_exactly_the_live_records() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("j");
        let (mut j, _) = Journal::open(&path, H, Arc::default()).expect("open");
        for id in 0..2_000u64 {
            j.add(id, vec![id as u8; 5_000]);
            if id % 100 != 7 {
                j.done(id);
            }
        }
        j.close();
        let size = std::fs::metadata(path.join(JOURNAL)).expect("meta").len();
        assert!(size < COMPACT_AT, "journal compacted: {size} bytes");
        let (_j, got) = Journal::open(&path, H, Arc::default()).expect("reopen");
        let ids: Vec<u64> = got.iter().map(|r| r.0).collect();
        assert_eq!(
            ids,
            (0..2_000).filter(|id| id % 100 == 7).collect::<Vec<_>>()
        );
        assert!(got.iter().all(|(id, p)| *p == vec![*id as u8; 5_000]));
    }

    #[test]
    fn a_second_writer_waits_for_the_first() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("j");
        let (mut first, _) = Journal::open(&path, H, Arc::default()).expect("open");
        first.add(9, vec![9]);
        let p2 = path.clone();
        let (started_tx, started) = mpsc::channel();
        let (done_tx, done) = mpsc::channel();
        let second = std::thread::spawn(move || {
            let _ = started_tx.send(());
            let r = Journal::open(&p2, H, Arc::default()).map(|(mut j, r)| {
                j.close();
                r
            });
            let _ = done_tx.send(r);
        });
        started
            .recv_timeout(Duration::from_secs(30))
            .expect("the second writer starts");
        // Held for a while (well inside LOCK_WAIT, so the second open keeps
        // waiting rather than giving up): the second open has not returned.
        // Without the lock it would return within milliseconds.
        match done.recv_timeout(Duration::from_secs(1)) {
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            other => panic!("the second open returned while the first held the lock: {other:?}"),
        }
        first.close();
        // Released: the second open completes (generous bound; it polls
        // every 20 ms) and sees what the first one wrote.
        let got = done
            .recv_timeout(Duration::from_secs(30))
            .expect("the second open completes once the first is closed")
            .expect("second open");
        assert_eq!(got, vec![(9, vec![9])]);
        second.join().expect("join");
    }

    #[test]
    fn an_unwritable_folder_gives_a_disabled_journal() {
        let dir = tempfile::tempdir().expect("tmp");
        let file = dir.path().join("a-file");
        std::fs::write(&file, b"x").expect("write");
        // A folder below a file cannot be created, even by root.
        let count = Arc::new(AtomicU64::new(0));
        let (mut j, got) = Journal::open(&file.join("j"), H, count.clone()).expect("disabled");
        assert!(!j.enabled());
        assert!(got.is_empty());
        j.add(1, vec![1]);
        j.done(1);
        j.close();
        assert_eq!(count.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn waiting_adds_and_their_dones_cancel_out_in_order() {
        let ops = vec![
            Op::Done(1),
            Op::Add(2, vec![2]),
            Op::Add(3, vec![3]),
            Op::Done(2),
            Op::Done(4),
            Op::Add(4, vec![4]),
        ];
        let left: Vec<String> = coalesce(ops).iter().map(|o| format!("{o:?}")).collect();
        assert_eq!(
            left,
            vec!["Done(1)", "Add(3, 1 bytes)", "Done(4)", "Add(4, 1 bytes)"]
        );
    }

    /// A journal whose file system fills up, then has room again, loses
    /// no record: what failed is written once writes succeed. Needs root
    /// (a small tmpfs); a skip fails under CI.
    #[test]
    fn a_full_disk_then_room_again_loses_no_record() {
        let is_root = std::fs::metadata("/proc/self")
            .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
            .unwrap_or(false);
        let in_ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty());
        if !is_root {
            assert!(!in_ci, "CI must run this test as root (it mounts a tmpfs)");
            eprintln!("skipped: needs root to mount a small tmpfs");
            return;
        }
        let dir = tempfile::tempdir().expect("tmp");
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).expect("mnt");
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=512k,mode=0700", "tmpfs"])
            .arg(&mnt)
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            assert!(!in_ci, "CI must be able to mount a tmpfs");
            eprintln!("skipped: cannot mount a tmpfs");
            return;
        }
        struct Unmount(PathBuf);
        impl Drop for Unmount {
            fn drop(&mut self) {
                let _ = std::process::Command::new("umount")
                    .arg("-l")
                    .arg(&self.0)
                    .status();
            }
        }
        let _unmount = Unmount(mnt.clone());
        let path = mnt.join("j");
        let (mut j, _) = Journal::open(&path, H, Arc::default()).expect("open");
        j.add(0, vec![0; 1000]);
        // Fill the file system.
        let filler = mnt.join("filler");
        {
            let mut f = File::create(&filler).expect("filler");
            let chunk = vec![0u8; 4096];
            while f.write_all(&chunk).and_then(|()| f.flush()).is_ok() {}
            let _ = f.sync_all();
        }
        // These cannot be written now.
        let count = Arc::new(AtomicU64::new(0));
        let records: Vec<Record> = (1..40).map(|id| rec(id, 3000)).collect();
        for (id, p) in &records {
            j.add(*id, p.clone());
        }
        j.done(0);
        j.done(5);
        // Let the writer fail at least once (the records are not in the
        // file), then free the space.
        std::thread::sleep(Duration::from_millis(300));
        let written = std::fs::metadata(path.join(JOURNAL)).map_or(0, |m| m.len());
        assert!(
            written < 39 * 3000,
            "the full file system took {written} bytes: the test must make writes fail"
        );
        std::fs::remove_file(&filler).expect("free space");
        j.close();
        let (_j, got) = Journal::open(&path, H, count.clone()).expect("reopen");
        let want: Vec<Record> = records.into_iter().filter(|(id, _)| *id != 5).collect();
        assert_eq!(got.len(), want.len(), "every record that was not done");
        assert_eq!(got, want);
    }

    /// The backlog counts what waits for the disk and empties as it is
    /// written; `has_room` turns false above the bound.
    #[test]
    fn the_backlog_is_counted_and_drains() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("j");
        let (mut j, _) = Journal::open(&path, H, Arc::default()).expect("open");
        assert!(j.has_room());
        // Far more than the bound at once: the writer cannot have written
        // it all before the next line (one add of the bound's size).
        j.add(1, vec![0; MAX_BACKLOG_BYTES]);
        j.add(2, vec![1; 10]);
        let seen = j.backlog_bytes();
        let deadline = Instant::now() + Duration::from_secs(60);
        while j.backlog_bytes() > 0 {
            assert!(Instant::now() < deadline, "the backlog never drained");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(j.has_room());
        assert!(seen > 0, "the backlog was counted");
        j.close();
        let (_j, got) = Journal::open(&path, H, Arc::default()).expect("reopen");
        assert_eq!(got.len(), 2);
    }

    /// While writes fail, what waits stays counted (so callers hold back);
    /// cancelled pairs leave the count.
    #[test]
    fn a_failing_disk_keeps_the_backlog_counted() {
        let mut w = failing_writer();
        let ops = vec![
            Op::Add(1, vec![0; 100]),
            Op::Add(2, vec![0; 50]),
            Op::Done(1),
        ];
        let total: usize = ops.iter().map(Op::cost).sum();
        w.backlog.store(total, Ordering::Relaxed);
        w.pending = ops;
        w.flush();
        assert_eq!(w.pending.len(), 1, "add 1 and its done cancelled");
        assert_eq!(
            w.backlog.load(Ordering::Relaxed),
            Op::Add(2, vec![0; 50]).cost()
        );
    }

    /// A writer whose every write fails: its file is /dev/null opened
    /// read-only.
    fn failing_writer() -> Writer {
        Writer {
            path: PathBuf::from("/nonexistent/j"),
            header: H,
            file: File::open("/dev/null").expect("null"),
            len: 0,
            live: HashMap::new(),
            live_bytes: 0,
            failing: false,
            pending: Vec::new(),
            live_count: Arc::default(),
            backlog: Arc::default(),
        }
    }

    /// Threads of this process named like the pool's.
    fn journal_threads() -> usize {
        std::fs::read_dir("/proc/self/task")
            .expect("/proc/self/task")
            .filter_map(|e| e.ok())
            .filter(|e| {
                std::fs::read_to_string(e.path().join("comm"))
                    .is_ok_and(|name| name.trim_end() == THREAD_NAME)
            })
            .count()
    }

    /// Run `f` on a thread of its own; panics if it has not returned
    /// within `secs` (the thread is then left behind, the test does not
    /// hang).
    fn within<T: Send + 'static>(
        secs: u64,
        what: &str,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> T {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        match rx.recv_timeout(Duration::from_secs(secs)) {
            Ok(v) => v,
            Err(e) => panic!("{what} did not return within {secs} s: {e}"),
        }
    }

    /// Many journals open at once share the pool's threads, and each keeps
    /// its own records, whether it was closed or dropped.
    #[test]
    fn many_journals_share_the_pool_threads() {
        let dir = tempfile::tempdir().expect("tmp");
        let paths: Vec<PathBuf> = (0..64).map(|i| dir.path().join(format!("j{i}"))).collect();
        let mut journals: Vec<Journal> = paths
            .iter()
            .map(|p| Journal::open(p, H, Arc::default()).expect("open").0)
            .collect();
        for (i, j) in journals.iter().enumerate() {
            assert!(j.enabled());
            for id in 0..10u64 {
                let (id, p) = rec(id + 100 * i as u64, 50 + i);
                j.add(id, p);
            }
            j.done(100 * i as u64 + 3);
        }
        // Other tests of this process use the pool at the same time: count
        // all the pool's threads, not a difference.
        let threads = journal_threads();
        assert!(
            (1..=WORKERS).contains(&threads),
            "64 open journals: {threads} threads named {THREAD_NAME}, the pool has {WORKERS}"
        );
        // Half are closed, half dropped.
        for (i, mut j) in journals.drain(..).enumerate() {
            if i % 2 == 0 {
                j.close();
            }
        }
        assert!(journal_threads() <= WORKERS);
        for (i, p) in paths.iter().enumerate() {
            let count = Arc::new(AtomicU64::new(0));
            let (mut j, got) = Journal::open(p, H, count.clone()).expect("reopen");
            let want: Vec<Record> = (0..10u64)
                .filter(|id| *id != 3)
                .map(|id| rec(id + 100 * i as u64, 50 + i))
                .collect();
            assert_eq!(got, want, "journal {i}");
            assert_eq!(count.load(Ordering::Relaxed), 9);
            j.close();
        }
        assert!(journal_threads() <= WORKERS);
    }

    /// A journal whose writes keep failing does not hold up the close of
    /// another journal of the same pool thread.
    #[test]
    fn a_close_does_not_wait_for_a_failing_journal_of_its_thread() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("good");
        let (mut good, _) = Journal::open(&path, H, Arc::default()).expect("open");
        // The failing journal goes to the same thread as the good one.
        let key = loop {
            let key = NEXT_KEY.fetch_add(1, Ordering::Relaxed);
            if worker_of(key) == worker_of(good.key) {
                break key;
            }
        };
        let lock = File::create(dir.path().join("failing.lock")).expect("lock");
        let failing = Journal::start(key, failing_writer(), lock).expect("start");
        failing.add(1, vec![1; 100]);
        good.add(1, vec![1; 10]);
        // Both were taken (one channel, in order), and the failing one's
        // write failed: it is retried every second from now on.
        let deadline = Instant::now() + Duration::from_secs(30);
        while good.backlog_bytes() > 0 {
            assert!(
                Instant::now() < deadline,
                "the good journal was never written"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(100));
        assert!(
            failing.backlog_bytes() > 0,
            "the failing journal's add waits"
        );
        good.add(2, vec![2; 10]);
        good.done(1);
        let good = within(10, "close of the good journal", move || {
            good.close();
            good
        });
        assert_eq!(good.backlog_bytes(), 0);
        assert!(failing.backlog_bytes() > 0, "still failing, still counted");
        let (_j, got) = Journal::open(&path, H, Arc::default()).expect("reopen");
        assert_eq!(got, vec![(2, vec![2; 10])]);
        // The failing journal closes too: one last try, logged.
        let left = within(10, "close of the failing journal", move || {
            let mut failing = failing;
            failing.close();
            failing.backlog_bytes()
        });
        assert!(left > 0);
    }

    /// A journal dropped without close writes what was queued, then lets
    /// go of its folder: a new writer waits for that and sees everything.
    #[test]
    fn a_dropped_journal_is_written_then_released() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("j");
        let (j, _) = Journal::open(&path, H, Arc::default()).expect("open");
        let records: Vec<Record> = (0..3_000).map(|id| rec(id, 1_000)).collect();
        for (id, p) in &records {
            j.add(*id, p.clone());
        }
        for id in (0..3_000).step_by(7) {
            j.done(id);
        }
        let started = Instant::now();
        drop(j);
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "drop does not wait for the disk"
        );
        let count = Arc::new(AtomicU64::new(0));
        let (mut j, got) = Journal::open(&path, H, count.clone()).expect("reopen after the drop");
        let want: Vec<Record> = records.into_iter().filter(|(id, _)| id % 7 != 0).collect();
        assert_eq!(got.len(), want.len());
        assert_eq!(got, want);
        assert_eq!(count.load(Ordering::Relaxed), want.len() as u64);
        j.close();
        // Closed: the folder is free at once.
        let (_j, got) = within(10, "a third open", move || {
            Journal::open(&path, H, Arc::default()).expect("third open")
        });
        assert_eq!(got.len(), want.len());
    }
}
