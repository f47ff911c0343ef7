//! Membership changes onto openraft's one membership: etcd's Member* RPCs
//! and ZooKeeper's reconfig both become [`MembershipOp`]s, which the leader
//! checks (with etcd's and ZooKeeper's rules) and carries out with
//! `add_learner` / `change_membership`. Members publish their own name and
//! client addresses into the membership once they run (etcd's
//! `publishV3`), and a member that finds itself removed stops.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use janus_store::{Member, NodeId, TypeConfig};
use openraft::error::{ChangeMembershipError, ClientWriteError, RaftError};
use openraft::raft::ClientWriteResponse;
use openraft::{ChangeMembers, Membership};
use serde::{Deserialize, Serialize};

use crate::network::{decode, encode};
use crate::node::RaftNode;
use crate::proto::{MemberStatusRequest, MembershipRequest};

/// A requested membership change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MembershipOp {
    /// etcd MemberAdd: a new member under a fresh node id the leader picks.
    Add {
        node: Member,
        learner: bool,
        /// etcd's `--experimental-max-learners`.
        max_learners: usize,
    },
    /// etcd MemberPromote: a learner becomes a voter.
    Promote { id: NodeId },
    /// etcd MemberRemove.
    Remove { id: NodeId },
    /// etcd MemberUpdate: new peer URLs (the first one is dialed).
    Update { id: NodeId, peer_urls: Vec<String> },
    /// A running member publishes its name and client addresses.
    Publish {
        id: NodeId,
        name: String,
        client_urls: Vec<String>,
        zk_client: String,
    },
    /// ZooKeeper's incremental reconfig: servers joining (id, node,
    /// participant) and ids leaving.
    Reconfig {
        joining: Vec<(NodeId, Member, bool)>,
        leaving: Vec<NodeId>,
    },
}

/// A change carried out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembershipDone {
    /// The member concerned (MemberAdd: the new member's node id).
    pub id: NodeId,
    /// The leader's log index after the change: a member answering the
    /// client waits until it has applied this far.
    pub log_index: u64,
}

/// Why a change was refused. The texts are etcd's (without its
/// `etcdserver: ` prefix); the ZooKeeper side maps the variants to codes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum MembershipError {
    #[error("member not found")]
    NotFound,
    #[error("member ID already exist")]
    IdExists,
    #[error("Peer URLs already exists")]
    PeerUrlExists,
    #[error("given member URLs are invalid")]
    BadUrls,
    #[error("can only promote a learner member")]
    NotLearner,
    #[error("can only promote a learner member which is in sync with leader")]
    LearnerNotReady,
    #[error("re-configuration failed due to not enough started members")]
    NotEnoughStarted,
    #[error("too many learner members in cluster")]
    TooManyLearners,
    /// ZooKeeper's NEWCONFIGNOQUORUM.
    #[error("no quorum of the new configuration is connected and synced")]
    NoQuorum,
    /// Another change is under way (ZooKeeper's RECONFIGINPROGRESS).
    #[error("a membership change is in progress")]
    InProgress,
    /// ZooKeeper's BADARGUMENTS, with its message.
    #[error("{0}")]
    BadArguments(String),
    #[error("no leader")]
    NoLeader,
    /// This member is not the leader (internal: the sender retries).
    #[error("not leader")]
    NotLeader,
    #[error("request timed out")]
    Timeout,
    #[error("{0}")]
    Raft(String),
}

type WriteResult =
    Result<ClientWriteResponse<TypeConfig>, RaftError<NodeId, ClientWriteError<NodeId, Member>>>;

fn raft_err(r: WriteResult) -> Result<u64, MembershipError> {
    match r {
        Ok(resp) => Ok(resp.log_id.index),
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => {
            Err(MembershipError::NotLeader)
        }
        Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(
            ChangeMembershipError::InProgress(_),
        ))) => Err(MembershipError::InProgress),
        Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(
            ChangeMembershipError::LearnerNotFound(_),
        ))) => Err(MembershipError::NotFound),
        Err(e) => Err(MembershipError::Raft(e.to_string())),
    }
}

/// `host:port` of a peer URL (`http://host:port`, a scheme is optional).
pub fn url_addr(url: &str) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.trim_end_matches('/');
    let (host, port) = rest.rsplit_once(':')?;
    if host.is_empty() || rest.contains('/') || port.parse::<u16>().is_err() {
        return None;
    }
    Some(rest.to_string())
}

