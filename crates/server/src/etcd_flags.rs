//! `janus etcd [etcd flags]` (or the binary run as `etcd`): etcd's command
//! line and `ETCD_*` environment variables, translated into one layer of
//! Janus's configuration (the same figment keys a TOML file sets).
//!
//! Three kinds of flags: those Janus maps onto its configuration, those it
//! accepts and ignores with a warning (tuning that has no Janus
//! counterpart), and those it refuses because ignoring them would change
//! what the cluster does (for instance `--force-new-cluster`,
//! discovery). Unknown flags are refused, as etcd refuses them.
//!
//! Member ids: etcd derives member ids from peer URLs; Janus's Raft ids are
//! small integers. A member's id is its name's position (from 1) among the
//! distinct names of `--initial-cluster`, sorted. Members started from
//! independent command lines with the same `--initial-cluster` (in any
//! order) agree on every id.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Arg, ArgAction, CommandFactory, FromArgMatches, Parser};
use serde_json::{json, Map, Value};

/// Go's `strconv.ParseBool`, which etcd's boolean flags use.
fn go_bool(s: &str) -> Result<bool, String> {
    match s {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(format!("invalid boolean value {s:?}")),
    }
}

/// The flags Janus maps. Booleans take Go's forms: `--flag` or
/// `--flag=BOOL`, never `--flag BOOL`.
#[derive(Debug, Parser)]
#[command(
    name = "etcd",
    no_binary_name = true,
    args_override_self = true,
    disable_version_flag = true,
    about = "Janus started with etcd's flags (see README, \"Moving to Janus\")"
)]
struct EtcdArgs {
    #[arg(long)]
    name: Option<String>,
    #[arg(long)]
    data_dir: Option<PathBuf>,
    #[arg(long)]
    listen_client_urls: Option<String>,
    #[arg(long)]
    listen_client_http_urls: Option<String>,
    #[arg(long)]
    advertise_client_urls: Option<String>,
    #[arg(long)]
    listen_peer_urls: Option<String>,
    #[arg(long)]
    initial_advertise_peer_urls: Option<String>,
    #[arg(long)]
    initial_cluster: Option<String>,
    #[arg(long)]
    initial_cluster_state: Option<String>,
    #[arg(long)]
    initial_cluster_token: Option<String>,
    #[arg(long)]
    cert_file: Option<PathBuf>,
    #[arg(long)]
    key_file: Option<PathBuf>,
    #[arg(long)]
    trusted_ca_file: Option<PathBuf>,
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = go_bool)]
    client_cert_auth: Option<bool>,
    #[arg(long)]
    peer_cert_file: Option<PathBuf>,
    #[arg(long)]
    peer_key_file: Option<PathBuf>,
    #[arg(long)]
    peer_trusted_ca_file: Option<PathBuf>,
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = go_bool)]
    peer_client_cert_auth: Option<bool>,
    #[arg(long)]
    client_crl_file: Option<PathBuf>,
    #[arg(long)]
    peer_crl_file: Option<PathBuf>,
    #[arg(long)]
    quota_backend_bytes: Option<u64>,
    #[arg(long)]
    auto_compaction_mode: Option<String>,
    #[arg(long)]
    auto_compaction_retention: Option<String>,
    #[arg(long)]
    snapshot_count: Option<u64>,
    #[arg(long, alias = "experimental-snapshot-catchup-entries")]
    snapshot_catchup_entries: Option<u64>,
    #[arg(long)]
    max_txn_ops: Option<usize>,
    #[arg(long)]
    max_request_bytes: Option<usize>,
    #[arg(long)]
    heartbeat_interval: Option<u64>,
    #[arg(long)]
    election_timeout: Option<u64>,
    #[arg(long)]
    listen_metrics_urls: Option<String>,
    #[arg(long)]
    log_level: Option<String>,
    #[arg(long)]
    experimental_watch_progress_notify_interval: Option<String>,
    #[arg(long)]
    experimental_max_learners: Option<usize>,
    #[arg(long)]
    auth_token: Option<String>,
    #[arg(long)]
    auth_token_ttl: Option<u64>,
    #[arg(long)]
    bcrypt_cost: Option<u32>,
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = go_bool)]
    enable_v2: Option<bool>,
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = go_bool)]
    force_new_cluster: Option<bool>,
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = go_bool)]
    auto_tls: Option<bool>,
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = go_bool)]
    peer_auto_tls: Option<bool>,
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = go_bool)]
    version: Option<bool>,
}

