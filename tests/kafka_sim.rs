//! Kafka's ZooKeeper traffic (tests/kafka_sim: three brokers in one JVM on
//! the real Java client, registering, electing a controller, creating and
//! deleting topics, changing ISRs and configs, one session expired midway,
//! invariants checked as it runs) against real ZooKeeper and against a
//! three-member Janus: both runs must pass and end in the same
//! deterministic summary, also when the Janus member holding the program's
//! sessions (the leader, when it holds any) is SIGKILLed a third of the way
//! through and restarted at two thirds.

#[path = "kafka_sim_support.rs"]
mod kafka_sim_support;
#[path = "zk_support.rs"]
mod zk_support;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use janus_tests::{leader_index, start_cluster, Janus};
use kafka_sim_support::{SimOutcome, SimRun};
use zk_support::{four_letter, RealZk};

use kafka_sim_support::ARGS;

const RUN_TIMEOUT: Duration = Duration::from_secs(170);

/// The default tick (2 s) lets Kafka's 18 s session timeout through.
const CLUSTER_TOML: &str =
    "heartbeat_ms = 100\nelection_timeout_ms = 1000\n[zookeeper]\nfour_letter_words = [\"*\"]\n";

fn assert_passed(server: &str, out: &SimOutcome) {
    assert!(
        out.status.success() && out.deterministic()["violations"] == 0,
        "kafka-sim against {server} failed ({}): violations {}\nlog tail:\n{}",
        out.status,
        out.observed()["violation_messages"],
        out.log_tail(60)
    );
}

/// The deterministic summary of a run against real ZooKeeper, shared by
/// the tests of this file (made once per process).
fn zookeeper_reference() -> serde_json::Value {
    static REFERENCE: OnceLock<serde_json::Value> = OnceLock::new();
    REFERENCE
        .get_or_init(|| {
            let zk = RealZk::start();
            let out = SimRun::start(&zk.addr, ARGS).finish(RUN_TIMEOUT);
            assert_passed("real ZooKeeper", &out);
            eprintln!("real ZooKeeper: observed {}", out.observed());
            out.deterministic().clone()
        })
        .clone()
}

fn assert_same(reference: &serde_json::Value, janus: &SimOutcome) {
    let got = janus.deterministic();
    if got != reference {
        let (a, b) = (
            reference.as_object().cloned().unwrap_or_default(),
            got.as_object().cloned().unwrap_or_default(),
        );
        let mut diff = String::new();
        for (k, v) in &a {
            if b.get(k) != Some(v) {
                diff.push_str(&format!(
                    "  {k}: ZooKeeper {v}\n  {k}: Janus     {:?}\n",
                    b.get(k)
                ));
            }
        }
        for k in b.keys().filter(|k| !a.contains_key(*k)) {
            diff.push_str(&format!("  {k}: only in Janus's summary\n"));
        }
        panic!(
            "deterministic summaries differ:\n{diff}\nJanus log tail:\n{}",
            janus.log_tail(40)
        );
    }
}

fn connect_string(members: &[Janus]) -> String {
    members
        .iter()
        .map(|m| m.zk.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

fn start_janus(dir: &std::path::Path) -> Vec<Janus> {
    let members = start_cluster(dir, 3, CLUSTER_TOML);
    let deadline = Instant::now() + Duration::from_secs(30);
    while members.iter().any(|m| four_letter(&m.zk, "ruok") != "imok") {
        assert!(Instant::now() < deadline, "zookeeper ports not up");
        std::thread::sleep(Duration::from_millis(100));
    }
    members
}

/// Client sessions attached to a member, from its `cons` list.
fn sessions_on(m: &Janus) -> usize {
    four_letter(&m.zk, "cons")
        .lines()
        .filter(|l| l.contains("sid=0x") && !l.contains("sid=0x0)"))
        .count()
}

#[test]
fn kafka_traffic_same_on_janus_as_on_zookeeper() {
    kafka_sim_support::build_kafka_sim();
    let reference = std::thread::spawn(zookeeper_reference);
    let tmp = tempfile::tempdir().expect("tempdir");
    let members = start_janus(tmp.path());
    let out = SimRun::start(&connect_string(&members), ARGS).finish(RUN_TIMEOUT);
    eprintln!("Janus: observed {}", out.observed());
    assert_passed("a three-member Janus", &out);
    let reference = reference.join().expect("the run against real ZooKeeper");
    assert_same(&reference, &out);
}

#[test]
fn kafka_traffic_survives_a_member_kill() {
    kafka_sim_support::build_kafka_sim();
    let reference = std::thread::spawn(zookeeper_reference);
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut members = start_janus(tmp.path());
    let mut run = SimRun::start(&connect_string(&members), ARGS);
    assert!(
        run.wait_fraction(1, 3, RUN_TIMEOUT),
        "kafka-sim did not get a third of the way: {:?}",
        run.progress()
    );
    // The member to kill: the leader if the program has sessions there,
    // else the member with the most of them.
    let leader = leader_index(&members);
    let counts: Vec<usize> = members.iter().map(sessions_on).collect();
    let victim = match leader {
        Some(l) if counts[l] > 0 => l,
        _ => (0..members.len())
            .max_by_key(|&i| counts[i])
            .expect("members"),
    };
    assert!(counts[victim] > 0, "no sessions of the program: {counts:?}");
    eprintln!(
        "killing member {} (leader: {}) holding {} of the program's sessions {counts:?} at {:?}",
        victim + 1,
        leader == Some(victim),
        counts[victim],
        run.progress()
    );
    members[victim].kill9();
    let restarted = run.wait_fraction(2, 3, RUN_TIMEOUT);
    eprintln!("restarting member {} at {:?}", victim + 1, run.progress());
    members[victim].spawn();
    let out = run.finish(RUN_TIMEOUT);
    eprintln!("Janus with a kill: observed {}", out.observed());
    assert_passed("a three-member Janus losing a member", &out);
    assert!(restarted, "the program ended before two thirds");
    assert!(
        out.observed()["connection_losses"].as_u64().unwrap_or(0) >= 2,
        "the kill cut no session's connection (the expiry makes one): {}",
        out.observed()
    );
    members[victim].wait_healthy(Duration::from_secs(30));
    let reference = reference.join().expect("the run against real ZooKeeper");
    assert_same(&reference, &out);
}
