//! Janus's ZooKeeper personality: ZooKeeper's client protocol on `zk_listen`.
//!
//! Each connection is one task: it reads frames (a reader task feeds them
//! through a channel), answers them strictly in order, and matches the
//! state machine's change events (`sm.subscribe()`) against its own watches.
//! Writes become `Command`s committed through Raft; reads come from the
//! member's applied state, as ZooKeeper serves them. See docs/zookeeper.md.

mod admin;
pub mod auth;
mod conn;
mod fourlw;
mod mntr_keys;
pub mod proto;
pub mod sasl;
pub mod tls;
pub mod watch;
pub mod x509;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use janus_raft::RaftNode;
use serde::{Deserialize, Serialize};
use sha1::{Digest, Sha1};
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// The `[zookeeper]` section of Janus's configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// ZooKeeper's `tickTime`: session timeouts are negotiated between 2 and
    /// 20 ticks unless the bounds below are set.
    pub tick_ms: u64,
    /// `minSessionTimeout` (default 2 ticks).
    pub min_session_timeout_ms: Option<u64>,
    /// `maxSessionTimeout` (default 20 ticks).
    pub max_session_timeout_ms: Option<u64>,
    /// `jute.maxbuffer`: a larger incoming frame closes the connection.
    pub max_buffer: usize,
    /// `zookeeper.extendedTypesEnabled`: TTL nodes (on by default in Janus).
    pub extended_types: bool,
    /// `4lw.commands.whitelist`: the four-letter words answered; `*` = all.
    pub four_letter_words: Vec<String>,
    /// `zookeeper.DigestAuthenticationProvider.superDigest`
    /// (`super:<base64 sha1>`): a connection authenticated as this digest
    /// passes every ACL.
    pub super_digest: Option<String>,
    /// Mixed into session passwords (any string; a random one if unset).
    pub session_secret: Option<String>,
    /// ZooKeeper's AdminServer (`/commands/<name>`, JSON) on this address;
    /// off when unset (ZooKeeper's default is 8080).
    pub admin_listen: Option<String>,
    /// ZooKeeper's `secureClientPort`: the same protocol over TLS on this
    /// address; off when unset.
    pub secure_listen: Option<String>,
    /// The server's certificate chain for `secure_listen`: PEM, or a JKS
    /// or PKCS#12 key store (`ssl.keyStore.location`) holding chain and key.
    pub tls_cert: Option<String>,
    /// The server's private key (PEM, PKCS#8, PKCS#1 or SEC1); unused when
    /// `tls_cert` is a JKS or PKCS#12 store.
    pub tls_key: Option<String>,
    /// `ssl.keyStore.password`: opens a JKS or PKCS#12 key store.
    pub tls_key_store_password: Option<janus_tls::Password>,
    /// CA certificates that client certificates must chain to: PEM, or a
    /// JKS or PKCS#12 trust store (`ssl.trustStore.location`).
    pub tls_client_ca: Option<String>,
    /// `ssl.trustStore.password`.
    pub tls_trust_store_password: Option<janus_tls::Password>,
    /// `ssl.clientAuth`: `none`, `want` or `need` (default `need` with
    /// `tls_client_ca`, `none` without).
    pub tls_client_auth: Option<tls::ClientAuth>,
    /// `zookeeper.X509AuthenticationProvider.superUser`: a client whose
    /// certificate subject (RFC 2253) is this passes every ACL.
    pub x509_super_user: Option<String>,
    /// SASL DIGEST-MD5 (`[zookeeper.sasl]`).
    pub sasl: SaslConfig,
    /// `reconfigEnabled`: the `reconfig` op changes the membership. Off by
    /// default, as in ZooKeeper 3.5+ (RECONFIGDISABLED); even on, it needs
    /// WRITE on `/zookeeper/config`, which only a super user has.
    pub reconfig_enabled: bool,
    /// Janus's data directory, which `conf` reports as `dataDir` and
    /// `dataLogDir` (set by the server, not read from the file).
    #[serde(skip)]
    pub data_dir: Option<std::path::PathBuf>,
}

/// `[zookeeper.sasl]`: the DIGEST-MD5 users (ZooKeeper's JAAS `Server`
/// section with `DigestLoginModule`, `user_<name>="<password>"`).
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SaslConfig {
    /// User name → password. Empty: SASL is refused (AUTHFAILED).
    pub users: BTreeMap<String, String>,
    /// `zookeeper.superUser`: this SASL user passes every ACL.
    pub super_user: Option<String>,
}

