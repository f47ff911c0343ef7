//! End-to-end commit throughput of a one-node cluster: the real `janus`
//! binary, writes proposed over the peer port's forwarding RPC, each
//! acknowledged only after its fsync and apply.
//!
//! `cargo bench -p janus-tests --bench commit` (builds nothing extra: it uses
//! target/release/janus, so run `cargo build --release -p janus-server` first).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use janus_core::{Acl, Command, CreateMode, PutRequest, ZkOp};
use janus_raft::proto::peer_client::PeerClient;
use janus_raft::proto::ForwardRequest;
use janus_tests::Janus;

const SECONDS: f64 = 3.0;

/// The server's fsync count so far (from `/metrics`).
fn fsyncs(j: &Janus) -> u64 {
    let body = j.http_get("/metrics").map(|(_, b)| b).unwrap_or_default();
    body.lines()
        .find_map(|l| l.strip_prefix("janus_wal_fsync_duration_seconds_count "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

async fn run(j: &Janus, name: &str, concurrency: usize, make: fn(usize, u64) -> Command) {
    let fsyncs_before = fsyncs(j);
    let done = Arc::new(AtomicU64::new(0));
    let mut lat = Vec::new();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let done = done.clone();
        let addr = format!("http://{}", j.peer);
        tasks.push(tokio::spawn(async move {
            let mut client = PeerClient::connect(addr).await.expect("connect");
            let mut lat = Vec::new();
            let mut n = 0u64;
            while start.elapsed().as_secs_f64() < SECONDS {
                let command = postcard::to_stdvec(&make(w, n)).expect("encode");
                let t = Instant::now();
                client
                    .forward(ForwardRequest {
                        command,
                        from_member: false,
                    })
                    .await
                    .expect("forward");
                lat.push(t.elapsed());
                n += 1;
                done.fetch_add(1, Ordering::Relaxed);
            }
            lat
        }));
    }
    for t in tasks {
        lat.extend(t.await.expect("task"));
    }
    let secs = start.elapsed().as_secs_f64();
    lat.sort();
    let p = |q: f64| {
        lat.get(((lat.len() as f64 * q) as usize).min(lat.len().saturating_sub(1)))
            .copied()
    };
    let ms = |d: Option<Duration>| d.map_or(0.0, |d| d.as_secs_f64() * 1000.0);
    let n = done.load(Ordering::Relaxed);
    let syncs = fsyncs(j) - fsyncs_before;
    println!(
        "{name:<22} in-flight {concurrency:>3}  {n:>7} ops  {:>9.0} ops/s  p50 {:>6.2} ms  p99 {:>6.2} ms  {:>5.2} ops/fsync",
        n as f64 / secs,
        ms(p(0.5)),
        ms(p(0.99)),
        n as f64 / syncs.max(1) as f64,
    );
}

fn etcd_put(w: usize, n: u64) -> Command {
    Command::Put(PutRequest {
        key: format!("bench/{w}/{}", n % 1000).into_bytes(),
        value: vec![b'v'; 256],
        ..Default::default()
    })
}

fn zk_create(w: usize, n: u64) -> Command {
    Command::Zk {
        session: 0,
        op: ZkOp::Create {
            path: format!("/b{w}-{n}"),
            data: Some(vec![b'v'; 256]),
            acl: Acl::open_unsafe(),
            mode: CreateMode::Persistent,
            ttl_ms: -1,
        },
    }
}

#[tokio::main]
async fn main() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let j = Janus::start(&tmp.path().join("data"), &[]);
    j.wait_healthy(Duration::from_secs(20));
    println!("one-node janus, fsync per batch, {SECONDS} s per row");
    for c in [1, 16, 64, 256] {
        run(&j, "etcd put (256 B)", c, etcd_put).await;
    }
    for c in [1, 16, 64] {
        run(&j, "zk create (256 B)", c, zk_create).await;
    }
}
