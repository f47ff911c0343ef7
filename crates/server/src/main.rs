//! `janus`: one binary that is both a ZooKeeper and an etcd server.

mod config;
mod console;
mod etcd_flags;
mod etcd_log;
mod http;
mod metrics;
mod resolve;
mod snapshot;
mod zoo_cfg;

use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use janus_raft::{Member, NodeConfig, PeerService, RaftNode};
use tokio::sync::watch;
use tracing_subscriber::EnvFilter;

use crate::config::{Cli, Config};

// Many small, short-lived allocations per request (frames, rows, events)
// from several threads: mimalloc spends far less time in them than glibc's
// allocator does.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A start-up or run error is one line on stderr and exit status 1, the way
/// etcd and ZooKeeper report a bad flag or a port in use: no backtrace even
/// when `RUST_BACKTRACE` is set.
#[tokio::main]
async fn main() -> std::process::ExitCode {
    match start().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("Error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn start() -> anyhow::Result<()> {
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // Run as `etcd` (a symlink, or the name a manifest calls), Janus takes
    // etcd's command line: the same as `janus etcd ...`.
    let as_etcd = args
        .first()
        .and_then(|a| std::path::Path::new(a).file_name())
        .is_some_and(|n| n == "etcd");
    if as_etcd {
        args.insert(1, "etcd".into());
    }
    let cli = Cli::parse_from(args);
    if let Some(config::Mode::Etcd { args }) = &cli.mode {
        if etcd_flags::wants_version(args) {
            print!("{}", etcd_flags::version_text());
            return Ok(());
        }
    }
    if let Some(config::Mode::Migrate(args)) = cli.mode {
        return migrate(args).await;
    }
    if let Some(config::Mode::Snapshot(cmd)) = cli.mode {
        let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
        return snapshot::run(cmd).await;
    }
    let etcd_mode = matches!(cli.mode, Some(config::Mode::Etcd { .. }));
    let cfg = Config::load(&cli, std::env::vars())?;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&cfg.log));
    tracing_subscriber::fmt().with_env_filter(filter).init();
    for w in &cfg.warnings {
        tracing::warn!("{w}");
    }
    run(cfg, etcd_mode).await
}

/// `janus migrate`: the report goes to stdout; exit status 1 when the two
/// sides differ.
async fn migrate(args: janus_migrate::Args) -> anyhow::Result<()> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let report = janus_migrate::run(args).await?;
    print!("{report}");
    if !report.identical() {
        std::process::exit(1);
    }
    Ok(())
}

/// The addresses to bind: every listen setting with its host names
/// resolved (advertised addresses keep the names).
struct Binds {
    peer: std::net::SocketAddr,
    etcd: String,
    zk: String,
    zk_secure: Option<String>,
    zk_admin: Option<String>,
    metrics: Vec<std::net::SocketAddr>,
}

impl Binds {
    fn resolve(cfg: &Config) -> anyhow::Result<Binds> {
        let one =
            |a: &str, what: &str| resolve::bind_addr(a).with_context(|| format!("{what} {a:?}"));
        let opt = |a: &Option<String>, what: &str| -> anyhow::Result<Option<String>> {
            a.as_deref()
                .map(|a| one(a, what).map(|s| s.to_string()))
                .transpose()
        };
        Ok(Binds {
            peer: one(&cfg.peer_listen, "peer_listen")?,
            etcd: resolve::bind_list(&cfg.etcd_listen)
                .with_context(|| format!("etcd_listen {:?}", cfg.etcd_listen))?,
            zk: one(&cfg.zk_listen, "zk_listen")?.to_string(),
            zk_secure: opt(&cfg.zookeeper.secure_listen, "zookeeper.secure_listen")?,
            zk_admin: opt(&cfg.zookeeper.admin_listen, "zookeeper.admin_listen")?,
            metrics: cfg
                .metrics_listen
                .split(',')
                .map(str::trim)
                .filter(|a| !a.is_empty())
                .map(|a| one(a, "metrics_listen"))
                .collect::<anyhow::Result<_>>()?,
        })
    }
}

