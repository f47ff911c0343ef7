//! The replicated state: the ZNode tree, the MVCC key space and the leases,
//! under one revision clock.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::auth::{AuthInfo, AuthState};
use crate::command::{Applied, Command, EtcdResponse, Proposal, Response};
use crate::event::{Event, EventBatch};
use crate::store::{Change, MemStore, Overlay, Store, Table};
use crate::zk::Caller;
use crate::zk::{self, NodeKind};

/// Rows of the `Meta` table.
pub(crate) const META_CLOCK: &[u8] = b"clock";
pub(crate) const META_AUTH: &[u8] = b"auth";
pub(crate) const META_ALARMS: &[u8] = b"alarms";

/// The scalars every command may move, stored as one `Meta` row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Clock {
    pub revision: i64,
    pub compacted: i64,
    pub kv_bytes: u64,
    pub znodes: u64,
}

/// The deterministic state machine. Same proposals in the same order give
/// the same state on every node: no clock, no randomness, no I/O.
///
/// The data (znodes, keys and their history, leases) lives in a [`Store`]
/// the state reads through an [`Overlay`] of its own pending changes; only
/// scalars, the auth store and the alarms are held in memory. Whoever owns
/// the store takes the changes after applying ([`State::take_changes`])
/// and writes them. A state made by [`State::new`] keeps its data in a
/// [`MemStore`] and writes its changes itself after every command.
pub struct State {
    /// The revision clock: the last revision (= zxid) assigned. An empty
    /// store is at revision 1, as etcd's is.
    pub(crate) revision: i64,
    pub(crate) compacted: i64,
    /// `kv_size_bytes`: kept up to date by every MVCC change.
    pub(crate) kv_bytes: u64,
    /// How many znodes the tree holds.
    pub(crate) znodes: u64,
    /// etcd's auth store (users, roles, permissions, auth revision).
    pub(crate) auth: AuthState,
    /// etcd's raised alarms: (member id, alarm type number).
    pub(crate) alarms: BTreeSet<(u64, i32)>,
    /// The tables, with this state's pending changes over them.
    pub(crate) db: Overlay,
    /// Events of the command being applied; drained by `apply`.
    pub(crate) events: Vec<Event>,
    /// Set for a state on its own in-memory store: changes are written
    /// into it after every command.
    mem: Option<Arc<MemStore>>,
}

impl Default for State {
    fn default() -> Self {
        State::new()
    }
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("revision", &self.revision)
            .field("compacted", &self.compacted)
            .field("znodes", &self.znodes)
            .finish_non_exhaustive()
    }
}

/// Errors reading the state's own rows from a store.
#[derive(Debug, thiserror::Error)]
#[error("stored state is unreadable: {0}")]
pub struct LoadError(pub String);

pub(crate) fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    // Serializing plain data into a Vec cannot fail.
    postcard::to_stdvec(v).unwrap_or_default()
}

pub(crate) fn decode<'a, T: Deserialize<'a>>(b: &'a [u8]) -> Option<T> {
    postcard::from_bytes(b).ok()
}

impl State {
    /// An empty state on its own in-memory store.
    pub fn new() -> State {
        let mem = Arc::new(MemStore::new());
        let mut s = State::blank(mem.clone());
        s.mem = Some(mem);
        s.init();
        s.flush_mem();
        s
    }

    fn blank(base: Arc<dyn Store>) -> State {
        State {
            revision: 1,
            compacted: 0,
            kv_bytes: 0,
            znodes: 0,
            auth: AuthState::default(),
            alarms: BTreeSet::new(),
            db: Overlay::new(base),
            events: Vec::new(),
            mem: None,
        }
    }

    /// Write what a new store starts with: the built-in znodes and the
    /// clock.
    fn init(&mut self) {
        for (path, node) in zk::initial_tree() {
            self.put_node(&path, &node);
            if path != "/" {
                let (parent, name) = zk::split_path(&path);
                self.db
                    .put(Table::Child, zk::child_key(parent, name), Vec::new());
            }
            self.znodes += 1;
        }
        self.save_clock();
        self.db
            .put(Table::Meta, META_AUTH.to_vec(), encode(&self.auth));
        self.db
            .put(Table::Meta, META_ALARMS.to_vec(), encode(&self.alarms));
    }

