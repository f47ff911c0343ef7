//! etcdserverpb.Cluster and Maintenance, and grpc.health.v1.Health.
//!
//! The Cluster service maps etcd's Member* RPCs onto the one Raft
//! membership (`janus_raft::MembershipOp`), with etcd's checks and errors.

use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use janus_core::{RangeRequest, State};
use tonic::{Request, Response, Status};

use crate::error::RpcError;
use crate::pb::etcdserverpb::{self as pb, cluster_server, maintenance_server};
use crate::pb::health::{self, health_server};
use crate::Ctx;

pub struct Cluster(pub Arc<Ctx>);
pub struct Maintenance(pub Arc<Ctx>);
pub struct Health(pub Arc<Ctx>);

type Boxed<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

impl Ctx {
    /// The applied membership as etcd members. Member ids are derived from
    /// Raft node ids (see `member_id_of`); a member added but not yet
    /// started has no name and no client URLs, as in etcd.
    fn members(&self) -> Vec<pb::Member> {
        self.node
            .members()
            .into_iter()
            .map(|(id, node, voter)| pb::Member {
                id: self.member_id_of(id),
                name: node.name.clone(),
                peer_ur_ls: node.peer_urls(),
                client_ur_ls: node.client_urls.clone(),
                is_learner: !voter,
            })
            .collect()
    }

    /// The Raft node id behind an etcd member id.
    fn node_of(&self, member: u64) -> Option<u64> {
        self.node
            .members()
            .into_iter()
            .map(|(id, _, _)| id)
            .find(|id| self.member_id_of(*id) == member)
    }

    fn node_of_or_not_found(&self, member: u64) -> Result<u64, RpcError> {
        self.node_of(member).ok_or(RpcError::MemberNotFound)
    }
}

/// etcd's `types.NewURLs` check (http/https with host:port and no path),
/// sorted as etcd sorts them.
fn peer_urls(urls: &[String]) -> Result<Vec<String>, RpcError> {
    if urls.is_empty() {
        return Err(RpcError::MemberBadUrls);
    }
    let mut out = Vec::with_capacity(urls.len());
    for u in urls {
        let u = u.trim();
        let ok = match u.split_once("://") {
            Some(("http" | "https", rest)) => janus_raft::url_addr(rest).is_some(),
            _ => false,
        };
        if !ok {
            return Err(RpcError::MemberBadUrls);
        }
        out.push(u.to_string());
    }
    out.sort();
    Ok(out)
}

#[tonic::async_trait]
impl cluster_server::Cluster for Cluster {
    async fn member_add(
        &self,
        req: Request<pb::MemberAddRequest>,
    ) -> Result<Response<pb::MemberAddResponse>, Status> {
        self.0.require_admin(&crate::auth::Creds::of(&req))?;
        let req = req.into_inner();
        let urls = peer_urls(&req.peer_ur_ls)?;
        let addr = janus_raft::url_addr(&urls[0]).ok_or(RpcError::MemberBadUrls)?;
        let node = janus_raft::Member {
            addr,
            peer_urls: urls.clone(),
            ..Default::default()
        };
        let done = self
            .0
            .node
            .change_membership(janus_raft::MembershipOp::Add {
                node,
                learner: req.is_learner,
                max_learners: self.0.cfg.max_learners,
            })
            .await
            .map_err(RpcError::from)?;
        Ok(Response::new(pb::MemberAddResponse {
            header: Some(self.0.header(0)),
            member: Some(pb::Member {
                id: self.0.member_id_of(done.id),
                name: String::new(),
                peer_ur_ls: urls,
                client_ur_ls: Vec::new(),
                is_learner: req.is_learner,
            }),
            members: self.0.members(),
        }))
    }

    async fn member_remove(
        &self,
        req: Request<pb::MemberRemoveRequest>,
    ) -> Result<Response<pb::MemberRemoveResponse>, Status> {
        self.0.require_admin(&crate::auth::Creds::of(&req))?;
        let id = self.0.node_of_or_not_found(req.get_ref().id)?;
        self.0
            .node
            .change_membership(janus_raft::MembershipOp::Remove { id })
            .await
            .map_err(RpcError::from)?;
        Ok(Response::new(pb::MemberRemoveResponse {
            header: Some(self.0.header(0)),
            members: self.0.members(),
        }))
    }

