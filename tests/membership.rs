//! Membership changes through both personalities onto the one Raft
//! membership, driven by the real tools (Debian's etcdctl and zkCli.sh):
//!
//! - etcd: `member add --learner`, the new member started with
//!   `--initial-cluster-state existing` catches up from a snapshot (the
//!   log was purged) and serves reads at the cluster's revision; `member
//!   promote`; etcd's errors; `member remove`, after which the removed
//!   member stops; `member list` after every step.
//! - ZooKeeper: `reconfig -add` of a started member, `config` (getConfig)
//!   and `/zookeeper/config` kept true, reconfig's errors (NOAUTH without
//!   the super user, BADARGUMENTS, NEWCONFIGNOQUORUM), `reconfig -remove`,
//!   after which the removed member stops.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use janus_core::{Command as Cmd, PutRequest};
use janus_raft::{Query, QueryResult};
use janus_tests::tools::zk_cli;
use janus_tests::{free_port, Janus};
use serde_json::Value;

/// `super:secret`, as ZooKeeper's superDigest wants it.
const SUPER_DIGEST: &str = "super:lK75jTNcA+U9vtVEw5vB51mj/w4=";

/// A member's config: fast timings, a small snapshot interval with no log
/// kept behind it (a new member must catch up from a snapshot), reconfig
/// on, and the member's etcd name.
fn member_config(dir: &Path, name: &str) -> String {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!(
            "heartbeat_ms = 50\nelection_timeout_ms = 300\nsnapshot_entries = 50\nlog_keep_entries = 0\n\
             [etcd]\nname = \"{name}\"\n\
             [zookeeper]\nreconfig_enabled = true\nsuper_digest = \"{SUPER_DIGEST}\"\n"
        ),
    )
    .expect("config");
    path.to_str().expect("utf-8").to_string()
}

