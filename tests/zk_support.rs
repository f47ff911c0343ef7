//! Shared by the ZooKeeper tests (included with `#[path]`): real ZooKeeper
//! from Debian's package on a free port, the kazoo venv, a raw client.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use janus_tests::{free_port, Janus};

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// The venv's python with kazoo (made by scripts/deps/zk.sh).
pub fn venv_python() -> PathBuf {
    let p = root().join("target/zk-venv/bin/python");
    assert!(
        p.exists(),
        "{} missing: run `sudo bash -c '. scripts/deps/zk.sh'` (scripts/test.sh does)",
        p.display()
    );
    p
}

/// A four-letter word's answer (the server closes after it).
pub fn four_letter(addr: &str, cmd: &str) -> String {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = s.write_all(cmd.as_bytes());
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// Real ZooKeeper (Debian's `zookeeper` package), standalone, on a free
/// loopback port with its own data directory; killed on drop.
pub struct RealZk {
    pub child: Child,
    pub addr: String,
    _dir: tempfile::TempDir,
}

impl RealZk {
    pub fn start() -> RealZk {
        Self::start_with(&[])
    }

    /// With extra JVM system properties (`-Dname=value`).
    pub fn start_with(props: &[&str]) -> RealZk {
        let jar = Path::new("/usr/share/java/zookeeper.jar");
        assert!(
            jar.exists(),
            "Debian's zookeeper package is missing: scripts/deps/zk.sh installs it"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let cfg = dir.path().join("zoo.cfg");
        std::fs::write(
            &cfg,
            format!(
                "tickTime=2000\ndataDir={}\nclientPort={port}\nclientPortAddress=127.0.0.1\nadmin.enableServer=false\n",
                dir.path().join("data").display()
            ),
        )
        .expect("zoo.cfg");
        let log = std::fs::File::create(dir.path().join("zk.log")).expect("log");
        let child = Command::new("java")
            .args([
                "-Xmx256m",
                "-Dzookeeper.extendedTypesEnabled=true",
                "-Dzookeeper.4lw.commands.whitelist=*",
            ])
            .args(props)
            .args([
                "-cp",
                "/etc/zookeeper/conf:/usr/share/java/zookeeper.jar",
                "org.apache.zookeeper.server.ZooKeeperServerMain",
            ])
            .arg(&cfg)
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start java (is a JRE installed?)");
        let zk = RealZk {
            child,
            addr: format!("127.0.0.1:{port}"),
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        // `ruok` answers imok while the server is still loading; `srvr`
        // says "not currently serving" until it takes sessions.
        while !four_letter(&zk.addr, "srvr").starts_with("Zookeeper version") {
            assert!(Instant::now() < deadline, "real ZooKeeper did not start");
            std::thread::sleep(Duration::from_millis(200));
        }
        zk
    }
}

impl Drop for RealZk {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A failing test shows the oracle's log: its own errors explain
        // many differences.
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self._dir.path().join("zk.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            eprintln!("--- real ZooKeeper log (last lines) ---");
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}

/// Janus with the ZooKeeper settings the tests want.
pub fn start_janus(dir: &Path, zk_toml: &str) -> Janus {
    std::fs::create_dir_all(dir).expect("dir");
    let cfg = dir.join("janus.toml");
    let words = if zk_toml.contains("four_letter_words") {
        ""
    } else {
        "four_letter_words = [\"*\"]\n"
    };
    std::fs::write(&cfg, format!("[zookeeper]\n{words}{zk_toml}")).expect("config");
    let j = Janus::start(
        &dir.join("data"),
        &["--config", cfg.to_str().expect("utf-8 path")],
    );
    j.wait_healthy(Duration::from_secs(30));
    let deadline = Instant::now() + Duration::from_secs(30);
    while four_letter(&j.zk, "ruok") != "imok" {
        assert!(
            Instant::now() < deadline,
            "janus zookeeper port not answering"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    j
}

/// Run a python script from crates/zk/testdata with the venv, bounded in
/// time; returns stdout.
pub fn run_python(script: &str, args: &[&str], timeout: Duration) -> String {
    let path = root().join("crates/zk/testdata").join(script);
    let mut child = Command::new(venv_python())
        .arg(&path)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(st) = child.try_wait().expect("wait") {
            let out = out.join().unwrap_or_default();
            let err = err.join().unwrap_or_default();
            assert!(
                st.success(),
                "{script} {args:?} failed ({st}):\n{err}\n{out}"
            );
            return out;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{script} {args:?} timed out after {timeout:?}: {}",
                err.join().unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A minimal raw client: frames, a handshake, requests with hand-built
/// bodies (independent of the generated codec under test).
pub struct Raw {
    pub s: TcpStream,
    pub session: i64,
    pub passwd: Vec<u8>,
    pub timeout: i32,
    pub xid: i32,
}

pub fn be_i32(v: i32) -> [u8; 4] {
    v.to_be_bytes()
}

pub fn string(s: &str) -> Vec<u8> {
    let mut v = be_i32(s.len() as i32).to_vec();
    v.extend_from_slice(s.as_bytes());
    v
}

pub fn connect_request(last_zxid: i64, timeout: i32, session: i64, passwd: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&0i32.to_be_bytes());
    b.extend_from_slice(&last_zxid.to_be_bytes());
    b.extend_from_slice(&timeout.to_be_bytes());
    b.extend_from_slice(&session.to_be_bytes());
    b.extend_from_slice(&be_i32(passwd.len() as i32));
    b.extend_from_slice(passwd);
    b.push(0); // readOnly
    b
}

impl Raw {
    pub fn tcp(addr: &str) -> TcpStream {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        s
    }

    pub fn send_frame(s: &mut TcpStream, payload: &[u8]) -> std::io::Result<()> {
        let mut f = be_i32(payload.len() as i32).to_vec();
        f.extend_from_slice(payload);
        s.write_all(&f)
    }

    /// One frame, or `None` on EOF/error.
    pub fn read_frame(s: &mut TcpStream) -> Option<Vec<u8>> {
        let mut h = [0u8; 4];
        s.read_exact(&mut h).ok()?;
        let n = i32::from_be_bytes(h);
        let mut b = vec![0u8; usize::try_from(n).ok()?];
        s.read_exact(&mut b).ok()?;
        Some(b)
    }

    /// Handshake; returns (timeout, session, passwd) as the server answered.
    pub fn handshake(
        s: &mut TcpStream,
        last_zxid: i64,
        timeout: i32,
        session: i64,
        passwd: &[u8],
    ) -> Option<(i32, i64, Vec<u8>)> {
        Self::send_frame(s, &connect_request(last_zxid, timeout, session, passwd)).ok()?;
        let b = Self::read_frame(s)?;
        let t = i32::from_be_bytes(b[4..8].try_into().ok()?);
        let sid = i64::from_be_bytes(b[8..16].try_into().ok()?);
        let n = i32::from_be_bytes(b[16..20].try_into().ok()?) as usize;
        Some((t, sid, b[20..20 + n].to_vec()))
    }

    /// A ConnectRequest with the readOnly flag set; returns the answer's
    /// (timeout, session, readOnly byte).
    pub fn connect_read_only(s: &mut TcpStream, timeout: i32) -> Option<(i32, i64, u8)> {
        let mut req = connect_request(0, timeout, 0, &[0; 16]);
        if let Some(last) = req.last_mut() {
            *last = 1;
        }
        Self::send_frame(s, &req).ok()?;
        let b = Self::read_frame(s)?;
        Some((
            i32::from_be_bytes(b.get(4..8)?.try_into().ok()?),
            i64::from_be_bytes(b.get(8..16)?.try_into().ok()?),
            *b.last()?,
        ))
    }

    pub fn connect(addr: &str) -> Raw {
        let mut s = Self::tcp(addr);
        let (timeout, session, passwd) =
            Self::handshake(&mut s, 0, 10_000, 0, &[0; 16]).expect("handshake");
        Raw {
            s,
            session,
            passwd,
            timeout,
            xid: 0,
        }
    }

    /// Re-establish `session` on `addr` (a new connection).
    pub fn reattach(addr: &str, session: i64, passwd: &[u8]) -> Raw {
        let mut s = Self::tcp(addr);
        let (timeout, sid, _) =
            Self::handshake(&mut s, 0, 10_000, session, passwd).expect("re-establish");
        assert_eq!(sid, session, "the session was re-established");
        Raw {
            s,
            session,
            passwd: passwd.to_vec(),
            timeout,
            xid: 0,
        }
    }

    /// The server closes this connection without answering what was sent.
    pub fn assert_closed_unanswered(&mut self, what: &str) {
        let mut buf = [0u8; 4];
        match self.s.read(&mut buf) {
            Ok(0) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Ok(_) => {
                let n = i32::from_be_bytes(buf);
                let mut body = vec![0u8; n.max(0) as usize];
                let _ = self.s.read_exact(&mut body);
                let err = body
                    .get(12..16)
                    .map(|e| i32::from_be_bytes(e.try_into().expect("4")));
                panic!("{what}: the connection answered (err {err:?})");
            }
            Err(e) => panic!("{what}: the connection was neither answered nor closed: {e}"),
        }
    }

    /// Send a request; returns its xid.
    pub fn send(&mut self, op: i32, body: &[u8]) -> i32 {
        self.xid += 1;
        let mut p = be_i32(self.xid).to_vec();
        p.extend_from_slice(&be_i32(op));
        p.extend_from_slice(body);
        Self::send_frame(&mut self.s, &p).expect("send");
        self.xid
    }

    /// Next frame as (xid, zxid, err, body).
    pub fn recv(&mut self) -> Option<(i32, i64, i32, Vec<u8>)> {
        let b = Self::read_frame(&mut self.s)?;
        let xid = i32::from_be_bytes(b[0..4].try_into().ok()?);
        let zxid = i64::from_be_bytes(b[4..12].try_into().ok()?);
        let err = i32::from_be_bytes(b[12..16].try_into().ok()?);
        Some((xid, zxid, err, b[16..].to_vec()))
    }

    /// Send and wait for the reply to it (notifications before it are returned too).
    pub fn call(&mut self, op: i32, body: &[u8]) -> (i32, Vec<u8>, Vec<(i32, String)>) {
        let xid = self.send(op, body);
        let mut events = Vec::new();
        loop {
            let (rx, _, err, body) = self.recv().expect("reply");
            if rx == -1 {
                events.push(parse_event(&body));
                continue;
            }
            assert_eq!(rx, xid, "replies in order");
            return (err, body, events);
        }
    }

    pub fn create(&mut self, path: &str, flags: i32) -> i32 {
        let mut b = string(path);
        b.extend_from_slice(&be_i32(0)); // data
        b.extend_from_slice(&be_i32(1));
        b.extend_from_slice(&be_i32(31));
        b.extend_from_slice(&string("world"));
        b.extend_from_slice(&string("anyone"));
        b.extend_from_slice(&be_i32(flags));
        self.call(1, &b).0
    }
}

/// A WatcherEvent body: (type, path).
pub fn parse_event(b: &[u8]) -> (i32, String) {
    let ty = i32::from_be_bytes(b[0..4].try_into().expect("type"));
    let n = i32::from_be_bytes(b[8..12].try_into().expect("len"));
    let path = if n < 0 {
        String::new()
    } else {
        String::from_utf8_lossy(&b[12..12 + n as usize]).into_owned()
    };
    (ty, path)
}
