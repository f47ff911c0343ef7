//! etcd's `v3rpc` request checks (key.go) and the translation between the
//! wire types and `janus_core`'s requests and results.

use std::collections::BTreeSet;

use janus_core as core;
use prost::Message;

use crate::error::RpcError;
use crate::pb::etcdserverpb as pb;
use crate::pb::mvccpb;

pub fn kv_to_pb(kv: core::KeyValue) -> mvccpb::KeyValue {
    mvccpb::KeyValue {
        key: kv.key,
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
        value: kv.value,
        lease: kv.lease,
    }
}

/// etcd checks the encoded request against `--max-request-bytes`.
pub fn check_size<M: Message>(m: &M, max: usize) -> Result<(), RpcError> {
    if m.encoded_len() > max {
        return Err(RpcError::RequestTooLarge);
    }
    Ok(())
}

pub fn range(r: &pb::RangeRequest) -> Result<core::RangeRequest, RpcError> {
    if r.key.is_empty() {
        return Err(core::EtcdError::EmptyKey.into());
    }
    use pb::range_request::{SortOrder as O, SortTarget as T};
    let sort_order = match O::try_from(r.sort_order).map_err(|_| RpcError::InvalidSortOption)? {
        O::None => core::SortOrder::None,
        O::Ascend => core::SortOrder::Ascend,
        O::Descend => core::SortOrder::Descend,
    };
    let sort_target = match T::try_from(r.sort_target).map_err(|_| RpcError::InvalidSortOption)? {
        T::Key => core::SortTarget::Key,
        T::Version => core::SortTarget::Version,
        T::Create => core::SortTarget::Create,
        T::Mod => core::SortTarget::Mod,
        T::Value => core::SortTarget::Value,
    };
    Ok(core::RangeRequest {
        key: r.key.clone(),
        range_end: r.range_end.clone(),
        limit: r.limit,
        revision: r.revision,
        sort_order,
        sort_target,
        keys_only: r.keys_only,
        count_only: r.count_only,
        min_mod_revision: r.min_mod_revision,
        max_mod_revision: r.max_mod_revision,
        min_create_revision: r.min_create_revision,
        max_create_revision: r.max_create_revision,
    })
}

pub fn put(r: &pb::PutRequest) -> Result<core::PutRequest, RpcError> {
    if r.key.is_empty() {
        return Err(core::EtcdError::EmptyKey.into());
    }
    if r.ignore_value && !r.value.is_empty() {
        return Err(RpcError::ValueProvided);
    }
    if r.ignore_lease && r.lease != 0 {
        return Err(RpcError::LeaseProvided);
    }
    Ok(core::PutRequest {
        key: r.key.clone(),
        value: r.value.clone(),
        lease: r.lease,
        prev_kv: r.prev_kv,
        ignore_value: r.ignore_value,
        ignore_lease: r.ignore_lease,
    })
}

pub fn delete(r: &pb::DeleteRangeRequest) -> Result<core::DeleteRangeRequest, RpcError> {
    if r.key.is_empty() {
        return Err(core::EtcdError::EmptyKey.into());
    }
    Ok(core::DeleteRangeRequest {
        key: r.key.clone(),
        range_end: r.range_end.clone(),
        prev_kv: r.prev_kv,
    })
}

/// etcd's `checkTxnRequest` (op counts, empty keys, nested checks) followed
/// by `checkIntervals` (no key put twice, no put inside a deleted range).
pub fn txn(r: &pb::TxnRequest, max_ops: usize) -> Result<core::TxnRequest, RpcError> {
    let t = txn_inner(r, max_ops)?;
    intervals(&r.success)?;
    intervals(&r.failure)?;
    Ok(t)
}

