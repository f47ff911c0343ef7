//! The MVCC key space: etcd's flat, revisioned keys.
//!
//! Each key keeps its versions in revision order (a put or a tombstone);
//! reads at any revision at or after the compacted one see exactly the state
//! after that revision. Semantics follow etcd 3.5's `mvcc` and `apply`
//! packages: a write request takes one revision however many keys it
//! touches, and only if it changes something.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::ops::Bound;

use serde::{Deserialize, Serialize};

use crate::command::{
    Compare, CompareResult, CompareTarget, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, RequestOp, ResponseOp, SortOrder, SortTarget,
    TxnRequest, TxnResponse,
};
use crate::error::EtcdError;
use crate::event::Event;
use crate::state::State;

/// etcd's `mvccpb.KeyValue`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct KeyValue {
    pub key: Vec<u8>,
    pub create_revision: i64,
    pub mod_revision: i64,
    pub version: i64,
    pub value: Vec<u8>,
    pub lease: i64,
}

/// One version of a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Rev {
    Put {
        create_revision: i64,
        mod_revision: i64,
        version: i64,
        value: Vec<u8>,
        lease: i64,
    },
    Del {
        mod_revision: i64,
    },
}

impl Rev {
    /// What this version adds to the backend size estimate (the quota):
    /// key and value bytes; a tombstone counts its key.
    pub(crate) fn cost(&self, key: &[u8]) -> u64 {
        match self {
            Rev::Put { value, .. } => (key.len() + value.len()) as u64,
            Rev::Del { .. } => key.len() as u64,
        }
    }

    fn mod_revision(&self) -> i64 {
        match self {
            Rev::Put { mod_revision, .. } | Rev::Del { mod_revision } => *mod_revision,
        }
    }
    fn to_kv(&self, key: &[u8]) -> Option<KeyValue> {
        match self {
            Rev::Put {
                create_revision,
                mod_revision,
                version,
                value,
                lease,
            } => Some(KeyValue {
                key: key.to_vec(),
                create_revision: *create_revision,
                mod_revision: *mod_revision,
                version: *version,
                value: value.clone(),
                lease: *lease,
            }),
            Rev::Del { .. } => None,
        }
    }
}

/// Versions of one key, oldest first.
pub(crate) type History = Vec<Rev>;
pub(crate) type KeySpace = BTreeMap<Vec<u8>, History>;

/// The version of a key visible at `rev`.
fn at(hist: &History, rev: i64) -> Option<&Rev> {
    let n = hist.partition_point(|r| r.mod_revision() <= rev);
    if n == 0 {
        None
    } else {
        hist.get(n - 1).filter(|r| matches!(r, Rev::Put { .. }))
    }
}

/// Bounds of `[key, range_end)` with etcd's conventions: empty end = the key
/// alone; end "\0" = everything from key on.
fn bounds<'a>(key: &'a [u8], range_end: &'a [u8]) -> Option<(Bound<&'a [u8]>, Bound<&'a [u8]>)> {
    if range_end.is_empty() {
        Some((Bound::Included(key), Bound::Included(key)))
    } else if range_end == [0] {
        Some((Bound::Included(key), Bound::Unbounded))
    } else if key >= range_end {
        None
    } else {
        Some((Bound::Included(key), Bound::Excluded(range_end)))
    }
}

fn range_iter<'a>(
    kv: &'a KeySpace,
    key: &'a [u8],
    range_end: &'a [u8],
) -> impl Iterator<Item = (&'a Vec<u8>, &'a History)> + 'a {
    bounds(key, range_end)
        .into_iter()
        .flat_map(move |b| kv.range::<[u8], _>(b))
}

/// Undo records for a write that fails part way (all or nothing).
enum KvUndo {
    Pushed(Vec<u8>),
    Replaced(Vec<u8>, Rev),
    Attached(i64, Vec<u8>),
    Detached(i64, Vec<u8>),
}

/// One etcd write request in progress, at revision `rev`.
pub(crate) struct KvTxn {
    rev: i64,
    changed: bool,
    undo: Vec<KvUndo>,
    events: Vec<Event>,
}

impl State {
    /// The latest version of `key`.
    pub fn kv_get(&self, key: &[u8]) -> Option<KeyValue> {
        self.kv
            .get(key)
            .and_then(|h| h.last())
            .and_then(|r| r.to_kv(key))
    }

    /// The compacted revision (0 = never compacted).
    pub fn compacted_revision(&self) -> i64 {
        self.compacted
    }

    /// etcd's Range at `req.revision` (≤ 0: latest).
    pub fn kv_range(&self, req: &RangeRequest) -> Result<RangeResponse, EtcdError> {
        let rev = self.check_read_revision(req.revision)?;
        Ok(self.range_at(req, rev))
    }

