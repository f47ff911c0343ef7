//! Random command sequences for property tests (here and in the store's
//! differential test): small alphabets of paths, keys, sessions and leases
//! so that commands collide. Built with the `testing` feature.

#![allow(missing_docs)]

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::strategy::Union;
use proptest::test_runner::Config;

use crate::zk::MAX_TTL_MS;
use crate::*;

// ---------------------------------------------------------------- generators

pub const NAMES: &[&str] = &["a", "b", "c"];
/// Paths that are odd in some way: built-ins, the root, invalid ones.
pub const ODD_PATHS: &[&str] = &[
    "/",
    "/zookeeper",
    "/zookeeper/quota",
    "/zookeeper/config",
    "",
    "a",
    "/a/",
    "/a//b",
    "/a/..",
    "/a\u{1}",
];
pub const KEYS: &[&[u8]] = &[
    b"a",
    b"ab",
    b"abc",
    b"b",
    b"ba",
    b"c",
    b"\0",
    b"\xff",
    b"\xff\xff",
];
pub const MODES: &[CreateMode] = &[
    CreateMode::Persistent,
    CreateMode::Ephemeral,
    CreateMode::PersistentSequential,
    CreateMode::EphemeralSequential,
    CreateMode::Container,
    CreateMode::PersistentWithTtl,
    CreateMode::PersistentSequentialWithTtl,
];

/// A generated step. Most are concrete commands; a few are resolved against
/// the state at the time they run (so that they are mostly valid).
#[derive(Debug, Clone)]
pub enum Gen {
    Cmd(Command),
    /// `Compact` at a revision in `(compacted, current]`, picked by the number.
    CompactValid(u32),
    /// `ZkDeleteContainer` of one of the current reap candidates.
    Reap(u32),
    /// A ZooKeeper write (a multi if `multi`) whose ops name existing nodes.
    Smart {
        session: i64,
        multi: bool,
        ops: Vec<SmartOp>,
    },
}

/// A ZooKeeper op resolved against the tree when it runs: `sel` picks an
/// existing node (the parent, for a create), `vmode` the expected version
/// (any, the current one, or a wrong one).
#[derive(Debug, Clone)]
pub struct SmartOp {
    pub kind: u8,
    pub sel: u32,
    pub name: &'static str,
    pub mode: CreateMode,
    pub ttl: i64,
    pub data: Option<Vec<u8>>,
    pub vmode: u8,
}

pub fn resolve(s: &State, op: &SmartOp) -> ZkOp {
    let paths = s.zk_paths_after("", usize::MAX);
    let path = paths[op.sel as usize % paths.len()].clone();
    let stat = s.zk_stat(&path).unwrap_or_default();
    let version = |current: i32| match op.vmode % 4 {
        0 | 1 => -1,
        2 => current,
        _ => current + 1,
    };
    match op.kind % 8 {
        0..=2 => {
            let mut child = if path == "/" {
                format!("/{}", op.name)
            } else {
                format!("{path}/{}", op.name)
            };
            if op.mode.is_sequential() {
                child.push('-');
            }
            let ttl_ms = if op.mode.is_ttl() { op.ttl } else { -1 };
            ZkOp::Create {
                path: child,
                data: op.data.clone(),
                acl: Acl::open_unsafe(),
                mode: op.mode,
                ttl_ms,
            }
        }
        3 | 4 => ZkOp::Delete {
            path,
            version: version(stat.version),
        },
        5 => ZkOp::SetData {
            path,
            data: op.data.clone(),
            version: version(stat.version),
        },
        6 => ZkOp::Check {
            path,
            version: version(stat.version),
        },
        _ => ZkOp::SetAcl {
            path,
            acl: Acl::open_unsafe(),
            version: version(stat.aversion),
        },
    }
}

pub fn smart_op() -> BoxedStrategy<SmartOp> {
    (
        any::<u8>(),
        any::<u32>(),
        select(NAMES),
        select(MODES),
        1..4000i64,
        zk_data(),
        any::<u8>(),
    )
        .prop_map(|(kind, sel, name, mode, ttl, data, vmode)| SmartOp {
            kind,
            sel,
            name,
            mode,
            ttl,
            data,
            vmode,
        })
        .boxed()
}

