//! janus-bench: the same workloads against Janus, real etcd and real
//! ZooKeeper, through independent client crates (`etcd-client`,
//! `zookeeper-client`), never through Janus's own code.
//!
//!   janus-bench run --system janus --etcd 127.0.0.1:2379 --zk 127.0.0.1:2181 --json j.json
//!   janus-bench load --etcd 127.0.0.1:2379 --keys 1000000
//!   janus-bench ready --etcd 127.0.0.1:2379
//!   janus-bench compare --janus j.json --etcd e.json --zk z.json [--resources r.tsv]
//!   janus-bench failover --kill-pid PID --etcd SURVIVORS --zk SURVIVORS
//!   janus-bench rejoin --leader EP --kill-pid PID --wipe DIR --start CMD ...
//!
//! scripts/bench.sh starts the three servers and runs all of this.

mod failover;
mod rejoin;
mod report;

use anyhow::{anyhow, Context, Result};
use clap::{Args, Parser, Subcommand};
use etcd_client::{Client as Etcd, GetOptions, Txn, TxnOp};
use futures::future::join_all;
use report::{new_histogram, record, Row};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use zookeeper_client as zk;

#[derive(Parser)]
#[command(name = "janus-bench", about = "Janus vs real etcd and ZooKeeper")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the workloads against one system and print/write the results.
    Run(RunArgs),
    /// Bulk-load keys (etcd API) or znodes (ZooKeeper API) for the memory,
    /// disk and restart measurements.
    Load(LoadArgs),
    /// Wait until the API answers a read (restart-to-ready timing).
    Ready(ReadyArgs),
    /// Print the Janus/etcd and Janus/ZooKeeper ratio tables.
    Compare(CompareArgs),
    /// Print the scale part's table from scripts/bench.sh's scale.tsv.
    Scale(ScaleArgs),
    /// Connect to the survivors, SIGKILL the leader, print the time to the
    /// first acknowledged write per API.
    Failover(failover::FailoverArgs),
    /// Print the failover table from scripts/bench.sh's failover.tsv.
    FailoverTable(failover::FailoverTableArgs),
    /// Puts on the leader while a wiped follower rejoins and catches up:
    /// put latency before and during, and the catch-up time.
    Rejoin(rejoin::RejoinArgs),
}

#[derive(Args)]
struct ScaleArgs {
    #[arg(long)]
    tsv: PathBuf,
    #[arg(long)]
    label: Option<String>,
}

#[derive(Args)]
struct RunArgs {
    /// Label for the results: janus, etcd, zookeeper.
    #[arg(long)]
    system: String,
    /// etcd API endpoint(s), comma-separated host:port.
    #[arg(long)]
    etcd: Option<String>,
    /// ZooKeeper API connect string, host:port[,host:port].
    #[arg(long)]
    zk: Option<String>,
    /// Measured time per (workload, concurrency).
    #[arg(long, default_value_t = 2000)]
    duration_ms: u64,
    /// Requests in flight, one sequential worker each.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64,256")]
    concurrency: Vec<usize>,
    /// Client connections the workers are spread over (at most one per worker).
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Watchers in the watch-latency workload, each on its own connection.
    #[arg(long, default_value_t = 16)]
    watchers: usize,
    /// Value size of the ordinary workloads, bytes.
    #[arg(long, default_value_t = 256)]
    value_size: usize,
    /// Value size of the large-value workloads, bytes.
    #[arg(long, default_value_t = 65536)]
    large_value_size: usize,
    /// Distinct keys/znodes the read, write and mixed workloads touch.
    #[arg(long, default_value_t = 1000)]
    keys: usize,
    /// Run only these workloads (names as printed), comma-separated.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Write the result rows here as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Args)]
struct LoadArgs {
    #[arg(long)]
    etcd: Option<String>,
    #[arg(long)]
    zk: Option<String>,
    #[arg(long, default_value_t = 1_000_000)]
    keys: u64,
    #[arg(long, default_value_t = 256)]
    value_size: usize,
    /// Operations per etcd txn / ZooKeeper multi (etcd's default limit is 128).
    #[arg(long, default_value_t = 100)]
    batch: u64,
    /// Batches in flight.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Values of pseudo-random bytes instead of one repeated byte, so that
    /// compression on disk or on the wire does not shrink the data set.
    #[arg(long)]
    incompressible: bool,
}

#[derive(Args)]
struct ReadyArgs {
    #[arg(long)]
    etcd: Option<String>,
    #[arg(long)]
    zk: Option<String>,
    #[arg(long, default_value_t = 300)]
    timeout_secs: u64,
    /// Only wait for the API to answer; without it, the first bulk-loaded
    /// key must read back.
    #[arg(long)]
    no_data: bool,
}

#[derive(Args)]
struct CompareArgs {
    #[arg(long)]
    janus: PathBuf,
    #[arg(long)]
    etcd: Option<PathBuf>,
    #[arg(long)]
    zk: Option<PathBuf>,
    /// Tab-separated resource lines written by scripts/bench.sh.
    #[arg(long)]
    resources: Option<PathBuf>,
    /// Appended to each heading, e.g. "three members each".
    #[arg(long)]
    label: Option<String>,
    /// Also print the performance targets, met or not.
    #[arg(long)]
    targets: bool,
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Run(a) => run(a).await,
        Cmd::Load(a) => load(a).await,
        Cmd::Scale(a) => scale(a),
        Cmd::Ready(a) => ready(a).await,
        Cmd::Compare(a) => compare(a),
        Cmd::Failover(a) => failover::failover(a).await,
        Cmd::FailoverTable(a) => failover::table(a),
        Cmd::Rejoin(a) => rejoin::rejoin(a).await,
    }
}

