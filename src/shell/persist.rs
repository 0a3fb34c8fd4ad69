//! Registrations on disk: the binding log, its replay at start-up, and the
//! writer thread that appends to it with group commit.
//!
//! The log is `data_dir/bindings.log`, a sequence of
//! [`crate::registrar::record`]s. Each record holds the whole state of one
//! AoR and a sequence number, so the file can be replayed in any order and
//! more than once, and a snapshot (one record per live AoR) replaces it
//! without losing anything.
//!
//! # Durability
//!
//! **A REGISTER is answered 200 only after its record is on disk
//! (fdatasync); group commit amortises the sync over everything queued.**
//! Workers hand records to [`Persister::persist`] and await the returned
//! receiver; the writer thread wakes on the first record, gathers what
//! arrives within [`COMMIT_WINDOW`] (5 ms), writes it with one `write`,
//! calls `fdatasync` once, and then completes every waiter. Under load one
//! sync covers many REGISTERs; idle, a REGISTER waits for the window and
//! one sync.
//!
//! # Crashes and compaction
//!
//! A crash can leave a torn record at the tail; its CRC fails and replay
//! stops there, keeping everything before it. At start-up, and whenever the
//! file grows past max(64 MiB, 4 × the last snapshot), the writer replaces
//! the log with a snapshot: written to `bindings.log.tmp`, fsynced, renamed
//! over `bindings.log`, and the directory fsynced so the rename itself is
//! durable. At every instant one of the two files is a complete log.
//! Records queued during a runtime compaction are appended after the
//! snapshot; where they are older than its state, replay ignores them by
//! their sequence number.
//!
//! After a failed write or sync the state of the file (and of the page
//! cache) is unknown, so the writer reports the error to the waiters and
//! rewrites the whole log from the registrar before its next append.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::oneshot;

use crate::registrar::{Registrar, Replay, ReplayStats};

const LOG: &str = "bindings.log";
const TMP: &str = "bindings.log.tmp";

/// The log is compacted when it grows past this, or past
/// [`COMPACT_FACTOR`] times the last snapshot, whichever is larger.
const COMPACT_MIN: u64 = 64 << 20;
const COMPACT_FACTOR: u64 = 4;

/// How long the writer gathers records after the first before syncing:
/// at 2,000 REGISTERs/s a sync per 5 ms covers about ten records instead
/// of one (measured: ~15 % less CPU per registration than 1 ms), and a
/// REGISTER's 200 waits at most this much longer.
const COMMIT_WINDOW: Duration = Duration::from_millis(5);

/// The current time as Unix seconds (0 if the clock is before 1970).
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Who waits for a batch of records.
enum Done {
    /// A future (tests, one-off callers).
    Oneshot(oneshot::Sender<io::Result<()>>),
    /// A callback run on the writer thread (a worker posts itself one
    /// message per batch: one cross-thread wake-up, not one per record).
    Call(Box<dyn FnOnce(io::Result<()>) + Send>),
}

impl Done {
    fn complete(self, r: io::Result<()>) {
        match self {
            Done::Oneshot(tx) => {
                let _ = tx.send(r);
            }
            Done::Call(f) => f(r),
        }
    }
}

/// A handle to the writer thread; cheap to clone, one per worker. The
/// thread ends when the last handle is dropped.
#[derive(Debug, Clone)]
pub struct Persister {
    tx: mpsc::Sender<(Vec<u8>, Done)>,
}

impl Persister {
    /// Queues `record`; the receiver completes once the record is written
    /// and fdatasync'ed (or with the error that prevented it). If the
    /// writer thread is gone the receiver reports a closed channel.
    pub fn persist(&self, record: Vec<u8>) -> oneshot::Receiver<io::Result<()>> {
        let (done, rx) = oneshot::channel();
        // A send error returns `done`, dropped here: the receiver sees the
        // channel closed, which the caller treats as a failure.
        let _ = self.tx.send((record, Done::Oneshot(done)));
        rx
    }

    /// Queues `records` (one or more, concatenated); `then` runs on the
    /// writer thread once they are written and fdatasync'ed, or with the
    /// error. If the writer thread is gone, `then` runs here with an error.
    pub fn persist_then(
        &self,
        records: Vec<u8>,
        then: impl FnOnce(io::Result<()>) + Send + 'static,
    ) {
        if let Err(mpsc::SendError((_, done))) = self.tx.send((records, Done::Call(Box::new(then))))
        {
            done.complete(Err(io::Error::other("binding log writer stopped")));
        }
    }
}

impl std::fmt::Debug for Done {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Done::Oneshot(_) => "Done::Oneshot",
            Done::Call(_) => "Done::Call",
        })
    }
}

/// What [`open`] found and started.
#[derive(Debug)]
pub struct Opened {
    /// The handle to give the workers.
    pub persister: Persister,
    /// What the replay read.
    pub replay: ReplayStats,
    /// Bindings live after replay and purge.
    pub bindings: usize,
    /// How long opening took (replay, purge and snapshot).
    pub took: Duration,
    /// The writer thread. It ends once every [`Persister`] is dropped;
    /// joining it then waits for a compaction in progress (optional: an
    /// interrupted compaction leaves the previous log in place).
    pub writer: std::thread::JoinHandle<()>,
}

/// Opens `dir/bindings.log` (creating `dir`), replays it into `registrar`,
/// purges expired bindings, replaces the log with a compacted snapshot
/// (tmp + fsync + rename + directory fsync), and starts the writer thread
/// appending to it.
pub fn open(dir: &Path, registrar: Arc<Registrar>, now: u64) -> io::Result<Opened> {
    open_with(dir, registrar, now, COMPACT_MIN)
}

