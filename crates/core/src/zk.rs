//! The ZNode tree: ZooKeeper's data model with its exact Stat update rules.
//!
//! Rules follow ZooKeeper 3.8/3.9 `PrepRequestProcessor` and `DataTree`:
//! create bumps the parent's cversion and pzxid; delete bumps only the
//! parent's pzxid; sequential names take the parent's cversion as a
//! ten-digit suffix; a failed txn still takes a zxid.

use serde::{Deserialize, Serialize};

use crate::command::{ZkOp, ZkOpResult, ZkResponse};
use crate::error::ZkError;
use crate::event::Event;
use crate::state::{decode, encode, State};
use crate::store::{prefix_end, Table};

/// `ephemeralOwner` of a container node (`Long.MIN_VALUE`).
pub const CONTAINER_OWNER: i64 = i64::MIN;
/// Top byte of `ephemeralOwner` marking a TTL node; the low bits hold the TTL.
pub const TTL_OWNER_MASK: u64 = 0xFF00_0000_0000_0000;
/// Largest TTL ZooKeeper accepts (`EphemeralType.MAX_EXTENDED_SERVER_ID` bits).
pub const MAX_TTL_MS: i64 = 0xFF_FFFF_FFFF;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Id {
    pub scheme: String,
    pub id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Acl {
    pub perms: i32,
    pub id: Id,
}

impl Acl {
    /// `ZooDefs.Ids.READ_ACL_UNSAFE`.
    pub fn read_unsafe() -> Vec<Acl> {
        vec![Acl {
            perms: perms::READ,
            id: Id {
                scheme: "world".into(),
                id: "anyone".into(),
            },
        }]
    }

    /// `ZooDefs.Ids.OPEN_ACL_UNSAFE`.
    pub fn open_unsafe() -> Vec<Acl> {
        vec![Acl {
            perms: perms::ALL,
            id: Id {
                scheme: "world".into(),
                id: "anyone".into(),
            },
        }]
    }
}

/// `ZooDefs.Perms`.
pub mod perms {
    pub const READ: i32 = 1;
    pub const WRITE: i32 = 2;
    pub const CREATE: i32 = 4;
    pub const DELETE: i32 = 8;
    pub const ADMIN: i32 = 16;
    pub const ALL: i32 = 31;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CreateMode {
    Persistent,
    Ephemeral,
    PersistentSequential,
    EphemeralSequential,
    Container,
    PersistentWithTtl,
    PersistentSequentialWithTtl,
    /// A container with a sequence suffix: what `createContainer` makes
    /// when its flags ask for a sequential node (no wire flag of its own).
    ContainerSequential,
}

impl CreateMode {
    /// From ZooKeeper's wire flag; `None` for an unknown flag (BADARGUMENTS).
    pub fn from_flag(flag: i32) -> Option<CreateMode> {
        Some(match flag {
            0 => CreateMode::Persistent,
            1 => CreateMode::Ephemeral,
            2 => CreateMode::PersistentSequential,
            3 => CreateMode::EphemeralSequential,
            4 => CreateMode::Container,
            5 => CreateMode::PersistentWithTtl,
            6 => CreateMode::PersistentSequentialWithTtl,
            _ => return None,
        })
    }
    pub fn flag(self) -> i32 {
        match self {
            CreateMode::ContainerSequential => CreateMode::Container as i32,
            m => m as i32,
        }
    }
    pub fn is_sequential(self) -> bool {
        matches!(
            self,
            CreateMode::PersistentSequential
                | CreateMode::EphemeralSequential
                | CreateMode::PersistentSequentialWithTtl
                | CreateMode::ContainerSequential
        )
    }
    pub fn is_ephemeral(self) -> bool {
        matches!(
            self,
            CreateMode::Ephemeral | CreateMode::EphemeralSequential
        )
    }
    pub fn is_ttl(self) -> bool {
        matches!(
            self,
            CreateMode::PersistentWithTtl | CreateMode::PersistentSequentialWithTtl
        )
    }
}

/// ZooKeeper's `Stat`, all eleven fields as the client sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Stat {
    pub czxid: i64,
    pub mzxid: i64,
    pub ctime: i64,
    pub mtime: i64,
    pub version: i32,
    pub cversion: i32,
    pub aversion: i32,
    pub ephemeral_owner: i64,
    pub data_length: i32,
    pub num_children: i32,
    pub pzxid: i64,
}

/// What kind of node an `ephemeralOwner` value denotes (`EphemeralType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    Persistent,
    Ephemeral(i64),
    Container,
    Ttl(i64),
}