    async fn member_update(
        &self,
        req: Request<pb::MemberUpdateRequest>,
    ) -> Result<Response<pb::MemberUpdateResponse>, Status> {
        self.0.require_admin(&crate::auth::Creds::of(&req))?;
        let req = req.into_inner();
        let id = self.0.node_of_or_not_found(req.id)?;
        let urls = peer_urls(&req.peer_ur_ls)?;
        self.0
            .node
            .change_membership(janus_raft::MembershipOp::Update {
                id,
                peer_urls: urls,
            })
            .await
            .map_err(RpcError::from)?;
        Ok(Response::new(pb::MemberUpdateResponse {
            header: Some(self.0.header(0)),
            members: self.0.members(),
        }))
    }

    async fn member_list(
        &self,
        req: Request<pb::MemberListRequest>,
    ) -> Result<Response<pb::MemberListResponse>, Status> {
        if req.get_ref().linearizable {
            self.0.node.read_index().await.map_err(RpcError::from)?;
        }
        Ok(Response::new(pb::MemberListResponse {
            header: Some(self.0.header(0)),
            members: self.0.members(),
        }))
    }

    async fn member_promote(
        &self,
        req: Request<pb::MemberPromoteRequest>,
    ) -> Result<Response<pb::MemberPromoteResponse>, Status> {
        self.0.require_admin(&crate::auth::Creds::of(&req))?;
        let id = self.0.node_of_or_not_found(req.get_ref().id)?;
        self.0
            .node
            .change_membership(janus_raft::MembershipOp::Promote { id })
            .await
            .map_err(RpcError::from)?;
        Ok(Response::new(pb::MemberPromoteResponse {
            header: Some(self.0.header(0)),
            members: self.0.members(),
        }))
    }
}

/// CRC-32C (Castagnoli), the checksum etcd's hashes use.
fn crc32c(mut crc: u32, data: &[u8]) -> u32 {
    crc = !crc;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A hash of every key's version visible at `rev` (a consistency check
/// between members; the numbers differ from etcd's, whose backend differs).
fn hash_kv(st: &State, rev: i64) -> Result<u32, RpcError> {
    let req = RangeRequest {
        key: vec![0],
        range_end: vec![0],
        revision: rev,
        ..RangeRequest::default()
    };
    let res = st.kv_range(&req)?;
    let mut h = 0u32;
    for kv in &res.kvs {
        h = crc32c(h, &kv.key);
        for n in [kv.create_revision, kv.mod_revision, kv.version, kv.lease] {
            h = crc32c(h, &n.to_be_bytes());
        }
        h = crc32c(h, &kv.value);
    }
    Ok(h)
}

const SNAPSHOT_CHUNK: usize = 32 * 1024;

/// Stream a backup framed as etcd frames a snapshot: the data in chunks
/// counting down the bytes still to come, then its SHA-256 alone
/// (remaining 0); no headers. Stops when the client goes away.
fn send_backup(
    mut backup: janus_raft::Backup,
    tx: tokio::sync::mpsc::Sender<Result<pb::SnapshotResponse, Status>>,
) {
    use sha2::Digest;
    use std::io::Read;
    let mut left = backup.len();
    let mut hash = sha2::Sha256::new();
    let mut buf = vec![0u8; SNAPSHOT_CHUNK];
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        if let Err(e) = backup.read_exact(&mut buf[..want]) {
            tracing::warn!("snapshot for a client: {e}");
            let _ = tx.blocking_send(Err(Status::internal(e.to_string())));
            return;
        }
        hash.update(&buf[..want]);
        left -= want as u64;
        let msg = pb::SnapshotResponse {
            header: None,
            remaining_bytes: left,
            blob: buf[..want].to_vec(),
            version: String::new(),
        };
        if tx.blocking_send(Ok(msg)).is_err() {
            return;
        }
    }
    let _ = tx.blocking_send(Ok(pb::SnapshotResponse {
        header: None,
        remaining_bytes: 0,
        blob: hash.finalize().to_vec(),
        version: String::new(),
    }));
}

#[tonic::async_trait]
impl maintenance_server::Maintenance for Maintenance {
    async fn alarm(
        &self,
        req: Request<pb::AlarmRequest>,
    ) -> Result<Response<pb::AlarmResponse>, Status> {
        // etcd: listing alarms needs a user, changing them needs root.
        let c = crate::auth::Creds::of(&req);
        if req.get_ref().action == pb::alarm_request::AlarmAction::Get as i32 {
            self.0.require_auth_info(&c)?;
        } else {
            self.0.require_admin(&c)?;
        }
        Ok(Response::new(self.0.alarm(req.into_inner()).await?))
    }

