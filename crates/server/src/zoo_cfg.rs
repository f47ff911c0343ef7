//! `janus zookeeper PATH/zoo.cfg`: an existing ensemble's zoo.cfg (and the
//! `myid` file in its dataDir), translated into one layer of Janus's
//! configuration (the same figment keys a TOML file sets).
//!
//! `server.N=host:quorumport:electionport[:role][;[clientaddr:]clientport]`
//! lines become the initial members: N is the Janus member id and
//! `host:quorumport` its peer address (Janus has one peer port, which
//! carries Raft's elections too, so the election port is not used). This
//! server is the one `myid` names; it listens for peers on its quorum
//! address.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde_json::{json, Map, Value};

/// What zoo.cfg asked for.
#[derive(Debug, Default)]
pub struct Translated {
    /// Configuration keys (figment layer; nested `zookeeper` table).
    pub layer: Map<String, Value>,
    /// Ignored keys and other remarks, for the log.
    pub warnings: Vec<String>,
}

/// Java `Properties` text (the subset zoo.cfg files use): `key=value`,
/// `key: value` or `key value`; `#`/`!` comments; surrounding whitespace
/// trimmed; a trailing backslash continues the line. Later keys win, as
/// with `Properties.load`; the order of first appearance is kept.
pub fn parse_properties(text: &str) -> Vec<(String, String)> {
    let mut logical: Vec<String> = Vec::new();
    let mut cont = false;
    for raw in text.lines() {
        let line = raw.trim_start();
        if !cont && (line.is_empty() || line.starts_with('#') || line.starts_with('!')) {
            continue;
        }
        let (body, more) = match line.strip_suffix('\\') {
            Some(b) if !b.ends_with('\\') => (b, true),
            _ => (line, false),
        };
        if cont {
            if let Some(last) = logical.last_mut() {
                last.push_str(body);
            }
        } else {
            logical.push(body.to_string());
        }
        cont = more;
    }
    let mut out: Vec<(String, String)> = Vec::new();
    for l in logical {
        let l = l.trim();
        let sep = l.find(|c: char| c == '=' || c == ':' || c.is_whitespace());
        let (k, v) = match sep {
            Some(i) => {
                let rest = l[i..].trim_start();
                let rest = rest
                    .strip_prefix('=')
                    .or_else(|| rest.strip_prefix(':'))
                    .unwrap_or(rest);
                (&l[..i], rest.trim())
            }
            None => (l, ""),
        };
        match out.iter_mut().find(|(key, _)| key == k) {
            Some(e) => e.1 = v.to_string(),
            None => out.push((k.to_string(), v.to_string())),
        }
    }
    out
}

/// One `server.N` line.
#[derive(Debug, Clone, PartialEq)]
pub struct Server {
    pub id: u64,
    /// `host:quorumport`: the Janus peer address.
    pub peer: String,
    pub election_port: u16,
    pub observer: bool,
    /// `host:port` of the client part, if the line has one.
    pub client: Option<String>,
}

/// Split `host:port` where host may be `[v6]`.
fn host_ports(s: &str) -> anyhow::Result<(String, Vec<&str>)> {
    if let Some(rest) = s.strip_prefix('[') {
        let Some((host, ports)) = rest.split_once(']') else {
            bail!("{s:?}: unclosed [");
        };
        let ports: Vec<&str> = ports.trim_start_matches(':').split(':').collect();
        return Ok((format!("[{host}]"), ports));
    }
    let mut parts = s.split(':');
    let host = parts.next().unwrap_or_default().to_string();
    Ok((host, parts.collect()))
}

/// `server.N=host:quorum:election[:participant|observer][;[addr:]port]`.
pub fn parse_server(id: u64, v: &str) -> anyhow::Result<Server> {
    let (addrs, client) = match v.split_once(';') {
        Some((a, c)) => (a.trim(), Some(c.trim())),
        None => (v.trim(), None),
    };
    // ZooKeeper 3.6 allows several addresses separated by `|`; Janus's peer
    // port has one.
    let first = addrs.split('|').next().unwrap_or_default();
    let (host, parts) = host_ports(first)?;
    if host.is_empty() || parts.len() < 2 || parts.len() > 3 {
        bail!("server.{id}={v}: expected host:quorumport:electionport[:role]");
    }
    let quorum: u16 = parts[0]
        .parse()
        .with_context(|| format!("server.{id}: quorum port {:?}", parts[0]))?;
    let election_port: u16 = parts[1]
        .parse()
        .with_context(|| format!("server.{id}: election port {:?}", parts[1]))?;
    let observer = match parts.get(2).map(|r| r.trim()) {
        None | Some("participant") => false,
        Some("observer") => true,
        Some(r) => bail!("server.{id}: unknown role {r:?}"),
    };
    let client = match client.filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => {
            let (h, p) = match c.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), p),
                None => ("0.0.0.0".to_string(), c),
            };
            let p: u16 = p
                .parse()
                .with_context(|| format!("server.{id}: client port {p:?}"))?;
            Some(format!("{h}:{p}"))
        }
    };
    Ok(Server {
        id,
        peer: format!("{host}:{quorum}"),
        election_port,
        observer,
        client,
    })
}

