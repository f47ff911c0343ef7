//! The MVCC key space: etcd's flat, revisioned keys.
//!
//! Each key keeps its versions in revision order (a put or a tombstone);
//! reads at any revision at or after the compacted one see exactly the state
//! after that revision. Semantics follow etcd 3.5's `mvcc` and `apply`
//! packages: a write request takes one revision however many keys it
//! touches, and only if it changes something.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

use crate::command::{
    Compare, CompareResult, CompareTarget, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, RequestOp, ResponseOp, SortOrder, SortTarget,
    TxnRequest, TxnResponse,
};
use crate::error::EtcdError;
use crate::event::Event;
use crate::state::{decode, encode, State};
use crate::store::{escape_bound, escape_key, prefix_end, read_be_i64, unescape_key, Table};

/// etcd's `mvccpb.KeyValue`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct KeyValue {
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    pub create_revision: i64,
    pub mod_revision: i64,
    pub version: i64,
    #[serde(with = "serde_bytes")]
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
        #[serde(with = "serde_bytes")]
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

/// A live key's latest version, without its value (`KvLatest` rows).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Latest {
    main: i64,
    sub: i64,
    create_revision: i64,
    version: i64,
    lease: i64,
}

/// A `KvIndex` row's value: where the version's value is, and whether it
/// is a tombstone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct IndexEntry {
    sub: i64,
    tombstone: bool,
}

fn rev_key(main: i64, sub: i64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&(main as u64).to_be_bytes());
    k[8..].copy_from_slice(&(sub as u64).to_be_bytes());
    k
}

fn index_key(key: &[u8], main: i64) -> Vec<u8> {
    let mut k = escape_key(key);
    k.extend_from_slice(&(main as u64).to_be_bytes());
    k
}

/// Split a `KvIndex` key into the key and the main revision.
fn split_index_key(k: &[u8]) -> Option<(Vec<u8>, i64)> {
    let (key, rest) = unescape_key(k)?;
    Some((key, read_be_i64(rest)?))
}

/// The `KvIndex` bounds of etcd's `[key, range_end)`: empty end = the key
/// alone; end "\0" = everything from key on. None: an empty range.
fn index_bounds(key: &[u8], range_end: &[u8]) -> Option<(Vec<u8>, Option<Vec<u8>>)> {
    if range_end.is_empty() {
        let k = escape_key(key);
        let end = prefix_end(&k);
        Some((k, end))
    } else if range_end == [0] {
        Some((escape_bound(key), None))
    } else if key >= range_end {
        None
    } else {
        Some((escape_bound(key), Some(escape_bound(range_end))))
    }
}

/// The `KvLatest` bounds of etcd's `[key, range_end)`.
fn latest_bounds(key: &[u8], range_end: &[u8]) -> Option<(Vec<u8>, Option<Vec<u8>>)> {
    if range_end.is_empty() {
        let mut end = key.to_vec();
        end.push(0);
        Some((key.to_vec(), Some(end)))
    } else if range_end == [0] {
        Some((key.to_vec(), None))
    } else if key >= range_end {
        None
    } else {
        Some((key.to_vec(), Some(range_end.to_vec())))
    }
}

/// One etcd write request in progress, at revision `rev`.
pub(crate) struct KvTxn {
    rev: i64,
    /// The next sub-revision.
    sub: i64,
    /// Keys this request has changed, with their sub-revisions.
    touched: std::collections::HashMap<Vec<u8>, i64>,
    changed: bool,
    savepoint: usize,
    kv_bytes: u64,
    events: Vec<Event>,
}

impl State {
    fn latest(&self, key: &[u8]) -> Option<Latest> {
        self.db
            .get(Table::KvLatest, key)
            .and_then(|raw| decode(&raw))
    }

    fn rev_at(&self, main: i64, sub: i64) -> Option<(Vec<u8>, Rev)> {
        self.db
            .get(Table::KvRev, &rev_key(main, sub))
            .and_then(|raw| decode::<(serde_bytes::ByteBuf, Rev)>(&raw))
            .map(|(k, r)| (k.into_vec(), r))
    }

