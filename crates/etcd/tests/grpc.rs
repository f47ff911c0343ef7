//! The etcd services in-process: a one-member RaftNode, `janus_etcd::serve`
//! on a loopback port, and the generated tonic clients (real gRPC over
//! h2c). Covers what etcdctl cannot drive: live watches with filters,
//! cancel, progress requests, fragments, slow watchers, lease expiry seen
//! by a watcher, the request limits and garbage on the port.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use janus_etcd::pb::etcdserverpb as pb;
use janus_etcd::pb::etcdserverpb::{
    kv_client::KvClient, lease_client::LeaseClient, watch_client::WatchClient,
};
use janus_etcd::pb::health::{health_client::HealthClient, HealthCheckRequest};
use janus_etcd::pb::mvccpb::event::EventType;
use janus_raft::{NodeConfig, RaftNode};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::Code;

struct Server {
    _dir: tempfile::TempDir,
    addr: String,
    stop: Option<oneshot::Sender<()>>,
    node: Arc<RaftNode>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// A loopback port below the kernel's ephemeral range (so no outgoing
/// connection can take it before the server binds), free right now.
fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base = 33_000 - 1_000 * (1 + std::process::id() % 8);
    (0..1_000)
        .map(|_| (base + NEXT.fetch_add(1, Ordering::SeqCst) % 1_000) as u16)
        .find(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .expect("a free loopback port")
}

async fn start(cfg: janus_etcd::Config) -> Server {
    let dir = tempfile::tempdir().expect("tempdir");
    let peer = format!("127.0.0.1:{}", free_port());
    let node = RaftNode::start(NodeConfig::single(1, peer, dir.path().to_path_buf()), None)
        .await
        .expect("node");
    node.wait_for_leader(Duration::from_secs(20))
        .await
        .expect("leader");
    let addr = format!("127.0.0.1:{}", free_port());
    let (stop, rx) = oneshot::channel::<()>();
    let serve = janus_etcd::serve(
        node.clone(),
        addr.clone(),
        cfg,
        axum::Router::new(),
        async move {
            let _ = rx.await;
        },
    );
    tokio::spawn(serve);
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(&addr).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Server {
        _dir: dir,
        addr,
        stop: Some(stop),
        node,
    }
}

impl Server {
    async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr))
            .expect("uri")
            .connect()
            .await
            .expect("connect")
    }
    async fn kv(&self) -> KvClient<Channel> {
        KvClient::new(self.channel().await).max_decoding_message_size(64 << 20)
    }
}

fn put(k: &str, v: &[u8]) -> pb::PutRequest {
    pb::PutRequest {
        key: k.into(),
        value: v.to_vec(),
        ..Default::default()
    }
}

fn create(key: &str, end: &str, f: impl FnOnce(&mut pb::WatchCreateRequest)) -> pb::WatchRequest {
    let mut c = pb::WatchCreateRequest {
        key: key.into(),
        range_end: end.into(),
        ..Default::default()
    };
    f(&mut c);
    pb::WatchRequest {
        request_union: Some(pb::watch_request::RequestUnion::CreateRequest(c)),
    }
}

struct WatchStream {
    tx: mpsc::Sender<pb::WatchRequest>,
    rx: tonic::Streaming<pb::WatchResponse>,
}

