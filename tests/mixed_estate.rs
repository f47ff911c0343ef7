//! The mixed estate: one three-member Janus serves Kafka's ZooKeeper
//! traffic (tests/kafka_sim, three brokers on the real Java client) and
//! Kubernetes' etcd traffic (tests/k8s_sim, three apiservers on etcd's Go
//! client) at the same time. A third of the way through the leader is
//! SIGKILLed; at two thirds it is restarted. Both programs must finish with
//! their invariants intact and with the deterministic summaries that the
//! same programs give against real ZooKeeper and real etcd.
//!
//! Needs scripts/deps/zk.sh, etcd.sh, java.sh and go.sh.

#[path = "k8s_sim_support.rs"]
mod k8s_sim_support;
#[path = "kafka_sim_support.rs"]
mod kafka_sim_support;
#[path = "zk_support.rs"]
mod zk_support;

use std::time::{Duration, Instant};

use janus_tests::{leader_index, start_cluster, Janus};
use serde_json::Value;

use kafka_sim_support::ARGS as KAFKA_ARGS;
/// The Kubernetes program's (its defaults: 3 apiservers, 2400 ops).
const K8S_ARGS: &[&str] = &["--apiservers", "3"];
const RUN_TIMEOUT: Duration = Duration::from_secs(300);
const CLUSTER_TOML: &str =
    "heartbeat_ms = 100\nelection_timeout_ms = 1000\n[zookeeper]\nfour_letter_words = [\"*\"]\n";

fn kafka_reference() -> Value {
    let zk = zk_support::RealZk::start();
    let out = kafka_sim_support::SimRun::start(&zk.addr, KAFKA_ARGS).finish(RUN_TIMEOUT);
    assert!(
        out.status.success() && out.deterministic()["violations"] == 0,
        "kafka-sim against real ZooKeeper failed ({}):\n{}",
        out.status,
        out.log_tail(40)
    );
    out.deterministic().clone()
}

fn k8s_reference() -> Value {
    let tmp = tempfile::tempdir().expect("tempdir");
    let etcd = k8s_sim_support::RealEtcd::start(tmp.path());
    let r = k8s_sim_support::SimRun::spawn(&[etcd.endpoint.clone()], K8S_ARGS).wait(RUN_TIMEOUT);
    assert!(
        r.status.success(),
        "k8s-sim against real etcd failed ({}): {:?}",
        r.status,
        r.summary
    );
    r.deterministic().clone()
}

