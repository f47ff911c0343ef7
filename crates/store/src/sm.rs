//! The state machine: `janus_core::State` over the state database.
//!
//! Applying a batch of log entries computes every command against the
//! state (its reads go to RocksDB, through the changes made so far), then
//! writes all changes, the applied log id and the membership as one atomic
//! RocksDB write. Readers see the state as of the last such write. A
//! snapshot is a RocksDB checkpoint (hard links to the table files).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use janus_core::{EventBatch, State};
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    Entry, EntryPayload, LogId, Membership, OptionalSend, RaftSnapshotBuilder, SnapshotMeta,
    StorageIOError, StoredMembership,
};
use rocksdb::{WriteBatch, WriteOptions};
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, watch};

use crate::backup::{Backup, BackupError};
use crate::db::{SharedDb, StateDb, CF_RAFT};
use crate::snapshot::{self, SnapshotDir, SnapshotFile};
use crate::{Member, NodeId, OpenError, StorageError, TypeConfig};

/// Event batches buffered for slow subscribers before they see `Lagged`.
const EVENT_BUFFER: usize = 65_536;
pub(crate) const KEY_RAFT: &[u8] = b"applied";

/// How far this member has applied the log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Applied {
    /// The last applied Raft log index (0: none).
    pub index: u64,
    /// The revision clock after it.
    pub revision: i64,
}

/// The Raft position of the state, stored with it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct RaftPosition {
    pub last_applied: Option<LogId<NodeId>>,
    pub membership: StoredMembership<NodeId, Member>,
    /// Members that were in an applied membership and are no longer: a
    /// removed member asks its peers about itself, and etcd refuses to
    /// reuse their ids.
    pub removed: BTreeSet<NodeId>,
    /// The leader's clock of the last applied batch: membership entries
    /// carry none, and `/zookeeper/config`'s mtime needs one.
    pub time_ms: i64,
}

/// What readers see: the state as of the last write, and its position.
struct Published {
    state: State,
    pos: RaftPosition,
}

struct Shared {
    /// The data dir (the state database is in `state/`, snapshots in
    /// `snapshots/`).
    dir: PathBuf,
    /// None only while a received snapshot replaces the database.
    db: RwLock<Option<SharedDb>>,
    /// The state that applies commands (its changes pending until the
    /// batch is written).
    working: Mutex<State>,
    published: RwLock<Published>,
    applied: watch::Sender<Applied>,
    events: broadcast::Sender<Arc<EventBatch>>,
    snapshot_seq: AtomicU64,
    /// Serializes snapshot builds and installs.
    snapshots: Mutex<()>,
}

/// The state machine store. Cheap to clone; clones share one state.
#[derive(Clone)]
pub struct StateMachineStore {
    shared: Arc<Shared>,
}

/// A read view of the state machine, held under a read lock: keep it short.
pub struct StateView<'a>(RwLockReadGuard<'a, Published>);

impl std::ops::Deref for StateView<'_> {
    type Target = State;
    fn deref(&self) -> &State {
        &self.0.state
    }
}

