//! v3lockpb.Lock and v3electionpb.Election: etcd's server-side versions of
//! the `concurrency` recipes (a key per lease under `<name>/`, ordered by
//! create revision; the owner is the oldest; waiters wait for the deletion
//! of the next older key), run here over the same KV and event stream.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use janus_core::{
    Command, Compare, CompareResult, CompareTarget, EtcdResponse, Event, KeyValue, PutRequest,
    RangeRequest, RequestOp, ResponseOp, SortOrder, SortTarget, TxnRequest, TxnResponse,
};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::auth::Creds;
use crate::check::kv_to_pb;
use crate::error::RpcError;
use crate::pb::etcdserverpb::ResponseHeader;
use crate::pb::v3electionpb::{self as el, election_server};
use crate::pb::v3lockpb::{self as lk, lock_server};
use crate::Ctx;

pub struct Lock(pub Arc<Ctx>);
pub struct Election(pub Arc<Ctx>);

/// The end of the range of keys starting with `p` (etcd's GetPrefixRangeEnd).
fn prefix_end(p: &[u8]) -> Vec<u8> {
    let mut end = p.to_vec();
    while let Some(last) = end.last_mut() {
        if *last < 0xff {
            *last += 1;
            return end;
        }
        end.pop();
    }
    vec![0]
}

fn create_rev_is(key: &[u8], rev: i64) -> Compare {
    Compare {
        result: CompareResult::Equal,
        target: CompareTarget::Create(rev),
        key: key.to_vec(),
        range_end: Vec::new(),
    }
}

fn get(key: &[u8]) -> RangeRequest {
    RangeRequest {
        key: key.to_vec(),
        ..RangeRequest::default()
    }
}

/// The oldest (or, with `last`, newest) key under `prefix`, optionally with
/// create revision at most `max_create`.
fn by_create(prefix: &[u8], last: bool, max_create: i64) -> RangeRequest {
    RangeRequest {
        key: prefix.to_vec(),
        range_end: prefix_end(prefix),
        limit: 1,
        sort_target: SortTarget::Create,
        sort_order: if last {
            SortOrder::Descend
        } else {
            SortOrder::Ascend
        },
        max_create_revision: max_create,
        ..RangeRequest::default()
    }
}

fn first_kv(r: Option<&ResponseOp>) -> Option<KeyValue> {
    match r {
        Some(ResponseOp::Range(r)) => r.kvs.first().cloned(),
        _ => None,
    }
}

/// A plain Go error from etcd's recipes reaches clients as code Unknown.
fn unknown(msg: &str) -> Status {
    Status::unknown(msg)
}

/// etcd's recipes run over an internal client, which turns every server
/// error into a plain Go error: clients see code Unknown, the same text.
fn plain(e: RpcError) -> Status {
    Status::unknown(e.to_string())
}

impl Ctx {
    /// What etcd's server-side recipes need when they run as the caller
    /// (they are clients of the caller's own KV calls): a user when auth
    /// is on, read access to `prefix`'s keys and write access to `key`.
    fn check_recipe(&self, c: &Creds, prefix: &[u8], key: Option<&[u8]>) -> Result<(), RpcError> {
        self.require_auth_info(c)?;
        self.check_read(c, prefix, &prefix_end(prefix))?;
        if let Some(k) = key {
            self.check_write(c, k)?;
        }
        Ok(())
    }

    async fn txn(&self, t: TxnRequest) -> Result<(TxnResponse, i64), RpcError> {
        match self.write(Command::Txn(t)).await? {
            (EtcdResponse::Txn(r), rev) => Ok((r, rev)),
            (other, _) => Err(RpcError::Internal(format!(
                "unexpected apply result {other:?}"
            ))),
        }
    }

    /// Create `key` under the lease unless it exists: (its create revision,
    /// the txn's header revision, its current value).
    async fn acquire(
        &self,
        key: &[u8],
        lease: i64,
        value: &[u8],
    ) -> Result<(i64, i64, KeyValue), RpcError> {
        let put = PutRequest {
            key: key.to_vec(),
            value: value.to_vec(),
            lease,
            ..PutRequest::default()
        };
        let t = TxnRequest {
            compare: vec![create_rev_is(key, 0)],
            success: vec![RequestOp::Put(put), RequestOp::Range(get(key))],
            failure: vec![RequestOp::Range(get(key))],
        };
        let (r, rev) = self.txn(t).await?;
        let idx = if r.succeeded { 1 } else { 0 };
        let kv = first_kv(r.responses.get(idx))
            .ok_or_else(|| RpcError::Internal("lock key vanished".into()))?;
        Ok((kv.create_revision, rev, kv))
    }

