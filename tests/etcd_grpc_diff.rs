//! Differential test at the gRPC level: the scenarios of
//! crates/etcd/testdata/etcd_grpc_diff.py (Python grpcio, stubs generated
//! from proto/etcd) run against a real etcd (Debian's 3.4.23, the oracle)
//! and against Janus; every scenario's normalized observations must agree.
//!
//! Each scenario works under its own key prefix and records every response
//! and error (gRPC code and message) it sees, normalized by the script:
//! revisions as deltas from the scenario's first revision, server-chosen
//! ids (lease, member, cluster) as placeholders, raft terms, versions,
//! sizes and hashes dropped. Both servers run with `max_request_bytes` =
//! 256 KiB so the size-limit and fragment scenarios stay small.
//!
//! Where etcd 3.5 answers differently from 3.4 and Janus follows 3.5, the
//! script drops the field and says so (StatusResponse's storageVersion,
//! dbSizeQuota, downgradeInfo; HashKVResponse's hash_revision), and
//! docs/etcd.md lists it.
//!
//! Skipped (with a message) when the venv or etcd is missing: run
//! scripts/deps/etcd.sh.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use janus_tests::{free_port, Janus};
use serde_json::Value;

const VENV_PYTHON: &str = "/opt/janus-etcd-venv/bin/python";
const MAX_REQUEST_BYTES: &str = "262144";
/// The bar: at least this many scenarios, all agreeing.
const MIN_SCENARIOS: usize = 60;

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/etcd/testdata/etcd_grpc_diff.py")
}

fn ready() -> bool {
    let py = Command::new(VENV_PYTHON)
        .args(["-c", "import grpc, grpc_tools"])
        .status()
        .is_ok_and(|s| s.success());
    let etcd = Command::new("etcd")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    py && etcd
}

/// Generate the Python stubs (KV, Watch, Lease, Cluster, Maintenance, Lock,
/// Election) from proto/etcd into `out`.
fn stubs(out: &Path) {
    let protos = Path::new(env!("CARGO_MANIFEST_DIR")).join("../proto/etcd");
    let st = Command::new(VENV_PYTHON)
        .args(["-m", "grpc_tools.protoc", "-I"])
        .arg(&protos)
        .arg(format!("--python_out={}", out.display()))
        .arg(format!("--grpc_python_out={}", out.display()))
        .args([
            "mvccpb/kv.proto",
            "authpb/auth.proto",
            "etcdserverpb/rpc.proto",
            "v3lockpb/v3lock.proto",
            "v3electionpb/v3election.proto",
        ])
        .status()
        .expect("protoc");
    assert!(st.success(), "generating Python stubs");
}

/// Run every scenario against `endpoint`: name → observations, in order.
/// Output goes to files (`log`.out, `log`): a pipe nobody reads while the
/// script runs would fill and stall it.
fn run(stubs: &Path, endpoint: &str, log: &Path) -> Vec<(String, Value)> {
    let err = std::fs::File::create(log).expect("script log");
    let out_path = log.with_extension("out");
    let out = std::fs::File::create(&out_path).expect("script output");
    let mut child = Command::new(VENV_PYTHON)
        .arg(script())
        .arg(stubs)
        .arg(endpoint)
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .spawn()
        .expect("python");
    // Bounded: the whole script takes about 20 s against either server.
    let deadline = Instant::now() + Duration::from_secs(240);
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = std::fs::read_to_string(&out_path).unwrap_or_default();
    assert!(
        status.success(),
        "the script failed against {endpoint} ({status}):\n{text}\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
    text.lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("a scenario's JSON line");
            let name = v["name"].as_str().expect("scenario name").to_string();
            (name, v["obs"].clone())
        })
        .collect()
}

/// A real etcd on free loopback ports; killed on drop.
struct Etcd {
    child: Child,
    endpoint: String,
}

