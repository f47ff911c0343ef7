//! Leases and ZooKeeper sessions: one mechanism (design decision 2).
//!
//! Deadlines are not here: the leader tracks them and proposes
//! `LeaseExpire`. Here a lease is its id, its granted TTL and what is
//! attached to it.

use serde::{Deserialize, Serialize};

use crate::command::{EtcdResponse, Response, ZkResponse};
use crate::error::{EtcdError, ZkError};
use crate::state::{decode, encode, State};
use crate::store::{prefix_end, Table};
use crate::zk::lease_key_key;
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
}

fn lease_row(id: i64) -> [u8; 8] {
    (id as u64).to_be_bytes()
}

impl State {
    pub fn lease(&self, id: i64) -> Option<Lease> {
        self.db
            .get(Table::Lease, &lease_row(id))
            .and_then(|raw| decode(&raw))
    }

    /// Every lease and session, by id (as unsigned: negative ids last).
    pub fn leases(&self) -> Vec<Lease> {
        let mut out = Vec::new();
        self.db.scan(Table::Lease, b"", None, false, &mut |_, v| {
            if let Some(l) = decode(v) {
                out.push(l);
            }
            true
        });
        out
    }

    pub(crate) fn import_lease(&mut self, l: &Lease) {
        self.put_lease(l);
    }

    fn put_lease(&mut self, l: &Lease) {
        self.db
            .put(Table::Lease, lease_row(l.id).to_vec(), encode(l));
    }

    /// The etcd keys attached to lease `id`, in order.
    pub fn lease_keys(&self, id: i64) -> Vec<Vec<u8>> {
        self.lease_items(&lease_key_key(id, b""))
    }

    /// The attachments under one `LeaseItem` prefix (a lease and a kind),
    /// without the prefix.
    pub(crate) fn lease_items(&self, prefix: &[u8]) -> Vec<Vec<u8>> {
        let end = prefix_end(prefix);
        let mut out = Vec::new();
        self.db.scan(
            Table::LeaseItem,
            prefix,
            end.as_deref(),
            false,
            &mut |k, _| {
                out.push(k[prefix.len()..].to_vec());
                true
            },
        );
        out
    }

    pub(crate) fn lease_attach(&mut self, id: i64, key: &[u8]) {
        self.db
            .put(Table::LeaseItem, lease_key_key(id, key), Vec::new());
    }

    pub(crate) fn lease_detach(&mut self, id: i64, key: &[u8]) {
        self.db.delete(Table::LeaseItem, &lease_key_key(id, key));
    }

    pub(crate) fn lease_grant(&mut self, id: i64, ttl_secs: i64) -> Response {
        if id == 0 || self.db.contains(Table::Lease, &lease_row(id)) {
            return Response::Etcd(Err(EtcdError::LeaseExists));
        }
        if ttl_secs > MAX_LEASE_TTL_SECS {
            return Response::Etcd(Err(EtcdError::LeaseTtlTooLarge));
        }
        let ttl_ms = ttl_secs.saturating_mul(1000);
        self.put_lease(&Lease {
            id,
            ttl_ms,
            session: None,
        });
        Response::Etcd(Ok(EtcdResponse::LeaseGrant { id, ttl_secs }))
    }

    pub(crate) fn session_create(&mut self, id: i64, password: &[u8], timeout_ms: i64) -> Response {
        self.next_zxid();
        // A session id is stored as ephemeralOwner: it must not read as the
        // container or TTL marker (ZooKeeper never issues such ids).
        let valid = NodeKind::of_owner(id) == NodeKind::Ephemeral(id);
        if !valid || self.db.contains(Table::Lease, &lease_row(id)) {
            return Response::Zk(Err(ZkError::BadArguments));
        }
        let session = Session {
            password: password.to_vec(),
            timeout_ms,
            owner: 0,
        };
        self.put_lease(&Lease {
            id,
            ttl_ms: timeout_ms,
            session: Some(session),
        });
        Response::Zk(Ok(ZkResponse::Session))
    }

    /// A client re-established session `id` on connection `owner`. Takes
    /// no zxid: ZooKeeper's session tracker changes the owner outside the log.
    pub(crate) fn session_attach(&mut self, id: i64, owner: u64) -> Response {
        match self.lease(id) {
            Some(mut l) if l.session.is_some() => {
                if let Some(s) = l.session.as_mut() {
                    s.owner = owner;
                }
                self.put_lease(&l);
                Response::Zk(Ok(ZkResponse::Session))
            }
            _ => Response::Zk(Err(ZkError::SessionExpired)),
        }
    }

    pub(crate) fn session_close(&mut self, time: i64, id: i64) -> Response {
        let zxid = self.next_zxid();
        if !self.lease(id).is_some_and(|l| l.session.is_some()) {
            return Response::Zk(Err(ZkError::SessionExpired));
        }
        self.end_lease(zxid, time, id);
        Response::Zk(Ok(ZkResponse::Session))
    }

    pub(crate) fn lease_revoke(&mut self, time: i64, id: i64) -> Response {
        // The etcd API does not see ZooKeeper sessions: revoking one is
        // refused as an unknown lease, as keep-alive and timetolive are.
        if !self.lease(id).is_some_and(|l| l.session.is_none()) {
            return Response::Etcd(Err(EtcdError::LeaseNotFound));
        }
        self.end_lease(0, time, id);
        Response::Etcd(Ok(EtcdResponse::LeaseRevoke))
    }

    /// Expiry: a session closes as ZooKeeper's closeSession txn does (taking a
    /// zxid); an etcd lease is revoked (a revision only if keys go).
    pub(crate) fn lease_expire(&mut self, time: i64, id: i64) -> Response {
        let Some(lease) = self.lease(id) else {
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
        if self.lease(id).is_none() {
            return;
        }
        let has_ephemerals = !self.zk_ephemerals(id, "").is_empty();
        let keys = self.lease_keys(id);
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
        for k in keys {
            self.lease_detach(id, &k);
        }
        self.db.delete(Table::Lease, &lease_row(id));
    }
}
