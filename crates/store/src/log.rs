//! The Raft log and vote in RocksDB, with group commit.
//!
//! openraft hands `append` one entry per client write. Fsyncing each would
//! cap a member at one write per fsync, so appends go to one writer thread
//! instead: it takes every append queued meanwhile, writes them as one
//! RocksDB batch with one fsync, and only then reports them flushed
//! (openraft acknowledges nothing before that). Until written, entries are
//! served to readers from an in-memory `pending` map, so replication can
//! read what it has just appended. Truncate, purge and vote writes go
//! through the same thread, in order, and are waited for.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{Entry, LogId, OptionalSend, RaftLogReader, StorageIOError, Vote};
use rocksdb::{Direction, IteratorMode, WriteBatch, WriteOptions, DB};
use serde::de::DeserializeOwned;
use tokio::sync::oneshot;

use crate::{FsyncObserver, NodeId, StorageError, TypeConfig, CF_LOG, CF_META};

const KEY_VOTE: &[u8] = b"vote";
const KEY_COMMITTED: &[u8] = b"committed";
const KEY_LAST_PURGED: &[u8] = b"last_purged";
/// At most this many appends share one fsync (bounds a batch's size).
const MAX_GROUP: usize = 4096;

type Pending = Arc<RwLock<BTreeMap<u64, Entry<TypeConfig>>>>;
type CommittedSlot = Arc<Mutex<Option<Option<LogId<NodeId>>>>>;

enum Job {
    /// Encoded entries to write; flushed together with the appends queued
    /// with them.
    Append {
        puts: Vec<([u8; 8], Vec<u8>)>,
        ids: Vec<LogId<NodeId>>,
        callback: LogFlushed<TypeConfig>,
    },
    /// A write the caller waits for (truncate, purge, vote).
    Sync {
        batch: WriteBatch,
        done: oneshot::Sender<Result<(), String>>,
    },
}

/// The Raft log store. Cheap to clone; clones share the database and the
/// writer thread.
#[derive(Clone)]
pub struct LogStore {
    /// Joins the writer thread when the last clone goes, so no thread still
    /// holds the database when the process exits (RocksDB crashes then).
    thread: Arc<WriterThread>,
    db: Arc<DB>,
    /// Bytes appended since the last purge (to snapshot by size too).
    unpurged: Arc<AtomicU64>,
    committed: Arc<AtomicU64>,
    /// The latest committed log id not yet written (see `save_committed`).
    committed_id: CommittedSlot,
    pending: Pending,
}

struct WriterThread {
    tx: mpsc::Sender<Job>,
    handle: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Drop for WriterThread {
    fn drop(&mut self) {
        // Close the queue: the thread finishes what is queued, then exits.
        let (dead, _) = mpsc::channel();
        drop(std::mem::replace(&mut self.tx, dead));
        if let Some(h) = self.handle.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = h.join();
        }
    }
}

fn idx_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

fn sync_opts() -> WriteOptions {
    let mut w = WriteOptions::default();
    w.set_sync(true);
    w
}

