//! Configuration: built-in defaults, then a TOML file (`--config`), then
//! `JANUS_*` environment variables, then command-line flags; later wins.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Parser;
use figment::providers::{Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

/// Janus: one server that is both ZooKeeper and etcd.
#[derive(Debug, Parser, Serialize)]
#[command(name = "janus", version)]
pub struct Cli {
    /// A TOML configuration file.
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// This member's id (non-zero).
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_id: Option<u64>,
    /// Where the Raft log, the state machine and snapshots live.
    #[arg(long, value_name = "DIR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// ZooKeeper client port.
    #[arg(long, value_name = "ADDR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zk_listen: Option<String>,
    /// etcd client port (gRPC, JSON gateway, /health, /version, /metrics).
    #[arg(long, value_name = "ADDR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etcd_listen: Option<String>,
    /// Peer port (Raft and write forwarding).
    #[arg(long, value_name = "ADDR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_listen: Option<String>,
    /// Initial members as ID=HOST:PEERPORT,ID=HOST:PEERPORT,...
    #[arg(long, value_name = "ID=ADDR,...")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initial_cluster: Option<String>,
    /// Peer TLS certificate (PEM); with --peer-key-file turns peer TLS on.
    #[arg(long, value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_cert_file: Option<PathBuf>,
    /// Peer TLS private key (PEM).
    #[arg(long, value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_key_file: Option<PathBuf>,
    /// CA bundle peers' certificates are checked against (both directions).
    #[arg(long, value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_trusted_ca_file: Option<PathBuf>,
    /// Refuse peers without a certificate the peer CA signed.
    #[arg(long)]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub peer_client_cert_auth: bool,
    /// `new` (form a cluster of initial_cluster) or `existing` (join one:
    /// wait to be added by etcd MemberAdd or ZooKeeper reconfig).
    #[arg(long, value_name = "new|existing")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initial_cluster_state: Option<String>,
    /// Serve the web console on the etcd client port (default true).
    #[arg(long, value_name = "BOOL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub console: Option<bool>,
    /// etcd's own flags for the `[etcd]` section.
    #[command(flatten)]
    #[serde(skip_serializing_if = "EtcdFlags::is_empty")]
    pub etcd: EtcdFlags,
    /// Start from another tool's configuration instead (README, "Moving
    /// to Janus").
    #[command(subcommand)]
    #[serde(skip)]
    pub mode: Option<Mode>,
}

/// Configurations of the originals, read as they are.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Mode {
    /// etcd's command line: `janus etcd --name ... --initial-cluster ...`
    /// (also `ETCD_*` variables; the binary run as `etcd` means this).
    #[command(disable_help_flag = true)]
    Etcd {
        /// etcd's flags, as etcd takes them.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
        args: Vec<String>,
    },
    /// ZooKeeper's zoo.cfg (and the myid file in its dataDir).
    Zookeeper {
        /// The zoo.cfg file.
        #[arg(value_name = "ZOO.CFG")]
        zoo_cfg: PathBuf,
    },
    /// Copy a running ZooKeeper and/or etcd into Janus, follow it until
    /// SIGINT/SIGTERM (the cut-over), then verify both sides.
    Migrate(janus_migrate::Args),
    /// Back up a running cluster, inspect a backup, or make a new
    /// cluster's data dir from one (docs/operations.md).
    #[command(subcommand)]
    Snapshot(crate::snapshot::SnapshotCmd),
}

/// etcd's flags of the same names, layered onto `[etcd]`.
#[derive(Debug, Default, clap::Args, Serialize)]
pub struct EtcdFlags {
    /// etcd client port TLS certificate (PEM); with --key-file turns TLS on.
    #[arg(long, value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    /// etcd client port TLS private key (PEM).
    #[arg(long, value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// CA bundle etcd clients' certificates are checked against.
    #[arg(long, value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trusted_ca_file: Option<PathBuf>,
    /// Refuse etcd clients without a certificate the trusted CA signed.
    #[arg(long)]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub client_cert_auth: bool,
    /// etcd backend quota in bytes (0: 2 GiB).
    #[arg(long, value_name = "BYTES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quota_backend_bytes: Option<u64>,
}

