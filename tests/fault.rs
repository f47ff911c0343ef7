//! The fault suite: a three-member cluster whose peer links run through a
//! fault-injecting proxy, under kill -9 (leader and follower) and restart,
//! SIGSTOP/SIGCONT, a member cut off (blackholed or dropped links) and slow
//! links, while etcd clients (tonic, generated from proto/etcd) and
//! ZooKeeper clients (a small client of the wire protocol) run a mixed
//! workload and record every operation. Afterwards:
//! - the etcd history is checked for linearizability (a register with
//!   put/get/CAS/delete per key, Wing-Gong/porcupine search);
//! - the ZooKeeper writes are checked for linearizability (the version
//!   counter of each znode), and each session's reads for ZooKeeper's
//!   ordering guarantee: never older than what the session already saw;
//! - every acknowledged write is present on every member.
//!
//! The checker's own tests come first: known linearizable and known
//! non-linearizable histories (a stale read must be rejected).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use janus_etcd::pb::etcdserverpb as pb;
use janus_etcd::pb::etcdserverpb::kv_client::KvClient;
use janus_tests::linearizability::{self as lin, kv, znode, Op, Outcome};
use janus_tests::proxy::{Fault, Proxies};
use janus_tests::slowdisk::SlowDisk;
use janus_tests::{start_proxied_cluster, Janus};
use tonic::transport::{Channel, Endpoint};

// ---------------------------------------------------------------------
// The checker on known histories.

fn op<I, O>(client: usize, input: I, output: Option<O>, call: u64, ret: u64) -> Op<I, O> {
    Op {
        client,
        input,
        output,
        call,
        ret,
    }
}

fn put(v: u64) -> kv::Input {
    kv::Input::Put {
        key: "k".into(),
        value: v,
    }
}
fn get() -> kv::Input {
    kv::Input::Get { key: "k".into() }
}
fn cas(expect: Option<u64>, value: u64) -> kv::Input {
    kv::Input::Cas {
        key: "k".into(),
        expect,
        value,
    }
}
fn val(v: Option<u64>) -> Option<kv::Output> {
    Some(kv::Output::Value(v))
}

const BUDGET: u64 = 100_000_000;

#[test]
fn checker_accepts_linearizable_kv_histories() {
    use kv::Output::*;
    // Sequential.
    let h = vec![
        op(0, put(1), Some(Ok), 0, 10),
        op(1, get(), val(Some(1)), 20, 30),
        op(0, cas(Some(1), 2), Some(Succeeded(true)), 40, 50),
        op(1, cas(Some(1), 3), Some(Succeeded(false)), 60, 70),
        op(
            0,
            kv::Input::Delete { key: "k".into() },
            Some(Deleted(1)),
            80,
            90,
        ),
        op(1, get(), val(None), 100, 110),
    ];
    assert_eq!(lin::check(&kv::Register, &h, BUDGET), Outcome::Linearizable);
    // Concurrent: a read overlapping a write may see either value, and two
    // reads overlapping it may disagree as long as they don't go back.
    let h = vec![
        op(0, put(1), Some(Ok), 0, 10),
        op(1, put(2), Some(Ok), 20, 100),
        op(2, get(), val(Some(2)), 30, 40),
        op(3, get(), val(Some(1)), 25, 35),
        op(2, get(), val(Some(2)), 50, 60),
    ];
    assert_eq!(lin::check(&kv::Register, &h, BUDGET), Outcome::Linearizable);
    // An unknown outcome may have happened late (the read after it sees it)...
    let h = vec![
        op(0, put(1), None, 0, 0),
        op(1, get(), val(None), 10, 20),
        op(1, get(), val(Some(1)), 30, 40),
    ];
    assert_eq!(lin::check(&kv::Register, &h, BUDGET), Outcome::Linearizable);
    // ... or never.
    let h = vec![op(0, put(1), None, 0, 0), op(1, get(), val(None), 10, 20)];
    assert_eq!(lin::check(&kv::Register, &h, BUDGET), Outcome::Linearizable);
    // An unknown CAS that cannot apply when called but can later, after
    // another write, and a read that needs it to have applied then.
    let h = vec![
        op(0, put(1), Some(Ok), 0, 5),
        op(1, cas(Some(2), 3), None, 6, 0),
        op(0, put(2), Some(Ok), 10, 20),
        op(2, get(), val(Some(3)), 30, 40),
        op(3, cas(Some(9), 4), None, 31, 0),
    ];
    assert_eq!(lin::check(&kv::Register, &h, BUDGET), Outcome::Linearizable);
    // ... but not before its call.
    let h = vec![
        op(0, put(1), Some(Ok), 0, 5),
        op(0, put(2), Some(Ok), 10, 20),
        op(2, get(), val(Some(3)), 30, 40),
        op(1, cas(Some(2), 3), None, 45, 0),
    ];
    assert!(matches!(
        lin::check(&kv::Register, &h, BUDGET),
        Outcome::Illegal { .. }
    ));
}

#[test]
fn checker_rejects_a_stale_read() {
    use kv::Output::*;
    // put 1, then put 2 completes, then a read still returns 1.
    let h = vec![
        op(0, put(1), Some(Ok), 0, 10),
        op(0, put(2), Some(Ok), 20, 30),
        op(1, get(), val(Some(1)), 40, 50),
    ];
    assert!(matches!(
        lin::check(&kv::Register, &h, BUDGET),
        Outcome::Illegal { .. }
    ));
    // Two sequential reads going back while a write is still running.
    let h = vec![
        op(0, put(1), Some(Ok), 0, 10),
        op(0, put(2), Some(Ok), 20, 100),
        op(1, get(), val(Some(2)), 30, 40),
        op(1, get(), val(Some(1)), 50, 60),
    ];
    assert!(matches!(
        lin::check(&kv::Register, &h, BUDGET),
        Outcome::Illegal { .. }
    ));
}

#[test]
fn checker_rejects_lost_writes_and_bad_cas() {
    use kv::Output::*;
    // An acknowledged write lost: the read after it sees nothing.
    let h = vec![
        op(0, put(1), Some(Ok), 0, 10),
        op(1, get(), val(None), 20, 30),
    ];
    assert!(matches!(
        lin::check(&kv::Register, &h, BUDGET),
        Outcome::Illegal { .. }
    ));
    // Two CAS from the same expected value both succeed.
    let h = vec![
        op(0, put(1), Some(Ok), 0, 10),
        op(1, cas(Some(1), 2), Some(Succeeded(true)), 20, 40),
        op(2, cas(Some(1), 3), Some(Succeeded(true)), 25, 45),
    ];
    assert!(matches!(
        lin::check(&kv::Register, &h, BUDGET),
        Outcome::Illegal { .. }
    ));
    // A read of a value nobody wrote.
    let h = vec![op(1, get(), val(Some(9)), 20, 30)];
    assert!(matches!(
        lin::check(&kv::Register, &h, BUDGET),
        Outcome::Illegal { .. }
    ));
    // Partitioned by key: the anomaly is found in its key only.
    let mut h = vec![
        op(0, put(1), Some(Ok), 0, 10),
        op(1, get(), val(None), 20, 30),
    ];
    h.push(op(
        2,
        kv::Input::Put {
            key: "other".into(),
            value: 5,
        },
        Some(Ok),
        0,
        10,
    ));
    let (parts, bad, _) =
        lin::check_partitioned(&kv::Register, &h, |i| i.key().to_string(), BUDGET);
    assert_eq!(parts, 2);
    assert_eq!(bad.len(), 1);
    assert_eq!(bad[0].0, "k");
}

#[test]
fn checker_znode_versions() {
    use znode::Input::*;
    use znode::Output::*;
    let set = |expect| SetData {
        path: "/a".into(),
        expect,
    };
    let read = || ReadVersion { path: "/a".into() };
    let ok = vec![
        op(0, set(-1), Some(Version(1)), 0, 10),
        op(1, set(1), Some(Version(2)), 20, 40),
        op(2, set(1), Some(BadVersion), 25, 45),
        op(3, set(-1), None, 50, 0),
        op(0, read(), Some(Version(3)), 100, 110),
    ];
    assert_eq!(
        lin::check(&znode::Versions, &ok, BUDGET),
        Outcome::Linearizable
    );
    // Two writes yielding the same version, and a lost acknowledged write.
    let dup = vec![
        op(0, set(-1), Some(Version(1)), 0, 10),
        op(1, set(-1), Some(Version(1)), 20, 30),
    ];
    assert!(matches!(
        lin::check(&znode::Versions, &dup, BUDGET),
        Outcome::Illegal { .. }
    ));
    let lost = vec![
        op(0, set(-1), Some(Version(1)), 0, 10),
        op(0, read(), Some(Version(0)), 20, 30),
    ];
    assert!(matches!(
        lin::check(&znode::Versions, &lost, BUDGET),
        Outcome::Illegal { .. }
    ));
}

