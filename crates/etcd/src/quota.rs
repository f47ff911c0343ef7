//! etcd's backend quota and alarms (`--quota-backend-bytes`, the NOSPACE
//! alarm, Maintenance.Alarm).
//!
//! The size compared is [`db_size`]: a fixed 20 KiB (an empty bbolt file)
//! plus the key and value bytes of every retained revision of the etcd key
//! space (`State::kv_size_bytes`, tombstones count their key). Compaction
//! frees retained revisions, so it lowers the size at once; Defragment has
//! nothing more to give back. A write request whose cost (etcd's
//! `backendQuota.Cost`) would take the size to the quota raises NOSPACE
//! for this member, replicated through Raft, and is refused; while any
//! NOSPACE alarm is raised every Put, Txn with a put and LeaseGrant is
//! refused (etcd's capped applier); deletes, reads and compaction go on.
//! Deactivating the alarm (`etcdctl alarm disarm`) clears it; a write that
//! still does not fit raises it again.

use std::sync::atomic::{AtomicU64, Ordering};

use janus_core::{Command, RequestOp, Response as CoreResponse, State};

use crate::error::RpcError;
use crate::pb::etcdserverpb as pb;
use crate::Ctx;

/// etcd's default `--quota-backend-bytes`: 2 GiB.
pub const DEFAULT_QUOTA_BYTES: u64 = 2 << 30;

/// etcd's AlarmType numbers.
pub(crate) const NOSPACE: i32 = 1;

/// Size of an empty etcd database file; the estimate starts there, as a
/// real database is never 0 bytes.
const BASE_SIZE: u64 = 20_480;

/// The effective quota of this process's etcd server (for /metrics).
pub(crate) static QUOTA: AtomicU64 = AtomicU64::new(DEFAULT_QUOTA_BYTES);

/// etcd's rule: 0 means the default.
pub fn effective_quota(configured: u64) -> u64 {
    if configured == 0 {
        DEFAULT_QUOTA_BYTES
    } else {
        configured
    }
}

/// The backend size estimate (Status dbSize, the quota, /metrics).
pub fn db_size(st: &State) -> u64 {
    BASE_SIZE + st.kv_size_bytes()
}

/// etcd's `kvOverhead` + the request's size: what a put adds.
fn cost_put(p: &janus_core::PutRequest) -> u64 {
    // The PutRequest's protobuf size: key and value with their tags and
    // lengths, the lease and flags when set.
    let field = |n: usize| {
        if n == 0 {
            0
        } else {
            n + 1 + varint_len(n as u64)
        }
    };
    let mut size = field(p.key.len()) + field(p.value.len());
    if p.lease != 0 {
        size += 1 + varint_len(p.lease as u64);
    }
    size += 2 * (p.prev_kv as usize + p.ignore_value as usize + p.ignore_lease as usize);
    256 + size as u64
}

fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

/// etcd's `backendQuota.Cost`: 0 for requests the quota does not limit.
/// A txn costs its more expensive branch's top-level puts.
pub(crate) fn cost(cmd: &Command) -> u64 {
    let ops = |ops: &[RequestOp]| -> u64 {
        ops.iter()
            .map(|op| match op {
                RequestOp::Put(p) => cost_put(p),
                _ => 0,
            })
            .sum()
    };
    match cmd {
        Command::Put(p) => cost_put(p),
        Command::Txn(t) => ops(&t.success).max(ops(&t.failure)),
        // etcd's leaseOverhead.
        Command::LeaseGrant { .. } => 64,
        // With auth on, writes go to the state machine wrapped.
        Command::AsUser { command, .. } => cost(command),
        _ => 0,
    }
}

impl Ctx {
    /// etcd's quota check before a write: refused while NOSPACE is raised;
    /// a write that does not fit raises it.
    pub(crate) async fn check_quota(&self, cmd: &Command) -> Result<(), RpcError> {
        let cost = cost(cmd);
        if cost == 0 {
            return Ok(());
        }
        let (raised, size) = {
            let st = self.node.state();
            let raised = st.alarms().any(|(_, k)| k == NOSPACE);
            (raised, db_size(&st))
        };
        if raised {
            return Err(RpcError::NoSpace);
        }
        if size + cost < effective_quota(self.cfg.quota_backend_bytes) {
            return Ok(());
        }
        tracing::warn!(size, cost, "etcd backend quota exceeded: raising NOSPACE");
        let raise = Command::Alarm {
            activate: true,
            member: self.member_id(),
            kind: NOSPACE,
        };
        if let Err(e) = self.node.propose(raise).await {
            tracing::warn!("raising NOSPACE: {e}");
        }
        Err(RpcError::NoSpace)
    }

