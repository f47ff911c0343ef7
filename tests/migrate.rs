//! `janus migrate` from a real ZooKeeper (Debian's package) and a real etcd
//! into Janus while writers keep changing both sources during the copy and
//! while it follows them. After the writers stop and the migration is cut
//! over (SIGINT), its report must say identical, and the test's own reads
//! (independent clients: zookeeper-client and etcd-client) must find the
//! same znodes (data, ACLs) and keys (values, leases) on both sides.

#[path = "zk_support.rs"]
mod zk_support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{GetOptions, PutOptions};
use janus_tests::{free_port, janus_bin};
use zk_support::{start_janus, RealZk};
use zookeeper_client as zk;

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
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn etcd (Debian's etcd-server: scripts/deps/etcd.sh)");
        Etcd {
            child,
            endpoint: client,
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn etcd_client(ep: &str) -> etcd_client::Client {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(mut c) = etcd_client::Client::connect([ep], None).await {
            if c.get("x", None).await.is_ok() {
                return c;
            }
        }
        assert!(Instant::now() < deadline, "etcd at {ep} not answering");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

const AUTH: &str = "mig:secret";

async fn zk_client(addr: &str) -> zk::Client {
    zk::Client::connector()
        .with_session_timeout(Duration::from_secs(20))
        .with_auth("digest", AUTH.as_bytes())
        .connect(addr)
        .await
        .expect("zookeeper connect")
}

fn open() -> zk::CreateOptions<'static> {
    zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all())
}

/// ACL for our own digest user and world read.
fn restricted() -> Vec<zk::Acl> {
    vec![
        zk::Acl::new(zk::Permission::ALL, zk::AuthId::new("auth", "")),
        zk::Acl::new(zk::Permission::READ, zk::AuthId::new("world", "anyone")),
    ]
}

async fn seed_zk(c: &zk::Client) {
    c.create("/app", b"root", &open())
        .await
        .expect("create /app");
    for i in 0..200 {
        let p = format!("/app/n{i:03}");
        c.create(&p, format!("v{i}").as_bytes(), &open())
            .await
            .expect("create");
        for j in 0..4 {
            c.create(&format!("{p}/c{j}"), b"", &open())
                .await
                .expect("create child");
        }
    }
    let seq = zk::CreateMode::PersistentSequential.with_acls(zk::Acls::anyone_all());
    for _ in 0..5 {
        c.create("/app/seq-", b"s", &seq).await.expect("sequential");
    }
    let acl = restricted();
    let locked = zk::CreateMode::Persistent.with_acls(zk::Acls::new(&acl));
    c.create("/app/locked", b"secret", &locked)
        .await
        .expect("locked");
    c.create("/app/locked/inner", b"in", &locked)
        .await
        .expect("locked child");
    let eph = zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all());
    c.create("/app/live", b"mine", &eph)
        .await
        .expect("ephemeral");
    // Kafka-style notification sequences: the consumer deletes what it
    // has processed, so the parent's cversion runs ahead of its children.
    c.create("/app/changes", b"", &open())
        .await
        .expect("changes");
    for i in 0..30 {
        let (_, n) = c
            .create("/app/changes/change_", b"c", &seq)
            .await
            .expect("sequential change");
        if i < 25 {
            c.delete(&format!("/app/changes/change_{n}"), None)
                .await
                .expect("consume change");
        }
    }
}

async fn seed_etcd(c: &mut etcd_client::Client) -> (i64, i64) {
    for i in 0..2000 {
        c.put(format!("/reg/k{i:04}"), format!("value-{i}"), None)
            .await
            .expect("put");
    }
    let a = c.lease_grant(120, None).await.expect("grant").id();
    let b = c.lease_grant(90, None).await.expect("grant").id();
    for i in 0..5 {
        c.put(
            format!("/leased/a{i}"),
            "a",
            Some(PutOptions::new().with_lease(a)),
        )
        .await
        .expect("put leased");
        c.put(
            format!("/leased/b{i}"),
            "b",
            Some(PutOptions::new().with_lease(b)),
        )
        .await
        .expect("put leased");
    }
    (a, b)
}

