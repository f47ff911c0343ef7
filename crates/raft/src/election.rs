//! Elections on etcd's clock.
//!
//! openraft 0.9 checks its election timer on a tick of 1.5 heartbeat
//! intervals (which it also uses as the AppendEntries timeout, 300 ms
//! here), so a follower noticed a dead leader up to half a second late, and
//! a split or refused vote cost another round of that. This watchdog looks
//! every few milliseconds instead: a voter that has heard nothing from a
//! leader for its election timeout plus a random part of a quarter of it
//! starts an election, and starts another if, half an election timeout
//! later, nobody leads (later still for a member whose log a voter found
//! behind). Voters' leases (openraft's, half the election
//! timeout) have lapsed by then, so the vote can be won. openraft's own
//! election timer is off: with two drivers bumping the term at different
//! moments, the two survivors of a three-member cluster kept refusing each
//! other for seconds. The only voter of a one-member cluster elects itself
//! at once.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::Ordering;
use std::sync::Weak;
use std::time::{Duration, Instant};

use openraft::ServerState;

use crate::node::RaftNode;

/// Start the watchdog; it ends with the node.
pub(crate) fn spawn(node: Weak<RaftNode>, timeout: Duration) {
    let tick = (timeout / 20).clamp(Duration::from_millis(1), Duration::from_millis(25));
    let random = RandomState::new();
    tokio::spawn(async move {
        let mut attempts: u64 = 0;
        let jitter = |n: u64| {
            let quarter = u64::try_from((timeout / 4).as_micros()).unwrap_or(0).max(1);
            Duration::from_micros(random.hash_one(n) % quarter)
        };
        let mut due = jitter(0);
        let mut last_attempt: Option<Instant> = None;
        // The term our last campaign ran in.
        let mut attempt_term = 0;
        loop {
            tokio::time::sleep(tick).await;
            let Some(node) = node.upgrade() else { return };
            let m = node.metrics();
            let voters: Vec<_> = m.membership_config.membership().voter_ids().collect();
            let voter = voters.contains(&node.id);
            if !voter
                || m.state == ServerState::Leader
                || node.elections_held.load(Ordering::SeqCst)
                || node.is_transferring()
            {
                last_attempt = None;
                continue;
            }
            let now = Instant::now();
            let silent = now.saturating_duration_since(node.last_leader_msg());
            // Without pre-vote (openraft 0.9 has none) a member whose log is
            // behind only bumps the term, and the member that could win then
            // finds it has voted already; so one that was refused as
            // behind lets the others campaign first.
            let behind = node
                .channels
                .refused_as_behind()
                .is_some_and(|t| now.saturating_duration_since(t) < timeout * 2);
            let (wait, retry) = if behind {
                (timeout * 2 + due, timeout * 3 / 2 + due)
            } else {
                (timeout + due, timeout / 2 + due)
            };
            // Silent past the timeout, and our last campaign (if any) has
            // had its time to be decided.
            let settled = |at: Instant| now.saturating_duration_since(at) >= retry;
            let normal = last_attempt.is_none_or(settled) && (voters.len() == 1 || silent >= wait);
            // We refused a shorter log's candidate in the term our campaign
            // ran in: it voted for itself there, so ours cannot win; the
            // next term can, at once.
            let outrun = match (last_attempt, node.refused_shorter()) {
                (Some(at), Some((when, term))) => {
                    term >= attempt_term
                        && now.saturating_duration_since(when) < timeout
                        && now.saturating_duration_since(at) >= timeout / 20
                }
                _ => false,
            };
            let ready = (!behind && outrun) || normal;
            if !ready {
                continue;
            }
            attempts += 1;
            due = jitter(attempts);
            last_attempt = Some(now);
            attempt_term = m.current_term + 1;
            tracing::info!(
                term = m.current_term,
                silent_ms = silent.as_millis() as u64,
                "no word from a leader; starting an election"
            );
            if node.raft.trigger().elect().await.is_err() {
                return;
            }
        }
    });
}
