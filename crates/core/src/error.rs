//! Typed errors with the originals' codes and message texts: clients branch on them.

use serde::{Deserialize, Serialize};

/// A ZooKeeper `KeeperException.Code`, with ZooKeeper's numeric value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, thiserror::Error)]
pub enum ZkError {
    #[error("RuntimeInconsistency")]
    RuntimeInconsistency,
    #[error("DataInconsistency")]
    DataInconsistency,
    #[error("ConnectionLoss")]
    ConnectionLoss,
    #[error("MarshallingError")]
    MarshallingError,
    #[error("Unimplemented")]
    Unimplemented,
    #[error("OperationTimeout")]
    OperationTimeout,
    #[error("BadArguments")]
    BadArguments,
    #[error("NoNode")]
    NoNode,
    #[error("NoAuth")]
    NoAuth,
    #[error("BadVersion")]
    BadVersion,
    #[error("NoChildrenForEphemerals")]
    NoChildrenForEphemerals,
    #[error("NodeExists")]
    NodeExists,
    #[error("Directory not empty")]
    NotEmpty,
    #[error("Session expired")]
    SessionExpired,
    #[error("Invalid ACL")]
    InvalidAcl,
    #[error("AuthFailed")]
    AuthFailed,
    #[error("Session moved")]
    SessionMoved,
    #[error("Not a read-only call")]
    NotReadOnly,
    #[error("Ephemeral node on local session")]
    EphemeralOnLocalSession,
    #[error("No such watcher")]
    NoWatcher,
    #[error("Request timeout")]
    RequestTimeout,
    #[error("Reconfig is disabled")]
    ReconfigDisabled,
    #[error("Quota has exceeded")]
    QuotaExceeded,
}

impl ZkError {
    /// ZooKeeper's numeric code (`KeeperException.Code.intValue()`).
    pub fn code(self) -> i32 {
        use ZkError::*;
        match self {
            RuntimeInconsistency => -2,
            DataInconsistency => -3,
            ConnectionLoss => -4,
            MarshallingError => -5,
            Unimplemented => -6,
            OperationTimeout => -7,
            BadArguments => -8,
            NoNode => -101,
            NoAuth => -102,
            BadVersion => -103,
            NoChildrenForEphemerals => -108,
            NodeExists => -110,
            NotEmpty => -111,
            SessionExpired => -112,
            InvalidAcl => -114,
            AuthFailed => -115,
            SessionMoved => -118,
            NotReadOnly => -119,
            EphemeralOnLocalSession => -120,
            NoWatcher => -121,
            RequestTimeout => -122,
            ReconfigDisabled => -123,
            QuotaExceeded => -125,
        }
    }
}

/// An etcd server error; `Display` is the text etcd's gRPC status carries.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, thiserror::Error)]
pub enum EtcdError {
    #[error("etcdserver: mvcc: required revision has been compacted")]
    Compacted,
    #[error("etcdserver: mvcc: required revision is a future revision")]
    FutureRev,
    #[error("etcdserver: key not found")]
    KeyNotFound,
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    #[error("etcdserver: lease already exists")]
    LeaseExists,
    #[error("etcdserver: too large lease TTL")]
    LeaseTtlTooLarge,
    #[error("etcdserver: key is not provided")]
    EmptyKey,
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKey,
    #[error("etcdserver: too many operations in txn request")]
    TooManyOps,
    #[error("etcdserver: root user does not exist")]
    RootUserNotExist,
    #[error("etcdserver: root user does not have root role")]
    RootRoleNotExist,
    #[error("etcdserver: user name already exists")]
    UserAlreadyExist,
    #[error("etcdserver: user name is empty")]
    UserEmpty,
    #[error("etcdserver: user name not found")]
    UserNotFound,
    #[error("etcdserver: role name already exists")]
    RoleAlreadyExist,
    #[error("etcdserver: role name not found")]
    RoleNotFound,
    #[error("etcdserver: role name is empty")]
    RoleEmpty,
    #[error("etcdserver: authentication failed, invalid user ID or password")]
    AuthFailed,
    #[error("etcdserver: permission not given")]
    PermissionNotGiven,
    #[error("etcdserver: permission denied")]
    PermissionDenied,
    #[error("etcdserver: role is not granted to the user")]
    RoleNotGranted,
    #[error("etcdserver: permission is not granted to the role")]
    PermissionNotGranted,
    #[error("etcdserver: authentication is not enabled")]
    AuthNotEnabled,
    #[error("etcdserver: invalid auth token")]
    InvalidAuthToken,
    #[error("etcdserver: invalid auth management")]
    InvalidAuthMgmt,
    #[error("etcdserver: revision of auth store is old")]
    AuthOldRevision,
    /// etcd has no gRPC mapping for this one: clients see code Unknown and
    /// the auth package's own text.
    #[error("auth: authentication failed, password was given for no password user")]
    NoPasswordUser,
}

impl EtcdError {
    /// The gRPC status code etcd answers this error with.
    pub fn grpc_code(&self) -> i32 {
        use EtcdError::*;
        match self {
            // codes.OutOfRange
            Compacted | FutureRev | LeaseTtlTooLarge => 11,
            // codes.InvalidArgument
            KeyNotFound | EmptyKey | DuplicateKey | TooManyOps => 3,
            UserEmpty | RoleEmpty | AuthFailed | PermissionNotGiven | InvalidAuthMgmt
            | AuthOldRevision => 3,
            // codes.NotFound
            LeaseNotFound => 5,
            // codes.FailedPrecondition
            LeaseExists => 9,
            RootUserNotExist | RootRoleNotExist | UserAlreadyExist | UserNotFound
            | RoleAlreadyExist | RoleNotFound | RoleNotGranted | PermissionNotGranted
            | AuthNotEnabled => 9,
            // codes.PermissionDenied
            PermissionDenied => 7,
            // codes.Unauthenticated
            InvalidAuthToken => 16,
            // codes.Unknown
            NoPasswordUser => 2,
        }
    }
}
