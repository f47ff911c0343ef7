//! The web console: a read-only page at `/console` showing the ZNode tree
//! and the key space side by side, a live timeline of both personalities'
//! changes on the one revision clock, sessions and leases, and the
//! cluster's members. Plain HTML, CSS and JavaScript embedded in the
//! binary (no build step); the page polls the JSON under `/console/api/`.
//!
//! Served on the etcd client port only (not the metrics listeners).
//! The console sees what an anonymous client would: znode data and
//! children only where `world:anyone` may READ, and no keys or values
//! while etcd auth is on. Every answer is bounded (rows, children, keys,
//! value bytes, name lengths).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use janus_core::zk::{perms, validate_path};
use janus_core::zk_acl::check_acl;
use janus_core::{Acl, Event, EventBatch};
use janus_raft::RaftNode;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::broadcast;

use crate::http::ETCD_VERSION;

const INDEX_HTML: &str = include_str!("console/index.html");
const CONSOLE_JS: &str = include_str!("console/console.js");
const CONSOLE_CSS: &str = include_str!("console/console.css");

/// Timeline rows kept in memory; the oldest go first.
pub const TIMELINE_ROWS: usize = 2000;
/// Rows one revision contributes; the rest are folded into a count (an
/// etcd txn or a ZooKeeper multi can touch thousands of keys or nodes).
pub const ROWS_PER_REVISION: usize = 32;
/// Longest path or key shown, in characters.
pub const NAME_CHARS: usize = 256;
/// Timeline rows in one answer (default and most).
const TIMELINE_PAGE: usize = 500;
const TIMELINE_PAGE_MAX: usize = 2000;
/// Children listed per znode.
const CHILDREN_MAX: usize = 500;
/// Keys listed per request (default and most).
const KEYS_DEFAULT: usize = 100;
const KEYS_MAX: usize = 500;
/// Sessions and leases listed (each).
const LEASES_MAX: usize = 500;
/// Bytes of a znode's data and of a key's value shown.
const ZNODE_PREVIEW: usize = 1024;
const VALUE_PREVIEW: usize = 128;
/// Longest znode path accepted in a request.
const PATH_MAX: usize = 4096;

/// Which face of Janus a change came through. `Janus` marks rows that
/// are about the timeline itself (missed batches).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Personality {
    Zookeeper,
    Etcd,
    Janus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Kind {
    /// ZooKeeper: a znode was created, deleted, or its data set.
    Created,
    Deleted,
    DataChanged,
    /// etcd: a key was put or deleted.
    Put,
    Delete,
    /// `count` more changes of this personality in this revision, folded.
    More,
    /// `count` event batches this console missed (its receiver lagged).
    Gap,
}

/// One line of the timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Row {
    pub revision: i64,
    pub personality: Personality,
    pub kind: Kind,
    /// The path or key (lossy UTF-8, cut to `NAME_CHARS`); `None` when an
    /// anonymous reader may not see it, and for `More` and `Gap`.
    pub name: Option<String>,
    /// The value's size in bytes, where known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Folded changes (`More`) or missed batches (`Gap`).
    #[serde(skip_serializing_if = "is_zero")]
    pub count: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// `s` cut to at most `max` characters; whether it was cut.
fn clip(s: &str, max: usize) -> (String, bool) {
    match s.char_indices().nth(max) {
        Some((i, _)) => (s[..i].to_string(), true),
        None => (s.to_string(), false),
    }
}

/// A name for display: at most `max` characters, `…` when cut.
pub fn display_name(s: &str, max: usize) -> String {
    match clip(s, max) {
        (mut c, true) => {
            c.push('…');
            c
        }
        (c, false) => c,
    }
}

/// Bytes (a key) for display: lossy UTF-8, at most `max` characters.
/// Only the first `4 × max` bytes are looked at (no character is longer).
pub fn display_bytes(b: &[u8], max: usize) -> String {
    let head = &b[..b.len().min(max.saturating_mul(4))];
    let (mut s, cut) = clip(&String::from_utf8_lossy(head), max);
    if cut || head.len() < b.len() {
        s.push('…');
    }
    s
}

