//! Janus's etcd personality: the v3 API (gRPC and the JSON gateway) and the
//! HTTP endpoints on `etcd_listen`.
//!
//! (Being built: see the README's feature table.)

use std::future::Future;
use std::sync::Arc;

use janus_raft::RaftNode;
use serde::{Deserialize, Serialize};

/// The `[etcd]` section of Janus's configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `--max-txn-ops`.
    pub max_txn_ops: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config { max_txn_ops: 128 }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("binding {addr}: {source}")]
    Bind { addr: String, source: std::io::Error },
    #[error("serving: {0}")]
    Io(#[from] std::io::Error),
}

/// Serve etcd clients on `listen` until `shutdown` resolves. `http` holds
/// the binary's own HTTP routes (`/health`, `/version`, `/metrics`), served
/// on the same port.
pub async fn serve(
    node: Arc<RaftNode>,
    listen: String,
    cfg: Config,
    http: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let _ = (node, cfg);
    let listener =
        tokio::net::TcpListener::bind(&listen).await.map_err(|source| ServeError::Bind { addr: listen, source })?;
    axum::serve(listener, http).with_graceful_shutdown(shutdown).await?;
    Ok(())
}