fn io_err(msg: impl Into<String>) -> std::io::Error {
    std::io::Error::other(msg.into())
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub(crate) fn state_dir(dir: &Path) -> PathBuf {
    dir.join("state")
}

/// Read the Raft position stored in a state database.
pub(crate) fn read_position(db: &StateDb) -> Result<RaftPosition, String> {
    let cf = db.cf(CF_RAFT).ok_or("column family raft missing")?;
    match db.db.get_cf(cf, KEY_RAFT).map_err(|e| e.to_string())? {
        Some(raw) => postcard::from_bytes(&raw).map_err(|e| e.to_string()),
        None => Ok(RaftPosition::default()),
    }
}

/// Load the state of `db`; a new database gets the initial state written.
fn load_state(db: &SharedDb) -> Result<(State, RaftPosition), OpenError> {
    let mut state = State::open(db.clone()).map_err(|e| OpenError::Snapshot(e.to_string()))?;
    let pos = read_position(db).map_err(OpenError::Snapshot)?;
    let changes = state.take_changes();
    if !changes.is_empty() {
        let mut batch = WriteBatch::default();
        put_changes(db, &mut batch, changes).map_err(OpenError::Snapshot)?;
        let mut w = WriteOptions::default();
        w.set_sync(true);
        db.db.write_opt(batch, &w)?;
    }
    Ok((state, pos))
}

pub(crate) fn put_changes(
    db: &StateDb,
    batch: &mut WriteBatch,
    changes: impl IntoIterator<Item = janus_core::Change>,
) -> Result<(), String> {
    for (t, k, v) in changes {
        let cf = db
            .cf(t.name())
            .ok_or_else(|| format!("column family {} missing", t.name()))?;
        match v {
            Some(v) => batch.put_cf(cf, k, v),
            None => batch.delete_cf(cf, k),
        }
    }
    Ok(())
}

impl StateMachineStore {
    pub(crate) fn load(dir: &Path) -> Result<StateMachineStore, OpenError> {
        snapshot::recover_swap(dir)?;
        // A backup's checkpoint lives only while its files are opened.
        let _ = std::fs::remove_dir_all(crate::backup::backups_dir(dir));
        let db: SharedDb = Arc::new(StateDb::open(&state_dir(dir))?);
        let (state, pos) = load_state(&db)?;
        let applied = Applied {
            index: pos.last_applied.map_or(0, |l| l.index),
            revision: state.revision(),
        };
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let published = Published {
            state: state.reader(),
            pos,
        };
        Ok(StateMachineStore {
            shared: Arc::new(Shared {
                dir: dir.to_path_buf(),
                db: RwLock::new(Some(db)),
                working: Mutex::new(state),
                published: RwLock::new(published),
                applied: watch::channel(applied).0,
                events,
                snapshot_seq: AtomicU64::new(0),
                snapshots: Mutex::new(()),
            }),
        })
    }

    /// Read the applied state. Reads go to RocksDB; applies wait for the
    /// view to be dropped before publishing the next batch.
    pub fn state(&self) -> StateView<'_> {
        StateView(self.published())
    }

    fn published(&self) -> RwLockReadGuard<'_, Published> {
        self.shared
            .published
            .read()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// The applied position, updated after every applied batch.
    pub fn applied(&self) -> watch::Receiver<Applied> {
        self.shared.applied.subscribe()
    }

    /// Change events of every applied command, in order. A receiver that
    /// falls `EVENT_BUFFER` batches behind gets `Lagged` and must resync
    /// from the state (etcd watchers from the MVCC history).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<EventBatch>> {
        self.shared.events.subscribe()
    }

    fn db(&self) -> Result<SharedDb, StorageError> {
        self.shared
            .db
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| {
                StorageIOError::read(&io_err("the state database is being replaced")).into()
            })
    }

    /// A backup of the applied state as of now (read it out, then append
    /// its SHA-256). Applies go on meanwhile: the backup is a checkpoint.
    pub fn backup(&self) -> Result<Backup, BackupError> {
        let _one = lock(&self.shared.snapshots);
        let db = self
            .db()
            .map_err(|e| BackupError::Io(format!("the state database: {e}")))?;
        let seq = self.shared.snapshot_seq.fetch_add(1, Ordering::Relaxed);
        crate::backup::take(&db, &self.shared.dir, seq)
    }

    /// The membership as last applied (committed), with its log id.
    pub fn membership(&self) -> StoredMembership<NodeId, Member> {
        self.published().pos.membership.clone()
    }

    /// Whether `id` was a member and has been removed.
    pub fn is_removed(&self, id: NodeId) -> bool {
        self.published().pos.removed.contains(&id)
    }

    /// The largest node id ever in an applied membership.
    pub fn max_node_id(&self) -> NodeId {
        let p = self.published();
        let current = p
            .pos
            .membership
            .membership()
            .nodes()
            .map(|(id, _)| *id)
            .max();
        let removed = p.pos.removed.iter().max().copied();
        current.max(removed).unwrap_or(0)
    }

    /// Write the working state's changes with `pos`, then publish them
    /// with their events. Events go out before readers can see the state:
    /// a reader that sees the new state finds its events already queued
    /// (ZooKeeper's "watch event before the data that reflects it").
    fn commit(
        &self,
        working: &mut State,
        pos: RaftPosition,
        batches: Vec<Arc<EventBatch>>,
    ) -> Result<(), StorageError> {
        let db = self.db()?;
        let mut batch = WriteBatch::default();
        put_changes(&db, &mut batch, working.take_changes())
            .map_err(|e| StorageIOError::write(&io_err(e)))?;
        let cf = db
            .cf(CF_RAFT)
            .ok_or_else(|| StorageIOError::write(&io_err("column family raft missing")))?;
        let raw = postcard::to_stdvec(&pos).map_err(|e| StorageIOError::write(&e))?;
        batch.put_cf(cf, KEY_RAFT, raw);
        // Through RocksDB's write-ahead log, not synced: the Raft log is
        // the durable record, and after a crash the entries after the
        // stored applied index are applied again. (Without the write-ahead
        // log, tried, flushes stalled writes for 200+ ms after a bulk load.)
        let w = WriteOptions::default();
        let mut published = self
            .shared
            .published
            .write()
            .unwrap_or_else(|p| p.into_inner());
        db.db
            .write_opt(batch, &w)
            .map_err(|e| StorageIOError::write(&e))?;
        for b in batches {
            // No subscribers is fine.
            let _ = self.shared.events.send(b);
        }
        published.state = working.reader();
        published.pos = pos;
        let applied = Applied {
            index: published.pos.last_applied.map_or(0, |l| l.index),
            revision: published.state.revision(),
        };
        self.shared.applied.send_replace(applied);
        Ok(())
    }
}