    /// Validate a requested read revision; returns the revision to read at.
    pub fn check_read_revision(&self, rev: i64) -> Result<i64, EtcdError> {
        if rev <= 0 {
            return Ok(self.revision);
        }
        if rev < self.compacted {
            return Err(EtcdError::Compacted);
        }
        if rev > self.revision {
            return Err(EtcdError::FutureRev);
        }
        Ok(rev)
    }

    fn range_at(&self, req: &RangeRequest, rev: i64) -> RangeResponse {
        let filtered = req.sort_order != SortOrder::None
            || req.min_mod_revision != 0
            || req.max_mod_revision != 0
            || req.min_create_revision != 0
            || req.max_create_revision != 0;
        // Without sorting or filters only `limit + 1` values are copied; the
        // count still covers the whole range, as etcd's does.
        let take = if filtered || req.limit <= 0 {
            usize::MAX
        } else {
            (req.limit as usize).saturating_add(1)
        };
        let mut count = 0i64;
        let mut kvs = Vec::new();
        for (k, h) in range_iter(&self.kv, &req.key, &req.range_end) {
            if let Some(r) = at(h, rev) {
                count += 1;
                if !req.count_only && kvs.len() < take {
                    if let Some(kv) = r.to_kv(k) {
                        kvs.push(kv);
                    }
                }
            }
        }
        if req.count_only {
            return RangeResponse {
                kvs: Vec::new(),
                more: false,
                count,
            };
        }
        kvs.retain(|kv| {
            (req.max_mod_revision == 0 || kv.mod_revision <= req.max_mod_revision)
                && (req.min_mod_revision == 0 || kv.mod_revision >= req.min_mod_revision)
                && (req.max_create_revision == 0 || kv.create_revision <= req.max_create_revision)
                && (req.min_create_revision == 0 || kv.create_revision >= req.min_create_revision)
        });
        let mut order = req.sort_order;
        if req.sort_target != SortTarget::Key && order == SortOrder::None {
            order = SortOrder::Ascend;
        } else if req.sort_target == SortTarget::Key && order == SortOrder::Ascend {
            order = SortOrder::None;
        }
        if order != SortOrder::None {
            let cmp = |a: &KeyValue, b: &KeyValue| match req.sort_target {
                SortTarget::Key => a.key.cmp(&b.key),
                SortTarget::Version => a.version.cmp(&b.version),
                SortTarget::Create => a.create_revision.cmp(&b.create_revision),
                SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
                SortTarget::Value => a.value.cmp(&b.value),
            };
            if order == SortOrder::Descend {
                kvs.sort_by(|a, b| cmp(b, a));
            } else {
                kvs.sort_by(cmp);
            }
        }
        let mut more = false;
        if req.limit > 0 && kvs.len() > req.limit as usize {
            kvs.truncate(req.limit as usize);
            more = true;
        }
        if req.keys_only {
            for kv in &mut kvs {
                kv.value = Vec::new();
            }
        }
        RangeResponse { kvs, more, count }
    }

    /// Run one etcd write request; all or nothing, one revision if it
    /// changed anything.
    pub(crate) fn kv_write<T>(
        &mut self,
        f: impl FnOnce(&mut State, &mut KvTxn) -> Result<T, EtcdError>,
    ) -> Result<T, EtcdError> {
        let mut tx = KvTxn {
            rev: self.revision + 1,
            changed: false,
            undo: Vec::new(),
            events: Vec::new(),
        };
        match f(self, &mut tx) {
            Ok(t) => {
                if tx.changed {
                    self.revision = tx.rev;
                    self.events.append(&mut tx.events);
                }
                Ok(t)
            }
            Err(e) => {
                self.kv_rollback(tx);
                Err(e)
            }
        }
    }

    fn kv_rollback(&mut self, tx: KvTxn) {
        for u in tx.undo.into_iter().rev() {
            match u {
                KvUndo::Pushed(key) => {
                    if let Some(h) = self.kv.get_mut(&key) {
                        if let Some(r) = h.pop() {
                            self.kv_bytes = self.kv_bytes.saturating_sub(r.cost(&key));
                        }
                        if h.is_empty() {
                            self.kv.remove(&key);
                        }
                    }
                }
                KvUndo::Replaced(key, old) => {
                    if let Some(last) = self.kv.get_mut(&key).and_then(|h| h.last_mut()) {
                        self.kv_bytes =
                            (self.kv_bytes + old.cost(&key)).saturating_sub(last.cost(&key));
                        *last = old;
                    }
                }
                KvUndo::Attached(lease, key) => {
                    if let Some(l) = self.leases.get_mut(&lease) {
                        l.keys.remove(&key);
                    }
                }
                KvUndo::Detached(lease, key) => {
                    if let Some(l) = self.leases.get_mut(&lease) {
                        l.keys.insert(key);
                    }
                }
            }
        }
    }

