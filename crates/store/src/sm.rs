//! The state machine: `janus_core::State` in memory, persisted by snapshots.

use std::io::Cursor;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard};

use janus_core::{EventBatch, State};
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    BasicNode, Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, SnapshotMeta,
    StorageIOError, StoredMembership,
};
use rocksdb::{WriteOptions, DB};
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, watch};

use crate::{NodeId, OpenError, StorageError, TypeConfig, CF_SM};

const KEY_SNAPSHOT: &[u8] = b"snapshot";
/// Event batches buffered for slow subscribers before they see `Lagged`.
const EVENT_BUFFER: usize = 65_536;

/// How far this member has applied the log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Applied {
    /// The last applied Raft log index (0: none).
    pub index: u64,
    /// The revision clock after it.
    pub revision: i64,
}

/// What a snapshot holds: the whole state machine and its Raft position.
#[derive(Serialize, Deserialize)]
struct SnapshotBody {
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, BasicNode>,
    state: State,
}

#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, BasicNode>,
    data: Vec<u8>,
}

struct Inner {
    state: State,
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, BasicNode>,
}

struct Shared {
    db: Arc<DB>,
    inner: RwLock<Inner>,
    applied: watch::Sender<Applied>,
    events: broadcast::Sender<Arc<EventBatch>>,
    snapshot_seq: AtomicU64,
}

/// The state machine store. Cheap to clone; clones share one state.
#[derive(Clone)]
pub struct StateMachineStore {
    shared: Arc<Shared>,
}

/// A read view of the state machine, held under a read lock: keep it short.
pub struct StateView<'a>(RwLockReadGuard<'a, Inner>);

impl std::ops::Deref for StateView<'_> {
    type Target = State;
    fn deref(&self) -> &State {
        &self.0.state
    }
}

fn io_err(msg: impl Into<String>) -> std::io::Error {
    std::io::Error::other(msg.into())
}

impl StateMachineStore {
    pub(crate) fn load(db: Arc<DB>) -> Result<StateMachineStore, OpenError> {
        let cf = db
            .cf_handle(CF_SM)
            .ok_or_else(|| OpenError::Snapshot("column family sm missing".into()))?;
        let mut inner = Inner {
            state: State::new(),
            last_applied: None,
            membership: StoredMembership::default(),
        };
        if let Some(raw) = db.get_cf(cf, KEY_SNAPSHOT)? {
            let stored: StoredSnapshot =
                postcard::from_bytes(&raw).map_err(|e| OpenError::Snapshot(e.to_string()))?;
            let body: SnapshotBody = postcard::from_bytes(&stored.data)
                .map_err(|e| OpenError::Snapshot(e.to_string()))?;
            body.state.check_invariants().map_err(OpenError::Snapshot)?;
            inner = Inner {
                state: body.state,
                last_applied: body.last_applied,
                membership: body.membership,
            };
        }
        let applied = Applied {
            index: inner.last_applied.map_or(0, |l| l.index),
            revision: inner.state.revision(),
        };
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        Ok(StateMachineStore {
            shared: Arc::new(Shared {
                db,
                inner: RwLock::new(inner),
                applied: watch::channel(applied).0,
                events,
                snapshot_seq: AtomicU64::new(0),
            }),
        })
    }

    /// Read the applied state. Never blocks on I/O; applies wait meanwhile.
    pub fn state(&self) -> StateView<'_> {
        StateView(self.shared.inner.read().unwrap_or_else(|p| p.into_inner()))
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

    fn persist(&self, stored: &StoredSnapshot) -> Result<(), StorageError> {
        let cf = self
            .shared
            .db
            .cf_handle(CF_SM)
            .ok_or_else(|| StorageIOError::write(&io_err("cf sm missing")))?;
        let raw =
            postcard::to_stdvec(stored).map_err(|e| StorageIOError::write_snapshot(None, &e))?;
        let mut w = WriteOptions::default();
        w.set_sync(true);
        self.shared
            .db
            .put_cf_opt(cf, KEY_SNAPSHOT, raw, &w)
            .map_err(|e| StorageIOError::write_snapshot(None, &e))?;
        Ok(())
    }

