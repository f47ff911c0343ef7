//! etcdserverpb.Watch: one task per stream carries all of its watchers.
//!
//! Live changes come from the state machine's event broadcast, which every
//! stream reads at its own pace from one shared, bounded buffer: a slow
//! client never slows writes and never grows memory. A watcher that is
//! behind (a start revision in the past, or a stream that fell out of the
//! buffer) catches up from the MVCC history in bounded chunks, then follows
//! the broadcast again — etcd's unsynced/synced split.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use janus_core::{Event, EventBatch, KeyValue, RangeRequest, State};
use prost::Message;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::check::kv_to_pb;
use crate::pb::etcdserverpb::{self as pb, watch_server};
use crate::pb::mvccpb;
use crate::{Ctx, RpcError};

pub struct Watch(pub Arc<Ctx>);

/// Revisions replayed from history per lock hold.
const CATCH_UP_CHUNK: i64 = 64;
/// Most revisions with events in one catch-up response (etcd's
/// `watchBatchMaxRevs`).
const SYNC_BATCH_REVS: usize = 1000;
/// Responses queued for the client before the stream task waits.
const OUT_QUEUE: usize = 64;
/// A stream that asked for a leader (gRPC metadata `hasleader: true`, the Go
/// client's `WithRequireLeader`, which Kubernetes uses for every watch) is
/// refused while this member knows no leader, and ended with the same error
/// once it has known none at this many checks in a row, one check per
/// election timeout (etcd's v3rpc `monitorLeader`, `maxNoLeaderCnt`).
const NO_LEADER_CHECKS: u32 = 3;

/// Does the request carry etcd's `hasleader: true` metadata?
fn requires_leader(md: &tonic::metadata::MetadataMap) -> bool {
    md.get("hasleader").and_then(|v| v.to_str().ok()) == Some("true")
}

#[derive(Debug, Clone)]
struct Watcher {
    id: i64,
    key: Vec<u8>,
    /// As etcd normalizes it: empty = the key alone, "\0" = no upper bound.
    end: Vec<u8>,
    /// The next revision this watcher has not seen yet.
    next_rev: i64,
    prev_kv: bool,
    no_put: bool,
    no_delete: bool,
    progress_notify: bool,
    fragment: bool,
    /// Sent something since the last progress tick.
    active: bool,
}

impl Watcher {
    fn matches(&self, k: &[u8]) -> bool {
        if self.end.is_empty() {
            k == self.key.as_slice()
        } else if self.end == [0] {
            k >= self.key.as_slice()
        } else {
            k >= self.key.as_slice() && k < self.end.as_slice()
        }
    }

    fn event(&self, ev: &Event) -> Option<mvccpb::Event> {
        let (ty, kv, prev) = match ev {
            Event::KvPut { kv, prev } if !self.no_put => (mvccpb::event::EventType::Put, kv, prev),
            Event::KvDelete { kv, prev } if !self.no_delete => {
                (mvccpb::event::EventType::Delete, kv, prev)
            }
            _ => return None,
        };
        if !self.matches(&kv.key) {
            return None;
        }
        Some(mvccpb::Event {
            r#type: ty as i32,
            kv: Some(kv_to_pb(kv.clone())),
            prev_kv: if self.prev_kv {
                prev.clone().map(kv_to_pb)
            } else {
                None
            },
        })
    }
}

