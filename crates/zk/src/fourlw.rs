//! Four-letter words on the client port: a connection whose first four
//! bytes spell a known command gets a text answer and is closed.

use std::fmt::Write;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::{ConnInfo, Latency, Server};

/// The four-letter words and what answers each.
const WORDS: &[(&str, Render)] = &[
    ("ruok", ruok),
    ("srvr", srvr),
    ("stat", stat),
    ("mntr", mntr),
    ("conf", conf),
    ("cons", cons),
    ("envi", envi),
    ("wchs", wchs),
    ("wchc", wchc),
    ("wchp", wchp),
    ("dump", dump),
    ("isro", isro),
    ("crst", crst),
    ("srst", srst),
    ("dirs", dirs),
    ("gtmk", mask),
    ("stmk", mask),
    ("hash", hash),
];

/// Writes one word's answer.
type Render = fn(&Server, &Stats, &mut String);

/// The version string 4lw and `mntr` report (clients parse the first part).
pub const VERSION: &str = concat!(
    "3.8.4-janus-",
    env!("CARGO_PKG_VERSION"),
    ", built on janus"
);

/// The command the first four bytes of a connection spell, if any.
pub(crate) fn command(first: [u8; 4]) -> Option<&'static str> {
    let s = std::str::from_utf8(&first).ok()?;
    WORDS.iter().map(|(c, _)| *c).find(|c| *c == s)
}

fn mode(srv: &Server) -> &'static str {
    let m = srv.node.metrics();
    if m.current_leader.is_none() {
        "read-only"
    } else if m.membership_config.membership().voter_ids().count() <= 1 {
        "standalone"
    } else if m.current_leader == Some(srv.node.id) {
        "leader"
    } else {
        "follower"
    }
}

/// The text answer to `cmd`, subject to the whitelist; `secure` says which
/// port asked (`cons` and `stat` list that port's connections, as each of
/// ZooKeeper's connection factories lists its own).
pub(crate) fn answer(srv: &Server, cmd: &str, secure: bool) -> String {
    if !srv.cfg.allows(cmd) {
        return format!("{cmd} is not executed because it is not in the whitelist.\n");
    }
    render_port(srv, cmd, Some(secure))
}

/// The text answer to `cmd` (also what the AdminServer builds on), with
/// the plain port's connections.
pub(crate) fn render(srv: &Server, cmd: &str) -> String {
    render_port(srv, cmd, Some(false))
}

/// `port`: list only that port's connections in `cons`/`stat` (`None`: all).
pub(crate) fn render_port(srv: &Server, cmd: &str, port: Option<bool>) -> String {
    let stats = Stats::gather(srv, port);
    let mut o = String::new();
    if let Some((_, render)) = WORDS.iter().find(|(c, _)| *c == cmd) {
        render(srv, &stats, &mut o);
    }
    o
}

/// What the answers report, read once per answer.
struct Stats {
    zxid: i64,
    nodes: usize,
    sessions: usize,
    ephemerals: usize,
    /// Both ports' connections.
    conns: Vec<Arc<ConnInfo>>,
    /// The connections `cons` and `stat` list.
    listed: Vec<Arc<ConnInfo>>,
    lat: Latency,
    avg: f64,
    received: u64,
    sent: u64,
    outstanding: i64,
    members: usize,
    voters: usize,
    watches: usize,
}

impl Stats {
    fn gather(srv: &Server, port: Option<bool>) -> Stats {
        let (zxid, nodes, sessions, ephemerals) = {
            let st = srv.node.state();
            let leases = st.leases();
            let sessions = leases.iter().filter(|l| l.session.is_some()).count();
            let eph: usize = leases
                .iter()
                .map(|l| st.zk_ephemerals(l.id, "").len())
                .sum();
            (st.revision(), st.zk_node_count() as usize, sessions, eph)
        };
        let conns: Vec<_> = srv
            .conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        // Counts cover both ports (`getNumAliveConnections`); the lists are per
        // factory.
        let listed: Vec<_> = conns
            .iter()
            .filter(|c| port.is_none_or(|p| c.secure == p))
            .cloned()
            .collect();
        let lat = *srv.latency.lock().unwrap_or_else(|p| p.into_inner());
        let avg = if lat.count == 0 {
            0.0
        } else {
            lat.total as f64 / lat.count as f64
        };
        let (members, voters) = {
            let m = srv.node.metrics();
            let ms = m.membership_config.membership();
            (ms.nodes().count(), ms.voter_ids().count())
        };
        let watches: usize = conns
            .iter()
            .map(|c| c.watches.load(Ordering::Relaxed))
            .sum();
        Stats {
            zxid,
            nodes,
            sessions,
            ephemerals,
            listed,
            lat,
            avg,
            received: srv.packets_received.load(Ordering::Relaxed),
            sent: srv.packets_sent.load(Ordering::Relaxed),
            outstanding: srv.outstanding.load(Ordering::Relaxed).max(0),
            members,
            voters,
            watches,
            conns,
        }
    }
}