/// One request of a workload. Each worker runs these back to back.
#[derive(Clone, Copy, Debug)]
enum Op {
    EtcdPut { large: bool },
    EtcdRange { serializable: bool },
    EtcdMixed { read_pct: u64 },
    ZkSet { large: bool },
    ZkCreate,
    ZkGet,
    ZkMixed { read_pct: u64 },
    ZkChurn,
}

struct Ctx {
    etcd: Vec<Etcd>,
    zk: Vec<zk::Client>,
    zk_addr: String,
    keys: u64,
    small: Vec<u8>,
    large: Vec<u8>,
    /// Keeps create paths of different runs and concurrency levels apart.
    tag: String,
}

fn etcd_key(i: u64) -> String {
    format!("bench/k/{i:06}")
}

fn zk_path(i: u64) -> String {
    format!("/bench/k/{i:06}")
}

/// xorshift64: a cheap, seedable key picker; no need for a rand crate.
fn next(rng: &mut u64) -> u64 {
    let mut x = *rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *rng = x;
    x
}

fn persistent() -> zk::CreateOptions<'static> {
    zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all())
}

async fn one(ctx: &Ctx, op: Op, conn: usize, worker: usize, i: u64, rng: &mut u64) -> Result<()> {
    let k = next(rng) % ctx.keys;
    match op {
        Op::EtcdPut { large } => {
            let v = if large { &ctx.large } else { &ctx.small };
            let mut c = ctx.etcd[conn].clone();
            c.put(etcd_key(k), v.clone(), None).await?;
        }
        Op::EtcdRange { serializable } => {
            let mut c = ctx.etcd[conn].clone();
            let opts = serializable.then(|| GetOptions::new().with_serializable());
            let r = c.get(etcd_key(k), opts).await?;
            if r.kvs().is_empty() {
                return Err(anyhow!("key {} missing", etcd_key(k)));
            }
        }
        Op::EtcdMixed { read_pct } => {
            let mut c = ctx.etcd[conn].clone();
            if next(rng) % 100 < read_pct {
                c.get(etcd_key(k), None).await?;
            } else {
                c.put(etcd_key(k), ctx.small.clone(), None).await?;
            }
        }
        Op::ZkSet { large } => {
            let v = if large { &ctx.large } else { &ctx.small };
            ctx.zk[conn].set_data(&zk_path(k), v, None).await?;
        }
        Op::ZkCreate => {
            let p = format!("/bench/c/{}-{worker}-{i}", ctx.tag);
            ctx.zk[conn].create(&p, &ctx.small, &persistent()).await?;
        }
        Op::ZkGet => {
            ctx.zk[conn].get_data(&zk_path(k)).await?;
        }
        Op::ZkMixed { read_pct } => {
            if next(rng) % 100 < read_pct {
                ctx.zk[conn].get_data(&zk_path(k)).await?;
            } else {
                ctx.zk[conn].set_data(&zk_path(k), &ctx.small, None).await?;
            }
        }
        Op::ZkChurn => {
            let c = zk::Client::connector()
                .with_session_timeout(Duration::from_secs(10))
                .connect(&ctx.zk_addr)
                .await?;
            let eph = zk::CreateMode::EphemeralSequential.with_acls(zk::Acls::anyone_all());
            c.create("/bench/e/n-", &ctx.small, &eph).await?;
            // Dropping the last handle sends closeSession; wait for the
            // server's answer so a cycle includes the close.
            let mut state = c.state_watcher();
            drop(c);
            let closed = tokio::time::timeout(Duration::from_secs(5), async {
                loop {
                    if state.changed().await.is_terminated() {
                        break;
                    }
                }
            })
            .await;
            if closed.is_err() {
                return Err(anyhow!("session close not confirmed in 5 s"));
            }
        }
    }
    Ok(())
}