/// A linearizable history made up by running a register sequentially and
/// widening every operation's interval around its linearization point;
/// some writes time out (unknown outcome, some never happened).
fn synthetic_znode_history(n: usize, seed: u64) -> Vec<Op<znode::Input, znode::Output>> {
    let mut rng = Rng(seed);
    let mut version = 0;
    let mut h = Vec::new();
    let path = || "/a".to_string();
    for k in 0..n {
        let lin_at = 100 * k as u64 + 1000;
        let call = lin_at - rng.below(150);
        let ret = lin_at + rng.below(150);
        let roll = rng.below(100);
        let expect = if roll < 50 {
            -1
        } else {
            version - rng.below(2) as i32
        };
        let (input, mut output) = (
            znode::Input::SetData {
                path: path(),
                expect,
            },
            if expect == -1 || expect == version {
                version += 1;
                Some(znode::Output::Version(version))
            } else {
                Some(znode::Output::BadVersion)
            },
        );
        if roll % 10 == 0 {
            output = None;
        }
        h.push(op(k % 4, input, output, call, ret));
        if roll % 17 == 0 {
            // Timed out and never happened.
            h.push(op(
                4,
                znode::Input::SetData {
                    path: path(),
                    expect: -1,
                },
                None,
                call,
                0,
            ));
        }
    }
    h.push(op(
        5,
        znode::Input::ReadVersion { path: path() },
        Some(znode::Output::Version(version)),
        100 * n as u64 + 2000,
        100 * n as u64 + 2001,
    ));
    h
}

#[test]
fn checker_handles_many_unknown_outcomes() {
    let started = Instant::now();
    for seed in 1..4 {
        let h = synthetic_znode_history(2000, seed);
        assert_eq!(
            lin::check(&znode::Versions, &h, BUDGET),
            Outcome::Linearizable,
            "seed {seed}"
        );
        // The same history with one acknowledged version off is rejected.
        let mut bad = h.clone();
        let i = bad
            .iter()
            .position(|o| matches!(o.output, Some(znode::Output::Version(_))))
            .expect("a write");
        bad[i].output = Some(znode::Output::Version(1000));
        assert!(matches!(
            lin::check(&znode::Versions, &bad, BUDGET),
            Outcome::Illegal { .. }
        ));
    }
    assert!(started.elapsed() < Duration::from_secs(60));
}

#[test]
fn revision_clock_check() {
    assert!(check_revision_clock(vec![(0, 10, 5), (20, 30, 7), (5, 25, 6)]).is_empty());
    // Overlapping writes may take revisions in either order.
    assert!(check_revision_clock(vec![(0, 30, 8), (10, 20, 7)]).is_empty());
    // Acknowledged before the other began, yet a higher revision.
    assert_eq!(check_revision_clock(vec![(0, 10, 9), (20, 30, 7)]).len(), 1);
    // One revision twice.
    assert_eq!(check_revision_clock(vec![(0, 10, 7), (20, 30, 7)]).len(), 1);
}

#[test]
fn session_check_rejects_going_back() {
    let w = |client, session, version, mzxid, data, call, ret| ZkOp {
        client,
        session,
        path: "/k".into(),
        kind: ZkKind::Set { expect: -1, data },
        res: ZkRes::Written { version, mzxid },
        header_zxid: mzxid,
        call,
        ret,
    };
    let r = |client, session, version, mzxid, data, header_zxid, call, ret| ZkOp {
        client,
        session,
        path: "/k".into(),
        kind: ZkKind::Get,
        res: ZkRes::Read {
            version,
            mzxid,
            data,
        },
        header_zxid,
        call,
        ret,
    };
    // Session 1 reads an old version from a lagging member: fine (sequential
    // consistency), as long as it never goes back.
    let good = vec![
        w(0, 0, 1, 10, 1, 0, 10),
        w(0, 0, 2, 20, 2, 20, 30),
        r(1, 1, 1, 10, Some(1), 15, 40, 50),
        r(1, 1, 2, 20, Some(2), 25, 60, 70),
    ];
    assert_eq!(check_zk_sessions(&good), Vec::<String>::new());
    // Going back after having seen version 2.
    let mut bad = good.clone();
    bad.push(r(1, 1, 1, 10, Some(1), 25, 80, 90));
    assert_eq!(
        check_zk_sessions(&bad).len(),
        1,
        "{:?}",
        check_zk_sessions(&bad)
    );
    // Reading older than its own write.
    let own = vec![
        w(0, 0, 1, 10, 1, 0, 10),
        w(1, 1, 2, 20, 2, 20, 30),
        r(1, 1, 1, 10, Some(1), 15, 40, 50),
    ];
    assert_eq!(check_zk_sessions(&own).len(), 1);
    // Data that does not belong to the version.
    let wrong = vec![
        w(0, 0, 1, 10, 1, 0, 10),
        r(1, 1, 1, 10, Some(7), 15, 40, 50),
    ];
    assert!(!check_zk_sessions(&wrong).is_empty());
}

// ---------------------------------------------------------------------
// Histories of the workload.

/// Nanoseconds since the suite began.
fn now(t0: Instant) -> u64 {
    t0.elapsed().as_nanos() as u64
}

/// A value written by client `c` as its `s`-th write: unique in the run.
fn value_id(c: usize, s: u64) -> u64 {
    ((c as u64) << 32) | s
}

fn encode_value(prefix: char, id: u64) -> Vec<u8> {
    format!("{prefix}{}-{}", id >> 32, id & 0xffff_ffff).into_bytes()
}

fn decode_value(b: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(b).ok()?;
    let (c, n) = s.get(1..)?.split_once('-')?;
    Some(value_id(c.parse().ok()?, n.parse().ok()?))
}

#[derive(Debug, Clone)]
enum ZkKind {
    Get,
    Set { expect: i32, data: u64 },
    Create,
}

#[derive(Debug, Clone)]
enum ZkRes {
    Read {
        version: i32,
        mzxid: i64,
        /// `None`: the znode's initial (empty) data.
        data: Option<u64>,
    },
    Written {
        version: i32,
        mzxid: i64,
    },
    BadVersion,
    Created,
    /// Timed out or the connection broke: may or may not have happened.
    Unknown,
    /// Another error answer (the operation did nothing).
    Error(i32),
}

#[derive(Debug, Clone)]
struct ZkOp {
    client: usize,
    /// A logical session (a new one after expiry), unique in the run.
    session: usize,
    path: String,
    kind: ZkKind,
    res: ZkRes,
    header_zxid: i64,
    call: u64,
    ret: u64,
}