impl NodeKind {
    pub fn of_owner(owner: i64) -> NodeKind {
        if owner == 0 {
            NodeKind::Persistent
        } else if owner == CONTAINER_OWNER {
            NodeKind::Container
        } else if (owner as u64) & TTL_OWNER_MASK == TTL_OWNER_MASK {
            NodeKind::Ttl(((owner as u64) & !TTL_OWNER_MASK) as i64)
        } else {
            NodeKind::Ephemeral(owner)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZNode {
    /// `None` is Java's null: a node created or set with null data reads
    /// back as null (length -1 on the wire), unlike an empty array.
    #[serde(with = "serde_bytes")]
    pub data: Option<Vec<u8>>,
    pub acl: Vec<Acl>,
    /// `data_length` and `num_children` are kept current on every change.
    pub stat: Stat,
}

impl ZNode {
    /// The data as bytes, null read as empty (for `dataLength` and text).
    pub fn bytes(&self) -> &[u8] {
        self.data.as_deref().unwrap_or(&[])
    }

    fn new(data: Option<Vec<u8>>, acl: Vec<Acl>, stat: Stat) -> ZNode {
        ZNode { data, acl, stat }
    }
}

/// The nodes every ZooKeeper server has from the start, with zxid 0,
/// parents first.
pub(crate) fn initial_tree() -> Vec<(String, ZNode)> {
    // `DataTree` makes its built-in nodes with `new byte[0]`, not null.
    let mk = |children: i32| ZNode {
        data: Some(Vec::new()),
        acl: Acl::open_unsafe(),
        stat: Stat {
            num_children: children,
            ..Stat::default()
        },
    };
    // `DataTree.addConfigNode`: readable by anyone, changed only by
    // reconfig (ZOOKEEPER-2014); its ACL was set with version -1.
    let mut config = mk(0);
    config.acl = Acl::read_unsafe();
    config.stat.aversion = -1;
    vec![
        ("/".into(), mk(1)),
        ("/zookeeper".into(), mk(2)),
        ("/zookeeper/config".into(), config),
        ("/zookeeper/quota".into(), mk(0)),
    ]
}

/// The `Child` table's key for `name` under `parent`: paths hold no NUL.
pub(crate) fn child_key(parent: &str, name: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(parent.len() + name.len() + 1);
    k.extend_from_slice(parent.as_bytes());
    k.push(0);
    k.extend_from_slice(name.as_bytes());
    k
}

/// `parent` + `/` + `name`.
pub(crate) fn join_path(parent: &str, name: &str) -> String {
    if parent == "/" {
        format!("/{name}")
    } else {
        format!("{parent}/{name}")
    }
}

fn lease_item_key(session: i64, kind: u8, item: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(9 + item.len());
    k.extend_from_slice(&(session as u64).to_be_bytes());
    k.push(kind);
    k.extend_from_slice(item);
    k
}

/// The `LeaseItem` key attaching ephemeral `path` to `session`.
pub(crate) fn ephemeral_key(session: i64, path: &str) -> Vec<u8> {
    lease_item_key(session, b'e', path.as_bytes())
}

/// The `LeaseItem` key attaching etcd `key` to `lease`.
pub(crate) fn lease_key_key(lease: i64, key: &[u8]) -> Vec<u8> {
    lease_item_key(lease, b'k', key)
}

/// `DataTree.isSpecialPath`: nodes the server owns, which no client may
/// delete.
fn is_special_path(path: &str) -> bool {
    matches!(
        path,
        "/" | "/zookeeper" | "/zookeeper/quota" | "/zookeeper/config"
    )
}

/// `PathUtils.validatePath`: absolute, no empty or relative segments, no
/// forbidden characters, no trailing slash except the root.
pub fn validate_path(path: &str) -> Result<(), ZkError> {
    if path.is_empty() || !path.starts_with('/') {
        return Err(ZkError::BadArguments);
    }
    if path.len() == 1 {
        return Ok(());
    }
    if path.ends_with('/') {
        return Err(ZkError::BadArguments);
    }
    for seg in path[1..].split('/') {
        if seg.is_empty() || seg == "." || seg == ".." {
            return Err(ZkError::BadArguments);
        }
    }
    for c in path.chars() {
        let u = c as u32;
        if u == 0
            || (0x01..=0x1F).contains(&u)
            || (0x7F..=0x9F).contains(&u)
            || (0xD800..=0xF8FF).contains(&u)
            || (0xFFF0..=0xFFFF).contains(&u)
            // Beyond the BMP Java holds a surrogate pair, which the range
            // above rejects (so emoji are refused too).
            || u > 0xFFFF
        {
            return Err(ZkError::BadArguments);
        }
    }
    Ok(())
}

/// The parent of a valid non-root path, and the last segment.
pub fn split_path(path: &str) -> (&str, &str) {
    match path.rfind('/') {
        Some(0) => ("/", &path[1..]),
        Some(i) => (&path[..i], &path[i + 1..]),
        None => ("/", path),
    }
}

/// Who sent a client write (`Command::ZkAs`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Caller<'a> {
    pub ids: &'a [Id],
    pub owner: u64,
}

/// The context one ZooKeeper txn runs in.
struct TxnCtx<'a> {
    zxid: i64,
    /// The caller's ids when ACLs are checked (`Command::ZkAs`).
    ids: Option<&'a [Id]>,
    time: i64,
    session: i64,
    /// Where to roll the tables back to if the txn fails.
    savepoint: usize,
    /// The node count before the txn.
    znodes: u64,
    events: Vec<Event>,
}

impl State {
    /// Look up a node.
    pub fn znode(&self, path: &str) -> Option<ZNode> {
        self.db
            .get(Table::Node, path.as_bytes())
            .and_then(|raw| decode(&raw))
    }