/// Runs `op` with `conc` sequential workers for `dur`; workers share
/// `min(conc, connections)` connections round-robin.
async fn drive(
    ctx: &Arc<Ctx>,
    system: &str,
    api: &str,
    name: &str,
    op: Op,
    conc: usize,
    conns: usize,
    dur: Duration,
) -> Row {
    let start = Instant::now();
    let deadline = start + dur;
    let mut tasks = Vec::with_capacity(conc);
    for w in 0..conc {
        let ctx = ctx.clone();
        let conn = w % conns.max(1);
        tasks.push(tokio::spawn(async move {
            let mut h = new_histogram();
            let mut errors = 0u64;
            let mut first_error = None;
            let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ ((w as u64 + 1) * 0x100_0000_01B3);
            let mut i = 0u64;
            while Instant::now() < deadline {
                let t = Instant::now();
                // Names created per worker must differ between concurrency levels.
                match one(&ctx, op, conn, conc * 1_000_000 + w, i, &mut rng).await {
                    Ok(()) => record(&mut h, t.elapsed()),
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert_with(|| format!("{e:#}"));
                    }
                }
                i += 1;
            }
            (h, errors, first_error)
        }));
    }
    let mut h = new_histogram();
    let mut errors = 0;
    let mut first_error = None;
    for t in join_all(tasks).await {
        match t {
            Ok((wh, we, wf)) => {
                let _ = h.add(&wh);
                errors += we;
                if first_error.is_none() {
                    first_error = wf;
                }
            }
            Err(e) => {
                errors += 1;
                first_error.get_or_insert_with(|| format!("worker panicked: {e}"));
            }
        }
    }
    Row::from_histogram(
        system,
        api,
        name,
        conc,
        &h,
        errors,
        start.elapsed(),
        first_error,
    )
}

async fn etcd_connect(ep: &str) -> Result<Etcd> {
    let eps: Vec<&str> = ep.split(',').collect();
    let opts = etcd_client::ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(5))
        .with_timeout(Duration::from_secs(30));
    Etcd::connect(eps, Some(opts))
        .await
        .with_context(|| format!("connecting to etcd API at {ep}"))
}

async fn zk_connect(addr: &str) -> Result<zk::Client> {
    zk::Client::connector()
        .with_session_timeout(Duration::from_secs(30))
        .connect(addr)
        .await
        .with_context(|| format!("connecting to ZooKeeper API at {addr}"))
}

/// Creates a znode, accepting one that already exists.
async fn zk_ensure(c: &zk::Client, path: &str, data: &[u8]) -> Result<()> {
    match c.create(path, data, &persistent()).await {
        Ok(_) | Err(zk::Error::NodeExists) => Ok(()),
        Err(e) => Err(anyhow!("create {path}: {e}")),
    }
}

fn wanted(only: &[String], name: &str) -> bool {
    only.is_empty() || only.iter().any(|o| o == name)
}

