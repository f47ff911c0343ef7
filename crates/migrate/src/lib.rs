//! `janus migrate`: move a running ZooKeeper ensemble or etcd cluster into
//! Janus without downtime. Each source is copied through its own client
//! protocol (znodes with data and ACLs; keys with values and leases), then
//! followed (a persistent recursive watch; an etcd watch from the copied
//! revision) until the operator cuts over with SIGINT or SIGTERM. At
//! cut-over the two sides are reconciled once more and compared; the report
//! gives counts and checksums of both.
//!
//! Janus is reached through its public ports like any client, so it may
//! run anywhere. What a client protocol cannot set is not copied: zxids,
//! revisions, versions and times start afresh in Janus, ephemeral znodes
//! stay with their sessions (their owners recreate them after cut-over).

mod etcd;
mod progress;
mod zk;

use std::fmt;

use tokio::sync::watch;

/// The command line of `janus migrate`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// A running ZooKeeper: HOST:PORT[,HOST:PORT...][/PATH]. The tree under
    /// PATH (default /, without /zookeeper) is copied to the same path.
    #[arg(long, value_name = "HOSTS[/PATH]")]
    pub from_zookeeper: Option<String>,
    /// A running etcd: comma-separated endpoints.
    #[arg(long, value_name = "ENDPOINTS", value_delimiter = ',')]
    pub from_etcd: Vec<String>,
    /// Copy only the etcd keys with this prefix (default: all keys).
    #[arg(long, value_name = "P")]
    pub prefix: Option<String>,
    /// Janus's ZooKeeper port.
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:2181")]
    pub to_zookeeper: String,
    /// Janus's etcd endpoints.
    #[arg(
        long,
        value_name = "ENDPOINTS",
        value_delimiter = ',',
        default_value = "127.0.0.1:2379"
    )]
    pub to_etcd: Vec<String>,
    /// ZooKeeper credentials used on both sides, SCHEME:AUTH (for example
    /// digest:admin:secret); repeatable. Znodes the migration cannot read
    /// are reported, not skipped silently.
    #[arg(long, value_name = "SCHEME:AUTH")]
    pub zk_auth: Vec<String>,
    /// etcd user on the source, USER:PASSWORD.
    #[arg(long, value_name = "USER:PASSWORD")]
    pub etcd_user: Option<String>,
    /// etcd user on Janus, USER:PASSWORD.
    #[arg(long, value_name = "USER:PASSWORD")]
    pub janus_etcd_user: Option<String>,
    /// Copy and verify, then stop, without following changes.
    #[arg(long)]
    pub once: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("nothing to migrate: give --from-zookeeper and/or --from-etcd")]
    NoSource,
    #[error("bad argument {0}")]
    BadArgument(String),
    #[error("ZooKeeper {side}: {source}")]
    Zk {
        side: &'static str,
        #[source]
        source: zookeeper_client::Error,
    },
    #[error("etcd {side}: {source}")]
    Etcd {
        side: &'static str,
        #[source]
        source: etcd_client::Error,
    },
    #[error("etcd source: {0}")]
    EtcdWatch(String),
}

pub type Result<T> = std::result::Result<T, Error>;

/// What one side holds, as compared.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Side {
    /// Znodes or keys.
    pub items: usize,
    /// etcd leases (0 for ZooKeeper).
    pub leases: usize,
    /// SHA-256 over the sorted items (path or key, data or value, ACL or
    /// lease).
    pub checksum: String,
}

/// The comparison of one source with Janus after cut-over.
#[derive(Debug, Clone)]
pub struct Part {
    pub name: &'static str,
    pub source: Side,
    pub janus: Side,
    /// Items the source has that are not copied on purpose (ephemerals).
    pub skipped: usize,
    /// Changes applied while following.
    pub followed: usize,
    /// The first differences found, if any.
    pub differences: Vec<String>,
}

impl Part {
    pub fn identical(&self) -> bool {
        self.differences.is_empty() && self.source == self.janus
    }
}

/// The final verification report.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub parts: Vec<Part>,
}

