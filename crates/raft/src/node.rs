//! A running Raft member: proposing (with forwarding to the leader), the
//! read index, and local reads of the applied state.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use janus_core::{Applied, Command, EventBatch, ProposalBatch};
use janus_store::{
    FsyncObserver, LogStore, Member, NodeId, StateMachineStore, StateView, TypeConfig,
};
use openraft::error::{ClientWriteError, RaftError};
use openraft::{Raft, RaftMetrics, SnapshotPolicy};
use tokio::sync::{broadcast, mpsc, oneshot, watch, Semaphore};

use crate::lessor::Lessor;
use crate::network::{decode, encode, Channels, Network};
use crate::pipeline::Pipeline;
use crate::proto::{QueryRequest, ReadIndexRequest};
use crate::query::{Query, QueryResult};

/// How a member is set up.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub id: NodeId,
    /// The address other members reach this member's peer port at.
    pub advertise_peer: String,
    pub data_dir: PathBuf,
    /// Every initial member's id and peer address (this one included).
    pub initial_cluster: BTreeMap<NodeId, String>,
    pub heartbeat_ms: u64,
    pub election_timeout_ms: u64,
    /// Build a snapshot (and purge the log) after this many entries.
    pub snapshot_logs: u64,
    /// Entries kept in the log behind the snapshot, so a member that lags a
    /// little catches up from the log rather than a whole snapshot.
    pub log_keep_entries: u64,
    /// How often the leader looks for empty containers and expired TTL
    /// nodes (ZooKeeper's `znode.container.checkIntervalMs`).
    pub container_check_ms: u64,
    /// At most this many such deletions a minute (`znode.container.maxPerMinute`).
    pub container_max_per_minute: usize,
    /// Join an existing cluster (etcd's `--initial-cluster-state existing`):
    /// never initialize one; wait to be added and replicated to.
    pub join_existing: bool,
    /// What this member publishes about itself (name, client addresses);
    /// `addr` is ignored (`advertise_peer` is). An empty name publishes
    /// nothing.
    pub me: Member,
}