async fn run(a: RunArgs) -> Result<()> {
    let dur = Duration::from_millis(a.duration_ms);
    let max_conc = a.concurrency.iter().copied().max().unwrap_or(1);
    let nconns = a.connections.min(max_conc).max(1);
    let small = vec![b'v'; a.value_size];
    let large = vec![b'L'; a.large_value_size];
    let keys = a.keys.max(1) as u64;
    let mut rows = Vec::new();
    save(&rows, a.json.as_ref())?;
    let tag = format!(
        "{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0)
    );

    if let Some(ep) = &a.etcd {
        let mut etcd = Vec::new();
        for _ in 0..nconns {
            etcd.push(etcd_connect(ep).await?);
        }
        // The read workloads need their keys.
        let mut c = etcd[0].clone();
        for chunk in (0..keys).collect::<Vec<_>>().chunks(100) {
            let ops: Vec<TxnOp> = chunk
                .iter()
                .map(|&k| TxnOp::put(etcd_key(k), small.clone(), None))
                .collect();
            c.txn(Txn::new().and_then(ops)).await.context("preload")?;
        }
        let ctx = Arc::new(Ctx {
            etcd,
            zk: Vec::new(),
            zk_addr: String::new(),
            keys,
            small: small.clone(),
            large: large.clone(),
            tag: tag.clone(),
        });
        let workloads: Vec<(&str, Op)> = vec![
            ("put", Op::EtcdPut { large: false }),
            (
                "range-linearizable",
                Op::EtcdRange {
                    serializable: false,
                },
            ),
            ("range-serializable", Op::EtcdRange { serializable: true }),
            ("mixed-90r-10w", Op::EtcdMixed { read_pct: 90 }),
            ("mixed-50r-50w", Op::EtcdMixed { read_pct: 50 }),
            ("put-64KiB", Op::EtcdPut { large: true }),
        ];
        for (name, op) in workloads {
            if !wanted(&a.only, name) {
                continue;
            }
            for &conc in &a.concurrency {
                let conns = nconns.min(conc);
                let r = drive(&ctx, &a.system, "etcd", name, op, conc, conns, dur).await;
                print_row(&r);
                rows.push(r);
                save(&rows, a.json.as_ref())?;
            }
        }
        if wanted(&a.only, "watch") {
            let r = etcd_watch(ep, &a.system, a.watchers, dur, &small).await?;
            print_row(&r);
            rows.push(r);
            save(&rows, a.json.as_ref())?;
        }
    }

    if let Some(addr) = &a.zk {
        let mut zks = Vec::new();
        for _ in 0..nconns {
            zks.push(zk_connect(addr).await?);
        }
        let c = &zks[0];
        for p in ["/bench", "/bench/k", "/bench/c", "/bench/e", "/bench/w"] {
            zk_ensure(c, p, b"").await?;
        }
        let mut pending = Vec::new();
        for k in 0..keys {
            let p = zk_path(k);
            pending.push(async move { zk_ensure(c, &p, &vec![b'v'; 256]).await });
            if pending.len() == 256 {
                for r in join_all(std::mem::take(&mut pending)).await {
                    r?;
                }
            }
        }
        for r in join_all(pending).await {
            r?;
        }
        let ctx = Arc::new(Ctx {
            etcd: Vec::new(),
            zk: zks.clone(),
            zk_addr: addr.clone(),
            keys,
            small: small.clone(),
            large,
            tag,
        });
        let workloads: Vec<(&str, Op)> = vec![
            ("setData", Op::ZkSet { large: false }),
            ("create", Op::ZkCreate),
            ("getData", Op::ZkGet),
            ("mixed-90r-10w", Op::ZkMixed { read_pct: 90 }),
            ("mixed-50r-50w", Op::ZkMixed { read_pct: 50 }),
            ("setData-64KiB", Op::ZkSet { large: true }),
        ];
        for (name, op) in workloads {
            if !wanted(&a.only, name) {
                continue;
            }
            for &conc in &a.concurrency {
                let conns = nconns.min(conc);
                let r = drive(&ctx, &a.system, "zookeeper", name, op, conc, conns, dur).await;
                print_row(&r);
                rows.push(r);
                save(&rows, a.json.as_ref())?;
            }
        }
        if wanted(&a.only, "watch") {
            let r = zk_watch(addr, &a.system, a.watchers, dur, &small).await?;
            print_row(&r);
            rows.push(r);
            save(&rows, a.json.as_ref())?;
        }
        if wanted(&a.only, "session-churn") {
            // Churn opens a session per request; cap it so the servers'
            // session bookkeeping, not the client's sockets, is measured.
            for &conc in a.concurrency.iter().filter(|&&c| c <= 64) {
                let r = drive(
                    &ctx,
                    &a.system,
                    "zookeeper",
                    "session-churn",
                    Op::ZkChurn,
                    conc,
                    1,
                    dur,
                )
                .await;
                print_row(&r);
                rows.push(r);
                save(&rows, a.json.as_ref())?;
            }
        }
    }

    println!();
    print!("{}", report::table(&rows));
    save(&rows, a.json.as_ref())
}

