//! A connection's writes (create*, delete, setData, setACL, check, multi):
//! decoded, given the checks only a connection can make, and proposed
//! through its [`Pipeline`](janus_raft::Pipeline) without waiting for the
//! writes before them; answered in request order once applied here.
//!
//! As in ZooKeeper's PrepRequestProcessor every write request takes a zxid,
//! even one refused before it reaches the tree: a refused request commits a
//! stand-in txn that fails, and its answer carries the real error.

use std::time::Instant;

use janus_core::zk::validate_path;
use janus_core::{
    Acl, Applied, Command, CreateMode, Response, ZkError, ZkOp, ZkOpResult, ZkResponse,
};
use janus_jute::{Reader, Record};
use janus_raft::NodeError;
use tokio::sync::oneshot;

use super::multi::multi_answer;
use super::{encode, null_string, Conn, Step};
use crate::proto::{op, *};

/// How a committed write's answer is made.
pub(super) enum Kind {
    Create {
        opcode: i32,
    },
    SetData,
    SetAcl,
    /// delete and check: an empty body.
    Empty,
    /// Refused before the tree saw it: this error, whatever the stand-in
    /// txn answered.
    Refused(ZkError),
    /// A multi: the request's op codes, and an op refused before the tree
    /// saw it (its index and error), which the stand-in op replaces.
    Multi {
        codes: Vec<i32>,
        local: Option<(usize, ZkError)>,
    },
}

/// A write in flight.
pub(super) struct Pending {
    pub xid: i32,
    pub started: Instant,
    pub kind: Kind,
    pub result: oneshot::Receiver<Result<Applied, NodeError>>,
}

/// The op code of a request body (its header's second field).
pub(super) fn opcode_of(body: &[u8]) -> Option<i32> {
    body.get(4..8)
        .and_then(|b| b.try_into().ok())
        .map(i32::from_be_bytes)
}

/// The writes a connection pipelines.
pub(super) fn pipelined(opcode: i32) -> bool {
    matches!(
        opcode,
        op::CREATE
            | op::CREATE2
            | op::CREATE_CONTAINER
            | op::CREATE_TTL
            | op::DELETE
            | op::SET_DATA
            | op::SET_ACL
            | op::CHECK
            | op::MULTI
    )
}

/// An op that always fails in the tree (BADARGUMENTS), committed in the
/// place of one refused before it.
pub(super) fn stand_in() -> ZkOp {
    ZkOp::Check {
        path: String::new(),
        version: -1,
    }
}

impl Conn {
    /// Decode write `opcode`, make the connection's checks, and propose it.
    pub(super) fn submit_write(
        &mut self,
        opcode: i32,
        xid: i32,
        r: &mut Reader<'_>,
        started: Instant,
    ) -> Pending {
        let (kind, cmd) = match opcode {
            op::MULTI => self.decode_multi(r),
            _ => match self.decode_single(opcode, r) {
                Ok((kind, op)) => (kind, self.zk(op)),
                Err(e) => (Kind::Refused(e), self.zk(stand_in())),
            },
        };
        Pending {
            xid,
            started,
            kind,
            result: self.pipeline.submit(cmd),
        }
    }

    /// One op on this connection's behalf: the core checks ACLs against
    /// the connection's ids as the op applies.
    pub(super) fn zk(&self, op: ZkOp) -> Command {
        Command::ZkAs {
            ids: self.auth.ids.clone(),
            owner: self.owner,
            command: Box::new(Command::Zk {
                session: self.session,
                op,
            }),
        }
    }