impl NodeConfig {
    /// A one-member cluster with Janus's defaults.
    pub fn single(id: NodeId, advertise_peer: String, data_dir: PathBuf) -> NodeConfig {
        let initial_cluster = BTreeMap::from([(id, advertise_peer.clone())]);
        NodeConfig {
            id,
            advertise_peer,
            data_dir,
            initial_cluster,
            heartbeat_ms: 100,
            election_timeout_ms: 1000,
            snapshot_logs: 10_000,
            log_keep_entries: 1000,
            container_check_ms: 60_000,
            container_max_per_minute: 10_000,
            join_existing: false,
            me: Member::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("opening storage: {0}")]
    Open(#[from] janus_store::OpenError),
    #[error("raft: {0}")]
    Raft(String),
    /// No leader is known (an election is under way, or no quorum).
    #[error("no leader")]
    NoLeader,
    /// The request may or may not have been applied (etcd's "request timed
    /// out" / ZooKeeper's connection loss).
    #[error("leader unreachable: {0}")]
    Unavailable(String),
    #[error("timed out waiting for the leader")]
    Timeout,
}

impl From<NodeError> for tonic::Status {
    fn from(e: NodeError) -> tonic::Status {
        match e {
            NodeError::NoLeader | NodeError::Timeout => tonic::Status::unavailable(e.to_string()),
            NodeError::Unavailable(_) => tonic::Status::unavailable(e.to_string()),
            _ => tonic::Status::internal(e.to_string()),
        }
    }
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct NodeStats {
    pub proposals_committed: AtomicU64,
    pub proposals_failed: AtomicU64,
}

/// A running member. What the personalities use of it is its public API:
/// [`propose`](Self::propose) and [`pipeline`](Self::pipeline) (writes, one
/// path), [`state`](Self::state) after [`read_index`](Self::read_index) or
/// not (linearizable or serializable reads at any retained revision),
/// [`subscribe`](Self::subscribe) (changes), [`applied`](Self::applied)
/// (progress), [`touch`](Self::touch) (sessions and leases), and the
/// members and leader; openraft and the store stay inside this crate.
pub struct RaftNode {
    pub id: NodeId,
    pub(crate) raft: Raft<TypeConfig>,
    pub(crate) sm: StateMachineStore,
    pub stats: NodeStats,
    /// The committed log index, as last persisted.
    pub committed: Arc<AtomicU64>,
    pub(crate) channels: Channels,
    pub(crate) lessor: Lessor,
    /// Proposals waiting to join the next log entry.
    batcher: mpsc::UnboundedSender<Queued>,
    /// How long a proposal waits for a leader to appear.
    pub(crate) leader_wait: Duration,
    /// Membership changes go one at a time.
    pub(crate) membership_lock: tokio::sync::Mutex<()>,
    /// Leadership confirmations shared by concurrent linearizable reads.
    read_rounds: crate::read_rounds::ReadRounds,
    /// Set once this member knows it was removed from the cluster.
    pub(crate) removed: watch::Sender<bool>,
    /// True while this leader hands its leadership over (see
    /// `transfer.rs`): new proposals and reads wait, heartbeats stop.
    pub(crate) transferring: watch::Sender<bool>,
    /// Heartbeats are off (a leadership transfer's campaign).
    pub(crate) quiet: watch::Sender<bool>,
    /// The configured election timeout (openraft's minimum; the leader
    /// lease is twice this).
    pub(crate) election_timeout: Duration,
    /// How long a voter refuses votes after a leader message (openraft's
    /// leader lease, its `election_timeout_max`).
    pub(crate) vote_lease: Duration,
    /// When this member last accepted a message from a leader, which is
    /// when openraft last renewed the leader lease it votes by.
    pub(crate) last_leader_msg: std::sync::Mutex<Instant>,
    /// Bumped by every HoldElections request, so only the timer of the
    /// latest one turns elections back on.
    pub(crate) election_hold: AtomicU64,
    /// When this member last refused a candidate with a shorter log (see
    /// `election.rs`).
    pub(crate) refused_shorter: std::sync::Mutex<Option<Instant>>,
    /// Elections are held off (HoldElections, for a leadership transfer).
    pub(crate) elections_held: std::sync::atomic::AtomicBool,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Outcome of one local attempt.
pub(crate) enum Attempt {
    Done(Applied),
    NotLeader,
}

/// A proposal waiting for the batcher.
struct Queued {
    command: Command,
    reply: oneshot::Sender<Result<Attempt, NodeError>>,
}

/// At most this many commands share one log entry.
const MAX_BATCH: usize = 1024;
/// And at most about this many bytes (a single larger command still goes
/// alone): big entries made AppendEntries slow enough to time out.
const MAX_BATCH_BYTES: usize = 1 << 20;
/// Log entries in one AppendEntries message; with MAX_BATCH_BYTES this
/// bounds a message to about 16 MiB.
const MAX_PAYLOAD_ENTRIES: u64 = 16;
/// Log entries in flight to openraft at once. openraft 0.9 writes each
/// entry with its own fsync, one after the other; commands arriving during
/// that time queue here and go together into the next entry.
const MAX_IN_FLIGHT: usize = 2;
/// A batch unanswered this long lets the next one go: its slot is only for
/// pipelining, and some answers never come (below).
const PERMIT_HOLD: Duration = Duration::from_secs(1);
/// openraft drops the callback of an entry this member proposed as leader
/// when, after losing office, it installs a snapshot that covers the
/// entry's index: no answer ever comes. Such writes get "outcome unknown"
/// (etcd's "request timed out", ZooKeeper's connection loss) after this.
/// (Two such batches used to hold both slots and stop every write through
/// this member, and through the cluster once it led again.)
const ANSWER_WAIT: Duration = Duration::from_secs(10);

/// Gather queued proposals into one entry each time a slot is free, stamp
/// it with the leader's clock and hand it to openraft, in arrival order.
fn spawn_batcher(raft: Raft<TypeConfig>, mut rx: mpsc::UnboundedReceiver<Queued>) {
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    tokio::spawn(async move {
        let mut carry: Option<Queued> = None;
        loop {
            let first = match carry.take() {
                Some(q) => q,
                None => match rx.recv().await {
                    Some(q) => q,
                    None => return,
                },
            };
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return;
            };
            let mut bytes = first.command.approx_bytes();
            let mut group = vec![first];
            let mut next = None;
            while group.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
                match rx.try_recv() {
                    Ok(q) => {
                        let b = q.command.approx_bytes();
                        if bytes + b > MAX_BATCH_BYTES {
                            next = Some(q);
                            break;
                        }
                        bytes += b;
                        group.push(q);
                    }
                    Err(_) => break,
                }
            }
            // A command that did not fit opens the next batch.
            if let Some(q) = next {
                carry = Some(q);
            }
            let (commands, replies): (Vec<Command>, Vec<_>) =
                group.into_iter().map(|q| (q.command, q.reply)).unzip();
            let batch = ProposalBatch {
                time_ms: now_ms(),
                commands,
            };
            let fail = |replies: Vec<oneshot::Sender<Result<Attempt, NodeError>>>,
                        e: &dyn Fn() -> Result<Attempt, NodeError>| {
                for r in replies {
                    let _ = r.send(e());
                }
            };
            let rx_resp = match raft.client_write_ff(batch).await {
                Ok(rx) => rx,
                Err(e) => {
                    let msg = e.to_string();
                    fail(replies, &|| Err(NodeError::Raft(msg.clone())));
                    continue;
                }
            };
            tokio::spawn(async move {
                let mut permit = Some(permit);
                let mut rx_resp = rx_resp;
                let hold = tokio::time::sleep(PERMIT_HOLD);
                let give_up = tokio::time::sleep(ANSWER_WAIT);
                tokio::pin!(hold, give_up);
                let answer = loop {
                    tokio::select! {
                        r = &mut rx_resp => break Some(r),
                        _ = &mut hold, if permit.is_some() => permit = None,
                        _ = &mut give_up => break None,
                    }
                };
                drop(permit);
                let Some(answer) = answer else {
                    tracing::warn!(
                        writes = replies.len(),
                        "no answer for a batch of writes in {ANSWER_WAIT:?}; their outcome is unknown"
                    );
                    fail(replies, &|| {
                        Err(NodeError::Unavailable(
                            "no answer for the write's log entry; its outcome is unknown".into(),
                        ))
                    });
                    return;
                };
                match answer {
                    Ok(Ok(resp)) => {
                        let mut results = resp.data.into_iter();
                        for r in replies {
                            let a = match results.next() {
                                Some(a) => Ok(Attempt::Done(a)),
                                None => Err(NodeError::Raft("missing result in batch".into())),
                            };
                            let _ = r.send(a);
                        }
                    }
                    Ok(Err(ClientWriteError::ForwardToLeader(_))) => {
                        fail(replies, &|| Ok(Attempt::NotLeader))
                    }
                    Ok(Err(e)) => {
                        let msg = e.to_string();
                        fail(replies, &|| Err(NodeError::Raft(msg.clone())));
                    }
                    Err(_) => fail(replies, &|| Err(NodeError::Raft("raft stopped".into()))),
                }
            });
        }
    });
}

/// openraft's election timer range for Janus's (etcd's) election timeout
/// `t`: (min, max) in ms.
///
/// An openraft follower that knows a leader starts an election only once
/// the leader lease (openraft uses `election_timeout_max` for it) *and*
/// its own election timeout (fixed per process, in `[min, max)`) have
/// passed since the last leader message; a voter refuses votes while its
/// lease holds. Passing `t` straight through would mean 2t to 4t without
/// a leader after a crash (seen: 3.4 s at t = 1 s), where etcd takes
/// about t. With `[0.4t, 0.5t)` a follower campaigns 0.9t to t after the
/// leader's last message, and the other voters' leases have lapsed by then.
pub(crate) fn raft_election_ms(t: u64) -> (u64, u64) {
    let max = (t / 2).max(2);
    let min = (t * 2 / 5).clamp(1, max - 1);
    (min, max)
}

/// The AppendEntries timeout: three heartbeats but at least 300 ms, and
/// under openraft's election timer so a dead leader is still noticed.
fn rpc_timeout_ms(heartbeat_ms: u64, election_timeout_ms: u64) -> u64 {
    let (min, _) = raft_election_ms(election_timeout_ms);
    (heartbeat_ms * 3)
        .max(300)
        .max(heartbeat_ms)
        .min(min.saturating_sub(1))
        .max(1)
}

/// Heartbeats every `every` while this member leads (a no-op otherwise),
/// except while `quiet`: during a leadership transfer's campaign, once the
/// other voters hold their elections, the followers' leases must lapse for
/// the transferee to win. Ends when Raft shuts down.
fn spawn_heartbeats(raft: Raft<TypeConfig>, every: Duration, quiet: watch::Receiver<bool>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if *quiet.borrow() {
                continue;
            }
            if raft.trigger().heartbeat().await.is_err() {
                return;
            }
        }
    });
}