    /// Record a new version of `key` at the txn's revision.
    fn push_rev(&mut self, tx: &mut KvTxn, key: &[u8], rev: Rev) {
        let added = rev.cost(key);
        let h = self.kv.entry(key.to_vec()).or_default();
        match h.last_mut() {
            Some(last) if last.mod_revision() == tx.rev => {
                let old = std::mem::replace(last, rev);
                self.kv_bytes = (self.kv_bytes + added).saturating_sub(old.cost(key));
                tx.undo.push(KvUndo::Replaced(key.to_vec(), old));
            }
            _ => {
                h.push(rev);
                self.kv_bytes += added;
                tx.undo.push(KvUndo::Pushed(key.to_vec()));
            }
        }
        tx.changed = true;
    }

    fn set_lease(&mut self, tx: &mut KvTxn, key: &[u8], old: i64, new: i64) {
        if old == new {
            return;
        }
        if old != 0 {
            if let Some(l) = self.leases.get_mut(&old) {
                if l.keys.remove(key) {
                    tx.undo.push(KvUndo::Detached(old, key.to_vec()));
                }
            }
        }
        if new != 0 {
            if let Some(l) = self.leases.get_mut(&new) {
                if l.keys.insert(key.to_vec()) {
                    tx.undo.push(KvUndo::Attached(new, key.to_vec()));
                }
            }
        }
    }

    pub(crate) fn kv_put(
        &mut self,
        tx: &mut KvTxn,
        req: &PutRequest,
    ) -> Result<PutResponse, EtcdError> {
        if req.key.is_empty() {
            return Err(EtcdError::EmptyKey);
        }
        let cur = self.kv_get(&req.key);
        if (req.ignore_value || req.ignore_lease) && cur.is_none() {
            return Err(EtcdError::KeyNotFound);
        }
        let value = match (&cur, req.ignore_value) {
            (Some(c), true) => c.value.clone(),
            _ => req.value.clone(),
        };
        let lease = match (&cur, req.ignore_lease) {
            (Some(c), true) => c.lease,
            _ => {
                // A ZooKeeper session is a lease inside, but the etcd API
                // does not see sessions (decision 2; docs/decisions.md).
                let etcd_lease = self
                    .leases
                    .get(&req.lease)
                    .is_some_and(|l| l.session.is_none());
                if req.lease != 0 && !etcd_lease {
                    return Err(EtcdError::LeaseNotFound);
                }
                req.lease
            }
        };
        let create_revision = cur.as_ref().map_or(tx.rev, |c| c.create_revision);
        let version = cur.as_ref().map_or(1, |c| c.version + 1);
        let rev = Rev::Put {
            create_revision,
            mod_revision: tx.rev,
            version,
            value,
            lease,
        };
        let kv = rev.to_kv(&req.key).unwrap_or_default();
        self.push_rev(tx, &req.key, rev);
        self.set_lease(tx, &req.key, cur.as_ref().map_or(0, |c| c.lease), lease);
        tx.events.push(Event::KvPut {
            kv,
            prev: cur.clone(),
        });
        Ok(PutResponse {
            prev_kv: if req.prev_kv { cur } else { None },
        })
    }

    pub(crate) fn kv_delete_range(
        &mut self,
        tx: &mut KvTxn,
        req: &DeleteRangeRequest,
    ) -> Result<DeleteRangeResponse, EtcdError> {
        if req.key.is_empty() {
            return Err(EtcdError::EmptyKey);
        }
        let live: Vec<KeyValue> = range_iter(&self.kv, &req.key, &req.range_end)
            .filter_map(|(k, h)| h.last().and_then(|r| r.to_kv(k)))
            .collect();
        for prev in &live {
            self.push_rev(
                tx,
                &prev.key,
                Rev::Del {
                    mod_revision: tx.rev,
                },
            );
            self.set_lease(tx, &prev.key, prev.lease, 0);
            let kv = KeyValue {
                key: prev.key.clone(),
                mod_revision: tx.rev,
                ..KeyValue::default()
            };
            tx.events.push(Event::KvDelete {
                kv,
                prev: Some(prev.clone()),
            });
        }
        let deleted = live.len() as i64;
        Ok(DeleteRangeResponse {
            deleted,
            prev_kvs: if req.prev_kv { live } else { Vec::new() },
        })
    }