async fn run(cfg: Config, etcd_mode: bool) -> anyhow::Result<()> {
    tracing::info!(?cfg, "starting janus {}", env!("CARGO_PKG_VERSION"));
    // Before anything starts: a name that does not resolve stops Janus
    // with nothing to undo.
    let binds = Binds::resolve(&cfg)?;
    let client_urls = client_urls(&cfg)?;
    let metrics = metrics::Metrics::default();
    let mut cfg = cfg;
    cfg.auto_tls()?;
    if let Some(tls) = cfg.peer_tls()? {
        janus_raft::set_peer_tls(tls).map_err(|_| anyhow::anyhow!("peer TLS configured twice"))?;
    }
    let node_cfg = NodeConfig {
        id: cfg.node_id,
        advertise_peer: cfg.advertise_peer(),
        data_dir: cfg.data_dir.clone(),
        initial_cluster: cfg.members()?,
        heartbeat_ms: cfg.heartbeat_ms,
        election_timeout_ms: cfg.election_timeout_ms,
        snapshot_logs: cfg.snapshot_entries,
        log_keep_entries: cfg.log_keep_entries,
        container_check_ms: cfg.container_check_ms,
        container_max_per_minute: cfg.container_max_per_minute,
        join_existing: cfg.join_existing(),
        me: Member {
            name: cfg.etcd.name.clone(),
            client_urls: client_urls.clone(),
            zk_client: cfg.zk_listen.clone(),
            ..Member::default()
        },
    };
    let node = RaftNode::start(node_cfg, Some(metrics.fsync_observer())).await?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };

    let peer_addr = binds.peer;
    // Bound here, so that a taken peer port stops Janus with a clear error
    // (serving in the background, the failure went unnoticed and the
    // member ran cut off from its peers).
    let listener = match tokio::net::TcpListener::bind(peer_addr).await {
        Ok(l) => l,
        Err(e) => {
            node.shutdown().await;
            anyhow::bail!("peer: binding {peer_addr}: {e}");
        }
    };
    let peer = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(PeerService::server(node.clone()));
    let peer = match janus_raft::peer_tls() {
        // Janus's own TLS listener: tonic's TLS settings take no custom
        // certificate verifier.
        Some(tls) => tokio::spawn(peer.serve_with_incoming_shutdown(
            janus_tls::net::incoming(listener, tls.server.clone()),
            stopped(stop_rx.clone()),
        )),
        None => tokio::spawn(peer.serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            stopped(stop_rx.clone()),
        )),
    };

    // The console's timeline follows the applied changes from here on.
    let timeline = cfg.console.then(|| console::Timeline::spawn(&node));
    let http_routes = http::router(
        http::Http {
            node: node.clone(),
            metrics: metrics.clone(),
        },
        timeline,
    );
    let (bound_tx, bound_rx) = tokio::sync::oneshot::channel();
    let mut etcd = tokio::spawn(janus_etcd::serve_notify(
        node.clone(),
        binds.etcd.clone(),
        cfg.etcd.clone(),
        http_routes,
        stopped(stop_rx.clone()),
        Some(bound_tx),
    ));
    if etcd_mode {
        tokio::spawn(etcd_log::announce(
            node.clone(),
            etcd_log::Publish {
                name: cfg.etcd.name.clone(),
                client_urls: client_urls.clone(),
                cluster_token: cfg.etcd.cluster_token.clone(),
            },
            bound_rx,
        ));
    }
    let mut metrics_servers = Vec::new();
    for addr in &binds.metrics {
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding metrics_listen {addr}"))?;
        let routes = http::metrics_router(http::Http {
            node: node.clone(),
            metrics: metrics.clone(),
        });
        let stop = stopped(stop_rx.clone());
        metrics_servers.push(tokio::spawn(async move {
            axum::serve(l, routes).with_graceful_shutdown(stop).await
        }));
    }
    let mut zk_cfg = cfg.zookeeper.clone();
    zk_cfg.data_dir = Some(cfg.data_dir.clone());
    zk_cfg.secure_listen = binds.zk_secure.clone();
    zk_cfg.admin_listen = binds.zk_admin.clone();
    let mut zk = tokio::spawn(janus_zk::serve(
        node.clone(),
        binds.zk.clone(),
        zk_cfg,
        stopped(stop_rx.clone()),
    ));
    tracing::info!(peer = %cfg.peer_listen, etcd = %cfg.etcd_listen, zk = %cfg.zk_listen, "listening");

    {
        let node = node.clone();
        tokio::spawn(async move {
            match node.wait_for_leader(Duration::from_secs(60)).await {
                Ok(leader) => tracing::info!(leader, "cluster ready"),
                Err(e) => tracing::warn!("no leader yet: {e}"),
            }
        });
    }

    // A personality that cannot serve (say, its port is taken) stops Janus.
    let failed = async {
        tokio::select! {
            r = &mut etcd => listener_end("etcd", r),
            r = &mut zk => listener_end("zookeeper", r),
        }
    };
    tokio::select! {
        _ = shutdown_signal() => tracing::info!("shutting down"),
        // etcd's behaviour: a removed member stops serving and exits.
        _ = node.removed() => tracing::warn!("removed from the cluster; shutting down"),
        why = failed => {
            let _ = stop_tx.send(true);
            node.shutdown().await;
            anyhow::bail!("{why}");
        }
    }
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        let _ = etcd.await;
        let _ = zk.await;
        let _ = peer.await;
    })
    .await;
    node.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