impl RaftNode {
    /// Open storage, start Raft, and initialize the cluster on first start
    /// (the member with the lowest id in `initial_cluster` does it).
    pub async fn start(
        mut cfg: NodeConfig,
        on_fsync: Option<FsyncObserver>,
    ) -> Result<Arc<RaftNode>, NodeError> {
        if cfg.join_existing {
            let peers: Vec<String> = cfg.initial_cluster.values().cloned().collect();
            match crate::membership::id_from_peers(&peers, &cfg.advertise_peer).await {
                Some(id) if id != cfg.id => {
                    tracing::info!(
                        id,
                        "the cluster knows this member's peer address under this id"
                    );
                    cfg.id = id;
                }
                Some(_) => {}
                None => tracing::info!(
                    id = cfg.id,
                    "joining an existing cluster; waiting to be added"
                ),
            }
        }
        std::fs::create_dir_all(&cfg.data_dir)
            .map_err(|e| NodeError::Raft(format!("{}: {e}", cfg.data_dir.display())))?;
        let (log, sm): (LogStore, StateMachineStore) =
            janus_store::open(&cfg.data_dir.join("db"), on_fsync)?;
        let raft_cfg = openraft::Config {
            cluster_name: "janus".into(),
            // openraft 0.9 uses heartbeat_interval also as the timeout of
            // every AppendEntries, which at 100 ms cut off large batches
            // on a busy machine and stalled replication. Give RPCs more
            // time and send heartbeats from our own timer instead.
            heartbeat_interval: rpc_timeout_ms(cfg.heartbeat_ms, cfg.election_timeout_ms),
            enable_heartbeat: false,
            // Elections start from Janus's watchdog (`election.rs`), on
            // etcd's clock; two drivers bumping terms at different moments
            // kept splitting the votes.
            enable_elect: false,
            election_timeout_min: raft_election_ms(cfg.election_timeout_ms).0,
            election_timeout_max: raft_election_ms(cfg.election_timeout_ms).1,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(cfg.snapshot_logs),
            max_in_snapshot_log_to_keep: cfg.log_keep_entries,
            max_payload_entries: MAX_PAYLOAD_ENTRIES,
            ..Default::default()
        }
        .validate()
        .map_err(|e| NodeError::Raft(e.to_string()))?;
        let committed = log.committed_index();
        let unpurged = log.unpurged_bytes();
        let network = Network::default();
        let channels = network.channels.clone();
        let raft = Raft::new(cfg.id, Arc::new(raft_cfg), network, log, sm.clone())
            .await
            .map_err(|e| NodeError::Raft(e.to_string()))?;
        let initialized = raft
            .is_initialized()
            .await
            .map_err(|e| NodeError::Raft(e.to_string()))?;
        let first = cfg.initial_cluster.keys().next().copied();
        if !initialized && first == Some(cfg.id) && !cfg.join_existing {
            // The others publish their names and client addresses once
            // they run; this member's are known now.
            let members: BTreeMap<NodeId, Member> = cfg
                .initial_cluster
                .iter()
                .map(|(id, addr)| {
                    let node = if *id == cfg.id {
                        Member {
                            addr: addr.clone(),
                            ..cfg.me.clone()
                        }
                    } else {
                        Member::new(addr.clone())
                    };
                    (*id, node)
                })
                .collect();
            tracing::info!(?members, "initializing a new cluster");
            if let Err(e) = raft.initialize(members).await {
                tracing::warn!("initialize: {e}");
            }
        }
        let (batcher, batch_rx) = mpsc::unbounded_channel();
        spawn_batcher(raft.clone(), batch_rx);
        spawn_snapshot_by_size(raft.clone(), unpurged);
        let transferring = watch::channel(false).0;
        let quiet = watch::channel(false).0;
        spawn_heartbeats(
            raft.clone(),
            Duration::from_millis(cfg.heartbeat_ms),
            quiet.subscribe(),
        );
        let node = Arc::new(RaftNode {
            id: cfg.id,
            batcher,
            raft,
            sm,
            stats: NodeStats::default(),
            committed,
            channels,
            lessor: Lessor::new(
                Duration::from_millis(cfg.container_check_ms),
                cfg.container_max_per_minute,
            ),
            leader_wait: Duration::from_millis(cfg.election_timeout_ms * 5),
            membership_lock: tokio::sync::Mutex::new(()),
            read_rounds: Default::default(),
            removed: watch::channel(false).0,
            transferring,
            quiet,
            election_timeout: Duration::from_millis(cfg.election_timeout_ms),
            vote_lease: Duration::from_millis(raft_election_ms(cfg.election_timeout_ms).1),
            last_leader_msg: std::sync::Mutex::new(Instant::now()),
            election_hold: AtomicU64::new(0),
            elections_held: Default::default(),
            refused_shorter: std::sync::Mutex::new(None),
        });
        Lessor::spawn(Arc::downgrade(&node));
        crate::election::spawn(
            Arc::downgrade(&node),
            Duration::from_millis(cfg.election_timeout_ms),
        );
        crate::membership::spawn_member_tasks(
            Arc::downgrade(&node),
            cfg.me.clone(),
            Duration::from_millis(cfg.election_timeout_ms.max(200)),
        );
        Ok(node)
    }