fn voters(m: &Membership<NodeId, Member>) -> BTreeSet<NodeId> {
    m.voter_ids().collect()
}

/// etcd's `IsReadyToAddVotingMember`.
fn ready_to_add_voter(m: &Membership<NodeId, Member>) -> bool {
    let mut members = 1;
    let mut started = 0;
    for id in voters(m) {
        if m.get_node(&id).is_some_and(Member::is_started) {
            started += 1;
        }
        members += 1;
    }
    if started == 1 && members == 2 {
        return true;
    }
    started > members / 2
}

/// etcd's `IsReadyToRemoveVotingMember`.
fn ready_to_remove_voter(m: &Membership<NodeId, Member>, id: NodeId) -> bool {
    let mut members = 0;
    let mut started = 0;
    for v in voters(m).into_iter().filter(|v| *v != id) {
        if m.get_node(&v).is_some_and(Member::is_started) {
            started += 1;
        }
        members += 1;
    }
    started > members / 2
}

/// etcd's `IsReadyToPromoteMember`.
fn ready_to_promote(m: &Membership<NodeId, Member>) -> bool {
    let mut members = 1;
    let mut started = 1;
    for id in voters(m) {
        if m.get_node(&id).is_some_and(Member::is_started) {
            started += 1;
        }
        members += 1;
    }
    started > members / 2
}

impl RaftNode {
    /// Carry out a membership change at the leader (forwarding to it from
    /// any member) and wait until this member has applied it.
    pub async fn change_membership(
        &self,
        op: MembershipOp,
    ) -> Result<MembershipDone, MembershipError> {
        let deadline = Instant::now() + self.leader_wait;
        let done = loop {
            match self.leader() {
                Some((leader, _)) if leader == self.id => {
                    match self.membership_as_leader(op.clone()).await {
                        Err(MembershipError::NotLeader) => {}
                        r => break r?,
                    }
                }
                Some((_, addr)) => {
                    let mut client = self
                        .channels
                        .client(&addr)
                        .map_err(|e| MembershipError::Raft(e.to_string()))?;
                    let req = MembershipRequest {
                        op: encode(&op).map_err(|s| MembershipError::Raft(s.to_string()))?,
                    };
                    match client.change_membership(req).await {
                        Ok(resp) => {
                            let r: Result<MembershipDone, MembershipError> =
                                decode(&resp.into_inner().result)
                                    .map_err(|s| MembershipError::Raft(s.to_string()))?;
                            match r {
                                Err(MembershipError::NotLeader) => {}
                                r => break r?,
                            }
                        }
                        Err(s) if s.code() == tonic::Code::Unavailable => {}
                        Err(s) => return Err(MembershipError::Raft(s.message().to_string())),
                    }
                }
                None => {}
            }
            if Instant::now() >= deadline {
                return Err(MembershipError::NoLeader);
            }
            let mut rx = self.raft.metrics();
            let _ = tokio::time::timeout(Duration::from_millis(50), rx.changed()).await;
        };
        self.wait_applied(done.log_index, Instant::now() + self.leader_wait)
            .await
            .map_err(|_| MembershipError::Timeout)?;
        Ok(done)
    }