impl EtcdFlags {
    fn is_empty(&self) -> bool {
        self.cert_file.is_none()
            && self.key_file.is_none()
            && self.trusted_ca_file.is_none()
            && !self.client_cert_auth
            && self.quota_backend_bytes.is_none()
    }
}

/// The effective configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub node_id: u64,
    pub data_dir: PathBuf,
    pub zk_listen: String,
    pub etcd_listen: String,
    pub peer_listen: String,
    /// The peer address other members use for this one (default: peer_listen).
    pub advertise_peer: Option<String>,
    /// ID=ADDR,... ; empty: a one-member cluster of this node.
    pub initial_cluster: String,
    /// Peer TLS (etcd's `--peer-cert-file`, ...): certificate and key
    /// (PEM) of this member, used as server and as client; both turn TLS
    /// on for the peer port and for connections to other members.
    pub peer_cert_file: Option<PathBuf>,
    pub peer_key_file: Option<PathBuf>,
    /// CA bundle members' certificates are checked against (required with
    /// peer TLS).
    pub peer_trusted_ca_file: Option<PathBuf>,
    /// Refuse peer connections without a certificate the peer CA signed.
    pub peer_client_cert_auth: bool,
    /// etcd's `--peer-crl-file`: peer certificates it revokes are refused.
    pub peer_crl_file: Option<PathBuf>,
    /// Passwords of a JKS or PKCS#12 peer key store and trust store
    /// (ZooKeeper's `ssl.quorum.keyStore.password`, ...).
    pub peer_key_store_password: Option<janus_tls::Password>,
    pub peer_trust_store_password: Option<janus_tls::Password>,
    /// etcd's `--auto-tls`: with no `etcd.cert_file`, serve the etcd client
    /// port's TLS with a self-signed certificate made in
    /// `<data_dir>/fixtures/client` for the listen addresses' hosts.
    pub auto_tls: bool,
    /// etcd's `--peer-auto-tls`: with no `peer_cert_file`, peer TLS with a
    /// self-signed certificate in `<data_dir>/fixtures/peer`; members then
    /// do not verify each other's certificates (as etcd).
    pub peer_auto_tls: bool,
    /// `new` or `existing` (etcd's `--initial-cluster-state`).
    pub initial_cluster_state: String,
    /// Raft heartbeat interval.
    pub heartbeat_ms: u64,
    /// Raft election timeout (randomized between this and twice this).
    pub election_timeout_ms: u64,
    /// Snapshot the state machine (and purge the log) every this many entries.
    pub snapshot_entries: u64,
    /// Log entries kept behind the latest snapshot for lagging members.
    pub log_keep_entries: u64,
    /// How often the leader deletes empty containers and expired TTL nodes
    /// (ZooKeeper's `znode.container.checkIntervalMs`).
    pub container_check_ms: u64,
    /// At most this many container/TTL deletions a minute.
    pub container_max_per_minute: usize,
    /// Log filter (tracing `EnvFilter` syntax); `RUST_LOG` overrides it.
    pub log: String,
    /// Extra plain-HTTP listeners for `/metrics`, `/health`, `/livez`,
    /// `/readyz` and `/version` (etcd's `--listen-metrics-urls`),
    /// comma-separated `host:port`; empty: none.
    pub metrics_listen: String,
    /// Serve the web console (`/console`) on the etcd client listeners.
    pub console: bool,
    /// Remarks from translating another tool's configuration (ignored
    /// flags and keys), logged at start.
    #[serde(skip)]
    pub warnings: Vec<String>,
    /// ZooKeeper personality settings (`[zookeeper]`; env `JANUS_ZOOKEEPER__KEY`).
    pub zookeeper: janus_zk::Config,
    /// etcd personality settings (`[etcd]`; env `JANUS_ETCD__KEY`).
    pub etcd: janus_etcd::Config,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            node_id: 1,
            data_dir: PathBuf::from("janus-data"),
            zk_listen: "127.0.0.1:2181".into(),
            etcd_listen: "127.0.0.1:2379".into(),
            peer_listen: "127.0.0.1:2380".into(),
            advertise_peer: None,
            initial_cluster: String::new(),
            peer_cert_file: None,
            peer_key_file: None,
            peer_trusted_ca_file: None,
            peer_client_cert_auth: false,
            peer_crl_file: None,
            peer_key_store_password: None,
            peer_trust_store_password: None,
            auto_tls: false,
            peer_auto_tls: false,
            initial_cluster_state: "new".into(),
            heartbeat_ms: 100,
            election_timeout_ms: 1000,
            snapshot_entries: 10_000,
            log_keep_entries: 1000,
            container_check_ms: 60_000,
            container_max_per_minute: 10_000,
            log: "info,openraft=warn".into(),
            metrics_listen: String::new(),
            console: true,
            warnings: Vec::new(),
            zookeeper: janus_zk::Config::default(),
            etcd: janus_etcd::Config::default(),
        }
    }
}