/// Java's `Integer.decode` (jute.maxbuffer may be hex).
fn java_int(v: &str) -> anyhow::Result<u64> {
    let v = v.trim();
    let r = if let Some(h) = v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        u64::from_str_radix(h, 16)
    } else {
        v.parse()
    };
    r.with_context(|| format!("{v:?} is not a number"))
}

fn java_bool(v: &str) -> bool {
    // Boolean.parseBoolean: only "true" (any case) is true; ZooKeeper
    // also takes "yes" for some keys (skipACL, forceSync).
    v.eq_ignore_ascii_case("true") || v.eq_ignore_ascii_case("yes")
}

/// Keys Janus accepts without using: tuning of ZooKeeper's own log,
/// snapshots, election and connection handling.
const IGNORED: &[&str] = &[
    "dataLogDir",
    "initLimit",
    "syncLimit",
    "maxClientCnxns",
    "maxCnxns",
    "autopurge.snapRetainCount",
    "autopurge.purgeInterval",
    "globalOutstandingLimit",
    "preAllocSize",
    "snapCount",
    "snapSizeLimitInKb",
    "commitLogCount",
    "txnLogSizeLimitInKb",
    "syncEnabled",
    "forceSync",
    "fsync.warningthresholdms",
    "electionAlg",
    "electionPortBindRetry",
    "cnxTimeout",
    "leaderServes",
    "connectToLearnerMasterLimit",
    "serverCnxnFactory",
    "clientCnxnSocket",
    "standaloneEnabled",
    "localSessionsEnabled",
    "localSessionsUpgradingEnabled",
    "audit.enable",
    "clientPortListenBacklog",
    "portUnification",
    "admin.idleTimeout",
    "admin.commandURL",
    "admin.portUnification",
    "multiAddress.enabled",
    "multiAddress.reachabilityCheckEnabled",
    "multiAddress.reachabilityCheckTimeoutMs",
    "quorum.auth.enableSasl",
    "quorum.auth.learnerRequireSasl",
    "quorum.auth.serverRequireSasl",
    "quorum.auth.learner.saslLoginContext",
    "quorum.auth.server.saslLoginContext",
    "quorum.auth.kerberos.servicePrincipal",
    "quorum.cnxn.threads.size",
    "ssl.protocol",
    "ssl.enabledProtocols",
    "ssl.ciphersuites",
    "ssl.hostnameVerification",
    "ssl.quorum.hostnameVerification",
    "ssl.quorum.clientAuth",
    "ssl.handshakeDetectionTimeoutMillis",
    "kerberos.removeHostFromPrincipal",
    "kerberos.removeRealmFromPrincipal",
    "znode.container.checkIntervalMs",
    "znode.container.maxPerMinute",
];

/// A key or trust store's location, once its type is one Janus reads:
/// `{prefix}.type` (JKS, PKCS12 or PEM, any case) or, without it, the
/// file name's extension, as ZooKeeper's `KeyStoreFileType` infers it
/// (`.jks`, `.p12`, `.pem`, `.bcfks`; Janus also takes `.crt` and `.key`
/// as PEM). The file is read by content (`janus_tls::store`), as Java reads a
/// PKCS#12 file named `.jks`.
fn store(props: &BTreeMap<&str, &str>, prefix: &str) -> anyhow::Result<Option<String>> {
    let Some(loc) = props.get(format!("{prefix}.location").as_str()) else {
        return Ok(None);
    };
    let ty = props
        .get(format!("{prefix}.type").as_str())
        .map(|t| t.to_ascii_uppercase());
    let lower = loc.to_ascii_lowercase();
    let ty = match ty {
        Some(t) => t,
        None if lower.ends_with(".jks") => "JKS".into(),
        None if lower.ends_with(".p12") => "PKCS12".into(),
        None if lower.ends_with(".bcfks") => "BCFKS".into(),
        None if [".pem", ".crt", ".key"].iter().any(|e| lower.ends_with(e)) => "PEM".into(),
        // ZooKeeper's own message (KeyStoreFileType.fromFilename).
        None => bail!("{prefix}.location={loc}: Unable to auto-detect store file type from file name: {loc} (set {prefix}.type)"),
    };
    match ty.as_str() {
        "JKS" | "PKCS12" | "PEM" => Ok(Some(loc.to_string())),
        other => bail!("{prefix}.type={other}: Janus reads JKS, PKCS12 and PEM key and trust stores (not BCFKS)"),
    }
}

