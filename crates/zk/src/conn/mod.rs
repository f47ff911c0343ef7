//! One client connection: handshake, then requests answered strictly in
//! order, with watch notifications written before any reply that reflects
//! the change that triggered them.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use janus_core::zk::perms;
use janus_core::{Applied, Command, EventBatch, Response, ZkError, ZkOpResult};
use janus_jute::{frame, Reader, Record, Writer};
use janus_raft::NodeError;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{broadcast, mpsc, Notify};

use crate::auth::{AuthInfo, GET_ACL_PERMS};
use crate::proto::{self, add_watch_mode, op, xid, *};
use crate::sasl::DigestMd5;
use crate::watch::{Mode, Watches};
use crate::{fourlw, ConnInfo, Server};

enum Frame {
    Packet(Vec<u8>),
    TooBig(i64),
    Eof,
}

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
mod reconfig;
mod writes;

/// Writes one connection has in flight at most; past it the connection
/// reads no more requests until some are answered.
const MAX_PIPELINED: usize = 1000;

/// Bytes of requests a connection may have read ahead of their turn (a
/// request larger than this waits until nothing else is queued).
const QUEUED_BYTES: usize = 8 << 20;

/// A request read ahead, holding its share of the connection's budget
/// until its turn comes.
struct Queued {
    frame: Frame,
    _budget: tokio::sync::OwnedSemaphorePermit,
}

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

/// The node a read looks up: ZooKeeper's DataTree also files the root
/// under the empty path, so a read of "" answers with the root.
fn lookup_path(path: &str) -> &str {
    if path.is_empty() {
        "/"
    } else {
        path
    }
}

fn err_code(e: ZkError) -> i32 {
    e.code()
}

fn encode<R: Record>(r: &R) -> Vec<u8> {
    r.to_bytes()
}

async fn read_frame(rd: &mut Rd, max: usize) -> Frame {
    let mut hdr = [0u8; 4];
    if rd.read_exact(&mut hdr).await.is_err() {
        return Frame::Eof;
    }
    let Some(len) = frame::length(hdr, max) else {
        return Frame::TooBig(i32::from_be_bytes(hdr) as i64);
    };
    let mut body = vec![0u8; len];
    if rd.read_exact(&mut body).await.is_err() {
        return Frame::Eof;
    }
    Frame::Packet(body)
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
    let mut hdr = [0u8; 4];
    if rd.read_exact(&mut hdr).await.is_err() {
        return;
    }
    if let Some(cmd) = fourlw::command(hdr) {
        let text = fourlw::answer(&srv, cmd, secure);
        let _ = wr.write_all(text.as_bytes()).await;
        let _ = wr.flush().await;
        let _ = wr.shutdown().await;
        return;
    }
    let Some(len) = frame::length(hdr, srv.cfg.max_buffer) else {
        tracing::warn!(%addr, len = i32::from_be_bytes(hdr), "zookeeper: connect frame too large; closing");
        return;
    };
    let mut body = vec![0u8; len];
    if rd.read_exact(&mut body).await.is_err() {
        return;
    }
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
    let mut c = Conn {
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
        info: info.clone(),
    };
    let Some(notify) = c.handshake(&body).await else {
        return;
    };
    srv.conns
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(conn_id, info.clone());
    let moved = {
        let mut s = srv.sessions.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, old)) = s.insert(c.session, (conn_id, notify.clone())) {
            // ZooKeeper closes the session's previous connection.
            old.notify_one();
        }
        notify
    };

    // Requests read ahead of their turn wait here, bounded by their bytes
    // (not their number): a client pinging while it reads a long run of
    // large answers slowly must still get its pings read (and its session
    // kept alive), as ZooKeeper reads them.
    let (tx, mut rx) = mpsc::unbounded_channel::<Queued>();
    let budget = Arc::new(tokio::sync::Semaphore::new(QUEUED_BYTES));
    let max = srv.cfg.max_buffer;
    // As ZooKeeper, a request keeps its session alive when it arrives, not
    // when its turn comes: a client reading large answers slowly still has
    // its pings counted while the answers before them are being sent.
    let toucher = (c.session != 0 && !c.read_only).then(|| (srv.clone(), c.session));
    let reader = tokio::spawn(async move {
        loop {
            let f = read_frame(&mut rd, max).await;
            let stop = !matches!(f, Frame::Packet(_));
            if let (false, Some((srv, session))) = (stop, &toucher) {
                srv.node.touch(*session);
            }
            // A frame's bytes plus what holding it costs: a flood of tiny
            // requests is bounded too (to some 60,000).
            let cost = match &f {
                Frame::Packet(b) => b.len().saturating_add(128).min(QUEUED_BYTES),
                _ => 128,
            };
            let Ok(permit) = budget
                .clone()
                .acquire_many_owned(u32::try_from(cost).unwrap_or(u32::MAX))
                .await
            else {
                return;
            };
            if tx
                .send(Queued {
                    frame: f,
                    _budget: permit,
                })
                .is_err()
                || stop
            {
                return;
            }
        }
    });

    c.serve(&mut rx, &moved).await;

    reader.abort();
    srv.conns
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&conn_id);
    {
        let mut s = srv.sessions.lock().unwrap_or_else(|p| p.into_inner());
        if s.get(&c.session).is_some_and(|(id, _)| *id == conn_id) {
            s.remove(&c.session);
        }
    }
    let _ = c.wr.shutdown().await;
}