impl Config {
    /// Layer the sources in order; `env` is the environment to read
    /// (`std::env::vars()` in the binary).
    pub fn load(
        cli: &Cli,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> anyhow::Result<Config> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = &cli.config {
            if !path.exists() {
                bail!("config file {} does not exist", path.display());
            }
            fig = fig.merge(Toml::file(path));
        }
        let vars_all: Vec<(String, String)> = env.into_iter().collect();
        let vars: Vec<(String, String)> = vars_all
            .iter()
            .filter(|(k, _)| k.starts_with("JANUS_"))
            .cloned()
            .collect();
        // figment's `Env` provider reads the process environment; taking the
        // variables as an argument keeps tests free of global state.
        let mut env_fig = Figment::new();
        let known: Vec<String> = match serde_json::to_value(Config::default()) {
            Ok(serde_json::Value::Object(m)) => m.keys().cloned().collect(),
            _ => Vec::new(),
        };
        for (k, v) in &vars {
            // JANUS_ZOOKEEPER__TICK_MS → zookeeper.tick_ms
            let key = k
                .trim_start_matches("JANUS_")
                .to_ascii_lowercase()
                .replace("__", ".");
            let top = key.split('.').next().unwrap_or_default();
            // Other tools' JANUS_* variables (e.g. a test's JANUS_BIN) are
            // not ours: warn, as etcd does for unknown ETCD_* variables.
            if !known.iter().any(|f| f == top) {
                eprintln!("warning: ignoring unknown environment variable {k}");
                continue;
            }
            env_fig = env_fig.merge(Serialized::default(&key, parse_env_value(v)));
        }
        fig = fig.merge(env_fig);
        // etcd's flags or zoo.cfg sit above the TOML file and JANUS_*
        // (which can still set what they have no word for, such as the
        // other personality's port) and below Janus's own flags.
        let mut warnings = Vec::new();
        match &cli.mode {
            None => {}
            Some(Mode::Etcd { args }) => {
                let t = crate::etcd_flags::translate(args, &vars_all)?;
                warnings = t.warnings;
                fig = fig.merge(Serialized::defaults(serde_json::Value::Object(t.layer)));
            }
            Some(Mode::Zookeeper { zoo_cfg }) => {
                let t = crate::zoo_cfg::translate(zoo_cfg, &vars_all)?;
                warnings = t.warnings;
                fig = fig.merge(Serialized::defaults(serde_json::Value::Object(t.layer)));
            }
            // Client tools: main runs them before any configuration.
            Some(Mode::Migrate(_) | Mode::Snapshot(_)) => {}
        }
        fig = fig.merge(Serialized::defaults(cli));
        let mut cfg: Config = fig.extract().context("invalid configuration")?;
        cfg.validate()?;
        cfg.warnings = warnings;
        Ok(cfg)
    }