/// A store password (`{prefix}.password`) as a layer value.
fn password(props: &BTreeMap<&str, &str>, prefix: &str) -> Option<serde_json::Value> {
    props
        .get(format!("{prefix}.password").as_str())
        .map(|p| json!(p))
}

/// Read `path` (and the `myid` in its dataDir) into a layer; `env` is the
/// process environment (for the JAAS file zkServer.sh names in
/// `SERVER_JVMFLAGS`).
pub fn translate(path: &Path, env: &[(String, String)]) -> anyhow::Result<Translated> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut props = parse_properties(&text);
    // A dynamic config file (ZooKeeper 3.5+) holds the server lines.
    if let Some((_, dyn_path)) = props.iter().find(|(k, _)| k == "dynamicConfigFile") {
        let p = PathBuf::from(dyn_path);
        let p = if p.is_relative() {
            path.parent().unwrap_or(Path::new(".")).join(p)
        } else {
            p
        };
        let dyn_text = std::fs::read_to_string(&p)
            .with_context(|| format!("reading dynamicConfigFile {}", p.display()))?;
        props.extend(
            parse_properties(&dyn_text)
                .into_iter()
                .filter(|(k, _)| k.starts_with("server.")),
        );
    }
    let mut t = translate_props(&props)?;
    if let Some(jaas) = jaas_path(env) {
        let users = jaas_digest_users(&jaas)?;
        if !users.is_empty() {
            if let Some(Value::Object(zk)) = t.layer.get_mut("zookeeper") {
                let sasl = zk
                    .entry("sasl")
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(sasl) = sasl {
                    sasl.insert("users".into(), json!(users));
                }
            }
            t.warnings.retain(|w| !w.starts_with("SASL:"));
        }
    }
    Ok(t)
}

/// `-Djava.security.auth.login.config=PATH` in the JVM flags zkServer.sh
/// passes (`SERVER_JVMFLAGS`, `JVMFLAGS`).
fn jaas_path(env: &[(String, String)]) -> Option<PathBuf> {
    env.iter()
        .filter(|(k, _)| k == "SERVER_JVMFLAGS" || k == "JVMFLAGS")
        .flat_map(|(_, v)| v.split_whitespace())
        .find_map(|f| f.strip_prefix("-Djava.security.auth.login.config="))
        .map(|p| PathBuf::from(p.trim_matches('"')))
}

/// The `user_NAME="PASSWORD"` options of the JAAS `Server` section's
/// DigestLoginModule (ZooKeeper's SASL DIGEST-MD5 users).
fn jaas_digest_users(path: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the JAAS file {}", path.display()))?;
    let mut users = BTreeMap::new();
    let Some(start) = text.find("Server") else {
        return Ok(users);
    };
    let rest = &text[start..];
    let (Some(open), Some(close)) = (rest.find('{'), rest.find('}')) else {
        bail!("{}: unterminated Server section", path.display());
    };
    if close < open || !rest[open..close].contains("DigestLoginModule") {
        return Ok(users);
    }
    let body = &rest[open + 1..close];
    let mut i = 0;
    while let Some(off) = body[i..].find("user_") {
        let at = i + off + "user_".len();
        let Some(eq) = body[at..].find('=') else {
            break;
        };
        let name = body[at..at + eq].trim().to_string();
        let after = body[at + eq + 1..].trim_start();
        let Some(q) = after.strip_prefix('"') else {
            bail!("{}: user_{name} has no quoted password", path.display());
        };
        let Some(endq) = q.find('"') else {
            bail!("{}: user_{name}'s password is not closed", path.display());
        };
        users.insert(name, q[..endq].to_string());
        let consumed = body.len() - after.len() + 1 + endq + 1;
        i = consumed.max(at);
    }
    Ok(users)
}