    /// Maintenance.Alarm: GET lists the raised alarms (of one type, or all
    /// for NONE); ACTIVATE and DEACTIVATE go through Raft and answer the
    /// alarm they changed (none for NONE or an alarm that was not raised).
    pub(crate) async fn alarm(&self, req: pb::AlarmRequest) -> Result<pb::AlarmResponse, RpcError> {
        use pb::alarm_request::AlarmAction;
        let member = |(m, k): (u64, i32)| pb::AlarmMember {
            member_id: m,
            alarm: k,
        };
        let activate = match AlarmAction::try_from(req.action) {
            Ok(AlarmAction::Get) => {
                let st = self.node.state();
                let alarms = st
                    .alarms()
                    .filter(|(_, k)| req.alarm == 0 || *k == req.alarm)
                    .map(member)
                    .collect();
                return Ok(pb::AlarmResponse {
                    header: Some(self.header(st.revision())),
                    alarms,
                });
            }
            Ok(AlarmAction::Activate) => true,
            Ok(AlarmAction::Deactivate) => false,
            // etcd's applier answers an unknown action with an empty list.
            Err(_) => {
                return Ok(pb::AlarmResponse {
                    header: Some(self.header_now()),
                    alarms: Vec::new(),
                })
            }
        };
        if req.alarm == 0 {
            return Ok(pb::AlarmResponse {
                header: Some(self.header_now()),
                alarms: Vec::new(),
            });
        }
        let applied = self
            .node
            .propose(Command::Alarm {
                activate,
                member: req.member_id,
                kind: req.alarm,
            })
            .await?;
        let alarms = match applied.response {
            CoreResponse::Alarm(changed) => changed.into_iter().map(member).collect(),
            other => {
                return Err(RpcError::Internal(format!(
                    "unexpected apply result {other:?}"
                )))
            }
        };
        Ok(pb::AlarmResponse {
            header: Some(self.header(applied.revision)),
            alarms,
        })
    }

    /// Status `errors` entries for raised alarms, as etcd's
    /// `AlarmMember.String()` (protobuf's compact text, trailing space).
    pub(crate) fn alarm_errors(&self) -> Vec<String> {
        let st = self.node.state();
        st.alarms()
            .map(|(m, k)| {
                let name = pb::AlarmType::try_from(k)
                    .map(|t| t.as_str_name().to_string())
                    .unwrap_or_else(|_| k.to_string());
                format!("memberID:{m} alarm:{name} ")
            })
            .collect()
    }
}

/// etcd 3.5's `/health` for `query` (the URL's query string): any raised
/// alarm not named by an `exclude=` parameter makes it unhealthy ("ALARM
/// NOSPACE"), then no leader does ("RAFT NO LEADER"; skipped with
/// `serializable=true`). Unhealthy is 503 in Go's `http.Error` shape (the
/// JSON and a newline, as plain text).
pub fn health(node: &janus_raft::RaftNode, query: Option<&str>) -> axum::response::Response {
    use axum::http::{header, StatusCode};
    use axum::response::IntoResponse;
    let params: Vec<(&str, &str)> = query
        .unwrap_or_default()
        .split('&')
        .filter_map(|p| p.split_once('='))
        .collect();
    let excluded = |name: &str| params.iter().any(|&(k, v)| k == "exclude" && v == name);
    let serializable = params
        .iter()
        .any(|&(k, v)| k == "serializable" && v == "true");
    let alarm = node
        .state()
        .alarms()
        .map(|(_, kind)| pb::AlarmType::try_from(kind).unwrap_or(pb::AlarmType::None))
        .find(|kind| !excluded(kind.as_str_name()));
    let reason = match alarm {
        Some(pb::AlarmType::Nospace) => Some("ALARM NOSPACE"),
        Some(pb::AlarmType::Corrupt) => Some("ALARM CORRUPT"),
        Some(_) => Some("ALARM UNKNOWN"),
        None if !serializable && node.metrics().current_leader.is_none() => Some("RAFT NO LEADER"),
        None => None,
    };
    let body = |health: &str, reason: &str| {
        serde_json::json!({ "health": health, "reason": reason }).to_string()
    };
    match reason {
        None => (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            body("true", ""),
        )
            .into_response(),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            [
                (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            body("false", reason) + "\n",
        )
            .into_response(),
    }
}

pub(crate) fn set_quota(configured: u64) {
    QUOTA.store(effective_quota(configured), Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;
    use janus_core::{PutRequest, TxnRequest};

    #[test]
    fn costs_as_etcd() {
        let put = |k: &str, v: &str| PutRequest {
            key: k.into(),
            value: v.into(),
            ..Default::default()
        };
        // key "foo": 2+3 bytes, value "bar": 2+3 bytes.
        assert_eq!(cost(&Command::Put(put("foo", "bar"))), 256 + 10);
        let t = TxnRequest {
            compare: Vec::new(),
            success: vec![RequestOp::Put(put("a", "b"))],
            failure: vec![
                RequestOp::Put(put("a", "bc")),
                RequestOp::Put(put("a", "b")),
            ],
        };
        assert_eq!(cost(&Command::Txn(t)), 2 * 256 + 7 + 6);
        assert_eq!(cost(&Command::Txn(TxnRequest::default())), 0);
        assert_eq!(cost(&Command::LeaseGrant { id: 1, ttl_secs: 5 }), 64);
        assert_eq!(cost(&Command::Compact { revision: 3 }), 0);
        assert_eq!(effective_quota(0), 2 << 30);
        assert_eq!(effective_quota(10), 10);
    }
}
