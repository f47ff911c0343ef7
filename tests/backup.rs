//! Backup and restore. A member under load (etcd puts and znode creates
//! from other clients) is backed up by `janus snapshot save` and by real
//! `etcdctl snapshot save`; `janus snapshot status` reads each file; each
//! is restored into a new one-member cluster, and the first also into a
//! new three-member one. Every key (value, revisions, version, lease) and
//! every znode (data, the eleven Stat fields, ACL, read by kazoo) of a
//! restored member equals the source's at the backup's revision, the
//! leases and the live session come along, and the new clusters take
//! writes.

#[path = "zk_support.rs"]
mod zk_support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, GetOptions, PutOptions};
use janus_tests::{free_port, janus_bin, wait_leader, Janus};
use serde_json::Value;
use zk_support::{run_python, string, Raw};

/// Run a command to its end: (success, stdout, stderr).
fn run(cmd: &mut Command, what: &str) -> (bool, String, String) {
    let out = cmd.stdin(Stdio::null()).output().expect(what);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn janus(args: &[&str]) -> (bool, String, String) {
    run(Command::new(janus_bin()).args(args), "run janus")
}

fn etcdctl(endpoint: &str, args: &[&str]) -> (bool, String, String) {
    run(
        Command::new("timeout")
            .args(["-s", "INT", "60", "etcdctl"])
            .arg(format!("--endpoints={endpoint}"))
            .args(args)
            .env("ETCDCTL_API", "3"),
        "etcdctl (Debian's etcd-client; scripts/deps/etcd.sh)",
    )
}

async fn client(addr: &str) -> Client {
    Client::connect([addr], None).await.expect("etcd client")
}

type Row = (Vec<u8>, Vec<u8>, i64, i64, i64, i64);

/// Every key at `rev` (0: the latest) as (key, value, create, mod,
/// version, lease), and the response's revision.
async fn all_keys(addr: &str, rev: i64) -> (Vec<Row>, i64) {
    let mut c = client(addr).await;
    let mut opts = GetOptions::new().with_all_keys();
    if rev > 0 {
        opts = opts.with_revision(rev);
    }
    let r = c.get("", Some(opts)).await.expect("get all");
    let rows = r
        .kvs()
        .iter()
        .map(|kv| {
            (
                kv.key().to_vec(),
                kv.value().to_vec(),
                kv.create_revision(),
                kv.mod_revision(),
                kv.version(),
                kv.lease(),
            )
        })
        .collect();
    (rows, r.header().map_or(0, |h| h.revision()))
}

async fn lease_ids(addr: &str) -> Vec<i64> {
    let mut c = client(addr).await;
    let mut ids: Vec<i64> = c
        .leases()
        .await
        .expect("lease list")
        .leases()
        .iter()
        .map(|l| l.id())
        .collect();
    ids.sort();
    ids
}

async fn seed_etcd(addr: &str) {
    let mut c = client(addr).await;
    for i in 0..200 {
        c.put(format!("/registry/pods/p{i:03}"), vec![b'x'; 100 + i], None)
            .await
            .expect("put");
    }
    for i in 0..50 {
        c.put(format!("/registry/pods/p{i:03}"), "changed", None)
            .await
            .expect("put");
    }
    c.delete("/registry/pods/p199", None).await.expect("delete");
    let lease = c.lease_grant(3600, None).await.expect("grant").id();
    for k in ["/leased/a", "/leased/b"] {
        c.put(k, "l", Some(PutOptions::new().with_lease(lease)))
            .await
            .expect("put with lease");
    }
}

fn zk_dump(addr: &str) -> serde_json::Map<String, Value> {
    let out = run_python("zk_tree.py", &[addr, "dump"], Duration::from_secs(60));
    match serde_json::from_str(out.trim()).expect("dump json") {
        Value::Object(m) => m,
        other => panic!("dump: {other}"),
    }
}

/// The restored tree is the source's tree as of `rev`: the znodes created
/// by then, each exactly as it was (nothing but `/load`'s children changes
/// after the backup, and `/zookeeper/config` names the new members).
fn compare_zk(
    source: &serde_json::Map<String, Value>,
    restored: &serde_json::Map<String, Value>,
    rev: i64,
) {
    let czxid = |n: &Value| n["stat"][0].as_i64().expect("czxid");
    let skip = |p: &str| p == "/zookeeper/config" || p == "/load";
    let mut load_children = 0;
    for (path, node) in source {
        if czxid(node) > rev {
            assert!(
                !restored.contains_key(path),
                "{path} was created after the backup"
            );
            continue;
        }
        if path.starts_with("/load/") {
            load_children += 1;
        }
        if skip(path) {
            continue;
        }
        assert_eq!(restored.get(path), Some(node), "znode {path}");
    }
    for path in restored.keys() {
        assert!(source.contains_key(path), "{path} is not in the source");
    }
    assert_eq!(
        restored["/load"]["stat"][9].as_i64(),
        Some(load_children),
        "/load's numChildren"
    );
    assert!(
        restored["/zookeeper/config"]["data"].is_string(),
        "/zookeeper/config is there"
    );
}

/// What `janus snapshot status -w json` says of `file`.
fn status(file: &Path) -> Value {
    let (ok, out, err) = janus(&[
        "snapshot",
        "status",
        file.to_str().expect("utf-8"),
        "-w",
        "json",
    ]);
    assert!(ok, "snapshot status: {err}");
    serde_json::from_str(out.trim()).expect("status json")
}

#[test]
fn backups_taken_under_load_restore_every_key_and_znode() {
    let tmp = tempfile::tempdir().expect("tmp");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let src = Janus::start(&tmp.path().join("src"), &[]);
    src.wait_healthy(Duration::from_secs(30));
    rt.block_on(seed_etcd(&src.etcd));
    run_python("zk_tree.py", &[&src.zk, "seed"], Duration::from_secs(60));
    // A live session with an ephemeral node: both go into the backup.
    let mut holder = Raw::connect(&src.zk);
    let mut b = string("/app/alive");
    b.extend_from_slice(&[0, 0, 0, 1, b'e']);
    b.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 31]);
    b.extend_from_slice(&string("world"));
    b.extend_from_slice(&string("anyone"));
    b.extend_from_slice(&1i32.to_be_bytes());
    assert_eq!(holder.call(1, &b).0, 0, "create the ephemeral");

    // Load from other clients while the backups are taken.
    let stop = Arc::new(AtomicBool::new(false));
    let zk_load = {
        let (stop, addr) = (stop.clone(), src.zk.clone());
        std::thread::spawn(move || {
            let mut c = Raw::connect(&addr);
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                assert_eq!(c.create(&format!("/load/n{n:06}"), 0), 0, "load create");
                n += 1;
            }
            n
        })
    };
    let etcd_load = {
        let (stop, addr) = (stop.clone(), src.etcd.clone());
        rt.spawn(async move {
            let mut c = client(&addr).await;
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                c.put(format!("/load/k{n:06}"), vec![b'v'; 256], None)
                    .await
                    .expect("load put");
                n += 1;
            }
            n
        })
    };
    std::thread::sleep(Duration::from_millis(800));
    let f1 = tmp.path().join("janus.db");
    let (ok, out, err) = janus(&[
        "snapshot",
        "save",
        f1.to_str().expect("utf-8"),
        "--endpoints",
        &src.etcd,
    ]);
    assert!(ok, "janus snapshot save: {err}");
    assert!(out.contains("Snapshot saved at"), "{out}");
    std::thread::sleep(Duration::from_millis(300));
    let f2 = tmp.path().join("etcdctl.db");
    let (ok, out, err) = etcdctl(
        &src.etcd,
        &["snapshot", "save", f2.to_str().expect("utf-8")],
    );
    assert!(ok, "etcdctl snapshot save: {out}{err}");
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let zk_writes = zk_load.join().expect("zk load");
    let etcd_writes = rt.block_on(etcd_load).expect("etcd load");
    assert!(
        zk_writes > 10 && etcd_writes > 10,
        "load ran: {zk_writes} creates, {etcd_writes} puts"
    );
    let source_tree = zk_dump(&src.zk);
    let source_leases = rt.block_on(lease_ids(&src.etcd));
    let (_, now) = rt.block_on(all_keys(&src.etcd, 0));

    let mut revisions = Vec::new();
    for (name, file) in [("janus", &f1), ("etcdctl", &f2)] {
        let st = status(file);
        let rev = st["revision"].as_i64().expect("revision");
        assert!(
            rev > 0 && rev < now,
            "{name}: taken under load, at {rev} (now {now})"
        );
        assert!(st["sessions"].as_i64() >= Some(2), "{name}: sessions {st}");
        assert_eq!(st["leases"].as_i64(), Some(1), "{name}: leases {st}");
        revisions.push(rev);

        let dir = tmp.path().join(format!("restored-{name}"));
        let peer = format!("127.0.0.1:{}", free_port());
        let (ok, out, err) = janus(&[
            "snapshot",
            "restore",
            file.to_str().expect("utf-8"),
            "--data-dir",
            dir.to_str().expect("utf-8"),
            "--initial-cluster",
            &format!("1={peer}"),
        ]);
        assert!(ok, "{name}: restore: {err}");
        assert!(out.contains(&format!("restored revision {rev}")), "{out}");
        // A second restore into the same place is refused.
        let (ok, _, err) = janus(&[
            "snapshot",
            "restore",
            file.to_str().expect("utf-8"),
            "--data-dir",
            dir.to_str().expect("utf-8"),
        ]);
        assert!(
            !ok && err.contains("exists"),
            "{name}: restore over a member: {err}"
        );

        let restored = Janus::start_with_peer(&dir, &peer, &[]);
        restored.wait_healthy(Duration::from_secs(30));
        let (want, _) = rt.block_on(all_keys(&src.etcd, rev));
        let (got, got_rev) = rt.block_on(all_keys(&restored.etcd, 0));
        assert!(
            got_rev >= rev,
            "{name}: restored at {got_rev}, backup at {rev}"
        );
        assert_eq!(got.len(), want.len(), "{name}: key count");
        assert!(
            got == want,
            "{name}: keys differ from the source's at {rev}"
        );
        assert_eq!(
            rt.block_on(lease_ids(&restored.etcd)),
            source_leases,
            "{name}: leases"
        );
        compare_zk(&source_tree, &zk_dump(&restored.zk), rev);
        // The restored cluster takes writes.
        rt.block_on(async {
            client(&restored.etcd)
                .await
                .put("after", "restore", None)
                .await
                .expect("put after restore");
        });
    }
    assert!(
        revisions[0] < revisions[1],
        "the second backup came later: {revisions:?}"
    );
    eprintln!(
        "backups at revisions {revisions:?} of {now}, under {zk_writes} creates and {etcd_writes} puts"
    );

    // The same file makes a three-member cluster.
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
            let dir = tmp.path().join(format!("three-{}", i + 1));
            let (ok, _, err) = janus(&[
                "snapshot",
                "restore",
                f1.to_str().expect("utf-8"),
                "--data-dir",
                dir.to_str().expect("utf-8"),
                "--initial-cluster",
                &initial,
            ]);
            assert!(ok, "restore member {}: {err}", i + 1);
            let id = (i + 1).to_string();
            Janus::start_with_peer(
                &dir,
                &peers[i],
                &["--node-id", &id, "--initial-cluster", &initial],
            )
        })
        .collect();
    let leader = wait_leader(&members);
    for m in &members {
        m.wait_healthy(Duration::from_secs(30));
    }
    let (want, _) = rt.block_on(all_keys(&src.etcd, revisions[0]));
    for (i, m) in members.iter().enumerate() {
        let (got, _) = rt.block_on(all_keys(&m.etcd, 0));
        assert!(got == want, "member {} of three: keys differ", i + 1);
    }
    let follower = &members[(leader + 1) % 3];
    compare_zk(&source_tree, &zk_dump(&follower.zk), revisions[0]);
    rt.block_on(async {
        client(&follower.etcd)
            .await
            .put("three", "members", None)
            .await
            .expect("put through a follower");
    });
    drop(holder);
}