/// Whether an anonymous reader (`world:anyone`) may READ a znode.
fn world_readable(acl: &[Acl]) -> bool {
    check_acl(&[], acl, perms::READ).is_ok()
}

/// The timeline rows of one applied command. `kv_visible`: etcd keys may
/// be shown (auth is off); `znode_size`: the data size of a znode whose
/// last change is this batch, if it still is.
pub fn rows_of(
    batch: &EventBatch,
    kv_visible: bool,
    znode_size: impl Fn(&str) -> Option<u64>,
) -> Vec<Row> {
    let mut rows = Vec::new();
    let (mut more_zk, mut more_etcd) = (0u64, 0u64);
    for e in &batch.events {
        let row = match e {
            Event::ZkCreated { path, acl } | Event::ZkDataChanged { path, acl } => {
                let readable = world_readable(acl);
                Row {
                    revision: batch.revision,
                    personality: Personality::Zookeeper,
                    kind: if matches!(e, Event::ZkCreated { .. }) {
                        Kind::Created
                    } else {
                        Kind::DataChanged
                    },
                    name: readable.then(|| display_name(path, NAME_CHARS)),
                    size: if readable { znode_size(path) } else { None },
                    count: 0,
                }
            }
            Event::ZkDeleted { path, acl } => Row {
                revision: batch.revision,
                personality: Personality::Zookeeper,
                kind: Kind::Deleted,
                name: world_readable(acl).then(|| display_name(path, NAME_CHARS)),
                size: None,
                count: 0,
            },
            // The parent's child list changes with every create and
            // delete, which have rows of their own.
            Event::ZkChildrenChanged { .. } => continue,
            Event::KvPut { kv, .. } => Row {
                revision: batch.revision,
                personality: Personality::Etcd,
                kind: Kind::Put,
                name: kv_visible.then(|| display_bytes(&kv.key, NAME_CHARS)),
                size: Some(kv.value.len() as u64),
                count: 0,
            },
            Event::KvDelete { kv, .. } => Row {
                revision: batch.revision,
                personality: Personality::Etcd,
                kind: Kind::Delete,
                name: kv_visible.then(|| display_bytes(&kv.key, NAME_CHARS)),
                size: None,
                count: 0,
            },
        };
        if rows.len() < ROWS_PER_REVISION {
            rows.push(row);
        } else if row.personality == Personality::Zookeeper {
            more_zk += 1;
        } else {
            more_etcd += 1;
        }
    }
    for (personality, count) in [
        (Personality::Zookeeper, more_zk),
        (Personality::Etcd, more_etcd),
    ] {
        if count > 0 {
            rows.push(Row {
                revision: batch.revision,
                personality,
                kind: Kind::More,
                name: None,
                size: None,
                count,
            });
        }
    }
    rows
}

/// The last `cap` rows, in the order the state machine applied them
/// (revisions never decrease).
#[derive(Debug)]
pub struct Ring {
    rows: VecDeque<Row>,
    cap: usize,
    /// The highest revision some of whose rows were dropped for room.
    dropped_through: i64,
    /// Batches missed (the receiver lagged) and not yet marked by a gap row.
    missed: u64,
}

/// One answer of `/console/api/timeline`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Page {
    /// Rows with a revision above the one asked for, whole revisions only.
    pub rows: Vec<Row>,
    /// More rows follow the last one; ask again from its revision.
    pub more: bool,
    /// Rows after the asked revision were dropped before this answer.
    pub missed: bool,
    /// The oldest revision still held.
    pub oldest: Option<i64>,
}

impl Ring {
    pub fn new(cap: usize) -> Ring {
        Ring {
            rows: VecDeque::with_capacity(cap.min(TIMELINE_ROWS)),
            cap: cap.max(1),
            dropped_through: 0,
            missed: 0,
        }
    }

