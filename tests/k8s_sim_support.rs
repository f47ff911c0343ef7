//! Build and run tests/k8s_sim (the Kubernetes-apiserver etcd traffic
//! simulator, Go, etcd's own client) from Rust tests. Included with
//! `#[path = "k8s_sim_support.rs"] mod k8s_sim_support;`.
//!
//! The program prints `PROGRESS <done> <total>` lines and, last, one JSON
//! summary `{"deterministic": {...}, "observed": {...}}`; it exits 0 iff no
//! invariant was violated. Needs scripts/deps/go.sh (Debian's golang-go and
//! golang-etcd-server-dev; the build is offline).
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

/// `target/` of this build (the test runs from target/<profile>/deps).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent()
        .and_then(Path::parent)
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf()
}

/// `go build` tests/k8s_sim into target/k8s-sim/k8s-sim (once per test
/// process; Go's cache under target/k8s-sim/gocache makes rebuilds quick).
pub fn build_k8s_sim() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let out_dir = target_dir().join("k8s-sim");
            std::fs::create_dir_all(&out_dir).expect("target/k8s-sim");
            let bin = out_dir.join("k8s-sim");
            let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("k8s_sim");
            let out = Command::new("go")
                .args(["build", "-o"])
                .arg(&bin)
                .arg(".")
                .current_dir(&src)
                // GOPATH mode over Debian's packaged sources: nothing is
                // downloaded.
                .env("GO111MODULE", "off")
                .env("GOPATH", "/usr/share/gocode")
                .env("GOPROXY", "off")
                .env("GOFLAGS", "")
                .env("GOENV", "off")
                .env("GOCACHE", out_dir.join("gocache"))
                .output()
                .unwrap_or_else(|e| panic!("go build ({e}): run scripts/deps/go.sh"));
            assert!(
                out.status.success(),
                "go build tests/k8s_sim failed (scripts/deps/go.sh installs Go and etcd's client):\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            bin
        })
        .clone()
}

/// Start the simulator against `endpoints` with extra `args` (e.g.
/// `--ops`, `--summary FILE`). Its stdout is piped (PROGRESS lines and the
/// summary), its stderr (violations) goes to the test's.
pub fn spawn_k8s_sim(endpoints: &[String], args: &[&str]) -> Child {
    Command::new(build_k8s_sim())
        .arg("--endpoints")
        .arg(endpoints.join(","))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn k8s-sim")
}

/// The summary: the last stdout line that parses as a JSON object.
pub fn parse_summary(stdout: &str) -> Option<Value> {
    stdout
        .lines()
        .rev()
        .filter(|l| l.starts_with('{'))
        .find_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(Value::is_object)
}

/// A running simulator whose stdout is read as it goes.
pub struct SimRun {
    pub child: Child,
    done: Arc<AtomicU64>,
    total: Arc<AtomicU64>,
    stdout: Arc<Mutex<String>>,
    reader: Option<JoinHandle<()>>,
}

/// How a run ended.
pub struct SimResult {
    pub status: ExitStatus,
    pub stdout: String,
    pub summary: Option<Value>,
}

impl SimResult {
    /// The summary's `deterministic` part (panics with the output if none).
    pub fn deterministic(&self) -> &Value {
        self.summary
            .as_ref()
            .and_then(|s| s.get("deterministic"))
            .unwrap_or_else(|| panic!("no summary; stdout:\n{}", self.stdout))
    }

    /// A number from the summary's `observed` part (0 if absent).
    pub fn observed(&self, key: &str) -> i64 {
        self.summary
            .as_ref()
            .and_then(|s| s.get("observed"))
            .and_then(|o| o.get(key))
            .and_then(Value::as_i64)
            .unwrap_or(0)
    }
}

impl SimRun {
    pub fn spawn(endpoints: &[String], args: &[&str]) -> SimRun {
        let mut child = spawn_k8s_sim(endpoints, args);
        let pipe = child.stdout.take().expect("stdout");
        let done = Arc::new(AtomicU64::new(0));
        let total = Arc::new(AtomicU64::new(0));
        let stdout = Arc::new(Mutex::new(String::new()));
        let (d, t, s) = (done.clone(), total.clone(), stdout.clone());
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.strip_prefix("PROGRESS ") {
                    let mut it = rest.split_whitespace().map(|x| x.parse::<u64>());
                    if let (Some(Ok(a)), Some(Ok(b))) = (it.next(), it.next()) {
                        d.store(a, Ordering::SeqCst);
                        t.store(b, Ordering::SeqCst);
                    }
                }
                let mut out = s.lock().unwrap_or_else(|e| e.into_inner());
                out.push_str(&line);
                out.push('\n');
            }
        });
        SimRun {
            child,
            done,
            total,
            stdout,
            reader: Some(reader),
        }
    }

    /// (done, total) from the last PROGRESS line.
    pub fn progress(&self) -> (u64, u64) {
        (
            self.done.load(Ordering::SeqCst),
            self.total.load(Ordering::SeqCst),
        )
    }

    /// Wait until at least `fraction` of the work is done; false if the
    /// program exited or `timeout` passed first.
    pub fn wait_progress(&mut self, fraction: f64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let (d, t) = self.progress();
            if t > 0 && d as f64 >= fraction * t as f64 {
                return true;
            }
            if Instant::now() > deadline || matches!(self.child.try_wait(), Ok(Some(_))) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Wait for the exit (killing the program after `timeout`).
    pub fn wait(mut self, timeout: Duration) -> SimResult {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(st) = self.child.try_wait().expect("wait k8s-sim") {
                break st;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let st = self.child.wait().expect("wait k8s-sim");
                let out = self.stdout.lock().unwrap_or_else(|e| e.into_inner());
                panic!("k8s-sim still running after {timeout:?} ({st}); stdout:\n{out}");
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        let stdout = self
            .stdout
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        SimResult {
            status,
            summary: parse_summary(&stdout),
            stdout,
        }
    }
}

impl Drop for SimRun {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Run the simulator to the end.
pub fn run_k8s_sim(endpoints: &[String], args: &[&str], timeout: Duration) -> SimResult {
    SimRun::spawn(endpoints, args).wait(timeout)
}

/// A one-member real etcd (Debian's etcd-server, scripts/deps/etcd.sh) on
/// free loopback ports; killed on drop.
pub struct RealEtcd {
    child: Child,
    pub endpoint: String,
}

impl RealEtcd {
    pub fn start(dir: &Path) -> RealEtcd {
        let client = format!("127.0.0.1:{}", janus_tests::free_port());
        let peer = format!("127.0.0.1:{}", janus_tests::free_port());
        let log = std::fs::File::create(dir.join("etcd.log")).expect("etcd log");
        let child = Command::new("etcd")
            .args(["--name", "default", "--data-dir"])
            .arg(dir.join("etcd-data"))
            .arg(format!("--listen-client-urls=http://{client}"))
            .arg(format!("--advertise-client-urls=http://{client}"))
            .arg(format!("--listen-peer-urls=http://{peer}"))
            .arg(format!("--initial-advertise-peer-urls=http://{peer}"))
            .arg(format!("--initial-cluster=default=http://{peer}"))
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("spawn etcd ({e}): run scripts/deps/etcd.sh"));
        let e = RealEtcd {
            child,
            endpoint: client,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok((200, body)) = janus_tests::http_get(&e.endpoint, "/health") {
                if body.contains("true") {
                    return e;
                }
            }
            assert!(Instant::now() < deadline, "etcd did not become healthy");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for RealEtcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
