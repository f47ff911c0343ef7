//! Janus's deterministic state machine.
//!
//! One [`State`] holds the ZooKeeper ZNode tree, the etcd MVCC key space and
//! the leases (ZooKeeper sessions are leases), under one revision clock:
//! every committed write that ZooKeeper would give a zxid or etcd a new
//! revision advances it, so a zxid and a revision are the same number.
//! Applying a [`Proposal`] returns the client's [`Applied`] answer and an
//! [`EventBatch`] for the adapters' watches. Nothing here does I/O, reads a
//! clock or draws a random number: time arrives stamped in the proposal.

pub mod auth;
pub mod command;
mod config_node;
pub mod error;
pub mod event;
pub mod lease;
pub mod legacy;
pub mod mvcc;
pub mod state;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;
pub mod zk;
pub mod zk_acl;

pub use auth::{AuthInfo, AuthOp, AuthState, PermType, Permission, Role, User};
pub use command::*;
pub use config_node::CONFIG_NODE;
pub use error::{EtcdError, ZkError};
pub use event::{Event, EventBatch};
pub use lease::{Lease, Session};
pub use mvcc::KeyValue;
pub use state::{LoadError, State};
pub use store::{Change, MemStore, Store, Table};
pub use zk::{Acl, CreateMode, Id, Stat, ZNode};
