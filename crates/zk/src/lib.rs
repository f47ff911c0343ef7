//! Janus's ZooKeeper personality: the client protocol on `zk_listen`.
//!
//! (Being built: see the README's feature table.)

use std::future::Future;
use std::sync::Arc;

use janus_raft::RaftNode;
use serde::{Deserialize, Serialize};

/// The `[zookeeper]` section of Janus's configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// ZooKeeper's `tickTime`: session timeouts are negotiated between 2 and
    /// 20 ticks.
    pub tick_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config { tick_ms: 2000 }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("binding {addr}: {source}")]
    Bind { addr: String, source: std::io::Error },
}

/// Serve ZooKeeper clients on `listen` until `shutdown` resolves.
pub async fn serve(
    node: Arc<RaftNode>,
    listen: String,
    cfg: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let _ = (node, listen, cfg);
    shutdown.await;
    Ok(())
}
