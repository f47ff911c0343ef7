//! RocksDB storage for openraft and for Janus's state machine.
//!
//! One RocksDB database per member, with three column families:
//! - `log`: Raft log entries by index (big-endian u64 keys);
//! - `meta`: the vote, the committed log id and the last purged log id;
//! - `sm`: the latest state-machine snapshot (metadata and data).
//!
//! Appends are written as one batch with one fsync per `append` call (openraft
//! hands over every entry that queued up meanwhile: group commit), and the
//! entries are acknowledged only after that fsync. The state machine lives
//! in memory and is persisted by snapshots; on restart the latest snapshot is
//! loaded and only the log after it is re-applied.

mod log;
mod sm;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rocksdb::{ColumnFamilyDescriptor, Options, DB};

pub use log::LogStore;
pub use sm::{Applied, StateMachineStore, StateView};

openraft::declare_raft_types!(
    /// Janus's openraft type configuration.
    pub TypeConfig:
        D = janus_core::ProposalBatch,
        R = Vec<janus_core::Applied>,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = std::io::Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type NodeId = u64;
pub type StorageError = openraft::StorageError<NodeId>;

pub(crate) const CF_LOG: &str = "log";
pub(crate) const CF_META: &str = "meta";
pub(crate) const CF_SM: &str = "sm";

/// Errors opening the store.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("rocksdb: {0}")]
    Rocks(#[from] rocksdb::Error),
    #[error("stored snapshot is unreadable: {0}")]
    Snapshot(String),
}

/// Called with the duration of every log fsync (for the metrics histogram).
pub type FsyncObserver = Arc<dyn Fn(Duration) + Send + Sync>;

/// Open (or create) the store in `dir`; returns the log store and the state
/// machine, which share the database.
pub fn open(dir: &Path, on_fsync: Option<FsyncObserver>) -> Result<(LogStore, StateMachineStore), OpenError> {
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    let cfs = [CF_LOG, CF_META, CF_SM].map(|n| ColumnFamilyDescriptor::new(n, Options::default()));
    let db = Arc::new(DB::open_cf_descriptors(&opts, dir, cfs)?);
    let log = LogStore::new(db.clone(), on_fsync);
    let sm = StateMachineStore::load(db)?;
    Ok((log, sm))
}

#[cfg(test)]
mod tests {
    use openraft::testing::{StoreBuilder, Suite};

    use super::*;

    struct Builder;

    impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, tempfile::TempDir> for Builder {
        async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachineStore), StorageError> {
            let dir = tempfile::tempdir().map_err(|e| openraft::StorageIOError::write(&e))?;
            let (log, sm) = open(dir.path(), None)
                .map_err(|e| openraft::StorageIOError::write(&std::io::Error::other(e.to_string())))?;
            Ok((dir, log, sm))
        }
    }

    /// openraft's own storage conformance suite.
    #[test]
    fn openraft_suite() -> Result<(), StorageError> {
        Suite::test_all(Builder)
    }
}
