//! etcdserverpb.Lease: grants and revokes through Raft; keep-alives and
//! remaining TTLs from the leader's lessor (deadlines are not replicated).

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use futures::Stream;
use janus_core::{Command, EtcdError, EtcdResponse};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::auth::Creds;
use crate::error::RpcError;
use crate::pb::etcdserverpb::{self as pb, lease_server};
use crate::Ctx;

pub struct Lease(pub Arc<Ctx>);

/// etcd's `idutil.Generator`: the member id's low 16 bits, then the
/// millisecond clock's low 40 bits, then an 8-bit counter; the counter
/// part grows from there so ids stay unique on this member.
pub(crate) struct IdGen {
    next: AtomicU64,
}

impl IdGen {
    pub fn new(member_id: u64) -> IdGen {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let prefix = (member_id & 0xffff) << 48;
        let suffix = (ms & ((1 << 40) - 1)) << 8;
        IdGen {
            next: AtomicU64::new(prefix | suffix),
        }
    }

    /// A positive, non-zero int64 id (etcd masks the sign bit off).
    pub fn next(&self) -> i64 {
        loop {
            let raw = self.next.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
            let id = (raw & (i64::MAX as u64)) as i64;
            if id != 0 {
                return id;
            }
        }
    }
}

fn ids() -> &'static std::sync::OnceLock<IdGen> {
    static IDS: std::sync::OnceLock<IdGen> = std::sync::OnceLock::new();
    &IDS
}

impl Ctx {
    pub(crate) async fn lease_grant(
        &self,
        ttl: i64,
        id: i64,
    ) -> Result<pb::LeaseGrantResponse, RpcError> {
        // Shorter TTLs are raised to the minimum, as etcd's lessor does.
        let ttl = ttl.max(self.cfg.min_lease_ttl_secs);
        let gen = ids().get_or_init(|| IdGen::new(self.member_id()));
        // A chosen id that collides with a live lease: choose again.
        for _ in 0..8 {
            let want = if id == 0 { gen.next() } else { id };
            match self
                .write(Command::LeaseGrant {
                    id: want,
                    ttl_secs: ttl,
                })
                .await
            {
                Ok((EtcdResponse::LeaseGrant { id, ttl_secs }, rev)) => {
                    self.node.touch(id);
                    return Ok(pb::LeaseGrantResponse {
                        header: Some(self.header(rev)),
                        id,
                        ttl: ttl_secs,
                        error: String::new(),
                    });
                }
                Ok((other, _)) => {
                    return Err(RpcError::Internal(format!(
                        "unexpected apply result {other:?}"
                    )))
                }
                Err(RpcError::Core(EtcdError::LeaseExists)) if id == 0 => continue,
                Err(e) => return Err(e),
            }
        }
        Err(RpcError::Core(EtcdError::LeaseExists))
    }
}

impl Ctx {
    /// One LeaseKeepAlive answer; an unknown lease (or a ZooKeeper
    /// session) answers TTL 0, as etcd does.
    pub(crate) async fn keepalive_one(
        &self,
        id: i64,
    ) -> Result<pb::LeaseKeepAliveResponse, Status> {
        let is_session = self
            .node
            .state()
            .lease(id)
            .is_some_and(|l| l.session.is_some());
        let ttl_ms = if is_session {
            None
        } else {
            self.node.keepalive(id).await.map_err(RpcError::from)?
        };
        Ok(pb::LeaseKeepAliveResponse {
            header: Some(self.header_now()),
            id,
            ttl: ttl_ms.map_or(0, |ms| ms / 1000),
        })
    }
}

