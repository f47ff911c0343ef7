//! The replicated state: the ZNode tree, the MVCC key space and the leases,
//! under one revision clock.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::auth::{AuthInfo, AuthState};
use crate::command::{Applied, Command, EtcdResponse, Proposal, Response};
use crate::event::{Event, EventBatch};
use crate::lease::Lease;
use crate::mvcc::KeySpace;
use crate::zk::Caller;
use crate::zk::{self, NodeKind, Tree};

/// The deterministic state machine. Same proposals in the same order give
/// the same state on every node: no clock, no randomness, no I/O, and only
/// ordered collections (so snapshots are byte-for-byte equal too).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// The revision clock: the last revision (= zxid) assigned. An empty
    /// store is at revision 1, as etcd's is.
    pub(crate) revision: i64,
    pub(crate) compacted: i64,
    pub(crate) tree: Tree,
    pub(crate) kv: KeySpace,
    pub(crate) leases: BTreeMap<i64, Lease>,
    /// etcd's auth store (users, roles, permissions, auth revision).
    pub(crate) auth: AuthState,
    /// `kv_size_bytes`: kept up to date by every MVCC change.
    pub(crate) kv_bytes: u64,
    /// etcd's raised alarms: (member id, alarm type number).
    pub(crate) alarms: BTreeSet<(u64, i32)>,
    /// Events of the command being applied; drained by `apply`.
    #[serde(skip)]
    pub(crate) events: Vec<Event>,
}

impl Default for State {
    fn default() -> Self {
        State::new()
    }
}

impl State {
    pub fn new() -> State {
        State {
            revision: 1,
            compacted: 0,
            tree: zk::initial_tree(),
            kv: KeySpace::new(),
            leases: BTreeMap::new(),
            auth: AuthState::default(),
            kv_bytes: 0,
            alarms: BTreeSet::new(),
            events: Vec::new(),
        }
    }

    /// The current revision (also the last zxid).
    pub fn revision(&self) -> i64 {
        self.revision
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
        let response = self.respond(time_ms, command);
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
            Command::Auth(op) => Response::Etcd(self.auth_apply(&AuthInfo::default(), op)),
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
                    (Ok(()), Command::Auth(op)) => Response::Etcd(self.auth_apply(&ai, op)),
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
        if activate {
            self.alarms.insert((member, kind));
            Some((member, kind))
        } else {
            self.alarms
                .remove(&(member, kind))
                .then_some((member, kind))
        }
    }

    /// Raised etcd alarms as (member id, alarm type number), in order.
    pub fn alarms(&self) -> impl Iterator<Item = (u64, i32)> + '_ {
        self.alarms.iter().copied()
    }

    /// Check every structural invariant; `Err` names the first broken one.
    /// Used by property tests and after loading a snapshot.
    pub fn check_invariants(&self) -> Result<(), String> {
        self.auth.check_invariants()?;
        if self.compacted > self.revision {
            return Err(format!(
                "compacted {} > revision {}",
                self.compacted, self.revision
            ));
        }
        if !self.tree.contains_key("/") {
            return Err("no root".into());
        }
        for (path, node) in &self.tree {
            if path != "/" {
                let (parent, name) = zk::split_path(path);
                let Some(p) = self.tree.get(parent) else {
                    return Err(format!("{path}: parent missing"));
                };
                if !p.children.contains(name) {
                    return Err(format!("{path}: not in parent's children"));
                }
            }
            for c in &node.children {
                let child = if path == "/" {
                    format!("/{c}")
                } else {
                    format!("{path}/{c}")
                };
                let Some(cn) = self.tree.get(&child) else {
                    return Err(format!("{child}: listed, missing"));
                };
                if node.stat.pzxid < cn.stat.czxid {
                    return Err(format!(
                        "{path}: pzxid {} < child czxid {}",
                        node.stat.pzxid, cn.stat.czxid
                    ));
                }
            }
            let s = &node.stat;
            if s.num_children as usize != node.children.len() {
                return Err(format!(
                    "{path}: numChildren {} != {}",
                    s.num_children,
                    node.children.len()
                ));
            }
            if s.data_length as usize != node.bytes().len() {
                return Err(format!("{path}: dataLength"));
            }
            // cversion counts creations under the node (built-in children,
            // with zxid 0, excepted); a wrapped counter is exempt.
            let created = node
                .children
                .iter()
                .filter(|c| {
                    let child = if path == "/" {
                        format!("/{c}")
                    } else {
                        format!("{path}/{c}")
                    };
                    self.tree.get(&child).is_some_and(|n| n.stat.czxid > 0)
                })
                .count() as i64;
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
            if let NodeKind::Ephemeral(owner) = NodeKind::of_owner(s.ephemeral_owner) {
                if !node.children.is_empty() {
                    return Err(format!("{path}: ephemeral with children"));
                }
                let Some(l) = self.leases.get(&owner) else {
                    return Err(format!("{path}: owner {owner} gone"));
                };
                if !l.ephemerals.contains(path) {
                    return Err(format!("{path}: not attached to its session"));
                }
            }
        }
        for (id, l) in &self.leases {
            for p in &l.ephemerals {
                match self.tree.get(p) {
                    Some(n) if n.stat.ephemeral_owner == *id => {}
                    _ => return Err(format!("lease {id}: ephemeral {p} missing or not owned")),
                }
            }
            for k in &l.keys {
                match self.kv_get(k) {
                    Some(kv) if kv.lease == *id => {}
                    _ => return Err(format!("lease {id}: key {k:?} missing or not attached")),
                }
            }
        }
        let recount = self.kv_size_recount();
        if recount != self.kv_bytes {
            return Err(format!("kv size {} != recount {recount}", self.kv_bytes));
        }
        for (k, h) in &self.kv {
            if h.is_empty() {
                return Err(format!("key {k:?}: empty history"));
            }
            let revs: Vec<i64> = h
                .iter()
                .map(|r| match r {
                    crate::mvcc::Rev::Put { mod_revision, .. }
                    | crate::mvcc::Rev::Del { mod_revision } => *mod_revision,
                })
                .collect();
            if revs.windows(2).any(|w| w[0] >= w[1])
                || revs.last().is_some_and(|r| *r > self.revision)
            {
                return Err(format!("key {k:?}: revisions not increasing {revs:?}"));
            }
            if let Some(kv) = self.kv_get(k) {
                if kv.lease != 0
                    && !self
                        .leases
                        .get(&kv.lease)
                        .is_some_and(|l| l.keys.contains(k))
                {
                    return Err(format!("key {k:?}: lease {} does not list it", kv.lease));
                }
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
        let before = s.clone();
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
        assert_eq!(s.tree, before.tree);
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
