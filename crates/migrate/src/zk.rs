//! ZooKeeper → Janus. The source is watched (persistent, recursive) before
//! it is read, so a change made during the copy is seen afterwards. An
//! event only names a path: the path is re-read from the source and made
//! the same in Janus, which converges whatever order events come in.
//!
//! Znodes are created open (world:anyone:cdrwa) and get their own ACLs at
//! cut-over, deepest first: a restrictive ACL copied early would stop the
//! migration from creating children under it. ZooKeeper sends no event for
//! setACL, so ACLs are taken from the final read anyway.
//!
//! Sequential names come from the number of children ever created under
//! the parent, which no client op sets: at cut-over it is raised in Janus
//! to the source's with create+delete pairs of a scratch child, so the next
//! sequential name in Janus is the one the source would have given. Kafka
//! relies on this: its notification sequences (config changes, ISR
//! changes) must keep increasing across the move.
//!
//! Containers and TTL nodes arrive as persistent znodes: ZooKeeper's client
//! protocol does not tell them apart (their ephemeralOwner reads 0).

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::sync::watch;
use zookeeper_client as zk;
use zookeeper_client::{Acls, AddWatchMode, CreateMode, EventType, Permission};

use crate::progress::Progress;
use crate::{checksum, Error, Part, Result, Side, MAX_LISTED};

/// (perms, scheme, id), in the znode's order.
type Acl = (i32, String, String);

#[derive(Debug, Clone, PartialEq, Eq)]
struct Node {
    data: Vec<u8>,
    acl: Vec<Acl>,
    /// Children ever created here: the counter sequential names come
    /// from. ZooKeeper's Stat shows `cversion = 2 * creates - numChildren`
    /// (creates and deletes both count there).
    creates: i64,
}

#[derive(Debug, Default)]
struct Tree {
    nodes: BTreeMap<String, Node>,
    ephemerals: usize,
    /// Paths this client may not read (NOAUTH).
    unreadable: Vec<String>,
}

enum Read {
    Gone,
    Ephemeral,
    NoAuth,
    Node(Node, Vec<String>),
}

const CONCURRENCY: usize = 256;
/// Depth guard for ancestors made on demand.
const MAX_DEPTH: usize = 1000;

fn zerr(side: &'static str) -> impl Fn(zk::Error) -> Error {
    move |source| Error::Zk { side, source }
}

/// Split `HOST:PORT[,...][/PATH]` into the hosts and the root path.
pub(crate) fn split_source(src: &str) -> Result<(String, String)> {
    let (hosts, root) = match src.find('/') {
        Some(i) => (&src[..i], &src[i..]),
        None => (src, "/"),
    };
    if hosts.is_empty() {
        return Err(Error::BadArgument(format!(
            "--from-zookeeper {src}: want HOST:PORT[,HOST:PORT...][/PATH]"
        )));
    }
    let root = if root.len() > 1 {
        root.trim_end_matches('/')
    } else {
        root
    };
    if root.contains("//") || root.split('/').any(|c| c == "." || c == "..") {
        return Err(Error::BadArgument(format!(
            "--from-zookeeper {src}: bad path"
        )));
    }
    Ok((hosts.to_string(), root.to_string()))
}

fn child_path(parent: &str, child: &str) -> String {
    if parent == "/" {
        format!("/{child}")
    } else {
        format!("{parent}/{child}")
    }
}

fn depth(path: &str) -> usize {
    if path == "/" {
        0
    } else {
        path.matches('/').count()
    }
}

fn perm_bits(p: Permission) -> i32 {
    [
        (Permission::READ, 1),
        (Permission::WRITE, 2),
        (Permission::CREATE, 4),
        (Permission::DELETE, 8),
        (Permission::ADMIN, 16),
    ]
    .into_iter()
    .filter(|(q, _)| p.has(*q))
    .map(|(_, b)| b)
    .sum()
}