    /// The leader's side: one change at a time, checked against the
    /// current membership.
    pub(crate) async fn membership_as_leader(
        &self,
        op: MembershipOp,
    ) -> Result<MembershipDone, MembershipError> {
        let _guard = match &op {
            // ZooKeeper answers a concurrent reconfig at once.
            MembershipOp::Reconfig { .. } => self
                .membership_lock
                .try_lock()
                .map_err(|_| MembershipError::InProgress)?,
            _ => self.membership_lock.lock().await,
        };
        let m = self.metrics();
        if m.current_leader != Some(self.id) {
            return Err(MembershipError::NotLeader);
        }
        let cur = m.membership_config.membership().clone();
        if cur.get_joint_config().len() > 1 {
            return Err(MembershipError::InProgress);
        }
        let id_of_op = |id: NodeId| -> Result<&Member, MembershipError> {
            cur.get_node(&id).ok_or(MembershipError::NotFound)
        };
        let (id, index) = match op {
            MembershipOp::Add {
                node,
                learner,
                max_learners,
            } => {
                let taken: BTreeSet<String> =
                    cur.nodes().flat_map(|(_, n)| n.peer_urls()).collect();
                if node.peer_urls().iter().any(|u| taken.contains(u)) {
                    return Err(MembershipError::PeerUrlExists);
                }
                if learner && cur.learner_ids().count() >= max_learners {
                    return Err(MembershipError::TooManyLearners);
                }
                if !learner && !ready_to_add_voter(&cur) {
                    return Err(MembershipError::NotEnoughStarted);
                }
                let max_cur = cur.nodes().map(|(id, _)| *id).max().unwrap_or(0);
                let id = self.sm.max_node_id().max(max_cur) + 1;
                let mut index = raft_err(self.raft.add_learner(id, node, false).await)?;
                if !learner {
                    index = raft_err(
                        self.raft
                            .change_membership(ChangeMembers::AddVoterIds([id].into()), false)
                            .await,
                    )?;
                }
                (id, index)
            }
            MembershipOp::Promote { id } => {
                id_of_op(id)?;
                if cur.voter_ids().any(|v| v == id) {
                    return Err(MembershipError::NotLearner);
                }
                // etcd's isLearnerReady: the learner's match index is at
                // least 90% of the leader's.
                let leader_match = m.last_log_index.unwrap_or(0);
                let learner_match = m
                    .replication
                    .as_ref()
                    .and_then(|r| r.get(&id).cloned().flatten())
                    .map_or(0, |l| l.index);
                if (learner_match as f64) < 0.9 * leader_match as f64 {
                    return Err(MembershipError::LearnerNotReady);
                }
                if !ready_to_promote(&cur) {
                    return Err(MembershipError::NotEnoughStarted);
                }
                let index = raft_err(
                    self.raft
                        .change_membership(ChangeMembers::AddVoterIds([id].into()), false)
                        .await,
                )?;
                (id, index)
            }
            MembershipOp::Remove { id } => {
                id_of_op(id)?;
                let change = if cur.voter_ids().any(|v| v == id) {
                    if !ready_to_remove_voter(&cur, id) {
                        return Err(MembershipError::NotEnoughStarted);
                    }
                    ChangeMembers::RemoveVoters([id].into())
                } else {
                    ChangeMembers::RemoveNodes([id].into())
                };
                (
                    id,
                    raft_err(self.raft.change_membership(change, false).await)?,
                )
            }
            MembershipOp::Update { id, peer_urls } => {
                let mut node = id_of_op(id)?.clone();
                let addr = peer_urls
                    .first()
                    .and_then(|u| url_addr(u))
                    .ok_or(MembershipError::BadUrls)?;
                let taken: BTreeSet<String> = cur
                    .nodes()
                    .filter(|(n, _)| **n != id)
                    .flat_map(|(_, n)| n.peer_urls())
                    .collect();
                if peer_urls.iter().any(|u| taken.contains(u)) {
                    return Err(MembershipError::PeerUrlExists);
                }
                node.addr = addr;
                node.peer_urls = peer_urls;
                (id, self.set_node(id, node).await?)
            }
            MembershipOp::Publish {
                id,
                name,
                client_urls,
                zk_client,
            } => {
                let mut node = id_of_op(id)?.clone();
                node.name = name;
                node.client_urls = client_urls;
                node.zk_client = zk_client;
                if cur.get_node(&id) == Some(&node) {
                    (id, m.last_log_index.unwrap_or(0))
                } else {
                    (id, self.set_node(id, node).await?)
                }
            }
            MembershipOp::Reconfig { joining, leaving } => {
                let index = self.reconfig(&cur, joining, leaving).await?;
                (0, index)
            }
        };
        Ok(MembershipDone {
            id,
            log_index: index,
        })
    }

    async fn set_node(&self, id: NodeId, node: Member) -> Result<u64, MembershipError> {
        raft_err(
            self.raft
                .change_membership(ChangeMembers::SetNodes([(id, node)].into()), true)
                .await,
        )
    }

