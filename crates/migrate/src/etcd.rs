//! etcd → Janus. Keys are read at one revision R, leases re-created under
//! their own ids, then a watch from R+1 replays every later change in
//! order. At cut-over the watch is caught up to the source's revision of
//! that moment, both sides are read, differences fixed, and compared.
//!
//! A lease is re-created with its granted TTL, not its remaining one, and
//! kept alive in Janus for as long as it lives in the source: granted the
//! remainder, every keep-alive after cut-over would renew it to that
//! remainder only. This matches what etcd itself does when a new leader
//! takes over (leases restart at their full TTL).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use etcd_client::{
    Client, ConnectOptions, DeleteOptions, EventType, GetOptions, LeaseGrantOptions, PutOptions,
    WatchOptions,
};
use futures::StreamExt;
use tokio::sync::watch;

use crate::progress::Progress;
use crate::{checksum, Error, Part, Result, Side, MAX_LISTED};

pub struct Options {
    pub source: Vec<String>,
    pub target: Vec<String>,
    pub prefix: Option<Vec<u8>>,
    pub source_user: Option<(String, String)>,
    pub target_user: Option<(String, String)>,
}

/// key -> (value, lease)
type Kvs = BTreeMap<Vec<u8>, (Vec<u8>, i64)>;

const PAGE: i64 = 1000;
const CONCURRENCY: usize = 64;
/// How often leases are checked in the source and renewed in Janus.
const LEASE_TICK: Duration = Duration::from_secs(1);

fn eerr(side: &'static str) -> impl Fn(etcd_client::Error) -> Error {
    move |source| Error::Etcd { side, source }
}

/// The key range a prefix names (all keys without one).
pub(crate) fn key_range(prefix: &Option<Vec<u8>>) -> (Vec<u8>, Vec<u8>) {
    match prefix {
        None => (vec![0], vec![0]),
        Some(p) if p.is_empty() => (vec![0], vec![0]),
        Some(p) => {
            let mut end = p.clone();
            while let Some(last) = end.pop() {
                if last < 0xff {
                    end.push(last + 1);
                    return (p.clone(), end);
                }
            }
            (p.clone(), vec![0])
        }
    }
}

async fn connect(
    eps: &[String],
    user: &Option<(String, String)>,
    side: &'static str,
) -> Result<Client> {
    let mut opts = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(10))
        .with_timeout(Duration::from_secs(30));
    if let Some((u, p)) = user {
        opts = opts.with_user(u.clone(), p.clone());
    }
    Client::connect(eps, Some(opts)).await.map_err(eerr(side))
}

/// Every key in `range` at one revision (the first page's), and that revision.
async fn read_all(
    c: &mut Client,
    range: &(Vec<u8>, Vec<u8>),
    side: &'static str,
) -> Result<(i64, Kvs)> {
    let mut kvs = Kvs::new();
    let mut key = range.0.clone();
    let mut rev = 0;
    loop {
        let mut opts = GetOptions::new()
            .with_range(range.1.clone())
            .with_limit(PAGE);
        if rev > 0 {
            opts = opts.with_revision(rev);
        }
        let resp = c.get(key.clone(), Some(opts)).await.map_err(eerr(side))?;
        if rev == 0 {
            rev = resp.header().map_or(0, |h| h.revision());
        }
        for kv in resp.kvs() {
            kvs.insert(kv.key().to_vec(), (kv.value().to_vec(), kv.lease()));
        }
        match resp.kvs().last() {
            Some(last) if resp.more() => {
                key = last.key().to_vec();
                key.push(0);
            }
            _ => return Ok((rev, kvs)),
        }
    }
}

async fn lease_ids(c: &mut Client, side: &'static str) -> Result<BTreeSet<i64>> {
    let resp = c.leases().await.map_err(eerr(side))?;
    Ok(resp.leases().iter().map(|l| l.id()).collect())
}

async fn current_revision(c: &mut Client, range: &(Vec<u8>, Vec<u8>)) -> Result<i64> {
    let resp = c
        .get(
            range.0.clone(),
            Some(
                GetOptions::new()
                    .with_range(range.1.clone())
                    .with_count_only(),
            ),
        )
        .await
        .map_err(eerr("source"))?;
    Ok(resp.header().map_or(0, |h| h.revision()))
}

struct Mover {
    s: Client,
    t: Client,
    /// Leases made in Janus by this migration.
    leases: BTreeSet<i64>,
}