    fn validate(&self) -> anyhow::Result<()> {
        if self.node_id == 0 {
            bail!("node_id must be non-zero");
        }
        if self.heartbeat_ms == 0 || self.election_timeout_ms <= self.heartbeat_ms {
            bail!("election_timeout_ms must be greater than heartbeat_ms (> 0)");
        }
        match (&self.peer_cert_file, &self.peer_key_file) {
            (Some(_), Some(_)) if self.peer_trusted_ca_file.is_none() => {
                bail!("peer TLS needs peer_trusted_ca_file")
            }
            (Some(_), Some(_)) => {}
            // Auto TLS peers have no CA to check each other against.
            (None, None) if self.peer_auto_tls && self.peer_client_cert_auth => {
                bail!("peer_client_cert_auth needs peer_trusted_ca_file (with peer_auto_tls no CA signs the peers' certificates)")
            }
            (None, None) if self.peer_client_cert_auth => {
                bail!("peer_client_cert_auth needs peer_cert_file and peer_key_file")
            }
            (None, None) => {}
            _ => bail!("peer_cert_file and peer_key_file go together"),
        }
        if !matches!(self.initial_cluster_state.as_str(), "new" | "existing") {
            bail!(
                "initial_cluster_state must be \"new\" or \"existing\", not {:?}",
                self.initial_cluster_state
            );
        }
        let members = self.members()?;
        // A joining member's initial_cluster only names peers to ask.
        if !self.join_existing() && !members.contains_key(&self.node_id) {
            bail!(
                "initial_cluster does not contain this node's id {}",
                self.node_id
            );
        }
        Ok(())
    }

    /// etcd's `--auto-tls` / `--peer-auto-tls`: make (or reuse) the
    /// self-signed certificates where no certificate files are given and
    /// point the TLS settings at them.
    pub fn auto_tls(&mut self) -> anyhow::Result<()> {
        if self.auto_tls && self.etcd.cert_file.is_none() && self.etcd.key_file.is_none() {
            let hosts: Vec<String> = self
                .etcd_listen
                .split(',')
                .map(|e| {
                    let e = e.trim();
                    let e = e
                        .strip_prefix("https://")
                        .or_else(|| e.strip_prefix("http://"))
                        .unwrap_or(e);
                    e.trim_end_matches('/').to_string()
                })
                .filter(|e| !e.is_empty())
                .collect();
            let dir = self.data_dir.join("fixtures").join("client");
            let (cert, key) =
                janus_tls::selfcert::self_cert(&dir, &hosts).context("client auto TLS")?;
            tracing::info!(cert = %cert.display(), "client auto TLS: self-signed certificate");
            self.etcd.cert_file = Some(cert);
            self.etcd.key_file = Some(key);
        }
        if self.peer_auto_tls && self.peer_cert_file.is_none() && self.peer_key_file.is_none() {
            let dir = self.data_dir.join("fixtures").join("peer");
            let (cert, key) =
                janus_tls::selfcert::self_cert(&dir, std::slice::from_ref(&self.peer_listen))
                    .context("peer auto TLS")?;
            tracing::info!(cert = %cert.display(), "peer auto TLS: self-signed certificate");
            self.peer_cert_file = Some(cert);
            self.peer_key_file = Some(key);
        }
        Ok(())
    }