impl WatchStream {
    async fn open(s: &Server) -> WatchStream {
        let (tx, rx) = mpsc::channel(16);
        let mut c = WatchClient::new(s.channel().await).max_decoding_message_size(64 << 20);
        let rx = c
            .watch(ReceiverStream::new(rx))
            .await
            .expect("watch")
            .into_inner();
        WatchStream { tx, rx }
    }
    async fn send(&self, r: pb::WatchRequest) {
        self.tx.send(r).await.expect("send");
    }
    async fn next(&mut self) -> pb::WatchResponse {
        tokio::time::timeout(Duration::from_secs(10), self.rx.message())
            .await
            .expect("watch response in time")
            .expect("stream ok")
            .expect("stream open")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_watch_filters_cancel_and_progress() {
    let s = start(janus_etcd::Config::default()).await;
    let mut kv = s.kv().await;
    let mut w = WatchStream::open(&s).await;
    w.send(create("a", "b", |c| {
        c.prev_kv = true;
        c.watch_id = 7;
    }))
    .await;
    let created = w.next().await;
    assert!(created.created && !created.canceled);
    let all = created.watch_id;
    assert_eq!(all, 7);
    w.send(create("a", "b", |c| {
        c.filters = vec![pb::watch_create_request::FilterType::Noput as i32]
    }))
    .await;
    let nodel = w.next().await.watch_id;
    assert_ne!(all, nodel);
    // A duplicate explicit id is refused in the created response.
    w.send(create("x", "", |c| c.watch_id = all)).await;
    let dup = w.next().await;
    assert!(dup.created && dup.canceled && dup.watch_id == -1, "{dup:?}");

    let r1 = kv
        .put(put("a1", b"v1"))
        .await
        .expect("put")
        .into_inner()
        .header
        .expect("hdr")
        .revision;
    kv.put(put("zz", b"outside")).await.expect("put");
    kv.put(put("a1", b"v2")).await.expect("put");
    let d = kv
        .delete_range(pb::DeleteRangeRequest {
            key: "a".into(),
            range_end: "b".into(),
            ..Default::default()
        })
        .await
        .expect("delete")
        .into_inner();
    let rd = d.header.expect("hdr").revision;

    let mut seen_all = Vec::new();
    let mut seen_nodel = Vec::new();
    while seen_all.len() < 3 || seen_nodel.is_empty() {
        let r = w.next().await;
        for e in r.events {
            let kv = e.kv.expect("kv");
            let item = (
                e.r#type,
                kv.key.clone(),
                kv.mod_revision,
                e.prev_kv.map(|p| p.value),
            );
            if r.watch_id == all {
                seen_all.push(item);
            } else if r.watch_id == nodel {
                seen_nodel.push(item);
            }
        }
    }
    assert_eq!(
        seen_all[0],
        (EventType::Put as i32, b"a1".to_vec(), r1, None)
    );
    assert_eq!(seen_all[1].3, Some(b"v1".to_vec()));
    assert_eq!(
        seen_all[2],
        (
            EventType::Delete as i32,
            b"a1".to_vec(),
            rd,
            Some(b"v2".to_vec())
        )
    );
    assert_eq!(
        seen_nodel,
        vec![(EventType::Delete as i32, b"a1".to_vec(), rd, None)]
    );

    // A progress request reports the stream's revision with watch id -1.
    w.send(pb::WatchRequest {
        request_union: Some(pb::watch_request::RequestUnion::ProgressRequest(
            pb::WatchProgressRequest {},
        )),
    })
    .await;
    let p = w.next().await;
    assert_eq!(
        (p.watch_id, p.header.expect("hdr").revision, p.events.len()),
        (-1, rd, 0)
    );

    w.send(pb::WatchRequest {
        request_union: Some(pb::watch_request::RequestUnion::CancelRequest(
            pb::WatchCancelRequest { watch_id: all },
        )),
    })
    .await;
    let c = w.next().await;
    assert!(c.canceled && c.watch_id == all);
    kv.put(put("a2", b"x")).await.expect("put");
    // Only the NOPUT watcher remains: the put is not reported; a delete is.
    kv.delete_range(pb::DeleteRangeRequest {
        key: "a2".into(),
        ..Default::default()
    })
    .await
    .expect("del");
    let r = w.next().await;
    assert_eq!(r.watch_id, nodel);
    assert_eq!(r.events[0].r#type, EventType::Delete as i32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compacted_start_and_history_replay() {
    let s = start(janus_etcd::Config::default()).await;
    let mut kv = s.kv().await;
    let mut revs = Vec::new();
    for i in 0..5 {
        let h = kv
            .put(put("k", format!("v{i}").as_bytes()))
            .await
            .expect("put")
            .into_inner()
            .header
            .expect("h");
        revs.push(h.revision);
    }
    kv.compact(pb::CompactionRequest {
        revision: revs[2],
        physical: true,
    })
    .await
    .expect("compact");
    let mut w = WatchStream::open(&s).await;
    w.send(create("k", "", |c| c.start_revision = revs[0]))
        .await;
    assert!(w.next().await.created);
    let r = w.next().await;
    assert!(r.canceled, "{r:?}");
    assert_eq!(r.compact_revision, revs[2]);
    w.send(create("k", "", |c| {
        c.start_revision = revs[2];
        c.prev_kv = true;
    }))
    .await;
    assert!(w.next().await.created);
    let r = w.next().await;
    let got: Vec<(i64, Vec<u8>)> = r
        .events
        .iter()
        .map(|e| {
            e.kv.as_ref()
                .map(|k| (k.mod_revision, k.value.clone()))
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (revs[2], b"v2".to_vec()),
            (revs[3], b"v3".to_vec()),
            (revs[4], b"v4".to_vec())
        ]
    );
    // prev_kv of the first replayed event is older than the compaction.
    assert_eq!(
        r.events[1].prev_kv.as_ref().map(|p| p.value.clone()),
        Some(b"v2".to_vec())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_watcher_does_not_block_writes_and_loses_nothing() {
    let s = start(janus_etcd::Config::default()).await;
    let mut w = WatchStream::open(&s).await;
    w.send(create("s/", "s0", |_| {})).await;
    assert!(w.next().await.created);
    // Write far more than the stream's queue holds while nobody reads it.
    let n = 400usize;
    let mut tasks = Vec::new();
    for t in 0..8 {
        let mut kv = s.kv().await;
        tasks.push(tokio::spawn(async move {
            for i in 0..n / 8 {
                let v = vec![b'x'; 8 << 10];
                kv.put(put(&format!("s/{t}/{i}"), &v))
                    .await
                    .expect("put while a watcher stalls");
            }
        }));
    }
    let writes = async {
        for t in tasks {
            t.await.expect("writer");
        }
    };
    tokio::time::timeout(Duration::from_secs(60), writes)
        .await
        .expect("writes finish while the watcher stalls");
    let mut got = 0usize;
    let mut last = 0i64;
    while got < n {
        let r = w.next().await;
        for e in r.events {
            let rev = e.kv.expect("kv").mod_revision;
            assert!(rev > last, "events in revision order");
            last = rev;
            got += 1;
        }
    }
    assert_eq!(got, n);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fragments_split_a_large_revision() {
    let cfg = janus_etcd::Config {
        max_request_bytes: 256 << 10,
        ..Default::default()
    };
    let s = start(cfg).await;
    let mut kv = s.kv().await;
    for i in 0..8 {
        kv.put(put(&format!("f/{i}"), &vec![b'v'; 100 << 10]))
            .await
            .expect("put");
    }
    let mut w = WatchStream::open(&s).await;
    w.send(create("f/", "f0", |c| {
        c.fragment = true;
        c.prev_kv = true;
    }))
    .await;
    assert!(w.next().await.created);
    kv.delete_range(pb::DeleteRangeRequest {
        key: "f/".into(),
        range_end: "f0".into(),
        ..Default::default()
    })
    .await
    .expect("delete");
    let mut events = 0;
    let mut parts = 0;
    loop {
        let r = w.next().await;
        parts += 1;
        events += r.events.len();
        if !r.fragment {
            break;
        }
    }
    assert_eq!(events, 8);
    assert!(
        parts > 1,
        "an 800 KiB revision is split at 256 KiB + 512 KiB, as etcd does"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_expiry_deletes_keys_in_one_revision() {
    let s = start(janus_etcd::Config::default()).await;
    let mut kv = s.kv().await;
    let mut lease = LeaseClient::new(s.channel().await);
    let g = lease
        .lease_grant(pb::LeaseGrantRequest { ttl: 1, id: 0 })
        .await
        .expect("grant")
        .into_inner();
    assert_eq!(g.ttl, 2, "TTLs are raised to the minimum");
    assert!(g.id > 0);
    for k in ["e/1", "e/2"] {
        kv.put(pb::PutRequest {
            lease: g.id,
            ..put(k, b"v")
        })
        .await
        .expect("put");
    }
    let ttl = lease
        .lease_time_to_live(pb::LeaseTimeToLiveRequest {
            id: g.id,
            keys: true,
        })
        .await
        .expect("ttl");
    assert_eq!(ttl.get_ref().keys.len(), 2);
    let mut w = WatchStream::open(&s).await;
    w.send(create("e/", "e0", |_| {})).await;
    assert!(w.next().await.created);
    let r = w.next().await;
    assert_eq!(r.events.len(), 2, "both keys go in one revision: {r:?}");
    assert!(r
        .events
        .iter()
        .all(|e| e.r#type == EventType::Delete as i32));
    let left = kv
        .range(pb::RangeRequest {
            key: "e/".into(),
            range_end: "e0".into(),
            ..Default::default()
        })
        .await
        .expect("range");
    assert_eq!(left.get_ref().count, 0);
    let ttl = lease
        .lease_time_to_live(pb::LeaseTimeToLiveRequest {
            id: g.id,
            keys: false,
        })
        .await
        .expect("ttl");
    assert_eq!(ttl.get_ref().ttl, -1);
    // Keep-alive of an unknown lease answers TTL 0.
    let (tx, rx) = mpsc::channel(1);
    tx.send(pb::LeaseKeepAliveRequest { id: g.id })
        .await
        .expect("send");
    let mut ka = lease
        .lease_keep_alive(ReceiverStream::new(rx))
        .await
        .expect("keepalive")
        .into_inner();
    let r = ka.message().await.expect("ok").expect("response");
    assert_eq!((r.id, r.ttl), (g.id, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_etcd_errors_and_change_nothing() {
    let s = start(janus_etcd::Config::default()).await;
    let mut kv = s.kv().await;
    kv.put(put("keep", b"1")).await.expect("put");
    let before = s.node.state().revision();

    let e = kv.put(put("", b"v")).await.expect_err("empty key");
    assert_eq!(
        (e.code(), e.message()),
        (Code::InvalidArgument, "etcdserver: key is not provided")
    );
    let e = kv
        .put(put("big", &vec![0; 1_700_000]))
        .await
        .expect_err("too large");
    assert_eq!(
        (e.code(), e.message()),
        (Code::InvalidArgument, "etcdserver: request is too large")
    );
    let e = kv
        .put(put("huge", &vec![0; 3 << 20]))
        .await
        .expect_err("over the gRPC limit");
    assert_eq!(e.code(), Code::ResourceExhausted);
    assert!(
        e.message()
            .starts_with("grpc: received message larger than max ("),
        "{}",
        e.message()
    );
    let ops = (0..129)
        .map(|i| pb::RequestOp {
            request: Some(pb::request_op::Request::RequestPut(put(
                &format!("t{i}"),
                b"v",
            ))),
        })
        .collect();
    let e = kv
        .txn(pb::TxnRequest {
            success: ops,
            ..Default::default()
        })
        .await
        .expect_err("too many ops");
    assert_eq!(
        e.message(),
        "etcdserver: too many operations in txn request"
    );
    let r = kv
        .range(pb::RangeRequest {
            key: "z".into(),
            range_end: "a".into(),
            ..Default::default()
        })
        .await
        .expect("an inverted range is empty");
    assert_eq!(r.get_ref().count, 0);
    let e = kv
        .range(pb::RangeRequest {
            key: "keep".into(),
            revision: before + 10,
            ..Default::default()
        })
        .await
        .expect_err("future");
    assert_eq!(
        (e.code(), e.message()),
        (
            Code::OutOfRange,
            "etcdserver: mvcc: required revision is a future revision"
        )
    );
    let mut lease = LeaseClient::new(s.channel().await);
    let e = lease
        .lease_revoke(pb::LeaseRevokeRequest { id: 42 })
        .await
        .expect_err("unknown lease");
    assert_eq!(
        (e.code(), e.message()),
        (Code::NotFound, "etcdserver: requested lease not found")
    );
    let e = lease
        .lease_grant(pb::LeaseGrantRequest {
            ttl: 9_000_000_001,
            id: 0,
        })
        .await
        .expect_err("ttl");
    assert_eq!(
        (e.code(), e.message()),
        (Code::OutOfRange, "etcdserver: too large lease TTL")
    );

    // Garbage on the port: that connection fails, the server carries on.
    for junk in [
        &b"\x00\x01\x02garbage\xff\xfe"[..],
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\xff\xff\xff\xff\xff\xff\xff\xff\xff",
    ] {
        if let Ok(mut c) = std::net::TcpStream::connect(&s.addr) {
            let _ = c.write_all(junk);
        }
    }
    assert_eq!(s.node.state().revision(), before, "nothing changed");
    let r = kv
        .range(pb::RangeRequest {
            key: "keep".into(),
            ..Default::default()
        })
        .await
        .expect("still serving");
    assert_eq!(r.get_ref().kvs[0].value, b"1");
    let mut h = HealthClient::new(s.channel().await);
    let st = h
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health")
        .into_inner();
    assert_eq!(st.status, 1, "SERVING");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v3lock_and_v3election() {
    use janus_etcd::pb::v3electionpb::{self as el, election_client::ElectionClient};
    use janus_etcd::pb::v3lockpb::{self as lk, lock_client::LockClient};
    let s = start(janus_etcd::Config::default()).await;
    let mut lease = LeaseClient::new(s.channel().await);
    let l1 = lease
        .lease_grant(pb::LeaseGrantRequest { ttl: 30, id: 0 })
        .await
        .expect("grant")
        .into_inner()
        .id;
    let l2 = lease
        .lease_grant(pb::LeaseGrantRequest { ttl: 30, id: 0 })
        .await
        .expect("grant")
        .into_inner()
        .id;

    let mut lock = LockClient::new(s.channel().await);
    let k1 = lock
        .lock(lk::LockRequest {
            name: "l".into(),
            lease: l1,
        })
        .await
        .expect("lock")
        .into_inner()
        .key;
    assert_eq!(k1, format!("l/{l1:x}").into_bytes());
    let mut lock2 = LockClient::new(s.channel().await);
    let waiter = tokio::spawn(async move {
        lock2
            .lock(lk::LockRequest {
                name: "l".into(),
                lease: l2,
            })
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiter.is_finished(), "the second locker waits");
    lock.unlock(lk::UnlockRequest { key: k1 })
        .await
        .expect("unlock");
    let k2 = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("in time")
        .expect("task")
        .expect("lock");
    assert_eq!(k2.into_inner().key, format!("l/{l2:x}").into_bytes());
    let e = lock
        .lock(lk::LockRequest {
            name: "l".into(),
            lease: 999,
        })
        .await
        .expect_err("unknown lease");
    assert_eq!(e.message(), "etcdserver: requested lease not found");

    let mut el = ElectionClient::new(s.channel().await);
    let c = el
        .campaign(el::CampaignRequest {
            name: "e".into(),
            lease: l1,
            value: "a".into(),
        })
        .await
        .expect("campaign")
        .into_inner();
    let leader = c.leader.expect("leader key");
    let now = el
        .leader(el::LeaderRequest { name: "e".into() })
        .await
        .expect("leader")
        .into_inner();
    assert_eq!(now.kv.expect("kv").value, b"a");
    let mut obs = el
        .observe(el::LeaderRequest { name: "e".into() })
        .await
        .expect("observe")
        .into_inner();
    let first = obs.message().await.expect("ok").expect("msg");
    assert_eq!(first.kv.expect("kv").value, b"a");
    el.proclaim(el::ProclaimRequest {
        leader: Some(leader.clone()),
        value: "b".into(),
    })
    .await
    .expect("proclaim");
    let next = tokio::time::timeout(Duration::from_secs(10), obs.message())
        .await
        .expect("in time")
        .expect("ok");
    assert_eq!(next.expect("msg").kv.expect("kv").value, b"b");
    el.resign(el::ResignRequest {
        leader: Some(leader.clone()),
    })
    .await
    .expect("resign");
    let e = el
        .leader(el::LeaderRequest { name: "e".into() })
        .await
        .expect_err("no leader");
    assert_eq!(
        (e.code(), e.message()),
        (Code::Unknown, "election: no leader")
    );
    let e = el
        .proclaim(el::ProclaimRequest {
            leader: Some(leader),
            value: "c".into(),
        })
        .await
        .expect_err("resigned");
    assert_eq!(e.message(), "election: not leader");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn periodic_auto_compaction() {
    let cfg = janus_etcd::Config {
        auto_compaction_retention: "1s".into(),
        ..Default::default()
    };
    let s = start(cfg).await;
    let mut kv = s.kv().await;
    let first = kv
        .put(put("p", b"1"))
        .await
        .expect("put")
        .into_inner()
        .header
        .expect("h")
        .revision;
    kv.put(put("p", b"2")).await.expect("put");
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while s.node.state().compacted_revision() < first {
        assert!(std::time::Instant::now() < deadline, "no auto-compaction");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let e = kv
        .range(pb::RangeRequest {
            key: "p".into(),
            revision: first - 1,
            ..Default::default()
        })
        .await
        .expect_err("compacted");
    assert_eq!(
        e.message(),
        "etcdserver: mvcc: required revision has been compacted"
    );
}

/// A watcher that falls out of the shared event buffer (65k batches) is
/// caught up from the MVCC history: every event, in order, none twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagged_watcher_resyncs_from_history() {
    let s = start(janus_etcd::Config::default()).await;
    let mut w = WatchStream::open(&s).await;
    w.send(create("g/", "g0", |_| {})).await;
    assert!(w.next().await.created);
    let n = 70_000usize;
    let tasks_n = 64;
    let mut tasks = Vec::new();
    for t in 0..tasks_n {
        let mut kv = s.kv().await;
        tasks.push(tokio::spawn(async move {
            for i in 0..n / tasks_n + 1 {
                if t * (n / tasks_n + 1) + i >= n {
                    break;
                }
                // Large enough that the stalled client's flow-control
                // windows fill long before the buffer overflows.
                kv.put(put(&format!("g/{t}/{i}"), &[b'v'; 1024]))
                    .await
                    .expect("put");
            }
        }));
    }
    let started = std::time::Instant::now();
    for t in tasks {
        t.await.expect("writer");
    }
    eprintln!("{n} writes in {:?}", started.elapsed());
    let mut got = 0usize;
    let mut last = 0i64;
    while got < n {
        let r = w.next().await;
        for e in r.events {
            let rev = e.kv.expect("kv").mod_revision;
            assert!(rev > last, "in order, none twice");
            last = rev;
            got += 1;
        }
    }
    assert_eq!(got, n);
    assert!(
        janus_etcd::watch_resyncs() > 0,
        "the stream did fall behind"
    );
}

/// clientv3.WithRequireLeader (gRPC metadata `hasleader: true`, set by
/// Kubernetes on every watch): as etcd does, a member without a leader
/// refuses such a watch stream, and ends an open one with "etcdserver: no
/// leader" after three election timeouts without a leader; streams without
/// the metadata go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_leader_watch_streams_end_without_a_leader() {
    // Two members, so that the survivor of the leader cannot elect one.
    let dirs = [
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    ];
    let peers: Vec<String> = (0..2)
        .map(|_| format!("127.0.0.1:{}", free_port()))
        .collect();
    let initial: std::collections::BTreeMap<u64, String> =
        [(1, peers[0].clone()), (2, peers[1].clone())].into();
    let mut nodes = Vec::new();
    for (i, dir) in dirs.iter().enumerate() {
        let id = i as u64 + 1;
        let cfg = NodeConfig {
            initial_cluster: initial.clone(),
            heartbeat_ms: 50,
            election_timeout_ms: 300,
            ..NodeConfig::single(id, peers[i].clone(), dir.path().to_path_buf())
        };
        let node = RaftNode::start(cfg, None).await.expect("node");
        let addr: std::net::SocketAddr = peers[i].parse().expect("addr");
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(janus_raft::PeerService::server(node.clone()))
                .serve(addr),
        );
        nodes.push(node);
    }
    let leader = nodes[0]
        .wait_for_leader(Duration::from_secs(20))
        .await
        .expect("leader");
    let (leader, follower) = if leader == 1 {
        (nodes[0].clone(), nodes[1].clone())
    } else {
        (nodes[1].clone(), nodes[0].clone())
    };
    follower
        .wait_for_leader(Duration::from_secs(20))
        .await
        .expect("the follower knows the leader");
    let addr = format!("127.0.0.1:{}", free_port());
    tokio::spawn(janus_etcd::serve(
        follower.clone(),
        addr.clone(),
        janus_etcd::Config::default(),
        axum::Router::new(),
        std::future::pending(),
    ));
    let channel = loop {
        if let Ok(c) = Channel::from_shared(format!("http://{addr}"))
            .expect("uri")
            .connect()
            .await
        {
            break c;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let open = |require_leader: bool| {
        let channel = channel.clone();
        async move {
            let (tx, rx) = mpsc::channel(16);
            let mut req = tonic::Request::new(ReceiverStream::new(rx));
            if require_leader {
                req.metadata_mut()
                    .insert("hasleader", "true".parse().expect("metadata"));
            }
            tx.send(create("k", "", |_| {})).await.expect("send");
            WatchClient::new(channel)
                .watch(req)
                .await
                .map(|r| WatchStream {
                    tx,
                    rx: r.into_inner(),
                })
        }
    };
    let mut with = open(true).await.expect("a leader is known: watch opens");
    let mut without = open(false).await.expect("watch opens");
    assert!(with.next().await.created);
    assert!(without.next().await.created);

    leader.shutdown().await;
    // Noticing the loss takes an election timeout or two; then three
    // checks, one per election timeout.
    let started = std::time::Instant::now();
    let end = tokio::time::timeout(Duration::from_secs(30), with.rx.message())
        .await
        .expect("the stream ends in time");
    let st = end.expect_err("the stream ends with an error");
    assert_eq!(
        (st.code(), st.message()),
        (Code::Unavailable, "etcdserver: no leader")
    );
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "not at once, after several checks ({:?})",
        started.elapsed()
    );
    let st = open(true)
        .await
        .err()
        .expect("no leader: a new stream is refused");
    assert_eq!(
        (st.code(), st.message()),
        (Code::Unavailable, "etcdserver: no leader")
    );
    // Without the metadata the stream is served as before.
    without
        .send(pb::WatchRequest {
            request_union: Some(pb::watch_request::RequestUnion::ProgressRequest(
                pb::WatchProgressRequest {},
            )),
        })
        .await;
    let r = without.next().await;
    assert_eq!(r.watch_id, -1, "a progress response: {r:?}");
    assert!(open(false).await.is_ok());
}