fn txn_inner(r: &pb::TxnRequest, max_ops: usize) -> Result<core::TxnRequest, RpcError> {
    let opc = r.compare.len().max(r.success.len()).max(r.failure.len());
    if opc > max_ops {
        return Err(core::EtcdError::TooManyOps.into());
    }
    let mut compare = Vec::with_capacity(r.compare.len());
    for c in &r.compare {
        if c.key.is_empty() {
            return Err(core::EtcdError::EmptyKey.into());
        }
        compare.push(compare_of(c));
    }
    let ops = |ops: &[pb::RequestOp]| -> Result<Vec<core::RequestOp>, RpcError> {
        ops.iter().map(|op| request_op(op, max_ops)).collect()
    };
    Ok(core::TxnRequest {
        compare,
        success: ops(&r.success)?,
        failure: ops(&r.failure)?,
    })
}

fn request_op(op: &pb::RequestOp, max_ops: usize) -> Result<core::RequestOp, RpcError> {
    use pb::request_op::Request;
    Ok(match &op.request {
        Some(Request::RequestRange(r)) => core::RequestOp::Range(range(r)?),
        Some(Request::RequestPut(r)) => core::RequestOp::Put(put(r)?),
        Some(Request::RequestDeleteRange(r)) => core::RequestOp::DeleteRange(delete(r)?),
        Some(Request::RequestTxn(r)) => core::RequestOp::Txn(txn_inner(r, max_ops)?),
        // An empty op: etcd answers "key not found".
        None => return Err(core::EtcdError::KeyNotFound.into()),
    })
}

fn compare_of(c: &pb::Compare) -> core::Compare {
    use pb::compare::{CompareResult as R, CompareTarget as T, TargetUnion as U};
    let result = match R::try_from(c.result).unwrap_or(R::Equal) {
        R::Equal => core::CompareResult::Equal,
        R::Greater => core::CompareResult::Greater,
        R::Less => core::CompareResult::Less,
        R::NotEqual => core::CompareResult::NotEqual,
    };
    // etcd reads the union member the target names; a missing one is zero.
    let int = |want: fn(&U) -> Option<i64>| c.target_union.as_ref().and_then(want).unwrap_or(0);
    let target = match T::try_from(c.target).unwrap_or(T::Version) {
        T::Version => core::CompareTarget::Version(int(|u| {
            if let U::Version(v) = u {
                Some(*v)
            } else {
                None
            }
        })),
        T::Create => core::CompareTarget::Create(int(|u| {
            if let U::CreateRevision(v) = u {
                Some(*v)
            } else {
                None
            }
        })),
        T::Mod => core::CompareTarget::Mod(int(|u| {
            if let U::ModRevision(v) = u {
                Some(*v)
            } else {
                None
            }
        })),
        T::Lease => {
            core::CompareTarget::Lease(int(|u| if let U::Lease(v) = u { Some(*v) } else { None }))
        }
        T::Value => core::CompareTarget::Value(match &c.target_union {
            Some(U::Value(v)) => v.clone(),
            _ => Vec::new(),
        }),
    };
    core::Compare {
        result,
        target,
        key: c.key.clone(),
        range_end: c.range_end.clone(),
    }
}

/// A half-open interval `[start, end)` as etcd normalizes delete ranges.
#[derive(Clone)]
struct Interval {
    start: Vec<u8>,
    /// `None`: no upper bound ("\0").
    end: Option<Vec<u8>>,
}

impl Interval {
    fn of(key: &[u8], range_end: &[u8]) -> Interval {
        let end = if range_end.is_empty() {
            let mut k = key.to_vec();
            k.push(0);
            Some(k)
        } else if range_end == [0] {
            None
        } else {
            Some(range_end.to_vec())
        };
        Interval {
            start: key.to_vec(),
            end,
        }
    }
    fn contains(&self, k: &[u8]) -> bool {
        k >= self.start.as_slice() && self.end.as_deref().is_none_or(|e| k < e)
    }
}

