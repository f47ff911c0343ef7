//! Ordered proposals for one client connection.
//!
//! A ZooKeeper session may have many writes in flight, and ZooKeeper
//! applies them in the order the client sent them. [`RaftNode::propose`]
//! alone cannot promise that for concurrent calls: each is routed on its
//! own, and from a follower each is a separate forward RPC. A [`Pipeline`]
//! keeps the order: on the leader it queues each command into the batcher
//! as it is submitted, without waiting for the previous one to commit;
//! from a follower it forwards everything queued so far in one
//! `ForwardBatch` RPC, and sends the next batch when that one returns.
//!
//! Both go through [`route`], the one write path: the leader's batcher, or
//! `ForwardBatch` to the leader, with one retry loop.

use std::sync::Arc;
use std::time::Instant;

use janus_core::{Applied, Command};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::network::{decode, encode, never_sent};
use crate::node::{Attempt, NodeError, RaftNode};
use crate::proto::ForwardBatchRequest;

/// At most this many commands are taken from the queue at once.
const MAX_FORWARD: usize = 1024;
/// A forwarded batch stays well under the peer port's message limit.
const FORWARD_BYTES: usize = 8 << 20;

pub(crate) type Reply = oneshot::Sender<Result<Applied, NodeError>>;

/// One connection's ordered proposer; dropping it ends its task once the
/// submitted commands are done.
pub struct Pipeline {
    tx: mpsc::UnboundedSender<(Command, Reply)>,
}

impl Pipeline {
    pub(crate) fn start(node: Arc<RaftNode>) -> Pipeline {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(node, rx));
        Pipeline { tx }
    }

    /// Queue `command` behind every command submitted before it. The
    /// result arrives when it has committed (and, if it was forwarded, been
    /// applied at the leader); an error means its outcome is unknown, and
    /// so is that of every command submitted after it.
    pub fn submit(&self, command: Command) -> oneshot::Receiver<Result<Applied, NodeError>> {
        let (reply, rx) = oneshot::channel();
        if let Err(mpsc::error::SendError((_, reply))) = self.tx.send((command, reply)) {
            let _ = reply.send(Err(NodeError::Raft("pipeline stopped".into())));
        }
        rx
    }
}

async fn run(node: Arc<RaftNode>, mut rx: mpsc::UnboundedReceiver<(Command, Reply)>) {
    // Results of commands queued locally and not yet answered: the route
    // changes (to forwarding) only once they are, so that a later batch
    // can never commit ahead of them at a new leader.
    let mut local: Vec<JoinHandle<()>> = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut group = vec![first];
        while group.len() < MAX_FORWARD {
            match rx.try_recv() {
                Ok(q) => group.push(q),
                Err(_) => break,
            }
        }
        route(&node, group, &mut local).await;
    }
}

/// The one write path: `group`, in order, into this member's batcher if it
/// leads, else to the leader in `ForwardBatch` calls; retried while no
/// leader takes it (nothing proposed), until the leader wait runs out.
/// `local` holds the answers still pending from earlier local groups of
/// the same sender: they are awaited before its writes go elsewhere.
pub(crate) async fn route(
    node: &Arc<RaftNode>,
    group: Vec<(Command, Reply)>,
    local: &mut Vec<JoinHandle<()>>,
) {
    local.retain(|h| !h.is_finished());
    let deadline = Instant::now() + node.leader_wait;
    loop {
        match node.leader() {
            Some((leader, _)) if leader == node.id => {
                if node.is_transferring() {
                    // Then queue here or forward to the new leader, in
                    // order either way.
                    node.transfer_done().await;
                    continue;
                }
                queue_local(node, group, local);
                return;
            }
            Some((_, addr)) => {
                for h in local.drain(..) {
                    let _ = h.await;
                }
                match forward(node, &addr, &group).await {
                    Ok(results) => return answer(group, results),
                    // Not the leader (any more): nothing was proposed.
                    Err(None) => {}
                    Err(Some(e)) => return fail(group, &e),
                }
            }
            None => {}
        }
        if Instant::now() >= deadline {
            return fail(group, &NodeError::NoLeader);
        }
        let mut m = node.raft.metrics();
        let _ = tokio::time::timeout(std::time::Duration::from_millis(50), m.changed()).await;
    }
}