fn permission(bits: i32) -> Permission {
    [
        (Permission::READ, 1),
        (Permission::WRITE, 2),
        (Permission::CREATE, 4),
        (Permission::DELETE, 8),
        (Permission::ADMIN, 16),
    ]
    .into_iter()
    .filter(|(_, b)| bits & b != 0)
    .fold(Permission::NONE, |acc, (q, _)| acc | q)
}

fn to_zk_acl(a: &Acl) -> zk::Acl {
    zk::Acl::new(permission(a.0), zk::AuthId::new(&a.1, &a.2))
}

async fn connect(addr: &str, auth: &[(String, Vec<u8>)], side: &'static str) -> Result<zk::Client> {
    let mut c = zk::Client::connector().with_session_timeout(Duration::from_secs(30));
    for (scheme, a) in auth {
        c = c.with_auth(scheme, a);
    }
    c.connect(addr).await.map_err(zerr(side))
}

async fn read_node(c: &zk::Client, path: &str) -> std::result::Result<Read, zk::Error> {
    let (data, stat) = match c.get_data(path).await {
        Ok(x) => x,
        Err(zk::Error::NoNode) => return Ok(Read::Gone),
        Err(zk::Error::NoAuth) => return Ok(Read::NoAuth),
        Err(e) => return Err(e),
    };
    if stat.ephemeral_owner != 0 {
        return Ok(Read::Ephemeral);
    }
    let acl = match c.get_acl(path).await {
        Ok((acl, _)) => acl
            .iter()
            .map(|a| {
                (
                    perm_bits(a.permission()),
                    a.scheme().to_string(),
                    a.id().to_string(),
                )
            })
            .collect(),
        Err(zk::Error::NoNode) => return Ok(Read::Gone),
        Err(e) => return Err(e),
    };
    let children = if stat.num_children > 0 {
        match c.list_children(path).await {
            Ok(c) => c,
            Err(zk::Error::NoNode) => return Ok(Read::Gone),
            Err(zk::Error::NoAuth) => return Ok(Read::NoAuth),
            Err(e) => return Err(e),
        }
    } else {
        Vec::new()
    };
    Ok(Read::Node(
        Node {
            data,
            acl,
            creates: (stat.cversion as i64 + stat.num_children as i64) / 2,
        },
        children,
    ))
}

/// The tree under `root`, level by level with many reads in flight;
/// `/zookeeper` (the server's own nodes) left out.
async fn read_tree(c: &zk::Client, root: &str, side: &'static str) -> Result<Tree> {
    let mut tree = Tree::default();
    let mut level = vec![root.to_string()];
    while !level.is_empty() {
        let mut next = Vec::new();
        for chunk in level.chunks(CONCURRENCY) {
            let reads = futures::future::join_all(chunk.iter().map(|p| read_node(c, p))).await;
            for (p, r) in chunk.iter().zip(reads) {
                match r.map_err(zerr(side))? {
                    Read::Gone => {}
                    Read::Ephemeral => tree.ephemerals += 1,
                    Read::NoAuth => tree.unreadable.push(p.clone()),
                    Read::Node(node, children) => {
                        next.extend(
                            children
                                .iter()
                                .map(|ch| child_path(p, ch))
                                .filter(|cp| cp != "/zookeeper"),
                        );
                        tree.nodes.insert(p.clone(), node);
                    }
                }
            }
        }
        level = next;
    }
    Ok(tree)
}

/// Make `path` exist in Janus with `data` (ACLs come at cut-over).
async fn put_node(t: &zk::Client, path: &str, n: &Node) -> std::result::Result<(), zk::Error> {
    let data = &n.data[..];
    if path != "/" {
        let open = CreateMode::Persistent.with_acls(Acls::anyone_all());
        match t.create(path, data, &open).await {
            Ok(_) => return Ok(()),
            Err(zk::Error::NodeExists) => {}
            Err(e) => return Err(e),
        }
    }
    let (cur, _) = t.get_data(path).await?;
    if cur != data {
        t.set_data(path, data, None).await?;
    }
    Ok(())
}

