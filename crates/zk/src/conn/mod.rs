//! One client connection: handshake, then requests answered strictly in
//! order, with watch notifications written before any reply that reflects
//! the change that triggered them.
//!
//! The connection is split the way a tokio server usually is:
//! [`frame`] reads and writes length-prefixed frames, [`handshake`] opens
//! or re-establishes the session, [`dispatch`] sends each request to the
//! handler of its op code, and one file per op family answers it
//! ([`reads`], [`writes`], [`multi`], [`watches`], [`auth`], [`reconfig`]).
//! This file holds the connection itself and its request loop.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use janus_core::{Applied, EventBatch, ZkError};
use janus_jute::Record;
use janus_raft::NodeError;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::{broadcast, mpsc, Notify};

use crate::auth::AuthInfo;
use crate::proto::op;
use crate::sasl::DigestMd5;
use crate::watch::Watches;
use crate::{ConnInfo, Server};

use frame::{Frame, Queued};

mod auth;
mod dispatch;
mod frame;
mod handshake;
mod multi;
mod reads;
mod reconfig;
mod watches;
mod writes;

/// What handling one request leads to.
enum Step {
    Reply {
        xid: i32,
        zxid: i64,
        err: i32,
        body: Vec<u8>,
    },
    /// Reply, then close the connection.
    ReplyClose {
        xid: i32,
        zxid: i64,
        err: i32,
        body: Vec<u8>,
    },
    Close,
    /// A write is in flight; it is answered when it has applied, in order.
    Write(writes::Pending),
}

/// A connection's read side: a plain TCP half or a TLS stream's.
pub(crate) type Rd = Box<dyn AsyncRead + Send + Sync + Unpin>;
/// A connection's write side.
pub(crate) type Wr = Box<dyn AsyncWrite + Send + Sync + Unpin>;

/// Writes one connection has in flight at most; past it the connection
/// reads no more requests until some are answered.
const MAX_PIPELINED: usize = 1000;

struct Conn {
    srv: Arc<Server>,
    wr: Wr,
    out: Vec<u8>,
    session: i64,
    /// Serving in read-only mode (no quorum when the client connected).
    read_only: bool,
    auth: AuthInfo,
    /// The SASL DIGEST-MD5 exchange of this connection.
    sasl: DigestMd5,
    watches: Watches,
    /// Proposes this connection's writes in request order.
    pipeline: janus_raft::Pipeline,
    /// This connection's owner token, unique in the cluster: a session's
    /// writes count only from the connection it was last established on.
    owner: u64,
    events: broadcast::Receiver<Arc<EventBatch>>,
    /// A batch received during a catch-up but beyond the reply's revision.
    peeked: Option<Arc<EventBatch>>,
    /// Events of every revision up to this one have been matched.
    seen: i64,
    /// Change events were dropped before this connection matched them: it
    /// must close, so the client reconnects and re-sends its watches with
    /// its last zxid (setWatches), and every missed change fires then.
    lagged: bool,
    info: Arc<ConnInfo>,
}

/// A jute string at the start of `body` that is null (length -1), which
/// the decoder reads as "" but ZooKeeper's request handlers trip over.
pub(crate) fn null_string(body: &[u8]) -> bool {
    body.get(..4) == Some(&[0xff; 4][..])
}

fn err_code(e: ZkError) -> i32 {
    e.code()
}

fn encode<R: Record>(r: &R) -> Vec<u8> {
    r.to_bytes()
}

/// Serves one client connection. `tls_ids` is `Some` on the secure port:
/// the ids its client certificate proved (`x509`, maybe `super`).
pub(crate) async fn run(
    srv: Arc<Server>,
    mut rd: Rd,
    mut wr: Wr,
    addr: SocketAddr,
    tls_ids: Option<Vec<janus_core::Id>>,
) {
    let secure = tls_ids.is_some();
    let Some(body) = frame::read_connect(&srv, &mut rd, &mut wr, addr, secure).await else {
        return;
    };
    let (mut c, conn_id) = Conn::open(srv, wr, addr, tls_ids);
    let Some(notify) = c.handshake(&body).await else {
        return;
    };
    let moved = c.register(conn_id, notify);
    let (mut rx, reader) = c.spawn_reader(rd);

    c.serve(&mut rx, &moved).await;

    reader.abort();
    c.unregister(conn_id);
    let _ = c.wr.shutdown().await;
}

