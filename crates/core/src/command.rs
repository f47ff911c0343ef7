//! The one `Command` enum both personalities propose, and what applying it returns.
//!
//! These types travel in the Raft log, so they are serde types; the adapters
//! translate their wire records into them and the results back.

use serde::{Deserialize, Serialize};

use crate::auth::AuthOp;
use crate::error::{EtcdError, ZkError};
use crate::mvcc::KeyValue;
use crate::zk::{Acl, CreateMode, Id, Stat};

/// A log entry's payload: a command and the leader's wall clock when it
/// proposed it. `core` never reads a clock itself (design decision 3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    /// Milliseconds since the Unix epoch, stamped by the leader.
    pub time_ms: i64,
    pub command: Command,
}

/// One Raft log entry: the commands proposed while the previous entry was
/// being written, in arrival order, stamped once by the leader. Batching
/// here is what gives group commit: openraft fsyncs once per entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProposalBatch {
    /// Milliseconds since the Unix epoch, stamped by the leader.
    pub time_ms: i64,
    pub commands: Vec<Command>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Does nothing; used to test the write path.
    Noop,
    /// Open a ZooKeeper session: a lease whose TTL is the negotiated timeout.
    ZkCreateSession {
        session: i64,
        password: Vec<u8>,
        timeout_ms: i64,
    },
    /// Close a ZooKeeper session (client request): its ephemerals go.
    ZkCloseSession {
        session: i64,
    },
    /// One ZooKeeper write by `session` (0 = no session, internal).
    Zk {
        session: i64,
        op: ZkOp,
    },
    /// An all-or-nothing ZooKeeper multi by `session`.
    ZkMulti {
        session: i64,
        ops: Vec<ZkOp>,
    },
    /// The leader's container/TTL reaper: delete `path` if it is still an
    /// empty container, or an empty TTL node whose TTL has passed.
    ZkDeleteContainer {
        path: String,
    },
    Put(PutRequest),
    DeleteRange(DeleteRangeRequest),
    Txn(TxnRequest),
    Compact {
        revision: i64,
    },
    LeaseGrant {
        id: i64,
        ttl_secs: i64,
    },
    LeaseRevoke {
        id: i64,
    },
    /// The leader saw a lease's (or session's) deadline pass.
    LeaseExpire {
        id: i64,
    },
    /// An etcd auth-store change; outside `AsUser` it is checked as a
    /// request without credentials.
    Auth(AuthOp),
    /// `command` on behalf of an etcd user: applied only if etcd's auth
    /// applier would let `user` (credentials checked at auth revision
    /// `auth_revision`; empty user = none) do it while auth is enabled.
    AsUser {
        user: String,
        auth_revision: u64,
        command: Box<Command>,
    },
    /// etcd's Maintenance.Alarm ACTIVATE/DEACTIVATE: raise or clear alarm
    /// `kind` (etcd's AlarmType number: 1 NOSPACE, 2 CORRUPT) for
    /// `member` (an etcd member id). Takes no revision, as in etcd.
    Alarm {
        activate: bool,
        member: u64,
        kind: i32,
    },
    /// A `Zk` or `ZkMulti` from client connection `owner` whose
    /// authenticated ids are `ids`: ACLs are checked as the ops apply, where ZooKeeper's
    /// PrepRequestProcessor checks them (against what every earlier txn
    /// left, so pipelined writes of one session see each other), and a
    /// write refused for an ACL still takes a zxid. Bare `Zk`/`ZkMulti` are
    /// the server's own and are not checked.
    ZkAs {
        ids: Vec<Id>,
        /// The connection the write came from; if the session has since
        /// been re-established on another one, the write fails with
        /// SESSIONMOVED (ZooKeeper's `checkSession(id, owner)`).
        owner: u64,
        command: Box<Command>,
    },
    /// ZooKeeper session `session` was re-established on connection
    /// `owner`: from now on only that connection's writes are its writes.
    /// Takes no zxid.
    ZkAttach {
        session: i64,
        owner: u64,
    },
}