    fn latest_kv(&self, key: &[u8], l: &Latest, with_value: bool) -> KeyValue {
        let value = if with_value {
            match self.rev_at(l.main, l.sub) {
                Some((_, Rev::Put { value, .. })) => value,
                _ => Vec::new(),
            }
        } else {
            Vec::new()
        };
        KeyValue {
            key: key.to_vec(),
            create_revision: l.create_revision,
            mod_revision: l.main,
            version: l.version,
            value,
            lease: l.lease,
        }
    }

    /// The latest version of `key`.
    pub fn kv_get(&self, key: &[u8]) -> Option<KeyValue> {
        self.latest(key).map(|l| self.latest_kv(key, &l, true))
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

    /// Visit the versions visible at `rev` in `[key, range_end)`, in key
    /// order: (key, main, sub). From `KvLatest` at the latest revision,
    /// else from the history in `KvIndex`.
    fn visible(
        &self,
        key: &[u8],
        range_end: &[u8],
        rev: i64,
        f: &mut dyn FnMut(&[u8], Option<&Latest>, i64, i64) -> bool,
    ) {
        if rev >= self.revision {
            let Some((start, end)) = latest_bounds(key, range_end) else {
                return;
            };
            self.db.scan(
                Table::KvLatest,
                &start,
                end.as_deref(),
                false,
                &mut |k, v| match decode::<Latest>(v) {
                    Some(l) => f(k, Some(&l), l.main, l.sub),
                    None => true,
                },
            );
            return;
        }
        let Some((start, end)) = index_bounds(key, range_end) else {
            return;
        };
        // Per key: the last version at or before `rev`.
        let mut cur: Option<(Vec<u8>, i64, IndexEntry)> = None;
        let mut go = true;
        self.db.scan(
            Table::KvIndex,
            &start,
            end.as_deref(),
            false,
            &mut |k, v| {
                let (Some((key, main)), Some(e)) = (split_index_key(k), decode::<IndexEntry>(v))
                else {
                    return true;
                };
                if cur.as_ref().is_some_and(|(ck, _, _)| *ck != key) {
                    if let Some((ck, m, e)) = cur.take() {
                        if !e.tombstone && !f(&ck, None, m, e.sub) {
                            go = false;
                            return false;
                        }
                    }
                }
                if main <= rev {
                    cur = Some((key, main, e));
                } else if cur.as_ref().is_none_or(|(ck, _, _)| *ck != key) {
                    cur = None;
                }
                true
            },
        );
        if go {
            if let Some((ck, m, e)) = cur {
                if !e.tombstone {
                    f(&ck, None, m, e.sub);
                }
            }
        }
    }

    fn kv_at(
        &self,
        key: &[u8],
        latest: Option<&Latest>,
        main: i64,
        sub: i64,
        with_value: bool,
    ) -> Option<KeyValue> {
        if let (Some(l), false) = (latest, with_value) {
            return Some(self.latest_kv(key, l, false));
        }
        let (_, r) = self.rev_at(main, sub)?;
        r.to_kv(key)
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
        // Sorting by value needs the values even for keys_only.
        let with_value = !req.keys_only || req.sort_target == SortTarget::Value;
        self.visible(&req.key, &req.range_end, rev, &mut |k, l, main, sub| {
            count += 1;
            if !req.count_only && kvs.len() < take {
                if let Some(kv) = self.kv_at(k, l, main, sub, with_value) {
                    kvs.push(kv);
                }
            }
            true
        });
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
        let mut tx = self.kv_txn_at(self.revision + 1);
        match f(self, &mut tx) {
            Ok(t) => {
                if tx.changed {
                    self.revision = tx.rev;
                    self.events.append(&mut tx.events);
                }
                Ok(t)
            }
            Err(e) => {
                self.db.rollback(tx.savepoint);
                self.kv_bytes = tx.kv_bytes;
                Err(e)
            }
        }
    }

    fn kv_txn_at(&self, rev: i64) -> KvTxn {
        KvTxn {
            rev,
            sub: 0,
            touched: std::collections::HashMap::new(),
            changed: false,
            savepoint: self.db.savepoint(),
            kv_bytes: self.kv_bytes,
            events: Vec::new(),
        }
    }

    /// Record a new version of `key` at the txn's revision.
    fn push_rev(&mut self, tx: &mut KvTxn, key: &[u8], rev: Rev) {
        let added = rev.cost(key);
        let ik = index_key(key, tx.rev);
        let sub = match tx.touched.get(key) {
            // A second change to the key in one revision replaces the first.
            Some(&sub) => {
                if let Some((_, old)) = self.rev_at(tx.rev, sub) {
                    self.kv_bytes = self.kv_bytes.saturating_sub(old.cost(key));
                }
                sub
            }
            None => {
                tx.sub += 1;
                tx.touched.insert(key.to_vec(), tx.sub - 1);
                tx.sub - 1
            }
        };
        let tombstone = matches!(rev, Rev::Del { .. });
        match &rev {
            Rev::Put {
                create_revision,
                version,
                lease,
                ..
            } => {
                let l = Latest {
                    main: tx.rev,
                    sub,
                    create_revision: *create_revision,
                    version: *version,
                    lease: *lease,
                };
                self.db.put(Table::KvLatest, key.to_vec(), encode(&l));
            }
            Rev::Del { .. } => self.db.delete(Table::KvLatest, key),
        }
        self.db
            .put(Table::KvIndex, ik, encode(&IndexEntry { sub, tombstone }));
        self.db.put(
            Table::KvRev,
            rev_key(tx.rev, sub).to_vec(),
            encode(&(serde_bytes::Bytes::new(key), &rev)),
        );
        self.kv_bytes += added;
        tx.changed = true;
    }

    /// Write one version with known revisions (format upgrades).
    pub(crate) fn import_version(&mut self, key: &[u8], main: i64, sub: i64, rev: Rev) {
        let mut tx = self.kv_txn_at(main);
        tx.sub = sub;
        let bytes = self.kv_bytes;
        self.push_rev(&mut tx, key, rev);
        self.kv_bytes = bytes;
    }

    fn set_lease(&mut self, key: &[u8], old: i64, new: i64) {
        if old == new {
            return;
        }
        if old != 0 {
            self.lease_detach(old, key);
        }
        if new != 0 && self.lease(new).is_some() {
            self.lease_attach(new, key);
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
                let etcd_lease =
                    req.lease != 0 && self.lease(req.lease).is_some_and(|l| l.session.is_none());
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
        self.set_lease(&req.key, cur.as_ref().map_or(0, |c| c.lease), lease);
        tx.events.push(Event::KvPut {
            kv,
            prev: cur.clone(),
        });
        Ok(PutResponse {
            prev_kv: if req.prev_kv { cur } else { None },
        })
    }

    /// The live keys of `[key, range_end)` with their values.
    fn live_range(&self, key: &[u8], range_end: &[u8]) -> Vec<KeyValue> {
        let mut out = Vec::new();
        self.visible(key, range_end, i64::MAX, &mut |k, l, _, _| {
            if let Some(l) = l {
                out.push(self.latest_kv(k, l, true));
            }
            true
        });
        out
    }

    pub(crate) fn kv_delete_range(
        &mut self,
        tx: &mut KvTxn,
        req: &DeleteRangeRequest,
    ) -> Result<DeleteRangeResponse, EtcdError> {
        if req.key.is_empty() {
            return Err(EtcdError::EmptyKey);
        }
        let live = self.live_range(&req.key, &req.range_end);
        for prev in &live {
            self.push_rev(
                tx,
                &prev.key,
                Rev::Del {
                    mod_revision: tx.rev,
                },
            );
            self.set_lease(&prev.key, prev.lease, 0);
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
        let mut ok = true;
        let with_value = matches!(c.target, CompareTarget::Value(_));
        self.visible(&c.key, &c.range_end, i64::MAX, &mut |k, l, _, _| {
            if let Some(l) = l {
                any = true;
                let kv = self.latest_kv(k, l, with_value);
                if !compare_kv(c, &kv) {
                    ok = false;
                    return false;
                }
            }
            true
        });
        if !ok {
            return false;
        }
        if !any {
            if with_value {
                return false;
            }
            return compare_kv(c, &KeyValue::default());
        }
        true
    }

    /// Compact the history at `revision`: every version hidden by a newer
    /// one at or before it goes, and so does a tombstone visible at it.
    /// Only the versions written since the last compaction are visited:
    /// each of them may hide the one version an earlier compaction kept.
    pub(crate) fn kv_compact(&mut self, revision: i64) -> Result<(), EtcdError> {
        if revision <= self.compacted {
            return Err(EtcdError::Compacted);
        }
        if revision > self.revision {
            return Err(EtcdError::FutureRev);
        }
        let prev = self.compacted;
        let window = self.db.collect(
            Table::KvRev,
            &rev_key(prev + 1, 0),
            Some(&rev_key(revision + 1, 0)),
            usize::MAX,
        );
        for (rk, raw) in window {
            let (Some(main), Some((key, rev))) = (
                read_be_i64(&rk),
                decode::<(serde_bytes::ByteBuf, Rev)>(&raw),
            ) else {
                continue;
            };
            // The version before this one, if an earlier compaction kept it.
            let mut older = None;
            let lo = escape_key(&key);
            self.db.scan(
                Table::KvIndex,
                &lo,
                Some(&index_key(&key, main)),
                true,
                &mut |k, v| {
                    older = split_index_key(k).zip(decode::<IndexEntry>(v));
                    false
                },
            );
            if let Some(((_, m), e)) = older {
                if m <= prev {
                    self.kv_drop_version(&key, m, e.sub);
                }
            }
            // This version, if a newer one at or before `revision` hides it.
            let mut newer = None;
            let hi = prefix_end(&lo);
            self.db.scan(
                Table::KvIndex,
                &index_key(&key, main + 1),
                hi.as_deref(),
                false,
                &mut |k, _| {
                    newer = split_index_key(k).map(|(_, m)| m);
                    false
                },
            );
            let hidden = newer.is_some_and(|m| m <= revision);
            if hidden || matches!(rev, Rev::Del { .. }) {
                let sub = read_be_i64(&rk[8..]).unwrap_or(0);
                self.kv_drop_version(&key, main, sub);
            }
        }
        self.compacted = revision;
        Ok(())
    }

    fn kv_drop_version(&mut self, key: &[u8], main: i64, sub: i64) {
        if let Some((_, r)) = self.rev_at(main, sub) {
            self.kv_bytes = self.kv_bytes.saturating_sub(r.cost(key));
        }
        self.db.delete(Table::KvRev, &rev_key(main, sub));
        self.db.delete(Table::KvIndex, &index_key(key, main));
    }

    /// Delete live `keys` at revision `rev` (lease revoke/expiry); the
    /// caller owns the lease and removes it.
    pub(crate) fn kv_delete_keys_at(&mut self, rev: i64, keys: &[Vec<u8>]) {
        let mut tx = self.kv_txn_at(rev);
        for key in keys {
            let Some(prev) = self.kv_get(key) else {
                continue;
            };
            self.push_rev(&mut tx, key, Rev::Del { mod_revision: rev });
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

    /// `kv_size_bytes` recomputed from the history (invariant checks).
    pub(crate) fn kv_size_recount(&self) -> u64 {
        let mut n = 0;
        self.db.scan(Table::KvRev, b"", None, false, &mut |_, v| {
            if let Some((key, r)) = decode::<(serde_bytes::ByteBuf, Rev)>(v) {
                n += r.cost(&key);
            }
            true
        });
        n
    }

    /// Up to `limit` live keys from `start` on (`[start, end)`; an empty
    /// end: to the end), with their values.
    pub fn kv_scan(&self, start: &[u8], end: &[u8], limit: usize) -> Vec<KeyValue> {
        let end = if end.is_empty() {
            vec![0]
        } else {
            end.to_vec()
        };
        let mut out = Vec::new();
        if limit == 0 {
            return out;
        }
        self.visible(start, &end, i64::MAX, &mut |k, l, _, _| {
            if let Some(l) = l {
                out.push(self.latest_kv(k, l, true));
            }
            out.len() < limit
        });
        out
    }

    /// Every live key's latest version (invariant checks).
    pub(crate) fn kv_latest_all(&self) -> Vec<KeyValue> {
        self.kv_scan(&[0], &[0], usize::MAX)
    }

    /// The history tables agree: each index row has its version, each
    /// version its index row, each live key's latest row is its newest
    /// version, revisions increase.
    pub(crate) fn kv_check_index(&self) -> Result<(), String> {
        let mut err = None;
        let mut last: Option<(Vec<u8>, i64, bool)> = None;
        let check_last = |last: &Option<(Vec<u8>, i64, bool)>, err: &mut Option<String>| {
            if let Some((k, m, tomb)) = last {
                match (self.latest(k), tomb) {
                    (Some(l), false) if l.main == *m => {}
                    (None, true) => {}
                    _ => *err = Some(format!("key {k:?}: latest row disagrees with history")),
                }
            }
        };
        self.db.scan(Table::KvIndex, b"", None, false, &mut |k, v| {
            let (Some((key, main)), Some(e)) = (split_index_key(k), decode::<IndexEntry>(v)) else {
                err = Some(format!("index row {k:?} undecodable"));
                return false;
            };
            if main > self.revision {
                err = Some(format!("key {key:?}: revision {main} from the future"));
                return false;
            }
            match self.rev_at(main, e.sub) {
                Some((rk, r)) if rk == key && matches!(r, Rev::Del { .. }) == e.tombstone => {}
                _ => {
                    err = Some(format!("key {key:?} at {main}: version missing"));
                    return false;
                }
            }
            if last.as_ref().is_some_and(|(lk, _, _)| *lk != key) {
                check_last(&last, &mut err);
            }
            last = Some((key, main, e.tombstone));
            err.is_none()
        });
        if err.is_none() {
            check_last(&last, &mut err);
        }
        if let Some(e) = err {
            return Err(e);
        }
        let mut count = (0usize, 0usize);
        self.db.scan(Table::KvRev, b"", None, false, &mut |_, _| {
            count.0 += 1;
            true
        });
        self.db.scan(Table::KvIndex, b"", None, false, &mut |_, _| {
            count.1 += 1;
            true
        });
        if count.0 != count.1 {
            return Err(format!("{} versions, {} index rows", count.0, count.1));
        }
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Byte strings are encoded as bytes (one copy) rather than as a
    /// sequence of `u8` (one call per byte); postcard writes both the same
    /// way, so data written before reads back unchanged.
    #[test]
    fn byte_fields_keep_their_encoding() {
        #[derive(Serialize)]
        struct Plain {
            key: Vec<u8>,
            create_revision: i64,
            mod_revision: i64,
            version: i64,
            value: Vec<u8>,
            lease: i64,
        }
        let kv = KeyValue {
            key: b"k".to_vec(),
            create_revision: 2,
            mod_revision: 3,
            version: 4,
            value: vec![0, 1, 255, 128],
            lease: 7,
        };
        let plain = Plain {
            key: kv.key.clone(),
            create_revision: 2,
            mod_revision: 3,
            version: 4,
            value: kv.value.clone(),
            lease: 7,
        };
        assert_eq!(encode(&kv), encode(&plain));
        let rev = Rev::Put {
            create_revision: 1,
            mod_revision: 2,
            version: 3,
            value: vec![9; 300],
            lease: 0,
        };
        let new = encode(&(serde_bytes::Bytes::new(b"key"), &rev));
        let old = encode(&(b"key".to_vec(), &rev));
        assert_eq!(new, old);
        let back = decode::<(serde_bytes::ByteBuf, Rev)>(&old).map(|(k, r)| (k.into_vec(), r));
        assert_eq!(back, Some((b"key".to_vec(), rev)));
    }
}
