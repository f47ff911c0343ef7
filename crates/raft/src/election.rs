//! Elections on etcd's clock.
//!
//! openraft 0.9 checks its election timer on a tick of 1.5 heartbeat
//! intervals (which it also uses as the AppendEntries timeout, 300 ms
//! here), so a follower noticed a dead leader up to half a second late, and
//! a split or refused vote cost another round of that. This watchdog looks
//! every few milliseconds instead: a voter that has heard nothing from a
//! leader for its election timeout plus a random part of a quarter of it
//! starts an election, and starts another if, half an election timeout
//! later, nobody leads: sooner after a split vote (an eighth to a quarter
//! of it), later for a member whose log a voter found behind or whose
//! campaign nobody answered. Voters' leases (openraft's, half the election
//! timeout) have lapsed by then, so the vote can be won. openraft's own
//! election timer is off: with two drivers bumping the term at different
//! moments, the two survivors of a three-member cluster kept refusing each
//! other for seconds. The only voter of a one-member cluster elects itself
//! at once.
//!
//! A leader whose process is gone is noticed sooner. A follower that has
//! not heard from its leader for a quarter of the election timeout dials
//! the leader's peer port once; when the connection is refused (nothing
//! listens there: the process died, the host is up), it campaigns as
//! soon as the voters' leases allow (half the election timeout after the
//! last leader message; the survivors in order of id, an eighth of the
//! timeout apart, so they do not split the vote) instead of after the
//! full timeout. ZooKeeper's followers likewise elect as soon as their
//! leader's connection closes. A paused leader, a partition or a dead host
//! refuse nothing and take the full timeout.
//!
//! The watchdog also does etcd's check-quorum, which openraft 0.9 lacks: a
//! leader that no quorum has acknowledged for an election timeout steps
//! down, so a leader cut off from the others stops answering as one
//! (`/health` false, `hasleader` watches end, ZooKeeper read-only sessions
//! become possible). openraft has no call to step down; a leader leaves
//! office when it grants a vote of a later term, so it grants one to a
//! member id no member has ([`NOBODY`]). A real leader of that term still
//! wins over that vote: a committed vote beats an uncommitted one.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::Ordering;
use std::sync::Weak;
use std::time::{Duration, Instant};

use openraft::raft::VoteRequest;
use openraft::{CommittedLeaderId, LogId, ServerState, Vote};

use crate::node::RaftNode;