    async fn status(
        &self,
        req: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        self.0.require_auth_info(&crate::auth::Creds::of(&req))?;
        let m = self.0.node.metrics();
        let leader = m.current_leader.map_or(0, |l| self.0.member_id_of(l));
        let applied = m.last_applied.map_or(0, |l| l.index);
        let committed = self.0.node.committed.load(Ordering::Relaxed).max(applied);
        // The quota's estimate (crate::quota): RocksDB holds both
        // personalities, so no file size would be etcd's alone.
        let size = crate::quota::db_size(&self.0.node.state()) as i64;
        let mut errors = if m.current_leader.is_none() {
            vec!["etcdserver: no leader".to_string()]
        } else {
            Vec::new()
        };
        errors.extend(self.0.alarm_errors());
        Ok(Response::new(pb::StatusResponse {
            header: Some(self.0.header_now()),
            version: self.0.cfg.version.clone(),
            db_size: size,
            leader,
            raft_index: committed,
            raft_term: m.current_term,
            raft_applied_index: applied,
            errors,
            db_size_in_use: size,
            is_learner: self
                .0
                .node
                .members()
                .iter()
                .any(|(id, _, voter)| *id == self.0.node.id && !voter),
            storage_version: String::new(),
            // etcd 3.6's field; 3.5 (the version Janus reports) leaves it 0.
            db_size_quota: 0,
            downgrade_info: None,
        }))
    }

    async fn defragment(
        &self,
        req: Request<pb::DefragmentRequest>,
    ) -> Result<Response<pb::DefragmentResponse>, Status> {
        self.0.require_admin_raw(&crate::auth::Creds::of(&req))?;
        // RocksDB compacts in the background: nothing to do. etcd's answer
        // carries no header.
        Ok(Response::new(pb::DefragmentResponse { header: None }))
    }

    async fn hash(
        &self,
        req: Request<pb::HashRequest>,
    ) -> Result<Response<pb::HashResponse>, Status> {
        self.0.require_admin_raw(&crate::auth::Creds::of(&req))?;
        let (h, rev) = {
            let st = self.0.node.state();
            (hash_kv(&st, 0), st.revision())
        };
        Ok(Response::new(pb::HashResponse {
            header: Some(self.0.header(rev)),
            hash: h?,
        }))
    }

    async fn hash_kv(
        &self,
        req: Request<pb::HashKvRequest>,
    ) -> Result<Response<pb::HashKvResponse>, Status> {
        self.0.require_admin_raw(&crate::auth::Creds::of(&req))?;
        let want = req.get_ref().revision;
        let (h, rev, compacted) = {
            let st = self.0.node.state();
            (
                hash_kv(&st, want),
                st.revision(),
                crate::etcd_compacted_revision(&st),
            )
        };
        let hashed = if want > 0 { want } else { rev };
        // etcd's header carries the current revision, whichever was hashed.
        Ok(Response::new(pb::HashKvResponse {
            header: Some(self.0.header(rev)),
            hash: h?,
            compact_revision: compacted,
            hash_revision: hashed,
        }))
    }

    type SnapshotStream = Boxed<pb::SnapshotResponse>;

