//! Lease and session deadlines, tracked on the leader only (design
//! decision 2): not replicated, restarted at their full TTL whenever a
//! member becomes leader, and enforced by proposing `LeaseExpire`. The
//! leader also runs ZooKeeper's container manager: empty containers and
//! expired TTL nodes are deleted by proposing `ZkDeleteContainer`.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use janus_core::Command;
use openraft::ServerState;

use crate::node::RaftNode;
use crate::proto::KeepAliveRequest;

/// How often deadlines are checked and batched follower keep-alives sent.
const TICK: Duration = Duration::from_millis(50);
/// An expiry proposal that has not landed is retried after this long.
const RETRY: Duration = Duration::from_secs(1);

#[derive(Default)]
struct Deadlines {
    /// The term in which this member last became leader (None: not leader).
    term: Option<u64>,
    at: HashMap<i64, Instant>,
}

/// Lease deadlines and keep-alives of one member.
pub struct Lessor {
    deadlines: Mutex<Deadlines>,
    /// Touches waiting to be forwarded to the leader (followers).
    pending: Mutex<HashSet<i64>>,
    container_check: Duration,
    container_max_per_minute: usize,
}

impl Lessor {
    pub(crate) fn new(container_check: Duration, container_max_per_minute: usize) -> Lessor {
        Lessor {
            deadlines: Mutex::new(Deadlines::default()),
            pending: Mutex::new(HashSet::new()),
            container_check,
            container_max_per_minute,
        }
    }

    /// Start the background loop; it stops when the node is dropped.
    pub(crate) fn spawn(node: Weak<RaftNode>) {
        tokio::spawn(async move {
            let mut next_reap = Instant::now();
            loop {
                tokio::time::sleep(TICK).await;
                let Some(node) = node.upgrade() else { return };
                node.lessor.tick(&node, &mut next_reap).await;
            }
        });
    }

    async fn tick(&self, node: &Arc<RaftNode>, next_reap: &mut Instant) {
        let leading = {
            let mut d = self.deadlines.lock().unwrap_or_else(|p| p.into_inner());
            Self::sync_leadership(node, &mut d)
        };
        if !leading {
            self.flush_touches(node).await;
            return;
        }
        let now = Instant::now();
        let expired: Vec<i64> = {
            let state = node.sm.state();
            let mut d = self.deadlines.lock().unwrap_or_else(|p| p.into_inner());
            let leases = state.leases();
            let live: HashSet<i64> = leases.iter().map(|l| l.id).collect();
            d.at.retain(|id, _| live.contains(id));
            for l in &leases {
                d.at.entry(l.id)
                    .or_insert_with(|| now + Duration::from_millis(l.ttl_ms.max(0) as u64));
            }
            let expired: Vec<i64> =
                d.at.iter()
                    .filter(|(_, t)| **t <= now)
                    .map(|(id, _)| *id)
                    .collect();
            for id in &expired {
                d.at.insert(*id, now + RETRY);
            }
            expired
        };
        for id in expired {
            let node = node.clone();
            tokio::spawn(async move {
                tracing::debug!(id, "lease expired");
                if let Err(e) = node.propose(Command::LeaseExpire { id }).await {
                    tracing::warn!(id, "proposing lease expiry: {e}");
                }
            });
        }
        if now >= *next_reap {
            *next_reap = now + self.container_check;
            self.reap(node).await;
        }
    }

    /// Follow this member's leadership: on a new term as leader every
    /// deadline restarts at its full TTL; off the lead none is kept.
    fn sync_leadership(node: &RaftNode, d: &mut Deadlines) -> bool {
        let m = node.metrics();
        if m.state != ServerState::Leader {
            d.term = None;
            d.at.clear();
            return false;
        }
        if d.term != Some(m.current_term) {
            tracing::info!(
                term = m.current_term,
                "leading: lease deadlines restart at full TTL"
            );
            d.term = Some(m.current_term);
            d.at.clear();
        }
        true
    }

