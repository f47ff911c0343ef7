//! Linearizable reads share leadership confirmations. Each confirmation
//! (openraft's `get_read_log_id`) costs a round trip to a quorum; etcd
//! folds the read-index requests that arrive meanwhile into one round, and
//! so does this: a read is answered by the first round that *started*
//! after it arrived (an earlier round may predate a write the reader has
//! already seen acknowledged), and at most one round runs at a time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use janus_store::{Member, NodeId, TypeConfig};
use openraft::error::{CheckIsLeaderError, RaftError};
use openraft::Raft;

type ReadError = RaftError<NodeId, CheckIsLeaderError<NodeId, Member>>;

#[derive(Default)]
pub(crate) struct ReadRounds {
    /// Held by the round in progress; waiters queue here in order.
    running: tokio::sync::Mutex<()>,
    /// Rounds started so far (the next one gets this plus one).
    started: AtomicU64,
    /// (number, read index) of the latest round that succeeded.
    done: Mutex<(u64, u64)>,
}

impl ReadRounds {
    /// The log index a linearizable read must see applied, from a
    /// leadership confirmation that started after this call did.
    pub(crate) async fn read_index(&self, raft: &Raft<TypeConfig>) -> Result<u64, ReadError> {
        self.read_index_with(|| async {
            let (read, _) = raft.get_read_log_id().await?;
            Ok(read.map_or(0, |l| l.index))
        })
        .await
    }

    async fn read_index_with<F, Fut, E>(&self, confirm: F) -> Result<u64, E>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<u64, E>>,
    {
        let arrived = self.started.load(Ordering::SeqCst);
        let _turn = self.running.lock().await;
        if let Some(index) = self.covered(arrived) {
            return Ok(index);
        }
        let round = self.started.fetch_add(1, Ordering::SeqCst) + 1;
        let index = confirm().await?;
        if let Ok(mut done) = self.done.lock() {
            *done = (round, index);
        }
        Ok(index)
    }

    /// The read index of a successful round numbered above `arrived`.
    fn covered(&self, arrived: u64) -> Option<u64> {
        let (round, index) = *self.done.lock().ok()?;
        (round > arrived).then_some(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test]
    async fn concurrent_reads_share_the_next_round() {
        let rounds = Arc::new(ReadRounds::default());
        let calls = Arc::new(AtomicU64::new(0));
        let confirm = |calls: Arc<AtomicU64>| async move {
            let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
            Ok::<u64, ()>(n * 10)
        };
        // The first read runs a round; 20 reads arriving during it share
        // the one round after it.
        let first = {
            let (r, c) = (rounds.clone(), calls.clone());
            tokio::spawn(async move { r.read_index_with(|| confirm(c)).await })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        let mut rest = Vec::new();
        for _ in 0..20 {
            let (r, c) = (rounds.clone(), calls.clone());
            rest.push(tokio::spawn(async move {
                r.read_index_with(|| confirm(c)).await
            }));
        }
        assert_eq!(first.await.unwrap(), Ok(10));
        for h in rest {
            assert_eq!(h.await.unwrap(), Ok(20));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        // A read after that needs a round of its own.
        let c = calls.clone();
        assert_eq!(rounds.read_index_with(|| confirm(c)).await, Ok(30));
    }

    #[tokio::test]
    async fn a_failed_round_covers_nobody() {
        let rounds = ReadRounds::default();
        assert_eq!(
            rounds
                .read_index_with(|| async { Err::<u64, &str>("no") })
                .await,
            Err("no")
        );
        assert_eq!(
            rounds
                .read_index_with(|| async { Ok::<u64, &str>(7) })
                .await,
            Ok(7)
        );
    }
}