/// Boolean flags accepted and ignored: tuning, diagnostics and checks with
/// no Janus counterpart (Janus always fsyncs; its state machine is checked
/// by Raft, not by etcd's corruption check).
const IGNORED_BOOLS: &[&str] = &[
    "experimental-initial-corrupt-check",
    "experimental-enable-lease-checkpoint",
    "experimental-enable-lease-checkpoint-persist",
    "experimental-enable-distributed-tracing",
    "experimental-memory-mlock",
    "experimental-txn-mode-write-with-shared-buffer",
    "experimental-stop-grpc-service-on-defrag",
    "experimental-peer-skip-client-san-verification",
    "enable-pprof",
    "enable-log-rotation",
    "enable-grpc-gateway",
    "strict-reconfig-check",
    "pre-vote",
    "socket-reuse-port",
    "socket-reuse-address",
    "unsafe-no-fsync",
];

/// Flags with a value accepted and ignored.
const IGNORED_VALUES: &[&str] = &[
    "logger",
    "log-outputs",
    "log-format",
    "log-rotation-config-json",
    "metrics",
    "feature-gates",
    "wal-dir",
    "max-snapshots",
    "max-wals",
    "max-concurrent-streams",
    "grpc-keepalive-min-time",
    "grpc-keepalive-interval",
    "grpc-keepalive-timeout",
    "initial-election-tick-advance",
    "backend-batch-interval",
    "backend-batch-limit",
    "backend-bbolt-freelist-type",
    "cipher-suites",
    "tls-min-version",
    "tls-max-version",
    "cors",
    "host-whitelist",
    "self-signed-cert-validity",
    "v2-deprecation",
    "experimental-corrupt-check-time",
    "experimental-compact-hash-check-time",
    "experimental-compaction-batch-limit",
    "experimental-compaction-sleep-interval",
    "experimental-downgrade-check-time",
    "experimental-warning-apply-duration",
    "warning-unary-request-duration",
    "experimental-warning-unary-request-duration",
    "experimental-bootstrap-defrag-threshold-megabytes",
    "experimental-distributed-tracing-address",
    "experimental-distributed-tracing-service-name",
    "experimental-distributed-tracing-instance-id",
    "experimental-distributed-tracing-sampling-rate",
    "experimental-wait-cluster-ready-timeout",
];

/// Flags refused, with why: ignoring them would change what the cluster
/// does or whom it trusts.
const REFUSED: &[(&str, &str)] = &[
    (
        "config-file",
        "etcd's YAML config file is not read; pass its settings as flags",
    ),
    (
        "discovery",
        "discovery is not supported; list the members in --initial-cluster",
    ),
    (
        "discovery-srv",
        "DNS discovery is not supported; list the members in --initial-cluster",
    ),
    ("discovery-srv-name", "DNS discovery is not supported"),
    ("discovery-fallback", "discovery is not supported"),
    ("discovery-proxy", "discovery is not supported"),
    ("discovery-endpoints", "discovery is not supported"),
    ("discovery-token", "discovery is not supported"),
    (
        "peer-cert-allowed-cn",
        "restricting peers by certificate CN is not supported",
    ),
    (
        "peer-cert-allowed-hostname",
        "restricting peers by certificate hostname is not supported",
    ),
    (
        "client-cert-allowed-hostname",
        "restricting clients by certificate hostname is not supported",
    ),
    ("proxy", "the v2 proxy is not supported"),
    ("experimental-enable-v2v3", "the v2 API is not supported"),
];

/// What the command line asked for.
#[derive(Debug, Default)]
pub struct Translated {
    /// Configuration keys (figment layer; nested `etcd` table).
    pub layer: Map<String, Value>,
    /// Accepted-but-ignored flags and other remarks, for the log.
    pub warnings: Vec<String>,
}

/// Whether `--version` was asked for (etcd prints its version and exits).
pub fn wants_version(args: &[String]) -> bool {
    args.iter().any(|a| {
        matches!(
            a.as_str(),
            "--version" | "-version" | "--version=true" | "-version=true"
        )
    })
}

/// etcd's `--version` text, with Janus's own version.
pub fn version_text() -> String {
    format!(
        "etcd Version: {}\nGit SHA: janus-{}\nGo Version: none (Janus, Rust)\nGo OS/Arch: {}/{}\n",
        crate::http::ETCD_VERSION,
        env!("CARGO_PKG_VERSION"),
        std::env::consts::OS,
        std::env::consts::ARCH,
    )
}

fn command() -> clap::Command {
    let mut cmd = EtcdArgs::command();
    for name in IGNORED_BOOLS {
        cmd = cmd.arg(
            Arg::new(*name)
                .long(*name)
                .num_args(0..=1)
                .require_equals(true)
                .default_missing_value("true")
                .value_parser(go_bool)
                .action(ArgAction::Set)
                .hide(true),
        );
    }
    for name in IGNORED_VALUES.iter().chain(REFUSED.iter().map(|(n, _)| n)) {
        cmd = cmd.arg(
            Arg::new(*name)
                .long(*name)
                .num_args(1)
                .action(ArgAction::Set)
                .hide(true),
        );
    }
    cmd
}