    /// The state held by `base`; a store with no state yet gets the
    /// initial one as pending changes (take and write them).
    pub fn open(base: Arc<dyn Store>) -> Result<State, LoadError> {
        let mut s = State::blank(base);
        let Some(raw) = s.db.get(Table::Meta, META_CLOCK) else {
            s.init();
            return Ok(s);
        };
        let clock: Clock = decode(&raw).ok_or_else(|| LoadError("clock".into()))?;
        s.set_clock(clock);
        if let Some(raw) = s.db.get(Table::Meta, META_AUTH) {
            s.auth = decode(&raw).ok_or_else(|| LoadError("auth".into()))?;
        }
        if let Some(raw) = s.db.get(Table::Meta, META_ALARMS) {
            s.alarms = decode(&raw).ok_or_else(|| LoadError("alarms".into()))?;
        }
        Ok(s)
    }

    /// The state held by an in-memory store, writing its changes back
    /// after every command (as [`State::new`] does).
    pub fn on_mem(mem: Arc<MemStore>) -> Result<State, LoadError> {
        let mut s = State::open(mem.clone())?;
        s.mem = Some(mem);
        s.flush_mem();
        Ok(s)
    }

    /// A copy of an in-memory state's tables (tests: a checkpoint).
    pub fn mem_copy(&self) -> MemStore {
        self.mem.as_ref().map(|m| m.copy()).unwrap_or_default()
    }

    /// A read-only copy over the same store, without pending changes:
    /// what readers see once the changes are written.
    pub fn reader(&self) -> State {
        let mut s = State::blank(self.db.base().clone());
        s.set_clock(self.clock());
        s.auth = self.auth.clone();
        s.alarms = self.alarms.clone();
        s.mem = self.mem.clone();
        s
    }

    /// The store this state reads.
    pub fn reader_base(&self) -> Arc<dyn Store> {
        self.db.base().clone()
    }

    /// Take the changes applied commands made (to write them to the store).
    pub fn take_changes(&mut self) -> Vec<Change> {
        self.db.take()
    }

    pub(crate) fn flush_mem(&mut self) {
        if let Some(m) = &self.mem {
            m.write(self.db.take());
        }
    }

    pub(crate) fn clock(&self) -> Clock {
        Clock {
            revision: self.revision,
            compacted: self.compacted,
            kv_bytes: self.kv_bytes,
            znodes: self.znodes,
        }
    }

    pub(crate) fn set_clock(&mut self, c: Clock) {
        self.revision = c.revision;
        self.compacted = c.compacted;
        self.kv_bytes = c.kv_bytes;
        self.znodes = c.znodes;
    }

    pub(crate) fn save_clock(&mut self) {
        let c = encode(&self.clock());
        self.db.put(Table::Meta, META_CLOCK.to_vec(), c);
    }

    /// The current revision (also the last zxid).
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// How many znodes the tree holds (the built-in ones included).
    pub fn zk_node_count(&self) -> u64 {
        self.znodes
    }

    /// Take the next zxid: every ZooKeeper txn, failed or not, takes one.
    pub(crate) fn next_zxid(&mut self) -> i64 {
        self.revision += 1;
        self.revision
    }

    /// Apply one committed proposal; returns the client's answer and the
    /// change events it caused.
    pub fn apply(&mut self, p: &Proposal) -> (Applied, EventBatch) {
        self.apply_command(p.time_ms, &p.command)
    }

    /// `apply` for a command stamped `time_ms` (a batch shares one stamp).
    pub fn apply_command(&mut self, time_ms: i64, command: &Command) -> (Applied, EventBatch) {
        let before = self.clock();
        let response = self.respond(time_ms, command);
        self.db.release();
        if self.clock() != before {
            self.save_clock();
        }
        self.flush_mem();
        let events = std::mem::take(&mut self.events);
        (
            Applied {
                revision: self.revision,
                response,
            },
            EventBatch {
                revision: self.revision,
                events,
            },
        )
    }