impl Etcd {
    fn start(dir: &Path) -> Etcd {
        let client = format!("127.0.0.1:{}", free_port());
        let peer = format!("127.0.0.1:{}", free_port());
        let log = std::fs::File::create(dir.join("etcd.log")).expect("etcd log");
        let child = Command::new("etcd")
            .args(["--name", "default", "--data-dir"])
            .arg(dir.join("etcd-data"))
            .arg(format!("--listen-client-urls=http://{client}"))
            .arg(format!("--advertise-client-urls=http://{client}"))
            .arg(format!("--listen-peer-urls=http://{peer}"))
            .arg(format!("--initial-advertise-peer-urls=http://{peer}"))
            .arg(format!("--initial-cluster=default=http://{peer}"))
            .arg(format!("--max-request-bytes={MAX_REQUEST_BYTES}"))
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn etcd");
        let mut e = Etcd {
            child,
            endpoint: client,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = e.child.try_wait().expect("etcd status") {
                panic!(
                    "etcd exited ({st}):\n{}",
                    std::fs::read_to_string(dir.join("etcd.log")).unwrap_or_default()
                );
            }
            if healthy(&e.endpoint) {
                return e;
            }
            assert!(Instant::now() < deadline, "etcd did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// etcd's `/health` answers `"health":"true"` once it has a leader.
fn healthy(endpoint: &str) -> bool {
    let Ok(mut s) = TcpStream::connect(endpoint) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let req = format!("GET /health HTTP/1.0\r\nHost: {endpoint}\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut out = String::new();
    let _ = std::io::Read::read_to_string(&mut s, &mut out);
    out.contains("\"health\":\"true\"")
}

#[test]
fn grpc_scenarios_match_real_etcd() {
    if !ready() {
        eprintln!(
            "SKIPPED: the Python venv or etcd is missing (scripts/deps/etcd.sh installs them)"
        );
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    stubs(dir.path());

    let etcd = Etcd::start(dir.path());
    let want = run(dir.path(), &etcd.endpoint, &dir.path().join("etcd-run.log"));
    drop(etcd);

    let cfg = dir.path().join("janus.toml");
    std::fs::write(
        &cfg,
        format!("[etcd]\nmax_request_bytes = {MAX_REQUEST_BYTES}\n"),
    )
    .expect("janus config");
    let cfg = cfg.display().to_string();
    let mut janus = Janus::start(&dir.path().join("janus"), &["--config", &cfg]);
    janus.wait_healthy(Duration::from_secs(30));
    let got = run(dir.path(), &janus.etcd, &dir.path().join("janus-run.log"));
    janus.kill9();

    assert!(
        want.len() >= MIN_SCENARIOS,
        "only {} scenarios ran against etcd",
        want.len()
    );
    // A scenario that threw on the oracle is a broken scenario, not a
    // finding: its last observation says "exception".
    let broken: Vec<&str> = want
        .iter()
        .filter(|(_, obs)| obs.to_string().contains("\"exception\""))
        .map(|(n, _)| n.as_str())
        .collect();
    assert!(broken.is_empty(), "scenarios failing on etcd: {broken:?}");

    let got: BTreeMap<&str, &Value> = got.iter().map(|(n, o)| (n.as_str(), o)).collect();
    let mut diffs = Vec::new();
    for (name, w) in &want {
        let g = got.get(name.as_str()).copied().unwrap_or(&Value::Null);
        if w != g {
            diffs.push(describe(name, w, g));
        }
    }
    assert!(
        diffs.is_empty(),
        "{} of {} scenarios differ from real etcd:\n{}",
        diffs.len(),
        want.len(),
        diffs.join("\n")
    );
    eprintln!("{} gRPC scenarios agree with real etcd", want.len());
}

/// The observations that differ, side by side.
fn describe(name: &str, want: &Value, got: &Value) -> String {
    let empty = Vec::new();
    let w = want.as_array().unwrap_or(&empty);
    let g = got.as_array().unwrap_or(&empty);
    let mut out = format!("== {name}\n");
    for i in 0..w.len().max(g.len()) {
        let (a, b) = (w.get(i), g.get(i));
        if a != b {
            out += &format!(
                "  etcd : {}\n  janus: {}\n",
                a.map(Value::to_string).unwrap_or_default(),
                b.map(Value::to_string).unwrap_or_default()
            );
        }
    }
    out
}
