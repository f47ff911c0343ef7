//! etcd's Maintenance.MoveLeader on a three-member cluster, driven by the
//! real `etcdctl move-leader` (Debian's etcd-client):
//!
//! - leadership moves to each member in turn; `etcdctl endpoint status`
//!   and `/metrics` name the new leader on every member;
//! - writes issued meanwhile through etcdctl and ZooKeeper all succeed
//!   (etcdctl's retried where an etcd client would see a retriable error;
//!   ZooKeeper's on one connection each, never retried) and none is lost;
//! - a transfer to a stopped member answers etcd's "leader transfer took
//!   too long" within a bound, and the leader stays and serves writes.

#[path = "zk_support.rs"]
mod zk_support;

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use janus_tests::{leader_index, start_cluster, Janus};
use serde_json::Value;
use zk_support::{four_letter, string, Raw};

/// Fast timings: the leader lease a transfer waits out is 600 ms.
const CONFIG: &str = "heartbeat_ms = 50\nelection_timeout_ms = 300\n\
                      [zookeeper]\ntick_ms = 100\nfour_letter_words = [\"*\"]\n";

/// etcdctl (v3 API) against `endpoints`: (exit code, stdout, stderr).
fn ctl(endpoints: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new("timeout")
        .args(["-s", "INT", "30", "etcdctl"])
        .arg(format!("--endpoints={endpoints}"))
        .args(args)
        .env("ETCDCTL_API", "3")
        .stdin(Stdio::null())
        .output()
        .expect("etcdctl (Debian's etcd-client; scripts/deps/etcd.sh)");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `endpoint status` of each member, in `members` order: (member id,
/// the leader it names).
fn status(members: &[Janus]) -> Vec<(u64, u64)> {
    let eps: Vec<&str> = members.iter().map(|m| m.etcd.as_str()).collect();
    let (code, out, err) = ctl(&eps.join(","), &["endpoint", "status", "-w", "json"]);
    assert_eq!(code, 0, "endpoint status: {err}");
    let rows: Value = serde_json::from_str(&out).expect("status json");
    let rows = rows.as_array().expect("array");
    members
        .iter()
        .map(|m| {
            let row = rows
                .iter()
                .find(|r| r["Endpoint"].as_str() == Some(&m.etcd))
                .unwrap_or_else(|| panic!("no status for {}: {out}", m.etcd));
            let id = row["Status"]["header"]["member_id"].as_u64().expect("id");
            let leader = row["Status"]["leader"].as_u64().expect("leader");
            (id, leader)
        })
        .collect()
}

/// Wait until every member's status and `/metrics` name member `want`.
fn wait_everyone_names(members: &[Janus], ids: &[u64], want: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let st = status(members);
        let agree = st.iter().all(|(_, l)| *l == ids[want]);
        if agree && leader_index(members) == Some(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "members do not all name member {} as leader: {st:?}",
            want + 1
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Puts through etcdctl (every endpoint) until `stop`; returns the keys
/// acknowledged and how many attempts failed and were retried.
fn etcd_writer(eps: String, stop: Arc<AtomicBool>) -> JoinHandle<(Vec<String>, usize)> {
    std::thread::spawn(move || {
        let mut acked = Vec::new();
        let mut retries = 0;
        let mut n = 0;
        while !stop.load(Ordering::SeqCst) {
            let key = format!("ml/etcd/{n:05}");
            let mut tries = 0;
            loop {
                let (code, out, err) = ctl(&eps, &["put", &key, "v"]);
                if code == 0 && out.trim() == "OK" {
                    break;
                }
                tries += 1;
                retries += 1;
                assert!(tries < 5, "put {key} failed {tries} times: {out}{err}");
                std::thread::sleep(Duration::from_millis(100));
            }
            acked.push(key);
            n += 1;
        }
        (acked, retries)
    })
}

/// Creates through one ZooKeeper connection to `addr` until `stop`; each
/// must succeed at once. Returns the paths created.
fn zk_writer(addr: String, tag: usize, stop: Arc<AtomicBool>) -> JoinHandle<Vec<String>> {
    std::thread::spawn(move || {
        let mut c = Raw::connect(&addr);
        let mut acked = Vec::new();
        let mut n = 0;
        while !stop.load(Ordering::SeqCst) {
            let path = format!("/ml-zk-{tag}-{n:05}");
            assert_eq!(c.create(&path, 0), 0, "create {path} at {addr}");
            acked.push(path);
            n += 1;
            std::thread::sleep(Duration::from_millis(10));
        }
        acked
    })
}

/// Whether `path` exists, asked at `addr`.
fn zk_exists(c: &mut Raw, path: &str) -> bool {
    let mut b = string(path);
    b.push(0);
    c.call(3, &b).0 == 0
}

#[test]
fn move_leader_to_each_member_and_to_a_stopped_one() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut members = start_cluster(tmp.path(), 3, CONFIG);
    let deadline = Instant::now() + Duration::from_secs(30);
    while members.iter().any(|m| four_letter(&m.zk, "ruok") != "imok") {
        assert!(Instant::now() < deadline, "zookeeper ports not up");
        std::thread::sleep(Duration::from_millis(100));
    }
    let all = members
        .iter()
        .map(|m| m.etcd.as_str())
        .collect::<Vec<_>>()
        .join(",");
    let ids: Vec<u64> = status(&members).iter().map(|(id, _)| *id).collect();

    let stop = Arc::new(AtomicBool::new(false));
    let etcd = etcd_writer(all.clone(), stop.clone());
    let zks: Vec<_> = members
        .iter()
        .enumerate()
        .map(|(i, m)| zk_writer(m.zk.clone(), i, stop.clone()))
        .collect();

    // Around the ring from the current leader: every member is the
    // transferee once.
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(300));
        let from = leader_index(&members).expect("a leader");
        let to = (from + 1) % 3;
        let started = Instant::now();
        let (code, out, err) = ctl(&all, &["move-leader", &format!("{:x}", ids[to])]);
        let took = started.elapsed();
        assert_eq!(
            code,
            0,
            "move-leader {} -> {}: {out}{err}",
            from + 1,
            to + 1
        );
        assert_eq!(
            out.trim(),
            format!(
                "Leadership transferred from {:x} to {:x}",
                ids[from], ids[to]
            ),
            "{err}"
        );
        eprintln!("moved leadership {} -> {} in {took:?}", from + 1, to + 1);
        wait_everyone_names(&members, &ids, to);
    }
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::SeqCst);
    let (etcd_acked, retries) = etcd.join().expect("etcd writer");
    let zk_acked: Vec<String> = zks
        .into_iter()
        .flat_map(|h| h.join().expect("zk writer"))
        .collect();
    eprintln!(
        "{} etcd puts ({retries} retried), {} ZooKeeper creates",
        etcd_acked.len(),
        zk_acked.len()
    );
    assert!(etcd_acked.len() > 3 && zk_acked.len() > 3);

    // Nothing acknowledged was lost, on any member.
    for m in &members {
        let (code, out, err) = ctl(
            &m.etcd,
            &[
                "get",
                "ml/etcd/",
                "--prefix",
                "--keys-only",
                "--consistency=s",
            ],
        );
        assert_eq!(code, 0, "{err}");
        let have: BTreeSet<&str> = out.lines().filter(|l| !l.is_empty()).collect();
        for k in &etcd_acked {
            assert!(have.contains(k.as_str()), "{k} lost at {}", m.etcd);
        }
        let mut c = Raw::connect(&m.zk);
        // A sync first: the member has applied everything acknowledged.
        assert_eq!(c.call(9, &string("/")).0, 0, "sync");
        for p in &zk_acked {
            assert!(zk_exists(&mut c, p), "{p} lost at {}", m.zk);
        }
    }

    // A transfer to a stopped member: etcd's timeout error, in bounded
    // time, with and without writes since it stopped; the leader stays.
    let leader = leader_index(&members).expect("a leader");
    let stopped = (leader + 1) % 3;
    members[stopped].kill9();
    let live = members
        .iter()
        .filter(|m| m.child.is_some())
        .map(|m| m.etcd.as_str())
        .collect::<Vec<_>>()
        .join(",");
    for round in 0..2 {
        let started = Instant::now();
        let (code, out, err) = ctl(&live, &["move-leader", &format!("{:x}", ids[stopped])]);
        let took = started.elapsed();
        assert_ne!(code, 0, "moved leadership to a stopped member: {out}");
        assert!(
            err.contains("leader transfer took too long"),
            "round {round}: {err}"
        );
        assert!(took < Duration::from_secs(10), "took {took:?}");
        eprintln!("transfer to a stopped member refused in {took:?}");
        assert_eq!(leader_index(&members), Some(leader), "the leader changed");
        let (code, out, err) = ctl(&live, &["put", &format!("ml/after/{round}"), "v"]);
        assert_eq!((code, out.trim()), (0, "OK"), "{err}");
    }
    // Still the same leader a while later (no member was left unable or
    // too eager to elect).
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(leader_index(&members), Some(leader), "the leader changed");
    let (code, out, err) = ctl(&live, &["put", "ml/after/last", "v"]);
    assert_eq!((code, out.trim()), (0, "OK"), "{err}");

    // The member comes back and can take the lead.
    members[stopped].spawn();
    members[stopped].wait_healthy(Duration::from_secs(30));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (code, out, err) = ctl(&all, &["move-leader", &format!("{:x}", ids[stopped])]);
        if code == 0 {
            break;
        }
        // It may still be catching up.
        assert!(
            Instant::now() < deadline,
            "move-leader to the restarted member: {out}{err}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    wait_everyone_names(&members, &ids, stopped);
}