impl Conn {
    /// A new connection, before its handshake, and its id on this member.
    fn open(
        srv: Arc<Server>,
        wr: Wr,
        addr: SocketAddr,
        tls_ids: Option<Vec<janus_core::Id>>,
    ) -> (Conn, u64) {
        let secure = tls_ids.is_some();
        // Subscribe before reading any state, so no batch after it is missed.
        let events = srv.node.subscribe();
        let seen = srv.node.state().revision();
        let info = Arc::new(ConnInfo {
            addr,
            secure,
            session: AtomicI64::new(0),
            received: AtomicU64::new(1),
            sent: AtomicU64::new(0),
            watches: AtomicUsize::new(0),
            watch_paths: Mutex::new(Vec::new()),
        });
        let mut auth = AuthInfo::for_peer(Some(addr.ip()));
        for id in tls_ids.unwrap_or_default() {
            auth.add(id);
        }
        let conn_id = srv.next_conn.fetch_add(1, Ordering::Relaxed);
        let c = Conn {
            owner: srv.owner_base.wrapping_add(conn_id),
            srv: srv.clone(),
            wr,
            out: Vec::new(),
            session: 0,
            read_only: false,
            auth,
            sasl: DigestMd5::default(),
            watches: Watches::default(),
            pipeline: srv.node.pipeline(),
            events,
            peeked: None,
            seen,
            lagged: false,
            info,
        };
        (c, conn_id)
    }