/// The `server.N=...` lines of ZooKeeper's config for a membership: voters
/// are participants, learners observers. Janus has one peer port, shown as
/// both the quorum and the election port unless a reconfig named another
/// election port; the client address follows the `;`.
pub fn zk_config_servers(m: &Membership<NodeId, Member>) -> String {
    let voters: BTreeSet<NodeId> = m.voter_ids().collect();
    let mut out = String::new();
    for (id, node) in m.nodes() {
        let (host, port) = match node.addr.rsplit_once(':') {
            Some((h, p)) => (h, p.to_string()),
            None => (node.addr.as_str(), String::new()),
        };
        let election = if node.zk_election_port != 0 {
            node.zk_election_port.to_string()
        } else {
            port.clone()
        };
        let role = if voters.contains(id) {
            "participant"
        } else {
            "observer"
        };
        out.push_str(&format!("server.{id}={host}:{port}:{election}:{role}"));
        if !node.zk_client.is_empty() {
            out.push(';');
            out.push_str(&node.zk_client);
        }
        out.push('\n');
    }
    out
}

/// Apply a membership entry: record it, note members that left, and keep
/// `/zookeeper/config` true once the change is final (a joint config is
/// only a step on the way).
fn apply_membership(
    pos: &mut RaftPosition,
    state: &mut State,
    log_id: LogId<NodeId>,
    m: Membership<NodeId, Member>,
) -> Option<EventBatch> {
    let first = pos.membership.log_id().is_none();
    let before: BTreeSet<NodeId> = pos
        .membership
        .membership()
        .nodes()
        .map(|(id, _)| *id)
        .collect();
    let after: BTreeSet<NodeId> = m.nodes().map(|(id, _)| *id).collect();
    pos.removed.extend(before.difference(&after).copied());
    pos.removed.retain(|id| !after.contains(id));
    let uniform = m.get_joint_config().len() == 1;
    let servers = zk_config_servers(&m);
    pos.membership = StoredMembership::new(Some(log_id), m);
    if !uniform || (!first && servers == state.zk_config_servers()) {
        return None;
    }
    Some(state.zk_set_config(pos.time_ms, &servers, !first))
}

