//! Property tests for `janus-core`'s state machine.
//!
//! Random command sequences over small alphabets (so that paths, keys,
//! sessions and leases collide) are applied to a fresh [`State`], checking:
//!
//! * `check_invariants()` after every command;
//! * the revision clock: never decreases, moves by at most one per command,
//!   moves whenever a command emits events, ZooKeeper commands always take
//!   one zxid, failed etcd writes take none; event batches carry the
//!   applied revision, and so do the KV events inside them;
//! * MVCC reads: a `Range` at revision R (R >= the compacted revision) sees
//!   exactly the key space as it was right after R;
//! * determinism: the same proposals give equal states, outputs and
//!   snapshot bytes; a postcard snapshot taken mid-sequence, restored and
//!   fed the rest ends equal to the state that was never serialized;
//! * all-or-nothing: a failed ZooKeeper multi (all results `Error`) or a
//!   failed single ZooKeeper op leaves everything but the revision (+1)
//!   unchanged; a failed etcd write leaves everything unchanged.
//!
//! `reserved_session_ids_keep_invariants` is a focused check for session ids
//! whose bits `ephemeralOwner` reserves for TTL/container nodes (the core
//! refuses to open such sessions).
//!
//! Cases per property: proptest's default (256, or `PROPTEST_CASES`).

use std::sync::Arc;
use std::collections::BTreeMap;

use janus_core::zk::MAX_TTL_MS;
use janus_core::*;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{select, Index};
use proptest::strategy::Union;
use proptest::test_runner::Config;

// ---------------------------------------------------------------- generators