    /// etcd's `waitDeletes`: until no key under `prefix` has a create
    /// revision at most `max_create`. Returns the revision of the last look.
    async fn wait_deletes(&self, prefix: &[u8], max_create: i64) -> Result<i64, RpcError> {
        loop {
            let mut events = self.node.subscribe();
            let (older, rev) = {
                let st = self.node.state();
                (
                    st.kv_range(&by_create(prefix, true, max_create))?
                        .kvs
                        .into_iter()
                        .next(),
                    st.revision(),
                )
            };
            let Some(older) = older else { return Ok(rev) };
            wait_for(
                &mut events,
                |e| matches!(e, Event::KvDelete { kv, .. } if kv.key == older.key),
            )
            .await?;
        }
    }
}

/// Wait for an event matching `f`; a lagged receiver just looks again.
async fn wait_for(
    events: &mut broadcast::Receiver<Arc<janus_core::EventBatch>>,
    f: impl Fn(&Event) -> bool,
) -> Result<(), RpcError> {
    loop {
        match events.recv().await {
            Ok(b) if b.events.iter().any(&f) => return Ok(()),
            Ok(_) => {}
            Err(broadcast::error::RecvError::Lagged(_)) => return Ok(()),
            Err(broadcast::error::RecvError::Closed) => {
                return Err(RpcError::Internal("state machine stopped".into()))
            }
        }
    }
}

#[tonic::async_trait]
impl lock_server::Lock for Lock {
    async fn lock(
        &self,
        req: Request<lk::LockRequest>,
    ) -> Result<Response<lk::LockResponse>, Status> {
        let creds = Creds::of(&req);
        let r = req.into_inner();
        let mut prefix = r.name.clone();
        prefix.push(b'/');
        let key = [prefix.clone(), format!("{:x}", r.lease).into_bytes()].concat();
        self.0.check_recipe(&creds, &prefix, Some(&key))?;
        let (my_rev, rev, _) = self.0.acquire(&key, r.lease, b"").await.map_err(plain)?;
        // Read the owner under a short guard, never across the wait.
        let owner = {
            let st = self.0.node.state();
            st.kv_range(&by_create(&prefix, false, 0))
                .map_err(|e| plain(e.into()))?
                .kvs
                .into_iter()
                .next()
        };
        let rev = match owner {
            Some(owner) if owner.create_revision != my_rev => self
                .0
                .wait_deletes(&prefix, my_rev - 1)
                .await
                .map_err(plain)?,
            _ => rev,
        };
        Ok(Response::new(lk::LockResponse {
            header: Some(self.0.header(rev)),
            key,
        }))
    }

    async fn unlock(
        &self,
        req: Request<lk::UnlockRequest>,
    ) -> Result<Response<lk::UnlockResponse>, Status> {
        let creds = Creds::of(&req);
        let key = req.into_inner().key;
        self.0.check_write(&creds, &key)?;
        let d = janus_core::DeleteRangeRequest {
            key,
            range_end: Vec::new(),
            prev_kv: false,
        };
        let (_, rev) = self.0.write(Command::DeleteRange(d)).await.map_err(plain)?;
        Ok(Response::new(lk::UnlockResponse {
            header: Some(self.0.header(rev)),
        }))
    }
}

type Boxed<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

const MISSING_LEADER: &str = "\"leader\" field must be provided";

impl Election {
    fn leader_now(&self, name: &[u8]) -> Result<(Option<KeyValue>, ResponseHeader), Status> {
        let mut prefix = name.to_vec();
        prefix.push(b'/');
        let st = self.0.node.state();
        let kv = st
            .kv_range(&by_create(&prefix, false, 0))
            .map_err(|e| plain(e.into()))?
            .kvs
            .into_iter()
            .next();
        let rev = st.revision();
        drop(st);
        Ok((kv, self.0.header(rev)))
    }
}

#[tonic::async_trait]
impl election_server::Election for Election {
    async fn campaign(
        &self,
        req: Request<el::CampaignRequest>,
    ) -> Result<Response<el::CampaignResponse>, Status> {
        let creds = Creds::of(&req);
        let r = req.into_inner();
        let mut prefix = r.name.clone();
        prefix.push(b'/');
        let key = [prefix.clone(), format!("{:x}", r.lease).into_bytes()].concat();
        self.0.check_recipe(&creds, &prefix, Some(&key))?;
        let (my_rev, rev, kv) = self
            .0
            .acquire(&key, r.lease, &r.value)
            .await
            .map_err(plain)?;
        if kv.value != r.value {
            // Re-campaigning with a new value proclaims it.
            let put = PutRequest {
                key: key.clone(),
                value: r.value.clone(),
                lease: r.lease,
                ..PutRequest::default()
            };
            self.0.write(Command::Put(put)).await.map_err(plain)?;
        }
        self.0
            .wait_deletes(&prefix, my_rev - 1)
            .await
            .map_err(plain)?;
        let leader = el::LeaderKey {
            name: r.name,
            key,
            rev: my_rev,
            lease: r.lease,
        };
        Ok(Response::new(el::CampaignResponse {
            header: Some(self.0.header(rev)),
            leader: Some(leader),
        }))
    }

