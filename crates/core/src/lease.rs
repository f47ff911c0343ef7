//! Leases and ZooKeeper sessions: one mechanism (design decision 2).
//!
//! Deadlines are not here: the leader tracks them and proposes
//! `LeaseExpire`. Here a lease is its id, its granted TTL and what is
//! attached to it.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::command::{EtcdResponse, Response, ZkResponse};
use crate::error::{EtcdError, ZkError};
use crate::state::State;
use crate::zk::NodeKind;

/// etcd's `MaxLeaseTTL` (seconds).
pub const MAX_LEASE_TTL_SECS: i64 = 9_000_000_000;

/// What makes a lease a ZooKeeper session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub password: Vec<u8>,
    pub timeout_ms: i64,
    /// The client connection the session was last re-established on
    /// (`Command::ZkAttach`); 0 until it moves from the one that made it.
    /// Writes from any other connection fail with SESSIONMOVED.
    pub owner: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub id: i64,
    /// The granted TTL in milliseconds (etcd's seconds × 1000, or a
    /// session's negotiated timeout).
    pub ttl_ms: i64,
    /// `Some` when this lease is a ZooKeeper session.
    pub session: Option<Session>,
    /// Attached etcd keys.
    pub keys: BTreeSet<Vec<u8>>,
    /// Attached ephemeral znodes.
    pub ephemerals: BTreeSet<String>,
}

impl State {
    pub fn lease(&self, id: i64) -> Option<&Lease> {
        self.leases.get(&id)
    }

    pub fn leases(&self) -> impl Iterator<Item = &Lease> {
        self.leases.values()
    }

    pub(crate) fn lease_grant(&mut self, id: i64, ttl_secs: i64) -> Response {
        if id == 0 || self.leases.contains_key(&id) {
            return Response::Etcd(Err(EtcdError::LeaseExists));
        }
        if ttl_secs > MAX_LEASE_TTL_SECS {
            return Response::Etcd(Err(EtcdError::LeaseTtlTooLarge));
        }
        let ttl_ms = ttl_secs.saturating_mul(1000);
        self.leases.insert(
            id,
            Lease {
                id,
                ttl_ms,
                session: None,
                keys: BTreeSet::new(),
                ephemerals: BTreeSet::new(),
            },
        );
        Response::Etcd(Ok(EtcdResponse::LeaseGrant { id, ttl_secs }))
    }

    pub(crate) fn session_create(&mut self, id: i64, password: &[u8], timeout_ms: i64) -> Response {
        self.next_zxid();
        // A session id is stored as ephemeralOwner: it must not read as the
        // container or TTL marker (ZooKeeper never issues such ids).
        let valid = NodeKind::of_owner(id) == NodeKind::Ephemeral(id);
        if !valid || self.leases.contains_key(&id) {
            return Response::Zk(Err(ZkError::BadArguments));
        }
        let session = Session {
            password: password.to_vec(),
            timeout_ms,
            owner: 0,
        };
        self.leases.insert(
            id,
            Lease {
                id,
                ttl_ms: timeout_ms,
                session: Some(session),
                keys: BTreeSet::new(),
                ephemerals: BTreeSet::new(),
            },
        );
        Response::Zk(Ok(ZkResponse::Session))
    }

    /// A client re-established session `id` on connection `owner`. Takes
    /// no zxid: ZooKeeper's session tracker changes the owner outside the log.
    pub(crate) fn session_attach(&mut self, id: i64, owner: u64) -> Response {
        match self.leases.get_mut(&id).and_then(|l| l.session.as_mut()) {
            Some(s) => {
                s.owner = owner;
                Response::Zk(Ok(ZkResponse::Session))
            }
            None => Response::Zk(Err(ZkError::SessionExpired)),
        }
    }

    pub(crate) fn session_close(&mut self, time: i64, id: i64) -> Response {
        let zxid = self.next_zxid();
        if !self.leases.get(&id).is_some_and(|l| l.session.is_some()) {
            return Response::Zk(Err(ZkError::SessionExpired));
        }
        self.end_lease(zxid, time, id);
        Response::Zk(Ok(ZkResponse::Session))
    }

    pub(crate) fn lease_revoke(&mut self, time: i64, id: i64) -> Response {
        // The etcd API does not see ZooKeeper sessions: revoking one is
        // refused as an unknown lease, as keep-alive and timetolive are.
        if !self.leases.get(&id).is_some_and(|l| l.session.is_none()) {
            return Response::Etcd(Err(EtcdError::LeaseNotFound));
        }
        self.end_lease(0, time, id);
        Response::Etcd(Ok(EtcdResponse::LeaseRevoke))
    }

    /// Expiry: a session closes as ZooKeeper's closeSession txn does (taking a
    /// zxid); an etcd lease is revoked (a revision only if keys go).
    pub(crate) fn lease_expire(&mut self, time: i64, id: i64) -> Response {
        let Some(lease) = self.leases.get(&id) else {
            return Response::Expired(false);
        };
        let zxid = if lease.session.is_some() {
            self.next_zxid()
        } else {
            0
        };
        self.end_lease(zxid, time, id);
        Response::Expired(true)
    }

    /// Delete everything attached to the lease, then the lease. `zxid` is
    /// the already-taken zxid for ZooKeeper-side removals (0: none taken).
    fn end_lease(&mut self, zxid: i64, time: i64, id: i64) {
        let Some(lease) = self.leases.get(&id) else {
            return;
        };
        let has_ephemerals = !lease.ephemerals.is_empty();
        let keys: Vec<Vec<u8>> = lease.keys.iter().cloned().collect();
        if has_ephemerals {
            let zxid = if zxid == 0 { self.next_zxid() } else { zxid };
            self.zk_kill_session(zxid, time, id);
        }
        if !keys.is_empty() {
            // All attached keys go in one revision; if the ZooKeeper side
            // already took one for this command, share it.
            let rev = if has_ephemerals || zxid != 0 {
                self.revision
            } else {
                self.revision + 1
            };
            self.kv_delete_keys_at(rev, &keys);
            self.revision = rev;
        }
        self.leases.remove(&id);
    }
}
