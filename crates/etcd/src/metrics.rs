//! etcd's metric names, in Prometheus text, for the binary's `/metrics`
//! (see [`text`]): server and Raft state, the MVCC key space, client gRPC
//! traffic, and go-grpc-prometheus's per-method counters.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use http_body::{Frame, SizeHint};
use janus_core::{Event, RangeRequest};
use janus_raft::RaftNode;

static PUTS: AtomicU64 = AtomicU64::new(0);
static DELETES: AtomicU64 = AtomicU64::new(0);
static PENDING: AtomicI64 = AtomicI64::new(0);
static RECEIVED_BYTES: AtomicU64 = AtomicU64::new(0);
static SENT_BYTES: AtomicU64 = AtomicU64::new(0);
static LEADER_CHANGES: AtomicU64 = AtomicU64::new(0);

/// (grpc_type, grpc_service, grpc_method)
type RpcKey = (&'static str, String, String);

#[derive(Default)]
struct RpcCounts {
    started: u64,
    handled: BTreeMap<&'static str, u64>,
}

static RPCS: Mutex<BTreeMap<RpcKey, RpcCounts>> = Mutex::new(BTreeMap::new());

fn rpcs() -> std::sync::MutexGuard<'static, BTreeMap<RpcKey, RpcCounts>> {
    RPCS.lock().unwrap_or_else(|p| p.into_inner())
}

/// Count the puts and deletes of an applied batch (etcd counts per key).
pub(crate) fn count_events(events: &[Event]) {
    let (mut puts, mut dels) = (0, 0);
    for e in events {
        match e {
            Event::KvPut { .. } => puts += 1,
            Event::KvDelete { .. } => dels += 1,
            _ => {}
        }
    }
    PUTS.fetch_add(puts, Ordering::Relaxed);
    DELETES.fetch_add(dels, Ordering::Relaxed);
}

/// One etcd write in flight (`etcd_server_proposals_pending`).
pub(crate) struct Pending;