    /// The peer TLS configurations; `None` when peer TLS is off. With a
    /// CA, both directions check the other member's certificate (always
    /// mutual, as etcd with a trusted CA and ZooKeeper's quorum TLS); with
    /// auto TLS and no CA, neither does (etcd's `--peer-auto-tls`).
    pub fn peer_tls(&self) -> anyhow::Result<Option<janus_raft::PeerTls>> {
        use janus_tls::rustls;
        let (Some(cert), Some(key)) = (&self.peer_cert_file, &self.peer_key_file) else {
            return Ok(None);
        };
        let pw = |p: &Option<janus_tls::Password>| p.as_ref().map(|p| p.0.clone());
        let id = janus_tls::load_identity(cert, key, pw(&self.peer_key_store_password).as_deref())
            .context("peer TLS")?;
        let crls = match &self.peer_crl_file {
            Some(p) => janus_tls::load_crls(p).context("peer TLS")?,
            None => Vec::new(),
        };
        let server = rustls::ServerConfig::builder_with_provider(janus_tls::provider())
            .with_safe_default_protocol_versions()?;
        let client = rustls::ClientConfig::builder_with_provider(janus_tls::provider())
            .with_safe_default_protocol_versions()?
            .dangerous();
        let (server, client) = match &self.peer_trusted_ca_file {
            Some(ca) => {
                let roots =
                    janus_tls::load_trust(ca, pw(&self.peer_trust_store_password).as_deref())
                        .context("peer TLS")?;
                (
                    server.with_client_cert_verifier(janus_tls::verify::client_verifier(
                        roots.clone(),
                        crls.clone(),
                        false,
                    )?),
                    client.with_custom_certificate_verifier(janus_tls::verify::server_verifier(
                        roots, crls,
                    )?),
                )
            }
            None if self.peer_auto_tls => (
                server.with_no_client_auth(),
                client
                    .with_custom_certificate_verifier(janus_tls::verify::no_server_verification()),
            ),
            None => bail!("peer TLS needs peer_trusted_ca_file"),
        };
        let mut server = server
            .with_single_cert(id.chain.clone(), id.key.clone_key())
            .context("peer TLS certificate")?;
        let mut client = client
            .with_client_auth_cert(id.chain, id.key)
            .context("peer TLS certificate")?;
        server.alpn_protocols = vec![b"h2".to_vec()];
        client.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Some(janus_raft::PeerTls {
            server: std::sync::Arc::new(server),
            client: std::sync::Arc::new(client),
        }))
    }

    /// Whether this member joins an existing cluster.
    pub fn join_existing(&self) -> bool {
        self.initial_cluster_state == "existing"
    }

    pub fn advertise_peer(&self) -> String {
        self.advertise_peer
            .clone()
            .unwrap_or_else(|| self.peer_listen.clone())
    }

    /// The initial members, id → peer address.
    pub fn members(&self) -> anyhow::Result<BTreeMap<u64, String>> {
        if self.initial_cluster.trim().is_empty() {
            return Ok(BTreeMap::from([(self.node_id, self.advertise_peer())]));
        }
        let mut out = BTreeMap::new();
        for part in self
            .initial_cluster
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            let Some((id, addr)) = part.split_once('=') else {
                bail!("initial_cluster entry {part:?} is not ID=ADDR");
            };
            let id: u64 = id
                .trim()
                .parse()
                .with_context(|| format!("initial_cluster id {id:?}"))?;
            if id == 0 || out.insert(id, addr.trim().to_string()).is_some() {
                bail!("initial_cluster id {id} is zero or repeated");
            }
        }
        Ok(out)
    }
}

