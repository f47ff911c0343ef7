//! Prometheus metrics (`/metrics`, text format).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use janus_raft::RaftNode;
use janus_store::FsyncObserver;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Metrics that accumulate between scrapes.
#[derive(Clone)]
pub struct Metrics {
    fsync: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        // etcd's wal fsync buckets: 1 ms … 8 s.
        Metrics {
            fsync: Histogram::new(exponential_buckets(0.001, 2.0, 14)),
        }
    }
}

impl Metrics {
    /// Observer the log store calls after every fsync.
    pub fn fsync_observer(&self) -> FsyncObserver {
        let h = self.fsync.clone();
        Arc::new(move |d| h.observe(d.as_secs_f64()))
    }

    /// Render every metric; point-in-time values are read from the node now.
    pub fn render(&self, node: &RaftNode) -> String {
        let m = node.metrics();
        let mut reg = Registry::with_prefix("janus");
        let g = |v: u64| ConstGauge::new(v as i64);
        reg.register("raft_term", "Current Raft term", g(m.current_term));
        reg.register(
            "raft_commit_index",
            "Last committed Raft log index",
            g(node
                .committed
                .load(Ordering::Relaxed)
                .max(m.last_applied.map_or(0, |l| l.index))),
        );
        reg.register(
            "raft_applied_index",
            "Last applied Raft log index",
            g(m.last_applied.map_or(0, |l| l.index)),
        );
        reg.register(
            "raft_last_log_index",
            "Last Raft log index",
            g(m.last_log_index.unwrap_or(0)),
        );
        reg.register(
            "raft_is_leader",
            "1 if this member is the leader",
            g((m.current_leader == Some(node.id)) as u64),
        );
        reg.register(
            "raft_leader_id",
            "Id of the current leader (0: none)",
            g(m.current_leader.unwrap_or(0)),
        );
        reg.register(
            "raft_has_leader",
            "1 if a leader is known",
            g(m.current_leader.is_some() as u64),
        );
        let rev = node.state().revision();
        reg.register(
            "revision",
            "The revision clock (etcd revision = ZooKeeper zxid)",
            ConstGauge::new(rev),
        );
        reg.register(
            "proposals_committed",
            "Proposals committed",
            ConstCounter::new(node.stats.proposals_committed.load(Ordering::Relaxed)),
        );
        reg.register(
            "proposals_failed",
            "Proposals that failed",
            ConstCounter::new(node.stats.proposals_failed.load(Ordering::Relaxed)),
        );
        reg.register(
            "wal_fsync_duration_seconds",
            "Latency of Raft log fsyncs",
            self.fsync.clone(),
        );
        // etcd's own names for what etcd also measures (the rest are in
        // janus_etcd::metrics::text).
        let mut etcd = Registry::default();
        etcd.register(
            "etcd_disk_wal_fsync_duration_seconds",
            "The latency distributions of fsync called by WAL.",
            self.fsync.clone(),
        );
        let mut out = String::new();
        let mut etcd_out = String::new();
        if let Err(e) = encode(&mut out, &reg).and_then(|()| encode(&mut etcd_out, &etcd)) {
            tracing::warn!("encoding metrics: {e}");
        }
        // One text, one `# EOF` at its end.
        let etcd_out = etcd_out.trim_end_matches("# EOF\n");
        match out.rfind("# EOF") {
            Some(i) => out.insert_str(i, etcd_out),
            None => out.push_str(etcd_out),
        }
        out
    }
}
