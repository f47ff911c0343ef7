//! Multi ops: multiRead (answered from this member's state), and the
//! decoding and answer of a multi write (proposed as one `ZkMulti`).

use janus_core::zk::perms;
use janus_core::{Command, ZkError, ZkOpResult};
use janus_jute::{Reader, Record, Writer};

use super::reads::lookup_path;
use super::writes::{stand_in, Kind};
use super::{null_string, Conn, Step};
use crate::proto::{op, *};

/// One op's MultiHeader (not the terminator).
fn header(w: &mut Writer, r#type: i32, err: i32) {
    MultiHeader {
        r#type,
        done: false,
        err,
    }
    .encode(w);
}

/// The `{-1, true, -1}` terminator of a MultiResponse.
fn terminator(w: &mut Writer) {
    MultiHeader {
        r#type: -1,
        done: true,
        err: -1,
    }
    .encode(w);
}

/// A multiRead's ops: (op code, path); `None` when the whole multiRead
/// fails with MARSHALLINGERROR.
fn read_ops(r: &mut Reader<'_>) -> Option<Vec<(i32, String)>> {
    let mut reqs: Vec<(i32, String)> = Vec::new();
    loop {
        let mh = MultiHeader::decode(r).ok()?;
        if mh.done {
            break;
        }
        if null_string(r.rest()) {
            // A null path throws in the handler: the whole multiRead
            // fails with MARSHALLINGERROR.
            return None;
        }
        let path = match mh.r#type {
            op::GET_CHILDREN => GetChildrenRequest::decode(r).map(|q| q.path),
            op::GET_DATA => GetDataRequest::decode(r).map(|q| q.path),
            _ => return None,
        };
        reqs.push((mh.r#type, path.ok()?));
    }
    Some(reqs)
}

/// A MultiResponse: per op a MultiHeader and its result record, then the
/// `{-1, true, -1}` terminator. `codes` are the request's op codes (they
/// pick CreateResponse vs Create2Response).
pub(super) fn multi_body(codes: &[i32], results: &[ZkOpResult]) -> Vec<u8> {
    let mut w = Writer::new();
    for (i, r) in results.iter().enumerate() {
        let code = codes.get(i).copied().unwrap_or(op::CREATE2);
        op_result(&mut w, code, r);
    }
    terminator(&mut w);
    w.into_inner()
}

/// One op's part of a MultiResponse.
fn op_result(w: &mut Writer, code: i32, r: &ZkOpResult) {
    match r {
        ZkOpResult::Create { path, stat } => {
            if code == op::CREATE {
                header(w, op::CREATE, 0);
                CreateResponse { path: path.clone() }.encode(w);
            } else {
                header(w, op::CREATE2, 0);
                Create2Response {
                    path: path.clone(),
                    stat: (*stat).into(),
                }
                .encode(w);
            }
        }
        ZkOpResult::Delete => header(w, op::DELETE, 0),
        ZkOpResult::SetData { stat } => {
            header(w, op::SET_DATA, 0);
            SetDataResponse {
                stat: (*stat).into(),
            }
            .encode(w);
        }
        ZkOpResult::SetAcl { stat } => {
            header(w, op::SET_ACL, 0);
            SetACLResponse {
                stat: (*stat).into(),
            }
            .encode(w);
        }
        ZkOpResult::Check => header(w, op::CHECK, 0),
        ZkOpResult::Error(e) => {
            let err = e.map_or(0, |e| e.code());
            header(w, op::ERROR, err);
            ErrorResponse { err }.encode(w);
        }
    }
}

/// The answer to a committed multi write: `local` (an op refused before
/// the tree saw it) replaces its stand-in's error, and ops the results
/// lack answer RUNTIMEINCONSISTENCY.
pub(super) fn multi_answer(
    codes: &[i32],
    local: Option<(usize, ZkError)>,
    mut results: Vec<ZkOpResult>,
) -> Vec<u8> {
    if let Some((i, e)) = local {
        if let Some(r) = results.get_mut(i) {
            if *r == ZkOpResult::Error(Some(ZkError::BadArguments)) {
                *r = ZkOpResult::Error(Some(e));
            }
        }
    }
    results.resize(
        codes.len(),
        ZkOpResult::Error(Some(ZkError::RuntimeInconsistency)),
    );
    multi_body(codes, &results)
}

impl Conn {
    pub(super) async fn multi_read(&mut self, xid: i32, r: &mut Reader<'_>) -> Step {
        let Some(reqs) = read_ops(r) else {
            return self.malformed(xid).await;
        };
        let (rev, body) = self.multi_read_body(&reqs);
        self.read_reply(xid, rev, Ok(body)).await
    }

    /// The multiRead's answer and the revision it was read at.
    fn multi_read_body(&self, reqs: &[(i32, String)]) -> (i64, Vec<u8>) {
        let st = self.srv.node.state();
        let mut w = Writer::new();
        for (code, path) in reqs {
            let res = match st.znode(lookup_path(path)) {
                None => Err(ZkError::NoNode),
                Some(n) => self.auth.check(&n.acl, perms::READ).map(|()| n),
            };
            match res {
                Ok(n) if *code == op::GET_DATA => {
                    header(&mut w, op::GET_DATA, 0);
                    GetDataResponse {
                        data: n.data,
                        stat: n.stat.into(),
                    }
                    .encode(&mut w);
                }
                Ok(_) => {
                    header(&mut w, op::GET_CHILDREN, 0);
                    GetChildrenResponse {
                        children: st.zk_children(lookup_path(path)).unwrap_or_default(),
                    }
                    .encode(&mut w);
                }
                Err(e) => {
                    header(&mut w, op::ERROR, e.code());
                    ErrorResponse { err: e.code() }.encode(&mut w);
                }
            }
        }
        terminator(&mut w);
        (st.revision(), w.into_inner())
    }

    /// A multi's ops in request order. One refused here (flags, ACL
    /// fix-up) fails the multi, but an earlier op's own error must still
    /// come first: the ops before it are committed with a stand-in after
    /// them, whose error is then replaced by the real one.
    pub(super) fn decode_multi(&self, r: &mut Reader<'_>) -> (Kind, Command) {
        let malformed = (
            Kind::Refused(ZkError::MarshallingError),
            self.zk(stand_in()),
        );
        let mut codes = Vec::new();
        let mut ops = Vec::new();
        let mut local = None;
        loop {
            let Ok(mh) = MultiHeader::decode(r) else {
                tracing::info!(addr = %self.info.addr, "zookeeper: malformed multi");
                return malformed;
            };
            if mh.done {
                break;
            }
            if !matches!(
                mh.r#type,
                op::CREATE
                    | op::CREATE2
                    | op::CREATE_CONTAINER
                    | op::CREATE_TTL
                    | op::DELETE
                    | op::SET_DATA
                    | op::CHECK
            ) {
                tracing::info!(addr = %self.info.addr, op = mh.r#type, "zookeeper: bad op in multi");
                return malformed;
            }
            if mh.r#type == op::CHECK && null_string(r.rest()) {
                // Inside a multi a null path throws before validatePath.
                return malformed;
            }
            match self.decode_single(mh.r#type, r) {
                Ok((_, op)) => {
                    if local.is_none() {
                        ops.push(op);
                    }
                }
                Err(ZkError::MarshallingError) => return malformed,
                Err(e) => {
                    if local.is_none() {
                        local = Some((codes.len(), e));
                        ops.push(stand_in());
                    }
                }
            }
            codes.push(mh.r#type);
        }
        let cmd = Command::ZkAs {
            ids: self.auth.ids.clone(),
            owner: self.owner,
            command: Box::new(Command::ZkMulti {
                session: self.session,
                ops,
            }),
        };
        (Kind::Multi { codes, local }, cmd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_body_layout() {
        let b = multi_body(
            &[op::CREATE, op::CHECK],
            &[
                ZkOpResult::Error(None),
                ZkOpResult::Error(Some(ZkError::BadVersion)),
            ],
        );
        let mut r = Reader::new(&b);
        let h = MultiHeader::decode(&mut r).unwrap();
        assert_eq!((h.r#type, h.done, h.err), (-1, false, 0));
        assert_eq!(ErrorResponse::decode(&mut r).unwrap().err, 0);
        let h = MultiHeader::decode(&mut r).unwrap();
        assert_eq!((h.r#type, h.err), (-1, -103));
        assert_eq!(ErrorResponse::decode(&mut r).unwrap().err, -103);
        let h = MultiHeader::decode(&mut r).unwrap();
        assert_eq!((h.r#type, h.done, h.err), (-1, true, -1));
        assert_eq!(r.remaining(), 0);
    }
}