#[derive(Debug, Clone)]
pub struct Step {
    /// Milliseconds since the previous step.
    pub dt: i64,
    pub gen: Gen,
}

pub fn good_path() -> BoxedStrategy<String> {
    let depth = prop_oneof![3 => Just(1usize), 3 => Just(2usize), 1 => Just(3usize)];
    (depth, vec(select(NAMES), 3))
        .prop_map(|(d, v)| format!("/{}", v[..d].join("/")))
        .boxed()
}

pub fn path() -> BoxedStrategy<String> {
    prop_oneof![12 => good_path(), 1 => select(ODD_PATHS).prop_map(String::from)].boxed()
}

/// A path for a sequential create: a parent plus "" or "s-" (a sequential
/// path may end in '/').
pub fn seq_path() -> BoxedStrategy<String> {
    (vec(select(NAMES), 0..=2), select(&["", "s-"][..]))
        .prop_map(|(parent, suffix)| {
            let mut p = String::new();
            for n in parent {
                p.push('/');
                p.push_str(n);
            }
            format!("{p}/{suffix}")
        })
        .boxed()
}

pub fn zk_version() -> BoxedStrategy<i32> {
    prop_oneof![3 => Just(-1), 2 => 0..3i32].boxed()
}

pub fn acl() -> BoxedStrategy<Vec<Acl>> {
    let read_only = vec![Acl {
        perms: zk::perms::READ,
        id: Id {
            scheme: "world".into(),
            id: "anyone".into(),
        },
    }];
    let alice_only = vec![Acl {
        perms: zk::perms::ALL,
        id: alice(),
    }];
    prop_oneof![
        8 => Just(Acl::open_unsafe()),
        1 => Just(read_only),
        1 => Just(alice_only),
        1 => Just(vec![])
    ]
    .boxed()
}

pub fn alice() -> Id {
    Id {
        scheme: "digest".into(),
        id: "alice:hash".into(),
    }
}

/// A client connection's ids for `Command::ZkAs`: none, alice's, super.
pub fn caller_ids() -> BoxedStrategy<Vec<Id>> {
    let sup = Id {
        scheme: "super".into(),
        id: "admin".into(),
    };
    prop_oneof![Just(vec![]), Just(vec![alice()]), Just(vec![sup])].boxed()
}

/// Null data too: ZooKeeper keeps it apart from empty.
pub fn zk_data() -> BoxedStrategy<Option<Vec<u8>>> {
    proptest::option::of(vec(any::<u8>(), 0..4)).boxed()
}

pub fn create_op() -> BoxedStrategy<ZkOp> {
    let path = prop_oneof![4 => path(), 1 => seq_path()];
    (
        path,
        zk_data(),
        acl(),
        select(MODES),
        any::<u8>(),
        1..4000i64,
    )
        .prop_map(|(path, data, acl, mode, choice, ttl)| {
            let ttl_ms = if mode.is_ttl() {
                match choice % 10 {
                    0 => 0,
                    1 => -1,
                    2 => MAX_TTL_MS + 1,
                    3 => MAX_TTL_MS,
                    _ => ttl,
                }
            } else {
                match choice % 12 {
                    0 => 0,
                    1 => ttl,
                    _ => -1,
                }
            };
            ZkOp::Create {
                path,
                data,
                acl,
                mode,
                ttl_ms,
            }
        })
        .boxed()
}

pub fn zk_op() -> BoxedStrategy<ZkOp> {
    prop_oneof![
        4 => create_op(),
        2 => (path(), zk_version()).prop_map(|(path, version)| ZkOp::Delete { path, version }),
        2 => (path(), zk_data(), zk_version()).prop_map(|(path, data, version)| ZkOp::SetData { path, data, version }),
        1 => (path(), acl(), zk_version()).prop_map(|(path, acl, version)| ZkOp::SetAcl { path, acl, version }),
        1 => (path(), zk_version()).prop_map(|(path, version)| ZkOp::Check { path, version }),
    ]
    .boxed()
}

/// Session ids used by ZooKeeper writes: 0 (internal), sessions 1-3, and 4,
/// which is usually an etcd lease.
pub fn zk_session() -> BoxedStrategy<i64> {
    prop_oneof![2 => Just(0i64), 5 => 1..=2i64, 1 => Just(3i64), 1 => Just(4i64)].boxed()
}