/// The changes to `[key, end)` at exactly revision `rev`, rebuilt from the
/// MVCC history (puts: keys whose mod revision is `rev`; deletes: keys live
/// at `rev - 1` and gone at `rev`). `rev - 1` must not be compacted.
fn history_at(st: &State, key: &[u8], end: &[u8], rev: i64) -> Vec<Event> {
    let base = RangeRequest {
        key: key.to_vec(),
        range_end: end.to_vec(),
        ..RangeRequest::default()
    };
    let at = |r: i64| RangeRequest {
        revision: r,
        ..base.clone()
    };
    let mut out = Vec::new();
    let prev_of = |k: &[u8]| -> Option<KeyValue> {
        let req = RangeRequest {
            key: k.to_vec(),
            revision: rev - 1,
            ..RangeRequest::default()
        };
        if rev - 1 < 1 {
            return None;
        }
        st.kv_range(&req)
            .ok()
            .and_then(|r| r.kvs.into_iter().next())
    };
    let Ok(now) = st.kv_range(&RangeRequest {
        min_mod_revision: rev,
        max_mod_revision: rev,
        ..at(rev)
    }) else {
        return out;
    };
    let count = |r: i64| {
        st.kv_range(&RangeRequest {
            count_only: true,
            ..at(r)
        })
        .map_or(0, |x| x.count)
    };
    let created = now
        .kvs
        .iter()
        .filter(|kv| kv.create_revision == rev)
        .count() as i64;
    let before = if rev > 1 { count(rev - 1) } else { 0 };
    // Keys live before, plus those created at `rev`, minus those live
    // after: how many `rev` deleted (the cheap check before the key diff).
    let deleted = before + created - now.count;
    let mut dels = Vec::new();
    if deleted > 0 && rev > 1 {
        let keys_only = |r: i64| {
            st.kv_range(&RangeRequest {
                keys_only: true,
                ..at(r)
            })
            .map(|x| x.kvs)
            .unwrap_or_default()
        };
        let after: std::collections::BTreeSet<Vec<u8>> =
            keys_only(rev).into_iter().map(|kv| kv.key).collect();
        for kv in keys_only(rev - 1) {
            if !after.contains(&kv.key) {
                dels.push(kv.key);
            }
        }
    }
    // Within one revision etcd orders events as the request applied them;
    // the history no longer knows that order, so puts and deletes are
    // merged in key order.
    let mut puts = now.kvs.into_iter().peekable();
    let mut dels = dels.into_iter().peekable();
    loop {
        let take_put = match (puts.peek(), dels.peek()) {
            (Some(p), Some(d)) => p.key <= *d,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => break,
        };
        if take_put {
            if let Some(kv) = puts.next() {
                let prev = if kv.version > 1 {
                    prev_of(&kv.key)
                } else {
                    None
                };
                out.push(Event::KvPut { kv, prev });
            }
        } else if let Some(k) = dels.next() {
            let prev = prev_of(&k);
            let kv = KeyValue {
                key: k,
                mod_revision: rev,
                ..KeyValue::default()
            };
            out.push(Event::KvDelete { kv, prev });
        }
    }
    out
}

/// Watch streams that fell out of the event broadcast and caught up (for
/// metrics and tests).
pub(crate) static RESYNCS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Most events the shared cache of recent batches holds.
const RECENT_MAX_EVENTS: usize = 200_000;
/// Most batches the shared cache holds.
const RECENT_MAX_BATCHES: usize = 100_000;
/// Most bytes of keys and values the shared cache holds: with large values
/// the event count alone let it hold gigabytes. (With 1 KiB values the
/// event count is the tighter bound.)
const RECENT_MAX_BYTES: usize = 256 << 20;
/// Most cached batches replayed per step of a catch-up.
const RECENT_CHUNK: usize = 1024;

fn batch_bytes(b: &EventBatch) -> usize {
    b.events.iter().map(Event::approx_bytes).sum::<usize>() + 32
}

/// The most recent event batches, shared by all streams, so that a watcher
/// catching up over recent revisions (a start revision just behind, or a
/// stream that fell out of the broadcast) costs O(events), not a history
/// scan per revision. Holds every batch with a revision in `(from, covered]`.
pub(crate) struct Recent {
    inner: std::sync::Mutex<RecentInner>,
}

struct RecentInner {
    from: i64,
    covered: i64,
    batches: std::collections::VecDeque<Arc<EventBatch>>,
    events: usize,
    bytes: usize,
}