/// Go's flag package takes `-flag` as well as `--flag`.
fn normalize(arg: &str) -> String {
    if arg.len() > 2 && arg.starts_with('-') && !arg.starts_with("--") {
        format!("-{arg}")
    } else {
        arg.to_string()
    }
}

/// The flag an argument sets, if it is one (`--name=x` / `--name` → `name`).
fn flag_name(arg: &str) -> Option<&str> {
    let rest = arg.strip_prefix("--")?;
    Some(rest.split_once('=').map_or(rest, |(n, _)| n))
}

/// Parse etcd's arguments (after `etcd`) and environment into a layer.
pub fn translate(args: &[String], env: &[(String, String)]) -> anyhow::Result<Translated> {
    let mut out = Translated::default();
    let cmd = command();
    let known: Vec<String> = cmd
        .get_arguments()
        .filter_map(|a| a.get_long().map(str::to_string))
        .collect();
    let args: Vec<String> = args.iter().map(|a| normalize(a)).collect();
    let given: BTreeSet<&str> = args.iter().filter_map(|a| flag_name(a)).collect();
    // ETCD_FOO_BAR sets --foo-bar unless the command line does (etcd's
    // rule: flags win over the environment).
    let mut full: Vec<String> = Vec::new();
    for (k, v) in env {
        let Some(rest) = k.strip_prefix("ETCD_") else {
            continue;
        };
        let flag = rest.to_ascii_lowercase().replace('_', "-");
        if !known.contains(&flag) {
            out.warnings
                .push(format!("unrecognized environment variable {k}={v}"));
            continue;
        }
        if given.contains(flag.as_str()) {
            out.warnings.push(format!(
                "ignored environment variable {k}: shadowed by --{flag}"
            ));
            continue;
        }
        full.push(format!("--{flag}={v}"));
    }
    full.extend(args.iter().cloned());
    let matches = match cmd.try_get_matches_from(&full) {
        Ok(m) => m,
        Err(e) if e.kind() == clap::error::ErrorKind::DisplayHelp => e.exit(),
        Err(e) => bail!("{}", e.render().to_string().trim_start_matches("error: ")),
    };
    for (name, why) in REFUSED {
        if matches.contains_id(name) {
            bail!("--{name} is not supported by Janus: {why}");
        }
    }
    for name in IGNORED_BOOLS.iter().chain(IGNORED_VALUES) {
        if matches.contains_id(name) {
            out.warnings.push(format!(
                "--{name} has no effect in Janus; accepted and ignored"
            ));
        }
    }
    let a = EtcdArgs::from_arg_matches(&matches).map_err(|e| anyhow::anyhow!("{}", e.render()))?;
    map(a, &mut out)?;
    Ok(out)
}

/// `scheme://host:port[/]` → (scheme, host:port); etcd's URL flags.
fn split_url(url: &str) -> anyhow::Result<(&str, &str)> {
    let Some((scheme, rest)) = url.split_once("://") else {
        bail!("{url:?} is not a URL (scheme://host:port)");
    };
    let hostport = rest.trim_end_matches('/');
    if !matches!(scheme, "http" | "https") {
        bail!("{url:?}: only http and https URLs are supported (not {scheme})");
    }
    if hostport.is_empty() || hostport.contains('/') || !hostport.contains(':') {
        bail!("{url:?}: expected {scheme}://host:port");
    }
    Ok((scheme, hostport))
}

fn urls(list: &str) -> Vec<&str> {
    list.split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .collect()
}

/// A Go duration (`5s`, `1m30s`, `250ms`, `1h`) in milliseconds.
fn go_duration_ms(s: &str) -> anyhow::Result<u64> {
    let s = s.trim();
    if s == "0" {
        return Ok(0);
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .with_context(|| format!("duration {s:?} lacks a unit"))?;
        let (num, tail) = rest.split_at(num_end);
        let n: f64 = num
            .parse()
            .with_context(|| format!("duration {s:?}: bad number"))?;
        let unit_end = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_end);
        let ms = match unit {
            "ns" => 1e-6,
            "us" | "µs" => 1e-3,
            "ms" => 1.0,
            "s" => 1000.0,
            "m" => 60_000.0,
            "h" => 3_600_000.0,
            _ => bail!("duration {s:?}: unknown unit {unit:?}"),
        };
        total += n * ms;
        rest = tail;
    }
    Ok(total.round() as u64)
}