    pub(crate) fn put_node(&mut self, path: &str, node: &ZNode) {
        self.db
            .put(Table::Node, path.as_bytes().to_vec(), encode(node));
    }

    /// The stat of `path`, as `exists` returns it.
    pub fn zk_stat(&self, path: &str) -> Option<Stat> {
        self.znode(path).map(|n| n.stat)
    }

    /// The children's names of `path`, sorted.
    pub fn zk_children(&self, path: &str) -> Option<Vec<String>> {
        if !self.db.contains(Table::Node, path.as_bytes()) {
            return None;
        }
        let prefix = child_key(path, "");
        let end = prefix_end(&prefix);
        let mut out = Vec::new();
        self.db
            .scan(Table::Child, &prefix, end.as_deref(), false, &mut |k, _| {
                out.push(String::from_utf8_lossy(&k[prefix.len()..]).into_owned());
                true
            });
        Some(out)
    }

    /// `getAllChildrenNumber`: all descendants of `path`.
    pub fn zk_all_children_number(&self, path: &str) -> Option<i64> {
        if !self.db.contains(Table::Node, path.as_bytes()) {
            return None;
        }
        let prefix = if path == "/" {
            "/".to_string()
        } else {
            format!("{path}/")
        };
        let end = prefix_end(prefix.as_bytes());
        let mut n = 0i64;
        self.db.scan(
            Table::Node,
            prefix.as_bytes(),
            end.as_deref(),
            false,
            &mut |_, _| {
                n += 1;
                true
            },
        );
        Some(n)
    }

    /// `getEphemerals`: the session's ephemeral paths starting with `prefix`.
    pub fn zk_ephemerals(&self, session: i64, prefix: &str) -> Vec<String> {
        self.lease_items(&ephemeral_key(session, ""))
            .into_iter()
            .map(|p| String::from_utf8_lossy(&p).into_owned())
            .filter(|p| prefix.is_empty() || prefix == "/" || p.starts_with(prefix))
            .collect()
    }

    /// ZooKeeper's `approximateDataSize`: every path's length plus its
    /// data's, summed over the whole tree (a full scan: callers cache it).
    pub fn zk_approximate_data_size(&self) -> u64 {
        let mut n = 0u64;
        self.db.scan(Table::Node, &[], None, false, &mut |k, v| {
            let data = decode::<ZNode>(v).map_or(0, |z| z.stat.data_length.max(0) as u64);
            n += k.len() as u64 + data;
            true
        });
        n
    }

