//! `janus snapshot save | status | restore`: back up a running cluster,
//! say what a backup holds, and make a new cluster's data dir from one (as
//! `etcdctl snapshot save | status | restore` do for etcd). The file is the
//! one `etcdctl snapshot save` stores when pointed at Janus.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use janus_raft::Member;
use sha2::Digest;

/// The `snapshot` subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum SnapshotCmd {
    /// Save a running member's whole state (znodes, sessions, keys,
    /// leases, auth, members, the revision clock) to FILE.
    Save {
        /// Where to write the backup (written beside as FILE.part, then
        /// renamed).
        file: PathBuf,
        /// etcd client endpoints of the member to back up; the first that
        /// answers is used.
        #[arg(
            long,
            value_delimiter = ',',
            value_name = "HOST:PORT,...",
            default_value = "127.0.0.1:2379"
        )]
        endpoints: Vec<String>,
        /// etcd user (root) when authentication is on.
        #[arg(long, value_name = "USER:PASSWORD")]
        user: Option<String>,
    },
    /// Check a backup's integrity and say what it holds.
    Status {
        file: PathBuf,
        /// `table` or `json`.
        #[arg(long, short = 'w', default_value = "table")]
        write_out: String,
    },
    /// Make a new member's data dir from a backup. Restore the same file
    /// once per member of the new cluster, with the same --initial-cluster.
    Restore {
        file: PathBuf,
        /// The data dir to create (default: NAME.etcd with --name, else
        /// janus-data); it must not hold a member yet.
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// etcd's member name (only names the default data dir).
        #[arg(long)]
        name: Option<String>,
        /// The new cluster: ID=HOST:PEERPORT,... as Janus takes it, or
        /// NAME=http://HOST:PEERPORT,... as etcd does (ids by sorted
        /// name). Default: one member at --initial-advertise-peer-urls.
        #[arg(long, value_name = "MEMBERS")]
        initial_cluster: Option<String>,
        /// This member's peer URL, for a one-member cluster.
        #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:2380")]
        initial_advertise_peer_urls: String,
        /// etcd's flag; accepted and unused (the token is a start-up
        /// setting in Janus).
        #[arg(long, value_name = "TOKEN")]
        initial_cluster_token: Option<String>,
        /// Restore even when the file's SHA-256 does not match.
        #[arg(long)]
        skip_hash_check: bool,
    },
}

pub async fn run(cmd: SnapshotCmd) -> anyhow::Result<()> {
    match cmd {
        SnapshotCmd::Save {
            file,
            endpoints,
            user,
        } => save(&file, &endpoints, user.as_deref()).await,
        SnapshotCmd::Status { file, write_out } => {
            let info = tokio::task::spawn_blocking(move || janus_store::inspect(&file, true, None))
                .await??;
            print!("{}", describe(&info, &write_out)?);
            Ok(())
        }
        SnapshotCmd::Restore {
            file,
            data_dir,
            name,
            initial_cluster,
            initial_advertise_peer_urls,
            initial_cluster_token: _,
            skip_hash_check,
        } => {
            let data_dir = data_dir.unwrap_or_else(|| match &name {
                Some(n) => PathBuf::from(format!("{n}.etcd")),
                None => PathBuf::from("janus-data"),
            });
            let members = members(initial_cluster.as_deref(), &initial_advertise_peer_urls)?;
            let store = data_dir.join("db");
            std::fs::create_dir_all(&data_dir)
                .with_context(|| format!("creating {}", data_dir.display()))?;
            let info = tokio::task::spawn_blocking(move || {
                janus_store::restore(&file, &store, members, !skip_hash_check)
            })
            .await??;
            println!(
                "restored revision {} ({} keys, {} znodes) into {}",
                info.revision,
                info.keys,
                info.znodes,
                data_dir.display()
            );
            Ok(())
        }
    }
}

