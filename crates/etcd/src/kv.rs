//! etcdserverpb.KV: Range from the local state (after the read index
//! unless serializable), writes through Raft.

use std::sync::Arc;

use janus_core::{Command, EtcdResponse, Response as CoreResponse};
use tonic::{Request, Response, Status};

use crate::auth::Creds;
use crate::check;
use crate::error::RpcError;
use crate::pb::etcdserverpb::{self as pb, kv_server};
use crate::Ctx;

pub struct Kv(pub Arc<Ctx>);

impl Ctx {
    /// Commit `cmd` and return the etcd result with the header revision.
    pub(crate) async fn write(&self, cmd: Command) -> Result<(EtcdResponse, i64), RpcError> {
        self.check_quota(&cmd).await?;
        let _pending = crate::metrics::Pending::start();
        let applied = self.node.propose(cmd).await?;
        match applied.response {
            CoreResponse::Etcd(Ok(r)) => Ok((r, applied.revision)),
            CoreResponse::Etcd(Err(e)) => Err(e.into()),
            other => Err(RpcError::Internal(format!(
                "unexpected apply result {other:?}"
            ))),
        }
    }

    /// etcd's Range: linearizable reads wait for the read index first.
    pub(crate) async fn range(
        &self,
        r: &pb::RangeRequest,
        creds: &Creds,
    ) -> Result<pb::RangeResponse, RpcError> {
        let req = check::range(r)?;
        if !r.serializable {
            self.node.read_index().await?;
        }
        let ai = self.caller(creds)?;
        let (res, rev) = {
            let st = self.node.state();
            // etcd's doSerialize: the permission check and the read see
            // one auth store.
            st.auth().is_range_permitted(&ai, &r.key, &r.range_end)?;
            (st.kv_range(&req), st.revision())
        };
        let res = res?;
        Ok(pb::RangeResponse {
            header: Some(self.header(rev)),
            ..check::range_response(res)
        })
    }
}

fn unexpected(r: EtcdResponse) -> Status {
    RpcError::Internal(format!("unexpected apply result {r:?}")).into()
}

#[tonic::async_trait]
impl kv_server::Kv for Kv {
    async fn range(
        &self,
        req: Request<pb::RangeRequest>,
    ) -> Result<Response<pb::RangeResponse>, Status> {
        Ok(Response::new(
            self.0.range(req.get_ref(), &Creds::of(&req)).await?,
        ))
    }

    async fn put(&self, req: Request<pb::PutRequest>) -> Result<Response<pb::PutResponse>, Status> {
        let r = req.get_ref();
        let p = check::put(r)?;
        check::check_size(r, self.0.cfg.max_request_bytes)?;
        let cmd = self.0.as_caller(&Creds::of(&req), Command::Put(p))?;
        match self.0.write(cmd).await? {
            (EtcdResponse::Put(res), rev) => Ok(Response::new(pb::PutResponse {
                header: Some(self.0.header(rev)),
                ..check::put_response(res)
            })),
            (other, _) => Err(unexpected(other)),
        }
    }

    async fn delete_range(
        &self,
        req: Request<pb::DeleteRangeRequest>,
    ) -> Result<Response<pb::DeleteRangeResponse>, Status> {
        let r = req.get_ref();
        let d = check::delete(r)?;
        check::check_size(r, self.0.cfg.max_request_bytes)?;
        let cmd = self
            .0
            .as_caller(&Creds::of(&req), Command::DeleteRange(d))?;
        match self.0.write(cmd).await? {
            (EtcdResponse::DeleteRange(res), rev) => Ok(Response::new(pb::DeleteRangeResponse {
                header: Some(self.0.header(rev)),
                ..check::delete_response(res)
            })),
            (other, _) => Err(unexpected(other)),
        }
    }

    async fn txn(&self, req: Request<pb::TxnRequest>) -> Result<Response<pb::TxnResponse>, Status> {
        let r = req.get_ref();
        let t = check::txn(r, self.0.cfg.max_txn_ops)?;
        check::check_size(r, self.0.cfg.max_request_bytes)?;
        let cmd = self.0.as_caller(&Creds::of(&req), Command::Txn(t))?;
        match self.0.write(cmd).await? {
            (EtcdResponse::Txn(res), rev) => {
                Ok(Response::new(check::txn_response(res, &self.0.header(rev))))
            }
            (other, _) => Err(unexpected(other)),
        }
    }

    async fn compact(
        &self,
        req: Request<pb::CompactionRequest>,
    ) -> Result<Response<pb::CompactionResponse>, Status> {
        self.0.require_admin(&Creds::of(&req))?;
        let revision = req.get_ref().revision;
        let (_, rev) = self.0.write(Command::Compact { revision }).await?;
        Ok(Response::new(pb::CompactionResponse {
            header: Some(self.0.header(rev)),
        }))
    }
}
