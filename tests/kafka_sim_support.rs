//! Shared by the tests that run the Kafka ZooKeeper-traffic simulation
//! (`tests/kafka_sim/*.java`; included with `#[path]`): compile it with
//! `javac` into `target/kafka-sim/`, start it, follow its `PROGRESS` lines
//! and parse its summary.
//!
//! The program's CLI: `--connect host:port,... [--brokers 3] [--topics 4]
//! [--partitions 3] [--rounds 24] [--pace-ms 250] [--summary FILE]`. It
//! prints `PROGRESS <done> <total>` after each step of its fixed script,
//! then one JSON object `{"deterministic": {...}, "observed": {...}}` as
//! its last stdout line; it exits 0 iff no invariant was violated.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Debian's jars on the classpath. The client needs only zookeeper.jar,
/// zookeeper-jute.jar (its records) and slf4j-api.jar (zookeeper.jar's
/// manifest names many more: server-side and CLI dependencies);
/// slf4j-simple just prints the client's warnings to stderr.
pub const CLASSPATH_JARS: &[&str] = &[
    "/usr/share/java/zookeeper.jar",
    "/usr/share/java/zookeeper-jute.jar",
    "/usr/share/java/slf4j-api.jar",
    "/usr/share/java/slf4j-simple.jar",
];

/// The fixed amount of work the tests give the program (about 90 steps,
/// 2000 requests, 30-60 s), so runs against different servers compare.
pub const ARGS: &[&str] = &[
    "--brokers",
    "3",
    "--topics",
    "4",
    "--partitions",
    "3",
    "--rounds",
    "24",
];

fn sources_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("kafka_sim")
}

/// `target/` of this build: the test executable is `target/<profile>/deps/<name>`.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent()
        .and_then(Path::parent)
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf()
}

/// Compile the program (once per test process) into
/// `target/kafka-sim/classes`; returns that directory.
pub fn build_kafka_sim() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            for jar in CLASSPATH_JARS {
                assert!(
                    Path::new(jar).exists(),
                    "{jar} missing: scripts/deps/zk.sh installs Debian's zookeeper"
                );
            }
            let out = target_dir().join("kafka-sim/classes");
            std::fs::create_dir_all(&out).expect("class dir");
            let mut sources: Vec<PathBuf> = std::fs::read_dir(sources_dir())
                .expect("tests/kafka_sim")
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "java"))
                .collect();
            sources.sort();
            let res = Command::new("javac")
                .arg("-d")
                .arg(&out)
                .arg("-cp")
                .arg(CLASSPATH_JARS.join(":"))
                .args(&sources)
                .output()
                .expect("run javac (scripts/deps/java.sh installs a JDK)");
            assert!(
                res.status.success(),
                "javac failed:\n{}",
                String::from_utf8_lossy(&res.stderr)
            );
            out
        })
        .clone()
}

/// Start the program against `connect` with more CLI arguments; stdout and
/// stderr are piped.
pub fn spawn_kafka_sim(connect: &str, args: &[&str]) -> Child {
    let classes = build_kafka_sim();
    let cp = format!("{}:{}", classes.display(), CLASSPATH_JARS.join(":"));
    Command::new("java")
        .args([
            "-Xmx256m",
            "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
            "-cp",
            &cp,
            "KafkaZkSim",
            "--connect",
            connect,
        ])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start java")
}

/// The summary: the last stdout line that is a JSON object.
pub fn parse_summary(stdout: &str) -> Option<serde_json::Value> {
    stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .and_then(|l| serde_json::from_str(l).ok())
}

/// How a run ended.
pub struct SimOutcome {
    pub status: ExitStatus,
    pub summary: serde_json::Value,
    pub stderr: String,
}

impl SimOutcome {
    pub fn deterministic(&self) -> &serde_json::Value {
        &self.summary["deterministic"]
    }

    pub fn observed(&self) -> &serde_json::Value {
        &self.summary["observed"]
    }

    /// The end of the program's log, for assertion messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let all: Vec<&str> = self.stderr.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

/// A running simulation whose `PROGRESS` lines are followed.
pub struct SimRun {
    child: Child,
    done: Arc<AtomicU64>,
    total: Arc<AtomicU64>,
    out: Option<JoinHandle<String>>,
    err: Option<JoinHandle<String>>,
}

impl SimRun {
    pub fn start(connect: &str, args: &[&str]) -> SimRun {
        let mut child = spawn_kafka_sim(connect, args);
        let done = Arc::new(AtomicU64::new(0));
        let total = Arc::new(AtomicU64::new(0));
        let stdout = child.stdout.take().expect("stdout");
        let (d, t) = (done.clone(), total.clone());
        let out = std::thread::spawn(move || {
            let mut text = String::new();
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("PROGRESS ") {
                    let mut it = rest
                        .split_whitespace()
                        .map(|v| v.parse::<u64>().unwrap_or(0));
                    if let (Some(a), Some(b)) = (it.next(), it.next()) {
                        t.store(b, Ordering::SeqCst);
                        d.store(a, Ordering::SeqCst);
                    }
                }
                text.push_str(&line);
                text.push('\n');
            }
            text
        });
        let mut stderr = child.stderr.take().expect("stderr");
        let err = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            s
        });
        SimRun {
            child,
            done,
            total,
            out: Some(out),
            err: Some(err),
        }
    }

    /// (steps done, steps in all); total is 0 before the first step.
    pub fn progress(&self) -> (u64, u64) {
        (
            self.done.load(Ordering::SeqCst),
            self.total.load(Ordering::SeqCst),
        )
    }

    /// Wait until at least `num/den` of the steps are done; false if the
    /// program ended or `timeout` passed first.
    pub fn wait_fraction(&mut self, num: u64, den: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let (d, t) = self.progress();
            if t > 0 && d * den >= t * num {
                return true;
            }
            if Instant::now() > deadline || matches!(self.child.try_wait(), Ok(Some(_))) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Wait for the end (killing the program after `timeout`); panics if
    /// there is no summary.
    pub fn finish(mut self, timeout: Duration) -> SimOutcome {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(st) = self.child.try_wait().expect("wait") {
                break st;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                break self.child.wait().expect("wait");
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let stdout = self
            .out
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default();
        let stderr = self
            .err
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default();
        let summary = parse_summary(&stdout).unwrap_or_else(|| {
            let tail: Vec<&str> = stderr.lines().rev().take(80).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            panic!(
                "kafka-sim ended ({status}) without a summary within {timeout:?}; log tail:\n{}",
                tail.join("\n")
            )
        });
        SimOutcome {
            status,
            summary,
            stderr,
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