/// The puts and deletes one branch makes (nested txns included).
// The put check is no match guard: its insert has a side effect.
#[allow(clippy::collapsible_match)]
fn intervals(ops: &[pb::RequestOp]) -> Result<(Vec<Interval>, BTreeSet<Vec<u8>>), RpcError> {
    use pb::request_op::Request;
    let mut dels = Vec::new();
    for op in ops {
        if let Some(Request::RequestDeleteRange(d)) = &op.request {
            dels.push(Interval::of(&d.key, &d.range_end));
        }
    }
    let mut puts = BTreeSet::new();
    for op in ops {
        match &op.request {
            Some(Request::RequestTxn(t)) => {
                let (sd, sp) = intervals(&t.success)?;
                let (fd, fp) = intervals(&t.failure)?;
                // Either nested branch may run, so each is checked against
                // this branch's writes; the two branches may overlap.
                for p in sp.iter().chain(fp.iter()) {
                    if puts.contains(p) || dels.iter().any(|d| d.contains(p)) {
                        return Err(core::EtcdError::DuplicateKey.into());
                    }
                }
                let nested_puts: BTreeSet<Vec<u8>> = sp.union(&fp).cloned().collect();
                puts.extend(nested_puts);
                dels.extend(sd);
                dels.extend(fd);
            }
            Some(Request::RequestPut(p)) => {
                if !puts.insert(p.key.clone()) || dels.iter().any(|d| d.contains(&p.key)) {
                    return Err(core::EtcdError::DuplicateKey.into());
                }
            }
            _ => {}
        }
    }
    Ok((dels, puts))
}

pub fn range_response(r: core::RangeResponse) -> pb::RangeResponse {
    pb::RangeResponse {
        header: None,
        kvs: r.kvs.into_iter().map(kv_to_pb).collect(),
        more: r.more,
        count: r.count,
    }
}

pub fn put_response(r: core::PutResponse) -> pb::PutResponse {
    pb::PutResponse {
        header: None,
        prev_kv: r.prev_kv.map(kv_to_pb),
    }
}

pub fn delete_response(r: core::DeleteRangeResponse) -> pb::DeleteRangeResponse {
    pb::DeleteRangeResponse {
        header: None,
        deleted: r.deleted,
        prev_kvs: r.prev_kvs.into_iter().map(kv_to_pb).collect(),
    }
}

/// A txn result. As etcd's: nested txn responses carry an empty header,
/// and each op's header holds the revision the store had at its turn —
/// the one before the txn until the txn's first change (a put, or a
/// delete that removed something), the txn's own revision from then on.
pub fn txn_response(r: core::TxnResponse, hdr: &pb::ResponseHeader) -> pb::TxnResponse {
    let before = if txn_changes(&r) {
        hdr.revision - 1
    } else {
        hdr.revision
    };
    let mut revs = OpRevisions {
        before,
        after: hdr.revision,
        changed: false,
    };
    pb::TxnResponse {
        header: Some(*hdr),
        ..txn_nested(r, &mut revs)
    }
}

/// Whether a txn changed anything (so its header revision is a new one).
fn txn_changes(r: &core::TxnResponse) -> bool {
    r.responses.iter().any(|op| match op {
        core::ResponseOp::Range(_) => false,
        core::ResponseOp::Put(_) => true,
        core::ResponseOp::DeleteRange(d) => d.deleted > 0,
        core::ResponseOp::Txn(t) => txn_changes(t),
    })
}

/// The revisions ops report, in execution order (depth first).
struct OpRevisions {
    before: i64,
    after: i64,
    changed: bool,
}

impl OpRevisions {
    fn header(&self) -> Option<pb::ResponseHeader> {
        Some(pb::ResponseHeader {
            revision: if self.changed {
                self.after
            } else {
                self.before
            },
            ..Default::default()
        })
    }
}