    /// Add one batch's rows (at `revision`), after a gap row if batches
    /// were missed just before it.
    pub fn push(&mut self, revision: i64, rows: Vec<Row>) {
        if self.missed > 0 {
            self.rows.push_back(Row {
                revision,
                personality: Personality::Janus,
                kind: Kind::Gap,
                name: None,
                size: None,
                count: self.missed,
            });
            self.missed = 0;
        }
        self.rows.extend(rows);
        while self.rows.len() > self.cap {
            if let Some(r) = self.rows.pop_front() {
                self.dropped_through = self.dropped_through.max(r.revision);
            }
        }
    }

    /// The receiver skipped `n` batches.
    pub fn lagged(&mut self, n: u64) {
        self.missed = self.missed.saturating_add(n);
    }

    /// Rows with a revision above `after`: about `limit` of them, never
    /// splitting a revision (one holds at most `ROWS_PER_REVISION` + 3).
    pub fn page(&self, after: i64, limit: usize) -> Page {
        let start = self.rows.partition_point(|r| r.revision <= after);
        let mut rows: Vec<Row> = Vec::new();
        let mut more = false;
        for r in self.rows.range(start..) {
            if rows.len() >= limit && rows.last().is_some_and(|l| l.revision != r.revision) {
                more = true;
                break;
            }
            rows.push(r.clone());
        }
        Page {
            rows,
            more,
            missed: after < self.dropped_through,
            oldest: self.rows.front().map(|r| r.revision),
        }
    }
}

/// The timeline every console router of this process reads: one task
/// follows the state machine's change events.
pub struct Timeline {
    ring: Mutex<Ring>,
}

impl Timeline {
    /// Start following `node`'s applied changes (once per process).
    pub fn spawn(node: &Arc<RaftNode>) -> Arc<Timeline> {
        let timeline = Arc::new(Timeline {
            ring: Mutex::new(Ring::new(TIMELINE_ROWS)),
        });
        let events = node.subscribe();
        tokio::spawn(follow(Arc::downgrade(node), timeline.clone(), events));
        timeline
    }

    fn ring(&self) -> MutexGuard<'_, Ring> {
        // A panic while holding the lock leaves at worst a partly pushed
        // batch: still a valid ring.
        self.ring.lock().unwrap_or_else(|p| p.into_inner())
    }
}

async fn follow(
    node: Weak<RaftNode>,
    timeline: Arc<Timeline>,
    mut events: broadcast::Receiver<Arc<EventBatch>>,
) {
    loop {
        match events.recv().await {
            Ok(batch) => {
                // Session and lease bookkeeping changes nothing visible.
                if batch.events.is_empty() {
                    continue;
                }
                let Some(node) = node.upgrade() else {
                    return;
                };
                let rows = {
                    let state = node.state();
                    rows_of(&batch, !state.auth().enabled(), |path| {
                        state
                            .znode(path)
                            .filter(|n| n.stat.mzxid == batch.revision)
                            .map(|n| n.bytes().len() as u64)
                    })
                };
                timeline.ring().push(batch.revision, rows);
            }
            // Fell behind the broadcast buffer: note the gap and go on
            // from the oldest batch still buffered.
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::debug!(missed = n, "console timeline lagged");
                timeline.ring().lagged(n);
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// What the console's routes share.
#[derive(Clone)]
pub struct Console {
    pub node: Arc<RaftNode>,
    pub timeline: Arc<Timeline>,
}

/// `/console` (the page, its script and style sheet) and `/console/api/*`.
pub fn router(console: Console) -> Router {
    Router::new()
        .route("/console", get(page))
        .route("/console/", get(page))
        .route("/console/console.js", get(script))
        .route("/console/console.css", get(style))
        .route("/console/api/cluster", get(cluster))
        .route("/console/api/timeline", get(timeline))
        .route("/console/api/znode", get(znode))
        .route("/console/api/keys", get(keys))
        .route("/console/api/sessions", get(sessions))
        .with_state(console)
}

/// A static asset, revalidated on every load (the binary may change).
fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut r = (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response();
    if content_type.starts_with("text/html") {
        // Only our own script and style: nothing injected can run.
        r.headers_mut().insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; frame-ancestors 'none'",
            ),
        );
    }
    r
}

async fn page() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", CONSOLE_JS)
}

