//! Framing: the first frame (a four-letter word or the ConnectRequest),
//! the reader task that reads length-prefixed requests ahead of their
//! turn, and the connection's output buffer.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use janus_jute::{frame, Record, Writer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{Conn, Rd, Wr};
use crate::proto::ReplyHeader;
use crate::{fourlw, Server};

pub(super) enum Frame {
    Packet(Vec<u8>),
    TooBig(i64),
    Eof,
}

/// Bytes of requests a connection may have read ahead of their turn (a
/// request larger than this waits until nothing else is queued).
const QUEUED_BYTES: usize = 8 << 20;

/// A request read ahead, holding its share of the connection's budget
/// until its turn comes.
pub(super) struct Queued {
    pub frame: Frame,
    _budget: tokio::sync::OwnedSemaphorePermit,
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

/// The body of the connection's first frame, its ConnectRequest; `None`
/// when the connection is done (a four-letter word was answered, or the
/// frame was too large or cut short).
pub(super) async fn read_connect(
    srv: &Server,
    rd: &mut Rd,
    wr: &mut Wr,
    addr: SocketAddr,
    secure: bool,
) -> Option<Vec<u8>> {
    let mut hdr = [0u8; 4];
    if rd.read_exact(&mut hdr).await.is_err() {
        return None;
    }
    if let Some(cmd) = fourlw::command(hdr) {
        let text = fourlw::answer(srv, cmd, secure);
        let _ = wr.write_all(text.as_bytes()).await;
        let _ = wr.flush().await;
        let _ = wr.shutdown().await;
        return None;
    }
    let Some(len) = frame::length(hdr, srv.cfg.max_buffer) else {
        tracing::warn!(%addr, len = i32::from_be_bytes(hdr), "zookeeper: connect frame too large; closing");
        return None;
    };
    let mut body = vec![0u8; len];
    if rd.read_exact(&mut body).await.is_err() {
        return None;
    }
    Some(body)
}

impl Conn {
    /// Start the reader task: it reads frames from `rd` into the returned
    /// channel until the connection ends.
    pub(super) fn spawn_reader(
        &self,
        mut rd: Rd,
    ) -> (mpsc::UnboundedReceiver<Queued>, JoinHandle<()>) {
        // Requests read ahead of their turn wait here, bounded by their bytes
        // (not their number): a client pinging while it reads a long run of
        // large answers slowly must still get its pings read (and its session
        // kept alive), as ZooKeeper reads them.
        let (tx, rx) = mpsc::unbounded_channel::<Queued>();
        let budget = Arc::new(tokio::sync::Semaphore::new(QUEUED_BYTES));
        let max = self.srv.cfg.max_buffer;
        // As ZooKeeper, a request keeps its session alive when it arrives, not
        // when its turn comes: a client reading large answers slowly still has
        // its pings counted while the answers before them are being sent.
        let toucher =
            (self.session != 0 && !self.read_only).then(|| (self.srv.clone(), self.session));
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
        (rx, reader)
    }

    pub(super) fn queue_frame(&mut self, payload: &[u8]) {
        self.out.extend_from_slice(&frame::encode(payload));
    }

    pub(super) async fn flush(&mut self) -> bool {
        if self.out.is_empty() {
            return true;
        }
        let buf = std::mem::take(&mut self.out);
        // TLS buffers records until flushed; TCP's flush is a no-op.
        self.wr.write_all(&buf).await.is_ok() && self.wr.flush().await.is_ok()
    }

    pub(super) fn reply(&mut self, xid: i32, zxid: i64, err: i32, body: &[u8]) {
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
}
