//! Failover as a client sees it: connected to the survivors, SIGKILL the
//! leader, then write until a write is acknowledged; the time from the
//! kill to that acknowledgement. The same probe for etcd, ZooKeeper and
//! both of Janus's personalities (one kill, both probes at once).

use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use clap::Args;
use etcd_client::{Client as Etcd, ConnectOptions};
use zookeeper_client as zk;

use crate::{persistent, zk_connect};

#[derive(Args)]
pub struct FailoverArgs {
    /// The leader's pid: SIGKILLed once the probes are connected.
    #[arg(long)]
    kill_pid: i32,
    /// The survivors' etcd API endpoints, comma-separated.
    #[arg(long)]
    etcd: Option<String>,
    /// The survivors' ZooKeeper connect string.
    #[arg(long)]
    zk: Option<String>,
    /// Give up after this long without an acknowledged write.
    #[arg(long, default_value_t = 30)]
    timeout_secs: u64,
}

#[derive(Args)]
pub struct FailoverTableArgs {
    /// Lines of `system<TAB>api<TAB>ms` written by scripts/bench.sh.
    #[arg(long)]
    tsv: std::path::PathBuf,
}

const KEY: &str = "bench/failover";
const PATH: &str = "/bench-failover";
/// A write is started every `STAGGER` until one is acknowledged, each
/// bounded by `ATTEMPT`: a write that went to the dead leader, or waits
/// for a timeout of its own, does not hold the measurement back.
const STAGGER: Duration = Duration::from_millis(50);
const ATTEMPT: Duration = Duration::from_secs(5);

async fn etcd_probe(eps: &str) -> Result<Etcd> {
    let opts = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(2))
        .with_timeout(ATTEMPT);
    let eps: Vec<&str> = eps.split(',').collect();
    let mut c = Etcd::connect(&eps, Some(opts))
        .await
        .with_context(|| format!("connecting to {}", eps.join(",")))?;
    c.put(KEY, "before", None).await.context("first put")?;
    Ok(c)
}

async fn zk_probe(addr: &str) -> Result<zk::Client> {
    let c = zk_connect(addr).await?;
    match c.create(PATH, b"before", &persistent()).await {
        Ok(_) | Err(zk::Error::NodeExists) => {}
        Err(e) => return Err(anyhow!("create {PATH}: {e}")),
    }
    c.set_data(PATH, b"before", None)
        .await
        .context("first setData")?;
    Ok(c)
}

/// Start `attempt(i)` every `STAGGER` until one succeeds; the time from
/// `t0` to that success.
async fn until_ack<F, Fut>(
    what: &str,
    t0: Instant,
    limit: Duration,
    mut attempt: F,
) -> Result<Duration>
where
    F: FnMut(u64) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    use futures::stream::{FuturesUnordered, StreamExt};
    let mut running = FuturesUnordered::new();
    let mut tick = tokio::time::interval(STAGGER);
    let mut i = 0u64;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if t0.elapsed() > limit {
                    return Err(anyhow!("{what}: no write acknowledged within {limit:?}"));
                }
                i += 1;
                let a = tokio::time::timeout(ATTEMPT, attempt(i));
                running.push(async move { matches!(a.await, Ok(true)) });
            }
            Some(ok) = running.next() => {
                if ok {
                    return Ok(t0.elapsed());
                }
            }
        }
    }
}

async fn etcd_until_ack(c: Etcd, t0: Instant, limit: Duration) -> Result<Duration> {
    until_ack("etcd API", t0, limit, |i| {
        let mut c = c.clone();
        async move { c.put(KEY, format!("after-{i}"), None).await.is_ok() }
    })
    .await
}

async fn zk_until_ack(c: zk::Client, addr: &str, t0: Instant, limit: Duration) -> Result<Duration> {
    // A session the client lost for good is replaced (shared by the
    // attempts that follow).
    let client = std::sync::Arc::new(tokio::sync::Mutex::new(c));
    until_ack("ZooKeeper API", t0, limit, |i| {
        let client = client.clone();
        let addr = addr.to_string();
        async move {
            let c = client.lock().await.clone();
            match c
                .set_data(PATH, format!("after-{i}").as_bytes(), None)
                .await
            {
                Ok(_) => true,
                Err(zk::Error::SessionExpired | zk::Error::ClientClosed) => {
                    if let Ok(n) = zk_connect(&addr).await {
                        *client.lock().await = n;
                    }
                    false
                }
                Err(_) => false,
            }
        }
    })
    .await
}

