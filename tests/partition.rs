//! Check-quorum: a leader cut off from the other members steps down
//! within about an election timeout, as etcd's does, so clients stop
//! trusting it. Three members with etcd's default timing (100 ms
//! heartbeat, 1 s election timeout), every peer link through a
//! fault-injecting proxy; the leader's links are blackholed (connections
//! hang, nothing flows). Then:
//! - its `/health` answers `{"health":"false"}`;
//! - an etcd watch that asked for a leader (`hasleader: true`, as the Go
//!   client's `WithRequireLeader`) ends with `etcdserver: no leader`;
//! - a ZooKeeper client that allows read-only sessions connects to it and
//!   reads within its session timeout, and a read-write one is refused;
//! - the other two elect a leader and take writes;
//! - once the links heal, the old leader follows and serves writes again.

#[path = "zk_support.rs"]
mod zk_support;

use std::time::{Duration, Instant};

use janus_etcd::pb::etcdserverpb::{self as pb, kv_client::KvClient, watch_client::WatchClient};
use janus_tests::proxy::Fault;
use janus_tests::{start_proxied_cluster, wait_leader, Janus};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};
use zk_support::{four_letter, string, Raw};

const ELECTION_TIMEOUT: Duration = Duration::from_millis(1000);

fn channel(addr: &str) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(10))
        .connect_lazy()
}

fn wait_for(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) -> Duration {
    let t0 = Instant::now();
    while !ok() {
        assert!(t0.elapsed() < timeout, "{what}: not within {timeout:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    t0.elapsed()
}

fn healthy(m: &Janus) -> bool {
    matches!(m.http_get("/health"), Ok((200, b)) if b.contains("\"health\":\"true\""))
}

fn unhealthy(m: &Janus) -> bool {
    matches!(m.http_get("/health"), Ok((_, b)) if b.contains("\"health\":\"false\""))
}

async fn put(addr: &str, key: &str) -> Result<i64, tonic::Status> {
    let r = KvClient::new(channel(addr))
        .put(pb::PutRequest {
            key: key.as_bytes().to_vec(),
            value: b"v".to_vec(),
            ..Default::default()
        })
        .await?;
    Ok(r.into_inner().header.map_or(0, |h| h.revision))
}

/// A watch on `key` that requires a leader.
async fn watch_requiring_leader(addr: &str, key: &str) -> tonic::Streaming<pb::WatchResponse> {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.send(pb::WatchRequest {
        request_union: Some(pb::watch_request::RequestUnion::CreateRequest(
            pb::WatchCreateRequest {
                key: key.as_bytes().to_vec(),
                ..Default::default()
            },
        )),
    })
    .await
    .expect("send create");
    // The request stream stays open as long as the sender lives.
    std::mem::forget(tx);
    let mut req = tonic::Request::new(ReceiverStream::new(rx));
    req.metadata_mut().insert(
        "hasleader",
        tonic::metadata::MetadataValue::from_static("true"),
    );
    let mut s = WatchClient::new(channel(addr))
        .watch(req)
        .await
        .expect("watch")
        .into_inner();
    let created = s.message().await.expect("created").expect("a response");
    assert!(created.created);
    s
}

#[test]
fn a_leader_cut_off_from_its_quorum_steps_down() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // The proxies run on a runtime of their own: start them outside ours.
    let (members, proxies) = start_proxied_cluster(
        tmp.path(),
        3,
        "heartbeat_ms = 100\nelection_timeout_ms = 1000\n[zookeeper]\nfour_letter_words = [\"*\"]\n",
        &[],
    );
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(cut_off_leader(&members, &proxies));
}

async fn cut_off_leader(members: &[Janus], proxies: &janus_tests::proxy::Proxies) {
    for m in members {
        m.wait_healthy(Duration::from_secs(60));
    }
    let leader = wait_leader(members);
    let old = &members[leader];
    let others: Vec<usize> = (0..3).filter(|i| *i != leader).collect();

    // Data to read back on the cut-off member.
    put(&old.etcd, "before").await.expect("put before the cut");
    let mut zk = Raw::connect(&old.zk);
    assert_eq!(zk.create("/before", 0), 0);
    drop(zk);
    let mut watch = watch_requiring_leader(&old.etcd, "w").await;

    // Cut the leader off: its peer connections hang.
    proxies.links.isolate(leader, Fault::Blackhole);
    let cut = Instant::now();

    let stepped_down = wait_for(
        "the cut-off leader's /health says false",
        ELECTION_TIMEOUT * 4,
        || unhealthy(old),
    );
    println!(
        "partition: /health false on the cut-off leader {} ms after the cut",
        stepped_down.as_millis()
    );
    // etcd's leader steps down once an election timeout passes without a
    // quorum; allow one more for the check's period and the probe.
    assert!(
        cut.elapsed() <= ELECTION_TIMEOUT * 2 + Duration::from_millis(500),
        "stepped down after {stepped_down:?}"
    );

    // The watch that wanted a leader ends as etcd ends it.
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match watch.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => return None,
                Err(status) => return Some(status),
            }
        }
    })
    .await
    .expect("the hasleader watch ended");
    let status = ended.expect("the watch ended with an error status");
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert_eq!(status.message(), "etcdserver: no leader");
    println!(
        "partition: hasleader watch ended {} ms after the cut",
        cut.elapsed().as_millis()
    );

    // ZooKeeper: the member turns read-only; a read-only client connects
    // and reads within its session timeout; a read-write client is refused.
    let zk_addr = old.zk.clone();
    wait_for(
        "the cut-off member turns read-only",
        ELECTION_TIMEOUT * 5,
        || four_letter(&zk_addr, "isro") == "ro",
    );
    let session_timeout = 4000;
    let t0 = Instant::now();
    let mut s = Raw::tcp(&old.zk);
    let (t, sid, ro) =
        Raw::connect_read_only(&mut s, session_timeout).expect("a read-only session");
    assert!(t > 0 && sid != 0 && ro == 1, "read-only ConnectResponse");
    let mut ro_client = Raw {
        s,
        session: sid,
        passwd: vec![],
        timeout: t,
        xid: 0,
    };
    let mut get = string("/before");
    get.push(0);
    let (err, _, _) = ro_client.call(4, &get);
    assert_eq!(err, 0, "getData on the read-only session");
    assert!(
        t0.elapsed() < Duration::from_millis(session_timeout as u64),
        "read-only connect and read took {:?}",
        t0.elapsed()
    );
    let mut s = Raw::tcp(&old.zk);
    assert!(
        Raw::handshake(&mut s, 0, session_timeout, 0, &[0; 16]).is_none(),
        "a read-write client is refused by the member without a quorum"
    );

    // The other two carry on.
    let mut majority_rev = 0;
    let deadline = Instant::now() + Duration::from_secs(15);
    while majority_rev == 0 {
        match put(&members[others[0]].etcd, "during").await {
            Ok(rev) => majority_rev = rev,
            Err(e) => assert!(
                Instant::now() < deadline,
                "no write on the majority side: {e}"
            ),
        }
    }

    // Healed: the old leader follows the new one and serves writes again.
    proxies.links.heal();
    wait_for(
        "the old leader healthy again",
        Duration::from_secs(30),
        || healthy(old),
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match put(&old.etcd, "after").await {
            Ok(rev) => {
                assert!(rev > majority_rev);
                break;
            }
            Err(e) => assert!(Instant::now() < deadline, "no write after healing: {e}"),
        }
    }
    assert_eq!(four_letter(&old.zk, "isro"), "rw");
    let mut zk = Raw::connect(&old.zk);
    assert_eq!(zk.create("/after", 0), 0);
}

