//! The differential suite: the same scripted scenarios run through kazoo
//! against real ZooKeeper (Debian's package, started here on a free
//! loopback port) and against Janus; the normalized results (errors, Stat
//! versions and counts, relative zxid order, children, ACLs, sequential
//! names, watch events) must agree scenario for scenario; then kazoo's
//! recipes (locks, election, counter, barriers, queues, party, semaphore,
//! TreeCache, watchers) must behave the same on both.

#[path = "zk_support.rs"]
mod zk_support;

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;
use zk_support::{run_python, start_janus, RealZk};

#[test]
fn kazoo_scenarios_agree_with_real_zookeeper() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let janus = start_janus(tmp.path(), "");
    let real = RealZk::start();

    // Both servers at once: the scenarios are independent per server.
    let (ja, za) = (janus.zk.clone(), real.addr.clone());
    let j = std::thread::spawn(move || run_python("zk_diff.py", &[&ja], Duration::from_secs(240)));
    let z = std::thread::spawn(move || run_python("zk_diff.py", &[&za], Duration::from_secs(240)));
    let j: BTreeMap<String, Value> =
        serde_json::from_str(&j.join().expect("janus run")).expect("janus json");
    let z: BTreeMap<String, Value> =
        serde_json::from_str(&z.join().expect("zk run")).expect("zk json");

    assert!(z.len() >= 60, "only {} scenarios ran", z.len());
    let mut differ = Vec::new();
    for (name, want) in &z {
        assert!(
            want.get("crash").is_none(),
            "scenario {name} crashed against real ZooKeeper: {want}"
        );
        let got = j.get(name);
        if got != Some(want) {
            differ.push(format!(
                "== {name}\n real zookeeper: {}\n janus:          {}",
                want,
                got.map(|v| v.to_string()).unwrap_or_default()
            ));
        }
    }
    assert!(
        differ.is_empty(),
        "{} of {} scenarios differ:\n{}",
        differ.len(),
        z.len(),
        differ.join("\n")
    );
    println!("{} scenarios agree", z.len());

    // kazoo's recipes on the same two servers (they work under /r).
    let (ja, za) = (janus.zk.clone(), real.addr.clone());
    let j =
        std::thread::spawn(move || run_python("zk_recipes.py", &[&ja], Duration::from_secs(180)));
    let z =
        std::thread::spawn(move || run_python("zk_recipes.py", &[&za], Duration::from_secs(180)));
    let j: BTreeMap<String, Value> =
        serde_json::from_str(&j.join().expect("janus run")).expect("janus json");
    let z: BTreeMap<String, Value> =
        serde_json::from_str(&z.join().expect("zk run")).expect("zk json");
    assert!(z.len() >= 12, "only {} recipes ran", z.len());
    let mut differ = Vec::new();
    for (name, want) in &z {
        assert!(
            want.get("crash").is_none(),
            "recipe {name} crashed against real ZooKeeper: {want}"
        );
        if j.get(name) != Some(want) {
            differ.push(format!(
                "== {name}\n real zookeeper: {want}\n janus:          {}",
                j.get(name).map(|v| v.to_string()).unwrap_or_default()
            ));
        }
    }
    assert!(
        differ.is_empty(),
        "{} of {} recipes differ:\n{}",
        differ.len(),
        z.len(),
        differ.join("\n")
    );
    println!("{} recipes agree", z.len());
}
