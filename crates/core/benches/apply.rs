//! Core apply throughput: a plain timing benchmark (no harness).
//!
//! `cargo bench -p janus-core --bench apply` prints one line per workload:
//! `name  ops  seconds  ops/s`. Proposals are built before the clock starts,
//! so only `State::apply` (or the read / snapshot call) is timed.

use std::hint::black_box;
use std::time::{Duration, Instant};

use janus_core::*;

const N: usize = 100_000;
const PARENTS: usize = 100;

fn report(name: &str, ops: usize, elapsed: Duration) {
    let secs = elapsed.as_secs_f64();
    println!(
        "{name:<28} {ops:>8}  {secs:>9.4}  {:>12.1}",
        ops as f64 / secs
    );
}

/// Apply every proposal, timed; panics if any answer is an error.
fn apply_all(s: &mut State, proposals: &[Proposal]) -> Duration {
    let start = Instant::now();
    for p in proposals {
        let (a, ev) = s.apply(p);
        black_box(&ev);
        assert!(
            !matches!(a.response, Response::Zk(Err(_)) | Response::Etcd(Err(_))),
            "{a:?}"
        );
        black_box(a);
    }
    start.elapsed()
}

fn key(i: usize) -> Vec<u8> {
    format!("key/{i:08}").into_bytes()
}

fn put(time_ms: i64, key: Vec<u8>, value: Vec<u8>) -> Proposal {
    Proposal {
        time_ms,
        command: Command::Put(PutRequest {
            key,
            value,
            ..Default::default()
        }),
    }
}

fn zk(time_ms: i64, op: ZkOp) -> Proposal {
    Proposal {
        time_ms,
        command: Command::Zk { session: 0, op },
    }
}

fn create(path: String) -> ZkOp {
    ZkOp::Create {
        path,
        data: Some(b"data".to_vec()),
        acl: Acl::open_unsafe(),
        mode: CreateMode::Persistent,
        ttl_ms: -1,
    }
}

fn check(s: &State) {
    if let Err(e) = s.check_invariants() {
        panic!("invariant broken after a workload: {e}");
    }
}

fn main() {
    println!(
        "{:<28} {:>8}  {:>9}  {:>12}",
        "name", "ops", "seconds", "ops/s"
    );
    let t0 = 1_700_000_000_000i64;

    // etcd Put of N distinct keys with 256-byte values.
    let mut big = State::new();
    let value = vec![0xABu8; 256];
    let proposals: Vec<Proposal> = (0..N)
        .map(|i| put(t0 + i as i64, key(i), value.clone()))
        .collect();
    let d = apply_all(&mut big, &proposals);
    report("etcd_put_distinct_256B", N, d);
    assert_eq!(big.revision(), 1 + N as i64);
    drop(proposals);

    // etcd Put overwriting 1k keys N times (each key gets N/1000 versions).
    let mut hot = State::new();
    let proposals: Vec<Proposal> = (0..N)
        .map(|i| put(t0 + i as i64, key(i % 1000), format!("v{i}").into_bytes()))
        .collect();
    let d = apply_all(&mut hot, &proposals);
    report("etcd_put_overwrite_1k_keys", N, d);
    assert_eq!(hot.revision(), 1 + N as i64);
    check(&hot);
    drop((hot, proposals));

    // ZooKeeper create of N persistent znodes under PARENTS parents (the
    // parents are created first, untimed).
    let parents: Vec<Proposal> = (0..PARENTS)
        .map(|p| zk(t0, create(format!("/p{p:02}"))))
        .collect();
    apply_all(&mut big, &parents);
    let paths: Vec<String> = (0..N)
        .map(|i| format!("/p{:02}/n{i:08}", i % PARENTS))
        .collect();
    let proposals: Vec<Proposal> = paths
        .iter()
        .enumerate()
        .map(|(i, p)| zk(t0 + i as i64, create(p.clone())))
        .collect();
    let d = apply_all(&mut big, &proposals);
    report("zk_create_persistent", N, d);
    assert_eq!(
        big.zk_stat("/p00").map(|s| s.num_children as usize),
        Some(N / PARENTS)
    );
    drop(proposals);

    // ZooKeeper setData N times (once on every znode just created).
    let proposals: Vec<Proposal> = paths
        .iter()
        .enumerate()
        .map(|(i, p)| {
            zk(
                t0 + i as i64,
                ZkOp::SetData {
                    path: p.clone(),
                    data: Some(vec![7u8; 16]),
                    version: -1,
                },
            )
        })
        .collect();
    let d = apply_all(&mut big, &proposals);
    report("zk_set_data", N, d);
    drop(proposals);

    // etcd Range of 1000 keys (of the N distinct keys), repeated.
    const RANGES: usize = 2_000;
    let reqs: Vec<RangeRequest> = (0..RANGES)
        .map(|i| {
            let start = (i * 7_919) % (N - 1000);
            RangeRequest {
                key: key(start),
                range_end: key(start + 1000),
                ..Default::default()
            }
        })
        .collect();
    let start = Instant::now();
    for r in &reqs {
        let resp = big.kv_range(r).expect("range");
        assert_eq!(resp.kvs.len(), 1000);
        black_box(resp);
    }
    report("etcd_range_1000_keys", RANGES, start.elapsed());

    // Reopening the tables of a state with N keys + N znodes reads only
    // its scalars.
    check(&big);
    let start = Instant::now();
    let reopened = janus_core::State::open(big.reader_base()).expect("open");
    report("reopen", 1, start.elapsed());
    println!(
        "# reopened: {} keys, {} znodes",
        N,
        reopened.zk_node_count()
    );
    assert!(
        reopened.digest() == big.digest(),
        "reopen changed the state"
    );
}
