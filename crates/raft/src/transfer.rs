//! Leadership transfer (etcd's MoveLeader) on openraft 0.9, which has none.
//!
//! An openraft voter refuses votes while the leader lease it last renewed
//! holds (election_timeout_max, twice Janus's election timeout, since the
//! last leader message), and a leader cannot step down on request. So the
//! leader falls silent instead:
//!
//! 1. new proposals and reads wait (`transferring`), and the leader waits
//!    for the transferee's log to match its own;
//! 2. it asks the other voters not to start elections for a bounded time
//!    (`HoldElections`; a timer turns them back on even if the leader
//!    dies), then stops its heartbeats (`quiet`);
//! 3. it tells the transferee to campaign (`TimeoutNow`): the transferee
//!    waits until the lease has lapsed since the last leader message it
//!    accepted, then starts an election, again while nobody leads, within
//!    a bound;
//! 4. the leader returns once its metrics show the transferee leading; on
//!    timeout it answers so and resumes heartbeats, which renew the leases
//!    and keep it leader.
//!
//! Waiting proposals then run here or are forwarded to the new leader like
//! any proposal made at a follower. A transfer takes about the lease.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use janus_store::{Member, NodeId};
use openraft::RaftMetrics;
use tokio::sync::watch;

use crate::node::RaftNode;
use crate::proto::{HoldElectionsRequest, TimeoutNowRequest};

/// Why a transfer did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TransferError {
    #[error("not leader")]
    NotLeader,
    /// Not a voting member.
    #[error("bad leader transferee")]
    BadTransferee,
    /// The transferee did not take over in time (etcd's "leader transfer
    /// took too long"); this member still leads unless it lost the lead
    /// some other way meanwhile.
    #[error("leader transfer took too long")]
    Timeout,
}

/// The longest a HoldElections request may keep elections off, whatever
/// it asks: a bound on the harm of a stale or bogus request.
const MAX_HOLD: Duration = Duration::from_secs(60);

/// Clears `transferring` however the transfer ends (error, panic).
struct Transferring<'a>(&'a watch::Sender<bool>);

impl Drop for Transferring<'_> {
    fn drop(&mut self) {
        self.0.send_replace(false);
    }
}

/// Whether `to`'s log, as replicated by this leader, matches the leader's.
fn caught_up(m: &RaftMetrics<NodeId, Member>, to: NodeId) -> bool {
    let matched = m
        .replication
        .as_ref()
        .and_then(|r| r.get(&to))
        .and_then(|l| l.as_ref())
        .map(|l| l.index);
    matched.is_some() && matched == m.last_log_index
}

impl RaftNode {
    /// Whether this member is handing its leadership over right now.
    pub(crate) fn is_transferring(&self) -> bool {
        *self.transferring.borrow()
    }

    /// Returns once no transfer runs here (at once mostly; a transfer is
    /// bounded by its deadline).
    pub(crate) async fn transfer_done(&self) {
        let mut rx = self.transferring.subscribe();
        // An error means the sender is gone, i.e. this node is dropping.
        let _ = rx.wait_for(|t| !*t).await;
    }

    /// Note a message accepted from the leader (it renewed our lease).
    pub(crate) fn heard_from_leader(&self) {
        let mut t = self
            .last_leader_msg
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        *t = Instant::now();
    }

    /// Note a vote refused to a candidate whose log is shorter.
    pub(crate) fn note_refused_shorter(&self) {
        *self
            .refused_shorter
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
    }

