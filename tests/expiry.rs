//! The leader expires sessions and leases that are not kept alive, deleting
//! what is attached to them, and reaps empty containers and expired TTL
//! nodes; keep-alives keep things alive.

use std::time::{Duration, Instant};

use janus_core::{Acl, Command, CreateMode, PutRequest, Response, ZkOp};
use janus_raft::{Query, QueryResult};
use janus_tests::Janus;

fn create(path: &str, mode: CreateMode, ttl_ms: i64) -> ZkOp {
    ZkOp::Create {
        path: path.into(),
        data: Some(vec![]),
        acl: Acl::open_unsafe(),
        mode,
        ttl_ms,
    }
}

async fn exists(j: &Janus, path: &str) -> bool {
    matches!(
        j.query(&Query::ZkNode(path.into()), false).await.unwrap(),
        QueryResult::ZkNode(Some(_))
    )
}

async fn lease_exists(j: &Janus, id: i64) -> bool {
    matches!(
        j.query(&Query::Lease(id), false).await.unwrap(),
        QueryResult::Lease(Some(_))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_keepalive_and_container_reaping() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("janus.toml");
    std::fs::write(
        &cfg,
        "container_check_ms = 200\nheartbeat_ms = 50\nelection_timeout_ms = 300\n",
    )
    .unwrap();
    let j = Janus::start(
        &tmp.path().join("data"),
        &["--config", cfg.to_str().unwrap()],
    );
    j.wait_healthy(Duration::from_secs(20));

    let (idle, kept) = (0x0100_0000_0000_0001, 0x0100_0000_0000_0002);
    for s in [idle, kept] {
        let a = j
            .propose(&Command::ZkCreateSession {
                session: s,
                password: vec![1; 16],
                timeout_ms: 600,
            })
            .await;
        assert!(matches!(a.unwrap().response, Response::Zk(Ok(_))));
        let path = format!("/eph-{s}");
        let a = j
            .propose(&Command::Zk {
                session: s,
                op: create(&path, CreateMode::Ephemeral, -1),
            })
            .await
            .unwrap();
        assert!(matches!(a.response, Response::Zk(Ok(_))), "{a:?}");
    }
    let (lease_idle, lease_kept) = (501, 502);
    for (l, key) in [(lease_idle, "l/idle"), (lease_kept, "l/kept")] {
        j.propose(&Command::LeaseGrant { id: l, ttl_secs: 1 })
            .await
            .unwrap();
        let put = PutRequest {
            key: key.into(),
            value: b"v".to_vec(),
            lease: l,
            ..Default::default()
        };
        j.propose(&Command::Put(put)).await.unwrap();
    }
    // Containers: a used, now empty one goes; a never-used one stays. A TTL
    // node goes once its TTL has passed since its last change.
    for op in [
        create("/c-used", CreateMode::Container, -1),
        create("/c-used/x", CreateMode::Persistent, -1),
        ZkOp::Delete {
            path: "/c-used/x".into(),
            version: -1,
        },
        create("/c-new", CreateMode::Container, -1),
        create("/ttl", CreateMode::PersistentWithTtl, 300),
    ] {
        let a = j.propose(&Command::Zk { session: 0, op }).await.unwrap();
        assert!(matches!(a.response, Response::Zk(Ok(_))), "{a:?}");
    }

    let remaining = j.keepalive(&[lease_kept, 999], false).await.unwrap();
    assert!(remaining[0] > 0 && remaining[0] <= 1000, "{remaining:?}");
    assert_eq!(remaining[1], -1);

    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(2500) {
        let r = j.keepalive(&[kept, lease_kept], true).await.unwrap();
        assert_eq!(r, vec![600, 1000]);
        tokio::time::sleep(Duration::from_millis(150)).await;
    }

    assert!(!lease_exists(&j, idle).await, "idle session expired");
    assert!(
        !exists(&j, &format!("/eph-{idle}")).await,
        "its ephemeral deleted"
    );
    assert!(lease_exists(&j, kept).await, "kept session alive");
    assert!(exists(&j, &format!("/eph-{kept}")).await);
    assert!(!lease_exists(&j, lease_idle).await, "idle lease expired");
    assert!(lease_exists(&j, lease_kept).await, "kept lease alive");
    let all = janus_core::RangeRequest {
        key: b"l/".to_vec(),
        range_end: b"l0".to_vec(),
        ..Default::default()
    };
    let QueryResult::KvRange(Ok(r)) = j.query(&Query::KvRange(all), true).await.unwrap() else {
        panic!()
    };
    assert_eq!(
        r.kvs.iter().map(|kv| kv.key.clone()).collect::<Vec<_>>(),
        vec![b"l/kept".to_vec()]
    );
    assert!(!exists(&j, "/c-used").await, "used empty container reaped");
    assert!(exists(&j, "/c-new").await, "never-used container stays");
    assert!(!exists(&j, "/ttl").await, "expired TTL node reaped");

    // Without keep-alives the rest expires too.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!lease_exists(&j, kept).await);
    assert!(!lease_exists(&j, lease_kept).await);
}
