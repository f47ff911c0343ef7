//! A fault-injecting TCP proxy for the peer links of a local cluster.
//!
//! Each member's peer port sits behind one proxy port, and the cluster's
//! membership names the proxy ports, so every Raft message and forwarded
//! write between members passes through a proxy. All members connect from
//! 127.0.0.1, so a proxy tells them apart by the connecting socket's owner:
//! it finds the socket's inode in /proc/net/tcp and the member process
//! holding it under /proc/<pid>/fd. That gives every directed link
//! (from member, to member) its own fault, which is what cutting one member
//! off from the others needs. Connections from anything else (the test's
//! own queries) always pass.
//!
//! Faults, per directed link: pass, delay every chunk, blackhole (bytes are
//! held, nothing flows, connections hang; when the link heals those
//! connections are closed, as a long partition breaks them in reality) and
//! drop (connections are closed at once and new ones refused).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Pass,
    Delay(Duration),
    Blackhole,
    Drop,
}

/// The faults of every directed link between `n` members.
#[derive(Clone)]
pub struct Links {
    n: usize,
    /// `faults[from * n + to]`, published so open connections see changes.
    tx: Arc<watch::Sender<Vec<Fault>>>,
    /// Member pids (0: not running), to name a connection's source.
    pids: Arc<Mutex<Vec<u32>>>,
    /// Connections accepted, and those whose source is a member.
    pub accepted: Arc<AtomicU64>,
    pub from_members: Arc<AtomicU64>,
}

impl Links {
    pub fn set(&self, from: usize, to: usize, f: Fault) {
        let n = self.n;
        self.tx.send_modify(|v| v[from * n + to] = f);
    }

    /// Cut member `m` off from every other member (both directions).
    pub fn isolate(&self, m: usize, f: Fault) {
        for o in (0..self.n).filter(|o| *o != m) {
            self.set(m, o, f);
            self.set(o, m, f);
        }
    }

    /// Cut only the connections member `m` opens to the others: what it
    /// sends as a client (Raft requests as leader, forwarded writes) is
    /// lost, while the others' connections to it still work.
    pub fn cut_outbound(&self, m: usize, f: Fault) {
        for o in (0..self.n).filter(|o| *o != m) {
            self.set(m, o, f);
        }
    }

    pub fn heal(&self) {
        let n = self.n;
        self.tx.send_modify(|v| *v = vec![Fault::Pass; n * n]);
    }

    pub fn set_pid(&self, member: usize, pid: u32) {
        let mut p = self.pids.lock().unwrap_or_else(|e| e.into_inner());
        p[member] = pid;
    }

    fn fault(faults: &[Fault], n: usize, from: Option<usize>, to: usize) -> Fault {
        match from {
            Some(f) => faults[f * n + to],
            None => Fault::Pass,
        }
    }
}

/// The proxies of a cluster, running on their own runtime thread so a busy
/// test runtime cannot starve the cluster's peer traffic.
pub struct Proxies {
    pub links: Links,
    /// The address each member's proxy listens on (the membership's peer
    /// addresses).
    pub addrs: Vec<String>,
    _rt: tokio::runtime::Runtime,
}

impl Proxies {
    /// One proxy per member, forwarding to `targets[i]`.
    pub fn start(targets: &[String]) -> std::io::Result<Proxies> {
        let n = targets.len();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .thread_name("proxy")
            .build()?;
        let (tx, _) = watch::channel(vec![Fault::Pass; n * n]);
        let links = Links {
            n,
            tx: Arc::new(tx),
            pids: Arc::new(Mutex::new(vec![0; n])),
            accepted: Arc::default(),
            from_members: Arc::default(),
        };
        let mut addrs = Vec::new();
        for (to, target) in targets.iter().enumerate() {
            let listener = rt.block_on(TcpListener::bind("127.0.0.1:0"))?;
            let local = listener.local_addr()?;
            addrs.push(local.to_string());
            let links = links.clone();
            let target = target.clone();
            rt.spawn(async move {
                loop {
                    let Ok((sock, peer)) = listener.accept().await else {
                        continue;
                    };
                    let links = links.clone();
                    let target = target.clone();
                    tokio::spawn(async move {
                        let pids = links.pids.lock().map(|p| p.clone()).unwrap_or_default();
                        let from = source_member(peer, local, &pids);
                        links.accepted.fetch_add(1, Ordering::Relaxed);
                        if from.is_some() {
                            links.from_members.fetch_add(1, Ordering::Relaxed);
                        }
                        serve(sock, from, to, target, links).await;
                    });
                }
            });
        }
        Ok(Proxies {
            links,
            addrs,
            _rt: rt,
        })
    }
}