/// Delete `path` and everything under it in Janus (deepest first).
async fn delete_tree(t: &zk::Client, path: &str) -> std::result::Result<(), zk::Error> {
    if path == "/" {
        return Ok(());
    }
    let mut all = vec![path.to_string()];
    let mut i = 0;
    while i < all.len() {
        match t.list_children(&all[i]).await {
            Ok(children) => {
                let p = all[i].clone();
                all.extend(children.iter().map(|c| child_path(&p, c)));
            }
            Err(zk::Error::NoNode) => {}
            Err(e) => return Err(e),
        }
        i += 1;
    }
    all.sort_by_key(|p| std::cmp::Reverse(depth(p)));
    for p in all {
        match t.delete(&p, None).await {
            Ok(()) | Err(zk::Error::NoNode) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Make `path` in Janus what it is in the source now.
async fn resync(src: &zk::Client, t: &zk::Client, root: &str, path: &str) -> Result<()> {
    if !path.starts_with(root) || path == "/zookeeper" || path.starts_with("/zookeeper/") {
        return Ok(());
    }
    match read_node(src, path).await.map_err(zerr("source"))? {
        Read::Gone => delete_tree(t, path).await.map_err(zerr("janus")),
        Read::Ephemeral | Read::NoAuth => Ok(()),
        Read::Node(node, _) => match put_node(t, path, &node).await {
            Err(zk::Error::NoNode) => {
                // The parent is missing in Janus (its event is still to
                // come, or was coalesced): make the ancestors first.
                let mut ancestors = Vec::new();
                let mut p = path;
                while let Some(i) = p.rfind('/') {
                    p = if i == 0 { "/" } else { &p[..i] };
                    if p.len() < root.len() || ancestors.len() > MAX_DEPTH {
                        break;
                    }
                    ancestors.push(p.to_string());
                    if p == "/" {
                        break;
                    }
                }
                for a in ancestors.iter().rev() {
                    if let Read::Node(n, _) = read_node(src, a).await.map_err(zerr("source"))? {
                        put_node(t, a, &n).await.map_err(zerr("janus"))?;
                    }
                }
                match put_node(t, path, &node).await {
                    Ok(()) | Err(zk::Error::NoNode) => Ok(()),
                    Err(e) => Err(zerr("janus")(e)),
                }
            }
            r => r.map_err(zerr("janus")),
        },
    }
}

/// Make Janus's tree equal to `s` (the source's, just read), ACLs included.
async fn reconcile(t: &zk::Client, root: &str, s: &Tree) -> Result<()> {
    let j = read_tree(t, root, "janus").await?;
    let mut missing: Vec<(&String, &Node)> = s
        .nodes
        .iter()
        .filter(|(p, n)| j.nodes.get(*p).map(|m| &m.data) != Some(&n.data))
        .collect();
    missing.sort_by_key(|(p, _)| depth(p));
    for (p, n) in missing {
        put_node(t, p, n).await.map_err(zerr("janus"))?;
    }
    let mut extra: Vec<&String> = j
        .nodes
        .keys()
        .filter(|p| !s.nodes.contains_key(*p))
        .collect();
    extra.sort_by_key(|p| std::cmp::Reverse(depth(p)));
    for p in extra {
        delete_tree(t, p).await.map_err(zerr("janus"))?;
    }
    // Creates above moved cversions: read them again, then match them
    // before the ACLs (a copied ACL may forbid our scratch child).
    let j = read_tree(t, root, "janus").await?;
    for (p, n) in &s.nodes {
        if let Some(m) = j.nodes.get(p) {
            raise_creates(t, p, m.creates, n.creates).await?;
        }
    }
    let mut acls: Vec<(&String, &Node)> = s
        .nodes
        .iter()
        .filter(|(p, n)| j.nodes.get(*p).map(|m| &m.acl) != Some(&n.acl))
        .collect();
    acls.sort_by_key(|(p, _)| std::cmp::Reverse(depth(p)));
    for (p, n) in acls {
        let acl: Vec<zk::Acl> = n.acl.iter().map(to_zk_acl).collect();
        t.set_acl(p, &acl, None).await.map_err(zerr("janus"))?;
    }
    Ok(())
}

/// The scratch child whose create+delete pairs raise a cversion.
const SCRATCH: &str = "janus-migrate-cversion";
/// Pairs in one multi (two ops each, well under jute.maxbuffer).
const PAIRS_PER_MULTI: i32 = 500;
/// Past this gap the cversion is left and reported (a billion creates
/// would take hours).
const MAX_CREATES_GAP: i64 = 50_000_000;

/// Raise the number of children ever created under `path` in Janus from
/// `have` to `want`: each create+delete pair of the scratch child adds one.
async fn raise_creates(t: &zk::Client, path: &str, have: i64, want: i64) -> Result<()> {
    let gap = want - have;
    if gap <= 0 || gap > MAX_CREATES_GAP {
        return Ok(());
    }
    let scratch = child_path(path, SCRATCH);
    let open = CreateMode::Persistent.with_acls(Acls::anyone_all());
    let mut left = gap as i32;
    while left > 0 {
        let n = left.min(PAIRS_PER_MULTI);
        let mut m = t.new_multi_writer();
        for _ in 0..n {
            m.add_create(&scratch, b"", &open)
                .and_then(|()| m.add_delete(&scratch, None))
                .map_err(zerr("janus"))?;
        }
        match m.commit().await {
            Ok(_) => {}
            // A container reaped meanwhile, or an ACL in the way: the
            // comparison reports it.
            Err(zk::MultiWriteError::OperationFailed { .. }) => return Ok(()),
            Err(zk::MultiWriteError::RequestFailed { source }) => {
                return Err(zerr("janus")(source))
            }
        }
        left -= n;
    }
    Ok(())
}

fn side_of(tree: &Tree) -> Side {
    Side {
        items: tree.nodes.len(),
        leases: 0,
        checksum: checksum(tree.nodes.iter().map(|(p, n)| item_bytes(p, n))),
    }
}

fn item_bytes(path: &str, n: &Node) -> Vec<u8> {
    let mut b = Vec::with_capacity(path.len() + n.data.len() + 32);
    b.extend_from_slice(path.as_bytes());
    b.push(0);
    b.extend_from_slice(&(n.data.len() as u64).to_be_bytes());
    b.extend_from_slice(&n.data);
    for (perms, scheme, id) in &n.acl {
        b.extend_from_slice(format!("{perms}:{scheme}:{id};").as_bytes());
    }
    b
}

fn differences(s: &Tree, j: &Tree) -> Vec<String> {
    let mut d: Vec<String> = s
        .unreadable
        .iter()
        .map(|p| format!("{p}: not readable by the migration (give --zk-auth)"))
        .collect();
    for (p, n) in &s.nodes {
        match j.nodes.get(p) {
            None => d.push(format!("{p}: missing in Janus")),
            Some(m) if m.data != n.data => d.push(format!("{p}: data differs")),
            Some(m) if m.acl != n.acl => d.push(format!("{p}: ACL differs")),
            Some(m) if m.creates < n.creates => d.push(format!(
                "{p}: {} children created, the source {} (sequential names would repeat)",
                m.creates, n.creates
            )),
            Some(_) => {}
        }
        if d.len() >= MAX_LISTED {
            return d;
        }
    }
    for p in j.nodes.keys().filter(|p| !s.nodes.contains_key(*p)) {
        d.push(format!("{p}: only in Janus"));
        if d.len() >= MAX_LISTED {
            break;
        }
    }
    d
}

/// Copy `src` (HOST:PORT[,...][/PATH]) into Janus at `target`, follow it
/// until `cut` turns true, then reconcile and compare.
pub async fn migrate(
    src: &str,
    target: &str,
    auth: &[(String, Vec<u8>)],
    mut cut: watch::Receiver<bool>,
) -> Result<Part> {
    let (hosts, root) = split_source(src)?;
    let s = connect(&hosts, auth, "source").await?;
    let t = connect(target, auth, "janus").await?;
    let mut watcher = s
        .watch(&root, AddWatchMode::PersistentRecursive)
        .await
        .map_err(zerr("source"))?;
    if root != "/" {
        if let Some(i) = root.rfind('/').filter(|i| *i > 0) {
            let open = CreateMode::Persistent.with_acls(Acls::anyone_all());
            t.mkdir(&root[..i], &open).await.map_err(zerr("janus"))?;
        }
    }

    let tree = read_tree(&s, &root, "source").await?;
    let mut by_depth: BTreeMap<usize, Vec<(&String, &Node)>> = BTreeMap::new();
    for (p, n) in &tree.nodes {
        by_depth.entry(depth(p)).or_default().push((p, n));
    }
    let mut progress = Progress::new("zookeeper: copying znodes", tree.nodes.len());
    for level in by_depth.values() {
        for chunk in level.chunks(CONCURRENCY) {
            let puts = futures::future::join_all(chunk.iter().map(|(p, n)| put_node(&t, p, n)));
            for r in puts.await {
                match r {
                    // Deleted in the source meanwhile; its event follows.
                    Ok(()) | Err(zk::Error::NoNode) => {}
                    Err(e) => return Err(zerr("janus")(e)),
                }
            }
            progress.inc(chunk.len());
        }
    }
    progress.finish();
    drop(by_depth);

    let mut followed = 0usize;
    if !*cut.borrow() {
        eprintln!("zookeeper: following {hosts}{root}; SIGINT or SIGTERM cuts over");
    }
    loop {
        if *cut.borrow() {
            break;
        }
        tokio::select! {
            ev = watcher.changed() => {
                followed += handle(&s, &t, &root, ev).await?;
            }
            _ = cut.changed() => {}
        }
    }
    // Every change committed before the sync has its event queued before
    // the sync's reply; take them, then reconcile from a fresh read.
    s.sync(&root).await.map_err(zerr("source"))?;
    while let Ok(ev) = tokio::time::timeout(Duration::from_millis(300), watcher.changed()).await {
        followed += handle(&s, &t, &root, ev).await?;
    }
    let source = read_tree(&s, &root, "source").await?;
    reconcile(&t, &root, &source).await?;
    let janus = read_tree(&t, &root, "janus").await?;
    Ok(Part {
        name: "zookeeper",
        source: side_of(&source),
        janus: side_of(&janus),
        skipped: source.ephemerals,
        followed,
        differences: differences(&source, &janus),
    })
}

async fn handle(s: &zk::Client, t: &zk::Client, root: &str, ev: zk::WatchedEvent) -> Result<usize> {
    match ev.event_type {
        EventType::Session => {
            if ev.session_state.is_terminated() {
                return Err(Error::Zk {
                    side: "source",
                    source: zk::Error::SessionExpired,
                });
            }
            Ok(0)
        }
        _ => {
            resync(s, t, root, &ev.path).await?;
            Ok(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_strings_split_into_hosts_and_root() {
        assert_eq!(
            split_source("a:1,b:2").unwrap(),
            ("a:1,b:2".to_string(), "/".to_string())
        );
        assert_eq!(
            split_source("a:1/kafka/").unwrap(),
            ("a:1".to_string(), "/kafka".to_string())
        );
        assert!(split_source("/x").is_err());
        assert!(split_source("a:1/x/../y").is_err());
    }

    #[test]
    fn permissions_round_trip() {
        for bits in 0..32 {
            assert_eq!(perm_bits(permission(bits)), bits);
        }
    }

    #[test]
    fn paths_and_depths() {
        assert_eq!(child_path("/", "a"), "/a");
        assert_eq!(child_path("/a", "b"), "/a/b");
        assert_eq!(depth("/"), 0);
        assert_eq!(depth("/a/b"), 2);
    }
}
