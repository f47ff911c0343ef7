//! The real binary keeps every acknowledged write, the revision clock,
//! sessions and leases across SIGKILL and restart (both namespaces).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use janus_core::{
    Acl, Command, CreateMode, DeleteRangeRequest, Lease, PutRequest, RangeRequest, Response, Stat,
    ZkOp,
};
use janus_raft::{Query, QueryResult};
use janus_tests::Janus;

const SESSION: i64 = 0x0100_0000_0000_0001;
const LEASE: i64 = 77;

#[derive(Debug, PartialEq)]
struct Dump {
    revision: i64,
    compacted: i64,
    kvs: Vec<janus_core::KeyValue>,
    znodes: BTreeMap<String, (Option<Vec<u8>>, Stat)>,
    leases: Vec<Lease>,
}

async fn dump(j: &Janus) -> Dump {
    let QueryResult::Revision {
        revision,
        compacted,
    } = j.query(&Query::Revision, true).await.unwrap()
    else {
        panic!()
    };
    let all = RangeRequest {
        key: vec![0],
        range_end: vec![0],
        ..Default::default()
    };
    let QueryResult::KvRange(Ok(r)) = j.query(&Query::KvRange(all), false).await.unwrap() else {
        panic!()
    };
    let mut znodes = BTreeMap::new();
    let mut todo = vec!["/".to_string()];
    while let Some(p) = todo.pop() {
        let QueryResult::ZkNode(Some(n)) = j.query(&Query::ZkNode(p.clone()), false).await.unwrap()
        else {
            panic!()
        };
        znodes.insert(p.clone(), n);
        let QueryResult::ZkChildren(Some(children)) =
            j.query(&Query::ZkChildren(p.clone()), false).await.unwrap()
        else {
            panic!()
        };
        for c in children {
            todo.push(if p == "/" {
                format!("/{c}")
            } else {
                format!("{p}/{c}")
            });
        }
    }
    let QueryResult::Leases(ids) = j.query(&Query::Leases, false).await.unwrap() else {
        panic!()
    };
    let mut leases = Vec::new();
    for id in ids {
        let QueryResult::Lease(Some(l)) = j.query(&Query::Lease(id), false).await.unwrap() else {
            panic!()
        };
        leases.push(l);
    }
    Dump {
        revision,
        compacted,
        kvs: r.kvs,
        znodes,
        leases,
    }
}

fn put(key: String, value: String, lease: i64) -> Command {
    Command::Put(PutRequest {
        key: key.into_bytes(),
        value: value.into_bytes(),
        lease,
        ..Default::default()
    })
}

fn create(path: &str, mode: CreateMode) -> ZkOp {
    ZkOp::Create {
        path: path.into(),
        data: Some(b"x".to_vec()),
        acl: Acl::open_unsafe(),
        mode,
        ttl_ms: -1,
    }
}

