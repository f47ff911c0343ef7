//! The state machine: `janus_core::State` in memory, persisted by snapshots.

use std::collections::BTreeSet;
use std::io::Cursor;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard};

use janus_core::{EventBatch, State};
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    Entry, EntryPayload, LogId, Membership, OptionalSend, RaftSnapshotBuilder, SnapshotMeta,
    StorageIOError, StoredMembership,
};
use rocksdb::{WriteOptions, DB};
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, watch};

use crate::{Member, NodeId, OpenError, StorageError, TypeConfig, CF_SM};

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
    membership: StoredMembership<NodeId, Member>,
    state: State,
    removed: BTreeSet<NodeId>,
    time_ms: i64,
}

#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, Member>,
    data: Vec<u8>,
}

struct Inner {
    state: State,
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, Member>,
    /// Members that were in an applied membership and are no longer: a
    /// removed member asks its peers about itself, and etcd refuses to
    /// reuse their ids.
    removed: BTreeSet<NodeId>,
    /// The leader's clock of the last applied batch: membership entries
    /// carry none, and `/zookeeper/config`'s mtime needs one.
    time_ms: i64,
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
            removed: BTreeSet::new(),
            time_ms: 0,
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
                removed: body.removed,
                time_ms: body.time_ms,
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
        // Not through the write-ahead log: the Raft log's appends share it,
        // and a synced put of a state of hundreds of MB held every append
        // (and every follower's AppendEntries answer) behind its write and
        // fsync. Flushing the column family instead writes and syncs the
        // snapshot as its own table file, beside the log's appends. A crash
        // before the flush ends keeps the previous snapshot, and the log
        // after it is only purged once this returns.
        let mut w = WriteOptions::default();
        w.disable_wal(true);
        self.shared
            .db
            .put_cf_opt(cf, KEY_SNAPSHOT, raw, &w)
            .map_err(|e| StorageIOError::write_snapshot(None, &e))?;
        self.shared
            .db
            .flush_cf(cf)
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
    inner: &mut Inner,
    log_id: LogId<NodeId>,
    m: Membership<NodeId, Member>,
) -> Option<EventBatch> {
    let first = inner.membership.log_id().is_none();
    let before: BTreeSet<NodeId> = inner
        .membership
        .membership()
        .nodes()
        .map(|(id, _)| *id)
        .collect();
    let after: BTreeSet<NodeId> = m.nodes().map(|(id, _)| *id).collect();
    inner.removed.extend(before.difference(&after).copied());
    inner.removed.retain(|id| !after.contains(id));
    let uniform = m.get_joint_config().len() == 1;
    let servers = zk_config_servers(&m);
    inner.membership = StoredMembership::new(Some(log_id), m);
    if !uniform || (!first && servers == inner.state.zk_config_servers()) {
        return None;
    }
    Some(inner.state.zk_set_config(inner.time_ms, &servers, !first))
}

impl StateMachineStore {
    /// The membership as last applied (committed), with its log id.
    pub fn membership(&self) -> StoredMembership<NodeId, Member> {
        self.state_inner().membership.clone()
    }

    /// Whether `id` was a member and has been removed.
    pub fn is_removed(&self, id: NodeId) -> bool {
        self.state_inner().removed.contains(&id)
    }

    /// The largest node id ever in an applied membership.
    pub fn max_node_id(&self) -> NodeId {
        let inner = self.state_inner();
        let current = inner
            .membership
            .membership()
            .nodes()
            .map(|(id, _)| *id)
            .max();
        let removed = inner.removed.iter().max().copied();
        current.max(removed).unwrap_or(0)
    }

    fn state_inner(&self) -> RwLockReadGuard<'_, Inner> {
        self.shared.inner.read().unwrap_or_else(|p| p.into_inner())
    }
}

impl StateMachineStore {
    /// Clone the state, serialize it and persist it: seconds of CPU and
    /// fsync for a large state, so it runs on a blocking thread (on a
    /// runtime worker it starved the peer RPCs of a two-core machine until
    /// they timed out).
    fn snapshot_now(&self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let t0 = std::time::Instant::now();
        let (meta, data, cloned) = {
            let inner = self.shared.inner.read().unwrap_or_else(|p| p.into_inner());
            let body = SnapshotBody {
                last_applied: inner.last_applied,
                membership: inner.membership.clone(),
                state: inner.state.clone(),
                removed: inner.removed.clone(),
                time_ms: inner.time_ms,
            };
            drop(inner);
            let cloned = t0.elapsed();
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
            (meta, data, cloned)
        };
        let encoded = t0.elapsed();
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data,
        };
        self.persist(&stored)?;
        // Seconds of work for a large state: worth seeing in the log when
        // latency spikes.
        tracing::info!(
            snapshot = %meta.snapshot_id,
            bytes = stored.data.len(),
            clone_ms = cloned.as_millis() as u64,
            encode_ms = (encoded - cloned).as_millis() as u64,
            persist_ms = (t0.elapsed() - encoded).as_millis() as u64,
            "built snapshot"
        );
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(stored.data)),
        })
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.snapshot_now())
            .await
            .map_err(|e| StorageIOError::write_snapshot(None, &io_err(&e.to_string())))?
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, Member>), StorageError> {
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
                        inner.time_ms = batch.time_ms;
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
                        if let Some(b) = apply_membership(&mut inner, entry.log_id, m) {
                            batches.push(Arc::new(b));
                        }
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
        meta: &SnapshotMeta<NodeId, Member>,
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
        inner.removed = body.removed;
        inner.time_ms = body.time_ms;
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