impl std::fmt::Debug for SaslConfig {
    // Passwords stay out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaslConfig")
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .field("super_user", &self.super_user)
            .finish()
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            tick_ms: 2000,
            min_session_timeout_ms: None,
            max_session_timeout_ms: None,
            max_buffer: 0xfffff,
            extended_types: true,
            four_letter_words: vec!["srvr".into(), "ruok".into()],
            super_digest: None,
            session_secret: None,
            admin_listen: None,
            secure_listen: None,
            tls_cert: None,
            tls_key: None,
            tls_key_store_password: None,
            tls_client_ca: None,
            tls_trust_store_password: None,
            tls_client_auth: None,
            x509_super_user: None,
            sasl: SaslConfig::default(),
            reconfig_enabled: false,
            data_dir: None,
        }
    }
}

impl Config {
    pub fn min_timeout_ms(&self) -> u64 {
        self.min_session_timeout_ms
            .unwrap_or(self.tick_ms.saturating_mul(2))
    }
    pub fn max_timeout_ms(&self) -> u64 {
        self.max_session_timeout_ms
            .unwrap_or(self.tick_ms.saturating_mul(20))
            .max(self.min_timeout_ms())
    }
    /// Clamp a client's requested session timeout.
    pub fn negotiate(&self, requested: i32) -> i32 {
        let r = requested.max(0) as u64;
        r.clamp(self.min_timeout_ms(), self.max_timeout_ms())
            .min(i32::MAX as u64) as i32
    }
    pub fn allows(&self, cmd: &str) -> bool {
        self.four_letter_words.iter().any(|w| w == "*" || w == cmd)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("binding {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("zookeeper secure port: {0}")]
    Tls(#[from] tls::TlsError),
}

/// What `cons`/`stat`/`wchs` report about one connection.
#[derive(Debug)]
pub(crate) struct ConnInfo {
    pub addr: SocketAddr,
    /// Came in on the secure (TLS) port.
    pub secure: bool,
    pub session: AtomicI64,
    pub received: AtomicU64,
    pub sent: AtomicU64,
    pub watches: AtomicUsize,
    pub watch_paths: Mutex<Vec<String>>,
}

/// Shared by every connection of this member.
pub(crate) struct Server {
    pub node: Arc<RaftNode>,
    pub cfg: Config,
    pub secret: Vec<u8>,
    /// Low 56 bits of the next session id (ZooKeeper's time-seeded counter).
    pub next_session: AtomicI64,
    /// Which connection each session is bound to; a re-established session
    /// tells the old connection to close.
    pub sessions: Mutex<HashMap<i64, (u64, Arc<Notify>)>>,
    pub conns: Mutex<HashMap<u64, Arc<ConnInfo>>>,
    pub next_conn: AtomicU64,
    /// Owner tokens of this member's connections start here: the member id
    /// and the start time, so no two connections in the cluster (across
    /// restarts too) share one.
    pub owner_base: u64,
    pub started: Instant,
    pub packets_received: AtomicU64,
    pub packets_sent: AtomicU64,
    pub outstanding: AtomicI64,
    pub auth_failed: AtomicU64,
    /// TLS handshakes on the secure port that failed or timed out.
    pub tls_failed: AtomicU64,
    pub latency: Mutex<Latency>,
    /// Requests by op code.
    pub ops: Mutex<std::collections::BTreeMap<i32, u64>>,
    /// Request latency histogram: counts per `LATENCY_BUCKETS_MS` bound,
    /// plus one for larger.
    pub latency_buckets: [AtomicU64; LATENCY_BUCKETS_MS.len() + 1],
    /// The client port's address (`conf`'s clientPort).
    pub listen: String,
    /// `approximateDataSize` takes a scan of the tree: computed at most
    /// every few seconds (when, value).
    pub data_size: Mutex<Option<(Instant, u64)>>,
}

/// Upper bounds (ms) of the request latency histogram.
pub(crate) const LATENCY_BUCKETS_MS: [u64; 10] = [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000];

/// The serving `Server` (for [`metrics_text`]).
static CURRENT: Mutex<Option<std::sync::Weak<Server>>> = Mutex::new(None);

/// Request latency in ms (srvr/mntr).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Latency {
    pub min: u64,
    pub max: u64,
    pub total: u64,
    pub count: u64,
}

impl Server {
    fn new(node: Arc<RaftNode>, cfg: Config, listen: String) -> Server {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let secret = match &cfg.session_secret {
            Some(s) => s.as_bytes().to_vec(),
            None => {
                Sha1::digest(format!("{now}-{}-{:p}", std::process::id(), &cfg).as_bytes()).to_vec()
            }
        };
        let ms = (now / 1_000_000) as u64;
        // ZooKeeper's initializeNextSessionId: time in the middle bits.
        let seed = ((ms << 24) >> 8) & 0x00FF_FFFF_FFFF_FFFF;
        let owner_base = (node.id << 48) | ((ms & 0xFFFF_FFFF) << 16);
        Server {
            node,
            cfg,
            secret,
            next_session: AtomicI64::new(seed as i64),
            sessions: Mutex::new(HashMap::new()),
            conns: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(1),
            owner_base,
            started: Instant::now(),
            packets_received: AtomicU64::new(0),
            packets_sent: AtomicU64::new(0),
            outstanding: AtomicI64::new(0),
            auth_failed: AtomicU64::new(0),
            tls_failed: AtomicU64::new(0),
            latency: Mutex::new(Latency::default()),
            ops: Mutex::new(Default::default()),
            latency_buckets: Default::default(),
            listen,
            data_size: Mutex::new(None),
        }
    }

    /// A fresh session id: `(member id mod 255) << 56 | counter`, so never 0,
    /// never with top byte 0xFF (TTL marker) and never `i64::MIN`.
    pub fn new_session_id(&self) -> i64 {
        loop {
            let low = self.next_session.fetch_add(1, Ordering::Relaxed) & 0x00FF_FFFF_FFFF_FFFF;
            let id = (((self.node.id % 255) as i64) << 56) | low;
            if id != 0 && id != i64::MIN && (id as u64) >> 56 != 0xFF {
                return id;
            }
        }
    }

    /// 16 bytes from the id and this member's secret plus a nonce; the
    /// session lease stores it, so every member checks it against the
    /// replicated state.
    pub fn password_for(&self, id: i64) -> Vec<u8> {
        let nonce = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let mut h = Sha1::new();
        h.update(&self.secret);
        h.update(id.to_be_bytes());
        h.update(nonce.to_be_bytes());
        h.finalize()[..16].to_vec()
    }

    pub fn record_latency(&self, ms: u64) {
        let mut l = self.latency.lock().unwrap_or_else(|p| p.into_inner());
        if l.count == 0 || ms < l.min {
            l.min = ms;
        }
        l.max = l.max.max(ms);
        l.total += ms;
        l.count += 1;
        let i = LATENCY_BUCKETS_MS
            .iter()
            .position(|b| ms <= *b)
            .unwrap_or(LATENCY_BUCKETS_MS.len());
        if let Some(b) = self.latency_buckets.get(i) {
            b.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn count_op(&self, opcode: i32) {
        *self
            .ops
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(opcode)
            .or_insert(0) += 1;
    }
}

/// Serve ZooKeeper clients on `listen` (and, if configured, TLS clients on
/// `secure_listen`) until `shutdown` resolves.
pub async fn serve(
    node: Arc<RaftNode>,
    listen: String,
    cfg: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let listener = TcpListener::bind(&listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: listen.clone(),
            source,
        })?;
    // Certificates are read before anything is served, so a bad path or
    // key stops the start with a clear error.
    let secure = match cfg.secure_listen.clone() {
        Some(addr) => {
            let acceptor = tls::acceptor(&cfg)?;
            let l = TcpListener::bind(&addr)
                .await
                .map_err(|source| ServeError::Bind {
                    addr: addr.clone(),
                    source,
                })?;
            Some((addr, l, acceptor))
        }
        None => None,
    };
    let srv = Arc::new(Server::new(node, cfg, listen.clone()));
    *CURRENT.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::downgrade(&srv));
    tracing::info!(addr = %listen, "zookeeper: listening");
    let admin = match srv.cfg.admin_listen.clone() {
        Some(addr) => {
            let l = TcpListener::bind(&addr)
                .await
                .map_err(|source| ServeError::Bind {
                    addr: addr.clone(),
                    source,
                })?;
            tracing::info!(%addr, "zookeeper: AdminServer listening");
            Some(tokio::spawn(admin::serve(srv.clone(), l)))
        }
        None => None,
    };
    let secure = secure.map(|(addr, l, acceptor)| {
        tracing::info!(%addr, client_auth = ?tls::client_auth(&srv.cfg), "zookeeper: secure client port listening");
        tokio::spawn(serve_secure(srv.clone(), l, acceptor))
    });
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok((stream, addr)) => {
                    let _ = stream.set_nodelay(true);
                    let srv = srv.clone();
                    tokio::spawn(async move {
                        let (rd, wr) = stream.into_split();
                        conn::run(srv, Box::new(rd), Box::new(wr), addr, None).await
                    });
                }
                Err(e) => {
                    // Out of descriptors and the like: back off, keep serving.
                    tracing::warn!("zookeeper: accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
        }
    }
    if let Some(a) = admin {
        a.abort();
    }
    if let Some(s) = secure {
        s.abort();
    }
    Ok(())
}

/// How long a client may take over its TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The secure client port: a TLS handshake, then the same protocol. A
/// client certificate (verified by rustls against `tls_client_ca`) gives
/// the connection the `x509` id of its subject, as ZooKeeper's
/// X509AuthenticationProvider does.
async fn serve_secure(
    srv: Arc<Server>,
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
) {
    loop {
        let (stream, addr) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!("zookeeper: secure accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let srv = srv.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let tls =
                match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(t)) => t,
                    Ok(Err(e)) => {
                        srv.tls_failed.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(%addr, "zookeeper: TLS handshake failed: {e}");
                        return;
                    }
                    Err(_) => {
                        srv.tls_failed.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(%addr, "zookeeper: TLS handshake timed out");
                        return;
                    }
                };
            let mut ids = Vec::new();
            if let Some(cert) = tls.get_ref().1.peer_certificates().and_then(|c| c.first()) {
                let Some(subject) = x509::subject_rfc2253(cert) else {
                    // ZooKeeper closes a connection whose certificate it
                    // cannot authenticate.
                    srv.auth_failed.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%addr, "zookeeper: unreadable client certificate subject; closing");
                    return;
                };
                tracing::info!(%addr, id = %subject, "zookeeper: authenticated x509 id");
                if srv.cfg.x509_super_user.as_deref() == Some(subject.as_str()) {
                    ids.push(janus_core::Id {
                        scheme: "super".into(),
                        id: subject.clone(),
                    });
                }
                ids.push(janus_core::Id {
                    scheme: "x509".into(),
                    id: subject,
                });
            }
            let (rd, wr) = tokio::io::split(tls);
            conn::run(srv, Box::new(rd), Box::new(wr), addr, Some(ids)).await
        });
    }
}

