//! The real tools the tests drive (zkCli.sh, etcdctl, etcd), and child
//! processes killed on drop. A missing tool fails the test that needs it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::free_port;

/// A process killed on drop, with the file its output goes to.
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    /// Spawn `cmd` with stdout and stderr into `log`.
    pub fn spawn(mut cmd: Command, log: PathBuf) -> Proc {
        let f = std::fs::File::create(&log).expect("log file");
        let child = cmd
            .stdout(Stdio::from(f.try_clone().expect("log file")))
            .stderr(Stdio::from(f))
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        Proc { child, log }
    }

    /// What the process wrote so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// zkCli.sh (Debian's) with `script`, one command a line: its output.
pub fn zk_cli(addr: &str, script: &str) -> String {
    let mut child = Command::new("sh")
        .args([
            "-c",
            "exec /usr/share/zookeeper/bin/zkCli.sh -server \"$0\" 2>&1",
            addr,
        ])
        .env("ZOO_LOG4J_PROP", "ERROR,CONSOLE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("zkCli.sh (Debian's zookeeper package; scripts/deps/zk.sh)");
    let mut stdin = child.stdin.take().expect("stdin");
    let script = script.to_string();
    let feeder = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1500));
        for line in script.lines() {
            let _ = writeln!(stdin, "{line}");
            // reconfig may wait for a synced quorum (a few election timeouts).
            let pause = if line.starts_with("reconfig") {
                2500
            } else {
                300
            };
            std::thread::sleep(Duration::from_millis(pause));
        }
        let _ = writeln!(stdin, "quit");
    });
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = rx
        .recv_timeout(Duration::from_secs(90))
        .expect("zkCli.sh timed out")
        .expect("zkCli.sh output");
    let _ = feeder.join();
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("zkCli.sh: not found"),
        "zkCli.sh is missing (scripts/deps/zk.sh)"
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// etcdctl (v3 API) against `endpoints`: (exit code, stdout, stderr),
/// stopped after 20 s.
pub fn etcdctl(endpoints: &str, args: &[&str]) -> (i32, String, String) {
    etcdctl_with(endpoints, &[], args)
}

/// etcdctl with `flags` (TLS and the like) before `args`.
pub fn etcdctl_with(endpoints: &str, flags: &[String], args: &[&str]) -> (i32, String, String) {
    let out = Command::new("timeout")
        .args(["-s", "INT", "20", "etcdctl"])
        .arg(format!("--endpoints={endpoints}"))
        .args(flags)
        .args(args)
        .env("ETCDCTL_API", "3")
        .stdin(Stdio::null())
        .output()
        .expect("timeout (coreutils)");
    let code = out.status.code().unwrap_or(-1);
    // timeout's own status when etcdctl cannot be run.
    assert!(
        code != 127 && code != 126,
        "etcdctl is missing (scripts/deps/etcd.sh)"
    );
    (
        code,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Waits (30 s at most) until `etcdctl endpoint health` succeeds.
pub fn wait_etcdctl_healthy(endpoint: &str, ctl_flags: &[String]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, _, err) = etcdctl_with(endpoint, ctl_flags, &["endpoint", "health"]);
        if code == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "{endpoint} not healthy: {err}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A real one-member etcd on free loopback ports, its data under `dir`.
pub struct RealEtcd {
    pub proc: Proc,
    /// `127.0.0.1:PORT`
    pub endpoint: String,
    /// `scheme://127.0.0.1:PORT`
    pub url: String,
}

impl RealEtcd {
    /// Plain HTTP, no extra flags.
    pub fn start(dir: &Path) -> RealEtcd {
        RealEtcd::start_with(dir, "http", &[], &[])
    }

    /// etcd with `flags`, its client URL `scheme://127.0.0.1:PORT` (plain
    /// peer port); waits until etcdctl with `ctl_flags` finds it healthy.
    pub fn start_with(
        dir: &Path,
        scheme: &str,
        flags: &[String],
        ctl_flags: &[String],
    ) -> RealEtcd {
        std::fs::create_dir_all(dir).expect("etcd dir");
        let client = format!("127.0.0.1:{}", free_port());
        let peer = format!("127.0.0.1:{}", free_port());
        let mut cmd = Command::new("etcd");
        cmd.args(["--name", "default", "--data-dir"])
            .arg(dir.join("etcd-data"))
            .arg(format!("--listen-client-urls={scheme}://{client}"))
            .arg(format!("--advertise-client-urls={scheme}://{client}"))
            .arg(format!("--listen-peer-urls=http://{peer}"))
            .arg(format!("--initial-advertise-peer-urls=http://{peer}"))
            .arg(format!("--initial-cluster=default=http://{peer}"))
            .args(flags);
        let e = RealEtcd {
            proc: Proc::spawn(cmd, dir.join("etcd.log")),
            url: format!("{scheme}://{client}"),
            endpoint: client,
        };
        wait_etcdctl_healthy(&e.url, ctl_flags);
        e
    }
}