fn translate_props(props: &[(String, String)]) -> anyhow::Result<Translated> {
    let mut out = Translated::default();
    let mut zk = Map::new();
    // ZooKeeper passes unknown zoo.cfg keys on as `zookeeper.`-prefixed
    // system properties, so both spellings mean the same.
    let mut p: BTreeMap<&str, &str> = BTreeMap::new();
    for (k, v) in props {
        p.insert(k.strip_prefix("zookeeper.").unwrap_or(k), v.as_str());
    }
    let mut used: Vec<&str> = vec!["dynamicConfigFile"];
    let mut take = |k: &'static str| {
        used.push(k);
        p.get(k).copied()
    };

    let Some(data_dir) = take("dataDir") else {
        bail!("dataDir is not set");
    };
    let data_dir = PathBuf::from(data_dir);
    refuse_zk_data(&data_dir)?;
    out.layer.insert("data_dir".into(), json!(data_dir));

    if let Some(t) = take("tickTime") {
        zk.insert("tick_ms".into(), json!(java_int(t).context("tickTime")?));
    }
    if let Some(t) = take("minSessionTimeout") {
        zk.insert(
            "min_session_timeout_ms".into(),
            json!(java_int(t).context("minSessionTimeout")?),
        );
    }
    if let Some(t) = take("maxSessionTimeout") {
        zk.insert(
            "max_session_timeout_ms".into(),
            json!(java_int(t).context("maxSessionTimeout")?),
        );
    }

    // Servers and myid.
    let mut servers: Vec<Server> = Vec::new();
    for (k, v) in props {
        if let Some(n) = k.strip_prefix("server.") {
            let id: u64 = n.parse().with_context(|| format!("{k}: not a server id"))?;
            if id == 0 {
                bail!("{k}: server ids start at 1 in Janus");
            }
            servers.push(parse_server(id, v)?);
        }
        if k.starts_with("group.") || k.starts_with("weight.") {
            bail!("{k}: hierarchical quorums (group./weight.) are not supported by Janus: it counts a simple majority");
        }
    }
    let myid_path = data_dir.join("myid");
    let myid: Option<u64> = match std::fs::read_to_string(&myid_path) {
        Ok(s) => Some(
            s.trim()
                .parse()
                .with_context(|| format!("{}: not a number", myid_path.display()))?,
        ),
        Err(_) => None,
    };
    let quorum_all = take("quorumListenOnAllIPs").is_some_and(java_bool);
    let client_port = take("clientPort");
    let client_addr = take("clientPortAddress").unwrap_or("0.0.0.0");
    let mine: Option<Server> = if servers.is_empty() {
        // Standalone: one member.
        out.layer.insert("node_id".into(), json!(myid.unwrap_or(1)));
        None
    } else {
        let Some(id) = myid else {
            bail!(
                "{} file is missing (it names this server's server.N)",
                myid_path.display()
            );
        };
        let Some(me) = servers.iter().find(|s| s.id == id).cloned() else {
            bail!("myid {id} has no server.{id} line");
        };
        if let Some(o) = servers.iter().find(|s| s.observer) {
            bail!(
                "server.{}: observers are not supported in the initial configuration; start it as a participant or add it later with reconfig -add ...:observer",
                o.id
            );
        }
        let members: Vec<String> = servers
            .iter()
            .map(|s| format!("{}={}", s.id, s.peer))
            .collect();
        out.layer.insert("node_id".into(), json!(id));
        out.layer
            .insert("initial_cluster".into(), json!(members.join(",")));
        out.layer.insert("advertise_peer".into(), json!(me.peer));
        let listen = if quorum_all {
            let port = me.peer.rsplit(':').next().unwrap_or_default();
            format!("0.0.0.0:{port}")
        } else {
            me.peer.clone()
        };
        out.layer.insert("peer_listen".into(), json!(listen));
        if servers.iter().any(|s| {
            s.peer
                .rsplit(':')
                .next()
                .and_then(|p| p.parse::<u16>().ok())
                != Some(s.election_port)
        }) {
            out.warnings.push(
                "server.N election ports are not used: Janus elects over its peer port, the quorum port".into(),
            );
        }
        Some(me)
    };
    match (client_port, mine.as_ref().and_then(|m| m.client.clone())) {
        (Some(port), _) => {
            let port = java_int(port).context("clientPort")?;
            out.layer
                .insert("zk_listen".into(), json!(format!("{client_addr}:{port}")));
        }
        (None, Some(client)) => {
            out.layer.insert("zk_listen".into(), json!(client));
        }
        (None, None) => {
            bail!("clientPort is not set (nor a client address in this server's server.N line)")
        }
    }

    // TLS client port.
    if let Some(port) = take("secureClientPort") {
        let port = java_int(port).context("secureClientPort")?;
        let addr = take("secureClientPortAddress").unwrap_or(client_addr);
        zk.insert("secure_listen".into(), json!(format!("{addr}:{port}")));
        for k in [
            "ssl.keyStore.location",
            "ssl.keyStore.type",
            "ssl.trustStore.location",
            "ssl.trustStore.type",
        ] {
            take(k);
        }
        let Some(key) = store(&p, "ssl.keyStore")? else {
            bail!("secureClientPort needs ssl.keyStore.location (a JKS, PKCS12 or PEM key store)");
        };
        zk.insert("tls_cert".into(), json!(key));
        zk.insert("tls_key".into(), json!(key));
        if let Some(pw) = password(&p, "ssl.keyStore") {
            zk.insert("tls_key_store_password".into(), pw);
        }
        if let Some(ca) = store(&p, "ssl.trustStore")? {
            zk.insert("tls_client_ca".into(), json!(ca));
            if let Some(pw) = password(&p, "ssl.trustStore") {
                zk.insert("tls_trust_store_password".into(), pw);
            }
        }
    }
    for k in [
        "ssl.keyStore.password",
        "ssl.trustStore.password",
        "ssl.quorum.keyStore.password",
        "ssl.quorum.trustStore.password",
    ] {
        take(k);
    }
    if let Some(auth) = take("ssl.clientAuth") {
        let a = auth.to_ascii_lowercase();
        if !matches!(a.as_str(), "none" | "want" | "need") {
            bail!("ssl.clientAuth={auth}: expected none, want or need");
        }
        zk.insert("tls_client_auth".into(), json!(a));
    }
    // TLS between servers: Janus's peer TLS (always mutual, as ZooKeeper's
    // quorum TLS is).
    if take("sslQuorum").is_some_and(java_bool) {
        for k in [
            "ssl.quorum.keyStore.location",
            "ssl.quorum.keyStore.type",
            "ssl.quorum.trustStore.location",
            "ssl.quorum.trustStore.type",
        ] {
            take(k);
        }
        let (Some(key), Some(ca)) = (
            store(&p, "ssl.quorum.keyStore")?,
            store(&p, "ssl.quorum.trustStore")?,
        ) else {
            bail!(
                "sslQuorum needs ssl.quorum.keyStore.location and ssl.quorum.trustStore.location"
            );
        };
        out.layer.insert("peer_cert_file".into(), json!(key));
        out.layer.insert("peer_key_file".into(), json!(key));
        out.layer.insert("peer_trusted_ca_file".into(), json!(ca));
        if let Some(pw) = password(&p, "ssl.quorum.keyStore") {
            out.layer.insert("peer_key_store_password".into(), pw);
        }
        if let Some(pw) = password(&p, "ssl.quorum.trustStore") {
            out.layer.insert("peer_trust_store_password".into(), pw);
        }
        out.layer
            .insert("peer_client_cert_auth".into(), json!(true));
    }

    // Features and limits.
    if let Some(w) = take("4lw.commands.whitelist") {
        let words: Vec<String> = w
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        zk.insert("four_letter_words".into(), json!(words));
    }
    // ZooKeeper's default is off (Janus's own default is on).
    zk.insert(
        "extended_types".into(),
        json!(take("extendedTypesEnabled").is_some_and(java_bool)),
    );
    if let Some(v) = take("reconfigEnabled") {
        zk.insert("reconfig_enabled".into(), json!(java_bool(v)));
    }
    if let Some(v) = take("jute.maxbuffer") {
        zk.insert(
            "max_buffer".into(),
            json!(java_int(v).context("jute.maxbuffer")?),
        );
    }
    // AdminServer: on by default on 0.0.0.0:8080, as in ZooKeeper.
    let admin_on = take("admin.enableServer").is_none_or(java_bool);
    let admin_port = take("admin.serverPort");
    let admin_addr = take("admin.serverAddress");
    if admin_on {
        let port = match admin_port {
            Some(v) => java_int(v).context("admin.serverPort")?,
            None => 8080,
        };
        zk.insert(
            "admin_listen".into(),
            json!(format!("{}:{port}", admin_addr.unwrap_or("0.0.0.0"))),
        );
    }

    // Authentication.
    if let Some(d) = take("DigestAuthenticationProvider.superDigest") {
        zk.insert("super_digest".into(), json!(d));
    }
    if let Some(u) = take("X509AuthenticationProvider.superUser") {
        zk.insert("x509_super_user".into(), json!(u));
    }
    let mut sasl = Map::new();
    if let Some(u) = take("superUser") {
        sasl.insert("super_user".into(), json!(u));
    }
    let mut sasl_on = false;
    for (k, v) in props {
        let key = k.strip_prefix("zookeeper.").unwrap_or(k);
        if key.starts_with("authProvider.") || key == "authProvider" {
            let class = v.trim();
            match class.rsplit('.').next().unwrap_or_default() {
                "SASLAuthenticationProvider" => sasl_on = true,
                "X509AuthenticationProvider"
                | "DigestAuthenticationProvider"
                | "IPAuthenticationProvider" => {}
                _ => {
                    bail!("{k}={class}: custom authentication providers are not supported by Janus")
                }
            }
        }
    }
    if sasl_on {
        out.warnings.push(
            "SASL: no DIGEST-MD5 users found (Janus reads the JAAS file named by -Djava.security.auth.login.config in SERVER_JVMFLAGS, or [zookeeper.sasl] users); Kerberos is not supported".into(),
        );
    }
    if !sasl.is_empty() {
        zk.insert("sasl".into(), Value::Object(sasl));
    }
    for k in [
        "skipACL",
        "sessionRequireClientSASLAuth",
        "enforce.auth.enabled",
    ] {
        if take(k).is_some_and(java_bool) {
            bail!("{k}: not supported by Janus (ACLs are always checked; authentication is not enforced per session)");
        }
    }
    if let Some(t) = take("peerType") {
        if t.trim() == "observer" {
            bail!("peerType=observer: observers are not supported in the initial configuration");
        }
    }

    // Everything else: known tuning is accepted; unknown keys are warned.
    for (k, _) in props {
        let key = k.strip_prefix("zookeeper.").unwrap_or(k);
        if used.contains(&key) || key.starts_with("server.") || key.starts_with("authProvider") {
            continue;
        }
        if IGNORED.contains(&key) || key.starts_with("metricsProvider.") {
            out.warnings
                .push(format!("{k}: has no effect in Janus; accepted and ignored"));
        } else {
            out.warnings
                .push(format!("{k}: unknown zoo.cfg key; ignored"));
        }
    }
    out.layer.insert("zookeeper".into(), Value::Object(zk));
    Ok(out)
}