    /// List the connection and make it its session's: returns the notifier
    /// that closes it when the session moves to a later connection.
    fn register(&self, conn_id: u64, notify: Arc<Notify>) -> Arc<Notify> {
        self.srv
            .conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(conn_id, self.info.clone());
        let mut s = self.srv.sessions.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, old)) = s.insert(self.session, (conn_id, notify.clone())) {
            // ZooKeeper closes the session's previous connection.
            old.notify_one();
        }
        notify
    }

    /// Unlist the connection, and its session unless a later connection
    /// has taken it.
    fn unregister(&self, conn_id: u64) {
        self.srv
            .conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&conn_id);
        let mut s = self.srv.sessions.lock().unwrap_or_else(|p| p.into_inner());
        if s.get(&self.session).is_some_and(|(id, _)| *id == conn_id) {
            s.remove(&self.session);
        }
    }

    fn state_rev(&self) -> i64 {
        self.srv.node.state().revision()
    }

    async fn serve(&mut self, rx: &mut mpsc::UnboundedReceiver<Queued>, moved: &Notify) {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let mut pending: VecDeque<writes::Pending> = VecDeque::new();
        loop {
            if self.lagged {
                tracing::warn!(
                    addr = %self.info.addr,
                    session = format_args!("0x{:x}", self.session),
                    "zookeeper: closing a connection that fell behind the change events; \
                     the client reconnects and re-registers its watches"
                );
                return;
            }
            if pending.is_empty() {
                if let Some(b) = self.peeked.take() {
                    self.process_batch(&b);
                }
            }
            let go_on = tokio::select! {
                // The oldest write's result; later ones wait their turn.
                r = next_result(&mut pending), if !pending.is_empty() => {
                    self.answer_done_writes(&mut pending, r).await
                }
                f = rx.recv(), if pending.len() < MAX_PIPELINED => {
                    self.on_frame(&mut pending, f.map(|q| q.frame)).await
                }
                // With writes in flight, events go out as their answers do
                // (in zxid order with them).
                b = self.events.recv(), if pending.is_empty() => self.on_events(b).await,
                _ = moved.notified() => {
                    tracing::debug!(session = self.session, "zookeeper: session moved to another connection");
                    false
                }
                _ = tick.tick() => self.on_tick(),
            };
            if !go_on {
                return;
            }
        }
    }

    /// The oldest write is done with `r`: answer it and every write that is
    /// already done, then flush once. `false`: the connection closes.
    async fn answer_done_writes(
        &mut self,
        pending: &mut VecDeque<writes::Pending>,
        r: Result<Applied, NodeError>,
    ) -> bool {
        if !self.answer_write(pending, r).await {
            return false;
        }
        // Answer every write that is already done, then flush once.
        while let Some(r) = pending.front_mut().and_then(|p| p.result.try_recv().ok()) {
            if !self.answer_write(pending, r).await {
                return false;
            }
        }
        self.flush().await
    }

    /// A frame the reader read, `None` when it stopped. `false`: the
    /// connection closes.
    async fn on_frame(
        &mut self,
        pending: &mut VecDeque<writes::Pending>,
        f: Option<Frame>,
    ) -> bool {
        match f {
            Some(Frame::Packet(body)) => self.on_packet(pending, body).await,
            Some(Frame::TooBig(len)) => {
                tracing::warn!(addr = %self.info.addr, len, max = self.srv.cfg.max_buffer, "zookeeper: frame over jute.maxbuffer; closing");
                false
            }
            Some(Frame::Eof) | None => false,
        }
    }

    /// One request. `false`: the connection closes.
    async fn on_packet(&mut self, pending: &mut VecDeque<writes::Pending>, body: Vec<u8>) -> bool {
        let started = Instant::now();
        self.srv.packets_received.fetch_add(1, Ordering::Relaxed);
        self.info.received.fetch_add(1, Ordering::Relaxed);
        self.srv.outstanding.fetch_add(1, Ordering::Relaxed);
        let write = !self.read_only && writes::opcode_of(&body).is_some_and(writes::pipelined);
        if !write {
            // Everything but a write waits for this
            // connection's writes: answers go in request
            // order, and a read sees the session's writes.
            while let Some(p) = pending.front_mut() {
                let r = received((&mut p.result).await);
                if !self.answer_write(pending, r).await {
                    return false;
                }
            }
        }
        let step = self.handle(&body, started).await;
        let close = match step {
            Step::Write(p) => {
                pending.push_back(p);
                return true;
            }
            Step::Reply {
                xid,
                zxid,
                err,
                body,
            } => {
                self.reply(xid, zxid, err, &body);
                false
            }
            Step::ReplyClose {
                xid,
                zxid,
                err,
                body,
            } => {
                self.reply(xid, zxid, err, &body);
                true
            }
            Step::Close => true,
        };
        self.srv.outstanding.fetch_sub(1, Ordering::Relaxed);
        self.srv
            .record_latency(started.elapsed().as_millis() as u64);
        self.flush().await && !close
    }

    /// A batch of change events, or the news that some were dropped.
    /// `false`: the connection closes.
    async fn on_events(&mut self, b: Result<Arc<EventBatch>, broadcast::error::RecvError>) -> bool {
        match b {
            Ok(b) => self.process_batch(&b),
            Err(broadcast::error::RecvError::Lagged(_)) => {
                self.lagged = true;
                return true;
            }
            Err(broadcast::error::RecvError::Closed) => return false,
        }
        self.flush().await
    }

    /// The periodic check. `false`: the connection closes.
    fn on_tick(&self) -> bool {
        // The leader expired the session (or it was closed
        // elsewhere): drop the connection; the client learns
        // `Expired` when it reconnects.
        if self.read_only {
            // Quorum is back: drop the read-only connection so
            // the client reconnects for a read-write session.
            return self.srv.node.leader().is_none();
        }
        let alive = self.srv.node.state().lease(self.session).is_some();
        if !alive {
            tracing::info!(
                addr = %self.info.addr,
                session = format_args!("0x{:x}", self.session),
                "zookeeper: session expired or closed elsewhere; closing its connection"
            );
            return false;
        }
        true
    }

    /// Answer the oldest pending write with `r`, its proposal's result.
    /// `false`: the connection closes (after what is queued is flushed).
    async fn answer_write(
        &mut self,
        pending: &mut VecDeque<writes::Pending>,
        r: Result<Applied, NodeError>,
    ) -> bool {
        let Some(p) = pending.pop_front() else {
            return true;
        };
        let started = p.started;
        let step = self.finish_write(p, r).await;
        self.srv.outstanding.fetch_sub(1, Ordering::Relaxed);
        self.srv
            .record_latency(started.elapsed().as_millis() as u64);
        match step {
            Step::Reply {
                xid,
                zxid,
                err,
                body,
            } => {
                self.reply(xid, zxid, err, &body);
                true
            }
            _ => {
                let _ = self.flush().await;
                false
            }
        }
    }

    /// A reply at the current revision, after its events.
    async fn done(&mut self, xid: i32, err: i32, body: Vec<u8>) -> Step {
        let zxid = self.state_rev();
        self.catch_up(zxid).await;
        Step::Reply {
            xid,
            zxid,
            err,
            body,
        }
    }

    /// MARSHALLINGERROR at the current revision, after its events: the
    /// answer to a request that does not decode.
    async fn malformed(&mut self, xid: i32) -> Step {
        self.done(xid, ZkError::MarshallingError.code(), vec![])
            .await
    }

    async fn read_reply(&mut self, xid: i32, rev: i64, res: Result<Vec<u8>, ZkError>) -> Step {
        self.catch_up(rev).await;
        match res {
            Ok(body) => Step::Reply {
                xid,
                zxid: rev,
                err: 0,
                body,
            },
            Err(e) => Step::Reply {
                xid,
                zxid: rev,
                err: err_code(e),
                body: vec![],
            },
        }
    }

    /// A write proposed through another member (the leader) is applied
    /// there first: wait until this member has applied it too, so the
    /// session reads its own writes.
    async fn wait_applied(&self, revision: i64) {
        let mut rx = self.srv.node.applied();
        let _ = tokio::time::timeout(
            Duration::from_secs(10),
            rx.wait_for(|a| a.revision >= revision),
        )
        .await;
    }
}

/// The oldest pending write's result; never ready when none is pending.
async fn next_result(pending: &mut VecDeque<writes::Pending>) -> Result<Applied, NodeError> {
    match pending.front_mut() {
        Some(p) => received((&mut p.result).await),
        None => std::future::pending().await,
    }
}

fn received(
    r: Result<Result<Applied, NodeError>, tokio::sync::oneshot::error::RecvError>,
) -> Result<Applied, NodeError> {
    r.unwrap_or_else(|_| Err(NodeError::Raft("pipeline stopped".into())))
}

/// Ops a read-only member refuses.
fn is_write(opcode: i32) -> bool {
    writes::pipelined(opcode) || matches!(opcode, op::SYNC | op::RECONFIG | op::CLOSE_SESSION)
}
