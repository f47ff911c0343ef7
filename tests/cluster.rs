//! Three and five members on loopback: writes proposed at any member are forwarded
//! to the leader, linearizable reads go through the read index, a killed
//! leader is replaced, and a restarted member catches up.

use std::time::{Duration, Instant};

use janus_core::{Command, PutRequest, RangeRequest, Response};
use janus_raft::{Query, QueryResult};
use janus_tests::{leader_index, start_cluster, Janus};

fn put(key: &str, value: &str) -> Command {
    Command::Put(PutRequest {
        key: key.into(),
        value: value.into(),
        ..Default::default()
    })
}

async fn get(j: &Janus, key: &str, linearizable: bool) -> Option<Vec<u8>> {
    let q = Query::KvRange(RangeRequest {
        key: key.into(),
        ..Default::default()
    });
    match j.query(&q, linearizable).await.unwrap() {
        QueryResult::KvRange(Ok(r)) => r.kvs.into_iter().next().map(|kv| kv.value),
        r => panic!("{r:?}"),
    }
}

fn wait_leader(members: &[Janus], not: Option<usize>) -> usize {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(l) =
            leader_index(members).filter(|l| Some(*l) != not && members[*l].child.is_some())
        {
            return l;
        }
        assert!(Instant::now() < deadline, "no leader elected");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_forward_read_index_failover_catch_up() {
    let tmp = tempfile::tempdir().unwrap();
    let mut members = start_cluster(tmp.path(), 3, "heartbeat_ms = 50\nelection_timeout_ms = 300\nsnapshot_entries = 50\nlog_keep_entries = 0\n");
    let leader = wait_leader(&members, None);
    let followers: Vec<usize> = (0..3).filter(|i| *i != leader).collect();

    // Writes at every member; each is readable linearizably at every member.
    for (n, i) in (0..3).cycle().take(30).enumerate() {
        let a = members[i]
            .propose(&put(&format!("k{n}"), &format!("v{n}")))
            .await
            .unwrap();
        assert!(matches!(a.response, Response::Etcd(Ok(_))), "{a:?}");
        for m in &members {
            assert_eq!(
                get(m, &format!("k{n}"), true).await,
                Some(format!("v{n}").into_bytes())
            );
        }
    }

    // Kill the leader: another member takes over and writes go on through
    // the survivors.
    members[leader].kill9();
    let new_leader = wait_leader(&members, Some(leader));
    assert_ne!(new_leader, leader);
    for n in 0..60 {
        let at = followers[n % 2];
        members[at]
            .propose(&put(&format!("after{n}"), "x"))
            .await
            .unwrap();
    }
    assert_eq!(
        get(&members[followers[0]], "after59", true).await,
        Some(b"x".to_vec())
    );

    // The old leader comes back and catches up (from a snapshot: more than
    // `snapshot_entries` entries were committed while it was down).
    members[leader].spawn();
    members[leader].wait_healthy(Duration::from_secs(30));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if get(&members[leader], "after59", false).await.is_some() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "restarted member did not catch up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = std::fs::read_to_string(&members[leader].log).unwrap();
    assert!(
        log.contains("installed snapshot"),
        "the lagging member should have caught up from a snapshot"
    );
    let rev = |r| match r {
        QueryResult::Revision { revision, .. } => revision,
        r => panic!("{r:?}"),
    };
    let a = rev(members[leader].query(&Query::Revision, true).await.unwrap());
    let b = rev(members[new_leader]
        .query(&Query::Revision, true)
        .await
        .unwrap());
    assert_eq!(a, b, "one revision clock on every member");
}

/// Five members: two of them (the leader and a follower) die, the other
/// three elect a leader and keep committing; the two come back and catch up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_members_survive_two_failures() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut members = start_cluster(
        tmp.path(),
        5,
        "heartbeat_ms = 50\nelection_timeout_ms = 300\n",
    );
    let leader = wait_leader(&members, None);
    for (n, i) in (0..5).cycle().take(20).enumerate() {
        let a = members[i]
            .propose(&put(&format!("five{n}"), "x"))
            .await
            .expect("propose");
        assert!(matches!(a.response, Response::Etcd(Ok(_))), "{a:?}");
    }

    // Lose the leader and one follower: three of five still make a quorum.
    let follower = (0..5).find(|i| *i != leader).expect("a follower");
    members[leader].kill9();
    members[follower].kill9();
    let new_leader = wait_leader(&members, Some(leader));
    assert_ne!(new_leader, follower);
    let alive: Vec<usize> = (0..5).filter(|i| *i != leader && *i != follower).collect();
    for n in 0..30 {
        let at = alive[n % alive.len()];
        members[at]
            .propose(&put(&format!("after{n}"), "y"))
            .await
            .expect("propose with two members down");
    }
    for &i in &alive {
        assert_eq!(get(&members[i], "after29", true).await, Some(b"y".to_vec()));
    }

    // Both come back and catch up.
    for i in [leader, follower] {
        members[i].spawn();
        members[i].wait_healthy(Duration::from_secs(30));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    for i in [leader, follower] {
        while get(&members[i], "after29", false).await.is_none() {
            assert!(Instant::now() < deadline, "member {i} did not catch up");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(get(&members[i], "five19", false).await, Some(b"x".to_vec()));
    }
}
