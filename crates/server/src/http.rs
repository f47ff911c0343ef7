//! HTTP endpoints: `/health` (etcd's JSON shape), `/version`, `/metrics`,
//! and on the client port the web console (`/console`, see `console.rs`).

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use janus_raft::RaftNode;
use serde_json::json;

use crate::console::{self, Console, Timeline};
use crate::metrics::Metrics;

/// The etcd version Janus speaks (Kubernetes gates features on it).
pub const ETCD_VERSION: &str = "3.5.17";
pub const ETCD_CLUSTER_VERSION: &str = "3.5.0";

#[derive(Clone)]
pub struct Http {
    pub node: Arc<RaftNode>,
    pub metrics: Metrics,
}

fn probes(state: Http) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/version", get(version))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// The client port's routes beside gRPC and the gateway: the probes, and
/// the console when there is a timeline for it (it is on). The console
/// is served only here: whoever reaches it passed the port's TLS and
/// client-certificate checks, as a gRPC client would.
pub fn router(state: Http, timeline: Option<Arc<Timeline>>) -> Router {
    let node = state.node.clone();
    let routes = probes(state);
    match timeline {
        Some(timeline) => routes.merge(console::router(Console { node, timeline })),
        None => routes,
    }
}

/// The routes of `--listen-metrics-urls`: the probes plus etcd 3.5.11+'s
/// (kubeadm's manifests use them), which the client port has from the
/// etcd gateway. Plain HTTP, often reachable without the client port's
/// certificates: metrics and health only, as etcd's.
pub fn metrics_router(state: Http) -> Router {
    Router::new()
        .route("/livez", get(livez))
        .route("/readyz", get(health_text))
        .with_state(state.clone())
        .merge(probes(state))
}

/// etcd 3.5's `/health` (alarms, then the leader; see `janus_etcd::health`).
async fn health(State(s): State<Http>, RawQuery(query): RawQuery) -> impl IntoResponse {
    janus_etcd::health(&s.node, query.as_deref())
}

/// The process serves: alive.
async fn livez() -> &'static str {
    "ok"
}

/// `/readyz`: as `/health`, in etcd's plain-text form.
async fn health_text(State(s): State<Http>) -> impl IntoResponse {
    if s.node.metrics().current_leader.is_some() {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready: no leader")
    }
}

async fn version() -> impl IntoResponse {
    Json(json!({
        "etcdserver": ETCD_VERSION,
        "etcdcluster": ETCD_CLUSTER_VERSION,
        "janus": env!("CARGO_PKG_VERSION"),
    }))
}

async fn metrics(State(s): State<Http>) -> impl IntoResponse {
    let mut body = s.metrics.render(&s.node);
    // prometheus-client ends its text with `# EOF`; the ZooKeeper
    // personality's metrics go before it.
    let mut zk = janus_zk::metrics_text();
    zk.push_str(&janus_etcd::metrics::text(&s.node));
    if !zk.is_empty() {
        match body.rfind("# EOF") {
            Some(i) => body.insert_str(i, &zk),
            None => body.push_str(&zk),
        }
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
}