    async fn proclaim(
        &self,
        req: Request<el::ProclaimRequest>,
    ) -> Result<Response<el::ProclaimResponse>, Status> {
        let creds = Creds::of(&req);
        let r = req.into_inner();
        let l = r.leader.ok_or_else(|| unknown(MISSING_LEADER))?;
        self.0.check_read(&creds, &l.key, &[])?;
        self.0.check_write(&creds, &l.key)?;
        let put = PutRequest {
            key: l.key.clone(),
            value: r.value,
            lease: l.lease,
            ..PutRequest::default()
        };
        let t = TxnRequest {
            compare: vec![create_rev_is(&l.key, l.rev)],
            success: vec![RequestOp::Put(put)],
            failure: vec![],
        };
        let (res, rev) = self.0.txn(t).await.map_err(plain)?;
        if !res.succeeded {
            return Err(unknown("election: not leader"));
        }
        Ok(Response::new(el::ProclaimResponse {
            header: Some(self.0.header(rev)),
        }))
    }

    async fn leader(
        &self,
        req: Request<el::LeaderRequest>,
    ) -> Result<Response<el::LeaderResponse>, Status> {
        let mut prefix = req.get_ref().name.clone();
        prefix.push(b'/');
        self.0.check_recipe(&Creds::of(&req), &prefix, None)?;
        match self.leader_now(&req.get_ref().name)? {
            (Some(kv), header) => Ok(Response::new(el::LeaderResponse {
                header: Some(header),
                kv: Some(kv_to_pb(kv)),
            })),
            (None, _) => Err(unknown("election: no leader")),
        }
    }

    type ObserveStream = Boxed<el::LeaderResponse>;

    async fn observe(
        &self,
        req: Request<el::LeaderRequest>,
    ) -> Result<Response<Self::ObserveStream>, Status> {
        let creds = Creds::of(&req);
        let name = req.into_inner().name;
        let mut p = name.clone();
        p.push(b'/');
        self.0.check_recipe(&creds, &p, None)?;
        let (tx, rx) = mpsc::channel(16);
        let me = Election(self.0.clone());
        let mut prefix = name.clone();
        prefix.push(b'/');
        let end = prefix_end(&prefix);
        tokio::spawn(async move {
            let mut last: Option<(Vec<u8>, i64)> = None;
            loop {
                let mut events = me.0.node.subscribe();
                let (kv, header) = match me.leader_now(&name) {
                    Ok(x) => x,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
                if let Some(kv) = kv {
                    let id = (kv.key.clone(), kv.mod_revision);
                    if last.as_ref() != Some(&id) {
                        last = Some(id);
                        let resp = el::LeaderResponse {
                            header: Some(header),
                            kv: Some(kv_to_pb(kv)),
                        };
                        if tx.send(Ok(resp)).await.is_err() {
                            return;
                        }
                    }
                }
                let in_prefix = |e: &Event| match e {
                    Event::KvPut { kv, .. } | Event::KvDelete { kv, .. } => {
                        kv.key >= prefix && (end == [0] || kv.key < end)
                    }
                    _ => false,
                };
                tokio::select! {
                    r = wait_for(&mut events, in_prefix) => if r.is_err() { return },
                    _ = tx.closed() => return,
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn resign(
        &self,
        req: Request<el::ResignRequest>,
    ) -> Result<Response<el::ResignResponse>, Status> {
        let creds = Creds::of(&req);
        let l = req
            .into_inner()
            .leader
            .ok_or_else(|| unknown(MISSING_LEADER))?;
        self.0.check_read(&creds, &l.key, &[])?;
        self.0.check_write(&creds, &l.key)?;
        let del = janus_core::DeleteRangeRequest {
            key: l.key.clone(),
            range_end: Vec::new(),
            prev_kv: false,
        };
        let t = TxnRequest {
            compare: vec![create_rev_is(&l.key, l.rev)],
            success: vec![RequestOp::DeleteRange(del)],
            failure: vec![],
        };
        let (_, rev) = self.0.txn(t).await.map_err(plain)?;
        Ok(Response::new(el::ResignResponse {
            header: Some(self.0.header(rev)),
        }))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn prefix_ends() {
        assert_eq!(super::prefix_end(b"a/"), b"a0".to_vec());
        assert_eq!(super::prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(super::prefix_end(b"\xff"), vec![0]);
    }
}