fn map(a: EtcdArgs, out: &mut Translated) -> anyhow::Result<()> {
    let l = &mut out.layer;
    let mut etcd = Map::new();
    let name = a.name.clone().unwrap_or_else(|| "default".into());
    etcd.insert("name".into(), json!(name));
    // etcd's default data directory is `${name}.etcd`.
    let data_dir = a
        .data_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{name}.etcd")));
    refuse_etcd_data(&data_dir)?;
    l.insert("data_dir".into(), json!(data_dir));

    if a.force_new_cluster == Some(true) {
        bail!("--force-new-cluster is not supported by Janus: it would drop the other members");
    }
    if a.enable_v2 == Some(true) {
        bail!("--enable-v2 is not supported by Janus: it serves etcd's v3 API only");
    }
    // Auto TLS: the certificates are made at start (Config::auto_tls), in
    // <data-dir>/fixtures/{client,peer} as etcd makes them.
    let certs_given = a.cert_file.is_some() || a.key_file.is_some();
    let auto_tls = a.auto_tls == Some(true) && !certs_given;
    if a.auto_tls == Some(true) && certs_given {
        out.warnings
            .push("ignoring client auto TLS since certs given".into());
    }
    if auto_tls {
        l.insert("auto_tls".into(), json!(true));
    }
    let peer_certs_given = a.peer_cert_file.is_some() || a.peer_key_file.is_some();
    let peer_auto_tls = a.peer_auto_tls == Some(true) && !peer_certs_given;
    if a.peer_auto_tls == Some(true) && peer_certs_given {
        out.warnings
            .push("ignoring peer auto TLS since certs given".into());
    }
    if peer_auto_tls {
        l.insert("peer_auto_tls".into(), json!(true));
    }

    // Client TLS.
    let client_tls = (a.cert_file.is_some() && a.key_file.is_some()) || auto_tls;
    if let Some(p) = &a.client_crl_file {
        etcd.insert("client_crl_file".into(), json!(p));
    }
    if let Some(p) = &a.peer_crl_file {
        l.insert("peer_crl_file".into(), json!(p));
    }
    for (k, v) in [
        ("cert_file", &a.cert_file),
        ("key_file", &a.key_file),
        ("trusted_ca_file", &a.trusted_ca_file),
    ] {
        if let Some(p) = v {
            etcd.insert(k.into(), json!(p));
        }
    }
    if let Some(b) = a.client_cert_auth {
        etcd.insert("client_cert_auth".into(), json!(b));
    }
    // Peer TLS.
    let peer_tls = (a.peer_cert_file.is_some() && a.peer_key_file.is_some()) || peer_auto_tls;
    for (k, v) in [
        ("peer_cert_file", &a.peer_cert_file),
        ("peer_key_file", &a.peer_key_file),
        ("peer_trusted_ca_file", &a.peer_trusted_ca_file),
    ] {
        if let Some(p) = v {
            l.insert(k.into(), json!(p));
        }
    }
    if let Some(b) = a.peer_client_cert_auth {
        l.insert("peer_client_cert_auth".into(), json!(b));
    }

    // Client URLs: Janus serves gRPC and HTTP on every listener, so the
    // HTTP-only list just adds listeners.
    let mut listen: Vec<String> = Vec::new();
    for list in [&a.listen_client_urls, &a.listen_client_http_urls]
        .into_iter()
        .flatten()
    {
        for u in urls(list) {
            let (scheme, hostport) = split_url(u)?;
            crate::resolve::etcd_check_bind_url(u, hostport)?;
            if scheme == "https" && !client_tls {
                bail!("{u}: https client URLs need --cert-file and --key-file");
            }
            listen.push(format!("{scheme}://{hostport}"));
        }
    }
    if !listen.is_empty() {
        l.insert("etcd_listen".into(), json!(listen.join(",")));
    }
    match &a.advertise_client_urls {
        Some(list) => {
            let mut adv = Vec::new();
            for u in urls(list) {
                split_url(u)?;
                adv.push(u.trim_end_matches('/').to_string());
            }
            etcd.insert("advertise_client_urls".into(), json!(adv));
        }
        // etcd's own rule (embed.ErrUnsetAdvertiseClientURLsFlag).
        None if a.listen_client_urls.is_some() => {
            bail!("--advertise-client-urls is required when --listen-client-urls is set explicitly")
        }
        None => {}
    }

    // Peer URLs: Janus has one peer listener.
    let peer_scheme_ok = |scheme: &str, u: &str| -> anyhow::Result<()> {
        match (scheme, peer_tls) {
            ("https", false) => bail!("{u}: https peer URLs need --peer-cert-file and --peer-key-file"),
            ("http", true) => bail!("{u}: plain http peer URLs with peer TLS configured are not supported (Janus's peer port is all TLS or none)"),
            _ => Ok(()),
        }
    };
    if let Some(list) = &a.listen_peer_urls {
        let list = urls(list);
        if list.len() > 1 {
            bail!(
                "--listen-peer-urls: Janus listens on one peer URL, not {}",
                list.len()
            );
        }
        if let Some(u) = list.first() {
            let (scheme, hostport) = split_url(u)?;
            crate::resolve::etcd_check_bind_url(u, hostport)?;
            peer_scheme_ok(scheme, u)?;
            l.insert("peer_listen".into(), json!(hostport));
        }
    }
    let default_peer = if peer_tls {
        "https://localhost:2380"
    } else {
        "http://localhost:2380"
    };
    let adv_peer_list = a
        .initial_advertise_peer_urls
        .clone()
        .unwrap_or_else(|| default_peer.to_string());
    let adv_peers = urls(&adv_peer_list);
    let Some(first_adv) = adv_peers.first() else {
        bail!("--initial-advertise-peer-urls is empty");
    };
    let (scheme, adv_hostport) = split_url(first_adv)?;
    peer_scheme_ok(scheme, first_adv)?;
    if adv_peers.len() > 1 {
        out.warnings.push(format!(
            "--initial-advertise-peer-urls: Janus advertises one peer URL; using {first_adv}"
        ));
    }
    l.insert("advertise_peer".into(), json!(adv_hostport));

    // Initial cluster: names → ids by sorted position.
    let cluster = a
        .initial_cluster
        .clone()
        .unwrap_or_else(|| format!("{name}={adv_peer_list}"));
    let mut entries: Vec<(String, String)> = Vec::new();
    for part in urls(&cluster) {
        let Some((n, u)) = part.split_once('=') else {
            bail!("--initial-cluster entry {part:?} is not NAME=URL");
        };
        let (scheme, hostport) = split_url(u.trim())?;
        peer_scheme_ok(scheme, u)?;
        entries.push((n.trim().to_string(), hostport.to_string()));
    }
    let names: Vec<String> = entries
        .iter()
        .map(|(n, _)| n.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut members: Vec<String> = Vec::new();
    for (i, n) in names.iter().enumerate() {
        let addrs: Vec<&String> = entries
            .iter()
            .filter(|(m, _)| m == n)
            .map(|(_, a)| a)
            .collect();
        if addrs.len() > 1 {
            out.warnings.push(format!(
                "--initial-cluster: member {n} has {} peer URLs; Janus uses the first",
                addrs.len()
            ));
        }
        members.push(format!("{}={}", i + 1, addrs[0]));
    }
    let state = a
        .initial_cluster_state
        .clone()
        .unwrap_or_else(|| "new".into());
    let node_id = match names.iter().position(|n| *n == name) {
        Some(i) => i as u64 + 1,
        None if state == "new" => {
            bail!("couldn't find local name {name:?} in the initial cluster configuration")
        }
        // A joining member learns its id from the membership (after
        // `etcdctl member add`); this one is only a fallback.
        None => names.len() as u64 + 1,
    };
    if state == "new" {
        let mine: Vec<&String> = entries
            .iter()
            .filter(|(m, _)| *m == name)
            .map(|(_, a)| a)
            .collect();
        // etcd compares the two lists resolved (`netutil.URLStringsEqual`).
        if !mine
            .iter()
            .any(|a| crate::resolve::same_address(a, adv_hostport))
        {
            bail!(
                "--initial-cluster has {name}={} but missing from --initial-advertise-peer-urls={adv_peer_list}",
                mine.first().map_or("", |a| a.as_str())
            );
        }
    }
    l.insert("node_id".into(), json!(node_id));
    l.insert("initial_cluster".into(), json!(members.join(",")));
    l.insert("initial_cluster_state".into(), json!(state));
    if let Some(t) = &a.initial_cluster_token {
        etcd.insert("cluster_token".into(), json!(t));
    }

    // Limits and timings.
    if let Some(v) = a.quota_backend_bytes {
        etcd.insert("quota_backend_bytes".into(), json!(v));
    }
    if let Some(v) = &a.auto_compaction_mode {
        etcd.insert("auto_compaction_mode".into(), json!(v));
    }
    if let Some(v) = &a.auto_compaction_retention {
        etcd.insert("auto_compaction_retention".into(), json!(v));
    }
    if let Some(v) = a.max_txn_ops {
        etcd.insert("max_txn_ops".into(), json!(v));
    }
    if let Some(v) = a.max_request_bytes {
        etcd.insert("max_request_bytes".into(), json!(v));
    }
    if let Some(v) = a.experimental_max_learners {
        etcd.insert("max_learners".into(), json!(v));
    }
    if let Some(v) = &a.experimental_watch_progress_notify_interval {
        etcd.insert(
            "watch_progress_notify_interval_ms".into(),
            json!(go_duration_ms(v).context("--experimental-watch-progress-notify-interval")?),
        );
    }
    if let Some(v) = a.snapshot_count {
        l.insert("snapshot_entries".into(), json!(v.max(1)));
    }
    if let Some(v) = a.snapshot_catchup_entries {
        l.insert("log_keep_entries".into(), json!(v));
    }
    let hb = a.heartbeat_interval.unwrap_or(100);
    let et = a.election_timeout.unwrap_or(1000);
    // etcd's own check (embed.Config.Validate).
    if et < 5 * hb {
        bail!("--election-timeout[{et}ms] should be at least as 5 times as --heartbeat-interval[{hb}ms]");
    }
    l.insert("heartbeat_ms".into(), json!(hb));
    l.insert("election_timeout_ms".into(), json!(et));

    // Auth.
    if let Some(t) = &a.auth_token {
        let kind = t.split(',').next().unwrap_or_default();
        if kind != "simple" {
            bail!("--auth-token={t}: Janus supports simple tokens only (not {kind})");
        }
    }
    if let Some(v) = a.auth_token_ttl {
        etcd.insert("auth_token_ttl_secs".into(), json!(v));
    }
    if let Some(v) = a.bcrypt_cost {
        etcd.insert("bcrypt_cost".into(), json!(v));
    }

    // Metrics listeners: /metrics, /health, /livez, /readyz, /version.
    if let Some(list) = &a.listen_metrics_urls {
        let mut m = Vec::new();
        for u in urls(list) {
            let (scheme, hostport) = split_url(u)?;
            crate::resolve::etcd_check_bind_url(u, hostport)?;
            if scheme == "https" {
                bail!("{u}: https metrics URLs are not supported by Janus (use http)");
            }
            m.push(hostport.to_string());
        }
        l.insert("metrics_listen".into(), json!(m.join(",")));
    }
    if let Some(lvl) = &a.log_level {
        let filter = match lvl.as_str() {
            "debug" => "debug,openraft=info,h2=info,hyper=info,tower=info",
            "info" => "info,openraft=warn",
            "warn" => "warn",
            "error" | "dpanic" | "panic" | "fatal" => "error",
            _ => bail!("--log-level={lvl}: expected debug, info, warn, error, panic or fatal"),
        };
        l.insert("log".into(), json!(filter));
    }
    l.insert("etcd".into(), Value::Object(etcd));
    Ok(())
}

/// A data directory that holds etcd's own files (bbolt, WAL) must not be
/// silently started over: Janus cannot read them.
fn refuse_etcd_data(dir: &Path) -> anyhow::Result<()> {
    let member = dir.join("member");
    if member.join("snap").exists() || member.join("wal").exists() {
        bail!(
            "{} holds etcd's own data (member/snap, member/wal), which Janus cannot read: \
             start Janus in an empty data directory and copy the keys over (see README, \"Moving to Janus\")",
            dir.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    fn kubeadm(name: &str, ip: &str, dir: &str) -> Vec<String> {
        s(&[
            &format!("--advertise-client-urls=https://{ip}:2379"),
            "--cert-file=/etc/kubernetes/pki/etcd/server.crt",
            "--client-cert-auth=true",
            &format!("--data-dir={dir}"),
            "--experimental-initial-corrupt-check=true",
            "--experimental-watch-progress-notify-interval=5s",
            &format!("--initial-advertise-peer-urls=https://{ip}:2380"),
            "--initial-cluster=cp-b=https://10.0.0.2:2380,cp-a=https://10.0.0.1:2380,cp-c=https://10.0.0.3:2380",
            "--key-file=/etc/kubernetes/pki/etcd/server.key",
            &format!("--listen-client-urls=https://127.0.0.1:2379,https://{ip}:2379"),
            "--listen-metrics-urls=http://127.0.0.1:2381",
            &format!("--listen-peer-urls=https://{ip}:2380"),
            &format!("--name={name}"),
            "--peer-cert-file=/etc/kubernetes/pki/etcd/peer.crt",
            "--peer-client-cert-auth=true",
            "--peer-key-file=/etc/kubernetes/pki/etcd/peer.key",
            "--peer-trusted-ca-file=/etc/kubernetes/pki/etcd/ca.crt",
            "--snapshot-count=10000",
            "--trusted-ca-file=/etc/kubernetes/pki/etcd/ca.crt",
        ])
    }

    #[test]
    fn kubeadm_command_line_maps() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path().join("etcd");
        let t = translate(
            &kubeadm("cp-b", "10.0.0.2", d.to_str().expect("utf-8")),
            &[],
        )
        .expect("kubeadm's flags are accepted");
        let l = Value::Object(t.layer.clone());
        assert_eq!(l["node_id"], 2, "cp-b is second of the sorted names");
        assert_eq!(
            l["initial_cluster"],
            "1=10.0.0.1:2380,2=10.0.0.2:2380,3=10.0.0.3:2380"
        );
        assert_eq!(
            l["etcd_listen"],
            "https://127.0.0.1:2379,https://10.0.0.2:2379"
        );
        assert_eq!(l["peer_listen"], "10.0.0.2:2380");
        assert_eq!(l["advertise_peer"], "10.0.0.2:2380");
        assert_eq!(l["metrics_listen"], "127.0.0.1:2381");
        assert_eq!(l["snapshot_entries"], 10000);
        assert_eq!(l["peer_client_cert_auth"], true);
        assert_eq!(l["etcd"]["client_cert_auth"], true);
        assert_eq!(l["etcd"]["name"], "cp-b");
        assert_eq!(l["etcd"]["watch_progress_notify_interval_ms"], 5000);
        assert_eq!(
            l["etcd"]["advertise_client_urls"],
            json!(["https://10.0.0.2:2379"])
        );
        assert!(t
            .warnings
            .iter()
            .any(|w| w.contains("experimental-initial-corrupt-check")));
        // The same cluster from another member's command line agrees.
        let t = translate(
            &kubeadm("cp-c", "10.0.0.3", d.to_str().expect("utf-8")),
            &[],
        )
        .expect("accepted");
        assert_eq!(t.layer["node_id"], 3);
        assert_eq!(
            t.layer["initial_cluster"],
            "1=10.0.0.1:2380,2=10.0.0.2:2380,3=10.0.0.3:2380"
        );
    }

    #[test]
    fn space_separated_values_single_dash_and_env() {
        let t = translate(
            &s(&[
                "-name",
                "n1",
                "--initial-cluster",
                "n1=http://127.0.0.1:45380",
                "--initial-advertise-peer-urls",
                "http://127.0.0.1:45380",
                "--heartbeat-interval",
                "50",
            ]),
            &[
                ("ETCD_ELECTION_TIMEOUT".into(), "500".into()),
                ("ETCD_NAME".into(), "shadowed".into()),
                ("ETCD_NO_SUCH_THING".into(), "1".into()),
                ("ETCDCTL_API".into(), "3".into()),
                ("ETCD_CLIENT_CERT_AUTH".into(), "false".into()),
            ],
        )
        .expect("accepted");
        assert_eq!(t.layer["node_id"], 1);
        assert_eq!(t.layer["etcd"]["name"], "n1", "the flag beats ETCD_NAME");
        assert_eq!(t.layer["heartbeat_ms"], 50);
        assert_eq!(
            t.layer["election_timeout_ms"], 500,
            "from ETCD_ELECTION_TIMEOUT"
        );
        assert_eq!(t.layer["etcd"]["client_cert_auth"], false);
        assert_eq!(t.layer["data_dir"], "n1.etcd", "etcd's default data dir");
        assert!(t.warnings.iter().any(|w| w.contains("ETCD_NO_SUCH_THING")));
        assert!(t.warnings.iter().any(|w| w.contains("shadowed")));
        assert!(!t.warnings.iter().any(|w| w.contains("ETCDCTL")));
    }

    #[test]
    fn defaults_are_etcds() {
        let t = translate(&[], &[]).expect("no flags");
        assert_eq!(t.layer["node_id"], 1);
        assert_eq!(t.layer["initial_cluster"], "1=localhost:2380");
        assert_eq!(t.layer["data_dir"], "default.etcd");
        assert_eq!(t.layer["etcd"]["name"], "default");
    }

    #[test]
    fn host_names_in_urls() {
        // Listeners: IPs and `localhost` (bound resolved at start);
        // advertised URLs and the initial cluster: any name, kept.
        let t = translate(
            &s(&[
                "--name=n1",
                "--listen-client-urls=http://localhost:2379",
                "--advertise-client-urls=http://node-1.example:2379",
                "--listen-peer-urls=http://localhost:2380",
                "--initial-advertise-peer-urls=http://localhost:2380",
                "--initial-cluster=n1=http://localhost:2380,n2=http://node-2.example:2380",
                "--listen-metrics-urls=http://localhost:2381",
            ]),
            &[],
        )
        .expect("names accepted");
        assert_eq!(t.layer["etcd_listen"], "http://localhost:2379");
        assert_eq!(t.layer["peer_listen"], "localhost:2380");
        assert_eq!(t.layer["advertise_peer"], "localhost:2380");
        assert_eq!(t.layer["metrics_listen"], "localhost:2381");
        assert_eq!(
            t.layer["initial_cluster"],
            "1=localhost:2380,2=node-2.example:2380"
        );
        assert_eq!(
            t.layer["etcd"]["advertise_client_urls"],
            json!(["http://node-1.example:2379"])
        );
        // etcd matches the initial cluster with the advertised URLs
        // resolved.
        assert!(translate(
            &s(&[
                "--initial-advertise-peer-urls=http://127.0.0.1:2380",
                "--initial-cluster=default=http://localhost:2380",
            ]),
            &[],
        )
        .is_ok());
        for flag in [
            "--listen-peer-urls=http://node-1.example:2380",
            "--listen-metrics-urls=http://node-1.example:2381",
        ] {
            let e = translate(&s(&[flag]), &[]).expect_err(flag);
            let url = flag.split_once('=').map_or("", |(_, u)| u);
            assert_eq!(
                e.to_string(),
                format!("expected IP in URL for binding ({url})")
            );
        }
        let e = translate(
            &s(&[
                "--listen-client-urls=http://node-1.example:2379",
                "--advertise-client-urls=http://node-1.example:2379",
            ]),
            &[],
        )
        .expect_err("a name to listen on");
        assert_eq!(
            e.to_string(),
            "expected IP in URL for binding (http://node-1.example:2379)"
        );
    }

    #[test]
    fn refusals() {
        let cases: &[&[&str]] = &[
            &["--force-new-cluster"],
            &["--enable-v2=true"],
            &["--discovery=https://discovery.etcd.io/x"],
            &["--peer-cert-allowed-cn", "x"],
            &["--config-file=/etc/etcd.yaml"],
            &["--no-such-flag=1"],
            &["--auth-token=jwt,pub-key=x"],
            &["--listen-client-urls=http://127.0.0.1:2379"], // no advertise
            &[
                "--listen-client-urls=unix://x",
                "--advertise-client-urls=http://a:1",
            ],
            &[
                "--listen-client-urls=https://a:1",
                "--advertise-client-urls=https://a:1",
            ], // no cert
            &["--name=x", "--initial-cluster=y=http://a:1"],
            &["--heartbeat-interval=100", "--election-timeout=300"],
            &["--listen-peer-urls=http://a:1,http://b:1"],
            &["--client-cert-auth", "true"],
            &["--log-level=loud"],
        ];
        for c in cases {
            assert!(translate(&s(c), &[]).is_err(), "{c:?} accepted");
        }
        assert!(translate(&s(&["--enable-v2=false", "--client-cert-auth=1"]), &[]).is_ok());
    }

    #[test]
    fn auto_tls_and_crls() {
        let t = translate(
            &s(&[
                "--auto-tls",
                "--peer-auto-tls",
                "--listen-client-urls=https://127.0.0.1:2379",
                "--advertise-client-urls=https://127.0.0.1:2379",
                "--listen-peer-urls=https://127.0.0.1:2380",
                "--initial-advertise-peer-urls=https://127.0.0.1:2380",
                "--initial-cluster=default=https://127.0.0.1:2380",
                "--client-crl-file=/c.crl",
                "--peer-crl-file=/p.crl",
            ]),
            &[],
        )
        .expect("accepted");
        assert_eq!(t.layer["auto_tls"], true);
        assert_eq!(t.layer["peer_auto_tls"], true);
        assert_eq!(t.layer["etcd"]["client_crl_file"], "/c.crl");
        assert_eq!(t.layer["peer_crl_file"], "/p.crl");
        assert_eq!(t.layer["etcd_listen"], "https://127.0.0.1:2379");
        // Files given: auto TLS is ignored, as etcd ignores it.
        let t = translate(
            &s(&["--auto-tls", "--cert-file=/c.pem", "--key-file=/k.pem"]),
            &[],
        )
        .expect("accepted");
        assert!(t.layer.get("auto_tls").is_none());
        assert!(t
            .warnings
            .iter()
            .any(|w| w == "ignoring client auto TLS since certs given"));
    }

    #[test]
    fn ignored_flags_warn() {
        let t = translate(
            &s(&[
                "--logger=zap",
                "--enable-pprof",
                "--max-wals",
                "5",
                "--unsafe-no-fsync=true",
            ]),
            &[],
        )
        .expect("accepted");
        assert_eq!(t.warnings.len(), 4, "{:?}", t.warnings);
    }

    #[test]
    fn etcd_data_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("member/snap")).expect("mkdir");
        let arg = format!("--data-dir={}", dir.path().display());
        let e = translate(&s(&[&arg]), &[]).expect_err("etcd data");
        assert!(e.to_string().contains("cannot read"), "{e}");
    }

    #[test]
    fn durations() {
        assert_eq!(go_duration_ms("5s").ok(), Some(5000));
        assert_eq!(go_duration_ms("1m30s").ok(), Some(90_000));
        assert_eq!(go_duration_ms("250ms").ok(), Some(250));
        assert_eq!(go_duration_ms("1.5h").ok(), Some(5_400_000));
        assert!(go_duration_ms("5").is_err());
        assert!(go_duration_ms("5parsecs").is_err());
    }
}