/// The etcd client URLs this member publishes: `--advertise-client-urls`,
/// or one per client listener.
fn client_urls(cfg: &Config) -> anyhow::Result<Vec<String>> {
    if !cfg.etcd.advertise_client_urls.is_empty() {
        return Ok(cfg.etcd.advertise_client_urls.clone());
    }
    let tls = cfg.etcd.cert_file.is_some() && cfg.etcd.key_file.is_some();
    Ok(janus_etcd::listen_addrs(&cfg.etcd_listen, tls)
        .context("etcd_listen")?
        .into_iter()
        .map(|(addr, secure)| format!("{}://{addr}", if secure { "https" } else { "http" }))
        .collect())
}

/// SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!("SIGINT handler: {e}");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!("SIGTERM handler: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// Why a personality's listener task ended, as one line.
fn listener_end<E: std::fmt::Display>(
    name: &str,
    r: Result<Result<(), E>, tokio::task::JoinError>,
) -> String {
    match r {
        Ok(Ok(())) => format!("the {name} listener stopped"),
        Ok(Err(e)) => format!("{name}: {e}"),
        Err(e) => format!("the {name} listener failed: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_names_resolved_advertised_names_kept() {
        let mut cfg = Config {
            peer_listen: "localhost:2380".into(),
            etcd_listen: "http://localhost:2379,localhost:2479".into(),
            zk_listen: "localhost:2181".into(),
            metrics_listen: "localhost:2381".into(),
            ..Config::default()
        };
        cfg.zookeeper.secure_listen = Some("localhost:2281".into());
        cfg.zookeeper.admin_listen = Some("localhost:8080".into());
        let b = Binds::resolve(&cfg).expect("localhost resolves");
        assert_eq!(b.peer.to_string(), "127.0.0.1:2380");
        assert_eq!(b.etcd, "http://127.0.0.1:2379,127.0.0.1:2479");
        assert_eq!(b.zk, "127.0.0.1:2181");
        assert_eq!(b.zk_secure.as_deref(), Some("127.0.0.1:2281"));
        assert_eq!(b.zk_admin.as_deref(), Some("127.0.0.1:8080"));
        assert_eq!(b.metrics[0].to_string(), "127.0.0.1:2381");
        assert_eq!(
            client_urls(&cfg).expect("urls"),
            vec!["http://localhost:2379", "http://localhost:2479"]
        );
        assert_eq!(cfg.advertise_peer(), "localhost:2380");
        cfg.peer_listen = "no-such-host.invalid:2380".into();
        let e = Binds::resolve(&cfg).err().expect("unresolvable");
        assert!(
            format!("{e:#}").starts_with("peer_listen \"no-such-host.invalid:2380\": resolving"),
            "{e:#}"
        );
    }
}