    /// Note activity on a ZooKeeper session or a lease.
    pub fn touch(&self, id: i64) {
        self.lessor.touch(self, id);
    }

    pub fn metrics(&self) -> RaftMetrics<NodeId, Member> {
        self.raft.metrics().borrow().clone()
    }

    /// Raft's metrics (term, leader, membership) as they change.
    pub fn watch_metrics(&self) -> watch::Receiver<RaftMetrics<NodeId, Member>> {
        self.raft.metrics()
    }

    /// The current Raft term.
    pub fn term(&self) -> u64 {
        self.raft.metrics().borrow().current_term
    }

    /// The shortest time a follower waits for its leader before it
    /// campaigns (openraft's minimum election timer).
    pub fn election_wait(&self) -> Duration {
        Duration::from_millis(self.raft.config().election_timeout_min.max(1))
    }

    /// The applied state now: a serializable read, or a linearizable one
    /// after [`read_index`](Self::read_index). Reads at older revisions go
    /// through it too (etcd's `Range` with a revision, watch replay).
    pub fn state(&self) -> StateView<'_> {
        self.sm.state()
    }

    /// Every applied change from now on, one batch per log entry, in
    /// revision order; a receiver that lags too far is told so.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<EventBatch>> {
        self.sm.subscribe()
    }

    /// How far this member has applied the log, as it moves.
    pub fn applied(&self) -> watch::Receiver<janus_store::Applied> {
        self.sm.applied()
    }

    /// A backup of the whole applied state (see `janus_store::Backup`);
    /// blocking: call it off the async runtime.
    pub fn backup(&self) -> Result<janus_store::Backup, janus_store::BackupError> {
        self.sm.backup()
    }

    /// The current leader and its peer address, if one is known.
    pub fn leader(&self) -> Option<(NodeId, String)> {
        let m = self.raft.metrics();
        let m = m.borrow();
        let leader = m.current_leader?;
        let addr = m
            .membership_config
            .membership()
            .get_node(&leader)
            .map(|n| n.addr.clone())?;
        Some((leader, addr))
    }

    /// Wait until some member is the known leader.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Result<NodeId, NodeError> {
        let deadline = Instant::now() + timeout;
        let mut rx = self.raft.metrics();
        loop {
            if let Some(l) = rx.borrow().current_leader {
                return Ok(l);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(NodeError::Timeout);
            }
            let _ = tokio::time::timeout(left, rx.changed()).await;
        }
    }

    /// Commit a command through Raft and return what applying it gave.
    /// Acknowledged only once a quorum has the entry on disk and it is
    /// applied here (leader) or at the leader (forwarded). Concurrent calls
    /// are not ordered among themselves: a [`Pipeline`] is.
    pub async fn propose(self: &Arc<Self>, command: Command) -> Result<Applied, NodeError> {
        let (reply, rx) = oneshot::channel();
        crate::pipeline::route(self, vec![(command, reply)], &mut Vec::new()).await;
        rx.await
            .map_err(|_| NodeError::Raft("raft stopped".into()))?
    }

    /// Queue `command` for the next log entry now (the batcher keeps the
    /// order of these calls); the receiver says how it went.
    pub(crate) fn enqueue_local(
        &self,
        command: Command,
    ) -> Result<oneshot::Receiver<Result<Attempt, NodeError>>, NodeError> {
        let (reply, rx) = oneshot::channel();
        self.batcher
            .send(Queued { command, reply })
            .map_err(|_| NodeError::Raft("raft stopped".into()))?;
        Ok(rx)
    }

    pub(crate) fn count_proposal(&self, ok: bool) {
        let c = if ok {
            &self.stats.proposals_committed
        } else {
            &self.stats.proposals_failed
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// An ordered proposer for one client connection (see [`Pipeline`]).
    pub fn pipeline(self: &Arc<Self>) -> Pipeline {
        Pipeline::start(self.clone())
    }

    /// Forwarded batches land here (on the leader): every command is queued
    /// before any is awaited, so they keep their order.
    pub(crate) async fn propose_batch_as_leader(
        &self,
        commands: Vec<Command>,
    ) -> Result<Vec<Result<Applied, String>>, tonic::Status> {
        self.transfer_done().await;
        if !self.leader().is_some_and(|(l, _)| l == self.id) {
            return Err(tonic::Status::failed_precondition("not leader"));
        }
        let mut waits = Vec::with_capacity(commands.len());
        for c in commands {
            waits.push(self.enqueue_local(c));
        }
        let mut out = Vec::with_capacity(waits.len());
        let mut all_refused = true;
        for w in waits {
            let r = match w {
                Ok(rx) => match rx.await {
                    Ok(Ok(Attempt::Done(a))) => {
                        all_refused = false;
                        Ok(a)
                    }
                    Ok(Ok(Attempt::NotLeader)) => Err("not leader".to_string()),
                    Ok(Err(e)) => {
                        all_refused = false;
                        Err(e.to_string())
                    }
                    Err(_) => {
                        all_refused = false;
                        Err("raft stopped".to_string())
                    }
                },
                Err(e) => {
                    all_refused = false;
                    Err(e.to_string())
                }
            };
            self.count_proposal(r.is_ok());
            out.push(r);
        }
        if all_refused {
            // Leadership went before any entry was taken: nothing proposed.
            return Err(tonic::Status::failed_precondition("not leader"));
        }
        Ok(out)
    }

    /// Raft's read index: returns once this member has applied everything
    /// committed when the call began, as confirmed by the current leader.
    pub async fn read_index(&self) -> Result<(), NodeError> {
        let deadline = Instant::now() + self.leader_wait;
        loop {
            let index = match self.leader() {
                Some((leader, _)) if leader == self.id => {
                    if self.is_transferring() {
                        // openraft confirms leadership with heartbeats,
                        // which would renew the leases the transfer waits out.
                        self.transfer_done().await;
                        continue;
                    }
                    match self.read_rounds.read_index(&self.raft).await {
                        Ok(index) => Some(index),
                        Err(RaftError::APIError(_)) => None,
                        Err(e) => return Err(NodeError::Raft(e.to_string())),
                    }
                }
                Some((_, addr)) => {
                    let mut client = self
                        .channels
                        .client(&addr)
                        .map_err(|e| NodeError::Unavailable(e.to_string()))?;
                    match client.read_index(ReadIndexRequest {}).await {
                        Ok(r) => Some(r.into_inner().read_index),
                        Err(s) if s.code() == tonic::Code::FailedPrecondition => None,
                        // A read index changes nothing: whatever became of
                        // this one, ask again (the next leader, once known).
                        Err(s) if s.code() == tonic::Code::Unavailable => None,
                        Err(s) => return Err(NodeError::Unavailable(s.message().to_string())),
                    }
                }
                None => None,
            };
            if let Some(index) = index {
                return self.wait_applied(index, deadline).await;
            }
            if Instant::now() >= deadline {
                return Err(NodeError::NoLeader);
            }
            let mut rx = self.raft.metrics();
            let _ = tokio::time::timeout(Duration::from_millis(50), rx.changed()).await;
        }
    }

    /// The leader's side of a follower's read index request.
    pub(crate) async fn leader_read_index(&self) -> Result<u64, tonic::Status> {
        self.transfer_done().await;
        match self.read_rounds.read_index(&self.raft).await {
            Ok(index) => Ok(index),
            Err(RaftError::APIError(_)) => Err(tonic::Status::failed_precondition("not leader")),
            Err(e) => Err(tonic::Status::unavailable(e.to_string())),
        }
    }

    /// Returns once this member has applied log index `index`.
    pub async fn wait_applied(&self, index: u64, deadline: Instant) -> Result<(), NodeError> {
        let mut rx = self.sm.applied();
        loop {
            if rx.borrow_and_update().index >= index {
                return Ok(());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(NodeError::Timeout);
            }
            match tokio::time::timeout(left, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(NodeError::Raft("state machine stopped".into())),
                Err(_) => return Err(NodeError::Timeout),
            }
        }
    }

    /// Answer a query from the local applied state.
    pub fn query(&self, q: &Query) -> QueryResult {
        crate::query::run(&self.sm.state(), q)
    }

    /// Answer a query through a peer (tests and tools).
    pub async fn query_remote(
        addr: &str,
        q: &Query,
        linearizable: bool,
    ) -> Result<QueryResult, tonic::Status> {
        let mut client = Channels::default()
            .client(addr)
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        let resp = client
            .query(QueryRequest {
                query: encode(q)?,
                linearizable,
            })
            .await?;
        decode(&resp.into_inner().result)
    }

    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!("raft shutdown: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{raft_election_ms, rpc_timeout_ms};
    use crate::network::{never_sent, Channels};
    use crate::proto::ForwardRequest;

    /// A call to a port nobody listens on fails as "never sent" (so a write
    /// waits for the next leader); other failures do not.
    #[tokio::test]
    async fn refused_connection_is_never_sent() {
        let addr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").to_string()
        };
        let mut client = Channels::default().client(&addr).expect("client");
        let req = ForwardRequest {
            command: Vec::new(),
            from_member: true,
        };
        let err = client.forward(req).await.expect_err("nobody listens");
        assert!(never_sent(&err), "{err:?}");
        assert!(!never_sent(&tonic::Status::unavailable("connection reset")));
        assert!(!never_sent(&tonic::Status::deadline_exceeded("late")));
    }

    #[test]
    fn rpc_timeout_stays_under_the_election_timer() {
        assert_eq!(rpc_timeout_ms(100, 1000), 300);
        assert_eq!(rpc_timeout_ms(50, 500), 199);
        assert_eq!(rpc_timeout_ms(200, 5000), 600);
        for (h, e) in [(1, 10), (2, 10), (10, 100), (100, 1000), (50, 300)] {
            let t = rpc_timeout_ms(h, e);
            let (min, max) = raft_election_ms(e);
            assert!(t >= 1 && t < min && min < max, "{h} {e} -> {t} {min} {max}");
        }
    }

    #[test]
    fn a_follower_campaigns_about_one_election_timeout_after_the_leader() {
        for t in [100, 300, 1000, 5000] {
            let (min, max) = raft_election_ms(t);
            // The lease (max) plus the follower's own timer.
            assert!(
                max + min >= t * 9 / 10 && max + max <= t,
                "{t}: {min} {max}"
            );
        }
    }
}

/// A log this large since the last purge gets a snapshot (and so a purge)
/// whatever its entry count: large values would otherwise hold gigabytes
/// of log between count-triggered snapshots.
const SNAPSHOT_LOG_BYTES: u64 = 256 << 20;

fn spawn_snapshot_by_size(raft: Raft<TypeConfig>, unpurged: Arc<AtomicU64>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            if unpurged.load(Ordering::Relaxed) < SNAPSHOT_LOG_BYTES {
                continue;
            }
            // Counted again from the purge that follows the snapshot.
            unpurged.store(0, Ordering::Relaxed);
            tracing::info!(
                "log over {SNAPSHOT_LOG_BYTES} bytes since the last purge; snapshotting"
            );
            if raft.trigger().snapshot().await.is_err() {
                return;
            }
        }
    });
}