    pub(crate) fn kv_txn(
        &mut self,
        tx: &mut KvTxn,
        req: &TxnRequest,
    ) -> Result<TxnResponse, EtcdError> {
        let succeeded = req.compare.iter().all(|c| self.compare(c));
        let ops = if succeeded {
            &req.success
        } else {
            &req.failure
        };
        let mut responses = Vec::with_capacity(ops.len());
        for op in ops {
            responses.push(match op {
                RequestOp::Range(r) => {
                    // Reads inside a txn see the txn's own earlier writes.
                    let read = if r.revision > 0 {
                        self.check_read_revision(r.revision)?
                    } else {
                        tx.rev
                    };
                    ResponseOp::Range(self.range_at(r, read))
                }
                RequestOp::Put(p) => ResponseOp::Put(self.kv_put(tx, p)?),
                RequestOp::DeleteRange(d) => ResponseOp::DeleteRange(self.kv_delete_range(tx, d)?),
                RequestOp::Txn(t) => ResponseOp::Txn(self.kv_txn(tx, t)?),
            });
        }
        Ok(TxnResponse {
            succeeded,
            responses,
        })
    }

    /// etcd's `applyCompare`: must hold for every key in the range; a missing
    /// key compares as a zero KeyValue, except that a value compare fails.
    fn compare(&self, c: &Compare) -> bool {
        let mut any = false;
        for (k, h) in range_iter(&self.kv, &c.key, &c.range_end) {
            if let Some(kv) = h.last().and_then(|r| r.to_kv(k)) {
                any = true;
                if !compare_kv(c, &kv) {
                    return false;
                }
            }
        }
        if !any {
            if matches!(c.target, CompareTarget::Value(_)) {
                return false;
            }
            return compare_kv(c, &KeyValue::default());
        }
        true
    }

    pub(crate) fn kv_compact(&mut self, revision: i64) -> Result<(), EtcdError> {
        if revision <= self.compacted {
            return Err(EtcdError::Compacted);
        }
        if revision > self.revision {
            return Err(EtcdError::FutureRev);
        }
        let mut freed = 0u64;
        self.kv.retain(|k, h| {
            // Keep the version visible at `revision` and everything after.
            let n = h.partition_point(|r| r.mod_revision() <= revision);
            let mut drop = n.saturating_sub(1);
            if n > 0 && matches!(h[n - 1], Rev::Del { .. }) {
                drop = n;
            }
            freed += h.drain(..drop).map(|r| r.cost(k)).sum::<u64>();
            !h.is_empty()
        });
        self.kv_bytes = self.kv_bytes.saturating_sub(freed);
        self.compacted = revision;
        Ok(())
    }

    /// Delete live `keys` at revision `rev` (lease revoke/expiry); the
    /// caller owns the lease and removes it.
    pub(crate) fn kv_delete_keys_at(&mut self, rev: i64, keys: &[Vec<u8>]) {
        for key in keys {
            let Some(h) = self.kv.get_mut(key) else {
                continue;
            };
            let Some(prev) = h.last().and_then(|r| r.to_kv(key)) else {
                continue;
            };
            h.push(Rev::Del { mod_revision: rev });
            self.kv_bytes += key.len() as u64;
            let kv = KeyValue {
                key: key.clone(),
                mod_revision: rev,
                ..KeyValue::default()
            };
            self.events.push(Event::KvDelete {
                kv,
                prev: Some(prev),
            });
        }
    }

    /// The backend size estimate the quota compares: key and value bytes
    /// of every retained version (tombstones count their key).
    pub fn kv_size_bytes(&self) -> u64 {
        self.kv_bytes
    }

    /// `kv_size_bytes` recomputed from the key space (invariant checks).
    pub(crate) fn kv_size_recount(&self) -> u64 {
        self.kv
            .iter()
            .map(|(k, h)| h.iter().map(|r| r.cost(k)).sum::<u64>())
            .sum()
    }

    /// Every key with its whole retained history (for invariant checks).
    pub fn kv_keys(&self) -> impl Iterator<Item = &Vec<u8>> {
        self.kv.keys()
    }
}

fn compare_kv(c: &Compare, kv: &KeyValue) -> bool {
    let ord = match &c.target {
        CompareTarget::Version(v) => kv.version.cmp(v),
        CompareTarget::Create(v) => kv.create_revision.cmp(v),
        CompareTarget::Mod(v) => kv.mod_revision.cmp(v),
        CompareTarget::Lease(v) => kv.lease.cmp(v),
        CompareTarget::Value(v) => kv.value.as_slice().cmp(v.as_slice()),
    };
    match c.result {
        CompareResult::Equal => ord == Ordering::Equal,
        CompareResult::Greater => ord == Ordering::Greater,
        CompareResult::Less => ord == Ordering::Less,
        CompareResult::NotEqual => ord != Ordering::Equal,
    }
}