    fn publish(&self, inner: &Inner) {
        let applied = Applied {
            index: inner.last_applied.map_or(0, |l| l.index),
            revision: inner.state.revision(),
        };
        self.shared.applied.send_replace(applied);
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let (meta, data) = {
            let inner = self.shared.inner.read().unwrap_or_else(|p| p.into_inner());
            let body = SnapshotBody {
                last_applied: inner.last_applied,
                membership: inner.membership.clone(),
                state: inner.state.clone(),
            };
            drop(inner);
            let data =
                postcard::to_stdvec(&body).map_err(|e| StorageIOError::write_snapshot(None, &e))?;
            let seq = self.shared.snapshot_seq.fetch_add(1, Ordering::Relaxed);
            let id = match body.last_applied {
                Some(l) => format!("{}-{}-{seq}", l.leader_id, l.index),
                None => format!("none-{seq}"),
            };
            let meta = SnapshotMeta {
                last_log_id: body.last_applied,
                last_membership: body.membership,
                snapshot_id: id,
            };
            (meta, data)
        };
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data,
        };
        self.persist(&stored)?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(stored.data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>), StorageError> {
        let inner = self.shared.inner.read().unwrap_or_else(|p| p.into_inner());
        Ok((inner.last_applied, inner.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Vec<janus_core::Applied>>, StorageError>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut out = Vec::new();
        let mut batches = Vec::new();
        {
            let mut inner = self.shared.inner.write().unwrap_or_else(|p| p.into_inner());
            for entry in entries {
                inner.last_applied = Some(entry.log_id);
                match entry.payload {
                    EntryPayload::Blank => out.push(Vec::new()),
                    EntryPayload::Normal(batch) => {
                        let mut results = Vec::with_capacity(batch.commands.len());
                        for c in &batch.commands {
                            let (applied, events) = inner.state.apply_command(batch.time_ms, c);
                            // Every command's batch goes out, empty ones too:
                            // subscribers learn they have seen all up to R.
                            batches.push(Arc::new(events));
                            results.push(applied);
                        }
                        out.push(results);
                    }
                    EntryPayload::Membership(m) => {
                        inner.membership = StoredMembership::new(Some(entry.log_id), m);
                        out.push(Vec::new());
                    }
                }
            }
            // Events go out before the lock is released: a reader that sees
            // the new state finds its events already queued (ZooKeeper's
            // "watch event before the data that reflects it").
            for b in batches {
                // No subscribers is fine.
                let _ = self.shared.events.send(b);
            }
            self.publish(&inner);
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let sig = Some(meta.signature());
        let body: SnapshotBody = postcard::from_bytes(&data)
            .map_err(|e| StorageIOError::read_snapshot(sig.clone(), &e))?;
        body.state
            .check_invariants()
            .map_err(|e| StorageIOError::read_snapshot(sig, &io_err(e)))?;
        self.persist(&StoredSnapshot {
            meta: meta.clone(),
            data,
        })?;
        let mut inner = self.shared.inner.write().unwrap_or_else(|p| p.into_inner());
        inner.state = body.state;
        inner.last_applied = meta.last_log_id;
        inner.membership = meta.last_membership.clone();
        self.publish(&inner);
        tracing::info!(snapshot = %meta.snapshot_id, revision = inner.state.revision(), "installed snapshot");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let cf = self
            .shared
            .db
            .cf_handle(CF_SM)
            .ok_or_else(|| StorageIOError::read(&io_err("column family sm missing")))?;
        let Some(raw) = self
            .shared
            .db
            .get_cf(cf, KEY_SNAPSHOT)
            .map_err(|e| StorageIOError::read_snapshot(None, &e))?
        else {
            return Ok(None);
        };
        let stored: StoredSnapshot =
            postcard::from_bytes(&raw).map_err(|e| StorageIOError::read_snapshot(None, &e))?;
        Ok(Some(Snapshot {
            meta: stored.meta,
            snapshot: Box::new(Cursor::new(stored.data)),
        }))
    }
}
