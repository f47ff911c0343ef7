//! An etcd watch stream broken by its member's death resumes on another
//! member from the last revision it saw, and sees every event exactly once
//! three real members, a writer on a surviving member, the
//! watcher's member killed with SIGKILL halfway through.

use std::time::{Duration, Instant};

use janus_etcd::pb::etcdserverpb::{self as pb, kv_client::KvClient, watch_client::WatchClient};
use janus_tests::{start_cluster, wait_leader};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};

const PUTS: usize = 120;

fn channel(addr: &str) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect_timeout(Duration::from_secs(2))
        .connect_lazy()
}

/// A watch on `w/` from `start`, as a stream of (key, value, mod_revision).
async fn open_watch(
    addr: &str,
    start: i64,
) -> (
    tokio::sync::mpsc::Sender<pb::WatchRequest>,
    tonic::Streaming<pb::WatchResponse>,
) {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(pb::WatchRequest {
        request_union: Some(pb::watch_request::RequestUnion::CreateRequest(
            pb::WatchCreateRequest {
                key: b"w/".to_vec(),
                range_end: b"w0".to_vec(),
                start_revision: start,
                ..Default::default()
            },
        )),
    })
    .await
    .expect("send create");
    let s = WatchClient::new(channel(addr))
        .watch(ReceiverStream::new(rx))
        .await
        .expect("watch")
        .into_inner();
    (tx, s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_resumed_on_another_member_sees_every_event_once() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut members = start_cluster(
        tmp.path(),
        3,
        "heartbeat_ms = 50\nelection_timeout_ms = 300\n",
    );

    // Write through the leader; watch at a follower, which is killed (the
    // other two keep the quorum), and resume at the other follower.
    let leader = wait_leader(&members);
    let (w, r) = match leader {
        0 => (1, 2),
        1 => (0, 2),
        _ => (0, 1),
    };
    let mut kv = KvClient::new(channel(&members[leader].etcd));
    let first = kv
        .put(pb::PutRequest {
            key: b"w/start".to_vec(),
            value: b"0".to_vec(),
            ..Default::default()
        })
        .await
        .expect("first put")
        .into_inner()
        .header
        .expect("header")
        .revision;
    let (mut _tx, mut stream) = open_watch(&members[w].etcd, first).await;

    let writer = tokio::spawn(async move {
        let mut revs = Vec::new();
        for n in 0..PUTS {
            let r = kv
                .put(pb::PutRequest {
                    key: format!("w/{}", n % 7).into_bytes(),
                    value: n.to_string().into_bytes(),
                    ..Default::default()
                })
                .await
                .expect("put through a surviving member")
                .into_inner();
            revs.push(r.header.expect("header").revision);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        revs
    });

    let mut seen: Vec<(Vec<u8>, Vec<u8>, i64)> = Vec::new();
    let mut killed = false;
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.len() < PUTS + 1 {
        assert!(Instant::now() < deadline, "saw only {} events", seen.len());
        if !killed && seen.len() >= PUTS / 3 {
            // The watcher's member dies: resume at member 2 from the
            // revision after the last event seen.
            members[w].kill9();
            killed = true;
            let next = seen.last().map_or(first, |e| e.2 + 1);
            let (tx, s) = open_watch(&members[r].etcd, next).await;
            _tx = tx;
            stream = s;
            continue;
        }
        let msg = match tokio::time::timeout(Duration::from_secs(10), stream.message()).await {
            Ok(Ok(Some(m))) => m,
            other => panic!("watch stream ended early: {other:?}"),
        };
        for ev in msg.events {
            let kv = ev.kv.expect("kv");
            seen.push((kv.key, kv.value, kv.mod_revision));
        }
    }
    assert!(killed);
    let revs = writer.await.expect("writer");

    // Exactly once, in order: the first put, then every acknowledged put.
    let mut want = vec![first];
    want.extend(&revs);
    let got: Vec<i64> = seen.iter().map(|e| e.2).collect();
    assert_eq!(got, want, "every event exactly once, in revision order");
    for (n, e) in seen.iter().skip(1).enumerate() {
        assert_eq!(e.0, format!("w/{}", n % 7).into_bytes());
        assert_eq!(e.1, n.to_string().into_bytes());
    }
}