/// The leader all running members name, if they agree.
fn agreed_leader(members: &[Janus], running: &[usize]) -> Option<usize> {
    let named: std::collections::BTreeSet<Option<usize>> = running
        .iter()
        .map(|i| {
            let (_, body) = members[*i].http_get("/metrics").ok()?;
            let id: usize = body
                .lines()
                .find_map(|l| l.strip_prefix("janus_raft_leader_id "))?
                .trim()
                .parse()
                .ok()?;
            id.checked_sub(1)
        })
        .collect();
    match named.into_iter().collect::<Vec<_>>()[..] {
        [Some(l)] if running.contains(&l) => Some(l),
        _ => None,
    }
}

fn wait_agreed(members: &[Janus], running: &[usize], what: &str) -> usize {
    let t0 = Instant::now();
    loop {
        if let Some(l) = agreed_leader(members, running) {
            println!(
                "partition: {what}: member {} after {} ms",
                l + 1,
                t0.elapsed().as_millis()
            );
            return l;
        }
        if t0.elapsed() > Duration::from_secs(15) {
            let logs: String = running
                .iter()
                .map(|m| format!("\n--- member {} ---\n{}", m + 1, members[*m].log_tail(60)))
                .collect();
            panic!("{what}: no agreed leader in 15 s{logs}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A leader stopped (SIGSTOP) past its election timeout wakes up still
/// calling itself leader and steps down; right after, the new leader is cut
/// off, and the two others (one of them the woken member) elect one of
/// themselves, and all three agree again once the cut heals.
#[test]
fn a_woken_leader_steps_down_and_the_next_cut_elects() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let log: Vec<(String, String)> = std::env::var("JANUS_PARTITION_LOG")
        .map(|v| vec![("RUST_LOG".to_string(), v)])
        .unwrap_or_default();
    let (members, proxies) = start_proxied_cluster(
        tmp.path(),
        3,
        "heartbeat_ms = 100\nelection_timeout_ms = 800\n",
        &log,
    );
    for m in &members {
        m.wait_healthy(Duration::from_secs(60));
    }
    let all = [0, 1, 2];
    for round in 0..3 {
        let first = wait_agreed(&members, &all, "leader");
        let pid = members[first].child.as_ref().map_or(0, |c| c.id()) as libc::pid_t;
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(pid, libc::SIGSTOP) };
        std::thread::sleep(Duration::from_secs(3));
        unsafe { libc::kill(pid, libc::SIGCONT) };
        let second = wait_agreed(&members, &all, "leader after the stopped one woke");
        proxies.links.isolate(second, Fault::Blackhole);
        let rest: Vec<usize> = all.iter().copied().filter(|i| *i != second).collect();
        wait_agreed(
            &members,
            &rest,
            &format!("round {round}: leader of the two left"),
        );
        std::thread::sleep(Duration::from_secs(2));
        proxies.links.heal();
        wait_agreed(&members, &all, "leader after healing");
    }
}