impl Pending {
    pub(crate) fn start() -> Pending {
        PENDING.fetch_add(1, Ordering::Relaxed);
        Pending
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        PENDING.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Count leader changes seen (etcd counts the first election too).
pub(crate) async fn watch_leader(node: Arc<RaftNode>) {
    let mut rx = node.watch_metrics();
    let mut last = None;
    loop {
        let leader = rx.borrow_and_update().current_leader;
        if leader.is_some() && leader != last {
            LEADER_CHANGES.fetch_add(1, Ordering::Relaxed);
        }
        if leader.is_some() {
            last = leader;
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

fn grpc_type(service: &str, method: &str) -> &'static str {
    match (service, method) {
        ("etcdserverpb.Watch", "Watch") | ("etcdserverpb.Lease", "LeaseKeepAlive") => "bidi_stream",
        ("etcdserverpb.Maintenance", "Snapshot")
        | ("v3electionpb.Election", "Observe")
        | ("grpc.health.v1.Health", "Watch") => "server_stream",
        _ => "unary",
    }
}

fn code_name(code: &[u8]) -> &'static str {
    match code {
        b"0" => "OK",
        b"1" => "Canceled",
        b"2" => "Unknown",
        b"3" => "InvalidArgument",
        b"4" => "DeadlineExceeded",
        b"5" => "NotFound",
        b"6" => "AlreadyExists",
        b"7" => "PermissionDenied",
        b"8" => "ResourceExhausted",
        b"9" => "FailedPrecondition",
        b"10" => "Aborted",
        b"11" => "OutOfRange",
        b"12" => "Unimplemented",
        b"13" => "Internal",
        b"14" => "Unavailable",
        b"15" => "DataLoss",
        b"16" => "Unauthenticated",
        _ => "Unknown",
    }
}

fn handled(key: &RpcKey, code: &'static str) {
    *rpcs()
        .entry(key.clone())
        .or_default()
        .handled
        .entry(code)
        .or_default() += 1;
}

/// A body that counts its data bytes and, for a gRPC response, records the
/// call as handled with the code of its trailers.
struct Counted {
    inner: Body,
    bytes: &'static AtomicU64,
    rpc: Option<RpcKey>,
}

impl http_body::Body for Counted {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_frame(cx);
        match &r {
            Poll::Ready(Some(Ok(f))) => {
                if let Some(d) = f.data_ref() {
                    this.bytes.fetch_add(d.len() as u64, Ordering::Relaxed);
                }
                if let Some(t) = f.trailers_ref() {
                    if let Some(key) = this.rpc.take() {
                        let code = t
                            .get("grpc-status")
                            .map_or("Unknown", |v| code_name(v.as_bytes()));
                        handled(&key, code);
                    }
                }
            }
            Poll::Ready(None) => {
                if let Some(key) = this.rpc.take() {
                    handled(&key, "Unknown");
                }
            }
            _ => {}
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        // The client went away before the call finished.
        if let Some(key) = self.rpc.take() {
            handled(&key, "Canceled");
        }
    }
}

/// Middleware on the gRPC routes: go-grpc-prometheus's started/handled
/// counters and etcd's client gRPC byte counters.
pub(crate) async fn grpc_layer(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let Some((service, method)) = req
        .uri()
        .path()
        .strip_prefix('/')
        .and_then(|p| p.split_once('/'))
        .map(|(s, m)| (s.to_string(), m.to_string()))
    else {
        return next.run(req).await;
    };
    // Only etcd's own services, and a bounded number of series: the path
    // is the client's to choose.
    let known = matches!(
        service.as_str(),
        "etcdserverpb.KV"
            | "etcdserverpb.Watch"
            | "etcdserverpb.Lease"
            | "etcdserverpb.Cluster"
            | "etcdserverpb.Maintenance"
            | "etcdserverpb.Auth"
            | "v3lockpb.Lock"
            | "v3electionpb.Election"
            | "grpc.health.v1.Health"
    ) && !method.is_empty()
        && method.len() <= 64
        && method
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_');
    let key: RpcKey = (grpc_type(&service, &method), service, method);
    let counted = known && {
        let mut map = rpcs();
        let room = map.len() < 512 || map.contains_key(&key);
        if room {
            map.entry(key.clone()).or_default().started += 1;
        }
        room
    };
    if !counted {
        return next.run(req).await;
    }
    let req = req.map(|b| {
        Body::new(Counted {
            inner: b,
            bytes: &RECEIVED_BYTES,
            rpc: None,
        })
    });
    let resp = next.run(req).await;
    // A trailers-only answer (an error before any message) carries its
    // status in the headers.
    let rpc = match resp.headers().get("grpc-status") {
        Some(v) => {
            handled(&key, code_name(v.as_bytes()));
            None
        }
        None => Some(key),
    };
    resp.map(|b| {
        Body::new(Counted {
            inner: b,
            bytes: &SENT_BYTES,
            rpc,
        })
    })
}

struct Text(String);

impl Text {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        self.0
            .push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
    }
    fn one(&mut self, name: &str, kind: &str, help: &str, v: impl std::fmt::Display) {
        self.family(name, kind, help);
        self.0.push_str(&format!("{name} {v}\n"));
    }
}

/// etcd's metrics for `node`, in Prometheus text (no `# EOF`).
pub fn text(node: &RaftNode) -> String {
    let m = node.metrics();
    let applied = m.last_applied.map_or(0, |l| l.index);
    let committed = node.committed.load(Ordering::Relaxed).max(applied);
    let (size, keys) = {
        let st = node.state();
        let all = RangeRequest {
            key: vec![0],
            range_end: vec![0],
            count_only: true,
            ..RangeRequest::default()
        };
        (
            crate::quota::db_size(&st),
            st.kv_range(&all).map_or(0, |r| r.count),
        )
    };
    let mut t = Text(String::new());
    let g = "gauge";
    let c = "counter";
    t.one(
        "etcd_server_has_leader",
        g,
        "Whether or not a leader exists. 1 is existence, 0 is not.",
        m.current_leader.is_some() as u8,
    );
    t.one(
        "etcd_server_is_leader",
        g,
        "Whether or not this member is a leader. 1 if is, 0 otherwise.",
        (m.current_leader == Some(node.id)) as u8,
    );
    t.one(
        "etcd_server_leader_changes_seen_total",
        c,
        "The number of leader changes seen.",
        LEADER_CHANGES.load(Ordering::Relaxed),
    );
    t.one(
        "etcd_server_proposals_committed_total",
        g,
        "The total number of consensus proposals committed.",
        committed,
    );
    t.one(
        "etcd_server_proposals_applied_total",
        g,
        "The total number of consensus proposals applied.",
        applied,
    );
    t.one(
        "etcd_server_proposals_pending",
        g,
        "The current number of pending proposals to commit.",
        PENDING.load(Ordering::Relaxed).max(0),
    );
    t.one(
        "etcd_server_proposals_failed_total",
        c,
        "The total number of failed proposals seen.",
        node.stats.proposals_failed.load(Ordering::Relaxed),
    );
    t.one(
        "etcd_server_quota_backend_bytes",
        g,
        "Current backend storage quota size in bytes.",
        crate::quota::QUOTA.load(Ordering::Relaxed),
    );
    t.one(
        "etcd_mvcc_db_total_size_in_bytes",
        g,
        "Total size of the underlying database physically allocated in bytes.",
        size,
    );
    t.one(
        "etcd_mvcc_db_total_size_in_use_in_bytes",
        g,
        "Total size of the underlying database logically in use in bytes.",
        size,
    );
    t.one(
        "etcd_debugging_mvcc_keys_total",
        g,
        "Total number of keys.",
        keys,
    );
    t.one(
        "etcd_mvcc_put_total",
        c,
        "Total number of puts seen by this member.",
        PUTS.load(Ordering::Relaxed),
    );
    t.one(
        "etcd_mvcc_delete_total",
        c,
        "Total number of deletes seen by this member.",
        DELETES.load(Ordering::Relaxed),
    );
    t.one(
        "etcd_network_client_grpc_received_bytes_total",
        c,
        "The total number of bytes received from grpc clients.",
        RECEIVED_BYTES.load(Ordering::Relaxed),
    );
    t.one(
        "etcd_network_client_grpc_sent_bytes_total",
        c,
        "The total number of bytes sent to grpc clients.",
        SENT_BYTES.load(Ordering::Relaxed),
    );
    let rpcs = rpcs();
    t.family(
        "grpc_server_started_total",
        c,
        "Total number of RPCs started on the server.",
    );
    for ((ty, svc, method), n) in rpcs.iter() {
        t.0.push_str(&format!(
            "grpc_server_started_total{{grpc_method=\"{method}\",grpc_service=\"{svc}\",grpc_type=\"{ty}\"}} {}\n",
            n.started
        ));
    }
    t.family(
        "grpc_server_handled_total",
        c,
        "Total number of RPCs completed on the server, regardless of success or failure.",
    );
    for ((ty, svc, method), n) in rpcs.iter() {
        for (code, k) in &n.handled {
            t.0.push_str(&format!(
                "grpc_server_handled_total{{grpc_code=\"{code}\",grpc_method=\"{method}\",grpc_service=\"{svc}\",grpc_type=\"{ty}\"}} {k}\n"
            ));
        }
    }
    t.0
}