const NAMES: &[&str] = &["a", "b", "c"];
/// Paths that are odd in some way: built-ins, the root, invalid ones.
const ODD_PATHS: &[&str] = &[
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
const KEYS: &[&[u8]] = &[
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
const MODES: &[CreateMode] = &[
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
enum Gen {
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
struct SmartOp {
    kind: u8,
    sel: u32,
    name: &'static str,
    mode: CreateMode,
    ttl: i64,
    data: Option<Vec<u8>>,
    vmode: u8,
}

fn resolve(s: &State, op: &SmartOp) -> ZkOp {
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

fn smart_op() -> BoxedStrategy<SmartOp> {
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
struct Step {
    /// Milliseconds since the previous step.
    dt: i64,
    gen: Gen,
}

fn good_path() -> BoxedStrategy<String> {
    let depth = prop_oneof![3 => Just(1usize), 3 => Just(2usize), 1 => Just(3usize)];
    (depth, vec(select(NAMES), 3))
        .prop_map(|(d, v)| format!("/{}", v[..d].join("/")))
        .boxed()
}

fn path() -> BoxedStrategy<String> {
    prop_oneof![12 => good_path(), 1 => select(ODD_PATHS).prop_map(String::from)].boxed()
}

/// A path for a sequential create: a parent plus "" or "s-" (a sequential
/// path may end in '/').
fn seq_path() -> BoxedStrategy<String> {
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

fn zk_version() -> BoxedStrategy<i32> {
    prop_oneof![3 => Just(-1), 2 => 0..3i32].boxed()
}

fn acl() -> BoxedStrategy<Vec<Acl>> {
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

fn alice() -> Id {
    Id {
        scheme: "digest".into(),
        id: "alice:hash".into(),
    }
}

/// A client connection's ids for `Command::ZkAs`: none, alice's, super.
fn caller_ids() -> BoxedStrategy<Vec<Id>> {
    let sup = Id {
        scheme: "super".into(),
        id: "admin".into(),
    };
    prop_oneof![Just(vec![]), Just(vec![alice()]), Just(vec![sup])].boxed()
}

/// Null data too: ZooKeeper keeps it apart from empty.
fn zk_data() -> BoxedStrategy<Option<Vec<u8>>> {
    proptest::option::of(vec(any::<u8>(), 0..4)).boxed()
}

fn create_op() -> BoxedStrategy<ZkOp> {
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

fn zk_op() -> BoxedStrategy<ZkOp> {
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
fn zk_session() -> BoxedStrategy<i64> {
    prop_oneof![2 => Just(0i64), 5 => 1..=2i64, 1 => Just(3i64), 1 => Just(4i64)].boxed()
}

/// Lease ids: 1-3 are usually sessions, 4-5 etcd leases; 0 and 9 are never
/// granted.
fn lease_id() -> BoxedStrategy<i64> {
    prop_oneof![1 => Just(0i64), 8 => 1..=5i64, 1 => Just(9i64)].boxed()
}

fn key() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![20 => select(KEYS).prop_map(|k| k.to_vec()), 1 => Just(Vec::new())].boxed()
}

/// etcd's `GetPrefixRangeEnd`.
fn prefix_end(key: &[u8]) -> Vec<u8> {
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
fn key_range() -> BoxedStrategy<(Vec<u8>, Vec<u8>)> {
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

fn put_req() -> BoxedStrategy<PutRequest> {
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

fn delete_req() -> BoxedStrategy<DeleteRangeRequest> {
    (key_range(), any::<bool>())
        .prop_map(|((key, range_end), prev_kv)| DeleteRangeRequest {
            key,
            range_end,
            prev_kv,
        })
        .boxed()
}

fn range_req() -> BoxedStrategy<RangeRequest> {
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

fn compare() -> BoxedStrategy<Compare> {
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

fn request_op(depth: u32) -> BoxedStrategy<RequestOp> {
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

fn txn_req(depth: u32) -> BoxedStrategy<TxnRequest> {
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
struct Mix {
    zk: u32,
    multi: u32,
    sessions: u32,
    etcd: u32,
    leases: u32,
}

const BALANCED: Mix = Mix {
    zk: 12,
    multi: 5,
    sessions: 4,
    etcd: 16,
    leases: 4,
};
const ZK_HEAVY: Mix = Mix {
    zk: 10,
    multi: 14,
    sessions: 4,
    etcd: 3,
    leases: 2,
};

fn gen(mix: Mix) -> BoxedStrategy<Gen> {
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
fn smart_session() -> BoxedStrategy<i64> {
    prop_oneof![1 => Just(0i64), 3 => 1..=2i64, 1 => Just(3i64)].boxed()
}

/// Every sequence starts with sessions 1 and 2 and etcd leases 4 and 5
/// (later commands may close, revoke or expire them).
fn setup() -> Vec<Step> {
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

fn steps(mix: Mix) -> BoxedStrategy<Vec<Step>> {
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
fn materialize(steps: &[Step]) -> Vec<Proposal> {
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

fn config() -> Config {
    // No regression files: this crate's tests directory holds only this file.
    Config {
        failure_persistence: None,
        ..Config::default()
    }
}

// ---------------------------------------------------------------- views

/// The whole etcd key space at `revision` (0 = latest).
fn range_all(s: &State, revision: i64) -> Result<Vec<KeyValue>, EtcdError> {
    let req = RangeRequest {
        key: vec![0],
        range_end: vec![0],
        revision,
        ..Default::default()
    };
    s.kv_range(&req).map(|r| r.kvs)
}

/// One znode as the read APIs show it: path, `zk_stat`, `zk_children`, node.
type NodeView = (String, Option<Stat>, Option<Vec<String>>, ZNode);

/// Everything observable about a state except its revision.
#[derive(Debug, PartialEq)]
struct View {
    tree: Vec<NodeView>,
    leases: Vec<Lease>,
    kvs: Vec<KeyValue>,
    digest: Vec<(janus_core::Table, Vec<u8>, Vec<u8>)>,
    compacted: i64,
}

fn view(s: &State) -> View {
    View {
        tree: s
            .zk_paths_after("", usize::MAX)
            .into_iter()
            .map(|p| {
                (
                    p.clone(),
                    s.zk_stat(&p),
                    s.zk_children(&p),
                    s.znode(&p).expect("listed path"),
                )
            })
            .collect(),
        leases: s.leases(),
        kvs: range_all(s, 0).expect("latest read"),
        // The tables but the scalars (the revision may move).
        digest: s
            .dump()
            .into_iter()
            .filter(|(t, _, _)| *t != janus_core::Table::Meta)
            .collect::<Vec<_>>(),
        compacted: s.compacted_revision(),
    }
}

/// `check_invariants` plus two rules it leaves to `NodeKind`: a session's
/// ephemerals have no children, and the reaper never offers one (asked at
/// `now_ms`).
fn all_invariants(s: &State, now_ms: i64) -> Result<(), String> {
    s.check_invariants()?;
    let reapable = s.zk_reap_candidates(now_ms, usize::MAX);
    for l in s.leases().into_iter().filter(|l| l.session.is_some()) {
        for p in &s.zk_ephemerals(l.id, "") {
            if s.zk_children(p).is_some_and(|c| !c.is_empty()) {
                return Err(format!("ephemeral {p} of session {} has children", l.id));
            }
            if reapable.contains(p) {
                return Err(format!(
                    "ephemeral {p} of session {} is a reap candidate",
                    l.id
                ));
            }
        }
    }
    Ok(())
}

const DAY_MS: i64 = 86_400_000;

fn is_failed_multi(r: &Response) -> bool {
    matches!(r, Response::Zk(Ok(ZkResponse::Multi(rs))) if !rs.is_empty() && rs.iter().all(|r| matches!(r, ZkOpResult::Error(_))))
}

/// `Range` at every recorded revision: equal to the record at or after the
/// compacted revision, `Compacted` below it, `FutureRev` past the end.
fn check_reads(s: &State, recorded: &BTreeMap<i64, Vec<KeyValue>>) -> Result<(), TestCaseError> {
    let compacted = s.compacted_revision();
    for (&rev, kvs) in recorded {
        let got = range_all(s, rev);
        if rev >= compacted {
            prop_assert_eq!(
                got.as_ref(),
                Ok(kvs),
                "read at revision {} (compacted {})",
                rev,
                compacted
            );
        } else {
            prop_assert_eq!(
                got,
                Err(EtcdError::Compacted),
                "read at revision {} (compacted {})",
                rev,
                compacted
            );
        }
    }
    prop_assert_eq!(range_all(s, s.revision() + 1), Err(EtcdError::FutureRev));
    Ok(())
}

// ---------------------------------------------------------------- properties

proptest! {
    #![proptest_config(config())]

    /// Invariants after every command, and the revision clock's rules.
    #[test]
    fn invariants_and_revision_clock(steps in steps(BALANCED)) {
        let proposals = materialize(&steps);
        let mut s = State::new();
        prop_assert_eq!(s.check_invariants(), Ok(()));
        for (i, p) in proposals.iter().enumerate() {
            let before = s.revision();
            let lease_before = match &p.command {
                Command::LeaseExpire { id } => s.lease(*id).map(|l| l.session.is_some()),
                // The etcd API does not see sessions: revoking one is refused.
                Command::LeaseRevoke { id } => s.lease(*id).map(|_| false),
                _ => None,
            };
            let (a, ev) = s.apply(p);
            let after = s.revision();
            let ctx = format!("step {i}: {:?} -> {:?}", p.command, a.response);
            if let Err(e) = all_invariants(&s, p.time_ms + DAY_MS) {
                return Err(TestCaseError::fail(format!("{ctx}: invariant broken: {e}")));
            }
            prop_assert_eq!(a.revision, after, "{}", ctx);
            prop_assert_eq!(ev.revision, a.revision, "{}", ctx);
            prop_assert!(after >= before, "{}: revision went back {} -> {}", ctx, before, after);
            prop_assert!(after <= before + 1, "{}: one command took {} revisions", ctx, after - before);
            if !ev.events.is_empty() {
                prop_assert!(after > before, "{}: events {:?} without a new revision", ctx, ev.events);
            }
            for e in &ev.events {
                if let Event::KvPut { kv, .. } | Event::KvDelete { kv, .. } = e {
                    prop_assert_eq!(kv.mod_revision, a.revision, "{}: event {:?}", ctx, e);
                }
            }
            // Per-command accounting, as documented in command.rs/mvcc.rs/lease.rs.
            let delta = after - before;
            let changed = i64::from(!ev.events.is_empty());
            match (&p.command, &a.response) {
                (c, _) if c.is_zk() => prop_assert_eq!(delta, 1, "{}: a ZooKeeper txn takes one zxid", ctx),
                (Command::Noop | Command::LeaseGrant { .. } | Command::Compact { .. } | Command::ZkAttach { .. }, _) => {
                    prop_assert_eq!(delta, 0, "{}", ctx)
                }
                (Command::Put(_) | Command::DeleteRange(_) | Command::Txn(_), Response::Etcd(Err(_))) => {
                    prop_assert_eq!(delta, 0, "{}: a failed write takes no revision", ctx);
                    prop_assert!(ev.events.is_empty(), "{}", ctx);
                }
                (Command::Put(_), _) => prop_assert_eq!(delta, 1, "{}", ctx),
                (Command::DeleteRange(_), Response::Etcd(Ok(EtcdResponse::DeleteRange(d)))) => {
                    prop_assert_eq!(delta, i64::from(d.deleted > 0), "{}", ctx)
                }
                (Command::Txn(_), _) => prop_assert_eq!(delta, changed, "{}", ctx),
                (Command::LeaseRevoke { .. }, Response::Etcd(Err(_))) => {
                    prop_assert_eq!(delta, 0, "{}: a refused revoke takes nothing", ctx)
                }
                (Command::LeaseExpire { .. }, _) if lease_before == Some(true) => {
                    prop_assert_eq!(delta, 1, "{}: closing a session takes a zxid", ctx)
                }
                (Command::LeaseExpire { .. } | Command::LeaseRevoke { .. }, _) => {
                    prop_assert_eq!(delta, changed, "{}", ctx)
                }
                _ => {}
            }
        }
    }

    /// A read at revision R equals the key space right after R, for every
    /// R not compacted away.
    #[test]
    fn reads_at_old_revisions(steps in steps(BALANCED)) {
        let proposals = materialize(&steps);
        let mut s = State::new();
        let mut recorded: BTreeMap<i64, Vec<KeyValue>> = BTreeMap::new();
        recorded.insert(s.revision(), range_all(&s, 0).unwrap());
        for (i, p) in proposals.iter().enumerate() {
            let (a, _) = s.apply(p);
            let now = range_all(&s, 0).unwrap();
            match recorded.get(&a.revision) {
                // The key space never changes without the revision moving.
                Some(old) => prop_assert_eq!(old, &now, "step {}: {:?} changed keys at revision {}", i, p.command, a.revision),
                None => {
                    recorded.insert(a.revision, now);
                }
            }
            if matches!(p.command, Command::Compact { .. }) {
                check_reads(&s, &recorded)?;
            }
        }
        check_reads(&s, &recorded)?;
    }

    /// The same proposals give the same states and outputs; a snapshot taken
    /// mid-sequence, restored and fed the rest ends in the same state.
    #[test]
    fn deterministic_and_snapshot_round_trip(steps in steps(BALANCED), cut in any::<Index>()) {
        let proposals = materialize(&steps);
        let cut = cut.index(proposals.len() + 1);
        let mut a = State::new();
        let mut b = State::new();
        let mut c = State::new();
        let mut out_a = Vec::new();
        for (i, p) in proposals.iter().enumerate() {
            if i == cut {
                // A copy of the tables (as a checkpoint is), reopened.
                let restored = State::on_mem(Arc::new(c.mem_copy())).expect("reopen");
                prop_assert_eq!(restored.check_invariants(), Ok(()));
                prop_assert_eq!(restored.dump(), c.dump(), "reopen changed the state");
                c = restored;
            }
            let ra = a.apply(p);
            let rb = b.apply(p);
            let rc = c.apply(p);
            prop_assert_eq!(&ra, &rb, "step {}: {:?}", i, p.command);
            prop_assert_eq!(&ra, &rc, "step {} (after restore at {}): {:?}", i, cut, p.command);
            out_a.push(ra);
        }
        prop_assert_eq!(a.dump(), b.dump());
        prop_assert_eq!(a.dump(), c.dump());
        // Replaying from the start once more gives the same outputs.
        let mut d = State::new();
        let out_d: Vec<_> = proposals.iter().map(|p| d.apply(p)).collect();
        prop_assert_eq!(out_a, out_d);
        prop_assert_eq!(a.dump(), d.dump());
    }

    /// Failed ZooKeeper txns (a multi whose results are all `Error`, or a
    /// single op / session / reaper command answering `Err`) change nothing
    /// but the revision, which moves by one; a successful multi answers one
    /// non-error result per op; a failed etcd write changes nothing at all.
    #[test]
    fn failed_writes_are_all_or_nothing(steps in steps(ZK_HEAVY)) {
        let proposals = materialize(&steps);
        let mut s = State::new();
        for (i, p) in proposals.iter().enumerate() {
            let before = view(&s);
            let rev = s.revision();
            let (a, ev) = s.apply(p);
            let ctx = format!("step {i}: {:?} -> {:?}", p.command, a.response);
            let command = match &p.command {
                Command::ZkAs { command, .. } => &**command,
                c => c,
            };
            let zk_failed = match (command, &a.response) {
                (Command::ZkMulti { .. }, r) if is_failed_multi(r) => true,
                (Command::ZkMulti { ops, .. }, Response::Zk(Ok(ZkResponse::Multi(rs)))) => {
                    prop_assert_eq!(rs.len(), ops.len(), "{}", ctx);
                    prop_assert!(rs.iter().all(|r| !matches!(r, ZkOpResult::Error(_))), "{}: mixed results", ctx);
                    false
                }
                (c, Response::Zk(Err(_))) if c.is_zk() => true,
                _ => false,
            };
            if zk_failed {
                prop_assert_eq!(a.revision, rev + 1, "{}", ctx);
                prop_assert!(ev.events.is_empty(), "{}: events {:?}", ctx, ev.events);
                prop_assert_eq!(&view(&s), &before, "{}", ctx);
            }
            if matches!(a.response, Response::Etcd(Err(_))) {
                prop_assert_eq!(a.revision, rev, "{}", ctx);
                prop_assert!(ev.events.is_empty(), "{}: events {:?}", ctx, ev.events);
                prop_assert_eq!(&view(&s), &before, "{}", ctx);
            }
        }
    }
}

/// Session ids whose bits ZooKeeper reserves for other node kinds in
/// `ephemeralOwner` (top byte 0xFF marks a TTL node, `i64::MIN` a
/// container). `ZkCreateSession` accepts them, and an ephemeral created by
/// such a session is then treated as a TTL or container node: it accepts
/// children, and closing the session deletes it from under them (an orphaned
/// znode), or the reaper deletes it and leaves it listed in the session.
/// Either rejecting such ids or handling them makes this pass.
#[test]
fn reserved_session_ids_keep_invariants() {
    const IDS: &[i64] = &[
        -1,
        i64::MIN,
        (0xFF00_0000_0000_0007u64) as i64,
        0x7F00_0000_0000_0001,
        1,
    ];
    let strategy = (select(IDS), vec(0..7u8, 1..12));
    let mut runner = proptest::test_runner::TestRunner::new(config());
    let result = runner.run(&strategy, |(id, ops)| {
        let mut s = State::new();
        let mut time = 1_000i64;
        let create = |path: &str, mode| ZkOp::Create {
            path: path.into(),
            data: Some(vec![]),
            acl: Acl::open_unsafe(),
            mode,
            ttl_ms: -1,
        };
        for (i, op) in ops.iter().enumerate() {
            time += 1_000;
            let command = match op {
                0 => Command::ZkCreateSession {
                    session: id,
                    password: vec![],
                    timeout_ms: 4000,
                },
                1 => Command::Zk {
                    session: id,
                    op: create("/e", CreateMode::Ephemeral),
                },
                2 => Command::Zk {
                    session: 0,
                    op: create("/e/c", CreateMode::Persistent),
                },
                3 => Command::Zk {
                    session: 0,
                    op: ZkOp::Delete {
                        path: "/e/c".into(),
                        version: -1,
                    },
                },
                4 => Command::ZkCloseSession { session: id },
                5 => {
                    time += DAY_MS;
                    Command::ZkDeleteContainer { path: "/e".into() }
                }
                _ => Command::LeaseExpire { id },
            };
            let (a, _) = s.apply(&Proposal {
                time_ms: time,
                command: command.clone(),
            });
            if let Err(e) = all_invariants(&s, time + DAY_MS) {
                return Err(TestCaseError::fail(format!(
                    "step {i}: {command:?} -> {:?}: {e}",
                    a.response
                )));
            }
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// Not a property: how often the generated sequences reach the interesting
/// outcomes. Run with `cargo test --release -p janus-core --test properties
/// -- --ignored --nocapture coverage`.
#[test]
#[ignore]
fn coverage() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    let mut runner = TestRunner::deterministic();
    for mix in [BALANCED, ZK_HEAVY] {
        for _ in 0..256 {
            let steps = steps(mix).new_tree(&mut runner).unwrap().current();
            let mut s = State::new();
            for p in materialize(&steps) {
                let had_attachments = match &p.command {
                    Command::LeaseRevoke { id }
                    | Command::LeaseExpire { id }
                    | Command::ZkCloseSession { session: id } => s.lease(*id).map(|l| {
                        format!(
                            "keys={} ephemerals={}",
                            !s.lease_keys(l.id).is_empty(),
                            !s.zk_ephemerals(l.id, "").is_empty()
                        )
                    }),
                    _ => None,
                };
                let (a, ev) = s.apply(&p);
                let name = format!("{:?}", p.command);
                let name = name.split([' ', '(', '{']).next().unwrap().to_string();
                let outcome = match &a.response {
                    Response::Zk(Ok(ZkResponse::Multi(_))) if is_failed_multi(&a.response) => {
                        "multi failed".to_string()
                    }
                    Response::Zk(Ok(ZkResponse::Multi(rs))) => {
                        format!("multi ok ({} ops)", rs.len())
                    }
                    Response::Zk(Ok(ZkResponse::Op(r))) => format!("{:?}", r)
                        .split([' ', '(', '{'])
                        .next()
                        .unwrap()
                        .to_string(),
                    Response::Zk(Ok(r)) => format!("{r:?}"),
                    Response::Zk(Err(e)) => format!("Err({e:?})"),
                    Response::Etcd(Ok(EtcdResponse::Txn(t))) => {
                        format!("Txn succeeded={}", t.succeeded)
                    }
                    Response::Etcd(Ok(EtcdResponse::DeleteRange(d))) => {
                        format!("deleted>0={}", d.deleted > 0)
                    }
                    Response::Etcd(Ok(r)) => format!("{r:?}")
                        .split([' ', '(', '{'])
                        .next()
                        .unwrap()
                        .to_string(),
                    Response::Etcd(Err(e)) => format!("Err({e:?})"),
                    r => format!("{r:?}"),
                };
                *counts
                    .entry(format!(
                        "{name}: {outcome} {}",
                        had_attachments.unwrap_or_default()
                    ))
                    .or_default() += 1;
                for e in ev.events {
                    let e = format!("{e:?}");
                    *counts
                        .entry(format!(
                            "event {}",
                            e.split([' ', '(', '{']).next().unwrap()
                        ))
                        .or_default() += 1;
                }
                if let Command::Zk {
                    op: ZkOp::Create { mode, .. },
                    ..
                } = &p.command
                {
                    if matches!(a.response, Response::Zk(Ok(_))) {
                        *counts.entry(format!("created {mode:?}")).or_default() += 1;
                    }
                }
            }
            *counts
                .entry(format!(
                    "final znodes>{}",
                    (s.zk_node_count() as usize).saturating_sub(4) / 5 * 5
                ))
                .or_default() += 1;
            *counts
                .entry(format!("final compacted>0 {}", s.compacted_revision() > 0))
                .or_default() += 1;
        }
    }
    for (k, v) in counts {
        println!("{v:8}  {k}");
    }
}
