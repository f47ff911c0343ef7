//! Janus's Raft layer: openraft over a tonic peer network.
//!
//! - [`RaftNode`] runs a member: it opens the RocksDB store, starts openraft,
//!   initializes a new cluster on first start, proposes commands (forwarding
//!   them to the leader from any member) and serves linearizable reads
//!   through Raft's read index.
//! - [`PeerService`] is the peer port's gRPC service (`proto/janus/peer.proto`).

mod election;
pub mod lessor;
pub mod membership;
pub mod network;
pub mod node;
pub mod pipeline;
pub mod query;
mod read_rounds;
pub mod service;
pub mod transfer;

/// Types generated from `proto/janus/peer.proto`.
pub mod proto {
    tonic::include_proto!("janus.peer.v1");
}

pub use janus_store::{Backup, Member, NodeId, TypeConfig};
pub use membership::{url_addr, MembershipDone, MembershipError, MembershipOp};
pub use network::{peer_tls, set_peer_tls, PeerTls};
pub use node::{NodeConfig, NodeError, NodeStats, RaftNode};
pub use pipeline::Pipeline;
pub use query::{Query, QueryResult};
pub use service::PeerService;
pub use transfer::TransferError;
