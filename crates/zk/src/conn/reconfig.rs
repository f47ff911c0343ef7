//! ZooKeeper's `reconfig` (op 16) onto the one Raft membership.
//!
//! Checks and errors follow `PrepRequestProcessor` (ZooKeeper 3.8): off
//! unless `reconfig_enabled` (RECONFIGDISABLED), a change under way
//! (RECONFIGINPROGRESS), a stale `curConfigId` (BADVERSION), malformed
//! server strings (BADARGUMENTS), fewer than two voters
//! (BADARGUMENTS), no synced quorum of the new voters (NEWCONFIGNOQUORUM),
//! WRITE on `/zookeeper/config` (NOAUTH). The answer is the new config's
//! data and stat, as `getData` of `/zookeeper/config` returns them.
//!
//! Janus has one peer port: in `server.N=host:port1:port2:role;client`,
//! `host:port1` becomes the member's peer address; `port2` is only
//! remembered for `/zookeeper/config`. Participants are Raft voters,
//! observers Raft learners.

use janus_core::zk::perms;
use janus_core::{ZkError, CONFIG_NODE};
use janus_raft::{Member, MembershipError, MembershipOp, NodeId};

use janus_jute::Reader;

use super::{encode, Conn, Step};
use crate::proto::{op, GetDataResponse, ReconfigRequest};

/// `KeeperException.Code.NEWCONFIGNOQUORUM`.
const NEW_CONFIG_NO_QUORUM: i32 = -13;
/// `KeeperException.Code.RECONFIGINPROGRESS`.
const RECONFIG_IN_PROGRESS: i32 = -14;

/// One joining server: `server.N=host:port:port[:role][;[host:]port]`.
fn parse_joiner(s: &str) -> Result<(NodeId, Member, bool), ZkError> {
    let (key, spec) = s.trim().split_once('=').ok_or(ZkError::BadArguments)?;
    let id: NodeId = key
        .rsplit('.')
        .next()
        .and_then(|n| n.trim().parse().ok())
        .filter(|n| *n > 0)
        .ok_or(ZkError::BadArguments)?;
    let (server, client) = match spec.split_once(';') {
        Some((s, c)) => (s.trim(), Some(c.trim())),
        None => (spec.trim(), None),
    };
    let parts: Vec<&str> = server.split(':').collect();
    // At least host, quorum port, election port, and a client port.
    if parts.len() < 3 || parts.len() > 4 || client.is_none_or(str::is_empty) {
        return Err(ZkError::BadArguments);
    }
    let port = |p: &str| p.parse::<u16>().ok().filter(|p| *p > 0);
    let (host, quorum, election) = (parts[0], port(parts[1]), port(parts[2]));
    let (Some(quorum), Some(election)) = (quorum, election) else {
        return Err(ZkError::BadArguments);
    };
    if host.is_empty() {
        return Err(ZkError::BadArguments);
    }
    let participant = match parts.get(3).map(|r| r.to_ascii_lowercase()) {
        None => true,
        Some(r) if r == "participant" => true,
        Some(r) if r == "observer" => false,
        Some(_) => return Err(ZkError::BadArguments),
    };
    let client = client.unwrap_or_default();
    // A bare client port listens on every address, as in ZooKeeper.
    let zk_client = match client.rsplit_once(':') {
        Some((h, p)) if port(p).is_some() && !h.is_empty() => client.to_string(),
        None if port(client).is_some() => format!("0.0.0.0:{client}"),
        _ => return Err(ZkError::BadArguments),
    };
    let node = Member {
        addr: format!("{host}:{quorum}"),
        zk_client,
        zk_election_port: if election == quorum { 0 } else { election },
        ..Member::default()
    };
    Ok((id, node, participant))
}

fn split_list(s: &str) -> impl Iterator<Item = &str> {
    s.split([',', '\n'])
        .map(str::trim)
        .filter(|p| !p.is_empty())
}