/// The lines `srvr` and `stat` share.
fn server_lines(srv: &Server, s: &Stats, o: &mut String) {
    let _ = writeln!(
        o,
        "Latency min/avg/max: {}/{:.4}/{}",
        s.lat.min, s.avg, s.lat.max
    );
    let _ = writeln!(o, "Received: {}", s.received);
    let _ = writeln!(o, "Sent: {}", s.sent);
    let _ = writeln!(o, "Connections: {}", s.conns.len());
    let _ = writeln!(o, "Outstanding: {}", s.outstanding);
    let _ = writeln!(o, "Zxid: 0x{:x}", s.zxid);
    let _ = writeln!(o, "Mode: {}", mode(srv));
    let _ = writeln!(o, "Node count: {}", s.nodes);
}

fn ruok(_: &Server, _: &Stats, o: &mut String) {
    o.push_str("imok");
}

fn isro(srv: &Server, _: &Stats, o: &mut String) {
    o.push_str(if srv.node.leader().is_none() {
        "ro"
    } else {
        "rw"
    });
}

fn srvr(srv: &Server, s: &Stats, o: &mut String) {
    let _ = writeln!(o, "Zookeeper version: {VERSION}");
    server_lines(srv, s, o);
}

fn stat(srv: &Server, s: &Stats, o: &mut String) {
    let _ = writeln!(o, "Zookeeper version: {VERSION}");
    let _ = writeln!(o, "Clients:");
    for c in &s.listed {
        let _ = writeln!(
            o,
            " /{}[1](queued=0,recved={},sent={})",
            c.addr,
            c.received.load(Ordering::Relaxed),
            c.sent.load(Ordering::Relaxed)
        );
    }
    o.push('\n');
    server_lines(srv, s, o);
}

fn cons(_: &Server, s: &Stats, o: &mut String) {
    for c in &s.listed {
        let _ = writeln!(
            o,
            " /{}[1](queued=0,recved={},sent={},sid=0x{:x})",
            c.addr,
            c.received.load(Ordering::Relaxed),
            c.sent.load(Ordering::Relaxed),
            c.session.load(Ordering::Relaxed)
        );
    }
    o.push('\n');
}

fn mntr(srv: &Server, s: &Stats, o: &mut String) {
    let state = mode(srv);
    let mut keys: Vec<&str> = crate::mntr_keys::STANDALONE.to_vec();
    if state == "leader" || state == "follower" {
        keys.extend_from_slice(crate::mntr_keys::QUORUM);
    }
    match state {
        "leader" => keys.extend_from_slice(crate::mntr_keys::LEADER),
        "follower" => keys.extend_from_slice(crate::mntr_keys::FOLLOWER),
        _ => {}
    }
    for k in keys {
        // What Janus has no counterpart for reads as ZooKeeper's
        // idle value: 0, or 0.0 for an average.
        let v = mntr_value(srv, s, state, k)
            .unwrap_or_else(|| if k.starts_with("avg_") { "0.0" } else { "0" }.to_string());
        let _ = writeln!(o, "zk_{k}\t{v}");
    }
}

/// The value of `mntr` key `k` (without its `zk_`), if Janus has one.
fn mntr_value(srv: &Server, s: &Stats, state: &str, k: &str) -> Option<String> {
    Some(match k {
        "version" => VERSION.to_string(),
        "server_state" => state.to_string(),
        "avg_latency" => format!("{:.4}", s.avg),
        "max_latency" => s.lat.max.to_string(),
        "min_latency" => s.lat.min.to_string(),
        "packets_received" => s.received.to_string(),
        "packets_sent" => s.sent.to_string(),
        "num_alive_connections" => s.conns.len().to_string(),
        "outstanding_requests" => s.outstanding.to_string(),
        "uptime" | "leader_uptime" => srv.started.elapsed().as_millis().to_string(),
        "znode_count" => s.nodes.to_string(),
        "watch_count" => s.watches.to_string(),
        "ephemerals_count" => s.ephemerals.to_string(),
        "approximate_data_size" => approximate_data_size(srv).to_string(),
        "global_sessions" => s.sessions.to_string(),
        "open_file_descriptor_count" => open_fds().to_string(),
        "max_file_descriptor_count" => max_fds().to_string(),
        "connection_drop_probability" => "0.0".to_string(),
        "auth_failed_count" => srv.auth_failed.load(Ordering::Relaxed).to_string(),
        "quorum_size" => s.voters.to_string(),
        "learners" => (s.members.saturating_sub(1)).to_string(),
        "synced_followers" => s.voters.saturating_sub(1).to_string(),
        "synced_non_voting_followers" => s.members.saturating_sub(s.voters).to_string(),
        _ => return None,
    })
}