fn op_name(code: i32) -> String {
    use proto::op;
    let name = match code {
        op::CREATE => "create",
        op::DELETE => "delete",
        op::EXISTS => "exists",
        op::GET_DATA => "getData",
        op::SET_DATA => "setData",
        op::GET_ACL => "getACL",
        op::SET_ACL => "setACL",
        op::GET_CHILDREN => "getChildren",
        op::SYNC => "sync",
        op::PING => "ping",
        op::GET_CHILDREN2 => "getChildren2",
        op::CHECK => "check",
        op::MULTI => "multi",
        op::CREATE2 => "create2",
        op::RECONFIG => "reconfig",
        op::CHECK_WATCHES => "checkWatches",
        op::REMOVE_WATCHES => "removeWatches",
        op::CREATE_CONTAINER => "createContainer",
        op::CREATE_TTL => "createTTL",
        op::MULTI_READ => "multiRead",
        op::AUTH => "auth",
        op::SET_WATCHES => "setWatches",
        op::SASL => "sasl",
        op::GET_EPHEMERALS => "getEphemerals",
        op::GET_ALL_CHILDREN_NUMBER => "getAllChildrenNumber",
        op::SET_WATCHES2 => "setWatches2",
        op::ADD_WATCH => "addWatch",
        op::WHO_AM_I => "whoAmI",
        op::CLOSE_SESSION => "closeSession",
        _ => return "unknown".to_string(),
    };
    name.to_string()
}