/// The change a request asks for: (joining, leaving).
#[allow(clippy::type_complexity)]
fn parse_request(
    q: &ReconfigRequest,
    current: &[NodeId],
) -> Result<(Vec<(NodeId, Member, bool)>, Vec<NodeId>), ZkError> {
    if !q.new_members.is_empty() {
        // Non-incremental: the listed servers are the whole next config.
        let joining = split_list(&q.new_members)
            .filter(|l| l.starts_with("server."))
            .map(parse_joiner)
            .collect::<Result<Vec<_>, _>>()?;
        let leaving = current
            .iter()
            .filter(|id| !joining.iter().any(|(j, _, _)| j == *id))
            .copied()
            .collect();
        return Ok((joining, leaving));
    }
    let joining = split_list(&q.joining_servers)
        .map(parse_joiner)
        .collect::<Result<Vec<_>, _>>()?;
    let leaving = split_list(&q.leaving_servers)
        .map(|id| id.parse::<NodeId>().map_err(|_| ZkError::BadArguments))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((joining, leaving))
}

impl Conn {
    pub(super) async fn reconfig(&mut self, xid: i32, r: &mut Reader<'_>) -> Step {
        let Some(q) = self.decode::<ReconfigRequest>(op::RECONFIG, r) else {
            return self.malformed(xid).await;
        };
        if !self.srv.cfg.reconfig_enabled {
            return self
                .done(xid, ZkError::ReconfigDisabled.code(), vec![])
                .await;
        }
        let (config_version, acl) = {
            let st = self.srv.node.state();
            match st.znode(CONFIG_NODE) {
                Some(n) => (n.stat.mzxid, n.acl.clone()),
                None => (0, Vec::new()),
            }
        };
        if q.cur_config_id != -1 && q.cur_config_id != config_version {
            return self.done(xid, ZkError::BadVersion.code(), vec![]).await;
        }
        let current: Vec<NodeId> = self
            .srv
            .node
            .members()
            .into_iter()
            .map(|(id, _, _)| id)
            .collect();
        let (joining, leaving) = match parse_request(&q, &current) {
            Ok(r) => r,
            Err(e) => return self.done(xid, e.code(), vec![]).await,
        };
        if let Err(e) = self.auth.check(&acl, perms::WRITE) {
            return self.done(xid, e.code(), vec![]).await;
        }
        let op = MembershipOp::Reconfig { joining, leaving };
        let err = match self.srv.node.change_membership(op).await {
            Ok(_) => 0,
            Err(MembershipError::InProgress) => RECONFIG_IN_PROGRESS,
            Err(MembershipError::NoQuorum) => NEW_CONFIG_NO_QUORUM,
            Err(MembershipError::BadArguments(m)) => {
                tracing::info!("zookeeper: reconfig refused: {m}");
                ZkError::BadArguments.code()
            }
            Err(MembershipError::NotFound | MembershipError::BadUrls) => {
                ZkError::BadArguments.code()
            }
            Err(e) => {
                tracing::warn!(session = self.session, "zookeeper: reconfig failed: {e}");
                return Step::Close;
            }
        };
        if err != 0 {
            return self.done(xid, err, vec![]).await;
        }
        let body = {
            let st = self.srv.node.state();
            st.znode(CONFIG_NODE).map(|n| {
                encode(&GetDataResponse {
                    data: n.data.clone(),
                    stat: n.stat.into(),
                })
            })
        };
        match body {
            Some(b) => self.done(xid, 0, b).await,
            None => self.done(xid, ZkError::NoNode.code(), vec![]).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joiners_parse_as_zookeeper_writes_them() {
        let (id, n, p) =
            parse_joiner("server.4=127.0.0.1:2888:3888:participant;127.0.0.1:2181").expect("valid");
        assert_eq!((id, p), (4, true));
        assert_eq!(n.addr, "127.0.0.1:2888");
        assert_eq!(n.zk_election_port, 3888);
        assert_eq!(n.zk_client, "127.0.0.1:2181");
        let (_, n, p) = parse_joiner("server.5=h:1:1:observer;2181").expect("valid");
        assert!(!p);
        assert_eq!(
            (n.zk_client.as_str(), n.zk_election_port),
            ("0.0.0.0:2181", 0)
        );
        for bad in [
            "server.4=h:1:2",
            "server.4=h:1;2181",
            "server.x=h:1:2;2181",
            "server.4=h:1:2:voter;2181",
            "server.4=h:1:2;h:",
            "4",
        ] {
            assert_eq!(
                parse_joiner(bad).err(),
                Some(ZkError::BadArguments),
                "{bad}"
            );
        }
    }
}