/// Into this leader's batcher, in order, now; answered as they commit.
fn queue_local(
    node: &Arc<RaftNode>,
    group: Vec<(Command, Reply)>,
    local: &mut Vec<JoinHandle<()>>,
) {
    let mut waits = Vec::with_capacity(group.len());
    for (command, reply) in group {
        match node.enqueue_local(command) {
            Ok(rx) => waits.push((rx, reply)),
            Err(e) => {
                let _ = reply.send(Err(e));
            }
        }
    }
    let node = node.clone();
    local.push(tokio::spawn(async move {
        for (rx, reply) in waits {
            let r = match rx.await {
                Ok(Ok(Attempt::Done(a))) => Ok(a),
                // Leadership was lost under it: outcome unknown.
                Ok(Ok(Attempt::NotLeader)) => Err(NodeError::Unavailable(
                    "leadership lost while the write was in flight".into(),
                )),
                Ok(Err(e)) => Err(e),
                Err(_) => Err(NodeError::Raft("raft stopped".into())),
            };
            node.count_proposal(r.is_ok());
            let _ = reply.send(r);
        }
    }));
}

/// `ForwardBatch` calls to the leader at `addr`, one after the other, each
/// at most `FORWARD_BYTES` (but at least one command). `Err(None)`: the
/// receiver is not the leader and proposed nothing (retry); otherwise one
/// result per command, errors (outcome unknown) from the first failure on.
async fn forward(
    node: &RaftNode,
    addr: &str,
    group: &[(Command, Reply)],
) -> Result<Vec<Result<Applied, NodeError>>, Option<NodeError>> {
    let mut encoded = Vec::with_capacity(group.len());
    for (c, _) in group {
        encoded.push(encode(c).map_err(|s| Some(NodeError::Raft(s.message().to_string())))?);
    }
    let mut client = node
        .channels
        .client(addr)
        .map_err(|e| Some(NodeError::Unavailable(e.to_string())))?;
    let mut out: Vec<Result<Applied, NodeError>> = Vec::with_capacity(group.len());
    let mut rest = encoded.into_iter().peekable();
    while rest.peek().is_some() {
        let mut commands = Vec::new();
        let mut bytes = 0;
        while let Some(c) =
            rest.next_if(|c| commands.is_empty() || bytes + c.len() <= FORWARD_BYTES)
        {
            bytes += c.len();
            commands.push(c);
        }
        let n = commands.len();
        let failed = match client.forward_batch(ForwardBatchRequest { commands }).await {
            Ok(r) => {
                let results = r.into_inner().results;
                for raw in results.iter().take(n) {
                    let r = decode::<Result<Applied, String>>(raw)
                        .map_err(|s| s.message().to_string())
                        .and_then(|r| r);
                    out.push(r.map_err(NodeError::Unavailable));
                }
                // A short answer or a failed command: the rest is unknown.
                let ok = results.len() == n && out.iter().rev().take(n).all(|r| r.is_ok());
                (!ok).then(|| "earlier write failed".to_string())
            }
            // Not the leader, or the leader is gone: nothing was proposed.
            Err(s)
                if out.is_empty()
                    && (s.code() == tonic::Code::FailedPrecondition || never_sent(&s)) =>
            {
                return Err(None)
            }
            Err(s) => Some(s.message().to_string()),
        };
        if let Some(msg) = failed {
            while out.len() < group.len() {
                out.push(Err(NodeError::Unavailable(msg.clone())));
            }
            break;
        }
    }
    Ok(out)
}

fn answer(group: Vec<(Command, Reply)>, results: Vec<Result<Applied, NodeError>>) {
    let mut results = results.into_iter();
    for (_, reply) in group {
        let r = results
            .next()
            .unwrap_or_else(|| Err(NodeError::Raft("missing result in batch".into())));
        let _ = reply.send(r);
    }
}

fn fail(group: Vec<(Command, Reply)>, e: &NodeError) {
    let msg = e.to_string();
    for (_, reply) in group {
        let err = match e {
            NodeError::NoLeader => NodeError::NoLeader,
            _ => NodeError::Unavailable(msg.clone()),
        };
        let _ = reply.send(Err(err));
    }
}