impl Report {
    pub fn identical(&self) -> bool {
        self.parts.iter().all(Part::identical)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "migration report")?;
        for p in &self.parts {
            let unit = if p.name == "zookeeper" {
                "znodes"
            } else {
                "keys"
            };
            let leases = |s: &Side| {
                if p.name == "etcd" {
                    format!(", {} leases", s.leases)
                } else {
                    String::new()
                }
            };
            writeln!(
                f,
                "  {:<9}  source: {} {unit}{}, checksum {}",
                p.name,
                p.source.items,
                leases(&p.source),
                p.source.checksum
            )?;
            writeln!(
                f,
                "  {:<9}  janus:  {} {unit}{}, checksum {}",
                "",
                p.janus.items,
                leases(&p.janus),
                p.janus.checksum
            )?;
            let skipped = if p.name == "zookeeper" {
                format!(", {} ephemeral znodes left to their sessions", p.skipped)
            } else {
                String::new()
            };
            writeln!(
                f,
                "  {:<9}  {} changes followed{skipped}: {}",
                "",
                p.followed,
                if p.identical() {
                    "identical"
                } else {
                    "DIFFERENT"
                }
            )?;
            for d in &p.differences {
                writeln!(f, "    {d}")?;
            }
        }
        writeln!(
            f,
            "result: {}",
            if self.identical() {
                "identical"
            } else {
                "DIFFERENT"
            }
        )
    }
}

/// SHA-256 of items already in a stable order, as hex.
pub(crate) fn checksum(items: impl Iterator<Item = Vec<u8>>) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for item in items {
        // Length-prefixed, so item boundaries count.
        h.update((item.len() as u64).to_be_bytes());
        h.update(&item);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// At most this many differences are listed.
pub(crate) const MAX_LISTED: usize = 20;

/// Copy, follow until SIGINT/SIGTERM (unless `once`), reconcile, verify.
pub async fn run(args: Args) -> Result<Report> {
    if args.from_zookeeper.is_none() && args.from_etcd.is_empty() {
        return Err(Error::NoSource);
    }
    let (cut_tx, cut_rx) = watch::channel(args.once);
    if !args.once {
        tokio::spawn(async move {
            wait_for_signal().await;
            eprintln!("cutting over: catching up, reconciling and verifying");
            let _ = cut_tx.send(true);
        });
    }
    let zk = async {
        match &args.from_zookeeper {
            Some(src) => {
                let auth = args
                    .zk_auth
                    .iter()
                    .map(|a| match a.split_once(':') {
                        Some((s, v)) => Ok((s.to_string(), v.as_bytes().to_vec())),
                        None => Err(Error::BadArgument(format!(
                            "--zk-auth {a}: want SCHEME:AUTH"
                        ))),
                    })
                    .collect::<Result<Vec<_>>>()?;
                zk::migrate(src, &args.to_zookeeper, &auth, cut_rx.clone())
                    .await
                    .map(Some)
            }
            None => Ok(None),
        }
    };
    let etcd = async {
        if args.from_etcd.is_empty() {
            return Ok(None);
        }
        let creds = |u: &Option<String>, flag: &str| -> Result<Option<(String, String)>> {
            match u {
                None => Ok(None),
                Some(u) => match u.split_once(':') {
                    Some((n, p)) => Ok(Some((n.to_string(), p.to_string()))),
                    None => Err(Error::BadArgument(format!(
                        "{flag} {u}: want USER:PASSWORD"
                    ))),
                },
            }
        };
        let opts = etcd::Options {
            source: args.from_etcd.clone(),
            target: args.to_etcd.clone(),
            prefix: args.prefix.clone().map(String::into_bytes),
            source_user: creds(&args.etcd_user, "--etcd-user")?,
            target_user: creds(&args.janus_etcd_user, "--janus-etcd-user")?,
        };
        etcd::migrate(opts, cut_rx.clone()).await.map(Some)
    };
    let (zk, etcd) = tokio::join!(zk, etcd);
    let mut report = Report::default();
    report.parts.extend(zk?);
    report.parts.extend(etcd?);
    Ok(report)
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut i), Ok(mut t)) => {
            tokio::select! {
                _ = i.recv() => {}
                _ = t.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_depends_on_boundaries_and_order() {
        let a = checksum([b"ab".to_vec(), b"c".to_vec()].into_iter());
        let b = checksum([b"a".to_vec(), b"bc".to_vec()].into_iter());
        let c = checksum([b"c".to_vec(), b"ab".to_vec()].into_iter());
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_eq!(a, checksum([b"ab".to_vec(), b"c".to_vec()].into_iter()));
        assert_eq!(a.len(), 64);
    }

    #[test]
    fn report_says_identical_only_when_all_parts_agree() {
        let side = Side {
            items: 2,
            leases: 0,
            checksum: "x".into(),
        };
        let mut part = Part {
            name: "zookeeper",
            source: side.clone(),
            janus: side.clone(),
            skipped: 0,
            followed: 3,
            differences: vec![],
        };
        let r = Report {
            parts: vec![part.clone()],
        };
        assert!(r.identical());
        assert!(r.to_string().contains("result: identical"));
        part.janus.items = 1;
        let r = Report { parts: vec![part] };
        assert!(!r.identical());
        assert!(r.to_string().contains("result: DIFFERENT"));
    }
}
