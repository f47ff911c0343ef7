//! Change events: what every applied write changed, in apply order, for the
//! adapters' watch machinery. All events of one command share its revision.

use serde::{Deserialize, Serialize};

use crate::mvcc::KeyValue;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    /// A znode was created (ZooKeeper `NodeCreated`).
    ZkCreated { path: String },
    /// A znode was deleted (`NodeDeleted`).
    ZkDeleted { path: String },
    /// A znode's data was set (`NodeDataChanged`).
    ZkDataChanged { path: String },
    /// A znode's child list changed (`NodeChildrenChanged`).
    ZkChildrenChanged { path: String },
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

/// The events of one applied command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventBatch {
    pub revision: i64,
    pub events: Vec<Event>,
}