/// [`open`] with another floor than 64 MiB for runtime compaction (the log
/// is compacted past max(`compact_min`, 4 × the last snapshot)); tests use
/// a small one.
pub fn open_with(
    dir: &Path,
    registrar: Arc<Registrar>,
    now: u64,
    compact_min: u64,
) -> io::Result<Opened> {
    let start = Instant::now();
    fs::create_dir_all(dir)?;
    let path = dir.join(LOG);
    let replay = match File::open(&path) {
        Ok(f) => replay_file(f, &registrar, now)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => ReplayStats::default(),
        Err(e) => return Err(e),
    };
    if replay.torn {
        tracing::warn!(
            path = %path.display(),
            valid_len = replay.valid_len,
            "binding log ends in a torn or corrupt record; kept what precedes it"
        );
    }
    registrar.purge(now);
    let snapshot_len = write_snapshot(dir, &registrar, now)?;
    let file = OpenOptions::new().append(true).open(&path)?;
    let (tx, rx) = mpsc::channel();
    let mut writer = Writer {
        dir: dir.to_path_buf(),
        registrar: Arc::clone(&registrar),
        file,
        len: snapshot_len,
        snapshot_len,
        compact_min,
        broken: false,
    };
    let writer = std::thread::Builder::new()
        .name("tandem-persist".into())
        .spawn(move || writer.run(&rx))?;
    Ok(Opened {
        persister: Persister { tx },
        replay,
        bindings: registrar.bindings(),
        took: start.elapsed(),
        writer,
    })
}

/// Replays a log read in pieces, so a large log is never wholly in memory.
fn replay_file(mut f: File, registrar: &Registrar, now: u64) -> io::Result<ReplayStats> {
    let mut replay = Replay::new(registrar, now);
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 20);
    let mut chunk = vec![0u8; 1 << 20];
    while !replay.is_stopped() {
        let n = f.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        let used = replay.feed(&buf);
        buf.drain(..used);
    }
    Ok(replay.finish(buf.len()))
}

/// Writes a snapshot of `registrar` over `dir/bindings.log`, durably;
/// returns its length.
fn write_snapshot(dir: &Path, registrar: &Registrar, now: u64) -> io::Result<u64> {
    let tmp = dir.join(TMP);
    let mut w = BufWriter::with_capacity(1 << 20, File::create(&tmp)?);
    let mut len = 0u64;
    let mut result = Ok(());
    registrar.snapshot_chunks(now, |chunk| {
        if result.is_ok() {
            result = w.write_all(chunk);
            len += chunk.len() as u64;
        }
    });
    result?;
    let file = w.into_inner().map_err(io::IntoInnerError::into_error)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&tmp, dir.join(LOG))?;
    // The rename is an update of the directory: without this sync a crash
    // could bring back the old log (or none).
    File::open(dir)?.sync_all()?;
    Ok(len)
}

/// The writer thread's state.
struct Writer {
    dir: PathBuf,
    registrar: Arc<Registrar>,
    file: File,
    /// Bytes in the log.
    len: u64,
    /// Bytes of the last snapshot.
    snapshot_len: u64,
    /// Compact past max(this, [`COMPACT_FACTOR`] × `snapshot_len`).
    compact_min: u64,
    /// A write or sync failed: rewrite the log before appending.
    broken: bool,
}

impl Writer {
    fn run(&mut self, rx: &mpsc::Receiver<(Vec<u8>, Done)>) {
        let mut buf = Vec::new();
        let mut waiters = Vec::new();
        while let Ok(first) = rx.recv() {
            // Group commit: everything queued within COMMIT_WINDOW of the
            // first record goes in one write and one sync. The writer
            // sleeps rather than waits on the channel, so the records that
            // arrive meanwhile cost their senders no wake-up.
            std::thread::sleep(COMMIT_WINDOW);
            buf.clear();
            for (record, done) in std::iter::once(first).chain(rx.try_iter()) {
                buf.extend_from_slice(&record);
                waiters.push(done);
            }
            let result = self.append(&buf);
            if let Err(e) = &result {
                tracing::error!(error = %e, "binding log write failed; will rewrite it");
                self.broken = true;
            }
            for done in waiters.drain(..) {
                let r = match &result {
                    Ok(()) => Ok(()),
                    Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
                };
                done.complete(r);
            }
            if self.len > self.compact_min.max(COMPACT_FACTOR * self.snapshot_len) {
                if let Err(e) = self.compact() {
                    tracing::error!(error = %e, "binding log compaction failed");
                    self.broken = true;
                }
            }
        }
    }

    fn append(&mut self, buf: &[u8]) -> io::Result<()> {
        if self.broken {
            // The records in `buf` are already in the registrar's state, so
            // the snapshot holds them: nothing to append after it.
            return self.compact();
        }
        self.file.write_all(buf)?;
        self.file.sync_data()?;
        self.len += buf.len() as u64;
        Ok(())
    }

    fn compact(&mut self) -> io::Result<()> {
        let start = Instant::now();
        let len = write_snapshot(&self.dir, &self.registrar, now_unix())?;
        self.file = OpenOptions::new().append(true).open(self.dir.join(LOG))?;
        tracing::info!(
            from = self.len,
            to = len,
            took_ms = start.elapsed().as_millis() as u64,
            "binding log compacted"
        );
        self.len = len;
        self.snapshot_len = len;
        self.broken = false;
        Ok(())
    }
}