/// The new cluster's members from `--initial-cluster`, in Janus's form or
/// etcd's.
fn members(cluster: Option<&str>, own_url: &str) -> anyhow::Result<BTreeMap<u64, Member>> {
    let addr =
        |url: &str| janus_raft::url_addr(url).with_context(|| format!("{url:?} is not a peer URL"));
    let Some(cluster) = cluster.filter(|c| !c.trim().is_empty()) else {
        return Ok(BTreeMap::from([(1, Member::new(addr(own_url)?))]));
    };
    let mut entries = Vec::new();
    for part in cluster.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((l, r)) = part.split_once('=') else {
            bail!("--initial-cluster entry {part:?} is not ID=ADDR or NAME=URL");
        };
        entries.push((l.trim().to_string(), r.trim().to_string()));
    }
    let janus_form = entries
        .iter()
        .all(|(l, r)| l.parse::<u64>().is_ok() && !r.contains("://"));
    let mut out = BTreeMap::new();
    if janus_form {
        for (l, r) in entries {
            let id: u64 = l.parse()?;
            if id == 0 || out.insert(id, Member::new(addr(&r)?)).is_some() {
                bail!("--initial-cluster id {id} is zero or repeated");
            }
        }
    } else {
        // As `janus etcd` numbers members: by sorted name, from 1; a name
        // given twice keeps its first URL.
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        entries.dedup_by(|b, a| a.0 == b.0);
        for (i, (_, url)) in entries.iter().enumerate() {
            let mut m = Member::new(addr(url)?);
            m.peer_urls = vec![url.clone()];
            out.insert(i as u64 + 1, m);
        }
    }
    Ok(out)
}

fn describe(info: &janus_store::BackupInfo, write_out: &str) -> anyhow::Result<String> {
    let members: Vec<String> = info
        .members
        .iter()
        .map(|(id, addr)| format!("{id}={addr}"))
        .collect();
    match write_out {
        "json" => Ok(format!(
            "{}\n",
            serde_json::json!({
                "hash": format!("{:016x}", info.digest),
                "revision": info.revision,
                "compactRevision": info.compacted,
                "totalKey": info.keys,
                "znodes": info.znodes,
                "leases": info.leases,
                "sessions": info.sessions,
                "members": members,
                "format": info.format,
                "totalSize": info.size,
            })
        )),
        "table" => Ok(format!(
            "hash: {:016x}\nrevision: {}\ncompact revision: {}\ntotal keys: {}\nznodes: {}\nleases: {}\nsessions: {}\nmembers: {}\nformat: {}\ntotal size: {}\n",
            info.digest,
            info.revision,
            info.compacted,
            info.keys,
            info.znodes,
            info.leases,
            info.sessions,
            members.join(","),
            info.format,
            info.size
        )),
        other => bail!("--write-out {other:?}: expected table or json"),
    }
}

/// Stream a backup from the first endpoint that answers into FILE.part,
/// check its hash, then sync it and rename it to FILE.
async fn save(file: &Path, endpoints: &[String], user: Option<&str>) -> anyhow::Result<()> {
    let mut opts = etcd_client::ConnectOptions::new().with_connect_timeout(Duration::from_secs(10));
    if let Some(u) = user {
        let (name, password) = u.split_once(':').context("--user is USER:PASSWORD")?;
        opts = opts.with_user(name, password);
    }
    let mut client = etcd_client::Client::connect(endpoints, Some(opts))
        .await
        .with_context(|| format!("connecting to {}", endpoints.join(",")))?;
    let mut stream = client.snapshot().await.context("snapshot")?;
    let mut part_name = file.as_os_str().to_owned();
    part_name.push(".part");
    let part = PathBuf::from(part_name);
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(&part).with_context(|| format!("creating {}", part.display()))?,
    );
    let mut hash = sha2::Sha256::new();
    let mut last: Vec<u8> = Vec::new();
    let mut total = 0u64;
    while let Some(msg) = stream.message().await.context("receiving the snapshot")? {
        // The last message is the SHA-256 of all before it.
        if !last.is_empty() {
            hash.update(&last);
        }
        out.write_all(msg.blob())?;
        total += msg.blob().len() as u64;
        last = msg.blob().to_vec();
    }
    let f = out.into_inner().map_err(|e| e.into_error())?;
    if last.len() != 32 || hash.finalize().as_slice() != last.as_slice() {
        let _ = std::fs::remove_file(&part);
        bail!("the snapshot stream ended early or is damaged ({total} bytes)");
    }
    f.sync_all()?;
    std::fs::rename(&part, file)?;
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir).and_then(|d| d.sync_all())?;
    }
    println!("Snapshot saved at {} ({total} bytes)", file.display());
    Ok(())
}