/// One proxied connection: refuse it under `Drop`, otherwise copy both ways
/// under the link's current fault.
async fn serve(client: TcpStream, from: Option<usize>, to: usize, target: String, links: Links) {
    let n = links.n;
    let faults = links.tx.subscribe();
    if Links::fault(&faults.borrow(), n, from, to) == Fault::Drop {
        return;
    }
    let Ok(server) = TcpStream::connect(&target).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    // The fault on this connection: requests travel from -> to, answers
    // back; a cut in either direction cuts the connection.
    let mut a = tokio::spawn(pump(cr, sw, from, to, links.tx.subscribe(), n));
    let mut b = tokio::spawn(pump(sr, cw, from, to, links.tx.subscribe(), n));
    // When one direction ends, end the other (closing both sockets).
    tokio::select! {
        _ = &mut a => {}
        _ = &mut b => {}
    }
    a.abort();
    b.abort();
}

async fn pump(
    mut r: tokio::net::tcp::OwnedReadHalf,
    mut w: tokio::net::tcp::OwnedWriteHalf,
    from: Option<usize>,
    to: usize,
    mut faults: watch::Receiver<Vec<Fault>>,
    n: usize,
) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut held = false;
    loop {
        let f = Links::fault(&faults.borrow_and_update(), n, from, to);
        match f {
            Fault::Drop => return,
            Fault::Blackhole => {
                held = true;
                // Nothing flows until the fault changes.
                if faults.changed().await.is_err() {
                    return;
                }
                continue;
            }
            Fault::Pass | Fault::Delay(_) if held => return,
            _ => {}
        }
        let got = tokio::select! {
            r = r.read(&mut buf) => r,
            c = faults.changed() => {
                if c.is_err() {
                    return;
                }
                continue;
            }
        };
        let k = match got {
            Ok(0) | Err(_) => return,
            Ok(k) => k,
        };
        // The fault may have changed while reading: apply the current one.
        let now = Links::fault(&faults.borrow(), n, from, to);
        match now {
            Fault::Drop => return,
            Fault::Blackhole => {
                held = true;
                if faults.changed().await.is_err() {
                    return;
                }
                // These bytes are lost with the connection on heal.
                continue;
            }
            Fault::Delay(d) => tokio::time::sleep(d).await,
            Fault::Pass => {}
        }
        if w.write_all(&buf[..k]).await.is_err() {
            return;
        }
    }
}

/// Which member (by pid) owns the socket connected from `peer` to `local`.
fn source_member(peer: SocketAddr, local: SocketAddr, pids: &[u32]) -> Option<usize> {
    let inode = socket_inode(peer, local)?;
    let want = format!("socket:[{inode}]");
    for (i, pid) in pids.iter().enumerate().filter(|(_, p)| **p != 0) {
        let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for e in dir.flatten() {
            if std::fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy() == want) {
                return Some(i);
            }
        }
    }
    None
}

/// The inode of the IPv4 socket whose local end is `peer` and remote end
/// `local` (the client's side of a connection this proxy accepted).
fn socket_inode(peer: SocketAddr, local: SocketAddr) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let enc = |a: SocketAddr| -> Option<String> {
        match a {
            SocketAddr::V4(v4) => Some(format!(
                "{:08X}:{:04X}",
                u32::from_ne_bytes(v4.ip().octets()),
                v4.port()
            )),
            SocketAddr::V6(_) => None,
        }
    };
    let (want_l, want_r) = (enc(peer)?, enc(local)?);
    let mut by_pair: HashMap<(String, String), u64> = HashMap::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() > 9 {
            if let Ok(inode) = f[9].parse() {
                by_pair.insert((f[1].to_string(), f[2].to_string()), inode);
            }
        }
    }
    by_pair.get(&(want_l, want_r)).copied().filter(|i| *i != 0)
}