    async fn snapshot(
        &self,
        req: Request<pb::SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        self.0.require_admin_raw(&crate::auth::Creds::of(&req))?;
        // The whole replicated state (both personalities, the revision
        // clock, members) as a Janus backup: a checkpoint, read out while
        // applies go on. `janus snapshot restore` reads the file etcdctl
        // saves; etcd's `snapshot restore` cannot (its are bbolt files).
        let node = self.0.node.clone();
        let backup = tokio::task::spawn_blocking(move || node.backup())
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| Status::internal(e.to_string()))?;
        tracing::info!(
            revision = backup.revision(),
            bytes = backup.len(),
            "sending a snapshot to a client"
        );
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::task::spawn_blocking(move || send_backup(backup, tx));
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn move_leader(
        &self,
        req: Request<pb::MoveLeaderRequest>,
    ) -> Result<Response<pb::MoveLeaderResponse>, Status> {
        self.0.require_admin(&crate::auth::Creds::of(&req))?;
        // etcd: only the leader transfers; the transferee must be a voter.
        if self.0.node.leader().map(|(l, _)| l) != Some(self.0.node.id) {
            return Err(RpcError::NotLeader.into());
        }
        let target = req.get_ref().target_id;
        let to = self
            .0
            .node
            .members()
            .into_iter()
            .find(|(id, _, voter)| *voter && self.0.member_id_of(*id) == target)
            .map(|(id, _, _)| id);
        let Some(to) = to else {
            return Err(RpcError::BadLeaderTransferee.into());
        };
        if target == self.0.member_id() {
            // etcd's answer carries no header.
            return Ok(Response::new(pb::MoveLeaderResponse { header: None }));
        }
        // Answer before the client's deadline passes, so it sees etcd's
        // error rather than its own; without one, etcd's request timeout.
        let election = self.0.node.election_wait();
        let timeout = match grpc_timeout(&req) {
            Some(t) => t.saturating_sub((t / 10).min(Duration::from_millis(500))),
            None => Duration::from_secs(5) + election * 2,
        };
        match self.0.node.transfer_leadership(to, timeout).await {
            // etcd's answer carries no header.
            Ok(()) => Ok(Response::new(pb::MoveLeaderResponse { header: None })),
            Err(janus_raft::TransferError::NotLeader) => Err(RpcError::NotLeader.into()),
            Err(janus_raft::TransferError::BadTransferee) => {
                Err(RpcError::BadLeaderTransferee.into())
            }
            Err(janus_raft::TransferError::Timeout) => Err(RpcError::TimeoutLeaderTransfer.into()),
        }
    }

    async fn downgrade(
        &self,
        req: Request<pb::DowngradeRequest>,
    ) -> Result<Response<pb::DowngradeResponse>, Status> {
        self.0.require_admin(&crate::auth::Creds::of(&req))?;
        Err(Status::unimplemented("janus: downgrade is not supported"))
    }
}

/// The client's deadline from gRPC's `grpc-timeout` header (at most eight
/// digits and a unit), if it sent one.
fn grpc_timeout<T>(req: &Request<T>) -> Option<Duration> {
    let v = req.metadata().get("grpc-timeout")?.to_str().ok()?;
    let split = v.len().checked_sub(1)?;
    let (digits, unit) = (v.get(..split)?, v.get(split..)?);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

impl Health {
    fn status(&self, service: &str) -> Result<health::HealthCheckResponse, Status> {
        use health::health_check_response::ServingStatus;
        // etcd registers only the empty service name.
        if !service.is_empty() {
            return Err(Status::not_found("unknown service"));
        }
        let serving = self.0.node.leader().is_some();
        let status = if serving {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        Ok(health::HealthCheckResponse {
            status: status as i32,
        })
    }
}

#[tonic::async_trait]
impl health_server::Health for Health {
    async fn check(
        &self,
        req: Request<health::HealthCheckRequest>,
    ) -> Result<Response<health::HealthCheckResponse>, Status> {
        Ok(Response::new(self.status(&req.get_ref().service)?))
    }

    type WatchStream = Boxed<health::HealthCheckResponse>;

    async fn watch(
        &self,
        req: Request<health::HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let first = self.status(&req.get_ref().service)?;
        // Report the current status, then keep the stream open.
        let s = futures::stream::once(async move { Ok(first) }).chain(futures::stream::pending());
        Ok(Response::new(Box::pin(s)))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn grpc_timeout_header_is_read() {
        use std::time::Duration;
        let with = |v: &str| {
            let mut r = tonic::Request::new(());
            if let Ok(v) = v.parse() {
                r.metadata_mut().insert("grpc-timeout", v);
            }
            super::grpc_timeout(&r)
        };
        assert_eq!(with("4999875u"), Some(Duration::from_micros(4_999_875)));
        assert_eq!(with("5S"), Some(Duration::from_secs(5)));
        assert_eq!(with("300m"), Some(Duration::from_millis(300)));
        assert_eq!(with("2M"), Some(Duration::from_secs(120)));
        assert_eq!(with("5x"), None);
        assert_eq!(with("S"), None);
        assert_eq!(with(""), None);
    }

    #[test]
    fn crc32c_matches_the_standard_check_value() {
        assert_eq!(super::crc32c(0, b"123456789"), 0xE306_9283);
    }
}
