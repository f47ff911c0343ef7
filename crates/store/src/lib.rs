//! RocksDB storage for openraft and for Janus's state machine.
//!
//! Two RocksDB databases per member (the layout is in docs/storage.md):
//! - the log database in the data dir: `log` (Raft log entries by index)
//!   and `meta` (the vote, the committed and the last purged log id);
//! - the state database in `state/`: one column family per table of the
//!   replicated state (`janus_core::Table`) and `raft`, the applied log id
//!   and membership, written in the same atomic batch as the changes.
//!
//! Appends are written as one batch with one fsync per `append` call (openraft
//! hands over every entry that queued up meanwhile: group commit), and the
//! entries are acknowledged only after that fsync. The state is never held
//! in memory as a whole; a snapshot is a checkpoint of the state database,
//! and a restart opens it and re-applies only the log after it.

mod backup;
pub use backup::{inspect, restore, Backup, BackupError, BackupInfo};
mod db;
#[cfg(test)]
mod differential;
mod log;
mod sm;
mod snapshot;
pub use snapshot::SnapshotFile;
mod upgrade;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rocksdb::{ColumnFamilyDescriptor, Options, DB};
use serde::{Deserialize, Serialize};

pub use log::LogStore;
pub use sm::{zk_config_servers, Applied, StateMachineStore, StateView};

openraft::declare_raft_types!(
    /// Janus's openraft type configuration.
    pub TypeConfig:
        D = janus_core::ProposalBatch,
        R = Vec<janus_core::Applied>,
        NodeId = u64,
        Node = crate::Member,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = crate::snapshot::SnapshotFile,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type NodeId = u64;

/// One member as the Raft membership records it: the peer address Raft
/// dials, plus what both personalities report about the member (etcd's
/// MemberList, ZooKeeper's `/zookeeper/config`). A member added by
/// MemberAdd or reconfig has only the peer address (and, from reconfig,
/// its ZooKeeper client address) until it starts and publishes the rest,
/// as an etcd member does (`publishV3`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// `host:port` of the peer port.
    pub addr: String,
    /// etcd's member name; empty until the member has started.
    pub name: String,
    /// etcd client URLs (`http://host:port`); empty until started.
    pub client_urls: Vec<String>,
    /// etcd peer URLs as given to MemberAdd/MemberUpdate; when empty,
    /// `http://{addr}`.
    pub peer_urls: Vec<String>,
    /// ZooKeeper client address (`host:port`); empty if unknown.
    pub zk_client: String,
    /// The election port a ZooKeeper reconfig named (Janus has one peer
    /// port; kept so `/zookeeper/config` shows what was configured). 0:
    /// the peer port.
    pub zk_election_port: u16,
}

impl Member {
    /// A member known only by its peer address.
    pub fn new(addr: impl Into<String>) -> Member {
        Member {
            addr: addr.into(),
            ..Member::default()
        }
    }

    /// The peer URLs etcd reports.
    pub fn peer_urls(&self) -> Vec<String> {
        if self.peer_urls.is_empty() {
            vec![format!("http://{}", self.addr)]
        } else {
            self.peer_urls.clone()
        }
    }

    /// Started as etcd means it: the member has published its name.
    pub fn is_started(&self) -> bool {
        !self.name.is_empty()
    }
}

impl std::fmt::Display for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.addr)
    }
}
pub type StorageError = openraft::StorageError<NodeId>;

pub(crate) const CF_LOG: &str = "log";
pub(crate) const CF_META: &str = "meta";
/// Format 5 kept the whole state as one snapshot value here.
pub(crate) const CF_SM: &str = "sm";

/// The on-disk format of the log entries, snapshots and metadata. Bump it
/// whenever `janus_core`'s commands or tables, or this crate's records,
/// change shape: a data dir of a newer format is refused, not misread; an
/// older one is upgraded where an upgrade exists.
pub const FORMAT_VERSION: u32 = 6;
const KEY_FORMAT: &[u8] = b"format";

/// The format a data dir is in (`None`: a new, empty one).
fn read_format(db: &DB) -> Result<Option<u32>, OpenError> {
    let meta = db
        .cf_handle(CF_META)
        .ok_or_else(|| OpenError::Format("column family meta missing".into()))?;
    if let Some(v) = db.get_cf(meta, KEY_FORMAT)? {
        let found = <[u8; 4]>::try_from(v.as_slice())
            .map(u32::from_be_bytes)
            .unwrap_or(0);
        return Ok(Some(found));
    }
    let log = db
        .cf_handle(CF_LOG)
        .ok_or_else(|| OpenError::Format("column family log missing".into()))?;
    let empty = db
        .iterator_cf(log, rocksdb::IteratorMode::Start)
        .next()
        .is_none()
        && db.get_cf(meta, b"vote")?.is_none();
    if !empty {
        return Err(OpenError::Format(
            "data dir predates format versioning; start from an empty one".into(),
        ));
    }
    Ok(None)
}

