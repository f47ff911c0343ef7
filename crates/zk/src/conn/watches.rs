//! Watches: change events matched against the connection's watches and
//! written as notifications before any reply that reflects them, and the
//! watch ops (setWatches, addWatch, checkWatches, removeWatches).

use std::sync::atomic::Ordering;

use janus_core::zk::perms;
use janus_core::{EventBatch, ZkError};
use janus_jute::{Reader, Record, Writer};
use tokio::sync::broadcast;

use super::{encode, Conn, Step};
use crate::proto::{self, add_watch_mode, op, xid, *};
use crate::watch::Mode;

impl Conn {
    pub(super) fn notify(&mut self, zxid: i64, ty: i32, path: String) {
        let mut w = Writer::new();
        ReplyHeader {
            xid: xid::NOTIFICATION,
            zxid,
            err: 0,
        }
        .encode(&mut w);
        WatcherEvent {
            r#type: ty,
            state: STATE_SYNC_CONNECTED,
            path,
        }
        .encode(&mut w);
        self.queue_frame(&w.into_inner());
        self.srv.packets_sent.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn process_batch(&mut self, b: &EventBatch) {
        if b.revision <= self.seen {
            // Already reflected in what this connection read.
            return;
        }
        for ev in &b.events {
            if let Some((ty, path)) = self.watches.trigger(ev) {
                // The watch is spent either way; the event only reaches a
                // connection allowed to READ the node (ZooKeeper 3.8.4+).
                let readable = ev
                    .zk_acl()
                    .map_or(true, |acl| self.auth.check(acl, perms::READ).is_ok());
                if readable {
                    self.notify(b.revision, ty, path);
                }
            }
        }
        self.seen = b.revision;
        self.update_watch_info();
    }

    pub(super) fn update_watch_info(&self) {
        self.info
            .watches
            .store(self.watches.count(), Ordering::Relaxed);
        *self
            .info
            .watch_paths
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = self.watches.paths();
    }

    /// Match every change event up to `rev` before a reply at `rev` goes
    /// out (a client sees the watch event before the data that reflects it).
    pub(super) async fn catch_up(&mut self, rev: i64) {
        while self.seen < rev {
            let b = match self.peeked.take() {
                Some(b) => b,
                None => match self.events.try_recv() {
                    Ok(b) => b,
                    // Every applied command's batch is queued before its state
                    // becomes readable, so nothing queued means nothing more up
                    // to `rev` (e.g. a snapshot install, which has no events).
                    Err(broadcast::error::TryRecvError::Empty) => {
                        self.seen = rev;
                        return;
                    }
                    Err(broadcast::error::TryRecvError::Lagged(_)) => {
                        self.lagged = true;
                        self.seen = rev;
                        return;
                    }
                    Err(broadcast::error::TryRecvError::Closed) => {
                        self.seen = rev;
                        return;
                    }
                },
            };
            if b.revision > rev {
                // Batches come in order: everything up to `rev` is done.
                self.peeked = Some(b);
                self.seen = rev;
                return;
            }
            self.process_batch(&b);
        }
    }

    /// setWatches or setWatches2 (`opcode`).
    pub(super) async fn set_watches(&mut self, opcode: i32, xid: i32, r: &mut Reader<'_>) -> Step {
        let sw = if opcode == op::SET_WATCHES {
            self.decode::<SetWatches>(opcode, r).map(|s| SetWatches2 {
                relative_zxid: s.relative_zxid,
                data_watches: s.data_watches,
                exist_watches: s.exist_watches,
                child_watches: s.child_watches,
                persistent_watches: vec![],
                persistent_recursive_watches: vec![],
            })
        } else {
            self.decode::<SetWatches2>(opcode, r)
        };
        match sw {
            Some(sw) => self.rewatch(xid, sw).await,
            None => self.malformed(xid).await,
        }
    }

    /// Re-registration after a reconnect (`DataTree.setWatches`): changes the
    /// client missed since `relativeZxid` are reported at once.
    async fn rewatch(&mut self, xid: i32, sw: SetWatches2) -> Step {
        use proto::event_type::*;
        let (rev, fire, keep) = {
            let st = self.srv.node.state();
            let rel = sw.relative_zxid;
            let mut fire: Vec<(i32, String)> = Vec::new();
            let mut keep: (Vec<String>, Vec<String>) = (Vec::new(), Vec::new());
            for p in sw.data_watches {
                match st.zk_stat(&p) {
                    None => fire.push((NODE_DELETED, p)),
                    Some(s) if s.mzxid > rel => fire.push((NODE_DATA_CHANGED, p)),
                    Some(_) => keep.0.push(p),
                }
            }
            for p in sw.exist_watches {
                match st.zk_stat(&p) {
                    Some(_) => fire.push((NODE_CREATED, p)),
                    None => keep.0.push(p),
                }
            }
            for p in sw.child_watches {
                match st.zk_stat(&p) {
                    None => fire.push((NODE_DELETED, p)),
                    Some(s) if s.pzxid > rel => fire.push((NODE_CHILDREN_CHANGED, p)),
                    Some(_) => keep.1.push(p),
                }
            }
            (st.revision(), fire, keep)
        };
        self.catch_up(rev).await;
        for (ty, p) in fire {
            self.notify(rev, ty, p);
        }
        for p in keep.0 {
            self.watches.data.set(p, Mode::Standard);
        }
        for p in keep.1 {
            self.watches.child.set(p, Mode::Standard);
        }
        for p in sw.persistent_watches {
            self.watches.add(p, Mode::Persistent);
        }
        for p in sw.persistent_recursive_watches {
            self.watches.add(p, Mode::Recursive);
        }
        self.update_watch_info();
        // The reply carries the request's xid (the Java client sends
        // SET_WATCHES_XID; other clients may not).
        Step::Reply {
            xid,
            zxid: rev,
            err: 0,
            body: vec![],
        }
    }

    pub(super) async fn add_watch(&mut self, xid: i32, r: &mut Reader<'_>) -> Step {
        let Some(q) = self.decode::<AddWatchRequest>(op::ADD_WATCH, r) else {
            return self.malformed(xid).await;
        };
        let rev = self.state_rev();
        self.catch_up(rev).await;
        let mode = match q.mode {
            add_watch_mode::PERSISTENT => Mode::Persistent,
            add_watch_mode::PERSISTENT_RECURSIVE => Mode::Recursive,
            // `WatcherMode.fromZooDef` throws; FinalRequestProcessor
            // answers any such exception with MARSHALLINGERROR.
            _ => {
                return Step::Reply {
                    xid,
                    zxid: rev,
                    err: ZkError::MarshallingError.code(),
                    body: vec![],
                }
            }
        };
        self.watches.add(q.path, mode);
        self.update_watch_info();
        Step::Reply {
            xid,
            zxid: rev,
            err: 0,
            body: encode(&ErrorResponse { err: 0 }),
        }
    }

    /// checkWatches or removeWatches (`opcode`).
    pub(super) async fn check_watches(
        &mut self,
        opcode: i32,
        xid: i32,
        r: &mut Reader<'_>,
    ) -> Step {
        let q = if opcode == op::CHECK_WATCHES {
            self.decode::<CheckWatchesRequest>(opcode, r)
                .map(|q| (q.path, q.r#type))
        } else {
            self.decode::<RemoveWatchesRequest>(opcode, r)
                .map(|q| (q.path, q.r#type))
        };
        let Some((path, wtype)) = q else {
            return self.malformed(xid).await;
        };
        let rev = self.state_rev();
        self.catch_up(rev).await;
        let hit = self
            .watches
            .check_or_remove(&path, wtype, opcode == op::REMOVE_WATCHES);
        self.update_watch_info();
        let err = match hit {
            Some(true) => 0,
            Some(false) => ZkError::NoWatcher.code(),
            // `WatcherType.fromInt` throws: MARSHALLINGERROR.
            None => ZkError::MarshallingError.code(),
        };
        Step::Reply {
            xid,
            zxid: rev,
            err,
            body: vec![],
        }
    }
}
