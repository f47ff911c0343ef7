//! Reads: exists, getData, getChildren(2), getACL, getAllChildrenNumber,
//! getEphemerals, whoAmI and sync, answered from this member's state.

use janus_core::zk::perms;
use janus_core::ZkError;
use janus_jute::Reader;

use super::{encode, Conn, Step};
use crate::auth::GET_ACL_PERMS;
use crate::proto::{op, *};
use crate::watch::Mode;

/// The node a read looks up: ZooKeeper's DataTree also files the root
/// under the empty path, so a read of "" answers with the root.
pub(super) fn lookup_path(path: &str) -> &str {
    if path.is_empty() {
        "/"
    } else {
        path
    }
}

impl Conn {
    pub(super) async fn exists(&mut self, xid: i32, r: &mut Reader<'_>) -> Step {
        let Some(q) = self.decode::<ExistsRequest>(op::EXISTS, r) else {
            return self.malformed(xid).await;
        };
        let (path, watch) = (q.path, q.watch);
        if path.contains('\0') {
            return self.done(xid, ZkError::BadArguments.code(), vec![]).await;
        }
        let (rev, res) = {
            let st = self.srv.node.state();
            // No permission is checked: FinalRequestProcessor answers
            // exists with the Stat whatever the node's ACL says.
            let res = st
                .znode(lookup_path(&path))
                .map(|n| n.stat)
                .ok_or(ZkError::NoNode);
            (st.revision(), res)
        };
        self.catch_up(rev).await;
        // exists sets a watch whether or not the node is there (its events
        // still reach only a connection that may READ the node).
        if watch {
            self.watches.data.set(path, Mode::Standard);
            self.update_watch_info();
        }
        match res {
            Ok(stat) => Step::Reply {
                xid,
                zxid: rev,
                err: 0,
                body: encode(&ExistsResponse { stat: stat.into() }),
            },
            Err(e) => Step::Reply {
                xid,
                zxid: rev,
                err: e.code(),
                body: vec![],
            },
        }
    }

    pub(super) async fn get_data(&mut self, xid: i32, r: &mut Reader<'_>) -> Step {
        let Some(q) = self.decode::<GetDataRequest>(op::GET_DATA, r) else {
            return self.malformed(xid).await;
        };
        let (path, watch) = (q.path, q.watch);
        let (rev, res) = {
            let st = self.srv.node.state();
            let res = match st.znode(lookup_path(&path)) {
                None => Err(ZkError::NoNode),
                Some(n) => self.auth.check(&n.acl, perms::READ).map(|()| {
                    encode(&GetDataResponse {
                        data: n.data.clone(),
                        stat: n.stat.into(),
                    })
                }),
            };
            (st.revision(), res)
        };
        self.catch_up(rev).await;
        if watch && res.is_ok() {
            self.watches.data.set(path, Mode::Standard);
            self.update_watch_info();
        }
        self.read_reply(xid, rev, res).await
    }

    /// getChildren, or getChildren2 (`opcode`), which adds the Stat.
    pub(super) async fn get_children(&mut self, opcode: i32, xid: i32, r: &mut Reader<'_>) -> Step {
        let two = opcode == op::GET_CHILDREN2;
        let q = if two {
            self.decode::<GetChildren2Request>(opcode, r)
                .map(|q| (q.path, q.watch))
        } else {
            self.decode::<GetChildrenRequest>(opcode, r)
                .map(|q| (q.path, q.watch))
        };
        let Some((path, watch)) = q else {
            return self.malformed(xid).await;
        };
        let (rev, res) = {
            let st = self.srv.node.state();
            let res = match st.znode(lookup_path(&path)) {
                None => Err(ZkError::NoNode),
                Some(n) => self.auth.check(&n.acl, perms::READ).map(|()| {
                    let children: Vec<String> =
                        st.zk_children(lookup_path(&path)).unwrap_or_default();
                    if two {
                        encode(&GetChildren2Response {
                            children,
                            stat: n.stat.into(),
                        })
                    } else {
                        encode(&GetChildrenResponse { children })
                    }
                }),
            };
            (st.revision(), res)
        };
        self.catch_up(rev).await;
        if watch && res.is_ok() {
            self.watches.child.set(path, Mode::Standard);
            self.update_watch_info();
        }
        self.read_reply(xid, rev, res).await
    }

    pub(super) async fn get_acl(&mut self, xid: i32, r: &mut Reader<'_>) -> Step {
        let Some(q) = self.decode::<GetACLRequest>(op::GET_ACL, r) else {
            return self.malformed(xid).await;
        };
        let (rev, res) = {
            let st = self.srv.node.state();
            let res = match st.znode(lookup_path(&q.path)) {
                None => Err(ZkError::NoNode),
                Some(n) => self.auth.check(&n.acl, GET_ACL_PERMS).map(|()| {
                    let admin = self.auth.check(&n.acl, perms::ADMIN).is_ok();
                    let acl = self.auth.mask_for_get_acl(&n.acl, admin);
                    encode(&GetACLResponse {
                        acl: acl.iter().map(ACL::from).collect(),
                        stat: n.stat.into(),
                    })
                }),
            };
            (st.revision(), res)
        };
        self.read_reply(xid, rev, res).await
    }

    pub(super) async fn get_all_children_number(&mut self, xid: i32, r: &mut Reader<'_>) -> Step {
        let Some(q) = self.decode::<GetAllChildrenNumberRequest>(op::GET_ALL_CHILDREN_NUMBER, r)
        else {
            return self.malformed(xid).await;
        };
        let (rev, res) = {
            let st = self.srv.node.state();
            let res = match st.znode(lookup_path(&q.path)) {
                None => Err(ZkError::NoNode),
                Some(n) => self.auth.check(&n.acl, perms::READ).map(|()| {
                    let total = st.zk_all_children_number(lookup_path(&q.path)).unwrap_or(0);
                    encode(&GetAllChildrenNumberResponse {
                        total_number: total.min(i32::MAX as i64) as i32,
                    })
                }),
            };
            (st.revision(), res)
        };
        self.read_reply(xid, rev, res).await
    }

    pub(super) async fn get_ephemerals(&mut self, xid: i32, r: &mut Reader<'_>) -> Step {
        let Some(q) = self.decode::<GetEphemeralsRequest>(op::GET_EPHEMERALS, r) else {
            return self.malformed(xid).await;
        };
        let (rev, list) = {
            let st = self.srv.node.state();
            (
                st.revision(),
                st.zk_ephemerals(self.session, &q.prefix_path),
            )
        };
        self.read_reply(
            xid,
            rev,
            Ok(encode(&GetEphemeralsResponse { ephemerals: list })),
        )
        .await
    }

    pub(super) async fn who_am_i(&mut self, xid: i32) -> Step {
        let client_info = self
            .auth
            .client_info()
            .into_iter()
            .map(|(auth_scheme, user)| ClientInfo { auth_scheme, user })
            .collect();
        self.done(xid, 0, encode(&WhoAmIResponse { client_info }))
            .await
    }

    pub(super) async fn sync(&mut self, xid: i32, r: &mut Reader<'_>) -> Step {
        let Some(q) = self.decode::<SyncRequest>(op::SYNC, r) else {
            return self.malformed(xid).await;
        };
        if let Err(e) = self.srv.node.read_index().await {
            tracing::warn!("zookeeper: sync: {e}");
            return Step::Close;
        }
        self.done(xid, 0, encode(&SyncResponse { path: q.path }))
            .await
    }
}