    /// ZooKeeper's incremental reconfig (`PrepRequestProcessor`): the next
    /// configuration is the current one minus the leaving ids plus the
    /// joining servers; it must keep two voters, and a quorum of its voters
    /// must be connected and synced with the leader.
    async fn reconfig(
        &self,
        cur: &Membership<NodeId, Member>,
        joining: Vec<(NodeId, Member, bool)>,
        leaving: Vec<NodeId>,
    ) -> Result<u64, MembershipError> {
        let mut nodes: BTreeMap<NodeId, Member> =
            cur.nodes().map(|(id, n)| (*id, n.clone())).collect();
        let mut next_voters = voters(cur);
        for id in &leaving {
            nodes.remove(id);
            next_voters.remove(id);
        }
        let mut set = BTreeMap::new();
        for (id, mut node, participant) in joining {
            if let Some(old) = nodes.get(&id) {
                // A running member's published attributes stay.
                node.name = old.name.clone();
                node.client_urls = old.client_urls.clone();
                if old.addr == node.addr {
                    node.peer_urls = old.peer_urls.clone();
                }
            }
            if participant {
                next_voters.insert(id);
            } else {
                next_voters.remove(&id);
            }
            if nodes.get(&id) != Some(&node) {
                set.insert(id, node.clone());
            }
            nodes.insert(id, node);
        }
        // standaloneEnabled (ZooKeeper's default) keeps two voters.
        if next_voters.len() < 2 {
            return Err(MembershipError::BadArguments(
                "Reconfig failed - new configuration must include at least 2 followers".into(),
            ));
        }
        let added: BTreeSet<NodeId> = set
            .keys()
            .filter(|id| cur.get_node(id).is_none())
            .copied()
            .collect();
        let mut index = self.metrics().last_log_index.unwrap_or(0);
        if !set.is_empty() {
            index = self.set_node_many(set).await?;
        }
        if !self.wait_synced(&next_voters).await {
            if !added.is_empty() {
                let _ = self
                    .raft
                    .change_membership(ChangeMembers::RemoveNodes(added), false)
                    .await;
            }
            return Err(MembershipError::NoQuorum);
        }
        if next_voters != voters(cur) {
            index = raft_err(
                self.raft
                    .change_membership(ChangeMembers::ReplaceAllVoters(next_voters.clone()), false)
                    .await,
            )?;
        }
        let gone: BTreeSet<NodeId> = leaving
            .into_iter()
            .filter(|id| {
                self.metrics()
                    .membership_config
                    .membership()
                    .get_node(id)
                    .is_some()
            })
            .collect();
        if !gone.is_empty() {
            index = raft_err(
                self.raft
                    .change_membership(ChangeMembers::RemoveNodes(gone), false)
                    .await,
            )?;
        }
        Ok(index)
    }

    async fn set_node_many(&self, set: BTreeMap<NodeId, Member>) -> Result<u64, MembershipError> {
        raft_err(
            self.raft
                .change_membership(ChangeMembers::SetNodes(set), true)
                .await,
        )
    }

