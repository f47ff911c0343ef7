//! The Raft log and vote in RocksDB.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{Entry, LogId, OptionalSend, RaftLogReader, StorageIOError, Vote};
use rocksdb::{Direction, IteratorMode, WriteBatch, WriteOptions, DB};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{FsyncObserver, NodeId, StorageError, TypeConfig, CF_LOG, CF_META};

const KEY_VOTE: &[u8] = b"vote";
const KEY_COMMITTED: &[u8] = b"committed";
const KEY_LAST_PURGED: &[u8] = b"last_purged";

/// The Raft log store. Cheap to clone; clones share the database.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<DB>,
    on_fsync: Option<FsyncObserver>,
    committed: Arc<AtomicU64>,
}

fn idx_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

fn sync_opts() -> WriteOptions {
    let mut w = WriteOptions::default();
    w.set_sync(true);
    w
}

impl LogStore {
    pub(crate) fn new(db: Arc<DB>, on_fsync: Option<FsyncObserver>) -> LogStore {
        LogStore { db, on_fsync, committed: Arc::new(AtomicU64::new(0)) }
    }

    /// The last committed log index openraft reported (for metrics).
    pub fn committed_index(&self) -> Arc<AtomicU64> {
        self.committed.clone()
    }

    fn cf(&self, name: &str) -> Result<&rocksdb::ColumnFamily, StorageError> {
        self.db
            .cf_handle(name)
            .ok_or_else(|| StorageIOError::read(&std::io::Error::other(format!("column family {name} missing"))).into())
    }

    fn get_meta<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StorageError> {
        let cf = self.cf(CF_META)?;
        match self.db.get_cf(cf, key).map_err(|e| StorageIOError::read(&e))? {
            None => Ok(None),
            Some(v) => postcard::from_bytes(&v).map(Some).map_err(|e| StorageIOError::read(&e).into()),
        }
    }

    fn put_meta<T: Serialize>(&self, key: &[u8], value: &T) -> Result<(), StorageError> {
        let cf = self.cf(CF_META)?;
        let v = postcard::to_stdvec(value).map_err(|e| StorageIOError::write(&e))?;
        self.db.put_cf_opt(cf, key, v, &sync_opts()).map_err(|e| StorageIOError::write(&e).into())
    }

    /// Write a batch durably, timing the fsync.
    fn write_synced(&self, batch: WriteBatch) -> Result<(), rocksdb::Error> {
        let start = Instant::now();
        let r = self.db.write_opt(batch, &sync_opts());
        if let Some(f) = &self.on_fsync {
            f(start.elapsed());
        }
        r
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
        let cf = self.cf(CF_LOG)?;
        let mut out = Vec::new();
        for item in self.db.iterator_cf(cf, IteratorMode::From(&idx_key(start), Direction::Forward)) {
            let (k, v) = item.map_err(|e| StorageIOError::read_logs(&e))?;
            let idx = u64::from_be_bytes(k.as_ref().try_into().map_err(|_| {
                StorageIOError::read_logs(&std::io::Error::other("malformed log key"))
            })?);
            if !range.contains(&idx) {
                break;
            }
            let entry: Entry<TypeConfig> = postcard::from_bytes(&v).map_err(|e| StorageIOError::read_logs(&e))?;
            out.push(entry);
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged: Option<LogId<NodeId>> = self.get_meta(KEY_LAST_PURGED)?;
        let cf = self.cf(CF_LOG)?;
        let last = match self.db.iterator_cf(cf, IteratorMode::End).next() {
            None => None,
            Some(item) => {
                let (_, v) = item.map_err(|e| StorageIOError::read_logs(&e))?;
                let entry: Entry<TypeConfig> = postcard::from_bytes(&v).map_err(|e| StorageIOError::read_logs(&e))?;
                Some(entry.log_id)
            }
        };
        let last_log_id = last.or(last_purged);
        Ok(LogState { last_purged_log_id: last_purged, last_log_id })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        self.put_meta(KEY_VOTE, vote).map_err(|e| StorageIOError::write_vote(&e).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        self.get_meta(KEY_VOTE)
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> Result<(), StorageError> {
        // Not fsynced: losing it only means re-applying from the snapshot
        // up to what the log proves committed on the next election.
        self.committed.store(committed.map_or(0, |c| c.index), Ordering::Relaxed);
        let cf = self.cf(CF_META)?;
        let v = postcard::to_stdvec(&committed).map_err(|e| StorageIOError::write(&e))?;
        self.db.put_cf(cf, KEY_COMMITTED, v).map_err(|e| StorageIOError::write(&e).into())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError> {
        Ok(self.get_meta::<Option<LogId<NodeId>>>(KEY_COMMITTED)?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let cf = self.cf(CF_LOG)?;
        let mut batch = WriteBatch::default();
        for e in entries {
            let v = postcard::to_stdvec(&e).map_err(|err| StorageIOError::write_logs(&err))?;
            batch.put_cf(cf, idx_key(e.log_id.index), v);
        }
        // One fsync for the whole batch, off the async runtime's threads.
        let this = self.clone();
        let res = tokio::task::spawn_blocking(move || this.write_synced(batch))
            .await
            .map_err(|e| StorageIOError::write_logs(&e))?;
        match res {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                let err = std::io::Error::other(e.to_string());
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(StorageIOError::write_logs(&err).into())
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError> {
        let cf = self.cf(CF_LOG)?;
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(cf, idx_key(log_id.index), idx_key(u64::MAX));
        batch.delete_cf(cf, idx_key(u64::MAX));
        self.write_synced(batch).map_err(|e| StorageIOError::write_logs(&e).into())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError> {
        let meta = self.cf(CF_META)?;
        let cf = self.cf(CF_LOG)?;
        let mut batch = WriteBatch::default();
        let v = postcard::to_stdvec(&log_id).map_err(|e| StorageIOError::write(&e))?;
        batch.put_cf(meta, KEY_LAST_PURGED, v);
        batch.delete_range_cf(cf, idx_key(0), idx_key(log_id.index.saturating_add(1)));
        self.write_synced(batch).map_err(|e| StorageIOError::write_logs(&e).into())
    }
}
