//! Helpers for tests that run the real `janus` binary.

pub mod linearizability;
pub mod proxy;
pub mod slowdisk;
pub mod tls;
pub mod tools;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use janus_core::{Applied, Command as Cmd};
use janus_raft::proto::peer_client::PeerClient;
use janus_raft::proto::ForwardRequest;
use janus_raft::{Query, QueryResult, RaftNode};

/// The `janus` binary next to this test's target directory (or `$JANUS_BIN`).
pub fn janus_bin() -> PathBuf {
    if let Ok(p) = std::env::var("JANUS_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/<test> → target/<profile>/janus
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = dir.join("janus");
    assert!(
        bin.exists(),
        "{} not built: run `cargo build --release -p janus-server` first",
        bin.display()
    );
    bin
}

/// A free loopback port for a test server to listen on.
///
/// Ports come from below the kernel's ephemeral range (32768 and up on
/// Linux), so an outgoing connection made between picking a port and the
/// server binding it can never take it. Each process starts at its own
/// offset, and a port is handed out only if it can be bound right now.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 12_000;
    const SPAN: u32 = 20_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let seed = (std::process::id().wrapping_mul(7_919)) % SPAN;
    let _ = NEXT.compare_exchange(u32::MAX, seed, Ordering::SeqCst, Ordering::SeqCst);
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::SeqCst) % SPAN;
        let port = (LOW + n) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {LOW}..{}", LOW + SPAN)
}

/// One `janus` process with its own ports and data directory.
pub struct Janus {
    pub child: Option<Child>,
    pub data_dir: PathBuf,
    pub zk: String,
    pub etcd: String,
    pub peer: String,
    pub extra_args: Vec<String>,
    pub log: PathBuf,
    /// Extra environment variables for the process.
    pub env: Vec<(String, String)>,
}

impl Janus {
    /// Start a one-member cluster in `data_dir` with fresh ports.
    pub fn start(data_dir: &Path, extra_args: &[&str]) -> Janus {
        Janus::start_with_peer(data_dir, &format!("127.0.0.1:{}", free_port()), extra_args)
    }

    /// Start a member whose peer address is fixed (for `--initial-cluster`).
    pub fn start_with_peer(data_dir: &Path, peer: &str, extra_args: &[&str]) -> Janus {
        Janus::start_with_peer_env(data_dir, peer, extra_args, &[])
    }

    /// Like `start_with_peer`, with extra environment variables.
    pub fn start_with_peer_env(
        data_dir: &Path,
        peer: &str,
        extra_args: &[&str],
        env: &[(String, String)],
    ) -> Janus {
        let mut j = Janus {
            child: None,
            data_dir: data_dir.to_path_buf(),
            zk: format!("127.0.0.1:{}", free_port()),
            etcd: format!("127.0.0.1:{}", free_port()),
            peer: peer.to_string(),
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            log: data_dir.with_extension("log"),
            env: env.to_vec(),
        };
        j.spawn();
        j
    }

    /// The last `n` lines of this member's log (for failure messages).
    pub fn log_tail(&self, n: usize) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// A handle with the same addresses and no process (for other tasks).
    pub fn clone_addrs(&self) -> Janus {
        Janus {
            child: None,
            data_dir: self.data_dir.clone(),
            zk: self.zk.clone(),
            etcd: self.etcd.clone(),
            peer: self.peer.clone(),
            extra_args: self.extra_args.clone(),
            log: self.log.clone(),
            env: self.env.clone(),
        }
    }

    /// (Re)start the process with the same ports and data.
    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let child = Command::new(janus_bin())
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args([
                "--zk-listen",
                &self.zk,
                "--etcd-listen",
                &self.etcd,
                "--peer-listen",
                &self.peer,
            ])
            .args(&self.extra_args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn janus");
        self.child = Some(child);
    }