async fn style() -> Response {
    asset("text/css; charset=utf-8", CONSOLE_CSS)
}

/// JSON that is never cached.
fn api(status: StatusCode, body: Value) -> Response {
    (status, [(header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
}

fn bad_request(why: &str) -> Response {
    api(StatusCode::BAD_REQUEST, json!({ "error": why }))
}

/// `/console/api/cluster`: this member, the leader, the revision clock
/// and the members as the applied membership lists them.
async fn cluster(State(c): State<Console>) -> Response {
    api(StatusCode::OK, cluster_json(&c.node))
}

fn cluster_json(node: &RaftNode) -> Value {
    let m = node.metrics();
    let (revision, compacted) = {
        let s = node.state();
        (s.revision(), s.compacted_revision())
    };
    let leader = m.current_leader;
    let members: Vec<Value> = node
        .members()
        .into_iter()
        .take(LEASES_MAX)
        .map(|(id, member, voter)| {
            json!({
                // Ids as strings: JavaScript numbers stop at 2^53.
                "id": id.to_string(),
                "name": display_name(&member.name, NAME_CHARS),
                "peerAddr": display_name(&member.addr, NAME_CHARS),
                "peerUrls": member.peer_urls().iter().take(8).map(|u| display_name(u, NAME_CHARS)).collect::<Vec<_>>(),
                "clientUrls": member.client_urls.iter().take(8).map(|u| display_name(u, NAME_CHARS)).collect::<Vec<_>>(),
                "zkClient": display_name(&member.zk_client, NAME_CHARS),
                "voter": voter,
                "leader": leader == Some(id),
                "self": id == node.id,
            })
        })
        .collect();
    json!({
        "memberId": node.id.to_string(),
        "state": format!("{:?}", m.state),
        "term": m.current_term,
        "leader": leader.map(|l| l.to_string()),
        "lastLogIndex": m.last_log_index,
        "lastApplied": m.last_applied.map(|l| l.index),
        "revision": revision,
        "compacted": compacted,
        "members": members,
        "version": env!("CARGO_PKG_VERSION"),
        "etcdVersion": ETCD_VERSION,
    })
}

#[derive(Debug, Deserialize)]
struct TimelineParams {
    after: Option<i64>,
    limit: Option<usize>,
}

/// `/console/api/timeline?after=REV&limit=N`: rows above revision `after`
/// (0: all held), and the current revision. Page on from the last row's
/// revision, not `revision`: the timeline may trail the state a little.
async fn timeline(
    State(c): State<Console>,
    params: Result<Query<TimelineParams>, QueryRejection>,
) -> Response {
    let Ok(Query(p)) = params else {
        return bad_request("after and limit are integers");
    };
    let limit = p.limit.unwrap_or(TIMELINE_PAGE).clamp(1, TIMELINE_PAGE_MAX);
    let page = c.timeline.ring().page(p.after.unwrap_or(0), limit);
    let revision = c.node.state().revision();
    api(
        StatusCode::OK,
        json!({
            "revision": revision,
            "rows": page.rows,
            "more": page.more,
            "missed": page.missed,
            "oldest": page.oldest,
        }),
    )
}

/// A bounded look at a value: text when its first `max` bytes are UTF-8
/// without control characters (tab and newlines aside), hex otherwise.
pub fn preview(data: Option<&[u8]>, max: usize) -> Value {
    let Some(d) = data else {
        return json!({ "null": true, "size": 0 });
    };
    let head = &d[..d.len().min(max)];
    let text = match std::str::from_utf8(head) {
        Ok(t) => Some(t),
        // A character cut by the limit leaves the text before it.
        Err(e) if e.error_len().is_none() && head.len() < d.len() => {
            std::str::from_utf8(&head[..e.valid_up_to()]).ok()
        }
        Err(_) => None,
    };
    let text = text.filter(|t| {
        !t.chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    });
    match text {
        Some(t) => json!({
            "text": t,
            "size": d.len(),
            "truncated": t.len() < d.len(),
        }),
        None => {
            let shown = &head[..head.len().min(max / 2)];
            json!({
                "hex": shown.iter().map(|b| format!("{b:02x}")).collect::<String>(),
                "size": d.len(),
                "truncated": shown.len() < d.len(),
            })
        }
    }
}

/// An ACL entry as zkCli prints it, digest hashes left out.
fn acl_text(a: &Acl) -> String {
    let id = if a.id.scheme == "digest" {
        a.id.id.split(':').next().unwrap_or_default()
    } else {
        a.id.id.as_str()
    };
    let mut p = String::new();
    for (bit, c) in [
        (perms::CREATE, 'c'),
        (perms::DELETE, 'd'),
        (perms::READ, 'r'),
        (perms::WRITE, 'w'),
        (perms::ADMIN, 'a'),
    ] {
        if a.perms & bit != 0 {
            p.push(c);
        }
    }
    display_name(&format!("{}:{}:{p}", a.id.scheme, id), NAME_CHARS)
}

#[derive(Debug, Deserialize)]
struct ZnodeParams {
    path: Option<String>,
}

/// `/console/api/znode?path=/a/b`: the stat, a data preview and the
/// first children (with their child counts) of one znode.
async fn znode(
    State(c): State<Console>,
    params: Result<Query<ZnodeParams>, QueryRejection>,
) -> Response {
    let Ok(Query(p)) = params else {
        return bad_request("path is a string");
    };
    let path = p.path.unwrap_or_else(|| "/".to_string());
    if path.len() > PATH_MAX || validate_path(&path).is_err() {
        return bad_request("not a valid znode path");
    }
    match znode_json(&c.node, &path) {
        Some(v) => api(StatusCode::OK, v),
        None => api(StatusCode::NOT_FOUND, json!({ "error": "no such znode" })),
    }
}

fn znode_json(node: &RaftNode, path: &str) -> Option<Value> {
    let s = node.state();
    let n = s.znode(path)?;
    let st = n.stat;
    // `exists` needs no permission in ZooKeeper; data, children and the
    // ACL need READ.
    let readable = world_readable(&n.acl);
    let names = if readable {
        s.zk_children(path).unwrap_or_default()
    } else {
        Vec::new()
    };
    let children: Vec<Value> = if readable {
        names
            .iter()
            .take(CHILDREN_MAX)
            .map(|name| {
                let child = if path == "/" {
                    format!("/{name}")
                } else {
                    format!("{path}/{name}")
                };
                let cn = s.znode(&child);
                let cn = cn.as_ref();
                json!({
                    "name": display_name(name, NAME_CHARS),
                    // The full path to ask for next, unless too long to.
                    "path": (child.len() <= PATH_MAX).then_some(&child),
                    "numChildren": cn.map_or(0, |c| c.stat.num_children),
                    "ephemeral": cn.is_some_and(|c| c.stat.ephemeral_owner != 0),
                })
            })
            .collect()
    } else {
        Vec::new()
    };
    Some(json!({
        "path": display_name(path, NAME_CHARS),
        "readable": readable,
        "data": if readable { preview(n.data.as_deref(), ZNODE_PREVIEW) } else { Value::Null },
        "acl": if readable { n.acl.iter().take(32).map(acl_text).collect::<Vec<_>>() } else { Vec::new() },
        "stat": {
            "czxid": st.czxid,
            "mzxid": st.mzxid,
            "pzxid": st.pzxid,
            "ctime": st.ctime,
            "mtime": st.mtime,
            "version": st.version,
            "cversion": st.cversion,
            "aversion": st.aversion,
            // ZooKeeper prints it as Long.toHexString.
            "ephemeralOwner": format!("0x{:x}", st.ephemeral_owner),
            "dataLength": st.data_length,
            "numChildren": st.num_children,
        },
        "children": children,
        "childrenTotal": names.len(),
        "more": names.len() > CHILDREN_MAX,
    }))
}

#[derive(Debug, Deserialize)]
struct KeysParams {
    prefix: Option<String>,
    limit: Option<usize>,
}

/// `/console/api/keys?prefix=P&limit=N`: the first live keys starting with
/// P, in key order, with a value preview, revisions and lease.
async fn keys(
    State(c): State<Console>,
    params: Result<Query<KeysParams>, QueryRejection>,
) -> Response {
    let Ok(Query(p)) = params else {
        return bad_request("prefix is a string and limit an integer");
    };
    let limit = p.limit.unwrap_or(KEYS_DEFAULT).clamp(1, KEYS_MAX);
    let prefix = p.prefix.unwrap_or_default();
    if prefix.len() > PATH_MAX {
        return bad_request("prefix too long");
    }
    api(StatusCode::OK, keys_json(&c.node, prefix.as_bytes(), limit))
}

fn keys_json(node: &RaftNode, prefix: &[u8], limit: usize) -> Value {
    let s = node.state();
    if s.auth().enabled() {
        return json!({ "hidden": true, "keys": [], "more": false });
    }
    let mut keys = Vec::new();
    let mut more = false;
    // Keys with only a tombstone left (not yet compacted) are skipped;
    // values are copied one at a time, for the preview.
    let end = janus_core::store::prefix_end(prefix).unwrap_or_default();
    let start = if prefix.is_empty() {
        &[0u8][..]
    } else {
        prefix
    };
    for kv in s.kv_scan(start, &end, limit.saturating_add(1)) {
        if keys.len() == limit {
            more = true;
            break;
        }
        keys.push(json!({
            "key": display_bytes(&kv.key, NAME_CHARS),
            "value": preview(Some(&kv.value), VALUE_PREVIEW),
            "createRevision": kv.create_revision,
            "modRevision": kv.mod_revision,
            "version": kv.version,
            // etcdctl prints lease ids as 16 hex digits.
            "lease": (kv.lease != 0).then(|| format!("{:016x}", kv.lease)),
        }));
    }
    json!({ "hidden": false, "keys": keys, "more": more })
}

/// `/console/api/sessions`: ZooKeeper sessions and etcd leases (one
/// mechanism in Janus, shown apart).
async fn sessions(State(c): State<Console>) -> Response {
    api(StatusCode::OK, sessions_json(&c.node))
}

fn sessions_json(node: &RaftNode) -> Value {
    let s = node.state();
    let mut sessions = Vec::new();
    let mut leases = Vec::new();
    let (mut session_total, mut lease_total) = (0usize, 0usize);
    for l in s.leases() {
        match &l.session {
            Some(session) => {
                session_total += 1;
                if sessions.len() < LEASES_MAX {
                    sessions.push(json!({
                        "id": format!("0x{:x}", l.id),
                        "timeoutMs": session.timeout_ms,
                        "ephemerals": s.zk_ephemerals(l.id, "").len(),
                    }));
                }
            }
            None => {
                lease_total += 1;
                if leases.len() < LEASES_MAX {
                    leases.push(json!({
                        "id": format!("{:016x}", l.id),
                        "ttlSecs": l.ttl_ms / 1000,
                        "keys": s.lease_keys(l.id).len(),
                    }));
                }
            }
        }
    }
    json!({
        "sessions": sessions,
        "sessionsTotal": session_total,
        "leases": leases,
        "leasesTotal": lease_total,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use janus_core::{Id, KeyValue};

    fn world_read() -> Vec<Acl> {
        vec![Acl {
            perms: perms::READ,
            id: Id {
                scheme: "world".into(),
                id: "anyone".into(),
            },
        }]
    }

    fn digest_only() -> Vec<Acl> {
        vec![Acl {
            perms: perms::ALL,
            id: Id {
                scheme: "digest".into(),
                id: "alice:hash=".into(),
            },
        }]
    }

    fn put(key: &str, value: &str) -> Event {
        Event::KvPut {
            kv: KeyValue {
                key: key.as_bytes().to_vec(),
                value: value.as_bytes().to_vec(),
                ..KeyValue::default()
            },
            prev: None,
        }
    }

    fn row(revision: i64, name: &str) -> Row {
        Row {
            revision,
            personality: Personality::Etcd,
            kind: Kind::Put,
            name: Some(name.to_string()),
            size: Some(1),
            count: 0,
        }
    }

    #[test]
    fn events_become_rows() {
        let batch = EventBatch {
            revision: 7,
            events: vec![
                Event::ZkCreated {
                    path: "/a".into(),
                    acl: world_read(),
                },
                Event::ZkChildrenChanged {
                    path: "/".into(),
                    acl: world_read(),
                },
                Event::ZkDataChanged {
                    path: "/secret".into(),
                    acl: digest_only(),
                },
                Event::ZkDeleted {
                    path: "/b".into(),
                    acl: Vec::new(),
                },
                put("k", "hello"),
                Event::KvDelete {
                    kv: KeyValue {
                        key: vec![b'x', 0xff],
                        ..KeyValue::default()
                    },
                    prev: None,
                },
            ],
        };
        let rows = rows_of(&batch, true, |p| (p == "/a").then_some(3));
        let got: Vec<(Personality, Kind, Option<&str>, Option<u64>)> = rows
            .iter()
            .map(|r| (r.personality, r.kind, r.name.as_deref(), r.size))
            .collect();
        assert_eq!(
            got,
            vec![
                (Personality::Zookeeper, Kind::Created, Some("/a"), Some(3)),
                // No world READ: neither the path nor the size shows.
                (Personality::Zookeeper, Kind::DataChanged, None, None),
                // An empty ACL allows everything.
                (Personality::Zookeeper, Kind::Deleted, Some("/b"), None),
                (Personality::Etcd, Kind::Put, Some("k"), Some(5)),
                (Personality::Etcd, Kind::Delete, Some("x\u{fffd}"), None),
            ]
        );
        assert!(rows.iter().all(|r| r.revision == 7));
        // etcd auth on: keys are not shown.
        let hidden = rows_of(&batch, false, |_| None);
        assert!(hidden
            .iter()
            .filter(|r| r.personality == Personality::Etcd)
            .all(|r| r.name.is_none()));
    }

    #[test]
    fn big_revisions_are_folded() {
        let mut events: Vec<Event> = (0..40).map(|i| put(&format!("k{i}"), "v")).collect();
        events.extend((0..5).map(|i| Event::ZkCreated {
            path: format!("/n{i}"),
            acl: world_read(),
        }));
        let rows = rows_of(
            &EventBatch {
                revision: 3,
                events,
            },
            true,
            |_| None,
        );
        assert_eq!(rows.len(), ROWS_PER_REVISION + 2);
        let more: Vec<(Personality, u64)> = rows
            .iter()
            .filter(|r| r.kind == Kind::More)
            .map(|r| (r.personality, r.count))
            .collect();
        assert_eq!(
            more,
            vec![(Personality::Zookeeper, 5), (Personality::Etcd, 8)]
        );
    }

    #[test]
    fn names_are_cut() {
        assert_eq!(display_name("abc", 3), "abc");
        assert_eq!(display_name("abcd", 3), "abc…");
        assert_eq!(display_name("ééé", 2), "éé…");
        assert_eq!(display_bytes(b"abc", 3), "abc");
        assert_eq!(display_bytes(&[b'a'; 20], 3), "aaa…");
        // A long key is cut before it is decoded, and still marked.
        assert_eq!(display_bytes(&[b'a'; 20], 4), "aaaa…");
        let long = "x".repeat(10_000);
        assert_eq!(
            display_name(&long, NAME_CHARS).chars().count(),
            NAME_CHARS + 1
        );
    }

    #[test]
    fn previews_are_bounded() {
        assert_eq!(preview(None, 8), json!({"null": true, "size": 0}));
        assert_eq!(
            preview(Some(b"hi\nthere"), 8),
            json!({"text": "hi\nthere", "size": 8, "truncated": false})
        );
        assert_eq!(
            preview(Some(b"0123456789"), 4),
            json!({"text": "0123", "size": 10, "truncated": true})
        );
        // "é" is two bytes; the limit cuts it: the text before it shows.
        assert_eq!(
            preview(Some("aé".as_bytes()), 2),
            json!({"text": "a", "size": 3, "truncated": true})
        );
        assert_eq!(
            preview(Some(&[0, 1, 2, 0xff]), 8),
            json!({"hex": "000102ff", "size": 4, "truncated": false})
        );
        assert_eq!(
            preview(Some(&[0xff; 100]), 8),
            json!({"hex": "ffffffff", "size": 100, "truncated": true})
        );
    }

    #[test]
    fn ring_pages_whole_revisions() {
        let mut ring = Ring::new(100);
        ring.push(2, vec![row(2, "a")]);
        ring.push(3, vec![row(3, "b"), row(3, "c"), row(3, "d")]);
        ring.push(5, vec![row(5, "e")]);
        let p = ring.page(0, 2);
        let names: Vec<_> = p.rows.iter().filter_map(|r| r.name.clone()).collect();
        // Revision 3 is not split though it passes the limit.
        assert_eq!(names, ["a", "b", "c", "d"]);
        assert!(p.more);
        assert!(!p.missed);
        let p = ring.page(3, 2);
        assert_eq!(p.rows, vec![row(5, "e")]);
        assert!(!p.more);
        let p = ring.page(5, 10);
        assert!(p.rows.is_empty());
        assert_eq!(p.oldest, Some(2));
    }

    #[test]
    fn ring_drops_oldest_and_says_so() {
        let mut ring = Ring::new(3);
        for rev in 1..=5 {
            ring.push(rev, vec![row(rev, &rev.to_string())]);
        }
        let p = ring.page(0, 10);
        let revs: Vec<i64> = p.rows.iter().map(|r| r.revision).collect();
        assert_eq!(revs, [3, 4, 5]);
        assert!(p.missed, "revisions 1 and 2 were dropped");
        assert_eq!(p.oldest, Some(3));
        assert!(!ring.page(2, 10).missed);
        assert!(ring.page(1, 10).missed);
    }

    #[test]
    fn a_lagged_receiver_leaves_a_gap_row() {
        let mut ring = Ring::new(10);
        ring.push(2, vec![row(2, "a")]);
        ring.lagged(4);
        ring.lagged(1);
        ring.push(9, vec![row(9, "b")]);
        let p = ring.page(0, 10);
        let got: Vec<(i64, Kind, u64)> = p
            .rows
            .iter()
            .map(|r| (r.revision, r.kind, r.count))
            .collect();
        assert_eq!(
            got,
            vec![(2, Kind::Put, 0), (9, Kind::Gap, 5), (9, Kind::Put, 0)]
        );
        // Noted once.
        ring.push(10, vec![row(10, "c")]);
        assert_eq!(ring.page(9, 10).rows, vec![row(10, "c")]);
    }

    #[test]
    fn rows_serialize_for_the_page() {
        let r = Row {
            revision: 12,
            personality: Personality::Zookeeper,
            kind: Kind::DataChanged,
            name: Some("/a".into()),
            size: None,
            count: 0,
        };
        assert_eq!(
            serde_json::to_value(&r).ok(),
            Some(
                json!({"revision": 12, "personality": "zookeeper", "kind": "dataChanged", "name": "/a"})
            )
        );
    }

    #[test]
    fn acl_entries_read_as_zkcli_prints_them() {
        assert_eq!(acl_text(&world_read()[0]), "world:anyone:r");
        assert_eq!(acl_text(&digest_only()[0]), "digest:alice:cdrwa");
    }
}