impl Conn {
    fn queue_frame(&mut self, payload: &[u8]) {
        self.out.extend_from_slice(&frame::encode(payload));
    }

    async fn flush(&mut self) -> bool {
        if self.out.is_empty() {
            return true;
        }
        let buf = std::mem::take(&mut self.out);
        // TLS buffers records until flushed; TCP's flush is a no-op.
        self.wr.write_all(&buf).await.is_ok() && self.wr.flush().await.is_ok()
    }

    fn state_rev(&self) -> i64 {
        self.srv.node.state().revision()
    }

    /// The ConnectRequest. Returns the notifier a later connection of the
    /// same session uses to close this one, or `None` to close now.
    async fn handshake(&mut self, body: &[u8]) -> Option<Arc<Notify>> {
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
        let timeout = self.srv.cfg.negotiate(req.time_out);
        // A null password matches nothing but an empty one, as in Java.
        let req_passwd = req.passwd.clone().unwrap_or_default();
        let respond = |c: &mut Conn, timeout: i32, session: i64, passwd: Vec<u8>| {
            let mut w = Writer::new();
            ConnectResponse {
                protocol_version: 0,
                time_out: timeout,
                session_id: session,
                passwd: Some(passwd),
            }
            .encode(&mut w);
            if ro_aware {
                w.bool(c.read_only);
            }
            c.queue_frame(&w.into_inner());
        };
        if self.srv.node.leader().is_none() {
            // No quorum: ZooKeeper's read-only mode. Only clients that allow
            // it are served, with a session local to this member (nothing
            // can be committed); the others are refused.
            if !ro_wanted {
                tracing::info!(addr = %self.info.addr, "zookeeper: no quorum and the client wants read-write; closing");
                return None;
            }
            self.read_only = true;
            let known = {
                let st = self.srv.node.state();
                st.lease(req.session_id)
                    .and_then(|l| l.session)
                    .is_some_and(|s| s.password == req_passwd)
            };
            let (id, password) = if req.session_id != 0 && known {
                (req.session_id, req_passwd.clone())
            } else {
                let id = self.srv.new_session_id();
                (id, self.srv.password_for(id))
            };
            self.session = id;
            respond(self, timeout, id, password);
        } else if req.session_id == 0 {
            let mut created = None;
            for _ in 0..5 {
                let id = self.srv.new_session_id();
                let password = self.srv.password_for(id);
                let cmd = Command::ZkCreateSession {
                    session: id,
                    password: password.clone(),
                    timeout_ms: timeout as i64,
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
            respond(self, timeout, id, password);
        } else {
            let known = |c: &Conn| {
                let st = c.srv.node.state();
                st.lease(req.session_id)
                    .and_then(|l| l.session)
                    .is_some_and(|s| s.password == req_passwd)
            };
            let mut ok = known(self);
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
                ok = known(self);
            }
            if !ok {
                // Expired, unknown or wrong password: ZooKeeper's answer.
                respond(self, 0, 0, vec![0; 16]);
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
                    respond(self, 0, 0, vec![0; 16]);
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
            respond(self, timeout, req.session_id, req_passwd);
        }
        self.info.session.store(self.session, Ordering::Relaxed);
        if !self.flush().await {
            return None;
        }
        Some(Arc::new(Notify::new()))
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
            tokio::select! {
                // The oldest write's result; later ones wait their turn.
                r = next_result(&mut pending), if !pending.is_empty() => {
                    if !self.answer_write(&mut pending, r).await {
                        return;
                    }
                    // Answer every write that is already done, then flush once.
                    while let Some(r) = pending
                        .front_mut()
                        .and_then(|p| p.result.try_recv().ok())
                    {
                        if !self.answer_write(&mut pending, r).await {
                            return;
                        }
                    }
                    if !self.flush().await {
                        return;
                    }
                }
                f = rx.recv(), if pending.len() < MAX_PIPELINED => match f.map(|q| q.frame) {
                    Some(Frame::Packet(body)) => {
                        let started = Instant::now();
                        self.srv.packets_received.fetch_add(1, Ordering::Relaxed);
                        self.info.received.fetch_add(1, Ordering::Relaxed);
                        self.srv.outstanding.fetch_add(1, Ordering::Relaxed);
                        let write = !self.read_only
                            && writes::opcode_of(&body).is_some_and(writes::pipelined);
                        if !write {
                            // Everything but a write waits for this
                            // connection's writes: answers go in request
                            // order, and a read sees the session's writes.
                            while let Some(p) = pending.front_mut() {
                                let r = received((&mut p.result).await);
                                if !self.answer_write(&mut pending, r).await {
                                    return;
                                }
                            }
                        }
                        let step = self.handle(&body, started).await;
                        let close = match step {
                            Step::Write(p) => {
                                pending.push_back(p);
                                continue;
                            }
                            Step::Reply { xid, zxid, err, body } => {
                                self.reply(xid, zxid, err, &body);
                                false
                            }
                            Step::ReplyClose { xid, zxid, err, body } => {
                                self.reply(xid, zxid, err, &body);
                                true
                            }
                            Step::Close => true,
                        };
                        self.srv.outstanding.fetch_sub(1, Ordering::Relaxed);
                        self.srv.record_latency(started.elapsed().as_millis() as u64);
                        if !self.flush().await || close {
                            return;
                        }
                    }
                Some(Frame::TooBig(len)) => {
                        tracing::warn!(addr = %self.info.addr, len, max = self.srv.cfg.max_buffer, "zookeeper: frame over jute.maxbuffer; closing");
                        return;
                    }
                    Some(Frame::Eof) | None => return,
                },
                // With writes in flight, events go out as their answers do
                // (in zxid order with them).
                b = self.events.recv(), if pending.is_empty() => {
                    match b {
                        Ok(b) => self.process_batch(&b),
                        Err(broadcast::error::RecvError::Lagged(_)) => {
                            self.lagged = true;
                            continue;
                        }
                        Err(broadcast::error::RecvError::Closed) => return,
                    }
                    if !self.flush().await {
                        return;
                    }
                }
                _ = moved.notified() => {
                    tracing::debug!(session = self.session, "zookeeper: session moved to another connection");
                    return;
                }
                _ = tick.tick() => {
                    // The leader expired the session (or it was closed
                    // elsewhere): drop the connection; the client learns
                    // `Expired` when it reconnects.
                    if self.read_only {
                        // Quorum is back: drop the read-only connection so
                        // the client reconnects for a read-write session.
                        if self.srv.node.leader().is_some() {
                            return;
                        }
                        continue;
                    }
                    let alive = self.srv.node.state().lease(self.session).is_some();
                    if !alive {
                        tracing::info!(
                            addr = %self.info.addr,
                            session = format_args!("0x{:x}", self.session),
                            "zookeeper: session expired or closed elsewhere; closing its connection"
                        );
                        return;
                    }
                }
            }
        }
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

    fn reply(&mut self, xid: i32, zxid: i64, err: i32, body: &[u8]) {
        if self.lagged {
            // Its watch events are lost: an answer reflecting the change
            // must not reach the client before them. The connection closes.
            return;
        }
        let mut w = Writer::new();
        ReplyHeader { xid, zxid, err }.encode(&mut w);
        if err == 0 {
            w.raw(body);
        }
        self.queue_frame(&w.into_inner());
        self.srv.packets_sent.fetch_add(1, Ordering::Relaxed);
        self.info.sent.fetch_add(1, Ordering::Relaxed);
    }

    fn notify(&mut self, zxid: i64, ty: i32, path: String) {
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

    fn process_batch(&mut self, b: &EventBatch) {
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

    fn update_watch_info(&self) {
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
    async fn catch_up(&mut self, rev: i64) {
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

    async fn handle(&mut self, body: &[u8], started: Instant) -> Step {
        let mut r = Reader::new(body);
        let Ok(h) = RequestHeader::decode(&mut r) else {
            tracing::info!(addr = %self.info.addr, "zookeeper: truncated request header; closing");
            return Step::Close;
        };
        self.srv.count_op(h.r#type);
        if self.read_only && is_write(h.r#type) {
            // ZooKeeper's answer to a write on a read-only server.
            if h.r#type == op::CLOSE_SESSION {
                let zxid = self.state_rev();
                return Step::ReplyClose {
                    xid: h.xid,
                    zxid,
                    err: 0,
                    body: vec![],
                };
            }
            return self.done(h.xid, ZkError::NotReadOnly.code(), vec![]).await;
        }
        let xid = h.xid;
        // These read a null path and throw a NullPointerException, which
        // FinalRequestProcessor answers with MARSHALLINGERROR.
        if matches!(
            h.r#type,
            op::EXISTS
                | op::GET_DATA
                | op::GET_CHILDREN
                | op::GET_CHILDREN2
                | op::GET_ACL
                | op::GET_ALL_CHILDREN_NUMBER
                | op::ADD_WATCH
                | op::CHECK_WATCHES
        ) && null_string(r.rest())
        {
            return self
                .done(xid, ZkError::MarshallingError.code(), vec![])
                .await;
        }
        macro_rules! decode {
            ($t:ty) => {
                match <$t>::decode(&mut r) {
                    Ok(v) => v,
                    Err(e) => {
                        tracing::info!(addr = %self.info.addr, op = h.r#type, "zookeeper: malformed request: {e}");
                        return self.done(xid, ZkError::MarshallingError.code(), vec![]).await;
                    }
                }
            };
        }
        match h.r#type {
            op::PING => self.done(xid::PING, 0, vec![]).await,
            op::CLOSE_SESSION => {
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
            op::AUTH => {
                let p = decode!(AuthPacket);
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
            op if writes::pipelined(op) => Step::Write(self.submit_write(op, xid, &mut r, started)),
            op::MULTI_READ => self.multi_read(xid, &mut r).await,
            op::EXISTS => {
                let q = decode!(ExistsRequest);
                self.exists(xid, q.path, q.watch).await
            }
            op::GET_DATA => {
                let q = decode!(GetDataRequest);
                self.get_data(xid, q.path, q.watch).await
            }
            op::GET_CHILDREN => {
                let q = decode!(GetChildrenRequest);
                self.get_children(xid, q.path, q.watch, false).await
            }
            op::GET_CHILDREN2 => {
                let q = decode!(GetChildren2Request);
                self.get_children(xid, q.path, q.watch, true).await
            }
            op::GET_ACL => {
                let q = decode!(GetACLRequest);
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
            op::GET_ALL_CHILDREN_NUMBER => {
                let q = decode!(GetAllChildrenNumberRequest);
                let (rev, res) = {
                    let st = self.srv.node.state();
                    let res = match st.znode(lookup_path(&q.path)) {
                        None => Err(ZkError::NoNode),
                        Some(n) => self.auth.check(&n.acl, perms::READ).map(|()| {
                            let total =
                                st.zk_all_children_number(lookup_path(&q.path)).unwrap_or(0);
                            encode(&GetAllChildrenNumberResponse {
                                total_number: total.min(i32::MAX as i64) as i32,
                            })
                        }),
                    };
                    (st.revision(), res)
                };
                self.read_reply(xid, rev, res).await
            }
            op::GET_EPHEMERALS => {
                let q = decode!(GetEphemeralsRequest);
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
            op::WHO_AM_I => {
                let client_info = self
                    .auth
                    .client_info()
                    .into_iter()
                    .map(|(auth_scheme, user)| ClientInfo { auth_scheme, user })
                    .collect();
                self.done(xid, 0, encode(&WhoAmIResponse { client_info }))
                    .await
            }
            op::SYNC => {
                let q = decode!(SyncRequest);
                if let Err(e) = self.srv.node.read_index().await {
                    tracing::warn!("zookeeper: sync: {e}");
                    return Step::Close;
                }
                self.done(xid, 0, encode(&SyncResponse { path: q.path }))
                    .await
            }
            op::SET_WATCHES | op::SET_WATCHES2 => {
                let sw = if h.r#type == op::SET_WATCHES {
                    let s = decode!(SetWatches);
                    SetWatches2 {
                        relative_zxid: s.relative_zxid,
                        data_watches: s.data_watches,
                        exist_watches: s.exist_watches,
                        child_watches: s.child_watches,
                        persistent_watches: vec![],
                        persistent_recursive_watches: vec![],
                    }
                } else {
                    decode!(SetWatches2)
                };
                self.set_watches(xid, sw).await
            }
            op::ADD_WATCH => {
                let q = decode!(AddWatchRequest);
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
            op::CHECK_WATCHES | op::REMOVE_WATCHES => {
                let (path, wtype) = if h.r#type == op::CHECK_WATCHES {
                    let q = decode!(CheckWatchesRequest);
                    (q.path, q.r#type)
                } else {
                    let q = decode!(RemoveWatchesRequest);
                    (q.path, q.r#type)
                };
                let rev = self.state_rev();
                self.catch_up(rev).await;
                let hit =
                    self.watches
                        .check_or_remove(&path, wtype, h.r#type == op::REMOVE_WATCHES);
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
            op::RECONFIG => {
                let q = decode!(ReconfigRequest);
                self.reconfig(xid, q).await
            }
            op::SASL => {
                let q = decode!(GetSASLRequest);
                self.sasl_step(xid, q.token.as_deref().unwrap_or_default())
            }
            other => {
                // UnimplementedRequestProcessor: answer, then close.
                tracing::info!(addr = %self.info.addr, op = other, "zookeeper: unknown op code; closing");
                let zxid = self.state_rev();
                Step::ReplyClose {
                    xid,
                    zxid,
                    err: ZkError::Unimplemented.code(),
                    body: vec![],
                }
            }
        }
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

    async fn multi_read(&mut self, xid: i32, r: &mut Reader<'_>) -> Step {
        let mut reqs: Vec<(i32, String)> = Vec::new();
        loop {
            let Ok(mh) = MultiHeader::decode(r) else {
                return self
                    .done(xid, ZkError::MarshallingError.code(), vec![])
                    .await;
            };
            if mh.done {
                break;
            }
            if null_string(r.rest()) {
                // A null path throws in the handler: the whole multiRead
                // fails with MARSHALLINGERROR.
                return self
                    .done(xid, ZkError::MarshallingError.code(), vec![])
                    .await;
            }
            let path = match mh.r#type {
                op::GET_CHILDREN => GetChildrenRequest::decode(r).map(|q| q.path),
                op::GET_DATA => GetDataRequest::decode(r).map(|q| q.path),
                _ => {
                    return self
                        .done(xid, ZkError::MarshallingError.code(), vec![])
                        .await
                }
            };
            let Ok(path) = path else {
                return self
                    .done(xid, ZkError::MarshallingError.code(), vec![])
                    .await;
            };
            reqs.push((mh.r#type, path));
        }
        let (rev, body) = {
            let st = self.srv.node.state();
            let mut w = Writer::new();
            for (code, path) in &reqs {
                let res = match st.znode(lookup_path(path)) {
                    None => Err(ZkError::NoNode),
                    Some(n) => self.auth.check(&n.acl, perms::READ).map(|()| n),
                };
                match res {
                    Ok(n) if *code == op::GET_DATA => {
                        MultiHeader {
                            r#type: op::GET_DATA,
                            done: false,
                            err: 0,
                        }
                        .encode(&mut w);
                        GetDataResponse {
                            data: n.data,
                            stat: n.stat.into(),
                        }
                        .encode(&mut w);
                    }
                    Ok(_) => {
                        MultiHeader {
                            r#type: op::GET_CHILDREN,
                            done: false,
                            err: 0,
                        }
                        .encode(&mut w);
                        GetChildrenResponse {
                            children: st.zk_children(lookup_path(path)).unwrap_or_default(),
                        }
                        .encode(&mut w);
                    }
                    Err(e) => {
                        MultiHeader {
                            r#type: op::ERROR,
                            done: false,
                            err: e.code(),
                        }
                        .encode(&mut w);
                        ErrorResponse { err: e.code() }.encode(&mut w);
                    }
                }
            }
            MultiHeader {
                r#type: -1,
                done: true,
                err: -1,
            }
            .encode(&mut w);
            (st.revision(), w.into_inner())
        };
        self.read_reply(xid, rev, Ok(body)).await
    }

    async fn exists(&mut self, xid: i32, path: String, watch: bool) -> Step {
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

    async fn get_data(&mut self, xid: i32, path: String, watch: bool) -> Step {
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

    async fn get_children(&mut self, xid: i32, path: String, watch: bool, two: bool) -> Step {
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

    /// Re-registration after a reconnect (`DataTree.setWatches`): changes the
    /// client missed since `relativeZxid` are reported at once.
    async fn set_watches(&mut self, xid: i32, sw: SetWatches2) -> Step {
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
}

/// Ops a read-only member refuses.
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

fn is_write(opcode: i32) -> bool {
    writes::pipelined(opcode) || matches!(opcode, op::SYNC | op::RECONFIG | op::CLOSE_SESSION)
}

/// A MultiResponse: per op a MultiHeader and its result record, then the
/// `{-1, true, -1}` terminator. `codes` are the request's op codes (they
/// pick CreateResponse vs Create2Response).
fn multi_body(codes: &[i32], results: &[ZkOpResult]) -> Vec<u8> {
    let mut w = Writer::new();
    for (i, r) in results.iter().enumerate() {
        let code = codes.get(i).copied().unwrap_or(op::CREATE2);
        match r {
            ZkOpResult::Create { path, stat } => {
                if code == op::CREATE {
                    MultiHeader {
                        r#type: op::CREATE,
                        done: false,
                        err: 0,
                    }
                    .encode(&mut w);
                    CreateResponse { path: path.clone() }.encode(&mut w);
                } else {
                    MultiHeader {
                        r#type: op::CREATE2,
                        done: false,
                        err: 0,
                    }
                    .encode(&mut w);
                    Create2Response {
                        path: path.clone(),
                        stat: (*stat).into(),
                    }
                    .encode(&mut w);
                }
            }
            ZkOpResult::Delete => MultiHeader {
                r#type: op::DELETE,
                done: false,
                err: 0,
            }
            .encode(&mut w),
            ZkOpResult::SetData { stat } => {
                MultiHeader {
                    r#type: op::SET_DATA,
                    done: false,
                    err: 0,
                }
                .encode(&mut w);
                SetDataResponse {
                    stat: (*stat).into(),
                }
                .encode(&mut w);
            }
            ZkOpResult::SetAcl { stat } => {
                MultiHeader {
                    r#type: op::SET_ACL,
                    done: false,
                    err: 0,
                }
                .encode(&mut w);
                SetACLResponse {
                    stat: (*stat).into(),
                }
                .encode(&mut w);
            }
            ZkOpResult::Check => MultiHeader {
                r#type: op::CHECK,
                done: false,
                err: 0,
            }
            .encode(&mut w),
            ZkOpResult::Error(e) => {
                let err = e.map_or(0, |e| e.code());
                MultiHeader {
                    r#type: op::ERROR,
                    done: false,
                    err,
                }
                .encode(&mut w);
                ErrorResponse { err }.encode(&mut w);
            }
        }
    }
    MultiHeader {
        r#type: -1,
        done: true,
        err: -1,
    }
    .encode(&mut w);
    w.into_inner()
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