    /// Up to `limit` paths after `after` (exclusive; "" from the start),
    /// in order (for dumps and the console).
    pub fn zk_paths_after(&self, after: &str, limit: usize) -> Vec<String> {
        let mut start = after.as_bytes().to_vec();
        if !after.is_empty() {
            start.push(0);
        }
        self.db
            .collect(Table::Node, &start, None, limit)
            .into_iter()
            .map(|(k, _)| String::from_utf8_lossy(&k).into_owned())
            .collect()
    }

    /// Containers and TTL nodes the reaper should try to delete at `now_ms`
    /// (ZooKeeper's `ContainerManager.getCandidates`).
    pub fn zk_reap_candidates(&self, now_ms: i64, limit: usize) -> Vec<String> {
        let mut out = Vec::new();
        if limit == 0 {
            return out;
        }
        self.db.scan(Table::Reap, b"", None, false, &mut |k, _| {
            let path = String::from_utf8_lossy(k).into_owned();
            if let Some(n) = self.znode(&path) {
                if n.stat.num_children == 0 && Self::reapable(&n, now_ms) {
                    out.push(path);
                }
            }
            out.len() < limit
        });
        out
    }

    fn reapable(n: &ZNode, now_ms: i64) -> bool {
        match NodeKind::of_owner(n.stat.ephemeral_owner) {
            NodeKind::Container => n.stat.cversion > 0,
            NodeKind::Ttl(ttl) => now_ms.saturating_sub(n.stat.mtime) > ttl,
            _ => false,
        }
    }

    /// A ZooKeeper session is valid if its lease exists and is a session.
    /// A wrapped write's connection still owns `session` (or the session
    /// has not moved since it was made).
    fn zk_owner_ok(&self, session: i64, caller: Option<Caller<'_>>) -> bool {
        let Some(c) = caller else { return true };
        session == 0
            || self
                .lease(session)
                .and_then(|l| l.session)
                .is_none_or(|s| s.owner == 0 || s.owner == c.owner)
    }

    fn zk_session_ok(&self, session: i64) -> bool {
        session == 0 || self.lease(session).is_some_and(|l| l.session.is_some())
    }

