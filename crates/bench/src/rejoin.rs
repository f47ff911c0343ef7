//! A wiped member rejoining a loaded cluster, as the leader's clients see
//! it: puts at a fixed number in flight on the leader, first for a steady
//! window, then from the moment a follower is SIGKILLed, its data
//! directory removed and the member started again, until that member has
//! applied everything the leader had committed when it started (it
//! catches up by a state transfer: its log is gone). The put latency of
//! the two windows side by side, and how long the catch-up took.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::report::{fmt_us, new_histogram, record};
use crate::{etcd_connect, load_value};

#[derive(Args)]
pub struct RejoinArgs {
    /// The leader's etcd API endpoint (the puts go there).
    #[arg(long)]
    leader: String,
    /// The rejoining member's pid: SIGKILLed after the steady window.
    #[arg(long)]
    kill_pid: i32,
    /// Its data directory, removed once it is dead.
    #[arg(long)]
    wipe: PathBuf,
    /// The shell command that starts it again (its pid is printed as
    /// `started PID` so the caller can stop it later).
    #[arg(long)]
    start: String,
    /// `host:port` serving the leader's and the member's `/metrics`.
    #[arg(long)]
    leader_metrics: String,
    #[arg(long)]
    member_metrics: String,
    /// Puts in flight, one sequential worker each.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    #[arg(long, default_value_t = 1024)]
    value_size: usize,
    /// The steady window before the kill.
    #[arg(long, default_value_t = 15)]
    steady_secs: u64,
    /// Give up waiting for the catch-up after this long.
    #[arg(long, default_value_t = 600)]
    timeout_secs: u64,
    /// Printed in the table's data column.
    #[arg(long, default_value = "")]
    label: String,
}

/// One metric's value from a Prometheus text page (HTTP/1.0, no client
/// crate needed for one GET).
async fn metric(addr: &str, name: &str) -> Result<u64> {
    let mut s = tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| anyhow!("connecting to {addr}: timed out"))??;
    s.write_all(format!("GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await?;
    let mut body = String::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut body))
        .await
        .map_err(|_| anyhow!("reading {addr}/metrics: timed out"))??;
    body.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(' ')?;
            (k == name).then(|| v.trim().parse::<f64>().ok().map(|v| v as u64))?
        })
        .ok_or_else(|| anyhow!("{name} not in {addr}/metrics"))
}

/// Put workers recording into whichever histogram `phase` selects (0:
/// steady, 1: catch-up, 2: done), until `stop`.
struct Load {
    hists: [Mutex<Histogram<u64>>; 2],
    phase: std::sync::atomic::AtomicUsize,
    stop: AtomicBool,
    errors: std::sync::atomic::AtomicU64,
}

async fn worker(mut c: etcd_client::Client, w: usize, value: Vec<u8>, load: Arc<Load>) {
    let mut i = 0u64;
    while !load.stop.load(Ordering::Relaxed) {
        let key = format!("bench/rejoin/{w:03}/{}", i % 16);
        i += 1;
        let t = Instant::now();
        let r = c.put(key, value.clone(), None).await;
        let phase = load.phase.load(Ordering::Relaxed);
        if r.is_err() {
            load.errors.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        if let Some(h) = load.hists.get(phase) {
            if let Ok(mut h) = h.lock() {
                record(&mut h, t.elapsed());
            }
        }
    }
}

pub async fn rejoin(a: RejoinArgs) -> Result<()> {
    let load = Arc::new(Load {
        hists: [Mutex::new(new_histogram()), Mutex::new(new_histogram())],
        phase: Default::default(),
        stop: AtomicBool::new(false),
        errors: Default::default(),
    });
    let mut tasks = Vec::new();
    for w in 0..a.concurrency {
        let c = etcd_connect(&a.leader).await?;
        let v = load_value(w as u64, a.value_size, true);
        tasks.push(tokio::spawn(worker(c, w, v, load.clone())));
    }
    tokio::time::sleep(Duration::from_secs(a.steady_secs)).await;
    let steady = a.steady_secs as f64;

    // SAFETY: kill(2) with a pid and a signal number has no memory effects.
    if unsafe { libc::kill(a.kill_pid, libc::SIGKILL) } != 0 {
        bail!(
            "kill -9 {}: {}",
            a.kill_pid,
            std::io::Error::last_os_error()
        );
    }
    // Gone once its metrics port refuses connections.
    let t_kill = Instant::now();
    while metric(&a.member_metrics, "janus_raft_applied_index")
        .await
        .is_ok()
    {
        if t_kill.elapsed() > Duration::from_secs(10) {
            bail!("member {} still answers after SIGKILL", a.kill_pid);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    std::fs::remove_dir_all(&a.wipe).with_context(|| format!("removing {}", a.wipe.display()))?;
    load.phase.store(1, Ordering::Relaxed);
    let t0 = Instant::now();
    let target = metric(&a.leader_metrics, "janus_raft_commit_index").await?;
    let child = std::process::Command::new("sh")
        .arg("-c")
        .arg(&a.start)
        .stdin(Stdio::null())
        .spawn()
        .context("starting the member")?;
    println!("started {}", child.id());
    let deadline = t0 + Duration::from_secs(a.timeout_secs);
    loop {
        if let Ok(applied) = metric(&a.member_metrics, "janus_raft_applied_index").await {
            if applied >= target {
                break;
            }
        }
        if Instant::now() > deadline {
            load.stop.store(true, Ordering::Relaxed);
            bail!("the member did not catch up in {} s", a.timeout_secs);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let catch_up = t0.elapsed();
    load.phase.store(2, Ordering::Relaxed);
    load.stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let get = |i: usize| {
        load.hists[i]
            .lock()
            .map(|h| h.clone())
            .map_err(|_| anyhow!("histogram lock poisoned"))
    };
    let (s, d) = (get(0)?, get(1)?);
    let p99 = |h: &Histogram<u64>| h.value_at_quantile(0.99);
    let ratio = if p99(&s) > 0 {
        format!("{:.2}", p99(&d) as f64 / p99(&s) as f64)
    } else {
        "-".into()
    };
    println!();
    println!("| data | in flight | steady: puts/s | steady p99 | catch-up | during: puts/s | during p99 | during max | p99 ratio | errors |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {} | {} | {:.0} | {} | {:.1} s | {:.0} | {} | {} | {ratio} | {} |",
        a.label,
        a.concurrency,
        s.len() as f64 / steady,
        fmt_us(p99(&s)),
        catch_up.as_secs_f64(),
        d.len() as f64 / catch_up.as_secs_f64().max(0.001),
        fmt_us(p99(&d)),
        fmt_us(d.max()),
        load.errors.load(Ordering::Relaxed),
    );
    Ok(())
}
