//! The session handshake: the ConnectRequest opens a session (a committed
//! `ZkCreateSession`), re-establishes one, or, without a quorum, opens a
//! read-only session local to this member.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use janus_core::{Command, Response};
use janus_jute::{Reader, Record, Writer};
use tokio::sync::Notify;

use super::Conn;
use crate::proto::{ConnectRequest, ConnectResponse};

/// What the handshake answers with, from the ConnectRequest.
struct Connect {
    /// The client sent the trailing readOnly flag: the answer has one too.
    ro_aware: bool,
    /// The negotiated session timeout.
    timeout: i32,
    session_id: i64,
    passwd: Vec<u8>,
}

impl Conn {
    /// The ConnectRequest. Returns the notifier a later connection of the
    /// same session uses to close this one, or `None` to close now.
    pub(super) async fn handshake(&mut self, body: &[u8]) -> Option<Arc<Notify>> {
        let mut r = Reader::new(body);
        let req = match ConnectRequest::decode(&mut r) {
            Ok(req) => req,
            Err(e) => {
                tracing::info!(addr = %self.info.addr, "zookeeper: bad ConnectRequest: {e}");
                return None;
            }
        };
        // Old clients omit the trailing readOnly flag; answer in kind.
        let ro_aware = r.remaining() >= 1;
        let ro_wanted = ro_aware && r.bool().unwrap_or(false);
        let applied = self.state_rev();
        if req.last_zxid_seen > applied {
            // The client has seen a newer state than this member has
            // applied: refuse, so it tries another member (or retries).
            tracing::info!(
                addr = %self.info.addr,
                client = req.last_zxid_seen,
                ours = applied,
                "zookeeper: client is ahead of this member; closing"
            );
            return None;
        }
        let req = Connect {
            ro_aware,
            timeout: self.srv.cfg.negotiate(req.time_out),
            session_id: req.session_id,
            // A null password matches nothing but an empty one, as in Java.
            passwd: req.passwd.clone().unwrap_or_default(),
        };
        if self.srv.node.leader().is_none() {
            self.open_read_only(&req, ro_wanted)?;
        } else if req.session_id == 0 {
            self.create_session(&req).await?;
        } else {
            self.reestablish(&req).await?;
        }
        self.info.session.store(self.session, Ordering::Relaxed);
        if !self.flush().await {
            return None;
        }
        Some(Arc::new(Notify::new()))
    }

    /// Queue the ConnectResponse.
    fn respond(&mut self, req: &Connect, timeout: i32, session: i64, passwd: Vec<u8>) {
        let mut w = Writer::new();
        ConnectResponse {
            protocol_version: 0,
            time_out: timeout,
            session_id: session,
            passwd: Some(passwd),
        }
        .encode(&mut w);
        if req.ro_aware {
            w.bool(self.read_only);
        }
        self.queue_frame(&w.into_inner());
    }

    /// Whether this member knows the session `req` names, with its password.
    fn knows(&self, req: &Connect) -> bool {
        let st = self.srv.node.state();
        st.lease(req.session_id)
            .and_then(|l| l.session)
            .is_some_and(|s| s.password == req.passwd)
    }

    fn open_read_only(&mut self, req: &Connect, ro_wanted: bool) -> Option<()> {
        // No quorum: ZooKeeper's read-only mode. Only clients that allow
        // it are served, with a session local to this member (nothing
        // can be committed); the others are refused.
        if !ro_wanted {
            tracing::info!(addr = %self.info.addr, "zookeeper: no quorum and the client wants read-write; closing");
            return None;
        }
        self.read_only = true;
        let known = self.knows(req);
        let (id, password) = if req.session_id != 0 && known {
            (req.session_id, req.passwd.clone())
        } else {
            let id = self.srv.new_session_id();
            (id, self.srv.password_for(id))
        };
        self.session = id;
        self.respond(req, req.timeout, id, password);
        Some(())
    }

    async fn create_session(&mut self, req: &Connect) -> Option<()> {
        let mut created = None;
        for _ in 0..5 {
            let id = self.srv.new_session_id();
            let password = self.srv.password_for(id);
            let cmd = Command::ZkCreateSession {
                session: id,
                password: password.clone(),
                timeout_ms: req.timeout as i64,
            };
            match self.srv.node.propose(cmd).await {
                Ok(a) if matches!(a.response, Response::Zk(Ok(_))) => {
                    self.wait_applied(a.revision).await;
                    created = Some((id, password));
                    break;
                }
                // Id taken (or refused): draw the next one.
                Ok(_) => continue,
                Err(e) => {
                    tracing::warn!(addr = %self.info.addr, "zookeeper: creating a session: {e}");
                    return None;
                }
            }
        }
        let (id, password) = created?;
        self.session = id;
        self.respond(req, req.timeout, id, password);
        Some(())
    }

    async fn reestablish(&mut self, req: &Connect) -> Option<()> {
        let mut ok = self.knows(req);
        if !ok {
            // This member may not have applied the session's creation
            // yet (made through another member a moment ago; a client
            // that has done nothing yet sends no zxid to wait for).
            // ZooKeeper validates a re-established session with the
            // leader, so catch up with the leader's commit first.
            if let Err(e) = self.srv.node.read_index().await {
                tracing::info!(
                    addr = %self.info.addr,
                    "zookeeper: cannot validate session {:#x}: {e}; closing",
                    req.session_id
                );
                return None;
            }
            ok = self.knows(req);
        }
        if !ok {
            // Expired, unknown or wrong password: ZooKeeper's answer.
            self.respond(req, 0, 0, vec![0; 16]);
            let _ = self.flush().await;
            return None;
        }
        // The session is this connection's now: writes still coming
        // from its previous connection (on any member) fail with
        // SESSIONMOVED, as ZooKeeper's leader refuses them.
        let attach = Command::ZkAttach {
            session: req.session_id,
            owner: self.owner,
        };
        match self.srv.node.propose(attach).await {
            Ok(a) if matches!(a.response, Response::Zk(Ok(_))) => {
                self.wait_applied(a.revision).await
            }
            Ok(_) => {
                // Expired in the meantime.
                self.respond(req, 0, 0, vec![0; 16]);
                let _ = self.flush().await;
                return None;
            }
            Err(e) => {
                tracing::info!(addr = %self.info.addr, "zookeeper: re-establishing session {:#x}: {e}; closing", req.session_id);
                return None;
            }
        }
        self.session = req.session_id;
        self.srv.node.touch(self.session);
        self.respond(req, req.timeout, req.session_id, req.passwd.clone());
        Some(())
    }
}