fn write_format(db: &DB) -> Result<(), OpenError> {
    let meta = db
        .cf_handle(CF_META)
        .ok_or_else(|| OpenError::Format("column family meta missing".into()))?;
    let mut w = rocksdb::WriteOptions::default();
    w.set_sync(true);
    db.put_cf_opt(meta, KEY_FORMAT, FORMAT_VERSION.to_be_bytes(), &w)?;
    Ok(())
}

/// Errors opening the store.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("rocksdb: {0}")]
    Rocks(#[from] rocksdb::Error),
    #[error("stored snapshot is unreadable: {0}")]
    Snapshot(String),
    #[error("incompatible data dir: {0}")]
    Format(String),
}

/// Called with the duration of every log fsync (for the metrics histogram).
pub type FsyncObserver = Arc<dyn Fn(Duration) + Send + Sync>;

fn open_log_db(dir: &Path) -> Result<DB, rocksdb::Error> {
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    let cfs = [CF_LOG, CF_META, CF_SM].map(|n| ColumnFamilyDescriptor::new(n, Options::default()));
    DB::open_cf_descriptors(&opts, dir, cfs)
}

/// Create an empty log database in `dir`, stamped with the data format.
pub(crate) fn create_log_db(dir: &Path) -> Result<(), OpenError> {
    let db = open_log_db(dir)?;
    write_format(&db)
}

/// Open (or create) the store in `dir`; returns the log store and the state
/// machine. A data dir of the previous format is upgraded first.
pub fn open(
    dir: &Path,
    on_fsync: Option<FsyncObserver>,
) -> Result<(LogStore, StateMachineStore), OpenError> {
    let db = Arc::new(open_log_db(dir)?);
    match read_format(&db)? {
        Some(FORMAT_VERSION) => {}
        None => write_format(&db)?,
        Some(5) => {
            upgrade::from_format_5(&db, dir)?;
            write_format(&db)?;
        }
        Some(found) if found > FORMAT_VERSION => {
            return Err(OpenError::Format(format!(
                "data dir has format {found}, written by a newer Janus; this build reads format {FORMAT_VERSION} and cannot downgrade it"
            )))
        }
        Some(found) => {
            return Err(OpenError::Format(format!(
                "data dir has format {found}, this build reads format {FORMAT_VERSION} (and upgrades format 5)"
            )))
        }
    }
    let log = LogStore::new(db.clone(), on_fsync);
    let sm = StateMachineStore::load(dir)?;
    Ok((log, sm))
}

#[cfg(test)]
mod tests {
    use openraft::testing::{StoreBuilder, Suite};

    use super::*;

    struct Builder;

    impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, tempfile::TempDir> for Builder {
        async fn build(
            &self,
        ) -> Result<(tempfile::TempDir, LogStore, StateMachineStore), StorageError> {
            let dir = tempfile::tempdir().map_err(|e| openraft::StorageIOError::write(&e))?;
            let (log, sm) = open(dir.path(), None).map_err(|e| {
                openraft::StorageIOError::write(&std::io::Error::other(e.to_string()))
            })?;
            Ok((dir, log, sm))
        }
    }

    #[test]
    fn refuses_other_formats() {
        // The log writer thread lets go of the database just after its
        // store is dropped.
        let reopen = |dir: &Path| {
            for _ in 0..100 {
                match open(dir, None) {
                    Err(OpenError::Rocks(e)) if e.to_string().contains("lock") => {
                        std::thread::sleep(std::time::Duration::from_millis(20))
                    }
                    r => return r,
                }
            }
            open(dir, None)
        };
        let dir = tempfile::tempdir().unwrap();
        drop(reopen(dir.path()).unwrap());
        drop(reopen(dir.path()).expect("same format reopens"));
        std::thread::sleep(std::time::Duration::from_millis(200));
        {
            let opts = Options::default();
            let db = DB::open_cf(&opts, dir.path(), [CF_LOG, CF_META, CF_SM]).unwrap();
            let meta = db.cf_handle(CF_META).unwrap();
            db.put_cf(meta, KEY_FORMAT, (FORMAT_VERSION + 1).to_be_bytes())
                .unwrap();
        }
        assert!(matches!(reopen(dir.path()), Err(OpenError::Format(_))));
    }

    #[test]
    fn zookeeper_config_lines_follow_the_membership() {
        use std::collections::BTreeMap;
        let m = openraft::Membership::new(
            vec![[1, 2].into()],
            BTreeMap::from([
                (
                    1,
                    Member {
                        addr: "10.0.0.1:2380".into(),
                        zk_client: "10.0.0.1:2181".into(),
                        ..Member::default()
                    },
                ),
                (
                    2,
                    Member {
                        addr: "10.0.0.2:2888".into(),
                        zk_election_port: 3888,
                        ..Member::default()
                    },
                ),
                (3, Member::new("10.0.0.3:2380")),
            ]),
        );
        assert_eq!(
            zk_config_servers(&m),
            "server.1=10.0.0.1:2380:2380:participant;10.0.0.1:2181\n\
             server.2=10.0.0.2:2888:3888:participant\n\
             server.3=10.0.0.3:2380:2380:observer\n"
        );
    }

    /// openraft's own storage conformance suite.
    #[test]
    fn openraft_suite() -> Result<(), StorageError> {
        Suite::test_all(Builder)
    }
}