    fn respond(&mut self, t: i64, command: &Command) -> Response {
        match command {
            Command::Noop => Response::Noop,
            Command::ZkCreateSession {
                session,
                password,
                timeout_ms,
            } => self.session_create(*session, password, *timeout_ms),
            Command::ZkCloseSession { session } => self.session_close(t, *session),
            Command::ZkAttach { session, owner } => self.session_attach(*session, *owner),
            Command::Zk { session, op } => Response::Zk(self.zk_single(t, *session, op, None)),
            Command::ZkMulti { session, ops } => {
                Response::Zk(self.zk_multi(t, *session, ops, None))
            }
            Command::ZkAs {
                ids,
                owner,
                command,
            } => Response::Zk(match &**command {
                Command::Zk { session, op } => {
                    self.zk_single(t, *session, op, Some(Caller { ids, owner: *owner }))
                }
                Command::ZkMulti { session, ops } => {
                    self.zk_multi(t, *session, ops, Some(Caller { ids, owner: *owner }))
                }
                // Only client writes are wrapped; anything else is refused,
                // with the zxid every ZooKeeper txn takes.
                _ => {
                    self.next_zxid();
                    Err(crate::ZkError::BadArguments)
                }
            }),
            Command::ZkDeleteContainer { path } => Response::Zk(self.zk_delete_container(t, path)),
            Command::Put(req) => Response::Etcd(
                self.kv_write(|s, tx| s.kv_put(tx, req))
                    .map(EtcdResponse::Put),
            ),
            Command::DeleteRange(req) => Response::Etcd(
                self.kv_write(|s, tx| s.kv_delete_range(tx, req))
                    .map(EtcdResponse::DeleteRange),
            ),
            Command::Txn(req) => Response::Etcd(
                self.kv_write(|s, tx| s.kv_txn(tx, req))
                    .map(EtcdResponse::Txn),
            ),
            Command::Compact { revision } => {
                Response::Etcd(self.kv_compact(*revision).map(|()| EtcdResponse::Compact))
            }
            Command::LeaseGrant { id, ttl_secs } => self.lease_grant(*id, *ttl_secs),
            Command::LeaseRevoke { id } => self.lease_revoke(t, *id),
            Command::LeaseExpire { id } => self.lease_expire(t, *id),
            Command::Auth(op) => {
                let r = self.auth_apply(&AuthInfo::default(), op);
                self.save_auth();
                Response::Etcd(r)
            }
            Command::AsUser {
                user,
                auth_revision,
                command,
            } => {
                let ai = AuthInfo {
                    user: user.clone(),
                    revision: *auth_revision,
                };
                match (self.check_command_auth(&ai, command), &**command) {
                    (Err(e), _) => Response::Etcd(Err(e)),
                    (Ok(()), Command::Auth(op)) => {
                        let r = self.auth_apply(&ai, op);
                        self.save_auth();
                        Response::Etcd(r)
                    }
                    (Ok(()), inner) => self.respond(t, inner),
                }
            }
            Command::Alarm {
                activate,
                member,
                kind,
            } => Response::Alarm(self.alarm(*activate, *member, *kind)),
        }
    }

    /// etcd's alarm store: activating returns the alarm (new or already
    /// raised); deactivating returns it if it was raised. No revision.
    fn alarm(&mut self, activate: bool, member: u64, kind: i32) -> Option<(u64, i32)> {
        let r = if activate {
            self.alarms.insert((member, kind));
            Some((member, kind))
        } else {
            self.alarms
                .remove(&(member, kind))
                .then_some((member, kind))
        };
        self.save_alarms();
        r
    }

    pub(crate) fn save_alarms(&mut self) {
        let a = encode(&self.alarms);
        self.db.put(Table::Meta, META_ALARMS.to_vec(), a);
    }

    pub(crate) fn save_auth(&mut self) {
        let a = encode(&self.auth);
        self.db.put(Table::Meta, META_AUTH.to_vec(), a);
    }