    /// ZooKeeper's ContainerManager: delete empty used containers and
    /// expired TTL nodes, at most `container_max_per_minute` per minute.
    async fn reap(&self, node: &Arc<RaftNode>) {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let per_check = (self.container_max_per_minute as u128 * self.container_check.as_millis()
            / 60_000)
            .max(1);
        let candidates = node.sm.state().zk_reap_candidates(wall, per_check as usize);
        for path in candidates {
            if let Err(e) = node
                .propose(Command::ZkDeleteContainer { path: path.clone() })
                .await
            {
                tracing::warn!(path, "reaping container: {e}");
            }
        }
    }

    /// On the leader: renew (or just read) leases; remaining ms per id, -1
    /// for an unknown lease. `None` if this member is not the leader.
    pub(crate) fn leader_keepalive(
        &self,
        node: &RaftNode,
        ids: &[i64],
        renew: bool,
    ) -> Option<Vec<i64>> {
        let state = node.sm.state();
        let mut d = self.deadlines.lock().unwrap_or_else(|p| p.into_inner());
        if !Self::sync_leadership(node, &mut d) {
            return None;
        }
        let now = Instant::now();
        Some(
            ids.iter()
                .map(|id| match state.lease(*id) {
                    None => -1,
                    Some(l) => {
                        let ttl = Duration::from_millis(l.ttl_ms.max(0) as u64);
                        let at = if renew {
                            d.at.insert(*id, now + ttl);
                            now + ttl
                        } else {
                            *d.at.entry(*id).or_insert(now + ttl)
                        };
                        at.saturating_duration_since(now).as_millis() as i64
                    }
                })
                .collect(),
        )
    }

    /// Note activity on a session or lease (ZooKeeper pings and requests):
    /// applied at once on the leader, batched to it from a follower.
    pub fn touch(&self, node: &RaftNode, id: i64) {
        if self.leader_keepalive(node, &[id], true).is_none() {
            self.pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(id);
        }
    }

    async fn flush_touches(&self, node: &RaftNode) {
        let ids: Vec<i64> = self
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .collect();
        if ids.is_empty() {
            return;
        }
        if let Err(e) = node.forward_keepalive(ids, true).await {
            tracing::debug!("forwarding keep-alives: {e}");
        }
    }
}

impl RaftNode {
    /// Renew a lease (etcd LeaseKeepAlive) and return its TTL in ms, or
    /// `None` if it does not exist (etcd then answers TTL 0).
    pub async fn keepalive(&self, id: i64) -> Result<Option<i64>, crate::NodeError> {
        let r = match self.lessor.leader_keepalive(self, &[id], true) {
            Some(r) => r,
            None => self.forward_keepalive(vec![id], true).await?,
        };
        Ok(r.first().copied().filter(|ms| *ms >= 0))
    }

    /// A lease's remaining time in ms (etcd LeaseTimeToLive), or `None`.
    pub async fn time_to_live(&self, id: i64) -> Result<Option<i64>, crate::NodeError> {
        let r = match self.lessor.leader_keepalive(self, &[id], false) {
            Some(r) => r,
            None => self.forward_keepalive(vec![id], false).await?,
        };
        Ok(r.first().copied().filter(|ms| *ms >= 0))
    }

    pub(crate) async fn forward_keepalive(
        &self,
        ids: Vec<i64>,
        renew: bool,
    ) -> Result<Vec<i64>, crate::NodeError> {
        let Some((_, addr)) = self.leader() else {
            return Err(crate::NodeError::NoLeader);
        };
        let mut client = self
            .channels
            .client(&addr)
            .map_err(|e| crate::NodeError::Unavailable(e.to_string()))?;
        let r = client
            .keep_alive(KeepAliveRequest { ids, renew })
            .await
            .map_err(|s| crate::NodeError::Unavailable(s.message().to_string()))?;
        Ok(r.into_inner().remaining_ms)
    }
}