fn conf(srv: &Server, _: &Stats, o: &mut String) {
    // ZooKeeperServer.dumpConf's keys, in its order.
    let port = srv.listen.rsplit_once(':').map_or("-1", |(_, p)| p);
    let _ = writeln!(o, "clientPort={port}");
    let secure = srv
        .cfg
        .secure_listen
        .as_deref()
        .and_then(|a| a.rsplit_once(':'))
        .map_or("-1", |(_, p)| p);
    let _ = writeln!(o, "secureClientPort={secure}");
    let dir = srv
        .cfg
        .data_dir
        .as_ref()
        .map(|d| std::fs::canonicalize(d).unwrap_or_else(|_| d.clone()));
    let dir_text = dir
        .as_ref()
        .map(|d| d.display().to_string())
        .unwrap_or_default();
    let size = dir.as_deref().map_or(0, dir_size);
    // One directory holds Janus's log and state alike.
    let _ = writeln!(o, "dataDir={dir_text}");
    let _ = writeln!(o, "dataDirSize={size}");
    let _ = writeln!(o, "dataLogDir={dir_text}");
    let _ = writeln!(o, "dataLogSize={size}");
    let _ = writeln!(o, "tickTime={}", srv.cfg.tick_ms);
    // Janus does not limit connections per client address.
    let _ = writeln!(o, "maxClientCnxns=0");
    let _ = writeln!(o, "minSessionTimeout={}", srv.cfg.min_timeout_ms());
    let _ = writeln!(o, "maxSessionTimeout={}", srv.cfg.max_timeout_ms());
    let _ = writeln!(o, "clientPortListenBacklog=-1");
    let _ = writeln!(o, "serverId={}", srv.node.id);
}

fn envi(_: &Server, _: &Stats, o: &mut String) {
    // Environment.list's keys; the java.* ones describe a JVM, which
    // Janus has not: they read "<NA>" as java.compiler does there.
    let _ = writeln!(o, "Environment:");
    let _ = writeln!(o, "zookeeper.version={VERSION}");
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into());
    let _ = writeln!(o, "host.name={host}");
    for k in [
        "java.version",
        "java.vendor",
        "java.home",
        "java.class.path",
        "java.library.path",
    ] {
        let _ = writeln!(o, "{k}=<NA>");
    }
    let _ = writeln!(o, "java.io.tmpdir={}", std::env::temp_dir().display());
    let _ = writeln!(o, "java.compiler=<NA>");
    let _ = writeln!(o, "os.name={}", os_name());
    let _ = writeln!(o, "os.arch={}", os_arch());
    let os_version = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|v| v.trim().to_string())
        .unwrap_or_default();
    let _ = writeln!(o, "os.version={os_version}");
    let _ = writeln!(o, "user.name={}", std::env::var("USER").unwrap_or_default());
    let _ = writeln!(o, "user.home={}", std::env::var("HOME").unwrap_or_default());
    let _ = writeln!(
        o,
        "user.dir={}",
        std::env::current_dir()
            .map(|d| d.display().to_string())
            .unwrap_or_default()
    );
    // The JVM's heap figures: here the process's resident memory
    // (total), the machine's memory (max) and what is available.
    let (total, max, free) = memory_mb();
    let _ = writeln!(o, "os.memory.free={free}MB");
    let _ = writeln!(o, "os.memory.max={max}MB");
    let _ = writeln!(o, "os.memory.total={total}MB");
}

fn wchs(_: &Server, s: &Stats, o: &mut String) {
    let watching = s
        .conns
        .iter()
        .filter(|c| c.watches.load(Ordering::Relaxed) > 0)
        .count();
    let mut paths: Vec<String> = s
        .conns
        .iter()
        .flat_map(|c| {
            c.watch_paths
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
        })
        .collect();
    paths.sort();
    paths.dedup();
    let _ = writeln!(o, "{watching} connections watching {} paths", paths.len());
    let _ = writeln!(o, "Total watches:{}", s.watches);
}