    fn zk_txn<'a>(&self, zxid: i64, time: i64, session: i64, ids: Option<&'a [Id]>) -> TxnCtx<'a> {
        TxnCtx {
            zxid,
            ids,
            time,
            session,
            savepoint: self.db.savepoint(),
            znodes: self.znodes,
            events: Vec::new(),
        }
    }

    pub(crate) fn zk_single(
        &mut self,
        time: i64,
        session: i64,
        op: &ZkOp,
        caller: Option<Caller<'_>>,
    ) -> Result<ZkResponse, ZkError> {
        let zxid = self.next_zxid();
        if !self.zk_session_ok(session) {
            return Err(ZkError::SessionExpired);
        }
        if !self.zk_owner_ok(session, caller) {
            return Err(ZkError::SessionMoved);
        }
        let mut cx = self.zk_txn(zxid, time, session, caller.map(|c| c.ids));
        match self.zk_apply_op(&mut cx, op) {
            Ok(r) => {
                self.zk_commit(cx);
                Ok(ZkResponse::Op(r))
            }
            Err(e) => {
                self.zk_rollback(cx);
                Err(e)
            }
        }
    }

    pub(crate) fn zk_multi(
        &mut self,
        time: i64,
        session: i64,
        ops: &[ZkOp],
        caller: Option<Caller<'_>>,
    ) -> Result<ZkResponse, ZkError> {
        let zxid = self.next_zxid();
        if !self.zk_session_ok(session) {
            return Err(ZkError::SessionExpired);
        }
        if !self.zk_owner_ok(session, caller) {
            return Err(ZkError::SessionMoved);
        }
        let mut cx = self.zk_txn(zxid, time, session, caller.map(|c| c.ids));
        let mut results = Vec::with_capacity(ops.len());
        for (i, op) in ops.iter().enumerate() {
            match self.zk_apply_op(&mut cx, op) {
                Ok(r) => results.push(r),
                Err(e) => {
                    self.zk_rollback(cx);
                    let mut failed = vec![ZkOpResult::Error(None); i];
                    failed.push(ZkOpResult::Error(Some(e)));
                    failed.resize(
                        ops.len(),
                        ZkOpResult::Error(Some(ZkError::RuntimeInconsistency)),
                    );
                    return Ok(ZkResponse::Multi(failed));
                }
            }
        }
        self.zk_commit(cx);
        Ok(ZkResponse::Multi(results))
    }

    pub(crate) fn zk_delete_container(
        &mut self,
        time: i64,
        path: &str,
    ) -> Result<ZkResponse, ZkError> {
        let zxid = self.next_zxid();
        let node = self.znode(path).ok_or(ZkError::NoNode)?;
        if node.stat.num_children != 0 {
            return Err(ZkError::NotEmpty);
        }
        // The reaper re-checks at the stamped time: a TTL node touched since
        // the leader picked it stays.
        if !Self::reapable(&node, time) {
            return Err(ZkError::BadVersion);
        }
        let mut cx = self.zk_txn(zxid, time, 0, None);
        self.zk_remove_node(&mut cx, path, node);
        self.zk_commit(cx);
        Ok(ZkResponse::Op(ZkOpResult::Delete))
    }

    /// Delete every ephemeral of `session` (close or expiry); the caller has
    /// already taken the zxid.
    pub(crate) fn zk_kill_session(&mut self, zxid: i64, time: i64, session: i64) {
        let paths = self.zk_ephemerals(session, "");
        let mut cx = self.zk_txn(zxid, time, session, None);
        for p in paths {
            if let Some(node) = self.znode(&p) {
                self.zk_remove_node(&mut cx, &p, node);
            }
        }
        self.zk_commit(cx);
    }

    fn zk_commit(&mut self, cx: TxnCtx) {
        self.events.extend(cx.events);
    }

    fn zk_rollback(&mut self, cx: TxnCtx) {
        self.db.rollback(cx.savepoint);
        self.znodes = cx.znodes;
    }

    /// PrepRequestProcessor's `checkACL` for a wrapped (client) txn.
    fn check_perm(cx: &TxnCtx<'_>, acl: &[Acl], perm: i32) -> Result<(), ZkError> {
        match cx.ids {
            Some(ids) => crate::zk_acl::check_acl(ids, acl, perm),
            None => Ok(()),
        }
    }

    fn zk_apply_op(&mut self, cx: &mut TxnCtx, op: &ZkOp) -> Result<ZkOpResult, ZkError> {
        match op {
            ZkOp::Create {
                path,
                data,
                acl,
                mode,
                ttl_ms,
            } => self
                .zk_create(cx, path, data.as_deref(), acl, *mode, *ttl_ms)
                .map(|(path, stat)| ZkOpResult::Create { path, stat }),
            ZkOp::Delete { path, version } => {
                // `getParentPathAndValidate`: a '/', no NUL, not a system
                // node; the path itself is only looked up.
                let Some(last) = path.rfind('/') else {
                    return Err(ZkError::BadArguments);
                };
                if path.contains('\0') || is_special_path(path) {
                    return Err(ZkError::BadArguments);
                }
                let parent = if last == 0 { "/" } else { &path[..last] };
                let parent = self.znode(parent).ok_or(ZkError::NoNode)?;
                Self::check_perm(cx, &parent.acl, perms::DELETE)?;
                let node = self.znode(path).ok_or(ZkError::NoNode)?;
                check_version(node.stat.version, *version)?;
                if node.stat.num_children != 0 {
                    return Err(ZkError::NotEmpty);
                }
                self.zk_remove_node(cx, path, node);
                Ok(ZkOpResult::Delete)
            }
            ZkOp::SetData {
                path,
                data,
                version,
            } => {
                validate_path(path)?;
                let mut node = self.znode(path).ok_or(ZkError::NoNode)?;
                Self::check_perm(cx, &node.acl, perms::WRITE)?;
                check_version(node.stat.version, *version)?;
                node.data = data.clone();
                node.stat.version = node.stat.version.wrapping_add(1);
                node.stat.mzxid = cx.zxid;
                node.stat.mtime = cx.time;
                node.stat.data_length = data.as_ref().map_or(0, |d| d.len() as i32);
                let stat = node.stat;
                self.put_node(path, &node);
                cx.events.push(Event::ZkDataChanged {
                    path: path.clone(),
                    acl: node.acl,
                });
                Ok(ZkOpResult::SetData { stat })
            }
            ZkOp::SetAcl { path, acl, version } => {
                validate_path(path)?;
                if acl.is_empty() {
                    return Err(ZkError::InvalidAcl);
                }
                let mut node = self.znode(path).ok_or(ZkError::NoNode)?;
                Self::check_perm(cx, &node.acl, perms::ADMIN)?;
                check_version(node.stat.aversion, *version)?;
                node.acl = acl.clone();
                node.stat.aversion = node.stat.aversion.wrapping_add(1);
                let stat = node.stat;
                self.put_node(path, &node);
                Ok(ZkOpResult::SetAcl { stat })
            }
            ZkOp::Check { path, version } => {
                validate_path(path)?;
                let node = self.znode(path).ok_or(ZkError::NoNode)?;
                Self::check_perm(cx, &node.acl, perms::READ)?;
                check_version(node.stat.version, *version)?;
                Ok(ZkOpResult::Check)
            }
        }
    }

    fn zk_create(
        &mut self,
        cx: &mut TxnCtx,
        path: &str,
        data: Option<&[u8]>,
        acl: &[Acl],
        mode: CreateMode,
        ttl_ms: i64,
    ) -> Result<(String, Stat), ZkError> {
        if mode.is_ttl() {
            if ttl_ms <= 0 || ttl_ms > MAX_TTL_MS {
                return Err(ZkError::BadArguments);
            }
        } else if ttl_ms >= 0 {
            return Err(ZkError::BadArguments);
        }
        // PrepRequestProcessor's order: `validatePathForCreate` (a '/' and
        // no NUL), the parent (NONODE), CREATE on it, and only then the
        // full path (a sequential one with its suffix, which may complete
        // a path ending in '/').
        let Some(last) = path.rfind('/') else {
            return Err(ZkError::BadArguments);
        };
        if path.contains('\0') {
            return Err(ZkError::BadArguments);
        }
        let parent_path = if last == 0 { "/" } else { &path[..last] };
        let mut parent = self.znode(parent_path).ok_or(ZkError::NoNode)?;
        Self::check_perm(cx, &parent.acl, perms::CREATE)?;
        let full = if mode.is_sequential() {
            format!("{path}{:010}", parent.stat.cversion)
        } else {
            path.to_string()
        };
        validate_path(&full)?;
        if full == "/" {
            return Err(ZkError::NodeExists);
        }
        if acl.is_empty() {
            return Err(ZkError::InvalidAcl);
        }
        if self.db.contains(Table::Node, full.as_bytes()) {
            return Err(ZkError::NodeExists);
        }
        if matches!(
            NodeKind::of_owner(parent.stat.ephemeral_owner),
            NodeKind::Ephemeral(_)
        ) {
            return Err(ZkError::NoChildrenForEphemerals);
        }
        let owner = match mode {
            CreateMode::Ephemeral | CreateMode::EphemeralSequential => {
                if cx.session == 0 {
                    return Err(ZkError::BadArguments);
                }
                cx.session
            }
            CreateMode::Container | CreateMode::ContainerSequential => CONTAINER_OWNER,
            CreateMode::PersistentWithTtl | CreateMode::PersistentSequentialWithTtl => {
                (TTL_OWNER_MASK | ttl_ms as u64) as i64
            }
            _ => 0,
        };
        let parent_path = parent_path.to_string();
        let (_, name) = split_path(&full);
        parent.stat.cversion = parent.stat.cversion.wrapping_add(1);
        parent.stat.pzxid = cx.zxid;
        parent.stat.num_children = parent.stat.num_children.wrapping_add(1);
        self.put_node(&parent_path, &parent);
        self.db
            .put(Table::Child, child_key(&parent_path, name), Vec::new());
        let stat = Stat {
            czxid: cx.zxid,
            mzxid: cx.zxid,
            ctime: cx.time,
            mtime: cx.time,
            version: 0,
            cversion: 0,
            aversion: 0,
            ephemeral_owner: owner,
            data_length: data.map_or(0, |d| d.len() as i32),
            num_children: 0,
            pzxid: cx.zxid,
        };
        self.put_node(
            &full,
            &ZNode::new(data.map(<[u8]>::to_vec), acl.to_vec(), stat),
        );
        self.znodes += 1;
        match NodeKind::of_owner(owner) {
            NodeKind::Ephemeral(_) => {
                self.db
                    .put(Table::LeaseItem, ephemeral_key(owner, &full), Vec::new());
            }
            NodeKind::Container | NodeKind::Ttl(_) => {
                self.db
                    .put(Table::Reap, full.as_bytes().to_vec(), Vec::new());
            }
            NodeKind::Persistent => {}
        }
        cx.events.push(Event::ZkCreated {
            path: full.clone(),
            acl: acl.to_vec(),
        });
        cx.events.push(Event::ZkChildrenChanged {
            path: parent_path,
            acl: parent.acl,
        });
        Ok((full, stat))
    }

    /// Remove an existing, childless node and update its parent.
    fn zk_remove_node(&mut self, cx: &mut TxnCtx, path: &str, node: ZNode) {
        self.db.delete(Table::Node, path.as_bytes());
        self.znodes = self.znodes.saturating_sub(1);
        match NodeKind::of_owner(node.stat.ephemeral_owner) {
            NodeKind::Ephemeral(owner) => {
                self.db
                    .delete(Table::LeaseItem, &ephemeral_key(owner, path));
            }
            NodeKind::Container | NodeKind::Ttl(_) => {
                self.db.delete(Table::Reap, path.as_bytes());
            }
            NodeKind::Persistent => {}
        }
        let (parent_path, name) = split_path(path);
        let mut parent_acl = Vec::new();
        if let Some(mut parent) = self.znode(parent_path) {
            self.db.delete(Table::Child, &child_key(parent_path, name));
            parent.stat.num_children = parent.stat.num_children.saturating_sub(1);
            // ZooKeeper only moves pzxid forward, and leaves cversion alone.
            if cx.zxid > parent.stat.pzxid {
                parent.stat.pzxid = cx.zxid;
            }
            self.put_node(parent_path, &parent);
            parent_acl = parent.acl;
        }
        cx.events.push(Event::ZkDeleted {
            path: path.to_string(),
            acl: node.acl,
        });
        cx.events.push(Event::ZkChildrenChanged {
            path: parent_path.to_string(),
            acl: parent_acl,
        });
    }
}