impl Recent {
    fn lock(&self) -> std::sync::MutexGuard<'_, RecentInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Follow the state machine's events for as long as the server runs.
    pub(crate) fn spawn(
        node: Arc<janus_raft::RaftNode>,
    ) -> (Arc<Recent>, tokio::task::JoinHandle<()>) {
        let mut rx = node.subscribe();
        let rev = node.state().revision();
        let recent = Arc::new(Recent {
            inner: std::sync::Mutex::new(RecentInner {
                from: rev,
                covered: rev,
                batches: Default::default(),
                events: 0,
                bytes: 0,
            }),
        });
        let r = recent.clone();
        let task = tokio::spawn(async move {
            loop {
                match rx.recv().await {
                    Ok(b) => {
                        let mut g = r.lock();
                        if b.revision <= g.covered {
                            continue;
                        }
                        g.covered = b.revision;
                        crate::metrics::count_events(&b.events);
                        g.events += b.events.len();
                        g.bytes += batch_bytes(&b);
                        g.batches.push_back(b);
                        // Every applied command publishes a batch, most
                        // of them empty: bound both counts, and the bytes.
                        while g.events > RECENT_MAX_EVENTS
                            || g.batches.len() > RECENT_MAX_BATCHES
                            || g.bytes > RECENT_MAX_BYTES
                        {
                            let Some(old) = g.batches.pop_front() else {
                                break;
                            };
                            g.events -= old.events.len();
                            g.bytes = g.bytes.saturating_sub(batch_bytes(&old));
                            g.from = old.revision;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        // Start over from what the state holds now.
                        let rev = node.state().revision();
                        let mut g = r.lock();
                        g.batches.clear();
                        g.events = 0;
                        g.bytes = 0;
                        g.from = rev;
                        g.covered = rev;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        (recent, task)
    }

    /// The cached batches after `after`, up to `upto` (at most
    /// `RECENT_CHUNK` of them), and the revision they cover up to; `None`
    /// if the cache does not reach back to `after`.
    fn range(&self, after: i64, upto: i64) -> Option<(i64, Vec<Arc<EventBatch>>)> {
        let g = self.lock();
        if after < g.from || after >= g.covered {
            return None;
        }
        let end = upto.min(g.covered);
        let start = g.batches.partition_point(|b| b.revision <= after);
        let mut out = Vec::new();
        for b in g.batches.iter().skip(start) {
            if b.revision > end {
                break;
            }
            if out.len() == RECENT_CHUNK {
                let hi = out.last().map_or(end, |b: &Arc<EventBatch>| b.revision);
                return Some((hi, out));
            }
            out.push(b.clone());
        }
        Some((end, out))
    }
}

/// Events per revision for a catch-up step, or the compacted revision
/// that makes it impossible.
type Replay = Result<Vec<(i64, Vec<Event>)>, i64>;

/// One stream's state.
struct Session {
    ctx: Arc<Ctx>,
    out: mpsc::Sender<Result<pb::WatchResponse, Status>>,
    watchers: BTreeMap<i64, Watcher>,
    next_id: i64,
    /// Every batch up to here has been delivered to every synced watcher.
    stream_rev: i64,
    /// The credentials the stream was opened with.
    creds: crate::auth::Creds,
}

/// The client went away.
struct Gone;

impl Session {
    async fn send(&self, r: pb::WatchResponse) -> Result<(), Gone> {
        self.out.send(Ok(r)).await.map_err(|_| Gone)
    }

    /// Send `events` of revision `rev` to watcher `w`, split into fragments
    /// if it asked for them and the response is too large.
    async fn send_events(
        &self,
        w: &Watcher,
        rev: i64,
        events: Vec<mvccpb::Event>,
    ) -> Result<(), Gone> {
        let header = Some(self.ctx.header(rev));
        let resp = pb::WatchResponse {
            header,
            watch_id: w.id,
            events,
            ..Default::default()
        };
        // etcd's sendFragments, with its limit: max_request_bytes plus
        // gRPC's 512 KiB allowance. Whole unless at least that large.
        let limit = self.ctx.cfg.max_request_bytes.saturating_add(512 * 1024);
        if !w.fragment || resp.encoded_len() < limit || resp.events.len() < 2 {
            return self.send(resp).await;
        }
        let empty = pb::WatchResponse {
            header,
            watch_id: w.id,
            fragment: true,
            ..Default::default()
        };
        let base = empty.encoded_len();
        // An event's share of a response: its bytes, length and tag (field 11).
        let share = |ev: &mvccpb::Event| {
            let len = ev.encoded_len();
            len + prost::encoding::encoded_len_varint(len as u64) + 1
        };
        let mut all = resp.events.into_iter().peekable();
        while all.peek().is_some() {
            let mut part = Vec::new();
            let mut size = base;
            while let Some(ev) = all.peek() {
                let s = share(ev);
                // A fragment holds at least one event; the event that
                // brings it to the limit starts the next one.
                if !part.is_empty() && size + s >= limit {
                    break;
                }
                size += s;
                if let Some(ev) = all.next() {
                    part.push(ev);
                }
            }
            self.send(pb::WatchResponse {
                events: part,
                fragment: all.peek().is_some(),
                ..empty.clone()
            })
            .await?;
        }
        Ok(())
    }

    /// Deliver one live batch to every watcher that has not seen it.
    async fn deliver(&mut self, batch: &EventBatch) -> Result<(), Gone> {
        self.stream_rev = self.stream_rev.max(batch.revision);
        let ids: Vec<i64> = self.watchers.keys().copied().collect();
        for id in ids {
            let Some(w) = self.watchers.get(&id).cloned() else {
                continue;
            };
            if batch.revision < w.next_rev {
                continue;
            }
            let events: Vec<mvccpb::Event> =
                batch.events.iter().filter_map(|e| w.event(e)).collect();
            if let Some(w) = self.watchers.get_mut(&id) {
                w.next_rev = batch.revision + 1;
                w.active |= !events.is_empty();
            }
            if !events.is_empty() {
                self.send_events(&w, batch.revision, events).await?;
            }
        }
        Ok(())
    }

    /// Bring watcher `id` up to `target` from the MVCC history. Like etcd's
    /// unsynced-watcher sync, events of up to `SYNC_BATCH_REVS` revisions go
    /// in one response whose header is `target`. Returns false if the
    /// watcher was canceled for compaction.
    async fn catch_up(&mut self, id: i64, target: i64) -> Result<bool, Gone> {
        let mut pending: Vec<mvccpb::Event> = Vec::new();
        let mut pending_revs = 0usize;
        loop {
            let Some(w) = self.watchers.get(&id).cloned() else {
                return Ok(false);
            };
            if w.next_rev > target {
                if !pending.is_empty() {
                    self.send_events(&w, target, pending).await?;
                }
                return Ok(true);
            }
            let compacted = self.ctx.node.state().compacted_revision();
            let cached = if w.next_rev < compacted {
                None
            } else {
                self.ctx.recent.range(w.next_rev - 1, target)
            };
            let (hi, found): (i64, Replay) = match cached {
                Some((hi, batches)) => (
                    hi,
                    Ok(batches
                        .iter()
                        .map(|b| (b.revision, b.events.clone()))
                        .collect()),
                ),
                None => {
                    let hi = target.min(w.next_rev.saturating_add(CATCH_UP_CHUNK - 1));
                    let st = self.ctx.node.state();
                    let compacted = st.compacted_revision();
                    let found = if w.next_rev < compacted {
                        Err(compacted)
                    } else {
                        Ok((w.next_rev..=hi)
                            .map(|r| (r, history_at(&st, &w.key, &w.end, r)))
                            .filter(|(_, e)| !e.is_empty())
                            .collect())
                    };
                    (hi, found)
                }
            };
            match found {
                Err(compacted) => {
                    self.watchers.remove(&id);
                    // etcd's compaction notice carries no revision.
                    self.send(pb::WatchResponse {
                        header: Some(self.ctx.header(0)),
                        watch_id: id,
                        canceled: true,
                        compact_revision: compacted,
                        ..Default::default()
                    })
                    .await?;
                    return Ok(false);
                }
                Ok(revs) => {
                    for (r, evs) in revs {
                        let before = pending.len();
                        // etcd reads prev_kv at r - 1 when it sends: gone
                        // if that revision is compacted away.
                        let prev_gone = r - 1 < compacted;
                        pending.extend(evs.iter().filter_map(|e| w.event(e)).map(|mut e| {
                            if prev_gone {
                                e.prev_kv = None;
                            }
                            e
                        }));
                        pending_revs += usize::from(pending.len() > before);
                    }
                    if pending_revs >= SYNC_BATCH_REVS {
                        self.send_events(&w, target, std::mem::take(&mut pending))
                            .await?;
                        pending_revs = 0;
                    }
                    if let Some(w) = self.watchers.get_mut(&id) {
                        w.next_rev = hi + 1;
                        w.active = true;
                    }
                }
            }
        }
    }

    async fn create(&mut self, c: pb::WatchCreateRequest) -> Result<(), Gone> {
        let current = self.ctx.node.state().revision();
        let mut end = c.range_end.clone();
        if end.len() == 1 && end[0] == 0 {
            end = vec![0];
        }
        // etcd checks read permission on the range for every new watcher.
        let refusal = self.ctx.watch_refusal(&self.creds, &c.key, &c.range_end);
        let error = if let Some(reason) = &refusal {
            Some(reason.as_str())
        } else if !end.is_empty() && end != [0] && c.key >= end {
            Some("mvcc: watcher range is empty")
        } else if c.watch_id != 0 && self.watchers.contains_key(&c.watch_id) {
            Some("mvcc: duplicate watch ID provided on the WatchStream")
        } else {
            None
        };
        if let Some(reason) = error {
            return self
                .send(pb::WatchResponse {
                    header: Some(self.ctx.header(current)),
                    watch_id: -1,
                    created: true,
                    canceled: true,
                    cancel_reason: reason.into(),
                    ..Default::default()
                })
                .await;
        }
        let id = if c.watch_id != 0 {
            c.watch_id
        } else {
            while self.watchers.contains_key(&self.next_id) {
                self.next_id += 1;
            }
            self.next_id
        };
        if c.watch_id == 0 {
            self.next_id += 1;
        }
        use pb::watch_create_request::FilterType;
        let w = Watcher {
            id,
            key: c.key,
            end,
            next_rev: if c.start_revision > 0 {
                c.start_revision
            } else {
                current + 1
            },
            prev_kv: c.prev_kv,
            no_put: c.filters.contains(&(FilterType::Noput as i32)),
            no_delete: c.filters.contains(&(FilterType::Nodelete as i32)),
            progress_notify: c.progress_notify,
            fragment: c.fragment,
            active: false,
        };
        let replay = w.next_rev <= current;
        // etcd compares a negative start with its compacted revision like any
        // other (-1 before the first compaction): below it, the watcher is
        // created and then canceled as compacted; -1 on a never-compacted
        // store watches from now on.
        let compacted = crate::etcd_compacted_revision(&self.ctx.node.state());
        let gone = c.start_revision < 0 && c.start_revision < compacted;
        self.watchers.insert(id, w);
        self.send(pb::WatchResponse {
            header: Some(self.ctx.header(current)),
            watch_id: id,
            created: true,
            ..Default::default()
        })
        .await?;
        if gone {
            self.watchers.remove(&id);
            // etcd's compaction notice carries no revision.
            return self
                .send(pb::WatchResponse {
                    header: Some(self.ctx.header(0)),
                    watch_id: id,
                    canceled: true,
                    compact_revision: compacted,
                    ..Default::default()
                })
                .await;
        }
        if replay {
            self.catch_up(id, current).await?;
        }
        Ok(())
    }

    async fn cancel(&mut self, id: i64) -> Result<(), Gone> {
        if self.watchers.remove(&id).is_some() {
            let header = Some(self.ctx.header(self.stream_rev));
            self.send(pb::WatchResponse {
                header,
                watch_id: id,
                canceled: true,
                ..Default::default()
            })
            .await?;
        }
        Ok(())
    }

    /// The stream fell out of the broadcast buffer: catch every watcher up
    /// from history to the current revision.
    async fn resync(&mut self) -> Result<(), Gone> {
        let target = self.ctx.node.state().revision();
        tracing::debug!(target, "watch stream lagged; catching up");
        RESYNCS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let ids: Vec<i64> = self.watchers.keys().copied().collect();
        for id in ids {
            self.catch_up(id, target).await?;
        }
        self.stream_rev = self.stream_rev.max(target);
        Ok(())
    }

    /// Deliver whatever is already buffered, so a progress report does not
    /// claim a revision whose events are still queued.
    async fn drain(
        &mut self,
        events: &mut broadcast::Receiver<Arc<EventBatch>>,
    ) -> Result<(), Gone> {
        loop {
            match events.try_recv() {
                Ok(b) => self.deliver(&b).await?,
                Err(broadcast::error::TryRecvError::Lagged(_)) => self.resync().await?,
                Err(_) => return Ok(()),
            }
        }
    }

    async fn progress(&mut self) -> Result<(), Gone> {
        let header = Some(self.ctx.header(self.stream_rev));
        self.send(pb::WatchResponse {
            header,
            watch_id: -1,
            ..Default::default()
        })
        .await
    }

    async fn tick(&mut self) -> Result<(), Gone> {
        let ids: Vec<i64> = self.watchers.keys().copied().collect();
        for id in ids {
            let Some(w) = self.watchers.get_mut(&id) else {
                continue;
            };
            let notify = w.progress_notify && !w.active && w.next_rev > self.stream_rev;
            w.active = false;
            if notify {
                let header = Some(self.ctx.header(self.stream_rev));
                self.send(pb::WatchResponse {
                    header,
                    watch_id: id,
                    ..Default::default()
                })
                .await?;
            }
        }
        Ok(())
    }
}

/// Serve one watch stream: `input` carries the client's requests (gRPC or
/// the JSON gateway), `out` the responses. With `require_leader` the stream
/// ends with "etcdserver: no leader" when the member loses its leader.
pub(crate) async fn run(
    ctx: Arc<Ctx>,
    creds: crate::auth::Creds,
    mut input: impl Stream<Item = Result<pb::WatchRequest, Status>> + Unpin + Send,
    out: mpsc::Sender<Result<pb::WatchResponse, Status>>,
    require_leader: bool,
) {
    let mut events = ctx.node.subscribe();
    // Batches at or below this revision are already in the state.
    let stream_rev = ctx.node.state().revision();
    let every = Duration::from_millis(ctx.cfg.watch_progress_notify_interval_ms.max(100));
    let mut s = Session {
        ctx,
        out,
        watchers: BTreeMap::new(),
        next_id: 0,
        stream_rev,
        creds,
    };
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    let election = s.ctx.node.election_wait();
    let mut leader_check =
        tokio::time::interval_at(tokio::time::Instant::now() + election, election);
    let mut no_leader = 0u32;
    // A client that half-closes keeps its watches, as with etcd.
    let mut input_open = true;
    use pb::watch_request::RequestUnion;
    loop {
        let out = s.out.clone();
        let step = tokio::select! {
            msg = input.next(), if input_open => match msg {
                Some(Ok(req)) => match req.request_union {
                    Some(RequestUnion::CreateRequest(c)) => s.create(c).await,
                    Some(RequestUnion::CancelRequest(c)) => s.cancel(c.watch_id).await,
                    Some(RequestUnion::ProgressRequest(_)) => {
                        match s.drain(&mut events).await {
                            Ok(()) => s.progress().await,
                            Err(g) => Err(g),
                        }
                    }
                    None => Ok(()),
                },
                None => {
                    input_open = false;
                    Ok(())
                }
                Some(Err(_)) => Err(Gone),
            },
            b = events.recv() => match b {
                Ok(batch) => s.deliver(&batch).await,
                Err(broadcast::error::RecvError::Lagged(_)) => s.resync().await,
                Err(broadcast::error::RecvError::Closed) => Err(Gone),
            },
            _ = ticker.tick() => s.tick().await,
            _ = leader_check.tick(), if require_leader => {
                if s.ctx.node.leader().is_some() {
                    no_leader = 0;
                    Ok(())
                } else {
                    no_leader += 1;
                    if no_leader >= NO_LEADER_CHECKS {
                        let _ = s.out.send(Err(RpcError::NoLeader.into())).await;
                        Err(Gone)
                    } else {
                        Ok(())
                    }
                }
            }
            _ = out.closed() => Err(Gone),
        };
        if step.is_err() {
            return;
        }
    }
}

type Boxed<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl watch_server::Watch for Watch {
    type WatchStream = Boxed<pb::WatchResponse>;

    async fn watch(
        &self,
        req: Request<Streaming<pb::WatchRequest>>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let require_leader = requires_leader(req.metadata());
        if require_leader && self.0.node.leader().is_none() {
            return Err(RpcError::NoLeader.into());
        }
        let (tx, rx) = mpsc::channel(OUT_QUEUE);
        let creds = crate::auth::Creds::of(&req);
        tokio::spawn(run(
            self.0.clone(),
            creds,
            req.into_inner(),
            tx,
            require_leader,
        ));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use janus_core::{Command, DeleteRangeRequest, Proposal, PutRequest};

    fn apply(st: &mut State, c: Command) {
        st.apply(&Proposal {
            time_ms: 0,
            command: c,
        });
    }
    fn put(k: &str, v: &str) -> Command {
        Command::Put(PutRequest {
            key: k.into(),
            value: v.into(),
            ..PutRequest::default()
        })
    }

    #[test]
    fn history_rebuilds_each_revisions_events() {
        let mut st = State::new();
        // The clock starts at 1, as etcd's does.
        apply(&mut st, put("a", "1")); // 2
        apply(&mut st, put("b", "1")); // 3
        apply(&mut st, put("a", "2")); // 4
        let del = DeleteRangeRequest {
            key: "a".into(),
            range_end: "c".into(),
            prev_kv: false,
        };
        apply(&mut st, Command::DeleteRange(del)); // 5
        let ev = history_at(&st, b"a", b"\0", 4);
        assert_eq!(ev.len(), 1);
        match &ev[0] {
            Event::KvPut { kv, prev } => {
                assert_eq!(
                    (kv.key.as_slice(), kv.value.as_slice(), kv.version),
                    (&b"a"[..], &b"2"[..], 2)
                );
                assert_eq!(prev.as_ref().map(|p| p.value.clone()), Some(b"1".to_vec()));
            }
            e => panic!("{e:?}"),
        }
        let ev = history_at(&st, b"a", b"\0", 5);
        let keys: Vec<_> = ev
            .iter()
            .map(|e| match e {
                Event::KvDelete { kv, prev } => (kv.key.clone(), kv.mod_revision, prev.is_some()),
                e => panic!("{e:?}"),
            })
            .collect();
        assert_eq!(
            keys,
            vec![(b"a".to_vec(), 5, true), (b"b".to_vec(), 5, true)]
        );
        assert!(history_at(&st, b"b", b"", 4).is_empty());
        assert_eq!(history_at(&st, b"b", b"", 3).len(), 1);
    }

    #[test]
    fn watcher_ranges() {
        let w = Watcher {
            id: 0,
            key: b"b".to_vec(),
            end: vec![0],
            next_rev: 1,
            prev_kv: false,
            no_put: false,
            no_delete: false,
            progress_notify: false,
            fragment: false,
            active: false,
        };
        assert!(w.matches(b"b") && w.matches(b"zz") && !w.matches(b"a"));
        let w = Watcher {
            end: b"c".to_vec(),
            ..w
        };
        assert!(w.matches(b"bb") && !w.matches(b"c"));
        let w = Watcher {
            end: Vec::new(),
            ..w
        };
        assert!(w.matches(b"b") && !w.matches(b"bb"));
    }
}