    /// ZooKeeper's `isQuorumSynced`: wait (a few election timeouts at most)
    /// until a majority of `voters` has replicated the leader's log as it
    /// is now.
    async fn wait_synced(&self, voters: &BTreeSet<NodeId>) -> bool {
        let target = self.metrics().last_log_index.unwrap_or(0);
        let deadline = Instant::now() + self.leader_wait;
        let mut rx = self.raft.metrics();
        loop {
            let synced = {
                let m = rx.borrow_and_update();
                voters
                    .iter()
                    .filter(|v| {
                        **v == self.id
                            || m.replication
                                .as_ref()
                                .and_then(|r| r.get(v).cloned().flatten())
                                .is_some_and(|l| l.index >= target)
                    })
                    .count()
            };
            if synced > voters.len() / 2 {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            let _ = tokio::time::timeout(left, rx.changed()).await;
        }
    }

    /// The applied membership, as etcd's MemberList and ZooKeeper's config
    /// show it: (id, node, is voter).
    pub fn members(&self) -> Vec<(NodeId, Member, bool)> {
        let m = self.sm.membership();
        let m = m.membership();
        let voters = voters(m);
        m.nodes()
            .map(|(id, n)| (*id, n.clone(), voters.contains(id)))
            .collect()
    }

    /// Resolves once this member knows it has been removed from the cluster.
    pub async fn removed(&self) {
        let mut rx = self.removed.subscribe();
        let _ = rx.wait_for(|r| *r).await;
    }

    /// Whether this member has been removed.
    pub fn is_removed(&self) -> bool {
        *self.removed.borrow()
    }
}

/// Publish this member's attributes once it is in the membership, and
/// watch for its removal (asking the peers in turn), every `period`.
pub(crate) fn spawn_member_tasks(node: std::sync::Weak<RaftNode>, me: Member, period: Duration) {
    tokio::spawn(async move {
        let mut was_member = false;
        let mut turn = 0usize;
        loop {
            tokio::time::sleep(period).await;
            let Some(node) = node.upgrade() else {
                return;
            };
            if node.is_removed() {
                return;
            }
            let applied = node.sm.membership();
            let mine = applied.membership().get_node(&node.id).cloned();
            if mine.is_some() {
                was_member = true;
            }
            if !was_member {
                // Not yet added (a new member waiting to be added).
                continue;
            }
            if mine.is_none() && node.sm.is_removed(node.id) {
                announce_removed(&node);
                return;
            }
            if let Some(cur) = mine {
                if !me.name.is_empty()
                    && (cur.name != me.name
                        || cur.client_urls != me.client_urls
                        || cur.zk_client != me.zk_client)
                    && node.leader().is_some()
                {
                    let op = MembershipOp::Publish {
                        id: node.id,
                        name: me.name.clone(),
                        client_urls: me.client_urls.clone(),
                        zk_client: me.zk_client.clone(),
                    };
                    match node.change_membership(op).await {
                        Ok(_) => {
                            tracing::info!(name = %me.name, "published this member's attributes")
                        }
                        Err(e) => tracing::debug!("publishing attributes: {e}"),
                    }
                }
            }
            // Ask one peer in turn whether this member is still in; a
            // removed member hears nothing from the leader and learns it
            // only this way.
            if node.leader().map(|(l, _)| l) == Some(node.id) {
                continue;
            }
            let peers: Vec<String> = applied
                .membership()
                .nodes()
                .filter(|(id, _)| **id != node.id)
                .map(|(_, n)| n.addr.clone())
                .collect();
            if peers.is_empty() {
                continue;
            }
            turn = turn.wrapping_add(1);
            let addr = &peers[turn % peers.len()];
            if let Ok(mut c) = node.channels.client(addr) {
                let req = MemberStatusRequest {
                    id: node.id,
                    addr: String::new(),
                };
                if let Ok(Ok(r)) = tokio::time::timeout(period, c.member_status(req)).await {
                    if r.into_inner().removed {
                        announce_removed(&node);
                        return;
                    }
                }
            }
        }
    });
}

/// A member joining an existing cluster learns its node id as etcd's
/// does: from the membership, by its peer address (MemberAdd picked it).
/// `None` if no peer answers with one.
pub(crate) async fn id_from_peers(peers: &[String], me: &str) -> Option<NodeId> {
    let channels = crate::network::Channels::default();
    for addr in peers.iter().filter(|a| a.as_str() != me) {
        let Ok(mut c) = channels.client(addr) else {
            continue;
        };
        let req = MemberStatusRequest {
            id: 0,
            addr: me.to_string(),
        };
        if let Ok(Ok(r)) = tokio::time::timeout(Duration::from_secs(2), c.member_status(req)).await
        {
            let id = r.into_inner().id_of_addr;
            if id != 0 {
                return Some(id);
            }
        }
    }
    None
}

fn announce_removed(node: &Arc<RaftNode>) {
    tracing::warn!(
        id = node.id,
        "the member has been permanently removed from the cluster"
    );
    node.removed.send_replace(true);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_urls_give_addresses() {
        assert_eq!(
            url_addr("http://127.0.0.1:2380").as_deref(),
            Some("127.0.0.1:2380")
        );
        assert_eq!(url_addr("10.0.0.1:2380").as_deref(), Some("10.0.0.1:2380"));
        assert_eq!(url_addr("http://host"), None);
        assert_eq!(url_addr("http://host:x"), None);
    }

    #[test]
    fn etcd_started_member_rules() {
        let started = |a: &str| Member {
            addr: a.into(),
            name: "n".into(),
            ..Member::default()
        };
        let m = Membership::new(
            vec![[1, 2, 3].into()],
            BTreeMap::from([
                (1, started("a:1")),
                (2, started("b:1")),
                (3, Member::new("c:1")),
            ]),
        );
        // 3 voters, 2 started: adding a fourth needs 3 started.
        assert!(!ready_to_add_voter(&m));
        assert!(ready_to_remove_voter(&m, 3));
        assert!(!ready_to_remove_voter(&m, 1));
        assert!(ready_to_promote(&m));
    }
}