/// ZooKeeper's ordering guarantee for reads, per session: a read never
/// returns a state older than one the session has already seen (through a
/// read, its own write, or any reply's zxid). Also: each (znode, version)
/// has one zxid and one datum everywhere, versions and zxids grow
/// together, and nothing reads data no write produced or a write that
/// began after the read ended.
fn check_zk_sessions(ops: &[ZkOp]) -> Vec<String> {
    let mut anomalies = Vec::new();
    // What each (path, version) is, from every observation.
    let mut seen: BTreeMap<(String, i32), (i64, Option<u64>)> = BTreeMap::new();
    let writes: HashMap<u64, &ZkOp> = ops
        .iter()
        .filter_map(|o| match o.kind {
            ZkKind::Set { data, .. } => Some((data, o)),
            _ => None,
        })
        .collect();
    for o in ops {
        let obs = match (&o.kind, &o.res) {
            (ZkKind::Set { data, .. }, ZkRes::Written { version, mzxid }) => {
                Some((*version, *mzxid, Some(*data)))
            }
            (
                ZkKind::Get,
                ZkRes::Read {
                    version,
                    mzxid,
                    data,
                },
            ) => Some((*version, *mzxid, *data)),
            _ => None,
        };
        let Some((version, mzxid, data)) = obs else {
            continue;
        };
        if data.is_none() && version != 0 {
            anomalies.push(format!("{o:?}: initial data at version {version}"));
        }
        if let Some(d) = data {
            match writes.get(&d) {
                None => anomalies.push(format!("{o:?}: data no write produced")),
                Some(w) if w.call > o.ret => {
                    anomalies.push(format!("{o:?}: reads {w:?}, which began after it"))
                }
                _ => {}
            }
        }
        let key = (o.path.clone(), version);
        match seen.get(&key) {
            Some(prev) if *prev != (mzxid, data) => anomalies.push(format!(
                "{} version {version}: seen as {prev:?} and as {:?} ({o:?})",
                o.path,
                (mzxid, data)
            )),
            Some(_) => {}
            None => {
                seen.insert(key, (mzxid, data));
            }
        }
    }
    // Versions and zxids grow together.
    let mut last: Option<(&String, i32, i64)> = None;
    for ((path, version), (mzxid, _)) in &seen {
        if let Some((p, v, z)) = last {
            if p == path && *mzxid <= z {
                anomalies.push(format!(
                    "{path}: version {version} has zxid {mzxid}, not after version {v}'s {z}"
                ));
            }
        }
        last = Some((path, *version, *mzxid));
    }
    // Per session, in order: the newest version of each path at or below
    // the highest zxid the session has seen is a floor for its reads.
    let mut sessions: BTreeMap<usize, Vec<&ZkOp>> = BTreeMap::new();
    for o in ops {
        sessions.entry(o.session).or_default().push(o);
    }
    for (_, mut s) in sessions {
        s.sort_by_key(|o| o.call);
        let mut zxid_seen = 0i64;
        for o in s {
            if let ZkRes::Read { version, .. } = o.res {
                let floor = seen
                    .range((o.path.clone(), i32::MIN)..=(o.path.clone(), i32::MAX))
                    .filter(|(_, (z, _))| *z <= zxid_seen)
                    .map(|((_, v), _)| *v)
                    .max()
                    .unwrap_or(0);
                if version < floor {
                    anomalies.push(format!(
                        "session {}: {o:?} reads version {version} after seeing zxid {zxid_seen} (version {floor} or later)",
                        o.session
                    ));
                }
            }
            if !matches!(o.res, ZkRes::Unknown) {
                zxid_seen = zxid_seen.max(o.header_zxid);
                if let ZkRes::Written { mzxid, .. } | ZkRes::Read { mzxid, .. } = o.res {
                    zxid_seen = zxid_seen.max(mzxid);
                }
            }
        }
    }
    anomalies
}

// ---------------------------------------------------------------------
// The cluster.

const OP_TIMEOUT: Duration = Duration::from_secs(4);

/// Per client (etcd 0..3, ZooKeeper 3..6): the member it uses and the time
/// (ms since the start) of its last acknowledged write, for reports.
static CLIENT_MEMBER: [std::sync::atomic::AtomicUsize; 6] =
    [const { std::sync::atomic::AtomicUsize::new(0) }; 6];
static CLIENT_LAST_WRITE_MS: [std::sync::atomic::AtomicU64; 6] =
    [const { std::sync::atomic::AtomicU64::new(0) }; 6];

fn note_client(slot: usize, member: usize, wrote: bool, t0: Instant) {
    if let Some(m) = CLIENT_MEMBER.get(slot) {
        m.store(member, Ordering::Relaxed);
    }
    if wrote {
        if let Some(w) = CLIENT_LAST_WRITE_MS.get(slot) {
            w.store(t0.elapsed().as_millis() as u64, Ordering::Relaxed);
        }
    }
}

/// When the clients started.
static CLIENTS_T0: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

/// Where the clients are and when each last wrote (for a failure message).
fn clients_report() -> String {
    let Some(t0) = CLIENTS_T0.get() else {
        return String::new();
    };
    let now = t0.elapsed().as_millis() as u64;
    (0..6)
        .map(|i| {
            let kind = if i < 3 { "etcd" } else { "zk" };
            format!(
                "\n  {kind} client {i}: member {}, last write {} ms ago",
                CLIENT_MEMBER[i].load(Ordering::Relaxed) + 1,
                now.saturating_sub(CLIENT_LAST_WRITE_MS[i].load(Ordering::Relaxed))
            )
        })
        .collect()
}
// Six keys: each key's history stays small enough for the search (its
// cost grows with the unknown-outcome writes in flight on one key).
const ETCD_KEYS: [&str; 6] = ["fk0", "fk1", "fk2", "fk3", "fk4", "fk5"];
const ZK_PATHS: [&str; 3] = ["/fz0", "/fz1", "/fz2"];
const ETCD_CLIENTS: usize = 3;
const ZK_CLIENTS: usize = 3;

struct Cluster {
    members: Vec<Janus>,
    proxies: Proxies,
    slow_disk: SlowDisk,
    /// SIGSTOPped members.
    stopped: Vec<bool>,
}

impl Cluster {
    fn start(tmp: &std::path::Path) -> Cluster {
        // Under target/, not the temporary directory: /tmp may be noexec,
        // and the loader would then silently refuse to preload the shim.
        let shim_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../target/fault-slowdisk")
            .join(std::process::id().to_string());
        let slow_disk = SlowDisk::build(&shim_dir).expect("the slow-disk shim");
        // Small snapshots so restarted members also catch up from them; a
        // session timeout longer than any fault.
        let (members, proxies) = start_proxied_cluster(
            tmp,
            3,
            "heartbeat_ms = 100\nelection_timeout_ms = 800\nsnapshot_entries = 500\nlog_keep_entries = 100\n\
             [zookeeper]\ntick_ms = 2000\nfour_letter_words = [\"*\"]\n",
            &slow_disk.env(),
        );
        let c = Cluster {
            members,
            proxies,
            slow_disk,
            stopped: vec![false; 3],
        };
        for i in 0..3 {
            c.note_pid(i);
        }
        for m in &c.members {
            m.wait_healthy(Duration::from_secs(60));
        }
        c
    }

    fn note_pid(&self, i: usize) {
        let pid = self.members[i].child.as_ref().map_or(0, |c| c.id());
        self.proxies.links.set_pid(i, pid);
    }

    fn running(&self, i: usize) -> bool {
        self.members[i].child.is_some() && !self.stopped[i]
    }

    /// The leader member `i`'s /metrics names.
    fn leader_named_by(&self, i: usize) -> Option<usize> {
        let body = quick_get(&self.members[i].etcd, "/metrics")?;
        let id: usize = body
            .lines()
            .find_map(|l| l.strip_prefix("janus_raft_leader_id "))
            .and_then(|v| v.trim().parse().ok())?;
        id.checked_sub(1)
    }

    /// Seconds member `i` has spent in Raft log fsyncs.
    fn fsync_seconds(&self, i: usize) -> Option<f64> {
        self.fsync_metric(i, "janus_wal_fsync_duration_seconds_sum ")
    }

    fn fsync_metric(&self, i: usize, name: &str) -> Option<f64> {
        let body = quick_get(&self.members[i].etcd, "/metrics")?;
        body.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
    }