/// A leader other than `not` (the running members name a killed leader
/// until their election timeout passes).
fn wait_leader(members: &[Janus], not: Option<usize>, timeout: Duration) -> Option<usize> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(l) = leader_index(members).filter(|l| Some(*l) != not) {
            return Some(l);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The keys of two summaries' deterministic parts that differ.
fn diff(reference: &Value, got: &Value) -> String {
    let (a, b) = (
        reference.as_object().cloned().unwrap_or_default(),
        got.as_object().cloned().unwrap_or_default(),
    );
    let mut out = String::new();
    for k in a.keys().chain(b.keys().filter(|k| !a.contains_key(*k))) {
        if a.get(k) != b.get(k) {
            out.push_str(&format!(
                "  {k}: real {:?}\n  {k}: Janus {:?}\n",
                a.get(k),
                b.get(k)
            ));
        }
    }
    out
}

#[test]
fn kafka_and_kubernetes_share_a_cluster_through_a_leader_kill() {
    let builds = [
        std::thread::spawn(|| {
            kafka_sim_support::build_kafka_sim();
        }),
        std::thread::spawn(|| {
            k8s_sim_support::build_k8s_sim();
        }),
    ];
    for b in builds {
        b.join().expect("build");
    }
    // The references against the real servers, both at once.
    let kafka_ref = std::thread::spawn(kafka_reference);
    let k8s_ref = std::thread::spawn(k8s_reference);
    let kafka_ref = kafka_ref.join().expect("kafka-sim against real ZooKeeper");
    let k8s_ref = k8s_ref.join().expect("k8s-sim against real etcd");

    let tmp = tempfile::tempdir().expect("tempdir");
    let mut members = start_cluster(tmp.path(), 3, CLUSTER_TOML);
    let deadline = Instant::now() + Duration::from_secs(30);
    while members
        .iter()
        .any(|m| zk_support::four_letter(&m.zk, "ruok") != "imok")
    {
        assert!(Instant::now() < deadline, "zookeeper ports not up");
        std::thread::sleep(Duration::from_millis(100));
    }
    let connect = members
        .iter()
        .map(|m| m.zk.as_str())
        .collect::<Vec<_>>()
        .join(",");
    let endpoints: Vec<String> = members.iter().map(|m| m.etcd.clone()).collect();
    let mut kafka = kafka_sim_support::SimRun::start(&connect, KAFKA_ARGS);
    let mut k8s = k8s_sim_support::SimRun::spawn(&endpoints, K8S_ARGS);

    assert!(
        kafka.wait_fraction(1, 3, RUN_TIMEOUT),
        "kafka-sim did not get a third of the way: {:?}",
        kafka.progress()
    );
    assert!(
        k8s.wait_progress(1.0 / 3.0, RUN_TIMEOUT),
        "k8s-sim did not get a third of the way: {:?}",
        k8s.progress()
    );
    let leader = wait_leader(&members, None, Duration::from_secs(30)).expect("a leader");
    eprintln!(
        "killing the leader (member {}) at kafka {:?}, k8s {:?}",
        leader + 1,
        kafka.progress(),
        k8s.progress()
    );
    let killed_at = Instant::now();
    members[leader].kill9();
    let without_leader = wait_leader(&members, Some(leader), Duration::from_secs(60))
        .map(|_| killed_at.elapsed())
        .expect("a new leader among the two left");
    eprintln!("time without a leader: {without_leader:?}");

    let kafka_two_thirds = kafka.wait_fraction(2, 3, RUN_TIMEOUT);
    let k8s_two_thirds = k8s.wait_progress(2.0 / 3.0, RUN_TIMEOUT);
    eprintln!(
        "restarting member {} at kafka {:?}, k8s {:?}",
        leader + 1,
        kafka.progress(),
        k8s.progress()
    );
    members[leader].spawn();

    let kafka_out = kafka.finish(RUN_TIMEOUT);
    let k8s_out = k8s.wait(RUN_TIMEOUT);
    eprintln!("kafka-sim on Janus: observed {}", kafka_out.observed());
    eprintln!(
        "k8s-sim on Janus: {}",
        k8s_out
            .summary
            .as_ref()
            .map(Value::to_string)
            .unwrap_or_default()
    );
    assert!(
        kafka_out.status.success() && kafka_out.deterministic()["violations"] == 0,
        "kafka-sim on the mixed estate failed ({}): {}\n{}",
        kafka_out.status,
        kafka_out.observed()["violation_messages"],
        kafka_out.log_tail(60)
    );
    assert!(
        k8s_out.status.success(),
        "k8s-sim on the mixed estate failed ({}): {:?}",
        k8s_out.status,
        k8s_out.summary
    );
    assert!(
        kafka_two_thirds && k8s_two_thirds,
        "a program ended before two thirds: the kill was not midway"
    );
    let d = diff(&kafka_ref, kafka_out.deterministic());
    assert!(d.is_empty(), "kafka-sim: Janus vs real ZooKeeper:\n{d}");
    let d = diff(&k8s_ref, k8s_out.deterministic());
    assert!(d.is_empty(), "k8s-sim: Janus vs real etcd:\n{d}");
    members[leader].wait_healthy(Duration::from_secs(30));
    eprintln!(
        "mixed estate: {} brokers, {} apiservers; kafka {} ops, {} watch events, {} retries, {} connection losses; \
         k8s {} ops, {} watch events checked, {} errors retried; {:?} without a leader",
        kafka_out.deterministic()["brokers"],
        k8s_out.deterministic()["apiservers"],
        kafka_out.observed()["ops"],
        kafka_out.observed()["watch_events"],
        kafka_out.observed()["retries"],
        kafka_out.observed()["connection_losses"],
        k8s_out.observed("ops_done"),
        k8s_out.observed("watch_events_checked"),
        k8s_out.observed("errors_retried"),
        without_leader,
    );
}