    pub(super) fn decode_single(
        &self,
        opcode: i32,
        r: &mut Reader<'_>,
    ) -> Result<(Kind, ZkOp), ZkError> {
        // A record that does not decode: MARSHALLINGERROR, as ZooKeeper
        // answers a request it cannot deserialize.
        let bad = |e: janus_jute::DecodeError| {
            tracing::info!(addr = %self.info.addr, op = opcode, "zookeeper: malformed request: {e}");
            ZkError::MarshallingError
        };
        // A null path (length -1) makes these ops throw a
        // NullPointerException in PrepRequestProcessor, which ZooKeeper
        // answers with MARSHALLINGERROR; setData, setACL and check fail
        // validatePath first (BADARGUMENTS, as for "").
        if matches!(
            opcode,
            op::CREATE | op::CREATE2 | op::CREATE_CONTAINER | op::CREATE_TTL | op::DELETE
        ) && null_string(r.rest())
        {
            return Err(ZkError::MarshallingError);
        }
        Ok(match opcode {
            op::CREATE_TTL => {
                let q = CreateTTLRequest::decode(r).map_err(bad)?;
                let op = self.prepare_create(opcode, q.path, q.data, &q.acl, q.flags, q.ttl)?;
                (Kind::Create { opcode }, op)
            }
            op::CREATE | op::CREATE2 | op::CREATE_CONTAINER => {
                let q = CreateRequest::decode(r).map_err(bad)?;
                let op = self.prepare_create(opcode, q.path, q.data, &q.acl, q.flags, -1)?;
                (Kind::Create { opcode }, op)
            }
            op::DELETE => {
                let q = DeleteRequest::decode(r).map_err(bad)?;
                let op = ZkOp::Delete {
                    path: q.path,
                    version: q.version,
                };
                (Kind::Empty, op)
            }
            op::SET_DATA => {
                let q = SetDataRequest::decode(r).map_err(bad)?;
                let op = ZkOp::SetData {
                    path: q.path,
                    data: q.data,
                    version: q.version,
                };
                (Kind::SetData, op)
            }
            op::SET_ACL => {
                let q = SetACLRequest::decode(r).map_err(bad)?;
                // validatePath, then fixupACL; the node and ADMIN on it
                // are the core's.
                validate_path(&q.path)?;
                let acl: Vec<Acl> = q.acl.iter().map(Acl::from).collect();
                let acl = self.auth.fixup(&acl)?;
                let op = ZkOp::SetAcl {
                    path: q.path,
                    acl,
                    version: q.version,
                };
                (Kind::SetAcl, op)
            }
            // ZooKeeper only answers check inside a multi; Janus commits it
            // as a txn of its own and answers it.
            op::CHECK => {
                let q = CheckVersionRequest::decode(r).map_err(bad)?;
                let op = ZkOp::Check {
                    path: q.path,
                    version: q.version,
                };
                (Kind::Empty, op)
            }
            _ => return Err(ZkError::Unimplemented),
        })
    }

    /// Checks ZooKeeper makes before the txn (PrepRequestProcessor) that
    /// need the connection, not the tree: op code vs. mode, extended types,
    /// a '/' and no NUL, and the ACL fix-up. The parent, CREATE on it and
    /// the rest are the core's, in ZooKeeper's order.
    fn prepare_create(
        &self,
        opcode: i32,
        path: String,
        data: Option<Vec<u8>>,
        acl: &[ACL],
        flags: i32,
        ttl: i64,
    ) -> Result<ZkOp, ZkError> {
        let mode = CreateMode::from_flag(flags).ok_or(ZkError::BadArguments)?;
        if mode.is_ttl() && !self.srv.cfg.extended_types {
            return Err(ZkError::Unimplemented);
        }
        // `validateTTL` on the flags' mode: only createTTL carries a TTL,
        // so a TTL mode on any other op is BADARGUMENTS.
        let ttl_ok = if mode.is_ttl() {
            ttl > 0 && ttl <= janus_core::zk::MAX_TTL_MS
        } else {
            ttl < 0
        };
        if !ttl_ok || !path.contains('/') || path.contains('\0') {
            return Err(ZkError::BadArguments);
        }
        // The txn follows the op code, not the flags: createContainer makes
        // a container (sequential if the flags say so, never ephemeral),
        // and create/create2 with the container flag a plain node.
        let mode = if opcode == op::CREATE_CONTAINER {
            if mode.is_sequential() {
                CreateMode::ContainerSequential
            } else {
                CreateMode::Container
            }
        } else if mode == CreateMode::Container {
            CreateMode::Persistent
        } else {
            mode
        };
        let acl: Vec<Acl> = acl.iter().map(Acl::from).collect();
        let fixed = self.auth.fixup(&acl)?;
        Ok(ZkOp::Create {
            path,
            data,
            acl: fixed,
            mode,
            ttl_ms: ttl,
        })
    }