fn wchc(_: &Server, s: &Stats, o: &mut String) {
    for c in &s.conns {
        let paths = c
            .watch_paths
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if paths.is_empty() {
            continue;
        }
        let _ = writeln!(o, "0x{:x}", c.session.load(Ordering::Relaxed));
        for p in paths {
            let _ = writeln!(o, "\t{p}");
        }
    }
}

fn wchp(_: &Server, s: &Stats, o: &mut String) {
    let mut by_path: std::collections::BTreeMap<String, Vec<i64>> = Default::default();
    for c in &s.conns {
        for p in c
            .watch_paths
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            by_path
                .entry(p.clone())
                .or_default()
                .push(c.session.load(Ordering::Relaxed));
        }
    }
    for (p, ids) in by_path {
        let _ = writeln!(o, "{p}");
        for id in ids {
            let _ = writeln!(o, "\t0x{id:x}");
        }
    }
}

fn dump(srv: &Server, s: &Stats, o: &mut String) {
    let st = srv.node.state();
    let _ = writeln!(o, "SessionTracker dump:");
    let _ = writeln!(o, "Global Sessions({}):", s.sessions);
    let leases = st.leases();
    for l in leases.iter().filter(|l| l.session.is_some()) {
        let _ = writeln!(o, "0x{:x}\t{}ms", l.id, l.ttl_ms);
    }
    let with_ephemerals: Vec<(i64, Vec<String>)> = leases
        .iter()
        .map(|l| (l.id, st.zk_ephemerals(l.id, "")))
        .filter(|(_, e)| !e.is_empty())
        .collect();
    let _ = writeln!(o, "ephemeral nodes dump:");
    let _ = writeln!(o, "Sessions with Ephemerals ({}):", with_ephemerals.len());
    for (id, paths) in &with_ephemerals {
        let _ = writeln!(o, "0x{id:x}:");
        for p in paths {
            let _ = writeln!(o, "\t{p}");
        }
    }
}

fn crst(srv: &Server, _: &Stats, o: &mut String) {
    *srv.latency.lock().unwrap_or_else(|p| p.into_inner()) = Default::default();
    o.push_str("Connection stats reset.\n");
}

fn srst(srv: &Server, _: &Stats, o: &mut String) {
    *srv.latency.lock().unwrap_or_else(|p| p.into_inner()) = Default::default();
    srv.packets_received.store(0, Ordering::Relaxed);
    srv.packets_sent.store(0, Ordering::Relaxed);
    o.push_str("Server stats reset.\n");
}

fn dirs(srv: &Server, _: &Stats, o: &mut String) {
    let size = srv.cfg.data_dir.as_deref().map_or(0, dir_size);
    let _ = writeln!(o, "datadir_size: {size}\nlogdir_size: {size}");
}

/// gtmk and stmk: the trace mask, always 0.
fn mask(_: &Server, _: &Stats, o: &mut String) {
    o.push_str("0\n");
}

fn hash(_: &Server, s: &Stats, o: &mut String) {
    let _ = writeln!(o, "Digest in Janus is not supported: zxid {}", s.zxid);
}

/// `approximate_data_size`, recomputed at most every 5 s.
fn approximate_data_size(srv: &Server) -> u64 {
    let mut cached = srv.data_size.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((at, v)) = *cached {
        if at.elapsed() < std::time::Duration::from_secs(5) {
            return v;
        }
    }
    let v = srv.node.state().zk_approximate_data_size();
    *cached = Some((std::time::Instant::now(), v));
    v
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

/// The soft limit on open files, as the JVM's OS bean reports it.
fn max_fds() -> u64 {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Java's `os.name` spelling.
fn os_name() -> &'static str {
    match std::env::consts::OS {
        "linux" => "Linux",
        "macos" => "Mac OS X",
        "windows" => "Windows",
        "freebsd" => "FreeBSD",
        other => other,
    }
}

/// Java's `os.arch` spelling.
fn os_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "aarch64",
        other => other,
    }
}

/// (resident, machine total, machine available) in MB.
fn memory_mb() -> (u64, u64, u64) {
    let kb = |text: &str, key: &str| -> u64 {
        text.lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0)
    };
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    (
        kb(&status, "VmRSS:") / 1024,
        kb(&meminfo, "MemTotal:") / 1024,
        kb(&meminfo, "MemAvailable:") / 1024,
    )
}

/// Bytes in the files under `dir` (ZooKeeper's dataDirSize).
fn dir_size(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_commands_only() {
        assert_eq!(command(*b"ruok"), Some("ruok"));
        assert_eq!(command(*b"mntr"), Some("mntr"));
        assert_eq!(command([0, 0, 0, 44]), None);
        assert_eq!(command(*b"abcd"), None);
    }
}
