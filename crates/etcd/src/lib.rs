//! Janus's etcd personality: the v3 API (gRPC, with the gRPC health service)
//! and the HTTP endpoints on `etcd_listen`, all on one port.
//!
//! The services are thin: they check requests as etcd's `v3rpc` layer does
//! (with etcd's error texts), translate them into `janus_core` commands or
//! reads of the applied state, and translate results back. See docs/etcd.md.

use std::future::Future;
use std::sync::Arc;

use janus_raft::RaftNode;
use serde::{Deserialize, Serialize};

mod auth;
mod check;
mod cluster;
mod compactor;
mod error;
mod gateway;
mod kv;
mod lease;
pub mod metrics;
mod quota;
mod recipes;
pub mod tls;
mod watch;

pub use error::RpcError;
pub use quota::health;
pub use tls::ClientCertCn;

/// Types generated from `proto/etcd` (etcd's own package names).
pub mod pb {
    pub mod mvccpb {
        tonic::include_proto!("mvccpb");
        include!(concat!(env!("OUT_DIR"), "/mvccpb.serde.rs"));
    }
    pub mod authpb {
        tonic::include_proto!("authpb");
        include!(concat!(env!("OUT_DIR"), "/authpb.serde.rs"));
    }
    pub mod etcdserverpb {
        tonic::include_proto!("etcdserverpb");
        include!(concat!(env!("OUT_DIR"), "/etcdserverpb.serde.rs"));
    }
    pub mod v3lockpb {
        tonic::include_proto!("v3lockpb");
        include!(concat!(env!("OUT_DIR"), "/v3lockpb.serde.rs"));
    }
    pub mod v3electionpb {
        tonic::include_proto!("v3electionpb");
        include!(concat!(env!("OUT_DIR"), "/v3electionpb.serde.rs"));
    }
    pub mod health {
        tonic::include_proto!("grpc.health.v1");
    }
}