/// The single-value metrics of [`metrics_text`], (name, help, type), in
/// the order it writes them (and of its `values`).
const GAUGES: [(&str, &str, &str); 9] = [
    (
        "janus_zk_connections",
        "Open ZooKeeper client connections.",
        "gauge",
    ),
    (
        "janus_zk_outstanding_requests",
        "Requests being processed.",
        "gauge",
    ),
    ("janus_zk_watches", "Registered watches.", "gauge"),
    (
        "janus_zk_sessions",
        "ZooKeeper sessions in the replicated state.",
        "gauge",
    ),
    (
        "janus_zk_packets_received_total",
        "Packets received.",
        "counter",
    ),
    ("janus_zk_packets_sent_total", "Packets sent.", "counter"),
    (
        "janus_zk_secure_connections",
        "Open connections on the secure (TLS) client port.",
        "gauge",
    ),
    (
        "janus_zk_tls_handshake_failures_total",
        "TLS handshakes on the secure client port that failed or timed out.",
        "counter",
    ),
    (
        "janus_zk_auth_failures_total",
        "Failed authentications (auth packets, SASL, client certificates).",
        "counter",
    ),
];

/// The ZooKeeper personality's metrics in Prometheus' text format, for the
/// binary's `/metrics` (empty until `serve` runs): connections, outstanding
/// requests, requests by op, latency histogram, watches, sessions.
pub fn metrics_text() -> String {
    use std::fmt::Write;
    let Some(srv) = CURRENT
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .and_then(|w| w.upgrade())
    else {
        return String::new();
    };
    let conns: Vec<Arc<ConnInfo>> = srv
        .conns
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .values()
        .cloned()
        .collect();
    let watches: usize = conns
        .iter()
        .map(|c| c.watches.load(Ordering::Relaxed))
        .sum();
    let sessions = srv
        .node
        .state()
        .leases()
        .iter()
        .filter(|l| l.session.is_some())
        .count();
    let outstanding = srv.outstanding.load(Ordering::Relaxed).max(0) as u64;
    let secure = conns.iter().filter(|c| c.secure).count();
    let values = [
        conns.len() as u64,
        outstanding,
        watches as u64,
        sessions as u64,
        srv.packets_received.load(Ordering::Relaxed),
        srv.packets_sent.load(Ordering::Relaxed),
        secure as u64,
        srv.tls_failed.load(Ordering::Relaxed),
        srv.auth_failed.load(Ordering::Relaxed),
    ];
    let mut o = String::new();
    for ((name, help, kind), v) in GAUGES.iter().zip(values) {
        let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
    }
    requests_and_latency(&srv, &mut o);
    o
}

