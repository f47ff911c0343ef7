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
use crate::sm::{put_changes, state_dir, RaftPosition};
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
        put_changes(&db, &mut batch, chunk.iter().cloned()).map_err(err)?;
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

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use janus_core::{Acl, AuthState, RangeRequest, Session, Stat};
    use openraft::{CommittedLeaderId, LogId, Membership, SnapshotMeta, StoredMembership};
    use rocksdb::{ColumnFamilyDescriptor, Options, DB};
    use serde::Serialize;

    use crate::{Member, CF_LOG, CF_META, CF_SM};

    // Format 5's records, written as format 5 wrote them.
    #[derive(Serialize)]
    struct ZNode5 {
        data: Option<Vec<u8>>,
        acl: Vec<Acl>,
        stat: Stat,
        children: BTreeSet<String>,
    }
    #[derive(Serialize)]
    enum Rev5 {
        Put {
            create_revision: i64,
            mod_revision: i64,
            version: i64,
            value: Vec<u8>,
            lease: i64,
        },
        Del {
            mod_revision: i64,
        },
    }
    #[derive(Serialize)]
    struct Lease5 {
        id: i64,
        ttl_ms: i64,
        session: Option<Session>,
        keys: BTreeSet<Vec<u8>>,
        ephemerals: BTreeSet<String>,
    }
    #[derive(Serialize)]
    struct State5 {
        revision: i64,
        compacted: i64,
        tree: BTreeMap<String, ZNode5>,
        kv: BTreeMap<Vec<u8>, Vec<Rev5>>,
        leases: BTreeMap<i64, Lease5>,
        auth: AuthState,
        kv_bytes: u64,
        alarms: BTreeSet<(u64, i32)>,
    }
    #[derive(Serialize)]
    struct Body5 {
        last_applied: Option<LogId<u64>>,
        membership: StoredMembership<u64, Member>,
        state: State5,
        removed: BTreeSet<u64>,
        time_ms: i64,
    }

    fn node(data: &[u8], stat: Stat, children: &[&str]) -> ZNode5 {
        ZNode5 {
            data: Some(data.to_vec()),
            acl: Acl::open_unsafe(),
            stat: Stat {
                num_children: children.len() as i32,
                data_length: data.len() as i32,
                ..stat
            },
            children: children.iter().map(|c| c.to_string()).collect(),
        }
    }

    #[test]
    fn a_format_5_data_dir_is_upgraded_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let session = 0x0100_0000_0000_0007;
        let mut tree = BTreeMap::new();
        tree.insert(
            "/".to_string(),
            node(b"", Stat::default(), &["a", "zookeeper"]),
        );
        tree.insert(
            "/zookeeper".into(),
            node(b"", Stat::default(), &["config", "quota"]),
        );
        tree.insert("/zookeeper/config".into(), node(b"", Stat::default(), &[]));
        tree.insert("/zookeeper/quota".into(), node(b"", Stat::default(), &[]));
        let made = Stat {
            czxid: 2,
            mzxid: 2,
            pzxid: 3,
            cversion: 1,
            ..Stat::default()
        };
        tree.insert("/a".into(), node(b"x", made, &["e"]));
        let eph = Stat {
            czxid: 3,
            mzxid: 3,
            pzxid: 3,
            ephemeral_owner: session,
            ..Stat::default()
        };
        tree.insert("/a/e".into(), node(b"", eph, &[]));
        if let Some(root) = tree.get_mut("/") {
            root.stat.cversion = 1;
            root.stat.pzxid = 2;
        }
        let put = |rev: i64, version: i64, v: &[u8]| Rev5::Put {
            create_revision: 4,
            mod_revision: rev,
            version,
            value: v.to_vec(),
            lease: 0,
        };
        let kv = BTreeMap::from([
            (b"k".to_vec(), vec![put(4, 1, b"one"), put(5, 2, b"two")]),
            (
                b"gone".to_vec(),
                vec![put(4, 1, b"g"), Rev5::Del { mod_revision: 6 }],
            ),
        ]);
        let kv_bytes = (1 + 3 + 1 + 3 + 4 + 1 + 4) as u64;
        let leases = BTreeMap::from([(
            session,
            Lease5 {
                id: session,
                ttl_ms: 4000,
                session: Some(Session {
                    password: vec![1; 16],
                    timeout_ms: 4000,
                    owner: 0,
                }),
                keys: BTreeSet::new(),
                ephemerals: BTreeSet::from(["/a/e".to_string()]),
            },
        )]);
        let log_id = LogId::new(CommittedLeaderId::new(1, 1), 9);
        let membership = StoredMembership::new(
            Some(LogId::new(CommittedLeaderId::new(1, 1), 1)),
            Membership::new(
                vec![BTreeSet::from([1])],
                BTreeMap::from([(1, Member::new("127.0.0.1:2380"))]),
            ),
        );
        let body = Body5 {
            last_applied: Some(log_id),
            membership: membership.clone(),
            state: State5 {
                revision: 6,
                compacted: 0,
                tree,
                kv,
                leases,
                auth: AuthState::default(),
                kv_bytes,
                alarms: BTreeSet::new(),
            },
            removed: BTreeSet::new(),
            time_ms: 1000,
        };
        let stored = super::StoredSnapshot5 {
            meta: SnapshotMeta {
                last_log_id: Some(log_id),
                last_membership: membership,
                snapshot_id: "1-9".into(),
            },
            data: postcard::to_stdvec(&body).unwrap(),
        };
        {
            let mut opts = Options::default();
            opts.create_if_missing(true);
            opts.create_missing_column_families(true);
            let cfs = [CF_LOG, CF_META, CF_SM]
                .map(|n| ColumnFamilyDescriptor::new(n, Options::default()));
            let db = DB::open_cf_descriptors(&opts, dir.path(), cfs).unwrap();
            let meta = db.cf_handle(CF_META).unwrap();
            db.put_cf(meta, b"format", 5u32.to_be_bytes()).unwrap();
            let sm = db.cf_handle(CF_SM).unwrap();
            db.put_cf(sm, b"snapshot", postcard::to_stdvec(&stored).unwrap())
                .unwrap();
        }
        let (_log, sm) = crate::open(dir.path(), None).expect("upgrade");
        let st = sm.state();
        assert_eq!(st.revision(), 6);
        st.check_invariants().expect("invariants after the upgrade");
        assert_eq!(st.znode("/a").map(|n| n.data), Some(Some(b"x".to_vec())));
        assert_eq!(st.zk_children("/a"), Some(vec!["e".to_string()]));
        assert_eq!(st.zk_ephemerals(session, ""), vec!["/a/e".to_string()]);
        assert_eq!(st.kv_get(b"k").map(|kv| kv.value), Some(b"two".to_vec()));
        assert!(st.kv_get(b"gone").is_none());
        let at5 = st
            .kv_range(&RangeRequest {
                key: b"gone".to_vec(),
                revision: 5,
                ..RangeRequest::default()
            })
            .unwrap();
        assert_eq!(at5.kvs.len(), 1, "history kept");
        assert_eq!(sm.membership().log_id().map(|l| l.index), Some(1));
    }
}
