//! Authentication ops: addAuth (the AuthPacket) and the SASL DIGEST-MD5
//! exchange. The ids they prove are checked against ACLs in
//! [`crate::auth`].

use std::sync::atomic::Ordering;

use janus_core::ZkError;
use janus_jute::{Reader, Record, Writer};

use super::{encode, Conn, Step};
use crate::proto::{op, AuthPacket, GetSASLRequest, ReplyHeader, SetSASLResponse};

impl Conn {
    pub(super) async fn auth_packet(&mut self, xid: i32, r: &mut Reader<'_>) -> Step {
        let Some(p) = self.decode::<AuthPacket>(op::AUTH, r) else {
            return self.malformed(xid).await;
        };
        match self.auth.authenticate(
            &p.scheme,
            p.auth.as_deref().unwrap_or_default(),
            self.srv.cfg.super_digest.as_deref(),
        ) {
            // ZooKeeper answers with the request's own xid (clients such as
            // zookeeper-client pipeline several auths and match by it) and
            // zxid 0 (checked against 3.8).
            Ok(()) => Step::Reply {
                xid,
                zxid: 0,
                err: 0,
                body: vec![],
            },
            Err(e) => {
                self.srv.auth_failed.fetch_add(1, Ordering::Relaxed);
                Step::ReplyClose {
                    xid,
                    zxid: 0,
                    err: e.code(),
                    body: vec![],
                }
            }
        }
    }

    pub(super) async fn sasl(&mut self, xid: i32, r: &mut Reader<'_>) -> Step {
        let Some(q) = self.decode::<GetSASLRequest>(op::SASL, r) else {
            return self.malformed(xid).await;
        };
        self.sasl_step(xid, q.token.as_deref().unwrap_or_default())
    }

    /// One SASL token (`processSasl`): answered with zxid 0 and the
    /// server's next token; a failure answers AUTHFAILED with a null token
    /// and closes the connection (the session lives on, as in ZooKeeper).
    fn sasl_step(&mut self, xid: i32, token: &[u8]) -> Step {
        let cfg = &self.srv.cfg.sasl;
        let res = if cfg.users.is_empty() {
            // No SASL users configured: nothing can succeed.
            Err("SASL is not configured".to_string())
        } else {
            self.sasl
                .step(token, &cfg.users, crate::tls::fill_random)
                .map_err(|e| e.to_string())
        };
        match res {
            Ok((reply, user)) => {
                if let Some(user) = user {
                    tracing::info!(addr = %self.info.addr, session = format!("0x{:x}", self.session), %user, "zookeeper: SASL authenticated");
                    if cfg.super_user.as_deref() == Some(user.as_str()) {
                        self.auth.add(janus_core::Id {
                            scheme: "super".into(),
                            id: String::new(),
                        });
                    }
                    self.auth.add(janus_core::Id {
                        scheme: "sasl".into(),
                        id: user,
                    });
                }
                Step::Reply {
                    xid,
                    zxid: 0,
                    err: 0,
                    body: encode(&SetSASLResponse { token: Some(reply) }),
                }
            }
            Err(e) => {
                self.srv.auth_failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(addr = %self.info.addr, "zookeeper: SASL authentication failed: {e}; closing");
                let mut w = Writer::new();
                ReplyHeader {
                    xid,
                    zxid: 0,
                    err: ZkError::AuthFailed.code(),
                }
                .encode(&mut w);
                SetSASLResponse { token: None }.encode(&mut w);
                self.queue_frame(&w.into_inner());
                self.srv.packets_sent.fetch_add(1, Ordering::Relaxed);
                self.info.sent.fetch_add(1, Ordering::Relaxed);
                Step::Close
            }
        }
    }
}