/// Environment values are strings; numbers should stay numbers.
fn parse_env_value(v: &str) -> figment::value::Value {
    if let Ok(n) = v.parse::<u64>() {
        return figment::value::Value::from(n);
    }
    if let Ok(b) = v.parse::<bool>() {
        return figment::value::Value::from(b);
    }
    figment::value::Value::from(v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Cli {
        Cli::parse_from(std::iter::once("janus").chain(args.iter().copied()))
    }

    #[test]
    fn defaults_match_design() {
        let c = Config::load(&cli(&[]), Vec::new()).unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(
            c.members().unwrap(),
            BTreeMap::from([(1, "127.0.0.1:2380".to_string())])
        );
    }

    #[test]
    fn layers_later_wins() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("janus.toml");
        std::fs::write(
            &file,
            "node_id = 2\nzk_listen = \"0.0.0.0:3181\"\ndata_dir = \"/tmp/a\"\nheartbeat_ms = 50\n[zookeeper]\ntick_ms = 500\n",
        )
        .unwrap();
        let f = file.to_str().unwrap();
        let env = vec![
            ("JANUS_DATA_DIR".to_string(), "/tmp/b".to_string()),
            ("JANUS_NODE_ID".to_string(), "3".to_string()),
            ("OTHER".to_string(), "x".to_string()),
            ("JANUS_ETCD__MAX_TXN_OPS".to_string(), "7".to_string()),
            ("JANUS_BIN".to_string(), "not ours".to_string()),
        ];
        let c = Config::load(&cli(&["--config", f, "--node-id", "4"]), env).unwrap();
        assert_eq!(c.node_id, 4, "flag beats env");
        assert_eq!(c.data_dir, PathBuf::from("/tmp/b"), "env beats file");
        assert_eq!(c.zk_listen, "0.0.0.0:3181", "file beats default");
        assert_eq!(c.heartbeat_ms, 50);
        assert_eq!(c.zookeeper.tick_ms, 500, "nested section from the file");
        assert_eq!(c.etcd.max_txn_ops, 7, "nested key from the environment");
        assert_eq!(c.etcd_listen, "127.0.0.1:2379");
    }

    #[test]
    fn etcd_and_peer_tls_flags() {
        let c = Config::load(
            &cli(&[
                "--cert-file",
                "/c.pem",
                "--key-file",
                "/k.pem",
                "--trusted-ca-file",
                "/ca.pem",
                "--client-cert-auth",
                "--quota-backend-bytes",
                "4096",
                "--peer-cert-file",
                "/pc.pem",
                "--peer-key-file",
                "/pk.pem",
                "--peer-trusted-ca-file",
                "/pca.pem",
                "--peer-client-cert-auth",
            ]),
            vec![("JANUS_ETCD__MAX_TXN_OPS".to_string(), "7".to_string())],
        )
        .unwrap();
        assert_eq!(c.etcd.cert_file, Some(PathBuf::from("/c.pem")));
        assert_eq!(c.etcd.trusted_ca_file, Some(PathBuf::from("/ca.pem")));
        assert!(c.etcd.client_cert_auth);
        assert_eq!(c.etcd.quota_backend_bytes, 4096);
        assert_eq!(c.etcd.max_txn_ops, 7, "flags merge into [etcd]");
        assert_eq!(c.peer_key_file, Some(PathBuf::from("/pk.pem")));
        assert!(c.peer_client_cert_auth);
        let c = Config::load(&cli(&[]), Vec::new()).unwrap();
        assert!(!c.etcd.client_cert_auth && c.etcd.cert_file.is_none());
        assert!(
            Config::load(&cli(&["--peer-cert-file", "/pc.pem"]), Vec::new()).is_err(),
            "a certificate without its key"
        );
    }

    #[test]
    fn initial_cluster_parsed_and_checked() {
        let c = Config::load(
            &cli(&["--initial-cluster", "1=a:1,2=b:2", "--node-id", "2"]),
            Vec::new(),
        )
        .unwrap();
        assert_eq!(c.members().unwrap().len(), 2);
        assert!(Config::load(
            &cli(&["--initial-cluster", "1=a:1"]),
            vec![("JANUS_NODE_ID".into(), "5".into())]
        )
        .is_err());
        assert!(Config::load(&cli(&["--initial-cluster", "x"]), Vec::new()).is_err());
        assert!(Config::load(&cli(&["--node-id", "0"]), Vec::new()).is_err());
    }

    #[test]
    fn unknown_keys_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("janus.toml");
        std::fs::write(&file, "nodeid = 2\n").unwrap();
        assert!(Config::load(&cli(&["--config", file.to_str().unwrap()]), Vec::new()).is_err());
    }
}