fn txn_nested(r: core::TxnResponse, revs: &mut OpRevisions) -> pb::TxnResponse {
    use pb::response_op::Response;
    let responses = r
        .responses
        .into_iter()
        .map(|op| pb::ResponseOp {
            response: Some(match op {
                core::ResponseOp::Range(r) => Response::ResponseRange(pb::RangeResponse {
                    header: revs.header(),
                    ..range_response(r)
                }),
                core::ResponseOp::Put(r) => {
                    revs.changed = true;
                    Response::ResponsePut(pb::PutResponse {
                        header: revs.header(),
                        ..put_response(r)
                    })
                }
                core::ResponseOp::DeleteRange(r) => {
                    revs.changed |= r.deleted > 0;
                    Response::ResponseDeleteRange(pb::DeleteRangeResponse {
                        header: revs.header(),
                        ..delete_response(r)
                    })
                }
                core::ResponseOp::Txn(t) => Response::ResponseTxn(pb::TxnResponse {
                    header: Some(pb::ResponseHeader::default()),
                    ..txn_nested(t, revs)
                }),
            }),
        })
        .collect();
    pb::TxnResponse {
        header: None,
        succeeded: r.succeeded,
        responses,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pb::request_op::Request;

    fn put_op(k: &str) -> pb::RequestOp {
        pb::RequestOp {
            request: Some(Request::RequestPut(pb::PutRequest {
                key: k.into(),
                ..Default::default()
            })),
        }
    }
    fn del_op(k: &str, end: &str) -> pb::RequestOp {
        pb::RequestOp {
            request: Some(Request::RequestDeleteRange(pb::DeleteRangeRequest {
                key: k.into(),
                range_end: end.into(),
                ..Default::default()
            })),
        }
    }

    #[test]
    fn duplicate_keys_are_refused() {
        let t = pb::TxnRequest {
            success: vec![put_op("a"), put_op("a")],
            ..Default::default()
        };
        assert_eq!(
            txn(&t, 128).err(),
            Some(RpcError::Core(core::EtcdError::DuplicateKey))
        );
        let t = pb::TxnRequest {
            success: vec![del_op("a", "c"), put_op("b")],
            ..Default::default()
        };
        assert_eq!(
            txn(&t, 128).err(),
            Some(RpcError::Core(core::EtcdError::DuplicateKey))
        );
        // Different branches may touch the same key.
        let t = pb::TxnRequest {
            success: vec![put_op("a")],
            failure: vec![put_op("a")],
            ..Default::default()
        };
        assert!(txn(&t, 128).is_ok());
        // A nested txn's branches may overlap each other but not the outer puts.
        let nested = pb::TxnRequest {
            success: vec![put_op("x")],
            failure: vec![put_op("x")],
            ..Default::default()
        };
        let op = pb::RequestOp {
            request: Some(Request::RequestTxn(nested)),
        };
        let t = pb::TxnRequest {
            success: vec![op.clone()],
            ..Default::default()
        };
        assert!(txn(&t, 128).is_ok());
        let t = pb::TxnRequest {
            success: vec![op, put_op("x")],
            ..Default::default()
        };
        assert_eq!(
            txn(&t, 128).err(),
            Some(RpcError::Core(core::EtcdError::DuplicateKey))
        );
    }

    #[test]
    fn request_shape_rules() {
        let t = pb::TxnRequest {
            success: (0..129).map(|i| put_op(&format!("k{i}"))).collect(),
            ..Default::default()
        };
        assert_eq!(
            txn(&t, 128).err(),
            Some(RpcError::Core(core::EtcdError::TooManyOps))
        );
        assert_eq!(
            put(&pb::PutRequest::default()).err(),
            Some(RpcError::Core(core::EtcdError::EmptyKey))
        );
        let p = pb::PutRequest {
            key: "k".into(),
            value: "v".into(),
            ignore_value: true,
            ..Default::default()
        };
        assert_eq!(put(&p).err(), Some(RpcError::ValueProvided));
        let p = pb::PutRequest {
            key: "k".into(),
            lease: 5,
            ignore_lease: true,
            ..Default::default()
        };
        assert_eq!(put(&p).err(), Some(RpcError::LeaseProvided));
        let r = pb::RangeRequest {
            key: "k".into(),
            sort_order: 7,
            ..Default::default()
        };
        assert_eq!(range(&r).err(), Some(RpcError::InvalidSortOption));
        let t = pb::TxnRequest {
            success: vec![pb::RequestOp { request: None }],
            ..Default::default()
        };
        assert_eq!(
            txn(&t, 128).err(),
            Some(RpcError::Core(core::EtcdError::KeyNotFound))
        );
    }
}