    pub(crate) fn refused_shorter(&self) -> Option<Instant> {
        *self
            .refused_shorter
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn last_leader_msg(&self) -> Instant {
        *self
            .last_leader_msg
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Wait until `pred` holds for the metrics or `deadline` passes;
    /// returns whether it held.
    async fn wait_metrics(
        &self,
        deadline: Instant,
        pred: impl Fn(&RaftMetrics<NodeId, Member>) -> bool,
    ) -> bool {
        let mut rx = self.raft.metrics();
        loop {
            if pred(&rx.borrow_and_update()) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            // Changed, timed out or Raft stopped: look again (the
            // deadline ends the loop).
            let changed = tokio::time::timeout_at(deadline.into(), rx.changed()).await;
            if matches!(changed, Ok(Err(_))) {
                return pred(&rx.borrow());
            }
        }
    }

    /// Make the voter `to` the leader (etcd's MoveLeader), giving up after
    /// `timeout`. Must run on the leader; a transfer to itself is done.
    pub async fn transfer_leadership(
        self: &Arc<Self>,
        to: NodeId,
        timeout: Duration,
    ) -> Result<(), TransferError> {
        let deadline = Instant::now() + timeout;
        let node = self.clone();
        // A task of its own: a client giving up must not stop the
        // transfer between silencing the leader and resuming it.
        match tokio::spawn(async move { node.transfer(to, deadline).await }).await {
            Ok(r) => r,
            Err(_) => Err(TransferError::Timeout),
        }
    }

    async fn transfer(&self, to: NodeId, deadline: Instant) -> Result<(), TransferError> {
        // One transfer at a time, and no membership change under one.
        let _lock = tokio::time::timeout_at(deadline.into(), self.membership_lock.lock())
            .await
            .map_err(|_| TransferError::Timeout)?;
        let m = self.metrics();
        if m.current_leader != Some(self.id) {
            return Err(TransferError::NotLeader);
        }
        let membership = m.membership_config.membership();
        if !membership.voter_ids().any(|v| v == to) {
            return Err(TransferError::BadTransferee);
        }
        if to == self.id {
            return Ok(());
        }
        let addr = membership
            .get_node(&to)
            .map(|n| n.addr.clone())
            .ok_or(TransferError::BadTransferee)?;
        let others: Vec<String> = membership
            .voter_ids()
            .filter(|v| *v != to && *v != self.id)
            .filter_map(|v| membership.get_node(&v).map(|n| n.addr.clone()))
            .collect();
        let term = m.current_term;

        self.transferring.send_replace(true);
        let _resume = Transferring(&self.transferring);
        tracing::info!(to, "transferring leadership");

        // As etcd, let the transferee catch up first; proposals already
        // queued still commit meanwhile. A member that cannot within two
        // election timeouts is likely down: leave the cluster be.
        let catch_up_by = deadline.min(Instant::now() + self.election_timeout * 2);
        let ok = self
            .wait_metrics(catch_up_by, |m| {
                m.current_leader == Some(self.id) && caught_up(m, to)
            })
            .await;
        if !ok {
            if self.metrics().current_leader != Some(self.id) {
                return Err(TransferError::NotLeader);
            }
            tracing::info!(to, "leadership transfer: the transferee did not catch up");
            return Err(TransferError::Timeout);
        }

        // The others keep elections off a little past our deadline, so
        // they do not campaign while we are silent but do once we resume
        // or die.
        let hold = deadline.saturating_duration_since(Instant::now()) + self.election_timeout;
        self.hold_elections_at(&others, hold).await;
        // Now silent: the voters' leases lapse and the transferee can win.
        self.quiet.send_replace(true);
        let _loud = Transferring(&self.quiet);

        // Campaign until shortly before our deadline, so its last election
        // is decided before our heartbeats resume.
        let within = deadline
            .saturating_duration_since(Instant::now())
            .saturating_sub(self.election_timeout / 2);
        let sent = self
            .call_timeout_now(&addr, term, within)
            .await
            .inspect_err(|e| tracing::info!(to, "leadership transfer: TimeoutNow: {e}"));
        let moved = sent.is_ok()
            && self
                .wait_metrics(deadline, |m| m.current_leader == Some(to))
                .await;
        // Elections back on at once, in the background (the hold's timer
        // does it anyway).
        self.release_elections_at(others);
        if moved {
            tracing::info!(to, "leadership transferred");
            Ok(())
        } else {
            tracing::info!(to, "leadership transfer took too long");
            Err(TransferError::Timeout)
        }
    }

    /// HoldElections at each of `addrs`, at once, bounded by an election
    /// timeout; failures are ignored (an unreachable member cannot win an
    /// election meanwhile either).
    async fn hold_elections_at(&self, addrs: &[String], hold: Duration) {
        let hold_ms = u64::try_from(hold.as_millis()).unwrap_or(u64::MAX);
        let calls = addrs.iter().map(|addr| {
            let client = self.channels.client(addr);
            let t = self.election_timeout;
            async move {
                let Ok(mut client) = client else { return };
                let mut req = tonic::Request::new(HoldElectionsRequest { hold_ms });
                req.set_timeout(t);
                if let Err(e) = client.hold_elections(req).await {
                    tracing::info!(addr, "leadership transfer: HoldElections: {e}");
                }
            }
        });
        futures::future::join_all(calls).await;
    }

    fn release_elections_at(&self, addrs: Vec<String>) {
        let channels = self.channels.clone();
        let t = self.election_timeout;
        tokio::spawn(async move {
            for addr in addrs {
                if let Ok(mut client) = channels.client(&addr) {
                    let mut req = tonic::Request::new(HoldElectionsRequest { hold_ms: 0 });
                    req.set_timeout(t);
                    let _ = client.hold_elections(req).await;
                }
            }
        });
    }

    async fn call_timeout_now(
        &self,
        addr: &str,
        term: u64,
        within: Duration,
    ) -> Result<(), tonic::Status> {
        let mut client = self
            .channels
            .client(addr)
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        let mut req = tonic::Request::new(TimeoutNowRequest {
            leader: self.id,
            term,
            within_ms: u64::try_from(within.as_millis()).unwrap_or(u64::MAX),
        });
        req.set_timeout(self.election_timeout);
        client.timeout_now(req).await.map(|_| ())
    }

    /// The HoldElections RPC: elections off for `hold` (capped), then back
    /// on by a timer; a zero `hold` turns them on now.
    pub(crate) fn hold_elections(self: &Arc<Self>, hold: Duration) {
        let generation = self.election_hold.fetch_add(1, Ordering::SeqCst) + 1;
        // The election watchdog (`election.rs`) is what starts elections.
        if hold.is_zero() {
            self.elections_held.store(false, Ordering::SeqCst);
            return;
        }
        self.elections_held.store(true, Ordering::SeqCst);
        tracing::info!(?hold, "elections held for a leadership transfer");
        let node = Arc::downgrade(self);
        tokio::spawn(async move {
            tokio::time::sleep(hold.min(MAX_HOLD)).await;
            if let Some(node) = node.upgrade() {
                // A later hold has its own timer.
                if node.election_hold.load(Ordering::SeqCst) == generation {
                    node.elections_held.store(false, Ordering::SeqCst);
                }
            }
        });
    }

    /// The TimeoutNow RPC: campaign for the lead of `leader` in `term`,
    /// for at most `within`, in the background.
    pub(crate) fn timeout_now(
        self: &Arc<Self>,
        leader: NodeId,
        term: u64,
        within: Duration,
    ) -> Result<(), tonic::Status> {
        let m = self.metrics();
        if m.current_leader != Some(leader) || m.current_term != term {
            return Err(tonic::Status::failed_precondition(
                "stale leadership transfer",
            ));
        }
        if !m
            .membership_config
            .membership()
            .voter_ids()
            .any(|v| v == self.id)
        {
            return Err(tonic::Status::failed_precondition("not a voter"));
        }
        let until = Instant::now() + within.min(MAX_HOLD);
        let node = self.clone();
        tokio::spawn(async move { node.campaign(leader, until).await });
        Ok(())
    }

    /// Start elections until this member leads, someone other than the
    /// old leader does, or `until`; each once the lease has lapsed since
    /// the last leader message (voters refuse votes before).
    async fn campaign(&self, old: NodeId, until: Instant) {
        let lease = self.vote_lease;
        // Other voters heard the leader's last message about when we did.
        let margin = (self.election_timeout / 10).max(Duration::from_millis(10));
        loop {
            let leader = self.metrics().current_leader;
            if leader == Some(self.id) {
                tracing::info!("leadership transfer: now leader");
                return;
            }
            if leader.is_some_and(|l| l != old) {
                return;
            }
            let now = Instant::now();
            if now >= until {
                tracing::info!("leadership transfer: campaign gave up");
                return;
            }
            let ready = self.last_leader_msg() + lease + margin;
            if now < ready {
                tokio::time::sleep_until(ready.min(until).into()).await;
                continue;
            }
            tracing::info!("leadership transfer: campaigning");
            let term = self.metrics().current_term;
            if self.raft.trigger().elect().await.is_err() {
                return;
            }
            // The trigger only queues the election: it has begun once the
            // term moves on, and is won or lost once someone leads. Give
            // it an election timeout; a lost one is tried again (the lease
            // has lapsed already unless a leader spoke).
            let by = until.min(Instant::now() + self.election_timeout);
            self.wait_metrics(by, |m| m.current_term > term && m.current_leader.is_some())
                .await;
        }
    }
}