type Boxed<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl lease_server::Lease for Lease {
    async fn lease_grant(
        &self,
        req: Request<pb::LeaseGrantRequest>,
    ) -> Result<Response<pb::LeaseGrantResponse>, Status> {
        self.0.require_auth_info(&Creds::of(&req))?;
        let r = req.get_ref();
        Ok(Response::new(self.0.lease_grant(r.ttl, r.id).await?))
    }

    async fn lease_revoke(
        &self,
        req: Request<pb::LeaseRevokeRequest>,
    ) -> Result<Response<pb::LeaseRevokeResponse>, Status> {
        let creds = Creds::of(&req);
        self.0.require_auth_info(&creds)?;
        let id = req.get_ref().id;
        // A ZooKeeper session is not an etcd lease.
        if self
            .0
            .node
            .state()
            .lease(id)
            .is_some_and(|l| l.session.is_some())
        {
            return Err(RpcError::Core(EtcdError::LeaseNotFound).into());
        }
        let cmd = self.0.as_caller(&creds, Command::LeaseRevoke { id })?;
        let (_, rev) = self.0.write(cmd).await?;
        Ok(Response::new(pb::LeaseRevokeResponse {
            header: Some(self.0.header(rev)),
        }))
    }

    type LeaseKeepAliveStream = Boxed<pb::LeaseKeepAliveResponse>;

    async fn lease_keep_alive(
        &self,
        req: Request<Streaming<pb::LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        let creds = Creds::of(&req);
        let mut input = req.into_inner();
        let (tx, rx) = mpsc::channel(16);
        let ctx = self.0.clone();
        tokio::spawn(async move {
            while let Ok(Some(r)) = input.message().await {
                let msg = match ctx.check_lease_renew(&creds, r.id) {
                    Ok(()) => ctx.keepalive_one(r.id).await,
                    Err(e) => Err(e.into()),
                };
                let failed = msg.is_err();
                if tx.send(msg).await.is_err() || failed {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn lease_time_to_live(
        &self,
        req: Request<pb::LeaseTimeToLiveRequest>,
    ) -> Result<Response<pb::LeaseTimeToLiveResponse>, Status> {
        let r = req.get_ref();
        let creds = Creds::of(&req);
        self.0.require_auth_info(&creds)?;
        if r.keys {
            self.0.check_lease_keys_readable(&creds, Some(r.id))?;
        }
        let found = {
            let st = self.0.node.state();
            st.lease(r.id).filter(|l| l.session.is_none()).map(|l| {
                (
                    l.ttl_ms / 1000,
                    if r.keys {
                        st.lease_keys(l.id)
                    } else {
                        Vec::new()
                    },
                )
            })
        };
        let remaining = match found {
            Some(_) => self
                .0
                .node
                .time_to_live(r.id)
                .await
                .map_err(RpcError::from)?,
            None => None,
        };
        let resp = match (found, remaining) {
            (Some((granted, keys)), Some(ms)) => pb::LeaseTimeToLiveResponse {
                header: None,
                id: r.id,
                ttl: ms / 1000,
                granted_ttl: granted,
                keys,
            },
            // Unknown (or just expired): TTL -1, as etcd answers.
            _ => pb::LeaseTimeToLiveResponse {
                header: None,
                id: r.id,
                ttl: -1,
                granted_ttl: 0,
                keys: Vec::new(),
            },
        };
        Ok(Response::new(pb::LeaseTimeToLiveResponse {
            header: Some(self.0.header_now()),
            ..resp
        }))
    }

    async fn lease_leases(
        &self,
        req: Request<pb::LeaseLeasesRequest>,
    ) -> Result<Response<pb::LeaseLeasesResponse>, Status> {
        self.0.check_lease_keys_readable(&Creds::of(&req), None)?;
        let leases = {
            let st = self.0.node.state();
            st.leases()
                .into_iter()
                .filter(|l| l.session.is_none())
                .map(|l| pb::LeaseStatus { id: l.id })
                .collect()
        };
        Ok(Response::new(pb::LeaseLeasesResponse {
            header: Some(self.0.header_now()),
            leases,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_positive_unique_and_carry_the_member() {
        let g = IdGen::new(0xabcd);
        let a = g.next();
        let b = g.next();
        assert!(a > 0 && b > a);
        assert_eq!((a as u64) >> 48, 0xabcd & 0x7fff);
    }
}