/// The requests-by-op counters and the latency histogram of
/// [`metrics_text`].
fn requests_and_latency(srv: &Server, o: &mut String) {
    use std::fmt::Write;
    let _ = writeln!(
        o,
        "# HELP janus_zk_requests_total Requests by op.\n# TYPE janus_zk_requests_total counter"
    );
    for (code, n) in srv.ops.lock().unwrap_or_else(|p| p.into_inner()).iter() {
        let _ = writeln!(
            o,
            "janus_zk_requests_total{{op=\"{}\"}} {n}",
            op_name(*code)
        );
    }
    let lat = *srv.latency.lock().unwrap_or_else(|p| p.into_inner());
    let _ = writeln!(o, "# HELP janus_zk_request_latency_ms Request latency.\n# TYPE janus_zk_request_latency_ms histogram");
    let mut cum = 0;
    for (i, b) in srv.latency_buckets.iter().enumerate() {
        cum += b.load(Ordering::Relaxed);
        let le = LATENCY_BUCKETS_MS
            .get(i)
            .map_or("+Inf".to_string(), |v| v.to_string());
        let _ = writeln!(o, "janus_zk_request_latency_ms_bucket{{le=\"{le}\"}} {cum}");
    }
    let _ = writeln!(
        o,
        "janus_zk_request_latency_ms_sum {}\njanus_zk_request_latency_ms_count {}",
        lat.total, lat.count
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_clamp_between_2_and_20_ticks() {
        let c = Config {
            tick_ms: 100,
            ..Config::default()
        };
        assert_eq!(c.negotiate(10), 200);
        assert_eq!(c.negotiate(1000), 1000);
        assert_eq!(c.negotiate(100_000), 2000);
        assert_eq!(c.negotiate(-5), 200);
        let c = Config {
            min_session_timeout_ms: Some(50),
            max_session_timeout_ms: Some(60),
            ..c
        };
        assert_eq!(c.negotiate(1), 50);
        assert_eq!(c.negotiate(100), 60);
    }

    #[test]
    fn whitelist() {
        let c = Config::default();
        assert!(c.allows("ruok") && c.allows("srvr") && !c.allows("dump"));
        assert!(Config {
            four_letter_words: vec!["*".into()],
            ..c
        }
        .allows("dump"));
    }
}