impl Mover {
    /// Make lease `id` exist in Janus if it lives in the source. False if
    /// it has expired there (the key's delete event follows).
    async fn ensure_lease(&mut self, id: i64) -> Result<bool> {
        if id == 0 || self.leases.contains(&id) {
            return Ok(true);
        }
        let ttl = self
            .s
            .lease_time_to_live(id, None)
            .await
            .map_err(eerr("source"))?;
        if ttl.ttl() <= 0 {
            return Ok(false);
        }
        match self
            .t
            .lease_grant(
                ttl.granted_ttl(),
                Some(LeaseGrantOptions::new().with_id(id)),
            )
            .await
        {
            Ok(_) => {}
            Err(e) if e.to_string().contains("lease already exists") => {}
            Err(e) => return Err(eerr("janus")(e)),
        }
        self.leases.insert(id);
        Ok(true)
    }

    async fn put(&mut self, key: Vec<u8>, value: Vec<u8>, lease: i64) -> Result<()> {
        let opts = if lease != 0 && self.ensure_lease(lease).await? {
            Some(PutOptions::new().with_lease(lease))
        } else {
            None
        };
        self.t.put(key, value, opts).await.map_err(eerr("janus"))?;
        Ok(())
    }

    async fn delete(&mut self, key: Vec<u8>) -> Result<()> {
        self.t
            .delete(key, None::<DeleteOptions>)
            .await
            .map_err(eerr("janus"))?;
        Ok(())
    }

    /// Renew in Janus the leases alive in the source; revoke the others.
    async fn tend_leases(&mut self) -> Result<()> {
        let ids: Vec<i64> = self.leases.iter().copied().collect();
        for id in ids {
            let ttl = self
                .s
                .lease_time_to_live(id, None)
                .await
                .map_err(eerr("source"))?;
            if ttl.ttl() <= 0 {
                self.leases.remove(&id);
                // Already gone in Janus is fine.
                let _ = self.t.lease_revoke(id).await;
                continue;
            }
            if let Ok((mut keeper, mut stream)) = self.t.lease_keep_alive(id).await {
                if keeper.keep_alive().await.is_ok() {
                    let _ = stream.message().await;
                }
            }
        }
        Ok(())
    }
}

fn side_of(kvs: &Kvs, leases: usize) -> Side {
    Side {
        items: kvs.len(),
        leases,
        checksum: checksum(kvs.iter().map(|(k, (v, l))| {
            let mut b = Vec::with_capacity(k.len() + v.len() + 24);
            b.extend_from_slice(&(k.len() as u64).to_be_bytes());
            b.extend_from_slice(k);
            b.extend_from_slice(&(v.len() as u64).to_be_bytes());
            b.extend_from_slice(v);
            b.extend_from_slice(&l.to_be_bytes());
            b
        })),
    }
}

fn show(key: &[u8]) -> String {
    String::from_utf8_lossy(key).into_owned()
}

fn differences(s: &Kvs, j: &Kvs, sl: &BTreeSet<i64>, jl: &BTreeSet<i64>) -> Vec<String> {
    let mut d = Vec::new();
    for (k, (v, l)) in s {
        match j.get(k) {
            None => d.push(format!("{}: missing in Janus", show(k))),
            Some((w, _)) if w != v => d.push(format!("{}: value differs", show(k))),
            Some((_, m)) if m != l => d.push(format!("{}: lease differs", show(k))),
            Some(_) => {}
        }
        if d.len() >= MAX_LISTED {
            return d;
        }
    }
    for k in j.keys().filter(|k| !s.contains_key(*k)) {
        d.push(format!("{}: only in Janus", show(k)));
        if d.len() >= MAX_LISTED {
            return d;
        }
    }
    for id in sl.symmetric_difference(jl) {
        let side = if sl.contains(id) {
            "missing in Janus"
        } else {
            "only in Janus"
        };
        d.push(format!("lease {id:x}: {side}"));
        if d.len() >= MAX_LISTED {
            break;
        }
    }
    d
}