impl Command {
    /// Whether this command comes from or concerns the ZooKeeper side; such
    /// commands always take a zxid, as every ZooKeeper txn does.
    pub fn is_zk(&self) -> bool {
        matches!(
            self,
            Command::ZkCreateSession { .. }
                | Command::ZkCloseSession { .. }
                | Command::Zk { .. }
                | Command::ZkMulti { .. }
                | Command::ZkDeleteContainer { .. }
                | Command::ZkAs { .. }
        )
    }

    /// Roughly how many bytes this command takes in the log: keys, values,
    /// paths and data, plus a small constant per command. The proposer uses
    /// it to bound log entries (and so replication messages) by size.
    pub fn approx_bytes(&self) -> usize {
        const BASE: usize = 16;
        fn op_bytes(op: &RequestOp) -> usize {
            BASE + match op {
                RequestOp::Range(r) => r.key.len() + r.range_end.len(),
                RequestOp::Put(p) => p.key.len() + p.value.len(),
                RequestOp::DeleteRange(d) => d.key.len() + d.range_end.len(),
                RequestOp::Txn(t) => txn_bytes(t),
            }
        }
        fn txn_bytes(t: &TxnRequest) -> usize {
            let compares: usize = t
                .compare
                .iter()
                .map(|c| {
                    let v = match &c.target {
                        CompareTarget::Value(v) => v.len(),
                        _ => 8,
                    };
                    BASE + c.key.len() + c.range_end.len() + v
                })
                .sum();
            compares
                + t.success.iter().map(op_bytes).sum::<usize>()
                + t.failure.iter().map(op_bytes).sum::<usize>()
        }
        fn zk_bytes(op: &ZkOp) -> usize {
            let data = match op {
                ZkOp::Create { data, acl, .. } => {
                    data.as_ref().map_or(0, Vec::len) + acl.len() * 32
                }
                ZkOp::SetData { data, .. } => data.as_ref().map_or(0, Vec::len),
                ZkOp::SetAcl { acl, .. } => acl.len() * 32,
                ZkOp::Delete { .. } | ZkOp::Check { .. } => 0,
            };
            BASE + op.path().len() + data
        }
        BASE + match self {
            Command::Put(p) => p.key.len() + p.value.len(),
            Command::DeleteRange(d) => d.key.len() + d.range_end.len(),
            Command::Txn(t) => txn_bytes(t),
            Command::Zk { op, .. } => zk_bytes(op),
            Command::ZkMulti { ops, .. } => ops.iter().map(zk_bytes).sum(),
            Command::ZkDeleteContainer { path } => path.len(),
            Command::ZkCreateSession { password, .. } => password.len(),
            Command::AsUser { user, command, .. } => user.len() + command.approx_bytes(),
            Command::ZkAs { ids, command, .. } => ids.len() * 32 + command.approx_bytes(),
            _ => 0,
        }
    }
}

/// A ZooKeeper write operation (also the ops allowed in a multi).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ZkOp {
    /// `ttl_ms` is -1 unless `mode` is a TTL mode.
    Create {
        path: String,
        /// `None` is the client's null data (ZooKeeper keeps it apart from empty).
        #[serde(with = "serde_bytes")]
        data: Option<Vec<u8>>,
        acl: Vec<Acl>,
        mode: CreateMode,
        ttl_ms: i64,
    },
    Delete {
        path: String,
        version: i32,
    },
    SetData {
        path: String,
        #[serde(with = "serde_bytes")]
        data: Option<Vec<u8>>,
        version: i32,
    },
    SetAcl {
        path: String,
        acl: Vec<Acl>,
        version: i32,
    },
    Check {
        path: String,
        version: i32,
    },
}

impl ZkOp {
    pub fn path(&self) -> &str {
        match self {
            ZkOp::Create { path, .. }
            | ZkOp::Delete { path, .. }
            | ZkOp::SetData { path, .. }
            | ZkOp::SetAcl { path, .. }
            | ZkOp::Check { path, .. } => path,
        }
    }
}

/// The result of one ZooKeeper op.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ZkOpResult {
    /// The created node's actual path (with a sequential suffix) and stat.
    Create {
        path: String,
        stat: Stat,
    },
    Delete,
    SetData {
        stat: Stat,
    },
    SetAcl {
        stat: Stat,
    },
    Check,
    /// Inside a failed multi: ops before the failure carry `None` (ZooKeeper's
    /// `ErrorResult(0)`), the failing op its error, later ops
    /// `RuntimeInconsistency`.
    Error(Option<ZkError>),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ZkResponse {
    Session,
    Op(ZkOpResult),
    /// One result per op; either all succeeded or all are `Error`.
    Multi(Vec<ZkOpResult>),
}

