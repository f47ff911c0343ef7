//! Upgrading a data dir of format 5 (the state in memory, saved as one
//! snapshot value in the log database's `sm` column family) to the state
//! database of format 6.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use janus_core::legacy::State5;
use janus_core::State;
use openraft::{LogId, SnapshotMeta, StoredMembership};
use rocksdb::{WriteBatch, WriteOptions, DB};
use serde::{Deserialize, Serialize};

use crate::db::{StateDb, CF_RAFT};
use crate::sm::{state_dir, RaftPosition};
use crate::snapshot::SnapshotDir;
use crate::{Member, NodeId, OpenError, CF_SM};

const KEY_SNAPSHOT: &[u8] = b"snapshot";
/// Rows written per batch while importing.
const BATCH_ROWS: usize = 50_000;

#[derive(Deserialize)]
struct SnapshotBody5 {
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, Member>,
    state: State5,
    removed: BTreeSet<NodeId>,
    time_ms: i64,
}

#[derive(Serialize, Deserialize)]
struct StoredSnapshot5 {
    meta: SnapshotMeta<NodeId, Member>,
    data: Vec<u8>,
}

fn err(e: impl std::fmt::Display) -> OpenError {
    OpenError::Snapshot(format!("upgrading from format 5: {e}"))
}

/// Move a format-5 state into a new state database in `dir/state`.
pub(crate) fn from_format_5(log_db: &DB, dir: &Path) -> Result<(), OpenError> {
    tracing::info!(dir = %dir.display(), "upgrading data dir from format 5 to format 6");
    let sd = state_dir(dir);
    if sd.exists() {
        // What an interrupted upgrade left.
        std::fs::remove_dir_all(&sd).map_err(err)?;
    }
    let cf_sm = log_db
        .cf_handle(CF_SM)
        .ok_or_else(|| err("column family sm missing"))?;
    let Some(raw) = log_db.get_cf(cf_sm, KEY_SNAPSHOT)? else {
        // No snapshot yet: the state is rebuilt from the log.
        tracing::info!("format 5 data dir had no snapshot; the log is applied from its start");
        return Ok(());
    };
    let stored: StoredSnapshot5 = postcard::from_bytes(&raw).map_err(err)?;
    let body: SnapshotBody5 = postcard::from_bytes(&stored.data).map_err(err)?;
    drop(raw);
    let db = Arc::new(StateDb::open(&sd)?);
    let mut state = State::open(db.clone()).map_err(err)?;
    state.import_format_5(body.state).map_err(err)?;
    let changes = state.take_changes();
    let total = changes.len();
    let mut w = WriteOptions::default();
    w.disable_wal(true);
    for chunk in changes.chunks(BATCH_ROWS) {
        let mut batch = WriteBatch::default();
        for (t, k, v) in chunk {
            let cf = db
                .cf(t.name())
                .ok_or_else(|| err("column family missing"))?;
            match v {
                Some(v) => batch.put_cf(cf, k, v),
                None => batch.delete_cf(cf, k),
            }
        }
        db.db.write_opt(batch, &w)?;
    }
    let pos = RaftPosition {
        last_applied: body.last_applied,
        membership: body.membership,
        removed: body.removed,
        time_ms: body.time_ms,
    };
    let cf = db
        .cf(CF_RAFT)
        .ok_or_else(|| err("column family raft missing"))?;
    db.db
        .put_cf_opt(cf, b"applied", postcard::to_stdvec(&pos).map_err(err)?, &w)?;
    db.db.flush()?;
    // The log before the old snapshot is purged: lagging members get this
    // checkpoint instead.
    SnapshotDir::new(dir).checkpoint(&db, 0).map_err(err)?;
    drop(state);
    drop(db);
    let mut sync = WriteOptions::default();
    sync.set_sync(true);
    log_db.delete_cf_opt(cf_sm, KEY_SNAPSHOT, &sync)?;
    tracing::info!(rows = total, "upgraded data dir to format 6");
    Ok(())
}