    /// SIGKILL and reap.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM; returns the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running");
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe {
            libc::kill(c.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(st) = c.try_wait().expect("wait") {
                return st;
            }
            assert!(Instant::now() < deadline, "janus did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// GET `path` on the HTTP port: (status, body).
    pub fn http_get(&self, path: &str) -> std::io::Result<(u16, String)> {
        http_get(&self.etcd, path)
    }

    /// Wait until `/health` says healthy.
    pub fn wait_healthy(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok((200, body)) = self.http_get("/health") {
                if body.contains("\"health\":\"true\"") {
                    return;
                }
            }
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                panic!("janus not healthy after {timeout:?}; log:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Commit a command through the peer port's write-forwarding RPC.
    pub async fn propose(&self, cmd: &Cmd) -> Result<Applied, tonic::Status> {
        let mut client = PeerClient::connect(format!("http://{}", self.peer))
            .await
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        let command =
            postcard::to_stdvec(cmd).map_err(|e| tonic::Status::internal(e.to_string()))?;
        let resp = client
            .forward(ForwardRequest {
                command,
                from_member: false,
            })
            .await?;
        postcard::from_bytes(&resp.into_inner().applied)
            .map_err(|e| tonic::Status::internal(e.to_string()))
    }

    /// Renew (or, with `renew` false, read) leases through the peer port:
    /// remaining ms per id, -1 for unknown ones.
    pub async fn keepalive(&self, ids: &[i64], renew: bool) -> Result<Vec<i64>, tonic::Status> {
        let mut client = PeerClient::connect(format!("http://{}", self.peer))
            .await
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        let resp = client
            .keep_alive(janus_raft::proto::KeepAliveRequest {
                ids: ids.to_vec(),
                renew,
            })
            .await?;
        Ok(resp.into_inner().remaining_ms)
    }

    /// Query the member's applied state.
    pub async fn query(&self, q: &Query, linearizable: bool) -> Result<QueryResult, tonic::Status> {
        RaftNode::query_remote(&self.peer, q, linearizable).await
    }
}

impl Drop for Janus {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A minimal HTTP/1.0 GET (no client crate needed for three endpoints).
pub fn http_get(addr: &str, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut buf = String::new();
    s.read_to_string(&mut buf)?;
    let status = buf
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// Start one member per entry of `listen` (its peer listen address), in
/// `dir/m<id>`, with `toml` as the config file, `env` in the environment and
/// `--initial-cluster` naming the members by `advertise` (the address the
/// others reach each one at).
fn spawn_members(
    dir: &Path,
    toml: &str,
    listen: &[String],
    advertise: &[String],
    env: &[(String, String)],
) -> Vec<Janus> {
    let initial = advertise
        .iter()
        .enumerate()
        .map(|(i, p)| format!("{}={p}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    let cfg = dir.join("janus.toml");
    std::fs::write(&cfg, toml).expect("config");
    (0..listen.len())
        .map(|i| {
            let id = (i + 1).to_string();
            let args = [
                "--config",
                cfg.to_str().expect("utf-8 path"),
                "--node-id",
                &id,
                "--initial-cluster",
                &initial,
            ];
            Janus::start_with_peer_env(&dir.join(format!("m{id}")), &listen[i], &args, env)
        })
        .collect()
}

fn fresh_peers(n: usize) -> Vec<String> {
    (0..n)
        .map(|_| format!("127.0.0.1:{}", free_port()))
        .collect()
}

/// `n` members on loopback with fresh ports, each started with `toml` as
/// its config file and `--initial-cluster` naming all of them; returns once
/// every member answers `/health`.
pub fn start_cluster(dir: &Path, n: usize, toml: &str) -> Vec<Janus> {
    let peers = fresh_peers(n);
    let members = spawn_members(dir, toml, &peers, &peers, &[]);
    for m in &members {
        m.wait_healthy(Duration::from_secs(30));
    }
    members
}

/// `n` members whose peer links all pass through a fault-injecting proxy
/// ([`proxy::Proxies`]): the membership names the proxy ports. Each member
/// gets `toml` as its config file and `env` in its environment; returns
/// without waiting for health (callers wait as long as they need).
pub fn start_proxied_cluster(
    dir: &Path,
    n: usize,
    toml: &str,
    env: &[(String, String)],
) -> (Vec<Janus>, proxy::Proxies) {
    let real = fresh_peers(n);
    let proxies = proxy::Proxies::start(&real).expect("proxies");
    let members = spawn_members(dir, toml, &real, &proxies.addrs, env);
    for (i, m) in members.iter().enumerate() {
        proxies
            .links
            .set_pid(i, m.child.as_ref().map_or(0, |c| c.id()));
    }
    (members, proxies)
}

/// Wait up to 20 s for the running members to name one leader; its index.
pub fn wait_leader(members: &[Janus]) -> usize {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(l) = leader_index(members) {
            return l;
        }
        assert!(Instant::now() < deadline, "no leader elected");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The index of the member that running members' `/metrics` name as
/// leader (`janus_raft_leader_id`), if any.
pub fn leader_index(members: &[Janus]) -> Option<usize> {
    for m in members.iter().filter(|m| m.child.is_some()) {
        if let Ok((200, body)) = m.http_get("/metrics") {
            let id: Option<usize> = body
                .lines()
                .find_map(|l| l.strip_prefix("janus_raft_leader_id "))
                .and_then(|v| v.trim().parse().ok());
            if let Some(id) = id.filter(|id| (1..=members.len()).contains(id)) {
                return Some(id - 1);
            }
        }
    }
    None
}
