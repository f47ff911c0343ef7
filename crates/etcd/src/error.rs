//! etcd's `rpctypes`: the gRPC status code and exact message of every error
//! etcd answers with (clients compare the strings).

use janus_core::EtcdError;
use janus_raft::NodeError;
use tonic::{Code, Status};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RpcError {
    #[error(transparent)]
    Core(#[from] EtcdError),
    #[error("etcdserver: value is provided")]
    ValueProvided,
    #[error("etcdserver: lease is provided")]
    LeaseProvided,
    #[error("etcdserver: invalid sort option")]
    InvalidSortOption,
    #[error("etcdserver: request is too large")]
    RequestTooLarge,
    #[error("etcdserver: no leader")]
    NoLeader,
    #[error("etcdserver: request timed out")]
    Timeout,
    #[error("etcdserver: member not found")]
    MemberNotFound,
    #[error("etcdserver: unhealthy cluster")]
    Unhealthy,
    #[error("etcdserver: can only promote a learner member")]
    MemberNotLearner,
    #[error("etcdserver: bad leader transferee")]
    BadLeaderTransferee,
    #[error("etcdserver: {0}")]
    Internal(String),
}

impl RpcError {
    pub fn code(&self) -> Code {
        use RpcError::*;
        match self {
            Core(EtcdError::LeaseTtlTooLarge) => Code::OutOfRange,
            Core(e) => Code::from_i32(e.grpc_code()),
            ValueProvided | LeaseProvided | InvalidSortOption | RequestTooLarge => {
                Code::InvalidArgument
            }
            NoLeader | Timeout | Unhealthy => Code::Unavailable,
            MemberNotFound => Code::NotFound,
            MemberNotLearner | BadLeaderTransferee => Code::FailedPrecondition,
            Internal(_) => Code::Internal,
        }
    }
}

impl From<RpcError> for Status {
    fn from(e: RpcError) -> Status {
        Status::new(e.code(), e.to_string())
    }
}

impl From<NodeError> for RpcError {
    fn from(e: NodeError) -> RpcError {
        match e {
            NodeError::NoLeader => RpcError::NoLeader,
            NodeError::Timeout | NodeError::Unavailable(_) => RpcError::Timeout,
            other => RpcError::Internal(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_carry_etcd_codes_and_texts() {
        let s: Status = RpcError::Core(EtcdError::Compacted).into();
        assert_eq!(s.code(), Code::OutOfRange);
        assert_eq!(
            s.message(),
            "etcdserver: mvcc: required revision has been compacted"
        );
        let s: Status = RpcError::Core(EtcdError::LeaseNotFound).into();
        assert_eq!(s.code(), Code::NotFound);
        assert_eq!(s.message(), "etcdserver: requested lease not found");
        let s: Status = RpcError::ValueProvided.into();
        assert_eq!(
            (s.code(), s.message()),
            (Code::InvalidArgument, "etcdserver: value is provided")
        );
        let s: Status = RpcError::from(NodeError::NoLeader).into();
        assert_eq!(
            (s.code(), s.message()),
            (Code::Unavailable, "etcdserver: no leader")
        );
    }
}