/// Lease ids: 1-3 are usually sessions, 4-5 etcd leases; 0 and 9 are never
/// granted.
pub fn lease_id() -> BoxedStrategy<i64> {
    prop_oneof![1 => Just(0i64), 8 => 1..=5i64, 1 => Just(9i64)].boxed()
}

pub fn key() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![20 => select(KEYS).prop_map(|k| k.to_vec()), 1 => Just(Vec::new())].boxed()
}

/// etcd's `GetPrefixRangeEnd`.
pub fn prefix_end(key: &[u8]) -> Vec<u8> {
    let mut end = key.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// A key and a range end: the key alone, its prefix, everything from it
/// ("\0"), or up to another key (possibly below it: an empty range).
pub fn key_range() -> BoxedStrategy<(Vec<u8>, Vec<u8>)> {
    (key(), 0..5u8, select(KEYS))
        .prop_map(|(k, kind, other)| {
            let end = match kind {
                0 | 1 => Vec::new(),
                2 => prefix_end(&k),
                3 => vec![0],
                _ => other.to_vec(),
            };
            (k, end)
        })
        .boxed()
}

pub fn put_req() -> BoxedStrategy<PutRequest> {
    let lease = prop_oneof![5 => Just(0i64), 3 => 1..=5i64, 1 => Just(9i64)];
    (
        key(),
        vec(any::<u8>(), 0..3),
        lease,
        any::<bool>(),
        prop::bool::weighted(0.15),
        prop::bool::weighted(0.15),
    )
        .prop_map(
            |(key, value, lease, prev_kv, ignore_value, ignore_lease)| PutRequest {
                key,
                value,
                lease,
                prev_kv,
                ignore_value,
                ignore_lease,
            },
        )
        .boxed()
}

pub fn delete_req() -> BoxedStrategy<DeleteRangeRequest> {
    (key_range(), any::<bool>())
        .prop_map(|((key, range_end), prev_kv)| DeleteRangeRequest {
            key,
            range_end,
            prev_kv,
        })
        .boxed()
}

pub fn range_req() -> BoxedStrategy<RangeRequest> {
    let revision = prop_oneof![6 => Just(0i64), 1 => 1..40i64];
    let sort_order = select(&[SortOrder::None, SortOrder::Ascend, SortOrder::Descend][..]);
    let sort_target = select(
        &[
            SortTarget::Key,
            SortTarget::Version,
            SortTarget::Create,
            SortTarget::Mod,
            SortTarget::Value,
        ][..],
    );
    (
        key_range(),
        revision,
        0..3i64,
        sort_order,
        sort_target,
        any::<bool>(),
        prop::bool::weighted(0.2),
        0..4i64,
    )
        .prop_map(
            |(
                (key, range_end),
                revision,
                limit,
                sort_order,
                sort_target,
                keys_only,
                count_only,
                min_mod,
            )| {
                RangeRequest {
                    key,
                    range_end,
                    limit,
                    revision,
                    sort_order,
                    sort_target,
                    keys_only,
                    count_only,
                    min_mod_revision: min_mod,
                    ..Default::default()
                }
            },
        )
        .boxed()
}

pub fn compare() -> BoxedStrategy<Compare> {
    let result = select(
        &[
            CompareResult::Equal,
            CompareResult::Greater,
            CompareResult::Less,
            CompareResult::NotEqual,
        ][..],
    );
    let target = prop_oneof![
        (0..4i64).prop_map(CompareTarget::Version),
        (0..20i64).prop_map(CompareTarget::Create),
        (0..20i64).prop_map(CompareTarget::Mod),
        vec(any::<u8>(), 0..2).prop_map(CompareTarget::Value),
        (0..=5i64).prop_map(CompareTarget::Lease),
    ];
    (result, target, key_range())
        .prop_map(|(result, target, (key, range_end))| Compare {
            result,
            target,
            key,
            range_end,
        })
        .boxed()
}

pub fn request_op(depth: u32) -> BoxedStrategy<RequestOp> {
    let flat = prop_oneof![
        2 => range_req().prop_map(RequestOp::Range),
        4 => put_req().prop_map(RequestOp::Put),
        2 => delete_req().prop_map(RequestOp::DeleteRange),
    ];
    if depth == 0 {
        flat.boxed()
    } else {
        prop_oneof![8 => flat, 1 => txn_req(depth - 1).prop_map(RequestOp::Txn)].boxed()
    }
}

pub fn txn_req(depth: u32) -> BoxedStrategy<TxnRequest> {
    (
        vec(compare(), 0..3),
        vec(request_op(depth), 0..4),
        vec(request_op(depth), 0..3),
    )
        .prop_map(|(compare, success, failure)| TxnRequest {
            compare,
            success,
            failure,
        })
        .boxed()
}

/// Relative weights of the command families.
#[derive(Clone, Copy)]
pub struct Mix {
    pub zk: u32,
    pub multi: u32,
    pub sessions: u32,
    pub etcd: u32,
    pub leases: u32,
}

pub const BALANCED: Mix = Mix {
    zk: 12,
    multi: 5,
    sessions: 4,
    etcd: 16,
    leases: 4,
};
pub const ZK_HEAVY: Mix = Mix {
    zk: 10,
    multi: 14,
    sessions: 4,
    etcd: 3,
    leases: 2,
};

pub fn gen(mix: Mix) -> BoxedStrategy<Gen> {
    let cmd = |s: BoxedStrategy<Command>| s.prop_map(Gen::Cmd).boxed();
    let arms: Vec<(u32, BoxedStrategy<Gen>)> = vec![
        (1, Just(Gen::Cmd(Command::Noop)).boxed()),
        (
            mix.sessions * 2,
            cmd((1..=4i64, vec(any::<u8>(), 0..2), 1000..6000i64)
                .prop_map(|(session, password, timeout_ms)| Command::ZkCreateSession {
                    session,
                    password,
                    timeout_ms,
                })
                .boxed()),
        ),
        (
            mix.sessions,
            cmd(lease_id()
                .prop_map(|session| Command::ZkCloseSession { session })
                .boxed()),
        ),
        (
            mix.zk,
            cmd((zk_session(), zk_op())
                .prop_map(|(session, op)| Command::Zk { session, op })
                .boxed()),
        ),
        (
            mix.zk,
            (smart_session(), smart_op())
                .prop_map(|(session, op)| Gen::Smart {
                    session,
                    multi: false,
                    ops: vec![op],
                })
                .boxed(),
        ),
        (
            mix.multi,
            cmd((zk_session(), vec(zk_op(), 1..=4))
                .prop_map(|(session, ops)| Command::ZkMulti { session, ops })
                .boxed()),
        ),
        // Client writes, ACLs checked as they apply.
        (
            mix.zk,
            cmd((caller_ids(), 0..3u64, zk_session(), zk_op())
                .prop_map(|(ids, owner, session, op)| Command::ZkAs {
                    ids,
                    owner,
                    command: Box::new(Command::Zk { session, op }),
                })
                .boxed()),
        ),
        (
            mix.multi,
            cmd((caller_ids(), 0..3u64, zk_session(), vec(zk_op(), 1..=4))
                .prop_map(|(ids, owner, session, ops)| Command::ZkAs {
                    ids,
                    owner,
                    command: Box::new(Command::ZkMulti { session, ops }),
                })
                .boxed()),
        ),
        // A session re-established on connection 1 or 2.
        (
            mix.sessions,
            cmd((lease_id(), 1..3u64)
                .prop_map(|(session, owner)| Command::ZkAttach { session, owner })
                .boxed()),
        ),
        (
            mix.multi,
            (smart_session(), vec(smart_op(), 1..=4))
                .prop_map(|(session, ops)| Gen::Smart {
                    session,
                    multi: true,
                    ops,
                })
                .boxed(),
        ),
        (
            mix.zk / 6,
            cmd(path()
                .prop_map(|path| Command::ZkDeleteContainer { path })
                .boxed()),
        ),
        (mix.zk / 4, any::<u32>().prop_map(Gen::Reap).boxed()),
        (mix.etcd / 2, cmd(put_req().prop_map(Command::Put).boxed())),
        (
            mix.etcd / 5,
            cmd(delete_req().prop_map(Command::DeleteRange).boxed()),
        ),
        (mix.etcd / 4, cmd(txn_req(2).prop_map(Command::Txn).boxed())),
        (
            mix.etcd / 16,
            any::<u32>().prop_map(Gen::CompactValid).boxed(),
        ),
        (
            mix.etcd / 16,
            cmd((-1..40i64)
                .prop_map(|revision| Command::Compact { revision })
                .boxed()),
        ),
        (
            mix.leases * 2,
            cmd((
                lease_id(),
                prop_oneof![9 => 1..100i64, 1 => Just(lease::MAX_LEASE_TTL_SECS + 1)],
            )
                .prop_map(|(id, ttl_secs)| Command::LeaseGrant { id, ttl_secs })
                .boxed()),
        ),
        (
            mix.leases,
            cmd(lease_id()
                .prop_map(|id| Command::LeaseRevoke { id })
                .boxed()),
        ),
        (
            mix.leases,
            cmd(lease_id()
                .prop_map(|id| Command::LeaseExpire { id })
                .boxed()),
        ),
    ];
    Union::new_weighted(arms.into_iter().map(|(w, s)| (w.max(1), s)).collect()).boxed()
}

/// Sessions for the state-aware ops: mostly the two opened at the start.
pub fn smart_session() -> BoxedStrategy<i64> {
    prop_oneof![1 => Just(0i64), 3 => 1..=2i64, 1 => Just(3i64)].boxed()
}

/// Every sequence starts with sessions 1 and 2 and etcd leases 4 and 5
/// (later commands may close, revoke or expire them).
pub fn setup() -> Vec<Step> {
    let cmds = [
        Command::ZkCreateSession {
            session: 1,
            password: vec![1],
            timeout_ms: 4000,
        },
        Command::ZkCreateSession {
            session: 2,
            password: vec![2],
            timeout_ms: 4000,
        },
        Command::LeaseGrant {
            id: 4,
            ttl_secs: 60,
        },
        Command::LeaseGrant {
            id: 5,
            ttl_secs: 60,
        },
    ];
    cmds.into_iter()
        .map(|c| Step {
            dt: 0,
            gen: Gen::Cmd(c),
        })
        .collect()
}

pub fn steps(mix: Mix) -> BoxedStrategy<Vec<Step>> {
    let dt = prop_oneof![3 => 0..50i64, 2 => 0..3000i64];
    vec(
        (dt, gen(mix)).prop_map(|(dt, gen)| Step { dt, gen }),
        1..150,
    )
    .prop_map(|v| setup().into_iter().chain(v).collect())
    .boxed()
}

/// Turn generated steps into concrete proposals, resolving the
/// state-dependent ones against a scratch state.
pub fn materialize(steps: &[Step]) -> Vec<Proposal> {
    let mut s = State::new();
    let mut time = 1_700_000_000_000i64;
    let mut out = Vec::with_capacity(steps.len());
    for st in steps {
        time += st.dt;
        let command = match &st.gen {
            Gen::Cmd(c) => c.clone(),
            Gen::CompactValid(x) => {
                let (lo, hi) = (s.compacted_revision(), s.revision());
                let revision = if hi > lo {
                    lo + 1 + (*x as i64) % (hi - lo)
                } else {
                    hi
                };
                Command::Compact { revision }
            }
            Gen::Reap(x) => {
                let c = s.zk_reap_candidates(time, 64);
                let path = if c.is_empty() {
                    "/a".to_string()
                } else {
                    c[*x as usize % c.len()].clone()
                };
                Command::ZkDeleteContainer { path }
            }
            Gen::Smart {
                session,
                multi,
                ops,
            } => {
                let mut ops: Vec<ZkOp> = ops.iter().map(|o| resolve(&s, o)).collect();
                if *multi {
                    Command::ZkMulti {
                        session: *session,
                        ops,
                    }
                } else {
                    Command::Zk {
                        session: *session,
                        op: ops.remove(0),
                    }
                }
            }
        };
        let p = Proposal {
            time_ms: time,
            command,
        };
        s.apply(&p);
        out.push(p);
    }
    out
}

pub fn config() -> Config {
    // No regression files: this crate's tests directory holds only this file.
    Config {
        failure_persistence: None,
        ..Config::default()
    }
}
