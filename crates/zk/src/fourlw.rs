//! Four-letter words on the client port: a connection whose first four
//! bytes spell a known command gets a text answer and is closed.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use crate::Server;

const COMMANDS: &[&str] = &[
    "ruok", "srvr", "stat", "mntr", "conf", "cons", "envi", "wchs", "wchc", "wchp", "dump", "isro",
    "crst", "srst", "dirs", "gtmk", "stmk", "hash",
];

/// The version string 4lw and `mntr` report (clients parse the first part).
pub const VERSION: &str = concat!(
    "3.8.4-janus-",
    env!("CARGO_PKG_VERSION"),
    ", built on janus"
);

/// The command the first four bytes of a connection spell, if any.
pub(crate) fn command(first: [u8; 4]) -> Option<&'static str> {
    let s = std::str::from_utf8(&first).ok()?;
    COMMANDS.iter().copied().find(|c| *c == s)
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
    let (zxid, nodes, sessions, ephemerals) = {
        let st = srv.node.sm.state();
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
    let received = srv.packets_received.load(Ordering::Relaxed);
    let sent = srv.packets_sent.load(Ordering::Relaxed);
    let outstanding = srv.outstanding.load(Ordering::Relaxed).max(0);
    let watches: usize = conns
        .iter()
        .map(|c| c.watches.load(Ordering::Relaxed))
        .sum();
    let mut o = String::new();
    let srvr = |o: &mut String| {
        let _ = writeln!(o, "Latency min/avg/max: {}/{avg:.4}/{}", lat.min, lat.max);
        let _ = writeln!(o, "Received: {received}");
        let _ = writeln!(o, "Sent: {sent}");
        let _ = writeln!(o, "Connections: {}", conns.len());
        let _ = writeln!(o, "Outstanding: {outstanding}");
        let _ = writeln!(o, "Zxid: 0x{zxid:x}");
        let _ = writeln!(o, "Mode: {}", mode(srv));
        let _ = writeln!(o, "Node count: {nodes}");
    };
    match cmd {
        "ruok" => o.push_str("imok"),
        "isro" => o.push_str(if srv.node.leader().is_none() {
            "ro"
        } else {
            "rw"
        }),
        "srvr" => {
            let _ = writeln!(o, "Zookeeper version: {VERSION}");
            srvr(&mut o);
        }
        "stat" => {
            let _ = writeln!(o, "Zookeeper version: {VERSION}");
            let _ = writeln!(o, "Clients:");
            for c in &listed {
                let _ = writeln!(
                    o,
                    " /{}[1](queued=0,recved={},sent={})",
                    c.addr,
                    c.received.load(Ordering::Relaxed),
                    c.sent.load(Ordering::Relaxed)
                );
            }
            o.push('\n');
            srvr(&mut o);
        }
        "cons" => {
            for c in &listed {
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
        "mntr" => {
            let kv: Vec<(&str, String)> = vec![
                ("zk_version", VERSION.to_string()),
                ("zk_server_state", mode(srv).to_string()),
                ("zk_avg_latency", format!("{avg:.4}")),
                ("zk_max_latency", lat.max.to_string()),
                ("zk_min_latency", lat.min.to_string()),
                ("zk_packets_received", received.to_string()),
                ("zk_packets_sent", sent.to_string()),
                ("zk_num_alive_connections", conns.len().to_string()),
                ("zk_outstanding_requests", outstanding.to_string()),
                ("zk_uptime", srv.started.elapsed().as_millis().to_string()),
                ("zk_znode_count", nodes.to_string()),
                ("zk_watch_count", watches.to_string()),
                ("zk_ephemerals_count", ephemerals.to_string()),
                ("zk_global_sessions", sessions.to_string()),
                ("zk_local_sessions", "0".to_string()),
                (
                    "zk_auth_failed_count",
                    srv.auth_failed.load(Ordering::Relaxed).to_string(),
                ),
            ];
            for (k, v) in kv {
                let _ = writeln!(o, "{k}\t{v}");
            }
        }
        "conf" => {
            let _ = writeln!(o, "tickTime={}", srv.cfg.tick_ms);
            let _ = writeln!(o, "minSessionTimeout={}", srv.cfg.min_timeout_ms());
            let _ = writeln!(o, "maxSessionTimeout={}", srv.cfg.max_timeout_ms());
            let _ = writeln!(o, "jute.maxbuffer={}", srv.cfg.max_buffer);
            let _ = writeln!(o, "extendedTypesEnabled={}", srv.cfg.extended_types);
            if let Some(addr) = &srv.cfg.secure_listen {
                if let Some((host, port)) = addr.rsplit_once(':') {
                    let _ = writeln!(o, "secureClientPort={port}");
                    let _ = writeln!(o, "secureClientPortAddress={host}");
                }
            }
            let _ = writeln!(o, "serverId={}", srv.node.id);
        }
        "envi" => {
            let _ = writeln!(o, "Environment:");
            let _ = writeln!(o, "zookeeper.version={VERSION}");
            let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into());
            let _ = writeln!(o, "host.name={host}");
            let _ = writeln!(o, "os.name={}", std::env::consts::OS);
            let _ = writeln!(o, "os.arch={}", std::env::consts::ARCH);
            let _ = writeln!(
                o,
                "user.dir={}",
                std::env::current_dir()
                    .map(|d| d.display().to_string())
                    .unwrap_or_default()
            );
        }
        "wchs" => {
            let watching = conns
                .iter()
                .filter(|c| c.watches.load(Ordering::Relaxed) > 0)
                .count();
            let mut paths: Vec<String> = conns
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
            let _ = writeln!(o, "Total watches:{watches}");
        }
        "wchc" => {
            for c in &conns {
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
        "wchp" => {
            let mut by_path: std::collections::BTreeMap<String, Vec<i64>> = Default::default();
            for c in &conns {
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
        "dump" => {
            let st = srv.node.sm.state();
            let _ = writeln!(o, "SessionTracker dump:");
            let _ = writeln!(o, "Global Sessions({sessions}):");
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
        "crst" | "srst" => {
            *srv.latency.lock().unwrap_or_else(|p| p.into_inner()) = Default::default();
            if cmd == "srst" {
                srv.packets_received.store(0, Ordering::Relaxed);
                srv.packets_sent.store(0, Ordering::Relaxed);
            }
            o.push_str(if cmd == "crst" {
                "Connection stats reset.\n"
            } else {
                "Server stats reset.\n"
            });
        }
        "dirs" => {
            o.push_str("datadir_size: 0\nlogdir_size: 0\n");
        }
        "gtmk" | "stmk" => o.push_str("0\n"),
        "hash" => {
            let _ = writeln!(o, "Digest in Janus is not supported: zxid {zxid}");
        }
        _ => {}
    }
    o
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