// ---- etcd requests, mirroring etcdserverpb field for field (minus headers) ----

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum SortOrder {
    #[default]
    None,
    Ascend,
    Descend,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum SortTarget {
    #[default]
    Key,
    Version,
    Create,
    Mod,
    Value,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RangeRequest {
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub range_end: Vec<u8>,
    pub limit: i64,
    pub revision: i64,
    pub sort_order: SortOrder,
    pub sort_target: SortTarget,
    pub keys_only: bool,
    pub count_only: bool,
    pub min_mod_revision: i64,
    pub max_mod_revision: i64,
    pub min_create_revision: i64,
    pub max_create_revision: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RangeResponse {
    pub kvs: Vec<KeyValue>,
    pub more: bool,
    pub count: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PutRequest {
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
    pub lease: i64,
    pub prev_kv: bool,
    pub ignore_value: bool,
    pub ignore_lease: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PutResponse {
    pub prev_kv: Option<KeyValue>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DeleteRangeRequest {
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub range_end: Vec<u8>,
    pub prev_kv: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DeleteRangeResponse {
    pub deleted: i64,
    pub prev_kvs: Vec<KeyValue>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompareResult {
    Equal,
    Greater,
    Less,
    NotEqual,
}

/// What a compare looks at, with the value to compare against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompareTarget {
    Version(i64),
    Create(i64),
    Mod(i64),
    Value(Vec<u8>),
    Lease(i64),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compare {
    pub result: CompareResult,
    pub target: CompareTarget,
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub range_end: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RequestOp {
    Range(RangeRequest),
    Put(PutRequest),
    DeleteRange(DeleteRangeRequest),
    Txn(TxnRequest),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResponseOp {
    Range(RangeResponse),
    Put(PutResponse),
    DeleteRange(DeleteRangeResponse),
    Txn(TxnResponse),
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TxnRequest {
    pub compare: Vec<Compare>,
    pub success: Vec<RequestOp>,
    pub failure: Vec<RequestOp>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TxnResponse {
    pub succeeded: bool,
    pub responses: Vec<ResponseOp>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EtcdResponse {
    Put(PutResponse),
    DeleteRange(DeleteRangeResponse),
    Txn(TxnResponse),
    Compact,
    LeaseGrant {
        id: i64,
        ttl_secs: i64,
    },
    LeaseRevoke,
    /// An auth-store change went through.
    Auth,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    Noop,
    Zk(Result<ZkResponse, ZkError>),
    Etcd(Result<EtcdResponse, EtcdError>),
    /// `LeaseExpire`: whether the lease still existed.
    Expired(bool),
    /// `Alarm`: the alarm activated, or deactivated if it was raised.
    Alarm(Option<(u64, i32)>),
}

/// What applying one proposal produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// The revision clock after the command (the zxid of a ZooKeeper txn,
    /// the header revision of an etcd write).
    pub revision: i64,
    pub response: Response,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(value_len: usize) -> Command {
        Command::Put(PutRequest {
            key: b"k".to_vec(),
            value: vec![0; value_len],
            lease: 0,
            prev_kv: false,
            ignore_value: false,
            ignore_lease: false,
        })
    }

    #[test]
    fn approx_bytes_follows_the_payload() {
        let small = put(0).approx_bytes();
        let big = put(64 << 10).approx_bytes();
        assert!(small > 0);
        assert_eq!(big - small, 64 << 10);
        let txn = Command::Txn(TxnRequest {
            compare: vec![],
            success: vec![RequestOp::Put(PutRequest {
                key: b"k".to_vec(),
                value: vec![0; 1000],
                lease: 0,
                prev_kv: false,
                ignore_value: false,
                ignore_lease: false,
            })],
            failure: vec![],
        });
        assert!(txn.approx_bytes() >= 1001);
        assert!(Command::Noop.approx_bytes() > 0);
    }
}
