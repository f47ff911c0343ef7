//! `/zookeeper/config`: ZooKeeper's view of the membership, rewritten when
//! the Raft membership changes (the store calls this while applying a
//! membership entry, so every member writes it at the same point of the log).

use crate::event::{Event, EventBatch};
use crate::state::State;

/// The config node's path (`ZooDefs.CONFIG_NODE`).
pub const CONFIG_NODE: &str = "/zookeeper/config";

impl State {
    /// Set `/zookeeper/config` to `servers` (the `server.N=...` lines, each
    /// ending in a newline) followed by `version=<zxid in hex>`.
    ///
    /// With `new_zxid` the change takes a zxid, as ZooKeeper's reconfig txn
    /// does; without (the first membership of a new cluster), the node
    /// keeps zxid 0 and the config reads `version=0`, as a ZooKeeper
    /// ensemble started from a static config does. As in ZooKeeper the
    /// node's data version stays -1 (`SetDataTxn(CONFIG_NODE, data, -1)`).
    pub fn zk_set_config(&mut self, time_ms: i64, servers: &str, new_zxid: bool) -> EventBatch {
        let zxid = if new_zxid {
            self.next_zxid()
        } else {
            self.zk_config_node_zxid()
        };
        let data = format!("{servers}version={zxid:x}").into_bytes();
        let mut events = Vec::new();
        if let Some(mut n) = self.znode(CONFIG_NODE) {
            n.stat.data_length = data.len() as i32;
            n.data = Some(data);
            n.stat.version = -1;
            if new_zxid {
                n.stat.mzxid = zxid;
                n.stat.mtime = time_ms;
                events.push(Event::ZkDataChanged {
                    path: CONFIG_NODE.to_string(),
                    acl: n.acl.clone(),
                });
            }
            self.put_node(CONFIG_NODE, &n);
        }
        self.save_clock();
        self.db.release();
        self.flush_mem();
        EventBatch {
            revision: self.revision,
            events,
        }
    }

    fn zk_config_node_zxid(&self) -> i64 {
        self.znode(CONFIG_NODE).map_or(0, |n| n.stat.mzxid)
    }

    /// The `server.N=...` lines of the current `/zookeeper/config` (its data
    /// without the trailing `version=` line).
    pub fn zk_config_servers(&self) -> String {
        let Some(n) = self.znode(CONFIG_NODE) else {
            return String::new();
        };
        let text = String::from_utf8_lossy(n.bytes());
        text.lines()
            .filter(|l| l.starts_with("server."))
            .map(|l| format!("{l}\n"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_takes_a_zxid_except_the_first() {
        let mut s = State::new();
        let b = s.zk_set_config(5, "server.1=a:1:1:participant;b:2\n", false);
        assert!(b.events.is_empty());
        assert_eq!(s.revision(), 1);
        let n = s.znode(CONFIG_NODE).unwrap();
        assert_eq!(n.bytes(), b"server.1=a:1:1:participant;b:2\nversion=0");
        assert_eq!((n.stat.version, n.stat.mzxid), (-1, 0));
        let b = s.zk_set_config(7, "server.1=a:1:1:participant;b:2\n", true);
        assert_eq!(b.revision, 2);
        assert_eq!(b.events.len(), 1);
        let n = s.znode(CONFIG_NODE).unwrap();
        assert_eq!(n.bytes(), b"server.1=a:1:1:participant;b:2\nversion=2");
        assert_eq!((n.stat.mzxid, n.stat.mtime), (2, 7));
        assert_eq!(s.zk_config_servers(), "server.1=a:1:1:participant;b:2\n");
        s.check_invariants().unwrap();
    }
}
