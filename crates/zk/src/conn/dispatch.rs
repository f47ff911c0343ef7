//! Dispatch: a request's header, the checks every request gets, and the
//! handler of its op code.

use std::time::Instant;

use janus_core::{Command, ZkError};
use janus_jute::{Reader, Record};

use super::{is_write, null_string, writes, Conn, Step};
use crate::proto::{op, xid, RequestHeader};

/// These read a null path and throw a NullPointerException, which
/// FinalRequestProcessor answers with MARSHALLINGERROR.
const NULL_PATH_THROWS: &[i32] = &[
    op::EXISTS,
    op::GET_DATA,
    op::GET_CHILDREN,
    op::GET_CHILDREN2,
    op::GET_ACL,
    op::GET_ALL_CHILDREN_NUMBER,
    op::ADD_WATCH,
    op::CHECK_WATCHES,
];

impl Conn {
    pub(super) async fn handle(&mut self, body: &[u8], started: Instant) -> Step {
        let mut r = Reader::new(body);
        let Ok(h) = RequestHeader::decode(&mut r) else {
            tracing::info!(addr = %self.info.addr, "zookeeper: truncated request header; closing");
            return Step::Close;
        };
        self.srv.count_op(h.r#type);
        if self.read_only && is_write(h.r#type) {
            return self.refuse_on_read_only(h).await;
        }
        let xid = h.xid;
        if NULL_PATH_THROWS.contains(&h.r#type) && null_string(r.rest()) {
            return self.malformed(xid).await;
        }
        let r = &mut r;
        match h.r#type {
            op::PING => self.done(xid::PING, 0, vec![]).await,
            op::CLOSE_SESSION => self.close_session(xid).await,
            op::AUTH => self.auth_packet(xid, r).await,
            op if writes::pipelined(op) => Step::Write(self.submit_write(op, xid, r, started)),
            op::MULTI_READ => self.multi_read(xid, r).await,
            op::EXISTS => self.exists(xid, r).await,
            op::GET_DATA => self.get_data(xid, r).await,
            op::GET_CHILDREN | op::GET_CHILDREN2 => self.get_children(h.r#type, xid, r).await,
            op::GET_ACL => self.get_acl(xid, r).await,
            op::GET_ALL_CHILDREN_NUMBER => self.get_all_children_number(xid, r).await,
            op::GET_EPHEMERALS => self.get_ephemerals(xid, r).await,
            op::WHO_AM_I => self.who_am_i(xid).await,
            op::SYNC => self.sync(xid, r).await,
            op::SET_WATCHES | op::SET_WATCHES2 => self.set_watches(h.r#type, xid, r).await,
            op::ADD_WATCH => self.add_watch(xid, r).await,
            op::CHECK_WATCHES | op::REMOVE_WATCHES => self.check_watches(h.r#type, xid, r).await,
            op::RECONFIG => self.reconfig(xid, r).await,
            op::SASL => self.sasl(xid, r).await,
            other => self.unimplemented(other, xid),
        }
    }

    /// A request's record; `None` (logged) when it does not decode, which
    /// the caller answers with MARSHALLINGERROR ([`Conn::malformed`]).
    pub(super) fn decode<T: Record>(&self, opcode: i32, r: &mut Reader<'_>) -> Option<T> {
        match T::decode(r) {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::info!(addr = %self.info.addr, op = opcode, "zookeeper: malformed request: {e}");
                None
            }
        }
    }

    /// ZooKeeper's answer to a write on a read-only server.
    async fn refuse_on_read_only(&mut self, h: RequestHeader) -> Step {
        if h.r#type == op::CLOSE_SESSION {
            let zxid = self.state_rev();
            return Step::ReplyClose {
                xid: h.xid,
                zxid,
                err: 0,
                body: vec![],
            };
        }
        self.done(h.xid, ZkError::NotReadOnly.code(), vec![]).await
    }

    async fn close_session(&mut self, xid: i32) -> Step {
        let r = self
            .srv
            .node
            .propose(Command::ZkCloseSession {
                session: self.session,
            })
            .await;
        match r {
            Ok(a) => self.wait_applied(a.revision).await,
            Err(e) => {
                tracing::warn!(session = self.session, "zookeeper: closeSession: {e}");
                return Step::Close;
            }
        }
        let zxid = self.state_rev();
        self.catch_up(zxid).await;
        Step::ReplyClose {
            xid,
            zxid,
            err: 0,
            body: vec![],
        }
    }

    fn unimplemented(&mut self, opcode: i32, xid: i32) -> Step {
        // UnimplementedRequestProcessor: answer, then close.
        tracing::info!(addr = %self.info.addr, op = opcode, "zookeeper: unknown op code; closing");
        let zxid = self.state_rev();
        Step::ReplyClose {
            xid,
            zxid,
            err: ZkError::Unimplemented.code(),
            body: vec![],
        }
    }
}