/// Prints `etcd<TAB>ms` and/or `zookeeper<TAB>ms`.
pub async fn failover(a: FailoverArgs) -> Result<()> {
    let etcd = match &a.etcd {
        Some(eps) => Some(etcd_probe(eps).await?),
        None => None,
    };
    let zk = match &a.zk {
        Some(addr) => Some(zk_probe(addr).await?),
        None => None,
    };
    let limit = Duration::from_secs(a.timeout_secs);
    let t0 = Instant::now();
    // SAFETY: kill(2) with a pid and a signal number; no memory involved.
    if unsafe { libc::kill(a.kill_pid, libc::SIGKILL) } != 0 {
        return Err(anyhow!(
            "kill -9 {}: {}",
            a.kill_pid,
            std::io::Error::last_os_error()
        ));
    }
    let e = async {
        match etcd {
            Some(c) => etcd_until_ack(c, t0, limit).await.map(Some),
            None => Ok(None),
        }
    };
    let zk_addr = a.zk.clone().unwrap_or_default();
    let z = async {
        match zk {
            Some(c) => zk_until_ack(c, &zk_addr, t0, limit).await.map(Some),
            None => Ok(None),
        }
    };
    let (e, z) = tokio::join!(e, z);
    if let Some(d) = e? {
        println!("etcd\t{}", d.as_millis());
    }
    if let Some(d) = z? {
        println!("zookeeper\t{}", d.as_millis());
    }
    Ok(())
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// The failover table: per system and API, kills, median, p90 and worst
/// time from the leader's SIGKILL to the first acknowledged write, and
/// Janus's median over the original's.
pub fn table(a: FailoverTableArgs) -> Result<()> {
    let text =
        std::fs::read_to_string(&a.tsv).with_context(|| format!("reading {}", a.tsv.display()))?;
    let mut runs: std::collections::BTreeMap<(String, String), Vec<u64>> = Default::default();
    for line in text.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        if let [system, api, ms] = f[..] {
            if let Ok(ms) = ms.trim().parse() {
                runs.entry((system.to_string(), api.to_string()))
                    .or_default()
                    .push(ms);
            }
        }
    }
    for v in runs.values_mut() {
        v.sort_unstable();
    }
    println!("### Failover: three members each, kill -9 of the leader");
    println!();
    println!("Time from the leader's SIGKILL to the first write acknowledged through a survivor (etcd put, ZooKeeper setData), clients connected to the survivors before the kill; 100 ms heartbeat and 1 s election timeout for etcd and Janus, ZooKeeper's tickTime 2000.");
    println!();
    println!("| system | API | kills | p50 ms | p90 ms | worst ms | Janus/original p50 | Janus/original worst |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    let original = |api: &str| -> &'static str {
        if api == "etcd" {
            "etcd"
        } else {
            "zookeeper"
        }
    };
    for ((system, api), v) in &runs {
        let (p50, p90, worst) = (percentile(v, 0.5), percentile(v, 0.9), percentile(v, 1.0));
        let mut r50 = String::from("-");
        let mut rworst = String::from("-");
        if system == "janus" {
            if let Some(o) = runs.get(&(original(api).to_string(), api.clone())) {
                let (o50, oworst) = (percentile(o, 0.5), percentile(o, 1.0));
                if o50 > 0 && oworst > 0 {
                    r50 = format!("{:.2}", p50 as f64 / o50 as f64);
                    rworst = format!("{:.2}", worst as f64 / oworst as f64);
                }
            }
        }
        println!(
            "| {system} | {api} | {} | {p50} | {p90} | {worst} | {r50} | {rworst} |",
            v.len()
        );
    }
    println!();
    println!("Lower is better; a ratio <= 1.00 means Janus recovers at least as fast.");
    println!();
    Ok(())
}