/// Writers on both sources until `stop`: creates, sets, deletes, puts,
/// deletes, a lease granted and one revoked.
async fn write_zk(c: zk::Client, stop: Arc<AtomicBool>) -> usize {
    let mut n = 0;
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        let p = format!("/app/w{i:05}");
        c.create(&p, b"new", &open()).await.expect("writer create");
        c.set_data(
            &format!("/app/n{:03}", i % 40),
            format!("w{i}").as_bytes(),
            None,
        )
        .await
        .expect("writer set");
        if i % 3 == 0 {
            c.delete(&p, None).await.expect("writer delete");
        }
        if i == 10 {
            c.delete("/app/n039/c3", None).await.expect("delete child");
        }
        n += 3;
        i += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    n
}

async fn write_etcd(mut c: etcd_client::Client, stop: Arc<AtomicBool>, revoke: i64) -> usize {
    let mut n = 0;
    let mut i = 0;
    let lease = c.lease_grant(100, None).await.expect("grant").id();
    while !stop.load(Ordering::Relaxed) {
        c.put(format!("/reg/w{i:05}"), format!("w{i}"), None)
            .await
            .expect("put");
        c.put(
            format!("/reg/k{:04}", i % 300),
            format!("changed-{i}"),
            None,
        )
        .await
        .expect("put");
        if i % 4 == 0 {
            c.delete(format!("/reg/w{i:05}"), None)
                .await
                .expect("delete");
        }
        if i % 10 == 0 {
            c.put(
                format!("/leased/w{i}"),
                "w",
                Some(PutOptions::new().with_lease(lease)),
            )
            .await
            .expect("put leased");
        }
        if i == 20 {
            c.lease_revoke(revoke).await.expect("revoke");
        }
        n += 3;
        i += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    n
}

/// path -> (data, ACL) of every non-ephemeral znode under `root`, and
/// path -> children ever created there ((cversion + numChildren) / 2:
/// ZooKeeper's cversion counts creates and deletes; sequential names
/// count creates).
type ZDump = (BTreeMap<String, (Vec<u8>, String)>, BTreeMap<String, i32>);

async fn zk_dump(c: &zk::Client, root: &str) -> ZDump {
    let mut out = BTreeMap::new();
    let mut cversions = BTreeMap::new();
    let mut todo = vec![root.to_string()];
    while let Some(p) = todo.pop() {
        let (data, stat) = c.get_data(&p).await.expect("get_data");
        if stat.ephemeral_owner != 0 {
            continue;
        }
        let (acl, _) = c.get_acl(&p).await.expect("get_acl");
        let acl = format!("{acl:?}");
        for ch in c.list_children(&p).await.expect("children") {
            todo.push(format!("{p}/{ch}"));
        }
        cversions.insert(p.clone(), (stat.cversion + stat.num_children) / 2);
        out.insert(p, (data, acl));
    }
    (out, cversions)
}

async fn etcd_dump(c: &mut etcd_client::Client) -> BTreeMap<Vec<u8>, (Vec<u8>, i64)> {
    let resp = c
        .get(vec![0], Some(GetOptions::new().with_from_key()))
        .await
        .expect("get all");
    resp.kvs()
        .iter()
        .map(|kv| (kv.key().to_vec(), (kv.value().to_vec(), kv.lease())))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn migrates_real_zookeeper_and_etcd_with_writes_during_the_copy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let real_zk = RealZk::start();
    let etcd = Etcd::start(dir.path());
    let janus = start_janus(&dir.path().join("janus"), "");

    let zsrc = zk_client(&real_zk.addr).await;
    seed_zk(&zsrc).await;
    let mut esrc = etcd_client(&etcd.endpoint).await;
    let (_lease_a, lease_b) = seed_etcd(&mut esrc).await;

    let stop = Arc::new(AtomicBool::new(false));
    let zw = tokio::spawn(write_zk(zk_client(&real_zk.addr).await, stop.clone()));
    let ew = tokio::spawn(write_etcd(esrc.clone(), stop.clone(), lease_b));

    let mut child = Command::new(janus_bin())
        .args(["migrate", "--from-zookeeper"])
        .arg(format!("{}/app", real_zk.addr))
        .args(["--from-etcd", &etcd.endpoint])
        .args(["--to-zookeeper", &janus.zk, "--to-etcd", &janus.etcd])
        .args(["--zk-auth", &format!("digest:{AUTH}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn janus migrate");
    // Both parts say when they follow; the writers have been running all
    // through the copy and go on a little longer.
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("migrate: {line}");
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut following = 0;
    while following < 2 {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .expect("migrate never said it follows");
        if line.contains("following") {
            following += 1;
        }
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    let zk_writes = zw.await.expect("zk writer");
    let etcd_writes = ew.await.expect("etcd writer");
    assert!(
        zk_writes > 30 && etcd_writes > 30,
        "{zk_writes} {etcd_writes}"
    );

    // SAFETY: signalling our own child by pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let mut out = String::new();
    let mut stdout = child.stdout.take().expect("stdout");
    let waited = tokio::task::spawn_blocking(move || {
        let _ = stdout.read_to_string(&mut out);
        (child.wait(), out)
    });
    let (status, report) = tokio::time::timeout(Duration::from_secs(120), waited)
        .await
        .expect("migrate did not finish after SIGINT")
        .expect("join");
    eprintln!("{report}");
    assert!(report.contains("result: identical"), "{report}");
    assert!(status.expect("wait").success());
    assert!(report.contains("1 ephemeral"), "{report}");
    // Both parts followed changes made after their copy.
    let followed: Vec<usize> = report
        .lines()
        .filter_map(|l| {
            l.split(" changes followed")
                .next()
                .filter(|_| l.contains("changes followed"))
        })
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    assert_eq!(followed.len(), 2, "{report}");
    assert!(followed.iter().all(|n| *n > 0), "{report}");

    // Our own reads of both sides.
    let zj = zk_client(&janus.zk).await;
    let (a, a_cv) = zk_dump(&zsrc, "/app").await;
    let (b, b_cv) = zk_dump(&zj, "/app").await;
    assert!(a.len() > 1000, "{}", a.len());
    let differ: Vec<String> = a
        .iter()
        .filter(|(p, v)| b.get(*p) != Some(*v))
        .map(|(p, v)| format!("{p}: source {v:?}, janus {:?}", b.get(p)))
        .chain(
            b.keys()
                .filter(|p| !a.contains_key(*p))
                .map(|p| format!("{p}: only in janus")),
        )
        .take(10)
        .collect();
    assert!(differ.is_empty(), "znodes differ:\n{}", differ.join("\n"));
    assert!(a.contains_key("/app/locked/inner"));
    assert!(
        !b.contains_key("/app/live"),
        "the ephemeral stays with its session"
    );
    // Every znode has had as many children created as in the source, so
    // sequential names go on from where the source was (Kafka's
    // notification sequences).
    let differ: Vec<String> = a_cv
        .iter()
        .filter(|(p, n)| b_cv.get(*p) != Some(*n))
        .map(|(p, n)| format!("{p}: source {n}, janus {:?}", b_cv.get(p)))
        .take(10)
        .collect();
    assert!(
        differ.is_empty(),
        "children created per znode:\n{}",
        differ.join("\n")
    );
    let seq = zk::CreateMode::PersistentSequential.with_acls(zk::Acls::anyone_all());
    let (_, in_source) = zsrc
        .create("/app/changes/change_", b"n", &seq)
        .await
        .expect("seq");
    let (_, in_janus) = zj
        .create("/app/changes/change_", b"n", &seq)
        .await
        .expect("seq");
    assert_eq!(in_source.to_string(), "0000000030");
    assert_eq!(in_janus.to_string(), in_source.to_string());
    let mut ej = etcd_client(&janus.etcd).await;
    let a = etcd_dump(&mut esrc).await;
    let b = etcd_dump(&mut ej).await;
    assert!(a.len() > 2000, "{}", a.len());
    assert_eq!(a, b, "keys differ");
    assert!(
        !a.keys().any(|k| k.starts_with(b"/leased/b")),
        "revoked lease's keys are gone"
    );
    let mut ids: Vec<i64> = esrc
        .leases()
        .await
        .expect("leases")
        .leases()
        .iter()
        .map(|l| l.id())
        .collect();
    let mut jids: Vec<i64> = ej
        .leases()
        .await
        .expect("leases")
        .leases()
        .iter()
        .map(|l| l.id())
        .collect();
    ids.sort();
    jids.sort();
    assert_eq!(ids, jids);
    let ttl = ej.lease_time_to_live(ids[0], None).await.expect("ttl");
    assert!(ttl.ttl() > 0);
}