/// The writer thread: drain the queue, one synced write per group.
fn writer_loop(
    db: Arc<DB>,
    rx: mpsc::Receiver<Job>,
    pending: Pending,
    committed: CommittedSlot,
    on_fsync: Option<FsyncObserver>,
) {
    let write = |mut batch: WriteBatch| {
        // Piggyback the latest committed log id on this write.
        let latest = committed.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let (Some(c), Some(cf)) = (latest, db.cf_handle(CF_META)) {
            if let Ok(v) = postcard::to_stdvec(&c) {
                batch.put_cf(cf, KEY_COMMITTED, v);
            }
        }
        let start = Instant::now();
        let r = db.write_opt(batch, &sync_opts());
        if let Some(f) = &on_fsync {
            f(start.elapsed());
        }
        r
    };
    let mut next: Option<Job> = None;
    loop {
        let job = match next.take() {
            Some(j) => j,
            None => match rx.recv() {
                Ok(j) => j,
                // Every LogStore is gone.
                Err(_) => return,
            },
        };
        match job {
            Job::Sync { batch, done } => {
                let _ = done.send(write(batch).map_err(|e| e.to_string()));
            }
            Job::Append {
                puts,
                ids,
                callback,
            } => {
                let Some(cf) = db.cf_handle(CF_LOG) else {
                    callback
                        .log_io_completed(Err(std::io::Error::other("column family log missing")));
                    continue;
                };
                let mut batch = WriteBatch::default();
                for (k, v) in puts {
                    batch.put_cf(cf, k, v);
                }
                let mut group = vec![(ids, callback)];
                // Take every append already queued; stop at a sync job,
                // which must run after them.
                while group.len() < MAX_GROUP {
                    match rx.try_recv() {
                        Ok(Job::Append {
                            puts,
                            ids,
                            callback,
                        }) => {
                            for (k, v) in puts {
                                batch.put_cf(cf, k, v);
                            }
                            group.push((ids, callback));
                        }
                        Ok(other) => {
                            next = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                let result = write(batch);
                if result.is_ok() {
                    let mut p = pending.write().unwrap_or_else(|e| e.into_inner());
                    for (ids, _) in &group {
                        for id in ids {
                            // A truncate and re-append may have replaced it.
                            if p.get(&id.index).is_some_and(|e| e.log_id == *id) {
                                p.remove(&id.index);
                            }
                        }
                    }
                }
                for (_, cb) in group {
                    cb.log_io_completed(
                        result
                            .as_ref()
                            .map(|_| ())
                            .map_err(|e| std::io::Error::other(e.to_string())),
                    );
                }
            }
        }
    }
}

impl LogStore {
    pub(crate) fn new(db: Arc<DB>, on_fsync: Option<FsyncObserver>) -> LogStore {
        let pending: Pending = Arc::default();
        let committed_id: CommittedSlot = Arc::default();
        let (tx, rx) = mpsc::channel();
        let (db2, p2, c2) = (db.clone(), pending.clone(), committed_id.clone());
        let handle = std::thread::Builder::new()
            .name("janus-log-writer".into())
            .spawn(move || writer_loop(db2, rx, p2, c2, on_fsync))
            .unwrap_or_else(|e| panic!("cannot start the log writer thread: {e}"));
        let thread = Arc::new(WriterThread {
            tx,
            handle: Mutex::new(Some(handle)),
        });
        LogStore {
            thread,
            db,
            unpurged: Arc::new(AtomicU64::new(0)),
            committed: Arc::new(AtomicU64::new(0)),
            committed_id,
            pending,
        }
    }

    /// Bytes of entries appended since the log was last purged.
    pub fn unpurged_bytes(&self) -> Arc<AtomicU64> {
        self.unpurged.clone()
    }

    /// The last committed log index openraft reported (for metrics).
    pub fn committed_index(&self) -> Arc<AtomicU64> {
        self.committed.clone()
    }

    fn cf(&self, name: &str) -> Result<&rocksdb::ColumnFamily, StorageError> {
        self.db.cf_handle(name).ok_or_else(|| {
            StorageIOError::read(&std::io::Error::other(format!(
                "column family {name} missing"
            )))
            .into()
        })
    }

    fn get_meta<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StorageError> {
        let cf = self.cf(CF_META)?;
        match self
            .db
            .get_cf(cf, key)
            .map_err(|e| StorageIOError::read(&e))?
        {
            None => Ok(None),
            Some(v) => postcard::from_bytes(&v)
                .map(Some)
                .map_err(|e| StorageIOError::read(&e).into()),
        }
    }

    /// Run a durable write on the writer thread, after everything queued.
    async fn write_synced(&self, batch: WriteBatch) -> Result<(), std::io::Error> {
        let (done, rx) = oneshot::channel();
        self.thread
            .tx
            .send(Job::Sync { batch, done })
            .map_err(|_| std::io::Error::other("log writer stopped"))?;
        match rx.await {
            Ok(r) => r.map_err(std::io::Error::other),
            Err(_) => Err(std::io::Error::other("log writer stopped")),
        }
    }

    fn pending(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<u64, Entry<TypeConfig>>> {
        self.pending.read().unwrap_or_else(|e| e.into_inner())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError> {
        let start = match range.start_bound() {
            Bound::Included(x) => *x,
            Bound::Excluded(x) => x.saturating_add(1),
            Bound::Unbounded => 0,
        };
        // Entries not yet written are in `pending`; read it first so an entry
        // written meanwhile is then found on disk.
        let pending: BTreeMap<u64, Entry<TypeConfig>> = self
            .pending()
            .range(start..)
            .take_while(|(i, _)| range.contains(*i))
            .map(|(i, e)| (*i, e.clone()))
            .collect();
        let cf = self.cf(CF_LOG)?;
        let mut out = Vec::new();
        for item in self
            .db
            .iterator_cf(cf, IteratorMode::From(&idx_key(start), Direction::Forward))
        {
            let (k, v) = item.map_err(|e| StorageIOError::read_logs(&e))?;
            let idx = u64::from_be_bytes(k.as_ref().try_into().map_err(|_| {
                StorageIOError::read_logs(&std::io::Error::other("malformed log key"))
            })?);
            if !range.contains(&idx) {
                break;
            }
            if let Some(e) = pending.get(&idx) {
                out.push(e.clone());
                continue;
            }
            let entry: Entry<TypeConfig> =
                postcard::from_bytes(&v).map_err(|e| StorageIOError::read_logs(&e))?;
            out.push(entry);
        }
        let next = out.last().map_or(start, |e| e.log_id.index + 1);
        out.extend(pending.range(next..).map(|(_, e)| e.clone()));
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged: Option<LogId<NodeId>> = self.get_meta(KEY_LAST_PURGED)?;
        let cf = self.cf(CF_LOG)?;
        let on_disk = match self.db.iterator_cf(cf, IteratorMode::End).next() {
            None => None,
            Some(item) => {
                let (_, v) = item.map_err(|e| StorageIOError::read_logs(&e))?;
                let entry: Entry<TypeConfig> =
                    postcard::from_bytes(&v).map_err(|e| StorageIOError::read_logs(&e))?;
                Some(entry.log_id)
            }
        };
        let in_memory = self.pending().values().next_back().map(|e| e.log_id);
        let last_log_id = in_memory.max(on_disk).or(last_purged);
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        let cf = self.cf(CF_META)?;
        let mut batch = WriteBatch::default();
        batch.put_cf(
            cf,
            KEY_VOTE,
            postcard::to_stdvec(vote).map_err(|e| StorageIOError::write_vote(&e))?,
        );
        self.write_synced(batch)
            .await
            .map_err(|e| StorageIOError::write_vote(&e).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        self.get_meta(KEY_VOTE)
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeId>>,
    ) -> Result<(), StorageError> {
        // openraft calls this on every commit, inline. A RocksDB write here
        // would queue behind the writer thread's fsync and serialize every
        // commit behind it, so the writer stores it with its next group
        // instead. Losing the latest value in a crash only means re-applying
        // from the snapshot up to what a new leader commits again.
        self.committed
            .store(committed.map_or(0, |c| c.index), Ordering::Relaxed);
        *self.committed_id.lock().unwrap_or_else(|e| e.into_inner()) = Some(committed);
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError> {
        if let Some(c) = *self.committed_id.lock().unwrap_or_else(|e| e.into_inner()) {
            return Ok(c);
        }
        Ok(self
            .get_meta::<Option<LogId<NodeId>>>(KEY_COMMITTED)?
            .flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut puts = Vec::new();
        let mut ids = Vec::new();
        {
            let mut p = self.pending.write().unwrap_or_else(|e| e.into_inner());
            for e in entries {
                let v = postcard::to_stdvec(&e).map_err(|err| StorageIOError::write_logs(&err))?;
                self.unpurged.fetch_add(v.len() as u64, Ordering::Relaxed);
                puts.push((idx_key(e.log_id.index), v));
                ids.push(e.log_id);
                p.insert(e.log_id.index, e);
            }
        }
        // Returns at once; `callback` reports the flush (group commit).
        self.thread
            .tx
            .send(Job::Append {
                puts,
                ids,
                callback,
            })
            .map_err(|_| {
                StorageIOError::write_logs(&std::io::Error::other("log writer stopped")).into()
            })
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError> {
        self.pending
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .split_off(&log_id.index);
        let cf = self.cf(CF_LOG)?;
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(cf, idx_key(log_id.index), idx_key(u64::MAX));
        batch.delete_cf(cf, idx_key(u64::MAX));
        self.write_synced(batch)
            .await
            .map_err(|e| StorageIOError::write_logs(&e).into())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError> {
        let meta = self.cf(CF_META)?;
        let cf = self.cf(CF_LOG)?;
        let mut batch = WriteBatch::default();
        let v = postcard::to_stdvec(&log_id).map_err(|e| StorageIOError::write(&e))?;
        batch.put_cf(meta, KEY_LAST_PURGED, v);
        batch.delete_range_cf(cf, idx_key(0), idx_key(log_id.index.saturating_add(1)));
        self.unpurged.store(0, Ordering::Relaxed);
        self.write_synced(batch)
            .await
            .map_err(|e| StorageIOError::write_logs(&e).into())
    }
}
