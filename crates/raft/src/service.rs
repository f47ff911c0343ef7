//! The peer gRPC service: Raft RPCs, forwarded writes, read index, queries.

use std::sync::Arc;

use janus_store::{NodeId, TypeConfig};
use std::time::Duration;

use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, VoteRequest,
};
use tonic::{Request, Response, Status};

use crate::network::{decode, encode, MAX_PEER_MESSAGE};
use crate::node::RaftNode;
use crate::proto::peer_server::{Peer, PeerServer};
use crate::proto::{
    ForwardBatchRequest, ForwardBatchResponse, ForwardRequest, ForwardResponse,
    HoldElectionsRequest, HoldElectionsResponse, KeepAliveRequest, KeepAliveResponse,
    MemberStatusRequest, MemberStatusResponse, MembershipRequest, MembershipResponse, QueryRequest,
    QueryResponse, RaftMessage, ReadIndexRequest, ReadIndexResponse, TimeoutNowRequest,
    TimeoutNowResponse,
};
use crate::query::Query;

pub struct PeerService {
    node: Arc<RaftNode>,
}

impl PeerService {
    /// The tonic service for `node`, ready to add to a server.
    pub fn server(node: Arc<RaftNode>) -> PeerServer<PeerService> {
        PeerServer::new(PeerService { node })
            .max_decoding_message_size(MAX_PEER_MESSAGE)
            .max_encoding_message_size(MAX_PEER_MESSAGE)
    }
}

#[tonic::async_trait]
impl Peer for PeerService {
    async fn append_entries(
        &self,
        req: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        let rpc: AppendEntriesRequest<TypeConfig> = decode(&req.into_inner().payload)?;
        let res = self.node.raft.append_entries(rpc).await;
        // Anything but a refused vote renewed openraft's leader lease here.
        if matches!(&res, Ok(r) if !matches!(r, AppendEntriesResponse::HigherVote(_))) {
            self.node.heard_from_leader();
        }
        Ok(Response::new(RaftMessage {
            payload: encode(&res)?,
        }))
    }

    async fn vote(&self, req: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let rpc: VoteRequest<NodeId> = decode(&req.into_inner().payload)?;
        let their_log = rpc.last_log_id;
        let res = self.node.raft.vote(rpc).await;
        // Refused for a shorter log: that candidate cannot win, so the
        // election watchdog campaigns at once instead of waiting.
        if let Ok(r) = &res {
            if !r.vote_granted && r.last_log_id > their_log {
                self.node.note_refused_shorter();
            }
        }
        // A granted vote renews openraft's lease here as a leader message
        // does, and restarts the election clock: raft's rule that a voter
        // gives the candidate it voted for time to win.
        if matches!(&res, Ok(r) if r.vote_granted) {
            self.node.heard_from_leader();
        }
        Ok(Response::new(RaftMessage {
            payload: encode(&res)?,
        }))
    }

    async fn install_snapshot(
        &self,
        req: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        let rpc: InstallSnapshotRequest<TypeConfig> = decode(&req.into_inner().payload)?;
        let res = self.node.raft.install_snapshot(rpc).await;
        if res.is_ok() {
            self.node.heard_from_leader();
        }
        Ok(Response::new(RaftMessage {
            payload: encode(&res)?,
        }))
    }

    async fn forward(
        &self,
        req: Request<ForwardRequest>,
    ) -> Result<Response<ForwardResponse>, Status> {
        let req = req.into_inner();
        let command = decode(&req.command)?;
        // Members forward with ForwardBatch; this is for tools and tests,
        // and goes the way of any client write.
        let applied = self.node.propose(command).await?;
        let log_index = self.node.sm.applied().borrow().index;
        Ok(Response::new(ForwardResponse {
            applied: encode(&applied)?,
            log_index,
        }))
    }

    async fn forward_batch(
        &self,
        req: Request<ForwardBatchRequest>,
    ) -> Result<Response<ForwardBatchResponse>, Status> {
        let req = req.into_inner();
        let mut commands = Vec::with_capacity(req.commands.len());
        for c in &req.commands {
            commands.push(decode(c)?);
        }
        let results = self.node.propose_batch_as_leader(commands).await?;
        let mut out = Vec::with_capacity(results.len());
        for r in &results {
            out.push(encode(r)?);
        }
        Ok(Response::new(ForwardBatchResponse { results: out }))
    }

    async fn read_index(
        &self,
        _req: Request<ReadIndexRequest>,
    ) -> Result<Response<ReadIndexResponse>, Status> {
        let read_index = self.node.leader_read_index().await?;
        Ok(Response::new(ReadIndexResponse { read_index }))
    }

    async fn query(&self, req: Request<QueryRequest>) -> Result<Response<QueryResponse>, Status> {
        let req = req.into_inner();
        let q: Query = decode(&req.query)?;
        if req.linearizable {
            self.node.read_index().await?;
        }
        let result = self.node.query(&q);
        Ok(Response::new(QueryResponse {
            result: encode(&result)?,
        }))
    }

    async fn keep_alive(
        &self,
        req: Request<KeepAliveRequest>,
    ) -> Result<Response<KeepAliveResponse>, Status> {
        let req = req.into_inner();
        match self
            .node
            .lessor
            .leader_keepalive(&self.node, &req.ids, req.renew)
        {
            Some(remaining_ms) => Ok(Response::new(KeepAliveResponse { remaining_ms })),
            None => Err(Status::failed_precondition("not leader")),
        }
    }

    async fn change_membership(
        &self,
        req: Request<MembershipRequest>,
    ) -> Result<Response<MembershipResponse>, Status> {
        let op = decode(&req.into_inner().op)?;
        let result = self.node.membership_as_leader(op).await;
        Ok(Response::new(MembershipResponse {
            result: encode(&result)?,
        }))
    }

    async fn member_status(
        &self,
        req: Request<MemberStatusRequest>,
    ) -> Result<Response<MemberStatusResponse>, Status> {
        let req = req.into_inner();
        let removed = req.id != 0 && self.node.sm.is_removed(req.id);
        let id_of_addr = if req.addr.is_empty() {
            0
        } else {
            self.node
                .members()
                .into_iter()
                .find(|(_, n, _)| n.addr == req.addr)
                .map_or(0, |(id, _, _)| id)
        };
        Ok(Response::new(MemberStatusResponse {
            removed,
            id_of_addr,
        }))
    }

    async fn hold_elections(
        &self,
        req: Request<HoldElectionsRequest>,
    ) -> Result<Response<HoldElectionsResponse>, Status> {
        let hold = Duration::from_millis(req.into_inner().hold_ms);
        self.node.hold_elections(hold);
        Ok(Response::new(HoldElectionsResponse {}))
    }

    async fn timeout_now(
        &self,
        req: Request<TimeoutNowRequest>,
    ) -> Result<Response<TimeoutNowResponse>, Status> {
        let req = req.into_inner();
        let within = Duration::from_millis(req.within_ms);
        self.node.timeout_now(req.leader, req.term, within)?;
        Ok(Response::new(TimeoutNowResponse {}))
    }
}