fn start_cluster(tmp: &Path) -> (Vec<Janus>, String) {
    let peers: Vec<String> = (0..3)
        .map(|_| format!("127.0.0.1:{}", free_port()))
        .collect();
    let initial = peers
        .iter()
        .enumerate()
        .map(|(i, p)| format!("{}={p}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    let members: Vec<Janus> = (0..3)
        .map(|i| {
            let id = (i + 1).to_string();
            let cfg = member_config(tmp, &format!("m{id}"));
            let args = [
                "--config",
                &cfg,
                "--node-id",
                &id,
                "--initial-cluster",
                &initial,
            ];
            Janus::start_with_peer(&tmp.join(format!("m{id}")), &peers[i], &args)
        })
        .collect();
    for m in &members {
        m.wait_healthy(Duration::from_secs(30));
    }
    (members, initial)
}

/// Run etcdctl (v3 API) against `endpoint`: (exit code, stdout, stderr).
fn ctl(endpoint: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new("timeout")
        .args(["-s", "INT", "30", "etcdctl"])
        .arg(format!("--endpoints={endpoint}"))
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

/// `member list -w json`: (hex id, name, peer URLs, client URLs, learner).
fn member_list(endpoint: &str) -> Vec<(String, String, Vec<String>, Vec<String>, bool)> {
    let (code, out, err) = ctl(endpoint, &["member", "list", "-w", "json"]);
    assert_eq!(code, 0, "member list: {err}");
    let v: Value = serde_json::from_str(&out).expect("member list json");
    let strs = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut out: Vec<_> = v["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| {
            (
                format!("{:x}", m["ID"].as_u64().expect("ID")),
                m["name"].as_str().unwrap_or_default().to_string(),
                strs(&m["peerURLs"]),
                strs(&m["clientURLs"]),
                m["isLearner"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    out.sort_by(|a, b| a.1.cmp(&b.1));
    out
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Wait for the process to exit by itself; its exit status.
fn wait_exit(m: &mut Janus, timeout: Duration) -> std::process::ExitStatus {
    let mut c = m.child.take().expect("running");
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(st) = c.try_wait().expect("wait") {
            return st;
        }
        if Instant::now() > deadline {
            let _ = c.kill();
            let log = std::fs::read_to_string(&m.log).unwrap_or_default();
            panic!("removed member still running; log:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

async fn revision(m: &Janus, linearizable: bool) -> i64 {
    match m
        .query(&Query::Revision, linearizable)
        .await
        .expect("query")
    {
        QueryResult::Revision { revision, .. } => revision,
        r => panic!("{r:?}"),
    }
}

fn put(key: &str, value: &str) -> Cmd {
    Cmd::Put(PutRequest {
        key: key.into(),
        value: value.into(),
        ..Default::default()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_member_add_promote_remove() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (members, initial) = start_cluster(tmp.path());
    let ep = members[0].etcd.clone();

    // Every initial member publishes its name and client URL.
    wait_until("three started members", Duration::from_secs(20), || {
        let l = member_list(&ep);
        l.len() == 3 && l.iter().all(|m| !m.1.is_empty() && !m.3.is_empty())
    });
    let list = member_list(&ep);
    for (i, m) in list.iter().enumerate() {
        assert_eq!(m.1, format!("m{}", i + 1));
        assert_eq!(m.2, vec![format!("http://{}", members[i].peer)]);
        assert_eq!(m.3, vec![format!("http://{}", members[i].etcd)]);
        assert!(!m.4);
    }

    // Enough writes that the log behind the latest snapshot is purged.
    for n in 0..200 {
        members[n % 3]
            .propose(&put(&format!("k{n}"), &format!("v{n}")))
            .await
            .expect("put");
    }

    // etcd's errors for bad requests.
    let dup = format!("--peer-urls=http://{}", members[1].peer);
    let (code, _, err) = ctl(&ep, &["member", "add", "x", &dup]);
    assert_ne!(code, 0);
    assert!(
        err.contains("etcdserver: Peer URLs already exists"),
        "{err}"
    );
    let (code, _, err) = ctl(&ep, &["member", "remove", "1234abcd"]);
    assert_ne!(code, 0);
    assert!(err.contains("etcdserver: member not found"), "{err}");
    let (code, _, err) = ctl(&ep, &["member", "promote", &list[1].0]);
    assert_ne!(code, 0);
    assert!(
        err.contains("etcdserver: can only promote a learner member"),
        "{err}"
    );

    // member add --learner, through a follower or the leader alike.
    let peer4 = format!("127.0.0.1:{}", free_port());
    let url4 = format!("http://{peer4}");
    let (code, out, err) = ctl(
        &members[1].etcd,
        &[
            "member",
            "add",
            "m4",
            &format!("--peer-urls={url4}"),
            "--learner",
        ],
    );
    assert_eq!(code, 0, "member add: {err}");
    assert!(out.contains("ETCD_NAME=\"m4\""), "{out}");
    assert!(
        out.contains("ETCD_INITIAL_CLUSTER_STATE=\"existing\""),
        "{out}"
    );
    let id4 = out
        .split_whitespace()
        .nth(1)
        .expect("Member <id> added")
        .to_string();
    let list = member_list(&ep);
    assert_eq!(list.len(), 4);
    // Not started yet: no name, no client URLs, a learner.
    let new = list.iter().find(|m| m.0 == id4).expect("new member listed");
    assert_eq!(
        (new.1.as_str(), &new.2, new.3.is_empty(), new.4),
        ("", &vec![url4.clone()], true, true)
    );
    // The cluster allows one learner (etcd's --experimental-max-learners).
    let other = format!("--peer-urls=http://127.0.0.1:{}", free_port());
    let (code, _, err) = ctl(&ep, &["member", "add", "m5", &other, "--learner"]);
    assert_ne!(code, 0);
    assert!(
        err.contains("etcdserver: too many learner members in cluster"),
        "{err}"
    );

    // Not started, so not in sync: etcd refuses to promote it.
    let (code, _, err) = ctl(&ep, &["member", "promote", &id4]);
    assert_ne!(code, 0);
    assert!(
        err.contains("etcdserver: can only promote a learner member which is in sync with leader"),
        "{err}"
    );
    // MemberUpdate of its peer URLs (to the same address: it keeps them).
    let (code, out, err) = ctl(
        &ep,
        &["member", "update", &id4, &format!("--peer-urls={url4}")],
    );
    assert_eq!(code, 0, "member update: {err}");
    assert!(out.contains(&format!("Member {id4} updated")), "{out}");
    // Start it: it learns its id from the cluster, catches up from a
    // snapshot, and serves reads at the cluster's revision.
    let cfg4 = member_config(tmp.path(), "m4");
    let mut m4 = Janus::start_with_peer(
        &tmp.path().join("m4"),
        &peer4,
        &[
            "--config",
            &cfg4,
            "--initial-cluster-state",
            "existing",
            "--initial-cluster",
            &initial,
        ],
    );
    m4.wait_healthy(Duration::from_secs(30));
    let want = revision(&members[0], true).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while revision(&m4, false).await < want {
        assert!(Instant::now() < deadline, "new member did not catch up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = std::fs::read_to_string(&m4.log).expect("log");
    assert!(
        log.contains("installed snapshot"),
        "caught up from a snapshot"
    );
    let (code, out, err) = ctl(&m4.etcd, &["get", "k199", "--consistency=s"]);
    assert_eq!((code, out.as_str()), (0, "k199\nv199\n"), "{err}");
    let (code, out, _) = ctl(&m4.etcd, &["get", "k0"]);
    assert_eq!((code, out.as_str()), (0, "k0\nv0\n"));
    wait_until("m4 published", Duration::from_secs(10), || {
        member_list(&ep)
            .iter()
            .any(|m| m.0 == id4 && m.1 == "m4" && m.3 == vec![format!("http://{}", m4.etcd)])
    });

    // Promote the caught-up learner.
    let (code, out, err) = ctl(&ep, &["member", "promote", &id4]);
    assert_eq!(code, 0, "promote: {err}");
    assert!(out.contains(&format!("Member {id4} promoted")), "{out}");
    let list = member_list(&m4.etcd);
    assert_eq!(list.len(), 4);
    assert!(list.iter().all(|m| !m.4), "no learners left: {list:?}");
    // Writes through the new voter.
    let (code, _, err) = ctl(&m4.etcd, &["put", "from4", "x"]);
    assert_eq!(code, 0, "{err}");
    let (_, out, _) = ctl(&ep, &["get", "from4"]);
    assert_eq!(out, "from4\nx\n");

    // Remove it: the cluster goes back to three, the removed member stops.
    let (code, out, err) = ctl(&ep, &["member", "remove", &id4]);
    assert_eq!(code, 0, "remove: {err}");
    assert!(out.contains(&format!("Member {id4} removed")), "{out}");
    assert_eq!(member_list(&ep).len(), 3);
    let st = wait_exit(&mut m4, Duration::from_secs(20));
    assert!(st.success(), "removed member exits cleanly: {st:?}");
    let log = std::fs::read_to_string(&m4.log).expect("log");
    assert!(log.contains("the member has been permanently removed from the cluster"));
    // The rest carry on.
    let (code, _, err) = ctl(&ep, &["put", "after", "y"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = ctl(&ep, &["member", "remove", &id4]);
    assert_ne!(code, 0);
    assert!(err.contains("etcdserver: member not found"), "{err}");
}

/// The `server.N=...` lines and the version line of a config text.
fn config_lines(out: &str) -> Vec<String> {
    out.lines()
        .map(str::trim)
        .filter(|l| l.starts_with("server.") || l.starts_with("version="))
        .map(String::from)
        .collect()
}

fn server_line(id: usize, m: &Janus, role: &str) -> String {
    let (host, port) = m.peer.rsplit_once(':').expect("host:port");
    format!("server.{id}={host}:{port}:{port}:{role};{}", m.zk)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zkcli_reconfig_add_remove() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (members, initial) = start_cluster(tmp.path());
    let zk1 = members[0].zk.clone();
    let three: Vec<String> = (0..3)
        .map(|i| server_line(i + 1, &members[i], "participant"))
        .collect();
    // Once every member has published its client address, the config
    // lists all three.
    wait_until(
        "config lists three members",
        Duration::from_secs(30),
        || {
            let out = zk_cli(&zk1, "config");
            config_lines(&out)[..].starts_with(&three[..])
        },
    );
    let before = zk_cli(&zk1, "create /before b");
    assert!(before.contains("Created /before"), "{before}");

    // ZooKeeper's way: start the new server, then reconfig it in.
    let peer4 = format!("127.0.0.1:{}", free_port());
    let cfg4 = member_config(tmp.path(), "m4");
    let mut m4 = Janus::start_with_peer(
        &tmp.path().join("m4"),
        &peer4,
        &[
            "--config",
            &cfg4,
            "--node-id",
            "4",
            "--initial-cluster-state",
            "existing",
            "--initial-cluster",
            &initial,
        ],
    );
    let line4 = server_line(4, &m4, "participant");
    let (h4, p4) = peer4.rsplit_once(':').expect("addr");
    let joining = format!("server.4={h4}:{p4}:{p4}:participant;{}", m4.zk);
    // Joiners that are not running: no synced quorum of seven.
    let ghosts: Vec<String> = (5..8)
        .map(|i| {
            let p = free_port();
            format!(
                "server.{i}=127.0.0.1:{p}:{p}:participant;127.0.0.1:{}",
                free_port()
            )
        })
        .collect();
    let script = format!(
        "reconfig -add {joining}\n\
         addauth digest super:secret\n\
         reconfig -remove 1,2,3\n\
         reconfig -add {}\n\
         reconfig -add {joining}\n\
         config\n",
        ghosts.join(",")
    );
    let out = zk_cli(&zk1, &script);
    // zkCli's texts for NOAUTH (no super user yet), BADARGUMENTS (one
    // participant left) and NEWCONFIGNOQUORUM (three joiners not running).
    assert!(out.contains("Insufficient permission : "), "{out}");
    assert!(out.contains("Arguments are not valid : "), "{out}");
    assert!(
        out.contains("No quorum of new config is connected and up-to-date"),
        "{out}"
    );
    assert!(out.contains("Committed new configuration:"), "{out}");
    let lines = config_lines(&out);
    let mut want = three.clone();
    want.push(line4.clone());
    assert!(
        lines.windows(4).any(|w| w == &want[..]),
        "reconfig answers the new config: {out}"
    );

    // The new member catches up and serves ZooKeeper reads.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = zk_cli(&m4.zk, "get /before");
        if out.lines().any(|l| l.trim() == "b") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "m4 does not serve /before: {out}"
        );
    }
    // getConfig at any member tells the same: four participants.
    let out = zk_cli(&m4.zk, "config");
    assert_eq!(config_lines(&out)[..4], want[..], "{out}");
    let out = zk_cli(&members[2].zk, "get /zookeeper/config");
    assert_eq!(config_lines(&out)[..4], want[..], "{out}");
    let (code, out, _) = ctl(&members[0].etcd, &["member", "list"]);
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), 4, "{out}");

    // reconfig -remove 4: back to three, and member 4 stops serving.
    let out = zk_cli(&zk1, "addauth digest super:secret\nreconfig -remove 4\n");
    let lines = config_lines(&out);
    assert!(
        lines.windows(3).any(|w| w == &three[..]) && !lines.iter().any(|l| l == &line4),
        "{out}"
    );
    let st = wait_exit(&mut m4, Duration::from_secs(20));
    assert!(st.success(), "{st:?}");
    let out = zk_cli(&zk1, "config");
    let lines = config_lines(&out);
    assert_eq!(lines[..3], three[..], "{out}");
    let version = lines.get(3).cloned().unwrap_or_default();
    assert!(
        version.starts_with("version=") && version != "version=0",
        "{out}"
    );
    let (_, out, _) = ctl(&members[0].etcd, &["member", "list"]);
    assert_eq!(out.lines().count(), 3, "{out}");
}