/// Writes the rows so far: a run that fails part-way (a server stops
/// answering) still leaves its finished rows for `compare`.
fn save(rows: &[Row], json: Option<&PathBuf>) -> Result<()> {
    if let Some(p) = json {
        let text = serde_json::to_string_pretty(rows)?;
        std::fs::write(p, text).with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(())
}

fn print_row(r: &Row) {
    eprintln!(
        "{:>9} {:>9} {:<20} c={:<4} {:>10.0} ops/s  p50 {:>9}  p99 {:>9}  p99.9 {:>9}  max {:>9}  errors {}{}",
        r.system,
        r.api,
        r.workload,
        r.concurrency,
        r.ops_per_sec,
        report::fmt_us(r.p50_us),
        report::fmt_us(r.p99_us),
        report::fmt_us(r.p999_us),
        report::fmt_us(r.max_us),
        r.errors,
        r.first_error
            .as_deref()
            .map(|e| format!(" (first: {e})"))
            .unwrap_or_default()
    );
}

/// Acknowledgement times of the writer's puts, in write order, and each
/// watcher's receive times, in event order; the n-th event of a watcher
/// belongs to the n-th write (both APIs deliver a key's events in order).
fn watch_row(
    system: &str,
    api: &str,
    watchers: usize,
    acks: &[Instant],
    received: &[Vec<Instant>],
    elapsed: Duration,
    write_errors: u64,
) -> Row {
    let mut h = new_histogram();
    let mut missing = write_errors;
    for per in received {
        for (n, ack) in acks.iter().enumerate() {
            match per.get(n) {
                // An event can beat the writer's own acknowledgement: 0.
                Some(t) => record(&mut h, t.saturating_duration_since(*ack)),
                None => missing += 1,
            }
        }
    }
    Row::from_histogram(
        system,
        api,
        &format!("watch-{watchers}-watchers"),
        1,
        &h,
        missing,
        elapsed,
        (missing > 0).then(|| format!("{missing} events missing or writes failed")),
    )
}

async fn etcd_watch(
    ep: &str,
    system: &str,
    watchers: usize,
    dur: Duration,
    v: &[u8],
) -> Result<Row> {
    let key = "bench/watch";
    let mut tasks = Vec::new();
    let received: Arc<Mutex<Vec<Vec<Instant>>>> = Arc::new(Mutex::new(vec![Vec::new(); watchers]));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    for w in 0..watchers {
        let mut c = etcd_connect(ep).await?;
        let mut stream = c.watch(key, None).await?;
        let received = received.clone();
        let mut stop = stop_rx.clone();
        tasks.push(tokio::spawn(async move {
            // Keep the connection alive for the stream's lifetime.
            let _c = c;
            let mut mine = Vec::new();
            loop {
                tokio::select! {
                    m = stream.message() => match m {
                        Ok(Some(resp)) => {
                            let now = Instant::now();
                            for _ in resp.events() {
                                mine.push(now);
                            }
                        }
                        _ => break,
                    },
                    _ = stop.changed() => break,
                }
            }
            if let Ok(mut r) = received.lock() {
                r[w] = mine;
            }
        }));
    }
    let mut c = etcd_connect(ep).await?;
    let mut acks = Vec::new();
    let mut errors = 0;
    let start = Instant::now();
    while start.elapsed() < dur {
        match c.put(key, v.to_vec(), None).await {
            Ok(_) => acks.push(Instant::now()),
            Err(_) => errors += 1,
        }
    }
    let elapsed = start.elapsed();
    watch_grace().await;
    let _ = stop_tx.send(true);
    join_all(tasks).await;
    let received = received.lock().map(|r| r.clone()).unwrap_or_default();
    Ok(watch_row(
        system, "etcd", watchers, &acks, &received, elapsed, errors,
    ))
}

/// Lets the last events reach the watchers before they are stopped. The
/// watcher tasks publish their receive times only when stopped, so this is
/// a fixed grace period, outside the measured window.
async fn watch_grace() {
    tokio::time::sleep(Duration::from_millis(1500)).await;
}

async fn zk_watch(
    addr: &str,
    system: &str,
    watchers: usize,
    dur: Duration,
    v: &[u8],
) -> Result<Row> {
    let path = "/bench/w/x";
    let writer = zk_connect(addr).await?;
    zk_ensure(&writer, path, v).await?;
    let received: Arc<Mutex<Vec<Vec<Instant>>>> = Arc::new(Mutex::new(vec![Vec::new(); watchers]));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    for w in 0..watchers {
        let c = zk_connect(addr).await?;
        // A persistent watch (addWatch, 3.6+): no re-arming gap between events.
        let mut watcher = c.watch(path, zk::AddWatchMode::Persistent).await?;
        let received = received.clone();
        let mut stop = stop_rx.clone();
        tasks.push(tokio::spawn(async move {
            let _c = c;
            let mut mine = Vec::new();
            loop {
                tokio::select! {
                    e = watcher.changed() => {
                        if e.event_type == zk::EventType::NodeDataChanged {
                            mine.push(Instant::now());
                        } else if e.event_type == zk::EventType::Session && e.session_state.is_terminated() {
                            break;
                        }
                    }
                    _ = stop.changed() => break,
                }
            }
            if let Ok(mut r) = received.lock() {
                r[w] = mine;
            }
        }));
    }
    let mut acks = Vec::new();
    let mut errors = 0;
    let start = Instant::now();
    while start.elapsed() < dur {
        match writer.set_data(path, v, None).await {
            Ok(_) => acks.push(Instant::now()),
            Err(_) => errors += 1,
        }
    }
    let elapsed = start.elapsed();
    watch_grace().await;
    let _ = stop_tx.send(true);
    join_all(tasks).await;
    let received = received.lock().map(|r| r.clone()).unwrap_or_default();
    Ok(watch_row(
        system,
        "zookeeper",
        watchers,
        &acks,
        &received,
        elapsed,
        errors,
    ))
}

/// A value of `size` bytes for key number `k`: `v` repeated, or bytes of a
/// xorshift sequence seeded by `k` (deterministic, incompressible).
pub(crate) fn load_value(k: u64, size: usize, incompressible: bool) -> Vec<u8> {
    if !incompressible {
        return vec![b'v'; size];
    }
    let mut x = k.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v = Vec::with_capacity(size + 8);
    while v.len() < size {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(size);
    v
}

async fn load(a: LoadArgs) -> Result<()> {
    let start = Instant::now();
    let (size, random) = (a.value_size, a.incompressible);
    let batches: Vec<u64> = (0..a.keys.div_ceil(a.batch.max(1))).collect();
    let batch = a.batch.max(1);
    let keys = a.keys;
    if let Some(ep) = &a.etcd {
        let c = etcd_connect(ep).await?;
        for group in batches.chunks(a.concurrency.max(1)) {
            let futs = group.iter().map(|&b| {
                let mut c = c.clone();
                async move {
                    let ops: Vec<TxnOp> = (b * batch..((b + 1) * batch).min(keys))
                        .map(|k| {
                            TxnOp::put(format!("load/{k:08}"), load_value(k, size, random), None)
                        })
                        .collect();
                    c.txn(Txn::new().and_then(ops)).await
                }
            });
            for r in join_all(futs).await {
                r.context("load txn")?;
            }
        }
    }
    if let Some(addr) = &a.zk {
        let c = zk_connect(addr).await?;
        zk_ensure(&c, "/load", b"").await?;
        // 1,000 children per parent: realistic fan-out, no giant child list.
        let parents = keys.div_ceil(1000);
        for p in 0..parents {
            zk_ensure(&c, &format!("/load/p{p:05}"), b"").await?;
        }
        for group in batches.chunks(a.concurrency.max(1)) {
            let futs = group.iter().map(|&b| {
                let c = &c;
                async move {
                    let mut m = c.new_multi_writer();
                    for k in b * batch..((b + 1) * batch).min(keys) {
                        let path = format!("/load/p{:05}/k{k:08}", k / 1000);
                        m.add_create(&path, &load_value(k, size, random), &persistent())?;
                    }
                    m.commit().await.map(|_| ()).map_err(anyhow::Error::from)
                }
            });
            for r in join_all(futs).await {
                r.context("load multi")?;
            }
        }
    }
    // The script parses this line.
    println!(
        "loaded {} keys in {:.3} s",
        a.keys,
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn ready(a: ReadyArgs) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(a.timeout_secs);
    loop {
        let ok = async {
            if let Some(ep) = &a.etcd {
                let mut c = etcd_connect(ep).await?;
                let r = c.get("load/00000000", None).await?;
                if !a.no_data && r.kvs().is_empty() {
                    return Err(anyhow!("loaded key not there yet"));
                }
            }
            if let Some(addr) = &a.zk {
                let c = zk_connect(addr).await?;
                let path = if a.no_data {
                    "/"
                } else {
                    "/load/p00000/k00000000"
                };
                c.get_data(path).await?;
            }
            Ok::<(), anyhow::Error>(())
        };
        match tokio::time::timeout(Duration::from_secs(5), ok).await {
            Ok(Ok(())) => return Ok(()),
            _ if Instant::now() > deadline => {
                return Err(anyhow!("not ready in {} s", a.timeout_secs))
            }
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

fn scale(a: ScaleArgs) -> Result<()> {
    let text =
        std::fs::read_to_string(&a.tsv).with_context(|| format!("reading {}", a.tsv.display()))?;
    let first = |p: &str| -> Option<Row> {
        read_rows(&PathBuf::from(p))
            .ok()
            .and_then(|r| r.into_iter().next())
    };
    let mut runs = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() < 9 {
            continue;
        }
        let n = |s: &str| s.trim().parse::<u64>().unwrap_or(0);
        runs.push(report::ScaleRun {
            system: f[0].to_string(),
            api: f[1].to_string(),
            keys: n(f[2]),
            bytes: n(f[3]),
            empty: first(f[4]),
            loaded: first(f[5]),
            rss_kib: n(f[6]),
            disk_kib: n(f[7]),
            restart_ms: n(f[8]),
        });
    }
    println!(
        "#### Scale: puts before and after a bulk load{}",
        a.label.map(|l| format!(", {l}")).unwrap_or_default()
    );
    println!();
    println!("{}", report::scale_table(&runs));
    Ok(())
}

fn read_rows(p: &PathBuf) -> Result<Vec<Row>> {
    let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", p.display()))
}

fn compare(a: CompareArgs) -> Result<()> {
    let janus = read_rows(&a.janus)?;
    let label = a
        .label
        .as_deref()
        .map(|l| format!(", {l}"))
        .unwrap_or_default();
    let etcd = a.etcd.as_ref().map(read_rows).transpose()?;
    let zk = a.zk.as_ref().map(read_rows).transpose()?;
    let res = match &a.resources {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            report::parse_resources(&text)
        }
        None => Vec::new(),
    };
    if let Some(etcd) = &etcd {
        println!("#### Janus / etcd (etcd API{label})\n");
        print!("{}", report::ratio_table(&janus, etcd, "etcd"));
        println!();
    }
    if let Some(zk) = &zk {
        println!("#### Janus / ZooKeeper (ZooKeeper API{label})\n");
        print!("{}", report::ratio_table(&janus, zk, "ZooKeeper"));
        println!();
    }
    if !res.is_empty() {
        println!("#### Bulk load: peak RSS, disk, restart (ratios Janus/other{label})\n");
        print!("{}", report::resources_table(&res));
        println!();
    }
    if a.targets {
        let mut others: Vec<(&str, &[report::Row])> = Vec::new();
        if let Some(e) = &etcd {
            others.push(("etcd", e));
        }
        if let Some(z) = &zk {
            others.push(("ZooKeeper", z));
        }
        println!("#### Targets{label}\n");
        print!("{}", report::targets_table(&janus, &others, &res));
        println!();
    }
    Ok(())
}