impl StateMachineStore {
    /// Take a checkpoint of the state database and make it the current
    /// snapshot. No lock is held over apply: the checkpoint records the
    /// log position it holds.
    fn snapshot_now(&self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let _one = lock(&self.shared.snapshots);
        let t0 = Instant::now();
        let db = self.db()?;
        let seq = self.shared.snapshot_seq.fetch_add(1, Ordering::Relaxed);
        let dir = SnapshotDir::new(&self.shared.dir);
        let (meta, bytes) = dir
            .checkpoint(&db, seq)
            .map_err(|e| StorageIOError::write_snapshot(None, &io_err(e)))?;
        drop(db);
        tracing::info!(
            snapshot = %meta.snapshot_id,
            bytes,
            ms = t0.elapsed().as_millis() as u64,
            "took checkpoint"
        );
        let data = dir
            .open_data(&meta)
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &io_err(e)))?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(data),
        })
    }

    /// Replace the state with a received checkpoint.
    fn install_now(
        &self,
        meta: &SnapshotMeta<NodeId, Member>,
        data: std::fs::File,
    ) -> Result<(), StorageError> {
        let _one = lock(&self.shared.snapshots);
        let sig = Some(meta.signature());
        let werr = |e: String| StorageIOError::write_snapshot(sig.clone(), &io_err(e));
        let dir = SnapshotDir::new(&self.shared.dir);
        let ckpt = dir.receive(meta, data).map_err(werr)?;
        let mut working = lock(&self.shared.working);
        // Readers wait for the install: they never see a state between.
        let mut published = self
            .shared
            .published
            .write()
            .unwrap_or_else(|p| p.into_inner());
        // Let go of the old database (both states hold it) and close it.
        *working = State::new();
        published.state = State::new();
        let old = self
            .shared
            .db
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(old) = old {
            wait_last_ref(old).map_err(werr)?;
        }
        snapshot::swap_in(&self.shared.dir, &ckpt).map_err(werr)?;
        let db: SharedDb =
            Arc::new(StateDb::open(&state_dir(&self.shared.dir)).map_err(|e| werr(e.to_string()))?);
        let (state, pos) = load_state(&db).map_err(|e| werr(e.to_string()))?;
        *self.shared.db.write().unwrap_or_else(|p| p.into_inner()) = Some(db);
        published.state = state.reader();
        published.pos = pos.clone();
        *working = state;
        let applied = Applied {
            index: pos.last_applied.map_or(0, |l| l.index),
            revision: published.state.revision(),
        };
        self.shared.applied.send_replace(applied);
        tracing::info!(
            snapshot = %meta.snapshot_id,
            revision = applied.revision,
            index = applied.index,
            "installed snapshot"
        );
        Ok(())
    }
}

/// Wait until `db` is the last handle on its database, then close it.
fn wait_last_ref(mut db: SharedDb) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match Arc::try_unwrap(db) {
            Ok(d) => {
                drop(d);
                return Ok(());
            }
            Err(d) => {
                if Instant::now() > deadline {
                    return Err("the state database is still in use".into());
                }
                db = d;
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.snapshot_now())
            .await
            .map_err(|e| StorageIOError::write_snapshot(None, &io_err(e.to_string())))?
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, Member>), StorageError> {
        let p = self.published();
        Ok((p.pos.last_applied, p.pos.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Vec<janus_core::Applied>>, StorageError>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut out = Vec::new();
        let mut batches = Vec::new();
        let mut pos = self.published().pos.clone();
        let mut working = lock(&self.shared.working);
        for entry in entries {
            pos.last_applied = Some(entry.log_id);
            match entry.payload {
                EntryPayload::Blank => out.push(Vec::new()),
                EntryPayload::Normal(batch) => {
                    pos.time_ms = batch.time_ms;
                    let mut results = Vec::with_capacity(batch.commands.len());
                    for c in &batch.commands {
                        let (applied, events) = working.apply_command(batch.time_ms, c);
                        // Every command's batch goes out, empty ones too:
                        // subscribers learn they have seen all up to R.
                        batches.push(Arc::new(events));
                        results.push(applied);
                    }
                    out.push(results);
                }
                EntryPayload::Membership(m) => {
                    if let Some(b) = apply_membership(&mut pos, &mut working, entry.log_id, m) {
                        batches.push(Arc::new(b));
                    }
                    out.push(Vec::new());
                }
            }
        }
        self.commit(&mut working, pos, batches)?;
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<SnapshotFile>, StorageError> {
        let dir = SnapshotDir::new(&self.shared.dir);
        let seq = self.shared.snapshot_seq.fetch_add(1, Ordering::Relaxed);
        let f = dir
            .incoming(seq)
            .map_err(|e| StorageIOError::write_snapshot(None, &io_err(e)))?;
        Ok(Box::new(SnapshotFile::receiving(f)))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, Member>,
        snapshot: Box<SnapshotFile>,
    ) -> Result<(), StorageError> {
        let file = snapshot.into_std().await;
        let this = self.clone();
        let meta = meta.clone();
        tokio::task::spawn_blocking(move || this.install_now(&meta, file))
            .await
            .map_err(|e| StorageIOError::write_snapshot(None, &io_err(e.to_string())))?
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let _one = lock(&this.shared.snapshots);
            let dir = SnapshotDir::new(&this.shared.dir);
            let Some(meta) = dir
                .current()
                .map_err(|e| StorageIOError::read_snapshot(None, &io_err(e)))?
            else {
                return Ok(None);
            };
            let data = dir
                .open_data(&meta)
                .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &io_err(e)))?;
            Ok(Some(Snapshot {
                meta,
                snapshot: Box::new(data),
            }))
        })
        .await
        .map_err(|e| StorageIOError::read_snapshot(None, &io_err(e.to_string())))?
    }
}
