//! Change events: what every applied write changed, in apply order, for the
//! adapters' watch machinery. All events of one command share its revision.

use serde::{Deserialize, Serialize};

use crate::mvcc::KeyValue;
use crate::zk::Acl;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    // Each ZooKeeper event carries the ACL of the node it is about (the
    // parent's for NodeChildrenChanged), as ZooKeeper's `triggerWatch`
    // does: a watcher without READ on it is not told (ZooKeeper 3.8.4+,
    // CVE-2024-23944), and for a deleted node nothing else knows it.
    /// A znode was created (ZooKeeper `NodeCreated`).
    ZkCreated { path: String, acl: Vec<Acl> },
    /// A znode was deleted (`NodeDeleted`).
    ZkDeleted { path: String, acl: Vec<Acl> },
    /// A znode's data was set (`NodeDataChanged`).
    ZkDataChanged { path: String, acl: Vec<Acl> },
    /// A znode's child list changed (`NodeChildrenChanged`).
    ZkChildrenChanged { path: String, acl: Vec<Acl> },
    /// An etcd key was put; `prev` is the key's previous live version.
    KvPut {
        kv: KeyValue,
        prev: Option<KeyValue>,
    },
    /// An etcd key was deleted; `kv` holds the key and the deleting revision.
    KvDelete {
        kv: KeyValue,
        prev: Option<KeyValue>,
    },
}

impl Event {
    /// About how many bytes this event holds (keys, values, paths), for
    /// caches bounded by memory.
    pub fn approx_bytes(&self) -> usize {
        let kv = |kv: &KeyValue| kv.key.len() + kv.value.len() + 48;
        match self {
            Event::ZkCreated { path, acl }
            | Event::ZkDeleted { path, acl }
            | Event::ZkDataChanged { path, acl }
            | Event::ZkChildrenChanged { path, acl } => path.len() + 32 * acl.len() + 32,
            Event::KvPut { kv: k, prev } | Event::KvDelete { kv: k, prev } => {
                kv(k) + prev.as_ref().map_or(0, kv)
            }
        }
    }

    /// The ACL a ZooKeeper event is checked against; `None` for etcd events.
    pub fn zk_acl(&self) -> Option<&[Acl]> {
        match self {
            Event::ZkCreated { acl, .. }
            | Event::ZkDeleted { acl, .. }
            | Event::ZkDataChanged { acl, .. }
            | Event::ZkChildrenChanged { acl, .. } => Some(acl),
            _ => None,
        }
    }
}

/// The events of one applied command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventBatch {
    pub revision: i64,
    pub events: Vec<Event>,
}