    /// Raised etcd alarms as (member id, alarm type number), in order.
    pub fn alarms(&self) -> impl Iterator<Item = (u64, i32)> + '_ {
        self.alarms.iter().copied()
    }

    /// Every row of every table as this state sees it, with the scalars
    /// first: two states are the same state when their dumps are equal.
    pub fn dump(&self) -> Vec<(Table, Vec<u8>, Vec<u8>)> {
        let mut out = vec![(Table::Meta, b"scalars".to_vec(), encode(&self.clock()))];
        out.push((Table::Meta, b"auth.mem".to_vec(), encode(&self.auth)));
        out.push((Table::Meta, b"alarms.mem".to_vec(), encode(&self.alarms)));
        for t in Table::ALL {
            self.db.scan(t, b"", None, false, &mut |k, v| {
                out.push((t, k.to_vec(), v.to_vec()));
                true
            });
        }
        out
    }

    /// A 64-bit digest of [`State::dump`] (FNV-1a).
    pub fn digest(&self) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |b: &[u8]| {
            for x in (b.len() as u64).to_be_bytes().iter().chain(b) {
                h ^= u64::from(*x);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
        };
        for (t, k, v) in self.dump() {
            eat(t.name().as_bytes());
            eat(&k);
            eat(&v);
        }
        h
    }

    /// Check every structural invariant; `Err` names the first broken one.
    /// Reads every table: for tests and tools.
    pub fn check_invariants(&self) -> Result<(), String> {
        self.auth.check_invariants()?;
        if self.compacted > self.revision {
            return Err(format!(
                "compacted {} > revision {}",
                self.compacted, self.revision
            ));
        }
        if self.znode("/").is_none() {
            return Err("no root".into());
        }
        self.check_tree()?;
        self.check_leases()?;
        self.check_kv()
    }

    fn check_tree(&self) -> Result<(), String> {
        let mut nodes = Vec::new();
        self.db.scan(Table::Node, b"", None, false, &mut |k, v| {
            nodes.push((String::from_utf8_lossy(k).into_owned(), v.to_vec()));
            true
        });
        if nodes.len() as u64 != self.znodes {
            return Err(format!("{} znodes, counted {}", nodes.len(), self.znodes));
        }
        for (path, raw) in &nodes {
            let node: crate::ZNode = decode(raw).ok_or(format!("{path}: undecodable"))?;
            if path != "/" {
                let (parent, name) = zk::split_path(path);
                if self.znode(parent).is_none() {
                    return Err(format!("{path}: parent missing"));
                }
                if !self.db.contains(Table::Child, &zk::child_key(parent, name)) {
                    return Err(format!("{path}: not in parent's children"));
                }
            }
            let children = self.zk_children(path).unwrap_or_default();
            let mut created = 0i64;
            for c in &children {
                let child = zk::join_path(path, c);
                let Some(cn) = self.znode(&child) else {
                    return Err(format!("{child}: listed, missing"));
                };
                if node.stat.pzxid < cn.stat.czxid {
                    return Err(format!(
                        "{path}: pzxid {} < child czxid {}",
                        node.stat.pzxid, cn.stat.czxid
                    ));
                }
                // cversion counts creations under the node (built-in
                // children, with zxid 0, excepted).
                if cn.stat.czxid > 0 {
                    created += 1;
                }
            }
            let s = &node.stat;
            if s.num_children as usize != children.len() {
                return Err(format!(
                    "{path}: numChildren {} != {}",
                    s.num_children,
                    children.len()
                ));
            }
            if s.data_length as usize != node.bytes().len() {
                return Err(format!("{path}: dataLength"));
            }
            if s.cversion >= 0 && (s.cversion as i64) < created {
                return Err(format!(
                    "{path}: cversion {} < created children {created}",
                    s.cversion
                ));
            }
            if s.mzxid < s.czxid
                || s.pzxid < s.czxid
                || s.czxid > self.revision
                || s.mzxid > self.revision
            {
                return Err(format!("{path}: zxids out of order {s:?}"));
            }
            match NodeKind::of_owner(s.ephemeral_owner) {
                NodeKind::Ephemeral(owner) => {
                    if !children.is_empty() {
                        return Err(format!("{path}: ephemeral with children"));
                    }
                    if self.lease(owner).is_none() {
                        return Err(format!("{path}: owner {owner} gone"));
                    }
                    if !self.zk_ephemerals(owner, "").contains(path) {
                        return Err(format!("{path}: not attached to its session"));
                    }
                }
                NodeKind::Container | NodeKind::Ttl(_) => {
                    if !self.db.contains(Table::Reap, path.as_bytes()) {
                        return Err(format!("{path}: not listed for the reaper"));
                    }
                }
                NodeKind::Persistent => {}
            }
        }
        let mut orphans = Vec::new();
        self.db.scan(Table::Child, b"", None, false, &mut |k, _| {
            if let Some(i) = k.iter().position(|b| *b == 0) {
                let parent = String::from_utf8_lossy(&k[..i]).into_owned();
                let name = String::from_utf8_lossy(&k[i + 1..]).into_owned();
                orphans.push(zk::join_path(&parent, &name));
            }
            true
        });
        for c in orphans {
            if self.znode(&c).is_none() {
                return Err(format!("{c}: child row without a node"));
            }
        }
        Ok(())
    }

    fn check_leases(&self) -> Result<(), String> {
        for l in self.leases() {
            for p in self.zk_ephemerals(l.id, "") {
                match self.znode(&p) {
                    Some(n) if n.stat.ephemeral_owner == l.id => {}
                    _ => {
                        return Err(format!(
                            "lease {}: ephemeral {p} missing or not owned",
                            l.id
                        ))
                    }
                }
            }
            for k in self.lease_keys(l.id) {
                match self.kv_get(&k) {
                    Some(kv) if kv.lease == l.id => {}
                    _ => return Err(format!("lease {}: key {k:?} missing or not attached", l.id)),
                }
            }
        }
        let mut items = 0;
        self.db
            .scan(Table::LeaseItem, b"", None, false, &mut |_, _| {
                items += 1;
                true
            });
        let listed: usize = self
            .leases()
            .iter()
            .map(|l| self.lease_keys(l.id).len() + self.zk_ephemerals(l.id, "").len())
            .sum();
        if items != listed {
            return Err(format!("{items} lease items, {listed} under live leases"));
        }
        Ok(())
    }

    fn check_kv(&self) -> Result<(), String> {
        let recount = self.kv_size_recount();
        if recount != self.kv_bytes {
            return Err(format!("kv size {} != recount {recount}", self.kv_bytes));
        }
        self.kv_check_index()?;
        for kv in self.kv_latest_all() {
            if kv.lease != 0 && !self.lease_keys(kv.lease).contains(&kv.key) {
                return Err(format!(
                    "key {:?}: lease {} does not list it",
                    kv.key, kv.lease
                ));
            }
            if kv.mod_revision > self.revision {
                return Err(format!("key {:?}: from the future", kv.key));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::*;
    use crate::error::{EtcdError, ZkError};
    use crate::zk::{Acl, CreateMode};

    fn run(s: &mut State, c: Command) -> Applied {
        let (a, _) = s.apply(&Proposal {
            time_ms: 1000,
            command: c,
        });
        s.check_invariants().unwrap();
        a
    }
    fn create(path: &str, mode: CreateMode) -> ZkOp {
        ZkOp::Create {
            path: path.into(),
            data: Some(b"d".to_vec()),
            acl: Acl::open_unsafe(),
            mode,
            ttl_ms: -1,
        }
    }
    fn zk(s: &mut State, session: i64, op: ZkOp) -> Result<ZkResponse, ZkError> {
        match run(s, Command::Zk { session, op }).response {
            Response::Zk(r) => r,
            r => panic!("{r:?}"),
        }
    }
    fn put(key: &str, value: &str, lease: i64) -> Command {
        Command::Put(PutRequest {
            key: key.into(),
            value: value.into(),
            lease,
            ..Default::default()
        })
    }
    fn range_all(s: &State, rev: i64) -> Vec<(Vec<u8>, Vec<u8>)> {
        let req = RangeRequest {
            key: vec![0],
            range_end: vec![0],
            revision: rev,
            ..Default::default()
        };
        s.kv_range(&req)
            .unwrap()
            .kvs
            .into_iter()
            .map(|kv| (kv.key, kv.value))
            .collect()
    }

    #[test]
    fn alarms_and_kv_size() {
        let mut s = State::new();
        run(&mut s, put("ab", "xyz", 0));
        run(&mut s, put("ab", "x", 0));
        assert_eq!(s.kv_size_bytes(), 5 + 3);
        let alarm = |activate| Command::Alarm {
            activate,
            member: 7,
            kind: 1,
        };
        let rev = s.revision();
        assert_eq!(
            run(&mut s, alarm(true)).response,
            Response::Alarm(Some((7, 1)))
        );
        assert_eq!(s.revision(), rev, "alarms take no revision");
        assert_eq!(s.alarms().collect::<Vec<_>>(), vec![(7, 1)]);
        assert_eq!(
            run(&mut s, alarm(false)).response,
            Response::Alarm(Some((7, 1)))
        );
        assert_eq!(run(&mut s, alarm(false)).response, Response::Alarm(None));
        run(&mut s, Command::Compact { revision: rev });
        assert_eq!(s.kv_size_bytes(), 3);
    }

    #[test]
    fn zk_stat_rules() {
        let mut s = State::new();
        let r = zk(&mut s, 0, create("/a", CreateMode::Persistent)).unwrap();
        let ZkResponse::Op(ZkOpResult::Create { path, stat }) = r else {
            panic!()
        };
        assert_eq!(path, "/a");
        assert_eq!(
            (stat.czxid, stat.mzxid, stat.pzxid, stat.ctime),
            (2, 2, 2, 1000)
        );
        let seq = zk(&mut s, 0, create("/a/s-", CreateMode::PersistentSequential)).unwrap();
        assert!(
            matches!(seq, ZkResponse::Op(ZkOpResult::Create { ref path, .. }) if path == "/a/s-0000000000")
        );
        zk(&mut s, 0, create("/a/b", CreateMode::Persistent)).unwrap();
        let seq = zk(&mut s, 0, create("/a/s-", CreateMode::PersistentSequential)).unwrap();
        assert!(
            matches!(seq, ZkResponse::Op(ZkOpResult::Create { ref path, .. }) if path == "/a/s-0000000002")
        );
        let a = s.zk_stat("/a").unwrap();
        assert_eq!((a.cversion, a.num_children, a.pzxid), (3, 3, 5));
        zk(
            &mut s,
            0,
            ZkOp::Delete {
                path: "/a/b".into(),
                version: -1,
            },
        )
        .unwrap();
        let a = s.zk_stat("/a").unwrap();
        // Delete moves pzxid, not cversion.
        assert_eq!((a.cversion, a.num_children, a.pzxid), (3, 2, 6));
        assert_eq!(
            zk(
                &mut s,
                0,
                ZkOp::Delete {
                    path: "/a".into(),
                    version: -1
                }
            ),
            Err(ZkError::NotEmpty)
        );
        assert_eq!(
            zk(
                &mut s,
                0,
                ZkOp::SetData {
                    path: "/a".into(),
                    data: Some(vec![1]),
                    version: 5
                }
            ),
            Err(ZkError::BadVersion)
        );
        // Failed txns still take a zxid.
        assert_eq!(s.revision(), 8);
        let r = zk(
            &mut s,
            0,
            ZkOp::SetData {
                path: "/a".into(),
                data: Some(vec![1, 2]),
                version: 0,
            },
        )
        .unwrap();
        let ZkResponse::Op(ZkOpResult::SetData { stat }) = r else {
            panic!()
        };
        assert_eq!(
            (stat.version, stat.mzxid, stat.czxid, stat.data_length),
            (1, 9, 2, 2)
        );
        assert_eq!(
            zk(&mut s, 0, create("/x/y", CreateMode::Persistent)),
            Err(ZkError::NoNode)
        );
        assert_eq!(
            zk(&mut s, 0, create("/a", CreateMode::Persistent)),
            Err(ZkError::NodeExists)
        );
        assert_eq!(
            zk(&mut s, 0, create("/a/", CreateMode::Persistent)),
            Err(ZkError::BadArguments)
        );
    }

    #[test]
    fn zk_multi_is_atomic() {
        let mut s = State::new();
        let data = |s: &State| {
            s.dump()
                .into_iter()
                .filter(|(t, _, _)| *t != Table::Meta)
                .collect::<Vec<_>>()
        };
        let before = data(&s);
        let r = run(
            &mut s,
            Command::ZkMulti {
                session: 0,
                ops: vec![
                    create("/m", CreateMode::Persistent),
                    create("/m/c", CreateMode::Persistent),
                    ZkOp::Check {
                        path: "/m".into(),
                        version: 3,
                    },
                    create("/n", CreateMode::Persistent),
                ],
            },
        );
        let Response::Zk(Ok(ZkResponse::Multi(results))) = r.response else {
            panic!("{r:?}")
        };
        assert_eq!(
            results,
            vec![
                ZkOpResult::Error(None),
                ZkOpResult::Error(None),
                ZkOpResult::Error(Some(ZkError::BadVersion)),
                ZkOpResult::Error(Some(ZkError::RuntimeInconsistency)),
            ]
        );
        assert_eq!(data(&s), before, "nothing changed but the clock");
        assert_eq!(s.revision(), 2);
    }

    #[test]
    fn sessions_own_ephemerals() {
        let mut s = State::new();
        run(
            &mut s,
            Command::ZkCreateSession {
                session: 7,
                password: vec![0; 16],
                timeout_ms: 4000,
            },
        );
        zk(&mut s, 7, create("/e", CreateMode::Ephemeral)).unwrap();
        assert_eq!(
            zk(&mut s, 7, create("/e/c", CreateMode::Persistent)),
            Err(ZkError::NoChildrenForEphemerals)
        );
        assert_eq!(s.zk_ephemerals(7, "/"), vec!["/e".to_string()]);
        assert_eq!(s.zk_stat("/e").unwrap().ephemeral_owner, 7);
        let (_, ev) = s.apply(&Proposal {
            time_ms: 0,
            command: Command::LeaseExpire { id: 7 },
        });
        assert!(ev
            .events
            .iter()
            .any(|e| matches!(e, Event::ZkDeleted { path, .. } if path == "/e")));
        assert!(s.zk_stat("/e").is_none());
        assert_eq!(
            zk(&mut s, 7, create("/f", CreateMode::Persistent)),
            Err(ZkError::SessionExpired)
        );
    }

    #[test]
    fn containers_and_ttl_reaped() {
        let mut s = State::new();
        zk(&mut s, 0, create("/c", CreateMode::Container)).unwrap();
        assert!(
            s.zk_reap_candidates(0, 10).is_empty(),
            "never-used container stays"
        );
        zk(&mut s, 0, create("/c/x", CreateMode::Persistent)).unwrap();
        zk(
            &mut s,
            0,
            ZkOp::Delete {
                path: "/c/x".into(),
                version: -1,
            },
        )
        .unwrap();
        let ttl = ZkOp::Create {
            path: "/t".into(),
            data: Some(vec![]),
            acl: Acl::open_unsafe(),
            mode: CreateMode::PersistentWithTtl,
            ttl_ms: 500,
        };
        zk(&mut s, 0, ttl).unwrap();
        assert_eq!(s.zk_reap_candidates(1200, 10), vec!["/c".to_string()]);
        assert_eq!(
            s.zk_reap_candidates(1501, 10),
            vec!["/c".to_string(), "/t".to_string()]
        );
        let r = s.apply(&Proposal {
            time_ms: 1200,
            command: Command::ZkDeleteContainer { path: "/t".into() },
        });
        assert_eq!(r.0.response, Response::Zk(Err(ZkError::BadVersion)));
        let r = s.apply(&Proposal {
            time_ms: 1501,
            command: Command::ZkDeleteContainer { path: "/t".into() },
        });
        assert_eq!(
            r.0.response,
            Response::Zk(Ok(ZkResponse::Op(ZkOpResult::Delete)))
        );
    }

    #[test]
    fn mvcc_revisions_and_history() {
        let mut s = State::new();
        assert_eq!(run(&mut s, put("a", "1", 0)).revision, 2);
        assert_eq!(run(&mut s, put("b", "1", 0)).revision, 3);
        assert_eq!(run(&mut s, put("a", "2", 0)).revision, 4);
        let a = s.kv_get(b"a").unwrap();
        assert_eq!((a.create_revision, a.mod_revision, a.version), (2, 4, 2));
        // A no-op delete takes no revision.
        let r = run(
            &mut s,
            Command::DeleteRange(DeleteRangeRequest {
                key: b"zz".to_vec(),
                ..Default::default()
            }),
        );
        assert_eq!(r.revision, 4);
        let r = run(
            &mut s,
            Command::DeleteRange(DeleteRangeRequest {
                key: b"a".to_vec(),
                range_end: b"c".to_vec(),
                prev_kv: true,
            }),
        );
        assert_eq!(r.revision, 5);
        assert!(
            matches!(r.response, Response::Etcd(Ok(EtcdResponse::DeleteRange(ref d))) if d.deleted == 2)
        );
        assert_eq!(
            range_all(&s, 3),
            vec![
                (b"a".to_vec(), b"1".to_vec()),
                (b"b".to_vec(), b"1".to_vec())
            ]
        );
        assert_eq!(range_all(&s, 5), vec![]);
        run(&mut s, put("a", "3", 0));
        let a = s.kv_get(b"a").unwrap();
        assert_eq!((a.create_revision, a.version), (6, 1));
        run(&mut s, Command::Compact { revision: 4 });
        assert_eq!(
            s.kv_range(&RangeRequest {
                key: b"a".to_vec(),
                revision: 3,
                ..Default::default()
            }),
            Err(EtcdError::Compacted)
        );
        assert_eq!(
            range_all(&s, 4),
            vec![
                (b"a".to_vec(), b"2".to_vec()),
                (b"b".to_vec(), b"1".to_vec())
            ]
        );
        assert_eq!(
            s.kv_range(&RangeRequest {
                key: b"a".to_vec(),
                revision: 99,
                ..Default::default()
            }),
            Err(EtcdError::FutureRev)
        );
        assert_eq!(
            run(&mut s, Command::Compact { revision: 4 }).response,
            Response::Etcd(Err(EtcdError::Compacted))
        );
    }

    #[test]
    fn txn_compare_and_rollback() {
        let mut s = State::new();
        let create_if_absent = |k: &str| {
            Command::Txn(TxnRequest {
                compare: vec![Compare {
                    result: CompareResult::Equal,
                    target: CompareTarget::Mod(0),
                    key: k.into(),
                    range_end: vec![],
                }],
                success: vec![RequestOp::Put(PutRequest {
                    key: k.into(),
                    value: b"v".to_vec(),
                    ..Default::default()
                })],
                failure: vec![RequestOp::Range(RangeRequest {
                    key: k.into(),
                    ..Default::default()
                })],
            })
        };
        let r = run(&mut s, create_if_absent("k"));
        assert!(matches!(r.response, Response::Etcd(Ok(EtcdResponse::Txn(ref t))) if t.succeeded));
        assert_eq!(r.revision, 2);
        let r = run(&mut s, create_if_absent("k"));
        assert!(matches!(r.response, Response::Etcd(Ok(EtcdResponse::Txn(ref t))) if !t.succeeded));
        assert_eq!(r.revision, 2);
        // A put with a missing lease fails the whole txn; the earlier put is undone.
        let bad = Command::Txn(TxnRequest {
            compare: vec![],
            success: vec![
                RequestOp::Put(PutRequest {
                    key: b"x".to_vec(),
                    ..Default::default()
                }),
                RequestOp::Put(PutRequest {
                    key: b"y".to_vec(),
                    lease: 42,
                    ..Default::default()
                }),
            ],
            failure: vec![],
        });
        assert_eq!(
            run(&mut s, bad).response,
            Response::Etcd(Err(EtcdError::LeaseNotFound))
        );
        assert!(s.kv_get(b"x").is_none());
        assert_eq!(s.revision(), 2);
    }

    #[test]
    fn the_etcd_api_does_not_see_sessions() {
        let mut s = State::new();
        run(
            &mut s,
            Command::ZkCreateSession {
                session: 7,
                password: vec![0; 16],
                timeout_ms: 10_000,
            },
        );
        let rev = s.revision();
        assert_eq!(
            run(&mut s, put("k", "v", 7)).response,
            Response::Etcd(Err(EtcdError::LeaseNotFound))
        );
        assert_eq!(
            run(&mut s, Command::LeaseRevoke { id: 7 }).response,
            Response::Etcd(Err(EtcdError::LeaseNotFound))
        );
        assert_eq!(s.revision(), rev, "refused: nothing taken");
        assert!(
            s.lease(7).is_some_and(|l| l.session.is_some()),
            "the session lives on"
        );
    }

    #[test]
    fn zk_null_data_is_kept_apart_from_empty() {
        let mut s = State::new();
        let mk = |path: &str, data: Option<Vec<u8>>| ZkOp::Create {
            path: path.into(),
            data,
            acl: Acl::open_unsafe(),
            mode: CreateMode::Persistent,
            ttl_ms: -1,
        };
        assert!(zk(&mut s, 0, mk("/null", None)).is_ok());
        assert!(zk(&mut s, 0, mk("/empty", Some(vec![]))).is_ok());
        assert_eq!(s.znode("/null").map(|n| n.data.clone()), Some(None));
        assert_eq!(
            s.znode("/empty").map(|n| n.data.clone()),
            Some(Some(vec![]))
        );
        let set = |data| ZkOp::SetData {
            path: "/empty".into(),
            data,
            version: -1,
        };
        assert!(zk(&mut s, 0, set(None)).is_ok());
        assert_eq!(
            s.znode("/empty")
                .map(|n| (n.data.clone(), n.stat.data_length)),
            Some((None, 0))
        );
    }

    #[test]
    fn lease_revoke_deletes_keys_in_one_revision() {
        let mut s = State::new();
        run(
            &mut s,
            Command::LeaseGrant {
                id: 5,
                ttl_secs: 10,
            },
        );
        assert_eq!(s.revision(), 1, "a grant takes no revision");
        run(&mut s, put("a", "1", 5));
        run(&mut s, put("b", "1", 5));
        run(&mut s, put("c", "1", 5));
        run(&mut s, put("c", "2", 0));
        let (a, ev) = s.apply(&Proposal {
            time_ms: 0,
            command: Command::LeaseRevoke { id: 5 },
        });
        s.check_invariants().unwrap();
        assert_eq!(a.revision, 6);
        assert_eq!(ev.events.len(), 2);
        assert_eq!(range_all(&s, 0), vec![(b"c".to_vec(), b"2".to_vec())]);
        assert_eq!(
            run(&mut s, Command::LeaseRevoke { id: 5 }).response,
            Response::Etcd(Err(EtcdError::LeaseNotFound))
        );
    }

    #[test]
    fn range_options() {
        let mut s = State::new();
        for (k, v) in [("a", "3"), ("b", "1"), ("c", "2"), ("d", "0")] {
            run(&mut s, put(k, v, 0));
        }
        let base = RangeRequest {
            key: b"a".to_vec(),
            range_end: b"d".to_vec(),
            ..Default::default()
        };
        let r = s
            .kv_range(&RangeRequest {
                limit: 2,
                ..base.clone()
            })
            .unwrap();
        assert_eq!((r.kvs.len(), r.more, r.count), (2, true, 3));
        let r = s
            .kv_range(&RangeRequest {
                sort_target: SortTarget::Value,
                sort_order: SortOrder::Descend,
                ..base.clone()
            })
            .unwrap();
        assert_eq!(
            r.kvs.iter().map(|k| k.key[0]).collect::<Vec<_>>(),
            b"acb".to_vec()
        );
        let r = s
            .kv_range(&RangeRequest {
                count_only: true,
                ..base.clone()
            })
            .unwrap();
        assert_eq!((r.kvs.len(), r.count), (0, 3));
        let r = s
            .kv_range(&RangeRequest {
                min_mod_revision: 3,
                limit: 1,
                ..base.clone()
            })
            .unwrap();
        assert_eq!(
            (r.kvs[0].key.clone(), r.more, r.count),
            (b"b".to_vec(), true, 3)
        );
        let r = s
            .kv_range(&RangeRequest {
                keys_only: true,
                ..base
            })
            .unwrap();
        assert!(r.kvs.iter().all(|k| k.value.is_empty()));
    }
}