/// The candidate a leader that lost its quorum votes for to leave office:
/// no member has this id.
pub const NOBODY: janus_store::NodeId = u64::MAX;

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
        // The vote replies counted when our last campaign started.
        let mut replies_at_attempt = 0;
        // Since when we lead (in the term noted), as the watchdog saw it.
        let mut leading: Option<(u64, Instant)> = None;
        // The probe of a silent leader's peer port: one per silence, keyed
        // by the last leader message.
        let mut probe: Option<(Instant, Probe)> = None;
        loop {
            tokio::time::sleep(tick).await;
            let Some(node) = node.upgrade() else { return };
            let m = node.metrics();
            let voters: Vec<_> = m.membership_config.membership().voter_ids().collect();
            let voter = voters.contains(&node.id);
            if m.state == ServerState::Leader {
                let since = match leading {
                    Some((term, at)) if term == m.current_term => at,
                    _ => {
                        let now = Instant::now();
                        leading = Some((m.current_term, now));
                        now
                    }
                };
                if voters.len() > 1 && lost_quorum(&m, since, timeout) {
                    step_down(&node, &m).await;
                }
                last_attempt = None;
                continue;
            }
            leading = None;
            if !voter || node.elections_held.load(Ordering::SeqCst) || node.is_transferring() {
                last_attempt = None;
                continue;
            }
            let now = Instant::now();
            let last_msg = node.last_leader_msg();
            let silent = now.saturating_duration_since(last_msg);
            if silent >= timeout / 4 && probe.as_ref().is_none_or(|(at, _)| *at != last_msg) {
                if let Some((_, addr)) = node.leader() {
                    let p = Probe::Running(tokio::spawn(refuses(addr, timeout / 10)));
                    probe = Some((last_msg, p));
                }
            }
            let finished = match &mut probe {
                Some((_, Probe::Running(h))) if h.is_finished() => Some(h.await.unwrap_or(false)),
                _ => None,
            };
            if let (Some(refused), Some((_, p))) = (finished, probe.as_mut()) {
                if refused {
                    tracing::info!(
                        silent_ms = silent.as_millis() as u64,
                        "the silent leader's peer port refuses a connection; campaigning once the leases lapse"
                    );
                }
                *p = Probe::Done(refused);
            }
            let gone = matches!(probe, Some((at, Probe::Done(true))) if at == last_msg);
            // Without pre-vote (openraft 0.9 has none) a member whose log is
            // behind only bumps the term, and the member that could win then
            // finds it has voted already; so one that was refused as
            // behind lets the others campaign first. Only a refusal since
            // the last leader was heard counts: one from an earlier
            // election says nothing about the logs now.
            let behind = node
                .channels
                .refused_as_behind()
                .is_some_and(|t| t > last_msg && now.saturating_duration_since(t) < timeout * 2);
            // Our last campaign reached nobody (no vote reply came back):
            // we are cut off, or the others are down. Campaigning every t/2
            // then does harm when the requests do get through but the
            // replies do not (a one-way cut): each one that is granted
            // restarts the granting voters' clocks, so they never run an
            // election of their own. Retry only after their clocks ran out.
            let unheard = voters.len() > 1
                && last_attempt.is_some()
                && node.channels.vote_replies() == replies_at_attempt;
            // A voter had voted for another candidate in our campaign's
            // term (a split vote): nobody can win that term, and every
            // voter's lease has lapsed, so the next one can be tried soon;
            // the random part keeps the candidates apart.
            let split =
                last_attempt.is_some_and(|at| node.channels.split_vote().is_some_and(|s| s >= at));
            let (wait, retry) = if behind {
                (timeout * 2 + due, timeout * 3 / 2 + due)
            } else if unheard {
                (timeout + due, timeout * 2 + due)
            } else if split {
                (timeout + due, timeout / 8 + due / 2)
            } else if gone {
                // All followers see the refusal at about the same moment;
                // campaigning together they split the vote. The survivor
                // with the lowest id goes first, the others an eighth of
                // the timeout apart (and take over if it cannot win).
                let leader = m.current_leader;
                let rank = voters
                    .iter()
                    .filter(|v| Some(**v) != leader && **v < node.id)
                    .count() as u32;
                (
                    node.vote_lease + timeout / 8 * rank + due / 4,
                    timeout / 2 + due,
                )
            } else {
                (timeout + due, timeout / 2 + due)
            };
            // Silent past the timeout, and our last campaign (if any) has
            // had its time to be decided.
            let settled = |at: Instant| now.saturating_duration_since(at) >= retry;
            let normal = last_attempt.is_none_or(settled) && (voters.len() == 1 || silent >= wait);
            // We refused a candidate with a shorter log (in this leaderless
            // spell, since our last campaign): it cannot win, and waiting for
            // our own timer only adds to the time without a leader, so
            // campaign at once. If it voted for itself in the term we then
            // ask for, that is a split vote, retried soon (above).
            let outrun = node.refused_shorter().is_some_and(|when| {
                when > last_msg
                    && now.saturating_duration_since(when) < timeout / 2
                    && silent >= timeout / 2
                    && last_attempt.is_none_or(|at| {
                        at < when && now.saturating_duration_since(at) >= timeout / 20
                    })
            });
            let ready = (!behind && outrun) || normal;
            if !ready {
                continue;
            }
            attempts += 1;
            due = jitter(attempts);
            last_attempt = Some(now);
            replies_at_attempt = node.channels.vote_replies();
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

/// A dial of a silent leader's peer port: under way, or whether it was
/// refused.
enum Probe {
    Running(tokio::task::JoinHandle<bool>),
    Done(bool),
}

/// Is a connection to `addr` refused (nothing listening) within `limit`?
/// A timeout, a reset or a connection made say nothing.
async fn refuses(addr: String, limit: Duration) -> bool {
    match tokio::time::timeout(limit, tokio::net::TcpStream::connect(addr.as_str())).await {
        Ok(Err(e)) => e.kind() == std::io::ErrorKind::ConnectionRefused,
        _ => false,
    }
}

/// Has no quorum acknowledged this leader for an election timeout? Before
/// any acknowledgement, the time since it took office counts.
fn lost_quorum(
    m: &openraft::RaftMetrics<janus_store::NodeId, janus_store::Member>,
    since: Instant,
    timeout: Duration,
) -> bool {
    let limit = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
    match m.millis_since_quorum_ack {
        Some(ms) => ms > limit,
        None => since.elapsed() > timeout,
    }
}

/// Leave office: grant a vote of the next term to [`NOBODY`], as a leader
/// does when it sees a later term.
async fn step_down(
    node: &RaftNode,
    m: &openraft::RaftMetrics<janus_store::NodeId, janus_store::Member>,
) {
    let term = m.current_term + 1;
    tracing::warn!(
        term = m.current_term,
        since_quorum_ack_ms = m.millis_since_quorum_ack,
        "no quorum acknowledged this leader for an election timeout; stepping down"
    );
    // A log id past any this member holds, so the vote is not refused for
    // its log.
    let last = LogId::new(CommittedLeaderId::new(term, NOBODY), u64::MAX);
    let req = VoteRequest::new(Vote::new(term, NOBODY), Some(last));
    match node.raft.vote(req).await {
        Ok(r) if r.vote_granted => {
            // A follower now: wait an election timeout before campaigning.
            node.heard_from_leader();
        }
        Ok(_) => {}
        Err(e) => tracing::info!("stepping down: {e}"),
    }
}