fn config_file(dir: &std::path::Path) -> String {
    let f = dir.join("janus.toml");
    // Small snapshot interval: a restart loads a snapshot and replays the log after it.
    std::fs::write(
        &f,
        "snapshot_entries = 40\nheartbeat_ms = 50\nelection_timeout_ms = 300\n",
    )
    .unwrap();
    f.to_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_restart_keeps_state_revision_sessions_and_leases() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config_file(tmp.path());
    let mut j = Janus::start(&tmp.path().join("data"), &["--config", &cfg]);
    j.wait_healthy(Duration::from_secs(20));

    let a = j
        .propose(&Command::ZkCreateSession {
            session: SESSION,
            password: vec![7; 16],
            timeout_ms: 30_000,
        })
        .await
        .unwrap();
    assert!(matches!(a.response, Response::Zk(Ok(_))), "{a:?}");
    let a = j
        .propose(&Command::LeaseGrant {
            id: LEASE,
            ttl_secs: 600,
        })
        .await
        .unwrap();
    assert!(matches!(a.response, Response::Etcd(Ok(_))), "{a:?}");

    let mut last = a.revision;
    let mut acked = 0;
    for i in 0..150 {
        let mut cmds = vec![
            put(
                format!("k/{}", i % 37),
                format!("v{i}"),
                if i % 5 == 0 { LEASE } else { 0 },
            ),
            Command::Zk {
                session: SESSION,
                op: create(&format!("/n{}", i % 20), CreateMode::Persistent),
            },
            Command::Zk {
                session: SESSION,
                op: ZkOp::SetData {
                    path: format!("/n{}", i % 20),
                    data: Some(format!("d{i}").into_bytes()),
                    version: -1,
                },
            },
        ];
        if i % 10 == 0 {
            cmds.push(Command::Zk {
                session: SESSION,
                op: create(&format!("/e{i}"), CreateMode::Ephemeral),
            });
            cmds.push(Command::Zk {
                session: SESSION,
                op: create("/seq-", CreateMode::PersistentSequential),
            });
        }
        if i % 7 == 0 {
            cmds.push(Command::DeleteRange(DeleteRangeRequest {
                key: b"k/1".to_vec(),
                range_end: b"k/2".to_vec(),
                prev_kv: false,
            }));
        }
        if i % 13 == 0 {
            cmds.push(Command::ZkMulti {
                session: SESSION,
                ops: vec![
                    create(&format!("/m{i}"), CreateMode::Persistent),
                    create(&format!("/m{i}/c"), CreateMode::Persistent),
                ],
            });
        }
        for c in cmds {
            let a = j.propose(&c).await.unwrap();
            assert!(
                a.revision >= last,
                "revision went back: {} < {last}",
                a.revision
            );
            if c.is_zk() {
                assert_eq!(a.revision, last + 1, "every ZooKeeper txn takes one zxid");
            }
            last = a.revision;
            acked += 1;
        }
    }
    let before = dump(&j).await;
    assert_eq!(before.revision, last);
    assert!(before.znodes.contains_key("/e0"));
    assert_eq!(
        before
            .znodes
            .keys()
            .filter(|p| p.starts_with("/seq-"))
            .count(),
        15
    );
    assert!(before.leases.iter().any(|l| l.id == SESSION));
    assert_eq!(
        before
            .znodes
            .values()
            .filter(|(_, stat)| stat.ephemeral_owner == SESSION)
            .count(),
        15
    );
    assert!(before.leases.iter().any(|l| l.id == LEASE));
    assert!(before.kvs.iter().any(|kv| kv.lease == LEASE));
    assert!(acked > 500);

    j.kill9();
    j.spawn();
    j.wait_healthy(Duration::from_secs(20));
    let after = dump(&j).await;
    assert_eq!(after, before, "state after SIGKILL + restart differs");

    // The clock continues where it was.
    let a = j
        .propose(&Command::Zk {
            session: SESSION,
            op: create("/after", CreateMode::Persistent),
        })
        .await
        .unwrap();
    assert_eq!(a.revision, last + 1);

    // A restart from a clean shutdown too.
    assert!(j.terminate().success(), "SIGTERM exits cleanly");
    j.spawn();
    j.wait_healthy(Duration::from_secs(20));
    let again = dump(&j).await;
    assert_eq!(again.revision, last + 1);
    assert!(again.znodes.contains_key("/after"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_acknowledged_before_sigkill_survive() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config_file(tmp.path());
    let j = Janus::start(&tmp.path().join("data"), &["--config", &cfg]);
    j.wait_healthy(Duration::from_secs(20));
    let j = Arc::new(Mutex::new(j));
    let acked = Arc::new(Mutex::new(Vec::<(String, i64)>::new()));
    let mut writers = Vec::new();
    for w in 0..8 {
        let acked = acked.clone();
        let jj = j.clone();
        writers.push(tokio::spawn(async move {
            // A proposal through its own connection each time, so the kill
            // lands in the middle of some of them.
            let target = {
                let g = jj.lock().unwrap();
                g.clone_addrs()
            };
            for n in 0.. {
                let key = format!("w/{w}/{n}");
                match target.propose(&put(key.clone(), n.to_string(), 0)).await {
                    Ok(a) => acked.lock().unwrap().push((key, a.revision)),
                    Err(_) => break,
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    j.lock().unwrap().kill9();
    for w in writers {
        let _ = w.await;
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > 50, "only {} writes acknowledged", acked.len());
    let max_rev = acked.iter().map(|(_, r)| *r).max().unwrap_or(0);

    let mut g = j.lock().unwrap();
    g.spawn();
    g.wait_healthy(Duration::from_secs(20));
    let all = RangeRequest {
        key: b"w/".to_vec(),
        range_end: b"w0".to_vec(),
        ..Default::default()
    };
    let j2 = g.clone_addrs();
    drop(g);
    let QueryResult::KvRange(Ok(r)) = j2.query(&Query::KvRange(all), true).await.unwrap() else {
        panic!()
    };
    let present: std::collections::HashMap<Vec<u8>, i64> = r
        .kvs
        .iter()
        .map(|kv| (kv.key.clone(), kv.mod_revision))
        .collect();
    for (key, rev) in &acked {
        assert_eq!(
            present.get(key.as_bytes()),
            Some(rev),
            "acknowledged write {key} at {rev} lost"
        );
    }
    let QueryResult::Revision { revision, .. } = j2.query(&Query::Revision, true).await.unwrap()
    else {
        panic!()
    };
    assert!(revision >= max_rev);
    eprintln!(
        "{} acknowledged writes, all present after SIGKILL; revision {revision}",
        acked.len()
    );
}

/// A member killed while connections to its ports were open comes back at
/// once on the same ports, their old connections still in TIME_WAIT (the
/// listeners set SO_REUSEADDR, as etcd's and ZooKeeper's do), as a
/// supervisor's immediate restart expects.
#[test]
fn restarts_at_once_on_its_ports_after_sigkill() {
    use std::io::Read;
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut j = Janus::start(&tmp.path().join("data"), &[]);
    j.wait_healthy(Duration::from_secs(30));
    let open: Vec<std::net::TcpStream> = [&j.peer, &j.etcd, &j.zk]
        .iter()
        .map(|a| std::net::TcpStream::connect(a.as_str()).expect("connect"))
        .collect();
    j.kill9();
    // The server's side closed first; ours answers the close.
    for mut c in open {
        let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
        let _ = c.read(&mut [0u8; 64]);
    }
    j.spawn();
    j.wait_healthy(Duration::from_secs(20));
}
