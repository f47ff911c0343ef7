//! Kubernetes' etcd traffic (tests/k8s_sim: several simulated apiservers on
//! etcd's own Go client) against a real etcd and against a three-member
//! Janus, also with the Janus leader killed midway. Every run must exit 0
//! (no invariant violated) with the same `deterministic` summary.
//!
//! Needs scripts/deps/etcd.sh (etcd) and scripts/deps/go.sh (Go and etcd's
//! Go client).

#[path = "k8s_sim_support.rs"]
mod k8s_sim_support;

use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use janus_tests::{leader_index, start_cluster, Janus};
use k8s_sim_support::{build_k8s_sim, RealEtcd, SimResult, SimRun};
use serde_json::Value;

/// Raft timings of a production-like cluster (Janus's defaults).
const CLUSTER_TOML: &str = "heartbeat_ms = 100\nelection_timeout_ms = 1000\n";
/// A default run takes 35–60 s; this only catches a hung program.
const RUN_TIMEOUT: Duration = Duration::from_secs(300);

/// The runs load both cores: one at a time.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn check_run(what: &str, r: &SimResult) {
    assert!(
        r.status.success(),
        "k8s-sim against {what} exited with {} (invariant violations are on stderr); summary: {}",
        r.status,
        r.summary
            .as_ref()
            .map(Value::to_string)
            .unwrap_or_else(|| r.stdout.clone())
    );
    eprintln!(
        "k8s-sim against {what}: {}",
        r.summary.as_ref().map(Value::to_string).unwrap_or_default()
    );
}

/// The deterministic summary of a run against a real etcd (computed once).
fn etcd_deterministic() -> Value {
    static ETCD: OnceLock<Value> = OnceLock::new();
    ETCD.get_or_init(|| {
        let tmp = tempfile::tempdir().expect("tempdir");
        let etcd = RealEtcd::start(tmp.path());
        let summary = tmp.path().join("summary.json");
        let r = SimRun::spawn(
            &[etcd.endpoint.clone()],
            &["--summary", summary.to_str().expect("utf-8 path")],
        )
        .wait(RUN_TIMEOUT);
        check_run("etcd", &r);
        let from_file: Value =
            serde_json::from_str(&std::fs::read_to_string(&summary).expect("summary file"))
                .expect("summary JSON");
        assert_eq!(
            Some(&from_file),
            r.summary.as_ref(),
            "the summary file and stdout agree"
        );
        r.deterministic().clone()
    })
    .clone()
}

fn endpoints(members: &[Janus]) -> Vec<String> {
    members.iter().map(|m| m.etcd.clone()).collect()
}

fn wait_leader(members: &[Janus], timeout: Duration) -> usize {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(l) = leader_index(members) {
            return l;
        }
        assert!(Instant::now() < deadline, "no leader elected");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn janus_cluster_serves_kubernetes_like_etcd() {
    let _serial = serial();
    build_k8s_sim();
    let want = etcd_deterministic();

    let tmp = tempfile::tempdir().expect("tempdir");
    let members = start_cluster(tmp.path(), 3, CLUSTER_TOML);
    wait_leader(&members, Duration::from_secs(30));
    let r = SimRun::spawn(&endpoints(&members), &[]).wait(RUN_TIMEOUT);
    check_run("a three-member Janus", &r);
    assert_eq!(
        r.deterministic(),
        &want,
        "the deterministic summaries of etcd and Janus differ"
    );
    assert!(
        r.observed("watch_events_checked") > 0 && r.observed("compactions") > 0,
        "the run watched and compacted"
    );
}

#[test]
fn kubernetes_traffic_survives_a_janus_leader_kill() {
    let _serial = serial();
    build_k8s_sim();
    let want = etcd_deterministic();

    let tmp = tempfile::tempdir().expect("tempdir");
    let mut members = start_cluster(tmp.path(), 3, CLUSTER_TOML);
    wait_leader(&members, Duration::from_secs(30));
    let mut run = SimRun::spawn(&endpoints(&members), &[]);

    // SIGKILL the leader once a third of the work is done ...
    assert!(
        run.wait_progress(1.0 / 3.0, RUN_TIMEOUT),
        "k8s-sim stopped before a third of its work: {:?}",
        run.progress()
    );
    let leader = wait_leader(&members, Duration::from_secs(30));
    members[leader].kill9();
    let killed_at = run.progress();
    // ... and bring it back (same data, same ports) at two thirds, or after
    // 20 s if the survivors are slow to get there.
    run.wait_progress(2.0 / 3.0, Duration::from_secs(20));
    members[leader].spawn();
    let restarted_at = run.progress();
    members[leader].wait_healthy(Duration::from_secs(60));

    let r = run.wait(RUN_TIMEOUT);
    eprintln!(
        "leader {} killed at {killed_at:?}, restarted at {restarted_at:?}",
        leader + 1
    );
    check_run("a three-member Janus with its leader killed", &r);
    assert_eq!(
        r.deterministic(),
        &want,
        "the deterministic summaries of etcd and of Janus with a leader kill differ"
    );
    assert!(
        killed_at.0 < killed_at.1,
        "the leader was killed before the work ended"
    );
}
