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

use std::collections::BTreeMap;
use std::sync::Arc;

use janus_core::testing::*;
use janus_core::*;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{select, Index};

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
