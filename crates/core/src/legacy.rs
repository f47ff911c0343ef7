//! Reading the whole-state snapshots of data format 5, which kept the
//! state in memory and saved it as one value, into the tables.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Deserialize;

use crate::auth::AuthState;
use crate::lease::{Lease, Session};
use crate::mvcc::Rev;
use crate::state::{LoadError, State};
use crate::store::Table;
use crate::zk::{self, Acl, NodeKind, Stat, ZNode};

#[derive(Deserialize)]
struct ZNode5 {
    data: Option<Vec<u8>>,
    acl: Vec<Acl>,
    stat: Stat,
    children: BTreeSet<String>,
}

#[derive(Deserialize)]
struct Lease5 {
    id: i64,
    ttl_ms: i64,
    session: Option<Session>,
    keys: BTreeSet<Vec<u8>>,
    ephemerals: BTreeSet<String>,
}

/// Format 5's `State`, field for field (postcard is not self-describing).
#[derive(Deserialize)]
pub struct State5 {
    revision: i64,
    compacted: i64,
    tree: BTreeMap<String, ZNode5>,
    kv: BTreeMap<Vec<u8>, Vec<Rev>>,
    leases: BTreeMap<i64, Lease5>,
    auth: AuthState,
    kv_bytes: u64,
    alarms: BTreeSet<(u64, i32)>,
}

impl State {
    /// Write a format-5 state into `self`, a state on an empty store; the
    /// rows are pending changes afterwards (take and write them).
    pub fn import_format_5(&mut self, old: State5) -> Result<(), LoadError> {
        // The empty state's built-in nodes are replaced by the old ones.
        for (path, _) in zk::initial_tree() {
            self.db.delete(Table::Node, path.as_bytes());
            if path != "/" {
                let (p, n) = zk::split_path(&path);
                self.db.delete(Table::Child, &zk::child_key(p, n));
            }
        }
        self.znodes = 0;
        for (path, n) in &old.tree {
            let node = ZNode {
                data: n.data.clone(),
                acl: n.acl.clone(),
                stat: n.stat,
            };
            self.put_node(path, &node);
            self.znodes += 1;
            for c in &n.children {
                self.db
                    .put(Table::Child, zk::child_key(path, c), Vec::new());
            }
            if matches!(
                NodeKind::of_owner(n.stat.ephemeral_owner),
                NodeKind::Container | NodeKind::Ttl(_)
            ) {
                self.db
                    .put(Table::Reap, path.as_bytes().to_vec(), Vec::new());
            }
        }
        for l in old.leases.values() {
            let lease = Lease {
                id: l.id,
                ttl_ms: l.ttl_ms,
                session: l.session.clone(),
            };
            self.import_lease(&lease);
            for p in &l.ephemerals {
                self.db
                    .put(Table::LeaseItem, zk::ephemeral_key(l.id, p), Vec::new());
            }
            for k in &l.keys {
                self.lease_attach(l.id, k);
            }
        }
        // Sub-revisions were not kept: keys changed in one revision get
        // them in key order, as etcd assigns them in request order.
        let mut subs: HashMap<i64, i64> = HashMap::new();
        for (key, hist) in old.kv {
            for rev in hist {
                let main = match &rev {
                    Rev::Put { mod_revision, .. } | Rev::Del { mod_revision } => *mod_revision,
                };
                let sub = subs.entry(main).or_insert(0);
                self.import_version(&key, main, *sub, rev);
                *sub += 1;
            }
        }
        self.revision = old.revision;
        self.compacted = old.compacted;
        self.kv_bytes = old.kv_bytes;
        self.auth = old.auth;
        self.alarms = old.alarms;
        self.save_clock();
        self.save_auth();
        self.save_alarms();
        self.check_invariants().map_err(LoadError)
    }
}
