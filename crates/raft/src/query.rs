//! Read-only queries against the applied state, as the peer port's `Query`
//! RPC serves them (tests, tools, the console). The personalities read the
//! state directly.

use janus_core::{EtcdError, Lease, RangeRequest, RangeResponse, Stat, State};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Query {
    /// The revision clock and the compacted revision.
    Revision,
    KvRange(RangeRequest),
    /// A znode's data and stat.
    ZkNode(String),
    ZkChildren(String),
    Lease(i64),
    /// Every lease id (sessions included).
    Leases,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum QueryResult {
    Revision { revision: i64, compacted: i64 },
    KvRange(Result<RangeResponse, EtcdError>),
    ZkNode(Option<(Option<Vec<u8>>, Stat)>),
    ZkChildren(Option<Vec<String>>),
    Lease(Option<Lease>),
    Leases(Vec<i64>),
}

pub(crate) fn run(s: &State, q: &Query) -> QueryResult {
    match q {
        Query::Revision => QueryResult::Revision {
            revision: s.revision(),
            compacted: s.compacted_revision(),
        },
        Query::KvRange(r) => QueryResult::KvRange(s.kv_range(r)),
        Query::ZkNode(p) => QueryResult::ZkNode(s.znode(p).map(|n| (n.data, n.stat))),
        Query::ZkChildren(p) => QueryResult::ZkChildren(s.zk_children(p)),
        Query::Lease(id) => QueryResult::Lease(s.lease(*id)),
        Query::Leases => QueryResult::Leases(s.leases().into_iter().map(|l| l.id).collect()),
    }
}