    /// The answer to a write whose proposal returned `result`: after every
    /// event up to its zxid (a client sees the watch event before the
    /// data that reflects it), with that zxid, as FinalRequestProcessor
    /// answers right after applying the txn.
    pub(super) async fn finish_write(
        &mut self,
        p: Pending,
        result: Result<Applied, NodeError>,
    ) -> Step {
        let a = match result {
            Ok(a) => a,
            Err(e) => {
                // Outcome unknown: close, as after a lost connection; the
                // client retries.
                tracing::warn!(session = self.session, "zookeeper: write failed: {e}");
                return Step::Close;
            }
        };
        self.wait_applied(a.revision).await;
        let zxid = a.revision;
        let upto = zxid.min(self.state_rev());
        self.catch_up(upto).await;
        let Some(res) = self.zk_result(a.response) else {
            return Step::Close;
        };
        write_reply(p.xid, zxid, p.kind, res)
    }

    /// The ZooKeeper result of a committed write; `None`: close the
    /// connection without an answer.
    fn zk_result(&self, response: Response) -> Option<Result<ZkResponse, ZkError>> {
        Some(match response {
            // The session was closed (through another member's connection)
            // or expired while this connection is still open. ZooKeeper
            // closes a session's connections as the close applies, on every
            // server, and drops requests of a dead session unanswered: the
            // client sees a lost connection, then `Expired` when it
            // reconnects, never a SESSIONEXPIRED answer on a live connection.
            Response::Zk(Err(ZkError::SessionExpired)) => {
                tracing::debug!(
                    session = self.session,
                    "zookeeper: write of a closed session; closing"
                );
                return None;
            }
            // Re-established on another connection since: ZooKeeper's
            // FinalRequestProcessor closes this one without an answer.
            Response::Zk(Err(ZkError::SessionMoved)) => {
                tracing::debug!(
                    session = self.session,
                    "zookeeper: session moved to another connection; closing"
                );
                return None;
            }
            Response::Zk(r) => r,
            other => {
                tracing::error!(?other, "zookeeper: unexpected response");
                Err(ZkError::RuntimeInconsistency)
            }
        })
    }
}

/// The answer to a write of `kind` at `zxid`, from its result `res`.
fn write_reply(xid: i32, zxid: i64, kind: Kind, res: Result<ZkResponse, ZkError>) -> Step {
    let reply = |err: ZkError| Step::Reply {
        xid,
        zxid,
        err: err.code(),
        body: vec![],
    };
    let ok = |body: Vec<u8>| Step::Reply {
        xid,
        zxid,
        err: 0,
        body,
    };
    use janus_core::ZkResponse::{Multi, Op};
    match (kind, res) {
        (Kind::Refused(e), _) => reply(e),
        (Kind::Multi { codes, local }, Ok(Multi(results))) => {
            ok(multi_answer(&codes, local, results))
        }
        (_, Err(e)) => reply(e),
        (Kind::Create { opcode }, Ok(Op(ZkOpResult::Create { path, stat }))) => {
            if opcode == op::CREATE {
                ok(encode(&CreateResponse { path }))
            } else {
                ok(encode(&Create2Response {
                    path,
                    stat: stat.into(),
                }))
            }
        }
        (Kind::SetData, Ok(Op(ZkOpResult::SetData { stat }))) => {
            ok(encode(&SetDataResponse { stat: stat.into() }))
        }
        (Kind::SetAcl, Ok(Op(ZkOpResult::SetAcl { stat }))) => {
            ok(encode(&SetACLResponse { stat: stat.into() }))
        }
        (Kind::Empty, Ok(Op(ZkOpResult::Delete | ZkOpResult::Check))) => ok(vec![]),
        _ => reply(ZkError::RuntimeInconsistency),
    }
}
