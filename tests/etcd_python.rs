//! An independent client library against Janus and, as the oracle, a real
//! etcd: Python's grpcio with stubs generated from proto/etcd. Proves watch
//! resumption after a broken stream, compaction reported to a lagging
//! watcher, and lease expiry deleting keys, plus an exact error text.
//!
//! Skipped (with a message) when the venv or etcd is missing: run
//! scripts/deps/etcd.sh.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use janus_tests::{free_port, Janus};

const VENV_PYTHON: &str = "/opt/janus-etcd-venv/bin/python";

const SCRIPT: &str = r#"
import queue, sys, threading
sys.path.insert(0, sys.argv[1])
import grpc
from etcdserverpb import rpc_pb2 as pb, rpc_pb2_grpc as rpc
from mvccpb import kv_pb2

ch = grpc.insecure_channel(sys.argv[2])
grpc.channel_ready_future(ch).result(timeout=10)
kv, lease, watch = rpc.KVStub(ch), rpc.LeaseStub(ch), rpc.WatchStub(ch)

def put(k, v, lease_id=0):
    return kv.Put(pb.PutRequest(key=k, value=v, lease=lease_id), timeout=10).header.revision

class W:
    """One watch stream read by a thread."""
    def __init__(self, create):
        self.q, self.reqs = queue.Queue(), queue.Queue()
        self.reqs.put(pb.WatchRequest(create_request=create))
        self.call = watch.Watch(iter(self.reqs.get, None))
        threading.Thread(target=self.run, daemon=True).start()
    def run(self):
        try:
            for r in self.call:
                self.q.put(r)
        except grpc.RpcError as e:
            self.q.put(e)
    def next(self, timeout=10):
        r = self.q.get(timeout=timeout)
        assert not isinstance(r, Exception), r
        return r
    def cancel(self):
        self.call.cancel()

# 1. Resume a watch after its stream broke, from the next revision.
w = W(pb.WatchCreateRequest(key=b"r/", range_end=b"r0"))
assert w.next().created
r1 = put(b"r/1", b"a")
assert w.next().events[0].kv.mod_revision == r1
w.cancel()
r2 = put(b"r/2", b"b")
r3 = put(b"r/1", b"c")
w = W(pb.WatchCreateRequest(key=b"r/", range_end=b"r0", start_revision=r1 + 1, prev_kv=True))
assert w.next().created
got = []
while len(got) < 2:
    got += [(e.kv.key, e.kv.mod_revision, e.prev_kv.value) for e in w.next().events]
assert got == [(b"r/2", r2, b""), (b"r/1", r3, b"a")], got
w.cancel()

# 2. A watcher that lags behind a compaction is told so, and resumes there.
revs = [put(b"c", str(i).encode()) for i in range(5)]
kv.Compact(pb.CompactionRequest(revision=revs[3], physical=True), timeout=10)
w = W(pb.WatchCreateRequest(key=b"c", start_revision=revs[0]))
assert w.next().created
resp = w.next()
assert resp.canceled and resp.compact_revision == revs[3], resp
w.cancel()
w = W(pb.WatchCreateRequest(key=b"c", start_revision=resp.compact_revision))
assert w.next().created
assert [e.kv.value for e in w.next().events] == [b"3", b"4"]
w.cancel()

# 3. Lease expiry deletes the attached keys, in one revision.
g = lease.LeaseGrant(pb.LeaseGrantRequest(TTL=2), timeout=10)
put(b"l/1", b"x", g.ID)
put(b"l/2", b"y", g.ID)
w = W(pb.WatchCreateRequest(key=b"l/", range_end=b"l0"))
assert w.next().created
resp = w.next(timeout=20)
assert sorted(e.kv.key for e in resp.events) == [b"l/1", b"l/2"], resp
assert all(e.type == kv_pb2.Event.DELETE for e in resp.events)
w.cancel()
assert kv.Range(pb.RangeRequest(key=b"l/", range_end=b"l0"), timeout=10).count == 0
assert lease.LeaseTimeToLive(pb.LeaseTimeToLiveRequest(ID=g.ID), timeout=10).TTL == -1

try:
    kv.Put(pb.PutRequest(key=b"", value=b"v"), timeout=10)
    raise SystemExit("empty key accepted")
except grpc.RpcError as e:
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e
    assert e.details() == "etcdserver: key is not provided", e.details()
print("python client: all checks passed")
"#;

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

/// Generate the Python stubs from proto/etcd into `out`.
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
        ])
        .status()
        .expect("protoc");
    assert!(st.success(), "generating Python stubs");
}

fn run(stubs: &Path, endpoint: &str) -> (bool, String) {
    let mut child = Command::new(VENV_PYTHON)
        .args(["-c", SCRIPT])
        .arg(stubs)
        .arg(endpoint)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python");
    let deadline = Instant::now() + Duration::from_secs(90);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

struct Etcd(Child);

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn python_grpc_client_against_etcd_and_janus() {
    if !ready() {
        eprintln!(
            "SKIPPED: the Python venv or etcd is missing (scripts/deps/etcd.sh installs them)"
        );
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    stubs(dir.path());

    let client = format!("127.0.0.1:{}", free_port());
    let peer = format!("127.0.0.1:{}", free_port());
    let log = std::fs::File::create(dir.path().join("etcd.log")).expect("log");
    let etcd = Etcd(
        Command::new("etcd")
            .args(["--name", "default", "--data-dir"])
            .arg(dir.path().join("etcd-data"))
            .arg(format!("--listen-client-urls=http://{client}"))
            .arg(format!("--advertise-client-urls=http://{client}"))
            .arg(format!("--listen-peer-urls=http://{peer}"))
            .arg(format!("--initial-advertise-peer-urls=http://{peer}"))
            .arg(format!("--initial-cluster=default=http://{peer}"))
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("etcd"),
    );
    let (ok, out) = run(dir.path(), &client);
    drop(etcd);
    assert!(
        ok,
        "the script's expectations do not hold for real etcd:\n{out}"
    );

    let mut janus = Janus::start(&dir.path().join("janus"), &[]);
    janus.wait_healthy(Duration::from_secs(30));
    let (ok, out) = run(dir.path(), &janus.etcd);
    janus.kill9();
    assert!(ok, "janus:\n{out}");
}