    /// Wait until member `i` fsyncs log entries again (writes reach it):
    /// just after a heal, a member may still be catching up, by snapshot
    /// or after a re-election, and append nothing for seconds. Returns how
    /// long that took; fails after 20 s.
    fn wait_appending(&self, i: usize) -> Duration {
        let t0 = Instant::now();
        let count = |c: &Self| c.fsync_metric(i, "janus_wal_fsync_duration_seconds_count ");
        let base = count(self);
        loop {
            let now = count(self);
            if base.is_some() && now > base {
                return t0.elapsed();
            }
            if t0.elapsed() >= Duration::from_secs(20) {
                let raft: String = (0..3)
                    .map(|m| {
                        let body = quick_get(&self.members[m].etcd, "/metrics").unwrap_or_default();
                        let lines: Vec<&str> = body
                            .lines()
                            .filter(|l| l.starts_with("janus_raft_"))
                            .collect();
                        format!("\n  member {}: {}", m + 1, lines.join(", "))
                    })
                    .collect();
                let logs: String = (0..3)
                    .map(|m| {
                        format!(
                            "\n--- member {} ---\n{}",
                            m + 1,
                            self.members[m].log_tail(20)
                        )
                    })
                    .collect();
                panic!(
                    "no writes reached member {} for 20 s (fsync count {base:?} -> {now:?}){raft}{}{logs}",
                    i + 1,
                    clients_report()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The leader as the running members' /metrics name it, if they agree.
    fn leader(&self) -> Option<usize> {
        let mut named = BTreeSet::new();
        for i in (0..3).filter(|i| self.running(*i)) {
            named.insert(self.leader_named_by(i)?);
        }
        let id = *named.iter().next()?;
        (named.len() == 1 && self.running(id)).then_some(id)
    }

    fn wait_leader(&self, timeout: Duration) -> Option<usize> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(l) = self.leader() {
                return Some(l);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn signal(&mut self, i: usize, sig: libc::c_int) {
        if let Some(c) = &self.members[i].child {
            // SAFETY: kill(2) on our own child's pid.
            unsafe {
                libc::kill(c.id() as libc::pid_t, sig);
            }
        }
        self.stopped[i] = sig == libc::SIGSTOP;
    }

    fn restart(&mut self, i: usize) {
        self.members[i].spawn();
        self.note_pid(i);
    }
}

/// GET with short timeouts (a stopped member must not hang the nemesis).
fn quick_get(addr: &str, path: &str) -> Option<String> {
    let sa = addr.parse().ok()?;
    let mut s = TcpStream::connect_timeout(&sa, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    buf.split_once("\r\n\r\n").map(|(_, b)| b.to_string())
}

// ---------------------------------------------------------------------
// etcd clients.

type KvOp = Op<kv::Input, kv::Output>;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*: deterministic per client, no dependency.
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn kv_client(addr: &str) -> KvClient<Channel> {
    let ch = Endpoint::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect_timeout(Duration::from_secs(1))
        .timeout(OP_TIMEOUT)
        .connect_lazy();
    KvClient::new(ch)
}

#[derive(Default)]
struct EtcdHistory {
    ops: Vec<KvOp>,
    /// Unique keys put: (key, acknowledged).
    unique: Vec<(String, bool)>,
    failed_reads: usize,
    /// Acknowledged writes that changed something: (call, ret, revision).
    revisions: Vec<(u64, u64, i64)>,
}

async fn etcd_client(
    c: usize,
    addrs: Vec<String>,
    t0: Instant,
    stop: Arc<AtomicBool>,
) -> EtcdHistory {
    let mut h = EtcdHistory::default();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (c as u64 + 1));
    let mut member = c % addrs.len();
    let mut client = kv_client(&addrs[member]);
    let mut seq = 0u64;
    let mut last: HashMap<&str, Option<u64>> = HashMap::new();
    while !stop.load(Ordering::Relaxed) {
        let key = ETCD_KEYS[rng.below(ETCD_KEYS.len() as u64) as usize];
        let roll = rng.below(100);
        seq += 1;
        let v = value_id(c, seq);
        let call = now(t0);
        let ok;
        if roll < 10 {
            // A key written once: must be present at the end if acknowledged.
            let k = format!("fu/{c}-{seq}");
            let r = tokio::time::timeout(
                OP_TIMEOUT,
                client.put(pb::PutRequest {
                    key: k.clone().into_bytes(),
                    value: b"u".to_vec(),
                    ..Default::default()
                }),
            )
            .await;
            ok = matches!(r, Ok(Ok(_)));
            if let Ok(Ok(resp)) = &r {
                let rev = resp.get_ref().header.as_ref().map_or(0, |h| h.revision);
                h.revisions.push((call, now(t0), rev));
            }
            h.unique.push((k, ok));
        } else {
            let (input, out) = if roll < 50 {
                let r = tokio::time::timeout(
                    OP_TIMEOUT,
                    client.range(pb::RangeRequest {
                        key: key.into(),
                        ..Default::default()
                    }),
                )
                .await;
                let out = match r {
                    Ok(Ok(resp)) => {
                        let kvs = resp.into_inner().kvs;
                        let v = kvs.first().map(|kv| decode_value(&kv.value));
                        match v {
                            Some(Some(id)) => Some(kv::Output::Value(Some(id))),
                            Some(None) => Some(kv::Output::Value(Some(u64::MAX))),
                            None => Some(kv::Output::Value(None)),
                        }
                    }
                    _ => None,
                };
                if let Some(kv::Output::Value(v)) = &out {
                    last.insert(key, *v);
                }
                (kv::Input::Get { key: key.into() }, out)
            } else if roll < 75 {
                let r = tokio::time::timeout(
                    OP_TIMEOUT,
                    client.put(pb::PutRequest {
                        key: key.into(),
                        value: encode_value('e', v),
                        ..Default::default()
                    }),
                )
                .await;
                if let Ok(Ok(resp)) = &r {
                    let rev = resp.get_ref().header.as_ref().map_or(0, |h| h.revision);
                    h.revisions.push((call, now(t0), rev));
                }
                let out = matches!(r, Ok(Ok(_))).then_some(kv::Output::Ok);
                if out.is_some() {
                    last.insert(key, Some(v));
                }
                (
                    kv::Input::Put {
                        key: key.into(),
                        value: v,
                    },
                    out,
                )
            } else if roll < 95 {
                let expect = last.get(key).copied().flatten();
                let compare = match expect {
                    Some(e) => pb::Compare {
                        result: pb::compare::CompareResult::Equal as i32,
                        target: pb::compare::CompareTarget::Value as i32,
                        key: key.into(),
                        target_union: Some(pb::compare::TargetUnion::Value(encode_value('e', e))),
                        range_end: vec![],
                    },
                    // Absent: version 0.
                    None => pb::Compare {
                        result: pb::compare::CompareResult::Equal as i32,
                        target: pb::compare::CompareTarget::Version as i32,
                        key: key.into(),
                        target_union: Some(pb::compare::TargetUnion::Version(0)),
                        range_end: vec![],
                    },
                };
                let txn = pb::TxnRequest {
                    compare: vec![compare],
                    success: vec![pb::RequestOp {
                        request: Some(pb::request_op::Request::RequestPut(pb::PutRequest {
                            key: key.into(),
                            value: encode_value('e', v),
                            ..Default::default()
                        })),
                    }],
                    failure: vec![],
                };
                let r = tokio::time::timeout(OP_TIMEOUT, client.txn(txn)).await;
                let out = match r {
                    Ok(Ok(resp)) => {
                        let resp = resp.into_inner();
                        if resp.succeeded {
                            let rev = resp.header.as_ref().map_or(0, |h| h.revision);
                            h.revisions.push((call, now(t0), rev));
                        }
                        Some(kv::Output::Succeeded(resp.succeeded))
                    }
                    _ => None,
                };
                if out == Some(kv::Output::Succeeded(true)) {
                    last.insert(key, Some(v));
                }
                (
                    kv::Input::Cas {
                        key: key.into(),
                        expect,
                        value: v,
                    },
                    out,
                )
            } else {
                let r = tokio::time::timeout(
                    OP_TIMEOUT,
                    client.delete_range(pb::DeleteRangeRequest {
                        key: key.into(),
                        ..Default::default()
                    }),
                )
                .await;
                let out = match r {
                    Ok(Ok(resp)) => {
                        let resp = resp.into_inner();
                        if resp.deleted > 0 {
                            let rev = resp.header.as_ref().map_or(0, |h| h.revision);
                            h.revisions.push((call, now(t0), rev));
                        }
                        Some(kv::Output::Deleted(resp.deleted))
                    }
                    _ => None,
                };
                if out.is_some() {
                    last.insert(key, None);
                }
                (kv::Input::Delete { key: key.into() }, out)
            };
            let ret = now(t0);
            ok = out.is_some();
            if matches!(input, kv::Input::Get { .. }) && out.is_none() {
                // A failed read changed nothing: leave it out.
                h.failed_reads += 1;
            } else {
                h.ops.push(Op {
                    client: c,
                    input,
                    output: out,
                    call,
                    ret,
                });
            }
        }
        note_client(c, member, ok && roll >= 50, t0);
        if !ok {
            // Try another member (a dead, stopped or cut-off one times out).
            member = (member + 1) % addrs.len();
            client = kv_client(&addrs[member]);
            last.clear();
            tokio::time::sleep(Duration::from_millis(100)).await;
        } else {
            tokio::time::sleep(Duration::from_millis(5 + rng.below(15))).await;
        }
    }
    h
}

// ---------------------------------------------------------------------
// ZooKeeper clients: the wire protocol over blocking sockets.

fn zk_string(s: &str) -> Vec<u8> {
    let mut v = (s.len() as i32).to_be_bytes().to_vec();
    v.extend_from_slice(s.as_bytes());
    v
}

fn zk_buffer(b: &[u8]) -> Vec<u8> {
    let mut v = (b.len() as i32).to_be_bytes().to_vec();
    v.extend_from_slice(b);
    v
}

fn be_i32(b: &[u8], at: usize) -> Option<i32> {
    Some(i32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn be_i64(b: &[u8], at: usize) -> Option<i64> {
    Some(i64::from_be_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

fn send_frame(s: &mut TcpStream, payload: &[u8]) -> std::io::Result<()> {
    let mut f = (payload.len() as i32).to_be_bytes().to_vec();
    f.extend_from_slice(payload);
    s.write_all(&f)
}

fn read_frame(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut h = [0u8; 4];
    s.read_exact(&mut h)?;
    let n = usize::try_from(i32::from_be_bytes(h))
        .map_err(|_| std::io::Error::other("negative frame length"))?;
    let mut b = vec![0u8; n];
    s.read_exact(&mut b)?;
    Ok(b)
}

/// A ZooKeeper session that moves between members as a client library
/// does: by id and password, announcing the last zxid it saw.
struct ZkSession {
    addrs: Vec<String>,
    member: usize,
    conn: Option<TcpStream>,
    id: i64,
    passwd: Vec<u8>,
    last_zxid: i64,
    xid: i32,
    /// The logical session number in the history.
    logical: usize,
}

enum Handshake {
    Ok,
    Expired,
    Failed,
}

impl ZkSession {
    fn new(addrs: Vec<String>, member: usize, logical: usize) -> ZkSession {
        ZkSession {
            addrs,
            member,
            conn: None,
            id: 0,
            passwd: vec![0; 16],
            last_zxid: 0,
            xid: 0,
            logical,
        }
    }

    fn handshake(&mut self) -> Handshake {
        let Ok(sa) = self.addrs[self.member].parse() else {
            return Handshake::Failed;
        };
        let Ok(mut s) = TcpStream::connect_timeout(&sa, Duration::from_secs(1)) else {
            return Handshake::Failed;
        };
        let _ = s.set_read_timeout(Some(OP_TIMEOUT));
        let _ = s.set_write_timeout(Some(OP_TIMEOUT));
        let _ = s.set_nodelay(true);
        let mut req = Vec::new();
        req.extend_from_slice(&0i32.to_be_bytes());
        req.extend_from_slice(&self.last_zxid.to_be_bytes());
        req.extend_from_slice(&30_000i32.to_be_bytes());
        req.extend_from_slice(&self.id.to_be_bytes());
        req.extend_from_slice(&zk_buffer(&self.passwd));
        req.push(0);
        if send_frame(&mut s, &req).is_err() {
            return Handshake::Failed;
        }
        let Ok(b) = read_frame(&mut s) else {
            return Handshake::Failed;
        };
        let (Some(timeout), Some(id), Some(n)) = (be_i32(&b, 4), be_i64(&b, 8), be_i32(&b, 16))
        else {
            return Handshake::Failed;
        };
        if timeout <= 0 {
            return Handshake::Expired;
        }
        let Some(pw) = b.get(20..20 + n.max(0) as usize) else {
            return Handshake::Failed;
        };
        self.id = id;
        self.passwd = pw.to_vec();
        self.conn = Some(s);
        Handshake::Ok
    }

    /// One request; `None` when the outcome is unknown (the connection is
    /// then dropped). Returns (header zxid, err, body).
    fn call(&mut self, op: i32, body: &[u8]) -> Option<(i64, i32, Vec<u8>)> {
        let s = self.conn.as_mut()?;
        self.xid += 1;
        let xid = self.xid;
        let mut p = xid.to_be_bytes().to_vec();
        p.extend_from_slice(&op.to_be_bytes());
        p.extend_from_slice(body);
        let r = (|| -> std::io::Result<(i64, i32, Vec<u8>)> {
            send_frame(s, &p)?;
            loop {
                let b = read_frame(s)?;
                let rx = be_i32(&b, 0).ok_or_else(|| std::io::Error::other("short"))?;
                if rx != xid {
                    // Watch events and ping answers: none expected, skip.
                    continue;
                }
                let zxid = be_i64(&b, 4).ok_or_else(|| std::io::Error::other("short"))?;
                let err = be_i32(&b, 12).ok_or_else(|| std::io::Error::other("short"))?;
                return Ok((zxid, err, b[16..].to_vec()));
            }
        })();
        match r {
            Ok((zxid, err, body)) => {
                // ZooKeeper clients track the highest zxid seen.
                if zxid > self.last_zxid {
                    self.last_zxid = zxid;
                }
                Some((zxid, err, body))
            }
            Err(_) => {
                self.conn = None;
                None
            }
        }
    }
}

/// Stat fields the checks use: (mzxid, version).
fn stat_of(b: &[u8]) -> Option<(i64, i32)> {
    Some((be_i64(b, 8)?, be_i32(b, 32)?))
}

struct ZkHistory {
    ops: Vec<ZkOp>,
    sessions: usize,
    expired: usize,
    /// Handshakes that resumed the session (on another member or the same).
    resumed: usize,
}

fn create_body(path: &str) -> Vec<u8> {
    let mut b = zk_string(path);
    b.extend_from_slice(&zk_buffer(b""));
    b.extend_from_slice(&1i32.to_be_bytes());
    b.extend_from_slice(&31i32.to_be_bytes());
    b.extend_from_slice(&zk_string("world"));
    b.extend_from_slice(&zk_string("anyone"));
    b.extend_from_slice(&0i32.to_be_bytes());
    b
}

fn zk_client(
    c: usize,
    addrs: Vec<String>,
    t0: Instant,
    stop: Arc<AtomicBool>,
    logical_base: usize,
) -> ZkHistory {
    let mut rng = Rng(0x51_7cc1_b727_220a ^ (c as u64 + 1));
    let mut sessions = 1;
    let mut expired = 0;
    let mut resumed = 0;
    let mut s = ZkSession::new(addrs.clone(), c % addrs.len(), logical_base);
    let mut ops = Vec::new();
    let mut seq = 0u64;
    // The version this client last saw per path (for conditional sets).
    let mut last: HashMap<&str, i32> = HashMap::new();
    while !stop.load(Ordering::Relaxed) {
        if s.conn.is_none() {
            let had_session = s.id != 0;
            match s.handshake() {
                Handshake::Ok => resumed += usize::from(had_session),
                Handshake::Expired => {
                    // The session is gone (it should not be: its timeout
                    // outlasts every fault); go on with a new one.
                    expired += 1;
                    sessions += 1;
                    s = ZkSession::new(addrs.clone(), s.member, logical_base + sessions - 1);
                    continue;
                }
                Handshake::Failed => {
                    s.member = (s.member + 1) % addrs.len();
                    std::thread::sleep(Duration::from_millis(200));
                    continue;
                }
            }
        }
        let path = ZK_PATHS[rng.below(ZK_PATHS.len() as u64) as usize];
        let roll = rng.below(100);
        seq += 1;
        let call = now(t0);
        let (kind, path_s, reply) = if roll < 45 {
            let mut b = zk_string(path);
            b.push(0);
            (ZkKind::Get, path.to_string(), s.call(4, &b))
        } else if roll < 90 {
            let data = value_id(c, seq);
            let expect = if roll < 65 {
                -1
            } else {
                last.get(path).copied().unwrap_or(0)
            };
            let mut b = zk_string(path);
            b.extend_from_slice(&zk_buffer(&encode_value('z', data)));
            b.extend_from_slice(&expect.to_be_bytes());
            (
                ZkKind::Set { expect, data },
                path.to_string(),
                s.call(5, &b),
            )
        } else {
            let p = format!("/fzu/c{c}-{seq}");
            let b = create_body(&p);
            (ZkKind::Create, p, s.call(1, &b))
        };
        let ret = now(t0);
        let (header_zxid, res) = match reply {
            None => (0, ZkRes::Unknown),
            Some((z, 0, body)) => {
                let res = match kind {
                    ZkKind::Get => {
                        let n = be_i32(&body, 0).unwrap_or(-1);
                        let data = body.get(4..4 + n.max(0) as usize).unwrap_or_default();
                        match body.get(4 + n.max(0) as usize..).and_then(stat_of) {
                            Some((mzxid, version)) => ZkRes::Read {
                                version,
                                mzxid,
                                data: if data.is_empty() {
                                    None
                                } else {
                                    Some(decode_value(data).unwrap_or(u64::MAX))
                                },
                            },
                            None => ZkRes::Error(0),
                        }
                    }
                    ZkKind::Set { .. } => match stat_of(&body) {
                        Some((mzxid, version)) => ZkRes::Written { version, mzxid },
                        None => ZkRes::Error(0),
                    },
                    ZkKind::Create => ZkRes::Created,
                };
                (z, res)
            }
            Some((z, -103, _)) => (z, ZkRes::BadVersion),
            Some((z, err, _)) => (z, ZkRes::Error(err)),
        };
        let wrote = matches!(res, ZkRes::Written { .. } | ZkRes::Created);
        note_client(3 + c.saturating_sub(100) % 3, s.member, wrote, t0);
        match res {
            ZkRes::Read { version, .. } | ZkRes::Written { version, .. } => {
                last.insert(path, version);
            }
            ZkRes::Unknown => {
                // Lost connection: back off, then another member.
                s.member = (s.member + 1) % addrs.len();
                std::thread::sleep(Duration::from_millis(100));
            }
            _ => {}
        }
        ops.push(ZkOp {
            client: c,
            session: s.logical,
            path: path_s,
            kind,
            res,
            header_zxid,
            call,
            ret,
        });
        std::thread::sleep(Duration::from_millis(5 + rng.below(15)));
    }
    ZkHistory {
        ops,
        sessions,
        expired,
        resumed,
    }
}

// ---------------------------------------------------------------------
// The suite.

#[derive(Debug, Clone, Copy)]
enum Nemesis {
    KillLeader,
    KillFollower,
    StopLeader,
    StopFollower,
    IsolateLeader(Fault),
    IsolateFollower(Fault),
    /// Only the leader's own connections to the others are cut.
    LeaderOutboundCut,
    SlowLinks,
    /// Every fsync of a member takes 100 ms longer.
    SlowDisk {
        leader: bool,
    },
    /// kill -9 of every member at once, then all restart: nothing
    /// acknowledged may be lost (fsync before acknowledging).
    KillAll,
}

/// Inject one fault, hold it, heal. Returns a line for the report.
fn inject(c: &mut Cluster, n: Nemesis) -> String {
    let leader = c.wait_leader(Duration::from_secs(30));
    let pick = |want_leader: bool| -> usize {
        match leader {
            Some(l) if want_leader => l,
            Some(l) => (l + 1) % 3,
            None => 0,
        }
    };
    let hold = Duration::from_secs(5);
    let line = match n {
        Nemesis::KillLeader | Nemesis::KillFollower => {
            let i = pick(matches!(n, Nemesis::KillLeader));
            c.members[i].kill9();
            c.note_pid(i);
            std::thread::sleep(Duration::from_secs(3));
            c.restart(i);
            format!("{n:?}: kill -9 member {}, restart after 3 s", i + 1)
        }
        Nemesis::StopLeader | Nemesis::StopFollower => {
            let i = pick(matches!(n, Nemesis::StopLeader));
            c.signal(i, libc::SIGSTOP);
            std::thread::sleep(hold);
            c.signal(i, libc::SIGCONT);
            format!("{n:?}: SIGSTOP member {} for {hold:?}, SIGCONT", i + 1)
        }
        Nemesis::IsolateLeader(_) | Nemesis::IsolateFollower(_) | Nemesis::LeaderOutboundCut => {
            let was_leader = !matches!(n, Nemesis::IsolateFollower(_));
            let i = pick(was_leader);
            match n {
                Nemesis::IsolateLeader(f) | Nemesis::IsolateFollower(f) => {
                    c.proxies.links.isolate(i, f)
                }
                _ => c.proxies.links.cut_outbound(i, Fault::Blackhole),
            }
            let cut = Instant::now();
            std::thread::sleep(hold);
            let mut note = String::new();
            if was_leader && leader.is_some() {
                // The cut is real: the other two elect a leader of their own
                // (waiting longer on a slow machine).
                let others: Vec<usize> = (0..3).filter(|o| *o != i).collect();
                let deadline = cut + Duration::from_secs(30);
                let new = loop {
                    let named: BTreeSet<usize> = others
                        .iter()
                        .filter_map(|o| c.leader_named_by(*o))
                        .collect();
                    if named.len() == 1 && !named.contains(&i) {
                        break named.into_iter().next();
                    }
                    if Instant::now() > deadline {
                        break None;
                    }
                    std::thread::sleep(Duration::from_millis(200));
                };
                let new = new.unwrap_or_else(|| {
                    panic!(
                        "no new leader among the others while member {} was cut off",
                        i + 1
                    )
                });
                note = format!(", member {} took over", new + 1);
            }
            c.proxies.links.heal();
            let what = if matches!(n, Nemesis::LeaderOutboundCut) {
                "has its outbound peer links cut"
            } else {
                "cut off"
            };
            format!(
                "{n:?}: member {} {what} for {:?}{note}, healed",
                i + 1,
                cut.elapsed()
            )
        }
        Nemesis::SlowDisk { leader: l } => {
            let i = pick(l);
            let waited = c.wait_appending(i);
            let pid = c.members[i].child.as_ref().map_or(0, |p| p.id());
            let before = c.fsync_seconds(i);
            c.slow_disk.set(pid, 100);
            std::thread::sleep(hold);
            c.slow_disk.set(pid, 0);
            // The shim did slow it down: its fsyncs took at least ~100 ms
            // each while the fault lasted (at least one did).
            let after = c.fsync_seconds(i);
            let spent = after.zip(before).map(|(a, b)| a - b);
            if !spent.is_some_and(|s| s >= 0.09) {
                let logs: String = (0..3)
                    .map(|m| format!("\n--- member {} ---\n{}", m + 1, c.members[m].log_tail(30)))
                    .collect();
                panic!(
                    "member {}'s fsyncs were not slowed: {spent:?} s spent (no writes reached it?){logs}",
                    i + 1
                );
            }
            format!(
                "{n:?}: every fsync of member {} 100 ms slower for {hold:?} ({:.1} s spent in fsync; writes reached it after {waited:?})",
                i + 1,
                spent.unwrap_or(0.0)
            )
        }
        Nemesis::KillAll => {
            for i in 0..3 {
                c.members[i].kill9();
                c.note_pid(i);
            }
            std::thread::sleep(Duration::from_secs(1));
            for i in 0..3 {
                c.restart(i);
            }
            format!("{n:?}: kill -9 of all three members, restart after 1 s")
        }
        Nemesis::SlowLinks => {
            let i = pick(true);
            c.proxies
                .links
                .isolate(i, Fault::Delay(Duration::from_millis(60)));
            std::thread::sleep(hold);
            c.proxies.links.heal();
            format!(
                "{n:?}: 60 ms on every link of member {} for {hold:?}",
                i + 1
            )
        }
    };
    // Let the cluster settle before the next fault.
    let _ = c.wait_leader(Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(2));
    line
}

/// Read every etcd register and unique key at every member after healing:
/// the final reads join the history; acknowledged unique keys must exist.
fn final_etcd_reads(
    rt: &tokio::runtime::Runtime,
    c: &Cluster,
    t0: Instant,
    kv_ops: &mut Vec<KvOp>,
    unique: &[(String, bool)],
) -> Vec<String> {
    let mut anomalies = Vec::new();
    let issued: BTreeSet<&str> = unique.iter().map(|(k, _)| k.as_str()).collect();
    for (i, m) in c.members.iter().enumerate() {
        let client_id = 1000 + i;
        let r: Result<(), String> = rt.block_on(async {
            let mut kvc = kv_client(&m.etcd);
            for key in ETCD_KEYS {
                let deadline = Instant::now() + Duration::from_secs(60);
                loop {
                    let call = now(t0);
                    let r = kvc
                        .range(pb::RangeRequest {
                            key: key.into(),
                            ..Default::default()
                        })
                        .await;
                    let ret = now(t0);
                    if let Ok(resp) = r {
                        let v = resp
                            .into_inner()
                            .kvs
                            .first()
                            .map(|kv| decode_value(&kv.value).unwrap_or(u64::MAX));
                        kv_ops.push(Op {
                            client: client_id,
                            input: kv::Input::Get { key: key.into() },
                            output: Some(kv::Output::Value(v)),
                            call,
                            ret,
                        });
                        break;
                    }
                    if Instant::now() > deadline {
                        return Err(format!("member {}: no final read of {key}", i + 1));
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
            let resp = kvc
                .range(pb::RangeRequest {
                    key: b"fu/".to_vec(),
                    range_end: b"fu0".to_vec(),
                    keys_only: true,
                    ..Default::default()
                })
                .await
                .map_err(|e| format!("member {}: range fu/: {e}", i + 1))?;
            let present: BTreeSet<String> = resp
                .into_inner()
                .kvs
                .iter()
                .map(|kv| String::from_utf8_lossy(&kv.key).into_owned())
                .collect();
            for (k, acked) in unique {
                if *acked && !present.contains(k) {
                    return Err(format!(
                        "member {}: acknowledged put of {k} is missing",
                        i + 1
                    ));
                }
            }
            for k in &present {
                if !issued.contains(k.as_str()) {
                    return Err(format!("member {}: {k} was never written", i + 1));
                }
            }
            Ok(())
        });
        if let Err(e) = r {
            anomalies.push(e);
        }
    }
    anomalies
}

/// Every member, after `sync`: the znodes' final versions (added to the
/// write histories) and every acknowledged create.
fn final_zk_reads(
    c: &Cluster,
    t0: Instant,
    zk_ops: &[ZkOp],
    versions: &mut Vec<Op<znode::Input, znode::Output>>,
) -> Vec<String> {
    let mut anomalies = Vec::new();
    let acked: BTreeSet<String> = zk_ops
        .iter()
        .filter(|o| matches!(o.res, ZkRes::Created))
        .map(|o| o.path.trim_start_matches("/fzu/").to_string())
        .collect();
    let issued: BTreeSet<String> = zk_ops
        .iter()
        .filter(|o| matches!(o.kind, ZkKind::Create))
        .map(|o| o.path.trim_start_matches("/fzu/").to_string())
        .collect();
    for (i, m) in c.members.iter().enumerate() {
        let mut s = ZkSession::new(vec![m.zk.clone()], 0, usize::MAX);
        let deadline = Instant::now() + Duration::from_secs(60);
        while !matches!(s.handshake(), Handshake::Ok) {
            if Instant::now() > deadline {
                anomalies.push(format!("member {}: no ZooKeeper session", i + 1));
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        if s.call(9, &zk_string("/")).is_none_or(|(_, e, _)| e != 0) {
            anomalies.push(format!("member {}: sync failed", i + 1));
            continue;
        }
        for p in ZK_PATHS {
            let mut b = zk_string(p);
            b.push(0);
            let call = now(t0);
            match s.call(4, &b) {
                Some((_, 0, body)) => {
                    let n = be_i32(&body, 0).unwrap_or(0).max(0) as usize;
                    match body.get(4 + n..).and_then(stat_of) {
                        Some((_, version)) => versions.push(Op {
                            client: 1000 + i,
                            input: znode::Input::ReadVersion { path: p.into() },
                            output: Some(znode::Output::Version(version)),
                            call,
                            ret: now(t0),
                        }),
                        None => anomalies.push(format!("member {}: bad stat of {p}", i + 1)),
                    }
                }
                r => anomalies.push(format!("member {}: getData {p}: {r:?}", i + 1)),
            }
        }
        let mut b = zk_string("/fzu");
        b.push(0);
        match s.call(8, &b) {
            Some((_, 0, body)) => {
                let n = be_i32(&body, 0).unwrap_or(0);
                let mut at = 4;
                let mut present = BTreeSet::new();
                for _ in 0..n {
                    let len = be_i32(&body, at).unwrap_or(0).max(0) as usize;
                    let name = body.get(at + 4..at + 4 + len).unwrap_or_default();
                    present.insert(String::from_utf8_lossy(name).into_owned());
                    at += 4 + len;
                }
                for a in acked.difference(&present) {
                    anomalies.push(format!(
                        "member {}: acknowledged create of /fzu/{a} is missing",
                        i + 1
                    ));
                }
                for p in present.difference(&issued) {
                    anomalies.push(format!("member {}: /fzu/{p} was never created", i + 1));
                }
            }
            r => anomalies.push(format!("member {}: getChildren /fzu: {r:?}", i + 1)),
        }
    }
    anomalies
}

/// Acknowledged writes of both personalities, as (call, ret, revision):
/// every revision is taken once, and a write that completed before another
/// began has the smaller revision (the one clock is linearizable).
fn check_revision_clock(mut w: Vec<(u64, u64, i64)>) -> Vec<String> {
    let mut anomalies = Vec::new();
    w.sort_by_key(|x| x.2);
    for p in w.windows(2) {
        if p[0].2 == p[1].2 || p[0].2 <= 0 {
            anomalies.push(format!(
                "revision {} taken twice or missing: {:?} {:?}",
                p[0].2, p[0], p[1]
            ));
        }
    }
    // From the highest revision down: the earliest return among the higher
    // revisions must not precede this write's call.
    let mut min_ret_above: Option<(u64, i64)> = None;
    for &(call, ret, rev) in w.iter().rev() {
        if let Some((r, above)) = min_ret_above {
            if r < call {
                anomalies.push(format!(
                    "revision {above} was acknowledged before the write that got revision {rev} began"
                ));
            }
        }
        if min_ret_above.is_none_or(|(r, _)| ret < r) {
            min_ret_above = Some((ret, rev));
        }
    }
    anomalies
}

/// Add to `ops` a read, after an acknowledged put of a key completed, of
/// the value an earlier put (finished before that one began) wrote, and
/// check it is rejected.
fn stale_read_is_caught(ops: &[KvOp]) -> bool {
    let puts: Vec<&KvOp> = ops
        .iter()
        .filter(|o| matches!(o.input, kv::Input::Put { .. }) && o.output.is_some())
        .collect();
    for p1 in &puts {
        let Some(p2) = puts
            .iter()
            .find(|p2| p2.input.key() == p1.input.key() && p2.call > p1.ret)
        else {
            continue;
        };
        let kv::Input::Put { key, value } = &p1.input else {
            continue;
        };
        let mut h: Vec<KvOp> = ops
            .iter()
            .filter(|o| o.input.key() == key)
            .cloned()
            .collect();
        h.push(Op {
            client: 9999,
            input: kv::Input::Get { key: key.clone() },
            output: Some(kv::Output::Value(Some(*value))),
            call: p2.ret + 1,
            ret: p2.ret + 2,
        });
        return matches!(
            lin::check(&kv::Register, &h, BUDGET),
            Outcome::Illegal { .. }
        );
    }
    false
}

/// Copy a session's early read of a znode to the end of that session, after
/// it has seen a newer version, and check the session check objects.
fn going_back_is_caught(ops: &[ZkOp]) -> bool {
    let Some(end) = ops.iter().map(|o| o.ret).max() else {
        return false;
    };
    for early in ops.iter().filter(|o| matches!(o.res, ZkRes::Read { .. })) {
        let ZkRes::Read { version, .. } = early.res else {
            continue;
        };
        let newer = ops.iter().any(|o| {
            o.session == early.session
                && o.path == early.path
                && o.call > early.ret
                && matches!(o.res, ZkRes::Read { version: v, .. } | ZkRes::Written { version: v, .. } if v > version)
        });
        if !newer {
            continue;
        }
        let mut h = ops.to_vec();
        let mut late = early.clone();
        late.call = end + 1;
        late.ret = end + 2;
        h.push(late);
        return !check_zk_sessions(&h).is_empty();
    }
    false
}

#[test]
fn cluster_under_faults_stays_linearizable() {
    let started = Instant::now();
    let tmp = tempfile::tempdir().expect("tempdir");
    // JANUS_TEST_KEEP=1 keeps the members' data and logs for a post-mortem.
    let tmp_path = if std::env::var_os("JANUS_TEST_KEEP").is_some() {
        let kept = tmp.keep();
        eprintln!("fault suite: keeping {}", kept.display());
        kept
    } else {
        tmp.path().to_path_buf()
    };
    let mut c = Cluster::start(&tmp_path);
    assert!(
        c.wait_leader(Duration::from_secs(60)).is_some(),
        "no leader"
    );
    let etcd_addrs: Vec<String> = c.members.iter().map(|m| m.etcd.clone()).collect();
    let zk_addrs: Vec<String> = c.members.iter().map(|m| m.zk.clone()).collect();

    // The znodes the ZooKeeper clients share, and the parent of the
    // created ones.
    {
        let mut s = ZkSession::new(zk_addrs.clone(), 0, usize::MAX);
        let deadline = Instant::now() + Duration::from_secs(60);
        while !matches!(s.handshake(), Handshake::Ok) {
            assert!(Instant::now() < deadline, "no ZooKeeper session");
            std::thread::sleep(Duration::from_millis(200));
        }
        for p in ZK_PATHS.iter().chain(["/fzu"].iter()) {
            let r = s.call(1, &create_body(p));
            assert!(matches!(r, Some((_, 0, _))), "create {p}: {r:?}");
        }
    }

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let t0 = Instant::now();
    let _ = CLIENTS_T0.set(t0);
    let stop = Arc::new(AtomicBool::new(false));
    let etcd_tasks: Vec<_> = (0..ETCD_CLIENTS)
        .map(|i| rt.spawn(etcd_client(i, etcd_addrs.clone(), t0, stop.clone())))
        .collect();
    let zk_threads: Vec<_> = (0..ZK_CLIENTS)
        .map(|i| {
            let (addrs, stop) = (zk_addrs.clone(), stop.clone());
            std::thread::spawn(move || zk_client(100 + i, addrs, t0, stop, i * 1000))
        })
        .collect();

    // The nemesis: one fault at a time, every kind at least once.
    std::thread::sleep(Duration::from_secs(3));
    let plan = [
        Nemesis::KillLeader,
        Nemesis::IsolateLeader(Fault::Blackhole),
        Nemesis::StopFollower,
        Nemesis::KillFollower,
        Nemesis::IsolateFollower(Fault::Drop),
        Nemesis::StopLeader,
        Nemesis::SlowLinks,
        Nemesis::IsolateLeader(Fault::Drop),
        Nemesis::KillLeader,
        Nemesis::IsolateFollower(Fault::Blackhole),
        Nemesis::KillAll,
        Nemesis::StopLeader,
        Nemesis::LeaderOutboundCut,
        Nemesis::SlowDisk { leader: true },
        Nemesis::IsolateLeader(Fault::Blackhole),
        Nemesis::SlowDisk { leader: false },
        Nemesis::KillFollower,
    ];
    // JANUS_FAULT_HEALS=N: instead, N rounds of the faults a heal leaves
    // the cluster from (a cut leader, a leader's outbound links) each
    // followed by a slow disk, which needs writes flowing (for chasing a
    // stall after a heal).
    let heals: usize = std::env::var("JANUS_FAULT_HEALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let plan: Vec<Nemesis> = if heals > 0 {
        (0..heals)
            .flat_map(|_| {
                [
                    Nemesis::IsolateLeader(Fault::Blackhole),
                    Nemesis::SlowDisk { leader: false },
                    Nemesis::LeaderOutboundCut,
                    Nemesis::SlowDisk { leader: true },
                ]
            })
            .collect()
    } else {
        plan.to_vec()
    };
    let mut faults = Vec::new();
    for n in plan {
        let line = inject(&mut c, n);
        eprintln!(
            "fault suite: {line} (t = {:?}, {} peer connections so far)",
            started.elapsed(),
            c.proxies.links.accepted.load(Ordering::Relaxed)
        );
        faults.push(line);
    }
    // Healed: every member runs, every link passes.
    c.proxies.links.heal();
    assert!(
        c.wait_leader(Duration::from_secs(60)).is_some(),
        "no leader after healing"
    );
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    let mut etcd = EtcdHistory::default();
    for t in etcd_tasks {
        let h = rt.block_on(t).expect("etcd client");
        etcd.ops.extend(h.ops);
        etcd.unique.extend(h.unique);
        etcd.failed_reads += h.failed_reads;
        etcd.revisions.extend(h.revisions);
    }
    let mut zk_ops = Vec::new();
    let (mut zk_sessions, mut zk_expired, mut zk_resumed) = (0, 0, 0);
    for t in zk_threads {
        let h = t.join().expect("zk client");
        zk_ops.extend(h.ops);
        zk_sessions += h.sessions;
        zk_expired += h.expired;
        zk_resumed += h.resumed;
    }
    eprintln!(
        "fault suite: workload stopped (t = {:?})",
        started.elapsed()
    );

    // Every acknowledged write is present on every member.
    let mut anomalies = Vec::new();
    let mut kv_ops = etcd.ops.clone();
    anomalies.extend(final_etcd_reads(&rt, &c, t0, &mut kv_ops, &etcd.unique));
    let mut versions: Vec<Op<znode::Input, znode::Output>> = zk_ops
        .iter()
        .filter_map(|o| match (&o.kind, &o.res) {
            (ZkKind::Set { expect, .. }, res) => {
                let output = match res {
                    ZkRes::Written { version, .. } => Some(Some(znode::Output::Version(*version))),
                    ZkRes::BadVersion => Some(Some(znode::Output::BadVersion)),
                    ZkRes::Unknown => Some(None),
                    _ => None,
                }?;
                Some(Op {
                    client: o.client,
                    input: znode::Input::SetData {
                        path: o.path.clone(),
                        expect: *expect,
                    },
                    output,
                    call: o.call,
                    ret: o.ret,
                })
            }
            _ => None,
        })
        .collect();
    anomalies.extend(final_zk_reads(&c, t0, &zk_ops, &mut versions));

    // The checks.
    let check_started = Instant::now();
    let (kv_parts, kv_bad, kv_steps) =
        lin::check_partitioned(&kv::Register, &kv_ops, |i| i.key().to_string(), BUDGET);
    for (k, idx, out) in &kv_bad {
        anomalies.push(format!(
            "etcd key {k}: {} ({} ops)",
            match out {
                Outcome::Illegal { longest_prefix } => format!(
                    "not linearizable; longest linearizable prefix {} ops",
                    longest_prefix.len()
                ),
                o => format!("{o:?}"),
            },
            idx.len()
        ));
    }
    let kv_check_time = check_started.elapsed();
    let (zk_parts, zk_bad, zk_steps) = lin::check_partitioned(
        &znode::Versions,
        &versions,
        |i| i.path().to_string(),
        BUDGET,
    );
    for (p, idx, out) in &zk_bad {
        anomalies.push(format!("znode {p}: {out:?} ({} ops)", idx.len()));
    }
    let zk_check_time = check_started.elapsed() - kv_check_time;
    // One revision clock for both personalities.
    let mut clock: Vec<(u64, u64, i64)> = etcd.revisions.clone();
    clock.extend(zk_ops.iter().filter_map(|o| match o.res {
        ZkRes::Written { mzxid, .. } => Some((o.call, o.ret, mzxid)),
        _ => None,
    }));
    let clock_writes = clock.len();
    anomalies.extend(check_revision_clock(clock));
    let session_anomalies = check_zk_sessions(&zk_ops);
    let zk_logical: BTreeSet<usize> = zk_ops.iter().map(|o| o.session).collect();
    anomalies.extend(session_anomalies);

    // The checks are not vacuous: the real histories with one stale read
    // added must be rejected.
    assert!(
        stale_read_is_caught(&kv_ops),
        "the checker accepted the real etcd history with a stale read added"
    );
    assert!(
        going_back_is_caught(&zk_ops),
        "the session check accepted a session reading an older version"
    );

    let kv_unknown = kv_ops.iter().filter(|o| o.output.is_none()).count();
    let zk_unknown = zk_ops
        .iter()
        .filter(|o| matches!(o.res, ZkRes::Unknown))
        .count();
    let mut zk_errors: BTreeMap<i32, usize> = BTreeMap::new();
    for o in &zk_ops {
        if let ZkRes::Error(e) = o.res {
            *zk_errors.entry(e).or_default() += 1;
        }
    }
    let unique_acked = etcd.unique.iter().filter(|(_, a)| *a).count();
    let creates_acked = zk_ops
        .iter()
        .filter(|o| matches!(o.res, ZkRes::Created))
        .count();
    eprintln!(
        "fault suite: operations: etcd {} recorded ({} of unknown outcome, {} failed reads left out) + {} unique puts ({} acknowledged); ZooKeeper {} ({} of unknown outcome, error answers by code {:?}) incl. {} creates acknowledged; {} ZooKeeper sessions ({} expired, resumed {} times by id and password)",
        kv_ops.len(),
        kv_unknown,
        etcd.failed_reads,
        etcd.unique.len(),
        unique_acked,
        zk_ops.len(),
        zk_unknown,
        zk_errors,
        creates_acked,
        zk_sessions,
        zk_expired,
        zk_resumed,
    );
    eprintln!("fault suite: faults injected: {}", faults.len());
    eprintln!(
        "fault suite: histories checked: {} etcd keys (linearizable), {} znodes (linearizable writes), {} ZooKeeper sessions (ordered reads), {} acknowledged writes of both on one revision clock; checks took {:?} (etcd {:?}, at most {} search steps a key; znodes {:?}, at most {} a znode; budget {})",
        kv_parts,
        zk_parts,
        zk_logical.len(),
        clock_writes,
        check_started.elapsed(),
        kv_check_time,
        kv_steps,
        zk_check_time,
        zk_steps,
        BUDGET,
    );
    eprintln!(
        "fault suite: proxied peer connections: {} ({} attributed to a member)",
        c.proxies.links.accepted.load(Ordering::Relaxed),
        c.proxies.links.from_members.load(Ordering::Relaxed)
    );
    eprintln!("fault suite: anomalies: {}", anomalies.len());
    for a in anomalies.iter().take(20) {
        eprintln!("  {a}");
    }
    eprintln!("fault suite: total {:?}", started.elapsed());
    {
        // The histories, for a closer look.
        let dump =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/fault-history.txt");
        let mut text = String::new();
        for a in &anomalies {
            text.push_str(&format!("anomaly: {a}\n"));
        }
        for o in &kv_ops {
            text.push_str(&format!("{o:?}\n"));
        }
        for o in &zk_ops {
            text.push_str(&format!("{o:?}\n"));
        }
        for o in &versions {
            text.push_str(&format!("{o:?}\n"));
        }
        let _ = std::fs::write(&dump, text);
        eprintln!("fault suite: histories written to {}", dump.display());
    }
    assert!(anomalies.is_empty(), "{} anomalies", anomalies.len());
    // The workload did run through the faults.
    assert!(kv_ops.len() > 100 && zk_ops.len() > 100);
}