/// The `[etcd]` section of Janus's configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `--max-txn-ops`: most operations in one txn branch.
    pub max_txn_ops: usize,
    /// `--max-request-bytes`: largest client write request.
    pub max_request_bytes: usize,
    /// `--name`: this member's name in MemberList.
    pub name: String,
    /// `--initial-cluster-token`: hashed into the cluster id.
    pub cluster_token: String,
    /// Shortest lease TTL granted, in seconds (etcd: 1.5 election timeouts,
    /// rounded up: 2 s with the default timings).
    pub min_lease_ttl_secs: i64,
    /// How often watchers that asked for progress notifications get one
    /// (etcd's `--experimental-watch-progress-notify-interval`).
    pub watch_progress_notify_interval_ms: u64,
    /// The version Maintenance.Status reports (Kubernetes enables watch
    /// progress requests for 3.5.13 and later).
    pub version: String,
    /// `--auto-compaction-mode`: "periodic" or "revision".
    pub auto_compaction_mode: String,
    /// `--auto-compaction-retention`: a duration ("1h", "30m"; a bare
    /// number is hours) for periodic, a revision count for revision; empty
    /// or "0" turns auto-compaction off.
    pub auto_compaction_retention: String,
    /// `--auth-token-ttl`: seconds a simple auth token lives past its last use.
    pub auth_token_ttl_secs: u64,
    /// `--bcrypt-cost`: the cost of users' password hashes.
    pub bcrypt_cost: u32,
    /// `--cert-file`: the client port's TLS certificate (PEM); with
    /// `key_file` it turns TLS on (the port then speaks only TLS).
    pub cert_file: Option<std::path::PathBuf>,
    /// `--key-file`: its private key (PEM).
    pub key_file: Option<std::path::PathBuf>,
    /// `--trusted-ca-file`: CA bundle client certificates are checked
    /// against.
    pub trusted_ca_file: Option<std::path::PathBuf>,
    /// `--client-cert-auth`: refuse clients without a certificate the
    /// trusted CA signed.
    pub client_cert_auth: bool,
    /// `--client-crl-file`: client certificates whose serial it lists are
    /// refused (PEM or DER).
    pub client_crl_file: Option<std::path::PathBuf>,
    /// `--quota-backend-bytes`: the size (see docs/etcd.md) past which
    /// writes raise the NOSPACE alarm; 0 = etcd's default, 2 GiB.
    pub quota_backend_bytes: u64,
    /// `--experimental-max-learners`: most learners in the cluster.
    pub max_learners: usize,
    /// `--advertise-client-urls`: the client URLs MemberList shows for
    /// this member; empty: one per `etcd_listen` entry.
    pub advertise_client_urls: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_txn_ops: 128,
            max_request_bytes: 1536 * 1024,
            name: "default".into(),
            cluster_token: "etcd-cluster".into(),
            min_lease_ttl_secs: 2,
            watch_progress_notify_interval_ms: 600_000,
            version: "3.5.17".into(),
            auto_compaction_mode: "periodic".into(),
            auto_compaction_retention: "0".into(),
            auth_token_ttl_secs: 300,
            bcrypt_cost: 10,
            cert_file: None,
            key_file: None,
            trusted_ca_file: None,
            client_cert_auth: false,
            client_crl_file: None,
            quota_backend_bytes: 0,
            max_learners: 1,
            advertise_client_urls: Vec::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("binding {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("serving: {0}")]
    Io(#[from] std::io::Error),
    #[error("etcd config: {0}")]
    Config(String),
    #[error("etcd TLS: {0}")]
    Tls(#[from] tls::TlsError),
}

/// How many watch streams fell behind the shared event buffer and caught
/// up from history since start.
pub fn watch_resyncs() -> u64 {
    watch::RESYNCS.load(std::sync::atomic::Ordering::Relaxed)
}

/// The compacted revision as etcd reports it: etcd's store starts at -1
/// (never compacted), Janus's at 0.
pub(crate) fn etcd_compacted_revision(st: &janus_core::State) -> i64 {
    match st.compacted_revision() {
        0 => -1,
        c => c,
    }
}

/// What every service shares.
pub(crate) struct Ctx {
    pub node: Arc<RaftNode>,
    pub cfg: Config,
    pub cluster_id: u64,
    /// Recent change events, for watchers catching up.
    pub recent: Arc<watch::Recent>,
    /// This member's simple auth tokens.
    pub tokens: auth::Tokens,
}

/// A stable 64-bit mix (splitmix64's finalizer): ids derived from names.
pub(crate) fn mix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The etcd cluster id of a cluster token (`--initial-cluster-token`).
pub fn cluster_id(cluster_token: &str) -> u64 {
    mix64(hash_str(cluster_token)).max(1)
}

/// The etcd member id of Raft node `node` in cluster `cluster_id`.
pub fn member_id(node: u64, cluster_id: u64) -> u64 {
    mix64(node ^ cluster_id).max(1)
}

fn hash_str(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

impl Ctx {
    /// etcd member ids are 64-bit hashes; ours derive from the Raft node id
    /// and the cluster token so every member computes the same ones
    /// (a bijection but for `max(1)`: the node behind an id is found by
    /// comparing against the members' ids).
    pub fn member_id_of(&self, node: u64) -> u64 {
        member_id(node, self.cluster_id)
    }

    pub fn member_id(&self) -> u64 {
        self.member_id_of(self.node.id)
    }

    pub fn raft_term(&self) -> u64 {
        self.node.term()
    }

    pub fn header(&self, revision: i64) -> pb::etcdserverpb::ResponseHeader {
        pb::etcdserverpb::ResponseHeader {
            cluster_id: self.cluster_id,
            member_id: self.member_id(),
            revision,
            raft_term: self.raft_term(),
        }
    }

    /// A header at the current applied revision.
    pub fn header_now(&self) -> pb::etcdserverpb::ResponseHeader {
        let rev = self.node.state().revision();
        self.header(rev)
    }
}

/// Serve etcd clients on `listen` (comma-separated, see `listen_addrs`)
/// until `shutdown` resolves. `http` holds
/// the binary's own HTTP routes (`/health`, `/version`, `/metrics`), served
/// on the same port as gRPC (HTTP/2 without TLS for gRPC clients).
pub async fn serve(
    node: Arc<RaftNode>,
    listen: String,
    cfg: Config,
    http: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    serve_notify(node, listen, cfg, http, shutdown, None).await
}

/// `serve`, telling `bound` the listeners' addresses (and whether each is
/// TLS) once every one is bound, before serving starts.
pub async fn serve_notify(
    node: Arc<RaftNode>,
    listen: String,
    cfg: Config,
    http: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    bound: Option<tokio::sync::oneshot::Sender<Vec<(std::net::SocketAddr, bool)>>>,
) -> Result<(), ServeError> {
    let compaction = compactor::policy(&cfg.auto_compaction_mode, &cfg.auto_compaction_retention)
        .map_err(ServeError::Config)?;
    let tls = match (&cfg.cert_file, &cfg.key_file) {
        (Some(cert), Some(key)) => Some(tls::server_config(
            cert,
            key,
            cfg.trusted_ca_file.as_deref(),
            cfg.client_cert_auth,
            cfg.client_crl_file.as_deref(),
        )?),
        (None, None) if cfg.client_cert_auth => {
            return Err(ServeError::Config(
                "client_cert_auth needs cert_file and key_file".into(),
            ))
        }
        (None, None) => None,
        _ => {
            return Err(ServeError::Config(
                "cert_file and key_file go together".into(),
            ))
        }
    };
    let mut listeners = Vec::new();
    for (addr, secure) in listen_addrs(&listen, tls.is_some())? {
        let l = tokio::net::TcpListener::bind(&addr)
            .await
            .map_err(|source| ServeError::Bind {
                addr: addr.clone(),
                source,
            })?;
        listeners.push((l, secure));
    }
    if let Some(tx) = bound {
        let addrs = listeners
            .iter()
            .filter_map(|(l, secure)| Some((l.local_addr().ok()?, *secure)))
            .collect();
        let _ = tx.send(addrs);
    }
    let (recent, recent_task) = watch::Recent::spawn(node.clone());
    let _recent = AbortOnDrop(recent_task);
    quota::set_quota(cfg.quota_backend_bytes);
    let _leader_changes = AbortOnDrop(tokio::spawn(metrics::watch_leader(node.clone())));
    let ctx = Arc::new(Ctx {
        node,
        recent,
        cluster_id: cluster_id(&cfg.cluster_token),
        tokens: auth::Tokens::new(std::time::Duration::from_secs(cfg.auth_token_ttl_secs)),
        cfg,
    });
    // The compactor lives as long as the server does.
    let _compactor =
        compaction.map(|policy| AbortOnDrop(tokio::spawn(compactor::run(ctx.clone(), policy))));
    let app = router(ctx.clone()).merge(gateway::router(ctx)).merge(http);
    // etcd serves every --listen-client-urls entry (kubeadm passes two:
    // loopback and the node's address); one shutdown stops them all.
    let shutdown = futures::FutureExt::shared(Box::pin(shutdown));
    let servers = listeners.into_iter().map(|(listener, secure)| {
        let app = app.clone();
        let shutdown = shutdown.clone();
        let tls = tls.clone().filter(|_| secure);
        async move {
            match tls {
                Some(tls) => tls::serve(listener, tls, app, shutdown).await,
                None => {
                    use axum::serve::ListenerExt;
                    // Small replies must not wait for the client's delayed ACK
                    // (about 40 ms per request without this; etcd sets it too).
                    let listener = listener.tap_io(|tcp| {
                        let _ = tcp.set_nodelay(true);
                    });
                    axum::serve(listener, app)
                        .with_graceful_shutdown(shutdown)
                        .await
                }
            }
        }
    });
    futures::future::try_join_all(servers).await?;
    Ok(())
}

/// The client listeners of `etcd_listen`, a comma-separated list whose
/// entries are `host:port` (TLS when a certificate is configured),
/// `http://host:port` (plain) or `https://host:port` (TLS, which must then
/// be configured): (address, TLS?).
pub fn listen_addrs(listen: &str, tls_on: bool) -> Result<Vec<(String, bool)>, ServeError> {
    let mut out = Vec::new();
    for entry in listen.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (addr, secure) = if let Some(a) = entry.strip_prefix("https://") {
            if !tls_on {
                return Err(ServeError::Config(format!(
                    "{entry}: https needs cert_file and key_file"
                )));
            }
            (a, true)
        } else if let Some(a) = entry.strip_prefix("http://") {
            (a, false)
        } else {
            (entry, tls_on)
        };
        let addr = addr.trim_end_matches('/');
        if addr.is_empty() || addr.contains('/') {
            return Err(ServeError::Config(format!(
                "etcd_listen entry {entry:?} is not [http[s]://]host:port"
            )));
        }
        out.push((addr.to_string(), secure));
    }
    if out.is_empty() {
        return Err(ServeError::Config("etcd_listen is empty".into()));
    }
    Ok(out)
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Every gRPC service as one axum router.
fn router(ctx: Arc<Ctx>) -> axum::Router {
    use pb::etcdserverpb::*;
    // gRPC's limit sits above max_request_bytes so that etcd's own check
    // (with etcd's "request is too large") answers first, as in etcd.
    let limit = ctx.cfg.max_request_bytes.saturating_add(512 * 1024);
    let routes = tonic::service::Routes::new(
        kv_server::KvServer::new(kv::Kv(ctx.clone())).max_decoding_message_size(limit),
    )
    .add_service(
        watch_server::WatchServer::new(watch::Watch(ctx.clone())).max_decoding_message_size(limit),
    )
    .add_service(
        lease_server::LeaseServer::new(lease::Lease(ctx.clone())).max_decoding_message_size(limit),
    )
    .add_service(
        cluster_server::ClusterServer::new(cluster::Cluster(ctx.clone()))
            .max_decoding_message_size(limit),
    )
    .add_service(
        maintenance_server::MaintenanceServer::new(cluster::Maintenance(ctx.clone()))
            .max_decoding_message_size(limit),
    )
    .add_service(
        auth_server::AuthServer::new(auth::Auth(ctx.clone())).max_decoding_message_size(limit),
    )
    .add_service(pb::v3lockpb::lock_server::LockServer::new(recipes::Lock(
        ctx.clone(),
    )))
    .add_service(pb::v3electionpb::election_server::ElectionServer::new(
        recipes::Election(ctx.clone()),
    ))
    .add_service(pb::health::health_server::HealthServer::new(
        cluster::Health(ctx),
    ));
    routes
        .into_axum_router()
        .layer(axum::middleware::map_response(grpc_go_limit_status))
        .layer(axum::middleware::from_fn(metrics::grpc_layer))
        .layer(axum::middleware::from_fn(plain_http_not_found))
}

/// A request that is not gRPC and no other route took (say `GET /nope`)
/// gets Go's `404 page not found`, as from etcd's HTTP mux, not a gRPC
/// "unimplemented" status in an HTTP 200.
async fn plain_http_not_found(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let grpc = req
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/grpc"));
    if grpc {
        return next.run(req).await;
    }
    (
        axum::http::StatusCode::NOT_FOUND,
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; charset=utf-8",
        )],
        "404 page not found\n",
    )
        .into_response()
}

/// tonic reports a message over the size limit as OutOfRange; grpc-go (and
/// so etcd) as ResourceExhausted with its own text, which clients see.
async fn grpc_go_limit_status(mut resp: axum::response::Response) -> axum::response::Response {
    use axum::http::HeaderValue;
    let h = resp.headers();
    if h.get("grpc-status").and_then(|v| v.to_str().ok()) != Some("11") {
        return resp;
    }
    let Some(msg) = h.get("grpc-message").and_then(|v| v.to_str().ok()) else {
        return resp;
    };
    let msg = msg.replace("%20", " ");
    let Some(rest) = msg.strip_prefix("Error, decoded message length too large: found ") else {
        return resp;
    };
    let nums: Vec<&str> = rest
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .collect();
    let [found, limit] = nums[..] else {
        return resp;
    };
    let text = format!("grpc: received message larger than max ({found} vs. {limit})");
    if let Ok(v) = HeaderValue::from_str(&text) {
        resp.headers_mut()
            .insert("grpc-status", HeaderValue::from_static("8"));
        resp.headers_mut().insert("grpc-message", v);
    }
    resp
}

#[cfg(test)]
mod listen_tests {
    use super::listen_addrs;

    #[test]
    fn listen_lists_with_schemes() {
        let got = listen_addrs(
            "https://127.0.0.1:2379, http://10.0.0.1:2379/,0.0.0.0:1",
            true,
        )
        .expect("valid");
        assert_eq!(
            got,
            vec![
                ("127.0.0.1:2379".to_string(), true),
                ("10.0.0.1:2379".to_string(), false),
                ("0.0.0.0:1".to_string(), true),
            ]
        );
        assert_eq!(
            listen_addrs("127.0.0.1:2379", false).expect("valid"),
            vec![("127.0.0.1:2379".to_string(), false)]
        );
        assert!(listen_addrs("https://127.0.0.1:2379", false).is_err());
        assert!(listen_addrs("unix://x/y", false).is_err());
        assert!(listen_addrs(" , ", false).is_err());
    }
}