/// `checkAndIncVersion`: -1 matches any version.
fn check_version(current: i32, expected: i32) -> Result<(), ZkError> {
    if expected != -1 && expected != current {
        return Err(ZkError::BadVersion);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        for ok in ["/", "/a", "/a/b", "/a b", "/ü"] {
            assert_eq!(validate_path(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "a",
            "/a/",
            "//a",
            "/a//b",
            "/.",
            "/a/..",
            "/a\u{0}b",
            "/\u{1}",
            "/\u{fff0}",
        ] {
            assert_eq!(validate_path(bad), Err(ZkError::BadArguments), "{bad:?}");
        }
        assert_eq!(split_path("/a"), ("/", "a"));
        assert_eq!(split_path("/a/b/c"), ("/a/b", "c"));
    }

    #[test]
    fn owner_kinds() {
        assert_eq!(NodeKind::of_owner(0), NodeKind::Persistent);
        assert_eq!(NodeKind::of_owner(CONTAINER_OWNER), NodeKind::Container);
        assert_eq!(
            NodeKind::of_owner((TTL_OWNER_MASK | 5000) as i64),
            NodeKind::Ttl(5000)
        );
        assert_eq!(
            NodeKind::of_owner(0x0100_0000_0000_0001),
            NodeKind::Ephemeral(0x0100_0000_0000_0001)
        );
    }

    fn digest(user: &str) -> Id {
        Id {
            scheme: "digest".into(),
            id: format!("{user}:h"),
        }
    }

    /// A client write as `ids`; returns (response, revision after).
    fn as_ids(s: &mut State, ids: &[Id], op: ZkOp) -> (Result<ZkResponse, ZkError>, i64) {
        let r = s.zk_single(0, 0, &op, Some(Caller { ids, owner: 0 }));
        (r, s.revision())
    }

    fn create(path: &str, acl: Vec<Acl>) -> ZkOp {
        ZkOp::Create {
            path: path.into(),
            data: Some(vec![]),
            acl,
            mode: CreateMode::Persistent,
            ttl_ms: -1,
        }
    }

    #[test]
    fn acls_checked_in_prep_request_order_with_a_zxid() {
        let mut s = State::new();
        let alice = vec![Acl {
            perms: perms::ALL,
            id: digest("alice"),
        }];
        let (r, _) = as_ids(&mut s, &[digest("alice")], create("/a", alice.clone()));
        assert!(r.is_ok());
        // A later txn sees the node an earlier one made: no need to wait
        // for it to apply before checking.
        let (r, _) = as_ids(&mut s, &[digest("alice")], create("/a/b", alice.clone()));
        assert!(r.is_ok());
        let before = s.revision();
        let (r, after) = as_ids(&mut s, &[digest("bob")], create("/a/c", alice.clone()));
        assert_eq!(r, Err(ZkError::NoAuth));
        assert_eq!(after, before + 1, "a refused write takes a zxid");
        // Delete: DELETE on the parent comes before the node's existence.
        let del = |p: &str| ZkOp::Delete {
            path: p.into(),
            version: -1,
        };
        assert_eq!(as_ids(&mut s, &[], del("/a/none")).0, Err(ZkError::NoAuth));
        assert_eq!(as_ids(&mut s, &[], del("/none/x")).0, Err(ZkError::NoNode));
        // Create: the parent and CREATE on it before the full path.
        assert_eq!(
            as_ids(&mut s, &[], create("/a/x/", Acl::open_unsafe())).0,
            Err(ZkError::NoNode)
        );
        assert_eq!(
            as_ids(&mut s, &[], create("/a/.", Acl::open_unsafe())).0,
            Err(ZkError::NoAuth)
        );
        assert_eq!(
            as_ids(&mut s, &[], create("/.", Acl::open_unsafe())).0,
            Err(ZkError::BadArguments)
        );
        // setData, setACL, check: the node, then the permission, then the version.
        let set = ZkOp::SetData {
            path: "/a/b".into(),
            data: Some(vec![1]),
            version: 7,
        };
        assert_eq!(as_ids(&mut s, &[], set.clone()).0, Err(ZkError::NoAuth));
        assert_eq!(
            as_ids(&mut s, &[digest("alice")], set).0,
            Err(ZkError::BadVersion)
        );
        let check = ZkOp::Check {
            path: "/a".into(),
            version: -1,
        };
        assert_eq!(as_ids(&mut s, &[], check.clone()).0, Err(ZkError::NoAuth));
        let sup = Id {
            scheme: "super".into(),
            id: "x".into(),
        };
        assert!(as_ids(&mut s, &[sup], check.clone()).0.is_ok());
        // The server's own (bare) writes are not checked.
        assert!(s.zk_single(0, 0, &check, None).is_ok());
    }

    #[test]
    fn writes_from_a_connection_the_session_moved_away_from_fail() {
        let mut s = State::new();
        assert!(matches!(
            s.session_create(7, b"pw", 10_000),
            crate::Response::Zk(Ok(_))
        ));
        let write = |s: &mut State, owner: u64| {
            let op = create(&format!("/n{owner}-{}", s.revision()), Acl::open_unsafe());
            let r = s.zk_single(0, 7, &op, Some(Caller { ids: &[], owner }));
            (r, s.revision())
        };
        // Not moved yet: the connection that made it writes.
        assert!(write(&mut s, 1).0.is_ok());
        let before = s.revision();
        assert!(matches!(s.session_attach(7, 2), crate::Response::Zk(Ok(_))));
        assert_eq!(s.revision(), before, "re-establishing takes no zxid");
        let (r, after) = write(&mut s, 1);
        assert_eq!(r, Err(ZkError::SessionMoved));
        assert_eq!(after, before + 1, "the refused write takes its zxid");
        assert!(write(&mut s, 2).0.is_ok());
        assert!(matches!(
            s.session_attach(99, 2),
            crate::Response::Zk(Err(ZkError::SessionExpired))
        ));
    }
}