/// A dataDir with ZooKeeper's own snapshots or logs must not be silently
/// started over: Janus cannot read them.
fn refuse_zk_data(dir: &Path) -> anyhow::Result<()> {
    let v2 = dir.join("version-2");
    let Ok(entries) = std::fs::read_dir(&v2) else {
        return Ok(());
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snapshot.") || name.starts_with("log.") {
            bail!(
                "{} holds ZooKeeper's own data ({name}), which Janus cannot read: \
                 point dataDir at an empty directory (with myid) and copy the znodes over (see README, \"Moving to Janus\")",
                dir.display()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_syntax() {
        let p = parse_properties(
            "# comment\n  ! other comment\n\ntickTime = 2000\nclientPort:2181\ndataDir /var/zk \nserver.1=a:2888:3888;2181\nlong=one\\\n  two\ntickTime=3000\nempty=\n",
        );
        assert_eq!(
            p,
            vec![
                ("tickTime".to_string(), "3000".to_string()),
                ("clientPort".to_string(), "2181".to_string()),
                ("dataDir".to_string(), "/var/zk".to_string()),
                ("server.1".to_string(), "a:2888:3888;2181".to_string()),
                ("long".to_string(), "onetwo".to_string()),
                ("empty".to_string(), String::new()),
            ]
        );
    }

    #[test]
    fn server_lines() {
        let s = parse_server(2, "zk2.example:2888:3888:participant;0.0.0.0:2181").expect("valid");
        assert_eq!(s.peer, "zk2.example:2888");
        assert_eq!(s.election_port, 3888);
        assert!(!s.observer);
        assert_eq!(s.client.as_deref(), Some("0.0.0.0:2181"));
        let s = parse_server(3, "[::1]:2888:3888:observer;2181").expect("v6");
        assert_eq!(s.peer, "[::1]:2888");
        assert!(s.observer);
        assert_eq!(s.client.as_deref(), Some("0.0.0.0:2181"));
        let s = parse_server(1, "a:1:2|b:1:2").expect("multi-address");
        assert_eq!(s.peer, "a:1");
        assert!(parse_server(1, "a:2888").is_err());
        assert!(parse_server(1, "a:x:3888").is_err());
        assert!(parse_server(1, "a:1:2:leader").is_err());
    }

    fn cfg(dir: &Path, body: &str) -> PathBuf {
        let p = dir.join("zoo.cfg");
        std::fs::write(
            &p,
            format!("dataDir={}\n{body}", dir.join("data").display()),
        )
        .expect("write");
        std::fs::create_dir_all(dir.join("data")).expect("mkdir");
        p
    }

    #[test]
    fn ensemble_maps_onto_members() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = cfg(
            dir.path(),
            "tickTime=500\ninitLimit=10\nsyncLimit=5\nclientPort=45181\nclientPortAddress=127.0.0.1\n\
             server.1=127.0.0.1:45281:45381\nserver.2=127.0.0.1:45282:45382\nserver.3=127.0.0.1:45283:45383\n\
             4lw.commands.whitelist=srvr, ruok ,mntr\nzookeeper.extendedTypesEnabled=true\nreconfigEnabled=true\n\
             jute.maxbuffer=0x200000\nadmin.serverPort=45080\nauthProvider.1=org.apache.zookeeper.server.auth.SASLAuthenticationProvider\n\
             autopurge.purgeInterval=1\nsomething.odd=1\n",
        );
        std::fs::write(dir.path().join("data/myid"), "2\n").expect("myid");
        let jaas = dir.path().join("jaas.conf");
        std::fs::write(
            &jaas,
            "Server {\n  org.apache.zookeeper.server.auth.DigestLoginModule required\n  user_super=\"adminsecret\"\n  user_bob=\"bobsecret\";\n};\n",
        )
        .expect("jaas");
        let env = vec![(
            "SERVER_JVMFLAGS".to_string(),
            format!(
                "-Xmx1g -Djava.security.auth.login.config={}",
                jaas.display()
            ),
        )];
        let t = translate(&path, &env).expect("valid");
        let l = Value::Object(t.layer.clone());
        assert_eq!(
            l["zookeeper"]["sasl"]["users"],
            json!({"super": "adminsecret", "bob": "bobsecret"})
        );
        assert!(!t.warnings.iter().any(|w| w.starts_with("SASL")));
        let t = translate(&path, &[]).expect("valid");
        let l = Value::Object(t.layer.clone());
        assert_eq!(l["node_id"], 2);
        assert_eq!(
            l["initial_cluster"],
            "1=127.0.0.1:45281,2=127.0.0.1:45282,3=127.0.0.1:45283"
        );
        assert_eq!(l["peer_listen"], "127.0.0.1:45282");
        assert_eq!(l["zk_listen"], "127.0.0.1:45181");
        assert_eq!(l["zookeeper"]["tick_ms"], 500);
        assert_eq!(
            l["zookeeper"]["four_letter_words"],
            json!(["srvr", "ruok", "mntr"])
        );
        assert_eq!(l["zookeeper"]["extended_types"], true);
        assert_eq!(l["zookeeper"]["reconfig_enabled"], true);
        assert_eq!(l["zookeeper"]["max_buffer"], 0x200000);
        assert_eq!(l["zookeeper"]["admin_listen"], "0.0.0.0:45080");
        let w = t.warnings.join("\n");
        assert!(w.contains("initLimit") && w.contains("syncLimit"), "{w}");
        assert!(w.contains("autopurge.purgeInterval"), "{w}");
        assert!(w.contains("something.odd: unknown"), "{w}");
        assert!(w.contains("SASL"), "{w}");
        assert!(w.contains("election ports"), "{w}");
    }

    #[test]
    fn host_names_kept() {
        // Names stay names here: the member binds them resolved and
        // advertises them as written, as ZooKeeper does.
        let dir = tempfile::tempdir().expect("tempdir");
        let path = cfg(
            dir.path(),
            "clientPort=45181\nclientPortAddress=localhost\n\
             server.1=localhost:45281:45381\nserver.2=zk-2.example:45282:45382\nserver.3=localhost:45283:45383;45183\n",
        );
        std::fs::write(dir.path().join("data/myid"), "1").expect("myid");
        let t = translate(&path, &[]).expect("valid");
        assert_eq!(
            t.layer["initial_cluster"],
            "1=localhost:45281,2=zk-2.example:45282,3=localhost:45283"
        );
        assert_eq!(t.layer["peer_listen"], "localhost:45281");
        assert_eq!(t.layer["advertise_peer"], "localhost:45281");
        assert_eq!(t.layer["zk_listen"], "localhost:45181");
    }

    #[test]
    fn standalone_and_client_from_server_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let t = translate(
            &cfg(dir.path(), "clientPort=2181\nadmin.enableServer=false\n"),
            &[],
        )
        .expect("valid");
        assert_eq!(t.layer["node_id"], 1);
        assert_eq!(t.layer["zk_listen"], "0.0.0.0:2181");
        assert_eq!(
            t.layer["zookeeper"]["extended_types"], false,
            "ZooKeeper's default"
        );
        assert!(t.layer["zookeeper"].get("admin_listen").is_none());
        assert!(t.layer.get("initial_cluster").is_none());

        let dir = tempfile::tempdir().expect("tempdir");
        let p = cfg(dir.path(), "server.7=127.0.0.1:1:2;127.0.0.1:3\n");
        std::fs::write(dir.path().join("data/myid"), "7").expect("myid");
        let t = translate(&p, &[]).expect("valid");
        assert_eq!(t.layer["zk_listen"], "127.0.0.1:3");
        assert_eq!(t.layer["node_id"], 7);
    }

    #[test]
    fn dynamic_config_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("zoo.cfg.dynamic"),
            "server.1=127.0.0.1:1:2;127.0.0.1:11\nserver.2=127.0.0.1:3:4;127.0.0.1:12\nversion=100000000\n",
        )
        .expect("dyn");
        let p = cfg(dir.path(), "dynamicConfigFile=zoo.cfg.dynamic\n");
        std::fs::write(dir.path().join("data/myid"), "1").expect("myid");
        let t = translate(&p, &[]).expect("valid");
        assert_eq!(t.layer["initial_cluster"], "1=127.0.0.1:1,2=127.0.0.1:3");
        assert_eq!(t.layer["zk_listen"], "127.0.0.1:11");
    }

    #[test]
    fn refusals() {
        let bad = [
            ("clientPort=1\nserver.1=a:1:2\n", "myid"),
            (
                "clientPort=1\nserver.1=a:1:2\nserver.2=b:1:2:observer\n",
                "observers",
            ),
            ("clientPort=1\nskipACL=yes\n", "skipACL"),
            (
                "clientPort=1\nauthProvider.1=com.example.MyAuth\n",
                "custom",
            ),
            ("clientPort=1\ngroup.1=1:2:3\n", "hierarchical"),
            (
                "clientPort=1\nsecureClientPort=2\nssl.keyStore.location=/k.bcfks\n",
                "BCFKS",
            ),
            (
                "clientPort=1\nsecureClientPort=2\nssl.keyStore.location=/k.store\n",
                "Unable to auto-detect store file type",
            ),
            ("", "clientPort"),
        ];
        for (body, why) in bad {
            let dir = tempfile::tempdir().expect("tempdir");
            let p = cfg(dir.path(), body);
            if why != "myid" {
                std::fs::write(dir.path().join("data/myid"), "1").expect("myid");
            }
            let e = translate(&p, &[]).expect_err(body);
            assert!(format!("{e:#}").contains(why), "{body}: {e:#}");
        }
        // ZooKeeper's own data in dataDir.
        let dir = tempfile::tempdir().expect("tempdir");
        let p = cfg(dir.path(), "clientPort=1\n");
        std::fs::create_dir_all(dir.path().join("data/version-2")).expect("mkdir");
        std::fs::write(dir.path().join("data/version-2/snapshot.0"), "x").expect("snap");
        assert!(translate(&p, &[]).is_err());
        // No dataDir at all.
        let p = dir.path().join("nodata.cfg");
        std::fs::write(&p, "clientPort=1\n").expect("write");
        assert!(translate(&p, &[]).is_err());
    }

    #[test]
    fn pem_tls() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = cfg(
            dir.path(),
            "clientPort=1\nsecureClientPort=2\nssl.keyStore.location=/s.pem\nssl.trustStore.location=/ca.pem\nssl.trustStore.type=PEM\nssl.clientAuth=need\n",
        );
        let t = translate(&p, &[]).expect("valid");
        assert_eq!(t.layer["zookeeper"]["secure_listen"], "0.0.0.0:2");
        assert_eq!(t.layer["zookeeper"]["tls_cert"], "/s.pem");
        assert_eq!(t.layer["zookeeper"]["tls_client_ca"], "/ca.pem");
        assert_eq!(t.layer["zookeeper"]["tls_client_auth"], "need");
    }

    #[test]
    fn jks_and_pkcs12_stores() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = cfg(
            dir.path(),
            "clientPort=1\nsecureClientPort=2\nssl.keyStore.location=/k.jks\nssl.keyStore.password=secret\nssl.trustStore.location=/t.p12\nssl.trustStore.password=trust\nsslQuorum=true\nssl.quorum.keyStore.location=/q.store\nssl.quorum.keyStore.type=pkcs12\nssl.quorum.keyStore.password=q\nssl.quorum.trustStore.location=/qt.jks\n",
        );
        let t = translate(&p, &[]).expect("valid");
        let zk = &t.layer["zookeeper"];
        assert_eq!(zk["tls_cert"], "/k.jks");
        assert_eq!(zk["tls_key_store_password"], "secret");
        assert_eq!(zk["tls_client_ca"], "/t.p12");
        assert_eq!(zk["tls_trust_store_password"], "trust");
        assert_eq!(t.layer["peer_cert_file"], "/q.store");
        assert_eq!(t.layer["peer_key_store_password"], "q");
        assert_eq!(t.layer["peer_trusted_ca_file"], "/qt.jks");
        assert!(t.layer.get("peer_trust_store_password").is_none());
        assert!(
            t.warnings.iter().all(|w| !w.contains("password")),
            "{:?}",
            t.warnings
        );
    }
}