pub async fn migrate(o: Options, mut cut: watch::Receiver<bool>) -> Result<Part> {
    let range = key_range(&o.prefix);
    let s = connect(&o.source, &o.source_user, "source").await?;
    let t = connect(&o.target, &o.target_user, "janus").await?;
    let mut m = Mover {
        s,
        t,
        leases: BTreeSet::new(),
    };

    let (rev, kvs) = read_all(&mut m.s, &range, "source").await?;
    for id in lease_ids(&mut m.s, "source").await? {
        m.ensure_lease(id).await?;
    }
    let mut progress = Progress::new("etcd: copying keys", kvs.len());
    let mut puts = futures::stream::iter(kvs.into_iter().map(|(k, (v, lease))| {
        let mut t = m.t.clone();
        let with_lease = lease != 0 && m.leases.contains(&lease);
        async move {
            let opts = with_lease.then(|| PutOptions::new().with_lease(lease));
            t.put(k, v, opts).await
        }
    }))
    .buffer_unordered(CONCURRENCY);
    while let Some(r) = puts.next().await {
        r.map_err(eerr("janus"))?;
        progress.inc(1);
    }
    drop(puts);
    progress.finish();

    // Everything after R, in order.
    let mut stream =
        m.s.watch(
            range.0.clone(),
            Some(
                WatchOptions::new()
                    .with_range(range.1.clone())
                    .with_start_revision(rev + 1),
            ),
        )
        .await
        .map_err(eerr("source"))?;
    if !*cut.borrow() {
        eprintln!(
            "etcd: following {} from revision {}; SIGINT or SIGTERM cuts over",
            o.source.join(","),
            rev + 1
        );
    }
    let mut followed = 0usize;
    let mut seen = rev;
    let mut tick = tokio::time::interval(LEASE_TICK);
    let mut target: Option<i64> = None;
    let mut give_up = None;
    loop {
        if target.is_none() && *cut.borrow() {
            let r = current_revision(&mut m.s, &range).await?;
            if r <= seen {
                break;
            }
            target = Some(r);
            give_up = Some(tokio::time::Instant::now() + Duration::from_secs(30));
            stream.request_progress().await.map_err(eerr("source"))?;
        }
        if let (Some(r), Some(g)) = (target, give_up) {
            if seen >= r || tokio::time::Instant::now() >= g {
                break;
            }
        }
        tokio::select! {
            msg = stream.message() => {
                let Some(resp) = msg.map_err(eerr("source"))? else {
                    return Err(Error::EtcdWatch("the watch stream ended".into()));
                };
                if resp.canceled() {
                    return Err(Error::EtcdWatch(if resp.compact_revision() > 0 {
                        format!("revision {} was compacted during the copy; run the migration again", resp.compact_revision())
                    } else {
                        format!("watch canceled: {}", resp.cancel_reason())
                    }));
                }
                for ev in resp.events() {
                    let Some(kv) = ev.kv() else { continue };
                    match ev.event_type() {
                        EventType::Put => m.put(kv.key().to_vec(), kv.value().to_vec(), kv.lease()).await?,
                        EventType::Delete => m.delete(kv.key().to_vec()).await?,
                    }
                    seen = seen.max(kv.mod_revision());
                    followed += 1;
                }
                if let Some(h) = resp.header() {
                    seen = seen.max(h.revision());
                }
                if target.is_some() && resp.events().is_empty() {
                    // A progress answer; ask again until caught up.
                    stream.request_progress().await.map_err(eerr("source"))?;
                }
            }
            _ = tick.tick() => m.tend_leases().await?,
            _ = cut.changed(), if target.is_none() => {}
            _ = tokio::time::sleep(Duration::from_millis(200)), if target.is_some() => {
                stream.request_progress().await.map_err(eerr("source"))?;
            }
        }
    }

    // Reconcile from fresh reads of both sides, then compare.
    let (_, src) = read_all(&mut m.s, &range, "source").await?;
    let (_, jan) = read_all(&mut m.t, &range, "janus").await?;
    for id in lease_ids(&mut m.s, "source").await? {
        m.ensure_lease(id).await?;
    }
    for (k, (v, l)) in &src {
        if jan.get(k) != Some(&(v.clone(), *l)) {
            m.put(k.clone(), v.clone(), *l).await?;
        }
    }
    for k in jan.keys().filter(|k| !src.contains_key(*k)) {
        m.delete(k.clone()).await?;
    }
    let src_leases = lease_ids(&mut m.s, "source").await?;
    for id in lease_ids(&mut m.t, "janus").await? {
        if m.leases.contains(&id) && !src_leases.contains(&id) {
            let _ = m.t.lease_revoke(id).await;
        }
    }
    let (_, src) = read_all(&mut m.s, &range, "source").await?;
    let (_, jan) = read_all(&mut m.t, &range, "janus").await?;
    let src_leases = lease_ids(&mut m.s, "source").await?;
    let jan_leases = lease_ids(&mut m.t, "janus").await?;
    Ok(Part {
        name: "etcd",
        source: side_of(&src, src_leases.len()),
        janus: side_of(&jan, jan_leases.len()),
        skipped: 0,
        followed,
        differences: differences(&src, &jan, &src_leases, &jan_leases),
    })
}

#[cfg(test)]
mod tests {
    use super::key_range;

    #[test]
    fn prefixes_become_ranges() {
        assert_eq!(key_range(&None), (vec![0], vec![0]));
        assert_eq!(
            key_range(&Some(b"a".to_vec())),
            (b"a".to_vec(), b"b".to_vec())
        );
        assert_eq!(
            key_range(&Some(vec![b'a', 0xff])),
            (vec![b'a', 0xff], b"b".to_vec())
        );
        assert_eq!(key_range(&Some(vec![0xff])), (vec![0xff], vec![0]));
    }
}
