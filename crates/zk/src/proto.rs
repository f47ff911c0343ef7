//! ZooKeeper's wire records, generated at build time from
//! `jute-schema/zookeeper.jute`, and the protocol's constants.

#![allow(missing_docs)]

include!(concat!(env!("OUT_DIR"), "/zookeeper.rs"));

/// `ZooDefs.OpCode`.
pub mod op {
    pub const NOTIFICATION: i32 = 0;
    pub const CREATE: i32 = 1;
    pub const DELETE: i32 = 2;
    pub const EXISTS: i32 = 3;
    pub const GET_DATA: i32 = 4;
    pub const SET_DATA: i32 = 5;
    pub const GET_ACL: i32 = 6;
    pub const SET_ACL: i32 = 7;
    pub const GET_CHILDREN: i32 = 8;
    pub const SYNC: i32 = 9;
    pub const PING: i32 = 11;
    pub const GET_CHILDREN2: i32 = 12;
    pub const CHECK: i32 = 13;
    pub const MULTI: i32 = 14;
    pub const CREATE2: i32 = 15;
    pub const RECONFIG: i32 = 16;
    pub const CHECK_WATCHES: i32 = 17;
    pub const REMOVE_WATCHES: i32 = 18;
    pub const CREATE_CONTAINER: i32 = 19;
    pub const DELETE_CONTAINER: i32 = 20;
    pub const CREATE_TTL: i32 = 21;
    pub const MULTI_READ: i32 = 22;
    pub const AUTH: i32 = 100;
    pub const SET_WATCHES: i32 = 101;
    pub const SASL: i32 = 102;
    pub const GET_EPHEMERALS: i32 = 103;
    pub const GET_ALL_CHILDREN_NUMBER: i32 = 104;
    pub const SET_WATCHES2: i32 = 105;
    pub const ADD_WATCH: i32 = 106;
    pub const WHO_AM_I: i32 = 107;
    pub const CREATE_SESSION: i32 = -10;
    pub const CLOSE_SESSION: i32 = -11;
    pub const ERROR: i32 = -1;
}

/// Special xids.
pub mod xid {
    pub const NOTIFICATION: i32 = -1;
    pub const PING: i32 = -2;
    pub const AUTH: i32 = -4;
    pub const SET_WATCHES: i32 = -8;
}

/// `Watcher.Event.EventType`.
pub mod event_type {
    pub const NODE_CREATED: i32 = 1;
    pub const NODE_DELETED: i32 = 2;
    pub const NODE_DATA_CHANGED: i32 = 3;
    pub const NODE_CHILDREN_CHANGED: i32 = 4;
}

/// `Watcher.Event.KeeperState.SyncConnected`.
pub const STATE_SYNC_CONNECTED: i32 = 3;

/// `Watcher.WatcherType` (checkWatches/removeWatches).
pub mod watcher_type {
    pub const CHILDREN: i32 = 1;
    pub const DATA: i32 = 2;
    pub const ANY: i32 = 3;
    pub const PERSISTENT: i32 = 4;
    pub const PERSISTENT_RECURSIVE: i32 = 5;
}

/// `AddWatchMode`.
pub mod add_watch_mode {
    pub const PERSISTENT: i32 = 0;
    pub const PERSISTENT_RECURSIVE: i32 = 1;
}

impl From<janus_core::Stat> for Stat {
    fn from(s: janus_core::Stat) -> Stat {
        Stat {
            czxid: s.czxid,
            mzxid: s.mzxid,
            ctime: s.ctime,
            mtime: s.mtime,
            version: s.version,
            // DataNode.copyStat reports 2 * cversion - numChildren: the
            // core's cversion counts creates, clients see creates + deletes.
            cversion: s.cversion.wrapping_mul(2).wrapping_sub(s.num_children),
            aversion: s.aversion,
            // ZooKeeper shows containers and TTL nodes to clients as
            // ephemeralOwner 0 (`DataTree.getClientEphemeralOwner`).
            ephemeral_owner: match janus_core::zk::NodeKind::of_owner(s.ephemeral_owner) {
                janus_core::zk::NodeKind::Ephemeral(owner) => owner,
                _ => 0,
            },
            data_length: s.data_length,
            num_children: s.num_children,
            pzxid: s.pzxid,
        }
    }
}

impl From<&janus_core::Acl> for ACL {
    fn from(a: &janus_core::Acl) -> ACL {
        ACL {
            perms: a.perms,
            id: Id {
                scheme: a.id.scheme.clone(),
                id: a.id.id.clone(),
            },
        }
    }
}

impl From<&ACL> for janus_core::Acl {
    fn from(a: &ACL) -> janus_core::Acl {
        janus_core::Acl {
            perms: a.perms,
            id: janus_core::Id {
                scheme: a.id.scheme.clone(),
                id: a.id.id.clone(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use janus_jute::Record;
    use proptest::prelude::*;

    #[test]
    fn stat_is_68_bytes_and_round_trips() {
        let s = Stat {
            czxid: 1,
            mzxid: 2,
            ctime: 3,
            mtime: 4,
            version: 5,
            cversion: -6,
            aversion: 7,
            ephemeral_owner: i64::MIN,
            data_length: 9,
            num_children: 10,
            pzxid: 11,
        };
        let b = s.to_bytes();
        assert_eq!(b.len(), 68);
        assert_eq!(Stat::from_bytes(&b), Ok(s));
    }

    #[test]
    fn known_bytes() {
        // ReplyHeader{xid 1, zxid 2, err -101} as ZooKeeper writes it.
        let h = ReplyHeader {
            xid: 1,
            zxid: 2,
            err: -101,
        };
        assert_eq!(
            h.to_bytes(),
            vec![0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2, 0xff, 0xff, 0xff, 0x9b]
        );
        let c = CreateRequest {
            path: "/a".into(),
            data: Some(vec![7]),
            acl: vec![ACL {
                perms: 31,
                id: Id {
                    scheme: "world".into(),
                    id: "anyone".into(),
                },
            }],
            flags: 1,
        };
        let b = c.to_bytes();
        assert_eq!(&b[..6], &[0, 0, 0, 2, b'/', b'a']);
        assert_eq!(CreateRequest::from_bytes(&b), Ok(c));
        // A null path (-1) reads as empty; a truncated record is an error.
        assert_eq!(
            GetDataRequest::from_bytes(&[0xff, 0xff, 0xff, 0xff, 1]).map(|r| (r.path, r.watch)),
            Ok((String::new(), true))
        );
        assert!(GetDataRequest::from_bytes(&[0, 0, 0, 9, b'/']).is_err());
        assert_eq!(RECORD_NAMES.len(), 49);
    }

    #[test]
    fn fuzz_corpus_edges() {
        for bytes in [&[][..], &[0xff; 64][..], &[0x7f; 9][..], &[0, 0, 0, 0][..]] {
            fuzz_decode_all(bytes);
        }
    }

    proptest! {
        // The fuzz target's body as a property test: no decoder panics or
        // over-allocates on arbitrary bytes, and whatever decodes re-encodes
        // stably.
        #![proptest_config(ProptestConfig { cases: 4000, .. ProptestConfig::default() })]
        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            fuzz_decode_all(&bytes);
        }

        #[test]
        fn decoders_survive_lying_lengths(prefix in proptest::collection::vec(any::<u8>(), 0..40), len in any::<i32>()) {
            let mut b = prefix.clone();
            b.extend_from_slice(&len.to_be_bytes());
            b.extend_from_slice(&prefix);
            fuzz_decode_all(&b);
        }
    }
}
